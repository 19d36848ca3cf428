//! Behaviour tests for the hart, with programs encoded by small helpers.

use crate::*;
use std::collections::BTreeMap;

const RAM: u64 = 0x8000_0000;

// ---- encoders (unprivileged spec chapter 2 formats) ----

fn r(op: u32, f3: u32, f7: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}
fn i(op: u32, f3: u32, rd: u32, rs1: u32, imm: i32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}
fn s(op: u32, f3: u32, rs1: u32, rs2: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 5 & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op
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
fn jal(rd: u32, imm: i32) -> u32 {
    let imm = imm as u32;
    ((imm >> 20 & 1) << 31)
        | ((imm >> 1 & 0x3ff) << 21)
        | ((imm >> 11 & 1) << 20)
        | (imm & 0xff000)
        | (rd << 7)
        | 0x6f
}
fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x13, 0, rd, rs1, imm)
}
fn addiw(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x1b, 0, rd, rs1, imm)
}
fn slli(rd: u32, rs1: u32, sh: i32) -> u32 {
    i(0x13, 1, rd, rs1, sh)
}
fn lui(rd: u32, imm20: u32) -> u32 {
    (imm20 << 12) | (rd << 7) | 0x37
}
fn add(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 0, 0, rd, rs1, rs2)
}
fn sub(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 0, 0x20, rd, rs1, rs2)
}
fn mulh(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 1, 1, rd, rs1, rs2)
}
fn div(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 4, 1, rd, rs1, rs2)
}
fn rem(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x33, 6, 1, rd, rs1, rs2)
}
fn divw(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x3b, 4, 1, rd, rs1, rs2)
}
fn ld(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x03, 3, rd, rs1, imm)
}
fn lw(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x03, 2, rd, rs1, imm)
}
fn lbu(rd: u32, rs1: u32, imm: i32) -> u32 {
    i(0x03, 4, rd, rs1, imm)
}
fn sd(rs1: u32, rs2: u32, imm: i32) -> u32 {
    s(0x23, 3, rs1, rs2, imm)
}
fn sw(rs1: u32, rs2: u32, imm: i32) -> u32 {
    s(0x23, 2, rs1, rs2, imm)
}
fn csrrw(rd: u32, csr: u32, rs1: u32) -> u32 {
    i(0x73, 1, rd, rs1, csr as i32)
}
fn csrrs(rd: u32, csr: u32, rs1: u32) -> u32 {
    i(0x73, 2, rd, rs1, csr as i32)
}
fn csrrc(rd: u32, csr: u32, rs1: u32) -> u32 {
    i(0x73, 3, rd, rs1, csr as i32)
}
fn amo(f5: u32, f3: u32, rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x2f, f3, f5 << 2, rd, rs1, rs2)
}
const ECALL: u32 = 0x73;
const MRET: u32 = 0x3020_0073;
const SRET: u32 = 0x1020_0073;
const WFI: u32 = 0x1050_0073;
const SFENCE_VMA: u32 = 0x1200_0073;

// ---- a test bus: a ROM at 0x1000, a device register page at 0x1000_0000 ----

#[derive(Default)]
struct TestBus {
    rom: Vec<u8>,
    writes: BTreeMap<u64, u64>,
    irq: u64,
    stop_on_write: bool,
    stop: bool,
}

impl Bus for TestBus {
    fn read(&mut self, addr: u64, size: u8) -> Option<u64> {
        if (0x1000..0x1000 + self.rom.len() as u64).contains(&addr) {
            let o = (addr - 0x1000) as usize;
            let mut v = 0u64;
            for k in 0..size as usize {
                v |= u64::from(*self.rom.get(o + k)?) << (8 * k);
            }
            return Some(v);
        }
        (addr >> 12 == 0x10000).then(|| self.writes.get(&addr).copied().unwrap_or(0x5a))
    }
    fn write(&mut self, addr: u64, _size: u8, value: u64) -> bool {
        if addr >> 12 != 0x10000 {
            return false;
        }
        self.writes.insert(addr, value);
        self.stop |= self.stop_on_write;
        true
    }
    fn irq_lines(&mut self) -> u64 {
        self.irq
    }
    fn stop_requested(&mut self) -> bool {
        self.stop
    }
}

fn words(prog: &[u32]) -> Vec<u8> {
    prog.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A hart in M-mode at RAM with `prog` loaded there; 4 MiB RAM.
fn hart(prog: &[u32]) -> Hart {
    let mut mem = Memory::new(RAM, 4 << 20);
    mem.write_bytes(RAM, &words(prog)).expect("in RAM");
    let mut h = Hart::new(mem);
    h.set_pc(RAM);
    h
}

fn run(h: &mut Hart, n: u64) -> Exit {
    h.run(&mut TestBus::default(), n)
}

fn poke(h: &mut Hart, addr: u64, data: &[u32]) {
    h.memory_mut()
        .write_bytes(addr, &words(data))
        .expect("in RAM");
}

fn peek64(h: &Hart, addr: u64) -> u64 {
    let mut b = [0; 8];
    h.memory().read_bytes(addr, &mut b).expect("in RAM");
    u64::from_le_bytes(b)
}

// ---- integer instructions ----

#[test]
fn test_addi_add_sub_and_x0_stays_zero() {
    let mut h = hart(&[
        addi(1, 0, 5),
        addi(2, 0, -7),
        add(3, 1, 2),
        sub(4, 1, 2),
        addi(0, 1, 1),
    ]);
    run(&mut h, 5);
    assert_eq!((h.x(3), h.x(4), h.x(0)), (-2i64 as u64, 12, 0));
    assert_eq!(h.icount(), 5);
    assert_eq!(h.pc(), RAM + 20);
}

#[test]
fn test_lui_sign_extends_and_addiw_wraps() {
    let mut h = hart(&[lui(1, 0x80000), addiw(2, 1, -1), slli(3, 2, 4)]);
    run(&mut h, 3);
    assert_eq!(h.x(1), 0xffff_ffff_8000_0000);
    assert_eq!(h.x(2), 0x7fff_ffff);
    assert_eq!(h.x(3), 0x7_ffff_fff0);
}

#[test]
fn test_division_by_zero_and_overflow_follow_the_spec() {
    let mut h = hart(&[
        div(3, 1, 0),
        rem(4, 1, 0),
        div(5, 2, 6),
        rem(7, 2, 6),
        divw(8, 1, 0),
        mulh(9, 6, 6),
    ]);
    h.set_x(1, 42);
    h.set_x(2, i64::MIN as u64);
    h.set_x(6, u64::MAX);
    run(&mut h, 6);
    assert_eq!((h.x(3), h.x(4)), (u64::MAX, 42));
    assert_eq!((h.x(5), h.x(7)), (i64::MIN as u64, 0));
    assert_eq!((h.x(8), h.x(9)), (u64::MAX, 0));
}

#[test]
fn test_branches_and_jumps_link_and_land() {
    // 0: addi x1,x0,3 ; 4: addi x1,x1,-1 ; 8: bne x1,x0,-4 ; 12: jal x5,8 ; 16: (skipped) ; 20: jalr x6,0(x5)
    let mut h = hart(&[
        addi(1, 0, 3),
        addi(1, 1, -1),
        b(1, 1, 0, -4),
        jal(5, 8),
        addi(9, 0, 1),
        i(0x67, 0, 6, 5, 0),
    ]);
    run(&mut h, 9);
    assert_eq!(h.x(1), 0);
    assert_eq!(h.x(5), RAM + 16);
    assert_eq!(h.x(6), RAM + 24);
    assert_eq!(h.pc(), RAM + 16);
}

#[test]
fn test_load_widths_from_ram() {
    let mut h = hart(&[lw(2, 1, 0), lbu(3, 1, 0), ld(4, 1, 0)]);
    h.set_x(1, RAM + 0x1000);
    poke(&mut h, RAM + 0x1000, &[0xffff_fff0, 0x1234_5678]);
    run(&mut h, 3);
    assert_eq!(h.x(2), 0xffff_ffff_ffff_fff0);
    assert_eq!(h.x(3), 0xf0);
    assert_eq!(h.x(4), 0x1234_5678_ffff_fff0);
}

#[test]
fn test_misaligned_store_and_load_across_a_page_work() {
    let mut h = hart(&[sd(1, 2, 0), ld(3, 1, 0), lw(4, 1, 3)]);
    h.set_x(1, RAM + 0x1ffd);
    h.set_x(2, 0x1122_3344_5566_7788);
    run(&mut h, 3);
    assert_eq!(h.x(3), 0x1122_3344_5566_7788);
    assert_eq!(h.x(4), 0x2233_4455);
    assert_eq!(h.icount(), 3);
}

#[test]
fn test_mmio_store_and_load_go_through_the_bus() {
    let mut h = hart(&[sw(1, 2, 0), lw(3, 1, 4)]);
    h.set_x(1, 0x1000_0000);
    h.set_x(2, 0xabcd);
    let mut bus = TestBus::default();
    h.run(&mut bus, 2);
    assert_eq!(bus.writes.get(&0x1000_0000), Some(&0xabcd));
    assert_eq!(h.x(3), 0x5a);
}

#[test]
fn test_store_to_nothing_raises_store_access_fault() {
    let mut h = hart(&[sw(1, 2, 0)]);
    h.set_x(1, 0x4000_0000);
    run(&mut h, 1);
    let st = h.state();
    assert_eq!(
        (st.csr.mcause, st.csr.mtval, st.csr.mepc),
        (7, 0x4000_0000, RAM)
    );
    assert_eq!(h.icount(), 0);
}

#[test]
fn test_stop_request_after_mmio_write_exits_at_next_boundary() {
    let mut h = hart(&[sw(1, 2, 0), addi(5, 0, 1)]);
    h.set_x(1, 0x1000_0000);
    let mut bus = TestBus {
        stop_on_write: true,
        ..TestBus::default()
    };
    let exit = h.run(&mut bus, 100);
    assert_eq!(exit, Exit::Stopped);
    assert_eq!((h.icount(), h.x(5)), (1, 0));
}

#[test]
fn test_fetch_from_rom_goes_through_the_bus() {
    let mut h = hart(&[]);
    h.set_pc(0x1000);
    let mut bus = TestBus {
        rom: words(&[addi(1, 0, 9), 0x0000_4509]), // addi x1,x0,9 ; c.li x10,2
        ..TestBus::default()
    };
    h.run(&mut bus, 2);
    assert_eq!((h.x(1), h.x(10), h.pc()), (9, 2, 0x1006));
}

#[test]
fn test_budget_retires_exactly_that_many_instructions() {
    let mut h = hart(&[addi(1, 1, 1), jal(0, -4)]);
    let exit = run(&mut h, 1001);
    assert_eq!(exit, Exit::BudgetExhausted);
    assert_eq!((h.icount(), h.x(1)), (1001, 501));
}

// ---- compressed ----

#[test]
fn test_compressed_arithmetic_and_stack_access() {
    // c.li x10,-3 ; c.addi x10,5 ; c.mv x11,x10 ; c.add x11,x10 ; c.sdsp x11,8(sp) ; c.ldsp x12,8(sp) ; c.slli x12,3 ; c.nop
    let halves: [u16; 8] = [
        0x5575, 0x0515, 0x85aa, 0x95aa, 0xe42e, 0x6622, 0x060e, 0x0001,
    ];
    let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let mut h = hart(&[]);
    h.memory_mut().write_bytes(RAM, &bytes).expect("in RAM");
    h.set_x(2, RAM + 0x2000);
    run(&mut h, 8);
    assert_eq!((h.x(10), h.x(11), h.x(12)), (2, 4, 32));
    assert_eq!(peek64(&h, RAM + 0x2008), 4);
    assert_eq!(h.pc(), RAM + 16);
}

#[test]
fn test_compressed_branch_and_jump() {
    // 0: c.li x8,1 ; 2: c.bnez x8,+6 ; 4: c.li x9,7 ; 6: c.nop ; 8: c.j -4 (to 4)
    let halves: [u16; 5] = [0x4405, 0xe019, 0x449d, 0x0001, 0xbff5];
    let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
    let mut h = hart(&[]);
    h.memory_mut().write_bytes(RAM, &bytes).expect("in RAM");
    run(&mut h, 4);
    assert_eq!((h.x(8), h.x(9), h.pc()), (1, 7, RAM + 6));
}

#[test]
fn test_all_zero_halfword_is_illegal() {
    let mut h = hart(&[0]);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 2);
}

#[test]
fn test_32bit_instruction_across_a_page_boundary_fetches_both_halves() {
    let mut h = hart(&[]);
    let inst = addi(7, 0, 33).to_le_bytes();
    h.memory_mut()
        .write_bytes(RAM + 0xffe, &inst)
        .expect("in RAM");
    h.set_pc(RAM + 0xffe);
    run(&mut h, 1);
    assert_eq!((h.x(7), h.pc()), (33, RAM + 0x1002));
}

// ---- CSRs ----

#[test]
fn test_unimplemented_csr_raises_illegal_instruction() {
    let mut h = hart(&[csrrs(1, 0x7c0, 0)]);
    h.set_x(1, 77);
    run(&mut h, 1);
    assert_eq!((h.state().csr.mcause, h.x(1)), (2, 77));
}

#[test]
fn test_write_to_read_only_csr_is_illegal() {
    let mut h = hart(&[csrrw(0, 0xf11, 1)]);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 2);
}

#[test]
fn test_misa_reports_rv64imafdcsu() {
    let mut h = hart(&[csrrs(1, 0x301, 0)]);
    run(&mut h, 1);
    assert_eq!(h.x(1), 0x8000_0000_0014_112d);
}

#[test]
fn test_satp_write_of_sv57_leaves_satp_unchanged() {
    let mut h = hart(&[csrrw(0, 0x180, 1), csrrw(0, 0x180, 2), csrrs(3, 0x180, 0)]);
    h.set_x(1, (8 << 60) | 0x80123);
    h.set_x(2, (10 << 60) | 0x80456);
    run(&mut h, 3);
    assert_eq!(h.x(3), (8 << 60) | 0x80123);
}

#[test]
fn test_minstret_and_mcycle_read_the_retired_count() {
    let mut h = hart(&[
        addi(0, 0, 0),
        addi(0, 0, 0),
        csrrs(1, 0xb02, 0),
        csrrs(2, 0xb00, 0),
        csrrs(3, 0xc00, 0),
    ]);
    run(&mut h, 5);
    assert_eq!((h.x(1), h.x(2), h.x(3)), (2, 3, 4));
}

#[test]
fn test_hpm_counters_read_zero_and_ignore_writes() {
    let mut h = hart(&[
        csrrw(0, 0xb03, 1),
        csrrs(2, 0xb03, 0),
        csrrw(0, 0x323, 1),
        csrrs(3, 0x323, 0),
    ]);
    h.set_x(1, 5);
    run(&mut h, 4);
    assert_eq!((h.x(2), h.x(3), h.icount()), (0, 0, 4));
}

#[test]
fn test_pmpaddr_holds_what_is_written() {
    let mut h = hart(&[
        csrrw(0, 0x3b0, 1),
        csrrs(2, 0x3b0, 0),
        csrrw(0, 0x3a0, 1),
        csrrs(3, 0x3a0, 0),
    ]);
    h.set_x(1, u64::MAX);
    run(&mut h, 4);
    assert_eq!((h.x(2), h.x(3)), ((1 << 54) - 1, u64::MAX));
}

/// Puts the hart in `prv` at RAM+0x100 via mret, with M trap vector at RAM+0x800.
fn drop_to(prog: &[u32], prv: u64) -> Hart {
    let mut h = hart(&[
        csrrw(0, 0x341, 1),
        csrrw(0, 0x300, 2),
        csrrw(0, 0x305, 3),
        MRET,
    ]);
    poke(&mut h, RAM + 0x100, prog);
    // The M-mode handler spins, so the first trap's CSRs stay visible.
    poke(&mut h, RAM + 0x800, &[jal(0, 0)]);
    h.set_x(1, RAM + 0x100);
    h.set_x(2, prv << 11);
    h.set_x(3, RAM + 0x800);
    run(&mut h, 4);
    h
}

#[test]
fn test_s_mode_cycle_read_needs_mcounteren() {
    let mut h = drop_to(&[csrrs(5, 0xc00, 0)], 1);
    run(&mut h, 1);
    assert_eq!(
        (h.state().csr.mcause, h.privilege()),
        (2, Privilege::Machine)
    );
}

#[test]
fn test_s_mode_access_to_m_csr_is_illegal() {
    let mut h = drop_to(&[csrrs(5, 0x300, 0)], 1);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 2);
    assert_eq!(h.state().csr.mepc, RAM + 0x100);
    assert_eq!(h.state().csr.mstatus >> 11 & 3, 1);
}

#[test]
fn test_fcsr_is_illegal_while_fs_is_off() {
    let mut h = hart(&[csrrs(1, 0x003, 0)]);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 2);
}

#[test]
fn test_flw_nan_boxes_and_sets_fs_dirty() {
    let mut h = hart(&[
        csrrs(0, 0x300, 2),
        i(0x07, 2, 3, 1, 0),
        s(0x27, 3, 1, 3, 8),
        ld(4, 1, 8),
    ]);
    h.set_x(1, RAM + 0x1000);
    h.set_x(2, 1 << 13);
    poke(&mut h, RAM + 0x1000, &[0x3f80_0000]);
    run(&mut h, 4);
    assert_eq!(h.x(4), 0xffff_ffff_3f80_0000);
    assert_eq!(h.state().csr.mstatus >> 63, 1);
}

// ---- traps and delegation ----

#[test]
fn test_ecall_from_u_goes_to_m_without_delegation() {
    let mut h = drop_to(&[ECALL], 0);
    run(&mut h, 1);
    let st = h.state();
    assert_eq!(
        (st.csr.mcause, st.csr.mepc, h.pc()),
        (8, RAM + 0x100, RAM + 0x800)
    );
    assert_eq!(h.icount(), 4);
}

#[test]
fn test_ecall_from_u_is_delegated_to_s() {
    let mut h = hart(&[
        csrrw(0, 0x302, 4),
        csrrw(0, 0x105, 5),
        csrrw(0, 0x341, 1),
        csrrw(0, 0x300, 2),
        MRET,
    ]);
    poke(&mut h, RAM + 0x100, &[ECALL]);
    poke(&mut h, RAM + 0x400, &[addi(0, 0, 0)]);
    h.set_x(1, RAM + 0x100);
    h.set_x(2, 0);
    h.set_x(4, 1 << 8);
    h.set_x(5, RAM + 0x400);
    run(&mut h, 6);
    let st = h.state();
    assert_eq!(
        (st.csr.scause, st.csr.sepc, h.pc()),
        (8, RAM + 0x100, RAM + 0x404)
    );
    assert_eq!(h.privilege(), Privilege::Supervisor);
    assert_eq!(st.csr.mstatus & (1 << 8), 0);
}

#[test]
fn test_sret_returns_to_user_and_mret_from_s_is_illegal() {
    let mut h = drop_to(&[csrrw(0, 0x141, 1), SRET], 1);
    poke(&mut h, RAM + 0x200, &[MRET]);
    poke(&mut h, RAM + 0x800, &[addi(0, 0, 0)]);
    h.set_x(1, RAM + 0x200);
    run(&mut h, 3);
    assert_eq!(h.pc(), RAM + 0x804);
    assert_eq!(h.state().csr.mcause, 2);
    assert_eq!(h.state().csr.mstatus >> 11 & 3, 0);
}

// ---- interrupts and WFI ----

#[test]
fn test_machine_timer_interrupt_is_taken_when_enabled() {
    let mut h = hart(&[
        csrrw(0, 0x305, 3),
        csrrw(0, 0x304, 1),
        csrrs(0, 0x300, 2),
        addi(9, 0, 1),
    ]);
    poke(&mut h, RAM + 0x800, &[addi(0, 0, 0)]);
    h.set_x(1, 1 << 7);
    h.set_x(2, 1 << 3);
    h.set_x(3, RAM + 0x800);
    let mut bus = TestBus {
        irq: 1 << 7,
        ..TestBus::default()
    };
    h.run(&mut bus, 4);
    let st = h.state();
    assert_eq!(
        (st.csr.mcause, st.csr.mepc, h.pc()),
        ((1 << 63) | 7, RAM + 12, RAM + 0x804)
    );
    assert_eq!(st.csr.mstatus & 0x88, 0x80);
    assert_eq!(h.x(9), 0);
}

#[test]
fn test_external_interrupt_has_priority_over_timer() {
    let mut h = hart(&[csrrw(0, 0x305, 3), csrrw(0, 0x304, 1), csrrs(0, 0x300, 2)]);
    h.set_x(1, (1 << 7) | (1 << 11));
    h.set_x(2, 1 << 3);
    h.set_x(3, RAM + 0x801);
    poke(&mut h, RAM + 0x800 + 44, &[addi(0, 0, 0)]);
    let mut bus = TestBus {
        irq: (1 << 7) | (1 << 11),
        ..TestBus::default()
    };
    h.run(&mut bus, 4);
    assert_eq!(h.state().csr.mcause, (1 << 63) | 11);
    assert_eq!(h.pc(), RAM + 0x800 + 48);
}

#[test]
fn test_wfi_with_nothing_pending_exits_past_the_wfi() {
    let mut h = hart(&[WFI, addi(1, 0, 1)]);
    let exit = run(&mut h, 100);
    assert_eq!((exit, h.pc(), h.icount()), (Exit::Wfi, RAM + 4, 1));
    assert_eq!(run(&mut h, 100), Exit::Wfi);
}

#[test]
fn test_wfi_resumes_on_pending_interrupt_even_if_globally_disabled() {
    let mut h = hart(&[csrrw(0, 0x304, 1), WFI, addi(5, 0, 1)]);
    h.set_x(1, 1 << 7);
    assert_eq!(run(&mut h, 100), Exit::Wfi);
    let mut bus = TestBus {
        irq: 1 << 7,
        ..TestBus::default()
    };
    let exit = h.run(&mut bus, 1);
    assert_eq!((exit, h.x(5)), (Exit::BudgetExhausted, 1));
}

#[test]
fn test_sstc_timer_raises_stip_when_time_reaches_stimecmp() {
    let mut h = hart(&[
        csrrw(0, 0x30a, 1),
        csrrw(0, 0x14d, 2),
        csrrs(3, 0x344, 0),
        csrrs(4, 0x344, 0),
    ]);
    h.set_x(1, 1 << 63);
    h.set_x(2, 500);
    h.set_time(499);
    run(&mut h, 3);
    h.set_time(500);
    run(&mut h, 1);
    assert_eq!((h.x(3) & 0x20, h.x(4) & 0x20), (0, 0x20));
    assert_eq!(h.stimecmp(), Some(500));
}

#[test]
fn test_mip_set_does_not_latch_external_seip() {
    let mut h = hart(&[csrrs(0, 0x344, 1), csrrs(2, 0x344, 0)]);
    h.set_x(1, 1 << 1);
    let mut bus = TestBus {
        irq: 1 << 9,
        ..TestBus::default()
    };
    h.run(&mut bus, 2);
    assert_eq!(h.x(2), (1 << 9) | (1 << 1));
    assert_eq!(h.state().csr.mip, 1 << 1);
}

// ---- atomics ----

#[test]
fn test_lr_sc_succeeds_then_fails_without_reservation() {
    let mut h = hart(&[
        amo(0b00010, 3, 2, 1, 0),
        amo(0b00011, 3, 3, 1, 5),
        amo(0b00011, 3, 4, 1, 5),
    ]);
    h.set_x(1, RAM + 0x1000);
    h.set_x(5, 99);
    poke(&mut h, RAM + 0x1000, &[7, 0]);
    run(&mut h, 3);
    assert_eq!((h.x(2), h.x(3), h.x(4)), (7, 0, 1));
    assert_eq!(peek64(&h, RAM + 0x1000), 99);
}

#[test]
fn test_amoadd_w_returns_sign_extended_old_value() {
    let mut h = hart(&[amo(0b00000, 2, 2, 1, 5), amo(0b10100, 2, 3, 1, 6)]);
    h.set_x(1, RAM + 0x1000);
    h.set_x(5, 1);
    h.set_x(6, 5);
    poke(&mut h, RAM + 0x1000, &[0xffff_fffe, 0x1111_1111]);
    run(&mut h, 2);
    assert_eq!((h.x(2), h.x(3)), (u64::MAX - 1, u64::MAX));
    assert_eq!(peek64(&h, RAM + 0x1000), 0x1111_1111_0000_0005);
}

#[test]
fn test_misaligned_amo_raises_store_misaligned() {
    let mut h = hart(&[amo(0b00001, 3, 2, 1, 5)]);
    h.set_x(1, RAM + 0x1004);
    run(&mut h, 1);
    assert_eq!(
        (h.state().csr.mcause, h.state().csr.mtval),
        (6, RAM + 0x1004)
    );
}

// ---- paging ----

const PT: u64 = RAM + 0x10_0000;
const V: u64 = 1;
const RWX_U_A_D: u64 = 0b1101_1110; // R W X U A D

fn pte(pa: u64, flags: u64) -> u64 {
    ((pa >> 12) << 10) | flags | V
}

fn put(h: &mut Hart, addr: u64, v: u64) {
    h.memory_mut()
        .write_bytes(addr, &v.to_le_bytes())
        .expect("in RAM");
}

/// S-mode hart running `prog` at virtual `va` with paging `mode` rooted at PT.
/// `tables` builds the page tables first; they must map the code at
/// RAM+0x100 (identity) so the hart survives the satp write.
fn paged(mode: u64, va: u64, prog: &[u32], tables: impl FnOnce(&mut Hart)) -> Hart {
    let mut h = drop_to(&[csrrw(0, 0x180, 10), SFENCE_VMA], 1);
    tables(&mut h);
    h.set_x(10, (mode << 60) | (PT >> 12));
    run(&mut h, 2);
    poke(&mut h, RAM + 0x3000, prog);
    h.set_pc(va);
    h
}

/// Sv39 tables: VA 0x4000_0000 (gigapage 1) → RAM identity via gigapage 2,
/// VA 0x1000 → RAM+0x3000 via three levels; VA 0x20_0000 megapage → RAM.
fn sv39_tables(h: &mut Hart, code_flags: u64) {
    put(h, PT, pte(PT + 0x1000, 0));
    put(h, PT + 0x1000, pte(PT + 0x2000, 0));
    put(h, PT + 0x2000 + 8, pte(RAM + 0x3000, code_flags));
    put(h, PT + 0x2000 + 2 * 8, pte(RAM + 0x4000, 0b0100_0110)); // RW, A, no D: VA 0x2000
    put(h, PT + 0x1000 + 8, pte(RAM, RWX_U_A_D & !0x10)); // megapage VA 0x20_0000 → RAM
    put(h, PT + 2 * 8, pte(RAM, RWX_U_A_D & !0x10)); // gigapage VA 0x8000_0000 → RAM
}

#[test]
fn test_sv39_three_level_fetch_and_megapage_load() {
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0x100)], |h| {
        sv39_tables(h, 0b0100_1010)
    }); // X R A, supervisor
    put(&mut h, RAM + 0x100, 0xfeed);
    h.set_x(6, 0x20_0000);
    run(&mut h, 1);
    assert_eq!((h.x(5), h.pc()), (0xfeed, 0x1004));
}

#[test]
fn test_sv39_gigapage_store_sets_dirty_bit() {
    let mut h = paged(8, 0x1000, &[sd(6, 7, 0x8), sd(8, 7, 0)], |h| {
        sv39_tables(h, 0b0100_1010)
    });
    h.set_x(6, 0x8000_0000 + 0x5000);
    h.set_x(7, 0xabc);
    h.set_x(8, 0x2000);
    run(&mut h, 2);
    assert_eq!(peek64(&h, RAM + 0x5008), 0xabc);
    assert_eq!(peek64(&h, RAM + 0x4000), 0xabc);
    assert_eq!(peek64(&h, PT + 0x2000 + 16) & 0xc0, 0xc0);
}

#[test]
fn test_sv39_load_from_unmapped_page_raises_load_page_fault() {
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0)], |h| sv39_tables(h, 0b0100_1010));
    h.set_x(6, 0x7000);
    run(&mut h, 1);
    let st = h.state();
    assert_eq!(
        (st.csr.mcause, st.csr.mtval, st.csr.mepc),
        (13, 0x7000, 0x1000)
    );
}

#[test]
fn test_sv39_fetch_from_user_page_in_s_mode_faults() {
    let mut h = paged(8, 0x1000, &[addi(1, 0, 1)], |h| sv39_tables(h, 0b0101_1010));
    run(&mut h, 1);
    assert_eq!((h.state().csr.mcause, h.state().csr.mtval), (12, 0x1000));
}

#[test]
fn test_sv39_non_canonical_address_faults() {
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0)], |h| sv39_tables(h, 0b0100_1010));
    h.set_x(6, 0x40_0000_0000);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 13);
}

#[test]
fn test_sv39_store_to_read_only_page_raises_store_page_fault() {
    let mut h = paged(8, 0x1000, &[sd(6, 7, 0)], |h| sv39_tables(h, 0b0100_1010));
    h.set_x(6, 0x1000);
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 15);
}

#[test]
fn test_sv48_four_level_walk_and_terapage_level_fault() {
    let mut h = paged(9, 0x1000, &[ld(5, 6, 0), ld(7, 8, 0)], |h| {
        put(h, PT, pte(PT + 0x1000, 0));
        put(h, PT + 0x1000, pte(PT + 0x2000, 0));
        put(h, PT + 0x1000 + 2 * 8, pte(RAM, RWX_U_A_D & !0x10)); // VA 0x8000_0000 gigapage
        put(h, PT + 0x2000, pte(PT + 0x3000, 0));
        put(h, PT + 0x3000 + 8, pte(RAM + 0x3000, 0b0100_1010));
        put(h, PT + 0x3000 + 16, pte(RAM + 0x6000, 0b0100_0010));
    });
    put(&mut h, RAM + 0x6000, 31);
    h.set_x(6, 0x2000);
    h.set_x(8, 0x8000_0000_0000); // level-3 index 256: invalid
    run(&mut h, 2);
    assert_eq!(h.x(5), 31);
    assert_eq!(
        (h.state().csr.mcause, h.state().csr.mtval),
        (13, 0xffff_8000_0000_0000 & 0x8000_0000_0000)
    );
}

#[test]
fn test_sum_allows_supervisor_loads_from_user_pages() {
    let mut h = paged(
        8,
        0x1000,
        &[
            csrrs(0, 0x100, 9),
            ld(5, 6, 0),
            csrrc(0, 0x100, 9),
            ld(7, 6, 0),
        ],
        |h| {
            sv39_tables(h, 0b0100_1010);
            put(h, PT + 0x2000 + 3 * 8, pte(RAM + 0x6000, 0b0101_0010)); // U R A
        },
    );
    put(&mut h, RAM + 0x6000, 44);
    h.set_x(6, 0x3000);
    h.set_x(9, 1 << 18);
    run(&mut h, 4);
    assert_eq!(h.x(5), 44);
    assert_eq!((h.state().csr.mcause, h.state().csr.mepc), (13, 0x100c));
}

#[test]
fn test_misaligned_load_across_pages_with_paging() {
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0)], |h| sv39_tables(h, 0b0100_1010));
    // VA 0x1ffc..0x2004: code page end (RAM+0x3ffc) and the RW page (RAM+0x4000).
    put(&mut h, RAM + 0x3ff8, 0x4444_3333_0000_0000);
    put(&mut h, RAM + 0x4000, 0x6666_5555);
    h.set_x(6, 0x1ffc);
    run(&mut h, 1);
    assert_eq!(h.x(5), 0x6666_5555_4444_3333);
}

// ---- state ----

#[test]
fn test_state_round_trips_through_restore() {
    let mut h = drop_to(&[addi(1, 0, 1)], 1);
    let st = h.state();
    let mut other = hart(&[]);
    let ram = h.memory().as_bytes().to_vec();
    other
        .memory_mut()
        .write_bytes(RAM, &ram)
        .expect("same size");
    other.restore(st.clone()).expect("valid state");
    assert_eq!(other.state(), st);
    run(&mut h, 1);
    run(&mut other, 1);
    assert_eq!(other.state(), h.state());
}

#[test]
fn test_restore_rejects_reserved_privilege() {
    let mut h = hart(&[]);
    let mut st = h.state();
    st.privilege = 2;
    assert_eq!(h.restore(st), Err(StateError::Privilege(2)));
}

#[test]
fn test_restore_rejects_unsupported_satp_mode() {
    let mut h = hart(&[]);
    let mut st = h.state();
    st.csr.satp = 10 << 60;
    assert!(matches!(h.restore(st), Err(StateError::Satp(_))));
}

#[test]
fn test_amo_after_a_store_to_the_same_page_uses_its_translation() {
    // sd fills the write TLB entry of VA 0x2000; amoadd.d goes through it.
    let mut h = paged(8, 0x1000, &[sd(6, 8, 0), amo(0b00000, 3, 7, 6, 8)], |h| {
        sv39_tables(h, 0b0100_1010);
    });
    h.set_x(6, 0x2000);
    h.set_x(8, 5);
    run(&mut h, 2);
    assert_eq!((h.x(7), peek64(&h, RAM + 0x4000)), (5, 10));
}

#[test]
fn test_amo_on_a_page_read_before_but_not_writable_is_a_store_page_fault() {
    // VA 0x1000 (the code page) is readable, not writable: the load caches
    // it for reading, the AMO still faults.
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0), amo(0b00000, 3, 7, 6, 8)], |h| {
        sv39_tables(h, 0b0100_1010);
    });
    h.set_x(6, 0x1000);
    run(&mut h, 2);
    let csr = h.state().csr;
    assert_eq!((csr.mcause, csr.mtval, csr.mepc), (15, 0x1000, 0x1004));
}

#[test]
fn test_sfence_vma_makes_a_changed_pte_visible() {
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0), SFENCE_VMA, ld(7, 6, 0)], |h| {
        sv39_tables(h, 0b0100_1010);
    });
    put(&mut h, RAM + 0x4000, 1);
    put(&mut h, RAM + 0x6000, 2);
    h.set_x(6, 0x2000);
    run(&mut h, 1);
    put(&mut h, PT + 0x2000 + 2 * 8, pte(RAM + 0x6000, 0b0100_0010));
    run(&mut h, 2);
    assert_eq!((h.x(5), h.x(7)), (1, 2));
}

#[test]
fn test_sfence_vma_with_the_address_makes_a_changed_pte_visible() {
    let fence_x6 = SFENCE_VMA | 6 << 15;
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0), fence_x6, ld(7, 6, 0)], |h| {
        sv39_tables(h, 0b0100_1010);
    });
    put(&mut h, RAM + 0x4000, 1);
    put(&mut h, RAM + 0x6000, 2);
    h.set_x(6, 0x2000);
    run(&mut h, 1);
    put(&mut h, PT + 0x2000 + 2 * 8, pte(RAM + 0x6000, 0b0100_0010));
    run(&mut h, 2);
    assert_eq!((h.x(5), h.x(7)), (1, 2));
}

#[test]
fn test_sfence_vma_with_another_address_in_a_megapage_forgets_the_megapage() {
    // The load goes through VA 0x20_0100; the fence names VA 0x20_5000,
    // another 4 KiB page of the same megapage.
    let fence_x8 = SFENCE_VMA | 8 << 15;
    let mut h = paged(8, 0x1000, &[ld(5, 6, 0), fence_x8, ld(7, 6, 0)], |h| {
        sv39_tables(h, 0b0100_1010);
    });
    put(&mut h, RAM + 0x100, 1);
    put(&mut h, RAM + 0x20_0100, 2);
    h.set_x(6, 0x20_0100);
    h.set_x(8, 0x20_5000);
    run(&mut h, 1);
    put(
        &mut h,
        PT + 0x1000 + 8,
        pte(RAM + 0x20_0000, RWX_U_A_D & !0x10),
    );
    run(&mut h, 2);
    assert_eq!((h.x(5), h.x(7)), (1, 2));
}

#[test]
fn test_delegated_software_interrupt_goes_to_s_mode() {
    // M: mideleg = SSIP, mie = SSIE, stvec, sstatus.SIE, then drop to S; S sets sip.SSIP.
    let mut h = hart(&[
        csrrw(0, 0x303, 1),
        csrrw(0, 0x304, 1),
        csrrw(0, 0x105, 3),
        csrrw(0, 0x341, 4),
        csrrw(0, 0x300, 5),
        MRET,
    ]);
    poke(&mut h, RAM + 0x100, &[csrrs(0, 0x144, 1), addi(9, 0, 1)]);
    poke(&mut h, RAM + 0x400, &[jal(0, 0)]);
    h.set_x(1, 1 << 1);
    h.set_x(3, RAM + 0x400);
    h.set_x(4, RAM + 0x100);
    h.set_x(5, (1 << 11) | (1 << 1));
    run(&mut h, 8);
    let st = h.state();
    assert_eq!(
        (st.csr.scause, st.csr.sepc, h.x(9)),
        ((1 << 63) | 1, RAM + 0x104, 0)
    );
    assert_eq!(h.privilege(), Privilege::Supervisor);
}

#[test]
fn test_tsr_makes_sret_illegal_and_tw_makes_wfi_illegal_in_s() {
    let mut h = drop_to(&[SRET], 1);
    let mut st = h.state();
    st.csr.mstatus |= 1 << 22;
    h.restore(st).expect("valid");
    run(&mut h, 1);
    assert_eq!(h.state().csr.mcause, 2);
    let mut h = drop_to(&[WFI], 1);
    let mut st = h.state();
    st.csr.mstatus |= 1 << 21;
    h.restore(st).expect("valid");
    run(&mut h, 1);
    assert_eq!((h.state().csr.mcause, h.state().csr.mepc), (2, RAM + 0x100));
}

// ---- decoded-instruction cache coherence ----

#[test]
fn test_store_over_already_executed_code_is_seen_on_next_execution() {
    // The first pass patches "addi x1, x1, 1" into "addi x1, x1, 100"
    // while it is decoded; the second pass must run the new instruction.
    let mut h = hart(&[
        addi(1, 1, 1),  // 0: patched
        sw(2, 3, 0),    // 4: store x3 at RAM
        b(1, 1, 4, -8), // 8: bne x1, x4, 0
    ]);
    h.set_x(2, RAM);
    h.set_x(3, u64::from(addi(1, 1, 100)));
    h.set_x(4, 101);
    let exit = run(&mut h, 6);
    assert_eq!(exit, Exit::BudgetExhausted);
    assert_eq!(h.x(1), 101);
    assert_eq!(h.pc(), RAM + 12);
}

#[test]
fn test_amoswap_over_already_executed_code_is_seen_on_next_execution() {
    let mut h = hart(&[
        addi(1, 1, 1),            // 0: patched
        amo(0b00001, 2, 9, 2, 3), // 4: amoswap.w x9, x3, (x2)
        b(1, 1, 4, -8),           // 8: bne x1, x4, 0
    ]);
    h.set_x(2, RAM);
    h.set_x(3, u64::from(addi(1, 1, 100)));
    h.set_x(4, 101);
    run(&mut h, 6);
    assert_eq!((h.x(1), h.pc()), (101, RAM + 12));
}

#[test]
fn test_write_bytes_over_decoded_code_is_seen_by_the_hart() {
    let mut h = hart(&[addi(1, 1, 1), jal(0, -4)]);
    run(&mut h, 4);
    assert_eq!(h.x(1), 2);
    poke(&mut h, RAM, &[addi(1, 1, 10)]);
    run(&mut h, 2);
    assert_eq!(h.x(1), 12);
}

#[test]
fn test_budget_ends_exactly_inside_a_straight_line_block() {
    let mut h = hart(&[addi(1, 1, 1); 64]);
    for _ in 0..7 {
        run(&mut h, 3);
    }
    assert_eq!(h.icount(), 21);
    assert_eq!(h.x(1), 21);
    assert_eq!(h.pc(), RAM + 84);
}

#[test]
fn test_execution_falls_through_a_page_boundary() {
    let mut mem = Memory::new(RAM, 4 << 20);
    mem.write_bytes(RAM + 0xff8, &words(&[addi(1, 1, 1); 4]))
        .expect("in RAM");
    let mut h = Hart::new(mem);
    h.set_pc(RAM + 0xff8);
    run(&mut h, 4);
    assert_eq!(h.x(1), 4);
    assert_eq!(h.pc(), RAM + 0x1008);
}

// ---- dirty pages ----

#[test]
fn test_dirty_pages_report_stores_made_after_the_previous_report() {
    // sd x0, 0(x1) twice, with x1 = RAM + 0x3000; a report between them.
    let mut h = hart(&[sd(1, 0, 0), sd(1, 0, 0)]);
    h.set_x(1, RAM + 0x3000);
    run(&mut h, 1);
    let first = h.take_dirty_pages();
    let quiet = h.take_dirty_pages();
    run(&mut h, 1);
    let again = h.take_dirty_pages();

    assert!(
        first.contains(&3) && quiet.is_empty() && again == vec![3],
        "{first:?} {quiet:?} {again:?}"
    );
}

// ---- fused instruction sequences ----

/// A program of mixed 4-byte words and 2-byte compressed instructions.
fn mixed(parts: &[(u32, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(w, compressed) in parts {
        if compressed {
            out.extend_from_slice(&(w as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&w.to_le_bytes());
        }
    }
    out
}

fn srli(rd: u32, rs1: u32, sh: i32) -> u32 {
    i(0x13, 5, rd, rs1, sh)
}
fn addw(rd: u32, rs1: u32, rs2: u32) -> u32 {
    r(0x3b, 0, 0, rd, rs1, rs2)
}

/// Every fused kind (zero-extension, zero-extension + add, shift + add, each
/// ALU operation + branch, taken and not, 4-byte and compressed forms).
fn fusion_program() -> Vec<u8> {
    let w = |x: u32| (x, false);
    let c = |x: u32| (x, true);
    mixed(&[
        w(slli(4, 1, 32)),
        w(srli(4, 4, 32)),
        w(slli(5, 1, 32)),
        w(srli(5, 5, 32)),
        w(add(6, 5, 2)),
        w(slli(7, 2, 3)),
        w(add(7, 7, 1)),
        w(slli(8, 2, 2)),
        w(add(9, 1, 8)),
        // loop: x10 counts to x2 (5)
        w(addi(10, 10, 1)),
        w(b(1, 10, 2, -4)),
        w(addiw(11, 3, 0)),
        w(b(4, 11, 0, 8)),
        w(addi(12, 0, 7)),
        w(add(13, 1, 2)),
        w(b(7, 13, 1, 8)),
        w(addi(14, 0, 7)),
        w(addw(15, 1, 2)),
        w(b(0, 15, 0, 8)),
        w(slli(16, 2, 60)),
        w(b(6, 16, 2, 8)),
        w(addi(17, 0, 1)),
        // c.slli x14,32 ; c.srli x14,32 ; c.add x14,x23 ; c.slli x14,32 ; c.srli x14,32
        c(0x1702),
        c(0x9301),
        c(0x975e),
        c(0x1702),
        c(0x9301),
        w(addi(18, 0, 3)),
        w(addi(0, 0, 0)),
    ])
}

fn fusion_hart() -> Hart {
    let mut h = hart(&[]);
    h.memory_mut()
        .write_bytes(RAM, &fusion_program())
        .expect("in RAM");
    h.set_x(1, 0x1234_5678_9abc_def0);
    h.set_x(2, 5);
    h.set_x(3, -3i64 as u64);
    h.set_x(23, 0x1_0000_0001);
    h
}

fn arch_state(h: &Hart) -> (Vec<u64>, u64, u64) {
    ((0..32).map(|r| h.x(r)).collect(), h.pc(), h.icount())
}

#[test]
fn test_fused_sequences_match_one_instruction_at_a_time_at_every_budget() {
    // One instruction per run never executes a fused slot whole (its first
    // instruction runs alone); a run of k executes them whole wherever they
    // fit, and must end in the same state for every k.
    let total = 35;
    let mut single = fusion_hart();
    for k in 1..=total {
        assert_eq!(run(&mut single, 1), Exit::BudgetExhausted);
        let mut whole = fusion_hart();
        run(&mut whole, k);
        assert_eq!(
            arch_state(&whole),
            arch_state(&single),
            "after {k} instructions"
        );
    }
    let (x, pc, _) = arch_state(&single);
    assert_eq!(x[4], 0x9abc_def0);
    assert_eq!(x[6], 0x9abc_def5);
    assert_eq!(x[7], 40 + 0x1234_5678_9abc_def0);
    assert_eq!(x[9], 20 + 0x1234_5678_9abc_def0);
    assert_eq!(x[10], 5);
    assert_eq!((x[11], x[12]), (-3i64 as u64, 0));
    assert_eq!((x[13], x[14]), (0x1234_5678_9abc_def5, 1));
    assert_eq!(
        (x[15], x[16], x[17], x[18]),
        (0xffff_ffff_9abc_def5, 5 << 60, 1, 3)
    );
    assert_eq!(pc, RAM + fusion_program().len() as u64);
}

#[test]
fn test_store_over_the_second_instruction_of_a_fused_pair_is_seen() {
    // The pair `addi x1,x1,1 ; beq x0,x0,+8` straddles a 64-byte line
    // (offsets 60 and 64). The second pass runs after a store replaced the
    // branch (in the second line only) by one that is never taken.
    let nop = addi(0, 0, 0);
    let mut prog = vec![nop; 15];
    prog.extend_from_slice(&[
        addi(1, 1, 1),  // 60
        b(0, 0, 0, 8),  // 64: beq x0,x0,+8 -> 72
        addi(3, 0, 99), // 68
        b(1, 4, 0, 16), // 72: bne x4,x0,+16 -> 88
        sw(10, 11, 64), // 76
        addi(4, 0, 1),  // 80
        jal(0, -24),    // 84 -> 60
        nop,            // 88
    ]);
    let mut h = hart(&prog);
    h.set_pc(RAM + 60);
    h.set_x(10, RAM);
    h.set_x(11, u64::from(b(1, 0, 0, 8)));
    assert_eq!(run(&mut h, 10), Exit::BudgetExhausted);
    assert_eq!((h.x(1), h.x(3), h.pc()), (2, 99, RAM + 88));
}

// ---- compiled runs of register operations (native.rs) ----

/// A deterministic xorshift64* source for the generated programs.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A register value, often one at an edge.
    fn value(&mut self) -> u64 {
        const EDGES: [u64; 8] = [
            0,
            1,
            u64::MAX,
            1 << 63,
            (1 << 63) - 1,
            0x8000_0000,
            0x7fff_ffff,
            0xffff_ffff,
        ];
        match self.below(4) {
            0 => EDGES[self.below(8) as usize],
            1 => self.below(64),
            _ => self.next(),
        }
    }
    /// A register number: x0 now and then, otherwise few registers so that
    /// results feed later operands.
    fn reg(&mut self) -> u32 {
        if self.below(16) == 0 {
            0
        } else {
            1 + self.below(7) as u32
        }
    }
    /// One instruction of an operation the compiler takes.
    fn inst(&mut self) -> u32 {
        let (rd, rs1, rs2) = (self.reg(), self.reg(), self.reg());
        let imm = self.below(4096) as i32 - 2048;
        let sh = self.below(64) as i32;
        let sh32 = self.below(32) as i32;
        match self.below(34) {
            0 => lui(rd, self.below(1 << 20) as u32),
            1 => addi(rd, rs1, imm),
            2 => i(0x13, 2, rd, rs1, imm),
            3 => i(0x13, 3, rd, rs1, imm),
            4 => i(0x13, 4, rd, rs1, imm),
            5 => i(0x13, 6, rd, rs1, imm),
            6 => i(0x13, 7, rd, rs1, imm),
            7 => slli(rd, rs1, sh),
            8 => i(0x13, 5, rd, rs1, sh),
            9 => i(0x13, 5, rd, rs1, sh | 0x400),
            10 => addiw(rd, rs1, imm),
            11 => i(0x1b, 1, rd, rs1, sh32),
            12 => i(0x1b, 5, rd, rs1, sh32),
            13 => i(0x1b, 5, rd, rs1, sh32 | 0x400),
            14 => add(rd, rs1, rs2),
            15 => sub(rd, rs1, rs2),
            16 => r(0x33, 1, 0, rd, rs1, rs2),
            17 => r(0x33, 2, 0, rd, rs1, rs2),
            18 => r(0x33, 3, 0, rd, rs1, rs2),
            19 => r(0x33, 4, 0, rd, rs1, rs2),
            20 => r(0x33, 5, 0, rd, rs1, rs2),
            21 => r(0x33, 5, 0x20, rd, rs1, rs2),
            22 => r(0x33, 6, 0, rd, rs1, rs2),
            23 => r(0x33, 7, 0, rd, rs1, rs2),
            24 => r(0x33, 0, 1, rd, rs1, rs2),
            25 => mulh(rd, rs1, rs2),
            26 => r(0x33, 3, 1, rd, rs1, rs2),
            27 => r(0x3b, 0, 0, rd, rs1, rs2),
            28 => r(0x3b, 0, 0x20, rd, rs1, rs2),
            29 => r(0x3b, 1, 0, rd, rs1, rs2),
            30 => r(0x3b, 5, 0, rd, rs1, rs2),
            31 => r(0x3b, 5, 0x20, rd, rs1, rs2),
            32 => r(0x3b, 0, 1, rd, rs1, rs2),
            _ => i(0x13, 0, 0, 0, 0),
        }
    }
}

/// A hart at RAM with `prog` and the registers `x1..x7` set from `regs`.
fn hart_with(prog: &[u32], regs: &[u64; 7]) -> Hart {
    let mut h = hart(prog);
    for (k, &v) in regs.iter().enumerate() {
        h.set_x(k + 1, v);
    }
    h
}

fn regs_of(h: &Hart) -> Vec<u64> {
    (0..32).map(|k| h.x(k)).collect()
}

#[test]
fn test_compiled_runs_agree_with_single_steps_on_random_programs() {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let len = 1 + g.below(60) as usize;
        let prog: Vec<u32> = (0..len).map(|_| g.inst()).collect();
        let mut regs = [0u64; 7];
        for v in regs.iter_mut() {
            *v = g.value();
        }
        // One instruction per call: never a whole compiled run, so each
        // instruction runs the general way.
        let mut want = hart_with(&prog, &regs);
        for _ in 0..len {
            run(&mut want, 1);
        }
        // Whole runs, or runs cut by a budget that ends inside them.
        let mut got = hart_with(&prog, &regs);
        let mut left = len as u64;
        while left > 0 {
            let step = if round % 2 == 0 {
                left
            } else {
                1 + g.below(left)
            };
            run(&mut got, step);
            left -= step;
        }
        assert_eq!(
            (regs_of(&got), got.pc(), got.icount()),
            (regs_of(&want), want.pc(), want.icount()),
            "round {round}: program {prog:08x?} from {regs:x?}"
        );
    }
}

#[test]
fn test_compiled_run_is_compiled_again_after_a_store_into_its_middle() {
    // 40 register operations (160 bytes: three 64-byte lines), then a
    // store of a new instruction into the run's middle line, then back to
    // the run's start once; x5 counts the passes.
    let mut prog = vec![addi(1, 1, 1); 40];
    let target = RAM + 4 * 20;
    // x6 holds the new instruction for slot 20 (addi x2, x2, 100), x7 its
    // address.
    prog.extend_from_slice(&[
        addi(5, 5, 1),
        sw(7, 6, 0),
        // Back to the start while x5 < 2.
        addi(8, 0, 2),
        b(4, 5, 8, -(4 * 43)),
    ]);
    let mut h = hart(&prog);
    h.set_x(6, u64::from(addi(2, 2, 100)));
    h.set_x(7, target);
    let n = 2 * 44;
    run(&mut h, n);
    assert_eq!(h.icount(), n);
    // First pass: 40 increments of x1; second: 39 of x1 and one of 100 on x2.
    assert_eq!((h.x(1), h.x(2), h.x(5)), (79, 100, 2));
}

/// The program of the kept-TLB tests: A loads through VA 0x2000 (x6),
/// switches to B (x11), rewrites the PTE of VA 0x2000 (x12 <- x13), runs
/// `fence`, switches back to A (x10) and loads again into x7.
fn kept_tlb_program(fence: u32) -> Hart {
    let root_b = PT + 0x8000;
    let prog = [
        ld(5, 6, 0),
        csrrw(0, 0x180, 11),
        sd(12, 13, 0),
        fence,
        csrrw(0, 0x180, 10),
        ld(7, 6, 0),
    ];
    let mut h = paged(8, 0x1000, &prog, |h| {
        sv39_tables(h, 0b0100_1010);
        put(h, root_b, pte(PT + 0x1000, 0));
        put(h, root_b + 2 * 8, pte(RAM, RWX_U_A_D & !0x10));
    });
    put(&mut h, RAM + 0x4000, 1);
    put(&mut h, RAM + 0x6000, 2);
    h.set_x(6, 0x2000);
    h.set_x(11, (8 << 60) | (1 << 44) | (root_b >> 12));
    // The PTE of VA 0x2000, through the gigapage that maps RAM 1:1.
    h.set_x(12, PT + 0x2000 + 2 * 8);
    h.set_x(13, pte(RAM + 0x6000, 0b1100_0110));
    run(&mut h, prog.len() as u64);
    h
}

#[test]
fn test_sfence_of_one_address_in_another_address_space_reaches_the_kept_translations() {
    // sfence.vma x6, x0: every address space, VA 0x2000 only.
    let h = kept_tlb_program(r(0x73, 0, 0x09, 0, 6, 0));
    assert_eq!((h.x(5), h.x(7), h.pc()), (1, 2, 0x1000 + 4 * 6));
}

#[test]
fn test_sfence_in_another_address_space_drops_the_kept_translations() {
    // sfence.vma x0, x0: the second load must see the new frame, not A's
    // translation from before the switch.
    let h = kept_tlb_program(SFENCE_VMA);
    assert_eq!((h.x(5), h.x(7), h.pc()), (1, 2, 0x1000 + 4 * 6));
}
