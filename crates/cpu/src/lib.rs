//! The RV64GC hart of ftvm.
//!
//! The hart knows nothing of devices: it reaches RAM directly through [`Memory`]
//! and everything else through the [`Bus`] trait. It runs for an instruction
//! budget and owns the retired-instruction count (`icount`), which is the
//! machine's logical time. It never reads a host clock: the value of the `time`
//! CSR is set from outside with [`Hart::set_time`].
//!
//! Instruction fetch from addresses outside RAM (the boot ROM at 0x1000) goes
//! through [`Bus::read`] with size 2 or 4.

mod compressed;
mod csr;
mod decode;
pub mod fp;
mod hart;
pub mod memory;
mod mmu;
mod native;
mod state;

#[cfg(test)]
mod tests;

pub use hart::{Exit, Hart, Privilege};
pub use memory::{Memory, MemoryError};
pub use state::{CsrFile, HartState, StateError};

/// Everything the hart reaches that is not RAM: device registers (MMIO) and
/// the interrupt lines that devices drive.
///
/// Addresses are physical. `size` is 1, 2, 4 or 8 bytes.
pub trait Bus {
    /// Reads a device register. `None` means no device answers at `addr`:
    /// the hart raises a load access fault.
    fn read(&mut self, addr: u64, size: u8) -> Option<u64>;
    /// Writes a device register. `false` means no device answers at `addr`:
    /// the hart raises a store/AMO access fault.
    fn write(&mut self, addr: u64, size: u8, value: u64) -> bool;
    /// The interrupt lines driven by devices, as `mip` bits: MSIP (bit 3),
    /// MTIP (bit 7), SEIP (bit 9), MEIP (bit 11). The hart calls this after
    /// every MMIO access and at the start of [`Hart::run`], so a device
    /// register write that raises or lowers a line takes effect at once.
    fn irq_lines(&mut self) -> u64;
    /// Whether a device asked the machine to stop (power off, reset). The hart
    /// asks after every MMIO write and, if so, returns [`Exit::Stopped`] at
    /// the next instruction boundary.
    fn stop_requested(&mut self) -> bool;
}
