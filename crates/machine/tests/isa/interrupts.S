# Interrupts: CLINT machine timer and software interrupt, WFI wake-up,
# Sstc supervisor timer delegated to S-mode, and a PLIC external interrupt
# from the UART's transmitter-empty condition.
.include "macros.S"
START

.equ CLINT_MSIP, 0x2000000
.equ CLINT_MTIMECMP, 0x2004000
.equ CLINT_MTIME, 0x200bff8
.equ PLIC_PRIORITY, 0xc000000
.equ PLIC_PENDING, 0xc001000
.equ PLIC_ENABLE_M, 0xc002000
.equ PLIC_THRESHOLD_M, 0xc200000
.equ PLIC_CLAIM_M, 0xc200004
.equ UART, 0x10000000
.equ UART_IRQ, 10
.equ MIP_SSIP, 1 << 1
.equ MIP_MSIP, 1 << 3
.equ MIP_STIP, 1 << 5
.equ MIP_MTIP, 1 << 7
.equ MIP_MEIP, 1 << 11
.equ INTR, 1 << 63
.equ SPIN, 2000000

  la t0, s_trap_vector
  csrw stvec, t0
  csrw mie, zero
  li t0, -1
  li t1, CLINT_MTIMECMP
  sd t0, 0(t1)

# Spins up to SPIN iterations waiting for the armed trap, then fails.
.macro WAIT_FOR_TRAP
  li a5, SPIN
9:addi a5, a5, -1
  bnez a5, 9b
  j fail
.endm

# --- machine timer ---------------------------------------------------------------------------
NEXT_TEST
  li a1, CLINT_MTIME
  ld a2, 0(a1)
  ld a3, 0(a1)
  bltu a3, a2, fail                   # mtime does not go backwards
  li a1, CLINT_MTIMECMP
  addi a2, a2, 100
  sd a2, 0(a1)
  li a1, MIP_MTIP
  csrs mie, a1
  EXPECT_TRAP 1f
  csrsi mstatus, MSTATUS_MIE
  WAIT_FOR_TRAP
1:
  CHECK_TRAP INTR | 7
  csrr a0, mstatus
  andi a0, a0, MSTATUS_MIE
  EXPECT a0, 0                        # the handler returned with MIE off
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  EXPECT a0, MIP_MTIP                 # still pending until mtimecmp moves
NEXT_TEST
  li a1, CLINT_MTIMECMP
  li a2, -1
  sd a2, 0(a1)
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  EXPECT a0, 0
  li a1, CLINT_MTIME
  ld a2, 0(a1)
  li a1, CLINT_MTIMECMP
  sd a2, 0(a1)                        # mtime >= mtimecmp: pending at once
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  EXPECT a0, MIP_MTIP
  li a2, -1
  sd a2, 0(a1)
  csrw mie, zero
# mip.MTIP is read-only to software
NEXT_TEST
  li a1, MIP_MTIP
  csrs mip, a1
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  EXPECT a0, 0

# --- machine software interrupt -----------------------------------------------------------------
NEXT_TEST
  li a1, MIP_MSIP
  csrs mie, a1
  EXPECT_TRAP 1f
  csrsi mstatus, MSTATUS_MIE
  li a1, CLINT_MSIP
  li a2, 1
  sw a2, 0(a1)
  WAIT_FOR_TRAP
1:
  CHECK_TRAP INTR | 3
  li a1, CLINT_MSIP
  lw a0, 0(a1)
  EXPECT a0, 1
  sw zero, 0(a1)
  csrr a0, mip
  andi a0, a0, MIP_MSIP
  EXPECT a0, 0
  csrw mie, zero

# --- WFI wakes on a pending enabled interrupt, even with MIE off ----------------------------------------
NEXT_TEST
  li a1, CLINT_MTIME
  ld a2, 0(a1)
  li a1, CLINT_MTIMECMP
  li a3, 10000                        # 1 ms of guest time
  add a2, a2, a3
  sd a2, 0(a1)
  li a1, MIP_MTIP
  csrw mie, a1
  csrci mstatus, MSTATUS_MIE
  wfi
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  beqz a0, 2f                         # a spurious wake-up is allowed: wait again
  j 3f
2:wfi
  csrr a0, mip
  andi a0, a0, MIP_MTIP
  EXPECT a0, MIP_MTIP
3:li a1, CLINT_MTIME
  ld a0, 0(a1)
  bltu a0, a2, fail                   # time has reached mtimecmp
  # now take it
  EXPECT_TRAP 1f
  csrsi mstatus, MSTATUS_MIE
  j fail
1:
  CHECK_TRAP INTR | 7
  li a1, CLINT_MTIMECMP
  li a2, -1
  sd a2, 0(a1)
  csrw mie, zero

# --- Sstc: supervisor timer through stimecmp, delegated to S ----------------------------------------------
NEXT_TEST
  li a1, 1 << 63                      # menvcfg.STCE
  csrs menvcfg, a1
  csrr a0, menvcfg
  bgez a0, fail
  li a1, 7
  csrw mcounteren, a1                 # S may read time
  li a1, MIP_STIP
  csrw mideleg, a1
  csrw mie, a1
  li a1, -1
  csrw 0x14d, a1                      # stimecmp
  csrr a0, mip
  andi a0, a0, MIP_STIP
  EXPECT a0, 0
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:S_EXPECT_TRAP 4f
  csrsi sstatus, MSTATUS_SIE
  rdtime a2
  addi a2, a2, 100
  csrw 0x14d, a2
  WAIT_FOR_TRAP
4:S_CHECK_TRAP INTR | 5
  csrr a0, sip
  andi a0, a0, MIP_STIP
  EXPECT a0, MIP_STIP
  li a1, -1
  csrw 0x14d, a1                      # clears STIP
  csrr a0, sip
  andi a0, a0, MIP_STIP
  EXPECT a0, 0
  ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_S
# STIP cannot be written by software while STCE is set
NEXT_TEST
  li a1, MIP_STIP
  csrs mip, a1
  csrr a0, mip
  andi a0, a0, MIP_STIP
  EXPECT a0, 0
  csrw mie, zero
  csrw mideleg, zero
# a supervisor software interrupt raised by M through mip.SSIP, delegated
NEXT_TEST
  li a1, MIP_SSIP
  csrw mideleg, a1
  csrw mie, a1
  csrs mip, a1
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:S_EXPECT_TRAP 4f
  csrsi sstatus, MSTATUS_SIE
  WAIT_FOR_TRAP
4:S_CHECK_TRAP INTR | 1
  csrci sip, MIP_SSIP
  ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_S
  csrr a0, mip
  andi a0, a0, MIP_SSIP
  EXPECT a0, 0
  csrw mie, zero
  csrw mideleg, zero

# --- PLIC: the UART's THR-empty interrupt ----------------------------------------------------------------
NEXT_TEST
  li a1, PLIC_PRIORITY + 4 * UART_IRQ
  li a2, 1
  sw a2, 0(a1)
  li a1, PLIC_ENABLE_M
  li a2, 1 << UART_IRQ
  sw a2, 0(a1)
  li a1, PLIC_THRESHOLD_M
  sw zero, 0(a1)
  li a1, UART
  li a2, 0x02                         # IER.ETBEI
  sb a2, 1(a1)
  li a1, MIP_MEIP
  csrw mie, a1
  EXPECT_TRAP 1f
  csrsi mstatus, MSTATUS_MIE
  WAIT_FOR_TRAP
1:
  CHECK_TRAP INTR | 11
  li a1, PLIC_CLAIM_M                 # claim first, as an OS does
  lw s0, 0(a1)
  EXPECT s0, UART_IRQ
  li a1, UART
  lbu a0, 2(a1)                       # IIR: THR empty (0x2) is the cause
  andi a0, a0, 0x0f
  EXPECT a0, 0x02
  li a1, UART
  sb zero, 1(a1)                      # IER = 0: the source goes quiet
  li a1, PLIC_CLAIM_M
  sw s0, 0(a1)                        # complete
NEXT_TEST
  li a1, PLIC_CLAIM_M
  lw a0, 0(a1)
  EXPECT a0, 0                        # nothing pending any more
  csrr a0, mip
  li a1, MIP_MEIP
  and a0, a0, a1
  EXPECT a0, 0
# below the threshold nothing is signalled
NEXT_TEST
  li a1, PLIC_THRESHOLD_M
  li a2, 1
  sw a2, 0(a1)
  li a1, UART
  li a2, 0x02
  sb a2, 1(a1)
  csrr a0, mip
  li a1, MIP_MEIP
  and a0, a0, a1
  EXPECT a0, 0
  li a1, PLIC_CLAIM_M
  lw a0, 0(a1)
  EXPECT a0, 0
  li a1, UART
  sb zero, 1(a1)
  csrw mie, zero

PASS
