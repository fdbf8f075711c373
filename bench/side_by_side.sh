#!/usr/bin/env bash
# Runs every benchmark of docs/benchmarks.md in one session and prints its tables: the kernel benchmarks (Google
# Benchmark, N repetitions, medians; ours vs Eigen vs the reference loops vs a parallel copy) and the whole
# training step against PyTorch, alternating the two programs for R rounds.
#
#   bench/side_by_side.sh [BUILD_DIR] [PYTHON] [OUT_DIR]   (defaults: build/release, python3, bench-results)
#
# PYTHON needs torch (pip install torch); without it the PyTorch rows are skipped. Run it on an otherwise idle
# machine: the numbers are only comparable within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
python=${2:-python3}
out=${3:-bench-results}
repetitions=${REPETITIONS:-9}
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
steps=${STEPS:-10}
mkdir -p "$out"

for bench in gemm_bench attention_bench kernels_bench vit_train_step; do
  [ -x "$build/bench/$bench" ] || { echo "missing $build/bench/$bench: cmake --build --preset release" >&2; exit 1; }
done

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "flags: $(grep -o -w -m1 -E 'avx512f|avx2|fma' /proc/cpuinfo | sort -u | xargs)"
for bench in gemm_bench kernels_bench attention_bench; do
  echo "running $bench ($repetitions repetitions, OMP_NUM_THREADS=$threads) ..." >&2
  # Interleaved: the repetitions of all benchmarks run in random order, so a slow spell of this shared
  # machine falls on ours and Eigen alike instead of on whichever ran during it.
  OMP_NUM_THREADS=$threads "$build/bench/$bench" --benchmark_repetitions="$repetitions" \
    --benchmark_enable_random_interleaving=true --benchmark_format=json --benchmark_out="$out/$bench.json" --benchmark_out_format=json >/dev/null
done
"$python" bench/summarize.py "$out/gemm_bench.json" "$out/attention_bench.json" "$out/kernels_bench.json"

echo
echo "### training step of vit_cifar, batch 128 ($rounds rounds alternating; images/s, median of each round)"
have_torch=1
"$python" -c "import torch" 2>/dev/null || { have_torch=0; echo "(no torch for $python: PyTorch skipped)"; }
for round in $(seq 1 "$rounds"); do
  for mode in "" "--inference"; do
    "$build/bench/vit_train_step" --threads 1 2 --steps "$steps" $mode | sed "s/^/round $round tessera $mode: /"
    if [ $have_torch = 1 ]; then
      "$python" bench/pytorch_train_step.py --threads 1 2 --steps "$steps" $mode | sed "s/^/round $round pytorch $mode: /"
    fi
  done
done | tee "$out/train_step.txt"
