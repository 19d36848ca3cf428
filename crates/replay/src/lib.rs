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
//! [`hash_bytes`] is XXH3-64 (xxHash 3, 64-bit) with seed 0 and the default
//! 192-byte secret `K` of XXH3 (`b8 fe 6c 39 … bb 4b 40 7e`, in `hash.rs`). For a
//! byte string `b` of length `n`, all arithmetic modulo 2^64, words read
//! little-endian at byte offsets (`b64(i)`, `b32(i)`, `K64(i)`, `K32(i)`), `rotl` a left
//! rotation, `fold(a, b)` the 128-bit product of `a` and `b` with its halves
//! xored, and `mix(i, k) = fold(b64(i) ^ K64(k), b64(i+8) ^ K64(k+8))`:
//!
//! ```text
//! P1 = 0x9E3779B185EBCA87  P2 = 0xC2B2AE3D27D4EB4F  P3 = 0x165667B19E3779F9
//! P4 = 0x85EBCA77C2B2AE63  P5 = 0x27D4EB2F165667C5
//! Q1 = 0x9E3779B1  Q2 = 0x85EBCA77  Q3 = 0xC2B2AE3D
//! aval(h)   = h ^= h >> 37; h *= 0x165667919E3779F9; h ^ (h >> 32)
//! aval64(h) = h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^ (h >> 32)
//!
//! n = 0:       aval64(K64(56) ^ K64(64))
//! n = 1..3:    aval64(((b[0] << 16) | (b[n/2] << 24) | b[n-1] | (n << 8))
//!                     ^ (K32(0) ^ K32(4)))
//! n = 4..8:    h = (b32(n-4) + (b32(0) << 32)) ^ (K64(8) ^ K64(16))
//!              h ^= rotl(h, 49) ^ rotl(h, 24); h *= 0x9FB21C651E98DF25
//!              h ^= (h >> 35) + n; h *= 0x9FB21C651E98DF25; h ^ (h >> 28)
//! n = 9..16:   lo = b64(0) ^ (K64(24) ^ K64(32)); hi = b64(n-8) ^ (K64(40) ^ K64(48))
//!              aval(n + byteswap(lo) + hi + fold(lo, hi))
//! n = 17..128: h = n * P1; for i in 0..=(n-1)/32:
//!                  h += mix(16i, 32i) + mix(n-16(i+1), 32i+16)
//!              aval(h)
//! n = 129..240: h = n * P1; for i in 0..8: h += mix(16i, 16i)
//!              h = aval(h); for i in 8..n/16: h += mix(16i, 16(i-8)+3)
//!              aval(h + mix(n-16, 119))
//! n > 240:     acc = [Q3, P1, P2, P3, P4, Q2, P5, Q1]
//!              stripe(s, k): for j in 0..8: d = b64(s+8j); x = d ^ K64(k+8j)
//!                  acc[j^1] += d; acc[j] += (x & 0xFFFFFFFF) * (x >> 32)
//!              blocks of 1024 bytes, all but the last byte's: stripes 0..16 at
//!                  (s = block + 64t, k = 8t), then for j in 0..8:
//!                  acc[j] = (acc[j] ^ (acc[j] >> 47) ^ K64(128+8j)) * Q1
//!              the rest r (from the end of the blocks, r bytes): its
//!                  (r-1)/64 whole stripes t at k = 8t, then stripe(n-64, 121)
//!              h = n * P1; for i in 0..4: h += fold(acc[2i] ^ K64(11+16i),
//!                                                  acc[2i+1] ^ K64(19+16i))
//!              aval(h)
//! ```
//!
//! It is not cryptographic: it catches a replay that diverges, not a forged log.
//! `hash_bytes(b"")` is `0x2d06800538d394c2` and `hash_bytes(b"a")` is
//! `0xe6c632b61e964e1f`.
//!
//! # Versions
//!
//! Version 3 hashes data with XXH3-64; version 2 used XXH64 (73 µs for a 1 MiB
//! write here, against about 20 for XXH3-64 with AVX2). Version 2 and on log a
//! [`SubmitRecord`] in `Submit`; version 1 logged the whole request, write data
//! and frames included. A reader accepts only its own
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
