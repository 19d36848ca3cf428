//! The ftvm command line.
//!
//! `ftvm run` boots a machine (by default the fetched Debian guest) with the
//! console on the terminal; `ftvm primary` and `ftvm backup` run it as a
//! fault-tolerant pair, `ftvm status` shows a side's state and `ftvm demo`
//! shows a failover; `ftvm images fetch` obtains the guest images.

mod cli;
mod console;
mod demo;
mod demo_net;
mod ft;
mod live;
mod record;

use std::process::ExitCode;

/// Buffers of at most this many bytes come from the allocator's heap, not
/// from a mapping of their own (32 MiB, the most glibc takes).
const MMAP_THRESHOLD: i32 = 32 << 20;

/// Free heap memory kept for reuse before it is given back to the system.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Keeps the device data buffers in the allocator's heap. Every disk request
/// and completion carries its data in a buffer of its own (up to
/// `MAX_REQUEST_BYTES`), allocated on one thread and freed on another. With
/// glibc's defaults, a buffer that size was a fresh mapping or a fresh
/// extension of the heap that the free gave back at once, so every request
/// faulted in and zeroed each of its pages again: in the 1 MiB disk-write
/// phase of `bench/ft.sh`, page faults, page zeroing and unmapping took
/// about a sixth of the vCPU thread. With the heap kept, the buffers are
/// reused.
fn tune_allocator() {
    // SAFETY: mallopt only sets parameters of glibc's allocator; called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    match cli::main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ftvm: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
