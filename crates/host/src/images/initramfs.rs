//! The guest's initramfs: busybox, the virtio and ext4 modules, and an `/init` script.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use flate2::{Compression, GzBuilder};

use super::cpio::CpioArchive;
use super::modinfo::{self, canonical_name};
use super::ImagesError;

/// The modules the guest loads, by file stem, in the order the guest needs them.
///
/// The virtio transports and devices are modules in Debian's kernel; ext4 (which also
/// mounts ext2) needs `crc32c_generic` loaded before it, a request that no `depends=`
/// records. Ones this kernel has built in are skipped.
pub const MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio-rng",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_generic",
    "ext4",
];

/// Applets linked in `/bin` at build time: the ones `/init` runs before it installs the
/// rest with `busybox --install -s`.
pub const APPLETS: &[&str] = &[
    "awk", "cat", "echo", "insmod", "ls", "mkdir", "mount", "poweroff", "sed", "setsid", "sh",
    "sleep", "sync", "uname",
];

/// The line `/init` prints when the guest is ready for commands.
pub const READY_LINE: &str = "ftvm-guest: ready";

/// The `/init` of the initramfs (busybox `sh`).
///
/// Kernel arguments after the first ` -- ` are not interpreted by the kernel, so a
/// command placed there keeps its quotes; `/init` runs it with `sh -c` and powers off.
/// Without one it starts an interactive shell on the console.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# The init of ftvm's guest initramfs (built by ftvm-host, images::initramfs).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
while read -r module; do
	insmod "/lib/modules/$module.ko" >/dev/null 2>&1 ||
		echo "ftvm-guest: cannot load module $module"
done </lib/modules/load-order
echo "ftvm-guest: ready"
cmdline=$(cat /proc/cmdline)
case "$cmdline" in
*" -- "*)
	sh -c "${cmdline#* -- }"
	;;
*)
	if command -v cttyhack >/dev/null; then
		setsid cttyhack sh
	else
		sh
	fi
	;;
esac
sync
poweroff -f
"#;

/// A kernel module ready to go into the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The file name without `.ko` (`virtio-rng`).
    pub stem: String,
    /// The uncompressed ELF object.
    pub object: Vec<u8>,
}

/// The modules chosen from a kernel's module tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleSet {
    /// The modules, dependencies first.
    pub modules: Vec<Module>,
    /// Notes on requested modules that were left out, such as `crc16: built in`.
    pub notes: Vec<String>,
}

/// Picks `wanted` and their dependencies from `modules_dir`
/// (`/usr/lib/modules/<release>`), decompressing `.ko.xz` files, in load order.
pub fn collect_modules(modules_dir: &Path, wanted: &[&str]) -> Result<ModuleSet, ImagesError> {
    let mut files = BTreeMap::new();
    index_module_tree(&modules_dir.join("kernel"), &mut files)?;
    let builtin = std::fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let builtin: Vec<String> = builtin
        .lines()
        .filter_map(|line| Some(canonical_name(module_stem(line.rsplit('/').next()?)?)))
        .collect();

    let mut objects: BTreeMap<String, (String, Vec<u8>)> = BTreeMap::new();
    let plan = modinfo::load_order(wanted, |name| {
        let Some(path) = files.get(name) else {
            return Ok(None);
        };
        let object = read_module(path)?;
        let info = modinfo::read_modinfo(&object, name)?;
        let stem = path
            .file_name()
            .and_then(|n| module_stem(&n.to_string_lossy()).map(str::to_string))
            .unwrap_or_else(|| name.to_string());
        objects.insert(name.to_string(), (stem, object));
        Ok(Some(info.depends))
    })?;

    let modules = plan
        .order
        .iter()
        .filter_map(|name| objects.remove(name))
        .map(|(stem, object)| Module { stem, object })
        .collect();
    let notes = plan
        .skipped
        .iter()
        .map(|name| {
            if builtin.contains(name) {
                format!("{name}: built into the kernel")
            } else {
                format!("{name}: not in this kernel, skipped")
            }
        })
        .collect();
    Ok(ModuleSet { modules, notes })
}

/// `virtio-rng.ko.xz` → `virtio-rng`; `None` for a file that is not a module.
fn module_stem(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".ko.xz")
        .or_else(|| file_name.strip_suffix(".ko"))
}

/// Maps canonical module names to their files, recursively.
fn index_module_tree(dir: &Path, files: &mut BTreeMap<String, PathBuf>) -> Result<(), ImagesError> {
    let entries = std::fs::read_dir(dir).map_err(ImagesError::io("read directory", dir))?;
    for entry in entries {
        let entry = entry.map_err(ImagesError::io("read directory", dir))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(ImagesError::io("inspect", &path))?;
        if file_type.is_dir() {
            index_module_tree(&path, files)?;
        } else if let Some(stem) = module_stem(&entry.file_name().to_string_lossy()) {
            files.insert(canonical_name(stem), path);
        }
    }
    Ok(())
}

fn read_module(path: &Path) -> Result<Vec<u8>, ImagesError> {
    let file = std::fs::File::open(path).map_err(ImagesError::io("open", path))?;
    if path.extension().is_some_and(|e| e == "xz") {
        xz_decompress(BufReader::new(file), &path.display().to_string())
    } else {
        std::fs::read(path).map_err(ImagesError::io("read", path))
    }
}

/// Decompresses an xz stream. `what` names it in errors.
pub fn xz_decompress(mut input: impl std::io::BufRead, what: &str) -> Result<Vec<u8>, ImagesError> {
    let mut out = Vec::new();
    lzma_rs::xz_decompress(&mut input, &mut out).map_err(|e| ImagesError::Decompress {
        what: what.to_string(),
        cause: e.to_string(),
    })?;
    Ok(out)
}

/// Assembles the initramfs from the busybox binary and the ordered modules.
pub fn build_archive(busybox: Vec<u8>, modules: &[Module]) -> CpioArchive {
    let mut archive = CpioArchive::new();
    for dir in [
        "bin",
        "dev",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "root",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        archive.dir(dir, 0o755);
    }
    archive.dir("tmp", 0o1777);
    archive.char_dev("dev/console", 0o600, 5, 1);
    archive.char_dev("dev/null", 0o666, 1, 3);
    archive.file("bin/busybox", 0o755, busybox);
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes().to_vec());
    let mut order = String::new();
    for module in modules {
        archive.file(
            &format!("lib/modules/{}.ko", module.stem),
            0o644,
            module.object.clone(),
        );
        order.push_str(&module.stem);
        order.push('\n');
    }
    archive.file("lib/modules/load-order", 0o644, order.into_bytes());
    archive
}

/// gzip with fixed header fields (no name, mtime 0) so the output is reproducible.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(3) // Unix
        .write(Vec::new(), Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

/// Whether the kernel's config (`/boot/config-<release>`) can unpack a gzip initramfs.
pub fn kernel_takes_gzip(config: &str) -> bool {
    config.lines().any(|line| line.trim() == "CONFIG_RD_GZIP=y")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_archive_has_console_init_and_load_order() {
        let modules = [
            Module {
                stem: "failover".into(),
                object: vec![1],
            },
            Module {
                stem: "virtio-rng".into(),
                object: vec![2],
            },
        ];

        let archive = build_archive(vec![0x7f], &modules);

        let paths: Vec<_> = archive.paths().collect();
        assert_eq!(
            paths,
            [
                "bin",
                "bin/awk",
                "bin/busybox",
                "bin/cat",
                "bin/echo",
                "bin/insmod",
                "bin/ls",
                "bin/mkdir",
                "bin/mount",
                "bin/poweroff",
                "bin/sed",
                "bin/setsid",
                "bin/sh",
                "bin/sleep",
                "bin/sync",
                "bin/uname",
                "dev",
                "dev/console",
                "dev/null",
                "init",
                "lib",
                "lib/modules",
                "lib/modules/failover.ko",
                "lib/modules/load-order",
                "lib/modules/virtio-rng.ko",
                "mnt",
                "proc",
                "root",
                "sbin",
                "sys",
                "tmp",
                "usr",
                "usr/bin",
                "usr/sbin",
            ]
        );
    }

    #[test]
    fn test_archive_build_is_reproducible() {
        let modules = [Module {
            stem: "ext4".into(),
            object: b"\x7fELF...".to_vec(),
        }];

        let first = gzip(&build_archive(b"busybox".to_vec(), &modules).to_bytes()).expect("gzip");
        let second = gzip(&build_archive(b"busybox".to_vec(), &modules).to_bytes()).expect("gzip");

        assert_eq!(first, second);
    }

    #[test]
    fn test_gzip_header_has_no_timestamp() {
        let compressed = gzip(b"x").expect("gzip");

        // ID1 ID2 CM FLG MTIME(4) XFL OS: deflate, no flags, mtime 0, Unix.
        assert_eq!(&compressed[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&compressed[4..8], &[0, 0, 0, 0]);
        assert_eq!(compressed[9], 3);
    }

    #[test]
    fn test_init_prints_ready_line_and_runs_command_after_separator() {
        assert!(INIT_SCRIPT.contains(&format!("echo \"{READY_LINE}\"\n")));
        assert!(INIT_SCRIPT.contains(r#"sh -c "${cmdline#* -- }""#));
        assert!(INIT_SCRIPT.ends_with("sync\npoweroff -f\n"));
    }

    #[test]
    fn test_kernel_takes_gzip_reads_config_line() {
        assert!(kernel_takes_gzip("CONFIG_RD_BZIP2=y\nCONFIG_RD_GZIP=y\n"));
        assert!(!kernel_takes_gzip("# CONFIG_RD_GZIP is not set\n"));
    }

    #[test]
    fn test_module_stem_accepts_ko_and_ko_xz_only() {
        let stems: Vec<_> = ["virtio-rng.ko.xz", "ext4.ko", "modules.order"]
            .into_iter()
            .map(module_stem)
            .collect();

        assert_eq!(stems, [Some("virtio-rng"), Some("ext4"), None]);
    }
}
