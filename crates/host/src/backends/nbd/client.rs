//! The transmission phase: a writer thread sending requests, a reader thread
//! matching simple replies to them by handle.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::wire::{self, ExportInfo, Request};
use crate::backends::disk::{check, Gate, Ticket};
use crate::backends::{
    BackendError, Disk, DiskDone, DiskIoError, DiskOp, ExitCounter, ExitGuard, Notify,
};

/// A request sent and not yet answered.
struct Inflight {
    seq: u64,
    id: u64,
    /// Bytes of data that follow a successful reply (reads only).
    read_len: u32,
}

#[derive(Default)]
struct Table {
    inflight: HashMap<u64, Inflight>,
    next_handle: u64,
    /// Set once the stream is given up; every later request fails with it.
    broken: Option<DiskIoError>,
}

struct Connection {
    target: String,
    info: ExportInfo,
    gate: Arc<Gate>,
    notify: Notify<DiskDone>,
    table: Mutex<Table>,
    /// A handle on the socket for shutting it down.
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
        Box::new(move || writer_conn.send_requests(stream)),
    ) {
        Ok(handle) => threads.push(handle),
        Err(err) => {
            force();
            drop(Disk::from_parts(
                info.size, read_only, gate, threads, exits, None,
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
    ))
}

impl Connection {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
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
            (
                error,
                table
                    .inflight
                    .drain()
                    .map(|(_, inflight)| inflight)
                    .collect::<Vec<_>>(),
            )
        };
        let _ = self.socket.shutdown(Shutdown::Both);
        for inflight in failed {
            self.complete(inflight.seq, inflight.id, Err(error.clone()));
        }
    }

    /// The writer thread: sends each request the ordering queue lets start, then
    /// `NBD_CMD_DISC` once the disk is closed and the queue drained.
    fn send_requests(&self, mut stream: TcpStream) {
        while let Some(ticket) = self.gate.take() {
            self.send(&mut stream, ticket);
        }
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

    fn send(&self, stream: &mut TcpStream, ticket: Ticket) {
        let Ticket { seq, id, op } = ticket;
        let read_only = self.info.flags & wire::NBD_FLAG_READ_ONLY != 0;
        if let Err(err) = check(&op, self.info.size, read_only, &self.target) {
            return self.complete(seq, id, Err(err));
        }
        let too_large = |len: u64| DiskIoError::TooLarge {
            target: self.target.clone(),
            len,
            max: u64::from(u32::MAX),
        };
        let (command, offset, len, payload) = match op {
            // The protocol leaves zero-length requests undefined; answer them here.
            DiskOp::Read { len: 0, .. } => return self.complete(seq, id, Ok(Vec::new())),
            DiskOp::Write { data, .. } if data.is_empty() => {
                return self.complete(seq, id, Ok(Vec::new()));
            }
            DiskOp::Read { offset, len } => (wire::NBD_CMD_READ, offset, len, None),
            DiskOp::Write { offset, data } => match u32::try_from(data.len()) {
                Ok(len) => (wire::NBD_CMD_WRITE, offset, len, Some(data)),
                Err(_) => return self.complete(seq, id, Err(too_large(data.len() as u64))),
            },
            DiskOp::Flush if self.info.flags & wire::NBD_FLAG_SEND_FLUSH == 0 => {
                return self.complete(seq, id, Ok(Vec::new()));
            }
            DiskOp::Flush => (wire::NBD_CMD_FLUSH, 0, 0, None),
            // Discard is advisory; a server that cannot trim keeps the data.
            DiskOp::Discard { .. } if self.info.flags & wire::NBD_FLAG_SEND_TRIM == 0 => {
                return self.complete(seq, id, Ok(Vec::new()));
            }
            DiskOp::Discard { offset, len } => match u32::try_from(len) {
                Ok(len) => (wire::NBD_CMD_TRIM, offset, len, None),
                Err(_) => return self.complete(seq, id, Err(too_large(len))),
            },
        };
        let handle = {
            let mut table = self.table();
            if let Some(error) = table.broken.clone() {
                drop(table);
                return self.complete(seq, id, Err(error));
            }
            let handle = table.next_handle;
            table.next_handle = table.next_handle.wrapping_add(1);
            let read_len = if command == wire::NBD_CMD_READ {
                len
            } else {
                0
            };
            table
                .inflight
                .insert(handle, Inflight { seq, id, read_len });
            handle
        };
        let header = Request {
            flags: 0,
            command,
            handle,
            offset,
            len,
        }
        .encode();
        let sent = stream
            .write_all(&header)
            .and_then(|()| payload.map_or(Ok(()), |data| stream.write_all(&data)));
        if let Err(err) = sent {
            self.break_connection(format!("sending a request failed: {err}"));
        }
    }

    /// The reader thread: one simple reply after another until the stream ends.
    fn read_replies(&self, stream: TcpStream) {
        let mut stream = BufReader::with_capacity(256 * 1024, stream);
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
            let Some(inflight) = self.table().inflight.remove(&reply.handle) else {
                break format!("reply for unknown handle {:#x}", reply.handle);
            };
            if reply.error != 0 {
                let error = DiskIoError::Server {
                    target: self.target.clone(),
                    errno: reply.error,
                };
                self.complete(inflight.seq, inflight.id, Err(error));
                continue;
            }
            let mut data = vec![0; inflight.read_len as usize];
            if let Err(err) = stream.read_exact(&mut data) {
                let reason = format!("reading the data of a reply failed: {err}");
                let error = DiskIoError::ConnectionLost {
                    target: self.target.clone(),
                    reason: reason.clone(),
                };
                self.complete(inflight.seq, inflight.id, Err(error));
                break reason;
            }
            self.complete(inflight.seq, inflight.id, Ok(data));
        };
        self.break_connection(reason);
    }
}
