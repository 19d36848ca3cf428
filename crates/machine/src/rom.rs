//! The reset ROM at 0x1000, laid out as QEMU's `virt` board does it.
//!
//! ```text
//! 0x00  auipc t0, 0            t0 = 0x1000
//! 0x04  addi  a2, t0, 0x28     a2 = &fw_dynamic_info
//! 0x08  csrr  a0, mhartid      a0 = hart id
//! 0x0c  ld    a1, 0x20(t0)     a1 = device tree address
//! 0x10  ld    t0, 0x18(t0)     t0 = entry point
//! 0x14  jr    t0
//! 0x18  .dword entry
//! 0x20  .dword fdt address
//! 0x28  fw_dynamic_info { magic, version = 2, next_addr, next_mode = S, options = 0, boot_hart = 0 }
//! ```

/// `fw_dynamic_info.magic`: "OSBI" in little-endian.
pub const FW_DYNAMIC_INFO_MAGIC: u64 = 0x4942_534f;
/// `fw_dynamic_info.version` we provide (version 2 has `boot_hart`).
pub const FW_DYNAMIC_INFO_VERSION: u64 = 2;
/// `fw_dynamic_info.next_mode` for S-mode.
pub const FW_DYNAMIC_NEXT_MODE_S: u64 = 1;

/// Builds the reset ROM: jump to `entry` with a1 = `fdt`, and tell OpenSBI
/// (through `fw_dynamic_info`) to enter `next_addr` in S-mode.
pub fn reset_rom(entry: u64, fdt: u64, next_addr: u64) -> Vec<u8> {
    let code: [u32; 6] = [
        0x0000_0297, // auipc t0, 0
        0x0282_8613, // addi a2, t0, 40
        0xf140_2573, // csrr a0, mhartid
        0x0202_b583, // ld a1, 32(t0)
        0x0182_b283, // ld t0, 24(t0)
        0x0002_8067, // jr t0
    ];
    let mut rom = Vec::with_capacity(0x58);
    for word in code {
        rom.extend_from_slice(&word.to_le_bytes());
    }
    for dword in [
        entry,
        fdt,
        FW_DYNAMIC_INFO_MAGIC,
        FW_DYNAMIC_INFO_VERSION,
        next_addr,
        FW_DYNAMIC_NEXT_MODE_S,
        0, // options
        0, // boot_hart
    ] {
        rom.extend_from_slice(&dword.to_le_bytes());
    }
    rom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reset_rom_places_entry_fdt_and_fw_dynamic_info_at_qemu_offsets() {
        let rom = reset_rom(0x8000_0000, 0x8fe0_0000, 0x8020_0000);

        let dword = |off: usize| u64::from_le_bytes(rom[off..off + 8].try_into().expect("8 bytes"));
        assert_eq!(
            (
                dword(0x18),
                dword(0x20),
                dword(0x28),
                dword(0x30),
                dword(0x38),
                dword(0x40),
                rom.len()
            ),
            (
                0x8000_0000,
                0x8fe0_0000,
                0x4942_534f,
                2,
                0x8020_0000,
                1,
                0x58
            )
        );
    }
}
