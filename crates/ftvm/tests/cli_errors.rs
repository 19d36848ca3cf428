//! Bad input on the command line: a one-line error naming the problem and a
//! non-zero exit, never a panic.

use std::process::{Command, Output};

fn ftvm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args(args)
        .output()
        .expect("ftvm runs")
}

fn scratch(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ftvm-cli-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

/// A RISC-V Linux Image header with the right magic and nothing else.
fn fake_image() -> Vec<u8> {
    let mut image = vec![0u8; 4096];
    image[48..56].copy_from_slice(b"RISCV\0\0\0");
    image[56..60].copy_from_slice(b"RSC\x05");
    image
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn test_missing_kernel_file_is_named_in_a_one_line_error() {
    let fw = scratch("fw.bin", &[0x73, 0, 0x10, 0x10]);

    let out = ftvm(&[
        "run",
        "--firmware",
        fw.to_str().expect("utf-8"),
        "--kernel",
        "/nonexistent/vmlinux",
    ]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.code(),
            err.lines().count(),
            err.contains("/nonexistent/vmlinux"),
            err.contains("panicked")
        ),
        (Some(2), 1, true, false)
    );
}

#[test]
fn test_corrupt_kernel_is_rejected() {
    let fw = scratch("fw2.bin", &[0x73, 0, 0x10, 0x10]);
    let kernel = scratch("garbage-kernel", &[0xab; 8192]);

    let out = ftvm(&[
        "run",
        "--firmware",
        fw.to_str().expect("utf-8"),
        "--kernel",
        kernel.to_str().expect("utf-8"),
    ]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.code(),
            err.lines().count(),
            err.contains("kernel image is neither")
        ),
        (Some(2), 1, true)
    );
}

#[test]
fn test_corrupt_initrd_is_rejected() {
    let fw = scratch("fw3.bin", &[0x73, 0, 0x10, 0x10]);
    let kernel = scratch("kernel3", &fake_image());
    let initrd = scratch("initrd3", b"this is not an archive");

    let out = ftvm(&[
        "run",
        "--firmware",
        fw.to_str().expect("utf-8"),
        "--kernel",
        kernel.to_str().expect("utf-8"),
        "--initrd",
        initrd.to_str().expect("utf-8"),
    ]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.code(),
            err.lines().count(),
            err.contains("initrd is neither")
        ),
        (Some(2), 1, true)
    );
}

#[test]
fn test_empty_firmware_is_rejected() {
    let fw = scratch("empty-fw.bin", &[]);

    let out = ftvm(&["run", "--firmware", fw.to_str().expect("utf-8")]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.code(),
            err.lines().count(),
            err.contains("is empty")
        ),
        (Some(2), 1, true)
    );
}

#[test]
fn test_memory_size_that_does_not_fit_is_rejected() {
    let fw = scratch("fw4.bin", &[0x73, 0, 0x10, 0x10]);

    let out = ftvm(&[
        "run",
        "--firmware",
        fw.to_str().expect("utf-8"),
        "--memory",
        "64G",
    ]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.code(),
            err.lines().count(),
            err.contains("memory size")
        ),
        (Some(2), 1, true)
    );
}

#[test]
fn test_unknown_flag_is_rejected() {
    let out = ftvm(&["run", "--frobnicate"]);

    let err = stderr_of(&out);
    assert_eq!(
        (
            out.status.success(),
            err.contains("--frobnicate"),
            err.contains("panicked")
        ),
        (false, true, false)
    );
}
