//! CRC-32C (Castagnoli): reflected polynomial `0x82F6_3B78`, initial value and final
//! XOR `0xFFFF_FFFF` (the CRC of iSCSI, RFC 3720 §12.1, and of ext4/btrfs metadata).
//!
//! On x86-64 with SSE4.2 the `crc32` instruction does the work, eight bytes per
//! instruction. One chain of those instructions waits for each result before the
//! next (about three cycles each), so a long buffer is cut into rounds of three
//! [`LANE`]-byte lanes computed side by side and joined with [`SHIFT`]: a lane's
//! CRC continued over `LANE` zero bytes, which is linear in the CRC and so four
//! table lookups. Elsewhere, slicing-by-8: eight 256-entry tables built at compile
//! time.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLES[0]` is the classic byte-at-a-time table; `TABLES[k][b]` is the CRC state
/// after byte `b` followed by `k` zero bytes.
static TABLES: [[u32; 256]; 8] = build_tables();

const fn build_tables() -> [[u32; 256]; 8] {
    let mut tables = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        tables[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = tables[k - 1][b];
            tables[k][b] = (prev >> 8) ^ tables[0][(prev & 0xff) as usize];
            b += 1;
        }
        k += 1;
    }
    tables
}

/// Bytes per lane of the interleaved SSE4.2 path; a round covers three lanes.
const LANE: usize = 4096;

/// `SHIFT[k][b]` is the CRC state reached from the state `b << 8k` by `LANE`
/// zero bytes. The map is linear (XOR), so any state's shift is the XOR of its
/// four bytes' entries.
static SHIFT: [[u32; 256]; 4] = build_shift();

/// The state after eight zero bytes from `crc`: one slicing-by-8 step on zeros.
const fn zeros8(crc: u32) -> u32 {
    TABLES[7][(crc & 0xff) as usize]
        ^ TABLES[6][((crc >> 8) & 0xff) as usize]
        ^ TABLES[5][((crc >> 16) & 0xff) as usize]
        ^ TABLES[4][(crc >> 24) as usize]
}

const fn build_shift() -> [[u32; 256]; 4] {
    // The image of each of the 32 single-bit states.
    let mut basis = [0u32; 32];
    let mut bit = 0;
    while bit < 32 {
        let mut crc = 1u32 << bit;
        let mut i = 0;
        while i < LANE / 8 {
            crc = zeros8(crc);
            i += 1;
        }
        basis[bit] = crc;
        bit += 1;
    }
    let mut shift = [[0u32; 256]; 4];
    let mut k = 0;
    while k < 4 {
        let mut b = 0;
        while b < 256 {
            let mut out = 0;
            let mut j = 0;
            while j < 8 {
                if b & (1 << j) != 0 {
                    out ^= basis[8 * k + j];
                }
                j += 1;
            }
            shift[k][b] = out;
            b += 1;
        }
        k += 1;
    }
    shift
}

/// The state reached from `crc` by `LANE` zero bytes.
fn shift_lane(crc: u32) -> u32 {
    SHIFT[0][(crc & 0xff) as usize]
        ^ SHIFT[1][((crc >> 8) & 0xff) as usize]
        ^ SHIFT[2][((crc >> 16) & 0xff) as usize]
        ^ SHIFT[3][(crc >> 24) as usize]
}

/// A running CRC-32C.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Crc32c(u32);

impl Crc32c {
    /// A CRC over no bytes yet.
    pub(crate) fn new() -> Self {
        Crc32c(0xFFFF_FFFF)
    }

    /// Feeds `data`.
    pub(crate) fn update(&mut self, data: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE4.2, checked just above.
            self.0 = unsafe { update_sse42(self.0, data) };
            return;
        }
        self.0 = update_tables(self.0, data);
    }

    /// The CRC of everything fed so far.
    pub(crate) fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// SSE4.2's `crc32` instruction computes CRC-32C on the same reflected state
/// as the tables: eight bytes per instruction, three independent chains at a time
/// over whole rounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let word = |bytes: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(bytes);
        u64::from_le_bytes(w)
    };
    let mut crc = crc;
    let mut rounds = data.chunks_exact(3 * LANE);
    for round in &mut rounds {
        let (a, rest) = round.split_at(LANE);
        let (b, c) = rest.split_at(LANE);
        // The CRC of the round from `crc` is that of lane a from `crc`, carried
        // over b and c, XOR b's from zero carried over c, XOR c's from zero.
        let (mut ca, mut cb, mut cc) = (u64::from(crc), 0u64, 0u64);
        for ((wa, wb), wc) in a
            .chunks_exact(8)
            .zip(b.chunks_exact(8))
            .zip(c.chunks_exact(8))
        {
            ca = _mm_crc32_u64(ca, word(wa));
            cb = _mm_crc32_u64(cb, word(wb));
            cc = _mm_crc32_u64(cc, word(wc));
        }
        crc = shift_lane(shift_lane(ca as u32) ^ cb as u32) ^ cc as u32;
    }
    let tail = rounds.remainder();
    let mut chunks = tail.chunks_exact(8);
    let mut wide = u64::from(crc);
    for chunk in &mut chunks {
        wide = _mm_crc32_u64(wide, word(chunk));
    }
    let mut crc = wide as u32;
    for &byte in chunks.remainder() {
        crc = _mm_crc32_u8(crc, byte);
    }
    crc
}

/// Slicing-by-8 over the tables.
fn update_tables(crc: u32, data: &[u8]) -> u32 {
    {
        let mut crc = crc;
        let mut chunks = data.chunks_exact(8);
        for chunk in &mut chunks {
            let lo = crc ^ u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            crc = TABLES[7][(lo & 0xff) as usize]
                ^ TABLES[6][((lo >> 8) & 0xff) as usize]
                ^ TABLES[5][((lo >> 16) & 0xff) as usize]
                ^ TABLES[4][(lo >> 24) as usize]
                ^ TABLES[3][usize::from(chunk[4])]
                ^ TABLES[2][usize::from(chunk[5])]
                ^ TABLES[1][usize::from(chunk[6])]
                ^ TABLES[0][usize::from(chunk[7])];
        }
        for &byte in chunks.remainder() {
            crc = (crc >> 8) ^ TABLES[0][((crc ^ u32::from(byte)) & 0xff) as usize];
        }
        crc
    }
}

/// The CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(data);
    crc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit at a time, straight from the definition: the reference the tables must match.
    fn crc32c_bitwise(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ POLY
                } else {
                    crc >> 1
                };
            }
        }
        crc ^ 0xFFFF_FFFF
    }

    #[test]
    fn test_crc32c_of_the_standard_check_string_is_e3069283() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn test_crc32c_of_32_zero_bytes_matches_rfc3720_appendix_b4() {
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn test_crc32c_of_32_ff_bytes_matches_rfc3720_appendix_b4() {
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn test_crc32c_slicing_matches_bitwise_at_every_length_and_split() {
        let data: Vec<u8> = (0..67u32).map(|i| (i * 37 + 11) as u8).collect();

        let mismatches: Vec<(usize, usize)> = (0..=data.len())
            .flat_map(|len| (0..=len).map(move |split| (len, split)))
            .filter(|&(len, split)| {
                let mut crc = Crc32c::new();
                crc.update(&data[..split]);
                crc.update(&data[split..len]);
                crc.finish() != crc32c_bitwise(&data[..len])
            })
            .collect();

        assert_eq!(mismatches, Vec::new());
    }
}

#[cfg(test)]
mod table_tests {
    use super::*;

    #[test]
    fn test_interleaved_rounds_match_the_tables_around_round_boundaries() {
        let data: Vec<u8> = (0..(7 * LANE + 100) as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let round = 3 * LANE;
        let lens = [
            round - 1,
            round,
            round + 1,
            round + 8,
            2 * round - 3,
            2 * round,
            2 * round + 7,
            data.len(),
        ];

        let mismatches: Vec<(usize, usize)> = lens
            .iter()
            .flat_map(|&len| [0, 1, 5, LANE, len / 2].map(move |split| (len, split.min(len))))
            .filter(|&(len, split)| {
                let mut crc = Crc32c::new();
                crc.update(&data[..split]);
                crc.update(&data[split..len]);
                crc.finish() != update_tables(0xFFFF_FFFF, &data[..len]) ^ 0xFFFF_FFFF
            })
            .collect();

        assert_eq!(mismatches, Vec::new());
    }

    #[test]
    fn test_shifting_a_state_by_a_lane_is_feeding_a_lane_of_zeros() {
        let zeros = vec![0u8; LANE];
        let states = [1u32, 0x8000_0000, 0xFFFF_FFFF, 0x1234_5678, 0xE306_9283];

        let mismatches: Vec<u32> = states
            .into_iter()
            .filter(|&state| shift_lane(state) != update_tables(state, &zeros))
            .collect();

        assert_eq!(mismatches, Vec::new());
    }

    #[test]
    fn test_table_path_matches_the_dispatching_path_at_every_length() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 91 + 7) as u8).collect();

        let mismatches: Vec<usize> = (0..=data.len())
            .filter(|&len| {
                let mut crc = Crc32c::new();
                crc.update(&data[..len]);
                crc.finish() != update_tables(0xFFFF_FFFF, &data[..len]) ^ 0xFFFF_FFFF
            })
            .collect();

        assert_eq!(mismatches, Vec::new());
    }
}
