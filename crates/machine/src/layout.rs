//! The memory map of QEMU's `virt` board, which ftvm reproduces so that stock
//! firmware and kernels boot unmodified.

/// Reset vector: the boot ROM that jumps to the firmware.
pub const ROM_BASE: u64 = 0x1000;
/// Size of the boot ROM region.
pub const ROM_SIZE: u64 = 0x1000;
/// `sifive,test` power/reset device.
pub const TEST_BASE: u64 = 0x10_0000;
/// Size of the `sifive,test` region.
pub const TEST_SIZE: u64 = 0x1000;
/// Goldfish RTC.
pub const RTC_BASE: u64 = 0x10_1000;
/// Size of the goldfish RTC region.
pub const RTC_SIZE: u64 = 0x1000;
/// CLINT (machine timer and software interrupts).
pub const CLINT_BASE: u64 = 0x200_0000;
/// Size of the CLINT region.
pub const CLINT_SIZE: u64 = 0x1_0000;
/// PLIC.
pub const PLIC_BASE: u64 = 0xc00_0000;
/// Size of the PLIC region (one hart, two contexts fit well inside it).
pub const PLIC_SIZE: u64 = 0x60_0000;
/// Number of PLIC interrupt sources, as in QEMU's `virt` (`riscv,ndev`).
pub const PLIC_NDEV: u32 = 95;
/// ns16550a UART.
pub const UART_BASE: u64 = 0x1000_0000;
/// Size of the UART region.
pub const UART_SIZE: u64 = 0x100;
/// PLIC source of the UART.
pub const UART_IRQ: u32 = 10;
/// PLIC source of the RTC.
pub const RTC_IRQ: u32 = 11;
/// First virtio-mmio slot; slot `n` (0-based) is at `VIRTIO_BASE + n * VIRTIO_SIZE`
/// with PLIC source `n + 1`.
pub const VIRTIO_BASE: u64 = 0x1000_1000;
/// Size of one virtio-mmio slot.
pub const VIRTIO_SIZE: u64 = 0x1000;
/// Number of virtio-mmio slots.
pub const VIRTIO_SLOTS: u64 = 8;
/// Start of DRAM.
pub const DRAM_BASE: u64 = 0x8000_0000;
/// Where a kernel is loaded (the firmware's `next_addr`).
pub const KERNEL_BASE: u64 = 0x8020_0000;
/// The timebase: `mtime` ticks per second.
pub const TIMEBASE_HZ: u64 = 10_000_000;
/// Smallest supported RAM size.
pub const MIN_MEMORY: u64 = 16 << 20;
/// Largest supported RAM size: DRAM must end below the 4 GiB + 2 GiB mark used by
/// QEMU's 32-bit-friendly layout; we keep it at 16 GiB.
pub const MAX_MEMORY: u64 = 16 << 30;

/// Where QEMU puts the initrd: far enough above the kernel that the kernel does
/// not overwrite it, half of RAM for small machines, 128 MiB above it otherwise.
pub fn initrd_base(memory_size: u64) -> u64 {
    KERNEL_BASE + (memory_size / 2).min(128 << 20)
}

/// Where the device tree goes: 2 MiB-aligned, 2 MiB below the end of RAM (as QEMU).
pub fn fdt_base(memory_size: u64) -> u64 {
    let end = DRAM_BASE + memory_size.min(3 << 30);
    (end - (2 << 20)) & !((2 << 20) - 1)
}
