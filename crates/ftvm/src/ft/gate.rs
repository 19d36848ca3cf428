//! The primary's output gate: the output rule (DESIGN.md §3).
//!
//! Every output (console bytes, a frame to send, a write, discard or flush
//! of a shared disk) is tagged with the number of log entries written when
//! it was produced, and held until the backup has acknowledged receiving
//! that many entries. Execution goes on meanwhile; outputs leave in the
//! order they were produced. Disk reads and entropy requests are not
//! outputs and go at once (the block model never has a read in flight that
//! overlaps a write in flight, so a read overtaking a held write is safe).
//!
//! With backup reads (`--backup-reads`), the backup reads the shared disk
//! itself when it replays a read's completion, so a write to sectors that a
//! read before it touched must not reach the disk before the backup has
//! executed that read (Scales et al. 2010, §4.2): such a write is also held
//! until the backup reports a guest time beyond the slice in which the read
//! completed. The backup reports its time at the start of each slice, so a
//! time beyond that slice's means the slice, and the read, are behind it.

use super::lock;
use super::pipe::LogPipe;
use crate::live::{Backends, OutputSink};
use ftvm_devices::{BackendRequest, BlockOp};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Something held for the output rule.
#[derive(Debug)]
enum Output {
    Console(Vec<u8>),
    Request(usize, BackendRequest),
}

/// An output and what it waits for.
#[derive(Debug)]
struct Held {
    /// Log entries the backup must have received.
    tag: u64,
    /// A guest time the backup must have executed beyond (a write after a
    /// read of the same sectors that the backup performs itself).
    after_time: Option<u64>,
    output: Output,
    /// When it was produced.
    at: Instant,
}

/// A disk read the backup performs itself: `slot`, sectors `start..end`.
#[derive(Clone, Copy, Debug)]
struct Read {
    slot: usize,
    start: u64,
    end: u64,
}

struct GateState {
    held: VecDeque<Held>,
    held_bytes: usize,
    released: u64,
    /// Alone: no backup to wait for.
    open: bool,
    /// Backup reads: reads handed to the backend, by (slot, id).
    reads_in_flight: BTreeMap<(usize, u64), Read>,
    /// Backup reads: reads completed in the slice that began at the guest
    /// time given, which the backup may not have executed yet, oldest first.
    reads_done: VecDeque<(u64, Read)>,
    /// The guest time the backup last reported it had executed up to.
    backup_time: u64,
    /// Outputs that went out, and the time they were held in total and at
    /// most (an output that could go at once counts with no delay).
    delays: Delays,
}

/// How long outputs waited for the output rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delays {
    /// Outputs let out.
    pub count: u64,
    /// Their waits added up.
    pub total: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Delays {
    fn add(&mut self, waited: Duration) {
        self.count += 1;
        self.total += waited;
        self.max = self.max.max(waited);
    }
}

impl GateState {
    /// Whether `held` may go out now.
    fn may_go(&self, held: &Held) -> bool {
        self.open
            || (held.tag <= self.released && held.after_time.is_none_or(|t| self.backup_time > t))
    }
}

/// Where console output goes.
pub type ConsoleOut = Box<dyn FnMut(&[u8]) + Send>;

/// Holds outputs until the backup has the log up to them.
pub struct OutputGate {
    state: Mutex<GateState>,
    pipe: Arc<LogPipe>,
    backends: Arc<Backends>,
    console: Mutex<ConsoleOut>,
    /// Disk writes are outputs (the disk is shared with the backup).
    shared_disk: bool,
    /// The backup reads the shared disk itself: writes wait for its reads.
    backup_reads: bool,
}

impl OutputGate {
    /// A closed gate in front of `backends` and `console`, tagging with
    /// `pipe`'s entry count. `backup_reads`: the backup reads the shared
    /// disk itself (only with `shared_disk`).
    pub fn new(
        pipe: Arc<LogPipe>,
        backends: Arc<Backends>,
        console: ConsoleOut,
        shared_disk: bool,
        backup_reads: bool,
    ) -> Arc<OutputGate> {
        Arc::new(OutputGate {
            state: Mutex::new(GateState {
                held: VecDeque::new(),
                held_bytes: 0,
                released: 0,
                open: false,
                reads_in_flight: BTreeMap::new(),
                reads_done: VecDeque::new(),
                backup_time: 0,
                delays: Delays::default(),
            }),
            pipe,
            backends,
            console: Mutex::new(console),
            shared_disk,
            backup_reads: shared_disk && backup_reads,
        })
    }

    /// Lets `output` out. `held`: it waited, and goes out on the thread that
    /// released it (the acknowledgement reader's), which writes a frame
    /// itself instead of waking the TAP's writer thread for it; an output
    /// that never waited goes out on the vCPU's thread the way a single
    /// run's does.
    fn perform(&self, output: Output, held: bool) {
        match output {
            Output::Console(bytes) => (lock(&self.console))(&bytes),
            // A failed submission has no completion to deliver here: the
            // backends only fail requests of the wrong kind, which the
            // environment answers itself before they reach the gate.
            Output::Request(slot, request) if held => {
                let _ = self.backends.submit_now(slot, request);
            }
            Output::Request(slot, request) => {
                let _ = self.backends.submit(slot, request);
            }
        }
    }

    /// Holds `output` until the rule lets it go; `flush`: ask for the log up
    /// to it to be sent now (device requests wait for
    /// [`OutputSink::submitted`], which asks once for the whole batch).
    fn put(&self, output: Output, flush: bool) {
        let tag = self.pipe.entries();
        let mut s = lock(&self.state);
        let after_time = match &output {
            Output::Request(slot, BackendRequest::Block { op, .. }) if self.backup_reads => {
                written_sectors(op).and_then(|(start, end)| {
                    let backup_time = s.backup_time;
                    s.reads_done
                        .iter()
                        .filter(|(time, r)| {
                            *time >= backup_time
                                && r.slot == *slot
                                && r.start < end
                                && start < r.end
                        })
                        .map(|(time, _)| *time)
                        .max()
                })
            }
            _ => None,
        };
        let held = Held {
            tag,
            after_time,
            output,
            at: Instant::now(),
        };
        if s.held.is_empty() && s.may_go(&held) {
            s.delays.add(Duration::ZERO);
            self.perform(held.output, false);
            return;
        }
        let output = held.output;
        s.held_bytes += match &output {
            Output::Console(b) => b.len(),
            Output::Request(_, BackendRequest::NetTx { frame }) => frame.len(),
            Output::Request(
                _,
                BackendRequest::Block {
                    op: BlockOp::Write { data, .. },
                    ..
                },
            ) => data.len(),
            Output::Request(..) => 0,
        };
        s.held.push_back(Held {
            tag,
            after_time,
            output,
            at: held.at,
        });
        drop(s);
        if flush {
            self.pipe.flush();
        }
    }

    /// Console output of the guest (once per slice): the log up to it is
    /// sent promptly.
    pub fn console(&self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.put(Output::Console(bytes), true);
        }
    }

    /// Lets out everything tagged with at most `upto` entries.
    pub fn release(&self, upto: u64) {
        let mut s = lock(&self.state);
        s.released = s.released.max(upto);
        self.let_out(&mut s);
    }

    /// The backup reports it has executed up to guest time `mtime`: reads
    /// it performed itself before that no longer hold writes back.
    pub fn backup_executed(&self, mtime: u64) {
        if !self.backup_reads {
            return;
        }
        let mut s = lock(&self.state);
        if mtime <= s.backup_time {
            return;
        }
        s.backup_time = mtime;
        while s.reads_done.front().is_some_and(|(time, _)| *time < mtime) {
            s.reads_done.pop_front();
        }
        self.let_out(&mut s);
    }

    /// Performs the held outputs at the front that may go, in order.
    fn let_out(&self, s: &mut GateState) {
        while s.held.front().is_some_and(|h| s.may_go(h)) {
            if let Some(h) = s.held.pop_front() {
                s.delays.add(h.at.elapsed());
                self.perform(h.output, true);
            }
        }
        if s.held.is_empty() {
            s.held_bytes = 0;
        }
    }

    /// No backup to wait for any more: lets everything out, and everything
    /// from now on.
    pub fn open(&self) {
        let mut s = lock(&self.state);
        s.open = true;
        while let Some(h) = s.held.pop_front() {
            s.delays.add(h.at.elapsed());
            self.perform(h.output, true);
        }
        s.held_bytes = 0;
        s.reads_in_flight.clear();
        s.reads_done.clear();
    }

    /// How long the outputs let out so far waited.
    pub fn delays(&self) -> Delays {
        lock(&self.state).delays
    }

    /// Outputs held now, and their bytes.
    pub fn held(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.held.len(), s.held_bytes)
    }
}

/// The sectors `start..end` a block operation changes, if any.
fn written_sectors(op: &BlockOp) -> Option<(u64, u64)> {
    match op {
        BlockOp::Write { sector, data } => Some((
            *sector,
            sector.saturating_add((data.len() as u64).div_ceil(512)),
        )),
        BlockOp::Discard { sector, sectors } => Some((*sector, sector.saturating_add(*sectors))),
        BlockOp::Read { .. } | BlockOp::Flush => None,
    }
}

/// Whether `request` is an output under the output rule.
pub fn is_output(request: &BackendRequest, shared_disk: bool) -> bool {
    match request {
        BackendRequest::NetTx { .. } => true,
        BackendRequest::Block { op, .. } => shared_disk && !matches!(op, BlockOp::Read { .. }),
        BackendRequest::Entropy { .. } => false,
    }
}

impl OutputSink for OutputGate {
    fn is_output(&self, _slot: usize, request: &BackendRequest) -> bool {
        is_output(request, self.shared_disk)
    }

    fn hold(&self, slot: usize, request: BackendRequest) {
        self.put(Output::Request(slot, request), false);
    }

    /// Queuing outputs forces a prompt flush of the log: one for the batch.
    fn submitted(&self) {
        self.pipe.flush();
    }

    /// The vCPU is about to wait: if a held write waits for the backup to
    /// execute past a read it performs itself, the log written since goes
    /// now (the backup cannot execute what it has not received). Outputs
    /// that wait for acknowledgements alone had the log up to them sent
    /// when they were submitted; otherwise the log waits for the sender's
    /// period or the next output: a send (and an acknowledgement back) each
    /// time the guest idles cost the primary's core several wake-ups per
    /// disk request, for nothing an output waited on.
    fn before_wait(&self) {
        let waits_for_execution = lock(&self.state)
            .held
            .iter()
            .any(|h| h.after_time.is_some());
        if waits_for_execution {
            self.pipe.flush();
        }
    }

    fn read_submitted(&self, slot: usize, id: u64, sector: u64, len: u32) {
        if !self.backup_reads {
            return;
        }
        let mut s = lock(&self.state);
        if s.open {
            return;
        }
        let end = sector.saturating_add(u64::from(len).div_ceil(512));
        s.reads_in_flight.insert(
            (slot, id),
            Read {
                slot,
                start: sector,
                end,
            },
        );
    }

    fn block_completed(&self, slot: usize, id: u64, mtime: u64, data: bool) {
        if !self.backup_reads {
            return;
        }
        let mut s = lock(&self.state);
        if let Some(read) = s.reads_in_flight.remove(&(slot, id)) {
            if data && !s.open {
                s.reads_done.push_back((mtime, read));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftvm_replay::{Event, Header, LogWriter};

    fn gate() -> (
        Arc<OutputGate>,
        Arc<Mutex<Vec<u8>>>,
        LogWriter<super::super::pipe::PipeWriter>,
    ) {
        let pipe = LogPipe::new(1 << 20, std::time::Duration::ZERO);
        let log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let gate = OutputGate::new(
            pipe,
            Arc::new(Backends::default()),
            Box::new(move |b: &[u8]| sink.lock().expect("lock").extend_from_slice(b)),
            true,
            true,
        );
        (gate, seen, log)
    }

    #[test]
    fn test_console_output_waits_for_the_acknowledgement_of_its_entries() {
        let (gate, seen, mut log) = gate();
        log.write(0, &Event::Now { mtime: 0 }).expect("frame");
        log.write(0, &Event::Now { mtime: 1 }).expect("frame");
        gate.console(b"a".to_vec());
        log.write(0, &Event::Now { mtime: 2 }).expect("frame");
        gate.console(b"b".to_vec());

        gate.release(1);
        let after_one = seen.lock().expect("lock").clone();
        gate.release(2);
        let after_two = seen.lock().expect("lock").clone();
        gate.release(3);
        let after_three = seen.lock().expect("lock").clone();

        assert_eq!(
            (after_one, after_two, after_three),
            (Vec::new(), b"a".to_vec(), b"ab".to_vec())
        );
    }

    #[test]
    fn test_open_gate_lets_everything_out_in_order() {
        let (gate, seen, mut log) = gate();
        log.write(0, &Event::Now { mtime: 0 }).expect("frame");
        gate.console(b"x".to_vec());
        gate.console(b"y".to_vec());

        gate.open();
        gate.console(b"z".to_vec());

        assert_eq!(seen.lock().expect("lock").clone(), b"xyz".to_vec());
        assert_eq!(gate.held(), (0, 0));
    }

    fn disk_write(sector: u64, len: usize) -> BackendRequest {
        BackendRequest::Block {
            id: 9,
            op: BlockOp::Write {
                sector,
                data: vec![1; len],
            },
        }
    }

    /// A gate whose backup has the log (two entries) and has read sectors
    /// 8..16 itself in the slice of guest time 100.
    fn gate_after_a_backup_read() -> Arc<OutputGate> {
        let (gate, _, mut log) = gate();
        gate.read_submitted(0, 1, 8, 4096);
        log.write(0, &Event::Now { mtime: 100 }).expect("frame");
        gate.block_completed(0, 1, 100, true);
        log.write(0, &Event::Now { mtime: 101 }).expect("frame");
        gate.release(2);
        gate.backup_executed(50);
        gate
    }

    /// Device requests held in a batch ask for one send of the log, when the
    /// batch is handed over; console output asks at once.
    #[test]
    fn test_held_requests_flush_the_log_once_the_batch_is_submitted() {
        let (other, _, mut other_log) = gate();
        let (gate, _, mut log) = gate();
        log.write(0, &Event::Now { mtime: 0 }).expect("frame");
        other_log.write(0, &Event::Now { mtime: 0 }).expect("frame");

        gate.hold(0, disk_write(0, 512));
        gate.hold(0, disk_write(1, 512));
        let while_holding = gate.pipe.flush_requested();
        gate.submitted();
        let after_the_batch = gate.pipe.flush_requested();
        other.console(b"x".to_vec());

        assert_eq!(
            (
                while_holding,
                after_the_batch,
                other.pipe.flush_requested(),
                gate.held().0
            ),
            (false, true, true, 2)
        );
    }

    /// Waiting with outputs held flushes the log only for a write that
    /// waits for the backup to execute past a read; outputs waiting for
    /// acknowledgements alone had theirs sent when they were submitted.
    #[test]
    fn test_waiting_flushes_the_log_only_for_a_write_behind_a_backup_read() {
        let (gate, _, mut log) = gate();
        log.write(0, &Event::Now { mtime: 0 }).expect("frame");
        gate.hold(0, disk_write(0, 512));
        gate.before_wait();
        let acks_only = gate.pipe.flush_requested();

        let behind = gate_after_a_backup_read();
        behind.hold(0, disk_write(15, 1024));
        let before = behind.pipe.flush_requested();
        behind.before_wait();

        assert_eq!(
            (acks_only, before, behind.pipe.flush_requested()),
            (false, false, true)
        );
    }

    #[test]
    fn test_write_over_a_read_the_backup_has_not_executed_waits_for_it() {
        let gate = gate_after_a_backup_read();

        gate.hold(0, disk_write(15, 1024));
        gate.release(2);
        let after_ack = gate.held().0;
        gate.backup_executed(100);
        let at_the_reads_slice = gate.held().0;
        gate.backup_executed(101);
        let past_it = gate.held().0;

        assert_eq!((after_ack, at_the_reads_slice, past_it), (1, 1, 0));
    }

    #[test]
    fn test_write_beside_a_read_or_in_another_slot_waits_for_the_ack_alone() {
        let gate = gate_after_a_backup_read();

        gate.hold(0, disk_write(16, 512));
        gate.hold(0, disk_write(0, 4096));
        gate.hold(1, disk_write(8, 512));

        assert_eq!(gate.held().0, 0);
    }

    #[test]
    fn test_held_write_keeps_later_outputs_behind_it_and_open_lets_all_out() {
        let gate = gate_after_a_backup_read();

        gate.hold(0, disk_write(8, 512));
        gate.console(b"x".to_vec());
        gate.release(2);
        let held = gate.held().0;
        gate.open();

        assert_eq!((held, gate.held().0), (2, 0));
    }

    #[test]
    fn test_without_backup_reads_a_read_holds_nothing_back() {
        let pipe = LogPipe::new(1 << 20, std::time::Duration::ZERO);
        let gate = OutputGate::new(
            pipe,
            Arc::new(Backends::default()),
            Box::new(|_: &[u8]| {}),
            true,
            false,
        );
        gate.read_submitted(0, 1, 8, 4096);
        gate.block_completed(0, 1, 100, true);

        gate.hold(0, disk_write(8, 512));

        assert_eq!(gate.held().0, 0);
    }

    #[test]
    fn test_reads_are_not_outputs_but_shared_disk_writes_are() {
        let read = BackendRequest::Block {
            id: 1,
            op: BlockOp::Read {
                sector: 0,
                len: 512,
            },
        };
        let write = BackendRequest::Block {
            id: 2,
            op: BlockOp::Write {
                sector: 0,
                data: vec![0; 512],
            },
        };

        assert_eq!(
            (
                is_output(&read, true),
                is_output(&write, true),
                is_output(&write, false)
            ),
            (false, true, false)
        );
    }
}
