//! The MIME fields of one entity (RFC 2045, 2183, 3282, 2557), kept raw.
//!
//! Written by hand because BODYSTRUCTURE wants the values as sent: type,
//! subtype, parameter names and values in their original case, and RFC 2231
//! parameters (`filename*0*=...`) untouched so that clients decode them.
//! mail-parser's Content-Type parser lowercases and decodes them.

use crate::header::{Field, fields};

/// A parameter name and value, as sent (value unquoted).
pub(crate) type Param = (Vec<u8>, Vec<u8>);

/// The MIME fields of an entity header, raw (unfolded, not decoded).
#[derive(Debug, Clone, Default)]
pub(crate) struct Content {
    /// Type and subtype as sent, `None` when Content-Type is missing or
    /// unusable (then the RFC 2045 default applies).
    pub media: Option<(Vec<u8>, Vec<u8>)>,
    /// Content-Type parameters, names and values as sent (values unquoted).
    pub params: Vec<Param>,
    pub transfer_encoding: Option<Vec<u8>>,
    pub id: Option<Vec<u8>>,
    pub description: Option<Vec<u8>>,
    pub md5: Option<Vec<u8>>,
    /// Disposition type and its parameters.
    pub disposition: Option<(Vec<u8>, Vec<Param>)>,
    pub languages: Vec<Vec<u8>>,
    pub location: Option<Vec<u8>>,
}

impl Content {
    /// Reads the MIME fields of the header block `header`. The first
    /// occurrence of each field wins, as in Dovecot and Cyrus.
    pub(crate) fn from_header(header: &[u8]) -> Content {
        let mut content = Content::default();
        let mut seen_type = false;
        let mut seen_disposition = false;
        let mut seen_language = false;
        for field in fields(header) {
            if !field.name.starts_with_ignore_case(b"content-") {
                continue;
            }
            if field.is("content-type") && !seen_type {
                seen_type = true;
                let value = field.unfolded();
                let mut tokens = Tokens::new(&value);
                let media = tokens.media_type();
                if media.is_some() {
                    content.params = tokens.parameters();
                }
                content.media = media;
            } else if field.is("content-transfer-encoding") {
                first(&mut content.transfer_encoding, &field, |value| {
                    Tokens::new(value).token()
                });
            } else if field.is("content-id") {
                first(&mut content.id, &field, |value| Some(value.to_vec()));
            } else if field.is("content-description") {
                first(&mut content.description, &field, |value| {
                    Some(value.to_vec())
                });
            } else if field.is("content-md5") {
                first(&mut content.md5, &field, |value| Some(value.to_vec()));
            } else if field.is("content-location") {
                first(&mut content.location, &field, |value| Some(value.to_vec()));
            } else if field.is("content-disposition") && !seen_disposition {
                seen_disposition = true;
                let value = field.unfolded();
                let mut tokens = Tokens::new(&value);
                content.disposition = tokens.token().map(|kind| (kind, tokens.parameters()));
            } else if field.is("content-language") && !seen_language {
                seen_language = true;
                let value = field.unfolded();
                content.languages = Tokens::new(&value).list();
            }
        }
        content
    }

    /// The value of the Content-Type parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.as_slice())
    }

    /// Whether the declared type is `kind`/`subtype` (`None` matches any
    /// subtype).
    pub(crate) fn is_type(&self, kind: &str, subtype: Option<&str>) -> bool {
        match &self.media {
            Some((declared, declared_sub)) => {
                declared.eq_ignore_ascii_case(kind.as_bytes())
                    && subtype.is_none_or(|sub| declared_sub.eq_ignore_ascii_case(sub.as_bytes()))
            }
            None => false,
        }
    }

    /// Whether the Content-Transfer-Encoding leaves the body as it is
    /// (7bit, 8bit, binary or absent).
    pub(crate) fn is_identity_encoding(&self) -> bool {
        match &self.transfer_encoding {
            None => true,
            Some(encoding) => ["7bit", "8bit", "binary"]
                .iter()
                .any(|name| encoding.eq_ignore_ascii_case(name.as_bytes())),
        }
    }

    /// Whether Content-Disposition says `attachment`.
    pub(crate) fn is_attachment(&self) -> bool {
        self.disposition
            .as_ref()
            .is_some_and(|(kind, _)| kind.eq_ignore_ascii_case(b"attachment"))
    }
}

trait StartsWithIgnoreCase {
    fn starts_with_ignore_case(&self, prefix: &[u8]) -> bool;
}

impl StartsWithIgnoreCase for [u8] {
    fn starts_with_ignore_case(&self, prefix: &[u8]) -> bool {
        self.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    }
}

fn first(slot: &mut Option<Vec<u8>>, field: &Field<'_>, parse: impl Fn(&[u8]) -> Option<Vec<u8>>) {
    if slot.is_none() {
        *slot = parse(&field.unfolded());
    }
}

/// A cursor over a structured MIME value: tokens, quoted strings and
/// comments (RFC 2045 5.1, RFC 822 3.3).
pub(crate) struct Tokens<'a> {
    bytes: &'a [u8],
    position: usize,
}

/// RFC 2045 tspecials, plus whitespace and controls: what ends a token.
fn is_token_byte(byte: u8) -> bool {
    byte > b' ' && byte != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&byte)
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Tokens<'a> {
        Tokens { bytes, position: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    /// Skips whitespace and (nested) comments.
    fn skip_space(&mut self) {
        let mut depth = 0usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'(' => depth += 1,
                b')' if depth > 0 => depth -= 1,
                b'\\' if depth > 0 => self.position += 1,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ if depth > 0 => {}
                _ => return,
            }
            self.position += 1;
        }
    }

    /// Consumes `byte` (after whitespace) if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(byte) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn token(&mut self) -> Option<Vec<u8>> {
        self.skip_space();
        let start = self.position;
        while self.peek().is_some_and(is_token_byte) {
            self.position += 1;
        }
        let token = self.bytes.get(start..self.position)?;
        (!token.is_empty()).then(|| token.to_vec())
    }

    /// A quoted string's content with its backslash escapes removed.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.skip_space();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.position += 1;
        let mut out = Vec::new();
        while let Some(byte) = self.peek() {
            self.position += 1;
            match byte {
                b'"' => return Some(out),
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        out.push(escaped);
                        self.position += 1;
                    }
                }
                _ => out.push(byte),
            }
        }
        // Unterminated: keep what there is.
        Some(out)
    }

    /// `type "/" subtype`.
    fn media_type(&mut self) -> Option<(Vec<u8>, Vec<u8>)> {
        let kind = self.token()?;
        if !self.eat(b'/') {
            return None;
        }
        let subtype = self.token()?;
        Some((kind, subtype))
    }

    /// `*(";" name "=" value)`. Lenient: an unquoted value runs to the next
    /// `;` or whitespace (senders put `/`, `?` and `=` in them), and a broken
    /// parameter is skipped rather than ending the list.
    fn parameters(&mut self) -> Vec<Param> {
        let mut params = Vec::new();
        loop {
            // Find the next ';'.
            self.skip_space();
            match self.peek() {
                None => return params,
                Some(b';') => self.position += 1,
                Some(_) => {
                    self.skip_past(b';');
                    continue;
                }
            }
            let Some(name) = self.token() else {
                continue;
            };
            if !self.eat(b'=') {
                continue;
            }
            self.skip_space();
            let value = if self.peek() == Some(b'"') {
                self.quoted()
            } else {
                self.bare_value()
            };
            if let Some(value) = value {
                params.push((name, value));
            }
        }
    }

    fn bare_value(&mut self) -> Option<Vec<u8>> {
        let start = self.position;
        while self
            .peek()
            .is_some_and(|byte| !matches!(byte, b';' | b' ' | b'\t' | b'\r' | b'\n'))
        {
            self.position += 1;
        }
        self.bytes.get(start..self.position).map(<[u8]>::to_vec)
    }

    fn skip_past(&mut self, stop: u8) {
        while let Some(byte) = self.peek() {
            if byte == stop {
                return;
            }
            self.position += 1;
        }
    }

    /// A comma-separated list of tokens (Content-Language).
    fn list(&mut self) -> Vec<Vec<u8>> {
        let mut items = Vec::new();
        loop {
            if let Some(item) = self.token() {
                items.push(item);
            }
            self.skip_space();
            match self.peek() {
                None => return items,
                Some(b',') => self.position += 1,
                Some(_) => {
                    self.position += 1;
                    self.skip_past(b',');
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_keeps_case_and_raw_parameters() {
        let content = Content::from_header(
            b"Content-Type: TEXT/Plain; CHARSET=\"US-ASCII\" (comment);\r\n name*0*=utf-8''a%20b; x=a/b=c\r\n\r\n",
        );
        assert_eq!(content.media, Some((b"TEXT".to_vec(), b"Plain".to_vec())));
        assert_eq!(
            content.params,
            vec![
                (b"CHARSET".to_vec(), b"US-ASCII".to_vec()),
                (b"name*0*".to_vec(), b"utf-8''a%20b".to_vec()),
                (b"x".to_vec(), b"a/b=c".to_vec()),
            ]
        );
        assert_eq!(content.param("charset"), Some(&b"US-ASCII"[..]));
    }

    #[test]
    fn broken_content_type_means_default() {
        assert_eq!(
            Content::from_header(b"Content-Type: text\r\n\r\n").media,
            None
        );
        assert_eq!(
            Content::from_header(b"Content-Type: ;;\r\n\r\n").media,
            None
        );
    }

    #[test]
    fn disposition_language_and_encoding() {
        let content = Content::from_header(
            b"Content-Disposition: attachment; filename=\"a \\\"b\\\".txt\"\r\nContent-Language: en, fr\r\nContent-Transfer-Encoding: Base64\r\n\r\n",
        );
        assert!(content.is_attachment());
        assert_eq!(
            content.disposition,
            Some((
                b"attachment".to_vec(),
                vec![(b"filename".to_vec(), b"a \"b\".txt".to_vec())]
            ))
        );
        assert_eq!(content.languages, vec![b"en".to_vec(), b"fr".to_vec()]);
        assert_eq!(content.transfer_encoding, Some(b"Base64".to_vec()));
        assert!(!content.is_identity_encoding());
    }
}
