//! The one error type of the crate. Each variant is a kind a caller can
//! match on; the Display text is written for an operator reading a log.

use std::fmt;

/// What went wrong encoding, decoding or validating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The text to send is empty. An empty SMS is billed like any other and
    /// tells the recipient nothing, so it is refused rather than sent.
    EmptyText,
    /// The text needs more segments than the configured cap allows.
    TooManySegments {
        /// Segments the whole text would take.
        needed: usize,
        /// The cap, [`crate::Options::segments_max`].
        max: u8,
    },
    /// Received user data that cannot be decoded; the text says why.
    InvalidUserData(&'static str),
    /// A phone number that is empty (or only punctuation).
    PhoneEmpty,
    /// A phone number with a character that is not a digit, a leading '+'
    /// or the usual separators (space, '-', '.', '/', parentheses).
    PhoneInvalidCharacter(char),
    /// Fewer digits (country code included) than any E.164 number has.
    PhoneTooShort {
        /// Digits found, country code included.
        digits: usize,
    },
    /// More than the 15 digits E.164 allows.
    PhoneTooLong {
        /// Digits found, country code included.
        digits: usize,
    },
    /// A country calling code that starts with 0, or a default country
    /// code that is not 1 to 3 digits.
    PhoneCountryCodeInvalid,
    /// A national number ("079 123 45 67") and no default country code to
    /// make it international.
    PhoneNeedsCountryCode,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::EmptyText => write!(f, "the SMS text is empty; nothing to send"),
            Error::TooManySegments { needed, max } => write!(
                f,
                "the SMS text needs {needed} segments but at most {max} are allowed \
                 (raise segments_max or shorten the text)"
            ),
            Error::InvalidUserData(reason) => write!(f, "invalid SMS user data: {reason}"),
            Error::PhoneEmpty => write!(f, "the phone number is empty"),
            Error::PhoneInvalidCharacter(c) => {
                write!(
                    f,
                    "the phone number contains {c:?}; only digits, a leading '+' and separators are allowed"
                )
            }
            Error::PhoneTooShort { digits } => {
                write!(
                    f,
                    "the phone number has {digits} digits, too few for an international number"
                )
            }
            Error::PhoneTooLong { digits } => {
                write!(
                    f,
                    "the phone number has {digits} digits; E.164 allows at most {}",
                    crate::phone::DIGITS_MAX
                )
            }
            Error::PhoneCountryCodeInvalid => {
                write!(
                    f,
                    "the country calling code is invalid (1 to 3 digits, not starting with 0)"
                )
            }
            Error::PhoneNeedsCountryCode => write!(
                f,
                "the phone number has no country code (start it with + or 00) and no default country is configured"
            ),
        }
    }
}

impl std::error::Error for Error {}
