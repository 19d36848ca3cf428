# RV64I: arithmetic, logic, shifts, compares, W-forms, LUI/AUIPC, branches,
# jumps with their link values, loads and stores of every width.
.include "macros.S"
START

# --- arithmetic -------------------------------------------------------------
TEST_RR add, 0, 0x7fffffffffffffff, 0x8000000000000001
TEST_RR add, 0x8000000000000000, 0x7fffffffffffffff, 1
TEST_RR sub, 0xffffffffffffffff, 0, 1
TEST_RR sub, 0x7fffffffffffffff, 0x8000000000000000, 1
TEST_RI addi, 0xfffffffffffff800, 0, -2048
TEST_RI addi, 0x80000000000007fe, 0x7fffffffffffffff, 2047
TEST_RI addi, 0xfffffffffffffffe, 0xffffffffffffffff, -1

# --- logic ------------------------------------------------------------------
TEST_RR and, 0x0f000f00, 0xff00ff00, 0x0f0f0f0f
TEST_RR or, 0xff0fff0f, 0xff00ff00, 0x0f0f0f0f
TEST_RR xor, 0xf00ff00f, 0xff00ff00, 0x0f0f0f0f
TEST_RI andi, 0xff00ff00, 0xff00ff00, -1
TEST_RI ori, 0xfffffffffffff80f, 0x0f, -2048
TEST_RI xori, 0xffffffffffffff0f, 0xf0, -1
TEST_RI andi, 0x7ff, 0x123456789abcdfff, 0x7ff

# --- shifts: 6-bit amounts, register amounts use the low 6 bits --------------
TEST_RR sll, 0x8000000000000000, 1, 63
TEST_RR sll, 2, 1, 65
TEST_RR srl, 1, 0x8000000000000000, 63
TEST_RR srl, 0x4000000000000000, 0x8000000000000000, 0x41
TEST_RR sra, 0xffffffffffffffff, 0x8000000000000000, 63
TEST_RR sra, 0xc000000000000000, 0x8000000000000000, 1
TEST_RI slli, 0x8000000000000000, 1, 63
TEST_RI srli, 0x00ffffffffffffff, 0xffffffffffffffff, 8
TEST_RI srai, 0xff80000000000000, 0x8000000000000000, 8
TEST_RI srai, 0x0080000000000000, 0x4000000000000000, 7

# --- compares ---------------------------------------------------------------
TEST_RR slt, 1, 0x8000000000000000, 0
TEST_RR slt, 0, 0, 0x8000000000000000
TEST_RR sltu, 0, 0x8000000000000000, 0
TEST_RR sltu, 1, 0, 0x8000000000000000
TEST_RR slt, 0, 5, 5
TEST_RI slti, 1, -1, 0
TEST_RI sltiu, 1, 5, -1
TEST_RI sltiu, 0, -1, 5
TEST_RI sltiu, 1, 0, 1

# --- W forms: 32-bit result sign-extended -----------------------------------
TEST_RR addw, 0xffffffff80000000, 0x7fffffff, 1
TEST_RR addw, 0, 0xffffffff00000000, 0
TEST_RR subw, 0x7fffffff, 0x80000000, 1
TEST_RI addiw, 0xffffffff80000000, 0x7fffffff, 1
TEST_RI addiw, 0x12345678, 0xaaaaaaaa12345678, 0
TEST_RR sllw, 0xffffffff80000000, 1, 31
TEST_RR sllw, 2, 1, 33
TEST_RR srlw, 1, 0xffffffff80000000, 31
TEST_RR srlw, 0x7fffffff, 0xffffffffffffffff, 0x21
TEST_RR sraw, 0xffffffffffffffff, 0x80000000, 31
TEST_RR sraw, 0xfffffffff8000000, 0x0000000080000000, 4
TEST_RI slliw, 0xffffffff80000000, 0x1, 31
TEST_RI srliw, 0x0fffffff, 0xffffffffffffffff, 4
TEST_RI sraiw, 0xfffffffffff00000, 0x80000000, 11
TEST_RI sraiw, 0x00000000, 0xfffffffe7fffffff, 31

# --- LUI / AUIPC --------------------------------------------------------------
TEST_CASE a0, 0xfffffffffffff000, lui a0, 0xfffff
TEST_CASE a0, 0xffffffff80000000, lui a0, 0x80000
TEST_CASE a0, 0x7ffff000, lui a0, 0x7ffff
NEXT_TEST
1: auipc a0, 0
  la a1, 1b
  EXPECT_EQ a0, a1
NEXT_TEST
1: auipc a0, 0x1
  la a1, 1b
  sub a0, a0, a1
  EXPECT a0, 0x1000
NEXT_TEST
1: auipc a0, 0xfffff
  la a1, 1b
  sub a0, a1, a0
  EXPECT a0, 0x1000

# --- branches -----------------------------------------------------------------
.macro TEST_BRANCH op, a, b, taken
  NEXT_TEST
  li a1, \a
  li a2, \b
  \op a1, a2, 1f
  .if \taken
    j fail
  .else
    j 2f
  .endif
1:
  .if !\taken
    j fail
  .endif
2:
.endm
TEST_BRANCH beq, 5, 5, 1
TEST_BRANCH beq, 5, 6, 0
TEST_BRANCH bne, 5, 6, 1
TEST_BRANCH bne, -1, -1, 0
TEST_BRANCH blt, -1, 0, 1
TEST_BRANCH blt, 0, -1, 0
TEST_BRANCH blt, 3, 3, 0
TEST_BRANCH bge, 3, 3, 1
TEST_BRANCH bge, -1, 0, 0
TEST_BRANCH bge, 0, 0x8000000000000000, 1
TEST_BRANCH bltu, 0, -1, 1
TEST_BRANCH bltu, -1, 0, 0
TEST_BRANCH bgeu, -1, 0, 1
TEST_BRANCH bgeu, 0, -1, 0
TEST_BRANCH bgeu, 7, 7, 1
# Backward branch loop: counts down 10 times.
NEXT_TEST
  li a0, 10
  li a1, 0
1: addi a1, a1, 1
  addi a0, a0, -1
  bnez a0, 1b
  EXPECT a1, 10

# --- jumps and link values ----------------------------------------------------
NEXT_TEST
  jal a0, 1f
2: j fail
1: la a1, 2b
  EXPECT_EQ a0, a1
NEXT_TEST
  la a2, 1f
  jalr a0, 0(a2)
2: j fail
1: la a1, 2b
  EXPECT_EQ a0, a1
# jalr adds the offset and clears bit 0 of the target.
NEXT_TEST
  la a2, 1f
  addi a2, a2, -7
  jalr a0, 8(a2)
2: j fail
  .balign 4
1: la a1, 2b
  EXPECT_EQ a0, a1
# jalr with rd == rs1 uses the old rs1 as the target.
NEXT_TEST
  la a0, 1f
  jalr a0, 0(a0)
2: j fail
1: la a1, 2b
  EXPECT_EQ a0, a1
# jal x0 does not link; x0 stays zero.
NEXT_TEST
  jal zero, 1f
  j fail
1: addi zero, zero, 5
  EXPECT zero, 0

# --- loads and stores of every width -------------------------------------------
.macro TEST_LOAD op, off, expected
  NEXT_TEST
  la a1, load_data
  \op a0, \off(a1)
  EXPECT a0, \expected
.endm
TEST_LOAD lb, 0, 0xffffffffffffff81
TEST_LOAD lbu, 0, 0x81
TEST_LOAD lb, 1, 0x72
TEST_LOAD lh, 0, 0x7281
TEST_LOAD lh, 2, 0xffffffffffff8363
TEST_LOAD lhu, 2, 0x8363
TEST_LOAD lw, 0, 0xffffffff83637281
TEST_LOAD lwu, 0, 0x83637281
TEST_LOAD lw, 4, 0x44332211
TEST_LOAD ld, 0, 0x4433221183637281
TEST_LOAD lb, 15, 0xffffffffffffffff
TEST_LOAD lw, -4, 0xffffffffdeadbeef
# Stores write exactly their width.
.macro TEST_STORE sop, value, off, expected
  NEXT_TEST
  la a1, store_area
  li a2, -1
  sd a2, 0(a1)
  sd a2, 8(a1)
  li a2, \value
  \sop a2, \off(a1)
  ld a0, 0(a1)
  EXPECT a0, \expected
  ld a0, 8(a1)
  EXPECT a0, -1
.endm
TEST_STORE sb, 0x123456789abcde00, 0, 0xffffffffffffff00
TEST_STORE sb, 0x00, 7, 0x00ffffffffffffff
TEST_STORE sh, 0x1234, 2, 0xffffffff1234ffff
TEST_STORE sw, 0x12345678, 4, 0x12345678ffffffff
TEST_STORE sd, 0x0123456789abcdef, 0, 0x0123456789abcdef
# Store then load back through a negative offset.
NEXT_TEST
  la a1, store_area + 16
  li a2, 0x55aa
  sh a2, -16(a1)
  lhu a0, -16(a1)
  EXPECT a0, 0x55aa
# Loads into x0 are discarded.
NEXT_TEST
  la a1, load_data
  ld zero, 0(a1)
  EXPECT zero, 0
# FENCE and FENCE.I execute.
NEXT_TEST
  fence
  fence.i
  fence rw, rw

PASS

.data
.balign 16
  .word 0xdeadbeef
load_data:
  .byte 0x81, 0x72, 0x63, 0x83, 0x11, 0x22, 0x33, 0x44
  .byte 0, 0, 0, 0, 0, 0, 0, 0xff
.bss
.balign 16
store_area:
  .space 32
