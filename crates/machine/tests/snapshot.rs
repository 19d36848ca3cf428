//! Whole-machine snapshots (`ftvm_machine::snapshot`) of a small bare-metal machine
//! that keeps the hart, RAM, the timer, the UART and a virtio disk busy (the machine
//! of the `snapshot_restore` fuzz body, `fuzz/bodies/machine.rs`): a restored machine
//! runs on exactly like the original, and damaged or foreign snapshots are refused
//! with the error that names what is wrong.

#[path = "../../../fuzz/bodies/machine.rs"]
mod machine;

use ftvm_machine::snapshot::{SnapshotError, HEADER_LEN, TRAILER_LEN};
use ftvm_machine::{Machine, MachineConfig, Step, VirtioConfig, VirtualEnvironment};
use machine::{config, environment, reseal, seal};
use std::ops::Range;

/// A machine of [`config`] after `steps` steps, with its environment.
fn running(steps: usize) -> (Machine, VirtualEnvironment) {
    let mut env = environment();
    let mut vm = Machine::new(config(), &mut env).expect("the machine builds");
    for _ in 0..steps {
        assert_eq!(vm.step(&mut env).expect("step"), Step::Running);
    }
    (vm, env)
}

/// The contents of the section tagged `tag`, found by walking the section headers
/// (tag, u64 length) from the end of the header.
fn section(snapshot: &[u8], tag: &[u8; 4]) -> Range<usize> {
    let mut at = HEADER_LEN;
    while at + 12 <= snapshot.len() - TRAILER_LEN {
        let mut len = [0u8; 8];
        len.copy_from_slice(&snapshot[at + 4..at + 12]);
        let len = u64::from_le_bytes(len) as usize;
        if &snapshot[at..at + 4] == tag {
            return at + 12..at + 12 + len;
        }
        at += 12 + len;
    }
    panic!("no section {tag:?}");
}

/// Block requests in flight in virtio slot 0 (a disk whose serial is "snapshot"):
/// kind, capacity, read-only, serial length and serial come first.
fn disk_requests_in_flight(snapshot: &[u8]) -> u64 {
    let virt = section(snapshot, b"VIRT");
    let at = virt.start + 8 + 1 + 8 + 1 + 8 + "snapshot".len();
    let mut count = [0u8; 8];
    count.copy_from_slice(&snapshot[at..at + 8]);
    u64::from_le_bytes(count)
}

/// Steps `vm` `steps` times, returning after each step what must be the same for a
/// machine and its restored copy.
fn run_on(
    vm: &mut Machine,
    env: &mut VirtualEnvironment,
    steps: usize,
) -> Vec<(Step, u64, ftvm_machine::digest::Digest, Vec<u8>)> {
    (0..steps)
        .map(|_| {
            let step = vm.step(env).expect("step");
            (step, vm.icount(), vm.digest(), vm.take_console_output())
        })
        .collect()
}

#[test]
fn test_restored_machine_runs_on_exactly_like_the_original() {
    let (mut original, mut env) = running(30);
    while disk_requests_in_flight(&original.snapshot()) == 0 {
        original.step(&mut env).expect("step");
    }
    let snapshot = original.snapshot();
    let disk_at_snapshot = format!("{:?}", env.backends);
    let mut restored_env = env.clone();

    let mut restored = Machine::from_snapshot(config(), &snapshot).expect("the snapshot restores");
    let resnapshot = restored.snapshot();
    let digest_at_restore = (original.digest(), restored.digest());
    let original_run = run_on(&mut original, &mut env, 60);
    let restored_run = run_on(&mut restored, &mut restored_env, 60);

    assert!(
        resnapshot == snapshot,
        "the restored machine's snapshot differs"
    );
    assert_eq!(digest_at_restore.0, digest_at_restore.1);
    assert_eq!(original_run, restored_run);
    assert_eq!(
        format!("{:?}", env.backends),
        format!("{:?}", restored_env.backends),
        "the disks differ"
    );
    assert_ne!(
        format!("{:?}", env.backends),
        disk_at_snapshot,
        "the guest wrote nothing to its disk after the snapshot"
    );
    assert!(
        original_run.iter().any(|(_, _, _, out)| !out.is_empty()),
        "the guest wrote nothing to its console after the snapshot"
    );
}

/// A copy the way a new FT backup gets one: RAM copied while the machine
/// runs on, the pages it wrote meanwhile copied again, then a snapshot
/// without RAM and the pages written since: the copy runs on exactly like
/// the original.
#[test]
fn test_ram_copied_while_running_plus_a_snapshot_without_ram_runs_on_like_the_original() {
    let (mut original, mut env) = running(30);
    original.take_dirty_pages();
    let mut ram = original.ram().to_vec();
    for _ in 0..20 {
        original.step(&mut env).expect("step");
    }
    let page = 4096;
    let mut again = original.take_dirty_pages();
    for _ in 0..20 {
        original.step(&mut env).expect("step");
    }
    again.extend(original.take_dirty_pages());
    for index in again {
        let range = index * page..((index + 1) * page).min(ram.len());
        ram[range.clone()].copy_from_slice(&original.ram()[range]);
    }
    let snapshot = original.snapshot_without_ram();
    let mut restored_env = env.clone();

    let mut restored = Machine::from_snapshot(config(), &snapshot).expect("the snapshot restores");
    restored.replace_ram(&ram).expect("RAM of the right size");
    let digests = (original.digest(), restored.digest());
    let original_run = run_on(&mut original, &mut env, 40);
    let restored_run = run_on(&mut restored, &mut restored_env, 40);

    assert!(snapshot.len() < original.snapshot().len());
    assert_eq!(restored.ram(), original.ram());
    assert_eq!(digests.0, digests.1);
    assert_eq!(original_run, restored_run);
}

#[test]
fn test_replacing_ram_of_another_size_is_refused() {
    let (mut vm, _) = running(0);
    let size = vm.ram().len() as u64;

    let err = vm.replace_ram(&[0u8; 4096]).expect_err("too small");

    assert!(
        matches!(err, SnapshotError::RamSize { got: 4096, expected } if expected == size),
        "{err}"
    );
}

#[test]
fn test_snapshot_then_restore_then_snapshot_gives_the_same_bytes_at_power_on() {
    let (vm, _) = running(0);
    let snapshot = vm.snapshot();

    let restored = Machine::from_snapshot(config(), &snapshot).expect("the snapshot restores");

    assert!(restored.snapshot() == snapshot);
}

#[test]
fn test_every_truncation_of_a_snapshot_is_a_truncated_error() {
    let (vm, _) = running(4);
    let snapshot = vm.snapshot();

    let wrong: Vec<(usize, String)> = (0..snapshot.len())
        .filter_map(
            |len| match Machine::from_snapshot(config(), &snapshot[..len]) {
                Err(SnapshotError::Truncated { .. }) => None,
                other => Some((len, format!("{:?}", other.err()))),
            },
        )
        .collect();

    assert_eq!(wrong, Vec::new());
}

#[test]
fn test_every_truncation_with_its_checksum_made_right_is_a_truncated_error() {
    let (vm, _) = running(4);
    let snapshot = vm.snapshot();
    let sections = &snapshot[..snapshot.len() - TRAILER_LEN];

    let wrong: Vec<(usize, String)> = (HEADER_LEN..sections.len())
        .filter_map(
            |len| match Machine::from_snapshot(config(), &seal(&sections[..len])) {
                Err(SnapshotError::Truncated { .. }) => None,
                other => Some((len, format!("{:?}", other.err()))),
            },
        )
        .collect();

    assert_eq!(wrong, Vec::new());
}

#[test]
fn test_truncated_error_names_the_section_and_offset() {
    let (vm, _) = running(4);
    let snapshot = vm.snapshot();
    let hart = section(&snapshot, b"HART");

    let error = Machine::from_snapshot(config(), &seal(&snapshot[..hart.start + 100]))
        .err()
        .expect("the hart section is cut");

    assert_eq!(
        error.to_string(),
        format!(
            "Truncated snapshot: the hart section needs {} bytes at offset {}, but 100 are left",
            hart.len(),
            hart.start
        )
    );
}

#[test]
fn test_every_flipped_byte_after_the_header_is_a_checksum_error() {
    let (vm, _) = running(4);
    let snapshot = vm.snapshot();

    let wrong: Vec<(usize, String)> = (HEADER_LEN..snapshot.len())
        .filter_map(|at| {
            let mut damaged = snapshot.clone();
            damaged[at] ^= 0x10;
            match Machine::from_snapshot(config(), &damaged) {
                Err(SnapshotError::Checksum { stored, computed }) if stored != computed => None,
                other => Some((at, format!("{:?}", other.err()))),
            }
        })
        .collect();

    assert_eq!(wrong, Vec::new());
}

#[test]
fn test_damaged_magic_and_version_are_named() {
    let (vm, _) = running(1);
    let snapshot = vm.snapshot();
    let flipped = |at: usize| {
        let mut damaged = snapshot.clone();
        damaged[at] ^= 1;
        Machine::from_snapshot(config(), &damaged).err()
    };

    // Version 2 with its lowest bit flipped.
    let (magic, version) = (flipped(0), flipped(8));

    assert!(matches!(magic, Some(SnapshotError::BadMagic { .. })));
    assert!(matches!(
        version,
        Some(SnapshotError::UnsupportedVersion { found: 3 })
    ));
}

#[test]
fn test_header_length_other_than_the_real_one_is_truncated_or_trailing() {
    let (vm, _) = running(1);
    let snapshot = vm.snapshot();
    let len = snapshot.len() as u64;
    let with_length = |claimed: u64| {
        let mut damaged = snapshot.clone();
        damaged[10..18].copy_from_slice(&claimed.to_le_bytes());
        Machine::from_snapshot(config(), &damaged).err()
    };

    let (longer, shorter) = (with_length(len + 1), with_length(len - 1));

    assert!(matches!(
        longer,
        Some(SnapshotError::Truncated { needed, available, .. }) if needed == len + 1 && available == len
    ));
    assert!(matches!(
        shorter,
        Some(SnapshotError::TrailingBytes { offset, count: 1, .. }) if offset == len - 1
    ));
}

#[test]
fn test_bytes_after_the_checksum_are_trailing_bytes() {
    let (vm, _) = running(1);
    let mut snapshot = vm.snapshot();
    let len = snapshot.len() as u64;
    snapshot.push(0);

    let error = Machine::from_snapshot(config(), &snapshot).err();

    assert!(matches!(
        error,
        Some(SnapshotError::TrailingBytes { offset, count: 1, .. }) if offset == len
    ));
}

#[test]
fn test_config_with_another_memory_size_is_a_mismatch_naming_it() {
    let (vm, _) = running(1);
    let bigger = MachineConfig {
        memory_size: 32 << 20,
        ..config()
    };

    let error = Machine::from_snapshot(bigger, &vm.snapshot())
        .err()
        .expect("32 MiB is not 16 MiB");

    assert_eq!(
        error.to_string(),
        "The snapshot belongs to another machine: its memory size is 16777216 bytes, \
         the configuration's is 33554432 bytes"
    );
}

#[test]
fn test_config_with_an_extra_device_is_a_mismatch_naming_it() {
    let (vm, _) = running(1);
    let mut more = config();
    more.virtio.push(VirtioConfig::Rng);

    let error = Machine::from_snapshot(more, &vm.snapshot())
        .err()
        .expect("two devices are not one");

    assert_eq!(
        error.to_string(),
        "The snapshot belongs to another machine: its number of virtio devices is 1, \
         the configuration's is 2"
    );
}

#[test]
fn test_config_with_another_disk_is_a_mismatch_naming_the_slot() {
    let (vm, _) = running(1);
    let mut other = config();
    other.virtio[0] = VirtioConfig::Block {
        capacity_sectors: machine::DISK_SECTORS,
        read_only: true,
        serial: "snapshot".into(),
    };

    let error = Machine::from_snapshot(other, &vm.snapshot()).err();

    assert!(matches!(
        error,
        Some(SnapshotError::ConfigMismatch { what, .. }) if what == "virtio slot 0"
    ));
}

#[test]
fn test_config_with_another_firmware_is_a_mismatch_naming_it() {
    let (vm, _) = running(1);
    let mut other = config();
    other.firmware.push(0);

    let error = Machine::from_snapshot(other, &vm.snapshot()).err();

    assert!(matches!(
        error,
        Some(SnapshotError::ConfigMismatch { what, .. }) if what == "firmware"
    ));
}

#[test]
fn test_config_that_cannot_be_built_is_a_config_error() {
    let (vm, _) = running(1);
    let tiny = MachineConfig {
        memory_size: 1 << 20,
        ..config()
    };

    let error = Machine::from_snapshot(tiny, &vm.snapshot()).err();

    assert!(matches!(error, Some(SnapshotError::Config(_))));
}

#[test]
fn test_hart_state_with_reserved_privilege_2_is_refused_by_hart_validation() {
    let (vm, _) = running(4);
    let mut snapshot = vm.snapshot();
    let hart = section(&snapshot, b"HART");
    // pc, x[32], f[32], fflags, frm: the privilege is at 522.
    snapshot[hart.start + 522] = 2;

    let error = Machine::from_snapshot(config(), &reseal(&snapshot)).err();

    assert!(matches!(
        error,
        Some(SnapshotError::Hart(ftvm_cpu::StateError::Privilege(2)))
    ));
}

#[test]
fn test_device_state_out_of_range_is_refused_naming_the_device() {
    let (vm, _) = running(4);
    let mut snapshot = vm.snapshot();
    let plic = section(&snapshot, b"PLIC");
    // priority[1], above the PLIC's maximum of 7.
    snapshot[plic.start + 4] = 9;

    let error = Machine::from_snapshot(config(), &reseal(&snapshot))
        .err()
        .expect("priority 9");

    assert_eq!(
        error.to_string(),
        "Cannot restore the PLIC from the snapshot: \
         Invalid PLIC state: priority[1] is 0x9, above the maximum 0x7"
    );
}

#[test]
fn test_ram_page_beyond_the_end_of_ram_is_refused() {
    let (vm, _) = running(4);
    let mut snapshot = vm.snapshot();
    let ram = section(&snapshot, b"RAM ");
    // The first page's index, after the page count.
    snapshot[ram.start + 8..ram.start + 16].copy_from_slice(&4096u64.to_le_bytes());

    let error = Machine::from_snapshot(config(), &reseal(&snapshot)).err();

    assert!(matches!(
        error,
        Some(SnapshotError::PageOutOfRange {
            index: 4096,
            pages: 4096
        })
    ));
}

#[test]
fn test_ram_page_of_zeros_is_refused() {
    let (vm, _) = running(4);
    let mut snapshot = vm.snapshot();
    let ram = section(&snapshot, b"RAM ");
    snapshot[ram.start + 16..ram.start + 16 + 4096].fill(0);

    let error = Machine::from_snapshot(config(), &reseal(&snapshot)).err();

    assert!(matches!(error, Some(SnapshotError::ZeroPage { index: 0 })));
}
