//! The TAP backend against the real kernel, inside a network namespace this test
//! creates (and deletes): an ARP request sent through the TAP gets the kernel's ARP
//! reply back through the callback. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use ftvm_host::backends::Tap;

const TAP_NAME: &str = "ftvmtap0";
const HOST_IP: [u8; 4] = [10, 213, 0, 1];
const GUEST_IP: [u8; 4] = [10, 213, 0, 2];
const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// A network namespace made for this test, deleted by name on drop.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        let name = format!("ftvm-test-{}", std::process::id());
        run(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("run ip (package iproute2)");
    assert!(status.success(), "ip {} failed: {status}", args.join(" "));
}

fn arp_request() -> Vec<u8> {
    let mut frame = vec![0xff; 6]; // destination: broadcast
    frame.extend(GUEST_MAC); // source
    frame.extend([0x08, 0x06]); // EtherType ARP
    frame.extend([0x00, 0x01, 0x08, 0x00, 6, 4]); // Ethernet, IPv4, address lengths
    frame.extend([0x00, 0x01]); // operation: request
    frame.extend(GUEST_MAC); // sender hardware address
    frame.extend(GUEST_IP); // sender protocol address
    frame.extend([0; 6]); // target hardware address
    frame.extend(HOST_IP); // target protocol address
    frame
}

fn is_arp_reply_from_host(frame: &[u8]) -> bool {
    frame.len() >= 42
        && frame[0..6] == GUEST_MAC
        && frame[12..14] == [0x08, 0x06]
        && frame[20..22] == [0, 2]
        && frame[28..32] == HOST_IP
}

#[test]
fn test_tap_sends_arp_request_and_receives_reply() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: it creates a network namespace and a TAP interface"
    );
    let netns = Netns::create();
    let (tx, rx) = channel::<Vec<u8>>();
    let path = format!("/run/netns/{}", netns.0);
    // Only the opening thread enters the namespace, so the interface is created there.
    let tap = std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on this thread only, with a descriptor that stays open for the call.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        Tap::open(TAP_NAME, Box::new(move |frame| drop(tx.send(frame))))
    })
    .join()
    .expect("opening thread")
    .expect("open the TAP interface inside the namespace");
    run(&[
        "-n",
        &netns.0,
        "addr",
        "add",
        "10.213.0.1/24",
        "dev",
        TAP_NAME,
    ]);
    run(&["-n", &netns.0, "link", "set", TAP_NAME, "up"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut replied = false;
    while !replied && Instant::now() < deadline {
        tap.send(arp_request());
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(frame) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if is_arp_reply_from_host(&frame) {
                replied = true;
                break;
            }
        }
    }
    let name = tap.name().to_owned();
    drop(tap);

    assert!(
        replied,
        "no ARP reply for 10.213.0.1 came back through the TAP within 10 s"
    );
    assert_eq!(name, TAP_NAME);
}
