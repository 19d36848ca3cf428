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
#[derive(Debug)]
pub enum LiveBackend {
    /// A disk (image file or NBD export).
    Disk(Disk),
    /// A TAP network device.
    Tap(Tap),
    /// The host's entropy.
    Entropy(Entropy),
}

/// The host backends of a machine, by virtio slot. Shared: the FT pair's
/// output gate releases held requests from another thread.
#[derive(Debug, Default)]
pub struct Backends(Vec<LiveBackend>);

impl Backends {
    /// The backends, in slot order.
    pub fn new(list: Vec<LiveBackend>) -> Backends {
        Backends(list)
    }

    /// Has every disk tell `tracker` of the ranges it writes from now on
    /// (`None`: no longer).
    pub fn track_writes(&self, tracker: Option<std::sync::Arc<crate::ft::diskcopy::WriteTracker>>) {
        for (slot, backend) in self.0.iter().enumerate() {
            if let LiveBackend::Disk(disk) = backend {
                disk.set_write_observer(tracker.clone().map(|t| {
                    std::sync::Arc::new(move |offset, len| t.mark(slot, offset, len))
                        as ftvm_host::backends::WriteObserver
                }));
            }
        }
    }

    /// The TAP devices.
    pub fn taps(&self) -> impl Iterator<Item = &Tap> {
        self.0.iter().filter_map(|b| match b {
            LiveBackend::Tap(t) => Some(t),
            _ => None,
        })
    }

    /// [`Backends::submit`], but a frame to send is written on the calling
    /// thread ([`Tap::send_now`]): for a thread that is not the vCPU.
    pub fn submit_now(&self, slot: usize, request: BackendRequest) -> Option<BackendCompletion> {
        match (self.0.get(slot), request) {
            (Some(LiveBackend::Tap(tap)), BackendRequest::NetTx { frame }) => {
                tap.send_now(frame);
                None
            }
            (_, request) => self.submit(slot, request),
        }
    }

    /// Hands `request` to the backend in `slot`. A request the backend
    /// cannot take (a backend of another kind, which a correctly built
    /// machine never asks for) is answered at once with a failure, returned.
    pub fn submit(&self, slot: usize, request: BackendRequest) -> Option<BackendCompletion> {
        match (self.0.get(slot), request) {
            (Some(LiveBackend::Disk(disk)), BackendRequest::Block { id, op }) => {
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
                None
            }
            (Some(LiveBackend::Tap(tap)), BackendRequest::NetTx { frame }) => {
                tap.send(frame);
                None
            }
            (Some(LiveBackend::Entropy(e)), BackendRequest::Entropy { id, len }) => {
                e.request(id, len);
                None
            }
            (_, BackendRequest::Block { id, .. }) => Some(BackendCompletion::Block {
                id,
                status: VIRTIO_BLK_S_IOERR,
                data: Vec::new(),
            }),
            (_, BackendRequest::Entropy { id, .. }) => Some(BackendCompletion::Entropy {
                id,
                data: Vec::new(),
            }),
            (_, BackendRequest::NetTx { .. }) => None,
        }
    }
}

/// Where a live environment sends requests that are outputs to the world
/// (the FT primary holds them until the backup has the log up to them).
pub trait OutputSink {
    /// Whether `request` to `slot` must wait for the output rule.
    fn is_output(&self, slot: usize, request: &BackendRequest) -> bool;
    /// Takes an output; it reaches `backends` when the rule allows (once the
    /// log up to it is sent: see [`OutputSink::submitted`]).
    fn hold(&self, slot: usize, request: BackendRequest);
    /// The machine has handed over the requests of its devices for now
    /// (it goes on with the next slice, or waits): the log up to the
    /// outputs held since the last call may go. One send for a batch: a
    /// send for each output of a batch (a 1 MiB write is several requests)
    /// woke the sender thread, which then took the vCPU's core, each time.
    fn submitted(&self);
    /// Called before the environment blocks waiting for an event.
    fn before_wait(&self);
    /// A disk read of `len` bytes at `sector` went to the backend in `slot`.
    fn read_submitted(&self, _slot: usize, _id: u64, _sector: u64, _len: u32) {}
    /// The disk request `id` in `slot` completed, in the slice that began at
    /// guest time `mtime` (the last time answer given); `data`: it is a read
    /// that returned data.
    fn block_completed(&self, _slot: usize, _id: u64, _mtime: u64, _data: bool) {}
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
    backends: Option<std::sync::Arc<Backends>>,
    outputs: Option<std::sync::Arc<dyn OutputSink>>,
    /// Outputs went to `outputs` since its last [`OutputSink::submitted`].
    held: bool,
    in_flight: usize,
    /// Time-base ticks added to the host clock (a backup going live
    /// continues the guest time it replayed).
    tick_offset: u64,
    /// The last guest time answered (`now` or `idle`).
    last_time: u64,
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
        backends: std::sync::Arc<Backends>,
    ) -> anyhow::Result<Self> {
        let wakeable = console_input || backends.taps().next().is_some();
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
            backends: Some(backends),
            outputs: None,
            held: false,
            in_flight: 0,
            tick_offset: 0,
            last_time: 0,
            quit: Default::default(),
            seed,
        })
    }

    /// A flag that turns true once the user asks to quit (Ctrl-A x).
    pub fn quit_flag(&self) -> std::rc::Rc<std::cell::Cell<bool>> {
        self.quit.clone()
    }

    /// Sends requests that are outputs through `sink` (the FT output rule).
    pub fn set_output_sink(&mut self, sink: std::sync::Arc<dyn OutputSink>) {
        self.outputs = Some(sink);
    }

    /// Lets every request reach the backends directly again.
    pub fn clear_output_sink(&mut self) {
        self.outputs = None;
    }

    /// Makes the clock read `mtime` now and run on from there.
    pub fn continue_time_from(&mut self, mtime: u64) {
        self.start = Instant::now();
        self.tick_offset = mtime;
    }

    /// Hands a request to the backends as [`Environment::submit`] does,
    /// counting it in flight (a backup going live re-issues what was pending).
    pub fn reissue(&mut self, slot: usize, request: BackendRequest) {
        self.submit(0, slot, request);
    }

    /// Drops every host event received so far (a backup's own backends
    /// receive things it must not act on before it goes live).
    pub fn discard_events(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            if let HostEvent::Quit = event {
                self.quit.set(true);
            }
        }
    }

    /// The host backends.
    pub fn backends(&self) -> Option<&std::sync::Arc<Backends>> {
        self.backends.as_ref()
    }

    /// Hands `request` to the backend in `slot` and waits (at most
    /// `timeout`) for its completion, dropping every other host event
    /// meanwhile (a backup with its own copy of the disk performs the
    /// writes it replays, in order).
    pub fn perform_now(
        &mut self,
        slot: usize,
        request: BackendRequest,
        timeout: Duration,
    ) -> Option<BackendCompletion> {
        let backends = self.backends.as_ref()?;
        if let Some(failed) = backends.submit(slot, request) {
            return Some(failed);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(HostEvent::Completion(s, c))
                    if s == slot && !matches!(c, BackendCompletion::NetRx { .. }) =>
                {
                    return Some(c)
                }
                Ok(HostEvent::Quit) => self.quit.set(true),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Waits (at most `timeout`) until every request handed to the backends
    /// has completed on the host; the completions are kept for the guest
    /// and reach it at its next step. `false` if some did not complete in
    /// time. (A side copying its disks to a new backup lets the requests
    /// in flight finish first, so the copy holds what they wrote.)
    pub fn drain_in_flight(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.in_flight > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match self.events.recv_timeout(left) {
                Ok(event) => self.accept(event),
                Err(_) => return self.in_flight == 0,
            }
        }
        true
    }

    /// Stops the backends, letting them finish what is in flight (once no
    /// one else holds them).
    pub fn shutdown(&mut self) {
        self.outputs = None;
        if let Some(backends) = self.backends.take() {
            drop(std::sync::Arc::try_unwrap(backends));
        }
    }

    fn ticks(&self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        u64::try_from(ns * u128::from(TIMEBASE_HZ) / 1_000_000_000)
            .unwrap_or(u64::MAX)
            .saturating_add(self.tick_offset)
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

    /// Tells the output sink the requests held so far are all it gets for now.
    fn outputs_submitted(&mut self) {
        if std::mem::take(&mut self.held) {
            if let Some(sink) = &self.outputs {
                sink.submitted();
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
        // A step begins: the previous one's requests are all handed over.
        self.outputs_submitted();
        self.last_time = self.ticks();
        self.last_time
    }

    fn idle(&mut self, _icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        self.poll();
        if !self.pending_input.is_empty() || !self.pending.is_empty() || self.quit.get() {
            self.last_time = self.ticks();
            return Some(self.last_time);
        }
        let wait = match deadline {
            Some(d) => {
                let ticks = d.saturating_sub(now.max(self.ticks()));
                Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / TIMEBASE_HZ))
            }
            None if self.wakeable || self.in_flight > 0 => Duration::from_millis(100),
            None => return None,
        };
        self.outputs_submitted();
        if let Some(sink) = &self.outputs {
            sink.before_wait();
        }
        match self.events.recv_timeout(wait) {
            Ok(event) => self.accept(event),
            Err(RecvTimeoutError::Timeout) => {}
            // Nothing can send any more: the wait is a plain sleep.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
        }
        self.last_time = self.ticks();
        Some(self.last_time)
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
        if !matches!(request, BackendRequest::NetTx { .. }) {
            self.in_flight += 1;
        }
        if let Some(sink) = &self.outputs {
            if let BackendRequest::Block {
                id,
                op: BlockOp::Read { sector, len },
            } = &request
            {
                sink.read_submitted(slot, *id, *sector, *len);
            }
            if sink.is_output(slot, &request) {
                sink.hold(slot, request);
                self.held = true;
                return;
            }
        }
        let Some(backends) = &self.backends else {
            return;
        };
        if let Some(failed) = backends.submit(slot, request) {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.pending.push((slot, failed));
        }
    }

    fn completions(&mut self, _icount: u64) -> Vec<(usize, BackendCompletion)> {
        self.poll();
        if let Some(sink) = &self.outputs {
            for (slot, c) in &self.pending {
                if let BackendCompletion::Block { id, status, data } = c {
                    let data = *status == VIRTIO_BLK_S_OK && !data.is_empty();
                    sink.block_completed(*slot, *id, self.last_time, data);
                }
            }
        }
        std::mem::take(&mut self.pending)
    }
}
