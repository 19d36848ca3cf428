//! End to end: the fault-tolerant pair, `ftvm primary` on host A and `ftvm backup` on
//! host B of the FT network (`common::ft`), with real failures: SIGKILL of either side
//! while a client keeps one TCP connection to the guest's counter server, the same
//! with an etcd arbiter, a cut link between the hosts (split brain: exactly one side
//! may go on), and a guest writing files to a shared disk across a failover.
//!
//! Timings (failover times, gaps between replies) are printed, never asserted.
//!
//! Needs the guest images (`ftvm images fetch`), iproute2, gcc-riscv64-linux-gnu,
//! e2fsprogs, etcd-server and root.

mod common;

use common::ft::{
    build_counter, counter_guest_cmd, guest_net_args, initrd_with, CounterClient, FtNetwork,
    LoadReport, Ns, COUNTER_GUEST_PATH, COUNTER_LISTENING,
};
use common::{find_line, guest_args, require_root, require_tool, run, ChildGuard, TempDir, Vm};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a step may take before the test gives up (hang guards, not assertions).
const STEP_GUARD: Duration = Duration::from_secs(600);
/// Where the primary listens for the backup (host A's address).
const LISTEN: &str = "10.78.0.1:7700";
/// The interval of the client's requests.
const LOAD_EVERY: Duration = Duration::from_millis(15);
/// Replies before the failure, and at least as many after it.
const REPLIES: usize = 200;
/// The guest's memory on each side.
const MEMORY: &str = "512M";
/// What the backup prints once it has gone live.
const BACKUP_LIVE: &str = "ftvm backup: live at icount";
/// What the primary prints once it runs alone.
const PRIMARY_ALONE: &str = "ftvm primary: the backup is gone; running alone";
/// What the loser of the arbiter says.
const HALTS: &str = "halts";
/// The failure timeout of the tests' pairs. The default, 250 ms, is shorter than
/// the stalls a single process sees on a small, shared test machine; a false
/// suspicion is safe (the arbiter picks one side) but ends the pair before the
/// failure a test means to cause. A SIGKILL is detected at once anyway: the
/// logging channel's TCP connection breaks.
const TIMEOUT_MS: &str = "1000";

/// `ftvm primary` or `ftvm backup`, the FT flags and the serial console on stdout.
fn side_args(role: &str, arbiter: &str) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![role.into()];
    match role {
        "primary" => args.extend(["--listen".into(), LISTEN.into()]),
        "backup" => args.extend(["--peer".into(), LISTEN.into()]),
        other => panic!("no role {other}"),
    }
    args.extend(
        [
            "--arbiter",
            arbiter,
            "--timeout-ms",
            TIMEOUT_MS,
            "--memory",
            MEMORY,
            "--serial",
            "stdio",
        ]
        .map(OsString::from),
    );
    args
}

/// A primary on host A and a backup on host B, both given `vm` (the VM flags).
struct Pair {
    primary: Vm,
    backup: Vm,
}

impl Pair {
    fn start(net: &FtNetwork, arbiter: &str, vm: &[OsString]) -> Pair {
        Pair::start_each(net, arbiter, vm, vm)
    }

    /// A primary given `primary_vm` and a backup given `backup_vm` (disks of
    /// their own).
    fn start_each(
        net: &FtNetwork,
        arbiter: &str,
        primary_vm: &[OsString],
        backup_vm: &[OsString],
    ) -> Pair {
        let mut p = side_args("primary", arbiter);
        p.extend_from_slice(primary_vm);
        let primary = Vm::spawn(Some(net.name(Ns::HostA)), &p);
        let mut b = side_args("backup", arbiter);
        b.extend_from_slice(backup_vm);
        let backup = Vm::spawn(Some(net.name(Ns::HostB)), &b);
        Pair { primary, backup }
    }

    /// Both consoles (and ftvm's messages), for failure messages.
    fn consoles(&self) -> String {
        format!(
            "--- primary:\n{}\n--- backup:\n{}",
            self.primary.console().text(),
            self.backup.console().text()
        )
    }
}

/// The counter guest's VM flags: its initrd (built in `dir`), its command, its card.
fn counter_vm(dir: &Path) -> Vec<OsString> {
    let counter = build_counter(dir);
    let initrd = initrd_with(
        &[(COUNTER_GUEST_PATH, &counter, 0o755)],
        &dir.join("initrd.img"),
    );
    let mut vm = guest_args(
        Some(&initrd),
        "console=ttyS0 quiet",
        Some(&counter_guest_cmd()),
    );
    vm.extend(guest_net_args());
    vm
}

/// The arbiter file of a test, in its temporary directory (both hosts see it).
fn file_arbiter(dir: &Path) -> String {
    format!("file={}", dir.join("arbiter").display())
}

/// Which side is killed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Victim {
    Primary,
    Backup,
}

/// What a failover run measured.
struct Failover {
    report: LoadReport,
    killed_at: Instant,
    replies_before: usize,
}

impl Failover {
    /// The time from the kill to the first reply after it.
    fn first_reply_after_kill(&self) -> Option<Duration> {
        self.report
            .replies
            .iter()
            .find(|r| r.received > self.killed_at)
            .map(|r| r.received - self.killed_at)
    }

    fn print(&self, test: &str, live: Option<String>) {
        let (gap, at) = self.report.max_gap().expect("several replies");
        eprintln!(
            "{test}: [live at {}] {} replies ({} before the kill); largest gap between replies {gap:?} \
             (before reply #{at}); first reply {:?} after the kill; largest latency {:?}",
            live.unwrap_or_else(|| "-".into()),
            self.report.replies.len(),
            self.replies_before,
            self.first_reply_after_kill(),
            self.report.max_latency().map(|(l, _)| l),
        );
    }
}

/// Boots the counter guest on `pair`, runs the client's load on one connection,
/// SIGKILLs `victim` after [`REPLIES`] replies and goes on until [`REPLIES`] more came;
/// checks the connection never broke and the replies count on by one.
fn kill_during_load(net: &FtNetwork, pair: &mut Pair, victim: Victim) -> Failover {
    pair.primary
        .console()
        .wait_for_line(COUNTER_LISTENING, STEP_GUARD);
    let client = CounterClient::connect(net, STEP_GUARD)
        .unwrap_or_else(|e| panic!("connect to the counter: {e}\n{}", pair.consoles()));
    let load = client.spawn_load(LOAD_EVERY);
    assert!(
        load.wait_for_count(REPLIES, STEP_GUARD),
        "the load got {} replies before the kill (error: {:?})\n{}",
        load.count(),
        load.error(),
        pair.consoles()
    );
    for (vm, what) in [(&mut pair.primary, "primary"), (&mut pair.backup, "backup")] {
        assert!(
            vm.child().try_wait().is_none(),
            "the {what} ended before the kill"
        );
    }
    let replies_before = load.count();
    let killed_at = Instant::now();
    match victim {
        Victim::Primary => pair.primary.child().stop(),
        Victim::Backup => pair.backup.child().stop(),
    }
    let got = load.wait_for_count(replies_before + REPLIES, STEP_GUARD);
    let count = load.count();
    let (report, client) = load.stop();
    drop(client);
    assert!(
        got && report.error.is_none(),
        "the connection broke after the {victim:?} was killed: {count} replies, \
         {replies_before} before the kill; error {:?}\n{}",
        report.error.as_ref().map(|(_, e)| e),
        pair.consoles()
    );
    report
        .check_sequence(1)
        .unwrap_or_else(|e| panic!("{e}\n{}", pair.consoles()));
    Failover {
        report,
        killed_at,
        replies_before,
    }
}

#[test]
fn test_primary_killed_mid_stream_client_connection_survives() {
    require_root();
    let dir = TempDir::new("ftpair-p");
    let net = FtNetwork::new("ftp1");
    let vm = counter_vm(dir.path());
    let mut pair = Pair::start(&net, &file_arbiter(dir.path()), &vm);

    let failover = kill_during_load(&net, &mut pair, Victim::Primary);
    failover.print(
        "primary killed (file arbiter)",
        find_line(&pair.backup.console().text(), BACKUP_LIVE),
    );

    let backup = pair.backup.console();
    assert!(
        find_line(&backup.text(), BACKUP_LIVE).is_some(),
        "the backup did not say it went live\n{}",
        pair.consoles()
    );
    assert!(
        pair.backup.child().try_wait().is_none(),
        "the new primary ended\n{}",
        pair.consoles()
    );
}

#[test]
fn test_backup_killed_primary_goes_on_alone() {
    require_root();
    let dir = TempDir::new("ftpair-b");
    let net = FtNetwork::new("ftp2");
    let vm = counter_vm(dir.path());
    let mut pair = Pair::start(&net, &file_arbiter(dir.path()), &vm);

    let failover = kill_during_load(&net, &mut pair, Victim::Backup);
    failover.print("backup killed (file arbiter)", None);

    assert!(
        find_line(&pair.primary.console().text(), PRIMARY_ALONE).is_some(),
        "the primary did not say it runs alone\n{}",
        pair.consoles()
    );
    assert!(
        pair.primary.child().try_wait().is_none(),
        "the primary ended\n{}",
        pair.consoles()
    );
}

/// What the side running the guest says once a new backup has its snapshot.
const REJOINED: &str = "ftvm primary: the backup has the snapshot";

/// What a backup that joined a running primary says.
const JOINED: &str = "ftvm backup: joined the running guest at icount";

/// Where a backup takes a new backup once it has gone live (host B).
const BACKUP_LISTEN: &str = "10.78.0.2:7701";

/// What a backup gone live with `--listen` says.
const LIVE_LISTENING: &str = "ftvm backup: live alone; a new backup may join on";

/// Re-protection after the backup dies: the primary runs alone, a new backup
/// joins it (a snapshot of the running guest, then the log), and when the
/// primary dies in turn the new backup goes live: one client connection
/// throughout, every reply the previous one plus one.
#[test]
fn test_a_new_backup_joins_the_lone_primary_and_takes_over_when_it_dies() {
    rejoin(Victim::Backup, "ftpair-j", "ftp9");
}

/// Re-protection after the primary dies: the backup goes live and, given
/// `--listen`, takes a new backup (on host A), which goes live when the
/// first backup dies in turn; one client connection throughout.
#[test]
fn test_a_new_backup_joins_the_live_backup_and_takes_over_when_it_dies() {
    rejoin(Victim::Primary, "ftpair-k", "ftp10");
}

/// Kills `first` of a pair under the client's load, starts a new backup
/// that joins the survivor, kills the survivor, and checks the new backup
/// carries the client's connection on.
fn rejoin(first: Victim, dir_tag: &str, net_name: &str) {
    require_root();
    let dir = TempDir::new(dir_tag);
    let net = FtNetwork::new(net_name);
    let vm = counter_vm(dir.path());
    let arbiter = file_arbiter(dir.path());
    let mut p = side_args("primary", &arbiter);
    p.extend_from_slice(&vm);
    let mut b = side_args("backup", &arbiter);
    b.extend(["--listen".into(), BACKUP_LISTEN.into()]);
    b.extend_from_slice(&vm);
    let mut pair = Pair {
        primary: Vm::spawn(Some(net.name(Ns::HostA)), &p),
        backup: Vm::spawn(Some(net.name(Ns::HostB)), &b),
    };
    pair.primary
        .console()
        .wait_for_line(COUNTER_LISTENING, STEP_GUARD);
    let client = CounterClient::connect(&net, STEP_GUARD)
        .unwrap_or_else(|e| panic!("connect to the counter: {e}\n{}", pair.consoles()));
    let load = client.spawn_load(LOAD_EVERY);
    let more = |load: &common::ft::CounterLoad, pair: &Pair, what: &str| {
        let target = load.count() + REPLIES;
        assert!(
            load.wait_for_count(target, STEP_GUARD),
            "{what}: {} replies, wanted {target} (error: {:?})\n{}",
            load.count(),
            load.error(),
            pair.consoles()
        );
    };
    more(&load, &pair, "before the first kill");

    // `first` dies; the other side runs alone. The new backup runs on the
    // dead side's host and joins the survivor. `pair.primary` is the side
    // that runs the guest from then on, `pair.backup` the new backup.
    let (survivor_ready, new_host, new_peer) = match first {
        Victim::Backup => {
            pair.backup.child().stop();
            (PRIMARY_ALONE, Ns::HostB, LISTEN)
        }
        Victim::Primary => {
            pair.primary.child().stop();
            std::mem::swap(&mut pair.primary, &mut pair.backup);
            (LIVE_LISTENING, Ns::HostA, BACKUP_LISTEN)
        }
    };
    pair.primary
        .console()
        .wait_for_line(survivor_ready, STEP_GUARD);
    more(&load, &pair, "the survivor alone");
    let mut n = side_args("backup", &arbiter);
    n[2] = new_peer.into(); // --peer
    n.extend_from_slice(&vm);
    drop(std::mem::replace(
        &mut pair.backup,
        Vm::spawn(Some(net.name(new_host)), &n),
    ));
    pair.backup.console().wait_for_line(JOINED, STEP_GUARD);
    let pause = pair.primary.console().wait_for_line(REJOINED, STEP_GUARD);
    more(&load, &pair, "paired again");

    // The survivor dies; the new backup goes live.
    pair.primary.child().stop();
    let live = pair.backup.console().wait_for_line(BACKUP_LIVE, STEP_GUARD);
    more(&load, &pair, "the new backup live");

    let count = load.count();
    let (report, client) = load.stop();
    drop(client);
    assert!(
        report.error.is_none(),
        "the connection broke: {count} replies; error {:?}\n{}",
        report.error.as_ref().map(|(_, e)| e),
        pair.consoles()
    );
    report
        .check_sequence(1)
        .unwrap_or_else(|e| panic!("{e}\n{}", pair.consoles()));
    assert!(
        pair.backup.child().try_wait().is_none(),
        "the new backup ended\n{}",
        pair.consoles()
    );
    // The second failover claimed the epoch after the first's in the same
    // session: a side of the first pairing could not win it back.
    let record = std::fs::read_to_string(dir.path().join("arbiter")).expect("the arbiter's record");
    assert!(
        record.lines().any(|l| l == "epoch 2"),
        "the arbiter's record after two failovers:\n{record}"
    );
    eprintln!(
        "rejoin after the {first:?} died: {count} replies; snapshot pause: {pause}; \
         new backup live at icount {live}; largest gap between replies {:?}",
        report.max_gap().map(|(g, _)| g)
    );
}

/// The address etcd listens on: the LAN switch's own, reachable from both hosts.
const ETCD_IP: &str = "10.78.0.200";
const ETCD_CLIENT_PORT: u16 = 2379;

/// etcd running inside the LAN namespace of an [`FtNetwork`], killed on drop.
struct LanEtcd {
    child: ChildGuard,
    log: PathBuf,
}

impl LanEtcd {
    /// Gives the LAN's bridge [`ETCD_IP`] and starts etcd there with its data in `dir`;
    /// waits until it reports healthy (asked from host A, as ftvm will).
    fn start(net: &FtNetwork, dir: &Path) -> LanEtcd {
        let etcd = std::env::var_os("FTVM_ETCD").map_or_else(
            || PathBuf::from(ftvm_arbiter::testing::DEFAULT_ETCD),
            PathBuf::from,
        );
        assert!(
            etcd.exists(),
            "etcd not found at {}: install the Debian package etcd-server",
            etcd.display()
        );
        net.ns(Ns::Lan)
            .ip(&["addr", "add", &format!("{ETCD_IP}/24"), "dev", "br0"]);
        let log = dir.join("etcd.log");
        let out = std::fs::File::create(&log).expect("create etcd's log");
        let err = out.try_clone().expect("clone etcd's log");
        let client = format!("http://{ETCD_IP}:{ETCD_CLIENT_PORT}");
        let peer = format!("http://{ETCD_IP}:2380");
        let child = Command::new(require_tool("ip", "iproute2"))
            .args(["netns", "exec", net.name(Ns::Lan)])
            .arg(&etcd)
            .arg("--name=ftvm-pair-test")
            .arg(format!("--data-dir={}", dir.join("etcd-data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=ftvm-pair-test={peer}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start etcd");
        let mut server = LanEtcd {
            child: ChildGuard::new(child, "etcd"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                server.child.try_wait().is_none(),
                "etcd exited; its log:\n{}",
                server.log()
            );
            let healthy = net.run_in(Ns::HostA, || {
                etcd_get("/health").is_some_and(|r| r.contains("\"health\":\"true\""))
            });
            if healthy {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy; its log:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spec(&self, key: &str) -> String {
        format!("etcd=http://{ETCD_IP}:{ETCD_CLIENT_PORT},key={key}")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One HTTP/1.0 GET of `path` to etcd from the calling thread's namespace: the whole
/// response, or `None` if it cannot be had.
fn etcd_get(path: &str) -> Option<String> {
    let addr: SocketAddr = format!("{ETCD_IP}:{ETCD_CLIENT_PORT}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ETCD_IP}\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn test_etcd_arbiter_failover() {
    require_root();
    let dir = TempDir::new("ftpair-e");
    let net = FtNetwork::new("ftp3");
    let etcd = LanEtcd::start(&net, dir.path());
    let vm = counter_vm(dir.path());
    let mut pair = Pair::start(&net, &etcd.spec("/ftvm/test"), &vm);

    let failover = kill_during_load(&net, &mut pair, Victim::Primary);
    failover.print(
        "primary killed (etcd arbiter)",
        find_line(&pair.backup.console().text(), BACKUP_LIVE),
    );

    assert!(
        find_line(&pair.backup.console().text(), BACKUP_LIVE).is_some(),
        "the backup did not say it went live\n{}\n--- etcd:\n{}",
        pair.consoles(),
        etcd.log()
    );
    assert!(
        pair.backup.child().try_wait().is_none(),
        "the new primary ended\n{}",
        pair.consoles()
    );
}

/// How a side of a split pair ended up.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Still running, and said it runs alone.
    Live,
    /// Exited non-zero saying it halts.
    Halted,
    /// Anything else (still undecided, or another exit).
    Other(Option<ExitStatus>),
}

fn outcome(vm: &mut Vm, live_line: &str) -> Outcome {
    // In this order: an exited side's text is complete once its outputs are closed.
    let status = vm.child().try_wait();
    let closed = vm.console().closed();
    let text = vm.console().text();
    match status {
        // Exited, but what it printed last may not have been read yet: undecided.
        Some(_) if !closed => Outcome::Other(None),
        None if text.contains(live_line) => Outcome::Live,
        Some(status) if !status.success() && text.contains(HALTS) => Outcome::Halted,
        other => Outcome::Other(other),
    }
}

#[test]
fn test_split_brain_exactly_one_side_goes_live() {
    require_root();
    let images = common::guest_images();
    let mut winners = Vec::new();
    // The link is cut at different points of the run: during the firmware and
    // kernel's early boot, and later.
    for (round, run_for) in [(1, 1500u64), (2, 4000), (3, 8000)] {
        let tag = format!("ftp4r{round}");
        let dir = TempDir::new(&format!("ftpair-s{round}"));
        let net = FtNetwork::new(&tag);
        let vm = guest_args(
            Some(&images.initrd),
            "console=ttyS0 quiet",
            Some("i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"),
        );
        let mut pair = Pair::start(&net, &file_arbiter(dir.path()), &vm);
        pair.backup
            .console()
            .wait_for_line("ftvm backup: connected to the primary", STEP_GUARD);
        std::thread::sleep(Duration::from_millis(run_for));
        for (vm, what) in [(&mut pair.primary, "primary"), (&mut pair.backup, "backup")] {
            assert!(
                vm.child().try_wait().is_none(),
                "round {round}: the {what} ended before the cut"
            );
        }
        net.cut_link('b');
        let cut = Instant::now();

        // Wait until each side has decided (a hang guard), then a little longer to
        // see that the winner stays up and nothing changes.
        let deadline = cut + Duration::from_secs(60);
        let (p, b) = loop {
            let p = outcome(&mut pair.primary, PRIMARY_ALONE);
            let b = outcome(&mut pair.backup, BACKUP_LIVE);
            let decided = |o: &Outcome| !matches!(o, Outcome::Other(None));
            if (decided(&p) && decided(&b)) || Instant::now() > deadline {
                break (p, b);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let decided_after = cut.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        let later = (
            outcome(&mut pair.primary, PRIMARY_ALONE),
            outcome(&mut pair.backup, BACKUP_LIVE),
        );
        assert_eq!(
            later,
            (p, b),
            "round {round}: an outcome changed\n{}",
            pair.consoles()
        );
        let (p, b) = later;
        let winner = match (&p, &b) {
            (Outcome::Live, Outcome::Halted) => "primary",
            (Outcome::Halted, Outcome::Live) => "backup",
            _ => panic!(
                "round {round}: primary {p:?}, backup {b:?}: not exactly one side live and \
                 the other halted\n{}",
                pair.consoles()
            ),
        };
        eprintln!(
            "split brain round {round} (cut after {run_for} ms): the {winner} went on, the \
             other halted; both decided {decided_after:?} after the cut"
        );
        winners.push(winner);
        drop(pair);
        drop(net);
    }
    eprintln!("split brain winners: {winners:?}");
}

/// `ftvm status SOCKET`.
fn status(socket: &Path) -> String {
    run(
        env!("CARGO_BIN_EXE_ftvm"),
        &["status", socket.to_str().expect("UTF-8 path")],
    )
}

/// Sends `signal` to each process, one right after the other.
fn signal_all(pids: &[u32], signal: libc::c_int) {
    for &pid in pids {
        let pid = libc::pid_t::try_from(pid).expect("a PID");
        // SAFETY: kill(2) on the PID of our own unreaped child.
        unsafe { libc::kill(pid, signal) };
    }
}

/// A paused host (both sides stopped together, longer than the failure timeout,
/// then continued) is no failure: neither side heard the other, but neither could
/// listen either, so neither suspects the other and the pair stays paired.
#[test]
fn test_pair_paused_together_stays_paired() {
    require_root();
    let images = common::guest_images();
    let dir = TempDir::new("ftpair-z");
    let net = FtNetwork::new("ftp6");
    let mut vm = guest_args(
        Some(&images.initrd),
        "console=ttyS0 quiet",
        Some("i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"),
    );
    let (psock, bsock) = (dir.path().join("p.sock"), dir.path().join("b.sock"));
    let mut pair = {
        let mut p = vm.clone();
        p.extend(["--control".into(), psock.clone().into()]);
        vm.extend(["--control".into(), bsock.clone().into()]);
        let mut pa = side_args("primary", &file_arbiter(dir.path()));
        pa.extend(p);
        let primary = Vm::spawn(Some(net.name(Ns::HostA)), &pa);
        let mut ba = side_args("backup", &file_arbiter(dir.path()));
        ba.extend(vm);
        let backup = Vm::spawn(Some(net.name(Ns::HostB)), &ba);
        Pair { primary, backup }
    };
    pair.backup
        .console()
        .wait_for_line("ftvm backup: connected to the primary", STEP_GUARD);
    std::thread::sleep(Duration::from_secs(2));
    let pids = [pair.primary.child().id(), pair.backup.child().id()];
    let pause = Duration::from_millis(2 * TIMEOUT_MS.parse::<u64>().expect("a number"));
    for _ in 0..3 {
        signal_all(&pids, libc::SIGSTOP);
        std::thread::sleep(pause);
        signal_all(&pids, libc::SIGCONT);
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(2));

    let ended = [
        pair.primary.child().try_wait(),
        pair.backup.child().try_wait(),
    ];
    let text = pair.consoles();
    assert_eq!(ended, [None, None], "a side ended after the pauses\n{text}");
    for said in [BACKUP_LIVE, PRIMARY_ALONE, HALTS, "suspected"] {
        assert!(!text.contains(said), "a side said `{said}`\n{text}");
    }
    let (ps, bs) = (status(&psock), status(&bsock));
    assert!(
        ps.contains("mode paired") && bs.contains("mode paired"),
        "primary:\n{ps}\nbackup:\n{bs}"
    );
    // Every numeric field of `ftvm status` is there and parses, on both sides.
    for (side, text) in [("primary", &ps), ("backup", &bs)] {
        for key in [
            "epoch",
            "icount",
            "lag_ms",
            "log_entries",
            "log_bytes",
            "log_bytes_per_s",
            "outputs_held",
            "outputs_out",
            "output_wait_us_total",
            "output_wait_us_max",
            "vcpu_waited_ms",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')));
            assert!(
                value.is_some_and(|v| v.parse::<f64>().is_ok()),
                "{side} status lacks a numeric `{key}`:\n{text}"
            );
        }
    }
    // The guest's console lines went out through the primary's output rule.
    let out = ps
        .lines()
        .find_map(|l| l.strip_prefix("outputs_out "))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(out.is_some_and(|n| n > 0), "no output counted:\n{ps}");
    eprintln!("after 3 pauses of {pause:?}: primary status:\n{ps}");
}

/// The flags of a side whose default guest runs `cmd` with a fresh sparse
/// image of `size` bytes at `image` as its disk (given to both sides: the
/// shared disk), and `ft_flags`.
fn shared_disk_vm(image: &Path, size: u64, cmd: &str, ft_flags: &[&str]) -> Vec<OsString> {
    common::sparse_image(image, size);
    let images = common::guest_images();
    let mut vm = guest_args(Some(&images.initrd), "console=ttyS0 quiet", Some(cmd));
    vm.extend([
        OsString::from("--disk"),
        format!("path={}", image.display()).into(),
    ]);
    vm.extend(ft_flags.iter().map(OsString::from));
    vm
}

/// The content the guest writes to file `n` (see [`disk_guest_cmd`]).
fn file_content(n: u64) -> String {
    let mut s = format!("ftvm file {n}\n");
    for k in 1..=300 {
        s.push_str(&format!("{}\n", k * n));
    }
    s
}

/// Files the disk guest writes.
const DISK_FILES: u64 = 60;

/// Makes an ext2 file system on the shared disk, then writes files `f1`, `f2`, … each
/// followed by `sync` and a `wrote N` line, unmounts and prints `synced`.
fn disk_guest_cmd() -> String {
    disk_guest_cmd_of(DISK_FILES)
}

/// [`disk_guest_cmd`] with `files` files.
fn disk_guest_cmd_of(files: u64) -> String {
    format!(
        "load-ext4 && mkdir -p /mnt && mke2fs -F /dev/vda >/dev/null && \
         mount -t ext2 /dev/vda /mnt && echo mkfs done && i=1 && \
         while [ $i -le {files} ]; do \
           {{ echo ftvm file $i; k=1; while [ $k -le 300 ]; do echo $((k*i)); k=$((k+1)); done; }} >/mnt/f$i && \
           sync && echo wrote $i; i=$((i+1)); \
         done; umount /mnt && echo synced"
    )
}

/// The `N`s of the `wrote N` lines of a console.
fn wrote(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("wrote "))
        .filter_map(|n| n.trim().parse().ok())
        .collect()
}

#[test]
fn test_shared_disk_writes_survive_failover() {
    shared_disk_writes_survive_failover("ftpair-d", "ftp5", &[]);
}

/// The same with the backup reading the shared disk itself (`--backup-reads`):
/// it replays the guest's reads from the image while the primary writes to it.
#[test]
fn test_shared_disk_writes_survive_failover_with_backup_reads() {
    shared_disk_writes_survive_failover("ftpair-dr", "ftp7", &["--backup-reads"]);
}

/// A guest writes [`DISK_FILES`] files to an ext2 file system on the shared disk,
/// the primary is killed after the 8th; the backup goes live and the guest
/// finishes. Every file the guest reported written is on the image, which
/// `e2fsck` finds clean. `ft_flags` go to both sides; `dir_tag` and `net_name`
/// keep each test's files and namespaces apart (the tests run at once).
fn shared_disk_writes_survive_failover(dir_tag: &str, net_name: &str, ft_flags: &[&str]) {
    require_root();
    let dir = TempDir::new(dir_tag);
    let net = FtNetwork::new(net_name);
    let image = dir.path().join("shared.img");
    let vm = shared_disk_vm(&image, 64 << 20, &disk_guest_cmd(), ft_flags);
    let mut pair = Pair::start(&net, &file_arbiter(dir.path()), &vm);

    pair.primary.console().wait_for_line("wrote 8", STEP_GUARD);
    let killed_at = Instant::now();
    pair.primary.child().stop();

    pair.backup.console().wait_for_line("synced", STEP_GUARD);
    let Pair { primary, backup } = pair;
    let (status, backup_text) = backup.wait(STEP_GUARD);
    let primary_text = primary.kill();
    let elapsed = killed_at.elapsed();
    let all = took_over_and_finished(status, &primary_text, &backup_text, DISK_FILES);
    let (before, after) = (wrote(&primary_text), wrote(&backup_text));
    eprintln!(
        "shared disk: [live at {}] the primary printed wrote {:?}..{:?}, the new primary {:?}..{:?}; \
         guest done {elapsed:?} after the kill",
        find_line(&backup_text, BACKUP_LIVE).unwrap_or_default(),
        before.first(),
        before.last(),
        after.first(),
        after.last()
    );

    check_image(&image, &all);
}

/// The backup went live and ended the disk guest's run with status 0, and the
/// `wrote N` lines of both sides together are `1..=files`; returns them.
fn took_over_and_finished(
    status: Option<ExitStatus>,
    primary_text: &str,
    backup_text: &str,
    files: u64,
) -> Vec<u64> {
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "the exit of the side that went live\n--- primary:\n{primary_text}\n--- backup:\n{backup_text}"
    );
    assert!(
        backup_text.contains(BACKUP_LIVE),
        "the backup did not go live\n{backup_text}"
    );
    let mut all: Vec<u64> = wrote(primary_text)
        .into_iter()
        .chain(wrote(backup_text))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(
        all,
        (1..=files).collect::<Vec<_>>(),
        "the `wrote N` lines of both sides together\n--- primary:\n{primary_text}\n\
         --- backup:\n{backup_text}"
    );
    all
}

/// `e2fsck -fn` finds the file system on `image` clean, and files `f{n}` for
/// every `n` of `files` hold what the guest wrote.
fn check_image(image: &Path, files: &[u64]) {
    let e2fsck = require_tool("e2fsck", "e2fsprogs");
    let debugfs = require_tool("debugfs", "e2fsprogs");
    let img = image.to_str().expect("UTF-8 path");
    let fsck = Command::new(&e2fsck)
        .args(["-fn", img])
        .stdin(Stdio::null())
        .output()
        .expect("run e2fsck");
    assert!(
        fsck.status.success(),
        "e2fsck -fn found problems ({}):\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    for &n in files {
        let content = run(&debugfs, &["-R", &format!("cat /f{n}"), img]);
        assert!(
            content == file_content(n),
            "file f{n} on the image differs from what the guest wrote: {:?}…",
            &content[..content.len().min(80)]
        );
    }
}

/// Files the disk guest writes in the re-protection test: enough that it is
/// still writing when the side it joined is killed.
const REJOIN_FILES: u64 = 150;

/// Re-protection with a shared disk: the backup dies while the guest writes
/// files, a new backup joins the primary, the primary dies, and the new
/// backup goes live and lets the guest finish. Every file the guest reported
/// written is on the image, which `e2fsck` finds clean.
#[test]
fn test_shared_disk_writes_survive_a_failover_to_a_backup_that_joined() {
    let dir = TempDir::new("ftpair-jd");
    let image = dir.path().join("shared.img");
    disk_writes_survive_a_failover_to_a_backup_that_joined(&dir, "ftp11", [&image; 3], &[]);
}

/// The same with disks of their own (`--non-shared-disk`): each side has its
/// image, the new backup an empty one, into which the primary copies its
/// disk when the backup joins (the guest stopped meanwhile); the new
/// backup's image ends with every file and clean.
#[test]
fn test_own_disk_writes_survive_a_failover_to_a_backup_that_joined() {
    let dir = TempDir::new("ftpair-jo");
    let images = ["a.img", "b.img", "c.img"].map(|n| dir.path().join(n));
    disk_writes_survive_a_failover_to_a_backup_that_joined(
        &dir,
        "ftp12",
        [&images[0], &images[1], &images[2]],
        &["--non-shared-disk"],
    );
}

/// The disk guest runs on a pair whose primary, backup and later new backup
/// have the disk images `images` (the same one thrice: a shared disk); the
/// backup dies after the 3rd file, a new backup joins, the primary dies two
/// files later, the new backup goes live and the guest finishes. Every file
/// the guest reported written is on the new backup's image, which `e2fsck`
/// finds clean.
fn disk_writes_survive_a_failover_to_a_backup_that_joined(
    dir: &TempDir,
    net_name: &str,
    images: [&PathBuf; 3],
    ft_flags: &[&str],
) {
    require_root();
    let net = FtNetwork::new(net_name);
    let cmd = disk_guest_cmd_of(REJOIN_FILES);
    let vms = images.map(|image| shared_disk_vm(image, 64 << 20, &cmd, ft_flags));
    let arbiter = file_arbiter(dir.path());
    let mut pair = Pair::start_each(&net, &arbiter, &vms[0], &vms[1]);

    pair.primary.console().wait_for_line("wrote 3", STEP_GUARD);
    pair.backup.child().stop();
    pair.primary
        .console()
        .wait_for_line(PRIMARY_ALONE, STEP_GUARD);
    let mut b = side_args("backup", &arbiter);
    b.extend_from_slice(&vms[2]);
    drop(std::mem::replace(
        &mut pair.backup,
        Vm::spawn(Some(net.name(Ns::HostB)), &b),
    ));
    pair.backup.console().wait_for_line(JOINED, STEP_GUARD);
    pair.primary.console().wait_for_line(REJOINED, STEP_GUARD);
    // Two more files written paired, then the primary dies.
    let joined_at = wrote(&pair.primary.console().text())
        .last()
        .copied()
        .unwrap_or(0);
    pair.primary
        .console()
        .wait_for_line(&format!("wrote {}", joined_at + 2), STEP_GUARD);
    pair.primary.child().stop();
    let Pair { primary, backup } = pair;
    let primary_text = primary.kill();
    assert!(
        find_line(&primary_text, "synced").is_none(),
        "the guest finished before the primary was killed: give it more than {REJOIN_FILES} files\n{primary_text}"
    );

    backup.console().wait_for_line("synced", STEP_GUARD);
    let (status, backup_text) = backup.wait(STEP_GUARD);
    let all = took_over_and_finished(status, &primary_text, &backup_text, REJOIN_FILES);
    eprintln!(
        "disk {ft_flags:?}, rejoined: the primary wrote up to {:?} (joined at {joined_at}), the new backup {:?}..{:?}; {}",
        wrote(&primary_text).last(),
        wrote(&backup_text).first(),
        wrote(&backup_text).last(),
        primary_text
            .lines()
            .filter(|l| l.contains("ftvm primary: copied"))
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("; ")
    );
    check_image(images[2], &all);
}

/// Rounds of read-then-overwrite in [`rewrite_guest_cmd`].
const REWRITE_ROUNDS: u32 = 40;

/// Reads the first 64 KiB of the disk and overwrites them at once with content
/// of its own, [`REWRITE_ROUNDS`] times, bypassing the guest's page cache, then
/// prints the checksum of what is there and `rewrites done`.
fn rewrite_guest_cmd() -> String {
    format!(
        "i=1; while [ $i -le {REWRITE_ROUNDS} ]; do \
           dd if=/dev/vda of=/tmp/b bs=4k count=16 iflag=direct 2>/dev/null && \
           {{ echo round $i; head -c 65000 /tmp/b; }} | head -c 65536 >/tmp/c && \
           dd if=/tmp/c of=/dev/vda bs=64k count=1 oflag=direct conv=sync 2>/dev/null || echo failed $i; \
           i=$((i+1)); \
         done; dd if=/dev/vda bs=64k count=1 iflag=direct 2>/dev/null | md5sum; echo rewrites done"
    )
}

/// With `--backup-reads` the backup reads the shared disk itself as it replays,
/// while the primary writes to it: a write to sectors the guest has just read
/// must not reach the disk before the backup has executed that read, or the
/// backup reads the new data and diverges (it checks every read against the
/// primary's hash). A guest that overwrites, round after round, exactly what
/// it has just read: the backup follows the whole run and ends with it.
#[test]
fn test_backup_reads_follow_a_guest_that_overwrites_what_it_read() {
    require_root();
    let dir = TempDir::new("ftpair-r");
    let net = FtNetwork::new("ftp8");
    let image = dir.path().join("shared.img");
    let vm = shared_disk_vm(&image, 16 << 20, &rewrite_guest_cmd(), &["--backup-reads"]);
    let Pair { primary, backup } = Pair::start(&net, &file_arbiter(dir.path()), &vm);

    let (primary_status, primary_text) = primary.wait(STEP_GUARD);
    let (backup_status, backup_text) = backup.wait(STEP_GUARD);

    let text = format!("--- primary:\n{primary_text}\n--- backup:\n{backup_text}");
    assert_eq!(
        (
            primary_status.and_then(|s| s.code()),
            backup_status.and_then(|s| s.code())
        ),
        (Some(0), Some(0)),
        "both sides' exits\n{text}"
    );
    assert!(
        primary_text.contains("rewrites done") && !primary_text.contains("failed"),
        "the guest's rounds\n{text}"
    );
    for said in [BACKUP_LIVE, PRIMARY_ALONE, "diverged"] {
        assert!(!text.contains(said), "a side said `{said}`\n{text}");
    }
}
