//! The board's devices and the physical address decoder the hart reaches them through.

use crate::layout::*;
use ftvm_cpu::Bus;
use ftvm_cpu::Memory;
use ftvm_devices::{
    Clint, GoldfishRtc, GuestMemory, GuestMemoryError, MmioDevice, Plic, SifiveTest, Uart16550,
    VirtioMmio,
};

/// `mip` bits of the interrupt lines devices drive.
const MIP_MSIP: u64 = 1 << 3;
const MIP_MTIP: u64 = 1 << 7;
const MIP_SEIP: u64 = 1 << 9;
const MIP_MEIP: u64 = 1 << 11;

/// All devices of the `virt` board, and the reset ROM.
pub struct Board {
    /// The reset ROM.
    pub rom: Vec<u8>,
    /// Timer and software interrupts.
    pub clint: Clint,
    /// Interrupt controller.
    pub plic: Plic,
    /// Serial console.
    pub uart: Uart16550,
    /// Power and reset.
    pub test: SifiveTest,
    /// Real-time clock.
    pub rtc: GoldfishRtc,
    /// virtio-mmio devices, slot 0 first (at [`VIRTIO_BASE`], PLIC source 1).
    pub virtio: Vec<VirtioMmio>,
}

/// Guest RAM as the virtio device models reach it.
pub struct GuestRam<'a>(pub &'a mut Memory);

impl GuestMemory for GuestRam<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.0.read_bytes(addr, buf).map_err(|_| GuestMemoryError {
            addr,
            len: buf.len() as u64,
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.0
            .write_bytes(addr, data)
            .map_err(|_| GuestMemoryError {
                addr,
                len: data.len() as u64,
            })
    }
}

impl Board {
    /// A board in its power-on state with the given reset ROM and virtio devices.
    pub fn new(rom: Vec<u8>, virtio: Vec<VirtioMmio>) -> Board {
        Board {
            rom,
            clint: Clint::new(),
            plic: Plic::new(),
            uart: Uart16550::new(),
            test: SifiveTest::new(),
            rtc: GoldfishRtc::new(),
            virtio,
        }
    }

    fn device(&mut self, addr: u64) -> Option<(&mut dyn MmioDevice, u64)> {
        let within = |base: u64, size: u64| addr.wrapping_sub(base) < size;
        if within(UART_BASE, UART_SIZE) {
            Some((&mut self.uart, addr - UART_BASE))
        } else if within(CLINT_BASE, CLINT_SIZE) {
            Some((&mut self.clint, addr - CLINT_BASE))
        } else if within(PLIC_BASE, PLIC_SIZE) {
            Some((&mut self.plic, addr - PLIC_BASE))
        } else if within(TEST_BASE, TEST_SIZE) {
            Some((&mut self.test, addr - TEST_BASE))
        } else if within(RTC_BASE, RTC_SIZE) {
            Some((&mut self.rtc, addr - RTC_BASE))
        } else if within(VIRTIO_BASE, VIRTIO_SIZE * self.virtio.len() as u64) {
            let off = addr - VIRTIO_BASE;
            let slot = (off / VIRTIO_SIZE) as usize;
            let dev = self.virtio.get_mut(slot)?;
            Some((dev, off % VIRTIO_SIZE))
        } else {
            None
        }
    }
}

impl Bus for Board {
    fn read(&mut self, addr: u64, size: u8) -> Option<u64> {
        if addr.wrapping_sub(ROM_BASE) < ROM_SIZE {
            let off = (addr - ROM_BASE) as usize;
            let mut bytes = [0u8; 8];
            for (i, b) in bytes.iter_mut().take(size as usize).enumerate() {
                *b = self.rom.get(off + i).copied().unwrap_or(0);
            }
            return Some(u64::from_le_bytes(bytes));
        }
        let (dev, off) = self.device(addr)?;
        Some(dev.read(off, size))
    }

    fn write(&mut self, addr: u64, size: u8, value: u64) -> bool {
        match self.device(addr) {
            Some((dev, off)) => {
                dev.write(off, size, value);
                true
            }
            None => false,
        }
    }

    fn irq_lines(&mut self) -> u64 {
        self.plic.set_level(UART_IRQ, self.uart.irq());
        self.plic.set_level(RTC_IRQ, self.rtc.irq());
        for (slot, dev) in self.virtio.iter().enumerate() {
            self.plic.set_level(slot as u32 + 1, dev.irq());
        }
        let mut lines = 0;
        if self.clint.msip() {
            lines |= MIP_MSIP;
        }
        if self.clint.mtip() {
            lines |= MIP_MTIP;
        }
        if self.plic.seip() {
            lines |= MIP_SEIP;
        }
        if self.plic.meip() {
            lines |= MIP_MEIP;
        }
        lines
    }

    fn stop_requested(&mut self) -> bool {
        self.test.has_request() || self.virtio.iter().any(VirtioMmio::notified)
    }
}
