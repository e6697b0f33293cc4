//! `BODY[section]` and `BINARY[section]` extraction (RFC 9051 6.4.5,
//! RFC 3516).

use crate::header::{fields, trim};
use crate::tree::{self, Kind, Part};
use crate::{BinaryError, Limits, SectionKind, decode};

pub(crate) fn section(raw: &[u8], path: &[u32], kind: SectionKind<'_>) -> Option<Vec<u8>> {
    let root = std::cell::OnceCell::new();
    section_of(raw, &root, path, kind)
}

/// The message's part tree, parsed on first use.
fn tree_of<'c>(raw: &[u8], root: &'c std::cell::OnceCell<Part>) -> &'c Part {
    root.get_or_init(|| tree::parse(raw, &Limits::default()))
}

/// [`section`] with the part tree parsed at most once into `root`.
pub(crate) fn section_of(
    raw: &[u8],
    root: &std::cell::OnceCell<Part>,
    path: &[u32],
    kind: SectionKind<'_>,
) -> Option<Vec<u8>> {
    if path.is_empty() && matches!(kind, SectionKind::Full) {
        return Some(raw.to_vec());
    }
    let root = tree_of(raw, root);
    let bytes = |range: std::ops::Range<usize>| raw.get(range).map(<[u8]>::to_vec);
    if path.is_empty() {
        return match kind {
            SectionKind::Full => Some(raw.to_vec()),
            SectionKind::Header => bytes(root.header.clone()),
            SectionKind::HeaderFields { names, not } => {
                Some(header_fields(raw.get(root.header.clone())?, names, not))
            }
            SectionKind::Text => bytes(root.body.clone()),
            // The top-level header is HEADER, not MIME.
            SectionKind::Mime => None,
        };
    }
    let part = tree::resolve(root, path)?;
    match kind {
        SectionKind::Full => bytes(part.body.clone()),
        SectionKind::Mime => bytes(part.header.clone()),
        // HEADER, HEADER.FIELDS and TEXT of a part name the parts of an
        // encapsulated message; other parts have none.
        SectionKind::Header => bytes(encapsulated(part)?.header.clone()),
        SectionKind::Text => bytes(encapsulated(part)?.body.clone()),
        SectionKind::HeaderFields { names, not } => {
            let inner = encapsulated(part)?;
            Some(header_fields(raw.get(inner.header.clone())?, names, not))
        }
    }
}

fn encapsulated(part: &Part) -> Option<&Part> {
    match &part.kind {
        Kind::Message(inner) => Some(inner),
        _ => None,
    }
}

/// The fields of `header` whose names are (or with `not`, are not) in
/// `names`, as raw folded lines, followed by the blank line.
fn header_fields(header: &[u8], names: &[String], not: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for field in fields(header) {
        let listed = names
            .iter()
            .any(|name| trim(name.as_bytes()).eq_ignore_ascii_case(field.name));
        if listed != not {
            out.extend_from_slice(field.lines);
            // A last field without a line break (no body) still ends a line.
            if !field.lines.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) fn binary(raw: &[u8], path: &[u32]) -> Result<Vec<u8>, BinaryError> {
    binary_of(raw, &std::cell::OnceCell::new(), path)
}

/// [`binary`] with the part tree parsed at most once into `root`.
pub(crate) fn binary_of(
    raw: &[u8],
    root: &std::cell::OnceCell<Part>,
    path: &[u32],
) -> Result<Vec<u8>, BinaryError> {
    if path.is_empty() {
        return Ok(raw.to_vec());
    }
    let part = tree::resolve(tree_of(raw, root), path).ok_or(BinaryError::NoSuchPart)?;
    let body = raw.get(part.body.clone()).unwrap_or_default();
    if !matches!(part.kind, Kind::Leaf { .. }) {
        // Multiparts and encapsulated messages carry no encoding of their
        // own (RFC 2045 6.4): their bytes are the answer.
        return Ok(body.to_vec());
    }
    match &part.content.transfer_encoding {
        None => Ok(body.to_vec()),
        Some(encoding) => {
            let encoding = encoding.to_ascii_lowercase();
            match encoding.as_slice() {
                b"7bit" | b"8bit" | b"binary" => Ok(body.to_vec()),
                b"base64" => Ok(decode::base64(body)),
                b"quoted-printable" => Ok(decode::quoted_printable(body)),
                _ => Err(BinaryError::UnknownTransferEncoding(
                    String::from_utf8_lossy(&encoding).into_owned(),
                )),
            }
        }
    }
}
