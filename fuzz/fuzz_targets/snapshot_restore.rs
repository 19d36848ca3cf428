//! cargo-fuzz target `snapshot_restore`: `Machine::from_snapshot` on arbitrary bytes,
//! as they are and with their length and checksum made right; an accepted snapshot
//! must be the encoding of the machine it restored, which must run (see
//! `fuzz/bodies/machine.rs`). The stable counterpart is
//! `crates/machine/tests/snapshot_fuzz_corpus.rs`.
#![no_main]

#[path = "../bodies/machine.rs"]
mod machine;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| machine::snapshot_restore(data));
