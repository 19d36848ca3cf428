//! End to end: `ftvm run --record FILE` then `ftvm replay FILE` on the Debian guest.
//!
//! The recorded workload boots Linux and then uses every source of
//! non-determinism the machine has: the timer (`sleep 1`), console input (the test
//! types a line once the guest says it is ready, and the guest echoes it), the
//! entropy device (`/dev/hwrng`), a virtio disk (random data written, synced, the
//! page cache dropped, and read back) and, in the first test, a virtio-net card on a
//! TAP device in a network namespace the test creates (the guest pings the
//! address configured on the TAP; no traffic leaves the namespace).
//!
//! Then: replays reproduce the console exactly; two recordings differ but each
//! replays; a log with one changed answer is reported as a divergence at or
//! before the next digest; truncated or corrupted logs and changed images are
//! refused with a clear one-line error. Never a panic, never a hang (every child
//! is killed after [`HANG_GUARD`]).
//!
//! Needs the guest images (`ftvm images fetch`); the network test needs root and
//! iproute2.

use ftvm_devices::virtio::BackendCompletion;
use ftvm_replay::{decode_all, BlockOpRecord, Entry, Event, LogWriter, SubmitRecord};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A bound so a broken emulator cannot hang the test run (not a timing assertion).
const HANG_GUARD: Duration = Duration::from_secs(900);

/// The guest command of every recording: prints a ready line, reads one line of
/// console input and echoes it, sleeps, reads the hardware RNG, writes 64 KiB of
/// random data to /dev/vda, syncs, drops the page cache so the read-back really
/// reads the disk, prints its MD5, the date, then spins long enough that at least
/// one state digest follows every input above ([`DIGEST_INTERVAL`] is 50 M
/// instructions).
///
/// [`DIGEST_INTERVAL`]: ftvm_machine::replay::DIGEST_INTERVAL
const WORKLOAD: &str = "echo rr-\"\"ready; read line; echo \"rr-got:$line\"; sleep 1; \
    echo \"rr-rng:$(head -c 8 /dev/hwrng | od -An -tx1)\"; \
    dd if=/dev/urandom of=/dev/vda bs=4k count=16 2>/dev/null; sync; \
    echo 3 > /proc/sys/vm/drop_caches; \
    set -- $(dd if=/dev/vda bs=4k count=16 2>/dev/null | md5sum); echo \"rr-md5:$1\"; \
    date; i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo rr-\"\"done";

/// The network part of the first test's workload, run first.
const NET_WORKLOAD: &str = "ip addr add 10.78.0.2/24 dev eth0 && ip link set eth0 up && \
    ping -c 3 10.78.0.1; echo \"rr-ping-status:$?\"; ";

/// The host's address on the TAP, inside the test's namespace.
const TAP_ADDR: &str = "10.78.0.1/24";

// ---------------------------------------------------------------------------
// Helpers (self-contained: the shared `common` module belongs to other tests).

/// A directory under the system temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ftvm-rr-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A network namespace with a TAP device `tap0` at [`TAP_ADDR`], deleted on drop.
struct Netns(String);

impl Netns {
    fn with_tap(tag: &str) -> Netns {
        let name = format!("ftvm-rr-{}-{tag}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        sh("ip", &["netns", "add", &name]);
        let ns = Netns(name);
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ns.ip(&["addr", "add", TAP_ADDR, "dev", "tap0"]);
        ns.ip(&["link", "set", "tap0", "up"]);
        ns
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        sh("ip", &all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.0])
            .stdin(Stdio::null())
            .status();
    }
}

/// Runs a host command; panics with its output if it fails.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The bytes read so far and whether the stream has ended.
type Progress = Mutex<(Vec<u8>, bool)>;

/// Output collected from a child by a reader thread.
#[derive(Clone, Default)]
struct Collected(Arc<(Progress, Condvar)>);

impl Collected {
    fn attach(&self, mut source: impl Read + Send + 'static) -> std::thread::JoinHandle<()> {
        let this = self.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = source.read(&mut buf).unwrap_or(0);
                let (lock, cvar) = &*this.0;
                let mut state = lock.lock().expect("lock");
                if n == 0 {
                    state.1 = true;
                    cvar.notify_all();
                    return;
                }
                state.0.extend_from_slice(&buf[..n]);
                cvar.notify_all();
            }
        })
    }

    fn bytes(&self) -> Vec<u8> {
        self.0 .0.lock().expect("lock").0.clone()
    }

    /// Waits until the output holds `needle`; false if it closed or `until` passed first.
    fn wait_for(&self, needle: &str, until: Instant) -> bool {
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().expect("lock");
        loop {
            if String::from_utf8_lossy(&state.0).contains(needle) {
                return true;
            }
            let now = Instant::now();
            if state.1 || now >= until {
                return false;
            }
            state = cvar.wait_timeout(state, until - now).expect("lock").0;
        }
    }
}

/// What an ftvm process did.
struct Outcome {
    /// `None`: killed by the hang guard.
    status: Option<ExitStatus>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Outcome {
    /// The console transcript with carriage returns removed.
    fn transcript(&self) -> String {
        String::from_utf8_lossy(&self.stdout).replace('\r', "")
    }

    fn describe(&self) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.transcript(),
            self.stderr
        )
    }

    /// Asserts the process exited with 0.
    fn assert_success(&self, what: &str) {
        assert!(
            self.status.is_some_and(|s| s.success()),
            "{what} did not exit with 0: {}",
            self.describe()
        );
    }

    /// Asserts the process failed cleanly: a non-zero exit (not the hang guard,
    /// not a signal, not Rust's panic status 101) and no panic message.
    fn assert_clean_failure(&self, what: &str) {
        let status = self
            .status
            .unwrap_or_else(|| panic!("{what}: killed by the hang guard: {}", self.describe()));
        assert!(!status.success(), "{what} succeeded: {}", self.describe());
        assert!(
            status.code().is_some_and(|c| c != 101),
            "{what}: ended by a signal or a panic: {}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "{what}: panicked: {}",
            self.describe()
        );
    }

    /// The last line of stderr that starts with `ftvm: error:`.
    fn error_line(&self) -> String {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("ftvm: error:"))
            .unwrap_or_else(|| panic!("no `ftvm: error:` line: {}", self.describe()))
            .to_string()
    }
}

/// Runs ftvm with `args` (inside `netns` if given). When `input` is given, it is
/// written to ftvm's stdin once the console shows `rr-ready`; stdin stays open
/// until the process ends.
fn run_ftvm(args: &[OsString], netns: Option<&str>, input: Option<&str>) -> Outcome {
    let ftvm = env!("CARGO_BIN_EXE_ftvm");
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, ftvm]);
            c
        }
        None => Command::new(ftvm),
    };
    let mut child: Child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ftvm starts");
    let stdout = Collected::default();
    let stderr = Collected::default();
    let readers = [
        stdout.attach(child.stdout.take().expect("piped stdout")),
        stderr.attach(child.stderr.take().expect("piped stderr")),
    ];
    let mut stdin = child.stdin.take();
    let deadline = Instant::now() + HANG_GUARD;
    if let Some(line) = input {
        if stdout.wait_for("rr-ready", deadline) {
            if let Some(pipe) = stdin.as_mut() {
                let _ = pipe.write_all(line.as_bytes());
                let _ = pipe.flush();
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for ftvm") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(stdin);
    for r in readers {
        let _ = r.join();
    }
    Outcome {
        status,
        stdout: stdout.bytes(),
        stderr: String::from_utf8_lossy(&stderr.bytes()).into_owned(),
    }
}

/// `ftvm run --record LOG` of the workload with a disk, the RNG and `extra` flags.
fn record(
    log: &Path,
    disk: &Path,
    extra: &[&str],
    guest_cmd: &str,
    netns: Option<&str>,
    input: &str,
) -> Outcome {
    let mut args: Vec<OsString> = ["run", "--record"].map(OsString::from).to_vec();
    args.push(log.into());
    args.push("--disk".into());
    let mut disk_arg = OsString::from("path=");
    disk_arg.push(disk);
    args.push(disk_arg);
    args.push("--rng".into());
    args.extend(extra.iter().map(OsString::from));
    args.extend(["--cmdline", "console=ttyS0 quiet", "--guest-cmd"].map(OsString::from));
    args.push(guest_cmd.into());
    run_ftvm(&args, netns, Some(input))
}

/// `ftvm replay LOG`.
fn replay(log: &Path) -> Outcome {
    run_ftvm(&[OsString::from("replay"), log.into()], None, None)
}

/// A sparse raw disk image of 8 MiB.
fn disk_image(path: &Path) {
    let f = std::fs::File::create(path).expect("create the disk image");
    f.set_len(8 << 20).expect("size the disk image");
}

/// The number in `text` right after `prefix`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks a replay against its recording: exit 0, the same console, digests checked.
fn assert_replays_exactly(recording: &Outcome, log: &Path) -> Outcome {
    let replayed = replay(log);
    replayed.assert_success("ftvm replay");
    assert_eq!(
        replayed.transcript(),
        recording.transcript(),
        "the replayed console differs from the recorded one; replay stderr:\n{}",
        replayed.stderr
    );
    let summary = replayed
        .stderr
        .lines()
        .find(|l| l.starts_with("replayed "))
        .unwrap_or_else(|| panic!("no summary line: {}", replayed.describe()));
    let digests = number_after(summary, "seconds; ")
        .unwrap_or_else(|| panic!("no digest count in the summary: {summary}"));
    assert!(digests > 0, "no digest was checked: {summary}");
    assert!(
        summary.ends_with("PowerOff(0)"),
        "the recorded run did not end with a power-off: {summary}"
    );
    replayed
}

/// Checks a recording's console shows every part of the workload.
fn assert_workload_ran(recording: &Outcome, input_line: &str) {
    recording.assert_success("ftvm run --record");
    let t = recording.transcript();
    for needle in [
        format!("rr-got:{}", input_line.trim_end()),
        "rr-rng:".to_string(),
        "rr-md5:".to_string(),
        "rr-done".to_string(),
    ] {
        assert!(t.contains(&needle), "the console lacks `{needle}`:\n{t}");
    }
}

/// A log of the workload (no network), recorded once and shared by the tests
/// that only need some log to damage.
struct SharedLog {
    _dir: TempDir,
    log: PathBuf,
    recording: Outcome,
}

fn shared_log() -> &'static SharedLog {
    static LOG: OnceLock<SharedLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = TempDir::new("shared");
        let disk = dir.path().join("disk.img");
        disk_image(&disk);
        let log = dir.path().join("run.log");
        let input = "shared-input-line\n";
        let recording = record(&log, &disk, &[], WORKLOAD, None, input);
        assert_workload_ran(&recording, input);
        SharedLog {
            _dir: dir,
            log,
            recording,
        }
    })
}

/// The decoded shared log.
fn decoded(log: &Path) -> (ftvm_replay::Header, Vec<Entry>) {
    let bytes = std::fs::read(log).expect("read the log");
    decode_all(&bytes).unwrap_or_else(|e| panic!("the recorded log does not decode: {e}"))
}

/// Writes `entries` under `header` to `path` with [`LogWriter`].
fn encode(path: &Path, header: &ftvm_replay::Header, entries: &[Entry]) {
    let mut w = LogWriter::new(Vec::new(), header).expect("write the header");
    for e in entries {
        w.write(e.icount, &e.event).expect("write an entry");
    }
    std::fs::write(path, w.into_inner()).expect("write the changed log");
}

/// The byte offset of every frame of the log in `bytes`, from the header's length
/// and each frame's length field.
fn frame_offsets(bytes: &[u8]) -> Vec<(u64, u64)> {
    let config_len = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes")) as usize;
    let mut off = 8 + 2 + 4 + config_len + 4;
    let mut out = Vec::new();
    while off + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes")) as usize;
        let size = 25 + len;
        out.push((off as u64, size as u64));
        off += size;
    }
    out
}

/// Replays `entries` with entry `changed` already altered, and checks the replay
/// reports a divergence at an icount between the changed entry's and the next
/// digest's.
fn assert_change_detected(
    what: &str,
    header: &ftvm_replay::Header,
    entries: &[Entry],
    changed: usize,
) {
    let dir = TempDir::new(&format!("div-{}", what.replace(' ', "-")));
    let path = dir.path().join("changed.log");
    encode(&path, header, entries);
    let at = entries[changed].icount;
    // The entries that can notice the change: a checked output or a digest.
    let first_check = entries[changed..]
        .iter()
        .find(|e| matches!(e.event, Event::Digest { .. } | Event::Submit { .. }))
        .map(|e| e.icount);
    let next_digest = entries[changed..]
        .iter()
        .find(|e| matches!(e.event, Event::Digest { .. }))
        .map(|e| e.icount)
        .unwrap_or_else(|| panic!("{what}: no digest follows the changed entry {changed}"));
    let out = replay(&path);
    out.assert_clean_failure(&format!("replay of a log with a changed {what}"));
    let line = out.error_line();
    let reported = number_after(&line, "replay diverged at icount ").unwrap_or_else(|| {
        panic!(
            "{what}: not a divergence message: {line}\n{}",
            out.describe()
        )
    });
    eprintln!(
        "{what}: changed entry {changed} at icount {at}; first digest or submit after it at \
         icount {first_check:?}; next digest at icount {next_digest}; reported: {line}"
    );
    assert!(
        (at..=next_digest).contains(&reported),
        "{what}: divergence reported at icount {reported}, outside [{at}, {next_digest}]: {line}"
    );
}

// ---------------------------------------------------------------------------
// The tests.

#[test]
fn test_replay_reproduces_console_of_boot_with_timer_input_rng_disk_and_network() {
    let dir = TempDir::new("full");
    let disk = dir.path().join("disk.img");
    disk_image(&disk);
    let log = dir.path().join("run.log");
    let input = format!("typed-by-the-test-{}\n", std::process::id());
    let (netns, extra, cmd) = if is_root() {
        let ns = Netns::with_tap("full");
        (
            Some(ns),
            vec!["--net", "tap=tap0"],
            format!("{NET_WORKLOAD}{WORKLOAD}"),
        )
    } else {
        eprintln!("not root: recording without the network part");
        (None, vec![], WORKLOAD.to_string())
    };
    let recording = record(
        &log,
        &disk,
        &extra,
        &cmd,
        netns.as_ref().map(|n| n.0.as_str()),
        &input,
    );
    drop(netns);
    assert_workload_ran(&recording, &input);
    if extra.is_empty() {
        eprintln!("network left out (not root)");
    } else {
        assert!(
            recording.transcript().contains("rr-ping-status:0"),
            "the guest's ping on the TAP failed:\n{}",
            recording.transcript()
        );
    }

    // The disk writes really happened: the image holds what the guest read back.
    let guest_md5 = recording
        .transcript()
        .lines()
        .find_map(|l| l.trim().strip_prefix("rr-md5:").map(str::to_string))
        .expect("md5 line");
    let image = std::fs::read(&disk).expect("read the disk image");
    let host_md5 = sh(
        "sh",
        &["-c", &format!("head -c 65536 {} | md5sum", disk.display())],
    );
    assert!(
        image[..65536].iter().any(|&b| b != 0),
        "the guest wrote nothing"
    );
    assert!(
        host_md5.starts_with(&guest_md5),
        "disk image md5 {host_md5} != guest's {guest_md5}"
    );

    // The log holds every kind of input the workload used.
    let (_, entries) = decoded(&log);
    let has = |f: &dyn Fn(&Event) -> bool| entries.iter().any(|e| f(&e.event));
    assert!(
        has(&|e| matches!(e, Event::ConsoleInput { .. })),
        "no console input logged"
    );
    assert!(
        has(&|e| matches!(e, Event::Idle { woke_at: Some(_) })),
        "no idle period logged"
    );
    assert!(
        has(&|e| matches!(
            e,
            Event::Completion {
                completion: BackendCompletion::Entropy { .. },
                ..
            }
        )),
        "no entropy completion logged"
    );
    assert!(
        has(&|e| matches!(
            e,
            Event::Submit {
                request: SubmitRecord::Block {
                    op: BlockOpRecord::Write { .. },
                    ..
                },
                ..
            }
        )),
        "no disk write logged"
    );
    if !extra.is_empty() {
        assert!(
            has(&|e| matches!(
                e,
                Event::Completion {
                    completion: BackendCompletion::NetRx { .. },
                    ..
                }
            )),
            "no received frame logged"
        );
    }

    let replayed = assert_replays_exactly(&recording, &log);
    eprintln!("{}", replayed.stderr.trim());
}

#[test]
fn test_two_recordings_of_one_workload_differ_and_each_replays_exactly() {
    let first = shared_log();
    let dir = TempDir::new("twice");
    let disk = dir.path().join("disk.img");
    disk_image(&disk);
    let log = dir.path().join("second.log");
    let second = record(&log, &disk, &[], WORKLOAD, None, "shared-input-line\n");
    assert_workload_ran(&second, "shared-input-line\n");

    let a = std::fs::read(&first.log).expect("read the first log");
    let b = std::fs::read(&log).expect("read the second log");
    assert_ne!(a, b, "two recordings produced byte-identical logs");

    assert_replays_exactly(&first.recording, &first.log);
    assert_replays_exactly(&second, &log);
}

#[test]
fn test_changed_disk_read_data_is_reported_as_divergence_by_the_next_digest() {
    let (header, mut entries) = decoded(&shared_log().log);
    // The read-back of the random data the guest wrote: the last block completion
    // carrying non-zero data.
    let i = entries
        .iter()
        .rposition(|e| {
            matches!(&e.event, Event::Completion { completion: BackendCompletion::Block { data, .. }, .. }
                if data.iter().any(|&b| b != 0))
        })
        .expect("a disk read of non-zero data in the log");
    if let Event::Completion {
        completion: BackendCompletion::Block { data, .. },
        ..
    } = &mut entries[i].event
    {
        let mid = data.len() / 2;
        data[mid] ^= 0x01;
    }
    assert_change_detected("disk read", &header, &entries, i);
}

#[test]
fn test_changed_console_input_is_reported_as_divergence_by_the_next_digest() {
    let (header, mut entries) = decoded(&shared_log().log);
    let i = entries
        .iter()
        .position(|e| matches!(e.event, Event::ConsoleInput { .. }))
        .expect("console input in the log");
    if let Event::ConsoleInput { bytes } = &mut entries[i].event {
        bytes[0] ^= 0x02; // another printable letter, so the shell still reads a line
    }
    assert_change_detected("console input", &header, &entries, i);
}

#[test]
fn test_changed_time_reading_is_reported_as_divergence_by_the_next_digest() {
    let (header, mut entries) = decoded(&shared_log().log);
    // A time reading in the middle of the run, pushed 10 ms later.
    let nows: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| matches!(e.event, Event::Now { .. }))
        .map(|(i, _)| i)
        .collect();
    let i = nows[nows.len() / 2];
    if let Event::Now { mtime } = &mut entries[i].event {
        *mtime += 100_000;
    }
    assert_change_detected("time reading", &header, &entries, i);
}

#[test]
fn test_log_truncated_inside_a_frame_is_refused_with_a_truncation_error() {
    let shared = shared_log();
    let bytes = std::fs::read(&shared.log).expect("read the log");
    let frames = frame_offsets(&bytes);
    let k = frames.len() / 2;
    let (off, size) = frames[k];
    let cut = off + size / 2;
    let dir = TempDir::new("trunc");
    let path = dir.path().join("truncated.log");
    std::fs::write(&path, &bytes[..cut as usize]).expect("write the truncated log");

    let out = replay(&path);
    out.assert_clean_failure("replay of a truncated log");
    let line = out.error_line();
    eprintln!("cut frame {k} (at byte {off}, {size} bytes) at byte {cut}: {line}");
    assert!(
        line.contains(&format!(
            "Log truncated in frame {k}: the stream ends at byte {cut}"
        )),
        "unexpected error: {line}\n{}",
        out.describe()
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "more than one line: {}",
        out.stderr
    );
}

#[test]
fn test_log_with_a_flipped_byte_is_refused_with_a_checksum_error() {
    let shared = shared_log();
    let mut bytes = std::fs::read(&shared.log).expect("read the log");
    let frames = frame_offsets(&bytes);
    let k = frames.len() / 2;
    let (off, size) = frames[k];
    // A byte of the payload (or of the kind byte for an empty payload): past len,
    // seq and icount.
    let at = (off + 20 + (size - 24) / 2) as usize;
    bytes[at] ^= 0x40;
    let dir = TempDir::new("flip");
    let path = dir.path().join("flipped.log");
    std::fs::write(&path, &bytes).expect("write the corrupt log");

    let out = replay(&path);
    out.assert_clean_failure("replay of a corrupt log");
    let line = out.error_line();
    eprintln!("flipped byte {at} in frame {k} (at byte {off}): {line}");
    assert!(
        line.contains(&format!("Frame {k} at byte {off} is corrupt")),
        "unexpected error: {line}\n{}",
        out.describe()
    );
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "more than one line: {}",
        out.stderr
    );
}

#[test]
fn test_replay_refuses_an_initrd_changed_since_the_recording() {
    let dir = TempDir::new("image");
    let images = ftvm_host::images::locate(&ftvm_host::images::default_cache_dir())
        .expect("guest images are fetched: run `ftvm images fetch`");
    let initrd = dir.path().join("initrd-copy.img");
    std::fs::copy(&images.initrd, &initrd).expect("copy the initrd");
    let log = dir.path().join("run.log");
    let mut args: Vec<OsString> = ["run", "--record"].map(OsString::from).to_vec();
    args.push(log.clone().into());
    args.push("--initrd".into());
    args.push(initrd.clone().into());
    args.extend(
        [
            "--cmdline",
            "console=ttyS0 quiet",
            "--guest-cmd",
            "echo rr-\"\"ok",
        ]
        .map(OsString::from),
    );
    let recording = run_ftvm(&args, None, None);
    recording.assert_success("recording with a copied initrd");
    assert!(
        recording.transcript().contains("rr-ok"),
        "{}",
        recording.describe()
    );

    // One byte of the copy changes (the file keeps its length).
    let mut data = std::fs::read(&initrd).expect("read the copy");
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&initrd, &data).expect("change the copy");

    let out = replay(&log);
    out.assert_clean_failure("replay with a changed initrd");
    let line = out.error_line();
    eprintln!("{line}");
    assert!(
        line.contains(&format!(
            "the initrd {} has changed since the recording",
            std::fs::canonicalize(&initrd)
                .expect("canonical path")
                .display()
        )),
        "unexpected error: {line}\n{}",
        out.describe()
    );
}
