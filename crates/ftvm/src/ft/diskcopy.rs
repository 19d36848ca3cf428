//! Copying the running side's disks to a new backup that has disks of its
//! own (`--non-shared-disk`).
//!
//! With non-shared disks each side writes its own copy, so a backup that
//! joins a guest already running needs the disks as they are at the
//! snapshot, not as they were at power-on. The running side stops the
//! guest, lets the requests in flight finish, and sends, after the machine
//! snapshot, each writable disk image ([`send`]): a
//! [`Message::DiskImage`] with its size, then [`Message::DiskData`] (with
//! the bytes and their hash) and [`Message::DiskZero`] ranges covering it
//! in order, and a [`Message::DiskEnd`]. Holes of a sparse image (found
//! with `SEEK_DATA`/`SEEK_HOLE`) and chunks of zeros go as zero ranges;
//! the receiver punches holes for them. The receiver ([`receive`]) checks
//! every message against its own images (slot, size, order, coverage, the
//! data's hash) and names what was wrong.
//!
//! The guest stands still during the copy, so the pause grows with the data
//! on the disks (not with their size); copying while the guest runs and
//! sending again what it wrote meanwhile (VMotion's pre-copy) is not done.

use ftvm_protocol::{Message, DISK_CHUNK, MESSAGE_LEN};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;

/// A disk image file of one virtio slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The disk's virtio slot.
    pub slot: usize,
    /// The image file.
    pub path: PathBuf,
}

/// What a copy moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    /// Bytes sent as data.
    pub data: u64,
    /// Bytes sent as zero ranges.
    pub zeros: u64,
}

/// Where the next data begins at or after `pos`, and where it ends, per
/// `SEEK_DATA`/`SEEK_HOLE`; `None` if only holes follow. A file system
/// without them has data everywhere.
fn data_extent(file: &File, pos: u64, size: u64) -> std::io::Result<Option<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let seek = |whence: libc::c_int, at: u64| -> std::io::Result<Option<u64>> {
        let at =
            libc::off_t::try_from(at).map_err(|_| std::io::Error::other("offset out of range"))?;
        // SAFETY: lseek on a descriptor this function borrows.
        let r = unsafe { libc::lseek(fd, at, whence) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENXIO) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(r as u64))
    };
    let start = match seek(libc::SEEK_DATA, pos) {
        Ok(Some(s)) if s < size => s,
        Ok(_) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(Some((pos, size))),
        Err(e) => return Err(e),
    };
    let end = seek(libc::SEEK_HOLE, start)?.unwrap_or(size).min(size);
    Ok(Some((start, end.max(start))))
}

/// Zero ranges waiting to be sent, joined while they touch.
struct Zeros {
    slot: u64,
    start: u64,
    len: u64,
}

impl Zeros {
    fn add<W: Write>(&mut self, out: &mut W, offset: u64, len: u64) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        if self.len > 0 && self.start + self.len != offset {
            self.send(out)?;
        }
        if self.len == 0 {
            self.start = offset;
        }
        self.len += len;
        Ok(())
    }

    fn send<W: Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        if self.len > 0 {
            out.write_all(
                &Message::DiskZero {
                    slot: self.slot,
                    offset: self.start,
                    len: self.len,
                }
                .encode(),
            )?;
            self.len = 0;
        }
        Ok(())
    }
}

/// Sends the content of `images` to `out` (see the module's description).
pub fn send<W: Write>(out: &mut W, images: &[Image]) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    let mut buf = vec![0u8; DISK_CHUNK as usize];
    for image in images {
        let what = || format!("disk image {}", image.path.display());
        let file = File::open(&image.path).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
        let size = file
            .metadata()
            .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?
            .len();
        let slot = image.slot as u64;
        out.write_all(&Message::DiskImage { slot, size }.encode())?;
        let mut zeros = Zeros {
            slot,
            start: 0,
            len: 0,
        };
        let mut pos = 0;
        while pos < size {
            let Some((start, end)) =
                data_extent(&file, pos, size).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?
            else {
                break;
            };
            zeros.add(out, pos, start - pos)?;
            // Always forward, even if the file system says something odd.
            let end = end.max(start + 1).min(size);
            let mut at = start;
            while at < end {
                let n = (end - at).min(DISK_CHUNK) as usize;
                let chunk = &mut buf[..n];
                file.read_exact_at(chunk, at)
                    .map_err(|e| anyhow::anyhow!("{} at byte {at}: {e}", what()))?;
                if chunk.iter().all(|&b| b == 0) {
                    zeros.add(out, at, n as u64)?;
                } else {
                    zeros.send(out)?;
                    out.write_all(
                        &Message::DiskData {
                            slot,
                            offset: at,
                            len: n as u64,
                            hash: ftvm_replay::hash_bytes(chunk),
                        }
                        .encode(),
                    )?;
                    out.write_all(chunk)?;
                    copied.data += n as u64;
                }
                at += n as u64;
            }
            pos = end;
        }
        zeros.add(out, pos, size.saturating_sub(pos))?;
        zeros.send(out)?;
    }
    out.write_all(
        &Message::DiskEnd {
            disks: images.len() as u64,
            bytes: copied.data,
        }
        .encode(),
    )?;
    out.flush()?;
    copied.zeros = images_size(images)?.saturating_sub(copied.data);
    Ok(copied)
}

/// The images' sizes added up.
fn images_size(images: &[Image]) -> anyhow::Result<u64> {
    images.iter().try_fold(0u64, |sum, image| {
        let len = std::fs::metadata(&image.path)
            .map_err(|e| anyhow::anyhow!("disk image {}: {e}", image.path.display()))?
            .len();
        Ok(sum.saturating_add(len))
    })
}

/// One of this side's images being written.
struct Target {
    slot: u64,
    file: File,
    path: PathBuf,
    size: u64,
    /// Bytes covered so far (the copy goes in order).
    next: u64,
    /// Its `DiskImage` came.
    begun: bool,
}

impl Target {
    /// Checks that `offset..offset + len` is the next range of this disk.
    fn check_range(&self, offset: u64, len: u64) -> anyhow::Result<()> {
        if !self.begun {
            anyhow::bail!("disk content for slot {} came before its size", self.slot);
        }
        if offset != self.next {
            anyhow::bail!(
                "disk content for slot {} at byte {offset}, expected byte {}",
                self.slot,
                self.next
            );
        }
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => anyhow::bail!(
                "disk content for slot {} at byte {offset} ({len} bytes) reaches past the end of {} ({} bytes)",
                self.slot,
                self.path.display(),
                self.size
            ),
        }
    }

    fn zero(&mut self, offset: u64, len: u64) -> anyhow::Result<()> {
        self.check_range(offset, len)?;
        let what = || format!("writing zeros to {}", self.path.display());
        let punched = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
            // SAFETY: fallocate on a descriptor this side owns.
            (Ok(o), Ok(l)) => unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    o,
                    l,
                ) == 0
            },
            _ => false,
        };
        if !punched {
            let zeros = vec![0u8; DISK_CHUNK as usize];
            let mut at = offset;
            while at < offset + len {
                let n = (offset + len - at).min(DISK_CHUNK) as usize;
                self.file
                    .write_all_at(&zeros[..n], at)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
                at += n as u64;
            }
        }
        self.next += len;
        Ok(())
    }
}

fn read_message<R: Read>(input: &mut R) -> anyhow::Result<Message> {
    let mut bytes = [0u8; MESSAGE_LEN];
    input
        .read_exact(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the disk copy ended early: {e}"))?;
    Message::decode(&bytes).map_err(|e| anyhow::anyhow!("the disk copy: {e}"))
}

/// Receives a disk copy from `input` into `images` (this side's own disk
/// images, of the same sizes as the sender's), announced by a `Welcome`
/// naming `disks` disks. Nothing is trusted: a message out of order, for
/// another disk or size, data that does not match its hash, or a copy that
/// leaves part of a disk uncovered is an error naming it.
pub fn receive<R: Read>(input: &mut R, images: &[Image], disks: u64) -> anyhow::Result<Copied> {
    if disks != images.len() as u64 {
        anyhow::bail!(
            "the primary copies {disks} disk(s), this side has {} writable disk image(s)",
            images.len()
        );
    }
    let mut targets = images
        .iter()
        .map(|image| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&image.path)
                .map_err(|e| anyhow::anyhow!("disk image {}: {e}", image.path.display()))?;
            let size = file.metadata()?.len();
            Ok(Target {
                slot: image.slot as u64,
                file,
                path: image.path.clone(),
                size,
                next: 0,
                begun: false,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut copied = Copied::default();
    let mut buf = vec![0u8; DISK_CHUNK as usize];
    loop {
        let message = read_message(input)?;
        let target = |targets: &[Target], slot: u64| -> anyhow::Result<usize> {
            targets.iter().position(|t| t.slot == slot).ok_or_else(|| {
                anyhow::anyhow!(
                    "the disk copy names slot {slot}, which is not a writable disk image here"
                )
            })
        };
        match message {
            Message::DiskImage { slot, size } => {
                let at = target(&targets, slot)?;
                let t = &mut targets[at];
                if t.begun {
                    anyhow::bail!("the disk in slot {slot} is copied twice");
                }
                if size != t.size {
                    anyhow::bail!(
                        "the primary's disk in slot {slot} is {size} bytes, this side's ({}) {} bytes",
                        t.path.display(),
                        t.size
                    );
                }
                t.begun = true;
            }
            Message::DiskData {
                slot,
                offset,
                len,
                hash,
            } => {
                let at = target(&targets, slot)?;
                let t = &mut targets[at];
                t.check_range(offset, len)?;
                let chunk = &mut buf[..len as usize];
                input.read_exact(chunk).map_err(|e| {
                    anyhow::anyhow!(
                        "the disk copy ended inside the data for slot {slot} at byte {offset}: {e}"
                    )
                })?;
                let got = ftvm_replay::hash_bytes(chunk);
                if got != hash {
                    anyhow::bail!(
                        "the disk copy's data for slot {slot} at byte {offset} ({len} bytes) is corrupt: hash {got:016x}, sent {hash:016x}"
                    );
                }
                t.file
                    .write_all_at(chunk, offset)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", t.path.display()))?;
                t.next += len;
                copied.data += len;
            }
            Message::DiskZero { slot, offset, len } => {
                let at = target(&targets, slot)?;
                let t = &mut targets[at];
                t.zero(offset, len)?;
                copied.zeros += len;
            }
            Message::DiskEnd { disks, bytes } => {
                if disks != targets.len() as u64 || bytes != copied.data {
                    anyhow::bail!(
                        "the disk copy ends saying {disks} disk(s) and {bytes} data bytes, but {} and {} came",
                        targets.len(),
                        copied.data
                    );
                }
                if let Some(t) = targets.iter().find(|t| t.next != t.size) {
                    anyhow::bail!(
                        "the disk copy ends with {} of {} bytes of the disk in slot {} covered",
                        t.next,
                        t.size,
                        t.slot
                    );
                }
                for t in &targets {
                    t.file
                        .sync_data()
                        .map_err(|e| anyhow::anyhow!("syncing {}: {e}", t.path.display()))?;
                }
                return Ok(copied);
            }
            other => anyhow::bail!("the disk copy holds {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let p =
                std::env::temp_dir().join(format!("ftvm-diskcopy-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const SIZE: u64 = 5 * DISK_CHUNK + 4096;

    /// A sparse source image: data at the start, a chunk of written zeros,
    /// a hole, data crossing a chunk boundary, and a short tail.
    fn source(dir: &Dir) -> Image {
        let path = dir.0.join("src.img");
        let f = File::create(&path).expect("create");
        f.set_len(SIZE).expect("size");
        f.write_all_at(&[1u8; 5000], 0).expect("write");
        f.write_all_at(&vec![0u8; DISK_CHUNK as usize], DISK_CHUNK)
            .expect("zeros");
        f.write_all_at(&[2u8; 8192], 3 * DISK_CHUNK - 4096)
            .expect("write");
        f.write_all_at(b"tail", SIZE - 4).expect("tail");
        Image { slot: 2, path }
    }

    /// A target of `size` bytes full of 0xAA (a stale copy).
    fn target(dir: &Dir, name: &str, size: u64) -> Image {
        let path = dir.0.join(name);
        std::fs::write(&path, vec![0xAAu8; size as usize]).expect("target");
        Image { slot: 2, path }
    }

    fn sent(images: &[Image]) -> (Vec<u8>, Copied) {
        let mut out = Vec::new();
        let copied = send(&mut out, images).expect("send");
        (out, copied)
    }

    #[test]
    fn test_a_copy_makes_the_target_equal_and_sends_zeros_as_ranges() {
        let dir = Dir::new("equal");
        let src = source(&dir);
        let dst = target(&dir, "dst.img", SIZE);
        let (stream, copied) = sent(std::slice::from_ref(&src));

        let got = receive(&mut stream.as_slice(), std::slice::from_ref(&dst), 1).expect("receive");

        assert_eq!(
            std::fs::read(&dst.path).expect("target"),
            std::fs::read(&src.path).expect("source")
        );
        assert_eq!(got, copied);
        assert_eq!(copied.data + copied.zeros, SIZE);
        // Only the chunks holding non-zero bytes travel as data.
        assert!(copied.data <= 3 * DISK_CHUNK, "{copied:?}");
        assert!(
            (stream.len() as u64) < 4 * DISK_CHUNK,
            "{} bytes",
            stream.len()
        );
    }

    #[test]
    fn test_corrupt_data_is_refused_naming_slot_and_offset() {
        let dir = Dir::new("corrupt");
        let src = source(&dir);
        let dst = target(&dir, "dst.img", SIZE);
        let (mut stream, _) = sent(std::slice::from_ref(&src));
        // The first data byte follows the DiskImage and DiskData messages.
        stream[2 * MESSAGE_LEN] ^= 0x40;

        let err = receive(&mut stream.as_slice(), std::slice::from_ref(&dst), 1)
            .expect_err("corrupt data accepted");

        assert!(err.to_string().contains("slot 2 at byte 0"), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn test_a_truncated_copy_is_an_error() {
        let dir = Dir::new("short");
        let src = source(&dir);
        let dst = target(&dir, "dst.img", SIZE);
        let (stream, _) = sent(std::slice::from_ref(&src));
        for cut in [10, MESSAGE_LEN + 3, 2 * MESSAGE_LEN + 100, stream.len() - 1] {
            let err = receive(&mut &stream[..cut], std::slice::from_ref(&dst), 1)
                .expect_err("a cut copy accepted");
            assert!(err.to_string().contains("ended"), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn test_a_disk_of_another_size_or_slot_or_count_is_refused() {
        let dir = Dir::new("mismatch");
        let src = source(&dir);
        let (stream, _) = sent(std::slice::from_ref(&src));

        let small = target(&dir, "small.img", SIZE - 512);
        let err = receive(&mut stream.as_slice(), &[small], 1).expect_err("size");
        assert!(err.to_string().contains("bytes, this side's"), "{err}");

        let mut other = target(&dir, "other.img", SIZE);
        other.slot = 0;
        let err = receive(&mut stream.as_slice(), &[other.clone()], 1).expect_err("slot");
        assert!(err.to_string().contains("names slot 2"), "{err}");

        let err = receive(&mut stream.as_slice(), &[other], 2).expect_err("count");
        assert!(err.to_string().contains("copies 2 disk(s)"), "{err}");
    }

    #[test]
    fn test_ranges_out_of_order_or_leaving_a_gap_are_refused() {
        let dir = Dir::new("order");
        let dst = target(&dir, "dst.img", 3 * DISK_CHUNK);
        let image = Message::DiskImage {
            slot: 2,
            size: 3 * DISK_CHUNK,
        }
        .encode();
        let zero = |offset, len| {
            Message::DiskZero {
                slot: 2,
                offset,
                len,
            }
            .encode()
        };
        let end = Message::DiskEnd { disks: 1, bytes: 0 }.encode();

        let skipped = [image, zero(DISK_CHUNK, DISK_CHUNK)].concat();
        let err =
            receive(&mut skipped.as_slice(), std::slice::from_ref(&dst), 1).expect_err("skip");
        assert!(err.to_string().contains("expected byte 0"), "{err}");

        let past = [image, zero(0, 4 * DISK_CHUNK)].concat();
        let err = receive(&mut past.as_slice(), std::slice::from_ref(&dst), 1).expect_err("past");
        assert!(err.to_string().contains("reaches past the end"), "{err}");

        let gap = [image, zero(0, DISK_CHUNK), end].concat();
        let err = receive(&mut gap.as_slice(), std::slice::from_ref(&dst), 1).expect_err("gap");
        assert!(err.to_string().contains("covered"), "{err}");

        let early = [zero(0, DISK_CHUNK)].concat();
        let err = receive(&mut early.as_slice(), std::slice::from_ref(&dst), 1).expect_err("early");
        assert!(err.to_string().contains("before its size"), "{err}");

        let whole = [image, zero(0, 3 * DISK_CHUNK), end].concat();
        receive(&mut whole.as_slice(), std::slice::from_ref(&dst), 1).expect("whole");
        assert!(std::fs::read(&dst.path)
            .expect("target")
            .iter()
            .all(|&b| b == 0));
    }
}
