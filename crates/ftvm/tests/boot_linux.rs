//! Boots Debian's stock riscv64 kernel through OpenSBI on ftvm, runs a few
//! commands in the busybox initramfs and checks the output and the exit status.
//!
//! Needs the guest images (`ftvm images fetch`, done by `scripts/setup`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A bound so a broken emulator cannot hang the test run (not a timing assertion).
const HANG_GUARD: Duration = Duration::from_secs(900);

#[test]
fn test_debian_kernel_boots_to_ready_line_runs_commands_and_powers_off() {
    let images = ftvm_host::images::locate(&ftvm_host::images::default_cache_dir())
        .expect("guest images are fetched: run `ftvm images fetch` (scripts/setup does)");
    let cmdline = "console=ttyS0 quiet -- uname -m; cat /proc/cpuinfo; \
                   awk 'BEGIN{printf \"%.6f\\n\", atan2(1,1)*4}'; echo done";
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args([
            "run",
            "--memory",
            "512M",
            "--serial",
            "stdio",
            "--cmdline",
            cmdline,
        ])
        .arg("--firmware")
        .arg(&images.firmware)
        .arg("--kernel")
        .arg(&images.kernel)
        .arg("--initrd")
        .arg(&images.initrd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ftvm starts");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > HANG_GUARD {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = reader.join().expect("reader");

    let pi = console.lines().any(|l| l.trim() == "3.141593");
    assert!(
        console.contains("ftvm-guest: ready")
            && console.lines().any(|l| l.trim() == "riscv64")
            && console.contains("isa\t\t: rv64imafdc")
            && pi
            && console.lines().any(|l| l.trim() == "done"),
        "unexpected console output:\n{console}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "console:\n{console}"
    );
}
