//! IMAP URLs (RFC 5092) naming one message or part, as the URL parts of
//! `APPEND ... CATENATE` (RFC 4469) send them.
//!
//! Accepted forms (keywords in any case):
//! - `imap://[user[;AUTH=mech]@]host[:port]/mailbox[;UIDVALIDITY=n]/;UID=n[/;SECTION=s][/;PARTIAL=o[.l]]`
//! - `/mailbox[;UIDVALIDITY=n]/;UID=n...` (absolute path on this server)
//! - `mailbox[;UIDVALIDITY=n]/;UID=n...` (relative path; the server's base is its root)
//! - `;UID=n...` (relative to the selected mailbox)
//!
//! Mailbox names and sections are percent-decoded (`%2F`); mailbox names are
//! UTF-8, not modified UTF-7. Who may read what is not decided here: the
//! session checks the server part, the user and the mailbox. URLAUTH
//! (`;EXPIRE=`, `;URLAUTH=`) is not supported and makes the URL invalid.

use crate::types::Section;

/// The server part of an absolute IMAP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlServer {
    /// The user of `user@host` (percent-decoded), without `;AUTH=`.
    pub user: Option<String>,
    /// As sent, without the port.
    pub host: String,
    pub port: Option<u16>,
}

/// One message or part of a message, named by an IMAP URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageUrl {
    /// Present in an absolute URL (`imap://...`).
    pub server: Option<UrlServer>,
    /// `None`: the currently selected mailbox (`;UID=n` alone).
    pub mailbox: Option<String>,
    pub uid_validity: Option<u32>,
    pub uid: u32,
    /// `;SECTION=`, parsed as a FETCH `section-spec`.
    pub section: Option<Section>,
    /// `;PARTIAL=origin[.length]`.
    pub partial: Option<(u32, Option<u32>)>,
}

/// Parses an IMAP URL naming a message or part; `None` if it is not one
/// (or uses a form the server does not support).
pub fn parse_message_url(url: &str) -> Option<MessageUrl> {
    let (server, path) = match strip_ci(url, "imap://") {
        Some(rest) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => (rest.get(..i)?, rest.get(i..)?),
                None => return None,
            };
            (Some(server(authority)?), path)
        }
        None => (None, url),
    };
    let absolute = path.starts_with('/');
    let path = path.strip_prefix('/').unwrap_or(path);
    if server.is_some() && !absolute {
        return None;
    }
    let (encoded_mailbox, mut rest) = match path.find(';') {
        Some(i) => (path.get(..i)?, path.get(i..)?),
        None => return None,
    };
    // A relative path's first segment has no ':' (RFC 3986 4.2): that is a
    // URL of another scheme.
    if !absolute
        && encoded_mailbox
            .split('/')
            .next()
            .is_some_and(|s| s.contains(':'))
    {
        return None;
    }
    let mut uid_validity = None;
    let mailbox = if encoded_mailbox.is_empty() {
        if absolute {
            return None;
        }
        None
    } else {
        let encoded_mailbox = if let Some(m) = encoded_mailbox.strip_suffix('/') {
            m
        } else {
            let after = strip_ci(rest, ";UIDVALIDITY=")?;
            let (n, after) = nz_number(after)?;
            uid_validity = Some(n);
            rest = after.strip_prefix('/')?;
            encoded_mailbox
        };
        let name = percent_decode(encoded_mailbox)?;
        if name.is_empty() {
            return None;
        }
        Some(name)
    };
    let after = strip_ci(rest, ";UID=")?;
    let (uid, mut rest) = nz_number(after)?;
    let mut section = None;
    let mut partial = None;
    if let Some(after) = strip_ci(rest, "/;SECTION=") {
        let end = after.find("/;").unwrap_or(after.len());
        let spec = percent_decode(after.get(..end)?)?;
        if spec.is_empty() {
            return None;
        }
        section = Some(crate::parse::parse_section_spec(spec.as_bytes())?);
        rest = after.get(end..)?;
    }
    if let Some(after) = strip_ci(rest, "/;PARTIAL=") {
        let (origin, after) = number(after)?;
        let (length, after) = match after.strip_prefix('.') {
            Some(after) => {
                let (n, after) = nz_number(after)?;
                (Some(n), after)
            }
            None => (None, after),
        };
        partial = Some((origin, length));
        rest = after;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(MessageUrl {
        server,
        mailbox,
        uid_validity,
        uid,
        section,
        partial,
    })
}

/// `[iuserinfo "@"] host [":" port]`
fn server(authority: &str) -> Option<UrlServer> {
    let (user, host_port) = match authority.rfind('@') {
        Some(i) => {
            let userinfo = authority.get(..i)?;
            let user = match find_ci(userinfo, ";AUTH=") {
                Some(j) => userinfo.get(..j)?,
                None => userinfo,
            };
            let user = if user.is_empty() {
                None
            } else {
                Some(percent_decode(user)?)
            };
            (user, authority.get(i + 1..)?)
        }
        None => (None, authority),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match host_port.rfind(':') {
        Some(i) if !host_port.get(i..)?.contains(']') => {
            let port = host_port.get(i + 1..)?;
            let port = if port.is_empty() {
                None
            } else {
                Some(port.parse::<u16>().ok()?)
            };
            (host_port.get(..i)?, port)
        }
        _ => (host_port, None),
    };
    if host.is_empty() {
        return None;
    }
    Some(UrlServer {
        user,
        host: host.to_string(),
        port,
    })
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    s.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Leading digits as a `number` (u32).
fn number(s: &str) -> Option<(u32, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || n > 10 {
        return None;
    }
    let value = s.get(..n)?.parse::<u32>().ok()?;
    Some((value, s.get(n..)?))
}

fn nz_number(s: &str) -> Option<(u32, &str)> {
    number(s).filter(|(n, _)| *n > 0)
}

/// `%XX` decoded; the result must be UTF-8 without control characters.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    if text.chars().any(char::is_control) {
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SectionText;

    #[test]
    fn forms() {
        let url =
            parse_message_url("/Drafts;UIDVALIDITY=385759045/;UID=20/;section=1.2.HEADER").unwrap();
        assert_eq!(url.server, None);
        assert_eq!(url.mailbox.as_deref(), Some("Drafts"));
        assert_eq!(url.uid_validity, Some(385_759_045));
        assert_eq!(url.uid, 20);
        let section = url.section.unwrap();
        assert_eq!(section.part, vec![1, 2]);
        assert_eq!(section.text, Some(SectionText::Header));

        let url = parse_message_url(";UID=7/;SECTION=TEXT/;PARTIAL=0.1024").unwrap();
        assert_eq!(url.mailbox, None);
        assert_eq!(url.uid, 7);
        assert_eq!(url.partial, Some((0, Some(1024))));

        let url = parse_message_url("a%2Fb%20c/;UID=3").unwrap();
        assert_eq!(url.mailbox.as_deref(), Some("a/b c"));
        assert_eq!(url.uid_validity, None);

        let url = parse_message_url(
            "imap://bob;AUTH=*@mail.example.org:143/INBOX;UIDVALIDITY=1/;UID=2/;SECTION=HEADER.FIELDS%20(SUBJECT%20FROM)",
        )
        .unwrap();
        let server = url.server.unwrap();
        assert_eq!(server.user.as_deref(), Some("bob"));
        assert_eq!(server.host, "mail.example.org");
        assert_eq!(server.port, Some(143));
        assert_eq!(
            url.section.unwrap().text,
            Some(SectionText::HeaderFields(vec![
                "SUBJECT".into(),
                "FROM".into()
            ]))
        );

        let url = parse_message_url("imap://[::1]:1430/INBOX/;UID=1").unwrap();
        assert_eq!(url.server.unwrap().host, "[::1]");
    }

    #[test]
    fn invalid() {
        for url in [
            "",
            "INBOX",
            "/INBOX",
            "/INBOX;UIDVALIDITY=0/;UID=1",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=1;UID=1",
            "/INBOX/;UID=1/;SECTION=",
            "/INBOX/;UID=1/;SECTION=1.FOO",
            "/INBOX/;UID=1/;SECTION=0",
            "/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous",
            "/INBOX/;UID=1/;SECTION=1;URLAUTH=x",
            "/INBOX/;UID=1 extra",
            "/IN%ZZBOX/;UID=1",
            "/IN%0ABOX/;UID=1",
            "imap://host",
            "imap://@/INBOX/;UID=1",
            "imap://host:99999/INBOX/;UID=1",
            "/INBOX/;UID=99999999999",
            "http://host/INBOX/;UID=1",
        ] {
            assert_eq!(parse_message_url(url), None, "{url}");
        }
    }
}
