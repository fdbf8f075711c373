#!/usr/bin/env python3
"""Turns the JSON of gemm_bench, attention_bench and kernels_bench (run with --benchmark_repetitions=N) into the
ratio tables of docs/benchmarks.md. Medians of the repetitions; ratios are computed from those medians.

    bench/summarize.py gemm.json attention.json kernels.json
"""
import json
import re
import statistics
import sys
from collections import defaultdict


def medians(path):
    """name -> {"ms": median real time in ms, counters...} over the repetitions (aggregates are recomputed)."""
    with open(path) as f:
        data = json.load(f)
    runs = defaultdict(list)
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        runs[b["run_name"].replace("/real_time", "")].append(b)
    out = {}
    for name, reps in runs.items():
        unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[reps[0]["time_unit"]]
        row = {"ms": statistics.median(r["real_time"] * unit for r in reps), "n": len(reps)}
        # The benchmarks' rate counters FLOP and bytes (per second), as GFLOP/s and GB/s; JSON written before they
        # were renamed holds GFLOP/s and GB/s themselves.
        for key, rate in (("FLOP", "GFLOP/s"), ("bytes", "GB/s")):
            if key in reps[0]:
                row[rate] = statistics.median(r[key] for r in reps) * 1e-9
            elif rate in reps[0]:
                row[rate] = statistics.median(r[rate] for r in reps)
        out[name] = row
    return out, data.get("context", {})


def gemm_table(rows):
    print("| GEMM (M x N x K, transposes) | ours ms | Eigen ms | ours GFLOP/s | Eigen GFLOP/s | ours / Eigen speed |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for name, row in rows.items():
        if not name.endswith("/ours") or not name.startswith("gemm/"):
            continue
        eigen = rows.get(name[: -len("ours")] + "eigen")
        if not eigen:
            continue
        speed = eigen["ms"] / row["ms"]
        if "small" not in name:
            ratios.append(speed)
        label = name[len("gemm/"):-len("/ours")]
        print(f"| {label} | {row['ms']:.3f} | {eigen['ms']:.3f} | {row.get('GFLOP/s', 0):.0f} | "
              f"{eigen.get('GFLOP/s', 0):.0f} | **{speed:.2f}x** |")
    for name, row in rows.items():
        if name.startswith("gemm/") and name.endswith("/reference"):
            ours = rows[name[: -len("reference")] + "ours"]
            print(f"| {name[5:]} (plain triple loop) | {row['ms']:.3f} | | {row.get('GFLOP/s', 0):.1f} | | "
                  f"ours {row['ms'] / ours['ms']:.0f}x faster |")
    if ratios:
        geo = 1.0
        for r in ratios:
            geo *= r
        geo **= 1.0 / len(ratios)
        print(f"\nViT shapes and 1024^3: ours / Eigen from {min(ratios):.2f}x to {max(ratios):.2f}x, "
              f"geometric mean {geo:.2f}x")
    for pair in (("gemm_ex/fc1_bias_gelu/fused", "gemm_ex/fc1_bias_gelu/unfused"),
                 ("gemm_batched/attn_qk/ours", "gemm_batched/attn_qk/eigen"),
                 ("gemm_batched/attn_pv/ours", "gemm_batched/attn_pv/eigen")):
        if pair[0] in rows and pair[1] in rows:
            a, b = rows[pair[0]], rows[pair[1]]
            print(f"- {pair[0]}: {a['ms']:.3f} ms vs {pair[1]}: {b['ms']:.3f} ms -> {b['ms'] / a['ms']:.2f}x")


def attention_table(rows):
    print("| attention (shape / threads) | fused ms | composed ms | fused speed-up |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        m = re.match(r"BM_fused_(op_)?(forward|forward_backward)/(\d+)/(\d+)", name)
        if not m:
            continue
        op, phase, shape, threads = m.groups()
        other = name.replace("BM_fused_op_", "BM_composed_ops_") if op else name.replace("BM_fused_", "BM_composed_")
        if other not in rows:
            continue
        shape_name = ["B128 H3 N65 d64", "B32 H12 N197 d64"][int(shape)]
        what = ("ops (autograd, permute copies) " if op else "kernels ") + phase.replace("_", "+")
        c = rows[other]
        print(f"| {what}, {shape_name}, {threads} thr | {row['ms']:.2f} | {c['ms']:.2f} | "
              f"**{c['ms'] / row['ms']:.2f}x** |")


def kernels_table(rows):
    copy = {int(n.split("/")[1]): r for n, r in rows.items() if n.startswith("BM_copy_parallel/")}
    memory = copy[max(copy)]  # the largest copy does not fit in any cache: main-memory bandwidth
    print("| kernel (rows x cols) | fast ms | reference ms | fast / reference | fast GB/s | / main-memory copy |")
    print("|---|---|---|---|---|---|")
    bytes_and_time = defaultdict(lambda: [0.0, 0.0])  # (kernel without _forward/_backward, args) -> [GB, ms]
    for name, row in rows.items():
        m = re.match(r"BM_(\w+?)<true>/(.*)", name)
        if not m:
            continue
        kernel, args = m.groups()
        ref = rows.get(name.replace("<true>", "<false>"))
        speed = f"{ref['ms'] / row['ms']:.1f}x" if ref else ""
        gbs = row.get("GB/s", 0.0)
        print(f"| {kernel} {args.replace('/', ' x ')} | {row['ms']:.3f} | {ref['ms'] if ref else 0:.3f} | {speed} | "
              f"{gbs:.1f} | {gbs / memory['GB/s']:.2f} |")
        base = re.sub(r"_(forward|backward)$", "", kernel)
        if base != kernel and "forward_backward" not in kernel:
            entry = bytes_and_time[(base, args)]
            entry[0] += gbs * row["ms"] * 1e-3
            entry[1] += row["ms"]
    for n, r in sorted(copy.items()):
        print(f"| parallel copy of {n} floats ({n * 8 / 1e6:.0f} MB moved) | {r['ms']:.3f} | | | {r['GB/s']:.1f} | "
              f"{r['GB/s'] / memory['GB/s']:.2f} |")
    print(f"\nForward + backward together (bytes of both / time of both), against the main-memory copy "
          f"({memory['GB/s']:.1f} GB/s):\n")
    for (base, args), (gb, ms) in bytes_and_time.items():
        rate = gb / (ms * 1e-3)
        print(f"- {base} {args.replace('/', ' x ')}: {rate:.1f} GB/s = {rate / memory['GB/s']:.2f} of the copy")


def main():
    for path in sys.argv[1:]:
        rows, context = medians(path)
        reps = max(r["n"] for r in rows.values())
        print(f"\n### {path} ({reps} repetitions, medians; {context.get('omp_max_threads', '?')} OpenMP threads)\n")
        if any(n.startswith("gemm") for n in rows):
            gemm_table(rows)
        elif any(n.startswith("BM_fused") for n in rows):
            attention_table(rows)
        else:
            kernels_table(rows)


if __name__ == "__main__":
    main()
