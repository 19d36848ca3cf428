//! A writer of reproducible cpio "newc" archives, the format of the Linux initramfs.
//!
//! Format: the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`.
//! Each entry is a 110-byte ASCII header — the magic `070701` and thirteen 8-digit hex
//! fields — then the NUL-terminated name, padded so the data starts on a multiple of 4,
//! then the data, padded to a multiple of 4. The archive ends with an entry named
//! `TRAILER!!!`.
//!
//! Reproducibility: entries are written sorted by path (which also puts every directory
//! before its contents, as the kernel's unpacker needs), with mtime 0, uid and gid 0, and
//! inodes numbered 1, 2, … in that order.

use std::collections::BTreeMap;

/// `S_IFDIR`, `S_IFREG`, `S_IFLNK`, `S_IFCHR` (inode(7)).
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev { major: u32, minor: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    permissions: u32,
    kind: Kind,
}

/// An archive being assembled; [`CpioArchive::to_bytes`] writes it.
///
/// Paths are relative to the archive root, without a leading `/` (`bin/busybox`).
/// Adding a path twice replaces the first entry.
#[derive(Debug, Default, Clone)]
pub struct CpioArchive {
    entries: BTreeMap<String, Entry>,
}

impl CpioArchive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with the given permission bits.
    pub fn dir(&mut self, path: &str, permissions: u32) -> &mut Self {
        self.insert(path, permissions, Kind::Dir)
    }

    /// Adds a regular file with the given permission bits and contents.
    pub fn file(&mut self, path: &str, permissions: u32, data: Vec<u8>) -> &mut Self {
        self.insert(path, permissions, Kind::File(data))
    }

    /// Adds a symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(path, 0o777, Kind::Symlink(target.to_string()))
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, permissions: u32, major: u32, minor: u32) -> &mut Self {
        self.insert(path, permissions, Kind::CharDev { major, minor })
    }

    fn insert(&mut self, path: &str, permissions: u32, kind: Kind) -> &mut Self {
        let path = path.trim_start_matches('/').to_string();
        self.entries.insert(
            path,
            Entry {
                permissions: permissions & 0o7777,
                kind,
            },
        );
        self
    }

    /// The paths in the order they will be written.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the archive, trailer included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&self.entries) {
            let (type_bits, nlink, data, (rdev_major, rdev_minor)) = match &entry.kind {
                Kind::Dir => (S_IFDIR, 2, &[][..], (0, 0)),
                Kind::File(data) => (S_IFREG, 1, data.as_slice(), (0, 0)),
                Kind::Symlink(target) => (S_IFLNK, 1, target.as_bytes(), (0, 0)),
                Kind::CharDev { major, minor } => (S_IFCHR, 1, &[][..], (*major, *minor)),
            };
            let header = Header {
                ino,
                mode: type_bits | entry.permissions,
                nlink,
                rdev_major,
                rdev_minor,
            };
            header.write(&mut out, path, data);
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            rdev_major: 0,
            rdev_minor: 0,
        };
        trailer.write(&mut out, TRAILER, &[]);
        out
    }
}

/// The fields of a header that vary between entries; the rest are fixed for
/// reproducibility (uid, gid, mtime, device of the containing file system, check: 0).
struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

impl Header {
    fn write(&self, out: &mut Vec<u8>, name: &str, data: &[u8]) {
        let name_size = name.len() + 1; // With the terminating NUL.
        let fields: [u64; 13] = [
            self.ino.into(),
            self.mode.into(),
            0, // uid
            0, // gid
            self.nlink.into(),
            0, // mtime
            data.len() as u64,
            0, // devmajor
            0, // devminor
            self.rdev_major.into(),
            self.rdev_minor.into(),
            name_size as u64,
            0, // check (only for the "070702" CRC format)
        ];
        out.extend_from_slice(MAGIC);
        for field in fields {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        pad4(out);
        out.extend_from_slice(data);
        pad4(out);
    }
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Joins header fields as they appear on disk, for readable golden bytes.
    fn header(fields: [&str; 13]) -> String {
        let mut s = String::from("070701");
        for f in fields {
            assert_eq!(f.len(), 8);
            s.push_str(f);
        }
        s
    }

    #[test]
    #[rustfmt::skip]
    fn test_tiny_archive_matches_golden_bytes() {
        let mut archive = CpioArchive::new();
        archive
            .file("/dev/x", 0o644, b"hi\n".to_vec())
            .dir("dev", 0o755)
            .symlink("sh", "busybox")
            .char_dev("dev/console", 0o600, 5, 1);

        let bytes = archive.to_bytes();

        let mut golden = Vec::new();
        // Entry 1: "dev", a directory (sorted first).
        golden.extend(header([
            "00000001", // ino 1
            "000041ed", // mode S_IFDIR | 0755
            "00000000", // uid
            "00000000", // gid
            "00000002", // nlink 2
            "00000000", // mtime 0
            "00000000", // filesize 0
            "00000000", // devmajor
            "00000000", // devminor
            "00000000", // rdevmajor
            "00000000", // rdevminor
            "00000004", // namesize: "dev" + NUL
            "00000000", // check
        ]).bytes());
        golden.extend(b"dev\0"); // 110 + 4 = 114: pad to 116.
        golden.extend(b"\0\0");
        // Entry 2: "dev/console", character device 5:1.
        golden.extend(header([
            "00000002", // ino 2
            "00002180", // mode S_IFCHR | 0600
            "00000000", "00000000", // uid, gid
            "00000001", // nlink 1
            "00000000", // mtime
            "00000000", // filesize
            "00000000", "00000000", // devmajor, devminor
            "00000005", // rdevmajor 5
            "00000001", // rdevminor 1
            "0000000c", // namesize: "dev/console" + NUL = 12
            "00000000", // check
        ]).bytes());
        golden.extend(b"dev/console\0"); // 116 + 110 + 12 = 238: pad to 240.
        golden.extend(b"\0\0");
        // Entry 3: "dev/x", a regular file of 3 bytes (the leading '/' was dropped).
        golden.extend(header([
            "00000003", // ino 3
            "000081a4", // mode S_IFREG | 0644
            "00000000", "00000000", // uid, gid
            "00000001", // nlink 1
            "00000000", // mtime
            "00000003", // filesize 3
            "00000000", "00000000", "00000000", "00000000",
            "00000006", // namesize: "dev/x" + NUL
            "00000000",
        ]).bytes());
        golden.extend(b"dev/x\0"); // 240 + 110 + 6 = 356: already aligned.
        golden.extend(b"hi\n\0"); // Data 3 bytes, padded to 4.
        // Entry 4: "sh", a symbolic link whose data is its target.
        golden.extend(header([
            "00000004", // ino 4
            "0000a1ff", // mode S_IFLNK | 0777
            "00000000", "00000000",
            "00000001", // nlink 1
            "00000000",
            "00000007", // filesize: "busybox"
            "00000000", "00000000", "00000000", "00000000",
            "00000003", // namesize: "sh" + NUL
            "00000000",
        ]).bytes());
        golden.extend(b"sh\0"); // 360 + 110 + 3 = 473: pad to 476.
        golden.extend(b"\0\0\0");
        golden.extend(b"busybox\0"); // 7 bytes, padded to 8.
        // Trailer: ino 0, mode 0, nlink 1, name "TRAILER!!!".
        golden.extend(header([
            "00000000", "00000000", "00000000", "00000000",
            "00000001", // nlink 1
            "00000000", "00000000", "00000000", "00000000", "00000000", "00000000",
            "0000000b", // namesize: "TRAILER!!!" + NUL = 11
            "00000000",
        ]).bytes());
        golden.extend(b"TRAILER!!!\0"); // 484 + 110 + 11 = 605: pad to 608.
        golden.extend(b"\0\0\0");
        assert_eq!(bytes, golden);
    }

    #[test]
    fn test_insertion_order_does_not_change_bytes() {
        let mut a = CpioArchive::new();
        a.dir("bin", 0o755)
            .file("bin/x", 0o755, vec![1])
            .dir("tmp", 0o1777);
        let mut b = CpioArchive::new();
        b.dir("tmp", 0o1777)
            .file("bin/x", 0o755, vec![1])
            .dir("bin", 0o755);

        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    #[test]
    fn test_directories_precede_their_contents() {
        let mut archive = CpioArchive::new();
        archive
            .file("lib/modules/load-order", 0o644, vec![])
            .dir("lib/modules", 0o755)
            .dir("lib", 0o755)
            .dir("lib-x", 0o755);

        let paths: Vec<_> = archive.paths().collect();

        assert_eq!(
            paths,
            ["lib", "lib-x", "lib/modules", "lib/modules/load-order"]
        );
    }
}
