//! ISA conformance: self-checking bare-metal programs run on the machine.
//!
//! Each `tests/isa/*.S` program starts in M-mode at 0x8000_0000, runs its
//! numbered checks and reports through the `sifive,test` finisher: 0x5555 on
//! success, `(check << 16) | 0x3333` on the first failing check. The programs
//! are validated against QEMU (`tests/isa/run-qemu.sh`); here they are
//! assembled with `riscv64-linux-gnu-as` (Debian: binutils-riscv64-linux-gnu)
//! and run on ftvm with `FTVM` defined, which also enables the checks where
//! QEMU 7.2 departs from the privileged spec.

use std::path::{Path, PathBuf};
use std::process::Command;

use ftvm_machine::{Machine, MachineConfig, Step, VirtualEnvironment};

/// A broken program must not hang the test suite.
const MAX_INSTRUCTIONS: u64 = 50_000_000;

fn isa_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("isa")
}

fn run_tool(tool: &str, args: &[&str]) {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run {tool} ({e}): install binutils-riscv64-linux-gnu \
             (apt-get install binutils-riscv64-linux-gnu) to build the ISA tests"
        )
    });
    assert!(
        output.status.success(),
        "{tool} {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Assembles and links `name.S` into an ELF and returns its bytes.
fn build(name: &str) -> Vec<u8> {
    let dir = isa_dir();
    let out = std::env::temp_dir().join(format!("ftvm-isa-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("create the build directory");
    let src = dir.join(format!("{name}.S"));
    let obj = out.join(format!("{name}.o"));
    let elf = out.join(format!("{name}.elf"));
    let include = dir.to_str().expect("UTF-8 path");
    run_tool(
        "riscv64-linux-gnu-as",
        &[
            "-march=rv64gc",
            "-mabi=lp64d",
            "--defsym",
            "FTVM=1",
            "-I",
            include,
            "-o",
            obj.to_str().expect("UTF-8 path"),
            src.to_str().expect("UTF-8 path"),
        ],
    );
    let script = dir.join("link.ld");
    run_tool(
        "riscv64-linux-gnu-ld",
        &[
            "-nostdlib",
            "-T",
            script.to_str().expect("UTF-8 path"),
            "-o",
            elf.to_str().expect("UTF-8 path"),
            obj.to_str().expect("UTF-8 path"),
        ],
    );
    std::fs::read(&elf).expect("read the linked program")
}

/// The source line of check `number` (the unindented TEST_* / NEXT_TEST lines, in order).
fn check_line(name: &str, number: u32) -> String {
    let src = std::fs::read_to_string(isa_dir().join(format!("{name}.S"))).unwrap_or_default();
    src.lines()
        .enumerate()
        .filter(|(_, line)| line.starts_with("TEST_") || line.starts_with("NEXT_TEST"))
        .nth(number.saturating_sub(1) as usize)
        .map(|(i, line)| format!("{name}.S:{}: {line}", i + 1))
        .unwrap_or_else(|| "(unknown check)".to_string())
}

/// Runs `name.S` bare-metal on the machine and asserts that every check passed.
fn run_program(name: &str) {
    let elf = build(name);
    let mut env = VirtualEnvironment::new();
    let config = MachineConfig {
        memory_size: 64 << 20,
        firmware: elf,
        kernel: None,
        initrd: None,
        cmdline: String::new(),
        virtio: Vec::new(),
    };
    let mut machine = Machine::new(config, &mut env).expect("machine");
    let result = loop {
        match machine.step(&mut env).expect("step") {
            Step::Running | Step::Reboot => assert!(
                machine.icount() <= MAX_INSTRUCTIONS,
                "{name}: no verdict after {MAX_INSTRUCTIONS} instructions (pc {:#x})",
                machine.hart().pc()
            ),
            other => break other,
        }
    };
    let check = match result {
        Step::PowerOff(status) if status > 0xffff => status >> 16,
        Step::PowerOff(status) => status,
        _ => 0,
    };
    assert_eq!(
        result,
        Step::PowerOff(0),
        "{name}: failing check number {check}: {}",
        check_line(name, check)
    );
}

#[test]
fn test_isa_rv64i_arithmetic_branches_loads_stores_pass() {
    run_program("rv64i");
}

#[test]
fn test_isa_rv64m_multiply_divide_pass() {
    run_program("rv64m");
}

#[test]
fn test_isa_rv64a_lr_sc_and_amos_pass() {
    run_program("rv64a");
}

#[test]
fn test_isa_rvc_compressed_forms_pass() {
    run_program("rvc");
}

#[test]
fn test_isa_rv64f_single_precision_and_nan_boxing_pass() {
    run_program("rv64f");
}

#[test]
fn test_isa_rv64d_double_precision_rounding_and_flags_pass() {
    run_program("rv64d");
}

#[test]
fn test_isa_zicsr_and_counters_pass() {
    run_program("zicsr");
}

#[test]
fn test_isa_traps_and_delegation_pass() {
    run_program("traps");
}

#[test]
fn test_isa_sv39_sv48_paging_and_page_faults_pass() {
    run_program("paging");
}

#[test]
fn test_isa_misaligned_loads_and_stores_do_not_trap() {
    run_program("misaligned");
}

#[test]
fn test_isa_clint_plic_and_sstc_interrupts_pass() {
    run_program("interrupts");
}
