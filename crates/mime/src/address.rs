//! RFC 5322 address lists split into the raw pieces ENVELOPE carries.
//!
//! Written by hand because ENVELOPE wants the display name raw (encoded
//! words left for the client to decode), the source route, local part and
//! domain separately, and group boundaries as markers. mail-parser's address
//! parser decodes names and joins the pieces. The parser is lenient and
//! linear: one tokenizing pass, one parsing pass, never an error.

/// One element of an address list as ENVELOPE lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    Mailbox {
        /// Display name (phrase) raw, quotes removed; or a trailing comment
        /// in the old `user@host (Name)` style.
        name: Option<Vec<u8>>,
        /// Obsolete source route `@a,@b`.
        route: Option<Vec<u8>>,
        /// Local part, quotes removed.
        local: Vec<u8>,
        /// Domain; empty when the address has none (NIL would read as a
        /// group marker).
        domain: Vec<u8>,
    },
    GroupStart(Vec<u8>),
    GroupEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Word(Vec<u8>),
    Comment(Vec<u8>),
    Special(u8),
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// Whitespace or a comment came before it; phrases keep one space there.
    space_before: bool,
}

fn tokenize(value: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut position = 0;
    let mut space_before = false;
    while let Some(&byte) = value.get(position) {
        match byte {
            b' ' | b'\t' | b'\r' | b'\n' => {
                space_before = true;
                position += 1;
                continue;
            }
            b'"' => {
                let (content, next) = delimited(value, position + 1, b'"');
                tokens.push(Token {
                    kind: Kind::Word(content),
                    space_before,
                });
                position = next;
            }
            b'(' => {
                let (content, next) = comment(value, position);
                tokens.push(Token {
                    kind: Kind::Comment(content),
                    space_before,
                });
                position = next;
                space_before = true;
                continue;
            }
            b'[' => {
                // Domain literal, kept with its brackets.
                let (content, next) = delimited(value, position + 1, b']');
                let mut literal = Vec::with_capacity(content.len() + 2);
                literal.push(b'[');
                literal.extend_from_slice(&content);
                literal.push(b']');
                tokens.push(Token {
                    kind: Kind::Word(literal),
                    space_before,
                });
                position = next;
            }
            b'<' | b'>' | b'@' | b',' | b';' | b':' | b'.' | b')' | b']' | b'\\' => {
                tokens.push(Token {
                    kind: Kind::Special(byte),
                    space_before,
                });
                position += 1;
            }
            _ => {
                let start = position;
                while value
                    .get(position)
                    .is_some_and(|&byte| !b" \t\r\n\"()[]<>@,;:.\\".contains(&byte))
                {
                    position += 1;
                }
                tokens.push(Token {
                    kind: Kind::Word(value.get(start..position).unwrap_or_default().to_vec()),
                    space_before,
                });
            }
        }
        space_before = false;
    }
    tokens
}

/// Content up to the unescaped `close` byte, backslash escapes removed;
/// returns it and the position after `close` (or the end).
fn delimited(value: &[u8], mut position: usize, close: u8) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    while let Some(&byte) = value.get(position) {
        position += 1;
        if byte == close {
            break;
        }
        if byte == b'\\' {
            if let Some(&escaped) = value.get(position) {
                out.push(escaped);
                position += 1;
            }
            continue;
        }
        out.push(byte);
    }
    (out, position)
}

/// A (nested) comment starting at `position` (the open parenthesis).
fn comment(value: &[u8], mut position: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 0usize;
    while let Some(&byte) = value.get(position) {
        position += 1;
        match byte {
            b'(' => {
                if depth > 0 {
                    out.push(byte);
                }
                depth += 1;
            }
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
                out.push(byte);
            }
            b'\\' => {
                if let Some(&escaped) = value.get(position) {
                    out.push(escaped);
                    position += 1;
                }
            }
            _ => out.push(byte),
        }
    }
    (out, position)
}

/// A phrase from its tokens: words joined with one space where the source
/// had whitespace, comments left out. `None` when empty.
fn phrase(tokens: &[Token]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for token in tokens {
        let text: &[u8] = match &token.kind {
            Kind::Word(word) => word,
            Kind::Special(byte) => std::slice::from_ref(byte),
            Kind::Comment(_) => continue,
        };
        if token.space_before && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
    }
    (!out.is_empty()).then_some(out)
}

/// Concatenation of non-comment tokens without spaces (local part, domain).
fn joined(tokens: &[Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for token in tokens {
        match &token.kind {
            Kind::Word(word) => out.extend_from_slice(word),
            Kind::Special(byte) => out.push(*byte),
            Kind::Comment(_) => {}
        }
    }
    out
}

fn is_special(token: &Token, byte: u8) -> bool {
    token.kind == Kind::Special(byte)
}

/// `local@domain` from tokens; the domain follows the last `@`.
fn addr_spec(tokens: &[Token]) -> (Vec<u8>, Vec<u8>) {
    match tokens.iter().rposition(|token| is_special(token, b'@')) {
        Some(at) => (
            joined(tokens.get(..at).unwrap_or_default()),
            joined(tokens.get(at + 1..).unwrap_or_default()),
        ),
        None => (joined(tokens), Vec::new()),
    }
}

/// Parses an unfolded address-list value.
pub(crate) fn parse(value: &[u8]) -> Vec<Address> {
    let tokens = tokenize(value);
    let mut out = Vec::new();
    let mut in_group = false;
    let mut position = 0;
    loop {
        let rest = tokens.get(position..).unwrap_or_default();
        let stop = rest
            .iter()
            .position(|token| {
                matches!(token.kind, Kind::Special(b'<' | b',' | b';'))
                    || (!in_group && is_special(token, b':'))
            })
            .unwrap_or(rest.len());
        let before = rest.get(..stop).unwrap_or_default();
        let stop_token = rest.get(stop);
        position += stop + 1;
        match stop_token.map(|token| &token.kind) {
            Some(Kind::Special(b':')) => {
                out.push(Address::GroupStart(phrase(before).unwrap_or_default()));
                in_group = true;
                continue;
            }
            Some(Kind::Special(b'<')) => {
                let inner_rest = tokens.get(position..).unwrap_or_default();
                let close = inner_rest
                    .iter()
                    .position(|token| is_special(token, b'>'))
                    .unwrap_or(inner_rest.len());
                let inner = inner_rest.get(..close).unwrap_or_default();
                out.push(route_addr(phrase(before), inner));
                position += close + 1;
                // Skip anything between '>' and the next separator.
                let after = tokens.get(position..).unwrap_or_default();
                let next = after
                    .iter()
                    .position(|token| matches!(token.kind, Kind::Special(b',' | b';')))
                    .unwrap_or(after.len());
                position += next;
                continue;
            }
            _ => {}
        }
        // ',' or ';' or the end: `before` is a bare addr-spec, if anything.
        if before
            .iter()
            .any(|token| !matches!(token.kind, Kind::Comment(_)))
        {
            let (local, domain) = addr_spec(before);
            let name = before.iter().rev().find_map(|token| match &token.kind {
                Kind::Comment(text) if !text.is_empty() => Some(text.clone()),
                _ => None,
            });
            out.push(Address::Mailbox {
                name,
                route: None,
                local,
                domain,
            });
        }
        match stop_token.map(|token| &token.kind) {
            Some(Kind::Special(b';')) if in_group => {
                out.push(Address::GroupEnd);
                in_group = false;
            }
            None => {
                if in_group {
                    out.push(Address::GroupEnd);
                }
                return out;
            }
            _ => {}
        }
    }
}

/// The inside of `<...>`: optional source route `@a,@b:` then addr-spec.
fn route_addr(name: Option<Vec<u8>>, inner: &[Token]) -> Address {
    let colon = inner.iter().position(|token| is_special(token, b':'));
    let (route, spec) = match colon {
        Some(colon) if inner.first().is_some_and(|token| is_special(token, b'@')) => (
            Some(joined(inner.get(..colon).unwrap_or_default())),
            inner.get(colon + 1..).unwrap_or_default(),
        ),
        _ => (None, inner),
    };
    let (local, domain) = addr_spec(spec);
    Address::Mailbox {
        name,
        route,
        local,
        domain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: Option<&str>, local: &str, domain: &str) -> Address {
        Address::Mailbox {
            name: name.map(|name| name.as_bytes().to_vec()),
            route: None,
            local: local.as_bytes().to_vec(),
            domain: domain.as_bytes().to_vec(),
        }
    }

    #[test]
    fn name_addr_and_addr_spec() {
        assert_eq!(
            parse(b"\"Doe, John\" <john@x.org>, jane@y.org (Jane Q. Roe), John Q. Public <jqp@z>"),
            vec![
                mailbox(Some("Doe, John"), "john", "x.org"),
                mailbox(Some("Jane Q. Roe"), "jane", "y.org"),
                mailbox(Some("John Q. Public"), "jqp", "z"),
            ]
        );
    }

    #[test]
    fn encoded_words_stay_raw() {
        assert_eq!(
            parse(b"=?UTF-8?Q?J=C3=B6rg?= <j@x>"),
            vec![mailbox(Some("=?UTF-8?Q?J=C3=B6rg?="), "j", "x")]
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            parse(b"undisclosed-recipients:;"),
            vec![
                Address::GroupStart(b"undisclosed-recipients".to_vec()),
                Address::GroupEnd
            ]
        );
        assert_eq!(
            parse(b"A Group: a@b, <c@d>; e@f"),
            vec![
                Address::GroupStart(b"A Group".to_vec()),
                mailbox(None, "a", "b"),
                mailbox(None, "c", "d"),
                Address::GroupEnd,
                mailbox(None, "e", "f"),
            ]
        );
        // Unterminated group is closed.
        assert_eq!(
            parse(b"g: a@b"),
            vec![
                Address::GroupStart(b"g".to_vec()),
                mailbox(None, "a", "b"),
                Address::GroupEnd
            ]
        );
    }

    #[test]
    fn route_and_missing_domain() {
        assert_eq!(
            parse(b"<@a.com,@b.com:user@c.com>"),
            vec![Address::Mailbox {
                name: None,
                route: Some(b"@a.com,@b.com".to_vec()),
                local: b"user".to_vec(),
                domain: b"c.com".to_vec(),
            }]
        );
        assert_eq!(parse(b"postmaster"), vec![mailbox(None, "postmaster", "")]);
        assert_eq!(parse(b""), vec![]);
        assert_eq!(parse(b" , ,"), vec![]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for input in [
            &b"<<<>>>"[..],
            b"\"unterminated",
            b"(((",
            b"a@",
            b"@",
            b":;:;",
            b"\\",
        ] {
            let _ = parse(input);
        }
    }
}
