//! Typed errors of the protocol and client layers. The binary wraps them in
//! `anyhow` with the context of the workload that hit them.

use std::fmt;

/// What went wrong while splitting or reading a server's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    /// A line grew past its bound before its end arrived.
    LineTooLong,
    /// A literal announced more bytes than the bound allows.
    LiteralTooLarge,
    /// A whole response (lines and literals) grew past its bound.
    ResponseTooLarge,
    /// The bytes do not follow the grammar.
    Malformed,
}

/// A reply the parser could not accept, with what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub kind: ProtocolErrorKind,
    pub message: String,
}

impl ProtocolError {
    pub fn new(kind: ProtocolErrorKind, message: impl Into<String>) -> Self {
        ProtocolError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// What went wrong in a client session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientErrorKind {
    /// Connecting, reading or writing failed at the socket.
    Io,
    /// A read or write took longer than the session's timeout.
    Timeout,
    /// The server closed the connection while we waited for a reply.
    Closed,
    /// The server's bytes broke the grammar or a bound.
    Protocol,
    /// The server answered, but not with success (a 4xx/5xx reply, NO, BAD).
    Refused,
}

/// A failed client operation, with the server's words where there were any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub kind: ClientErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ClientErrorKind, message: impl Into<String>) -> Self {
        ClientError {
            kind,
            message: message.into(),
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        ClientError::new(ClientErrorKind::Refused, message)
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<ProtocolError> for ClientError {
    fn from(error: ProtocolError) -> Self {
        ClientError::new(ClientErrorKind::Protocol, error.to_string())
    }
}
