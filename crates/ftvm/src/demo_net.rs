//! `ftvm demo --net`: the demo's pair on a network of namespaces, with a TCP
//! client that keeps one connection to a service in the guest across the
//! failover. Needs root (namespaces, TAP devices).
//!
//! The network (namespace names carry the demo's PID):
//!
//! ```text
//!   netns lan:    br0 (no IP) ── va, vb, vc
//!   netns hosta:  brA (10.79.0.1/24) ── tap0 (the primary's guest), la (peer va)
//!   netns hostb:  brB (10.79.0.2/24) ── tap0 (the backup's guest),  lb (peer vb)
//!   netns client: lc (peer vc) 10.79.0.100/24
//!   guest:        eth0 10.79.0.50/24, a counter service on port 7777
//! ```
//!
//! The pair's logging channel runs between the hosts' addresses; the bridges
//! run without STP and forward delay; the backup announces the guest's MAC
//! when it goes live, so the LAN's bridge moves it to host B's port.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The guest's address.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 50);
/// The guest's counter service's port.
pub const SERVICE_PORT: u16 = 7777;
/// The primary's end of the logging channel (host A's address).
pub const CHANNEL: &str = "10.79.0.1:7700";
/// The guest's `--net` flag on either host.
pub const GUEST_NET_ARG: &str = "tap=tap0,mac=52:54:00:12:34:50";
/// The line the guest prints once its service listens.
pub const READY: &str = "ftvm-demo: counter service on 10.79.0.50:7777";
/// How often the client sends a line.
const EVERY: Duration = Duration::from_millis(50);
/// How long the client waits for one reply before it calls the connection broken.
const REPLY_GUARD: Duration = Duration::from_secs(30);
/// How long the client tries to connect.
const CONNECT_GUARD: Duration = Duration::from_secs(60);
/// How long a bridge port may take to forward.
const PORT_GUARD: Duration = Duration::from_secs(30);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT, SIGTERM and SIGHUP into [`interrupted`], so the demo ends
/// through its guards (and deletes its namespaces).
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether a signal of [`catch_signals`] came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails unless the demo runs as root.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("ftvm demo --net needs root (it creates network namespaces and TAP devices)");
    }
    Ok(())
}

/// The path of host tool `name` (from iproute2).
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("ftvm demo --net needs `{name}`: install the Debian package iproute2")
        })
}

fn run(program: &PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The demo's network; every namespace it made, and so every interface, is
/// deleted on drop.
pub struct DemoNet {
    ip: PathBuf,
    made: Vec<String>,
    /// Host A's namespace (the primary's).
    pub host_a: String,
    /// Host B's namespace (the backup's).
    pub host_b: String,
    /// The client's namespace.
    pub client: String,
    lan: String,
}

impl DemoNet {
    /// Builds the network (see the module's documentation).
    pub fn new() -> anyhow::Result<DemoNet> {
        let pid = std::process::id();
        let name = |tag: &str| format!("ftvm-demo-{pid}-{tag}");
        let mut net = DemoNet {
            ip: tool("ip")?,
            made: Vec::new(),
            host_a: name("hosta"),
            host_b: name("hostb"),
            client: name("client"),
            lan: name("lan"),
        };
        let bridge = tool("bridge")?;
        for ns in [&net.lan, &net.host_a, &net.host_b, &net.client].map(String::clone) {
            run(&net.ip, &["netns", "add", &ns])?;
            net.made.push(ns.clone());
            net.ip(&ns, &["link", "set", "lo", "up"])?;
        }
        let lan = net.lan.clone();
        net.add_bridge(&lan, "br0")?;
        for (ns, br, local, peer, addr) in [
            (net.host_a.clone(), "brA", "la", "va", "10.79.0.1/24"),
            (net.host_b.clone(), "brB", "lb", "vb", "10.79.0.2/24"),
        ] {
            net.add_bridge(&ns, br)?;
            net.ip(&ns, &["tuntap", "add", "dev", "tap0", "mode", "tap"])?;
            net.ip(&ns, &["link", "set", "tap0", "master", br, "up"])?;
            net.ip(
                &lan,
                &[
                    "link", "add", peer, "type", "veth", "peer", "name", local, "netns", &ns,
                ],
            )?;
            net.ip(&lan, &["link", "set", peer, "master", "br0", "up"])?;
            net.ip(&ns, &["link", "set", local, "master", br, "up"])?;
            net.ip(&ns, &["addr", "add", addr, "dev", br])?;
        }
        let client = net.client.clone();
        net.ip(
            &lan,
            &[
                "link", "add", "vc", "type", "veth", "peer", "name", "lc", "netns", &client,
            ],
        )?;
        net.ip(&lan, &["link", "set", "vc", "master", "br0", "up"])?;
        net.ip(&client, &["addr", "add", "10.79.0.100/24", "dev", "lc"])?;
        net.ip(&client, &["link", "set", "lc", "up"])?;
        // A veth's port forwards about a second after it is set up.
        for (ns, port) in [
            (&net.lan, "va"),
            (&net.lan, "vb"),
            (&net.lan, "vc"),
            (&net.host_a, "la"),
            (&net.host_b, "lb"),
        ] {
            let deadline = Instant::now() + PORT_GUARD;
            loop {
                let state = run(&bridge, &["-n", ns, "link", "show", "dev", port])?;
                if state.contains("state forwarding") {
                    break;
                }
                if Instant::now() > deadline {
                    anyhow::bail!("bridge port {port} in {ns} does not forward: {state}");
                }
                if interrupted() {
                    anyhow::bail!("interrupted");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(net)
    }

    fn ip(&self, ns: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        run(&self.ip, &all)
    }

    fn add_bridge(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        self.ip(
            ns,
            &[
                "link",
                "add",
                name,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            ],
        )?;
        self.ip(ns, &["link", "set", name, "up"])?;
        Ok(())
    }

    /// The command that runs `program ARGS...` inside namespace `ns`
    /// (`ip netns exec` execs it, so the child's PID is the program's).
    pub fn command_in(&self, ns: &str, program: &std::path::Path) -> Command {
        let mut cmd = Command::new(&self.ip);
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Drop for DemoNet {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            if let Err(e) = run(&self.ip, &["netns", "del", ns]) {
                eprintln!("warning: {e}");
            }
        }
    }
}

/// The guest command: eth0 up as [`GUEST_IP`], the counter service in the
/// background (each connection gets a shell that answers its n-th line
/// with n), [`READY`], then `workload` in the foreground.
pub fn guest_cmd(workload: &str) -> String {
    format!(
        "ip link set eth0 up; ip addr add {GUEST_IP}/24 dev eth0; \
         printf '#!/bin/sh\\nn=0\\nwhile read l; do n=$((n+1)); echo $n; done\\n' > /ftvm-counter; \
         chmod 755 /ftvm-counter; nc -ll -p {SERVICE_PORT} -e /ftvm-counter & \
         echo '{READY}'; {workload}"
    )
}

#[derive(Default)]
struct State {
    connected: Option<Instant>,
    replies: u64,
    last_reply: Option<Instant>,
    longest: Duration,
    /// When each request was sent and its reply read, in order.
    times: Vec<(Instant, Instant)>,
    error: Option<String>,
    finished: bool,
}

/// A client in the client namespace on one TCP connection to the guest's
/// counter service: sends a line every 50 ms and checks that the n-th reply
/// is n, printing its progress once a second.
pub struct Client {
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Client {
    /// Starts the client's thread in namespace `ns`.
    pub fn start(ns: &str) -> Client {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/var/run/netns/{ns}");
        {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let result = client_thread(&path, &state, &stop);
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = result {
                    println!("[client] {e}");
                    s.error = Some(e);
                }
                s.finished = true;
            });
        }
        Client { state, stop }
    }

    /// How many replies came so far, or the error that ended the connection.
    pub fn progress(&self) -> Result<u64, String> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &s.error {
            Some(e) => Err(e.clone()),
            None => Ok(s.replies),
        }
    }

    /// Stops the client (waiting a little for its current request) and
    /// returns whether it succeeded and its summary line. `killed` is when
    /// the primary was killed: a reply must have come after it.
    pub fn finish(self, killed: Option<Instant>) -> (bool, String) {
        self.stop.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let done = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .finished;
            if done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let longest = s.longest.as_millis();
        // One request is outstanding at a time: the first answered after the
        // SIGKILL is the one that waited for the backup to go live.
        let across = killed.and_then(|k| {
            let &(sent, received) = s.times.iter().find(|&&(_, r)| r > k)?;
            Some((received - sent, received - k))
        });
        if let Some(e) = &s.error {
            return (
                false,
                format!("client: FAILED after {} replies in order: {e}", s.replies),
            );
        }
        if s.connected.is_none() {
            return (false, "client: FAILED: never connected".into());
        }
        if !s.finished {
            return (
                false,
                format!(
                    "client: FAILED: {} replies, then no reply for {} ms",
                    s.replies,
                    s.last_reply
                        .or(s.connected)
                        .map_or(0, |t| t.elapsed().as_millis())
                ),
            );
        }
        match (killed, across) {
            (Some(_), None) => (
                false,
                format!(
                    "client: FAILED: {} replies, none after the primary was killed",
                    s.replies
                ),
            ),
            (_, Some((wait, after_kill))) => (
                true,
                format!(
                    "client: {} replies on one connection, every one in order; longest wait across the failover {} ms (its reply came {} ms after the SIGKILL; longest wait of all {longest} ms)",
                    s.replies,
                    wait.as_millis(),
                    after_kill.as_millis()
                ),
            ),
            (None, None) => (
                true,
                format!(
                    "client: {} replies on one connection, every one in order; longest wait {longest} ms",
                    s.replies
                ),
            ),
        }
    }
}

fn client_thread(path: &str, state: &Mutex<State>, stop: &AtomicBool) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid namespace fd changes only this thread's network
    // namespace; the thread is ours and ends here.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "setns({path}): {}",
            std::io::Error::last_os_error()
        ));
    }
    let addr = SocketAddr::from((GUEST_IP, SERVICE_PORT));
    let deadline = Instant::now() + CONNECT_GUARD;
    let stream = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("cannot connect to {addr}: {e}"))
            }
            Err(_) if stop.load(Ordering::SeqCst) => return Err("stopped".into()),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let io = |e: std::io::Error| e.to_string();
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(REPLY_GUARD)).map_err(io)?;
    stream.set_write_timeout(Some(REPLY_GUARD)).map_err(io)?;
    let local = stream.local_addr().map_err(io)?;
    println!("[client] connected from {local} to {addr}");
    state.lock().unwrap_or_else(|e| e.into_inner()).connected = Some(Instant::now());
    let mut writer = stream.try_clone().map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut n = 0u64;
    let mut next = Instant::now();
    let mut report = Instant::now() + Duration::from_secs(1);
    let mut line = String::new();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next = Instant::now() + EVERY;
        n += 1;
        let sent = Instant::now();
        writer
            .write_all(format!("line {n}\n").as_bytes())
            .map_err(|e| format!("sending line {n}: {e}"))?;
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Err(format!("the connection was closed before reply {n}")),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "no reply to line {n} within {} s",
                    REPLY_GUARD.as_secs()
                ))
            }
            Err(e) => return Err(format!("waiting for reply {n}: {e}")),
        }
        let got = line.trim();
        if got != n.to_string() {
            return Err(format!(
                "reply {got:?} where {n} was expected (out of order)"
            ));
        }
        let received = Instant::now();
        let (replies, longest) = {
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.replies = n;
            s.last_reply = Some(received);
            s.longest = s.longest.max(received - sent);
            s.times.push((sent, received));
            (s.replies, s.longest)
        };
        if received >= report {
            report = received + Duration::from_secs(1);
            println!(
                "[client] {replies} replies, last {n}, longest wait {} ms",
                longest.as_millis()
            );
        }
    }
    Ok(())
}
