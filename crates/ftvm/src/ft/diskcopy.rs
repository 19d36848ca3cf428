//! Copying the running side's disks to a new backup that has disks of its
//! own (`--non-shared-disk`).
//!
//! With non-shared disks each side writes its own copy, so a backup that
//! joins a guest already running needs the disks as they are at the
//! snapshot, not as they were at power-on. The running side sends each
//! writable disk image while the guest runs ([`precopy`]): a
//! [`Message::DiskImage`] with its size, then [`Message::DiskData`] (with
//! the bytes and their hash) and [`Message::DiskZero`] ranges covering it
//! in order. Holes of a sparse image (found with `SEEK_DATA`/`SEEK_HOLE`)
//! and chunks of zeros go as zero ranges; the receiver punches holes for
//! them. Meanwhile the disks tell a [`WriteTracker`] of every chunk they
//! write, and the chunks written are sent again, round after round, until
//! few are left. The rest goes with the guest stopped and its requests
//! finished, after the snapshot ([`send_chunks`]), and a
//! [`Message::DiskEnd`] closes the copy. The [`Receiver`] checks every
//! message against its own images (slot, size, coverage, the data's hash)
//! and names what was wrong.

use ftvm_machine::snapshot::is_zero;
use ftvm_protocol::{Message, DISK_CHUNK, MESSAGE_LEN};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

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

/// The disk chunks (of [`DISK_CHUNK`] bytes, by slot and index) written
/// since the last [`WriteTracker::take`], while a copy runs.
#[derive(Debug, Default)]
pub struct WriteTracker(Mutex<BTreeSet<(usize, u64)>>);

impl WriteTracker {
    /// `len` bytes at `offset` of the disk in `slot` changed.
    pub fn mark(&self, slot: usize, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let last = offset.saturating_add(len - 1) / DISK_CHUNK;
        let mut set = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for chunk in offset / DISK_CHUNK..=last {
            set.insert((slot, chunk));
        }
    }

    /// The chunks changed since the last call.
    pub fn take(&self) -> BTreeSet<(usize, u64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// How many chunks changed since the last take.
    pub fn changed_chunks(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Opens `image` for reading, with its size.
fn open_source(image: &Image) -> anyhow::Result<(File, u64)> {
    let what = || format!("disk image {}", image.path.display());
    let file = File::open(&image.path).map_err(|e| anyhow::anyhow!("{}: {e}", what()))?;
    let size = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("{}: {e}", what()))?
        .len();
    Ok((file, size))
}

/// Sends `len` bytes at `at` of `file` (slot `slot`): as data, or as zeros
/// (through `zeros`) if they are all zero. Returns the data bytes sent.
fn send_range<W: Write>(
    out: &mut W,
    file: &File,
    image: &Image,
    zeros: &mut Zeros,
    buf: &mut [u8],
    at: u64,
    len: usize,
) -> anyhow::Result<u64> {
    let chunk = &mut buf[..len];
    file.read_exact_at(chunk, at)
        .map_err(|e| anyhow::anyhow!("disk image {} at byte {at}: {e}", image.path.display()))?;
    if is_zero(chunk) {
        zeros.add(out, at, len as u64)?;
        return Ok(0);
    }
    zeros.send(out)?;
    out.write_all(
        &Message::DiskData {
            slot: zeros.slot,
            offset: at,
            len: len as u64,
            hash: ftvm_replay::hash_bytes(chunk),
        }
        .encode(),
    )?;
    out.write_all(chunk)?;
    Ok(len as u64)
}

/// Sends the whole content of `images` to `out`, disk by disk, without the
/// closing [`Message::DiskEnd`] (see the module's description).
pub fn send_images<W: Write>(out: &mut W, images: &[Image]) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    let mut buf = vec![0u8; DISK_CHUNK as usize];
    let mut progress = Progress::new();
    for image in images {
        let (file, size) = open_source(image)?;
        let slot = image.slot as u64;
        let data_before = copied.data;
        out.write_all(&Message::DiskImage { slot, size }.encode())?;
        let mut zeros = Zeros {
            slot,
            start: 0,
            len: 0,
        };
        let mut pos = 0;
        while pos < size {
            let Some((start, end)) = data_extent(&file, pos, size)
                .map_err(|e| anyhow::anyhow!("disk image {}: {e}", image.path.display()))?
            else {
                break;
            };
            zeros.add(out, pos, start - pos)?;
            // Always forward, even if the file system says something odd.
            let end = end.max(start + 1).min(size);
            let mut at = start;
            while at < end {
                let n = (end - at).min(DISK_CHUNK) as usize;
                copied.data += send_range(out, &file, image, &mut zeros, &mut buf, at, n)?;
                at += n as u64;
                progress.show(image, at, size);
            }
            pos = end;
        }
        zeros.add(out, pos, size.saturating_sub(pos))?;
        zeros.send(out)?;
        copied.zeros += size - (copied.data - data_before);
    }
    Ok(copied)
}

/// A line on how far a long copy has come, every few seconds.
struct Progress {
    next: std::time::Instant,
}

impl Progress {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

    fn new() -> Progress {
        Progress {
            next: std::time::Instant::now() + Self::EVERY,
        }
    }

    /// Says how far the copy of `image` is (at byte `at` of `size`) if the
    /// last line is a while ago.
    fn show(&mut self, image: &Image, at: u64, size: u64) {
        let now = std::time::Instant::now();
        if now >= self.next {
            self.next = now + Self::EVERY;
            eprintln!(
                "\r\nftvm: copying disk {} to the new backup: {} of {} MiB",
                image.path.display(),
                at >> 20,
                size >> 20
            );
        }
    }
}

/// Sends the `chunks` (by slot and index) of `images` again, as they are
/// now (chunks of slots not among `images` are skipped).
pub fn send_chunks<W: Write>(
    out: &mut W,
    images: &[Image],
    chunks: &BTreeSet<(usize, u64)>,
) -> anyhow::Result<Copied> {
    let mut copied = Copied::default();
    let mut buf = vec![0u8; DISK_CHUNK as usize];
    for image in images {
        let (file, size) = open_source(image)?;
        let mut zeros = Zeros {
            slot: image.slot as u64,
            start: 0,
            len: 0,
        };
        for &(_, chunk) in chunks.range((image.slot, 0)..=(image.slot, u64::MAX)) {
            let at = chunk.saturating_mul(DISK_CHUNK);
            if at >= size {
                continue;
            }
            let n = (size - at).min(DISK_CHUNK) as usize;
            let data = send_range(out, &file, image, &mut zeros, &mut buf, at, n)?;
            copied.data += data;
            copied.zeros += n as u64 - data;
        }
        zeros.send(out)?;
    }
    Ok(copied)
}

/// Closes a copy of `disks` disks that sent `data` bytes of data in all.
pub fn send_end<W: Write>(out: &mut W, disks: usize, data: u64) -> std::io::Result<()> {
    out.write_all(
        &Message::DiskEnd {
            disks: disks as u64,
            bytes: data,
        }
        .encode(),
    )?;
    out.flush()
}

/// Rounds of sending again what the guest wrote during the previous one.
pub const PRECOPY_ROUNDS: usize = 8;

/// Changed chunks at most left for the copy with the guest stopped.
pub const PRECOPY_LEFT: usize = 16;

/// What a pre-copy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Precopied {
    /// Bytes sent, in all rounds.
    pub copied: Copied,
    /// Rounds after the first pass.
    pub rounds: usize,
}

/// Sends `images` to `out` while the guest runs: the whole disks, then,
/// round after round, the chunks `tracker` says were written meanwhile,
/// until at most [`PRECOPY_LEFT`] remain or after [`PRECOPY_ROUNDS`]
/// rounds. What is left (and what comes after) stays in `tracker` for
/// the copy with the guest stopped ([`send_chunks`], then [`send_end`]).
pub fn precopy<W: Write>(
    out: &mut W,
    images: &[Image],
    tracker: &WriteTracker,
) -> anyhow::Result<Precopied> {
    let mut done = Precopied {
        copied: send_images(out, images)?,
        rounds: 0,
    };
    while done.rounds < PRECOPY_ROUNDS && tracker.changed_chunks() > PRECOPY_LEFT {
        let again = send_chunks(out, images, &tracker.take())?;
        done.copied.data += again.data;
        done.copied.zeros += again.zeros;
        done.rounds += 1;
    }
    out.flush()?;
    Ok(done)
}

/// One of this side's images being written.
struct Target {
    slot: u64,
    file: File,
    path: PathBuf,
    size: u64,
    /// Bytes covered so far: the first pass goes in order; later ranges
    /// may rewrite what is covered.
    next: u64,
    /// Its `DiskImage` came.
    begun: bool,
}

impl Target {
    /// Checks that `offset..offset + len` rewrites covered bytes or extends
    /// them, within the disk.
    fn check_range(&self, offset: u64, len: u64) -> anyhow::Result<()> {
        if !self.begun {
            anyhow::bail!("disk content for slot {} came before its size", self.slot);
        }
        if offset > self.next {
            anyhow::bail!(
                "disk content for slot {} at byte {offset}, but only {} bytes are covered",
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

    fn covered(&mut self, offset: u64, len: u64) {
        self.next = self.next.max(offset + len);
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
        self.covered(offset, len);
        Ok(())
    }
}

/// Reads one protocol message of a disk copy.
pub fn read_message<R: Read>(input: &mut R) -> anyhow::Result<Message> {
    let mut bytes = [0u8; MESSAGE_LEN];
    input
        .read_exact(&mut bytes)
        .map_err(|e| anyhow::anyhow!("the disk copy ended early: {e}"))?;
    Message::decode(&bytes).map_err(|e| anyhow::anyhow!("the disk copy: {e}"))
}

/// The receiving end of a disk copy into this side's own images (of the
/// same sizes as the sender's). Nothing is trusted: a message for another
/// disk or size, a range beyond what is covered, data that does not match
/// its hash, or a copy that leaves part of a disk uncovered is an error
/// naming it.
pub struct Receiver {
    targets: Vec<Target>,
    copied: Copied,
    buf: Vec<u8>,
}

impl Receiver {
    /// Opens `images` for writing.
    pub fn new(images: &[Image]) -> anyhow::Result<Receiver> {
        let targets = images
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
        Ok(Receiver {
            targets,
            copied: Copied::default(),
            buf: vec![0u8; DISK_CHUNK as usize],
        })
    }

    /// The number of disks this side receives.
    pub fn disks(&self) -> u64 {
        self.targets.len() as u64
    }

    fn target(&mut self, slot: u64) -> anyhow::Result<&mut Target> {
        self.targets
            .iter_mut()
            .find(|t| t.slot == slot)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the disk copy names slot {slot}, which is not a writable disk image here"
                )
            })
    }

    /// Takes `message` (and, for data, its bytes from `input`). `Some` with
    /// what was copied once the copy is complete ([`Message::DiskEnd`]);
    /// other messages are an error.
    pub fn take<R: Read>(
        &mut self,
        message: Message,
        input: &mut R,
    ) -> anyhow::Result<Option<Copied>> {
        match message {
            Message::DiskImage { slot, size } => {
                let t = self.target(slot)?;
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
                let mut buf = std::mem::take(&mut self.buf);
                let result = self.data(&mut buf, input, slot, offset, len, hash);
                self.buf = buf;
                result?;
            }
            Message::DiskZero { slot, offset, len } => {
                self.target(slot)?.zero(offset, len)?;
                self.copied.zeros += len;
            }
            Message::DiskEnd { disks, bytes } => {
                if disks != self.disks() || bytes != self.copied.data {
                    anyhow::bail!(
                        "the disk copy ends saying {disks} disk(s) and {bytes} data bytes, but {} and {} came",
                        self.disks(),
                        self.copied.data
                    );
                }
                if let Some(t) = self.targets.iter().find(|t| t.next != t.size) {
                    anyhow::bail!(
                        "the disk copy ends with {} of {} bytes of the disk in slot {} covered",
                        t.next,
                        t.size,
                        t.slot
                    );
                }
                // Not synced here: the guest's own flush requests, which
                // this side replays on its copy, make what it needs
                // durable, and a sync of the whole image now would hold
                // the first acknowledgements (and the primary's outputs)
                // back for as long as it takes.
                return Ok(Some(self.copied));
            }
            other => anyhow::bail!("the disk copy holds {other:?}"),
        }
        Ok(None)
    }

    fn data<R: Read>(
        &mut self,
        buf: &mut [u8],
        input: &mut R,
        slot: u64,
        offset: u64,
        len: u64,
        hash: u64,
    ) -> anyhow::Result<()> {
        let t = self.target(slot)?;
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
        t.covered(offset, len);
        self.copied.data += len;
        Ok(())
    }
}

/// The sender's disk count against this side's.
pub fn check_count(theirs: u64, ours: u64) -> anyhow::Result<()> {
    if theirs != ours {
        anyhow::bail!(
            "the primary copies {theirs} disk(s), this side has {ours} writable disk image(s)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends the content of `images` to `out` and closes the copy.
    fn send<W: Write>(out: &mut W, images: &[Image]) -> anyhow::Result<Copied> {
        let copied = send_images(out, images)?;
        send_end(out, images.len(), copied.data)?;
        Ok(copied)
    }

    /// Receives a whole disk copy from `input` into `images`, announced by a
    /// `Welcome` naming `disks` disks (see [`Receiver`]).
    fn receive<R: Read>(input: &mut R, images: &[Image], disks: u64) -> anyhow::Result<Copied> {
        let mut receiver = Receiver::new(images)?;
        check_count(disks, receiver.disks())?;
        loop {
            let message = read_message(input)?;
            if let Some(copied) = receiver.take(message, input)? {
                return Ok(copied);
            }
        }
    }

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

    /// A source, a stale target of its size, and the copy of the source.
    fn copied(tag: &str) -> (Dir, Image, Vec<u8>) {
        let dir = Dir::new(tag);
        let src = source(&dir);
        let dst = target(&dir, "dst.img", SIZE);
        let (stream, _) = sent(std::slice::from_ref(&src));
        (dir, dst, stream)
    }

    #[test]
    fn test_corrupt_data_is_refused_naming_slot_and_offset() {
        let (_dir, dst, mut stream) = copied("corrupt");
        // The first data byte follows the DiskImage and DiskData messages.
        stream[2 * MESSAGE_LEN] ^= 0x40;

        let err = receive(&mut stream.as_slice(), std::slice::from_ref(&dst), 1)
            .expect_err("corrupt data accepted");

        assert!(err.to_string().contains("slot 2 at byte 0"), "{err}");
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn test_a_truncated_copy_is_an_error() {
        let (_dir, dst, stream) = copied("short");
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
        assert!(
            err.to_string().contains("only 0 bytes are covered"),
            "{err}"
        );

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

    #[test]
    fn test_chunks_written_during_a_precopy_are_sent_again_and_the_target_ends_equal() {
        let dir = Dir::new("precopy");
        let src = source(&dir);
        let dst = target(&dir, "dst.img", SIZE);
        let tracker = WriteTracker::default();
        let mut stream = Vec::new();
        // Written before the copy began: sent again in a round (more than
        // PRECOPY_LEFT chunks), with the first pass's old content replaced.
        let f = OpenOptions::new()
            .write(true)
            .open(&src.path)
            .expect("open");
        tracker.mark(2, 0, (PRECOPY_LEFT as u64 + 24) * DISK_CHUNK);
        let done = precopy(&mut stream, std::slice::from_ref(&src), &tracker).expect("precopy");
        // Written after it: left for the copy with the guest stopped.
        f.write_all_at(&[9u8; 3000], 2 * DISK_CHUNK + 100)
            .expect("write");
        f.write_all_at(&[0u8; 5000], 0).expect("zero the start");
        tracker.mark(2, 2 * DISK_CHUNK + 100, 3000);
        tracker.mark(2, 0, 5000);
        let left = tracker.take();
        let last = send_chunks(&mut stream, std::slice::from_ref(&src), &left).expect("chunks");
        send_end(&mut stream, 1, done.copied.data + last.data).expect("end");

        let got = receive(&mut stream.as_slice(), std::slice::from_ref(&dst), 1).expect("receive");

        assert_eq!(done.rounds, 1, "{done:?}");
        assert_eq!(left.len(), 2);
        assert_eq!(tracker.changed_chunks(), 0);
        assert_eq!(got.data, done.copied.data + last.data);
        assert_eq!(
            std::fs::read(&dst.path).expect("target"),
            std::fs::read(&src.path).expect("source")
        );
    }

    #[test]
    fn test_a_few_changed_chunks_are_left_for_the_stopped_copy() {
        let dir = Dir::new("few");
        let src = source(&dir);
        let tracker = WriteTracker::default();
        tracker.mark(2, DISK_CHUNK - 1, 2);

        let done = precopy(&mut Vec::new(), std::slice::from_ref(&src), &tracker).expect("precopy");

        assert_eq!(done.rounds, 0);
        assert_eq!(tracker.take(), [(2, 0), (2, 1)].into_iter().collect());
    }
}
