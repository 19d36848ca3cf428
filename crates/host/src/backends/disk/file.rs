//! The raw image file backend: positioned I/O from a few worker threads.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{check, Disk, DiskDone, DiskIoError, DiskOp, Gate};
use crate::backends::{BackendError, ExitCounter, ExitGuard, Notify};

/// Worker threads per file disk: enough to keep several requests in flight.
const WORKERS: usize = 4;

/// Zeros are written in pieces of this size where a hole cannot be punched.
const ZERO_CHUNK: u64 = 1 << 20;

struct Image {
    file: File,
    target: String,
    size: u64,
    read_only: bool,
}

pub(super) fn open(
    path: &Path,
    read_only: bool,
    notify: Notify<DiskDone>,
) -> Result<Disk, BackendError> {
    let open_error = |source| BackendError::OpenImage {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(open_error)?;
    // Seeking to the end also sizes block devices, whose metadata length is 0.
    let size = file.seek(SeekFrom::End(0)).map_err(open_error)?;
    let image = Arc::new(Image {
        file,
        target: path.display().to_string(),
        size,
        read_only,
    });
    let notify = Arc::new(notify);
    let gate = Arc::new(Gate::default());
    let exits = Arc::new(ExitCounter::default());
    let mut threads = Vec::with_capacity(WORKERS);
    for index in 0..WORKERS {
        let name = format!("ftvm-disk-file-{index}");
        let (image, notify, worker_gate, worker_exits) =
            (image.clone(), notify.clone(), gate.clone(), exits.clone());
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _guard = ExitGuard(worker_exits);
                while let Some(ticket) = worker_gate.take() {
                    let result = image.execute(ticket.op);
                    worker_gate.finish(ticket.seq);
                    notify(DiskDone {
                        id: ticket.id,
                        result,
                    });
                }
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(source) => {
                // The disk built so far closes its started workers on drop.
                drop(Disk::from_parts(
                    size, read_only, gate, threads, exits, None, None,
                ));
                return Err(BackendError::Thread { name, source });
            }
        }
    }
    Ok(Disk::from_parts(
        size, read_only, gate, threads, exits, None, None,
    ))
}

impl Image {
    fn execute(&self, op: DiskOp) -> Result<Vec<u8>, DiskIoError> {
        check(&op, self.size, self.read_only, &self.target)?;
        let host = |err: std::io::Error| DiskIoError::host(&self.target, &err);
        match op {
            DiskOp::Read { offset, len } => {
                let mut data = vec![0; len as usize];
                self.file.read_exact_at(&mut data, offset).map_err(host)?;
                Ok(data)
            }
            DiskOp::Write { offset, data } => {
                self.file.write_all_at(&data, offset).map_err(host)?;
                Ok(Vec::new())
            }
            DiskOp::Flush => {
                self.file.sync_data().map_err(host)?;
                Ok(Vec::new())
            }
            DiskOp::Discard { offset, len } => {
                self.discard(offset, len).map_err(host)?;
                Ok(Vec::new())
            }
        }
    }

    /// Punches a hole, or writes zeros where the file system cannot; either way the
    /// range reads back as zeros.
    fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let (Ok(start), Ok(count)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
        else {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        };
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by
        // `self.file` and open for the whole call.
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                start,
                count,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::ENODEV) => {
                self.write_zeros(offset, len)
            }
            _ => Err(err),
        }
    }

    fn write_zeros(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; ZERO_CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(ZERO_CHUNK) as usize;
            self.file.write_all_at(&zeros[..piece], offset + done)?;
            done += piece as u64;
        }
        Ok(())
    }
}
