//! Golden bytes, round trips and rejection of bad logs.

use crate::crc::crc32c;
use crate::*;
use ftvm_devices::virtio::{BackendCompletion, BackendRequest, BlockOp};
use std::io::{self, Read};

/// The icount every golden frame is written at.
const ICOUNT: u64 = 0x1234;

/// The bytes of a log with an empty configuration, before any frame.
fn empty_header() -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.flush().expect("should succeed");
    w.into_inner()
}

/// The bytes of the one frame written for `event` at [`ICOUNT`].
fn frame_of(event: &Event) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.write(ICOUNT, event).expect("should succeed");
    w.into_inner()[empty_header().len()..].to_vec()
}

/// Asserts `event` is written as `expected` and `expected` reads back as `event`.
fn assert_golden(event: Event, expected: &[u8]) {
    let written = frame_of(&event);
    let log = [empty_header(), expected.to_vec()].concat();
    let (_, entries) = decode_all(&log).expect("should succeed");

    assert_eq!(written, expected, "encoding of {event:?}");
    assert_eq!(
        entries,
        vec![Entry {
            seq: 0,
            icount: ICOUNT,
            event
        }],
        "decoding of the golden bytes"
    );
}

/// A frame with arbitrary fields and a correct CRC.
fn raw_frame(seq: u64, icount: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&seq.to_le_bytes());
    body.extend_from_slice(&icount.to_le_bytes());
    body.push(kind);
    body.extend_from_slice(payload);
    let len = u32::try_from(payload.len()).expect("should succeed");
    [
        len.to_le_bytes().to_vec(),
        body.clone(),
        crc32c(&body).to_le_bytes().to_vec(),
    ]
    .concat()
}

/// The `Submit` entry the machine logs for `request` in `slot`.
fn submit(slot: u8, request: BackendRequest) -> Event {
    Event::Submit {
        slot,
        request: SubmitRecord::of(&request),
    }
}

/// One event of every kind and variant, with icounts that never go back.
fn every_event() -> Vec<(u64, Event)> {
    vec![
        (
            0,
            Event::WallClock {
                ns: 1_767_225_600_000_000_000,
            },
        ),
        (0, Event::RngSeed { seed: [0x42; 32] }),
        (10, Event::Now { mtime: 1 }),
        (10, Event::Idle { woke_at: Some(99) }),
        (11, Event::Idle { woke_at: None }),
        (
            12,
            Event::ConsoleInput {
                bytes: b"ls\r".to_vec(),
            },
        ),
        (
            13,
            submit(
                0,
                BackendRequest::Block {
                    id: 1,
                    op: BlockOp::Read {
                        sector: 2,
                        len: 512,
                    },
                },
            ),
        ),
        (
            13,
            submit(
                0,
                BackendRequest::Block {
                    id: 2,
                    op: BlockOp::Write {
                        sector: 3,
                        data: vec![0xAB; 512],
                    },
                },
            ),
        ),
        (
            14,
            submit(
                0,
                BackendRequest::Block {
                    id: 3,
                    op: BlockOp::Flush,
                },
            ),
        ),
        (
            14,
            submit(
                0,
                BackendRequest::Block {
                    id: 4,
                    op: BlockOp::Discard {
                        sector: 8,
                        sectors: 16,
                    },
                },
            ),
        ),
        (
            15,
            submit(
                1,
                BackendRequest::NetTx {
                    frame: vec![0xFF; 60],
                },
            ),
        ),
        (15, submit(2, BackendRequest::Entropy { id: 5, len: 64 })),
        (
            16,
            Event::Completion {
                slot: 0,
                completion: BackendCompletion::Block {
                    id: 1,
                    status: 0,
                    data: vec![7; 512],
                },
            },
        ),
        (
            17,
            Event::Completion {
                slot: 1,
                completion: BackendCompletion::NetRx {
                    frame: vec![1, 2, 3],
                },
            },
        ),
        (
            18,
            Event::Completion {
                slot: 2,
                completion: BackendCompletion::Entropy {
                    id: 5,
                    data: vec![9; 64],
                },
            },
        ),
        (
            18,
            Event::ReadElided {
                slot: 0,
                id: 6,
                len: 4096,
                hash: u64::MAX,
            },
        ),
        (19, Event::Digest { digest: [0x5A; 32] }),
        (
            20,
            Event::End {
                status: EndStatus::PowerOff(0x5555),
            },
        ),
    ]
}

fn write_log(config: &[u8], events: &[(u64, Event)]) -> Vec<u8> {
    let mut w = LogWriter::new(Vec::new(), &Header::new(config.to_vec())).expect("should succeed");
    for (icount, event) in events {
        w.write(*icount, event).expect("should succeed");
    }
    w.into_inner()
}

fn entries_of(events: &[(u64, Event)]) -> Vec<Entry> {
    events
        .iter()
        .enumerate()
        .map(|(seq, (icount, event))| Entry {
            seq: seq as u64,
            icount: *icount,
            event: event.clone(),
        })
        .collect()
}

// ---- golden bytes -------------------------------------------------------------------

#[rustfmt::skip]
#[test]
fn test_golden_header() {
    let expected: &[u8] = &[
        b'F', b'T', b'V', b'M', b'L', b'O', b'G', 0x00, // magic "FTVMLOG\0"
        0x03, 0x00,                                     // version: 3
        0x03, 0x00, 0x00, 0x00,                         // config_len: 3
        b'c', b'f', b'g',                               // config: "cfg"
        0xDA, 0xF4, 0xB8, 0xF1,                         // crc32c of magic..config
    ];

    let written = write_log(b"cfg", &[]);
    let (header, entries) = decode_all(expected).expect("should succeed");

    assert_eq!(written, expected);
    assert_eq!((header, entries), (Header { version: 3, config: b"cfg".to_vec() }, Vec::new()));
}

#[rustfmt::skip]
#[test]
fn test_golden_now() {
    assert_golden(Event::Now { mtime: 0x0102_0304_0506_0708 }, &[
        0x08, 0x00, 0x00, 0x00,                         // len: 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x01,                                           // kind: Now
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // mtime: 0x0102030405060708
        0xDF, 0x54, 0x2F, 0xFF,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_idle_woken() {
    assert_golden(Event::Idle { woke_at: Some(0x10) }, &[
        0x09, 0x00, 0x00, 0x00,                         // len: 9
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x02,                                           // kind: Idle
        0x01,                                           // tag: Some
        0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // woke_at: 0x10
        0x27, 0x4E, 0xBF, 0x43,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_idle_never_woken() {
    assert_golden(Event::Idle { woke_at: None }, &[
        0x01, 0x00, 0x00, 0x00,                         // len: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x02,                                           // kind: Idle
        0x00,                                           // tag: None
        0x26, 0xCD, 0xA5, 0xC6,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_console_input() {
    assert_golden(Event::ConsoleInput { bytes: b"hi".to_vec() }, &[
        0x06, 0x00, 0x00, 0x00,                         // len: 6
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x03,                                           // kind: ConsoleInput
        0x02, 0x00, 0x00, 0x00,                         // bytes length: 2
        b'h', b'i',                                     // bytes: "hi"
        0x18, 0x39, 0x0C, 0xEC,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_wall_clock() {
    assert_golden(Event::WallClock { ns: 0x1122_3344_5566_7788 }, &[
        0x08, 0x00, 0x00, 0x00,                         // len: 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x04,                                           // kind: WallClock
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // ns: 0x1122334455667788
        0xAE, 0x13, 0x7E, 0x5C,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_rng_seed() {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    assert_golden(Event::RngSeed { seed }, &[
        0x20, 0x00, 0x00, 0x00,                         // len: 32
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x05,                                           // kind: RngSeed
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, // seed[0..8]
        0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F, // seed[8..16]
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, // seed[16..24]
        0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F, // seed[24..32]
        0x3C, 0x44, 0x14, 0x15,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_submit_block_read() {
    let request = BackendRequest::Block { id: 7, op: BlockOp::Read { sector: 0x20, len: 0x400 } };
    assert_golden(submit(3, request), &[
        0x17, 0x00, 0x00, 0x00,                         // len: 23
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x03,                                           // slot: 3
        0x00,                                           // request tag: Block
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 7
        0x00,                                           // op tag: Read
        0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sector: 0x20
        0x00, 0x04, 0x00, 0x00,                         // len: 0x400
        0x38, 0xD2, 0x25, 0x36,                         // crc32c of seq..payload
    ]);
}

/// The log does not check sector alignment (the device model did): two bytes keep it
/// short. The data is not in the log: its length and hash are.
#[rustfmt::skip]
#[test]
fn test_golden_submit_block_write() {
    let request = BackendRequest::Block { id: 8, op: BlockOp::Write { sector: 0x21, data: vec![0xDE, 0xAD] } };
    assert_golden(submit(0, request), &[
        0x1F, 0x00, 0x00, 0x00,                         // len: 31
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x00,                                           // slot: 0
        0x00,                                           // request tag: Block
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 8
        0x01,                                           // op tag: Write
        0x21, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sector: 0x21
        0x02, 0x00, 0x00, 0x00,                         // data length: 2
        0x87, 0x77, 0x59, 0xE5, 0xEE, 0xD4, 0x1E, 0x4B, // hash: XXH3-64(DE AD) = 0x4b1ed4eee5597787
        0x4E, 0x2D, 0x2A, 0xCA,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_submit_block_flush() {
    let request = BackendRequest::Block { id: 9, op: BlockOp::Flush };
    assert_golden(submit(0, request), &[
        0x0B, 0x00, 0x00, 0x00,                         // len: 11
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x00,                                           // slot: 0
        0x00,                                           // request tag: Block
        0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 9
        0x02,                                           // op tag: Flush
        0x84, 0x99, 0xF1, 0x6B,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_submit_block_discard() {
    let request = BackendRequest::Block { id: 10, op: BlockOp::Discard { sector: 0x30, sectors: 0x08 } };
    assert_golden(submit(0, request), &[
        0x1B, 0x00, 0x00, 0x00,                         // len: 27
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x00,                                           // slot: 0
        0x00,                                           // request tag: Block
        0x0A, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 10
        0x03,                                           // op tag: Discard
        0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sector: 0x30
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // sectors: 8
        0x3F, 0x14, 0x32, 0xD6,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_submit_net_tx() {
    let request = BackendRequest::NetTx { frame: vec![0xAA, 0xBB, 0xCC] };
    assert_golden(submit(1, request), &[
        0x0E, 0x00, 0x00, 0x00,                         // len: 14
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x01,                                           // slot: 1
        0x01,                                           // request tag: NetTx
        0x03, 0x00, 0x00, 0x00,                         // frame length: 3
        0x16, 0x1B, 0xF0, 0xED, 0x02, 0x62, 0x76, 0x3F, // hash: XXH3-64(AA BB CC) = 0x3f766202edf01b16
        0xC7, 0x1E, 0xA8, 0x32,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_submit_entropy() {
    let request = BackendRequest::Entropy { id: 11, len: 0x40 };
    assert_golden(submit(2, request), &[
        0x0E, 0x00, 0x00, 0x00,                         // len: 14
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x06,                                           // kind: Submit
        0x02,                                           // slot: 2
        0x02,                                           // request tag: Entropy
        0x0B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 11
        0x40, 0x00, 0x00, 0x00,                         // len: 64
        0xC9, 0xC2, 0xA0, 0x81,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_completion_block() {
    let completion = BackendCompletion::Block { id: 7, status: 0, data: vec![0x55, 0x66] };
    assert_golden(Event::Completion { slot: 3, completion }, &[
        0x11, 0x00, 0x00, 0x00,                         // len: 17
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x07,                                           // kind: Completion
        0x03,                                           // slot: 3
        0x00,                                           // completion tag: Block
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 7
        0x00,                                           // status: VIRTIO_BLK_S_OK
        0x02, 0x00, 0x00, 0x00,                         // data length: 2
        0x55, 0x66,                                     // data
        0xE5, 0x1E, 0xA7, 0x53,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_completion_net_rx() {
    let completion = BackendCompletion::NetRx { frame: vec![0x01, 0x02, 0x03] };
    assert_golden(Event::Completion { slot: 1, completion }, &[
        0x09, 0x00, 0x00, 0x00,                         // len: 9
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x07,                                           // kind: Completion
        0x01,                                           // slot: 1
        0x01,                                           // completion tag: NetRx
        0x03, 0x00, 0x00, 0x00,                         // frame length: 3
        0x01, 0x02, 0x03,                               // frame
        0xAA, 0x10, 0x9F, 0x4F,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_completion_entropy() {
    let completion = BackendCompletion::Entropy { id: 11, data: vec![0x99, 0x88] };
    assert_golden(Event::Completion { slot: 2, completion }, &[
        0x10, 0x00, 0x00, 0x00,                         // len: 16
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x07,                                           // kind: Completion
        0x02,                                           // slot: 2
        0x02,                                           // completion tag: Entropy
        0x0B, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 11
        0x02, 0x00, 0x00, 0x00,                         // data length: 2
        0x99, 0x88,                                     // data
        0x04, 0xD3, 0x46, 0x91,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_read_elided() {
    assert_golden(Event::ReadElided { slot: 3, id: 7, len: 512, hash: 0x0123_4567_89AB_CDEF }, &[
        0x15, 0x00, 0x00, 0x00,                         // len: 21
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x0A,                                           // kind: ReadElided
        0x03,                                           // slot: 3
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // id: 7
        0x00, 0x02, 0x00, 0x00,                         // len: 512
        0xEF, 0xCD, 0xAB, 0x89, 0x67, 0x45, 0x23, 0x01, // hash: 0x0123456789abcdef
        0x97, 0xE4, 0x33, 0xFC,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_digest() {
    let digest: [u8; 32] = std::array::from_fn(|i| 0xE0 ^ i as u8);
    assert_golden(Event::Digest { digest }, &[
        0x20, 0x00, 0x00, 0x00,                         // len: 32
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x08,                                           // kind: Digest
        0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, // digest[0..8]
        0xE8, 0xE9, 0xEA, 0xEB, 0xEC, 0xED, 0xEE, 0xEF, // digest[8..16]
        0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7, // digest[16..24]
        0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF, // digest[24..32]
        0x3F, 0x3E, 0xEF, 0x47,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_end_power_off() {
    assert_golden(Event::End { status: EndStatus::PowerOff(0x3333) }, &[
        0x05, 0x00, 0x00, 0x00,                         // len: 5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x09,                                           // kind: End
        0x00,                                           // status tag: PowerOff
        0x33, 0x33, 0x00, 0x00,                         // exit status: 0x3333
        0xDE, 0x2A, 0xD6, 0x5B,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_end_stuck() {
    assert_golden(Event::End { status: EndStatus::Stuck }, &[
        0x01, 0x00, 0x00, 0x00,                         // len: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x09,                                           // kind: End
        0x01,                                           // status tag: Stuck
        0x04, 0x25, 0x3D, 0x9D,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_end_stopped() {
    assert_golden(Event::End { status: EndStatus::Stopped }, &[
        0x01, 0x00, 0x00, 0x00,                         // len: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x09,                                           // kind: End
        0x02,                                           // status tag: Stopped
        0xF0, 0xD6, 0x6D, 0x8E,                         // crc32c of seq..payload
    ]);
}

#[rustfmt::skip]
#[test]
fn test_golden_end_reboot() {
    assert_golden(Event::End { status: EndStatus::Reboot }, &[
        0x01, 0x00, 0x00, 0x00,                         // len: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 0
        0x34, 0x12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // icount: 0x1234
        0x09,                                           // kind: End
        0x03,                                           // status tag: Reboot
        0xF3, 0x55, 0x06, 0x7C,                         // crc32c of seq..payload
    ]);
}

/// Two frames: the sequence number counts up and the icount is each frame's own.
#[rustfmt::skip]
#[test]
fn test_golden_second_frame_carries_seq_1() {
    let log = write_log(b"", &[(5, Event::Now { mtime: 1 }), (0x0100_0000_0000, Event::Now { mtime: 2 })]);
    let expected: &[u8] = &[
        0x08, 0x00, 0x00, 0x00,                         // len: 8
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // seq: 1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, // icount: 0x0100_0000_0000
        0x01,                                           // kind: Now
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // mtime: 2
        0x2B, 0x8C, 0xB2, 0x64,                         // crc32c of seq..payload
    ];

    assert_eq!(&log[empty_header().len() + 33..], expected);
}

// ---- round trips --------------------------------------------------------------------

#[test]
fn test_every_event_kind_round_trips() {
    let events = every_event();
    let log = write_log(b"machine config", &events);

    let (header, entries) = decode_all(&log).expect("should succeed");

    assert_eq!(header, Header::new(b"machine config".to_vec()));
    assert_eq!(entries, entries_of(&events));
}

#[test]
fn test_extreme_values_round_trip() {
    let events = vec![
        (0, Event::Now { mtime: u64::MAX }),
        (
            u64::MAX,
            Event::Idle {
                woke_at: Some(u64::MAX),
            },
        ),
        (
            u64::MAX,
            Event::Submit {
                slot: u8::MAX,
                request: SubmitRecord::Entropy {
                    id: u64::MAX,
                    len: u32::MAX,
                },
            },
        ),
        (
            u64::MAX,
            Event::Submit {
                slot: u8::MAX,
                request: SubmitRecord::Block {
                    id: u64::MAX,
                    op: BlockOpRecord::Write {
                        sector: u64::MAX,
                        len: u32::MAX,
                        hash: u64::MAX,
                    },
                },
            },
        ),
        (
            u64::MAX,
            Event::End {
                status: EndStatus::PowerOff(u32::MAX),
            },
        ),
    ];

    let (_, entries) = decode_all(&write_log(&[0xFF; 300], &events)).expect("should succeed");

    assert_eq!(entries, entries_of(&events));
}

/// A stream that hands out one byte per read, with an interruption before each:
/// the reader must not rely on `read` filling its buffer (a TCP socket does not).
struct Trickle<'a> {
    bytes: &'a [u8],
    interrupt: bool,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = self.bytes.len().min(buf.len()).min(1);
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn test_reader_over_a_trickling_interrupted_stream_reads_every_entry() {
    let events = every_event();
    let log = write_log(b"cfg", &events);

    // A buffer of one byte, of a few (frames never whole in it), and of more
    // than the log (every frame whole in it: checked in place).
    for capacity in [1, 7, 1 << 20] {
        let trickle = Trickle {
            bytes: &log,
            interrupt: false,
        };
        let (mut reader, header) = LogReader::new(io::BufReader::with_capacity(capacity, trickle))
            .expect("should succeed");
        let mut entries = Vec::new();
        while let Some(entry) = reader.next().expect("should succeed") {
            entries.push(entry);
        }

        assert_eq!(
            (header.config, entries),
            (b"cfg".to_vec(), entries_of(&events)),
            "buffer of {capacity}"
        );
        assert_eq!(reader.offset(), log.len() as u64, "buffer of {capacity}");
    }
}

#[test]
fn test_writer_counts_bytes_and_sequence_numbers() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(b"cfg".to_vec())).expect("should succeed");
    w.write(1, &Event::Now { mtime: 1 })
        .expect("should succeed");

    let counts = (w.bytes_written(), w.next_seq());

    assert_eq!(counts, (21 + 33, 1));
    assert_eq!(w.into_inner().len(), 21 + 33);
}

#[test]
fn test_writer_skips_empty_console_input() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.write(1, &Event::ConsoleInput { bytes: Vec::new() })
        .expect("should succeed");
    w.write(
        2,
        &Event::ConsoleInput {
            bytes: b"x".to_vec(),
        },
    )
    .expect("should succeed");

    let (_, entries) = decode_all(&w.into_inner()).expect("should succeed");

    assert_eq!(
        entries,
        vec![Entry {
            seq: 0,
            icount: 2,
            event: Event::ConsoleInput {
                bytes: b"x".to_vec()
            }
        }]
    );
}

#[test]
fn test_writer_refuses_an_icount_below_the_previous_one() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.write(10, &Event::Now { mtime: 1 })
        .expect("should succeed");

    let err = w
        .write(9, &Event::Now { mtime: 2 })
        .expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(w.next_seq(), 1);
}

#[test]
fn test_writer_refuses_an_entry_after_end() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.write(
        10,
        &Event::End {
            status: EndStatus::Stopped,
        },
    )
    .expect("should succeed");

    let err = w
        .write(10, &Event::Now { mtime: 2 })
        .expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn test_writer_refuses_a_header_of_another_version() {
    let header = Header {
        version: 1,
        config: Vec::new(),
    };

    let err = LogWriter::new(Vec::new(), &header).expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn test_writer_refuses_a_frame_above_the_maximum() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    let frame = vec![0; MAX_FRAME_LEN as usize];

    let err = w
        .write(
            1,
            &Event::Completion {
                slot: 0,
                completion: BackendCompletion::NetRx { frame },
            },
        )
        .expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(w.bytes_written(), empty_header().len() as u64);
}

/// A sink that fails every write.
#[derive(Debug)]
struct Broken;

impl io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_writer_after_an_io_error_refuses_further_writes() {
    let mut failing =
        LogWriter::new(FailAfter { left: 18 }, &Header::new(Vec::new())).expect("should succeed");

    let first = failing
        .write(1, &Event::Now { mtime: 1 })
        .expect_err("should be rejected")
        .kind();
    let second = failing
        .write(2, &Event::Now { mtime: 2 })
        .expect_err("should be rejected")
        .kind();

    assert_eq!(
        (first, second),
        (io::ErrorKind::BrokenPipe, io::ErrorKind::Other)
    );
}

#[test]
fn test_writer_on_a_failing_sink_reports_the_error() {
    let err = LogWriter::new(Broken, &Header::new(Vec::new())).expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

/// A sink that accepts `left` bytes, then fails.
#[derive(Debug)]
struct FailAfter {
    left: usize,
}

impl io::Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---- truncation and corruption ------------------------------------------------------

/// A small log of a few frames of different kinds.
fn small_log() -> (Vec<u8>, Vec<(u64, Event)>) {
    let events = vec![
        (0, Event::RngSeed { seed: [3; 32] }),
        (
            5,
            Event::ConsoleInput {
                bytes: b"ab".to_vec(),
            },
        ),
        (
            9,
            Event::Completion {
                slot: 0,
                completion: BackendCompletion::Block {
                    id: 1,
                    status: 0,
                    data: vec![4; 8],
                },
            },
        ),
        (9, Event::Idle { woke_at: None }),
        (
            12,
            Event::End {
                status: EndStatus::PowerOff(1),
            },
        ),
    ];
    (write_log(b"cfg", &events), events)
}

/// Byte offsets at which each frame of `small_log` ends (the header's end first).
fn frame_boundaries(log: &[u8]) -> Vec<usize> {
    let mut at = 8 + 2 + 4 + 3 + 4;
    let mut out = vec![at];
    while at < log.len() {
        let len = u32::from_le_bytes(log[at..at + 4].try_into().expect("should succeed")) as usize;
        at += 25 + len;
        out.push(at);
    }
    out
}

#[test]
fn test_log_cut_at_every_byte_is_truncated_or_a_clean_prefix() {
    let (log, events) = small_log();
    let boundaries = frame_boundaries(&log);

    let wrong: Vec<(usize, String)> = (0..log.len())
        .filter_map(|cut| {
            let result = decode_all(&log[..cut]);
            let ok = match (&result, boundaries.iter().position(|&b| b == cut)) {
                (Ok((_, entries)), Some(frames)) => *entries == entries_of(&events[..frames]),
                (Err(LogError::TruncatedHeader { offset, .. }), None) => {
                    cut < boundaries[0] && *offset == cut as u64
                }
                (
                    Err(LogError::Truncated {
                        offset,
                        seq,
                        needed,
                    }),
                    None,
                ) => {
                    let frame = boundaries
                        .iter()
                        .position(|&b| b > cut)
                        .expect("should succeed");
                    *offset == cut as u64 && *seq == frame as u64 - 1 && *needed > 0
                }
                _ => false,
            };
            (!ok).then(|| (cut, format!("{result:?}")))
        })
        .collect();

    assert_eq!(wrong, Vec::new());
}

#[test]
fn test_every_single_byte_corruption_is_an_error() {
    let (log, _) = small_log();

    let accepted: Vec<(usize, u8, String)> = (0..log.len())
        .flat_map(|at| [0x01u8, 0x80, 0xFF].map(|flip| (at, flip)))
        .filter_map(|(at, flip)| {
            let mut bad = log.clone();
            bad[at] ^= flip;
            match decode_all(&bad) {
                Err(LogError::Io(e)) => Some((at, flip, format!("I/O error {e}"))),
                Err(_) => None,
                Ok(decoded) => Some((at, flip, format!("{decoded:?}"))),
            }
        })
        .collect();

    assert_eq!(accepted, Vec::new());
}

#[test]
fn test_corrupt_payload_byte_is_a_checksum_error_naming_the_frame() {
    let (mut log, _) = small_log();
    let boundaries = frame_boundaries(&log);
    log[boundaries[1] + 21] ^= 0x04; // first payload byte of frame 1

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(err, LogError::Checksum { offset, seq: 1, stored, computed } if offset == boundaries[1] as u64 && stored != computed),
        "{err:?}"
    );
}

#[test]
fn test_corrupt_header_is_a_header_checksum_error() {
    let (mut log, _) = small_log();
    log[14] ^= 0x20; // config

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(matches!(err, LogError::HeaderChecksum { .. }), "{err:?}");
}

// ---- specific rejections ------------------------------------------------------------

#[test]
fn test_missing_frame_is_a_sequence_gap() {
    let log = [
        empty_header(),
        raw_frame(0, 1, 1, &[0; 8]),
        raw_frame(2, 1, 1, &[0; 8]),
    ]
    .concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::SequenceGap {
                offset: 51,
                expected: 1,
                found: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_icount_going_back_is_rejected() {
    let log = [
        empty_header(),
        raw_frame(0, 100, 1, &[0; 8]),
        raw_frame(1, 99, 1, &[0; 8]),
    ]
    .concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::IcountWentBack {
                seq: 1,
                previous: 100,
                found: 99
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_oversized_length_is_rejected_before_reading_the_frame() {
    let mut log = empty_header();
    log.extend_from_slice(&(MAX_FRAME_LEN + 1).to_le_bytes());
    log.extend_from_slice(&[0; 64]);

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(err, LogError::FrameTooLarge { offset: 18, len, max: MAX_FRAME_LEN } if len == MAX_FRAME_LEN + 1),
        "{err:?}"
    );
}

#[test]
fn test_unknown_kind_is_rejected() {
    let log = [empty_header(), raw_frame(0, 1, 0xEE, &[1, 2])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::UnknownKind {
                offset: 18,
                seq: 0,
                kind: 0xEE
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_kind_zero_is_unknown() {
    let log = [empty_header(), raw_frame(0, 1, 0, &[])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(err, LogError::UnknownKind { kind: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn test_payload_with_bytes_left_over_is_malformed() {
    let log = [empty_header(), raw_frame(0, 1, 1, &[0; 9])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                offset: 18,
                seq: 0,
                what: "bytes left over after the event"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_short_payload_is_malformed() {
    let log = [empty_header(), raw_frame(0, 1, 1, &[0; 7])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                what: "payload ends inside a field",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_empty_console_input_is_malformed() {
    let log = [empty_header(), raw_frame(0, 1, 3, &[0, 0, 0, 0])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                what: "console input is empty",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_byte_string_longer_than_its_payload_is_malformed() {
    let log = [
        empty_header(),
        raw_frame(0, 1, 3, &[0xFF, 0xFF, 0xFF, 0xFF, b'a']),
    ]
    .concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                what: "byte string longer than the payload",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_unknown_idle_tag_is_malformed() {
    let log = [empty_header(), raw_frame(0, 1, 2, &[2])].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                what: "idle wake-up tag is neither 0 (none) nor 1 (some)",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_frame_after_end_is_rejected() {
    let log = [
        empty_header(),
        raw_frame(0, 1, 9, &[1]),
        raw_frame(1, 1, 1, &[0; 8]),
    ]
    .concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(err, LogError::AfterEnd { offset: 44, seq: 1 }),
        "{err:?}"
    );
}

#[test]
fn test_bad_magic_is_rejected() {
    let mut log = empty_header();
    log[0] = b'X';

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(&err, LogError::BadMagic { found } if found == b"XTVMLOG\0"),
        "{err:?}"
    );
}

#[test]
fn test_short_stream_that_is_not_a_log_is_bad_magic_not_truncated() {
    let err = decode_all(b"PK\x03").expect_err("should be rejected");

    assert!(
        matches!(&err, LogError::BadMagic { found } if found == b"PK\x03"),
        "{err:?}"
    );
}

#[test]
fn test_empty_stream_is_a_truncated_header() {
    let err = decode_all(b"").expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::TruncatedHeader {
                offset: 0,
                needed: 18
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_unsupported_version_is_rejected() {
    // A version-2 log (data hashed with XXH64).
    let mut log = empty_header();
    log[8] = 2;

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::UnsupportedVersion {
                found: 2,
                supported: 3
            }
        ),
        "{err:?}"
    );
}

/// A version-1 log (whole requests in `Submit`) is refused by name, before its frames.
#[test]
fn test_version_1_log_is_refused_with_both_versions_named() {
    let mut log = write_log(b"cfg", &every_event());
    log[8] = 1;

    let err = decode_all(&log).expect_err("should be rejected");

    assert_eq!(
        err.to_string(),
        "Log format version 1 is not supported by this build (it reads version 3); record the run again"
    );
}

#[test]
fn test_oversized_config_is_rejected() {
    let mut log = empty_header();
    log[10..14].copy_from_slice(&(MAX_CONFIG_LEN + 1).to_le_bytes());

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::HeaderTooLarge {
                max: MAX_CONFIG_LEN,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn test_reader_after_an_error_keeps_failing() {
    let log = [
        empty_header(),
        raw_frame(0, 1, 0xEE, &[]),
        raw_frame(1, 1, 1, &[0; 8]),
    ]
    .concat();
    let (mut reader, _) = LogReader::new(&log[..]).expect("should succeed");

    let first = reader.next();
    let second = reader.next();

    assert!(
        matches!(first, Err(LogError::UnknownKind { .. })),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(LogError::Stopped { offset: 43 })),
        "{second:?}"
    );
}

#[test]
fn test_error_messages_name_the_frame_and_offset() {
    let err = LogError::Checksum {
        offset: 4096,
        seq: 17,
        stored: 0xDEAD_BEEF,
        computed: 0x0123_4567,
    };

    assert_eq!(
        err.to_string(),
        "Frame 17 at byte 4096 is corrupt: stored CRC-32C 0xdeadbeef, computed 0x01234567"
    );
}

// ---- the submit record and the data hash ------------------------------------------

/// Test vectors of XXH3-64 with seed 0 (computed with a reference XXH3
/// implementation): every length class (0, 1-3, 4-8, 9-16, 17-128, 129-240,
/// over 240 with a partial block, whole blocks and 1 MiB).
#[test]
fn test_hash_bytes_test_vectors() {
    let upto100: Vec<u8> = (0..100).collect();
    let upto200: Vec<u8> = (0..200).collect();
    let all_bytes_17_times: Vec<u8> = (0..17).flat_map(|_| 0..=255u8).collect();
    let mebibyte: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();

    assert_eq!(
        [
            hash_bytes(b""),
            hash_bytes(b"a"),
            hash_bytes(&[0xDE, 0xAD]),
            hash_bytes(b"abcdefg"),
            hash_bytes(&upto100[..12]),
            hash_bytes(&upto100),
            hash_bytes(&upto200),
            hash_bytes(&[0xAB; 512]),
            hash_bytes(&[0xAB; 4096]),
            hash_bytes(&all_bytes_17_times),
            hash_bytes(&mebibyte),
        ],
        [
            0x2d06_8005_38d3_94c2,
            0xe6c6_32b6_1e96_4e1f,
            0x4b1e_d4ee_e559_7787,
            0x5a40_dc3f_d44c_052f,
            0x5ace_6a51_1c10_894b,
            0x004e_4f92_1a64_bd1c,
            0xf42a_8864_feaf_0703,
            0xcc0c_1560_47dc_d994,
            0x98d7_40d6_5814_42e8,
            0x56f0_5ca6_814a_f06f,
            0x6e0d_7ac3_6b8c_10ff,
        ]
    );
}

/// Every length up to a few blocks, and data that is not a repeating
/// pattern, against the reference implementation of XXH3 (the `xxhash-rust`
/// crate, a test-only dependency).
#[test]
fn test_hash_bytes_is_xxh3_of_every_length() {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..4200)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for n in 0..=data.len() {
        assert_eq!(
            hash_bytes(&data[..n]),
            xxhash_rust::xxh3::xxh3_64(&data[..n]),
            "length {n}"
        );
    }
}

#[test]
fn test_hash_bytes_sees_every_single_bit_flip_and_the_length() {
    let base = vec![0u8; 100];
    let mut hashes = vec![hash_bytes(&base), hash_bytes(&base[..99])];
    for i in 0..base.len() * 8 {
        let mut v = base.clone();
        v[i / 8] ^= 1 << (i % 8);
        hashes.push(hash_bytes(&v));
    }

    let count = hashes.len();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), count);
}

#[test]
fn test_submit_record_keeps_small_fields_and_hashes_the_data() {
    let write = BackendRequest::Block {
        id: 3,
        op: BlockOp::Write {
            sector: 8,
            data: vec![0xAB; 512],
        },
    };
    let frame = BackendRequest::NetTx { frame: vec![1, 2] };
    let read = BackendRequest::Block {
        id: 4,
        op: BlockOp::Read {
            sector: 9,
            len: 1024,
        },
    };

    assert_eq!(
        [
            SubmitRecord::of(&write),
            SubmitRecord::of(&frame),
            SubmitRecord::of(&read)
        ],
        [
            SubmitRecord::Block {
                id: 3,
                op: BlockOpRecord::Write {
                    sector: 8,
                    len: 512,
                    hash: hash_bytes(&[0xAB; 512]),
                },
            },
            SubmitRecord::NetTx {
                len: 2,
                hash: hash_bytes(&[1, 2]),
            },
            SubmitRecord::Block {
                id: 4,
                op: BlockOpRecord::Read {
                    sector: 9,
                    len: 1024,
                },
            },
        ]
    );
}

#[test]
fn test_submit_records_of_writes_with_one_byte_changed_differ() {
    let write = |data| BackendRequest::Block {
        id: 3,
        op: BlockOp::Write { sector: 8, data },
    };
    let mut changed = vec![0u8; 4096];
    changed[4000] = 1;

    assert_ne!(
        SubmitRecord::of(&write(vec![0; 4096])),
        SubmitRecord::of(&write(changed))
    );
}

#[test]
fn test_submit_record_describes_the_request() {
    let described: Vec<String> = [
        BackendRequest::Block {
            id: 3,
            op: BlockOp::Write {
                sector: 8,
                data: vec![0xDE, 0xAD],
            },
        },
        BackendRequest::Block {
            id: 4,
            op: BlockOp::Read {
                sector: 9,
                len: 1024,
            },
        },
        BackendRequest::Block {
            id: 5,
            op: BlockOp::Flush,
        },
        BackendRequest::Block {
            id: 6,
            op: BlockOp::Discard {
                sector: 16,
                sectors: 8,
            },
        },
        BackendRequest::NetTx {
            frame: vec![0xAA, 0xBB, 0xCC],
        },
        BackendRequest::Entropy { id: 7, len: 64 },
    ]
    .iter()
    .map(|r| SubmitRecord::of(r).to_string())
    .collect();

    assert_eq!(
        described,
        [
            "a disk write of 2 bytes at sector 8 (request 3, data hash 0x4b1ed4eee5597787)",
            "a disk read of 1024 bytes at sector 9 (request 4)",
            "a disk flush (request 5)",
            "a disk discard of 8 sectors at sector 16 (request 6)",
            "a network frame of 3 bytes (hash 0x3f766202edf01b16)",
            "an entropy request for 64 bytes (request 7)",
        ]
    );
}

#[test]
fn test_write_completion_writes_the_bytes_of_the_completion_event() {
    let completions = [
        (
            0,
            BackendCompletion::Block {
                id: 1,
                status: 0,
                data: vec![7; 512],
            },
        ),
        (
            1,
            BackendCompletion::NetRx {
                frame: vec![1, 2, 3],
            },
        ),
        (
            2,
            BackendCompletion::Entropy {
                id: 5,
                data: vec![9; 64],
            },
        ),
        // At and around the size from which the data goes as its own slice.
        (
            0,
            BackendCompletion::Block {
                id: 2,
                status: 0,
                data: (0..BORROWED_DATA).map(|i| i as u8).collect(),
            },
        ),
        (
            0,
            BackendCompletion::Block {
                id: 3,
                status: 1,
                data: vec![3; BORROWED_DATA - 1],
            },
        ),
        (
            1,
            BackendCompletion::NetRx {
                frame: vec![4; 70_000],
            },
        ),
        (
            2,
            BackendCompletion::Entropy {
                id: 6,
                data: vec![5; BORROWED_DATA + 1],
            },
        ),
    ];
    let mut borrowed =
        LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    for (slot, completion) in &completions {
        borrowed
            .write_completion(ICOUNT, *slot, completion)
            .expect("should succeed");
    }
    let events: Vec<(u64, Event)> = completions
        .iter()
        .map(|(slot, completion)| {
            (
                ICOUNT,
                Event::Completion {
                    slot: *slot,
                    completion: completion.clone(),
                },
            )
        })
        .collect();

    assert_eq!(
        (borrowed.next_seq(), borrowed.into_inner()),
        (7, write_log(&[], &events))
    );
}

/// A writer that takes at most 5 bytes per call, vectored or not.
struct Dribble(Vec<u8>);

impl io::Write for Dribble {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(5);
        self.0.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn test_a_completion_written_in_slices_survives_a_writer_taking_five_bytes_at_a_time() {
    let completion = BackendCompletion::Block {
        id: 9,
        status: 0,
        data: (0..3 * BORROWED_DATA).map(|i| (i * 13) as u8).collect(),
    };
    let mut dribbled =
        LogWriter::new(Dribble(Vec::new()), &Header::new(Vec::new())).expect("should succeed");
    dribbled
        .write_completion(ICOUNT, 0, &completion)
        .expect("should succeed");
    let event = Event::Completion {
        slot: 0,
        completion,
    };

    assert_eq!(dribbled.into_inner().0, write_log(&[], &[(ICOUNT, event)]));
}

#[test]
fn test_write_completion_refuses_an_icount_below_the_previous_one() {
    let mut w = LogWriter::new(Vec::new(), &Header::new(Vec::new())).expect("should succeed");
    w.write(10, &Event::Now { mtime: 1 })
        .expect("should succeed");

    let err = w
        .write_completion(9, 0, &BackendCompletion::NetRx { frame: vec![1] })
        .expect_err("should be rejected");

    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn test_submit_write_cut_inside_its_hash_is_malformed() {
    // slot 0, Block, id 1, Write, sector 2, len 512, then 7 of the hash's 8 bytes.
    let payload = [
        &[0u8, 0][..],
        &1u64.to_le_bytes(),
        &[1],
        &2u64.to_le_bytes(),
        &512u32.to_le_bytes(),
        &[0; 7],
    ]
    .concat();
    let log = [empty_header(), raw_frame(0, 1, 6, &payload)].concat();

    let err = decode_all(&log).expect_err("should be rejected");

    assert!(
        matches!(
            err,
            LogError::Malformed {
                what: "payload ends inside a field",
                ..
            }
        ),
        "{err:?}"
    );
}
