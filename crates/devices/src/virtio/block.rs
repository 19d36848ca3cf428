//! virtio-blk (virtio 1.2 §5.2): one request queue, 512-byte sectors.
//!
//! A request is a device-readable header (`le32 type, le32 reserved, le64 sector`),
//! device-readable data (`OUT`, `DISCARD`) or device-writable data (`IN`, `GET_ID`),
//! and a final device-writable status byte. The buffers form byte streams, so the
//! framing of the descriptors does not matter (`VIRTIO_F_ANY_LAYOUT` is implied by
//! `VIRTIO_F_VERSION_1`). A request the guest gets wrong (header short or writable,
//! data in the wrong direction, a length not a multiple of 512, sectors past the
//! capacity, a write to a read-only disk) is answered `VIRTIO_BLK_S_IOERR` without
//! reaching the backend; an unknown type `VIRTIO_BLK_S_UNSUPP`; a chain without a
//! writable status byte is returned with length 0.
//!
//! Ordering: a request that touches sectors of an earlier request still in flight or
//! held (at least one of them writing: `OUT` or `DISCARD`), and a `FLUSH` issued after
//! a write that is still in flight or held, waits in a FIFO. Held requests go to the
//! backend, in guest order, from a later [`super::VirtioMmio::process`] once nothing
//! earlier conflicts with them, so the image's final content never depends on the
//! order in which the backend completes requests.

use std::collections::{BTreeMap, VecDeque};

use super::mmio::{Transport, QUEUE_SIZE_MAX};
use super::queue::{read_segments, segments_len, write_segments, Chain, Segment};
use super::{BackendRequest, BlockOp, GuestMemory};
use crate::state::{check_max, StateError};

/// Feature: `seg_max` holds the most data buffers in a request.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: the disk is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: `VIRTIO_BLK_T_FLUSH` is supported (a write-back cache).
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Feature: `VIRTIO_BLK_T_DISCARD` is supported.
pub const VIRTIO_BLK_F_DISCARD: u64 = 1 << 13;

/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: the device's serial string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Request type: discard.
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: the request failed.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: the request is not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Length of the `GET_ID` answer: the serial, zero-padded, not terminated at 20.
pub const VIRTIO_BLK_ID_BYTES: usize = 20;

const SECTOR: u64 = 512;
const HEADER_LEN: u64 = 16;
const DISCARD_SEGMENT_LEN: u64 = 16;
/// The most data one request may carry: 8 MiB, twice what Linux sends by default.
const MAX_REQUEST_BYTES: u64 = 8 << 20;
/// `max_discard_sectors`: 2 GiB per discard.
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// Size of the configuration space exposed, up to `discard_sector_alignment`.
const CONFIG_LEN: usize = 0x30;

const DEVICE: &str = "virtio-blk";

/// A request taken from the queue and handed to the backend, or held until it can be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRequestState {
    /// The backend request id.
    pub id: u64,
    /// The chain's head in the request queue.
    pub head: u16,
    /// The operation (a write's data copied out of guest RAM).
    pub op: BlockOp,
    /// The chain's device-writable buffers: read data, then the status byte last.
    pub writable: Vec<Segment>,
}

/// A virtio block device model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    capacity: u64,
    read_only: bool,
    serial: String,
    in_flight: BTreeMap<u64, BlockRequestState>,
    held: VecDeque<BlockRequestState>,
}

/// The plain-data state of a [`Block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockState {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// The disk refuses writes (`VIRTIO_BLK_F_RO`).
    pub read_only: bool,
    /// The `GET_ID` serial, at most 20 bytes.
    pub serial: String,
    /// Requests handed to the backend and not completed, in id order.
    pub in_flight: Vec<BlockRequestState>,
    /// Requests waiting for an overlapping earlier one, in guest order.
    pub held: Vec<BlockRequestState>,
}

/// What the model makes of a request.
enum Parsed {
    /// For the backend.
    Backend(BlockOp),
    /// Answered by the model: these bytes, status OK.
    Answer(Vec<u8>),
}

fn is_write(op: &BlockOp) -> bool {
    matches!(op, BlockOp::Write { .. } | BlockOp::Discard { .. })
}

/// The sectors `[start, end)` an operation touches (none for a flush).
fn sectors(op: &BlockOp) -> Option<(u64, u64)> {
    let (start, count) = match op {
        BlockOp::Read { sector, len } => (*sector, u64::from(*len) / SECTOR),
        BlockOp::Write { sector, data } => (*sector, data.len() as u64 / SECTOR),
        BlockOp::Discard { sector, sectors } => (*sector, *sectors),
        BlockOp::Flush => return None,
    };
    Some((start, start.saturating_add(count)))
}

/// Whether `later` must wait for `earlier`.
fn conflicts(later: &BlockOp, earlier: &BlockOp) -> bool {
    if matches!(later, BlockOp::Flush) {
        return is_write(earlier);
    }
    if !is_write(later) && !is_write(earlier) {
        return false;
    }
    match (sectors(later), sectors(earlier)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 < b1 && b0 < a1,
        _ => false,
    }
}

fn le32(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(raw)
}

fn le64(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(raw)
}

impl Block {
    /// A disk of `capacity_sectors` 512-byte sectors; `serial` is what `GET_ID`
    /// answers, cut to its first 20 bytes (at a character boundary).
    pub fn new(capacity_sectors: u64, read_only: bool, serial: String) -> Block {
        let mut serial = serial;
        let mut cut = serial.len().min(VIRTIO_BLK_ID_BYTES);
        while !serial.is_char_boundary(cut) {
            cut -= 1;
        }
        serial.truncate(cut);
        Block {
            capacity: capacity_sectors,
            read_only,
            serial,
            in_flight: BTreeMap::new(),
            held: VecDeque::new(),
        }
    }

    /// Capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The model's complete state.
    pub fn state(&self) -> BlockState {
        BlockState {
            capacity: self.capacity,
            read_only: self.read_only,
            serial: self.serial.clone(),
            in_flight: self.in_flight.values().cloned().collect(),
            held: self.held.iter().cloned().collect(),
        }
    }

    pub(crate) fn features(&self) -> u64 {
        let mode = if self.read_only {
            VIRTIO_BLK_F_RO
        } else {
            VIRTIO_BLK_F_DISCARD
        };
        VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_FLUSH | mode
    }

    /// `struct virtio_blk_config` up to the discard fields.
    pub(crate) fn config(&self) -> Vec<u8> {
        let mut config = vec![0u8; CONFIG_LEN];
        config[0x00..0x08].copy_from_slice(&self.capacity.to_le_bytes());
        // seg_max: the queue holds the header and status besides the data buffers.
        config[0x0c..0x10].copy_from_slice(&u32::from(QUEUE_SIZE_MAX - 2).to_le_bytes());
        if !self.read_only {
            config[0x24..0x28].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
            config[0x28..0x2c].copy_from_slice(&1u32.to_le_bytes());
            config[0x2c..0x30].copy_from_slice(&1u32.to_le_bytes());
        }
        config
    }

    pub(crate) fn reset(&mut self) {
        self.in_flight.clear();
        self.held.clear();
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.in_flight
            .keys()
            .copied()
            .chain(self.held.iter().map(|r| r.id))
            .collect()
    }

    pub(crate) fn outstanding_heads(&self) -> Vec<u16> {
        self.in_flight
            .values()
            .chain(self.held.iter())
            .map(|r| r.head)
            .collect()
    }

    pub(crate) fn in_flight_requests(&self) -> Vec<BackendRequest> {
        self.in_flight
            .values()
            .map(|r| BackendRequest::Block {
                id: r.id,
                op: r.op.clone(),
            })
            .collect()
    }

    /// Whether `op` must wait for a request in flight or one of the first `held` held.
    fn blocked(&self, op: &BlockOp, held: usize) -> bool {
        self.in_flight.values().any(|r| conflicts(op, &r.op))
            || self.held.iter().take(held).any(|r| conflicts(op, &r.op))
    }

    pub(crate) fn has_releasable(&self) -> bool {
        self.held
            .iter()
            .enumerate()
            .any(|(i, r)| !self.blocked(&r.op, i))
    }

    /// Hands the held requests nothing earlier conflicts with any more to the backend.
    pub(crate) fn release(&mut self, t: &mut Transport, out: &mut Vec<BackendRequest>) {
        if !t.live() {
            return;
        }
        let mut i = 0;
        while i < self.held.len() {
            if self.blocked(&self.held[i].op, i) {
                i += 1;
                continue;
            }
            if let Some(request) = self.held.remove(i) {
                self.dispatch(request, out);
            }
        }
    }

    fn dispatch(&mut self, request: BlockRequestState, out: &mut Vec<BackendRequest>) {
        out.push(BackendRequest::Block {
            id: request.id,
            op: request.op.clone(),
        });
        self.in_flight.insert(request.id, request);
    }

    pub(crate) fn process_queue(
        &mut self,
        t: &mut Transport,
        mem: &mut dyn GuestMemory,
        out: &mut Vec<BackendRequest>,
    ) {
        while let Some(next) = t.pop(0, mem) {
            match next {
                Ok(chain) => self.take(t, mem, chain, out),
                Err((head, _)) => t.push_used(0, mem, head, 0),
            }
        }
    }

    fn take(
        &mut self,
        t: &mut Transport,
        mem: &mut dyn GuestMemory,
        chain: Chain,
        out: &mut Vec<BackendRequest>,
    ) {
        if chain.writable_len() == 0 {
            t.push_used(0, mem, chain.head, 0);
            return;
        }
        match self.parse(mem, &chain) {
            Ok(Parsed::Backend(op)) => {
                let request = BlockRequestState {
                    id: t.alloc_id(),
                    head: chain.head,
                    op,
                    writable: chain.writable,
                };
                if self.blocked(&request.op, self.held.len()) {
                    self.held.push_back(request);
                } else {
                    self.dispatch(request, out);
                }
            }
            Ok(Parsed::Answer(data)) => {
                finish(t, mem, chain.head, &chain.writable, &data, VIRTIO_BLK_S_OK);
            }
            Err(status) => finish(t, mem, chain.head, &chain.writable, &[], status),
        }
    }

    /// The request in `chain`, or the status to answer it with at once.
    fn parse(&self, mem: &dyn GuestMemory, chain: &Chain) -> Result<Parsed, u8> {
        const IOERR: u8 = VIRTIO_BLK_S_IOERR;
        let readable_len = chain.readable_len();
        if readable_len < HEADER_LEN {
            return Err(IOERR);
        }
        let mut header = [0u8; HEADER_LEN as usize];
        read_segments(mem, &chain.readable, 0, &mut header).map_err(|_| IOERR)?;
        let kind = le32(&header[0..4]);
        let sector = le64(&header[8..16]);
        let data_in = readable_len - HEADER_LEN;
        let data_out = chain.writable_len() - 1;
        let writes = matches!(kind, VIRTIO_BLK_T_OUT | VIRTIO_BLK_T_DISCARD);
        if writes && self.read_only {
            return Err(IOERR);
        }
        match kind {
            VIRTIO_BLK_T_IN => {
                if data_in != 0 || !data_out.is_multiple_of(SECTOR) || data_out > MAX_REQUEST_BYTES
                {
                    return Err(IOERR);
                }
                self.check_range(sector, data_out / SECTOR)?;
                let len = u32::try_from(data_out).map_err(|_| IOERR)?;
                Ok(Parsed::Backend(BlockOp::Read { sector, len }))
            }
            VIRTIO_BLK_T_OUT => {
                if data_out != 0 || !data_in.is_multiple_of(SECTOR) || data_in > MAX_REQUEST_BYTES {
                    return Err(IOERR);
                }
                self.check_range(sector, data_in / SECTOR)?;
                let mut data = vec![0u8; usize::try_from(data_in).map_err(|_| IOERR)?];
                read_segments(mem, &chain.readable, HEADER_LEN, &mut data).map_err(|_| IOERR)?;
                Ok(Parsed::Backend(BlockOp::Write { sector, data }))
            }
            VIRTIO_BLK_T_FLUSH => {
                if data_in != 0 || data_out != 0 {
                    return Err(IOERR);
                }
                Ok(Parsed::Backend(BlockOp::Flush))
            }
            VIRTIO_BLK_T_GET_ID => {
                if data_in != 0 {
                    return Err(IOERR);
                }
                let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
                let serial = self.serial.as_bytes();
                id[..serial.len()].copy_from_slice(serial);
                let n = usize::try_from(data_out)
                    .unwrap_or(usize::MAX)
                    .min(id.len());
                Ok(Parsed::Answer(id[..n].to_vec()))
            }
            VIRTIO_BLK_T_DISCARD => {
                // max_discard_seg is 1.
                if data_out != 0 || data_in != DISCARD_SEGMENT_LEN {
                    return Err(IOERR);
                }
                let mut segment = [0u8; DISCARD_SEGMENT_LEN as usize];
                read_segments(mem, &chain.readable, HEADER_LEN, &mut segment).map_err(|_| IOERR)?;
                let sector = le64(&segment[0..8]);
                let sectors = le32(&segment[8..12]);
                let flags = le32(&segment[12..16]);
                if flags != 0 {
                    return Err(VIRTIO_BLK_S_UNSUPP);
                }
                if sectors > MAX_DISCARD_SECTORS {
                    return Err(IOERR);
                }
                self.check_range(sector, sectors.into())?;
                Ok(Parsed::Backend(BlockOp::Discard {
                    sector,
                    sectors: sectors.into(),
                }))
            }
            _ => Err(VIRTIO_BLK_S_UNSUPP),
        }
    }

    fn check_range(&self, sector: u64, count: u64) -> Result<(), u8> {
        match sector.checked_add(count) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(VIRTIO_BLK_S_IOERR),
        }
    }

    pub(crate) fn complete(
        &mut self,
        t: &mut Transport,
        mem: &mut dyn GuestMemory,
        id: u64,
        status: u8,
        data: &[u8],
    ) {
        let Some(request) = self.in_flight.remove(&id) else {
            return;
        };
        if t.broken() {
            // The driver must reset the device: its buffers are left alone.
            return;
        }
        let mut status = match status {
            VIRTIO_BLK_S_OK | VIRTIO_BLK_S_UNSUPP => status,
            _ => VIRTIO_BLK_S_IOERR,
        };
        let mut payload: &[u8] = &[];
        if let BlockOp::Read { len, .. } = request.op {
            if status == VIRTIO_BLK_S_OK && data.len() as u64 == u64::from(len) {
                payload = data;
            } else if status == VIRTIO_BLK_S_OK {
                status = VIRTIO_BLK_S_IOERR;
            }
        }
        finish(t, mem, request.head, &request.writable, payload, status);
    }
}

/// Writes `data` then `status` (as the last writable byte) and returns the chain.
fn finish(
    t: &mut Transport,
    mem: &mut dyn GuestMemory,
    head: u16,
    writable: &[Segment],
    data: &[u8],
    status: u8,
) {
    let status_at = segments_len(writable).saturating_sub(1);
    // The buffers were checked to be in RAM when the chain was taken.
    let written = write_segments(mem, writable, 0, data).unwrap_or(0);
    let _ = write_segments(mem, writable, status_at, &[status]);
    let len = u32::try_from(written + 1).unwrap_or(u32::MAX);
    t.push_used(0, mem, head, len);
}

impl TryFrom<BlockState> for Block {
    type Error = StateError;

    /// Checks the serial's length, that ids are unique, and that every request is one
    /// the model could have taken: a status byte to write, a read's buffers matching
    /// its length, whole sectors within the capacity, no write on a read-only disk.
    fn try_from(state: BlockState) -> Result<Block, StateError> {
        check_max(
            DEVICE,
            || "serial length".into(),
            state.serial.len() as u64,
            VIRTIO_BLK_ID_BYTES as u64,
        )?;
        let block = Block {
            capacity: state.capacity,
            read_only: state.read_only,
            serial: state.serial,
            in_flight: BTreeMap::new(),
            held: VecDeque::new(),
        };
        for request in state.in_flight.iter().chain(&state.held) {
            block.check_request(request)?;
        }
        let mut block = block;
        for request in state.in_flight {
            let id = request.id;
            if block.in_flight.insert(id, request).is_some() {
                return Err(inconsistent("in_flight id", id, "it is used twice"));
            }
        }
        block.held = state.held.into();
        Ok(block)
    }
}

fn inconsistent(field: &str, value: u64, reason: &'static str) -> StateError {
    StateError::Inconsistent {
        device: DEVICE,
        field: field.into(),
        value,
        reason,
    }
}

impl Block {
    fn check_request(&self, request: &BlockRequestState) -> Result<(), StateError> {
        let id = request.id;
        let mut writable_len: u64 = 0;
        for segment in &request.writable {
            if segment.addr.checked_add(segment.len.into()).is_none() {
                return Err(inconsistent("request buffer", segment.addr, "it overflows"));
            }
            writable_len += u64::from(segment.len);
        }
        if writable_len == 0 {
            return Err(inconsistent("request", id, "it has no status byte"));
        }
        if self.read_only && is_write(&request.op) {
            return Err(inconsistent("request", id, "it writes a read-only disk"));
        }
        let bytes = match &request.op {
            BlockOp::Read { len, .. } => {
                if u64::from(*len) + 1 != writable_len {
                    return Err(inconsistent(
                        "request",
                        id,
                        "its buffers differ from its length",
                    ));
                }
                u64::from(*len)
            }
            BlockOp::Write { data, .. } => data.len() as u64,
            BlockOp::Discard { sectors, .. } => sectors.saturating_mul(SECTOR),
            BlockOp::Flush => 0,
        };
        let whole = matches!(request.op, BlockOp::Discard { .. }) || bytes.is_multiple_of(SECTOR);
        let in_range = sectors(&request.op)
            .is_none_or(|(start, end)| end <= self.capacity && start <= end && end != u64::MAX);
        if !whole || !in_range {
            return Err(inconsistent(
                "request",
                id,
                "its sectors are outside the disk",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::mmio::*;
    use crate::virtio::testing::*;
    use crate::virtio::{BackendCompletion, VirtioDevice, VirtioMmio};
    use crate::MmioDevice;

    const CAPACITY: u64 = 64;
    const BUF: u64 = DATA + 0x1000;

    fn disk(read_only: bool) -> (VirtioMmio, TestRam, TestQueue) {
        let mut dev = VirtioMmio::new(VirtioDevice::Block(Block::new(
            CAPACITY,
            read_only,
            "ftvm-disk-0".into(),
        )));
        let ram = TestRam::new();
        let queue = TestQueue::new(0, 16);
        let features = offered(&mut dev);
        activate(&mut dev, features, std::slice::from_ref(&queue));
        (dev, ram, queue)
    }

    fn header(ram: &mut TestRam, at: u64, kind: u32, sector: u64) {
        let mut raw = Vec::new();
        raw.extend_from_slice(&kind.to_le_bytes());
        raw.extend_from_slice(&0u32.to_le_bytes());
        raw.extend_from_slice(&sector.to_le_bytes());
        ram.put(at, &raw);
    }

    /// Makes a write of `data` at `sector` available, its buffers at `slot`.
    fn add_write(ram: &mut TestRam, q: &mut TestQueue, slot: u64, sector: u64, data: &[u8]) -> u16 {
        let base = BUF + slot * 0x2000;
        header(ram, base, VIRTIO_BLK_T_OUT, sector);
        ram.put(base + 0x100, data);
        q.add(
            ram,
            &[
                r(base, 16),
                r(base + 0x100, data.len() as u32),
                w(base + 0x10, 1),
            ],
        )
    }

    /// Makes a read of `len` bytes at `sector` available, its buffers at `slot`.
    fn add_read(ram: &mut TestRam, q: &mut TestQueue, slot: u64, sector: u64, len: u32) -> u16 {
        let base = BUF + slot * 0x2000;
        header(ram, base, VIRTIO_BLK_T_IN, sector);
        q.add(ram, &[r(base, 16), w(base + 0x100, len), w(base + 0x10, 1)])
    }

    fn status_of(ram: &TestRam, slot: u64) -> u8 {
        ram.bytes(BUF + slot * 0x2000 + 0x10, 1)[0]
    }

    fn run(dev: &mut VirtioMmio, ram: &mut TestRam) -> Vec<BackendRequest> {
        notify(dev, 0);
        let mut out = Vec::new();
        dev.process(ram, &mut out);
        out
    }

    /// A backend over a byte vector.
    struct FakeDisk {
        bytes: Vec<u8>,
    }

    impl FakeDisk {
        fn new() -> FakeDisk {
            FakeDisk {
                bytes: vec![0; (CAPACITY * SECTOR) as usize],
            }
        }

        fn serve(&mut self, request: &BackendRequest) -> BackendCompletion {
            let BackendRequest::Block { id, op } = request else {
                panic!("not a block request: {request:?}");
            };
            let mut data = Vec::new();
            match op {
                BlockOp::Read { sector, len } => {
                    let at = (*sector * SECTOR) as usize;
                    data = self.bytes[at..at + *len as usize].to_vec();
                }
                BlockOp::Write {
                    sector,
                    data: bytes,
                } => {
                    let at = (*sector * SECTOR) as usize;
                    self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
                }
                BlockOp::Discard { sector, sectors } => {
                    let at = (*sector * SECTOR) as usize;
                    self.bytes[at..at + (*sectors * SECTOR) as usize].fill(0);
                }
                BlockOp::Flush => {}
            }
            BackendCompletion::Block {
                id: *id,
                status: VIRTIO_BLK_S_OK,
                data,
            }
        }
    }

    #[test]
    fn test_block_write_then_read_round_trips_through_the_backend() {
        let (mut dev, mut ram, mut q) = disk(false);
        let mut backend = FakeDisk::new();
        let payload: Vec<u8> = (0..1024u32).map(|i| i as u8).collect();
        add_write(&mut ram, &mut q, 0, 3, &payload);
        for request in run(&mut dev, &mut ram) {
            let completion = backend.serve(&request);
            dev.complete(&mut ram, completion);
        }

        add_read(&mut ram, &mut q, 1, 3, 1024);
        for request in run(&mut dev, &mut ram) {
            let completion = backend.serve(&request);
            dev.complete(&mut ram, completion);
        }

        assert_eq!(ram.bytes(BUF + 0x2000 + 0x100, 1024), payload);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_OK);
        assert_eq!(status_of(&ram, 1), VIRTIO_BLK_S_OK);
        assert_eq!(q.used(&ram), vec![(0, 1), (3, 1025)]);
        assert!(dev.irq());
    }

    #[test]
    fn test_block_read_data_reaches_ram_only_at_completion() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);

        let out = run(&mut dev, &mut ram);

        assert_eq!(
            out,
            vec![BackendRequest::Block {
                id: 0,
                op: BlockOp::Read {
                    sector: 0,
                    len: 512
                }
            }]
        );
        assert_eq!(q.used(&ram), vec![]);
        assert!(!dev.irq());
    }

    #[test]
    fn test_block_write_data_is_copied_when_taken() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_write(&mut ram, &mut q, 0, 1, &[7; 512]);

        let out = run(&mut dev, &mut ram);
        ram.put(BUF + 0x100, &[9; 512]);

        assert_eq!(
            out,
            vec![BackendRequest::Block {
                id: 0,
                op: BlockOp::Write {
                    sector: 1,
                    data: vec![7; 512]
                }
            }]
        );
    }

    #[test]
    fn test_block_write_to_read_only_disk_fails_without_reaching_backend() {
        let (mut dev, mut ram, mut q) = disk(true);
        add_write(&mut ram, &mut q, 0, 0, &[1; 512]);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
        assert_eq!(q.used(&ram), vec![(0, 1)]);
    }

    #[test]
    fn test_block_read_past_capacity_fails() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, CAPACITY - 1, 1024);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_sector_overflowing_u64_fails() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, u64::MAX, 512);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_read_of_partial_sector_fails() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 100);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_get_id_answers_the_serial_without_the_backend() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_GET_ID, 0);
        q.add(
            &mut ram,
            &[r(BUF, 16), w(BUF + 0x100, 20), w(BUF + 0x10, 1)],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(
            ram.bytes(BUF + 0x100, 20),
            b"ftvm-disk-0\0\0\0\0\0\0\0\0\0".to_vec()
        );
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_OK);
        assert_eq!(q.used(&ram), vec![(0, 21)]);
    }

    #[test]
    fn test_block_unknown_type_is_unsupported() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, 99, 0);
        q.add(&mut ram, &[r(BUF, 16), w(BUF + 0x10, 1)]);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_UNSUPP);
    }

    #[test]
    fn test_block_header_in_writable_descriptor_fails_with_ioerr() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_IN, 0);
        q.add(
            &mut ram,
            &[w(BUF, 16), w(BUF + 0x100, 512), w(BUF + 0x10, 1)],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
        assert_eq!(q.used(&ram), vec![(0, 1)]);
    }

    #[test]
    fn test_block_read_data_in_read_only_descriptor_fails_with_ioerr() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_IN, 0);
        q.add(
            &mut ram,
            &[r(BUF, 16), r(BUF + 0x100, 512), w(BUF + 0x10, 1)],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_write_data_in_writable_descriptor_fails_with_ioerr() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_OUT, 0);
        q.add(
            &mut ram,
            &[r(BUF, 16), w(BUF + 0x100, 512), w(BUF + 0x10, 1)],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_header_shorter_than_16_bytes_fails_with_ioerr() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_FLUSH, 0);
        q.add(&mut ram, &[r(BUF, 8), w(BUF + 0x10, 1)]);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
    }

    #[test]
    fn test_block_request_without_status_byte_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_FLUSH, 0);
        q.add(&mut ram, &[r(BUF, 16)]);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(q.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_block_header_split_across_descriptors_is_accepted() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_IN, 2);
        q.add(
            &mut ram,
            &[
                r(BUF, 4),
                r(BUF + 4, 12),
                w(BUF + 0x100, 512),
                w(BUF + 0x10, 1),
            ],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(
            out,
            vec![BackendRequest::Block {
                id: 0,
                op: BlockOp::Read {
                    sector: 2,
                    len: 512
                }
            }]
        );
    }

    #[test]
    fn test_block_looping_chain_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = disk(false);
        ram.put_desc(q.desc, 0, BUF, 16, 1, 1);
        ram.put_desc(q.desc, 1, BUF + 0x10, 1, 1 | 2, 0);
        q.make_available(&mut ram, 0);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(q.used(&ram), vec![(0, 0)]);
        assert_eq!(
            dev.read(STATUS, 4) & u64::from(STATUS_DEVICE_NEEDS_RESET),
            0
        );
    }

    #[test]
    fn test_block_next_outside_queue_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = disk(false);
        ram.put_desc(q.desc, 0, BUF, 16, 1, 200);
        q.make_available(&mut ram, 0);

        run(&mut dev, &mut ram);

        assert_eq!(q.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_block_indirect_descriptor_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = disk(false);
        ram.put_desc(q.desc, 0, BUF, 32, 4, 0);
        q.make_available(&mut ram, 0);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(q.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_block_buffer_outside_ram_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_IN, 0);
        q.add(
            &mut ram,
            &[
                r(BUF, 16),
                w(RAM_BASE + RAM_SIZE - 256, 512),
                w(BUF + 0x10, 1),
            ],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(q.used(&ram), vec![(0, 0)]);
        assert_eq!(status_of(&ram, 0), 0);
    }

    #[test]
    fn test_block_avail_index_jump_sets_device_needs_reset() {
        let (mut dev, mut ram, mut q) = disk(false);
        q.set_avail_idx(&mut ram, 17);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out, vec![]);
        assert_eq!(
            dev.read(STATUS, 4) & u64::from(STATUS_DEVICE_NEEDS_RESET),
            u64::from(STATUS_DEVICE_NEEDS_RESET)
        );
        assert_eq!(
            dev.read(INTERRUPT_STATUS, 4),
            u64::from(INTERRUPT_CONFIG_CHANGE)
        );
        assert_eq!(q.used(&ram), vec![]);
    }

    #[test]
    fn test_block_head_outside_queue_in_avail_ring_sets_device_needs_reset() {
        let (mut dev, mut ram, mut q) = disk(false);
        q.make_available(&mut ram, 16);

        run(&mut dev, &mut ram);

        assert_eq!(
            dev.read(STATUS, 4) & u64::from(STATUS_DEVICE_NEEDS_RESET),
            u64::from(STATUS_DEVICE_NEEDS_RESET)
        );
        assert!(dev.irq());
    }

    #[test]
    fn test_block_device_needing_reset_ignores_further_notifications() {
        let (mut dev, mut ram, mut q) = disk(false);
        q.set_avail_idx(&mut ram, 100);
        run(&mut dev, &mut ram);

        notify(&mut dev, 0);

        assert!(!dev.notified());
    }

    #[test]
    fn test_block_overlapping_writes_land_in_guest_order_when_backend_completes_in_reverse() {
        let (mut dev, mut ram, mut q) = disk(false);
        let mut backend = FakeDisk::new();
        add_write(&mut ram, &mut q, 0, 4, &[0xaa; 1024]); // sectors 4..6
        add_write(&mut ram, &mut q, 1, 5, &[0xbb; 512]); // sector 5: overlaps the first
        add_write(&mut ram, &mut q, 2, 20, &[0xcc; 512]); // independent

        let first = run(&mut dev, &mut ram);
        // The backend completes what it got in reverse order.
        for request in first.iter().rev() {
            let completion = backend.serve(request);
            dev.complete(&mut ram, completion);
        }
        let notified_after_first = dev.notified();
        let mut second = Vec::new();
        dev.process(&mut ram, &mut second);
        for request in second.iter().rev() {
            let completion = backend.serve(request);
            dev.complete(&mut ram, completion);
        }

        assert_eq!(first.len(), 2);
        assert!(notified_after_first);
        assert_eq!(
            second,
            vec![BackendRequest::Block {
                id: 1,
                op: BlockOp::Write {
                    sector: 5,
                    data: vec![0xbb; 512]
                }
            }]
        );
        assert_eq!(backend.bytes[4 * 512..5 * 512], [0xaa; 512]);
        assert_eq!(backend.bytes[5 * 512..6 * 512], [0xbb; 512]);
        assert_eq!(q.used(&ram), vec![(6, 1), (0, 1), (3, 1)]);
    }

    #[test]
    fn test_block_read_overlapping_a_write_in_flight_waits_for_it() {
        let (mut dev, mut ram, mut q) = disk(false);
        let mut backend = FakeDisk::new();
        add_write(&mut ram, &mut q, 0, 8, &[0x5a; 512]);
        add_read(&mut ram, &mut q, 1, 8, 512);

        let first = run(&mut dev, &mut ram);
        for request in &first {
            let completion = backend.serve(request);
            dev.complete(&mut ram, completion);
        }
        let mut second = Vec::new();
        dev.process(&mut ram, &mut second);
        for request in &second {
            let completion = backend.serve(request);
            dev.complete(&mut ram, completion);
        }

        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_eq!(ram.bytes(BUF + 0x2000 + 0x100, 512), vec![0x5a; 512]);
    }

    #[test]
    fn test_block_reads_of_the_same_sectors_go_together() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 8, 512);
        add_read(&mut ram, &mut q, 1, 8, 512);

        let out = run(&mut dev, &mut ram);

        assert_eq!(out.len(), 2);
    }

    #[test]
    fn test_block_flush_waits_for_earlier_writes() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_write(&mut ram, &mut q, 0, 1, &[1; 512]);
        header(&mut ram, BUF + 0x2000, VIRTIO_BLK_T_FLUSH, 0);
        q.add(&mut ram, &[r(BUF + 0x2000, 16), w(BUF + 0x2010, 1)]);

        let first = run(&mut dev, &mut ram);
        let held = dev.notified();
        dev.complete(
            &mut ram,
            BackendCompletion::Block {
                id: 0,
                status: VIRTIO_BLK_S_OK,
                data: vec![],
            },
        );
        let mut second = Vec::new();
        dev.process(&mut ram, &mut second);

        assert_eq!(first.len(), 1);
        assert!(!held);
        assert_eq!(
            second,
            vec![BackendRequest::Block {
                id: 1,
                op: BlockOp::Flush
            }]
        );
    }

    #[test]
    fn test_block_requests_in_flight_get_unique_ids() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        add_read(&mut ram, &mut q, 1, 1, 512);
        add_write(&mut ram, &mut q, 2, 2, &[0; 512]);

        let out = run(&mut dev, &mut ram);

        let ids: Vec<u64> = out
            .iter()
            .map(|r| match r {
                BackendRequest::Block { id, .. } => *id,
                _ => u64::MAX,
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2]);
    }

    #[test]
    fn test_block_completion_after_reset_is_ignored() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        run(&mut dev, &mut ram);
        dev.write(STATUS, 4, 0);
        ram.put(BUF + 0x100, &[0xee; 512]);

        dev.complete(
            &mut ram,
            BackendCompletion::Block {
                id: 0,
                status: VIRTIO_BLK_S_OK,
                data: vec![0x11; 512],
            },
        );

        assert_eq!(ram.bytes(BUF + 0x100, 512), vec![0xee; 512]);
        assert_eq!(q.used(&ram), vec![]);
        assert!(!dev.irq());
    }

    #[test]
    fn test_block_completion_while_device_needs_reset_leaves_buffers_alone() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        run(&mut dev, &mut ram);
        q.set_avail_idx(&mut ram, 40);
        run(&mut dev, &mut ram);

        dev.complete(
            &mut ram,
            BackendCompletion::Block {
                id: 0,
                status: VIRTIO_BLK_S_OK,
                data: vec![0x11; 512],
            },
        );

        assert_eq!(ram.bytes(BUF + 0x100, 512), vec![0; 512]);
        assert_eq!(q.used(&ram), vec![]);
        assert_eq!(
            dev.read(INTERRUPT_STATUS, 4),
            u64::from(INTERRUPT_CONFIG_CHANGE)
        );
    }

    #[test]
    fn test_block_random_rings_never_panic_and_leave_a_restorable_state() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut restorable = 0;

        for _ in 0..100 {
            let (mut dev, mut ram, q) = disk(false);
            for i in 0..16u16 {
                let addr = BUF + next() % 0x3000;
                let len = [0, 1, 8, 16, 512, 1024, 0x2000][(next() % 7) as usize];
                ram.put_desc(q.desc, i, addr, len, next() as u16 & 7, next() as u16 % 18);
                ram.put(
                    q.avail + 4 + 2 * u64::from(i),
                    &(next() as u16 % 17).to_le_bytes(),
                );
            }
            for at in (BUF..BUF + 0x3000).step_by(16) {
                let kind = [0u32, 1, 4, 8, 11, 99][(next() % 6) as usize];
                header(&mut ram, at, kind, next() % 80);
            }
            ram.put(q.avail + 2, &(next() as u16 % 20).to_le_bytes());
            let out = run(&mut dev, &mut ram);
            for request in out.iter().rev() {
                if let BackendRequest::Block { id, op } = request {
                    let data = match op {
                        BlockOp::Read { len, .. } => vec![0x3c; *len as usize],
                        _ => Vec::new(),
                    };
                    dev.complete(
                        &mut ram,
                        BackendCompletion::Block {
                            id: *id,
                            status: 0,
                            data,
                        },
                    );
                }
            }
            run(&mut dev, &mut ram);
            if VirtioMmio::try_from(dev.state()).is_ok() {
                restorable += 1;
            }
        }

        assert_eq!(restorable, 100);
    }

    #[test]
    fn test_block_short_read_from_backend_is_an_io_error() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 1024);
        run(&mut dev, &mut ram);

        dev.complete(
            &mut ram,
            BackendCompletion::Block {
                id: 0,
                status: VIRTIO_BLK_S_OK,
                data: vec![1; 512],
            },
        );

        assert_eq!(status_of(&ram, 0), VIRTIO_BLK_S_IOERR);
        assert_eq!(q.used(&ram), vec![(0, 1)]);
    }

    #[test]
    fn test_block_discard_goes_to_backend() {
        let (mut dev, mut ram, mut q) = disk(false);
        header(&mut ram, BUF, VIRTIO_BLK_T_DISCARD, 0);
        let mut segment = Vec::new();
        segment.extend_from_slice(&8u64.to_le_bytes());
        segment.extend_from_slice(&4u32.to_le_bytes());
        segment.extend_from_slice(&0u32.to_le_bytes());
        ram.put(BUF + 0x100, &segment);
        q.add(
            &mut ram,
            &[r(BUF, 16), r(BUF + 0x100, 16), w(BUF + 0x10, 1)],
        );

        let out = run(&mut dev, &mut ram);

        assert_eq!(
            out,
            vec![BackendRequest::Block {
                id: 0,
                op: BlockOp::Discard {
                    sector: 8,
                    sectors: 4
                }
            }]
        );
    }

    #[test]
    fn test_block_config_space_holds_capacity_and_seg_max() {
        let (mut dev, _, _) = disk(false);

        let capacity = dev.read(CONFIG, 8);
        let seg_max = dev.read(CONFIG + 0xc, 4);

        assert_eq!(capacity, CAPACITY);
        assert_eq!(seg_max, 510);
    }

    #[test]
    fn test_block_read_only_disk_offers_ro_and_not_discard() {
        let mut dev = VirtioMmio::new(VirtioDevice::Block(Block::new(8, true, String::new())));

        let features = offered(&mut dev);

        assert_eq!(features & VIRTIO_BLK_F_RO, VIRTIO_BLK_F_RO);
        assert_eq!(features & VIRTIO_BLK_F_DISCARD, 0);
    }

    #[test]
    fn test_block_serial_is_cut_to_20_bytes() {
        let block = Block::new(8, false, "0123456789abcdefghijKLMN".into());

        assert_eq!(block.state().serial, "0123456789abcdefghij");
    }

    #[test]
    fn test_block_in_flight_requests_lists_requests_to_reissue() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_write(&mut ram, &mut q, 0, 1, &[3; 512]);
        let out = run(&mut dev, &mut ram);

        let pending = dev.in_flight_requests();

        assert_eq!(pending, out);
    }

    #[test]
    fn test_block_restore_rejects_request_past_capacity() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        run(&mut dev, &mut ram);
        let mut state = dev.state();
        let VirtioDeviceState::Block(block) = &mut state.device else {
            panic!("a block device");
        };
        block.capacity = 0;

        let error = VirtioMmio::try_from(state).expect_err("past capacity");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-blk",
                field: "request".into(),
                value: 0,
                reason: "its sectors are outside the disk"
            }
        );
    }

    #[test]
    fn test_block_restore_rejects_ring_positions_not_matching_requests() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        run(&mut dev, &mut ram);
        let mut state = dev.state();
        state.queues[0].next_used = 1;

        let error = VirtioMmio::try_from(state).expect_err("mismatch");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-mmio",
                field: "queues[0].next_avail".into(),
                value: 1,
                reason: "the chains taken and not returned differ from the requests held"
            }
        );
    }

    #[test]
    fn test_block_restore_rejects_request_id_not_below_next_id() {
        let (mut dev, mut ram, mut q) = disk(false);
        add_read(&mut ram, &mut q, 0, 0, 512);
        run(&mut dev, &mut ram);
        let mut state = dev.state();
        state.next_id = 0;

        let error = VirtioMmio::try_from(state).expect_err("id too large");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-mmio",
                field: "request id".into(),
                value: 0,
                reason: "it is used twice or not below next_id"
            }
        );
    }

    fn driven_ram() -> (TestRam, TestQueue) {
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 16);
        add_write(&mut ram, &mut q, 0, 4, &[0xaa; 1024]);
        add_write(&mut ram, &mut q, 1, 5, &[0xbb; 512]);
        add_read(&mut ram, &mut q, 2, 30, 512);
        (ram, q)
    }

    persist_conformance_tests! {
        device: VirtioMmio,
        new: VirtioMmio::new(VirtioDevice::Block(Block::new(CAPACITY, false, "disk".into()))),
        drive: |dev: &mut VirtioMmio| {
            let (mut ram, q) = driven_ram();
            let features = offered(dev);
            activate(dev, features, std::slice::from_ref(&q));
            let mut out = Vec::new();
            notify(dev, 0);
            dev.process(&mut ram, &mut out);
        },
        probe: |dev: &mut VirtioMmio| {
            let (mut ram, q) = driven_ram();
            let mut observed = vec![u64::from(dev.notified())];
            for id in [2, 0] {
                dev.complete(&mut ram, BackendCompletion::Block {
                    id,
                    status: VIRTIO_BLK_S_OK,
                    data: if id == 2 { vec![0x42; 512] } else { vec![] },
                });
            }
            let mut out = Vec::new();
            dev.process(&mut ram, &mut out);
            observed.push(out.len() as u64);
            observed.push(u64::from(dev.irq()));
            observed.extend(q.used(&ram).iter().map(|&(id, len)| (u64::from(id) << 32) | u64::from(len)));
            observed.extend(ram.bytes(BUF + 0x4100, 512).iter().map(|&b| u64::from(b)));
            observed
        },
    }
}
