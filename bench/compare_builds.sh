#!/usr/bin/env bash
# Compares two builds of tessera side by side in one session: the fused attention benchmarks and the vit_cifar
# training step of build A and build B, alternated for R rounds so that a slow spell of a shared machine falls on
# both; prints each round and the medians of B / A.
#
#   bench/compare_builds.sh BUILD_A BUILD_B [OUT_DIR]     (e.g. a build of an older commit, and build/release)
#
# Each build needs bench/attention_bench and bench/vit_train_step (cmake --build <dir> --target attention_bench
# vit_train_step). ROUNDS (default 5), THREADS (default 2), STEPS (default 10) and FILTER (a benchmark regex, default
# the fused attention forward + backward at the two documented shapes) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: bench/compare_builds.sh BUILD_A BUILD_B [OUT_DIR]}
b=${2:?usage: bench/compare_builds.sh BUILD_A BUILD_B [OUT_DIR]}
out=${3:-bench-results/compare}
rounds=${ROUNDS:-5}
threads=${THREADS:-2}
steps=${STEPS:-10}
filter=${FILTER:-fused_forward_backward}
mkdir -p "$out"
for build in "$a" "$b"; do
  for bench in attention_bench vit_train_step; do
    [ -x "$build/bench/$bench" ] || { echo "missing $build/bench/$bench" >&2; exit 1; }
  done
done

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "flags: $(grep -o -w -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | xargs)"
echo "A = $a, B = $b; $rounds rounds, $threads threads"
for round in $(seq 1 "$rounds"); do
  for side in A B; do
    build=$([ $side = A ] && echo "$a" || echo "$b")
    OMP_NUM_THREADS=$threads "$build/bench/attention_bench" --benchmark_filter="$filter" --benchmark_repetitions=3 \
      --benchmark_report_aggregates_only=true --benchmark_format=json >"$out/attention_${side}_$round.json"
    "$build/bench/vit_train_step" --threads "$threads" --steps "$steps" >"$out/step_${side}_$round.txt"
  done
  echo "round $round done" >&2
done

python3 - "$out" "$rounds" <<'EOF'
import json, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
times = {"A": {}, "B": {}}
for side in "AB":
    for r in range(1, rounds + 1):
        for bench in json.load(open(f"{out}/attention_{side}_{r}.json"))["benchmarks"]:
            if bench.get("aggregate_name") == "median":
                times[side].setdefault(bench["run_name"], []).append(bench["real_time"])
        text = open(f"{out}/step_{side}_{r}.txt").read()
        rates = [float(x) for x in re.findall(r"median ([0-9.]+) images/s", text)]
        if rates:
            times[side].setdefault("vit_cifar training step (img/s)", []).append(rates[-1])
print(f"\n| benchmark | A (median) | B (median) | B vs A |\n|---|---|---|---|")
for name in times["A"]:
    if name not in times["B"]:
        continue
    ma, mb = statistics.median(times["A"][name]), statistics.median(times["B"][name])
    faster = mb / ma if "img/s" in name else ma / mb  # > 1: B is faster
    print(f"| {name} | {ma:.4g} | {mb:.4g} | {faster:.3f}x |")
EOF
