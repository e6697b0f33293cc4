//! Hostile and degenerate messages: each must give a best-effort answer
//! quickly. Release builds take milliseconds; the time bounds here are loose
//! enough for unoptimised debug builds on a slow CI machine while still
//! catching quadratic behaviour (which would take minutes).

use std::time::{Duration, Instant};

use postern_mime::{Limits, SectionKind, binary, body_text, section, summarize};

/// Generous bound for one operation in a debug build.
const DEBUG_BUDGET: Duration = Duration::from_secs(5);

#[track_caller]
fn timed<T>(what: &str, run: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let result = run();
    let elapsed = start.elapsed();
    assert!(elapsed < DEBUG_BUDGET, "{what} took {elapsed:?}");
    result
}

/// Runs every entry point over `raw` within the time budget.
fn run_all(what: &str, raw: &[u8]) -> postern_mime::Summary {
    let summary = timed(what, || summarize(raw, &Limits::default()));
    timed(what, || section(raw, &[], SectionKind::Header));
    timed(what, || section(raw, &[1], SectionKind::Full));
    let names = vec!["Subject".to_string()];
    timed(what, || {
        section(
            raw,
            &[],
            SectionKind::HeaderFields {
                names: &names,
                not: false,
            },
        )
    });
    let _ = timed(what, || binary(raw, &[1]));
    timed(what, || body_text(raw, 1 << 20));
    summary
}

#[test]
fn fifty_thousand_header_fields_with_encoded_words_in_received() {
    // The incident: encoded words inside Received fields, many of them.
    let mut raw = Vec::new();
    for index in 0..50_000 {
        raw.extend_from_slice(
            format!("Received: from h{index} (=?UTF-8?B?w7xiZXI=?=) by mx; Mon, 5 Feb 2024 10:00:00 +0000\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Subject: after the flood\r\nFrom: a@b.example\r\n\r\nbody\r\n");
    let summary = run_all("50,000 fields", &raw);
    assert_eq!(summary.subject, "after the flood");
    assert_eq!(summary.from, "a@b.example");
    assert!(summary.envelope.contains("\"after the flood\""));
    assert!(summary.headers_truncated);
    assert_eq!(summary.headers.len(), Limits::default().header_fields_max);
    assert!(summary.headers[0].1.contains("über"));
}

#[test]
fn two_megabyte_header_lines() {
    let long = "word ".repeat(400_000);
    let addresses = (0..100_000)
        .map(|index| format!("u{index}@h.example"))
        .collect::<Vec<_>>()
        .join(", ");
    let raw = format!(
        "Subject: {long}\r\nTo: {addresses}\r\nX-Long: {long}\r\nFrom: a@b.example\r\n\r\nbody\r\n"
    );
    assert!(raw.len() > 4_000_000);
    let summary = run_all("2 MB lines", raw.as_bytes());
    // Too long for a quoted string: a literal.
    assert!(
        summary
            .envelope
            .contains(&format!("{{{}}}\r\n", long.trim_end().len()))
    );
    assert!(summary.to.starts_with("u0@h.example, u1@h.example"));
    assert_eq!(summary.from, "a@b.example");
    // The 2 MB values exceed the 256 KiB budget for cached header values.
    assert!(summary.headers_truncated);
    assert!(summary.headers.is_empty());
}

#[test]
fn header_without_any_line_break() {
    let raw = format!("Subject: {}", "x".repeat(3_000_000));
    let summary = run_all("no line break", raw.as_bytes());
    assert_eq!(summary.subject.len(), 3_000_000);
    assert_eq!(summary.header_bytes, raw.len() as u64);
}

#[test]
fn many_parts_whose_boundaries_never_come() {
    // 20,000 parts each declaring a multipart boundary that never appears:
    // quadratic in parsers that rescan for each (7.5 s in mail-parser 0.11
    // in release for this message).
    let mut raw = String::from("Content-Type: multipart/mixed; boundary=a\r\n\r\n");
    for index in 0..20_000 {
        raw.push_str(&format!(
            "--a\r\nContent-Type: multipart/mixed; boundary=x{index}\r\n\r\nbody\r\n"
        ));
    }
    raw.push_str("--a--\r\n");
    let summary = run_all("missing boundaries", raw.as_bytes());
    // Only mime_parts_max entities are described.
    let parts = summary
        .body_structure
        .matches("(\"TEXT\" \"PLAIN\"")
        .count();
    assert_eq!(parts, Limits::default().mime_parts_max - 1);
}

#[test]
fn deep_nesting_is_bounded() {
    let mut raw = Vec::new();
    for index in 0..5_000 {
        if index % 2 == 0 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        } else {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{index}\r\n\r\n--b{index}\r\n")
                    .as_bytes(),
            );
        }
    }
    raw.extend_from_slice(b"\r\ninnermost\r\n");
    let summary = run_all("deep nesting", &raw);
    let depth = summary.body_structure.matches('(').count();
    assert!(depth < 2_000, "{depth}");
    // Deep part numbers resolve as far as the tree was described.
    let path = [1; 16];
    assert!(section(&raw, &path, SectionKind::Full).is_some());
    assert!(section(&raw, &[1; 100], SectionKind::Full).is_none());
}

#[test]
fn subject_of_a_megabyte_of_blobs() {
    let raw = format!("Subject: {}end\r\n\r\n", "[x] Re: ".repeat(150_000));
    let summary = run_all("blob subject", raw.as_bytes());
    assert_eq!(summary.base_subject, "end");
}

#[test]
fn empty_and_tiny_inputs() {
    for raw in [
        &b""[..],
        b"\r\n",
        b"\n",
        b":",
        b"\r",
        b"--",
        b"\0",
        b"From: \r\n\r\n",
    ] {
        let summary = run_all("tiny", raw);
        assert!(summary.envelope.starts_with('(') && summary.envelope.ends_with(')'));
        assert!(summary.body_structure.starts_with("(\"TEXT\" \"PLAIN\""));
    }
}

/// tests/e2e/BUGS.md 12: SEARCH BODY missed text in the parts past the 1,000
/// the cache describes, and in encapsulated messages past the depth limit or
/// with a transfer encoding. The description stays bounded; SEARCH reads all.
#[test]
fn search_text_reaches_past_the_description_limits() {
    let mut many = String::from("Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for index in 0..5_000 {
        many.push_str(&format!(
            "--p\r\nContent-Type: text/plain\r\n\r\npart {index}\r\n"
        ));
    }
    many.push_str("--p--\r\n");
    let summary = run_all("5,000 parts", many.as_bytes());
    let described = summary
        .body_structure
        .matches("(\"text\" \"plain\"")
        .count();
    assert_eq!(described, Limits::default().mime_parts_max - 1);
    let text = body_text(many.as_bytes(), 1 << 20);
    assert!(text.starts_with("part 0\npart 1\n"), "{:?}", &text[..40]);
    assert!(
        text.ends_with("part 4998\npart 4999"),
        "{:?}",
        &text[text.len() - 40..]
    );
    // The bound on the text still holds.
    assert_eq!(body_text(many.as_bytes(), 13), "part 0\npart 1");

    let mut deep = String::from("Subject: level 0\r\n");
    for level in 1..=300 {
        deep.push_str(&format!(
            "Content-Type: message/rfc822\r\n\r\nSubject: level {level}\r\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\r\n\r\ninnermost\r\n");
    run_all("300 encapsulated levels", deep.as_bytes());
    assert!(body_text(deep.as_bytes(), 1 << 20).contains("innermost"));

    // An encoded message/rfc822 (RFC 2046 5.2.1 forbids it, senders do it).
    let encoded = b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
        U3ViamVjdDogaGkNCg0KYm9keQ0K\r\n";
    assert_eq!(body_text(encoded, 1 << 20), "Subject: hi\r\n\r\nbody\r\n");
    // Other opaque parts are still not text.
    let image = b"Content-Type: image/png\r\n\r\nnot text\r\n";
    assert_eq!(body_text(image, 1 << 20), "");
}
