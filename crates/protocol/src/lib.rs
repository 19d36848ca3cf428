//! The FT protocol of ftvm (DESIGN.md §3; Scales, Nelson, Venkitachalam 2010,
//! §2-3) as a sans-I/O state machine.
//!
//! A [`Node`] is one side of a pair, primary or backup. It never touches a
//! socket, a clock or a thread: the host feeds it [`Input`]s with the time in
//! milliseconds, and carries out the [`Effect`]s it returns. That makes the
//! protocol testable on a simulated network that drops, delays, reorders and
//! partitions (see `sim` in the tests), and leaves the host side a thin driver.
//!
//! What the node decides:
//! - **Output rule** (primary): every output is tagged with the number of log
//!   entries written when it was produced; [`Effect::Release`] says up to
//!   which tag outputs may go out, which is never more than the backup has
//!   acknowledged receiving.
//! - **Failure detection**: heartbeats both ways every
//!   [`Config::heartbeat_interval_ms`]; any message from the peer (heartbeat,
//!   acknowledgement, log data) counts as a sign of life; after
//!   [`Config::failure_timeout_ms`] of silence, or when the logging channel
//!   breaks, the peer is suspected.
//! - **Split brain**: a suspecting node asks the arbiter for the next epoch
//!   ([`Effect::TestAndSet`]). Only [`ArbiterAnswer::Won`] leads to
//!   [`Effect::GoLive`]; [`ArbiterAnswer::Lost`] halts; an unreachable
//!   arbiter is asked again every [`Config::arbiter_retry_ms`], and the node
//!   stays as it is meanwhile.
//! - **Execution lag** (primary): when the backup's executed guest time lags
//!   the primary's by more than [`Config::lag_bound_ticks`], the primary's
//!   vCPU is slowed ([`Effect::Throttle`]) until the lag is back under three
//!   quarters of the bound. The backup acknowledges on every receipt, and
//!   also each time it has executed another tenth of the bound, so that a
//!   paused primary (which writes no log) learns promptly that it may run
//!   again. The lag is the guest time the backup has yet to execute: guest
//!   time follows the host's clock, so the primary's own pauses
//!   ([`Input::Paused`]) appear in it as jumps that the backup replays at
//!   once, and they are not counted while the backup is behind them.

pub mod wire;

pub use wire::{Message, WireError, CONFIG_MAX, DISK_CHUNK, MESSAGE_LEN, RAM_RUN_PAGES};

/// Pauses of the primary a node keeps track of at most (the backup passes
/// each within about a lag bound, and a pause needs a lag beyond the bound).
const MAX_PAUSES: usize = 64;

/// Which side a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Runs the guest live and logs.
    Primary,
    /// Replays the log.
    Backup,
}

/// Timing and bounds of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interval between two heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Silence after which the peer is suspected.
    pub failure_timeout_ms: u64,
    /// Interval between two attempts to reach the arbiter.
    pub arbiter_retry_ms: u64,
    /// Largest tolerated execution lag of the backup, in guest time-base
    /// ticks (10 MHz).
    pub lag_bound_ticks: u64,
}

impl Default for Config {
    /// 50 ms heartbeats, 500 ms failure timeout (ten heartbeats: a busy
    /// host does not fail over by mistake; a process that dies closes its
    /// logging channel and is detected at once, a silent host after half a
    /// second), arbiter retried every 100 ms, 100 ms of guest time of lag
    /// at most.
    fn default() -> Self {
        Config {
            heartbeat_interval_ms: 50,
            failure_timeout_ms: 500,
            arbiter_retry_ms: 100,
            lag_bound_ticks: 1_000_000,
        }
    }
}

/// Where a node stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Both sides run; the primary logs and the backup replays.
    Paired,
    /// The peer is suspected; the arbiter decides who goes on.
    Arbitrating {
        /// The epoch asked for.
        epoch: u64,
    },
    /// Won the arbiter: runs as the only, live, primary.
    Alone {
        /// The epoch won.
        epoch: u64,
    },
    /// Lost the arbiter (or was told to stop): must not run the guest.
    Halted {
        /// Why.
        reason: String,
    },
}

/// The arbiter's answer to [`Effect::TestAndSet`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArbiterAnswer {
    /// This node holds the epoch.
    Won,
    /// The other node holds it.
    Lost {
        /// Who holds it.
        holder: String,
    },
    /// The arbiter could not be reached or failed.
    Unreachable {
        /// What went wrong.
        error: String,
    },
}

/// What happens to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passes (call at least every heartbeat interval).
    Tick,
    /// A message from the peer arrived (over UDP or the logging channel).
    Message(Message),
    /// The logging channel to the peer broke (reset, closed, write error).
    ChannelLost,
    /// Primary: the log holds this many entries now.
    LogWritten {
        /// Entries written in total.
        entries: u64,
    },
    /// Backup: this many log entries have been received in total.
    LogReceived {
        /// Entries received in total.
        entries: u64,
    },
    /// The guest has executed up to here on this node.
    Executed {
        /// Instructions retired.
        icount: u64,
        /// Guest time.
        mtime: u64,
    },
    /// The arbiter answered the last [`Effect::TestAndSet`].
    Arbiter(ArbiterAnswer),
    /// Primary: the vCPU stood paused for a lagging backup for `ticks` of
    /// guest time base, right after the position last reported by
    /// [`Input::Executed`]. The guest's clock ran on meanwhile, so the next
    /// position jumps by about that much: time the backup replays without
    /// executing anything, which the lag does not count.
    Paused {
        /// Length of the pause in guest time-base ticks.
        ticks: u64,
    },
}

/// What the host must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send a heartbeat over UDP.
    Heartbeat(Message),
    /// Backup: send this acknowledgement on the logging channel.
    Ack(Message),
    /// Primary: outputs tagged with at most `upto` log entries may go out.
    Release {
        /// The release bound (a count of log entries).
        upto: u64,
    },
    /// Ask the arbiter, asynchronously, to claim `epoch`; answer with
    /// [`Input::Arbiter`].
    TestAndSet {
        /// The epoch to claim.
        epoch: u64,
    },
    /// This node runs alone from now on. Backup: replay everything received,
    /// then switch to live backends. Primary: stop logging, release every
    /// output held.
    GoLive {
        /// The epoch won.
        epoch: u64,
    },
    /// Stop running the guest.
    Halt {
        /// Why, for the operator.
        reason: String,
    },
    /// Primary: slow the vCPU down (true) or let it run freely again (false).
    Throttle(bool),
}

/// A snapshot of a node, for `ftvm status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Role.
    pub role: Role,
    /// Mode.
    pub mode: Mode,
    /// Current epoch (0 while paired).
    pub epoch: u64,
    /// Primary: log entries written. Backup: entries received.
    pub entries: u64,
    /// Primary: entries the backup acknowledged. Backup: entries acknowledged.
    pub acked: u64,
    /// Primary: release bound of outputs. Backup: the primary's last report of it.
    pub released: u64,
    /// Primary: the backup's lag in guest ticks, the guest time it has yet
    /// to execute (the primary's own pauses left out); 0 on the backup.
    pub lag_ticks: u64,
    /// Whether the primary's vCPU is slowed.
    pub throttled: bool,
}

/// One side of an FT pair.
#[derive(Clone, Debug)]
pub struct Node {
    role: Role,
    config: Config,
    session: u64,
    mode: Mode,
    epoch: u64,
    last_heard_ms: u64,
    next_heartbeat_ms: u64,
    /// An arbiter request is out.
    asking: bool,
    next_ask_ms: u64,
    /// Primary: entries written; backup: entries received.
    entries: u64,
    /// Primary: entries acknowledged; backup: entries acknowledged so far.
    acked: u64,
    /// Primary: release bound handed out; backup: the primary's last report.
    released: u64,
    /// This node's executed guest time.
    mtime: u64,
    icount: u64,
    /// The peer's executed guest time (primary: the backup's).
    peer_mtime: u64,
    /// Backup: the executed guest time its last acknowledgement carried.
    acked_mtime: u64,
    /// Primary: its pauses the backup has not yet replayed past, as (guest
    /// time where the pause began, its length in ticks), oldest first.
    pauses: std::collections::VecDeque<(u64, u64)>,
    throttled: bool,
    /// When the node last got any input: a gap means this side itself was
    /// not running (descheduled, stopped), and silence during it is not
    /// the peer's.
    last_input_ms: u64,
}

impl Node {
    /// A node of pair `session` whose logging channel has just been set up,
    /// at `now_ms`.
    pub fn new(role: Role, session: u64, config: Config, now_ms: u64) -> Node {
        Node {
            role,
            config,
            session,
            mode: Mode::Paired,
            epoch: 0,
            last_heard_ms: now_ms,
            next_heartbeat_ms: now_ms,
            asking: false,
            next_ask_ms: now_ms,
            entries: 0,
            acked: 0,
            released: 0,
            mtime: 0,
            icount: 0,
            peer_mtime: 0,
            acked_mtime: 0,
            pauses: std::collections::VecDeque::new(),
            throttled: false,
            last_input_ms: now_ms,
        }
    }

    /// A node of pair `session` re-formed by a side that won `epoch` and took
    /// a new peer (re-protection), whose logging channel has just been set
    /// up: heartbeats carry `epoch`, and a suspicion claims `epoch + 1`, so a
    /// side of an earlier pairing of the session can never win again.
    pub fn resume(role: Role, session: u64, epoch: u64, config: Config, now_ms: u64) -> Node {
        Node {
            epoch,
            ..Node::new(role, session, config, now_ms)
        }
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The pair.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The node's mode.
    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The primary's release bound: outputs tagged with at most this many
    /// entries may be out. On the backup, the primary's last report of it.
    pub fn released(&self) -> u64 {
        self.released
    }

    /// When the peer was last heard from (ms, the clock of [`Node::handle`]).
    pub fn last_heard_ms(&self) -> u64 {
        self.last_heard_ms
    }

    /// A snapshot for `ftvm status`.
    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            mode: self.mode.clone(),
            epoch: self.epoch,
            entries: self.entries,
            acked: self.acked,
            released: self.released,
            lag_ticks: self.lag(),
            throttled: self.throttled,
        }
    }

    /// Primary: the guest time the backup has yet to execute to reach this
    /// side's position, not counting this side's pauses ahead of it.
    fn lag(&self) -> u64 {
        match (self.role, &self.mode) {
            (Role::Primary, Mode::Paired) => {
                // A pause is in this side's position once it ran on past it.
                let paused: u64 = self
                    .pauses
                    .iter()
                    .filter(|&&(at, _)| at < self.mtime)
                    .map(|&(_, ticks)| ticks)
                    .sum();
                self.mtime
                    .saturating_sub(self.peer_mtime)
                    .saturating_sub(paused)
            }
            _ => 0,
        }
    }

    /// Primary: forgets the pauses the backup has replayed past.
    fn forget_passed_pauses(&mut self) {
        while let Some(&(at, _)) = self.pauses.front() {
            if at >= self.peer_mtime {
                break;
            }
            self.pauses.pop_front();
        }
    }

    fn heartbeat(&self) -> Message {
        Message::Heartbeat {
            session: self.session,
            from: self.role,
            epoch: self.epoch,
            released: match self.role {
                Role::Primary => self.released,
                Role::Backup => 0,
            },
            received: match self.role {
                Role::Primary => 0,
                Role::Backup => self.entries,
            },
            mtime: self.mtime,
        }
    }

    fn ack(&mut self) -> Effect {
        self.acked = self.entries;
        self.acked_mtime = self.mtime;
        Effect::Ack(Message::Ack {
            session: self.session,
            received: self.entries,
            icount: self.icount,
            mtime: self.mtime,
        })
    }

    /// Feeds one input at `now_ms`; returns what to do, in order.
    pub fn handle(&mut self, now_ms: u64, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        let gap = now_ms.saturating_sub(self.last_input_ms);
        if gap > 2 * self.config.heartbeat_interval_ms {
            // This side was not running: it cannot blame the peer for the
            // silence while it was away.
            self.last_heard_ms += gap - self.config.heartbeat_interval_ms;
        }
        self.last_input_ms = self.last_input_ms.max(now_ms);
        match input {
            Input::Tick => {}
            Input::Message(m) => self.receive(now_ms, m, &mut out),
            Input::ChannelLost => {
                if self.mode == Mode::Paired {
                    self.suspect(now_ms, &mut out);
                }
            }
            Input::LogWritten { entries } => {
                self.entries = self.entries.max(entries);
                if let Mode::Alone { .. } = self.mode {
                    // Nobody to wait for.
                    self.release(self.entries, &mut out);
                }
            }
            Input::LogReceived { entries } => {
                if entries > self.entries {
                    self.entries = entries;
                    self.last_heard_ms = now_ms;
                    if self.role == Role::Backup && self.mode == Mode::Paired {
                        out.push(self.ack());
                    }
                }
            }
            Input::Executed { icount, mtime } => {
                self.icount = self.icount.max(icount);
                self.mtime = self.mtime.max(mtime);
                self.check_lag(&mut out);
                // A backup catching up reports its progress without waiting
                // for more log: a throttled primary writes little, and waits
                // for exactly this to run again.
                if self.role == Role::Backup
                    && self.mode == Mode::Paired
                    && self.mtime >= self.acked_mtime + self.progress_step()
                {
                    out.push(self.ack());
                }
            }
            Input::Arbiter(answer) => self.arbiter(now_ms, answer, &mut out),
            Input::Paused { ticks } => {
                if self.role == Role::Primary && ticks > 0 {
                    match self.pauses.back_mut() {
                        // Pauses with no execution between them are one.
                        Some((at, sum)) if *at == self.mtime => *sum += ticks,
                        _ => {
                            if self.pauses.len() == MAX_PAUSES {
                                // Forgetting the oldest only overstates the lag.
                                self.pauses.pop_front();
                            }
                            self.pauses.push_back((self.mtime, ticks));
                        }
                    }
                    self.check_lag(&mut out);
                }
            }
        }
        self.timers(now_ms, &mut out);
        out
    }

    fn receive(&mut self, now_ms: u64, m: Message, out: &mut Vec<Effect>) {
        match m {
            Message::Heartbeat {
                session,
                from,
                epoch,
                released,
                mtime,
                received,
            } if session == self.session && epoch == self.epoch && from != self.role => {
                self.last_heard_ms = now_ms;
                match self.role {
                    Role::Backup => self.released = self.released.max(released),
                    Role::Primary => {
                        self.peer_mtime = self.peer_mtime.max(mtime);
                        self.forget_passed_pauses();
                        self.acknowledged(received, out);
                        self.check_lag(out);
                    }
                }
            }
            Message::Ack {
                session,
                received,
                mtime,
                ..
            } if session == self.session && self.role == Role::Primary => {
                self.last_heard_ms = now_ms;
                self.peer_mtime = self.peer_mtime.max(mtime);
                self.forget_passed_pauses();
                self.acknowledged(received, out);
                self.check_lag(out);
            }
            // Another pair's, our own echo, or a message for the other role:
            // not a sign of life of our peer.
            _ => {}
        }
    }

    fn acknowledged(&mut self, received: u64, out: &mut Vec<Effect>) {
        // Never trust an acknowledgement beyond what was written.
        let received = received.min(self.entries);
        if received > self.acked {
            self.acked = received;
            if self.mode == Mode::Paired {
                self.release(received, out);
            }
        }
    }

    fn release(&mut self, upto: u64, out: &mut Vec<Effect>) {
        if upto > self.released {
            self.released = upto;
            out.push(Effect::Release { upto });
        }
    }

    /// Backup: guest time executed after which it reports its progress
    /// even if no log arrived (a tenth of the lag bound).
    fn progress_step(&self) -> u64 {
        (self.config.lag_bound_ticks / 10).max(1)
    }

    fn check_lag(&mut self, out: &mut Vec<Effect>) {
        if self.role != Role::Primary {
            return;
        }
        let lag = self.lag();
        let want = self.mode == Mode::Paired
            && if self.throttled {
                lag > self.config.lag_bound_ticks / 4 * 3
            } else {
                lag > self.config.lag_bound_ticks
            };
        if want != self.throttled {
            self.throttled = want;
            out.push(Effect::Throttle(want));
        }
    }

    fn suspect(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let epoch = self.epoch + 1;
        self.mode = Mode::Arbitrating { epoch };
        self.next_ask_ms = now_ms;
        if self.throttled {
            self.throttled = false;
            out.push(Effect::Throttle(false));
        }
    }

    fn arbiter(&mut self, now_ms: u64, answer: ArbiterAnswer, out: &mut Vec<Effect>) {
        self.asking = false;
        let Mode::Arbitrating { epoch } = self.mode else {
            return;
        };
        match answer {
            ArbiterAnswer::Won => {
                self.epoch = epoch;
                self.mode = Mode::Alone { epoch };
                out.push(Effect::GoLive { epoch });
                if self.role == Role::Primary {
                    self.release(self.entries, out);
                }
            }
            ArbiterAnswer::Lost { holder } => {
                let reason = format!(
                    "the peer was suspected, but the arbiter gave epoch {epoch} to {holder}: this side halts"
                );
                self.mode = Mode::Halted {
                    reason: reason.clone(),
                };
                out.push(Effect::Halt { reason });
            }
            ArbiterAnswer::Unreachable { .. } => {
                self.next_ask_ms = now_ms + self.config.arbiter_retry_ms;
            }
        }
    }

    fn timers(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        if matches!(self.mode, Mode::Halted { .. }) {
            return;
        }
        if self.mode == Mode::Paired
            && now_ms.saturating_sub(self.last_heard_ms) > self.config.failure_timeout_ms
        {
            self.suspect(now_ms, out);
        }
        if let Mode::Arbitrating { epoch } = self.mode {
            if !self.asking && now_ms >= self.next_ask_ms {
                self.asking = true;
                out.push(Effect::TestAndSet { epoch });
            }
        }
        if self.mode == Mode::Paired && now_ms >= self.next_heartbeat_ms {
            self.next_heartbeat_ms = now_ms + self.config.heartbeat_interval_ms;
            out.push(Effect::Heartbeat(self.heartbeat()));
        }
    }

    /// When the host should call [`Node::handle`] with [`Input::Tick`] next
    /// at the latest.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.mode {
            Mode::Paired => self
                .next_heartbeat_ms
                .min(self.last_heard_ms + self.config.failure_timeout_ms + 1),
            Mode::Arbitrating { .. } => self.next_ask_ms,
            Mode::Alone { .. } | Mode::Halted { .. } => u64::MAX,
        }
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
