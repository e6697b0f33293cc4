//! E.164 destination numbers: what a user types in a settings form, made
//! into the "+41791234567" form an SMSC wants.
//!
//! This is a syntax check, not a numbering plan: "+41 12 345 67" passes if
//! it has the right number of digits, whether or not Switzerland assigns
//! it. Knowing every country's lengths would take libphonenumber's tables;
//! the SMSC rejects numbers that do not exist.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// E.164 §6.1: at most 15 digits, country code included.
pub const DIGITS_MAX: usize = 15;
/// The shortest international numbers in use (small island countries:
/// 3-digit country code, 4-digit subscriber number) have 7 digits.
pub const DIGITS_MIN: usize = 7;
/// Country calling codes have 1 to 3 digits.
const COUNTRY_CODE_DIGITS_MAX: usize = 3;

/// Countries whose national numbers keep their leading 0 after the country
/// code (Italy: "06 1234 5678" is "+39 06 1234 5678"), so "0" is not a trunk
/// prefix to drop there.
const LEADING_ZERO_KEPT: [&str; 1] = ["39"];

/// A validated E.164 number. Displays as "+" and its digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber {
    /// "+" then 7 to 15 digits, the first not 0.
    e164: String,
}

impl PhoneNumber {
    /// "+41791234567".
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// "41791234567": the digits without "+", as SMPP `destination_addr`
    /// wants with TON international, NPI ISDN.
    pub fn digits(&self) -> &str {
        &self.e164[1..]
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

impl FromStr for PhoneNumber {
    type Err = Error;

    /// Parses an international number only ("+..." or "00...").
    fn from_str(input: &str) -> Result<Self, Error> {
        normalize_e164(input, None)
    }
}

/// Validates a phone number and writes it in E.164 form.
///
/// Accepts "+41 79 123 45 67", "0041791234567", "+1 (555) 123-4567" and
/// "+41 (0)79 123 45 67" (the "(0)" is the national trunk prefix and is
/// dropped). A national number ("079 123 45 67") is made international with
/// `default_country`, a calling code such as "41" (a leading '+' is
/// allowed), dropping one leading trunk 0 except for Italy.
///
/// # Errors
///
/// [`Error::PhoneEmpty`], [`Error::PhoneInvalidCharacter`] (letters, or a
/// '+' not at the start), [`Error::PhoneTooShort`], [`Error::PhoneTooLong`],
/// [`Error::PhoneCountryCodeInvalid`] (country code starting with 0, or a bad
/// `default_country`), [`Error::PhoneNeedsCountryCode`] (national number
/// and no `default_country`).
pub fn normalize_e164(input: &str, default_country: Option<&str>) -> Result<PhoneNumber, Error> {
    let trimmed = input.trim();
    let (international, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    // "+41 (0)79 ..." and "0041 (0)79 ...": the "(0)" is the trunk prefix
    // for dialling inside the country, never part of the international
    // number.
    let rest = if international || rest.starts_with("00") {
        rest.replacen("(0)", "", 1)
    } else {
        rest.to_owned()
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '/' | '(' | ')' | '\u{A0}' => {}
            other => return Err(Error::PhoneInvalidCharacter(other)),
        }
        // Refuse absurd input early instead of collecting it all. The 2
        // allows for a "00" prefix or a trunk 0 that is dropped later.
        if digits.len() > DIGITS_MAX + 2 {
            return Err(Error::PhoneTooLong {
                digits: digits.len(),
            });
        }
    }
    if digits.is_empty() {
        return Err(Error::PhoneEmpty);
    }
    let full = if international {
        digits
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_owned()
    } else {
        let country = default_country.ok_or(Error::PhoneNeedsCountryCode)?;
        let country = country.trim().trim_start_matches('+');
        let valid_country = (1..=COUNTRY_CODE_DIGITS_MAX).contains(&country.len())
            && country.bytes().all(|b| b.is_ascii_digit())
            && !country.starts_with('0');
        if !valid_country {
            return Err(Error::PhoneCountryCodeInvalid);
        }
        let national = if LEADING_ZERO_KEPT.contains(&country) {
            digits.as_str()
        } else {
            digits.strip_prefix('0').unwrap_or(&digits)
        };
        format!("{country}{national}")
    };
    if full.starts_with('0') {
        return Err(Error::PhoneCountryCodeInvalid);
    }
    if full.len() > DIGITS_MAX {
        return Err(Error::PhoneTooLong { digits: full.len() });
    }
    if full.len() < DIGITS_MIN {
        return Err(Error::PhoneTooShort { digits: full.len() });
    }
    Ok(PhoneNumber {
        e164: format!("+{full}"),
    })
}
