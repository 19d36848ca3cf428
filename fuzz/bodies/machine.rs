//! Fuzz body for machine snapshots (`ftvm_machine::snapshot`), shared by the
//! cargo-fuzz target `fuzz/fuzz_targets/snapshot_restore.rs`, the stable corpus
//! test `crates/machine/tests/snapshot_fuzz_corpus.rs` and the snapshot tests
//! `crates/machine/tests/snapshot.rs` (which take the machine from here).
//!
//! A snapshot comes from another host when a running machine is cloned, so
//! [`Machine::from_snapshot`] sees arbitrary bytes. It must never panic; whatever
//! it accepts must be the one encoding of the machine it restored (its snapshot
//! gives the input back); and the restored machine must run a slice without
//! panicking. A mutation almost always breaks the checksum, so every input is
//! also tried with its header length and checksum made right (see [`reseal`]),
//! which lets the mutation reach the decoder's other checks.
//!
//! The machine is [`config`]: 16 MiB of RAM, one 32 KiB disk, and a bare-metal
//! firmware ([`FIRMWARE`]) that keeps the hart, RAM, the timer, the UART and the
//! disk busy.

#![allow(dead_code)]

use ftvm_machine::snapshot::{HEADER_LEN, TRAILER_LEN};
use ftvm_machine::{Machine, MachineConfig, VirtioConfig, VirtualBackend, VirtualEnvironment};

/// Sectors of the disk in slot 0.
pub const DISK_SECTORS: u64 = 64;

/// The firmware, loaded at 0x8000_0000 and entered in M-mode. Assembled with
/// `riscv64-linux-gnu-as -march=rv64gc` (no compressed instructions) from:
///
/// ```text
///     la t0, trap; csrw mtvec, t0
///     s0 = CLINT, s1 = UART, s2 = 0x8001_0000 (data, 4 pages), s3 = s4 = s6 = 0,
///     s5 = virtio slot 0, s7 = 0x8000_4000 (queue: desc +0, avail +0x100, used +0x200)
///     mtimecmp = mtime + 1000; mie.MTIE; mstatus.FS = initial; mstatus.MIE
///     Status = 3; DriverFeatures[1] = 1 (VERSION_1); DriverFeatures[0] = 0
///     Status = 11; QueueSel = 0; QueueNum = 8; QueueDesc/Driver/Device = s7 + 0/0x100/0x200
///     QueueReady = 1; Status = 15
///     desc 0 = {s7 + 0x400, 16, NEXT, 1}; desc 1 = {s2, 512, -, 2}; desc 2 = {s7 + 0x410, 1, WRITE}
/// loop:
///     s3 += 1; sd s3, (s2 + (s3 * 8 & 0x3fff))
///     fcvt.d.l f1, s3; fadd.d f2, f2, f1
///     if s3 % 2048 == 0: wfi
///     if s3 % 1024 == 512 and used.idx == s6:        (the previous request is done)
///         header = {type s6 & 1 (IN, OUT), 0, sector s6 & 63}
///         desc 1 flags = NEXT | (WRITE for a read)
///         avail.ring[s6 & 7] = 0; s6 += 1; fence; avail.idx = s6; fence; QueueNotify = 0
///     lr.d t2, (s2)
///     j loop
/// trap:                                              (machine timer)
///     mtimecmp = mtime + 700; s4 += 1; UART <- '0' + s4 % 8; mret
/// ```
pub const FIRMWARE: [u32; 121] = [
    0x00000297, 0x1b028293, 0x30529073, 0x02000437, 0x100004b7, 0x00008937, 0x0019091b, 0x01091913,
    0x00000993, 0x00000a13, 0x10001ab7, 0x00000b13, 0x00020bb7, 0x001b8b9b, 0x00eb9b93, 0x0000c2b7,
    0xff82829b, 0x008282b3, 0x0002b303, 0x3e830313, 0x000042b7, 0x008282b3, 0x0062b023, 0x08000293,
    0x3042a073, 0x000022b7, 0x3002a073, 0x30046073, 0x00300293, 0x065aa823, 0x00100293, 0x025aa223,
    0x025aa023, 0x020aa223, 0x020aa023, 0x00b00293, 0x065aa823, 0x020aa823, 0x00800293, 0x025aac23,
    0x097aa023, 0x080aa223, 0x100b8293, 0x085aa823, 0x080aaa23, 0x200b8293, 0x0a5aa023, 0x0a0aa223,
    0x00100293, 0x045aa223, 0x00f00293, 0x065aa823, 0x400b8293, 0x005bb023, 0x01000313, 0x006ba423,
    0x00100313, 0x006b9623, 0x006b9723, 0x012bb823, 0x20000313, 0x006bac23, 0x00200313, 0x006b9f23,
    0x410b8293, 0x025bb023, 0x00100313, 0x026ba423, 0x00200313, 0x026b9623, 0x00198993, 0x00399293,
    0x00004337, 0xfff3031b, 0x0062f2b3, 0x012282b3, 0x0132b023, 0xd229f0d3, 0x02117153, 0x7ff9f313,
    0x00031463, 0x10500073, 0x3ff9f313, 0x20000e13, 0x05c31c63, 0x202bd303, 0x05631863, 0x001b7313,
    0x406ba023, 0x400ba223, 0x03fb7e13, 0x41cbb423, 0x00100e13, 0x406e0e33, 0x001e1e13, 0x001e6e13,
    0x01cb9e23, 0x007b7e13, 0x001e1e13, 0x017e0e33, 0x100e1223, 0x001b0b13, 0x0ff0000f, 0x116b9123,
    0x0ff0000f, 0x040aa823, 0x100933af, 0xf6dff06f, 0x0000cf37, 0xff8f0f1b, 0x008f0f33, 0x000f3f83,
    0x2bcf8f93, 0x00004f37, 0x008f0f33, 0x01ff3023, 0x001a0a13, 0x007a7f93, 0x030f8f93, 0x01f48023,
    0x30200073,
];

/// The machine every snapshot here is of.
pub fn config() -> MachineConfig {
    MachineConfig {
        memory_size: 16 << 20,
        firmware: FIRMWARE.iter().flat_map(|w| w.to_le_bytes()).collect(),
        kernel: None,
        initrd: None,
        cmdline: String::new(),
        virtio: vec![VirtioConfig::Block {
            capacity_sectors: DISK_SECTORS,
            read_only: false,
            serial: "snapshot".into(),
        }],
    }
}

/// A deterministic environment for [`config`], its disk filled with a pattern
/// (so that reads bring non-zero data into RAM).
pub fn environment() -> VirtualEnvironment {
    let mut env = VirtualEnvironment::new();
    let disk = (0..DISK_SECTORS as usize * 512)
        .map(|i| (i % 251) as u8 + 1)
        .collect();
    env.backends = vec![VirtualBackend::Disk(disk)];
    env
}

/// `sections`, a snapshot without its checksum, with the header's length and
/// the checksum made to fit (as a snapshot writer would).
pub fn seal(sections: &[u8]) -> Vec<u8> {
    let mut out = sections.to_vec();
    let len = (out.len() + TRAILER_LEN) as u64;
    if let Some(field) = out.get_mut(10..HEADER_LEN) {
        field.copy_from_slice(&len.to_le_bytes());
    }
    let crc = ftvm_replay::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A whole snapshot, changed, with its length and checksum made right again.
pub fn reseal(snapshot: &[u8]) -> Vec<u8> {
    seal(&snapshot[..snapshot.len().saturating_sub(TRAILER_LEN)])
}

/// Restores `data`, as it is and resealed.
pub fn snapshot_restore(data: &[u8]) {
    restore(data);
    restore(&reseal(data));
}

fn restore(data: &[u8]) {
    let Ok(mut machine) = Machine::from_snapshot(config(), data) else {
        return;
    };
    assert!(
        machine.snapshot() == data,
        "an accepted snapshot is not the encoding of the machine it restored"
    );
    let _ = machine.step(&mut environment());
}
