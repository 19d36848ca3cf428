//! cargo-fuzz target `protocol_message`: the FT protocol's message decoder on
//! arbitrary bytes, then the decoded message fed to a node of each role (see
//! `fuzz/bodies/protocol.rs`). The stable counterpart is
//! `crates/protocol/tests/fuzz_corpus.rs`.
#![no_main]

#[path = "../bodies/protocol.rs"]
mod protocol;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| protocol::message(data));
