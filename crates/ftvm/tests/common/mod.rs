//! Shared helpers of the end-to-end tests that boot the Debian guest with virtio
//! devices: host tools, temporary directories, the VM process and its console,
//! network namespaces and child processes, each cleaned up by a guard on drop.
//!
//! Every name a test creates (directories, namespaces) includes the process id and
//! a per-test tag, so test binaries and the threads of one binary do not collide.

#![allow(dead_code)]

pub mod ft;

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// A bound so a broken emulator cannot hang the test run (not a timing assertion).
pub const HANG_GUARD: Duration = Duration::from_secs(900);

/// The guest images, or a panic that says how to fetch them.
pub fn guest_images() -> ftvm_host::images::GuestImages {
    ftvm_host::images::locate(&ftvm_host::images::default_cache_dir())
        .expect("guest images are fetched: run `ftvm images fetch` (scripts/setup does)")
}

/// The path of host tool `name`, or a panic naming the Debian package that has it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{name}` is missing on this host: install the Debian package `{package}` (scripts/setup does)");
}

/// Whether the tests run as root (namespaces, TAP devices and raw sockets need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests create namespaces and devices: run them as root"
    );
}

/// A unique name for this process and test: `PREFIX-PID-TAG`.
pub fn unique(prefix: &str, tag: &str) -> String {
    format!("{prefix}-{}-{tag}", std::process::id())
}

/// Runs a command to completion; panics with its output if it fails.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let program = program.as_ref();
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e}"));
    assert!(
        out.status.success(),
        "{program:?} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SHA-256 of a file, as lowercase hex (from coreutils' `sha256sum`).
pub fn sha256_file(path: &Path) -> String {
    let out = run("sha256sum", &[path.to_str().expect("UTF-8 path")]);
    out.split_whitespace()
        .next()
        .expect("sha256sum prints a hash")
        .to_string()
}

/// A directory under the system temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `ftvm-e2e-PID-TAG` (emptied first, should a previous run have left it).
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique("ftvm-e2e", tag));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temporary directory");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A sparse raw image of `bytes` bytes.
pub fn sparse_image(path: &Path, bytes: u64) {
    let file = std::fs::File::create(path).expect("create the image");
    file.set_len(bytes).expect("size the image");
}

/// A child process killed (by its own PID) and reaped on drop.
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Guards `child`, described as `what` in messages.
    pub fn new(child: Child, what: &str) -> ChildGuard {
        ChildGuard {
            child,
            what: what.to_string(),
        }
    }

    /// Its PID.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (and with what), without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.what))
    }

    /// Asks it to end with SIGTERM, waits up to `grace`, then kills it; reaps it.
    pub fn terminate(&mut self, grace: Duration) {
        if self.try_wait().is_none() {
            if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
                // SAFETY: kill(2) on the PID of our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let deadline = Instant::now() + grace;
            while self.try_wait().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.stop();
    }

    /// Kills and reaps it now.
    pub fn stop(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everything the VM printed (stdout and stderr), shared with reader threads.
#[derive(Default)]
struct ConsoleState {
    text: String,
    /// Readers that reached end of file (two: stdout and stderr).
    closed: usize,
}

/// The console of a running VM, which tests can wait on.
#[derive(Clone, Default)]
pub struct Console {
    inner: Arc<(Mutex<ConsoleState>, Condvar)>,
}

impl Console {
    fn attach(&self, mut source: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let console = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = source.read(&mut buf).unwrap_or(0);
                let (lock, cvar) = &*console.inner;
                let mut state = lock.lock().expect("console lock");
                if n == 0 {
                    state.closed += 1;
                    cvar.notify_all();
                    return;
                }
                state.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                cvar.notify_all();
            }
        })
    }

    /// Whether the VM closed both its outputs (everything it printed is in
    /// [`Console::text`]).
    pub fn closed(&self) -> bool {
        self.inner.0.lock().expect("console lock").closed >= 2
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.inner.0.lock().expect("console lock").text.clone()
    }

    /// Waits for a complete line that starts with `prefix` (after trimming) and returns
    /// the rest of it, trimmed. Panics with the console if the VM closes its output or
    /// `timeout` passes first (a hang guard, not a timing assertion).
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.inner;
        let mut state = lock.lock().expect("console lock");
        loop {
            if let Some(rest) = find_line(&state.text, prefix) {
                return rest;
            }
            if state.closed >= 2 {
                panic!(
                    "the VM ended before printing a line starting `{prefix}`; console:\n{}",
                    state.text
                );
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "no line starting `{prefix}` within {timeout:?} (hang guard); console:\n{}",
                    state.text
                );
            }
            state = cvar
                .wait_timeout(state, deadline - now)
                .expect("console lock")
                .0;
        }
    }
}

/// The rest of the first complete line of `text` that starts with `prefix`.
pub fn find_line(text: &str, prefix: &str) -> Option<String> {
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.trim().to_string())
}

/// `command` wrapped so that the kernel passes it to `/init` whole: `eval "..."`.
///
/// The kernel hands every word after ` -- ` to init as an argument and panics, before
/// the serial console is up (so silently), on more than 32 of them (MAX_INIT_ARGS).
/// Inside double quotes a command is one word to the kernel; the kernel knows no
/// backslash escapes, so `command` must not contain `"` (use single quotes), and `$`,
/// `` ` `` and `\` are escaped for the shell, which undoes that before `eval`.
pub fn kernel_safe_command(command: &str) -> String {
    assert!(
        !command.contains('"'),
        "guest commands use single quotes only (see kernel_safe_command): {command}"
    );
    let mut escaped = String::with_capacity(command.len() + 16);
    for c in command.chars() {
        if matches!(c, '$' | '`' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("eval \"{escaped}\"")
}

/// `run --memory 512M --serial stdio`: the start of a plain `ftvm run` of the tests.
pub fn run_args() -> Vec<OsString> {
    ["run", "--memory", "512M", "--serial", "stdio"]
        .map(OsString::from)
        .to_vec()
}

/// The flags that boot the fetched guest: firmware, kernel, `initrd` (default: the
/// fetched one), kernel command line `cmdline`, and `--guest-cmd` if given.
pub fn guest_args(initrd: Option<&Path>, cmdline: &str, guest_cmd: Option<&str>) -> Vec<OsString> {
    let images = guest_images();
    let mut args: Vec<OsString> = vec![
        "--firmware".into(),
        images.firmware.into(),
        "--kernel".into(),
        images.kernel.into(),
        "--initrd".into(),
        initrd.map_or(images.initrd, Path::to_path_buf).into(),
        "--cmdline".into(),
        cmdline.into(),
    ];
    if let Some(cmd) = guest_cmd {
        args.push("--guest-cmd".into());
        args.push(cmd.into());
    }
    args
}

/// A running `ftvm run`, killed on drop.
pub struct Vm {
    child: ChildGuard,
    console: Console,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Vm {
    /// Boots the fetched guest with `device_args` (e.g. `--disk path=...`) and a kernel
    /// command line that runs `command` after the ready line. With `netns`, ftvm runs
    /// inside that network namespace (`ip netns exec`, which execs ftvm, so the PID is
    /// ftvm's).
    pub fn start(netns: Option<&str>, device_args: &[OsString], command: &str) -> Vm {
        let cmdline = format!("console=ttyS0 quiet -- {}", kernel_safe_command(command));
        // RISC-V's COMMAND_LINE_SIZE is 1024 bytes, and the kernel cuts the rest.
        assert!(
            cmdline.len() < 1000,
            "kernel command line too long: {cmdline}"
        );
        let mut args = run_args();
        args.extend(guest_args(None, &cmdline, None));
        args.extend_from_slice(device_args);
        Vm::spawn(netns, &args)
    }

    /// Like [`Vm::start`], with `initrd` instead of the default one (e.g. from
    /// [`ft::initrd_with`]) and the guest command, if any, given with `--guest-cmd`
    /// (any length, any quotes). Without a command the guest's /init runs a shell on
    /// the console, whose input is closed, so it powers off.
    pub fn start_with(
        netns: Option<&str>,
        device_args: &[OsString],
        initrd: Option<&Path>,
        guest_cmd: Option<&str>,
    ) -> Vm {
        let mut args = run_args();
        args.extend(guest_args(initrd, "console=ttyS0 quiet", guest_cmd));
        args.extend_from_slice(device_args);
        Vm::spawn(netns, &args)
    }

    /// Runs `ftvm ARGS...` (inside `netns` if given) with stdin closed and its
    /// stdout and stderr collected in the console.
    pub fn spawn(netns: Option<&str>, args: &[OsString]) -> Vm {
        let ftvm = env!("CARGO_BIN_EXE_ftvm");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new(require_tool("ip", "iproute2"));
                c.args(["netns", "exec", ns, ftvm]);
                c
            }
            None => Command::new(ftvm),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("ftvm starts");
        let console = Console::default();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let readers = vec![console.attach(stdout), console.attach(stderr)];
        Vm {
            child: ChildGuard::new(child, "ftvm"),
            console,
            readers,
        }
    }

    /// The ftvm process (to kill it, or ask whether it ended).
    pub fn child(&mut self) -> &mut ChildGuard {
        &mut self.child
    }

    /// Kills the VM now (SIGKILL to its PID), reaps it and returns the console.
    pub fn kill(mut self) -> String {
        self.child.stop();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.console.text()
    }

    /// The console, to wait on while the VM runs.
    pub fn console(&self) -> Console {
        self.console.clone()
    }

    /// Waits for the VM to end, killing it after `guard`; returns its exit status
    /// (`None` if it had to be killed) and the console.
    pub fn wait(mut self, guard: Duration) -> (Option<ExitStatus>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait() {
                break Some(status);
            }
            if start.elapsed() > guard {
                self.child.stop();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status, self.console.text())
    }
}

/// A network namespace, deleted on drop (with the interfaces inside it).
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (deleting a stale one of that name first) with `lo` up.
    pub fn new(name: &str) -> Netns {
        let ip = require_tool("ip", "iproute2");
        let _ = Command::new(&ip)
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run(&ip, &["netns", "add", name]);
        let ns = Netns {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...`.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run(require_tool("ip", "iproute2"), &all)
    }

    /// Runs `f` on a new thread that has entered this namespace, and returns its result
    /// (a panic in `f` is raised again here). Sockets `f` opens live in the namespace.
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        let handle = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd changes only this thread's network
            // namespace; the thread is ours and ends with `f`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        });
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new(require_tool("ip", "iproute2"))
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output()
        {
            if !out.status.success() {
                eprintln!(
                    "warning: ip netns del {}: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

/// Sends one ICMP echo request to `dst` from the calling thread's network namespace
/// and waits up to `timeout` for its reply. Needs root (a raw socket).
pub fn icmp_echo(dst: std::net::Ipv4Addr, ident: u16, seq: u16, timeout: Duration) -> bool {
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    assert!(
        fd >= 0,
        "raw ICMP socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let fd = owned.as_raw_fd();

    let mut packet = vec![8u8, 0, 0, 0];
    packet.extend_from_slice(&ident.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend((0..48u8).map(|i| i.wrapping_mul(7)));
    let sum = internet_checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());

    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: the buffer and address are valid for the lengths given.
    let sent = unsafe {
        libc::sendto(
            fd,
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let left = deadline - now;
        let tv = libc::timeval {
            tv_sec: left.as_secs() as libc::time_t,
            tv_usec: left.subsec_micros().max(1) as libc::suseconds_t,
        };
        // SAFETY: tv is a valid timeval for SO_RCVTIMEO.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let reply = &buf[..n as usize];
        let ihl = usize::from(reply[0] & 0x0f) * 4;
        if reply.len() < ihl + 8 || reply[12..16] != dst.octets() {
            continue;
        }
        let icmp = &reply[ihl..];
        if icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return true;
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`.
fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
