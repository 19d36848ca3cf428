//! The entries of the log and their payload encodings (see the crate docs for the table).

use crate::hash::hash_bytes;
use ftvm_devices::virtio::{BackendCompletion, BackendRequest, BlockOp};
use std::fmt;

/// The log format version this build reads and writes.
///
/// Version 3 hashes data with XXH3-64 (version 2: XXH64). Version 2 and on log a
/// submitted request as a [`SubmitRecord`] (its small fields and a hash of its
/// data); version 1 logged the whole request, data included.
pub const VERSION: u16 = 3;

/// The opening of every log: the stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The format version ([`VERSION`] for a log this build writes).
    pub version: u16,
    /// The machine configuration the log was recorded with, written and read by the
    /// machine crate (image paths and hashes, memory size, command line, devices);
    /// opaque to the log.
    pub config: Vec<u8>,
}

impl Header {
    /// A header of the current [`VERSION`] carrying `config`.
    pub fn new(config: Vec<u8>) -> Self {
        Header {
            version: VERSION,
            config,
        }
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndStatus {
    /// The guest powered off with this exit status.
    PowerOff(u32),
    /// The guest waits for an interrupt that nothing can ever raise.
    Stuck,
    /// The user stopped the machine.
    Stopped,
    /// The guest asked for a reboot and the machine was configured to stop there
    /// instead of resetting (a reset that goes on is deterministic and not logged).
    Reboot,
}

/// One entry of the log: an answer the host gave at the event boundary, an output
/// of the machine that replay checks, or a marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The answer of `Environment::now`.
    Now {
        /// The guest time base (`mtime`).
        mtime: u64,
    },
    /// The answer of `Environment::idle`.
    Idle {
        /// The time the guest woke at; `None`: nothing could ever wake it.
        woke_at: Option<u64>,
    },
    /// The answer of `Environment::console_input`. Never empty: no entry means no
    /// input ([`LogWriter::write`](crate::LogWriter::write) skips an empty one).
    ConsoleInput {
        /// The bytes typed.
        bytes: Vec<u8>,
    },
    /// The answer of `Environment::wall_clock_base_ns`.
    WallClock {
        /// Nanoseconds since the Unix epoch at `mtime` 0.
        ns: u64,
    },
    /// The answer of `Environment::rng_seed`.
    RngSeed {
        /// The device tree's `rng-seed`.
        seed: [u8; 32],
    },
    /// A request the machine handed to a host backend: an output, logged so that
    /// replay can check it is produced again (a replayed write is checked, not
    /// performed). The replaying machine regenerates the request itself, so the
    /// log keeps only what identifies it: its small fields and a hash of its data.
    Submit {
        /// The virtio slot.
        slot: u8,
        /// What identifies the request ([`SubmitRecord::of`]).
        request: SubmitRecord,
    },
    /// A backend completion applied at this icount.
    Completion {
        /// The virtio slot.
        slot: u8,
        /// The completion.
        completion: BackendCompletion,
    },
    /// A disk read that completed with status OK at this icount, its data left
    /// out of the log: the replaying side reads the same sectors itself, from the
    /// disk it shares with the recording side, and checks what it read against
    /// `hash` (an FT primary with `--backup-reads`, after Scales et al. 2010,
    /// §4.2). A reader with no such disk cannot replay it.
    ReadElided {
        /// The virtio slot.
        slot: u8,
        /// The read request's id.
        id: u64,
        /// Bytes read.
        len: u32,
        /// [`hash_bytes`] of the bytes read.
        hash: u64,
    },
    /// A digest of the machine's state (RAM, CPU, devices) at this icount.
    Digest {
        /// The digest.
        digest: [u8; 32],
    },
    /// The recording ended; nothing follows.
    End {
        /// Why.
        status: EndStatus,
    },
}

/// What the log keeps of a [`BackendRequest`]: its kind and small fields, with a
/// 64-bit [`hash_bytes`](crate::hash_bytes) of its data (disk write data, a
/// transmitted frame) in place of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitRecord {
    /// A [`BackendRequest::Block`].
    Block {
        /// The request's id.
        id: u64,
        /// The operation.
        op: BlockOpRecord,
    },
    /// A [`BackendRequest::NetTx`].
    NetTx {
        /// The frame's length in bytes.
        len: u32,
        /// The hash of the frame.
        hash: u64,
    },
    /// A [`BackendRequest::Entropy`].
    Entropy {
        /// The request's id.
        id: u64,
        /// Number of bytes wanted.
        len: u32,
    },
}

/// What the log keeps of a [`BlockOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockOpRecord {
    /// A [`BlockOp::Read`].
    Read {
        /// First sector.
        sector: u64,
        /// Bytes to read.
        len: u32,
    },
    /// A [`BlockOp::Write`].
    Write {
        /// First sector.
        sector: u64,
        /// The data's length in bytes.
        len: u32,
        /// The hash of the data.
        hash: u64,
    },
    /// A [`BlockOp::Flush`].
    Flush,
    /// A [`BlockOp::Discard`].
    Discard {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
    },
}

/// The length of request data as logged: longer than `u32::MAX` bytes (which no
/// device produces) saturates; the hash still covers every byte.
fn logged_len(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

impl SubmitRecord {
    /// The record of `request`: two requests with the same record are the same
    /// request unless their data collide under the 64-bit hash.
    pub fn of(request: &BackendRequest) -> SubmitRecord {
        match request {
            BackendRequest::Block { id, op } => SubmitRecord::Block {
                id: *id,
                op: match op {
                    BlockOp::Read { sector, len } => BlockOpRecord::Read {
                        sector: *sector,
                        len: *len,
                    },
                    BlockOp::Write { sector, data } => BlockOpRecord::Write {
                        sector: *sector,
                        len: logged_len(data),
                        hash: hash_bytes(data),
                    },
                    BlockOp::Flush => BlockOpRecord::Flush,
                    BlockOp::Discard { sector, sectors } => BlockOpRecord::Discard {
                        sector: *sector,
                        sectors: *sectors,
                    },
                },
            },
            BackendRequest::NetTx { frame } => SubmitRecord::NetTx {
                len: logged_len(frame),
                hash: hash_bytes(frame),
            },
            BackendRequest::Entropy { id, len } => SubmitRecord::Entropy { id: *id, len: *len },
        }
    }
}

/// Describes the request in words, for divergence reports: "a disk write of 4096
/// bytes at sector 8 (request 3, data hash 0x…)".
impl fmt::Display for SubmitRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubmitRecord::Block { id, op } => match op {
                BlockOpRecord::Read { sector, len } => {
                    write!(f, "a disk read of {len} bytes at sector {sector} (request {id})")
                }
                BlockOpRecord::Write { sector, len, hash } => write!(
                    f,
                    "a disk write of {len} bytes at sector {sector} (request {id}, data hash {hash:#018x})"
                ),
                BlockOpRecord::Flush => write!(f, "a disk flush (request {id})"),
                BlockOpRecord::Discard { sector, sectors } => write!(
                    f,
                    "a disk discard of {sectors} sectors at sector {sector} (request {id})"
                ),
            },
            SubmitRecord::NetTx { len, hash } => {
                write!(f, "a network frame of {len} bytes (hash {hash:#018x})")
            }
            SubmitRecord::Entropy { id, len } => {
                write!(f, "an entropy request for {len} bytes (request {id})")
            }
        }
    }
}

/// Kind bytes of the frames (0 is never used, so a zeroed region is no frame).
pub(crate) mod kind {
    pub(crate) const NOW: u8 = 1;
    pub(crate) const IDLE: u8 = 2;
    pub(crate) const CONSOLE_INPUT: u8 = 3;
    pub(crate) const WALL_CLOCK: u8 = 4;
    pub(crate) const RNG_SEED: u8 = 5;
    pub(crate) const SUBMIT: u8 = 6;
    pub(crate) const COMPLETION: u8 = 7;
    pub(crate) const DIGEST: u8 = 8;
    pub(crate) const END: u8 = 9;
    pub(crate) const READ_ELIDED: u8 = 10;
}

// Tags inside payloads.
const NONE: u8 = 0;
const SOME: u8 = 1;
const REQUEST_BLOCK: u8 = 0;
const REQUEST_NET_TX: u8 = 1;
const REQUEST_ENTROPY: u8 = 2;
const OP_READ: u8 = 0;
const OP_WRITE: u8 = 1;
const OP_FLUSH: u8 = 2;
const OP_DISCARD: u8 = 3;
const COMPLETION_BLOCK: u8 = 0;
const COMPLETION_NET_RX: u8 = 1;
const COMPLETION_ENTROPY: u8 = 2;
const END_POWER_OFF: u8 = 0;
const END_STUCK: u8 = 1;
const END_STOPPED: u8 = 2;
const END_REBOOT: u8 = 3;

/// A byte string too long for its `u32` length prefix.
#[derive(Debug)]
pub(crate) struct TooLong;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), TooLong> {
    let len = u32::try_from(bytes.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl Event {
    /// The frame kind byte.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Event::Now { .. } => kind::NOW,
            Event::Idle { .. } => kind::IDLE,
            Event::ConsoleInput { .. } => kind::CONSOLE_INPUT,
            Event::WallClock { .. } => kind::WALL_CLOCK,
            Event::RngSeed { .. } => kind::RNG_SEED,
            Event::Submit { .. } => kind::SUBMIT,
            Event::Completion { .. } => kind::COMPLETION,
            Event::ReadElided { .. } => kind::READ_ELIDED,
            Event::Digest { .. } => kind::DIGEST,
            Event::End { .. } => kind::END,
        }
    }

    /// Appends the payload to `out`.
    pub(crate) fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), TooLong> {
        match self {
            Event::Now { mtime } => out.extend_from_slice(&mtime.to_le_bytes()),
            Event::Idle { woke_at: None } => out.push(NONE),
            Event::Idle { woke_at: Some(t) } => {
                out.push(SOME);
                out.extend_from_slice(&t.to_le_bytes());
            }
            Event::ConsoleInput { bytes } => put_bytes(out, bytes)?,
            Event::WallClock { ns } => out.extend_from_slice(&ns.to_le_bytes()),
            Event::RngSeed { seed } => out.extend_from_slice(seed),
            Event::Submit { slot, request } => {
                out.push(*slot);
                encode_request(out, request);
            }
            Event::Completion { slot, completion } => {
                encode_completion_payload(out, *slot, completion)?;
            }
            Event::ReadElided {
                slot,
                id,
                len,
                hash,
            } => {
                out.push(*slot);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&hash.to_le_bytes());
            }
            Event::Digest { digest } => out.extend_from_slice(digest),
            Event::End { status } => match status {
                EndStatus::PowerOff(code) => {
                    out.push(END_POWER_OFF);
                    out.extend_from_slice(&code.to_le_bytes());
                }
                EndStatus::Stuck => out.push(END_STUCK),
                EndStatus::Stopped => out.push(END_STOPPED),
                EndStatus::Reboot => out.push(END_REBOOT),
            },
        }
        Ok(())
    }

    /// Decodes the payload of a frame of kind `kind`; the whole payload must be used.
    pub(crate) fn decode(kind: u8, payload: &[u8]) -> Result<Event, DecodeError> {
        let mut d = Decoder { rest: payload };
        let event = match kind {
            kind::NOW => Event::Now { mtime: d.u64()? },
            kind::IDLE => Event::Idle {
                woke_at: match d.u8()? {
                    NONE => None,
                    SOME => Some(d.u64()?),
                    _ => {
                        return Err(malformed(
                            "idle wake-up tag is neither 0 (none) nor 1 (some)",
                        ))
                    }
                },
            },
            kind::CONSOLE_INPUT => {
                let bytes = d.bytes()?;
                if bytes.is_empty() {
                    return Err(malformed("console input is empty"));
                }
                Event::ConsoleInput { bytes }
            }
            kind::WALL_CLOCK => Event::WallClock { ns: d.u64()? },
            kind::RNG_SEED => Event::RngSeed { seed: d.array()? },
            kind::SUBMIT => Event::Submit {
                slot: d.u8()?,
                request: decode_request(&mut d)?,
            },
            kind::COMPLETION => Event::Completion {
                slot: d.u8()?,
                completion: decode_completion(&mut d)?,
            },
            kind::READ_ELIDED => Event::ReadElided {
                slot: d.u8()?,
                id: d.u64()?,
                len: d.u32()?,
                hash: d.u64()?,
            },
            kind::DIGEST => Event::Digest { digest: d.array()? },
            kind::END => Event::End {
                status: match d.u8()? {
                    END_POWER_OFF => EndStatus::PowerOff(d.u32()?),
                    END_STUCK => EndStatus::Stuck,
                    END_STOPPED => EndStatus::Stopped,
                    END_REBOOT => EndStatus::Reboot,
                    _ => return Err(malformed("end status tag is not 0 to 3")),
                },
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        if !d.rest.is_empty() {
            return Err(malformed("bytes left over after the event"));
        }
        Ok(event)
    }
}

fn encode_request(out: &mut Vec<u8>, request: &SubmitRecord) {
    match request {
        SubmitRecord::Block { id, op } => {
            out.push(REQUEST_BLOCK);
            out.extend_from_slice(&id.to_le_bytes());
            match op {
                BlockOpRecord::Read { sector, len } => {
                    out.push(OP_READ);
                    out.extend_from_slice(&sector.to_le_bytes());
                    out.extend_from_slice(&len.to_le_bytes());
                }
                BlockOpRecord::Write { sector, len, hash } => {
                    out.push(OP_WRITE);
                    out.extend_from_slice(&sector.to_le_bytes());
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&hash.to_le_bytes());
                }
                BlockOpRecord::Flush => out.push(OP_FLUSH),
                BlockOpRecord::Discard { sector, sectors } => {
                    out.push(OP_DISCARD);
                    out.extend_from_slice(&sector.to_le_bytes());
                    out.extend_from_slice(&sectors.to_le_bytes());
                }
            }
        }
        SubmitRecord::NetTx { len, hash } => {
            out.push(REQUEST_NET_TX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&hash.to_le_bytes());
        }
        SubmitRecord::Entropy { id, len } => {
            out.push(REQUEST_ENTROPY);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
}

fn decode_request(d: &mut Decoder<'_>) -> Result<SubmitRecord, DecodeError> {
    Ok(match d.u8()? {
        REQUEST_BLOCK => SubmitRecord::Block {
            id: d.u64()?,
            op: match d.u8()? {
                OP_READ => BlockOpRecord::Read {
                    sector: d.u64()?,
                    len: d.u32()?,
                },
                OP_WRITE => BlockOpRecord::Write {
                    sector: d.u64()?,
                    len: d.u32()?,
                    hash: d.u64()?,
                },
                OP_FLUSH => BlockOpRecord::Flush,
                OP_DISCARD => BlockOpRecord::Discard {
                    sector: d.u64()?,
                    sectors: d.u64()?,
                },
                _ => return Err(malformed("block operation tag is not 0 to 3")),
            },
        },
        REQUEST_NET_TX => SubmitRecord::NetTx {
            len: d.u32()?,
            hash: d.u64()?,
        },
        REQUEST_ENTROPY => SubmitRecord::Entropy {
            id: d.u64()?,
            len: d.u32()?,
        },
        _ => return Err(malformed("backend request tag is not 0 to 2")),
    })
}

/// The payload of an [`Event::Completion`] (also written from a borrowed
/// completion by [`LogWriter::write_completion`](crate::LogWriter::write_completion)).
pub(crate) fn encode_completion_payload(
    out: &mut Vec<u8>,
    slot: u8,
    completion: &BackendCompletion,
) -> Result<(), TooLong> {
    let data = encode_completion_head(out, slot, completion)?;
    out.extend_from_slice(data);
    Ok(())
}

/// Appends the payload of a completion up to and including the length of its
/// data, which is the payload's last field, and returns that data: the payload
/// is what this appended followed by the returned bytes.
pub(crate) fn encode_completion_head<'a>(
    out: &mut Vec<u8>,
    slot: u8,
    completion: &'a BackendCompletion,
) -> Result<&'a [u8], TooLong> {
    out.push(slot);
    let data = match completion {
        BackendCompletion::Block { id, status, data } => {
            out.push(COMPLETION_BLOCK);
            out.extend_from_slice(&id.to_le_bytes());
            out.push(*status);
            data
        }
        BackendCompletion::NetRx { frame } => {
            out.push(COMPLETION_NET_RX);
            frame
        }
        BackendCompletion::Entropy { id, data } => {
            out.push(COMPLETION_ENTROPY);
            out.extend_from_slice(&id.to_le_bytes());
            data
        }
    };
    let len = u32::try_from(data.len()).map_err(|_| TooLong)?;
    out.extend_from_slice(&len.to_le_bytes());
    Ok(data)
}

fn decode_completion(d: &mut Decoder<'_>) -> Result<BackendCompletion, DecodeError> {
    Ok(match d.u8()? {
        COMPLETION_BLOCK => BackendCompletion::Block {
            id: d.u64()?,
            status: d.u8()?,
            data: d.bytes()?,
        },
        COMPLETION_NET_RX => BackendCompletion::NetRx { frame: d.bytes()? },
        COMPLETION_ENTROPY => BackendCompletion::Entropy {
            id: d.u64()?,
            data: d.bytes()?,
        },
        _ => return Err(malformed("backend completion tag is not 0 to 2")),
    })
}

/// Why a payload did not decode.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The kind byte names no event.
    UnknownKind(u8),
    /// The payload does not match its kind.
    Malformed(&'static str),
}

fn malformed(what: &'static str) -> DecodeError {
    DecodeError::Malformed(what)
}

/// Reads little-endian fields off the front of a payload.
struct Decoder<'a> {
    rest: &'a [u8],
}

impl Decoder<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.rest.len() < n {
            return Err(malformed("payload ends inside a field"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A byte string: `u32` length, then the bytes. The length is checked against
    /// what is left of the payload before anything is allocated.
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = usize::try_from(self.u32()?)
            .map_err(|_| malformed("byte string longer than the payload"))?;
        if len > self.rest.len() {
            return Err(malformed("byte string longer than the payload"));
        }
        Ok(self.take(len)?.to_vec())
    }
}
