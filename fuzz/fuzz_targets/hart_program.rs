//! cargo-fuzz target `hart_program`: a program built from the input runs with
//! whole budgets and one instruction at a time, and both must agree (see
//! `fuzz/bodies/cpu.rs`). The stable counterpart is
//! `crates/cpu/tests/fuzz_corpus.rs`.
#![no_main]

#[path = "../bodies/cpu.rs"]
mod cpu;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cpu::differential(data));
