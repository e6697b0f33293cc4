//! Import of a plain-text incident log, the format providers already write:
//!
//! ```text
//! Status (by sam at Fri Apr 15 14:34 UTC)
//! Incoming mail is arriving much faster than usual and delivery is delayed.
//! Update (by sam at Fri Apr 15 15:09 UTC)
//! The backlog is cleared.
//! ```
//!
//! A `Status (by NAME at Ddd Mmm D HH:MM UTC)` line starts an incident; an
//! `Update (by ...)` line adds a post to the incident above it; every other
//! line is text of the post above it, blank lines separating paragraphs.
//! The log runs newest incident first, and inside an incident the Status
//! comes first and the Updates follow, oldest first.
//!
//! The log has no years. Every Status is in the year the caller gives
//! (`--year`); an Update dated earlier in the year than the post above it
//! is in the next year (a Status on Dec 31, an Update on Jan 1). The day
//! name must match the date in that year, which catches a wrong `--year`
//! and typos alike: the error names the line and the right day.
//!
//! Pasting an entry twice must not make two incidents. Each post has a
//! [`Fingerprint`] of its author, time and text (whitespace and line
//! wrapping normalised), and within one log a repeated Status merges its
//! incident into the first one, a repeated Update is dropped, and both are
//! counted as duplicates. Across imports the caller does the same against
//! what it has stored, with [`Post::fingerprint`]: an imported incident
//! whose Status fingerprint is already stored adds only its new Updates to
//! that incident, so importing the same file again adds nothing.
//!
//! An imported incident is titled by the first sentence of its first post
//! and is resolved as of its last post.

use std::collections::{HashMap, HashSet};
use std::fmt;

use sha2::{Digest, Sha256};

use crate::date::{
    MONTHS, WEEKDAYS, days_from_civil, days_in_month, unix_seconds, weekday_of_days,
};
use crate::error::{Counted, ImportError, ImportErrorKind, ValidationError};
use crate::model::{POSTS_PER_INCIDENT_MAX, Post, PostRole};
use crate::validate::{TITLE_BYTES_MAX, normalize_text, validate_author, validate_text};

/// Largest log imported at once, in bytes.
pub const IMPORT_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most incidents in one log.
pub const IMPORT_INCIDENTS_MAX: usize = 10_000;
/// Longest word of a header quoted back in an error, in characters.
const QUOTED_CHARS_MAX: usize = 24;

/// What a log holds, ready for the caller to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The incidents, in the log's order (newest first). Create them in
    /// reverse to give older incidents lower ids.
    pub incidents: Vec<ImportedIncident>,
    /// Posts dropped because the same post (same fingerprint) came earlier
    /// in the log.
    pub duplicates: usize,
}

/// One incident of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedIncident {
    /// The first sentence of its first post, at most
    /// [`TITLE_BYTES_MAX`] bytes.
    pub title: String,
    /// Its posts, oldest first: the Status, then the Updates.
    pub posts: Vec<ImportedPost>,
    /// The time of its last post, Unix seconds: an imported incident is
    /// resolved as of its last post.
    pub resolved_at: i64,
    /// The line of its Status.
    pub line: usize,
}

/// One post of an imported incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPost {
    /// Who wrote it (the `NAME` of its header).
    pub author: String,
    /// When, Unix seconds.
    pub at: i64,
    /// Its text, normalised ([`normalize_text`]).
    pub text: String,
    /// Its fingerprint, for skipping posts already stored.
    pub fingerprint: Fingerprint,
    /// The line of its header.
    pub line: usize,
}

/// A post's identity for finding duplicates: SHA-256 of its author, its
/// time and its text with whitespace runs collapsed, line wrapping ignored
/// and paragraphs kept. Stable across versions of this crate, so it can be
/// compared with fingerprints of posts stored long ago (or stored itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl fmt::Display for Fingerprint {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

/// The fingerprint of a post by `author` at `at` (Unix seconds) with
/// `text`.
pub fn fingerprint(author: &str, at: i64, text: &str) -> Fingerprint {
    let mut hash = Sha256::new();
    hash.update(b"postern status post v1\n");
    hash.update(author.trim().as_bytes());
    hash.update(b"\n");
    hash.update(at.to_string().as_bytes());
    hash.update(b"\n");
    let mut first_paragraph = true;
    for paragraph in paragraphs(text) {
        if !first_paragraph {
            hash.update(b"\n\n");
        }
        first_paragraph = false;
        let mut first_word = true;
        for word in paragraph.iter().flat_map(|line| line.split_whitespace()) {
            if !first_word {
                hash.update(b" ");
            }
            first_word = false;
            hash.update(word.as_bytes());
        }
    }
    Fingerprint(hash.finalize().into())
}

impl Post {
    /// This post's [`Fingerprint`], to compare with imported ones.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.author, self.at, &self.text)
    }
}

/// The paragraphs of a text: runs of lines that are not blank.
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<&str>> {
    let mut lines = text.lines().peekable();
    std::iter::from_fn(move || {
        while lines.peek().is_some_and(|line| line.trim().is_empty()) {
            lines.next();
        }
        let mut paragraph = Vec::new();
        while let Some(line) = lines.next_if(|line| !line.trim().is_empty()) {
            paragraph.push(line);
        }
        (!paragraph.is_empty()).then_some(paragraph)
    })
}

/// Reads an incident log whose Statuses are all in `year`.
///
/// # Errors
///
/// [`ImportError`] with the line and what is wrong: text before the first
/// Status, a header that does not parse, a day name that does not match its
/// date, a post without text or with invalid text, an Update dated before
/// the post above it on the same day, a log with no incident, or one over
/// the bounds ([`IMPORT_BYTES_MAX`], [`IMPORT_INCIDENTS_MAX`],
/// [`POSTS_PER_INCIDENT_MAX`]).
pub fn import_log(input: &str, year: i64) -> Result<Import, ImportError> {
    let whole = |kind| ImportError { line: 0, kind };
    if input.len() > IMPORT_BYTES_MAX {
        return Err(whole(ImportErrorKind::InputTooLarge {
            bytes: input.len(),
            max: IMPORT_BYTES_MAX,
        }));
    }
    if !(1..=9998).contains(&year) {
        return Err(whole(ImportErrorKind::YearOutOfRange(year)));
    }
    let raw = split(input)?;
    if raw.is_empty() {
        return Err(whole(ImportErrorKind::NoIncidents));
    }
    let mut incidents: Vec<ImportedIncident> = Vec::new();
    let mut by_status: HashMap<Fingerprint, usize> = HashMap::new();
    let mut seen: HashSet<Fingerprint> = HashSet::new();
    let mut duplicates = 0;
    for incident in &raw {
        let posts = date_posts(incident, year)?;
        let status = &posts[0];
        let target = match by_status.get(&status.fingerprint) {
            Some(&index) => {
                duplicates += 1;
                index
            }
            None => {
                by_status.insert(status.fingerprint, incidents.len());
                seen.insert(status.fingerprint);
                incidents.push(ImportedIncident {
                    title: title_from(&status.text),
                    posts: vec![status.clone()],
                    resolved_at: status.at,
                    line: status.line,
                });
                incidents.len() - 1
            }
        };
        for update in &posts[1..] {
            if seen.insert(update.fingerprint) {
                incidents[target].posts.push(update.clone());
            } else {
                duplicates += 1;
            }
        }
    }
    for incident in &mut incidents {
        // Updates merged from a repeated entry may interleave; a stable sort
        // keeps the Status first, since no Update is dated before it.
        incident.posts.sort_by_key(|post| post.at);
        if incident.posts.len() > POSTS_PER_INCIDENT_MAX {
            return Err(ImportError {
                line: incident.line,
                kind: ImportErrorKind::Invalid(ValidationError::TooMany {
                    what: Counted::Posts,
                    count: incident.posts.len(),
                    max: POSTS_PER_INCIDENT_MAX,
                }),
            });
        }
        incident.resolved_at = incident.posts.iter().map(|post| post.at).max().unwrap_or(0);
    }
    Ok(Import {
        incidents,
        duplicates,
    })
}

/// An incident as read, before dates are resolved.
struct RawIncident<'a> {
    posts: Vec<RawPost<'a>>,
}

struct RawPost<'a> {
    line: usize,
    header: Header,
    text: Vec<&'a str>,
}

/// A parsed header line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    role: PostRole,
    author: String,
    /// 0 = Sunday.
    weekday: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
}

/// Splits the log into incidents and posts, parsing headers.
fn split(input: &str) -> Result<Vec<RawIncident<'_>>, ImportError> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut incidents: Vec<RawIncident<'_>> = Vec::new();
    // Lines end in LF, CRLF or a lone CR; a CR before an LF belongs to it.
    let lines = input
        .split('\n')
        .flat_map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            line.split('\r')
        })
        .enumerate();
    for (index, line) in lines {
        let number = index + 1;
        let at = |kind| ImportError { line: number, kind };
        if let Some(role) = header_role(line) {
            let header = parse_header(line.trim(), role).map_err(at)?;
            match role {
                PostRole::Status => {
                    if incidents.len() >= IMPORT_INCIDENTS_MAX {
                        return Err(at(ImportErrorKind::TooManyIncidents {
                            max: IMPORT_INCIDENTS_MAX,
                        }));
                    }
                    incidents.push(RawIncident { posts: Vec::new() });
                }
                PostRole::Update if incidents.is_empty() => {
                    return Err(at(ImportErrorKind::UpdateBeforeFirstStatus));
                }
                PostRole::Update => {}
            }
            if let Some(incident) = incidents.last_mut() {
                if incident.posts.len() >= POSTS_PER_INCIDENT_MAX {
                    return Err(at(ImportErrorKind::Invalid(ValidationError::TooMany {
                        what: Counted::Posts,
                        count: incident.posts.len() + 1,
                        max: POSTS_PER_INCIDENT_MAX,
                    })));
                }
                incident.posts.push(RawPost {
                    line: number,
                    header,
                    text: Vec::new(),
                });
            }
            continue;
        }
        match incidents
            .last_mut()
            .and_then(|incident| incident.posts.last_mut())
        {
            Some(post) => {
                if let Some(character) = line
                    .chars()
                    .find(|&c| c != '\t' && (c.is_control() || c == '\u{fffe}' || c == '\u{ffff}'))
                {
                    return Err(at(ImportErrorKind::Invalid(
                        ValidationError::ControlCharacter {
                            field: crate::error::Field::Text,
                            character,
                        },
                    )));
                }
                post.text.push(line);
            }
            None if line.trim().is_empty() => {}
            None => return Err(at(ImportErrorKind::TextBeforeFirstStatus)),
        }
    }
    Ok(incidents)
}

/// Whether a line is meant as a header: `Status (by` or `Update (by`, any
/// case, any spacing. Such a line must then parse, so that a typo in a
/// header is reported rather than read as text of the post above.
fn header_role(line: &str) -> Option<PostRole> {
    let line = line.trim_start();
    let (role, rest) = if starts_with_ignore_case(line, "status") {
        (PostRole::Status, &line[6..])
    } else if starts_with_ignore_case(line, "update") {
        (PostRole::Update, &line[6..])
    } else {
        return None;
    };
    let rest = rest.trim_start().strip_prefix('(')?.trim_start();
    let after_by = rest.get(2..)?;
    (starts_with_ignore_case(rest, "by") && after_by.starts_with(char::is_whitespace))
        .then_some(role)
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

const HEADER_SHAPE: &str = "expected \"Status (by NAME at Ddd Mmm D HH:MM UTC)\" or \
                            \"Update (by NAME at Ddd Mmm D HH:MM UTC)\"";

/// Parses a header line (trimmed) that [`header_role`] recognised.
fn parse_header(line: &str, role: PostRole) -> Result<Header, ImportErrorKind> {
    let inner = line[6..]
        .trim_start()
        .strip_prefix('(')
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or(ImportErrorKind::BadHeader(HEADER_SHAPE))?;
    let after_by = inner.trim_start().get(2..).unwrap_or("").trim_start();
    let (author, date) = after_by
        .rsplit_once(" at ")
        .or_else(|| Some(("", after_by.strip_prefix("at ")?)))
        .ok_or(ImportErrorKind::BadHeader(HEADER_SHAPE))?;
    let author = author.trim();
    validate_author(author).map_err(ImportErrorKind::Invalid)?;
    let words: Vec<&str> = date.split_whitespace().collect();
    let [weekday, month, day, time, zone] = words[..] else {
        return Err(ImportErrorKind::BadHeader(
            "the date must read like \"Fri Apr 15 14:34 UTC\"",
        ));
    };
    let weekday = name_index(weekday, &WEEKDAYS, &FULL_WEEKDAYS)
        .ok_or_else(|| ImportErrorKind::UnknownWeekday(quoted(weekday)))?;
    let month = name_index(month, &MONTHS, &FULL_MONTHS)
        .ok_or_else(|| ImportErrorKind::UnknownMonth(quoted(month)))?
        + 1;
    let day =
        number(day, 2)
            .filter(|day| (1..=31).contains(day))
            .ok_or(ImportErrorKind::BadHeader(
                "the day must be a number from 1 to 31",
            ))?;
    let (hour, minute) = time
        .split_once(':')
        .and_then(|(hour, minute)| {
            Some((
                number(hour, 2)?,
                number(minute, 2).filter(|_| minute.len() == 2)?,
            ))
        })
        .filter(|&(hour, minute)| hour < 24 && minute < 60)
        .ok_or_else(|| ImportErrorKind::BadTime(quoted(time)))?;
    if !zone.eq_ignore_ascii_case("UTC") {
        return Err(ImportErrorKind::NotUtc(quoted(zone)));
    }
    Ok(Header {
        role,
        author: author.to_owned(),
        weekday,
        month,
        day,
        hour,
        minute,
    })
}

const FULL_WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const FULL_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The index of a day or month name, short or full, in any case.
fn name_index(word: &str, short: &[&str], full: &[&str]) -> Option<u32> {
    let position = short
        .iter()
        .position(|name| name.eq_ignore_ascii_case(word))
        .or_else(|| full.iter().position(|name| name.eq_ignore_ascii_case(word)))?;
    u32::try_from(position).ok()
}

/// A number of at most `digits` ASCII digits.
fn number(text: &str, digits: usize) -> Option<u32> {
    if text.is_empty() || text.len() > digits || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A word from the input, cut short for an error message.
fn quoted(word: &str) -> String {
    word.chars().take(QUOTED_CHARS_MAX).collect()
}

/// Gives each post of an incident its time, checks day names and order,
/// and checks the text.
fn date_posts(incident: &RawIncident<'_>, year: i64) -> Result<Vec<ImportedPost>, ImportError> {
    let mut posts: Vec<ImportedPost> = Vec::with_capacity(incident.posts.len());
    let mut previous: Option<(i64, &RawPost<'_>)> = None;
    for post in &incident.posts {
        let at = |kind| ImportError {
            line: post.line,
            kind,
        };
        let header = &post.header;
        let post_year = match previous {
            None => year,
            Some((previous_year, above))
                if (header.month, header.day) < (above.header.month, above.header.day) =>
            {
                previous_year + 1
            }
            Some((previous_year, _)) => previous_year,
        };
        if header.day > days_in_month(post_year, header.month) {
            return Err(at(ImportErrorKind::NoSuchDay {
                year: post_year,
                month: MONTHS[(header.month as usize + 11) % 12],
                day: header.day,
            }));
        }
        let days = days_from_civil(post_year, header.month, header.day);
        let actual = weekday_of_days(days);
        if actual != header.weekday {
            return Err(at(ImportErrorKind::WeekdayMismatch {
                date: format!(
                    "{} {} {post_year}",
                    MONTHS[(header.month as usize + 11) % 12],
                    header.day
                ),
                written: WEEKDAYS[header.weekday as usize % 7],
                correct: WEEKDAYS[actual as usize % 7],
            }));
        }
        let time = unix_seconds(
            post_year,
            header.month,
            header.day,
            header.hour,
            header.minute,
        );
        if let (Some(above), Some((_, above_raw))) = (posts.last(), previous)
            && time < above.at
        {
            return Err(at(ImportErrorKind::UpdateBeforePrevious {
                previous_line: above_raw.line,
            }));
        }
        let text = normalize_text(&post.text.join("\n"));
        if text.is_empty() {
            return Err(at(ImportErrorKind::PostEmpty));
        }
        validate_text(&text).map_err(|error| at(ImportErrorKind::Invalid(error)))?;
        posts.push(ImportedPost {
            fingerprint: fingerprint(&header.author, time, &text),
            author: header.author.clone(),
            at: time,
            text,
            line: post.line,
        });
        previous = Some((post_year, post));
    }
    Ok(posts)
}

/// The title of an imported incident: the first sentence of its first
/// paragraph, on one line, without a final period, cut at a word (with an
/// ellipsis) to fit [`TITLE_BYTES_MAX`]. A sentence ends at `.`, `!` or `?`
/// followed by a space and a word that does not start in lower case, so
/// "e.g. the" and "5.3" do not end one.
fn title_from(text: &str) -> String {
    let first = paragraphs(text).next().unwrap_or_default();
    let words: Vec<&str> = first
        .iter()
        .flat_map(|line| line.split_whitespace())
        .collect();
    let mut end = words.len();
    for (index, word) in words.iter().enumerate() {
        let ends_sentence = word.ends_with(['.', '!', '?']);
        let next_lower = words
            .get(index + 1)
            .and_then(|next| next.chars().next())
            .is_some_and(char::is_lowercase);
        if ends_sentence && !next_lower {
            end = index + 1;
            break;
        }
    }
    let sentence = words[..end].join(" ");
    let sentence = sentence.strip_suffix('.').unwrap_or(&sentence);
    if sentence.len() <= TITLE_BYTES_MAX {
        return if sentence.is_empty() {
            "Incident".to_owned()
        } else {
            sentence.to_owned()
        };
    }
    let ellipsis = "…";
    let mut cut = TITLE_BYTES_MAX - ellipsis.len();
    while !sentence.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &sentence[..cut];
    let head = match head.rfind(' ') {
        Some(space) if space > 0 => &head[..space],
        _ => head,
    };
    format!("{}{ellipsis}", head.trim_end_matches([',', ';', ':', ' ']))
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
