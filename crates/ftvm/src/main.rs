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

fn main() -> ExitCode {
    match cli::main() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ftvm: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
