//! The `protocol_message` fuzz target on stable, deterministically: the body
//! (shared with the cargo-fuzz target in `fuzz/`) runs on the checked-in seed
//! corpus `fuzz/corpus/protocol_message/`, then on random bytes and random
//! mutations of the seeds from a seeded generator. A failing input is printed
//! in hex and saved under `CARGO_TARGET_TMPDIR`.

#[path = "../../../fuzz/bodies/protocol.rs"]
mod protocol;

#[path = "../../../fuzz/bodies/corpus.rs"]
mod corpus;

#[test]
fn test_fuzz_corpus_protocol_message() {
    corpus::fuzz(
        "protocol_message",
        0xa409_3822_299f_31d0,
        50_000,
        80,
        protocol::message,
    );
}
