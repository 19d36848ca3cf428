# RV64M: multiplication high halves, division and remainder with their
# division-by-zero and overflow results, W forms.
.include "macros.S"
START

.equ MIN64, 0x8000000000000000
.equ MAX64, 0x7fffffffffffffff

# --- mul / mulh / mulhsu / mulhu ------------------------------------------------
TEST_RR mul, 42, 6, 7
TEST_RR mul, 0xfffffffffffffffa, -2, 3
TEST_RR mul, 0x0000000000000001, MAX64, MAX64
TEST_RR mul, MIN64, MIN64, -1
TEST_RR mul, 0xfedcba9876543210 * 3, 0xfedcba9876543210, 3
TEST_RR mulh, 0, 6, 7
TEST_RR mulh, 0xffffffffffffffff, -2, 3
TEST_RR mulh, 0x3fffffffffffffff, MAX64, MAX64
TEST_RR mulh, 0x4000000000000000, MIN64, MIN64
TEST_RR mulh, 0, MIN64, -1
TEST_RR mulh, 0xc000000000000000, MIN64, MAX64
TEST_RR mulhu, 0xfffffffffffffffe, -1, -1
TEST_RR mulhu, 0, 6, 7
TEST_RR mulhu, 0x4000000000000000, MIN64, MIN64
TEST_RR mulhu, 0x7ffffffffffffffe, MAX64, -1
# mulhsu: rs1 signed, rs2 unsigned.
TEST_RR mulhsu, 0xffffffffffffffff, -1, -1
TEST_RR mulhsu, 0xffffffffffffffff, -2, 3
TEST_RR mulhsu, 0xc000000000000000, MIN64, MIN64
TEST_RR mulhsu, 0x7ffffffffffffffe, MAX64, -1
TEST_RR mulhsu, 2, 3, -1
TEST_RR mulw, 0xffffffff80000000, 0x40000000, 2
TEST_RR mulw, 0x00000000, 0x80000000, 0x80000000
TEST_RR mulw, 0xfffffffffffffffe, 0x12345678ffffffff, 0x2
TEST_RR mulw, 0x1, 0xffffffff, 0xffffffff

# --- div / divu / rem / remu ---------------------------------------------------------
TEST_RR div, 3, 20, 6
TEST_RR div, -3, -20, 6
TEST_RR div, -3, 20, -6
TEST_RR div, 3, -20, -6
TEST_RR rem, 2, 20, 6
TEST_RR rem, -2, -20, 6
TEST_RR rem, 2, 20, -6
TEST_RR rem, -2, -20, -6
TEST_RR divu, 0x2aaaaaaaaaaaaaa7, -20, 6
TEST_RR remu, 2, -20, 6
# division by zero: quotient all ones, remainder the dividend
TEST_RR div, -1, 20, 0
TEST_RR div, -1, MIN64, 0
TEST_RR divu, -1, 20, 0
TEST_RR rem, 20, 20, 0
TEST_RR rem, -20, -20, 0
TEST_RR remu, -20, -20, 0
# overflow: -2^63 / -1
TEST_RR div, MIN64, MIN64, -1
TEST_RR rem, 0, MIN64, -1
TEST_RR divu, 0, MIN64, -1
TEST_RR remu, MIN64, MIN64, -1

# --- W forms: operate on the low 32 bits, sign-extend the result ---------------------
TEST_RR divw, 3, 0xffffffff00000014, 6
TEST_RR divw, -3, -20, 6
TEST_RR divuw, 0x2aaaaaa7, -20, 6
TEST_RR divuw, 0xffffffff80000000, 0x80000000, 1
TEST_RR remw, -2, -20, 6
TEST_RR remuw, 2, -20, 6
TEST_RR remuw, 0xffffffff80000000, 0x1234567880000000, 0
TEST_RR divw, -1, 20, 0
TEST_RR divuw, -1, 20, 0
TEST_RR remw, 0xffffffff80000000, 0x80000000, 0
TEST_RR remw, 20, 0xffff000000000014, 0
TEST_RR divw, 0xffffffff80000000, 0x80000000, -1
TEST_RR remw, 0, 0x80000000, -1
TEST_RR divw, 0xffffffff80000000, 0x80000000, 0xffffffff
TEST_RR divuw, 0, 0x80000000, -1
TEST_RR remuw, 0xffffffff80000000, 0x80000000, -1
# the upper halves of W-form operands are ignored
TEST_RR divw, 1, 0x0000000100000007, 0xffffffff00000007
# rd == rs1 == rs2
NEXT_TEST
  li a0, 7
  mul a0, a0, a0
  EXPECT a0, 49
NEXT_TEST
  li a0, -7
  div a0, a0, a0
  EXPECT a0, 1

PASS
