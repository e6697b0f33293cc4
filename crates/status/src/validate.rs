//! The checks on what authors write: every text field has a bound in
//! bytes, one-line fields have no line breaks, control characters or
//! surrounding whitespace, and post texts no control characters but
//! newlines and tabs. Each check returns the first rule broken as a
//! [`ValidationError`] whose message says what to change.

use crate::date::{TIME_MAX, TIME_MIN};
use crate::error::{Field, ValidationError};

/// Longest incident title, in bytes: a line on a phone, two at most.
pub const TITLE_BYTES_MAX: usize = 200;
/// Longest post text, in bytes: several screens; a post longer than this
/// is a document and belongs elsewhere, with a link.
pub const TEXT_BYTES_MAX: usize = 20_000;
/// Longest author name, in bytes.
pub const AUTHOR_BYTES_MAX: usize = 64;
/// Longest component name, in bytes.
pub const COMPONENT_NAME_BYTES_MAX: usize = 64;
/// Longest component note, in bytes.
pub const NOTE_BYTES_MAX: usize = 500;
/// Checks an incident title: one line, not empty, at most
/// [`TITLE_BYTES_MAX`] bytes, no control characters, no surrounding
/// whitespace.
///
/// # Errors
///
/// The first rule broken.
pub fn validate_title(title: &str) -> Result<(), ValidationError> {
    validate_line(title, Field::Title, TITLE_BYTES_MAX)
}

/// Checks an author's name: as a title, at most [`AUTHOR_BYTES_MAX`] bytes.
///
/// # Errors
///
/// The first rule broken.
pub fn validate_author(author: &str) -> Result<(), ValidationError> {
    validate_line(author, Field::Author, AUTHOR_BYTES_MAX)
}

/// Checks a component's name: as a title, at most
/// [`COMPONENT_NAME_BYTES_MAX`] bytes.
///
/// # Errors
///
/// The first rule broken.
pub fn validate_component_name(name: &str) -> Result<(), ValidationError> {
    validate_line(name, Field::ComponentName, COMPONENT_NAME_BYTES_MAX)
}

/// Checks a post's text: not blank, at most [`TEXT_BYTES_MAX`] bytes, and
/// no control characters but newlines and tabs. Run [`normalize_text`]
/// first, which turns CRLF and CR into LF.
///
/// # Errors
///
/// The first rule broken.
pub fn validate_text(text: &str) -> Result<(), ValidationError> {
    if text.trim().is_empty() {
        return Err(ValidationError::Empty(Field::Text));
    }
    if text.len() > TEXT_BYTES_MAX {
        return Err(ValidationError::TooLong {
            field: Field::Text,
            bytes: text.len(),
            max: TEXT_BYTES_MAX,
        });
    }
    match text
        .chars()
        .find(|&c| is_forbidden(c) && c != '\n' && c != '\t')
    {
        Some(character) => Err(ValidationError::ControlCharacter {
            field: Field::Text,
            character,
        }),
        None => Ok(()),
    }
}

/// A post's text as it is stored: line ends as LF (from CRLF or CR), no
/// byte order mark, no trailing whitespace on a line, no blank lines at the
/// start or the end. Paragraphs and indentation are kept.
pub fn normalize_text(text: &str) -> String {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let unified = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = unified.lines().map(str::trim_end).collect();
    let first = lines.iter().position(|line| !line.is_empty());
    let last = lines.iter().rposition(|line| !line.is_empty());
    match (first, last) {
        (Some(first), Some(last)) => lines[first..=last].join("\n"),
        _ => String::new(),
    }
}

/// A time within the years 1 to 9999.
pub(crate) fn validate_time(at: i64) -> Result<(), ValidationError> {
    if (TIME_MIN..=TIME_MAX).contains(&at) {
        Ok(())
    } else {
        Err(ValidationError::TimeOutOfRange(at))
    }
}

/// The rules shared by one-line fields.
pub(crate) fn validate_line(value: &str, field: Field, max: usize) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::Empty(field));
    }
    if value.len() > max {
        return Err(ValidationError::TooLong {
            field,
            bytes: value.len(),
            max,
        });
    }
    if let Some(character) = value.chars().find(|&c| is_forbidden(c)) {
        return Err(ValidationError::ControlCharacter { field, character });
    }
    if value.trim() != value {
        return Err(ValidationError::SurroundingWhitespace(field));
    }
    Ok(())
}

/// Characters no author means to write: C0 and C1 controls and DEL, and the
/// two noncharacters XML forbids. (The escaper replaces them anyway.)
fn is_forbidden(c: char) -> bool {
    c.is_control() || c == '\u{fffe}' || c == '\u{ffff}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_fields() {
        assert_eq!(validate_title("Mail is slow"), Ok(()));
        assert_eq!(
            validate_title(""),
            Err(ValidationError::Empty(Field::Title))
        );
        assert_eq!(
            validate_title(" \t"),
            Err(ValidationError::Empty(Field::Title))
        );
        assert_eq!(
            validate_title(" padded"),
            Err(ValidationError::SurroundingWhitespace(Field::Title))
        );
        assert_eq!(
            validate_title("two\nlines"),
            Err(ValidationError::ControlCharacter {
                field: Field::Title,
                character: '\n'
            })
        );
        assert_eq!(validate_title(&"é".repeat(100)), Ok(()));
        assert_eq!(
            validate_title(&"é".repeat(101)),
            Err(ValidationError::TooLong {
                field: Field::Title,
                bytes: 202,
                max: TITLE_BYTES_MAX
            })
        );
        assert!(validate_author("sam\u{0}").is_err());
        assert!(validate_author("sam\u{85}").is_err(), "C1 controls too");
        assert_eq!(validate_author("Sam O'Neil"), Ok(()));
        assert!(validate_component_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn text_allows_newlines_and_tabs_only() {
        assert_eq!(validate_text("a\n\n\tb"), Ok(()));
        assert_eq!(
            validate_text("\n \n"),
            Err(ValidationError::Empty(Field::Text))
        );
        assert!(validate_text("a\rb").is_err());
        assert!(validate_text("a\u{1b}[31mb").is_err());
        assert!(validate_text("a\u{ffff}").is_err());
        assert_eq!(validate_text(&"x".repeat(TEXT_BYTES_MAX)), Ok(()));
        assert!(validate_text(&"x".repeat(TEXT_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn normalize_text_unifies_line_ends_and_trims() {
        assert_eq!(
            normalize_text("\u{feff}\r\n\r\n  First  \r\nline\r\rsecond\n\n\n"),
            "  First\nline\n\nsecond"
        );
        assert_eq!(normalize_text(" \n\t\n"), "");
    }
}
