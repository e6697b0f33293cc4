//! The SMTP mode of the session: what differs from LMTP, and every hygiene
//! rule an MX needs (issue 5, item 2), as transcripts.

use super::*;

fn smtp_config() -> LmtpConfig {
    LmtpConfig {
        protocol: Protocol::Smtp,
        local_domains: vec!["example.org".to_string()],
        errors_max: 10,
        ..config()
    }
}

fn smtp_session() -> Session {
    session_with(smtp_config())
}

/// Runs `input` after `EHLO` in one piece and then a byte at a time (a read
/// may end anywhere); both must give the same replies and deliveries.
/// Returns the replies after the EHLO reply, and the target.
fn check_smtp(config: LmtpConfig, input: &[u8]) -> (Vec<String>, FakeTarget) {
    let mut results = Vec::new();
    for piece_bytes in [input.len().max(1), 1] {
        let mut session = session_with(config.clone());
        let mut target = FakeTarget::default();
        drive(&mut session, &mut target, b"EHLO client.example.net\r\n");
        let mut output = String::new();
        for piece in input.chunks(piece_bytes) {
            output += &drive(&mut session, &mut target, piece);
        }
        let replies: Vec<String> = output.lines().map(str::to_string).collect();
        results.push((replies, target));
    }
    let (byte_replies, byte_target) = results.pop().unwrap();
    let (replies, target) = results.pop().unwrap();
    // Message ids differ from run to run; everything else must not.
    let without_ids = |replies: &[String]| -> Vec<String> {
        replies
            .iter()
            .map(|reply| match reply.strip_suffix(" message accepted") {
                Some(_) => "250 accepted".to_string(),
                None => reply.clone(),
            })
            .collect()
    };
    assert_eq!(
        without_ids(&replies),
        without_ids(&byte_replies),
        "one piece vs byte at a time"
    );
    let bodies = |target: &FakeTarget| -> Vec<(Vec<u8>, Vec<UserName>)> {
        target
            .deliveries
            .iter()
            .map(|(message, users)| (body_after_trace(message).to_vec(), users.clone()))
            .collect()
    };
    assert_eq!(bodies(&target), bodies(&byte_target));
    (replies, target)
}

const ENVELOPE: &[u8] =
    b"MAIL FROM:<sender@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n";

#[test]
fn greeting_and_ehlo_keywords() {
    let mut session = smtp_session();
    session.greet();
    let output = drive(
        &mut session,
        &mut FakeTarget::default(),
        b"EHLO client.example.net\r\n",
    );
    assert_eq!(
        output,
        "220 mx.example.org ESMTP Postern ready\r\n\
         250-mx.example.org\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
         250-SIZE 67108864\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n"
    );
    let mut session = smtp_session();
    session.offer_tls();
    let output = drive(
        &mut session,
        &mut FakeTarget::default(),
        b"EHLO c\r\nHELO c\r\n",
    );
    assert!(output.contains("250-STARTTLS\r\n"), "{output}");
    assert!(output.ends_with("250 mx.example.org\r\n"), "{output}");
}

#[test]
fn lhlo_is_refused_in_smtp() {
    let mut session = smtp_session();
    let output = drive(
        &mut session,
        &mut FakeTarget::default(),
        b"LHLO c\r\nMAIL FROM:<>\r\n",
    );
    assert_eq!(
        output,
        "500 5.5.1 use EHLO or HELO\r\n503 5.5.1 send EHLO first\r\n"
    );
}

#[test]
fn one_reply_per_message_and_esmtp_trace() {
    let input = [
        b"MAIL FROM:<sender@example.net> SMTPUTF8\r\nRCPT TO:<alice@example.org>\r\n\
          RCPT TO:<team@example.org>\r\nDATA\r\n"
            .as_slice(),
        b"Subject: hi\r\n\r\n..dot\r\n.\r\nNOOP\r\n",
    ]
    .concat();
    let (replies, target) = check_smtp(smtp_config(), &input);
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert!(replies[4].starts_with("250 2.0.0 ") && replies[4].ends_with(" message accepted"));
    assert_eq!(replies[5], "250 2.0.0 ok");
    let (message, users) = &target.deliveries[0];
    assert_eq!(users, &["alice", "bob"]);
    let text = String::from_utf8_lossy(message);
    assert!(text.starts_with(
        "Return-Path: <sender@example.net>\r\nReceived: from client.example.net (127.0.0.1)\r\n\
         \tby mx.example.org (Postern) with ESMTP id "
    ));
    assert_eq!(body_after_trace(message), b"Subject: hi\r\n\r\n.dot\r\n");
}

#[test]
fn relaying_denied_and_unknown_users() {
    let (replies, _) = check_smtp(
        smtp_config(),
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.com>\r\n\
          RCPT TO:<alice@example.org.evil.net>\r\nRCPT TO:<stranger@example.org>\r\n\
          RCPT TO:<postmaster>\r\nRCPT TO:<alice@example.org.>\r\n",
    );
    assert_eq!(
        replies[1..],
        [
            "550 5.7.1 <alice@example.com> relaying denied",
            "550 5.7.1 <alice@example.org.evil.net> relaying denied",
            "550 5.1.1 <stranger@example.org> user unknown",
            "250 2.1.5 <postmaster> ok",
            "550 5.1.1 <alice@example.org.> user unknown",
        ]
    );
}

#[test]
fn size_declared_and_actual() {
    let config = LmtpConfig {
        message_bytes_max: 10,
        ..smtp_config()
    };
    let (replies, _) = check_smtp(config.clone(), b"MAIL FROM:<s@example.net> SIZE=11\r\n");
    assert_eq!(
        replies,
        ["552 5.3.4 message size exceeds fixed maximum message size"]
    );
    let input = [ENVELOPE, b"0123456789A\r\n.\r\nNOOP\r\n"].concat();
    let (replies, target) = check_smtp(config, &input);
    assert_eq!(replies[3..], ["552 5.3.4 message too big", "250 2.0.0 ok"]);
    assert!(target.deliveries.is_empty());
}

#[test]
fn bare_cr_or_lf_in_a_command_is_refused() {
    let (replies, _) = check_smtp(
        smtp_config(),
        b"NOOP\nNOOP\rNOOP\r\nMAIL FROM:<a@example.net>\rRCPT TO:<alice@example.org>\r\nNOOP\r\n",
    );
    assert_eq!(
        replies,
        [
            "500 5.5.2 bare CR or LF in command line",
            "500 5.5.2 bare CR or LF in command line",
            "500 5.5.2 bare CR or LF in command line",
            "250 2.0.0 ok",
        ]
    );
}

/// SMTP smuggling (CVE-2023-51766 class): whatever the separator, the
/// message with it is refused whole and nothing after it runs as commands
/// until the real `<CRLF>.<CRLF>`; no message is delivered at all.
#[test]
fn smuggling_separators_refuse_the_message() {
    let smuggled: &[u8] = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\n\
        DATA\r\nSubject: smuggled\r\n\r\nevil\r\n";
    for separator in [
        b"\n.\n".as_slice(),
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r.\r",
        b"\r.\r\n",
        b"\r\n.\r",
    ] {
        let input = [
            ENVELOPE,
            b"Subject: carrier\r\n\r\nhello",
            separator,
            smuggled,
            b".\r\nNOOP\r\n",
        ]
        .concat();
        let (replies, target) = check_smtp(smtp_config(), &input);
        assert_eq!(
            replies[3..],
            [
                "550 5.6.0 message refused: bare CR or LF (lines must end in CRLF, RFC 5321 2.3.8)",
                "250 2.0.0 ok",
            ],
            "{separator:?}"
        );
        assert!(target.deliveries.is_empty(), "{separator:?}");
    }
}

#[test]
fn starttls_drops_pipelined_input_and_starts_over() {
    let mut session = smtp_session();
    session.offer_tls();
    let mut target = FakeTarget::default();
    drive(&mut session, &mut target, b"EHLO c\r\n");
    session.receive(b"STARTTLS\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\n");
    assert_eq!(session.poll(), Event::StartTls);
    assert_eq!(session.take_output(), b"220 2.0.0 ready to start TLS\r\n");
    session.tls_started();
    // Nothing of what followed STARTTLS is left to run.
    assert_eq!(session.poll(), Event::NeedInput);
    assert!(session.take_output().is_empty());
    let output = drive(
        &mut session,
        &mut target,
        b"MAIL FROM:<a@example.net>\r\nEHLO c\r\nSTARTTLS\r\n",
    );
    assert!(
        output.starts_with("503 5.5.1 send EHLO first\r\n250-mx.example.org\r\n"),
        "{output}"
    );
    assert!(!output.contains("STARTTLS\r\n250"), "{output}");
    assert!(
        output.ends_with("502 5.5.1 STARTTLS not available\r\n"),
        "{output}"
    );
    let input = [ENVELOPE, b"x\r\n.\r\n"].concat();
    drive(&mut session, &mut target, &input);
    assert!(String::from_utf8_lossy(&target.deliveries[0].0).contains("with ESMTPS id"));
}

#[test]
fn starttls_without_tls_is_refused() {
    let (replies, _) = check_smtp(smtp_config(), b"STARTTLS\r\nNOOP\r\n");
    assert_eq!(
        replies,
        ["502 5.5.1 STARTTLS not available", "250 2.0.0 ok"]
    );
}

#[test]
fn garbage_commands_end_the_session_at_the_error_bound() {
    let config = LmtpConfig {
        errors_max: 3,
        ..smtp_config()
    };
    let mut session = session_with(config);
    let output = drive(
        &mut session,
        &mut FakeTarget::default(),
        b"XYZZY\r\nNOOP\r\nPLUGH\r\nFOO\r\nNOOP\r\n",
    );
    assert_eq!(
        output,
        "500 5.5.2 command not recognized\r\n250 2.0.0 ok\r\n\
         500 5.5.2 command not recognized\r\n500 5.5.2 command not recognized\r\n\
         421 4.7.0 mx.example.org too many errors, closing connection\r\n"
    );
    assert!(session.is_closed());
}

#[test]
fn unknown_recipients_count_as_errors() {
    let config = LmtpConfig {
        errors_max: 2,
        ..smtp_config()
    };
    let (replies, _) = check_smtp(
        config,
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@example.org>\r\nNOOP\r\n",
    );
    assert_eq!(
        replies.last().unwrap(),
        "421 4.7.0 mx.example.org too many errors, closing connection"
    );
}

#[test]
fn delivery_failures_give_one_reply() {
    let transcript = |rcpts: &[&str]| {
        let mut input = b"MAIL FROM:<s@example.net>\r\n".to_vec();
        for rcpt in rcpts {
            input.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
        }
        input.extend_from_slice(b"DATA\r\nx\r\n.\r\n");
        let (replies, _) = check_smtp(smtp_config(), &input);
        replies.last().unwrap().clone()
    };
    // A temporary failure for one user: the sender retries the whole message.
    let reply = transcript(&["alice@example.org", "broken@example.org"]);
    assert_eq!(reply, "451 4.3.0 disk??error; try again later");
    let reply = transcript(&["full@example.org"]);
    assert_eq!(reply, "452 4.2.2 mailbox full; try again later");
    // Policy refusals keep the target's enhanced status code.
    let reply = transcript(&["spamtrap@example.org"]);
    assert_eq!(reply, "550 5.7.1 message refused as spam");
    let reply = transcript(&["dnsfail@example.org"]);
    assert_eq!(
        reply,
        "451 4.4.3 cannot check the sender now; try again later"
    );
    // A temporary refusal wins over a permanent one: the sender retries.
    let reply = transcript(&["spamtrap@example.org", "dnsfail@example.org"]);
    assert!(reply.starts_with("451 4.4.3 "), "{reply}");
    let permanent = LmtpConfig {
        over_quota_permanent: true,
        ..smtp_config()
    };
    let (replies, _) = check_smtp(
        permanent.clone(),
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<full@example.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert_eq!(replies.last().unwrap(), "552 5.2.2 mailbox full");
    // Some users have it and the rest failed for good: 250, or the sender
    // would report a delivered message as undelivered.
    let (replies, _) = check_smtp(
        permanent,
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<full@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\nx\r\n.\r\n",
    );
    assert!(
        replies.last().unwrap().ends_with(" message accepted"),
        "{replies:?}"
    );
}

#[test]
fn early_talker_reply() {
    let mut session = smtp_session();
    session.early_talker();
    assert_eq!(
        session.take_output(),
        b"554 5.5.0 mx.example.org protocol error: you talked before my greeting\r\n"
    );
    assert!(session.is_closed());
}

const BDAT_ENVELOPE: &[u8] = b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\n";

#[test]
fn bdat_chunks_are_stored_as_sent() {
    // No dot-unstuffing and no end marker in BDAT: the sizes frame the data.
    let input = [
        BDAT_ENVELOPE,
        b"BDAT 5\r\nab\r\n.BDAT 4 LAST\r\n.c\r\nNOOP\r\n",
    ]
    .concat();
    let (replies, target) = check_smtp(smtp_config(), &input);
    assert_eq!(replies[2], "250 2.0.0 5 octets received");
    assert!(replies[3].ends_with(" message accepted"), "{replies:?}");
    assert_eq!(replies[4], "250 2.0.0 ok");
    assert_eq!(body_after_trace(&target.deliveries[0].0), b"ab\r\n..c\r\n");
    let input = [BDAT_ENVELOPE, b"BDAT 0 LAST\r\n"].concat();
    let (_, target) = check_smtp(smtp_config(), &input);
    assert_eq!(body_after_trace(&target.deliveries[0].0), b"");
}

#[test]
fn bdat_bodies_with_a_bare_line_end_are_refused() {
    // A CRLF split over two chunks is a line end; a lone LF or CR is not.
    let input = [BDAT_ENVELOPE, b"BDAT 3\r\nab\rBDAT 3 LAST\r\n\ncd"].concat();
    let (replies, target) = check_smtp(smtp_config(), &input);
    assert!(replies[3].ends_with(" message accepted"), "{replies:?}");
    assert_eq!(body_after_trace(&target.deliveries[0].0), b"ab\r\ncd");
    let input = [BDAT_ENVELOPE, b"BDAT 3\r\nab\nBDAT 2 LAST\r\ncd"].concat();
    let (replies, target) = check_smtp(smtp_config(), &input);
    assert!(replies[3].starts_with("550 5.6.0 "), "{replies:?}");
    assert!(target.deliveries.is_empty());
    let input = [BDAT_ENVELOPE, b"BDAT 4\r\nab\r\nBDAT 2 LAST\r\ncd"].concat();
    let (replies, target) = check_smtp(smtp_config(), &input);
    assert!(replies[3].ends_with(" message accepted"), "{replies:?}");
    assert_eq!(body_after_trace(&target.deliveries[0].0), b"ab\r\ncd");
    for body in [&b"a\nb"[..], b"a\rb", b"\n", b"ab\r"] {
        let input = [
            BDAT_ENVELOPE,
            format!("BDAT {} LAST\r\n", body.len()).as_bytes(),
            body,
        ]
        .concat();
        let (replies, target) = check_smtp(smtp_config(), &input);
        assert!(
            replies[2].starts_with("550 5.6.0 "),
            "{body:?}: {replies:?}"
        );
        assert!(target.deliveries.is_empty());
    }
}

#[test]
fn refused_bdat_chunks_are_skipped() {
    let (replies, target) = check_smtp(smtp_config(), b"BDAT 6 LAST\r\nNOOP\r\nNOOP\r\n");
    assert_eq!(
        replies,
        ["503 5.5.1 need MAIL command first", "250 2.0.0 ok"]
    );
    assert!(target.deliveries.is_empty());
    let input = [BDAT_ENVELOPE, b"BDAT 1\r\nxDATA\r\n"].concat();
    let (replies, _) = check_smtp(smtp_config(), &input);
    assert_eq!(replies[3], "503 5.5.1 DATA after BDAT in one transaction");
}

#[test]
fn bdat_over_the_size_bound() {
    let config = LmtpConfig {
        message_bytes_max: 10,
        ..smtp_config()
    };
    let input = [
        BDAT_ENVELOPE,
        b"BDAT 6\r\n012345BDAT 6\r\n6789ABBDAT 1 LAST\r\nxNOOP\r\n",
    ]
    .concat();
    let (replies, target) = check_smtp(config, &input);
    assert_eq!(
        replies[2..],
        [
            "250 2.0.0 6 octets received",
            "552 5.3.4 message too big",
            "503 5.5.1 need MAIL command first",
            "250 2.0.0 ok",
        ]
    );
    assert!(target.deliveries.is_empty());
}

#[test]
fn temporary_replies_do_not_count_as_errors() {
    let config = LmtpConfig {
        errors_max: 2,
        recipients_max: 2,
        ..smtp_config()
    };
    let (replies, _) = check_smtp(
        config,
        b"MAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\n\
          RCPT TO:<tempfail@example.org>\r\nRCPT TO:<bob@example.org>\r\n\
          RCPT TO:<bob@example.org>\r\nRCPT TO:<bob@example.org>\r\nNOOP\r\n",
    );
    assert_eq!(
        replies[2..],
        [
            "451 4.3.0 <tempfail@example.org> directory offline",
            "250 2.1.5 <bob@example.org> ok",
            "452 4.5.3 too many recipients",
            "452 4.5.3 too many recipients",
            "250 2.0.0 ok",
        ]
    );
}

#[test]
fn helo_offers_no_extensions() {
    let mut session = smtp_session();
    let output = drive(
        &mut session,
        &mut FakeTarget::default(),
        b"HELO c\r\nMAIL FROM:<s@example.net> BODY=8BITMIME\r\nMAIL FROM:<s@example.net> SIZE=10\r\n\
          MAIL FROM:<s@example.net>\r\n",
    );
    assert_eq!(
        output,
        "250 mx.example.org\r\n555 5.5.4 parameter not supported\r\n\
         555 5.5.4 parameter not supported\r\n250 2.1.0 <s@example.net> sender ok\r\n"
    );
}

#[test]
fn mail_and_rcpt_ask_the_target_first() {
    let (replies, target) = check_smtp(
        smtp_config(),
        b"MAIL FROM:<x@blocked.example>\r\nMAIL FROM:<slow@example.net>\r\n\
MAIL FROM:<s@example.net>\r\nRCPT TO:<busy@example.org>\r\nRCPT TO:<alice@example.org>\r\n\
DATA\r\nx\r\n.\r\n",
    );
    assert_eq!(replies[0], "550 5.7.1 sender blocked");
    assert_eq!(replies[1], "451 4.7.1 too many messages");
    assert_eq!(replies[2], "250 2.1.0 <s@example.net> sender ok");
    assert_eq!(replies[3], "451 4.7.1 too many recipients");
    assert_eq!(replies[4], "250 2.1.5 <alice@example.org> ok");
    assert!(replies[6].ends_with(" message accepted"), "{replies:?}");
    assert_eq!(target.deliveries.len(), 1);
    // Each check carries the envelope: client, EHLO name and sender.
    let Some(Check::Recipient(envelope, address)) = target.checks.get(4) else {
        panic!("{:?}", target.checks);
    };
    assert_eq!(address, "alice@example.org");
    assert_eq!(envelope.sender, "s@example.net");
    assert_eq!(envelope.helo, "client.example.net");
    assert_eq!(envelope.peer_ip, LOCALHOST);
    assert!(!envelope.tls);
    assert_eq!(target.checks.len(), 5);
}

#[test]
fn a_refused_sender_counts_as_an_error() {
    let config = LmtpConfig {
        errors_max: 2,
        ..smtp_config()
    };
    let (replies, _) = check_smtp(
        config,
        b"MAIL FROM:<a@blocked.example>\r\nMAIL FROM:<b@blocked.example>\r\nNOOP\r\n",
    );
    assert_eq!(
        replies.last().unwrap(),
        "421 4.7.0 mx.example.org too many errors, closing connection"
    );
}
