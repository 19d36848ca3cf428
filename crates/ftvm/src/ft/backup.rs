//! `ftvm backup`: replays the primary's log as it arrives, a little behind,
//! and goes live when the primary is declared failed and this side wins the
//! arbiter.
//!
//! [`BackupEnvironment`] answers the machine from the log (a [`Replayer`])
//! while paired. Once the log is exhausted after go-live was decided (every
//! entry received has been replayed), it switches, at exactly that point of
//! the run, to a live environment on this host's own backends: it continues
//! the guest's time, re-issues the disk and entropy requests the primary had
//! in flight, sends again the outputs the primary may not have sent (frames
//! and console bytes produced after the last release the primary reported:
//! duplicates are possible, loss is not), and announces the guest's MAC
//! through each TAP.

use super::pipe::{split_frames, Inbound};
use super::{read_message, start_heartbeats, FtArgs, Hooks, Shared};
use crate::console::Console;
use crate::live::{Backends, LiveEnvironment};
use ftvm_devices::virtio::VIRTIO_BLK_S_OK;
use ftvm_devices::{BackendCompletion, BackendRequest, BlockOp};
use ftvm_machine::replay::{digest_due, Replayer};
use ftvm_machine::{Environment, Machine, MachineConfig, Step};
use ftvm_protocol::{Input, Message, Role};
use ftvm_replay::{EndStatus, LogReader};
use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// Everything the backup needs besides its flags.
pub struct BackupSetup {
    /// The machine, as this side's flags describe it.
    pub config: MachineConfig,
    /// This side's configuration record, compared with the primary's.
    pub config_record: Vec<u8>,
    /// The live environment for after go-live (devices open).
    pub env: LiveEnvironment,
    /// The console.
    pub console: Console,
    /// MAC addresses of the network cards, by virtio slot.
    pub macs: Vec<(usize, [u8; 6])>,
    /// This side's writable disk images (with `--non-shared-disk`, a copy
    /// of the running primary's is written into them when joining it), or
    /// why they cannot be written that way.
    pub disks: Result<Vec<super::diskcopy::Image>, String>,
}

/// An output the primary may not have sent, with its tag.
enum Resend {
    Frame(usize, Vec<u8>),
    Console(Vec<u8>),
}

/// Requests submitted and not completed yet, by (slot, id): the order they
/// were submitted in, and the slot and request.
type Outstanding = BTreeMap<(usize, u64), (u64, (usize, BackendRequest))>;

/// The backup's side of the event boundary.
pub struct BackupEnvironment {
    replayer: Replayer<super::pipe::InboundReader>,
    live: LiveEnvironment,
    is_live: bool,
    /// Requests submitted and not completed yet, by (slot, id), in order.
    outstanding: Outstanding,
    order: u64,
    /// Outputs after the primary's last reported release.
    resend: VecDeque<(u64, Resend)>,
    /// The primary's release bound as last reported.
    released: u64,
    /// The guest time last answered.
    mtime: u64,
    /// Perform disk writes on this side's own copy.
    own_disk: bool,
    macs: Vec<(usize, [u8; 6])>,
    /// Console bytes to print at go-live.
    console_backlog: Vec<u8>,
    /// Where this side reports how far it has executed.
    shared: Arc<Shared>,
}

impl BackupEnvironment {
    fn switch(&mut self, icount: u64) -> bool {
        if !self.is_live && self.replayer.exhausted() {
            self.go_live(icount);
        }
        self.is_live
    }

    fn go_live(&mut self, icount: u64) {
        self.is_live = true;
        self.live.discard_events();
        self.live.continue_time_from(self.mtime);
        let backends = self.live.backends().cloned();
        // Outputs the primary may not have sent.
        let released = self.released;
        for (tag, item) in std::mem::take(&mut self.resend) {
            if tag <= released {
                continue;
            }
            match item {
                Resend::Frame(slot, frame) => {
                    if let Some(b) = &backends {
                        b.submit(slot, BackendRequest::NetTx { frame });
                    }
                }
                Resend::Console(bytes) => self.console_backlog.extend(bytes),
            }
        }
        // Requests the primary had in flight.
        let mut pending: Vec<_> = std::mem::take(&mut self.outstanding)
            .into_values()
            .collect();
        pending.sort_by_key(|(order, _)| *order);
        let reissued = pending.len();
        for (_, (slot, request)) in pending {
            self.live.reissue(slot, request);
        }
        if let Some(b) = &backends {
            announce(b, &self.macs);
        }
        eprintln!(
            "\r\nftvm backup: live at icount {icount}; {reissued} request(s) re-issued; guest MAC announced"
        );
    }

    fn tag(&self) -> u64 {
        self.replayer.stats().entries
    }

    /// Keeps console output until the primary has reported it released.
    fn console(&mut self, bytes: Vec<u8>, released: u64) {
        self.released = self.released.max(released);
        let released = self.released;
        while self.resend.front().is_some_and(|(t, _)| *t <= released) {
            self.resend.pop_front();
        }
        if !bytes.is_empty() {
            let tag = self.tag();
            self.resend.push_back((tag, Resend::Console(bytes)));
        }
    }
}

impl BackupEnvironment {
    fn track(&mut self, slot: usize, request: &BackendRequest) {
        let id = match request {
            BackendRequest::Block { id, .. } | BackendRequest::Entropy { id, .. } => *id,
            BackendRequest::NetTx { .. } => return,
        };
        self.order += 1;
        self.outstanding
            .insert((slot, id), (self.order, (slot, request.clone())));
    }
}

impl Environment for BackupEnvironment {
    fn now(&mut self, icount: u64) -> u64 {
        if self.switch(icount) {
            return self.live.now(icount);
        }
        let t = self.replayer.now(icount);
        self.mtime = self.mtime.max(t);
        // The slice that starts here is the primary's last one if the
        // backup has caught up: the replayer waits for the primary's next
        // entry inside this step (to know that no input comes at this
        // icount), so the position is reported now, not after the step.
        self.shared.executed(icount, self.mtime);
        t
    }

    fn idle(&mut self, icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        if self.switch(icount) {
            return self.live.idle(icount, now, deadline);
        }
        let woke = self.replayer.idle(icount, now, deadline);
        if let Some(t) = woke {
            self.mtime = self.mtime.max(t);
        }
        woke
    }

    fn console_input(&mut self, icount: u64, max: usize) -> Vec<u8> {
        if self.switch(icount) {
            return self.live.console_input(icount, max);
        }
        self.replayer.console_input(icount, max)
    }

    fn wall_clock_base_ns(&mut self) -> u64 {
        self.replayer.wall_clock_base_ns()
    }

    fn rng_seed(&mut self) -> [u8; 32] {
        self.replayer.rng_seed()
    }

    fn submit(&mut self, icount: u64, slot: usize, request: BackendRequest) {
        if self.switch(icount) {
            return self.live.submit(icount, slot, request);
        }
        self.replayer.check_submit(icount, slot, &request);
        if self.replayer.exhausted() {
            // The log ends with this request: the primary may or may not
            // have carried it out. It is in flight: re-issued with the rest.
            self.track(slot, &request);
            if let BackendRequest::NetTx { frame } = &request {
                let tag = self.tag();
                self.resend
                    .push_back((tag, Resend::Frame(slot, frame.clone())));
            }
            self.go_live(icount);
            return;
        }
        let tag = self.tag();
        self.track(slot, &request);
        match request {
            BackendRequest::NetTx { frame } => {
                self.resend.push_back((tag, Resend::Frame(slot, frame)));
            }
            BackendRequest::Block { id, op }
                if self.own_disk && !matches!(op, BlockOp::Read { .. }) =>
            {
                // This side's copy gets the same writes, in order.
                let done = self.live.perform_now(
                    slot,
                    BackendRequest::Block { id, op },
                    Duration::from_secs(60),
                );
                if !matches!(done, Some(BackendCompletion::Block { status: 0, .. })) {
                    eprintln!("\r\nftvm backup: a write to this side's copy of disk {slot} failed");
                }
            }
            _ => {}
        }
    }

    fn completions(&mut self, icount: u64) -> Vec<(usize, BackendCompletion)> {
        if self.switch(icount) {
            return self.live.completions(icount);
        }
        // A read the primary logged without its data is read here, from the
        // shared disk, as the replay reaches its completion.
        let outstanding = &self.outstanding;
        let live = &mut self.live;
        let done = self
            .replayer
            .completions_reading(icount, &mut |slot, id, len| {
                read_again(live, outstanding, slot, id, len)
            });
        for (slot, c) in &done {
            let id = match c {
                BackendCompletion::Block { id, .. } | BackendCompletion::Entropy { id, .. } => *id,
                BackendCompletion::NetRx { .. } => continue,
            };
            self.outstanding.remove(&(*slot, id));
        }
        done
    }
}

/// Performs the read `id` in `slot` (a request the replayed machine made,
/// still outstanding) on this side's disk and returns its data.
fn read_again(
    live: &mut LiveEnvironment,
    outstanding: &Outstanding,
    slot: usize,
    id: u64,
    len: u32,
) -> Result<Vec<u8>, String> {
    let Some((_, (_, request))) = outstanding.get(&(slot, id)) else {
        return Err(format!(
            "the primary logged the completion of a {len}-byte read this side never saw requested"
        ));
    };
    if !matches!(
        request,
        BackendRequest::Block {
            op: BlockOp::Read { .. },
            ..
        }
    ) {
        return Err("the request with this id is not a read".to_string());
    }
    // A read of the shared disk that fails is tried again: the primary's
    // succeeded, so the data is there.
    let mut last = String::new();
    for _ in 0..3 {
        match live.perform_now(slot, request.clone(), Duration::from_secs(60)) {
            Some(BackendCompletion::Block {
                status: VIRTIO_BLK_S_OK,
                data,
                ..
            }) => return Ok(data),
            Some(BackendCompletion::Block { status, .. }) => {
                last = format!("this side's read of the shared disk failed (status {status})")
            }
            _ => last = "this side's read of the shared disk did not complete in 60 s".to_string(),
        }
    }
    Err(last)
}

/// Sends RARP announcements of each guest MAC through its TAP, as QEMU
/// does after migration, so that bridges learn the guest's new port.
fn announce(backends: &Arc<Backends>, macs: &[(usize, [u8; 6])]) {
    for &(slot, mac) in macs {
        let frame = rarp(mac);
        for _ in 0..3 {
            backends.submit(
                slot,
                BackendRequest::NetTx {
                    frame: frame.clone(),
                },
            );
        }
    }
}

/// A RARP "request reverse" frame from `mac` (ethertype 0x8035).
pub fn rarp(mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x80, 0x35]);
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]);
    f.resize(60, 0);
    f
}

/// Fails, naming the first difference, if the primary's configuration
/// record `theirs` describes another machine than `ours`.
fn check_same_machine(theirs: &[u8], ours: &[u8]) -> anyhow::Result<()> {
    let (theirs, ours) = (fingerprint(theirs), fingerprint(ours));
    if theirs != ours {
        let diff = theirs
            .iter()
            .zip(ours.iter())
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("the primary has `{a}`, this side `{b}`"))
            .unwrap_or_else(|| "a different number of devices".into());
        anyhow::bail!("the primary runs a different machine: {diff}");
    }
    Ok(())
}

/// The parts of a configuration record that must agree between the two
/// sides: everything but where each side keeps its image files.
fn fingerprint(record: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(record)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                [kind @ ("firmware" | "kernel" | "initrd"), hash, _path] => {
                    format!("{kind} {hash}")
                }
                _ => line.to_string(),
            }
        })
        .collect()
}

/// Runs the backup until the replayed guest powers off, or until it ran live
/// and ended.
///
/// With `listen`, once live this side takes new backups there, as a primary
/// whose backup is gone does ([`super::primary::protect`]).
pub fn run(
    peers: &[SocketAddr],
    spare: bool,
    listen: Option<SocketAddr>,
    args: &FtArgs,
    setup: BackupSetup,
) -> anyhow::Result<std::process::ExitCode> {
    let arbiter = ftvm_arbiter::open(&args.arbiter)
        .map_err(|e| anyhow::anyhow!("--arbiter {}: {e}", args.arbiter))?;
    // Bound now, so that a wrong address is said at once; used once live.
    let listener = match listen {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for a new backup: {e}"))?,
        ),
        None => None,
    };
    let (mut stream, peer, udp, first) = if spare {
        wait_as_spare(peers)?
    } else {
        let [peer] = peers else {
            anyhow::bail!(
                "--peer is given {} times: more than one is for --spare",
                peers.len()
            );
        };
        let (stream, udp) = hello(*peer, connect(*peer)?)?;
        (stream, *peer, udp, None)
    };
    // A primary running alone with disks of their own copies its disks
    // first, while its guest runs (the rest comes after the snapshot).
    let mut receiver: Option<super::diskcopy::Receiver> = None;
    // And RAM, while its guest runs.
    let mut ram: Option<super::ramcopy::RamReceiver> = None;
    let precopy_started = std::time::Instant::now();
    let mut first = first;
    // A copy comes after the primary's configuration, checked first.
    let mut same_machine = false;
    let welcome = loop {
        let message = match first.take() {
            Some(message) => message,
            None => read_message(&mut stream)
                .map_err(|e| anyhow::anyhow!("the primary at {peer} did not welcome us: {e}"))?,
        };
        if matches!(
            message,
            Message::RamRun { .. }
                | Message::DiskImage { .. }
                | Message::DiskData { .. }
                | Message::DiskZero { .. }
        ) && !same_machine
        {
            anyhow::bail!(
                "the primary at {peer} copies its guest before saying which machine it runs"
            );
        }
        match message {
            Message::Config { len } => {
                let mut record = vec![0u8; len as usize];
                stream
                    .read_exact(&mut record)
                    .map_err(|e| anyhow::anyhow!("receiving the primary's configuration: {e}"))?;
                check_same_machine(&record, &setup.config_record)?;
                same_machine = true;
            }
            // The ends (`RamEnd`, `DiskEnd`) come only after the snapshot:
            // before the welcome they are no message of a copy.
            Message::RamRun { .. } => {
                let mut r = match ram.take() {
                    Some(r) => r,
                    None => super::ramcopy::RamReceiver::new(setup.config.memory_size)?,
                };
                r.take(message, &mut stream)
                    .map_err(|e| anyhow::anyhow!("receiving the primary's RAM: {e:#}"))?;
                ram = Some(r);
            }
            Message::DiskImage { .. } | Message::DiskData { .. } | Message::DiskZero { .. }
                if args.non_shared_disk =>
            {
                let mut r = match receiver.take() {
                    Some(r) => r,
                    None => {
                        let images = setup.disks.as_ref().map_err(|why| {
                            anyhow::anyhow!(
                                "the primary copies its disks to this side, which cannot take them: {why}"
                            )
                        })?;
                        super::diskcopy::Receiver::new(images)?
                    }
                };
                r.take(message, &mut stream)
                    .map_err(|e| anyhow::anyhow!("receiving the primary's disks: {e:#}"))?;
                receiver = Some(r);
            }
            Message::DiskImage { .. } | Message::DiskData { .. } | Message::DiskZero { .. } => {
                anyhow::bail!(
                    "the primary copies its disks to this side (it has --non-shared-disk), but this side shares them"
                )
            }
            other => break other,
        }
    };
    if receiver.is_some() || ram.is_some() {
        eprintln!(
            "ftvm backup: received the primary's {} while its guest ran, in {} ms",
            match (receiver.is_some(), ram.is_some()) {
                (true, true) => "disks and RAM",
                (true, false) => "disks",
                _ => "RAM",
            },
            precopy_started.elapsed().as_millis()
        );
    }
    let Message::Welcome {
        session,
        udp_port,
        snapshot,
        epoch,
        disks: disks_copied,
        ram_apart,
    } = welcome
    else {
        anyhow::bail!("the primary at {peer} sent {welcome:?} instead of welcome");
    };
    eprintln!("ftvm backup: connected to the primary at {peer}, session {session:016x}");

    let BackupSetup {
        config,
        config_record,
        env,
        mut console,
        macs,
        disks,
    } = setup;
    // A primary running alone sends a snapshot of its running machine first.
    let snapshot = if snapshot == 0 {
        None
    } else {
        if args.non_shared_disk && disks_copied == 0 {
            anyhow::bail!(
                "the primary runs already and copies no disks: this side has disks of its own (--non-shared-disk), the primary shares them"
            );
        }
        // RAM, at most, and room for the devices and the hart.
        let most = config.memory_size.saturating_add(64 << 20);
        if snapshot > most {
            anyhow::bail!(
                "the primary announces a {snapshot}-byte snapshot, more than a machine of this size needs ({most})"
            );
        }
        let started = std::time::Instant::now();
        let mut bytes = Vec::new();
        (&mut stream)
            .take(snapshot)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow::anyhow!("receiving the primary's snapshot: {e}"))?;
        if bytes.len() as u64 != snapshot {
            anyhow::bail!(
                "the primary's snapshot ended after {} of {snapshot} bytes",
                bytes.len()
            );
        }
        eprintln!(
            "ftvm backup: received a {} MiB snapshot of the running guest in {} ms",
            snapshot >> 20,
            started.elapsed().as_millis()
        );
        Some(bytes)
    };
    // The RAM pages the primary's guest wrote since its last round.
    let ram = if ram_apart {
        if snapshot.is_none() {
            anyhow::bail!("the primary sends RAM apart from a snapshot it does not send");
        }
        let mut r = match ram {
            Some(r) => r,
            None => super::ramcopy::RamReceiver::new(config.memory_size)?,
        };
        let started = std::time::Instant::now();
        let pages = loop {
            let message = read_message(&mut stream)
                .map_err(|e| anyhow::anyhow!("receiving the primary's RAM: {e}"))?;
            if let Some(pages) = r
                .take(message, &mut stream)
                .map_err(|e| anyhow::anyhow!("receiving the primary's RAM: {e:#}"))?
            {
                break pages;
            }
        };
        eprintln!(
            "ftvm backup: received the primary's RAM: {pages} pages in all, the last ones in {} ms",
            started.elapsed().as_millis()
        );
        Some(r.into_ram())
    } else if ram.is_some() {
        anyhow::bail!("the primary sent RAM, then a snapshot that holds RAM of its own");
    } else {
        None
    };
    if disks_copied != 0 {
        if !args.non_shared_disk {
            anyhow::bail!(
                "the primary copies its disks to this side (it has --non-shared-disk), but this side shares them"
            );
        }
        let images = disks.as_ref().map_err(|why| anyhow::anyhow!("{why}"))?;
        let started = std::time::Instant::now();
        let mut receiver = match receiver {
            Some(r) => r,
            None => super::diskcopy::Receiver::new(images)?,
        };
        super::diskcopy::check_count(disks_copied, receiver.disks())?;
        // Unbuffered: the log follows the copy on the same stream.
        let copied = loop {
            let message = super::diskcopy::read_message(&mut stream)?;
            if let Some(copied) = receiver
                .take(message, &mut stream)
                .map_err(|e| anyhow::anyhow!("receiving the primary's disks: {e:#}"))?
            {
                break copied;
            }
        };
        eprintln!(
            "ftvm backup: received a copy of {disks_copied} disk(s): {} MiB of data, {} MiB of zeros in all, the last part in {} ms",
            copied.data >> 20,
            copied.zeros >> 20,
            started.elapsed().as_millis()
        );
    }
    stream.set_read_timeout(None)?;
    let inbound = Inbound::new(args.log_buffer as usize);
    let hooks = Hooks {
        go_live: Some({
            let inbound = inbound.clone();
            Box::new(move |()| {
                eprintln!("\r\nftvm backup: the primary is gone and this side won the arbiter; replaying the rest of the log");
                inbound.end();
            })
        }),
        halt: Some({
            let inbound = inbound.clone();
            Box::new(move |reason: String| inbound.fail(reason))
        }),
        ..Hooks::default()
    };
    let arbiter: super::SharedArbiter = Arc::new(std::sync::Mutex::new(arbiter));
    let shared = super::shared(
        Role::Backup,
        session,
        epoch,
        args,
        udp,
        SocketAddr::new(peer.ip(), udp_port),
        stream.try_clone()?,
        arbiter.clone(),
        hooks,
    );
    start_heartbeats(&shared)?;
    let mut control = None;
    if let Some(path) = &args.control {
        let inbound = inbound.clone();
        let counters: Box<dyn Fn() -> super::control::Counters + Send> =
            Box::new(move || super::control::Counters {
                log_bytes: inbound.bytes(),
                held: (0, 0),
                delays: super::gate::Delays::default(),
                waited: inbound.waited(),
            });
        let source = Arc::new(std::sync::Mutex::new((shared.clone(), counters)));
        super::control::serve(path, source.clone())?;
        control = Some(source);
    }
    let rx_inbound = inbound.clone();
    let rx_shared = shared.clone();
    std::thread::Builder::new()
        .name("log-receiver".into())
        .spawn(move || {
            let mut stream = stream;
            let ended = split_frames(
                &mut stream,
                &mut || rx_inbound.buffer(),
                &mut |batch, frames| {
                    let entries = rx_inbound.push(batch, frames);
                    if frames > 0 {
                        rx_shared.feed(Input::LogReceived { entries });
                    }
                },
            );
            if let Ok(true) = ended {
                // The primary's run ended and it said so: replay to the end.
                rx_shared.close();
                rx_inbound.end();
            } else {
                rx_shared.channel_lost();
            }
        })?;

    let (reader, header) =
        LogReader::new(inbound.reader()).map_err(|e| anyhow::anyhow!("the primary's log: {e}"))?;
    check_same_machine(&header.config, &config_record)?;
    let mut env = BackupEnvironment {
        replayer: Replayer::new(reader),
        live: env,
        is_live: false,
        outstanding: BTreeMap::new(),
        order: 0,
        resend: VecDeque::new(),
        released: 0,
        mtime: 0,
        own_disk: args.non_shared_disk,
        macs,
        console_backlog: Vec::new(),
        shared: shared.clone(),
    };
    let quit = env.live.quit_flag();
    let mut machine = match snapshot {
        None => Machine::new(config, &mut env)?,
        Some(bytes) => {
            let mut machine = Machine::from_snapshot(config, &bytes)
                .map_err(|e| anyhow::anyhow!("the primary's snapshot: {e}"))?;
            if let Some(ram) = &ram {
                machine
                    .replace_ram(ram)
                    .map_err(|e| anyhow::anyhow!("the primary's RAM: {e}"))?;
            }
            // What the primary had in flight completes in the log; if it
            // fails first, this side issues it again.
            for (slot, request) in machine.in_flight_requests() {
                env.track(slot, &request);
            }
            env.mtime = machine.mtime();
            shared.executed(machine.icount(), machine.mtime());
            eprintln!(
                "ftvm backup: joined the running guest at icount {}",
                machine.icount()
            );
            machine
        }
    };
    let outcome = loop {
        if let Some(reason) = shared.halted() {
            anyhow::bail!("{reason}");
        }
        if env.is_live && listener.is_some() {
            // Live: from here on this side runs as a primary would.
            break None;
        }
        if let Some(e) = env.replayer.take_error() {
            if let Some(reason) = shared.halted() {
                anyhow::bail!("{reason}");
            }
            anyhow::bail!("the backup cannot follow the primary's log: {e}");
        }
        if !env.is_live {
            if let Some(status) = env.replayer.recorded_end() {
                if status == EndStatus::Stopped {
                    break Some(Step::Running);
                }
            }
        }
        let before = machine.icount();
        let step = machine.step(&mut env)?;
        // The digest first, as the primary's recorder takes it: before the
        // console output is taken from the UART.
        if !env.is_live && digest_due(before, machine.icount()) && !env.replayer.exhausted() {
            let d = machine.digest();
            env.replayer.check_digest(machine.icount(), d);
        }
        let out = machine.take_console_output();
        if env.is_live {
            if !env.console_backlog.is_empty() {
                console.write(&std::mem::take(&mut env.console_backlog));
            }
            if !out.is_empty() {
                console.write(&out);
            }
        } else {
            env.console(out, shared.released());
            env.live.discard_events();
        }
        shared.executed(machine.icount(), machine.mtime());
        match step {
            Step::Running | Step::Reboot if !quit.get() => {}
            Step::Running | Step::Reboot => break Some(Step::Running),
            other => {
                if !env.is_live {
                    ftvm_machine::replay::replay_end(&mut machine, &mut env.replayer, other);
                    if let Some(e) = env.replayer.take_error() {
                        anyhow::bail!("the backup cannot follow the primary's log: {e}");
                    }
                }
                break Some(other);
            }
        }
    };
    let outcome = match (outcome, listener) {
        (Some(step), _) => {
            console.restore();
            env.live.shutdown();
            step
        }
        (None, None) => anyhow::bail!("stopped running without an end"),
        (None, Some(listener)) => {
            // The old pairing's heartbeats stop; new backups join its
            // session at the epoch this side won.
            shared.close();
            let lineage = (shared.session(), shared.live_epoch().unwrap_or(epoch));
            let mut live = env.live;
            let result = super::primary::protect(
                listener,
                args,
                machine,
                &mut live,
                console,
                config_record,
                control,
                arbiter,
                lineage,
                disks,
            );
            live.shutdown();
            result?
        }
    };
    super::finish(outcome)
}

/// Connects to the primary, retrying for a while (it may still be starting).
/// Says hello on `stream` to the primary at `peer`; returns the stream (with
/// a read timeout for what comes before the log) and this side's UDP
/// heartbeat socket.
fn hello(peer: SocketAddr, mut stream: TcpStream) -> anyhow::Result<(TcpStream, UdpSocket)> {
    stream.set_nodelay(true)?;
    let udp = UdpSocket::bind(SocketAddr::new(stream.local_addr()?.ip(), 0))?;
    stream
        .write_all(
            &Message::Hello {
                udp_port: udp.local_addr()?.port(),
            }
            .encode(),
        )
        .map_err(|e| anyhow::anyhow!("saying hello to the primary at {peer}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok((stream, udp))
}

/// How often a spare asks each side to take it.
const SPARE_PERIOD: Duration = Duration::from_secs(1);

/// A spare (`--spare`): asks each of `peers` in turn, every
/// [`SPARE_PERIOD`], to take this side as its new backup, until one that
/// runs alone does (a side that has a backup, or is not there, closes the
/// connection or refuses it). Returns the stream, the side, the UDP socket
/// and the side's first message.
fn wait_as_spare(
    peers: &[SocketAddr],
) -> anyhow::Result<(TcpStream, SocketAddr, UdpSocket, Option<Message>)> {
    if peers.is_empty() {
        anyhow::bail!("--spare needs at least one --peer");
    }
    eprintln!(
        "ftvm backup: spare: waiting for one of {} to run alone",
        peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    loop {
        for &peer in peers {
            let Ok(stream) = TcpStream::connect_timeout(&peer, Duration::from_secs(2)) else {
                continue;
            };
            let Ok((mut stream, udp)) = hello(peer, stream) else {
                continue;
            };
            // Taken: the side sends at once (a copy of the guest); turned
            // away: the connection closes; a backup not live yet does not
            // answer (its address takes connections only once live).
            if stream.set_read_timeout(Some(SPARE_PERIOD * 2)).is_err() {
                continue;
            }
            if let Ok(first) = read_message(&mut stream) {
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                eprintln!("ftvm backup: spare: {peer} takes this side as its new backup");
                return Ok((stream, peer, udp, Some(first)));
            }
        }
        std::thread::sleep(SPARE_PERIOD);
    }
}

fn connect(peer: SocketAddr) -> anyhow::Result<TcpStream> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect_timeout(&peer, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if std::time::Instant::now() >= deadline => {
                anyhow::bail!("cannot reach the primary at {peer}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rarp_frame_is_a_minimal_ethernet_frame_from_the_mac() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

        let f = rarp(mac);

        assert_eq!(f.len(), 60);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[0x80, 0x35]);
        assert_eq!(&f[22..28], &mac);
    }

    #[test]
    fn test_fingerprint_ignores_image_paths_but_not_hashes() {
        let a = b"ftvm-config 1\nmemory 5\nkernel 00ff 2f61\n";
        let b = b"ftvm-config 1\nmemory 5\nkernel 00ff 2f62\n";
        let c = b"ftvm-config 1\nmemory 5\nkernel 00fe 2f61\n";

        assert_eq!(fingerprint(a), fingerprint(b));
        assert_ne!(fingerprint(a), fingerprint(c));
    }
}
