//! Helpers to decode accesses narrower than the register they fall in.

/// The mask of the low `size` bytes, or `None` for a size other than 1, 2, 4 or 8.
pub(crate) fn size_mask(size: u8) -> Option<u64> {
    match size {
        1 => Some(0xff),
        2 => Some(0xffff),
        4 => Some(0xffff_ffff),
        8 => Some(u64::MAX),
        _ => None,
    }
}

/// The byte offset of the access `[offset, offset + size)` within the register of
/// `width` bytes at `base`, if the access lies entirely inside it.
pub(crate) fn within(offset: u64, size: u8, base: u64, width: u64) -> Option<u64> {
    size_mask(size)?;
    let byte = offset.checked_sub(base)?;
    (byte.checked_add(u64::from(size))? <= width).then_some(byte)
}

/// The `size` bytes at byte `byte` of the little-endian register `reg`.
pub(crate) fn read_part(reg: u64, byte: u64, size: u8) -> u64 {
    let shift = u32::try_from(byte * 8).unwrap_or(u32::MAX);
    reg.checked_shr(shift).unwrap_or(0) & size_mask(size).unwrap_or(0)
}

/// `reg` with its `size` bytes at byte `byte` replaced by the low bytes of `value`.
pub(crate) fn write_part(reg: u64, byte: u64, size: u8, value: u64) -> u64 {
    let shift = u32::try_from(byte * 8).unwrap_or(u32::MAX);
    let mask = size_mask(size).unwrap_or(0).checked_shl(shift).unwrap_or(0);
    (reg & !mask) | (value.checked_shl(shift).unwrap_or(0) & mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_within_accepts_upper_half_of_a_64_bit_register() {
        let byte = within(0x4004, 4, 0x4000, 8);

        assert_eq!(byte, Some(4));
    }

    #[test]
    fn test_within_rejects_an_access_straddling_the_register_end() {
        let byte = within(0x4006, 4, 0x4000, 8);

        assert_eq!(byte, None);
    }

    #[test]
    fn test_within_rejects_an_odd_size() {
        let byte = within(0x4000, 3, 0x4000, 8);

        assert_eq!(byte, None);
    }

    #[test]
    fn test_write_part_replaces_only_the_addressed_bytes() {
        let reg = write_part(0x1111_2222_3333_4444, 4, 4, 0xaaaa_bbbb);

        assert_eq!(reg, 0xaaaa_bbbb_3333_4444);
    }

    #[test]
    fn test_read_part_extracts_the_addressed_bytes() {
        let value = read_part(0x1111_2222_3333_4444, 2, 2);

        assert_eq!(value, 0x3333);
    }
}
