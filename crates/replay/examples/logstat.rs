//! Prints how many entries of each kind a log holds, and their bytes:
//! `cargo run --release -p ftvm-replay --example logstat LOG`.

use ftvm_replay::{Event, LogReader};
use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage: logstat LOG")?;
    let file = std::io::BufReader::new(std::fs::File::open(&path)?);
    let (mut reader, _) = LogReader::new(file)?;
    let mut kinds: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    let mut last = reader.offset();
    let mut icount = 0;
    while let Some(e) = reader.next()? {
        let kind = match e.event {
            Event::Now { .. } => "now",
            Event::Idle { .. } => "idle",
            Event::ConsoleInput { .. } => "console-input",
            Event::WallClock { .. } => "wall-clock",
            Event::RngSeed { .. } => "rng-seed",
            Event::Submit { .. } => "submit",
            Event::Completion { .. } => "completion",
            Event::ReadElided { .. } => "read-elided",
            Event::Digest { .. } => "digest",
            Event::End { .. } => "end",
        };
        let k = kinds.entry(kind).or_default();
        k.0 += 1;
        k.1 += reader.offset() - last;
        last = reader.offset();
        icount = e.icount;
    }
    println!("last icount {icount}");
    for (kind, (n, bytes)) in kinds {
        println!("{kind:14} {n:10} entries {bytes:12} bytes");
    }
    Ok(())
}
