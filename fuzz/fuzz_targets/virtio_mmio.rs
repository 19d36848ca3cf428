//! cargo-fuzz target `virtio_mmio`: the body is `mmio_transport` in `fuzz/bodies/devices.rs`, which
//! the stable corpus tests run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../bodies/devices.rs"]
mod devices;

fuzz_target!(|data: &[u8]| devices::mmio_transport(data));
