# Shell functions of the scripts that run train_cifar10 (scripts/ci_smoke_train.sh, scripts/kill_resume_test.sh);
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
