//! Arbitrary bytes as a delivered message: summarize it with default and
//! tiny limits, extract every kind of section and BINARY for a spread of
//! part numbers, and extract search text. Nothing may panic, the rendered
//! ENVELOPE/BODY/BODYSTRUCTURE must be well-formed IMAP (balanced lists,
//! clean quoted strings, exact literal lengths), and HEADER + TEXT must
//! split the message exactly. `crates/mime/tests/fuzz_corpus.rs` replays
//! the corpus with the same checks on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The checks are shared with the stable replay test, included by path so
// that they need not be public API of the crate.
#[path = "../../crates/mime/tests/common/imap_syntax.rs"]
mod imap_syntax;

#[path = "../../crates/mime/tests/common/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::exercise(data);
});
