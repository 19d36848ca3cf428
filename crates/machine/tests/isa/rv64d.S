# RV64D (and the shared F/D rules): rounding modes, dynamic rounding through
# frm, every fflags bit, canonical NaNs, fmin/fmax, fclass, conversions with
# saturation, fused multiply-add.
.include "macros.S"
START

.equ ONE, 0x3ff0000000000000
.equ MONE, 0xbff0000000000000
.equ TWO, 0x4000000000000000
.equ HALF, 0x3fe0000000000000
.equ THREE, 0x4008000000000000
.equ P2_5, 0x4004000000000000
.equ M2_5, 0xc004000000000000
.equ P3_5, 0x400c000000000000
.equ PZERO, 0x0000000000000000
.equ MZERO, 0x8000000000000000
.equ PINF, 0x7ff0000000000000
.equ MINF, 0xfff0000000000000
.equ QNAN, 0x7ff8000000000000
.equ SNAN, 0x7ff4000000000000
.equ MAXD, 0x7fefffffffffffff
.equ MINNORM, 0x0010000000000000
.equ TWO_M53, 0x3ca0000000000000     # 2^-53: half an ulp of 1.0
.equ ONE_P, 0x3ff0000000000001       # 1 + 2^-52
.equ MONE_P, 0xbff0000000000001

# --- each static rounding mode on a halfway case -----------------------------------
# 1 + 2^-53 lies halfway between 1 and 1 + 2^-52.
TEST_FP2 fadd.d, D, ONE, NX, ONE, TWO_M53, rne
TEST_FP2 fadd.d, D, ONE, NX, ONE, TWO_M53, rtz
TEST_FP2 fadd.d, D, ONE, NX, ONE, TWO_M53, rdn
TEST_FP2 fadd.d, D, ONE_P, NX, ONE, TWO_M53, rup
TEST_FP2 fadd.d, D, ONE_P, NX, ONE, TWO_M53, rmm
TEST_FP2 fsub.d, D, MONE, NX, MONE, TWO_M53, rne
TEST_FP2 fsub.d, D, MONE, NX, MONE, TWO_M53, rtz
TEST_FP2 fsub.d, D, MONE_P, NX, MONE, TWO_M53, rdn
TEST_FP2 fsub.d, D, MONE, NX, MONE, TWO_M53, rup
TEST_FP2 fsub.d, D, MONE_P, NX, MONE, TWO_M53, rmm
# 1 + 2^-52 + 2^-53 is halfway too, with an odd lower neighbour: RNE rounds up.
TEST_FP2 fadd.d, D, 0x3ff0000000000002, NX, ONE_P, TWO_M53, rne
TEST_FP_TO_X fcvt.w.d, D, 2, NX, P2_5, rne
TEST_FP_TO_X fcvt.w.d, D, 2, NX, P2_5, rtz
TEST_FP_TO_X fcvt.w.d, D, 2, NX, P2_5, rdn
TEST_FP_TO_X fcvt.w.d, D, 3, NX, P2_5, rup
TEST_FP_TO_X fcvt.w.d, D, 3, NX, P2_5, rmm
TEST_FP_TO_X fcvt.w.d, D, -2, NX, M2_5, rne
TEST_FP_TO_X fcvt.w.d, D, -2, NX, M2_5, rtz
TEST_FP_TO_X fcvt.w.d, D, -3, NX, M2_5, rdn
TEST_FP_TO_X fcvt.w.d, D, -2, NX, M2_5, rup
TEST_FP_TO_X fcvt.w.d, D, -3, NX, M2_5, rmm
TEST_FP_TO_X fcvt.l.d, D, 4, NX, P3_5, rne
TEST_FP_TO_X fcvt.l.d, D, 3, 0, THREE, rne

# --- dynamic rounding mode -----------------------------------------------------------
NEXT_TEST
  fsrmi 2                      # rdn
  FLI_D fa1, M2_5
  fcvt.w.d a0, fa1, dyn
  EXPECT a0, -3
  frrm a0
  EXPECT a0, 2
NEXT_TEST
  csrwi frm, 3                 # rup
  FLI_D fa1, ONE
  FLI_D fa2, TWO_M53
  fadd.d fa0, fa1, fa2         # the assembler's default rm is dyn
  fmv.x.d a0, fa0
  EXPECT a0, ONE_P
# fcsr packs frm (bits 7:5) and fflags (bits 4:0)
NEXT_TEST
  csrw fcsr, zero
  csrwi frm, 4
  csrwi fflags, NX
  frcsr a0
  EXPECT a0, (4 << 5) | NX
  li a1, 0xfff
  fscsr a1
  frcsr a0
  EXPECT a0, 0xff
  frrm a0
  EXPECT a0, 7
  frflags a0
  EXPECT a0, 0x1f
# dynamic rounding with an invalid frm (5..7) is an illegal instruction
NEXT_TEST
  csrwi frm, 5
  EXPECT_TRAP 1f
  fadd.d fa0, fa1, fa2, dyn
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
NEXT_TEST
  csrwi frm, 7
  EXPECT_TRAP 1f
  fcvt.w.d a0, fa1, dyn
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  csrw fcsr, zero
# a reserved static rm (5, 6) is illegal whatever frm holds
NEXT_TEST
  EXPECT_TRAP 1f
  .insn r 0x53, 5, 0x01, fa0, fa1, fa2     # fadd.d with rm = 5
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
NEXT_TEST
  EXPECT_TRAP 1f
  .insn r 0x53, 6, 0x01, fa0, fa1, fa2     # fadd.d with rm = 6
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL

# --- every exception flag ---------------------------------------------------------
TEST_FP2 fdiv.d, D, 0x3fd5555555555555, NX, ONE, THREE
TEST_FP2 fdiv.d, D, PINF, DZ, ONE, PZERO
TEST_FP2 fdiv.d, D, MINF, DZ, MONE, PZERO
TEST_FP2 fdiv.d, D, MINF, DZ, ONE, MZERO
TEST_FP2 fmul.d, D, PINF, OF | NX, MAXD, TWO
TEST_FP2 fmul.d, D, MAXD, OF | NX, MAXD, TWO, rtz
TEST_FP2 fadd.d, D, MAXD, NX, MAXD, ONE
TEST_FP2 fmul.d, D, 0x0005555555555555, UF | NX, MINNORM, 0x3fd5555555555555
TEST_FP2 fmul.d, D, 0x0008000000000000, 0, MINNORM, HALF
TEST_FP2 fmul.d, D, PZERO, UF | NX, 0x0000000000000001, HALF
TEST_FP2 fmul.d, D, 0x0000000000000001, UF | NX, 0x0000000000000001, HALF, rup
# tininess is detected after rounding: 2^-1022 * (1 - 2^-104) rounds to the
# smallest normal with an unbounded exponent, so only NX is raised
TEST_FP2 fmul.d, D, MINNORM, NX, 0x3feffffffffffffe, 0x0010000000000001
TEST_FP2 fmul.d, D, QNAN, NV, PINF, PZERO
TEST_FP2 fsub.d, D, QNAN, NV, PINF, PINF
TEST_FP2 fdiv.d, D, QNAN, NV, PZERO, PZERO
TEST_FP2 fdiv.d, D, QNAN, NV, PINF, MINF
TEST_FP1 fsqrt.d, D, QNAN, NV, MONE
TEST_FP1 fsqrt.d, D, MZERO, 0, MZERO
TEST_FP1 fsqrt.d, D, 0x3ff6a09e667f3bcd, NX, TWO
TEST_FP1 fsqrt.d, D, 0x4010000000000000, 0, 0x4030000000000000
# flags accrue until cleared
NEXT_TEST
  csrw fflags, zero
  FLI_D fa1, ONE
  FLI_D fa2, THREE
  FLI_D fa3, PZERO
  fdiv.d fa0, fa1, fa2
  fdiv.d fa0, fa1, fa3
  frflags a0
  EXPECT a0, NX | DZ
  fsflagsi a1, 0
  EXPECT a1, NX | DZ
  frflags a0
  EXPECT a0, 0

# --- canonical NaN results -------------------------------------------------------------
TEST_FP2 fadd.d, D, QNAN, 0, 0x7ff8000000000123, ONE
TEST_FP2 fadd.d, D, QNAN, NV, SNAN, ONE
TEST_FP2 fmul.d, D, QNAN, 0, ONE, 0xfff8000000000001
TEST_FP2 fsub.d, D, QNAN, NV, 0xfff0000000000001, ONE
TEST_FP1 fsqrt.d, D, QNAN, NV, SNAN
# sign injection copies NaNs untouched and raises nothing
TEST_FP2 fsgnj.d, D, 0x7ff4000000000000, 0, SNAN, ONE
TEST_FP2 fsgnjn.d, D, 0xfff4000000000000, 0, SNAN, ONE
TEST_FP2 fsgnjx.d, D, 0xfff8000000000123, 0, 0x7ff8000000000123, MONE
TEST_FP2 fsgnj.d, D, MONE, 0, ONE, MZERO
TEST_FP2 fsgnjn.d, D, MONE, 0, ONE, PZERO
TEST_FP2 fsgnjx.d, D, ONE, 0, MONE, MONE

# --- fmin / fmax ---------------------------------------------------------------------
TEST_FP2 fmin.d, D, MZERO, 0, PZERO, MZERO
TEST_FP2 fmin.d, D, MZERO, 0, MZERO, PZERO
TEST_FP2 fmax.d, D, PZERO, 0, MZERO, PZERO
TEST_FP2 fmax.d, D, PZERO, 0, PZERO, MZERO
TEST_FP2 fmin.d, D, MONE, 0, ONE, MONE
TEST_FP2 fmax.d, D, PINF, 0, PINF, MAXD
TEST_FP2 fmin.d, D, ONE, 0, QNAN, ONE
TEST_FP2 fmax.d, D, ONE, 0, ONE, 0xfff8000000000000
TEST_FP2 fmin.d, D, ONE, NV, SNAN, ONE
TEST_FP2 fmax.d, D, ONE, NV, ONE, SNAN
TEST_FP2 fmin.d, D, QNAN, 0, 0x7ff8000000000555, 0xfff8000000000001
TEST_FP2 fmax.d, D, QNAN, NV, SNAN, QNAN
TEST_FP2 fmax.d, D, QNAN, NV, SNAN, SNAN

# --- compares ----------------------------------------------------------------------------
TEST_FP_CMP feq.d, D, 1, 0, MZERO, PZERO
TEST_FP_CMP flt.d, D, 0, 0, MZERO, PZERO
TEST_FP_CMP fle.d, D, 1, 0, MZERO, PZERO
TEST_FP_CMP flt.d, D, 1, 0, MINF, MONE
TEST_FP_CMP fle.d, D, 0, 0, ONE, MONE
TEST_FP_CMP feq.d, D, 0, 0, QNAN, ONE
TEST_FP_CMP feq.d, D, 0, 0, QNAN, QNAN
TEST_FP_CMP feq.d, D, 0, NV, SNAN, ONE
TEST_FP_CMP flt.d, D, 0, NV, QNAN, ONE
TEST_FP_CMP fle.d, D, 0, NV, ONE, QNAN

# --- fclass: the ten classes -----------------------------------------------------------
TEST_FP_TO_X fclass.d, D, 1 << 0, 0, MINF
TEST_FP_TO_X fclass.d, D, 1 << 1, 0, MONE
TEST_FP_TO_X fclass.d, D, 1 << 2, 0, 0x800fffffffffffff
TEST_FP_TO_X fclass.d, D, 1 << 3, 0, MZERO
TEST_FP_TO_X fclass.d, D, 1 << 4, 0, PZERO
TEST_FP_TO_X fclass.d, D, 1 << 5, 0, 0x0000000000000001
TEST_FP_TO_X fclass.d, D, 1 << 6, 0, MAXD
TEST_FP_TO_X fclass.d, D, 1 << 7, 0, PINF
TEST_FP_TO_X fclass.d, D, 1 << 8, 0, 0x7ff0000000000001
TEST_FP_TO_X fclass.d, D, 1 << 9, 0, 0xfff8000000000000

# --- conversions to integers: saturation and NV ---------------------------------------------
TEST_FP_TO_X fcvt.w.d, D, 0x7fffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.w.d, D, 0x7fffffff, NV, 0xfff8000000000000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0x7fffffff, NV, PINF, rtz
TEST_FP_TO_X fcvt.w.d, D, 0xffffffff80000000, NV, MINF, rtz
TEST_FP_TO_X fcvt.w.d, D, 0x7fffffff, NV, 0x41e0000000000000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0x7fffffff, NX, 0x41dfffffffe00000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0xffffffff80000000, 0, 0xc1e0000000000000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0xffffffff80000000, NX, 0xc1e0000000100000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0xffffffff80000000, NV, 0xc1e0000000200000, rtz
TEST_FP_TO_X fcvt.w.d, D, 0, NX, 0xbfe0000000000000, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0xffffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0xffffffffffffffff, NV, PINF, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0, NV, MINF, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0, NV, MONE, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0, NX, 0xbfe0000000000000, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0xffffffffb2d05e00, 0, 0x41e65a0bc0000000, rtz
TEST_FP_TO_X fcvt.wu.d, D, 0xffffffffffffffff, NV, 0x41f0000000000000, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x7fffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x7fffffffffffffff, NV, PINF, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x8000000000000000, NV, MINF, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x7fffffffffffffff, NV, 0x43e0000000000000, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x8000000000000000, 0, 0xc3e0000000000000, rtz
TEST_FP_TO_X fcvt.l.d, D, 0x7ffffffffffffc00, 0, 0x43dfffffffffffff, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0xffffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0xffffffffffffffff, NV, PINF, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0, NV, MINF, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0, NV, MONE, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0x8000000000000000, 0, 0x43e0000000000000, rtz
TEST_FP_TO_X fcvt.lu.d, D, 0xffffffffffffffff, NV, 0x43f0000000000000, rtz
TEST_FP_TO_X fcvt.lu.d, D, 1, NX, 0x3ff8000000000000, rtz

# --- conversions from integers ------------------------------------------------------------
TEST_X_TO_FP fcvt.d.l, D, 0x4340000000000000, NX, 0x20000000000001, rne
TEST_X_TO_FP fcvt.d.l, D, 0x4340000000000001, NX, 0x20000000000001, rup
TEST_X_TO_FP fcvt.d.l, D, 0xc3e0000000000000, 0, 0x8000000000000000
TEST_X_TO_FP fcvt.d.lu, D, 0x43f0000000000000, NX, 0xffffffffffffffff, rne
TEST_X_TO_FP fcvt.d.lu, D, 0x43efffffffffffff, NX, 0xffffffffffffffff, rtz
TEST_X_TO_FP fcvt.d.w, D, 0xc1e0000000000000, 0, 0x0000000080000000
TEST_X_TO_FP fcvt.d.wu, D, 0x41efffffffe00000, 0, 0x12345678ffffffff
TEST_X_TO_FP fcvt.d.w, D, PZERO, 0, 0
TEST_X_TO_FP fcvt.d.l, D, MONE, 0, -1

# --- between precisions -------------------------------------------------------------------
TEST_FP1 fcvt.s.d, D, 0xffffffff3f800000, NX, ONE_P, rne
TEST_FP1 fcvt.s.d, D, 0xffffffff3f800001, NX, ONE_P, rup
TEST_FP1 fcvt.s.d, D, 0xffffffff7f800000, OF | NX, MAXD, rne
TEST_FP1 fcvt.s.d, D, 0xffffffff7f7fffff, OF | NX, MAXD, rtz
TEST_FP1 fcvt.s.d, D, 0xffffffff7fc00000, NV, SNAN
TEST_FP1 fcvt.s.d, D, 0xffffffff7fc00000, 0, 0x7ff8000000000123
TEST_FP1 fcvt.s.d, D, 0xffffffff00000000, UF | NX, 0x0000000000000001, rne
TEST_FP1 fcvt.s.d, D, 0xffffffff80000000, 0, MZERO
.macro TEST_CVT_D_S res, flags, a
  NEXT_TEST
  csrw fflags, zero
  FLI_S fa1, \a
  fcvt.d.s fa0, fa1
  EXPECT_FA0 \res, \flags
.endm
TEST_CVT_D_S QNAN, NV, 0x7fa00000
TEST_CVT_D_S QNAN, 0, 0x7fc00001
TEST_CVT_D_S 0x3ff0000020000000, 0, 0x3f800001
TEST_CVT_D_S MINF, 0, 0xff800000

# --- fused multiply-add: one rounding -----------------------------------------------------------
# a = 1 + 2^-26: a*a = 1 + 2^-25 + 2^-52, which a separate multiply would round.
.equ FMA_A, 0x3ff0000004000000
TEST_FP3 fmadd.d, D, 0x3e60000002000000, 0, FMA_A, FMA_A, MONE
TEST_FP3 fmsub.d, D, 0x3e60000002000000, 0, FMA_A, FMA_A, ONE
TEST_FP3 fnmsub.d, D, 0xbe60000002000000, 0, FMA_A, FMA_A, ONE
TEST_FP3 fnmadd.d, D, 0xbe60000002000000, 0, FMA_A, FMA_A, MONE
TEST_FP3 fmadd.d, D, 0x4014000000000000, 0, TWO, TWO, ONE
TEST_FP3 fmsub.d, D, 0x4008000000000000, 0, TWO, TWO, ONE
TEST_FP3 fnmadd.d, D, 0xc014000000000000, 0, TWO, TWO, ONE
TEST_FP3 fnmsub.d, D, 0xc008000000000000, 0, TWO, TWO, ONE
# an exact zero sum is +0, or -0 when rounding down
TEST_FP3 fmadd.d, D, PZERO, 0, ONE, ONE, MONE, rne
TEST_FP3 fmadd.d, D, MZERO, 0, ONE, ONE, MONE, rdn
TEST_FP3 fmadd.d, D, QNAN, NV, PINF, PZERO, ONE
TEST_FP3 fmadd.d, D, QNAN, NV, PINF, PZERO, QNAN
TEST_FP3 fmadd.d, D, QNAN, NV, PINF, ONE, MINF
TEST_FP3 fmadd.d, D, QNAN, 0, QNAN, ONE, ONE
TEST_FP3 fmadd.d, D, PINF, OF | NX, MAXD, TWO, MONE
TEST_FP3 fmadd.d, D, 0x3ff0000000000000, NX, ONE, ONE, TWO_M53, rne
TEST_FP3 fmadd.d, D, ONE_P, NX, ONE, ONE, TWO_M53, rup

# --- loads and stores of doubles, and moves ---------------------------------------------------------
NEXT_TEST
  la a2, d_data
  fld fa0, 0(a2)
  fsd fa0, 8(a2)
  ld a0, 8(a2)
  EXPECT a0, 0x7ff4000000000abc
  fmv.x.d a0, fa0
  EXPECT a0, 0x7ff4000000000abc
  csrr a1, fflags
  EXPECT a1, 0
# FP is off when mstatus.FS = 0: FP instructions and fcsr are illegal
NEXT_TEST
  li a1, MSTATUS_FS
  csrc mstatus, a1
  EXPECT_TRAP 1f
  fadd.d fa0, fa1, fa2
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  EXPECT_TRAP 1f
  csrr a0, fcsr
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  li a1, MSTATUS_FS
  csrs mstatus, a1
# writing an FP register marks mstatus.FS dirty (and SD set)
NEXT_TEST
  li a1, MSTATUS_FS
  csrc mstatus, a1
  li a1, 1 << 13               # Initial
  csrs mstatus, a1
  fmv.d.x fa0, zero
  csrr a0, mstatus
  li a1, MSTATUS_FS
  and a2, a0, a1
  EXPECT a2, MSTATUS_FS
  bgez a0, fail                # SD (bit 63)

PASS

.data
.balign 16
d_data:
  .dword 0x7ff4000000000abc
  .dword 0
