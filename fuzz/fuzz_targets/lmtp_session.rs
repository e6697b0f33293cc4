//! Arbitrary bytes as an LMTP or SMTP client: the first byte picks the
//! protocol, the read size, the limits and how the session ends; the rest is
//! fed to a `Session` whose admission checks, lookups, STARTTLS and
//! deliveries a deterministic fake answers. Nothing may panic or stall, every
//! reply line must be a well-formed coded line, and each delivery must name
//! exactly the accepted recipients' users and be answered once per accepted
//! RCPT (LMTP) or once per message (SMTP); SMTP must never deliver a DATA
//! body with a bare CR or LF and must close with 421 at its error bound.
//! `crates/delivery/tests/fuzz_corpus.rs` replays the corpus with the same
//! driver on stable.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The driver and its checks are shared with the stable replay test, included
// by path so that they need not be public API of the crate.
#[path = "../../crates/delivery/tests/common/session_driver.rs"]
mod session_driver;

fuzz_target!(|data: &[u8]| {
    session_driver::run(data);
});
