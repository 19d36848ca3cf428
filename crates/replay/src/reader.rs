//! Reading a log.

use crate::crc::{crc32c, Crc32c};
use crate::error::LogError;
use crate::event::{DecodeError, Event, Header, VERSION};
use crate::{FRAME_OVERHEAD, MAGIC, MAX_CONFIG_LEN, MAX_FRAME_LEN};
use std::io::{self, BufRead, Read};

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The frame's sequence number: 0 for the first, then one more each frame.
    pub seq: u64,
    /// The retired-instruction count at which the event took effect.
    pub icount: u64,
    /// The event.
    pub event: Event,
}

/// Reads a log one frame at a time, checking every frame before returning it.
///
/// Memory stays bounded by the largest frame whatever the log's length, and the
/// reader never seeks, so `R` may be a socket. A declared length is checked
/// against [`MAX_FRAME_LEN`] before anything is allocated, and the frame buffer
/// grows only as bytes actually arrive. A frame that `R`'s buffer already holds
/// whole is checked and decoded where it lies, without being copied out first.
#[derive(Debug)]
pub struct LogReader<R: BufRead> {
    inner: R,
    /// Bytes consumed from the stream.
    offset: u64,
    next_seq: u64,
    last_icount: u64,
    ended: bool,
    failed: bool,
    /// The frame being read (after its length field), kept to reuse its allocation.
    buf: Vec<u8>,
}

/// Fills `buf` from `r` until it is full or the stream ends; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Header bytes after the magic: version, configuration length, CRC.
const HEADER_FIXED_AFTER_MAGIC: u64 = 2 + 4 + 4;

impl<R: BufRead> LogReader<R> {
    /// Reads and checks the stream header.
    pub fn new(mut inner: R) -> Result<(Self, Header), LogError> {
        let mut crc = Crc32c::new();
        let mut magic = [0u8; 8];
        let got = read_up_to(&mut inner, &mut magic)?;
        if magic[..got] != MAGIC[..got] {
            return Err(LogError::BadMagic {
                found: magic[..got].to_vec(),
            });
        }
        let mut offset = got as u64;
        let truncated = |offset: u64, needed: u64| LogError::TruncatedHeader { offset, needed };
        if got < MAGIC.len() {
            let needed = (MAGIC.len() - got) as u64 + HEADER_FIXED_AFTER_MAGIC;
            return Err(truncated(offset, needed));
        }
        crc.update(&magic);

        let mut version = [0u8; 2];
        let got = read_up_to(&mut inner, &mut version)?;
        offset += got as u64;
        if got < version.len() {
            return Err(truncated(offset, (2 - got) as u64 + 4 + 4));
        }
        let found = u16::from_le_bytes(version);
        if found != VERSION {
            return Err(LogError::UnsupportedVersion {
                found,
                supported: VERSION,
            });
        }
        crc.update(&version);

        let mut len = [0u8; 4];
        let got = read_up_to(&mut inner, &mut len)?;
        offset += got as u64;
        if got < len.len() {
            return Err(truncated(offset, (4 - got) as u64 + 4));
        }
        let config_len = u32::from_le_bytes(len);
        if config_len > MAX_CONFIG_LEN {
            return Err(LogError::HeaderTooLarge {
                len: config_len,
                max: MAX_CONFIG_LEN,
            });
        }
        crc.update(&len);

        let rest = u64::from(config_len) + 4;
        let mut bytes = Vec::new();
        let got = (&mut inner).take(rest).read_to_end(&mut bytes)? as u64;
        offset += got;
        if got < rest {
            return Err(truncated(offset, rest - got));
        }
        let (config, stored) = bytes.split_at(bytes.len() - 4);
        crc.update(config);
        let computed = crc.finish();
        let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
        if stored != computed {
            return Err(LogError::HeaderChecksum { stored, computed });
        }
        bytes.truncate(config.len());
        let header = Header {
            version: found,
            config: bytes,
        };
        let reader = LogReader {
            inner,
            offset,
            next_seq: 0,
            last_icount: 0,
            ended: false,
            failed: false,
            buf: Vec::new(),
        };
        Ok((reader, header))
    }

    /// The next entry; `Ok(None)` when the stream ends cleanly after a complete
    /// frame. After an error every further call fails with [`LogError::Stopped`]:
    /// the stream position is no longer at a frame boundary.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible: Ok(None) is a clean end, distinct from an error"
    )]
    pub fn next(&mut self) -> Result<Option<Entry>, LogError> {
        if self.failed {
            return Err(LogError::Stopped {
                offset: self.offset,
            });
        }
        let result = self.read_frame();
        self.failed = result.is_err();
        result
    }

    fn read_frame(&mut self) -> Result<Option<Entry>, LogError> {
        let start = self.offset;
        let seq = self.next_seq;
        let mut len = [0u8; 4];
        let got = read_up_to(&mut self.inner, &mut len)?;
        self.offset += got as u64;
        if got == 0 {
            return Ok(None);
        }
        if got < len.len() {
            let needed = (FRAME_OVERHEAD - got) as u64;
            return Err(LogError::Truncated {
                offset: self.offset,
                seq,
                needed,
            });
        }
        let len = u32::from_le_bytes(len);
        if len > MAX_FRAME_LEN {
            return Err(LogError::FrameTooLarge {
                offset: start,
                len,
                max: MAX_FRAME_LEN,
            });
        }

        // seq, icount, kind, payload, crc.
        let rest = (FRAME_OVERHEAD - 4) as u64 + u64::from(len);
        // What the source has buffered (reading more if it holds nothing).
        loop {
            match self.inner.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
                Ok(_) => break,
            }
        }
        let buffered = self.inner.fill_buf()?;
        let entry = if buffered.len() as u64 >= rest {
            // The whole frame is in the source's buffer: check it there.
            let rest = rest as usize;
            let entry = check_frame(&buffered[..rest], start, seq, self.last_icount, self.ended);
            self.inner.consume(rest);
            self.offset += rest as u64;
            entry?
        } else {
            self.buf.clear();
            let got = (&mut self.inner).take(rest).read_to_end(&mut self.buf)? as u64;
            self.offset += got;
            if got < rest {
                return Err(LogError::Truncated {
                    offset: self.offset,
                    seq,
                    needed: rest - got,
                });
            }
            check_frame(&self.buf, start, seq, self.last_icount, self.ended)?
        };
        self.next_seq += 1;
        self.last_icount = entry.icount;
        self.ended = matches!(entry.event, Event::End { .. });
        Ok(Some(entry))
    }

    /// Bytes consumed from the stream so far, header included.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The sequence number of the next frame expected (the number of entries read).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Whether the [`Event::End`] entry has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Checks and decodes a frame after its length field (`frame`: seq, icount,
/// kind, payload, CRC) that starts at stream offset `start` and should carry
/// `seq`, after an entry at `last_icount` (and after the End event if `ended`).
fn check_frame(
    frame: &[u8],
    start: u64,
    seq: u64,
    last_icount: u64,
    ended: bool,
) -> Result<Entry, LogError> {
    let (body, stored) = frame.split_at(frame.len() - 4);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    let computed = crc32c(body);
    if stored != computed {
        return Err(LogError::Checksum {
            offset: start,
            seq,
            stored,
            computed,
        });
    }
    let (seq_bytes, body) = body.split_at(8);
    let (icount_bytes, body) = body.split_at(8);
    let (kind, payload) = body.split_at(1);
    let found = u64::from_le_bytes(le8(seq_bytes));
    if found != seq {
        return Err(LogError::SequenceGap {
            offset: start,
            expected: seq,
            found,
        });
    }
    let icount = u64::from_le_bytes(le8(icount_bytes));
    if icount < last_icount {
        return Err(LogError::IcountWentBack {
            seq,
            previous: last_icount,
            found: icount,
        });
    }
    if ended {
        return Err(LogError::AfterEnd { offset: start, seq });
    }
    let event = Event::decode(kind[0], payload).map_err(|e| match e {
        DecodeError::UnknownKind(kind) => LogError::UnknownKind {
            offset: start,
            seq,
            kind,
        },
        DecodeError::Malformed(what) => LogError::Malformed {
            offset: start,
            seq,
            what,
        },
    })?;
    Ok(Entry { seq, icount, event })
}

/// The first eight bytes of `bytes` (which has at least eight).
fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

/// Decodes a whole log held in memory: the header and every entry, or the first
/// error. Pure and total (never panics, whatever `bytes` holds): the fuzzing entry point.
pub fn decode_all(bytes: &[u8]) -> Result<(Header, Vec<Entry>), LogError> {
    let (mut reader, header) = LogReader::new(bytes)?;
    let mut entries = Vec::new();
    while let Some(entry) = reader.next()? {
        entries.push(entry);
    }
    Ok((header, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, LogWriter};

    fn header_then(tail: &[u8]) -> Vec<u8> {
        let mut log = LogWriter::new(Vec::new(), &Header::new(Vec::new()))
            .expect("should succeed")
            .into_inner();
        log.extend_from_slice(tail);
        log
    }

    #[test]
    fn test_oversized_length_is_rejected_without_allocating() {
        let log = header_then(&u32::MAX.to_le_bytes());
        let (mut reader, _) = LogReader::new(&log[..]).expect("should succeed");

        let err = reader.next().expect_err("should be rejected");

        assert!(
            matches!(err, LogError::FrameTooLarge { len: u32::MAX, .. }),
            "{err:?}"
        );
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[test]
    fn test_maximal_length_on_a_short_stream_allocates_only_what_arrived() {
        let log = header_then(&[&MAX_FRAME_LEN.to_le_bytes()[..], &[0u8; 100]].concat());
        let (mut reader, _) = LogReader::new(&log[..]).expect("should succeed");

        let err = reader.next().expect_err("should be rejected");

        assert!(matches!(err, LogError::Truncated { .. }), "{err:?}");
        assert!(
            reader.buf.capacity() < 64 * 1024,
            "{}",
            reader.buf.capacity()
        );
    }
}
