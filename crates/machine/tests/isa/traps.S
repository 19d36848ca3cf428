# Traps and delegation: ecall from each mode, medeleg to S-mode, mret/sret
# privilege transitions with the MPP/SPP/MPIE/SPIE stacks, illegal
# instructions with their bits in mtval, ebreak, TSR/TVM, access faults.
.include "macros.S"
START

  la t0, s_trap_vector
  csrw stvec, t0
  csrw medeleg, zero

# Fails unless field `mask` of reg equals `value` (a0 is clobbered).
.macro EXPECT_BITS reg, mask, value
  li t6, \mask
  and a0, \reg, t6
  EXPECT a0, \value
.endm

# --- ecall from each mode, taken in M ---------------------------------------------------
NEXT_TEST
  EXPECT_TRAP 1f
2:ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_M
  TRAP_FIELD a1, TR_EPC
  la a2, 2b
  EXPECT_EQ a1, a2
  TRAP_FIELD a1, TR_TVAL
  EXPECT a1, 0
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MPP, MSTATUS_MPP
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_S
  TRAP_FIELD a1, TR_EPC
  la a2, 3b
  EXPECT_EQ a1, a2
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MPP, MSTATUS_MPP_S
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 0, 3f
3:ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_U
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MPP, 0

# --- ebreak ---------------------------------------------------------------------------------
NEXT_TEST
  EXPECT_TRAP 1f
2:ebreak
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT
  TRAP_FIELD a1, TR_EPC
  la a2, 2b
  EXPECT_EQ a1, a2
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 0, 3f
3:ebreak
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT

# --- trap entry stacks MIE into MPIE; mret pops it -----------------------------------------------
NEXT_TEST
  csrw mie, zero
  csrsi mstatus, MSTATUS_MIE
  EXPECT_TRAP 1f
  ecall
  j fail
1:
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MIE | MSTATUS_MPIE, MSTATUS_MPIE
# mret: MIE = MPIE, MPIE = 1, MPP = U (the least-privileged mode)
NEXT_TEST
  li a1, MSTATUS_MPP | MSTATUS_MPIE
  csrs mstatus, a1
  csrci mstatus, MSTATUS_MIE
  la a1, 1f
  csrw mepc, a1
  mret
  j fail
1:
  csrr a1, mstatus
  EXPECT_BITS a1, MSTATUS_MIE | MSTATUS_MPIE | MSTATUS_MPP, MSTATUS_MIE | MSTATUS_MPIE
  csrci mstatus, MSTATUS_MIE
NEXT_TEST
  li a1, MSTATUS_MPP | MSTATUS_MPIE
  csrs mstatus, a1
  li a1, MSTATUS_MPIE
  csrc mstatus, a1
  csrsi mstatus, MSTATUS_MIE
  la a1, 1f
  csrw mepc, a1
  mret
  j fail
1:
  csrr a1, mstatus
  EXPECT_BITS a1, MSTATUS_MIE | MSTATUS_MPIE, MSTATUS_MPIE
# mret to a mode below M clears MPRV (privileged spec 1.12, "Memory
# Privilege in mstatus"); QEMU 7.2 leaves it set.
NEXT_TEST
.ifdef FTVM
  li a1, MSTATUS_MPRV
  csrs mstatus, a1
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:ecall
1:
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MPRV, 0
.endif
# mret to M keeps MPRV
NEXT_TEST
  li a1, MSTATUS_MPRV | MSTATUS_MPP
  csrs mstatus, a1
  la a1, 1f
  csrw mepc, a1
  mret
1:
  csrr a1, mstatus
  EXPECT_BITS a1, MSTATUS_MPRV, MSTATUS_MPRV
  li a1, MSTATUS_MPRV
  csrc mstatus, a1

# --- illegal instructions: mtval holds the instruction bits ----------------------------------------
.macro TEST_ILLEGAL mode, bits, insn:vararg
  NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE \mode, 3f
3:\insn
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  TRAP_FIELD a1, TR_EPC
  la a2, 3b
  EXPECT_EQ a1, a2
  TRAP_FIELD a1, TR_TVAL
  EXPECT a1, \bits
.endm
TEST_ILLEGAL 3, 0x0000000b, .word 0x0000000b          # custom-0: not implemented
TEST_ILLEGAL 3, 0xffffffff, .word 0xffffffff
TEST_ILLEGAL 3, 0x8002, .half 0x8002                  # c.jr x0: reserved
TEST_ILLEGAL 1, 0x30002573, csrr a0, mstatus          # M CSR from S
TEST_ILLEGAL 0, 0x10002573, csrr a0, sstatus          # S CSR from U
TEST_ILLEGAL 1, 0x30200073, mret                      # mret from S
TEST_ILLEGAL 0, 0x10200073, sret                      # sret from U
TEST_ILLEGAL 0, 0x34102573, csrr a0, mepc             # M CSR from U

# --- delegation to S-mode --------------------------------------------------------------------------
# ecall from U delegated: scause 8, sepc, SPP = U, SPIE = old SIE
NEXT_TEST
  li a1, 1 << CAUSE_ECALL_U
  csrw medeleg, a1
  csrr a2, medeleg
  EXPECT_EQ a2, a1
  EXPECT_TRAP 1f
  S_EXPECT_TRAP 4f
  csrsi mstatus, MSTATUS_SIE          # SIE on while U runs
  ENTER_MODE 0, 3f
3:ecall
  j fail
4:                                    # now in S-mode
  S_CHECK_TRAP CAUSE_ECALL_U
  S_TRAP_FIELD a1, TR_EPC
  la a2, 3b
  EXPECT_EQ a1, a2
  S_TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_SPP | MSTATUS_SPIE | MSTATUS_SIE, MSTATUS_SPIE
  ebreak                              # not delegated: back to M
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT
  TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_MPP, MSTATUS_MPP_S   # the ebreak came from S
  csrw medeleg, zero
  csrci mstatus, MSTATUS_SIE
# ecall from S delegated: SPP = S; and an illegal instruction delegated gets stval = bits
NEXT_TEST
  li a1, (1 << CAUSE_ECALL_S) | (1 << CAUSE_ILLEGAL)
  csrw medeleg, a1
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:
  S_EXPECT_TRAP 4f
5:ecall
  j fail
4:
  S_CHECK_TRAP CAUSE_ECALL_S
  S_TRAP_FIELD a1, TR_EPC
  la a2, 5b
  EXPECT_EQ a1, a2
  S_TRAP_FIELD a1, TR_STATUS
  EXPECT_BITS a1, MSTATUS_SPP, MSTATUS_SPP
  S_EXPECT_TRAP 4f
5:.word 0x0000000b
  j fail
4:
  S_CHECK_TRAP CAUSE_ILLEGAL
  S_TRAP_FIELD a1, TR_TVAL
  EXPECT a1, 0x0000000b
  ebreak
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT
  csrw medeleg, zero
# traps taken in M are never delegated, whatever medeleg says
NEXT_TEST
  li a1, (1 << CAUSE_ECALL_M) | (1 << CAUSE_BREAKPOINT)
  csrs medeleg, a1
  EXPECT_TRAP 1f
  ebreak
  j fail
1:
  CHECK_TRAP CAUSE_BREAKPOINT
  csrw medeleg, zero
# medeleg bit 11 (ecall from M) is read-only zero (privileged spec 1.12,
# "Machine Trap Delegation Registers"); QEMU 7.2 lets it be written.
NEXT_TEST
.ifdef FTVM
  li a1, 1 << CAUSE_ECALL_M
  csrw medeleg, a1
  csrr a0, medeleg
  csrw medeleg, zero
  EXPECT a0, 0
.endif
# sret: privilege from SPP, SIE = SPIE, SPIE = 1, SPP = U
NEXT_TEST
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:
  li a1, MSTATUS_SPP | MSTATUS_SPIE
  csrs sstatus, a1
  csrci sstatus, MSTATUS_SIE
  la a1, 4f
  csrw sepc, a1
  sret
  j fail
4:                                    # still S (SPP was S)
  csrr a1, sstatus
  EXPECT_BITS a1, MSTATUS_SPP | MSTATUS_SPIE | MSTATUS_SIE, MSTATUS_SPIE | MSTATUS_SIE
  csrci sstatus, MSTATUS_SIE
  la a1, 5f
  csrw sepc, a1
  sret                                # SPP is now U
  j fail
5:
  ecall                               # from U
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_U

# --- mstatus.TSR and TVM trap S-mode sret and satp accesses -------------------------------------------
NEXT_TEST
  li a1, 1 << 22                      # TSR
  csrs mstatus, a1
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:sret
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  li a1, 1 << 22
  csrc mstatus, a1
NEXT_TEST
  li a1, 1 << 20                      # TVM
  csrs mstatus, a1
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:csrr a0, satp
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  EXPECT_TRAP 1f
  ENTER_MODE 1, 3f
3:sfence.vma
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  li a1, 1 << 20
  csrc mstatus, a1

# --- access faults at an address where nothing is mapped ------------------------------------------------
.equ HOLE, 0x00200000
NEXT_TEST
  li a2, HOLE
  EXPECT_TRAP 1f
  ld a0, 0(a2)
  j fail
1:
  CHECK_TRAP CAUSE_LOAD_ACCESS
  TRAP_FIELD a1, TR_TVAL
  EXPECT a1, HOLE
NEXT_TEST
  li a2, HOLE + 8
  EXPECT_TRAP 1f
  sw a0, 0(a2)
  j fail
1:
  CHECK_TRAP CAUSE_STORE_ACCESS
  TRAP_FIELD a1, TR_TVAL
  EXPECT a1, HOLE + 8
NEXT_TEST
  li a2, HOLE
  EXPECT_TRAP 1f
  jr a2
  j fail
1:
  CHECK_TRAP CAUSE_FETCH_ACCESS
  TRAP_FIELD a1, TR_EPC
  EXPECT a1, HOLE
# a jump to a 2-byte-aligned target is fine with C
NEXT_TEST
  la a2, 1f
  jr a2
  j fail
  .balign 4
  c.nop
1:
  c.nop

PASS
