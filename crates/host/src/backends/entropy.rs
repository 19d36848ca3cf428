//! The entropy source of virtio-rng: reads `/dev/urandom` on its own thread.

use std::fs::File;
use std::io::Read;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use super::{BackendError, Notify};

/// The device read.
const SOURCE: &str = "/dev/urandom";

/// The most bytes one request returns; larger requests get this many (virtio-rng
/// lets the device fill less than the buffer offered).
pub const MAX_REQUEST: u32 = 1 << 20;

/// An entropy source. Dropping it answers what was requested, then stops its thread.
#[derive(Debug)]
pub struct Entropy {
    sender: Option<Sender<(u64, u32)>>,
    thread: Option<JoinHandle<()>>,
}

impl Entropy {
    /// Opens the host's entropy source; each answer is `(id, bytes)`.
    pub fn open(notify: Notify<(u64, Vec<u8>)>) -> Result<Entropy, BackendError> {
        let mut source = File::open(SOURCE).map_err(|source| BackendError::EntropyOpen {
            path: SOURCE,
            source,
        })?;
        let (sender, requests) = channel::<(u64, u32)>();
        let name = "ftvm-entropy".to_owned();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                for (id, len) in requests {
                    let mut bytes = vec![0; len.min(MAX_REQUEST) as usize];
                    // /dev/urandom does not fail once open; should it, fewer bytes are
                    // returned, which virtio-rng allows.
                    let filled = read_some(&mut source, &mut bytes);
                    bytes.truncate(filled);
                    notify((id, bytes));
                }
            })
            .map_err(|source| BackendError::Thread { name, source })?;
        Ok(Entropy {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Asks for `len` random bytes (at most [`MAX_REQUEST`]); the answer carries `id`.
    pub fn request(&self, id: u64, len: u32) {
        if let Some(sender) = &self.sender {
            // The thread only ends when this handle is dropped.
            let _ = sender.send((id, len));
        }
    }
}

fn read_some(source: &mut File, bytes: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < bytes.len() {
        match source.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    filled
}

impl Drop for Entropy {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn test_entropy_returns_requested_lengths() {
        let (tx, rx) = channel();
        let tx = std::sync::Mutex::new(tx);
        let entropy = Entropy::open(Box::new(move |answer| {
            let _ = tx.lock().map(|tx| tx.send(answer));
        }))
        .expect("open /dev/urandom");

        entropy.request(1, 64);
        entropy.request(2, 4096);
        entropy.request(3, 0);
        let answers: Vec<(u64, usize)> = (0..3)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(5))
                    .map(|(id, b)| (id, b.len()))
                    .expect("answer")
            })
            .collect();

        assert_eq!(answers, vec![(1, 64), (2, 4096), (3, 0)]);
    }

    #[test]
    fn test_entropy_caps_huge_request() {
        let (tx, rx) = channel();
        let tx = std::sync::Mutex::new(tx);
        let entropy = Entropy::open(Box::new(move |answer| {
            let _ = tx.lock().map(|tx| tx.send(answer));
        }))
        .expect("open /dev/urandom");

        entropy.request(9, u32::MAX);
        let (id, bytes) = rx.recv_timeout(Duration::from_secs(5)).expect("answer");

        assert_eq!((id, bytes.len()), (9, MAX_REQUEST as usize));
    }
}
