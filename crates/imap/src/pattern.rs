//! LIST and LSUB mailbox patterns (RFC 9051 6.3.9): `*` matches any run of
//! characters, `%` any run that does not cross the hierarchy separator.
//!
//! A pattern comes from the client, so matching must cost the same whatever
//! it holds. Matching keeps one row of a dynamic programme over (pattern
//! position, name position): `O(pattern · name)` time, `O(name)` memory, no
//! recursion and no backtracking, so thousands of wildcards neither exhaust the
//! stack nor take exponential time. Runs of wildcards are collapsed first
//! (`**%*` is `*`, `%%` is `%`), which makes such patterns short anyway.
//! No I/O here.

use store::SEPARATOR;

/// Longest pattern, and longest reference, a LIST or LSUB accepts, in
/// characters. A mailbox name is at most 1000 bytes, so every pattern that
/// could match a name character for character fits; anything longer can only
/// be wildcards, and it multiplies the matching work.
pub const PATTERN_CHARS_MAX: usize = 1024;

/// Most patterns one LIST accepts (LIST-EXTENDED allows a list of them). Each
/// is matched against every mailbox name.
pub const PATTERNS_MAX: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`
    Any,
    /// `%`
    AnyButSeparator,
    Char(char),
}

/// A compiled pattern (reference already joined on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
    /// The same tokens with a leading `INBOX` in any case written `INBOX`, when
    /// the pattern starts that way: INBOX is case-insensitive in patterns too.
    inbox: Option<Vec<Token>>,
    /// The pattern ends in `%`: levels of hierarchy that match are listed
    /// even when they are not mailboxes themselves (RFC 9051 6.3.9).
    lists_levels: bool,
}

impl Pattern {
    pub fn new(text: &str) -> Pattern {
        let mut tokens: Vec<Token> = Vec::with_capacity(text.len());
        for c in text.chars() {
            let token = match c {
                '*' => Token::Any,
                '%' => Token::AnyButSeparator,
                other => Token::Char(other),
            };
            // Collapse runs of wildcards: any run holding a `*` is one `*`,
            // a run of `%` is one `%`.
            match (tokens.last_mut(), token) {
                (Some(last @ Token::AnyButSeparator), Token::Any) => *last = Token::Any,
                (Some(Token::Any), Token::Any | Token::AnyButSeparator)
                | (Some(Token::AnyButSeparator), Token::AnyButSeparator) => {}
                _ => tokens.push(token),
            }
        }
        let inbox = tokens.get(..5).and_then(|head| {
            let is_inbox = head
                .iter()
                .zip("INBOX".chars())
                .all(|(t, c)| matches!(t, Token::Char(x) if x.eq_ignore_ascii_case(&c)));
            is_inbox.then(|| {
                let mut canonical: Vec<Token> = "INBOX".chars().map(Token::Char).collect();
                canonical.extend_from_slice(&tokens[5..]);
                canonical
            })
        });
        Pattern {
            tokens,
            inbox,
            lists_levels: text.ends_with('%'),
        }
    }

    /// Does `name` (canonical: INBOX is spelt `INBOX`) match?
    pub fn matches(&self, name: &str) -> bool {
        let chars: Vec<char> = name.chars().collect();
        if matches_tokens(&self.tokens, &chars) {
            return true;
        }
        let inbox_like = name == "INBOX" || name.starts_with("INBOX/");
        inbox_like
            && self
                .inbox
                .as_ref()
                .is_some_and(|tokens| matches_tokens(tokens, &chars))
    }

    /// Does the pattern end in `%`, so that matching levels of hierarchy that
    /// are not mailboxes are listed too?
    pub fn lists_levels(&self) -> bool {
        self.lists_levels
    }
}

/// `row[j]` says whether the tokens seen so far match `name[..j]`; each token
/// turns the row into the next one in place.
fn matches_tokens(tokens: &[Token], name: &[char]) -> bool {
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    for token in tokens {
        match *token {
            Token::Any => {
                // Matches name[..j] if the tokens before matched any prefix of it.
                let mut seen = false;
                for cell in row.iter_mut() {
                    seen |= *cell;
                    *cell = seen;
                }
            }
            Token::AnyButSeparator => {
                // As `*`, but the run it covers may not hold a separator.
                for j in 1..row.len() {
                    if !row[j] && row[j - 1] && name[j - 1] != SEPARATOR {
                        row[j] = true;
                    }
                }
            }
            Token::Char(c) => {
                // Backwards, so row[j - 1] is still the previous row's value.
                for j in (1..row.len()).rev() {
                    row[j] = row[j - 1] && name[j - 1] == c;
                }
                row[0] = false;
            }
        }
        if !row.contains(&true) {
            return false;
        }
    }
    row[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Matches `pattern` against `name` and compares with `expect`, and with a
    /// plain recursive matcher (small inputs only) as a second opinion.
    fn check(pattern: &str, name: &str, expect: bool) {
        assert_eq!(
            Pattern::new(pattern).matches(name),
            expect,
            "{pattern:?} vs {name:?}"
        );
        if pattern.len() <= 12 && name.len() <= 12 {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            let inbox = name == "INBOX" || name.starts_with("INBOX/");
            let canonical: Vec<char> = match pattern.get(..5) {
                Some(head) if inbox && head.eq_ignore_ascii_case("INBOX") => {
                    format!("INBOX{}", &pattern[5..]).chars().collect()
                }
                _ => p.clone(),
            };
            let reference = recursive(&p, &n) || recursive(&canonical, &n);
            assert_eq!(reference, expect, "reference: {pattern:?} vs {name:?}");
        }
    }

    /// The obvious definition, exponential in the worst case: tests only.
    fn recursive(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => (0..=name.len()).any(|i| recursive(rest, &name[i..])),
            Some(('%', rest)) => (0..=name.len())
                .take_while(|&i| i == 0 || name[i - 1] != SEPARATOR)
                .any(|i| recursive(rest, &name[i..])),
            Some((c, rest)) => name
                .split_first()
                .is_some_and(|(n, tail)| n == c && recursive(rest, tail)),
        }
    }

    #[test]
    fn percent_stops_at_the_separator() {
        check("%", "Sent", true);
        check("%", "a/b", false);
        check("a/%", "a/b", true);
        check("a/%", "a/b/c", false);
        check("%/%", "a/b", true);
        check("%/c", "a/b/c", false);
        check("*", "a/b/c", true);
        check("a*", "a/b", true);
        check("b*", "a/b", false);
        check("*b", "a/b", true);
        check("a%c", "abbc", true);
        check("a%c", "ab/c", false);
        check("", "", true);
        check("", "a", false);
        check("a", "", false);
        check("%", "", true);
    }

    #[test]
    fn wildcard_runs_collapse() {
        check("%*", "a/b", true);
        check("*%", "a/b", true);
        check("%%", "a/b", false);
        check("%%%/%", "a/b", true);
        assert_eq!(Pattern::new("**%*x").tokens.len(), 2);
        assert_eq!(Pattern::new("%%%").tokens, vec![Token::AnyButSeparator]);
    }

    #[test]
    fn inbox_is_case_insensitive() {
        check("inbox", "INBOX", true);
        check("Inbox/%", "INBOX/Sub", true);
        check("inbo%", "INBOX", false);
        // Only INBOX itself is case-insensitive, not names that start alike.
        check("INBOX*", "inboxes", false);
        check("inbox*", "inboxes", true);
        check("inbox", "Inbox", false);
        check("INBOX", "INBOX", true);
    }

    #[test]
    fn non_ascii_names() {
        check("Entw%", "Entwürfe", true);
        check("*ü*", "Entwürfe", true);
        check("Entw?rfe", "Entwürfe", false);
    }

    #[test]
    fn trailing_percent_lists_levels() {
        assert!(Pattern::new("a/%").lists_levels());
        assert!(!Pattern::new("a/*").lists_levels());
        assert!(!Pattern::new("%/a").lists_levels());
    }

    /// REVIEW A1: one recursion level per pattern character (stack overflow and
    /// a process abort with ~50k stars) and every split tried at each wildcard
    /// (about 10^12 steps for 200 stars against `Archive`).
    #[test]
    fn hostile_patterns_finish_at_once() {
        let started = Instant::now();
        let stars = "*".repeat(60_000);
        check(&stars, "Archive", true);
        let mixed: String = "*%".repeat(3_000) + "x";
        check(&mixed, "Archive", false);
        check(&(mixed.clone() + "*"), "Archive/x/y", true);
        let name = "a".repeat(1000);
        let alternating: String = "*a".repeat(PATTERN_CHARS_MAX / 2) + "b";
        check(&alternating, &name, false);
        let percents: String = "%a".repeat(PATTERN_CHARS_MAX / 2);
        check(&percents, &name, true);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}
