//! BODY[section], BINARY[section] and search text of the `.eml` files under
//! `tests/data`. One helper per feature.

mod common;

use postern_mime::{BinaryError, SectionKind, binary, body_text, section};

#[track_caller]
fn check_section(eml: &str, part: &[u32], kind: SectionKind<'_>, expected: Option<&str>) {
    let raw = common::load(eml);
    let got = section(&raw, part, kind);
    assert_eq!(
        got.as_deref().map(String::from_utf8_lossy),
        expected.map(Into::into),
        "BODY[{part:?} {kind:?}] of {eml}"
    );
}

#[track_caller]
fn check_binary(eml: &str, part: &[u32], expected: Result<&[u8], BinaryError>) {
    let raw = common::load(eml);
    let expected = expected.map(<[u8]>::to_vec);
    assert_eq!(binary(&raw, part), expected, "BINARY[{part:?}] of {eml}");
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

#[test]
fn top_level_sections() {
    let eml = "rfc3501_simple.eml";
    let raw = common::load(eml);
    assert_eq!(
        section(&raw, &[], SectionKind::Full).as_deref(),
        Some(&raw[..])
    );
    let body = "The meeting was held on Monday.\r\nMinutes follow.\r\n";
    check_section(eml, &[], SectionKind::Text, Some(body));
    let header = section(&raw, &[], SectionKind::Header).expect("header");
    assert_eq!(header.len(), 342);
    assert!(header.ends_with(b"CHARSET=US-ASCII\r\n\r\n"));
    // A non-multipart message has one part: its body.
    check_section(eml, &[1], SectionKind::Full, Some(body));
    check_section(eml, &[2], SectionKind::Full, None);
    check_section(eml, &[1, 1], SectionKind::Full, None);
    // MIME names a part's header; the top level has HEADER instead.
    check_section(eml, &[], SectionKind::Mime, None);
    check_section(eml, &[1], SectionKind::Header, None);
}

#[test]
fn header_fields_keep_raw_folded_lines() {
    let wanted = names(&["subject", "FROM", "X-Absent"]);
    check_section(
        "rfc3501_simple.eml",
        &[],
        SectionKind::HeaderFields {
            names: &wanted,
            not: false,
        },
        Some(
            "From: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev1 WG mtg summary and minutes\r\n\r\n",
        ),
    );
    let unwanted = names(&["Date", "From", "Subject", "To", "cc", "Message-Id"]);
    check_section(
        "rfc3501_simple.eml",
        &[],
        SectionKind::HeaderFields {
            names: &unwanted,
            not: true,
        },
        Some("MIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"),
    );
    // Folded lines stay folded, bare LF stays bare.
    let subject = names(&["Subject"]);
    check_section(
        "bare_lf.eml",
        &[],
        SectionKind::HeaderFields {
            names: &subject,
            not: false,
        },
        Some("Subject: bare\n LF folded\n\r\n"),
    );
    let none = names(&["X-Nothing"]);
    check_section(
        "bare_lf.eml",
        &[],
        SectionKind::HeaderFields {
            names: &none,
            not: false,
        },
        Some("\r\n"),
    );
}

#[test]
fn multipart_parts_and_mime_headers() {
    let eml = "multipart_mixed_attachment.eml";
    check_section(eml, &[1], SectionKind::Full, Some("Here is the diff."));
    check_section(
        eml,
        &[2],
        SectionKind::Full,
        Some("ZGlmZiAtLWdpdCBhL2NjLmMgYi9jYy5jCg=="),
    );
    check_section(
        eml,
        &[1],
        SectionKind::Mime,
        Some("Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n"),
    );
    check_section(eml, &[2, 1], SectionKind::Full, None);
    check_section(eml, &[3], SectionKind::Full, None);
    check_section(eml, &[0], SectionKind::Full, None);
    // HEADER and TEXT of a part exist only for message/rfc822 parts.
    check_section(eml, &[1], SectionKind::Header, None);
    check_section(eml, &[1], SectionKind::Text, None);
}

#[test]
fn encapsulated_message_sections() {
    let eml = "nested_rfc822.eml";
    let raw = common::load(eml);
    let whole = section(&raw, &[2], SectionKind::Full).expect("part 2");
    assert_eq!(whole.len(), 318);
    assert!(whole.starts_with(b"From: Original Sender"));
    check_section(
        eml,
        &[2],
        SectionKind::Mime,
        Some("Content-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"),
    );
    let header = section(&raw, &[2], SectionKind::Header).expect("2.HEADER");
    assert!(
        header.starts_with(b"From: Original Sender") && header.ends_with(b"boundary=inner\r\n\r\n")
    );
    let text = section(&raw, &[2], SectionKind::Text).expect("2.TEXT");
    assert!(text.starts_with(b"--inner\r\n") && text.ends_with(b"--inner--\r\n"));
    assert_eq!(header.len() + text.len(), whole.len());
    check_section(eml, &[2, 1], SectionKind::Full, Some("hello"));
    check_section(eml, &[2, 2], SectionKind::Full, Some("<p>hello</p>"));
    check_section(
        eml,
        &[2, 2],
        SectionKind::Mime,
        Some("Content-Type: text/html\r\n\r\n"),
    );
    check_section(eml, &[2, 3], SectionKind::Full, None);
    let subject = names(&["Subject"]);
    check_section(
        eml,
        &[2],
        SectionKind::HeaderFields {
            names: &subject,
            not: false,
        },
        Some("Subject: original\r\n\r\n"),
    );
}

#[test]
fn binary_removes_transfer_encoding() {
    check_binary(
        "multipart_mixed_attachment.eml",
        &[2],
        Ok(b"diff --git a/cc.c b/cc.c\n"),
    );
    check_binary(
        "multipart_mixed_attachment.eml",
        &[1],
        Ok(b"Here is the diff."),
    );
    check_binary(
        "multipart_alternative.eml",
        &[1],
        Ok("Shall we have lunch at the café?".as_bytes()),
    );
    check_binary(
        "multipart_alternative.eml",
        &[5],
        Err(BinaryError::NoSuchPart),
    );
    let raw = common::load("no_content_type.eml");
    assert_eq!(binary(&raw, &[]).as_deref(), Ok(&raw[..]));
    let unknown = b"Content-Transfer-Encoding: X-UUEncode\r\n\r\nbegin 644 x\r\n";
    assert_eq!(
        binary(unknown, &[1]),
        Err(BinaryError::UnknownTransferEncoding(
            "x-uuencode".to_string()
        ))
    );
}

#[test]
fn body_text_decodes_text_parts_and_strips_html() {
    let raw = common::load("multipart_alternative.eml");
    let text = body_text(&raw, 1 << 20);
    assert!(
        text.starts_with("Shall we have lunch at the café?\n"),
        "{text:?}"
    );
    assert!(text.contains("lunch"), "{text:?}");
    assert!(!text.contains('<') && !text.contains("p{}"), "{text:?}");
    // Nested messages are searched too; attachments that are not text are not.
    let text = body_text(&common::load("nested_rfc822.eml"), 1 << 20);
    // (HTML-to-text ends a closed paragraph with a line break.)
    assert_eq!(text, "See below.\nhello\nhello\n");
    // The bound holds, on a character boundary.
    let text = body_text(&raw, 31);
    assert_eq!(text, "Shall we have lunch at the caf");
    assert_eq!(body_text(&raw, 0), "");
}
