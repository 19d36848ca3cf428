//! A simulated pair: two [`Node`]s, a logging channel (ordered, reliable
//! until cut, delayed), heartbeats over a lossy datagram network (dropped,
//! delayed, reordered), a shared arbiter that can be unreachable, and
//! crashes. Time advances in 1 ms steps; everything random comes from a
//! seeded generator, so every run can be replayed from its seed.

use crate::{ArbiterAnswer, Config, Effect, Input, Message, Mode, Node, Role};
use std::collections::{BTreeMap, VecDeque};

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Faults of the datagram network.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Percent of heartbeats dropped.
    pub drop_percent: u64,
    /// Largest extra delay of a heartbeat, ms (delays differ: reordering).
    pub max_delay_ms: u64,
    /// Delay of the logging channel, ms.
    pub channel_delay_ms: u64,
}

/// Indices of the two sides.
pub const P: usize = 0;
/// The backup.
pub const B: usize = 1;

pub struct Side {
    pub node: Node,
    pub alive: bool,
    pub live: Option<u64>,
    pub halted: Option<String>,
    /// Primary: highest release bound seen.
    pub released: u64,
    pub throttled: bool,
    /// Arbiter request waiting to be answered: (when, epoch).
    pub asking: Option<(u64, u64)>,
    /// Executed guest time.
    pub mtime: u64,
}

pub struct Sim {
    pub now: u64,
    pub rng: Rng,
    pub faults: Faults,
    pub sides: [Side; 2],
    /// Datagrams in flight: (arrival, destination, message).
    datagrams: BTreeMap<(u64, u64), (usize, Message)>,
    datagram_seq: u64,
    /// The logging channel, primary to backup: (arrival, entries total).
    log: VecDeque<(u64, u64)>,
    /// Acks, backup to primary: (arrival, message).
    acks: VecDeque<(u64, Message)>,
    /// The logging channel works.
    pub channel_up: bool,
    /// The hosts can reach each other by datagram.
    pub link_up: bool,
    /// Each side can reach the arbiter.
    pub arbiter_reachable: [bool; 2],
    /// The arbiter's record: (epoch, holder).
    pub arbiter: Option<(u64, usize)>,
    /// Entries the primary has written (ground truth).
    pub written: u64,
    /// Entries the backup has received (ground truth).
    pub received: u64,
    /// Entries per ms the primary writes.
    pub write_rate: u64,
    /// Guest ticks per ms each side executes.
    pub speed: [u64; 2],
    /// Every violation of the output rule seen.
    pub violations: Vec<String>,
}

impl Sim {
    pub fn new(seed: u64, faults: Faults, config: Config) -> Sim {
        let side = |role| Side {
            node: Node::new(role, 0xfeed, config, 0),
            alive: true,
            live: None,
            halted: None,
            released: 0,
            throttled: false,
            asking: None,
            mtime: 0,
        };
        Sim {
            now: 0,
            rng: Rng::new(seed),
            faults,
            sides: [side(Role::Primary), side(Role::Backup)],
            datagrams: BTreeMap::new(),
            datagram_seq: 0,
            log: VecDeque::new(),
            acks: VecDeque::new(),
            channel_up: true,
            link_up: true,
            arbiter_reachable: [true, true],
            arbiter: None,
            written: 0,
            received: 0,
            write_rate: 3,
            speed: [10_000, 10_000],
            violations: Vec::new(),
        }
    }

    fn feed(&mut self, who: usize, input: Input) {
        if !self.sides[who].alive || self.sides[who].halted.is_some() {
            return;
        }
        let effects = self.sides[who].node.handle(self.now, input);
        for e in effects {
            self.apply(who, e);
        }
    }

    fn apply(&mut self, who: usize, effect: Effect) {
        match effect {
            Effect::Heartbeat(m) => {
                if self.rng.chance(self.faults.drop_percent) {
                    return;
                }
                let at = self.now + 1 + self.rng.below(self.faults.max_delay_ms + 1);
                self.datagram_seq += 1;
                self.datagrams.insert((at, self.datagram_seq), (1 - who, m));
            }
            Effect::Ack(m) => {
                if self.channel_up {
                    self.acks
                        .push_back((self.now + self.faults.channel_delay_ms, m));
                }
            }
            Effect::Release { upto } => {
                let side = &mut self.sides[who];
                if upto > self.received && side.live.is_none() {
                    self.violations.push(format!(
                        "t={} released {upto} while the backup had received {}",
                        self.now, self.received
                    ));
                }
                side.released = side.released.max(upto);
            }
            Effect::TestAndSet { epoch } => {
                self.sides[who].asking = Some((self.now + 2, epoch));
            }
            Effect::GoLive { epoch } => self.sides[who].live = Some(epoch),
            Effect::Halt { reason } => self.sides[who].halted = Some(reason),
            Effect::Throttle(on) => self.sides[who].throttled = on,
        }
    }

    /// Crashes a side: it stops; its sockets close (the peer's channel breaks).
    pub fn crash(&mut self, who: usize) {
        self.sides[who].alive = false;
        self.cut_channel();
    }

    /// Breaks the logging channel; both ends notice.
    pub fn cut_channel(&mut self) {
        if self.channel_up {
            self.channel_up = false;
            self.log.clear();
            self.acks.clear();
            self.feed(P, Input::ChannelLost);
            self.feed(B, Input::ChannelLost);
        }
    }

    /// Cuts the network between the hosts without either noticing at once
    /// (a silent partition: the channel goes quiet, no reset).
    pub fn partition(&mut self) {
        self.link_up = false;
        self.channel_up = false;
        self.log.clear();
        self.acks.clear();
    }

    /// Runs `ms` milliseconds.
    pub fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            self.step();
        }
    }

    fn step(&mut self) {
        // The primary runs (unless throttled: then at a tenth of its speed) and logs.
        let p = &mut self.sides[P];
        if p.alive && p.halted.is_none() {
            let speed = if p.throttled {
                self.speed[P] / 10
            } else {
                self.speed[P]
            };
            p.mtime += speed;
            let mtime = p.mtime;
            self.written += self.write_rate;
            let written = self.written;
            self.feed(P, Input::LogWritten { entries: written });
            self.feed(
                P,
                Input::Executed {
                    icount: mtime,
                    mtime,
                },
            );
            if self.channel_up && self.sides[P].live.is_none() {
                self.log
                    .push_back((self.now + self.faults.channel_delay_ms, written));
            }
        }
        // The backup replays what it has, no further than it received.
        let primary_mtime = self.sides[P].mtime;
        let b = &mut self.sides[B];
        if b.alive && b.halted.is_none() {
            b.mtime = (b.mtime + self.speed[B]).min(primary_mtime);
            let mtime = self.sides[B].mtime;
            self.feed(
                B,
                Input::Executed {
                    icount: mtime,
                    mtime,
                },
            );
        }
        // Deliveries.
        while let Some(&(at, entries)) = self.log.front() {
            if at > self.now {
                break;
            }
            self.log.pop_front();
            if self.sides[B].alive {
                self.received = self.received.max(entries);
                self.feed(B, Input::LogReceived { entries });
            }
        }
        while let Some(&(at, m)) = self.acks.front() {
            if at > self.now {
                break;
            }
            self.acks.pop_front();
            self.feed(P, Input::Message(m));
        }
        let due: Vec<_> = self
            .datagrams
            .range(..(self.now + 1, 0))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, (to, m)) in due {
            self.datagrams.remove(&k);
            if self.link_up {
                self.feed(to, Input::Message(m));
            }
        }
        // The arbiter answers.
        for who in [P, B] {
            if let Some((at, epoch)) = self.sides[who].asking {
                if at <= self.now {
                    self.sides[who].asking = None;
                    let answer = if !self.arbiter_reachable[who] {
                        ArbiterAnswer::Unreachable {
                            error: "no route".into(),
                        }
                    } else {
                        match self.arbiter {
                            Some((e, holder)) if e >= epoch && holder != who => {
                                ArbiterAnswer::Lost {
                                    holder: format!("side {holder}"),
                                }
                            }
                            Some((e, holder)) if e >= epoch && holder == who => ArbiterAnswer::Won,
                            _ => {
                                self.arbiter = Some((epoch, who));
                                ArbiterAnswer::Won
                            }
                        }
                    };
                    self.feed(who, Input::Arbiter(answer));
                }
            }
        }
        self.feed(P, Input::Tick);
        self.feed(B, Input::Tick);
    }

    /// Sides that run live alone.
    pub fn live(&self) -> Vec<usize> {
        [P, B]
            .into_iter()
            .filter(|&s| self.sides[s].alive && self.sides[s].live.is_some())
            .collect()
    }

    /// Mode of a side.
    pub fn mode(&self, who: usize) -> Mode {
        self.sides[who].node.mode().clone()
    }
}
