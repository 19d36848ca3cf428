//! `ftvm demo`, the README's main job, end to end: a pair on loopback on the
//! default guest, the primary killed with SIGKILL mid-workload, the backup
//! going live. The demo itself checks the console's numbered lines across
//! the failover; this test asserts what it reports. Needs the guest images
//! (`ftvm images fetch`); no root.

mod common;

use common::{guest_images, Vm};
use std::ffi::OsString;
use std::time::Duration;

#[test]
fn test_demo_fails_over_without_a_gap_in_the_console() {
    let _ = guest_images();
    let args: Vec<OsString> = ["demo", "--kill-after", "3", "--watch", "3"]
        .iter()
        .map(OsString::from)
        .collect();

    let (status, out) = Vm::spawn(None, &args).wait(Duration::from_secs(900));

    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(out.contains("[primary] tick 1"), "{out}");
    assert!(out.contains("SIGKILL to the primary"), "{out}");
    assert!(out.contains("failover time: "), "{out}");
    assert!(out.contains("; no gap;"), "{out}");
}

/// `ftvm demo --rejoin`: after the failover a new backup joins the new
/// primary, which is killed in turn; the numbered lines of all three
/// consoles together have no gap.
#[test]
fn test_demo_with_rejoin_fails_over_twice_without_a_gap() {
    let _ = guest_images();
    let args: Vec<OsString> = ["demo", "--rejoin", "--kill-after", "3", "--watch", "2"]
        .iter()
        .map(OsString::from)
        .collect();

    let (status, out) = Vm::spawn(None, &args).wait(Duration::from_secs(900));

    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(out.contains("paired again"), "{out}");
    assert!(out.contains("SIGKILL to the new primary"), "{out}");
    assert!(out.contains("second failover time: "), "{out}");
    assert!(out.contains("[new    ] tick"), "{out}");
    assert!(out.contains("; no gap;"), "{out}");
}
