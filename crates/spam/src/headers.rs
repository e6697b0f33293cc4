//! Header fields at SMTP intake: removing the ones a sender may not write,
//! and writing ours.
//!
//! Our verdicts travel in the message: `Authentication-Results` under our
//! authserv-id (RFC 8601) and `X-Postern-Spam`. Mail clients and filters
//! believe those fields because they trust us to have written them, so a
//! sender must not be able to: RFC 8601 section 5 asks the receiving server
//! to remove fields claiming its authserv-id before adding its own. That
//! is the one change SMTP intake makes to the bytes it was given
//! ([`strip_claimed`]); everything else, body included, stays byte for
//! byte.
//!
//! The header section is everything up to the first empty line (LF or
//! CRLF), or the whole message when there is none. That is deliberately
//! wide: a reader that is lax about where a header ends could take any line
//! before the first empty one for a field, so a claim anywhere there is
//! removed. Lines end at LF, with or without CR before it; a bare CR is
//! not a line end. Every function here is one forward pass with no
//! recursion, whatever the input.

use std::borrow::Cow;

/// The field that carries authentication results (RFC 8601).
const AUTHENTICATION_RESULTS: &[u8] = b"Authentication-Results";

/// The field that carries our score ([`crate::score::header_value`]).
pub const SPAM_FIELD: &str = "X-Postern-Spam";

/// Longest line [`field`] writes when the words allow (RFC 5322 section
/// 2.1.1's recommendation), in bytes, CRLF not counted.
pub const LINE_BYTES_MAX: usize = 78;

/// Bytes of the header section, including the empty line that ends it;
/// the whole message when there is no empty line. The body is what follows.
pub fn header_section_len(message: &[u8]) -> usize {
    let mut position = 0;
    while let Some(rest) = message.get(position..).filter(|rest| !rest.is_empty()) {
        let line_len = line_len(rest);
        if is_empty_line(rest.get(..line_len).unwrap_or_default()) {
            return position + line_len;
        }
        position += line_len;
    }
    message.len()
}

/// The message with, in its header section only, every
/// `Authentication-Results` field whose authserv-id (the first token of
/// the value, after CFWS and comments, compared case-insensitively;
/// RFC 8601 section 5) equals `authserv_id`, and every `X-Postern-Spam`
/// field, removed, continuation lines included. The body, and every other
/// header byte, unchanged. A message with no empty line is all header.
/// `Cow::Borrowed` when nothing is removed.
///
/// Field names match case-insensitively, with any whitespace before the
/// colon (obsolete syntax, RFC 5322 section 4.5.8) ignored;
/// `Authentication-Results-Foo` is not a match. A field whose
/// authserv-id cannot be read (an unterminated comment or quoted string)
/// claims nothing and is kept. An empty `authserv_id` matches nothing.
pub fn strip_claimed<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let header_len = header_section_len(message);
    let header = message.get(..header_len).unwrap_or_default();
    let authserv_id = authserv_id.trim().as_bytes();
    let mut out: Option<Vec<u8>> = None;
    // Bytes before `copied_to` are in `out` already (or removed).
    let mut copied_to = 0;
    let mut position = 0;
    while let Some(rest) = header.get(position..).filter(|rest| !rest.is_empty()) {
        let first_len = line_len(rest);
        let first_line = rest.get(..first_len).unwrap_or_default();
        if is_empty_line(first_line) {
            break;
        }
        if starts_with_whitespace(first_line) {
            // A continuation line with no field before it: not a field.
            position += first_len;
            continue;
        }
        let mut field_len = first_len;
        while let Some(next) = rest
            .get(field_len..)
            .filter(|next| starts_with_whitespace(next))
        {
            field_len += line_len(next);
        }
        let field = rest.get(..field_len).unwrap_or_default();
        if is_claimed(field, authserv_id) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(message.len()));
            out.extend_from_slice(message.get(copied_to..position).unwrap_or_default());
            copied_to = position + field_len;
        }
        position += field_len;
    }
    match out {
        None => Cow::Borrowed(message),
        Some(mut out) => {
            out.extend_from_slice(message.get(copied_to..).unwrap_or_default());
            Cow::Owned(out)
        }
    }
}

/// One header field, `name: value` folded at whitespace to lines of at
/// most [`LINE_BYTES_MAX`] bytes where the words allow (a longer word gets
/// a line of its own), ending in CRLF.
///
/// Runs of whitespace and control characters in `value` become one space,
/// so no value can end the field early or start another (CR and LF are
/// control characters). Characters of `name` outside printable ASCII, and
/// `:`, become `_`.
pub fn field(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.extend(name.chars().map(|c| {
        if c.is_ascii_graphic() && c != ':' {
            c
        } else {
            '_'
        }
    }));
    if name.is_empty() {
        out.push('_');
    }
    out.push(':');
    let mut line_len = out.len();
    let mut words_on_line = 0;
    let words = value
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty());
    for word in words {
        if words_on_line > 0 && line_len + 1 + word.len() > LINE_BYTES_MAX {
            out.push_str("\r\n");
            line_len = 0;
            words_on_line = 0;
        }
        out.push(' ');
        out.push_str(word);
        line_len += 1 + word.len();
        words_on_line += 1;
    }
    out.push_str("\r\n");
    out
}

/// Length of the line at the start of `bytes`, its LF included (or up to
/// the end when the last line has none).
fn line_len(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&byte| byte == b'\n')
        .map_or(bytes.len(), |index| index + 1)
}

fn is_empty_line(line: &[u8]) -> bool {
    line == b"\n" || line == b"\r\n"
}

fn starts_with_whitespace(line: &[u8]) -> bool {
    matches!(line.first(), Some(b' ' | b'\t'))
}

/// Whether a whole field (all its lines) is one a sender may not write.
fn is_claimed(field: &[u8], authserv_id: &[u8]) -> bool {
    let Some(colon) = field.iter().position(|&byte| byte == b':') else {
        return false;
    };
    let name = field.get(..colon).unwrap_or_default();
    if name.contains(&b'\n') {
        // The colon is on a later line: the first line is not a field.
        return false;
    }
    let name = name.trim_ascii_end();
    if name.eq_ignore_ascii_case(SPAM_FIELD.as_bytes()) {
        return true;
    }
    if !name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS) || authserv_id.is_empty() {
        return false;
    }
    let value = field.get(colon + 1..).unwrap_or_default();
    first_value(value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
}

/// The first `value` (RFC 2045 token or quoted-string, RFC 8601's
/// authserv-id) after CFWS, unquoted; `None` when there is none or a
/// comment or quoted string does not end.
fn first_value(bytes: &[u8]) -> Option<Vec<u8>> {
    let start = skip_cfws(bytes)?;
    let rest = bytes.get(start..)?;
    if rest.first() == Some(&b'"') {
        let mut unquoted = Vec::new();
        let mut index = 1;
        loop {
            match rest.get(index)? {
                b'"' => return Some(unquoted),
                b'\\' => {
                    unquoted.push(*rest.get(index + 1)?);
                    index += 2;
                }
                b'\r' | b'\n' => index += 1,
                byte => {
                    unquoted.push(*byte);
                    index += 1;
                }
            }
        }
    }
    let token_len = rest
        .iter()
        .position(|&byte| !is_token_byte(byte))
        .unwrap_or(rest.len());
    (token_len > 0).then(|| rest.get(..token_len).unwrap_or_default().to_vec())
}

/// Where the bytes after leading CFWS (whitespace, line breaks, comments,
/// nested comments with quoted-pairs) start; `None` for an unterminated
/// comment. Iterative, with a depth counter instead of recursion.
fn skip_cfws(bytes: &[u8]) -> Option<usize> {
    let mut index = 0;
    loop {
        match bytes.get(index) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => index += 1,
            Some(b'(') => {
                let mut depth = 1usize;
                index += 1;
                while depth > 0 {
                    match bytes.get(index)? {
                        b'\\' => index += 1,
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    index += 1;
                }
            }
            _ => return Some(index),
        }
    }
}

/// RFC 2045 token characters, and UTF-8 bytes (an internationalised
/// authserv-id, RFC 6532).
fn is_token_byte(byte: u8) -> bool {
    byte >= 0x80 || (byte.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&byte))
}

#[cfg(test)]
mod tests;
