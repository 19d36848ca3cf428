//! virtio devices over the virtio-mmio transport (virtio 1.2 §4.2, version 2 "modern"):
//! block (§5.2), network (§5.1) and entropy (§5.4), on split virtqueues (§2.7).
//!
//! A device is split in two (DESIGN.md §1). The **device model** here owns the
//! registers, the virtqueues and the interrupt; it runs on the vCPU thread and is
//! deterministic. The **host backend** (a file, a TAP device, the host's entropy source)
//! lives elsewhere and never touches guest memory. They talk through plain data:
//!
//! 1. the guest writes `QueueNotify`; [`VirtioMmio::notified`] turns true;
//! 2. the machine calls [`VirtioMmio::process`], which walks the new descriptor chains,
//!    copies everything the backend needs out of guest RAM (bounce buffers) and appends
//!    [`BackendRequest`]s to `out`;
//! 3. the backend answers with a [`BackendCompletion`], which the machine logs and
//!    applies at an instruction boundary with [`VirtioMmio::complete`]: only then does
//!    data reach guest RAM, the used ring advance and the interrupt rise.
//!
//! Block requests that touch sectors of a request still in flight wait in a FIFO and
//! are handed to the backend by a later [`VirtioMmio::process`] (`notified` turns true
//! when one can go), so the image's final content never depends on backend timing.
//!
//! What the guest gets wrong (a malformed descriptor chain, a ring index that jumps, a
//! buffer outside RAM) is answered architecturally: `VIRTIO_BLK_S_IOERR`, a buffer
//! returned with length 0, or `DEVICE_NEEDS_RESET` with a configuration-change
//! interrupt. It never panics and never reaches outside guest RAM.

mod block;
mod mmio;
mod net;
pub mod queue;
mod rng;
#[cfg(test)]
pub(crate) mod testing;

pub use block::{
    Block, BlockRequestState, BlockState, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR,
    VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
pub use mmio::*;
pub use net::{
    Net, NetState, NET_MAX_FRAME, NET_RX_FIFO_FRAMES, VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS,
    VIRTIO_NET_HDR_LEN,
};
pub use queue::{walk_chain, Chain, ChainError, QueueState, Segment};
pub use rng::{EntropyRequestState, Rng, RngState, RNG_MAX_REQUEST};

/// Guest RAM as the device models see it (the machine implements it over the hart's RAM).
pub trait GuestMemory {
    /// Fills `buf` from guest physical address `addr`; fails, reading nothing, if any
    /// byte of the range is outside RAM.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryError>;

    /// Writes `data` at guest physical address `addr`; fails, writing nothing, if any
    /// byte of the range is outside RAM.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryError>;
}

/// A guest-physical range that is not (entirely) guest RAM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Guest range {addr:#x}+{len:#x} is outside guest RAM")]
pub struct GuestMemoryError {
    /// First address of the range.
    pub addr: u64,
    /// Length of the range in bytes.
    pub len: u64,
}

/// A request a device model hands to its host backend. Its data is a copy (bounce
/// buffer) taken out of guest RAM when the request was taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendRequest {
    /// A disk operation; answered by [`BackendCompletion::Block`] with the same `id`.
    Block {
        /// Identifies the request, unique over the device's life (resets included).
        id: u64,
        /// What to do.
        op: BlockOp,
    },
    /// A frame to send; needs no answer.
    NetTx {
        /// The Ethernet frame, without the `virtio_net_hdr`.
        frame: Vec<u8>,
    },
    /// `len` random bytes; answered by [`BackendCompletion::Entropy`] with the same `id`.
    Entropy {
        /// Identifies the request, unique over the device's life (resets included).
        id: u64,
        /// Number of bytes wanted.
        len: u32,
    },
}

/// A disk operation, in 512-byte sectors (`VIRTIO_BLK_T_GET_ID` is answered by the
/// model itself from its serial string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockOp {
    /// Read `len` bytes (a multiple of 512) from `sector`.
    Read {
        /// First sector.
        sector: u64,
        /// Bytes to read.
        len: u32,
    },
    /// Write `data` (a multiple of 512 bytes) at `sector`.
    Write {
        /// First sector.
        sector: u64,
        /// The bytes to write.
        data: Vec<u8>,
    },
    /// Make every write completed before it durable.
    Flush,
    /// The guest no longer needs `sectors` sectors from `sector`.
    Discard {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        sectors: u64,
    },
}

/// What a host backend answers; the machine applies it at an instruction boundary (the
/// logged event boundary) with [`VirtioMmio::complete`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendCompletion {
    /// The end of [`BackendRequest::Block`] `id`.
    Block {
        /// The request's id.
        id: u64,
        /// `VIRTIO_BLK_S_OK`, `VIRTIO_BLK_S_IOERR` or `VIRTIO_BLK_S_UNSUPP`.
        status: u8,
        /// For a read with status OK, exactly the bytes read; otherwise empty.
        data: Vec<u8>,
    },
    /// A frame received from the network.
    NetRx {
        /// The Ethernet frame, without a `virtio_net_hdr`.
        frame: Vec<u8>,
    },
    /// The end of [`BackendRequest::Entropy`] `id`.
    Entropy {
        /// The request's id.
        id: u64,
        /// The random bytes (at most the length asked for are used).
        data: Vec<u8>,
    },
}

/// The device behind a [`VirtioMmio`] transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioDevice {
    /// virtio-blk.
    Block(Block),
    /// virtio-net.
    Net(Net),
    /// virtio-rng.
    Rng(Rng),
}

/// `DeviceID` of a network card (virtio 1.2 §5).
pub const VIRTIO_ID_NET: u32 = 1;
/// `DeviceID` of a block device.
pub const VIRTIO_ID_BLOCK: u32 = 2;
/// `DeviceID` of an entropy source.
pub const VIRTIO_ID_RNG: u32 = 4;

/// Feature bit: the modern (virtio 1.x) interface; offered and required.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
