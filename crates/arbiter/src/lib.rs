//! The arbiter of an ftvm pair: the atomic test-and-set that decides which side may
//! run alone.
//!
//! When the primary and the backup lose sight of each other, each of them wants to
//! go live (the backup) or to continue without its backup (the primary). Before
//! either runs alone it must win a test-and-set on storage both hosts can reach, so
//! that at most one of them does: there is never split brain (Scales et al. 2010,
//! §2.3, "the shared storage ... atomic test-and-set"). The side that loses stops.
//!
//! # Semantics
//!
//! A pair is named by a `session` (random, chosen when the pair forms) and each
//! change of roles by an `epoch` (counting up within the session). Per session the
//! arbiter keeps the highest claimed epoch and its holder, a short text naming the
//! node (`"backup pid 1234 on host X"`). [`Arbiter::test_and_set`] of
//! `(session, epoch, me)`:
//!
//! | record for `session`              | answer                     | record afterwards |
//! |-----------------------------------|----------------------------|-------------------|
//! | none, or epoch < `epoch`          | [`Claim::Won`]             | `(epoch, me)`     |
//! | epoch >= `epoch`, holder == `me`  | [`Claim::Won`] (a retry)   | unchanged         |
//! | epoch >= `epoch`, other holder    | [`Claim::Lost`] `{holder}` | unchanged         |
//!
//! The whole decision is one atomic step at the arbiter. An `Err` means the arbiter
//! gave no answer (unreachable, timed out, a corrupt record): the caller must not go
//! live, and may retry. Because a retry by the winner answers [`Claim::Won`] again,
//! a claim whose answer was lost on the way back can safely be repeated.
//!
//! # Back ends
//!
//! [`open`] parses the `--arbiter` value:
//!
//! - `file=PATH`: a record file on storage both hosts share (NFS, a cluster file
//!   system), guarded by a lock on `PATH.lock`; see [`FileArbiter`].
//! - `etcd=URL,key=KEY`: keys under `KEY` in an etcd v3 cluster, claimed by a
//!   transaction that creates the key only if no key for this or a later epoch exists;
//!   see [`EtcdArbiter`]. Spoken over etcd's JSON gateway on plain HTTP/1.1, so the
//!   crate needs no async runtime.
//!
//! [`testing::EtcdServer`] starts a throw-away etcd for tests.

mod base64;
mod error;
mod etcd;
mod file;
mod http;
pub mod testing;

pub use error::ArbiterError;
pub use etcd::{EtcdArbiter, LEASE_TTL};
pub use file::{FileArbiter, LOCK_WAIT};

/// The outcome of a test-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// We hold the epoch (we just took it, or had taken it before).
    Won,
    /// Another node holds this epoch (or a later one) of this session.
    Lost {
        /// The other node's name, as it gave it to its own test-and-set.
        holder: String,
    },
}

/// An atomic test-and-set both sides of a pair can reach.
pub trait Arbiter: Send {
    /// Atomically claims `epoch` of the pair identified by `session` for node `me`
    /// (a short text like "backup pid 1234 on host X").
    ///
    /// The arbiter keeps, per session, the highest claimed epoch and its holder. If
    /// the record for `session` has epoch >= `epoch` and a different holder, the
    /// answer is [`Claim::Lost`] naming that holder; if it has epoch >= `epoch` and
    /// the holder is `me`, [`Claim::Won`] (an idempotent retry). Otherwise
    /// `(session, epoch, me)` is written durably and the answer is [`Claim::Won`].
    ///
    /// # Errors
    ///
    /// When the arbiter cannot be reached or the operation fails, and when `me` is
    /// not a valid holder name (see [`MAX_HOLDER_LEN`]): the caller must not go live
    /// and may retry.
    fn test_and_set(&mut self, session: u64, epoch: u64, me: &str) -> Result<Claim, ArbiterError>;

    /// A human description, e.g. "file /shared/ftvm.arbiter" or
    /// "etcd http://127.0.0.1:2379 key /ftvm/pair".
    fn describe(&self) -> String;
}

/// The longest holder name, in bytes. Names must also be non-empty and free of
/// control characters (a name is one line of the record file).
pub const MAX_HOLDER_LEN: usize = 256;

/// Parses an `--arbiter` value and opens that arbiter.
///
/// The forms are `file=PATH` (everything after `file=` is the path) and
/// `etcd=URL,key=KEY` (`URL` is `http://HOST[:PORT]`, port 2379 by default; one
/// endpoint only). Opening does no I/O: an unreachable arbiter shows up at the first
/// [`Arbiter::test_and_set`].
///
/// # Errors
///
/// [`ArbiterError::Spec`] naming the bad part: an unknown kind, an empty path, a URL
/// that is not `http://`, a missing, empty, repeated or unknown `key=` part.
pub fn open(spec: &str) -> Result<Box<dyn Arbiter>, ArbiterError> {
    let bad = |reason: String| ArbiterError::Spec {
        spec: spec.to_owned(),
        reason,
    };
    let Some((kind, rest)) = spec.split_once('=') else {
        return Err(bad("expected file=PATH or etcd=URL,key=KEY".to_owned()));
    };
    match kind {
        "file" => {
            if rest.is_empty() {
                return Err(bad("the path after file= is empty".to_owned()));
            }
            Ok(Box::new(FileArbiter::new(rest)))
        }
        "etcd" => {
            let mut parts = rest.split(',');
            let url = parts.next().unwrap_or_default();
            let mut key = None;
            for part in parts {
                match part.split_once('=') {
                    Some(("key", value)) if key.is_some() => {
                        return Err(bad(format!("key= is given twice (again as {value:?})")));
                    }
                    Some(("key", value)) => key = Some(value),
                    Some((name, _)) => {
                        return Err(bad(format!("unknown part {name:?} (only key= is known)")));
                    }
                    None => {
                        return Err(bad(format!(
                            "unexpected part {part:?} (one etcd endpoint only, then key=KEY)"
                        )));
                    }
                }
            }
            let Some(key) = key else {
                return Err(bad("the key=KEY part is missing".to_owned()));
            };
            if key.is_empty() {
                return Err(bad("the key after key= is empty".to_owned()));
            }
            match EtcdArbiter::new(url, key) {
                Ok(arbiter) => Ok(Box::new(arbiter)),
                // Name the whole value given, not the URL and key alone.
                Err(ArbiterError::Spec { reason, .. }) => Err(bad(reason)),
                Err(error) => Err(error),
            }
        }
        _ => Err(bad(format!(
            "unknown arbiter kind {kind:?} (expected file or etcd)"
        ))),
    }
}

/// Checks that `me` can be stored as a holder name.
fn check_holder(me: &str) -> Result<(), ArbiterError> {
    let reason = if me.is_empty() {
        "it is empty"
    } else if me.len() > MAX_HOLDER_LEN {
        "it is longer than 256 bytes"
    } else if me.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(ArbiterError::Holder {
        holder: me.to_owned(),
        reason: reason.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_error(spec: &str) -> String {
        match open(spec) {
            Ok(arbiter) => panic!("{spec:?} opened as {}", arbiter.describe()),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn test_open_file_describes_path() {
        let arbiter = open("file=/shared/ftvm.arbiter").expect("valid spec");

        assert_eq!(arbiter.describe(), "file /shared/ftvm.arbiter");
    }

    #[test]
    fn test_open_file_keeps_commas_and_equals_in_path() {
        let arbiter = open("file=/a,b=c").expect("valid spec");

        assert_eq!(arbiter.describe(), "file /a,b=c");
    }

    #[test]
    fn test_open_etcd_describes_url_and_key() {
        let arbiter = open("etcd=http://127.0.0.1:2379,key=/ftvm/pair").expect("valid spec");

        assert_eq!(
            arbiter.describe(),
            "etcd http://127.0.0.1:2379 key /ftvm/pair"
        );
    }

    #[test]
    fn test_open_etcd_without_port_uses_2379() {
        let arbiter = open("etcd=http://etcd.example,key=k").expect("valid spec");

        assert_eq!(arbiter.describe(), "etcd http://etcd.example:2379 key k");
    }

    #[test]
    fn test_open_without_kind_is_error() {
        assert_eq!(
            spec_error("/shared/x"),
            "Bad arbiter spec \"/shared/x\": expected file=PATH or etcd=URL,key=KEY"
        );
    }

    #[test]
    fn test_open_unknown_kind_is_error() {
        assert!(spec_error("zookeeper=x").contains("unknown arbiter kind \"zookeeper\""));
    }

    #[test]
    fn test_open_empty_path_is_error() {
        assert!(spec_error("file=").contains("the path after file= is empty"));
    }

    #[test]
    fn test_open_etcd_without_key_is_error() {
        assert!(spec_error("etcd=http://127.0.0.1:2379").contains("the key=KEY part is missing"));
    }

    #[test]
    fn test_open_etcd_empty_key_is_error() {
        assert!(
            spec_error("etcd=http://127.0.0.1:2379,key=").contains("the key after key= is empty")
        );
    }

    #[test]
    fn test_open_etcd_unknown_part_is_error() {
        assert!(
            spec_error("etcd=http://127.0.0.1:2379,key=k,ttl=5").contains("unknown part \"ttl\"")
        );
    }

    #[test]
    fn test_open_etcd_second_endpoint_is_error() {
        assert!(spec_error("etcd=http://a:2379,http://b:2379,key=k")
            .contains("unexpected part \"http://b:2379\""));
    }

    #[test]
    fn test_open_etcd_repeated_key_is_error() {
        assert!(spec_error("etcd=http://a:2379,key=k,key=j").contains("key= is given twice"));
    }

    #[test]
    fn test_open_etcd_https_is_error() {
        assert!(spec_error("etcd=https://a:2379,key=k")
            .contains("etcd URL \"https://a:2379\": only http:// is supported"));
    }

    #[test]
    fn test_open_etcd_bad_port_is_error() {
        assert!(spec_error("etcd=http://a:99999,key=k").contains("bad port \"99999\""));
    }

    #[test]
    fn test_open_etcd_url_with_path_is_error() {
        assert!(spec_error("etcd=http://a:2379/v3,key=k").contains("has a path"));
    }

    #[test]
    fn test_check_holder_refuses_newline() {
        let error = check_holder("a\nb").expect_err("newline refused");

        assert_eq!(
            error.to_string(),
            "Bad arbiter holder name \"a\\nb\": it contains a control character"
        );
    }

    #[test]
    fn test_check_holder_refuses_empty_and_long_names() {
        assert!(check_holder("").is_err());
        assert!(check_holder(&"x".repeat(MAX_HOLDER_LEN + 1)).is_err());
        assert!(check_holder(&"x".repeat(MAX_HOLDER_LEN)).is_ok());
    }
}
