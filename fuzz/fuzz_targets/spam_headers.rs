//! Arbitrary bytes as an incoming message, a body text, a block and a
//! header field: `headers::strip_claimed` never changes a byte after the
//! header section (and only removes header bytes), `fingerprint::normalise`
//! and `Fingerprint::of_text` answer for any text, and every `BlockKey`
//! that parses prints back to itself. `crates/spam/tests/fuzz_corpus.rs`
//! replays the corpus with the same checks on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/spam/tests/common/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::exercise(data);
});
