//! Errors of opening a host backend.

use std::io;
use std::path::PathBuf;

use super::nbd::NbdError;

/// Why a host backend could not be opened or started.
///
/// Errors of single requests once a backend runs are
/// [`DiskIoError`](super::DiskIoError)s, delivered with the completion.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The disk image could not be opened.
    #[error("Cannot open disk image {path}: {source}", path = path.display())]
    OpenImage {
        /// The image path as given.
        path: PathBuf,
        /// What the host said.
        source: io::Error,
    },
    /// The NBD URL is not of the form `nbd://HOST[:PORT][/EXPORT]`.
    #[error("Invalid NBD URL {url:?}: {reason} (expected nbd://HOST[:PORT][/EXPORT])")]
    BadNbdUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The TCP connection to the NBD server failed.
    #[error("Cannot connect to NBD server {url}: {source}")]
    NbdConnect {
        /// The URL as given.
        url: String,
        /// What the host said.
        source: io::Error,
    },
    /// The NBD handshake failed (including the server refusing the export).
    #[error("NBD handshake with {url} failed: {source}")]
    NbdHandshake {
        /// The URL as given.
        url: String,
        /// What went wrong in the negotiation.
        source: NbdError,
    },
    /// The TAP interface name cannot be used.
    #[error("Invalid TAP interface name {name:?}: {reason}")]
    BadTapName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `/dev/net/tun` could not be opened.
    #[error("Cannot open /dev/net/tun for TAP interface {name}: {source} (is the tun module loaded, and may this user open it?)")]
    TunOpen {
        /// The interface name as given.
        name: String,
        /// What the host said.
        source: io::Error,
    },
    /// Creating or attaching the TAP interface was refused for lack of privilege.
    #[error("Creating or attaching TAP interface {name} needs CAP_NET_ADMIN: run as root, or pre-create it with `ip tuntap add dev {name} mode tap user USER` ({source})")]
    TapPermission {
        /// The interface name as given.
        name: String,
        /// What the host said.
        source: io::Error,
    },
    /// The TAP interface exists but could not be attached.
    #[error("Cannot attach to TAP interface {name}: {reason} ({source})")]
    TapAttach {
        /// The interface name as given.
        name: String,
        /// A hint about the likely cause.
        reason: &'static str,
        /// What the host said.
        source: io::Error,
    },
    /// The entropy source could not be opened.
    #[error("Cannot open entropy source {path}: {source}")]
    EntropyOpen {
        /// The device path.
        path: &'static str,
        /// What the host said.
        source: io::Error,
    },
    /// A backend thread could not be started.
    #[error("Cannot start backend thread {name}: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// What the host said.
        source: io::Error,
    },
}
