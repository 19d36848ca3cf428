//! What can go wrong while asking an arbiter.

use std::path::PathBuf;

/// Why an arbiter could not be opened or could not answer a test-and-set.
///
/// Every error from [`Arbiter::test_and_set`](crate::Arbiter::test_and_set) means
/// "no answer": the caller must not go live and may retry.
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// An `--arbiter` value could not be parsed.
    #[error("Bad arbiter spec {spec:?}: {reason}")]
    Spec {
        /// The whole value as given.
        spec: String,
        /// What is wrong with it, naming the bad part.
        reason: String,
    },
    /// The node name given to a test-and-set cannot be stored.
    #[error("Bad arbiter holder name {holder:?}: {reason}")]
    Holder {
        /// The name as given.
        holder: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file operation on the arbiter file or its lock failed.
    #[error("Arbiter file {path}: cannot {op}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done, e.g. "lock" or "rename the new record into place".
        op: &'static str,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another process held the arbiter file's lock for longer than we wait.
    #[error("Arbiter file {path}: its lock is still held by another process after {waited_ms} ms")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited, in milliseconds.
        waited_ms: u64,
    },
    /// The arbiter file holds something that is not a record this build wrote.
    #[error("Arbiter file {path} is corrupt ({reason}); it is left untouched, remove it by hand if no node is live")]
    Corrupt {
        /// The arbiter file.
        path: PathBuf,
        /// What is wrong with its content.
        reason: String,
    },
    /// The etcd server could not be reached (connect, send or receive failed or timed out).
    #[error("etcd at {url} is unreachable: {source}")]
    Unreachable {
        /// The etcd endpoint.
        url: String,
        /// The network error.
        source: std::io::Error,
    },
    /// etcd answered with an HTTP error status.
    #[error("etcd at {url} answered {path} with HTTP status {status}: {message}")]
    Http {
        /// The etcd endpoint.
        url: String,
        /// The request path, e.g. `/v3/kv/txn`.
        path: &'static str,
        /// The HTTP status code.
        status: u16,
        /// etcd's error text, or the start of the response body.
        message: String,
    },
    /// etcd answered with something this client does not understand.
    #[error("etcd at {url} answered {path} with an unexpected response: {reason}")]
    Protocol {
        /// The etcd endpoint.
        url: String,
        /// The request path, e.g. `/v3/kv/txn`.
        path: &'static str,
        /// What is wrong with the response.
        reason: String,
    },
}
