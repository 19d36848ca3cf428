//! Kernel module metadata and load order.
//!
//! Debian's kernel package ships no `modules.dep`, so the order is computed from each
//! module's `.modinfo` ELF section: NUL-separated `key=value` strings, of which
//! `depends=a,b` names the modules that must be loaded first (written by `modpost`).
//! ELF layout: System V ABI, "ELF Header" and "Sections" (64-bit, little-endian, as
//! RISC-V Linux modules are).

use std::collections::BTreeMap;

use super::ImagesError;

/// The `.modinfo` fields that ordering needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `name=`: the module's name, if the section records it.
    pub name: Option<String>,
    /// `depends=`: the modules it needs, normalised with [`canonical_name`].
    pub depends: Vec<String>,
}

/// A module name as the kernel compares them: `-` and `_` are the same character.
pub fn canonical_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads the `.modinfo` section of an uncompressed module. `module` names it in errors.
pub fn read_modinfo(elf: &[u8], module: &str) -> Result<ModInfo, ImagesError> {
    let bad = |reason: &str| ImagesError::BadModule {
        module: module.to_string(),
        reason: reason.to_string(),
    };
    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(bad("not an ELF file"));
    }
    // e_ident[EI_CLASS] = ELFCLASS64, e_ident[EI_DATA] = ELFDATA2LSB.
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let truncated = || bad("truncated ELF file");
    let u16_at = |off: usize| -> Option<u64> {
        Some(u16::from_le_bytes(elf.get(off..off + 2)?.try_into().ok()?).into())
    };
    let u32_at = |off: usize| -> Option<u64> {
        Some(u32::from_le_bytes(elf.get(off..off + 4)?.try_into().ok()?).into())
    };
    let u64_at = |off: usize| -> Option<u64> {
        Some(u64::from_le_bytes(elf.get(off..off + 8)?.try_into().ok()?))
    };
    let shoff = u64_at(0x28).ok_or_else(truncated)?;
    let shentsize = u16_at(0x3a).ok_or_else(truncated)?;
    let shnum = u16_at(0x3c).ok_or_else(truncated)?;
    let shstrndx = u16_at(0x3e).ok_or_else(truncated)?;
    // Section header: sh_name at 0x00, sh_offset at 0x18, sh_size at 0x20.
    let section = |index: u64| -> Option<(u64, &[u8])> {
        let header = usize::try_from(shoff.checked_add(index.checked_mul(shentsize)?)?).ok()?;
        let name = u32_at(header)?;
        let offset = usize::try_from(u64_at(header + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(header + 0x20)?).ok()?;
        Some((name, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx).ok_or_else(truncated)?;
    let modinfo = (0..shnum)
        .map(|i| section(i).ok_or_else(truncated))
        .find_map(|s| match s {
            Ok((name, data)) => {
                let name = names.get(usize::try_from(name).ok()?..)?;
                let end = name.iter().position(|&b| b == 0)?;
                (&name[..end] == b".modinfo").then_some(Ok(data))
            }
            Err(e) => Some(Err(e)),
        })
        .ok_or_else(|| bad("no .modinfo section"))??;
    Ok(parse_modinfo(modinfo))
}

/// Parses the contents of a `.modinfo` section.
pub fn parse_modinfo(section: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for field in section.split(|&b| b == 0) {
        let field = String::from_utf8_lossy(field);
        if let Some(value) = field.strip_prefix("depends=") {
            info.depends = value
                .split(',')
                .filter(|d| !d.is_empty())
                .map(canonical_name)
                .collect();
        } else if let Some(value) = field.strip_prefix("name=") {
            info.name = Some(value.to_string());
        }
    }
    info
}

/// The modules to load, in order, and the requested ones the kernel does not have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOrder {
    /// Canonical names; every module comes after all of its dependencies.
    pub order: Vec<String>,
    /// Requested modules that are not modules of this kernel (built in, or absent).
    pub skipped: Vec<String>,
}

/// Orders `wanted` (and any dependency they pull in) so that dependencies come first.
///
/// `depends_of(name)` gives a module's `depends=` list, or `None` when the kernel has no
/// such module. Apart from the dependency rule the order of `wanted` is kept, so
/// modules that are loaded on request rather than by symbol (`crc32c_generic` before
/// `ext4`) can be placed by listing them first. A missing requested module is skipped; a
/// missing dependency is an error.
pub fn load_order<F>(wanted: &[&str], mut depends_of: F) -> Result<LoadOrder, ImagesError>
where
    F: FnMut(&str) -> Result<Option<Vec<String>>, ImagesError>,
{
    #[derive(PartialEq)]
    enum State {
        Visiting,
        Done,
    }
    let mut state: BTreeMap<String, State> = BTreeMap::new();
    let mut result = LoadOrder::default();

    // Depth-first, iteratively: each frame is a module and its dependencies not yet visited.
    for &root in wanted {
        let root = canonical_name(root);
        if state.contains_key(&root) {
            continue;
        }
        let Some(deps) = depends_of(&root)? else {
            result.skipped.push(root);
            continue;
        };
        state.insert(root.clone(), State::Visiting);
        let mut stack: Vec<(String, std::vec::IntoIter<String>)> = vec![(root, deps.into_iter())];
        while let Some((module, deps)) = stack.last_mut() {
            match deps.next() {
                Some(dep) => match state.get(&dep) {
                    Some(State::Done) => {}
                    Some(State::Visiting) => {
                        let mut cycle: Vec<&str> = stack
                            .iter()
                            .map(|(m, _)| m.as_str())
                            .skip_while(|m| *m != dep)
                            .collect();
                        cycle.push(&dep);
                        return Err(ImagesError::DependencyCycle {
                            cycle: cycle.join(" -> "),
                        });
                    }
                    None => {
                        let Some(dep_deps) = depends_of(&dep)? else {
                            return Err(ImagesError::MissingDependency {
                                module: module.clone(),
                                dependency: dep,
                            });
                        };
                        state.insert(dep.clone(), State::Visiting);
                        stack.push((dep, dep_deps.into_iter()));
                    }
                },
                None => {
                    let module = module.clone();
                    stack.pop();
                    state.insert(module.clone(), State::Done);
                    result.order.push(module);
                }
            }
        }
    }
    Ok(result)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 little-endian file with sections: null, `.modinfo`, `.shstrtab`.
    pub(crate) fn synthetic_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // ELFCLASS64
        elf[5] = 1; // ELFDATA2LSB
        elf[6] = 1; // EV_CURRENT
        let modinfo_off = elf.len() as u64;
        elf.extend_from_slice(modinfo);
        let shstrtab_off = elf.len() as u64;
        elf.extend_from_slice(shstrtab);
        while elf.len() % 8 != 0 {
            elf.push(0);
        }
        let shoff = elf.len() as u64;
        let mut section = |name: u32, offset: u64, size: u64| {
            let mut sh = [0u8; 64];
            sh[0..4].copy_from_slice(&name.to_le_bytes());
            sh[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&sh);
        };
        section(0, 0, 0);
        section(1, modinfo_off, modinfo.len() as u64);
        section(10, shstrtab_off, shstrtab.len() as u64);
        elf[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes()); // e_shstrndx
        elf
    }

    fn table<'a>(
        modules: &'a [(&'a str, &'a [&'a str])],
    ) -> impl FnMut(&str) -> Result<Option<Vec<String>>, ImagesError> + 'a {
        move |name| {
            Ok(modules
                .iter()
                .find(|(m, _)| canonical_name(m) == name)
                .map(|(_, deps)| deps.iter().map(|d| canonical_name(d)).collect()))
        }
    }

    #[test]
    fn test_read_modinfo_finds_depends_and_name() {
        let elf = synthetic_module(
            b"license=GPL\0depends=virtio_ring,net-failover\0name=virtio_net\0vermagic=6.12\0",
        );

        let info = read_modinfo(&elf, "virtio_net").expect("valid module");

        assert_eq!(
            info,
            ModInfo {
                name: Some("virtio_net".into()),
                depends: vec!["virtio_ring".into(), "net_failover".into()],
            }
        );
    }

    #[test]
    fn test_read_modinfo_empty_depends_gives_no_dependencies() {
        let elf = synthetic_module(b"depends=\0name=failover\0");

        let info = read_modinfo(&elf, "failover").expect("valid module");

        assert_eq!(info.depends, Vec::<String>::new());
    }

    #[test]
    fn test_read_modinfo_rejects_non_elf() {
        let err = read_modinfo(b"\x7fXYZ", "bogus").expect_err("not ELF");

        assert_eq!(
            err.to_string(),
            "cannot read kernel module bogus: not an ELF file"
        );
    }

    #[test]
    fn test_load_order_puts_dependencies_first_and_keeps_requested_order() {
        let modules: &[(&str, &[&str])] = &[
            ("virtio_mmio", &[]),
            ("virtio_blk", &[]),
            ("failover", &[]),
            ("net_failover", &["failover"]),
            ("virtio_net", &["net_failover"]),
            ("virtio-rng", &[]),
            ("crc16", &[]),
            ("mbcache", &[]),
            ("jbd2", &[]),
            ("crc32c_generic", &[]),
            ("ext4", &["mbcache", "jbd2", "crc16"]),
        ];
        let wanted = [
            "virtio_net",
            "virtio_mmio",
            "virtio_blk",
            "virtio-rng",
            "crc32c_generic",
            "ext4",
        ];

        let plan = load_order(&wanted, table(modules)).expect("acyclic");

        assert_eq!(
            plan.order,
            [
                "failover",
                "net_failover",
                "virtio_net",
                "virtio_mmio",
                "virtio_blk",
                "virtio_rng",
                "crc32c_generic",
                "mbcache",
                "jbd2",
                "crc16",
                "ext4",
            ]
        );
    }

    #[test]
    fn test_load_order_skips_requested_module_the_kernel_lacks() {
        let modules: &[(&str, &[&str])] = &[("jbd2", &[]), ("ext4", &["jbd2"])];

        let plan = load_order(&["crc16", "jbd2", "ext4"], table(modules)).expect("acyclic");

        assert_eq!(
            plan,
            LoadOrder {
                order: vec!["jbd2".into(), "ext4".into()],
                skipped: vec!["crc16".into()],
            }
        );
    }

    #[test]
    fn test_load_order_missing_dependency_is_an_error() {
        let modules: &[(&str, &[&str])] = &[("ext4", &["jbd2"])];

        let err = load_order(&["ext4"], table(modules)).expect_err("jbd2 missing");

        assert_eq!(
            err.to_string(),
            "kernel module ext4 depends on jbd2, which the kernel package lacks"
        );
    }

    #[test]
    fn test_load_order_cycle_is_an_error_naming_the_cycle() {
        let modules: &[(&str, &[&str])] = &[("a", &["b"]), ("b", &["c"]), ("c", &["b"])];

        let err = load_order(&["a"], table(modules)).expect_err("cycle");

        assert_eq!(
            err.to_string(),
            "kernel modules depend on each other in a cycle: b -> c -> b"
        );
    }
}
