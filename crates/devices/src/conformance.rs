//! The save/restore conformance tests every device instantiates.

/// Generates a `persist_conformance` test module for a device.
///
/// - `device`: the device type, which implements [`crate::Persist`];
/// - `new`: an expression building a device in its power-on state;
/// - `drive`: a `fn(&mut Device)` that moves it through register writes into a state
///   with something in every field that matters;
/// - `probe`: a `fn(&mut Device) -> Vec<u64>` that drives it further and returns what the
///   guest and the machine would observe (register reads, interrupt lines, output).
///
/// The tests check that a snapshot restores to the same snapshot, that a snapshot taken
/// before further changes brings those changes back, and that a restored device behaves
/// exactly as the original under `probe`.
macro_rules! persist_conformance_tests {
    (device: $device:ty, new: $new:expr, drive: $drive:expr, probe: $probe:expr $(,)?) => {
        mod persist_conformance {
            use super::*;
            use $crate::Persist;

            fn new_device() -> $device {
                $new
            }

            fn driven_device() -> $device {
                let mut device = new_device();
                ($drive)(&mut device);
                device
            }

            #[test]
            fn test_power_on_state_restores_to_the_same_state() {
                let snapshot = new_device().state();

                let restored = <$device as Persist>::restore(snapshot.clone())
                    .expect("a power-on state is valid");

                assert_eq!(restored.state(), snapshot);
            }

            #[test]
            fn test_driven_state_restores_to_the_same_state() {
                let snapshot = driven_device().state();

                let restored = <$device as Persist>::restore(snapshot.clone())
                    .expect("a state taken from a live device is valid");

                assert_eq!(restored.state(), snapshot);
            }

            #[test]
            fn test_driven_state_differs_from_power_on_state() {
                let driven = driven_device().state();

                let power_on = new_device().state();

                assert_ne!(driven, power_on);
            }

            #[test]
            fn test_snapshot_then_change_then_restore_gives_the_snapshot_back() {
                let mut device = driven_device();
                let snapshot = device.state();
                ($probe)(&mut device);

                let restored = <$device as Persist>::restore(snapshot.clone())
                    .expect("a state taken from a live device is valid");

                assert_eq!(restored.state(), snapshot);
            }

            #[test]
            fn test_restored_device_behaves_the_same() {
                let mut original = driven_device();
                let mut restored = <$device as Persist>::restore(original.state())
                    .expect("a state taken from a live device is valid");

                let observed = ($probe)(&mut restored);

                assert_eq!(observed, ($probe)(&mut original));
                assert_eq!(restored.state(), original.state());
            }
        }
    };
}
