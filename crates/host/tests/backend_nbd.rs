//! The NBD client against a real server: `qemu-nbd` (Debian package qemu-utils)
//! serving a temporary raw image on a free TCP port of 127.0.0.1.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ftvm_host::backends::{Disk, DiskDone, DiskIoError, DiskOp, Notify};

const BLOCK: usize = 4096;
const IMAGE_SIZE: usize = 1 << 20;

/// A `qemu-nbd` serving a temporary image; killed by its PID and the image removed on drop.
struct NbdServer {
    child: Child,
    image: PathBuf,
    port: u16,
}

impl NbdServer {
    fn start(tag: &str, export: &str, read_only: bool) -> NbdServer {
        let image =
            std::env::temp_dir().join(format!("ftvm-backend-nbd-{}-{tag}.img", std::process::id()));
        let content: Vec<u8> = (0..IMAGE_SIZE).map(|i| (i / BLOCK) as u8).collect();
        std::fs::write(&image, content).expect("write temporary image");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut command = Command::new("qemu-nbd");
        command.args([
            "-f",
            "raw",
            "-b",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-x",
            export,
            "--persistent",
            "--shared=4",
        ]);
        if read_only {
            command.arg("--read-only");
        }
        let child = match command.arg(&image).stdin(Stdio::null()).spawn() {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&image);
                panic!("qemu-nbd not found: install qemu-utils (apt-get install qemu-utils) to run the NBD tests");
            }
            Err(err) => panic!("cannot start qemu-nbd: {err}"),
        };
        let server = NbdServer { child, image, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !greets_and_aborts(port) {
            assert!(
                Instant::now() < deadline,
                "qemu-nbd did not answer on port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self, export: &str) -> String {
        format!("nbd://127.0.0.1:{}/{export}", self.port)
    }
}

/// Whether a server on `port` sends the NBD greeting and takes an orderly
/// `NBD_OPT_ABORT` (the readiness probe: a connection dropped in the middle of
/// the handshake makes `qemu-nbd` log a failed negotiation, and at least one
/// version then reset the test's own next connection now and then).
fn greets_and_aborts(port: u16) -> bool {
    let probe = || -> std::io::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        // "NBDMAGIC", "IHAVEOPT", handshake flags.
        let mut greeting = [0u8; 18];
        s.read_exact(&mut greeting)?;
        if &greeting[..16] != b"NBDMAGICIHAVEOPT" {
            return Err(std::io::Error::other("not an NBD newstyle greeting"));
        }
        // Client flags (fixed newstyle), then option NBD_OPT_ABORT (2), no data.
        let mut abort = Vec::new();
        abort.extend_from_slice(&1u32.to_be_bytes());
        abort.extend_from_slice(b"IHAVEOPT");
        abort.extend_from_slice(&2u32.to_be_bytes());
        abort.extend_from_slice(&0u32.to_be_bytes());
        s.write_all(&abort)?;
        // The server's acknowledgement (or its close): either ends the probe.
        let mut reply = [0u8; 20];
        let _ = s.read(&mut reply);
        Ok(())
    };
    probe().is_ok()
}

impl Drop for NbdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn collector() -> (Notify<DiskDone>, Receiver<DiskDone>) {
    let (tx, rx) = channel();
    (Box::new(move |done| drop(tx.send(done))), rx)
}

fn collect(rx: &Receiver<DiskDone>, count: usize) -> HashMap<u64, Result<Vec<u8>, DiskIoError>> {
    (0..count)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("completion within 10 s")
        })
        .map(|done| (done.id, done.result))
        .collect()
}

#[test]
fn test_nbd_reads_the_export() {
    let server = NbdServer::start("read", "disk0", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("disk0"), notify).expect("connect to qemu-nbd");

    for block in 0..16u64 {
        disk.submit(
            block,
            DiskOp::Read {
                offset: block * BLOCK as u64 * 3,
                len: BLOCK as u32,
            },
        );
    }
    let reads = collect(&rx, 16);

    assert_eq!((disk.size(), disk.read_only()), (IMAGE_SIZE as u64, false));
    for block in 0..16u64 {
        assert_eq!(
            reads.get(&block),
            Some(&Ok(vec![(block * 3) as u8; BLOCK])),
            "block {block}"
        );
    }
}

#[test]
fn test_nbd_write_flush_read_round_trip() {
    let server = NbdServer::start("write", "disk0", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("disk0"), notify).expect("connect to qemu-nbd");

    for block in 0..16u64 {
        disk.submit(
            block,
            DiskOp::Write {
                offset: block * BLOCK as u64,
                data: vec![0xa0 + block as u8; BLOCK],
            },
        );
    }
    let writes = collect(&rx, 16);
    disk.submit(100, DiskOp::Flush);
    disk.submit(
        101,
        DiskOp::Discard {
            offset: 64 * BLOCK as u64,
            len: BLOCK as u64,
        },
    );
    let flush = collect(&rx, 2);
    for block in 0..16u64 {
        disk.submit(
            200 + block,
            DiskOp::Read {
                offset: block * BLOCK as u64,
                len: BLOCK as u32,
            },
        );
    }
    let reads = collect(&rx, 16);
    disk.close();
    let on_disk = std::fs::read(&server.image).expect("read image");

    assert!(writes.values().all(|r| r == &Ok(Vec::new())), "{writes:?}");
    assert_eq!(
        (flush.get(&100), flush.get(&101)),
        (Some(&Ok(Vec::new())), Some(&Ok(Vec::new())))
    );
    for block in 0..16u64 {
        assert_eq!(
            reads.get(&(200 + block)),
            Some(&Ok(vec![0xa0 + block as u8; BLOCK])),
            "block {block}"
        );
    }
    assert_eq!(on_disk[15 * BLOCK..16 * BLOCK], vec![0xaf; BLOCK][..]);
}

#[test]
fn test_nbd_large_write_then_read_round_trip() {
    // Larger than a fresh socket's send buffer: the non-blocking send leaves the rest
    // to the writer thread, and the reads queued behind the write wait for it.
    let server = NbdServer::start("large", "disk0", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("disk0"), notify).expect("connect to qemu-nbd");
    let data: Vec<u8> = (0..IMAGE_SIZE).map(|i| (i % 253) as u8).collect();

    disk.submit(
        1,
        DiskOp::Write {
            offset: 0,
            data: data.clone(),
        },
    );
    for piece in 0..4u64 {
        disk.submit(
            10 + piece,
            DiskOp::Read {
                offset: piece * (IMAGE_SIZE as u64 / 4),
                len: IMAGE_SIZE as u32 / 4,
            },
        );
    }
    let done = collect(&rx, 5);
    disk.close();

    assert_eq!(done.get(&1), Some(&Ok(Vec::new())));
    for (piece, expected) in data.chunks(IMAGE_SIZE / 4).enumerate() {
        assert_eq!(
            done.get(&(10 + piece as u64)).map(|r| r.as_deref()),
            Some(Ok(expected)),
            "quarter {piece}"
        );
    }
}

#[test]
fn test_nbd_overlapping_writes_apply_in_submission_order() {
    let server = NbdServer::start("overlap", "", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url(""), notify)
        .expect("connect to qemu-nbd with an empty export name");

    for round in 0..100u64 {
        disk.submit(
            round,
            DiskOp::Write {
                offset: (round % 2) * 2048,
                data: vec![round as u8; BLOCK],
            },
        );
    }
    disk.submit(
        999,
        DiskOp::Read {
            offset: 0,
            len: 6144,
        },
    );
    let done = collect(&rx, 101);

    let mut expected = vec![98u8; 2048];
    expected.extend(vec![99u8; BLOCK]);
    assert_eq!(done.get(&999), Some(&Ok(expected)));
}

#[test]
fn test_nbd_wrong_export_name_is_a_clear_error() {
    let server = NbdServer::start("wrong-export", "disk0", false);
    let (notify, _rx) = collector();

    let result = Disk::open_nbd(&server.url("no-such-export"), notify);

    let message = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("\"no-such-export\"") && message.contains("refused"),
        "{message}"
    );
}

#[test]
fn test_nbd_read_only_export_refuses_writes() {
    let server = NbdServer::start("read-only", "ro", true);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("ro"), notify).expect("connect to qemu-nbd");

    disk.submit(
        1,
        DiskOp::Write {
            offset: 0,
            data: vec![1; 512],
        },
    );
    disk.submit(
        2,
        DiskOp::Read {
            offset: 0,
            len: 512,
        },
    );
    let done = collect(&rx, 2);

    assert!(disk.read_only());
    assert!(matches!(
        done.get(&1),
        Some(Err(DiskIoError::ReadOnly { .. }))
    ));
    assert_eq!(done.get(&2), Some(&Ok(vec![0; 512])));
}

#[test]
fn test_nbd_read_past_end_fails_only_that_request() {
    let server = NbdServer::start("past-end", "disk0", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("disk0"), notify).expect("connect to qemu-nbd");

    disk.submit(
        1,
        DiskOp::Read {
            offset: IMAGE_SIZE as u64,
            len: 512,
        },
    );
    disk.submit(
        2,
        DiskOp::Read {
            offset: BLOCK as u64,
            len: 512,
        },
    );
    let done = collect(&rx, 2);

    assert!(matches!(
        done.get(&1),
        Some(Err(DiskIoError::OutOfRange { .. }))
    ));
    assert_eq!(done.get(&2), Some(&Ok(vec![1; 512])));
}

#[test]
fn test_nbd_server_killed_fails_requests_instead_of_hanging() {
    let mut server = NbdServer::start("killed", "disk0", false);
    let (notify, rx) = collector();
    let disk = Disk::open_nbd(&server.url("disk0"), notify).expect("connect to qemu-nbd");

    let _ = server.child.kill();
    let _ = server.child.wait();
    std::thread::sleep(Duration::from_millis(100));
    disk.submit(
        1,
        DiskOp::Read {
            offset: 0,
            len: 512,
        },
    );
    let done = collect(&rx, 1);

    assert!(
        matches!(done.get(&1), Some(Err(DiskIoError::ConnectionLost { .. }))),
        "{done:?}"
    );
}

#[test]
fn test_nbd_bad_url_names_it() {
    let (notify, _rx) = collector();

    let message = Disk::open_nbd("nbd://127.0.0.1:notaport/x", notify)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();

    assert!(message.contains("nbd://127.0.0.1:notaport/x"), "{message}");
}
