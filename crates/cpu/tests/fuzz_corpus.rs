//! The hart's fuzz target on stable, deterministically: the body shared with
//! the cargo-fuzz target `hart_program` (see `fuzz/README.md`) runs on the
//! checked-in seed corpus `fuzz/corpus/hart_program/`, then on inputs from a
//! seeded xorshift generator. A failing input is printed in hex and saved
//! under `CARGO_TARGET_TMPDIR`.
//!
//! `FUZZ_CORPUS_SCALE=N` multiplies the number of generated inputs.

#[path = "../../../fuzz/bodies/cpu.rs"]
mod cpu;

#[path = "../../../fuzz/bodies/corpus.rs"]
mod corpus;

use corpus::fuzz;

#[test]
fn test_fuzz_corpus_hart_program_whole_budgets_agree_with_single_steps() {
    fuzz(
        "hart_program",
        0x6a09_e667_f3bc_c908,
        1_500,
        1024,
        cpu::differential,
    );
}
