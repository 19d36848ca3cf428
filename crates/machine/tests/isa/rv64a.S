# RV64A: LR/SC success and failure, every AMO in .W and .D, sign extension
# of .W results, signed and unsigned min/max.
.include "macros.S"
START

# Runs `amo rd, rs2, (mem)` with mem = init and rs2 = src; checks that rd is
# the old value (as the instruction returns it) and memory holds `new`.
.macro TEST_AMO_D amo, init, src, new
  NEXT_TEST
  la a3, amo_word
  li a1, \init
  sd a1, 0(a3)
  li a2, \src
  \amo a0, a2, (a3)
  EXPECT a0, \init
  ld a4, 0(a3)
  EXPECT a4, \new
.endm
# .W: the old value comes back sign-extended, only 32 bits of memory change.
.macro TEST_AMO_W amo, init, src, old, new
  NEXT_TEST
  la a3, amo_word
  li a1, 0x5a5a5a5a00000000 | (\init & 0xffffffff)
  sd a1, 0(a3)
  li a2, \src
  \amo a0, a2, (a3)
  EXPECT a0, \old
  ld a4, 0(a3)
  EXPECT a4, 0x5a5a5a5a00000000 | (\new & 0xffffffff)
.endm

TEST_AMO_D amoswap.d, 0x1111111122222222, 0x8000000000000001, 0x8000000000000001
TEST_AMO_D amoadd.d, 0x7fffffffffffffff, 1, 0x8000000000000000
TEST_AMO_D amoand.d, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0x0f000f000f000f00
TEST_AMO_D amoor.d, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xfff0fff0fff0fff0
TEST_AMO_D amoxor.d, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xf0f0f0f0f0f0f0f0
TEST_AMO_D amomin.d, 5, 0xfffffffffffffffe, 0xfffffffffffffffe
TEST_AMO_D amomin.d, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000
TEST_AMO_D amomax.d, 5, 0xfffffffffffffffe, 5
TEST_AMO_D amomax.d, 0x8000000000000000, 0x7fffffffffffffff, 0x7fffffffffffffff
TEST_AMO_D amominu.d, 5, 0xfffffffffffffffe, 5
TEST_AMO_D amominu.d, 0xffffffffffffffff, 0x8000000000000000, 0x8000000000000000
TEST_AMO_D amomaxu.d, 5, 0xfffffffffffffffe, 0xfffffffffffffffe
TEST_AMO_D amomaxu.d, 0x8000000000000000, 0x7fffffffffffffff, 0x8000000000000000
TEST_AMO_D amoadd.d.aqrl, 1, 2, 3

TEST_AMO_W amoswap.w, 0x80000000, 0x1234567800000001, 0xffffffff80000000, 1
TEST_AMO_W amoadd.w, 0x7fffffff, 1, 0x7fffffff, 0x80000000
TEST_AMO_W amoadd.w, 0xffffffff, 0xffffffff00000002, 0xffffffffffffffff, 1
TEST_AMO_W amoand.w, 0xf0f0f0f0, 0x0ff00ff0, 0xfffffffff0f0f0f0, 0x00f000f0
TEST_AMO_W amoor.w, 0x0000f0f0, 0x80000000, 0xf0f0, 0x8000f0f0
TEST_AMO_W amoxor.w, 0xffffffff, 0x0000ffff, -1, 0xffff0000
TEST_AMO_W amomin.w, 5, 0xfffffffe, 5, 0xfffffffe
TEST_AMO_W amomin.w, 0x80000000, 0x7fffffff, 0xffffffff80000000, 0x80000000
TEST_AMO_W amomax.w, 5, 0xfffffffe, 5, 5
TEST_AMO_W amomax.w, 0x80000000, 0x7fffffff, 0xffffffff80000000, 0x7fffffff
# min/max .W compare only the low 32 bits of rs2 (here its upper half says otherwise)
TEST_AMO_W amomax.w, 1, 0x7fffffff80000000, 1, 1
TEST_AMO_W amominu.w, 5, 0xfffffffe, 5, 5
TEST_AMO_W amominu.w, 0xffffffff, 0x80000000, -1, 0x80000000
TEST_AMO_W amomaxu.w, 5, 0xfffffffe, 5, 0xfffffffe
TEST_AMO_W amomaxu.w, 0x80000000, 0x7fffffff, 0xffffffff80000000, 0x80000000
TEST_AMO_W amominu.w, 1, 0x0000000100000000, 1, 0
# .W on the upper word of a doubleword
NEXT_TEST
  la a3, amo_word
  li a1, 0x8000000012345678
  sd a1, 0(a3)
  li a2, 1
  addi a5, a3, 4
  amoadd.w a0, a2, (a5)
  EXPECT a0, 0xffffffff80000000
  ld a0, 0(a3)
  EXPECT a0, 0x8000000112345678

# --- LR / SC ----------------------------------------------------------------------------
# LR then SC to the same address succeeds (rd = 0) and stores.
NEXT_TEST
  la a3, amo_word
  li a1, 100
  sd a1, 0(a3)
  lr.d a0, (a3)
  EXPECT a0, 100
  li a2, 200
  sc.d a4, a2, (a3)
  EXPECT a4, 0
  ld a0, 0(a3)
  EXPECT a0, 200
# LR.W sign-extends; SC.W stores 32 bits.
NEXT_TEST
  la a3, amo_word
  li a1, 0x11111111fffffffe
  sd a1, 0(a3)
  lr.w a0, (a3)
  EXPECT a0, -2
  li a2, 0x2222222233333333
  sc.w a4, a2, (a3)
  EXPECT a4, 0
  ld a0, 0(a3)
  EXPECT a0, 0x1111111133333333
# SC without a reservation fails (rd != 0) and does not store.
NEXT_TEST
  la a3, amo_word
  li a1, 7
  sd a1, 0(a3)
  lr.d a0, (a3)
  sc.d a4, a1, (a3)      # consumes the reservation
  EXPECT a4, 0
  li a2, 9
  sc.d a4, a2, (a3)      # no reservation any more
  beqz a4, fail
  ld a0, 0(a3)
  EXPECT a0, 7
# A fresh LR/SC pair works again after a failed SC.
NEXT_TEST
  la a3, amo_word
  lr.w a0, (a3)
  li a2, 11
  sc.w a4, a2, (a3)
  EXPECT a4, 0
  lw a0, 0(a3)
  EXPECT a0, 11
# A trap between LR and SC: xRET may keep the reservation (privileged spec,
# "Machine Trap Handler"), so a handler clears it with a dummy SC to another
# address, after which the interrupted SC must fail and leave memory intact.
NEXT_TEST
  la a3, amo_word
  li a1, 21
  sd a1, 0(a3)
  lr.d a0, (a3)
  EXPECT_TRAP 1f
  ecall
  j fail
1:
  la a5, other_word
  sc.d a4, a1, (a5)      # the handler's dummy SC: its own result does not matter
  li a2, 22
  sc.d a4, a2, (a3)
  beqz a4, fail
  ld a0, 0(a3)
  EXPECT a0, 21
# LR/SC on a misaligned address raises a misaligned (or access) fault; AMOs too.
NEXT_TEST
  la a3, amo_word
  addi a3, a3, 4
  EXPECT_TRAP 1f
  lr.d a0, (a3)
  j fail
1:
  TRAP_FIELD a0, TR_CAUSE
  li a1, CAUSE_MISALIGNED_LOAD
  beq a0, a1, 2f
  EXPECT a0, CAUSE_LOAD_ACCESS
2:
  TRAP_FIELD a0, TR_TVAL
  EXPECT_EQ a0, a3
NEXT_TEST
  la a3, amo_word
  addi a3, a3, 2
  EXPECT_TRAP 1f
  amoadd.w a0, a1, (a3)
  j fail
1:
  TRAP_FIELD a0, TR_CAUSE
.ifndef FTVM
  # QEMU 7.2 reports a misaligned AMO as a load misalignment (cause 4); the
  # privileged spec says store/AMO (6). ftvm is held to the spec.
  li a1, CAUSE_MISALIGNED_LOAD
  beq a0, a1, 2f
.endif
  li a1, CAUSE_MISALIGNED_STORE
  beq a0, a1, 2f
  EXPECT a0, CAUSE_STORE_ACCESS
2:
  TRAP_FIELD a0, TR_TVAL
  EXPECT_EQ a0, a3

PASS

.data
.balign 64
amo_word: .dword 0
.balign 64
other_word: .dword 0
