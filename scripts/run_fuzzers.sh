#!/usr/bin/env bash
# Builds tessera's fuzz targets (tests/fuzz: libFuzzer + ASan + UBSan, clang) and runs each: first on every kept
# regression input (tests/fuzz/regressions/<target>/), then fuzzing for a given time from the seed corpus
# (tests/fuzz/corpus/<target>/); both are copied to <build dir>/inputs/ first, `.hex` files decoded. Exits non-zero
# when any target crashes, leaks, times out or reports undefined behaviour; crash inputs are left in
# <build dir>/artifacts/<target>/. docs/reliability.md explains the targets.
#
#   scripts/run_fuzzers.sh [seconds per target, default 60] [target ...]   (targets: default all five)
#
# Environment: FUZZ_BUILD_DIR (default build/fuzz), FUZZ_CXX (default clang++-14), FUZZ_JOBS (build jobs, default 2),
# FUZZ_SEED (libFuzzer's -seed; default: a new random seed each run), FUZZ_RUNS (stop each target after this many
# inputs, within the time given: with FUZZ_SEED and an empty build corpus a run then tries the same inputs on every
# machine, which is how CI runs it).
# Inputs the fuzzer finds go to <build dir>/corpus/<target>/, never into the committed seeds; a later run goes on from
# them. Needs clang-14 and libclang-rt-14-dev (libFuzzer and the sanitizer runtimes), libomp-14-dev for OpenMP and
# libjpeg62-turbo-dev (the image target decodes JPEG with libjpeg: tests/fuzz/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors checkpoint vit_config image_decode cifar10_batch)
build=${FUZZ_BUILD_DIR:-build/fuzz}
cxx=${FUZZ_CXX:-clang++-14}
jobs=${FUZZ_JOBS:-2}
fuzz_flags=()
[ -z "${FUZZ_SEED:-}" ] || fuzz_flags=(-seed="$FUZZ_SEED")
[ -z "${FUZZ_RUNS:-}" ] || fuzz_flags+=(-runs="$FUZZ_RUNS")

# Largest input the fuzzer makes, per target: a few times the largest seed (the checkpoint seed is 21 KB).
max_len() {
  case "$1" in
    checkpoint) echo 65536 ;;
    cifar10_batch) echo 16384 ;;
    *) echo 8192 ;;
  esac
}

# Copies the committed inputs in folder $1 to folder $2, turning each `<name>.hex` back into the bytes of <name>
# (the inputs that start like images are kept as hex text, so that the repository holds no image files).
stage_inputs() {
  local from=$1 to=$2 file name
  rm -rf "$to"
  mkdir -p "$to"
  [ -d "$from" ] || return 0
  for file in "$from"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    if [[ $name == *.hex ]]; then
      printf "$(tr -d ' \n\r\t' <"$file" | sed 's/../\\x&/g')" >"$to/${name%.hex}"
    else
      cp "$file" "$to/$name"
    fi
  done
}

# -O2 with assertions on (no NDEBUG): tessera's own asserts count as crashes too.
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="-O2 -g" \
  -DTESSERA_FUZZ=ON -DTESSERA_BUILD_EXAMPLES=OFF -DTESSERA_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j"$jobs" --target "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for target in "${targets[@]}"; do
  exe="$build/tests/fuzz/fuzz_$target"
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  log="$build/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  stage_inputs "tests/fuzz/regressions/$target" "$build/inputs/regressions/$target"
  stage_inputs "tests/fuzz/corpus/$target" "$build/inputs/seeds/$target"
  echo "=== $target: regression inputs"
  mapfile -t regressions < <(find "$build/inputs/regressions/$target" -type f | sort)
  if [ ${#regressions[@]} -gt 0 ] &&
     ! "$exe" -rss_limit_mb=2048 -timeout=25 -artifact_prefix="$artifacts/" "${regressions[@]}" >"$log.regressions" 2>&1; then
    tail -n 40 "$log.regressions"
    failed+=("$target (a regression input)")
    continue
  fi
  echo "=== $target: fuzzing for ${seconds}s"
  if ! "$exe" -max_total_time="$seconds" -max_len="$(max_len "$target")" -rss_limit_mb=2048 -timeout=25 \
       "${fuzz_flags[@]}" \
       -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$build/inputs/seeds/$target" >"$log" 2>&1; then
    tail -n 60 "$log"
    failed+=("$target")
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || echo "?")
  summary+=("$target: $runs runs, $rate/s, $coverage, corpus $(find "$corpus" -type f | wc -l) files")
done

echo "=== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]} (inputs in $build/artifacts/, logs in $build/logs/)"
  exit 1
fi
echo "no crash"
