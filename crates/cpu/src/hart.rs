//! The hart: reset state, the run loop, traps, and instruction execution.

use crate::compressed;
use crate::csr::*;
use crate::decode::{self, Op, Slot, XREGS};
use crate::fp::{self, FpState};
use crate::memory::Memory;
use crate::mmu::{Access, TlbEntry, TLB_MASK, TLB_SIZE};
use crate::native;
use crate::state::{CsrFile, HartState, StateError};
use crate::Bus;

pub(crate) const PRV_U: u8 = 0;
pub(crate) const PRV_S: u8 = 1;
pub(crate) const PRV_M: u8 = 3;

/// Exception causes (privileged spec table 3.6).
pub(crate) mod cause {
    pub(crate) const FETCH_ACCESS: u64 = 1;
    pub(crate) const ILLEGAL: u64 = 2;
    pub(crate) const BREAKPOINT: u64 = 3;
    pub(crate) const LOAD_MISALIGNED: u64 = 4;
    pub(crate) const LOAD_ACCESS: u64 = 5;
    pub(crate) const STORE_MISALIGNED: u64 = 6;
    pub(crate) const STORE_ACCESS: u64 = 7;
    pub(crate) const ECALL_U: u64 = 8;
    pub(crate) const FETCH_PAGE_FAULT: u64 = 12;
    pub(crate) const LOAD_PAGE_FAULT: u64 = 13;
    pub(crate) const STORE_PAGE_FAULT: u64 = 15;
}

const INTERRUPT: u64 = 1 << 63;

/// A synchronous exception: `mcause`/`scause` and `mtval`/`stval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trap {
    pub(crate) cause: u64,
    pub(crate) tval: u64,
}

impl Trap {
    pub(crate) fn new(cause: u64, tval: u64) -> Trap {
        Trap { cause, tval }
    }
}

/// Why [`Hart::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The instruction budget is used up (or, in a storm of traps that retire
    /// nothing, as many traps as the budget were taken).
    BudgetExhausted,
    /// The hart executed WFI (or is still waiting in it) and no interrupt is
    /// pending and enabled in `mie`. `pc` is past the WFI.
    Wfi,
    /// A device asked to stop ([`Bus::stop_requested`]).
    Stopped,
}

/// A privilege mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// User mode (0).
    User,
    /// Supervisor mode (1).
    Supervisor,
    /// Machine mode (3).
    Machine,
}

/// One RV64IMAFDC hart with M/S/U modes and Sv39/Sv48 paging.
///
/// `icount` counts retired instructions. An instruction that traps does not
/// retire; ECALL and EBREAK always trap, so they never retire either. WFI
/// retires. `mcycle`, `minstret` and `cycle`/`instret` all read `icount`.
pub struct Hart {
    /// x0..x31; entries 32.. are never read or written (see [`XREGS`]).
    pub(crate) x: [u64; XREGS],
    pub(crate) pc: u64,
    pub(crate) fp: FpState,
    pub(crate) prv: u8,
    pub(crate) csr: CsrFile,
    pub(crate) icount: u64,
    /// Instructions retired in U-mode before the current stay there (statistics only).
    user_icount: u64,
    /// `icount` when the hart last entered U-mode.
    user_since: u64,
    pub(crate) reservation: Option<u64>,
    pub(crate) wfi: bool,
    pub(crate) mem: Memory,
    /// Device interrupt lines as last reported by the bus.
    pub(crate) irq_lines: u64,
    /// Something changed that may make an interrupt takeable (or a stop due).
    pub(crate) irq_check: bool,
    /// A device asked to stop.
    pub(crate) stop: bool,
    pub(crate) tlb_r: [TlbEntry; TLB_SIZE],
    pub(crate) tlb_w: [TlbEntry; TLB_SIZE],
    pub(crate) tlb_x: [TlbEntry; TLB_SIZE],
    pub(crate) tlb_ctx: u64,
    /// The virtual page numbers (inclusive) that TLB entries filled from
    /// superpages may cover; empty (`lo > hi`) after a full flush.
    pub(crate) tlb_super: (u64, u64),
    /// The translations of address spaces that were current before the
    /// last `satp` writes, most recent first (see [`Hart::switch_satp`]).
    pub(crate) saved_tlbs: Vec<Box<crate::mmu::SavedTlb>>,
    /// A write hit decoded code: the current block must end.
    pub(crate) block_exit: bool,
    /// `icount` at which the current block must stop.
    block_end: u64,
    /// The RAM page the current block executes from.
    block_page: usize,
    /// Expansions of all 16-bit instructions.
    rvc: &'static [u32; 0x10000],
}

#[inline(always)]
fn rd(i: u32) -> usize {
    ((i >> 7) & 31) as usize
}
#[inline(always)]
fn rs1(i: u32) -> usize {
    ((i >> 15) & 31) as usize
}
#[inline(always)]
fn rs2(i: u32) -> usize {
    ((i >> 20) & 31) as usize
}
#[inline(always)]
fn imm_i(i: u32) -> u64 {
    ((i as i32) >> 20) as i64 as u64
}
#[inline(always)]
fn imm_s(i: u32) -> u64 {
    ((((i & 0xfe00_0000) as i32) >> 20) as u32 | ((i >> 7) & 31)) as i32 as i64 as u64
}
#[inline(always)]
fn imm_b(i: u32) -> u64 {
    let v = (((i & 0x8000_0000) as i32) >> 19) as u32
        | ((i & 0x80) << 4)
        | ((i >> 20) & 0x7e0)
        | ((i >> 7) & 0x1e);
    v as i32 as i64 as u64
}
#[inline(always)]
fn imm_j(i: u32) -> u64 {
    let v = (((i & 0x8000_0000) as i32) >> 11) as u32
        | (i & 0xf_f000)
        | ((i >> 9) & 0x800)
        | ((i >> 20) & 0x7fe);
    v as i32 as i64 as u64
}
#[inline(always)]
fn sext32(v: u64) -> u64 {
    v as i32 as i64 as u64
}

/// x0..x31 of a register file, mutable (for [`fp::execute`]).
fn gprs_mut(x: &mut [u64; XREGS]) -> &mut [u64; 32] {
    let (head, _) = x.split_first_chunk_mut::<32>().expect("XREGS >= 32");
    head
}

fn illegal(inst: u32) -> Trap {
    Trap::new(cause::ILLEGAL, u64::from(inst))
}

fn div(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i64, b as i64);
    if b == 0 {
        u64::MAX
    } else {
        a.wrapping_div(b) as u64
    }
}
fn rem(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i64, b as i64);
    if b == 0 {
        a as u64
    } else {
        a.wrapping_rem(b) as u64
    }
}
fn divw(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i32, b as i32);
    if b == 0 {
        u64::MAX
    } else {
        a.wrapping_div(b) as i64 as u64
    }
}
fn remw(a: u64, b: u64) -> u64 {
    let (a, b) = (a as i32, b as i32);
    if b == 0 {
        a as i64 as u64
    } else {
        a.wrapping_rem(b) as i64 as u64
    }
}
fn divuw(a: u64, b: u64) -> u64 {
    (a as u32)
        .checked_div(b as u32)
        .map_or(u64::MAX, |q| sext32(u64::from(q)))
}
fn remuw(a: u64, b: u64) -> u64 {
    let a = a as u32;
    sext32(u64::from(a.checked_rem(b as u32).unwrap_or(a)))
}

impl Hart {
    /// A hart in its reset state (privileged spec §3.4): M-mode, `pc` =
    /// 0x1000, interrupts disabled, paging off, FP off.
    pub fn new(memory: Memory) -> Hart {
        let mut h = Hart {
            x: [0; XREGS],
            pc: 0x1000,
            fp: FpState {
                f: [0; 32],
                fflags: 0,
                frm: 0,
            },
            prv: PRV_M,
            csr: CsrFile::default(),
            icount: 0,
            user_icount: 0,
            user_since: 0,
            reservation: None,
            wfi: false,
            mem: memory,
            irq_lines: 0,
            irq_check: true,
            stop: false,
            tlb_r: [TlbEntry::EMPTY; TLB_SIZE],
            tlb_w: [TlbEntry::EMPTY; TLB_SIZE],
            tlb_x: [TlbEntry::EMPTY; TLB_SIZE],
            tlb_ctx: 0,
            tlb_super: (u64::MAX, 0),
            saved_tlbs: Vec::new(),
            block_exit: false,
            block_end: 0,
            block_page: 0,
            rvc: compressed::table(),
        };
        h.update_tlb_ctx();
        h
    }

    /// Retired instructions since reset.
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// Instructions retired in U-mode so far (statistics for benchmarks; not
    /// part of the architectural state).
    pub fn user_icount(&self) -> u64 {
        let current = if self.prv == PRV_U {
            self.icount - self.user_since
        } else {
            0
        };
        self.user_icount + current
    }

    /// Sets the value of the `time` CSR, also the Sstc comparison value.
    pub fn set_time(&mut self, mtime: u64) {
        self.csr.time = mtime;
        self.irq_check = true;
    }

    /// `stimecmp` when Sstc is enabled (`menvcfg.STCE`), so the machine knows
    /// the next supervisor timer deadline.
    pub fn stimecmp(&self) -> Option<u64> {
        (self.csr.menvcfg & MENVCFG_STCE != 0).then_some(self.csr.stimecmp)
    }

    /// The program counter.
    pub fn pc(&self) -> u64 {
        self.pc
    }

    /// Sets the program counter (bit 0 is cleared).
    pub fn set_pc(&mut self, pc: u64) {
        self.pc = pc & !1;
    }

    /// x0..x31 (the register file's architectural part).
    fn gprs(&self) -> [u64; 32] {
        let mut r = [0; 32];
        r.copy_from_slice(&self.x[..32]);
        r
    }

    /// Integer register `i` (0..32; x0 reads 0).
    pub fn x(&self, i: usize) -> u64 {
        self.x[i & 31]
    }

    /// Sets integer register `i`; writes to x0 are ignored.
    pub fn set_x(&mut self, i: usize, v: u64) {
        if i & 31 != 0 {
            self.x[i & 31] = v;
        }
    }

    /// Guest RAM.
    pub fn memory(&self) -> &Memory {
        &self.mem
    }

    /// Guest RAM, for the loader and DMA.
    pub fn memory_mut(&mut self) -> &mut Memory {
        &mut self.mem
    }

    /// The current privilege mode.
    pub fn privilege(&self) -> Privilege {
        match self.prv {
            PRV_U => Privilege::User,
            PRV_S => Privilege::Supervisor,
            _ => Privilege::Machine,
        }
    }

    /// The architectural state (everything but RAM).
    pub fn state(&self) -> HartState {
        HartState {
            pc: self.pc,
            x: self.gprs(),
            f: self.fp.f,
            fflags: self.fp.fflags,
            frm: self.fp.frm,
            privilege: self.prv,
            icount: self.icount,
            reservation: self.reservation,
            wfi: self.wfi,
            csr: self.csr.clone(),
        }
    }

    /// Replaces the architectural state after checking it is one the hart
    /// could be in. On error the hart is unchanged.
    pub fn restore(&mut self, state: HartState) -> Result<(), StateError> {
        state.validate()?;
        self.pc = state.pc;
        self.x[..32].copy_from_slice(&state.x);
        self.fp.f = state.f;
        self.fp.fflags = state.fflags;
        self.fp.frm = state.frm;
        self.prv = state.privilege;
        self.icount = state.icount;
        self.user_since = state.icount;
        self.reservation = state.reservation;
        self.wfi = state.wfi;
        self.csr = state.csr;
        self.irq_check = true;
        self.stop = false;
        self.flush_tlb();
        self.update_tlb_ctx();
        Ok(())
    }

    /// Runs until `budget` more instructions have retired, the hart waits in
    /// WFI with nothing pending in `mip & mie`, or a device asks to stop.
    ///
    /// Interrupts are checked at the start and whenever something that could
    /// make one takeable changes (CSR writes, MMIO, xRET, WFI).
    pub fn run<B: Bus>(&mut self, bus: &mut B, budget: u64) -> Exit {
        self.irq_lines = bus.irq_lines() & IRQ_LINES;
        self.irq_check = true;
        if self.stop {
            self.stop = false;
            return Exit::Stopped;
        }
        if self.wfi {
            if self.mip() & self.csr.mie == 0 {
                return Exit::Wfi;
            }
            self.wfi = false;
        }
        let target = self.icount.saturating_add(budget);
        let mut traps = 0u64;
        while self.icount < target {
            if self.irq_check {
                self.irq_check = false;
                if self.stop {
                    self.stop = false;
                    return Exit::Stopped;
                }
                if self.wfi {
                    return Exit::Wfi;
                }
                if let Some(code) = self.pending_interrupt() {
                    self.take_trap(INTERRUPT | code, 0);
                }
            }
            if let Err(t) = self.run_block(bus, target) {
                self.take_trap(t.cause, t.tval);
                traps += 1;
                if traps >= budget {
                    break;
                }
            }
        }
        if self.stop {
            self.stop = false;
            return Exit::Stopped;
        }
        if self.wfi {
            return Exit::Wfi;
        }
        Exit::BudgetExhausted
    }

    /// Enters the trap handler for `cause` (privileged spec §3.1.6.1, §3.1.8).
    pub(crate) fn take_trap(&mut self, cause: u64, tval: u64) {
        self.reservation = None;
        let interrupt = cause & INTERRUPT != 0;
        let code = cause & 63;
        let deleg = if interrupt {
            self.csr.mideleg
        } else {
            self.csr.medeleg
        };
        let ms = self.csr.mstatus;
        if self.prv <= PRV_S && (deleg >> code) & 1 != 0 {
            self.csr.scause = cause;
            self.csr.sepc = self.pc;
            self.csr.stval = tval;
            let mut m = ms & !(MSTATUS_SPIE | MSTATUS_SIE | MSTATUS_SPP);
            if ms & MSTATUS_SIE != 0 {
                m |= MSTATUS_SPIE;
            }
            if self.prv == PRV_S {
                m |= MSTATUS_SPP;
            }
            self.csr.mstatus = m;
            self.pc = trap_vector(self.csr.stvec, interrupt, code);
            self.set_prv(PRV_S);
        } else {
            self.csr.mcause = cause;
            self.csr.mepc = self.pc;
            self.csr.mtval = tval;
            let mut m = ms & !(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP);
            if ms & MSTATUS_MIE != 0 {
                m |= MSTATUS_MPIE;
            }
            m |= u64::from(self.prv) << 11;
            self.csr.mstatus = m;
            self.pc = trap_vector(self.csr.mtvec, interrupt, code);
            self.set_prv(PRV_M);
        }
    }

    fn set_prv(&mut self, prv: u8) {
        if prv != self.prv {
            if self.prv == PRV_U {
                self.user_icount += self.icount - self.user_since;
            } else if prv == PRV_U {
                self.user_since = self.icount;
            }
            self.prv = prv;
        }
        self.update_tlb_ctx();
    }

    #[inline(always)]
    fn wx(&mut self, rd: usize, v: u64) {
        self.x[rd] = v;
        self.x[0] = 0;
    }

    /// Fetches and executes one instruction without the decoded-instruction
    /// cache; `Ok` means it retired (`icount` is the caller's to count).
    #[cold]
    #[inline(never)]
    fn step_uncached<B: Bus>(&mut self, bus: &mut B) -> Result<(), Trap> {
        let raw = self.fetch(bus, self.pc)?;
        if raw & 3 == 3 {
            self.execute(bus, raw, 4)
        } else {
            let inst = self.rvc[(raw & 0xffff) as usize];
            if inst == 0 {
                return Err(illegal(raw & 0xffff));
            }
            self.execute(bus, inst, 2)
        }
    }

    /// Executes instructions from the page of `pc` until the budget is
    /// used, the pc leaves the page, something may make an interrupt
    /// takeable, or an instruction traps (it does not retire).
    #[inline(always)]
    fn run_block<B: Bus>(&mut self, bus: &mut B, target: u64) -> Result<(), Trap> {
        let pc = self.pc;
        let vpn = pc >> 12;
        let e = self.tlb_x[vpn as usize & TLB_MASK];
        let off = if e.tag == self.fetch_tag(vpn) {
            e.off
        } else {
            self.translate(pc, Access::Fetch)?;
            let e = self.tlb_x[vpn as usize & TLB_MASK];
            if e.tag != self.fetch_tag(vpn) {
                // Not RAM (the boot ROM): fetch through the bus.
                return self.step_counted(bus);
            }
            e.off
        };
        if off & 0xfff != 0 {
            return self.step_counted(bus);
        }
        let page = off >> 12;
        let Some((base, fresh)) = self.mem.code.enter(page) else {
            return self.step_counted(bus);
        };
        if fresh {
            self.mark_code_writable(page);
        }
        self.block_exit = false;
        // The pc and the retired count live in registers inside the block:
        // `left` counts down the instructions still allowed, so `icount` is
        // `block_end - left`. Both are written back before anything that may
        // read them (traps, the general paths) and when the block ends. The
        // slot after the page's last one is an `Op::PageEnd` sentinel, so
        // falling off the page needs no check; jumps and taken branches check.
        // Few values stay live across the loop so that the loop-carried ones
        // fit in registers.
        self.block_end = target;
        self.block_page = page;
        let mut left = target.saturating_sub(self.icount);
        if left == 0 {
            return Ok(());
        }
        // The slot index of the next instruction: the loop-carried value of
        // straight-line code. Each arm moves it past its instruction; the pc
        // is derived from it where needed.
        let vbase = vpn << 12;
        let mut at = base + ((pc & 0xfff) >> 1) as usize;
        macro_rules! pc_at {
            ($at:expr) => {
                vbase.wrapping_add((($at - base) as u64) << 1)
            };
        }
        // The state before the instruction at slot `$idx` (traps, general paths).
        macro_rules! sync_at {
            ($idx:expr) => {
                self.icount = self.block_end - left;
                self.pc = pc_at!($idx);
            };
        }
        // The state after the current instruction retired.
        macro_rules! sync_next {
            () => {
                self.icount = self.block_end - left;
                self.pc = pc_at!(at);
            };
        }
        macro_rules! jump {
            ($t:expr) => {
                let t: u64 = $t;
                left -= 1;
                if left == 0 || (t ^ vbase) >> 12 != 0 {
                    self.icount = self.block_end - left;
                    self.pc = t;
                    return Ok(());
                }
                at = base + ((t & 0xfff) >> 1) as usize;
            };
        }
        macro_rules! retire {
            () => {
                left -= 1;
                if left == 0 {
                    sync_next!();
                    return Ok(());
                }
            };
        }
        // Instructions that run the general way alone (and end the block)
        // leave the loop with their slot index.
        let general = loop {
            let idx = at;
            let Some(&s) = self.mem.code.slots.get(idx) else {
                sync_next!();
                return Ok(());
            };
            let h = usize::from(s.half);
            // Operands are read inside the arms that use them, so that few
            // values are live across the dispatch and the slot index `at`
            // stays in a register (it was spilled to the stack and reloaded
            // for every instruction when all operands were read up front).

            // The pc of this instruction (`at` has moved past it).
            macro_rules! pc {
                () => {
                    pc_at!(at - h)
                };
            }
            macro_rules! trap {
                ($e:expr) => {
                    match $e {
                        Ok(v) => v,
                        Err(t) => {
                            sync_at!(idx);
                            return Err(t);
                        }
                    }
                };
            }
            macro_rules! a {
                () => {
                    self.x[s.rs1()]
                };
            }
            macro_rules! b {
                () => {
                    self.x[s.rs2()]
                };
            }
            macro_rules! b_sb {
                () => {
                    self.x[s.rs2_sb()]
                };
            }
            let imm = i64::from(s.imm) as u64;
            // Each branch, load and store has its own arm: one dispatch
            // per instruction, no second one on the kind.
            macro_rules! branch {
                ($taken:expr) => {{
                    at += h;
                    if $taken(a!(), b_sb!()) {
                        jump!(pc!().wrapping_add(imm));
                    } else {
                        retire!();
                    }
                    continue;
                }};
            }
            macro_rules! load {
                ($n:literal, $extend:expr) => {{
                    at += h;
                    let addr = a!().wrapping_add(imm);
                    let v = trap!(self.load::<B, $n>(bus, addr));
                    self.x[s.rd()] = $extend(v);
                    retire!();
                    // An MMIO load may change the interrupt lines.
                    if self.block_exit {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }};
            }
            macro_rules! store {
                ($n:literal) => {{
                    at += h;
                    let addr = a!().wrapping_add(imm);
                    trap!(self.store::<B, $n>(bus, addr, b_sb!()));
                    retire!();
                    if self.block_exit {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }};
            }
            // A fused slot whose instructions do not all fit in the budget
            // runs its first one alone, the general way, and ends the block.
            macro_rules! budget {
                ($n:literal) => {
                    if left < $n {
                        break idx;
                    }
                };
            }
            // The slot `$off` positions after this fused one (a later
            // instruction of the sequence, decoded with it).
            macro_rules! second {
                ($off:expr) => {
                    match self.mem.code.slots.get(idx + $off) {
                        Some(&s2) => s2,
                        None => break idx,
                    }
                };
            }
            // A fused ALU operation and conditional branch.
            macro_rules! alu_branch {
                ($v:expr) => {{
                    budget!(2);
                    self.x[s.fused_rd()] = $v;
                    let off = s.first_half();
                    let br = second!(off);
                    at += h;
                    left -= 1;
                    if decode::branch_taken(br.op, self.x[br.rs1()], self.x[br.rs2_sb()]) {
                        jump!(pc_at!(idx + off).wrapping_add(i64::from(br.imm) as u64));
                    } else {
                        retire!();
                    }
                    continue;
                }};
            }
            // An FP instruction (`imm` holds it): on the host when the slot
            // op has a shortcut (`$host`) and it applies, else the general FP
            // path.
            macro_rules! fp_op {
                ($($host:path)?) => {{
                    if self.csr.mstatus & MSTATUS_FS == 0 {
                        // The general path raises the exact illegal trap.
                        break idx;
                    }
                    let inst = s.imm as u32;
                    if !(false $(|| $host(&mut self.fp, inst))?) {
                        if fp::execute(&mut self.fp, gprs_mut(&mut self.x), inst).is_err() {
                            sync_at!(idx);
                            return Err(illegal(inst));
                        }
                        self.x[0] = 0;
                    }
                    self.set_fs_dirty();
                    at += h;
                    retire!();
                    continue;
                }};
            }
            let v = match s.op {
                Op::PageEnd => {
                    sync_at!(idx);
                    return Ok(());
                }
                Op::Undecoded => {
                    // Decode, then dispatch again (nothing retired).
                    self.decode_into(idx, pc_at!(idx));
                    continue;
                }
                Op::Slow => break idx,
                Op::System => {
                    sync_at!(idx);
                    trap!(self.exec_raw(bus, s));
                    self.icount += 1;
                    return Ok(());
                }
                Op::Raw => {
                    at += h;
                    sync_at!(at - h);
                    trap!(self.exec_raw(bus, s));
                    jump!(self.pc);
                    if self.block_exit {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }
                Op::Nop => {
                    at += h;
                    retire!();
                    continue;
                }
                Op::J => {
                    at += h;
                    jump!(pc!().wrapping_add(imm));
                    continue;
                }
                Op::Jal => {
                    at += h;
                    let pc = pc!();
                    self.x[s.rd()] = pc.wrapping_add(2 * (h as u64));
                    jump!(pc.wrapping_add(imm));
                    continue;
                }
                Op::Jr => {
                    jump!(a!().wrapping_add(imm) & !1);
                    continue;
                }
                Op::Jalr => {
                    at += h;
                    let t = a!().wrapping_add(imm) & !1;
                    self.x[s.rd()] = pc!().wrapping_add(2 * (h as u64));
                    jump!(t);
                    continue;
                }
                Op::Beq => branch!(|a: u64, b: u64| a == b),
                Op::Bne => branch!(|a: u64, b: u64| a != b),
                Op::Blt => branch!(|a: u64, b: u64| (a as i64) < (b as i64)),
                Op::Bge => branch!(|a: u64, b: u64| (a as i64) >= (b as i64)),
                Op::Bltu => branch!(|a: u64, b: u64| a < b),
                Op::Bgeu => branch!(|a: u64, b: u64| a >= b),
                Op::Lb => load!(1, |v: u64| v as i8 as i64 as u64),
                Op::Lh => load!(2, |v: u64| v as i16 as i64 as u64),
                Op::Lw => load!(4, |v: u64| v as i32 as i64 as u64),
                Op::Ld => load!(8, |v: u64| v),
                Op::Lbu => load!(1, |v: u64| v),
                Op::Lhu => load!(2, |v: u64| v),
                Op::Lwu => load!(4, |v: u64| v),
                Op::Sb => store!(1),
                Op::Sh => store!(2),
                Op::Sw => store!(4),
                Op::Sd => store!(8),
                Op::Fld => {
                    if self.csr.mstatus & MSTATUS_FS == 0 {
                        // The general path raises the exact illegal trap.
                        break idx;
                    }
                    at += h;
                    let addr = a!().wrapping_add(imm);
                    let v = trap!(self.load::<B, 8>(bus, addr));
                    self.fp.f[s.rd() & 31] = v;
                    self.set_fs_dirty();
                    retire!();
                    if self.block_exit {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }
                Op::Fsd => {
                    if self.csr.mstatus & MSTATUS_FS == 0 {
                        // The general path raises the exact illegal trap.
                        break idx;
                    }
                    at += h;
                    let addr = a!().wrapping_add(imm);
                    let v = self.fp.f[s.rs2_sb() & 31];
                    trap!(self.store::<B, 8>(bus, addr, v));
                    retire!();
                    if self.block_exit {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }
                Op::FaddD => fp_op!(fp::host_fadd_d),
                Op::FsubD => fp_op!(fp::host_fsub_d),
                Op::FmulD => fp_op!(fp::host_fmul_d),
                Op::FdivD => fp_op!(fp::host_fdiv_d),
                Op::FmaD => fp_op!(fp::host_fma_d),
                Op::Native => {
                    let n = s.run_count();
                    if left < n {
                        // Not all of the run fits in the budget: interpret
                        // what does, one instruction at a time.
                        sync_at!(idx);
                        for _ in 0..left {
                            self.step_uncached(bus)?;
                            self.icount += 1;
                        }
                        return Ok(());
                    }
                    self.mem.code.native.run(s.imm, &mut self.x);
                    at += h;
                    left -= n;
                    if left == 0 {
                        sync_next!();
                        return Ok(());
                    }
                    continue;
                }
                Op::Fp => fp_op!(),
                Op::ZextW => {
                    budget!(2);
                    self.x[s.fused_rd()] = u64::from(a!() as u32);
                    at += h;
                    left -= 1;
                    retire!();
                    continue;
                }
                Op::ZextWAdd => {
                    budget!(3);
                    self.x[s.fused_rd()] = u64::from(a!() as u32);
                    let s3 = second!(s.imm as usize);
                    self.x[s3.fused_rd()] = self.x[s3.rs1()].wrapping_add(self.x[s3.rs2()]);
                    at += h;
                    left -= 2;
                    retire!();
                    continue;
                }
                Op::SlliAdd => {
                    budget!(2);
                    self.x[s.fused_rd()] = a!() << (imm & 63);
                    let s2 = second!(s.first_half());
                    self.x[s2.fused_rd()] = self.x[s2.rs1()].wrapping_add(self.x[s2.rs2()]);
                    at += h;
                    left -= 1;
                    retire!();
                    continue;
                }
                Op::AddiB => alu_branch!(a!().wrapping_add(imm)),
                Op::AddiwB => alu_branch!(sext32(a!().wrapping_add(imm))),
                Op::AddB => alu_branch!(a!().wrapping_add(b!())),
                Op::AddwB => alu_branch!(sext32(a!().wrapping_add(b!()))),
                Op::SlliB => alu_branch!(a!() << (imm & 63)),
                Op::Lui => imm,
                Op::Auipc => pc_at!(at).wrapping_add(imm),
                Op::Addi => a!().wrapping_add(imm),
                Op::Slti => u64::from((a!() as i64) < (imm as i64)),
                Op::Sltiu => u64::from(a!() < imm),
                Op::Xori => a!() ^ imm,
                Op::Ori => a!() | imm,
                Op::Andi => a!() & imm,
                Op::Slli => a!() << (imm & 63),
                Op::Srli => a!() >> (imm & 63),
                Op::Srai => ((a!() as i64) >> (imm & 63)) as u64,
                Op::Addiw => sext32(a!().wrapping_add(imm)),
                Op::Slliw => sext32(u64::from((a!() as u32) << (imm & 31))),
                Op::Srliw => sext32(u64::from((a!() as u32) >> (imm & 31))),
                Op::Sraiw => ((a!() as i32) >> (imm & 31)) as i64 as u64,
                Op::Add => a!().wrapping_add(b!()),
                Op::Sub => a!().wrapping_sub(b!()),
                Op::Sll => a!() << (b!() & 63),
                Op::Slt => u64::from((a!() as i64) < (b!() as i64)),
                Op::Sltu => u64::from(a!() < b!()),
                Op::Xor => a!() ^ b!(),
                Op::Srl => a!() >> (b!() & 63),
                Op::Sra => ((a!() as i64) >> (b!() & 63)) as u64,
                Op::Or => a!() | b!(),
                Op::And => a!() & b!(),
                Op::Mul => a!().wrapping_mul(b!()),
                Op::Mulh => ((i128::from(a!() as i64) * i128::from(b!() as i64)) >> 64) as u64,
                Op::Mulhsu => ((i128::from(a!() as i64) * (b!() as i128)) >> 64) as u64,
                Op::Mulhu => ((u128::from(a!()) * u128::from(b!())) >> 64) as u64,
                Op::Div => div(a!(), b!()),
                Op::Divu => a!().checked_div(b!()).unwrap_or(u64::MAX),
                Op::Rem => rem(a!(), b!()),
                Op::Remu => {
                    let a = a!();
                    a.checked_rem(b!()).unwrap_or(a)
                }
                Op::Addw => sext32(a!().wrapping_add(b!())),
                Op::Subw => sext32(a!().wrapping_sub(b!())),
                Op::Sllw => sext32(u64::from((a!() as u32) << (b!() & 31))),
                Op::Srlw => sext32(u64::from((a!() as u32) >> (b!() & 31))),
                Op::Sraw => ((a!() as i32) >> (b!() & 31)) as i64 as u64,
                Op::Mulw => sext32(u64::from((a!() as u32).wrapping_mul(b!() as u32))),
                Op::Divw => divw(a!(), b!()),
                Op::Divuw => divuw(a!(), b!()),
                Op::Remw => remw(a!(), b!()),
                Op::Remuw => remuw(a!(), b!()),
            };
            // Decoding guarantees rd != 0 for every operation that gets here.
            self.x[s.rd()] = v;
            at += h;
            retire!();
        };
        sync_at!(general);
        self.step_uncached(bus)?;
        self.icount += 1;
        Ok(())
    }

    fn step_counted<B: Bus>(&mut self, bus: &mut B) -> Result<(), Trap> {
        self.step_uncached(bus)?;
        self.icount += 1;
        Ok(())
    }

    /// Decodes the instruction at `pc` (in the current block's page) into
    /// slot `idx`.
    #[cold]
    #[inline(never)]
    fn decode_into(&mut self, idx: usize, pc: u64) {
        let page = self.block_page;
        let s = self.decode_at(page << 12, pc);
        let s = match self.compile_run(page, pc, s) {
            Some(native) => native,
            None => self.fuse_at(page, idx, pc, s),
        };
        self.mem
            .code
            .store_slot(page, idx, (pc & 0xfff) as usize, s);
    }

    /// A compiled slot for the run of integer register operations that
    /// starts with `s` (at address `pc` of `page`), or `None` if it is
    /// shorter than [`native::MIN_RUN`] or cannot be compiled.
    fn compile_run(&mut self, page: usize, pc: u64, s: Slot) -> Option<Slot> {
        if !native::compilable(s.op) {
            return None;
        }
        let mut run = [Slot::EMPTY; native::MAX_RUN];
        let mut n = 0;
        let mut at = pc;
        let mut half = 0u32;
        let mut next = s;
        loop {
            run[n] = next;
            n += 1;
            half += u32::from(next.half);
            at = at.wrapping_add(next.len());
            if n == native::MAX_RUN || at & 0xfff == 0 {
                break;
            }
            next = self.decode_at(page << 12, at);
            if !native::compilable(next.op) {
                break;
            }
        }
        let run = &run[..n];
        if run.iter().filter(|s| s.op != Op::Nop).count() < native::MIN_RUN {
            return None;
        }
        let code = native::emit(run)?;
        let off = self.mem.code.add_native(&code)?;
        Some(Slot::native(u8::try_from(half).ok()?, n as u8, off))
    }

    /// The fused slot for `s` (at slot `idx`, address `pc`) and the
    /// instructions after it in the same page, or `s` if they do not fuse
    /// ([`decode::fuse`]). The later instructions are decoded into their own
    /// slots, which the fused slot's execution reads.
    fn fuse_at(&mut self, page: usize, idx: usize, pc: u64, s: Slot) -> Slot {
        if !matches!(s.op, Op::Slli | Op::Addi | Op::Addiw | Op::Add | Op::Addw) {
            return s;
        }
        let idx2 = idx + usize::from(s.half);
        let pc2 = pc.wrapping_add(s.len());
        let Some(s2) = self.peek_slot(page, idx2, pc2) else {
            return s;
        };
        let Some(f) = decode::fuse(s, s2) else {
            return s;
        };
        self.keep_slot(page, idx2, pc2, s2);
        if f.op == Op::ZextW {
            let idx3 = idx2 + usize::from(s2.half);
            let pc3 = pc2.wrapping_add(s2.len());
            if let Some(s3) = self.peek_slot(page, idx3, pc3) {
                if let Some(f3) = decode::fuse_zext_add(f, s3) {
                    self.keep_slot(page, idx3, pc3, s3);
                    return f3;
                }
            }
        }
        f
    }

    /// The slot at `idx` (address `pc`) as decoded, or as it would be
    /// decoded (not stored: it may become a fused slot of its own when it is
    /// executed first); `None` if `pc`, the address just after an
    /// instruction of `page`, is in the next page.
    fn peek_slot(&self, page: usize, idx: usize, pc: u64) -> Option<Slot> {
        if pc & 0xfff == 0 {
            return None;
        }
        let cur = *self.mem.code.slots.get(idx)?;
        if cur.op != Op::Undecoded {
            return Some(cur);
        }
        Some(self.decode_at(page << 12, pc))
    }

    /// Stores `s`, a later instruction of a fused sequence, in its own slot
    /// unless it is decoded already: the fused slot reads it there.
    fn keep_slot(&mut self, page: usize, idx: usize, pc: u64, s: Slot) {
        if self.mem.code.slots.get(idx).map(|c| c.op) == Some(Op::Undecoded) {
            self.mem
                .code
                .store_slot(page, idx, (pc & 0xfff) as usize, s);
        }
    }

    /// Decodes the instruction at `pc` in the RAM page at offset `page_off`.
    fn decode_at(&self, page_off: usize, pc: u64) -> Slot {
        let po = (pc & 0xfff) as usize;
        let lo = self.mem.load(page_off + po, 2) as u32;
        if lo & 3 != 3 {
            let inst = self.rvc[lo as usize];
            if inst == 0 {
                return Slot::slow();
            }
            return decode::decode(inst, true);
        }
        if po > 0xffc {
            return Slot::slow();
        }
        decode::decode(self.mem.load(page_off + po, 4) as u32, false)
    }

    #[inline(never)]
    fn exec_raw<B: Bus>(&mut self, bus: &mut B, s: Slot) -> Result<(), Trap> {
        self.execute(bus, s.imm as u32, s.len())
    }

    /// Executes a 32-bit instruction (possibly expanded from a 16-bit one of
    /// length `len`). On `Ok` the pc has moved on; on `Err` nothing changed.
    #[inline(always)]
    fn execute<B: Bus>(&mut self, bus: &mut B, i: u32, len: u64) -> Result<(), Trap> {
        let pc = self.pc;
        let next = pc.wrapping_add(len);
        let x = &self.x;
        let a = x[rs1(i)];
        let f3 = (i >> 12) & 7;
        match i & 0x7f {
            0x37 => self.wx(rd(i), sext32(u64::from(i & 0xffff_f000))),
            0x17 => self.wx(rd(i), pc.wrapping_add(sext32(u64::from(i & 0xffff_f000)))),
            0x6f => {
                self.wx(rd(i), next);
                self.pc = pc.wrapping_add(imm_j(i));
                return Ok(());
            }
            0x67 => {
                if f3 != 0 {
                    return Err(illegal(i));
                }
                let t = a.wrapping_add(imm_i(i)) & !1;
                self.wx(rd(i), next);
                self.pc = t;
                return Ok(());
            }
            0x63 => {
                let b = x[rs2(i)];
                let taken = match f3 {
                    0 => a == b,
                    1 => a != b,
                    4 => (a as i64) < (b as i64),
                    5 => (a as i64) >= (b as i64),
                    6 => a < b,
                    7 => a >= b,
                    _ => return Err(illegal(i)),
                };
                self.pc = if taken {
                    pc.wrapping_add(imm_b(i))
                } else {
                    next
                };
                return Ok(());
            }
            0x03 => {
                let addr = a.wrapping_add(imm_i(i));
                let v = match f3 {
                    0 => self.load::<B, 1>(bus, addr)? as i8 as i64 as u64,
                    1 => self.load::<B, 2>(bus, addr)? as i16 as i64 as u64,
                    2 => self.load::<B, 4>(bus, addr)? as i32 as i64 as u64,
                    3 => self.load::<B, 8>(bus, addr)?,
                    4 => self.load::<B, 1>(bus, addr)?,
                    5 => self.load::<B, 2>(bus, addr)?,
                    6 => self.load::<B, 4>(bus, addr)?,
                    _ => return Err(illegal(i)),
                };
                self.wx(rd(i), v);
            }
            0x23 => {
                let addr = a.wrapping_add(imm_s(i));
                let v = x[rs2(i)];
                match f3 {
                    0 => self.store::<B, 1>(bus, addr, v)?,
                    1 => self.store::<B, 2>(bus, addr, v)?,
                    2 => self.store::<B, 4>(bus, addr, v)?,
                    3 => self.store::<B, 8>(bus, addr, v)?,
                    _ => return Err(illegal(i)),
                }
            }
            0x13 => {
                let imm = imm_i(i);
                let v = match f3 {
                    0 => a.wrapping_add(imm),
                    1 => {
                        if i >> 26 != 0 {
                            return Err(illegal(i));
                        }
                        a << (imm & 63)
                    }
                    2 => u64::from((a as i64) < (imm as i64)),
                    3 => u64::from(a < imm),
                    4 => a ^ imm,
                    5 => match i >> 26 {
                        0 => a >> (imm & 63),
                        0x10 => ((a as i64) >> (imm & 63)) as u64,
                        _ => return Err(illegal(i)),
                    },
                    6 => a | imm,
                    _ => a & imm,
                };
                self.wx(rd(i), v);
            }
            0x1b => {
                let sh = (i >> 20) & 31;
                let v = match (f3, i >> 25) {
                    (0, _) => sext32(a.wrapping_add(imm_i(i))),
                    (1, 0) => sext32(u64::from((a as u32) << sh)),
                    (5, 0) => sext32(u64::from((a as u32) >> sh)),
                    (5, 0x20) => ((a as i32) >> sh) as i64 as u64,
                    _ => return Err(illegal(i)),
                };
                self.wx(rd(i), v);
            }
            0x33 => {
                let b = x[rs2(i)];
                let v = match (i >> 25, f3) {
                    (0, 0) => a.wrapping_add(b),
                    (0x20, 0) => a.wrapping_sub(b),
                    (0, 1) => a << (b & 63),
                    (0, 2) => u64::from((a as i64) < (b as i64)),
                    (0, 3) => u64::from(a < b),
                    (0, 4) => a ^ b,
                    (0, 5) => a >> (b & 63),
                    (0x20, 5) => ((a as i64) >> (b & 63)) as u64,
                    (0, 6) => a | b,
                    (0, 7) => a & b,
                    (1, 0) => a.wrapping_mul(b),
                    (1, 1) => ((i128::from(a as i64) * i128::from(b as i64)) >> 64) as u64,
                    (1, 2) => ((i128::from(a as i64) * (b as i128)) >> 64) as u64,
                    (1, 3) => ((u128::from(a) * u128::from(b)) >> 64) as u64,
                    (1, 4) => div(a, b),
                    (1, 5) => a.checked_div(b).unwrap_or(u64::MAX),
                    (1, 6) => rem(a, b),
                    (1, 7) => a.checked_rem(b).unwrap_or(a),
                    _ => return Err(illegal(i)),
                };
                self.wx(rd(i), v);
            }
            0x3b => {
                let b = x[rs2(i)];
                let v = match (i >> 25, f3) {
                    (0, 0) => sext32(a.wrapping_add(b)),
                    (0x20, 0) => sext32(a.wrapping_sub(b)),
                    (0, 1) => sext32(u64::from((a as u32) << (b & 31))),
                    (0, 5) => sext32(u64::from((a as u32) >> (b & 31))),
                    (0x20, 5) => ((a as i32) >> (b & 31)) as i64 as u64,
                    (1, 0) => sext32(u64::from((a as u32).wrapping_mul(b as u32))),
                    (1, 4) => divw(a, b),
                    (1, 5) => divuw(a, b),
                    (1, 6) => remw(a, b),
                    (1, 7) => remuw(a, b),
                    _ => return Err(illegal(i)),
                };
                self.wx(rd(i), v);
            }
            0x0f => match f3 {
                // FENCE: one hart, in-order memory; nothing to do.
                0 => {}
                // FENCE.I: writes to decoded code already invalidate it.
                1 => {}
                _ => return Err(illegal(i)),
            },
            0x73 => return self.system(i, next),
            0x2f => self.amo(bus, i)?,
            0x07 => {
                self.fs_on(i)?;
                let addr = a.wrapping_add(imm_i(i));
                let v = match f3 {
                    2 => self.load::<B, 4>(bus, addr)? | 0xffff_ffff_0000_0000,
                    3 => self.load::<B, 8>(bus, addr)?,
                    _ => return Err(illegal(i)),
                };
                self.fp.f[rd(i)] = v;
                self.set_fs_dirty();
            }
            0x27 => {
                self.fs_on(i)?;
                let addr = a.wrapping_add(imm_s(i));
                let v = self.fp.f[rs2(i)];
                match f3 {
                    2 => self.store::<B, 4>(bus, addr, v)?,
                    3 => self.store::<B, 8>(bus, addr, v)?,
                    _ => return Err(illegal(i)),
                }
            }
            0x43 | 0x47 | 0x4b | 0x4f | 0x53 => {
                self.fs_on(i)?;
                if fp::execute(&mut self.fp, gprs_mut(&mut self.x), i).is_err() {
                    return Err(illegal(i));
                }
                self.x[0] = 0;
                self.set_fs_dirty();
            }
            _ => return Err(illegal(i)),
        }
        self.pc = next;
        Ok(())
    }

    fn fs_on(&self, i: u32) -> Result<(), Trap> {
        if self.csr.mstatus & MSTATUS_FS == 0 {
            Err(illegal(i))
        } else {
            Ok(())
        }
    }

    /// LR/SC and AMOs (unprivileged spec chapter 8). Misaligned addresses
    /// raise address-misaligned exceptions.
    fn amo<B: Bus>(&mut self, bus: &mut B, i: u32) -> Result<(), Trap> {
        let f3 = (i >> 12) & 7;
        let n: usize = match f3 {
            2 => 4,
            3 => 8,
            _ => return Err(illegal(i)),
        };
        let addr = self.x[rs1(i)];
        let src = self.x[rs2(i)];
        let f5 = i >> 27;
        let misaligned = addr & (n as u64 - 1) != 0;
        let fix = |v: u64| if n == 4 { sext32(v) } else { v };
        match f5 {
            0b00010 => {
                if rs2(i) != 0 {
                    return Err(illegal(i));
                }
                if misaligned {
                    return Err(Trap::new(cause::LOAD_MISALIGNED, addr));
                }
                let pa = self.translate_cached(addr, Access::Load)?;
                let v = self.phys_load(bus, pa, n, addr)?;
                self.reservation = Some(pa);
                self.wx(rd(i), fix(v));
            }
            0b00011 => {
                if misaligned {
                    return Err(Trap::new(cause::STORE_MISALIGNED, addr));
                }
                let pa = self.translate_cached(addr, Access::Store)?;
                let ok = self.reservation == Some(pa);
                if ok {
                    self.phys_store(bus, pa, n, src, addr)?;
                }
                self.reservation = None;
                self.wx(rd(i), u64::from(!ok));
            }
            0b00001 | 0b00000 | 0b00100 | 0b01100 | 0b01000 | 0b10000 | 0b10100 | 0b11000
            | 0b11100 => {
                if misaligned {
                    return Err(Trap::new(cause::STORE_MISALIGNED, addr));
                }
                let pa = self.translate_cached(addr, Access::Store)?;
                let old = fix(self
                    .phys_load(bus, pa, n, addr)
                    .map_err(|t| Trap::new(cause::STORE_ACCESS, t.tval))?);
                let b = fix(src);
                let (sa, sb) = (old as i64, b as i64);
                let new = match f5 {
                    0b00001 => b,
                    0b00000 => old.wrapping_add(b),
                    0b00100 => old ^ b,
                    0b01100 => old & b,
                    0b01000 => old | b,
                    0b10000 => sa.min(sb) as u64,
                    0b10100 => sa.max(sb) as u64,
                    0b11000 => old.min(b),
                    _ => old.max(b),
                };
                self.phys_store(bus, pa, n, new, addr)?;
                self.wx(rd(i), old);
            }
            _ => return Err(illegal(i)),
        }
        Ok(())
    }

    /// SYSTEM: CSR instructions, ECALL, EBREAK, xRET, WFI, SFENCE.VMA.
    fn system(&mut self, i: u32, next: u64) -> Result<(), Trap> {
        let f3 = (i >> 12) & 7;
        if f3 == 0 {
            let rs2f = rs2(i);
            match (i >> 25, rs2f, rs1(i), rd(i)) {
                (0, 0, 0, 0) => {
                    return Err(Trap::new(cause::ECALL_U + u64::from(self.prv), 0));
                }
                (0, 1, 0, 0) => return Err(Trap::new(cause::BREAKPOINT, self.pc)),
                (0x18, 2, 0, 0) => {
                    if self.prv != PRV_M {
                        return Err(illegal(i));
                    }
                    let ms = self.csr.mstatus;
                    let mpp = ((ms >> 11) & 3) as u8;
                    let mut m = ms & !(MSTATUS_MIE | MSTATUS_MPP);
                    m |= MSTATUS_MPIE;
                    if ms & MSTATUS_MPIE != 0 {
                        m |= MSTATUS_MIE;
                    }
                    if mpp != PRV_M {
                        m &= !MSTATUS_MPRV;
                    }
                    self.csr.mstatus = m;
                    self.pc = self.csr.mepc;
                    self.set_prv(mpp);
                    self.irq_check = true;
                    return Ok(());
                }
                (0x08, 2, 0, 0) => {
                    if self.prv == PRV_U
                        || (self.prv == PRV_S && self.csr.mstatus & MSTATUS_TSR != 0)
                    {
                        return Err(illegal(i));
                    }
                    let ms = self.csr.mstatus;
                    let spp = if ms & MSTATUS_SPP != 0 { PRV_S } else { PRV_U };
                    let mut m = ms & !(MSTATUS_SIE | MSTATUS_SPP | MSTATUS_MPRV);
                    m |= MSTATUS_SPIE;
                    if ms & MSTATUS_SPIE != 0 {
                        m |= MSTATUS_SIE;
                    }
                    self.csr.mstatus = m;
                    self.pc = self.csr.sepc;
                    self.set_prv(spp);
                    self.irq_check = true;
                    return Ok(());
                }
                (0x08, 5, 0, 0) => {
                    // WFI: TW traps it outside M; U-mode WFI always traps.
                    if self.prv == PRV_U
                        || (self.prv == PRV_S && self.csr.mstatus & MSTATUS_TW != 0)
                    {
                        return Err(illegal(i));
                    }
                    if self.mip() & self.csr.mie == 0 {
                        self.wfi = true;
                    }
                    self.irq_check = true;
                }
                (0x09, _, _, 0) => {
                    if self.prv == PRV_U
                        || (self.prv == PRV_S && self.csr.mstatus & MSTATUS_TVM != 0)
                    {
                        return Err(illegal(i));
                    }
                    // rs2 (an ASID) only narrows the fence; flushing more is allowed.
                    if rs1(i) == 0 {
                        self.flush_tlb();
                    } else {
                        self.flush_tlb_page(self.x[rs1(i)]);
                    }
                }
                _ => return Err(illegal(i)),
            }
            self.pc = next;
            return Ok(());
        }
        let csr = i >> 20;
        let r1 = rs1(i);
        let operand = if f3 & 4 != 0 { r1 as u64 } else { self.x[r1] };
        let (op, write) = match f3 & 3 {
            1 => (CsrOp::Write, true),
            2 => (CsrOp::Set, r1 != 0),
            3 => (CsrOp::Clear, r1 != 0),
            _ => return Err(illegal(i)),
        };
        let old = self
            .csr_op(csr, op, operand, write)
            .map_err(|()| illegal(i))?;
        self.wx(rd(i), old);
        self.pc = next;
        Ok(())
    }
}

fn trap_vector(tvec: u64, interrupt: bool, code: u64) -> u64 {
    let base = tvec & !3;
    if interrupt && tvec & 1 != 0 {
        base.wrapping_add(4 * code)
    } else {
        base
    }
}
