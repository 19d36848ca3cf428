//! Downloads from the mirror, with checksums and a progress display.
//!
//! HTTP goes through the `curl` program (http and https alike, proxies as the user has
//! configured them); the bytes stream through this process, which hashes them and shows
//! progress on stderr.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::ImagesError;

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a byte string, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The SHA-256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, ImagesError> {
    let file = File::open(path).map_err(ImagesError::io("open", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(ImagesError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Downloads `url` into memory.
pub fn fetch_bytes(url: &str, label: &str, progress: bool) -> Result<Vec<u8>, ImagesError> {
    let mut data = Vec::new();
    stream(url, &mut data, label, None, progress).map_err(|e| match e {
        StreamError::Http(cause) => ImagesError::Unreachable {
            url: url.to_string(),
            cause,
        },
        StreamError::Local(e) => e,
        StreamError::Write(source) => ImagesError::Io {
            action: "buffer",
            path: label.into(),
            source,
        },
    })?;
    Ok(data)
}

/// What a verified download must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The SHA-256, lower-case hex.
    pub sha256: &'a str,
    /// The size in bytes.
    pub size: u64,
}

/// Downloads `url` to `dest`, checking size and SHA-256; `dest` appears only if both
/// match (the bytes go to `dest.part` first).
pub fn fetch_verified(
    url: &str,
    dest: &Path,
    expected: Expected<'_>,
    progress: bool,
) -> Result<(), ImagesError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dest.display().to_string());
    let part = dest.with_file_name(format!("{name}.part"));
    let mut file = File::create(&part).map_err(ImagesError::io("create", &part))?;
    let result = stream(url, &mut file, &name, Some(expected.size), progress);
    drop(file);
    let outcome = match result {
        Ok((size, _)) if size != expected.size => Err(ImagesError::SizeMismatch {
            file: name,
            expected: expected.size,
            got: size,
        }),
        Ok((_, sha256)) if sha256 != expected.sha256 => Err(ImagesError::ChecksumMismatch {
            file: name,
            expected: expected.sha256.to_string(),
            got: sha256,
        }),
        Ok(_) => std::fs::rename(&part, dest).map_err(ImagesError::io("rename", &part)),
        Err(StreamError::Http(cause)) => Err(ImagesError::Unreachable {
            url: url.to_string(),
            cause,
        }),
        Err(StreamError::Local(e)) => Err(e),
        Err(StreamError::Write(source)) => Err(ImagesError::Io {
            action: "write",
            path: part.clone(),
            source,
        }),
    };
    if outcome.is_err() {
        // A partial or wrong file is useless; the error that matters is the one above.
        let _ = std::fs::remove_file(&part);
    }
    outcome
}

enum StreamError {
    /// curl failed: the message it printed.
    Http(String),
    /// The sink failed.
    Write(std::io::Error),
    /// curl could not be run.
    Local(ImagesError),
}

/// Streams the body of `url` into `sink`; returns its size and SHA-256.
fn stream(
    url: &str,
    sink: &mut dyn Write,
    label: &str,
    total: Option<u64>,
    progress: bool,
) -> Result<(u64, String), StreamError> {
    let mut child = Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--proto",
            "=http,https",
            "--proto-redir",
            "=http,https",
            "--connect-timeout",
            "30",
            // Give up on a transfer that stalls below 1 kB/s for a minute.
            "--speed-limit",
            "1000",
            "--speed-time",
            "60",
            "--",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            StreamError::Local(ImagesError::Spawn {
                program: "curl".into(),
                source,
            })
        })?;
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut meter = Meter::new(label, total, progress);
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut write_error = None;
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    write_error = Some(e);
                    break;
                }
            };
            if let Err(e) = sink.write_all(&buf[..n]) {
                write_error = Some(e);
                break;
            }
            hasher.update(&buf[..n]);
            received += n as u64;
            meter.update(received);
        }
    }
    if write_error.is_some() {
        // Stop the transfer; its outcome no longer matters.
        let _ = child.kill();
    }
    let status = child.wait();
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if let Some(e) = write_error {
        meter.abandon();
        return Err(StreamError::Write(e));
    }
    match status {
        Ok(status) if status.success() => {
            meter.finish(received);
            Ok((received, hex(&hasher.finalize())))
        }
        Ok(status) => {
            meter.abandon();
            Err(StreamError::Http(curl_cause(&stderr, &status.to_string())))
        }
        Err(e) => {
            meter.abandon();
            Err(StreamError::Http(e.to_string()))
        }
    }
}

/// The last line curl printed, without its `curl: ` prefix.
fn curl_cause(stderr: &str, status: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .map(|l| l.strip_prefix("curl: ").unwrap_or(l).to_string())
        .unwrap_or_else(|| format!("curl {status}"))
}

/// Human-readable byte counts: `812 B`, `199.3 KiB`, `31.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let x = n as f64;
    if x < KIB {
        format!("{n} B")
    } else if x < KIB * KIB {
        format!("{:.1} KiB", x / KIB)
    } else {
        format!("{:.1} MiB", x / (KIB * KIB))
    }
}

/// The progress display of one download on stderr: a line redrawn in place on a
/// terminal, or a line every few seconds otherwise.
struct Meter {
    label: String,
    total: Option<u64>,
    enabled: bool,
    tty: bool,
    start: Instant,
    last_shown: Instant,
    drawn: bool,
}

impl Meter {
    const TTY_INTERVAL: Duration = Duration::from_millis(100);
    const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

    fn new(label: &str, total: Option<u64>, enabled: bool) -> Self {
        let now = Instant::now();
        let meter = Self {
            label: label.to_string(),
            total,
            enabled,
            tty: std::io::stderr().is_terminal(),
            start: now,
            last_shown: now,
            drawn: false,
        };
        if enabled && !meter.tty {
            match total {
                Some(t) => super::stderr_line!("downloading {label} ({})", human_bytes(t)),
                None => super::stderr_line!("downloading {label}"),
            }
        }
        meter
    }

    fn status(&self, done: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let rate = human_bytes((done as f64 / secs) as u64);
        match self.total {
            Some(total) if total > 0 => format!(
                "{}  {} / {}  {:3}%  {rate}/s",
                self.label,
                human_bytes(done),
                human_bytes(total),
                done.saturating_mul(100) / total,
            ),
            _ => format!("{}  {}  {rate}/s", self.label, human_bytes(done)),
        }
    }

    fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let interval = if self.tty {
            Self::TTY_INTERVAL
        } else {
            Self::PLAIN_INTERVAL
        };
        if self.last_shown.elapsed() < interval {
            return;
        }
        self.last_shown = Instant::now();
        if self.tty {
            super::stderr_text!("\r\x1b[K{}", self.status(done));
            self.drawn = true;
        } else {
            super::stderr_line!("  {}", self.status(done));
        }
    }

    fn finish(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64();
        let line = format!("{}  {} in {secs:.1} s", self.label, human_bytes(done));
        if self.tty {
            super::stderr_line!("\r\x1b[K{line}");
        } else {
            super::stderr_line!("  {line}");
        }
        self.drawn = false;
    }

    fn abandon(&mut self) {
        if self.enabled && self.tty && self.drawn {
            super::stderr_line!();
            self.drawn = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sha256_hex_of_abc_matches_fips_180_2_example() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn test_curl_cause_is_last_line_without_prefix() {
        let stderr = "\ncurl: (6) Could not resolve host: mirror.invalid\n";

        assert_eq!(
            curl_cause(stderr, "exit status: 6"),
            "(6) Could not resolve host: mirror.invalid"
        );
    }

    #[test]
    fn test_curl_cause_without_output_names_status() {
        assert_eq!(curl_cause("", "exit status: 7"), "curl exit status: 7");
    }

    #[test]
    fn test_human_bytes_picks_unit() {
        let shown: Vec<_> = [812, 204_072, 32_702_464]
            .into_iter()
            .map(human_bytes)
            .collect();

        assert_eq!(shown, ["812 B", "199.3 KiB", "31.2 MiB"]);
    }

    #[test]
    fn test_unreachable_mirror_gives_one_line_error() {
        // Port 9 on the loopback address refuses connections at once; no traffic leaves.
        let err = fetch_bytes(
            "http://127.0.0.1:9/debian/dists/trixie/Release",
            "Release",
            false,
        )
        .expect_err("nothing listens there");

        let message = err.to_string();
        assert!(
            message.starts_with(
                "cannot reach the Debian archive at http://127.0.0.1:9/debian/dists/trixie/Release: "
            ) && !message.contains('\n'),
            "{message}"
        );
    }
}
