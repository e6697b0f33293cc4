//! Assembles the [`Summary`] cache record of a message.

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use crate::address::{self, Address};
use crate::header::fields;
use crate::structure::{self, Form};
use crate::{Limits, SentDate, Summary, decode, envelope, subject, text, tree};

pub(crate) fn summarize(raw: &[u8], limits: &Limits) -> Summary {
    let root = tree::parse(raw, limits);
    let header = raw.get(root.header.clone()).unwrap_or_default();

    let mut envelope = String::new();
    envelope::render(header, &mut envelope);
    let mut body = String::new();
    structure::render(raw, &root, Form::Body, &mut body);
    let mut body_structure = String::new();
    structure::render(raw, &root, Form::Structure, &mut body_structure);

    let mut summary = Summary {
        envelope,
        body,
        body_structure,
        sent: None,
        message_id: None,
        in_reply_to: Vec::new(),
        references: Vec::new(),
        subject: String::new(),
        base_subject: String::new(),
        from: String::new(),
        to: String::new(),
        cc: String::new(),
        bcc: String::new(),
        headers: Vec::new(),
        headers_truncated: false,
        header_bytes: u64::try_from(header.len()).unwrap_or(u64::MAX),
        preview: text::preview(raw, &root),
    };

    let mut searchable = Searchable::new(limits);
    let mut seen = Seen::default();
    for field in fields(header) {
        let name = field.name;
        if field.is("date") && !seen.date {
            seen.date = true;
            summary.sent = sent_date(&field.unfolded());
        } else if field.is("message-id") && !seen.message_id {
            seen.message_id = true;
            summary.message_id = message_ids(&field.unfolded()).into_iter().next();
        } else if field.is("in-reply-to") && !seen.in_reply_to {
            seen.in_reply_to = true;
            summary.in_reply_to = message_ids(&field.unfolded());
        } else if field.is("references") && !seen.references {
            seen.references = true;
            summary.references = message_ids(&field.unfolded());
        } else if field.is("subject") && !seen.subject {
            seen.subject = true;
            summary.subject = decode_words(&field.unfolded());
            summary.base_subject = subject::base_subject(&summary.subject);
        } else {
            for (slot, seen_it, wanted) in [
                (&mut summary.from, &mut seen.from, "from"),
                (&mut summary.to, &mut seen.to, "to"),
                (&mut summary.cc, &mut seen.cc, "cc"),
                (&mut summary.bcc, &mut seen.bcc, "bcc"),
            ] {
                if field.is(wanted) && !*seen_it {
                    *seen_it = true;
                    *slot = address_text(&field.unfolded());
                }
            }
        }

        searchable.push(name, &field);
    }
    (summary.headers, summary.headers_truncated) = (searchable.fields, searchable.truncated);
    summary
}

/// The searchable copy of a message's header fields (name, unfolded and
/// decoded value), within `limits`: what [`Summary::headers`] holds.
pub(crate) fn header_fields(raw: &[u8], limits: &Limits) -> Vec<(String, String)> {
    let header = raw
        .get(..crate::header::body_start(raw, 0..raw.len()))
        .unwrap_or_default();
    let mut searchable = Searchable::new(limits);
    for field in fields(header) {
        searchable.push(field.name, &field);
    }
    searchable.fields
}

/// Header fields collected for SEARCH, bounded in count and decoded bytes.
struct Searchable {
    fields: Vec<(String, String)>,
    truncated: bool,
    bytes_left: usize,
    fields_max: usize,
}

impl Searchable {
    fn new(limits: &Limits) -> Self {
        Searchable {
            fields: Vec::new(),
            truncated: false,
            bytes_left: limits.header_bytes_max,
            fields_max: limits.header_fields_max,
        }
    }

    /// Adds one field, unless a limit was reached. Checking the raw size
    /// first bounds the decoding work as well as the result.
    fn push(&mut self, name: &[u8], field: &crate::header::Field<'_>) {
        if self.truncated {
            return;
        }
        if self.fields.len() >= self.fields_max || field.value.len() > self.bytes_left {
            self.truncated = true;
            return;
        }
        let value = decode_words(&field.unfolded());
        if value.len() > self.bytes_left {
            self.truncated = true;
            return;
        }
        self.bytes_left -= value.len();
        self.fields
            .push((decode::header_text(name).into_owned(), value));
    }
}

/// First occurrences already taken (later duplicates are ignored).
#[derive(Default)]
struct Seen {
    date: bool,
    message_id: bool,
    in_reply_to: bool,
    references: bool,
    subject: bool,
    from: bool,
    to: bool,
    cc: bool,
    bcc: bool,
}

/// mail-parser's field parsers read up to the line break that ends a field.
fn with_line_end(value: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(value.len() + 1);
    line.extend_from_slice(value);
    line.push(b'\n');
    line
}

/// An unfolded value with RFC 2047 encoded words decoded (mail-parser).
/// Raw 8-bit text is read as in [`decode::header_text`]; NUL bytes are
/// dropped, as no search or display wants them.
pub(crate) fn decode_words(value: &[u8]) -> String {
    let text = decode::header_text(value);
    let line = with_line_end(text.as_bytes());
    match MessageStream::new(&line).parse_unstructured() {
        HeaderValue::Text(text) if text.contains('\0') => text.replace('\0', ""),
        HeaderValue::Text(text) => text.into_owned(),
        _ => String::new(),
    }
}

/// The Date field as instant and calendar day in its own zone (mail-parser
/// parses the RFC 5322 and obsolete forms).
fn sent_date(value: &[u8]) -> Option<SentDate> {
    let line = with_line_end(value);
    match MessageStream::new(&line).parse_date() {
        HeaderValue::DateTime(date) if date.is_valid() => Some(SentDate {
            unix_seconds: date.to_timestamp(),
            year: date.year,
            month: date.month,
            day: date.day,
        }),
        _ => None,
    }
}

/// Message ids of a Message-ID, In-Reply-To or References field, each
/// written `<id>`.
fn message_ids(value: &[u8]) -> Vec<String> {
    let line = with_line_end(value);
    let ids = match MessageStream::new(&line).parse_id() {
        HeaderValue::Text(id) => vec![id],
        HeaderValue::TextList(ids) => ids,
        _ => Vec::new(),
    };
    ids.into_iter()
        .filter(|id| !id.is_empty())
        .map(|id| format!("<{id}>"))
        .collect()
}

/// "Name <local@domain>, ..." with names decoded, group members listed.
fn address_text(value: &[u8]) -> String {
    let mut out = String::new();
    for address in address::parse(value) {
        let Address::Mailbox {
            name,
            local,
            domain,
            ..
        } = address
        else {
            continue;
        };
        if !out.is_empty() {
            out.push_str(", ");
        }
        let mut addr = decode::header_text(&local).replace('\0', "");
        if !domain.is_empty() {
            addr.push('@');
            addr.push_str(&decode::header_text(&domain).replace('\0', ""));
        }
        match name.map(|name| decode_words(&name)) {
            Some(name) if !name.is_empty() => {
                out.push_str(&name);
                if !addr.is_empty() {
                    out.push_str(" <");
                    out.push_str(&addr);
                    out.push('>');
                }
            }
            _ => out.push_str(&addr),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_encoded_words() {
        assert_eq!(
            decode_words(b"=?UTF-8?Q?caf=C3=A9?= au lait"),
            "café au lait"
        );
        assert_eq!(decode_words(b"plain"), "plain");
        assert_eq!(decode_words(b""), "");
    }

    #[test]
    fn dates() {
        let date = sent_date(b"Mon, 7 Feb 1994 21:52:25 -0800");
        assert_eq!(
            date,
            Some(SentDate {
                unix_seconds: 760_686_745,
                year: 1994,
                month: 2,
                day: 7
            })
        );
        assert_eq!(sent_date(b"not a date"), None);
    }

    #[test]
    fn ids_and_addresses() {
        assert_eq!(message_ids(b"<a@b> <c@d>"), vec!["<a@b>", "<c@d>"]);
        assert_eq!(
            address_text(b"=?UTF-8?Q?J=C3=B6rg?= <j@x>, g: a@b;, plain@c"),
            "Jörg <j@x>, a@b, plain@c"
        );
    }
}
