//! Operator-facing settings of an LMTP listener.

use std::time::Duration;

/// Bounds and names for LMTP sessions. One value is shared by every session of
/// a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmtpConfig {
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
            hostname: "localhost".to_string(),
            message_bytes_max: 64 * 1024 * 1024,
            recipients_max: 1000,
            line_bytes_max: 4096,
            idle_timeout: Duration::from_secs(5 * 60),
            over_quota_permanent: false,
        }
    }
}
