//! `ftvm primary`: runs the guest live, streams the log to the backup, and
//! holds every output until the backup has acknowledged the log up to it.
//!
//! The vCPU runs on the main thread with a [`Recorder`] in front of the live
//! environment; the recorder writes into the [`LogPipe`], which a sender
//! thread drains into the TCP stream. A reader thread takes the backup's
//! acknowledgements and releases outputs from the [`OutputGate`] as they
//! arrive, so outputs never wait for the vCPU. When the backup is declared
//! failed and this side wins the arbiter, the gate opens, logging stops and
//! the guest runs on alone, and a new backup may join: it gets a snapshot of
//! the running machine, then the log from there ([`serve`]). A backup gone
//! live with `--listen` runs the same way ([`protect`]).

use super::diskcopy::{self, Image};
use super::gate::OutputGate;
use super::pipe::LogPipe;
use super::ramcopy;
use super::{read_message, start_heartbeats, FtArgs, Hooks, Shared};
use crate::console::Console;
use crate::live::{Backends, LiveEnvironment};
use ftvm_machine::replay::{self, Recorder};
use ftvm_machine::{Machine, MachineConfig, Step};
use ftvm_protocol::{Input, Message, Role};
use ftvm_replay::{Header, LogWriter};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the primary needs besides its flags.
pub struct PrimarySetup {
    /// The machine.
    pub config: MachineConfig,
    /// The log header's configuration record.
    pub config_record: Vec<u8>,
    /// The live environment (devices open).
    pub env: LiveEnvironment,
    /// The console.
    pub console: Console,
    /// The backends (shared with the gate).
    pub backends: Arc<Backends>,
    /// The disk images a new backup with its own disks gets a copy of, or
    /// why they cannot be copied.
    pub disks: Result<Vec<Image>, String>,
}

/// How long sending a snapshot may make no progress before the new backup
/// is given up.
const SNAPSHOT_STALL: Duration = Duration::from_secs(5);

/// `e`, named for what it means when a send to a joining backup times out:
/// the backup took nothing for [`SNAPSHOT_STALL`].
fn stalled(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("it took nothing for {} s", SNAPSHOT_STALL.as_secs()),
        ),
        _ => e,
    }
}

/// How long the disk requests in flight may take to finish before a disk
/// copy to a new backup is given up.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Sends `bytes` to a joining backup. The guest stands still meanwhile, so
/// a backup that takes nothing for [`SNAPSHOT_STALL`] is given up (the
/// guest goes on alone); a slow one that keeps taking is waited for.
fn send_snapshot(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_millis(100)))?;
    let mut sent = 0;
    let mut progress = Instant::now();
    while sent < bytes.len() {
        match stream.write(&bytes[sent..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sent += n;
                progress = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if progress.elapsed() >= SNAPSHOT_STALL {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "it took nothing for {} s after {sent} of {} bytes",
                            SNAPSHOT_STALL.as_secs(),
                            bytes.len()
                        ),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    stream.set_write_timeout(None)
}

/// A backup that connected and said hello: its stream, address and UDP port.
struct Joining {
    stream: TcpStream,
    peer: SocketAddr,
    udp_port: u16,
}

/// Accepts backups on `listener` on a thread of its own. A backup is passed
/// on only while `wanted` is set (no backup yet, or the last one is gone);
/// one that comes while the pair is whole is turned away.
fn accept_backups(
    listener: TcpListener,
    wanted: Arc<AtomicBool>,
) -> std::io::Result<mpsc::Receiver<Joining>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("accept".into())
        .spawn(move || {
            // Said once per address: a spare asks every second.
            let mut turned_away = std::collections::BTreeSet::new();
            for conn in listener.incoming() {
                let Ok(mut stream) = conn else { continue };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                if !wanted.load(Ordering::SeqCst) {
                    if turned_away.insert(peer.ip()) {
                        eprintln!(
                            "\r\nftvm primary: turned away a backup from {peer}: this side has one (said once per address)"
                        );
                    }
                    continue;
                }
                let hello = stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .and_then(|()| read_message(&mut stream));
                match hello {
                    Ok(Message::Hello { udp_port }) => {
                        if stream.set_read_timeout(None).is_err() {
                            continue;
                        }
                        wanted.store(false, Ordering::SeqCst);
                        let joining = Joining {
                            stream,
                            peer,
                            udp_port,
                        };
                        if tx.send(joining).is_err() {
                            return;
                        }
                    }
                    Ok(other) => eprintln!(
                        "\r\nftvm primary: {peer} sent {other:?} instead of hello; ignored"
                    ),
                    Err(e) => {
                        eprintln!("\r\nftvm primary: {peer} did not say hello: {e}; ignored")
                    }
                }
            }
        })?;
    Ok(rx)
}

/// One pairing with a backup: its buffers, gate and protocol state.
struct Session {
    pipe: Arc<LogPipe>,
    gate: Arc<OutputGate>,
    shared: Arc<Shared>,
    log: Option<LogWriter<super::pipe::PipeWriter>>,
}

/// What stays across pairings.
struct Host<'a> {
    args: &'a FtArgs,
    udp: UdpSocket,
    config_record: Vec<u8>,
    console: Arc<Mutex<Console>>,
    backends: Arc<Backends>,
    control: Option<super::control::Source>,
    /// Whether a new backup is taken (see [`accept_backups`]).
    wanted: Arc<AtomicBool>,
    /// The arbiter, for every pairing.
    arbiter: super::SharedArbiter,
    /// Once this side has run alone: the session and the epoch it won. A
    /// new backup joins that session at that epoch, so a side of an earlier
    /// pairing that comes back can only lose the arbiter.
    lineage: Option<(u64, u64)>,
    /// The disks a new backup gets a copy of (with `--non-shared-disk`).
    disks: Result<Vec<Image>, String>,
}

/// Whether a new backup can join a side that runs alone: with shared disks
/// always; with disks of its own, if this side's disks can be copied
/// (otherwise it says why not).
fn can_take_backups(args: &FtArgs, disks: &Result<Vec<Image>, String>, who: &str) -> bool {
    match disks {
        Err(why) if args.non_shared_disk => {
            eprintln!("\r\nftvm {who}: no new backup can join (--non-shared-disk): {why}");
            false
        }
        _ => true,
    }
}

impl Host<'_> {
    /// Welcomes `joining` (sending `snapshot` first if the machine runs
    /// already) and sets up the pairing: buffers, gate, protocol node,
    /// heartbeats, the log's sender and the acknowledgements' reader.
    fn start_session(
        &mut self,
        joining: Joining,
        env: &mut LiveEnvironment,
        snapshot: Option<&[u8]>,
        precopied: Option<(&diskcopy::WriteTracker, diskcopy::Precopied)>,
        ram_tail: Option<&[u8]>,
    ) -> anyhow::Result<Session> {
        let Joining {
            mut stream,
            peer,
            udp_port,
        } = joining;
        let args = self.args;
        stream.set_nodelay(true)?;
        let (session, epoch) = match self.lineage {
            Some(lineage) => lineage,
            None => (super::new_session()?, 0),
        };
        // A backup with disks of its own joining a running guest gets a copy
        // of this side's disks after the snapshot.
        let copy = match (&self.disks, snapshot, precopied) {
            (Ok(images), Some(_), Some(precopied)) if args.non_shared_disk => {
                Some((images.as_slice(), precopied))
            }
            (Ok(_), Some(_), None) if args.non_shared_disk => {
                anyhow::bail!("the disks were not copied before the snapshot")
            }
            (Err(why), Some(_), _) if args.non_shared_disk => anyhow::bail!("{why}"),
            _ => None,
        };
        stream.write_all(
            &Message::Welcome {
                session,
                udp_port: self.udp.local_addr()?.port(),
                snapshot: snapshot.map_or(0, |s| s.len() as u64),
                epoch,
                disks: copy.map_or(0, |(images, _)| images.len() as u64),
                ram_apart: ram_tail.is_some(),
            }
            .encode(),
        )?;
        if let Some(bytes) = snapshot {
            send_snapshot(&mut stream, bytes).map_err(|e| {
                anyhow::anyhow!("sending the snapshot to the backup at {peer}: {e}")
            })?;
        }
        if let Some(tail) = ram_tail {
            // The RAM pages written since the pre-copy's last round.
            send_snapshot(&mut stream, tail).map_err(|e| {
                anyhow::anyhow!("sending the last RAM pages to the backup at {peer}: {e}")
            })?;
        }
        if let Some((images, (tracker, precopied))) = copy {
            // The chunks written since the pre-copy's last round (the guest
            // stands still now, its requests all done).
            let started = Instant::now();
            stream.set_write_timeout(Some(SNAPSHOT_STALL))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, &stream);
            let left = tracker.take();
            let last = diskcopy::send_chunks(&mut out, images, &left)
                .and_then(|c| {
                    diskcopy::send_end(&mut out, images.len(), precopied.copied.data + c.data)?;
                    Ok(c)
                })
                .map_err(|e| anyhow::anyhow!("copying the disks to the backup at {peer}: {e:#}"))?;
            drop(out);
            stream.set_write_timeout(None)?;
            eprintln!(
                "\r\nftvm primary: copied {} disk(s) to the new backup: {} MiB of data and {} MiB of zeros while the guest ran ({} rounds after the first pass), then {} chunk(s) ({} KiB of data) in {} ms with it stopped",
                images.len(),
                precopied.copied.data >> 20,
                precopied.copied.zeros >> 20,
                precopied.rounds,
                left.len(),
                last.data >> 10,
                started.elapsed().as_millis()
            );
        }
        eprintln!("\r\nftvm primary: backup connected from {peer}, session {session:016x}");

        let pipe = LogPipe::new(
            args.log_buffer as usize,
            Duration::from_micros(args.flush_gap_us),
        );
        let gate_console = self.console.clone();
        let gate = OutputGate::new(
            pipe.clone(),
            self.backends.clone(),
            Box::new(move |bytes: &[u8]| super::lock(&gate_console).write(bytes)),
            !args.non_shared_disk,
            args.backup_reads,
        );
        env.set_output_sink(gate.clone());
        let hooks = Hooks {
            entries: Some({
                let pipe = pipe.clone();
                Box::new(move || pipe.entries())
            }),
            release: Some({
                let gate = gate.clone();
                let pipe = pipe.clone();
                Box::new(move |upto| {
                    pipe.acknowledged(upto);
                    gate.release(upto);
                })
            }),
            go_live: Some({
                let gate = gate.clone();
                let pipe = pipe.clone();
                let wanted = self.wanted.clone();
                let rejoin = !args.non_shared_disk || self.disks.is_ok();
                Box::new(move |()| {
                    pipe.break_channel();
                    gate.open();
                    // From now on a new backup is taken (it waits until
                    // the vCPU, a slice or so later, runs alone).
                    wanted.store(rejoin, Ordering::SeqCst);
                    eprintln!("\r\nftvm primary: the backup is gone; running alone");
                })
            }),
            halt: Some({
                let pipe = pipe.clone();
                Box::new(move |reason: String| {
                    pipe.break_channel();
                    eprintln!("\r\nftvm primary: {reason}");
                })
            }),
            channel_lost: Some({
                let pipe = pipe.clone();
                Box::new(move |()| pipe.break_channel())
            }),
        };
        let shared = super::shared(
            Role::Primary,
            session,
            epoch,
            args,
            self.udp.try_clone()?,
            SocketAddr::new(peer.ip(), udp_port),
            stream.try_clone()?,
            self.arbiter.clone(),
            hooks,
        );
        start_heartbeats(&shared)?;
        let counters = {
            let pipe = pipe.clone();
            let gate = gate.clone();
            let shared = shared.clone();
            Box::new(move || super::control::Counters {
                log_bytes: pipe.bytes(),
                held: gate.held(),
                delays: gate.delays(),
                waited: shared.throttled_total(),
            })
        };
        match &self.control {
            Some(source) => *super::lock(source) = (shared.clone(), counters),
            None => {
                if let Some(path) = &args.control {
                    let source = Arc::new(Mutex::new((shared.clone(), counters as _)));
                    super::control::serve(path, source.clone())?;
                    self.control = Some(source);
                }
            }
        }

        // Sender: the log, as it is written.
        let mut out = stream.try_clone()?;
        let sender_pipe = pipe.clone();
        let sender_shared = shared.clone();
        std::thread::Builder::new()
            .name("log-sender".into())
            .spawn(move || {
                while let Some(chunk) = sender_pipe.take(Duration::from_millis(10)) {
                    if out.write_all(&chunk).is_err() {
                        sender_shared.channel_lost();
                        return;
                    }
                    sender_pipe.recycle(chunk);
                }
                let _ = out.flush();
            })?;
        // Acknowledgements.
        let mut acks = stream;
        let ack_shared = shared.clone();
        let ack_gate = gate.clone();
        std::thread::Builder::new()
            .name("log-acks".into())
            .spawn(move || loop {
                match read_message(&mut acks) {
                    Ok(m) => {
                        if let Message::Ack { mtime, .. } = m {
                            ack_gate.backup_executed(mtime);
                        }
                        ack_shared.feed(Input::Message(m));
                    }
                    Err(_) => {
                        ack_shared.channel_lost();
                        return;
                    }
                }
            })?;

        let log = LogWriter::new(pipe.writer(), &Header::new(self.config_record.clone()))?;
        Ok(Session {
            pipe,
            gate,
            shared,
            log: Some(log),
        })
    }
}

/// Runs the primary until the guest powers off (its exit status), the user
/// quits, or this side halts (an error). When the backup is lost and this
/// side runs alone, a new backup may connect: it gets a snapshot of the
/// running machine and the log from there, and the pair is whole again.
pub fn run(
    listen: SocketAddr,
    args: &FtArgs,
    setup: PrimarySetup,
) -> anyhow::Result<std::process::ExitCode> {
    let arbiter = ftvm_arbiter::open(&args.arbiter)
        .map_err(|e| anyhow::anyhow!("--arbiter {}: {e}", args.arbiter))?;
    let listener = TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for the backup: {e}"))?;
    let udp = UdpSocket::bind(listener.local_addr()?)
        .map_err(|e| anyhow::anyhow!("cannot bind UDP {listen} for heartbeats: {e}"))?;
    eprintln!(
        "ftvm primary: waiting for the backup on {} (arbiter: {})",
        listener.local_addr()?,
        arbiter.describe()
    );
    let wanted = Arc::new(AtomicBool::new(true));
    let joins = accept_backups(listener, wanted.clone())?;
    let first = joins
        .recv()
        .map_err(|_| anyhow::anyhow!("stopped accepting backups"))?;

    let PrimarySetup {
        config,
        config_record,
        mut env,
        console,
        backends,
        disks,
    } = setup;
    let mut host = Host {
        args,
        udp,
        config_record,
        console: Arc::new(Mutex::new(console)),
        backends,
        control: None,
        wanted,
        arbiter: Arc::new(Mutex::new(arbiter)),
        lineage: None,
        disks,
    };
    let result = serve(&mut host, &mut env, &joins, Some(config), None, Some(first));
    super::lock(&host.console).restore();
    env.shutdown();
    super::finish(result?)
}

/// A side that runs the guest alone, after going live as the backup, and
/// takes new backups on `listener` (`ftvm backup --listen`): the same as a
/// primary whose backup is gone. Returns how the guest run ended.
#[allow(clippy::too_many_arguments)]
pub fn protect(
    listener: TcpListener,
    args: &FtArgs,
    machine: Machine,
    env: &mut LiveEnvironment,
    console: Console,
    config_record: Vec<u8>,
    control: Option<super::control::Source>,
    arbiter: super::SharedArbiter,
    lineage: (u64, u64),
    disks: Result<Vec<Image>, String>,
) -> anyhow::Result<Step> {
    let Some(backends) = env.backends().cloned() else {
        anyhow::bail!("no host backends to run alone with");
    };
    let udp = UdpSocket::bind(listener.local_addr()?).map_err(|e| {
        anyhow::anyhow!(
            "cannot bind UDP {} for heartbeats: {e}",
            listener
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string())
        )
    })?;
    let takes = can_take_backups(args, &disks, "backup");
    if takes {
        eprintln!(
            "\r\nftvm backup: live alone; a new backup may join on {}",
            listener.local_addr()?
        );
    }
    let wanted = Arc::new(AtomicBool::new(takes));
    let joins = accept_backups(listener, wanted.clone())?;
    let mut host = Host {
        args,
        udp,
        config_record,
        console: Arc::new(Mutex::new(console)),
        backends,
        control,
        wanted,
        arbiter,
        lineage: Some(lineage),
        disks,
    };
    let result = serve(&mut host, env, &joins, None, Some(machine), None);
    super::lock(&host.console).restore();
    result
}

/// Pairs with the backups that come on `joins`, one at a time, running the
/// guest alone between them: from `first` (a backup that said hello) if
/// given, else alone with `machine`. The first pairing creates the machine
/// from `config` if there is none.
fn serve(
    host: &mut Host<'_>,
    env: &mut LiveEnvironment,
    joins: &mpsc::Receiver<Joining>,
    mut config: Option<MachineConfig>,
    mut machine: Option<Machine>,
    first: Option<Joining>,
) -> anyhow::Result<Step> {
    let args = host.args;
    let quit = env.quit_flag();
    let max_pause = Duration::from_millis(args.max_lag_ms.max(1));
    let mut joining = match first {
        Some(joining) => joining,
        None => match run_alone(machine.as_mut(), env, host, None, joins, &quit)? {
            Alone::Ended(step) => return Ok(step),
            Alone::Joined(joining) => joining,
        },
    };
    loop {
        // With disks of its own, the new backup gets a copy of them: first
        // while the guest runs (the chunks it writes meanwhile are sent
        // again), then, with the guest stopped and its requests in flight
        // finished (their completions reach the guest after the snapshot,
        // in the log), what it wrote since.
        let mut tracker = None;
        let mut precopied = None;
        let mut failed = None;
        if machine.is_some() {
            // The machine first, so that a backup of another refuses before
            // its disks are overwritten.
            let config = Message::Config {
                len: host.config_record.len() as u64,
            };
            let mut sent = (&joining.stream).write_all(&config.encode());
            if sent.is_ok() {
                sent = (&joining.stream).write_all(&host.config_record);
            }
            if let Err(e) = sent {
                failed = Some(format!("sending the machine's configuration: {e}"));
            }
        }
        if let (Some(m), true, Ok(images), None) =
            (machine.as_mut(), args.non_shared_disk, &host.disks, &failed)
        {
            let t = Arc::new(diskcopy::WriteTracker::default());
            match precopy_running(m, env, host, &joining, images, &t, &quit) {
                Ok(Precopy::Done(done)) => {
                    tracker = Some(t);
                    precopied = Some(done);
                }
                Ok(Precopy::Ended(step)) => return Ok(step),
                Err(e) => failed = Some(format!("copying the disks while the guest runs: {e:#}")),
            }
        }
        let mut ram_copied = None;
        if let (Some(m), None) = (machine.as_mut(), &failed) {
            match precopy_ram(m, env, host, &joining, &quit) {
                Ok(Precopy::Done(done)) => ram_copied = Some(done),
                Ok(Precopy::Ended(step)) => return Ok(step),
                Err(e) => failed = Some(format!("copying RAM while the guest runs: {e:#}")),
            }
        }
        let drain_started = Instant::now();
        if failed.is_none()
            && machine.is_some()
            && args.non_shared_disk
            && !env.drain_in_flight(DRAIN_LIMIT)
        {
            failed = Some(format!(
                "disk requests in flight did not finish in {} s",
                DRAIN_LIMIT.as_secs()
            ));
        }
        if let Some(why) = failed {
            host.backends.track_writes(None);
            eprintln!("\r\nftvm primary: the new backup cannot join: {why}");
            // Its connection closes: it stops waiting for a welcome.
            drop(joining);
            host.wanted.store(true, Ordering::SeqCst);
            match run_alone(machine.as_mut(), env, host, None, joins, &quit)? {
                Alone::Ended(step) => return Ok(step),
                Alone::Joined(next) => {
                    joining = next;
                    continue;
                }
            }
        }
        // With RAM copied, the snapshot holds none; the pages written since
        // the last round follow it.
        let ram_tail = match (machine.as_mut(), ram_copied.as_mut()) {
            (Some(m), Some(copied)) => {
                let mut left = std::mem::take(&mut copied.left);
                left.extend(ramcopy::dirty_pages(m));
                left.sort_unstable();
                left.dedup();
                let mut tail = Vec::new();
                let put = ramcopy::put_pages(&mut tail, m.ram(), &left);
                tail.extend_from_slice(
                    &Message::RamEnd {
                        pages: copied.pages + put,
                    }
                    .encode(),
                );
                eprintln!(
                    "\r\nftvm primary: {} RAM pages written since go with the guest stopped",
                    left.len()
                );
                Some(tail)
            }
            _ => None,
        };
        let snapshot = match &machine {
            Some(m) => {
                let taking = Instant::now();
                let bytes = if ram_tail.is_some() {
                    m.snapshot_without_ram()
                } else {
                    m.snapshot()
                };
                eprintln!(
                    "\r\nftvm primary: a new backup joins at icount {}: sending a {} MiB snapshot of the running guest (taken in {} ms)",
                    m.icount(),
                    bytes.len() >> 20,
                    taking.elapsed().as_millis()
                );
                // The guest stands still from here (or from the drain).
                Some((bytes, drain_started))
            }
            None => None,
        };
        let started = host.start_session(
            joining,
            env,
            snapshot.as_ref().map(|(b, _)| b.as_slice()),
            tracker.as_deref().zip(precopied),
            ram_tail.as_deref(),
        );
        host.backends.track_writes(None);
        let session = match started {
            Ok(mut session) => {
                if let (Some((_, started)), Some(m)) = (&snapshot, &machine) {
                    let stopped = started.elapsed();
                    eprintln!(
                        "\r\nftvm primary: the backup has the snapshot ({} ms with the guest stopped); paired again",
                        stopped.as_millis()
                    );
                    // The guest's clock ran on while it stood still: the next
                    // slice's time jumps, which the new backup replays at
                    // once; not lag.
                    session.shared.executed(m.icount(), m.mtime());
                    session.shared.feed(Input::Paused {
                        ticks: guest_ticks(stopped),
                    });
                }
                if let Some(step) = run_paired(
                    &mut config,
                    &mut machine,
                    env,
                    &mut session,
                    &quit,
                    max_pause,
                    args.backup_reads,
                )? {
                    return Ok(step);
                }
                // A new backup comes into this session at the epoch won (the
                // go-live hook has set `wanted`).
                if let Some(epoch) = session.shared.live_epoch() {
                    host.lineage = Some((session.shared.session(), epoch));
                }
                can_take_backups(args, &host.disks, "primary");
                Some(session)
            }
            Err(e) if machine.is_some() => {
                // The guest runs on alone; another backup may try again (the
                // acceptor stopped taking them when it passed this one on).
                eprintln!("\r\nftvm primary: the new backup could not join: {e}");
                host.wanted.store(true, Ordering::SeqCst);
                None
            }
            Err(e) => return Err(e),
        };
        // Alone: no more log, outputs go straight out.
        env.clear_output_sink();
        match run_alone(machine.as_mut(), env, host, session.as_ref(), joins, &quit)? {
            Alone::Ended(step) => return Ok(step),
            Alone::Joined(next) => {
                // The old pairing's threads stop.
                if let Some(session) = &session {
                    session.shared.close();
                }
                joining = next;
            }
        }
    }
}

/// Runs one step of the guest alone, its console output to the console;
/// `Some` with how the guest run ended, if it did (or the user quit).
fn step_alone(
    machine: &mut Machine,
    env: &mut LiveEnvironment,
    host: &Host<'_>,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
) -> anyhow::Result<Option<Step>> {
    let step = machine.step(env)?;
    let out = machine.take_console_output();
    if !out.is_empty() {
        super::lock(&host.console).write(&out);
    }
    Ok(match step {
        Step::Running | Step::Reboot if !quit.get() => None,
        Step::Running | Step::Reboot => Some(Step::Running),
        other => Some(other),
    })
}

/// How a pre-copy ended.
enum Precopy<T> {
    /// The copy is made but for what was written last.
    Done(T),
    /// The guest run ended meanwhile.
    Ended(Step),
}

/// What a RAM pre-copy sent and left.
struct RamCopied {
    /// Pages sent while the guest ran.
    pages: u64,
    /// Rounds after the first pass.
    rounds: usize,
    /// Pages written during the last round, not sent yet.
    left: Vec<usize>,
}

/// Sends guest RAM to the backup joining on `joining` while the guest runs
/// alone on this thread: between two steps a slice of RAM (its non-zero
/// pages), handed to a writer thread; then, round after round, the pages
/// the guest wrote meanwhile, until at most [`ramcopy::LEFT`] remain or
/// after [`ramcopy::ROUNDS`] rounds.
fn precopy_ram(
    machine: &mut Machine,
    env: &mut LiveEnvironment,
    host: &Host<'_>,
    joining: &Joining,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
) -> anyhow::Result<Precopy<RamCopied>> {
    let mut out = joining.stream.try_clone()?;
    out.set_write_timeout(Some(SNAPSHOT_STALL))?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(2);
    let writer = std::thread::Builder::new()
        .name("ram-precopy".into())
        .spawn(move || -> std::io::Result<()> {
            for buf in rx {
                out.write_all(&buf).map_err(stalled)?;
            }
            Ok(())
        })?;
    let started = Instant::now();
    machine.take_dirty_pages();
    let total = machine.ram().len().div_ceil(ramcopy::PAGE);
    let mut next = 0;
    let mut copied = RamCopied {
        pages: 0,
        rounds: 0,
        left: Vec::new(),
    };
    let sent = loop {
        let mut buf = Vec::new();
        if next < total {
            let to = (next + ramcopy::FIRST_PASS_SLICE).min(total);
            copied.pages += ramcopy::put_nonzero(&mut buf, machine.ram(), next, to);
            next = to;
        } else {
            let dirty = ramcopy::dirty_pages(machine);
            if dirty.len() <= ramcopy::LEFT || copied.rounds >= ramcopy::ROUNDS {
                copied.left = dirty;
                break Ok(());
            }
            copied.pages += ramcopy::put_pages(&mut buf, machine.ram(), &dirty);
            copied.rounds += 1;
        }
        if !buf.is_empty() && tx.send(buf).is_err() {
            // The writer stopped: its error says why.
            break Err(());
        }
        if let Some(ended) = step_alone(machine, env, host, quit)? {
            return Ok(Precopy::Ended(ended));
        }
    };
    drop(tx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the RAM copy's thread panicked"))?;
    written.map_err(|e| anyhow::anyhow!("sending RAM: {e}"))?;
    if sent.is_err() {
        anyhow::bail!("sending RAM: the writer stopped");
    }
    eprintln!(
        "\r\nftvm primary: copied {} MiB of RAM while the guest ran ({} rounds after the first pass) in {} ms; {} pages left",
        (copied.pages * ramcopy::PAGE as u64) >> 20,
        copied.rounds,
        started.elapsed().as_millis(),
        copied.left.len()
    );
    Ok(Precopy::Done(copied))
}

/// Copies `images` to the backup joining on `joining` while the guest runs
/// alone (on this thread; the copy goes on a thread of its own), with the
/// disks telling `tracker` of every range they write from now on.
fn precopy_running(
    machine: &mut Machine,
    env: &mut LiveEnvironment,
    host: &Host<'_>,
    joining: &Joining,
    images: &[Image],
    tracker: &Arc<diskcopy::WriteTracker>,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
) -> anyhow::Result<Precopy<diskcopy::Precopied>> {
    host.backends.track_writes(Some(tracker.clone()));
    let out = joining.stream.try_clone()?;
    out.set_write_timeout(Some(SNAPSHOT_STALL))?;
    let (images, copier_tracker) = (images.to_vec(), tracker.clone());
    let started = Instant::now();
    let copier = std::thread::Builder::new()
        .name("disk-precopy".into())
        .spawn(move || {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
            diskcopy::precopy(&mut out, &images, &copier_tracker).map_err(|e| match e
                .downcast::<std::io::Error>()
            {
                Ok(io) => stalled(io).into(),
                Err(other) => other,
            })
        })?;
    eprintln!(
        "\r\nftvm primary: a new backup with disks of its own connected from {}: copying the disks while the guest runs",
        joining.peer
    );
    while !copier.is_finished() {
        if let Some(ended) = step_alone(machine, env, host, quit)? {
            return Ok(Precopy::Ended(ended));
        }
    }
    let done = copier
        .join()
        .map_err(|_| anyhow::anyhow!("the disk copy's thread panicked"))??;
    eprintln!(
        "\r\nftvm primary: copied the disks while the guest ran in {} ms",
        started.elapsed().as_millis()
    );
    Ok(Precopy::Done(done))
}

/// `d` in ticks of the guest's time base.
fn guest_ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(ftvm_machine::layout::TIMEBASE_HZ) / 1_000_000_000)
        .unwrap_or(u64::MAX)
}

/// How running alone ended.
enum Alone {
    /// The guest run ended.
    Ended(Step),
    /// A new backup connected.
    Joined(Joining),
}

/// Runs the machine alone until the guest run ends or a backup joins.
fn run_alone(
    machine: Option<&mut Machine>,
    env: &mut LiveEnvironment,
    host: &Host<'_>,
    session: Option<&Session>,
    joins: &mpsc::Receiver<Joining>,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
) -> anyhow::Result<Alone> {
    let Some(machine) = machine else {
        anyhow::bail!("no machine to run alone");
    };
    loop {
        if let Ok(joining) = joins.try_recv() {
            return Ok(Alone::Joined(joining));
        }
        let ended = step_alone(machine, env, host, quit)?;
        if let Some(session) = session {
            session.shared.executed(machine.icount(), machine.mtime());
        }
        if let Some(step) = ended {
            return Ok(Alone::Ended(step));
        }
    }
}

/// Runs the guest paired: records into the session's log, creating the
/// machine from `config` first if there is none yet. `Some(step)` when the
/// guest run ended, `None` when the backup is gone and this side runs alone.
#[allow(clippy::too_many_arguments)]
fn run_paired(
    config: &mut Option<MachineConfig>,
    machine: &mut Option<Machine>,
    env: &mut LiveEnvironment,
    session: &mut Session,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
    max_pause: Duration,
    backup_reads: bool,
) -> anyhow::Result<Option<Step>> {
    let Session {
        pipe,
        gate,
        shared,
        log,
    } = session;
    let Some(log) = log.take() else {
        anyhow::bail!("the session's log was used already");
    };
    let mut recorder = Recorder::new(env, log);
    if backup_reads {
        // The backup reads the shared disk itself (the gate orders writes
        // after the reads it has not executed yet).
        recorder.elide_read_data();
    }
    let machine = match machine {
        Some(m) => m,
        None => {
            let Some(config) = config.take() else {
                anyhow::bail!("no machine configuration");
            };
            machine.insert(Machine::new(config, &mut recorder)?)
        }
    };
    let outcome = loop {
        if let Some(reason) = shared.halted() {
            anyhow::bail!("{reason}");
        }
        if shared.live_epoch().is_some() {
            break None;
        }
        // A backup lagging beyond the bound pauses the vCPU until the lag is
        // back under three quarters of the bound. The guest runs no slice
        // meanwhile, so its executed time stands while the backup's
        // advances: the lag shrinks as the backup catches up, which reports
        // its progress as it goes. The guest's clock runs on through the
        // pause, so the next slice's time jumps by its length; the node is
        // told, and does not count the jump as lag (the backup replays it
        // at once). The guest runs a slice at least once per bound if the
        // backup stays behind.
        if shared.throttled() {
            // Outputs held in the last step go on meanwhile: their log is
            // sent now, not at the next step's start.
            pipe.flush();
            let started = Instant::now();
            while shared.throttled()
                && shared.live_epoch().is_none()
                && started.elapsed() < max_pause
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let paused = started.elapsed();
            shared.add_throttled(paused);
            shared.feed(Input::Paused {
                ticks: guest_ticks(paused),
            });
        }
        let step = replay::record_step(machine, &mut recorder)?;
        // Console output forces a flush of the log (the gate does it);
        // otherwise the sender sends at least every 10 ms (fewer wake-ups on both sides; outputs never wait for it).
        gate.console(machine.take_console_output());
        shared.executed(machine.icount(), machine.mtime());
        if let Some(e) = recorder.error() {
            anyhow::bail!("cannot write the log: {e}");
        }
        match step {
            Step::Running | Step::Reboot if !quit.get() => {}
            Step::Running | Step::Reboot => break Some(Step::Running),
            other => break Some(other),
        }
    };
    let Some(step) = outcome else {
        return Ok(None);
    };
    // The end is in the log; the outputs before it go out once the backup
    // has it all (or this side runs alone).
    replay::record_end(machine, &mut recorder, step);
    let _ = recorder.finish();
    shared.close();
    pipe.close();
    let deadline = Instant::now() + Duration::from_secs(10);
    while gate.held().0 > 0 && Instant::now() < deadline && shared.halted().is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    if let Some(reason) = shared.halted() {
        anyhow::bail!("{reason}");
    }
    Ok(Some(step))
}
