//! `ftvm demo --net` end to end: the demo's pair on a network of namespaces, a
//! TCP client in its own namespace on one connection to a counter service in
//! the guest, the primary killed with SIGKILL; with `--rejoin`, then a new
//! backup joining the new primary and the new primary killed too. The demo
//! checks the client's replies across both failovers; this test asserts what
//! it reports, and that the demo deleted its namespaces. Needs the guest images (`ftvm images
//! fetch`), iproute2 and root.

mod common;

use common::{guest_images, require_root, require_tool, run, Vm};
use std::ffi::OsString;
use std::time::Duration;

#[test]
fn test_demo_net_client_connection_survives_the_failover_and_a_second_after_a_rejoin() {
    require_root();
    let _ = guest_images();
    let ip = require_tool("ip", "iproute2");
    let args: Vec<OsString> = [
        "demo",
        "--net",
        "--rejoin",
        "--kill-after",
        "3",
        "--watch",
        "3",
    ]
    .iter()
    .map(OsString::from)
    .collect();

    let mut vm = Vm::spawn(None, &args);
    let pid = vm.child().id();
    let (status, out) = vm.wait(Duration::from_secs(900));

    assert_eq!(status.and_then(|s| s.code()), Some(0), "{out}");
    assert!(
        out.contains("[client] connected from 10.79.0.100:"),
        "{out}"
    );
    assert!(out.contains("SIGKILL to the primary"), "{out}");
    assert!(out.contains("failover time: "), "{out}");
    assert!(out.contains("SIGKILL to the new primary"), "{out}");
    assert!(out.contains("second failover time: "), "{out}");
    assert!(out.contains("; no gap;"), "{out}");
    assert!(
        out.contains(
            " replies on one connection, every one in order; longest wait across the failover "
        ),
        "{out}"
    );
    let namespaces = run(&ip, &["netns", "list"]);
    assert!(
        !namespaces.contains(&format!("ftvm-demo-{pid}-")),
        "the demo left namespaces behind: {namespaces}"
    );
}
