//! E.164 normalisation: what users type, what comes out, what is refused.

// Test helpers unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use sms::{Error, PhoneNumber, normalize_e164};

#[test]
fn accepted_numbers() {
    // (input, default country, E.164)
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("+41 79 123 45 67", None, "+41791234567"),
        ("0041791234567", None, "+41791234567"),
        ("00 41 79 123 45 67", Some("1"), "+41791234567"),
        ("+1 (555) 123-4567", None, "+15551234567"),
        ("+44 20 7946.0958", None, "+442079460958"),
        ("+41 (0)79 123 45 67", None, "+41791234567"),
        ("0041 (0)79 123 45 67", None, "+41791234567"),
        ("  +49 30/1234567  ", None, "+49301234567"),
        ("079 123 45 67", Some("41"), "+41791234567"),
        ("079 123 45 67", Some("+41"), "+41791234567"),
        ("(555) 123-4567", Some("1"), "+15551234567"),
        // Italy keeps the leading 0 of its national numbers.
        ("06 1234 5678", Some("39"), "+390612345678"),
        ("+247 4567", None, "+2474567"), // 7 digits: shortest
        ("+123 456 789 012 345", None, "+123456789012345"), // 15 digits: longest
    ];
    for &(input, country, expected) in cases {
        let number = normalize_e164(input, country).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(number.to_string(), expected, "{input:?}");
        assert_eq!(number.as_str(), expected);
        assert_eq!(number.digits(), &expected[1..]);
    }
}

#[test]
fn refused_numbers() {
    let cases: &[(&str, Option<&str>, Error)] = &[
        ("", None, Error::PhoneEmpty),
        ("   ", None, Error::PhoneEmpty),
        ("+", None, Error::PhoneEmpty),
        ("+ ( ) -", None, Error::PhoneEmpty),
        ("+41 79 CALL ME", None, Error::PhoneInvalidCharacter('C')),
        (
            "+41 79 123 45 67 ext 5",
            None,
            Error::PhoneInvalidCharacter('e'),
        ),
        (
            "41+791234567",
            Some("41"),
            Error::PhoneInvalidCharacter('+'),
        ),
        ("++41791234567", None, Error::PhoneInvalidCharacter('+')),
        ("+41 79", None, Error::PhoneTooShort { digits: 4 }),
        (
            "+123 456 789 012 3456",
            None,
            Error::PhoneTooLong { digits: 16 },
        ),
        ("+0 41 79 123 45 67", None, Error::PhoneCountryCodeInvalid),
        ("000 41 79 123 45 67", None, Error::PhoneCountryCodeInvalid),
        ("079 123 45 67", None, Error::PhoneNeedsCountryCode),
        ("079 123 45 67", Some("041"), Error::PhoneCountryCodeInvalid),
        (
            "079 123 45 67",
            Some("4100"),
            Error::PhoneCountryCodeInvalid,
        ),
        ("079 123 45 67", Some("CH"), Error::PhoneCountryCodeInvalid),
        ("079 123 45 67", Some(""), Error::PhoneCountryCodeInvalid),
    ];
    for (input, country, expected) in cases {
        assert_eq!(
            normalize_e164(input, *country),
            Err(expected.clone()),
            "{input:?}"
        );
    }
}

#[test]
fn absurdly_long_input_is_refused_early() {
    let input = format!("+{}", "1".repeat(100_000));
    assert!(matches!(
        normalize_e164(&input, None),
        Err(Error::PhoneTooLong { .. })
    ));
}

#[test]
fn from_str_needs_an_international_number() {
    let number: PhoneNumber = "+41 79 123 45 67".parse().unwrap();
    assert_eq!(number.to_string(), "+41791234567");
    assert_eq!(
        "079 123 45 67".parse::<PhoneNumber>(),
        Err(Error::PhoneNeedsCountryCode)
    );
}

#[test]
fn error_messages_say_what_to_do() {
    let message = normalize_e164("079 123 45 67", None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("+ or 00"), "{message}");
    let message = normalize_e164("+1234567890123456", None)
        .unwrap_err()
        .to_string();
    assert!(message.contains("15"), "{message}");
}
