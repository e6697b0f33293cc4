//! Operator-facing settings of an LMTP or SMTP listener.

use std::time::Duration;

/// Which protocol a session speaks. Both share one state machine; they differ
/// in the greeting verb (LHLO or EHLO/HELO), the extensions offered, the shape
/// of the reply after DATA (one per recipient or one per message), and in
/// SMTP's stricter hygiene: bare CR/LF refused, an error bound, a relay check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RFC 2033, from the local MTA: trusted input, per-recipient replies.
    #[default]
    Lmtp,
    /// RFC 5321 from the internet (an MX): one reply per message.
    Smtp,
}

/// Bounds and names for LMTP and SMTP sessions. One value is shared by every
/// session of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
    /// LMTP or SMTP.
    pub protocol: Protocol,
    /// SMTP: the domains we accept mail for, lower case; a recipient in any
    /// other domain gets `550 5.7.1` (no relaying). Unused by LMTP, whose MTA
    /// has already decided.
    pub local_domains: Vec<String>,
    /// SMTP: how long the server waits before its greeting; a client that
    /// sends anything meanwhile (an early talker, typical of spam software)
    /// gets `554` and is disconnected. Zero: no wait.
    pub greeting_delay: Duration,
    /// SMTP: permanent (5xx) error replies (unknown commands, bad syntax, bad
    /// sequence, unknown users, relaying) one connection may earn; with the
    /// last one comes `421 4.7.0` and the close.
    pub errors_max: usize,
    /// Our name in the greeting, the LHLO reply and `Received` headers.
    pub hostname: String,
    /// Largest message body accepted (after dot-unstuffing, before our trace
    /// headers), advertised as `SIZE`. Bigger messages are read to the end and
    /// refused, so memory per session stays under this plus one read buffer.
    pub message_bytes_max: u64,
    /// Accepted recipients per transaction; more get `452 4.5.3`, which tells
    /// the client to send the rest in another transaction.
    pub recipients_max: usize,
    /// Longest command line, CRLF included. Bounds what a session buffers and
    /// what the parser walks outside of DATA.
    pub line_bytes_max: usize,
    /// How long a read or a write may wait before the session gives up.
    pub idle_timeout: Duration,
    /// Whether a full mailbox is a permanent failure (`552 5.2.2`, the client
    /// bounces) or a temporary one (`452 4.2.2`, the client retries).
    pub over_quota_permanent: bool,
}

impl Default for LmtpConfig {
    fn default() -> Self {
        LmtpConfig {
            protocol: Protocol::Lmtp,
            local_domains: Vec::new(),
            greeting_delay: Duration::ZERO,
            errors_max: 10,
            hostname: "localhost".to_string(),
            message_bytes_max: 64 * 1024 * 1024,
            recipients_max: 1000,
            line_bytes_max: 4096,
            idle_timeout: Duration::from_secs(5 * 60),
            over_quota_permanent: false,
        }
    }
}
