//! The TAP backend against the real kernel, inside a network namespace this test
//! creates (and deletes): an ARP request sent through the TAP gets the kernel's ARP
//! reply back through the callback. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN).

use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use ftvm_host::backends::Tap;

const HOST_IP: [u8; 4] = [10, 213, 0, 1];
const GUEST_IP: [u8; 4] = [10, 213, 0, 2];
const GUEST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// A network namespace made for this test, deleted by name on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Netns {
        let name = format!("ftvm-test{tag}-{}", std::process::id());
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

/// Sends an ARP request through a TAP `name` in a new namespace (`send`)
/// until the kernel's reply comes back; the interface's name and its counters.
fn arp_round_trip(name: &'static str, send: fn(&Tap, Vec<u8>)) -> (String, u64, u64) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root: it creates a network namespace and a TAP interface"
    );
    let netns = Netns::create(name);
    let (tx, rx) = channel::<Vec<u8>>();
    let path = format!("/run/netns/{}", netns.0);
    // Only the opening thread enters the namespace, so the interface is created there.
    let tap = std::thread::spawn(move || {
        let ns = std::fs::File::open(&path).expect("open the namespace");
        // SAFETY: setns on this thread only, with a descriptor that stays open for the call.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        Tap::open(name, Box::new(move |frame| drop(tx.send(frame))))
    })
    .join()
    .expect("opening thread")
    .expect("open the TAP interface inside the namespace");
    run(&["-n", &netns.0, "addr", "add", "10.213.0.1/24", "dev", name]);
    run(&["-n", &netns.0, "link", "set", name, "up"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut replied = false;
    while !replied && Instant::now() < deadline {
        send(&tap, arp_request());
        let until = Instant::now() + Duration::from_millis(500);
        while let Ok(frame) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            if is_arp_reply_from_host(&frame) {
                replied = true;
                break;
            }
        }
    }
    let actual = tap.name().to_owned();
    let stats = tap.stats();
    let counts = (
        stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        stats.dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
    drop(tap);

    assert!(
        replied,
        "no ARP reply for 10.213.0.1 came back through the TAP {name} within 10 s"
    );
    (actual, counts.0, counts.1)
}

#[test]
fn test_tap_sends_arp_request_and_receives_reply() {
    // The writer thread counts a frame after its write returns, which may be
    // after the reply arrived: only the drops are certain here.
    let (name, _, dropped) = arp_round_trip("ftvmtap0", |tap, frame| tap.send(frame));

    assert_eq!((name.as_str(), dropped), ("ftvmtap0", 0));
}

/// `send_now` writes on the calling thread when nothing is queued: the same
/// round trip, the frame counted as sent before `send_now` returned.
#[test]
fn test_tap_send_now_sends_arp_request_and_receives_reply() {
    let (name, sent, dropped) = arp_round_trip("ftvmtap1", |tap, frame| tap.send_now(frame));

    assert_eq!(name, "ftvmtap1");
    assert!(sent >= 1 && dropped == 0, "sent {sent}, dropped {dropped}");
}
