//! The virtio fuzz targets on stable, deterministically: each target body (shared with the
//! cargo-fuzz targets in `fuzz/`, see `fuzz/README.md`) runs on the checked-in seed
//! corpus `fuzz/corpus/<target>/`, then on inputs from a seeded xorshift generator:
//! random bytes and random mutations of the seeds. A failing input is printed in hex
//! and saved under `CARGO_TARGET_TMPDIR` for `cargo fuzz run TARGET FILE`.
//!
//! `FUZZ_CORPUS_SCALE=N` multiplies the number of generated inputs.

#[path = "../../../fuzz/bodies/devices.rs"]
mod devices;

#[path = "../../../fuzz/bodies/corpus.rs"]
mod corpus;

use corpus::fuzz;

#[test]
fn test_fuzz_corpus_virtio_chain_walker() {
    fuzz(
        "virtio_chain",
        0x9e37_79b9_7f4a_7c15,
        20_000,
        512,
        devices::chain_walker,
    );
}

#[test]
fn test_fuzz_corpus_virtio_mmio_transport() {
    fuzz(
        "virtio_mmio",
        0xd1b5_4a32_d192_ed03,
        10_000,
        768,
        devices::mmio_transport,
    );
}
