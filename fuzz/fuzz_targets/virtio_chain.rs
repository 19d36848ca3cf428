//! cargo-fuzz target `virtio_chain`: the body is `chain_walker` in `fuzz/bodies/devices.rs`, which
//! the stable corpus tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/devices.rs"]
mod devices;

fuzz_target!(|data: &[u8]| devices::chain_walker(data));
