//! The live host side of the event boundary: guest time follows the host's
//! monotonic clock, idle waits for real, input comes from the console and
//! completions from the host backends (disk, network, entropy), each on its
//! own threads. Everything that reaches the machine arrives on one channel.

use ftvm_devices::virtio::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use ftvm_devices::{BackendCompletion, BackendRequest, BlockOp};
use ftvm_host::backends::{Disk, DiskDone, DiskOp, Entropy, Tap};
use ftvm_machine::layout::TIMEBASE_HZ;
use ftvm_machine::Environment;
use std::io::Read;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the host sends to the machine.
#[derive(Debug)]
pub enum HostEvent {
    /// Bytes typed on the console.
    Console(Vec<u8>),
    /// The user pressed Ctrl-A x.
    Quit,
    /// A host backend finished something for the device in `slot`.
    Completion(usize, BackendCompletion),
}

/// The host backend of one virtio slot.
pub enum LiveBackend {
    /// A disk (image file or NBD export).
    Disk(Disk),
    /// A TAP network device.
    Tap(Tap),
    /// The host's entropy.
    Entropy(Entropy),
}

/// Sending end for backends' completion callbacks.
#[derive(Clone)]
pub struct EventSender(Sender<HostEvent>);

impl EventSender {
    /// A completion callback for a disk in `slot`.
    pub fn disk(&self, slot: usize) -> Box<dyn Fn(DiskDone) + Send + Sync> {
        let tx = std::sync::Mutex::new(self.0.clone());
        Box::new(move |done: DiskDone| {
            let (status, data) = match done.result {
                Ok(data) => (VIRTIO_BLK_S_OK, data),
                Err(_) => (VIRTIO_BLK_S_IOERR, Vec::new()),
            };
            let c = BackendCompletion::Block {
                id: done.id,
                status,
                data,
            };
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(HostEvent::Completion(slot, c));
            }
        })
    }

    /// A receive callback for a TAP in `slot`.
    pub fn net(&self, slot: usize) -> Box<dyn Fn(Vec<u8>) + Send + Sync> {
        let tx = std::sync::Mutex::new(self.0.clone());
        Box::new(move |frame| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(HostEvent::Completion(
                    slot,
                    BackendCompletion::NetRx { frame },
                ));
            }
        })
    }

    /// A completion callback for an entropy source in `slot`.
    pub fn entropy(&self, slot: usize) -> Box<dyn Fn((u64, Vec<u8>)) + Send + Sync> {
        let tx = std::sync::Mutex::new(self.0.clone());
        Box::new(move |(id, data)| {
            if let Ok(tx) = tx.lock() {
                let _ = tx.send(HostEvent::Completion(
                    slot,
                    BackendCompletion::Entropy { id, data },
                ));
            }
        })
    }

    /// The raw sender (for the console).
    pub fn sender(&self) -> Sender<HostEvent> {
        self.0.clone()
    }
}

/// The environment of a live run.
pub struct LiveEnvironment {
    start: Instant,
    events: Receiver<HostEvent>,
    /// True when something outside can still wake an idle guest without a
    /// timer (the console or a network card).
    wakeable: bool,
    pending_input: Vec<u8>,
    pending: Vec<(usize, BackendCompletion)>,
    backends: Vec<Option<LiveBackend>>,
    in_flight: usize,
    quit: std::rc::Rc<std::cell::Cell<bool>>,
    /// The device tree's rng-seed, read from the host's entropy at start.
    seed: [u8; 32],
}

/// Makes the channel every host event arrives on.
pub fn event_channel() -> (EventSender, Receiver<HostEvent>) {
    let (tx, rx) = channel();
    (EventSender(tx), rx)
}

impl LiveEnvironment {
    /// A live environment whose clock starts now. Fails if the host's
    /// entropy (for the rng-seed) cannot be read.
    pub fn new(
        events: Receiver<HostEvent>,
        console_input: bool,
        backends: Vec<LiveBackend>,
    ) -> anyhow::Result<Self> {
        let wakeable = console_input || backends.iter().any(|b| matches!(b, LiveBackend::Tap(_)));
        let mut seed = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut seed))
            .map_err(|e| {
                anyhow::anyhow!("cannot read the host's entropy from /dev/urandom: {e}")
            })?;
        Ok(LiveEnvironment {
            start: Instant::now(),
            events,
            wakeable,
            pending_input: Vec::new(),
            pending: Vec::new(),
            backends: backends.into_iter().map(Some).collect(),
            in_flight: 0,
            quit: Default::default(),
            seed,
        })
    }

    /// A flag that turns true once the user asks to quit (Ctrl-A x).
    pub fn quit_flag(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.quit.clone()
    }

    /// Stops the backends, letting them finish what is in flight.
    pub fn shutdown(&mut self) {
        for backend in self.backends.iter_mut().filter_map(Option::take) {
            if let LiveBackend::Disk(disk) = backend {
                disk.close();
            }
        }
    }

    fn ticks(&self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        u64::try_from(ns * u128::from(TIMEBASE_HZ) / 1_000_000_000).unwrap_or(u64::MAX)
    }

    fn accept(&mut self, event: HostEvent) {
        match event {
            HostEvent::Console(b) => self.pending_input.extend_from_slice(&b),
            HostEvent::Quit => self.quit.set(true),
            HostEvent::Completion(slot, c) => {
                if !matches!(c, BackendCompletion::NetRx { .. }) {
                    self.in_flight = self.in_flight.saturating_sub(1);
                }
                self.pending.push((slot, c));
            }
        }
    }

    fn poll(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.accept(event);
        }
    }
}

impl Environment for LiveEnvironment {
    fn now(&mut self, _icount: u64) -> u64 {
        self.ticks()
    }

    fn idle(&mut self, _icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        self.poll();
        if !self.pending_input.is_empty() || !self.pending.is_empty() || self.quit.get() {
            return Some(self.ticks());
        }
        let wait = match deadline {
            Some(d) => {
                let ticks = d.saturating_sub(now.max(self.ticks()));
                Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / TIMEBASE_HZ))
            }
            None if self.wakeable || self.in_flight > 0 => Duration::from_millis(100),
            None => return None,
        };
        match self.events.recv_timeout(wait) {
            Ok(event) => self.accept(event),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        Some(self.ticks())
    }

    fn console_input(&mut self, _icount: u64, max: usize) -> Vec<u8> {
        self.poll();
        let n = self.pending_input.len().min(max);
        self.pending_input.drain(..n).collect()
    }

    fn wall_clock_base_ns(&mut self) -> u64 {
        let since_start = self.start.elapsed();
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.saturating_sub(since_start).as_nanos())
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    }

    fn rng_seed(&mut self) -> [u8; 32] {
        self.seed
    }

    fn submit(&mut self, _icount: u64, slot: usize, request: BackendRequest) {
        let backend = self.backends.get(slot).and_then(Option::as_ref);
        match (backend, request) {
            (Some(LiveBackend::Disk(disk)), BackendRequest::Block { id, op }) => {
                self.in_flight += 1;
                disk.submit(
                    id,
                    match op {
                        BlockOp::Read { sector, len } => DiskOp::Read {
                            offset: sector.saturating_mul(512),
                            len,
                        },
                        BlockOp::Write { sector, data } => DiskOp::Write {
                            offset: sector.saturating_mul(512),
                            data,
                        },
                        BlockOp::Flush => DiskOp::Flush,
                        BlockOp::Discard { sector, sectors } => DiskOp::Discard {
                            offset: sector.saturating_mul(512),
                            len: sectors.saturating_mul(512),
                        },
                    },
                );
            }
            (Some(LiveBackend::Tap(tap)), BackendRequest::NetTx { frame }) => tap.send(frame),
            (Some(LiveBackend::Entropy(e)), BackendRequest::Entropy { id, len }) => {
                self.in_flight += 1;
                e.request(id, len);
            }
            // A request for a backend of another kind cannot come from a
            // correctly built machine; answer it as a failure rather than hang.
            (_, BackendRequest::Block { id, .. }) => self.pending.push((
                slot,
                BackendCompletion::Block {
                    id,
                    status: VIRTIO_BLK_S_IOERR,
                    data: Vec::new(),
                },
            )),
            (_, BackendRequest::Entropy { id, .. }) => self.pending.push((
                slot,
                BackendCompletion::Entropy {
                    id,
                    data: Vec::new(),
                },
            )),
            (_, BackendRequest::NetTx { .. }) => {}
        }
    }

    fn completions(&mut self, _icount: u64) -> Vec<(usize, BackendCompletion)> {
        self.poll();
        std::mem::take(&mut self.pending)
    }
}
