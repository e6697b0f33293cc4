//! IMAP4rev2 / IMAP4rev1 grammar for the server side: commands in, response pieces out.
//!
//! This crate does no I/O and knows nothing about mailboxes or sessions.
//! - [`framer`] finds where one command (its lines and literals) ends in a byte
//!   buffer, bounding line length and literal size before anything is buffered.
//! - [`parse`] turns one complete command into a [`types::Command`].
//! - [`encode`] writes the atoms, strings and literals that responses are made of.
//! - [`url`] parses the IMAP URLs (RFC 5092) of CATENATE's URL parts.
//! - [`utf7`] converts mailbox names between modified UTF-7 (RFC 3501) and UTF-8.

pub mod encode;
pub mod framer;
pub mod parse;
pub mod secret;
pub mod types;
pub mod url;
pub mod utf7;

pub use secret::Secret;
pub use types::*;
