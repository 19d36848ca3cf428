#!/usr/bin/env bash
# Makes the benchmark initrd: the guest initrd with a second, uncompressed newc cpio
# archive appended that holds /bench/intbench and /bench/fpbench. Linux unpacks
# concatenated initramfs archives in order, so the base initrd is used unchanged.
#
# Usage: mkinitrd-bench.sh [BASE_INITRD [OUTPUT]]
#   BASE_INITRD  default: $FTVM_IMAGES/initrd.img (or ~/.cache/ftvm/images/initrd.img)
#   OUTPUT       default: bench/build/bench-initrd.img
# Builds the guest programs first if they are missing or stale (make -C bench).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
images=${FTVM_IMAGES:-$HOME/.cache/ftvm/images}
base=${1:-$images/initrd.img}
out=${2:-$here/build/bench-initrd.img}

if [[ ! -f $base ]]; then
    echo "mkinitrd-bench: base initrd '$base' not found (run 'ftvm images fetch' or set FTVM_IMAGES)" >&2
    exit 1
fi
command -v cpio >/dev/null || { echo "mkinitrd-bench: cpio is not installed" >&2; exit 1; }

make -s -C "$here" all

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bench"
install -m 0755 "$here/build/intbench" "$here/build/fpbench" "$stage/bench/"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
cp "$base" "$tmp"
# The kernel looks for the next archive's magic at a 4-byte boundary after the
# previous one's trailer; pad the base to a multiple of 4 to be safe.
size=$(stat -c %s "$tmp")
pad=$(( (4 - size % 4) % 4 ))
if (( pad )); then head -c "$pad" /dev/zero >>"$tmp"; fi
(cd "$stage" && find bench | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) >>"$tmp"
mv "$tmp" "$out"
echo "$out"
