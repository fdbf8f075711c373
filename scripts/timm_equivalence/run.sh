#!/bin/sh
# Checks that tessera's CIFAR-10 training step is timm's: records STEPS of tessera's steps (starting weights,
# augmented batches, losses, weights afterwards) and replays them in timm. A development check, not part of CI.
# Usage: scripts/timm_equivalence/run.sh DATA_ROOT [STEPS [SEED [TRAINED_CHECKPOINT [START_STEP [PYTHON]]]]]
#   DATA_ROOT: CIFAR-10 in the image-folder layout (the files must be JPEG/PNG: the check re-decodes them with PIL)
#   TRAINED_CHECKPOINT: a train_cifar10 checkpoint whose gradients on the first batch are compared too
#   START_STEP: replay the steps from this point of the schedule instead of the first ones, continuing
#     TRAINED_CHECKPOINT's weights and AdamW state (e.g. 1000: full learning rate, where weight decay shows)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=$1; steps=${2:-20}; seed=${3:-0}; checkpoint=${4:-}; start=${5:-0}; python=${6:-python3}
work=$(mktemp -d /tmp/timm_equivalence.XXXXXX)
trap 'rm -rf "$work"' EXIT
${CXX:-g++} -O3 -DNDEBUG -fopenmp -march=native -std=c++20 -I"$here/../../include" -isystem /usr/include/eigen3 \
    -isystem /usr/include/stb "$here/record_steps.cpp" -o "$work/record_steps"
"$work/record_steps" "$data" "$work/out" "$steps" "$seed" "$checkpoint" "$start"
"$python" "$here/replay_in_timm.py" "$work/out"
