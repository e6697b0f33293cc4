//! Content-Transfer-Encoding removal and charset conversion.
//!
//! The base64 and quoted-printable decoders are written by hand because
//! mail-parser's slice decoders give up (return `None`) at the first
//! character they do not expect, and its streaming decoders are tied to its
//! own boundary scanning. BINARY and SEARCH want best effort: skip what is
//! not valid and keep going. Charset conversion is mail-parser's.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;

/// Decodes base64, ignoring every byte outside the alphabet. Padding ends a
/// quantum; decoding resumes after it, which also handles concatenated
/// base64 blocks.
pub(crate) fn base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut quantum: u32 = 0;
    let mut count = 0u8;
    for &byte in input {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                flush(&mut out, quantum, count);
                quantum = 0;
                count = 0;
                continue;
            }
            _ => continue,
        };
        quantum = (quantum << 6) | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&quantum.to_be_bytes()[1..]);
            quantum = 0;
            count = 0;
        }
    }
    flush(&mut out, quantum, count);
    out
}

/// Writes the whole bytes of a partial quantum of `count` sextets.
fn flush(out: &mut Vec<u8>, quantum: u32, count: u8) {
    match count {
        2 => out.push((quantum >> 4) as u8),
        3 => {
            let bits = quantum >> 2;
            out.push((bits >> 8) as u8);
            out.push(bits as u8);
        }
        _ => {}
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes quoted-printable (RFC 2045 6.7): `=XX` escapes, soft line breaks,
/// trailing whitespace on lines dropped. A malformed `=` is kept literally.
/// Line breaks are kept as they are in the input.
pub(crate) fn quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut position = 0;
    while let Some(&byte) = input.get(position) {
        match byte {
            b'=' => {
                let first = input.get(position + 1).copied();
                let second = input.get(position + 2).copied();
                if let (Some(high), Some(low)) =
                    (first.and_then(hex_value), second.and_then(hex_value))
                {
                    out.push((high << 4) | low);
                    position += 3;
                    continue;
                }
                // Soft line break: '=' then optional whitespace then a break.
                let mut next = position + 1;
                while matches!(input.get(next), Some(b' ' | b'\t')) {
                    next += 1;
                }
                match input.get(next) {
                    Some(b'\n') => position = next + 1,
                    Some(b'\r') if input.get(next + 1) == Some(&b'\n') => position = next + 2,
                    None => position = next,
                    _ => {
                        out.push(b'=');
                        position += 1;
                    }
                }
            }
            b'\r' | b'\n' => {
                // Transport padding before a line break is not content.
                while matches!(out.last(), Some(b' ' | b'\t')) {
                    out.pop();
                }
                out.push(byte);
                position += 1;
            }
            _ => {
                out.push(byte);
                position += 1;
            }
        }
    }
    out
}

/// Header bytes as text. Raw 8-bit headers are UTF-8 when the sender
/// follows RFC 6532; otherwise they are almost always Latin-1 or
/// Windows-1252, which is what we read them as (Windows-1252 is a superset
/// of the printable Latin-1 range), rather than losing every accented
/// letter to U+FFFD.
pub(crate) fn header_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => match charset_decoder(b"windows-1252") {
            Some(decoder) => Cow::Owned(decoder(bytes)),
            None => String::from_utf8_lossy(bytes),
        },
    }
}

/// Converts text in `charset` to UTF-8, replacing what cannot be converted.
/// An unknown or missing charset is read as UTF-8.
pub(crate) fn to_utf8(bytes: &[u8], charset: Option<&[u8]>) -> String {
    let is_utf8_family = charset.is_none_or(|charset| {
        charset.eq_ignore_ascii_case(b"utf-8")
            || charset.eq_ignore_ascii_case(b"us-ascii")
            || charset.eq_ignore_ascii_case(b"utf8")
    });
    if !is_utf8_family && let Some(decoder) = charset.and_then(charset_decoder) {
        return decoder(bytes);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_lenient() {
        assert_eq!(base64(b"aGVsbG8="), b"hello");
        assert_eq!(base64(b"aGVs\r\nbG8gd29y\r\nbGQ="), b"hello world");
        assert_eq!(base64(b"aGV*sbG8"), b"hello");
        assert_eq!(base64(b"aGk=aGk="), b"hihi");
        assert_eq!(base64(b"a"), b"");
    }

    #[test]
    fn quoted_printable_is_lenient() {
        assert_eq!(quoted_printable(b"caf=C3=A9"), "café".as_bytes());
        assert_eq!(quoted_printable(b"soft=\r\nbreak"), b"softbreak");
        assert_eq!(quoted_printable(b"soft= \nbreak"), b"softbreak");
        assert_eq!(quoted_printable(b"a  \r\nb"), b"a\r\nb");
        assert_eq!(quoted_printable(b"bad=ZZ and ="), b"bad=ZZ and ");
        assert_eq!(quoted_printable(b"=3d=3D"), b"==");
    }

    #[test]
    fn charsets() {
        assert_eq!(to_utf8(b"caf\xe9", Some(b"iso-8859-1")), "café");
        assert_eq!(to_utf8("café".as_bytes(), None), "café");
        assert_eq!(to_utf8(b"caf\xe9", Some(b"no-such")), "caf\u{fffd}");
        assert_eq!(header_text(b"caf\xe9"), "café");
        assert_eq!(header_text("café".as_bytes()), "café");
    }
}
