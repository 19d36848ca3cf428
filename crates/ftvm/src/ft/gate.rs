//! The primary's output gate: the output rule (DESIGN.md §3).
//!
//! Every output (console bytes, a frame to send, a write, discard or flush
//! of a shared disk) is tagged with the number of log entries written when
//! it was produced, and held until the backup has acknowledged receiving
//! that many entries. Execution goes on meanwhile; outputs leave in the
//! order they were produced. Disk reads and entropy requests are not
//! outputs and go at once (the block model never has a read in flight that
//! overlaps a write in flight, so a read overtaking a held write is safe).

use super::lock;
use super::pipe::LogPipe;
use crate::live::{Backends, OutputSink};
use ftvm_devices::{BackendRequest, BlockOp};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Something held for the output rule.
#[derive(Debug)]
enum Output {
    Console(Vec<u8>),
    Request(usize, BackendRequest),
}

struct GateState {
    held: VecDeque<(u64, Output)>,
    held_bytes: usize,
    released: u64,
    /// Alone: no backup to wait for.
    open: bool,
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
}

impl OutputGate {
    /// A closed gate in front of `backends` and `console`, tagging with
    /// `pipe`'s entry count.
    pub fn new(
        pipe: Arc<LogPipe>,
        backends: Arc<Backends>,
        console: ConsoleOut,
        shared_disk: bool,
    ) -> Arc<OutputGate> {
        Arc::new(OutputGate {
            state: Mutex::new(GateState {
                held: VecDeque::new(),
                held_bytes: 0,
                released: 0,
                open: false,
            }),
            pipe,
            backends,
            console: Mutex::new(console),
            shared_disk,
        })
    }

    fn perform(&self, output: Output) {
        match output {
            Output::Console(bytes) => (lock(&self.console))(&bytes),
            Output::Request(slot, request) => {
                // A failed submission has no completion to deliver here: the
                // backends only fail requests of the wrong kind, which the
                // environment answers itself before they reach the gate.
                let _ = self.backends.submit(slot, request);
            }
        }
    }

    fn put(&self, output: Output) {
        let tag = self.pipe.entries();
        let mut s = lock(&self.state);
        if s.held.is_empty() && (s.open || tag <= s.released) {
            self.perform(output);
            return;
        }
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
        s.held.push_back((tag, output));
        drop(s);
        // Queuing an output forces a prompt flush of the log.
        self.pipe.flush();
    }

    /// Console output of the guest.
    pub fn console(&self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.put(Output::Console(bytes));
        }
    }

    /// Lets out everything tagged with at most `upto` entries.
    pub fn release(&self, upto: u64) {
        let mut s = lock(&self.state);
        s.released = s.released.max(upto);
        while s.held.front().is_some_and(|(tag, _)| *tag <= s.released) {
            if let Some((_, output)) = s.held.pop_front() {
                self.perform(output);
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
        while let Some((_, output)) = s.held.pop_front() {
            self.perform(output);
        }
        s.held_bytes = 0;
    }

    /// Outputs held now, and their bytes.
    pub fn held(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.held.len(), s.held_bytes)
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
        self.put(Output::Request(slot, request));
    }

    fn before_wait(&self) {
        self.pipe.flush();
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
        let pipe = LogPipe::new(1 << 20);
        let log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let gate = OutputGate::new(
            pipe,
            Arc::new(Backends::default()),
            Box::new(move |b: &[u8]| sink.lock().expect("lock").extend_from_slice(b)),
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
