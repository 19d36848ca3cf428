//! A throw-away etcd server for tests, of this crate and of others.
//!
//! [`EtcdServer::start`] runs `/usr/bin/etcd` (Debian package `etcd-server`; the
//! environment variable `FTVM_ETCD` names another binary) on free loopback ports
//! with a fresh data directory, and waits until it answers. Dropping the
//! [`EtcdServer`] kills that process, by its PID, and removes the directory.
//!
//! These helpers are for tests: they panic, with a message saying what to do, when
//! etcd is missing or does not come up.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::http::Endpoint;

/// The etcd binary used when `FTVM_ETCD` is not set.
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// How long etcd may take to answer its health check after starting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times to start etcd again when it dies at once (another process took a
/// port between our choosing it and etcd binding it).
const START_ATTEMPTS: u32 = 3;

/// A running etcd, killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    dir: PathBuf,
    client_port: u16,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports with an empty data directory and waits
    /// until it is healthy.
    ///
    /// # Panics
    ///
    /// When the etcd binary is missing (install the Debian package `etcd-server`) or
    /// does not become healthy within 30 seconds; the message includes etcd's log.
    pub fn start() -> EtcdServer {
        let binary = std::env::var_os("FTVM_ETCD")
            .map_or_else(|| PathBuf::from(DEFAULT_ETCD), PathBuf::from);
        assert!(
            binary.exists(),
            "etcd not found at {}: install it with `apt-get install etcd-server` (or set FTVM_ETCD to an etcd binary)",
            binary.display()
        );
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            match EtcdServer::try_start(&binary) {
                Ok(server) => return server,
                Err(log) => last_log = log,
            }
        }
        panic!(
            "etcd {} did not start {START_ATTEMPTS} times; its last log:\n{last_log}",
            binary.display()
        );
    }

    /// One attempt; on failure, the server is dropped (killed) and its log returned.
    fn try_start(binary: &Path) -> Result<EtcdServer, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ftvm-etcd-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let log = fs::File::create(dir.join("etcd.log"))
            .map_err(|error| format!("cannot create the log: {error}"))?;
        let log_err = log
            .try_clone()
            .map_err(|error| format!("cannot clone the log: {error}"))?;
        let (client_port, peer_port) = free_ports();
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let spawned = Command::new(binary)
            .arg("--name=ftvm-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ftvm-test={peer}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(format!("cannot run {}: {error}", binary.display()));
            }
        };
        let mut server = EtcdServer {
            child,
            dir,
            client_port,
        };
        let endpoint = Endpoint::parse(&client).map_err(|reason| reason.to_string())?;
        let start = Instant::now();
        while start.elapsed() < START_TIMEOUT {
            if let Ok(Some(_)) = server.child.try_wait() {
                break;
            }
            match endpoint.get("/health") {
                Ok(response)
                    if response.status == 200
                        && response.body.windows(6).any(|w| w == b"\"true\"") =>
                {
                    return Ok(server);
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Err(server.log())
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// What etcd wrote to its standard output and error so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // `Child::kill` signals exactly this process, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Two different loopback TCP ports that were free a moment ago.
fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("the bound address").port();
    (port(&a), port(&b))
}
