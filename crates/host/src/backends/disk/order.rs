//! The queue in front of a disk backend's threads.
//!
//! DESIGN.md §1: requests in flight that overlap the same bytes are serialized, the
//! later one waiting, so the disk's final content never depends on host timing. A
//! request may start when its range conflicts neither with a request already running
//! nor with an earlier request still waiting (two ranges conflict when they overlap
//! and at least one of them writes). Flushes touch no range and never wait here.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::DiskOp;

/// A request taken from the queue; hand `seq` back to [`Gate::finish`] when done.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// Position in submission order.
    pub(crate) seq: u64,
    /// The caller's id.
    pub(crate) id: u64,
    /// The operation.
    pub(crate) op: DiskOp,
}

#[derive(Debug, Clone, Copy)]
struct Extent {
    seq: u64,
    start: u64,
    end: u64,
    writes: bool,
}

impl Extent {
    fn of(seq: u64, op: &DiskOp) -> Option<Extent> {
        op.extent().map(|(start, end, writes)| Extent {
            seq,
            start,
            end,
            writes,
        })
    }

    fn conflicts(&self, other: &Extent) -> bool {
        (self.writes || other.writes) && self.start < other.end && other.start < self.end
    }
}

#[derive(Debug, Default)]
struct State {
    waiting: VecDeque<Ticket>,
    running: Vec<Extent>,
    next_seq: u64,
    closed: bool,
}

/// Told of each range a write or discard has changed, once it is done.
pub type WriteObserver = std::sync::Arc<dyn Fn(u64, u64) + Send + Sync>;

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// The ordering queue shared by a disk's submitter and its worker threads.
#[derive(Default)]
pub(crate) struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    observer: Mutex<Option<WriteObserver>>,
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a request.
    pub(crate) fn push(&self, id: u64, op: DiskOp) {
        let mut state = self.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        state.waiting.push_back(Ticket { seq, id, op });
        // One request: one worker. Waking them all for it (a 1 MiB write
        // woke four threads, three of which went back to sleep) costs the
        // submitting thread and the vCPU's core a context switch each.
        self.changed.notify_one();
    }

    /// Stops accepting work; [`Gate::take`] returns `None` once the queue is empty.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Waits for a request that may start now, or `None` when closed and drained.
    pub(crate) fn take(&self) -> Option<Ticket> {
        let mut state = self.lock();
        loop {
            if let Some(index) = Self::first_ready(&state) {
                let ticket = state.waiting.remove(index)?;
                if let Some(extent) = Extent::of(ticket.seq, &ticket.op) {
                    state.running.push(extent);
                }
                if Self::first_ready(&state).is_some() {
                    // Another request may start too: pass the wake-up on.
                    self.changed.notify_one();
                }
                return Some(ticket);
            }
            if state.closed && state.waiting.is_empty() {
                return None;
            }
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A request that may start now, without waiting.
    pub(crate) fn try_take(&self) -> Option<Ticket> {
        let mut state = self.lock();
        let index = Self::first_ready(&state)?;
        let ticket = state.waiting.remove(index)?;
        if let Some(extent) = Extent::of(ticket.seq, &ticket.op) {
            state.running.push(extent);
        }
        Some(ticket)
    }

    /// Whether the queue is closed and every request in it has been taken.
    pub(crate) fn drained(&self) -> bool {
        let state = self.lock();
        state.closed && state.waiting.is_empty()
    }

    /// Marks the request `seq` as finished, letting requests that wait on it start.
    pub(crate) fn finish(&self, seq: u64) {
        let mut state = self.lock();
        let changed = state
            .running
            .iter()
            .find(|extent| extent.seq == seq && extent.writes)
            .map(|extent| (extent.start, extent.end - extent.start));
        state.running.retain(|extent| extent.seq != seq);
        // Only a waiting request can have been held back by this one.
        let wake = !state.waiting.is_empty();
        drop(state);
        if wake {
            self.changed.notify_all();
        }
        if let Some((offset, len)) = changed {
            let observer = self
                .observer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(observer) = observer {
                observer(offset, len);
            }
        }
    }

    /// Sets (or clears) what is told of every range changed from now on.
    pub(crate) fn set_write_observer(&self, observer: Option<WriteObserver>) {
        *self
            .observer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = observer;
    }

    fn first_ready(state: &State) -> Option<usize> {
        state
            .waiting
            .iter()
            .enumerate()
            .position(|(index, ticket)| {
                let Some(extent) = Extent::of(ticket.seq, &ticket.op) else {
                    return true;
                };
                let blocked_by_running = state.running.iter().any(|r| r.conflicts(&extent));
                let blocked_by_earlier = state
                    .waiting
                    .iter()
                    .take(index)
                    .filter_map(|earlier| Extent::of(earlier.seq, &earlier.op))
                    .any(|e| e.conflicts(&extent));
                !blocked_by_running && !blocked_by_earlier
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(offset: u64, len: usize) -> DiskOp {
        DiskOp::Write {
            offset,
            data: vec![0; len],
        }
    }

    #[test]
    fn test_overlapping_write_waits_for_running_write() {
        let gate = Gate::default();
        gate.push(1, write(0, 512));
        gate.push(2, write(256, 512));
        gate.push(3, write(4096, 512));
        gate.close();

        let first = gate.take().map(|t| t.id);
        let second = gate.take().map(|t| t.id);

        assert_eq!((first, second), (Some(1), Some(3)));
    }

    #[test]
    fn test_overlapping_write_starts_after_finish() {
        let gate = Gate::default();
        gate.push(1, write(0, 512));
        gate.push(2, write(256, 512));
        gate.close();
        let first = gate.take().map(|t| t.seq);

        gate.finish(first.unwrap_or_default());
        let second = gate.take().map(|t| t.id);

        assert_eq!(second, Some(2));
    }

    #[test]
    fn test_overlapping_reads_run_together() {
        let gate = Gate::default();
        gate.push(
            1,
            DiskOp::Read {
                offset: 0,
                len: 512,
            },
        );
        gate.push(
            2,
            DiskOp::Read {
                offset: 0,
                len: 512,
            },
        );
        gate.close();

        let ids = [gate.take().map(|t| t.id), gate.take().map(|t| t.id)];

        assert_eq!(ids, [Some(1), Some(2)]);
    }

    #[test]
    fn test_read_waits_behind_earlier_waiting_write() {
        let gate = Gate::default();
        gate.push(1, write(0, 512));
        gate.push(2, write(0, 512));
        gate.push(
            3,
            DiskOp::Read {
                offset: 0,
                len: 512,
            },
        );
        gate.push(4, DiskOp::Flush);
        gate.close();

        let first = gate.take().map(|t| t.id);
        let second = gate.take().map(|t| t.id);

        assert_eq!((first, second), (Some(1), Some(4)));
    }

    #[test]
    fn test_try_take_leaves_a_blocked_request_waiting() {
        let gate = Gate::default();
        gate.push(1, write(0, 512));
        gate.push(2, write(256, 512));
        gate.close();

        let first = gate.try_take().map(|t| t.seq);
        let blocked = gate.try_take().map(|t| t.id);
        let drained_before = gate.drained();
        gate.finish(first.unwrap_or_default());
        let second = gate.try_take().map(|t| t.id);

        assert_eq!(
            (blocked, drained_before, second, gate.drained()),
            (None, false, Some(2), true)
        );
    }

    #[test]
    fn test_take_returns_none_when_closed_and_empty() {
        let gate = Gate::default();
        gate.close();

        assert!(gate.take().is_none());
    }

    /// Workers blocked in `take` (each push wakes one of them): every request
    /// pushed reaches a worker, two pushed together both, one that waited
    /// behind a running request once that finishes, and one pushed after.
    #[test]
    fn test_waiting_workers_get_every_request() {
        use std::sync::{mpsc, Arc};
        let gate = Arc::new(Gate::default());
        let (taken, tickets) = mpsc::channel();
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let (gate, taken) = (gate.clone(), taken.clone());
                std::thread::spawn(move || {
                    while let Some(ticket) = gate.take() {
                        let _ = taken.send((ticket.id, ticket.seq));
                    }
                })
            })
            .collect();
        let next = || {
            tickets
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("a worker takes the request")
        };

        gate.push(1, write(0, 512));
        gate.push(2, write(4096, 512));
        gate.push(3, write(256, 512));
        let mut ids = [next(), next()];
        ids.sort_unstable();
        // 3 overlaps 1, still running: it waits until 1 finishes.
        gate.finish(ids[0].1);
        let third = next();
        gate.finish(ids[1].1);
        gate.finish(third.1);
        gate.push(4, write(8192, 512));
        let fourth = next();
        gate.close();
        for worker in workers {
            worker.join().expect("the worker ends");
        }

        assert_eq!((ids[0].0, ids[1].0, third.0, fourth.0), (1, 2, 3, 4));
    }

    #[test]
    fn test_write_observer_is_told_of_writes_and_discards_once_finished() {
        let gate = Gate::default();
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        gate.set_write_observer(Some(std::sync::Arc::new(move |offset, len| {
            sink.lock().expect("lock").push((offset, len));
        })));
        gate.push(
            1,
            DiskOp::Write {
                offset: 4096,
                data: vec![1; 512],
            },
        );
        gate.push(
            2,
            DiskOp::Read {
                offset: 0,
                len: 512,
            },
        );
        gate.push(
            3,
            DiskOp::Discard {
                offset: 1 << 20,
                len: 8192,
            },
        );
        let tickets: Vec<Ticket> = std::iter::from_fn(|| gate.try_take()).collect();
        assert_eq!(tickets.len(), 3);
        assert!(seen.lock().expect("lock").is_empty(), "told before done");

        for t in &tickets {
            gate.finish(t.seq);
        }

        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(4096, 512), (1 << 20, 8192)]
        );
    }
}
