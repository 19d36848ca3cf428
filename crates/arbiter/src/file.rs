//! The file arbiter: a record file on storage both hosts share.
//!
//! # Layout
//!
//! `PATH` holds the record of one pair, four lines of UTF-8 text:
//!
//! ```text
//! ftvm-arbiter 1                      format name and version
//! session 00000000000004d2            the session, 16 lowercase hex digits
//! epoch 7                             the highest claimed epoch, decimal
//! holder backup pid 1234 on host X    its holder (no control characters)
//! ```
//!
//! A missing or empty `PATH` means "no record" (an administrator may create it
//! empty). Anything else that is not exactly this layout is corrupt: it is reported
//! and never overwritten, since it may be another program's file or a record this
//! build cannot read.
//!
//! # Atomicity
//!
//! A test-and-set holds an exclusive lock on the side file `PATH.lock` while it reads
//! and replaces `PATH`. The lock is an open-file-description lock (`F_OFD_SETLK`,
//! Linux 3.15): unlike a classic `fcntl` lock it excludes two opens in the same
//! process (two arbiters in one test, or two threads), and unlike `flock(2)` it is a
//! byte-range lock that NFS carries to the server. The lock lives on a separate file
//! because `PATH` is replaced by rename: a new record is written to `PATH.tmp`,
//! fsynced, renamed over `PATH`, and the directory fsynced, so a crash leaves either
//! the old record or the new one, never a torn one.
//!
//! Waiting for the lock is bounded ([`LOCK_WAIT`]): a holder that hangs makes the
//! test-and-set fail, and the caller retries, rather than blocking go-live forever.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{check_holder, Arbiter, ArbiterError, Claim};

/// The first line of a record file.
const RECORD_MAGIC: &str = "ftvm-arbiter 1";

/// How long a test-and-set waits for another process to release the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long to sleep between attempts to take the lock.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// An arbiter that keeps its record in a file on shared storage (`file=PATH`).
#[derive(Debug)]
pub struct FileArbiter {
    /// The record file.
    path: PathBuf,
    /// The lock file, `PATH.lock`.
    lock_path: PathBuf,
    /// Where a new record is written before it is renamed over `path`, `PATH.tmp`.
    tmp_path: PathBuf,
}

/// The record kept in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    session: u64,
    epoch: u64,
    holder: String,
}

impl FileArbiter {
    /// An arbiter on the record file `path`. Does no I/O: files are created at the
    /// first test-and-set.
    pub fn new(path: impl Into<PathBuf>) -> FileArbiter {
        let path = path.into();
        let with_suffix = |suffix: &str| {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        FileArbiter {
            lock_path: with_suffix(".lock"),
            tmp_path: with_suffix(".tmp"),
            path,
        }
    }

    /// The record file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error<'a>(
        path: &'a Path,
        op: &'static str,
    ) -> impl FnOnce(io::Error) -> ArbiterError + 'a {
        move |source| ArbiterError::Io {
            path: path.to_owned(),
            op,
            source,
        }
    }

    /// Opens (creating) the lock file and takes its exclusive lock, waiting at most
    /// [`LOCK_WAIT`]. The lock is released when the returned file is closed.
    fn lock(&self) -> Result<File, ArbiterError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
            .map_err(Self::io_error(&self.lock_path, "open the lock file"))?;
        let start = Instant::now();
        loop {
            // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
            let mut request: libc::flock = unsafe { std::mem::zeroed() };
            request.l_type = libc::F_WRLCK as libc::c_short;
            request.l_whence = libc::SEEK_SET as libc::c_short;
            // l_start = 0 and l_len = 0: the whole file. l_pid must be 0 for OFD locks.
            // SAFETY: the descriptor is open for the duration of the call and
            // `request` is a valid `flock` the kernel only reads.
            let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &request) };
            if rc == 0 {
                return Ok(file);
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN | libc::EACCES) => {}
                _ => return Err(Self::io_error(&self.lock_path, "lock")(error)),
            }
            if start.elapsed() >= LOCK_WAIT {
                let waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                return Err(ArbiterError::LockTimeout {
                    path: self.lock_path.clone(),
                    waited_ms,
                });
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// Reads the record; `None` when the file is missing or empty.
    fn read(&self) -> Result<Option<Record>, ArbiterError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Self::io_error(&self.path, "read")(error)),
        };
        if bytes.is_empty() {
            return Ok(None);
        }
        Record::parse(&bytes)
            .map(Some)
            .map_err(|reason| ArbiterError::Corrupt {
                path: self.path.clone(),
                reason,
            })
    }

    /// Replaces the record durably: temp file, fsync, rename, fsync of the directory.
    fn write(&self, record: &Record) -> Result<(), ArbiterError> {
        let mut tmp =
            File::create(&self.tmp_path).map_err(Self::io_error(&self.tmp_path, "create"))?;
        tmp.write_all(record.to_text().as_bytes())
            .map_err(Self::io_error(&self.tmp_path, "write"))?;
        tmp.sync_all()
            .map_err(Self::io_error(&self.tmp_path, "fsync"))?;
        drop(tmp);
        fs::rename(&self.tmp_path, &self.path).map_err(Self::io_error(
            &self.path,
            "rename the new record into place",
        ))?;
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(Self::io_error(dir, "fsync the directory"))
    }
}

impl Arbiter for FileArbiter {
    fn test_and_set(&mut self, session: u64, epoch: u64, me: &str) -> Result<Claim, ArbiterError> {
        check_holder(me)?;
        let _lock = self.lock()?;
        if let Some(record) = self.read()? {
            if record.session == session && record.epoch >= epoch {
                return Ok(if record.holder == me {
                    Claim::Won
                } else {
                    Claim::Lost {
                        holder: record.holder,
                    }
                });
            }
        }
        self.write(&Record {
            session,
            epoch,
            holder: me.to_owned(),
        })?;
        Ok(Claim::Won)
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }
}

impl Record {
    fn to_text(&self) -> String {
        format!(
            "{RECORD_MAGIC}\nsession {:016x}\nepoch {}\nholder {}\n",
            self.session, self.epoch, self.holder
        )
    }

    fn parse(bytes: &[u8]) -> Result<Record, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_owned())?;
        let Some(body) = text.strip_suffix('\n') else {
            return Err("it does not end with a newline".to_owned());
        };
        let lines: Vec<&str> = body.split('\n').collect();
        let [magic, session, epoch, holder] = lines[..] else {
            return Err(format!("it has {} lines, not 4", lines.len()));
        };
        if magic != RECORD_MAGIC {
            return Err(format!("first line {magic:?} is not {RECORD_MAGIC:?}"));
        }
        let session = session
            .strip_prefix("session ")
            .filter(|hex| {
                hex.len() == 16
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| {
                format!("second line {session:?} is not \"session\" and 16 hex digits")
            })?;
        let epoch = epoch
            .strip_prefix("epoch ")
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok())
            .ok_or_else(|| format!("third line {epoch:?} is not \"epoch\" and a decimal number"))?;
        let holder = holder
            .strip_prefix("holder ")
            .filter(|name| check_holder(name).is_ok())
            .ok_or_else(|| format!("fourth line {holder:?} is not \"holder\" and a valid name"))?;
        Ok(Record {
            session,
            epoch,
            holder: holder.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;

    /// A directory removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                std::env::temp_dir().join(format!("ftvm-arbiter-test-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create the test directory");
            TempDir(dir)
        }

        fn file(&self) -> PathBuf {
            self.0.join("pair.arbiter")
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn lost(holder: &str) -> Claim {
        Claim::Lost {
            holder: holder.to_owned(),
        }
    }

    #[test]
    fn test_first_claim_wins_second_loses_naming_holder() {
        let dir = TempDir::new();
        let mut primary = FileArbiter::new(dir.file());
        let mut backup = FileArbiter::new(dir.file());

        let first = primary
            .test_and_set(0x1234, 1, "primary on a")
            .expect("claim");
        let second = backup
            .test_and_set(0x1234, 1, "backup on b")
            .expect("claim");

        assert_eq!((first, second), (Claim::Won, lost("primary on a")));
    }

    #[test]
    fn test_retry_by_winner_wins_again() {
        let dir = TempDir::new();
        let mut arbiter = FileArbiter::new(dir.file());
        arbiter.test_and_set(7, 3, "primary").expect("claim");

        let again = arbiter.test_and_set(7, 3, "primary").expect("retry");
        let lower = arbiter
            .test_and_set(7, 2, "primary")
            .expect("retry of a lower epoch");

        assert_eq!((again, lower), (Claim::Won, Claim::Won));
    }

    #[test]
    fn test_lower_epoch_loses_to_higher_holder() {
        let dir = TempDir::new();
        let mut arbiter = FileArbiter::new(dir.file());
        arbiter.test_and_set(7, 5, "primary").expect("claim");

        let claim = arbiter.test_and_set(7, 4, "backup").expect("claim");

        assert_eq!(claim, lost("primary"));
    }

    #[test]
    fn test_loser_of_lower_epoch_can_claim_higher_epoch() {
        let dir = TempDir::new();
        let mut arbiter = FileArbiter::new(dir.file());
        arbiter.test_and_set(7, 1, "primary").expect("claim");
        arbiter.test_and_set(7, 1, "backup").expect("claim");

        let higher = arbiter.test_and_set(7, 2, "backup").expect("claim");
        let old_holder = arbiter.test_and_set(7, 2, "primary").expect("claim");

        assert_eq!((higher, old_holder), (Claim::Won, lost("backup")));
    }

    #[test]
    fn test_new_session_overwrites_old_record() {
        let dir = TempDir::new();
        let mut arbiter = FileArbiter::new(dir.file());
        arbiter.test_and_set(1, 9, "old primary").expect("claim");

        let claim = arbiter.test_and_set(2, 1, "new backup").expect("claim");

        assert_eq!(claim, Claim::Won);
        assert_eq!(
            fs::read_to_string(dir.file()).expect("read record"),
            "ftvm-arbiter 1\nsession 0000000000000002\nepoch 1\nholder new backup\n"
        );
    }

    #[test]
    fn test_empty_file_means_no_record() {
        let dir = TempDir::new();
        fs::write(dir.file(), "").expect("create empty file");
        let mut arbiter = FileArbiter::new(dir.file());

        assert_eq!(
            arbiter.test_and_set(1, 1, "primary").expect("claim"),
            Claim::Won
        );
    }

    #[test]
    fn test_corrupt_file_is_error_and_left_untouched() {
        let dir = TempDir::new();
        fs::write(
            dir.file(),
            "ftvm-arbiter 1\nsession zz\nepoch 1\nholder x\n",
        )
        .expect("write garbage");
        let mut arbiter = FileArbiter::new(dir.file());

        let error = arbiter
            .test_and_set(1, 1, "primary")
            .expect_err("corrupt record");

        assert_eq!(
            error.to_string(),
            format!(
                "Arbiter file {} is corrupt (second line \"session zz\" is not \"session\" and 16 hex digits); \
                 it is left untouched, remove it by hand if no node is live",
                dir.file().display()
            )
        );
        assert_eq!(
            fs::read_to_string(dir.file()).expect("read"),
            "ftvm-arbiter 1\nsession zz\nepoch 1\nholder x\n"
        );
    }

    #[test]
    fn test_record_parse_refuses_bad_layouts() {
        let bad: [&[u8]; 7] = [
            b"hello\n",
            b"ftvm-arbiter 2\nsession 0000000000000001\nepoch 1\nholder x\n",
            b"ftvm-arbiter 1\nsession 0000000000000001\nepoch 1\nholder x",
            b"ftvm-arbiter 1\nsession 0000000000000001\nepoch -1\nholder x\n",
            b"ftvm-arbiter 1\nsession 0000000000000001\nepoch 1\nholder \n",
            b"ftvm-arbiter 1\nsession 0000000000000001\nepoch 1\nholder x\nextra\n",
            b"ftvm-arbiter 1\nsession 0000000000000001\nepoch 1\nholder \xff\n",
        ];

        for bytes in bad {
            assert!(
                Record::parse(bytes).is_err(),
                "{:?} accepted",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn test_record_round_trips() {
        let record = Record {
            session: u64::MAX,
            epoch: u64::MAX,
            holder: "backup pid 1234 on host X".to_owned(),
        };

        assert_eq!(Record::parse(record.to_text().as_bytes()), Ok(record));
    }

    #[test]
    fn test_unwritable_directory_is_io_error_naming_path() {
        let dir = TempDir::new();
        let path = dir.0.join("missing-dir").join("pair.arbiter");
        let mut arbiter = FileArbiter::new(&path);

        let error = arbiter
            .test_and_set(1, 1, "primary")
            .expect_err("no directory");

        assert!(error.to_string().starts_with(&format!(
            "Arbiter file {}.lock: cannot open the lock file:",
            path.display()
        )));
    }

    #[test]
    fn test_lock_held_elsewhere_times_out() {
        let dir = TempDir::new();
        let holder = FileArbiter::new(dir.file());
        let _held = holder.lock().expect("take the lock");
        let mut arbiter = FileArbiter::new(dir.file());

        let error = arbiter
            .test_and_set(1, 1, "primary")
            .expect_err("lock held");

        assert!(matches!(error, ArbiterError::LockTimeout { .. }), "{error}");
    }

    #[test]
    fn test_racing_threads_exactly_one_wins() {
        const THREADS: usize = 8;
        let dir = TempDir::new();
        for round in 0..50u64 {
            let barrier = Arc::new(Barrier::new(THREADS));
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (barrier, path) = (Arc::clone(&barrier), dir.file());
                    std::thread::spawn(move || {
                        let mut arbiter = FileArbiter::new(path);
                        let me = format!("node {i}");
                        barrier.wait();
                        (
                            me.clone(),
                            arbiter.test_and_set(round, 1, &me).expect("claim"),
                        )
                    })
                })
                .collect();
            let results: Vec<(String, Claim)> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();

            let winners: Vec<&String> = results
                .iter()
                .filter(|(_, c)| *c == Claim::Won)
                .map(|(me, _)| me)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}: {results:?}");
            let expected = lost(winners[0]);
            assert!(
                results
                    .iter()
                    .all(|(_, claim)| *claim == Claim::Won || *claim == expected),
                "round {round}: {results:?}"
            );
        }
    }
}
