//! The guest's serial console on the host: the terminal in raw mode (Ctrl-A x
//! quits, Ctrl-A Ctrl-A sends Ctrl-A, as in QEMU), a file, or nothing.

use crate::live::HostEvent;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::Sender;

/// Where the console goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialTarget {
    /// The terminal (input and output).
    Stdio,
    /// Output to a file; no input.
    File(PathBuf),
    /// Output discarded; no input.
    Null,
}

const CTRL_A: u8 = 0x01;

/// The host end of the console.
pub struct Console {
    out: Box<dyn Write + Send>,
    has_input: bool,
    saved_termios: Option<libc::termios>,
}

impl Console {
    /// Opens the console target; typed input goes to `events`.
    pub fn open(target: &SerialTarget, events: Sender<HostEvent>) -> anyhow::Result<Console> {
        match target {
            SerialTarget::Stdio => {
                let saved_termios = raw_mode();
                let tx = events;
                std::thread::Builder::new()
                    .name("console-in".into())
                    .spawn(move || {
                        let mut stdin = std::io::stdin();
                        let mut buf = [0u8; 256];
                        let mut escape = false;
                        loop {
                            let n = match stdin.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let mut bytes = Vec::with_capacity(n);
                            for &b in &buf[..n] {
                                if escape {
                                    escape = false;
                                    match b {
                                        b'x' | b'X' => {
                                            let _ = tx.send(HostEvent::Quit);
                                            return;
                                        }
                                        CTRL_A => bytes.push(CTRL_A),
                                        _ => {}
                                    }
                                } else if b == CTRL_A {
                                    escape = true;
                                } else {
                                    bytes.push(b);
                                }
                            }
                            if !bytes.is_empty() && tx.send(HostEvent::Console(bytes)).is_err() {
                                return;
                            }
                        }
                    })?;
                Ok(Console {
                    out: Box::new(std::io::stdout()),
                    has_input: true,
                    saved_termios,
                })
            }
            SerialTarget::File(path) => {
                let file = File::create(path).map_err(|e| {
                    anyhow::anyhow!("cannot create the serial file {}: {e}", path.display())
                })?;
                Ok(Console {
                    out: Box::new(file),
                    has_input: false,
                    saved_termios: None,
                })
            }
            SerialTarget::Null => Ok(Console {
                out: Box::new(std::io::sink()),
                has_input: false,
                saved_termios: None,
            }),
        }
    }

    /// True when the console can send input (the terminal).
    pub fn has_input(&self) -> bool {
        self.has_input
    }

    /// Writes guest output.
    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
        let _ = self.out.flush();
    }

    /// Puts the terminal back as it was.
    pub fn restore(&mut self) {
        if let Some(t) = self.saved_termios.take() {
            // SAFETY: tcsetattr reads a termios we got from tcgetattr on the same fd.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Puts stdin in raw mode if it is a terminal, returning the settings to restore.
fn raw_mode() -> Option<libc::termios> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } != 1 {
        return None;
    }
    // SAFETY: termios is plain data; tcgetattr fills it for a valid tty fd.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut t) } != 0 {
        return None;
    }
    let saved = t;
    // SAFETY: cfmakeraw edits the struct we own; tcsetattr applies it to stdin.
    unsafe {
        libc::cfmakeraw(&mut t);
        libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &t);
    }
    Some(saved)
}
