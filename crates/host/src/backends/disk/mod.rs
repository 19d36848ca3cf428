//! Disk backends: a raw image file or an NBD export, behind one [`Disk`] handle.
//!
//! Requests are queued with [`Disk::submit`] and completed on backend threads through
//! the [`Notify`] callback, possibly out of order. Requests whose byte ranges overlap
//! (and at least one of which writes) run one after the other in submission order
//! (DESIGN.md §1, "Disk I/O races"), so the image's final content never depends on
//! host timing; everything else may run concurrently.

mod file;
mod order;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{BackendError, ExitCounter, Notify};
pub use order::WriteObserver;
pub(crate) use order::{Gate, Ticket};

/// How long closing waits for requests in flight before forcing the backend down.
const CLOSE_GRACE: Duration = Duration::from_secs(30);

/// One disk operation, carrying its own data (a bounce buffer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOp {
    /// Read `len` bytes at byte `offset`.
    Read {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u32,
    },
    /// Write `data` at byte `offset`.
    Write {
        /// First byte.
        offset: u64,
        /// The bytes, already copied out of guest memory.
        data: Vec<u8>,
    },
    /// Make every completed write durable.
    Flush,
    /// Discard `len` bytes at `offset`. On a file image they read back as zeros
    /// afterwards (a hole is punched, or zeros are written), so the result is the
    /// same on every host.
    Discard {
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
}

impl DiskOp {
    /// The byte range touched and whether it is modified; `None` for a flush.
    pub(crate) fn extent(&self) -> Option<(u64, u64, bool)> {
        match self {
            DiskOp::Read { offset, len } => {
                Some((*offset, offset.saturating_add(u64::from(*len)), false))
            }
            DiskOp::Write { offset, data } => Some((
                *offset,
                offset.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX)),
                true,
            )),
            DiskOp::Discard { offset, len } => Some((*offset, offset.saturating_add(*len), true)),
            DiskOp::Flush => None,
        }
    }
}

/// The completion of the request submitted with the same `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskDone {
    /// The id given to [`Disk::submit`].
    pub id: u64,
    /// The data read (empty for anything but a read), or why the request failed.
    pub result: Result<Vec<u8>, DiskIoError>,
}

/// Why one disk request failed. The device model turns it into `VIRTIO_BLK_S_IOERR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskIoError {
    /// The request reaches past the end of the disk.
    #[error("Request for {len} bytes at offset {offset} reaches past the end of the disk ({size} bytes)")]
    OutOfRange {
        /// First byte requested.
        offset: u64,
        /// Number of bytes requested.
        len: u64,
        /// Size of the disk in bytes.
        size: u64,
    },
    /// A write or discard was sent to a read-only disk.
    #[error("Disk {target} is read-only: writes and discards are refused")]
    ReadOnly {
        /// The image path or NBD URL.
        target: String,
    },
    /// The request is larger than the backend can carry in one piece.
    #[error("Request for {len} bytes on {target} is larger than the maximum of {max} bytes")]
    TooLarge {
        /// The image path or NBD URL.
        target: String,
        /// Number of bytes requested.
        len: u64,
        /// The largest request accepted.
        max: u64,
    },
    /// The host failed the I/O on the image file.
    #[error("Host I/O error on disk image {target}: {message}")]
    Host {
        /// The image path.
        target: String,
        /// The kind of the host error.
        kind: std::io::ErrorKind,
        /// The host's message.
        message: String,
    },
    /// The NBD server answered the request with an error.
    #[error("NBD server {target} failed the request with error {errno} ({name})", name = super::nbd::wire::errno_name(*errno))]
    Server {
        /// The NBD URL.
        target: String,
        /// The error value of the simple reply (an errno, per the NBD protocol).
        errno: u32,
    },
    /// The connection to the NBD server broke before the request was answered.
    #[error("Connection to NBD server {target} was lost: {reason}")]
    ConnectionLost {
        /// The NBD URL.
        target: String,
        /// Why the stream was given up.
        reason: String,
    },
}

impl DiskIoError {
    /// A host I/O error on `target`.
    pub(crate) fn host(target: &str, err: &std::io::Error) -> Self {
        DiskIoError::Host {
            target: target.to_owned(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// Checks a request against the disk's size and mode before it is carried out.
pub(crate) fn check(
    op: &DiskOp,
    size: u64,
    read_only: bool,
    target: &str,
) -> Result<(), DiskIoError> {
    let writes = matches!(op, DiskOp::Write { .. } | DiskOp::Discard { .. });
    if writes && read_only {
        return Err(DiskIoError::ReadOnly {
            target: target.to_owned(),
        });
    }
    let (offset, len) = match op {
        DiskOp::Read { offset, len } => (*offset, u64::from(*len)),
        DiskOp::Write { offset, data } => (*offset, u64::try_from(data.len()).unwrap_or(u64::MAX)),
        DiskOp::Discard { offset, len } => (*offset, *len),
        DiskOp::Flush => return Ok(()),
    };
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(DiskIoError::OutOfRange { offset, len, size }),
    }
}

/// A disk backend: a raw image file or an NBD export.
///
/// Dropping it (or [`Disk::close`]) stops accepting work, carries out every request
/// already submitted, waits for their completions to be delivered and joins the
/// threads. An NBD connection that does not answer within 30 seconds is shut down,
/// failing what is still outstanding.
pub struct Disk {
    size: u64,
    read_only: bool,
    gate: Arc<Gate>,
    threads: Vec<JoinHandle<()>>,
    exits: Arc<ExitCounter>,
    /// Unblocks threads stuck on the host (shuts an NBD socket down).
    force_stop: Option<Box<dyn Fn() + Send + Sync>>,
    /// Called after a request is queued and after the queue is closed, on the
    /// submitter's thread: a backend that starts requests itself, without waking
    /// one of its threads (NBD), does it here. Never blocks on I/O.
    kick: Option<Kick>,
}

/// See [`Disk`]'s `kick`.
pub(crate) type Kick = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("size", &self.size)
            .field("read_only", &self.read_only)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl Disk {
    /// Opens a raw disk image; `read_only` opens it without write access.
    ///
    /// Requests are carried out with positioned reads and writes by a few worker
    /// threads, so several are in flight at once; flush is `fdatasync`; discard
    /// punches a hole (or writes zeros where the file system cannot).
    pub fn open_file(
        path: &Path,
        read_only: bool,
        notify: Notify<DiskDone>,
    ) -> Result<Disk, BackendError> {
        file::open(path, read_only, notify)
    }

    /// Connects to an NBD export given as `nbd://HOST[:PORT][/EXPORT]` (port 10809 by
    /// default; an empty export name is allowed). A read-only export makes
    /// [`Disk::read_only`] true.
    pub fn open_nbd(url: &str, notify: Notify<DiskDone>) -> Result<Disk, BackendError> {
        super::nbd::open(url, notify)
    }

    /// Assembles a disk from its running parts (used by the backends' `open`).
    pub(crate) fn from_parts(
        size: u64,
        read_only: bool,
        gate: Arc<Gate>,
        threads: Vec<JoinHandle<()>>,
        exits: Arc<ExitCounter>,
        force_stop: Option<Box<dyn Fn() + Send + Sync>>,
        kick: Option<Kick>,
    ) -> Disk {
        Disk {
            size,
            read_only,
            gate,
            threads,
            exits,
            force_stop,
            kick,
        }
    }

    /// Size of the disk in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether writes and discards are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Queues a request; its [`DiskDone`] with the same `id` arrives through the
    /// callback. Never blocks on I/O.
    pub fn submit(&self, id: u64, op: DiskOp) {
        self.gate.push(id, op);
        if let Some(kick) = &self.kick {
            kick();
        }
    }

    /// Sets (or, with `None`, clears) what is told of every byte range a
    /// write or discard changed, as `(offset, len)`, once the request is
    /// done and before its completion is delivered (a side copying its disk
    /// to a new backup while the guest runs sends those ranges again).
    pub fn set_write_observer(&self, observer: Option<WriteObserver>) {
        self.gate.set_write_observer(observer);
    }

    /// Finishes every submitted request and stops the backend's threads.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.gate.close();
        if let Some(kick) = &self.kick {
            kick();
        }
        if !self.exits.wait_for(self.threads.len(), CLOSE_GRACE) {
            if let Some(force_stop) = &self.force_stop {
                force_stop();
            }
        }
        for thread in self.threads.drain(..) {
            // A panicked backend thread has already failed or delivered its work.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_check_rejects_read_past_end() {
        let op = DiskOp::Read {
            offset: 4096,
            len: 512,
        };

        let result = check(&op, 4096, false, "disk.img");

        assert_eq!(
            result,
            Err(DiskIoError::OutOfRange {
                offset: 4096,
                len: 512,
                size: 4096
            })
        );
    }

    #[test]
    fn test_check_rejects_offset_overflow() {
        let op = DiskOp::Discard {
            offset: u64::MAX,
            len: 2,
        };

        let result = check(&op, 4096, false, "disk.img");

        assert!(matches!(result, Err(DiskIoError::OutOfRange { .. })));
    }

    #[test]
    fn test_check_rejects_write_on_read_only_disk() {
        let op = DiskOp::Write {
            offset: 0,
            data: vec![1],
        };

        let result = check(&op, 4096, true, "disk.img");

        assert_eq!(
            result,
            Err(DiskIoError::ReadOnly {
                target: "disk.img".into()
            })
        );
    }

    #[test]
    fn test_check_accepts_flush_on_read_only_disk() {
        assert_eq!(check(&DiskOp::Flush, 0, true, "disk.img"), Ok(()));
    }
}
