//! The transmission phase. Requests are sent by whichever thread finds them ready:
//! the submitter's (through the disk's kick, right after [`Disk::submit`]) or the
//! reader's (after a completion lets a waiting request start), with non-blocking
//! sends, so no thread hand-off stands between a guest's request and the server.
//! What the socket does not take at once is left to a writer thread, which also
//! delivers the completions of requests answered without the server. The reader
//! thread matches simple replies to requests by handle. Large reads and writes
//! travel as several requests ([`MAX_PIECE`]) and complete when the last piece is
//! answered.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::wire::{self, ExportInfo, Request};
use crate::backends::disk::{check, Gate, Ticket};
use crate::backends::{
    BackendError, Disk, DiskDone, DiskIoError, DiskOp, ExitCounter, ExitGuard, Notify,
};

/// Reads and writes longer than this go to the server as several requests of at
/// most this many bytes, sent back to back: the NBD protocol ("Block size
/// constraints") has clients keep requests within 32 MiB when the server states no
/// maximum, and `qemu-nbd` refuses larger ones. (Splitting guest-sized requests of
/// 1 MiB into 256 or 512 KiB pieces measured no faster with `qemu-nbd` and cost
/// more context switches; see `examples/nbd_read.rs`.)
pub(super) const MAX_PIECE: u32 = 32 << 20;

/// Bytes read from the socket at a time; larger data of a reply is read straight into
/// its buffer, so this mostly batches reply headers.
const READ_BUFFER: usize = 64 * 1024;

/// A disk request sent as one or more NBD requests and not yet fully answered.
struct Pending {
    id: u64,
    /// NBD requests not yet answered.
    left: usize,
    /// Total bytes of data a read returns (0 for anything else).
    read_len: usize,
    /// The first error among the answers so far.
    error: Option<DiskIoError>,
}

/// One NBD request sent and not yet answered: a piece of the disk request `seq`.
struct Piece {
    seq: u64,
    /// Where its bytes start within the disk request's data.
    at: usize,
    /// Bytes of data that follow a successful reply (reads only).
    read_len: u32,
}

#[derive(Default)]
struct Table {
    /// By sequence number of the disk request.
    pending: HashMap<u64, Pending>,
    /// By NBD handle.
    inflight: HashMap<u64, Piece>,
    next_handle: u64,
    /// Set once the stream is given up; every later request fails with it.
    broken: Option<DiskIoError>,
}

/// Bytes to send, in order.
enum Chunk {
    /// Request headers.
    Headers(Vec<u8>),
    /// Part of a write's data.
    Data(Arc<Vec<u8>>, Range<usize>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Headers(bytes) => bytes,
            Chunk::Data(data, range) => data.get(range.clone()).unwrap_or_default(),
        }
    }

    /// Drops the first `n` bytes (fewer than it holds).
    fn consume(&mut self, n: usize) {
        match self {
            Chunk::Headers(bytes) => drop(bytes.drain(..n)),
            Chunk::Data(_, range) => range.start += n,
        }
    }
}

/// A completion decided without the server, for the writer thread to deliver.
type Early = (u64, u64, Result<Vec<u8>, DiskIoError>);

#[derive(Default)]
struct Output {
    /// Accepted for sending but not yet written (the socket would have blocked).
    backlog: VecDeque<Chunk>,
    /// The writer thread is writing chunks taken from the backlog; nothing may be
    /// sent past them meanwhile.
    writing: bool,
    /// Completions for the writer thread to deliver.
    early: Vec<Early>,
    /// Why a non-blocking send failed, for the writer thread to break the connection.
    failed: Option<String>,
}

struct Connection {
    target: String,
    info: ExportInfo,
    gate: Arc<Gate>,
    notify: Notify<DiskDone>,
    table: Mutex<Table>,
    /// What is waiting to be sent or delivered by the writer thread.
    output: Mutex<Output>,
    /// Signals the writer thread that `output` or the queue changed.
    output_changed: Condvar,
    /// The socket: non-blocking sends from any thread, shutting down.
    socket: TcpStream,
}

pub(super) fn start(
    url: &str,
    stream: TcpStream,
    info: ExportInfo,
    notify: Notify<DiskDone>,
) -> Result<Disk, BackendError> {
    let clone_error = |source| BackendError::NbdConnect {
        url: url.to_owned(),
        source,
    };
    let reader_stream = stream.try_clone().map_err(clone_error)?;
    let socket = stream.try_clone().map_err(clone_error)?;
    let read_only = info.flags & wire::NBD_FLAG_READ_ONLY != 0;
    let gate = Arc::new(Gate::default());
    let conn = Arc::new(Connection {
        target: url.to_owned(),
        info,
        gate: gate.clone(),
        notify,
        table: Mutex::new(Table::default()),
        output: Mutex::new(Output::default()),
        output_changed: Condvar::new(),
        socket,
    });
    let exits = Arc::new(ExitCounter::default());
    let mut threads = Vec::with_capacity(2);
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        let exits = exits.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _guard = ExitGuard(exits);
                body();
            })
            .map_err(|source| BackendError::Thread {
                name: name.to_owned(),
                source,
            })
    };
    let force = {
        let conn = conn.clone();
        move || {
            let _ = conn.socket.shutdown(Shutdown::Both);
        }
    };
    let reader_conn = conn.clone();
    match spawn(
        "ftvm-nbd-reader",
        Box::new(move || reader_conn.read_replies(reader_stream)),
    ) {
        Ok(handle) => threads.push(handle),
        Err(err) => {
            force();
            return Err(err);
        }
    }
    let writer_conn = conn.clone();
    match spawn(
        "ftvm-nbd-writer",
        Box::new(move || writer_conn.write_backlog(stream)),
    ) {
        Ok(handle) => threads.push(handle),
        Err(err) => {
            force();
            drop(Disk::from_parts(
                info.size, read_only, gate, threads, exits, None, None,
            ));
            return Err(err);
        }
    }
    Ok(Disk::from_parts(
        info.size,
        read_only,
        gate,
        threads,
        exits,
        Some(Box::new(force)),
        Some(Box::new(move || conn.start_ready())),
    ))
}

impl Connection {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn output(&self) -> MutexGuard<'_, Output> {
        self.output.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn complete(&self, seq: u64, id: u64, result: Result<Vec<u8>, DiskIoError>) {
        self.gate.finish(seq);
        (self.notify)(DiskDone { id, result });
    }

    /// Gives the stream up: fails everything outstanding and everything to come.
    fn break_connection(&self, reason: String) {
        let (error, failed) = {
            let mut table = self.table();
            let error = table
                .broken
                .get_or_insert_with(|| DiskIoError::ConnectionLost {
                    target: self.target.clone(),
                    reason,
                })
                .clone();
            table.inflight.clear();
            (error, table.pending.drain().collect::<Vec<_>>())
        };
        let _ = self.socket.shutdown(Shutdown::Both);
        for (seq, pending) in failed {
            self.complete(seq, pending.id, Err(error.clone()));
        }
        // Requests that waited on the failed ones fail now.
        self.start_ready();
    }

    /// Sends every request the ordering queue lets start, without blocking: called
    /// on the submitter's thread after each submission and after closing, and on
    /// the reader's after each completion. What the socket does not take, and the
    /// completions of requests answered here, are left to the writer thread.
    fn start_ready(&self) {
        let mut output = self.output();
        let queued = output.backlog.len();
        while let Some(ticket) = self.gate.try_take() {
            match self.prepare(ticket) {
                Ok(chunks) => output.backlog.extend(chunks),
                Err(early) => output.early.push(early),
            }
        }
        if !output.writing && output.failed.is_none() && output.backlog.len() > queued {
            if let Err(err) = send_chunks(&self.socket, &mut output.backlog, false) {
                output.backlog.clear();
                output.failed = Some(format!("sending a request failed: {err}"));
            }
        }
        if !output.backlog.is_empty()
            || !output.early.is_empty()
            || output.failed.is_some()
            || self.gate.drained()
        {
            self.output_changed.notify_one();
        }
    }

    /// The writer thread: writes what the socket did not take at once, delivers
    /// completions decided without the server, then sends `NBD_CMD_DISC` once the
    /// disk is closed and the queue drained.
    fn write_backlog(&self, mut stream: TcpStream) {
        let mut output = self.output();
        loop {
            if let Some(reason) = output.failed.take() {
                drop(output);
                self.break_connection(reason);
            } else if !output.early.is_empty() {
                let early = std::mem::take(&mut output.early);
                drop(output);
                for (seq, id, result) in early {
                    self.complete(seq, id, result);
                }
                // Requests that waited on those may start now.
                self.start_ready();
            } else if !output.backlog.is_empty() {
                let mut chunks = std::mem::take(&mut output.backlog);
                output.writing = true;
                drop(output);
                let sent = send_chunks(&stream, &mut chunks, true);
                if let Err(err) = sent {
                    self.break_connection(format!("sending a request failed: {err}"));
                }
                self.output().writing = false;
            } else if self.gate.drained() {
                break;
            } else {
                output = self
                    .output_changed
                    .wait(output)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            output = self.output();
        }
        drop(output);
        let disconnect = Request {
            flags: 0,
            command: wire::NBD_CMD_DISC,
            handle: u64::MAX,
            offset: 0,
            len: 0,
        };
        if self.table().broken.is_none() {
            // The server answers what is outstanding, then closes; the reader sees that.
            let _ = stream.write_all(&disconnect.encode());
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    /// Registers a request and returns the bytes that carry it to the server, or its
    /// completion when it is answered without the server.
    fn prepare(&self, ticket: Ticket) -> Result<Vec<Chunk>, Early> {
        let Ticket { seq, id, op } = ticket;
        let read_only = self.info.flags & wire::NBD_FLAG_READ_ONLY != 0;
        if let Err(err) = check(&op, self.info.size, read_only, &self.target) {
            return Err((seq, id, Err(err)));
        }
        let too_large = |len: u64| DiskIoError::TooLarge {
            target: self.target.clone(),
            len,
            max: u64::from(u32::MAX),
        };
        let (command, offset, len, payload) = match op {
            // The protocol leaves zero-length requests undefined; answer them here.
            DiskOp::Read { len: 0, .. } => return Err((seq, id, Ok(Vec::new()))),
            DiskOp::Write { data, .. } if data.is_empty() => return Err((seq, id, Ok(Vec::new()))),
            DiskOp::Read { offset, len } => (wire::NBD_CMD_READ, offset, len, None),
            DiskOp::Write { offset, data } => match u32::try_from(data.len()) {
                Ok(len) => (wire::NBD_CMD_WRITE, offset, len, Some(Arc::new(data))),
                Err(_) => return Err((seq, id, Err(too_large(data.len() as u64)))),
            },
            DiskOp::Flush if self.info.flags & wire::NBD_FLAG_SEND_FLUSH == 0 => {
                return Err((seq, id, Ok(Vec::new())));
            }
            DiskOp::Flush => (wire::NBD_CMD_FLUSH, 0, 0, None),
            // Discard is advisory; a server that cannot trim keeps the data.
            DiskOp::Discard { .. } if self.info.flags & wire::NBD_FLAG_SEND_TRIM == 0 => {
                return Err((seq, id, Ok(Vec::new())));
            }
            DiskOp::Discard { offset, len } => match u32::try_from(len) {
                Ok(len) => (wire::NBD_CMD_TRIM, offset, len, None),
                Err(_) => return Err((seq, id, Err(too_large(len)))),
            },
        };
        // Reads and writes go in pieces; everything else in one request.
        let pieces: Vec<(u32, u32)> = match command {
            wire::NBD_CMD_READ | wire::NBD_CMD_WRITE => (0..len)
                .step_by(MAX_PIECE as usize)
                .map(|at| (at, (len - at).min(MAX_PIECE)))
                .collect(),
            _ => vec![(0, len)],
        };
        let reads = command == wire::NBD_CMD_READ;
        let mut table = self.table();
        if let Some(error) = table.broken.clone() {
            return Err((seq, id, Err(error)));
        }
        table.pending.insert(
            seq,
            Pending {
                id,
                left: pieces.len(),
                read_len: if reads { len as usize } else { 0 },
                error: None,
            },
        );
        let mut chunks = Vec::new();
        let mut headers = Vec::with_capacity(pieces.len() * wire::REQUEST_LEN);
        for (at, len) in pieces {
            let handle = table.next_handle;
            table.next_handle = table.next_handle.wrapping_add(1);
            let piece = Piece {
                seq,
                at: at as usize,
                read_len: if reads { len } else { 0 },
            };
            table.inflight.insert(handle, piece);
            let header = Request {
                flags: 0,
                command,
                handle,
                offset: offset + u64::from(at),
                len,
            };
            headers.extend_from_slice(&header.encode());
            // A write's data follows each header.
            if let Some(data) = &payload {
                chunks.push(Chunk::Headers(std::mem::take(&mut headers)));
                chunks.push(Chunk::Data(data.clone(), at as usize..(at + len) as usize));
            }
        }
        if !headers.is_empty() {
            chunks.push(Chunk::Headers(headers));
        }
        Ok(chunks)
    }

    /// The reader thread: one simple reply after another until the stream ends.
    fn read_replies(&self, stream: TcpStream) {
        let mut stream = BufReader::with_capacity(READ_BUFFER, stream);
        // The data of reads being answered, by sequence number; only this thread
        // touches it, so the table stays unlocked while data is read.
        let mut buffers: HashMap<u64, Vec<u8>> = HashMap::new();
        let reason = loop {
            let mut header = [0; wire::SIMPLE_REPLY_LEN];
            if let Err(err) = stream.read_exact(&mut header) {
                break match err.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        "the server closed the connection".to_owned()
                    }
                    _ => format!("reading a reply failed: {err}"),
                };
            }
            let reply = match wire::parse_simple_reply(&header) {
                Ok(reply) => reply,
                Err(err) => break err.to_string(),
            };
            let (piece, read_len) = {
                let mut table = self.table();
                let Some(piece) = table.inflight.remove(&reply.handle) else {
                    break format!("reply for unknown handle {:#x}", reply.handle);
                };
                let read_len = table.pending.get(&piece.seq).map_or(0, |p| p.read_len);
                (piece, read_len)
            };
            let mut error = None;
            if reply.error != 0 {
                error = Some(DiskIoError::Server {
                    target: self.target.clone(),
                    errno: reply.error,
                });
            } else if piece.read_len > 0 {
                let data = buffers
                    .entry(piece.seq)
                    .or_insert_with(|| vec![0; read_len]);
                let Some(part) = data.get_mut(piece.at..piece.at + piece.read_len as usize) else {
                    break format!("reply for handle {:#x} lies outside its read", reply.handle);
                };
                if let Err(err) = stream.read_exact(part) {
                    // Closing fails the request with this reason, and all others.
                    break format!("reading the data of a reply failed: {err}");
                }
            }
            let finished = {
                let mut table = self.table();
                match table.pending.get_mut(&piece.seq) {
                    Some(pending) => {
                        pending.left -= 1;
                        if pending.error.is_none() {
                            pending.error = error;
                        }
                        if pending.left == 0 {
                            table.pending.remove(&piece.seq)
                        } else {
                            continue;
                        }
                    }
                    // Already failed by a broken connection.
                    None => None,
                }
            };
            let data = buffers.remove(&piece.seq).unwrap_or_default();
            if let Some(pending) = finished {
                let result = match pending.error {
                    Some(error) => Err(error),
                    None => Ok(data),
                };
                self.complete(piece.seq, pending.id, result);
                // A request that waited on this one may start now.
                self.start_ready();
            }
        };
        self.break_connection(reason);
    }
}

/// Chunks given to one `sendmsg`.
const MAX_IOVECS: usize = 64;

/// Sends `chunks` from the front, dropping what was sent. Without `wait`, stops
/// where the socket would block and leaves the rest in `chunks`.
fn send_chunks(socket: &TcpStream, chunks: &mut VecDeque<Chunk>, wait: bool) -> io::Result<()> {
    let mut flags = libc::MSG_NOSIGNAL;
    if !wait {
        flags |= libc::MSG_DONTWAIT;
    }
    while !chunks.is_empty() {
        let iovecs: Vec<libc::iovec> = chunks
            .iter()
            .take(MAX_IOVECS)
            .map(|chunk| libc::iovec {
                iov_base: chunk.bytes().as_ptr() as *mut libc::c_void,
                iov_len: chunk.bytes().len(),
            })
            .collect();
        // SAFETY: an all-zero msghdr is valid (no address, no control data).
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
        message.msg_iovlen = iovecs.len() as _;
        // SAFETY: every iovec points into a chunk that `chunks` keeps alive and
        // unchanged for the call; sendmsg only reads them. The descriptor is owned by
        // `socket`, open for the whole call.
        let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &message, flags) };
        let Ok(mut sent) = usize::try_from(sent) else {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !wait => return Ok(()),
                _ => return Err(err),
            }
        };
        if sent == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while let Some(front) = chunks.front_mut() {
            let len = front.bytes().len();
            if sent < len {
                front.consume(sent);
                break;
            }
            sent -= len;
            chunks.pop_front();
        }
    }
    Ok(())
}
