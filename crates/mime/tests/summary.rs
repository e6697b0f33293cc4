//! ENVELOPE, BODY and BODYSTRUCTURE of the `.eml` files under `tests/data`,
//! checked as exact strings. One `check_*` helper per feature, so the tests
//! do not depend on how the crate is organised inside.
//!
//! Expected strings for the RFC 3501 example message come from RFC 3501
//! section 8 (the FETCH response of message 12); the others were worked out
//! from RFC 9051 section 7.5.2 and the formal syntax by hand, sizes counted
//! on the CRLF form of each file.

mod common;

use postern_mime::{Limits, Summary, summarize};

fn summary(eml: &str) -> Summary {
    summarize(&common::load(eml), &Limits::default())
}

#[track_caller]
fn check_envelope(eml: &str, expected: &str) {
    assert_eq!(summary(eml).envelope, expected, "ENVELOPE of {eml}");
}

#[track_caller]
fn check_body(eml: &str, expected: &str) {
    assert_eq!(summary(eml).body, expected, "BODY of {eml}");
}

#[track_caller]
fn check_body_structure(eml: &str, expected: &str) {
    assert_eq!(
        summary(eml).body_structure,
        expected,
        "BODYSTRUCTURE of {eml}"
    );
}

#[test]
fn rfc3501_example_envelope() {
    // RFC 3501 section 8 shows a space between the two cc addresses, which
    // its own grammar (`"(" 1*address ")"`) does not allow; we follow the
    // grammar, as Dovecot and Cyrus do.
    check_envelope(
        "rfc3501_simple.eml",
        r#"("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")"#,
    );
    // Same shape as the RFC's `("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL
    // NIL "7BIT" 3028 92)`, with this body's size and lines.
    check_body(
        "rfc3501_simple.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 50 2)"#,
    );
    check_body_structure(
        "rfc3501_simple.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 50 2 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn multipart_alternative() {
    check_envelope(
        "multipart_alternative.eml",
        r#"("Thu, 1 Feb 2024 12:00:00 +0100" "Lunch?" (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Alice" NIL "alice" "example.org")) (("Bob" NIL "bob" "example.net")) NIL NIL NIL "<alt-1@example.org>")"#,
    );
    check_body(
        "multipart_alternative.eml",
        r#"(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 37 1)("text" "html" ("charset" "utf-8") NIL NIL "7BIT" 91 1) "alternative")"#,
    );
    check_body_structure(
        "multipart_alternative.eml",
        r#"(("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 37 1 NIL NIL NIL NIL)("text" "html" ("charset" "utf-8") NIL NIL "7BIT" 91 1 NIL NIL NIL NIL) "alternative" ("boundary" "b1") NIL NIL NIL)"#,
    );
}

#[test]
fn multipart_mixed_with_attachment() {
    // Modelled on the RFC 3501 7.4.2 BODYSTRUCTURE example:
    // (("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)
    //  ("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff")
    //  "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64"
    //  4554 73) "MIXED")
    check_body(
        "multipart_mixed_attachment.eml",
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 17 1)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 36 1) "MIXED")"#,
    );
    check_body_structure(
        "multipart_mixed_attachment.eml",
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 17 1 NIL NIL NIL NIL)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 36 1 NIL ("attachment" ("filename" "cc.diff")) NIL NIL) "MIXED" ("BOUNDARY" "16820115-1435684063-837819248:#20117") NIL NIL NIL)"#,
    );
    check_envelope(
        "multipart_mixed_attachment.eml",
        r#"("Tue, 23 Jul 1996 16:34:07 -0700" "Re: compiler diff" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) NIL NIL "<960722.1@cac.washington.edu>" "<960723163407.20117@cac.washington.edu>")"#,
    );
}

#[test]
fn nested_message_rfc822_carries_envelope_structure_and_lines() {
    check_body(
        "nested_rfc822.eml",
        r#"(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1)("message" "rfc822" NIL NIL NIL "7BIT" 318 ("Thu, 1 Feb 2024 08:00:00 +0000" "original" (("Original Sender" NIL "orig" "example.com")) (("Original Sender" NIL "orig" "example.com")) (("Original Sender" NIL "orig" "example.com")) ((NIL NIL "forwarder" "example.org")) NIL NIL NIL "<orig@example.com>") (("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 1)("text" "html" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1) "alternative") 16) "mixed")"#,
    );
    check_body_structure(
        "nested_rfc822.eml",
        r#"(("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)("message" "rfc822" NIL NIL NIL "7BIT" 318 ("Thu, 1 Feb 2024 08:00:00 +0000" "original" (("Original Sender" NIL "orig" "example.com")) (("Original Sender" NIL "orig" "example.com")) (("Original Sender" NIL "orig" "example.com")) ((NIL NIL "forwarder" "example.org")) NIL NIL NIL "<orig@example.com>") (("text" "plain" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)("text" "html" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL) "alternative" ("boundary" "inner") NIL NIL NIL) 16 NIL ("inline" NIL) NIL NIL) "mixed" ("boundary" "outer") NIL NIL NIL)"#,
    );
}

#[test]
fn encoded_words_stay_raw_in_envelope_and_are_decoded_for_search() {
    check_envelope(
        "encoded_words.eml",
        r#"("Mon, 5 Feb 2024 11:00:00 +0100" "=?UTF-8?B?R3LDvMOfZSBhdXMgQmVybGlu?= =?UTF-8?Q?_und_M=C3=BCnchen?=" (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?UTF-8?Q?J=C3=B6rg_M=C3=BCller?=" NIL "joerg" "example.de")) (("=?ISO-8859-1?Q?Andr=E9?=" NIL "andre" "example.fr")) NIL NIL NIL "<ew-1@example.de>")"#,
    );
    let summary = summary("encoded_words.eml");
    assert_eq!(summary.subject, "Grüße aus Berlin und München");
    assert_eq!(summary.from, "Jörg Müller <joerg@example.de>");
    assert_eq!(summary.to, "André <andre@example.fr>");
    // The incident that started this project: encoded words inside a
    // Received field. It must be kept, decoded, in order, and not disturb
    // anything after it.
    let (name, value) = &summary.headers[0];
    assert_eq!(name, "Received");
    assert!(value.contains("über"), "{value}");
    assert!(value.contains("café"), "{value}");
    assert!(value.ends_with("Mon, 5 Feb 2024 10:00:00 +0000"), "{value}");
    assert_eq!(summary.headers.len(), 6);
    assert_eq!(summary.message_id.as_deref(), Some("<ew-1@example.de>"));
}

#[test]
fn broken_multipart_without_its_boundary_is_shown_as_text() {
    check_body_structure(
        "broken_missing_boundary.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 111 5 NIL NIL NIL NIL)"#,
    );
    check_envelope(
        "broken_missing_boundary.eml",
        r#"(NIL "broken multipart" ((NIL NIL "broken" "example.org")) ((NIL NIL "broken" "example.org")) ((NIL NIL "broken" "example.org")) ((NIL NIL "you" "example.net")) NIL NIL NIL NIL)"#,
    );
}

#[test]
fn eight_bit_headers_go_out_as_literals() {
    // Latin-1 bytes are read as Windows-1252 and sent as UTF-8 literals;
    // UTF-8 (RFC 6532) is sent as is. Never a quoted string with 8-bit.
    check_envelope(
        "eight_bit_headers.eml",
        "(\"Mon, 5 Feb 2024 11:00:00 +0100\" {12}\r\nCafé crème (({5}\r\nJosé NIL \"jose\" \"example.es\")) (({5}\r\nJosé NIL \"jose\" \"example.es\")) (({5}\r\nJosé NIL \"jose\" \"example.es\")) (({7}\r\nÉmilie NIL \"emilie\" \"example.fr\")) NIL NIL NIL NIL)",
    );
    let summary = summary("eight_bit_headers.eml");
    assert_eq!(summary.subject, "Café crème");
    assert_eq!(summary.from, "José <jose@example.es>");
}

#[test]
fn nul_bytes_are_dropped_from_strings() {
    check_envelope(
        "nul_bytes.eml",
        r#"(NIL "ab" ((NIL NIL "null" "example.org")) ((NIL NIL "null" "example.org")) ((NIL NIL "null" "example.org")) NIL NIL NIL NIL NIL)"#,
    );
    let summary = summary("nul_bytes.eml");
    assert_eq!(summary.subject, "ab");
    assert!(
        summary
            .headers
            .iter()
            .all(|(_, value)| !value.contains('\0'))
    );
    check_body(
        "nul_bytes.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 18 1)"#,
    );
}

#[test]
fn bare_lf_line_endings() {
    check_envelope(
        "bare_lf.eml",
        r#"(NIL "bare LF folded" ((NIL NIL "lf" "example.org")) ((NIL NIL "lf" "example.org")) ((NIL NIL "lf" "example.org")) NIL NIL NIL NIL NIL)"#,
    );
    check_body_structure(
        "bare_lf.eml",
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3 1 NIL NIL NIL NIL)("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 9 2 NIL NIL NIL NIL) "mixed" ("boundary" "x") NIL NIL NIL)"#,
    );
}

#[test]
fn group_addresses_and_source_route() {
    // RFC 9051 7.5.2: a group is (NIL NIL "name" NIL) ... (NIL NIL NIL NIL).
    check_envelope(
        "group_addresses.eml",
        r#"(NIL "groups" (("Chair" NIL "chair" "example.org")) (("Chair" NIL "chair" "example.org")) (("Chair" NIL "chair" "example.org")) ((NIL NIL "Committee" NIL)(NIL NIL "alice" "example.org")("Bob B." NIL "bob" "example.org")(NIL NIL NIL NIL)(NIL NIL "carol" "example.org")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL "@relay.example" "dave" "example.org")) NIL NIL)"#,
    );
    let summary = summary("group_addresses.eml");
    assert_eq!(
        summary.to,
        "alice@example.org, Bob B. <bob@example.org>, carol@example.org"
    );
}

#[test]
fn missing_content_type_defaults_to_text_plain_us_ascii() {
    check_body(
        "no_content_type.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2)"#,
    );
    check_body_structure(
        "no_content_type.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 20 2 NIL NIL NIL NIL)"#,
    );
}

#[test]
fn digest_parts_default_to_message_rfc822() {
    check_body(
        "digest.eml",
        r#"(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 51 (NIL "first" ((NIL NIL "one" "example.org")) ((NIL NIL "one" "example.org")) ((NIL NIL "one" "example.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 10 1) 4)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 53 (NIL "second" ((NIL NIL "two" "example.org")) ((NIL NIL "two" "example.org")) ((NIL NIL "two" "example.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 11 1) 4) "digest")"#,
    );
}

#[test]
fn missing_blank_line_keeps_the_body() {
    let summary = summary("missing_blank_line.eml");
    assert_eq!(summary.header_bytes, 51);
    assert_eq!(summary.subject, "no blank line");
    assert_eq!(summary.preview, "This line is body text. And so is this.");
    check_body(
        "missing_blank_line.eml",
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 42 2)"#,
    );
}

#[test]
fn search_fields() {
    let summary = summary("multipart_mixed_attachment.eml");
    assert_eq!(summary.base_subject, "compiler diff");
    assert_eq!(summary.in_reply_to, vec!["<960722.1@cac.washington.edu>"]);
    assert_eq!(
        summary.references,
        vec![
            "<960721.1@cac.washington.edu>",
            "<960722.1@cac.washington.edu>"
        ]
    );
    let sent = summary.sent.expect("Date parses");
    // 16:34:07 -0700 is 23:34:07 UTC on the same day.
    assert_eq!((sent.year, sent.month, sent.day), (1996, 7, 23));
    assert_eq!(sent.unix_seconds, 838_164_847);
    assert_eq!(summary.header_bytes, 411);
    assert!(!summary.headers_truncated);
    assert_eq!(summary.headers.len(), 9);
}

#[test]
fn previews() {
    assert_eq!(
        summary("multipart_alternative.eml").preview,
        "Shall we have lunch at the café?"
    );
    assert_eq!(summary("nested_rfc822.eml").preview, "See below.");
    assert_eq!(
        summary("rfc3501_simple.eml").preview,
        "The meeting was held on Monday. Minutes follow."
    );
}

#[test]
fn summary_survives_serde_round_trip() {
    let summary = summary("nested_rfc822.eml");
    let json = serde_json::to_string(&summary).expect("serialises");
    let back: Summary = serde_json::from_str(&json).expect("deserialises");
    assert_eq!(back, summary);
}

#[test]
fn extension_data_keeps_rfc2231_parameters_raw() {
    // Clients decode RFC 2231 themselves; names and values go out as sent.
    check_body_structure(
        "rfc2231_params.eml",
        r#"("application" "octet-stream" ("name*0*" "utf-8''%C3%A9t%C3%A9" "name*1" ".txt") NIL NIL "7BIT" 5 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("filename*" "utf-8''%C3%A9t%C3%A9.txt")) ("en" "de") "http://example.org/x")"#,
    );
}

#[test]
fn boundary_that_extends_the_outer_one_is_not_a_delimiter() {
    // Outer boundary "b", inner "b2": "--b2" lines must not end outer parts.
    check_body(
        "nested_boundary_prefix.eml",
        r#"((("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1) "alternative")("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1 1) "mixed")"#,
    );
}

#[test]
fn encoded_message_rfc822_is_an_opaque_attachment() {
    // RFC 2046 5.2.1 forbids encoding message/rfc822; we do not decode it,
    // and the message/rfc822 syntax needs an envelope we cannot give.
    check_body_structure(
        "encoded_rfc822.eml",
        r#"("APPLICATION" "OCTET-STREAM" NIL NIL NIL "base64" 30 NIL NIL NIL NIL)"#,
    );
}
