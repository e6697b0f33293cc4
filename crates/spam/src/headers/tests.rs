use super::*;

const ID: &str = "mx.example.com";

/// Strips with our authserv-id and returns the result as text.
fn strip(message: &str) -> String {
    String::from_utf8(strip_claimed(message.as_bytes(), ID).into_owned())
        .expect("UTF-8 in, UTF-8 out")
}

/// Checks that nothing is removed, and that no copy is made.
fn check_kept(message: &[u8]) {
    assert!(
        matches!(strip_claimed(message, ID), Cow::Borrowed(_)),
        "{:?}",
        String::from_utf8_lossy(message)
    );
}

#[test]
fn claimed_fields_are_removed_and_everything_else_kept() {
    let message = "Received: from a.example\r\n\
                   Authentication-Results: mx.example.com; spf=pass smtp.mailfrom=a.example\r\n\
                   Subject: hello\r\n\
                   X-Postern-Spam: score=-5.0; action=inbox; rules=none\r\n\
                   Authentication-Results: other.example; dkim=pass\r\n\
                   \r\n\
                   Authentication-Results: mx.example.com; in the body\r\n\
                   X-Postern-Spam: body too\r\n";
    assert_eq!(
        strip(message),
        "Received: from a.example\r\n\
         Subject: hello\r\n\
         Authentication-Results: other.example; dkim=pass\r\n\
         \r\n\
         Authentication-Results: mx.example.com; in the body\r\n\
         X-Postern-Spam: body too\r\n"
    );
}

#[test]
fn the_authserv_id_is_read_after_cfws_and_compared_without_case() {
    let removed = [
        "Authentication-Results: MX.Example.COM; spf=pass",
        "Authentication-Results:mx.example.com;spf=pass",
        "Authentication-Results: (ours) mx.example.com 1; spf=pass",
        "Authentication-Results: (nested (comment \\) here)) mx.example.com; x",
        "Authentication-Results: \"mx.example.com\"; spf=pass",
        "Authentication-Results: \"mx.exam\\ple.com\"; spf=pass",
        "authentication-results: mx.example.com",
        "AUTHENTICATION-RESULTS \t: mx.example.com; none",
        "Authentication-Results: mx.example.com(comment); none",
        "X-POSTERN-SPAM: anything at all",
        "x-postern-spam:",
    ];
    for field in removed {
        let message = format!("A: 1\r\n{field}\r\nB: 2\r\n\r\nbody");
        assert_eq!(strip(&message), "A: 1\r\nB: 2\r\n\r\nbody", "{field}");
    }
    let kept = [
        "Authentication-Results: other.example; spf=pass",
        "Authentication-Results: mx.example.com.evil; spf=pass",
        "Authentication-Results: evil.mx.example.com; spf=pass",
        "Authentication-Results: mx.example.co; spf=pass",
        "Authentication-Results: mx.example.com.; spf=pass",
        "Authentication-Results: (mx.example.com) other.example; spf=pass",
        "Authentication-Results: (unterminated mx.example.com; spf=pass",
        "Authentication-Results: \"mx.example.com; spf=pass",
        "Authentication-Results: ; mx.example.com",
        "Authentication-Results:",
        "Authentication-Results-Foo: mx.example.com",
        "X-Authentication-Results: mx.example.com",
        "X-Postern-Spammy: x",
        "X-Postern-Spa: x",
        "Authentication Results: mx.example.com",
        "Subject: Authentication-Results: mx.example.com",
    ];
    for field in kept {
        let message = format!("A: 1\r\n{field}\r\nB: 2\r\n\r\nbody");
        check_kept(message.as_bytes());
    }
}

#[test]
fn folded_fields_go_with_all_their_continuation_lines() {
    let message = "A: 1\r\n\
                   Authentication-Results:\r\n\
                   \tmx.example.com;\r\n\
                   \x20 spf=pass smtp.mailfrom=a.example;\r\n\
                   \x20 dkim=pass header.d=a.example\r\n\
                   X-Postern-Spam: score=1.0;\r\n\
                   \x20action=inbox\r\n\
                   B: 2\r\n\
                   \x20continued\r\n\
                   \r\n\
                   body\r\n";
    assert_eq!(strip(message), "A: 1\r\nB: 2\r\n continued\r\n\r\nbody\r\n");
    // The authserv-id on a continuation line after a comment.
    let message =
        "Authentication-Results: (a comment\r\n (that folds))\r\n mx.example.com; none\r\n\r\n";
    assert_eq!(strip(message), "\r\n");
}

#[test]
fn bare_lf_header_sections_work_the_same() {
    let message =
        "A: 1\nAuthentication-Results: mx.example.com;\n spf=pass\nB: 2\n\nX-Postern-Spam: body\n";
    assert_eq!(strip(message), "A: 1\nB: 2\n\nX-Postern-Spam: body\n");
    // Mixed line ends.
    let message = "A: 1\r\nX-Postern-Spam: x\nB: 2\n\r\nbody";
    assert_eq!(strip(message), "A: 1\r\nB: 2\n\r\nbody");
}

#[test]
fn a_message_without_an_empty_line_is_all_header() {
    let message = "A: 1\r\nnot a field line\r\nX-Postern-Spam: still header\r\nB: 2";
    assert_eq!(strip(message), "A: 1\r\nnot a field line\r\nB: 2");
    let message = "Authentication-Results: mx.example.com; spf=pass";
    assert_eq!(strip(message), "");
    assert_eq!(header_section_len(message.as_bytes()), message.len());
    // A bare CR does not end a line, so this is one field, and it is ours.
    let message = "X-Postern-Spam: a\rSubject: b\r\n\r\n";
    assert_eq!(strip(message), "\r\n");
}

#[test]
fn the_header_section_ends_at_the_first_empty_line() {
    for (message, expected) in [
        ("", 0),
        ("\r\n", 2),
        ("\n", 1),
        ("\r\nA: 1\r\n\r\n", 2),
        ("A: 1\r\n\r\nbody", 8),
        ("A: 1\n\nbody", 6),
        ("A: 1\r\n \r\nB: 2\r\n\r\n", 17),
        ("A: 1\r\n\r\r\n\r\n", 11),
        ("A: 1", 4),
        ("A: 1\r\n", 6),
    ] {
        assert_eq!(
            header_section_len(message.as_bytes()),
            expected,
            "{message:?}"
        );
    }
}

#[test]
fn nothing_to_remove_borrows() {
    for message in [
        &b""[..],
        b"\r\n",
        b"\r\n\r\nX-Postern-Spam: in the body",
        b"Subject: hi\r\n\r\nbody",
        b" orphan continuation\r\nSubject: x\r\n\r\n",
        b"\xff\xfe\x00: binary\r\n\x80\r\n\r\n\xff",
        b":\r\n::\r\n\r\n",
    ] {
        check_kept(message);
    }
}

#[test]
fn an_orphan_continuation_line_is_not_a_field() {
    let message = " X-Postern-Spam: not a field\r\nX-Postern-Spam: a field\r\n\r\n";
    assert_eq!(strip(message), " X-Postern-Spam: not a field\r\n\r\n");
}

#[test]
fn non_utf8_bytes_pass_through() {
    let message = b"Subject: \xff\xfe\r\nX-Postern-Spam: \x80\x81\r\n continued \xc3\r\nB: \x00\r\n\r\n\xff\xfe body \x00";
    let stripped = strip_claimed(message, ID);
    assert_eq!(
        &stripped[..],
        &b"Subject: \xff\xfe\r\nB: \x00\r\n\r\n\xff\xfe body \x00"[..]
    );
    // A UTF-8 authserv-id.
    let message = "Authentication-Results: mx.bücher.example; none\r\n\r\n";
    assert_eq!(
        &strip_claimed(message.as_bytes(), "MX.bücher.example")[..],
        b"\r\n"
    );
}

#[test]
fn an_empty_authserv_id_claims_nothing() {
    let message =
        b"Authentication-Results: ; none\r\nAuthentication-Results: x\r\nX-Postern-Spam: y\r\n\r\n";
    assert_eq!(
        &strip_claimed(message, "")[..],
        b"Authentication-Results: ; none\r\nAuthentication-Results: x\r\n\r\n"
    );
    assert_eq!(
        &strip_claimed(message, "  ")[..],
        b"Authentication-Results: ; none\r\nAuthentication-Results: x\r\n\r\n"
    );
}

#[test]
fn huge_and_hostile_headers_are_handled_in_one_pass() {
    // 100,000 claimed fields, a field of 200,000 continuation lines, and a
    // comment nested 100,000 deep: linear, no recursion.
    let mut message = "X-Postern-Spam: x\r\n".repeat(100_000);
    message.push_str("Subject: long\r\n");
    message.push_str(&" more\r\n".repeat(200_000));
    message.push_str("Authentication-Results: ");
    message.push_str(&"(".repeat(100_000));
    message.push_str(&")".repeat(100_000));
    message.push_str(" mx.example.com; none\r\n\r\nbody");
    let stripped = strip_claimed(message.as_bytes(), ID);
    let expected_len = "Subject: long\r\n".len() + 200_000 * " more\r\n".len() + "\r\nbody".len();
    assert_eq!(stripped.len(), expected_len);
    assert!(stripped.ends_with(b" more\r\n\r\nbody"));
}

#[test]
fn fields_fold_at_whitespace() {
    assert_eq!(
        field("X-Postern-Spam", "score=1.0; action=inbox; rules=none"),
        "X-Postern-Spam: score=1.0; action=inbox; rules=none\r\n"
    );
    let value = "mx.example.com; spf=pass smtp.mailfrom=sender.example; dkim=pass \
                 header.d=sender.example header.s=selector1; dmarc=pass header.from=sender.example";
    let folded = field("Authentication-Results", value);
    assert!(folded.ends_with("\r\n"));
    let lines: Vec<&str> = folded.trim_end_matches("\r\n").split("\r\n").collect();
    assert!(lines.len() > 1, "{folded}");
    for (index, line) in lines.iter().enumerate() {
        assert!(line.len() <= LINE_BYTES_MAX, "{line}");
        assert_eq!(index > 0, line.starts_with(' '), "{line}");
    }
    // Unfolding gives back the value.
    let unfolded = folded.trim_end_matches("\r\n").replace("\r\n", "");
    assert_eq!(unfolded, format!("Authentication-Results: {value}"));
}

#[test]
fn long_words_get_a_line_of_their_own_and_nothing_injects_a_field() {
    let long = "x".repeat(100);
    let folded = field("X-Postern-Spam", &format!("{long} a {long}"));
    assert_eq!(
        folded,
        format!("X-Postern-Spam: {long}\r\n a\r\n {long}\r\n")
    );
    let injected = field("X-Test", "ok\r\nBcc: victim@example.com\n\tx\u{0}y\u{85}z");
    assert_eq!(injected, "X-Test: ok Bcc: victim@example.com x y z\r\n");
    assert_eq!(field("X-Test", ""), "X-Test:\r\n");
    assert_eq!(field("X-Test", " \r\n\t "), "X-Test:\r\n");
    assert_eq!(field("Bad Name:\r\n", "v"), "Bad_Name___: v\r\n");
    assert_eq!(field("", "v"), "_: v\r\n");
    assert_eq!(field("X-Ü", "v"), "X-_: v\r\n");
    let unicode = field("X-Test", &"grüße ".repeat(40));
    for line in unicode.trim_end_matches("\r\n").split("\r\n") {
        assert!(line.len() <= LINE_BYTES_MAX, "{line}");
    }
}
