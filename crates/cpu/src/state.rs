//! The hart's architectural state as plain data, for snapshots and the
//! clone protocol. A [`HartState`] is untrusted until [`Hart::restore`]
//! has validated it.
//!
//! [`Hart::restore`]: crate::Hart::restore

use crate::csr::{MSTATUS_WRITABLE, SATP_MODE_SV39, SATP_MODE_SV48, UXL_SXL_64};

/// The control and status registers that hold state. CSRs that are
/// constants (`misa`, `mhartid`...) or views of others (`sstatus`, `sip`...)
/// are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrFile {
    /// `mstatus`, including the fixed UXL/SXL fields and the computed SD bit.
    pub mstatus: u64,
    /// `medeleg`.
    pub medeleg: u64,
    /// `mideleg`.
    pub mideleg: u64,
    /// `mie`.
    pub mie: u64,
    /// The software-writable bits of `mip` (SSIP, STIP, SEIP). Device lines
    /// (MSIP, MTIP, MEIP, external SEIP) come from [`Bus::irq_lines`](crate::Bus::irq_lines).
    pub mip: u64,
    /// `mtvec`.
    pub mtvec: u64,
    /// `mcounteren`.
    pub mcounteren: u64,
    /// `mscratch`.
    pub mscratch: u64,
    /// `mepc`.
    pub mepc: u64,
    /// `mcause`.
    pub mcause: u64,
    /// `mtval`.
    pub mtval: u64,
    /// `menvcfg` (only STCE, bit 63, is writable).
    pub menvcfg: u64,
    /// `stvec`.
    pub stvec: u64,
    /// `scounteren`.
    pub scounteren: u64,
    /// `sscratch`.
    pub sscratch: u64,
    /// `sepc`.
    pub sepc: u64,
    /// `scause`.
    pub scause: u64,
    /// `stval`.
    pub stval: u64,
    /// `satp`.
    pub satp: u64,
    /// `stimecmp` (Sstc).
    pub stimecmp: u64,
    /// The value of the `time` CSR, last set by [`Hart::set_time`](crate::Hart::set_time).
    pub time: u64,
    /// `pmpcfg0` and `pmpcfg2`.
    pub pmpcfg: [u64; 2],
    /// `pmpaddr0`..`pmpaddr15`.
    pub pmpaddr: [u64; 16],
    /// `mcycle` minus the retired-instruction count (non-zero after a write to `mcycle`).
    pub mcycle_offset: u64,
    /// `minstret` minus the retired-instruction count.
    pub minstret_offset: u64,
}

impl Default for CsrFile {
    fn default() -> Self {
        CsrFile {
            mstatus: UXL_SXL_64,
            medeleg: 0,
            mideleg: 0,
            mie: 0,
            mip: 0,
            mtvec: 0,
            mcounteren: 0,
            mscratch: 0,
            mepc: 0,
            mcause: 0,
            mtval: 0,
            menvcfg: 0,
            stvec: 0,
            scounteren: 0,
            sscratch: 0,
            sepc: 0,
            scause: 0,
            stval: 0,
            satp: 0,
            stimecmp: u64::MAX,
            time: 0,
            pmpcfg: [0; 2],
            pmpaddr: [0; 16],
            mcycle_offset: 0,
            minstret_offset: 0,
        }
    }
}

/// Everything architectural about the hart except RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HartState {
    /// The program counter.
    pub pc: u64,
    /// Integer registers; `x[0]` must be 0.
    pub x: [u64; 32],
    /// Floating-point registers as raw bits (singles NaN-boxed).
    pub f: [u64; 32],
    /// Accrued floating-point exception flags (5 bits).
    pub fflags: u8,
    /// Dynamic rounding mode (3 bits).
    pub frm: u8,
    /// Current privilege: 0 = U, 1 = S, 3 = M.
    pub privilege: u8,
    /// Retired instructions.
    pub icount: u64,
    /// Physical address reserved by the last LR, if any.
    pub reservation: Option<u64>,
    /// The hart is stopped in WFI waiting for an interrupt.
    pub wfi: bool,
    /// Control and status registers.
    pub csr: CsrFile,
}

/// A [`HartState`] that no hart could be in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Privilege level 2 is reserved, and above 3 does not exist.
    #[error("Privilege level {0} is not one of 0 (U), 1 (S), 3 (M)")]
    Privilege(u8),
    /// `x[0]` is hardwired to zero.
    #[error("Register x0 holds {0:#x}, not zero")]
    X0(u64),
    /// The program counter must be 2-byte aligned (C extension).
    #[error("Program counter {0:#x} is not 2-byte aligned")]
    Pc(u64),
    /// `fflags` has 5 bits, `frm` 3.
    #[error("Floating-point CSR fflags {fflags:#x} or frm {frm:#x} out of range")]
    Fcsr {
        /// The bad `fflags`.
        fflags: u8,
        /// The bad `frm`.
        frm: u8,
    },
    /// `mstatus` has bits set that this hart cannot hold.
    #[error("mstatus {0:#x} has an illegal value")]
    Mstatus(u64),
    /// `satp` names a translation mode this hart does not implement.
    #[error("satp {0:#x} names an unsupported translation mode")]
    Satp(u64),
    /// Some other CSR holds a value this hart cannot hold.
    #[error("CSR {name} holds {value:#x}, which this hart cannot hold")]
    Csr {
        /// The CSR's name.
        name: &'static str,
        /// The bad value.
        value: u64,
    },
}

impl HartState {
    /// Checks that the state is one the hart could be in.
    pub(crate) fn validate(&self) -> Result<(), StateError> {
        if !matches!(self.privilege, 0 | 1 | 3) {
            return Err(StateError::Privilege(self.privilege));
        }
        if self.x[0] != 0 {
            return Err(StateError::X0(self.x[0]));
        }
        if self.pc & 1 != 0 {
            return Err(StateError::Pc(self.pc));
        }
        if self.fflags > 0x1f || self.frm > 7 {
            return Err(StateError::Fcsr {
                fflags: self.fflags,
                frm: self.frm,
            });
        }
        let c = &self.csr;
        let ms = c.mstatus & !(1 << 63);
        let mpp = (ms >> 11) & 3;
        let fs_dirty = (ms >> 13) & 3 == 3;
        if ms & !(MSTATUS_WRITABLE | UXL_SXL_64) != 0
            || ms & UXL_SXL_64 != UXL_SXL_64
            || mpp == 2
            || (c.mstatus >> 63 != 0) != fs_dirty
        {
            return Err(StateError::Mstatus(c.mstatus));
        }
        let mode = c.satp >> 60;
        if !matches!(mode, 0 | SATP_MODE_SV39 | SATP_MODE_SV48) {
            return Err(StateError::Satp(c.satp));
        }
        let checks: [(&'static str, u64, u64); 9] = [
            ("medeleg", c.medeleg, crate::csr::MEDELEG_WRITABLE),
            ("mideleg", c.mideleg, crate::csr::MIDELEG_WRITABLE),
            ("mie", c.mie, crate::csr::MIE_WRITABLE),
            ("mip", c.mip, crate::csr::MIP_WRITABLE),
            ("menvcfg", c.menvcfg, crate::csr::MENVCFG_STCE),
            ("mcounteren", c.mcounteren, 0xffff_ffff),
            ("scounteren", c.scounteren, 0xffff_ffff),
            ("mepc", c.mepc, !1),
            ("sepc", c.sepc, !1),
        ];
        for (name, value, mask) in checks {
            if value & !mask != 0 {
                return Err(StateError::Csr { name, value });
            }
        }
        for (name, value) in [("mtvec", c.mtvec), ("stvec", c.stvec)] {
            if value & 2 != 0 {
                return Err(StateError::Csr { name, value });
            }
        }
        Ok(())
    }
}
