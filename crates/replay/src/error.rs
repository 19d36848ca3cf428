//! What can be wrong with a log being read.

/// Why a log could not be read. Every variant names the byte offset in the stream
/// and, inside the frame stream, the sequence number of the frame concerned (the
/// one expected at that position: a corrupt frame's own `seq` field is not trusted).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The stream does not start with [`MAGIC`](crate::MAGIC).
    #[error("Not an ftvm log: it starts with {found:02x?}, not the magic \"FTVMLOG\\0\"")]
    BadMagic {
        /// The first bytes of the stream (at most 8).
        found: Vec<u8>,
    },
    /// The log was written in a format version this reader does not speak.
    #[error("Log format version {found} is not supported by this build (it reads version {supported}); record the run again")]
    UnsupportedVersion {
        /// The version in the header.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The stream ends inside the header.
    #[error("Log header truncated: the stream ends at byte {offset}, at least {needed} more bytes needed")]
    TruncatedHeader {
        /// Where the stream ends.
        offset: u64,
        /// Bytes missing (a lower bound while the configuration length is unknown).
        needed: u64,
    },
    /// The header's configuration length is above [`MAX_CONFIG_LEN`](crate::MAX_CONFIG_LEN).
    #[error("Log header declares a configuration of {len} bytes, more than the maximum of {max}")]
    HeaderTooLarge {
        /// The declared length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// The header's CRC-32C does not match its bytes.
    #[error("Log header is corrupt: stored CRC-32C {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum {
        /// The CRC stored after the header.
        stored: u32,
        /// The CRC of the header's bytes as read.
        computed: u32,
    },
    /// The stream ends inside a frame.
    #[error("Log truncated in frame {seq}: the stream ends at byte {offset}, at least {needed} more bytes needed")]
    Truncated {
        /// Where the stream ends.
        offset: u64,
        /// The frame cut short.
        seq: u64,
        /// Bytes missing from the frame (a lower bound when its length field is cut).
        needed: u64,
    },
    /// A frame's CRC-32C does not match its bytes.
    #[error("Frame {seq} at byte {offset} is corrupt: stored CRC-32C {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// Where the frame starts.
        offset: u64,
        /// The frame's expected sequence number.
        seq: u64,
        /// The CRC stored at the end of the frame.
        stored: u32,
        /// The CRC of the frame's bytes as read.
        computed: u32,
    },
    /// A frame does not carry the next sequence number: frames were lost or replayed.
    #[error("Frame at byte {offset} has sequence number {found}, expected {expected}")]
    SequenceGap {
        /// Where the frame starts.
        offset: u64,
        /// The sequence number that should come next.
        expected: u64,
        /// The sequence number in the frame.
        found: u64,
    },
    /// A frame's instruction count is below the previous frame's.
    #[error("Frame {seq} goes back in time: icount {found} after icount {previous}")]
    IcountWentBack {
        /// The frame.
        seq: u64,
        /// The previous frame's icount.
        previous: u64,
        /// This frame's icount.
        found: u64,
    },
    /// A frame's length field is above [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).
    #[error(
        "Frame at byte {offset} declares a payload of {len} bytes, more than the maximum of {max}"
    )]
    FrameTooLarge {
        /// Where the frame starts.
        offset: u64,
        /// The declared payload length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// A frame's kind byte names no event of this format version.
    #[error("Frame {seq} at byte {offset} has unknown event kind {kind}")]
    UnknownKind {
        /// Where the frame starts.
        offset: u64,
        /// The frame.
        seq: u64,
        /// The kind byte.
        kind: u8,
    },
    /// A frame's payload does not decode as its kind says.
    #[error("Frame {seq} at byte {offset} is malformed: {what}")]
    Malformed {
        /// Where the frame starts.
        offset: u64,
        /// The frame.
        seq: u64,
        /// What is wrong with the payload.
        what: &'static str,
    },
    /// A frame follows the `End` event, which must be the last one.
    #[error("Frame {seq} at byte {offset} follows the End event")]
    AfterEnd {
        /// Where the frame starts.
        offset: u64,
        /// The frame.
        seq: u64,
    },
    /// [`LogReader::next`](crate::LogReader::next) was called again after it returned an error.
    #[error("The log reader stopped at byte {offset} after an earlier error")]
    Stopped {
        /// Where the reader stopped.
        offset: u64,
    },
    /// Reading the underlying stream failed.
    #[error("Reading the log failed: {0}")]
    Io(#[from] std::io::Error),
}
