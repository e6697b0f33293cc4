//! The content score: contributions from configured rules and from the
//! other checks, the INBOX / Junk / reject decision, and the
//! `X-Postern-Spam` header value that explains it.
//!
//! A score is a sum of named contributions. The intake adds its own (run
//! membership, SPF/DKIM/DMARC results, a blocked fingerprint nearby) to
//! those of the operator's rules ([`apply_rules`]), and [`verdict`] compares
//! the sum with the thresholds. Every contribution is named in the header
//! ([`header_value`]), so a user or postmaster who wonders why a message
//! went to Junk can read it off the message.
//!
//! Rules are case-insensitive substring matches in one header's unfolded
//! value or in the body text. Only the first [`BODY_TEXT_BYTES_MAX`] bytes
//! of body text are searched, so a rule costs at most that per message.

use std::fmt::Write as _;

/// Bytes of body text rules search.
pub const BODY_TEXT_BYTES_MAX: usize = 256 * 1024;

/// Longest rule name written into the header; longer ones are cut.
pub const NAME_CHARS_MAX: usize = 64;

/// One configured rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Names the rule in the header; see [`header_value`] for the characters kept.
    pub name: String,
    /// `Some("Subject")`: match in that header field's unfolded value (any
    /// field of that name, name compared case-insensitively). `None`: match
    /// in the body text.
    pub header: Option<String>,
    /// Case-insensitive substring. Empty matches whenever the header is
    /// present (or always, for the body): a "has this header" rule.
    pub contains: String,
    /// Added to the score when the rule matches, once per message.
    pub score: f64,
}

/// One named part of a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub name: String,
    pub score: f64,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Inbox,
    Junk,
    Reject,
}

impl Action {
    /// `inbox`, `junk` or `reject`, as in the header.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Inbox => "inbox",
            Action::Junk => "junk",
            Action::Reject => "reject",
        }
    }
}

/// A message's score, the action it leads to, and its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The sum of the contributions (non-finite ones count as 0).
    pub score: f64,
    pub action: Action,
    pub contributions: Vec<Contribution>,
}

/// Where the actions start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A score at or above this goes to Junk. 0, negative or NaN: never.
    pub junk: f64,
    /// A score at or above this is rejected. 0, negative or NaN: never.
    pub reject: f64,
}

/// The contributions of the `rules` that match one message, in rule order.
/// `headers` are (name, unfolded value) pairs; `body_text` is the text a
/// reader sees (only its first [`BODY_TEXT_BYTES_MAX`] bytes are searched).
pub fn apply_rules(
    rules: &[Rule],
    headers: &[(String, String)],
    body_text: &str,
) -> Vec<Contribution> {
    // Lowercased once per message, not once per rule.
    let mut body_lower: Option<String> = None;
    let mut headers_lower: Option<Vec<(String, String)>> = None;
    let mut contributions = Vec::new();
    for rule in rules {
        let needle = rule.contains.to_lowercase();
        let matched = match &rule.header {
            None => body_lower
                .get_or_insert_with(|| prefix(body_text, BODY_TEXT_BYTES_MAX).to_lowercase())
                .contains(&needle),
            Some(wanted) => {
                let wanted = wanted.trim();
                headers_lower
                    .get_or_insert_with(|| {
                        headers
                            .iter()
                            .map(|(name, value)| (name.trim().to_string(), value.to_lowercase()))
                            .collect()
                    })
                    .iter()
                    .any(|(name, value)| {
                        name.eq_ignore_ascii_case(wanted) && value.contains(&needle)
                    })
            }
        };
        if matched {
            contributions.push(Contribution {
                name: rule.name.clone(),
                score: rule.score,
            });
        }
    }
    contributions
}

/// Sums `contributions` and picks the action: reject at or above
/// `thresholds.reject`, else Junk at or above `thresholds.junk`, else
/// INBOX. A threshold of 0 or less (or NaN) never applies. Non-finite
/// contributions are kept in the list but count as 0.
pub fn verdict(contributions: Vec<Contribution>, thresholds: Thresholds) -> Verdict {
    let score: f64 = contributions
        .iter()
        .map(|part| {
            if part.score.is_finite() {
                part.score
            } else {
                0.0
            }
        })
        .sum();
    let reaches = |threshold: f64| threshold > 0.0 && score >= threshold;
    let action = if reaches(thresholds.reject) {
        Action::Reject
    } else if reaches(thresholds.junk) {
        Action::Junk
    } else {
        Action::Inbox
    };
    Verdict {
        score,
        action,
        contributions,
    }
}

/// The `X-Postern-Spam` value: `score=12.5; action=junk; rules=run(10.0)
/// spf_fail(2.5)`, rules in the given order, `rules=none` when there are
/// none. Scores have one decimal. Names keep `[A-Za-z0-9_.-]` and have
/// other characters replaced by `_` (an empty name is `_`), and are cut
/// at [`NAME_CHARS_MAX`] characters, so the value stays parseable. Fold
/// it with [`crate::headers::field`].
pub fn header_value(verdict: &Verdict) -> String {
    let mut out = format!(
        "score={}; action={}; rules=",
        one_decimal(verdict.score),
        verdict.action.as_str()
    );
    if verdict.contributions.is_empty() {
        out.push_str("none");
    }
    for (index, part) in verdict.contributions.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(&header_name(&part.name));
        // Writing to a String cannot fail.
        let _ = write!(out, "({})", one_decimal(part.score));
    }
    out
}

/// A rule name as the header writes it.
fn header_name(name: &str) -> String {
    let kept: String = name
        .chars()
        .take(NAME_CHARS_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if kept.is_empty() {
        "_".to_string()
    } else {
        kept
    }
}

/// One decimal place; non-finite as 0.0 and no negative zero.
fn one_decimal(value: f64) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    let text = format!("{value:.1}");
    if text == "-0.0" {
        "0.0".to_string()
    } else {
        text
    }
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests;
