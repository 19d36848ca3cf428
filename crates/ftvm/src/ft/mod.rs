//! The fault-tolerant pair on the host: `ftvm primary` and `ftvm backup`
//! (DESIGN.md §3).
//!
//! The protocol's decisions come from the sans-I/O [`ftvm_protocol::Node`];
//! this module drives it with real sockets and threads:
//!
//! - the **logging channel**, one TCP connection: primary to backup the log
//!   (the same stream `ftvm run --record` writes to a file), backup to primary
//!   cumulative acknowledgements; bounded buffers on both sides
//!   ([`pipe::LogPipe`], [`pipe::Inbound`]);
//! - **heartbeats** over UDP both ways;
//! - the **output gate** on the primary ([`gate::OutputGate`]);
//! - the **arbiter** (`--arbiter file=` or `etcd=`), asked on a thread of its own;
//! - **go-live** of the backup ([`backup`]) and the primary running alone ([`primary`]);
//! - `ftvm status` on a control socket ([`control`]).

pub mod backup;
pub mod control;
pub mod diskcopy;
pub mod gate;
pub mod pipe;
pub mod primary;
pub mod ramcopy;

use ftvm_protocol::{ArbiterAnswer, Config, Effect, Input, Message, Node, Role, MESSAGE_LEN};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The flags of `ftvm primary` and `ftvm backup` besides the VM's.
#[derive(clap::Args, Debug, Clone)]
pub struct FtArgs {
    /// The arbiter both sides can reach: `file=PATH` (on shared storage) or
    /// `etcd=URL,key=KEY`.
    #[arg(long)]
    pub arbiter: String,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub heartbeat_ms: u64,
    /// Silence, in milliseconds, after which the peer is declared failed.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u64).range(2..=600_000))]
    pub timeout_ms: u64,
    /// Size of the log buffer on each side, e.g. 8M.
    #[arg(long, default_value = "8M", value_parser = crate::cli::parse_size)]
    pub log_buffer: u64,
    /// Longest time, in microseconds, from one send of the log to the next
    /// that an output forces while the backup has not acknowledged the last
    /// send: the log up to an output goes at once if every earlier send is
    /// acknowledged, else when it is or this long after the last send;
    /// outputs produced meanwhile leave in one send (fewer wake-ups on both
    /// sides). 0 sends for every batch of outputs (the requests the devices
    /// hand over in one step).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub flush_gap_us: u64,
    /// Largest execution lag of the backup, in milliseconds of guest time,
    /// before the primary's vCPU is slowed.
    #[arg(long, default_value_t = 100)]
    pub max_lag_ms: u64,
    /// Each side has its own copy of the disks (the backup performs the
    /// writes too) instead of sharing them (only the live primary writes).
    #[arg(long)]
    pub non_shared_disk: bool,
    /// Primary: leave disk read data out of the log; the backup reads the
    /// same sectors from the shared disk itself and checks them against a
    /// hash (far less logging traffic for guests that read a lot). A write
    /// to sectors an earlier read touched then waits until the backup has
    /// executed that read. Only with a shared disk; the backup follows
    /// what the log holds either way.
    #[arg(long, conflicts_with = "non_shared_disk")]
    pub backup_reads: bool,
    /// A Unix socket for `ftvm status`.
    #[arg(long)]
    pub control: Option<std::path::PathBuf>,
}

impl FtArgs {
    /// The protocol's configuration.
    pub fn config(&self) -> Config {
        Config {
            heartbeat_interval_ms: self.heartbeat_ms,
            failure_timeout_ms: self.timeout_ms,
            arbiter_retry_ms: 100,
            lag_bound_ticks: self
                .max_lag_ms
                .saturating_mul(ftvm_machine::layout::TIMEBASE_HZ / 1000),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// What the side's threads share: the protocol node and what its effects change.
pub struct Shared {
    origin: Instant,
    node: Mutex<Node>,
    udp: UdpSocket,
    peer_udp: SocketAddr,
    /// The logging channel, for acknowledgements (backup) and shutdown.
    tcp: Mutex<Option<TcpStream>>,
    /// Shared by the pairings of a session: an etcd claim lives as long as
    /// its arbiter client does.
    arbiter: Arc<Mutex<Box<dyn ftvm_arbiter::Arbiter>>>,
    me: String,
    /// Set when the node goes live alone (the epoch won).
    live: AtomicU64,
    halted: Mutex<Option<String>>,
    throttled: AtomicBool,
    /// Microseconds the primary's vCPU has waited for a lagging backup.
    throttled_us: AtomicU64,
    /// This side's executed position, for heartbeats and lag.
    icount: AtomicU64,
    mtime: AtomicU64,
    hooks: Hooks,
    /// When an unreachable arbiter was last reported (ms since origin).
    arbiter_complained: AtomicU64,
    /// The run ended normally: the channel closing is not a failure.
    closing: AtomicBool,
}

/// A callback of an effect.
pub type Hook<T> = Option<Box<dyn Fn(T) + Send + Sync>>;

/// What an effect does on this side beyond the shared flags.
#[derive(Default)]
pub struct Hooks {
    /// Primary: entries written so far.
    pub entries: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// Primary: release held outputs up to a tag.
    pub release: Hook<u64>,
    /// Going live alone.
    pub go_live: Hook<()>,
    /// Halting.
    pub halt: Hook<String>,
    /// The channel broke.
    pub channel_lost: Hook<()>,
}

impl Shared {
    /// Milliseconds since the side started.
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Feeds `input` to the node and carries out its effects.
    pub fn feed(self: &Arc<Self>, input: Input) {
        let effects = {
            let mut node = lock(&self.node);
            let now = self.now_ms();
            // This side's position as of now, not as of the heartbeat
            // thread's last report: the backup's acknowledgements carry it,
            // and the primary's lag check compares it with the backup's
            // (stale positions on either side skew the lag by up to a
            // heartbeat-thread period, which throttles the primary early or
            // releases it late).
            let mut effects = node.handle(
                now,
                Input::Executed {
                    icount: self.icount.load(Ordering::Relaxed),
                    mtime: self.mtime.load(Ordering::Relaxed),
                },
            );
            if let (Role::Primary, Some(entries)) = (node.role(), &self.hooks.entries) {
                // Acknowledgements are checked against what was written.
                effects.extend(node.handle(now, Input::LogWritten { entries: entries() }));
            }
            let lost = input == Input::ChannelLost;
            let was_paired = *node.mode() == ftvm_protocol::Mode::Paired;
            effects.extend(node.handle(now, input));
            if was_paired && *node.mode() != ftvm_protocol::Mode::Paired {
                let why = if lost {
                    "the logging channel broke".to_string()
                } else {
                    format!(
                        "nothing heard from the peer for {} ms",
                        now.saturating_sub(node.last_heard_ms())
                    )
                };
                eprintln!("\r\nftvm: peer suspected ({why}); asking the arbiter");
            }
            effects
        };
        for effect in effects {
            self.perform(effect);
        }
    }

    fn perform(self: &Arc<Self>, effect: Effect) {
        match effect {
            Effect::Heartbeat(m) => {
                let _ = self.udp.send_to(&m.encode(), self.peer_udp);
            }
            Effect::Ack(m) => {
                let failed = {
                    let mut tcp = lock(&self.tcp);
                    match tcp.as_mut() {
                        Some(stream) => {
                            use std::io::Write;
                            stream.write_all(&m.encode()).is_err()
                        }
                        None => false,
                    }
                };
                if failed {
                    self.channel_lost();
                }
            }
            Effect::Release { upto } => {
                if let Some(release) = &self.hooks.release {
                    release(upto);
                }
            }
            Effect::TestAndSet { epoch } => {
                let shared = self.clone();
                let session = lock(&self.node).session();
                std::thread::Builder::new()
                    .name("arbiter".into())
                    .spawn(move || {
                        let answer = {
                            let mut arbiter = lock(&shared.arbiter);
                            match arbiter.test_and_set(session, epoch, &shared.me) {
                                Ok(ftvm_arbiter::Claim::Won) => ArbiterAnswer::Won,
                                Ok(ftvm_arbiter::Claim::Lost { holder }) => {
                                    ArbiterAnswer::Lost { holder }
                                }
                                Err(e) => {
                                    // Said once, then every five seconds.
                                    let now = shared.now_ms();
                                    let last = shared.arbiter_complained.load(Ordering::Relaxed);
                                    if last == 0 || now >= last + 5_000 {
                                        shared.arbiter_complained.store(now.max(1), Ordering::Relaxed);
                                        eprintln!(
                                            "\r\nftvm: cannot reach the arbiter ({}): {e}; not going live, trying again",
                                            arbiter.describe()
                                        );
                                    }
                                    ArbiterAnswer::Unreachable {
                                        error: e.to_string(),
                                    }
                                }
                            }
                        };
                        shared.feed(Input::Arbiter(answer));
                    })
                    .ok();
            }
            Effect::GoLive { epoch } => {
                self.live.store(epoch, Ordering::SeqCst);
                if let Some(go_live) = &self.hooks.go_live {
                    go_live(());
                }
            }
            Effect::Halt { reason } => {
                *lock(&self.halted) = Some(reason.clone());
                if let Some(halt) = &self.hooks.halt {
                    halt(reason);
                }
            }
            Effect::Throttle(on) => self.throttled.store(on, Ordering::SeqCst),
        }
    }

    /// The run ended normally (the log holds its end): from now on the
    /// channel closing is not a sign of failure.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// The logging channel broke.
    pub fn channel_lost(self: &Arc<Self>) {
        if self.closing.load(Ordering::SeqCst) {
            return;
        }
        if let Some(stream) = lock(&self.tcp).take() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        if let Some(hook) = &self.hooks.channel_lost {
            hook(());
        }
        self.feed(Input::ChannelLost);
    }

    /// The epoch won, once this side runs alone.
    pub fn live_epoch(&self) -> Option<u64> {
        match self.live.load(Ordering::SeqCst) {
            0 => None,
            e => Some(e),
        }
    }

    /// Why this side halted, if it did.
    pub fn halted(&self) -> Option<String> {
        lock(&self.halted).clone()
    }

    /// Whether the primary's vCPU is to be slowed.
    pub fn throttled(&self) -> bool {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Counts time the primary's vCPU waited for a lagging backup.
    pub fn add_throttled(&self, waited: Duration) {
        self.throttled_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    /// Total time the primary's vCPU waited for a lagging backup.
    pub fn throttled_total(&self) -> Duration {
        Duration::from_micros(self.throttled_us.load(Ordering::Relaxed))
    }

    /// Records how far this side has executed.
    pub fn executed(&self, icount: u64, mtime: u64) {
        self.icount.store(icount, Ordering::Relaxed);
        self.mtime.store(mtime, Ordering::Relaxed);
    }

    /// The pair's session.
    pub fn session(&self) -> u64 {
        lock(&self.node).session()
    }

    /// The node's status.
    pub fn status(&self) -> ftvm_protocol::Status {
        lock(&self.node).status()
    }

    /// The primary's release bound (on the backup: the primary's last report).
    pub fn released(&self) -> u64 {
        lock(&self.node).released()
    }

    /// Executed instructions.
    pub fn icount(&self) -> u64 {
        self.icount.load(Ordering::Relaxed)
    }
}

/// Starts the heartbeat thread: receives the peer's datagrams, ticks the
/// node, and reports this side's executed position.
fn start_heartbeats(shared: &Arc<Shared>) -> std::io::Result<()> {
    let shared = shared.clone();
    shared
        .udp
        .set_read_timeout(Some(Duration::from_millis(5)))?;
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || {
            let mut buf = [0u8; 256];
            loop {
                if shared.halted().is_some() || shared.closing.load(Ordering::SeqCst) {
                    return;
                }
                let wait = {
                    let node = lock(&shared.node);
                    node.next_deadline_ms().saturating_sub(shared.now_ms())
                };
                let wait = Duration::from_millis(wait.clamp(1, 20));
                let _ = shared.udp.set_read_timeout(Some(wait));
                match shared.udp.recv_from(&mut buf) {
                    Ok((n, from)) if from.ip() == shared.peer_udp.ip() => {
                        // Anything that is not a message of ours is ignored.
                        if let Ok(m) = Message::decode(&buf[..n]) {
                            shared.feed(Input::Message(m));
                        }
                    }
                    _ => {}
                }
                // Ticks the timers; `feed` reports the executed position.
                shared.feed(Input::Tick);
            }
        })?;
    Ok(())
}

/// Reads one fixed-size protocol message from a stream.
fn read_message(stream: &mut impl std::io::Read) -> std::io::Result<Message> {
    let mut buf = [0u8; MESSAGE_LEN];
    stream.read_exact(&mut buf)?;
    Message::decode(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// A text naming this side for the arbiter.
fn whoami(role: Role) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let role = match role {
        Role::Primary => "primary",
        Role::Backup => "backup",
    };
    format!("{role} pid {} on {host}", std::process::id())
}

/// A random session id from the host's entropy.
fn new_session() -> anyhow::Result<u64> {
    use std::io::Read;
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for a session id: {e}"))?;
    Ok(u64::from_le_bytes(b).max(1))
}

/// The arbiter a side uses for all its pairings.
pub type SharedArbiter = Arc<Mutex<Box<dyn ftvm_arbiter::Arbiter>>>;

/// Builds the shared state of one side of a pairing of `session` that starts
/// at `epoch`.
#[allow(clippy::too_many_arguments)]
fn shared(
    role: Role,
    session: u64,
    epoch: u64,
    args: &FtArgs,
    udp: UdpSocket,
    peer_udp: SocketAddr,
    tcp: TcpStream,
    arbiter: SharedArbiter,
    hooks: Hooks,
) -> Arc<Shared> {
    let origin = Instant::now();
    Arc::new(Shared {
        origin,
        node: Mutex::new(Node::resume(role, session, epoch, args.config(), 0)),
        udp,
        peer_udp,
        tcp: Mutex::new(Some(tcp)),
        arbiter,
        me: whoami(role),
        live: AtomicU64::new(0),
        halted: Mutex::new(None),
        throttled: AtomicBool::new(false),
        throttled_us: AtomicU64::new(0),
        icount: AtomicU64::new(0),
        mtime: AtomicU64::new(0),
        hooks,
        arbiter_complained: AtomicU64::new(0),
        closing: AtomicBool::new(false),
    })
}

/// The protocol mode in words, for the operator.
pub fn mode_name(mode: &ftvm_protocol::Mode) -> String {
    match mode {
        ftvm_protocol::Mode::Paired => "paired".into(),
        ftvm_protocol::Mode::Arbitrating { epoch } => format!("arbitrating for epoch {epoch}"),
        ftvm_protocol::Mode::Alone { epoch } => format!("live alone, epoch {epoch}"),
        ftvm_protocol::Mode::Halted { reason } => format!("halted: {reason}"),
    }
}

/// The process exit of a side whose guest run ended with `step`.
pub fn finish(step: ftvm_machine::Step) -> anyhow::Result<std::process::ExitCode> {
    use ftvm_machine::Step;
    match step {
        Step::PowerOff(status) => Ok(std::process::ExitCode::from(status.min(255) as u8)),
        Step::Stuck => anyhow::bail!(
            "the guest waits for an interrupt that can never come (no timer armed, no input)"
        ),
        Step::Running | Step::Reboot => {
            eprintln!("\r\nftvm: terminated by the user");
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
