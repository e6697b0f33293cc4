//! The MIME part tree of a message: byte ranges of every header and body,
//! with each entity's MIME fields.
//!
//! Written by hand instead of using mail-parser's part tree because:
//! - mail-parser rescans the rest of the message for every multipart whose
//!   boundary never appears, which is quadratic: a 1.2 MB message of 20,000
//!   such parts took 7.5 s in a release build. Delivery must not stall on a
//!   hostile message.
//! - it has no bound on the number of parts or the nesting depth;
//! - it matches boundaries anywhere in a line, while RFC 2046 delimiters
//!   start a line, and IMAP part sizes and line counts depend on that;
//! - offsets of parts inside an encapsulated message are relative to a
//!   different buffer depending on the encoding.
//!
//! Here each multipart body is scanned once for its own delimiters, so the
//! cost is O(message size × nesting depth), and depth and part count are
//! bounded by [`Limits`].

use std::ops::Range;

use crate::Limits;
use crate::content::Content;
use crate::header::{body_start, next_line_start, trim_line_end};

/// One MIME entity: a message, a part of a multipart, or an encapsulated
/// message.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// The entity header including the blank line that ends it.
    pub header: Range<usize>,
    /// The body: everything after the header up to the line break before
    /// the next delimiter (which belongs to the delimiter, RFC 2046 5.1.1).
    pub body: Range<usize>,
    pub content: Content,
    pub kind: Kind,
    /// Inside a multipart/digest the default type is message/rfc822.
    pub in_digest: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A leaf. `opaque` is set when a multipart or message could not be
    /// split (no boundary found, or a limit reached); it is then described
    /// as a leaf, see [`Part::media`].
    Leaf {
        opaque: bool,
    },
    Multipart(Vec<Part>),
    /// message/rfc822 or message/global: the encapsulated message.
    Message(Box<Part>),
}

/// The media type to report for a part, after defaults and fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Media<'a> {
    /// As declared in Content-Type.
    Declared(&'a [u8], &'a [u8]),
    /// No usable Content-Type: RFC 2045 default text/plain; charset=us-ascii.
    DefaultText,
    /// No usable Content-Type inside multipart/digest (RFC 2046 5.1.5).
    DefaultMessage,
    /// A multipart whose parts could not be found: its body is offered as
    /// plain text so that the reader still sees the content.
    FallbackText,
    /// A message/rfc822 that is not described as a message (encoded, or
    /// past a limit): offered as an opaque attachment, because the
    /// message/rfc822 syntax requires an envelope and body structure.
    FallbackBinary,
}

impl Part {
    pub(crate) fn media(&self) -> Media<'_> {
        let is_multipart = self.content.is_type("multipart", None);
        if let Kind::Leaf { opaque: true } = self.kind {
            return if is_multipart {
                Media::FallbackText
            } else {
                Media::FallbackBinary
            };
        }
        match &self.content.media {
            Some((kind, subtype)) => Media::Declared(kind, subtype),
            None if self.in_digest => Media::DefaultMessage,
            None => Media::DefaultText,
        }
    }

    /// Whether the reported type is text/* (sizes then carry a line count).
    pub(crate) fn is_text(&self) -> bool {
        match self.media() {
            Media::Declared(kind, _) => kind.eq_ignore_ascii_case(b"text"),
            Media::DefaultText | Media::FallbackText => true,
            Media::DefaultMessage | Media::FallbackBinary => false,
        }
    }

    pub(crate) fn is_subtype(&self, kind: &str, subtype: &str) -> bool {
        match self.media() {
            Media::Declared(declared, declared_sub) => {
                declared.eq_ignore_ascii_case(kind.as_bytes())
                    && declared_sub.eq_ignore_ascii_case(subtype.as_bytes())
            }
            Media::DefaultText | Media::FallbackText => kind == "text" && subtype == "plain",
            Media::DefaultMessage => kind == "message" && subtype == "rfc822",
            Media::FallbackBinary => kind == "application" && subtype == "octet-stream",
        }
    }
}

/// Nesting depth never exceeded whatever the configured limit: building and
/// rendering recurse once per level, and this keeps them far from the end
/// of a thread's stack.
const MIME_DEPTH_HARD_MAX: usize = 256;

/// Builds the part tree of the message `raw`.
pub(crate) fn parse(raw: &[u8], limits: &Limits) -> Part {
    let mut parts_left = limits.mime_parts_max.max(1);
    let limits = Limits {
        mime_depth_max: limits.mime_depth_max.min(MIME_DEPTH_HARD_MAX),
        ..*limits
    };
    build(raw, 0..raw.len(), 0, false, &limits, &mut parts_left)
}

/// The entity in `range`: its header, body and MIME fields, as a leaf (the
/// caller descends into it).
fn entity(raw: &[u8], range: Range<usize>, in_digest: bool) -> Part {
    let body_from = body_start(raw, range.clone());
    let header = range.start..body_from;
    let content = Content::from_header(raw.get(header.clone()).unwrap_or_default());
    Part {
        header,
        body: body_from..range.end,
        content,
        kind: Kind::Leaf { opaque: false },
        in_digest,
    }
}

/// The ranges of the parts of a multipart entity, empty when it has no
/// usable boundary or none of its delimiters is found.
fn multipart_children(raw: &[u8], part: &Part) -> Vec<Range<usize>> {
    match part.content.param("boundary") {
        Some(boundary) if !boundary.is_empty() => child_ranges(raw, part.body.clone(), boundary),
        _ => Vec::new(),
    }
}

/// Whether `part` is an encapsulated message: declared (or, in a digest,
/// defaulting to) message/rfc822 or message/global.
fn is_message(part: &Part) -> bool {
    part.is_subtype("message", "rfc822") || part.is_subtype("message", "global")
}

fn build(
    raw: &[u8],
    range: Range<usize>,
    depth: usize,
    in_digest: bool,
    limits: &Limits,
    parts_left: &mut usize,
) -> Part {
    *parts_left = parts_left.saturating_sub(1);
    let mut part = entity(raw, range, in_digest);
    let body = part.body.clone();
    let can_descend = depth < limits.mime_depth_max && *parts_left > 0;

    if part.content.is_type("multipart", None) {
        let is_digest = part.content.is_type("multipart", Some("digest"));
        let ranges = if can_descend {
            multipart_children(raw, &part)
        } else {
            Vec::new()
        };
        let mut children = Vec::new();
        for child in ranges {
            if *parts_left == 0 {
                break;
            }
            children.push(build(raw, child, depth + 1, is_digest, limits, parts_left));
        }
        part.kind = if children.is_empty() {
            Kind::Leaf { opaque: true }
        } else {
            Kind::Multipart(children)
        };
    } else if is_message(&part) {
        // An encoded message/rfc822 is not allowed (RFC 2046 5.2.1); we do
        // not decode it, so it is described as an ordinary leaf.
        part.kind = if part.content.is_identity_encoding() && can_descend {
            let inner = build(raw, body, depth + 1, false, limits, parts_left);
            Kind::Message(Box::new(inner))
        } else {
            Kind::Leaf { opaque: true }
        };
    }
    part
}

/// Calls `visit` on every leaf of the message `raw` in MIME order, including
/// the parts of encapsulated messages, until it returns `false`. Returns
/// whether `visit` never did.
///
/// The leaves are those [`parse`] would find without its part limit: the
/// depth limit still applies (deeper entities are opaque leaves), but every
/// part of every multipart is visited. SEARCH reads the text of a message
/// through this, so that text in the parts the cached description leaves
/// out (a message of 5,000 parts) is still found. Nothing is kept: memory is
/// one entity and the part ranges of one multipart per open level, and the
/// work is that of `parse`, O(message size × nesting depth).
pub(crate) fn visit_leaves(
    raw: &[u8],
    limits: &Limits,
    visit: &mut dyn FnMut(&Part) -> bool,
) -> bool {
    let depth_max = limits.mime_depth_max.min(MIME_DEPTH_HARD_MAX);
    visit_entity(raw, 0..raw.len(), 0, false, depth_max, visit)
}

fn visit_entity(
    raw: &[u8],
    range: Range<usize>,
    depth: usize,
    in_digest: bool,
    depth_max: usize,
    visit: &mut dyn FnMut(&Part) -> bool,
) -> bool {
    let mut part = entity(raw, range, in_digest);
    let can_descend = depth < depth_max;
    if part.content.is_type("multipart", None) {
        let is_digest = part.content.is_type("multipart", Some("digest"));
        let ranges = if can_descend {
            multipart_children(raw, &part)
        } else {
            Vec::new()
        };
        if !ranges.is_empty() {
            return ranges
                .into_iter()
                .all(|child| visit_entity(raw, child, depth + 1, is_digest, depth_max, visit));
        }
        part.kind = Kind::Leaf { opaque: true };
    } else if is_message(&part) {
        if part.content.is_identity_encoding() && can_descend {
            return visit_entity(raw, part.body.clone(), depth + 1, false, depth_max, visit);
        }
        part.kind = Kind::Leaf { opaque: true };
    }
    visit(&part)
}

/// The ranges of the parts of a multipart body delimited by `boundary`.
///
/// A delimiter is a line of `--boundary` followed by nothing but
/// whitespace, or by `--` and anything (the close delimiter). The
/// line break before a delimiter belongs to it. The close delimiter
/// `--boundary--` ends the list; without it the last part runs to the end
/// of the body. Empty when no delimiter is found.
fn child_ranges(raw: &[u8], body: Range<usize>, boundary: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut position = body.start;
    let mut previous_line_start = body.start;
    while position < body.end {
        let rest = raw.get(position..body.end).unwrap_or_default();
        let line_len = next_line_start(rest);
        let line = trim_line_end(rest.get(..line_len).unwrap_or_default());
        let after = line
            .strip_prefix(b"--")
            .and_then(|after| after.strip_prefix(boundary));
        // Only padding may follow a delimiter, so that a nested boundary
        // that extends this one ("b" and "b2") is not taken for it.
        let after = after.filter(|after| {
            after.starts_with(b"--") || after.iter().all(|&byte| byte == b' ' || byte == b'\t')
        });
        if let Some(after) = after {
            let is_close = after.starts_with(b"--");
            if let Some(start) = part_start {
                // Exclude the line break that precedes the delimiter.
                let end = line_break_start(raw, previous_line_start, position).max(start);
                ranges.push(start..end);
            }
            if is_close {
                return ranges;
            }
            part_start = Some(position + line_len);
        }
        previous_line_start = position;
        position += line_len;
    }
    if let Some(start) = part_start {
        ranges.push(start.min(body.end)..body.end);
    }
    ranges
}

/// Where the line break ending the line before `line_start` begins (CRLF or
/// bare LF); `line_start` itself when the delimiter is the first line.
fn line_break_start(raw: &[u8], previous_line_start: usize, line_start: usize) -> usize {
    if line_start == previous_line_start {
        return line_start;
    }
    let mut end = line_start;
    if end > previous_line_start && raw.get(end - 1) == Some(&b'\n') {
        end -= 1;
        if end > previous_line_start && raw.get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
    }
    end
}

/// The part named by an IMAP part number (RFC 9051 6.4.5), from the top
/// level message.
///
/// A non-multipart message has one part, numbered 1: the message itself
/// seen as a part. Parts of an encapsulated message are numbered below the
/// message/rfc822 part. Part numbers start at 1; 0 or a number past the end
/// names nothing.
pub(crate) fn resolve<'t>(root: &'t Part, path: &[u32]) -> Option<&'t Part> {
    let mut node = root;
    let mut in_message = true;
    for &number in path {
        let index = usize::try_from(number).ok()?.checked_sub(1)?;
        node = if in_message {
            message_child(node, index)?
        } else {
            part_child(node, index)?
        };
        in_message = false;
    }
    Some(node)
}

fn message_child(message: &Part, index: usize) -> Option<&Part> {
    match &message.kind {
        Kind::Multipart(children) => children.get(index),
        _ => (index == 0).then_some(message),
    }
}

fn part_child(part: &Part, index: usize) -> Option<&Part> {
    match &part.kind {
        Kind::Multipart(children) => children.get(index),
        Kind::Message(inner) => message_child(inner, index),
        Kind::Leaf { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(raw: &'a [u8], part: &Part) -> Vec<&'a [u8]> {
        match &part.kind {
            Kind::Multipart(children) => children
                .iter()
                .map(|child| &raw[child.body.clone()])
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn splits_parts_and_excludes_line_break_before_delimiter() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n--b\r\n\r\none\r\n--b\r\nContent-Type: text/html\r\n\r\ntwo\r\n\r\n--b--\r\nepilogue\r\n";
        let root = parse(raw, &Limits::default());
        assert_eq!(texts(raw, &root), vec![&b"one"[..], &b"two\r\n"[..]]);
    }

    #[test]
    fn missing_close_delimiter_runs_to_end() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n";
        let root = parse(raw, &Limits::default());
        assert_eq!(texts(raw, &root), vec![&b"one"[..], &b"two\n"[..]]);
    }

    #[test]
    fn missing_boundary_falls_back_to_text() {
        let raw = b"Content-Type: multipart/mixed; boundary=zz\n\n--b\n\none\n";
        let root = parse(raw, &Limits::default());
        assert!(matches!(root.kind, Kind::Leaf { opaque: true }));
        assert_eq!(root.media(), Media::FallbackText);
    }

    #[test]
    fn limits_bound_depth_and_parts() {
        let mut raw = Vec::new();
        for _ in 0..100 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\n\n");
        }
        let limits = Limits {
            mime_depth_max: 5,
            ..Limits::default()
        };
        let mut depth = 0;
        let mut node = parse(&raw, &limits);
        while let Kind::Message(inner) = node.kind {
            depth += 1;
            node = *inner;
        }
        assert_eq!(depth, 5);
    }

    #[test]
    fn part_numbers() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: message/rfc822\n\nSubject: inner\n\ninner body\n--b--\n";
        let root = parse(raw, &Limits::default());
        let body = |path: &[u32]| resolve(&root, path).map(|part| &raw[part.body.clone()]);
        assert_eq!(body(&[1]), Some(&b"one"[..]));
        assert_eq!(body(&[2, 1]), Some(&b"inner body"[..]));
        assert_eq!(body(&[2, 2]), None);
        assert_eq!(body(&[3]), None);
        assert_eq!(body(&[0]), None);
        assert_eq!(body(&[1, 1]), None);
    }
}
