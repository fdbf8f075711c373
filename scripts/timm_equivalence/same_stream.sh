#!/bin/sh
# Trains timm on exactly what tessera's trainer feeds one seed's 10-epoch run (initial weights, decoded pixels, order,
# crops, flips) and writes its train_cifar10-format CSV, to set beside tessera's CSV of the same seed: whatever
# differs then is the implementation's arithmetic alone. A development check (about an hour at 2 threads), not CI.
# Usage: scripts/timm_equivalence/same_stream.sh DATA_ROOT OUT.csv [SEED [THREADS [PYTHON]]]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data=$1; csv=$2; seed=${3:-0}; threads=${4:-2}; python=${5:-python3}
work=$(mktemp -d /tmp/timm_same_stream.XXXXXX)
trap 'rm -rf "$work"' EXIT
${CXX:-g++} -O2 -DNDEBUG -fopenmp -march=native -std=c++20 -I"$here/../../include" -isystem /usr/include/eigen3 \
    -isystem /usr/include/stb "$here/record_stream.cpp" -o "$work/record_stream"
"$work/record_stream" "$data" "$work/stream" "$seed"
"$python" "$here/train_timm_on_stream.py" "$work/stream" "$csv" --threads "$threads"
