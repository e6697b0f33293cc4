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

/// A command's answer when the user's mail moved to another shard.
pub(crate) const MOVED_TEXT: &str = "mailboxes moved, please reconnect";
/// The BYE that ends such a session (RFC 9051 7.1.5).
pub(crate) const MOVED_BYE: &str = "[UNAVAILABLE] mailboxes moved, please reconnect";

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

    /// Whether this answers a read of mail that moved to another shard:
    /// the session then ends (see [`MOVED_BYE`]).
    pub fn is_moved(&self) -> bool {
        self.status == Status::No && self.text == MOVED_TEXT
    }

    /// Maps a store error to a NO with the RFC 5530 code that says what happened.
    /// Damage is logged by the store; the client gets no data from it.
    pub fn from_store(error: &StoreError) -> Self {
        let (code, text) = match error.kind {
            ErrorKind::NotFound => ("NONEXISTENT", error.message.as_str()),
            ErrorKind::AlreadyExists => ("ALREADYEXISTS", error.message.as_str()),
            ErrorKind::Invalid => ("CANNOT", error.message.as_str()),
            ErrorKind::OverQuota => ("OVERQUOTA", error.message.as_str()),
            ErrorKind::Denied => ("NOPERM", error.message.as_str()),
            ErrorKind::Corrupt => ("SERVERBUG", "stored data failed a check; it was not served"),
            ErrorKind::Io | ErrorKind::Unavailable | ErrorKind::Conflict => {
                ("UNAVAILABLE", "temporarily unavailable, try again")
            }
            ErrorKind::ReadOnly => ("UNAVAILABLE", error.message.as_str()),
            ErrorKind::Moved => ("UNAVAILABLE", MOVED_TEXT),
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
        // Text comes from us, but may quote a mailbox or user name: line breaks
        // become spaces so it can never end the line early, other controls and
        // non-ASCII become `?`, since IMAP4rev1 text is 7-bit (a client that
        // did not enable UTF-8 may reject the whole response otherwise).
        let mut buffer = [0u8; 4];
        for c in self.text.chars() {
            let c = match c {
                '\r' | '\n' => ' ',
                c if c.is_ascii_control() || !c.is_ascii() => '?',
                c => c,
            };
            out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(done: Done, expect: &str) {
        let mut out = Vec::new();
        done.write("a1", &mut out);
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    #[test]
    fn text_stays_one_seven_bit_line() {
        check(Done::ok("LIST completed"), "a1 OK LIST completed\r\n");
        check(
            Done::no_code("NONEXISTENT", "no mailbox named Entwürfe"),
            "a1 NO [NONEXISTENT] no mailbox named Entw?rfe\r\n",
        );
        check(Done::bad("a\r\nb\u{0}c"), "a1 BAD a  b?c\r\n");
        check(Done::suppressed(), "");
    }
}
