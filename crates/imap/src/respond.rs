//! How a command ends, and how store errors map to IMAP response codes.

use store::{ErrorKind, StoreError};

/// Marker text of [`Done::suppressed`]; it never reaches the client.
const SUPPRESSED: &str = "\u{0}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// The tagged completion of a command.
#[derive(Debug, Clone)]
pub struct Done {
    pub status: Status,
    pub code: Option<String>,
    pub text: String,
}

impl Done {
    pub fn ok(text: impl Into<String>) -> Self {
        Done {
            status: Status::Ok,
            code: None,
            text: text.into(),
        }
    }
    pub fn ok_code(code: impl Into<String>, text: impl Into<String>) -> Self {
        Done {
            status: Status::Ok,
            code: Some(code.into()),
            text: text.into(),
        }
    }
    pub fn no(text: impl Into<String>) -> Self {
        Done {
            status: Status::No,
            code: None,
            text: text.into(),
        }
    }
    pub fn no_code(code: impl Into<String>, text: impl Into<String>) -> Self {
        Done {
            status: Status::No,
            code: Some(code.into()),
            text: text.into(),
        }
    }
    /// The command already wrote its tagged line (STARTTLS does, before the handshake).
    pub fn suppressed() -> Self {
        Done {
            status: Status::Ok,
            code: None,
            text: SUPPRESSED.into(),
        }
    }

    pub fn bad(text: impl Into<String>) -> Self {
        Done {
            status: Status::Bad,
            code: None,
            text: text.into(),
        }
    }

    /// Maps a store error to a NO with the RFC 5530 code that says what happened.
    /// Damage is logged by the store; the client gets no data from it.
    pub fn from_store(error: &StoreError) -> Self {
        let (code, text) = match error.kind {
            ErrorKind::NotFound => ("NONEXISTENT", error.message.as_str()),
            ErrorKind::AlreadyExists => ("ALREADYEXISTS", error.message.as_str()),
            ErrorKind::Invalid => ("CANNOT", error.message.as_str()),
            ErrorKind::OverQuota => ("OVERQUOTA", error.message.as_str()),
            ErrorKind::Corrupt => ("SERVERBUG", "stored data failed a check; it was not served"),
            ErrorKind::Io | ErrorKind::Unavailable => {
                ("UNAVAILABLE", "temporarily unavailable, try again")
            }
        };
        Done::no_code(code, text)
    }

    pub fn write(&self, tag: &str, out: &mut Vec<u8>) {
        if self.status == Status::Ok && self.text == SUPPRESSED {
            return;
        }
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(match self.status {
            Status::Ok => b" OK ",
            Status::No => b" NO ",
            Status::Bad => b" BAD ",
        });
        if let Some(code) = &self.code {
            out.push(b'[');
            out.extend_from_slice(code.as_bytes());
            out.extend_from_slice(b"] ");
        }
        // Text comes from us, but strip line breaks so it can never end the line early.
        for &b in self.text.as_bytes() {
            out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        out.extend_from_slice(b"\r\n");
    }
}
