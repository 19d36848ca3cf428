#!/usr/bin/env bash
# Compares two ftvm builds on a Linux boot: records one boot of the default guest to
# the ready line and power-off (with FTVM_A), then replays that log with both builds
# at the same time, one per core, ROUNDS times (sides swapped every round), and sums
# the user CPU seconds of each. A replay runs exactly the recorded instructions, so
# both sides do the same work; running them together puts them under the same
# machine conditions. Differences under about 5 % are within this VM's noise.
#
#   bench/boot_ab.sh FTVM_A FTVM_B [ROUNDS]
#
# Environment: FTVM_IMAGES (default ~/.cache/ftvm/images), CMDLINE (default
# "console=ttyS0 quiet no5lvl -- true").
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 FTVM_A FTVM_B [ROUNDS]" >&2; exit 2; }
a=$1 b=$2 rounds=${3:-4}
images=${FTVM_IMAGES:-$HOME/.cache/ftvm/images}
cmdline=${CMDLINE:-console=ttyS0 quiet no5lvl -- true}
for bin in "$a" "$b"; do [[ -x $bin ]] || { echo "$0: no ftvm binary at $bin" >&2; exit 2; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$work/boot.log
"$a" run --firmware "$images/fw_dynamic.bin" --kernel "$images/vmlinux" \
    --initrd "$images/initrd.img" --cmdline "$cmdline" --memory 512M \
    --serial file=/dev/null --record "$log"
total_a=0 total_b=0
for r in $(seq "$rounds"); do
    if (( r % 2 )); then first=$a second=$b; else first=$b second=$a; fi
    pids=()
    for side in first second; do
        /usr/bin/time -f "%U" -o "$work/$side" "${!side}" replay --serial null "$log" \
            >"$work/$side.out" 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || { echo "$0: a replay failed:" >&2; cat "$work"/*.out >&2; exit 1; }
    done
    if (( r % 2 )); then ua=$(<"$work/first") ub=$(<"$work/second"); else ua=$(<"$work/second") ub=$(<"$work/first"); fi
    total_a=$(python3 -c "print(round($total_a + $ua, 2))")
    total_b=$(python3 -c "print(round($total_b + $ub, 2))")
    echo "round $r: A ${ua}s B ${ub}s" >&2
done
echo "boot replay x$rounds: A $total_a s, B $total_b s, B/A $(python3 -c "print(round($total_b / $total_a, 3))")"
