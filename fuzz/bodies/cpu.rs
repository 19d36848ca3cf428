//! Fuzz body for the hart: a program built from the input runs twice, once
//! with whole budgets (decoded slots, fused pairs, compiled runs of register
//! operations) and once one instruction per `Hart::run` call (every
//! instruction the general way); both must end in the same state.
//! Shared by the cargo-fuzz target `hart_program` and
//! crates/cpu/tests/fuzz_corpus.rs.

use ftvm_cpu::{Bus, Exit, Hart, Memory};

const RAM: u64 = 0x8000_0000;
const RAM_SIZE: u64 = 1 << 20;
/// Where the program's loads and stores go (x8 points there).
const DATA: u64 = RAM + 0x8_0000;
/// Instructions retired by each run.
const BUDGET: u64 = 3000;

/// No devices: every MMIO access faults.
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

fn r(op: u32, f3: u32, f7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

fn i(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

fn s(f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5 & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23
}

fn b(f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 12 & 1) << 31)
        | ((imm >> 5 & 0x3f) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (f3 << 12)
        | ((imm >> 1 & 0xf) << 8)
        | ((imm >> 11 & 1) << 7)
        | 0x63
}

/// Reads the input a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&v, rest)) => {
                self.0 = rest;
                v
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    /// x0..x7, which the register operations use.
    fn reg(&mut self) -> u32 {
        u32::from(self.byte() & 7)
    }
}

/// One instruction from the input: mostly register operations (what is
/// compiled), with loads and stores at x8, stores into the program (x9),
/// short branches and raw words (anything at all).
fn instruction(inp: &mut Input, at: usize) -> u32 {
    let kind = inp.byte();
    let (rd, rs1, rs2) = (inp.reg(), inp.reg(), inp.reg());
    let imm = i32::from(inp.byte() as i8) * 16 + i32::from(inp.byte() & 15);
    let sh = imm & 63;
    match kind % 40 {
        0 => (u32::from(inp.byte()) << 24 | u32::from(inp.byte()) << 12) | rd << 7 | 0x37,
        1 => i(0x13, 0, rd, rs1, imm),
        2 => i(0x13, 2, rd, rs1, imm),
        3 => i(0x13, 3, rd, rs1, imm),
        4 => i(0x13, 4, rd, rs1, imm),
        5 => i(0x13, 6, rd, rs1, imm),
        6 => i(0x13, 7, rd, rs1, imm),
        7 => i(0x13, 1, rd, rs1, sh),
        8 => i(0x13, 5, rd, rs1, sh),
        9 => i(0x13, 5, rd, rs1, sh | 0x400),
        10 => i(0x1b, 0, rd, rs1, imm),
        11 => i(0x1b, 1, rd, rs1, sh & 31),
        12 => i(0x1b, 5, rd, rs1, sh & 31),
        13 => i(0x1b, 5, rd, rs1, (sh & 31) | 0x400),
        14..=23 => {
            const RR: [(u32, u32); 10] = [
                (0, 0),
                (0x20, 0),
                (0, 1),
                (0, 2),
                (0, 3),
                (0, 4),
                (0, 5),
                (0x20, 5),
                (0, 6),
                (0, 7),
            ];
            let (f7, f3) = RR[usize::from(kind % 40 - 14)];
            r(0x33, f3, f7, rd, rs1, rs2)
        }
        24..=27 => r(0x33, u32::from(kind % 40 - 24), 1, rd, rs1, rs2),
        28 => {
            const RW: [(u32, u32); 6] = [(0, 0), (0x20, 0), (0, 1), (0, 5), (0x20, 5), (1, 0)];
            let (f7, f3) = RW[usize::from(inp.byte()) % RW.len()];
            r(0x3b, f3, f7, rd, rs1, rs2)
        }
        29 | 30 => {
            // A load from the data area.
            let f3 = u32::from(inp.byte()) % 7;
            i(0x03, f3, rd, 8, imm & 0x3f8)
        }
        31 => s(u32::from(inp.byte()) & 3, 8, rs2, imm & 0x3f8),
        32 => {
            // A store of a register into the program itself (x9 is its start).
            let off = (usize::from(inp.byte()) * 4).min(0xffc) as i32;
            s(2, 9, rs2, off)
        }
        33 | 34 => {
            // A short branch, forward or back, inside the program.
            let f3 = [0, 1, 4, 5, 6, 7][usize::from(inp.byte()) % 6];
            // Never before the program's start.
            let delta = (i32::from(inp.byte() as i8) % 16 * 4).max(-4 * at as i32);
            b(f3, rs1, rs2, delta)
        }
        35 => inp.u32(),
        36 => {
            // A compressed pair: c.addi, c.add, c.slli, c.mv on x8..x15 or
            // any register (the input picks the bits).
            let lo = u32::from(inp.byte()) | u32::from(inp.byte()) << 8;
            let hi = u32::from(inp.byte()) | u32::from(inp.byte()) << 8;
            (hi & !3 | 1) << 16 | (lo & !3 | 1)
        }
        _ => r(0x33, 0, 0, rd, rs1, rs2),
    }
}

/// A hart at the start of `program`, with its registers from the input.
fn hart(program: &[u8], regs: &[u64; 8]) -> Hart {
    let mut mem = Memory::new(RAM, RAM_SIZE);
    mem.write_bytes(RAM, program).expect("program fits in RAM");
    let mut h = Hart::new(mem);
    h.set_pc(RAM);
    for (k, &v) in regs.iter().enumerate().skip(1) {
        h.set_x(k, v);
    }
    h.set_x(8, DATA);
    h.set_x(9, RAM);
    // Traps go back to the program's start.
    let mut state = h.state();
    state.csr.mtvec = RAM;
    h.restore(state).expect("a valid state");
    h
}

/// Runs `h` until `BUDGET` instructions retired, `step` at a time (traps
/// and WFI can end a call early; a bounded number of calls).
fn run_all(h: &mut Hart, step: impl Fn(u64) -> u64) {
    for _ in 0..4 * BUDGET {
        let left = BUDGET - h.icount();
        if left == 0 {
            return;
        }
        if h.run(&mut NoDevices, step(left)) == Exit::Wfi {
            return;
        }
    }
}

/// The state two runs are compared by.
fn observe(h: &Hart) -> (Vec<u64>, u64, u64, Vec<u8>) {
    let regs = (0..32).map(|k| h.x(k)).collect();
    let mut data = vec![0; 0x400];
    h.memory().read_bytes(DATA, &mut data).expect("data area");
    let mut code = vec![0; 0x1000];
    h.memory().read_bytes(RAM, &mut code).expect("program");
    data.extend_from_slice(&code);
    (regs, h.pc(), h.icount(), data)
}

/// The body: whole budgets against single steps.
pub fn differential(data: &[u8]) {
    let mut inp = Input(data);
    let mut regs = [0u64; 8];
    for v in regs.iter_mut() {
        *v = inp.u64();
    }
    let cut = u64::from(inp.byte());
    let mut program = Vec::new();
    let mut at = 0;
    while !inp.0.is_empty() && at < 1000 {
        program.extend_from_slice(&instruction(&mut inp, at).to_le_bytes());
        at += 1;
    }
    // Back to the start: the program loops until the budget is used.
    let back = -(4 * at as i32);
    program.extend_from_slice(&b(0, 0, 0, back.max(-4096)).to_le_bytes());

    let mut whole = hart(&program, &regs);
    // Whole budgets, or pieces of `cut` instructions when it is small.
    run_all(&mut whole, |left| {
        if cut == 0 || cut > 64 {
            left
        } else {
            left.min(cut)
        }
    });
    let mut single = hart(&program, &regs);
    run_all(&mut single, |_| 1);
    let (w, s) = (observe(&whole), observe(&single));
    assert_eq!(w.0, s.0, "registers differ");
    assert_eq!((w.1, w.2), (s.1, s.2), "pc, icount differ");
    assert!(w.3 == s.3, "memory differs");
}
