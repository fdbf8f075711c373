#!/usr/bin/env bash
# Makes the pictures of docs/attention.md: for a few CIFAR-10 test images, visualize_attention's input, per-head grid
# of the last layer and rollout (titled, with colour bars and the by-value overlay), copied into docs/images/; then
# prints classify's output for the same images.
#
# Usage: scripts/make_attention_pictures.sh CHECKPOINT DATA_ROOT
#   CHECKPOINT: a vit_cifar checkpoint written by train_cifar10 (copy it first if a run is still rewriting it)
#   DATA_ROOT:  the CIFAR-10 image folder that holds test/<class>/NNNN.jpg (or its parent holding cifar10/test/)
#   BUILD_DIR (default build/release, relative to the repository root) holds examples/classify and
#   examples/visualize_attention: cmake --preset release && cmake --build --preset release --target classify visualize_attention
#   NAME_PREFIX (default empty) starts the PNGs' names, e.g. fast_ for a model without a class token (fast recipe),
#   whose pictures show the mean attention each patch receives (docs/attention.md), beside the class-token ones.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ne 2 ]]; then
  echo "usage: $0 CHECKPOINT DATA_ROOT" >&2
  exit 2
fi
checkpoint="$1"
data_root="$2"
build_dir="${BUILD_DIR:-$root/build/release}"
[[ "$build_dir" = /* ]] || build_dir="$root/$build_dir"
out="$root/docs/images"
prefix="${NAME_PREFIX:-}"

# The pictures in the doc: class/file of CIFAR-10 test images.
images=(cat/0002 ship/0006 horse/0006)

if [[ ! -f "$checkpoint" ]]; then
  echo "make_attention_pictures: error: no checkpoint at '$checkpoint'" >&2
  exit 1
fi
if [[ ! -d "$data_root/test" && -d "$data_root/cifar10/test" ]]; then data_root="$data_root/cifar10"; fi
if [[ ! -d "$data_root/test" ]]; then
  echo "make_attention_pictures: error: '$data_root' holds no test/<class>/ folders of CIFAR-10 images" >&2
  exit 1
fi
for program in classify visualize_attention; do
  if [[ ! -x "$build_dir/examples/$program" ]]; then
    echo "make_attention_pictures: error: no $program executable in '$build_dir/examples'." >&2
    echo "  Build it with: cmake --build <build dir> --target classify visualize_attention, and set BUILD_DIR." >&2
    exit 1
  fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/tessera_attention_pictures.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

mkdir -p "$work/images" "$work/pictures"
for image in "${images[@]}"; do
  name="${image%%/*}"
  cp "$data_root/test/$image.jpg" "$work/images/$name.jpg"
  # The last layer (the default); 32x32 images enlarged 4 times: 128x128 pictures of a few tens of KB.
  "$build_dir/examples/visualize_attention" --checkpoint "$checkpoint" --image "$work/images/$name.jpg" --size 128 \
    --out "$work/pictures" --name "$prefix$name"
  cp "$work/pictures/$prefix${name}_input.png" "$work/pictures/$prefix${name}"_layer*_heads.png \
    "$work/pictures/$prefix${name}_rollout.png" "$out/"
done

echo
echo "make_attention_pictures: classify's output for the doc (images: ${images[*]}):"
(cd "$work" && "$build_dir/examples/classify" --checkpoint "$checkpoint" --image images --top 3)
echo
echo "make_attention_pictures: wrote"
ls -l "$out"
