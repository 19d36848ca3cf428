//! Copying guest RAM to a new backup while the guest runs (DESIGN.md §3,
//! "Restart": a live pre-copy of RAM with dirty tracking, then a short
//! stop-and-copy of the rest).
//!
//! The running side sends RAM in [`Message::RamRun`]s (up to
//! [`RAM_RUN_PAGES`] consecutive 4 KiB pages with the XXH3-64 of their
//! bytes) before the `Welcome`: every non-zero page, a slice of RAM between
//! two steps of the guest, then, round after round, the pages the guest
//! wrote meanwhile ([`Machine::take_dirty_pages`]). When few are left it
//! stops the guest and sends a snapshot without RAM, the pages written
//! since, and a [`Message::RamEnd`]. The [`RamReceiver`] builds the RAM
//! from the runs, checking each against the RAM's size and its hash.

use ftvm_machine::snapshot::is_zero;
use ftvm_machine::Machine;
use ftvm_protocol::{Message, RAM_RUN_PAGES};
use std::io::Read;

/// Bytes in a page of guest RAM.
pub const PAGE: usize = 4096;

/// Pages scanned in one slice of the first pass (between two guest steps).
pub const FIRST_PASS_SLICE: usize = 4096;

/// Rounds of sending again what the guest wrote during the previous one.
pub const ROUNDS: usize = 8;

/// Pages at most left for the copy with the guest stopped.
pub const LEFT: usize = 4096;

/// The bytes of `count` pages from page `first` of `ram` (the last page of
/// RAM may be short).
fn run_bytes(ram: &[u8], first: usize, count: usize) -> &[u8] {
    let start = (first * PAGE).min(ram.len());
    let end = ((first + count) * PAGE).min(ram.len());
    &ram[start..end]
}

/// Appends a run of `count` pages from page `first` of `ram` to `out`.
fn put_run(out: &mut Vec<u8>, ram: &[u8], first: usize, count: usize) {
    let bytes = run_bytes(ram, first, count);
    out.extend_from_slice(
        &Message::RamRun {
            first: first as u64,
            count: count as u64,
            hash: ftvm_replay::hash_bytes(bytes),
        }
        .encode(),
    );
    out.extend_from_slice(bytes);
}

/// Appends the runs of `pages` (page indices, sorted and without repeats)
/// of `ram` to `out`; returns the pages put.
pub fn put_pages(out: &mut Vec<u8>, ram: &[u8], pages: &[usize]) -> u64 {
    let mut put = 0;
    let mut i = 0;
    while i < pages.len() {
        let first = pages[i];
        let mut count = 1;
        while i + count < pages.len()
            && pages[i + count] == first + count
            && (count as u64) < RAM_RUN_PAGES
        {
            count += 1;
        }
        put_run(out, ram, first, count);
        put += count as u64;
        i += count;
    }
    put
}

/// Appends the runs of the non-zero pages among pages `from..to` of `ram`
/// to `out`; returns the pages put.
pub fn put_nonzero(out: &mut Vec<u8>, ram: &[u8], from: usize, to: usize) -> u64 {
    let pages: Vec<usize> = (from..to)
        .filter(|&p| !is_zero(run_bytes(ram, p, 1)))
        .collect();
    put_pages(out, ram, &pages)
}

/// The pages of `machine` written since the last take, sorted.
pub fn dirty_pages(machine: &mut Machine) -> Vec<usize> {
    let mut pages = machine.take_dirty_pages();
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// The receiving end of a RAM copy: a RAM of the machine's size, zero
/// where nothing came.
pub struct RamReceiver {
    ram: Vec<u8>,
    pages: u64,
}

impl RamReceiver {
    /// A RAM of `size` bytes, all zeros.
    pub fn new(size: u64) -> anyhow::Result<RamReceiver> {
        let size = usize::try_from(size)
            .map_err(|_| anyhow::anyhow!("a RAM of {size} bytes does not fit this host"))?;
        Ok(RamReceiver {
            ram: vec![0; size],
            pages: 0,
        })
    }

    /// Takes `message` (and a run's bytes from `input`). `Some` with the
    /// pages received once the copy is complete ([`Message::RamEnd`]);
    /// other messages are an error.
    pub fn take<R: Read>(
        &mut self,
        message: Message,
        input: &mut R,
    ) -> anyhow::Result<Option<u64>> {
        match message {
            Message::RamRun { first, count, hash } => {
                let total = self.ram.len().div_ceil(PAGE) as u64;
                if first.checked_add(count).is_none_or(|end| end > total) {
                    anyhow::bail!(
                        "the RAM copy sends pages {first}..{} of a RAM of {total} pages",
                        first.saturating_add(count)
                    );
                }
                let (first, count) = (first as usize, count as usize);
                let start = first * PAGE;
                let end = ((first + count) * PAGE).min(self.ram.len());
                let bytes = &mut self.ram[start..end];
                input.read_exact(bytes).map_err(|e| {
                    anyhow::anyhow!("the RAM copy ended inside the run from page {first}: {e}")
                })?;
                let got = ftvm_replay::hash_bytes(bytes);
                if got != hash {
                    anyhow::bail!(
                        "the RAM copy's run of {count} pages from page {first} is corrupt: hash {got:016x}, sent {hash:016x}"
                    );
                }
                self.pages += count as u64;
                Ok(None)
            }
            Message::RamEnd { pages } => {
                if pages != self.pages {
                    anyhow::bail!(
                        "the RAM copy ends saying {pages} pages, but {} came",
                        self.pages
                    );
                }
                Ok(Some(pages))
            }
            other => anyhow::bail!("the RAM copy holds {other:?}"),
        }
    }

    /// The RAM received.
    pub fn into_ram(self) -> Vec<u8> {
        self.ram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftvm_protocol::MESSAGE_LEN;

    fn read_all(stream: &[u8], size: u64) -> anyhow::Result<(Vec<u8>, u64)> {
        let mut input = stream;
        let mut receiver = RamReceiver::new(size)?;
        loop {
            let mut m = [0u8; MESSAGE_LEN];
            input
                .read_exact(&mut m)
                .map_err(|e| anyhow::anyhow!("ended: {e}"))?;
            let message = Message::decode(&m)?;
            if let Some(pages) = receiver.take(message, &mut input)? {
                return Ok((receiver.into_ram(), pages));
            }
        }
    }

    /// A RAM of 600 pages with some written, a run longer than
    /// RAM_RUN_PAGES among them.
    fn ram() -> Vec<u8> {
        let mut ram = vec![0u8; 600 * PAGE];
        ram[5 * PAGE + 7] = 1;
        for p in 10..400 {
            ram[p * PAGE] = p as u8 | 1;
        }
        ram[599 * PAGE + 4095] = 9;
        ram
    }

    #[test]
    fn test_nonzero_pages_then_pages_written_again_rebuild_the_ram() {
        let mut source = ram();
        let mut stream = Vec::new();
        let first =
            put_nonzero(&mut stream, &source, 0, 300) + put_nonzero(&mut stream, &source, 300, 600);
        source[20 * PAGE] = 0xee;
        source[5 * PAGE + 7] = 0;
        let again = put_pages(&mut stream, &source, &[5, 20, 21]);
        stream.extend_from_slice(
            &Message::RamEnd {
                pages: first + again,
            }
            .encode(),
        );

        let (ram, pages) = read_all(&stream, source.len() as u64).expect("copy");

        assert_eq!(first, 1 + 390 + 1);
        assert_eq!(pages, first + 3);
        assert!(ram == source);
    }

    #[test]
    fn test_a_corrupt_run_a_run_past_the_end_and_a_wrong_count_are_refused() {
        let source = ram();
        let mut stream = Vec::new();
        let put = put_pages(&mut stream, &source, &[5]);
        let end = Message::RamEnd { pages: put }.encode();

        let mut corrupt = [stream.clone(), end.to_vec()].concat();
        corrupt[MESSAGE_LEN + 7] ^= 1;
        let err = read_all(&corrupt, source.len() as u64).expect_err("corrupt");
        assert!(err.to_string().contains("from page 5 is corrupt"), "{err}");

        let past = Message::RamRun {
            first: 599,
            count: 2,
            hash: 0,
        }
        .encode();
        let err = read_all(&past, source.len() as u64).expect_err("past the end");
        assert!(err.to_string().contains("of a RAM of 600 pages"), "{err}");

        let wrong = [
            stream.clone(),
            Message::RamEnd { pages: 2 }.encode().to_vec(),
        ]
        .concat();
        let err = read_all(&wrong, source.len() as u64).expect_err("count");
        assert!(
            err.to_string().contains("saying 2 pages, but 1 came"),
            "{err}"
        );

        let cut = &stream[..MESSAGE_LEN + 100];
        let err = read_all(cut, source.len() as u64).expect_err("cut");
        assert!(err.to_string().contains("ended inside the run"), "{err}");
    }
}
