//! Argument parsing and the subcommands.

use crate::console::{Console, SerialTarget};
use crate::live::LiveEnvironment;
use clap::{Parser, Subcommand};
use ftvm_machine::{Machine, MachineConfig, Step};
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
    Run(RunArgs),
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
    /// RAM size, e.g. 512M or 1G.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory: u64,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
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

impl VmArgs {
    /// Builds the machine configuration, filling in the fetched default guest
    /// for whatever was not given.
    pub fn config(&self) -> anyhow::Result<MachineConfig> {
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
        Ok(MachineConfig {
            memory_size: self.memory,
            firmware: read_image("firmware", &firmware_path)?,
            kernel: kernel_path.map(|p| read_image("kernel", &p)).transpose()?,
            initrd: initrd_path.map(|p| read_image("initrd", &p)).transpose()?,
            cmdline: self
                .cmdline
                .clone()
                .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        })
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(args),
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
    let config = args.vm.config()?;
    let mut console = Console::open(&args.serial)?;
    let mut env = LiveEnvironment::new(console.input());
    let mut machine = Machine::new(config, &mut env)?;
    let started = std::time::Instant::now();
    let outcome = loop {
        let step = machine.step(&mut env);
        let out = machine.take_console_output();
        if !out.is_empty() {
            console.write(&out);
        }
        match step {
            Ok(Step::Running | Step::Reboot) if !env.quit_requested() => {}
            other => break other,
        }
    };
    console.restore();
    if args.stats {
        let secs = started.elapsed().as_secs_f64();
        let total = machine.icount();
        eprintln!("icount_total={total}");
        eprintln!("icount_user={}", machine.hart().user_icount());
        eprintln!("host_seconds={secs:.3}");
        eprintln!("mips={:.1}", total as f64 / secs / 1e6);
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
    fn test_parse_size_names_a_bad_unit() {
        assert_eq!(
            parse_size("12X"),
            Err("`12X` has an unknown unit `X` (use K, M or G)".to_string())
        );
    }
}
