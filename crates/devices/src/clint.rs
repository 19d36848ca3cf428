//! The SiFive CLINT (core-local interruptor) as QEMU's `virt` board has it, for one hart.
//!
//! Registers (SiFive FU540-C000 manual, chapter 9 "CLINT"; the RISC-V ACLINT spec,
//! MSWI and MTIMER devices, has the same layout):
//!
//! | offset   | register   | width | access                                  |
//! |----------|------------|-------|-----------------------------------------|
//! | `0x0000` | `MSIP`     | 32    | bit 0: machine software interrupt       |
//! | `0x4000` | `MTIMECMP` | 64    | read/write, 32-bit halves separately    |
//! | `0xbff8` | `MTIME`    | 64    | reads the machine's time; writes ignored |
//!
//! `MTIME` is the machine's logical time, set with [`Clint::set_mtime`] before the hart
//! runs. The guest cannot change it: writes to `MTIME` are ignored, because the machine,
//! not the device, derives time from the retired-instruction count (an offset here
//! would have to be mirrored in the hart's `time` CSR). Neither OpenSBI nor Linux writes
//! `MTIME` on a single-hart machine.

use crate::access::{read_part, within, write_part};
use crate::state::{Persist, StateError};
use crate::MmioDevice;

/// Offset of `MSIP` for hart 0.
pub const MSIP: u64 = 0x0000;
/// Offset of `MTIMECMP` for hart 0.
pub const MTIMECMP: u64 = 0x4000;
/// Offset of `MTIME`.
pub const MTIME: u64 = 0xbff8;

/// The CLINT of a one-hart `virt` board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clint {
    msip: bool,
    mtimecmp: u64,
    mtime: u64,
}

/// The plain-data state of a [`Clint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClintState {
    /// `MSIP` bit 0.
    pub msip: bool,
    /// `MTIMECMP`.
    pub mtimecmp: u64,
    /// `MTIME` as last set by the machine.
    pub mtime: u64,
}

impl Clint {
    /// Size of the CLINT's MMIO region.
    pub const MMIO_SIZE: u64 = 0x1_0000;

    /// A CLINT at reset: no software interrupt, `MTIMECMP` = `u64::MAX`, `MTIME` = 0.
    pub fn new() -> Clint {
        Clint {
            msip: false,
            mtimecmp: u64::MAX,
            mtime: 0,
        }
    }

    /// Sets `MTIME`, the machine's logical time in timebase ticks.
    pub fn set_mtime(&mut self, mtime: u64) {
        self.mtime = mtime;
    }

    /// `MTIME` as last set by the machine.
    pub fn mtime(&self) -> u64 {
        self.mtime
    }

    /// `MTIMECMP`: the `MTIME` at which the timer interrupt fires.
    pub fn mtimecmp(&self) -> u64 {
        self.mtimecmp
    }

    /// The machine software interrupt line (`mip.MSIP`).
    pub fn msip(&self) -> bool {
        self.msip
    }

    /// The machine timer interrupt line (`mip.MTIP`): `MTIME >= MTIMECMP`.
    pub fn mtip(&self) -> bool {
        self.mtime >= self.mtimecmp
    }

    /// The device's complete state.
    pub fn state(&self) -> ClintState {
        ClintState {
            msip: self.msip,
            mtimecmp: self.mtimecmp,
            mtime: self.mtime,
        }
    }
}

impl Default for Clint {
    fn default() -> Clint {
        Clint::new()
    }
}

impl MmioDevice for Clint {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if let Some(byte) = within(offset, size, MSIP, 4) {
            read_part(u64::from(self.msip), byte, size)
        } else if let Some(byte) = within(offset, size, MTIMECMP, 8) {
            read_part(self.mtimecmp, byte, size)
        } else if let Some(byte) = within(offset, size, MTIME, 8) {
            read_part(self.mtime, byte, size)
        } else {
            0
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if let Some(byte) = within(offset, size, MSIP, 4) {
            self.msip = write_part(u64::from(self.msip), byte, size, value) & 1 != 0;
        } else if let Some(byte) = within(offset, size, MTIMECMP, 8) {
            self.mtimecmp = write_part(self.mtimecmp, byte, size, value);
        }
    }
}

impl TryFrom<ClintState> for Clint {
    type Error = StateError;

    /// Every `ClintState` is valid: each field is a whole register.
    fn try_from(state: ClintState) -> Result<Clint, StateError> {
        Ok(Clint {
            msip: state.msip,
            mtimecmp: state.mtimecmp,
            mtime: state.mtime,
        })
    }
}

impl Persist for Clint {
    type State = ClintState;

    fn state(&self) -> ClintState {
        Clint::state(self)
    }

    fn restore(state: ClintState) -> Result<Clint, StateError> {
        Clint::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_clint_reset_mtimecmp_is_max_and_no_interrupt() {
        let clint = Clint::new();

        assert_eq!(clint.mtimecmp(), u64::MAX);
        assert!(!clint.mtip());
        assert!(!clint.msip());
    }

    #[test]
    fn test_clint_mtip_at_equality() {
        let mut clint = Clint::new();
        clint.write(MTIMECMP, 8, 1000);

        clint.set_mtime(1000);

        assert!(clint.mtip());
    }

    #[test]
    fn test_clint_mtip_clear_one_tick_before() {
        let mut clint = Clint::new();
        clint.write(MTIMECMP, 8, 1000);

        clint.set_mtime(999);

        assert!(!clint.mtip());
    }

    #[test]
    fn test_clint_mtimecmp_halves_are_written_separately() {
        let mut clint = Clint::new();

        clint.write(MTIMECMP, 4, 0x1234_5678);
        clint.write(MTIMECMP + 4, 4, 0x9abc_def0);

        assert_eq!(clint.mtimecmp(), 0x9abc_def0_1234_5678);
    }

    #[test]
    fn test_clint_high_half_write_keeps_low_half() {
        let mut clint = Clint::new();
        clint.write(MTIMECMP, 8, 0x1111_1111_2222_2222);

        clint.write(MTIMECMP + 4, 4, 0);

        assert_eq!(clint.mtimecmp(), 0x2222_2222);
    }

    #[test]
    fn test_clint_mtime_reads_the_value_the_machine_set() {
        let mut clint = Clint::new();
        clint.set_mtime(0x0000_0001_8000_0000);

        let low = clint.read(MTIME, 4);
        let high = clint.read(MTIME + 4, 4);
        let whole = clint.read(MTIME, 8);

        assert_eq!((low, high, whole), (0x8000_0000, 1, 0x0000_0001_8000_0000));
    }

    #[test]
    fn test_clint_mtime_write_is_ignored() {
        let mut clint = Clint::new();
        clint.set_mtime(42);

        clint.write(MTIME, 8, 7);

        assert_eq!(clint.read(MTIME, 8), 42);
    }

    #[test]
    fn test_clint_msip_write_raises_software_interrupt() {
        let mut clint = Clint::new();

        clint.write(MSIP, 4, 1);

        assert!(clint.msip());
        assert_eq!(clint.read(MSIP, 4), 1);
    }

    #[test]
    fn test_clint_msip_keeps_only_bit_zero() {
        let mut clint = Clint::new();

        clint.write(MSIP, 4, 0xffff_fffe);

        assert!(!clint.msip());
        assert_eq!(clint.read(MSIP, 4), 0);
    }

    #[test]
    fn test_clint_undecoded_offset_reads_zero() {
        let mut clint = Clint::new();
        clint.write(0x8000, 4, 0xdead);

        let value = clint.read(0x8000, 4);

        assert_eq!(value, 0);
    }

    persist_conformance_tests! {
        device: Clint,
        new: Clint::new(),
        drive: |clint: &mut Clint| {
            clint.set_mtime(500);
            clint.write(MSIP, 4, 1);
            clint.write(MTIMECMP, 8, 1000);
        },
        probe: |clint: &mut Clint| {
            let before = u64::from(clint.mtip());
            clint.set_mtime(1000);
            clint.write(MSIP, 4, 0);
            vec![before, u64::from(clint.mtip()), u64::from(clint.msip()), clint.read(MTIMECMP + 4, 4)]
        },
    }
}
