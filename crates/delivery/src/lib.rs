//! LMTP (RFC 2033) and inbound SMTP (RFC 5321) delivery sessions.
//!
//! One session state machine speaks both ([`Protocol`]): LMTP for the local
//! MTA, and SMTP for mail from the internet (an MX), which adds EHLO/HELO,
//! STARTTLS, CHUNKING (BDAT), one reply per message, the relay check against
//! the local domains, and the hygiene an internet-facing listener needs (see
//! [`session`]).
//!
//! The session knows the protocol; where mail goes is behind [`DeliveryTarget`],
//! which the server implements over the store. That keeps this crate free of
//! store layout and lets tests drive it with an in-memory target.
//!
//! # Code map
//!
//! - [`session`]: the LMTP state machine. No I/O, no async runtime: bytes in,
//!   replies and requests ([`session::Event`]) out. "Need more bytes" is a
//!   normal answer. Every buffer it keeps has a bound from [`LmtpConfig`].
//! - [`data`]: the DATA body decoder (dot-unstuffing, end marker, size bound),
//!   also free of I/O. Its module docs state how bare LFs are treated.
//! - `trace`: the `Return-Path`/`Received` headers and the RFC 5322 date.
//! - `serve`: [`serve`] and [`serve_with_tls`], the async driver: socket,
//!   idle timeout, shutdown, the SMTP greeting delay, the TLS handshake after
//!   STARTTLS, and the calls into the [`DeliveryTarget`]. It makes no
//!   protocol decisions.
//!   [`refuse`] turns a connection over a cap away with the session's 421.
//!
//! # Invariants
//!
//! - No input makes a session panic. In LMTP no input drops the connection: a
//!   bad command gets an error reply and the session reads on. In SMTP the
//!   same holds until `errors_max` permanent error replies to commands (an
//!   over-long line included; a refused message's content is not counted),
//!   then `421` and the close.
//! - A delivered message is the trace headers followed by exactly the bytes the
//!   client sent after unstuffing; one copy goes to the target for all users,
//!   and each user is named once however many RCPTs led to them.
//! - LMTP answers DATA once per accepted RCPT, in RCPT order; SMTP once per
//!   message, with 250 only when every user has the message stored.
//! - SMTP never takes a bare CR or LF as a line end, in commands or in DATA;
//!   a DATA body holding one is read to `<CRLF>.<CRLF>` and refused, so no
//!   second transaction can hide inside a message (SMTP smuggling). A BDAT
//!   message holding one is refused too, so none reaches the store.
//! - After STARTTLS nothing received before the handshake is used.
//! - No message body is ever logged; the one info line per delivery carries
//!   counts, sizes and the message id.

use std::future::Future;

mod config;
pub mod data;
mod serve;
pub mod session;
mod trace;

pub use config::{LmtpConfig, Protocol};
pub use serve::{refuse, serve, serve_with_tls};
use std::net::IpAddr;
pub use trace::rfc5322_date;

/// A local user a recipient resolved to (store user name, canonical form).
pub type UserName = String;

/// Why a recipient was refused at RCPT time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// 550 5.1.1
    UnknownUser,
    /// 451 4.3.0: the directory could not be read right now.
    Temporary(String),
}

/// Who is sending a message, as the session knows it: what an SMTP target
/// needs for sender authentication and its per-source limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub protocol: Protocol,
    /// The client's address (for SPF, limits and blocks).
    pub peer_ip: IpAddr,
    /// The name given in EHLO/HELO/LHLO, made header-safe.
    pub helo: String,
    /// MAIL FROM without angle brackets; empty for the null sender `<>`.
    pub sender: String,
    /// Whether the session runs over TLS.
    pub tls: bool,
}

/// A target's answer to [`DeliveryTarget::admit_sender`] or
/// [`DeliveryTarget::admit_recipient`] (SMTP only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// `451 4.7.1` and the text: not now (a rate limit); the sender retries.
    Defer(String),
    /// `550 5.7.1` and the text: never (a block).
    Refuse(String),
}

/// Why a delivery to one user failed after DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverError {
    /// A policy decision about the message (sender authentication, spam):
    /// `451` (temporary) or `550` (permanent), the enhanced status code
    /// (e.g. `4.4.3`, `5.7.1`) and the text.
    Refused {
        permanent: bool,
        status: &'static str,
        text: String,
    },
    /// 452 4.2.2 (or per config 552 5.2.2)
    OverQuota,
    /// 451 4.3.0 and the text; nothing was stored for this user.
    Temporary(String),
    /// 554 5.3.4 and the text (e.g. message larger than the limit).
    Permanent(String),
}

/// Where an LMTP session sends its mail.
pub trait DeliveryTarget: Send + Sync + 'static {
    /// SMTP: whether this client may send mail from this sender now (blocks,
    /// rate limits), asked at MAIL FROM. Accepts everything unless overridden.
    fn admit_sender(&self, envelope: &Envelope) -> impl Future<Output = Admission> + Send {
        let _ = envelope;
        std::future::ready(Admission::Accept)
    }

    /// SMTP: whether one more recipient may be added now, asked at RCPT TO
    /// before the address is resolved. Accepts everything unless overridden.
    fn admit_recipient(
        &self,
        envelope: &Envelope,
        address: &str,
    ) -> impl Future<Output = Admission> + Send {
        let _ = (envelope, address);
        std::future::ready(Admission::Accept)
    }

    /// Maps one RCPT address (without the angle brackets) to the users who get it:
    /// one for a user, one or more for an alias. Never an empty Ok.
    fn resolve(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<Vec<UserName>, ResolveError>> + Send;

    /// Stores `message` (trace headers already prepended, exactly the bytes a
    /// client will fetch as BODY[]) for every user in `users`, durably: when this
    /// returns Ok for a user, the message is on disk. One result per user, in order.
    ///
    /// `envelope` says who sent it; an SMTP target may check and refuse the
    /// message for every user ([`DeliverError::Refused`]).
    fn deliver(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        envelope: Envelope,
    ) -> impl Future<Output = Vec<Result<(), DeliverError>>> + Send;
}
