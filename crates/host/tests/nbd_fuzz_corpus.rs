//! The NBD fuzz targets on stable, deterministically: each target body (shared with the
//! cargo-fuzz targets in `fuzz/`, see `fuzz/README.md`) runs on the checked-in seed
//! corpus `fuzz/corpus/<target>/`, then on inputs from a seeded xorshift generator:
//! random bytes and random mutations of the seeds. A failing input is printed in hex
//! and saved under `CARGO_TARGET_TMPDIR` for `cargo fuzz run TARGET FILE`.
//!
//! `FUZZ_CORPUS_SCALE=N` multiplies the number of generated inputs.

#[path = "../../../fuzz/bodies/nbd.rs"]
mod nbd;

#[path = "../../../fuzz/bodies/corpus.rs"]
mod corpus;

use corpus::fuzz;

#[test]
fn test_fuzz_corpus_nbd_wire_parsers() {
    fuzz(
        "nbd_wire",
        0x243f_6a88_85a3_08d3,
        20_000,
        64,
        nbd::wire_parsers,
    );
}

#[test]
fn test_fuzz_corpus_nbd_handshake() {
    fuzz(
        "nbd_handshake",
        0x1319_8a2e_0370_7344,
        20_000,
        256,
        nbd::handshake,
    );
}
