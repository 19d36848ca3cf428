//! Test helpers: a fake guest RAM and a hand-written driver that builds rings in it.

use super::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::{GuestMemory, GuestMemoryError, VirtioMmio, VIRTIO_F_VERSION_1};
use crate::virtio::mmio::*;
use crate::MmioDevice;

/// Where the fake RAM starts, as on the `virt` board.
pub(crate) const RAM_BASE: u64 = 0x8000_0000;
/// Size of the fake RAM.
pub(crate) const RAM_SIZE: u64 = 0x10_0000;
/// Where tests put data buffers (above the rings).
pub(crate) const DATA: u64 = RAM_BASE + 0x8_0000;

/// Guest RAM: `RAM_SIZE` bytes at `RAM_BASE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestRam {
    bytes: Vec<u8>,
}

impl TestRam {
    pub(crate) fn new() -> TestRam {
        TestRam {
            bytes: vec![0; RAM_SIZE as usize],
        }
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, GuestMemoryError> {
        let error = GuestMemoryError {
            addr,
            len: len as u64,
        };
        let start = addr.checked_sub(RAM_BASE).ok_or(error.clone())?;
        let end = start.checked_add(len as u64).ok_or(error.clone())?;
        if end > RAM_SIZE {
            return Err(error);
        }
        Ok(start as usize..end as usize)
    }

    pub(crate) fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let range = self.range(addr, len).expect("test address in RAM");
        self.bytes[range].to_vec()
    }

    pub(crate) fn put(&mut self, addr: u64, data: &[u8]) {
        self.write(addr, data).expect("test address in RAM");
    }

    pub(crate) fn u16_at(&self, addr: u64) -> u16 {
        let b = self.bytes(addr, 2);
        u16::from_le_bytes([b[0], b[1]])
    }

    pub(crate) fn u32_at(&self, addr: u64) -> u32 {
        let b = self.bytes(addr, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    pub(crate) fn put_desc(
        &mut self,
        table: u64,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let mut raw = Vec::with_capacity(16);
        raw.extend_from_slice(&addr.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(index), &raw);
    }
}

impl GuestMemory for TestRam {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let range = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[range]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError> {
        let range = self.range(addr, data.len())?;
        self.bytes[range].copy_from_slice(data);
        Ok(())
    }
}

/// A buffer the test driver puts in a chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buf {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

/// A readable buffer.
pub(crate) fn r(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        writable: false,
    }
}

/// A writable buffer.
pub(crate) fn w(addr: u64, len: u32) -> Buf {
    Buf {
        addr,
        len,
        writable: true,
    }
}

/// The driver's side of one split virtqueue in [`TestRam`].
#[derive(Debug, Clone)]
pub(crate) struct TestQueue {
    pub index: u32,
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
}

impl TestQueue {
    /// Queue `index` with `size` entries, its rings at a fixed place per index.
    pub(crate) fn new(index: u32, size: u16) -> TestQueue {
        let base = RAM_BASE + 0x1_0000 * u64::from(index);
        TestQueue {
            index,
            size,
            desc: base,
            avail: base + 0x4000,
            used: base + 0x8000,
            next_desc: 0,
            avail_idx: 0,
        }
    }

    /// Writes a chain of `bufs` into free descriptors and makes it available; returns
    /// its head.
    pub(crate) fn add(&mut self, ram: &mut TestRam, bufs: &[Buf]) -> u16 {
        let head = self.next_desc;
        for (i, buf) in bufs.iter().enumerate() {
            let index = (self.next_desc + i as u16) % self.size;
            let next = (index + 1) % self.size;
            let mut flags = if buf.writable { VIRTQ_DESC_F_WRITE } else { 0 };
            if i + 1 < bufs.len() {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            ram.put_desc(self.desc, index, buf.addr, buf.len, flags, next);
        }
        self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
        self.make_available(ram, head);
        head
    }

    /// Puts `head` in the next available ring slot and publishes it.
    pub(crate) fn make_available(&mut self, ram: &mut TestRam, head: u16) {
        let slot = u64::from(self.avail_idx % self.size);
        ram.put(self.avail + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.set_avail_idx(ram, self.avail_idx);
    }

    /// Writes the available ring's `idx` directly.
    pub(crate) fn set_avail_idx(&mut self, ram: &mut TestRam, idx: u16) {
        self.avail_idx = idx;
        ram.put(self.avail + 2, &idx.to_le_bytes());
    }

    /// The used ring's entries `(id, len)` up to its `idx`.
    pub(crate) fn used(&self, ram: &TestRam) -> Vec<(u32, u32)> {
        let idx = ram.u16_at(self.used + 2);
        (0..idx)
            .map(|i| {
                let at = self.used + 4 + 8 * u64::from(i % self.size);
                (ram.u32_at(at), ram.u32_at(at + 4))
            })
            .collect()
    }
}

/// Drives `dev` through the initialization of §3.1.1 with `features` and `queues`.
pub(crate) fn activate(dev: &mut VirtioMmio, features: u64, queues: &[TestQueue]) {
    dev.write(STATUS, 4, u64::from(STATUS_ACKNOWLEDGE));
    dev.write(STATUS, 4, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER));
    dev.write(DRIVER_FEATURES_SEL, 4, 0);
    dev.write(DRIVER_FEATURES, 4, features & 0xffff_ffff);
    dev.write(DRIVER_FEATURES_SEL, 4, 1);
    dev.write(DRIVER_FEATURES, 4, features >> 32);
    dev.write(
        STATUS,
        4,
        u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK),
    );
    for q in queues {
        dev.write(QUEUE_SEL, 4, u64::from(q.index));
        dev.write(QUEUE_NUM, 4, u64::from(q.size));
        dev.write(QUEUE_DESC_LOW, 4, q.desc & 0xffff_ffff);
        dev.write(QUEUE_DESC_HIGH, 4, q.desc >> 32);
        dev.write(QUEUE_DRIVER_LOW, 4, q.avail & 0xffff_ffff);
        dev.write(QUEUE_DRIVER_HIGH, 4, q.avail >> 32);
        dev.write(QUEUE_DEVICE_LOW, 4, q.used & 0xffff_ffff);
        dev.write(QUEUE_DEVICE_HIGH, 4, q.used >> 32);
        dev.write(QUEUE_READY, 4, 1);
    }
    dev.write(
        STATUS,
        4,
        u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK),
    );
}

/// The features a modern driver accepts from `dev`: all offered.
pub(crate) fn offered(dev: &mut VirtioMmio) -> u64 {
    dev.write(DEVICE_FEATURES_SEL, 4, 0);
    let low = dev.read(DEVICE_FEATURES, 4);
    dev.write(DEVICE_FEATURES_SEL, 4, 1);
    let high = dev.read(DEVICE_FEATURES, 4);
    (high << 32) | low | VIRTIO_F_VERSION_1
}

/// Notifies queue `index`.
pub(crate) fn notify(dev: &mut VirtioMmio, index: u32) {
    dev.write(QUEUE_NOTIFY, 4, u64::from(index));
}
