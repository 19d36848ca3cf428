//! cargo-fuzz target `nbd_wire`: the body is `wire_parsers` in `fuzz/bodies/nbd.rs`, which
//! the stable corpus tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/nbd.rs"]
mod nbd;

fuzz_target!(|data: &[u8]| nbd::wire_parsers(data));
