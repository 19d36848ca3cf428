//! The SiFive PLIC (platform-level interrupt controller) as QEMU's `virt` board has it
//! for one hart: 96 interrupt sources (1..=95; source 0 does not exist), 7 priority
//! levels, and two contexts, 0 = hart 0 M-mode and 1 = hart 0 S-mode.
//!
//! Register map (RISC-V PLIC specification, "Memory map"):
//!
//! | offset                        | register                                   |
//! |-------------------------------|--------------------------------------------|
//! | `0x000000 + 4·id`             | source priority (0 = never interrupts)     |
//! | `0x001000 + 4·word`           | pending bits, read-only                    |
//! | `0x002000 + 0x80·ctx + 4·word`| enable bits of context `ctx`               |
//! | `0x200000 + 0x1000·ctx`       | priority threshold of context `ctx`        |
//! | `0x200004 + 0x1000·ctx`       | claim (read) / complete (write)            |
//!
//! Registers are 32 bits wide: 4-byte aligned accesses of 4 bytes are decoded, an 8-byte
//! access acts as two 4-byte accesses (low word first), anything else reads 0 and is
//! ignored on write.
//!
//! Sources are level-triggered (PLIC spec, "Interrupt gateways"): while a source's level
//! is high and it is not claimed, it is pending. A claim clears the pending bit and the
//! source stays quiet until its completion; after completion it pends again if its level
//! is still high. As in QEMU, a level that drops before the claim withdraws the pending
//! request, so the hart never claims an interrupt its device has already retracted.

use crate::state::{check_bits, check_max, Persist, StateError};
use crate::MmioDevice;

/// Number of interrupt sources, counting the nonexistent source 0.
pub const NUM_SOURCES: usize = 96;
/// Number of contexts: 0 = hart 0 M-mode, 1 = hart 0 S-mode.
pub const NUM_CONTEXTS: usize = 2;
/// Highest priority (and threshold) value; `riscv,ndev`'s 3 priority bits.
pub const MAX_PRIORITY: u32 = 7;
/// 32-bit words in a per-source bit array.
pub const NUM_WORDS: usize = NUM_SOURCES / 32;

/// Offset of the source priority registers.
pub const PRIORITY_BASE: u64 = 0x0;
/// Offset of the pending bits.
pub const PENDING_BASE: u64 = 0x1000;
/// Offset of context 0's enable bits.
pub const ENABLE_BASE: u64 = 0x2000;
/// Distance between two contexts' enable bits.
pub const ENABLE_STRIDE: u64 = 0x80;
/// Offset of context 0's threshold register.
pub const CONTEXT_BASE: u64 = 0x20_0000;
/// Distance between two contexts' threshold registers.
pub const CONTEXT_STRIDE: u64 = 0x1000;
/// Offset of the claim/complete register within a context.
pub const CLAIM_COMPLETE: u64 = 0x4;

const DEVICE: &str = "PLIC";
/// Bits of word 0 that exist (source 0 does not).
const WORD0_VALID: u32 = !1;

/// The PLIC of a one-hart `virt` board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plic {
    priority: [u32; NUM_SOURCES],
    pending: [u32; NUM_WORDS],
    claimed: [u32; NUM_WORDS],
    level: [u32; NUM_WORDS],
    enable: [[u32; NUM_WORDS]; NUM_CONTEXTS],
    threshold: [u32; NUM_CONTEXTS],
}

/// The plain-data state of a [`Plic`]. Bit arrays hold source `id` at bit `id % 32` of
/// word `id / 32`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlicState {
    /// Priority of each source, 0..=[`MAX_PRIORITY`]; entry 0 must be 0.
    pub priority: [u32; NUM_SOURCES],
    /// Pending bits: sources whose level is high and that are not claimed.
    pub pending: [u32; NUM_WORDS],
    /// Sources claimed by a context and not yet completed.
    pub claimed: [u32; NUM_WORDS],
    /// Input level of each source's interrupt line.
    pub level: [u32; NUM_WORDS],
    /// Enable bits per context.
    pub enable: [[u32; NUM_WORDS]; NUM_CONTEXTS],
    /// Priority threshold per context, 0..=[`MAX_PRIORITY`].
    pub threshold: [u32; NUM_CONTEXTS],
}

fn bit(words: &[u32; NUM_WORDS], id: usize) -> bool {
    words
        .get(id / 32)
        .is_some_and(|word| word & (1 << (id % 32)) != 0)
}

fn set_bit(words: &mut [u32; NUM_WORDS], id: usize, value: bool) {
    if let Some(word) = words.get_mut(id / 32) {
        if value {
            *word |= 1 << (id % 32);
        } else {
            *word &= !(1 << (id % 32));
        }
    }
}

/// The source id `irq` if it names an existing source.
fn source(irq: u32) -> Option<usize> {
    let id = usize::try_from(irq).ok()?;
    (1..NUM_SOURCES).contains(&id).then_some(id)
}

impl Plic {
    /// Size of the decoded register space: up to the last context's claim register.
    pub const MMIO_SIZE: u64 = CONTEXT_BASE + CONTEXT_STRIDE * NUM_CONTEXTS as u64;

    /// A PLIC at reset: every priority, enable bit and threshold 0, nothing pending.
    pub fn new() -> Plic {
        Plic {
            priority: [0; NUM_SOURCES],
            pending: [0; NUM_WORDS],
            claimed: [0; NUM_WORDS],
            level: [0; NUM_WORDS],
            enable: [[0; NUM_WORDS]; NUM_CONTEXTS],
            threshold: [0; NUM_CONTEXTS],
        }
    }

    /// Sets the level of source `irq`'s interrupt line. Ids outside 1..=95 are ignored.
    pub fn set_level(&mut self, irq: u32, level: bool) {
        let Some(id) = source(irq) else { return };
        set_bit(&mut self.level, id, level);
        let pend = level && !bit(&self.claimed, id);
        set_bit(&mut self.pending, id, pend);
    }

    /// The external interrupt line of context `context`: some enabled source is pending
    /// with a priority above the context's threshold. False for a context that does not
    /// exist.
    pub fn interrupt(&self, context: usize) -> bool {
        self.best(context) != 0
    }

    /// The machine external interrupt line of hart 0 (`mip.MEIP`, context 0).
    pub fn meip(&self) -> bool {
        self.interrupt(0)
    }

    /// The supervisor external interrupt line of hart 0 (`mip.SEIP`, context 1).
    pub fn seip(&self) -> bool {
        self.interrupt(1)
    }

    /// The device's complete state.
    pub fn state(&self) -> PlicState {
        PlicState {
            priority: self.priority,
            pending: self.pending,
            claimed: self.claimed,
            level: self.level,
            enable: self.enable,
            threshold: self.threshold,
        }
    }

    /// The pending enabled source of highest priority above `context`'s threshold
    /// (ties go to the lowest id), or 0.
    fn best(&self, context: usize) -> u32 {
        let (Some(enable), Some(&threshold)) =
            (self.enable.get(context), self.threshold.get(context))
        else {
            return 0;
        };
        // Only sources both pending and enabled, in increasing id order (the
        // lowest id wins a tie); the hart asks after every MMIO access.
        let mut best = (0, threshold);
        for (w, (&pending, &enabled)) in self.pending.iter().zip(enable).enumerate() {
            let mut bits = pending & enabled;
            while bits != 0 {
                let id = w * 32 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let priority = self.priority.get(id).copied().unwrap_or(0);
                if id != 0 && priority > best.1 {
                    best = (id, priority);
                }
            }
        }
        u32::try_from(best.0).unwrap_or(0)
    }

    /// Claims the best source for `context`: it stops pending until completed.
    fn claim(&mut self, context: usize) -> u32 {
        let id = self.best(context);
        if let Some(source) = source(id) {
            set_bit(&mut self.pending, source, false);
            set_bit(&mut self.claimed, source, true);
        }
        id
    }

    /// Completes `id` for `context`. Ignored (PLIC spec, "Interrupt completion") unless
    /// the source exists and is enabled for the context.
    fn complete(&mut self, context: usize, id: u32) {
        let Some(source) = source(id) else { return };
        let enabled = self
            .enable
            .get(context)
            .is_some_and(|enable| bit(enable, source));
        if !enabled || !bit(&self.claimed, source) {
            return;
        }
        set_bit(&mut self.claimed, source, false);
        let level = bit(&self.level, source);
        set_bit(&mut self.pending, source, level);
    }

    fn read32(&mut self, offset: u64) -> u32 {
        match Register::decode(offset) {
            Some(Register::Priority(id)) => self.priority.get(id).copied().unwrap_or(0),
            Some(Register::Pending(word)) => self.pending.get(word).copied().unwrap_or(0),
            Some(Register::Enable(ctx, word)) => self
                .enable
                .get(ctx)
                .and_then(|enable| enable.get(word))
                .copied()
                .unwrap_or(0),
            Some(Register::Threshold(ctx)) => self.threshold.get(ctx).copied().unwrap_or(0),
            Some(Register::ClaimComplete(ctx)) => self.claim(ctx),
            None => 0,
        }
    }

    fn write32(&mut self, offset: u64, value: u32) {
        match Register::decode(offset) {
            Some(Register::Priority(id)) => {
                if let Some(priority) = self.priority.get_mut(id).filter(|_| id != 0) {
                    *priority = value & MAX_PRIORITY;
                }
            }
            Some(Register::Enable(ctx, word)) => {
                let valid = if word == 0 { WORD0_VALID } else { u32::MAX };
                if let Some(enable) = self.enable.get_mut(ctx).and_then(|e| e.get_mut(word)) {
                    *enable = value & valid;
                }
            }
            Some(Register::Threshold(ctx)) => {
                if let Some(threshold) = self.threshold.get_mut(ctx) {
                    *threshold = value & MAX_PRIORITY;
                }
            }
            Some(Register::ClaimComplete(ctx)) => self.complete(ctx, value),
            Some(Register::Pending(_)) | None => {}
        }
    }
}

/// A decoded 32-bit register.
enum Register {
    Priority(usize),
    Pending(usize),
    Enable(usize, usize),
    Threshold(usize),
    ClaimComplete(usize),
}

impl Register {
    fn decode(offset: u64) -> Option<Register> {
        if offset & 3 != 0 {
            return None;
        }
        let index = |base: u64, stride: u64| usize::try_from((offset - base) / stride).ok();
        let words = NUM_WORDS as u64 * 4;
        let contexts = NUM_CONTEXTS as u64;
        if offset < PENDING_BASE {
            Some(Register::Priority(index(PRIORITY_BASE, 4)?))
                .filter(|_| offset < 4 * NUM_SOURCES as u64)
        } else if (PENDING_BASE..PENDING_BASE + words).contains(&offset) {
            Some(Register::Pending(index(PENDING_BASE, 4)?))
        } else if (ENABLE_BASE..ENABLE_BASE + ENABLE_STRIDE * contexts).contains(&offset) {
            let within = (offset - ENABLE_BASE) % ENABLE_STRIDE;
            let word = usize::try_from(within / 4).ok()?;
            (within < words).then_some(Register::Enable(index(ENABLE_BASE, ENABLE_STRIDE)?, word))
        } else if (CONTEXT_BASE..CONTEXT_BASE + CONTEXT_STRIDE * contexts).contains(&offset) {
            let ctx = index(CONTEXT_BASE, CONTEXT_STRIDE)?;
            match (offset - CONTEXT_BASE) % CONTEXT_STRIDE {
                0 => Some(Register::Threshold(ctx)),
                CLAIM_COMPLETE => Some(Register::ClaimComplete(ctx)),
                _ => None,
            }
        } else {
            None
        }
    }
}

impl Default for Plic {
    fn default() -> Plic {
        Plic::new()
    }
}

impl MmioDevice for Plic {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match size {
            4 => u64::from(self.read32(offset)),
            8 => {
                let low = u64::from(self.read32(offset));
                let high = offset
                    .checked_add(4)
                    .map_or(0, |next| u64::from(self.read32(next)));
                low | high << 32
            }
            _ => 0,
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        match size {
            4 => self.write32(offset, value as u32),
            8 => {
                self.write32(offset, value as u32);
                if let Some(next) = offset.checked_add(4) {
                    self.write32(next, (value >> 32) as u32);
                }
            }
            _ => {}
        }
    }
}

impl TryFrom<PlicState> for Plic {
    type Error = StateError;

    /// Checks that priorities and thresholds are in range, that no bit names source 0,
    /// and that pending, claimed and level agree: a pending source has its level high
    /// and is not claimed.
    fn try_from(state: PlicState) -> Result<Plic, StateError> {
        check_max(
            DEVICE,
            || "priority[0]".to_string(),
            state.priority[0].into(),
            0,
        )?;
        for (id, &priority) in state.priority.iter().enumerate() {
            check_max(
                DEVICE,
                || format!("priority[{id}]"),
                priority.into(),
                MAX_PRIORITY.into(),
            )?;
        }
        for (ctx, &threshold) in state.threshold.iter().enumerate() {
            check_max(
                DEVICE,
                || format!("threshold[{ctx}]"),
                threshold.into(),
                MAX_PRIORITY.into(),
            )?;
        }
        let arrays = [
            ("pending", &state.pending),
            ("claimed", &state.claimed),
            ("level", &state.level),
            ("enable[0]", &state.enable[0]),
            ("enable[1]", &state.enable[1]),
        ];
        for (name, words) in arrays {
            check_bits(
                DEVICE,
                || format!("{name}[0]"),
                words[0].into(),
                WORD0_VALID.into(),
            )?;
        }
        for word in 0..NUM_WORDS {
            let pending = state.pending[word];
            if pending & state.claimed[word] != 0 {
                return Err(StateError::Inconsistent {
                    device: DEVICE,
                    field: format!("pending[{word}]"),
                    value: pending.into(),
                    reason: "a claimed source cannot be pending until it is completed",
                });
            }
            if pending & !state.level[word] != 0 {
                return Err(StateError::Inconsistent {
                    device: DEVICE,
                    field: format!("pending[{word}]"),
                    value: pending.into(),
                    reason: "a source whose level is low cannot be pending",
                });
            }
        }
        Ok(Plic {
            priority: state.priority,
            pending: state.pending,
            claimed: state.claimed,
            level: state.level,
            enable: state.enable,
            threshold: state.threshold,
        })
    }
}

impl Persist for Plic {
    type State = PlicState;

    fn state(&self) -> PlicState {
        Plic::state(self)
    }

    fn restore(state: PlicState) -> Result<Plic, StateError> {
        Plic::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S_CLAIM: u64 = CONTEXT_BASE + CONTEXT_STRIDE + CLAIM_COMPLETE;
    const S_THRESHOLD: u64 = CONTEXT_BASE + CONTEXT_STRIDE;
    const S_ENABLE: u64 = ENABLE_BASE + ENABLE_STRIDE;

    /// A PLIC with sources 10 and 11 at the given priorities, both enabled for S-mode.
    fn plic_with(priority_10: u32, priority_11: u32) -> Plic {
        let mut plic = Plic::new();
        plic.write(4 * 10, 4, priority_10.into());
        plic.write(4 * 11, 4, priority_11.into());
        plic.write(S_ENABLE, 4, (1 << 10) | (1 << 11));
        plic
    }

    #[test]
    fn test_plic_claim_when_nothing_pending_returns_zero() {
        let mut plic = plic_with(1, 1);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 0);
    }

    #[test]
    fn test_plic_level_high_raises_seip() {
        let mut plic = plic_with(1, 1);

        plic.set_level(10, true);

        assert!(plic.seip());
        assert!(!plic.meip());
    }

    #[test]
    fn test_plic_claim_returns_highest_priority_source() {
        let mut plic = plic_with(2, 5);
        plic.set_level(10, true);
        plic.set_level(11, true);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 11);
    }

    #[test]
    fn test_plic_claim_ties_go_to_lowest_id() {
        let mut plic = plic_with(3, 3);
        plic.set_level(11, true);
        plic.set_level(10, true);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 10);
    }

    #[test]
    fn test_plic_threshold_masks_priority_at_or_below_it() {
        let mut plic = plic_with(3, 3);
        plic.write(S_THRESHOLD, 4, 3);
        plic.set_level(10, true);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 0);
        assert!(!plic.seip());
    }

    #[test]
    fn test_plic_threshold_passes_priority_above_it() {
        let mut plic = plic_with(4, 3);
        plic.write(S_THRESHOLD, 4, 3);
        plic.set_level(10, true);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 10);
    }

    #[test]
    fn test_plic_priority_zero_never_interrupts() {
        let mut plic = plic_with(0, 0);
        plic.set_level(10, true);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 0);
    }

    #[test]
    fn test_plic_disabled_source_is_pending_but_not_claimable() {
        let mut plic = plic_with(1, 1);
        plic.set_level(12, true);
        plic.write(4 * 12, 4, 1);

        let id = plic.read(S_CLAIM, 4);

        assert_eq!(id, 0);
        assert_eq!(plic.read(PENDING_BASE, 4), 1 << 12);
    }

    #[test]
    fn test_plic_claimed_source_does_not_repend_until_completed() {
        let mut plic = plic_with(1, 1);
        plic.set_level(10, true);
        plic.read(S_CLAIM, 4);

        plic.set_level(10, true);

        assert_eq!(plic.read(PENDING_BASE, 4), 0);
        assert!(!plic.seip());
    }

    #[test]
    fn test_plic_complete_with_level_still_high_pends_again() {
        let mut plic = plic_with(1, 1);
        plic.set_level(10, true);
        plic.read(S_CLAIM, 4);

        plic.write(S_CLAIM, 4, 10);

        assert!(plic.seip());
        assert_eq!(plic.read(S_CLAIM, 4), 10);
    }

    #[test]
    fn test_plic_complete_after_level_dropped_stays_quiet() {
        let mut plic = plic_with(1, 1);
        plic.set_level(10, true);
        plic.read(S_CLAIM, 4);
        plic.set_level(10, false);

        plic.write(S_CLAIM, 4, 10);

        assert!(!plic.seip());
        assert_eq!(plic.read(PENDING_BASE, 4), 0);
    }

    #[test]
    fn test_plic_complete_of_disabled_source_is_ignored() {
        let mut plic = plic_with(1, 1);
        plic.set_level(10, true);
        plic.read(S_CLAIM, 4);
        plic.write(S_ENABLE, 4, 0);

        plic.write(S_CLAIM, 4, 10);

        assert_eq!(plic.state().claimed[0], 1 << 10);
    }

    #[test]
    fn test_plic_level_low_withdraws_pending_request() {
        let mut plic = plic_with(1, 1);
        plic.set_level(10, true);

        plic.set_level(10, false);

        assert!(!plic.seip());
        assert_eq!(plic.read(S_CLAIM, 4), 0);
    }

    #[test]
    fn test_plic_priority_write_keeps_three_bits() {
        let mut plic = Plic::new();

        plic.write(4 * 5, 4, 0xff);

        assert_eq!(plic.read(4 * 5, 4), 7);
    }

    #[test]
    fn test_plic_source_zero_priority_and_enable_are_hardwired_zero() {
        let mut plic = Plic::new();

        plic.write(0, 4, 7);
        plic.write(ENABLE_BASE, 4, u64::from(u32::MAX));

        assert_eq!(plic.read(0, 4), 0);
        assert_eq!(plic.read(ENABLE_BASE, 4), 0xffff_fffe);
    }

    #[test]
    fn test_plic_contexts_have_separate_enables() {
        let mut plic = Plic::new();
        plic.write(4 * 3, 4, 1);
        plic.write(ENABLE_BASE, 4, 1 << 3);
        plic.set_level(3, true);

        let lines = (plic.meip(), plic.seip());

        assert_eq!(lines, (true, false));
    }

    #[test]
    fn test_plic_source_above_95_is_ignored() {
        let mut plic = Plic::new();
        plic.write(ENABLE_BASE + 8, 4, u64::from(u32::MAX));
        plic.write(4 * 95, 4, 1);

        plic.set_level(96, true);
        plic.set_level(95, true);

        assert_eq!(plic.read(ENABLE_BASE + 0x8, 4), 0xffff_ffff);
        assert_eq!(plic.read(CONTEXT_BASE + CLAIM_COMPLETE, 4), 95);
    }

    #[test]
    fn test_plic_odd_size_access_reads_zero() {
        let mut plic = plic_with(6, 1);

        let value = plic.read(4 * 10, 1);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_plic_restore_rejects_priority_out_of_range() {
        let mut state = Plic::new().state();
        state.priority[9] = 8;

        let error = Plic::try_from(state).expect_err("priority 8 is out of range");

        assert_eq!(
            error,
            StateError::OutOfRange {
                device: "PLIC",
                field: "priority[9]".to_string(),
                value: 8,
                max: 7
            }
        );
    }

    #[test]
    fn test_plic_restore_rejects_claimed_source_that_is_pending() {
        let mut state = Plic::new().state();
        state.level[0] = 1 << 10;
        state.pending[0] = 1 << 10;
        state.claimed[0] = 1 << 10;

        let error = Plic::try_from(state).expect_err("claimed and pending is inconsistent");

        assert!(matches!(error, StateError::Inconsistent { field, .. } if field == "pending[0]"));
    }

    #[test]
    fn test_plic_restore_rejects_source_zero_bits() {
        let mut state = Plic::new().state();
        state.enable[1][0] = 1;

        let error = Plic::try_from(state).expect_err("source 0 does not exist");

        assert!(matches!(error, StateError::ReservedBits { field, .. } if field == "enable[1][0]"));
    }

    persist_conformance_tests! {
        device: Plic,
        new: Plic::new(),
        drive: |plic: &mut Plic| {
            plic.write(4 * 10, 4, 3);
            plic.write(4 * 11, 4, 5);
            plic.write(4, 4, 1);
            plic.write(ENABLE_BASE, 4, 1 << 1);
            plic.write(S_ENABLE, 4, (1 << 10) | (1 << 11));
            plic.write(S_THRESHOLD, 4, 2);
            plic.set_level(10, true);
            plic.set_level(11, true);
            plic.set_level(1, true);
            plic.read(S_CLAIM, 4);
        },
        probe: |plic: &mut Plic| {
            let mut seen = vec![u64::from(plic.seip()), u64::from(plic.meip())];
            seen.push(plic.read(S_CLAIM, 4));
            plic.write(S_CLAIM, 4, 11);
            seen.push(plic.read(S_CLAIM, 4));
            plic.set_level(11, false);
            plic.write(S_CLAIM, 4, 10);
            seen.push(plic.read(S_CLAIM, 4));
            seen.push(plic.read(CONTEXT_BASE + CLAIM_COMPLETE, 4));
            seen.push(plic.read(PENDING_BASE, 4));
            seen
        },
    }
}
