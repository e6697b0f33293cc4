//! Arbitrary bytes as a client's stream: frame them as the session would
//! (answering continuations, dropping rejected bytes) and parse every
//! complete command. Nothing may panic, and the framer's lengths must stay
//! inside the buffer. `crates/imap-proto/tests/fuzz_corpus.rs` replays the
//! corpus with the same loop on stable.
#![no_main]

use imap_proto::framer::{Frame, Framer, Limits};
use imap_proto::parse::parse_command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer reaches the refusal paths quickly.
    let mut framer = Framer::new(Limits {
        line_bytes_max: 512,
        literal_bytes_max: 2048,
    });
    let mut rest = data;
    // Each round consumes bytes or returns, bounded by the input length.
    for _ in 0..=data.len() * 2 + 2 {
        match framer.next(rest) {
            Frame::Incomplete => return,
            Frame::NeedContinuation { .. } => {}
            Frame::Complete { len } => {
                assert!(len > 0 && len <= rest.len());
                let _ = parse_command(&rest[..len]);
                rest = &rest[len..];
            }
            Frame::Reject { discard, close, .. } => {
                assert!(discard <= rest.len());
                if close {
                    return;
                }
                rest = &rest[discard..];
            }
        }
    }
    panic!("framer made no progress");
});
