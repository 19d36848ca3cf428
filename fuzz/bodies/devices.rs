//! Fuzz target bodies for the virtio device models (`ftvm-devices`), shared by the
//! cargo-fuzz targets (`fuzz/fuzz_targets/virtio_*.rs`) and the deterministic corpus test
//! `crates/devices/tests/fuzz_corpus.rs`, which both include this file with
//! `#[path = ...] mod devices;`. Plain functions of `&[u8]`: no fuzzer API in here.
//!
//! - [`chain_walker`]: `walk_chain` over a fake guest RAM the input builds, checked
//!   against an independent reference walker written from the documented rules.
//! - [`mmio_transport`]: a whole `VirtioMmio` (block, net or rng) driven by a sequence of
//!   register accesses, RAM pokes, `process()` and `complete()` calls, checking after
//!   every step the invariants the models document.

#![allow(dead_code)]

use std::cell::Cell;
use std::collections::BTreeSet;

use ftvm_devices::virtio::{walk_chain, Chain, ChainError, Segment};
use ftvm_devices::{
    BackendCompletion, BackendRequest, Block, BlockOp, GuestMemory, GuestMemoryError, MmioDevice,
    Net, Rng, VirtioDevice, VirtioMmio,
};

// --- Input ---------------------------------------------------------------------------

/// Reads numbers off the fuzz input; past its end every read gives 0.
pub struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, at: 0 }
    }

    /// Whether every byte was read.
    pub fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at = self.at.saturating_add(1);
        b
    }

    /// The next little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// The next little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// The next little-endian u64.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// Up to `n` next bytes (fewer at the end of the input).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.at = self.at.saturating_add(n);
        &self.data[start..end]
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.at.min(self.data.len());
        self.at = self.data.len();
        &self.data[start..]
    }
}

// --- Fake guest RAM ------------------------------------------------------------------

/// Guest RAM: a `Vec<u8>` at `base`. Accesses not entirely inside fail and change
/// nothing; every access is counted, those outside separately.
pub struct FuzzRam {
    base: u64,
    bytes: Vec<u8>,
    reads: Cell<u64>,
    writes: Cell<u64>,
    reads_outside: Cell<u64>,
    writes_outside: Cell<u64>,
}

impl FuzzRam {
    /// `len` zero bytes at `base`; `base + len` must not pass 2^64.
    pub fn new(base: u64, len: usize) -> FuzzRam {
        assert!(
            base.checked_add(len as u64 - u64::from(len > 0)).is_some(),
            "RAM past the address space"
        );
        FuzzRam {
            base,
            bytes: vec![0; len],
            reads: Cell::new(0),
            writes: Cell::new(0),
            reads_outside: Cell::new(0),
            writes_outside: Cell::new(0),
        }
    }

    /// First address.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether `addr..addr+len` lies inside RAM (a zero-length range: `addr` in RAM or at
    /// its end).
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        self.range(addr, len).is_some()
    }

    fn range(&self, addr: u64, len: u64) -> Option<std::ops::Range<usize>> {
        let start = addr.checked_sub(self.base)?;
        let end = start.checked_add(len)?;
        if end > self.len() {
            return None;
        }
        Some(start as usize..end as usize)
    }

    /// Writes `data` at offset `at` from the base, clipped to RAM (the harness's own
    /// writes: not counted).
    pub fn poke(&mut self, at: usize, data: &[u8]) {
        let len = self.bytes.len();
        let start = at.min(len);
        let end = start.saturating_add(data.len()).min(len);
        self.bytes[start..end].copy_from_slice(&data[..end - start]);
    }

    /// The RAM's bytes.
    pub fn contents(&self) -> &[u8] {
        &self.bytes
    }

    /// (reads, writes, reads outside RAM, writes outside RAM) so far.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.reads.get(),
            self.writes.get(),
            self.reads_outside.get(),
            self.writes_outside.get(),
        )
    }
}

impl GuestMemory for FuzzRam {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        self.reads.set(self.reads.get() + 1);
        match self.range(addr, buf.len() as u64) {
            Some(range) => {
                buf.copy_from_slice(&self.bytes[range]);
                Ok(())
            }
            None => {
                self.reads_outside.set(self.reads_outside.get() + 1);
                Err(GuestMemoryError {
                    addr,
                    len: buf.len() as u64,
                })
            }
        }
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        self.writes.set(self.writes.get() + 1);
        match self.range(addr, data.len() as u64) {
            Some(range) => {
                self.bytes[range].copy_from_slice(data);
                Ok(())
            }
            None => {
                self.writes_outside.set(self.writes_outside.get() + 1);
                Err(GuestMemoryError {
                    addr,
                    len: data.len() as u64,
                })
            }
        }
    }
}

// --- Target (a): the descriptor chain walker ----------------------------------------

/// Largest fake RAM of the chain walker target.
const CHAIN_RAM_MAX: usize = 0x4000;

/// The error kinds of the reference walker, one per `ChainError` variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    HeadOutOfRange,
    NextOutOfRange,
    TooLong,
    DescriptorOutsideRam,
    AddressOverflow,
    BufferOutsideRam,
    ReadableAfterWritable,
    Indirect,
}

fn kind(error: &ChainError) -> Kind {
    match error {
        ChainError::HeadOutOfRange { .. } => Kind::HeadOutOfRange,
        ChainError::NextOutOfRange { .. } => Kind::NextOutOfRange,
        ChainError::TooLong { .. } => Kind::TooLong,
        ChainError::DescriptorOutsideRam { .. } => Kind::DescriptorOutsideRam,
        ChainError::AddressOverflow { .. } => Kind::AddressOverflow,
        ChainError::BufferOutsideRam { .. } => Kind::BufferOutsideRam,
        ChainError::ReadableAfterWritable { .. } => Kind::ReadableAfterWritable,
        ChainError::Indirect { .. } => Kind::Indirect,
    }
}

/// The documented rules (virtio 1.2 §2.7.5, §2.7.4.2 and `walk_chain`'s doc), checked
/// per descriptor in this order: at most `size` descriptors, the descriptor in RAM, not
/// indirect, the buffer's end inside the address space, a non-empty buffer inside RAM,
/// readable before writable, then the link in range. Reads the RAM's bytes directly.
fn reference_walk(ram: &FuzzRam, table: u64, size: u16, head: u16) -> Result<Chain, Kind> {
    if head >= size {
        return Err(Kind::HeadOutOfRange);
    }
    let mut readable = Vec::new();
    let mut writable: Vec<Segment> = Vec::new();
    let mut index = head;
    for _ in 0..size {
        let at = table
            .checked_add(16 * u64::from(index))
            .filter(|&at| ram.contains(at, 16))
            .ok_or(Kind::DescriptorOutsideRam)?;
        let off = (at - ram.base()) as usize;
        let d = &ram.contents()[off..off + 16];
        let addr = u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        let len = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
        let flags = u16::from_le_bytes([d[12], d[13]]);
        let next = u16::from_le_bytes([d[14], d[15]]);
        if flags & 4 != 0 {
            return Err(Kind::Indirect);
        }
        if addr.checked_add(u64::from(len)).is_none() {
            return Err(Kind::AddressOverflow);
        }
        if len > 0 && !ram.contains(addr, u64::from(len)) {
            return Err(Kind::BufferOutsideRam);
        }
        let segment = Segment { addr, len };
        if flags & 2 != 0 {
            writable.push(segment);
        } else if writable.is_empty() {
            readable.push(segment);
        } else {
            return Err(Kind::ReadableAfterWritable);
        }
        if flags & 1 == 0 {
            return Ok(Chain {
                head,
                readable,
                writable,
            });
        }
        if next >= size {
            return Err(Kind::NextOutOfRange);
        }
        index = next;
    }
    Err(Kind::TooLong)
}

/// Builds a fake guest RAM and a descriptor table from `data` and walks one chain.
///
/// Input: `[ram_mode, table_mode, desc_mode, size:2, head:2, table_off:4, ram_len:2]`,
/// then the RAM's bytes. `ram_mode` places RAM at 0, at 0x8000_0000, flush against the
/// top of the address space or at an input-chosen address; `table_mode` puts the table
/// inside RAM, near it (possibly straddling its ends) or anywhere; `desc_mode` 1 rewrites
/// each descriptor slot so that addresses mostly fall in or next to RAM and links stay in
/// range (as a driver would), 0 leaves the raw bytes.
pub fn chain_walker(data: &[u8]) {
    let mut input = Input::new(data);
    let ram_mode = input.u8();
    let table_mode = input.u8();
    let desc_mode = input.u8();
    let size = input.u16();
    let head = input.u16();
    let table_off = input.u32();
    let ram_len = usize::from(input.u16()) % (CHAIN_RAM_MAX + 1);
    let extra = input.u64();
    let base = match ram_mode % 4 {
        0 => 0,
        1 => 0x8000_0000,
        // The last byte of RAM is the last byte of the address space.
        2 => 0u64.wrapping_sub(ram_len as u64),
        _ => extra.min(u64::MAX - ram_len as u64),
    };
    let mut ram = FuzzRam::new(base, ram_len);
    ram.poke(0, input.rest());
    let len = ram.len().max(1);
    let table = match table_mode % 4 {
        0 => base.wrapping_add(u64::from(table_off) % len),
        1 => base.wrapping_add(u64::from(table_off)),
        2 => base.wrapping_sub(u64::from(table_off % 64)),
        _ => extra ^ u64::from(table_off),
    };
    if desc_mode % 2 == 1 && size > 0 {
        // Rewrite the slots the table has inside RAM into plausible descriptors.
        for index in 0..size {
            let Some(at) = table.checked_add(16 * u64::from(index)) else {
                break;
            };
            if !ram.contains(at, 16) {
                continue;
            }
            let off = (at - base) as usize;
            let raw = &ram.contents()[off..off + 16];
            let seed = u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]);
            let addr = base.wrapping_add(seed % (len + 32)).wrapping_sub(16);
            let buf_len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) % 600;
            let flags = u16::from_le_bytes([raw[12], raw[13]]) & 0x7;
            // Mostly no indirect flag.
            let flags = if flags & 4 != 0 && raw[12] & 0x80 == 0 {
                flags & 3
            } else {
                flags
            };
            let next = u16::from_le_bytes([raw[14], raw[15]]) % size.saturating_add(1);
            let mut slot = [0u8; 16];
            slot[0..8].copy_from_slice(&addr.to_le_bytes());
            slot[8..12].copy_from_slice(&buf_len.to_le_bytes());
            slot[12..14].copy_from_slice(&flags.to_le_bytes());
            slot[14..16].copy_from_slice(&next.to_le_bytes());
            ram.poke(off, &slot);
        }
    }
    let head = if desc_mode & 2 != 0 && size > 0 {
        head % size
    } else {
        head
    };

    let result = walk_chain(&ram, table, size, head);
    let (reads, writes, _, _) = ram.counts();

    // A pure function of memory: it writes nothing, reads each descriptor once and
    // probes at most two bytes of its buffer.
    assert_eq!(writes, 0, "walk_chain wrote guest memory");
    assert!(
        reads <= 3 * u64::from(size),
        "walk_chain made {reads} reads for a queue of {size}"
    );
    assert_eq!(
        walk_chain(&ram, table, size, head),
        result,
        "walk_chain is not deterministic"
    );

    let expected = reference_walk(&ram, table, size, head);
    match (&result, &expected) {
        (Ok(chain), Ok(model)) => assert_eq!(chain, model, "chain differs from the model"),
        (Err(error), Err(model)) => assert_eq!(kind(error), *model, "error {error:?}"),
        _ => panic!("walk_chain gave {result:?}, the model {expected:?}"),
    }
    if let Ok(chain) = &result {
        assert_eq!(chain.head, head);
        assert!(chain.readable.len() + chain.writable.len() <= usize::from(size));
        for segment in chain.readable.iter().chain(&chain.writable) {
            assert!(
                segment.len == 0 || ram.contains(segment.addr, u64::from(segment.len)),
                "segment {segment:?} outside RAM {base:#x}+{ram_len:#x}"
            );
        }
    }
}

// --- Target (b): the virtio-mmio transport ------------------------------------------

/// Fake RAM of the transport target: 32 KiB at the `virt` board's RAM base.
pub const MMIO_RAM_BASE: u64 = 0x8000_0000;
/// Size of that RAM: room for a queue of 256 (4 KiB of descriptors, rings) and data.
pub const MMIO_RAM_LEN: usize = 0x8000;
/// Operations per input at most (bounds the run time of one input).
const MAX_OPS: usize = 512;

/// The registers a driver touches, so that random offsets mostly hit one.
const REGISTERS: [u64; 27] = [
    0x000, 0x004, 0x008, 0x00c, 0x010, 0x014, 0x020, 0x024, 0x030, 0x034, 0x038, 0x044, 0x050,
    0x060, 0x064, 0x070, 0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4, 0x0b0, 0x0b4, 0x0fc, 0x100,
    0x108,
];
const STATUS: u64 = 0x070;
const INTERRUPT_STATUS: u64 = 0x060;
const STATUS_DEVICE_NEEDS_RESET: u64 = 0x40;
const STATUS_DRIVER_OK: u64 = 0x04;

/// A request the harness owes an answer for.
#[derive(Debug, Clone)]
struct Pending {
    id: u64,
    read_len: Option<u32>,
    entropy_len: Option<u32>,
}

/// The device under test, from the input's first byte.
fn device(selector: u8, extra: u8) -> VirtioDevice {
    match selector % 4 {
        0 | 1 => VirtioDevice::Block(Block::new(
            u64::from(extra) * 8 + u64::from(selector >> 4),
            selector & 0x08 != 0,
            "fuzz-disk".to_string(),
        )),
        2 => VirtioDevice::Net(Net::new([0x52, 0x54, 0, 0x12, 0x34, extra & 0xfe])),
        _ => VirtioDevice::Rng(Rng::new()),
    }
}

/// A 32-bit register value: raw, or an address in or near the fake RAM.
fn value(input: &mut Input) -> u32 {
    match input.u8() % 4 {
        0 => input.u32(),
        1 | 2 => (MMIO_RAM_BASE + u64::from(input.u16()) % (MMIO_RAM_LEN as u64 + 64)) as u32,
        _ => u32::from(input.u8()),
    }
}

/// Checks what holds after every step.
fn check(dev: &VirtioMmio, issued: &BTreeSet<u64>, completed: &BTreeSet<u64>) {
    let state = dev.state();
    // The state is a complete, valid description: it restores to the same device.
    match VirtioMmio::try_from(state.clone()) {
        Ok(restored) => {
            assert_eq!(&restored, dev, "state() does not restore the same device");
            assert_eq!(restored.state(), state);
        }
        Err(error) => panic!("state() of a live device is refused: {error}\n{state:?}"),
    }
    assert_eq!(dev.irq(), state.interrupt_status != 0);
    for request in dev.in_flight_requests() {
        let id = match request {
            BackendRequest::Block { id, .. } | BackendRequest::Entropy { id, .. } => id,
            BackendRequest::NetTx { .. } => panic!("a transmitted frame is in flight"),
        };
        assert!(
            issued.contains(&id) && !completed.contains(&id),
            "request {id} in flight was never issued, or completed"
        );
    }
}

/// Drives a `VirtioMmio` from `data`: `[device, extra]` then operations until the input
/// ends: register writes and reads, RAM pokes (to build descriptors and rings), a whole
/// driver initialization, `process()`, completions of the requests the device issued
/// (right, short or long data; any status) and stray completions, snapshot round trips.
pub fn mmio_transport(data: &[u8]) {
    let mut input = Input::new(data);
    let selector = input.u8();
    let extra = input.u8();
    let mut dev = VirtioMmio::new(device(selector, extra));
    let (capacity, read_only) = match dev.device() {
        VirtioDevice::Block(block) => (block.capacity(), selector & 0x08 != 0),
        _ => (0, false),
    };
    let num_queues = dev.device().num_queues() as u32;
    let mut ram = FuzzRam::new(MMIO_RAM_BASE, MMIO_RAM_LEN);
    let mut pending: Vec<Pending> = Vec::new();
    let mut issued = BTreeSet::new();
    let mut completed = BTreeSet::new();
    let mut out = Vec::new();

    for _ in 0..MAX_OPS {
        if input.done() {
            break;
        }
        let op = input.u8();
        let before = ram.counts();
        let status = dev.read(STATUS, 4);
        let live = status & STATUS_DRIVER_OK != 0 && status & STATUS_DEVICE_NEEDS_RESET == 0;
        let broken = status & STATUS_DEVICE_NEEDS_RESET != 0;
        let mut touched_memory = false;
        match op % 12 {
            0 | 1 => {
                let offset = match input.u8() {
                    b @ 0..=239 => REGISTERS[usize::from(b) % REGISTERS.len()],
                    _ => u64::from(input.u16()) & 0xfff,
                };
                let size = if input.u8() < 240 {
                    4
                } else {
                    1 << (input.u8() % 4)
                };
                let v = value(&mut input);
                dev.write(offset, size, u64::from(v));
            }
            2 => {
                let offset = u64::from(input.u16()) % 0x1000;
                let size = 1 << (input.u8() % 4);
                let v = dev.read(offset, size);
                assert!(
                    size == 8 || v >> (8 * size) == 0,
                    "read wider than its size"
                );
                if offset == INTERRUPT_STATUS && size == 4 {
                    assert_eq!(v != 0, dev.irq());
                }
            }
            3 => {
                // Poke guest RAM: the driver building descriptors and rings.
                let at = usize::from(input.u16()) % MMIO_RAM_LEN;
                let len = usize::from(input.u8() % 64);
                let bytes = input.bytes(len);
                ram.poke(at, bytes);
            }
            4 => {
                // A descriptor: index, address (in or near RAM), length, flags, next.
                let table = u64::from(input.u16() % 0x1000) & !0xf;
                let index = u64::from(input.u8());
                let addr = MMIO_RAM_BASE + u64::from(input.u16()) % (MMIO_RAM_LEN as u64 + 32);
                let len = match input.u8() % 4 {
                    0 => 16,
                    1 => 1,
                    2 => 512 * u32::from(input.u8() % 9),
                    _ => u32::from(input.u16()),
                };
                let flags = u16::from(input.u8() % 8);
                let next = u16::from(input.u8());
                let mut slot = [0u8; 16];
                slot[0..8].copy_from_slice(&addr.to_le_bytes());
                slot[8..12].copy_from_slice(&len.to_le_bytes());
                slot[12..14].copy_from_slice(&flags.to_le_bytes());
                slot[14..16].copy_from_slice(&next.to_le_bytes());
                ram.poke((table + 16 * index) as usize, &slot);
            }
            5 => {
                // Publish: avail ring at `ring`, slot `idx - 1` = head, then idx.
                let ring = usize::from(input.u16() % 0x2000) & !1;
                let idx = input.u16();
                let head = input.u16();
                let qsize = 1usize << (input.u8() % 9);
                let slot = usize::from(idx.wrapping_sub(1)) % qsize;
                ram.poke(ring + 4 + 2 * slot, &head.to_le_bytes());
                ram.poke(ring + 2, &idx.to_le_bytes());
                let q = u32::from(input.u8()) % (num_queues + 1);
                dev.write(0x050, 4, u64::from(q));
            }
            6 => {
                // A whole driver initialization, queues at input-chosen places.
                let features = if input.u8() < 200 {
                    let mut offered = 0;
                    for sel in 0..2u32 {
                        dev.write(0x014, 4, u64::from(sel));
                        offered |= dev.read(0x010, 4) << (32 * sel);
                    }
                    offered
                } else {
                    input.u64()
                };
                dev.write(STATUS, 4, 0);
                dev.write(STATUS, 4, 1);
                dev.write(STATUS, 4, 3);
                for sel in 0..2u32 {
                    dev.write(0x024, 4, u64::from(sel));
                    dev.write(0x020, 4, (features >> (32 * sel)) & 0xffff_ffff);
                }
                dev.write(STATUS, 4, 0xb);
                for q in 0..num_queues {
                    let size = 1u64 << (input.u8() % 9);
                    let region = MMIO_RAM_BASE + 0x2000 * u64::from(q);
                    dev.write(0x030, 4, u64::from(q));
                    dev.write(0x038, 4, size);
                    dev.write(0x080, 4, region & 0xffff_ffff);
                    dev.write(0x084, 4, 0);
                    dev.write(0x090, 4, (region + 0x1000) & 0xffff_ffff);
                    dev.write(0x094, 4, 0);
                    dev.write(0x0a0, 4, (region + 0x1400) & 0xffff_ffff);
                    dev.write(0x0a4, 4, 0);
                    dev.write(0x044, 4, 1);
                }
                dev.write(STATUS, 4, 0xf);
            }
            7 => {
                out.clear();
                dev.process(&mut ram, &mut out);
                touched_memory = true;
                if !live {
                    assert_eq!(
                        ram.counts(),
                        before,
                        "process() touched RAM of a dead device"
                    );
                    assert!(out.is_empty(), "process() of a dead device issued requests");
                }
                for request in out.drain(..) {
                    match request {
                        BackendRequest::Block { id, op } => {
                            assert!(issued.insert(id), "request id {id} issued twice");
                            let read_len = match op {
                                BlockOp::Read { sector, len } => {
                                    assert!(len % 512 == 0, "read of {len} bytes");
                                    assert!(sector + u64::from(len / 512) <= capacity);
                                    Some(len)
                                }
                                BlockOp::Write { sector, data } => {
                                    assert!(!read_only, "write to a read-only disk");
                                    assert!(data.len() % 512 == 0, "write of {}", data.len());
                                    assert!(sector + (data.len() / 512) as u64 <= capacity);
                                    None
                                }
                                BlockOp::Discard { sector, sectors } => {
                                    assert!(!read_only, "discard on a read-only disk");
                                    assert!(sector + sectors <= capacity);
                                    None
                                }
                                BlockOp::Flush => None,
                            };
                            pending.push(Pending {
                                id,
                                read_len,
                                entropy_len: None,
                            });
                        }
                        BackendRequest::Entropy { id, len } => {
                            assert!(issued.insert(id), "request id {id} issued twice");
                            assert!(len > 0 && len <= ftvm_devices::virtio::RNG_MAX_REQUEST);
                            pending.push(Pending {
                                id,
                                read_len: None,
                                entropy_len: Some(len),
                            });
                        }
                        BackendRequest::NetTx { frame } => {
                            assert!(frame.len() <= ftvm_devices::virtio::NET_MAX_FRAME);
                        }
                    }
                }
            }
            8 | 9 => {
                // Complete one of the requests issued (or a made-up one).
                let pick = usize::from(input.u8());
                let how = input.u8();
                let target = if pending.is_empty() {
                    None
                } else {
                    Some(pending.remove(pick % pending.len()))
                };
                let id = target.as_ref().map_or_else(|| u64::from(how), |p| p.id);
                let fill = input.u8();
                let completion = match (dev.device(), &target) {
                    (VirtioDevice::Block(_), _) => {
                        let want = target.as_ref().and_then(|p| p.read_len).unwrap_or(0);
                        let len = match how % 4 {
                            0 | 1 => want as usize,
                            2 => (want as usize).saturating_sub(1),
                            _ => want as usize + 1,
                        };
                        BackendCompletion::Block {
                            id,
                            status: if how & 0x30 == 0x30 { how >> 6 } else { 0 },
                            data: vec![fill; len],
                        }
                    }
                    (VirtioDevice::Rng(_), _) => {
                        let want = target.as_ref().and_then(|p| p.entropy_len).unwrap_or(0);
                        let len = (want as usize).min(usize::from(input.u16()) + 1);
                        BackendCompletion::Entropy {
                            id,
                            data: vec![fill; len],
                        }
                    }
                    (VirtioDevice::Net(_), _) => {
                        let len = match how % 4 {
                            0 => ftvm_devices::virtio::NET_MAX_FRAME + 1,
                            _ => usize::from(input.u16() % 2048),
                        };
                        BackendCompletion::NetRx {
                            frame: vec![fill; len],
                        }
                    }
                };
                if target.is_some() && !matches!(completion, BackendCompletion::NetRx { .. }) {
                    completed.insert(id);
                }
                dev.complete(&mut ram, completion);
                touched_memory = true;
                if broken {
                    let now = ram.counts();
                    assert_eq!(
                        now.1, before.1,
                        "complete() wrote RAM of a device needing reset"
                    );
                }
            }
            10 => {
                // A completion of the wrong kind or for an id never issued: ignored
                // unless it is a frame for a network card.
                let completion = match input.u8() % 3 {
                    0 => BackendCompletion::Block {
                        id: u64::MAX - u64::from(input.u8()),
                        status: input.u8(),
                        data: vec![0; usize::from(input.u8())],
                    },
                    1 => BackendCompletion::Entropy {
                        id: u64::MAX - u64::from(input.u8()),
                        data: vec![0; usize::from(input.u8())],
                    },
                    _ => BackendCompletion::NetRx {
                        frame: vec![0; usize::from(input.u8())],
                    },
                };
                let is_frame = matches!(completion, BackendCompletion::NetRx { .. });
                let state = dev.state();
                dev.complete(&mut ram, completion);
                touched_memory = true;
                if !(is_frame && matches!(dev.device(), VirtioDevice::Net(_))) {
                    assert_eq!(dev.state(), state, "a stray completion changed the device");
                    assert_eq!(ram.counts().1, before.1, "a stray completion wrote RAM");
                }
            }
            _ => {
                // Save and restore, then go on with the restored copy.
                let state = dev.state();
                match VirtioMmio::try_from(state) {
                    Ok(restored) => dev = restored,
                    Err(error) => panic!("state() refused on restore: {error}"),
                }
            }
        }
        let after = ram.counts();
        if !touched_memory {
            assert_eq!(after.0, before.0, "a register access read guest RAM");
            assert_eq!(after.1, before.1, "a register access wrote guest RAM");
        }
        // The device validates every buffer before using it, so the only writes it may
        // try outside RAM are to a misplaced used ring, which fails the device.
        if after.3 > before.3 {
            assert!(
                dev.read(STATUS, 4) & STATUS_DEVICE_NEEDS_RESET != 0,
                "a write outside RAM left the device running"
            );
        }
        check(&dev, &issued, &completed);
    }
}
