//! The Debian package index (`Packages`) and the choice of packages from it.
//!
//! Formats: Debian Policy §5.1 (control file syntax), §5.6.12 (`Version`), and the
//! repository format's binary index (`dists/$SUITE/$COMPONENT/binary-$ARCH/Packages`).

use std::cmp::Ordering;

use super::ImagesError;

/// One stanza of a `Packages` index: the fields that fetching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageEntry {
    /// `Package`: the binary package name.
    pub package: String,
    /// `Version`: the Debian version.
    pub version: String,
    /// `Architecture`: `riscv64` or `all`.
    pub architecture: String,
    /// `Filename`: the path of the `.deb` under the mirror.
    pub filename: String,
    /// `SHA256`: the checksum of the `.deb`, lower-case hex.
    pub sha256: String,
    /// `Size`: the size of the `.deb` in bytes.
    pub size: u64,
}

impl PackageEntry {
    /// The file name of the `.deb` (the last component of `Filename`).
    pub fn deb_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// Parses a `Packages` index. `index` names it in errors.
///
/// Stanzas are separated by blank lines; continuation lines (starting with a space or a
/// tab) belong to the multi-line field before them and are ignored here.
pub fn parse_packages(text: &str, index: &str) -> Result<Vec<PackageEntry>, ImagesError> {
    let mut entries = Vec::new();
    let mut fields = StanzaFields::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if let Some(entry) = fields.finish(index)? {
                entries.push(entry);
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(ImagesError::BadIndex {
                index: index.to_string(),
                reason: format!("line without a field name: {line:?}"),
            });
        };
        let value = value.trim();
        let slot = match key {
            "Package" => &mut fields.package,
            "Version" => &mut fields.version,
            "Architecture" => &mut fields.architecture,
            "Filename" => &mut fields.filename,
            "SHA256" => &mut fields.sha256,
            "Size" => &mut fields.size,
            _ => continue,
        };
        *slot = Some(value.to_string());
    }
    Ok(entries)
}

#[derive(Default)]
struct StanzaFields {
    package: Option<String>,
    version: Option<String>,
    architecture: Option<String>,
    filename: Option<String>,
    sha256: Option<String>,
    size: Option<String>,
}

impl StanzaFields {
    fn finish(&mut self, index: &str) -> Result<Option<PackageEntry>, ImagesError> {
        let fields = std::mem::take(self);
        let Some(package) = fields.package else {
            return Ok(None); // Blank lines between stanzas, or a stanza-less tail.
        };
        let missing = |field: &str| ImagesError::BadIndex {
            index: index.to_string(),
            reason: format!("package {package} has no {field} field"),
        };
        let size_text = fields.size.ok_or_else(|| missing("Size"))?;
        let size = size_text.parse().map_err(|_| ImagesError::BadIndex {
            index: index.to_string(),
            reason: format!("package {package} has a malformed Size {size_text:?}"),
        })?;
        let sha256 = fields.sha256.ok_or_else(|| missing("SHA256"))?;
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImagesError::BadIndex {
                index: index.to_string(),
                reason: format!("package {package} has a malformed SHA256 {sha256:?}"),
            });
        }
        Ok(Some(PackageEntry {
            version: fields.version.ok_or_else(|| missing("Version"))?,
            architecture: fields.architecture.ok_or_else(|| missing("Architecture"))?,
            filename: fields.filename.ok_or_else(|| missing("Filename"))?,
            sha256: sha256.to_ascii_lowercase(),
            size,
            package,
        }))
    }
}

/// Compares two Debian versions as dpkg does (Debian Policy §5.6.12).
///
/// `[epoch:]upstream[-revision]`: epochs numerically, then upstream and revision with
/// the "non-digits, then digits" rule where `~` sorts before everything, even the end.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_upstream, a_revision) = split_version(a);
    let (b_epoch, b_upstream, b_revision) = split_version(b);
    a_epoch
        .cmp(&b_epoch)
        .then_with(|| compare_fragment(a_upstream, b_upstream))
        .then_with(|| compare_fragment(a_revision, b_revision))
}

fn split_version(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => {
            (epoch.parse().unwrap_or(0), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn compare_fragment(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        // Non-digit run, character by character.
        loop {
            let ca = a.first().filter(|c| !c.is_ascii_digit());
            let cb = b.first().filter(|c| !c.is_ascii_digit());
            if ca.is_none() && cb.is_none() {
                break;
            }
            let order = char_order(ca.copied()).cmp(&char_order(cb.copied()));
            if order != Ordering::Equal {
                return order;
            }
            a = &a[1..];
            b = &b[1..];
        }
        // Digit run, numerically (leading zeros do not count).
        let (na, rest_a) = split_digits(a);
        let (nb, rest_b) = split_digits(b);
        let order = compare_numeric(na, nb);
        if order != Ordering::Equal {
            return order;
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

/// The weight of a character in a non-digit run; `None` is the end of the run.
fn char_order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn split_digits(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| c.is_ascii_digit()).count();
    s.split_at(n)
}

fn compare_numeric(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Returns the newest entry of the package `name`.
pub fn newest<'a>(entries: &'a [PackageEntry], name: &str) -> Option<&'a PackageEntry> {
    entries
        .iter()
        .filter(|e| e.package == name)
        .max_by(|a, b| compare_versions(&a.version, &b.version))
}

/// The kernel flavour the guest runs: `linux-image-<series>.<n><suffix>`.
#[derive(Debug, Clone, Copy)]
pub struct KernelSeries<'a> {
    /// The upstream series, such as `6.12`.
    pub series: &'a str,
    /// What follows the patch level in the package name, such as `+deb13-riscv64`.
    pub suffix: &'a str,
}

impl KernelSeries<'_> {
    /// The patch level `n` if `package` is `linux-image-<series>.<n><suffix>` or the same
    /// with `-unsigned` after it, with whether it is the unsigned variant.
    fn patch_level(&self, package: &str) -> Option<(u64, bool)> {
        let rest = package
            .strip_prefix("linux-image-")?
            .strip_prefix(self.series)?
            .strip_prefix('.')?;
        let digits = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        let (n, tail) = rest.split_at(digits);
        let tail = tail.strip_prefix(self.suffix)?;
        let unsigned = match tail {
            "" => false,
            "-unsigned" => true,
            _ => return None,
        };
        Some((n.parse().ok()?, unsigned))
    }

    /// The pattern of package names, for messages.
    pub fn pattern(&self) -> String {
        format!("linux-image-{}.*{}", self.series, self.suffix)
    }
}

/// Returns the newest kernel image package of `series`: the largest patch level, then
/// the largest version; the signed (plain) name is preferred over `-unsigned` at a tie.
/// Debug-symbol packages (`-dbg`) never match.
pub fn newest_kernel<'a>(
    entries: &'a [PackageEntry],
    series: KernelSeries<'_>,
) -> Option<&'a PackageEntry> {
    entries
        .iter()
        .filter_map(|e| series.patch_level(&e.package).map(|key| (key, e)))
        .max_by(|((na, ua), a), ((nb, ub), b)| {
            na.cmp(nb)
                .then_with(|| compare_versions(&a.version, &b.version))
                .then_with(|| ub.cmp(ua))
        })
        .map(|(_, e)| e)
}

/// The kernel release (`uname -r`) that a kernel image package ships, from its name.
pub fn kernel_release(package: &str) -> &str {
    let release = package.strip_prefix("linux-image-").unwrap_or(package);
    release.strip_suffix("-unsigned").unwrap_or(release)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: opensbi
Version: 1.6-1
Installed-Size: 1874
Architecture: all
Description: RISC-V Open Source Supervisor Binary Interface
Filename: pool/main/o/opensbi/opensbi_1.6-1_all.deb
Size: 204072
SHA256: 0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef

Package: busybox-static
Source: busybox (1:1.37.0-6)
Version: 1:1.37.0-6+b9
Architecture: riscv64
Depends: libc6
Description-md5: 00
Filename: pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb
Size: 1000
SHA256: 1111111111111111111111111111111111111111111111111111111111111111
Description: a long
 description that continues: on this line
 .
 and this one
";

    fn entry(package: &str, version: &str) -> PackageEntry {
        PackageEntry {
            package: package.into(),
            version: version.into(),
            architecture: "riscv64".into(),
            filename: format!("pool/main/l/linux-signed/{package}_{version}_riscv64.deb"),
            sha256: "0".repeat(64),
            size: 1,
        }
    }

    #[test]
    fn test_parse_packages_reads_needed_fields_of_each_stanza() {
        let entries = parse_packages(INDEX, "Packages").expect("valid index");

        assert_eq!(
            entries,
            vec![
                PackageEntry {
                    package: "opensbi".into(),
                    version: "1.6-1".into(),
                    architecture: "all".into(),
                    filename: "pool/main/o/opensbi/opensbi_1.6-1_all.deb".into(),
                    sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                        .into(),
                    size: 204072,
                },
                PackageEntry {
                    package: "busybox-static".into(),
                    version: "1:1.37.0-6+b9".into(),
                    architecture: "riscv64".into(),
                    filename: "pool/main/b/busybox/busybox-static_1.37.0-6+b9_riscv64.deb".into(),
                    sha256: "1".repeat(64),
                    size: 1000,
                },
            ]
        );
    }

    #[test]
    fn test_parse_packages_missing_sha256_names_package() {
        let text = "Package: foo\nVersion: 1\nArchitecture: all\nFilename: f.deb\nSize: 1\n";

        let err = parse_packages(text, "idx").expect_err("no SHA256");

        assert_eq!(
            err.to_string(),
            "malformed package index idx: package foo has no SHA256 field"
        );
    }

    #[test]
    fn test_deb_name_is_last_path_component() {
        let entries = parse_packages(INDEX, "Packages").expect("valid index");

        assert_eq!(entries[0].deb_name(), "opensbi_1.6-1_all.deb");
    }

    #[test]
    fn test_compare_versions_follows_dpkg_rules() {
        let cases = [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "1.0-0", Ordering::Equal),
            ("1:0.1", "2.0", Ordering::Greater),
            ("6.12.9-1", "6.12.10-1", Ordering::Less),
            ("6.12.117-1", "6.12.107-1", Ordering::Greater),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~~", "1.0~", Ordering::Less),
            ("1.0a", "1.0", Ordering::Greater),
            ("1.0+b1", "1.0a", Ordering::Greater),
            ("1.37.0-6+b9", "1.37.0-6+b10", Ordering::Less),
            ("007", "7", Ordering::Equal),
            ("1.2-3-4", "1.2-3-5", Ordering::Less),
        ];

        let results: Vec<_> = cases
            .iter()
            .map(|(a, b, _)| compare_versions(a, b))
            .collect();

        assert_eq!(results, cases.iter().map(|c| c.2).collect::<Vec<_>>());
    }

    #[test]
    fn test_newest_kernel_takes_largest_patch_level_and_skips_dbg() {
        let entries = vec![
            entry("linux-image-6.12.9+deb13-riscv64", "6.12.9-1"),
            entry("linux-image-6.12.117+deb13-riscv64-dbg", "6.12.117-1"),
            entry("linux-image-6.12.107+deb13-riscv64", "6.12.107-1"),
            entry("linux-image-6.12.10+deb13-riscv64", "6.12.10-1"),
            entry("linux-image-6.12.99+deb13-amd64", "6.12.99-1"),
            entry("linux-image-6.13.1+deb13-riscv64", "6.13.1-1"),
            entry("linux-image-riscv64", "6.12.107-1"),
        ];
        let series = KernelSeries {
            series: "6.12",
            suffix: "+deb13-riscv64",
        };

        let chosen = newest_kernel(&entries, series).map(|e| e.package.as_str());

        assert_eq!(chosen, Some("linux-image-6.12.107+deb13-riscv64"));
    }

    #[test]
    fn test_newest_kernel_prefers_plain_over_unsigned_at_same_version() {
        let entries = vec![
            entry("linux-image-6.12.5+deb13-riscv64-unsigned", "6.12.5-1"),
            entry("linux-image-6.12.5+deb13-riscv64", "6.12.5-1"),
        ];
        let series = KernelSeries {
            series: "6.12",
            suffix: "+deb13-riscv64",
        };

        let chosen = newest_kernel(&entries, series).map(|e| e.package.as_str());

        assert_eq!(chosen, Some("linux-image-6.12.5+deb13-riscv64"));
    }

    #[test]
    fn test_newest_picks_highest_version_of_name() {
        let entries = vec![
            entry("busybox-static", "1:1.37.0-6+b9"),
            entry("busybox-static", "1:1.37.0-6+b10"),
            entry("busybox", "1:9"),
        ];

        let chosen = newest(&entries, "busybox-static").map(|e| e.version.as_str());

        assert_eq!(chosen, Some("1:1.37.0-6+b10"));
    }

    #[test]
    fn test_kernel_release_strips_prefix_and_unsigned() {
        assert_eq!(
            kernel_release("linux-image-6.12.5+deb13-riscv64-unsigned"),
            "6.12.5+deb13-riscv64"
        );
    }
}
