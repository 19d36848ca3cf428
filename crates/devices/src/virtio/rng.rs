//! virtio-rng (virtio 1.2 §5.4): one request queue; each available chain of writable
//! buffers becomes a [`BackendRequest::Entropy`] for its length (at most
//! [`RNG_MAX_REQUEST`]), and the completion fills it.

use std::collections::BTreeMap;

use super::mmio::Transport;
use super::queue::{segments_len, write_segments, Segment};
use super::{BackendRequest, GuestMemory};
use crate::state::{check_max, StateError};

/// The most bytes one entropy request asks for.
pub const RNG_MAX_REQUEST: u32 = 64 * 1024;

const DEVICE: &str = "virtio-rng";

/// An entropy request handed to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntropyRequestState {
    /// The backend request id.
    pub id: u64,
    /// The chain's head in the request queue.
    pub head: u16,
    /// Bytes asked for.
    pub len: u32,
    /// The chain's buffers, to fill.
    pub writable: Vec<Segment>,
}

/// A virtio entropy device model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rng {
    in_flight: BTreeMap<u64, EntropyRequestState>,
}

/// The plain-data state of an [`Rng`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RngState {
    /// Requests handed to the backend and not completed, in id order.
    pub in_flight: Vec<EntropyRequestState>,
}

impl Rng {
    /// An entropy device with nothing in flight.
    pub fn new() -> Rng {
        Rng::default()
    }

    /// The model's complete state.
    pub fn state(&self) -> RngState {
        RngState {
            in_flight: self.in_flight.values().cloned().collect(),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.in_flight.clear();
    }

    pub(crate) fn ids(&self) -> Vec<u64> {
        self.in_flight.keys().copied().collect()
    }

    pub(crate) fn outstanding_heads(&self) -> Vec<u16> {
        self.in_flight.values().map(|r| r.head).collect()
    }

    pub(crate) fn in_flight_requests(&self) -> Vec<BackendRequest> {
        self.in_flight
            .values()
            .map(|r| BackendRequest::Entropy {
                id: r.id,
                len: r.len,
            })
            .collect()
    }

    pub(crate) fn process_queue(
        &mut self,
        t: &mut Transport,
        mem: &mut dyn GuestMemory,
        out: &mut Vec<BackendRequest>,
    ) {
        while let Some(next) = t.pop(0, mem) {
            let chain = match next {
                Ok(chain) if chain.readable.is_empty() && chain.writable_len() > 0 => chain,
                Ok(chain) => {
                    t.push_used(0, mem, chain.head, 0);
                    continue;
                }
                Err((head, _)) => {
                    t.push_used(0, mem, head, 0);
                    continue;
                }
            };
            let len = u32::try_from(chain.writable_len())
                .unwrap_or(u32::MAX)
                .min(RNG_MAX_REQUEST);
            let id = t.alloc_id();
            out.push(BackendRequest::Entropy { id, len });
            self.in_flight.insert(
                id,
                EntropyRequestState {
                    id,
                    head: chain.head,
                    len,
                    writable: chain.writable,
                },
            );
        }
    }

    pub(crate) fn complete(
        &mut self,
        t: &mut Transport,
        mem: &mut dyn GuestMemory,
        id: u64,
        data: &[u8],
    ) {
        let Some(request) = self.in_flight.remove(&id) else {
            return;
        };
        if t.broken() {
            // The driver must reset the device: its buffers are left alone.
            return;
        }
        let n = data.len().min(request.len as usize);
        // The chain was checked to be in RAM when it was taken.
        let written = write_segments(mem, &request.writable, 0, &data[..n]).unwrap_or(0);
        t.push_used(0, mem, request.head, u32::try_from(written).unwrap_or(0));
    }
}

impl TryFrom<RngState> for Rng {
    type Error = StateError;

    /// Checks that ids are unique and that every request's length is positive, within
    /// [`RNG_MAX_REQUEST`] and within its buffers.
    fn try_from(state: RngState) -> Result<Rng, StateError> {
        let mut rng = Rng::new();
        for request in state.in_flight {
            check_max(
                DEVICE,
                || "request len".into(),
                request.len.into(),
                u64::from(RNG_MAX_REQUEST).min(segments_len(&request.writable)),
            )?;
            let id = request.id;
            if request.len == 0 || rng.in_flight.insert(id, request).is_some() {
                return Err(StateError::Inconsistent {
                    device: DEVICE,
                    field: "in_flight id".into(),
                    value: id,
                    reason: "it is used twice or asks for nothing",
                });
            }
        }
        Ok(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::mmio::*;
    use crate::virtio::testing::*;
    use crate::virtio::{BackendCompletion, VirtioDevice, VirtioMmio};
    use crate::MmioDevice;

    fn rng() -> (VirtioMmio, TestRam, TestQueue) {
        let mut dev = VirtioMmio::new(VirtioDevice::Rng(Rng::new()));
        let q = TestQueue::new(0, 8);
        let features = offered(&mut dev);
        activate(&mut dev, features, std::slice::from_ref(&q));
        (dev, TestRam::new(), q)
    }

    #[test]
    fn test_rng_buffer_becomes_entropy_request_and_completion_fills_it() {
        let (mut dev, mut ram, mut q) = rng();
        q.add(&mut ram, &[w(DATA, 16), w(DATA + 0x100, 16)]);
        notify(&mut dev, 0);
        let mut out = Vec::new();
        dev.process(&mut ram, &mut out);

        dev.complete(
            &mut ram,
            BackendCompletion::Entropy {
                id: 0,
                data: (0..32).collect(),
            },
        );

        assert_eq!(out, vec![BackendRequest::Entropy { id: 0, len: 32 }]);
        assert_eq!(ram.bytes(DATA, 16), (0..16).collect::<Vec<u8>>());
        assert_eq!(ram.bytes(DATA + 0x100, 16), (16..32).collect::<Vec<u8>>());
        assert_eq!(q.used(&ram), vec![(0, 32)]);
        assert!(dev.irq());
    }

    #[test]
    fn test_rng_short_completion_reports_the_bytes_written() {
        let (mut dev, mut ram, mut q) = rng();
        q.add(&mut ram, &[w(DATA, 64)]);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());

        dev.complete(
            &mut ram,
            BackendCompletion::Entropy {
                id: 0,
                data: vec![1; 10],
            },
        );

        assert_eq!(q.used(&ram), vec![(0, 10)]);
    }

    #[test]
    fn test_rng_readable_buffer_is_returned_with_length_zero() {
        let (mut dev, mut ram, mut q) = rng();
        q.add(&mut ram, &[r(DATA, 64)]);
        notify(&mut dev, 0);
        let mut out = Vec::new();

        dev.process(&mut ram, &mut out);

        assert_eq!(out, vec![]);
        assert_eq!(q.used(&ram), vec![(0, 0)]);
    }

    #[test]
    fn test_rng_completion_of_unknown_id_is_ignored() {
        let (mut dev, mut ram, q) = rng();

        dev.complete(
            &mut ram,
            BackendCompletion::Entropy {
                id: 7,
                data: vec![1; 8],
            },
        );

        assert_eq!(q.used(&ram), vec![]);
        assert!(!dev.irq());
    }

    #[test]
    fn test_rng_completion_of_other_kind_is_ignored() {
        let (mut dev, mut ram, mut q) = rng();
        q.add(&mut ram, &[w(DATA, 64)]);
        notify(&mut dev, 0);
        dev.process(&mut ram, &mut Vec::new());

        dev.complete(
            &mut ram,
            BackendCompletion::Block {
                id: 0,
                status: 0,
                data: vec![1; 64],
            },
        );

        assert_eq!(q.used(&ram), vec![]);
    }

    persist_conformance_tests! {
        device: VirtioMmio,
        new: VirtioMmio::new(VirtioDevice::Rng(Rng::new())),
        drive: |dev: &mut VirtioMmio| {
            let mut ram = TestRam::new();
            let mut q = TestQueue::new(0, 8);
            let features = offered(dev);
            activate(dev, features, std::slice::from_ref(&q));
            q.add(&mut ram, &[w(DATA, 16)]);
            q.add(&mut ram, &[w(DATA + 0x100, 32)]);
            notify(dev, 0);
            dev.process(&mut ram, &mut Vec::new());
        },
        probe: |dev: &mut VirtioMmio| {
            let mut ram = TestRam::new();
            let q = TestQueue::new(0, 8);
            dev.complete(&mut ram, BackendCompletion::Entropy { id: 1, data: vec![0x5c; 32] });
            let mut observed = vec![u64::from(dev.irq()), dev.read(INTERRUPT_STATUS, 4)];
            observed.extend(q.used(&ram).iter().map(|&(id, len)| (u64::from(id) << 32) | u64::from(len)));
            observed.extend(dev.in_flight_requests().iter().map(|r| match r {
                BackendRequest::Entropy { id, len } => (id << 32) | u64::from(*len),
                _ => u64::MAX,
            }));
            observed
        },
    }
}
