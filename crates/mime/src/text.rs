//! Decoded text of a message: search text and the RFC 8970 preview.

use mail_parser::decoders::html::html_to_text;

use crate::tree::{self, Kind, Part};
use crate::{Limits, decode};

/// Characters in a preview (RFC 8970 section 3: at most 256).
const PREVIEW_CHARS_MAX: usize = 256;

/// Encoded bytes of a part read for its preview: enough to get past a
/// sizeable HTML `<head>`, without decoding a whole large part.
const PREVIEW_SOURCE_BYTES_MAX: usize = 256 * 1024;

/// Calls `visit` on every leaf in MIME order, including the parts of
/// encapsulated messages, until it returns `false`.
fn walk<'t>(part: &'t Part, visit: &mut impl FnMut(&'t Part) -> bool) -> bool {
    match &part.kind {
        Kind::Multipart(children) => children.iter().all(|child| walk(child, visit)),
        Kind::Message(inner) => walk(inner, visit),
        Kind::Leaf { .. } => visit(part),
    }
}

/// Whether `part` is an encapsulated message that is not described as one
/// (encoded, or past the depth limit): its bytes are still a message's text.
fn is_opaque_message(part: &Part) -> bool {
    let declared_message = match part.content.media {
        Some(_) => {
            part.content.is_type("message", Some("rfc822"))
                || part.content.is_type("message", Some("global"))
        }
        None => part.in_digest,
    };
    declared_message && matches!(part.kind, Kind::Leaf { opaque: true })
}

/// The decoded text of a text/* leaf (HTML reduced to its text), or of an
/// opaque encapsulated message, reading at most `source_bytes_max` bytes of
/// its encoded body. `None` for other parts.
pub(crate) fn leaf_text(raw: &[u8], part: &Part, source_bytes_max: usize) -> Option<String> {
    if !part.is_text() && !is_opaque_message(part) {
        return None;
    }
    let body = raw.get(part.body.clone()).unwrap_or_default();
    let body = body.get(..source_bytes_max).unwrap_or(body);
    let content = &part.content;
    let decoded = match &content.transfer_encoding {
        Some(encoding) if encoding.eq_ignore_ascii_case(b"base64") => decode::base64(body),
        Some(encoding) if encoding.eq_ignore_ascii_case(b"quoted-printable") => {
            decode::quoted_printable(body)
        }
        _ => body.to_vec(),
    };
    let text = decode::to_utf8(&decoded, content.param("charset"));
    if part.is_subtype("text", "html") {
        Some(html_to_text(&text))
    } else {
        Some(text)
    }
}

/// Decoded text of all text/* parts (and opaque encapsulated messages)
/// joined with newlines, cut at `bytes_max` bytes (on a character boundary).
/// Every part counts, also those past the part limit of the cached
/// description (see [`tree::visit_leaves`]): SEARCH must not miss them.
pub(crate) fn body_text(raw: &[u8], limits: &Limits, bytes_max: usize) -> String {
    let mut out = String::new();
    tree::visit_leaves(raw, limits, &mut |part| {
        let left = bytes_max.saturating_sub(out.len());
        if left == 0 {
            return false;
        }
        // Encoded text is rarely more than 4/3 + line breaks of its decoded
        // size, but charsets can expand it; read generously, then cut.
        let source_max = left.saturating_mul(2).saturating_add(1024);
        let Some(text) = leaf_text(raw, part, source_max) else {
            return true;
        };
        if !out.is_empty() {
            out.push('\n');
        }
        push_bounded(&mut out, &text, bytes_max) && out.len() < bytes_max
    });
    out
}

/// Appends as much of `text` as fits in `bytes_max`; whether all of it did.
fn push_bounded(out: &mut String, text: &str, bytes_max: usize) -> bool {
    let left = bytes_max.saturating_sub(out.len());
    let mut end = text.len().min(left);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(text.get(..end).unwrap_or_default());
    end == text.len()
}

/// RFC 8970 preview: the first text/plain part that is not an attachment,
/// else the first such text/html part, decoded, whitespace collapsed, at
/// most 256 characters.
pub(crate) fn preview(raw: &[u8], root: &Part) -> String {
    let mut plain = None;
    let mut html = None;
    walk(root, &mut |part| {
        if part.content.is_attachment() {
            return true;
        }
        if part.is_subtype("text", "plain") {
            plain = Some(part);
            return false;
        }
        if html.is_none() && part.is_subtype("text", "html") {
            html = Some(part);
        }
        true
    });
    let Some(part) = plain.or(html) else {
        return String::new();
    };
    let text = leaf_text(raw, part, PREVIEW_SOURCE_BYTES_MAX).unwrap_or_default();
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for character in text.chars() {
        if character.is_whitespace() || character.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= PREVIEW_CHARS_MAX {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= PREVIEW_CHARS_MAX {
            break;
        }
        out.push(character);
        count += 1;
    }
    out
}
