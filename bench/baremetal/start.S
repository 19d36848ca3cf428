# Entry of the bare-metal bench programs: ftvm (or QEMU with -bios none) enters
# here in M-mode with paging off. Sets up a stack, turns the FPU on, runs
# bm_main, which powers off through the sifive,test finisher.
.section .text.start
.globl _start
_start:
  la sp, stack_top
  li t0, 0x6000          # mstatus.FS = Dirty
  csrs mstatus, t0
  call bm_main
1: j 1b

.bss
.align 16
.space 65536
stack_top:
