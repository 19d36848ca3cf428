//! A TAP network interface (Linux `Documentation/networking/tuntap.rst`): Ethernet
//! frames in and out through `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`.
//!
//! A reader thread hands every received frame to the callback; a writer thread sends
//! the frames queued with [`Tap::send`], which never blocks: when the queue is full the
//! frame is dropped, as a congested Ethernet would.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{BackendError, Notify};

/// `TUNSETIFF`, `_IOW('T', 202, int)` (`linux/if_tun.h`).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `IFNAMSIZ`, including the terminating NUL.
const IFNAMSIZ: usize = 16;
/// Frames waiting for the writer thread before [`Tap::send`] drops them.
const SEND_QUEUE: usize = 1024;
/// Large enough for any frame a TAP device delivers (MTU at most 65535, plus header).
const RECEIVE_BUFFER: usize = 65_536 + 64;

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags in the union.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Counters of a [`Tap`], for metrics.
#[derive(Debug, Default)]
pub struct TapStats {
    /// Frames received and handed to the callback.
    pub received: AtomicU64,
    /// Frames written to the interface.
    pub sent: AtomicU64,
    /// Frames dropped because the send queue was full or the write failed.
    pub dropped: AtomicU64,
}

/// A TAP interface with its reader and writer threads.
///
/// Dropping it stops both threads (frames still queued are written first) and
/// detaches from the interface; an interface it created goes away with it unless
/// it was made persistent beforehand.
pub struct Tap {
    name: String,
    sender: Option<SyncSender<Vec<u8>>>,
    /// Written to wake the reader thread when closing.
    wake: OwnedFd,
    stats: Arc<TapStats>,
    /// The interface, for [`Tap::send_now`].
    file: Arc<File>,
    /// Frames queued for the writer thread and not written yet.
    queued: Arc<AtomicUsize>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("name", &self.name)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn validate_name(name: &str) -> Result<(), BackendError> {
    let bad = |reason| {
        Err(BackendError::BadTapName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() >= IFNAMSIZ {
        return bad("it is longer than 15 bytes");
    }
    if name == "."
        || name == ".."
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
    {
        return bad("it contains '/', ':', whitespace or NUL, or is '.' or '..'");
    }
    Ok(())
}

impl Tap {
    /// Attaches to the TAP interface `name`, creating it if it does not exist
    /// (creating needs `CAP_NET_ADMIN`; attaching to a persistent interface owned by
    /// this user does not). The interface is not configured or brought up here.
    pub fn open(name: &str, notify: Notify<Vec<u8>>) -> Result<Tap, BackendError> {
        validate_name(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|source| BackendError::TunOpen {
                name: name.to_owned(),
                source,
            })?;
        let mut request = IfReq {
            name: [0; IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        request.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` lays out
        // (40 bytes on Linux); the pointer is valid for the call, the fd is open.
        let rc =
            unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut request as *mut IfReq) };
        if rc < 0 {
            let source = std::io::Error::last_os_error();
            let name = name.to_owned();
            return Err(match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => BackendError::TapPermission { name, source },
                Some(libc::EBUSY) => BackendError::TapAttach { name, reason: "it is in use by another process", source },
                Some(libc::EINVAL) => BackendError::TapAttach {
                    name,
                    reason: "an interface of that name exists and is not a TAP without packet information",
                    source,
                },
                _ => BackendError::TapAttach { name, reason: "the kernel refused TUNSETIFF", source },
            });
        }
        let actual = request
            .name
            .iter()
            .position(|&b| b == 0)
            .map_or(&request.name[..], |end| &request.name[..end]);
        let actual = String::from_utf8_lossy(actual).into_owned();

        // SAFETY: eventfd takes no pointers; a negative result is checked below.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            let source = std::io::Error::last_os_error();
            return Err(BackendError::Thread {
                name: format!("ftvm-tap-{actual} wake-up eventfd"),
                source,
            });
        }
        // SAFETY: `wake` is a fresh descriptor that nothing else owns.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };

        let file = Arc::new(file);
        let stats = Arc::new(TapStats::default());
        let (sender, frames) = sync_channel::<Vec<u8>>(SEND_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let mut tap = Tap {
            name: actual.clone(),
            sender: Some(sender),
            wake,
            stats: stats.clone(),
            file: file.clone(),
            queued: queued.clone(),
            reader: None,
            writer: None,
        };

        let thread_error = |name: String| move |source| BackendError::Thread { name, source };
        let writer_name = format!("ftvm-tap-tx-{actual}");
        let (writer_file, writer_stats) = (file.clone(), stats.clone());
        tap.writer = Some(
            std::thread::Builder::new()
                .name(writer_name.clone())
                .spawn(move || {
                    for frame in frames {
                        write_frame(&writer_file, &frame, &writer_stats);
                        queued.fetch_sub(1, Ordering::Release);
                    }
                })
                .map_err(thread_error(writer_name))?,
        );
        let reader_name = format!("ftvm-tap-rx-{actual}");
        let wake_fd = tap
            .wake
            .try_clone()
            .map_err(thread_error(reader_name.clone()))?;
        tap.reader = Some(
            std::thread::Builder::new()
                .name(reader_name.clone())
                .spawn(move || read_frames(&file, &wake_fd, &notify, &stats))
                .map_err(thread_error(reader_name))?,
        );
        Ok(tap)
    }

    /// The interface's name (as the kernel reports it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counters of received, sent and dropped frames.
    pub fn stats(&self) -> &TapStats {
        &self.stats
    }

    /// Queues one Ethernet frame (without FCS) for sending; never blocks. The frame is
    /// dropped if the queue is full.
    pub fn send(&self, frame: Vec<u8>) {
        let Some(sender) = &self.sender else { return };
        self.queued.fetch_add(1, Ordering::AcqRel);
        match sender.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes one frame on the calling thread (the descriptor is
    /// non-blocking: a full device queue drops it), unless frames queued by
    /// [`Tap::send`] are still unwritten, which it then follows through the
    /// queue. For a thread that is not a vCPU (the FT primary's
    /// acknowledgement reader lets held frames out): a frame through the
    /// writer thread costs a wake-up of it, on the core the sender runs on.
    pub fn send_now(&self, frame: Vec<u8>) {
        if self.sender.is_none() {
            return;
        }
        if self.queued.load(Ordering::Acquire) == 0 {
            write_frame(&self.file, &frame, &self.stats);
        } else {
            self.send(frame);
        }
    }
}

/// Writes one frame; the descriptor is non-blocking, so a full device queue drops it.
fn write_frame(mut file: &File, frame: &[u8], stats: &TapStats) {
    loop {
        match file.write(frame) {
            Ok(_) => {
                stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// The reader thread: waits for a frame or the wake-up, until woken or the device fails.
fn read_frames(mut file: &File, wake: &OwnedFd, notify: &Notify<Vec<u8>>, stats: &TapStats) {
    let mut buffer = vec![0; RECEIVE_BUFFER];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return;
        }
        // Each read returns exactly one frame.
        loop {
            match file.read(&mut buffer) {
                Ok(0) => return,
                Ok(len) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    notify(buffer[..len].to_vec());
                }
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and end.
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ifreq_is_the_size_of_struct_ifreq() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn test_open_refuses_long_name_naming_it() {
        let result = Tap::open("a-very-long-interface-name", Box::new(|_| {}));

        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("a-very-long-interface-name"), "{message}");
    }

    #[test]
    fn test_open_refuses_name_with_slash() {
        let result = Tap::open("tap/0", Box::new(|_| {}));

        assert!(matches!(result, Err(BackendError::BadTapName { .. })));
    }
}
