//! Record and replay at the event boundary.
//!
//! [`Recorder`] wraps the live [`Environment`] and logs every answer that
//! crosses the boundary, with the icount at which it took effect, plus every
//! request the machine hands to a backend and periodic state digests.
//! [`Replayer`] is an environment that answers from such a log instead of the
//! host: it needs no host devices (disk read data comes from the log, writes
//! are checked against the log, not performed), it skips idle time at once,
//! and it stops with a [`ReplayError`] naming the first icount at which the
//! machine did something other than what was recorded.
//!
//! [`record_step`] and [`replay_step`] are the loop's step on each side: step
//! the machine and log (or check) a digest every [`DIGEST_INTERVAL`]
//! instructions; [`record_end`] and [`replay_end`] end the log with the run's
//! outcome (and check it).
//! Because the machine is deterministic, the recording run and the replay
//! call the environment in the same order at the same icounts.

use crate::digest::Digest;
use crate::{Environment, Machine, Step};
use ftvm_devices::virtio::VIRTIO_BLK_S_OK;
use ftvm_devices::{BackendCompletion, BackendRequest, BlockOp};
use ftvm_replay::{
    hash_bytes, EndStatus, Entry, Event, LogError, LogReader, LogWriter, SubmitRecord,
};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};

/// Instructions between two state digests in a log.
pub const DIGEST_INTERVAL: u64 = 50_000_000;

/// Why a replay stopped before the end of the recording.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log cannot be read.
    #[error("cannot read the log: {0}")]
    Log(#[from] LogError),
    /// The machine asked for something the log does not have next.
    #[error("replay diverged at icount {icount}: the machine {wanted}, but the log has {found}")]
    Diverged {
        /// Where.
        icount: u64,
        /// What the machine did.
        wanted: String,
        /// What the log holds next.
        found: String,
    },
    /// A state digest differs from the recorded one.
    #[error("replay diverged at icount {icount}: the state digest differs in {parts}")]
    DigestMismatch {
        /// Where.
        icount: u64,
        /// Which parts differ (registers, CSRs, devices, RAM).
        parts: String,
    },
    /// A disk read whose data the log leaves out ([`Event::ReadElided`]) could
    /// not be read again, or read other data than the recording side did.
    #[error("replay diverged at icount {icount}: disk read {id} in slot {slot}: {reason}")]
    ElidedRead {
        /// Where.
        icount: u64,
        /// The virtio slot.
        slot: usize,
        /// The read request's id.
        id: u64,
        /// What went wrong.
        reason: String,
    },
    /// The log ended before the run did.
    #[error("the log ends at icount {icount} before the recorded run ended")]
    LogEnded {
        /// Where.
        icount: u64,
    },
}

/// A recording environment: answers come from `inner` and are logged.
pub struct Recorder<'a, W: Write> {
    inner: &'a mut dyn Environment,
    log: LogWriter<W>,
    error: Option<std::io::Error>,
    /// The highest icount logged: a reboot starts the hart's count again,
    /// while the log's icounts never go back (the replayer clamps the same way).
    last_icount: u64,
    /// Log successful disk reads as [`Event::ReadElided`], without their data.
    elide_reads: bool,
    /// Reads submitted through this recorder and not completed, by (slot,
    /// id): only these are elided. A read the machine had in flight before
    /// the recording began (a snapshot sent to a new backup) has no
    /// submission in the log, and its data goes in the log.
    reads: BTreeSet<(usize, u64)>,
}

impl<'a, W: Write> Recorder<'a, W> {
    /// Records the answers of `inner` into `log`.
    pub fn new(inner: &'a mut dyn Environment, log: LogWriter<W>) -> Self {
        Recorder {
            inner,
            log,
            error: None,
            last_icount: 0,
            elide_reads: false,
            reads: BTreeSet::new(),
        }
    }

    /// From now on, logs each disk read submitted through this recorder that
    /// completes with status OK as an [`Event::ReadElided`] (its length and
    /// data hash) instead of a completion carrying the data: for a replaying
    /// side that reads the same disk itself ([`Replayer::completions_reading`]).
    pub fn elide_read_data(&mut self) {
        self.elide_reads = true;
    }

    fn put(&mut self, icount: u64, event: Event) {
        self.put_with(icount, |log, icount| log.write(icount, &event));
    }

    /// Logs an entry at `icount` (clamped, see `last_icount`) with `write`.
    fn put_with(
        &mut self,
        icount: u64,
        write: impl FnOnce(&mut LogWriter<W>, u64) -> std::io::Result<()>,
    ) {
        let icount = icount.max(self.last_icount);
        self.last_icount = icount;
        if self.error.is_none() {
            if let Err(e) = write(&mut self.log, icount) {
                self.error = Some(e);
            }
        }
    }

    /// The first error writing the log, if any.
    pub fn error(&self) -> Option<&std::io::Error> {
        self.error.as_ref()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.log.bytes_written()
    }

    /// Flushes and returns the log writer.
    pub fn finish(mut self) -> std::io::Result<LogWriter<W>> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.log.flush()?;
        Ok(self.log)
    }
}

impl<W: Write> Environment for Recorder<'_, W> {
    fn now(&mut self, icount: u64) -> u64 {
        let mtime = self.inner.now(icount);
        self.put(icount, Event::Now { mtime });
        mtime
    }

    fn idle(&mut self, icount: u64, now: u64, deadline: Option<u64>) -> Option<u64> {
        let woke_at = self.inner.idle(icount, now, deadline);
        self.put(icount, Event::Idle { woke_at });
        woke_at
    }

    fn console_input(&mut self, icount: u64, max: usize) -> Vec<u8> {
        let bytes = self.inner.console_input(icount, max);
        if !bytes.is_empty() {
            self.put(
                icount,
                Event::ConsoleInput {
                    bytes: bytes.clone(),
                },
            );
        }
        bytes
    }

    fn wall_clock_base_ns(&mut self) -> u64 {
        let ns = self.inner.wall_clock_base_ns();
        self.put(self.last_icount, Event::WallClock { ns });
        ns
    }

    fn rng_seed(&mut self) -> [u8; 32] {
        let seed = self.inner.rng_seed();
        self.put(self.last_icount, Event::RngSeed { seed });
        seed
    }

    fn submit(&mut self, icount: u64, slot: usize, request: BackendRequest) {
        if let BackendRequest::Block {
            id,
            op: BlockOp::Read { .. },
        } = &request
        {
            if self.elide_reads {
                self.reads.insert((slot, *id));
            }
        }
        // The log keeps a record of the request (its data hashed), not the data.
        self.put(
            icount,
            Event::Submit {
                slot: slot as u8,
                request: SubmitRecord::of(&request),
            },
        );
        self.inner.submit(icount, slot, request);
    }

    fn completions(&mut self, icount: u64) -> Vec<(usize, BackendCompletion)> {
        let done = self.inner.completions(icount);
        for (slot, completion) in &done {
            match completion {
                // Only a read that succeeded carries data.
                BackendCompletion::Block { id, status, data }
                    if self.reads.remove(&(*slot, *id))
                        && *status == VIRTIO_BLK_S_OK
                        && !data.is_empty() =>
                {
                    let event = Event::ReadElided {
                        slot: *slot as u8,
                        id: *id,
                        len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                        hash: hash_bytes(data),
                    };
                    self.put(icount, event);
                }
                // Encoded from the borrowed completion: its data is not copied.
                _ => self.put_with(icount, |log, icount| {
                    log.write_completion(icount, *slot as u8, completion)
                }),
            }
        }
        done
    }
}

/// What a replay went through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Log entries consumed.
    pub entries: u64,
    /// Digests compared.
    pub digests_checked: u64,
    /// Disk writes and frames checked against the log.
    pub outputs_checked: u64,
}

/// A replaying environment: every answer comes from the log.
pub struct Replayer<R: BufRead> {
    log: LogReader<R>,
    /// The next entry, once read: `loaded` says whether `next` holds what
    /// follows the last entry consumed. The log is read only when an answer
    /// needs it, never ahead: an FT backup replaying a log as it arrives
    /// runs the slice it has before waiting for the primary's next entry.
    next: Option<Entry>,
    loaded: bool,
    error: Option<ReplayError>,
    stats: ReplayStats,
    /// The highest icount matched so far (see [`Recorder`]).
    last_icount: u64,
}

fn describe(entry: &Option<Entry>) -> String {
    match entry {
        None => "nothing more".to_string(),
        Some(e) => {
            let submit;
            let kind = match &e.event {
                Event::Now { .. } => "a time reading",
                Event::Idle { .. } => "an idle period",
                Event::ConsoleInput { .. } => "console input",
                Event::WallClock { .. } => "the wall clock",
                Event::RngSeed { .. } => "the rng seed",
                Event::Submit { slot, request } => {
                    submit = format!("{request} sent to slot {slot}");
                    &submit
                }
                Event::Completion { .. } => "a backend completion",
                Event::ReadElided { .. } => "a disk read completion without its data",
                Event::Digest { .. } => "a state digest",
                Event::End { .. } => "the end of the run",
            };
            format!("{kind} at icount {} (entry {})", e.icount, e.seq)
        }
    }
}

impl<R: BufRead> Replayer<R> {
    /// Replays `log` (its header already read).
    pub fn new(log: LogReader<R>) -> Self {
        Replayer {
            log,
            next: None,
            loaded: false,
            error: None,
            stats: ReplayStats::default(),
            last_icount: 0,
        }
    }

    /// Reads the next entry if it has not been read yet.
    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        match self.log.next() {
            Ok(entry) => self.next = entry,
            Err(e) => {
                self.next = None;
                if self.error.is_none() {
                    self.error = Some(ReplayError::Log(e));
                }
            }
        }
    }

    /// The next entry has been used: the one after it is read when needed.
    fn consume(&mut self) {
        self.next = None;
        self.loaded = false;
    }

    /// Takes the next entry if `accept` says it answers the current call.
    fn take<T>(&mut self, icount: u64, accept: impl Fn(&Event) -> Option<T>) -> Option<T> {
        let icount = icount.max(self.last_icount);
        self.load();
        let entry = self.next.as_ref()?;
        if entry.icount != icount {
            return None;
        }
        let value = accept(&entry.event)?;
        self.last_icount = icount;
        self.stats.entries += 1;
        self.consume();
        Some(value)
    }

    /// Takes the next entry, which must answer the current call.
    fn expect<T>(
        &mut self,
        icount: u64,
        wanted: &str,
        accept: impl Fn(&Event) -> Option<T>,
    ) -> Option<T> {
        if self.error.is_some() {
            return None;
        }
        let value = self.take(icount, accept);
        if value.is_none() && self.error.is_none() {
            self.error = Some(ReplayError::Diverged {
                icount,
                wanted: wanted.to_string(),
                found: describe(&self.next),
            });
        }
        value
    }

    /// Checks that the machine hands `request` to the backend in `slot` now,
    /// as recorded ([`Environment::submit`] without giving up the request): the
    /// log holds its [`SubmitRecord`], which the request's must equal.
    pub fn check_submit(&mut self, icount: u64, slot: usize, request: &BackendRequest) {
        let record = SubmitRecord::of(request);
        let wanted = || format!("sent {record} to slot {slot}");
        let logged = self.expect(icount, "sent a backend request", |e| match e {
            Event::Submit {
                slot: s,
                request: r,
            } => Some((usize::from(*s), *r)),
            _ => None,
        });
        match logged {
            Some((s, r)) if s == slot && r == record => self.stats.outputs_checked += 1,
            Some((s, r)) => {
                self.error = Some(ReplayError::Diverged {
                    icount,
                    wanted: wanted(),
                    found: format!("{r} sent to slot {s}"),
                })
            }
            None => {
                // Name the request in the divergence.
                if let Some(ReplayError::Diverged { wanted: w, .. }) = &mut self.error {
                    if w == "sent a backend request" {
                        *w = wanted();
                    }
                }
            }
        }
    }

    /// The next completion if it is due at `icount`, moved out of the log
    /// entry (its data is not copied). A read logged without its data
    /// ([`Event::ReadElided`]) is read again with `read(slot, id, len)` and
    /// checked against the logged hash; `None` (and the replay's error) if
    /// that fails.
    fn take_completion(
        &mut self,
        icount: u64,
        read: &mut dyn FnMut(usize, u64, u32) -> Result<Vec<u8>, String>,
    ) -> Option<(usize, BackendCompletion)> {
        let icount = icount.max(self.last_icount);
        self.load();
        match &self.next {
            Some(Entry {
                icount: at,
                event: Event::Completion { .. } | Event::ReadElided { .. },
                ..
            }) if *at == icount => {}
            _ => return None,
        }
        let done = match self.next.take() {
            Some(Entry {
                event: Event::Completion { slot, completion },
                ..
            }) => (usize::from(slot), completion),
            Some(Entry {
                event:
                    Event::ReadElided {
                        slot,
                        id,
                        len,
                        hash,
                    },
                ..
            }) => {
                let slot = usize::from(slot);
                let fail = |reason: String| ReplayError::ElidedRead {
                    icount,
                    slot,
                    id,
                    reason,
                };
                let data = match read(slot, id, len) {
                    Ok(data) => data,
                    Err(why) => {
                        self.error = Some(fail(why));
                        return None;
                    }
                };
                let found = hash_bytes(&data);
                if data.len() != len as usize || found != hash {
                    self.error = Some(fail(format!(
                        "the primary read {len} bytes with hash {hash:#018x}, this side read {} bytes with hash {found:#018x}",
                        data.len()
                    )));
                    return None;
                }
                (
                    slot,
                    BackendCompletion::Block {
                        id,
                        status: VIRTIO_BLK_S_OK,
                        data,
                    },
                )
            }
            _ => return None,
        };
        self.last_icount = icount;
        self.stats.entries += 1;
        self.consume();
        Some(done)
    }

    /// The completions due at `icount`, reading the data of each read that
    /// the log leaves out ([`Event::ReadElided`]) with `read(slot, id, len)`,
    /// which returns the bytes the request reads from this side's disk. Data
    /// that differs from what was recorded stops the replay with
    /// [`ReplayError::ElidedRead`].
    pub fn completions_reading(
        &mut self,
        icount: u64,
        read: &mut dyn FnMut(usize, u64, u32) -> Result<Vec<u8>, String>,
    ) -> Vec<(usize, BackendCompletion)> {
        let mut done = Vec::new();
        while let Some(c) = self.take_completion(icount, read) {
            done.push(c);
        }
        done
    }

    /// The error that stopped the replay, if any.
    pub fn error(&self) -> Option<&ReplayError> {
        self.error.as_ref()
    }

    /// Takes the error that stopped the replay.
    pub fn take_error(&mut self) -> Option<ReplayError> {
        self.error.take()
    }

    /// What the replay went through so far.
    pub fn stats(&self) -> ReplayStats {
        self.stats
    }

    /// Compares a digest of the replaying machine with the recorded one.
    pub fn check_digest(&mut self, icount: u64, digest: Digest) {
        let recorded = self.expect(icount, "took a state digest", |e| match e {
            Event::Digest { digest } => Some(Digest::from_bytes(*digest)),
            _ => None,
        });
        if let Some(recorded) = recorded {
            self.stats.digests_checked += 1;
            if recorded != digest {
                self.error = Some(ReplayError::DigestMismatch {
                    icount,
                    parts: recorded.differences(&digest).join(", "),
                });
            }
        }
    }

    /// Checks the recorded end of the run.
    pub fn check_end(&mut self, icount: u64, status: EndStatus) {
        let recorded = self.expect(icount, "ended the run", |e| match e {
            Event::End { status } => Some(*status),
            _ => None,
        });
        if let Some(recorded) = recorded {
            if recorded != status {
                self.error = Some(ReplayError::Diverged {
                    icount,
                    wanted: format!("ended the run with {status:?}"),
                    found: format!("an end with {recorded:?}"),
                });
            }
        }
    }

    /// True when every entry of the log has been consumed and nothing went
    /// wrong: the log ended cleanly after a complete frame (an FT backup
    /// whose primary is gone goes live from exactly here). Reads the next
    /// entry to know, which on a stream waits until it comes or the stream ends.
    pub fn exhausted(&mut self) -> bool {
        self.load();
        self.next.is_none() && self.error.is_none()
    }

    /// True when the log holds the end of the run next (a recording that
    /// the user stopped, or one cut short, ends here).
    pub fn at_end(&mut self) -> bool {
        self.load();
        matches!(
            self.next,
            Some(Entry {
                event: Event::End { .. },
                ..
            })
        )
    }

    /// The recorded end status, if the log's next entry is the end.
    pub fn recorded_end(&mut self) -> Option<EndStatus> {
        self.load();
        match &self.next {
            Some(Entry {
                event: Event::End { status },
                ..
            }) => Some(*status),
            _ => None,
        }
    }
}

impl<R: BufRead> Environment for Replayer<R> {
    fn now(&mut self, icount: u64) -> u64 {
        self.expect(icount, "read the time", |e| match e {
            Event::Now { mtime } => Some(*mtime),
            _ => None,
        })
        .unwrap_or(0)
    }

    fn idle(&mut self, icount: u64, now: u64, _deadline: Option<u64>) -> Option<u64> {
        if self.error.is_some() {
            return None;
        }
        self.expect(icount, "went idle", |e| match e {
            Event::Idle { woke_at } => Some(*woke_at),
            _ => None,
        })
        .unwrap_or(Some(now))
    }

    fn console_input(&mut self, icount: u64, _max: usize) -> Vec<u8> {
        self.take(icount, |e| match e {
            Event::ConsoleInput { bytes } => Some(bytes.clone()),
            _ => None,
        })
        .unwrap_or_default()
    }

    fn wall_clock_base_ns(&mut self) -> u64 {
        self.expect(self.last_icount, "read the wall clock", |e| match e {
            Event::WallClock { ns } => Some(*ns),
            _ => None,
        })
        .unwrap_or(0)
    }

    fn rng_seed(&mut self) -> [u8; 32] {
        self.expect(self.last_icount, "read the rng seed", |e| match e {
            Event::RngSeed { seed } => Some(*seed),
            _ => None,
        })
        .unwrap_or([0; 32])
    }

    fn submit(&mut self, icount: u64, slot: usize, request: BackendRequest) {
        self.check_submit(icount, slot, &request);
    }

    fn completions(&mut self, icount: u64) -> Vec<(usize, BackendCompletion)> {
        self.completions_reading(icount, &mut |_, _, _| {
            Err(
                "the log leaves the data of this read out (it was recorded by an FT primary \
                 with --backup-reads), and a replay from the log alone cannot read it"
                    .to_string(),
            )
        })
    }
}

/// The end of a run, as logged.
pub fn end_status(step: Step) -> EndStatus {
    match step {
        Step::PowerOff(status) => EndStatus::PowerOff(status),
        Step::Stuck => EndStatus::Stuck,
        Step::Reboot => EndStatus::Reboot,
        Step::Running => EndStatus::Stopped,
    }
}

/// Where a digest belongs in the loop: after any step that crossed a
/// multiple of [`DIGEST_INTERVAL`].
pub fn digest_due(before: u64, after: u64) -> bool {
    before / DIGEST_INTERVAL != after / DIGEST_INTERVAL
}

/// Steps `machine` once while recording, logging a digest when one is due.
pub fn record_step<W: Write>(
    machine: &mut Machine,
    recorder: &mut Recorder<'_, W>,
) -> Result<Step, crate::ConfigError> {
    let before = machine.icount();
    let step = machine.step(recorder)?;
    if digest_due(before, machine.icount()) {
        let d = machine.digest();
        recorder.put(
            machine.icount(),
            Event::Digest {
                digest: d.to_bytes(),
            },
        );
    }
    Ok(step)
}

/// Logs the end of a recorded run.
///
/// A run that ended by itself (power-off, or stuck) also gets a final digest,
/// so that a divergence after the last periodic digest is still detected. A
/// run the user stopped gets none: its replay ends before that point.
pub fn record_end<W: Write>(machine: &mut Machine, recorder: &mut Recorder<'_, W>, step: Step) {
    if matches!(step, Step::PowerOff(_) | Step::Stuck) {
        let d = machine.digest();
        recorder.put(
            machine.icount(),
            Event::Digest {
                digest: d.to_bytes(),
            },
        );
    }
    recorder.put(
        machine.icount(),
        Event::End {
            status: end_status(step),
        },
    );
}

/// Checks the end of a replayed run that ended by itself: the final digest
/// (see [`record_end`]), then the recorded end status.
pub fn replay_end<R: BufRead>(machine: &mut Machine, replayer: &mut Replayer<R>, step: Step) {
    if replayer.error().is_none() {
        let d = machine.digest();
        replayer.check_digest(machine.icount(), d);
    }
    if replayer.error().is_none() {
        replayer.check_end(machine.icount(), end_status(step));
    }
}

/// Steps `machine` once while replaying, checking a digest when one is due.
pub fn replay_step<R: BufRead>(
    machine: &mut Machine,
    replayer: &mut Replayer<R>,
) -> Result<Step, crate::ConfigError> {
    let before = machine.icount();
    let step = machine.step(replayer)?;
    if replayer.error().is_none() && digest_due(before, machine.icount()) {
        let d = machine.digest();
        replayer.check_digest(machine.icount(), d);
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftvm_devices::BlockOp;
    use ftvm_replay::{decode_all, BlockOpRecord, Header};

    /// A host that remembers what was submitted and answers each block request at once.
    #[derive(Default)]
    struct Host {
        submitted: Vec<(usize, BackendRequest)>,
        done: Vec<(usize, BackendCompletion)>,
    }

    impl Environment for Host {
        fn now(&mut self, _icount: u64) -> u64 {
            0
        }
        fn idle(&mut self, _icount: u64, now: u64, _deadline: Option<u64>) -> Option<u64> {
            Some(now)
        }
        fn console_input(&mut self, _icount: u64, _max: usize) -> Vec<u8> {
            Vec::new()
        }
        fn wall_clock_base_ns(&mut self) -> u64 {
            0
        }
        fn rng_seed(&mut self) -> [u8; 32] {
            [0; 32]
        }
        fn submit(&mut self, _icount: u64, slot: usize, request: BackendRequest) {
            if let BackendRequest::Block { id, .. } = &request {
                self.done.push((
                    slot,
                    BackendCompletion::Block {
                        id: *id,
                        status: 0,
                        data: vec![0x5A; 512],
                    },
                ));
            }
            self.submitted.push((slot, request));
        }
        fn completions(&mut self, _icount: u64) -> Vec<(usize, BackendCompletion)> {
            std::mem::take(&mut self.done)
        }
    }

    /// What [`Host`] answers request 3 in slot 0 with.
    fn answer() -> Vec<(usize, BackendCompletion)> {
        vec![(
            0,
            BackendCompletion::Block {
                id: 3,
                status: 0,
                data: vec![0x5A; 512],
            },
        )]
    }

    fn write(data: Vec<u8>) -> BackendRequest {
        BackendRequest::Block {
            id: 3,
            op: BlockOp::Write { sector: 8, data },
        }
    }

    /// Records `write(data)` in slot 0 at icount 100 and its completion at 200.
    fn recorded(data: Vec<u8>) -> (Host, Vec<u8>) {
        let mut host = Host::default();
        let log = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("header");
        let mut recorder = Recorder::new(&mut host, log);
        recorder.submit(100, 0, write(data));
        let done = recorder.completions(200);
        assert_eq!(done.len(), 1);
        let log = recorder.finish().expect("log").into_inner();
        (host, log)
    }

    fn replayer(log: &[u8]) -> Replayer<&[u8]> {
        let (reader, _) = LogReader::new(log).expect("header");
        Replayer::new(reader)
    }

    #[test]
    fn test_recorder_logs_a_record_of_the_write_and_hands_the_write_on() {
        let (host, log) = recorded(vec![0xAB; 4096]);

        let (_, entries) = decode_all(&log).expect("log");

        assert_eq!(host.submitted, vec![(0, write(vec![0xAB; 4096]))]);
        assert_eq!(
            entries[0].event,
            Event::Submit {
                slot: 0,
                request: SubmitRecord::Block {
                    id: 3,
                    op: BlockOpRecord::Write {
                        sector: 8,
                        len: 4096,
                        hash: ftvm_replay::hash_bytes(&[0xAB; 4096]),
                    },
                },
            }
        );
        // The 512-byte completion is in the log; the 4096 bytes written are not.
        assert!(log.len() < 1024, "{} bytes", log.len());
    }

    /// Records a read in slot 0 (request 3) at icount 100 and its completion
    /// (512 bytes of 0x5A) at 200, with read data left out of the log.
    fn recorded_elided_read() -> Vec<u8> {
        let mut host = Host::default();
        let log = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("header");
        let mut recorder = Recorder::new(&mut host, log);
        recorder.elide_read_data();
        let read = BackendRequest::Block {
            id: 3,
            op: BlockOp::Read {
                sector: 8,
                len: 512,
            },
        };
        recorder.submit(100, 0, read);
        let done = recorder.completions(200);
        assert_eq!(done, answer(), "the machine still gets the data");
        recorder.finish().expect("log").into_inner()
    }

    #[test]
    fn test_recorder_eliding_reads_logs_length_and_hash_instead_of_the_data() {
        let log = recorded_elided_read();

        let (_, entries) = decode_all(&log).expect("log");

        assert_eq!(
            (entries[1].icount, &entries[1].event),
            (
                200,
                &Event::ReadElided {
                    slot: 0,
                    id: 3,
                    len: 512,
                    hash: hash_bytes(&[0x5A; 512]),
                }
            )
        );
        assert!(log.len() < 200, "{} bytes", log.len());
    }

    #[test]
    fn test_a_read_in_flight_before_the_recording_keeps_its_data_in_the_log() {
        let mut host = Host {
            done: answer(),
            ..Host::default()
        };
        let log = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("header");
        let mut recorder = Recorder::new(&mut host, log);
        recorder.elide_read_data();

        // Request 3 was submitted before this recorder existed.
        let done = recorder.completions(200);
        let log = recorder.finish().expect("log").into_inner();
        let (_, entries) = decode_all(&log).expect("log");

        assert_eq!(done, answer());
        let (slot, completion) = done.into_iter().next().expect("a completion");
        assert_eq!(
            entries[0].event,
            Event::Completion {
                slot: slot as u8,
                completion
            }
        );
    }

    #[test]
    fn test_replayer_reads_an_elided_read_again_and_gives_the_completion_back() {
        let log = recorded_elided_read();
        let mut r = replayer(&log);
        let mut asked = Vec::new();
        r.take(100, |e| matches!(e, Event::Submit { .. }).then_some(()));

        let done = r.completions_reading(200, &mut |slot, id, len| {
            asked.push((slot, id, len));
            Ok(vec![0x5A; 512])
        });

        assert!(r.error().is_none(), "{:?}", r.error());
        assert_eq!(asked, vec![(0, 3, 512)]);
        assert_eq!(done, answer());
        assert!(r.exhausted());
    }

    #[test]
    fn test_replayer_reports_an_elided_read_that_reads_other_data() {
        let log = recorded_elided_read();
        let mut r = replayer(&log);
        r.take(100, |e| matches!(e, Event::Submit { .. }).then_some(()));

        let done = r.completions_reading(200, &mut |_, _, _| Ok(vec![0; 512]));

        assert!(done.is_empty());
        assert_eq!(
            r.error().expect("a divergence").to_string(),
            format!(
                "replay diverged at icount 200: disk read 3 in slot 0: the primary read 512 \
                 bytes with hash {:#018x}, this side read 512 bytes with hash {:#018x}",
                hash_bytes(&[0x5A; 512]),
                hash_bytes(&[0; 512]),
            )
        );
    }

    #[test]
    fn test_replay_from_the_log_alone_refuses_an_elided_read_by_name() {
        let log = recorded_elided_read();
        let mut r = replayer(&log);
        r.take(100, |e| matches!(e, Event::Submit { .. }).then_some(()));

        let done = r.completions(200);

        assert!(done.is_empty());
        let message = r.error().expect("an error").to_string();
        assert!(
            message.starts_with("replay diverged at icount 200: disk read 3 in slot 0: ")
                && message.contains("--backup-reads"),
            "{message}"
        );
    }

    #[test]
    fn test_replayer_accepts_the_same_write_and_gives_the_completion_back() {
        let (_, log) = recorded(vec![0xAB; 4096]);
        let mut r = replayer(&log);

        r.check_submit(100, 0, &write(vec![0xAB; 4096]));
        let done = r.completions(200);

        assert!(r.error().is_none(), "{:?}", r.error());
        assert_eq!((r.stats().outputs_checked, done), (1, answer()));
        assert!(r.exhausted());
    }

    #[test]
    fn test_replayer_reports_a_write_of_other_data_naming_both() {
        let (_, log) = recorded(vec![0xAB; 4096]);
        let mut r = replayer(&log);
        let mut other = vec![0xAB; 4096];
        other[4095] = 0;

        r.check_submit(100, 0, &write(other.clone()));

        let message = r.error().expect("a divergence").to_string();
        assert_eq!(
            message,
            format!(
                "replay diverged at icount 100: the machine sent a disk write of 4096 bytes at \
                 sector 8 (request 3, data hash {:#018x}) to slot 0, but the log has a disk \
                 write of 4096 bytes at sector 8 (request 3, data hash {:#018x}) sent to slot 0",
                ftvm_replay::hash_bytes(&other),
                ftvm_replay::hash_bytes(&[0xAB; 4096]),
            )
        );
    }

    #[test]
    fn test_replayer_reports_a_request_where_the_log_has_something_else() {
        let (_, log) = recorded(vec![0xAB; 4096]);
        let mut r = replayer(&log);

        r.check_submit(
            100,
            1,
            &BackendRequest::NetTx {
                frame: vec![1, 2, 3],
            },
        );

        let message = r.error().expect("a divergence").to_string();
        assert_eq!(
            message,
            format!(
                "replay diverged at icount 100: the machine sent a network frame of 3 bytes \
                 (hash {:#018x}) to slot 1, but the log has a disk write of 4096 bytes at \
                 sector 8 (request 3, data hash {:#018x}) sent to slot 0",
                ftvm_replay::hash_bytes(&[1, 2, 3]),
                ftvm_replay::hash_bytes(&[0xAB; 4096]),
            )
        );
    }

    #[test]
    fn test_replayer_reports_a_request_the_log_does_not_have_yet() {
        let (_, log) = recorded(vec![0xAB; 4096]);
        let mut r = replayer(&log);

        r.check_submit(50, 2, &BackendRequest::Entropy { id: 1, len: 16 });

        let message = r.error().expect("a divergence").to_string();
        assert!(
            message.starts_with(
                "replay diverged at icount 50: the machine sent an entropy request for 16 \
                 bytes (request 1) to slot 2, but the log has a disk write of 4096 bytes"
            ),
            "{message}"
        );
        assert!(message.ends_with("at icount 100 (entry 0)"), "{message}");
    }
}
