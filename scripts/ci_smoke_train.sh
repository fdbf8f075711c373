#!/usr/bin/env bash
# CI smoke test of the CIFAR-10 trainer: extracts the JPEG archive into a temporary folder, trains train_cifar10's fast
# recipe on 5000 training images within a short time budget and fails unless its accuracy on 1000 test images is
# clearly above chance.
#
# Usage: scripts/ci_smoke_train.sh [archive] [train_cifar10 binary]
#   archive: default ../shared/data/cifar10-jpg.tar.gz, relative to the repository root
#   binary:  default build/release/examples/train_cifar10 (cmake --preset release && cmake --build --preset release)
#   MIN_ACCURACY (percent, default 25) is the bar; BUDGET (minutes, default 3) the length of the run.
set -euo pipefail
# shellcheck source=scripts/lib/train_cifar10.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/train_cifar10.sh"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
archive="${1:-$root/../shared/data/cifar10-jpg.tar.gz}"
binary="${2:-$root/build/release/examples/train_cifar10}"
min_accuracy="${MIN_ACCURACY:-25}"
budget="${BUDGET:-3}"

if [[ ! -f "$archive" ]]; then
  echo "ci_smoke_train: error: no CIFAR-10 archive at '$archive'." >&2
  echo "  CI provides ../shared/data/cifar10-jpg.tar.gz (the JPEG image-folder archive); pass another path as the" >&2
  echo "  first argument, or get the official binary data with scripts/download_cifar10.sh and run train_cifar10." >&2
  exit 1
fi
require_train_cifar10 ci_smoke_train "$binary" 1

work="$(new_work_dir smoke_train)"
trap 'rm -rf "$work"' EXIT

echo "ci_smoke_train: extracting $archive"
tar -xzf "$archive" -C "$work"

start=$SECONDS
"$binary" --data "$work" --recipe fast --train-limit 5000 --test-limit 1000 --time-budget "$budget" --batch 64 \
  --log "$work/log.csv" --save "$work/checkpoint.safetensors"
echo "ci_smoke_train: ran in $((SECONDS - start)) s with a budget of $budget minutes"

if [[ ! -s "$work/log.csv" ]]; then
  echo "ci_smoke_train: error: train_cifar10 wrote no log" >&2
  exit 1
fi
echo "ci_smoke_train: log"
cat "$work/log.csv"
accuracy="$(tail -n 1 "$work/log.csv" | cut -d, -f4)"
if awk -v a="$accuracy" -v m="$min_accuracy" 'BEGIN { exit !(a + 0 > m + 0) }'; then
  echo "ci_smoke_train: OK: test accuracy ${accuracy}% > ${min_accuracy}% (chance is 10%)"
else
  echo "ci_smoke_train: FAILED: test accuracy ${accuracy}% is not above ${min_accuracy}% (chance is 10%)" >&2
  exit 1
fi

# --evaluate reads the checkpoint back and must score what the run's last evaluation scored (the same weights, the
# weight average, on the same 1000 images with the same flips); --trained-weights reads the weights it averaged.
evaluation="$("$binary" --data "$work" --test-limit 1000 --evaluate "$work/checkpoint.safetensors")"
echo "$evaluation"
evaluated="$(sed -n 's/.*: accuracy \([0-9.]*\)% .*/\1/p' <<<"$evaluation")"
if [[ "$evaluated" != "$accuracy" ]]; then
  echo "ci_smoke_train: FAILED: --evaluate scored '${evaluated}%', the run's last evaluation ${accuracy}%" >&2
  exit 1
fi
"$binary" --data "$work" --test-limit 1000 --evaluate "$work/checkpoint.safetensors" --trained-weights --no-eval-flip
echo "ci_smoke_train: OK: --evaluate reproduces the run's accuracy"
