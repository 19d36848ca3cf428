//! virtio-net (virtio 1.2 §5.1): a receive queue (0) and a transmit queue (1).
//!
//! Offered: `VIRTIO_NET_F_MAC` and `VIRTIO_NET_F_STATUS` (link always up). No checksum
//! or segmentation offload and no `VIRTIO_NET_F_MRG_RXBUF`, so every packet is one
//! plain frame behind a 12-byte `virtio_net_hdr` (the `VIRTIO_F_VERSION_1` layout, with
//! `num_buffers`), and each receive chain must hold a whole frame with its header.
//!
//! Transmit: the header is stripped, the frame copied out of guest RAM into a
//! [`BackendRequest::NetTx`], and the buffer returned at once. Receive: a frame from
//! [`BackendCompletion::NetRx`](super::BackendCompletion::NetRx) goes into the next
//! available receive chain behind a zeroed header with `num_buffers` = 1; without one it
//! waits in a FIFO of [`NET_RX_FIFO_FRAMES`] frames, delivered when the guest posts
//! buffers (a notification of the receive queue). Frames beyond that bound, frames
//! larger than a receive chain, and frames larger than [`NET_MAX_FRAME`] are dropped
//! and counted.

use std::collections::VecDeque;

use super::mmio::Transport;
use super::queue::{read_segments, write_segments};
use super::{BackendRequest, GuestMemory};
use crate::state::{check_max, StateError};

/// Feature: the configuration space holds the MAC address.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Feature: the configuration space holds the link status.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
/// Configuration `status`: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;
/// Size of `struct virtio_net_hdr` with `VIRTIO_F_VERSION_1`.
pub const VIRTIO_NET_HDR_LEN: usize = 12;
/// Frames the device keeps while the guest has no receive buffer.
pub const NET_RX_FIFO_FRAMES: usize = 256;
/// The largest frame carried either way.
pub const NET_MAX_FRAME: usize = 65535;

const RX: usize = 0;
const TX: usize = 1;
const DEVICE: &str = "virtio-net";

/// A virtio network card model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net {
    mac: [u8; 6],
    rx_fifo: VecDeque<Vec<u8>>,
    rx_dropped: u64,
}

/// The plain-data state of a [`Net`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetState {
    /// The MAC address.
    pub mac: [u8; 6],
    /// Received frames waiting for a receive buffer, oldest first.
    pub rx_fifo: Vec<Vec<u8>>,
    /// Received frames dropped so far.
    pub rx_dropped: u64,
}

impl Net {
    /// A network card with MAC address `mac`.
    pub fn new(mac: [u8; 6]) -> Net {
        Net {
            mac,
            rx_fifo: VecDeque::new(),
            rx_dropped: 0,
        }
    }

    /// Received frames dropped so far (no room in the FIFO, or in a receive chain).
    pub fn rx_dropped(&self) -> u64 {
        self.rx_dropped
    }

    /// Received frames waiting for a receive buffer.
    pub fn rx_pending(&self) -> usize {
        self.rx_fifo.len()
    }

    /// The model's complete state.
    pub fn state(&self) -> NetState {
        NetState {
            mac: self.mac,
            rx_fifo: self.rx_fifo.iter().cloned().collect(),
            rx_dropped: self.rx_dropped,
        }
    }

    pub(crate) fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    /// `struct virtio_net_config` up to `status`.
    pub(crate) fn config(&self) -> Vec<u8> {
        let mut config = self.mac.to_vec();
        config.extend_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        config
    }

    pub(crate) fn reset(&mut self) {
        self.rx_fifo.clear();
    }

    pub(crate) fn process_queue(
        &mut self,
        t: &mut Transport,
        q: usize,
        mem: &mut dyn GuestMemory,
        out: &mut Vec<BackendRequest>,
    ) {
        match q {
            RX => self.drain(t, mem),
            TX => transmit(t, mem, out),
            _ => {}
        }
    }

    /// Delivers `frame` now, or keeps it for when the guest posts receive buffers.
    pub(crate) fn receive(&mut self, t: &mut Transport, mem: &mut dyn GuestMemory, frame: Vec<u8>) {
        if frame.len() > NET_MAX_FRAME {
            self.rx_dropped += 1;
            return;
        }
        self.drain(t, mem);
        if self.rx_fifo.is_empty() && self.deliver(t, mem, &frame) {
            return;
        }
        if self.rx_fifo.len() < NET_RX_FIFO_FRAMES {
            self.rx_fifo.push_back(frame);
        } else {
            self.rx_dropped += 1;
        }
    }

    /// Delivers waiting frames, oldest first, while there are receive buffers.
    fn drain(&mut self, t: &mut Transport, mem: &mut dyn GuestMemory) {
        while let Some(frame) = self.rx_fifo.pop_front() {
            if !self.deliver(t, mem, &frame) {
                self.rx_fifo.push_front(frame);
                return;
            }
        }
    }

    /// Puts `frame` in the next usable receive chain; false when there is none.
    fn deliver(&mut self, t: &mut Transport, mem: &mut dyn GuestMemory, frame: &[u8]) -> bool {
        while let Some(next) = t.pop(RX, mem) {
            let chain = match next {
                Ok(chain) if chain.readable.is_empty() => chain,
                Ok(chain) => {
                    t.push_used(RX, mem, chain.head, 0);
                    continue;
                }
                Err((head, _)) => {
                    t.push_used(RX, mem, head, 0);
                    continue;
                }
            };
            let len = VIRTIO_NET_HDR_LEN + frame.len();
            if chain.writable_len() < len as u64 {
                self.rx_dropped += 1;
                t.push_used(RX, mem, chain.head, 0);
                return true;
            }
            let mut header = [0u8; VIRTIO_NET_HDR_LEN];
            header[10..12].copy_from_slice(&1u16.to_le_bytes());
            // The chain was checked to be in RAM when it was taken.
            let _ = write_segments(mem, &chain.writable, 0, &header);
            let _ = write_segments(mem, &chain.writable, VIRTIO_NET_HDR_LEN as u64, frame);
            t.push_used(RX, mem, chain.head, u32::try_from(len).unwrap_or(u32::MAX));
            return true;
        }
        false
    }
}

/// Sends every available transmit chain and returns it at once.
fn transmit(t: &mut Transport, mem: &mut dyn GuestMemory, out: &mut Vec<BackendRequest>) {
    while let Some(next) = t.pop(TX, mem) {
        let chain = match next {
            Ok(chain) => chain,
            Err((head, _)) => {
                t.push_used(TX, mem, head, 0);
                continue;
            }
        };
        let len = chain.readable_len();
        let header = VIRTIO_NET_HDR_LEN as u64;
        if chain.writable.is_empty() && len >= header && len - header <= NET_MAX_FRAME as u64 {
            let mut frame = vec![0u8; (len - header) as usize];
            if read_segments(mem, &chain.readable, header, &mut frame).is_ok() {
                out.push(BackendRequest::NetTx { frame });
            }
        }
        t.push_used(TX, mem, chain.head, 0);
    }
}

impl TryFrom<NetState> for Net {
    type Error = StateError;

    /// Checks that the receive FIFO and its frames fit their bounds.
    fn try_from(state: NetState) -> Result<Net, StateError> {
        check_max(
            DEVICE,
            || "rx_fifo length".into(),
            state.rx_fifo.len() as u64,
            NET_RX_FIFO_FRAMES as u64,
        )?;
        for (i, frame) in state.rx_fifo.iter().enumerate() {
            check_max(
                DEVICE,
                || format!("rx_fifo[{i}] length"),
                frame.len() as u64,
                NET_MAX_FRAME as u64,
            )?;
        }
        Ok(Net {
            mac: state.mac,
            rx_fifo: state.rx_fifo.into(),
            rx_dropped: state.rx_dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::mmio::*;
    use crate::virtio::testing::*;
    use crate::virtio::{BackendCompletion, VirtioDevice, VirtioMmio};
    use crate::MmioDevice;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const RX_BUF: u64 = DATA;
    const TX_BUF: u64 = DATA + 0x4_0000;

    fn card() -> (VirtioMmio, TestRam, TestQueue, TestQueue) {
        let mut dev = VirtioMmio::new(VirtioDevice::Net(Net::new(MAC)));
        let rx = TestQueue::new(0, 16);
        let tx = TestQueue::new(1, 16);
        let features = offered(&mut dev);
        activate(&mut dev, features, &[rx.clone(), tx.clone()]);
        (dev, TestRam::new(), rx, tx)
    }

    fn post_rx(ram: &mut TestRam, rx: &mut TestQueue, slot: u64, len: u32) {
        rx.add(ram, &[w(RX_BUF + slot * 0x1000, len)]);
    }

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    #[test]
    fn test_net_config_space_holds_mac_and_link_up() {
        let (mut dev, _, _, _) = card();

        let mac: Vec<u8> = (0..6).map(|i| dev.read(CONFIG + i, 1) as u8).collect();
        let status = dev.read(CONFIG + 6, 2);

        assert_eq!(mac, MAC.to_vec());
        assert_eq!(status, 1);
    }

    #[test]
    fn test_net_transmit_strips_header_and_returns_buffer_at_once() {
        let (mut dev, mut ram, _, mut tx) = card();
        ram.put(TX_BUF, &[0; 12]);
        ram.put(TX_BUF + 12, &frame(60, 0x77));
        tx.add(&mut ram, &[r(TX_BUF, 12), r(TX_BUF + 12, 60)]);
        notify(&mut dev, 1);
        let mut out = Vec::new();

        dev.process(&mut ram, &mut out);

        assert_eq!(
            out,
            vec![BackendRequest::NetTx {
                frame: frame(60, 0x77)
            }]
        );
        assert_eq!(tx.used(&ram), vec![(0, 0)]);
        assert!(dev.irq());
    }

    #[test]
    fn test_net_transmit_chain_shorter_than_header_is_dropped() {
        let (mut dev, mut ram, _, mut tx) = card();
        tx.add(&mut ram, &[r(TX_BUF, 8)]);
        notify(&mut dev, 1);
        let mut out = Vec::new();

        dev.process(&mut ram, &mut out);

        assert_eq!(out, vec![]);
        assert_eq!(tx.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_net_transmit_chain_with_writable_buffer_is_dropped() {
        let (mut dev, mut ram, _, mut tx) = card();
        tx.add(&mut ram, &[r(TX_BUF, 12), w(TX_BUF + 12, 60)]);
        notify(&mut dev, 1);
        let mut out = Vec::new();

        dev.process(&mut ram, &mut out);

        assert_eq!(out, vec![]);
        assert_eq!(tx.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_net_received_frame_fills_posted_buffer_behind_header() {
        let (mut dev, mut ram, mut rx, _) = card();
        post_rx(&mut ram, &mut rx, 0, 1526);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());

        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(64, 0x33),
            },
        );

        let mut expected = vec![0u8; 12];
        expected[10] = 1;
        expected.extend(frame(64, 0x33));
        assert_eq!(ram.bytes(RX_BUF, 76), expected);
        assert_eq!(rx.used(&ram), vec![(0, 76)]);
        assert!(dev.irq());
    }

    #[test]
    fn test_net_frames_without_buffers_wait_and_arrive_when_buffers_are_posted() {
        let (mut dev, mut ram, mut rx, _) = card();
        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(60, 1),
            },
        );
        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(61, 2),
            },
        );
        let waited = rx.used(&ram);

        post_rx(&mut ram, &mut rx, 0, 1526);
        post_rx(&mut ram, &mut rx, 1, 1526);
        notify(&mut dev, 0);
        let notified = dev.notified();
        let mut out = Vec::new();
        dev.process(&mut ram, &mut out);

        assert_eq!(waited, vec![]);
        assert!(notified);
        assert_eq!(out, vec![]);
        assert_eq!(rx.used(&ram), vec![(0, 72), (1, 73)]);
        assert_eq!(ram.bytes(RX_BUF + 12, 60), frame(60, 1));
        assert_eq!(ram.bytes(RX_BUF + 0x1000 + 12, 61), frame(61, 2));
    }

    #[test]
    fn test_net_waiting_frames_keep_their_order_ahead_of_new_ones() {
        let (mut dev, mut ram, mut rx, _) = card();
        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(60, 1),
            },
        );
        post_rx(&mut ram, &mut rx, 0, 1526);
        post_rx(&mut ram, &mut rx, 1, 1526);

        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(60, 2),
            },
        );

        assert_eq!(ram.bytes(RX_BUF + 12, 1), vec![1]);
        assert_eq!(ram.bytes(RX_BUF + 0x1000 + 12, 1), vec![2]);
    }

    #[test]
    fn test_net_frames_beyond_the_fifo_bound_are_dropped_and_counted() {
        let (mut dev, mut ram, _, _) = card();

        for _ in 0..NET_RX_FIFO_FRAMES + 3 {
            dev.complete(
                &mut ram,
                BackendCompletion::NetRx {
                    frame: frame(60, 9),
                },
            );
        }

        let VirtioDevice::Net(net) = dev.device() else {
            panic!("a network card");
        };
        assert_eq!(net.rx_pending(), NET_RX_FIFO_FRAMES);
        assert_eq!(net.rx_dropped(), 3);
    }

    #[test]
    fn test_net_frame_larger_than_receive_chain_is_dropped_and_buffer_returned_empty() {
        let (mut dev, mut ram, mut rx, _) = card();
        post_rx(&mut ram, &mut rx, 0, 64);

        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(100, 5),
            },
        );

        assert_eq!(rx.used(&ram), vec![(0, 0)]);
        let VirtioDevice::Net(net) = dev.device() else {
            panic!("a network card");
        };
        assert_eq!(net.rx_dropped(), 1);
    }

    #[test]
    fn test_net_readable_receive_chain_is_returned_empty_and_next_one_used() {
        let (mut dev, mut ram, mut rx, _) = card();
        rx.add(&mut ram, &[r(RX_BUF, 1526)]);
        post_rx(&mut ram, &mut rx, 1, 1526);

        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(60, 5),
            },
        );

        assert_eq!(rx.used(&ram), vec![(0, 0), (1, 72)]);
    }

    #[test]
    fn test_net_reset_forgets_waiting_frames() {
        let (mut dev, mut ram, _, _) = card();
        dev.complete(
            &mut ram,
            BackendCompletion::NetRx {
                frame: frame(60, 1),
            },
        );

        dev.write(STATUS, 4, 0);

        let VirtioDevice::Net(net) = dev.device() else {
            panic!("a network card");
        };
        assert_eq!(net.rx_pending(), 0);
    }

    #[test]
    fn test_net_restore_rejects_overfull_rx_fifo() {
        let mut state = VirtioMmio::new(VirtioDevice::Net(Net::new(MAC))).state();
        let VirtioDeviceState::Net(net) = &mut state.device else {
            panic!("a network card");
        };
        net.rx_fifo = vec![vec![0; 60]; NET_RX_FIFO_FRAMES + 1];

        let error = VirtioMmio::try_from(state).expect_err("too many frames");

        assert_eq!(
            error,
            StateError::OutOfRange {
                device: "virtio-net",
                field: "rx_fifo length".into(),
                value: 257,
                max: 256
            }
        );
    }

    persist_conformance_tests! {
        device: VirtioMmio,
        new: VirtioMmio::new(VirtioDevice::Net(Net::new(MAC))),
        drive: |dev: &mut VirtioMmio| {
            let mut ram = TestRam::new();
            let mut rx = TestQueue::new(0, 16);
            let tx = TestQueue::new(1, 16);
            let features = offered(dev);
            activate(dev, features, &[rx.clone(), tx]);
            post_rx(&mut ram, &mut rx, 0, 1526);
            for fill in 1..=3 {
                dev.complete(&mut ram, BackendCompletion::NetRx { frame: frame(60, fill) });
            }
        },
        probe: |dev: &mut VirtioMmio| {
            let mut ram = TestRam::new();
            let mut rx = TestQueue::new(0, 16);
            post_rx(&mut ram, &mut rx, 0, 1526);
            post_rx(&mut ram, &mut rx, 1, 1526);
            // The device took one chain in `drive`: the ring resumes at slot 1.
            rx.set_avail_idx(&mut ram, 2);
            notify(dev, 0);
            let mut observed = vec![u64::from(dev.notified())];
            dev.process(&mut ram, &mut Vec::new());
            observed.push(u64::from(dev.irq()));
            observed.extend(ram.bytes(RX_BUF + 0x1000, 80).iter().map(|&b| u64::from(b)));
            observed
        },
    }
}
