# shellcheck shell=bash
# Shell functions of the scripts that run train_cifar10 (scripts/ci_smoke_train.sh, scripts/kill_resume_test.sh,
# scripts/mpi_train_test.sh);
# source it: . "$(dirname "${BASH_SOURCE[0]}")/lib/train_cifar10.sh"

# require_train_cifar10 SCRIPT BINARY STATUS: unless BINARY is an executable file, says so (as SCRIPT) with how to
# build it, and exits with STATUS.
require_train_cifar10() {
  local script="$1" binary="$2" status="$3"
  if [[ ! -x "$binary" || -d "$binary" ]]; then
    echo "$script: error: no train_cifar10 executable at '$binary'." >&2
    echo "  Build it with: cmake --preset release && cmake --build --preset release --target train_cifar10 -j2" >&2
    echo "  or pass its path as the second argument." >&2
    exit "$status"
  fi
}

# new_work_dir NAME: prints the path of a new, empty temporary folder tessera_NAME.XXXXXX under $TMPDIR or /tmp.
new_work_dir() {
  mktemp -d "${TMPDIR:-/tmp}/tessera_$1.XXXXXX"
}

# small_cifar10 SCRIPT DATA WORK: prints the root of a small CIFAR-10 for test runs that start many times, made in the
# folder WORK from DATA: the JPEG archive (only the images the subset takes are extracted when the archive names them
# as the shared one does, else all), an image folder, or the binary layout (printed as it is: it loads fast, and
# --train-limit/--test-limit take the counts from it). Of an image folder, the first 100 training and 20 test images
# of each class (by name) are copied into WORK/subset, so that each start decodes 1200 images rather than 60000.
small_cifar10() {
  local script="$1" data="$2" work="$3" split_count split class_dir class files
  if [[ -f "$data" ]]; then
    echo "$script: extracting $data" >&2
    mkdir "$work/data"
    tar -xzf "$data" -C "$work/data" --wildcards '*train/*/00[0-9][0-9].jpg' '*test/*/00[01][0-9].jpg' 2>/dev/null ||
      tar -xzf "$data" -C "$work/data"
    data="$work/data"
    [[ -d "$data/cifar10" ]] && data="$data/cifar10"
  fi
  if [[ -d "$data/train" && -d "$data/test" ]]; then
    for split_count in train:100 test:20; do
      split=${split_count%%:*}
      for class_dir in "$data/$split"/*/; do
        class=$(basename "$class_dir")
        mkdir -p "$work/subset/$split/$class"
        mapfile -t files < <(LC_ALL=C ls "$class_dir" | head -n "${split_count##*:}")
        (cd "$class_dir" && cp -- "${files[@]}" "$work/subset/$split/$class/")
      done
    done
    data="$work/subset"
  fi
  echo "$data"
}
