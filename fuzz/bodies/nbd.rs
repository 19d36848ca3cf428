//! Fuzz target bodies for the NBD client's wire format (`ftvm-host`), shared by the
//! cargo-fuzz targets (`fuzz/fuzz_targets/nbd_*.rs`) and the deterministic corpus test
//! `crates/host/tests/nbd_fuzz_corpus.rs`, which both include this file with
//! `#[path = ...] mod nbd;`. Plain functions of `&[u8]`: no fuzzer API in here.
//!
//! - [`wire_parsers`]: every pure parser of `ftvm_host::backends::nbd::wire` on the
//!   input, each checked against the layout of the NBD protocol decoded by hand here.
//! - [`handshake`]: the client's `negotiate` against a scripted server that answers
//!   with the input's bytes.

#![allow(dead_code)]

use std::io::{self, Read, Write};

use ftvm_host::backends::nbd::handshake::negotiate;
use ftvm_host::backends::nbd::wire;

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    (u64::from(be32(b)) << 32) | u64::from(be32(&b[4..]))
}

/// Runs every parser on `data` (and on its prefixes at each structure's length) and
/// checks accept/reject and the decoded fields against the protocol's layout: a parser
/// must accept exactly the inputs long enough with the right magic, read only its own
/// bytes, and never panic.
pub fn wire_parsers(data: &[u8]) {
    // Simple reply: magic 0x67446698, error, handle.
    let reply = wire::parse_simple_reply(data);
    if data.len() >= 16 && be32(data) == wire::SIMPLE_REPLY_MAGIC {
        let reply = reply.unwrap_or_else(|e| panic!("valid simple reply refused: {e}"));
        assert_eq!(reply.error, be32(&data[4..]));
        assert_eq!(reply.handle, be64(&data[8..]));
        let head = wire::parse_simple_reply(&data[..16]).ok();
        assert_eq!(head, Some(reply), "simple reply depends on bytes past 16");
    } else {
        assert!(reply.is_err(), "invalid simple reply accepted: {reply:?}");
    }

    // Greeting: NBDMAGIC, IHAVEOPT, handshake flags.
    let greeting = wire::parse_greeting(data);
    if data.len() >= 18 && be64(data) == wire::NBDMAGIC && be64(&data[8..]) == wire::IHAVEOPT {
        let flags = greeting.unwrap_or_else(|e| panic!("valid greeting refused: {e}"));
        assert_eq!(flags, be16(&data[16..]));
        assert_eq!(wire::parse_greeting(&data[..18]).ok(), Some(flags));
    } else {
        assert!(greeting.is_err(), "invalid greeting accepted: {greeting:?}");
    }

    // Option reply header: magic, option, reply type, length.
    let header = wire::parse_option_reply_header(data);
    if data.len() >= 20 && be64(data) == wire::OPTION_REPLY_MAGIC {
        let header = header.unwrap_or_else(|e| panic!("valid option reply refused: {e}"));
        assert_eq!(header.option, be32(&data[8..]));
        assert_eq!(header.reply_type, be32(&data[12..]));
        assert_eq!(header.len, be32(&data[16..]));
        assert_eq!(
            wire::parse_option_reply_header(&data[..20]).ok(),
            Some(header)
        );
    } else {
        assert!(header.is_err(), "invalid option reply accepted: {header:?}");
    }

    // NBD_REP_INFO data: type, then for NBD_INFO_EXPORT size and transmission flags.
    let info = wire::parse_info(data);
    match data.len() {
        0 | 1 => assert!(info.is_err(), "truncated info accepted: {info:?}"),
        _ if be16(data) != wire::NBD_INFO_EXPORT => {
            assert!(matches!(info, Ok(None)), "other info type gave {info:?}")
        }
        2..=11 => assert!(
            info.is_err(),
            "truncated NBD_INFO_EXPORT accepted: {info:?}"
        ),
        _ => {
            let info = info
                .unwrap_or_else(|e| panic!("valid NBD_INFO_EXPORT refused: {e}"))
                .unwrap_or_else(|| panic!("NBD_INFO_EXPORT not recognised"));
            assert_eq!(info.size, be64(&data[2..]));
            assert_eq!(info.flags, be16(&data[10..]));
        }
    }

    // NBD_OPT_EXPORT_NAME reply: size, transmission flags (then optional zeros).
    let export = wire::parse_export_name_reply(data);
    if data.len() >= wire::EXPORT_NAME_REPLY_LEN {
        let export = export.unwrap_or_else(|e| panic!("export name reply refused: {e}"));
        assert_eq!(export.size, be64(data));
        assert_eq!(export.flags, be16(&data[8..]));
    } else {
        assert!(export.is_err(), "truncated export name reply accepted");
    }

    // The encoders, on fields taken from the input, decode back by the same layout.
    if data.len() >= 26 {
        let request = wire::Request {
            flags: be16(data),
            command: be16(&data[2..]),
            handle: be64(&data[4..]),
            offset: be64(&data[12..]),
            len: be32(&data[20..]),
        };
        let raw = request.encode();
        assert_eq!(be32(&raw), wire::REQUEST_MAGIC);
        assert_eq!(be16(&raw[4..]), request.flags);
        assert_eq!(be16(&raw[6..]), request.command);
        assert_eq!(be64(&raw[8..]), request.handle);
        assert_eq!(be64(&raw[16..]), request.offset);
        assert_eq!(be32(&raw[24..]), request.len);
    }
    let mut word = [0u8; 4];
    let n = data.len().min(4);
    word[..n].copy_from_slice(&data[..n]);
    let option = u32::from_be_bytes(word);
    let payload = data.get(4..).unwrap_or(&[]);
    let encoded = wire::encode_option(option, payload)
        .unwrap_or_else(|e| panic!("option of {} bytes refused: {e}", payload.len()));
    assert_eq!(be64(&encoded), wire::IHAVEOPT);
    assert_eq!(be32(&encoded[8..]), option);
    assert_eq!(be32(&encoded[12..]) as usize, payload.len());
    assert_eq!(&encoded[16..], payload);
    let name = String::from_utf8_lossy(payload);
    match wire::encode_go_data(&name) {
        Ok(go) => {
            assert!(name.len() <= wire::MAX_STRING_LEN);
            assert_eq!(be32(&go) as usize, name.len());
            assert_eq!(&go[4..4 + name.len()], name.as_bytes());
            assert_eq!(&go[4 + name.len()..], &[0, 0]);
        }
        Err(_) => assert!(name.len() > wire::MAX_STRING_LEN),
    }
    // Names of error values: total functions.
    let _ = wire::option_error_name(option);
    let _ = wire::errno_name(option);
}

/// A server that sends `reply` and keeps what the client writes; reads past the end
/// of `reply` hit end-of-file, and after `fail_after` bytes written writes fail.
struct Scripted<'a> {
    reply: &'a [u8],
    at: usize,
    written: Vec<u8>,
    fail_after: usize,
}

impl Read for Scripted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.reply[self.at.min(self.reply.len())..];
        // Short reads: at most 7 bytes at a time, to exercise read_exact's loop.
        let n = rest.len().min(buf.len()).min(7);
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Scripted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written.len() + buf.len() > self.fail_after {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "scripted failure",
            ));
        }
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the client's handshake against a server whose bytes are the input.
///
/// Input: `[mode, name_len]`, the export name (`name_len` bytes), then the server's
/// bytes. With `mode` bit 0 a valid greeting is put in front of them (so the fuzzer
/// spends its bytes on the option replies), bit 1 makes the client's writes fail after
/// `mode >> 2` bytes. Checks: no panic, the client reads no more than the server sent
/// plus nothing past a failed write, it never buffers a reply longer than the limit
/// (64 KiB), and on success the server's data holds what was returned.
pub fn handshake(data: &[u8]) {
    let (mode, name_len) = match data {
        [mode, len, ..] => (*mode, usize::from(*len)),
        _ => (0, 0),
    };
    let rest = data.get(2..).unwrap_or(&[]);
    let (name, server) = rest.split_at(name_len.min(rest.len()));
    let name = String::from_utf8_lossy(name).into_owned();
    let mut reply = Vec::with_capacity(server.len() + 18);
    if mode & 1 != 0 {
        reply.extend_from_slice(&wire::NBDMAGIC.to_be_bytes());
        reply.extend_from_slice(&wire::IHAVEOPT.to_be_bytes());
        reply.extend_from_slice(
            &(wire::NBD_FLAG_FIXED_NEWSTYLE | (u16::from(mode >> 7) * wire::NBD_FLAG_NO_ZEROES))
                .to_be_bytes(),
        );
    }
    reply.extend_from_slice(server);
    let mut stream = Scripted {
        reply: &reply,
        at: 0,
        written: Vec::new(),
        fail_after: if mode & 2 != 0 {
            usize::from(mode >> 2)
        } else {
            usize::MAX
        },
    };
    let result = negotiate(&mut stream, &name);
    assert!(stream.at <= reply.len());
    if let Ok(info) = result {
        // Success needs a greeting and a final ACK (or an export-name reply), and the
        // client sent its flags and an option.
        assert!(stream.at >= 18 + 20, "success after {} bytes", stream.at);
        assert!(
            stream.written.len() >= 4 + 16,
            "success after writing {:?}",
            stream.written
        );
        assert_eq!(be32(&stream.written), {
            let no_zeroes = be16(&reply[16..]) & wire::NBD_FLAG_NO_ZEROES != 0;
            wire::NBD_FLAG_C_FIXED_NEWSTYLE | (u32::from(no_zeroes) * wire::NBD_FLAG_C_NO_ZEROES)
        });
        // The size and flags came from somewhere in what the server sent.
        let sent = &reply[..stream.at];
        let found = sent
            .windows(10)
            .any(|w| be64(w) == info.size && be16(&w[8..]) == info.flags);
        assert!(found, "export info {info:?} not in the server's bytes");
    }
}
