//! The log decoder on a few thousand deterministic mutations of a valid log (the
//! stable-toolchain counterpart of the cargo-fuzz target `log_decoder`): bit flips,
//! overwritten bytes, interesting length values, cuts, insertions, deletions and
//! spliced frames, from a seeded xorshift generator.
//!
//! Each input must decode without panicking, and any input that decodes must be the
//! one canonical encoding of what it decoded to (so no mutation yields a silently
//! different log). `FUZZ_CORPUS_SCALE=N` multiplies the number of inputs.

use ftvm_devices::virtio::{BackendCompletion, BackendRequest, BlockOp};
use ftvm_replay::{decode_all, EndStatus, Event, Header, LogWriter, SubmitRecord, MAX_FRAME_LEN};

/// xorshift64*: a small deterministic generator.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn scale() -> usize {
    std::env::var("FUZZ_CORPUS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The `Submit` entry the machine logs for `request` in `slot`.
fn submit(slot: u8, request: BackendRequest) -> Event {
    Event::Submit {
        slot,
        request: SubmitRecord::of(&request),
    }
}

fn valid_log() -> Vec<u8> {
    let events = [
        (
            0,
            Event::WallClock {
                ns: 1_767_225_600_000_000_000,
            },
        ),
        (0, Event::RngSeed { seed: [0x42; 32] }),
        (100, Event::Now { mtime: 10 }),
        (
            200,
            Event::ConsoleInput {
                bytes: b"uname -a\r".to_vec(),
            },
        ),
        (
            300,
            submit(
                0,
                BackendRequest::Block {
                    id: 1,
                    op: BlockOp::Write {
                        sector: 4,
                        data: vec![0xA5; 64],
                    },
                },
            ),
        ),
        (
            300,
            submit(
                0,
                BackendRequest::Block {
                    id: 2,
                    op: BlockOp::Read {
                        sector: 4,
                        len: 512,
                    },
                },
            ),
        ),
        (
            310,
            submit(
                1,
                BackendRequest::NetTx {
                    frame: vec![0xFF; 20],
                },
            ),
        ),
        (320, submit(2, BackendRequest::Entropy { id: 3, len: 16 })),
        (
            330,
            Event::Idle {
                woke_at: Some(5_000),
            },
        ),
        (
            400,
            Event::Completion {
                slot: 0,
                completion: BackendCompletion::Block {
                    id: 2,
                    status: 0,
                    data: vec![0x11; 32],
                },
            },
        ),
        (
            401,
            Event::Completion {
                slot: 1,
                completion: BackendCompletion::NetRx { frame: vec![1; 14] },
            },
        ),
        (
            402,
            Event::Completion {
                slot: 2,
                completion: BackendCompletion::Entropy {
                    id: 3,
                    data: vec![7; 16],
                },
            },
        ),
        (
            403,
            submit(
                0,
                BackendRequest::Block {
                    id: 4,
                    op: BlockOp::Flush,
                },
            ),
        ),
        (
            404,
            submit(
                0,
                BackendRequest::Block {
                    id: 5,
                    op: BlockOp::Discard {
                        sector: 8,
                        sectors: 8,
                    },
                },
            ),
        ),
        (500, Event::Digest { digest: [0x5A; 32] }),
        (600, Event::Idle { woke_at: None }),
        (
            600,
            Event::End {
                status: EndStatus::PowerOff(0),
            },
        ),
    ];
    let mut w = LogWriter::new(Vec::new(), &Header::new(b"memory=128M".to_vec())).expect("header");
    for (icount, event) in &events {
        w.write(*icount, event).expect("frame");
    }
    w.into_inner()
}

/// Applies one to four random mutations to `log`.
fn mutate(rng: &mut XorShift, log: &[u8]) -> Vec<u8> {
    let mut out = log.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len());
        match rng.below(8) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => {
                let value = [
                    0,
                    1,
                    u32::MAX,
                    MAX_FRAME_LEN,
                    MAX_FRAME_LEN + 1,
                    rng.next() as u32,
                ][rng.below(6)];
                let end = (at + 4).min(out.len());
                out[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            }
            3 => out.truncate(at),
            4 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            5 => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                out.drain(at..end);
            }
            6 => {
                // Splice a stretch of the valid log elsewhere (duplicated or reordered frames).
                let from = rng.below(log.len());
                let end = (from + 1 + rng.below(64)).min(log.len());
                out.splice(at..at, log[from..end].iter().copied());
            }
            _ => {
                let end = (at + 1 + rng.below(8)).min(out.len());
                out[at..end].fill(0);
            }
        }
        if out.is_empty() {
            break;
        }
    }
    out
}

/// Decodes `input`; if it decodes, re-encodes it and demands the same bytes.
fn check(input: &[u8]) -> Result<(), String> {
    let Ok((header, entries)) = decode_all(input) else {
        return Ok(());
    };
    let mut w = LogWriter::new(Vec::new(), &header).map_err(|e| e.to_string())?;
    for entry in &entries {
        w.write(entry.icount, &entry.event)
            .map_err(|e| e.to_string())?;
    }
    if w.into_inner() != input {
        return Err(format!(
            "decoded to {entries:?} but that encodes differently"
        ));
    }
    Ok(())
}

#[test]
fn test_decoder_survives_mutations_of_a_valid_log() {
    let log = valid_log();
    let mut rng = XorShift(0x5EED_0FF7_1065);

    let failures: Vec<String> = (0..4000 * scale())
        .filter_map(|i| {
            let input = mutate(&mut rng, &log);
            check(&input)
                .err()
                .map(|e| format!("input {i} ({:02x?}): {e}", input))
        })
        .collect();

    assert_eq!(failures, Vec::<String>::new());
}

#[test]
fn test_decoder_survives_random_frames_after_a_valid_header() {
    let header_len = 8 + 2 + 4 + 11 + 4;
    let log = valid_log();
    let mut rng = XorShift(0x00F4_A3E5);

    let failures: Vec<String> = (0..2000 * scale())
        .filter_map(|i| {
            let n = rng.below(80);
            let mut input = log[..header_len].to_vec();
            input.extend((0..n).map(|_| rng.next() as u8));
            check(&input).err().map(|e| format!("input {i}: {e}"))
        })
        .collect();

    assert_eq!(failures, Vec::<String>::new());
}

#[test]
fn test_decoder_accepts_the_unmutated_log() {
    let log = valid_log();

    let (_, entries) = decode_all(&log).expect("valid log");

    assert_eq!(entries.len(), 17);
    assert_eq!(check(&log), Ok(()));
}
