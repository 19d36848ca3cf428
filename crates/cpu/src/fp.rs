//! Floating point: the F and D extensions of RV64GC.
//!
//! [`execute`] runs one FP compute instruction (OP-FP and the four fused
//! multiply-adds) against an [`FpState`] and the integer register file.
//! Loads and stores (FLW/FLD/FSW/FSD) belong to the hart; it uses
//! [`nan_box`] for FLW, and FSW stores the low 32 bits of the register
//! unchanged (a narrower transfer out ignores the upper bits).
//!
//! Arithmetic, rounding conversions and square roots go through Berkeley
//! SoftFloat 3 built with its RISC-V specialization, so results, canonical
//! NaNs, out-of-range conversion values and exception flags are those the
//! ISA specifies, in every rounding mode; the common cases are short-cut on
//! the host where that is provably identical (below). Operations that never round (sign
//! injection, moves, classification, comparisons, min/max) are plain bit
//! operations or exact host comparisons.
//!
//! # Host fast path
//!
//! SoftFloat costs tens of nanoseconds per operation, so the common case of
//! add, subtract, multiply, divide, square root and fused multiply-add is
//! done on the host FPU when that provably gives the same result and the
//! same `fflags`. The host follows IEEE 754 with round-to-nearest-even and
//! no flush-to-zero (Rust's floating-point environment, which ftvm never
//! changes), and `mul_add` is a correctly rounded fused operation. The path
//! is taken only when all of these hold:
//!
//! - the rounding mode resolves to RNE;
//! - NX is already set in `fflags` (flags are sticky, so whether this
//!   operation is inexact does not matter);
//! - every operand is finite (no NaN, so no NV from sNaN or canonical-NaN
//!   output; no infinity, so no inf-inf or inf*0);
//! - the host result `r` satisfies `MIN_POSITIVE < |r| < inf`.
//!
//! The last condition rules out every other flag: in RNE an overflow always
//! yields an infinity, so a finite `r` means no OF; `|r|` above the smallest
//! normal means the exact result was not tiny (rounding is monotonic, and in
//! the normal range bounded- and unbounded-exponent rounding agree), so no
//! UF; division by zero or 0/0 and the square root of a negative number give
//! an infinity or a NaN, so no DZ or NV. Anything else falls back to
//! SoftFloat, which recomputes from the operands. FCVT.S.D takes the same
//! path under the same conditions.
//!
//! Conversions that are always exact (FCVT.D.W, FCVT.D.WU, and FCVT.D.S of
//! a non-NaN) are done on the host in every rounding mode, and so are
//! float-to-integer conversions under RTZ (what C casts compile to) whose
//! truncated value is in range: truncation is exact and NX is decided by
//! comparing the truncated value with the input.
//!
//! SoftFloat keeps its rounding mode and its exception flags in thread-local
//! C variables. This module sets the rounding mode before each rounding
//! operation and keeps the invariant that SoftFloat's flags are zero between
//! two instructions: after each operation it moves any raised flags into
//! `fflags` and clears them. The encodings of SoftFloat's rounding modes and
//! flags are the same as RISC-V's `frm` and `fflags`.

use softfloat_sys as sf;
use softfloat_sys::{float32_t, float64_t};

/// The floating-point register file and the floating-point CSR.
///
/// Registers hold raw bits. A single-precision value is NaN-boxed: its upper
/// 32 bits are all ones (see [`nan_box`]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FpState {
    /// The 32 registers `f0`..`f31`, as raw 64-bit patterns.
    pub f: [u64; 32],
    /// Accrued exception flags (`fflags`, 5 bits): NV=16, DZ=8, OF=4, UF=2, NX=1.
    pub fflags: u8,
    /// Dynamic rounding mode (`frm`, 3 bits): 0 RNE, 1 RTZ, 2 RDN, 3 RUP, 4 RMM.
    pub frm: u8,
}

/// The instruction is not a valid FP instruction (reserved encoding or
/// invalid rounding mode): the hart raises an illegal-instruction exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalInstruction;

/// Invalid operation (`fflags` bit 4).
pub const FLAG_NV: u8 = 0x10;
/// Divide by zero (`fflags` bit 3).
pub const FLAG_DZ: u8 = 0x08;
/// Overflow (`fflags` bit 2).
pub const FLAG_OF: u8 = 0x04;
/// Underflow (`fflags` bit 1).
pub const FLAG_UF: u8 = 0x02;
/// Inexact (`fflags` bit 0).
pub const FLAG_NX: u8 = 0x01;

/// The canonical single-precision NaN.
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// The canonical double-precision NaN.
pub const CANONICAL_NAN_F64: u64 = 0x7ff8_0000_0000_0000;

const BOX: u64 = 0xffff_ffff_0000_0000;

/// NaN-boxes a single-precision value for an f register: upper 32 bits set.
#[inline(always)]
pub fn nan_box(bits: u32) -> u64 {
    BOX | u64::from(bits)
}

/// Reads an f register as a single-precision operand: a value whose upper
/// 32 bits are not all ones is not properly NaN-boxed and reads as the
/// canonical NaN `0x7fc00000`.
///
/// This is for arithmetic operands. Transfers out of the register file
/// (FSW, FMV.X.W) take the low 32 bits unchanged, without this check.
#[inline(always)]
pub fn unbox_f32(v: u64) -> u32 {
    if v & BOX == BOX {
        v as u32
    } else {
        CANONICAL_NAN_F32
    }
}

// ---------------------------------------------------------------------------
// SoftFloat state.

/// Sets SoftFloat's rounding mode (already validated, 0..=4).
#[inline(always)]
fn set_rm(rm: u8) {
    // SAFETY: the helper only stores into SoftFloat's thread-local rounding
    // mode; rm is 0..=4, each a valid SoftFloat rounding mode.
    unsafe { sf::softfloat_roundingMode_write_helper(rm) }
}

/// Moves SoftFloat's raised exception flags into `fflags` and clears them.
#[inline(always)]
fn take_flags(fp: &mut FpState) {
    // SAFETY: the helper only loads SoftFloat's thread-local flags.
    let flags = unsafe { sf::softfloat_exceptionFlags_read_helper() };
    if flags != 0 {
        fp.fflags |= flags & 0x1f;
        // SAFETY: the helper only stores into SoftFloat's thread-local flags.
        unsafe { sf::softfloat_exceptionFlags_write_helper(0) }
    }
}

/// Resolves the instruction's rm field against `frm`; reserved modes
/// (5, 6, or 7 with frm > 4) are illegal.
#[inline(always)]
fn rounding(fp: &FpState, rm: u32) -> Result<u8, IllegalInstruction> {
    let r = if rm == 7 { u32::from(fp.frm) } else { rm };
    if r <= 4 {
        Ok(r as u8)
    } else {
        Err(IllegalInstruction)
    }
}

// ---------------------------------------------------------------------------
// Bit-level helpers (exact, no rounding).

#[inline(always)]
fn f32_is_nan(a: u32) -> bool {
    a & 0x7fff_ffff > 0x7f80_0000
}

#[inline(always)]
fn f32_is_snan(a: u32) -> bool {
    f32_is_nan(a) && a & 0x0040_0000 == 0
}

#[inline(always)]
fn f64_is_nan(a: u64) -> bool {
    a & 0x7fff_ffff_ffff_ffff > 0x7ff0_0000_0000_0000
}

#[inline(always)]
fn f64_is_snan(a: u64) -> bool {
    f64_is_nan(a) && a & 0x0008_0000_0000_0000 == 0
}

/// FMIN.S/FMAX.S (ISA 2.2 semantics): -0 < +0; a single NaN operand yields
/// the other operand; two NaNs yield the canonical NaN; sNaN raises NV.
fn f32_minmax(fp: &mut FpState, a: u32, b: u32, max: bool) -> u32 {
    let (an, bn) = (f32_is_nan(a), f32_is_nan(b));
    if an || bn {
        if f32_is_snan(a) || f32_is_snan(b) {
            fp.fflags |= FLAG_NV;
        }
        return match (an, bn) {
            (true, true) => CANONICAL_NAN_F32,
            (true, false) => b,
            _ => a,
        };
    }
    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
    if x == y {
        // Equal values have equal bits except for +0/-0: the minimum of
        // the two zeros has the sign bit set, the maximum has it clear.
        if max {
            a & b
        } else {
            a | b
        }
    } else if (x < y) != max {
        a
    } else {
        b
    }
}

/// FMIN.D/FMAX.D; see [`f32_minmax`].
fn f64_minmax(fp: &mut FpState, a: u64, b: u64, max: bool) -> u64 {
    let (an, bn) = (f64_is_nan(a), f64_is_nan(b));
    if an || bn {
        if f64_is_snan(a) || f64_is_snan(b) {
            fp.fflags |= FLAG_NV;
        }
        return match (an, bn) {
            (true, true) => CANONICAL_NAN_F64,
            (true, false) => b,
            _ => a,
        };
    }
    let (x, y) = (f64::from_bits(a), f64::from_bits(b));
    if x == y {
        if max {
            a & b
        } else {
            a | b
        }
    } else if (x < y) != max {
        a
    } else {
        b
    }
}

/// FEQ/FLT/FLE.S. `op` is funct3: 2 FEQ (quiet: NV only on sNaN),
/// 1 FLT and 0 FLE (signaling: NV on any NaN). Host comparison is exact.
fn f32_compare(fp: &mut FpState, a: u32, b: u32, op: u32) -> u64 {
    if f32_is_nan(a) || f32_is_nan(b) {
        if op != 2 || f32_is_snan(a) || f32_is_snan(b) {
            fp.fflags |= FLAG_NV;
        }
        return 0;
    }
    let (x, y) = (f32::from_bits(a), f32::from_bits(b));
    u64::from(match op {
        2 => x == y,
        1 => x < y,
        _ => x <= y,
    })
}

/// FEQ/FLT/FLE.D; see [`f32_compare`].
fn f64_compare(fp: &mut FpState, a: u64, b: u64, op: u32) -> u64 {
    if f64_is_nan(a) || f64_is_nan(b) {
        if op != 2 || f64_is_snan(a) || f64_is_snan(b) {
            fp.fflags |= FLAG_NV;
        }
        return 0;
    }
    let (x, y) = (f64::from_bits(a), f64::from_bits(b));
    u64::from(match op {
        2 => x == y,
        1 => x < y,
        _ => x <= y,
    })
}

/// FCLASS from sign, biased exponent, fraction and the all-ones exponent
/// and quiet-bit patterns of the format. Returns a one-hot 10-bit mask.
#[inline(always)]
fn classify(sign: bool, exp: u64, frac: u64, exp_max: u64, quiet: u64) -> u64 {
    let bit = if exp == exp_max {
        if frac == 0 {
            if sign {
                0
            } else {
                7
            }
        } else if frac & quiet != 0 {
            9
        } else {
            8
        }
    } else if exp == 0 {
        match (frac == 0, sign) {
            (true, true) => 3,
            (true, false) => 4,
            (false, true) => 2,
            (false, false) => 5,
        }
    } else if sign {
        1
    } else {
        6
    };
    1 << bit
}

#[inline(always)]
fn f32_classify(a: u32) -> u64 {
    classify(
        a >> 31 != 0,
        u64::from((a >> 23) & 0xff),
        u64::from(a & 0x007f_ffff),
        0xff,
        0x0040_0000,
    )
}

#[inline(always)]
fn f64_classify(a: u64) -> u64 {
    classify(
        a >> 63 != 0,
        (a >> 52) & 0x7ff,
        a & 0x000f_ffff_ffff_ffff,
        0x7ff,
        0x0008_0000_0000_0000,
    )
}

/// Sign injection: FSGNJ (funct3 0), FSGNJN (1), FSGNJX (2); 3 is reserved.
#[inline(always)]
fn sign_inject(a: u64, b: u64, sign: u64, op: u32) -> Result<u64, IllegalInstruction> {
    let s = match op {
        0 => b & sign,
        1 => !b & sign,
        2 => (a ^ b) & sign,
        _ => return Err(IllegalInstruction),
    };
    Ok((a & !sign) | s)
}

// ---------------------------------------------------------------------------
// Operand access.

#[inline(always)]
fn rs32(fp: &FpState, r: usize) -> float32_t {
    float32_t {
        v: unbox_f32(fp.f[r]),
    }
}

#[inline(always)]
fn rs64(fp: &FpState, r: usize) -> float64_t {
    float64_t { v: fp.f[r] }
}

#[inline(always)]
fn write_x(x: &mut [u64; 32], rd: usize, v: u64) {
    if rd != 0 {
        x[rd] = v;
    }
}

/// Sign-extends a 32-bit integer result to 64 bits.
#[inline(always)]
fn sext32(v: u32) -> u64 {
    v as i32 as i64 as u64
}

// ---------------------------------------------------------------------------
// Host fast path (see the module documentation for why it is exact).

const D_EXP: u64 = 0x7ff0_0000_0000_0000;
const S_EXP: u32 = 0x7f80_0000;

/// Whether the host fast path may be tried: the rounding mode resolves to
/// RNE and NX has already accrued.
#[inline(always)]
fn host_ok(fp: &FpState, rm: u32) -> bool {
    fp.fflags & FLAG_NX != 0 && (rm == 0 || (rm == 7 && fp.frm == 0))
}

/// Tries a double-precision operation on the host. Binds each named
/// operand register to its `f64` value, evaluates the expression, and on
/// success writes rd and returns `Ok(())` from the enclosing function.
macro_rules! host_d {
    ($fp:ident, $rm:ident, $rd:ident, [$($v:ident = $r:expr),+], $e:expr) => {
        if host_ok($fp, $rm) {
            $(let $v = $fp.f[$r];)+
            if $($v & D_EXP != D_EXP)&&+ {
                $(let $v = f64::from_bits($v);)+
                let z: f64 = $e;
                let m = z.abs();
                if m > f64::MIN_POSITIVE && m < f64::INFINITY {
                    $fp.f[$rd] = z.to_bits();
                    return Ok(());
                }
            }
        }
    };
}

/// The double-precision arithmetic of `inst` on the host, under the
/// conditions of [`host_d`]: FADD.D, FSUB.D, FMUL.D, FDIV.D (opcode 0x53) and
/// FMADD.D, FMSUB.D, FNMSUB.D, FNMADD.D (0x43, 0x47, 0x4B, 0x4F with fmt D),
/// the instructions the decoder gives slot ops of their own
/// ([`crate::decode::Op::FaddD`] and the others), whose interpreter arms call
/// the function for their operation directly. Returns whether it wrote rd;
/// if not, nothing changed and [`execute`] must run the instruction (it
/// gives the same result where this one applies, so this is only the
/// interpreter's shortcut past decoding the instruction again).
#[cfg(test)]
fn host_arith_d(fp: &mut FpState, inst: u32) -> bool {
    match (inst & 0x7f, inst >> 25) {
        (0x53, 0x01) => host_fadd_d(fp, inst),
        (0x53, 0x05) => host_fsub_d(fp, inst),
        (0x53, 0x09) => host_fmul_d(fp, inst),
        (0x53, 0x0d) => host_fdiv_d(fp, inst),
        (0x43 | 0x47 | 0x4b | 0x4f, f7) if f7 & 3 == 1 => host_fma_d(fp, inst),
        _ => false,
    }
}

/// Writes `z` to rd of `inst` if it is a normal number (see [`host_d`]).
#[inline(always)]
fn host_result_d(fp: &mut FpState, inst: u32, z: f64) -> bool {
    let m = z.abs();
    if m > f64::MIN_POSITIVE && m < f64::INFINITY {
        fp.f[((inst >> 7) & 31) as usize] = z.to_bits();
        true
    } else {
        false
    }
}

/// `f(rs1, rs2)` of `inst` on the host (see [`host_arith_d`]).
#[inline(always)]
fn host_binary_d(fp: &mut FpState, inst: u32, f: impl FnOnce(f64, f64) -> f64) -> bool {
    if !host_ok(fp, (inst >> 12) & 7) {
        return false;
    }
    let a = fp.f[((inst >> 15) & 31) as usize];
    let b = fp.f[((inst >> 20) & 31) as usize];
    if a & D_EXP == D_EXP || b & D_EXP == D_EXP {
        return false;
    }
    host_result_d(fp, inst, f(f64::from_bits(a), f64::from_bits(b)))
}

/// FADD.D on the host (see [`host_arith_d`]).
#[inline(always)]
pub(crate) fn host_fadd_d(fp: &mut FpState, inst: u32) -> bool {
    host_binary_d(fp, inst, |a, b| a + b)
}

/// FSUB.D on the host (see [`host_arith_d`]).
#[inline(always)]
pub(crate) fn host_fsub_d(fp: &mut FpState, inst: u32) -> bool {
    host_binary_d(fp, inst, |a, b| a - b)
}

/// FMUL.D on the host (see [`host_arith_d`]).
#[inline(always)]
pub(crate) fn host_fmul_d(fp: &mut FpState, inst: u32) -> bool {
    host_binary_d(fp, inst, |a, b| a * b)
}

/// FDIV.D on the host (see [`host_arith_d`]).
#[inline(always)]
pub(crate) fn host_fdiv_d(fp: &mut FpState, inst: u32) -> bool {
    host_binary_d(fp, inst, |a, b| a / b)
}

/// FMADD.D, FMSUB.D, FNMSUB.D and FNMADD.D on the host (see [`host_arith_d`]).
#[inline(always)]
pub(crate) fn host_fma_d(fp: &mut FpState, inst: u32) -> bool {
    if !host_ok(fp, (inst >> 12) & 7) {
        return false;
    }
    let a = fp.f[((inst >> 15) & 31) as usize];
    let b = fp.f[((inst >> 20) & 31) as usize];
    let c = fp.f[(inst >> 27) as usize];
    if a & D_EXP == D_EXP || b & D_EXP == D_EXP || c & D_EXP == D_EXP {
        return false;
    }
    // FMADD: a*b+c; FMSUB: a*b-c; FNMSUB: -a*b+c; FNMADD: -a*b-c.
    let op = inst & 0x7f;
    let a = f64::from_bits(a);
    let a = if op & 0x08 != 0 { -a } else { a };
    let c = f64::from_bits(c);
    let c = if op == 0x47 || op == 0x4f { -c } else { c };
    host_result_d(fp, inst, a.mul_add(f64::from_bits(b), c))
}

/// Single-precision counterpart of [`host_d`]: operands are unboxed (an
/// improperly boxed one reads as NaN and so falls back), the result boxed.
macro_rules! host_s {
    ($fp:ident, $rm:ident, $rd:ident, [$($v:ident = $r:expr),+], $e:expr) => {
        if host_ok($fp, $rm) {
            $(let $v = unbox_f32($fp.f[$r]);)+
            if $($v & S_EXP != S_EXP)&&+ {
                $(let $v = f32::from_bits($v);)+
                let z: f32 = $e;
                let m = z.abs();
                if m > f32::MIN_POSITIVE && m < f32::INFINITY {
                    $fp.f[$rd] = nan_box(z.to_bits());
                    return Ok(());
                }
            }
        }
    };
}

/// FCVT.{W,WU,L,LU} (`kind` 0..=3) under RTZ on the host, for a value
/// whose truncation is in range (so no NV); NaN and out-of-range values
/// return `None`. Truncation by `as` is exact there, and the truncated
/// value is itself a double, so comparing it with the input decides NX.
#[inline(always)]
fn host_to_int_rtz(fp: &mut FpState, a: f64, kind: usize) -> Option<u64> {
    const TWO31: f64 = 2_147_483_648.0;
    const TWO32: f64 = 4_294_967_296.0;
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    const TWO64: f64 = 18_446_744_073_709_551_616.0;
    let (v, t) = match kind {
        0 if a > -TWO31 - 1.0 && a < TWO31 => {
            let t = a as i64;
            (t as u64, t as f64)
        }
        1 if a > -1.0 && a < TWO32 => {
            let t = a as u64;
            (sext32(t as u32), t as f64)
        }
        2 if (-TWO63..TWO63).contains(&a) => {
            let t = a as i64;
            (t as u64, t as f64)
        }
        3 if a > -1.0 && a < TWO64 => {
            let t = a as u64;
            (t, t as f64)
        }
        _ => return None,
    };
    if t != a {
        fp.fflags |= FLAG_NX;
    }
    Some(v)
}

// ---------------------------------------------------------------------------
// Execution.

/// Executes one FP compute instruction: opcodes 0x43 FMADD, 0x47 FMSUB,
/// 0x4B FNMSUB, 0x4F FNMADD and 0x53 OP-FP, for formats S and D (H and Q are
/// illegal).
///
/// Reads and writes `fp` (registers and `fflags`, accrued) and may read and
/// write the integer registers `x`; never writes `x[0]`. Returns `Err`, with
/// nothing changed, for a reserved encoding or an invalid static or dynamic
/// rounding mode (rm 5 or 6, or rm 7 with `frm` > 4). The caller checks
/// `mstatus.FS` != Off before and marks FS Dirty after `Ok`.
#[inline]
pub fn execute(fp: &mut FpState, x: &mut [u64; 32], inst: u32) -> Result<(), IllegalInstruction> {
    let rd = ((inst >> 7) & 31) as usize;
    let rm = (inst >> 12) & 7;
    let rs1 = ((inst >> 15) & 31) as usize;
    let rs2 = ((inst >> 20) & 31) as usize;
    match inst & 0x7f {
        0x53 => op_fp(fp, x, inst, rd, rm, rs1, rs2),
        op @ (0x43 | 0x47 | 0x4b | 0x4f) => {
            fused(fp, inst, op, rd, rm, rs1, rs2, (inst >> 27) as usize)
        }
        _ => Err(IllegalInstruction),
    }
}

/// The four fused multiply-adds, with one rounding. Negating an operand is
/// a sign flip: NaN results are canonical whatever the input signs, and the
/// sNaN test ignores the sign, so flags are unaffected.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused(
    fp: &mut FpState,
    inst: u32,
    op: u32,
    rd: usize,
    rm: u32,
    rs1: usize,
    rs2: usize,
    rs3: usize,
) -> Result<(), IllegalInstruction> {
    // FMADD: a*b+c; FMSUB: a*b-c; FNMSUB: -a*b+c; FNMADD: -a*b-c.
    let neg_prod = op & 0x08 != 0;
    let neg_add = op == 0x47 || op == 0x4f;
    match (inst >> 25) & 3 {
        0 => {
            let r = rounding(fp, rm)?;
            host_s!(fp, rm, rd, [a = rs1, b = rs2, c = rs3], {
                let a = if neg_prod { -a } else { a };
                let c = if neg_add { -c } else { c };
                a.mul_add(b, c)
            });
            let sign = 0x8000_0000u32;
            let mut a = rs32(fp, rs1);
            let b = rs32(fp, rs2);
            let mut c = rs32(fp, rs3);
            if neg_prod {
                a.v ^= sign;
            }
            if neg_add {
                c.v ^= sign;
            }
            set_rm(r);
            // SAFETY: pure SoftFloat arithmetic on plain values; it touches
            // only SoftFloat's thread-local flags.
            let z = unsafe { sf::f32_mulAdd(a, b, c) };
            take_flags(fp);
            fp.f[rd] = nan_box(z.v);
            Ok(())
        }
        1 => {
            let r = rounding(fp, rm)?;
            host_d!(fp, rm, rd, [a = rs1, b = rs2, c = rs3], {
                let a = if neg_prod { -a } else { a };
                let c = if neg_add { -c } else { c };
                a.mul_add(b, c)
            });
            let sign = 0x8000_0000_0000_0000u64;
            let mut a = rs64(fp, rs1);
            let b = rs64(fp, rs2);
            let mut c = rs64(fp, rs3);
            if neg_prod {
                a.v ^= sign;
            }
            if neg_add {
                c.v ^= sign;
            }
            set_rm(r);
            // SAFETY: pure SoftFloat arithmetic on plain values; it touches
            // only SoftFloat's thread-local flags.
            let z = unsafe { sf::f64_mulAdd(a, b, c) };
            take_flags(fp);
            fp.f[rd] = z.v;
            Ok(())
        }
        _ => Err(IllegalInstruction),
    }
}

/// Runs a rounding single-precision operation and writes its NaN-boxed result.
macro_rules! round_s {
    ($fp:ident, $rm:ident, $rd:ident, $e:expr) => {{
        let r = rounding($fp, $rm)?;
        set_rm(r);
        // SAFETY: pure SoftFloat computation on plain values; it touches
        // only SoftFloat's thread-local rounding mode and flags.
        let z: float32_t = unsafe { $e };
        take_flags($fp);
        $fp.f[$rd] = nan_box(z.v);
        Ok(())
    }};
}

/// Runs a rounding double-precision operation and writes its result.
macro_rules! round_d {
    ($fp:ident, $rm:ident, $rd:ident, $e:expr) => {{
        let r = rounding($fp, $rm)?;
        set_rm(r);
        // SAFETY: pure SoftFloat computation on plain values; it touches
        // only SoftFloat's thread-local rounding mode and flags.
        let z: float64_t = unsafe { $e };
        take_flags($fp);
        $fp.f[$rd] = z.v;
        Ok(())
    }};
}

/// OP-FP (opcode 0x53), decoded on funct7 (funct5 and fmt).
#[inline(always)]
fn op_fp(
    fp: &mut FpState,
    x: &mut [u64; 32],
    inst: u32,
    rd: usize,
    rm: u32,
    rs1: usize,
    rs2: usize,
) -> Result<(), IllegalInstruction> {
    match inst >> 25 {
        // FADD.D / FSUB.D / FMUL.D / FDIV.D: the hot paths first.
        0x01 => {
            host_d!(fp, rm, rd, [a = rs1, b = rs2], a + b);
            round_d!(fp, rm, rd, sf::f64_add(rs64(fp, rs1), rs64(fp, rs2)))
        }
        0x05 => {
            host_d!(fp, rm, rd, [a = rs1, b = rs2], a - b);
            round_d!(fp, rm, rd, sf::f64_sub(rs64(fp, rs1), rs64(fp, rs2)))
        }
        0x09 => {
            host_d!(fp, rm, rd, [a = rs1, b = rs2], a * b);
            round_d!(fp, rm, rd, sf::f64_mul(rs64(fp, rs1), rs64(fp, rs2)))
        }
        0x0d => {
            host_d!(fp, rm, rd, [a = rs1, b = rs2], a / b);
            round_d!(fp, rm, rd, sf::f64_div(rs64(fp, rs1), rs64(fp, rs2)))
        }
        0x2d if rs2 == 0 => {
            host_d!(fp, rm, rd, [a = rs1], a.sqrt());
            round_d!(fp, rm, rd, sf::f64_sqrt(rs64(fp, rs1)))
        }
        // FADD.S / FSUB.S / FMUL.S / FDIV.S / FSQRT.S
        0x00 => {
            host_s!(fp, rm, rd, [a = rs1, b = rs2], a + b);
            round_s!(fp, rm, rd, sf::f32_add(rs32(fp, rs1), rs32(fp, rs2)))
        }
        0x04 => {
            host_s!(fp, rm, rd, [a = rs1, b = rs2], a - b);
            round_s!(fp, rm, rd, sf::f32_sub(rs32(fp, rs1), rs32(fp, rs2)))
        }
        0x08 => {
            host_s!(fp, rm, rd, [a = rs1, b = rs2], a * b);
            round_s!(fp, rm, rd, sf::f32_mul(rs32(fp, rs1), rs32(fp, rs2)))
        }
        0x0c => {
            host_s!(fp, rm, rd, [a = rs1, b = rs2], a / b);
            round_s!(fp, rm, rd, sf::f32_div(rs32(fp, rs1), rs32(fp, rs2)))
        }
        0x2c if rs2 == 0 => {
            host_s!(fp, rm, rd, [a = rs1], a.sqrt());
            round_s!(fp, rm, rd, sf::f32_sqrt(rs32(fp, rs1)))
        }
        // FSGNJ[N|X].S / .D
        0x10 => {
            let v = sign_inject(
                u64::from(unbox_f32(fp.f[rs1])),
                u64::from(unbox_f32(fp.f[rs2])),
                0x8000_0000,
                rm,
            )?;
            fp.f[rd] = nan_box(v as u32);
            Ok(())
        }
        0x11 => {
            fp.f[rd] = sign_inject(fp.f[rs1], fp.f[rs2], 1 << 63, rm)?;
            Ok(())
        }
        // FMIN.S / FMAX.S / FMIN.D / FMAX.D
        0x14 if rm < 2 => {
            let v = f32_minmax(fp, unbox_f32(fp.f[rs1]), unbox_f32(fp.f[rs2]), rm == 1);
            fp.f[rd] = nan_box(v);
            Ok(())
        }
        0x15 if rm < 2 => {
            fp.f[rd] = f64_minmax(fp, fp.f[rs1], fp.f[rs2], rm == 1);
            Ok(())
        }
        // FCVT.S.D (rounds) / FCVT.D.S (exact; rm still validated).
        0x20 if rs2 == 1 => {
            let a = fp.f[rs1];
            if host_ok(fp, rm) && a & D_EXP != D_EXP {
                // Host narrowing rounds to nearest even; same conditions as
                // host_s! on the result.
                let z = f64::from_bits(a) as f32;
                let m = z.abs();
                if m > f32::MIN_POSITIVE && m < f32::INFINITY {
                    fp.f[rd] = nan_box(z.to_bits());
                    return Ok(());
                }
            }
            round_s!(fp, rm, rd, sf::f64_to_f32(rs64(fp, rs1)))
        }
        0x21 if rs2 == 0 => {
            rounding(fp, rm)?;
            let a = unbox_f32(fp.f[rs1]);
            if !f32_is_nan(a) {
                // Widening a non-NaN is exact and raises nothing.
                fp.f[rd] = f64::from(f32::from_bits(a)).to_bits();
                return Ok(());
            }
            round_d!(fp, rm, rd, sf::f32_to_f64(float32_t { v: a }))
        }
        // FLE / FLT / FEQ
        0x50 if rm < 3 => {
            let v = f32_compare(fp, unbox_f32(fp.f[rs1]), unbox_f32(fp.f[rs2]), rm);
            write_x(x, rd, v);
            Ok(())
        }
        0x51 if rm < 3 => {
            let v = f64_compare(fp, fp.f[rs1], fp.f[rs2], rm);
            write_x(x, rd, v);
            Ok(())
        }
        // FCVT.{W,WU,L,LU}.S: SoftFloat's RISC-V specialization returns the
        // ISA's saturated values (NaN -> max positive) and raises NV/NX.
        0x60 if rs2 < 4 => {
            let r = rounding(fp, rm)?;
            let a = rs32(fp, rs1);
            if r == 1 {
                // f32 -> f64 is exact for every non-NaN; NaN fails the range
                // test and falls back.
                if let Some(v) = host_to_int_rtz(fp, f64::from(f32::from_bits(a.v)), rs2) {
                    write_x(x, rd, v);
                    return Ok(());
                }
            }
            // SAFETY: pure SoftFloat conversions on plain values; they touch
            // only SoftFloat's thread-local flags.
            let v = unsafe {
                match rs2 {
                    0 => sext32(sf::f32_to_i32(a, r, true) as u32),
                    1 => sext32(sf::f32_to_ui32(a, r, true) as u32),
                    2 => sf::f32_to_i64(a, r, true) as u64,
                    _ => sf::f32_to_ui64(a, r, true),
                }
            };
            take_flags(fp);
            write_x(x, rd, v);
            Ok(())
        }
        0x61 if rs2 < 4 => {
            let r = rounding(fp, rm)?;
            let a = rs64(fp, rs1);
            if r == 1 {
                if let Some(v) = host_to_int_rtz(fp, f64::from_bits(a.v), rs2) {
                    write_x(x, rd, v);
                    return Ok(());
                }
            }
            // SAFETY: pure SoftFloat conversions on plain values; they touch
            // only SoftFloat's thread-local flags.
            let v = unsafe {
                match rs2 {
                    0 => sext32(sf::f64_to_i32(a, r, true) as u32),
                    1 => sext32(sf::f64_to_ui32(a, r, true) as u32),
                    2 => sf::f64_to_i64(a, r, true) as u64,
                    _ => sf::f64_to_ui64(a, r, true),
                }
            };
            take_flags(fp);
            write_x(x, rd, v);
            Ok(())
        }
        // FCVT.S.{W,WU,L,LU} / FCVT.D.{W,WU,L,LU}
        0x68 if rs2 < 4 => {
            let i = x[rs1];
            round_s!(
                fp,
                rm,
                rd,
                match rs2 {
                    0 => sf::i32_to_f32(i as i32),
                    1 => sf::ui32_to_f32(i as u32),
                    2 => sf::i64_to_f32(i as i64),
                    _ => sf::ui64_to_f32(i),
                }
            )
        }
        0x69 if rs2 < 4 => {
            let i = x[rs1];
            if rs2 < 2 {
                // FCVT.D.W / FCVT.D.WU: every 32-bit integer is exact in f64.
                rounding(fp, rm)?;
                let v = if rs2 == 0 {
                    f64::from(i as i32)
                } else {
                    f64::from(i as u32)
                };
                fp.f[rd] = v.to_bits();
                return Ok(());
            }
            round_d!(
                fp,
                rm,
                rd,
                match rs2 {
                    0 => sf::i32_to_f64(i as i32),
                    1 => sf::ui32_to_f64(i as u32),
                    2 => sf::i64_to_f64(i as i64),
                    _ => sf::ui64_to_f64(i),
                }
            )
        }
        // FMV.X.W (raw low 32 bits, sign-extended) / FCLASS.S
        0x70 if rs2 == 0 && rm == 0 => {
            write_x(x, rd, sext32(fp.f[rs1] as u32));
            Ok(())
        }
        0x70 if rs2 == 0 && rm == 1 => {
            write_x(x, rd, f32_classify(unbox_f32(fp.f[rs1])));
            Ok(())
        }
        // FMV.X.D / FCLASS.D
        0x71 if rs2 == 0 && rm == 0 => {
            write_x(x, rd, fp.f[rs1]);
            Ok(())
        }
        0x71 if rs2 == 0 && rm == 1 => {
            write_x(x, rd, f64_classify(fp.f[rs1]));
            Ok(())
        }
        // FMV.W.X (NaN-boxed) / FMV.D.X
        0x78 if rs2 == 0 && rm == 0 => {
            fp.f[rd] = nan_box(x[rs1] as u32);
            Ok(())
        }
        0x79 if rs2 == 0 && rm == 0 => {
            fp.f[rd] = x[rs1];
            Ok(())
        }
        _ => Err(IllegalInstruction),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `host_arith_d`, where it applies, leaves exactly the state `execute`
    /// leaves, for each instruction it takes, over operands at the edges
    /// (zeros, subnormals, the smallest and largest normals, infinities,
    /// NaNs, values whose result overflows, underflows or cancels), with
    /// NX set or clear and each rounding mode.
    #[test]
    fn test_host_arith_d_agrees_with_execute_wherever_it_applies() {
        let values: [f64; 16] = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 4.0,
            -f64::MIN_POSITIVE * 1.5,
            f64::MAX,
            -f64::MAX / 3.0,
            1e300,
            1e-300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            2.5e-308,
        ];
        let mut insts = Vec::new();
        for rm in [RNE, RTZ, DYN] {
            insts.extend([
                fadd_d(3, 1, 2, rm),
                fsub_d(3, 1, 2, rm),
                fmul_d(3, 1, 2, rm),
                fdiv_d(3, 1, 2, rm),
            ]);
            for opcode in [0x43, 0x47, 0x4b, 0x4f] {
                insts.push(r4(opcode, 1, 3, 1, 2, 4, rm));
            }
        }
        let mut taken = 0;
        for inst in insts {
            for a in values {
                for b in values {
                    for c in [0.0, -1.0, 1e308, f64::MIN_POSITIVE] {
                        for (fflags, frm) in [(0, 0), (FLAG_NX, 0), (FLAG_NX, 1)] {
                            let mut start = FpState {
                                fflags,
                                frm,
                                ..FpState::default()
                            };
                            start.f[1] = a.to_bits();
                            start.f[2] = b.to_bits();
                            start.f[4] = c.to_bits();
                            let mut general = start.clone();
                            let mut x = [0u64; 32];
                            execute(&mut general, &mut x, inst).expect("a valid instruction");
                            let mut fast = start.clone();
                            if host_arith_d(&mut fast, inst) {
                                taken += 1;
                                assert_eq!(
                                    fast, general,
                                    "inst {inst:#010x} a {a:e} b {b:e} c {c:e} fflags {fflags} frm {frm}"
                                );
                            } else {
                                assert_eq!(
                                    fast, start,
                                    "inst {inst:#010x}: not taken, yet changed"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(taken > 1000, "the host path was taken only {taken} times");
    }

    // ----- instruction encoders -----

    const RNE: u32 = 0;
    const RTZ: u32 = 1;
    const RDN: u32 = 2;
    const RUP: u32 = 3;
    const RMM: u32 = 4;
    const DYN: u32 = 7;

    fn op(funct7: u32, rs2: u32, rs1: u32, rm: u32, rd: u32) -> u32 {
        (funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | 0x53
    }
    fn r4(opcode: u32, fmt: u32, rd: u32, rs1: u32, rs2: u32, rs3: u32, rm: u32) -> u32 {
        (rs3 << 27) | (fmt << 25) | (rs2 << 20) | (rs1 << 15) | (rm << 12) | (rd << 7) | opcode
    }
    fn fadd_s(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x00, b, a, rm, rd)
    }
    fn fadd_d(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x01, b, a, rm, rd)
    }
    fn fsub_d(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x05, b, a, rm, rd)
    }
    fn fmul_s(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x08, b, a, rm, rd)
    }
    fn fmul_d(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x09, b, a, rm, rd)
    }
    fn fdiv_s(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x0c, b, a, rm, rd)
    }
    fn fdiv_d(rd: u32, a: u32, b: u32, rm: u32) -> u32 {
        op(0x0d, b, a, rm, rd)
    }
    fn fsqrt_s(rd: u32, a: u32, rm: u32) -> u32 {
        op(0x2c, 0, a, rm, rd)
    }
    fn fsqrt_d(rd: u32, a: u32, rm: u32) -> u32 {
        op(0x2d, 0, a, rm, rd)
    }
    fn fsgnj_s(rd: u32, a: u32, b: u32, kind: u32) -> u32 {
        op(0x10, b, a, kind, rd)
    }
    fn fsgnj_d(rd: u32, a: u32, b: u32, kind: u32) -> u32 {
        op(0x11, b, a, kind, rd)
    }
    fn fmin_s(rd: u32, a: u32, b: u32) -> u32 {
        op(0x14, b, a, 0, rd)
    }
    fn fmax_s(rd: u32, a: u32, b: u32) -> u32 {
        op(0x14, b, a, 1, rd)
    }
    fn fmin_d(rd: u32, a: u32, b: u32) -> u32 {
        op(0x15, b, a, 0, rd)
    }
    fn fmax_d(rd: u32, a: u32, b: u32) -> u32 {
        op(0x15, b, a, 1, rd)
    }
    fn fcvt_s_d(rd: u32, a: u32, rm: u32) -> u32 {
        op(0x20, 1, a, rm, rd)
    }
    fn fcvt_d_s(rd: u32, a: u32, rm: u32) -> u32 {
        op(0x21, 0, a, rm, rd)
    }
    fn feq_d(rd: u32, a: u32, b: u32) -> u32 {
        op(0x51, b, a, 2, rd)
    }
    fn flt_d(rd: u32, a: u32, b: u32) -> u32 {
        op(0x51, b, a, 1, rd)
    }
    fn fle_d(rd: u32, a: u32, b: u32) -> u32 {
        op(0x51, b, a, 0, rd)
    }
    fn feq_s(rd: u32, a: u32, b: u32) -> u32 {
        op(0x50, b, a, 2, rd)
    }
    fn flt_s(rd: u32, a: u32, b: u32) -> u32 {
        op(0x50, b, a, 1, rd)
    }
    /// FCVT.{W,WU,L,LU}.S: kind 0 W, 1 WU, 2 L, 3 LU.
    fn fcvt_int_s(kind: u32, rd: u32, a: u32, rm: u32) -> u32 {
        op(0x60, kind, a, rm, rd)
    }
    /// FCVT.{W,WU,L,LU}.D: kind 0 W, 1 WU, 2 L, 3 LU.
    fn fcvt_int_d(kind: u32, rd: u32, a: u32, rm: u32) -> u32 {
        op(0x61, kind, a, rm, rd)
    }
    /// FCVT.S.{W,WU,L,LU}
    fn fcvt_s_int(kind: u32, rd: u32, a: u32, rm: u32) -> u32 {
        op(0x68, kind, a, rm, rd)
    }
    /// FCVT.D.{W,WU,L,LU}
    fn fcvt_d_int(kind: u32, rd: u32, a: u32, rm: u32) -> u32 {
        op(0x69, kind, a, rm, rd)
    }
    fn fmv_x_w(rd: u32, a: u32) -> u32 {
        op(0x70, 0, a, 0, rd)
    }
    fn fclass_s(rd: u32, a: u32) -> u32 {
        op(0x70, 0, a, 1, rd)
    }
    fn fmv_x_d(rd: u32, a: u32) -> u32 {
        op(0x71, 0, a, 0, rd)
    }
    fn fclass_d(rd: u32, a: u32) -> u32 {
        op(0x71, 0, a, 1, rd)
    }
    fn fmv_w_x(rd: u32, a: u32) -> u32 {
        op(0x78, 0, a, 0, rd)
    }
    fn fmv_d_x(rd: u32, a: u32) -> u32 {
        op(0x79, 0, a, 0, rd)
    }
    fn fmadd_d(rd: u32, a: u32, b: u32, c: u32, rm: u32) -> u32 {
        r4(0x43, 1, rd, a, b, c, rm)
    }
    fn fmsub_d(rd: u32, a: u32, b: u32, c: u32, rm: u32) -> u32 {
        r4(0x47, 1, rd, a, b, c, rm)
    }
    fn fnmsub_d(rd: u32, a: u32, b: u32, c: u32, rm: u32) -> u32 {
        r4(0x4b, 1, rd, a, b, c, rm)
    }
    fn fnmadd_d(rd: u32, a: u32, b: u32, c: u32, rm: u32) -> u32 {
        r4(0x4f, 1, rd, a, b, c, rm)
    }
    fn fmadd_s(rd: u32, a: u32, b: u32, c: u32, rm: u32) -> u32 {
        r4(0x43, 0, rd, a, b, c, rm)
    }

    // ----- machine helpers -----

    struct M {
        fp: FpState,
        x: [u64; 32],
    }

    impl M {
        fn new() -> Self {
            M {
                fp: FpState::default(),
                x: [0; 32],
            }
        }
        fn run(&mut self, inst: u32) {
            assert_eq!(
                execute(&mut self.fp, &mut self.x, inst),
                Ok(()),
                "inst {inst:#010x}"
            );
        }
        fn set_d(&mut self, r: usize, v: f64) {
            self.fp.f[r] = v.to_bits();
        }
        fn set_s(&mut self, r: usize, v: f32) {
            self.fp.f[r] = nan_box(v.to_bits());
        }
        fn d(&self, r: usize) -> f64 {
            f64::from_bits(self.fp.f[r])
        }
        /// Reads a single result, checking it is NaN-boxed.
        fn s_bits(&self, r: usize) -> u32 {
            assert_eq!(self.fp.f[r] >> 32, 0xffff_ffff, "f{r} not NaN-boxed");
            self.fp.f[r] as u32
        }
        fn s(&self, r: usize) -> f32 {
            f32::from_bits(self.s_bits(r))
        }
        /// Returns and clears fflags.
        fn flags(&mut self) -> u8 {
            std::mem::take(&mut self.fp.fflags)
        }
    }

    const QNAN_D: u64 = 0x7ff8_0000_0000_1234;
    const SNAN_D: u64 = 0x7ff0_0000_0000_0001;
    const QNAN_S: u32 = 0x7fc0_1234;
    const SNAN_S: u32 = 0x7f80_0001;

    // ----- rounding modes -----

    #[test]
    fn single_one_third_rounds_per_static_mode() {
        let cases = [
            (RNE, 0x3eaa_aaab, 0xbeaa_aaab),
            (RTZ, 0x3eaa_aaaa, 0xbeaa_aaaa),
            (RDN, 0x3eaa_aaaa, 0xbeaa_aaab),
            (RUP, 0x3eaa_aaab, 0xbeaa_aaaa),
            (RMM, 0x3eaa_aaab, 0xbeaa_aaab),
        ];
        for (rm, pos, neg) in cases {
            let mut m = M::new();
            m.set_s(1, 1.0);
            m.set_s(2, 3.0);
            m.set_s(3, -1.0);
            m.run(fdiv_s(4, 1, 2, rm));
            m.run(fdiv_s(5, 3, 2, rm));
            assert_eq!(m.s_bits(4), pos, "1/3 rm={rm}");
            assert_eq!(m.s_bits(5), neg, "-1/3 rm={rm}");
            assert_eq!(m.flags(), FLAG_NX);
        }
    }

    #[test]
    fn double_one_third_rounds_per_dynamic_mode() {
        let cases = [
            (0u8, 0x3fd5_5555_5555_5555u64, 0xbfd5_5555_5555_5555u64),
            (1, 0x3fd5_5555_5555_5555, 0xbfd5_5555_5555_5555),
            (2, 0x3fd5_5555_5555_5555, 0xbfd5_5555_5555_5556),
            (3, 0x3fd5_5555_5555_5556, 0xbfd5_5555_5555_5555),
            (4, 0x3fd5_5555_5555_5555, 0xbfd5_5555_5555_5555),
        ];
        for (frm, pos, neg) in cases {
            let mut m = M::new();
            m.fp.frm = frm;
            m.set_d(1, 1.0);
            m.set_d(2, 3.0);
            m.set_d(3, -1.0);
            m.run(fdiv_d(4, 1, 2, DYN));
            m.run(fdiv_d(5, 3, 2, DYN));
            assert_eq!(m.fp.f[4], pos, "1/3 frm={frm}");
            assert_eq!(m.fp.f[5], neg, "-1/3 frm={frm}");
            assert_eq!(m.flags(), FLAG_NX);
        }
    }

    #[test]
    fn static_rm_overrides_frm() {
        let mut m = M::new();
        m.fp.frm = 3; // RUP
        m.set_d(1, 1.0);
        m.set_d(2, 3.0);
        m.run(fdiv_d(3, 1, 2, RTZ));
        assert_eq!(m.fp.f[3], 0x3fd5_5555_5555_5555);
    }

    #[test]
    fn rmm_breaks_ties_away_and_rne_to_even() {
        // 1 + 2^-24 is exactly halfway between 1 and the next single.
        let mut m = M::new();
        m.set_s(1, 1.0);
        m.set_s(2, f32::from_bits(0x3380_0000)); // 2^-24
        m.run(fadd_s(3, 1, 2, RNE));
        m.run(fadd_s(4, 1, 2, RMM));
        m.run(fadd_s(5, 1, 2, RUP));
        m.run(fadd_s(6, 1, 2, RDN));
        assert_eq!(m.s_bits(3), 0x3f80_0000);
        assert_eq!(m.s_bits(4), 0x3f80_0001);
        assert_eq!(m.s_bits(5), 0x3f80_0001);
        assert_eq!(m.s_bits(6), 0x3f80_0000);
        assert_eq!(m.flags(), FLAG_NX);
    }

    #[test]
    fn float_to_int_rounds_halves_per_mode() {
        // (rm, 2.5, -2.5, 0.5, -0.5)
        let cases: [(u32, i64, i64, i64, i64); 5] = [
            (RNE, 2, -2, 0, 0),
            (RTZ, 2, -2, 0, 0),
            (RDN, 2, -3, 0, -1),
            (RUP, 3, -2, 1, 0),
            (RMM, 3, -3, 1, -1),
        ];
        for (rm, p, n, ph, nh) in cases {
            let mut m = M::new();
            m.set_d(1, 2.5);
            m.set_d(2, -2.5);
            m.set_d(3, 0.5);
            m.set_d(4, -0.5);
            m.set_s(5, 2.5);
            m.set_s(6, -2.5);
            for kind in [0, 2] {
                m.run(fcvt_int_d(kind, 10, 1, rm));
                m.run(fcvt_int_d(kind, 11, 2, rm));
                m.run(fcvt_int_d(kind, 12, 3, rm));
                m.run(fcvt_int_d(kind, 13, 4, rm));
                m.run(fcvt_int_s(kind, 14, 5, rm));
                m.run(fcvt_int_s(kind, 15, 6, rm));
                assert_eq!(m.x[10] as i64, p, "2.5 rm={rm} kind={kind}");
                assert_eq!(m.x[11] as i64, n, "-2.5 rm={rm} kind={kind}");
                assert_eq!(m.x[12] as i64, ph, "0.5 rm={rm} kind={kind}");
                assert_eq!(m.x[13] as i64, nh, "-0.5 rm={rm} kind={kind}");
                assert_eq!(m.x[14] as i64, p, "2.5f rm={rm} kind={kind}");
                assert_eq!(m.x[15] as i64, n, "-2.5f rm={rm} kind={kind}");
                assert_eq!(m.flags(), FLAG_NX, "rm={rm} kind={kind}");
            }
        }
    }

    #[test]
    fn int_to_float_rounds_per_mode() {
        // 2^24 + 1 is not representable in single precision.
        let mut m = M::new();
        m.x[1] = 16_777_217;
        m.x[2] = (-16_777_217i64) as u64;
        m.run(fcvt_s_int(0, 1, 1, RTZ));
        m.run(fcvt_s_int(0, 2, 1, RUP));
        m.run(fcvt_s_int(0, 3, 2, RDN));
        m.run(fcvt_s_int(2, 4, 2, RUP));
        m.run(fcvt_s_int(0, 5, 1, RNE));
        assert_eq!(m.s(1), 16_777_216.0);
        assert_eq!(m.s(2), 16_777_218.0);
        assert_eq!(m.s(3), -16_777_218.0);
        assert_eq!(m.s(4), -16_777_216.0);
        assert_eq!(m.s(5), 16_777_216.0);
        assert_eq!(m.flags(), FLAG_NX);
        // Exact conversions raise nothing.
        m.x[3] = 12345;
        m.run(fcvt_d_int(0, 6, 3, RNE));
        m.run(fcvt_s_int(3, 7, 3, RNE));
        assert_eq!(m.d(6), 12345.0);
        assert_eq!(m.s(7), 12345.0);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn int_to_float_uses_operand_width_and_signedness() {
        let mut m = M::new();
        m.x[1] = 0xdead_beef_ffff_ffff; // W: -1, WU: 2^32-1
        m.run(fcvt_d_int(0, 1, 1, RNE));
        m.run(fcvt_d_int(1, 2, 1, RNE));
        assert_eq!(m.d(1), -1.0);
        assert_eq!(m.d(2), 4_294_967_295.0);
        m.x[2] = u64::MAX;
        m.run(fcvt_d_int(2, 3, 2, RNE));
        m.run(fcvt_d_int(3, 4, 2, RNE));
        assert_eq!(m.d(3), -1.0);
        assert_eq!(m.d(4), 18_446_744_073_709_551_616.0);
        assert_eq!(m.flags(), FLAG_NX); // u64::MAX rounds
        m.x[3] = 1u64 << 63;
        m.run(fcvt_s_int(3, 5, 3, RNE));
        m.run(fcvt_s_int(2, 6, 3, RNE));
        assert_eq!(m.s(5), 9_223_372_036_854_775_808.0);
        assert_eq!(m.s(6), -9_223_372_036_854_775_808.0);
        assert_eq!(m.flags(), 0);
    }

    // ----- flags -----

    #[test]
    fn invalid_sqrt_of_negative_sets_nv_and_gives_canonical_nan() {
        let mut m = M::new();
        m.set_d(1, -1.0);
        m.run(fsqrt_d(2, 1, RNE));
        assert_eq!(m.fp.f[2], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
        m.set_s(3, -4.0);
        m.run(fsqrt_s(4, 3, RNE));
        assert_eq!(m.s_bits(4), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), FLAG_NV);
        // sqrt(-0) = -0, exact.
        m.set_d(5, -0.0);
        m.run(fsqrt_d(6, 5, RNE));
        assert_eq!(m.fp.f[6], (-0.0f64).to_bits());
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn divide_by_zero_sets_dz_with_signed_infinity() {
        let mut m = M::new();
        m.set_d(1, 1.0);
        m.set_d(2, -0.0);
        m.run(fdiv_d(3, 1, 2, RNE));
        assert_eq!(m.d(3), f64::NEG_INFINITY);
        assert_eq!(m.flags(), FLAG_DZ);
        m.set_s(4, 1.0);
        m.set_s(5, 0.0);
        m.run(fdiv_s(6, 4, 5, RNE));
        assert_eq!(m.s(6), f32::INFINITY);
        assert_eq!(m.flags(), FLAG_DZ);
        // 0/0 is invalid, not a division by zero.
        m.set_d(7, 0.0);
        m.run(fdiv_d(8, 7, 7, RNE));
        assert_eq!(m.fp.f[8], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
    }

    #[test]
    fn overflow_sets_of_nx_and_result_depends_on_mode() {
        let mut m = M::new();
        m.set_d(1, f64::MAX);
        m.set_d(2, 2.0);
        m.run(fmul_d(3, 1, 2, RNE));
        assert_eq!(m.d(3), f64::INFINITY);
        assert_eq!(m.flags(), FLAG_OF | FLAG_NX);
        m.run(fmul_d(4, 1, 2, RTZ));
        assert_eq!(m.d(4), f64::MAX);
        assert_eq!(m.flags(), FLAG_OF | FLAG_NX);
        m.set_s(5, f32::MAX);
        m.set_s(6, -2.0);
        m.run(fmul_s(7, 5, 6, RUP));
        assert_eq!(m.s(7), -f32::MAX);
        m.run(fmul_s(8, 5, 6, RDN));
        assert_eq!(m.s(8), f32::NEG_INFINITY);
        assert_eq!(m.flags(), FLAG_OF | FLAG_NX);
    }

    #[test]
    fn underflow_needs_tiny_and_inexact() {
        let mut m = M::new();
        // Tiny and inexact: UF | NX.
        m.set_d(1, 1e-200);
        m.run(fmul_d(2, 1, 1, RNE));
        assert_eq!(m.d(2), 0.0);
        assert_eq!(m.flags(), FLAG_UF | FLAG_NX);
        // Tiny but exact (a subnormal result): no flag.
        m.set_d(3, f64::MIN_POSITIVE);
        m.set_d(4, 0.5);
        m.run(fmul_d(5, 3, 4, RNE));
        assert_eq!(m.d(5), f64::MIN_POSITIVE / 2.0);
        assert_eq!(m.flags(), 0);
        // Tininess is detected after rounding (RISC-V): the product
        // 2^-1022 * (1 - 2^-104), just below the smallest normal, rounds up to
        // it even with an unbounded exponent, so it is not tiny: NX only.
        m.fp.f[3] = 0x000f_ffff_ffff_ffff; // largest subnormal: 2^-1022 * (1 - 2^-52)
        m.fp.f[6] = 0x3ff0_0000_0000_0001; // 1 + 2^-52
        m.run(fmul_d(7, 3, 6, RNE));
        assert_eq!(m.d(7), f64::MIN_POSITIVE);
        assert_eq!(m.flags(), FLAG_NX);
        m.set_s(8, f32::MIN_POSITIVE);
        m.set_s(9, 1.0 / 3.0);
        m.run(fmul_s(10, 8, 9, RNE));
        assert_eq!(m.flags(), FLAG_UF | FLAG_NX);
    }

    #[test]
    fn inexact_only_when_rounding() {
        let mut m = M::new();
        m.set_d(1, 0.1);
        m.set_d(2, 0.2);
        m.run(fadd_d(3, 1, 2, RNE));
        assert_eq!(m.d(3), 0.1 + 0.2);
        assert_eq!(m.flags(), FLAG_NX);
        m.set_d(4, 1.5);
        m.set_d(5, 2.25);
        m.run(fadd_d(6, 4, 5, RNE));
        m.run(fsub_d(7, 4, 5, RNE));
        m.run(fmul_d(8, 4, 5, RNE));
        assert_eq!(m.d(6), 3.75);
        assert_eq!(m.d(7), -0.75);
        assert_eq!(m.d(8), 3.375);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn flags_accrue_across_instructions() {
        let mut m = M::new();
        m.set_d(1, 1.0);
        m.set_d(2, 0.0);
        m.set_d(3, 3.0);
        m.run(fdiv_d(4, 1, 2, RNE)); // DZ
        m.run(fdiv_d(5, 1, 3, RNE)); // NX
        assert_eq!(m.fp.fflags, FLAG_DZ | FLAG_NX);
        m.run(fadd_d(6, 1, 1, RNE)); // exact: flags stay
        assert_eq!(m.fp.fflags, FLAG_DZ | FLAG_NX);
    }

    #[test]
    fn exact_signed_zero_sums_follow_rounding_mode() {
        let mut m = M::new();
        m.set_d(1, 1.0);
        m.run(fsub_d(2, 1, 1, RNE));
        m.run(fsub_d(3, 1, 1, RDN));
        assert_eq!(m.fp.f[2], 0);
        assert_eq!(m.fp.f[3], (-0.0f64).to_bits());
        assert_eq!(m.flags(), 0);
    }

    // ----- NaN boxing and canonical NaNs -----

    #[test]
    fn nan_box_and_unbox() {
        assert_eq!(nan_box(0x3f80_0000), 0xffff_ffff_3f80_0000);
        assert_eq!(unbox_f32(0xffff_ffff_3f80_0000), 0x3f80_0000);
        assert_eq!(unbox_f32(0x0000_0000_3f80_0000), CANONICAL_NAN_F32);
        assert_eq!(unbox_f32(0xffff_fffe_3f80_0000), CANONICAL_NAN_F32);
        assert_eq!(unbox_f32(0x7fff_ffff_3f80_0000), CANONICAL_NAN_F32);
    }

    #[test]
    fn improperly_boxed_single_operand_reads_as_canonical_nan() {
        let mut m = M::new();
        m.fp.f[1] = 1.0f64.to_bits(); // a double, not a boxed single
        m.set_s(2, 1.0);
        m.run(fadd_s(3, 1, 2, RNE));
        assert_eq!(m.s_bits(3), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), 0); // the canonical NaN is quiet
        m.run(fclass_s(10, 1));
        assert_eq!(m.x[10], 1 << 9);
        // Sign injection sees the canonical NaN too.
        m.set_s(4, -2.0);
        m.run(fsgnj_s(5, 1, 4, 0));
        assert_eq!(m.fp.f[5], 0xffff_ffff_ffc0_0000);
        // fcvt.d.s of it is the canonical double NaN.
        m.run(fcvt_d_s(6, 1, RNE));
        assert_eq!(m.fp.f[6], CANONICAL_NAN_F64);
        // Compares treat it as a quiet NaN.
        m.run(feq_s(11, 1, 1));
        assert_eq!(m.x[11], 0);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn single_results_are_nan_boxed() {
        let mut m = M::new();
        m.fp.f = [0; 32];
        m.set_s(1, 1.5);
        m.set_s(2, 2.0);
        m.run(fmul_s(3, 1, 2, RNE));
        assert_eq!(m.fp.f[3], nan_box(3.0f32.to_bits()));
        m.run(fmin_s(4, 1, 2));
        assert_eq!(m.fp.f[4], nan_box(1.5f32.to_bits()));
        m.run(fsgnj_s(5, 1, 2, 1));
        assert_eq!(m.fp.f[5], nan_box((-1.5f32).to_bits()));
        m.set_d(6, 0.25);
        m.run(fcvt_s_d(7, 6, RNE));
        assert_eq!(m.fp.f[7], nan_box(0.25f32.to_bits()));
        m.x[1] = 7;
        m.run(fcvt_s_int(0, 8, 1, RNE));
        assert_eq!(m.fp.f[8], nan_box(7.0f32.to_bits()));
        m.run(fmadd_s(9, 1, 2, 2, RNE));
        assert_eq!(m.fp.f[9], nan_box(5.0f32.to_bits()));
    }

    #[test]
    fn nan_operands_give_canonical_nan_and_snan_sets_nv() {
        let mut m = M::new();
        m.fp.f[1] = QNAN_D;
        m.set_d(2, 1.0);
        m.run(fadd_d(3, 1, 2, RNE));
        assert_eq!(m.fp.f[3], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), 0);
        m.fp.f[4] = SNAN_D;
        m.run(fmul_d(5, 2, 4, RNE));
        assert_eq!(m.fp.f[5], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
        m.fp.f[6] = nan_box(QNAN_S | 0x8000_0000);
        m.set_s(7, 1.0);
        m.run(fadd_s(8, 6, 7, RNE));
        assert_eq!(m.s_bits(8), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), 0);
        m.fp.f[9] = nan_box(SNAN_S);
        m.run(fdiv_s(10, 7, 9, RNE));
        assert_eq!(m.s_bits(10), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), FLAG_NV);
        // inf - inf
        m.set_d(11, f64::INFINITY);
        m.run(fsub_d(12, 11, 11, RNE));
        assert_eq!(m.fp.f[12], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
    }

    #[test]
    fn precision_conversions_canonicalize_nans_and_round() {
        let mut m = M::new();
        m.fp.f[1] = QNAN_D;
        m.run(fcvt_s_d(2, 1, RNE));
        assert_eq!(m.fp.f[2], nan_box(CANONICAL_NAN_F32));
        assert_eq!(m.flags(), 0);
        m.fp.f[3] = SNAN_D;
        m.run(fcvt_s_d(4, 3, RNE));
        assert_eq!(m.s_bits(4), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), FLAG_NV);
        m.fp.f[5] = nan_box(SNAN_S);
        m.run(fcvt_d_s(6, 5, RNE));
        assert_eq!(m.fp.f[6], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
        // Narrowing rounds per mode and can overflow.
        m.set_d(7, 1.0 / 3.0);
        m.run(fcvt_s_d(8, 7, RTZ));
        m.run(fcvt_s_d(9, 7, RUP));
        assert_eq!(m.s_bits(8), 0x3eaa_aaaa);
        assert_eq!(m.s_bits(9), 0x3eaa_aaab);
        assert_eq!(m.flags(), FLAG_NX);
        m.set_d(10, 1e300);
        m.run(fcvt_s_d(11, 10, RNE));
        assert_eq!(m.s(11), f32::INFINITY);
        assert_eq!(m.flags(), FLAG_OF | FLAG_NX);
        // Widening is exact.
        m.set_s(12, 0.1);
        m.run(fcvt_d_s(13, 12, RNE));
        assert_eq!(m.d(13), f64::from(0.1f32));
        assert_eq!(m.flags(), 0);
    }

    // ----- min / max -----

    #[test]
    fn fmin_fmax_order_signed_zeros() {
        let mut m = M::new();
        m.set_d(1, 0.0);
        m.set_d(2, -0.0);
        m.run(fmin_d(3, 1, 2));
        m.run(fmin_d(4, 2, 1));
        m.run(fmax_d(5, 1, 2));
        m.run(fmax_d(6, 2, 1));
        assert_eq!(m.fp.f[3], (-0.0f64).to_bits());
        assert_eq!(m.fp.f[4], (-0.0f64).to_bits());
        assert_eq!(m.fp.f[5], 0);
        assert_eq!(m.fp.f[6], 0);
        m.set_s(7, 0.0);
        m.set_s(8, -0.0);
        m.run(fmin_s(9, 7, 8));
        m.run(fmax_s(10, 8, 7));
        assert_eq!(m.s_bits(9), 0x8000_0000);
        assert_eq!(m.s_bits(10), 0);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fmin_fmax_pick_ordered_values() {
        let mut m = M::new();
        m.set_d(1, -3.0);
        m.set_d(2, 2.0);
        m.set_d(3, f64::NEG_INFINITY);
        m.run(fmin_d(4, 1, 2));
        m.run(fmax_d(5, 1, 2));
        m.run(fmin_d(6, 2, 3));
        m.run(fmax_d(7, 3, 3));
        assert_eq!(m.d(4), -3.0);
        assert_eq!(m.d(5), 2.0);
        assert_eq!(m.d(6), f64::NEG_INFINITY);
        assert_eq!(m.d(7), f64::NEG_INFINITY);
        m.set_s(8, 1.0);
        m.set_s(9, -1.0);
        m.run(fmax_s(10, 9, 8));
        assert_eq!(m.s(10), 1.0);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fmin_fmax_one_nan_returns_other_operand() {
        let mut m = M::new();
        m.fp.f[1] = QNAN_D;
        m.set_d(2, 5.0);
        m.run(fmin_d(3, 1, 2));
        m.run(fmax_d(4, 2, 1));
        assert_eq!(m.d(3), 5.0);
        assert_eq!(m.d(4), 5.0);
        assert_eq!(m.flags(), 0);
        m.fp.f[5] = nan_box(QNAN_S);
        m.set_s(6, -5.0);
        m.run(fmax_s(7, 5, 6));
        assert_eq!(m.s(7), -5.0);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fmin_fmax_snan_sets_nv_and_still_returns_other() {
        let mut m = M::new();
        m.fp.f[1] = SNAN_D;
        m.set_d(2, 5.0);
        m.run(fmax_d(3, 1, 2));
        assert_eq!(m.d(3), 5.0);
        assert_eq!(m.flags(), FLAG_NV);
        m.fp.f[4] = nan_box(SNAN_S);
        m.set_s(5, 1.0);
        m.run(fmin_s(6, 5, 4));
        assert_eq!(m.s(6), 1.0);
        assert_eq!(m.flags(), FLAG_NV);
    }

    #[test]
    fn fmin_fmax_both_nan_give_canonical_nan() {
        let mut m = M::new();
        m.fp.f[1] = QNAN_D;
        m.fp.f[2] = QNAN_D | (1 << 63);
        m.run(fmin_d(3, 1, 2));
        assert_eq!(m.fp.f[3], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), 0);
        m.fp.f[4] = SNAN_D;
        m.run(fmax_d(5, 4, 1));
        assert_eq!(m.fp.f[5], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
        m.fp.f[6] = nan_box(QNAN_S);
        m.fp.f[7] = nan_box(SNAN_S);
        m.run(fmax_s(8, 6, 7));
        assert_eq!(m.s_bits(8), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), FLAG_NV);
    }

    // ----- comparisons -----

    #[test]
    fn feq_is_quiet_flt_fle_are_signaling() {
        let mut m = M::new();
        m.fp.f[1] = QNAN_D;
        m.set_d(2, 1.0);
        m.x[10] = 99;
        m.run(feq_d(10, 1, 2));
        assert_eq!((m.x[10], m.flags()), (0, 0));
        m.x[10] = 99;
        m.run(flt_d(10, 1, 2));
        assert_eq!((m.x[10], m.flags()), (0, FLAG_NV));
        m.x[10] = 99;
        m.run(fle_d(10, 2, 1));
        assert_eq!((m.x[10], m.flags()), (0, FLAG_NV));
        m.fp.f[3] = SNAN_D;
        m.run(feq_d(10, 3, 2));
        assert_eq!((m.x[10], m.flags()), (0, FLAG_NV));
        m.fp.f[4] = nan_box(QNAN_S);
        m.set_s(5, 1.0);
        m.run(feq_s(11, 4, 5));
        assert_eq!((m.x[11], m.flags()), (0, 0));
        m.run(flt_s(11, 5, 4));
        assert_eq!((m.x[11], m.flags()), (0, FLAG_NV));
    }

    #[test]
    fn comparisons_order_values_and_equate_zeros() {
        let mut m = M::new();
        m.set_d(1, -0.0);
        m.set_d(2, 0.0);
        m.set_d(3, 1.0);
        m.run(feq_d(10, 1, 2));
        m.run(flt_d(11, 1, 2));
        m.run(fle_d(12, 1, 2));
        m.run(flt_d(13, 2, 3));
        m.run(fle_d(14, 3, 2));
        assert_eq!(&m.x[10..15], &[1, 0, 1, 1, 0]);
        m.set_s(4, -1.0);
        m.set_s(5, 2.0);
        m.run(flt_s(15, 4, 5));
        m.run(feq_s(16, 5, 5));
        assert_eq!(&m.x[15..17], &[1, 1]);
        assert_eq!(m.flags(), 0);
    }

    // ----- classification -----

    #[test]
    fn fclass_d_all_ten_classes() {
        let cases: [(u64, u64); 10] = [
            (f64::NEG_INFINITY.to_bits(), 1 << 0),
            ((-1.5f64).to_bits(), 1 << 1),
            (0x800f_ffff_ffff_ffff, 1 << 2),
            ((-0.0f64).to_bits(), 1 << 3),
            (0, 1 << 4),
            (1, 1 << 5),
            (1.5f64.to_bits(), 1 << 6),
            (f64::INFINITY.to_bits(), 1 << 7),
            (SNAN_D, 1 << 8),
            (QNAN_D, 1 << 9),
        ];
        let mut m = M::new();
        for (bits, class) in cases {
            m.fp.f[1] = bits;
            m.run(fclass_d(5, 1));
            assert_eq!(m.x[5], class, "fclass.d {bits:#x}");
        }
        m.fp.f[1] = SNAN_D | (1 << 63);
        m.run(fclass_d(5, 1));
        assert_eq!(m.x[5], 1 << 8);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fclass_s_all_ten_classes() {
        let cases: [(u32, u64); 10] = [
            (f32::NEG_INFINITY.to_bits(), 1 << 0),
            ((-1.5f32).to_bits(), 1 << 1),
            (0x8000_0001, 1 << 2),
            (0x8000_0000, 1 << 3),
            (0, 1 << 4),
            (0x007f_ffff, 1 << 5),
            (1.5f32.to_bits(), 1 << 6),
            (f32::INFINITY.to_bits(), 1 << 7),
            (SNAN_S, 1 << 8),
            (QNAN_S, 1 << 9),
        ];
        let mut m = M::new();
        for (bits, class) in cases {
            m.fp.f[1] = nan_box(bits);
            m.run(fclass_s(5, 1));
            assert_eq!(m.x[5], class, "fclass.s {bits:#x}");
        }
    }

    // ----- float -> int conversion edges -----

    #[test]
    fn fcvt_w_d_edges() {
        const NV: u8 = FLAG_NV;
        let i32_max = i32::MAX as u64;
        let i32_min = i32::MIN as i64 as u64;
        let cases: [(f64, u64, u8); 8] = [
            (f64::NAN, i32_max, NV),
            (f64::INFINITY, i32_max, NV),
            (f64::NEG_INFINITY, i32_min, NV),
            (2_147_483_648.0, i32_max, NV),      // 2^31
            (-2_147_483_649.0, i32_min, NV),     // -2^31 - 1
            (-2_147_483_648.0, i32_min, 0),      // -2^31 exact
            (2_147_483_647.5, i32_max, FLAG_NX), // rounds down under RTZ
            (-1.0, u64::MAX, 0),
        ];
        for (v, want, flags) in cases {
            let mut m = M::new();
            m.set_d(1, v);
            m.run(fcvt_int_d(0, 5, 1, RTZ));
            assert_eq!((m.x[5], m.flags()), (want, flags), "fcvt.w.d {v}");
        }
        // -NaN also gives the maximum positive value.
        let mut m = M::new();
        m.fp.f[1] = QNAN_D | (1 << 63);
        m.run(fcvt_int_d(0, 5, 1, RNE));
        assert_eq!((m.x[5], m.flags()), (i32_max, NV));
    }

    #[test]
    fn fcvt_wu_results_are_sign_extended_and_saturate() {
        let cases: [(f64, u64, u8); 8] = [
            (f64::NAN, u64::MAX, FLAG_NV),
            (f64::INFINITY, u64::MAX, FLAG_NV),
            (f64::NEG_INFINITY, 0, FLAG_NV),
            (4_294_967_295.0, u64::MAX, 0), // 2^32 - 1, sign-extended
            (4_294_967_296.0, u64::MAX, FLAG_NV),
            (2_147_483_648.0, 0xffff_ffff_8000_0000, 0),
            (-1.0, 0, FLAG_NV),
            (-0.0, 0, 0),
        ];
        for (v, want, flags) in cases {
            let mut m = M::new();
            m.set_d(1, v);
            m.run(fcvt_int_d(1, 5, 1, RNE));
            assert_eq!((m.x[5], m.flags()), (want, flags), "fcvt.wu.d {v}");
            m.set_s(2, v as f32);
            m.run(fcvt_int_s(1, 6, 2, RNE));
            if v != 4_294_967_295.0 {
                assert_eq!((m.x[6], m.flags()), (want, flags), "fcvt.wu.s {v}");
            }
        }
        // Negative values that round to zero are in range, inexact.
        let mut m = M::new();
        m.set_d(1, -0.5);
        m.run(fcvt_int_d(1, 5, 1, RTZ));
        assert_eq!((m.x[5], m.flags()), (0, FLAG_NX));
        m.run(fcvt_int_d(1, 5, 1, RDN));
        assert_eq!((m.x[5], m.flags()), (0, FLAG_NV));
    }

    #[test]
    fn fcvt_l_lu_edges() {
        let two63 = 9_223_372_036_854_775_808.0f64;
        let cases: [(u32, f64, u64, u8); 10] = [
            (2, f64::NAN, i64::MAX as u64, FLAG_NV),
            (2, f64::INFINITY, i64::MAX as u64, FLAG_NV),
            (2, f64::NEG_INFINITY, i64::MIN as u64, FLAG_NV),
            (2, two63, i64::MAX as u64, FLAG_NV),
            (2, -two63, i64::MIN as u64, 0),
            (3, f64::NAN, u64::MAX, FLAG_NV),
            (3, two63, 1 << 63, 0),
            (3, 2.0 * two63, u64::MAX, FLAG_NV),
            (3, -0.0, 0, 0),
            (3, f64::NEG_INFINITY, 0, FLAG_NV),
        ];
        for (kind, v, want, flags) in cases {
            let mut m = M::new();
            m.set_d(1, v);
            m.run(fcvt_int_d(kind, 5, 1, RNE));
            assert_eq!((m.x[5], m.flags()), (want, flags), "kind {kind} of {v}");
            m.set_s(2, v as f32);
            m.run(fcvt_int_s(kind, 6, 2, RNE));
            assert_eq!(
                (m.x[6], m.flags()),
                (want, flags),
                "single kind {kind} of {v}"
            );
        }
    }

    #[test]
    fn fcvt_w_s_edges() {
        let mut m = M::new();
        m.fp.f[1] = nan_box(QNAN_S);
        m.run(fcvt_int_s(0, 5, 1, RNE));
        assert_eq!((m.x[5], m.flags()), (i32::MAX as u64, FLAG_NV));
        m.set_s(2, 2_147_483_648.0);
        m.run(fcvt_int_s(0, 5, 2, RNE));
        assert_eq!((m.x[5], m.flags()), (i32::MAX as u64, FLAG_NV));
        m.set_s(3, -2_147_483_648.0);
        m.run(fcvt_int_s(0, 5, 3, RNE));
        assert_eq!((m.x[5], m.flags()), (i32::MIN as i64 as u64, 0));
        m.set_s(4, -3.0);
        m.run(fcvt_int_s(0, 5, 4, RNE));
        assert_eq!((m.x[5], m.flags()), ((-3i64) as u64, 0));
    }

    // ----- moves and sign injection -----

    #[test]
    fn fmv_x_w_sign_extends_raw_low_bits() {
        let mut m = M::new();
        m.set_s(1, -1.0);
        m.run(fmv_x_w(5, 1));
        assert_eq!(m.x[5], 0xffff_ffff_bf80_0000);
        m.set_s(2, 1.0);
        m.run(fmv_x_w(6, 2));
        assert_eq!(m.x[6], 0x3f80_0000);
        // Improperly boxed: the low 32 bits pass unchanged.
        m.fp.f[3] = 0x1234_5678_ff80_0001;
        m.run(fmv_x_w(7, 3));
        assert_eq!(m.x[7], 0xffff_ffff_ff80_0001);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fmv_w_x_nan_boxes_and_keeps_payload() {
        let mut m = M::new();
        m.x[1] = 0xdead_beef_7f80_0001; // an sNaN pattern in the low bits
        m.run(fmv_w_x(2, 1));
        assert_eq!(m.fp.f[2], 0xffff_ffff_7f80_0001);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn fmv_d_x_and_x_d_are_raw() {
        let mut m = M::new();
        m.x[1] = SNAN_D;
        m.run(fmv_d_x(2, 1));
        m.run(fmv_x_d(3, 2));
        assert_eq!(m.fp.f[2], SNAN_D);
        assert_eq!(m.x[3], SNAN_D);
        assert_eq!(m.flags(), 0);
    }

    #[test]
    fn x0_is_never_written() {
        let mut m = M::new();
        m.set_d(1, -1.0);
        m.run(fmv_x_d(0, 1));
        m.run(fclass_d(0, 1));
        m.run(feq_d(0, 1, 1));
        m.run(fcvt_int_d(2, 0, 1, RNE));
        assert_eq!(m.x[0], 0);
    }

    #[test]
    fn sign_injection_variants() {
        let mut m = M::new();
        m.set_d(1, 3.0);
        m.set_d(2, -1.0);
        m.run(fsgnj_d(3, 1, 2, 0));
        m.run(fsgnj_d(4, 1, 2, 1));
        m.run(fsgnj_d(5, 2, 2, 2)); // fabs
        m.run(fsgnj_d(6, 1, 1, 1)); // fneg
        assert_eq!(m.d(3), -3.0);
        assert_eq!(m.d(4), 3.0);
        assert_eq!(m.d(5), 1.0);
        assert_eq!(m.d(6), -3.0);
        // NaN payloads pass through untouched and raise nothing.
        m.fp.f[7] = SNAN_D;
        m.run(fsgnj_d(8, 7, 7, 1));
        assert_eq!(m.fp.f[8], SNAN_D | (1 << 63));
        m.set_s(9, 2.0);
        m.set_s(10, -0.0);
        m.run(fsgnj_s(11, 9, 10, 2));
        assert_eq!(m.s(11), -2.0);
        assert_eq!(m.flags(), 0);
    }

    // ----- fused multiply-add -----

    #[test]
    fn fma_rounds_once() {
        // (1 + 2^-30)^2 - 1 = 2^-29 + 2^-60: separate mul rounding loses 2^-60.
        let a = 1.0 + 2f64.powi(-30);
        let mut m = M::new();
        m.set_d(1, a);
        m.set_d(2, -1.0);
        m.run(fmadd_d(3, 1, 1, 2, RNE));
        assert_eq!(m.d(3), 2f64.powi(-29) + 2f64.powi(-60));
        assert_eq!(m.flags(), 0);
        m.run(fmul_d(4, 1, 1, RNE));
        m.run(fadd_d(5, 4, 2, RNE));
        assert_eq!(m.d(5), 2f64.powi(-29));
    }

    #[test]
    fn fma_variants_negate_correctly() {
        let mut m = M::new();
        m.set_d(1, 2.0);
        m.set_d(2, 3.0);
        m.set_d(3, 1.0);
        m.run(fmadd_d(4, 1, 2, 3, RNE));
        m.run(fmsub_d(5, 1, 2, 3, RNE));
        m.run(fnmsub_d(6, 1, 2, 3, RNE));
        m.run(fnmadd_d(7, 1, 2, 3, RNE));
        assert_eq!([m.d(4), m.d(5), m.d(6), m.d(7)], [7.0, 5.0, -5.0, -7.0]);
        // Signs of exact zeros: fnmadd(+0, 1, +0) = -(0) - 0 = -0;
        // fmsub(+0, 1, +0) = 0 - 0 = +0 in RNE, -0 in RDN.
        m.set_d(8, 0.0);
        m.run(fnmadd_d(9, 8, 3, 8, RNE));
        m.run(fmsub_d(10, 8, 3, 8, RNE));
        m.run(fmsub_d(11, 8, 3, 8, RDN));
        assert_eq!(m.fp.f[9], (-0.0f64).to_bits());
        assert_eq!(m.fp.f[10], 0);
        assert_eq!(m.fp.f[11], (-0.0f64).to_bits());
        assert_eq!(m.flags(), 0);
        // Single precision.
        m.set_s(12, 2.0);
        m.set_s(13, 3.0);
        m.set_s(14, 1.0);
        m.run(r4(0x4f, 0, 15, 12, 13, 14, RNE));
        assert_eq!(m.s(15), -7.0);
    }

    #[test]
    fn fma_inf_times_zero_is_invalid_even_with_quiet_nan_addend() {
        let mut m = M::new();
        m.set_d(1, f64::INFINITY);
        m.set_d(2, 0.0);
        m.fp.f[3] = QNAN_D;
        m.run(fmadd_d(4, 1, 2, 3, RNE));
        assert_eq!(m.fp.f[4], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), FLAG_NV);
        // A quiet NaN addend with a valid product raises nothing.
        m.set_d(5, 1.0);
        m.run(fmadd_d(6, 5, 5, 3, RNE));
        assert_eq!(m.fp.f[6], CANONICAL_NAN_F64);
        assert_eq!(m.flags(), 0);
        m.set_s(7, f32::INFINITY);
        m.set_s(8, 0.0);
        m.fp.f[9] = nan_box(QNAN_S);
        m.run(fmadd_s(10, 8, 7, 9, RNE));
        assert_eq!(m.s_bits(10), CANONICAL_NAN_F32);
        assert_eq!(m.flags(), FLAG_NV);
    }

    #[test]
    fn fma_rounding_modes_and_overflow() {
        let mut m = M::new();
        m.set_d(1, 1.0);
        m.set_d(2, 3.0);
        m.set_d(3, 2f64.powi(-60));
        m.run(fmadd_d(4, 1, 2, 3, RUP));
        m.run(fmadd_d(5, 1, 2, 3, RDN));
        assert_eq!(m.fp.f[4], 3.0f64.to_bits() + 1);
        assert_eq!(m.d(5), 3.0);
        assert_eq!(m.flags(), FLAG_NX);
        m.set_d(6, f64::MAX);
        m.run(fmadd_d(7, 6, 2, 1, RNE));
        assert_eq!(m.d(7), f64::INFINITY);
        assert_eq!(m.flags(), FLAG_OF | FLAG_NX);
    }

    // ----- cross-check against the host's IEEE arithmetic (RNE) -----

    /// Deterministic xorshift64* source of bit patterns biased towards
    /// interesting exponents.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn f64(&mut self) -> f64 {
            let r = self.next();
            match r & 7 {
                // Moderate exponents, so sums and products interact.
                0..=4 => f64::from_bits(
                    (r >> 3) & 0x000f_ffff_ffff_ffff | (0x3c0 + (r >> 56) % 0x80) << 52,
                ),
                5 => f64::from_bits(r >> 3 & 0x000f_ffff_ffff_ffff), // subnormal
                _ => f64::from_bits(r),
            }
            .copysign(if r & (1 << 60) != 0 { -1.0 } else { 1.0 })
        }
    }

    fn same_f64(got: u64, want: f64) -> bool {
        if want.is_nan() {
            got == CANONICAL_NAN_F64
        } else {
            got == want.to_bits()
        }
    }

    fn same_f32(got: u32, want: f32) -> bool {
        if want.is_nan() {
            got == CANONICAL_NAN_F32
        } else {
            got == want.to_bits()
        }
    }

    #[test]
    fn rne_results_match_host_ieee_arithmetic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut m = M::new();
        for _ in 0..20_000 {
            let (a, b, c) = (rng.f64(), rng.f64(), rng.f64());
            m.set_d(1, a);
            m.set_d(2, b);
            m.set_d(3, c);
            m.run(fadd_d(4, 1, 2, RNE));
            m.run(fsub_d(5, 1, 2, RNE));
            m.run(fmul_d(6, 1, 2, RNE));
            m.run(fdiv_d(7, 1, 2, RNE));
            m.run(fsqrt_d(8, 1, RNE));
            m.run(fmadd_d(9, 1, 2, 3, RNE));
            m.run(fmsub_d(10, 1, 2, 3, RNE));
            m.run(fnmsub_d(11, 1, 2, 3, RNE));
            m.run(fnmadd_d(12, 1, 2, 3, RNE));
            m.run(fcvt_s_d(13, 1, RNE));
            let want = [
                a + b,
                a - b,
                a * b,
                a / b,
                a.sqrt(),
                a.mul_add(b, c),
                a.mul_add(b, -c),
                (-a).mul_add(b, c),
                (-a).mul_add(b, -c),
            ];
            for (i, w) in want.iter().enumerate() {
                assert!(same_f64(m.fp.f[4 + i], *w), "op {i} on {a:e} {b:e} {c:e}");
            }
            assert!(same_f32(m.s_bits(13), a as f32), "fcvt.s.d {a:e}");
            // Single precision on the narrowed values.
            let (x, y, z) = (a as f32, b as f32, c as f32);
            m.set_s(1, x);
            m.set_s(2, y);
            m.set_s(3, z);
            m.run(fadd_s(4, 1, 2, RNE));
            m.run(fmul_s(5, 1, 2, RNE));
            m.run(fdiv_s(6, 1, 2, RNE));
            m.run(fsqrt_s(7, 1, RNE));
            m.run(fmadd_s(8, 1, 2, 3, RNE));
            let want = [x + y, x * y, x / y, x.sqrt(), x.mul_add(y, z)];
            for (i, w) in want.iter().enumerate() {
                assert!(
                    same_f32(m.s_bits(4 + i), *w),
                    "single op {i} on {x:e} {y:e} {z:e}"
                );
            }
            // Integer conversions of in-range values.
            let i = rng.next() as i64 >> (rng.next() % 64);
            m.x[1] = i as u64;
            m.run(fcvt_d_int(2, 14, 1, RNE));
            m.run(fcvt_s_int(2, 15, 1, RNE));
            assert_eq!(m.d(14), i as f64);
            assert_eq!(m.s(15), i as f32);
            m.run(fcvt_int_d(2, 2, 14, RTZ));
            if m.d(14) < 9_223_372_036_854_775_808.0 {
                assert_eq!(m.x[2] as i64, m.d(14) as i64);
            }
        }
    }

    impl Rng {
        /// Double bit patterns including specials and values near the
        /// underflow and overflow thresholds.
        fn f64_bits(&mut self) -> u64 {
            const SPECIAL: [u64; 12] = [
                0,
                1,
                0x000f_ffff_ffff_ffff,
                0x0010_0000_0000_0000,
                0x0010_0000_0000_0001,
                0x7fef_ffff_ffff_ffff,
                0x7ff0_0000_0000_0000,
                QNAN_D,
                SNAN_D,
                0x3ff0_0000_0000_0000,
                0x3fef_ffff_ffff_ffff,
                0x3ff0_0000_0000_0001,
            ];
            let r = self.next();
            let sign = r & (1 << 63);
            let bits = match (r >> 58) & 7 {
                0 => SPECIAL[(r % 12) as usize],
                1 => r & 0x000f_ffff_ffff_ffff | ((r >> 52) % 4) << 52, // near MIN_POSITIVE
                2 => r & 0x000f_ffff_ffff_ffff | (0x7fc + (r >> 52) % 4) << 52, // near MAX
                3 => r & 0x000f_ffff_ffff_ffff | (0x1f0 + (r >> 52) % 0x20) << 52, // squares underflow
                4 => r & 0x000f_ffff_ffff_ffff | (0x5f0 + (r >> 52) % 0x20) << 52, // squares overflow
                5 => r,
                _ => r & 0x000f_ffff_ffff_ffff | (0x3f0 + (r >> 52) % 0x20) << 52,
            };
            bits & !(1 << 63) | sign
        }
        /// Single bit patterns, built the same way.
        fn f32_bits(&mut self) -> u32 {
            const SPECIAL: [u32; 10] = [
                0,
                1,
                0x007f_ffff,
                0x0080_0000,
                0x0080_0001,
                0x7f7f_ffff,
                0x7f80_0000,
                QNAN_S,
                SNAN_S,
                0x3f80_0000,
            ];
            let r = self.next();
            let sign = (r >> 32) as u32 & (1 << 31);
            let m = r as u32 & 0x007f_ffff;
            let bits = match (r >> 58) & 7 {
                0 => SPECIAL[(r % 10) as usize],
                1 => m | (((r >> 40) % 4) as u32) << 23,
                2 => m | ((0xfc + (r >> 40) % 4) as u32) << 23,
                3 => m | ((0x30 + (r >> 40) % 0x10) as u32) << 23,
                4 => m | ((0xb0 + (r >> 40) % 0x10) as u32) << 23,
                5 => r as u32,
                _ => m | ((0x78 + (r >> 40) % 0x10) as u32) << 23,
            };
            bits & !(1 << 31) | sign
        }
    }

    /// Runs `inst` with NX clear (always SoftFloat) and with NX set (host
    /// fast path where it applies) and checks both give the same result and
    /// the same flags apart from NX.
    fn check_fast_path(m: &mut M, inst: u32, rd: usize, frm: u8) {
        m.fp.frm = frm;
        m.fp.fflags = 0;
        m.run(inst);
        let (slow, slow_flags) = (m.fp.f[rd], m.flags());
        m.fp.fflags = FLAG_NX;
        m.run(inst);
        let (fast, fast_flags) = (m.fp.f[rd], m.flags());
        assert_eq!(
            (fast, fast_flags),
            (slow, slow_flags | FLAG_NX),
            "inst {inst:#010x} on {:#x} {:#x} {:#x}",
            m.fp.f[1],
            m.fp.f[2],
            m.fp.f[3]
        );
    }

    #[test]
    fn host_fast_path_matches_softfloat_results_and_flags() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut m = M::new();
        for i in 0..100_000u32 {
            // Dynamic RNE half the time; other modes never take the fast path
            // but must still agree.
            let (rm, frm) = match i % 4 {
                0 => (RNE, 3),
                1 => (DYN, 0),
                2 => (DYN, 1 + (i / 4 % 4) as u8),
                _ => (RMM, 0),
            };
            m.fp.f[1] = rng.f64_bits();
            m.fp.f[2] = rng.f64_bits();
            m.fp.f[3] = rng.f64_bits();
            for inst in [
                fadd_d(4, 1, 2, rm),
                fsub_d(4, 1, 2, rm),
                fmul_d(4, 1, 2, rm),
                fdiv_d(4, 1, 2, rm),
                fsqrt_d(4, 1, rm),
                fmadd_d(4, 1, 2, 3, rm),
                fmsub_d(4, 1, 2, 3, rm),
                fnmsub_d(4, 1, 2, 3, rm),
                fnmadd_d(4, 1, 2, 3, rm),
                fcvt_s_d(4, 1, rm),
            ] {
                check_fast_path(&mut m, inst, 4, frm);
            }
            m.fp.f[1] = nan_box(rng.f32_bits());
            m.fp.f[2] = nan_box(rng.f32_bits());
            m.fp.f[3] = nan_box(rng.f32_bits());
            if i % 64 == 0 {
                m.fp.f[2] = 1.0f64.to_bits(); // improperly boxed
            }
            for inst in [
                fadd_s(4, 1, 2, rm),
                op(0x04, 2, 1, rm, 4), // fsub.s
                fmul_s(4, 1, 2, rm),
                fdiv_s(4, 1, 2, rm),
                fsqrt_s(4, 1, rm),
                fmadd_s(4, 1, 2, 3, rm),
                r4(0x47, 0, 4, 1, 2, 3, rm),
                r4(0x4b, 0, 4, 1, 2, 3, rm),
                r4(0x4f, 0, 4, 1, 2, 3, rm),
                fcvt_d_s(4, 1, rm),
            ] {
                check_fast_path(&mut m, inst, 4, frm);
            }
        }
    }

    #[test]
    fn exact_host_conversions_match_softfloat() {
        let mut rng = Rng(0xfeed_face_cafe_beef);
        let mut m = M::new();
        for _ in 0..20_000 {
            let f = rng.f32_bits();
            let i = rng.next();
            // SAFETY: plain SoftFloat conversions in a test.
            let (want_d, want_w, want_wu) = unsafe {
                (
                    sf::f32_to_f64(float32_t { v: f }).v,
                    sf::i32_to_f64(i as i32).v,
                    sf::ui32_to_f64(i as u32).v,
                )
            };
            // SAFETY: reads SoftFloat's thread-local flags in a test.
            let flags = unsafe { sf::softfloat_exceptionFlags_read_helper() };
            // SAFETY: clears SoftFloat's thread-local flags in a test.
            unsafe { sf::softfloat_exceptionFlags_write_helper(0) };
            m.fp.f[1] = nan_box(f);
            m.x[1] = i;
            m.run(fcvt_d_s(2, 1, RNE));
            m.run(fcvt_d_int(0, 3, 1, RUP));
            m.run(fcvt_d_int(1, 4, 1, RDN));
            assert_eq!([m.fp.f[2], m.fp.f[3], m.fp.f[4]], [want_d, want_w, want_wu]);
            assert_eq!(m.flags(), flags, "{f:#x}");
        }
    }

    #[test]
    fn rtz_conversions_to_int_match_softfloat() {
        let mut rng = Rng(0x5151_7272_9393_b4b4);
        let mut m = M::new();
        let edges = [
            2_147_483_647.9,
            2_147_483_648.0,
            -2_147_483_648.9,
            -2_147_483_649.0,
            4_294_967_295.5,
            4_294_967_296.0,
            -0.9,
            -1.0,
            -0.0,
            9_223_372_036_854_774_784.0,
            9_223_372_036_854_775_808.0,
            -9_223_372_036_854_775_808.0,
            -9_223_372_036_854_777_856.0,
            18_446_744_073_709_549_568.0,
            18_446_744_073_709_551_616.0,
        ];
        for i in 0..40_000usize {
            let d = if i < edges.len() {
                f64::to_bits(edges[i])
            } else if i % 2 == 0 {
                rng.f64_bits()
            } else {
                // Values with exponents around the integer ranges.
                let r = rng.next();
                r & 0x800f_ffff_ffff_ffff | (0x3fe + (r >> 52) % 0x44) << 52
            };
            let f = rng.f32_bits();
            m.fp.f[1] = d;
            m.fp.f[2] = nan_box(f);
            for kind in 0..4u32 {
                for (frm, rm) in [(0, RTZ), (1, DYN), (0, RNE)] {
                    m.fp.frm = frm;
                    m.run(fcvt_int_d(kind, 5, 1, rm));
                    m.run(fcvt_int_s(kind, 6, 2, rm));
                    let r = if rm == RNE { 0 } else { 1 };
                    let (a, b) = (float64_t { v: d }, float32_t { v: f });
                    // SAFETY: plain SoftFloat conversions in a test.
                    let want = unsafe {
                        match kind {
                            0 => [
                                sext32(sf::f64_to_i32(a, r, true) as u32),
                                sext32(sf::f32_to_i32(b, r, true) as u32),
                            ],
                            1 => [
                                sext32(sf::f64_to_ui32(a, r, true) as u32),
                                sext32(sf::f32_to_ui32(b, r, true) as u32),
                            ],
                            2 => [
                                sf::f64_to_i64(a, r, true) as u64,
                                sf::f32_to_i64(b, r, true) as u64,
                            ],
                            _ => [sf::f64_to_ui64(a, r, true), sf::f32_to_ui64(b, r, true)],
                        }
                    };
                    // SAFETY: reads and clears SoftFloat's thread-local flags.
                    let flags = unsafe {
                        let f = sf::softfloat_exceptionFlags_read_helper();
                        sf::softfloat_exceptionFlags_write_helper(0);
                        f
                    };
                    assert_eq!([m.x[5], m.x[6]], want, "kind {kind} rm {rm} {d:#x} {f:#x}");
                    assert_eq!(m.flags(), flags, "kind {kind} rm {rm} {d:#x} {f:#x}");
                }
            }
        }
    }

    // ----- illegal encodings -----

    #[test]
    fn invalid_rounding_mode_is_illegal_and_changes_nothing() {
        let mut m = M::new();
        m.set_d(1, 1.0);
        m.set_d(2, 3.0);
        m.x[3] = 5;
        let before = m.fp.clone();
        let x_before = m.x;
        let insts = |rm| {
            [
                fadd_d(4, 1, 2, rm),
                fdiv_s(4, 1, 2, rm),
                fsqrt_d(4, 1, rm),
                fmadd_d(4, 1, 2, 1, rm),
                fmadd_s(4, 1, 2, 1, rm),
                fcvt_int_d(0, 5, 1, rm),
                fcvt_int_s(3, 5, 1, rm),
                fcvt_d_int(0, 4, 3, rm),
                fcvt_s_int(2, 4, 3, rm),
                fcvt_s_d(4, 1, rm),
                fcvt_d_s(4, 1, rm),
            ]
        };
        for rm in [5, 6] {
            for inst in insts(rm) {
                assert_eq!(
                    execute(&mut m.fp, &mut m.x, inst),
                    Err(IllegalInstruction),
                    "{inst:#x}"
                );
            }
        }
        for frm in [5u8, 6, 7] {
            m.fp.frm = frm;
            let mut want = before.clone();
            want.frm = frm;
            for inst in insts(DYN) {
                assert_eq!(
                    execute(&mut m.fp, &mut m.x, inst),
                    Err(IllegalInstruction),
                    "{inst:#x}"
                );
            }
            assert_eq!(m.fp, want);
        }
        assert_eq!(m.x, x_before);
        // Instructions without a rounding mode ignore frm.
        m.run(fsgnj_d(4, 1, 2, 0));
        m.run(fmin_d(4, 1, 2));
        m.run(feq_d(6, 1, 2));
        m.run(fmv_x_d(6, 1));
    }

    #[test]
    fn reserved_encodings_are_illegal() {
        let mut fp = FpState::default();
        let mut x = [0u64; 32];
        let bad = [
            r4(0x43, 2, 1, 2, 3, 4, RNE), // FMADD.H
            r4(0x47, 3, 1, 2, 3, 4, RNE), // FMSUB.Q
            op(0x02, 2, 1, RNE, 3),       // FADD.H
            op(0x03, 2, 1, RNE, 3),       // FADD.Q
            op(0x2d, 1, 1, RNE, 3),       // FSQRT.D with rs2 != 0
            op(0x11, 2, 1, 3, 3),         // FSGNJ funct3 3
            op(0x15, 2, 1, 2, 3),         // FMIN/FMAX funct3 2
            op(0x51, 2, 1, 3, 3),         // compare funct3 3
            op(0x20, 0, 1, RNE, 3),       // FCVT.S.D needs rs2 = 1
            op(0x21, 1, 1, RNE, 3),       // FCVT.D.S needs rs2 = 0
            op(0x61, 4, 1, RNE, 3),       // FCVT.?.D rs2 = 4
            op(0x69, 5, 1, RNE, 3),       // FCVT.D.? rs2 = 5
            op(0x70, 0, 1, 2, 3),         // FMV.X.W/FCLASS funct3 2
            op(0x71, 1, 1, 0, 3),         // FMV.X.D rs2 != 0
            op(0x78, 0, 1, 1, 3),         // FMV.W.X funct3 1
            op(0x79, 1, 1, 0, 3),         // FMV.D.X rs2 != 0
            op(0x7f, 0, 1, 0, 3),         // unused funct7
            0x0000_0013,                  // not an FP opcode (ADDI)
        ];
        for inst in bad {
            assert_eq!(
                execute(&mut fp, &mut x, inst),
                Err(IllegalInstruction),
                "{inst:#010x}"
            );
        }
        assert_eq!(fp, FpState::default());
    }
}
