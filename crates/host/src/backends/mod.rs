//! Host backends of the virtio devices: disk images (raw file, NBD), TAP network
//! interfaces and the entropy source.
//!
//! DESIGN.md §1 splits every device in two. The *device model* (registers,
//! virtqueues, interrupts) is deterministic and runs on the vCPU thread; the *host
//! backend* here does the host I/O on its own threads. A backend never touches guest
//! memory: a request carries owned data (a bounce buffer copied out of guest RAM when
//! the request was taken from the queue) and its completion is handed to a [`Notify`]
//! callback supplied by the machine, which turns it into an event applied at an
//! instruction boundary. Completions may arrive in any order.

pub mod disk;
pub mod entropy;
mod error;
pub mod nbd;
pub mod tap;

pub use disk::{Disk, DiskDone, DiskIoError, DiskOp, WriteObserver};
pub use entropy::Entropy;
pub use error::BackendError;
pub use tap::Tap;

/// The callback through which a backend delivers a completion or a received frame.
///
/// It is called on one of the backend's own threads, never on the caller's, and
/// should return quickly (typically it pushes onto a channel).
pub type Notify<T> = Box<dyn Fn(T) + Send + Sync + 'static>;

/// Counts the backend threads that have ended, so that closing can wait with a
/// deadline before forcing a stuck connection down.
#[derive(Debug, Default)]
pub(crate) struct ExitCounter {
    ended: std::sync::Mutex<usize>,
    changed: std::sync::Condvar,
}

impl ExitCounter {
    /// Marks one thread as ended; called from a guard's `Drop`, so also on panic.
    pub(crate) fn mark_ended(&self) {
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *ended += 1;
        self.changed.notify_all();
    }

    /// Waits until `count` threads have ended or `timeout` passed; true if they all did.
    pub(crate) fn wait_for(&self, count: usize, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut ended = self
            .ended
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *ended < count {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            ended = match self.changed.wait_timeout(ended, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }
}

/// Increments an [`ExitCounter`] when the owning thread ends, however it ends.
pub(crate) struct ExitGuard(pub(crate) std::sync::Arc<ExitCounter>);

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.0.mark_ended();
    }
}
