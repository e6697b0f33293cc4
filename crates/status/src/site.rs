//! The site the pages are for: its name and the public URL every absolute
//! link starts with.

use crate::error::{Field, ValidationError};

/// Longest public URL, in bytes.
pub const PUBLIC_URL_BYTES_MAX: usize = 1_000;
/// Longest site name, in bytes.
pub const SITE_NAME_BYTES_MAX: usize = 100;

/// The name shown in titles ("Example Mail") and the public base URL
/// (`[http] public_url`), checked once so that renderers can trust them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    name: String,
    public_url: String,
    /// Whether people can subscribe to notices by email (`[mail_out]` is
    /// configured): the pages then show the form and link to it.
    subscriptions: bool,
}

impl Site {
    /// Checks and keeps the site's name and public URL. The URL must be an
    /// absolute `http` or `https` URL, with a host, without user
    /// information, query or fragment; a path is allowed (the pages then
    /// live under it). A trailing slash is dropped and the scheme is
    /// written in lower case.
    ///
    /// # Errors
    ///
    /// [`ValidationError`] for the name (as a one-line field) or
    /// [`ValidationError::PublicUrl`] saying what is wrong with the URL.
    pub fn new(name: &str, public_url: &str) -> Result<Site, ValidationError> {
        if name.trim().is_empty() {
            return Err(ValidationError::Empty(Field::SiteName));
        }
        if name.len() > SITE_NAME_BYTES_MAX {
            return Err(ValidationError::TooLong {
                field: Field::SiteName,
                bytes: name.len(),
                max: SITE_NAME_BYTES_MAX,
            });
        }
        if let Some(character) = name.chars().find(|c| c.is_control()) {
            return Err(ValidationError::ControlCharacter {
                field: Field::SiteName,
                character,
            });
        }
        if name.trim() != name {
            return Err(ValidationError::SurroundingWhitespace(Field::SiteName));
        }
        Ok(Site {
            name: name.to_owned(),
            public_url: check_public_url(public_url)?,
            subscriptions: false,
        })
    }

    /// The same site, with the subscribe form shown (or not).
    pub fn with_subscriptions(mut self, subscriptions: bool) -> Site {
        self.subscriptions = subscriptions;
        self
    }

    /// Whether the pages offer subscribing by email.
    pub fn subscriptions(&self) -> bool {
        self.subscriptions
    }

    /// The site's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public URL, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// The authority of `tag:` URIs (RFC 4151): the URL's host when it is a
    /// DNS name (or an IPv4 address, which has the same form), else
    /// `postern.invalid`.
    pub(crate) fn tag_authority(&self) -> String {
        let after_scheme = self
            .public_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let authority = after_scheme.split('/').next().unwrap_or("");
        let host = authority.split(':').next().unwrap_or("");
        let is_dns_name = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if is_dns_name {
            host.to_ascii_lowercase()
        } else {
            "postern.invalid".into()
        }
    }
}

fn check_public_url(url: &str) -> Result<String, ValidationError> {
    if url.len() > PUBLIC_URL_BYTES_MAX {
        return Err(ValidationError::PublicUrl("is too long"));
    }
    let (scheme, rest) = url.split_once("://").ok_or(ValidationError::PublicUrl(
        "must start with http:// or https://",
    ))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(ValidationError::PublicUrl(
            "must start with http:// or https://",
        ));
    }
    if rest.chars().any(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(
                c,
                '"' | '\'' | '<' | '>' | '`' | '\\' | '{' | '}' | '|' | '^'
            )
    }) {
        return Err(ValidationError::PublicUrl(
            "contains whitespace, a control character or a character URLs must escape",
        ));
    }
    if rest.contains(['?', '#']) {
        return Err(ValidationError::PublicUrl(
            "must not have a query (?) or a fragment (#)",
        ));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(ValidationError::PublicUrl(
            "must not contain a user name (@)",
        ));
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    if host.is_empty() || host == "[" {
        return Err(ValidationError::PublicUrl("has no host"));
    }
    Ok(format!("{scheme}://{}", rest.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let site = Site::new("Example Mail", "HTTPS://status.example.com/").unwrap();
        assert_eq!(site.public_url(), "https://status.example.com");
        assert_eq!(site.url("/status"), "https://status.example.com/status");
        assert_eq!(site.tag_authority(), "status.example.com");

        let under_path = Site::new("x", "http://Example.com:8080/mail//").unwrap();
        assert_eq!(under_path.public_url(), "http://Example.com:8080/mail");
        assert_eq!(under_path.tag_authority(), "example.com");

        let ipv6 = Site::new("x", "http://[::1]:8080").unwrap();
        assert_eq!(ipv6.tag_authority(), "postern.invalid");

        for bad in [
            "status.example.com",
            "ftp://example.com",
            "javascript://example.com",
            "https://",
            "https:///path",
            "https://:80",
            "https://example.com/?a=1",
            "https://example.com/#top",
            "https://user@example.com",
            "https://example.com/\"onload=\"x",
            "https://exa mple.com",
        ] {
            assert!(
                matches!(Site::new("x", bad), Err(ValidationError::PublicUrl(_))),
                "{bad}"
            );
        }
        assert!(Site::new("x", &format!("https://{}", "a".repeat(1_000))).is_err());
    }

    #[test]
    fn names() {
        assert!(Site::new("", "https://example.com").is_err());
        assert!(Site::new(" x", "https://example.com").is_err());
        assert!(Site::new("a\nb", "https://example.com").is_err());
        assert!(Site::new(&"n".repeat(101), "https://example.com").is_err());
        assert!(Site::new("Grüße Mail", "https://example.com").is_ok());
    }
}
