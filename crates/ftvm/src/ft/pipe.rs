//! The two ends of the logging channel's buffers (DESIGN.md §3: "a large
//! buffer on each side; if the primary's buffer is full the primary's vCPU
//! waits; if the backup's is empty it waits").
//!
//! [`LogPipe`] is the primary's: the recorder writes the log into it (the
//! header, then one whole frame per write) and a sender thread drains it into
//! the TCP stream. [`Inbound`] is the backup's: a receiver thread puts whole
//! frames into it as they arrive and the replayer reads them out.

use super::lock;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes of a log frame besides its payload (see `ftvm_replay`'s layout).
pub const FRAME_OVERHEAD: usize = 25;

#[derive(Default)]
struct PipeState {
    buf: Vec<u8>,
    /// A sent buffer handed back by the sender ([`LogPipe::recycle`]), which
    /// becomes `buf` at the next [`LogPipe::take`]: the two buffers keep
    /// their memory, so a busy log (disk read data) does not grow a fresh
    /// buffer page by page every few milliseconds.
    spare: Vec<u8>,
    header_written: bool,
    /// Frames written so far.
    entries: u64,
    /// Bytes written so far, header included.
    bytes: u64,
    flush: bool,
    /// The channel broke: data is dropped from now on, never waited for.
    broken: bool,
    /// The writer is done (End written, or the pair ended).
    closed: bool,
    /// When the sender last took data.
    taken_at: Option<Instant>,
    /// Frames written when the sender last took data.
    taken_entries: u64,
    /// Frames the backup has acknowledged receiving.
    acked: u64,
}

/// The primary's outbound log buffer.
pub struct LogPipe {
    state: Mutex<PipeState>,
    cond: Condvar,
    capacity: usize,
    flush_gap: Duration,
}

impl LogPipe {
    /// A buffer holding at most `capacity` bytes not yet sent. A flush
    /// request is sent at once if the backup has acknowledged every frame
    /// sent before; otherwise when it has, or `flush_gap` after the previous
    /// send, whichever comes first. Outputs produced while a send is on its
    /// way leave together in the next (one wake-up of each thread on the way
    /// to the backup and back), and an output waits at most for one round
    /// trip before its log is sent.
    pub fn new(capacity: usize, flush_gap: Duration) -> Arc<LogPipe> {
        Arc::new(LogPipe {
            state: Mutex::new(PipeState::default()),
            cond: Condvar::new(),
            capacity: capacity.max(64 * 1024),
            flush_gap,
        })
    }

    /// Log entries written so far: the tag of an output produced now.
    pub fn entries(&self) -> u64 {
        lock(&self.state).entries
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// Asks the sender to send what is buffered now.
    pub fn flush(&self) {
        let mut s = lock(&self.state);
        // Once asked, the sender knows when to send: outputs that follow
        // within the gap do not wake it again.
        if !s.buf.is_empty() && !s.flush {
            s.flush = true;
            // Woken with the lock still held, the sender would run (on the
            // vCPU's core, taking it) only to block on the lock, and need
            // a second wake-up when it is released.
            drop(s);
            self.cond.notify_all();
        }
    }

    /// The backup has acknowledged receiving `upto` frames: a flush request
    /// waiting for that goes now.
    pub fn acknowledged(&self, upto: u64) {
        let mut s = lock(&self.state);
        if upto <= s.acked {
            return;
        }
        s.acked = upto;
        let wake = s.flush && s.acked >= s.taken_entries;
        drop(s);
        if wake {
            self.cond.notify_all();
        }
    }

    /// Whether a flush was asked for and the sender has not taken it yet.
    #[cfg(test)]
    pub fn flush_requested(&self) -> bool {
        lock(&self.state).flush
    }

    /// The channel is gone: drop buffered and future data, never block.
    pub fn break_channel(&self) {
        let mut s = lock(&self.state);
        s.broken = true;
        s.buf = Vec::new();
        s.spare = Vec::new();
        self.cond.notify_all();
    }

    /// No more data will come.
    pub fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        s.flush = true;
        self.cond.notify_all();
    }

    /// Sender side: waits for data to send (at most `max_wait` without a
    /// flush request), and takes it. `None` once closed and drained, or broken.
    pub fn take(&self, max_wait: Duration) -> Option<Vec<u8>> {
        let mut s = lock(&self.state);
        loop {
            if s.broken {
                return None;
            }
            let mut wait = max_wait;
            if !s.buf.is_empty() {
                let urgent = s.closed || s.buf.len() >= self.capacity / 4;
                // A flush request waits while the last send is not
                // acknowledged, at most for the gap after it.
                let early = match s.taken_at {
                    Some(at) if s.flush && !urgent && s.acked < s.taken_entries => {
                        self.flush_gap.saturating_sub(at.elapsed())
                    }
                    _ => Duration::ZERO,
                };
                if urgent || (s.flush && early.is_zero()) {
                    s.flush = false;
                    s.taken_at = Some(Instant::now());
                    s.taken_entries = s.entries;
                    let spare = std::mem::take(&mut s.spare);
                    let out = std::mem::replace(&mut s.buf, spare);
                    self.cond.notify_all();
                    return Some(out);
                }
                if s.flush {
                    wait = early;
                }
            }
            if s.closed && s.buf.is_empty() {
                return None;
            }
            let (next, timeout) = self
                .cond
                .wait_timeout(s, wait)
                .unwrap_or_else(|poison| poison.into_inner());
            s = next;
            if timeout.timed_out() && !s.buf.is_empty() {
                s.flush = true;
            }
        }
    }

    /// Sender side: hands back a buffer [`take`](Self::take) returned, once
    /// sent, for reuse.
    pub fn recycle(&self, mut sent: Vec<u8>) {
        sent.clear();
        let mut s = lock(&self.state);
        if !s.broken && sent.capacity() > s.spare.capacity() {
            s.spare = sent;
        }
    }

    /// A writer for the recorder.
    pub fn writer(self: &Arc<Self>) -> PipeWriter {
        PipeWriter(self.clone())
    }
}

/// The recorder's end of a [`LogPipe`].
pub struct PipeWriter(Arc<LogPipe>);

impl PipeWriter {
    /// Appends one frame (or the header), given as consecutive parts.
    fn put(&mut self, parts: &[&[u8]]) -> io::Result<usize> {
        let pipe = &self.0;
        let total: usize = parts.iter().map(|part| part.len()).sum();
        let mut s = lock(&pipe.state);
        if s.header_written {
            // The log writer hands over exactly one whole frame per write;
            // the output rule counts entries by it.
            let mut len = [0u8; 4];
            let mut got = 0;
            for part in parts {
                let n = part.len().min(4 - got);
                len[got..got + n].copy_from_slice(&part[..n]);
                got += n;
            }
            let whole = got == 4 && total == FRAME_OVERHEAD + u32::from_le_bytes(len) as usize;
            if !whole {
                return Err(io::Error::other(
                    "the log pipe takes one whole frame per write",
                ));
            }
        }
        // The vCPU waits while the buffer is full.
        while !s.broken && !s.buf.is_empty() && s.buf.len() + total > pipe.capacity {
            s.flush = true;
            pipe.cond.notify_all();
            s = pipe
                .cond
                .wait(s)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        if !s.broken {
            for part in parts {
                s.buf.extend_from_slice(part);
            }
        }
        if s.header_written {
            s.entries += 1;
        }
        s.header_written = true;
        s.bytes += total as u64;
        Ok(total)
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.put(&[data])
    }

    /// Takes the slices as one frame: the log writer passes a large
    /// completion's data as a slice of its own (`ftvm_replay::BORROWED_DATA`),
    /// and this is where it is copied, once.
    fn write_vectored(&mut self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let parts: Vec<&[u8]> = slices.iter().map(|slice| &**slice).collect();
        self.put(&parts)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush();
        Ok(())
    }
}

/// Receive buffers are at least this large.
const RECEIVE_BUFFER: usize = 256 * 1024;

/// A batch of whole frames at least this long is handed to [`Inbound`] in
/// the receive buffer it arrived in; a shorter one is copied, so that a
/// trickle of small frames does not tie up a receive buffer each.
const HAND_OVER_FROM: usize = 64 * 1024;

/// Bytes of the log as [`split_frames`] passes them on.
pub enum Batch<'a> {
    /// Bytes to copy.
    Copy(&'a [u8]),
    /// The first `len` bytes of a receive buffer, handed over.
    Owned(Vec<u8>, usize),
}

impl Batch<'_> {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Batch::Copy(bytes) => bytes,
            Batch::Owned(buf, len) => &buf[..*len],
        }
    }
}

/// Bytes `at..end` of `buf` not yet replayed.
struct Chunk {
    buf: Vec<u8>,
    at: usize,
    end: usize,
}

#[derive(Default)]
struct InboundState {
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks` not yet replayed.
    queued: usize,
    /// Buffers the replayer is done with, for the receiver: reused, they
    /// cost no page faults. At most the capacity in bytes.
    spare: Vec<Vec<u8>>,
    spare_bytes: usize,
    /// Whole frames received.
    entries: u64,
    bytes: u64,
    /// Time the replayer waited for data.
    waited: Duration,
    /// No more data will come.
    ended: bool,
    /// Stop: the reader fails with this.
    failed: Option<String>,
}

impl InboundState {
    fn recycle(&mut self, buf: Vec<u8>, capacity: usize) {
        if self.spare_bytes + buf.len() <= capacity {
            self.spare_bytes += buf.len();
            self.spare.push(buf);
        }
    }

    fn spare(&mut self) -> Vec<u8> {
        let buf = self.spare.pop().unwrap_or_default();
        self.spare_bytes -= buf.len();
        buf
    }
}

/// The backup's inbound log buffer: a queue of received buffers of whole
/// frames, which the replayer reads where they lie (it is a `BufRead`).
pub struct Inbound {
    state: Mutex<InboundState>,
    cond: Condvar,
    capacity: usize,
}

impl Inbound {
    /// A buffer holding at most `capacity` bytes not yet replayed.
    pub fn new(capacity: usize) -> Arc<Inbound> {
        Arc::new(Inbound {
            state: Mutex::new(InboundState::default()),
            cond: Condvar::new(),
            capacity: capacity.max(64 * 1024),
        })
    }

    /// Receiver side: a buffer to receive into (one the replayer is done
    /// with, if any; its bytes are stale).
    pub fn buffer(&self) -> Vec<u8> {
        lock(&self.state).spare()
    }

    /// Receiver side: appends bytes holding `frames` whole frames (or the
    /// header, with `frames` 0), waiting while the buffer is full. Returns
    /// the number of frames received in total.
    pub fn push(&self, batch: Batch<'_>, frames: u64) -> u64 {
        let len = batch.bytes().len();
        let mut s = lock(&self.state);
        while s.failed.is_none() && s.queued > 0 && s.queued + len > self.capacity {
            s = self
                .cond
                .wait(s)
                .unwrap_or_else(|poison| poison.into_inner());
        }
        match batch {
            Batch::Owned(buf, len) => s.chunks.push_back(Chunk {
                buf,
                at: 0,
                end: len,
            }),
            Batch::Copy(bytes) => {
                let fits = s
                    .chunks
                    .back()
                    .is_some_and(|last| last.buf.len() - last.end >= bytes.len());
                if !fits {
                    let mut buf = s.spare();
                    if buf.len() < bytes.len().max(RECEIVE_BUFFER) {
                        buf.resize(bytes.len().max(RECEIVE_BUFFER), 0);
                    }
                    s.chunks.push_back(Chunk { buf, at: 0, end: 0 });
                }
                if let Some(last) = s.chunks.back_mut() {
                    last.buf[last.end..last.end + bytes.len()].copy_from_slice(bytes);
                    last.end += bytes.len();
                }
            }
        }
        s.queued += len;
        s.entries += frames;
        s.bytes += len as u64;
        let entries = s.entries;
        // Not under the lock: the replayer would wake only to wait for it.
        drop(s);
        self.cond.notify_all();
        entries
    }

    /// Bytes received.
    pub fn bytes(&self) -> u64 {
        lock(&self.state).bytes
    }

    /// Total time the replayer waited for data (it had replayed everything
    /// received).
    pub fn waited(&self) -> Duration {
        lock(&self.state).waited
    }

    /// No more data will come (the backup goes live, or the log ended).
    pub fn end(&self) {
        let mut s = lock(&self.state);
        s.ended = true;
        self.cond.notify_all();
    }

    /// Makes the reader fail (the backup halts).
    pub fn fail(&self, why: String) {
        let mut s = lock(&self.state);
        s.failed = Some(why);
        self.cond.notify_all();
    }

    /// A reader for the replayer.
    pub fn reader(self: &Arc<Self>) -> InboundReader {
        InboundReader {
            inbound: self.clone(),
            current: None,
        }
    }
}

/// The replayer's end of an [`Inbound`]: it holds the received buffer being
/// replayed.
pub struct InboundReader {
    inbound: Arc<Inbound>,
    current: Option<Chunk>,
}

impl InboundReader {
    /// Replaces the finished current buffer with the next received one,
    /// waiting for it. `false` when no more will come.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let inbound = &self.inbound;
        let mut s = lock(&inbound.state);
        if let Some(done) = self.current.take() {
            s.recycle(done.buf, inbound.capacity);
        }
        loop {
            if let Some(why) = &s.failed {
                return Err(io::Error::other(why.clone()));
            }
            if let Some(chunk) = s.chunks.pop_front() {
                s.queued -= chunk.end - chunk.at;
                drop(s);
                inbound.cond.notify_all();
                self.current = Some(chunk);
                return Ok(true);
            }
            if s.ended {
                return Ok(false);
            }
            let started = std::time::Instant::now();
            s = inbound
                .cond
                .wait(s)
                .unwrap_or_else(|poison| poison.into_inner());
            s.waited += started.elapsed();
        }
    }
}

impl BufRead for InboundReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let has_data = self.current.as_ref().is_some_and(|c| c.at < c.end);
        if !has_data && !self.next_chunk()? {
            return Ok(&[]);
        }
        Ok(match &self.current {
            Some(c) => &c.buf[c.at..c.end],
            None => &[],
        })
    }

    fn consume(&mut self, n: usize) {
        if let Some(c) = &mut self.current {
            c.at = (c.at + n).min(c.end);
        }
    }
}

impl Read for InboundReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let data = self.fill_buf()?;
        let n = out.len().min(data.len());
        out[..n].copy_from_slice(&data[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Kind byte of the log's `End` event (see `ftvm_replay`'s layout).
const KIND_END: u8 = 9;

/// Reads the log from a stream and splits it at frame boundaries: calls
/// `on_data(batch, frames)` with the header first, then with batches of
/// whole frames; a batch of at least [`HAND_OVER_FROM`] bytes is handed over
/// in its receive buffer, and the receiver goes on in a buffer from
/// `buffers`. Returns when the stream ends — `Ok(true)` if its last frame
/// was the run's end, `Ok(false)` if it stopped before — or fails.
pub fn split_frames(
    stream: &mut dyn Read,
    buffers: &mut dyn FnMut() -> Vec<u8>,
    on_data: &mut dyn FnMut(Batch<'_>, u64),
) -> io::Result<bool> {
    // Header: magic 8, version 2, config_len 4, config, crc 4.
    let mut head = [0u8; 14];
    stream.read_exact(&mut head)?;
    let config_len = u32::from_le_bytes([head[10], head[11], head[12], head[13]]) as usize;
    if config_len > 16 << 20 {
        return Err(io::Error::other(format!(
            "the log header announces a {config_len}-byte configuration record"
        )));
    }
    let mut header = head.to_vec();
    header.resize(14 + config_len + 4, 0);
    stream.read_exact(&mut header[14..])?;
    on_data(Batch::Copy(&header), 0);

    let mut buf = buffers();
    if buf.len() < RECEIVE_BUFFER {
        buf.resize(RECEIVE_BUFFER, 0);
    }
    let mut have = 0usize;
    let mut ended = false;
    loop {
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return if have == 0 {
                Ok(ended)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the log stream ended inside a frame",
                ))
            };
        }
        have += n;
        // Whole frames at the front.
        let mut at = 0;
        let mut frames = 0;
        while have - at >= 4 {
            let len = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
            if len > ftvm_replay::MAX_FRAME_LEN as usize {
                return Err(io::Error::other(format!(
                    "a log frame announces {len} payload bytes, more than the format allows"
                )));
            }
            let total = FRAME_OVERHEAD + len;
            if have - at < total {
                if total > buf.len() {
                    buf.resize(total, 0);
                }
                break;
            }
            // Frame: len 4, seq 8, icount 8, kind 1, ...
            ended = buf[at + 20] == KIND_END;
            at += total;
            frames += 1;
        }
        if frames == 0 {
            continue;
        }
        let rest = have - at;
        if at < HAND_OVER_FROM {
            on_data(Batch::Copy(&buf[..at]), frames);
            buf.copy_within(at..have, 0);
        } else {
            // As large as this one, which holds the frame begun at `at`.
            let mut next = buffers();
            if next.len() < buf.len() {
                next.resize(buf.len(), 0);
            }
            next[..rest].copy_from_slice(&buf[at..have]);
            on_data(Batch::Owned(std::mem::replace(&mut buf, next), at), frames);
        }
        have = rest;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftvm_devices::virtio::BackendCompletion;
    use ftvm_replay::{Event, Header, LogReader, LogWriter};

    #[test]
    fn test_pipe_counts_frames_and_a_split_stream_reads_back() {
        let pipe = LogPipe::new(1 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(b"cfg".to_vec())).expect("header");
        for i in 0..100 {
            log.write(i, &Event::Now { mtime: i * 3 }).expect("frame");
        }
        pipe.close();
        let mut bytes = Vec::new();
        while let Some(chunk) = pipe.take(Duration::from_millis(1)) {
            bytes.extend(chunk);
        }

        let inbound = Inbound::new(1 << 20);
        let ended = split_frames(&mut &bytes[..], &mut || inbound.buffer(), &mut |b, f| {
            inbound.push(b, f);
        })
        .expect("splits");
        assert!(!ended, "no End frame was written");
        inbound.end();
        let (mut reader, header) = LogReader::new(inbound.reader()).expect("header");
        let mut n = 0;
        while let Some(e) = reader.next().expect("entry") {
            assert_eq!(e.event, Event::Now { mtime: n * 3 });
            n += 1;
        }

        assert_eq!((pipe.entries(), n), (100, 100));
        assert_eq!(header.config, b"cfg".to_vec());
    }

    #[test]
    fn test_a_large_completion_given_in_slices_is_one_entry_and_reads_back() {
        let pipe = LogPipe::new(1 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(b"cfg".to_vec())).expect("header");
        let completion = BackendCompletion::Block {
            id: 4,
            status: 0,
            data: (0..3 * ftvm_replay::BORROWED_DATA)
                .map(|i| (i * 7) as u8)
                .collect(),
        };
        log.write_completion(5, 1, &completion).expect("written");
        log.write(6, &Event::Now { mtime: 2 }).expect("written");
        pipe.close();
        let bytes = pipe.take(Duration::ZERO).expect("data");
        let (_, entries) = ftvm_replay::decode_all(&bytes).expect("a whole log");

        assert_eq!(
            (
                pipe.entries(),
                entries.into_iter().map(|e| e.event).collect::<Vec<_>>()
            ),
            (
                2,
                vec![
                    Event::Completion {
                        slot: 1,
                        completion
                    },
                    Event::Now { mtime: 2 }
                ]
            )
        );
    }

    #[test]
    fn test_stream_ending_with_the_end_frame_says_so() {
        let pipe = LogPipe::new(1 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        log.write(1, &Event::Now { mtime: 1 }).expect("frame");
        log.write(
            2,
            &Event::End {
                status: ftvm_replay::EndStatus::PowerOff(0),
            },
        )
        .expect("frame");
        pipe.close();
        let mut bytes = Vec::new();
        while let Some(chunk) = pipe.take(Duration::from_millis(1)) {
            bytes.extend(chunk);
        }

        let ended = split_frames(&mut &bytes[..], &mut Vec::new, &mut |_, _| {});

        assert!(ended.expect("splits"));
    }

    #[test]
    fn test_stream_cut_inside_a_frame_is_an_error_after_the_whole_ones() {
        let pipe = LogPipe::new(1 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        log.write(1, &Event::Now { mtime: 1 }).expect("frame");
        log.write(2, &Event::Now { mtime: 2 }).expect("frame");
        pipe.close();
        let mut bytes = Vec::new();
        while let Some(chunk) = pipe.take(Duration::from_millis(1)) {
            bytes.extend(chunk);
        }
        bytes.truncate(bytes.len() - 3);
        let mut frames = 0;

        let result = split_frames(&mut &bytes[..], &mut Vec::new, &mut |_, f| frames += f);

        assert_eq!(frames, 1);
        assert!(result.is_err_and(|e| e.to_string().contains("inside a frame")));
    }

    #[test]
    fn test_full_pipe_blocks_the_writer_until_the_sender_drains() {
        let pipe = LogPipe::new(64 * 1024, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        let drained = pipe.clone();
        let sender = std::thread::spawn(move || {
            let mut total = 0;
            while let Some(chunk) = drained.take(Duration::from_millis(1)) {
                total += chunk.len();
            }
            total
        });
        let big = vec![7u8; 20_000];
        for i in 0..50 {
            log.write(i, &Event::ConsoleInput { bytes: big.clone() })
                .expect("frame");
        }
        let written = pipe.bytes();
        pipe.close();

        assert_eq!(sender.join().expect("sender") as u64, written);
    }

    #[test]
    fn test_recycled_buffers_take_turns_and_keep_their_memory() {
        let pipe = LogPipe::new(1 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        let mut taken = Vec::new();
        let mut sent = 0;
        // One big frame, then small ones: a buffer that comes back after the
        // big frame still has its room when it carries a small one.
        for (i, len) in [100_000, 10, 10, 10].into_iter().enumerate() {
            log.write(
                i as u64,
                &Event::ConsoleInput {
                    bytes: vec![7u8; len],
                },
            )
            .expect("frame");
            pipe.flush();
            let chunk = pipe.take(Duration::from_millis(1)).expect("data");
            sent += chunk.len() as u64;
            assert_eq!(sent, pipe.bytes());
            taken.push((chunk.len(), chunk.capacity()));
            pipe.recycle(chunk);
        }

        // One buffer is filled while the other is sent: the third take is the
        // first buffer again.
        let (len, capacity) = taken[2];
        assert!(
            len < 100 && capacity >= 100_000,
            "third buffer: {len} bytes in a capacity of {capacity}"
        );
    }

    fn frame_into(log: &mut LogWriter<PipeWriter>, i: u64, len: usize) {
        log.write(
            i,
            &Event::ConsoleInput {
                bytes: vec![7u8; len],
            },
        )
        .expect("frame");
    }

    #[test]
    fn test_flush_within_the_gap_waits_for_it_and_takes_what_came_meanwhile() {
        let gap = Duration::from_millis(200);
        let pipe = LogPipe::new(1 << 20, gap);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        frame_into(&mut log, 1, 10);
        pipe.flush();
        let first = pipe.take(Duration::from_secs(60)).expect("first frame");
        let sent_at = Instant::now();
        frame_into(&mut log, 2, 10);
        pipe.flush();
        frame_into(&mut log, 3, 10);
        pipe.flush();

        // The first frame is not acknowledged.
        let second = pipe.take(Duration::from_secs(60)).expect("frames");

        assert!(
            sent_at.elapsed() >= gap,
            "sent {:?} after the last send",
            sent_at.elapsed()
        );
        assert_eq!((first.len() + second.len()) as u64, pipe.bytes());
    }

    #[test]
    fn test_flush_goes_at_once_when_every_frame_sent_is_acknowledged() {
        let (pipe, mut log) = pipe_in_a_long_gap();
        pipe.acknowledged(1);
        frame_into(&mut log, 1, 20);
        pipe.flush();

        let len = next_take(&pipe);

        assert_eq!(len, Some(20 + 4 + FRAME_OVERHEAD));
    }

    #[test]
    fn test_flush_waiting_for_an_acknowledgement_goes_when_it_comes() {
        let (pipe, mut log) = pipe_in_a_long_gap();
        frame_into(&mut log, 1, 20);
        pipe.flush();
        let taken = spawn_take(&pipe);
        assert!(
            taken.recv_timeout(Duration::from_millis(100)).is_err(),
            "sent before the last send was acknowledged"
        );

        pipe.acknowledged(1);

        let len = taken
            .recv_timeout(Duration::from_secs(60))
            .expect("the acknowledgement did not release the flush");
        assert_eq!(len, Some(20 + 4 + FRAME_OVERHEAD));
    }

    /// A pipe whose flush gap is an hour, with its header and a frame
    /// already sent and not acknowledged, so the next flush request would
    /// wait out the gap.
    fn pipe_in_a_long_gap() -> (Arc<LogPipe>, LogWriter<PipeWriter>) {
        let pipe = LogPipe::new(1 << 20, Duration::from_secs(3600));
        let mut log = LogWriter::new(pipe.writer(), &Header::new(Vec::new())).expect("header");
        frame_into(&mut log, 0, 1);
        pipe.flush();
        pipe.take(Duration::from_secs(60)).expect("header");
        (pipe, log)
    }

    /// A sender thread taking the next chunk of `pipe`; its length comes on
    /// the channel returned.
    fn spawn_take(pipe: &Arc<LogPipe>) -> std::sync::mpsc::Receiver<Option<usize>> {
        let taker = pipe.clone();
        let (done, taken) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(taker.take(Duration::from_secs(3600)).map(|c| c.len()));
        });
        taken
    }

    /// The length of what the sender takes next, failing the test if the
    /// sender is still waiting after a minute.
    fn next_take(pipe: &Arc<LogPipe>) -> Option<usize> {
        spawn_take(pipe)
            .recv_timeout(Duration::from_secs(60))
            .expect("the sender waited out the hour-long gap")
    }

    #[test]
    fn test_a_quarter_full_pipe_is_sent_without_waiting_out_the_gap() {
        let (pipe, mut log) = pipe_in_a_long_gap();
        // A console-input payload is its 4-byte length and the bytes.
        frame_into(&mut log, 1, 300_000);

        let len = next_take(&pipe);

        assert_eq!(len, Some(300_000 + 4 + FRAME_OVERHEAD));
    }

    #[test]
    fn test_closing_sends_the_rest_without_waiting_out_the_gap() {
        let (pipe, mut log) = pipe_in_a_long_gap();
        frame_into(&mut log, 1, 10);
        pipe.flush();
        pipe.close();

        let rest = next_take(&pipe);

        assert_eq!(rest, Some(10 + 4 + FRAME_OVERHEAD));
        assert_eq!(next_take(&pipe), None);
    }

    /// A stream that returns at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.step).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn test_frames_split_across_reads_arrive_whole_and_in_order() {
        let pipe = LogPipe::new(64 << 20, Duration::ZERO);
        let mut log = LogWriter::new(pipe.writer(), &Header::new(b"cfg".to_vec())).expect("header");
        // Small frames (empty console input writes none), and frames larger
        // than the receive buffer.
        let sizes: Vec<usize> = (0..200)
            .map(|i| match i % 7 {
                0 => 300_000 + i,
                3 => 70_000,
                _ => i % 50,
            })
            .collect();
        for (i, &len) in sizes.iter().enumerate() {
            let bytes = (0..len).map(|b| (b + i) as u8).collect();
            log.write(i as u64, &Event::ConsoleInput { bytes })
                .expect("frame");
        }
        pipe.close();
        let mut bytes = Vec::new();
        while let Some(chunk) = pipe.take(Duration::from_millis(1)) {
            bytes.extend(chunk);
        }

        for step in [5, 4096, 200_000, usize::MAX] {
            let mut stream = Trickle { data: &bytes, step };
            // Through an inbound buffer, as on the backup: large batches are
            // handed over in their receive buffers, small ones copied.
            let inbound = Inbound::new(64 << 20);
            let mut frames = 0;
            let mut handed_over = 0;
            let ended = split_frames(&mut stream, &mut || inbound.buffer(), &mut |b, f| {
                handed_over += matches!(b, Batch::Owned(..)) as usize;
                frames += f;
                inbound.push(b, f);
            })
            .expect("splits");
            inbound.end();
            let mut received = Vec::new();
            inbound
                .reader()
                .read_to_end(&mut received)
                .expect("reads back");

            assert!(!ended, "no End frame was written");
            assert_eq!(frames, pipe.entries(), "step {step}");
            assert!(received == bytes, "step {step}: the bytes differ");
            assert!(handed_over > 0, "step {step}: no batch was handed over");
        }
    }

    #[test]
    fn test_replayed_receive_buffers_come_back_to_the_receiver_with_their_size() {
        let inbound = Inbound::new(1 << 20);
        let mut reader = inbound.reader();
        inbound.push(Batch::Owned(vec![1; 300_000], 200_000), 0);
        inbound.push(Batch::Copy(&[2; 10]), 0);
        inbound.end();
        let mut out = Vec::new();
        reader.read_to_end(&mut out).expect("reads");

        assert_eq!(
            (
                out.len(),
                out[199_999],
                out[200_000],
                inbound.buffer().len()
            ),
            (200_010, 1, 2, 300_000)
        );
    }

    #[test]
    fn test_inbound_reader_waits_for_data_and_ends_when_told() {
        let inbound = Inbound::new(1 << 16);
        let mut reader = inbound.reader();
        let feeder = inbound.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            feeder.push(Batch::Copy(b"abc"), 0);
            feeder.end();
        });
        let mut out = Vec::new();

        reader.read_to_end(&mut out).expect("reads");
        t.join().expect("feeder");

        assert_eq!(out, b"abc");
    }
}
