//! BODY and BODYSTRUCTURE rendering (RFC 9051 7.5.2, grammar `body` in
//! section 9).
//!
//! Values come out as the sender wrote them (case kept, RFC 2231 parameters
//! not decoded), like Dovecot. Defaults are written in the upper case the
//! RFC examples use.

use crate::content::Param;
use crate::envelope;
use crate::imap::{push_nstring, push_string};
use crate::tree::{Kind, Media, Part};

/// Which of the two forms to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `BODY`: no extension data.
    Body,
    /// `BODYSTRUCTURE`: with extension data.
    Structure,
}

/// Renders the body structure of `part` (a message or a part) from `raw`.
pub(crate) fn render(raw: &[u8], part: &Part, form: Form, out: &mut String) {
    out.push('(');
    match &part.kind {
        Kind::Multipart(children) => {
            for child in children {
                render(raw, child, form, out);
            }
            out.push(' ');
            let subtype = match &part.content.media {
                Some((_, subtype)) => subtype.as_slice(),
                None => b"MIXED",
            };
            push_string(out, subtype);
            if form == Form::Structure {
                out.push(' ');
                push_params(out, &part.content.params);
                push_extension_tail(out, part);
            }
        }
        Kind::Leaf { .. } | Kind::Message(_) => render_single(raw, part, form, out),
    }
    out.push(')');
}

/// A non-multipart part: `body-type-basic`, `body-type-text` or
/// `body-type-msg`, then the single-part extension data.
fn render_single(raw: &[u8], part: &Part, form: Form, out: &mut String) {
    let content = &part.content;
    let body = raw.get(part.body.clone()).unwrap_or_default();
    match part.media() {
        Media::Declared(kind, subtype) => {
            push_string(out, kind);
            out.push(' ');
            push_string(out, subtype);
            out.push(' ');
            if part.is_text() && content.param("charset").is_none() {
                // RFC 2045 5.2: text without a charset is us-ascii; saying so
                // spares clients from guessing.
                let mut params = content.params.clone();
                params.push((b"CHARSET".to_vec(), b"US-ASCII".to_vec()));
                push_params(out, &params);
            } else {
                push_params(out, &content.params);
            }
        }
        Media::DefaultText => out.push_str("\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\")"),
        Media::DefaultMessage => out.push_str("\"MESSAGE\" \"RFC822\" NIL"),
        Media::FallbackText => {
            out.push_str("\"TEXT\" \"PLAIN\" ");
            // Keep a declared charset; the boundary no longer applies.
            match content.param("charset") {
                Some(charset) => {
                    out.push_str("(\"CHARSET\" ");
                    push_string(out, charset);
                    out.push(')');
                }
                None => out.push_str("(\"CHARSET\" \"US-ASCII\")"),
            }
        }
        Media::FallbackBinary => out.push_str("\"APPLICATION\" \"OCTET-STREAM\" NIL"),
    }
    out.push(' ');
    push_nstring(out, content.id.as_deref());
    out.push(' ');
    push_nstring(out, content.description.as_deref());
    out.push(' ');
    match &content.transfer_encoding {
        Some(encoding) => push_string(out, encoding),
        None => out.push_str("\"7BIT\""),
    }
    out.push(' ');
    out.push_str(&body.len().to_string());

    if let Kind::Message(inner) = &part.kind {
        let inner_header = raw.get(inner.header.clone()).unwrap_or_default();
        out.push(' ');
        envelope::render(inner_header, out);
        out.push(' ');
        render(raw, inner, form, out);
        out.push(' ');
        out.push_str(&line_count(body).to_string());
    } else if part.is_text() {
        out.push(' ');
        out.push_str(&line_count(body).to_string());
    }

    if form == Form::Structure {
        out.push(' ');
        push_nstring(out, content.md5.as_deref());
        push_extension_tail(out, part);
    }
}

/// ` disposition language location`, shared by both part kinds.
fn push_extension_tail(out: &mut String, part: &Part) {
    let content = &part.content;
    out.push(' ');
    match &content.disposition {
        Some((kind, params)) => {
            out.push('(');
            push_string(out, kind);
            out.push(' ');
            push_params(out, params);
            out.push(')');
        }
        None => out.push_str("NIL"),
    }
    out.push(' ');
    match content.languages.as_slice() {
        [] => out.push_str("NIL"),
        [single] => push_string(out, single),
        several => {
            out.push('(');
            for (index, language) in several.iter().enumerate() {
                if index > 0 {
                    out.push(' ');
                }
                push_string(out, language);
            }
            out.push(')');
        }
    }
    out.push(' ');
    push_nstring(out, content.location.as_deref());
}

/// `body-fld-param`: `("name" "value" ...)` or NIL.
fn push_params(out: &mut String, params: &[Param]) {
    if params.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for (index, (name, value)) in params.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        push_string(out, name);
        out.push(' ');
        push_string(out, value);
    }
    out.push(')');
}

/// Lines in a body: line breaks, plus one for a last line without its
/// own (in a multipart the break before the delimiter is not the part's).
pub(crate) fn line_count(body: &[u8]) -> usize {
    let breaks = body.iter().filter(|&&byte| byte == b'\n').count();
    match body.last() {
        Some(b'\n') | None => breaks,
        Some(_) => breaks + 1,
    }
}
