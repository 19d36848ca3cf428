//! Fuzz target body for the FT protocol's messages (`ftvm-protocol`), shared by the
//! cargo-fuzz target `fuzz/fuzz_targets/protocol_message.rs` and the deterministic
//! corpus test `crates/protocol/tests/fuzz_corpus.rs`.
//!
//! A message comes from the network (UDP heartbeats, the logging channel's
//! acknowledgements), so its decoder sees arbitrary bytes. It must never panic,
//! must accept only messages of exactly the right size, and whatever it accepts
//! must be the one canonical encoding of what it decoded. A decoded message is
//! then fed to a node of each role: it must not panic either.

#![allow(dead_code)]

use ftvm_protocol::{Config, Input, Message, Node, Role, MESSAGE_LEN};

/// Decodes `data`, checks the round trip, and feeds the message to both roles.
pub fn message(data: &[u8]) {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    assert_eq!(
        data.len(),
        MESSAGE_LEN,
        "accepted a message of the wrong size"
    );
    assert_eq!(
        &m.encode()[..],
        data,
        "decoded message re-encodes differently"
    );
    for role in [Role::Primary, Role::Backup] {
        let mut node = Node::new(role, 0x0102_0304_0506_0708, Config::default(), 0);
        let _ = node.handle(1, Input::LogWritten { entries: 10 });
        let _ = node.handle(2, Input::Message(m));
        let _ = node.handle(3, Input::Tick);
    }
}
