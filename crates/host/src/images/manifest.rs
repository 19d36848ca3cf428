//! `manifest.txt`: what a cache directory's images were built from.
//!
//! One record a line, words separated by single spaces:
//!
//! ```text
//! # comment
//! format 4
//! mirror <url>
//! suite <suite>
//! kernel-version <release>
//! package <role> <name> <version> <filename> <size> <sha256>
//! file <name> <size> <sha256>
//! note <free text>
//! ```

use std::path::Path;

use super::index::PackageEntry;
use super::ImagesError;

/// The format this ftvm writes. It changes with the manifest's syntax and also with
/// what the images contain, so that `fetch` rebuilds a cache an older ftvm made.
const FORMAT: &str = "4";
/// Formats of older ftvms: still read (to tell the user to fetch again), never reused.
/// 1: no mawk and libc6 packages, all modules loaded at boot. 3: gzip'd initramfs.
const OLD_FORMATS: &[&str] = &["1", "2", "3"];

/// A package the images were built from, with what it provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRecord {
    /// What the package provides: `firmware`, `kernel`, `busybox`, `awk` or `libc`.
    pub role: String,
    /// The index entry it was downloaded by.
    pub entry: PackageEntry,
}

/// A file the fetch wrote into the cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// The file name in the cache directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// The contents of `manifest.txt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The mirror the packages came from.
    pub mirror: String,
    /// The Debian suite.
    pub suite: String,
    /// The kernel release (`uname -r`).
    pub kernel_version: String,
    /// The packages, in the order firmware, kernel, busybox, awk, libc.
    pub packages: Vec<PackageRecord>,
    /// The files built from them.
    pub files: Vec<FileRecord>,
    /// Remarks, such as modules left out because the kernel has them built in.
    pub notes: Vec<String>,
    /// Whether it was written by an older ftvm (an older `format`): its images lack
    /// what this one puts in them, and `fetch` builds them again.
    pub outdated: bool,
}

impl Manifest {
    /// Writes the manifest as text.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# ftvm guest images: written by `ftvm images fetch`\n");
        out.push_str(&format!("format {FORMAT}\n"));
        out.push_str(&format!("mirror {}\n", self.mirror));
        out.push_str(&format!("suite {}\n", self.suite));
        out.push_str(&format!("kernel-version {}\n", self.kernel_version));
        for p in &self.packages {
            let e = &p.entry;
            out.push_str(&format!(
                "package {} {} {} {} {} {}\n",
                p.role, e.package, e.version, e.filename, e.size, e.sha256
            ));
        }
        for f in &self.files {
            out.push_str(&format!("file {} {} {}\n", f.name, f.size, f.sha256));
        }
        for note in &self.notes {
            out.push_str(&format!("note {note}\n"));
        }
        out
    }

    /// Parses manifest text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ImagesError> {
        let bad = |reason: String| ImagesError::BadManifest {
            path: path.to_path_buf(),
            reason,
        };
        let mut manifest = Manifest::default();
        let mut format = None;
        for (number, line) in (1..).zip(text.lines()) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            let words: Vec<&str> = rest.split(' ').collect();
            let size = |word: &str| {
                word.parse::<u64>()
                    .map_err(|_| bad(format!("line {number}: malformed size {word:?}")))
            };
            match (key, words.as_slice()) {
                ("format", [v]) => format = Some(v.to_string()),
                ("mirror", [v]) => manifest.mirror = v.to_string(),
                ("suite", [v]) => manifest.suite = v.to_string(),
                ("kernel-version", [v]) => manifest.kernel_version = v.to_string(),
                ("package", [role, package, version, filename, sz, sha256]) => {
                    manifest.packages.push(PackageRecord {
                        role: role.to_string(),
                        entry: PackageEntry {
                            package: package.to_string(),
                            version: version.to_string(),
                            architecture: String::new(),
                            filename: filename.to_string(),
                            sha256: sha256.to_string(),
                            size: size(sz)?,
                        },
                    })
                }
                ("file", [name, sz, sha256]) => manifest.files.push(FileRecord {
                    name: name.to_string(),
                    size: size(sz)?,
                    sha256: sha256.to_string(),
                }),
                ("note", _) => manifest.notes.push(rest.to_string()),
                _ => return Err(bad(format!("line {number}: unexpected {line:?}"))),
            }
        }
        match format.as_deref() {
            Some(FORMAT) => {}
            Some(old) if OLD_FORMATS.contains(&old) => manifest.outdated = true,
            Some(other) => return Err(bad(format!("unknown format {other}"))),
            None => return Err(bad("no format line".into())),
        }
        if manifest.kernel_version.is_empty() {
            return Err(bad("no kernel-version line".into()));
        }
        Ok(manifest)
    }

    /// The record of the file `name`.
    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            mirror: "http://mirror.example/debian".into(),
            suite: "trixie".into(),
            kernel_version: "6.12.9+deb13-riscv64".into(),
            packages: vec![PackageRecord {
                role: "firmware".into(),
                entry: PackageEntry {
                    package: "opensbi".into(),
                    version: "1.6-1".into(),
                    architecture: String::new(),
                    filename: "pool/main/o/opensbi/opensbi_1.6-1_all.deb".into(),
                    sha256: "ab".repeat(32),
                    size: 204072,
                },
            }],
            files: vec![FileRecord {
                name: "initrd.img".into(),
                size: 3,
                sha256: "cd".repeat(32),
            }],
            notes: vec!["crc16: built into the kernel".into()],
            outdated: false,
        }
    }

    #[test]
    fn test_manifest_text_round_trips() {
        let manifest = sample();

        let parsed = Manifest::parse(&manifest.to_text(), Path::new("manifest.txt"));

        assert_eq!(parsed.expect("valid manifest"), manifest);
    }

    #[test]
    fn test_manifest_text_lists_package_and_file_lines() {
        let text = sample().to_text();

        assert_eq!(
            text.lines().skip(5).collect::<Vec<_>>(),
            [
                format!(
                    "package firmware opensbi 1.6-1 pool/main/o/opensbi/opensbi_1.6-1_all.deb \
                     204072 {}",
                    "ab".repeat(32)
                ),
                format!("file initrd.img 3 {}", "cd".repeat(32)),
                "note crc16: built into the kernel".to_string(),
            ]
        );
    }

    #[test]
    fn test_manifest_of_older_format_is_read_as_outdated() {
        let text = sample().to_text().replace("\nformat 4\n", "\nformat 1\n");

        let parsed = Manifest::parse(&text, Path::new("manifest.txt")).expect("old format");

        assert_eq!(
            parsed,
            Manifest {
                outdated: true,
                ..sample()
            }
        );
    }

    #[test]
    fn test_manifest_without_format_is_rejected() {
        let err = Manifest::parse("kernel-version 6.12\n", Path::new("/c/manifest.txt"))
            .expect_err("no format");

        assert_eq!(
            err.to_string(),
            "malformed manifest /c/manifest.txt: no format line"
        );
    }
}
