//! The Goldfish real-time clock (`google,goldfish-rtc`) at `0x101000`, IRQ 11, on QEMU's
//! `virt` board.
//!
//! Registers, 32 bits each (Android emulator, `GOLDFISH-VIRTUAL-HARDWARE.TXT`,
//! "goldfish_rtc"); only aligned 4-byte accesses are decoded:
//!
//! | offset | register          | access                                             |
//! |--------|-------------------|----------------------------------------------------|
//! | `0x00` | `TIME_LOW`        | R: low 32 bits of the time, latches `TIME_HIGH`; W |
//! | `0x04` | `TIME_HIGH`       | R: the latched high 32 bits; W                     |
//! | `0x08` | `ALARM_LOW`       | R; W: sets the low half and arms the alarm         |
//! | `0x0c` | `ALARM_HIGH`      | R; W: sets the high half                           |
//! | `0x10` | `IRQ_ENABLED`     | R/W, bit 0                                         |
//! | `0x14` | `CLEAR_ALARM`     | W: disarms the alarm                               |
//! | `0x18` | `ALARM_STATUS`    | R: 1 while the alarm is armed                      |
//! | `0x1c` | `CLEAR_INTERRUPT` | W: clears the interrupt                            |
//!
//! Time is nanoseconds since the Unix epoch. The machine supplies it with
//! [`GoldfishRtc::set_now_ns`] (derived from logical time, never from the host) before
//! the guest touches the device; the guest sees that time plus an offset, which it moves
//! by writing `TIME_LOW` or `TIME_HIGH` (each write replaces that half of the current
//! time, as Linux's `set_time` does high half first). The alarm compares against the
//! guest's time: when it is reached, the alarm disarms and the interrupt becomes pending;
//! the line is high while the interrupt is pending and `IRQ_ENABLED` is set. An alarm set
//! in the past fires at once.

use crate::state::{Persist, StateError};
use crate::MmioDevice;

/// Offset of `TIME_LOW`.
pub const TIME_LOW: u64 = 0x00;
/// Offset of `TIME_HIGH`.
pub const TIME_HIGH: u64 = 0x04;
/// Offset of `ALARM_LOW`.
pub const ALARM_LOW: u64 = 0x08;
/// Offset of `ALARM_HIGH`.
pub const ALARM_HIGH: u64 = 0x0c;
/// Offset of `IRQ_ENABLED`.
pub const IRQ_ENABLED: u64 = 0x10;
/// Offset of `CLEAR_ALARM`.
pub const CLEAR_ALARM: u64 = 0x14;
/// Offset of `ALARM_STATUS`.
pub const ALARM_STATUS: u64 = 0x18;
/// Offset of `CLEAR_INTERRUPT`.
pub const CLEAR_INTERRUPT: u64 = 0x1c;

const DEVICE: &str = "goldfish RTC";

/// The Goldfish RTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldfishRtc {
    now_ns: u64,
    offset_ns: u64,
    time_high: u32,
    alarm_ns: u64,
    alarm_armed: bool,
    irq_pending: bool,
    irq_enabled: bool,
}

/// The plain-data state of a [`GoldfishRtc`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldfishRtcState {
    /// The machine's time, nanoseconds since the Unix epoch, as last set.
    pub now_ns: u64,
    /// What the guest added to the machine's time by setting the clock (wrapping).
    pub offset_ns: u64,
    /// `TIME_HIGH` as latched by the last `TIME_LOW` read.
    pub time_high: u32,
    /// `ALARM_HIGH`:`ALARM_LOW`, in the guest's time.
    pub alarm_ns: u64,
    /// The alarm is armed (`ALARM_STATUS`).
    pub alarm_armed: bool,
    /// The alarm fired and `CLEAR_INTERRUPT` was not written since.
    pub irq_pending: bool,
    /// `IRQ_ENABLED` bit 0.
    pub irq_enabled: bool,
}

/// `value` with its 32-bit half at bit `shift` replaced by `half`.
fn deposit(value: u64, shift: u32, half: u32) -> u64 {
    (value & !(0xffff_ffff << shift)) | u64::from(half) << shift
}

impl GoldfishRtc {
    /// Size of the device's MMIO region on the `virt` board.
    pub const MMIO_SIZE: u64 = 0x1000;

    /// An RTC at reset: time 0 until the machine sets it, no alarm, interrupt disabled.
    pub fn new() -> GoldfishRtc {
        GoldfishRtc::default()
    }

    /// Sets the machine's current time (nanoseconds since the Unix epoch) and fires the
    /// alarm if the guest's time reached it.
    pub fn set_now_ns(&mut self, ns: u64) {
        self.now_ns = ns;
        self.check_alarm();
    }

    /// The time the guest reads: the machine's time plus the guest's offset.
    pub fn time_ns(&self) -> u64 {
        self.now_ns.wrapping_add(self.offset_ns)
    }

    /// The machine time (the [`Self::set_now_ns`] scale) at which the armed alarm
    /// fires, so an idle machine knows when to wake; `None` with no alarm armed.
    pub fn next_alarm_ns(&self) -> Option<u64> {
        self.alarm_armed
            .then(|| self.alarm_ns.wrapping_sub(self.offset_ns))
    }

    /// The interrupt line: the alarm fired and `IRQ_ENABLED` is set.
    pub fn irq(&self) -> bool {
        self.irq_enabled && self.irq_pending
    }

    /// The device's complete state.
    pub fn state(&self) -> GoldfishRtcState {
        GoldfishRtcState {
            now_ns: self.now_ns,
            offset_ns: self.offset_ns,
            time_high: self.time_high,
            alarm_ns: self.alarm_ns,
            alarm_armed: self.alarm_armed,
            irq_pending: self.irq_pending,
            irq_enabled: self.irq_enabled,
        }
    }

    fn check_alarm(&mut self) {
        if self.alarm_armed && self.time_ns() >= self.alarm_ns {
            self.alarm_armed = false;
            self.irq_pending = true;
        }
    }

    fn set_time_half(&mut self, shift: u32, half: u32) {
        let current = self.time_ns();
        let new = deposit(current, shift, half);
        self.offset_ns = self.offset_ns.wrapping_add(new.wrapping_sub(current));
        self.check_alarm();
    }
}

impl MmioDevice for GoldfishRtc {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if size != 4 {
            return 0;
        }
        match offset {
            TIME_LOW => {
                let time = self.time_ns();
                self.time_high = (time >> 32) as u32;
                time & 0xffff_ffff
            }
            TIME_HIGH => u64::from(self.time_high),
            ALARM_LOW => self.alarm_ns & 0xffff_ffff,
            ALARM_HIGH => self.alarm_ns >> 32,
            IRQ_ENABLED => u64::from(self.irq_enabled),
            ALARM_STATUS => u64::from(self.alarm_armed),
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if size != 4 {
            return;
        }
        let value = value as u32;
        match offset {
            TIME_LOW => self.set_time_half(0, value),
            TIME_HIGH => self.set_time_half(32, value),
            ALARM_LOW => {
                self.alarm_ns = deposit(self.alarm_ns, 0, value);
                self.alarm_armed = true;
                self.check_alarm();
            }
            ALARM_HIGH => self.alarm_ns = deposit(self.alarm_ns, 32, value),
            IRQ_ENABLED => self.irq_enabled = value & 1 != 0,
            CLEAR_ALARM => self.alarm_armed = false,
            CLEAR_INTERRUPT => self.irq_pending = false,
            _ => {}
        }
    }
}

impl TryFrom<GoldfishRtcState> for GoldfishRtc {
    type Error = StateError;

    /// Checks that an armed alarm is still in the guest's future (one already reached
    /// would have fired).
    fn try_from(state: GoldfishRtcState) -> Result<GoldfishRtc, StateError> {
        let rtc = GoldfishRtc {
            now_ns: state.now_ns,
            offset_ns: state.offset_ns,
            time_high: state.time_high,
            alarm_ns: state.alarm_ns,
            alarm_armed: state.alarm_armed,
            irq_pending: state.irq_pending,
            irq_enabled: state.irq_enabled,
        };
        if rtc.alarm_armed && rtc.time_ns() >= rtc.alarm_ns {
            return Err(StateError::Inconsistent {
                device: DEVICE,
                field: "alarm_ns".into(),
                value: rtc.alarm_ns,
                reason: "an armed alarm must be after the guest's time (now_ns + offset_ns)",
            });
        }
        Ok(rtc)
    }
}

impl Persist for GoldfishRtc {
    type State = GoldfishRtcState;

    fn state(&self) -> GoldfishRtcState {
        GoldfishRtc::state(self)
    }

    fn restore(state: GoldfishRtcState) -> Result<GoldfishRtc, StateError> {
        GoldfishRtc::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 0x1234_5678_9abc_def0;

    /// An RTC at `NOW` with an alarm armed at `alarm` and its interrupt enabled.
    fn rtc_with_alarm(alarm: u64) -> GoldfishRtc {
        let mut rtc = GoldfishRtc::new();
        rtc.set_now_ns(NOW);
        rtc.write(IRQ_ENABLED, 4, 1);
        rtc.write(ALARM_HIGH, 4, alarm >> 32);
        rtc.write(ALARM_LOW, 4, alarm & 0xffff_ffff);
        rtc
    }

    #[test]
    fn test_rtc_time_low_read_latches_time_high() {
        let mut rtc = GoldfishRtc::new();
        rtc.set_now_ns(NOW);
        let low = rtc.read(TIME_LOW, 4);
        rtc.set_now_ns(NOW + (5 << 32));

        let high = rtc.read(TIME_HIGH, 4);

        assert_eq!(high << 32 | low, NOW);
    }

    #[test]
    fn test_rtc_time_high_without_latch_reads_zero() {
        let mut rtc = GoldfishRtc::new();
        rtc.set_now_ns(NOW);

        let high = rtc.read(TIME_HIGH, 4);

        assert_eq!(high, 0);
    }

    #[test]
    fn test_rtc_setting_time_keeps_an_offset() {
        let mut rtc = GoldfishRtc::new();
        rtc.set_now_ns(1_000);
        rtc.write(TIME_HIGH, 4, 2);
        rtc.write(TIME_LOW, 4, 500);

        rtc.set_now_ns(1_100);

        assert_eq!(rtc.time_ns(), (2 << 32) + 600);
        assert_eq!(rtc.read(TIME_LOW, 4), 600);
        assert_eq!(rtc.read(TIME_HIGH, 4), 2);
    }

    #[test]
    fn test_rtc_alarm_in_future_is_armed_without_interrupt() {
        let rtc = rtc_with_alarm(NOW + 1_000);

        let status = rtc.clone().read(ALARM_STATUS, 4);

        assert_eq!(status, 1);
        assert!(!rtc.irq());
        assert_eq!(rtc.next_alarm_ns(), Some(NOW + 1_000));
    }

    #[test]
    fn test_rtc_alarm_fires_when_time_reaches_it() {
        let mut rtc = rtc_with_alarm(NOW + 1_000);

        rtc.set_now_ns(NOW + 1_000);

        assert!(rtc.irq());
        assert_eq!(rtc.read(ALARM_STATUS, 4), 0);
        assert_eq!(rtc.next_alarm_ns(), None);
    }

    #[test]
    fn test_rtc_alarm_in_past_fires_at_once() {
        let rtc = rtc_with_alarm(NOW - 1);

        let line = rtc.irq();

        assert!(line);
    }

    #[test]
    fn test_rtc_alarm_with_interrupt_disabled_keeps_line_low() {
        let mut rtc = rtc_with_alarm(NOW + 10);
        rtc.write(IRQ_ENABLED, 4, 0);

        rtc.set_now_ns(NOW + 10);

        assert!(!rtc.irq());
        assert!(rtc.state().irq_pending);
    }

    #[test]
    fn test_rtc_clear_interrupt_lowers_line() {
        let mut rtc = rtc_with_alarm(NOW);

        rtc.write(CLEAR_INTERRUPT, 4, 1);

        assert!(!rtc.irq());
    }

    #[test]
    fn test_rtc_clear_alarm_disarms_it() {
        let mut rtc = rtc_with_alarm(NOW + 10);

        rtc.write(CLEAR_ALARM, 4, 1);
        rtc.set_now_ns(NOW + 20);

        assert!(!rtc.irq());
        assert_eq!(rtc.read(ALARM_STATUS, 4), 0);
    }

    #[test]
    fn test_rtc_alarm_follows_guest_time_offset() {
        let mut rtc = rtc_with_alarm(NOW + 1_000);
        rtc.write(TIME_LOW, 4, (NOW + 400) & 0xffff_ffff);

        rtc.set_now_ns(NOW + 600);

        assert!(rtc.irq());
    }

    #[test]
    fn test_rtc_next_alarm_is_in_machine_time() {
        let mut rtc = rtc_with_alarm(NOW + 1_000);

        rtc.write(TIME_LOW, 4, (NOW + 400) & 0xffff_ffff);

        assert_eq!(rtc.next_alarm_ns(), Some(NOW + 600));
    }

    #[test]
    fn test_rtc_alarm_registers_read_back() {
        let mut rtc = rtc_with_alarm(NOW + 1_000);

        let alarm = rtc.read(ALARM_HIGH, 4) << 32 | rtc.read(ALARM_LOW, 4);

        assert_eq!(alarm, NOW + 1_000);
    }

    #[test]
    fn test_rtc_narrow_access_reads_zero() {
        let mut rtc = GoldfishRtc::new();
        rtc.set_now_ns(NOW);

        let value = rtc.read(TIME_LOW, 1);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_rtc_restore_rejects_armed_alarm_in_the_past() {
        let state = GoldfishRtcState {
            now_ns: 100,
            alarm_ns: 50,
            alarm_armed: true,
            ..GoldfishRtcState::default()
        };

        let error = GoldfishRtc::try_from(state).expect_err("alarm already due");

        assert!(matches!(error, StateError::Inconsistent { field, .. } if field == "alarm_ns"));
    }

    persist_conformance_tests! {
        device: GoldfishRtc,
        new: GoldfishRtc::new(),
        drive: |rtc: &mut GoldfishRtc| {
            rtc.set_now_ns(NOW);
            rtc.write(TIME_HIGH, 4, 0x1234_5679);
            rtc.read(TIME_LOW, 4);
            rtc.write(IRQ_ENABLED, 4, 1);
            rtc.write(ALARM_HIGH, 4, 0x1234_567a);
            rtc.write(ALARM_LOW, 4, 0);
        },
        probe: |rtc: &mut GoldfishRtc| {
            let mut seen = vec![u64::from(rtc.irq()), rtc.read(ALARM_STATUS, 4)];
            seen.push(rtc.next_alarm_ns().unwrap_or(0));
            rtc.set_now_ns(NOW + (2 << 32));
            seen.push(u64::from(rtc.irq()));
            seen.push(rtc.read(TIME_LOW, 4));
            seen.push(rtc.read(TIME_HIGH, 4));
            rtc.write(CLEAR_INTERRUPT, 4, 1);
            seen.push(u64::from(rtc.irq()));
            seen
        },
    }
}
