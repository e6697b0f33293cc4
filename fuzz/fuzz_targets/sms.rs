//! SMS encoding and decoding: arbitrary text round-trips through every layout
//! within the octet and segment limits; arbitrary user data from an SMSC is
//! decoded or refused, never a panic; phone numbers are accepted only in
//! E.164. `crates/sms/tests/fuzz_corpus.rs` replays the corpus with the same
//! checks on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/sms/tests/common/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::exercise(data);
});
