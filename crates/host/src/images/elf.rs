//! What a dynamically linked RISC-V program needs to run: its interpreter and libraries.
//!
//! ELF layout: System V ABI, "ELF Header", "Program Header" and "Dynamic Section"
//! (64-bit, little-endian, `EM_RISCV`). The interpreter is the NUL-terminated path in
//! the `PT_INTERP` segment; the libraries are the `DT_NEEDED` entries of the
//! `PT_DYNAMIC` segment, offsets into the string table that `DT_STRTAB` (a virtual
//! address, mapped to the file through the `PT_LOAD` segments) and `DT_STRSZ` give.

use super::ImagesError;

/// `e_machine` of RISC-V.
const EM_RISCV: u64 = 243;
const PT_LOAD: u64 = 1;
const PT_DYNAMIC: u64 = 2;
const PT_INTERP: u64 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;

/// The dynamic-linking needs of an executable or shared object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicInfo {
    /// `PT_INTERP`: the absolute path of the dynamic loader, if any.
    pub interpreter: Option<String>,
    /// `DT_NEEDED`: the sonames of the libraries it needs, in the order listed.
    pub needed: Vec<String>,
}

/// One program header: type, file offset, virtual address, size in the file.
struct Segment {
    kind: u64,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads the interpreter and needed libraries of a RISC-V ELF64 file. `what` names the
/// file in errors. A static executable gives an empty [`DynamicInfo`].
pub fn read_dynamic(elf: &[u8], what: &str) -> Result<DynamicInfo, ImagesError> {
    let bad = |reason: &str| ImagesError::BadExecutable {
        file: what.to_string(),
        reason: reason.to_string(),
    };
    let truncated = || bad("truncated ELF file");
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(bad("not an ELF file"));
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let u16_at = |off: u64| -> Option<u64> {
        let off = usize::try_from(off).ok()?;
        Some(u16::from_le_bytes(elf.get(off..off.checked_add(2)?)?.try_into().ok()?).into())
    };
    let u32_at = |off: u64| -> Option<u64> {
        let off = usize::try_from(off).ok()?;
        Some(u32::from_le_bytes(elf.get(off..off.checked_add(4)?)?.try_into().ok()?).into())
    };
    let u64_at = |off: u64| -> Option<u64> {
        let off = usize::try_from(off).ok()?;
        Some(u64::from_le_bytes(
            elf.get(off..off.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let bytes = |offset: u64, size: u64| -> Option<&[u8]> {
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        elf.get(start..end)
    };
    if u16_at(0x12).ok_or_else(truncated)? != EM_RISCV {
        return Err(bad("not a RISC-V ELF file"));
    }
    let phoff = u64_at(0x20).ok_or_else(truncated)?;
    let phentsize = u16_at(0x36).ok_or_else(truncated)?;
    let phnum = u16_at(0x38).ok_or_else(truncated)?;
    let segments = (0..phnum)
        .map(|i| {
            let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
            Some(Segment {
                kind: u32_at(at)?,
                offset: u64_at(at.checked_add(0x08)?)?,
                vaddr: u64_at(at.checked_add(0x10)?)?,
                filesz: u64_at(at.checked_add(0x20)?)?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(truncated)?;

    let mut info = DynamicInfo::default();
    if let Some(interp) = segments.iter().find(|s| s.kind == PT_INTERP) {
        let data = bytes(interp.offset, interp.filesz).ok_or_else(truncated)?;
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        let path = std::str::from_utf8(&data[..end]).map_err(|_| bad("PT_INTERP is not UTF-8"))?;
        info.interpreter = Some(path.to_string());
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(info);
    };
    let mut needed_offsets = Vec::new();
    let (mut strtab, mut strsz) = (None, None);
    for i in 0..dynamic.filesz / 16 {
        let at = dynamic.offset + i * 16;
        let tag = u64_at(at).ok_or_else(truncated)?;
        let value = u64_at(at + 8).ok_or_else(truncated)?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab = Some(value),
            DT_STRSZ => strsz = Some(value),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(info);
    }
    let (Some(strtab), Some(strsz)) = (strtab, strsz) else {
        return Err(bad("DT_NEEDED without DT_STRTAB and DT_STRSZ"));
    };
    let strtab_offset = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| strtab >= s.vaddr && strtab - s.vaddr < s.filesz)
        .map(|s| strtab - s.vaddr + s.offset)
        .ok_or_else(|| bad("DT_STRTAB is outside every PT_LOAD segment"))?;
    let strings = bytes(strtab_offset, strsz).ok_or_else(truncated)?;
    for offset in needed_offsets {
        let name = usize::try_from(offset)
            .ok()
            .and_then(|o| strings.get(o..))
            .and_then(|s| Some(&s[..s.iter().position(|&b| b == 0)?]))
            .ok_or_else(|| bad("DT_NEEDED outside the string table"))?;
        let name = std::str::from_utf8(name).map_err(|_| bad("DT_NEEDED is not UTF-8"))?;
        info.needed.push(name.to_string());
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal RISC-V ELF64 with a `PT_INTERP` (if given) and a `PT_DYNAMIC` listing
    /// `needed`, all in one `PT_LOAD` mapped at a virtual address unlike its offset.
    pub(crate) fn synthetic_executable(interp: Option<&str>, needed: &[&str]) -> Vec<u8> {
        const BASE: u64 = 0x1_0000;
        let phnum: u64 = 3;
        let mut elf = vec![0u8; 64 + 56 * phnum as usize];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // ELFDATA2LSB
        elf[6] = 1; // EV_CURRENT
        elf[0x10..0x12].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        elf[0x12..0x14].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[0x38..0x3a].copy_from_slice(&(phnum as u16).to_le_bytes()); // e_phnum

        let interp_off = elf.len() as u64;
        let interp_bytes = interp.map(|p| format!("{p}\0")).unwrap_or_default();
        elf.extend_from_slice(interp_bytes.as_bytes());
        let strtab_off = elf.len() as u64;
        let mut strtab = vec![0u8];
        let mut name_offsets = Vec::new();
        for name in needed {
            name_offsets.push(strtab.len() as u64);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        elf.extend_from_slice(&strtab);
        while elf.len() % 8 != 0 {
            elf.push(0);
        }
        let dynamic_off = elf.len() as u64;
        let mut entry = |tag: u64, value: u64| {
            elf.extend_from_slice(&tag.to_le_bytes());
            elf.extend_from_slice(&value.to_le_bytes());
        };
        for offset in name_offsets {
            entry(DT_NEEDED, offset);
        }
        entry(DT_STRTAB, BASE + strtab_off);
        entry(DT_STRSZ, strtab.len() as u64);
        entry(DT_NULL, 0);
        let dynamic_size = elf.len() as u64 - dynamic_off;
        let file_size = elf.len() as u64;

        let mut header = |index: usize, kind: u64, offset: u64, size: u64| {
            let at = 64 + 56 * index;
            elf[at..at + 4].copy_from_slice(&(kind as u32).to_le_bytes());
            elf[at + 0x08..at + 0x10].copy_from_slice(&offset.to_le_bytes());
            elf[at + 0x10..at + 0x18].copy_from_slice(&(BASE + offset).to_le_bytes());
            elf[at + 0x20..at + 0x28].copy_from_slice(&size.to_le_bytes());
            elf[at + 0x28..at + 0x30].copy_from_slice(&size.to_le_bytes());
        };
        // A static file without PT_INTERP gets a harmless second PT_LOAD in its slot.
        match interp {
            Some(_) => header(0, PT_INTERP, interp_off, interp_bytes.len() as u64),
            None => header(0, PT_LOAD, 0, 0),
        }
        header(1, PT_LOAD, 0, file_size);
        header(2, PT_DYNAMIC, dynamic_off, dynamic_size);
        elf
    }

    #[test]
    fn test_read_dynamic_gives_interpreter_and_needed_in_order() {
        let elf = synthetic_executable(
            Some("/lib/ld-linux-riscv64-lp64d.so.1"),
            &["libm.so.6", "libc.so.6"],
        );

        let info = read_dynamic(&elf, "mawk").expect("valid executable");

        assert_eq!(
            info,
            DynamicInfo {
                interpreter: Some("/lib/ld-linux-riscv64-lp64d.so.1".into()),
                needed: vec!["libm.so.6".into(), "libc.so.6".into()],
            }
        );
    }

    #[test]
    fn test_read_dynamic_of_library_without_interpreter() {
        let elf = synthetic_executable(None, &["ld-linux-riscv64-lp64d.so.1"]);

        let info = read_dynamic(&elf, "libc.so.6").expect("valid library");

        assert_eq!(
            info,
            DynamicInfo {
                interpreter: None,
                needed: vec!["ld-linux-riscv64-lp64d.so.1".into()],
            }
        );
    }

    #[test]
    fn test_read_dynamic_rejects_other_machines() {
        let mut elf = synthetic_executable(None, &[]);
        elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64

        let err = read_dynamic(&elf, "mawk").expect_err("x86-64");

        assert_eq!(
            err.to_string(),
            "cannot read executable mawk: not a RISC-V ELF file"
        );
    }
}
