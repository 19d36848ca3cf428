//! `fetch` end to end without the network: synthetic packages, built with `dpkg-deb`,
//! sit in the cache as a previous fetch would have left them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::download::sha256_file;
use super::elf::tests::synthetic_executable;
use super::index::PackageEntry;
use super::manifest::{Manifest, PackageRecord};
use super::modinfo::tests::synthetic_module;
use super::*;

const RELEASE: &str = "6.12.9+deb13-riscv64";
const LOADER: &str = "/lib/ld-linux-riscv64-lp64d.so.1";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("ftvm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn put(root: &Path, path: &str, data: &[u8]) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("create dirs");
    std::fs::write(path, data).expect("write");
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    lzma_rs::xz_compress(&mut &data[..], &mut out).expect("xz");
    out
}

/// Builds `<name>_<version>_<arch>.deb` from `files` into `debs`; returns its record.
fn make_deb(
    work: &Path,
    debs: &Path,
    role: &str,
    name: &str,
    files: &[(&str, Vec<u8>)],
) -> PackageRecord {
    let root = work.join(name);
    for (path, data) in files {
        put(&root, path, data);
    }
    let control = format!(
        "Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: ftvm <ftvm@localhost>\n\
         Description: synthetic test package\n"
    );
    put(&root, "DEBIAN/control", control.as_bytes());
    let deb = debs.join(format!("{name}_1.0-1_all.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&deb)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run dpkg-deb");
    assert!(status.success());
    PackageRecord {
        role: role.into(),
        entry: PackageEntry {
            package: name.into(),
            version: "1.0-1".into(),
            architecture: "all".into(),
            filename: format!("pool/main/x/{name}/{name}_1.0-1_all.deb"),
            sha256: sha256_file(&deb).expect("hash"),
            size: std::fs::metadata(&deb).expect("stat").len(),
        },
    }
}

fn module(name: &str, depends: &str) -> Vec<u8> {
    xz(&synthetic_module(
        format!("depends={depends}\0name={name}\0").as_bytes(),
    ))
}

/// A cache directory holding a manifest and the five packages, but no boot files.
fn seeded_cache(tmp: &Path) -> PathBuf {
    let cache = tmp.join("cache");
    let debs = cache.join(DEBS_DIR);
    std::fs::create_dir_all(&debs).expect("create debs dir");
    let mods = format!("usr/lib/modules/{RELEASE}");
    let packages = vec![
        make_deb(
            tmp,
            &debs,
            "firmware",
            "opensbi",
            &[(FIRMWARE_IN_PACKAGE, b"SBI".to_vec())],
        ),
        make_deb(
            tmp,
            &debs,
            "kernel",
            &format!("linux-image-{RELEASE}"),
            &[
                (&format!("boot/vmlinux-{RELEASE}"), b"MZ kernel".to_vec()),
                (
                    &format!("{mods}/modules.builtin"),
                    b"kernel/lib/crc16.ko\n".to_vec(),
                ),
                (
                    &format!("{mods}/kernel/net/core/failover.ko.xz"),
                    module("failover", ""),
                ),
                (
                    &format!("{mods}/kernel/drivers/net/net_failover.ko.xz"),
                    module("net_failover", "failover"),
                ),
                (
                    &format!("{mods}/kernel/drivers/net/virtio_net.ko.xz"),
                    module("virtio_net", "net_failover"),
                ),
                (
                    &format!("{mods}/kernel/drivers/char/virtio-rng.ko.xz"),
                    module("virtio_rng", ""),
                ),
                (
                    &format!("{mods}/kernel/fs/jbd2/jbd2.ko.xz"),
                    module("jbd2", ""),
                ),
                (
                    &format!("{mods}/kernel/fs/ext4/ext4.ko.xz"),
                    module("ext4", "jbd2"),
                ),
            ],
        ),
        make_deb(
            tmp,
            &debs,
            "busybox",
            "busybox-static",
            &[("usr/bin/busybox", b"\x7fELF bb\0ash\0awk\0bc\0".to_vec())],
        ),
        make_deb(
            tmp,
            &debs,
            "awk",
            "mawk",
            &[(
                "usr/bin/mawk",
                synthetic_executable(Some(LOADER), &["libm.so.6", "libc.so.6"]),
            )],
        ),
        make_deb(
            tmp,
            &debs,
            "libc",
            "libc6",
            &[
                (
                    "usr/lib/ld-linux-riscv64-lp64d.so.1",
                    synthetic_executable(None, &[]),
                ),
                (
                    "usr/lib/riscv64-linux-gnu/libc.so.6",
                    synthetic_executable(None, &["ld-linux-riscv64-lp64d.so.1"]),
                ),
                (
                    "usr/lib/riscv64-linux-gnu/libm.so.6",
                    synthetic_executable(None, &["libc.so.6"]),
                ),
                (
                    "usr/lib/riscv64-linux-gnu/libanl.so.1",
                    synthetic_executable(None, &["libc.so.6"]),
                ),
            ],
        ),
    ];
    let manifest = Manifest {
        mirror: "http://mirror.invalid/debian".into(),
        suite: SUITE.into(),
        kernel_version: RELEASE.into(),
        packages,
        ..Manifest::default()
    };
    std::fs::write(cache.join(MANIFEST_FILE), manifest.to_text()).expect("write manifest");
    cache
}

/// The regular files of a newc archive, as (name, data).
fn cpio_files(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
    let field = |at: usize, i: usize| {
        let hex = std::str::from_utf8(&archive[at + 6 + 8 * i..at + 14 + 8 * i]).expect("ascii");
        usize::from_str_radix(hex, 16).expect("hex")
    };
    let align = |n: usize| (n + 3) & !3;
    let mut files = Vec::new();
    let mut at = 0;
    loop {
        let (mode, size, name_size) = (field(at, 1), field(at, 6), field(at, 11));
        let name =
            String::from_utf8(archive[at + 110..at + 110 + name_size - 1].to_vec()).expect("name");
        let data_at = align(at + 110 + name_size);
        if name == "TRAILER!!!" {
            return files;
        }
        if mode & 0o170000 == 0o100000 {
            files.push((name, archive[data_at..data_at + size].to_vec()));
        }
        at = align(data_at + size);
    }
}

#[test]
fn test_fetch_builds_boot_files_from_cached_packages() {
    let tmp = TempDir::new("fetch-build");
    let cache = seeded_cache(&tmp.0);

    let images = fetch(&cache, &FetchOptions::default()).expect("fetch from cache");

    let initrd = cpio_files(&std::fs::read(&images.initrd).expect("read initrd"));
    let text_of = |path: &str| {
        initrd
            .iter()
            .find(|(name, _)| name == path)
            .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
    };
    let libs: Vec<_> = initrd
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|n| n.contains(".so"))
        .collect();
    let manifest = std::fs::read_to_string(cache.join(MANIFEST_FILE)).expect("manifest");
    assert_eq!(images.kernel_version, RELEASE);
    assert_eq!(std::fs::read(&images.firmware).expect("firmware"), b"SBI");
    assert_eq!(std::fs::read(&images.kernel).expect("kernel"), b"MZ kernel");
    assert_eq!(
        text_of("lib/modules/load-order").as_deref(),
        Some("failover\nnet_failover\nvirtio_net\nvirtio-rng\n")
    );
    assert_eq!(
        text_of("lib/modules/ext4-order").as_deref(),
        Some("jbd2\next4\n")
    );
    assert_eq!(
        libs,
        [
            "lib/ld-linux-riscv64-lp64d.so.1",
            "usr/lib/riscv64-linux-gnu/libc.so.6",
            "usr/lib/riscv64-linux-gnu/libm.so.6",
        ]
    );
    assert_eq!(
        text_of("bin/busybox").as_deref(),
        Some("\x7fELF bb\0ash\0aw_\0bc\0")
    );
    assert!(manifest.contains("\nformat 4\n"), "{manifest}");
    assert!(manifest.contains("\npackage awk mawk 1.0-1 "), "{manifest}");
    assert!(
        manifest.contains("\npackage libc libc6 1.0-1 "),
        "{manifest}"
    );
    assert!(
        manifest.contains("\nnote crc16: built into the kernel\n"),
        "{manifest}"
    );
    assert!(
        manifest.contains("\nnote virtio_mmio: not in this kernel, skipped\n"),
        "{manifest}"
    );
    assert_eq!(locate(&cache).expect("locate"), images);
}

#[test]
fn test_fetch_rebuild_gives_byte_identical_initrd() {
    let tmp = TempDir::new("fetch-reproducible");
    let cache = seeded_cache(&tmp.0);
    let first = fetch(&cache, &FetchOptions::default()).expect("first fetch");
    let first_bytes = std::fs::read(&first.initrd).expect("read initrd");
    std::fs::remove_file(&first.initrd).expect("remove initrd");

    let second = fetch(&cache, &FetchOptions::default()).expect("second fetch");

    assert_eq!(
        std::fs::read(&second.initrd).expect("read initrd"),
        first_bytes
    );
}

#[test]
fn test_fetch_with_complete_cache_writes_nothing() {
    let tmp = TempDir::new("fetch-idempotent");
    let cache = seeded_cache(&tmp.0);
    let first = fetch(&cache, &FetchOptions::default()).expect("first fetch");
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    let before = [
        modified(&first.initrd),
        modified(&cache.join(MANIFEST_FILE)),
    ];

    // A mirror that cannot be reached: any network access would fail the fetch.
    let opts = FetchOptions {
        mirror: Some("http://127.0.0.1:9/debian".into()),
        ..FetchOptions::default()
    };
    let second = fetch(&cache, &opts).expect("second fetch");

    assert_eq!(second, first);
    assert_eq!(
        [
            modified(&second.initrd),
            modified(&cache.join(MANIFEST_FILE))
        ],
        before
    );
}

#[test]
fn test_fetch_rebuilds_cache_of_older_format_and_locate_refuses_it() {
    let tmp = TempDir::new("fetch-outdated");
    let cache = seeded_cache(&tmp.0);
    let first = fetch(&cache, &FetchOptions::default()).expect("first fetch");
    let first_bytes = std::fs::read(&first.initrd).expect("read initrd");
    // What an older ftvm left: its own initrd, recorded in a manifest of its format.
    let old_initrd = b"an initrd of an older ftvm";
    std::fs::write(&first.initrd, old_initrd).expect("write initrd");
    let manifest_path = cache.join(MANIFEST_FILE);
    let mut old = Manifest::parse(
        &std::fs::read_to_string(&manifest_path).expect("read manifest"),
        &manifest_path,
    )
    .expect("manifest");
    for file in old.files.iter_mut().filter(|f| f.name == INITRD_FILE) {
        file.size = old_initrd.len() as u64;
        file.sha256 = sha256_file(&first.initrd).expect("hash");
    }
    let old_text = old.to_text().replace("\nformat 4\n", "\nformat 1\n");
    std::fs::write(&manifest_path, old_text).expect("write manifest");

    let located = locate(&cache).map_err(|e| e.to_string());
    let second = fetch(&cache, &FetchOptions::default());

    assert_eq!(
        located,
        Err(format!(
            "guest images in {} were built by an older ftvm: run `ftvm images fetch`",
            cache.display()
        ))
    );
    // A real old manifest lists three packages, so the rebuild asks the archive; this one
    // lists all five, so it is rebuilt from the cache without the network.
    let second = second.expect("rebuild");
    assert_eq!(
        std::fs::read(&second.initrd).expect("read initrd"),
        first_bytes
    );
    assert!(locate(&cache).is_ok());
}
