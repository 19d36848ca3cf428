# Zicsr and the counters: read/modify/write forms, read-only and
# unimplemented CSRs, exact minstret, machine identification CSRs.
.include "macros.S"
START

# --- register forms ---------------------------------------------------------------------
NEXT_TEST
  li a1, 0x1234
  csrw mscratch, a1
  li a2, 0x5678
  csrrw a0, mscratch, a2
  EXPECT a0, 0x1234
  csrr a0, mscratch
  EXPECT a0, 0x5678
NEXT_TEST
  li a1, 0xf0
  csrw mscratch, a1
  li a2, 0x0f
  csrrs a0, mscratch, a2
  EXPECT a0, 0xf0
  csrr a0, mscratch
  EXPECT a0, 0xff
NEXT_TEST
  li a2, 0x3c
  csrrc a0, mscratch, a2
  EXPECT a0, 0xff
  csrr a0, mscratch
  EXPECT a0, 0xc3
NEXT_TEST
  li a1, -1
  csrw mscratch, a1              # full 64 bits
  csrr a0, mscratch
  EXPECT a0, -1
# rd = x0 still writes; rs1 = x0 in csrrs/csrrc does not
NEXT_TEST
  li a1, 77
  csrrw zero, mscratch, a1
  csrrs a0, mscratch, zero
  EXPECT a0, 77
  csrrc a0, mscratch, zero
  EXPECT a0, 77

# --- immediate forms: a 5-bit zero-extended immediate ----------------------------------------
NEXT_TEST
  csrrwi a0, mscratch, 31
  EXPECT a0, 77
  csrr a0, mscratch
  EXPECT a0, 31
NEXT_TEST
  csrwi mscratch, 0x10
  csrrsi a0, mscratch, 0x3
  EXPECT a0, 0x10
  csrr a0, mscratch
  EXPECT a0, 0x13
NEXT_TEST
  csrrci a0, mscratch, 0x11
  EXPECT a0, 0x13
  csrr a0, mscratch
  EXPECT a0, 0x2
# rd == rs1: the old value is read before rs1 is overwritten
NEXT_TEST
  li a0, 0x99
  csrw mscratch, a0
  li a0, 0x42
  csrrw a0, mscratch, a0
  EXPECT a0, 0x99
  csrr a0, mscratch
  EXPECT a0, 0x42

# --- read-only CSRs: reads work, writes trap -----------------------------------------------------
NEXT_TEST
  csrr a0, mhartid
  EXPECT a0, 0
  csrr a0, mvendorid
  csrr a0, marchid
  csrr a0, mimpid
  csrrs a0, mhartid, zero        # a read-only CSR may be read with rs1 = x0
  csrrci a0, mhartid, 0          # ... and with uimm = 0
.macro TEST_ILLEGAL_CSR_WRITE insn:vararg
  NEXT_TEST
  EXPECT_TRAP 1f
2:\insn
  j fail
1:
  CHECK_TRAP CAUSE_ILLEGAL
  TRAP_FIELD a0, TR_EPC
  la a1, 2b
  EXPECT_EQ a0, a1
  lwu a1, 0(a1)
  TRAP_FIELD a0, TR_TVAL
  EXPECT_EQ a0, a1               # mtval holds the instruction bits
.endm
TEST_ILLEGAL_CSR_WRITE csrw mhartid, a1
TEST_ILLEGAL_CSR_WRITE csrrs a0, mvendorid, a1
TEST_ILLEGAL_CSR_WRITE csrrwi a0, marchid, 0
TEST_ILLEGAL_CSR_WRITE csrw cycle, zero
TEST_ILLEGAL_CSR_WRITE csrrsi a0, instret, 1
TEST_ILLEGAL_CSR_WRITE csrw time, a1
# unimplemented CSRs raise illegal instruction, even for reads
TEST_ILLEGAL_CSR_WRITE csrr a0, 0x7c0
TEST_ILLEGAL_CSR_WRITE csrw 0x7c0, a1
TEST_ILLEGAL_CSR_WRITE csrr a0, 0x5ff
TEST_ILLEGAL_CSR_WRITE csrr a0, 0xfff

# --- counters ---------------------------------------------------------------------------------------
# minstret counts exactly: between two reads, 8 instructions plus the first read retire
NEXT_TEST
  csrr a1, minstret
  addi a0, a0, 1
  addi a0, a0, 1
  nop
  nop
  c.nop
  c.addi a0, 1
  beq zero, zero, 1f
1:
  j 2f
2:
  csrr a2, minstret
  sub a0, a2, a1
  EXPECT a0, 9
# instret is the same counter
NEXT_TEST
  csrr a1, minstret
  rdinstret a2
  sub a0, a2, a1
  EXPECT a0, 1
# a taken trap's instruction does not retire; the handler's instructions do
NEXT_TEST
  csrr s0, minstret
  EXPECT_TRAP 1f
  ecall
1:
  csrr s1, minstret
  sub a0, s1, s0
  li a1, 3
  bltu a0, a1, fail
# minstret is writable
NEXT_TEST
  li a1, 1000
  csrw minstret, a1
  csrr a0, minstret
  addi a0, a0, -1000
  li a1, 2
  bgeu a0, a1, fail
# cycle and mcycle move forward; time is readable in M-mode and does not go back
NEXT_TEST
  rdcycle a1
  csrr a2, mcycle
  bltu a2, a1, fail
  rdtime a1
  nop
  rdtime a2
  bltu a2, a1, fail

# --- machine identification and status -------------------------------------------------------
# misa: MXL = 2 (RV64) and at least I, M, A, F, D, C, S, U
NEXT_TEST
  csrr a0, misa
  srli a1, a0, 62
  EXPECT a1, 2
  li a1, (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20)
  and a2, a0, a1
  EXPECT_EQ a2, a1
# mstatus: UXL = SXL = 2
NEXT_TEST
  csrr a0, mstatus
  srli a0, a0, 32
  andi a0, a0, 0xf
  EXPECT a0, 0xa
# sstatus is a view of mstatus
NEXT_TEST
  csrsi sstatus, MSTATUS_SIE
  csrr a0, mstatus
  andi a0, a0, MSTATUS_SIE
  EXPECT a0, MSTATUS_SIE
  csrci mstatus, MSTATUS_SIE
  csrr a0, sstatus
  andi a0, a0, MSTATUS_SIE
  EXPECT a0, 0
# sstatus hides M-mode fields: MPP cannot be seen or set through it
NEXT_TEST
  li a1, MSTATUS_MPP
  csrs sstatus, a1
  csrr a0, sstatus
  and a0, a0, a1
  EXPECT a0, 0
# mepc[0] is always zero (privileged spec, "Machine Exception Program
# Counter"); QEMU 7.2 keeps the bit and clears it only on mret.
NEXT_TEST
.ifdef FTVM
  li a1, 0x80000003
  csrw mepc, a1
  csrr a0, mepc
  EXPECT a0, 0x80000002
.endif
# sscratch, stvec, sepc are read/write
NEXT_TEST
  li a1, 0xabcdef
  csrw sscratch, a1
  csrr a0, sscratch
  EXPECT a0, 0xabcdef

PASS
