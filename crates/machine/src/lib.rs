//! The `virt` board of ftvm: memory map, device tree, boot, the event
//! boundary and the run loop.
//!
//! A [`Machine`] owns one hart and the board's devices. It runs in slices of
//! at most [`SLICE`] instructions; between slices, and only there, it crosses
//! the event boundary ([`Environment`]): it takes the time, console input and
//! idles when the guest waits for an interrupt. Inside a slice everything is a
//! function of the machine state alone.

pub mod digest;
pub mod environment;
pub mod fdt;
pub mod layout;
pub mod loader;
pub mod replay;
pub mod rom;
pub mod snapshot;

mod board;

pub use board::{Board, GuestRam};
pub use environment::{Environment, VirtualBackend, VirtualEnvironment};

use ftvm_cpu::{Exit, Hart, Memory};
use ftvm_devices::{BackendRequest, Block, Net, PowerRequest, Rng, VirtioDevice, VirtioMmio};
use layout::*;

/// The most instructions run between two crossings of the event boundary.
pub const SLICE: u64 = 1 << 16;

/// What the machine boots.
#[derive(Clone, Debug, Default)]
pub struct MachineConfig {
    /// RAM size in bytes.
    pub memory_size: u64,
    /// Firmware image (OpenSBI `fw_dynamic.bin`, a raw binary or an ELF).
    pub firmware: Vec<u8>,
    /// Kernel image, if any (a flat RISC-V `Image` or an ELF).
    pub kernel: Option<Vec<u8>>,
    /// Initial RAM disk, if any.
    pub initrd: Option<Vec<u8>>,
    /// Kernel command line.
    pub cmdline: String,
    /// virtio devices, in slot order from 0x1000_1000.
    pub virtio: Vec<VirtioConfig>,
}

/// A virtio device of the machine (its host backend lives outside, behind the
/// [`Environment`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtioConfig {
    /// A disk.
    Block {
        /// Size in 512-byte sectors.
        capacity_sectors: u64,
        /// Writes fail.
        read_only: bool,
        /// The serial answered to GET_ID (at most 20 bytes).
        serial: String,
    },
    /// A network card.
    Net {
        /// Its MAC address.
        mac: [u8; 6],
    },
    /// An entropy source.
    Rng,
}

impl VirtioConfig {
    fn build(&self) -> VirtioMmio {
        VirtioMmio::new(match self {
            VirtioConfig::Block {
                capacity_sectors,
                read_only,
                serial,
            } => VirtioDevice::Block(Block::new(*capacity_sectors, *read_only, serial.clone())),
            VirtioConfig::Net { mac } => VirtioDevice::Net(Net::new(*mac)),
            VirtioConfig::Rng => VirtioDevice::Rng(Rng::new()),
        })
    }
}

/// The user asked for a machine that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// RAM size out of range.
    #[error("memory size {size} bytes is out of range: give between {min} MiB and {max} GiB", min = MIN_MEMORY >> 20, max = MAX_MEMORY >> 30)]
    MemorySize {
        /// The size asked for.
        size: u64,
    },
    /// An image cannot be loaded.
    #[error(transparent)]
    Load(#[from] loader::LoadError),
    /// An initrd was given without a kernel.
    #[error("an initrd needs a kernel: give --kernel too")]
    InitrdWithoutKernel,
    /// The device tree could not be built.
    #[error("cannot build the device tree: {0}")]
    Fdt(String),
    /// More virtio devices than slots.
    #[error("{count} virtio devices given, but the board has {VIRTIO_SLOTS} slots")]
    TooManyDevices {
        /// How many were given.
        count: usize,
    },
    /// The initrd overlaps the kernel.
    #[error(
        "the kernel ({kernel_end:#x}) overlaps the initrd ({initrd_start:#x}); give more --memory"
    )]
    KernelOverlapsInitrd {
        /// End of the kernel.
        kernel_end: u64,
        /// Start of the initrd.
        initrd_start: u64,
    },
}

/// Checks what [`Machine::new`] and [`Machine::from_snapshot`] need of a
/// configuration before they allocate anything: the RAM size, an initrd only
/// with a kernel, no more virtio devices than slots.
fn check_config(config: &MachineConfig) -> Result<(), ConfigError> {
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&config.memory_size) {
        return Err(ConfigError::MemorySize {
            size: config.memory_size,
        });
    }
    if config.initrd.is_some() && config.kernel.is_none() {
        return Err(ConfigError::InitrdWithoutKernel);
    }
    if config.virtio.len() as u64 > VIRTIO_SLOTS {
        return Err(ConfigError::TooManyDevices {
            count: config.virtio.len(),
        });
    }
    Ok(())
}

/// The outcome of one step of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The machine ran a slice (or idled) and can go on.
    Running,
    /// The guest powered off with this exit status.
    PowerOff(u32),
    /// The guest asked for a reboot; the machine has been reset.
    Reboot,
    /// The guest waits for an interrupt that nothing can ever raise.
    Stuck,
}

/// One RISC-V `virt` machine.
pub struct Machine {
    hart: Hart,
    board: Board,
    config: MachineConfig,
    /// Highest time handed to the guest so far: time never goes backwards.
    mtime: u64,
    wall_clock_base_ns: u64,
    ram_hasher: digest::RamHasher,
}

impl Machine {
    /// Builds a machine and loads its images, asking `env` for the rng-seed.
    pub fn new(config: MachineConfig, env: &mut dyn Environment) -> Result<Machine, ConfigError> {
        check_config(&config)?;
        let mut machine = Machine {
            hart: Hart::new(Memory::new(DRAM_BASE, config.memory_size)),
            board: Board::new(Vec::new(), Vec::new()),
            config,
            mtime: 0,
            wall_clock_base_ns: 0,
            ram_hasher: digest::RamHasher::default(),
        };
        machine.reset(env)?;
        Ok(machine)
    }

    /// Resets the machine to power-on state: fresh RAM, devices and hart,
    /// images loaded again.
    pub fn reset(&mut self, env: &mut dyn Environment) -> Result<(), ConfigError> {
        let size = self.config.memory_size;
        let mut memory = Memory::new(DRAM_BASE, size);
        let firmware = loader::load_firmware(&mut memory, &self.config.firmware)?;
        let fdt_addr = fdt_base(size);
        let mut next_addr = KERNEL_BASE;
        let mut initrd_range = None;
        if let Some(kernel) = &self.config.kernel {
            let loaded = loader::load_kernel(&mut memory, kernel)?;
            next_addr = loaded.entry;
            if let Some(initrd) = &self.config.initrd {
                loader::check_initrd(initrd)?;
                let start = initrd_base(size);
                if loaded.end > start {
                    return Err(ConfigError::KernelOverlapsInitrd {
                        kernel_end: loaded.end,
                        initrd_start: start,
                    });
                }
                let placed = loader::load_raw(&mut memory, "initrd", initrd, start)?;
                initrd_range = Some((placed.start, placed.end));
            }
        }
        let blob = fdt::build(&fdt::FdtConfig {
            memory_size: size,
            cmdline: self.config.cmdline.clone(),
            initrd: initrd_range,
            rng_seed: env.rng_seed(),
            virtio_slots: self.config.virtio.len() as u64,
        })
        .map_err(|e| ConfigError::Fdt(e.to_string()))?;
        loader::load_raw(&mut memory, "device tree", &blob, fdt_addr)?;
        if let Some((_, initrd_end)) = initrd_range {
            if initrd_end > fdt_addr {
                return Err(ConfigError::Load(loader::LoadError::DoesNotFit {
                    what: "initrd",
                    addr: initrd_base(size),
                    len: initrd_end - initrd_base(size),
                    ram_start: DRAM_BASE,
                    ram_end: fdt_addr,
                }));
            }
        }
        self.hart = Hart::new(memory);
        let virtio = self.config.virtio.iter().map(VirtioConfig::build).collect();
        self.board = Board::new(rom::reset_rom(firmware.entry, fdt_addr, next_addr), virtio);
        self.mtime = 0;
        self.wall_clock_base_ns = env.wall_clock_base_ns();
        self.ram_hasher = digest::RamHasher::default();
        Ok(())
    }

    /// Runs one slice of at most [`SLICE`] instructions, crossing the event
    /// boundary before it.
    pub fn step(&mut self, env: &mut dyn Environment) -> Result<Step, ConfigError> {
        self.sync_time(env.now(self.hart.icount()));
        let space = self.board.uart.rx_space();
        if space > 0 {
            let input = env.console_input(self.hart.icount(), space);
            if !input.is_empty() {
                self.board.uart.push_input(&input);
            }
        }
        for (slot, completion) in env.completions(self.hart.icount()) {
            if let Some(dev) = self.board.virtio.get_mut(slot) {
                dev.complete(&mut GuestRam(self.hart.memory_mut()), completion);
            }
        }
        self.service_virtio(env);
        let exit = self.hart.run(&mut self.board, SLICE);
        self.service_virtio(env);
        if let Some(request) = self.board.test.take_request() {
            return match request {
                PowerRequest::PowerOff { status } => Ok(Step::PowerOff(status)),
                PowerRequest::Reboot => {
                    self.reset(env)?;
                    Ok(Step::Reboot)
                }
            };
        }
        if exit == Exit::Wfi {
            let deadline = self.next_timer_deadline();
            match env.idle(self.hart.icount(), self.mtime, deadline) {
                Some(now) => self.sync_time(now),
                None => return Ok(Step::Stuck),
            }
        }
        Ok(Step::Running)
    }

    /// Lets every notified virtio device take its available buffers and hands
    /// the resulting requests to the host backends.
    fn service_virtio(&mut self, env: &mut dyn Environment) {
        let icount = self.hart.icount();
        let mut requests = Vec::new();
        for (slot, dev) in self.board.virtio.iter_mut().enumerate() {
            if dev.notified() {
                dev.process(&mut GuestRam(self.hart.memory_mut()), &mut requests);
                for request in requests.drain(..) {
                    env.submit(icount, slot, request);
                }
            }
        }
    }

    /// Runs until the guest powers off (with its exit status) or is stuck,
    /// handing console output to `output` after every slice.
    pub fn run(
        &mut self,
        env: &mut dyn Environment,
        output: &mut dyn FnMut(&[u8]),
    ) -> Result<Step, ConfigError> {
        loop {
            let step = self.step(env)?;
            let out = self.take_console_output();
            if !out.is_empty() {
                output(&out);
            }
            match step {
                Step::Running | Step::Reboot => {}
                Step::PowerOff(_) | Step::Stuck => return Ok(step),
            }
        }
    }

    /// Console bytes the guest wrote since the last call.
    pub fn take_console_output(&mut self) -> Vec<u8> {
        self.board.uart.take_output()
    }

    /// The next `mtime` at which a timer fires, if one is armed: the CLINT's
    /// `mtimecmp`, the hart's Sstc `stimecmp`, or the RTC's alarm.
    fn next_timer_deadline(&self) -> Option<u64> {
        let clint = Some(self.board.clint.mtimecmp());
        let sstc = self.hart.stimecmp();
        let rtc =
            self.board.rtc.next_alarm_ns().map(|ns| {
                ns.saturating_sub(self.wall_clock_base_ns) / (1_000_000_000 / TIMEBASE_HZ)
            });
        [clint, sstc, rtc]
            .into_iter()
            .flatten()
            .filter(|&t| t != u64::MAX)
            .min()
    }

    fn sync_time(&mut self, now: u64) {
        self.mtime = self.mtime.max(now);
        self.hart.set_time(self.mtime);
        self.board.clint.set_mtime(self.mtime);
        let ns = self.mtime.saturating_mul(1_000_000_000 / TIMEBASE_HZ);
        self.board
            .rtc
            .set_now_ns(self.wall_clock_base_ns.saturating_add(ns));
    }

    /// A digest of the whole machine state. Cheap after the first call: only
    /// RAM pages written since the previous digest are hashed again.
    pub fn digest(&mut self) -> digest::Digest {
        let dirty = self.hart.take_dirty_pages();
        let ram = self
            .ram_hasher
            .update(self.hart.memory().as_bytes(), &dirty);
        digest::digest(&self.hart, &self.board, ram)
    }

    /// The whole machine state as bytes (see [`snapshot`] for the layout): the
    /// hart, the non-zero pages of RAM, every device, the time, and a
    /// description of the configuration. The boot images are not in it.
    ///
    /// Take it between two [`Machine::step`]s. Requests the virtio devices
    /// handed to their host backends and that are not completed are in it (as
    /// device state), but their completions are not: a machine restored
    /// elsewhere needs its backends to be given them again
    /// ([`VirtioMmio::in_flight_requests`]).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode(self)
    }

    /// The machine a [`Machine::snapshot`] was taken of, with the boot images
    /// (used again on a reboot) from `config`, which must describe the same
    /// machine: the same RAM size, virtio devices, images and command line.
    ///
    /// The bytes are untrusted: any input gives an error rather than a panic,
    /// and every device and the hart are validated as they are restored.
    pub fn from_snapshot(
        config: MachineConfig,
        bytes: &[u8],
    ) -> Result<Machine, snapshot::SnapshotError> {
        snapshot::decode(config, bytes)
    }

    /// [`Machine::snapshot`] with no RAM in it (every page reads as zero):
    /// for a copy whose RAM travels apart, while the guest runs
    /// ([`Machine::take_dirty_pages`] tells what to send again), and is put
    /// in place with [`Machine::replace_ram`].
    pub fn snapshot_without_ram(&self) -> Vec<u8> {
        snapshot::encode_without_ram(self)
    }

    /// Guest RAM, as bytes.
    pub fn ram(&self) -> &[u8] {
        self.hart.memory().as_bytes()
    }

    /// The RAM pages (by index, 4 KiB each) written since the last call,
    /// or since the last digest: a superset of those really written. The
    /// RAM digest's page hashes are forgotten too (the next
    /// [`Machine::digest`] hashes all of RAM again), since the pages taken
    /// here are no longer there for it.
    pub fn take_dirty_pages(&mut self) -> Vec<usize> {
        self.ram_hasher = digest::RamHasher::default();
        self.hart.take_dirty_pages()
    }

    /// Replaces all of guest RAM with `ram` (exactly the RAM's size): the
    /// RAM of a machine restored from [`Machine::snapshot_without_ram`].
    pub fn replace_ram(&mut self, ram: &[u8]) -> Result<(), snapshot::SnapshotError> {
        let size = self.config.memory_size;
        if ram.len() as u64 != size {
            return Err(snapshot::SnapshotError::RamSize {
                got: ram.len() as u64,
                expected: size,
            });
        }
        self.hart
            .memory_mut()
            .write_bytes(layout::DRAM_BASE, ram)
            .map_err(|_| snapshot::SnapshotError::RamSize {
                got: ram.len() as u64,
                expected: size,
            })?;
        self.hart.take_dirty_pages();
        self.ram_hasher = digest::RamHasher::default();
        Ok(())
    }

    /// The requests the virtio devices handed to their host backends and
    /// that are not completed, with their slots, in slot order: what a
    /// machine restored from a [`Machine::snapshot`] waits for.
    pub fn in_flight_requests(&self) -> Vec<(usize, BackendRequest)> {
        self.board
            .virtio
            .iter()
            .enumerate()
            .flat_map(|(slot, dev)| dev.in_flight_requests().into_iter().map(move |r| (slot, r)))
            .collect()
    }

    /// The hart.
    pub fn hart(&self) -> &Hart {
        &self.hart
    }

    /// The hart, mutable (tests and debugging).
    pub fn hart_mut(&mut self) -> &mut Hart {
        &mut self.hart
    }

    /// Retired instructions since power-on.
    pub fn icount(&self) -> u64 {
        self.hart.icount()
    }

    /// The guest's time base now.
    pub fn mtime(&self) -> u64 {
        self.mtime
    }
}
