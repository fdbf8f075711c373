#!/usr/bin/env bash
# Downloads the official CIFAR-10 binary archive, checks its MD5 and extracts it into a folder (default ./data),
# giving <folder>/cifar-10-batches-bin/, which tessera::data::open_cifar10(<folder>, ...) reads.
#
# Usage: scripts/download_cifar10.sh [folder]
set -euo pipefail

readonly URL="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
readonly MD5="c32a1d4ab5d03f1284b67883e8d87530"
readonly ARCHIVE_NAME="cifar-10-binary.tar.gz"

if [[ $# -gt 1 || "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  echo "usage: $0 [folder]   (default folder: ./data)" >&2
  exit 2
fi
dest="${1:-./data}"

md5_of() {
  if command -v md5sum >/dev/null 2>&1; then
    md5sum "$1" | cut -d' ' -f1
  elif command -v md5 >/dev/null 2>&1; then
    md5 -q "$1"
  else
    echo "error: neither md5sum nor md5 is installed" >&2
    exit 1
  fi
}

if [[ -f "$dest/cifar-10-batches-bin/data_batch_1.bin" && -f "$dest/cifar-10-batches-bin/test_batch.bin" ]]; then
  echo "CIFAR-10 is already in $dest/cifar-10-batches-bin"
  exit 0
fi

mkdir -p "$dest"
archive="$dest/$ARCHIVE_NAME"

if [[ -f "$archive" && "$(md5_of "$archive")" == "$MD5" ]]; then
  echo "Using the archive already downloaded at $archive"
else
  partial="$archive.part"
  rm -f "$partial"
  echo "Downloading $URL (about 162 MB) ..."
  if command -v curl >/dev/null 2>&1; then
    curl --fail --location --retry 3 --output "$partial" "$URL"
  elif command -v wget >/dev/null 2>&1; then
    wget --tries=3 --output-document="$partial" "$URL"
  else
    echo "error: neither curl nor wget is installed" >&2
    exit 1
  fi
  actual="$(md5_of "$partial")"
  if [[ "$actual" != "$MD5" ]]; then
    rm -f "$partial"
    echo "error: MD5 of the download is $actual, expected $MD5 (corrupt or incomplete download; run again)" >&2
    exit 1
  fi
  mv "$partial" "$archive"
fi

echo "Extracting into $dest ..."
tar -xzf "$archive" -C "$dest"
for file in data_batch_1.bin data_batch_2.bin data_batch_3.bin data_batch_4.bin data_batch_5.bin test_batch.bin; do
  if [[ ! -f "$dest/cifar-10-batches-bin/$file" ]]; then
    echo "error: $dest/cifar-10-batches-bin/$file is missing after extraction" >&2
    exit 1
  fi
done
rm -f "$archive"
echo "CIFAR-10 is ready in $dest/cifar-10-batches-bin"
