#!/usr/bin/env bash
# Compares the interpreters of two ftvm builds on a bare-metal bench program: both
# run at the same time, one per core, ROUNDS times (sides swapped every round), and
# the user CPU seconds of each are summed. Running them together puts both under the
# same machine conditions, which sequential timings on a shared VM do not.
#
#   bench/cpu_ab.sh FTVM_A FTVM_B [intbench|fpbench] [ROUNDS]
#
# The programs are `make -C bench baremetal` (build/intbench-bm, build/fpbench-bm);
# each run must power off with status 0 (its checksum is right), else the script
# fails. Prints each side's total and B/A.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 2 ]] || { echo "usage: $0 FTVM_A FTVM_B [intbench|fpbench] [ROUNDS]" >&2; exit 2; }
a=$1 b=$2 prog=${3:-intbench} rounds=${4:-6}
fw=$here/build/$prog-bm
[[ -f $fw ]] || make -C "$here" baremetal >&2
for bin in "$a" "$b"; do [[ -x $bin ]] || { echo "$0: no ftvm binary at $bin" >&2; exit 2; }; done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
total_a=0 total_b=0
for r in $(seq "$rounds"); do
    if (( r % 2 )); then first=$a second=$b; else first=$b second=$a; fi
    pids=()
    for side in first second; do
        bin=${!side}
        /usr/bin/time -f "%U" -o "$work/$side" "$bin" run --firmware "$fw" --memory 64M \
            --serial file=/dev/null &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || { echo "$0: a run failed (status $?)" >&2; exit 1; }; done
    if (( r % 2 )); then ua=$(<"$work/first") ub=$(<"$work/second"); else ua=$(<"$work/second") ub=$(<"$work/first"); fi
    total_a=$(python3 -c "print(round($total_a + $ua, 2))")
    total_b=$(python3 -c "print(round($total_b + $ub, 2))")
    echo "round $r: A ${ua}s B ${ub}s" >&2
done
echo "$prog x$rounds: A $total_a s, B $total_b s, B/A $(python3 -c "print(round($total_b / $total_a, 3))")"
