//! The live host side of the event boundary: guest time follows the host's
//! monotonic clock, idle waits for real, input comes from the console.

use crate::console::ConsoleInput;
use ftvm_machine::layout::TIMEBASE_HZ;
use ftvm_machine::Environment;
use std::io::Read;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment of a live run.
pub struct LiveEnvironment {
    start: Instant,
    input: Option<Receiver<ConsoleInput>>,
    pending: Vec<u8>,
    quit: bool,
}

impl LiveEnvironment {
    /// A live environment whose clock starts now.
    pub fn new(input: Option<Receiver<ConsoleInput>>) -> Self {
        LiveEnvironment {
            start: Instant::now(),
            input,
            pending: Vec::new(),
            quit: false,
        }
    }

    /// True once the user asked to quit (Ctrl-A x).
    pub fn quit_requested(&self) -> bool {
        self.quit
    }

    fn ticks(&self) -> u64 {
        let ns = self.start.elapsed().as_nanos();
        u64::try_from(ns * u128::from(TIMEBASE_HZ) / 1_000_000_000).unwrap_or(u64::MAX)
    }

    fn accept(&mut self, msg: ConsoleInput) {
        match msg {
            ConsoleInput::Bytes(b) => self.pending.extend_from_slice(&b),
            ConsoleInput::Quit => self.quit = true,
        }
    }

    fn poll(&mut self) {
        while let Some(rx) = &self.input {
            match rx.try_recv() {
                Ok(msg) => self.accept(msg),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => self.input = None,
            }
        }
    }
}

impl Environment for LiveEnvironment {
    fn now(&mut self, _icount: u64) -> u64 {
        self.ticks()
    }

    fn idle(&mut self, _icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        self.poll();
        if !self.pending.is_empty() || self.quit {
            return Some(self.ticks());
        }
        let wait = match deadline {
            Some(d) => {
                let ticks = d.saturating_sub(now.max(self.ticks()));
                Duration::from_nanos(ticks.saturating_mul(1_000_000_000 / TIMEBASE_HZ))
            }
            None if self.input.is_some() => Duration::from_millis(100),
            None => return None,
        };
        if let Some(rx) = &self.input {
            match rx.recv_timeout(wait) {
                Ok(msg) => self.accept(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.input = None,
            }
        } else {
            std::thread::sleep(wait);
        }
        Some(self.ticks())
    }

    fn console_input(&mut self, _icount: u64, max: usize) -> Vec<u8> {
        self.poll();
        let n = self.pending.len().min(max);
        self.pending.drain(..n).collect()
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
        let mut seed = [0u8; 32];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = f.read_exact(&mut seed);
        }
        seed
    }
}
