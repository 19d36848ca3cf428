//! `ftvm status`: a Unix control socket on each side of the pair that
//! answers every connection with the side's state as `key value` lines:
//! role, mode, epoch, icount, lag, log bytes and bytes per second, outputs held,
//! how long outputs waited for the output rule (count, total and longest wait
//! since the start), time the vCPU waited for the peer.

use super::Shared;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Counters of the side's buffers, read at each query.
pub struct Counters {
    /// Log bytes written (primary) or received (backup).
    pub log_bytes: u64,
    /// Outputs held by the output rule, and their bytes.
    pub held: (usize, usize),
    /// How long the outputs let out so far waited (the backup: none).
    pub delays: super::gate::Delays,
    /// Time the vCPU waited for the peer: primary, slowed for a lagging
    /// backup; backup, waiting for log to replay.
    pub waited: Duration,
}

/// What a status answer is made of: the side's shared state and its
/// counters. A primary that takes a new backup replaces it.
pub type Source = Arc<Mutex<(Arc<Shared>, Box<dyn Fn() -> Counters + Send>)>>;

/// Serves `ftvm status` on `path` (replacing a stale socket file) from
/// `source`.
pub fn serve(path: &Path, source: Source) -> anyhow::Result<()> {
    if path.exists() {
        std::fs::remove_file(path).map_err(|e| {
            anyhow::anyhow!("cannot replace the control socket {}: {e}", path.display())
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot create the control socket {}: {e}", path.display()))?;
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            // Log bandwidth over the last second or so.
            let mut last = (Instant::now(), 0u64);
            let mut rate = 0.0f64;
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let (shared, c) = {
                    let source = super::lock(&source);
                    (source.0.clone(), (source.1)())
                };
                let elapsed = last.0.elapsed().as_secs_f64();
                if elapsed >= 0.2 {
                    rate = c.log_bytes.saturating_sub(last.1) as f64 / elapsed;
                    last = (Instant::now(), c.log_bytes);
                }
                let s = shared.status();
                let text = format!(
                    "role {}\nmode {}\nepoch {}\nicount {}\nlag_ms {:.1}\nlog_entries {}\nacked {}\nreleased {}\nlog_bytes {}\nlog_bytes_per_s {:.0}\noutputs_held {}\noutputs_held_bytes {}\noutputs_out {}\noutput_wait_us_total {}\noutput_wait_us_max {}\nthrottled {}\nvcpu_waited_ms {}\n",
                    match (s.role, &s.mode) {
                        (ftvm_protocol::Role::Primary, _) => "primary",
                        (ftvm_protocol::Role::Backup, ftvm_protocol::Mode::Alone { .. }) => {
                            "primary (was backup)"
                        }
                        (ftvm_protocol::Role::Backup, _) => "backup",
                    },
                    super::mode_name(&s.mode),
                    s.epoch,
                    shared.icount(),
                    s.lag_ticks as f64 / (ftvm_machine::layout::TIMEBASE_HZ as f64 / 1000.0),
                    s.entries,
                    s.acked,
                    s.released,
                    c.log_bytes,
                    rate,
                    c.held.0,
                    c.held.1,
                    c.delays.count,
                    c.delays.total.as_micros(),
                    c.delays.max.as_micros(),
                    s.throttled,
                    c.waited.as_millis(),
                );
                let _ = conn.write_all(text.as_bytes());
            }
        })?;
    Ok(())
}

/// Asks the side behind `path` for its status.
pub fn query(path: &Path) -> anyhow::Result<String> {
    let mut conn = UnixStream::connect(path)
        .map_err(|e| anyhow::anyhow!("cannot reach the control socket {}: {e}", path.display()))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    conn.read_to_string(&mut text)
        .map_err(|e| anyhow::anyhow!("reading the status from {}: {e}", path.display()))?;
    Ok(text)
}
