//! Device models of ftvm: CLINT, PLIC, UART, power, RTC, virtio. Pure models: no threads, no clocks.
//!
//! Every model is a deterministic state machine that runs on the vCPU thread. The
//! machine reaches its registers through [`MmioDevice`] with offsets relative to the
//! device's base, and feeds it everything from outside through plain method calls
//! (`set_mtime`, `push_input`, `set_now_ns`, `set_level`): a model never asks the host
//! anything. What the guest does wrong (a write to a read-only register, an access of an
//! odd size) never panics: bad writes are ignored and bad reads return 0.
//!
//! Every model can be saved as a plain-data `FooState` and restored from one through a
//! validating `TryFrom<FooState>` (see [`Persist`] and [`StateError`]).

mod access;
#[cfg(test)]
#[macro_use]
mod conformance;
pub mod clint;
pub mod goldfish_rtc;
pub mod plic;
pub mod sifive_test;
pub mod state;
pub mod uart;
pub mod virtio;

pub use clint::{Clint, ClintState};
pub use goldfish_rtc::{GoldfishRtc, GoldfishRtcState};
pub use plic::{Plic, PlicState};
pub use sifive_test::{PowerRequest, SifiveTest, SifiveTestState};
pub use state::{Persist, StateError};
pub use uart::{Uart16550, Uart16550State};
pub use virtio::{
    BackendCompletion, BackendRequest, Block, BlockOp, GuestMemory, GuestMemoryError, Net, Rng,
    VirtioDevice, VirtioDeviceState, VirtioMmio, VirtioMmioState,
};

/// A device the hart reaches through memory-mapped I/O.
pub trait MmioDevice {
    /// Reads `size` bytes (1, 2, 4 or 8) at `offset` from the device's base. Reads may
    /// have side effects (popping a FIFO, claiming an interrupt). Offsets or sizes the
    /// device does not decode read as 0.
    fn read(&mut self, offset: u64, size: u8) -> u64;

    /// Writes the low `size` bytes (1, 2, 4 or 8) of `value` at `offset` from the
    /// device's base. Writes the device does not decode are ignored.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}
