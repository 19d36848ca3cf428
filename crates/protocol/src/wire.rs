//! The protocol's messages on the wire.
//!
//! Every message is exactly [`MESSAGE_LEN`] bytes, little-endian, so that a
//! TCP stream needs no other framing and a UDP datagram of any other size is
//! refused outright:
//!
//! ```text
//! +-------+---------+------+-----+---------+---------------------+--------+
//! | magic | version | kind | pad | session | five u64 fields     | fnv1a  |
//! | FTVP  | u8 = 2  | u8   | 2   | u64     | kind-specific, 40 B | u32    |
//! +-------+---------+------+-----+---------+---------------------+--------+
//!   0       4         5      6     8         16                    56  60..64 zero
//! ```
//!
//! | kind | message     | fields (unused ones are zero)                                  |
//! |------|-------------|-----------------------------------------------------------------|
//! | 1    | `Heartbeat` | from (0 primary, 1 backup), epoch, released, received, mtime     |
//! | 2    | `Ack`       | received, executed icount, executed mtime                        |
//! | 3    | `Hello`     | the backup's UDP port (first message of the backup on TCP)       |
//! | 4    | `Welcome`   | the primary's UDP port, snapshot length, epoch, disks copied, RAM apart (first message of the primary on TCP once the copies before it are sent) |
//! | 5    | `DiskImage` | slot, size in bytes (a disk's content follows)                   |
//! | 6    | `DiskData`  | slot, offset, length, XXH3-64 of the bytes (which follow it)     |
//! | 7    | `DiskZero`  | slot, offset, length (the range reads as zeros)                  |
//! | 8    | `DiskEnd`   | disks copied, data bytes sent                                    |
//! | 9    | `RamRun`    | first page, page count, XXH3-64 of the bytes (which follow it)   |
//! | 10   | `RamEnd`    | pages sent in all                                                |
//! | 11   | `Config`    | length of the configuration record (which follows it)            |
//!
//! A side copying its guest to a joining backup sends its configuration
//! record first, so that the backup refuses another machine before it
//! writes anything.
//!
//! A new backup joining a running guest gets its RAM apart from the
//! snapshot (a `Welcome` with RAM apart set; the snapshot then holds no
//! RAM): `RamRun`s before the `Welcome`, sent while the guest runs, and
//! after the snapshot the pages written since, closed by `RamEnd`.
//!
//! The disk messages come after a `Welcome` whose disk count is not zero
//! (a new backup with its own disks joining a running guest), after the
//! snapshot: each disk is a `DiskImage`, then `DiskData` and `DiskZero`
//! covering it in order; `DiskEnd` closes the copy.
//!
//! The checksum (32-bit FNV-1a over bytes 0..56) catches corruption the
//! transport's own checksum let through and, above all, random bytes sent
//! to the port by something that is not an ftvm peer.

use crate::Role;

/// Size of every message.
pub const MESSAGE_LEN: usize = 64;
const MAGIC: &[u8; 4] = b"FTVP";
const VERSION: u8 = 2;

/// A message between the two sides, besides the log itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// Sent over UDP both ways every heartbeat interval.
    Heartbeat {
        /// The pair.
        session: u64,
        /// Who sends it.
        from: Role,
        /// The sender's epoch.
        epoch: u64,
        /// Primary: outputs produced before this many log entries have been
        /// released to the outside world. Backup: zero.
        released: u64,
        /// Backup: log entries received so far. Primary: zero.
        received: u64,
        /// The guest time (mtime) the sender has executed up to.
        mtime: u64,
    },
    /// Backup to primary on the logging channel: cumulative acknowledgement.
    Ack {
        /// The pair.
        session: u64,
        /// Log entries received (entries `0..received`).
        received: u64,
        /// Instructions the backup has executed.
        icount: u64,
        /// The guest time the backup has executed up to.
        mtime: u64,
    },
    /// The backup's first message on the logging channel.
    Hello {
        /// The backup's UDP heartbeat port.
        udp_port: u16,
    },
    /// The primary's first message on the logging channel. The log follows;
    /// before it, if `snapshot` is not zero, that many bytes of a snapshot of
    /// the running machine (a new backup joining a primary that runs alone),
    /// from which the log goes on.
    Welcome {
        /// The pair.
        session: u64,
        /// The primary's UDP heartbeat port.
        udp_port: u16,
        /// Length of the machine snapshot before the log; 0: none, the log
        /// starts at power-on.
        snapshot: u64,
        /// The epoch the pairing starts at: 0, or for a new backup joining
        /// a side that runs alone, the epoch that side won (the session
        /// stays the same, so an earlier pairing's side cannot win again).
        epoch: u64,
        /// Disks whose content follows the snapshot (`--non-shared-disk`: a
        /// new backup gets a copy of the running side's disks); 0: none.
        disks: u64,
        /// The snapshot holds no RAM: it came in [`Message::RamRun`]s before
        /// the `Welcome`, and the pages written since follow the snapshot.
        ram_apart: bool,
    },
    /// `count` pages of guest RAM from page `first` on; the bytes follow.
    RamRun {
        /// The first page (RAM offset / 4096).
        first: u64,
        /// Pages (at most [`RAM_RUN_PAGES`]).
        count: u64,
        /// XXH3-64 of the bytes.
        hash: u64,
    },
    /// The end of a RAM copy.
    RamEnd {
        /// Pages sent in [`Message::RamRun`]s in all.
        pages: u64,
    },
    /// The sender's machine configuration record (as in a log header),
    /// `len` bytes, follows.
    Config {
        /// Its length (at most [`CONFIG_MAX`]).
        len: u64,
    },
    /// The content of the disk in `slot` follows, `size` bytes in all.
    DiskImage {
        /// The disk's virtio slot.
        slot: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// `len` bytes of the disk in `slot` at `offset`; the bytes follow.
    DiskData {
        /// The disk's virtio slot.
        slot: u64,
        /// First byte.
        offset: u64,
        /// Number of bytes (at most [`DISK_CHUNK`]).
        len: u64,
        /// XXH3-64 of the bytes.
        hash: u64,
    },
    /// `len` bytes of the disk in `slot` at `offset` read as zeros.
    DiskZero {
        /// The disk's virtio slot.
        slot: u64,
        /// First byte.
        offset: u64,
        /// Number of bytes.
        len: u64,
    },
    /// The end of a disk copy.
    DiskEnd {
        /// Disks copied.
        disks: u64,
        /// Bytes sent in [`Message::DiskData`] in all.
        bytes: u64,
    },
}

/// The most bytes one [`Message::DiskData`] carries.
pub const DISK_CHUNK: u64 = 1 << 20;

/// The most pages (of 4 KiB) one [`Message::RamRun`] carries.
pub const RAM_RUN_PAGES: u64 = 256;

/// The longest configuration record a [`Message::Config`] announces.
pub const CONFIG_MAX: u64 = 1 << 20;

/// Why bytes are not a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Wrong size.
    #[error("a protocol message is {MESSAGE_LEN} bytes, got {0}")]
    Length(usize),
    /// Not ours.
    #[error("not an ftvm protocol message (magic {0:02x?})")]
    Magic([u8; 4]),
    /// Another version.
    #[error("protocol version {0} is not supported (this is version {VERSION})")]
    Version(u8),
    /// Corrupted.
    #[error(
        "protocol message checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        /// In the message.
        stored: u32,
        /// Over its bytes.
        computed: u32,
    },
    /// Unknown kind.
    #[error("unknown protocol message kind {0}")]
    Kind(u8),
    /// A field out of range.
    #[error("malformed protocol message: {0}")]
    Malformed(&'static str),
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Message {
    /// Encodes the message.
    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut out = [0u8; MESSAGE_LEN];
        out[..4].copy_from_slice(MAGIC);
        out[4] = VERSION;
        let (kind, session, fields): (u8, u64, [u64; 5]) = match *self {
            Message::Heartbeat {
                session,
                from,
                epoch,
                released,
                received,
                mtime,
            } => (
                1,
                session,
                [
                    match from {
                        Role::Primary => 0,
                        Role::Backup => 1,
                    },
                    epoch,
                    released,
                    received,
                    mtime,
                ],
            ),
            Message::Ack {
                session,
                received,
                icount,
                mtime,
            } => (2, session, [received, icount, mtime, 0, 0]),
            Message::Hello { udp_port } => (3, 0, [u64::from(udp_port), 0, 0, 0, 0]),
            Message::Welcome {
                session,
                udp_port,
                snapshot,
                epoch,
                disks,
                ram_apart,
            } => (
                4,
                session,
                [
                    u64::from(udp_port),
                    snapshot,
                    epoch,
                    disks,
                    u64::from(ram_apart),
                ],
            ),
            Message::DiskImage { slot, size } => (5, 0, [slot, size, 0, 0, 0]),
            Message::DiskData {
                slot,
                offset,
                len,
                hash,
            } => (6, 0, [slot, offset, len, hash, 0]),
            Message::DiskZero { slot, offset, len } => (7, 0, [slot, offset, len, 0, 0]),
            Message::DiskEnd { disks, bytes } => (8, 0, [disks, bytes, 0, 0, 0]),
            Message::RamRun { first, count, hash } => (9, 0, [first, count, hash, 0, 0]),
            Message::RamEnd { pages } => (10, 0, [pages, 0, 0, 0, 0]),
            Message::Config { len } => (11, 0, [len, 0, 0, 0, 0]),
        };
        out[5] = kind;
        out[8..16].copy_from_slice(&session.to_le_bytes());
        for (i, f) in fields.iter().enumerate() {
            out[16 + 8 * i..24 + 8 * i].copy_from_slice(&f.to_le_bytes());
        }
        let sum = fnv1a(&out[..56]);
        out[56..60].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes one message, checking everything.
    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        if bytes.len() != MESSAGE_LEN {
            return Err(WireError::Length(bytes.len()));
        }
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if &magic != MAGIC {
            return Err(WireError::Magic(magic));
        }
        if bytes[4] != VERSION {
            return Err(WireError::Version(bytes[4]));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let stored = u32::from_le_bytes([bytes[56], bytes[57], bytes[58], bytes[59]]);
        let computed = fnv1a(&bytes[..56]);
        if stored != computed {
            return Err(WireError::Checksum { stored, computed });
        }
        if bytes[6..8] != [0, 0] || bytes[60..] != [0, 0, 0, 0] {
            return Err(WireError::Malformed("padding is not zero"));
        }
        let session = u64_at(8);
        let f: [u64; 5] = std::array::from_fn(|i| u64_at(16 + 8 * i));
        let port = |v: u64| u16::try_from(v).map_err(|_| WireError::Malformed("port above 65535"));
        let unused_zero = |from: usize| {
            if f[from..].iter().all(|&v| v == 0) {
                Ok(())
            } else {
                Err(WireError::Malformed("an unused field is not zero"))
            }
        };
        match bytes[5] {
            1 => Ok(Message::Heartbeat {
                session,
                from: match f[0] {
                    0 => Role::Primary,
                    1 => Role::Backup,
                    _ => return Err(WireError::Malformed("heartbeat sender is neither role")),
                },
                epoch: f[1],
                released: f[2],
                received: f[3],
                mtime: f[4],
            }),
            2 => {
                unused_zero(3)?;
                Ok(Message::Ack {
                    session,
                    received: f[0],
                    icount: f[1],
                    mtime: f[2],
                })
            }
            3 => {
                unused_zero(1)?;
                if session != 0 {
                    return Err(WireError::Malformed("hello carries a session"));
                }
                Ok(Message::Hello {
                    udp_port: port(f[0])?,
                })
            }
            4 => Ok(Message::Welcome {
                session,
                udp_port: port(f[0])?,
                snapshot: f[1],
                epoch: f[2],
                disks: f[3],
                ram_apart: match f[4] {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::Malformed("RAM apart is neither 0 nor 1")),
                },
            }),
            5..=11 if session != 0 => Err(WireError::Malformed(
                "a disk, RAM or configuration message carries a session",
            )),
            5 => {
                unused_zero(2)?;
                Ok(Message::DiskImage {
                    slot: f[0],
                    size: f[1],
                })
            }
            6 => {
                unused_zero(4)?;
                if f[2] == 0 || f[2] > DISK_CHUNK {
                    return Err(WireError::Malformed(
                        "disk data length is zero or above DISK_CHUNK",
                    ));
                }
                Ok(Message::DiskData {
                    slot: f[0],
                    offset: f[1],
                    len: f[2],
                    hash: f[3],
                })
            }
            7 => {
                unused_zero(3)?;
                Ok(Message::DiskZero {
                    slot: f[0],
                    offset: f[1],
                    len: f[2],
                })
            }
            8 => {
                unused_zero(2)?;
                Ok(Message::DiskEnd {
                    disks: f[0],
                    bytes: f[1],
                })
            }
            9 => {
                unused_zero(3)?;
                if f[1] == 0 || f[1] > RAM_RUN_PAGES {
                    return Err(WireError::Malformed(
                        "RAM run page count is zero or above RAM_RUN_PAGES",
                    ));
                }
                Ok(Message::RamRun {
                    first: f[0],
                    count: f[1],
                    hash: f[2],
                })
            }
            10 => {
                unused_zero(1)?;
                Ok(Message::RamEnd { pages: f[0] })
            }
            11 => {
                unused_zero(1)?;
                if f[0] > CONFIG_MAX {
                    return Err(WireError::Malformed(
                        "configuration record longer than CONFIG_MAX",
                    ));
                }
                Ok(Message::Config { len: f[0] })
            }
            k => Err(WireError::Kind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Heartbeat {
                session: 0x1122_3344_5566_7788,
                from: Role::Backup,
                epoch: 3,
                released: 0,
                received: 99,
                mtime: 1_000_000,
            },
            Message::Ack {
                session: 7,
                received: 12,
                icount: 345,
                mtime: 678,
            },
            Message::Hello { udp_port: 40_000 },
            Message::Welcome {
                session: 9,
                udp_port: 7000,
                snapshot: 0,
                epoch: 0,
                disks: 0,
                ram_apart: false,
            },
            Message::Welcome {
                session: 10,
                udp_port: 7001,
                snapshot: 123_456_789,
                epoch: 2,
                disks: 1,
                ram_apart: true,
            },
            Message::DiskImage {
                slot: 0,
                size: 64 << 20,
            },
            Message::DiskData {
                slot: 1,
                offset: 4096,
                len: DISK_CHUNK,
                hash: 0xdead_beef_0123_4567,
            },
            Message::DiskZero {
                slot: 1,
                offset: 1 << 30,
                len: 5 << 30,
            },
            Message::DiskEnd {
                disks: 2,
                bytes: 12_345,
            },
            Message::RamRun {
                first: 7,
                count: RAM_RUN_PAGES,
                hash: 42,
            },
            Message::RamEnd { pages: 1 << 17 },
            Message::Config { len: 300 },
        ]
    }

    #[test]
    fn test_every_message_round_trips() {
        for m in samples() {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn test_ack_golden_bytes() {
        let bytes = Message::Ack {
            session: 1,
            received: 2,
            icount: 3,
            mtime: 4,
        }
        .encode();

        assert_eq!(
            &bytes[..16],
            b"FTVP\x02\x02\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(bytes[16], 2);
        assert_eq!(bytes[24], 3);
        assert_eq!(bytes[32], 4);
        assert_eq!(&bytes[60..], &[0, 0, 0, 0]);
    }

    #[test]
    fn test_a_flipped_bit_anywhere_is_refused() {
        for m in samples() {
            let good = m.encode();
            for bit in 0..MESSAGE_LEN * 8 {
                let mut bad = good;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(Message::decode(&bad).is_err(), "bit {bit} of {m:?}");
            }
        }
    }

    /// `m` with field `i` (0..5) set to `v`, checksum fixed.
    fn with_field(m: Message, i: usize, v: u64) -> [u8; MESSAGE_LEN] {
        let mut b = m.encode();
        b[16 + 8 * i..24 + 8 * i].copy_from_slice(&v.to_le_bytes());
        let sum = fnv1a(&b[..56]);
        b[56..60].copy_from_slice(&sum.to_le_bytes());
        b
    }

    #[test]
    fn test_disk_data_of_no_bytes_or_above_the_chunk_is_refused() {
        let m = Message::DiskData {
            slot: 0,
            offset: 0,
            len: 1,
            hash: 0,
        };
        for len in [0, DISK_CHUNK + 1, u64::MAX] {
            assert!(
                matches!(
                    Message::decode(&with_field(m, 2, len)),
                    Err(WireError::Malformed(_))
                ),
                "length {len}"
            );
        }
    }

    #[test]
    fn test_ram_run_of_no_pages_or_above_the_most_and_welcome_flag_above_1_are_refused() {
        let m = Message::RamRun {
            first: 0,
            count: 1,
            hash: 0,
        };
        for count in [0, RAM_RUN_PAGES + 1] {
            assert!(matches!(
                Message::decode(&with_field(m, 1, count)),
                Err(WireError::Malformed(_))
            ));
        }
        let w = Message::Welcome {
            session: 1,
            udp_port: 1,
            snapshot: 1,
            epoch: 0,
            disks: 0,
            ram_apart: true,
        };
        assert!(matches!(
            Message::decode(&with_field(w, 4, 2)),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn test_disk_message_with_a_session_or_a_stray_field_is_refused() {
        let m = Message::DiskEnd { disks: 1, bytes: 2 };
        assert!(matches!(
            Message::decode(&with_field(m, 4, 1)),
            Err(WireError::Malformed(_))
        ));
        let mut b = m.encode();
        b[8] = 1;
        let sum = fnv1a(&b[..56]);
        b[56..60].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(Message::decode(&b), Err(WireError::Malformed(_))));
    }

    #[test]
    fn test_wrong_length_magic_version_and_kind_are_named() {
        let good = samples()[0].encode();
        assert_eq!(Message::decode(&good[..63]), Err(WireError::Length(63)));
        let mut bad = good;
        bad[0] = b'X';
        assert!(matches!(Message::decode(&bad), Err(WireError::Magic(_))));
        let mut bad = good;
        bad[4] = 1;
        assert_eq!(Message::decode(&bad), Err(WireError::Version(1)));
        let mut bad = good;
        bad[5] = 12;
        let sum = fnv1a(&bad[..56]);
        bad[56..60].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(Message::decode(&bad), Err(WireError::Kind(12)));
    }
}
