//! Measures interpreter speed on a tight integer loop (host-side benchmark,
//! not part of the emulator: it is the only place in this crate that reads a
//! host clock).
//!
//! `cargo run --release -p ftvm-cpu --example mips`

use ftvm_cpu::{Bus, Exit, Hart, Memory};

struct NoDevices;

impl Bus for NoDevices {
    fn read(&mut self, _addr: u64, _size: u8) -> Option<u64> {
        None
    }
    fn write(&mut self, _addr: u64, _size: u8, _value: u64) -> bool {
        false
    }
    fn irq_lines(&mut self) -> u64 {
        0
    }
    fn stop_requested(&mut self) -> bool {
        false
    }
}

fn i(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}
fn r(f7: u32, f3: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33
}
fn sd(rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5 & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (3 << 12) | ((imm & 31) << 7) | 0x23
}
fn bne_back(rs1: u32, rs2: u32, bytes: u32) -> u32 {
    let imm = (bytes as i32).wrapping_neg() as u32;
    ((imm >> 12 & 1) << 31)
        | ((imm >> 5 & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (1 << 12)
        | ((imm >> 1 & 0xf) << 8)
        | ((imm >> 11 & 1) << 7)
        | 0x63
}

#[allow(clippy::disallowed_methods)]
fn main() {
    let base = 0x8000_0000;
    // x1 = 0 counter, x2 = stack pointer; loop body of 10 instructions
    // (mix of ALU, load, store, compressed, branch).
    let mut prog: Vec<u8> = Vec::new();
    for w in [
        i(0x13, 0, 2, 0, 0x400), // addi x2, x0, 0x400
        i(0x13, 1, 2, 2, 20),    // slli x2, x2, 20  -> 0x4000_0000
        r(0, 0, 2, 2, 2),        // add x2, x2, x2   -> 0x8000_0000
        i(0x13, 0, 2, 2, 0x700), // addi x2, x2, 0x700
    ] {
        prog.extend(w.to_le_bytes());
    }
    let body: Vec<u32> = vec![
        i(0x13, 0, 1, 1, 1), // addi x1, x1, 1
        r(0, 4, 3, 3, 1),    // xor x3, x3, x1
        i(0x13, 1, 4, 3, 3), // slli x4, x3, 3
        r(0, 0, 5, 5, 4),    // add x5, x5, x4
        sd(2, 5, 8),         // sd x5, 8(x2)
        i(0x03, 3, 6, 2, 8), // ld x6, 8(x2)
        r(0x20, 0, 7, 6, 3), // sub x7, x6, x3
        r(0, 7, 8, 7, 1),    // and x8, x7, x1
    ];
    for w in &body {
        prog.extend(w.to_le_bytes());
    }
    prog.extend(0x0485u16.to_le_bytes()); // c.addi x9, 1
    prog.extend(0x0001u16.to_le_bytes()); // c.nop
    prog.extend(bne_back(1, 0, 4 * body.len() as u32 + 4).to_le_bytes()); // bne x1, x0, body
    let mut mem = Memory::new(base, 1 << 20);
    mem.write_bytes(base, &prog).expect("program fits");
    let mut hart = Hart::new(mem);
    hart.set_pc(base);
    let mut bus = NoDevices;
    let n = 500_000_000u64;
    let start = std::time::Instant::now();
    let exit = hart.run(&mut bus, n);
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(exit, Exit::BudgetExhausted);
    println!(
        "{} instructions in {:.3} s: {:.0} MIPS (x1 = {})",
        hart.icount(),
        secs,
        hart.icount() as f64 / secs / 1e6,
        hart.x(1)
    );
}
