//! IMAP string syntax for the rendered cache strings (RFC 9051 section 9:
//! `quoted`, `literal`, `nstring`).

use crate::decode::header_text;

/// Longest value written as a quoted string; longer ones go out as literals,
/// which clients and proxies handle without line-length limits.
const QUOTED_BYTES_MAX: usize = 1024;

/// Appends `NIL` or the value as a string.
pub(crate) fn push_nstring(out: &mut String, value: Option<&[u8]>) {
    match value {
        Some(value) => push_string(out, value),
        None => out.push_str("NIL"),
    }
}

/// Appends `value` as a quoted string when the quoted syntax allows it
/// (7-bit, no CR, LF or NUL, not too long), else as a literal.
///
/// The rendered record is a Rust `String`, so bytes that are not UTF-8 are
/// read as Windows-1252 (see [`header_text`]); a literal carries the UTF-8.
/// NUL bytes are dropped: IMAP allows them in no string form except
/// `literal8`, which ENVELOPE and BODYSTRUCTURE do not use.
pub(crate) fn push_string(out: &mut String, value: &[u8]) {
    let without_nul: Vec<u8>;
    let value = if value.contains(&0) {
        without_nul = value.iter().copied().filter(|&byte| byte != 0).collect();
        &without_nul
    } else {
        value
    };
    let quotable = value.len() <= QUOTED_BYTES_MAX
        && value
            .iter()
            .all(|&byte| (0x01..0x80).contains(&byte) && byte != b'\r' && byte != b'\n');
    if quotable {
        out.reserve(value.len() + 2);
        out.push('"');
        for &byte in value {
            if byte == b'"' || byte == b'\\' {
                out.push('\\');
            }
            out.push(char::from(byte));
        }
        out.push('"');
    } else {
        let text = header_text(value);
        out.push('{');
        out.push_str(&text.len().to_string());
        out.push_str("}\r\n");
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(value: &[u8]) -> String {
        let mut out = String::new();
        push_string(&mut out, value);
        out
    }

    #[test]
    fn quoted_with_escapes() {
        assert_eq!(string(b"a \"b\" \\c"), r#""a \"b\" \\c""#);
        assert_eq!(string(b""), r#""""#);
    }

    #[test]
    fn eight_bit_and_line_breaks_become_literals() {
        assert_eq!(string("café".as_bytes()), "{5}\r\ncafé");
        assert_eq!(string(b"caf\xe9"), "{5}\r\ncafé");
        assert_eq!(string(b"a\r\nb"), "{4}\r\na\r\nb");
        assert_eq!(string(&[b'x'; 2000]).len(), 2000 + 8);
    }

    #[test]
    fn nul_is_dropped() {
        assert_eq!(string(b"a\0b"), r#""ab""#);
    }
}
