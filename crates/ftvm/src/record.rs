//! `ftvm run --record FILE` and `ftvm replay FILE`.
//!
//! The log's header carries the machine's configuration as text: the RAM
//! size, the command line, the virtio devices, and each image's path with a
//! hash of its contents, so that a replay loads the same images (and says so
//! clearly when a file has changed) without any host device.

use ftvm_devices::virtio::QUEUE_SIZE_MAX;
use ftvm_machine::digest::hash_bytes;
use ftvm_machine::replay::{self, Recorder, Replayer};
use ftvm_machine::{Machine, MachineConfig, Step, VirtioConfig};
use ftvm_replay::{Header, LogReader, LogWriter};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The images of a recorded machine.
pub struct ImagePaths {
    /// Firmware.
    pub firmware: PathBuf,
    /// Kernel, if any.
    pub kernel: Option<PathBuf>,
    /// Initrd, if any.
    pub initrd: Option<PathBuf>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes the configuration record of the log header.
pub fn config_record(config: &MachineConfig, paths: &ImagePaths) -> Vec<u8> {
    let mut out = String::from("ftvm-config 1\n");
    // The machine model's one build-dependent size the guest sees: a log
    // replays only on a build whose queues are as large.
    out.push_str(&format!("virtio-queue-max {QUEUE_SIZE_MAX}\n"));
    out.push_str(&format!("memory {}\n", config.memory_size));
    out.push_str(&format!("cmdline {}\n", hex(config.cmdline.as_bytes())));
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    out.push_str(&format!(
        "firmware {:016x} {}\n",
        hash_bytes(&config.firmware),
        hex(abs(&paths.firmware).as_os_str().as_encoded_bytes())
    ));
    if let (Some(kernel), Some(path)) = (&config.kernel, &paths.kernel) {
        out.push_str(&format!(
            "kernel {:016x} {}\n",
            hash_bytes(kernel),
            hex(abs(path).as_os_str().as_encoded_bytes())
        ));
    }
    if let (Some(initrd), Some(path)) = (&config.initrd, &paths.initrd) {
        out.push_str(&format!(
            "initrd {:016x} {}\n",
            hash_bytes(initrd),
            hex(abs(path).as_os_str().as_encoded_bytes())
        ));
    }
    for device in &config.virtio {
        match device {
            VirtioConfig::Block {
                capacity_sectors,
                read_only,
                serial,
            } => out.push_str(&format!(
                "block {capacity_sectors} {} {}\n",
                u8::from(*read_only),
                hex(serial.as_bytes())
            )),
            VirtioConfig::Net { mac } => out.push_str(&format!("net {}\n", hex(mac))),
            VirtioConfig::Rng => out.push_str("rng\n"),
        }
    }
    out.into_bytes()
}

fn read_checked(what: &str, hash: &str, path_hex: &str) -> anyhow::Result<Vec<u8>> {
    let path = unhex(path_hex)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| anyhow::anyhow!("the log's {what} path is malformed"))?;
    let data = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("cannot read the recorded {what} {path}: {e}"))?;
    let found = format!("{:016x}", hash_bytes(&data));
    if found != hash {
        anyhow::bail!(
            "the {what} {path} has changed since the recording (hash {found}, recorded {hash})"
        );
    }
    Ok(data)
}

/// Rebuilds the machine configuration from a log header, loading and checking the images.
pub fn parse_config_record(record: &[u8]) -> anyhow::Result<MachineConfig> {
    let text = std::str::from_utf8(record)
        .map_err(|_| anyhow::anyhow!("the log's configuration record is not text"))?;
    let mut lines = text.lines();
    if lines.next() != Some("ftvm-config 1") {
        anyhow::bail!("the log's configuration record has an unknown format");
    }
    let mut config = MachineConfig::default();
    // Logs from before the line was written had queues of 256 entries.
    let mut queue_max = 256;
    for line in lines {
        let fields: Vec<&str> = line.split(' ').collect();
        let bad = || anyhow::anyhow!("malformed line in the log's configuration record: `{line}`");
        match fields.as_slice() {
            ["virtio-queue-max", n] => queue_max = n.parse().map_err(|_| bad())?,
            ["memory", n] => config.memory_size = n.parse().map_err(|_| bad())?,
            ["cmdline", h] => {
                config.cmdline = unhex(h)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(bad)?
            }
            ["firmware", hash, path] => config.firmware = read_checked("firmware", hash, path)?,
            ["kernel", hash, path] => config.kernel = Some(read_checked("kernel", hash, path)?),
            ["initrd", hash, path] => config.initrd = Some(read_checked("initrd", hash, path)?),
            ["block", n, ro, serial] => config.virtio.push(VirtioConfig::Block {
                capacity_sectors: n.parse().map_err(|_| bad())?,
                read_only: *ro == "1",
                serial: unhex(serial)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(bad)?,
            }),
            ["net", mac] => {
                let mac: [u8; 6] = unhex(mac).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
                config.virtio.push(VirtioConfig::Net { mac });
            }
            ["rng"] => config.virtio.push(VirtioConfig::Rng),
            _ => return Err(bad()),
        }
    }
    if queue_max != QUEUE_SIZE_MAX {
        anyhow::bail!(
            "the log was recorded by a build whose virtio queues have {queue_max} entries; this one's have {QUEUE_SIZE_MAX}, so the guest would run differently: replay it with the build that recorded it"
        );
    }
    Ok(config)
}

/// Opens a log file for recording.
pub fn create_log(
    path: &Path,
    config: &MachineConfig,
    paths: &ImagePaths,
) -> anyhow::Result<LogWriter<BufWriter<std::fs::File>>> {
    let file = std::fs::File::create(path)
        .map_err(|e| anyhow::anyhow!("cannot create the log {}: {e}", path.display()))?;
    let header = Header::new(config_record(config, paths));
    Ok(LogWriter::new(
        BufWriter::with_capacity(1 << 20, file),
        &header,
    )?)
}

/// Runs `machine` to its end while recording. `on_step` sees every step's
/// console output and may stop the run (the user's Ctrl-A x) by returning true.
pub fn record<W: Write>(
    machine: &mut Machine,
    recorder: &mut Recorder<'_, W>,
    on_step: &mut dyn FnMut(&mut Machine, &mut Recorder<'_, W>) -> bool,
) -> anyhow::Result<Step> {
    let outcome = loop {
        let step = replay::record_step(machine, recorder)?;
        let stop = on_step(machine, recorder);
        if let Some(e) = recorder.error() {
            anyhow::bail!("cannot write the log: {e}");
        }
        match step {
            Step::Running | Step::Reboot if !stop => {}
            Step::Running | Step::Reboot => break Step::Running,
            other => break other,
        }
    };
    replay::record_end(machine, recorder, outcome);
    Ok(outcome)
}

/// What `ftvm replay` prints at the end.
pub struct ReplaySummary {
    /// Instructions executed.
    pub instructions: u64,
    /// Guest time covered, in seconds.
    pub guest_seconds: f64,
    /// Host time taken, in seconds.
    pub host_seconds: f64,
    /// Digests compared.
    pub digests_checked: u64,
    /// Backend requests checked.
    pub outputs_checked: u64,
    /// How the recorded run ended.
    pub end: Step,
}

/// Replays the log at `path`, handing the console output to `output`.
pub fn replay_file(path: &Path, output: &mut dyn FnMut(&[u8])) -> anyhow::Result<ReplaySummary> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open the log {}: {e}", path.display()))?;
    let (reader, header) = LogReader::new(BufReader::with_capacity(1 << 20, file))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let config = parse_config_record(&header.config)?;
    let mut replayer = Replayer::new(reader);
    let started = Instant::now();
    let mut machine = Machine::new(config, &mut replayer)?;
    let end = loop {
        if let Some(e) = replayer.take_error() {
            return Err(e.into());
        }
        if let Some(status) = replayer.recorded_end() {
            // A run the user stopped ends here; a power-off must match.
            if status == ftvm_replay::EndStatus::Stopped {
                break Step::Running;
            }
        }
        let step = replay::replay_step(&mut machine, &mut replayer)?;
        let out = machine.take_console_output();
        if !out.is_empty() {
            output(&out);
        }
        if let Some(e) = replayer.take_error() {
            return Err(e.into());
        }
        match step {
            Step::Running | Step::Reboot => {}
            Step::PowerOff(_) | Step::Stuck => {
                replay::replay_end(&mut machine, &mut replayer, step);
                if let Some(e) = replayer.take_error() {
                    return Err(e.into());
                }
                break step;
            }
        }
    };
    let stats = replayer.stats();
    Ok(ReplaySummary {
        instructions: machine.icount(),
        guest_seconds: machine.mtime() as f64 / ftvm_machine::layout::TIMEBASE_HZ as f64,
        host_seconds: started.elapsed().as_secs_f64(),
        digests_checked: stats.digests_checked,
        outputs_checked: stats.outputs_checked,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_record_names_the_queue_size_and_parses_back() {
        let record = b"ftvm-config 1\nvirtio-queue-max 512\nmemory 4096\nrng\n".to_vec();
        let written = String::from_utf8(config_record(
            &MachineConfig::default(),
            &ImagePaths {
                firmware: PathBuf::from("/nonexistent"),
                kernel: None,
                initrd: None,
            },
        ))
        .expect("text");

        let config = parse_config_record(&record).expect("parses");

        assert!(
            written.contains(&format!("\nvirtio-queue-max {QUEUE_SIZE_MAX}\n")),
            "{written}"
        );
        assert_eq!(config.memory_size, 4096);
        assert_eq!(config.virtio, vec![VirtioConfig::Rng]);
    }

    #[test]
    fn test_a_log_of_a_build_with_other_queues_is_refused_by_name() {
        let old = b"ftvm-config 1\nmemory 4096\n";
        let other = b"ftvm-config 1\nvirtio-queue-max 1024\nmemory 4096\n";

        let old_err = parse_config_record(old).expect_err("a log without the line");
        let other_err = parse_config_record(other).expect_err("other queues");

        assert!(
            old_err.to_string().contains("have 256 entries"),
            "{old_err}"
        );
        assert!(
            other_err.to_string().contains("have 1024 entries"),
            "{other_err}"
        );
    }
}
