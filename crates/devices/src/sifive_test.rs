//! The SiFive test finisher (`sifive,test0`, `syscon`-compatible) at `0x100000` on QEMU's
//! `virt` board: the guest powers the machine off or reboots it through it (Linux's
//! `syscon-poweroff` and `syscon-reboot`, OpenSBI's `sifive_test` reset driver).
//!
//! One 32-bit register, `FINISHER`, at offset 0; reads return 0. Its low 16 bits are a
//! command, its high 16 bits a code:
//!
//! | low 16 bits | request                                |
//! |-------------|----------------------------------------|
//! | `0x5555`    | power off with exit status 0 (pass)    |
//! | `0x3333`    | power off with exit status = code (fail) |
//! | `0x7777`    | reboot                                 |
//!
//! Other values are ignored. The request waits for the machine in
//! [`SifiveTest::take_request`]; if the guest makes another before the machine takes
//! the first, the first stands, since the machine stops the hart at the first.

use crate::access::size_mask;
use crate::state::{check_max, Persist, StateError};
use crate::MmioDevice;

/// Offset of the `FINISHER` register.
pub const FINISHER: u64 = 0;
/// `FINISHER` command: power off, exit status 0.
pub const FINISHER_PASS: u32 = 0x5555;
/// `FINISHER` command: power off, exit status in bits 31:16.
pub const FINISHER_FAIL: u32 = 0x3333;
/// `FINISHER` command: reboot.
pub const FINISHER_RESET: u32 = 0x7777;

const DEVICE: &str = "sifive_test";

/// What the guest asked of the power controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// Power off; `status` is the exit status (0..=0xffff).
    PowerOff {
        /// Exit status: 0 for `FINISHER_PASS`, the code for `FINISHER_FAIL`.
        status: u32,
    },
    /// Reset the machine to its power-on state.
    Reboot,
}

/// The power/reset finisher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SifiveTest {
    request: Option<PowerRequest>,
}

/// The plain-data state of a [`SifiveTest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SifiveTestState {
    /// The request the machine has not taken yet.
    pub request: Option<PowerRequest>,
}

impl SifiveTest {
    /// Size of the device's MMIO region on the `virt` board.
    pub const MMIO_SIZE: u64 = 0x1000;

    /// A finisher with no request.
    pub fn new() -> SifiveTest {
        SifiveTest { request: None }
    }

    /// Whether the guest made a request the machine has not taken.
    pub fn has_request(&self) -> bool {
        self.request.is_some()
    }

    /// Takes the guest's request, if it made one since the last call.
    pub fn take_request(&mut self) -> Option<PowerRequest> {
        self.request.take()
    }

    /// The device's complete state.
    pub fn state(&self) -> SifiveTestState {
        SifiveTestState {
            request: self.request,
        }
    }
}

impl MmioDevice for SifiveTest {
    fn read(&mut self, _offset: u64, _size: u8) -> u64 {
        0
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let Some(mask) = size_mask(size) else { return };
        if offset != FINISHER || self.request.is_some() {
            return;
        }
        let value = (value & mask) as u32;
        let request = match value & 0xffff {
            FINISHER_PASS => PowerRequest::PowerOff { status: 0 },
            FINISHER_FAIL => PowerRequest::PowerOff {
                status: value >> 16,
            },
            FINISHER_RESET => PowerRequest::Reboot,
            _ => return,
        };
        self.request = Some(request);
    }
}

impl TryFrom<SifiveTestState> for SifiveTest {
    type Error = StateError;

    /// Checks that a power-off status fits the register's 16-bit code.
    fn try_from(state: SifiveTestState) -> Result<SifiveTest, StateError> {
        if let Some(PowerRequest::PowerOff { status }) = state.request {
            check_max(DEVICE, || "request status".into(), status.into(), 0xffff)?;
        }
        Ok(SifiveTest {
            request: state.request,
        })
    }
}

impl Persist for SifiveTest {
    type State = SifiveTestState;

    fn state(&self) -> SifiveTestState {
        SifiveTest::state(self)
    }

    fn restore(state: SifiveTestState) -> Result<SifiveTest, StateError> {
        SifiveTest::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_finisher_pass_powers_off_with_status_zero() {
        let mut test = SifiveTest::new();

        test.write(FINISHER, 4, 0x5555);

        assert_eq!(
            test.take_request(),
            Some(PowerRequest::PowerOff { status: 0 })
        );
    }

    #[test]
    fn test_finisher_pass_ignores_code() {
        let mut test = SifiveTest::new();

        test.write(FINISHER, 4, 0x0001_5555);

        assert_eq!(
            test.take_request(),
            Some(PowerRequest::PowerOff { status: 0 })
        );
    }

    #[test]
    fn test_finisher_fail_powers_off_with_code() {
        let mut test = SifiveTest::new();

        test.write(FINISHER, 4, 0x3333 | (42 << 16));

        assert_eq!(
            test.take_request(),
            Some(PowerRequest::PowerOff { status: 42 })
        );
    }

    #[test]
    fn test_finisher_reset_reboots() {
        let mut test = SifiveTest::new();

        test.write(FINISHER, 4, 0x7777);

        assert_eq!(test.take_request(), Some(PowerRequest::Reboot));
    }

    #[test]
    fn test_finisher_other_values_are_ignored() {
        let mut test = SifiveTest::new();

        test.write(FINISHER, 4, 0x1234);

        assert!(!test.has_request());
        assert_eq!(test.take_request(), None);
    }

    #[test]
    fn test_finisher_write_at_other_offset_is_ignored() {
        let mut test = SifiveTest::new();

        test.write(4, 4, 0x5555);

        assert_eq!(test.take_request(), None);
    }

    #[test]
    fn test_finisher_take_request_clears_it() {
        let mut test = SifiveTest::new();
        test.write(FINISHER, 4, 0x7777);

        test.take_request();

        assert!(!test.has_request());
    }

    #[test]
    fn test_finisher_first_request_stands() {
        let mut test = SifiveTest::new();
        test.write(FINISHER, 4, 0x7777);

        test.write(FINISHER, 4, 0x5555);

        assert_eq!(test.take_request(), Some(PowerRequest::Reboot));
    }

    #[test]
    fn test_finisher_reads_zero() {
        let mut test = SifiveTest::new();
        test.write(FINISHER, 4, 0x1234);

        let value = test.read(FINISHER, 4);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_finisher_restore_rejects_status_wider_than_16_bits() {
        let state = SifiveTestState {
            request: Some(PowerRequest::PowerOff { status: 0x1_0000 }),
        };

        let error = SifiveTest::try_from(state).expect_err("status has 16 bits");

        assert_eq!(
            error,
            StateError::OutOfRange {
                device: "sifive_test",
                field: "request status".into(),
                value: 0x1_0000,
                max: 0xffff
            }
        );
    }

    persist_conformance_tests! {
        device: SifiveTest,
        new: SifiveTest::new(),
        drive: |test: &mut SifiveTest| {
            test.write(FINISHER, 4, 0x1234);
            test.write(FINISHER, 4, 0x3333 | (7 << 16));
        },
        probe: |test: &mut SifiveTest| {
            let first = test.take_request();
            test.write(FINISHER, 4, 0x7777);
            let second = test.take_request();
            vec![
                u64::from(first == Some(PowerRequest::PowerOff { status: 7 })),
                u64::from(second == Some(PowerRequest::Reboot)),
            ]
        },
    }
}
