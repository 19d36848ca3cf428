//! `ftvm demo`: a failover on this machine, no root needed.
//!
//! Starts `ftvm primary` and `ftvm backup` on loopback with the default guest
//! running a workload that prints a numbered line five times a second and a
//! file arbiter in a temporary directory; shows the primary's console; kills
//! the primary with SIGKILL after a few seconds of workload; shows the backup
//! going live and the workload going on; then prints the failover time
//! (SIGKILL to the first console output of the new primary) and whether the
//! numbered lines had a gap. With `--rejoin`, a new backup then joins the
//! new primary (its RAM copied while the guest runs, then a snapshot and the
//! pages written since, then the log) and the new primary is killed in turn.
//!
//! With `--net` (root), the pair runs on a network of namespaces and a TCP
//! client keeps one connection to a counter service in the guest across the
//! failover (see [`crate::demo_net`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// `ftvm demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Seconds of workload before the primary is killed.
    #[arg(long, default_value_t = 5)]
    kill_after: u64,
    /// Seconds the new primary is watched after the failover.
    #[arg(long, default_value_t = 5)]
    watch: u64,
    /// Keep the demo's directory (consoles, arbiter file) instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Run the pair on a network of namespaces (hosts A and B, a client) with
    /// the guest on a TAP device, and show a TCP client keeping one connection
    /// to the guest across the failover. Needs root.
    #[arg(long)]
    net: bool,
    /// Re-protection too: after the failover, start a new backup (where the
    /// primary was) that joins the new primary with a copy of the running
    /// guest, then kill the new primary as well and show the third process
    /// carrying the workload on.
    #[arg(long)]
    rejoin: bool,
}

/// The guest's workload: numbered lines, five a second.
const WORKLOAD: &str =
    "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); echo \"tick $i\"; usleep 200000; done";

struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn kill(&mut self) {
        // Our own child, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

fn spawn(
    name: &'static str,
    args: &[String],
    log: &Path,
    netns: Option<(&crate::demo_net::DemoNet, &str)>,
) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe()?;
    let err = std::fs::File::create(log)?;
    let mut cmd = match netns {
        Some((net, ns)) => net.command_in(ns, &exe),
        None => Command::new(exe),
    };
    // SAFETY: prctl in the child before exec, async-signal-safe; the pair
    // dies with the demo, whatever ends it.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start the {name}: {e}"))?;
    Ok(Proc { child, name })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn read(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.trim().parse().ok())
        .collect()
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.net {
        crate::demo_net::require_root()?;
        crate::demo_net::tool("ip")?;
        crate::demo_net::tool("bridge")?;
    }
    ftvm_host::images::locate(&ftvm_host::images::default_cache_dir()).map_err(|e| {
        anyhow::anyhow!("{e}\nftvm demo boots the default guest: run `ftvm images fetch` first")
    })?;
    let dir = std::env::temp_dir().join(format!("ftvm-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = demo(&args, &dir);
    if args.keep {
        eprintln!("demo files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn demo(args: &DemoArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    // Declared first, so dropped last: after the pair and the client.
    let net = if args.net {
        crate::demo_net::catch_signals();
        println!(
            "ftvm demo: building the network (namespaces for host A, host B, a LAN and a client)"
        );
        Some(crate::demo_net::DemoNet::new()?)
    } else {
        None
    };
    let addr = match net {
        Some(_) => crate::demo_net::CHANNEL.to_string(),
        None => format!("127.0.0.1:{}", free_port()?),
    };
    let guest_cmd = match net {
        Some(_) => crate::demo_net::guest_cmd(WORKLOAD),
        None => WORKLOAD.to_string(),
    };
    // Where the backup, once live, takes a new backup (--rejoin).
    let rejoin_addr = match net {
        Some(_) => "10.79.0.2:7700".to_string(),
        None => format!("127.0.0.1:{}", free_port()?),
    };
    let arbiter = format!("file={}", dir.join("arbiter").display());
    let p_console: PathBuf = dir.join("primary.console");
    let b_console: PathBuf = dir.join("backup.console");
    let n_console: PathBuf = dir.join("new-backup.console");
    let common = |role: &str, console: &Path, control: &str, peer: &str| -> Vec<String> {
        let mut a = vec![
            role.to_string(),
            "--arbiter".into(),
            arbiter.clone(),
            "--serial".into(),
            format!("file={}", console.display()),
            "--control".into(),
            dir.join(control).display().to_string(),
            "--guest-cmd".into(),
            guest_cmd.clone(),
        ];
        if net.is_some() {
            a.extend(["--net".into(), crate::demo_net::GUEST_NET_ARG.into()]);
        }
        match role {
            "primary" => a.extend(["--listen".into(), addr.clone()]),
            _ => a.extend(["--peer".into(), peer.to_string()]),
        }
        a
    };
    match &net {
        Some(n) => println!(
            "ftvm demo: a fault-tolerant pair on host A (netns {}) and host B (netns {}), logging channel {addr} (files in {})",
            n.host_a,
            n.host_b,
            dir.display()
        ),
        None => println!(
            "ftvm demo: a fault-tolerant pair on this machine (files in {})",
            dir.display()
        ),
    }
    let mut primary = spawn(
        "primary",
        &common("primary", &p_console, "primary.sock", ""),
        &dir.join("primary.log"),
        net.as_ref().map(|n| (n, n.host_a.as_str())),
    )?;
    std::thread::sleep(Duration::from_millis(200));
    let mut backup_args = common("backup", &b_console, "backup.sock", &addr);
    if args.rejoin {
        backup_args.extend(["--listen".into(), rejoin_addr.clone()]);
    }
    let mut backup = spawn(
        "backup",
        &backup_args,
        &dir.join("backup.log"),
        net.as_ref().map(|n| (n, n.host_b.as_str())),
    )?;
    println!("ftvm demo: primary (pid {}) and backup (pid {}) started; booting Debian on the primary, replayed by the backup...", primary.child.id(), backup.child.id());

    // The primary's console, until enough workload has run.
    let mut shown = 0usize;
    let mut first_tick: Option<Instant> = None;
    let mut client: Option<crate::demo_net::Client> = None;
    let boot_guard = Instant::now() + Duration::from_secs(600);
    loop {
        if crate::demo_net::interrupted() {
            anyhow::bail!("interrupted");
        }
        for p in [&mut primary, &mut backup] {
            if let Ok(Some(status)) = p.child.try_wait() {
                anyhow::bail!(
                    "the {} exited early ({status}):\n{}",
                    p.name,
                    read(&dir.join(format!("{}.log", p.name)))
                );
            }
        }
        let text = read(&p_console);
        if text.len() > shown {
            print_prefixed("primary", &text[shown..]);
            shown = text.len();
        }
        if let Some(n) = &net {
            if client.is_none() && text.contains(crate::demo_net::READY) {
                println!(
                    "ftvm demo: a client in netns {} connects to {}:{} and sends a numbered line every 50 ms on one connection; the guest answers the n-th line with n",
                    n.client,
                    crate::demo_net::GUEST_IP,
                    crate::demo_net::SERVICE_PORT
                );
                client = Some(crate::demo_net::Client::start(&n.client));
            }
        }
        // With --net, the workload counts once the client has its first reply.
        let client_ready = match (&net, &client) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(c)) => match c.progress() {
                Ok(replies) => replies > 0,
                Err(e) => anyhow::bail!("the client failed before the failover: {e}"),
            },
        };
        if first_tick.is_none() && client_ready && !ticks(&text).is_empty() {
            first_tick = Some(Instant::now());
        }
        if first_tick.is_some_and(|t| t.elapsed() >= Duration::from_secs(args.kill_after)) {
            break;
        }
        if Instant::now() > boot_guard {
            anyhow::bail!("the guest did not start its workload within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = kill_after_status(
        &mut primary,
        &dir.join("primary.sock"),
        "primary status before the failure",
        "the primary",
    );
    let primary_text = read(&p_console);
    if primary_text.len() > shown {
        print_prefixed("primary", &primary_text[shown..]);
    }

    let (first_output, shown_b) = watch_takeover(
        &mut backup,
        &dir.join("backup.log"),
        &b_console,
        "backup ",
        killed,
        args.watch,
    )?;
    if let Ok(s) = crate::ft::control::query(&dir.join("backup.sock")) {
        println!("ftvm demo: new primary's status:");
        print_prefixed("status", &s);
    }
    let second = match args.rejoin {
        true => Some(rejoin(
            args,
            dir,
            &mut backup,
            &b_console,
            &n_console,
            common("backup", &n_console, "new-backup.sock", &rejoin_addr),
            net.as_ref().map(|n| (n, n.host_a.as_str())),
            shown_b,
        )?),
        false => None,
    };
    let client_result = client.map(|c| c.finish(Some(killed)));
    backup.kill();
    let mut second = second;
    if let Some(second) = &mut second {
        second.newer.kill();
    }

    let before = ticks(&primary_text);
    let mut after = ticks(&read(&b_console));
    if args.rejoin {
        after.extend(ticks(&read(&n_console)));
    }
    let last_before = before.last().copied().unwrap_or(0);
    let first_after = after.first().copied();
    let mut all: Vec<u64> = before.iter().chain(after.iter()).copied().collect();
    all.sort_unstable();
    all.dedup();
    let gap = all
        .windows(2)
        .find(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]));
    let duplicates = before.len() + after.len() - all.len();
    println!();
    match first_output {
        Some(t) => println!(
            "failover time: {} ms from SIGKILL of the primary to the first console output of the new primary",
            t.as_millis()
        ),
        None => println!("failover: the backup printed nothing after the primary was killed"),
    }
    let mut second_ok = true;
    if let Some(second) = &second {
        println!("{}", second.summary);
        second_ok = second.ok;
    }
    println!(
        "console: the primary's last line was tick {last_before}, the new primary's first was tick {}; {}; {duplicates} line(s) printed twice",
        first_after.map_or("none".into(), |t| t.to_string()),
        match gap {
            None if first_after.is_some() => "no gap".to_string(),
            None => "no output after the failover".to_string(),
            Some((a, b)) => format!("GAP between tick {a} and tick {b}"),
        }
    );
    let mut ok = first_output.is_some() && gap.is_none() && first_after.is_some() && second_ok;
    if net.is_some() {
        let (client_ok, summary) =
            client_result.unwrap_or((false, "client: FAILED: it never started".into()));
        println!("{summary}");
        ok &= client_ok;
    }
    let _ = std::io::stdout().flush();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// How the second failover of `--rejoin` went.
struct Second {
    ok: bool,
    summary: String,
    /// The backup that joined, running the guest now (killed at the end).
    newer: Proc,
}

/// `--rejoin`: starts a new backup with `new_args` (in `netns` if given)
/// that joins `live` (the backup gone live, whose console `live_console` has
/// been shown up to `shown`), lets the pair run, kills `live`, and watches
/// the new backup go live.
#[allow(clippy::too_many_arguments)]
fn rejoin(
    args: &DemoArgs,
    dir: &Path,
    live: &mut Proc,
    live_console: &Path,
    new_console: &Path,
    new_args: Vec<String>,
    netns: Option<(&crate::demo_net::DemoNet, &str)>,
    mut shown: usize,
) -> anyhow::Result<Second> {
    let mut newer = spawn("new backup", &new_args, &dir.join("new-backup.log"), netns)?;
    println!(
        "ftvm demo: a new backup (pid {}) joins the new primary: it gets the guest's RAM while the guest runs, then a snapshot and the pages written since, then the log",
        newer.child.id()
    );
    let live_log = dir.join("backup.log");
    let guard = Instant::now() + Duration::from_secs(120);
    let show_live = |shown: &mut usize| {
        let text = read(live_console);
        if text.len() > *shown {
            print_prefixed("backup ", &text[*shown..]);
            *shown = text.len();
        }
    };
    loop {
        if crate::demo_net::interrupted() {
            anyhow::bail!("interrupted");
        }
        show_live(&mut shown);
        if let Ok(Some(status)) = newer.child.try_wait() {
            anyhow::bail!(
                "the new backup exited ({status}):\n{}",
                read(&dir.join("new-backup.log"))
            );
        }
        if read(&live_log).contains("paired again") {
            break;
        }
        if Instant::now() > guard {
            anyhow::bail!("the new backup did not join within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for line in read(&live_log)
        .lines()
        .filter(|l| l.contains("snapshot") || l.contains("RAM"))
    {
        println!("ftvm demo: {}", line.trim().trim_start_matches("ftvm "));
    }
    let paired_until = Instant::now() + Duration::from_secs(args.watch);
    while Instant::now() < paired_until {
        show_live(&mut shown);
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = kill_after_status(
        live,
        &dir.join("backup.sock"),
        "status of the side running the guest, paired again",
        "the new primary",
    );
    show_live(&mut shown);

    let (first_output, _) = watch_takeover(
        &mut newer,
        &dir.join("new-backup.log"),
        new_console,
        "new    ",
        killed,
        args.watch,
    )?;
    Ok(match first_output {
        Some(t) => Second {
            ok: true,
            summary: format!(
                "second failover time: {} ms from SIGKILL of the new primary to the first console output of the backup that joined it",
                t.as_millis()
            ),
            newer,
        },
        None => Second {
            ok: false,
            summary: "second failover: the backup that joined printed nothing after the new primary was killed".into(),
            newer,
        },
    })
}

/// After the side running the guest was killed at `killed`: shows `console`
/// (each line tagged `tag`) while `proc`, which takes over,
/// runs, until `watch` seconds after its first output (at most 30 s more
/// without any). Returns the time from the kill to that first output, and
/// how much of the console was shown.
fn watch_takeover(
    proc: &mut Proc,
    log: &Path,
    console: &Path,
    tag: &str,
    killed: Instant,
    watch: u64,
) -> anyhow::Result<(Option<Duration>, usize)> {
    let mut shown = 0;
    let mut first_output: Option<Duration> = None;
    let watch_end = Instant::now() + Duration::from_secs(watch) + Duration::from_secs(30);
    loop {
        if crate::demo_net::interrupted() {
            anyhow::bail!("interrupted");
        }
        if let Ok(Some(status)) = proc.child.try_wait() {
            anyhow::bail!("the {} exited ({status}):\n{}", proc.name, read(log));
        }
        let text = read(console);
        if text.len() > shown {
            if first_output.is_none() {
                first_output = Some(killed.elapsed());
            }
            print_prefixed(tag, &text[shown..]);
            shown = text.len();
        }
        if first_output.is_some_and(|f| killed.elapsed() >= f + Duration::from_secs(watch)) {
            break;
        }
        if Instant::now() > watch_end {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok((first_output, shown))
}

/// Shows the status from the control socket `sock` under `heading`, then
/// kills `side` (called `who`); when it was killed.
fn kill_after_status(side: &mut Proc, sock: &Path, heading: &str, who: &str) -> Instant {
    if let Ok(s) = crate::ft::control::query(sock) {
        println!("ftvm demo: {heading}:");
        print_prefixed("status", &s);
    }
    println!("ftvm demo: SIGKILL to {who} (pid {})", side.child.id());
    let killed = Instant::now();
    side.kill();
    killed
}

fn print_prefixed(who: &str, text: &str) {
    let mut out = std::io::stdout().lock();
    for line in text.split_inclusive('\n') {
        let line = line.trim_end_matches(['\r', '\n']);
        let _ = writeln!(out, "[{who}] {line}");
    }
    let _ = out.flush();
}
