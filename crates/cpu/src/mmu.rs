//! Address translation (Sv39, Sv48: privileged spec §10.3–10.5), the TLB
//! and the load/store/fetch paths.
//!
//! Two direct-mapped TLBs, one for reads and one for writes, map a virtual
//! page to its offset in RAM. A write entry exists only when the PTE already
//! has W and D set, so the fast store path never needs to update a PTE. Tags
//! include the effective privilege, SUM and MXR, so changing mode needs no
//! flush; `satp` writes and `sfence.vma` without an address flush everything,
//! `sfence.vma` with one only its page (unless a superpage may cover it: the
//! kernel patches its text through a fixmap page, with an `sfence.vma` per
//! mapping, thousands of times while booting). MMIO pages are
//! never cached. A third TLB, tagged with the privilege mode, serves
//! instruction fetch. Write entries for pages holding decoded code carry an
//! extra tag bit, so stores to them miss the fast path and take the checked
//! one (see [`crate::decode`]).

use crate::csr::{MSTATUS_MXR, MSTATUS_SUM, SATP_MODE_SV48};
use crate::hart::{cause, Hart, Trap, PRV_M, PRV_U};
use crate::Bus;

pub(crate) const TLB_SIZE: usize = 1024;
pub(crate) const TLB_MASK: usize = TLB_SIZE - 1;
pub(crate) const INVALID_TAG: u64 = u64::MAX;
/// Set in the tag of a write TLB entry whose page holds decoded code.
const CODE_TAG: u64 = 1 << 62;
const PPN_MASK: u64 = (1 << 44) - 1;

const PTE_V: u64 = 1 << 0;
const PTE_R: u64 = 1 << 1;
const PTE_W: u64 = 1 << 2;
const PTE_X: u64 = 1 << 3;
const PTE_U: u64 = 1 << 4;
const PTE_A: u64 = 1 << 6;
const PTE_D: u64 = 1 << 7;

/// Address spaces whose translations are kept while another one is current.
const SAVED_TLBS: usize = 8;

/// The translations of an address space that is not current: the TLB as it
/// was when `satp` last changed away from `satp`.
pub(crate) struct SavedTlb {
    satp: u64,
    r: [TlbEntry; TLB_SIZE],
    w: [TlbEntry; TLB_SIZE],
    x: [TlbEntry; TLB_SIZE],
    sup: (u64, u64),
}

/// One TLB entry: a tagged virtual page and the RAM offset of its frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlbEntry {
    pub(crate) tag: u64,
    pub(crate) off: usize,
}

impl TlbEntry {
    pub(crate) const EMPTY: TlbEntry = TlbEntry {
        tag: INVALID_TAG,
        off: 0,
    };
}

/// The kind of memory access, which selects permissions and fault causes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Access {
    Fetch,
    Load,
    Store,
}

impl Access {
    /// (page fault, access fault) causes.
    fn faults(self) -> (u64, u64) {
        match self {
            Access::Fetch => (cause::FETCH_PAGE_FAULT, cause::FETCH_ACCESS),
            Access::Load => (cause::LOAD_PAGE_FAULT, cause::LOAD_ACCESS),
            Access::Store => (cause::STORE_PAGE_FAULT, cause::STORE_ACCESS),
        }
    }
}

impl Hart {
    /// The RAM pages (offset / 4096, increasing) that may have been written
    /// since the last call, by the hart or through [`Memory::write_bytes`]:
    /// a superset of the pages really written. Forgets the write
    /// translations, so later stores are seen again.
    pub fn take_dirty_pages(&mut self) -> Vec<usize> {
        self.tlb_w.fill(TlbEntry::EMPTY);
        self.saved_tlbs.clear();
        self.mem.take_dirty()
    }

    /// Forgets every cached translation, of every address space
    /// (`sfence.vma`, a restored state).
    pub(crate) fn flush_tlb(&mut self) {
        self.clear_tlb();
        self.saved_tlbs.clear();
    }

    /// Empties the current TLB.
    fn clear_tlb(&mut self) {
        self.tlb_r.fill(TlbEntry::EMPTY);
        self.tlb_w.fill(TlbEntry::EMPTY);
        self.tlb_x.fill(TlbEntry::EMPTY);
        self.tlb_super = (u64::MAX, 0);
    }

    /// Writes `satp`. A write needs no fence of its own (privileged spec
    /// §10.1.11: the OS fences after changing page tables, for one ASID or
    /// all), so the TLB of the address space being left is kept, and the
    /// one of the address space entered comes back if it was kept: a guest
    /// that switches between processes (Linux with ASIDs writes `satp` and
    /// no fence) does not walk its page tables again at every switch. Any
    /// `sfence.vma` forgets every kept TLB ([`Hart::flush_tlb`]), as do the
    /// other events that change what the current one may hold.
    pub(crate) fn switch_satp(&mut self, new: u64) {
        let old = self.csr.satp;
        self.csr.satp = new;
        if old == new {
            return;
        }
        if let Some(at) = self.saved_tlbs.iter().position(|s| s.satp == new) {
            // Swap the kept TLB in; the current one takes its place.
            let mut back = self.saved_tlbs.remove(at);
            std::mem::swap(&mut self.tlb_r, &mut back.r);
            std::mem::swap(&mut self.tlb_w, &mut back.w);
            std::mem::swap(&mut self.tlb_x, &mut back.x);
            std::mem::swap(&mut self.tlb_super, &mut back.sup);
            back.satp = old;
            self.saved_tlbs.insert(0, back);
            return;
        }
        let mut keep = if self.saved_tlbs.len() >= SAVED_TLBS {
            self.saved_tlbs.pop()
        } else {
            None
        }
        .unwrap_or_else(|| {
            Box::new(SavedTlb {
                satp: 0,
                r: [TlbEntry::EMPTY; TLB_SIZE],
                w: [TlbEntry::EMPTY; TLB_SIZE],
                x: [TlbEntry::EMPTY; TLB_SIZE],
                sup: (u64::MAX, 0),
            })
        });
        keep.satp = old;
        keep.r = self.tlb_r;
        keep.w = self.tlb_w;
        keep.x = self.tlb_x;
        keep.sup = self.tlb_super;
        self.clear_tlb();
        self.saved_tlbs.insert(0, keep);
    }

    /// Forgets the translations of virtual address `vaddr` (`sfence.vma`
    /// with rs1 ≠ x0, privileged spec §10.2.1): those of its 4 KiB page,
    /// which all sit at one index, and those of any superpage holding it.
    /// Entries are kept per 4 KiB page, so the pieces of a superpage are
    /// spread over the whole TLB: when one may hold `vaddr`, everything goes.
    pub(crate) fn flush_tlb_page(&mut self, vaddr: u64) {
        let vpn = vaddr >> 12;
        let (lo, hi) = self.tlb_super;
        if (lo..=hi).contains(&vpn) {
            self.flush_tlb();
            return;
        }
        let i = vpn as usize & TLB_MASK;
        self.tlb_r[i] = TlbEntry::EMPTY;
        self.tlb_w[i] = TlbEntry::EMPTY;
        self.tlb_x[i] = TlbEntry::EMPTY;
        // The fence reaches every address space: the kept TLBs lose the
        // page too, or go whole if a superpage of theirs may hold it.
        self.saved_tlbs.retain_mut(|s| {
            s.r[i] = TlbEntry::EMPTY;
            s.w[i] = TlbEntry::EMPTY;
            s.x[i] = TlbEntry::EMPTY;
            !(s.sup.0..=s.sup.1).contains(&vpn)
        });
    }

    /// The tag of the fetch TLB entry for virtual page `vpn`: fetch
    /// permissions depend only on the privilege mode.
    #[inline(always)]
    pub(crate) fn fetch_tag(&self, vpn: u64) -> u64 {
        vpn | u64::from(self.prv) << 56
    }

    /// Keeps decoded instructions coherent with a hart write of `n` bytes
    /// at RAM offset `off` (within one page): a write to decoded code
    /// forgets the page's decoded instructions and ends the current block.
    #[inline(always)]
    pub(crate) fn note_ram_write(&mut self, off: usize, n: usize) {
        if self.mem.code.hits(off, n) {
            self.mem.code.invalidate(off >> 12);
            self.block_exit = true;
        }
    }

    /// Marks the write TLB entries of RAM page `page`, which just became
    /// live code, so that every store to it takes the checked path.
    pub(crate) fn mark_code_writable(&mut self, page: usize) {
        // Kept TLBs are not marked: they go.
        self.saved_tlbs.clear();
        for e in self.tlb_w.iter_mut() {
            if e.tag != INVALID_TAG && e.off >> 12 == page {
                e.tag |= CODE_TAG;
            }
        }
    }

    /// Recomputes the context folded into TLB tags: effective data privilege,
    /// SUM and MXR. Virtual page numbers use at most 52 bits, so the context
    /// lives in bits 56..60.
    pub(crate) fn update_tlb_ctx(&mut self) {
        let ms = self.csr.mstatus;
        let ctx = u64::from(self.data_prv())
            | u64::from(ms & MSTATUS_SUM != 0) << 2
            | u64::from(ms & MSTATUS_MXR != 0) << 3;
        self.tlb_ctx = ctx << 56;
    }

    /// Translates `vaddr` for `acc`, walking the page table and updating A/D
    /// bits in hardware, and fills the TLB if the frame is RAM.
    pub(crate) fn translate(&mut self, vaddr: u64, acc: Access) -> Result<u64, Trap> {
        let prv = if acc == Access::Fetch {
            self.prv
        } else {
            self.data_prv()
        };
        let mode = self.csr.satp >> 60;
        if prv == PRV_M || mode == 0 {
            self.fill(vaddr, vaddr, acc, true);
            return Ok(vaddr);
        }
        let (pf, af) = acc.faults();
        let page_fault = Trap::new(pf, vaddr);
        let levels: u32 = if mode == SATP_MODE_SV48 { 4 } else { 3 };
        // Bits above the virtual address width must equal its top bit.
        let top = (vaddr as i64) >> (12 + 9 * levels - 1);
        if top != 0 && top != -1 {
            return Err(page_fault);
        }
        let mut base = (self.csr.satp & PPN_MASK) << 12;
        let mut level = levels;
        loop {
            if level == 0 {
                return Err(page_fault);
            }
            level -= 1;
            let pte_addr = base + ((vaddr >> (12 + 9 * level)) & 0x1ff) * 8;
            let Some(pte_off) = self.mem.offset(pte_addr, 8) else {
                return Err(Trap::new(af, vaddr));
            };
            let mut pte = self.mem.load(pte_off, 8);
            // Bits 63:54 are reserved (no Svpbmt/Svnapot): such PTEs fault.
            if pte & PTE_V == 0 || (pte & PTE_R == 0 && pte & PTE_W != 0) || pte >> 54 != 0 {
                return Err(page_fault);
            }
            let ppn = (pte >> 10) & PPN_MASK;
            if pte & (PTE_R | PTE_X) == 0 {
                base = ppn << 12;
                continue;
            }
            let ms = self.csr.mstatus;
            let user_page = pte & PTE_U != 0;
            let prv_ok = if prv == PRV_U {
                user_page
            } else {
                !user_page || (acc != Access::Fetch && ms & MSTATUS_SUM != 0)
            };
            let perm_ok = match acc {
                Access::Fetch => pte & PTE_X != 0,
                Access::Load => pte & PTE_R != 0 || (ms & MSTATUS_MXR != 0 && pte & PTE_X != 0),
                Access::Store => pte & PTE_W != 0,
            };
            let span = 1u64 << (9 * level);
            if !prv_ok || !perm_ok || ppn & (span - 1) != 0 {
                return Err(page_fault);
            }
            let new = pte | PTE_A | if acc == Access::Store { PTE_D } else { 0 };
            if new != pte {
                self.mem.store(pte_off, 8, new);
                self.mem.mark_dirty(pte_off);
                self.note_ram_write(pte_off, 8);
                pte = new;
            }
            let pa = ((ppn & !(span - 1)) << 12) | (vaddr & ((span << 12) - 1));
            if level > 0 {
                let first = (vaddr >> 12) & !(span - 1);
                let (lo, hi) = self.tlb_super;
                self.tlb_super = (lo.min(first), hi.max(first | (span - 1)));
            }
            let writable = pte & PTE_W != 0 && pte & PTE_D != 0;
            self.fill(vaddr, pa, acc, writable);
            return Ok(pa);
        }
    }

    /// Translates `vaddr` for a data access the way [`Hart::translate`]
    /// does, but looks in the TLB first: for LR/SC and AMOs, which use the
    /// physical address. A write entry covers stores (its PTE has W and D);
    /// one that holds decoded code is fine, as the physical store checks it.
    pub(crate) fn translate_cached(&mut self, vaddr: u64, acc: Access) -> Result<u64, Trap> {
        let vpn = vaddr >> 12;
        let i = vpn as usize & TLB_MASK;
        let e = match acc {
            Access::Load => self.tlb_r[i],
            Access::Store => self.tlb_w[i],
            Access::Fetch => return self.translate(vaddr, acc),
        };
        if e.tag & !CODE_TAG == vpn | self.tlb_ctx {
            return Ok(self.mem.base() + e.off as u64 + (vaddr & 0xfff));
        }
        self.translate(vaddr, acc)
    }

    fn fill(&mut self, vaddr: u64, paddr: u64, acc: Access, writable: bool) {
        let Some(off) = self.mem.offset(paddr & !0xfff, 0x1000) else {
            return;
        };
        let i = (vaddr >> 12) as usize & TLB_MASK;
        if acc == Access::Fetch {
            self.tlb_x[i] = TlbEntry {
                tag: self.fetch_tag(vaddr >> 12),
                off,
            };
            return;
        }
        let e = TlbEntry {
            tag: (vaddr >> 12) | self.tlb_ctx,
            off,
        };
        // A successful store walk implies the page is readable too.
        self.tlb_r[i] = e;
        if writable {
            // Stores through this entry take the fast path, which does not
            // track dirty pages: the page counts as written from now on
            // (until `take_dirty_pages` forgets the entry).
            self.mem.mark_dirty(off);
            let code = if self.mem.code.is_live(off >> 12) {
                CODE_TAG
            } else {
                0
            };
            self.tlb_w[i] = TlbEntry {
                tag: e.tag | code,
                off,
            };
        }
    }

    /// Fetches the instruction at `pc`: 32 bits, of which only the low 16
    /// are meaningful for a compressed instruction.
    #[inline(always)]
    pub(crate) fn fetch<B: Bus>(&mut self, bus: &mut B, pc: u64) -> Result<u32, Trap> {
        let po = (pc & 0xfff) as usize;
        let e = self.tlb_x[(pc >> 12) as usize & TLB_MASK];
        if e.tag == self.fetch_tag(pc >> 12) && po <= 0xffc {
            return Ok(self.mem.load(e.off + po, 4) as u32);
        }
        self.fetch_slow(bus, pc)
    }

    #[cold]
    #[inline(never)]
    fn fetch_slow<B: Bus>(&mut self, bus: &mut B, pc: u64) -> Result<u32, Trap> {
        let pa = self.translate(pc, Access::Fetch)?;
        let lo = self.phys_fetch(bus, pa, pc)?;
        if lo & 3 != 3 {
            return Ok(lo);
        }
        let pc2 = pc.wrapping_add(2);
        let pa2 = if pc2 & 0xfff == 0 {
            self.translate(pc2, Access::Fetch)?
        } else {
            pa + 2
        };
        let hi = self.phys_fetch(bus, pa2, pc2)?;
        Ok(lo | hi << 16)
    }

    fn phys_fetch<B: Bus>(&mut self, bus: &mut B, pa: u64, va: u64) -> Result<u32, Trap> {
        if let Some(off) = self.mem.offset(pa, 2) {
            return Ok(self.mem.load(off, 2) as u32);
        }
        match bus.read(pa, 2) {
            Some(v) => Ok(v as u32 & 0xffff),
            None => Err(Trap::new(cause::FETCH_ACCESS, va)),
        }
    }

    /// Loads `N` bytes at virtual `addr`, zero-extended.
    #[inline(always)]
    pub(crate) fn load<B: Bus, const N: usize>(
        &mut self,
        bus: &mut B,
        addr: u64,
    ) -> Result<u64, Trap> {
        let vpn = addr >> 12;
        let e = self.tlb_r[vpn as usize & TLB_MASK];
        if e.tag == vpn | self.tlb_ctx && addr & (N as u64 - 1) == 0 {
            return Ok(self.mem.load(e.off + (addr & 0xfff) as usize, N));
        }
        self.load_slow(bus, addr, N)
    }

    /// Stores the low `N` bytes of `v` at virtual `addr`.
    #[inline(always)]
    pub(crate) fn store<B: Bus, const N: usize>(
        &mut self,
        bus: &mut B,
        addr: u64,
        v: u64,
    ) -> Result<(), Trap> {
        let vpn = addr >> 12;
        let e = self.tlb_w[vpn as usize & TLB_MASK];
        if e.tag == vpn | self.tlb_ctx && addr & (N as u64 - 1) == 0 {
            self.mem.store(e.off + (addr & 0xfff) as usize, N, v);
            return Ok(());
        }
        self.store_code::<B, N>(bus, addr, v)
    }

    /// The store path for pages that hold decoded code (and any TLB miss).
    #[cold]
    #[inline(never)]
    fn store_code<B: Bus, const N: usize>(
        &mut self,
        bus: &mut B,
        addr: u64,
        v: u64,
    ) -> Result<(), Trap> {
        let vpn = addr >> 12;
        let i = vpn as usize & TLB_MASK;
        let e = self.tlb_w[i];
        if e.tag == vpn | self.tlb_ctx | CODE_TAG && addr & (N as u64 - 1) == 0 {
            if !self.mem.code.is_live(e.off >> 12) {
                self.tlb_w[i].tag &= !CODE_TAG;
            }
            let off = e.off + (addr & 0xfff) as usize;
            self.mem.store(off, N, v);
            self.note_ram_write(off, N);
            return Ok(());
        }
        self.store_slow(bus, addr, N, v)
    }

    /// Translates both pages of a misaligned access before any byte moves,
    /// so that a fault leaves memory untouched. Returns the physical address
    /// of `addr` and of the start of the second page (if crossed).
    fn translate_span(&mut self, addr: u64, n: usize, acc: Access) -> Result<(u64, u64), Trap> {
        let pa0 = self.translate(addr, acc)?;
        let last = addr.wrapping_add(n as u64 - 1);
        let pa1 = if last >> 12 != addr >> 12 {
            self.translate(last & !0xfff, acc)?
        } else {
            0
        };
        Ok((pa0, pa1))
    }

    #[cold]
    #[inline(never)]
    fn load_slow<B: Bus>(&mut self, bus: &mut B, addr: u64, n: usize) -> Result<u64, Trap> {
        if addr & (n as u64 - 1) == 0 {
            let pa = self.translate(addr, Access::Load)?;
            return self.phys_load(bus, pa, n, addr);
        }
        let (pa0, pa1) = self.translate_span(addr, n, Access::Load)?;
        let mut v = 0;
        for i in 0..n {
            let va = addr.wrapping_add(i as u64);
            let pa = if va >> 12 == addr >> 12 {
                pa0 + i as u64
            } else {
                pa1 + (va & 0xfff)
            };
            v |= self.phys_load(bus, pa, 1, va)? << (8 * i);
        }
        Ok(v)
    }

    #[cold]
    #[inline(never)]
    fn store_slow<B: Bus>(&mut self, bus: &mut B, addr: u64, n: usize, v: u64) -> Result<(), Trap> {
        if addr & (n as u64 - 1) == 0 {
            let pa = self.translate(addr, Access::Store)?;
            return self.phys_store(bus, pa, n, v, addr);
        }
        let (pa0, pa1) = self.translate_span(addr, n, Access::Store)?;
        for i in 0..n {
            let va = addr.wrapping_add(i as u64);
            let pa = if va >> 12 == addr >> 12 {
                pa0 + i as u64
            } else {
                pa1 + (va & 0xfff)
            };
            self.phys_store(bus, pa, 1, v >> (8 * i), va)?;
        }
        Ok(())
    }

    /// Reads physical memory: RAM directly, anything else through the bus.
    pub(crate) fn phys_load<B: Bus>(
        &mut self,
        bus: &mut B,
        pa: u64,
        n: usize,
        va: u64,
    ) -> Result<u64, Trap> {
        if let Some(off) = self.mem.offset(pa, n as u64) {
            return Ok(self.mem.load(off, n));
        }
        let v = bus.read(pa, n as u8);
        self.after_mmio(bus, false);
        match v {
            Some(v) => Ok(v & mask(n)),
            None => Err(Trap::new(cause::LOAD_ACCESS, va)),
        }
    }

    /// Writes physical memory: RAM directly, anything else through the bus.
    pub(crate) fn phys_store<B: Bus>(
        &mut self,
        bus: &mut B,
        pa: u64,
        n: usize,
        v: u64,
        va: u64,
    ) -> Result<(), Trap> {
        if let Some(off) = self.mem.offset(pa, n as u64) {
            self.mem.store(off, n, v);
            self.mem.mark_dirty(off);
            self.note_ram_write(off, n);
            return Ok(());
        }
        let ok = bus.write(pa, n as u8, v & mask(n));
        self.after_mmio(bus, true);
        if ok {
            Ok(())
        } else {
            Err(Trap::new(cause::STORE_ACCESS, va))
        }
    }

    /// A device access may have changed interrupt lines or asked to stop.
    fn after_mmio<B: Bus>(&mut self, bus: &mut B, write: bool) {
        self.irq_lines = bus.irq_lines() & crate::csr::IRQ_LINES;
        self.irq_check = true;
        self.block_exit = true;
        if write && bus.stop_requested() {
            self.stop = true;
        }
    }
}

#[inline(always)]
fn mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}
