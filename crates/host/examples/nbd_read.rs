//! Sequential read throughput of the disk backends, NBD against the file:
//! `cargo run --release -p ftvm-host --example nbd_read [MIB [PATTERN...]]`.
//!
//! Starts `qemu-nbd` (Debian package qemu-utils) on a temporary raw image of `MIB`
//! MiB (256 by default) on a free port of 127.0.0.1, then reads the whole image
//! sequentially through [`Disk::open_nbd`] and through [`Disk::open_file`] on the
//! same image, keeping `DEPTH` requests of `KIB` KiB in flight the way a guest's
//! virtio-blk does (each completion submits the next request). A `PATTERN` is
//! `KIBxDEPTH` (default: `1024x1 1016x2 128x4 256x8`; `dd bs=1M iflag=direct` in a
//! guest gives about `1016x2`, buffered reads with readahead give `128x4`-`256x8`).
//!
//! Prints MB/s (10^6 bytes per second, as dd does), best and median of `RUNS` (env,
//! default 3) runs, and per MiB read: the CPU time of this whole process, that of
//! `qemu-nbd`, and this process's context switches; the CPU and switch figures are
//! the steadier ones on a loaded machine. The server is stopped by its PID at the end.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use ftvm_host::backends::{Disk, DiskDone, DiskOp, Notify};

/// `qemu-nbd` serving a temporary image; killed by its PID and the image removed on drop.
struct Server {
    child: Child,
    image: PathBuf,
    port: u16,
}

impl Server {
    fn start(mib: u64) -> Result<Server, String> {
        let image = std::env::temp_dir().join(format!("ftvm-nbd-read-{}.img", std::process::id()));
        // Non-zero content, so that nothing along the way can shortcut zeros.
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        {
            use std::io::Write;
            let mut file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
            for _ in 0..mib {
                file.write_all(&chunk).map_err(|e| e.to_string())?;
            }
            // Dirty pages of a just-written image make the server's first gigabyte
            // or so of reads several times slower; measure with clean ones.
            file.sync_all().map_err(|e| e.to_string())?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("qemu-nbd")
            .args(["-f", "raw", "-b", "127.0.0.1", "-p", &port.to_string()])
            .args(["-x", "bench", "--persistent"])
            .arg(&image)
            .stdin(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_file(&image);
                return Err(format!("cannot start qemu-nbd (qemu-utils): {err}"));
            }
        };
        let server = Server { child, image, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("qemu-nbd did not listen on port {port}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn collector() -> (Notify<DiskDone>, Receiver<DiskDone>) {
    let (tx, rx) = channel();
    (Box::new(move |done| drop(tx.send(done))), rx)
}

/// What this process and the server have used so far.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// CPU time (user + system) of this process.
    cpu: Duration,
    /// Context switches of this process, voluntary and not.
    switches: u64,
    /// CPU time of the server (none for the file backend).
    server_cpu: Duration,
}

impl Usage {
    fn now(server: u32) -> Usage {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            switches: (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
            server_cpu: server_cpu(server),
        }
    }

    fn since(self, start: Usage) -> Usage {
        Usage {
            cpu: self.cpu - start.cpu,
            switches: self.switches - start.switches,
            server_cpu: self.server_cpu - start.server_cpu,
        }
    }
}

/// utime + stime of process `pid` from /proc (clock ticks of 10 ms on Linux).
fn server_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which ends with the last ')').
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf only reads its argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total = ticks(11) + ticks(12);
    Duration::from_nanos(total * 1_000_000_000 / hz)
}

/// Reads `size` bytes sequentially in requests of `chunk` bytes, `depth` in flight;
/// returns the wall time and what was used.
fn run(
    disk: &Disk,
    rx: &Receiver<DiskDone>,
    (size, chunk, depth): (u64, u32, usize),
    server: u32,
) -> Result<(Duration, Usage), String> {
    let requests = size.div_ceil(u64::from(chunk));
    let (start, usage) = (Instant::now(), Usage::now(server));
    let mut next = 0u64;
    let submit = |next: &mut u64| {
        let offset = *next * u64::from(chunk);
        let len = (size - offset).min(u64::from(chunk)) as u32;
        disk.submit(*next, DiskOp::Read { offset, len });
        *next += 1;
    };
    while next < requests.min(depth as u64) {
        submit(&mut next);
    }
    for _ in 0..requests {
        let done = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "no completion within 30 s".to_owned())?;
        match done.result {
            Ok(data) => {
                let offset = done.id * u64::from(chunk);
                // Check one byte of each request against the pattern written.
                let expect = ((offset % (1 << 20)) % 251) as u8;
                if data.first() != Some(&expect) {
                    return Err(format!("wrong data at offset {offset}"));
                }
            }
            Err(err) => return Err(err.to_string()),
        }
        if next < requests {
            submit(&mut next);
        }
    }
    Ok((start.elapsed(), Usage::now(server).since(usage)))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let mut patterns: Vec<(u32, usize)> = args
        .filter_map(|p| {
            let (kib, depth) = p.split_once('x')?;
            Some((kib.parse::<u32>().ok()? * 1024, depth.parse().ok()?))
        })
        .collect();
    if patterns.is_empty() {
        patterns = vec![
            (1024 << 10, 1),
            (1016 << 10, 2),
            (128 << 10, 4),
            (256 << 10, 8),
        ];
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let server = match Server::start(mib) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("nbd_read: {err}");
            return ExitCode::FAILURE;
        }
    };
    let size = mib << 20;
    let url = format!("nbd://127.0.0.1:{}/bench", server.port);
    println!("{mib} MiB sequential read, {runs} runs");
    for (chunk, depth) in patterns {
        for backend in ["nbd", "file"] {
            let (notify, rx) = collector();
            let disk = match backend {
                "nbd" => Disk::open_nbd(&url, notify),
                _ => Disk::open_file(&server.image, true, notify),
            };
            let disk = match disk {
                Ok(disk) => disk,
                Err(err) => {
                    eprintln!("nbd_read: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let pid = if backend == "nbd" {
                server.child.id()
            } else {
                0
            };
            let mut walls = Vec::new();
            let mut total = Usage::default();
            for _ in 0..runs {
                match run(&disk, &rx, (size, chunk, depth), pid) {
                    Ok((wall, usage)) => {
                        walls.push(wall);
                        total.cpu += usage.cpu;
                        total.switches += usage.switches;
                        total.server_cpu += usage.server_cpu;
                    }
                    Err(err) => {
                        eprintln!("nbd_read: {backend}: {err}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            disk.close();
            walls.sort();
            let mb_s = |wall: &Duration| size as f64 / wall.as_secs_f64() / 1e6;
            let per_mib = (runs as u64 * mib) as f64;
            println!(
                "{backend:>4} {:>5} KiB x {depth:<2}: best {:7.1} median {:7.1} MB/s  \
                 CPU/MiB {:.3} ms + server {:.3} ms  {:5.1} switches/MiB",
                chunk >> 10,
                walls.first().map_or(0.0, mb_s),
                walls.get(walls.len() / 2).map_or(0.0, mb_s),
                total.cpu.as_secs_f64() * 1e3 / per_mib,
                total.server_cpu.as_secs_f64() * 1e3 / per_mib,
                total.switches as f64 / per_mib,
            );
        }
    }
    ExitCode::SUCCESS
}
