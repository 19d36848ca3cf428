//! State digests: a cheap fingerprint of the whole machine, compared between
//! a recording and its replay (or a primary and its backup) to detect
//! divergence at the point where it appears.
//!
//! The digest has four 64-bit parts so that a mismatch says what differs:
//! the hart's registers, its CSRs and privilege, the devices, and RAM. RAM is
//! kept cheap by hashing only the pages the hart reports as possibly written
//! since the previous digest, folding per-page hashes into one value that is
//! updated incrementally.

use crate::Board;
use ftvm_cpu::Hart;
use std::fmt::Debug;

/// The parts of a state digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Digest {
    /// pc, integer and floating-point registers, icount.
    pub registers: u64,
    /// CSRs, privilege, reservation, WFI.
    pub csrs: u64,
    /// Every device's state.
    pub devices: u64,
    /// RAM.
    pub ram: u64,
}

impl Digest {
    /// The 32 bytes carried in the log.
    pub fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, v) in [self.registers, self.csrs, self.devices, self.ram]
            .into_iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// The digest from its 32 log bytes.
    pub fn from_bytes(b: [u8; 32]) -> Digest {
        let part = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Digest {
            registers: part(0),
            csrs: part(1),
            devices: part(2),
            ram: part(3),
        }
    }

    /// Names the parts that differ from `other`.
    pub fn differences(&self, other: &Digest) -> Vec<&'static str> {
        [
            ("registers", self.registers != other.registers),
            ("CSRs", self.csrs != other.csrs),
            ("devices", self.devices != other.devices),
            ("RAM", self.ram != other.ram),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
    }
}

/// A 64-bit hash of bytes: XXH3-64, the log's hash (`ftvm_replay::hash_bytes`).
/// Not cryptographic; fast and stable. Every input bit reaches every output
/// bit (an earlier multiply-rotate hash here let a flip of a word's top bit
/// in one 32-byte block cancel a flip in the next).
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    ftvm_replay::hash_bytes(bytes)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn hash_debug(value: &impl Debug) -> u64 {
    hash_bytes(format!("{value:?}").as_bytes())
}

/// Keeps the per-page hashes of RAM between digests.
#[derive(Clone, Debug, Default)]
pub struct RamHasher {
    pages: Vec<u64>,
    folded: u64,
}

impl RamHasher {
    /// Brings the page hashes up to date for `dirty` pages and returns the
    /// RAM part of the digest.
    pub fn update(&mut self, ram: &[u8], dirty: &[usize]) -> u64 {
        let count = ram.len().div_ceil(4096);
        if self.pages.len() != count {
            // First use: hash everything once.
            self.pages = ram.chunks(4096).map(hash_bytes).collect();
            self.folded = self
                .pages
                .iter()
                .enumerate()
                .fold(0, |acc, (i, h)| acc ^ mix(*h ^ i as u64));
            return self.folded;
        }
        for &page in dirty {
            let Some(bytes) = ram.get(page * 4096..((page + 1) * 4096).min(ram.len())) else {
                continue;
            };
            let new = hash_bytes(bytes);
            let old = std::mem::replace(&mut self.pages[page], new);
            self.folded ^= mix(old ^ page as u64) ^ mix(new ^ page as u64);
        }
        self.folded
    }
}

/// Digests the hart and the board; `ram` is the RAM part from [`RamHasher`].
pub fn digest(hart: &Hart, board: &Board, ram: u64) -> Digest {
    let s = hart.state();
    let registers = hash_debug(&(s.pc, &s.x, &s.f, s.fflags, s.frm, s.icount));
    let csrs = hash_debug(&(&s.csr, s.privilege, s.reservation, s.wfi));
    let virtio: Vec<_> = board.virtio.iter().map(|v| v.state()).collect();
    let devices = hash_debug(&(
        board.clint.state(),
        board.plic.state(),
        board.uart.state(),
        board.test.state(),
        board.rtc.state(),
        virtio,
    ));
    Digest {
        registers,
        csrs,
        devices,
        ram,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_incremental_ram_hash_equals_a_full_rehash() {
        let mut ram = vec![0u8; 4 * 4096];
        let mut incremental = RamHasher::default();
        incremental.update(&ram, &[]);
        ram[2 * 4096 + 17] = 0xaa;

        let updated = incremental.update(&ram, &[2]);

        assert_eq!(updated, RamHasher::default().update(&ram, &[]));
    }

    #[test]
    fn test_digest_bytes_round_trip_and_name_differences() {
        let a = Digest {
            registers: 1,
            csrs: 2,
            devices: 3,
            ram: 4,
        };
        let b = Digest { ram: 5, ..a };

        assert_eq!(
            (Digest::from_bytes(a.to_bytes()), a.differences(&b)),
            (a, vec!["RAM"])
        );
    }

    #[test]
    fn test_hash_bytes_sees_a_single_bit_anywhere() {
        let base = vec![0u8; 100];
        let flipped: Vec<u64> = (0..100)
            .map(|i| {
                let mut v = base.clone();
                v[i] ^= 1;
                hash_bytes(&v)
            })
            .collect();

        assert!(flipped.iter().all(|&h| h != hash_bytes(&base)));
    }
}
