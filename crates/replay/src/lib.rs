//! The record/replay log of ftvm: a versioned, framed, checksummed stream of
//! `(icount, event)` entries (DESIGN.md §2).
//!
//! The primary logs every non-deterministic input with the retired-instruction
//! count at which it took effect, and the outputs replay must check; the backup (or
//! `ftvm replay`) gives the same answers back at the same icounts (Scales et al.
//! 2010, §2.1). The stream is read front to back with no seeking, one frame at a
//! time, so it works the same over a file and over the logging channel's TCP stream.
//!
//! # Layout
//!
//! All integers are little-endian. The stream is a header followed by frames:
//!
//! ```text
//! header
//! +----------+---------+------------+----------------+----------+
//! | magic    | version | config_len | config         | crc32c   |
//! | 8 bytes  | u16     | u32        | config_len     | u32      |
//! | FTVMLOG\0| = 2     | <= 16 MiB  | opaque bytes   | magic..config
//! +----------+---------+------------+----------------+----------+
//!
//! frame (repeated; 25 bytes + payload)
//! +---------+---------+---------+------+-----------------+----------+
//! | len     | seq     | icount  | kind | payload         | crc32c   |
//! | u32     | u64     | u64     | u8   | len bytes       | u32      |
//! | payload | 0,1,2,..| never   | 1..10| kind-specific   | seq..payload
//! | length  | no gaps | goes back      |                 |          |
//! +---------+---------+---------+------+-----------------+----------+
//! ```
//!
//! `len` is at most [`MAX_FRAME_LEN`] and is checked before anything is
//! allocated. The checksum is CRC-32C (Castagnoli). The stream may end after any
//! complete frame (a primary that died); [`Event::End`], if present, is the last
//! frame.
//!
//! # Payloads
//!
//! `bytes` is a byte string: `u32` length, then that many bytes. Tags are `u8`.
//!
//! | kind | event          | payload |
//! |------|----------------|---------|
//! | 1    | `Now`          | `mtime: u64` |
//! | 2    | `Idle`         | tag 0 (`None`) \| tag 1, `woke_at: u64` |
//! | 3    | `ConsoleInput` | `bytes` (never empty) |
//! | 4    | `WallClock`    | `ns: u64` |
//! | 5    | `RngSeed`      | `seed: [u8; 32]` |
//! | 6    | `Submit`       | `slot: u8`, request (below) |
//! | 7    | `Completion`   | `slot: u8`, completion (below) |
//! | 8    | `Digest`       | `digest: [u8; 32]` |
//! | 9    | `End`          | tag 0, `status: u32` (power off) \| 1 stuck \| 2 stopped \| 3 reboot |
//! | 10   | `ReadElided`   | `slot: u8`, `id: u64`, `len: u32`, `hash: u64` |
//!
//! Request (a [`SubmitRecord`]): tag 0 block, `id: u64`, op: (0 read, `sector:
//! u64`, `len: u32` \| 1 write, `sector: u64`, `len: u32`, `hash: u64` \| 2 flush
//! \| 3 discard, `sector: u64`, `sectors: u64`); tag 1 net transmit, `len: u32`,
//! `hash: u64`; tag 2 entropy, `id: u64`, `len: u32`. `len` is the length of the
//! write data or of the frame (`u32::MAX` if longer, which no device produces) and
//! `hash` is [`hash_bytes`] of those bytes: the data itself is not logged, since
//! the replaying machine produces it again and only has to be checked.
//!
//! Completion: tag 0 block, `id: u64`, `status: u8`, `data: bytes`; tag 1 net
//! receive, `frame: bytes`; tag 2 entropy, `id: u64`, `data: bytes`.
//!
//! A payload must be used exactly: leftover bytes are an error, so every log has
//! one encoding and decoding then re-encoding gives the same bytes.
//!
//! # The data hash
//!
//! [`hash_bytes`] is XXH64 (xxHash, 64-bit) with seed 0. For a byte string `b`
//! of length `n`, with all arithmetic modulo 2^64, `rotl` a left rotation and
//! words read little-endian:
//!
//! ```text
//! P1 = 0x9E3779B185EBCA87  P2 = 0xC2B2AE3D27D4EB4F  P3 = 0x165667B19E3779F9
//! P4 = 0x85EBCA77C2B2AE63  P5 = 0x27D4EB2F165667C5
//! round(acc, w) = rotl(acc + w * P2, 31) * P1
//!
//! if n >= 32:
//!     v = [P1 + P2, P2, 0, -P1]
//!     for each whole 32-byte stripe S, in order:
//!         for i in 0..4: v[i] = round(v[i], u64(S[8i..8i+8]))
//!     h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)
//!     for i in 0..4: h = (h ^ round(0, v[i])) * P1 + P4
//! else:
//!     h = P5
//! h = h + n
//! then over the last n % 32 bytes, in order:
//!     each whole 8-byte word w:  h = rotl(h ^ round(0, w), 27) * P1 + P4
//!     a 4-byte word w, if left:  h = rotl(h ^ (u32(w) * P1), 23) * P2 + P3
//!     each byte c left:          h = rotl(h ^ (c * P5), 11) * P1
//! h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
//! ```
//!
//! It is not cryptographic: it catches a replay that diverges, not a forged log.
//! `hash_bytes(b"")` is `0xef46db3751d8e999` and `hash_bytes(b"a")` is
//! `0xd24ec4f1a98c6e5b`.
//!
//! # Versions
//!
//! Version 2 logs a [`SubmitRecord`] in `Submit`; version 1 logged the whole
//! request, write data and frames included. A reader accepts only its own
//! version ([`LogError::UnsupportedVersion`]).

mod crc;
mod error;
mod event;
mod hash;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

/// CRC-32C (Castagnoli) of a byte string, the checksum of log frames; also used by
/// machine snapshots (`ftvm_machine::snapshot`). `crc32c(b"123456789")` is `0xe3069283`.
pub use crc::crc32c;
pub use error::LogError;
pub use event::{BlockOpRecord, EndStatus, Event, Header, SubmitRecord, VERSION};
pub use hash::hash_bytes;
pub use reader::{decode_all, Entry, LogReader};
pub use writer::{LogWriter, BORROWED_DATA};

/// The first eight bytes of every log.
pub const MAGIC: [u8; 8] = *b"FTVMLOG\0";

/// The largest frame payload, in bytes (64 MiB): larger than any single virtio
/// request or completion the machine produces, small enough to hold in memory.
pub const MAX_FRAME_LEN: u32 = 64 << 20;

/// The largest configuration record in the header, in bytes (16 MiB).
pub const MAX_CONFIG_LEN: u32 = 16 << 20;

/// Bytes of a frame besides its payload: `len`, `seq`, `icount`, `kind`, `crc32c`.
const FRAME_OVERHEAD: usize = 4 + 8 + 8 + 1 + 4;
