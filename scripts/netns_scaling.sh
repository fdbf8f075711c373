#!/usr/bin/env bash
# The scaling measurements of docs/distributed.md ("Scaling", issue 16 item 5), one JSON line per configuration
# appended to RESULTS (bench/data_parallel_step's output, with tags saying where it ran):
#   1. this machine: 1 rank x 2 threads, 1 rank x 1 thread (communication skipped: one rank has none), and
#      2 ranks x 1 thread over shared memory (Open MPI's default on one machine);
#   2. two "hosts" simulated by network namespaces (scripts/netns_cluster.sh), one rank x 1 thread in each, over TCP:
#      the links unshaped, then at every RATE x DELAY (with a kernel that lacks sch_netem, at every RATE without
#      a delay; the JSON says which delay was applied);
#   3. ViT-B/16 at 224 on one rank x 2 threads, communication skipped (its compute time per image, which
#      scripts/scaling_model.py projects from), unless VIT_B16=0.
# Then it prints scripts/scaling_model.py's summary of RESULTS (measurements, acceptance, projection); the exit
# status is 1 when the acceptance bounds of issue 16 are not met.
#
# Usage: scripts/netns_scaling.sh BENCH [RESULTS]
#   BENCH:   bench/data_parallel_step of a build with TESSERA_MPI (build/release/bench/data_parallel_step)
#   RESULTS: JSON lines appended to (default scaling_results.jsonl)
# Environment: RATES ("1gbit 10gbit"), DELAYS ("0.1ms 1ms"), BATCH (128, global), STEPS (5 per round and mode),
# ROUNDS (3), WARMUP (2), VIT_B16 (1), VIT_B16_BATCH (8), BENCH_ARGS (more flags for every run).
# Needs root, iproute2, Open MPI 4.1 (openmpi-bin), python3. Run it with nothing else busy (the timings share the
# machine's cores). On a 2-core AMD EPYC Zen 3 it took 1.5 minutes with BATCH=4 STEPS=2 ROUNDS=1 WARMUP=1
# VIT_B16_BATCH=1 and 2.3 minutes with BATCH=128 STEPS=3 ROUNDS=2 WARMUP=1 VIT_B16=0; the defaults (2.4 times the
# vit_cifar steps, and ViT-B/16 at batch 8, about 8 s an image there) were not timed: roughly 10 minutes.
# Everything it set up is removed on exit.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BENCH [RESULTS]" >&2
  exit 2
fi
bench="$(realpath "$1")"
results="$(realpath -m "${2:-scaling_results.jsonl}")"
script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cluster="$script_dir/netns_cluster.sh"
read -r -a rates <<<"${RATES:-1gbit 10gbit}"
read -r -a delays <<<"${DELAYS:-0.1ms 1ms}"
read -r -a extra <<<"${BENCH_ARGS:-}"
common=(--batch "${BATCH:-128}" --steps "${STEPS:-5}" --rounds "${ROUNDS:-3}" --warmup "${WARMUP:-2}"
  --json-out "$results" "${extra[@]}")

die() {
  echo "netns_scaling: $*" >&2
  exit 1
}
[[ -x "$bench" ]] || die "'$1' is not an executable (build the data_parallel_step target with TESSERA_MPI on)"
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, tc)"
command -v mpirun >/dev/null || die "needs Open MPI's mpirun (Debian: openmpi-bin)"
[[ "$(mpirun --version 2>&1)" == *"Open MPI"* ]] || die "needs Open MPI's mpirun (the namespace launch uses its flags)"
command -v python3 >/dev/null || die "needs python3 (the cluster check and the model)"
python3 "$script_dir/scaling_model.py" --self-test >/dev/null || die "scripts/scaling_model.py --self-test failed"
mkdir -p "$(dirname "$results")"
when="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git -C "$script_dir" rev-parse --short HEAD 2>/dev/null || echo unknown)"
tags=(--tag "run=$when" --tag "revision=$revision")

cleanup() { "$cluster" down >/dev/null 2>&1 || true; }
trap cleanup EXIT

host_mpirun=(mpirun --bind-to none --oversubscribe --allow-run-as-root)

echo "== 1. this machine ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores)"
OMP_NUM_THREADS=2 "${host_mpirun[@]}" -np 1 "$bench" --threads 2 --modes skip "${common[@]}" "${tags[@]}" \
  --tag network=none --tag setup=1x2
OMP_NUM_THREADS=1 "${host_mpirun[@]}" -np 1 "$bench" --threads 1 --modes skip "${common[@]}" "${tags[@]}" \
  --tag network=none --tag setup=1x1
OMP_NUM_THREADS=1 "${host_mpirun[@]}" -np 2 "$bench" --threads 1 "${common[@]}" "${tags[@]}" \
  --tag network=shared-memory --tag setup=2x1

echo "== 2. two hosts in network namespaces, one rank x 1 thread each, TCP"
"$cluster" down >/dev/null 2>&1 || true
"$cluster" up 2
"$cluster" check
netns_run() {  # $1 rate, $2 delay as requested
  local shaping applied_rate applied_delay
  "$cluster" shape "$1" "$2"
  shaping="$(cat "${NETNS_STATE_DIR:-/run/tessera-netns}/shaping")"  # "rate=R delay=D", as applied
  applied_rate="${shaping#rate=}"
  applied_rate="${applied_rate%% *}"
  applied_delay="${shaping##*delay=}"
  OMP_NUM_THREADS=1 "$cluster" mpirun 2 "$bench" --threads 1 "${common[@]}" "${tags[@]}" \
    --tag network=netns --tag setup=2x1 --tag "rate=$applied_rate" --tag "delay=$applied_delay" \
    --tag "delay_requested=$2"
}
netns_run none 0
if "$cluster" has-netem; then
  for rate in "${rates[@]}"; do
    for delay in "${delays[@]}"; do netns_run "$rate" "$delay"; done
  done
else
  echo "netns_scaling: no sch_netem in this kernel: every RATE without a delay (the model adds the latency)" >&2
  for rate in "${rates[@]}"; do
    netns_run "$rate" 0
  done
fi
"$cluster" down

if [[ "${VIT_B16:-1}" == 1 ]]; then
  echo "== 3. ViT-B/16 at 224, one rank x 2 threads, communication skipped (compute time per image)"
  OMP_NUM_THREADS=2 "${host_mpirun[@]}" -np 1 "$bench" --model vit_b16 --threads 2 --modes skip \
    --batch "${VIT_B16_BATCH:-8}" --warmup 1 --steps 3 --rounds 1 --json-out "$results" "${extra[@]}" "${tags[@]}" \
    --tag network=none --tag setup=1x2
fi

echo "== results in $results (run $when)"
python3 "$script_dir/scaling_model.py" "$results" --run "$when" --check
