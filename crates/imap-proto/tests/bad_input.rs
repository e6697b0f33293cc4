//! Hostile and malformed input through framer and parser: each must be
//! refused with the right kind of error, never a panic or unbounded buffering.

use postern_imap_proto::framer::{Frame, Framer, Limits, RejectKind};
use postern_imap_proto::parse::{ParseError, parse_command};

/// Frame `input` (all of it available) and parse the first command.
fn frame_and_parse(input: &[u8]) -> Result<Frame, ParseError> {
    let mut framer = Framer::new(Limits::default());
    // A synchronizing literal asks once; the data is already there, so ask again.
    let mut frame = framer.next(input);
    if let Frame::NeedContinuation { .. } = frame {
        frame = framer.next(input);
    }
    if let Frame::Complete { len } = frame {
        parse_command(&input[..len])?;
    }
    Ok(frame)
}

fn parse_error(input: &[u8]) -> ParseError {
    match frame_and_parse(input) {
        Err(error) => error,
        Ok(frame) => panic!("{input:?} gave {frame:?}"),
    }
}

#[test]
fn two_gigabyte_literal_refused_before_any_data() {
    let announce = b"A1 APPEND INBOX {2000000000}\r\n";
    let mut framer = Framer::new(Limits::default());
    assert_eq!(
        framer.next(announce),
        Frame::Reject {
            tag: Some("A1".into()),
            kind: RejectKind::LiteralTooBig,
            discard: announce.len(),
            close: false,
        }
    );
    // After discarding, the framer starts afresh on the next command.
    assert_eq!(framer.next(b"A2 NOOP\r\n"), Frame::Complete { len: 9 });
}

#[test]
fn two_gigabyte_non_synchronizing_literal_closes() {
    let announce = b"A1 APPEND INBOX {2000000000+}\r\nFrom: ";
    let mut framer = Framer::new(Limits::default());
    assert!(matches!(
        framer.next(announce),
        Frame::Reject {
            kind: RejectKind::LiteralTooBig,
            close: true,
            ..
        }
    ));
}

#[test]
fn one_megabyte_line_refused_while_arriving() {
    let mut framer = Framer::new(Limits::default());
    let mut line = b"A1 LOGIN ".to_vec();
    line.resize(1024 * 1024, b'a');
    // Fed in 4 KiB reads, as a server would; refused at the first read past 64 KiB.
    let mut refused_at = None;
    for end in (4096..=line.len()).step_by(4096) {
        match framer.next(&line[..end]) {
            Frame::Incomplete => {}
            Frame::Reject {
                tag, kind, close, ..
            } => {
                assert_eq!(
                    (tag.as_deref(), kind, close),
                    (Some("A1"), RejectKind::LineTooLong, true)
                );
                refused_at = Some(end);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused_at, Some(64 * 1024 + 4096));
}

#[test]
fn unbalanced_parentheses() {
    assert_eq!(parse_error(b"a1 FETCH 1 (FLAGS\r\n").message, "Missing ')'");
    assert_eq!(
        parse_error(b"a2 SEARCH ((SEEN)\r\n").message,
        "Expected ')'"
    );
    assert_eq!(
        parse_error(b"a3 SEARCH SEEN))\r\n").message,
        "Expected space"
    );
    assert_eq!(
        parse_error(b"a4 STORE 1 FLAGS (\\Seen\r\n").message,
        "Missing ')'"
    );
    assert_eq!(
        parse_error(b"a5 STATUS x MESSAGES)\r\n").message,
        "Expected '('"
    );
}

#[test]
fn nul_in_atom() {
    let error = parse_error(b"a1 SELECT in\0box\r\n");
    assert_eq!(error.tag.as_deref(), Some("a1"));
    assert_eq!(error.message, "Unexpected characters at end of command");
    assert_eq!(parse_error(b"a\0 NOOP\r\n").tag, None);
    assert_eq!(parse_error(b"a2 NO\0OP\r\n").message, "Unknown command");
}

#[test]
fn number_overflow() {
    for input in [
        &b"a FETCH 4294967296 FLAGS\r\n"[..],
        b"a FETCH 1:99999999999999999999999 FLAGS\r\n",
        b"a UID FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)\r\n",
        b"a SEARCH LARGER 18446744073709551616\r\n",
        b"a SELECT x (QRESYNC (4294967296 1))\r\n",
        b"a FETCH 1 BODY[4294967296]\r\n",
    ] {
        let error = parse_error(input);
        assert_eq!(error.message, "Number out of range", "{input:?}");
        assert_eq!(error.tag.as_deref(), Some("a"));
    }
}

#[test]
fn literal_count_mismatch() {
    // Fewer bytes than announced: the framer waits for the rest.
    let mut framer = Framer::new(Limits::default());
    assert_eq!(
        framer.next(b"a LOGIN {10+}\r\nbob x\r\n"),
        Frame::Incomplete
    );
    // More bytes than announced: the extra bytes are read as grammar and refused.
    assert_eq!(
        parse_error(b"a LOGIN {3}\r\nbobby x\r\n").message,
        "Expected space"
    );
    // The parser alone (no framer) also refuses a short literal.
    assert_eq!(
        parse_command(b"a LOGIN {30}\r\nbob x\r\n").map_err(|e| e.message),
        Err("Literal shorter than announced".into())
    );
}

#[test]
fn junk() {
    for input in [
        &b""[..],
        b"\r\n",
        b" \r\n",
        b"*\r\n",
        b"+ x\r\n",
        b"a\r\n",
        b"\xff\xfe\r\n",
    ] {
        let error = parse_command(input).err();
        assert!(error.is_some(), "{input:?}");
    }
}
