# Shared harness of the ISA conformance programs.
#
# Every program:
#   .include "macros.S"
#   START               # entry at 0x80000000 in M-mode, trap vector installed
#   TEST_... checks     # each TEST_* macro is one numbered check
#   PASS
#
# Register conventions: gp holds the number of the check in progress; the
# trap handler leaves every register but the trap record untouched. t5 and t6
# are scratch for the check macros, so tests keep their values elsewhere.
#
# Checks are numbered 1, 2, ... in the order their TEST_* lines appear in the
# program (the unindented TEST_* and NEXT_TEST lines; which-check.sh prints
# one): a failure writes (number << 16) | 0x3333 to the sifive,test
# finisher, so the exit status names the failing check. Only TEST_* macros
# bump the number, and every TEST_* line bumps it exactly once.

.equ FINISHER, 0x100000
.equ FINISHER_PASS, 0x5555
.equ FINISHER_FAIL, 0x3333

.equ MSTATUS_SIE, 1 << 1
.equ MSTATUS_MIE, 1 << 3
.equ MSTATUS_SPIE, 1 << 5
.equ MSTATUS_MPIE, 1 << 7
.equ MSTATUS_SPP, 1 << 8
.equ MSTATUS_MPP, 3 << 11
.equ MSTATUS_MPP_S, 1 << 11
.equ MSTATUS_FS, 3 << 13
.equ MSTATUS_MPRV, 1 << 17
.equ MSTATUS_SUM, 1 << 18
.equ MSTATUS_MXR, 1 << 19

.equ CAUSE_MISALIGNED_FETCH, 0
.equ CAUSE_FETCH_ACCESS, 1
.equ CAUSE_ILLEGAL, 2
.equ CAUSE_BREAKPOINT, 3
.equ CAUSE_MISALIGNED_LOAD, 4
.equ CAUSE_LOAD_ACCESS, 5
.equ CAUSE_MISALIGNED_STORE, 6
.equ CAUSE_STORE_ACCESS, 7
.equ CAUSE_ECALL_U, 8
.equ CAUSE_ECALL_S, 9
.equ CAUSE_ECALL_M, 11
.equ CAUSE_FETCH_PAGE_FAULT, 12
.equ CAUSE_LOAD_PAGE_FAULT, 13
.equ CAUSE_STORE_PAGE_FAULT, 15

# Offsets in the trap record (see trap_record below).
.equ TR_CAUSE, 0
.equ TR_EPC, 8
.equ TR_TVAL, 16
.equ TR_STATUS, 24
.equ TR_RESUME, 32
.equ TR_COUNT, 40
.equ TR_SAVE, 48

.set testnum, 0

# Starts the next numbered check.
.macro NEXT_TEST
  .set testnum, testnum + 1
  .if testnum > 255
    .error "more than 255 checks: QEMU's exit status keeps only 8 bits"
  .endif
  li gp, testnum
.endm

# Fails the check in progress unless reg == value (t6 is clobbered).
.macro EXPECT reg, value
  li t6, \value
  bne \reg, t6, fail
.endm

# Fails the check in progress unless reg1 == reg2.
.macro EXPECT_EQ reg1, reg2
  bne \reg1, \reg2, fail
.endm

# A check on a single register value computed by `code`.
# Usage: TEST_CASE dst, expected, code...
.macro TEST_CASE reg, value, code:vararg
  NEXT_TEST
  \code
  EXPECT \reg, \value
.endm

# Register-register ALU check: rd = op(a, b).
.macro TEST_RR op, expected, a, b
  NEXT_TEST
  li a1, \a
  li a2, \b
  \op a0, a1, a2
  EXPECT a0, \expected
.endm

# Register-immediate ALU check: rd = op(a, imm).
.macro TEST_RI op, expected, a, imm
  NEXT_TEST
  li a1, \a
  \op a0, a1, \imm
  EXPECT a0, \expected
.endm

# Arms the trap handler: the next trap resumes in M-mode at `label`.
.macro EXPECT_TRAP label
  la t6, trap_record
  la t5, \label
  sd t5, TR_RESUME(t6)
.endm

# Checks that a trap happened with this mcause (and clears the record).
.macro CHECK_TRAP cause
  la t6, trap_record
  ld t5, TR_RESUME(t6)
  bnez t5, fail
  ld t5, TR_CAUSE(t6)
  li t6, \cause
  bne t5, t6, fail
.endm

# The same for traps taken in S-mode through s_trap_vector.
.macro S_EXPECT_TRAP label
  la t6, s_trap_record
  la t5, \label
  sd t5, TR_RESUME(t6)
.endm
.macro S_CHECK_TRAP cause
  la t6, s_trap_record
  ld t5, TR_RESUME(t6)
  bnez t5, fail
  ld t5, TR_CAUSE(t6)
  li t6, \cause
  bne t5, t6, fail
.endm
.macro S_TRAP_FIELD reg, field
  la \reg, s_trap_record
  ld \reg, \field(\reg)
.endm

# Loads a field of the last trap record into reg.
.macro TRAP_FIELD reg, field
  la \reg, trap_record
  ld \reg, \field(\reg)
.endm

# A check that `insn` traps with `cause` (resuming after it).
.macro TEST_TRAP cause, insn:vararg
  NEXT_TEST
  EXPECT_TRAP 9998f
  \insn
  j fail
9998:
  CHECK_TRAP \cause
.endm


# Enters privilege `mode` (0 = U, 1 = S) at `label` with mret.
.macro ENTER_MODE mode, label
  li t6, MSTATUS_MPP
  csrc mstatus, t6
  li t6, (\mode) << 11
  csrs mstatus, t6
  la t6, \label
  csrw mepc, t6
  mret
.endm

.macro PASS
  j pass
.endm

# Program entry: stack, trap vector, FP on, counters readable.
.macro START
  .section .text.init, "ax"
  .globl _start
_start:
  la sp, stack_top
  la t0, trap_vector
  csrw mtvec, t0
  li t0, MSTATUS_FS
  csrs mstatus, t0
  csrwi fcsr, 0
  li gp, 0
  # PMP: let S and U reach all memory (one NAPOT region over everything).
  # An implementation without PMP may trap here: that is not a failure.
  EXPECT_TRAP 2f
  li t0, -1
  csrw pmpaddr0, t0
  li t0, 0x1f
  csrw pmpcfg0, t0
2:
  la t0, trap_record
  sd zero, TR_RESUME(t0)
  sd zero, TR_COUNT(t0)
  j 1f

# --- shared code ------------------------------------------------------------
  .balign 4
pass:
  li t0, FINISHER
  li t1, FINISHER_PASS
  sw t1, 0(t0)
8:
  j 8b

  .balign 4
fail:
  li t0, FINISHER
  slli t1, gp, 16
  li t2, FINISHER_FAIL
  or t1, t1, t2
  sw t1, 0(t0)
8:
  j 8b

# Every trap comes here in M-mode. An armed trap (EXPECT_TRAP) is recorded
# in trap_record and resumes at the armed label in M-mode with MIE off; any
# other trap fails the check in progress.
  .balign 4
trap_vector:
  csrw mscratch, t0
  la t0, trap_record
  sd t1, TR_SAVE(t0)
  csrr t1, mcause
  sd t1, TR_CAUSE(t0)
  csrr t1, mepc
  sd t1, TR_EPC(t0)
  csrr t1, mtval
  sd t1, TR_TVAL(t0)
  csrr t1, mstatus
  sd t1, TR_STATUS(t0)
  ld t1, TR_COUNT(t0)
  addi t1, t1, 1
  sd t1, TR_COUNT(t0)
  ld t1, TR_RESUME(t0)
  beqz t1, fail
  sd zero, TR_RESUME(t0)
  csrw mepc, t1
  li t1, MSTATUS_MPP
  csrs mstatus, t1
  li t1, MSTATUS_MPIE | MSTATUS_MPRV
  csrc mstatus, t1
  ld t1, TR_SAVE(t0)
  csrr t0, mscratch
  mret

# Traps delegated to S-mode come here (when a program points stvec here):
# the same protocol with s_trap_record, resuming in S-mode with SIE off.
  .balign 4
s_trap_vector:
  csrw sscratch, t0
  la t0, s_trap_record
  sd t1, TR_SAVE(t0)
  csrr t1, scause
  sd t1, TR_CAUSE(t0)
  csrr t1, sepc
  sd t1, TR_EPC(t0)
  csrr t1, stval
  sd t1, TR_TVAL(t0)
  csrr t1, sstatus
  sd t1, TR_STATUS(t0)
  ld t1, TR_COUNT(t0)
  addi t1, t1, 1
  sd t1, TR_COUNT(t0)
  ld t1, TR_RESUME(t0)
  beqz t1, fail
  sd zero, TR_RESUME(t0)
  csrw sepc, t1
  li t1, MSTATUS_SPP
  csrs sstatus, t1
  li t1, MSTATUS_SPIE
  csrc sstatus, t1
  ld t1, TR_SAVE(t0)
  csrr t0, sscratch
  sret

  .section .bss
  .balign 64
  .globl trap_record
trap_record:
  .space 64
s_trap_record:
  .space 64
  .text
1:
.endm

# --- floating point -------------------------------------------------------------
.equ NV, 0x10
.equ DZ, 0x08
.equ OF, 0x04
.equ UF, 0x02
.equ NX, 0x01

# Loads raw bits into an FP register (a double, or a boxed single).
.macro FLI_D freg, bits
  li t5, \bits
  fmv.d.x \freg, t5
.endm
.macro FLI_S freg, bits
  li t5, \bits
  fmv.w.x \freg, t5
.endm

# Checks the full 64 bits of fa0 and the accrued flags (then clears them).
.macro EXPECT_FA0 bits, flags
  fmv.x.d a0, fa0
  EXPECT a0, \bits
  csrrw a1, fflags, zero
  EXPECT a1, \flags
.endm

# Checks integer result a0 and the accrued flags.
.macro EXPECT_A0_FLAGS value, flags
  EXPECT a0, \value
  csrrw a1, fflags, zero
  EXPECT a1, \flags
.endm

# fa0 = op(fa1[, fa2[, fa3]])[, rm]; double operands, result checked as 64 bits.
# For .S operations the operands are boxed singles and the expected result is
# the 32-bit value: the check includes its NaN box (upper 32 bits all ones).
.macro TEST_FP1 op, prec, res, flags, a, rm=
  NEXT_TEST
  csrw fflags, zero
  FLI_\prec fa1, \a
  .ifb \rm
    \op fa0, fa1
  .else
    \op fa0, fa1, \rm
  .endif
  .ifc \prec, S
    EXPECT_FA0 0xffffffff00000000 | \res, \flags
  .else
    EXPECT_FA0 \res, \flags
  .endif
.endm
.macro TEST_FP2 op, prec, res, flags, a, b, rm=
  NEXT_TEST
  csrw fflags, zero
  FLI_\prec fa1, \a
  FLI_\prec fa2, \b
  .ifb \rm
    \op fa0, fa1, fa2
  .else
    \op fa0, fa1, fa2, \rm
  .endif
  .ifc \prec, S
    EXPECT_FA0 0xffffffff00000000 | \res, \flags
  .else
    EXPECT_FA0 \res, \flags
  .endif
.endm
.macro TEST_FP3 op, prec, res, flags, a, b, c, rm=
  NEXT_TEST
  csrw fflags, zero
  FLI_\prec fa1, \a
  FLI_\prec fa2, \b
  FLI_\prec fa3, \c
  .ifb \rm
    \op fa0, fa1, fa2, fa3
  .else
    \op fa0, fa1, fa2, fa3, \rm
  .endif
  .ifc \prec, S
    EXPECT_FA0 0xffffffff00000000 | \res, \flags
  .else
    EXPECT_FA0 \res, \flags
  .endif
.endm
# a0 = op(fa1[, fa2])[, rm]: conversions to integer, fclass, compares.
.macro TEST_FP_TO_X op, prec, res, flags, a, rm=
  NEXT_TEST
  csrw fflags, zero
  FLI_\prec fa1, \a
  .ifb \rm
    \op a0, fa1
  .else
    \op a0, fa1, \rm
  .endif
  EXPECT_A0_FLAGS \res, \flags
.endm
.macro TEST_FP_CMP op, prec, res, flags, a, b
  NEXT_TEST
  csrw fflags, zero
  FLI_\prec fa1, \a
  FLI_\prec fa2, \b
  \op a0, fa1, fa2
  EXPECT_A0_FLAGS \res, \flags
.endm
# fa0 = op(a1)[, rm]: conversions from integer.
.macro TEST_X_TO_FP op, prec, res, flags, x, rm=
  NEXT_TEST
  csrw fflags, zero
  li a1, \x
  .ifb \rm
    \op fa0, a1
  .else
    \op fa0, a1, \rm
  .endif
  .ifc \prec, S
    EXPECT_FA0 0xffffffff00000000 | \res, \flags
  .else
    EXPECT_FA0 \res, \flags
  .endif
.endm
