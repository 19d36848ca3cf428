//! The guest's initramfs: busybox, mawk with its libraries, the virtio and ext4
//! modules, and an `/init` script.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::cpio::CpioArchive;
use super::elf;
use super::modinfo::{self, canonical_name};
use super::ImagesError;

/// The modules `/init` loads at every boot, by file stem, in the order the guest needs
/// them: the virtio transports and devices, which are modules in Debian's kernel. Ones
/// this kernel has built in are skipped.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "virtio-rng",
];

/// The modules `/bin/load-ext4` loads on request: ext4 (which also mounts ext2) and what
/// it needs. `crc32c_generic` must be loaded before it, a request that no `depends=`
/// records. They are not loaded at boot: `ext4.ko` alone is about 7 MB, and checking
/// its signature and relocating it takes the guest many instructions.
pub const EXT4_MODULES: &[&str] = &["crc16", "mbcache", "jbd2", "crc32c_generic", "ext4"];

/// The order file of [`BOOT_MODULES`] in the initramfs.
pub const BOOT_ORDER_FILE: &str = "lib/modules/load-order";
/// The order file of [`EXT4_MODULES`] in the initramfs.
pub const EXT4_ORDER_FILE: &str = "lib/modules/ext4-order";

/// Applets linked in `/bin` at build time: the ones `/init` runs before it installs the
/// rest with `busybox --install -s`. `awk` is not one: it is mawk (busybox's awk has no
/// math functions), and busybox's applet is disabled ([`without_awk_applet`]).
pub const APPLETS: &[&str] = &[
    "cat", "echo", "insmod", "ls", "mkdir", "mount", "poweroff", "sed", "setsid", "sh", "sleep",
    "sync", "uname",
];

/// The multiarch directory of riscv64 libraries, where the guest's libraries go.
pub const LIB_DIR: &str = "usr/lib/riscv64-linux-gnu";

/// The line `/init` prints when the guest is ready for commands.
pub const READY_LINE: &str = "ftvm-guest: ready";

/// The `/init` of the initramfs (busybox `sh`).
///
/// Kernel arguments after the first ` -- ` are not interpreted by the kernel, so a
/// command placed there keeps its quotes; `/init` runs it with `sh -c` and powers off.
/// Without one it starts an interactive shell on the console. Only the
/// [`BOOT_MODULES`] are loaded; `/bin/load-ext4` loads the rest.
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
# The command to run: ftvm.cmd64=BASE64 (any length; the kernel ignores dotted
# parameters it does not know), else everything after " -- " (the kernel hands
# those words to init as arguments and panics beyond 32 of them).
cmdline=$(cat /proc/cmdline)
cmd=
set -f
for word in $cmdline; do
	case "$word" in
	ftvm.cmd64=*) cmd=$(echo "${word#ftvm.cmd64=}" | base64 -d) ;;
	--) break ;;
	esac
done
set +f
if [ -z "$cmd" ]; then
	case "$cmdline" in
	*" -- "*) cmd="${cmdline#* -- }" ;;
	esac
fi
if [ -n "$cmd" ]; then
	sh -c "$cmd"
elif command -v cttyhack >/dev/null; then
	setsid cttyhack sh
else
	sh
fi
sync
poweroff -f
"#;

/// `/bin/load-ext4`: loads the ext4 family in order, skipping modules already loaded
/// (`/proc/modules` names them with `_` for `-`). Exits non-zero if one fails.
pub const LOAD_EXT4_SCRIPT: &str = r#"#!/bin/sh
# Loads ext4 and the modules it needs (built by ftvm-host, images::initramfs).
status=0
while read -r module; do
	name=$(echo "$module" | tr - _)
	grep -q "^$name " /proc/modules && continue
	if ! insmod "/lib/modules/$module.ko"; then
		echo "load-ext4: cannot load module $module" >&2
		status=1
	fi
done </lib/modules/ext4-order
exit $status
"#;

/// A file of the initramfs that comes from a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagedFile {
    /// Its path in the initramfs, without a leading `/`.
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// Its contents.
    pub data: Vec<u8>,
}

/// Programs beyond busybox: their files, and symbolic links (path, target) to them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Userland {
    /// The files, sorted by path.
    pub files: Vec<PackagedFile>,
    /// The symbolic links, as (path, target).
    pub symlinks: Vec<(String, String)>,
}

/// Where libraries are looked for inside the packages, in this order.
const LIB_SEARCH: &[&str] = &[
    "usr/lib/riscv64-linux-gnu",
    "lib/riscv64-linux-gnu",
    "usr/lib",
    "lib",
];

/// Picks mawk from the unpacked `mawk` package and, from the unpacked `libc6` package
/// (and mawk's own, should it ship any), the dynamic loader its `PT_INTERP` names and
/// every library in the closure of its `DT_NEEDED` lists.
///
/// mawk goes to `/usr/bin/mawk` with `/usr/bin/awk` and `/bin/awk` linking to it (the
/// latter so that busybox's applet never takes its place). The loader goes to the path
/// `PT_INTERP` names; the libraries to [`LIB_DIR`], with `/lib/riscv64-linux-gnu`
/// linking there, so both of the loader's default directories have them.
pub fn collect_awk(mawk_root: &Path, libc_root: &Path) -> Result<Userland, ImagesError> {
    let mawk = read_in_package("mawk", mawk_root, &["usr/bin/mawk", "bin/mawk"])?;
    let info = elf::read_dynamic(&mawk, "/usr/bin/mawk")?;
    let mut files = vec![PackagedFile {
        path: "usr/bin/mawk".into(),
        mode: 0o755,
        data: mawk,
    }];
    let mut symlinks = vec![
        ("usr/bin/awk".to_string(), "mawk".to_string()),
        ("bin/awk".to_string(), "../usr/bin/mawk".to_string()),
    ];

    let mut wanted: Vec<String> = info.needed;
    wanted.reverse(); // Taken from the end: keep the order DT_NEEDED lists them in.
    let mut provided = BTreeSet::new();
    if let Some(interp) = &info.interpreter {
        let path = interp.trim_start_matches('/');
        let merged = match path.strip_prefix("usr/") {
            Some(rest) => rest.to_string(),
            None => format!("usr/{path}"),
        };
        let data = read_in_package("libc6", libc_root, &[path, &merged])?;
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        let needed = elf::read_dynamic(&data, interp)?.needed;
        files.push(PackagedFile {
            path: path.to_string(),
            mode: 0o755,
            data,
        });
        // The libraries that name the loader (libc.so.6 does) find it loaded already.
        provided.insert(name);
        wanted.extend(needed);
    }

    while let Some(name) = wanted.pop() {
        if !provided.insert(name.clone()) {
            continue;
        }
        let candidates: Vec<String> = LIB_SEARCH.iter().map(|d| format!("{d}/{name}")).collect();
        let candidates: Vec<&str> = candidates.iter().map(String::as_str).collect();
        let data = match read_in_package("libc6", libc_root, &candidates) {
            Ok(data) => data,
            Err(e) => read_in_package("mawk", mawk_root, &candidates).map_err(|_| e)?,
        };
        let path = format!("{LIB_DIR}/{name}");
        wanted.extend(elf::read_dynamic(&data, &path)?.needed);
        files.push(PackagedFile {
            path,
            mode: 0o644,
            data,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    symlinks.push((
        "lib/riscv64-linux-gnu".to_string(),
        "../usr/lib/riscv64-linux-gnu".to_string(),
    ));
    symlinks.sort();
    Ok(Userland { files, symlinks })
}

/// The name busybox's `awk` applet gets in [`without_awk_applet`]: no command's name,
/// and it sorts between `ash` and `b…` as `awk` did.
pub const DISABLED_AWK: &str = "aw_";

/// Renames the `awk` applet of a busybox binary to [`DISABLED_AWK`].
///
/// Debian's busybox is built with the "standalone shell" option: its `sh` runs an
/// applet for a command name it knows before it looks at `PATH`, so neither a link nor
/// `PATH` can make `awk` mean mawk. busybox finds applets by name in a sorted table of
/// NUL-terminated names (`…\0ash\0awk\0b…`); the entry is renamed in place, keeping
/// the order, so `awk` is no applet and the shell finds `/bin/awk`.
pub fn without_awk_applet(mut busybox: Vec<u8>) -> Result<Vec<u8>, ImagesError> {
    const ENTRY: &[u8] = b"\0ash\0awk\0";
    let found: Vec<usize> = busybox
        .windows(ENTRY.len())
        .enumerate()
        .filter(|(_, w)| *w == ENTRY)
        .map(|(at, _)| at)
        .collect();
    let [at] = found[..] else {
        return Err(ImagesError::BadExecutable {
            file: "/usr/bin/busybox".into(),
            reason: format!(
                "expected one awk entry in its applet table, found {}",
                found.len()
            ),
        });
    };
    let name = at + b"\0ash\0".len();
    busybox[name..name + 3].copy_from_slice(DISABLED_AWK.as_bytes());
    Ok(busybox)
}

/// Reads the first of `candidates` (paths inside the unpacked package at `root`) that
/// exists, following symbolic links inside the package (an absolute target is taken
/// relative to `root`, not the host's `/`).
fn read_in_package(
    package: &str,
    root: &Path,
    candidates: &[&str],
) -> Result<Vec<u8>, ImagesError> {
    let missing = || ImagesError::MissingFile {
        package: package.into(),
        path: format!("/{}", candidates.join(" or /")),
    };
    for candidate in candidates {
        let mut path = PathBuf::from(candidate);
        for _ in 0..16 {
            let full = root.join(&path);
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                break;
            };
            if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&full).map_err(ImagesError::io("read link", &full))?;
                path = match target.strip_prefix("/") {
                    Ok(absolute) => absolute.to_path_buf(),
                    Err(_) => path.parent().unwrap_or(Path::new("")).join(target),
                };
                continue;
            }
            if meta.is_file() {
                return std::fs::read(&full).map_err(ImagesError::io("read", &full));
            }
            break;
        }
    }
    Err(missing())
}

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

/// What goes into the initramfs besides `/init` and the fixed directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    /// The static busybox binary.
    pub busybox: Vec<u8>,
    /// The modules `/init` loads, in load order.
    pub boot_modules: Vec<Module>,
    /// The modules `/bin/load-ext4` loads, in load order.
    pub ext4_modules: Vec<Module>,
    /// mawk and its libraries.
    pub userland: Userland,
}

/// Assembles the initramfs.
pub fn build_archive(contents: &Contents) -> CpioArchive {
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
    archive.file("bin/busybox", 0o755, contents.busybox.clone());
    for applet in APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes().to_vec());
    archive.file("bin/load-ext4", 0o755, LOAD_EXT4_SCRIPT.as_bytes().to_vec());
    for (modules, order_file) in [
        (&contents.boot_modules, BOOT_ORDER_FILE),
        (&contents.ext4_modules, EXT4_ORDER_FILE),
    ] {
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
        archive.file(order_file, 0o644, order.into_bytes());
    }
    let userland = &contents.userland;
    let paths = userland.files.iter().map(|f| f.path.as_str());
    for path in paths.chain(userland.symlinks.iter().map(|(p, _)| p.as_str())) {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            archive.dir(&dir.to_string_lossy(), 0o755);
            parent = dir.parent();
        }
    }
    for file in &userland.files {
        archive.file(&file.path, file.mode, file.data.clone());
    }
    for (path, target) in &userland.symlinks {
        archive.symlink(path, target);
    }
    archive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(stem: &str, byte: u8) -> Module {
        Module {
            stem: stem.into(),
            object: vec![byte],
        }
    }

    fn contents() -> Contents {
        Contents {
            busybox: vec![0x7f],
            boot_modules: vec![module("failover", 1), module("virtio-rng", 2)],
            ext4_modules: vec![module("jbd2", 3), module("ext4", 4)],
            userland: Userland {
                files: vec![
                    PackagedFile {
                        path: "lib/ld-linux-riscv64-lp64d.so.1".into(),
                        mode: 0o755,
                        data: vec![5],
                    },
                    PackagedFile {
                        path: "usr/bin/mawk".into(),
                        mode: 0o755,
                        data: vec![6],
                    },
                    PackagedFile {
                        path: "usr/lib/riscv64-linux-gnu/libc.so.6".into(),
                        mode: 0o644,
                        data: vec![7],
                    },
                ],
                symlinks: vec![
                    ("bin/awk".into(), "../usr/bin/mawk".into()),
                    (
                        "lib/riscv64-linux-gnu".into(),
                        "../usr/lib/riscv64-linux-gnu".into(),
                    ),
                    ("usr/bin/awk".into(), "mawk".into()),
                ],
            },
        }
    }

    fn file_data<'a>(archive: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let field = |at: usize, i: usize| {
            let hex = std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).ok()?;
            usize::from_str_radix(hex, 16).ok()
        };
        let align = |n: usize| (n + 3) & !3;
        let mut at = 0;
        loop {
            let (size, name_size) = (field(at, 6)?, field(at, 11)?);
            let entry = std::str::from_utf8(&archive[at + 110..at + 109 + name_size]).ok()?;
            let data_at = align(at + 110 + name_size);
            if entry == name {
                return Some(&archive[data_at..data_at + size]);
            }
            if entry == "TRAILER!!!" {
                return None;
            }
            at = align(data_at + size);
        }
    }

    #[test]
    fn test_archive_has_console_init_modules_and_awk() {
        let archive = build_archive(&contents());

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
                "bin/load-ext4",
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
                "lib/ld-linux-riscv64-lp64d.so.1",
                "lib/modules",
                "lib/modules/ext4-order",
                "lib/modules/ext4.ko",
                "lib/modules/failover.ko",
                "lib/modules/jbd2.ko",
                "lib/modules/load-order",
                "lib/modules/virtio-rng.ko",
                "lib/riscv64-linux-gnu",
                "mnt",
                "proc",
                "root",
                "sbin",
                "sys",
                "tmp",
                "usr",
                "usr/bin",
                "usr/bin/awk",
                "usr/bin/mawk",
                "usr/lib",
                "usr/lib/riscv64-linux-gnu",
                "usr/lib/riscv64-linux-gnu/libc.so.6",
                "usr/sbin",
            ]
        );
    }

    #[test]
    fn test_archive_splits_boot_and_ext4_load_orders() {
        let bytes = build_archive(&contents()).to_bytes();

        let orders = [
            file_data(&bytes, BOOT_ORDER_FILE),
            file_data(&bytes, EXT4_ORDER_FILE),
        ];

        assert_eq!(
            orders,
            [
                Some(&b"failover\nvirtio-rng\n"[..]),
                Some(&b"jbd2\next4\n"[..])
            ]
        );
    }

    #[test]
    fn test_archive_build_is_reproducible() {
        let first = build_archive(&contents()).to_bytes();
        let second = build_archive(&contents()).to_bytes();

        assert_eq!(first, second);
    }

    #[test]
    fn test_init_loads_boot_modules_before_ready_and_not_ext4() {
        let load = INIT_SCRIPT.find("done </lib/modules/load-order\n");
        let ready = INIT_SCRIPT.find(READY_LINE);

        assert!(load.is_some() && ready.is_some() && load < ready);
        assert!(!INIT_SCRIPT.contains("ext4"));
        assert!(LOAD_EXT4_SCRIPT.contains("done </lib/modules/ext4-order\n"));
        assert!(LOAD_EXT4_SCRIPT.contains("/proc/modules && continue"));
    }

    #[test]
    fn test_without_awk_applet_renames_table_entry_in_place() {
        let busybox = b"\x7fELF awk\0\0arping\0ash\0awk\0base64\0".to_vec();

        let patched = without_awk_applet(busybox).expect("one awk entry");

        assert_eq!(patched, b"\x7fELF awk\0\0arping\0ash\0aw_\0base64\0");
    }

    #[test]
    fn test_without_awk_applet_refuses_binary_without_entry() {
        let err = without_awk_applet(b"\0ash\0base64\0".to_vec()).expect_err("no awk");

        assert_eq!(
            err.to_string(),
            "cannot read executable /usr/bin/busybox: expected one awk entry in its applet \
             table, found 0"
        );
    }

    fn put(root: &Path, path: &str, data: &[u8]) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create dirs");
        std::fs::write(path, data).expect("write");
    }

    #[test]
    fn test_collect_awk_takes_loader_and_needed_closure_only() {
        use super::super::elf::tests::synthetic_executable;
        let tmp = std::env::temp_dir().join(format!("ftvm-collect-awk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let (mawk, libc) = (tmp.join("mawk"), tmp.join("libc6"));
        let interp = "/lib/ld-linux-riscv64-lp64d.so.1";
        let ld = "ld-linux-riscv64-lp64d.so.1";
        let mawk_elf = synthetic_executable(Some(interp), &["libm.so.6", "libc.so.6"]);
        put(&mawk, "usr/bin/mawk", &mawk_elf);
        // Merged /usr: the loader is in /usr/lib although PT_INTERP names /lib.
        put(
            &libc,
            &format!("usr/lib/{ld}"),
            &synthetic_executable(None, &[]),
        );
        let libc_so = synthetic_executable(None, &[ld]);
        put(&libc, &format!("{LIB_DIR}/libc.so.6"), &libc_so);
        let libm_so = synthetic_executable(None, &["libc.so.6"]);
        put(&libc, &format!("{LIB_DIR}/libm.so.6"), &libm_so);
        put(&libc, &format!("{LIB_DIR}/libresolv.so.2"), &libc_so);
        put(&libc, "usr/share/doc/libc6/copyright", b"text");

        let userland = collect_awk(&mawk, &libc).expect("mawk and its libraries");

        let files: Vec<_> = userland
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.mode))
            .collect();
        assert_eq!(
            files,
            [
                ("lib/ld-linux-riscv64-lp64d.so.1", 0o755),
                ("usr/bin/mawk", 0o755),
                ("usr/lib/riscv64-linux-gnu/libc.so.6", 0o644),
                ("usr/lib/riscv64-linux-gnu/libm.so.6", 0o644),
            ]
        );
        assert_eq!(
            userland.symlinks,
            [
                ("bin/awk".to_string(), "../usr/bin/mawk".to_string()),
                (
                    "lib/riscv64-linux-gnu".to_string(),
                    "../usr/lib/riscv64-linux-gnu".to_string()
                ),
                ("usr/bin/awk".to_string(), "mawk".to_string()),
            ]
        );
        assert_eq!(userland.files[1].data, mawk_elf);
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }

    #[test]
    fn test_collect_awk_names_missing_library() {
        use super::super::elf::tests::synthetic_executable;
        let tmp = std::env::temp_dir().join(format!("ftvm-awk-missing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let (mawk, libc) = (tmp.join("mawk"), tmp.join("libc6"));
        put(
            &mawk,
            "usr/bin/mawk",
            &synthetic_executable(None, &["libm.so.6"]),
        );
        std::fs::create_dir_all(&libc).expect("create dir");

        let err = collect_awk(&mawk, &libc).expect_err("no libm");

        assert_eq!(
            err.to_string(),
            "package libc6 has no /usr/lib/riscv64-linux-gnu/libm.so.6 or \
             /lib/riscv64-linux-gnu/libm.so.6 or /usr/lib/libm.so.6 or /lib/libm.so.6"
        );
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }

    #[test]
    fn test_init_prints_ready_line_and_runs_command_after_separator_or_in_cmd64() {
        assert!(INIT_SCRIPT.contains(&format!("echo \"{READY_LINE}\"\n")));
        assert!(INIT_SCRIPT.contains(r#"*" -- "*) cmd="${cmdline#* -- }" ;;"#));
        assert!(INIT_SCRIPT
            .contains(r#"ftvm.cmd64=*) cmd=$(echo "${word#ftvm.cmd64=}" | base64 -d) ;;"#));
        assert!(INIT_SCRIPT.contains("\tsh -c \"$cmd\"\n"));
        assert!(INIT_SCRIPT.ends_with("sync\npoweroff -f\n"));
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
