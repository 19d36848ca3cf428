//! The event boundary: the one door through which the host reaches the machine.
//!
//! Everything non-deterministic that the guest can observe crosses this door:
//! the time base, console input, the wall clock behind the RTC and the
//! device tree's `rng-seed`. The machine asks at instruction boundaries only,
//! always passing the retired-instruction count, so that a recorder can log
//! each answer with the icount at which it took effect and a replayer can give
//! the same answer at the same icount.

use crate::layout::TIMEBASE_HZ;
use ftvm_devices::virtio::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use ftvm_devices::{BackendCompletion, BackendRequest, BlockOp};
use std::collections::VecDeque;

/// The host side of the event boundary.
pub trait Environment {
    /// The guest's time base (`mtime`, 10 MHz ticks since power-on) now, at
    /// `icount`. The machine never lets time go backwards.
    fn now(&mut self, icount: u64) -> u64;

    /// The guest waits for an interrupt with nothing pending. Return once
    /// `deadline` (an `mtime` value, `None` when no timer is armed) has passed
    /// or input has arrived, with the time then. An environment that can never
    /// wake the guest (no deadline, no possible input) returns `None`.
    fn idle(&mut self, icount: u64, now: u64, deadline: Option<u64>) -> Option<u64>;

    /// Console input available at `icount`, at most `max` bytes.
    fn console_input(&mut self, icount: u64, max: usize) -> Vec<u8>;

    /// Wall-clock time at `mtime` 0, in nanoseconds since the Unix epoch
    /// (the goldfish RTC counts from it).
    fn wall_clock_base_ns(&mut self) -> u64;

    /// The 32 random bytes of `/chosen/rng-seed`.
    fn rng_seed(&mut self) -> [u8; 32];

    /// The device model in virtio slot `slot` hands `request` to its host
    /// backend at `icount` (an output of the machine: data was copied out of
    /// guest RAM already).
    fn submit(&mut self, icount: u64, slot: usize, request: BackendRequest);

    /// Backend completions ready to be applied at `icount`, in the order they
    /// are to be applied, each with its virtio slot.
    fn completions(&mut self, icount: u64) -> Vec<(usize, BackendCompletion)>;
}

/// An in-memory host backend of a [`VirtualEnvironment`].
#[derive(Clone, Debug)]
pub enum VirtualBackend {
    /// A disk image held in memory.
    Disk(Vec<u8>),
    /// Entropy from a fixed-seed generator.
    Entropy,
    /// A network card whose frames are kept in `transmitted`; nothing is received.
    Net,
}

/// A fully deterministic environment: time is derived from the instruction
/// count at a nominal rate, idle time is skipped at once, console input is a
/// fixed script given in advance, and the seed and wall clock are constants.
#[derive(Clone, Debug)]
pub struct VirtualEnvironment {
    /// Nominal instructions per second used to derive time from icount.
    pub instructions_per_second: u64,
    /// Ticks skipped while idle.
    skipped: u64,
    /// Console input still to deliver, with the icount at which each chunk becomes available.
    input: VecDeque<(u64, Vec<u8>)>,
    /// Wall-clock time at power-on.
    pub wall_clock_base_ns: u64,
    /// The rng-seed.
    pub rng_seed: [u8; 32],
    /// Backends by virtio slot.
    pub backends: Vec<VirtualBackend>,
    /// Frames the guest sent, by slot.
    pub transmitted: Vec<(usize, Vec<u8>)>,
    /// Completions not yet applied.
    done: VecDeque<(usize, BackendCompletion)>,
    /// State of the entropy generator.
    entropy_state: u64,
}

impl Default for VirtualEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualEnvironment {
    /// A virtual environment at 100 M instructions per guest second.
    pub fn new() -> Self {
        VirtualEnvironment {
            instructions_per_second: 100_000_000,
            skipped: 0,
            input: Default::default(),
            // 2026-01-01T00:00:00Z
            wall_clock_base_ns: 1_767_225_600_000_000_000,
            rng_seed: [0x42; 32],
            backends: Vec::new(),
            transmitted: Vec::new(),
            done: VecDeque::new(),
            entropy_state: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic, good enough for a test guest's entropy.
        let mut x = self.entropy_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.entropy_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn block(&mut self, slot: usize, op: BlockOp) -> (u8, Vec<u8>) {
        let Some(VirtualBackend::Disk(image)) = self.backends.get_mut(slot) else {
            return (VIRTIO_BLK_S_IOERR, Vec::new());
        };
        let range = |sector: u64, len: u64| {
            let start = usize::try_from(sector.checked_mul(512)?).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            Some(start..end)
        };
        match op {
            BlockOp::Read { sector, len } => match range(sector, u64::from(len)) {
                Some(r) if r.end <= image.len() => (VIRTIO_BLK_S_OK, image[r].to_vec()),
                _ => (VIRTIO_BLK_S_IOERR, Vec::new()),
            },
            BlockOp::Write { sector, data } => match range(sector, data.len() as u64) {
                Some(r) if r.end <= image.len() => {
                    image[r].copy_from_slice(&data);
                    (VIRTIO_BLK_S_OK, Vec::new())
                }
                _ => (VIRTIO_BLK_S_IOERR, Vec::new()),
            },
            BlockOp::Discard { sector, sectors } => {
                match range(sector, sectors.saturating_mul(512)) {
                    Some(r) if r.end <= image.len() => {
                        image[r].fill(0);
                        (VIRTIO_BLK_S_OK, Vec::new())
                    }
                    _ => (VIRTIO_BLK_S_IOERR, Vec::new()),
                }
            }
            BlockOp::Flush => (VIRTIO_BLK_S_OK, Vec::new()),
        }
    }

    /// Queues console input that becomes available once `icount` is reached.
    pub fn push_input(&mut self, icount: u64, bytes: &[u8]) {
        self.input.push_back((icount, bytes.to_vec()));
    }

    fn ticks(&self, icount: u64) -> u64 {
        let ticks = u128::from(icount) * u128::from(TIMEBASE_HZ)
            / u128::from(self.instructions_per_second.max(1));
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }
}

impl Environment for VirtualEnvironment {
    fn now(&mut self, icount: u64) -> u64 {
        self.ticks(icount).saturating_add(self.skipped)
    }

    fn idle(&mut self, icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        if !self.done.is_empty() {
            return Some(now);
        }
        let next_input = self.input.front().map(|(at, _)| *at);
        match (deadline, next_input) {
            (_, Some(at)) if at <= icount => Some(now),
            (Some(deadline), _) => {
                self.skipped += deadline.saturating_sub(now);
                Some(now.max(deadline))
            }
            (None, Some(_)) => {
                // Input is scheduled at a later icount, which an idle guest
                // never reaches: deliver it now instead.
                if let Some(front) = self.input.front_mut() {
                    front.0 = icount;
                }
                Some(now)
            }
            (None, None) => None,
        }
    }

    fn console_input(&mut self, icount: u64, max: usize) -> Vec<u8> {
        let Some((at, bytes)) = self.input.front_mut() else {
            return Vec::new();
        };
        if *at > icount {
            return Vec::new();
        }
        let n = bytes.len().min(max);
        let taken: Vec<u8> = bytes.drain(..n).collect();
        if bytes.is_empty() {
            self.input.pop_front();
        }
        taken
    }

    fn wall_clock_base_ns(&mut self) -> u64 {
        self.wall_clock_base_ns
    }

    fn rng_seed(&mut self) -> [u8; 32] {
        self.rng_seed
    }

    fn submit(&mut self, _icount: u64, slot: usize, request: BackendRequest) {
        match request {
            BackendRequest::Block { id, op } => {
                let (status, data) = self.block(slot, op);
                self.done
                    .push_back((slot, BackendCompletion::Block { id, status, data }));
            }
            BackendRequest::Entropy { id, len } => {
                let data = (0..len).map(|_| self.next_random() as u8).collect();
                self.done
                    .push_back((slot, BackendCompletion::Entropy { id, data }));
            }
            BackendRequest::NetTx { frame } => self.transmitted.push((slot, frame)),
        }
    }

    fn completions(&mut self, _icount: u64) -> Vec<(usize, BackendCompletion)> {
        self.done.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_virtual_time_advances_with_icount_at_the_nominal_rate() {
        let mut env = VirtualEnvironment::new();

        assert_eq!(env.now(100_000_000), TIMEBASE_HZ);
    }

    #[test]
    fn test_virtual_idle_skips_to_the_deadline() {
        let mut env = VirtualEnvironment::new();

        let woke = env.idle(0, 0, Some(5_000));

        assert_eq!((woke, env.now(0)), (Some(5_000), 5_000));
    }

    #[test]
    fn test_virtual_idle_with_nothing_to_wait_for_reports_none() {
        let mut env = VirtualEnvironment::new();

        assert_eq!(env.idle(0, 0, None), None);
    }

    #[test]
    fn test_virtual_console_input_is_held_until_its_icount() {
        let mut env = VirtualEnvironment::new();
        env.push_input(1_000, b"ab");

        let early = env.console_input(999, 16);
        let late = env.console_input(1_000, 16);

        assert_eq!((early, late), (Vec::new(), b"ab".to_vec()));
    }
}
