# RV64F: NaN boxing of singles in the 64-bit FP registers, rounding, flags,
# fmin/fmax, fclass, conversions with saturation, fused multiply-add.
.include "macros.S"
START

.equ ONE, 0x3f800000
.equ MONE, 0xbf800000
.equ TWO, 0x40000000
.equ THREE, 0x40400000
.equ HALF, 0x3f000000
.equ P2_5, 0x40200000
.equ M2_5, 0xc0200000
.equ PZERO, 0x00000000
.equ MZERO, 0x80000000
.equ PINF, 0x7f800000
.equ MINF, 0xff800000
.equ QNAN, 0x7fc00000
.equ SNAN, 0x7fa00000
.equ MAXS, 0x7f7fffff
.equ MINNORM, 0x00800000
.equ TWO_M24, 0x33800000             # half an ulp of 1.0f
.equ ONE_P, 0x3f800001
.equ MONE_P, 0xbf800001
.equ BOXED_ONE, 0xffffffff3f800000
.equ CANON_NAN, 0xffffffff7fc00000

# --- NaN boxing ---------------------------------------------------------------------
# flw boxes: the upper 32 bits read as ones through fmv.x.d
NEXT_TEST
  la a2, s_data
  flw fa0, 0(a2)
  fmv.x.d a0, fa0
  EXPECT a0, BOXED_ONE
# fmv.w.x boxes, ignoring the upper half of the integer register
NEXT_TEST
  li a1, 0x123456783f800000
  fmv.w.x fa0, a1
  fmv.x.d a0, fa0
  EXPECT a0, BOXED_ONE
# fmv.x.w returns the low 32 bits sign-extended, boxed or not
NEXT_TEST
  FLI_S fa0, 0xbf800000
  fmv.x.w a0, fa0
  EXPECT a0, 0xffffffffbf800000
NEXT_TEST
  FLI_D fa0, 0x000000003f800000
  fmv.x.w a0, fa0
  EXPECT a0, 0x3f800000
# fsw stores the low 32 bits of a boxed value
NEXT_TEST
  la a2, s_data
  FLI_S fa0, 0x40490fdb
  fsw fa0, 4(a2)
  lwu a0, 4(a2)
  EXPECT a0, 0x40490fdb
# an improperly boxed input reads as the canonical NaN
.macro TEST_UNBOXED op, res, flags
  NEXT_TEST
  csrw fflags, zero
  FLI_D fa1, 0x000000003f800000
  FLI_S fa2, ONE
  \op fa0, fa1, fa2
  EXPECT_FA0 \res, \flags
.endm
TEST_UNBOXED fadd.s, CANON_NAN, 0
TEST_UNBOXED fmul.s, CANON_NAN, 0
TEST_UNBOXED fsgnj.s, CANON_NAN, 0
TEST_UNBOXED fsgnjn.s, 0xffffffffffc00000, 0
TEST_UNBOXED fmin.s, BOXED_ONE, 0
TEST_UNBOXED fmax.s, BOXED_ONE, 0
NEXT_TEST
  FLI_D fa1, 0xfffffffe3f800000          # one zero bit in the box is enough
  fclass.s a0, fa1
  EXPECT a0, 1 << 9
NEXT_TEST
  FLI_D fa1, 0x7ff0000000000000
  fcvt.d.s fa0, fa1
  EXPECT_FA0 0x7ff8000000000000, 0
NEXT_TEST
  csrw fflags, zero
  FLI_D fa1, 0x3f800000
  FLI_S fa2, ONE
  feq.s a0, fa1, fa2
  EXPECT_A0_FLAGS 0, 0
NEXT_TEST
  FLI_D fa1, 0x3f800000
  FLI_S fa2, ONE
  fle.s a0, fa1, fa2
  EXPECT_A0_FLAGS 0, NV
NEXT_TEST
  FLI_D fa1, 0x3f800000
  fcvt.w.s a0, fa1, rtz
  EXPECT_A0_FLAGS 0x7fffffff, NV

# --- rounding modes -------------------------------------------------------------------------
TEST_FP2 fadd.s, S, ONE, NX, ONE, TWO_M24, rne
TEST_FP2 fadd.s, S, ONE, NX, ONE, TWO_M24, rtz
TEST_FP2 fadd.s, S, ONE, NX, ONE, TWO_M24, rdn
TEST_FP2 fadd.s, S, ONE_P, NX, ONE, TWO_M24, rup
TEST_FP2 fadd.s, S, ONE_P, NX, ONE, TWO_M24, rmm
TEST_FP2 fsub.s, S, MONE_P, NX, MONE, TWO_M24, rdn
TEST_FP2 fsub.s, S, MONE, NX, MONE, TWO_M24, rup
TEST_FP2 fsub.s, S, MONE_P, NX, MONE, TWO_M24, rmm
TEST_FP_TO_X fcvt.w.s, S, 2, NX, P2_5, rne
TEST_FP_TO_X fcvt.w.s, S, 2, NX, P2_5, rtz
TEST_FP_TO_X fcvt.w.s, S, -3, NX, M2_5, rdn
TEST_FP_TO_X fcvt.w.s, S, 3, NX, P2_5, rup
TEST_FP_TO_X fcvt.w.s, S, -3, NX, M2_5, rmm
NEXT_TEST
  fsrmi 4                                # rmm through frm
  FLI_S fa1, P2_5
  fcvt.l.s a0, fa1
  fsrmi 0
  EXPECT_A0_FLAGS 3, NX

# --- flags and canonical NaNs ------------------------------------------------------------------
TEST_FP2 fdiv.s, S, 0x3eaaaaab, NX, ONE, THREE
TEST_FP2 fdiv.s, S, PINF, DZ, ONE, PZERO
TEST_FP2 fmul.s, S, PINF, OF | NX, MAXS, TWO
TEST_FP2 fmul.s, S, MAXS, OF | NX, MAXS, TWO, rtz
TEST_FP2 fmul.s, S, 0x002aaaab, UF | NX, MINNORM, 0x3eaaaaab
TEST_FP2 fmul.s, S, 0x00400000, 0, MINNORM, HALF
TEST_FP2 fmul.s, S, QNAN, NV, PINF, PZERO
TEST_FP2 fadd.s, S, QNAN, NV, SNAN, ONE
TEST_FP2 fadd.s, S, QNAN, 0, 0x7fc00123, ONE
TEST_FP2 fdiv.s, S, QNAN, NV, PZERO, PZERO
TEST_FP1 fsqrt.s, S, QNAN, NV, MONE
TEST_FP1 fsqrt.s, S, 0x40000000, 0, 0x40800000
TEST_FP2 fsgnjn.s, S, 0xffa00000, 0, SNAN, ONE

# --- fmin / fmax -------------------------------------------------------------------------------
TEST_FP2 fmin.s, S, MZERO, 0, PZERO, MZERO
TEST_FP2 fmax.s, S, PZERO, 0, MZERO, PZERO
TEST_FP2 fmin.s, S, ONE, 0, QNAN, ONE
TEST_FP2 fmin.s, S, ONE, NV, SNAN, ONE
TEST_FP2 fmax.s, S, MONE, NV, MONE, SNAN
TEST_FP2 fmax.s, S, QNAN, 0, 0xffc00001, 0x7fc00002
TEST_FP2 fmin.s, S, QNAN, NV, SNAN, SNAN

# --- compares -------------------------------------------------------------------------------------
TEST_FP_CMP feq.s, S, 1, 0, MZERO, PZERO
TEST_FP_CMP flt.s, S, 1, 0, MONE, ONE
TEST_FP_CMP fle.s, S, 1, 0, ONE, ONE
TEST_FP_CMP feq.s, S, 0, NV, SNAN, SNAN
TEST_FP_CMP flt.s, S, 0, NV, QNAN, ONE

# --- fclass: the ten classes -----------------------------------------------------------------------
TEST_FP_TO_X fclass.s, S, 1 << 0, 0, MINF
TEST_FP_TO_X fclass.s, S, 1 << 1, 0, MONE
TEST_FP_TO_X fclass.s, S, 1 << 2, 0, 0x80000001
TEST_FP_TO_X fclass.s, S, 1 << 3, 0, MZERO
TEST_FP_TO_X fclass.s, S, 1 << 4, 0, PZERO
TEST_FP_TO_X fclass.s, S, 1 << 5, 0, 0x007fffff
TEST_FP_TO_X fclass.s, S, 1 << 6, 0, MINNORM
TEST_FP_TO_X fclass.s, S, 1 << 7, 0, PINF
TEST_FP_TO_X fclass.s, S, 1 << 8, 0, SNAN
TEST_FP_TO_X fclass.s, S, 1 << 9, 0, QNAN

# --- conversions: saturation and NV ----------------------------------------------------------------
TEST_FP_TO_X fcvt.w.s, S, 0x7fffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.w.s, S, 0x7fffffff, NV, PINF, rtz
TEST_FP_TO_X fcvt.w.s, S, 0xffffffff80000000, NV, MINF, rtz
TEST_FP_TO_X fcvt.w.s, S, 0xffffffff80000000, 0, 0xcf000000, rtz
TEST_FP_TO_X fcvt.w.s, S, 0x7fffffff, NV, 0x4f000000, rtz
TEST_FP_TO_X fcvt.wu.s, S, 0xffffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.wu.s, S, 0, NV, MONE, rtz
TEST_FP_TO_X fcvt.wu.s, S, 0xffffffff80000000, 0, 0x4f000000, rtz
TEST_FP_TO_X fcvt.wu.s, S, 0xffffffffffffffff, NV, 0x4f800000, rtz
TEST_FP_TO_X fcvt.l.s, S, 0x7fffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.l.s, S, 0x7fffffffffffffff, NV, 0x5f000000, rtz
TEST_FP_TO_X fcvt.l.s, S, 0x8000000000000000, 0, 0xdf000000, rtz
TEST_FP_TO_X fcvt.l.s, S, 0x8000000000000000, NV, MINF, rtz
TEST_FP_TO_X fcvt.lu.s, S, 0xffffffffffffffff, NV, QNAN, rtz
TEST_FP_TO_X fcvt.lu.s, S, 0, NV, MINF, rtz
TEST_FP_TO_X fcvt.lu.s, S, 0, NX, 0xbf000000, rtz
TEST_FP_TO_X fcvt.lu.s, S, 0x8000000000000000, 0, 0x5f000000, rtz
TEST_FP_TO_X fcvt.lu.s, S, 0xffffffffffffffff, NV, 0x5f800000, rtz
TEST_X_TO_FP fcvt.s.w, S, 0x4b800000, NX, 16777217, rne
TEST_X_TO_FP fcvt.s.w, S, 0x4b800001, NX, 16777217, rup
TEST_X_TO_FP fcvt.s.w, S, 0xcf000000, 0, 0xffffffff80000000
TEST_X_TO_FP fcvt.s.wu, S, 0x4f800000, NX, 0xffffffff, rne
TEST_X_TO_FP fcvt.s.wu, S, 0x4f7fffff, NX, 0xffffffff, rtz
TEST_X_TO_FP fcvt.s.l, S, 0xdf000000, 0, 0x8000000000000000
TEST_X_TO_FP fcvt.s.lu, S, 0x5f800000, NX, 0xffffffffffffffff
TEST_X_TO_FP fcvt.s.l, S, 0xbf800000, 0, -1

# --- fused multiply-add ---------------------------------------------------------------------------
# a = 1 + 2^-12: a*a = 1 + 2^-11 + 2^-24, which a separate multiply would round.
.equ FMA_A, 0x3f800800
TEST_FP3 fmadd.s, S, 0x3a000400, 0, FMA_A, FMA_A, MONE
TEST_FP3 fmsub.s, S, 0x3a000400, 0, FMA_A, FMA_A, ONE
TEST_FP3 fnmsub.s, S, 0xba000400, 0, FMA_A, FMA_A, ONE
TEST_FP3 fnmadd.s, S, 0xba000400, 0, FMA_A, FMA_A, MONE
TEST_FP3 fmadd.s, S, MZERO, 0, ONE, ONE, MONE, rdn
TEST_FP3 fmadd.s, S, QNAN, NV, PZERO, PINF, QNAN
TEST_FP3 fnmadd.s, S, 0xc0a00000, 0, TWO, TWO, ONE

PASS

.data
.balign 16
s_data:
  .word 0x3f800000
  .word 0
