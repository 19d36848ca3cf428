//! End to end: the Debian guest's virtio-net card on a TAP device talks to a client
//! in another network namespace. The test builds, per run,
//!
//! ```text
//!   netns ftvm-h-PID-TAG: ftvm --net tap=tap0 ── tap0 ─┐
//!                                             br0 ─┤
//!                                             vh ──┘ veth
//!   netns ftvm-c-PID-TAG:                     vc (10.77.0.1/24)
//! ```
//!
//! with the guest at 10.77.0.2/24, and deletes both namespaces (and so every
//! interface in them) when it ends. No traffic leaves the namespaces.
//!
//! Needs the guest images (`ftvm images fetch`), iproute2 and root.

mod common;

use common::{require_root, require_tool, sha256_file, Netns, TempDir, Vm, HANG_GUARD};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENT_ADDR: &str = "10.77.0.1/24";
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Bytes sent each way: 160 blocks of 64 KiB.
const STREAM_BYTES: usize = 160 * 64 * 1024;
/// How long a step may take before the test gives up (hang guards, not assertions).
const STEP_GUARD: Duration = Duration::from_secs(600);
/// How long one socket read or write may block.
const IO_GUARD: Duration = Duration::from_secs(120);

/// Builds both namespaces, the bridge, the veth pair and the TAP ftvm will open.
fn build_network(tag: &str) -> (Netns, Netns) {
    require_tool("ip", "iproute2");
    let host = Netns::new(&format!("ftvm-h-{}-{tag}", std::process::id()));
    let client = Netns::new(&format!("ftvm-c-{}-{tag}", std::process::id()));
    host.ip(&["link", "add", "br0", "type", "bridge"]);
    host.ip(&["link", "set", "br0", "up"]);
    host.ip(&[
        "link",
        "add",
        "vh",
        "type",
        "veth",
        "peer",
        "name",
        "vc",
        "netns",
        client.name(),
    ]);
    host.ip(&["link", "set", "vh", "master", "br0", "up"]);
    host.ip(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
    host.ip(&["link", "set", "tap0", "master", "br0", "up"]);
    client.ip(&["addr", "add", CLIENT_ADDR, "dev", "vc"]);
    client.ip(&["link", "set", "vc", "up"]);
    (host, client)
}

/// `len` pseudo-random bytes (xorshift64*), different for every run.
fn random_bytes(len: usize) -> Vec<u8> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Connects to the guest's `port`, retrying while it is not listening yet.
fn connect_with_retry(port: u16, within: Duration) -> TcpStream {
    let addr = SocketAddr::from((GUEST_IP, port));
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(IO_GUARD))
                    .expect("read timeout");
                stream
                    .set_write_timeout(Some(IO_GUARD))
                    .expect("write timeout");
                return stream;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            Err(e) => panic!("cannot connect to {addr} within {within:?}: {e}"),
        }
    }
}

fn write_file(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The guest's part: bring eth0 up, receive a stream on port 5000 and print its
/// SHA-256 and size, then serve 10 MiB of random bytes on port 5001 and print their
/// SHA-256 before serving them. Busybox nc shuts its sending half when its stdin ends,
/// and exits when the peer closes.
const GUEST_COMMAND: &str = "mkdir -p /tmp; ip addr add 10.77.0.2/24 dev eth0 && \
    ip link set eth0 up && echo e2e-''net-up; \
    nc -l -p 5000 </dev/null >/tmp/in; set -- $(sha256sum /tmp/in); \
    echo e2e-rx $1 $(wc -c </tmp/in); \
    dd if=/dev/urandom of=/tmp/out bs=64k count=160 2>/dev/null; \
    set -- $(sha256sum /tmp/out); echo e2e-tx-ready $1; \
    nc -l -p 5001 </tmp/out; echo e2e-''done";

#[test]
fn test_guest_on_tap_answers_ping_and_exchanges_10_mib_each_way_intact() {
    require_root();
    let dir = TempDir::new("net");
    let (host_ns, client_ns) = build_network("net");
    let net_arg = "tap=tap0,mac=52:54:00:12:34:56";
    let vm = Vm::start(
        Some(host_ns.name()),
        &[OsString::from("--net"), OsString::from(net_arg)],
        GUEST_COMMAND,
    );
    let console = vm.console();

    let upload = random_bytes(STREAM_BYTES);
    let upload_path = dir.path().join("upload.bin");
    write_file(&upload_path, &upload);
    let upload_sha256 = sha256_file(&upload_path);
    let download_path = dir.path().join("download.bin");

    // The client, in its own namespace (sockets opened on this thread live there).
    let client = {
        let console = console.clone();
        let download_path = download_path.clone();
        move || {
            console.wait_for_line("e2e-net-up", STEP_GUARD);

            // Ping: three echo replies, allowing a few lost requests while links settle.
            let ident = (std::process::id() & 0xffff) as u16;
            let replies = (1..=6u16)
                .filter(|&seq| common::icmp_echo(GUEST_IP, ident, seq, Duration::from_secs(5)))
                .take(3)
                .count();
            assert_eq!(
                replies,
                3,
                "echo replies from the guest; console:\n{}",
                console.text()
            );

            // Upload: send the stream, then close our half; the guest's nc closed its own.
            let mut up = connect_with_retry(5000, STEP_GUARD);
            for chunk in upload.chunks(64 * 1024) {
                up.write_all(chunk).unwrap_or_else(|e| {
                    panic!(
                        "upload to the guest failed: {e}; console:\n{}",
                        console.text()
                    )
                });
            }
            up.shutdown(Shutdown::Write)
                .expect("shut the upload's sending half");
            let mut rest = Vec::new();
            let _ = (&mut up).take(4096).read_to_end(&mut rest);
            drop(up);
            let rx = console.wait_for_line("e2e-rx", STEP_GUARD);

            // Download: the guest prints the checksum, then serves the bytes.
            let tx = console.wait_for_line("e2e-tx-ready", STEP_GUARD);
            let down = connect_with_retry(5001, STEP_GUARD);
            let mut received = Vec::with_capacity(STREAM_BYTES);
            // One byte more than expected, so a longer stream shows up as a size mismatch.
            (&down)
                .take(STREAM_BYTES as u64 + 1)
                .read_to_end(&mut received)
                .unwrap_or_else(|e| {
                    panic!(
                        "download from the guest failed after {} bytes: {e}; console:\n{}",
                        received.len(),
                        console.text()
                    )
                });
            drop(down);
            write_file(&download_path, &received);
            (rx, tx, received.len())
        }
    };
    let (rx, tx, downloaded) = client_ns.run_inside(client);
    let (status, console_text) = vm.wait(HANG_GUARD);

    assert_eq!(
        rx,
        format!("{upload_sha256} {STREAM_BYTES}"),
        "SHA-256 and size the guest received vs what the client sent; console:\n{console_text}"
    );
    assert_eq!(
        downloaded, STREAM_BYTES,
        "bytes the client received; console:\n{console_text}"
    );
    assert_eq!(
        sha256_file(&download_path),
        tx,
        "SHA-256 the client received vs what the guest sent; console:\n{console_text}"
    );
    assert!(
        common::find_line(&console_text, "e2e-done").is_some(),
        "the guest's last step did not finish; console:\n{console_text}"
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "console:\n{console_text}"
    );
}
