//! The NS16550A UART as QEMU emulates it, for Linux's 8250 driver and OpenSBI's
//! `uart8250` driver (`reg-shift` 0, `reg-io-width` 1).
//!
//! Registers (TI PC16550D data sheet, table II; `DLAB` is `LCR` bit 7):
//!
//! | offset | read            | write           |
//! |--------|-----------------|-----------------|
//! | 0      | `RBR` / `DLL`   | `THR` / `DLL`   |
//! | 1      | `IER` / `DLM`   | `IER` / `DLM`   |
//! | 2      | `IIR`           | `FCR`           |
//! | 3      | `LCR`           | `LCR`           |
//! | 4      | `MCR`           | `MCR`           |
//! | 5      | `LSR`           | (ignored)       |
//! | 6      | `MSR`           | (ignored)       |
//! | 7      | `SCR`           | `SCR`           |
//!
//! Every access of any size reaches the byte register at its offset (the low byte of a
//! write); offsets 8 and above read 0.
//!
//! Transmit: the line is infinitely fast. A byte written to `THR` goes to an output
//! buffer the machine drains with [`Uart16550::take_output`]; `THR` and the transmitter
//! are empty again at once (`LSR.THRE` and `LSR.TEMT` always set).
//!
//! Receive: [`Uart16550::push_input`] fills a 16-byte FIFO (one holding byte while FIFOs
//! are disabled). Bytes that do not fit are refused, never dropped: the machine offers
//! them again later. There is no character-timeout timer: data below the trigger level
//! reports the character-timeout interrupt (`IIR` = `0xc`) at once, which Linux handles
//! like received-data-available.
//!
//! Interrupts (`IIR` priority, highest first): receiver line status (`IER.ELSI`, an error
//! bit in `LSR`), received data available (`IER.ERBFI`), `THR` empty (`IER.ETBEI`), modem
//! status (`IER.EDSSI`). The `THR`-empty interrupt is raised when `IER.ETBEI` goes from
//! 0 to 1 (`THR` is always empty) and after every `THR` write; it is cleared by reading
//! `IIR` while `IIR` reports it, or by writing `THR`. Linux's startup probe (toggle
//! `IER.ETBEI`, read `IIR` twice) therefore sees the interrupt re-asserted, as on a real
//! 16550A. `IIR` bits 7:6 read `11` while FIFOs are enabled, so Linux detects a 16550A.
//!
//! Loopback (`MCR.LOOP`): `THR` bytes go to the receive FIFO instead of the output, the
//! modem status inputs follow `MCR` (CTS = RTS, DSR = DTR, RI = OUT1, DCD = OUT2), and
//! external input is refused. Outside loopback the modem inputs read DCD, DSR and CTS
//! asserted, as QEMU's with no modem lines.

use std::collections::VecDeque;

use crate::state::{check_bits, check_max, Persist, StateError};
use crate::MmioDevice;

/// Offset of `RBR` (read), `THR` (write), `DLL` (with `DLAB`).
pub const RBR_THR_DLL: u64 = 0;
/// Offset of `IER`, `DLM` (with `DLAB`).
pub const IER_DLM: u64 = 1;
/// Offset of `IIR` (read), `FCR` (write).
pub const IIR_FCR: u64 = 2;
/// Offset of `LCR`.
pub const LCR: u64 = 3;
/// Offset of `MCR`.
pub const MCR: u64 = 4;
/// Offset of `LSR`.
pub const LSR: u64 = 5;
/// Offset of `MSR`.
pub const MSR: u64 = 6;
/// Offset of `SCR`.
pub const SCR: u64 = 7;

/// `IER`: received data available interrupt enable.
pub const IER_ERBFI: u8 = 0x01;
/// `IER`: transmitter holding register empty interrupt enable.
pub const IER_ETBEI: u8 = 0x02;
/// `IER`: receiver line status interrupt enable.
pub const IER_ELSI: u8 = 0x04;
/// `IER`: modem status interrupt enable.
pub const IER_EDSSI: u8 = 0x08;
const IER_VALID: u8 = 0x0f;

/// `IIR`: no interrupt pending.
pub const IIR_NO_INT: u8 = 0x01;
/// `IIR` interrupt id: modem status.
pub const IIR_MSI: u8 = 0x00;
/// `IIR` interrupt id: transmitter holding register empty.
pub const IIR_THRI: u8 = 0x02;
/// `IIR` interrupt id: received data available.
pub const IIR_RDI: u8 = 0x04;
/// `IIR` interrupt id: receiver line status.
pub const IIR_RLSI: u8 = 0x06;
/// `IIR` interrupt id: character timeout.
pub const IIR_CTI: u8 = 0x0c;
/// `IIR` bits 7:6: FIFOs enabled.
pub const IIR_FIFO_ENABLED: u8 = 0xc0;

/// `FCR`: FIFO enable.
pub const FCR_FE: u8 = 0x01;
/// `FCR`: clear the receive FIFO.
pub const FCR_RFR: u8 = 0x02;
/// `FCR`: receive trigger level, bits 7:6.
pub const FCR_TRIGGER: u8 = 0xc0;

/// `LCR`: divisor latch access bit.
pub const LCR_DLAB: u8 = 0x80;

/// `MCR`: data terminal ready.
pub const MCR_DTR: u8 = 0x01;
/// `MCR`: request to send.
pub const MCR_RTS: u8 = 0x02;
/// `MCR`: output 1.
pub const MCR_OUT1: u8 = 0x04;
/// `MCR`: output 2.
pub const MCR_OUT2: u8 = 0x08;
/// `MCR`: loopback.
pub const MCR_LOOP: u8 = 0x10;
const MCR_VALID: u8 = 0x1f;

/// `LSR`: data ready.
pub const LSR_DR: u8 = 0x01;
/// `LSR`: overrun error.
pub const LSR_OE: u8 = 0x02;
/// `LSR`: parity error.
pub const LSR_PE: u8 = 0x04;
/// `LSR`: framing error.
pub const LSR_FE: u8 = 0x08;
/// `LSR`: break interrupt.
pub const LSR_BI: u8 = 0x10;
/// `LSR`: transmitter holding register empty.
pub const LSR_THRE: u8 = 0x20;
/// `LSR`: transmitter empty.
pub const LSR_TEMT: u8 = 0x40;
const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

/// `MSR`: delta clear to send.
pub const MSR_DCTS: u8 = 0x01;
/// `MSR`: delta data set ready.
pub const MSR_DDSR: u8 = 0x02;
/// `MSR`: trailing edge ring indicator.
pub const MSR_TERI: u8 = 0x04;
/// `MSR`: delta data carrier detect.
pub const MSR_DDCD: u8 = 0x08;
/// `MSR`: clear to send.
pub const MSR_CTS: u8 = 0x10;
/// `MSR`: data set ready.
pub const MSR_DSR: u8 = 0x20;
/// `MSR`: ring indicator.
pub const MSR_RI: u8 = 0x40;
/// `MSR`: data carrier detect.
pub const MSR_DCD: u8 = 0x80;
const MSR_DELTAS: u8 = 0x0f;

/// Capacity of the receive FIFO while FIFOs are enabled.
pub const RX_FIFO_CAPACITY: usize = 16;
/// Divisor at reset: 9600 bit/s from a 1.8432 MHz clock (the data sheet leaves it
/// undefined; the value is never used, since the line has no speed).
const RESET_DIVISOR: u16 = 0x0c;

const DEVICE: &str = "UART";

/// A 16550A UART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uart16550 {
    rx_fifo: VecDeque<u8>,
    output: Vec<u8>,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    lsr_errors: u8,
    msr_deltas: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    thre_pending: bool,
}

/// The plain-data state of a [`Uart16550`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uart16550State {
    /// Received bytes not yet read, oldest first: at most [`RX_FIFO_CAPACITY`] with
    /// FIFOs enabled, 1 without.
    pub rx_fifo: Vec<u8>,
    /// Transmitted bytes the machine has not taken yet.
    pub output: Vec<u8>,
    /// `IER`, bits 3:0.
    pub ier: u8,
    /// `FCR` as last written: `FE` and the trigger level (bits 7:6), 0 while FIFOs are
    /// disabled.
    pub fcr: u8,
    /// `LCR`.
    pub lcr: u8,
    /// `MCR`, bits 4:0.
    pub mcr: u8,
    /// The error bits of `LSR` (`OE`, `PE`, `FE`, `BI`), cleared when `LSR` is read.
    pub lsr_errors: u8,
    /// The delta bits of `MSR` (3:0), cleared when `MSR` is read.
    pub msr_deltas: u8,
    /// `SCR`.
    pub scr: u8,
    /// `DLL`.
    pub dll: u8,
    /// `DLM`.
    pub dlm: u8,
    /// The `THR`-empty interrupt is pending (only while `IER.ETBEI` is set).
    pub thre_pending: bool,
}

/// The modem status inputs (`MSR` bits 7:4) seen with modem control `mcr`.
fn modem_status(mcr: u8) -> u8 {
    if mcr & MCR_LOOP == 0 {
        return MSR_DCD | MSR_DSR | MSR_CTS;
    }
    let mut status = 0;
    for (output, input) in [
        (MCR_RTS, MSR_CTS),
        (MCR_DTR, MSR_DSR),
        (MCR_OUT1, MSR_RI),
        (MCR_OUT2, MSR_DCD),
    ] {
        if mcr & output != 0 {
            status |= input;
        }
    }
    status
}

/// The receive FIFO capacity with FIFO control `fcr`.
fn rx_capacity(fcr: u8) -> usize {
    if fcr & FCR_FE != 0 {
        RX_FIFO_CAPACITY
    } else {
        1
    }
}

impl Uart16550 {
    /// Size of the UART's MMIO region on the `virt` board.
    pub const MMIO_SIZE: u64 = 0x100;

    /// A UART at reset: interrupts disabled, FIFOs disabled, nothing received.
    pub fn new() -> Uart16550 {
        let [dll, dlm] = RESET_DIVISOR.to_le_bytes();
        Uart16550 {
            rx_fifo: VecDeque::with_capacity(RX_FIFO_CAPACITY),
            output: Vec::new(),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr_deltas: 0,
            scr: 0,
            dll,
            dlm,
            thre_pending: false,
        }
    }

    /// Bytes the receive FIFO can take now (0 in loopback, where the line is cut).
    pub fn rx_space(&self) -> usize {
        if self.mcr & MCR_LOOP != 0 {
            return 0;
        }
        rx_capacity(self.fcr).saturating_sub(self.rx_fifo.len())
    }

    /// Appends received bytes to the receive FIFO, as many as [`Self::rx_space`]
    /// allows, and returns how many it took; the rest stay with the caller.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let accepted = self.rx_space().min(bytes.len());
        self.rx_fifo.extend(bytes.iter().take(accepted));
        accepted
    }

    /// Takes the bytes the guest transmitted since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Moves the bytes the guest transmitted since the last call to the end of `out`.
    pub fn drain_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.output);
    }

    /// The interrupt line: some enabled interrupt is pending (`IIR` bit 0 clear).
    pub fn irq(&self) -> bool {
        self.interrupt_id().is_some()
    }

    /// The device's complete state.
    pub fn state(&self) -> Uart16550State {
        Uart16550State {
            rx_fifo: self.rx_fifo.iter().copied().collect(),
            output: self.output.clone(),
            ier: self.ier,
            fcr: self.fcr,
            lcr: self.lcr,
            mcr: self.mcr,
            lsr_errors: self.lsr_errors,
            msr_deltas: self.msr_deltas,
            scr: self.scr,
            dll: self.dll,
            dlm: self.dlm,
            thre_pending: self.thre_pending,
        }
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_FE != 0
    }

    /// Receive FIFO trigger level (`FCR` bits 7:6: 1, 4, 8 or 14 bytes).
    fn trigger_level(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// The highest-priority pending interrupt's `IIR` id, if any.
    fn interrupt_id(&self) -> Option<u8> {
        if self.ier & IER_ELSI != 0 && self.lsr_errors != 0 {
            Some(IIR_RLSI)
        } else if self.ier & IER_ERBFI != 0 && !self.rx_fifo.is_empty() {
            if self.rx_fifo.len() >= self.trigger_level() {
                Some(IIR_RDI)
            } else {
                Some(IIR_CTI)
            }
        } else if self.ier & IER_ETBEI != 0 && self.thre_pending {
            Some(IIR_THRI)
        } else if self.ier & IER_EDSSI != 0 && self.msr_deltas != 0 {
            Some(IIR_MSI)
        } else {
            None
        }
    }

    fn iir(&self) -> u8 {
        let fifo = if self.fifo_enabled() {
            IIR_FIFO_ENABLED
        } else {
            0
        };
        self.interrupt_id().unwrap_or(IIR_NO_INT) | fifo
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx_fifo.is_empty() { 0 } else { LSR_DR };
        self.lsr_errors | dr | LSR_THRE | LSR_TEMT
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOP == 0 {
            self.output.push(byte);
        } else if self.rx_fifo.len() < rx_capacity(self.fcr) {
            self.rx_fifo.push_back(byte);
        } else {
            self.lsr_errors |= LSR_OE;
        }
        // The byte leaves THR at once, so THR is empty again.
        self.thre_pending = self.ier & IER_ETBEI != 0;
    }

    fn write_ier(&mut self, value: u8) {
        let ier = value & IER_VALID;
        if (ier ^ self.ier) & IER_ETBEI != 0 {
            // THR is always empty: enabling ETBEI raises the interrupt.
            self.thre_pending = ier & IER_ETBEI != 0;
        }
        self.ier = ier;
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_FE != 0;
        if enable != self.fifo_enabled() || (enable && value & FCR_RFR != 0) {
            self.rx_fifo.clear();
        }
        // The data sheet: other FCR bits are programmed only together with FE.
        self.fcr = if enable {
            value & (FCR_FE | FCR_TRIGGER)
        } else {
            0
        };
    }

    fn write_mcr(&mut self, value: u8) {
        let mcr = value & MCR_VALID;
        let before = modem_status(self.mcr);
        let after = modem_status(mcr);
        let changed = (before ^ after) & (MSR_DCD | MSR_DSR | MSR_CTS);
        let ring_ended = before & !after & MSR_RI;
        self.msr_deltas |= (changed | ring_ended) >> 4;
        self.mcr = mcr;
    }
}

impl Default for Uart16550 {
    fn default() -> Uart16550 {
        Uart16550::new()
    }
}

impl MmioDevice for Uart16550 {
    fn read(&mut self, offset: u64, _size: u8) -> u64 {
        let value = match offset {
            RBR_THR_DLL if self.dlab() => self.dll,
            RBR_THR_DLL => self.rx_fifo.pop_front().unwrap_or(0),
            IER_DLM if self.dlab() => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let iir = self.iir();
                if self.interrupt_id() == Some(IIR_THRI) {
                    self.thre_pending = false;
                }
                iir
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = modem_status(self.mcr) | self.msr_deltas;
                self.msr_deltas = 0;
                msr
            }
            SCR => self.scr,
            _ => 0,
        };
        u64::from(value)
    }

    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        let byte = value as u8;
        match offset {
            RBR_THR_DLL if self.dlab() => self.dll = byte,
            RBR_THR_DLL => self.transmit(byte),
            IER_DLM if self.dlab() => self.dlm = byte,
            IER_DLM => self.write_ier(byte),
            IIR_FCR => self.write_fcr(byte),
            LCR => self.lcr = byte,
            MCR => self.write_mcr(byte),
            SCR => self.scr = byte,
            _ => {}
        }
    }
}

impl TryFrom<Uart16550State> for Uart16550 {
    type Error = StateError;

    /// Checks that every register holds only implemented bits, that the receive FIFO
    /// fits its capacity, and that a pending `THR`-empty interrupt is enabled.
    fn try_from(state: Uart16550State) -> Result<Uart16550, StateError> {
        check_bits(DEVICE, || "ier".into(), state.ier.into(), IER_VALID.into())?;
        check_bits(
            DEVICE,
            || "fcr".into(),
            state.fcr.into(),
            (FCR_FE | FCR_TRIGGER).into(),
        )?;
        if state.fcr != 0 && state.fcr & FCR_FE == 0 {
            return Err(StateError::Inconsistent {
                device: DEVICE,
                field: "fcr".into(),
                value: state.fcr.into(),
                reason: "a trigger level is programmed only with FIFOs enabled",
            });
        }
        check_bits(DEVICE, || "mcr".into(), state.mcr.into(), MCR_VALID.into())?;
        check_bits(
            DEVICE,
            || "lsr_errors".into(),
            state.lsr_errors.into(),
            LSR_ERRORS.into(),
        )?;
        check_bits(
            DEVICE,
            || "msr_deltas".into(),
            state.msr_deltas.into(),
            MSR_DELTAS.into(),
        )?;
        check_max(
            DEVICE,
            || "rx_fifo length".into(),
            state.rx_fifo.len() as u64,
            rx_capacity(state.fcr) as u64,
        )?;
        if state.thre_pending && state.ier & IER_ETBEI == 0 {
            return Err(StateError::Inconsistent {
                device: DEVICE,
                field: "thre_pending".into(),
                value: 1,
                reason: "the THR-empty interrupt can be pending only with IER.ETBEI set",
            });
        }
        Ok(Uart16550 {
            rx_fifo: state.rx_fifo.into(),
            output: state.output,
            ier: state.ier,
            fcr: state.fcr,
            lcr: state.lcr,
            mcr: state.mcr,
            lsr_errors: state.lsr_errors,
            msr_deltas: state.msr_deltas,
            scr: state.scr,
            dll: state.dll,
            dlm: state.dlm,
            thre_pending: state.thre_pending,
        })
    }
}

impl Persist for Uart16550 {
    type State = Uart16550State;

    fn state(&self) -> Uart16550State {
        Uart16550::state(self)
    }

    fn restore(state: Uart16550State) -> Result<Uart16550, StateError> {
        Uart16550::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A UART set up as Linux's 8250 driver leaves a 16550A: FIFOs on, trigger 8.
    fn uart_with_fifo() -> Uart16550 {
        let mut uart = Uart16550::new();
        uart.write(IIR_FCR, 1, u64::from(FCR_FE | FCR_RFR | 0x80));
        uart
    }

    #[test]
    fn test_uart_reset_has_no_interrupt_and_empty_transmitter() {
        let mut uart = Uart16550::new();

        let (iir, lsr) = (uart.read(IIR_FCR, 1), uart.read(LSR, 1));

        assert_eq!(iir, u64::from(IIR_NO_INT));
        assert_eq!(lsr, u64::from(LSR_THRE | LSR_TEMT));
        assert!(!uart.irq());
    }

    #[test]
    fn test_uart_thr_write_goes_to_output() {
        let mut uart = Uart16550::new();

        uart.write(RBR_THR_DLL, 1, u64::from(b'h'));
        uart.write(RBR_THR_DLL, 1, u64::from(b'i'));

        assert_eq!(uart.take_output(), b"hi");
        assert_eq!(uart.take_output(), b"");
    }

    #[test]
    fn test_uart_drain_output_appends() {
        let mut uart = Uart16550::new();
        uart.write(RBR_THR_DLL, 1, u64::from(b'!'));
        let mut out = b"x".to_vec();

        uart.drain_output(&mut out);

        assert_eq!(out, b"x!");
    }

    #[test]
    fn test_uart_thre_interrupt_after_ier_write() {
        let mut uart = Uart16550::new();

        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));

        assert!(uart.irq());
        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_THRI));
    }

    #[test]
    fn test_uart_thre_interrupt_cleared_by_reading_iir() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));

        uart.read(IIR_FCR, 1);

        assert!(!uart.irq());
        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_NO_INT));
    }

    #[test]
    fn test_uart_thre_interrupt_raised_again_after_thr_write() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));
        uart.read(IIR_FCR, 1);

        uart.write(RBR_THR_DLL, 1, u64::from(b'a'));

        assert!(uart.irq());
    }

    #[test]
    fn test_uart_thre_interrupt_reasserted_when_ier_toggled() {
        let mut uart = uart_with_fifo();
        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));
        let first = uart.read(IIR_FCR, 1);
        uart.write(IER_DLM, 1, 0);

        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));

        assert_eq!(first, u64::from(IIR_FIFO_ENABLED | IIR_THRI));
        assert_eq!(
            uart.read(IIR_FCR, 1),
            u64::from(IIR_FIFO_ENABLED | IIR_THRI)
        );
    }

    #[test]
    fn test_uart_thre_interrupt_not_raised_by_rewriting_same_ier() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ETBEI));
        uart.read(IIR_FCR, 1);

        uart.write(IER_DLM, 1, u64::from(IER_ETBEI | IER_ERBFI));

        assert!(!uart.irq());
    }

    #[test]
    fn test_uart_rx_data_available_interrupt() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));

        let accepted = uart.push_input(b"k");

        assert_eq!(accepted, 1);
        assert!(uart.irq());
        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_RDI));
        assert_eq!(uart.read(LSR, 1) & u64::from(LSR_DR), u64::from(LSR_DR));
    }

    #[test]
    fn test_uart_rx_below_trigger_reports_character_timeout() {
        let mut uart = uart_with_fifo();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));

        uart.push_input(b"abc");

        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_FIFO_ENABLED | IIR_CTI));
    }

    #[test]
    fn test_uart_rx_at_trigger_reports_data_available() {
        let mut uart = uart_with_fifo();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));

        uart.push_input(b"01234567");

        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_FIFO_ENABLED | IIR_RDI));
    }

    #[test]
    fn test_uart_rx_data_has_priority_over_thre() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI | IER_ETBEI));
        uart.push_input(b"z");

        let iir = uart.read(IIR_FCR, 1);

        assert_eq!(iir, u64::from(IIR_RDI));
        assert!(uart.state().thre_pending);
    }

    #[test]
    fn test_uart_reading_rbr_pops_bytes_in_order_then_clears_interrupt() {
        let mut uart = uart_with_fifo();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));
        uart.push_input(b"ab");

        let bytes = [uart.read(RBR_THR_DLL, 1), uart.read(RBR_THR_DLL, 1)];

        assert_eq!(bytes, [u64::from(b'a'), u64::from(b'b')]);
        assert!(!uart.irq());
        assert_eq!(uart.read(LSR, 1) & u64::from(LSR_DR), 0);
    }

    #[test]
    fn test_uart_empty_rbr_reads_zero() {
        let mut uart = Uart16550::new();

        let value = uart.read(RBR_THR_DLL, 1);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_uart_fifo_accepts_up_to_capacity() {
        let mut uart = uart_with_fifo();

        let accepted = uart.push_input(&[b'x'; 20]);

        assert_eq!(accepted, RX_FIFO_CAPACITY);
        assert_eq!(uart.rx_space(), 0);
    }

    #[test]
    fn test_uart_without_fifo_holds_one_byte() {
        let mut uart = Uart16550::new();

        let accepted = uart.push_input(b"xyz");

        assert_eq!(accepted, 1);
        assert_eq!(uart.rx_space(), 0);
    }

    #[test]
    fn test_uart_fcr_receiver_reset_empties_fifo() {
        let mut uart = uart_with_fifo();
        uart.push_input(b"abc");

        uart.write(IIR_FCR, 1, u64::from(FCR_FE | FCR_RFR));

        assert_eq!(uart.rx_space(), RX_FIFO_CAPACITY);
    }

    #[test]
    fn test_uart_iir_reports_16550a_fifos() {
        let mut uart = Uart16550::new();

        uart.write(IIR_FCR, 1, u64::from(FCR_FE));

        assert_eq!(uart.read(IIR_FCR, 1) >> 6, 0b11);
    }

    #[test]
    fn test_uart_iir_without_fifos_has_bits_7_6_clear() {
        let mut uart = uart_with_fifo();

        uart.write(IIR_FCR, 1, 0);

        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_NO_INT));
    }

    #[test]
    fn test_uart_ier_keeps_low_four_bits() {
        let mut uart = Uart16550::new();

        uart.write(IER_DLM, 1, 0xff);

        assert_eq!(uart.read(IER_DLM, 1), 0x0f);
    }

    #[test]
    fn test_uart_divisor_latch_access() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));
        uart.write(LCR, 1, u64::from(LCR_DLAB | 0x03));

        uart.write(RBR_THR_DLL, 1, 0x01);
        uart.write(IER_DLM, 1, 0x02);

        assert_eq!(uart.read(RBR_THR_DLL, 1), 0x01);
        assert_eq!(uart.read(IER_DLM, 1), 0x02);
        assert_eq!(uart.take_output(), b"");
    }

    #[test]
    fn test_uart_clearing_dlab_restores_thr_and_ier() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ERBFI));
        uart.write(LCR, 1, u64::from(LCR_DLAB));
        uart.write(IER_DLM, 1, 0x02);

        uart.write(LCR, 1, 0x03);
        uart.write(RBR_THR_DLL, 1, u64::from(b'q'));

        assert_eq!(uart.read(IER_DLM, 1), u64::from(IER_ERBFI));
        assert_eq!(uart.take_output(), b"q");
    }

    #[test]
    fn test_uart_scratch_register_holds_a_byte() {
        let mut uart = Uart16550::new();

        uart.write(SCR, 1, 0xa5);

        assert_eq!(uart.read(SCR, 1), 0xa5);
    }

    #[test]
    fn test_uart_loopback_reflects_mcr_in_msr() {
        let mut uart = Uart16550::new();

        uart.write(MCR, 1, u64::from(MCR_LOOP | MCR_OUT2 | MCR_RTS));

        assert_eq!(uart.read(MSR, 1) & 0xf0, u64::from(MSR_DCD | MSR_CTS));
    }

    #[test]
    fn test_uart_loopback_sends_thr_to_receiver() {
        let mut uart = Uart16550::new();
        uart.write(MCR, 1, u64::from(MCR_LOOP));

        uart.write(RBR_THR_DLL, 1, 0x55);

        assert_eq!(uart.read(RBR_THR_DLL, 1), 0x55);
        assert_eq!(uart.take_output(), b"");
    }

    #[test]
    fn test_uart_loopback_overrun_sets_oe_and_line_status_interrupt() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_ELSI));
        uart.write(MCR, 1, u64::from(MCR_LOOP));
        uart.write(RBR_THR_DLL, 1, 1);

        uart.write(RBR_THR_DLL, 1, 2);

        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_RLSI));
        assert_eq!(uart.read(LSR, 1) & u64::from(LSR_OE), u64::from(LSR_OE));
        assert_eq!(uart.read(LSR, 1) & u64::from(LSR_OE), 0);
    }

    #[test]
    fn test_uart_loopback_refuses_external_input() {
        let mut uart = uart_with_fifo();
        uart.write(MCR, 1, u64::from(MCR_LOOP));

        let accepted = uart.push_input(b"abc");

        assert_eq!(accepted, 0);
    }

    #[test]
    fn test_uart_modem_status_interrupt_on_loopback_change() {
        let mut uart = Uart16550::new();
        uart.write(IER_DLM, 1, u64::from(IER_EDSSI));

        uart.write(MCR, 1, u64::from(MCR_LOOP | MCR_OUT2 | MCR_RTS));

        assert_eq!(uart.read(IIR_FCR, 1), u64::from(IIR_MSI));
        assert_eq!(uart.read(MSR, 1), u64::from(MSR_DCD | MSR_CTS | MSR_DDSR));
        assert!(!uart.irq());
    }

    #[test]
    fn test_uart_msr_outside_loopback_reads_carrier_and_ready() {
        let mut uart = Uart16550::new();

        let msr = uart.read(MSR, 1);

        assert_eq!(msr, u64::from(MSR_DCD | MSR_DSR | MSR_CTS));
    }

    #[test]
    fn test_uart_offsets_past_scr_read_zero() {
        let mut uart = Uart16550::new();
        uart.write(0x10, 1, 0xff);

        let value = uart.read(0x10, 1);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_uart_restore_rejects_overfull_fifo() {
        let mut state = Uart16550::new().state();
        state.rx_fifo = vec![0; 2];

        let error = Uart16550::try_from(state).expect_err("two bytes without FIFOs");

        assert_eq!(
            error,
            StateError::OutOfRange {
                device: "UART",
                field: "rx_fifo length".into(),
                value: 2,
                max: 1
            }
        );
    }

    #[test]
    fn test_uart_restore_rejects_thre_pending_while_disabled() {
        let mut state = Uart16550::new().state();
        state.thre_pending = true;

        let error = Uart16550::try_from(state).expect_err("pending but not enabled");

        assert!(matches!(error, StateError::Inconsistent { field, .. } if field == "thre_pending"));
    }

    #[test]
    fn test_uart_restore_rejects_reserved_ier_bits() {
        let mut state = Uart16550::new().state();
        state.ier = 0x40;

        let error = Uart16550::try_from(state).expect_err("IER bit 6 is not implemented");

        assert!(matches!(error, StateError::ReservedBits { field, .. } if field == "ier"));
    }

    persist_conformance_tests! {
        device: Uart16550,
        new: Uart16550::new(),
        drive: |uart: &mut Uart16550| {
            uart.write(LCR, 1, u64::from(LCR_DLAB | 0x03));
            uart.write(RBR_THR_DLL, 1, 0x02);
            uart.write(LCR, 1, 0x03);
            uart.write(IIR_FCR, 1, u64::from(FCR_FE | 0x40));
            uart.write(IER_DLM, 1, u64::from(IER_ERBFI | IER_ETBEI | IER_EDSSI));
            uart.write(MCR, 1, u64::from(MCR_OUT2 | MCR_RTS | MCR_DTR));
            uart.write(SCR, 1, 0x5a);
            uart.write(RBR_THR_DLL, 1, u64::from(b'o'));
            uart.push_input(b"in");
        },
        probe: |uart: &mut Uart16550| {
            let mut seen = vec![u64::from(uart.irq()), uart.read(IIR_FCR, 1)];
            seen.push(uart.read(RBR_THR_DLL, 1));
            seen.push(uart.read(IIR_FCR, 1));
            seen.push(uart.read(RBR_THR_DLL, 1));
            seen.push(uart.read(IIR_FCR, 1));
            seen.push(uart.read(IIR_FCR, 1));
            uart.write(RBR_THR_DLL, 1, u64::from(b'k'));
            seen.push(uart.push_input(b"more input than fits") as u64);
            seen.extend(uart.take_output().into_iter().map(u64::from));
            seen.push(uart.read(LSR, 1));
            seen.push(uart.read(MSR, 1));
            seen
        },
    }
}
