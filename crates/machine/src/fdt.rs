//! The device tree, generated at boot as QEMU's `virt` board does, listing
//! exactly the devices and ISA extensions the machine implements.

use crate::layout::*;
use vm_fdt::{Error as FdtError, FdtWriter};

/// The ISA extensions the hart implements, as the device tree names them.
pub const ISA_EXTENSIONS: &[&str] = &[
    "i", "m", "a", "f", "d", "c", "zicntr", "zicsr", "zifencei", "sstc",
];

/// The legacy `riscv,isa` string (for firmware that does not read
/// `riscv,isa-extensions`).
pub const ISA_STRING: &str = "rv64imafdc_zicntr_zicsr_zifencei_sstc";

const PHANDLE_CPU0_INTC: u32 = 1;
const PHANDLE_PLIC: u32 = 2;
const PHANDLE_TEST: u32 = 3;
const PHANDLE_CPU0: u32 = 4;

/// Interrupt numbers of the hart's local interrupt controller (the `mip` bits).
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// What the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtConfig {
    /// RAM size in bytes.
    pub memory_size: u64,
    /// Kernel command line (`/chosen/bootargs`).
    pub cmdline: String,
    /// Physical range of the initrd, if any.
    pub initrd: Option<(u64, u64)>,
    /// `/chosen/rng-seed`: an input to the machine, like any other.
    pub rng_seed: [u8; 32],
    /// Number of virtio-mmio slots in use, taken in order from the first.
    pub virtio_slots: u64,
}

fn reg(base: u64, size: u64) -> [u64; 2] {
    [base, size]
}

/// Builds the flattened device tree blob.
pub fn build(cfg: &FdtConfig) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", "riscv-virtio,qemu")?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", &cfg.cmdline)?;
    fdt.property_string("stdout-path", "/soc/serial@10000000")?;
    fdt.property("rng-seed", &cfg.rng_seed)?;
    if let Some((start, end)) = cfg.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(chosen)?;

    let memory = fdt.begin_node(&format!("memory@{DRAM_BASE:x}"))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &reg(DRAM_BASE, cfg.memory_size))?;
    fdt.end_node(memory)?;

    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", TIMEBASE_HZ as u32)?;
    let cpu = fdt.begin_node("cpu@0")?;
    fdt.property_phandle(PHANDLE_CPU0)?;
    fdt.property_string("device_type", "cpu")?;
    fdt.property_u32("reg", 0)?;
    fdt.property_string("status", "okay")?;
    fdt.property_string("compatible", "riscv")?;
    fdt.property_string("riscv,isa", ISA_STRING)?;
    fdt.property_string("riscv,isa-base", "rv64i")?;
    fdt.property_string_list(
        "riscv,isa-extensions",
        ISA_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
    )?;
    fdt.property_string("mmu-type", "riscv,sv48")?;
    let intc = fdt.begin_node("interrupt-controller")?;
    fdt.property_phandle(PHANDLE_CPU0_INTC)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_string("compatible", "riscv,cpu-intc")?;
    fdt.end_node(intc)?;
    fdt.end_node(cpu)?;
    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    let core = fdt.begin_node("core0")?;
    fdt.property_u32("cpu", PHANDLE_CPU0)?;
    fdt.end_node(core)?;
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;
    fdt.end_node(cpus)?;

    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let clint = fdt.begin_node(&format!("clint@{CLINT_BASE:x}"))?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,clint0".into(), "riscv,clint0".into()],
    )?;
    fdt.property_array_u64("reg", &reg(CLINT_BASE, CLINT_SIZE))?;
    fdt.property_array_u32(
        "interrupts-extended",
        &[
            PHANDLE_CPU0_INTC,
            IRQ_M_SOFT,
            PHANDLE_CPU0_INTC,
            IRQ_M_TIMER,
        ],
    )?;
    fdt.end_node(clint)?;

    let plic = fdt.begin_node(&format!("plic@{PLIC_BASE:x}"))?;
    fdt.property_phandle(PHANDLE_PLIC)?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_string_list(
        "compatible",
        vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()],
    )?;
    fdt.property_array_u64("reg", &reg(PLIC_BASE, PLIC_SIZE))?;
    fdt.property_u32("riscv,ndev", PLIC_NDEV)?;
    fdt.property_array_u32(
        "interrupts-extended",
        &[PHANDLE_CPU0_INTC, IRQ_M_EXT, PHANDLE_CPU0_INTC, IRQ_S_EXT],
    )?;
    fdt.end_node(plic)?;

    let serial = fdt.begin_node(&format!("serial@{UART_BASE:x}"))?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &reg(UART_BASE, UART_SIZE))?;
    fdt.property_u32("clock-frequency", 3_686_400)?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.property_u32("interrupts", UART_IRQ)?;
    fdt.end_node(serial)?;

    let rtc = fdt.begin_node(&format!("rtc@{RTC_BASE:x}"))?;
    fdt.property_string("compatible", "google,goldfish-rtc")?;
    fdt.property_array_u64("reg", &reg(RTC_BASE, RTC_SIZE))?;
    fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
    fdt.property_u32("interrupts", RTC_IRQ)?;
    fdt.end_node(rtc)?;

    let test = fdt.begin_node(&format!("test@{TEST_BASE:x}"))?;
    fdt.property_phandle(PHANDLE_TEST)?;
    fdt.property_string_list(
        "compatible",
        vec![
            "sifive,test1".into(),
            "sifive,test0".into(),
            "syscon".into(),
        ],
    )?;
    fdt.property_array_u64("reg", &reg(TEST_BASE, TEST_SIZE))?;
    fdt.end_node(test)?;

    for slot in 0..cfg.virtio_slots.min(VIRTIO_SLOTS) {
        let base = VIRTIO_BASE + slot * VIRTIO_SIZE;
        let node = fdt.begin_node(&format!("virtio_mmio@{base:x}"))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &reg(base, VIRTIO_SIZE))?;
        fdt.property_u32("interrupt-parent", PHANDLE_PLIC)?;
        fdt.property_u32("interrupts", slot as u32 + 1)?;
        fdt.end_node(node)?;
    }

    fdt.end_node(soc)?;

    let poweroff = fdt.begin_node("poweroff")?;
    fdt.property_string("compatible", "syscon-poweroff")?;
    fdt.property_u32("regmap", PHANDLE_TEST)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("value", 0x5555)?;
    fdt.end_node(poweroff)?;
    let reboot = fdt.begin_node("reboot")?;
    fdt.property_string("compatible", "syscon-reboot")?;
    fdt.property_u32("regmap", PHANDLE_TEST)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("value", 0x7777)?;
    fdt.end_node(reboot)?;

    fdt.end_node(root)?;
    fdt.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FdtConfig {
        FdtConfig {
            memory_size: 256 << 20,
            cmdline: "console=ttyS0".into(),
            initrd: Some((0x8820_0000, 0x8830_0000)),
            rng_seed: [0x5a; 32],
            virtio_slots: 1,
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn test_fdt_starts_with_the_fdt_magic() {
        let blob = build(&config()).expect("valid config");

        assert_eq!(blob[0..4], [0xd0, 0x0d, 0xfe, 0xed]);
    }

    #[test]
    fn test_fdt_carries_the_rng_seed_and_bootargs() {
        let blob = build(&config()).expect("valid config");

        assert!(contains(&blob, &[0x5a; 32]) && contains(&blob, b"console=ttyS0\0"));
    }

    #[test]
    fn test_fdt_is_identical_for_identical_input() {
        assert_eq!(build(&config()).ok(), build(&config()).ok());
    }
}
