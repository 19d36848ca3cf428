//! Writing a log.

use crate::crc::{crc32c, Crc32c};
use crate::event::{
    encode_completion_head, encode_completion_payload, kind, Event, Header, TooLong, VERSION,
};
use crate::{FRAME_OVERHEAD, MAGIC, MAX_CONFIG_LEN, MAX_FRAME_LEN};
use ftvm_devices::virtio::BackendCompletion;
use std::io::{self, IoSlice, Write};

/// Writes a log: the header at creation, then one frame per [`write`](Self::write).
///
/// The writer refuses (with [`io::ErrorKind::InvalidInput`]) anything the reader
/// would reject: an icount below the previous one, a frame above
/// [`MAX_FRAME_LEN`], an entry after [`Event::End`]. After an I/O error it refuses
/// every further write, since the stream may hold a partial frame.
///
/// Frames go to `W` one at a time: one `write_all`, or for a completion carrying
/// at least [`BORROWED_DATA`] bytes, writes of three slices (the frame up to the
/// data, the completion's own data, the CRC) that together are the frame, so that
/// the data is not copied into the frame first. Wrap a file in a `BufWriter` and
/// call [`flush`](Self::flush) where the data must be out (the FT output rule).
#[derive(Debug)]
pub struct LogWriter<W: Write> {
    inner: W,
    next_seq: u64,
    last_icount: u64,
    bytes_written: u64,
    ended: bool,
    failed: bool,
    /// The frame being built, kept to reuse its allocation.
    frame: Vec<u8>,
}

/// Completion data of at least this many bytes goes to the underlying writer as
/// its own slice (see [`LogWriter`]).
pub const BORROWED_DATA: usize = 4096;

/// Writes all of `slices`, in order, with `write_vectored`.
fn write_all_slices(w: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "failed to write a whole log frame",
                ))
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl<W: Write> LogWriter<W> {
    /// Writes the stream header to `inner`.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] if `header.version` is not
    /// [`VERSION`] or its configuration is longer than [`MAX_CONFIG_LEN`].
    pub fn new(mut inner: W, header: &Header) -> io::Result<Self> {
        if header.version != VERSION {
            return Err(invalid(
                "log header version is not the version this build writes",
            ));
        }
        let config_len = u32::try_from(header.config.len())
            .ok()
            .filter(|&len| len <= MAX_CONFIG_LEN)
            .ok_or_else(|| invalid("log header configuration is larger than MAX_CONFIG_LEN"))?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 2 + 4 + header.config.len() + 4);
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&header.version.to_le_bytes());
        bytes.extend_from_slice(&config_len.to_le_bytes());
        bytes.extend_from_slice(&header.config);
        let crc = crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        inner.write_all(&bytes)?;
        Ok(LogWriter {
            inner,
            next_seq: 0,
            last_icount: 0,
            bytes_written: bytes.len() as u64,
            ended: false,
            failed: false,
            frame: Vec::new(),
        })
    }

    /// Appends `event`, which took effect at `icount`, as the next frame.
    ///
    /// An empty [`Event::ConsoleInput`] is not written (no entry means no input)
    /// and takes no sequence number.
    pub fn write(&mut self, icount: u64, event: &Event) -> io::Result<()> {
        if matches!(event, Event::ConsoleInput { bytes } if bytes.is_empty()) {
            return self.check(icount);
        }
        self.write_frame(icount, event.kind(), |out| event.encode_payload(out))
    }

    /// Appends an [`Event::Completion`] of `completion` in `slot` without taking
    /// the completion (its data is not copied): the same bytes as [`write`](Self::write)
    /// of that event.
    pub fn write_completion(
        &mut self,
        icount: u64,
        slot: u8,
        completion: &BackendCompletion,
    ) -> io::Result<()> {
        let (BackendCompletion::Block { data, .. }
        | BackendCompletion::NetRx { frame: data }
        | BackendCompletion::Entropy { data, .. }) = completion;
        if data.len() < BORROWED_DATA {
            return self.write_frame(icount, kind::COMPLETION, |out| {
                encode_completion_payload(out, slot, completion)
            });
        }
        self.check(icount)?;
        self.frame.clear();
        self.frame.extend_from_slice(&[0; 4]); // length, filled in below
        self.frame.extend_from_slice(&self.next_seq.to_le_bytes());
        self.frame.extend_from_slice(&icount.to_le_bytes());
        self.frame.push(kind::COMPLETION);
        let data = encode_completion_head(&mut self.frame, slot, completion)
            .map_err(|_| invalid("log entry byte string is longer than 4 GiB"))?;
        let payload_len = u32::try_from(self.frame.len() - (FRAME_OVERHEAD - 4) + data.len())
            .ok()
            .filter(|&len| len <= MAX_FRAME_LEN)
            .ok_or_else(|| invalid("log entry payload is larger than MAX_FRAME_LEN"))?;
        self.frame[..4].copy_from_slice(&payload_len.to_le_bytes());
        let mut crc = Crc32c::new();
        crc.update(&self.frame[4..]);
        crc.update(data);
        let crc = crc.finish().to_le_bytes();
        let mut slices = [
            IoSlice::new(&self.frame),
            IoSlice::new(data),
            IoSlice::new(&crc),
        ];
        if let Err(e) = write_all_slices(&mut self.inner, &mut slices) {
            self.failed = true;
            return Err(e);
        }
        self.wrote(
            icount,
            kind::COMPLETION,
            self.frame.len() + data.len() + crc.len(),
        );
        Ok(())
    }

    /// Whether an entry at `icount` may be written now.
    fn check(&self, icount: u64) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "log writer failed earlier; the log is incomplete",
            ));
        }
        if self.ended {
            return Err(invalid("log entry after the End event"));
        }
        if icount < self.last_icount {
            return Err(invalid("log entry icount is below the previous entry's"));
        }
        Ok(())
    }

    /// Writes one frame of kind `kind` whose payload `encode` appends.
    fn write_frame(
        &mut self,
        icount: u64,
        kind: u8,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), TooLong>,
    ) -> io::Result<()> {
        self.check(icount)?;
        self.frame.clear();
        self.frame.extend_from_slice(&[0; 4]); // length, filled in below
        self.frame.extend_from_slice(&self.next_seq.to_le_bytes());
        self.frame.extend_from_slice(&icount.to_le_bytes());
        self.frame.push(kind);
        encode(&mut self.frame)
            .map_err(|_| invalid("log entry byte string is longer than 4 GiB"))?;
        let payload_len = u32::try_from(self.frame.len() - (FRAME_OVERHEAD - 4))
            .ok()
            .filter(|&len| len <= MAX_FRAME_LEN)
            .ok_or_else(|| invalid("log entry payload is larger than MAX_FRAME_LEN"))?;
        self.frame[..4].copy_from_slice(&payload_len.to_le_bytes());
        let crc = crc32c(&self.frame[4..]);
        self.frame.extend_from_slice(&crc.to_le_bytes());
        if let Err(e) = self.inner.write_all(&self.frame) {
            self.failed = true;
            return Err(e);
        }
        self.wrote(icount, kind, self.frame.len());
        Ok(())
    }

    /// Counts a frame of `kind` and `len` bytes at `icount` as written.
    fn wrote(&mut self, icount: u64, kind: u8, len: usize) {
        self.bytes_written += len as u64;
        self.next_seq += 1;
        self.last_icount = icount;
        self.ended = kind == kind::END;
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// The underlying writer (not flushed: call [`flush`](Self::flush) first if it buffers).
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Bytes handed to the underlying writer so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// The sequence number the next frame will carry (the number of frames written).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}
