//! The store's typed error, with a kind the protocol layers map to responses.

use std::fmt;

/// What went wrong, in terms a protocol layer can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named user, mailbox or message does not exist (IMAP `NO [NONEXISTENT]`).
    NotFound,
    /// The name is taken (IMAP `NO [ALREADYEXISTS]`).
    AlreadyExists,
    /// The request is not valid (bad name, operation not allowed on INBOX...).
    Invalid,
    /// The acting user may see the mailbox but lacks a right the change
    /// needs (IMAP `NO [NOPERM]`). A mailbox the user may not even see is
    /// `NotFound`, worded as for one that does not exist.
    Denied,
    /// Over a quota or size limit (IMAP `NO [OVERQUOTA]`, LMTP 452).
    OverQuota,
    /// Stored data failed a check (checksum, hash, invariant). Never answered with data.
    Corrupt,
    /// Disk or other I/O failure; the change was not made. Temporary.
    Io,
    /// The store is shutting down or the writer is gone. Temporary.
    Unavailable,
    /// This server is a replica: changes are made on its primary. Temporary
    /// (IMAP `NO [UNAVAILABLE]`, LMTP/SMTP 451), since a promotion ends it.
    ReadOnly,
    /// The data changed since the request was computed (a repair made against
    /// an older snapshot): compute it again. Temporary.
    Conflict,
    /// The user's mail moved to another shard while a session read it
    /// (`user move`): the session must start again (IMAP `BYE
    /// [UNAVAILABLE]`); a change is retried on the new shard by the store.
    Moved,
}

/// An error from the store: a kind and a message for logs and protocol text.
#[derive(Debug, Clone)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StoreError {
            kind,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Denied, message)
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    pub fn moved(user: &str) -> Self {
        Self::new(
            ErrorKind::Moved,
            format!("the mailboxes of {user} moved to another server; reconnect"),
        )
    }
    pub fn io(context: &str, error: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {error}"))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        // SQLite errors come from the derived indexes; a corrupt file is reported as such
        // so that the caller answers "unavailable" instead of anything it read.
        let kind = match &error {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                ErrorKind::Corrupt
            }
            _ => ErrorKind::Io,
        };
        StoreError::new(kind, format!("index: {error}"))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        StoreError::new(ErrorKind::Io, error.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
