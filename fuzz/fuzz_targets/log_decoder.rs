//! cargo-fuzz target `log_decoder`: the record/replay log decoder on arbitrary bytes.
//! It must never panic, and whatever it accepts must be the one canonical encoding of
//! what it decoded (re-encoding gives the input back). The stable counterpart is
//! `crates/replay/tests/decoder_corpus.rs`.
#![no_main]

use ftvm_replay::{decode_all, LogWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((header, entries)) = decode_all(data) else {
        return;
    };
    let mut writer = LogWriter::new(Vec::new(), &header).expect("a decoded header re-encodes");
    for entry in &entries {
        writer
            .write(entry.icount, &entry.event)
            .expect("a decoded entry re-encodes");
    }
    assert_eq!(
        writer.into_inner(),
        data,
        "decoded log re-encodes differently"
    );
});
