//! End to end: the Debian guest makes a file system on a virtio disk, writes files
//! and unmounts it; the host then checks the image with e2fsck and reads the files
//! back with debugfs. Once with a raw file behind the disk, once over NBD (qemu-nbd),
//! and a read-only disk the guest cannot change.
//!
//! Needs the guest images (`ftvm images fetch`), e2fsprogs and qemu-utils, and root.

mod common;

use common::{require_tool, run, sha256_file, ChildGuard, TempDir, Vm, HANG_GUARD};
use std::ffi::OsString;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The small file's contents, as the guest writes it (echo adds the newline).
const HELLO: &str = "written by the ftvm guest through virtio-blk";
/// The big file's size: 16 blocks of 64 KiB.
const BIG_BYTES: u64 = 16 * 64 * 1024;

/// The guest's part of the write test: format /dev/vda as ext2 (busybox mke2fs makes
/// ext2; ext4.ko mounts it), write a directory with a small text file and 1 MiB of
/// random bytes, print the big file's SHA-256, sync and unmount.
fn write_files_command() -> String {
    format!(
        "load-ext4 && mkdir -p /mnt && mke2fs -F /dev/vda >/dev/null && \
         mount -t ext2 /dev/vda /mnt && mkdir /mnt/dir && echo '{HELLO}' >/mnt/dir/hello.txt && \
         dd if=/dev/urandom of=/mnt/big.bin bs=64k count=16 2>/dev/null && \
         set -- $(sha256sum /mnt/big.bin) && echo e2e-sha256 $1 && sync && umount /mnt && \
         echo e2e-''unmounted"
    )
}

/// The host's part of the write test, after the VM ended: the image is a clean file
/// system holding the files the guest wrote.
fn assert_image_holds_guest_files(image: &Path, scratch: &Path, guest_sha256: &str) {
    let e2fsck = require_tool("e2fsck", "e2fsprogs");
    let debugfs = require_tool("debugfs", "e2fsprogs");
    let image = image.to_str().expect("UTF-8 path");

    let fsck = Command::new(&e2fsck)
        .args(["-fn", image])
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

    let hello = run(&debugfs, &["-R", "cat /dir/hello.txt", image]);
    assert_eq!(
        hello,
        format!("{HELLO}\n"),
        "the small file read back by debugfs"
    );

    let dumped = scratch.join("big.bin");
    let dump_cmd = format!("dump /big.bin {}", dumped.display());
    run(&debugfs, &["-R", &dump_cmd, image]);
    let size = std::fs::metadata(&dumped).map(|m| m.len()).unwrap_or(0);
    assert_eq!(size, BIG_BYTES, "size of the big file dumped by debugfs");
    assert_eq!(
        sha256_file(&dumped),
        guest_sha256,
        "SHA-256 of the big file on the host vs the one the guest printed"
    );
}

/// Boots with `disk_arg` as the only disk, runs the write command and returns the
/// SHA-256 the guest printed, after checking the guest finished and powered off cleanly.
fn boot_and_write_files(disk_arg: &str) -> String {
    let vm = Vm::start(
        None,
        &[OsString::from("--disk"), OsString::from(disk_arg)],
        &write_files_command(),
    );
    let (status, console) = vm.wait(HANG_GUARD);
    assert!(
        status.is_some(),
        "the VM hung and was killed; console:\n{console}"
    );
    let guest_sha256 = common::find_line(&console, "e2e-sha256")
        .unwrap_or_else(|| panic!("the guest printed no checksum; console:\n{console}"));
    assert!(
        common::find_line(&console, "e2e-unmounted").is_some(),
        "the guest did not unmount the disk cleanly; console:\n{console}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "ftvm's exit status; console:\n{console}"
    );
    assert_eq!(guest_sha256.len(), 64, "a SHA-256 in hex: {guest_sha256:?}");
    guest_sha256
}

#[test]
fn test_guest_makes_file_system_on_file_disk_and_host_reads_its_files_back() {
    let dir = TempDir::new("disk-file");
    let image = dir.path().join("disk.img");
    common::sparse_image(&image, 64 << 20);
    require_tool("e2fsck", "e2fsprogs");

    let disk_arg = format!("path={}", image.display());
    let guest_sha256 = boot_and_write_files(&disk_arg);

    assert_image_holds_guest_files(&image, dir.path(), &guest_sha256);
}

/// A free TCP port on 127.0.0.1 (bound, then released for qemu-nbd to take).
fn free_local_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Starts `qemu-nbd` exporting `image` on 127.0.0.1 and waits until it accepts
/// connections; returns the guard and the port.
fn start_qemu_nbd(image: &Path, export: &str) -> (ChildGuard, u16) {
    let qemu_nbd = require_tool("qemu-nbd", "qemu-utils");
    for _attempt in 0..5 {
        let port = free_local_port();
        let child = Command::new(&qemu_nbd)
            .args([
                "-f",
                "raw",
                "-b",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-x",
                export,
            ])
            .arg("--persistent")
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu-nbd");
        let mut guard = ChildGuard::new(child, "qemu-nbd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if guard.try_wait().is_some() {
                break; // Most likely lost the port to someone else: try another.
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return (guard, port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        guard.stop();
    }
    panic!("qemu-nbd did not start listening on 127.0.0.1 (tried 5 ports)");
}

#[test]
fn test_guest_makes_file_system_on_nbd_disk_and_host_reads_its_files_back() {
    let dir = TempDir::new("disk-nbd");
    let image = dir.path().join("disk.img");
    common::sparse_image(&image, 64 << 20);
    require_tool("e2fsck", "e2fsprogs");
    let export = common::unique("ftvm", "nbd");
    let (mut server, port) = start_qemu_nbd(&image, &export);

    let disk_arg = format!("nbd=nbd://127.0.0.1:{port}/{export}");
    let guest_sha256 = boot_and_write_files(&disk_arg);
    server.terminate(Duration::from_secs(10));

    assert_image_holds_guest_files(&image, dir.path(), &guest_sha256);
}

#[test]
fn test_guest_cannot_write_to_read_only_file_disk_and_image_stays_unchanged() {
    let dir = TempDir::new("disk-ro");
    let image = dir.path().join("disk.img");
    let pattern: Vec<u8> = (0..BIG_BYTES as usize)
        .map(|i| (i.wrapping_mul(31) % 251) as u8 ^ 0x5a)
        .collect();
    std::fs::write(&image, &pattern).expect("write the image's first MiB");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .and_then(|f| f.set_len(8 << 20))
        .expect("grow the image to 8 MiB");
    let before = sha256_file(&image);
    let first_mib = dir.path().join("first-mib.bin");
    std::fs::write(&first_mib, &pattern).expect("write the pattern");
    let pattern_sha256 = sha256_file(&first_mib);

    let command = "mkdir -p /tmp; echo e2e-ro $(blockdev --getro /dev/vda); \
                   dd if=/dev/zero of=/dev/vda bs=512 count=1 2>/tmp/err; \
                   echo e2e-dd $? $(cat /tmp/err); sync; \
                   set -- $(dd if=/dev/vda bs=64k count=16 2>/dev/null | sha256sum); \
                   echo e2e-read $1; echo e2e-''end";
    let disk_arg = format!("path={},readonly=on", image.display());
    let vm = Vm::start(
        None,
        &[OsString::from("--disk"), OsString::from(disk_arg)],
        command,
    );
    let (status, console) = vm.wait(HANG_GUARD);

    assert!(
        status.is_some(),
        "the VM hung and was killed; console:\n{console}"
    );
    assert!(
        common::find_line(&console, "e2e-end").is_some(),
        "the guest did not finish its command; console:\n{console}"
    );
    let line = |prefix: &str| common::find_line(&console, prefix).unwrap_or_default();
    assert_eq!(line("e2e-ro"), "1", "blockdev --getro; console:\n{console}");
    let dd = line("e2e-dd");
    assert!(
        !dd.starts_with("0 ") && dd != "0",
        "dd to the read-only disk succeeded ({dd:?}); console:\n{console}"
    );
    assert_eq!(
        line("e2e-read"),
        pattern_sha256,
        "the guest reads the image's first MiB back; console:\n{console}"
    );
    assert_eq!(sha256_file(&image), before, "the read-only image changed");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "console:\n{console}"
    );
}
