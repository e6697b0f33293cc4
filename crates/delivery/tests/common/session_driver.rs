//! Drives one LMTP [`Session`] over arbitrary client bytes and checks what
//! must hold for any input. Shared by the cargo-fuzz target
//! (`fuzz/fuzz_targets/lmtp_session.rs`, which includes this file by path)
//! and the stable replay test (`tests/fuzz_corpus.rs`), so a crash the
//! fuzzer finds replays here once its input is added to the corpus.
//!
//! # Input layout
//!
//! The first byte steers the driver; the rest is what the client sends.
//!
//! - `control & READ_BYTES_MASK`: how many bytes each read hands over, so
//!   commands, CRLFs and end markers get split at every position; 0 hands
//!   over everything in one read.
//! - `control & TINY_LIMITS`: small line, message and recipient bounds, so
//!   short inputs reach the refusal paths.
//! - `control & SHUT_DOWN_AT_END`: when the bytes run out, the server shuts
//!   down; otherwise the client times out.
//!
//! # The fake target
//!
//! Addresses resolve by their first letter (case-insensitive): `x` is an
//! unknown user, `t` a temporary directory failure, `e` an empty user list
//! (a target breaking its contract), `a` an alias for the address itself and
//! the user `shared`; anything else is one user named like the address in
//! lower case, so `Bob@` and `bob@` are one mailbox. Delivery succeeds for
//! every user except those starting with `q`, which are over quota.
//!
//! # Checked
//!
//! - Nothing panics, and the session reaches `NeedInput` or `Close` within a
//!   bound of steps proportional to the input.
//! - Every reply line ends in CRLF, starts with a 3-digit code from 2xx to
//!   5xx followed by a space or (inside a multi-line reply) a dash, holds no
//!   control bytes, and stays within a length bound. Output is only ever
//!   whole replies.
//! - A delivery names each user of the accepted recipients once, in RCPT
//!   order, and nobody else; the message carries the trace headers and stays
//!   within the size bound.
//! - The body of a delivery is what a plain reading of RFC 5321 makes of the
//!   client's bytes after some `DATA` line: lines end at CRLF only, a dot
//!   that starts a line is removed, and the data ends at the first line that
//!   is just `.` (so at `<CRLF>.<CRLF>`, or `.<CRLF>` first). Every other
//!   byte, bare LF and bare CR included, is there as sent, and the end
//!   marker is among the bytes handed over. So a bare-LF or bare-CR "end"
//!   can never cut a message short and start a second transaction (SMTP
//!   smuggling); [`reference_decode`] is that reading.
//! - After a delivery, the session answers once per accepted RCPT, in order,
//!   with the code the fake's results call for.
//! - A closed session stays closed.

// Each includer uses a different subset of the items here.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_delivery::session::{Event, Session};
use postern_delivery::{DeliverError, LmtpConfig, ResolveError, UserName, rfc5322_date};

/// Bits of the control byte giving the read size in bytes (0: all at once).
pub const READ_BYTES_MASK: u8 = 0x3f;
/// Control bit selecting [`tiny_config`].
pub const TINY_LIMITS: u8 = 0x40;
/// Control bit making the server shut down, rather than the client time out,
/// when the input runs out.
pub const SHUT_DOWN_AT_END: u8 = 0x80;

/// Reply bytes allowed beyond three times the longest command line: an echoed
/// address can grow threefold when invalid UTF-8 becomes U+FFFD, and the
/// fixed texts and target errors (cut at 200 characters) fit in the rest.
const REPLY_LINE_BYTES_SLACK: usize = 1024;

/// Trace header bytes allowed on top of the body: two client-given names
/// (each from one command line, grown at most threefold) plus fixed text.
const TRACE_HEADER_BYTES_SLACK: usize = 1024;

const PEER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// A fixed date, so every run builds the same messages.
fn fixed_clock() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_751_373_296)
}

/// Bounds small enough that short fuzz inputs cross them.
pub fn tiny_config() -> LmtpConfig {
    LmtpConfig {
        hostname: "mx.example.org".to_string(),
        message_bytes_max: 64,
        recipients_max: 3,
        line_bytes_max: 48,
        ..LmtpConfig::default()
    }
}

/// The production defaults, so the fuzzer also sees the real bounds.
pub fn default_config() -> LmtpConfig {
    LmtpConfig {
        hostname: "mx.example.org".to_string(),
        ..LmtpConfig::default()
    }
}

/// The fake directory: see the module docs.
pub fn resolve(address: &str) -> Result<Vec<UserName>, ResolveError> {
    let user = address.to_lowercase();
    match user.chars().next() {
        Some('x') => Err(ResolveError::UnknownUser),
        Some('t') => Err(ResolveError::Temporary("directory\r\noffline".to_string())),
        Some('e') => Ok(Vec::new()),
        Some('a') => Ok(vec![user, "shared".to_string()]),
        _ => Ok(vec![user]),
    }
}

/// The fake store: every user gets the message except the `q` ones.
pub fn deliver(users: &[UserName]) -> Vec<Result<(), DeliverError>> {
    users
        .iter()
        .map(|user| {
            if user.starts_with('q') {
                Err(DeliverError::OverQuota)
            } else {
                Ok(())
            }
        })
        .collect()
}

/// What the driver knows about the transaction from the replies it saw.
#[derive(Default)]
struct Model {
    /// Users of each RCPT accepted since the last accepted MAIL, in order.
    accepted: Vec<Vec<UserName>>,
    /// What the session said and stored, for the caller.
    transcript: Transcript,
}

/// What one run produced, for tests that expect a particular outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// Every reply line, greeting included, without CRLF.
    pub replies: Vec<String>,
    /// The body (trace headers removed) of every delivery, in order.
    pub bodies: Vec<Vec<u8>>,
}

/// Runs one fuzz input (control byte, then client bytes) through a session.
pub fn run(data: &[u8]) -> Transcript {
    let Some((&control, stream)) = data.split_first() else {
        return Transcript::default();
    };
    let config = if control & TINY_LIMITS != 0 {
        tiny_config()
    } else {
        default_config()
    };
    let read_bytes = match usize::from(control & READ_BYTES_MASK) {
        0 => stream.len().max(1),
        bytes => bytes,
    };
    run_with(config, stream, read_bytes, control & SHUT_DOWN_AT_END != 0)
}

/// Feeds `stream` to a fresh session `read_bytes` at a time, answering its
/// requests with the fake target and checking every reply and request.
pub fn run_with(
    config: LmtpConfig,
    stream: &[u8],
    read_bytes: usize,
    shut_down_at_end: bool,
) -> Transcript {
    let config = Arc::new(config);
    let mut session = Session::with_clock(Arc::clone(&config), PEER_IP, fixed_clock);
    let mut model = Model::default();
    let mut reads = stream.chunks(read_bytes.max(1));
    // How many bytes of `stream` the session has been handed so far.
    let mut handed_bytes = 0;

    session.greet();
    let greeting = take_replies(&mut session, &config, &mut model);
    assert!(
        matches!(greeting.first(), Some(line) if line.starts_with("220 ")),
        "greeting: {greeting:?}"
    );

    // Each step either hands over one read, or answers a request, which
    // needs a command line (RCPT) or a DATA body the session consumed; a
    // session that does neither is stuck.
    let steps_max = 2 * stream.len() + 16;
    for _ in 0..steps_max {
        let event = session.poll();
        take_replies(&mut session, &config, &mut model);
        match event {
            Event::NeedInput => {
                assert!(!session.is_closed(), "NeedInput from a closed session");
                match reads.next() {
                    Some(read) => {
                        session.receive(read);
                        handed_bytes += read.len();
                    }
                    None => {
                        end_of_input(&mut session, &config, &mut model, shut_down_at_end);
                        return model.transcript;
                    }
                }
            }
            Event::Resolve { address } => {
                assert!(!address.is_empty(), "Resolve for an empty address");
                let result = resolve(&address);
                let users = result.clone().unwrap_or_default();
                session.resolved(result);
                let replies = take_replies(&mut session, &config, &mut model);
                let [reply] = replies.as_slice() else {
                    panic!("one reply per RCPT, got {replies:?}");
                };
                if reply.starts_with("250 ") {
                    assert!(!users.is_empty(), "accepted a RCPT with no users: {reply}");
                    model.accepted.push(users);
                }
            }
            Event::Deliver { message, users, .. } => {
                let handed = stream.get(..handed_bytes).unwrap_or_default();
                let body = check_delivery(&config, &model, &message, &users, handed);
                model.transcript.bodies.push(body);
                let results = deliver(&users);
                assert_eq!(results.len(), users.len());
                session.delivered(results);
                let replies = take_replies(&mut session, &config, &mut model);
                check_delivery_replies(&config, &model, &replies);
                model.accepted.clear();
            }
            Event::StartTls => panic!("StartTls from an LMTP session"),
            Event::Admit(check) => panic!("admission check from an LMTP session: {check:?}"),
            Event::Close => {
                check_closed(&mut session, &config, &mut model);
                return model.transcript;
            }
        }
    }
    panic!("session made no progress in {steps_max} steps");
}

/// The client is gone quiet: time out (or shut down), which must close.
fn end_of_input(
    session: &mut Session,
    config: &LmtpConfig,
    model: &mut Model,
    shut_down_at_end: bool,
) {
    // The server lets a message being received finish before it shuts down,
    // so a session inside DATA can only time out.
    if shut_down_at_end && !session.is_receiving_data() {
        session.shut_down();
    } else {
        session.time_out();
    }
    let replies = take_replies(session, config, model);
    assert!(
        matches!(replies.last(), Some(line) if line.starts_with("421 ")),
        "421 before closing: {replies:?}"
    );
    assert_eq!(session.poll(), Event::Close);
    check_closed(session, config, model);
}

/// A closed session says nothing more and stays closed.
fn check_closed(session: &mut Session, config: &LmtpConfig, model: &mut Model) {
    assert!(session.is_closed(), "Close from a session not closed");
    assert!(take_replies(session, config, model).is_empty());
    assert_eq!(session.poll(), Event::Close);
    session.receive(b"NOOP\r\n");
    assert_eq!(session.poll(), Event::Close);
    assert!(take_replies(session, config, model).is_empty());
}

/// Takes the queued output, checks every line, notes accepted MAIL commands
/// in the model, and returns the lines without their CRLF.
fn take_replies(session: &mut Session, config: &LmtpConfig, model: &mut Model) -> Vec<String> {
    let output = session.take_output();
    let line_bytes_max = 3 * config.line_bytes_max + REPLY_LINE_BYTES_SLACK;
    let mut lines = Vec::new();
    let mut rest = output.as_slice();
    while !rest.is_empty() {
        let Some(lf) = rest.iter().position(|&byte| byte == b'\n') else {
            panic!(
                "reply without a line end: {:?}",
                String::from_utf8_lossy(rest)
            );
        };
        let (line, after) = rest.split_at(lf + 1);
        rest = after;
        let Some(text) = line.strip_suffix(b"\r\n") else {
            panic!(
                "reply line without CRLF: {:?}",
                String::from_utf8_lossy(line)
            );
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let bytes = text.as_bytes();
        assert!(
            bytes.len() >= 4
                && matches!(bytes.first(), Some(b'2'..=b'5'))
                && bytes
                    .get(1..3)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
                && matches!(bytes.get(3), Some(b' ' | b'-')),
            "reply line without a code: {text:?}"
        );
        assert!(
            !bytes.iter().any(|&byte| byte < 0x20 || byte == 0x7f),
            "control byte in a reply: {text:?}"
        );
        assert!(
            bytes.len() <= line_bytes_max,
            "reply line of {} bytes",
            bytes.len()
        );
        if text.starts_with("250 2.1.0 ") {
            // A MAIL was accepted: a new transaction with no recipients yet.
            model.accepted.clear();
        }
        lines.push(text);
    }
    model.transcript.replies.extend(lines.iter().cloned());
    if let Some(last) = lines.last() {
        assert_eq!(
            last.as_bytes().get(3),
            Some(&b' '),
            "output ends inside a multi-line reply: {lines:?}"
        );
    }
    lines
}

/// The users of a delivery are those of the accepted RCPTs, each once, in
/// order; the message is trace headers plus a body within the bound, and the
/// body is what [`reference_decode`] reads from the client's bytes `handed`
/// after some `DATA` line. Returns the body.
fn check_delivery(
    config: &LmtpConfig,
    model: &Model,
    message: &[u8],
    users: &[UserName],
    handed: &[u8],
) -> Vec<u8> {
    let mut expected: Vec<&UserName> = Vec::new();
    for user in model.accepted.iter().flatten() {
        if !expected.contains(&user) {
            expected.push(user);
        }
    }
    assert!(!users.is_empty(), "delivery to nobody");
    assert!(
        users.iter().eq(expected.iter().copied()),
        "delivery to {users:?}, accepted {:?}",
        model.accepted
    );
    assert!(
        message.starts_with(b"Return-Path: <"),
        "message without trace headers"
    );
    let bytes_max = usize::try_from(config.message_bytes_max)
        .unwrap_or(usize::MAX)
        .saturating_add(6 * config.line_bytes_max + TRACE_HEADER_BYTES_SLACK);
    assert!(
        message.len() <= bytes_max,
        "message of {} bytes",
        message.len()
    );
    let body = body_after_trace(message);
    assert!(
        body.is_empty() || body.ends_with(b"\r\n"),
        "body not ended by the CRLF of <CRLF>.<CRLF>: {:?}",
        String::from_utf8_lossy(body)
    );
    // The data starts right after a command line, so after an LF.
    let from_some_line = handed
        .iter()
        .enumerate()
        .filter(|&(_, &byte)| byte == b'\n')
        .any(|(lf, _)| reference_decode(handed.get(lf + 1..).unwrap_or_default(), body));
    assert!(
        from_some_line,
        "body {:?} is not the data after any line of {:?}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(handed)
    );
    body.to_vec()
}

/// The body after the trace headers, whose last line is the fixed date.
/// Client-given values in them have their control bytes replaced, so the
/// first `\t<date>\r\n` is the end of the headers.
fn body_after_trace(message: &[u8]) -> &[u8] {
    let date_line = format!("\t{}\r\n", rfc5322_date(fixed_clock()));
    let date_line = date_line.as_bytes();
    let Some(at) = message
        .windows(date_line.len())
        .position(|window| window == date_line)
    else {
        panic!(
            "no date line in the trace headers: {:?}",
            String::from_utf8_lossy(message)
        );
    };
    message.get(at + date_line.len()..).unwrap_or_default()
}

/// Whether `data` (the client's bytes from the start of a DATA body) holds an
/// end marker and un-stuffs to `body` before it, read the plain way: split
/// into CRLF-ended lines, stop at the first line that is just `.`, drop one
/// leading dot from every other line. Stops at the first byte that differs.
pub fn reference_decode(data: &[u8], body: &[u8]) -> bool {
    let mut rest = data;
    let mut produced = 0;
    loop {
        // A line longer than the body still to come (plus a stuffing dot),
        // or than the end marker, cannot match: look no further than that.
        let remaining = body.len() - produced;
        let window = rest.get(..rest.len().min(remaining + 3)).unwrap_or(rest);
        let Some(crlf) = window.windows(2).position(|pair| pair == b"\r\n") else {
            return false;
        };
        let (line, after) = rest.split_at(crlf + 2);
        if line == b".\r\n" {
            return produced == body.len();
        }
        let line = line.strip_prefix(b".").unwrap_or(line);
        if body.get(produced..produced + line.len()) != Some(line) {
            return false;
        }
        produced += line.len();
        rest = after;
    }
}

/// One reply per accepted RCPT, in order, each with the code the fake
/// store's results give it: the first failing user of an alias speaks for it.
fn check_delivery_replies(config: &LmtpConfig, model: &Model, replies: &[String]) {
    assert_eq!(
        replies.len(),
        model.accepted.len(),
        "one reply per accepted RCPT: {replies:?}"
    );
    for (reply, users) in replies.iter().zip(&model.accepted) {
        let over_quota = users.iter().any(|user| user.starts_with('q'));
        let code = match (over_quota, config.over_quota_permanent) {
            (false, _) => "250 2.0.0 <",
            (true, false) => "452 4.2.2 <",
            (true, true) => "552 5.2.2 <",
        };
        assert!(reply.starts_with(code), "{reply:?} for users {users:?}");
    }
}
