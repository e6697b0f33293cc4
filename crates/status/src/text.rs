//! From what an author types to HTML that is safe to put in a page or in an
//! Atom `<content type="html">`.
//!
//! Authors write plain text: paragraphs separated by blank lines, lines
//! that break where they pressed enter, and URLs. Nothing they write is
//! markup: every character goes through [`escape`], the one escaping
//! function of the crate, and the only tags in the output are the ones made
//! here (`<p>`, `<br>`, `<a>`). A link is made only for `http://`,
//! `https://` and `mailto:` URLs, so `javascript:` or `data:` stay text, and
//! its `href` is escaped like any other value.

use std::fmt;

/// Appends `value` to `out`, escaped for HTML and XML text and attribute
/// values (quoted with `"` or `'`). Characters that may not appear in XML or
/// that HTML treats as errors (control characters other than tab and
/// newline, U+FFFE, U+FFFF) become U+FFFD, so the output is always
/// well-formed whatever went in.
pub fn push_escaped(out: &mut String, value: &str) {
    // Writing to a String cannot fail.
    let _ = write_escaped(out, value);
}

/// `value` escaped, as a new string ([`push_escaped`]).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + value.len() / 8);
    push_escaped(&mut out, value);
    out
}

/// A string that displays escaped ([`push_escaped`]), for `write!` and
/// `format!`: `write!(out, "<h2>{}</h2>", Escaped(title))`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0)
    }
}

/// The escaping itself, the one place it is done: runs of plain characters
/// are written as they are, each special one as its replacement.
fn write_escaped<W: fmt::Write + ?Sized>(out: &mut W, value: &str) -> fmt::Result {
    let mut plain_from = 0;
    for (index, c) in value.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            '\t' | '\n' => continue,
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => "\u{fffd}",
            _ => continue,
        };
        out.write_str(&value[plain_from..index])?;
        out.write_str(replacement)?;
        plain_from = index + c.len_utf8();
    }
    out.write_str(&value[plain_from..])
}

/// Renders a post's plain text as HTML: paragraphs (`<p>`) where blank
/// lines separate them, `<br>` for the other line breaks, links for
/// `http://`, `https://` and `mailto:` URLs (with `rel="nofollow
/// noopener"`), and everything else escaped. Line ends may be LF, CRLF or
/// CR. Empty text gives an empty string. Runs in time linear in the text.
pub fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 16);
    let unified;
    let text = if text.contains('\r') {
        unified = text.replace("\r\n", "\n").replace('\r', "\n");
        unified.as_str()
    } else {
        text
    };
    let mut in_paragraph = false;
    for line in text.split('\n') {
        let line = line.trim_end();
        if line.is_empty() {
            if in_paragraph {
                out.push_str("</p>\n");
                in_paragraph = false;
            }
            continue;
        }
        if in_paragraph {
            out.push_str("<br>\n");
        } else {
            out.push_str("<p>");
            in_paragraph = true;
        }
        push_linked(&mut out, line);
    }
    if in_paragraph {
        out.push_str("</p>\n");
    }
    out
}

/// Appends one line, escaped, with its URLs as links.
fn push_linked(out: &mut String, line: &str) {
    let mut rest = line;
    while let Some((start, end)) = find_link(rest) {
        push_escaped(out, &rest[..start]);
        let url = &rest[start..end];
        out.push_str("<a href=\"");
        push_escaped(out, url);
        out.push_str("\" rel=\"nofollow noopener\">");
        push_escaped(out, url);
        out.push_str("</a>");
        rest = &rest[end..];
    }
    push_escaped(out, rest);
}

/// The schemes that become links, lower case; matched without regard to case.
const SCHEMES: [&str; 3] = ["https://", "http://", "mailto:"];

/// Longest URL made into a link, in bytes. A longer one stays text; the
/// bound also keeps the search linear, since a candidate URL is never read
/// further than this.
pub const URL_BYTES_MAX: usize = 2_048;

/// The byte range of the first linkable URL in `line`, if any.
fn find_link(line: &str) -> Option<(usize, usize)> {
    let mut previous: Option<char> = None;
    for (start, c) in line.char_indices() {
        let candidate = matches!(c, 'h' | 'H' | 'm' | 'M') && starts_a_word(previous);
        previous = Some(c);
        if !candidate {
            continue;
        }
        let rest = &line[start..];
        let Some(scheme) = SCHEMES
            .iter()
            .find(|scheme| starts_with_ignore_case(rest, scheme))
        else {
            continue;
        };
        let Some(raw_end) = raw_url_end(rest) else {
            continue;
        };
        // Trimming takes off punctuation only, never a letter, a digit or
        // the '@', so whether a URL is linkable does not depend on it.
        if is_linkable(&rest[..raw_end], scheme) {
            return Some((start, start + trimmed_length(&rest[..raw_end])));
        }
    }
    None
}

/// A URL starts a word: at the start of the line or after a character that
/// cannot be part of a longer scheme or URL ("xhttp://", "a.http://",
/// "javascript:http://" are not links).
fn starts_a_word(previous: Option<char>) -> bool {
    match previous {
        None => true,
        Some(c) => {
            !c.is_alphanumeric()
                && !matches!(c, ':' | '/' | '.' | '-' | '+' | '@' | '_' | '&' | '=' | '%')
        }
    }
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Where the URL at the start of `text` ends: at whitespace, a control
/// character or a character URLs do not contain unescaped. `None` when it
/// would be longer than [`URL_BYTES_MAX`].
fn raw_url_end(text: &str) -> Option<usize> {
    for (index, c) in text.char_indices() {
        if index > URL_BYTES_MAX {
            return None;
        }
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '<' | '>' | '"' | '`' | '{' | '}' | '|' | '\\' | '^')
        {
            return Some(index);
        }
    }
    (text.len() <= URL_BYTES_MAX).then_some(text.len())
}

/// The length of `url` without trailing punctuation that belongs to the
/// sentence ("see https://x.org.") and without closing brackets that do not
/// close one opened in the URL ("(https://x.org/a_(b))" keeps one).
fn trimmed_length(url: &str) -> usize {
    let count = |c: char| url.chars().filter(|&other| other == c).count();
    let (opened_parentheses, mut closed_parentheses) = (count('('), count(')'));
    let (opened_brackets, mut closed_brackets) = (count('['), count(']'));
    let mut end = url.len();
    while let Some(last) = url[..end].chars().next_back() {
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '\'' | '*' => true,
            ')' if closed_parentheses > opened_parentheses => {
                closed_parentheses -= 1;
                true
            }
            ']' if closed_brackets > opened_brackets => {
                closed_brackets -= 1;
                true
            }
            _ => false,
        };
        if !strip {
            break;
        }
        end -= last.len_utf8();
    }
    end
}

/// Whether a URL is worth a link: `http(s)://` with a host that has a
/// letter or digit, `mailto:` with an address that has an `@` between two
/// non-empty parts.
fn is_linkable(url: &str, scheme: &str) -> bool {
    let rest = url.get(scheme.len()..).unwrap_or("");
    if *scheme == *"mailto:" {
        let address = rest.split('?').next().unwrap_or("");
        return match address.split_once('@') {
            Some((local, domain)) => !local.is_empty() && domain.chars().any(char::is_alphanumeric),
            None => false,
        };
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    host.chars().any(char::is_alphanumeric)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(text_to_html(input), expected, "input: {input:?}");
    }

    fn link(url: &str) -> String {
        let url = escape(url);
        format!(r#"<a href="{url}" rel="nofollow noopener">{url}</a>"#)
    }

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(format!("<{}>", Escaped("a<b")), "<a&lt;b>");
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(escape("tab\tnew\nline"), "tab\tnew\nline");
        assert_eq!(
            escape("nul\0esc\u{1b}del\u{7f}c1\u{85}\u{ffff}"),
            "nul\u{fffd}esc\u{fffd}del\u{fffd}c1\u{fffd}\u{fffd}"
        );
        assert_eq!(escape("Grüße 😀 שלום"), "Grüße 😀 שלום");
    }

    #[test]
    fn paragraphs_and_line_breaks() {
        check("", "");
        check("\n \n\t\n", "");
        check("one", "<p>one</p>\n");
        check("one\ntwo", "<p>one<br>\ntwo</p>\n");
        check("one\n\ntwo", "<p>one</p>\n<p>two</p>\n");
        check("\n\none  \n   \n\n\ntwo\n\n", "<p>one</p>\n<p>two</p>\n");
        check(
            "crlf\r\nline\r\n\r\npara\rcr",
            "<p>crlf<br>\nline</p>\n<p>para<br>\ncr</p>\n",
        );
    }

    #[test]
    fn the_issue_example() {
        check(
            "Incoming mail is arriving much faster than usual and delivery is delayed: it takes about\n\
             15 minutes from receipt to the mailbox.",
            "<p>Incoming mail is arriving much faster than usual and delivery is delayed: it takes about<br>\n\
             15 minutes from receipt to the mailbox.</p>\n",
        );
    }

    #[test]
    fn links() {
        check(
            "See https://example.com/status.",
            &format!("<p>See {}.</p>\n", link("https://example.com/status")),
        );
        check(
            "(see http://example.com/a?b=1&c=2#d)",
            &format!("<p>(see {})</p>\n", link("http://example.com/a?b=1&c=2#d")),
        );
        check(
            "https://en.wikipedia.org/wiki/Mail_(disambiguation), then",
            &format!(
                "<p>{}, then</p>\n",
                link("https://en.wikipedia.org/wiki/Mail_(disambiguation)")
            ),
        );
        check(
            "<https://example.com>",
            &format!("<p>&lt;{}&gt;</p>\n", link("https://example.com")),
        );
        check(
            "Write to mailto:help@example.com?subject=Outage!",
            &format!(
                "<p>Write to {}!</p>\n",
                link("mailto:help@example.com?subject=Outage")
            ),
        );
        check(
            "HTTPS://EXAMPLE.COM and https://例え.jp/パス",
            &format!(
                "<p>{} and {}</p>\n",
                link("HTTPS://EXAMPLE.COM"),
                link("https://例え.jp/パス")
            ),
        );
        check(
            "'https://a.example' \"https://b.example\"",
            &format!(
                "<p>&#39;{}&#39; &quot;{}&quot;</p>\n",
                link("https://a.example"),
                link("https://b.example")
            ),
        );
    }

    #[test]
    fn things_that_are_not_links() {
        check("http:// alone", "<p>http:// alone</p>\n");
        check("https://... nothing", "<p>https://... nothing</p>\n");
        check("mailto:nobody", "<p>mailto:nobody</p>\n");
        check("mailto:@example.com", "<p>mailto:@example.com</p>\n");
        check("xhttp://example.com", "<p>xhttp://example.com</p>\n");
        check(
            "ftp://example.com www.example.com",
            "<p>ftp://example.com www.example.com</p>\n",
        );
    }

    #[test]
    fn hostile_input_stays_text() {
        check(
            "<script>alert(1)</script>",
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n",
        );
        check(
            r#""><img src=x onerror=alert(1)>"#,
            "<p>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</p>\n",
        );
        for script in [
            "javascript:alert(1)",
            "JaVaScRiPt:alert(document.cookie)",
            "java\tscript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "vbscript:msgbox(1)",
        ] {
            let html = text_to_html(script);
            assert!(!html.contains("<a"), "{script:?} became a link: {html}");
            assert!(!html.contains("<script"), "{html}");
        }
        // A URL cannot break out of its attribute: it ends at the quote.
        check(
            r#"https://example.com/"onmouseover="alert(1)"#,
            &format!(
                "<p>{}&quot;onmouseover=&quot;alert(1)</p>\n",
                link("https://example.com/")
            ),
        );
        // javascript: hiding an http URL links only the http URL, if at all.
        let html = text_to_html("javascript:http://example.com");
        assert!(!html.contains("href=\"javascript"), "{html}");
        // An entity written by the author is shown as written.
        check("&lt;b&gt;", "<p>&amp;lt;b&amp;gt;</p>\n");
    }

    #[test]
    fn long_lines_and_many_urls() {
        let long = "a".repeat(200_000);
        assert_eq!(text_to_html(&long), format!("<p>{long}</p>\n"));
        let urls = "https://example.com/x ".repeat(2_000);
        let html = text_to_html(&urls);
        assert_eq!(html.matches("<a href=").count(), 2_000);
        let schemes = "http:".repeat(50_000);
        assert_eq!(text_to_html(&schemes), format!("<p>{schemes}</p>\n"));
        // Candidates that are not links, each reaching to the end of the
        // line: the bound on URL length keeps this linear.
        let candidates = "(mailto:".repeat(20_000);
        assert!(!text_to_html(&candidates).contains("<a"));
        let unlinkable = format!("(http:///{}", ")".repeat(100_000));
        assert!(!text_to_html(&unlinkable).contains("<a"));
        let too_long = format!("https://example.com/{}", "x".repeat(URL_BYTES_MAX));
        assert!(!text_to_html(&too_long).contains("<a"));
        let longest = format!("https://example.com/{}", "x".repeat(URL_BYTES_MAX - 20));
        assert!(text_to_html(&longest).contains("<a"));
    }

    /// The tags `text_to_html` may write; everything else must be text.
    fn check_safe(input: &str, html: &str) {
        let mut text = String::new();
        let mut rest = html;
        while let Some(index) = rest.find(['<', '>', '"', '\'', '&']) {
            text.push_str(&rest[..index]);
            rest = &rest[index..];
            if let Some(entity) = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"]
                .into_iter()
                .find(|entity| rest.starts_with(entity))
            {
                text.push_str(entity);
                rest = &rest[entity.len()..];
                continue;
            }
            if let Some(tag) = ["<p>", "</p>", "<br>", "</a>"]
                .into_iter()
                .find(|tag| rest.starts_with(tag))
            {
                rest = &rest[tag.len()..];
                continue;
            }
            let Some(after) = rest.strip_prefix("<a href=\"") else {
                panic!("unexpected markup at {rest:?} for input {input:?}");
            };
            let end = after.find('"').expect("closed href");
            let href = &after[..end];
            assert!(!href.contains(['<', '>']), "{href:?} for input {input:?}");
            let lower = href.to_lowercase();
            assert!(
                SCHEMES.iter().any(|scheme| lower.starts_with(scheme)),
                "{href:?} for input {input:?}"
            );
            rest = after[end..]
                .strip_prefix("\" rel=\"nofollow noopener\">")
                .expect("rel attribute");
        }
        text.push_str(rest);
        // What remains, decoded, is the input less its whitespace: nothing
        // was lost or added.
        let decoded = text
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&");
        let strip = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| {
                    if c.is_control() || c == '\u{ffff}' {
                        '\u{fffd}'
                    } else {
                        c
                    }
                })
                .collect()
        };
        assert_eq!(strip(&decoded), strip(input), "html: {html:?}");
    }

    #[test]
    fn random_input_never_escapes_its_text() {
        const FRAGMENTS: [&str; 32] = [
            "<",
            ">",
            "&",
            "\"",
            "'",
            "<script>",
            "</p>",
            "&amp;",
            "&#",
            "http://",
            "https://",
            "HTTP://",
            "mailto:",
            "javascript:",
            "data:",
            "@",
            "(",
            ")",
            "[",
            "]",
            ".",
            ",",
            ":",
            "/",
            " ",
            "\n",
            "\n\n",
            "\r",
            "\t",
            "a",
            "é😀",
            "\u{0}",
        ];
        // xorshift64*: a fixed seed keeps failures reproducible.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        for _ in 0..5_000 {
            let length = next() % 40;
            let input: String = (0..length)
                .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
                .collect();
            check_safe(&input, &text_to_html(&input));
        }
    }
}
