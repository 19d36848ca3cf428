//! The virtio-mmio transport, version 2 (virtio 1.2 §4.2.2).
//!
//! Registers are 32 bits wide and reached with aligned 32-bit accesses (§4.2.2.2);
//! other accesses below the configuration space read 0 and are ignored on write. The
//! device-specific configuration space at `0x100` takes accesses of 1, 2, 4 or 8 bytes
//! and is read-only (no writable configuration field is offered).
//!
//! | offset | register              | offset | register                   |
//! |--------|-----------------------|--------|----------------------------|
//! | 0x000  | `MagicValue` "virt"   | 0x050  | `QueueNotify`              |
//! | 0x004  | `Version` (2)         | 0x060  | `InterruptStatus`          |
//! | 0x008  | `DeviceID`            | 0x064  | `InterruptACK`             |
//! | 0x00c  | `VendorID`            | 0x070  | `Status`                   |
//! | 0x010  | `DeviceFeatures`      | 0x080  | `QueueDescLow`/`High`      |
//! | 0x014  | `DeviceFeaturesSel`   | 0x090  | `QueueDriverLow`/`High`    |
//! | 0x020  | `DriverFeatures`      | 0x0a0  | `QueueDeviceLow`/`High`    |
//! | 0x024  | `DriverFeaturesSel`   | 0x0ac  | `SHMSel`, `SHMLen`, `SHMBase` (no regions) |
//! | 0x030  | `QueueSel`            | 0x0fc  | `ConfigGeneration` (0)     |
//! | 0x034  | `QueueNumMax` (256)   | 0x100  | configuration space        |
//! | 0x038  | `QueueNum`            |        |                            |
//! | 0x044  | `QueueReady`          |        |                            |
//!
//! Feature negotiation: `FEATURES_OK` is refused (left clear) unless the driver accepts
//! `VIRTIO_F_VERSION_1` and nothing the device did not offer. Queue registers are
//! ignored while their queue is ready; a queue is disabled only by a device reset
//! (writing 0 to `Status`), which forgets every queue and every request in flight:
//! completions for forgotten requests are ignored. `QueueNum` takes only powers of 2
//! up to `QueueNumMax`, as split virtqueues require.
//!
//! The device consumes no buffer before `DRIVER_OK` (§3.1.1): notifications wait.
//! A corrupt ring (an available index more than the queue size ahead, a head outside
//! the table, rings outside RAM) sets `DEVICE_NEEDS_RESET` and raises a configuration
//! change interrupt; the device then does nothing until reset.

use std::collections::BTreeSet;

use super::block::Block;
use super::net::Net;
use super::queue::{Chain, ChainError, QueueState};
use super::rng::Rng;
use super::{
    BackendCompletion, BackendRequest, BlockState, GuestMemory, NetState, RngState, VirtioDevice,
    VIRTIO_F_VERSION_1,
};
use crate::access::size_mask;
use crate::state::{check_bits, check_max, Persist, StateError};
use crate::MmioDevice;

/// `MagicValue`: "virt" in little-endian.
pub const MAGIC_VALUE: u64 = 0x000;
/// `Version`.
pub const VERSION: u64 = 0x004;
/// `DeviceID`.
pub const DEVICE_ID: u64 = 0x008;
/// `VendorID`.
pub const VENDOR_ID: u64 = 0x00c;
/// `DeviceFeatures`: 32 feature bits selected by `DeviceFeaturesSel`.
pub const DEVICE_FEATURES: u64 = 0x010;
/// `DeviceFeaturesSel`.
pub const DEVICE_FEATURES_SEL: u64 = 0x014;
/// `DriverFeatures`: 32 feature bits selected by `DriverFeaturesSel`.
pub const DRIVER_FEATURES: u64 = 0x020;
/// `DriverFeaturesSel`.
pub const DRIVER_FEATURES_SEL: u64 = 0x024;
/// `QueueSel`.
pub const QUEUE_SEL: u64 = 0x030;
/// `QueueNumMax`.
pub const QUEUE_NUM_MAX: u64 = 0x034;
/// `QueueNum`.
pub const QUEUE_NUM: u64 = 0x038;
/// `QueueReady`.
pub const QUEUE_READY: u64 = 0x044;
/// `QueueNotify`.
pub const QUEUE_NOTIFY: u64 = 0x050;
/// `InterruptStatus`.
pub const INTERRUPT_STATUS: u64 = 0x060;
/// `InterruptACK`.
pub const INTERRUPT_ACK: u64 = 0x064;
/// `Status`.
pub const STATUS: u64 = 0x070;
/// `QueueDescLow`.
pub const QUEUE_DESC_LOW: u64 = 0x080;
/// `QueueDescHigh`.
pub const QUEUE_DESC_HIGH: u64 = 0x084;
/// `QueueDriverLow`.
pub const QUEUE_DRIVER_LOW: u64 = 0x090;
/// `QueueDriverHigh`.
pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
/// `QueueDeviceLow`.
pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
/// `QueueDeviceHigh`.
pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
/// `SHMLenLow`: no shared memory regions, so all ones.
pub const SHM_LEN_LOW: u64 = 0x0b0;
/// `SHMLenHigh`.
pub const SHM_LEN_HIGH: u64 = 0x0b4;
/// `ConfigGeneration`.
pub const CONFIG_GENERATION: u64 = 0x0fc;
/// Start of the device-specific configuration space.
pub const CONFIG: u64 = 0x100;

/// `MagicValue` contents.
pub const MAGIC: u32 = 0x7472_6976;
/// `VendorID` contents: "FTVM".
pub const VENDOR: u32 = 0x4d56_5446;
/// `QueueNumMax` of every queue. 512: a block request may have up to 510
/// data buffers (`seg_max`), so that a 1 MiB request of 256 scattered pages
/// is one request, not two (with 256, every 1 MiB direct write was two
/// requests, and under the FT output rule the second waited for the
/// first's round trip to the backup).
pub const QUEUE_SIZE_MAX: u16 = 512;

/// `Status`: the guest found the device.
pub const STATUS_ACKNOWLEDGE: u8 = 0x01;
/// `Status`: the guest has a driver for it.
pub const STATUS_DRIVER: u8 = 0x02;
/// `Status`: the driver is ready.
pub const STATUS_DRIVER_OK: u8 = 0x04;
/// `Status`: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 0x08;
/// `Status`: the device hit an error it cannot recover from without a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
/// `Status`: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;
const STATUS_VALID: u8 = STATUS_ACKNOWLEDGE
    | STATUS_DRIVER
    | STATUS_DRIVER_OK
    | STATUS_FEATURES_OK
    | STATUS_DEVICE_NEEDS_RESET
    | STATUS_FAILED;

/// `InterruptStatus`: a buffer was returned in a used ring.
pub const INTERRUPT_USED_BUFFER: u32 = 0x1;
/// `InterruptStatus`: the configuration changed (or the device needs a reset).
pub const INTERRUPT_CONFIG_CHANGE: u32 = 0x2;

const DEVICE: &str = "virtio-mmio";

/// The transport's registers and queues, shared with the device models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transport {
    pub(crate) queues: Vec<QueueState>,
    pub(crate) device_features_sel: u32,
    pub(crate) driver_features: u64,
    pub(crate) driver_features_sel: u32,
    pub(crate) queue_sel: u32,
    pub(crate) status: u8,
    pub(crate) interrupt_status: u32,
    pub(crate) next_id: u64,
}

impl Transport {
    /// The device may use its queues: `DRIVER_OK` and no pending reset.
    pub(crate) fn live(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0 && !self.broken()
    }

    /// `DEVICE_NEEDS_RESET` is set.
    pub(crate) fn broken(&self) -> bool {
        self.status & STATUS_DEVICE_NEEDS_RESET != 0
    }

    /// Marks the device as needing a reset and tells the driver (§2.1.2).
    pub(crate) fn fail(&mut self) {
        if !self.broken() {
            self.status |= STATUS_DEVICE_NEEDS_RESET;
            self.interrupt_status |= INTERRUPT_CONFIG_CHANGE;
        }
    }

    /// A fresh request id.
    pub(crate) fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// The next available chain of queue `q`: `None` when there is none (or the device
    /// cannot use the queue), `Some(Err((head, _)))` for a malformed chain the caller
    /// returns with [`Self::push_used`]. A corrupt ring fails the device.
    pub(crate) fn pop(
        &mut self,
        q: usize,
        mem: &dyn GuestMemory,
    ) -> Option<Result<Chain, (u16, ChainError)>> {
        if !self.live() {
            return None;
        }
        let queue = self.queues.get_mut(q).filter(|queue| queue.ready)?;
        match queue.pop(mem) {
            Ok(None) => None,
            Ok(Some((_, Ok(chain)))) => Some(Ok(chain)),
            Ok(Some((head, Err(error)))) => Some(Err((head, error))),
            Err(_) => {
                self.fail();
                None
            }
        }
    }

    /// Returns chain `head` of queue `q` with `len` bytes written and raises the
    /// used-buffer interrupt unless the driver suppressed it. Nothing happens once the
    /// device needs a reset.
    pub(crate) fn push_used(&mut self, q: usize, mem: &mut dyn GuestMemory, head: u16, len: u32) {
        if self.broken() {
            return;
        }
        let Some(queue) = self.queues.get_mut(q).filter(|queue| queue.ready) else {
            return;
        };
        match queue.push_used(mem, head, len) {
            Ok(true) => self.interrupt_status |= INTERRUPT_USED_BUFFER,
            Ok(false) => {}
            Err(_) => self.fail(),
        }
    }

    fn selected_queue(&mut self) -> Option<&mut QueueState> {
        let index = usize::try_from(self.queue_sel).ok()?;
        self.queues.get_mut(index)
    }

    fn reset(&mut self) {
        for queue in &mut self.queues {
            *queue = QueueState::new(QUEUE_SIZE_MAX);
        }
        self.device_features_sel = 0;
        self.driver_features = 0;
        self.driver_features_sel = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
        // next_id keeps counting: a late completion for a forgotten request can never
        // match a new one.
    }
}

impl VirtioDevice {
    /// The `DeviceID` register value.
    pub fn device_id(&self) -> u32 {
        match self {
            VirtioDevice::Block(_) => super::VIRTIO_ID_BLOCK,
            VirtioDevice::Net(_) => super::VIRTIO_ID_NET,
            VirtioDevice::Rng(_) => super::VIRTIO_ID_RNG,
        }
    }

    /// The feature bits the device offers, `VIRTIO_F_VERSION_1` included.
    pub fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | match self {
                VirtioDevice::Block(block) => block.features(),
                VirtioDevice::Net(net) => net.features(),
                VirtioDevice::Rng(_) => 0,
            }
    }

    /// The number of virtqueues.
    pub fn num_queues(&self) -> usize {
        match self {
            VirtioDevice::Block(_) | VirtioDevice::Rng(_) => 1,
            VirtioDevice::Net(_) => 2,
        }
    }

    /// The device-specific configuration space.
    pub fn config(&self) -> Vec<u8> {
        match self {
            VirtioDevice::Block(block) => block.config(),
            VirtioDevice::Net(net) => net.config(),
            VirtioDevice::Rng(_) => Vec::new(),
        }
    }

    fn reset(&mut self) {
        match self {
            VirtioDevice::Block(block) => block.reset(),
            VirtioDevice::Net(net) => net.reset(),
            VirtioDevice::Rng(rng) => rng.reset(),
        }
    }

    fn process_queue(
        &mut self,
        t: &mut Transport,
        q: usize,
        mem: &mut dyn GuestMemory,
        out: &mut Vec<BackendRequest>,
    ) {
        match self {
            VirtioDevice::Block(block) => block.process_queue(t, mem, out),
            VirtioDevice::Net(net) => net.process_queue(t, q, mem, out),
            VirtioDevice::Rng(rng) => rng.process_queue(t, mem, out),
        }
    }

    fn has_work(&self) -> bool {
        match self {
            VirtioDevice::Block(block) => block.has_releasable(),
            VirtioDevice::Net(_) | VirtioDevice::Rng(_) => false,
        }
    }

    /// Requests the backend owes an answer for, in id order.
    fn in_flight(&self) -> Vec<BackendRequest> {
        match self {
            VirtioDevice::Block(block) => block.in_flight_requests(),
            VirtioDevice::Net(_) => Vec::new(),
            VirtioDevice::Rng(rng) => rng.in_flight_requests(),
        }
    }

    /// Chains of queue `q` the device holds (taken, not yet returned), with their heads.
    fn outstanding_heads(&self, q: usize) -> Vec<u16> {
        match self {
            VirtioDevice::Block(block) if q == 0 => block.outstanding_heads(),
            VirtioDevice::Rng(rng) if q == 0 => rng.outstanding_heads(),
            _ => Vec::new(),
        }
    }

    /// Request ids the device remembers.
    fn ids(&self) -> Vec<u64> {
        match self {
            VirtioDevice::Block(block) => block.ids(),
            VirtioDevice::Net(_) => Vec::new(),
            VirtioDevice::Rng(rng) => rng.ids(),
        }
    }
}

/// A virtio device on the virtio-mmio transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioMmio {
    device: VirtioDevice,
    t: Transport,
}

/// The plain-data state of a device's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VirtioDeviceState {
    /// virtio-blk.
    Block(BlockState),
    /// virtio-net.
    Net(NetState),
    /// virtio-rng.
    Rng(RngState),
}

/// The plain-data state of a [`VirtioMmio`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtioMmioState {
    /// The device model: its configuration and the requests it holds.
    pub device: VirtioDeviceState,
    /// The device's queues, in index order.
    pub queues: Vec<QueueState>,
    /// `DeviceFeaturesSel`.
    pub device_features_sel: u32,
    /// The features the driver wrote to `DriverFeatures`.
    pub driver_features: u64,
    /// `DriverFeaturesSel`.
    pub driver_features_sel: u32,
    /// `QueueSel`.
    pub queue_sel: u32,
    /// `Status`.
    pub status: u8,
    /// `InterruptStatus`.
    pub interrupt_status: u32,
    /// The id the next backend request gets.
    pub next_id: u64,
}

impl VirtioMmio {
    /// Size of one virtio-mmio slot on the `virt` board.
    pub const MMIO_SIZE: u64 = 0x1000;

    /// `device` on a transport at reset.
    pub fn new(device: VirtioDevice) -> VirtioMmio {
        let queues = vec![QueueState::new(QUEUE_SIZE_MAX); device.num_queues()];
        VirtioMmio {
            device,
            t: Transport {
                queues,
                device_features_sel: 0,
                driver_features: 0,
                driver_features_sel: 0,
                queue_sel: 0,
                status: 0,
                interrupt_status: 0,
                next_id: 0,
            },
        }
    }

    /// The device model.
    pub fn device(&self) -> &VirtioDevice {
        &self.device
    }

    /// Whether [`Self::process`] has work: a queue was notified since, or a held block
    /// request can now go to the backend.
    pub fn notified(&self) -> bool {
        self.t.live() && (self.t.queues.iter().any(|q| q.notified) || self.device.has_work())
    }

    /// Takes the available buffers of the notified queues: validates each descriptor
    /// chain, copies write data out of guest RAM, answers what the model can answer
    /// itself, and appends the requests for the backend to `out` (also block requests
    /// released from the overlap FIFO).
    pub fn process(&mut self, mem: &mut dyn GuestMemory, out: &mut Vec<BackendRequest>) {
        if !self.t.live() {
            return;
        }
        for q in 0..self.t.queues.len() {
            if self.t.queues[q].notified {
                self.t.queues[q].notified = false;
                self.device.process_queue(&mut self.t, q, mem, out);
            }
        }
        if let VirtioDevice::Block(block) = &mut self.device {
            block.release(&mut self.t, out);
        }
    }

    /// Applies a backend completion: copies data into the guest buffers remembered for
    /// that request, writes the status, returns the chain in the used ring and raises the
    /// interrupt. A completion for a request the device does not remember (forgotten by
    /// a reset) or of another device's kind is ignored. A received frame goes into the
    /// next available receive chain, or waits in a bounded FIFO.
    pub fn complete(&mut self, mem: &mut dyn GuestMemory, completion: BackendCompletion) {
        match (&mut self.device, completion) {
            (VirtioDevice::Block(block), BackendCompletion::Block { id, status, data }) => {
                block.complete(&mut self.t, mem, id, status, &data);
            }
            (VirtioDevice::Net(net), BackendCompletion::NetRx { frame }) => {
                net.receive(&mut self.t, mem, frame);
            }
            (VirtioDevice::Rng(rng), BackendCompletion::Entropy { id, data }) => {
                rng.complete(&mut self.t, mem, id, &data);
            }
            _ => {}
        }
    }

    /// The interrupt line: `InterruptStatus` is not 0.
    pub fn irq(&self) -> bool {
        self.t.interrupt_status != 0
    }

    /// The requests handed to the backend and not yet completed, in id order, to issue
    /// again to a new backend (go-live after a failover).
    pub fn in_flight_requests(&self) -> Vec<BackendRequest> {
        self.device.in_flight()
    }

    /// The device's complete state.
    pub fn state(&self) -> VirtioMmioState {
        VirtioMmioState {
            device: match &self.device {
                VirtioDevice::Block(block) => VirtioDeviceState::Block(block.state()),
                VirtioDevice::Net(net) => VirtioDeviceState::Net(net.state()),
                VirtioDevice::Rng(rng) => VirtioDeviceState::Rng(rng.state()),
            },
            queues: self.t.queues.clone(),
            device_features_sel: self.t.device_features_sel,
            driver_features: self.t.driver_features,
            driver_features_sel: self.t.driver_features_sel,
            queue_sel: self.t.queue_sel,
            status: self.t.status,
            interrupt_status: self.t.interrupt_status,
            next_id: self.t.next_id,
        }
    }

    fn features_acceptable(&self) -> bool {
        let driver = self.t.driver_features;
        driver & VIRTIO_F_VERSION_1 != 0 && driver & !self.device.features() == 0
    }

    fn write_status(&mut self, value: u8) {
        if value == 0 {
            self.t.reset();
            self.device.reset();
            return;
        }
        let mut status = value & STATUS_VALID & !STATUS_DEVICE_NEEDS_RESET;
        if status & STATUS_FEATURES_OK != 0
            && self.t.status & STATUS_FEATURES_OK == 0
            && !self.features_acceptable()
        {
            status &= !STATUS_FEATURES_OK;
        }
        self.t.status = status | (self.t.status & STATUS_DEVICE_NEEDS_RESET);
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        let features = self.device.features();
        let queue_max = u32::from(QUEUE_SIZE_MAX);
        let high = |v: u64| (v >> 32) as u32;
        let low = |v: u64| v as u32;
        match offset {
            MAGIC_VALUE => MAGIC,
            VERSION => 2,
            DEVICE_ID => self.device.device_id(),
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => match self.t.device_features_sel {
                0 => low(features),
                1 => high(features),
                _ => 0,
            },
            QUEUE_NUM_MAX => self.t.selected_queue().map_or(0, |_| queue_max),
            QUEUE_NUM => self.t.selected_queue().map_or(0, |q| u32::from(q.size)),
            QUEUE_READY => self.t.selected_queue().map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => self.t.interrupt_status,
            STATUS => u32::from(self.t.status),
            QUEUE_DESC_LOW => self.t.selected_queue().map_or(0, |q| low(q.desc)),
            QUEUE_DESC_HIGH => self.t.selected_queue().map_or(0, |q| high(q.desc)),
            QUEUE_DRIVER_LOW => self.t.selected_queue().map_or(0, |q| low(q.driver)),
            QUEUE_DRIVER_HIGH => self.t.selected_queue().map_or(0, |q| high(q.driver)),
            QUEUE_DEVICE_LOW => self.t.selected_queue().map_or(0, |q| low(q.device)),
            QUEUE_DEVICE_HIGH => self.t.selected_queue().map_or(0, |q| high(q.device)),
            SHM_LEN_LOW | SHM_LEN_HIGH => u32::MAX,
            CONFIG_GENERATION => 0,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let set_low = |reg: &mut u64| *reg = (*reg & !0xffff_ffff) | u64::from(value);
        let set_high = |reg: &mut u64| *reg = (*reg & 0xffff_ffff) | (u64::from(value) << 32);
        match offset {
            DEVICE_FEATURES_SEL => self.t.device_features_sel = value,
            DRIVER_FEATURES if self.t.status & STATUS_FEATURES_OK == 0 => {
                match self.t.driver_features_sel {
                    0 => set_low(&mut self.t.driver_features),
                    1 => set_high(&mut self.t.driver_features),
                    _ => {}
                }
            }
            DRIVER_FEATURES_SEL => self.t.driver_features_sel = value,
            QUEUE_SEL => self.t.queue_sel = value,
            QUEUE_NOTIFY => {
                if let Some(queue) = usize::try_from(value)
                    .ok()
                    .and_then(|q| self.t.queues.get_mut(q))
                {
                    queue.notified = true;
                }
            }
            INTERRUPT_ACK => self.t.interrupt_status &= !value,
            STATUS => self.write_status(value as u8),
            _ => self.write_queue_register(offset, value, set_low, set_high),
        }
    }

    fn write_queue_register(
        &mut self,
        offset: u64,
        value: u32,
        set_low: impl Fn(&mut u64),
        set_high: impl Fn(&mut u64),
    ) {
        let Some(queue) = self.t.selected_queue().filter(|q| !q.ready) else {
            return;
        };
        match offset {
            QUEUE_NUM if value.is_power_of_two() && value <= u32::from(QUEUE_SIZE_MAX) => {
                queue.size = value as u16;
            }
            QUEUE_READY => queue.ready = value == 1,
            QUEUE_DESC_LOW => set_low(&mut queue.desc),
            QUEUE_DESC_HIGH => set_high(&mut queue.desc),
            QUEUE_DRIVER_LOW => set_low(&mut queue.driver),
            QUEUE_DRIVER_HIGH => set_high(&mut queue.driver),
            QUEUE_DEVICE_LOW => set_low(&mut queue.device),
            QUEUE_DEVICE_HIGH => set_high(&mut queue.device),
            _ => {}
        }
    }
}

impl MmioDevice for VirtioMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let Some(mask) = size_mask(size) else {
            return 0;
        };
        if offset >= CONFIG {
            let config = self.device.config();
            let Some(start) = usize::try_from(offset - CONFIG).ok() else {
                return 0;
            };
            let mut raw = [0u8; 8];
            for (i, byte) in raw.iter_mut().take(usize::from(size)).enumerate() {
                *byte = start
                    .checked_add(i)
                    .and_then(|at| config.get(at))
                    .copied()
                    .unwrap_or(0);
            }
            return u64::from_le_bytes(raw) & mask;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        u64::from(self.read_register(offset))
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if size != 4 || !offset.is_multiple_of(4) || offset >= CONFIG {
            return;
        }
        self.write_register(offset, value as u32);
    }
}

fn inconsistent(field: impl Into<String>, value: u64, reason: &'static str) -> StateError {
    StateError::Inconsistent {
        device: DEVICE,
        field: field.into(),
        value,
        reason,
    }
}

impl TryFrom<VirtioMmioState> for VirtioMmio {
    type Error = StateError;

    /// Checks the device model's own state, then that the queues match the device
    /// (their number, power-of-2 sizes up to `QueueNumMax`), that the status and
    /// interrupt hold only defined bits, that accepted features were offered, that every
    /// request id is unique and below `next_id`, and that each queue's ring positions
    /// account for exactly the chains the device holds.
    fn try_from(state: VirtioMmioState) -> Result<VirtioMmio, StateError> {
        let device = match state.device {
            VirtioDeviceState::Block(s) => VirtioDevice::Block(Block::try_from(s)?),
            VirtioDeviceState::Net(s) => VirtioDevice::Net(Net::try_from(s)?),
            VirtioDeviceState::Rng(s) => VirtioDevice::Rng(Rng::try_from(s)?),
        };
        if state.queues.len() != device.num_queues() {
            return Err(inconsistent(
                "queues length",
                state.queues.len() as u64,
                "the device has another number of queues",
            ));
        }
        check_bits(
            DEVICE,
            || "status".into(),
            state.status.into(),
            STATUS_VALID.into(),
        )?;
        check_max(
            DEVICE,
            || "interrupt_status".into(),
            state.interrupt_status.into(),
            u64::from(INTERRUPT_USED_BUFFER | INTERRUPT_CONFIG_CHANGE),
        )?;
        if state.status & STATUS_FEATURES_OK != 0 {
            check_bits(
                DEVICE,
                || "driver_features".into(),
                state.driver_features,
                device.features(),
            )?;
            if state.driver_features & VIRTIO_F_VERSION_1 == 0 {
                return Err(inconsistent(
                    "driver_features",
                    state.driver_features,
                    "FEATURES_OK is set without VIRTIO_F_VERSION_1",
                ));
            }
        }
        let mut ids = BTreeSet::new();
        for id in device.ids() {
            if id >= state.next_id || !ids.insert(id) {
                return Err(inconsistent(
                    "request id",
                    id,
                    "it is used twice or not below next_id",
                ));
            }
        }
        let broken = state.status & STATUS_DEVICE_NEEDS_RESET != 0;
        for (q, queue) in state.queues.iter().enumerate() {
            let size = queue.size;
            if !size.is_power_of_two() {
                return Err(inconsistent(
                    format!("queues[{q}].size"),
                    size.into(),
                    "split virtqueue sizes are powers of 2",
                ));
            }
            check_max(
                DEVICE,
                || format!("queues[{q}].size"),
                size.into(),
                QUEUE_SIZE_MAX.into(),
            )?;
            let heads = device.outstanding_heads(q);
            check_max(
                DEVICE,
                || format!("queues[{q}] requests held"),
                heads.len() as u64,
                size.into(),
            )?;
            for head in &heads {
                if *head >= size || !queue.ready {
                    return Err(inconsistent(
                        format!("queues[{q}] request head"),
                        u64::from(*head),
                        "it is outside a ready queue",
                    ));
                }
            }
            if !broken && usize::from(queue.outstanding()) != heads.len() {
                return Err(inconsistent(
                    format!("queues[{q}].next_avail"),
                    queue.next_avail.into(),
                    "the chains taken and not returned differ from the requests held",
                ));
            }
        }
        Ok(VirtioMmio {
            device,
            t: Transport {
                queues: state.queues,
                device_features_sel: state.device_features_sel,
                driver_features: state.driver_features,
                driver_features_sel: state.driver_features_sel,
                queue_sel: state.queue_sel,
                status: state.status,
                interrupt_status: state.interrupt_status,
                next_id: state.next_id,
            },
        })
    }
}

impl Persist for VirtioMmio {
    type State = VirtioMmioState;

    fn state(&self) -> VirtioMmioState {
        VirtioMmio::state(self)
    }

    fn restore(state: VirtioMmioState) -> Result<VirtioMmio, StateError> {
        VirtioMmio::try_from(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::testing::*;
    use crate::virtio::{Block, VIRTIO_BLK_F_FLUSH};

    fn rng() -> VirtioMmio {
        VirtioMmio::new(VirtioDevice::Rng(Rng::new()))
    }

    fn block() -> VirtioMmio {
        VirtioMmio::new(VirtioDevice::Block(Block::new(
            2048,
            false,
            "serial".into(),
        )))
    }

    fn negotiate(dev: &mut VirtioMmio, features: u64) -> u64 {
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
        dev.read(STATUS, 4)
    }

    #[test]
    fn test_mmio_identification_registers() {
        let mut dev = block();

        let ids = [
            dev.read(MAGIC_VALUE, 4),
            dev.read(VERSION, 4),
            dev.read(DEVICE_ID, 4),
            dev.read(VENDOR_ID, 4),
        ];

        assert_eq!(ids, [0x7472_6976, 2, 2, u64::from(VENDOR)]);
    }

    #[test]
    fn test_mmio_device_ids_of_net_and_rng() {
        let mut net = VirtioMmio::new(VirtioDevice::Net(Net::new([0; 6])));
        let mut rng = rng();

        let ids = [net.read(DEVICE_ID, 4), rng.read(DEVICE_ID, 4)];

        assert_eq!(ids, [1, 4]);
    }

    #[test]
    fn test_mmio_device_features_are_read_32_bits_at_a_time() {
        let mut dev = block();

        dev.write(DEVICE_FEATURES_SEL, 4, 1);
        let high = dev.read(DEVICE_FEATURES, 4);
        dev.write(DEVICE_FEATURES_SEL, 4, 0);
        let low = dev.read(DEVICE_FEATURES, 4);

        assert_eq!(high, 1, "VIRTIO_F_VERSION_1 is bit 32");
        assert_eq!(low & VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_FLUSH);
    }

    #[test]
    fn test_mmio_features_ok_accepted_with_version_1() {
        let mut dev = rng();

        let status = negotiate(&mut dev, VIRTIO_F_VERSION_1);

        assert_eq!(
            status & u64::from(STATUS_FEATURES_OK),
            u64::from(STATUS_FEATURES_OK)
        );
    }

    #[test]
    fn test_mmio_features_ok_refused_without_version_1() {
        let mut dev = rng();

        let status = negotiate(&mut dev, 0);

        assert_eq!(status, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER));
    }

    #[test]
    fn test_mmio_features_ok_refused_with_a_feature_not_offered() {
        let mut dev = rng();

        let status = negotiate(&mut dev, VIRTIO_F_VERSION_1 | (1 << 28));

        assert_eq!(status & u64::from(STATUS_FEATURES_OK), 0);
    }

    #[test]
    fn test_mmio_driver_features_are_frozen_after_features_ok() {
        let mut dev = rng();
        negotiate(&mut dev, VIRTIO_F_VERSION_1);

        dev.write(DRIVER_FEATURES_SEL, 4, 0);
        dev.write(DRIVER_FEATURES, 4, 1 << 28);

        assert_eq!(dev.state().driver_features, VIRTIO_F_VERSION_1);
    }

    #[test]
    fn test_mmio_queue_num_max_is_zero_for_a_missing_queue() {
        let mut dev = rng();

        let present = dev.read(QUEUE_NUM_MAX, 4);
        dev.write(QUEUE_SEL, 4, 1);
        let missing = dev.read(QUEUE_NUM_MAX, 4);

        assert_eq!((present, missing), (512, 0));
    }

    #[test]
    fn test_mmio_queue_num_ignores_sizes_that_are_not_powers_of_2() {
        let mut dev = rng();
        dev.write(QUEUE_NUM, 4, 64);

        dev.write(QUEUE_NUM, 4, 100);
        // A power of two, but above the maximum.
        dev.write(QUEUE_NUM, 4, 1024);

        assert_eq!(dev.read(QUEUE_NUM, 4), 64);
    }

    #[test]
    fn test_mmio_queue_registers_are_ignored_while_ready() {
        let mut dev = rng();
        let q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));

        dev.write(QUEUE_NUM, 4, 16);
        dev.write(QUEUE_DESC_LOW, 4, 0x1234_0000);
        dev.write(QUEUE_READY, 4, 0);

        assert_eq!(dev.read(QUEUE_NUM, 4), 8);
        assert_eq!(dev.read(QUEUE_DESC_LOW, 4), q.desc & 0xffff_ffff);
        assert_eq!(dev.read(QUEUE_READY, 4), 1);
    }

    #[test]
    fn test_mmio_queue_addresses_read_back_in_halves() {
        let mut dev = rng();

        dev.write(QUEUE_DEVICE_LOW, 4, 0x8000_2000);
        dev.write(QUEUE_DEVICE_HIGH, 4, 0x1);

        assert_eq!(dev.state().queues[0].device, 0x1_8000_2000);
    }

    #[test]
    fn test_mmio_reset_forgets_queues_status_and_interrupts() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        q.add(&mut ram, &[w(DATA, 8)]);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());
        dev.complete(
            &mut ram,
            BackendCompletion::Entropy {
                id: 0,
                data: vec![1; 8],
            },
        );

        dev.write(STATUS, 4, 0);

        assert_eq!(dev.read(STATUS, 4), 0);
        assert_eq!(dev.read(QUEUE_READY, 4), 0);
        assert_eq!(dev.read(QUEUE_NUM, 4), 512);
        assert!(!dev.irq());
        assert_eq!(dev.state().next_id, 1, "ids keep counting across a reset");
    }

    #[test]
    fn test_mmio_notification_before_driver_ok_waits_for_it() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        let ok = dev.read(STATUS, 4);
        dev.write(STATUS, 4, ok & !u64::from(STATUS_DRIVER_OK));
        q.add(&mut ram, &[w(DATA, 8)]);
        notify(&mut dev, 0);
        let before = dev.notified();
        let mut out = Vec::new();
        dev.process(&mut ram, &mut out);
        let taken_before = out.len();

        dev.write(STATUS, 4, ok);
        let after = dev.notified();
        dev.process(&mut ram, &mut out);

        assert!(!before);
        assert_eq!(taken_before, 0);
        assert!(after);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn test_mmio_interrupt_ack_clears_the_acknowledged_bits() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        q.add(&mut ram, &[r(DATA, 8)]);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());
        let raised = dev.read(INTERRUPT_STATUS, 4);

        dev.write(INTERRUPT_ACK, 4, u64::from(INTERRUPT_USED_BUFFER));

        assert_eq!(raised, u64::from(INTERRUPT_USED_BUFFER));
        assert!(!dev.irq());
    }

    #[test]
    fn test_mmio_no_interrupt_flag_suppresses_the_used_buffer_interrupt() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        ram.put(q.avail, &1u16.to_le_bytes());
        q.add(&mut ram, &[r(DATA, 8)]);
        notify(&mut dev, 0);

        dev.process(&mut ram, &mut Vec::new());

        assert_eq!(q.used(&ram), vec![(0, 0)]);
        assert!(!dev.irq());
    }

    #[test]
    fn test_mmio_device_needs_reset_survives_driver_status_writes() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        q.set_avail_idx(&mut ram, 9);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());

        dev.write(STATUS, 4, 0x0f);

        assert_eq!(dev.read(STATUS, 4), 0x4f);
    }

    #[test]
    fn test_mmio_used_ring_outside_ram_sets_device_needs_reset() {
        let mut dev = rng();
        let mut ram = TestRam::new();
        let mut q = TestQueue::new(0, 8);
        q.used = 0x1000;
        activate(&mut dev, VIRTIO_F_VERSION_1, std::slice::from_ref(&q));
        q.add(&mut ram, &[r(DATA, 8)]);
        notify(&mut dev, 0);

        dev.process(&mut ram, &mut Vec::new());

        assert_eq!(
            dev.read(STATUS, 4) & u64::from(STATUS_DEVICE_NEEDS_RESET),
            u64::from(STATUS_DEVICE_NEEDS_RESET)
        );
        assert_eq!(
            dev.read(INTERRUPT_STATUS, 4),
            u64::from(INTERRUPT_CONFIG_CHANGE)
        );
    }

    #[test]
    fn test_mmio_narrow_register_access_reads_zero_and_is_ignored() {
        let mut dev = rng();

        dev.write(QUEUE_SEL, 2, 5);
        let magic = dev.read(MAGIC_VALUE, 2);

        assert_eq!(magic, 0);
        assert_eq!(dev.state().queue_sel, 0);
    }

    #[test]
    fn test_mmio_config_space_beyond_its_end_reads_zero() {
        let mut dev = rng();

        let value = dev.read(CONFIG, 8);

        assert_eq!(value, 0);
    }

    #[test]
    fn test_mmio_config_space_takes_unaligned_byte_reads() {
        let mut dev = block();

        let byte = dev.read(CONFIG + 1, 1);
        let word = dev.read(CONFIG, 2);

        assert_eq!((byte, word), (0x08, 0x0800));
    }

    #[test]
    fn test_mmio_restore_rejects_queue_size_not_a_power_of_2() {
        let mut state = rng().state();
        state.queues[0].size = 100;

        let error = VirtioMmio::try_from(state).expect_err("bad size");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-mmio",
                field: "queues[0].size".into(),
                value: 100,
                reason: "split virtqueue sizes are powers of 2"
            }
        );
    }

    #[test]
    fn test_mmio_restore_rejects_queue_size_above_max() {
        let mut state = rng().state();
        state.queues[0].size = 1024;

        let error = VirtioMmio::try_from(state).expect_err("too large");

        assert_eq!(
            error,
            StateError::OutOfRange {
                device: "virtio-mmio",
                field: "queues[0].size".into(),
                value: 1024,
                max: 512
            }
        );
    }

    #[test]
    fn test_mmio_restore_rejects_wrong_number_of_queues() {
        let mut state = rng().state();
        state.queues.push(QueueState::new(8));

        let error = VirtioMmio::try_from(state).expect_err("two queues");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-mmio",
                field: "queues length".into(),
                value: 2,
                reason: "the device has another number of queues"
            }
        );
    }

    #[test]
    fn test_mmio_restore_rejects_reserved_status_bits() {
        let mut state = rng().state();
        state.status = 0x30;

        let error = VirtioMmio::try_from(state).expect_err("reserved bits");

        assert_eq!(
            error,
            StateError::ReservedBits {
                device: "virtio-mmio",
                field: "status".into(),
                value: 0x30,
                reserved: 0x30
            }
        );
    }

    #[test]
    fn test_mmio_restore_rejects_features_ok_without_version_1() {
        let mut state = rng().state();
        state.status = STATUS_FEATURES_OK;

        let error = VirtioMmio::try_from(state).expect_err("no VERSION_1");

        assert_eq!(
            error,
            StateError::Inconsistent {
                device: "virtio-mmio",
                field: "driver_features".into(),
                value: 0,
                reason: "FEATURES_OK is set without VIRTIO_F_VERSION_1"
            }
        );
    }
}
