#!/bin/sh
# Assembles each ISA program and runs it on QEMU, the reference.
# Usage: [FTVM=1] run-qemu.sh [program.S ...]   (default: every *.S but macros.S)
# FTVM=1 assembles the ftvm-only checks too (where QEMU 7.2 departs from the spec).
set -u
dir=$(cd "$(dirname "$0")" && pwd)
out=${TMPDIR:-/tmp}/ftvm-isa-qemu
mkdir -p "$out"
[ $# -eq 0 ] && set -- $(ls "$dir"/*.S | grep -v '/macros.S$')
status=0
for src in "$@"; do
  name=$(basename "$src" .S)
  riscv64-linux-gnu-as -march=rv64gc -mabi=lp64d ${FTVM:+--defsym FTVM=1} -I "$dir" -o "$out/$name.o" "$src" || { status=1; continue; }
  riscv64-linux-gnu-ld -nostdlib -T "$dir/link.ld" -o "$out/$name.elf" "$out/$name.o" || { status=1; continue; }
  timeout 20 qemu-system-riscv64 -M virt -m 256M -nographic -bios none -icount shift=0 \
    -kernel "$out/$name.elf" >"$out/$name.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then echo "PASS $name"; else echo "FAIL $name: exit status $rc (failing check number)"; status=1; fi
done
exit $status
