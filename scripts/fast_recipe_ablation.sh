#!/usr/bin/env bash
# The ablation of docs/fast_training.md: train_cifar10 --recipe fast with one ingredient changed at a time, each run
# within the same time budget and scored on a validation split held out of the training set (never the test set).
# Writes one CSV per run and a summary line per run to OUT/summary.csv (run,seed,budget_min,evaluated_on,accuracy,
# img_per_s,last_epoch_img_per_s,steps,wall_s,flags): img_per_s is the run's mean (steps x batch over the elapsed
# time of its last CSV row, evaluations included), wall_s from the program's start to its exit.
#
#   scripts/fast_recipe_ablation.sh DATA_ROOT OUT_DIR [BUDGET_MINUTES [SEEDS [RUNS]]]
#     DATA_ROOT  CIFAR-10 (image folder or binary layout)
#     BUDGET     minutes per run (default 60)
#     SEEDS      space-separated seeds (default "0")
#     RUNS       space-separated run names from the table below (default: all)
#   BINARY (default build/release/examples/train_cifar10), VAL_SPLIT (default 5000), THREADS (default 2) and BATCH
#   (the recipes' batch, 128; used only for the mean images/s) can be set in the environment; KEEP_CHECKPOINTS=1
#   keeps each run's checkpoint. The final runs of the recipe, scored on the test set once the tuning is done:
#   VAL_SPLIT=0 KEEP_CHECKPOINTS=1 scripts/fast_recipe_ablation.sh DATA OUT 60 "0 1 2" fast
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data=${1:?usage: scripts/fast_recipe_ablation.sh DATA_ROOT OUT_DIR [BUDGET [SEEDS [RUNS]]]}
out=${2:?usage: scripts/fast_recipe_ablation.sh DATA_ROOT OUT_DIR [BUDGET [SEEDS [RUNS]]]}
budget=${3:-60}
seeds=${4:-0}
binary=${BINARY:-$root/build/release/examples/train_cifar10}
val_split=${VAL_SPLIT:-5000}
keep_checkpoints=${KEEP_CHECKPOINTS:-0}
evaluated_on=validation
[ "$val_split" != 0 ] || evaluated_on=test
threads=${THREADS:-2}
batch=${BATCH:-128}

# name -> the flags that differ from --recipe fast. "fast" is the recipe itself; "-x" removes ingredient x, "+x"
# adds one the recipe does not use. "-stem" is the plain 4x4-pixel patch embedding (64 tokens), "stem64tokens" the
# first-guess two-stage stem that also ends at 64 tokens.
declare -A runs=(
  [fast]=""
  [reference]="--recipe reference"
  [-stem]="--model-config {\"patch_size\":4,\"stem_channels\":[],\"stem_strides\":[]}"
  [stem64tokens]="--model-config {\"patch_size\":4,\"stem_channels\":[32,64],\"stem_strides\":[2,2]}"
  [-avgpool]="--model-config {\"class_token\":true,\"global_pool\":\"token\"}"
  [-ema]="--ema 0"
  [-flip]="--no-eval-flip"
  [-linear]="--decay cosine --min-lr 1e-5"
  [+trivialaugment]="--fast-augmentation --trivial-augment 1 --cutout 0"
  [+cutout]="--fast-augmentation --trivial-augment 0 --cutout 8"
  [+mixup]="--mixup 0.8 --cutmix 1.0"
)
order=(fast reference -stem stem64tokens -avgpool -ema -flip -linear +trivialaugment +cutout +mixup)
selected=(${5:-${order[*]}})

mkdir -p "$out"
header="run,seed,budget_min,evaluated_on,accuracy,img_per_s,last_epoch_img_per_s,steps,wall_s,flags"
[ -f "$out/summary.csv" ] || echo "$header" >"$out/summary.csv"
if [ "$(head -n 1 "$out/summary.csv")" != "$header" ]; then
  echo "$out/summary.csv has other columns than '$header' (written by an older version?): give another OUT_DIR" >&2
  exit 1
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "fast_recipe_ablation: $cpu, $(nproc) cores; budget $budget min, evaluated on $evaluated_on (--val-split $val_split)" >&2
for seed in $seeds; do
  for name in "${selected[@]}"; do
    [ -n "${runs[$name]+set}" ] || { echo "unknown run '$name' (known: ${order[*]})" >&2; exit 1; }
    flags=${runs[$name]}
    csv="$out/${name}_seed${seed}.csv"
    # A run of the reference recipe is sized by the same budget (its recipe otherwise unchanged).
    recipe="--recipe fast"
    [[ "$flags" == *--recipe* ]] && recipe=""
    start=$SECONDS
    # shellcheck disable=SC2086
    "$binary" --data "$data" $recipe $flags --time-budget "$budget" --val-split "$val_split" --seed "$seed" \
      --threads "$threads" --log "$csv" --save "$out/${name}_seed${seed}.safetensors" >"$out/${name}_seed${seed}.log" 2>&1
    wall=$((SECONDS - start))
    last=$(tail -n 1 "$csv")
    IFS=, read -r _ step _ acc last_rate elapsed _ <<<"$last"
    mean_rate=$(awk -v s="$step" -v b="$batch" -v e="$elapsed" 'BEGIN { printf "%.1f", s * b / e }')
    echo "$name,$seed,$budget,$evaluated_on,$acc,$mean_rate,$last_rate,$step,$wall,\"$flags\"" | tee -a "$out/summary.csv"
    [ "$keep_checkpoints" = 1 ] || rm -f "$out/${name}_seed${seed}.safetensors"
  done
done
