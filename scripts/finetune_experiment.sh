#!/usr/bin/env bash
# The transfer experiment of docs/finetuning.md: pretrain vit_cifar on CIFAR-10 classes 0-4 (airplane, automobile,
# bird, cat, deer), then train on classes 5-9 (dog, frog, horse, ship, truck) three ways for the same number of
# steps — fine-tuned with everything but head.* frozen, fine-tuned with all layers trainable, and from scratch —
# and print the test accuracies.
#
#   scripts/finetune_experiment.sh [CIFAR10_ROOT] [OUT_DIR] [BUILD_DIR]
#
# CIFAR10_ROOT is the image-folder layout (<root>/{train,test}/<class>/*.jpg, e.g. the shared archive extracted:
# <dir>/cifar10); the two halves are made as folders of symbolic links. Settings: PRETRAIN_EPOCHS (2),
# FINETUNE_EPOCHS (1), FINETUNE_IMAGES (0: all 25,000 training images of classes 5-9; e.g. 7680 for 60 steps),
# THREADS (2). An existing pretrained checkpoint in OUT_DIR is reused.
set -euo pipefail
root=${1:-data/cifar10}
out=${2:-finetune-experiment}
build=${3:-build/release}
pretrain_epochs=${PRETRAIN_EPOCHS:-2}
finetune_epochs=${FINETUNE_EPOCHS:-1}
finetune_images=${FINETUNE_IMAGES:-0}
threads=${THREADS:-2}
finetune="$build/examples/finetune"
[ -x "$finetune" ] || { echo "missing $finetune: cmake --build --preset release --target finetune" >&2; exit 1; }
[ -d "$root/train" ] && [ -d "$root/test" ] || { echo "$root has no train/ and test/ folders" >&2; exit 1; }
root=$(cd "$root" && pwd)
mkdir -p "$out"

# Two 5-class image folders: classes 0-4 and 5-9 in CIFAR-10's (alphabetical) order.
for split in train test; do
  mkdir -p "$out/first/$split" "$out/second/$split"
  i=0
  for class in $(ls "$root/$split"); do
    half=$([ $i -lt 5 ] && echo first || echo second)
    ln -sfn "$root/$split/$class" "$out/$half/$split/$class"
    i=$((i + 1))
  done
done

cifar_norm=(--mean 0.4914 0.4822 0.4465 --std 0.2470 0.2435 0.2616)
common=(--threads "$threads" "${cifar_norm[@]}")
run() {  # name, then finetune's flags
  local name=$1
  shift
  echo "== $name: finetune $*"
  "$finetune" "$@" "${common[@]}" --log "$out/$name.csv" --save "$out/$name.safetensors" | grep -E "^(pretrained|kept|removed|resampled|parameters|epoch [0-9]+/[0-9]+  |done)"
}

[ -f "$out/pretrain_0-4.safetensors" ] ||
  run pretrain_0-4 --model vit_cifar --data "$out/first" --epochs "$pretrain_epochs"
# Fine-tuning: a new 5-class head on the pretrained body; warmup over a fifth of the run, then cosine.
finetune_flags=(--data "$out/second" --epochs "$finetune_epochs" --warmup-epochs 0.2 --train-limit "$finetune_images")
run head_only_5-9 --pretrained "$out/pretrain_0-4.safetensors" --freeze '*' --unfreeze 'head.*' "${finetune_flags[@]}"
run all_layers_5-9 --pretrained "$out/pretrain_0-4.safetensors" "${finetune_flags[@]}"
run scratch_5-9 --model vit_cifar "${finetune_flags[@]}"

echo
echo "| run | steps | test accuracy on classes 5-9 (%) | train images/s |"
echo "|---|---|---|---|"
for name in head_only_5-9 all_layers_5-9 scratch_5-9; do  # the last row of each CSV
  tail -n 1 "$out/$name.csv" | awk -F, -v n="$name" '{ printf "| %s | %d | %.2f | %.0f |\n", n, $2, $4, $5 }'
done
tail -n 1 "$out/pretrain_0-4.csv" | awk -F, '{ printf "(pretraining on classes 0-4: %d steps, %.2f%% on their test images)\n", $2, $4 }'
