//! Control and status registers (Zicsr, privileged spec chapters 2 and 3).

use crate::hart::{Hart, PRV_M, PRV_S};

// mstatus fields (privileged spec §3.1.6).
pub(crate) const MSTATUS_SIE: u64 = 1 << 1;
pub(crate) const MSTATUS_MIE: u64 = 1 << 3;
pub(crate) const MSTATUS_SPIE: u64 = 1 << 5;
pub(crate) const MSTATUS_MPIE: u64 = 1 << 7;
pub(crate) const MSTATUS_SPP: u64 = 1 << 8;
pub(crate) const MSTATUS_MPP: u64 = 3 << 11;
pub(crate) const MSTATUS_FS: u64 = 3 << 13;
pub(crate) const MSTATUS_MPRV: u64 = 1 << 17;
pub(crate) const MSTATUS_SUM: u64 = 1 << 18;
pub(crate) const MSTATUS_MXR: u64 = 1 << 19;
pub(crate) const MSTATUS_TVM: u64 = 1 << 20;
pub(crate) const MSTATUS_TW: u64 = 1 << 21;
pub(crate) const MSTATUS_TSR: u64 = 1 << 22;
pub(crate) const MSTATUS_SD: u64 = 1 << 63;
/// UXL = SXL = 2 (64-bit), read-only.
pub(crate) const UXL_SXL_64: u64 = (2 << 32) | (2 << 34);
pub(crate) const MSTATUS_WRITABLE: u64 = MSTATUS_SIE
    | MSTATUS_MIE
    | MSTATUS_SPIE
    | MSTATUS_MPIE
    | MSTATUS_SPP
    | MSTATUS_MPP
    | MSTATUS_FS
    | MSTATUS_MPRV
    | MSTATUS_SUM
    | MSTATUS_MXR
    | MSTATUS_TVM
    | MSTATUS_TW
    | MSTATUS_TSR;
/// The bits of mstatus visible in sstatus.
const SSTATUS_READ: u64 = MSTATUS_SIE
    | MSTATUS_SPIE
    | MSTATUS_SPP
    | MSTATUS_FS
    | MSTATUS_SUM
    | MSTATUS_MXR
    | (3 << 32)
    | MSTATUS_SD;
const SSTATUS_WRITABLE: u64 =
    MSTATUS_SIE | MSTATUS_SPIE | MSTATUS_SPP | MSTATUS_FS | MSTATUS_SUM | MSTATUS_MXR;

// Interrupt bits in mip/mie.
pub(crate) const SSIP: u64 = 1 << 1;
pub(crate) const MSIP: u64 = 1 << 3;
pub(crate) const STIP: u64 = 1 << 5;
pub(crate) const MTIP: u64 = 1 << 7;
pub(crate) const SEIP: u64 = 1 << 9;
pub(crate) const MEIP: u64 = 1 << 11;
pub(crate) const MIE_WRITABLE: u64 = SSIP | MSIP | STIP | MTIP | SEIP | MEIP;
pub(crate) const MIP_WRITABLE: u64 = SSIP | STIP | SEIP;
pub(crate) const MIDELEG_WRITABLE: u64 = SSIP | STIP | SEIP;
/// Interrupt lines that devices drive.
pub(crate) const IRQ_LINES: u64 = MSIP | MTIP | SEIP | MEIP;
/// Every exception but ECALL from M-mode (11) can be delegated.
pub(crate) const MEDELEG_WRITABLE: u64 = 0xb3ff;

pub(crate) const MENVCFG_STCE: u64 = 1 << 63;

pub(crate) const SATP_MODE_SV39: u64 = 8;
pub(crate) const SATP_MODE_SV48: u64 = 9;
const SATP_ASID_PPN: u64 = (0xffff << 44) | ((1 << 44) - 1);

/// RV64 with I, M, A, F, D, C, S, U.
pub(crate) const MISA: u64 = (2 << 62)
    | (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 5)
    | (1 << 8)
    | (1 << 12)
    | (1 << 18)
    | (1 << 20);

const PMPADDR_MASK: u64 = (1 << 54) - 1;

/// The CSR instruction's operation on the old value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsrOp {
    Write,
    Set,
    Clear,
}

impl Hart {
    /// Executes CSRRW/CSRRS/CSRRC (and the immediate forms): returns the old
    /// value for rd, or `Err(())` for illegal instruction.
    pub(crate) fn csr_op(
        &mut self,
        csr: u32,
        op: CsrOp,
        operand: u64,
        write: bool,
    ) -> Result<u64, ()> {
        let min_prv = ((csr >> 8) & 3) as u8;
        if min_prv > self.prv {
            return Err(());
        }
        if write && (csr >> 10) & 3 == 3 {
            return Err(());
        }
        let old = self.csr_read(csr)?;
        if write {
            // mip/sip: read-modify-write acts on the software-writable bits
            // only, not on lines driven by devices (privileged spec §3.1.9).
            let base = match csr {
                0x344 | 0x144 => self.csr.mip,
                _ => old,
            };
            let new = match op {
                CsrOp::Write => operand,
                CsrOp::Set => base | operand,
                CsrOp::Clear => base & !operand,
            };
            self.csr_write(csr, new)?;
        }
        Ok(old)
    }

    fn fs_enabled(&self) -> Result<(), ()> {
        if self.csr.mstatus & MSTATUS_FS == 0 {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Access to cycle/time/instret/hpmcounterN from S or U (Zicntr, §3.1.11).
    fn counter_enabled(&self, bit: u32) -> Result<(), ()> {
        let ok = match self.prv {
            PRV_M => true,
            PRV_S => self.csr.mcounteren >> bit & 1 != 0,
            _ => (self.csr.mcounteren & self.csr.scounteren) >> bit & 1 != 0,
        };
        if ok {
            Ok(())
        } else {
            Err(())
        }
    }

    fn stimecmp_enabled(&self) -> Result<(), ()> {
        if self.prv == PRV_M
            || (self.csr.menvcfg & MENVCFG_STCE != 0 && self.csr.mcounteren & 2 != 0)
        {
            Ok(())
        } else {
            Err(())
        }
    }

    fn satp_enabled(&self) -> Result<(), ()> {
        if self.prv == PRV_S && self.csr.mstatus & MSTATUS_TVM != 0 {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Reads a CSR; privilege was checked by the caller.
    pub(crate) fn csr_read(&self, csr: u32) -> Result<u64, ()> {
        let c = &self.csr;
        Ok(match csr {
            0x001 => {
                self.fs_enabled()?;
                u64::from(self.fp.fflags)
            }
            0x002 => {
                self.fs_enabled()?;
                u64::from(self.fp.frm)
            }
            0x003 => {
                self.fs_enabled()?;
                u64::from(self.fp.fflags) | u64::from(self.fp.frm) << 5
            }
            0xc00 => {
                self.counter_enabled(0)?;
                self.icount.wrapping_add(c.mcycle_offset)
            }
            0xc01 => {
                self.counter_enabled(1)?;
                c.time
            }
            0xc02 => {
                self.counter_enabled(2)?;
                self.icount.wrapping_add(c.minstret_offset)
            }
            0xc03..=0xc1f => {
                self.counter_enabled(csr & 31)?;
                0
            }
            0x100 => c.mstatus & SSTATUS_READ,
            0x104 => c.mie & c.mideleg,
            0x105 => c.stvec,
            0x106 => c.scounteren,
            0x10a => 0,
            0x140 => c.sscratch,
            0x141 => c.sepc,
            0x142 => c.scause,
            0x143 => c.stval,
            0x144 => self.mip() & c.mideleg,
            0x14d => {
                self.stimecmp_enabled()?;
                c.stimecmp
            }
            0x180 => {
                self.satp_enabled()?;
                c.satp
            }
            // mvendorid, marchid, mimpid, mhartid, mconfigptr.
            0xf11..=0xf15 => 0,
            0x300 => c.mstatus,
            0x301 => MISA,
            0x302 => c.medeleg,
            0x303 => c.mideleg,
            0x304 => c.mie,
            0x305 => c.mtvec,
            0x306 => c.mcounteren,
            0x30a => c.menvcfg,
            0x320 => 0,
            0x323..=0x33f => 0,
            0x340 => c.mscratch,
            0x341 => c.mepc,
            0x342 => c.mcause,
            0x343 => c.mtval,
            0x344 => self.mip(),
            0x3a0 => c.pmpcfg[0],
            0x3a2 => c.pmpcfg[1],
            0x3b0..=0x3bf => c.pmpaddr[(csr - 0x3b0) as usize],
            0x7a0..=0x7a3 => 0,
            0xb00 => self.icount.wrapping_add(c.mcycle_offset),
            0xb02 => self.icount.wrapping_add(c.minstret_offset),
            0xb03..=0xb1f => 0,
            _ => return Err(()),
        })
    }

    /// Writes a CSR (WARL legalisation); privilege and read-only were checked
    /// by the caller.
    pub(crate) fn csr_write(&mut self, csr: u32, v: u64) -> Result<(), ()> {
        // Anything may have changed which interrupts are pending or enabled.
        self.irq_check = true;
        match csr {
            0x001 => {
                self.fs_enabled()?;
                self.fp.fflags = (v & 0x1f) as u8;
                self.set_fs_dirty();
            }
            0x002 => {
                self.fs_enabled()?;
                self.fp.frm = (v & 7) as u8;
                self.set_fs_dirty();
            }
            0x003 => {
                self.fs_enabled()?;
                self.fp.fflags = (v & 0x1f) as u8;
                self.fp.frm = ((v >> 5) & 7) as u8;
                self.set_fs_dirty();
            }
            0xc00..=0xc1f => return Err(()),
            0x100 => {
                let ms = (self.csr.mstatus & !SSTATUS_WRITABLE) | (v & SSTATUS_WRITABLE);
                self.write_mstatus(ms);
            }
            0x104 => {
                let m = self.csr.mideleg;
                self.csr.mie = (self.csr.mie & !m) | (v & m);
            }
            0x105 => self.csr.stvec = v & !2,
            0x106 => self.csr.scounteren = v & 0xffff_ffff,
            0x10a => {}
            0x140 => self.csr.sscratch = v,
            0x141 => self.csr.sepc = v & !1,
            0x142 => self.csr.scause = v,
            0x143 => self.csr.stval = v,
            0x144 => {
                let m = self.csr.mideleg & SSIP;
                self.csr.mip = (self.csr.mip & !m) | (v & m);
            }
            0x14d => {
                self.stimecmp_enabled()?;
                self.csr.stimecmp = v;
            }
            0x180 => {
                self.satp_enabled()?;
                // WARL: an unsupported MODE leaves satp unchanged.
                if matches!(v >> 60, 0 | SATP_MODE_SV39 | SATP_MODE_SV48) {
                    self.switch_satp(v & ((0xf << 60) | SATP_ASID_PPN));
                }
            }
            0x300 => self.write_mstatus(v),
            0x301 => {}
            0x302 => self.csr.medeleg = v & MEDELEG_WRITABLE,
            0x303 => self.csr.mideleg = v & MIDELEG_WRITABLE,
            0x304 => self.csr.mie = v & MIE_WRITABLE,
            0x305 => self.csr.mtvec = v & !2,
            0x306 => self.csr.mcounteren = v & 0xffff_ffff,
            0x30a => self.csr.menvcfg = v & MENVCFG_STCE,
            0x320 => {}
            0x323..=0x33f => {}
            0x340 => self.csr.mscratch = v,
            0x341 => self.csr.mepc = v & !1,
            0x342 => self.csr.mcause = v,
            0x343 => self.csr.mtval = v,
            0x344 => {
                let mut m = MIP_WRITABLE;
                if self.csr.menvcfg & MENVCFG_STCE != 0 {
                    m &= !STIP;
                }
                self.csr.mip = (self.csr.mip & !m) | (v & m);
            }
            0x3a0 => self.csr.pmpcfg[0] = v,
            0x3a2 => self.csr.pmpcfg[1] = v,
            0x3b0..=0x3bf => self.csr.pmpaddr[(csr - 0x3b0) as usize] = v & PMPADDR_MASK,
            0x7a0..=0x7a3 => {}
            // The written value is what the next instruction reads: this
            // instruction's own retirement is not counted (§3.1.10).
            0xb00 => self.csr.mcycle_offset = v.wrapping_sub(self.icount + 1),
            0xb02 => self.csr.minstret_offset = v.wrapping_sub(self.icount + 1),
            0xb03..=0xb1f => {}
            _ => return Err(()),
        }
        Ok(())
    }

    /// Writes mstatus, legalising WARL fields and updating derived state.
    pub(crate) fn write_mstatus(&mut self, v: u64) {
        let mut ms = (v & MSTATUS_WRITABLE) | UXL_SXL_64;
        if ms & MSTATUS_MPP == 2 << 11 {
            // MPP = 2 is reserved: legalise to U.
            ms &= !MSTATUS_MPP;
        }
        if ms & MSTATUS_FS == MSTATUS_FS {
            ms |= MSTATUS_SD;
        }
        self.csr.mstatus = ms;
        self.update_tlb_ctx();
        self.irq_check = true;
    }

    /// Marks the floating-point state dirty (mstatus.FS = 3, SD = 1).
    #[inline(always)]
    pub(crate) fn set_fs_dirty(&mut self) {
        self.csr.mstatus |= MSTATUS_FS | MSTATUS_SD;
    }

    /// The effective `mip`: software bits, device lines and the Sstc timer.
    #[inline]
    pub(crate) fn mip(&self) -> u64 {
        let mut v = self.csr.mip | self.irq_lines;
        if self.csr.menvcfg & MENVCFG_STCE != 0 {
            v &= !STIP;
            if self.csr.time >= self.csr.stimecmp {
                v |= STIP;
            }
        }
        v
    }

    /// The interrupt to take now, as an `mcause` code, if any (§3.1.9:
    /// M-level before S-level; MEI, MSI, MTI, SEI, SSI, STI).
    pub(crate) fn pending_interrupt(&self) -> Option<u64> {
        let pending = self.mip() & self.csr.mie;
        if pending == 0 {
            return None;
        }
        let ms = self.csr.mstatus;
        let m_on = self.prv < PRV_M || ms & MSTATUS_MIE != 0;
        let s_on = self.prv < PRV_S || (self.prv == PRV_S && ms & MSTATUS_SIE != 0);
        let m = if m_on { pending & !self.csr.mideleg } else { 0 };
        let s = if s_on { pending & self.csr.mideleg } else { 0 };
        for set in [m, s] {
            if set == 0 {
                continue;
            }
            for code in [11u64, 3, 7, 9, 1, 5] {
                if set >> code & 1 != 0 {
                    return Some(code);
                }
            }
        }
        None
    }

    /// The privilege used for loads and stores (mstatus.MPRV, §3.1.6.3).
    #[inline]
    pub(crate) fn data_prv(&self) -> u8 {
        if self.prv == PRV_M && self.csr.mstatus & MSTATUS_MPRV != 0 {
            ((self.csr.mstatus >> 11) & 3) as u8
        } else {
            self.prv
        }
    }
}
