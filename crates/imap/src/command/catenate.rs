//! CATENATE (RFC 4469): an APPEND whose message is made of TEXT literals and
//! IMAP URLs (RFC 5092) naming messages or parts already on the server.
//!
//! A URL is resolved only through the logged-in user's `UserReader`: its
//! mailbox is looked up among that user's mailboxes, so there is no path to
//! another user's mail. An absolute URL must name this server (`[imap]
//! hostname`) and the logged-in user; anything else, an unknown mailbox, a
//! UIDVALIDITY that does not match, a missing message or section, is
//! `NO [BADURL url]`. The assembled message, like the literals of one
//! command, is bounded by `[imap] max_literal` (APPENDLIMIT): past it,
//! `NO [TOOBIG]`. Nothing is stored here; the caller submits only once every
//! message of the command is assembled.

use crate::respond::Done;
use crate::session::{Session, canonical_inbox};
use imap_proto::CatenatePart;
use imap_proto::url::parse_message_url;
use store::BlobHash;

/// Most URL parts one APPEND command may resolve: each reads a stored
/// message, so this bounds the reads a small command can cause.
pub(crate) const URL_PARTS_MAX: usize = 64;

/// Per-command state: the bytes still allowed, URL parts used and the last
/// message read (consecutive parts of one message read it once).
pub(crate) struct Budget {
    pub bytes_left: u64,
    pub urls_left: usize,
    last: Option<(BlobHash, Vec<u8>)>,
}

impl Budget {
    pub(crate) fn new(bytes: u64) -> Self {
        Budget {
            bytes_left: bytes,
            urls_left: URL_PARTS_MAX,
            last: None,
        }
    }

    fn take(&mut self, bytes: usize) -> Result<(), Done> {
        let bytes = bytes as u64;
        if bytes > self.bytes_left {
            return Err(Done::no_code(
                "TOOBIG",
                "the catenated message is larger than the server accepts",
            ));
        }
        self.bytes_left -= bytes;
        Ok(())
    }
}

/// `BADURL` carries the URL as `url-resp-text` (RFC 4469 5, with erratum
/// 4046): TEXT-CHARs except `]`; anything else is percent-encoded.
fn bad_url(url: &str) -> Done {
    let mut text = String::with_capacity(url.len());
    for b in url.bytes() {
        if (0x21..0x7f).contains(&b) && b != b']' {
            text.push(char::from(b));
        } else {
            text.push_str(&format!("%{b:02X}"));
        }
    }
    if text.is_empty() {
        text.push_str("%20");
    }
    Done::no_code(
        format!("BADURL {text}"),
        "CATENATE: the URL does not name a message or part of yours",
    )
}

/// The message of one `CATENATE (...)`: its parts' bytes, concatenated
/// exactly, or the answer that refuses the whole command.
pub(crate) fn assemble(
    session: &Session,
    parts: Vec<CatenatePart>,
    budget: &mut Budget,
) -> Result<Vec<u8>, Done> {
    let mut message = Vec::new();
    for part in parts {
        match part {
            CatenatePart::Text { data, binary } => {
                // A literal is CHAR8 (no NUL, RFC 9051); NUL needs literal8,
                // which BINARY (RFC 3516, RFC 4469 5) allows.
                if !binary && data.contains(&0) {
                    return Err(Done::bad(
                        "NUL in a TEXT literal; send it as literal8 (~{n})",
                    ));
                }
                budget.take(data.len())?;
                message.extend_from_slice(&data);
            }
            CatenatePart::Url(url) => {
                if budget.urls_left == 0 {
                    return Err(Done::no_code(
                        "LIMIT",
                        format!("at most {URL_PARTS_MAX} URL parts per APPEND"),
                    ));
                }
                budget.urls_left -= 1;
                let bytes = resolve(session, &url, budget)?;
                budget.take(bytes.len())?;
                message.extend_from_slice(&bytes);
            }
        }
    }
    Ok(message)
}

/// The bytes a URL names, read through the session's own reader.
fn resolve(session: &Session, raw: &str, budget: &mut Budget) -> Result<Vec<u8>, Done> {
    let Some(url) = parse_message_url(raw) else {
        return Err(bad_url(raw));
    };
    if let Some(server) = &url.server {
        let ours = server
            .host
            .eq_ignore_ascii_case(&session.ctx.config.hostname);
        let same_user = server
            .user
            .as_deref()
            .and_then(|u| store::canonical_user_name(u).ok())
            .is_some_and(|u| u == session.user_name());
        if !ours || !same_user {
            return Err(bad_url(raw));
        }
    }
    let reader = session.reader()?;
    let mailbox = match &url.mailbox {
        Some(name) => reader.mailbox(&canonical_inbox(name)),
        None => match &session.selected {
            Some(selected) => reader.mailbox_by_id(&selected.id),
            // A relative URL with no mailbox selected has no base.
            None => return Err(bad_url(raw)),
        },
    };
    let mailbox = match mailbox {
        Ok(Some(m)) => m,
        Ok(None) => return Err(bad_url(raw)),
        Err(e) => return Err(Done::from_store(&e)),
    };
    if url.uid_validity.is_some_and(|v| v != mailbox.uid_validity) {
        return Err(bad_url(raw));
    }
    let meta = match reader.message(&mailbox.id, url.uid) {
        Ok(Some(m)) => m,
        Ok(None) => return Err(bad_url(raw)),
        Err(e) => return Err(Done::from_store(&e)),
    };
    let cached = budget.last.as_ref().is_some_and(|(h, _)| *h == meta.blob);
    if !cached {
        let bytes = reader
            .message_bytes(&mailbox.id, &meta)
            .map_err(|e| Done::from_store(&e))?;
        budget.last = Some((meta.blob, bytes));
    }
    let raw_message: &[u8] = budget
        .last
        .as_ref()
        .map(|(_, b)| b.as_slice())
        .unwrap_or_default();
    let mut bytes = match &url.section {
        None => raw_message.to_vec(),
        Some(section) => {
            let parsed = mime::Parsed::new(raw_message);
            match super::fetch::section_bytes(&parsed, section) {
                Some(b) => b,
                None => return Err(bad_url(raw)),
            }
        }
    };
    if let Some((origin, length)) = url.partial {
        let start = (origin as usize).min(bytes.len());
        let end = match length {
            Some(l) => start.saturating_add(l as usize).min(bytes.len()),
            None => bytes.len(),
        };
        bytes = bytes.get(start..end).unwrap_or_default().to_vec();
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_url_text_has_no_bracket_or_space() {
        let done = bad_url("/a b]/;UID=1");
        assert_eq!(done.code.as_deref(), Some("BADURL /a%20b%5D/;UID=1"));
    }
}
