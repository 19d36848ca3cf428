//! The raw file disk backend end to end: several requests in flight, completions in
//! any order, overlapping writes applied in submission order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use ftvm_host::backends::{Disk, DiskDone, DiskIoError, DiskOp, Notify};

const BLOCK: usize = 4096;
const IMAGE_SIZE: u64 = 1 << 20;

/// A temporary image file, removed on drop.
struct TempImage(PathBuf);

impl TempImage {
    fn new(tag: &str, content: &[u8]) -> TempImage {
        let path = std::env::temp_dir().join(format!(
            "ftvm-backend-disk-{}-{tag}.img",
            std::process::id()
        ));
        std::fs::write(&path, content).expect("write temporary image");
        TempImage(path)
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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

fn pattern(seed: u8) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

#[test]
fn test_file_disk_round_trips_many_requests_in_flight() {
    let image = TempImage::new("round-trip", &vec![0xee; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, false, notify).expect("open image");

    for block in 0..32u64 {
        disk.submit(
            block,
            DiskOp::Write {
                offset: block * BLOCK as u64,
                data: pattern(block as u8),
            },
        );
    }
    let writes = collect(&rx, 32);
    disk.submit(100, DiskOp::Flush);
    let flush = collect(&rx, 1);
    for block in 0..32u64 {
        disk.submit(
            1000 + block,
            DiskOp::Read {
                offset: block * BLOCK as u64,
                len: BLOCK as u32,
            },
        );
    }
    let reads = collect(&rx, 32);

    assert!(writes.values().all(|r| r == &Ok(Vec::new())), "{writes:?}");
    assert_eq!(flush.get(&100), Some(&Ok(Vec::new())));
    for block in 0..32u64 {
        assert_eq!(
            reads.get(&(1000 + block)),
            Some(&Ok(pattern(block as u8))),
            "block {block}"
        );
    }
}

#[test]
fn test_file_disk_discard_reads_back_zeros() {
    let image = TempImage::new("discard", &vec![0xab; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, false, notify).expect("open image");

    disk.submit(
        1,
        DiskOp::Discard {
            offset: 8192,
            len: 3 * BLOCK as u64,
        },
    );
    disk.submit(
        2,
        DiskOp::Read {
            offset: 4096,
            len: 5 * BLOCK as u32,
        },
    );
    let done = collect(&rx, 2);

    let mut expected = vec![0xab; BLOCK];
    expected.extend(vec![0; 3 * BLOCK]);
    expected.extend(vec![0xab; BLOCK]);
    assert_eq!(done.get(&1), Some(&Ok(Vec::new())));
    assert_eq!(done.get(&2), Some(&Ok(expected)));
}

#[test]
fn test_file_disk_applies_overlapping_writes_in_submission_order() {
    let image = TempImage::new("overlap", &vec![0; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, false, notify).expect("open image");

    for round in 0..200u64 {
        // Each write overlaps the previous one by half a block.
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
    let done = collect(&rx, 201);

    let mut expected = vec![198u8; 2048];
    expected.extend(vec![199u8; BLOCK]);
    assert_eq!(done.get(&999), Some(&Ok(expected)));
}

#[test]
fn test_file_disk_refuses_read_past_end() {
    let image = TempImage::new("past-end", &vec![0; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, false, notify).expect("open image");

    disk.submit(
        7,
        DiskOp::Read {
            offset: IMAGE_SIZE - 512,
            len: 1024,
        },
    );
    let done = collect(&rx, 1);

    assert_eq!(
        done.get(&7),
        Some(&Err(DiskIoError::OutOfRange {
            offset: IMAGE_SIZE - 512,
            len: 1024,
            size: IMAGE_SIZE
        }))
    );
}

#[test]
fn test_file_disk_read_only_refuses_write_and_keeps_content() {
    let image = TempImage::new("read-only", &vec![5; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, true, notify).expect("open image");

    disk.submit(
        1,
        DiskOp::Write {
            offset: 0,
            data: vec![9; 512],
        },
    );
    let done = collect(&rx, 1);
    drop(disk);

    assert!(matches!(
        done.get(&1),
        Some(Err(DiskIoError::ReadOnly { .. }))
    ));
    assert_eq!(
        std::fs::read(&image.0).expect("read image")[..512],
        [5; 512]
    );
}

#[test]
fn test_file_disk_reports_size_and_mode() {
    let image = TempImage::new("size", &vec![0; 3 * 512]);
    let (notify, _rx) = collector();

    let disk = Disk::open_file(&image.0, true, notify).expect("open image");

    assert_eq!((disk.size(), disk.read_only()), (1536, true));
}

#[test]
fn test_file_disk_close_finishes_submitted_requests() {
    let image = TempImage::new("close", &vec![0; IMAGE_SIZE as usize]);
    let (notify, rx) = collector();
    let disk = Disk::open_file(&image.0, false, notify).expect("open image");

    for block in 0..64u64 {
        disk.submit(
            block,
            DiskOp::Write {
                offset: block * BLOCK as u64,
                data: pattern(3),
            },
        );
    }
    disk.close();
    let done: Vec<DiskDone> = rx.try_iter().collect();

    assert_eq!(done.len(), 64);
    assert!(done.iter().all(|d| d.result == Ok(Vec::new())));
}

#[test]
fn test_file_disk_open_missing_image_names_path() {
    let path = std::env::temp_dir().join("ftvm-backend-no-such-image.img");
    let (notify, _rx) = collector();

    let message = Disk::open_file(&path, false, notify)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();

    assert!(
        message.contains("ftvm-backend-no-such-image.img"),
        "{message}"
    );
}
