//! Argument parsing and the subcommands.

use crate::console::{Console, SerialTarget};
use crate::live::{event_channel, EventSender, LiveBackend, LiveEnvironment};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use ftvm_host::backends::{Disk, Entropy, Tap};
use ftvm_machine::replay::Recorder;
use ftvm_machine::{Machine, MachineConfig, Step, VirtioConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A fault-tolerant RISC-V virtual machine.
#[derive(Parser, Debug)]
#[command(name = "ftvm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Boot a virtual machine (by default the fetched Debian guest).
    Run(Box<RunArgs>),
    /// Replay a recording made with `ftvm run --record`: the guest's console
    /// as it was, then a summary. Needs no host devices.
    Replay(ReplayArgs),
    /// Run a VM as the primary of a fault-tolerant pair: it waits for the
    /// backup, then runs the guest live, streaming the log to the backup.
    Primary(Box<PrimaryArgs>),
    /// Run a VM as the backup of a fault-tolerant pair: it replays the
    /// primary's log and goes live if the primary fails.
    Backup(Box<BackupArgs>),
    /// Show the state of one side of a pair (its `--control` socket).
    Status {
        /// The side's control socket.
        control: PathBuf,
    },
    /// Show a failover on this machine: start a pair on the default guest
    /// with a visible workload, kill the primary, watch the backup go on.
    Demo(crate::demo::DemoArgs),
    /// Manage the default guest images.
    Images {
        #[command(subcommand)]
        command: ImagesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum ImagesCommand {
    /// Download the Debian kernel, OpenSBI and busybox, verify them and build the initramfs.
    Fetch {
        /// Cache directory (default: $FTVM_IMAGES, or ~/.cache/ftvm/images).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print where the images are.
    Path {
        /// Cache directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The flags that describe a VM.
#[derive(clap::Args, Debug, Clone)]
pub struct VmArgs {
    /// Firmware: OpenSBI's fw_dynamic.bin, a raw image (loaded at 0x80000000) or an ELF.
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// Kernel: a flat RISC-V Image (loaded at 0x80200000) or an ELF.
    /// Without --kernel and with --firmware, the firmware is the only program.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Initial RAM disk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long)]
    cmdline: Option<String>,
    /// A shell command for the default guest's /init to run instead of a
    /// shell, of any length (passed as `ftvm.cmd64=BASE64` on the kernel
    /// command line; the words after ` -- ` are limited to 32 by the kernel).
    #[arg(long)]
    guest_cmd: Option<String>,
    /// RAM size, e.g. 512M or 1G.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory: u64,
    /// A virtio disk: `path=FILE[,readonly=on]` or `nbd=nbd://HOST:PORT/EXPORT[,readonly=on]`.
    /// May be given several times.
    #[arg(long, value_parser = parse_disk)]
    disk: Vec<DiskSpec>,
    /// A virtio network card on a TAP device: `tap=NAME[,mac=MAC]`. May be given several times.
    #[arg(long, value_parser = parse_net)]
    net: Vec<NetSpec>,
    /// A virtio entropy source fed from the host's.
    #[arg(long)]
    rng: bool,
    /// Device order as given on the command line (filled in after parsing).
    #[arg(skip)]
    order: Vec<DeviceRef>,
}

/// Where a disk's data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskSource {
    /// A raw image file.
    File(PathBuf),
    /// An NBD export.
    Nbd(String),
}

/// A `--disk` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    source: DiskSource,
    read_only: bool,
}

/// A `--net` flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSpec {
    tap: String,
    mac: Option<[u8; 6]>,
}

/// One virtio device, by kind and index among the flags of its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceRef {
    Disk(usize),
    Net(usize),
    Rng,
}

fn parse_options(s: &str) -> Result<Vec<(&str, &str)>, String> {
    s.split(',')
        .map(|kv| {
            kv.split_once('=')
                .ok_or_else(|| format!("`{kv}` in `{s}` is not KEY=VALUE"))
        })
        .collect()
}

fn parse_on_off(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("`{key}={value}`: use on or off")),
    }
}

fn parse_disk(s: &str) -> Result<DiskSpec, String> {
    let mut source = None;
    let mut read_only = false;
    for (key, value) in parse_options(s)? {
        match key {
            "path" if !value.is_empty() => source = Some(DiskSource::File(PathBuf::from(value))),
            "nbd" if value.starts_with("nbd://") => {
                source = Some(DiskSource::Nbd(value.to_string()))
            }
            "nbd" => {
                return Err(format!(
                    "`nbd={value}`: the URL must look like nbd://HOST:PORT/EXPORT"
                ))
            }
            "readonly" => read_only = parse_on_off(key, value)?,
            _ => {
                return Err(format!(
                    "unknown disk option `{key}={value}` (use path=, nbd= or readonly=)"
                ))
            }
        }
    }
    let source = source.ok_or_else(|| format!("`{s}` names no disk: give path=FILE or nbd=URL"))?;
    Ok(DiskSpec { source, read_only })
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || format!("`{s}` is not a MAC address (like 52:54:00:12:34:56)");
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        return Err(format!(
            "`{s}` is a multicast address: a card needs a unicast MAC"
        ));
    }
    Ok(mac)
}

fn parse_net(s: &str) -> Result<NetSpec, String> {
    let mut tap = None;
    let mut mac = None;
    for (key, value) in parse_options(s)? {
        match key {
            "tap" if !value.is_empty() => tap = Some(value.to_string()),
            "mac" => mac = Some(parse_mac(value)?),
            _ => {
                return Err(format!(
                    "unknown net option `{key}={value}` (use tap= or mac=)"
                ))
            }
        }
    }
    let tap = tap.ok_or_else(|| format!("`{s}` names no TAP device: give tap=NAME"))?;
    Ok(NetSpec { tap, mac })
}

#[derive(clap::Args, Debug)]
struct ReplayArgs {
    /// The log file.
    file: PathBuf,
    /// Where the console goes: `stdio` (default), `null` or `file=PATH`.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    serial: SerialTarget,
}

/// `ftvm primary`.
#[derive(clap::Args, Debug)]
pub struct PrimaryArgs {
    /// Where the backup connects (TCP for the log, UDP for heartbeats).
    #[arg(long)]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    ft: crate::ft::FtArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// Where the console goes: `stdio` (default), `file=PATH` or `null`.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    serial: SerialTarget,
}

/// `ftvm backup`.
#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The primary's `--listen` address (with `--spare`, give every side's:
    /// the primary's `--listen` and the backup's `--listen`).
    #[arg(long, required = true)]
    peer: Vec<std::net::SocketAddr>,
    /// Wait as a spare: ask each `--peer` every second to take this side
    /// as its new backup, until one that runs alone (its backup gone, or
    /// gone live) does; then run as its backup. Re-protection without an
    /// operator.
    #[arg(long)]
    spare: bool,
    /// Once this side has gone live, take a new backup on this address (it
    /// joins with a snapshot of the running guest), as a primary whose
    /// backup is gone does on its `--listen` address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    ft: crate::ft::FtArgs,
    #[command(flatten)]
    vm: VmArgs,
    /// Where the console goes once this side is live: `stdio` (default),
    /// `file=PATH` or `null`.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    serial: SerialTarget,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Record every non-deterministic input into this log file, for `ftvm replay`.
    #[arg(long)]
    record: Option<PathBuf>,
    #[command(flatten)]
    vm: VmArgs,
    /// Where the console goes: `stdio` (default; Ctrl-A x quits) or `file=PATH`.
    #[arg(long, default_value = "stdio", value_parser = parse_serial)]
    serial: SerialTarget,
    /// At exit, print statistics to stderr: `icount_total=N` (retired
    /// instructions), `icount_user=N` (those retired in U-mode), host seconds
    /// and MIPS.
    #[arg(long)]
    stats: bool,
}

/// The default kernel command line for the Debian guest.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 earlycon=sbi quiet";

/// Parses a size such as `512M`, `1G`, `256MiB` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 512M or 1G)"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}` (use K, M or G)"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_serial(s: &str) -> Result<SerialTarget, String> {
    match s {
        "stdio" => Ok(SerialTarget::Stdio),
        "null" => Ok(SerialTarget::Null),
        _ => match s.strip_prefix("file=") {
            Some(path) if !path.is_empty() => Ok(SerialTarget::File(PathBuf::from(path))),
            _ => Err(format!(
                "`{s}` is not a serial target (use stdio, null or file=PATH)"
            )),
        },
    }
}

fn read_image(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let data = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} file {}: {e}", path.display()))?;
    if data.is_empty() {
        anyhow::bail!("the {what} file {} is empty", path.display());
    }
    Ok(data)
}

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl VmArgs {
    /// The kernel command line: `--cmdline` (or the default), plus the
    /// `--guest-cmd` for the initramfs.
    fn kernel_cmdline(&self) -> String {
        let mut cmdline = self
            .cmdline
            .clone()
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_string());
        if let Some(cmd) = &self.guest_cmd {
            cmdline.push_str(" ftvm.cmd64=");
            cmdline.push_str(&base64(cmd.as_bytes()));
        }
        cmdline
    }

    /// Records the command-line order of the device flags, which is the order
    /// of the virtio slots.
    fn set_order(&mut self, matches: &ArgMatches) {
        let mut order: Vec<(usize, DeviceRef)> = Vec::new();
        if let Some(idx) = matches.indices_of("disk") {
            order.extend(idx.enumerate().map(|(i, at)| (at, DeviceRef::Disk(i))));
        }
        if let Some(idx) = matches.indices_of("net") {
            order.extend(idx.enumerate().map(|(i, at)| (at, DeviceRef::Net(i))));
        }
        if let Some(at) = matches.index_of("rng").filter(|_| self.rng) {
            order.push((at, DeviceRef::Rng));
        }
        order.sort_by_key(|(at, _)| *at);
        self.order = order.into_iter().map(|(_, d)| d).collect();
    }

    /// Opens the host backends of the virtio devices, in slot order, and
    /// describes the devices for the machine.
    pub fn open_devices(
        &self,
        events: &EventSender,
    ) -> anyhow::Result<(Vec<VirtioConfig>, Vec<LiveBackend>)> {
        let mut configs = Vec::new();
        let mut backends = Vec::new();
        for (slot, device) in self.order.iter().enumerate() {
            match *device {
                DeviceRef::Disk(i) => {
                    let spec = &self.disk[i];
                    let disk = match &spec.source {
                        DiskSource::File(path) => {
                            Disk::open_file(path, spec.read_only, events.disk(slot))?
                        }
                        DiskSource::Nbd(url) => Disk::open_nbd(url, events.disk(slot))?,
                    };
                    configs.push(VirtioConfig::Block {
                        capacity_sectors: disk.size() / 512,
                        read_only: spec.read_only || disk.read_only(),
                        serial: format!("ftvm-disk{i}"),
                    });
                    backends.push(LiveBackend::Disk(disk));
                }
                DeviceRef::Net(i) => {
                    let spec = &self.net[i];
                    let tap = Tap::open(&spec.tap, events.net(slot))?;
                    let mac = spec
                        .mac
                        .unwrap_or([0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + i as u8]);
                    configs.push(VirtioConfig::Net { mac });
                    backends.push(LiveBackend::Tap(tap));
                }
                DeviceRef::Rng => {
                    configs.push(VirtioConfig::Rng);
                    backends.push(LiveBackend::Entropy(Entropy::open(events.entropy(slot))?));
                }
            }
        }
        Ok((configs, backends))
    }

    /// The writable disk images, by slot, a new backup with its own disks
    /// gets a copy of (`--non-shared-disk`); read-only disks never change
    /// and are not copied. An error names a disk that cannot be copied (an
    /// NBD export).
    pub fn copyable_disks(&self) -> Result<Vec<crate::ft::diskcopy::Image>, String> {
        let mut images = Vec::new();
        for (slot, device) in self.order.iter().enumerate() {
            let DeviceRef::Disk(i) = *device else {
                continue;
            };
            let spec = &self.disk[i];
            if spec.read_only {
                continue;
            }
            match &spec.source {
                DiskSource::File(path) => images.push(crate::ft::diskcopy::Image {
                    slot,
                    path: path.clone(),
                }),
                DiskSource::Nbd(url) => {
                    return Err(format!(
                        "the disk {url} is an NBD export, which cannot be copied to a new backup"
                    ))
                }
            }
        }
        Ok(images)
    }

    /// Builds the machine configuration, filling in the fetched default guest
    /// for whatever was not given.
    pub fn config(&self) -> anyhow::Result<(MachineConfig, crate::record::ImagePaths)> {
        let explicit = self.firmware.is_some() || self.kernel.is_some();
        let defaults = if explicit {
            None
        } else {
            let dir = ftvm_host::images::default_cache_dir();
            Some(ftvm_host::images::locate(&dir)?)
        };
        let firmware_path = match (&self.firmware, &defaults) {
            (Some(p), _) => p.clone(),
            (None, Some(d)) => d.firmware.clone(),
            (None, None) => {
                anyhow::bail!("--kernel needs --firmware (for example OpenSBI's fw_dynamic.bin)")
            }
        };
        let kernel_path = self
            .kernel
            .clone()
            .or_else(|| defaults.as_ref().map(|d| d.kernel.clone()));
        let initrd_path = self
            .initrd
            .clone()
            .or_else(|| defaults.as_ref().map(|d| d.initrd.clone()));
        if initrd_path.is_some() && kernel_path.is_none() {
            anyhow::bail!("--initrd needs --kernel");
        }
        let config = MachineConfig {
            memory_size: self.memory,
            firmware: read_image("firmware", &firmware_path)?,
            kernel: kernel_path
                .as_ref()
                .map(|p| read_image("kernel", p))
                .transpose()?,
            initrd: initrd_path
                .as_ref()
                .map(|p| read_image("initrd", p))
                .transpose()?,
            cmdline: self.kernel_cmdline(),
            virtio: Vec::new(),
        };
        let paths = crate::record::ImagePaths {
            firmware: firmware_path,
            kernel: kernel_path,
            initrd: initrd_path,
        };
        Ok((config, paths))
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> anyhow::Result<ExitCode> {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match (&mut cli.command, matches.subcommand()) {
        (Command::Run(args), Some((_, sub))) => args.vm.set_order(sub),
        (Command::Primary(args), Some((_, sub))) => args.vm.set_order(sub),
        (Command::Backup(args), Some((_, sub))) => args.vm.set_order(sub),
        _ => {}
    }
    match cli.command {
        Command::Run(args) => run(*args),
        Command::Primary(args) => primary(*args),
        Command::Backup(args) => backup(*args),
        Command::Status { control } => {
            print!("{}", crate::ft::control::query(&control)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => crate::demo::run(args),
        Command::Replay(args) => replay(args),
        Command::Images { command } => images(command),
    }
}

fn images(command: ImagesCommand) -> anyhow::Result<ExitCode> {
    match command {
        ImagesCommand::Fetch { dir } => {
            let dir = dir.unwrap_or_else(ftvm_host::images::default_cache_dir);
            let opts = ftvm_host::images::FetchOptions {
                progress: true,
                ..Default::default()
            };
            let images = ftvm_host::images::fetch(&dir, &opts)?;
            println!("kernel   {}", images.kernel.display());
            println!("initrd   {}", images.initrd.display());
            println!("firmware {}", images.firmware.display());
            println!("version  {}", images.kernel_version);
        }
        ImagesCommand::Path { dir } => {
            let dir = dir.unwrap_or_else(ftvm_host::images::default_cache_dir);
            let images = ftvm_host::images::locate(&dir)?;
            println!("{}", images.kernel.parent().unwrap_or(&dir).display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (mut config, paths) = args.vm.config()?;
    let (events, rx) = event_channel();
    let (virtio, backends) = args.vm.open_devices(&events)?;
    config.virtio = virtio;
    let mut console = Console::open(&args.serial, events.sender())?;
    let backends = std::sync::Arc::new(crate::live::Backends::new(backends));
    let mut env = LiveEnvironment::new(rx, console.has_input(), backends)?;
    let quit = env.quit_flag();
    let started = std::time::Instant::now();
    let mut log_bytes = None;
    let (machine, outcome) = if let Some(log_path) = &args.record {
        let writer = crate::record::create_log(log_path, &config, &paths)?;
        let mut recorder = Recorder::new(&mut env, writer);
        let mut machine = Machine::new(config, &mut recorder)?;
        let outcome = crate::record::record(&mut machine, &mut recorder, &mut |m, _| {
            let out = m.take_console_output();
            if !out.is_empty() {
                console.write(&out);
            }
            quit.get()
        });
        log_bytes = Some(recorder.bytes_written());
        recorder
            .finish()
            .map_err(|e| anyhow::anyhow!("cannot write the log {}: {e}", log_path.display()))?;
        (machine, outcome)
    } else {
        let mut machine = Machine::new(config, &mut env)?;
        let outcome = loop {
            let step = machine.step(&mut env);
            let out = machine.take_console_output();
            if !out.is_empty() {
                console.write(&out);
            }
            match step {
                Ok(Step::Running | Step::Reboot) if !quit.get() => {}
                Ok(Step::Reboot) => break Ok(Step::Running),
                other => break other.map_err(anyhow::Error::from),
            }
        };
        (machine, outcome)
    };
    console.restore();
    env.shutdown();
    if args.stats {
        let secs = started.elapsed().as_secs_f64();
        let total = machine.icount();
        eprintln!("icount_total={total}");
        eprintln!("icount_user={}", machine.hart().user_icount());
        eprintln!("host_seconds={secs:.3}");
        eprintln!("mips={:.1}", total as f64 / secs / 1e6);
        if let Some(bytes) = log_bytes {
            let guest = machine.mtime() as f64 / ftvm_machine::layout::TIMEBASE_HZ as f64;
            eprintln!("log_bytes={bytes}");
            eprintln!("guest_seconds={guest:.3}");
        }
    }
    match outcome? {
        Step::PowerOff(status) => Ok(ExitCode::from(status.min(255) as u8)),
        Step::Stuck => anyhow::bail!(
            "the guest waits for an interrupt that can never come (no timer armed, no input)"
        ),
        Step::Running | Step::Reboot => {
            eprintln!("\r\nftvm: terminated by the user");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What both sides of a pair build from their VM flags.
struct Prepared {
    config: MachineConfig,
    record: Vec<u8>,
    env: LiveEnvironment,
    console: Console,
    backends: std::sync::Arc<crate::live::Backends>,
    macs: Vec<(usize, [u8; 6])>,
    disks: Result<Vec<crate::ft::diskcopy::Image>, String>,
}

fn prepare(vm: &VmArgs, serial: &SerialTarget) -> anyhow::Result<Prepared> {
    let (mut config, paths) = vm.config()?;
    let (events, rx) = event_channel();
    let (virtio, backends) = vm.open_devices(&events)?;
    let macs = virtio
        .iter()
        .enumerate()
        .filter_map(|(slot, v)| match v {
            VirtioConfig::Net { mac } => Some((slot, *mac)),
            _ => None,
        })
        .collect();
    config.virtio = virtio;
    let record = crate::record::config_record(&config, &paths);
    let console = Console::open(serial, events.sender())?;
    let backends = std::sync::Arc::new(crate::live::Backends::new(backends));
    let env = LiveEnvironment::new(rx, console.has_input(), backends.clone())?;
    Ok(Prepared {
        config,
        record,
        env,
        console,
        backends,
        macs,
        disks: vm.copyable_disks(),
    })
}

fn primary(args: PrimaryArgs) -> anyhow::Result<ExitCode> {
    let p = prepare(&args.vm, &args.serial)?;
    crate::ft::primary::run(
        args.listen,
        &args.ft,
        crate::ft::primary::PrimarySetup {
            config: p.config,
            config_record: p.record,
            env: p.env,
            console: p.console,
            backends: p.backends,
            disks: p.disks,
        },
    )
}

fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let p = prepare(&args.vm, &args.serial)?;
    crate::ft::backup::run(
        &args.peer,
        args.spare,
        args.listen,
        &args.ft,
        crate::ft::backup::BackupSetup {
            config: p.config,
            config_record: p.record,
            env: p.env,
            console: p.console,
            macs: p.macs,
            disks: p.disks,
        },
    )
}

fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (events, _rx) = event_channel();
    let to_stdout = matches!(args.serial, SerialTarget::Stdio);
    let target = match args.serial {
        SerialTarget::Stdio => SerialTarget::Null,
        other => other,
    };
    let mut console = Console::open(&target, events.sender())?;
    let mut stdout = std::io::stdout();
    let summary = crate::record::replay_file(&args.file, &mut |bytes| {
        if to_stdout {
            use std::io::Write;
            let _ = stdout.write_all(bytes);
            let _ = stdout.flush();
        } else {
            console.write(bytes);
        }
    })?;
    eprintln!(
        "replayed {} instructions, {:.3} guest seconds in {:.3} host seconds; {} digests and {} outputs checked; the recorded run ended with {:?}",
        summary.instructions,
        summary.guest_seconds,
        summary.host_seconds,
        summary.digests_checked,
        summary.outputs_checked,
        summary.end
    );
    match summary.end {
        Step::PowerOff(status) => Ok(ExitCode::from(status.min(255) as u8)),
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_size_accepts_binary_suffixes() {
        assert_eq!(
            (parse_size("512M"), parse_size("1G"), parse_size("4096")),
            (Ok(512 << 20), Ok(1 << 30), Ok(4096))
        );
    }

    #[test]
    fn test_parse_disk_accepts_path_and_readonly() {
        assert_eq!(
            parse_disk("path=/tmp/a.img,readonly=on"),
            Ok(DiskSpec {
                source: DiskSource::File(PathBuf::from("/tmp/a.img")),
                read_only: true
            })
        );
    }

    #[test]
    fn test_parse_disk_names_an_unknown_option() {
        assert_eq!(
            parse_disk("path=/a,cache=none"),
            Err("unknown disk option `cache=none` (use path=, nbd= or readonly=)".to_string())
        );
    }

    #[test]
    fn test_parse_net_rejects_a_multicast_mac() {
        assert!(parse_net("tap=tap0,mac=01:00:5e:00:00:01").is_err_and(|e| e.contains("multicast")));
    }

    #[test]
    fn test_device_order_follows_the_command_line() {
        let matches = Cli::command().get_matches_from([
            "ftvm", "run", "--net", "tap=t0", "--rng", "--disk", "path=/a",
        ]);
        let mut cli = Cli::from_arg_matches(&matches).expect("parses");
        let Command::Run(args) = &mut cli.command else {
            panic!("not run")
        };
        let (_, sub) = matches.subcommand().expect("subcommand");

        args.vm.set_order(sub);

        assert_eq!(
            args.vm.order,
            vec![DeviceRef::Net(0), DeviceRef::Rng, DeviceRef::Disk(0)]
        );
    }

    #[test]
    fn test_base64_matches_rfc_4648_vectors() {
        assert_eq!(
            ["", "f", "fo", "foo", "foob", "fooba", "foobar"].map(|s| base64(s.as_bytes())),
            ["", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"].map(String::from)
        );
    }

    #[test]
    fn test_parse_size_names_a_bad_unit() {
        assert_eq!(
            parse_size("12X"),
            Err("`12X` has an unknown unit `X` (use K, M or G)".to_string())
        );
    }
}
