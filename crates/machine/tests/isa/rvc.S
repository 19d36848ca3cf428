# RVC: every class of compressed instruction on RV64, written with explicit
# c.* mnemonics so each encoding is the 16-bit one.
.include "macros.S"
START

# --- immediates and constants -----------------------------------------------------
NEXT_TEST
  c.li a0, -32
  EXPECT a0, -32
NEXT_TEST
  c.li a0, 31
  EXPECT a0, 31
NEXT_TEST
  c.lui a0, 1
  EXPECT a0, 0x1000
NEXT_TEST
  c.lui a0, 0xfffe0         # nzimm = -32 << 12, sign-extended
  EXPECT a0, 0xfffffffffffe0000
NEXT_TEST
  c.lui s1, 0x1f
  EXPECT s1, 0x1f000
NEXT_TEST
  li a0, 10
  c.addi a0, -11
  EXPECT a0, -1
NEXT_TEST
  li a0, 0x7fffffff
  c.addiw a0, 1             # 32-bit add, sign-extended
  EXPECT a0, 0xffffffff80000000
NEXT_TEST
  li a0, 0x123456789
  c.addiw a0, 0             # sext.w
  EXPECT a0, 0x23456789
NEXT_TEST
  mv s0, sp
  c.addi16sp sp, -512
  sub a0, s0, sp
  mv sp, s0
  EXPECT a0, 512
NEXT_TEST
  mv s0, sp
  c.addi16sp sp, 496
  sub a0, sp, s0
  mv sp, s0
  EXPECT a0, 496
NEXT_TEST
  c.addi4spn a0, sp, 1020
  sub a0, a0, sp
  EXPECT a0, 1020
NEXT_TEST
  c.addi4spn a5, sp, 4
  sub a5, a5, sp
  EXPECT a5, 4
NEXT_TEST
  c.nop
  c.nop

# --- shifts and logic on x8..x15 ----------------------------------------------------
NEXT_TEST
  li a0, 1
  c.slli a0, 63
  EXPECT a0, 0x8000000000000000
NEXT_TEST
  li s0, 0x8000000000000000
  c.srli s0, 63
  EXPECT s0, 1
NEXT_TEST
  li s1, 0x8000000000000000
  c.srai s1, 4
  EXPECT s1, 0xf800000000000000
NEXT_TEST
  li a5, 0x8000000000000000
  c.srai a5, 63
  EXPECT a5, -1
NEXT_TEST
  li a4, 0x4000000000000000
  c.srai a4, 32             # shamt[5] set: an RV64-only encoding
  EXPECT a4, 0x40000000
NEXT_TEST
  li a0, 0xfff
  c.andi a0, -16
  EXPECT a0, 0xff0
NEXT_TEST
  li a0, 0xff
  c.andi a0, 5
  EXPECT a0, 5
NEXT_TEST
  li a0, 10
  li a1, 3
  c.sub a0, a1
  EXPECT a0, 7
NEXT_TEST
  li a0, 0xf0f0
  li a1, 0xff00
  c.xor a0, a1
  EXPECT a0, 0x0ff0
NEXT_TEST
  li a0, 0xf0f0
  li a1, 0xff00
  c.or a0, a1
  EXPECT a0, 0xfff0
NEXT_TEST
  li a0, 0xf0f0
  li a1, 0xff00
  c.and a0, a1
  EXPECT a0, 0xf000
NEXT_TEST
  li a0, 0x80000000
  li a1, 1
  c.subw a0, a1
  EXPECT a0, 0x7fffffff
NEXT_TEST
  li a0, 0x7fffffff
  li a1, 1
  c.addw a0, a1
  EXPECT a0, 0xffffffff80000000
NEXT_TEST
  li a0, 5
  li t1, 0x100000000
  c.add a0, t1              # full registers x1..x31
  EXPECT a0, 0x100000005
NEXT_TEST
  li t1, 77
  c.mv t2, t1
  EXPECT t2, 77

# --- loads and stores ------------------------------------------------------------------
NEXT_TEST
  la s0, c_data
  c.lw a0, 4(s0)
  EXPECT a0, 0xffffffff87654321
NEXT_TEST
  la s0, c_data
  c.ld a0, 8(s0)
  EXPECT a0, 0xfedcba9876543210
NEXT_TEST
  la s0, c_data
  c.lw a1, 124(s0)          # largest c.lw offset
  EXPECT a1, 0x7c7c7c7c
NEXT_TEST
  la s0, c_data
  c.ld a1, 248(s0)          # largest c.ld offset
  EXPECT a1, 0xf8f8f8f8f8f8f8f8
NEXT_TEST
  la s0, c_scratch
  li a0, 0x1122334455667788
  c.sd a0, 8(s0)
  c.sw a0, 0(s0)
  ld a1, 8(s0)
  EXPECT a1, 0x1122334455667788
  lwu a1, 0(s0)
  EXPECT a1, 0x55667788
  lwu a1, 4(s0)
  EXPECT a1, 0
NEXT_TEST
  mv s1, sp
  la sp, c_scratch + 64
  li t1, 0xabcdef0123456789
  c.sdsp t1, 504(sp)        # largest c.sdsp offset (the area is 576 bytes)
  c.ldsp t2, 504(sp)
  c.swsp t1, 8(sp)
  c.lwsp t3, 8(sp)
  ld t4, 504(sp)
  mv sp, s1
  EXPECT t2, 0xabcdef0123456789
  EXPECT t3, 0x23456789
  EXPECT t4, 0xabcdef0123456789
NEXT_TEST
  mv s1, sp
  la sp, c_data
  c.lwsp a0, 4(sp)          # sign-extends
  c.ldsp a1, 8(sp)
  mv sp, s1
  EXPECT a0, 0xffffffff87654321
  EXPECT a1, 0xfedcba9876543210
NEXT_TEST
  la s0, c_data
  c.fld fa0, 8(s0)
  fmv.x.d a0, fa0
  EXPECT a0, 0xfedcba9876543210
  la s0, c_scratch
  c.fsd fa0, 16(s0)
  ld a1, 16(s0)
  EXPECT a1, 0xfedcba9876543210
NEXT_TEST
  mv s1, sp
  la sp, c_scratch
  li t1, 0x400921fb54442d18
  fmv.d.x ft0, t1
  c.fsdsp ft0, 24(sp)
  c.fldsp ft1, 24(sp)
  mv sp, s1
  fmv.x.d a0, ft1
  EXPECT a0, 0x400921fb54442d18

# --- control transfer -------------------------------------------------------------------
NEXT_TEST
  c.j 1f
  j fail
1:
NEXT_TEST
  li a0, 0
  c.beqz a0, 1f
  j fail
1:
NEXT_TEST
  li a0, 1
  c.beqz a0, fail
NEXT_TEST
  li a0, -1
  c.bnez a0, 1f
  j fail
1:
NEXT_TEST
  li a0, 0
  c.bnez a0, fail
NEXT_TEST
  la t1, 1f
  c.jr t1
  j fail
1:
# c.jalr links pc + 2
NEXT_TEST
  la t1, 1f
2:c.jalr t1
  j fail
1:
  la t2, 2b
  addi t2, t2, 2
  EXPECT_EQ ra, t2
# c.jalr with rs1 == ra uses the old ra as the target
NEXT_TEST
  la ra, 1f
2:c.jalr ra
  j fail
1:
  la t2, 2b
  addi t2, t2, 2
  EXPECT_EQ ra, t2
# a 32-bit instruction right after a 16-bit one at a 2-byte boundary
NEXT_TEST
  .balign 4
  c.nop
  li a0, 0x12345
  addi a0, a0, 1
  EXPECT a0, 0x12346
# c.ebreak raises a breakpoint with mepc at the 16-bit instruction
NEXT_TEST
  EXPECT_TRAP 1f
2:c.ebreak
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT
  TRAP_FIELD a0, TR_EPC
  la a1, 2b
  EXPECT_EQ a0, a1
# the all-zero halfword is an illegal instruction
NEXT_TEST
  EXPECT_TRAP 1f
  .half 0
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
# c.addi4spn with a zero immediate (reserved) is illegal too
NEXT_TEST
  EXPECT_TRAP 1f
  .half 0x0004             # c.addi4spn a1, sp, 0
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
# c.lwsp with rd = x0 is reserved
NEXT_TEST
  EXPECT_TRAP 1f
  .half 0x4002
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL

PASS

.data
.balign 64
c_data:
  .word 0x00000000, 0x87654321
  .dword 0xfedcba9876543210
  .fill 27, 4, 0
  .word 0x7c7c7c7c
  .fill 30, 4, 0
  .dword 0xf8f8f8f8f8f8f8f8
.bss
.balign 64
c_scratch:
  .space 576
