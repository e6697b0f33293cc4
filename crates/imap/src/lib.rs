//! The IMAP4rev2 / IMAP4rev1 server session: a state machine over the store.
//!
//! Grammar lives in `postern-imap-proto` (no I/O); mail lives in `postern-store`
//! (no networking). This crate wires the two over one connection: it reads
//! framed commands, checks state, runs one verb (one file per verb family
//! under [`command`]), and writes responses. It never touches files or SQLite.
//!
//! Invariants:
//! - Every store access goes through the authenticated user's [`store::UserReader`]
//!   or an [`store::Intent`] naming that user, with one exception kept in one
//!   place: another user's mailbox (ACL, RFC 4314) is reached only through
//!   `Session::open_mailbox` in [`shared`], which hands out the owner's reader
//!   together with the rights read from the owner's ACL after checking `l`,
//!   and changes to it go to the writer as `Intent::Acting`, which checks the
//!   rights again in the transaction. Without `l`, a mailbox answers exactly
//!   as a missing one.
//! - A command that fails on bad input or damaged data answers NO/BAD for that
//!   command; the session continues. Only I/O errors end a session.
//! - Untagged EXPUNGE is never sent during FETCH, STORE or SEARCH (RFC 9051 7.5.1).
//! - Heavy commands (SEARCH BODY/TEXT, SORT, THREAD, FETCH of many bodies) run
//!   within a per-user and a server-wide bound ([`user_limits`]) and do their
//!   reading and CPU work under `block_in_place`, never on the async worker
//!   other sessions need. That needs tokio's multi-thread runtime.

pub mod command;
pub mod conn;
mod context;
mod deflate;
pub mod limits;
pub mod metrics;
mod notify;
mod pattern;
mod refuse;
mod respond;
mod selected;
mod sequence;
mod session;
mod shared;
mod skip;
pub mod user_limits;

pub use conn::Conn;
pub use limits::{LoginThrottle, ThrottleConfig};
pub use metrics::ImapMetrics;
pub use refuse::refuse;
pub use session::{
    ImapConfig, ImapContext, PlaintextAuth, UNAUTHENTICATED_LITERAL_BYTES_MAX, serve,
};
pub use user_limits::{UserLimits, UserLimitsConfig};
