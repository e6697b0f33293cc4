//! Raw header blocks: where a header ends, and its fields as byte slices.
//!
//! Written by hand rather than taken from mail-parser because IMAP needs the
//! raw bytes: `BODY[HEADER.FIELDS]` returns the folded lines exactly as
//! received, ENVELOPE carries undecoded values, and `BODY[n.MIME]` needs the
//! exact extent of a part header. mail-parser hands out decoded values and
//! would also need the whole header held in memory as typed values; here
//! fields are produced lazily by an iterator, so a header of 50,000 fields
//! costs one pass and no per-field allocation.
//!
//! Every function here is a single forward scan: no input makes it quadratic.

use std::ops::Range;

/// Where the header of the entity in `range` ends: the offset of the first
/// body byte. The header includes the blank line that ends it.
///
/// A header normally ends at the first empty line. When that line is missing
/// we end the header at the first line that cannot be a header field (no
/// `name:` and not a continuation), as Python's `email` package does, so that
/// the body text of a message without the blank line is not swallowed into
/// the header. A first line starting with `From ` (an mbox separator) is
/// tolerated.
pub(crate) fn body_start(raw: &[u8], range: Range<usize>) -> usize {
    let slice = raw.get(range.clone()).unwrap_or_default();
    let mut position = 0;
    let mut first = true;
    while position < slice.len() {
        let rest = slice.get(position..).unwrap_or_default();
        let next = next_line_start(rest);
        let line = trim_line_end(rest.get(..next).unwrap_or_default());
        if line.is_empty() {
            return range.start + position + next;
        }
        let is_continuation = matches!(line.first(), Some(b' ' | b'\t'));
        let is_mbox_separator = first && line.starts_with(b"From ");
        if !is_continuation && !is_mbox_separator && field_name(line).is_none() {
            return range.start + position;
        }
        first = false;
        position += next;
    }
    range.end
}

/// Length of the line at the start of `bytes`, including its LF (or up to the
/// end when the last line is unterminated).
pub(crate) fn next_line_start(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&byte| byte == b'\n') {
        Some(index) => index + 1,
        None => bytes.len(),
    }
}

/// The line without its LF or CRLF ending.
pub(crate) fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The field name of a header line, if the line starts with one: printable
/// US-ASCII other than `:` (RFC 5322 ftext), optionally followed by
/// whitespace (obsolete syntax, still seen), then the colon.
fn field_name(line: &[u8]) -> Option<(&[u8], usize)> {
    let colon = line.iter().position(|&byte| byte == b':')?;
    let name = line.get(..colon)?;
    let name = trim_end_whitespace(name);
    if name.is_empty() || !name.iter().all(|&byte| (33..=126).contains(&byte)) {
        return None;
    }
    Some((name, colon))
}

fn trim_end_whitespace(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|byte| !matches!(byte, b' ' | b'\t'))
        .map_or(0, |index| index + 1);
    bytes.get(..end).unwrap_or_default()
}

/// Strips leading and trailing whitespace (SP, HTAB, CR, LF).
pub(crate) fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| matches!(byte, b' ' | b'\t' | b'\r' | b'\n');
    let start = bytes.iter().position(|byte| !is_space(byte));
    let Some(start) = start else {
        return &[];
    };
    let end = bytes
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |index| index + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// One header field, borrowed from the header block.
#[derive(Debug, Clone)]
pub(crate) struct Field<'a> {
    /// The name as sent, without trailing whitespace.
    pub name: &'a [u8],
    /// The value as sent: everything after the colon, still folded, without
    /// the final line ending.
    pub value: &'a [u8],
    /// The whole field including continuation lines and its final line
    /// ending, as HEADER.FIELDS returns it.
    pub lines: &'a [u8],
}

impl Field<'_> {
    /// Whether the field is named `name` (field names are case-insensitive).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value unfolded (line breaks inside the value removed, RFC 5322
    /// 2.2.3) and trimmed.
    pub(crate) fn unfolded(&self) -> Vec<u8> {
        unfold(self.value)
    }
}

/// Removes the CR and LF of folded lines, keeping the whitespace that
/// follows them, and trims the result.
pub(crate) fn unfold(value: &[u8]) -> Vec<u8> {
    let value = trim(value);
    let mut out = Vec::with_capacity(value.len());
    for &byte in value {
        if byte != b'\r' && byte != b'\n' {
            out.push(byte);
        }
    }
    out
}

/// Iterates the fields of a header block. Lines that are not fields (an mbox
/// separator, an orphan continuation line) are skipped; iteration stops at
/// the blank line.
pub(crate) struct Fields<'a> {
    header: &'a [u8],
    position: usize,
}

/// The fields of `header`, the bytes of a header block.
pub(crate) fn fields(header: &[u8]) -> Fields<'_> {
    Fields {
        header,
        position: 0,
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            let rest = self.header.get(self.position..).unwrap_or_default();
            if rest.is_empty() {
                return None;
            }
            let first_len = next_line_start(rest);
            let first_line = trim_line_end(rest.get(..first_len).unwrap_or_default());
            if first_line.is_empty() {
                // The blank line: nothing after it belongs to the header.
                self.position = self.header.len();
                return None;
            }
            let parsed = if matches!(first_line.first(), Some(b' ' | b'\t')) {
                None
            } else {
                field_name(first_line)
            };
            let Some((name, colon)) = parsed else {
                self.position += first_len;
                continue;
            };
            // Extend over continuation lines.
            let mut end = first_len;
            while let Some(b' ' | b'\t') = rest.get(end) {
                let line_len = next_line_start(rest.get(end..).unwrap_or_default());
                end += line_len;
            }
            self.position += end;
            let lines = rest.get(..end).unwrap_or_default();
            let value = trim_line_end(lines).get(colon + 1..).unwrap_or_default();
            return Some(Field { name, value, lines });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(raw: &str) -> (&str, &str) {
        let start = body_start(raw.as_bytes(), 0..raw.len());
        raw.split_at(start)
    }

    #[test]
    fn header_ends_at_blank_line() {
        assert_eq!(
            split("A: 1\r\nB: 2\r\n\r\nbody"),
            ("A: 1\r\nB: 2\r\n\r\n", "body")
        );
        assert_eq!(split("A: 1\nB: 2\n\nbody\n"), ("A: 1\nB: 2\n\n", "body\n"));
    }

    #[test]
    fn header_without_blank_line_ends_at_first_non_field_line() {
        assert_eq!(
            split("A: 1\nB: 2\nhello world\n"),
            ("A: 1\nB: 2\n", "hello world\n")
        );
        assert_eq!(split("A: 1\nB: 2"), ("A: 1\nB: 2", ""));
        assert_eq!(split("no header at all\n"), ("", "no header at all\n"));
    }

    #[test]
    fn continuation_and_mbox_separator_stay_in_header() {
        assert_eq!(
            split("From a@b Mon Jan 1\nA: 1\n  more\n\nx"),
            ("From a@b Mon Jan 1\nA: 1\n  more\n\n", "x")
        );
    }

    #[test]
    fn fields_keep_raw_lines_and_values() {
        let header = b"Subject: a\r\n b\r\nX-Y : z\r\n\r\nNot: a field\r\n";
        let found: Vec<_> = fields(header).collect();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, b"Subject");
        assert_eq!(found[0].value, b" a\r\n b");
        assert_eq!(found[0].lines, b"Subject: a\r\n b\r\n");
        assert_eq!(found[0].unfolded(), b"a b");
        assert_eq!(found[1].name, b"X-Y");
        assert!(found[1].is("x-y"));
    }
}
