//! The driver shared by the stable corpus tests of the fuzz targets
//! (crates/devices/tests/fuzz_corpus.rs, crates/host/tests/nbd_fuzz_corpus.rs):
//! the seed corpus, a seeded xorshift generator, mutations, and reporting.

use std::path::{Path, PathBuf};

/// xorshift64*: a small deterministic generator, seeded per test.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn scale() -> usize {
    std::env::var("FUZZ_CORPUS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// The seed files of `target`, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("seed file");
            (path, data)
        })
        .collect()
}

/// Runs `body` on `data`; on a panic saves the input and fails naming it.
fn run(target: &str, what: &str, data: &[u8], body: fn(&[u8])) {
    if std::panic::catch_unwind(|| body(data)).is_err() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("crash-{target}-{what}"));
        let _ = std::fs::write(&path, data);
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        panic!(
            "{target} failed on {what} (saved as {}): {hex}",
            path.display()
        );
    }
}

/// Random bytes, mostly short.
fn random_input(rng: &mut XorShift, max_len: usize) -> Vec<u8> {
    let len = rng.below(max_len + 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// A seed with a few bytes changed, inserted, removed or appended.
fn mutate(rng: &mut XorShift, seed: &[u8], max_len: usize) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 | 1 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] = rng.next() as u8;
            }
            2 if !data.is_empty() => {
                let at = rng.below(data.len());
                data[at] ^= 1 << rng.below(8);
            }
            3 if data.len() < max_len => {
                let at = rng.below(data.len() + 1);
                data.insert(at, rng.next() as u8);
            }
            4 if !data.is_empty() => {
                let at = rng.below(data.len());
                data.remove(at);
            }
            _ => data.push(rng.next() as u8),
        }
    }
    data
}

/// The seeds, then `count` generated inputs (half random, half mutated seeds).
pub fn fuzz(target: &str, seed: u64, count: usize, max_len: usize, body: fn(&[u8])) {
    let seeds = corpus(target);
    for (path, data) in &seeds {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        run(target, &name, data, body);
    }
    let mut rng = XorShift(seed);
    for i in 0..count * scale() {
        let data = if i % 2 == 0 {
            random_input(&mut rng, max_len)
        } else {
            let (_, seed) = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed, max_len)
        };
        run(target, &format!("generated-{i}"), &data, body);
    }
}
