#!/usr/bin/env bash
# Kill-safety test of train_cifar10 on a small CIFAR-10 subset: trains once without interruption, then again while
# killing it with SIGKILL at random moments (some while it saves: as the checkpoint's temporary file appears or a new
# CSV row lands) and resuming after each kill, then once more with Ctrl-C (SIGINT) and a resume. After every kill the
# CSV must agree with the checkpoint (its rows up to the checkpoint's epoch are the uninterrupted run's; at most one row
# beyond it, written just before a checkpoint that the kill cut short, which the resume drops); at the end the
# checkpoint's tensors and the CSV (every column but the timings) must equal the uninterrupted run's, and no temporary
# file may be left. Python-free: the checkpoints are compared with od, head, tail, grep and cmp.
#
# Usage: scripts/kill_resume_test.sh DATA_OR_ARCHIVE BINARY [KILLS]
#   DATA_OR_ARCHIVE: a CIFAR-10 folder (binary or image-folder layout), or the JPEG archive CI has at
#                    ../shared/data/cifar10-jpg.tar.gz (extracted to a temporary folder)
#   BINARY:          train_cifar10 (cmake --build --preset release --target train_cifar10)
#   KILLS:           SIGKILLs before the run may finish (default 24)
#   SEED (default 1) seeds the random kill times; THREADS (default 2) the compute threads of each run.
# Exit status: 0 when every check passed, 1 when one failed (the message says which), 2 for bad arguments or when
# started with SIGINT ignored.
set -euo pipefail
# shellcheck source=scripts/lib/train_cifar10.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/train_cifar10.sh"

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 DATA_OR_ARCHIVE BINARY [KILLS]" >&2
  exit 2
fi
data="$1"
binary="$2"
kills="${3:-24}"
threads="${THREADS:-2}"
RANDOM="${SEED:-1}"
require_train_cifar10 kill_resume_test "$binary" 2

# A process started with SIGINT ignored (a background job of a non-interactive shell, nohup, some CI runners) passes
# the ignore on, and train_cifar10 leaves an inherited ignore alone, as programs should: the Ctrl-C part could not
# work. Say so before spending minutes on the kills. (Signal 2 is bit 1 of /proc's SigIgn mask.)
if [[ -r /proc/$$/status ]]; then
  ignored_mask="$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status")"
  if [[ -n "$ignored_mask" ]] && (( (16#$ignored_mask >> 1) & 1 )); then
    echo "kill_resume_test: error: this shell was started with SIGINT ignored (inherited from its parent: a background" >&2
    echo "  job of a non-interactive shell, or nohup), so the Ctrl-C part cannot be tested. Start it in the foreground," >&2
    echo "  or from a parent that restores SIGINT's default action (for example: python3 -c 'import os, signal;" >&2
    echo "  signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(\"$0\", [\"$0\", ...])')." >&2
    exit 2
  fi
fi

work="$(new_work_dir kill_resume)"
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
set -m  # background jobs keep SIGINT (a script's background jobs otherwise ignore it)

data="$(small_cifar10 kill_resume_test "$data" "$work")"

# 1000 training images in batches of 50 (20 steps an epoch), 8 epochs, a small ViT: seconds per run.
train_flags=(--data "$data" --recipe reference --train-limit 1000 --test-limit 200 --batch 50 --epochs 8
  --warmup-epochs 1 --time-budget 0 --threads "$threads" --workers 1
  --model-config '{"embed_dim": 48, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0}')

fail() {
  echo "kill_resume_test: FAILED: $*" >&2
  exit 1
}

# The safetensors header of checkpoint $1 (the JSON after the 8-byte little-endian length).
header() {
  local length
  length=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
  head -c $((8 + length)) "$1" | tail -c "$length"
}
# A string of the checkpoint's metadata: epoch, global_step.
metadata() { header "$1" | grep -o "\"$2\":\"[0-9]*\"" | grep -o '[0-9][0-9]*'; }
# The tensors' bytes, after the header.
tensor_bytes() {
  local length
  length=$(od -An -t u8 -N 8 "$1" | tr -d ' ')
  tail -c +$((8 + length + 1)) "$1"
}
# Name, dtype, shape and offsets of every tensor, one a line.
tensor_list() {
  header "$1" | grep -o '"[^"]*":{"dtype":"[A-Z0-9]*","shape":\[[0-9,]*\],"data_offsets":\[[0-9]*,[0-9]*\]}'
}
# The CSV without its timing columns (img_per_s, elapsed_s).
csv_rows() { cut -d, -f1-4 "$1"; }

same_checkpoint() {
  cmp -s <(tensor_list "$1") <(tensor_list "$2") || fail "the tensors of $1 and $2 differ in name, dtype or shape"
  [[ -n "$(tensor_list "$1")" ]] || fail "no tensor found in $1"
  cmp -s <(tensor_bytes "$1") <(tensor_bytes "$2") || fail "the tensors' bytes of $1 and $2 differ"
  [[ "$(metadata "$1" global_step)" == "$(metadata "$2" global_step)" ]] || fail "$1 and $2 end at other steps"
}
same_csv() {
  cmp -s <(csv_rows "$1") <(csv_rows "$2") || {
    diff <(csv_rows "$1") <(csv_rows "$2") >&2 || true
    fail "the CSV $2 differs from $1 (columns epoch, step, train_loss, test_acc)"
  }
}

run="$work/run"
ref="$work/reference"
mkdir "$run" "$ref"
start=$SECONDS

# Milliseconds since the epoch.
now_ms() { date +%s%3N; }

# Waits until the run's output, from byte $1 on, holds the trainer's summary (training is about to start), or the
# run ends.
wait_for_start() {
  while kill -0 "$pid" 2>/dev/null; do
    tail -c +$(($1 + 1)) "$2" 2>/dev/null | grep -q '^threads: ' && return 0
    sleep 0.01
  done
  return 0
}

echo "kill_resume_test: the uninterrupted run"
t0=$(now_ms)
"$binary" "${train_flags[@]}" --log "$ref/log.csv" --save "$ref/checkpoint.safetensors" >"$ref/output.txt" 2>&1 &
pid=$!
wait_for_start 0 "$ref/output.txt"
t1=$(now_ms)
wait "$pid" || { cat "$ref/output.txt" >&2; fail "the uninterrupted run failed"; }
pid=""
t2=$(now_ms)
startup_ms=$((t1 - t0))
epoch_ms=$(((t2 - t1) / 8))
reference_seconds=$((SECONDS - start))
reference_rows=$(($(wc -l <"$ref/log.csv") - 1))
[[ $reference_rows -eq 8 ]] || fail "the uninterrupted run wrote $reference_rows CSV rows, not 8"
echo "kill_resume_test: uninterrupted run: $reference_seconds s (start-up $startup_ms ms, then $epoch_ms ms an epoch)"
mapfile -t expected_rows < <(csv_rows "$ref/log.csv")

# After a kill: the CSV holds the uninterrupted run's rows up to the checkpoint's epoch, and at most one more (the
# epoch whose checkpoint the kill cut short).
csv_ahead=0
check_after_kill() {
  local checkpoint_epoch=0 rows=0
  if [[ -f "$run/checkpoint.safetensors" ]]; then
    checkpoint_epoch=$(metadata "$run/checkpoint.safetensors" epoch)
    local checkpoint_step
    checkpoint_step=$(metadata "$run/checkpoint.safetensors" global_step)
    ((checkpoint_step == checkpoint_epoch * 20)) ||
      fail "the checkpoint is at step $checkpoint_step, not at the end of epoch $checkpoint_epoch"
  fi
  if [[ -f "$run/log.csv" ]]; then
    mapfile -t actual_rows < <(csv_rows "$run/log.csv")
    rows=$((${#actual_rows[@]} - 1))
    local i
    for ((i = 0; i <= rows; i++)); do
      [[ "${actual_rows[i]}" == "${expected_rows[i]}" ]] ||
        fail "after kill $1, CSV line $((i + 1)) is '${actual_rows[i]}';" \
          "the uninterrupted run has '${expected_rows[i]}'"
    done
  fi
  if ((rows == checkpoint_epoch + 1)); then
    csv_ahead=$((csv_ahead + 1))
  elif ((rows != checkpoint_epoch)); then
    fail "after kill $1 the CSV has $rows rows and the checkpoint is at epoch $checkpoint_epoch"
  fi
  local left=""
  compgen -G "$run/*.tmp-*" >/dev/null && left=", temporary file left"
  echo "  kill $1 ($2): checkpoint at epoch $checkpoint_epoch, CSV rows $rows$left"
}

# Starts the run in the background (resuming when there is a checkpoint); session_start is where its output begins.
start_run() {
  local resume=()
  session_start=$(stat -c %s "$run/output.txt" 2>/dev/null || echo 0)
  touch "$work/session_marker"
  [[ -f "$run/checkpoint.safetensors" ]] && resume=(--resume "$run/checkpoint.safetensors")
  "$binary" "${train_flags[@]}" --log "$run/log.csv" --save "$run/checkpoint.safetensors" "${resume[@]}" \
    >>"$run/output.txt" 2>&1 &
  pid=$!
}

# Waits, polling with shell builtins only (no process per poll, so the kill follows within microseconds), until the
# run writes something new: a temporary file of the checkpoint that was not there when the session started ("temp":
# the checkpoint's save is under way), or a CSV newer than the session ("row": the checkpoint's save follows at once);
# gives up when the run ends.
wait_for() {
  local before_temps file
  before_temps=" $(cd "$run" && echo checkpoint.safetensors.tmp-*) "
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $1 == temp ]]; then
      for file in "$run"/checkpoint.safetensors.tmp-*; do
        [[ -e "$file" && "$before_temps" != *" ${file##*/} "* ]] && return 0
      done
    elif [[ "$run/log.csv" -nt "$work/session_marker" ]]; then
      return 0
    fi
  done
  return 0
}

kill_count=0
# Four ways to kill, drawn at random: as the checkpoint's temporary file appears, as a new CSV row lands (the
# checkpoint's save follows it), at a random moment of the start-up (loading, resuming), at a random moment of up to
# 2.5 epochs of training. From epoch 6 on only kills during the start-up, which cannot let the run progress, so that
# every kill lands before the run is over (on a fast machine, a Zen 5, a save's temporary file can come and go between
# two polls: a kill waiting for one then finds the run finished).
while ((kill_count < kills)); do
  epochs_done=0
  [[ -f "$run/checkpoint.safetensors" ]] && epochs_done=$(metadata "$run/checkpoint.safetensors" epoch)
  mode=$((RANDOM % 4))
  ((epochs_done >= 6)) && mode=2
  start_run
  case $mode in
    0) wait_for temp; how="as a temporary file appeared" ;;
    1) wait_for row; how="as a CSV row appeared" ;;
    2) delay_ms=$((RANDOM % (startup_ms + 1)))
       sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"; how="$delay_ms ms after the start" ;;
    3) wait_for_start "$session_start" "$run/output.txt"
       delay_ms=$((RANDOM % (epoch_ms * 5 / 2 + 1)))
       sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"; how="$delay_ms ms into training" ;;
  esac
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" || fail "the run failed on its own: $(tail -n 5 "$run/output.txt")"
    pid=""
    echo "  the run finished before kill $((kill_count + 1)) could land"
    break
  fi
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  kill_count=$((kill_count + 1))
  check_after_kill "$kill_count" "$how"
done
((kill_count >= kills)) || fail "only $kill_count kills landed before the run finished (wanted $kills)"

echo "kill_resume_test: resuming to the end"
start_run
wait "$pid" || fail "the last resumed run failed: $(tail -n 5 "$run/output.txt")"
pid=""
same_csv "$ref/log.csv" "$run/log.csv"
same_checkpoint "$ref/checkpoint.safetensors" "$run/checkpoint.safetensors"
! compgen -G "$run/*.tmp-*" >/dev/null || fail "temporary files left: $(echo "$run"/*.tmp-*)"
removed=$(grep -c "left by a save that was interrupted" "$run/output.txt" || true)
echo "kill_resume_test: OK after $kill_count SIGKILLs: the CSV was one row ahead of the checkpoint after $csv_ahead" \
  "of them (dropped on resume); $removed stale temporary files removed at the next start; the final checkpoint's" \
  "tensors and the CSV equal the uninterrupted run's"

echo "kill_resume_test: Ctrl-C (SIGINT) in the middle of epoch 3, then resume"
rm -rf "$run"
mkdir "$run"
start_run
while kill -0 "$pid" 2>/dev/null && [[ $(cat "$run/log.csv" 2>/dev/null | wc -l) -lt 3 ]]; do sleep 0.01; done
sleep 0.$((RANDOM % 5 + 2))
kill -INT "$pid"
status=0
wait "$pid" || status=$?
pid=""
[[ $status -eq 130 ]] ||
  fail "after SIGINT train_cifar10 exited with status $status, not 130: $(tail -n 5 "$run/output.txt")"
grep -q "stopped by SIGINT at step" "$run/output.txt" || fail "no 'stopped by SIGINT' message"
grep -q -- "--resume $run/checkpoint.safetensors" "$run/output.txt" || fail "no resume instruction"
step=$(metadata "$run/checkpoint.safetensors" global_step)
last_row_step=$(tail -n 1 "$run/log.csv" | cut -d, -f2)
[[ "$step" == "$last_row_step" ]] ||
  fail "after SIGINT the checkpoint is at step $step, the CSV's last row at $last_row_step"
echo "  stopped with status 130 at step $step (epoch $(metadata "$run/checkpoint.safetensors" epoch) done," \
  "$((step % 20)) steps into the next); CSV ends at step $last_row_step"
echo "kill_resume_test: SIGTERM twice (the second quits at once), then resume"
start_run
sleep 0.$((RANDOM % 5 + 3))
kill -TERM "$pid" 2>/dev/null || true
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
pid=""
start_run
wait "$pid" || fail "the run resumed after SIGINT failed: $(tail -n 5 "$run/output.txt")"
pid=""
same_csv "$ref/log.csv" "$run/log.csv"
same_checkpoint "$ref/checkpoint.safetensors" "$run/checkpoint.safetensors"
echo "kill_resume_test: OK: Ctrl-C then resume reproduces the uninterrupted run ($((SECONDS - start)) s in all)"
