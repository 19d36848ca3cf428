//! Straight runs of integer register operations compiled to host code.
//!
//! The interpreter pays one dispatch per instruction; in the kernel's
//! big-number and hash loops (module signatures, crypto self-tests) most
//! instructions are register-to-register ALU operations between a few loads
//! and stores. When the decoder meets [`MIN_RUN`] or more such instructions in
//! a row within a page, it compiles them into one x86-64 function that works
//! on the hart's register file in memory, and the run becomes one slot
//! (`Op::Native`): one dispatch and one call for the whole run.
//!
//! Only operations that can neither trap nor touch memory nor read the pc
//! are compiled ([`compilable`]), so a run always retires whole: the icount,
//! the pc after it and the register file are exactly what the interpreter
//! would leave. A run whose instructions do not all fit in the remaining
//! budget is interpreted instead. The generated code reads and writes only
//! `x[0..32]` through the pointer it is given and uses only caller-saved host
//! registers (rax, rcx, rdx).
//!
//! The code lives in one executable mapping per code cache, filled in order;
//! when it is full every compiled slot is forgotten (they are decoded again
//! when next executed) and the mapping is reused. Compiled code is derived
//! state, like the decoded slots: it is in no snapshot and changes nothing a
//! guest can observe. On hosts other than x86-64 Linux, or if the mapping
//! cannot be made, nothing is compiled.

use crate::decode::{Op, Slot};

/// The shortest run worth a slot of its own: a run costs one dispatch and
/// one indirect call.
pub(crate) const MIN_RUN: usize = 3;
/// The longest run compiled into one function.
pub(crate) const MAX_RUN: usize = 48;
/// Bytes of executable memory per code cache.
const ARENA_BYTES: usize = 16 << 20;
/// Room one instruction's code may take at most: a register shift or a
/// compare (two loads, the operation, a sign extension or setcc, a store,
/// each with a 32-bit displacement) is 27 bytes.
const MAX_INST_BYTES: usize = 32;

/// Whether `op` can be part of a compiled run.
pub(crate) fn compilable(op: Op) -> bool {
    matches!(
        op,
        Op::Nop
            | Op::Lui
            | Op::Addi
            | Op::Slti
            | Op::Sltiu
            | Op::Xori
            | Op::Ori
            | Op::Andi
            | Op::Slli
            | Op::Srli
            | Op::Srai
            | Op::Addiw
            | Op::Slliw
            | Op::Srliw
            | Op::Sraiw
            | Op::Add
            | Op::Sub
            | Op::Sll
            | Op::Slt
            | Op::Sltu
            | Op::Xor
            | Op::Srl
            | Op::Sra
            | Op::Or
            | Op::And
            | Op::Mul
            | Op::Mulh
            | Op::Mulhu
            | Op::Addw
            | Op::Subw
            | Op::Sllw
            | Op::Srlw
            | Op::Sraw
            | Op::Mulw
    )
}

/// Host register numbers used by the generated code.
const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;
/// REX prefix selecting 64-bit operands.
const W: u8 = 0x48;

/// Emits x86-64 code for a run; `rax` caches one guest register.
struct Emitter {
    code: Vec<u8>,
    /// The guest register whose current value is also in rax.
    in_rax: Option<usize>,
}

impl Emitter {
    /// `opcode` with a ModRM operand `[rdi + 8 * r]` (guest register `r`)
    /// and `reg` in the ModRM reg field.
    fn mem(&mut self, opcode: &[u8], reg: u8, r: usize) {
        self.code.extend_from_slice(opcode);
        let disp = 8 * (r & 31);
        if disp < 0x80 {
            self.code.push(0x40 | reg << 3 | 7);
            self.code.push(disp as u8);
        } else {
            self.code.push(0x80 | reg << 3 | 7);
            self.code.extend_from_slice(&(disp as u32).to_le_bytes());
        }
    }

    fn imm32(&mut self, opcode: &[u8], imm: i32) {
        self.code.extend_from_slice(opcode);
        self.code.extend_from_slice(&imm.to_le_bytes());
    }

    /// rax = x[r].
    fn load_rax(&mut self, r: usize) {
        if self.in_rax != Some(r) {
            self.mem(&[W, 0x8b], RAX, r);
            self.in_rax = Some(r);
        }
    }

    /// x[rd] = rax.
    fn store_rax(&mut self, rd: usize) {
        self.mem(&[W, 0x89], RAX, rd);
        self.in_rax = Some(rd);
    }

    /// rax = sext(eax).
    fn sext_eax(&mut self) {
        self.code.extend_from_slice(&[W, 0x63, 0xc0]);
    }

    /// rax = (rax OP x[rs2]) for a two-operand op with a memory source
    /// (`opcode` with its REX.W prefix).
    fn op64_mem(&mut self, opcode: &[u8], rs1: usize, rs2: usize, rd: usize) {
        self.load_rax(rs1);
        self.mem(opcode, RAX, rs2);
        self.store_rax(rd);
    }

    /// The 32-bit form of [`Emitter::op64_mem`], sign-extended.
    fn op32_mem(&mut self, opcode: &[u8], rs1: usize, rs2: usize, rd: usize) {
        self.load_rax(rs1);
        self.mem(opcode, RAX, rs2);
        self.sext_eax();
        self.store_rax(rd);
    }

    /// rax = rax OP imm32 (`opcode` is the rax-immediate form).
    fn op64_imm(&mut self, opcode: u8, rs1: usize, imm: i32, rd: usize) {
        self.load_rax(rs1);
        self.imm32(&[W, opcode], imm);
        self.store_rax(rd);
    }

    /// Shift rax by an immediate: `ext` is the ModRM reg field (4 shl, 5
    /// shr, 7 sar); 32-bit shifts are sign-extended.
    fn shift_imm(&mut self, wide: bool, ext: u8, rs1: usize, sh: u8, rd: usize) {
        self.load_rax(rs1);
        if wide {
            self.code.extend_from_slice(&[W, 0xc1, 0xc0 | ext << 3, sh]);
        } else {
            self.code.extend_from_slice(&[0xc1, 0xc0 | ext << 3, sh]);
            self.sext_eax();
        }
        self.store_rax(rd);
    }

    /// Shift rax by x[rs2] (the host masks the count as RISC-V does: 6
    /// bits for 64-bit shifts, 5 for 32-bit ones).
    fn shift_reg(&mut self, wide: bool, ext: u8, rs1: usize, rs2: usize, rd: usize) {
        self.mem(&[W, 0x8b], RCX, rs2);
        self.load_rax(rs1);
        if wide {
            self.code.extend_from_slice(&[W, 0xd3, 0xc0 | ext << 3]);
        } else {
            self.code.extend_from_slice(&[0xd3, 0xc0 | ext << 3]);
            self.sext_eax();
        }
        self.store_rax(rd);
    }

    /// rax = (rax <cc> operand) as 0 or 1; `setcc` is the second opcode byte
    /// (0x9c setl, 0x92 setb). The compare is emitted by `cmp`.
    fn set_cc(&mut self, setcc: u8, rd: usize) {
        // setcc al; movzx eax, al
        self.code
            .extend_from_slice(&[0x0f, setcc, 0xc0, 0x0f, 0xb6, 0xc0]);
        self.store_rax(rd);
    }

    /// rdx:rax = rax * x[rs2] (`ext` 4 unsigned, 5 signed); x[rd] = rdx.
    fn mul_high(&mut self, ext: u8, rs1: usize, rs2: usize, rd: usize) {
        self.load_rax(rs1);
        self.mem(&[W, 0xf7], ext, rs2);
        self.mem(&[W, 0x89], RDX, rd);
        self.in_rax = None;
    }

    /// Emits one instruction; `false` if it cannot be compiled.
    fn inst(&mut self, s: Slot) -> bool {
        let (rd, rs1) = (s.rd(), s.rs1());
        let imm = s.imm;
        let sh = (imm & 63) as u8;
        let sh32 = (imm & 31) as u8;
        match s.op {
            Op::Nop => {}
            Op::Lui => {
                // mov rax, simm32
                self.imm32(&[W, 0xc7, 0xc0], imm);
                self.store_rax(rd);
            }
            Op::Addi => {
                self.load_rax(rs1);
                if imm != 0 {
                    self.imm32(&[W, 0x05], imm);
                }
                self.store_rax(rd);
            }
            Op::Xori => self.op64_imm(0x35, rs1, imm, rd),
            Op::Ori => self.op64_imm(0x0d, rs1, imm, rd),
            Op::Andi => self.op64_imm(0x25, rs1, imm, rd),
            Op::Slti | Op::Sltiu => {
                self.load_rax(rs1);
                self.imm32(&[W, 0x3d], imm);
                self.set_cc(if s.op == Op::Slti { 0x9c } else { 0x92 }, rd);
            }
            Op::Slli => self.shift_imm(true, 4, rs1, sh, rd),
            Op::Srli => self.shift_imm(true, 5, rs1, sh, rd),
            Op::Srai => self.shift_imm(true, 7, rs1, sh, rd),
            Op::Addiw => {
                self.load_rax(rs1);
                self.imm32(&[0x05], imm);
                self.sext_eax();
                self.store_rax(rd);
            }
            Op::Slliw => self.shift_imm(false, 4, rs1, sh32, rd),
            Op::Srliw => self.shift_imm(false, 5, rs1, sh32, rd),
            Op::Sraiw => self.shift_imm(false, 7, rs1, sh32, rd),
            Op::Add => self.op64_mem(&[W, 0x03], rs1, s.rs2(), rd),
            Op::Sub => self.op64_mem(&[W, 0x2b], rs1, s.rs2(), rd),
            Op::Xor => self.op64_mem(&[W, 0x33], rs1, s.rs2(), rd),
            Op::Or => self.op64_mem(&[W, 0x0b], rs1, s.rs2(), rd),
            Op::And => self.op64_mem(&[W, 0x23], rs1, s.rs2(), rd),
            Op::Mul => self.op64_mem(&[W, 0x0f, 0xaf], rs1, s.rs2(), rd),
            Op::Slt | Op::Sltu => {
                self.load_rax(rs1);
                self.mem(&[W, 0x3b], RAX, s.rs2());
                self.set_cc(if s.op == Op::Slt { 0x9c } else { 0x92 }, rd);
            }
            Op::Sll => self.shift_reg(true, 4, rs1, s.rs2(), rd),
            Op::Srl => self.shift_reg(true, 5, rs1, s.rs2(), rd),
            Op::Sra => self.shift_reg(true, 7, rs1, s.rs2(), rd),
            Op::Mulh => self.mul_high(5, rs1, s.rs2(), rd),
            Op::Mulhu => self.mul_high(4, rs1, s.rs2(), rd),
            Op::Addw => self.op32_mem(&[0x03], rs1, s.rs2(), rd),
            Op::Subw => self.op32_mem(&[0x2b], rs1, s.rs2(), rd),
            Op::Mulw => self.op32_mem(&[0x0f, 0xaf], rs1, s.rs2(), rd),
            Op::Sllw => self.shift_reg(false, 4, rs1, s.rs2(), rd),
            Op::Srlw => self.shift_reg(false, 5, rs1, s.rs2(), rd),
            Op::Sraw => self.shift_reg(false, 7, rs1, s.rs2(), rd),
            _ => return false,
        }
        true
    }
}

/// The host code of a run of compilable slots, ending in `ret`; `None` if a
/// slot is not compilable.
pub(crate) fn emit(run: &[Slot]) -> Option<Vec<u8>> {
    let mut e = Emitter {
        code: Vec::with_capacity(run.len() * 16 + 1),
        in_rax: None,
    };
    for &s in run {
        if !e.inst(s) {
            return None;
        }
    }
    e.code.push(0xc3);
    Some(e.code)
}

/// The executable memory of one code cache.
#[derive(Default)]
pub(crate) struct Arena {
    map: Option<Mapping>,
    /// Bytes in use from the start of the mapping.
    used: usize,
    /// The mapping could not be made: compile nothing.
    failed: bool,
}

/// Whether generated code can run on this host.
const SUPPORTED: bool = cfg!(all(target_arch = "x86_64", target_os = "linux"));

impl Arena {
    /// Copies `code` into executable memory and returns its offset; `None`
    /// when the arena is full (the caller resets it and tries again) or
    /// unavailable.
    pub(crate) fn add(&mut self, code: &[u8]) -> Option<u32> {
        if !SUPPORTED || self.failed || code.len() > MAX_RUN * MAX_INST_BYTES + 1 {
            return None;
        }
        if self.map.is_none() {
            self.map = Mapping::new(ARENA_BYTES);
            if self.map.is_none() {
                self.failed = true;
                return None;
            }
        }
        let map = self.map.as_mut()?;
        let end = self.used.checked_add(code.len())?;
        let dst = map.bytes_mut().get_mut(self.used..end)?;
        dst.copy_from_slice(code);
        let off = u32::try_from(self.used).ok()?;
        // Keep functions 16-byte aligned.
        self.used = (end + 15) & !15;
        Some(off)
    }

    /// Whether the arena can take no more code (see [`Arena::reset`]).
    pub(crate) fn full(&self) -> bool {
        self.used + MAX_RUN * MAX_INST_BYTES + 1 > ARENA_BYTES
    }

    /// Forgets all code; the caller has dropped every slot that named it.
    pub(crate) fn reset(&mut self) {
        self.used = 0;
    }

    /// Runs the function at `off` on the register file `x`.
    #[inline(always)]
    pub(crate) fn run(&self, off: i32, x: &mut [u64; crate::decode::XREGS]) {
        if let Some(map) = &self.map {
            map.call(off as u32 as usize, x);
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use linux::Mapping;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
use other::Mapping;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod linux {
    /// An anonymous read-write-execute mapping.
    pub(crate) struct Mapping {
        base: *mut u8,
        len: usize,
    }

    // SAFETY: the mapping is owned by one code cache and only reached
    // through `&`/`&mut` of it; nothing else holds its address.
    unsafe impl Send for Mapping {}

    impl Mapping {
        pub(crate) fn new(len: usize) -> Option<Mapping> {
            // SAFETY: an anonymous private mapping at an address the kernel
            // chooses aliases no Rust object.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return None;
            }
            Some(Mapping {
                base: p.cast(),
                len,
            })
        }

        pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
            // SAFETY: `base..base+len` is mapped readable and writable for
            // the life of `self`, and `&mut self` makes this the only view.
            unsafe { std::slice::from_raw_parts_mut(self.base, self.len) }
        }

        /// Calls the function at byte `off`, which [`super::Arena::add`]
        /// wrote from [`super::emit`]: it touches only `x[0..32]` and rax,
        /// rcx, rdx, and returns.
        #[inline(always)]
        pub(crate) fn call(&self, off: usize, x: &mut [u64; crate::decode::XREGS]) {
            if off >= self.len {
                return;
            }
            // SAFETY: `off` is the start of a complete function emitted by
            // `emit` (the slot that names it is dropped before its bytes are
            // reused); it follows the System V ABI, takes one pointer and
            // accesses memory only at offsets 0..256 from it, inside `x`.
            unsafe {
                let f: extern "sysv64" fn(*mut u64) = std::mem::transmute(self.base.add(off));
                f(x.as_mut_ptr());
            }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `base..base+len` was mapped by `new` and is unmapped
            // once; no code in it runs any more.
            unsafe {
                libc::munmap(self.base.cast(), self.len);
            }
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod other {
    /// No executable memory on this host: nothing is compiled.
    pub(crate) struct Mapping;

    impl Mapping {
        pub(crate) fn new(_len: usize) -> Option<Mapping> {
            None
        }
        pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
            &mut []
        }
        pub(crate) fn call(&self, _off: usize, _x: &mut [u64; crate::decode::XREGS]) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;

    fn r(op: u32, f3: u32, f7: u32) -> u32 {
        (f7 << 25) | (29 << 20) | (30 << 15) | (f3 << 12) | (31 << 7) | op
    }

    fn i(op: u32, f3: u32, imm: u32) -> u32 {
        (imm << 20) | (30 << 15) | (f3 << 12) | (31 << 7) | op
    }

    #[test]
    fn test_every_compiled_instruction_fits_its_reserved_room() {
        // Registers 29..31: every operand takes a 32-bit displacement.
        let mut insts = vec![0xfff_fff_u32 << 12 | 31 << 7 | 0x37];
        for f3 in [0, 2, 3, 4, 6, 7] {
            insts.push(i(0x13, f3, 0x800));
        }
        insts.extend([i(0x13, 1, 63), i(0x13, 5, 63), i(0x13, 5, 0x400 | 63)]);
        insts.extend([i(0x1b, 0, 0x800), i(0x1b, 1, 31), i(0x1b, 5, 31)]);
        insts.push(i(0x1b, 5, 0x400 | 31));
        for f3 in 0..8 {
            insts.push(r(0x33, f3, 0));
        }
        insts.extend([r(0x33, 0, 0x20), r(0x33, 5, 0x20)]);
        insts.extend([r(0x33, 0, 1), r(0x33, 1, 1), r(0x33, 3, 1)]);
        for (f3, f7) in [(0, 0), (0, 0x20), (1, 0), (5, 0), (5, 0x20), (0, 1)] {
            insts.push(r(0x3b, f3, f7));
        }
        for inst in insts {
            let s = decode(inst, false);
            assert!(compilable(s.op), "{inst:08x} decodes to {:?}", s.op);
            let code = emit(&[s]).expect("compiles");
            // Without the final `ret`.
            assert!(
                code.len() - 1 <= MAX_INST_BYTES,
                "{inst:08x} ({:?}) takes {} bytes",
                s.op,
                code.len() - 1
            );
        }
    }
}
