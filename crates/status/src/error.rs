//! The crate's errors. Each variant is a kind a caller can match on; the
//! Display text is written for the person who typed the input (an author at
//! the CLI, an operator importing a log), and says what to change.

use std::fmt;

/// Which piece of input a [`ValidationError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// An incident's title.
    Title,
    /// A post's text.
    Text,
    /// A post's or an edit's author.
    Author,
    /// A component's name.
    ComponentName,
    /// A component's note.
    Note,
    /// The site's name, shown in page titles and the feed.
    SiteName,
}

impl Field {
    fn noun(self) -> &'static str {
        match self {
            Field::Title => "the title",
            Field::Text => "the text",
            Field::Author => "the author",
            Field::ComponentName => "the component name",
            Field::Note => "the note",
            Field::SiteName => "the site name",
        }
    }
}

/// What there are too many of, in [`ValidationError::TooMany`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Components named by one incident.
    Components,
    /// Posts in one incident's timeline.
    Posts,
    /// Kept edits of one post.
    Edits,
}

/// Why a value may not be stored or shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidationError {
    /// Empty, or only whitespace.
    Empty(Field),
    /// Longer than the bound for the field, in bytes of UTF-8.
    TooLong {
        /// The field.
        field: Field,
        /// Its length.
        bytes: usize,
        /// The bound ([`crate::TITLE_BYTES_MAX`] and its siblings).
        max: usize,
    },
    /// A control character (other than a newline or a tab in text), which
    /// would be invisible on the page and is not allowed in XML.
    ControlCharacter {
        /// The field.
        field: Field,
        /// The character.
        character: char,
    },
    /// Leading or trailing whitespace in a one-line field, which would make
    /// "sam" and "sam " two authors or two components.
    SurroundingWhitespace(Field),
    /// More items than the bound.
    TooMany {
        /// What is counted.
        what: Counted,
        /// How many there are.
        count: usize,
        /// The bound.
        max: usize,
    },
    /// The same component named twice by one incident.
    DuplicateComponent(String),
    /// An incident without a post: every incident opens with its Status.
    NoPosts,
    /// A maintenance window that ends before it starts.
    MaintenanceWindow {
        /// Start, Unix seconds.
        starts: i64,
        /// End, Unix seconds.
        ends: i64,
    },
    /// A time outside years 1 to 9999 ([`crate::TIME_MIN`], [`crate::TIME_MAX`]).
    TimeOutOfRange(i64),
    /// An incident resolved before it was created.
    ResolvedBeforeCreated {
        /// Created, Unix seconds.
        created: i64,
        /// Resolved, Unix seconds.
        resolved: i64,
    },
    /// A state for maintenance on an incident, or the reverse.
    StateDoesNotFitKind {
        /// The state's label.
        state: &'static str,
        /// Whether the incident is maintenance.
        maintenance: bool,
    },
    /// A public URL that is not an absolute `http` or `https` URL without
    /// query or fragment; the text says what is wrong.
    PublicUrl(&'static str),
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::Empty(field) => write!(f, "{} is empty", field.noun()),
            ValidationError::TooLong { field, bytes, max } => write!(
                f,
                "{} is {bytes} bytes long; at most {max} are allowed",
                field.noun()
            ),
            ValidationError::ControlCharacter { field, character } => write!(
                f,
                "{} contains the control character {:?}; remove it",
                field.noun(),
                character
            ),
            ValidationError::SurroundingWhitespace(field) => {
                write!(f, "{} starts or ends with whitespace", field.noun())
            }
            ValidationError::TooMany { what, count, max } => {
                let what = match what {
                    Counted::Components => "components named by one incident",
                    Counted::Posts => "posts in one incident",
                    Counted::Edits => "kept edits of one post",
                };
                write!(f, "{count} {what}; at most {max} are allowed")
            }
            ValidationError::DuplicateComponent(name) => {
                write!(f, "the component {name:?} is named twice")
            }
            ValidationError::NoPosts => {
                write!(f, "an incident needs at least one post, its Status")
            }
            ValidationError::MaintenanceWindow { starts, ends } => write!(
                f,
                "the maintenance window ends ({}) before it starts ({})",
                crate::date::rfc3339(*ends),
                crate::date::rfc3339(*starts)
            ),
            ValidationError::TimeOutOfRange(at) => write!(
                f,
                "the time {at} (Unix seconds) is outside the years 1 to 9999"
            ),
            ValidationError::ResolvedBeforeCreated { created, resolved } => write!(
                f,
                "the incident is resolved ({}) before it was created ({})",
                crate::date::rfc3339(*resolved),
                crate::date::rfc3339(*created)
            ),
            ValidationError::StateDoesNotFitKind { state, maintenance } => {
                if *maintenance {
                    write!(
                        f,
                        "maintenance cannot be {state:?}; use scheduled, in progress or completed"
                    )
                } else {
                    write!(
                        f,
                        "an incident cannot be {state:?}; use investigating, identified, monitoring or resolved"
                    )
                }
            }
            ValidationError::PublicUrl(reason) => write!(f, "the public URL {reason}"),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Why an incident log could not be imported, and on which line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// The line (1-based) the error is about; 0 when it is about the whole
    /// input (too large, no incidents).
    pub line: usize,
    /// What is wrong.
    pub kind: ImportErrorKind,
}

/// The kinds of [`ImportError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportErrorKind {
    /// The input is larger than [`crate::IMPORT_BYTES_MAX`].
    InputTooLarge {
        /// Its size.
        bytes: usize,
        /// The bound.
        max: usize,
    },
    /// The year given for the log is outside 1 to 9998 (an update may roll
    /// into the year after).
    YearOutOfRange(i64),
    /// Nothing but blank lines: no `Status (by ...)` line.
    NoIncidents,
    /// Text before the first `Status (by ...)` line, which would belong to
    /// no incident.
    TextBeforeFirstStatus,
    /// An `Update (by ...)` line before the first `Status (by ...)` line.
    UpdateBeforeFirstStatus,
    /// A line that starts like a header but does not parse; the text says
    /// what was expected.
    BadHeader(&'static str),
    /// A day name that is not one of Mon, Tue, ... Sun.
    UnknownWeekday(String),
    /// A month name that is not one of Jan, Feb, ... Dec.
    UnknownMonth(String),
    /// A day that the month does not have (Apr 31, Feb 29 of 2011).
    NoSuchDay {
        /// The year it was read in.
        year: i64,
        /// The month's name.
        month: &'static str,
        /// The day.
        day: u32,
    },
    /// A time that is not `HH:MM` on a 24-hour clock.
    BadTime(String),
    /// A zone other than UTC.
    NotUtc(String),
    /// The day name does not match the date in the year it was read in.
    WeekdayMismatch {
        /// The date, as `Apr 15 2011`.
        date: String,
        /// The day name in the log.
        written: &'static str,
        /// The day that date really is.
        correct: &'static str,
    },
    /// A header with no text under it.
    PostEmpty,
    /// An update dated earlier on the same day than the post above it.
    UpdateBeforePrevious {
        /// The line of the post above.
        previous_line: usize,
    },
    /// The author or the text is not valid (too long, control characters).
    Invalid(ValidationError),
    /// More incidents than [`crate::IMPORT_INCIDENTS_MAX`].
    TooManyIncidents {
        /// The bound.
        max: usize,
    },
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        match &self.kind {
            ImportErrorKind::InputTooLarge { bytes, max } => write!(
                f,
                "the log is {bytes} bytes; at most {max} can be imported at once (split it)"
            ),
            ImportErrorKind::YearOutOfRange(year) => {
                write!(f, "the year {year} is outside 1 to 9998")
            }
            ImportErrorKind::NoIncidents => write!(
                f,
                "no incident found: an incident starts with a line like \
                 \"Status (by sam at Fri Apr 15 14:34 UTC)\""
            ),
            ImportErrorKind::TextBeforeFirstStatus => write!(
                f,
                "text before the first \"Status (by NAME at Ddd Mmm D HH:MM UTC)\" line"
            ),
            ImportErrorKind::UpdateBeforeFirstStatus => write!(
                f,
                "an Update before any Status: every update belongs to the incident whose \
                 \"Status (by ...)\" line is above it"
            ),
            ImportErrorKind::BadHeader(expected) => write!(f, "bad header line: {expected}"),
            ImportErrorKind::UnknownWeekday(word) => write!(
                f,
                "{word:?} is not a day name (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"
            ),
            ImportErrorKind::UnknownMonth(word) => {
                write!(f, "{word:?} is not a month name (Jan, Feb, Mar, ... Dec)")
            }
            ImportErrorKind::NoSuchDay { year, month, day } => {
                write!(f, "{month} {year} has no day {day}")
            }
            ImportErrorKind::BadTime(time) => {
                write!(f, "{time:?} is not a time of day as HH:MM (24-hour clock)")
            }
            ImportErrorKind::NotUtc(zone) => write!(
                f,
                "the time zone is {zone:?}; the log's times must be in UTC"
            ),
            ImportErrorKind::WeekdayMismatch {
                date,
                written,
                correct,
            } => write!(
                f,
                "{date} is a {correct}, not a {written}: check the date, or the year given \
                 for the log"
            ),
            ImportErrorKind::PostEmpty => write!(f, "the post has no text"),
            ImportErrorKind::UpdateBeforePrevious { previous_line } => write!(
                f,
                "this update is dated before the post on line {previous_line}; \
                 updates run oldest first"
            ),
            ImportErrorKind::Invalid(error) => error.fmt(f),
            ImportErrorKind::TooManyIncidents { max } => write!(
                f,
                "more than {max} incidents in one log; import it in parts"
            ),
        }
    }
}

impl std::error::Error for ImportError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_line_and_the_fix() {
        let error = ImportError {
            line: 7,
            kind: ImportErrorKind::WeekdayMismatch {
                date: "Apr 15 2012".into(),
                written: "Fri",
                correct: "Sun",
            },
        };
        assert_eq!(
            error.to_string(),
            "line 7: Apr 15 2012 is a Sun, not a Fri: check the date, or the year given for the log"
        );
        let whole = ImportError {
            line: 0,
            kind: ImportErrorKind::NoIncidents,
        };
        assert!(whole.to_string().starts_with("no incident found"));
        let too_long = ValidationError::TooLong {
            field: Field::Title,
            bytes: 201,
            max: 200,
        };
        assert_eq!(
            too_long.to_string(),
            "the title is 201 bytes long; at most 200 are allowed"
        );
    }
}
