//! The default guest: Debian's riscv64 kernel and OpenSBI, with a busybox initramfs.
//!
//! [`fetch`] downloads the packages from the Debian mirror the host's apt uses (never a
//! mirror written into ftvm), checks them against the archive's index, and builds the
//! boot files; [`locate`] finds them again without the network.
//!
//! The cache directory ([`default_cache_dir`]) holds:
//!
//! ```text
//! fw_dynamic.bin   OpenSBI, generic platform, dynamic-info firmware (opensbi package)
//! vmlinux          the kernel: a flat RISC-V Image, loaded as is (linux-image-6.12.*)
//! initrd.img       the initramfs: cpio "newc", uncompressed, with busybox, mawk and the
//!                  glibc libraries it needs, kernel modules, /init and /bin/load-ext4
//! manifest.txt     mirror, packages (version, SHA-256), kernel release, file checksums
//! debs/            the downloaded .deb files, kept so a rebuild needs no network
//! ```
//!
//! The host needs `curl` (downloads) and `dpkg-deb` (unpacking).

/// `eprintln!` that ignores a closed or failing stderr: progress output must never
/// abort a fetch (a `| head` on the command line would otherwise panic it half-way).
macro_rules! stderr_line {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
/// `eprint!` that ignores a closed or failing stderr.
macro_rules! stderr_text {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, $($arg)*);
        let _ = stderr.flush();
    }};
}
pub(crate) use {stderr_line, stderr_text};

pub mod cpio;
mod error;
pub mod initramfs;

mod apt;
mod download;
mod elf;
mod index;
mod manifest;
mod modinfo;

#[cfg(test)]
mod fetch_tests;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use error::ImagesError;

use download::{human_bytes, sha256_file, sha256_hex, Expected};
use index::{KernelSeries, PackageEntry};
use manifest::{FileRecord, Manifest, PackageRecord};

/// The Debian suite the packages come from.
pub const SUITE: &str = "trixie";
/// The kernel image packages considered: `linux-image-6.12.<n>+deb13-riscv64`.
const KERNEL_SERIES: KernelSeries<'static> = KernelSeries {
    series: "6.12",
    suffix: "+deb13-riscv64",
};
const FIRMWARE_PACKAGE: &str = "opensbi";
const BUSYBOX_PACKAGE: &str = "busybox-static";
/// A real awk: busybox's has no math functions in Debian's build.
const AWK_PACKAGE: &str = "mawk";
/// The C library that mawk is linked against.
const LIBC_PACKAGE: &str = "libc6";
/// The roles of the packages a fetch uses, in the manifest's order.
const ROLES: &[&str] = &["firmware", "kernel", "busybox", "awk", "libc"];
const FIRMWARE_IN_PACKAGE: &str = "usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";

/// The firmware's file name in the cache directory.
pub const FIRMWARE_FILE: &str = "fw_dynamic.bin";
/// The kernel's file name in the cache directory.
pub const KERNEL_FILE: &str = "vmlinux";
/// The initramfs's file name in the cache directory.
pub const INITRD_FILE: &str = "initrd.img";
/// The manifest's file name in the cache directory.
pub const MANIFEST_FILE: &str = "manifest.txt";
/// The subdirectory of the cache directory that keeps the `.deb` files.
pub const DEBS_DIR: &str = "debs";

/// The boot files of the default guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImages {
    /// OpenSBI `fw_dynamic.bin`, to load at the start of DRAM.
    pub firmware: PathBuf,
    /// The kernel, a flat RISC-V `Image` to load as is at DRAM + 2 MiB.
    pub kernel: PathBuf,
    /// The initramfs (cpio "newc", not compressed: see [`fetch`]).
    pub initrd: PathBuf,
    /// The kernel release, as `uname -r` prints it (`6.12.57+deb13-riscv64`).
    pub kernel_version: String,
}

impl GuestImages {
    fn in_dir(dir: &Path, kernel_version: String) -> Self {
        Self {
            firmware: dir.join(FIRMWARE_FILE),
            kernel: dir.join(KERNEL_FILE),
            initrd: dir.join(INITRD_FILE),
            kernel_version,
        }
    }
}

/// How [`fetch`] goes about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOptions {
    /// Show download progress and steps on stderr.
    pub progress: bool,
    /// The mirror's base URL (`http://host/debian`), instead of the one in the host's
    /// apt sources.
    pub mirror: Option<String>,
    /// Consult the archive even when the cache is complete, and move to the newest
    /// kernel it has. Without it a complete cache is used as it is.
    pub refresh: bool,
}

/// The cache directory: `$FTVM_IMAGES` if set, else `$XDG_CACHE_HOME/ftvm/images`, else
/// `$HOME/.cache/ftvm/images` (else `.ftvm/images` under the working directory).
pub fn default_cache_dir() -> PathBuf {
    cache_dir_from(|name| std::env::var_os(name))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> PathBuf {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("FTVM_IMAGES") {
        return PathBuf::from(dir);
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return PathBuf::from(cache).join("ftvm").join("images");
    }
    match var("HOME") {
        Some(home) => PathBuf::from(home)
            .join(".cache")
            .join("ftvm")
            .join("images"),
        None => PathBuf::from(".ftvm").join("images"),
    }
}

/// Finds images that an earlier [`fetch`] put in `cache_dir`, without the network.
pub fn locate(cache_dir: &Path) -> Result<GuestImages, ImagesError> {
    let not_found = || ImagesError::NotFound {
        dir: cache_dir.to_path_buf(),
    };
    let manifest = read_manifest(cache_dir)?.ok_or_else(not_found)?;
    if manifest.outdated {
        return Err(ImagesError::Outdated {
            dir: cache_dir.to_path_buf(),
        });
    }
    let images = GuestImages::in_dir(cache_dir, manifest.kernel_version);
    if [&images.firmware, &images.kernel, &images.initrd]
        .iter()
        .all(|p| p.is_file())
    {
        Ok(images)
    } else {
        Err(not_found())
    }
}

/// Downloads the guest's packages and builds its boot files in `cache_dir`.
///
/// Idempotent: when the cache already holds images whose checksums match the manifest
/// (and `refresh` is off) nothing is downloaded or written. A `.deb` already in `debs/`
/// with the index's checksum is not downloaded again, and the initramfs is built
/// reproducibly, so a rebuild from the same packages gives the same bytes.
pub fn fetch(cache_dir: &Path, opts: &FetchOptions) -> Result<GuestImages, ImagesError> {
    let say = |message: &str| {
        if opts.progress {
            stderr_line!("{message}");
        }
    };
    let debs_dir = cache_dir.join(DEBS_DIR);
    std::fs::create_dir_all(&debs_dir).map_err(ImagesError::io("create directory", &debs_dir))?;

    // An outdated manifest's images are never taken as up to date; they are rebuilt from
    // its packages if it lists every role this ftvm needs, else from the archive's.
    let previous = read_manifest(cache_dir).ok().flatten();
    if let (Some(manifest), false) = (&previous, opts.refresh) {
        if !manifest.outdated && outputs_match(cache_dir, manifest)? {
            say(&format!(
                "guest images in {} are up to date (kernel {})",
                cache_dir.display(),
                manifest.kernel_version
            ));
            return Ok(GuestImages::in_dir(
                cache_dir,
                manifest.kernel_version.clone(),
            ));
        }
    }

    // What to build from: the packages of the last fetch while their .debs are intact
    // (no network needed), else the newest ones in the archive's index.
    let reusable = previous
        .clone()
        .filter(|_| !opts.refresh)
        .filter(|m| has_all_roles(&m.packages))
        .map(|m| -> Result<_, ImagesError> {
            for p in &m.packages {
                if !deb_is_cached(&debs_dir, &p.entry)? {
                    return Ok(None);
                }
            }
            Ok(Some(m))
        })
        .transpose()?
        .flatten();
    let (mirror, packages) = match reusable {
        Some(m) => {
            say("rebuilding from the packages in the cache");
            (m.mirror, m.packages)
        }
        None => {
            let mirror = match &opts.mirror {
                Some(m) => m.trim_end_matches('/').to_string(),
                None => apt::host_mirror()?,
            };
            say(&format!("Debian mirror: {mirror}"));
            let packages = choose_packages(&mirror, opts.progress)?;
            if let Some(manifest) = &previous {
                if !manifest.outdated
                    && same_packages(&manifest.packages, &packages)
                    && outputs_match(cache_dir, manifest)?
                {
                    say(&format!(
                        "guest images in {} are up to date: the archive has nothing newer \
                         (kernel {})",
                        cache_dir.display(),
                        manifest.kernel_version
                    ));
                    return Ok(GuestImages::in_dir(
                        cache_dir,
                        manifest.kernel_version.clone(),
                    ));
                }
            }
            for p in &packages {
                download_deb(&mirror, &debs_dir, &p.entry, opts.progress)?;
            }
            (mirror, packages)
        }
    };
    for p in &packages {
        say(&format!(
            "  {:8} {} {}",
            p.role, p.entry.package, p.entry.version
        ));
    }

    let built = build(cache_dir, &debs_dir, &packages, opts.progress)?;
    for note in &built.notes {
        say(&format!("note: {note}"));
    }
    let manifest = Manifest {
        mirror,
        suite: SUITE.to_string(),
        kernel_version: built.kernel_version.clone(),
        packages,
        files: built.files,
        notes: built.notes,
        outdated: false,
    };
    let manifest_path = cache_dir.join(MANIFEST_FILE);
    write_atomically(&manifest_path, manifest.to_text().as_bytes())?;
    say(&format!(
        "guest images ready in {} (kernel {})",
        cache_dir.display(),
        built.kernel_version
    ));
    Ok(GuestImages::in_dir(cache_dir, built.kernel_version))
}

fn read_manifest(cache_dir: &Path) -> Result<Option<Manifest>, ImagesError> {
    let path = cache_dir.join(MANIFEST_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Manifest::parse(&text, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImagesError::io("read", &path)(e)),
    }
}

/// Whether the three boot files exist with the sizes and checksums the manifest records.
fn outputs_match(cache_dir: &Path, manifest: &Manifest) -> Result<bool, ImagesError> {
    for name in [FIRMWARE_FILE, KERNEL_FILE, INITRD_FILE] {
        let Some(record) = manifest.file(name) else {
            return Ok(false);
        };
        let path = cache_dir.join(name);
        let size = std::fs::metadata(&path).map(|m| m.len()).ok();
        if size != Some(record.size) || sha256_file(&path)? != record.sha256 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Whether `packages` are one of each role in [`ROLES`], in that order.
fn has_all_roles(packages: &[PackageRecord]) -> bool {
    packages
        .iter()
        .map(|p| p.role.as_str())
        .eq(ROLES.iter().copied())
}

/// Whether two package lists name the same files (role, name, version and checksum).
fn same_packages(a: &[PackageRecord], b: &[PackageRecord]) -> bool {
    let key = |p: &PackageRecord| {
        (
            p.role.clone(),
            p.entry.package.clone(),
            p.entry.version.clone(),
            p.entry.sha256.clone(),
        )
    };
    a.len() == b.len() && a.iter().map(key).eq(b.iter().map(key))
}

fn deb_is_cached(debs_dir: &Path, entry: &PackageEntry) -> Result<bool, ImagesError> {
    let path = debs_dir.join(entry.deb_name());
    let size = std::fs::metadata(&path).map(|m| m.len()).ok();
    Ok(size == Some(entry.size) && sha256_file(&path)? == entry.sha256)
}

/// Reads the archive's index and picks the firmware, kernel, busybox, mawk and libc6
/// packages.
fn choose_packages(mirror: &str, progress: bool) -> Result<Vec<PackageRecord>, ImagesError> {
    let riscv64 = read_index(mirror, "riscv64", progress)?;
    let kernel = index::newest_kernel(&riscv64.1, KERNEL_SERIES).ok_or_else(|| {
        ImagesError::PackageNotFound {
            package: KERNEL_SERIES.pattern(),
            index: riscv64.0.clone(),
        }
    })?;
    let riscv64_package = |name: &str| {
        index::newest(&riscv64.1, name)
            .cloned()
            .ok_or_else(|| ImagesError::PackageNotFound {
                package: name.into(),
                index: riscv64.0.clone(),
            })
    };
    let busybox = riscv64_package(BUSYBOX_PACKAGE)?;
    let awk = riscv64_package(AWK_PACKAGE)?;
    let libc = riscv64_package(LIBC_PACKAGE)?;
    // Architecture-independent packages are listed in each architecture's index too;
    // the binary-all index is the fallback for a mirror that lists them only there.
    let firmware = match index::newest(&riscv64.1, FIRMWARE_PACKAGE) {
        Some(entry) => entry.clone(),
        None => {
            let all = read_index(mirror, "all", progress)?;
            index::newest(&all.1, FIRMWARE_PACKAGE)
                .cloned()
                .ok_or_else(|| ImagesError::PackageNotFound {
                    package: FIRMWARE_PACKAGE.into(),
                    index: format!("{} and {}", riscv64.0, all.0),
                })?
        }
    };
    Ok(vec![
        PackageRecord {
            role: "firmware".into(),
            entry: firmware,
        },
        PackageRecord {
            role: "kernel".into(),
            entry: kernel.clone(),
        },
        PackageRecord {
            role: "busybox".into(),
            entry: busybox,
        },
        PackageRecord {
            role: "awk".into(),
            entry: awk,
        },
        PackageRecord {
            role: "libc".into(),
            entry: libc,
        },
    ])
}

/// Downloads and parses `dists/<suite>/main/binary-<arch>/Packages.xz`; returns its URL
/// and entries.
fn read_index(
    mirror: &str,
    arch: &str,
    progress: bool,
) -> Result<(String, Vec<PackageEntry>), ImagesError> {
    let url = format!("{mirror}/dists/{SUITE}/main/binary-{arch}/Packages.xz");
    let compressed = download::fetch_bytes(&url, &format!("Packages.xz ({arch})"), progress)?;
    let text = initramfs::xz_decompress(compressed.as_slice(), &url)?;
    let text = String::from_utf8_lossy(&text);
    let entries = index::parse_packages(&text, &url)?;
    Ok((url, entries))
}

fn download_deb(
    mirror: &str,
    debs_dir: &Path,
    entry: &PackageEntry,
    progress: bool,
) -> Result<(), ImagesError> {
    if deb_is_cached(debs_dir, entry)? {
        if progress {
            stderr_line!("{}: already downloaded, checksum matches", entry.deb_name());
        }
        return Ok(());
    }
    if progress && debs_dir.join(entry.deb_name()).exists() {
        stderr_line!(
            "{}: cached copy does not match the index, downloading again",
            entry.deb_name()
        );
    }
    let url = format!("{mirror}/{}", entry.filename);
    let expected = Expected {
        sha256: &entry.sha256,
        size: entry.size,
    };
    download::fetch_verified(&url, &debs_dir.join(entry.deb_name()), expected, progress)
}

/// What [`build`] produced.
struct Built {
    kernel_version: String,
    files: Vec<FileRecord>,
    notes: Vec<String>,
}

/// Unpacks the packages into a scratch directory and writes the three boot files.
fn build(
    cache_dir: &Path,
    debs_dir: &Path,
    packages: &[PackageRecord],
    progress: bool,
) -> Result<Built, ImagesError> {
    let scratch = Scratch::create(cache_dir.join(".unpack"))?;
    let mut roots = Vec::new();
    for p in packages {
        let root = scratch.0.join(&p.role);
        if progress {
            stderr_line!("unpacking {}", p.entry.deb_name());
        }
        dpkg_extract(&debs_dir.join(p.entry.deb_name()), &root)?;
        roots.push((p, root));
    }
    let root_of = |role: &str| {
        roots
            .iter()
            .find(|(p, _)| p.role == role)
            .map(|(p, root)| (p.entry.package.as_str(), root.as_path()))
            .ok_or_else(|| ImagesError::MissingFile {
                package: format!("({role})"),
                path: "the package itself".into(),
            })
    };

    let (firmware_pkg, firmware_root) = root_of("firmware")?;
    let firmware = read_from_package(firmware_pkg, firmware_root, &[FIRMWARE_IN_PACKAGE])?;

    let (kernel_pkg, kernel_root) = root_of("kernel")?;
    let kernel_version = find_kernel_release(kernel_pkg, kernel_root)?;
    let kernel = read_from_package(
        kernel_pkg,
        kernel_root,
        &[&format!("boot/vmlinux-{kernel_version}")],
    )?;
    let modules_dir = [
        format!("usr/lib/modules/{kernel_version}"),
        format!("lib/modules/{kernel_version}"),
    ]
    .into_iter()
    .map(|p| kernel_root.join(p))
    .find(|p| p.is_dir())
    .ok_or_else(|| ImagesError::MissingFile {
        package: kernel_pkg.into(),
        path: format!("/usr/lib/modules/{kernel_version}"),
    })?;

    let (busybox_pkg, busybox_root) = root_of("busybox")?;
    let busybox = read_from_package(
        busybox_pkg,
        busybox_root,
        &["usr/bin/busybox", "bin/busybox"],
    )?;

    let (_, awk_root) = root_of("awk")?;
    let (_, libc_root) = root_of("libc")?;
    let userland = initramfs::collect_awk(awk_root, libc_root)?;

    let boot = initramfs::collect_modules(&modules_dir, initramfs::BOOT_MODULES)?;
    let mut ext4 = initramfs::collect_modules(&modules_dir, initramfs::EXT4_MODULES)?;
    // A dependency shared with the boot modules is loaded at boot already.
    ext4.modules
        .retain(|m| !boot.modules.iter().any(|b| b.stem == m.stem));
    if progress {
        let names = |set: &initramfs::ModuleSet| {
            let names: Vec<_> = set.modules.iter().map(|m| m.stem.as_str()).collect();
            names.join(" ")
        };
        stderr_line!(
            "building the initramfs; modules loaded at boot: {}; by load-ext4: {}",
            names(&boot),
            names(&ext4)
        );
        let files: Vec<_> = userland.files.iter().map(|f| f.path.as_str()).collect();
        stderr_line!("  awk: {}", files.join(" "));
    }
    let mut notes = boot.notes;
    notes.extend(ext4.notes);
    let contents = initramfs::Contents {
        busybox: initramfs::without_awk_applet(busybox)?,
        boot_modules: boot.modules,
        ext4_modules: ext4.modules,
        userland,
    };
    // Not compressed: the kernel then copies the archive instead of inflating it,
    // which took about 14 % of the interpreted boot's instructions before the first
    // user process (13.7 MB of cpio, 3.7 MB as gzip); the file only ever travels
    // from the host's page cache into guest RAM.
    let initrd = initramfs::build_archive(&contents).to_bytes();

    let mut files = Vec::new();
    for (name, data) in [
        (FIRMWARE_FILE, &firmware),
        (KERNEL_FILE, &kernel),
        (INITRD_FILE, &initrd),
    ] {
        write_atomically(&cache_dir.join(name), data)?;
        files.push(FileRecord {
            name: name.into(),
            size: data.len() as u64,
            sha256: sha256_hex(data),
        });
        if progress {
            stderr_line!("  wrote {name} ({})", human_bytes(data.len() as u64));
        }
    }
    Ok(Built {
        kernel_version,
        files,
        notes,
    })
}

/// The release of the kernel a package ships, from its `/boot/vmlinux-<release>`.
fn find_kernel_release(package: &str, root: &Path) -> Result<String, ImagesError> {
    let expected = index::kernel_release(package);
    if root.join(format!("boot/vmlinux-{expected}")).is_file() {
        return Ok(expected.to_string());
    }
    let boot = root.join("boot");
    let entries = std::fs::read_dir(&boot).map_err(|_| ImagesError::MissingFile {
        package: package.into(),
        path: "/boot/vmlinux-*".into(),
    })?;
    let mut releases: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinux-"))
                .map(str::to_string)
        })
        .collect();
    releases.sort();
    releases.pop().ok_or_else(|| ImagesError::MissingFile {
        package: package.into(),
        path: "/boot/vmlinux-*".into(),
    })
}

/// Reads the first of `candidates` (paths inside the package) that exists.
fn read_from_package(
    package: &str,
    root: &Path,
    candidates: &[&str],
) -> Result<Vec<u8>, ImagesError> {
    let path = candidates
        .iter()
        .map(|c| root.join(c))
        .find(|p| p.is_file())
        .ok_or_else(|| ImagesError::MissingFile {
            package: package.into(),
            path: format!("/{}", candidates.join(" or /")),
        })?;
    std::fs::read(&path).map_err(ImagesError::io("read", &path))
}

fn dpkg_extract(deb: &Path, dest: &Path) -> Result<(), ImagesError> {
    let output = Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(dest)
        .output()
        .map_err(|source| ImagesError::Spawn {
            program: "dpkg-deb".into(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(ImagesError::CommandFailed {
        command: format!("dpkg-deb -x {} {}", deb.display(), dest.display()),
        status: output.status.to_string(),
        stderr: stderr
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string(),
    })
}

/// Writes `path` through a temporary file and a rename, so a reader never sees half.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), ImagesError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).map_err(ImagesError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(ImagesError::io("rename", &tmp))
}

/// A directory removed, with its contents, when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn create(path: PathBuf) -> Result<Self, ImagesError> {
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(ImagesError::io("remove", &path))?;
        }
        std::fs::create_dir_all(&path).map_err(ImagesError::io("create directory", &path))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover scratch directory is removed by the next fetch.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.into())
    }

    #[test]
    fn test_cache_dir_prefers_ftvm_images() {
        let vars = [
            ("FTVM_IMAGES", "/img"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/h"),
        ];

        assert_eq!(cache_dir_from(env(&vars)), PathBuf::from("/img"));
    }

    #[test]
    fn test_cache_dir_uses_xdg_cache_home_then_home() {
        let xdg = [("XDG_CACHE_HOME", "/xdg"), ("HOME", "/h")];
        let home = [("XDG_CACHE_HOME", ""), ("HOME", "/h")];

        let dirs = [cache_dir_from(env(&xdg)), cache_dir_from(env(&home))];

        assert_eq!(
            dirs,
            [
                PathBuf::from("/xdg/ftvm/images"),
                PathBuf::from("/h/.cache/ftvm/images")
            ]
        );
    }

    #[test]
    fn test_locate_in_empty_dir_says_to_fetch() {
        let dir = std::env::temp_dir().join(format!("ftvm-images-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");

        let err = locate(&dir).expect_err("nothing fetched");

        assert_eq!(
            err.to_string(),
            format!(
                "guest images not found in {}: run `ftvm images fetch`",
                dir.display()
            )
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn test_locate_finds_files_listed_by_manifest() {
        let dir = std::env::temp_dir().join(format!("ftvm-images-found-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for name in [FIRMWARE_FILE, KERNEL_FILE, INITRD_FILE] {
            std::fs::write(dir.join(name), b"x").expect("write");
        }
        let manifest = Manifest {
            kernel_version: "6.12.9+deb13-riscv64".into(),
            ..Manifest::default()
        };
        std::fs::write(dir.join(MANIFEST_FILE), manifest.to_text()).expect("write");

        let images = locate(&dir).expect("complete cache");

        assert_eq!(
            images,
            GuestImages {
                firmware: dir.join("fw_dynamic.bin"),
                kernel: dir.join("vmlinux"),
                initrd: dir.join("initrd.img"),
                kernel_version: "6.12.9+deb13-riscv64".into(),
            }
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
