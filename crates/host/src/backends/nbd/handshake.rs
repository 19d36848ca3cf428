//! The fixed newstyle handshake, ending with `NBD_OPT_GO` (NBD protocol, "Fixed
//! newstyle negotiation").
//!
//! ```text
//!   S: NBDMAGIC  IHAVEOPT  handshake flags (FIXED_NEWSTYLE, NO_ZEROES)
//!   C: client flags (C_FIXED_NEWSTYLE, C_NO_ZEROES if offered)
//!   C: IHAVEOPT  NBD_OPT_GO  len  [name len, name, 0 info requests]
//!   S: option reply NBD_REP_INFO (NBD_INFO_EXPORT: size, transmission flags)
//!   S: ... other NBD_REP_INFO, ignored
//!   S: option reply NBD_REP_ACK          -> transmission phase
//!   or an NBD_REP_ERR_* reply with a message -> the export is refused
//! ```
//!
//! A server that does not know `NBD_OPT_GO` (`NBD_REP_ERR_UNSUP`) gets
//! `NBD_OPT_EXPORT_NAME` instead.

use std::io::{Read, Write};

use super::wire::{self, ExportInfo};
use super::NbdError;

/// Option replies longer than this are refused rather than buffered.
const MAX_OPTION_REPLY_LEN: u32 = 64 * 1024;

/// Runs the handshake for `export` over `stream` and returns what the server said
/// about the export. On success the stream is in the transmission phase.
pub fn negotiate<S: Read + Write>(stream: &mut S, export: &str) -> Result<ExportInfo, NbdError> {
    let mut greeting = [0; wire::GREETING_LEN];
    read(stream, &mut greeting, "reading the server greeting")?;
    let handshake_flags = wire::parse_greeting(&greeting)?;
    if handshake_flags & wire::NBD_FLAG_FIXED_NEWSTYLE == 0 {
        return Err(NbdError::NotFixedNewstyle {
            flags: handshake_flags,
        });
    }
    let no_zeroes = handshake_flags & wire::NBD_FLAG_NO_ZEROES != 0;
    let mut client_flags = wire::NBD_FLAG_C_FIXED_NEWSTYLE;
    if no_zeroes {
        client_flags |= wire::NBD_FLAG_C_NO_ZEROES;
    }
    write(
        stream,
        &client_flags.to_be_bytes(),
        "sending the client flags",
    )?;

    let go = wire::encode_option(wire::NBD_OPT_GO, &wire::encode_go_data(export)?)?;
    write(stream, &go, "sending NBD_OPT_GO")?;
    let mut info = None;
    loop {
        let mut header = [0; wire::OPTION_REPLY_HEADER_LEN];
        read(stream, &mut header, "reading the reply to NBD_OPT_GO")?;
        let header = wire::parse_option_reply_header(&header)?;
        if header.option != wire::NBD_OPT_GO {
            return Err(NbdError::UnexpectedOptionReply {
                option: header.option,
                reply_type: header.reply_type,
            });
        }
        if header.len > MAX_OPTION_REPLY_LEN {
            return Err(NbdError::OptionReplyTooLong { len: header.len });
        }
        let mut data = vec![0; header.len as usize];
        read(stream, &mut data, "reading the data of an NBD_OPT_GO reply")?;
        match header.reply_type {
            wire::NBD_REP_ACK => {
                return info.ok_or_else(|| NbdError::MissingExportInfo {
                    export: export.to_owned(),
                });
            }
            wire::NBD_REP_INFO => {
                if let Some(export_info) = wire::parse_info(&data)? {
                    info = Some(export_info);
                }
            }
            wire::NBD_REP_ERR_UNSUP => return export_name(stream, export, no_zeroes),
            error if error & wire::NBD_REP_FLAG_ERROR != 0 => {
                return Err(NbdError::ExportRefused {
                    export: export.to_owned(),
                    reply: wire::option_error_name(error),
                    message: String::from_utf8_lossy(&data[..data.len().min(wire::MAX_STRING_LEN)])
                        .into_owned(),
                });
            }
            other => {
                return Err(NbdError::UnexpectedOptionReply {
                    option: header.option,
                    reply_type: other,
                });
            }
        }
    }
}

/// The fallback for servers without `NBD_OPT_GO`; such a server refuses an unknown
/// export by closing the connection.
fn export_name<S: Read + Write>(
    stream: &mut S,
    export: &str,
    no_zeroes: bool,
) -> Result<ExportInfo, NbdError> {
    if export.len() > wire::MAX_STRING_LEN {
        return Err(NbdError::ExportNameTooLong { len: export.len() });
    }
    let option = wire::encode_option(wire::NBD_OPT_EXPORT_NAME, export.as_bytes())?;
    write(stream, &option, "sending NBD_OPT_EXPORT_NAME")?;
    let mut reply = vec![
        0;
        wire::EXPORT_NAME_REPLY_LEN
            + if no_zeroes {
                0
            } else {
                wire::EXPORT_NAME_REPLY_ZEROES
            }
    ];
    read(
        stream,
        &mut reply,
        "reading the reply to NBD_OPT_EXPORT_NAME",
    )
    .map_err(|err| match err {
        NbdError::Io { source, .. } if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            NbdError::ExportRefused {
                export: export.to_owned(),
                reply: "connection closed",
                message: "the server has no such export".to_owned(),
            }
        }
        other => other,
    })?;
    wire::parse_export_name_reply(&reply)
}

fn read<S: Read>(stream: &mut S, buf: &mut [u8], during: &'static str) -> Result<(), NbdError> {
    stream
        .read_exact(buf)
        .map_err(|source| NbdError::Io { during, source })
}

fn write<S: Write>(stream: &mut S, buf: &[u8], during: &'static str) -> Result<(), NbdError> {
    stream
        .write_all(buf)
        .and_then(|()| stream.flush())
        .map_err(|source| NbdError::Io { during, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: reads come from `input`, writes are collected.
    struct Script {
        input: std::io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn greeting() -> Vec<u8> {
        let mut out = wire::NBDMAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&wire::IHAVEOPT.to_be_bytes());
        out.extend_from_slice(
            &(wire::NBD_FLAG_FIXED_NEWSTYLE | wire::NBD_FLAG_NO_ZEROES).to_be_bytes(),
        );
        out
    }

    fn option_reply(reply_type: u32, data: &[u8]) -> Vec<u8> {
        let mut out = wire::OPTION_REPLY_MAGIC.to_be_bytes().to_vec();
        out.extend_from_slice(&wire::NBD_OPT_GO.to_be_bytes());
        out.extend_from_slice(&reply_type.to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn test_negotiate_returns_export_info_on_ack() {
        let mut input = greeting();
        input.extend(option_reply(
            wire::NBD_REP_INFO,
            &[0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0x05],
        ));
        input.extend(option_reply(wire::NBD_REP_ACK, &[]));
        let mut script = Script {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };

        let info = negotiate(&mut script, "disk");

        assert_eq!(
            info.ok(),
            Some(ExportInfo {
                size: 0x1000,
                flags: 5
            })
        );
    }

    #[test]
    fn test_negotiate_sends_client_flags_then_opt_go() {
        let mut input = greeting();
        input.extend(option_reply(wire::NBD_REP_INFO, &[0; 12]));
        input.extend(option_reply(wire::NBD_REP_ACK, &[]));
        let mut script = Script {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };

        let _ = negotiate(&mut script, "x");

        let mut expected = vec![0, 0, 0, 3]; // C_FIXED_NEWSTYLE | C_NO_ZEROES
        expected.extend_from_slice(&wire::IHAVEOPT.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 7, 0, 0, 0, 1, b'x', 0, 0]);
        assert_eq!(script.output, expected);
    }

    #[test]
    fn test_negotiate_names_refused_export() {
        let mut input = greeting();
        input.extend(option_reply(
            wire::NBD_REP_FLAG_ERROR | 6,
            b"no such export",
        ));
        let mut script = Script {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };

        let message = negotiate(&mut script, "missing")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();

        assert!(
            message.contains("\"missing\"") && message.contains("no such export"),
            "{message}"
        );
    }

    #[test]
    fn test_negotiate_rejects_ack_without_export_info() {
        let mut input = greeting();
        input.extend(option_reply(wire::NBD_REP_ACK, &[]));
        let mut script = Script {
            input: std::io::Cursor::new(input),
            output: Vec::new(),
        };

        let result = negotiate(&mut script, "disk");

        assert!(matches!(result, Err(NbdError::MissingExportInfo { .. })));
    }

    #[test]
    fn test_negotiate_reports_truncated_greeting() {
        let mut script = Script {
            input: std::io::Cursor::new(vec![0x4e, 0x42]),
            output: Vec::new(),
        };

        let result = negotiate(&mut script, "disk");

        assert!(matches!(result, Err(NbdError::Io { .. })));
    }
}
