//! An NBD client ("The NBD protocol", NetworkBlockDevice/nbd `doc/proto.md`): fixed
//! newstyle handshake with `NBD_OPT_GO`, then transmission with simple replies.
//!
//! A request is sent as soon as the disk's ordering queue lets it start, by the
//! thread that finds it ready (the submitter's, or the reader's after a completion),
//! with a fresh 64-bit handle and a non-blocking send; a *writer* thread writes what
//! the socket did not take at once. The *reader* thread matches each simple reply
//! to its request by handle and delivers the completion.
//! Several requests are in flight at once and the server may answer in any order.
//! A reply that cannot be trusted (bad magic, unknown handle, a broken stream) fails
//! every outstanding request and every later one with
//! [`DiskIoError::ConnectionLost`](super::DiskIoError::ConnectionLost); an error
//! value in a reply fails only its own request.

mod client;
pub mod handshake;
pub mod wire;

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::{BackendError, Disk, DiskDone, Notify};

/// The IANA port of NBD.
pub const DEFAULT_PORT: u16 = 10809;

/// How long connecting to one address of the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server may take to answer each step of the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Something wrong in what an NBD server sent, or in what we were asked to send.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// Fewer bytes than the structure needs.
    #[error("Truncated {what}: {needed} bytes needed, {got} present")]
    Truncated {
        /// The structure being parsed.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// A magic number is wrong: the stream is not NBD, or out of step.
    #[error("Bad {what} magic {found:#x} (expected {expected:#x})")]
    BadMagic {
        /// The structure being parsed.
        what: &'static str,
        /// The value found.
        found: u64,
        /// The value expected.
        expected: u64,
    },
    /// The server speaks the oldstyle handshake.
    #[error(
        "Server uses the oldstyle handshake (second magic {found:#x}), which is not supported"
    )]
    NotNewstyle {
        /// The value found instead of `IHAVEOPT`.
        found: u64,
    },
    /// The server does not offer fixed newstyle negotiation.
    #[error("Server does not offer fixed newstyle negotiation (handshake flags {flags:#06x})")]
    NotFixedNewstyle {
        /// The handshake flags sent.
        flags: u16,
    },
    /// The server refused the export.
    #[error("Server refused export {export:?}: {reply}: {message}")]
    ExportRefused {
        /// The export name asked for.
        export: String,
        /// The `NBD_REP_ERR_*` name.
        reply: &'static str,
        /// The server's message.
        message: String,
    },
    /// The server acknowledged `NBD_OPT_GO` without describing the export.
    #[error("Server accepted export {export:?} without sending its size (NBD_INFO_EXPORT)")]
    MissingExportInfo {
        /// The export name asked for.
        export: String,
    },
    /// An option reply of a kind not expected here.
    #[error("Unexpected option reply type {reply_type:#x} to option {option}")]
    UnexpectedOptionReply {
        /// The option the reply is for.
        option: u32,
        /// The reply type.
        reply_type: u32,
    },
    /// An option reply too long to buffer.
    #[error("Option reply of {len} bytes is too long")]
    OptionReplyTooLong {
        /// Its announced length.
        len: u32,
    },
    /// Option data too long to encode.
    #[error("Option data of {len} bytes is too long")]
    OptionTooLong {
        /// Its length.
        len: usize,
    },
    /// The export name is longer than the protocol allows.
    #[error("Export name of {len} bytes is longer than the 4096 bytes allowed")]
    ExportNameTooLong {
        /// Its length.
        len: usize,
    },
    /// The connection failed.
    #[error("I/O error while {during}: {source}")]
    Io {
        /// What the client was doing.
        during: &'static str,
        /// What the host said.
        source: io::Error,
    },
}

/// A parsed `nbd://HOST[:PORT][/EXPORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUrl {
    /// Host name or address (without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Export name, possibly empty.
    pub export: String,
}

impl NbdUrl {
    /// Parses `nbd://HOST[:PORT][/EXPORT]`; IPv6 hosts are written in brackets.
    pub fn parse(url: &str) -> Result<NbdUrl, BackendError> {
        let bad = |reason| BackendError::BadNbdUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("nbd://")
            .ok_or_else(|| bad("it does not start with nbd://"))?;
        let (authority, export) = match rest.split_once('/') {
            Some((authority, export)) => (authority, export),
            None => (rest, ""),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 host lacks its closing bracket"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("junk after the IPv6 host"))?,
                    ),
                ),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(port) => port
                .parse()
                .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
        };
        Ok(NbdUrl {
            host: host.to_owned(),
            port,
            export: export.to_owned(),
        })
    }
}

/// Connects, negotiates and starts the connection's threads.
pub(crate) fn open(url: &str, notify: Notify<DiskDone>) -> Result<Disk, BackendError> {
    let parsed = NbdUrl::parse(url)?;
    let connect_error = |source| BackendError::NbdConnect {
        url: url.to_owned(),
        source,
    };
    let addrs = (parsed.host.as_str(), parsed.port)
        .to_socket_addrs()
        .map_err(connect_error)?;
    let mut last_error = io::Error::new(
        io::ErrorKind::NotFound,
        "the host name resolves to no address",
    );
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(err) => last_error = err,
        }
    }
    let mut stream = stream.ok_or_else(|| connect_error(last_error))?;
    stream.set_nodelay(true).map_err(connect_error)?;
    // A server that accepts but never answers must not hang the caller forever.
    stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .map_err(connect_error)?;
    let info = handshake::negotiate(&mut stream, &parsed.export).map_err(|source| {
        BackendError::NbdHandshake {
            url: url.to_owned(),
            source,
        }
    })?;
    stream.set_read_timeout(None).map_err(connect_error)?;
    client::start(url, stream, info, notify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_url_with_port_and_export() {
        let url = NbdUrl::parse("nbd://127.0.0.1:1234/disk0").ok();

        assert_eq!(
            url,
            Some(NbdUrl {
                host: "127.0.0.1".into(),
                port: 1234,
                export: "disk0".into()
            })
        );
    }

    #[test]
    fn test_url_defaults_to_port_10809_and_empty_export() {
        let url = NbdUrl::parse("nbd://storage").ok();

        assert_eq!(
            url,
            Some(NbdUrl {
                host: "storage".into(),
                port: 10809,
                export: String::new()
            })
        );
    }

    #[test]
    fn test_url_with_ipv6_host() {
        let url = NbdUrl::parse("nbd://[::1]:10810/").ok();

        assert_eq!(
            url,
            Some(NbdUrl {
                host: "::1".into(),
                port: 10810,
                export: String::new()
            })
        );
    }

    #[test]
    fn test_url_with_bad_port_names_the_url() {
        let message = NbdUrl::parse("nbd://host:99999/x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();

        assert!(
            message.contains("nbd://host:99999/x") && message.contains("port"),
            "{message}"
        );
    }

    #[test]
    fn test_url_without_scheme_is_refused() {
        assert!(matches!(
            NbdUrl::parse("http://host/x"),
            Err(BackendError::BadNbdUrl { .. })
        ));
    }
}
