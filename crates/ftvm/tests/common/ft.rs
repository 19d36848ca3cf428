//! Helpers of the fault-tolerance tests: the guest counter server (`guest/counter`)
//! built and added to the initrd, the network of a primary and a backup host and a
//! client, and a client that keeps one TCP connection to the guest's counter and
//! checks that the replies go on counting.
//!
//! The network, per run (namespace names carry the PID and a tag):
//!
//! ```text
//!   netns lan:    br0 (no IP) ── va, vb, vc
//!   netns hosta:  brA (10.78.0.1/24) ── tap0 (the primary's guest), la (peer va)
//!   netns hostb:  brB (10.78.0.2/24) ── tap0 (the backup's guest),  lb (peer vb)
//!   netns client: lc (peer vc) 10.78.0.100/24
//!   guest:        eth0 10.78.0.50/24 (set by the guest, see counter_guest_cmd)
//! ```
//!
//! Bridges run without STP and with no forward delay, so a port forwards as soon as its
//! link is up ([`FtNetwork::new`] waits for the veths' ports), and they learn a MAC
//! address on the port its latest frame came in on, so the guest's address moves from
//! `va` to `vb` with the first frame the guest sends from host B. Until then the LAN
//! sends the guest's frames to host A: a backup that goes live should announce the
//! guest (e.g. a gratuitous ARP, as VMware FT and QEMU do) rather than wait for the
//! guest to send something.

use super::{require_tool, run, unique, Netns};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The guest's address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 50);
/// The counter server's port.
pub const COUNTER_PORT: u16 = 7777;
/// Host A's address on its bridge.
pub const HOST_A_ADDR: &str = "10.78.0.1/24";
/// Host B's address on its bridge.
pub const HOST_B_ADDR: &str = "10.78.0.2/24";
/// The client's address.
pub const CLIENT_ADDR: &str = "10.78.0.100/24";
/// The guest's MAC address (the same on both hosts).
pub const GUEST_MAC: &str = "52:54:00:12:34:50";
/// The guest's `--net` flag on either host.
pub const GUEST_NET_ARG: &str = "tap=tap0,mac=52:54:00:12:34:50";
/// The line the guest prints once eth0 is configured (by [`counter_guest_cmd`]).
pub const COUNTER_NET_UP: &str = "ftvm-counter: net up";
/// The start of the line the counter server prints once it accepts connections.
pub const COUNTER_LISTENING: &str = "ftvm-counter: listening on port";
/// Where [`initrd_with`] usually puts the server in the guest.
pub const COUNTER_GUEST_PATH: &str = "bin/ftvm-counter";

/// How long a bridge port may take to forward (a hang guard).
pub const PORT_GUARD: Duration = Duration::from_secs(30);

/// How long one reply may take before the client gives up on the connection (a hang
/// guard; a failover must be far shorter).
pub const REPLY_GUARD: Duration = Duration::from_secs(120);

/// Compiles `guest/counter/counter.c` into `dir/ftvm-counter`, a static riscv64
/// program, and returns its path.
pub fn build_counter(dir: &Path) -> PathBuf {
    let gcc = require_tool("riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guest/counter/counter.c");
    let out = dir.join("ftvm-counter");
    run(
        gcc,
        &[
            "-static",
            "-O2",
            "-Wall",
            "-o",
            out.to_str().expect("UTF-8 path"),
            source.to_str().expect("UTF-8 path"),
        ],
    );
    out
}

/// Writes to `out` the fetched guest initrd followed by a second newc cpio archive with
/// `files` as (path in the guest without a leading `/`, file on the host, permission
/// bits), and their parent directories; returns `out`.
///
/// The fetched initrd is one (uncompressed) archive; Linux unpacks the archives of a
/// concatenation in order (compressed or not, each starting on a 4-byte boundary), so
/// the second one adds files to the first's and replaces files of the same path.
pub fn initrd_with(files: &[(&str, &Path, u32)], out: &Path) -> PathBuf {
    let base = super::guest_images().initrd;
    let mut bytes = std::fs::read(&base).unwrap_or_else(|e| panic!("read {}: {e}", base.display()));
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    let mut archive = ftvm_host::images::cpio::CpioArchive::new();
    for &(path, host_file, mode) in files {
        assert!(
            !path.starts_with('/') && !path.is_empty(),
            "guest paths are relative to the root: {path:?}"
        );
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            archive.dir(dir.to_str().expect("UTF-8 path"), 0o755);
            parent = dir.parent();
        }
        let data = std::fs::read(host_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", host_file.display()));
        archive.file(path, mode, data);
    }
    bytes.extend_from_slice(&archive.to_bytes());
    std::fs::write(out, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    out.to_path_buf()
}

/// The guest command (for `--guest-cmd`) that configures eth0 as [`GUEST_IP`], prints
/// [`COUNTER_NET_UP`] and runs the counter server on [`COUNTER_PORT`] in the foreground,
/// so the guest stays up; the server prints [`COUNTER_LISTENING`] when it is ready.
pub fn counter_guest_cmd() -> String {
    format!(
        "ip link set eth0 up; ip addr add {GUEST_IP}/24 dev eth0; echo '{COUNTER_NET_UP}'; \
         exec /{COUNTER_GUEST_PATH} {COUNTER_PORT}"
    )
}

/// The `--net` flag of the guest's card on either host, as ftvm arguments.
pub fn guest_net_args() -> Vec<OsString> {
    vec!["--net".into(), GUEST_NET_ARG.into()]
}

/// One of the namespaces of an [`FtNetwork`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ns {
    /// The switch between the hosts and the client.
    Lan,
    /// The primary's host (`'a'`).
    HostA,
    /// The backup's host (`'b'`).
    HostB,
    /// The client.
    Client,
}

impl Ns {
    /// The host namespace of host `'a'` or `'b'`.
    pub fn host(host: char) -> Ns {
        match host {
            'a' | 'A' => Ns::HostA,
            'b' | 'B' => Ns::HostB,
            other => panic!("hosts are 'a' and 'b', not {other:?}"),
        }
    }
}

/// The network of the fault-tolerance tests (see the module's documentation); every
/// namespace, and so every interface, is deleted on drop.
pub struct FtNetwork {
    lan: Netns,
    hosta: Netns,
    hostb: Netns,
    client: Netns,
}

impl FtNetwork {
    /// Builds the network; `tag` makes the namespace names unique within the process.
    pub fn new(tag: &str) -> FtNetwork {
        require_tool("ip", "iproute2");
        let net = FtNetwork {
            lan: Netns::new(&unique("ftvm-lan", tag)),
            hosta: Netns::new(&unique("ftvm-ha", tag)),
            hostb: Netns::new(&unique("ftvm-hb", tag)),
            client: Netns::new(&unique("ftvm-cl", tag)),
        };
        add_bridge(&net.lan, "br0");
        for (ns, bridge, local, peer, addr) in [
            (&net.hosta, "brA", "la", "va", HOST_A_ADDR),
            (&net.hostb, "brB", "lb", "vb", HOST_B_ADDR),
        ] {
            add_bridge(ns, bridge);
            ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
            ns.ip(&["link", "set", "tap0", "master", bridge, "up"]);
            net.lan.ip(&[
                "link",
                "add",
                peer,
                "type",
                "veth",
                "peer",
                "name",
                local,
                "netns",
                ns.name(),
            ]);
            net.lan.ip(&["link", "set", peer, "master", "br0", "up"]);
            ns.ip(&["link", "set", local, "master", bridge, "up"]);
            ns.ip(&["addr", "add", addr, "dev", bridge]);
        }
        net.lan.ip(&[
            "link",
            "add",
            "vc",
            "type",
            "veth",
            "peer",
            "name",
            "lc",
            "netns",
            net.client.name(),
        ]);
        net.lan.ip(&["link", "set", "vc", "master", "br0", "up"]);
        net.client.ip(&["addr", "add", CLIENT_ADDR, "dev", "lc"]);
        net.client.ip(&["link", "set", "lc", "up"]);
        for (which, port) in [
            (Ns::Lan, "va"),
            (Ns::Lan, "vb"),
            (Ns::Lan, "vc"),
            (Ns::HostA, "la"),
            (Ns::HostB, "lb"),
        ] {
            net.wait_forwarding(which, port);
        }
        net
    }

    /// Waits until bridge port `port` of namespace `which` forwards. A veth's carrier,
    /// and so its port, comes up about a second after `ip link set up` (the kernel's
    /// link watch batches such events); a TAP's comes up when ftvm opens it.
    pub fn wait_forwarding(&self, which: Ns, port: &str) {
        let bridge = require_tool("bridge", "iproute2");
        let ns = self.name(which);
        let deadline = Instant::now() + PORT_GUARD;
        loop {
            let state = run(&bridge, &["-n", ns, "link", "show", "dev", port]);
            if state.contains("state forwarding") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bridge port {port} in {ns} does not forward within {PORT_GUARD:?}: {state}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Namespace `which`.
    pub fn ns(&self, which: Ns) -> &Netns {
        match which {
            Ns::Lan => &self.lan,
            Ns::HostA => &self.hosta,
            Ns::HostB => &self.hostb,
            Ns::Client => &self.client,
        }
    }

    /// The name of namespace `which` (for `ip netns exec`, [`super::Vm::start_with`]).
    pub fn name(&self, which: Ns) -> &str {
        self.ns(which).name()
    }

    /// Cuts host `'a'` or `'b'` off the LAN: sets its veth (`la` or `lb`) down, so
    /// neither its host address nor its guest's TAP is reachable from the others.
    pub fn cut_link(&self, host: char) {
        self.set_link(host, false);
    }

    /// Undoes [`FtNetwork::cut_link`], and waits until the link forwards again.
    pub fn restore_link(&self, host: char) {
        self.set_link(host, true);
        let which = Ns::host(host);
        self.wait_forwarding(Ns::Lan, if which == Ns::HostA { "va" } else { "vb" });
        self.wait_forwarding(which, if which == Ns::HostA { "la" } else { "lb" });
    }

    fn set_link(&self, host: char, up: bool) {
        let which = Ns::host(host);
        let dev = if which == Ns::HostA { "la" } else { "lb" };
        let state = if up { "up" } else { "down" };
        self.ns(which).ip(&["link", "set", dev, state]);
    }

    /// Runs `f` on a thread inside namespace `which` and returns its result; sockets
    /// it opens stay in that namespace whichever thread uses them later.
    pub fn run_in<T: Send + 'static>(
        &self,
        which: Ns,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.ns(which).run_inside(f)
    }
}

/// A bridge that forwards as soon as a port is up (no STP, no forward delay), up.
fn add_bridge(ns: &Netns, name: &str) {
    ns.ip(&[
        "link",
        "add",
        name,
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ]);
    ns.ip(&["link", "set", name, "up"]);
}

/// One reply of the counter, with when its request was sent and when it came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The counter's value.
    pub value: u64,
    /// When the request was written.
    pub sent: Instant,
    /// When the reply was read.
    pub received: Instant,
}

/// A client of the guest's counter server on one TCP connection, opened in the
/// client namespace.
pub struct CounterClient {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl CounterClient {
    /// Connects from the client namespace of `net` to [`GUEST_IP`]:[`COUNTER_PORT`],
    /// retrying until `within` has passed; the last error if it never succeeds.
    pub fn connect(net: &FtNetwork, within: Duration) -> io::Result<CounterClient> {
        let stream = net.run_in(Ns::Client, move || {
            let addr = SocketAddr::from((GUEST_IP, COUNTER_PORT));
            let deadline = Instant::now() + within;
            loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(stream) => return Ok(stream),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        })?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(REPLY_GUARD))?;
        stream.set_write_timeout(Some(REPLY_GUARD))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(CounterClient { stream, reader })
    }

    /// Sets how long one request may wait for its reply (default [`REPLY_GUARD`]).
    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        self.stream.set_write_timeout(Some(timeout))
    }

    /// Sends one request line and returns the counter's reply.
    pub fn request(&mut self) -> io::Result<u64> {
        self.stream.write_all(b"next\n")?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the server closed the connection (partial reply {line:?})"),
            ));
        }
        line.trim_end().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("reply {line:?} is not a number: {e}"),
            )
        })
    }

    /// Sends one request and returns its reply with the times around it.
    pub fn timed_request(&mut self) -> io::Result<Reply> {
        let sent = Instant::now();
        let value = self.request()?;
        Ok(Reply {
            value,
            sent,
            received: Instant::now(),
        })
    }

    /// Moves the client to a background thread that sends a request every `every`
    /// (the next one right after a late reply) and records every reply, until
    /// [`CounterLoad::stop`] or the connection's first error, which it records.
    pub fn spawn_load(mut self, every: Duration) -> CounterLoad {
        let shared = Arc::new((Mutex::new(LoadState::default()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next = now + every;
                    let result = self.timed_request();
                    let (lock, cvar) = &*shared;
                    let mut state = lock.lock().expect("load lock");
                    match result {
                        Ok(reply) => state.replies.push(reply),
                        Err(e) => {
                            state.error = Some((Instant::now(), e.to_string()));
                            cvar.notify_all();
                            return self;
                        }
                    }
                    cvar.notify_all();
                }
                self
            })
        };
        CounterLoad {
            shared,
            stop,
            handle: Some(handle),
        }
    }
}

#[derive(Default)]
struct LoadState {
    replies: Vec<Reply>,
    error: Option<(Instant, String)>,
}

/// A [`CounterClient`] sending requests from a background thread.
pub struct CounterLoad {
    shared: Arc<(Mutex<LoadState>, Condvar)>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<CounterClient>>,
}

impl CounterLoad {
    /// How many replies came so far.
    pub fn count(&self) -> usize {
        self.shared.0.lock().expect("load lock").replies.len()
    }

    /// The latest reply, if any.
    pub fn last(&self) -> Option<Reply> {
        self.shared
            .0
            .lock()
            .expect("load lock")
            .replies
            .last()
            .copied()
    }

    /// The error that ended the connection, if it ended.
    pub fn error(&self) -> Option<String> {
        let state = self.shared.0.lock().expect("load lock");
        state.error.as_ref().map(|(_, e)| e.clone())
    }

    /// Waits until `n` replies came in all (true), or the connection failed or
    /// `timeout` passed (false).
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.shared;
        let mut state = lock.lock().expect("load lock");
        loop {
            if state.replies.len() >= n {
                return true;
            }
            let now = Instant::now();
            if state.error.is_some() || now >= deadline {
                return false;
            }
            state = cvar
                .wait_timeout(state, deadline - now)
                .expect("load lock")
                .0;
        }
    }

    /// Stops the thread after its current request and returns what it recorded and
    /// the client (to go on on the same connection, unless it failed).
    pub fn stop(mut self) -> (LoadReport, CounterClient) {
        self.stop.store(true, Ordering::Relaxed);
        let client = match self.handle.take().expect("running").join() {
            Ok(client) => client,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        let mut state = self.shared.0.lock().expect("load lock");
        let report = LoadReport {
            replies: std::mem::take(&mut state.replies),
            error: state.error.take(),
        };
        (report, client)
    }
}

impl Drop for CounterLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Not joined: a request may be blocked on a dead server until REPLY_GUARD.
    }
}

/// What a [`CounterLoad`] recorded.
#[derive(Debug)]
pub struct LoadReport {
    /// Every reply, in order.
    pub replies: Vec<Reply>,
    /// The error that ended the connection (when, and what), if it ended.
    pub error: Option<(Instant, String)>,
}

impl LoadReport {
    /// Checks that the replies are `first`, `first + 1`, … with none missing, repeated
    /// or out of order; the first offending position otherwise.
    pub fn check_sequence(&self, first: u64) -> Result<(), String> {
        for (i, reply) in self.replies.iter().enumerate() {
            let expected = first + i as u64;
            if reply.value != expected {
                let from = i.saturating_sub(3);
                let around: Vec<u64> = self.replies[from..(i + 4).min(self.replies.len())]
                    .iter()
                    .map(|r| r.value)
                    .collect();
                return Err(format!(
                    "reply #{i} is {} but {expected} was expected (replies from #{from}: {around:?})",
                    reply.value
                ));
            }
        }
        Ok(())
    }

    /// The longest time between two consecutive replies (the failover time as the
    /// client sees it), with the index of the later one; `None` with fewer than two.
    pub fn max_gap(&self) -> Option<(Duration, usize)> {
        self.replies
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].received - w[0].received, i + 1))
            .max_by_key(|&(gap, _)| gap)
    }

    /// The longest time one request waited for its reply, with its index.
    pub fn max_latency(&self) -> Option<(Duration, usize)> {
        self.replies
            .iter()
            .enumerate()
            .map(|(i, r)| (r.received - r.sent, i))
            .max_by_key(|&(latency, _)| latency)
    }
}
