#!/usr/bin/env bash
# Data-parallel test of train_cifar10 on a small CIFAR-10 subset (docs/distributed.md): `mpirun -np 2` against one
# process at the same global batch (20 steps: the same train_loss in every CSV row within 1e-5 relative, the same test
# accuracy), a 2-rank checkpoint resumed in 1 process and a 1-process checkpoint resumed on 2 ranks (both ending with
# the rows of the uninterrupted run), then one rank killed mid-run: the job must end within 60 s with a message and
# the checkpoint on disk must load.
#
# Usage: scripts/mpi_train_test.sh DATA_OR_ARCHIVE BINARY [MPIEXEC]
#   DATA_OR_ARCHIVE: a CIFAR-10 folder (binary or image-folder layout), or the JPEG archive CI has at
#                    ../shared/data/cifar10-jpg.tar.gz (the subset is extracted to a temporary folder)
#   BINARY:          train_cifar10 built with TESSERA_MPI
#   MPIEXEC:         default mpirun (Open MPI; as root it gets --allow-run-as-root)
# Exit status: 0 when every check passed, 1 when one failed, 2 for bad arguments, 77 when the data is missing.
set -euo pipefail
# shellcheck source=scripts/lib/train_cifar10.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/train_cifar10.sh"

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 DATA_OR_ARCHIVE BINARY [MPIEXEC]" >&2
  exit 2
fi
data="$1"
binary="$2"
mpiexec="${3:-mpirun}"
if [[ ! -e "$data" ]]; then
  echo "mpi_train_test: no CIFAR-10 data at '$data': skipped" >&2
  exit 77
fi
require_train_cifar10 mpi_train_test "$binary" 2
mpi_flags=(--oversubscribe --bind-to none)
[[ $(id -u) -eq 0 ]] && mpi_flags+=(--allow-run-as-root)

work="$(new_work_dir mpi_train)"
job=""
cleanup() {
  if [[ -n "$job" ]]; then kill -9 "$job" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "mpi_train_test: FAILED: $*" >&2
  exit 1
}

data="$(small_cifar10 mpi_train_test "$data" "$work")"

# 1000 training images in global batches of 100 (10 steps an epoch), 2 epochs, a small ViT, one thread per rank.
common=(--data "$data" --recipe reference --train-limit 1000 --test-limit 200 --batch 100
  --warmup-epochs 1 --time-budget 0 --threads 1 --workers 1
  --model-config '{"embed_dim": 48, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "qkv_bias": false}')
flags=("${common[@]}" --epochs 2)

one() { OMP_NUM_THREADS=1 "$binary" "${flags[@]}" "$@"; }
two() { OMP_NUM_THREADS=1 "$mpiexec" -np 2 "${mpi_flags[@]}" "$binary" "${flags[@]}" "$@"; }

# Rows of CSV $1 and $2 agree: epoch and step equal, train_loss within 1e-5 relative (plus the CSV's 6 decimals),
# test_acc equal.
same_rows() {
  awk -F, 'NR == FNR { loss[FNR] = $3; acc[FNR] = $4; key[FNR] = $1 "," $2; n = FNR; next }
           FNR == 1 { next }
           { m = FNR
             if (key[FNR] != $1 "," $2) { print "row " FNR ": epoch,step " $1 "," $2 " vs " key[FNR]; bad = 1 }
             d = loss[FNR] - $3; if (d < 0) d = -d
             if (d > 1e-5 * $3 + 1.5e-6) { print "row " FNR ": train_loss " $3 " vs " loss[FNR]; bad = 1 }
             if (acc[FNR] != $4) { print "row " FNR ": test_acc " $4 " vs " acc[FNR]; bad = 1 } }
           END { if (m != n) { print m " rows vs " n; bad = 1 } exit bad }' "$1" "$2"
}

echo "mpi_train_test: one process"
one --log "$work/one.csv" --save "$work/one.safetensors" > "$work/one.out" || fail "one process: $(tail -n 3 "$work/one.out")"
echo "mpi_train_test: 2 ranks"
two --log "$work/two.csv" --save "$work/two.safetensors" > "$work/two.out" || fail "2 ranks: $(tail -n 3 "$work/two.out")"
grep -q "2 ranks" "$work/two.out" || fail "the 2-rank run does not say it ran on 2 ranks: $(head -3 "$work/two.out")"
[[ $(grep -c "^train_cifar10: recipe" "$work/two.out") -eq 1 ]] || fail "more than one rank printed"
same_rows "$work/one.csv" "$work/two.csv" || fail "2 ranks differ from one process ($work/one.csv, $work/two.csv)"
echo "mpi_train_test: train_loss,test_acc per epoch: one process $(cut -d, -f3,4 "$work/one.csv" | tail -n +2 | xargs)," \
  "2 ranks $(cut -d, -f3,4 "$work/two.csv" | tail -n +2 | xargs)"

echo "mpi_train_test: 2 ranks to step 10, resumed in one process"
two --max-steps 10 --log "$work/a.csv" --save "$work/a.safetensors" > /dev/null || fail "2 ranks to step 10"
one --resume "$work/a.safetensors" --log "$work/a.csv" --save "$work/a.safetensors" > /dev/null ||
  fail "one process resuming the 2-rank checkpoint"
same_rows "$work/one.csv" "$work/a.csv" || fail "2 ranks resumed in one process differ from one process"

echo "mpi_train_test: one process to step 10, resumed on 2 ranks"
one --max-steps 10 --log "$work/b.csv" --save "$work/b.safetensors" > /dev/null || fail "one process to step 10"
two --resume "$work/b.safetensors" --log "$work/b.csv" --save "$work/b.safetensors" > /dev/null ||
  fail "2 ranks resuming the 1-process checkpoint"
same_rows "$work/one.csv" "$work/b.csv" || fail "one process resumed on 2 ranks differs from one process"

echo "mpi_train_test: killing rank 1 mid-run"
OMP_NUM_THREADS=1 "$mpiexec" -np 2 "${mpi_flags[@]}" "$binary" "${common[@]}" --epochs 200 --dist-timeout 20 \
  --log "$work/k.csv" --save "$work/k.safetensors" > "$work/k.out" 2>&1 &
job=$!
for _ in $(seq 1 1800); do
  [[ -f "$work/k.safetensors" ]] && break
  kill -0 "$job" 2>/dev/null || fail "the 2-rank run ended before its first checkpoint: $(tail -n 5 "$work/k.out")"
  sleep 0.1
done
[[ -f "$work/k.safetensors" ]] || fail "the 2-rank run wrote no checkpoint within 180 s"
victim=""
for pid in $(pgrep -P "$job" || true); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
[[ -n "$victim" ]] || fail "cannot find rank 1 among the children of mpirun ($job)"
kill -9 "$victim"
killed_at=$SECONDS
status=0
for _ in $(seq 1 600); do
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$job" 2>/dev/null; then fail "the job still runs 60 s after rank 1 was killed"; fi
wait "$job" || status=$?
job=""
echo "mpi_train_test: the job ended $((SECONDS - killed_at)) s after the kill, exit status $status; its last words:"
tail -n 6 "$work/k.out" | sed 's/^/  | /'
[[ $status -ne 0 ]] || fail "the job exited with status 0 after a rank was killed"
OMP_NUM_THREADS=1 "$binary" "${common[@]}" --epochs 200 --resume "$work/k.safetensors" --max-steps 1 --log "$work/k2.csv" --save "$work/k2.safetensors" \
  > "$work/k_resume.out" ||
  fail "the checkpoint left by the killed job does not load: $(tail -n 3 "$work/k_resume.out")"
echo "mpi_train_test: all checks passed"
