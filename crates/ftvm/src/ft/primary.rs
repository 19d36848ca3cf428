//! `ftvm primary`: runs the guest live, streams the log to the backup, and
//! holds every output until the backup has acknowledged the log up to it.
//!
//! The vCPU runs on the main thread with a [`Recorder`] in front of the live
//! environment; the recorder writes into the [`LogPipe`], which a sender
//! thread drains into the TCP stream. A reader thread takes the backup's
//! acknowledgements and releases outputs from the [`OutputGate`] as they
//! arrive, so outputs never wait for the vCPU. When the backup is declared
//! failed and this side wins the arbiter, the gate opens, logging stops and
//! the guest runs on alone.

use super::gate::OutputGate;
use super::pipe::LogPipe;
use super::{read_message, start_heartbeats, FtArgs, Hooks, Shared};
use crate::console::Console;
use crate::live::{Backends, LiveEnvironment};
use ftvm_machine::replay::{self, Recorder};
use ftvm_machine::{Machine, MachineConfig, Step};
use ftvm_protocol::{Input, Message, Role};
use ftvm_replay::{Header, LogWriter};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the primary needs besides its flags.
pub struct PrimarySetup {
    /// The machine.
    pub config: MachineConfig,
    /// The log header's configuration record.
    pub config_record: Vec<u8>,
    /// The live environment (devices open).
    pub env: LiveEnvironment,
    /// The console.
    pub console: Console,
    /// The backends (shared with the gate).
    pub backends: Arc<Backends>,
}

/// Runs the primary until the guest powers off (its exit status), the user
/// quits, or this side halts (an error).
pub fn run(
    listen: SocketAddr,
    args: &FtArgs,
    setup: PrimarySetup,
) -> anyhow::Result<std::process::ExitCode> {
    let arbiter = ftvm_arbiter::open(&args.arbiter)
        .map_err(|e| anyhow::anyhow!("--arbiter {}: {e}", args.arbiter))?;
    let listener = TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for the backup: {e}"))?;
    let udp = UdpSocket::bind(listener.local_addr()?)
        .map_err(|e| anyhow::anyhow!("cannot bind UDP {listen} for heartbeats: {e}"))?;
    eprintln!(
        "ftvm primary: waiting for the backup on {} (arbiter: {})",
        listener.local_addr()?,
        arbiter.describe()
    );
    let (mut stream, peer) = listener
        .accept()
        .map_err(|e| anyhow::anyhow!("accepting the backup: {e}"))?;
    drop(listener);
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let hello = read_message(&mut stream)
        .map_err(|e| anyhow::anyhow!("the backup at {peer} did not say hello: {e}"))?;
    let Message::Hello { udp_port } = hello else {
        anyhow::bail!("the backup at {peer} sent {hello:?} instead of hello");
    };
    stream.set_read_timeout(None)?;
    let session = super::new_session()?;
    stream.write_all(
        &Message::Welcome {
            session,
            udp_port: udp.local_addr()?.port(),
        }
        .encode(),
    )?;
    eprintln!("ftvm primary: backup connected from {peer}, session {session:016x}");

    let PrimarySetup {
        config,
        config_record,
        mut env,
        console,
        backends,
    } = setup;
    let pipe = LogPipe::new(
        args.log_buffer as usize,
        Duration::from_micros(args.flush_gap_us),
    );
    let console = Arc::new(Mutex::new(console));
    let gate_console = console.clone();
    let gate = OutputGate::new(
        pipe.clone(),
        backends,
        Box::new(move |bytes: &[u8]| super::lock(&gate_console).write(bytes)),
        !args.non_shared_disk,
        args.backup_reads,
    );
    env.set_output_sink(gate.clone());

    let hooks = Hooks {
        entries: Some({
            let pipe = pipe.clone();
            Box::new(move || pipe.entries())
        }),
        release: Some({
            let gate = gate.clone();
            Box::new(move |upto| gate.release(upto))
        }),
        go_live: Some({
            let gate = gate.clone();
            let pipe = pipe.clone();
            Box::new(move |()| {
                pipe.break_channel();
                gate.open();
                eprintln!("\r\nftvm primary: the backup is gone; running alone");
            })
        }),
        halt: Some({
            let pipe = pipe.clone();
            Box::new(move |reason: String| {
                pipe.break_channel();
                eprintln!("\r\nftvm primary: {reason}");
            })
        }),
        channel_lost: Some({
            let pipe = pipe.clone();
            Box::new(move |()| pipe.break_channel())
        }),
    };
    let peer_udp = SocketAddr::new(peer.ip(), udp_port);
    let shared = super::shared(
        Role::Primary,
        session,
        args,
        udp,
        peer_udp,
        stream.try_clone()?,
        arbiter,
        hooks,
    );
    start_heartbeats(&shared)?;
    if let Some(path) = &args.control {
        super::control::serve(path, shared.clone(), {
            let pipe = pipe.clone();
            let gate = gate.clone();
            let shared = shared.clone();
            Box::new(move || super::control::Counters {
                log_bytes: pipe.bytes(),
                held: gate.held(),
                delays: gate.delays(),
                waited: shared.throttled_total(),
            })
        })?;
    }

    // Sender: the log, as it is written.
    let mut out = stream.try_clone()?;
    let sender_pipe = pipe.clone();
    let sender_shared = shared.clone();
    std::thread::Builder::new()
        .name("log-sender".into())
        .spawn(move || {
            while let Some(chunk) = sender_pipe.take(Duration::from_millis(10)) {
                if out.write_all(&chunk).is_err() {
                    sender_shared.channel_lost();
                    return;
                }
                sender_pipe.recycle(chunk);
            }
            let _ = out.flush();
        })?;
    // Acknowledgements.
    let mut acks = stream;
    let ack_shared = shared.clone();
    let ack_gate = gate.clone();
    std::thread::Builder::new()
        .name("log-acks".into())
        .spawn(move || loop {
            match read_message(&mut acks) {
                Ok(m) => {
                    if let Message::Ack { mtime, .. } = m {
                        ack_gate.backup_executed(mtime);
                    }
                    ack_shared.feed(Input::Message(m));
                }
                Err(_) => {
                    ack_shared.channel_lost();
                    return;
                }
            }
        })?;

    let log = LogWriter::new(pipe.writer(), &Header::new(config_record))?;
    let quit = env.quit_flag();
    let max_pause = Duration::from_millis(args.max_lag_ms.max(1));
    let result = run_vcpu(
        config,
        &mut env,
        log,
        &shared,
        &gate,
        &pipe,
        &quit,
        max_pause,
        args.backup_reads,
    );
    let console_restore = console.clone();
    super::lock(&console_restore).restore();
    env.shutdown();
    result
}

#[allow(clippy::too_many_arguments)]
fn run_vcpu(
    config: MachineConfig,
    env: &mut LiveEnvironment,
    log: LogWriter<super::pipe::PipeWriter>,
    shared: &Arc<Shared>,
    gate: &Arc<OutputGate>,
    pipe: &Arc<LogPipe>,
    quit: &std::rc::Rc<std::cell::Cell<bool>>,
    max_pause: Duration,
    backup_reads: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let mut recorder = Recorder::new(env, log);
    if backup_reads {
        // The backup reads the shared disk itself (the gate orders writes
        // after the reads it has not executed yet).
        recorder.elide_read_data();
    }
    let mut machine = Machine::new(config, &mut recorder)?;
    // Paired: record.
    let outcome = loop {
        if let Some(reason) = shared.halted() {
            anyhow::bail!("{reason}");
        }
        if shared.live_epoch().is_some() {
            break None;
        }
        // A backup lagging beyond the bound pauses the vCPU until the lag is
        // back under three quarters of the bound. The guest runs no slice
        // meanwhile, so its executed time stands while the backup's
        // advances: the lag shrinks as the backup catches up, which reports
        // its progress as it goes. The guest's clock runs on through the
        // pause, so the next slice's time jumps by its length; the node is
        // told, and does not count the jump as lag (the backup replays it
        // at once). The guest runs a slice at least once per bound if the
        // backup stays behind.
        if shared.throttled() {
            let started = Instant::now();
            while shared.throttled()
                && shared.live_epoch().is_none()
                && started.elapsed() < max_pause
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let paused = started.elapsed();
            shared.add_throttled(paused);
            shared.feed(Input::Paused {
                ticks: u64::try_from(
                    paused.as_nanos() * u128::from(ftvm_machine::layout::TIMEBASE_HZ)
                        / 1_000_000_000,
                )
                .unwrap_or(u64::MAX),
            });
        }
        let step = replay::record_step(&mut machine, &mut recorder)?;
        // Console output forces a flush of the log (the gate does it);
        // otherwise the sender sends at least every 10 ms (fewer wake-ups on both sides; outputs never wait for it).
        gate.console(machine.take_console_output());
        shared.executed(machine.icount(), machine.mtime());
        if let Some(e) = recorder.error() {
            anyhow::bail!("cannot write the log: {e}");
        }
        match step {
            Step::Running | Step::Reboot if !quit.get() => {}
            Step::Running | Step::Reboot => break Some(Step::Running),
            other => break Some(other),
        }
    };
    let outcome = match outcome {
        Some(step) => {
            // The end is in the log; the outputs before it go out once the
            // backup has it all (or this side runs alone).
            replay::record_end(&mut machine, &mut recorder, step);
            let _ = recorder.finish();
            shared.close();
            pipe.close();
            let deadline = Instant::now() + Duration::from_secs(10);
            while gate.held().0 > 0 && Instant::now() < deadline && shared.halted().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            step
        }
        None => {
            // Alone: no more log, outputs go straight out.
            drop(recorder);
            env.clear_output_sink();
            loop {
                let step = machine.step(env)?;
                let out = machine.take_console_output();
                gate.console(out);
                shared.executed(machine.icount(), machine.mtime());
                match step {
                    Step::Running | Step::Reboot if !quit.get() => {}
                    Step::Running | Step::Reboot => break Step::Running,
                    other => break other,
                }
            }
        }
    };
    if let Some(reason) = shared.halted() {
        anyhow::bail!("{reason}");
    }
    super::finish(outcome)
}
