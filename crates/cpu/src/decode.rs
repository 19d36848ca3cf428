//! The predecoded instruction cache.
//!
//! Every RAM page the hart executes from gets a lazily filled array of
//! [`Slot`]s, one per 2-byte position: the operation and its pre-extracted
//! operands, with compressed instructions already expanded. A slot is decoded
//! the first time the hart executes it.
//!
//! A page whose slots may be in use is *live*; each live page records which
//! of its 64-byte lines hold decoded instructions. A write to such a line
//! (hart stores, page-table A/D updates, [`Memory::write_bytes`]) zeroes the
//! page's slots and makes it not live. The hart's write TLB entries for live
//! pages carry an extra tag bit, so its fast store path (one compare) misses
//! and the slow path checks the lines; writes to the data part of a page
//! that also holds code stay cheap. A page becomes live again the next time
//! the hart executes from it.
//!
//! [`Memory::write_bytes`]: crate::Memory::write_bytes

/// Slots per 4 KiB page.
pub(crate) const SLOTS_PER_PAGE: usize = 2048;
/// Slots per slot page: one per 2 bytes, then the `Op::PageEnd` sentinel.
const STRIDE: usize = SLOTS_PER_PAGE + 1;

/// The operation of a decoded slot. Anything without its own operation runs
/// through the general decoder ([`Op::Raw`]), so its behavior is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub(crate) enum Op {
    /// Not decoded yet.
    #[default]
    Undecoded = 0,
    /// Fetched and executed the general way (a 32-bit instruction crossing
    /// into the next page, or an illegal compressed one).
    Slow,
    /// `imm` holds the (expanded) 32-bit instruction for the general decoder.
    Raw,
    /// Like `Raw`, and ends the block: SYSTEM may change privilege,
    /// translation or pending interrupts.
    System,
    /// Retires with no effect (ALU ops writing x0, FENCE, FENCE.I).
    Nop,
    /// The sentinel after a page's last slot: the block ends there.
    PageEnd,
    /// JAL and JALR with rd = x0.
    J,
    Jr,
    Lui,
    Auipc,
    Jal,
    Jalr,
    Beq,
    Bne,
    Blt,
    Bge,
    Bltu,
    Bgeu,
    Lb,
    Lh,
    Lw,
    Ld,
    Lbu,
    Lhu,
    Lwu,
    Sb,
    Sh,
    Sw,
    Sd,
    Addi,
    Slti,
    Sltiu,
    Xori,
    Ori,
    Andi,
    Slli,
    Srli,
    Srai,
    Addiw,
    Slliw,
    Srliw,
    Sraiw,
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
    Addw,
    Subw,
    Sllw,
    Srlw,
    Sraw,
    Mulw,
    Divw,
    Divuw,
    Remw,
    Remuw,
    Fld,
    Fsd,
    /// OP-FP and the fused multiply-adds: `imm` holds the instruction for
    /// [`crate::fp::execute`].
    Fp,
    /// FADD.D: like `Fp`, tried first on the host ([`crate::fp::host_fadd_d`]).
    FaddD,
    /// FSUB.D, the same way.
    FsubD,
    /// FMUL.D, the same way.
    FmulD,
    /// FDIV.D, the same way.
    FdivD,
    /// FMADD.D, FMSUB.D, FNMSUB.D and FNMADD.D, the same way.
    FmaD,
    /// A run of integer register operations compiled to host code
    /// ([`crate::native`]): `half` is the run's length, [`Slot::run_count`]
    /// its instruction count and `imm` the code's offset in the arena. The
    /// run's later instructions keep their own slots.
    Native,
    // Fused pairs and triples (see [`fuse`]). The slot keeps the first
    // instruction's registers and immediate; `half` is the length of the whole
    // sequence and [`Slot::first_half`] that of the first instruction. The
    // later instructions keep their own slots, which the fused op reads.
    /// `slli rd, rs, 32; srli rd, rd, 32`: zero-extends a word.
    ZextW,
    /// `ZextW` then an `add` (RV64's unsigned-index idiom); `imm` is the add's
    /// slot offset from this one.
    ZextWAdd,
    /// `slli; add`: scaled-index address arithmetic.
    SlliAdd,
    /// An ALU operation, then a conditional branch (a loop's step and
    /// test); the branch's kind is the later slot's operation.
    AddiB,
    AddiwB,
    AddB,
    AddwB,
    SlliB,
}

/// One decoded instruction in 8 bytes; for [`Op::Raw`] and [`Op::System`],
/// `imm` is the (expanded) instruction. `half` is the length in 2-byte units,
/// in its own byte: the next slot of straight-line code is one load and one
/// add away, which is the interpreter's critical path. Each register number
/// has a byte of its own too, so that reading an operand is one byte load
/// and one indexed load (the register file has 256 entries, so a byte needs
/// no bounds check): `rs1` in `a`; `rd` in `d`, except for branches and
/// stores, which keep `rs2` there; register-register operations
/// ([`Op::is_rr`]), which have no immediate, keep `rs2` in `imm`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) op: Op,
    pub(crate) half: u8,
    /// rs1.
    a: u8,
    /// rd (or rs2 of a branch or store); a fused slot keeps in bit 5
    /// whether its first instruction is 4 bytes long.
    d: u8,
    pub(crate) imm: i32,
}

/// Entries in the hart's integer register file: x0..x31, then room so that
/// a slot's register byte indexes it without a bounds check.
pub(crate) const XREGS: usize = 256;

impl Op {
    /// Register-register operations: the slot keeps `rs2` in `imm`.
    pub(crate) fn is_rr(self) -> bool {
        (Op::Add as u8..=Op::Remuw as u8).contains(&(self as u8))
            || matches!(self, Op::AddB | Op::AddwB)
    }

    /// Branches and stores: the slot keeps `rs2` where others keep `rd`.
    fn rs2_in_d(self) -> bool {
        (Op::Beq as u8..=Op::Bgeu as u8).contains(&(self as u8))
            || (Op::Sb as u8..=Op::Sd as u8).contains(&(self as u8))
            || self == Op::Fsd
    }
}

impl Slot {
    pub(crate) const EMPTY: Slot = Slot {
        op: Op::Undecoded,
        half: 0,
        a: 0,
        d: 0,
        imm: 0,
    };

    fn new(op: Op, rd: u8, rs1: u8, rs2: u8, len: u8, imm: i32) -> Slot {
        let (rd, rs1, rs2) = (rd & 31, rs1 & 31, rs2 & 31);
        let (d, imm) = if op.rs2_in_d() {
            (rs2, imm)
        } else if op.is_rr() {
            (rd, i32::from(rs2))
        } else {
            (rd, imm)
        };
        Slot {
            op,
            half: len / 2,
            a: rs1,
            d,
            imm,
        }
    }

    /// rd of an operation that is not fused, a branch or a store.
    #[inline(always)]
    pub(crate) fn rd(self) -> usize {
        usize::from(self.d)
    }

    /// rd of any slot that has one, fused slots included.
    #[inline(always)]
    pub(crate) fn fused_rd(self) -> usize {
        usize::from(self.d & 31)
    }

    #[inline(always)]
    pub(crate) fn rs1(self) -> usize {
        usize::from(self.a)
    }

    /// rs2 of a register-register operation ([`Op::is_rr`]).
    #[inline(always)]
    pub(crate) fn rs2(self) -> usize {
        usize::from(self.imm as u8)
    }

    /// rs2 of a branch or a store.
    #[inline(always)]
    pub(crate) fn rs2_sb(self) -> usize {
        usize::from(self.d)
    }

    /// The instruction length in bytes (of the whole sequence for a fused
    /// slot).
    #[inline(always)]
    pub(crate) fn len(self) -> u64 {
        u64::from(self.half) * 2
    }

    /// For a fused slot: the length of its first instruction in 2-byte units,
    /// i.e. the slot offset of the second instruction.
    #[inline(always)]
    pub(crate) fn first_half(self) -> usize {
        1 + usize::from(self.d >> 5)
    }

    /// Whether this slot is a fused sequence.
    #[inline(always)]
    pub(crate) fn is_fused(self) -> bool {
        self.op as u8 >= Op::ZextW as u8
    }

    /// The length of this slot's own instruction in 2-byte units (the first
    /// one of a fused sequence).
    fn own_half(self) -> u8 {
        if self.is_fused() {
            self.first_half() as u8
        } else {
            self.half
        }
    }

    /// The operation of this slot's own instruction: a fused slot's first
    /// one (only those that are fused as a later instruction are named).
    fn plain_op(self) -> Op {
        match self.op {
            Op::AddB => Op::Add,
            _ if self.is_fused() => Op::Undecoded,
            op => op,
        }
    }

    /// This slot made into the fused `op` covering `half` 2-byte units.
    fn fused(self, op: Op, half: u8) -> Slot {
        Slot {
            op,
            half,
            a: self.a,
            d: (self.d & 31) | u8::from(self.half == 2) << 5,
            imm: self.imm,
        }
    }

    /// A compiled run of `count` instructions covering `half` 2-byte units,
    /// its code at `off` in the arena.
    pub(crate) fn native(half: u8, count: u8, off: u32) -> Slot {
        Slot {
            op: Op::Native,
            half,
            a: 0,
            d: count,
            imm: off as i32,
        }
    }

    /// The instruction count of an [`Op::Native`] slot.
    #[inline(always)]
    pub(crate) fn run_count(self) -> u64 {
        u64::from(self.d)
    }

    /// A slot executed the general way.
    pub(crate) fn slow() -> Slot {
        Slot::new(Op::Slow, 0, 0, 0, 0, 0)
    }
}

fn imm_i(i: u32) -> i32 {
    (i as i32) >> 20
}
fn imm_s(i: u32) -> i32 {
    (((i & 0xfe00_0000) as i32) >> 20) | ((i >> 7) & 31) as i32
}
fn imm_b(i: u32) -> i32 {
    (((i & 0x8000_0000) as i32) >> 19)
        | ((i & 0x80) << 4) as i32
        | ((i >> 20) & 0x7e0) as i32
        | ((i >> 7) & 0x1e) as i32
}
fn imm_j(i: u32) -> i32 {
    (((i & 0x8000_0000) as i32) >> 11)
        | (i & 0xf_f000) as i32
        | ((i >> 9) & 0x800) as i32
        | ((i >> 20) & 0x7fe) as i32
}

/// Decodes a 32-bit instruction (possibly expanded from a compressed one).
pub(crate) fn decode(i: u32, compressed: bool) -> Slot {
    let rd = ((i >> 7) & 31) as u8;
    let rs1 = ((i >> 15) & 31) as u8;
    let rs2 = ((i >> 20) & 31) as u8;
    let f3 = (i >> 12) & 7;
    let f7 = i >> 25;
    let raw = |op: Op| (op, i as i32);
    let (op, imm) = match i & 0x7f {
        0x37 => nop_if_x0((Op::Lui, (i & 0xffff_f000) as i32), rd),
        0x17 => nop_if_x0((Op::Auipc, (i & 0xffff_f000) as i32), rd),
        0x6f if rd == 0 => (Op::J, imm_j(i)),
        0x6f => (Op::Jal, imm_j(i)),
        0x67 if f3 == 0 && rd == 0 => (Op::Jr, imm_i(i)),
        0x67 if f3 == 0 => (Op::Jalr, imm_i(i)),
        // A load into x0 still accesses memory: the general path does it.
        0x03 if rd == 0 => raw(Op::Raw),
        0x63 => match f3 {
            0 => (Op::Beq, imm_b(i)),
            1 => (Op::Bne, imm_b(i)),
            4 => (Op::Blt, imm_b(i)),
            5 => (Op::Bge, imm_b(i)),
            6 => (Op::Bltu, imm_b(i)),
            7 => (Op::Bgeu, imm_b(i)),
            _ => raw(Op::Raw),
        },
        0x03 => {
            let op = match f3 {
                0 => Op::Lb,
                1 => Op::Lh,
                2 => Op::Lw,
                3 => Op::Ld,
                4 => Op::Lbu,
                5 => Op::Lhu,
                6 => Op::Lwu,
                _ => Op::Raw,
            };
            if op == Op::Raw {
                raw(Op::Raw)
            } else {
                (op, imm_i(i))
            }
        }
        0x23 => match f3 {
            0 => (Op::Sb, imm_s(i)),
            1 => (Op::Sh, imm_s(i)),
            2 => (Op::Sw, imm_s(i)),
            3 => (Op::Sd, imm_s(i)),
            _ => raw(Op::Raw),
        },
        0x13 => {
            let sh = ((i >> 20) & 63) as i32;
            let r = match (f3, i >> 26) {
                (0, _) => (Op::Addi, imm_i(i)),
                (1, 0) => (Op::Slli, sh),
                (2, _) => (Op::Slti, imm_i(i)),
                (3, _) => (Op::Sltiu, imm_i(i)),
                (4, _) => (Op::Xori, imm_i(i)),
                (5, 0) => (Op::Srli, sh),
                (5, 0x10) => (Op::Srai, sh),
                (6, _) => (Op::Ori, imm_i(i)),
                (7, _) => (Op::Andi, imm_i(i)),
                _ => raw(Op::Raw),
            };
            nop_if_x0(r, rd)
        }
        0x1b => {
            let sh = ((i >> 20) & 31) as i32;
            let r = match (f3, f7) {
                (0, _) => (Op::Addiw, imm_i(i)),
                (1, 0) => (Op::Slliw, sh),
                (5, 0) => (Op::Srliw, sh),
                (5, 0x20) => (Op::Sraiw, sh),
                _ => raw(Op::Raw),
            };
            nop_if_x0(r, rd)
        }
        0x33 => {
            let op = match (f7, f3) {
                (0, 0) => Op::Add,
                (0x20, 0) => Op::Sub,
                (0, 1) => Op::Sll,
                (0, 2) => Op::Slt,
                (0, 3) => Op::Sltu,
                (0, 4) => Op::Xor,
                (0, 5) => Op::Srl,
                (0x20, 5) => Op::Sra,
                (0, 6) => Op::Or,
                (0, 7) => Op::And,
                (1, 0) => Op::Mul,
                (1, 1) => Op::Mulh,
                (1, 2) => Op::Mulhsu,
                (1, 3) => Op::Mulhu,
                (1, 4) => Op::Div,
                (1, 5) => Op::Divu,
                (1, 6) => Op::Rem,
                (1, 7) => Op::Remu,
                _ => Op::Raw,
            };
            if op == Op::Raw {
                raw(Op::Raw)
            } else {
                nop_if_x0((op, 0), rd)
            }
        }
        0x3b => {
            let op = match (f7, f3) {
                (0, 0) => Op::Addw,
                (0x20, 0) => Op::Subw,
                (0, 1) => Op::Sllw,
                (0, 5) => Op::Srlw,
                (0x20, 5) => Op::Sraw,
                (1, 0) => Op::Mulw,
                (1, 4) => Op::Divw,
                (1, 5) => Op::Divuw,
                (1, 6) => Op::Remw,
                (1, 7) => Op::Remuw,
                _ => Op::Raw,
            };
            if op == Op::Raw {
                raw(Op::Raw)
            } else {
                nop_if_x0((op, 0), rd)
            }
        }
        0x0f if f3 <= 1 => (Op::Nop, 0),
        0x07 if f3 == 3 => (Op::Fld, imm_i(i)),
        0x27 if f3 == 3 => (Op::Fsd, imm_s(i)),
        0x73 => raw(Op::System),
        0x53 if f7 == 0x01 => raw(Op::FaddD),
        0x53 if f7 == 0x05 => raw(Op::FsubD),
        0x53 if f7 == 0x09 => raw(Op::FmulD),
        0x53 if f7 == 0x0d => raw(Op::FdivD),
        0x43 | 0x47 | 0x4b | 0x4f if f7 & 3 == 1 => raw(Op::FmaD),
        0x43 | 0x47 | 0x4b | 0x4f | 0x53 => raw(Op::Fp),
        _ => raw(Op::Raw),
    };
    Slot::new(op, rd, rs1, rs2, if compressed { 2 } else { 4 }, imm)
}

/// Macro-op fusion: the slot that executes `first` and the instruction after
/// it, `second`, in one dispatch, or `None` if the pair is not one of the
/// fused kinds. Only instructions that cannot trap are fused, so a fused slot
/// either retires all of its instructions or (when the instruction budget
/// ends inside it) runs its first one alone the general way.
pub(crate) fn fuse(first: Slot, second: Slot) -> Option<Slot> {
    let half = first.half + second.own_half();
    let op = match (first.op, second.plain_op()) {
        (Op::Slli, Op::Srli)
            if first.imm == 32
                && second.imm == 32
                && second.fused_rd() == first.fused_rd()
                && second.rs1() == first.fused_rd() =>
        {
            Op::ZextW
        }
        (Op::Slli, Op::Add) => Op::SlliAdd,
        (alu, Op::Beq | Op::Bne | Op::Blt | Op::Bge | Op::Bltu | Op::Bgeu) => match alu {
            Op::Addi => Op::AddiB,
            Op::Addiw => Op::AddiwB,
            Op::Add => Op::AddB,
            Op::Addw => Op::AddwB,
            Op::Slli => Op::SlliB,
            _ => return None,
        },
        _ => return None,
    };
    Some(first.fused(op, half))
}

/// Whether a conditional branch of operation `op` (`Beq`..`Bgeu`) with
/// operands `a` and `b` is taken, without a jump on the kind: fused slots
/// use it so that their few arms serve every branch kind.
#[inline(always)]
pub(crate) fn branch_taken(op: Op, a: u64, b: u64) -> bool {
    let kind = (op as u8).wrapping_sub(Op::Beq as u8);
    let eq = u8::from(a == b);
    let lt = u8::from((a as i64) < (b as i64));
    let ltu = u8::from(a < b);
    let results = eq | lt << 1 | ltu << 2;
    (results >> (kind >> 1)) & 1 != kind & 1
}

/// A `ZextW` slot extended by the `add` after it (`third`).
pub(crate) fn fuse_zext_add(zext: Slot, third: Slot) -> Option<Slot> {
    if zext.op != Op::ZextW || third.plain_op() != Op::Add {
        return None;
    }
    let mut s = zext;
    s.op = Op::ZextWAdd;
    s.imm = i32::from(zext.half);
    s.half = zext.half + third.own_half();
    Some(s)
}

/// Integer computations whose destination is x0 have no effect.
fn nop_if_x0(r: (Op, i32), rd: u8) -> (Op, i32) {
    if rd == 0 && r.0 != Op::Raw {
        (Op::Nop, 0)
    } else {
        r
    }
}

/// Decoded pages, indexed by RAM page number.
#[derive(Default)]
pub(crate) struct CodeCache {
    /// Per RAM page: 1 + index of its slot page in `slots`, or 0.
    map: Vec<u32>,
    /// Per RAM page: its slots may hold decoded instructions.
    live: Vec<bool>,
    /// Per RAM page: which 64-byte lines hold decoded instructions.
    lines: Vec<u64>,
    /// Slot pages, `STRIDE` slots each (the last is the sentinel). Never
    /// shrinks: a page that is
    /// written keeps its slot page, zeroed.
    pub(crate) slots: Vec<Slot>,
    /// Host code of the [`Op::Native`] slots.
    pub(crate) native: crate::native::Arena,
}

impl CodeCache {
    /// A cache for `pages` whole RAM pages.
    pub(crate) fn new(pages: usize) -> CodeCache {
        CodeCache {
            map: vec![0; pages],
            live: vec![false; pages],
            lines: vec![0; pages],
            slots: Vec::new(),
            native: crate::native::Arena::default(),
        }
    }

    /// Whether RAM page `page` may hold decoded instructions.
    #[inline(always)]
    pub(crate) fn is_live(&self, page: usize) -> bool {
        self.live.get(page).copied().unwrap_or(false)
    }

    /// Notes that the slot at page offset `po` of live page `page` (at
    /// slot index `idx`) now holds an instruction of `len` bytes.
    pub(crate) fn store_slot(&mut self, page: usize, idx: usize, po: usize, s: Slot) {
        if let Some(l) = self.lines.get_mut(page) {
            // Every line the instruction (or compiled run) covers.
            let last = (po + (s.len() as usize).max(1) - 1).min(0xfff);
            for line in po >> 6..=last >> 6 {
                *l |= 1 << line;
            }
        }
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = s;
        }
    }

    /// Whether a write of RAM offsets `off..off+n` (within one page) hits
    /// decoded instructions.
    #[inline(always)]
    pub(crate) fn hits(&self, off: usize, n: usize) -> bool {
        let page = off >> 12;
        if !self.is_live(page) {
            return false;
        }
        let lines = self.lines.get(page).copied().unwrap_or(0);
        let mask = 1u64 << ((off & 0xfff) >> 6) | 1u64 << (((off + n - 1) & 0xfff) >> 6);
        lines & mask != 0
    }

    /// Forgets the decoded instructions of RAM page `page`.
    pub(crate) fn invalidate(&mut self, page: usize) {
        if let Some(l) = self.live.get_mut(page) {
            *l = false;
        }
        let Some(lines) = self.lines.get_mut(page) else {
            return;
        };
        let mut bits = std::mem::take(lines);
        let Some(&m) = self.map.get(page) else {
            return;
        };
        if m == 0 {
            return;
        }
        let base = (m as usize - 1) * STRIDE;
        while bits != 0 {
            let line = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let start = base + line * 32;
            if let Some(s) = self.slots.get_mut(start..start + 32) {
                s.fill(Slot::EMPTY);
            }
        }
    }

    /// Stores `code` in the arena and returns its offset; when the arena is
    /// full, first forgets every compiled slot (they decode again when next
    /// executed). `None` if no code can be compiled on this host.
    pub(crate) fn add_native(&mut self, code: &[u8]) -> Option<u32> {
        if self.native.full() {
            for s in self.slots.iter_mut() {
                if s.op == Op::Native {
                    *s = Slot::EMPTY;
                }
            }
            self.native.reset();
        }
        self.native.add(code)
    }

    /// Forgets decoded instructions in RAM offsets `start..end`.
    pub(crate) fn invalidate_range(&mut self, start: usize, end: usize) {
        if start >= end {
            return;
        }
        for page in start >> 12..=(end - 1) >> 12 {
            if self.is_live(page) {
                self.invalidate(page);
            }
        }
    }

    /// Makes `page` live and returns the index of its first slot, and
    /// whether it just became live (write TLB entries to it must go).
    /// `None` if `page` is not a whole RAM page.
    #[inline(always)]
    pub(crate) fn enter(&mut self, page: usize) -> Option<(usize, bool)> {
        if let (Some(&m), Some(&true)) = (self.map.get(page), self.live.get(page)) {
            if m != 0 {
                return Some(((m as usize - 1) * STRIDE, false));
            }
        }
        self.enter_slow(page)
    }

    #[inline(never)]
    fn enter_slow(&mut self, page: usize) -> Option<(usize, bool)> {
        let m = *self.map.get(page)?;
        let m = if m == 0 {
            let n = self.slots.len() / STRIDE + 1;
            let n32 = u32::try_from(n).ok()?;
            self.slots
                .resize(self.slots.len() + SLOTS_PER_PAGE, Slot::EMPTY);
            self.slots.push(Slot::new(Op::PageEnd, 0, 0, 0, 0, 0));
            self.map[page] = n32;
            n
        } else {
            m as usize
        };
        let fresh = !self.live[page];
        self.live[page] = true;
        Some(((m - 1) * STRIDE, fresh))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_branch_taken_matches_each_branch_kind() {
        let values = [0u64, 1, 2, u64::MAX, 1 << 63, (1 << 63) - 1];
        for a in values {
            for b in values {
                let want = [
                    (Op::Beq, a == b),
                    (Op::Bne, a != b),
                    (Op::Blt, (a as i64) < (b as i64)),
                    (Op::Bge, (a as i64) >= (b as i64)),
                    (Op::Bltu, a < b),
                    (Op::Bgeu, a >= b),
                ];
                for (op, taken) in want {
                    assert_eq!(branch_taken(op, a, b), taken, "{op:?} {a:#x} {b:#x}");
                }
            }
        }
    }
}
