//! The NBD wire format: magic numbers, flags, and pure encoders and parsers.
//!
//! Everything here works on byte slices and never does I/O, so it can be fuzzed.
//! All numbers are big-endian (NBD protocol, "Conventions").

use super::NbdError;

/// `NBDMAGIC`, first word of the server's greeting.
pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
/// `IHAVEOPT`, second word of a newstyle greeting and prefix of every option.
pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
/// Magic of every option reply in fixed newstyle negotiation.
pub const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
/// `NBD_REQUEST_MAGIC`.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_SIMPLE_REPLY_MAGIC`.
pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

/// Handshake flag `NBD_FLAG_FIXED_NEWSTYLE`.
pub const NBD_FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
/// Handshake flag `NBD_FLAG_NO_ZEROES`.
pub const NBD_FLAG_NO_ZEROES: u16 = 1 << 1;
/// Client flag `NBD_FLAG_C_FIXED_NEWSTYLE`.
pub const NBD_FLAG_C_FIXED_NEWSTYLE: u32 = 1 << 0;
/// Client flag `NBD_FLAG_C_NO_ZEROES`.
pub const NBD_FLAG_C_NO_ZEROES: u32 = 1 << 1;

/// Transmission flag `NBD_FLAG_HAS_FLAGS`.
pub const NBD_FLAG_HAS_FLAGS: u16 = 1 << 0;
/// Transmission flag `NBD_FLAG_READ_ONLY`.
pub const NBD_FLAG_READ_ONLY: u16 = 1 << 1;
/// Transmission flag `NBD_FLAG_SEND_FLUSH`.
pub const NBD_FLAG_SEND_FLUSH: u16 = 1 << 2;
/// Transmission flag `NBD_FLAG_SEND_TRIM`.
pub const NBD_FLAG_SEND_TRIM: u16 = 1 << 5;

/// Option `NBD_OPT_EXPORT_NAME`.
pub const NBD_OPT_EXPORT_NAME: u32 = 1;
/// Option `NBD_OPT_GO`.
pub const NBD_OPT_GO: u32 = 7;

/// Option reply `NBD_REP_ACK`.
pub const NBD_REP_ACK: u32 = 1;
/// Option reply `NBD_REP_INFO`.
pub const NBD_REP_INFO: u32 = 3;
/// Bit 31 marks an option reply as an error.
pub const NBD_REP_FLAG_ERROR: u32 = 1 << 31;
/// Option reply `NBD_REP_ERR_UNSUP`.
pub const NBD_REP_ERR_UNSUP: u32 = NBD_REP_FLAG_ERROR | 1;

/// Information type `NBD_INFO_EXPORT`.
pub const NBD_INFO_EXPORT: u16 = 0;

/// Command `NBD_CMD_READ`.
pub const NBD_CMD_READ: u16 = 0;
/// Command `NBD_CMD_WRITE`.
pub const NBD_CMD_WRITE: u16 = 1;
/// Command `NBD_CMD_DISC`.
pub const NBD_CMD_DISC: u16 = 2;
/// Command `NBD_CMD_FLUSH`.
pub const NBD_CMD_FLUSH: u16 = 3;
/// Command `NBD_CMD_TRIM`.
pub const NBD_CMD_TRIM: u16 = 4;

/// Length of the server's greeting: magic, `IHAVEOPT`, handshake flags.
pub const GREETING_LEN: usize = 18;
/// Length of an option reply header.
pub const OPTION_REPLY_HEADER_LEN: usize = 20;
/// Length of a request header.
pub const REQUEST_LEN: usize = 28;
/// Length of a simple reply header.
pub const SIMPLE_REPLY_LEN: usize = 16;
/// Length of the reply to `NBD_OPT_EXPORT_NAME` without the 124 reserved zeros.
pub const EXPORT_NAME_REPLY_LEN: usize = 10;
/// The reserved zeros after that reply, unless `NO_ZEROES` was negotiated.
pub const EXPORT_NAME_REPLY_ZEROES: usize = 124;
/// Strings (export names, messages) are at most this long (NBD protocol, "Conventions").
pub const MAX_STRING_LEN: usize = 4096;

fn be_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}

fn need(what: &'static str, bytes: &[u8], needed: usize) -> Result<(), NbdError> {
    if bytes.len() < needed {
        return Err(NbdError::Truncated {
            what,
            needed,
            got: bytes.len(),
        });
    }
    Ok(())
}

/// Parses the server's greeting and returns its handshake flags.
pub fn parse_greeting(bytes: &[u8]) -> Result<u16, NbdError> {
    need("server greeting", bytes, GREETING_LEN)?;
    let magic = be_u64(bytes, 0);
    if magic != NBDMAGIC {
        return Err(NbdError::BadMagic {
            what: "greeting",
            found: magic,
            expected: NBDMAGIC,
        });
    }
    let style = be_u64(bytes, 8);
    if style != IHAVEOPT {
        return Err(NbdError::NotNewstyle { found: style });
    }
    Ok(be_u16(bytes, 16))
}

/// Encodes an option: `IHAVEOPT`, option, length, data.
pub fn encode_option(option: u32, data: &[u8]) -> Result<Vec<u8>, NbdError> {
    let len = u32::try_from(data.len()).map_err(|_| NbdError::OptionTooLong { len: data.len() })?;
    let mut out = Vec::with_capacity(16 + data.len());
    out.extend_from_slice(&IHAVEOPT.to_be_bytes());
    out.extend_from_slice(&option.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(out)
}

/// Encodes the data of `NBD_OPT_GO`: name length, name, and no information requests
/// (the server sends `NBD_INFO_EXPORT` regardless).
pub fn encode_go_data(export: &str) -> Result<Vec<u8>, NbdError> {
    if export.len() > MAX_STRING_LEN {
        return Err(NbdError::ExportNameTooLong { len: export.len() });
    }
    let mut out = Vec::with_capacity(6 + export.len());
    out.extend_from_slice(&(export.len() as u32).to_be_bytes());
    out.extend_from_slice(export.as_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    Ok(out)
}

/// The header of an option reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionReplyHeader {
    /// The option answered.
    pub option: u32,
    /// `NBD_REP_*`.
    pub reply_type: u32,
    /// Length of the data that follows.
    pub len: u32,
}

/// Parses an option reply header.
pub fn parse_option_reply_header(bytes: &[u8]) -> Result<OptionReplyHeader, NbdError> {
    need("option reply header", bytes, OPTION_REPLY_HEADER_LEN)?;
    let magic = be_u64(bytes, 0);
    if magic != OPTION_REPLY_MAGIC {
        return Err(NbdError::BadMagic {
            what: "option reply",
            found: magic,
            expected: OPTION_REPLY_MAGIC,
        });
    }
    Ok(OptionReplyHeader {
        option: be_u32(bytes, 8),
        reply_type: be_u32(bytes, 12),
        len: be_u32(bytes, 16),
    })
}

/// What the server said about the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// Size in bytes.
    pub size: u64,
    /// Transmission flags (`NBD_FLAG_*`).
    pub flags: u16,
}

/// Parses the data of an `NBD_REP_INFO` reply: `Some` for `NBD_INFO_EXPORT`, `None`
/// for information types this client does not use.
pub fn parse_info(bytes: &[u8]) -> Result<Option<ExportInfo>, NbdError> {
    need("NBD_REP_INFO", bytes, 2)?;
    if be_u16(bytes, 0) != NBD_INFO_EXPORT {
        return Ok(None);
    }
    need("NBD_INFO_EXPORT", bytes, 12)?;
    Ok(Some(ExportInfo {
        size: be_u64(bytes, 2),
        flags: be_u16(bytes, 10),
    }))
}

/// Parses the reply to `NBD_OPT_EXPORT_NAME`: size and transmission flags.
pub fn parse_export_name_reply(bytes: &[u8]) -> Result<ExportInfo, NbdError> {
    need("NBD_OPT_EXPORT_NAME reply", bytes, EXPORT_NAME_REPLY_LEN)?;
    Ok(ExportInfo {
        size: be_u64(bytes, 0),
        flags: be_u16(bytes, 8),
    })
}

/// A transmission request header (the data of a write follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Command flags (`NBD_CMD_FLAG_*`).
    pub flags: u16,
    /// `NBD_CMD_*`.
    pub command: u16,
    /// The handle (cookie) the reply will carry.
    pub handle: u64,
    /// First byte.
    pub offset: u64,
    /// Number of bytes.
    pub len: u32,
}

impl Request {
    /// The 28 bytes of the header.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0; REQUEST_LEN];
        out[0..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        out[4..6].copy_from_slice(&self.flags.to_be_bytes());
        out[6..8].copy_from_slice(&self.command.to_be_bytes());
        out[8..16].copy_from_slice(&self.handle.to_be_bytes());
        out[16..24].copy_from_slice(&self.offset.to_be_bytes());
        out[24..28].copy_from_slice(&self.len.to_be_bytes());
        out
    }
}

/// A simple reply header (the data of a successful read follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimpleReply {
    /// 0, or an errno value (`NBD_EIO` and friends).
    pub error: u32,
    /// The handle of the request answered.
    pub handle: u64,
}

/// Parses the 16-byte simple reply header at the start of `bytes`.
pub fn parse_simple_reply(bytes: &[u8]) -> Result<SimpleReply, NbdError> {
    need("simple reply", bytes, SIMPLE_REPLY_LEN)?;
    let magic = be_u32(bytes, 0);
    if magic != SIMPLE_REPLY_MAGIC {
        return Err(NbdError::BadMagic {
            what: "simple reply",
            found: u64::from(magic),
            expected: u64::from(SIMPLE_REPLY_MAGIC),
        });
    }
    Ok(SimpleReply {
        error: be_u32(bytes, 4),
        handle: be_u64(bytes, 8),
    })
}

/// The name of an `NBD_REP_ERR_*` reply type.
pub fn option_error_name(reply_type: u32) -> &'static str {
    match reply_type ^ NBD_REP_FLAG_ERROR {
        1 => "NBD_REP_ERR_UNSUP",
        2 => "NBD_REP_ERR_POLICY",
        3 => "NBD_REP_ERR_INVALID",
        4 => "NBD_REP_ERR_PLATFORM",
        5 => "NBD_REP_ERR_TLS_REQD",
        6 => "NBD_REP_ERR_UNKNOWN",
        7 => "NBD_REP_ERR_SHUTDOWN",
        8 => "NBD_REP_ERR_BLOCK_SIZE_REQD",
        9 => "NBD_REP_ERR_TOO_BIG",
        _ => "unknown error",
    }
}

/// The name of an error value of a simple reply.
pub fn errno_name(errno: u32) -> &'static str {
    match errno {
        1 => "EPERM",
        5 => "EIO",
        12 => "ENOMEM",
        22 => "EINVAL",
        28 => "ENOSPC",
        75 => "EOVERFLOW",
        95 => "ENOTSUP",
        108 => "ESHUTDOWN",
        _ => "unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_simple_reply_reads_error_and_handle() {
        let bytes = [
            0x67, 0x44, 0x66, 0x98, // NBD_SIMPLE_REPLY_MAGIC
            0x00, 0x00, 0x00, 0x05, // error: EIO
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // handle
        ];

        let reply = parse_simple_reply(&bytes);

        assert_eq!(
            reply.ok(),
            Some(SimpleReply {
                error: 5,
                handle: 0x0102_0304_0506_0708
            })
        );
    }

    #[test]
    fn test_parse_simple_reply_rejects_structured_reply_magic() {
        let mut bytes = [0u8; 16];
        bytes[0..4].copy_from_slice(&0x668e_33efu32.to_be_bytes());

        let reply = parse_simple_reply(&bytes);

        assert!(matches!(
            reply,
            Err(NbdError::BadMagic {
                found: 0x668e_33ef,
                ..
            })
        ));
    }

    #[test]
    fn test_parse_simple_reply_rejects_truncated_header() {
        let reply = parse_simple_reply(&SIMPLE_REPLY_MAGIC.to_be_bytes());

        assert!(matches!(
            reply,
            Err(NbdError::Truncated {
                needed: 16,
                got: 4,
                ..
            })
        ));
    }

    #[test]
    fn test_request_encodes_big_endian_fields() {
        let request = Request {
            flags: 0,
            command: NBD_CMD_WRITE,
            handle: 7,
            offset: 0x200,
            len: 0x1000,
        };

        let bytes = request.encode();

        assert_eq!(
            bytes,
            [
                0x25, 0x60, 0x95, 0x13, // NBD_REQUEST_MAGIC
                0x00, 0x00, // command flags
                0x00, 0x01, // NBD_CMD_WRITE
                0, 0, 0, 0, 0, 0, 0, 7, // handle
                0, 0, 0, 0, 0, 0, 0x02, 0x00, // offset
                0x00, 0x00, 0x10, 0x00, // length
            ]
        );
    }

    #[test]
    fn test_parse_greeting_rejects_oldstyle_server() {
        let mut bytes = [0u8; 18];
        bytes[0..8].copy_from_slice(&NBDMAGIC.to_be_bytes());
        bytes[8..16].copy_from_slice(&0x0000_4202_8186_1253_u64.to_be_bytes());

        let flags = parse_greeting(&bytes);

        assert!(matches!(flags, Err(NbdError::NotNewstyle { .. })));
    }

    #[test]
    fn test_parse_info_reads_export_size_and_flags() {
        let bytes = [
            0x00, 0x00, // NBD_INFO_EXPORT
            0, 0, 0, 0, 0, 0x10, 0, 0, // size: 1 MiB
            0x00, 0x07, // HAS_FLAGS | READ_ONLY | SEND_FLUSH
        ];

        let info = parse_info(&bytes);

        assert_eq!(
            info.ok(),
            Some(Some(ExportInfo {
                size: 1 << 20,
                flags: 7
            }))
        );
    }

    #[test]
    fn test_encode_go_data_lays_out_name_and_no_requests() {
        let data = encode_go_data("ab");

        assert_eq!(data.ok(), Some(vec![0, 0, 0, 2, b'a', b'b', 0, 0]));
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn test_parse_simple_reply_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
                let _ = parse_simple_reply(&bytes);
            }

            #[test]
            fn test_parse_simple_reply_rejects_every_truncation(error: u32, handle: u64, cut in 0usize..16) {
                let mut bytes = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
                bytes.extend_from_slice(&error.to_be_bytes());
                bytes.extend_from_slice(&handle.to_be_bytes());

                let reply = parse_simple_reply(&bytes[..cut]);

                let truncated = matches!(reply, Err(NbdError::Truncated { needed: 16, .. }));

                prop_assert!(truncated);
            }

            #[test]
            fn test_parse_simple_reply_round_trips(error: u32, handle: u64) {
                let mut bytes = SIMPLE_REPLY_MAGIC.to_be_bytes().to_vec();
                bytes.extend_from_slice(&error.to_be_bytes());
                bytes.extend_from_slice(&handle.to_be_bytes());

                prop_assert_eq!(parse_simple_reply(&bytes).ok(), Some(SimpleReply { error, handle }));
            }

            #[test]
            fn test_option_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
                let _ = parse_greeting(&bytes);
                let _ = parse_option_reply_header(&bytes);
                let _ = parse_info(&bytes);
                let _ = parse_export_name_reply(&bytes);
            }
        }
    }
}
