//! The machine is a deterministic state machine: the same images and the same
//! answers at the event boundary give bit-identical state at the same icount.
//! Boots the real Debian guest (OpenSBI, then the kernel) twice in a virtual
//! environment and compares everything.

use ftvm_machine::{Machine, MachineConfig, Step, VirtualEnvironment};

/// Far enough to be deep in the kernel's boot (past OpenSBI, paging on,
/// timer interrupts taken), short enough to run twice quickly.
const INSTRUCTIONS: u64 = 150_000_000;

struct Run {
    console: Vec<u8>,
    digests: Vec<ftvm_machine::digest::Digest>,
    final_ram_rehashed: u64,
    state: ftvm_cpu::HartState,
    ram_digest: u64,
}

/// FNV-1a over RAM: enough to detect any difference between two runs.
fn digest(bytes: &[u8]) -> u64 {
    bytes.chunks(8).fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        (h ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn boot_once() -> Run {
    let images = ftvm_host::images::locate(&ftvm_host::images::default_cache_dir())
        .expect("guest images are fetched: run `ftvm images fetch` (scripts/setup does)");
    let read = |p: &std::path::Path| std::fs::read(p).expect("image readable");
    let config = MachineConfig {
        memory_size: 256 << 20,
        firmware: read(&images.firmware),
        kernel: Some(read(&images.kernel)),
        initrd: Some(read(&images.initrd)),
        cmdline: "console=ttyS0 earlycon=sbi".into(),
        virtio: Vec::new(),
    };
    let mut env = VirtualEnvironment::new();
    let mut machine = Machine::new(config, &mut env).expect("machine builds");
    let mut console = Vec::new();
    let mut digests = Vec::new();
    let mut next_digest = 0;
    while machine.icount() < INSTRUCTIONS {
        let step = machine.step(&mut env).expect("step");
        console.extend(machine.take_console_output());
        assert_eq!(
            step,
            Step::Running,
            "console so far:\n{}",
            String::from_utf8_lossy(&console)
        );
        if machine.icount() >= next_digest {
            digests.push(machine.digest());
            next_digest += 10_000_000;
        }
    }
    digests.push(machine.digest());
    let final_ram_rehashed =
        ftvm_machine::digest::RamHasher::default().update(machine.hart().memory().as_bytes(), &[]);
    Run {
        console,
        digests,
        final_ram_rehashed,
        state: machine.hart().state(),
        ram_digest: digest(machine.hart().memory().as_bytes()),
    }
}

#[test]
fn test_two_boots_in_the_same_environment_are_bit_identical() {
    let first = boot_once();
    let second = boot_once();

    assert!(
        String::from_utf8_lossy(&first.console).contains("Linux version"),
        "the kernel did not start:\n{}",
        String::from_utf8_lossy(&first.console)
    );
    assert_eq!(
        (
            &first.console,
            &first.state,
            first.ram_digest,
            &first.digests
        ),
        (
            &second.console,
            &second.state,
            second.ram_digest,
            &second.digests
        )
    );
}

#[test]
fn test_incremental_digest_of_ram_matches_a_full_rehash_after_a_boot() {
    let run = boot_once();

    let last = run.digests.last().expect("at least one digest");
    assert_eq!(last.ram, run.final_ram_rehashed);
}
