//! Split virtqueues (virtio 1.2 §2.7): the descriptor chain walker and the ring accesses.
//!
//! [`walk_chain`] is a pure function of guest memory: it validates one descriptor chain
//! and returns its buffers, or the first thing wrong with it. Indirect descriptors
//! (`VIRTIO_F_INDIRECT_DESC`) are not offered, so the flag is an error.
//!
//! Ring layout (guest-physical, little-endian):
//!
//! ```text
//! descriptor table  16 bytes each: le64 addr, le32 len, le16 flags, le16 next
//! available ring    le16 flags, le16 idx, le16 ring[size]            (driver area)
//! used ring         le16 flags, le16 idx, {le32 id, le32 len}[size]  (device area)
//! ```

use super::{GuestMemory, GuestMemoryError};

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the buffer is device-writable (otherwise device-readable).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of indirect descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver does not want used-buffer interrupts.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;

/// Size of one descriptor table entry.
const DESC_SIZE: u64 = 16;
/// Size of one used ring element.
const USED_ELEM_SIZE: u64 = 8;

/// One guest buffer of a descriptor chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
}

/// A validated descriptor chain: device-readable buffers, then device-writable ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// Index of the head descriptor, which identifies the chain in the used ring.
    pub head: u16,
    /// Device-readable buffers, in chain order.
    pub readable: Vec<Segment>,
    /// Device-writable buffers, in chain order.
    pub writable: Vec<Segment>,
}

/// What is wrong with a descriptor chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The available ring names a head outside the descriptor table.
    #[error("Descriptor chain head {head} is outside the queue of size {size}")]
    HeadOutOfRange {
        /// The head index found.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// A descriptor links to an index outside the descriptor table.
    #[error("Descriptor {index} links to {next}, outside the queue of size {size}")]
    NextOutOfRange {
        /// The descriptor holding the link.
        index: u16,
        /// The link found.
        next: u16,
        /// The queue size.
        size: u16,
    },
    /// The chain has more descriptors than the table: it loops.
    #[error("Descriptor chain from head {head} is longer than the queue size {size}")]
    TooLong {
        /// The chain's head.
        head: u16,
        /// The queue size.
        size: u16,
    },
    /// The descriptor itself is not in guest RAM (the table is misplaced).
    #[error("Descriptor {index} at {addr:#x} is outside guest RAM")]
    DescriptorOutsideRam {
        /// The descriptor index.
        index: u16,
        /// Where the table says it is.
        addr: u64,
    },
    /// The buffer's end lies beyond the 64-bit address space.
    #[error("Descriptor {index} buffer {addr:#x}+{len:#x} overflows the address space")]
    AddressOverflow {
        /// The descriptor index.
        index: u16,
        /// The buffer address.
        addr: u64,
        /// The buffer length.
        len: u32,
    },
    /// The buffer is not entirely in guest RAM.
    #[error("Descriptor {index} buffer {addr:#x}+{len:#x} is outside guest RAM")]
    BufferOutsideRam {
        /// The descriptor index.
        index: u16,
        /// The buffer address.
        addr: u64,
        /// The buffer length.
        len: u32,
    },
    /// A device-readable descriptor follows a device-writable one (§2.7.4.2).
    #[error("Descriptor {index} is device-readable but follows a device-writable one")]
    ReadableAfterWritable {
        /// The descriptor index.
        index: u16,
    },
    /// An indirect descriptor, whose feature was not offered.
    #[error("Descriptor {index} is indirect, which the device does not offer")]
    Indirect {
        /// The descriptor index.
        index: u16,
    },
}

/// Walks the chain starting at `head` in the descriptor table at `desc_table` of a
/// queue of `size` entries, checking every descriptor: indices in range, no more than
/// `size` descriptors (no loop), no indirect flag, every buffer inside guest RAM, and
/// readable buffers before writable ones.
///
/// A buffer is in RAM when its first and last bytes are: guest RAM is one contiguous
/// range, and every later copy goes through [`GuestMemory`] again anyway.
pub fn walk_chain(
    mem: &dyn GuestMemory,
    desc_table: u64,
    size: u16,
    head: u16,
) -> Result<Chain, ChainError> {
    if head >= size {
        return Err(ChainError::HeadOutOfRange { head, size });
    }
    let mut chain = Chain {
        head,
        readable: Vec::new(),
        writable: Vec::new(),
    };
    let mut index = head;
    let mut count: u32 = 0;
    loop {
        count += 1;
        if count > u32::from(size) {
            return Err(ChainError::TooLong { head, size });
        }
        let desc_addr = desc_table.checked_add(u64::from(index) * DESC_SIZE).ok_or(
            ChainError::DescriptorOutsideRam {
                index,
                addr: desc_table,
            },
        )?;
        let mut raw = [0u8; DESC_SIZE as usize];
        mem.read(desc_addr, &mut raw)
            .map_err(|_| ChainError::DescriptorOutsideRam {
                index,
                addr: desc_addr,
            })?;
        let addr = u64::from_le_bytes([
            raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
        ]);
        let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let flags = u16::from_le_bytes([raw[12], raw[13]]);
        let next = u16::from_le_bytes([raw[14], raw[15]]);

        if flags & VIRTQ_DESC_F_INDIRECT != 0 {
            return Err(ChainError::Indirect { index });
        }
        check_buffer(mem, index, addr, len)?;
        let segment = Segment { addr, len };
        if flags & VIRTQ_DESC_F_WRITE != 0 {
            chain.writable.push(segment);
        } else if chain.writable.is_empty() {
            chain.readable.push(segment);
        } else {
            return Err(ChainError::ReadableAfterWritable { index });
        }
        if flags & VIRTQ_DESC_F_NEXT == 0 {
            return Ok(chain);
        }
        if next >= size {
            return Err(ChainError::NextOutOfRange { index, next, size });
        }
        index = next;
    }
}

fn check_buffer(mem: &dyn GuestMemory, index: u16, addr: u64, len: u32) -> Result<(), ChainError> {
    let Some(end) = addr.checked_add(u64::from(len)) else {
        return Err(ChainError::AddressOverflow { index, addr, len });
    };
    if len == 0 {
        return Ok(());
    }
    let mut probe = [0u8; 1];
    mem.read(addr, &mut probe)
        .and_then(|()| mem.read(end - 1, &mut probe))
        .map_err(|_| ChainError::BufferOutsideRam { index, addr, len })
}

impl Chain {
    /// Total bytes of the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        segments_len(&self.readable)
    }

    /// Total bytes of the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        segments_len(&self.writable)
    }
}

/// Total bytes of `segments`.
pub fn segments_len(segments: &[Segment]) -> u64 {
    segments.iter().map(|s| u64::from(s.len)).sum()
}

/// Fills `buf` from the byte stream the segments form, starting `offset` bytes into it;
/// bytes past the stream's end are left untouched. Returns the bytes copied.
pub(crate) fn read_segments(
    mem: &dyn GuestMemory,
    segments: &[Segment],
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for_each_piece(segments, offset, buf.len(), |addr, at, n| {
        mem.read(addr, &mut buf[at..at + n])?;
        done += n;
        Ok(())
    })?;
    Ok(done)
}

/// Writes `data` into the byte stream the segments form, starting `offset` bytes into
/// it; bytes past the stream's end are dropped. Returns the bytes written.
pub(crate) fn write_segments(
    mem: &mut dyn GuestMemory,
    segments: &[Segment],
    offset: u64,
    data: &[u8],
) -> Result<usize, GuestMemoryError> {
    let mut done = 0;
    for_each_piece(segments, offset, data.len(), |addr, at, n| {
        mem.write(addr, &data[at..at + n])?;
        done += n;
        Ok(())
    })?;
    Ok(done)
}

/// Calls `f(guest_addr, stream_index, len)` for each piece of the `len` bytes from
/// `offset` of the stream the segments form.
fn for_each_piece(
    segments: &[Segment],
    offset: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), GuestMemoryError>,
) -> Result<(), GuestMemoryError> {
    let mut skip = offset;
    let mut at = 0usize;
    for segment in segments {
        if at == len {
            break;
        }
        let seg_len = u64::from(segment.len);
        if skip >= seg_len {
            skip -= seg_len;
            continue;
        }
        let avail = usize::try_from(seg_len - skip).unwrap_or(usize::MAX);
        let n = avail.min(len - at);
        let addr = segment.addr.checked_add(skip).ok_or(GuestMemoryError {
            addr: segment.addr,
            len: seg_len,
        })?;
        f(addr, at, n)?;
        at += n;
        skip = 0;
    }
    Ok(())
}

/// One split virtqueue as the transport programs it, plus the device's ring positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    /// `QueueNum`: entries in each ring, a power of 2 up to `QueueNumMax`.
    pub size: u16,
    /// `QueueReady`.
    pub ready: bool,
    /// `QueueDesc`: guest-physical address of the descriptor table.
    pub desc: u64,
    /// `QueueDriver`: guest-physical address of the available ring.
    pub driver: u64,
    /// `QueueDevice`: guest-physical address of the used ring.
    pub device: u64,
    /// Free-running index of the next available ring entry the device will take.
    pub next_avail: u16,
    /// Free-running index of the next used ring entry the device will fill (the used
    /// ring's `idx`).
    pub next_used: u16,
    /// The driver notified the queue and the device has not looked at it since.
    pub notified: bool,
}

/// A chain taken from the available ring: its head, and the chain or what is wrong with it.
pub(crate) type Popped = (u16, Result<Chain, ChainError>);

/// What is wrong with a ring as a whole (the device then needs a reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RingError {
    /// The available or used ring is not in guest RAM.
    OutsideRam,
    /// The driver made more buffers available than the queue holds.
    AvailJump,
    /// An available ring entry names a head outside the descriptor table.
    HeadOutOfRange,
}

impl QueueState {
    /// A queue at reset: `size` entries, not ready, nothing programmed.
    pub fn new(size: u16) -> QueueState {
        QueueState {
            size,
            ready: false,
            desc: 0,
            driver: 0,
            device: 0,
            next_avail: 0,
            next_used: 0,
            notified: false,
        }
    }

    /// Chains the device has taken and not yet returned.
    pub fn outstanding(&self) -> u16 {
        self.next_avail.wrapping_sub(self.next_used)
    }

    fn read_u16(mem: &dyn GuestMemory, addr: Option<u64>) -> Result<u16, RingError> {
        let addr = addr.ok_or(RingError::OutsideRam)?;
        let mut raw = [0u8; 2];
        mem.read(addr, &mut raw)
            .map_err(|_| RingError::OutsideRam)?;
        Ok(u16::from_le_bytes(raw))
    }

    /// Takes the next available chain: `Ok(None)` when there is none, `Ok(Some((head,
    /// Err(_))))` for a malformed chain (the caller returns `head` unused), `Err` when
    /// the ring itself is corrupt.
    pub(crate) fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<Popped>, RingError> {
        let avail_idx = Self::read_u16(mem, self.driver.checked_add(2))?;
        // The driver owns at most `size` buffers not yet returned in the used ring.
        if avail_idx.wrapping_sub(self.next_used) > self.size {
            return Err(RingError::AvailJump);
        }
        if avail_idx == self.next_avail {
            return Ok(None);
        }
        let slot = u64::from(self.next_avail % self.size);
        let head = Self::read_u16(mem, self.driver.checked_add(4 + 2 * slot))?;
        self.next_avail = self.next_avail.wrapping_add(1);
        match walk_chain(mem, self.desc, self.size, head) {
            Err(ChainError::HeadOutOfRange { .. }) => Err(RingError::HeadOutOfRange),
            result => Ok(Some((head, result))),
        }
    }

    /// Returns chain `head` in the used ring with `len` bytes written; `Ok(true)` when
    /// the driver wants an interrupt for it.
    pub(crate) fn push_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<bool, RingError> {
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; USED_ELEM_SIZE as usize];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        let elem_addr = self
            .device
            .checked_add(4 + USED_ELEM_SIZE * slot)
            .ok_or(RingError::OutsideRam)?;
        let idx_addr = self.device.checked_add(2).ok_or(RingError::OutsideRam)?;
        mem.write(elem_addr, &elem)
            .map_err(|_| RingError::OutsideRam)?;
        self.next_used = self.next_used.wrapping_add(1);
        mem.write(idx_addr, &self.next_used.to_le_bytes())
            .map_err(|_| RingError::OutsideRam)?;
        // Without VIRTIO_F_EVENT_IDX the avail flags are only a hint; an unreadable
        // flags word means an interrupt.
        let flags = Self::read_u16(mem, Some(self.driver)).unwrap_or(0);
        Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::{TestRam, RAM_BASE, RAM_SIZE};

    const TABLE: u64 = RAM_BASE;
    const SIZE: u16 = 8;
    const BUF: u64 = RAM_BASE + 0x1000;

    fn ram_with(descs: &[(u16, u64, u32, u16, u16)]) -> TestRam {
        let mut ram = TestRam::new();
        for &(index, addr, len, flags, next) in descs {
            ram.put_desc(TABLE, index, addr, len, flags, next);
        }
        ram
    }

    #[test]
    fn test_walk_chain_returns_readable_then_writable_buffers() {
        let ram = ram_with(&[
            (0, BUF, 16, VIRTQ_DESC_F_NEXT, 3),
            (
                3,
                BUF + 0x100,
                512,
                VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                5,
            ),
            (5, BUF + 0x400, 1, VIRTQ_DESC_F_WRITE, 0),
        ]);

        let chain = walk_chain(&ram, TABLE, SIZE, 0).expect("valid chain");

        assert_eq!(
            chain,
            Chain {
                head: 0,
                readable: vec![Segment { addr: BUF, len: 16 }],
                writable: vec![
                    Segment {
                        addr: BUF + 0x100,
                        len: 512
                    },
                    Segment {
                        addr: BUF + 0x400,
                        len: 1
                    }
                ],
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_head_outside_queue() {
        let ram = ram_with(&[]);

        let error = walk_chain(&ram, TABLE, SIZE, 8).expect_err("head out of range");

        assert_eq!(error, ChainError::HeadOutOfRange { head: 8, size: 8 });
    }

    #[test]
    fn test_walk_chain_rejects_next_outside_queue() {
        let ram = ram_with(&[(2, BUF, 16, VIRTQ_DESC_F_NEXT, 9)]);

        let error = walk_chain(&ram, TABLE, SIZE, 2).expect_err("next out of range");

        assert_eq!(
            error,
            ChainError::NextOutOfRange {
                index: 2,
                next: 9,
                size: 8
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_a_loop() {
        let ram = ram_with(&[
            (0, BUF, 16, VIRTQ_DESC_F_NEXT, 1),
            (1, BUF, 16, VIRTQ_DESC_F_NEXT, 0),
        ]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("loop");

        assert_eq!(error, ChainError::TooLong { head: 0, size: 8 });
    }

    #[test]
    fn test_walk_chain_rejects_a_self_loop() {
        let ram = ram_with(&[(4, BUF, 16, VIRTQ_DESC_F_NEXT, 4)]);

        let error = walk_chain(&ram, TABLE, SIZE, 4).expect_err("loop");

        assert_eq!(error, ChainError::TooLong { head: 4, size: 8 });
    }

    #[test]
    fn test_walk_chain_rejects_buffer_past_end_of_ram() {
        let ram = ram_with(&[(0, RAM_BASE + RAM_SIZE - 8, 16, 0, 0)]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("outside RAM");

        assert_eq!(
            error,
            ChainError::BufferOutsideRam {
                index: 0,
                addr: RAM_BASE + RAM_SIZE - 8,
                len: 16
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_buffer_below_ram() {
        let ram = ram_with(&[(0, 0x1000, 16, 0, 0)]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("outside RAM");

        assert_eq!(
            error,
            ChainError::BufferOutsideRam {
                index: 0,
                addr: 0x1000,
                len: 16
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_buffer_overflowing_u64() {
        let ram = ram_with(&[(0, u64::MAX - 3, 16, 0, 0)]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("overflow");

        assert_eq!(
            error,
            ChainError::AddressOverflow {
                index: 0,
                addr: u64::MAX - 3,
                len: 16
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_descriptor_table_outside_ram() {
        let ram = ram_with(&[]);

        let error = walk_chain(&ram, 0x10, SIZE, 1).expect_err("table outside RAM");

        assert_eq!(
            error,
            ChainError::DescriptorOutsideRam {
                index: 1,
                addr: 0x20
            }
        );
    }

    #[test]
    fn test_walk_chain_rejects_readable_after_writable() {
        let ram = ram_with(&[
            (0, BUF, 1, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1),
            (1, BUF + 0x10, 16, 0, 0),
        ]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("wrong order");

        assert_eq!(error, ChainError::ReadableAfterWritable { index: 1 });
    }

    #[test]
    fn test_walk_chain_rejects_indirect_descriptor() {
        let ram = ram_with(&[(0, BUF, 32, VIRTQ_DESC_F_INDIRECT, 0)]);

        let error = walk_chain(&ram, TABLE, SIZE, 0).expect_err("indirect");

        assert_eq!(error, ChainError::Indirect { index: 0 });
    }

    #[test]
    fn test_walk_chain_accepts_chain_as_long_as_the_queue() {
        let descs: Vec<_> = (0..SIZE)
            .map(|i| {
                let flags = if i + 1 < SIZE { VIRTQ_DESC_F_NEXT } else { 0 };
                (i, BUF, 4, flags, i + 1)
            })
            .collect();
        let ram = ram_with(&descs);

        let chain = walk_chain(&ram, TABLE, SIZE, 0).expect("valid chain");

        assert_eq!(chain.readable.len(), usize::from(SIZE));
    }

    #[test]
    fn test_walk_chain_of_zero_size_queue_rejects_every_head() {
        let ram = ram_with(&[]);

        let error = walk_chain(&ram, TABLE, 0, 0).expect_err("empty queue");

        assert_eq!(error, ChainError::HeadOutOfRange { head: 0, size: 0 });
    }

    #[test]
    fn test_walk_chain_never_panics_on_random_descriptor_tables() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut ram = TestRam::new();
        let mut outcomes = 0usize;

        for _ in 0..200 {
            for index in 0..SIZE {
                let addr = match next() % 3 {
                    0 => next(),
                    1 => RAM_BASE + next() % (RAM_SIZE + 64),
                    _ => BUF + next() % 0x100,
                };
                ram.put_desc(
                    TABLE,
                    index,
                    addr,
                    next() as u32 % 0x3000,
                    next() as u16 & 7,
                    next() as u16 % 10,
                );
            }
            for head in 0..SIZE + 2 {
                let _ = walk_chain(&ram, TABLE, SIZE, head);
                outcomes += 1;
            }
        }

        assert_eq!(outcomes, 200 * usize::from(SIZE + 2));
    }

    #[test]
    fn test_write_segments_spans_buffers_from_an_offset() {
        let mut ram = TestRam::new();
        let segments = [
            Segment { addr: BUF, len: 2 },
            Segment {
                addr: BUF + 0x10,
                len: 4,
            },
        ];

        let written = write_segments(&mut ram, &segments, 1, &[1, 2, 3, 4, 5, 6]).expect("in RAM");

        assert_eq!(written, 5);
        assert_eq!(ram.bytes(BUF, 2), vec![0, 1]);
        assert_eq!(ram.bytes(BUF + 0x10, 4), vec![2, 3, 4, 5]);
    }
}
