//! Smoke test of the fault-tolerance tests' workload and helpers, without fault
//! tolerance: one plain `ftvm run` on host A of the FT network (`common::ft`) runs the
//! guest counter server (`guest/counter`), and the client counts on it over one TCP
//! connection, then on a second one, which survives host A's link being cut and
//! restored.
//!
//! Needs the guest images (`ftvm images fetch`), iproute2, gcc-riscv64-linux-gnu and
//! root.

mod common;

use common::ft::{
    build_counter, counter_guest_cmd, guest_net_args, initrd_with, CounterClient, FtNetwork, Ns,
    COUNTER_GUEST_PATH, COUNTER_LISTENING, COUNTER_NET_UP,
};
use common::{require_root, TempDir, Vm};
use std::time::{Duration, Instant};

/// How long a step may take before the test gives up (hang guards, not assertions).
const STEP_GUARD: Duration = Duration::from_secs(600);
/// Requests on the first connection, sent one after the other.
const REQUESTS: u64 = 200;
/// Replies the background load must collect.
const LOAD_REPLIES: usize = 50;

#[test]
fn test_counter_guest_on_host_a_counts_on_one_connection_then_on_another() {
    require_root();
    let dir = TempDir::new("ftsmoke");
    let net = FtNetwork::new("ftsmoke");
    let counter = build_counter(dir.path());
    let initrd = initrd_with(
        &[(COUNTER_GUEST_PATH, &counter, 0o755)],
        &dir.path().join("initrd.img"),
    );

    let boot = Instant::now();
    let mut vm = Vm::start_with(
        Some(net.name(Ns::HostA)),
        &guest_net_args(),
        Some(&initrd),
        Some(&counter_guest_cmd()),
    );
    let console = vm.console();
    console.wait_for_line(COUNTER_NET_UP, STEP_GUARD);
    console.wait_for_line(COUNTER_LISTENING, STEP_GUARD);
    let booted = boot.elapsed();

    let mut client = CounterClient::connect(&net, STEP_GUARD)
        .unwrap_or_else(|e| panic!("connect to the counter: {e}; console:\n{}", console.text()));
    let start = Instant::now();
    for expected in 1..=REQUESTS {
        let value = client.request().unwrap_or_else(|e| {
            panic!(
                "request {expected} failed: {e}; console:\n{}",
                console.text()
            )
        });
        assert_eq!(value, expected, "console:\n{}", console.text());
    }
    let sequential = start.elapsed();

    // The same connection, from the background load.
    let load = client.spawn_load(Duration::from_millis(10));
    assert!(
        load.wait_for_count(LOAD_REPLIES, STEP_GUARD),
        "the load got {} replies (error: {:?}); console:\n{}",
        load.count(),
        load.error(),
        console.text()
    );
    let (report, client) = load.stop();
    assert_eq!(report.error, None, "console:\n{}", console.text());
    report
        .check_sequence(REQUESTS + 1)
        .unwrap_or_else(|e| panic!("{e}; console:\n{}", console.text()));
    let (gap, _) = report.max_gap().expect("several replies");
    let next = REQUESTS + report.replies.len() as u64 + 1;
    drop(client);

    // A new connection after the first closed goes on with the same counter.
    let mut second = CounterClient::connect(&net, STEP_GUARD)
        .unwrap_or_else(|e| panic!("reconnect: {e}; console:\n{}", console.text()));
    for expected in next..next + 3 {
        assert_eq!(
            second.request().expect("request on the second connection"),
            expected,
            "console:\n{}",
            console.text()
        );
    }

    // Host A cut off the LAN: the guest cannot be reached; back on: it can, and the
    // connection opened before the cut goes on.
    net.cut_link('a');
    let cut = CounterClient::connect(&net, Duration::ZERO);
    assert!(
        cut.is_err(),
        "the client reached the guest through a cut link"
    );
    net.restore_link('a');
    assert_eq!(
        second.request().expect("request after the link came back"),
        next + 3,
        "console:\n{}",
        console.text()
    );
    drop(second);

    assert!(
        vm.child().try_wait().is_none(),
        "the VM ended early; console:\n{}",
        console.text()
    );
    let text = vm.kill();
    eprintln!(
        "boot to listening: {booted:?}; {REQUESTS} sequential requests: {sequential:?} \
         ({:?} each); load: {} replies, largest gap {gap:?}",
        sequential / REQUESTS as u32,
        report.replies.len()
    );
    assert!(
        common::find_line(&text, "ftvm-counter: connection").is_some(),
        "the server logged no connection; console:\n{text}"
    );
}
