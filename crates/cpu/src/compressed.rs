//! The C extension: each 16-bit instruction is expanded to the 32-bit
//! instruction it stands for (unprivileged spec chapter 16, RV64 column).

#[inline(always)]
fn bit(c: u32, b: u32) -> u32 {
    (c >> b) & 1
}

#[inline(always)]
fn bits(c: u32, hi: u32, lo: u32) -> u32 {
    (c >> lo) & ((1 << (hi - lo + 1)) - 1)
}

fn i_type(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

fn s_type(imm: i32, rs2: u32, rs1: u32, f3: u32, op: u32) -> u32 {
    let imm = imm as u32;
    (bits(imm, 11, 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (bits(imm, 4, 0) << 7) | op
}

fn r_type(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
    (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
}

fn b_type(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let imm = imm as u32;
    (bit(imm, 12) << 31)
        | (bits(imm, 10, 5) << 25)
        | (rs2 << 20)
        | (rs1 << 15)
        | (f3 << 12)
        | (bits(imm, 4, 1) << 8)
        | (bit(imm, 11) << 7)
        | 0x63
}

fn j_type(imm: i32, rd: u32) -> u32 {
    let imm = imm as u32;
    (bit(imm, 20) << 31)
        | (bits(imm, 10, 1) << 21)
        | (bit(imm, 11) << 20)
        | (bits(imm, 19, 12) << 12)
        | (rd << 7)
        | 0x6f
}

/// Sign-extends the low `n` bits of `v`.
fn sext(v: u32, n: u32) -> i32 {
    ((v << (32 - n)) as i32) >> (32 - n)
}

const OP_IMM: u32 = 0x13;
const OP_IMM_32: u32 = 0x1b;
const OP: u32 = 0x33;
const OP_32: u32 = 0x3b;
const LOAD: u32 = 0x03;
const STORE: u32 = 0x23;
const LOAD_FP: u32 = 0x07;
const STORE_FP: u32 = 0x27;
const JALR: u32 = 0x67;

/// Expands a 16-bit instruction (in the low half of `c`); `None` if the
/// encoding is reserved or illegal.
pub(crate) fn expand(c: u32) -> Option<u32> {
    let c = c & 0xffff;
    let f3 = bits(c, 15, 13);
    let rd = bits(c, 11, 7);
    let rs2 = bits(c, 6, 2);
    let rdp = bits(c, 4, 2) + 8;
    let rs1p = bits(c, 9, 7) + 8;
    // uimm[5:3] at 12:10 and uimm[7:6] at 6:5 (C.LD, C.SD, C.FLD, C.FSD).
    let uimm_d = ((bits(c, 12, 10) << 3) | (bits(c, 6, 5) << 6)) as i32;
    // uimm[5:3] at 12:10, uimm[2] at 6, uimm[6] at 5 (C.LW, C.SW).
    let uimm_w = ((bits(c, 12, 10) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6)) as i32;
    let imm6 = sext((bit(c, 12) << 5) | bits(c, 6, 2), 6);
    Some(match (c & 3, f3) {
        (0, 0) => {
            // C.ADDI4SPN
            let imm = (bits(c, 12, 11) << 4)
                | (bits(c, 10, 7) << 6)
                | (bit(c, 6) << 2)
                | (bit(c, 5) << 3);
            if imm == 0 {
                return None;
            }
            i_type(imm as i32, 2, 0, rdp, OP_IMM)
        }
        (0, 1) => i_type(uimm_d, rs1p, 3, rdp, LOAD_FP),
        (0, 2) => i_type(uimm_w, rs1p, 2, rdp, LOAD),
        (0, 3) => i_type(uimm_d, rs1p, 3, rdp, LOAD),
        (0, 5) => s_type(uimm_d, rdp, rs1p, 3, STORE_FP),
        (0, 6) => s_type(uimm_w, rdp, rs1p, 2, STORE),
        (0, 7) => s_type(uimm_d, rdp, rs1p, 3, STORE),
        (1, 0) => i_type(imm6, rd, 0, rd, OP_IMM),
        (1, 1) => {
            if rd == 0 {
                return None;
            }
            i_type(imm6, rd, 0, rd, OP_IMM_32)
        }
        (1, 2) => i_type(imm6, 0, 0, rd, OP_IMM),
        (1, 3) if rd == 2 => {
            // C.ADDI16SP
            let imm = (bit(c, 12) << 9)
                | (bit(c, 6) << 4)
                | (bit(c, 5) << 6)
                | (bits(c, 4, 3) << 7)
                | (bit(c, 2) << 5);
            if imm == 0 {
                return None;
            }
            i_type(sext(imm, 10), 2, 0, 2, OP_IMM)
        }
        (1, 3) => {
            // C.LUI
            if imm6 == 0 {
                return None;
            }
            ((imm6 as u32) << 12) | (rd << 7) | 0x37
        }
        (1, 4) => {
            let rdp = rs1p;
            match bits(c, 11, 10) {
                0 => {
                    let sh = (bit(c, 12) << 5) | bits(c, 6, 2);
                    i_type(sh as i32, rdp, 5, rdp, OP_IMM)
                }
                1 => {
                    let sh = (bit(c, 12) << 5) | bits(c, 6, 2);
                    i_type((sh | 0x400) as i32, rdp, 5, rdp, OP_IMM)
                }
                2 => i_type(imm6, rdp, 7, rdp, OP_IMM),
                _ => {
                    let rs2p = bits(c, 4, 2) + 8;
                    match (bit(c, 12), bits(c, 6, 5)) {
                        (0, 0) => r_type(0x20, rs2p, rdp, 0, rdp, OP),
                        (0, 1) => r_type(0, rs2p, rdp, 4, rdp, OP),
                        (0, 2) => r_type(0, rs2p, rdp, 6, rdp, OP),
                        (0, 3) => r_type(0, rs2p, rdp, 7, rdp, OP),
                        (1, 0) => r_type(0x20, rs2p, rdp, 0, rdp, OP_32),
                        (1, 1) => r_type(0, rs2p, rdp, 0, rdp, OP_32),
                        _ => return None,
                    }
                }
            }
        }
        (1, 5) => {
            // C.J: offset[11|4|9:8|10|6|7|3:1|5]
            let imm = (bit(c, 12) << 11)
                | (bit(c, 11) << 4)
                | (bits(c, 10, 9) << 8)
                | (bit(c, 8) << 10)
                | (bit(c, 7) << 6)
                | (bit(c, 6) << 7)
                | (bits(c, 5, 3) << 1)
                | (bit(c, 2) << 5);
            j_type(sext(imm, 12), 0)
        }
        (1, 6) | (1, 7) => {
            // C.BEQZ / C.BNEZ: offset[8|4:3] at 12:10, [7:6|2:1|5] at 6:2
            let imm = (bit(c, 12) << 8)
                | (bits(c, 11, 10) << 3)
                | (bits(c, 6, 5) << 6)
                | (bits(c, 4, 3) << 1)
                | (bit(c, 2) << 5);
            b_type(sext(imm, 9), 0, rs1p, f3 - 6)
        }
        (2, 0) => {
            let sh = (bit(c, 12) << 5) | bits(c, 6, 2);
            i_type(sh as i32, rd, 1, rd, OP_IMM)
        }
        (2, 1) | (2, 3) => {
            // C.FLDSP / C.LDSP: uimm[5] at 12, [4:3] at 6:5, [8:6] at 4:2
            let imm = (bit(c, 12) << 5) | (bits(c, 6, 5) << 3) | (bits(c, 4, 2) << 6);
            if f3 == 3 && rd == 0 {
                return None;
            }
            i_type(imm as i32, 2, 3, rd, if f3 == 1 { LOAD_FP } else { LOAD })
        }
        (2, 2) => {
            // C.LWSP: uimm[5] at 12, [4:2] at 6:4, [7:6] at 3:2
            let imm = (bit(c, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
            if rd == 0 {
                return None;
            }
            i_type(imm as i32, 2, 2, rd, LOAD)
        }
        (2, 4) => match (bit(c, 12), rd, rs2) {
            (0, 0, 0) => return None,
            (0, _, 0) => i_type(0, rd, 0, 0, JALR),
            (0, _, _) => r_type(0, rs2, 0, 0, rd, OP),
            (1, 0, 0) => 0x0010_0073,
            (1, _, 0) => i_type(0, rd, 0, 1, JALR),
            _ => r_type(0, rs2, rd, 0, rd, OP),
        },
        (2, 5) | (2, 7) => {
            // C.FSDSP / C.SDSP: uimm[5:3] at 12:10, [8:6] at 9:7
            let imm = (bits(c, 12, 10) << 3) | (bits(c, 9, 7) << 6);
            s_type(
                imm as i32,
                rs2,
                2,
                3,
                if f3 == 5 { STORE_FP } else { STORE },
            )
        }
        (2, 6) => {
            // C.SWSP: uimm[5:2] at 12:9, [7:6] at 8:7
            let imm = (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6);
            s_type(imm as i32, rs2, 2, 2, STORE)
        }
        _ => return None,
    })
}

/// Every 16-bit instruction expanded ahead of time (0 where reserved; a
/// 32-bit instruction is never 0), so decoding one is a single load.
pub(crate) fn table() -> &'static [u32; 0x10000] {
    static TABLE: std::sync::OnceLock<Box<[u32; 0x10000]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new([0u32; 0x10000]);
        for (c, e) in t.iter_mut().enumerate() {
            if c & 3 != 3 {
                *e = expand(c as u32).unwrap_or(0);
            }
        }
        t
    })
}
