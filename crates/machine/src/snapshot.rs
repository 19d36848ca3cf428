//! Whole-machine snapshots: everything a [`Machine`] is, as bytes
//! ([`Machine::snapshot`]), and a validated restore ([`Machine::from_snapshot`]),
//! the ground for cloning a running machine onto a new host.
//!
//! A snapshot holds the hart, the non-zero pages of RAM, every device of the board
//! (the reset ROM included), the machine's time, and a description of the
//! configuration it belongs to. It does not hold the firmware, kernel and initrd
//! images: the restoring side gives them in its [`MachineConfig`] (a reboot loads
//! them again), and the description must match that configuration: RAM size, virtio
//! devices, the images' hashes and the command line.
//!
//! The bytes are untrusted until restored. Every length is checked against the input
//! left before anything is allocated from it, the configuration is compared before
//! RAM is allocated, the hart and every device go through their validating
//! `restore`/`TryFrom`, and any input gives a [`SnapshotError`], never a panic. A
//! machine state has exactly one encoding: a restore of anything but the snapshot of
//! the restored machine is refused, so restoring then snapshotting gives the input
//! back byte for byte.
//!
//! # Layout
//!
//! All integers are little-endian. `bool` is a `u8` 0 or 1; `bytes` is a `u64`
//! length then that many bytes; a count is a `u64`; an option or an enum is a `u8`
//! tag then its fields.
//!
//! ```text
//! +----------+---------+------------+----------------------------+----------+
//! | magic    | version | length     | sections                   | crc32c   |
//! | 8 bytes  | u16     | u64        | in the order of the table  | u32      |
//! | FTVMSNAP | = 1     | whole file |                            | magic..sections
//! +----------+---------+------------+----------------------------+----------+
//!
//! section
//! +---------+---------+------------------------------------+
//! | tag     | len     | contents, used exactly             |
//! | 4 bytes | u64     | len bytes                          |
//! +---------+---------+------------------------------------+
//! ```
//!
//! | tag | contents |
//! |---|---|
//! | `CONF` | `memory_size: u64`; `firmware: u64` ([`hash_bytes`] of the image); kernel, initrd: tag 0 none \| 1, `hash: u64`; `cmdline: bytes`; count, then per virtio slot: tag 1 block, `capacity_sectors: u64`, `read_only: bool`, `serial: bytes` \| 2 net, `mac: [u8; 6]` \| 3 rng |
//! | `HART` | `pc: u64`, `x[0..32]: u64`, `f[0..32]: u64`, `fflags: u8`, `frm: u8`, `privilege: u8` (at offset 522 of the contents), `icount: u64`, `reservation`: tag 0 \| 1, `addr: u64`; `wfi: bool`; then the [`CsrFile`] as `u64`s in its order: `mstatus`, `medeleg`, `mideleg`, `mie`, `mip`, `mtvec`, `mcounteren`, `mscratch`, `mepc`, `mcause`, `mtval`, `menvcfg`, `stvec`, `scounteren`, `sscratch`, `sepc`, `scause`, `stval`, `satp`, `stimecmp`, `time`, `pmpcfg[0..2]`, `pmpaddr[0..16]`, `mcycle_offset`, `minstret_offset` |
//! | `TIME` | `mtime: u64`, `wall_clock_base_ns: u64` |
//! | `ROM ` | `rom: bytes`, at most [`ROM_SIZE`] |
//! | `CLNT` | `msip: bool`, `mtimecmp: u64`, `mtime: u64` |
//! | `PLIC` | `u32`s: `priority[0..96]`, `pending[0..3]`, `claimed[0..3]`, `level[0..3]`, `enable[0][0..3]`, `enable[1][0..3]`, `threshold[0..2]` |
//! | `UART` | `rx_fifo: bytes`, `output: bytes`, `ier`, `fcr`, `lcr`, `mcr`, `lsr_errors`, `msr_deltas`, `scr`, `dll`, `dlm`: `u8`; `thre_pending: bool` |
//! | `TEST` | request: tag 0 none \| 1 power off, `status: u32` \| 2 reboot |
//! | `RTC ` | `now_ns: u64`, `offset_ns: u64`, `time_high: u32`, `alarm_ns: u64`, `alarm_armed`, `irq_pending`, `irq_enabled`: `bool` |
//! | `VIRT` | count, then per slot a transport (below) |
//! | `RAM ` | count, then per page, in strictly increasing order: `index: u64` (RAM offset / 4096), the page's bytes (4096, or what is left of RAM for a last partial page); an all-zero page is never stored |
//!
//! A virtio transport: the device (tag 1 block: `capacity: u64`, `read_only: bool`,
//! `serial: bytes`, count + requests in flight, count + requests held \| 2 net: `mac:
//! [u8; 6]`, count + `bytes` per frame waiting, `rx_dropped: u64` \| 3 rng: count +
//! entropy requests in flight); count + queues (`size: u16`, `ready: bool`, `desc`,
//! `driver`, `device`: `u64`, `next_avail`, `next_used`: `u16`, `notified: bool`);
//! `device_features_sel: u32`, `driver_features: u64`, `driver_features_sel: u32`,
//! `queue_sel: u32`, `status: u8`, `interrupt_status: u32`, `next_id: u64`.
//!
//! A block request: `id: u64`, `head: u16`, op (tag 0 read, `sector: u64`, `len: u32`
//! \| 1 write, `sector: u64`, `data: bytes` \| 2 flush \| 3 discard, `sector: u64`,
//! `sectors: u64`), count + writable segments (`addr: u64`, `len: u32`). An entropy
//! request: `id: u64`, `head: u16`, `len: u32`, count + writable segments.
//!
//! # What is not in a snapshot
//!
//! Caches (decoded code, TLBs), the RAM digest's page hashes (rebuilt by the next
//! [`Machine::digest`]), the hart's U-mode instruction count (statistics), and the
//! host side: backend completions not yet applied stay with the host that had them.
//!
//! # Versions
//!
//! Version 1 is the first. A reader accepts only its own version
//! ([`SnapshotError::UnsupportedVersion`]).

use crate::digest::{hash_bytes, RamHasher};
use crate::layout::{DRAM_BASE, ROM_SIZE, VIRTIO_SLOTS};
use crate::{Board, ConfigError, Machine, MachineConfig, VirtioConfig};
use ftvm_cpu::{CsrFile, Hart, HartState, Memory};
use ftvm_devices::plic::{NUM_CONTEXTS, NUM_SOURCES, NUM_WORDS};
use ftvm_devices::virtio::{
    BlockRequestState, BlockState, EntropyRequestState, NetState, QueueState, RngState, Segment,
};
use ftvm_devices::{
    BlockOp, ClintState, GoldfishRtcState, Persist, PlicState, PowerRequest, SifiveTestState,
    Uart16550State, VirtioDeviceState, VirtioMmioState,
};

/// The first eight bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"FTVMSNAP";

/// The format version this build writes and reads (2: image hashes are
/// XXH3-64, as the log's since its version 3; 1: XXH64).
pub const VERSION: u16 = 2;

/// Bytes before the first section: magic, version, length.
pub const HEADER_LEN: usize = 8 + 2 + 8;

/// Bytes after the last section: the CRC-32C.
pub const TRAILER_LEN: usize = 4;

/// RAM is stored in pages of this many bytes.
pub const PAGE_SIZE: usize = 4096;

/// Why a snapshot cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The input does not start with [`MAGIC`].
    #[error("Not an ftvm snapshot: it starts with {found:02x?}, not \"FTVMSNAP\"")]
    BadMagic {
        /// The first bytes found (at most 8).
        found: Vec<u8>,
    },
    /// The snapshot was written in another format version.
    #[error(
        "Snapshot format version {found} is not supported: this build reads version {VERSION}"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// The input ends before something it must hold.
    #[error("Truncated snapshot: {what} needs {needed} bytes at offset {offset}, but {available} are left")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where, from the start of the snapshot.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes there were.
        available: u64,
    },
    /// The stored CRC-32C is not that of the bytes before it.
    #[error(
        "Snapshot checksum mismatch: stored CRC-32C {stored:#010x}, computed {computed:#010x}"
    )]
    Checksum {
        /// The checksum at the end of the snapshot.
        stored: u32,
        /// The checksum of the bytes before it.
        computed: u32,
    },
    /// The snapshot was taken of a machine configured otherwise.
    #[error("The snapshot belongs to another machine: its {what} is {snapshot}, the configuration's is {config}")]
    ConfigMismatch {
        /// What differs.
        what: String,
        /// The snapshot's value.
        snapshot: String,
        /// The configuration's value.
        config: String,
    },
    /// The configuration given to restore into is not one a machine can have.
    #[error("Cannot restore into this configuration: {0}")]
    Config(#[from] ConfigError),
    /// The hart's state is not one a hart can be in.
    #[error("Cannot restore the hart from the snapshot: {0}")]
    Hart(#[source] ftvm_cpu::StateError),
    /// A device's state is not one the device can be in.
    #[error("Cannot restore the {device} from the snapshot: {source}")]
    Device {
        /// The device: `CLINT`, `PLIC`, `UART`, `sifive_test`, `goldfish RTC` or
        /// `virtio slot N`.
        device: String,
        /// What is wrong with its state.
        #[source]
        source: ftvm_devices::StateError,
    },
    /// A state restores, but to something else than what the snapshot holds: the
    /// bytes are not the one encoding of that state.
    #[error("The {what} state in the snapshot is not in its canonical form (it restores to a different state)")]
    NotCanonical {
        /// The hart or the device.
        what: String,
    },
    /// A section is not the one expected there.
    #[error("Expected section {expected:?} at offset {offset}, found {found:?}")]
    Section {
        /// The tag expected.
        expected: String,
        /// The tag found.
        found: String,
        /// Where.
        offset: u64,
    },
    /// Bytes left over where the format says something ends.
    #[error("{count} unexpected bytes at offset {offset} after {what}")]
    TrailingBytes {
        /// What should have ended there.
        what: String,
        /// Where the extra bytes start.
        offset: u64,
        /// How many there are.
        count: u64,
    },
    /// A length or count above what the format or the input allows.
    #[error("{what} at offset {offset} is {len}, above the limit of {max}")]
    TooLong {
        /// What was being read.
        what: String,
        /// Where.
        offset: u64,
        /// The length or count found.
        len: u64,
        /// The largest one possible there.
        max: u64,
    },
    /// A tag or a `bool` with a value the format does not define.
    #[error("{what} at offset {offset} is {value:#x}, which is not a valid value")]
    BadValue {
        /// What was being read.
        what: String,
        /// Where.
        offset: u64,
        /// The value found.
        value: u64,
    },
    /// A string that is not UTF-8.
    #[error("{what} at offset {offset} is not UTF-8")]
    NotUtf8 {
        /// What was being read.
        what: String,
        /// Where.
        offset: u64,
    },
    /// A RAM page beyond the end of RAM.
    #[error("RAM page {index} is outside guest RAM, which has {pages} pages")]
    PageOutOfRange {
        /// The page index found.
        index: u64,
        /// The number of pages of RAM.
        pages: u64,
    },
    /// A RAM page stored twice, or out of order.
    #[error("RAM page {index} follows page {previous}: pages must be stored once each, in increasing order")]
    PageOrder {
        /// The page index found.
        index: u64,
        /// The page stored before it.
        previous: u64,
    },
    /// RAM given to replace a machine's is not the RAM's size.
    #[error("the RAM given is {got} bytes, the machine's is {expected}")]
    RamSize {
        /// Bytes given.
        got: u64,
        /// The machine's RAM size.
        expected: u64,
    },
    /// A RAM page of zeros, which a snapshot never stores.
    #[error("RAM page {index} is stored but holds only zeros")]
    ZeroPage {
        /// The page index.
        index: u64,
    },
}

type Result<T> = std::result::Result<T, SnapshotError>;

/// A section: its tag and what it holds, for error messages.
#[derive(Clone, Copy)]
struct Section {
    tag: [u8; 4],
    name: &'static str,
}

const CONF: Section = Section {
    tag: *b"CONF",
    name: "configuration",
};
const HART: Section = Section {
    tag: *b"HART",
    name: "hart",
};
const TIME: Section = Section {
    tag: *b"TIME",
    name: "time",
};
const ROM: Section = Section {
    tag: *b"ROM ",
    name: "reset ROM",
};
const CLNT: Section = Section {
    tag: *b"CLNT",
    name: "CLINT",
};
const PLIC: Section = Section {
    tag: *b"PLIC",
    name: "PLIC",
};
const UART: Section = Section {
    tag: *b"UART",
    name: "UART",
};
const TEST: Section = Section {
    tag: *b"TEST",
    name: "sifive_test",
};
const RTC: Section = Section {
    tag: *b"RTC ",
    name: "goldfish RTC",
};
const VIRT: Section = Section {
    tag: *b"VIRT",
    name: "virtio",
};
const RAM: Section = Section {
    tag: *b"RAM ",
    name: "RAM",
};

/// Builds the bytes of a snapshot.
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn put_u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn put_u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn put_u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn put_u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    fn put_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    /// A count or length (`usize` always fits a `u64` here).
    fn put_len(&mut self, n: usize) {
        self.put_u64(n as u64);
    }

    /// A length-prefixed byte string.
    fn put_bytes(&mut self, b: &[u8]) {
        self.put_len(b.len());
        self.out.extend_from_slice(b);
    }

    /// Writes a section: its tag, its length, and what `contents` writes.
    fn section(&mut self, section: Section, contents: impl FnOnce(&mut Writer)) {
        self.out.extend_from_slice(&section.tag);
        let len_at = self.out.len();
        self.put_u64(0);
        contents(self);
        let len = (self.out.len() - len_at - 8) as u64;
        self.out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
    }
}

/// Reads a snapshot, naming what it reads and where when the input is wrong.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The offset of `bytes[0]` in the snapshot.
    base: usize,
    /// What is being read ("hart", "virtio slot 1"), for error messages.
    context: String,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize, context: impl Into<String>) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            base,
            context: context.into(),
        }
    }

    fn offset(&self) -> u64 {
        (self.base + self.pos) as u64
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn name(&self, field: &str) -> String {
        format!("{}: {field}", self.context)
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(SnapshotError::Truncated {
                what: self.name(field),
                offset: self.offset(),
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let taken = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u16(&mut self, field: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A `u8` tag of at most `max`.
    fn tag(&mut self, field: &str, max: u8) -> Result<u8> {
        let offset = self.offset();
        let tag = self.u8(field)?;
        if tag > max {
            return Err(SnapshotError::BadValue {
                what: self.name(field),
                offset,
                value: tag.into(),
            });
        }
        Ok(tag)
    }

    fn bool(&mut self, field: &str) -> Result<bool> {
        Ok(self.tag(field, 1)? == 1)
    }

    /// A count of elements that take at least `min_size` bytes each, at most `max`
    /// and no more than the input left can hold.
    fn count(&mut self, field: &str, min_size: usize, max: u64) -> Result<usize> {
        let offset = self.offset();
        let count = self.u64(field)?;
        let fit = (self.remaining() / min_size.max(1)) as u64;
        let limit = max.min(fit);
        if count > limit {
            return Err(SnapshotError::TooLong {
                what: self.name(field),
                offset,
                len: count,
                max: limit,
            });
        }
        // count <= remaining input, so it fits a usize.
        Ok(count as usize)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    fn bytes(&mut self, field: &str, max: u64) -> Result<&'a [u8]> {
        let len = self.count(field, 1, max)?;
        self.take(len, field)
    }

    fn string(&mut self, field: &str, max: u64) -> Result<String> {
        let offset = self.offset();
        let bytes = self.bytes(field, max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| SnapshotError::NotUtf8 {
            what: self.name(field),
            offset,
        })
    }

    /// Fails if anything is left after `what`.
    fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() > 0 {
            return Err(SnapshotError::TrailingBytes {
                what: what.into(),
                offset: self.offset(),
                count: self.remaining() as u64,
            });
        }
        Ok(())
    }

    /// Reads the section `section`, which must come next, with `contents`, which
    /// must use all of it.
    fn section<T>(
        &mut self,
        section: Section,
        contents: impl FnOnce(&mut Reader<'a>) -> Result<T>,
    ) -> Result<T> {
        let offset = self.offset();
        let what = format!("{} section header", section.name);
        let tag: [u8; 4] = self.array(&what)?;
        if tag != section.tag {
            return Err(SnapshotError::Section {
                expected: String::from_utf8_lossy(&section.tag).into_owned(),
                found: String::from_utf8_lossy(&tag).into_owned(),
                offset,
            });
        }
        let len_at = self.offset();
        let len = self.u64(&what)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= self.remaining())
            .ok_or_else(|| SnapshotError::Truncated {
                what: format!("the {} section", section.name),
                offset: len_at + 8,
                needed: len,
                available: self.remaining() as u64,
            })?;
        let base = self.base + self.pos;
        let bytes = self.take(len, &what)?;
        let mut inner = Reader::new(bytes, base, section.name);
        let value = contents(&mut inner)?;
        inner.finish(&format!("the {} section", section.name))?;
        Ok(value)
    }
}

/// What a snapshot records of the configuration: everything but the images
/// themselves, which are recorded by their hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConfigDescription {
    memory_size: u64,
    firmware: u64,
    kernel: Option<u64>,
    initrd: Option<u64>,
    cmdline: String,
    virtio: Vec<VirtioConfig>,
}

impl ConfigDescription {
    fn of(config: &MachineConfig) -> ConfigDescription {
        ConfigDescription {
            memory_size: config.memory_size,
            firmware: hash_bytes(&config.firmware),
            kernel: config.kernel.as_deref().map(hash_bytes),
            initrd: config.initrd.as_deref().map(hash_bytes),
            cmdline: config.cmdline.clone(),
            virtio: config.virtio.clone(),
        }
    }

    fn write(&self, w: &mut Writer) {
        w.put_u64(self.memory_size);
        w.put_u64(self.firmware);
        for image in [self.kernel, self.initrd] {
            put_option(w, image, Writer::put_u64);
        }
        w.put_bytes(self.cmdline.as_bytes());
        w.put_len(self.virtio.len());
        for device in &self.virtio {
            match device {
                VirtioConfig::Block {
                    capacity_sectors,
                    read_only,
                    serial,
                } => {
                    w.put_u8(1);
                    w.put_u64(*capacity_sectors);
                    w.put_bool(*read_only);
                    w.put_bytes(serial.as_bytes());
                }
                VirtioConfig::Net { mac } => {
                    w.put_u8(2);
                    w.out.extend_from_slice(mac);
                }
                VirtioConfig::Rng => w.put_u8(3),
            }
        }
    }

    fn read(r: &mut Reader) -> Result<ConfigDescription> {
        let memory_size = r.u64("memory size")?;
        let firmware = r.u64("firmware hash")?;
        let kernel = read_option(r, "kernel", |r| r.u64("kernel hash"))?;
        let initrd = read_option(r, "initrd", |r| r.u64("initrd hash"))?;
        let cmdline = r.string("command line", u64::MAX)?;
        let count = r.count("virtio device count", 1, VIRTIO_SLOTS)?;
        let mut virtio = Vec::new();
        for _ in 0..count {
            let offset = r.offset();
            virtio.push(match r.tag("virtio device kind", 3)? {
                1 => VirtioConfig::Block {
                    capacity_sectors: r.u64("disk capacity")?,
                    read_only: r.bool("disk read-only")?,
                    serial: r.string("disk serial", u64::MAX)?,
                },
                2 => VirtioConfig::Net {
                    mac: r.array("MAC address")?,
                },
                3 => VirtioConfig::Rng,
                kind => {
                    return Err(SnapshotError::BadValue {
                        what: r.name("virtio device kind"),
                        offset,
                        value: kind.into(),
                    })
                }
            });
        }
        Ok(ConfigDescription {
            memory_size,
            firmware,
            kernel,
            initrd,
            cmdline,
            virtio,
        })
    }

    /// The first difference between the snapshot's description (`self`) and the
    /// configuration's.
    fn compare(&self, config: &ConfigDescription) -> Result<()> {
        let mismatch = |what: &str, snapshot: String, config: String| {
            Err(SnapshotError::ConfigMismatch {
                what: what.into(),
                snapshot,
                config,
            })
        };
        let image = |hash: Option<u64>| match hash {
            Some(hash) => format!("the image of XXH3-64 {hash:#018x}"),
            None => "none".into(),
        };
        if self.memory_size != config.memory_size {
            return mismatch(
                "memory size",
                format!("{} bytes", self.memory_size),
                format!("{} bytes", config.memory_size),
            );
        }
        if self.firmware != config.firmware {
            return mismatch(
                "firmware",
                image(Some(self.firmware)),
                image(Some(config.firmware)),
            );
        }
        if self.kernel != config.kernel {
            return mismatch("kernel", image(self.kernel), image(config.kernel));
        }
        if self.initrd != config.initrd {
            return mismatch("initrd", image(self.initrd), image(config.initrd));
        }
        if self.cmdline != config.cmdline {
            return mismatch(
                "command line",
                format!("{:?}", self.cmdline),
                format!("{:?}", config.cmdline),
            );
        }
        if self.virtio.len() != config.virtio.len() {
            return mismatch(
                "number of virtio devices",
                self.virtio.len().to_string(),
                config.virtio.len().to_string(),
            );
        }
        for (slot, (ours, theirs)) in self.virtio.iter().zip(&config.virtio).enumerate() {
            if ours != theirs {
                return mismatch(
                    &format!("virtio slot {slot}"),
                    format!("{ours:?}"),
                    format!("{theirs:?}"),
                );
            }
        }
        Ok(())
    }
}

fn put_option<T: Copy>(w: &mut Writer, value: Option<T>, put: fn(&mut Writer, T)) {
    match value {
        None => w.put_u8(0),
        Some(v) => {
            w.put_u8(1);
            put(w, v);
        }
    }
}

fn read_option<'a, T>(
    r: &mut Reader<'a>,
    field: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T>,
) -> Result<Option<T>> {
    match r.bool(field)? {
        false => Ok(None),
        true => read(r).map(Some),
    }
}

/// Writes the snapshot of `machine`.
pub(crate) fn encode(machine: &Machine) -> Vec<u8> {
    encode_with(machine, true)
}

/// Writes the snapshot of `machine` with no RAM pages (RAM reads as zeros).
pub(crate) fn encode_without_ram(machine: &Machine) -> Vec<u8> {
    encode_with(machine, false)
}

fn encode_with(machine: &Machine, ram: bool) -> Vec<u8> {
    let mut w = Writer { out: Vec::new() };
    w.out.extend_from_slice(&MAGIC);
    w.put_u16(VERSION);
    w.put_u64(0); // length, patched below
    w.section(CONF, |w| ConfigDescription::of(&machine.config).write(w));
    w.section(HART, |w| write_hart(w, &machine.hart.state()));
    w.section(TIME, |w| {
        w.put_u64(machine.mtime);
        w.put_u64(machine.wall_clock_base_ns);
    });
    let board = &machine.board;
    w.section(ROM, |w| w.put_bytes(&board.rom));
    w.section(CLNT, |w| write_clint(w, &board.clint.state()));
    w.section(PLIC, |w| write_plic(w, &board.plic.state()));
    w.section(UART, |w| write_uart(w, &board.uart.state()));
    w.section(TEST, |w| write_test(w, &board.test.state()));
    w.section(RTC, |w| write_rtc(w, &board.rtc.state()));
    w.section(VIRT, |w| {
        w.put_len(board.virtio.len());
        for device in &board.virtio {
            write_virtio(w, &device.state());
        }
    });
    if ram {
        w.section(RAM, |w| write_ram(w, machine.hart.memory().as_bytes()));
    } else {
        w.section(RAM, |w| w.put_u64(0));
    }
    let len = (w.out.len() + TRAILER_LEN) as u64;
    w.out[10..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
    let crc = ftvm_replay::crc32c(&w.out);
    w.put_u32(crc);
    w.out
}

/// Restores the machine `bytes` is a snapshot of, with the images of `config`.
pub(crate) fn decode(config: MachineConfig, bytes: &[u8]) -> Result<Machine> {
    crate::check_config(&config)?;
    let mut r = Reader::new(open(bytes)?, HEADER_LEN, "snapshot");
    let described = r.section(CONF, ConfigDescription::read)?;
    described.compare(&ConfigDescription::of(&config))?;
    let hart = r.section(HART, read_hart)?;
    let (mtime, wall_clock_base_ns) =
        r.section(TIME, |r| Ok((r.u64("mtime")?, r.u64("wall clock base")?)))?;
    let rom = r.section(ROM, |r| Ok(r.bytes("contents", ROM_SIZE)?.to_vec()))?;
    let clint = r.section(CLNT, read_clint)?;
    let plic = r.section(PLIC, read_plic)?;
    let uart = r.section(UART, read_uart)?;
    let test = r.section(TEST, read_test)?;
    let rtc = r.section(RTC, read_rtc)?;
    let virtio = r.section(VIRT, |r| {
        let count = r.count("device count", 1, VIRTIO_SLOTS)?;
        (0..count)
            .map(|slot| {
                r.context = format!("virtio slot {slot}");
                read_virtio(r)
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let pages = r.section(RAM, |r| read_ram(r, config.memory_size))?;
    r.finish("the last section")?;

    let board = Board {
        rom,
        clint: restore_device("CLINT", clint)?,
        plic: restore_device("PLIC", plic)?,
        uart: restore_device("UART", uart)?,
        test: restore_device("sifive_test", test)?,
        rtc: restore_device("goldfish RTC", rtc)?,
        virtio: virtio
            .into_iter()
            .enumerate()
            .map(|(slot, state)| {
                check_device_config(slot, &state.device, &config.virtio)?;
                restore_device(&format!("virtio slot {slot}"), state)
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let mut memory = Memory::new(DRAM_BASE, config.memory_size);
    for (index, page) in pages {
        let addr = DRAM_BASE + index * PAGE_SIZE as u64;
        memory
            .write_bytes(addr, page)
            .map_err(|_| SnapshotError::PageOutOfRange {
                index,
                pages: config.memory_size.div_ceil(PAGE_SIZE as u64),
            })?;
    }
    let mut restored = Hart::new(memory);
    restored
        .restore(hart.clone())
        .map_err(SnapshotError::Hart)?;
    if restored.state() != hart {
        return Err(SnapshotError::NotCanonical {
            what: "hart".into(),
        });
    }
    // The page hashes of the RAM digest are rebuilt in full by the next digest.
    restored.take_dirty_pages();
    Ok(Machine {
        hart: restored,
        board,
        config,
        mtime,
        wall_clock_base_ns,
        ram_hasher: RamHasher::default(),
    })
}

/// Checks the envelope of a snapshot (magic, version, length, checksum) and
/// returns its sections.
fn open(bytes: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(bytes, 0, "header");
    if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
        r.array::<8>("magic")?;
    }
    let magic: [u8; 8] = r.array("magic").map_err(|_| SnapshotError::BadMagic {
        found: bytes.to_vec(),
    })?;
    if magic != MAGIC {
        return Err(SnapshotError::BadMagic {
            found: magic.to_vec(),
        });
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion { found: version });
    }
    let len = r.u64("length")?;
    let min = (HEADER_LEN + TRAILER_LEN) as u64;
    if len < min {
        return Err(SnapshotError::BadValue {
            what: "header length".into(),
            offset: 10,
            value: len,
        });
    }
    let actual = bytes.len() as u64;
    if len > actual {
        return Err(SnapshotError::Truncated {
            what: format!("the snapshot ({len} bytes by its header)"),
            offset: 0,
            needed: len,
            available: actual,
        });
    }
    if len < actual {
        return Err(SnapshotError::TrailingBytes {
            what: format!("the snapshot ({len} bytes by its header)"),
            offset: len,
            count: actual - len,
        });
    }
    let (covered, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    let mut stored = [0u8; 4];
    stored.copy_from_slice(trailer);
    let stored = u32::from_le_bytes(stored);
    let computed = ftvm_replay::crc32c(covered);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    Ok(&covered[HEADER_LEN..])
}

/// Restores a device from `state` and checks that it saves back to `state`.
fn restore_device<D: Persist>(device: &str, state: D::State) -> Result<D> {
    let restored = D::restore(state.clone()).map_err(|source| SnapshotError::Device {
        device: device.into(),
        source,
    })?;
    if restored.state() != state {
        return Err(SnapshotError::NotCanonical {
            what: device.into(),
        });
    }
    Ok(restored)
}

/// Checks that the device state in `slot` is of the device the configuration has
/// there (the description was compared already; this is the state itself).
fn check_device_config(
    slot: usize,
    state: &VirtioDeviceState,
    configured: &[VirtioConfig],
) -> Result<()> {
    let found = match state {
        VirtioDeviceState::Block(s) => VirtioConfig::Block {
            capacity_sectors: s.capacity,
            read_only: s.read_only,
            serial: s.serial.clone(),
        },
        VirtioDeviceState::Net(s) => VirtioConfig::Net { mac: s.mac },
        VirtioDeviceState::Rng(_) => VirtioConfig::Rng,
    };
    match configured.get(slot) {
        Some(config) if *config == found => Ok(()),
        config => Err(SnapshotError::ConfigMismatch {
            what: format!("virtio slot {slot} device state"),
            snapshot: format!("{found:?}"),
            config: config.map_or_else(|| "no device".into(), |c| format!("{c:?}")),
        }),
    }
}

fn write_hart(w: &mut Writer, s: &HartState) {
    let HartState {
        pc,
        x,
        f,
        fflags,
        frm,
        privilege,
        icount,
        reservation,
        wfi,
        csr,
    } = s;
    w.put_u64(*pc);
    x.iter().for_each(|&v| w.put_u64(v));
    f.iter().for_each(|&v| w.put_u64(v));
    w.put_u8(*fflags);
    w.put_u8(*frm);
    w.put_u8(*privilege);
    w.put_u64(*icount);
    put_option(w, *reservation, Writer::put_u64);
    w.put_bool(*wfi);
    let CsrFile {
        mstatus,
        medeleg,
        mideleg,
        mie,
        mip,
        mtvec,
        mcounteren,
        mscratch,
        mepc,
        mcause,
        mtval,
        menvcfg,
        stvec,
        scounteren,
        sscratch,
        sepc,
        scause,
        stval,
        satp,
        stimecmp,
        time,
        pmpcfg,
        pmpaddr,
        mcycle_offset,
        minstret_offset,
    } = csr;
    for v in [
        mstatus, medeleg, mideleg, mie, mip, mtvec, mcounteren, mscratch, mepc, mcause, mtval,
        menvcfg, stvec, scounteren, sscratch, sepc, scause, stval, satp, stimecmp, time,
    ] {
        w.put_u64(*v);
    }
    pmpcfg.iter().chain(pmpaddr).for_each(|&v| w.put_u64(v));
    w.put_u64(*mcycle_offset);
    w.put_u64(*minstret_offset);
}

fn read_u64s<const N: usize>(r: &mut Reader, field: &str) -> Result<[u64; N]> {
    let mut out = [0u64; N];
    for v in &mut out {
        *v = r.u64(field)?;
    }
    Ok(out)
}

fn read_u32s<const N: usize>(r: &mut Reader, field: &str) -> Result<[u32; N]> {
    let mut out = [0u32; N];
    for v in &mut out {
        *v = r.u32(field)?;
    }
    Ok(out)
}

fn read_hart(r: &mut Reader) -> Result<HartState> {
    Ok(HartState {
        pc: r.u64("pc")?,
        x: read_u64s(r, "x")?,
        f: read_u64s(r, "f")?,
        fflags: r.u8("fflags")?,
        frm: r.u8("frm")?,
        privilege: r.u8("privilege")?,
        icount: r.u64("icount")?,
        reservation: read_option(r, "reservation", |r| r.u64("reservation address"))?,
        wfi: r.bool("wfi")?,
        csr: CsrFile {
            mstatus: r.u64("mstatus")?,
            medeleg: r.u64("medeleg")?,
            mideleg: r.u64("mideleg")?,
            mie: r.u64("mie")?,
            mip: r.u64("mip")?,
            mtvec: r.u64("mtvec")?,
            mcounteren: r.u64("mcounteren")?,
            mscratch: r.u64("mscratch")?,
            mepc: r.u64("mepc")?,
            mcause: r.u64("mcause")?,
            mtval: r.u64("mtval")?,
            menvcfg: r.u64("menvcfg")?,
            stvec: r.u64("stvec")?,
            scounteren: r.u64("scounteren")?,
            sscratch: r.u64("sscratch")?,
            sepc: r.u64("sepc")?,
            scause: r.u64("scause")?,
            stval: r.u64("stval")?,
            satp: r.u64("satp")?,
            stimecmp: r.u64("stimecmp")?,
            time: r.u64("time")?,
            pmpcfg: read_u64s(r, "pmpcfg")?,
            pmpaddr: read_u64s(r, "pmpaddr")?,
            mcycle_offset: r.u64("mcycle_offset")?,
            minstret_offset: r.u64("minstret_offset")?,
        },
    })
}

fn write_clint(w: &mut Writer, s: &ClintState) {
    let ClintState {
        msip,
        mtimecmp,
        mtime,
    } = s;
    w.put_bool(*msip);
    w.put_u64(*mtimecmp);
    w.put_u64(*mtime);
}

fn read_clint(r: &mut Reader) -> Result<ClintState> {
    Ok(ClintState {
        msip: r.bool("msip")?,
        mtimecmp: r.u64("mtimecmp")?,
        mtime: r.u64("mtime")?,
    })
}

fn write_plic(w: &mut Writer, s: &PlicState) {
    let PlicState {
        priority,
        pending,
        claimed,
        level,
        enable,
        threshold,
    } = s;
    priority
        .iter()
        .chain(pending)
        .chain(claimed)
        .chain(level)
        .chain(enable.iter().flatten())
        .chain(threshold)
        .for_each(|&v| w.put_u32(v));
}

fn read_plic(r: &mut Reader) -> Result<PlicState> {
    let priority: [u32; NUM_SOURCES] = read_u32s(r, "priority")?;
    let pending: [u32; NUM_WORDS] = read_u32s(r, "pending")?;
    let claimed: [u32; NUM_WORDS] = read_u32s(r, "claimed")?;
    let level: [u32; NUM_WORDS] = read_u32s(r, "level")?;
    let mut enable = [[0u32; NUM_WORDS]; NUM_CONTEXTS];
    for context in &mut enable {
        *context = read_u32s(r, "enable")?;
    }
    let threshold: [u32; NUM_CONTEXTS] = read_u32s(r, "threshold")?;
    Ok(PlicState {
        priority,
        pending,
        claimed,
        level,
        enable,
        threshold,
    })
}

fn write_uart(w: &mut Writer, s: &Uart16550State) {
    let Uart16550State {
        rx_fifo,
        output,
        ier,
        fcr,
        lcr,
        mcr,
        lsr_errors,
        msr_deltas,
        scr,
        dll,
        dlm,
        thre_pending,
    } = s;
    w.put_bytes(rx_fifo);
    w.put_bytes(output);
    for v in [ier, fcr, lcr, mcr, lsr_errors, msr_deltas, scr, dll, dlm] {
        w.put_u8(*v);
    }
    w.put_bool(*thre_pending);
}

fn read_uart(r: &mut Reader) -> Result<Uart16550State> {
    Ok(Uart16550State {
        rx_fifo: r.bytes("rx_fifo", u64::MAX)?.to_vec(),
        output: r.bytes("output", u64::MAX)?.to_vec(),
        ier: r.u8("ier")?,
        fcr: r.u8("fcr")?,
        lcr: r.u8("lcr")?,
        mcr: r.u8("mcr")?,
        lsr_errors: r.u8("lsr_errors")?,
        msr_deltas: r.u8("msr_deltas")?,
        scr: r.u8("scr")?,
        dll: r.u8("dll")?,
        dlm: r.u8("dlm")?,
        thre_pending: r.bool("thre_pending")?,
    })
}

fn write_test(w: &mut Writer, s: &SifiveTestState) {
    let SifiveTestState { request } = s;
    match request {
        None => w.put_u8(0),
        Some(PowerRequest::PowerOff { status }) => {
            w.put_u8(1);
            w.put_u32(*status);
        }
        Some(PowerRequest::Reboot) => w.put_u8(2),
    }
}

fn read_test(r: &mut Reader) -> Result<SifiveTestState> {
    let request = match r.tag("request", 2)? {
        0 => None,
        1 => Some(PowerRequest::PowerOff {
            status: r.u32("power-off status")?,
        }),
        _ => Some(PowerRequest::Reboot),
    };
    Ok(SifiveTestState { request })
}

fn write_rtc(w: &mut Writer, s: &GoldfishRtcState) {
    let GoldfishRtcState {
        now_ns,
        offset_ns,
        time_high,
        alarm_ns,
        alarm_armed,
        irq_pending,
        irq_enabled,
    } = s;
    w.put_u64(*now_ns);
    w.put_u64(*offset_ns);
    w.put_u32(*time_high);
    w.put_u64(*alarm_ns);
    w.put_bool(*alarm_armed);
    w.put_bool(*irq_pending);
    w.put_bool(*irq_enabled);
}

fn read_rtc(r: &mut Reader) -> Result<GoldfishRtcState> {
    Ok(GoldfishRtcState {
        now_ns: r.u64("now_ns")?,
        offset_ns: r.u64("offset_ns")?,
        time_high: r.u32("time_high")?,
        alarm_ns: r.u64("alarm_ns")?,
        alarm_armed: r.bool("alarm_armed")?,
        irq_pending: r.bool("irq_pending")?,
        irq_enabled: r.bool("irq_enabled")?,
    })
}

/// Encoded size of a [`Segment`].
const SEGMENT_SIZE: usize = 8 + 4;
/// Smallest encoded size of a block request: id, head, a flush, no segments.
const BLOCK_REQUEST_MIN: usize = 8 + 2 + 1 + 8;
/// Encoded size of an entropy request without its segments.
const ENTROPY_REQUEST_MIN: usize = 8 + 2 + 4 + 8;
/// Encoded size of a [`QueueState`].
const QUEUE_SIZE: usize = 2 + 1 + 8 * 3 + 2 + 2 + 1;

fn write_segments(w: &mut Writer, segments: &[Segment]) {
    w.put_len(segments.len());
    for Segment { addr, len } in segments {
        w.put_u64(*addr);
        w.put_u32(*len);
    }
}

fn read_segments(r: &mut Reader) -> Result<Vec<Segment>> {
    let count = r.count("segment count", SEGMENT_SIZE, u64::MAX)?;
    (0..count)
        .map(|_| {
            Ok(Segment {
                addr: r.u64("segment address")?,
                len: r.u32("segment length")?,
            })
        })
        .collect()
}

fn write_block_request(w: &mut Writer, request: &BlockRequestState) {
    let BlockRequestState {
        id,
        head,
        op,
        writable,
    } = request;
    w.put_u64(*id);
    w.put_u16(*head);
    match op {
        BlockOp::Read { sector, len } => {
            w.put_u8(0);
            w.put_u64(*sector);
            w.put_u32(*len);
        }
        BlockOp::Write { sector, data } => {
            w.put_u8(1);
            w.put_u64(*sector);
            w.put_bytes(data);
        }
        BlockOp::Flush => w.put_u8(2),
        BlockOp::Discard { sector, sectors } => {
            w.put_u8(3);
            w.put_u64(*sector);
            w.put_u64(*sectors);
        }
    }
    write_segments(w, writable);
}

fn read_block_request(r: &mut Reader) -> Result<BlockRequestState> {
    let id = r.u64("request id")?;
    let head = r.u16("request head")?;
    let op = match r.tag("request op", 3)? {
        0 => BlockOp::Read {
            sector: r.u64("read sector")?,
            len: r.u32("read length")?,
        },
        1 => BlockOp::Write {
            sector: r.u64("write sector")?,
            data: r.bytes("write data", u64::MAX)?.to_vec(),
        },
        2 => BlockOp::Flush,
        _ => BlockOp::Discard {
            sector: r.u64("discard sector")?,
            sectors: r.u64("discard sectors")?,
        },
    };
    Ok(BlockRequestState {
        id,
        head,
        op,
        writable: read_segments(r)?,
    })
}

fn write_virtio(w: &mut Writer, s: &VirtioMmioState) {
    let VirtioMmioState {
        device,
        queues,
        device_features_sel,
        driver_features,
        driver_features_sel,
        queue_sel,
        status,
        interrupt_status,
        next_id,
    } = s;
    match device {
        VirtioDeviceState::Block(BlockState {
            capacity,
            read_only,
            serial,
            in_flight,
            held,
        }) => {
            w.put_u8(1);
            w.put_u64(*capacity);
            w.put_bool(*read_only);
            w.put_bytes(serial.as_bytes());
            for requests in [in_flight, held] {
                w.put_len(requests.len());
                requests.iter().for_each(|q| write_block_request(w, q));
            }
        }
        VirtioDeviceState::Net(NetState {
            mac,
            rx_fifo,
            rx_dropped,
        }) => {
            w.put_u8(2);
            w.out.extend_from_slice(mac);
            w.put_len(rx_fifo.len());
            rx_fifo.iter().for_each(|frame| w.put_bytes(frame));
            w.put_u64(*rx_dropped);
        }
        VirtioDeviceState::Rng(RngState { in_flight }) => {
            w.put_u8(3);
            w.put_len(in_flight.len());
            for EntropyRequestState {
                id,
                head,
                len,
                writable,
            } in in_flight
            {
                w.put_u64(*id);
                w.put_u16(*head);
                w.put_u32(*len);
                write_segments(w, writable);
            }
        }
    }
    w.put_len(queues.len());
    for queue in queues {
        let QueueState {
            size,
            ready,
            desc,
            driver,
            device,
            next_avail,
            next_used,
            notified,
        } = queue;
        w.put_u16(*size);
        w.put_bool(*ready);
        w.put_u64(*desc);
        w.put_u64(*driver);
        w.put_u64(*device);
        w.put_u16(*next_avail);
        w.put_u16(*next_used);
        w.put_bool(*notified);
    }
    w.put_u32(*device_features_sel);
    w.put_u64(*driver_features);
    w.put_u32(*driver_features_sel);
    w.put_u32(*queue_sel);
    w.put_u8(*status);
    w.put_u32(*interrupt_status);
    w.put_u64(*next_id);
}

fn read_virtio(r: &mut Reader) -> Result<VirtioMmioState> {
    let offset = r.offset();
    let device = match r.tag("device kind", 3)? {
        1 => {
            let capacity = r.u64("disk capacity")?;
            let read_only = r.bool("disk read-only")?;
            let serial = r.string("disk serial", u64::MAX)?;
            let mut lists = [Vec::new(), Vec::new()];
            for (list, field) in lists.iter_mut().zip(["in-flight count", "held count"]) {
                let count = r.count(field, BLOCK_REQUEST_MIN, u64::MAX)?;
                for _ in 0..count {
                    list.push(read_block_request(r)?);
                }
            }
            let [in_flight, held] = lists;
            VirtioDeviceState::Block(BlockState {
                capacity,
                read_only,
                serial,
                in_flight,
                held,
            })
        }
        2 => {
            let mac = r.array("MAC address")?;
            let count = r.count("rx_fifo count", 8, u64::MAX)?;
            let rx_fifo = (0..count)
                .map(|_| Ok(r.bytes("rx_fifo frame", u64::MAX)?.to_vec()))
                .collect::<Result<Vec<_>>>()?;
            VirtioDeviceState::Net(NetState {
                mac,
                rx_fifo,
                rx_dropped: r.u64("rx_dropped")?,
            })
        }
        3 => {
            let count = r.count("in-flight count", ENTROPY_REQUEST_MIN, u64::MAX)?;
            let in_flight = (0..count)
                .map(|_| {
                    Ok(EntropyRequestState {
                        id: r.u64("request id")?,
                        head: r.u16("request head")?,
                        len: r.u32("request length")?,
                        writable: read_segments(r)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            VirtioDeviceState::Rng(RngState { in_flight })
        }
        kind => {
            return Err(SnapshotError::BadValue {
                what: r.name("device kind"),
                offset,
                value: kind.into(),
            })
        }
    };
    let count = r.count("queue count", QUEUE_SIZE, u64::MAX)?;
    let queues = (0..count)
        .map(|_| {
            Ok(QueueState {
                size: r.u16("queue size")?,
                ready: r.bool("queue ready")?,
                desc: r.u64("queue desc")?,
                driver: r.u64("queue driver")?,
                device: r.u64("queue device")?,
                next_avail: r.u16("queue next_avail")?,
                next_used: r.u16("queue next_used")?,
                notified: r.bool("queue notified")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(VirtioMmioState {
        device,
        queues,
        device_features_sel: r.u32("device_features_sel")?,
        driver_features: r.u64("driver_features")?,
        driver_features_sel: r.u32("driver_features_sel")?,
        queue_sel: r.u32("queue_sel")?,
        status: r.u8("status")?,
        interrupt_status: r.u32("interrupt_status")?,
        next_id: r.u64("next_id")?,
    })
}

fn write_ram(w: &mut Writer, ram: &[u8]) {
    let count_at = w.out.len();
    w.put_u64(0);
    let mut count = 0u64;
    for (index, page) in ram.chunks(PAGE_SIZE).enumerate() {
        if !is_zero(page) {
            w.put_len(index);
            w.out.extend_from_slice(page);
            count += 1;
        }
    }
    w.out[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
}

/// Whether `bytes` are all zero: 64 bytes ORed together at a time (which the
/// compiler turns into vector instructions), not a byte at a time with an
/// early exit (a snapshot of a mostly empty RAM spends its time here).
pub fn is_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// The stored pages of a RAM of `memory_size` bytes: index and bytes, checked to
/// be inside RAM, in increasing order and not all zeros.
fn read_ram<'a>(r: &mut Reader<'a>, memory_size: u64) -> Result<Vec<(u64, &'a [u8])>> {
    let pages = memory_size.div_ceil(PAGE_SIZE as u64);
    let count = r.count("page count", 8 + 1, pages)?;
    let mut out = Vec::new();
    let mut previous = None;
    for _ in 0..count {
        let index = r.u64("page index")?;
        if index >= pages {
            return Err(SnapshotError::PageOutOfRange { index, pages });
        }
        if let Some(previous) = previous.filter(|&p| p >= index) {
            return Err(SnapshotError::PageOrder { index, previous });
        }
        previous = Some(index);
        let len = (memory_size - index * PAGE_SIZE as u64).min(PAGE_SIZE as u64);
        let bytes = r.take(len as usize, "page")?;
        if is_zero(bytes) {
            return Err(SnapshotError::ZeroPage { index });
        }
        out.push((index, bytes));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader::new(bytes, 100, "hart")
    }

    #[test]
    fn test_writer_is_little_endian_and_prefixes_bytes_with_a_u64_length() {
        let mut w = Writer { out: Vec::new() };

        w.put_u8(1);
        w.put_u16(0x0302);
        w.put_u32(0x0706_0504);
        w.put_u64(0x0f0e_0d0c_0b0a_0908);
        w.put_bytes(b"ab");

        assert_eq!(
            w.out,
            [
                1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, // integers
                2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', // bytes
            ]
        );
    }

    #[test]
    fn test_section_is_tag_length_contents() {
        let mut w = Writer { out: Vec::new() };

        w.section(TIME, |w| w.put_u16(0xbeef));

        assert_eq!(
            w.out,
            [b'T', b'I', b'M', b'E', 2, 0, 0, 0, 0, 0, 0, 0, 0xef, 0xbe]
        );
    }

    #[test]
    fn test_reader_at_the_end_names_the_field_and_absolute_offset() {
        let bytes = [1u8, 2, 3];
        let mut r = reader(&bytes);

        let error = r.u64("pc").expect_err("3 bytes do not hold a u64");

        assert_eq!(
            error.to_string(),
            "Truncated snapshot: hart: pc needs 8 bytes at offset 100, but 3 are left"
        );
    }

    #[test]
    fn test_bool_other_than_0_or_1_is_a_bad_value() {
        let bytes = [2u8];
        let mut r = reader(&bytes);

        let error = r.bool("wfi").expect_err("2 is no bool");

        assert!(matches!(
            error,
            SnapshotError::BadValue {
                offset: 100,
                value: 2,
                ..
            }
        ));
    }

    #[test]
    fn test_count_larger_than_the_input_left_is_refused_before_allocating() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 24]);
        let mut r = reader(&bytes);

        let error = r
            .count("segment count", SEGMENT_SIZE, u64::MAX)
            .expect_err("24 bytes hold 2 segments");

        assert!(matches!(
            error,
            SnapshotError::TooLong {
                len: u64::MAX,
                max: 2,
                ..
            }
        ));
    }

    #[test]
    fn test_bytes_longer_than_the_input_left_is_too_long() {
        let mut bytes = 5u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"abc");
        let mut r = reader(&bytes);

        let error = r.bytes("rx_fifo", u64::MAX).expect_err("3 bytes left");

        assert!(matches!(
            error,
            SnapshotError::TooLong {
                len: 5,
                max: 3,
                offset: 100,
                ..
            }
        ));
    }

    #[test]
    fn test_section_with_another_tag_names_both() {
        let mut w = Writer { out: Vec::new() };
        w.section(TIME, |w| w.put_u64(0));
        let mut r = Reader::new(&w.out, 18, "snapshot");

        let error = r.section(HART, read_hart).expect_err("TIME is not HART");

        assert_eq!(
            error.to_string(),
            "Expected section \"HART\" at offset 18, found \"TIME\""
        );
    }

    #[test]
    fn test_section_not_used_exactly_is_trailing_bytes_named_by_section() {
        let mut w = Writer { out: Vec::new() };
        w.section(TIME, |w| {
            w.put_u64(1);
            w.put_u64(2);
            w.put_u8(3);
        });
        let mut r = Reader::new(&w.out, 0, "snapshot");

        let error = r
            .section(TIME, |r| Ok((r.u64("mtime")?, r.u64("wall clock base")?)))
            .expect_err("one byte too many");

        assert_eq!(
            error.to_string(),
            "1 unexpected bytes at offset 28 after the time section"
        );
    }

    #[test]
    fn test_hart_state_round_trips_through_the_codec() {
        let mut state = Hart::new(Memory::new(DRAM_BASE, 0)).state();
        state.x[5] = 0x55;
        state.f[31] = 0xf31;
        state.reservation = Some(0x8000_1000);
        state.csr.pmpaddr[15] = 0xabc;
        state.csr.minstret_offset = 7;
        let mut w = Writer { out: Vec::new() };
        write_hart(&mut w, &state);

        let decoded = read_hart(&mut reader(&w.out)).expect("decodes");

        assert_eq!(decoded, state);
    }

    #[test]
    fn test_privilege_is_at_offset_522_of_the_hart_section() {
        let mut state = Hart::new(Memory::new(DRAM_BASE, 0)).state();
        state.privilege = 1;
        let mut w = Writer { out: Vec::new() };

        write_hart(&mut w, &state);

        assert_eq!((w.out[521], w.out[522], w.out[523]), (0, 1, 0));
    }

    #[test]
    fn test_block_requests_of_every_op_round_trip_through_the_codec() {
        let segments = vec![Segment {
            addr: 0x8000_2000,
            len: 513,
        }];
        let request = |id, op| BlockRequestState {
            id,
            head: 3,
            op,
            writable: segments.clone(),
        };
        let requests = vec![
            request(
                1,
                BlockOp::Read {
                    sector: 2,
                    len: 512,
                },
            ),
            request(
                2,
                BlockOp::Write {
                    sector: 4,
                    data: vec![7; 512],
                },
            ),
            request(3, BlockOp::Flush),
            request(
                4,
                BlockOp::Discard {
                    sector: 5,
                    sectors: 6,
                },
            ),
        ];
        let mut w = Writer { out: Vec::new() };
        requests.iter().for_each(|q| write_block_request(&mut w, q));
        let mut r = reader(&w.out);

        let decoded: Vec<_> = (0..4)
            .map(|_| read_block_request(&mut r).expect("decodes"))
            .collect();

        assert_eq!((decoded, r.remaining()), (requests, 0));
    }

    #[test]
    fn test_ram_pages_out_of_order_are_refused() {
        let mut w = Writer { out: Vec::new() };
        w.put_u64(2);
        for index in [3u64, 3] {
            w.put_u64(index);
            w.out.extend_from_slice(&[1; PAGE_SIZE]);
        }

        let error = read_ram(&mut reader(&w.out), 16 << 20).expect_err("page 3 twice");

        assert!(matches!(
            error,
            SnapshotError::PageOrder {
                index: 3,
                previous: 3
            }
        ));
    }

    #[test]
    fn test_last_partial_page_is_stored_with_its_own_length() {
        let mut ram = vec![0u8; PAGE_SIZE + 10];
        ram[PAGE_SIZE + 9] = 1;
        let mut w = Writer { out: Vec::new() };
        write_ram(&mut w, &ram);

        let pages = read_ram(&mut reader(&w.out), ram.len() as u64).expect("decodes");

        assert_eq!(pages, vec![(1, &ram[PAGE_SIZE..])]);
    }
}
