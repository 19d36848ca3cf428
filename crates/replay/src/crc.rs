//! CRC-32C (Castagnoli): reflected polynomial `0x82F6_3B78`, initial value and final
//! XOR `0xFFFF_FFFF` (the CRC of iSCSI, RFC 3720 §12.1, and of ext4/btrfs metadata).
//!
//! Slicing-by-8: eight 256-entry tables built at compile time, so a frame of logged
//! disk data is checked eight bytes per step.

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
/// as the tables: eight bytes per instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn update_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut chunks = data.chunks_exact(8);
    let mut wide = u64::from(crc);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        wide = _mm_crc32_u64(wide, u64::from_le_bytes(word));
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
