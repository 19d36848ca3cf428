# Sv39 and Sv48: page tables built by the program, S- and U-mode accesses
# through them, page faults at each level, permission rules (U/SUM/MXR),
# A/D bits, satp WARL and sfence.vma. Page faults are not delegated: they
# trap to M-mode, which records them and resumes (bare) at the armed label.
.include "macros.S"
START

.equ PTE_V, 0x01
.equ PTE_R, 0x02
.equ PTE_W, 0x04
.equ PTE_X, 0x08
.equ PTE_U, 0x10
.equ PTE_A, 0x40
.equ PTE_D, 0x80
.equ RWXAD, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D
.equ SATP_SV39, 8 << 60
.equ SATP_SV48, 9 << 60

# The test window: VA 0x4000_0000 + n * 4 KiB is L0 entry n.
.equ WIN, 0x40000000
.equ XP_LOAD, 0x100                  # offset of xp_load in xpage

# Writes entry `index` of `table`: a leaf or pointer to `target`'s page.
.macro PTE table, index, target, flags
  la t0, \target
  srli t0, t0, 12
  slli t0, t0, 10
  ori t0, t0, \flags
  la t1, \table
  li t2, (\index) * 8
  add t1, t1, t2
  sd t0, 0(t1)
.endm
# The same with a raw physical page number.
.macro PTE_PPN table, index, ppn, flags
  li t0, ((\ppn) << 10) | (\flags)
  la t1, \table
  li t2, (\index) * 8
  add t1, t1, t2
  sd t0, 0(t1)
.endm
.macro SET_SATP mode, root
  la t0, \root
  srli t0, t0, 12
  li t1, \mode
  or t0, t0, t1
  csrw satp, t0
  sfence.vma
.endm

# Runs `insn` (which may use a2 = addr, a1) in S-mode; it must succeed.
.macro TEST_S_OK addr, insn:vararg
  NEXT_TEST
  li a2, \addr
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:\insn
  ecall
  j fail
1:
  CHECK_TRAP CAUSE_ECALL_S
.endm
# Runs `insn` in S-mode; it must fault with `cause` and mtval = addr.
.macro TEST_S_FAULT cause, addr, insn:vararg
  NEXT_TEST
  li a2, \addr
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:\insn
  ecall
  j fail
1:
  CHECK_TRAP \cause
  TRAP_FIELD a0, TR_TVAL
  EXPECT a0, \addr
.endm

# --- build the Sv39 tables ------------------------------------------------------------------
  PTE_PPN sv39_root, 2, 0x80000, RWXAD              # 1 GiB identity map of DRAM (S only)
  PTE sv39_root, 1, sv39_l1, PTE_V                   # the test window
  PTE sv39_l1, 0, sv39_l0, PTE_V
  PTE_PPN sv39_l1, 2, 0x80001, RWXAD                 # misaligned 2 MiB superpage
  PTE_PPN sv39_l1, 3, 0x80000, PTE_V | PTE_R | PTE_A # 2 MiB superpage at DRAM start
  PTE sv39_l0, 0, page_a, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  # entry 1 stays invalid
  PTE sv39_l0, 2, page_a, PTE_V | PTE_R | PTE_A                 # read-only
  PTE sv39_l0, 3, xpage, PTE_V | PTE_X | PTE_A                  # execute-only
  PTE sv39_l0, 4, page_b, PTE_V | PTE_R | PTE_W | PTE_U | PTE_A | PTE_D
  PTE sv39_l0, 5, page_c, PTE_V | PTE_R | PTE_W                 # A = 0, D = 0
  PTE sv39_l0, 6, page_d, PTE_V | PTE_R | PTE_W | PTE_A         # D = 0
  PTE sv39_l0, 7, xpage, PTE_V | PTE_R | PTE_X | PTE_A          # S code
  PTE sv39_l0, 8, page_a, PTE_V | PTE_W | PTE_A | PTE_D         # W without R: reserved
  PTE sv39_l0, 9, sv39_l0, PTE_V                                # pointer at level 0
  PTE sv39_l0, 10, xpage, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A # U code
  PTE sv39_l0, 11, page_a, PTE_R | PTE_W | PTE_A | PTE_D        # V = 0 with permissions
  # Sv48: the Sv39 root serves as the level-2 table under two level-3 entries
  PTE sv48_root, 0, sv39_root, PTE_V
  PTE sv48_root, 1, sv39_root, PTE_V
  SET_SATP SATP_SV39, sv39_root

# --- Sv39 translation -------------------------------------------------------------------------------
# S-mode runs through the gigapage and reads page_a through the window
TEST_S_OK (WIN + 0 * 4096), ld a0, 0(a2)
  EXPECT a0, 0x1111111111111111
TEST_S_OK (WIN + 0 * 4096) + 8, sd a2, 0(a2)
  la a1, page_a
  ld a0, 8(a1)
  EXPECT a0, (WIN + 0 * 4096) + 8
# the megapage maps DRAM: the window sees the program's first instruction
TEST_S_OK WIN + 3 * 0x200000, lwu a0, 0(a2)
  la a1, _start
  lwu a1, 0(a1)
  EXPECT_EQ a0, a1
# invalid entries at level 2, 1 and 0
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0xc0000000, ld a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, WIN + 0x200000, ld a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 1 * 4096), ld a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 1 * 4096) + 16, sd a0, 0(a2)
TEST_S_FAULT CAUSE_FETCH_PAGE_FAULT, (WIN + 1 * 4096), jr a2
TEST_S_FAULT CAUSE_FETCH_PAGE_FAULT, 0xc0000000, jr a2
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 11 * 4096), ld a0, 0(a2)
# a misaligned superpage, a reserved W-only leaf, a pointer at level 0
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, WIN + 2 * 0x200000 + 0x10, ld a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 8 * 4096), ld a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 8 * 4096), sd a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 9 * 4096), ld a0, 0(a2)
# a non-canonical Sv39 address (bit 38 not extended)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0x0000004000000000, ld a0, 0(a2)
# permissions: read-only, execute-only, no execute
TEST_S_OK (WIN + 2 * 4096), ld a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 2 * 4096) + 24, sd a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 2 * 4096), amoadd.d a0, a0, (a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 3 * 4096), ld a0, 0(a2)
TEST_S_FAULT CAUSE_FETCH_PAGE_FAULT, (WIN + 0 * 4096), jr a2
# the execute-only page runs (and its code returns with ecall)
TEST_S_OK (WIN + 3 * 4096), jr a2
  EXPECT a0, 42
# MXR makes execute-only pages readable
NEXT_TEST
  li a1, MSTATUS_MXR
  csrs mstatus, a1
  li a2, (WIN + 3 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:lwu a0, 0(a2)
  ecall
1:
  CHECK_TRAP CAUSE_ECALL_S
  la a1, xpage
  lwu a1, 0(a1)
  EXPECT_EQ a0, a1
  li a1, MSTATUS_MXR
  csrc mstatus, a1
# U pages: S needs SUM to load/store, and never executes them
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, (WIN + 4 * 4096), ld a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 4 * 4096), sd a0, 0(a2)
NEXT_TEST
  li a1, MSTATUS_SUM
  csrs mstatus, a1
  li a2, (WIN + 4 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:ld a0, 0(a2)
  sd a0, 8(a2)
  ecall
1:
  CHECK_TRAP CAUSE_ECALL_S
  EXPECT a0, 0x2222222222222222
NEXT_TEST
  li a2, (WIN + 10 * 4096)                       # SUM set, U code page
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:jr a2
1:
  CHECK_TRAP CAUSE_FETCH_PAGE_FAULT
  TRAP_FIELD a0, TR_TVAL
  EXPECT a0, (WIN + 10 * 4096)
  li a1, MSTATUS_SUM
  csrc mstatus, a1
# U-mode runs U code, reads U pages, and faults on S pages
NEXT_TEST
  li a2, (WIN + 4 * 4096)
  EXPECT_TRAP 1f
  li t6, (WIN + 10 * 4096) + XP_LOAD
  csrw mepc, t6
  li t6, MSTATUS_MPP
  csrc mstatus, t6
  mret
1:
  CHECK_TRAP CAUSE_ECALL_U
  EXPECT a0, 0x2222222222222222
NEXT_TEST
  li a2, (WIN + 0 * 4096)
  EXPECT_TRAP 1f
  li t6, (WIN + 10 * 4096) + XP_LOAD
  csrw mepc, t6
  li t6, MSTATUS_MPP
  csrc mstatus, t6
  mret
1:
  CHECK_TRAP CAUSE_LOAD_PAGE_FAULT
  TRAP_FIELD a0, TR_TVAL
  EXPECT a0, (WIN + 0 * 4096)
NEXT_TEST
  EXPECT_TRAP 1f
  li t6, (WIN + 7 * 4096)                        # S code page
  csrw mepc, t6
  li t6, MSTATUS_MPP
  csrc mstatus, t6
  mret
1:
  CHECK_TRAP CAUSE_FETCH_PAGE_FAULT
  TRAP_FIELD a0, TR_TVAL
  EXPECT a0, (WIN + 7 * 4096)
# A bit: the access either sets A in the PTE or page-faults leaving it clear
NEXT_TEST
  li a2, (WIN + 5 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:ld a0, 0(a2)
  ecall
1:
  TRAP_FIELD a3, TR_CAUSE
  la a1, sv39_l0
  ld a1, 5 * 8(a1)
  andi a1, a1, PTE_A | PTE_D
  li a4, CAUSE_LOAD_PAGE_FAULT
  beq a3, a4, 3f
  EXPECT a3, CAUSE_ECALL_S            # hardware update: A set, D still clear
  EXPECT a1, PTE_A
  EXPECT a0, 0x3333333333333333
  j 4f
3:EXPECT a1, 0                        # page fault: PTE untouched
4:
# D bit: a store either sets D (and A) or page-faults leaving D clear
NEXT_TEST
  li a2, (WIN + 6 * 4096)
  li a5, 0x4444
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:sd a5, 0(a2)
  ecall
1:
  TRAP_FIELD a3, TR_CAUSE
  la a1, sv39_l0
  ld a1, 6 * 8(a1)
  andi a1, a1, PTE_A | PTE_D
  la a0, page_d
  ld a0, 0(a0)
  li a4, CAUSE_STORE_PAGE_FAULT
  beq a3, a4, 3f
  EXPECT a3, CAUSE_ECALL_S
  EXPECT a1, PTE_A | PTE_D
  EXPECT a0, 0x4444
  j 4f
3:EXPECT a1, PTE_A
  EXPECT a0, 0
4:
# a load from a page with A set and D clear leaves D clear
NEXT_TEST
  la a1, sv39_l0
  PTE sv39_l0, 6, page_d, PTE_V | PTE_R | PTE_W | PTE_A
  sfence.vma
  li a2, (WIN + 6 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:ld a0, 0(a2)
  ecall
1:
  CHECK_TRAP CAUSE_ECALL_S
  la a1, sv39_l0
  ld a1, 6 * 8(a1)
  andi a1, a1, PTE_D
  EXPECT a1, 0

# --- sfence.vma ------------------------------------------------------------------------------------
# remap the window's page 0 from page_a to page_b: after sfence.vma the new
# mapping is used; after invalidating it the access faults
NEXT_TEST
  li a2, (WIN + 0 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:ld a0, 0(a2)                        # fills any TLB with the page_a mapping
  ecall
1:
  CHECK_TRAP CAUSE_ECALL_S
  PTE sv39_l0, 0, page_b, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  li a2, (WIN + 0 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:sfence.vma a2                       # S-mode, one address
  ld a0, 0(a2)
  ecall
1:
  CHECK_TRAP CAUSE_ECALL_S
  EXPECT a0, 0x2222222222222222
NEXT_TEST
  PTE_PPN sv39_l0, 0, 0, 0
  li a2, (WIN + 0 * 4096)
  EXPECT_TRAP 1f
  ENTER_MODE 1, 2f
2:sfence.vma zero, zero
  ld a0, 0(a2)
  ecall
1:
  CHECK_TRAP CAUSE_LOAD_PAGE_FAULT
  PTE sv39_l0, 0, page_a, PTE_V | PTE_R | PTE_W | PTE_A | PTE_D
  sfence.vma

# --- satp WARL ---------------------------------------------------------------------------------------
.macro TEST_SATP_UNCHANGED mode
  NEXT_TEST
  csrr a1, satp
  slli a2, a1, 4
  srli a2, a2, 4
  li t6, (\mode) << 60
  or a2, a2, t6
  csrw satp, a2
  csrr a0, satp
  csrw satp, a1
  EXPECT_EQ a0, a1
.endm
# MODE = Sv57 (10) is not implemented by ftvm; QEMU 7.2 implements it
NEXT_TEST
.ifdef FTVM
  csrr a1, satp
  slli a2, a1, 4
  srli a2, a2, 4
  li t6, 0xa << 60
  or a2, a2, t6
  csrw satp, a2
  csrr a0, satp
  csrw satp, a1
  EXPECT_EQ a0, a1
.endif
TEST_SATP_UNCHANGED 11
TEST_SATP_UNCHANGED 1
TEST_SATP_UNCHANGED 7
NEXT_TEST
  csrr a1, satp
  srli a0, a1, 60
  EXPECT a0, 8
# Bare (0) is accepted and turns translation off for S-mode
NEXT_TEST
  csrw satp, zero
  csrr a0, satp
  EXPECT a0, 0
  SET_SATP SATP_SV39, sv39_root

# --- Sv48 ---------------------------------------------------------------------------------------------
NEXT_TEST
  SET_SATP SATP_SV48, sv48_root
  csrr a0, satp
  srli a0, a0, 60
  EXPECT a0, 9
TEST_S_OK (WIN + 0 * 4096), ld a0, 0(a2)
  EXPECT a0, 0x1111111111111111
# level-3 entry 1 points at the same level-2 table
TEST_S_OK 0x0000008040000000, ld a0, 0(a2)
  EXPECT a0, 0x1111111111111111
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0x0000010000000000, ld a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0x0000004000000000, ld a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0x0001000000000000, ld a0, 0(a2)
TEST_S_FAULT CAUSE_STORE_PAGE_FAULT, (WIN + 1 * 4096), sd a0, 0(a2)
TEST_S_FAULT CAUSE_LOAD_PAGE_FAULT, 0x00000080c0000000, ld a0, 0(a2)
TEST_S_OK (WIN + 3 * 4096), jr a2
  EXPECT a0, 42
# M-mode with MPRV and MPP = S translates its loads through Sv48
NEXT_TEST
  li a1, MSTATUS_MPP
  csrc mstatus, a1
  li a1, MSTATUS_MPRV | MSTATUS_MPP_S
  csrs mstatus, a1
  li a2, 0x0000008040000000
  ld a0, 0(a2)
  li a1, MSTATUS_MPRV
  csrc mstatus, a1
  EXPECT a0, 0x1111111111111111
  csrw satp, zero

PASS

# Code reached through the window: xp_ecall at the page start.
.section .text
.balign 4096
  .option push
  .option norvc
xpage:
  addi a0, zero, 42
  ecall
  .skip XP_LOAD - 8
xp_load:
  ld a0, 0(a2)
  ecall
  .option pop
.balign 4096

.data
.balign 4096
page_a:
  .rept 512
  .dword 0x1111111111111111
  .endr
page_b:
  .rept 512
  .dword 0x2222222222222222
  .endr
page_c:
  .rept 512
  .dword 0x3333333333333333
  .endr
page_d:
  .rept 512
  .dword 0
  .endr
.bss
.balign 4096
sv39_root: .space 4096
sv39_l1: .space 4096
sv39_l0: .space 4096
sv48_root: .space 4096
