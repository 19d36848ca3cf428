# Misaligned loads and stores of every width, inside a page and across a
# page boundary: they must complete without a trap and give the right values.
.include "macros.S"
START

# Any trap fails the check in progress (no EXPECT_TRAP anywhere below).

# buf holds bytes 0x00, 0x11, ..., at offsets 0..15 around a page boundary:
# byte i of the pattern is at page_end - 8 + i.
  la a3, page_end
  addi a3, a3, -8
  li a1, 0x7766554433221100
  sd a1, 0(a3)
  li a1, 0xffeeddccbbaa9988
  sd a1, 8(a3)
  la a4, inpage                       # the same pattern well inside a page
  li a1, 0x7766554433221100
  sd a1, 0(a4)
  li a1, 0xffeeddccbbaa9988
  sd a1, 8(a4)

.macro TEST_MLOAD base, op, off, expected
  NEXT_TEST
  \op a0, \off(\base)
  EXPECT a0, \expected
.endm

# --- loads inside a page ---------------------------------------------------------------
TEST_MLOAD a4, lh, 1, 0x2211
TEST_MLOAD a4, lh, 7, 0xffffffffffff8877
TEST_MLOAD a4, lhu, 7, 0x8877
TEST_MLOAD a4, lw, 1, 0x44332211
TEST_MLOAD a4, lw, 5, 0xffffffff88776655
TEST_MLOAD a4, lwu, 5, 0x88776655
TEST_MLOAD a4, lw, 6, 0xffffffff99887766
TEST_MLOAD a4, ld, 1, 0x8877665544332211
TEST_MLOAD a4, ld, 3, 0xaa99887766554433
TEST_MLOAD a4, ld, 7, 0xeeddccbbaa998877
# --- loads across the page boundary (at a3 + 8) --------------------------------------------
TEST_MLOAD a3, lh, 7, 0xffffffffffff8877
TEST_MLOAD a3, lhu, 7, 0x8877
TEST_MLOAD a3, lw, 5, 0xffffffff88776655
TEST_MLOAD a3, lw, 7, 0xffffffffaa998877
TEST_MLOAD a3, lwu, 6, 0x99887766
TEST_MLOAD a3, ld, 1, 0x8877665544332211
TEST_MLOAD a3, ld, 4, 0xbbaa998877665544
TEST_MLOAD a3, ld, 7, 0xeeddccbbaa998877
NEXT_TEST
  c.ld a0, 0(a3)                      # aligned control
  EXPECT a0, 0x7766554433221100

# --- stores: write exactly their bytes ------------------------------------------------------
.macro TEST_MSTORE base, op, off, value, lo, hi
  NEXT_TEST
  sd zero, 0(\base)
  sd zero, 8(\base)
  li a1, \value
  \op a1, \off(\base)
  ld a0, 0(\base)
  EXPECT a0, \lo
  ld a0, 8(\base)
  EXPECT a0, \hi
.endm
TEST_MSTORE a4, sh, 3, 0xaabb, 0xaabb000000, 0x0
TEST_MSTORE a4, sw, 2, 0x11223344, 0x112233440000, 0x0
TEST_MSTORE a4, sd, 1, 0x102030405060708, 0x203040506070800, 0x1
TEST_MSTORE a3, sh, 7, 0xaabb, 0xbb00000000000000, 0xaa
TEST_MSTORE a3, sw, 6, 0x11223344, 0x3344000000000000, 0x1122
TEST_MSTORE a3, sw, 5, 0x11223344, 0x2233440000000000, 0x11
TEST_MSTORE a3, sd, 3, 0x102030405060708, 0x405060708000000, 0x10203
TEST_MSTORE a3, sd, 7, 0x102030405060708, 0x800000000000000, 0x1020304050607

# --- floating-point loads and stores across the boundary -------------------------------------
NEXT_TEST
  li a1, 0x400921fb54442d18
  sd zero, 0(a3)
  sd zero, 8(a3)
  fmv.d.x fa0, a1
  fsd fa0, 5(a3)
  fld fa1, 5(a3)
  fmv.x.d a0, fa1
  EXPECT a0, 0x400921fb54442d18
  ld a0, 0(a3)
  EXPECT a0, 0x442d180000000000
NEXT_TEST
  li a1, 0x40490fdb
  fmv.w.x fa0, a1
  fsw fa0, 6(a3)
  flw fa1, 6(a3)
  fmv.x.d a0, fa1
  EXPECT a0, 0xffffffff40490fdb
# --- the same in S-mode and U-mode (satp bare) ----------------------------------------------
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:
  li a1, 0x1122334455667788
  sd a1, 3(a3)
  ld a0, 3(a3)
  lw a2, 6(a3)
  ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_S
  EXPECT a0, 0x1122334455667788
  EXPECT a2, 0x22334455
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 0, 2f
2:
  li a1, 0x8877665544332211
  sd a1, 5(a3)
  ld a0, 5(a3)
  lhu a2, 7(a3)
  ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_U
  EXPECT a0, 0x8877665544332211
  EXPECT a2, 0x4433

PASS

.data
.balign 4096
  .space 4096
page_end:
  .space 4096
.balign 64
  .space 64
inpage:
  .space 64
