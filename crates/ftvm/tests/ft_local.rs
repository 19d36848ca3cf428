//! The FT pair on loopback, no root: non-shared disks stay identical, a
//! backup refuses a primary that runs a different machine, and nobody runs
//! alone without the arbiter. Needs the guest images (`ftvm images fetch`)
//! and e2fsprogs (for the disk's checksum comparison it is not needed).

mod common;

use common::{guest_args, sha256_file, sparse_image, TempDir, Vm};
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

const GUARD: Duration = Duration::from_secs(600);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// `ftvm primary|backup` with the FT flags `ft`, then the guest running `cmd`.
fn side(role: &str, port: u16, ft: &[&str], extra: &[OsString], cmd: &str) -> Vec<OsString> {
    let addr = format!("127.0.0.1:{port}");
    let mut a = os(&[
        role,
        if role == "primary" {
            "--listen"
        } else {
            "--peer"
        },
        &addr,
    ]);
    a.extend(os(ft));
    a.extend(os(&["--memory", "512M", "--serial", "stdio"]));
    a.extend(extra.iter().cloned());
    a.extend(guest_args(None, "console=ttyS0 quiet", Some(cmd)));
    a
}

/// Waits until the guest of `vm` has printed 20 `tick N` lines more than
/// it has so far.
fn ticks_go_on(vm: &Vm) {
    let last = vm
        .console()
        .text()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick ")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    vm.console()
        .wait_for_line(&format!("tick {}", last + 20), GUARD);
}

#[test]
fn test_non_shared_disk_copies_end_identical() {
    let dir = TempDir::new("ft-nonshared");
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    sparse_image(&a, 32 << 20);
    sparse_image(&b, 32 << 20);
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let port = free_port();
    let ft = ["--arbiter", &arbiter, "--non-shared-disk"];
    let cmd = "mke2fs -F /dev/vda >/dev/null && load-ext4 && mkdir -p /mnt && \
               mount -t ext2 /dev/vda /mnt && i=0; while [ $i -lt 20 ]; do i=$((i+1)); \
               dd if=/dev/urandom of=/mnt/f$i bs=4k count=8 2>/dev/null; sync; done; \
               umount /mnt && echo ft-''disk-done";
    let disk = |p: &Path| os(&["--disk", &format!("path={}", p.display())]);

    let primary = Vm::spawn(None, &side("primary", port, &ft, &disk(&a), cmd));
    let backup = Vm::spawn(None, &side("backup", port, &ft, &disk(&b), cmd));
    let (p_status, p_out) = primary.wait(GUARD);
    let (b_status, b_out) = backup.wait(GUARD);

    assert_eq!(
        p_status.and_then(|s| s.code()),
        Some(0),
        "primary:\n{p_out}"
    );
    assert_eq!(b_status.and_then(|s| s.code()), Some(0), "backup:\n{b_out}");
    assert!(p_out.contains("ft-disk-done"), "{p_out}");
    // The backup performed the same writes on its own copy, in the same order.
    assert_eq!(sha256_file(&a), sha256_file(&b));
}

#[test]
fn test_backup_refuses_a_primary_running_another_machine() {
    let dir = TempDir::new("ft-mismatch");
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let port = free_port();
    let ft = ["--arbiter", &arbiter];
    let primary = Vm::spawn(None, &side("primary", port, &ft, &[], "sleep 30"));
    let backup_args = side("backup", port, &ft, &[], "sleep 30");
    // A different RAM size.
    let backup_args = with_less_memory(backup_args);

    let (b_status, b_out) = Vm::spawn(None, &backup_args).wait(GUARD);
    // The primary saw its backup go before anything ran and took the arbiter
    // (it may still be asking when the backup has exited).
    primary
        .console()
        .wait_for_line("ftvm primary: the backup is gone", GUARD);
    let p_out = primary.kill();

    assert_refused_other_memory(b_status, &b_out);
    assert!(p_out.contains("running alone"), "{p_out}");
}

#[test]
fn test_nobody_runs_alone_without_the_arbiter() {
    let dir = TempDir::new("ft-noarbiter");
    // Nothing listens there: the arbiter is unreachable.
    let dead = free_port();
    let arbiter = format!("etcd=http://127.0.0.1:{dead},key=/ftvm/t");
    let port = free_port();
    let ft = ["--arbiter", &arbiter];
    let cmd = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"n $i\"; usleep 100000; done";
    let primary = Vm::spawn(None, &side("primary", port, &ft, &[], cmd));
    let backup = Vm::spawn(None, &side("backup", port, &ft, &[], cmd));
    primary.console().wait_for_line("n 5", GUARD);
    drop(dir);

    let _ = backup.kill();
    primary
        .console()
        .wait_for_line("ftvm: cannot reach the arbiter", GUARD);
    let held_from = primary.console().text().matches("\nn ").count();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = primary.kill();

    // The guest goes on, but without the arbiter the primary may not run
    // alone: its outputs stay held, so the numbered lines stop.
    assert!(!text.contains("running alone"), "{text}");
    assert!(
        text.matches("\nn ").count() <= held_from + 1,
        "output went on without the arbiter:\n{text}"
    );
}

#[test]
fn test_shared_disk_writes_in_flight_at_failover_all_land() {
    let dir = TempDir::new("ft-inflight");
    let image = dir.path().join("shared.img");
    sparse_image(&image, 32 << 20);
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let port = free_port();
    let ft = ["--arbiter", &arbiter, "--timeout-ms", "1000"];
    // 16 MiB of random data written over and over, the kernel's writeback
    // keeping many requests in flight; the primary is killed in the middle.
    let cmd = "dd if=/dev/urandom of=/tmp/src bs=64k count=256 2>/dev/null; \
               i=0; while [ $i -lt 8 ]; do i=$((i+1)); \
               dd if=/tmp/src of=/dev/vda bs=64k oflag=direct 2>/dev/null || \
               dd if=/tmp/src of=/dev/vda bs=64k conv=fsync 2>/dev/null; \
               echo pass $i; done; sync; echo 3 > /proc/sys/vm/drop_caches; \
               set -- $(sha256sum /tmp/src); echo src-sha $1; \
               set -- $(head -c 16777216 /dev/vda | sha256sum); echo disk-sha $1";
    let disk = os(&["--disk", &format!("path={}", image.display())]);
    let primary = Vm::spawn(None, &side("primary", port, &ft, &disk, cmd));
    let backup = Vm::spawn(None, &side("backup", port, &ft, &disk, cmd));

    primary.console().wait_for_line("pass 2", GUARD);
    // In the middle of the third pass: the disk is busy.
    std::thread::sleep(Duration::from_millis(150));
    let p_out = primary.kill();
    let (b_status, b_out) = backup.wait(GUARD);

    assert_eq!(b_status.and_then(|s| s.code()), Some(0), "backup:\n{b_out}");
    assert!(b_out.contains("ftvm backup: live at icount"), "{b_out}");
    let src = common::find_line(&b_out, "src-sha ").expect("the guest's source hash");
    let guest_disk = common::find_line(&b_out, "disk-sha ").expect("the guest's disk hash");
    let mut head = std::fs::read(&image).expect("read the image");
    head.truncate(16 << 20);
    let host_disk = sha256_bytes(&head);
    println!(
        "primary printed {} passes; backup: {}",
        p_out.matches("pass ").count(),
        common::find_line(&b_out, "ftvm backup: live at icount").unwrap_or_default()
    );
    // What the guest wrote is what it reads back and what the image holds.
    assert_eq!(guest_disk.trim(), src.trim());
    assert_eq!(host_disk, src.trim());
}

fn sha256_bytes(data: &[u8]) -> String {
    let dir = TempDir::new("ft-sha");
    let path = dir.path().join("data");
    std::fs::write(&path, data).expect("write");
    sha256_file(&path)
}

/// A new backup that says hello to a primary running alone and then reads
/// nothing (so the copy of RAM, sent while the guest runs, cannot go) is
/// given up after a few seconds of no progress; the guest goes on alone.
#[test]
fn test_a_joining_backup_that_reads_nothing_is_given_up_and_the_guest_goes_on() {
    use std::io::Write;
    let dir = TempDir::new("ft-stall");
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let port = free_port();
    let ft = ["--arbiter", &arbiter];
    let cmd = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"tick $i\"; usleep 10000; done";
    let primary = Vm::spawn(None, &side("primary", port, &ft, &[], cmd));
    let backup = Vm::spawn(None, &side("backup", port, &ft, &[], cmd));
    primary.console().wait_for_line("tick 20", GUARD);
    let _ = backup.kill();
    primary
        .console()
        .wait_for_line("ftvm primary: the backup is gone; running alone", GUARD);

    let mut joiner =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the primary");
    // A small receive buffer, so that the kernel does not take the snapshot
    // in the joiner's place (it grows to tens of MiB on its own).
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on the joiner's own open socket, with a c_int of the
    // size given.
    let set = unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            joiner.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "setsockopt SO_RCVBUF");
    joiner
        .write_all(&ftvm_protocol::Message::Hello { udp_port: 9 }.encode())
        .expect("say hello");
    let why = primary
        .console()
        .wait_for_line("ftvm primary: the new backup cannot join:", GUARD);
    ticks_go_on(&primary);
    drop(joiner);
    let text = primary.kill();

    assert!(why.contains("it took nothing for"), "{why}\n{text}");
}

/// The guest command of the tests below: a numbered line every 100 ms.
const NUMBERED: &str =
    "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"n $i\"; usleep 100000; done";

/// `--disk path=P`.
fn disk_args(p: &Path) -> Vec<OsString> {
    os(&["--disk", &format!("path={}", p.display())])
}

/// A primary with a disk of its own, running [`NUMBERED`] alone after its
/// backup was killed; with its directory, arbiter flag and port.
fn own_disk_primary_alone(tag: &str) -> (TempDir, Vm, String, u16) {
    let dir = TempDir::new(tag);
    let (a, b) = (dir.path().join("a.img"), dir.path().join("b.img"));
    sparse_image(&a, 32 << 20);
    sparse_image(&b, 32 << 20);
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let port = free_port();
    let own = ["--arbiter", &arbiter, "--non-shared-disk"];
    let primary = Vm::spawn(None, &side("primary", port, &own, &disk_args(&a), NUMBERED));
    let backup = Vm::spawn(None, &side("backup", port, &own, &disk_args(&b), NUMBERED));
    primary.console().wait_for_line("n 3", GUARD);
    let _ = backup.kill();
    primary
        .console()
        .wait_for_line("ftvm primary: the backup is gone; running alone", GUARD);
    (dir, primary, arbiter, port)
}

/// `args` with 256M of memory instead of 512M.
fn with_less_memory(mut args: Vec<OsString>) -> Vec<OsString> {
    let at = args.iter().position(|a| a == "512M").expect("memory flag");
    args[at] = "256M".into();
    args
}

/// A backup that ended with status 2, saying the primary has 512 MiB of
/// memory and it 256.
fn assert_refused_other_memory(status: Option<std::process::ExitStatus>, out: &str) {
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(
        out.contains("the primary runs a different machine: the primary has `memory 536870912`, this side `memory 268435456`"),
        "{out}"
    );
}

/// A side running alone with disks of its own copies them to a backup that
/// joins; a backup that shares its disks refuses the copy, naming why, and
/// the side goes on alone.
#[test]
fn test_a_backup_sharing_its_disks_refuses_a_disk_copy_by_name() {
    let (dir, primary, arbiter, port) = own_disk_primary_alone("ft-copyrefused");
    let shared = ["--arbiter", &arbiter];
    let b = dir.path().join("b.img");

    let (status, out) = Vm::spawn(
        None,
        &side("backup", port, &shared, &disk_args(&b), NUMBERED),
    )
    .wait(GUARD);
    // Either the copy or the snapshot after it finds the backup gone.
    primary
        .console()
        .wait_for_line("ftvm primary: the new backup c", GUARD);
    let after = primary.console().text().matches("\nn ").count();
    primary
        .console()
        .wait_for_line(&format!("n {}", after + 3), GUARD);
    let text = primary.kill();

    assert_eq!(status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(
        out.contains(
            "the primary copies its disks to this side (it has --non-shared-disk), but this side shares them"
        ),
        "{out}"
    );
    assert!(!text.contains("paired again"), "{text}");
}

/// A backup of another machine joining a side that runs alone with disks of
/// its own refuses, naming the difference, before anything is copied: its
/// disk image is left as it was.
#[test]
fn test_a_joining_backup_of_another_machine_refuses_before_its_disk_is_touched() {
    let (dir, primary, arbiter, port) = own_disk_primary_alone("ft-joinother");
    let own = ["--arbiter", &arbiter, "--non-shared-disk"];
    let c = dir.path().join("c.img");
    std::fs::write(&c, vec![0x5au8; 32 << 20]).expect("the other backup's image");
    let before = sha256_file(&c);
    let other = with_less_memory(side("backup", port, &own, &disk_args(&c), NUMBERED));

    let (status, out) = Vm::spawn(None, &other).wait(GUARD);
    primary
        .console()
        .wait_for_line("ftvm primary: the new backup c", GUARD);
    let _ = primary.kill();

    assert_refused_other_memory(status, &out);
    assert_eq!(
        sha256_file(&c),
        before,
        "the other machine's disk was written"
    );
}

/// Re-protection without an operator: a spare (`ftvm backup --spare`) given
/// both sides' addresses waits while the pair is whole; when the primary
/// dies and the backup goes live, the spare joins it by itself, and when
/// that side dies in turn the spare goes live and the guest goes on.
#[test]
fn test_a_spare_joins_the_side_left_alone_and_takes_over_when_it_dies() {
    let dir = TempDir::new("ft-spare");
    let arbiter = format!("file={}", dir.path().join("arbiter").display());
    let (p_port, b_port) = (free_port(), free_port());
    let b_addr = format!("127.0.0.1:{b_port}");
    let ft = ["--arbiter", &arbiter];
    let cmd = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"tick $i\"; usleep 10000; done";
    let primary = Vm::spawn(None, &side("primary", p_port, &ft, &[], cmd));
    let backup = Vm::spawn(
        None,
        &side("backup", p_port, &ft, &os(&["--listen", &b_addr]), cmd),
    );
    primary
        .console()
        .wait_for_line("ftvm primary: backup connected from", GUARD);
    let spare = Vm::spawn(
        None,
        &side(
            "backup",
            p_port,
            &ft,
            &os(&["--peer", &b_addr, "--spare"]),
            cmd,
        ),
    );
    primary.console().wait_for_line("tick 30", GUARD);
    spare
        .console()
        .wait_for_line("ftvm backup: spare: waiting for one of", GUARD);

    let _ = primary.kill();
    backup
        .console()
        .wait_for_line("ftvm backup: live at icount", GUARD);
    spare
        .console()
        .wait_for_line("ftvm backup: joined the running guest at icount", GUARD);
    backup
        .console()
        .wait_for_line("ftvm primary: the backup has the snapshot", GUARD);
    let _ = backup.kill();
    spare
        .console()
        .wait_for_line("ftvm backup: live at icount", GUARD);
    ticks_go_on(&spare);
    let text = spare.kill();

    assert!(
        text.contains(&format!(
            "ftvm backup: spare: {b_addr} takes this side as its new backup"
        )),
        "{text}"
    );
}
