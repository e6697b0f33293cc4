//! Why a session ended. None of these stop the gateway: each leads to a
//! reconnect after a backoff; the kind decides how long and how loudly.

use std::io;

/// A session-ending failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect or TLS handshake failed.
    #[error("cannot connect to the SMSC: {0}")]
    Connect(#[source] io::Error),
    /// TLS could not be set up from the configuration.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The connection broke after it was up.
    #[error("connection to the SMSC lost: {0}")]
    Io(#[source] io::Error),
    /// The SMSC sent bytes that are not SMPP, or a PDU we cannot encode.
    #[error("SMPP protocol error: {0}")]
    Protocol(String),
    /// The SMSC refused the bind; the text names the status.
    #[error("bind refused: {reason}")]
    BindRefused {
        /// `command_status` of the bind response.
        status: u32,
        /// Status name and text.
        reason: String,
    },
    /// The configuration cannot produce a valid bind (too-long system_id…).
    #[error("invalid [sms] configuration: {0}")]
    Config(String),
    /// No response in time to a bind or enquire_link.
    #[error("no response from the SMSC within {0} s")]
    Timeout(u64),
    /// The SMSC sent unbind.
    #[error("the SMSC unbound the session")]
    UnboundByPeer,
}

impl Error {
    /// A refused bind for credentials: waiting a little will not help.
    pub fn is_credentials(&self) -> bool {
        matches!(
            self,
            Error::BindRefused {
                status: 0x0D..=0x0F,
                ..
            }
        )
    }
}
