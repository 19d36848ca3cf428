//! Loading firmware, kernel and initrd images into guest RAM.
//!
//! A firmware image is either an ELF (its `PT_LOAD` segments go to their
//! physical addresses and it is entered at `e_entry`) or a raw binary such as
//! OpenSBI's `fw_dynamic.bin` (loaded at the start of DRAM and entered there).
//! A kernel is a flat RISC-V `Image` loaded at [`KERNEL_BASE`], or an ELF.

use crate::layout::{DRAM_BASE, KERNEL_BASE};
use ftvm_cpu::Memory;

/// What a loaded image occupies and where it is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// Entry point.
    pub entry: u64,
    /// Lowest address written.
    pub start: u64,
    /// One past the highest address written.
    pub end: u64,
}

/// A bad image: the user gave a file that cannot be loaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    /// The image is empty.
    #[error("the {what} image is empty")]
    Empty {
        /// Which image.
        what: &'static str,
    },
    /// The image does not fit in guest RAM at the address it must go to.
    #[error("the {what} image ({len} bytes at {addr:#x}) does not fit in guest RAM ({ram_start:#x}..{ram_end:#x}); give more --memory")]
    DoesNotFit {
        /// Which image.
        what: &'static str,
        /// Load address.
        addr: u64,
        /// Length in bytes.
        len: u64,
        /// RAM start.
        ram_start: u64,
        /// RAM end.
        ram_end: u64,
    },
    /// The kernel is neither an ELF nor a RISC-V `Image`.
    #[error("the kernel image is neither an ELF nor a RISC-V Linux Image (no \"RSC\\x05\" magic at offset 56)")]
    NotAKernel,
    /// The initrd is neither a cpio archive nor compressed in a format Linux reads.
    #[error("the initrd is neither a cpio archive nor gzip, xz, zstd, lzma, lz4 or bzip2 data")]
    NotAnInitrd,
    /// The image starts like an ELF file but is not a valid RISC-V 64-bit ELF.
    #[error("the {what} image is not a valid RISC-V 64-bit ELF: {reason}")]
    BadElf {
        /// Which image.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const EM_RISCV: u16 = 243;
const PT_LOAD: u32 = 1;

/// True when `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(ELF_MAGIC)
}

fn place(
    mem: &mut Memory,
    what: &'static str,
    addr: u64,
    data: &[u8],
    zero_fill: u64,
) -> Result<(), LoadError> {
    let len = data.len() as u64 + zero_fill;
    let ram_start = mem.base();
    let ram_end = mem.base() + mem.size();
    let fits = addr >= ram_start && addr.checked_add(len).is_some_and(|end| end <= ram_end);
    if !fits {
        return Err(LoadError::DoesNotFit {
            what,
            addr,
            len,
            ram_start,
            ram_end,
        });
    }
    let dne = |_| LoadError::DoesNotFit {
        what,
        addr,
        len,
        ram_start,
        ram_end,
    };
    mem.write_bytes(addr, data).map_err(dne)?;
    if zero_fill > 0 {
        let zeros = vec![0u8; zero_fill as usize];
        mem.write_bytes(addr + data.len() as u64, &zeros)
            .map_err(dne)?;
    }
    Ok(())
}

/// Loads a raw binary at `addr`.
pub fn load_raw(
    mem: &mut Memory,
    what: &'static str,
    image: &[u8],
    addr: u64,
) -> Result<Loaded, LoadError> {
    if image.is_empty() {
        return Err(LoadError::Empty { what });
    }
    place(mem, what, addr, image, 0)?;
    Ok(Loaded {
        entry: addr,
        start: addr,
        end: addr + image.len() as u64,
    })
}

fn field<const N: usize>(image: &[u8], off: u64, what: &'static str) -> Result<[u8; N], LoadError> {
    let start = usize::try_from(off).ok();
    start
        .and_then(|s| image.get(s..s.checked_add(N)?))
        .and_then(|b| b.try_into().ok())
        .ok_or(LoadError::BadElf {
            what,
            reason: "header or program header table is truncated",
        })
}

fn u16_at(image: &[u8], off: u64, what: &'static str) -> Result<u16, LoadError> {
    field::<2>(image, off, what).map(u16::from_le_bytes)
}
fn u32_at(image: &[u8], off: u64, what: &'static str) -> Result<u32, LoadError> {
    field::<4>(image, off, what).map(u32::from_le_bytes)
}
fn u64_at(image: &[u8], off: u64, what: &'static str) -> Result<u64, LoadError> {
    field::<8>(image, off, what).map(u64::from_le_bytes)
}

/// Loads the `PT_LOAD` segments of a RISC-V ELF64 image at their physical addresses.
pub fn load_elf(mem: &mut Memory, what: &'static str, image: &[u8]) -> Result<Loaded, LoadError> {
    let bad = |reason| LoadError::BadElf { what, reason };
    if !is_elf(image) {
        return Err(bad("no ELF magic"));
    }
    if image.get(4) != Some(&2) {
        return Err(bad("not a 64-bit ELF"));
    }
    if image.get(5) != Some(&1) {
        return Err(bad("not little-endian"));
    }
    if u16_at(image, 18, what)? != EM_RISCV {
        return Err(bad("machine is not RISC-V"));
    }
    let entry = u64_at(image, 24, what)?;
    let phoff = u64_at(image, 32, what)?;
    let phentsize = u64::from(u16_at(image, 54, what)?);
    let phnum = u64::from(u16_at(image, 56, what)?);
    if phentsize < 56 {
        return Err(bad("program header entries are too small"));
    }
    let mut start = u64::MAX;
    let mut end = 0;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or(bad("program header table offset overflows"))?;
        if u32_at(image, ph, what)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(image, ph + 8, what)?;
        let paddr = u64_at(image, ph + 24, what)?;
        let filesz = u64_at(image, ph + 32, what)?;
        let memsz = u64_at(image, ph + 40, what)?;
        if memsz < filesz {
            return Err(bad("a segment's memory size is smaller than its file size"));
        }
        let data = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or(bad("a segment lies beyond the end of the file"))?;
        place(mem, what, paddr, data, memsz - filesz)?;
        if memsz > 0 {
            start = start.min(paddr);
            end = end.max(paddr + memsz);
        }
    }
    if end == 0 {
        return Err(bad("no loadable segment"));
    }
    Ok(Loaded { entry, start, end })
}

/// Loads a firmware image: an ELF, or a raw binary at the start of DRAM.
pub fn load_firmware(mem: &mut Memory, image: &[u8]) -> Result<Loaded, LoadError> {
    if is_elf(image) {
        load_elf(mem, "firmware", image)
    } else {
        load_raw(mem, "firmware", image, DRAM_BASE)
    }
}

/// Offset and value of the magic in a RISC-V Linux `Image` header.
const IMAGE_MAGIC2_OFFSET: usize = 56;
const IMAGE_MAGIC2: &[u8; 4] = b"RSC\x05";

/// Loads a kernel: an ELF, or a flat RISC-V `Image` at [`KERNEL_BASE`].
pub fn load_kernel(mem: &mut Memory, image: &[u8]) -> Result<Loaded, LoadError> {
    if image.is_empty() {
        return Err(LoadError::Empty { what: "kernel" });
    }
    if is_elf(image) {
        return load_elf(mem, "kernel", image);
    }
    if image.get(IMAGE_MAGIC2_OFFSET..IMAGE_MAGIC2_OFFSET + 4) != Some(IMAGE_MAGIC2) {
        return Err(LoadError::NotAKernel);
    }
    load_raw(mem, "kernel", image, KERNEL_BASE)
}

/// Checks that an initrd is something Linux can unpack: a newc cpio archive,
/// or one compressed with a format the kernel knows.
pub fn check_initrd(image: &[u8]) -> Result<(), LoadError> {
    const MAGICS: &[&[u8]] = &[
        b"070701",                          // cpio newc
        b"070702",                          // cpio newc with CRC
        &[0x1f, 0x8b],                      // gzip
        &[0xfd, b'7', b'z', b'X', b'Z', 0], // xz
        &[0x28, 0xb5, 0x2f, 0xfd],          // zstd
        &[0x5d, 0x00, 0x00],                // lzma
        &[0x02, 0x21, 0x4c, 0x18],          // lz4 legacy
        b"BZh",                             // bzip2
    ];
    if image.is_empty() {
        return Err(LoadError::Empty { what: "initrd" });
    }
    if MAGICS.iter().any(|m| image.starts_with(m)) {
        Ok(())
    } else {
        Err(LoadError::NotAnInitrd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> Memory {
        Memory::new(DRAM_BASE, 1 << 20)
    }

    fn tiny_elf(paddr: u64, data: &[u8], memsz: u64) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[0..4].copy_from_slice(ELF_MAGIC);
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // ELFDATA2LSB
        elf[18..20].copy_from_slice(&EM_RISCV.to_le_bytes());
        elf[24..32].copy_from_slice(&(paddr + 4).to_le_bytes()); // e_entry
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let ph = 64;
        elf[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        elf[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        elf[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes()); // p_paddr
        elf[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        elf[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        elf.extend_from_slice(data);
        elf
    }

    #[test]
    fn test_load_elf_places_segment_and_zero_fills_bss() {
        let mut mem = ram();
        mem.write_bytes(DRAM_BASE + 0x104, &[0xff; 4])
            .expect("in RAM");
        let elf = tiny_elf(DRAM_BASE + 0x100, &[1, 2, 3, 4], 8);

        let loaded = load_elf(&mut mem, "firmware", &elf);

        let mut got = [0u8; 8];
        mem.read_bytes(DRAM_BASE + 0x100, &mut got).expect("in RAM");
        assert_eq!(
            (loaded, got),
            (
                Ok(Loaded {
                    entry: DRAM_BASE + 0x104,
                    start: DRAM_BASE + 0x100,
                    end: DRAM_BASE + 0x108
                }),
                [1, 2, 3, 4, 0, 0, 0, 0]
            )
        );
    }

    #[test]
    fn test_load_elf_with_truncated_program_header_is_an_error() {
        let mut mem = ram();
        let elf = tiny_elf(DRAM_BASE, &[1, 2, 3, 4], 4);

        let result = load_elf(&mut mem, "kernel", &elf[..80]);

        assert_eq!(
            result,
            Err(LoadError::BadElf {
                what: "kernel",
                reason: "header or program header table is truncated"
            })
        );
    }

    #[test]
    fn test_load_raw_beyond_ram_is_an_error() {
        let mut mem = ram();

        let result = load_raw(&mut mem, "initrd", &[0; 16], DRAM_BASE + (1 << 20) - 8);

        assert!(matches!(
            result,
            Err(LoadError::DoesNotFit { what: "initrd", .. })
        ));
    }

    #[test]
    fn test_load_kernel_without_image_magic_is_an_error() {
        let mut mem = ram();

        assert_eq!(
            load_kernel(&mut mem, &[0x13; 4096]),
            Err(LoadError::NotAKernel)
        );
    }

    #[test]
    fn test_check_initrd_accepts_gzip_and_rejects_text() {
        assert_eq!(
            (
                check_initrd(&[0x1f, 0x8b, 8, 0]),
                check_initrd(b"hello world")
            ),
            (Ok(()), Err(LoadError::NotAnInitrd))
        );
    }

    #[test]
    fn test_load_empty_firmware_is_an_error() {
        let mut mem = ram();

        assert_eq!(
            load_firmware(&mut mem, &[]),
            Err(LoadError::Empty { what: "firmware" })
        );
    }
}
