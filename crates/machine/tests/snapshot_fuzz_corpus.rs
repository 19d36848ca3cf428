//! The `snapshot_restore` fuzz target on stable, deterministically: the body (shared
//! with the cargo-fuzz target in `fuzz/`, see `fuzz/README.md`) runs on the
//! checked-in seed corpus `fuzz/corpus/snapshot_restore/`, then on random bytes and
//! random mutations of the seeds from a seeded generator. A failing input is printed
//! in hex and saved under `CARGO_TARGET_TMPDIR`.
//!
//! `FUZZ_CORPUS_SCALE=N` multiplies the number of generated inputs. The seeds are
//! written by the ignored test `write_snapshot_seeds` (run it after changing the
//! snapshot format or the machine of the body):
//! `cargo test -p ftvm-machine --test snapshot_fuzz_corpus -- --ignored`.

#[path = "../../../fuzz/bodies/machine.rs"]
mod machine;

#[path = "../../../fuzz/bodies/corpus.rs"]
mod corpus;

use ftvm_machine::snapshot::TRAILER_LEN;
use ftvm_machine::{Machine, Step};
use std::path::PathBuf;

fn seed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/snapshot_restore")
}

/// The snapshot seeds taken of real machines.
const REAL_SEEDS: [&str; 2] = ["power-on", "disk-request-in-flight"];

#[test]
fn test_fuzz_corpus_snapshot_restore() {
    corpus::fuzz(
        "snapshot_restore",
        0x5be0_cd19_137e_2179,
        1_000,
        64 << 10,
        machine::snapshot_restore,
    );
}

#[test]
fn test_checked_in_real_snapshot_seeds_still_restore() {
    let refused: Vec<(&str, String)> = REAL_SEEDS
        .iter()
        .filter_map(|name| {
            let bytes = std::fs::read(seed_dir().join(name)).expect("seed file");
            Machine::from_snapshot(machine::config(), &bytes)
                .err()
                .map(|e| (*name, e.to_string()))
        })
        .collect();

    assert_eq!(
        refused,
        Vec::new(),
        "write the seeds again: cargo test -p ftvm-machine --test snapshot_fuzz_corpus -- --ignored"
    );
}

#[test]
#[ignore = "writes fuzz/corpus/snapshot_restore/; run after changing the snapshot format"]
fn write_snapshot_seeds() {
    let mut env = machine::environment();
    let mut vm = Machine::new(machine::config(), &mut env).expect("the machine builds");
    let power_on = vm.snapshot();
    for _ in 0..4 {
        assert_eq!(vm.step(&mut env).expect("step"), Step::Running);
    }
    let running = vm.snapshot();
    let damaged = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = power_on.clone();
        edit(&mut bytes);
        bytes
    };
    // HART contents start after the header (18) and the CONF section.
    let conf_len = u64::from_le_bytes(power_on[22..30].try_into().expect("8 bytes")) as usize;
    let hart = 18 + 12 + conf_len + 12;
    let seeds = [
        ("power-on", power_on.clone()),
        ("disk-request-in-flight", running),
        (
            "bad-checksum",
            damaged(&|b| {
                let last = b.len() - 1;
                b[last] ^= 0xff;
            }),
        ),
        (
            "bad-privilege",
            machine::reseal(&damaged(&|b| b[hart + 522] = 2)),
        ),
        (
            "truncated-in-ram",
            machine::seal(&power_on[..power_on.len() - TRAILER_LEN - 1000]),
        ),
    ];
    std::fs::create_dir_all(seed_dir()).expect("corpus directory");
    for (name, bytes) in seeds {
        std::fs::write(seed_dir().join(name), bytes).expect("write a seed");
    }
}
