//! The etcd arbiter: keys in an etcd v3 cluster, claimed by a transaction.
//!
//! # Keys
//!
//! A claim of `(session, epoch)` under the configured `KEY` is the key
//!
//! ```text
//! KEY/<session: 16 lowercase hex digits>/<epoch: 20 decimal digits>  =  holder
//! ```
//!
//! The fixed widths make etcd's byte order the numeric order, so the keys of one
//! session for epochs `>= e` are exactly the range `[KEY/<s>/<e>, KEY/<s>0)` (`'0'`
//! is the byte after `'/'`).
//!
//! # The transaction
//!
//! One `Txn`, atomic at etcd:
//!
//! - compare: `create_revision == 0` over that range, which holds when no key in it
//!   exists, i.e. nobody holds this epoch or a later one;
//! - success: put our key with our holder name, under our lease;
//! - failure: read the highest key of the range, whose value names the holder. It is
//!   us after a retry ([`Claim::Won`]) or another node ([`Claim::Lost`]).
//!
//! # Lease
//!
//! Keys are written under a lease (TTL [`LEASE_TTL`]) so that the claims of pairs
//! long gone do not pile up. After a win, a thread renews the lease that holds the
//! claim every third of its TTL for as long as the [`EtcdArbiter`] lives (after a
//! retry that found our own claim, that is the lease it was written under, which may
//! be another arbiter's); dropping the arbiter stops it, and the claim then
//! disappears one TTL later. A node that runs alone must therefore keep its arbiter
//! alive. A lease that expired anyway (etcd unreachable for a whole TTL) is replaced
//! by a new one at the next test-and-set.
//!
//! etcd is spoken to through its JSON gateway (`/v3/...`) over plain HTTP/1.1, one
//! connection per request, with [`IO_TIMEOUT`](crate::http::IO_TIMEOUT) on connect
//! and on every read and write, so an unreachable etcd gives an error promptly.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::Endpoint;
use crate::{base64, check_holder, Arbiter, ArbiterError, Claim};

/// The default time to live of the lease that holds our claims.
pub const LEASE_TTL: Duration = Duration::from_secs(60);

/// An arbiter backed by etcd (`etcd=URL,key=KEY`).
#[derive(Debug)]
pub struct EtcdArbiter {
    endpoint: Endpoint,
    /// The key prefix, without a trailing `/`.
    key: String,
    /// The TTL asked for when granting a lease.
    lease_ttl: Duration,
    /// Our lease, granted at the first test-and-set.
    lease: Option<i64>,
    /// The leases of our claims, each renewed by a thread that stops when its sender
    /// is dropped: our own lease once we won, and the lease of a claim we found was
    /// ours (written by an earlier arbiter with the same holder name).
    keepalive: Vec<(i64, mpsc::Sender<()>)>,
}

/// What a lease-related request found out about the lease.
enum TxnError {
    /// etcd no longer knows our lease (it expired): grant a new one and retry.
    LeaseGone,
    /// Anything else.
    Other(ArbiterError),
}

impl From<ArbiterError> for TxnError {
    fn from(error: ArbiterError) -> TxnError {
        TxnError::Other(error)
    }
}

impl EtcdArbiter {
    /// An arbiter on the etcd at `url` (`http://HOST[:PORT]`), keeping its claims
    /// under `key`. Does no I/O.
    ///
    /// # Errors
    ///
    /// [`ArbiterError::Spec`] when the URL is not `http://HOST[:PORT]` or the key is
    /// empty.
    pub fn new(url: &str, key: &str) -> Result<EtcdArbiter, ArbiterError> {
        let bad = |reason: String| ArbiterError::Spec {
            spec: format!("etcd={url},key={key}"),
            reason,
        };
        let endpoint =
            Endpoint::parse(url).map_err(|reason| bad(format!("etcd URL {url:?}: {reason}")))?;
        let trimmed = key.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(bad("the key after key= is empty".to_owned()));
        }
        Ok(EtcdArbiter {
            endpoint,
            key: trimmed.to_owned(),
            lease_ttl: LEASE_TTL,
            lease: None,
            keepalive: Vec::new(),
        })
    }

    /// Uses leases of `ttl` instead of [`LEASE_TTL`] (etcd rounds very short TTLs up
    /// to its minimum of about 2 s).
    pub fn with_lease_ttl(mut self, ttl: Duration) -> EtcdArbiter {
        self.lease_ttl = ttl;
        self
    }

    /// The etcd key of a claim of `(session, epoch)`.
    fn claim_key(&self, session: u64, epoch: u64) -> String {
        format!("{}/{session:016x}/{epoch:020}", self.key)
    }

    /// The end (exclusive) of the range of all claim keys of `session`.
    fn session_end(&self, session: u64) -> String {
        format!("{}/{session:016x}0", self.key)
    }

    /// POSTs `body` to `path` and returns the JSON answer of a 200 response.
    fn call(&self, path: &'static str, body: &Value) -> Result<Value, ArbiterError> {
        call(&self.endpoint, path, body)
    }

    /// Grants a new lease and returns its ID.
    fn grant(&self) -> Result<i64, ArbiterError> {
        let path = "/v3/lease/grant";
        let answer = self.call(
            path,
            &json!({ "TTL": self.lease_ttl.as_secs().max(1).to_string() }),
        )?;
        let protocol = |reason: String| ArbiterError::Protocol {
            url: self.endpoint.url(),
            path,
            reason,
        };
        if let Some(error) = answer
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(protocol(format!("lease not granted: {error}")));
        }
        json_i64(&answer["ID"]).ok_or_else(|| protocol(format!("no lease ID in {answer}")))
    }

    /// Runs the claim transaction under `lease`. When we hold the claim, also returns
    /// the lease that holds it: `lease`, or, after a retry, the lease it was written
    /// under (0 for none).
    fn txn(
        &self,
        session: u64,
        epoch: u64,
        me: &str,
        lease: i64,
    ) -> Result<(Claim, i64), TxnError> {
        let path = "/v3/kv/txn";
        let key = base64::encode(self.claim_key(session, epoch).as_bytes());
        let end = base64::encode(self.session_end(session).as_bytes());
        let body = json!({
            "compare": [{ "key": key, "range_end": end, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": base64::encode(me.as_bytes()), "lease": lease.to_string() } }],
            "failure": [{ "request_range": { "key": key, "range_end": end, "sort_order": "DESCEND", "sort_target": "KEY", "limit": "1" } }],
        });
        let answer = match self.call(path, &body) {
            Ok(answer) => answer,
            Err(ArbiterError::Http { message, .. })
                if message.contains("requested lease not found") =>
            {
                return Err(TxnError::LeaseGone);
            }
            Err(error) => return Err(error.into()),
        };
        let protocol = |reason: String| ArbiterError::Protocol {
            url: self.endpoint.url(),
            path,
            reason,
        };
        // The gateway leaves out fields with default values: a failed compare has no "succeeded".
        if answer
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            return Ok((Claim::Won, lease));
        }
        let found = &answer["responses"][0]["response_range"]["kvs"][0];
        let value = found["value"]
            .as_str()
            .ok_or_else(|| protocol(format!("the failed compare read no claim: {answer}")))?;
        let holder = base64::decode(value)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| protocol(format!("the holder {value:?} is not base64 of UTF-8 text")))?;
        Ok(if holder == me {
            (Claim::Won, json_i64(&found["lease"]).unwrap_or(0))
        } else {
            (Claim::Lost { holder }, 0)
        })
    }

    /// Starts renewing `lease` in a thread, unless that is already being done.
    fn keep_alive(&mut self, lease: i64) {
        if lease == 0 || self.keepalive.iter().any(|&(renewed, _)| renewed == lease) {
            return;
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let endpoint = self.endpoint.clone();
        let period = self.lease_ttl / 3;
        let spawned = std::thread::Builder::new()
            .name(format!("etcd lease {lease:x}"))
            .spawn(move || loop {
                match stopped.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                // A failed renewal is retried at the next period; a lease etcd no longer
                // knows (TTL absent or 0) cannot come back, so the thread ends.
                let renewed = call(
                    &endpoint,
                    "/v3/lease/keepalive",
                    &json!({ "ID": lease.to_string() }),
                );
                if let Ok(answer) = renewed {
                    if json_i64(&answer["result"]["TTL"]).unwrap_or(0) <= 0 {
                        return;
                    }
                }
            });
        // Without a thread the claim still stands for one TTL; the next win retries.
        if spawned.is_ok() {
            self.keepalive.push((lease, stop));
        }
    }
}

impl Arbiter for EtcdArbiter {
    fn test_and_set(&mut self, session: u64, epoch: u64, me: &str) -> Result<Claim, ArbiterError> {
        check_holder(me)?;
        for _ in 0..2 {
            let lease = match self.lease {
                Some(lease) => lease,
                None => *self.lease.insert(self.grant()?),
            };
            match self.txn(session, epoch, me, lease) {
                Ok((Claim::Won, holding)) => {
                    self.keep_alive(holding);
                    return Ok(Claim::Won);
                }
                Ok((lost, _)) => return Ok(lost),
                Err(TxnError::LeaseGone) => {
                    self.keepalive.retain(|&(renewed, _)| renewed != lease);
                    self.lease = None;
                }
                Err(TxnError::Other(error)) => return Err(error),
            }
        }
        Err(ArbiterError::Protocol {
            url: self.endpoint.url(),
            path: "/v3/kv/txn",
            reason: "a freshly granted lease was not found".to_owned(),
        })
    }

    fn describe(&self) -> String {
        format!("etcd {} key {}", self.endpoint.url(), self.key)
    }
}

/// POSTs `body` to `path` at `endpoint` and returns the JSON answer of a 200 response.
fn call(endpoint: &Endpoint, path: &'static str, body: &Value) -> Result<Value, ArbiterError> {
    let url = endpoint.url();
    let response = endpoint
        .post(path, body.to_string().as_bytes())
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::InvalidData {
                ArbiterError::Protocol {
                    url: url.clone(),
                    path,
                    reason: source.to_string(),
                }
            } else {
                ArbiterError::Unreachable {
                    url: url.clone(),
                    source,
                }
            }
        })?;
    let parsed = serde_json::from_slice::<Value>(&response.body);
    if response.status != 200 {
        let message = match &parsed {
            Ok(answer) => answer["error"]
                .as_str()
                .or(answer["message"].as_str())
                .map(str::to_owned),
            Err(_) => None,
        };
        let message = message.unwrap_or_else(|| {
            String::from_utf8_lossy(&response.body)
                .chars()
                .take(200)
                .collect()
        });
        return Err(ArbiterError::Http {
            url,
            path,
            status: response.status,
            message,
        });
    }
    parsed.map_err(|error| ArbiterError::Protocol {
        url,
        path,
        reason: format!("the body is not JSON: {error}"),
    })
}

/// An int64 as the gateway writes it (a decimal string), or as a JSON number.
fn json_i64(value: &Value) -> Option<i64> {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_i64())
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::{Arc, Barrier};
    use std::time::Instant;

    use super::*;
    use crate::open;
    use crate::testing::EtcdServer;

    fn arbiter(server: &EtcdServer) -> EtcdArbiter {
        EtcdArbiter::new(&server.url(), "/ftvm/test").expect("valid URL and key")
    }

    fn lost(holder: &str) -> Claim {
        Claim::Lost {
            holder: holder.to_owned(),
        }
    }

    #[test]
    fn test_claim_key_sorts_epochs_numerically() {
        let arbiter = EtcdArbiter::new("http://127.0.0.1:2379", "/ftvm/pair/").expect("valid");

        assert_eq!(
            arbiter.claim_key(0x1234, 7),
            "/ftvm/pair/0000000000001234/00000000000000000007"
        );
        assert!(arbiter.claim_key(1, 9) < arbiter.claim_key(1, 10));
        assert!(arbiter.claim_key(1, u64::MAX) < arbiter.session_end(1));
    }

    #[test]
    fn test_etcd_first_claim_wins_second_loses_naming_holder() {
        let server = EtcdServer::start();
        let mut primary = arbiter(&server);
        let mut backup = arbiter(&server);

        let first = primary
            .test_and_set(0x1234, 1, "primary on a")
            .expect("claim");
        let second = backup
            .test_and_set(0x1234, 1, "backup on b")
            .expect("claim");

        assert_eq!((first, second), (Claim::Won, lost("primary on a")));
    }

    #[test]
    fn test_etcd_retry_by_winner_wins_again() {
        let server = EtcdServer::start();
        let mut first = arbiter(&server);
        first.test_and_set(7, 3, "primary").expect("claim");
        let mut restarted = arbiter(&server);

        let again = first.test_and_set(7, 3, "primary").expect("retry");
        let from_new_arbiter = restarted.test_and_set(7, 3, "primary").expect("retry");
        let lower = first
            .test_and_set(7, 2, "primary")
            .expect("retry of a lower epoch");

        assert_eq!(
            (again, from_new_arbiter, lower),
            (Claim::Won, Claim::Won, Claim::Won)
        );
    }

    #[test]
    fn test_etcd_lower_epoch_loses_to_higher_holder() {
        let server = EtcdServer::start();
        let mut arbiter = arbiter(&server);
        arbiter.test_and_set(7, 10, "primary").expect("claim");

        let claim = arbiter.test_and_set(7, 9, "backup").expect("claim");

        assert_eq!(claim, lost("primary"));
    }

    #[test]
    fn test_etcd_loser_of_lower_epoch_can_claim_higher_epoch() {
        let server = EtcdServer::start();
        let mut primary = arbiter(&server);
        let mut backup = arbiter(&server);
        primary.test_and_set(7, 1, "primary").expect("claim");
        backup.test_and_set(7, 1, "backup").expect("claim");

        let higher = backup.test_and_set(7, 2, "backup").expect("claim");
        let old_holder = primary.test_and_set(7, 2, "primary").expect("claim");
        let old_epoch = primary.test_and_set(7, 1, "primary").expect("claim");

        assert_eq!(
            (higher, old_holder, old_epoch),
            (Claim::Won, lost("backup"), lost("backup"))
        );
    }

    #[test]
    fn test_etcd_sessions_are_independent() {
        let server = EtcdServer::start();
        let mut arbiter = arbiter(&server);
        arbiter.test_and_set(1, 9, "old primary").expect("claim");

        let claim = arbiter.test_and_set(2, 1, "new backup").expect("claim");

        assert_eq!(claim, Claim::Won);
    }

    #[test]
    fn test_etcd_racing_threads_exactly_one_wins() {
        const THREADS: usize = 8;
        let server = EtcdServer::start();
        let url = server.url();
        for round in 0..50u64 {
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (barrier, url) = (Arc::clone(&barrier), url.clone());
                    std::thread::spawn(move || {
                        let mut arbiter = EtcdArbiter::new(&url, "/ftvm/race").expect("valid");
                        let me = format!("node {i}");
                        barrier.wait();
                        (
                            me.clone(),
                            arbiter.test_and_set(round, 1, &me).expect("claim"),
                        )
                    })
                })
                .collect();
            let results: Vec<(String, Claim)> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();

            let winners: Vec<&String> = results
                .iter()
                .filter(|(_, c)| *c == Claim::Won)
                .map(|(me, _)| me)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let expected = lost(winners[0]);
            assert!(
                results
                    .iter()
                    .all(|(_, claim)| *claim == Claim::Won || *claim == expected),
                "round {round}: {results:?}"
            );
        }
    }

    #[test]
    fn test_etcd_keepalive_holds_claim_until_arbiter_dropped() {
        let server = EtcdServer::start();
        let mut winner = arbiter(&server).with_lease_ttl(Duration::from_secs(3));
        let mut other = arbiter(&server);
        winner.test_and_set(5, 1, "winner").expect("claim");

        std::thread::sleep(Duration::from_secs(5));
        let while_alive = other.test_and_set(5, 1, "other").expect("claim");
        drop(winner);
        std::thread::sleep(Duration::from_secs(5));
        let after_drop = other.test_and_set(5, 1, "other").expect("claim");

        assert_eq!((while_alive, after_drop), (lost("winner"), Claim::Won));
    }

    #[test]
    fn test_etcd_retry_from_new_arbiter_keeps_found_claim_alive() {
        let server = EtcdServer::start();
        let short = Duration::from_secs(3);
        let mut first = arbiter(&server).with_lease_ttl(short);
        let mut restarted = arbiter(&server).with_lease_ttl(short);
        let mut other = arbiter(&server);
        first.test_and_set(8, 1, "primary").expect("claim");
        restarted.test_and_set(8, 1, "primary").expect("retry");

        drop(first);
        std::thread::sleep(Duration::from_secs(5));
        let claim = other.test_and_set(8, 1, "other").expect("claim");

        assert_eq!(claim, lost("primary"));
    }

    #[test]
    fn test_etcd_expired_lease_is_replaced() {
        let server = EtcdServer::start();
        let mut arbiter = arbiter(&server).with_lease_ttl(Duration::from_secs(2));
        arbiter.test_and_set(6, 1, "primary").expect("claim");
        let old_lease = arbiter.lease;
        // Forget the keepalive so the lease expires, as after a long partition.
        arbiter.keepalive.clear();
        std::thread::sleep(Duration::from_secs(4));

        let claim = arbiter
            .test_and_set(6, 2, "primary")
            .expect("claim with a new lease");

        assert_eq!(claim, Claim::Won);
        assert_ne!(arbiter.lease, old_lease);
    }

    #[test]
    fn test_etcd_unreachable_is_error_quickly() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let mut arbiter =
            open(&format!("etcd=http://127.0.0.1:{port},key=/ftvm/pair")).expect("valid spec");
        let start = Instant::now();

        let error = arbiter
            .test_and_set(1, 1, "primary")
            .expect_err("nobody listens");

        assert!(
            start.elapsed() < Duration::from_secs(3),
            "took {:?}",
            start.elapsed()
        );
        assert!(matches!(error, ArbiterError::Unreachable { .. }), "{error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("etcd at http://127.0.0.1:{port} is unreachable: ")),
            "{error}"
        );
    }

    #[test]
    fn test_etcd_http_error_names_status_and_etcd_text() {
        let server = EtcdServer::start();
        let put = json!({ "success": [{ "request_put": { "key": base64::encode(b"k"), "lease": "99" } }] });

        let error = call(
            &Endpoint::parse(&server.url()).expect("valid"),
            "/v3/kv/txn",
            &put,
        )
        .expect_err("no such lease");

        assert_eq!(
            error.to_string(),
            format!(
                "etcd at {} answered /v3/kv/txn with HTTP status 404: etcdserver: requested lease not found",
                server.url()
            )
        );
    }
}
