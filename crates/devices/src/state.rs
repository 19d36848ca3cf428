//! Saving and restoring device state.
//!
//! Each device `Foo` has a plain-data `FooState` (public fields, no invariants of its
//! own): [`Persist::state`] takes one from a live device, and `Foo::try_from(state)` (or
//! [`Persist::restore`]) turns one back into a live device after checking every field,
//! because a state read from a snapshot file or received over the network is untrusted
//! until validated.

use std::fmt::Debug;

/// A device whose state can be saved as plain data and restored from it.
pub trait Persist: Sized {
    /// The device's plain-data state.
    type State: Clone + Debug + PartialEq + Eq;

    /// The device's complete state.
    fn state(&self) -> Self::State;

    /// A device in `state`, or the first field that is out of range or inconsistent.
    fn restore(state: Self::State) -> Result<Self, StateError>;
}

/// A device state that cannot be restored: the field and value that are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A field holds a value above the largest one the device can hold.
    #[error("Invalid {device} state: {field} is {value:#x}, above the maximum {max:#x}")]
    OutOfRange {
        /// The device, as the specs name it.
        device: &'static str,
        /// The field, with its index for arrays (`priority[3]`).
        field: String,
        /// The value found.
        value: u64,
        /// The largest valid value.
        max: u64,
    },
    /// A field sets bits the register does not implement.
    #[error(
        "Invalid {device} state: {field} is {value:#x}, which sets reserved bits {reserved:#x}"
    )]
    ReservedBits {
        /// The device, as the specs name it.
        device: &'static str,
        /// The field, with its index for arrays (`enable[1][0]`).
        field: String,
        /// The value found.
        value: u64,
        /// The bits of `value` that must be zero.
        reserved: u64,
    },
    /// A field contradicts another one.
    #[error("Invalid {device} state: {field} is {value:#x}, but {reason}")]
    Inconsistent {
        /// The device, as the specs name it.
        device: &'static str,
        /// The field, with its index for arrays.
        field: String,
        /// The value found.
        value: u64,
        /// Why the value cannot be: the other field it contradicts.
        reason: &'static str,
    },
}

/// Fails with [`StateError::OutOfRange`] when `value > max`.
pub(crate) fn check_max(
    device: &'static str,
    field: impl FnOnce() -> String,
    value: u64,
    max: u64,
) -> Result<(), StateError> {
    if value > max {
        return Err(StateError::OutOfRange {
            device,
            field: field(),
            value,
            max,
        });
    }
    Ok(())
}

/// Fails with [`StateError::ReservedBits`] when `value` sets a bit outside `valid`.
pub(crate) fn check_bits(
    device: &'static str,
    field: impl FnOnce() -> String,
    value: u64,
    valid: u64,
) -> Result<(), StateError> {
    if value & !valid != 0 {
        return Err(StateError::ReservedBits {
            device,
            field: field(),
            value,
            reserved: value & !valid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_out_of_range_message_names_field_and_value() {
        let error =
            check_max("PLIC", || "priority[3]".to_string(), 9, 7).expect_err("out of range");

        assert_eq!(
            error.to_string(),
            "Invalid PLIC state: priority[3] is 0x9, above the maximum 0x7"
        );
    }

    #[test]
    fn test_reserved_bits_message_names_the_reserved_bits() {
        let error = check_bits("UART", || "ier".to_string(), 0x4f, 0x0f).expect_err("out of range");

        assert_eq!(
            error.to_string(),
            "Invalid UART state: ier is 0x4f, which sets reserved bits 0x40"
        );
    }
}
