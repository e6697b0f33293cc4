//! Drives one LMTP or SMTP [`Session`] over arbitrary client bytes and
//! checks what must hold for any input. Shared by the cargo-fuzz target
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
//! - `control & SMTP`: the session speaks SMTP ([`smtp_config`]) rather than
//!   LMTP. The bit used to be the top bit of the read size, which no seed of
//!   the LMTP corpus set, so those seeds still mean LMTP.
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
//! In SMTP the fake also admits senders and recipients ([`admit`]): an
//! address ending in `@blocked.example` or starting with `blocked` is
//! refused, one starting with `slow` deferred, the rest accepted. And it
//! refuses a whole message as a policy decision ([`smtp_deliver`]) when a
//! user starts with `spam` (permanently) or `grey` (temporarily). STARTTLS
//! is offered and "started" with [`Session::tls_started`], without any TLS.
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
//!
//! In SMTP, besides the above:
//!
//! - After a delivery the session answers exactly once for the message: 250
//!   when every user has it, else the first temporary failure, else (nobody
//!   got it) the permanent one.
//! - A message delivered after `DATA` holds no bare CR or LF (the checks
//!   above make its body the plain reading of the client's bytes, so those
//!   held none either). A message sent by `BDAT` is framed by its sizes, not
//!   by lines; its users, trace headers and size bound are checked, and it
//!   holds no bare CR or LF either (the session refuses such a message).
//! - Every admission check, lookup and delivery carries the SMTP envelope:
//!   this client, the TLS state, and the sender of the last accepted MAIL; a
//!   recipient is asked about only if it is in a local domain (no relaying),
//!   and looked up only after it was admitted.
//! - MAIL is admitted and accepted only after an EHLO or HELO reply since the
//!   start or the last STARTTLS. STARTTLS happens at most once, after a
//!   `220` reply, and nothing the client sent before the TLS start is used
//!   after it: the session wants new input at once, and no body is read from
//!   those bytes.
//! - The lines of a multi-line reply (EHLO's) share one code.
//! - A `421` is the last reply, and the session is closed after it.
//! - Permanent (5xx) replies to commands, lookups and admission checks are
//!   counted; after `errors_max` of them the very next reply is
//!   `421 4.7.0 ... too many errors`, so there are never more. Replies about
//!   a message's content (a bare line end, too big) and after a delivery are
//!   not counted: the session counts the dialogue's errors only.

// Each includer uses a different subset of the items here.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_delivery::session::{Check, Event, Session};
use postern_delivery::{
    Admission, DeliverError, Envelope, LmtpConfig, Protocol, ResolveError, UserName, rfc5322_date,
};

/// Bits of the control byte giving the read size in bytes (0: all at once).
pub const READ_BYTES_MASK: u8 = 0x1f;
/// Control bit selecting SMTP ([`smtp_config`]) instead of LMTP.
pub const SMTP: u8 = 0x20;
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

/// The domains an SMTP session takes mail for: those of the seeds.
pub const LOCAL_DOMAINS: [&str; 3] = ["example.org", "x.org", "c.org"];

/// `config` made SMTP: local domains, and an error bound short inputs reach.
pub fn smtp_config(config: LmtpConfig) -> LmtpConfig {
    let errors_max = if config.line_bytes_max < 100 { 3 } else { 6 };
    LmtpConfig {
        protocol: Protocol::Smtp,
        local_domains: LOCAL_DOMAINS.iter().map(ToString::to_string).collect(),
        errors_max,
        ..config
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

/// The fake admission policy (SMTP): see the module docs.
pub fn admit(address: &str) -> Admission {
    let address = address.to_lowercase();
    if address.ends_with("@blocked.example") || address.starts_with("blocked") {
        Admission::Refuse("blocked\r\nby policy".to_string())
    } else if address.starts_with("slow") {
        Admission::Defer(String::new())
    } else {
        Admission::Accept
    }
}

/// The fake SMTP store: [`deliver`], except that a `spam` user has the
/// message refused for everyone, and a `grey` user has it deferred.
pub fn smtp_deliver(users: &[UserName]) -> Vec<Result<(), DeliverError>> {
    let refused = |permanent: bool, status: &'static str| {
        let error = DeliverError::Refused {
            permanent,
            status,
            text: "policy\r\nsays no".to_string(),
        };
        vec![Err(error); users.len()]
    };
    if users.iter().any(|user| user.starts_with("spam")) {
        refused(true, "5.7.1")
    } else if users.iter().any(|user| user.starts_with("grey")) {
        refused(false, "4.7.1")
    } else {
        deliver(users)
    }
}

/// What the driver knows about the transaction from the replies it saw.
#[derive(Default)]
struct Model {
    /// Users of each RCPT accepted since the last accepted MAIL, in order.
    accepted: Vec<Vec<UserName>>,
    /// What the session said and stored, for the caller.
    transcript: Transcript,
    /// SMTP only: what the checks of that mode need.
    smtp: Option<SmtpModel>,
}

/// What the driver knows about an SMTP session.
#[derive(Default)]
struct SmtpModel {
    /// `errors_max` of the config (at least 1, as the session reads it).
    errors_max: usize,
    /// Permanent error replies counted so far.
    errors: usize,
    /// The error bound was reached: the next reply must be the 421.
    expect_close: bool,
    /// A 421 was seen: nothing may follow.
    closed: bool,
    /// Replies now being taken answer a delivery (they do not count).
    delivery_replies: bool,
    /// An EHLO or HELO was answered since the start or the TLS start.
    greeted: bool,
    /// STARTTLS happened.
    tls: bool,
    /// The TLS start was just reported: the session must want new input.
    tls_just_started: bool,
    /// How many bytes of the stream had been handed over at the TLS start;
    /// the session must use none of them after it.
    tls_boundary: usize,
    /// The sender of the last MAIL the target admitted.
    sender: Option<String>,
    /// The recipient the target admitted last, whose lookup comes next.
    admitted_recipient: Option<String>,
    /// The last reply was `354`: a DATA body is being read.
    in_data: bool,
    /// The code of the multi-line reply being read (after a `250-` line).
    multi_line_code: Option<String>,
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
    let mut config = if control & TINY_LIMITS != 0 {
        tiny_config()
    } else {
        default_config()
    };
    if control & SMTP != 0 {
        config = smtp_config(config);
    }
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
    if config.protocol == Protocol::Smtp {
        session.offer_tls();
        model.smtp = Some(SmtpModel {
            errors_max: config.errors_max.max(1),
            ..SmtpModel::default()
        });
    }
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
        let replies = take_replies(&mut session, &config, &mut model);
        if let Some(smtp) = model.smtp.as_mut().filter(|smtp| smtp.tls_just_started) {
            // The input before the TLS start is gone: nothing to answer.
            assert_eq!(event, Event::NeedInput, "event right after the TLS start");
            assert!(
                replies.is_empty(),
                "replies right after the TLS start: {replies:?}"
            );
            smtp.tls_just_started = false;
        }
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
                if let Some(smtp) = model.smtp.as_mut() {
                    let admitted = smtp.admitted_recipient.take();
                    assert_eq!(
                        admitted.as_ref(),
                        Some(&address),
                        "lookup of a recipient not admitted"
                    );
                }
                let result = resolve(&address);
                let users = result.clone().unwrap_or_default();
                session.resolved(result);
                let replies = take_replies(&mut session, &config, &mut model);
                let reply = match replies.as_slice() {
                    [reply] => reply,
                    // SMTP: an unknown user can be the last error allowed.
                    [reply, close] if model.smtp.is_some() && close.starts_with("421 4.7.0 ") => {
                        reply
                    }
                    _ => panic!("one reply per RCPT, got {replies:?}"),
                };
                if reply.starts_with("250 ") {
                    assert!(!users.is_empty(), "accepted a RCPT with no users: {reply}");
                    model.accepted.push(users);
                }
            }
            Event::Deliver {
                message,
                users,
                envelope,
            } if model.smtp.is_some() => {
                let (tls_boundary, by_data) = model
                    .smtp
                    .as_ref()
                    .map(|smtp| (smtp.tls_boundary, smtp.in_data))
                    .unwrap_or_default();
                let handed = stream.get(tls_boundary..handed_bytes).unwrap_or_default();
                check_envelope(&model, &envelope);
                let body = if by_data {
                    let body = check_delivery(&config, &model, &message, &users, handed);
                    assert!(
                        !has_bare_line_end(&body),
                        "delivered a DATA body with a bare CR or LF: {:?}",
                        String::from_utf8_lossy(&body)
                    );
                    body
                } else {
                    check_bdat_delivery(&config, &model, &message, &users)
                };
                check_received_with(&model, &message);
                model.transcript.bodies.push(body);
                let results = smtp_deliver(&users);
                assert_eq!(results.len(), users.len());
                session.delivered(results.clone());
                if let Some(smtp) = model.smtp.as_mut() {
                    smtp.delivery_replies = true;
                }
                let replies = take_replies(&mut session, &config, &mut model);
                if let Some(smtp) = model.smtp.as_mut() {
                    smtp.delivery_replies = false;
                }
                check_smtp_delivery_reply(&results, &replies);
                model.accepted.clear();
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
            Event::StartTls => {
                let Some(smtp) = model.smtp.as_mut() else {
                    panic!("StartTls from an LMTP session");
                };
                assert!(!smtp.tls, "a second STARTTLS");
                assert_eq!(
                    replies.last().map(String::as_str),
                    Some("220 2.0.0 ready to start TLS"),
                    "StartTls without its 220"
                );
                assert!(!session.is_closed(), "StartTls from a closed session");
                session.tls_started();
                smtp.tls = true;
                smtp.greeted = false;
                smtp.tls_just_started = true;
                smtp.tls_boundary = handed_bytes;
                model.accepted.clear();
            }
            Event::Admit(check) => {
                assert!(
                    model.smtp.is_some(),
                    "admission check from an LMTP session: {check:?}"
                );
                answer_admission(&mut session, &config, &mut model, &check);
            }
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
        if let Some(smtp) = model.smtp.as_mut() {
            check_smtp_reply(smtp, config, &text);
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
    if let Some(smtp) = &model.smtp {
        assert!(
            !smtp.expect_close,
            "no 421 after error {} of {}: {lines:?}",
            smtp.errors, smtp.errors_max
        );
        assert!(
            !smtp.closed || session.is_closed(),
            "session open after a 421: {lines:?}"
        );
    }
    lines
}

/// SMTP: the checks on one reply line that need the model: the error count
/// and its 421, nothing after a 421, MAIL accepted only after EHLO/HELO.
fn check_smtp_reply(smtp: &mut SmtpModel, config: &LmtpConfig, text: &str) {
    assert!(!smtp.closed, "reply after a 421: {text:?}");
    let code = text.get(..3).unwrap_or_default();
    if let Some(multi_line_code) = &smtp.multi_line_code {
        assert_eq!(
            multi_line_code, code,
            "code changes inside a reply: {text:?}"
        );
    }
    smtp.multi_line_code = (text.as_bytes().get(3) == Some(&b'-')).then(|| code.to_string());
    if smtp.expect_close {
        assert!(
            text.starts_with("421 4.7.0 "),
            "error {} of {} not followed by 421: {text:?}",
            smtp.errors,
            smtp.errors_max
        );
        smtp.expect_close = false;
    }
    if text.starts_with("421 ") {
        smtp.closed = true;
    }
    let hostname = &config.hostname;
    if text.starts_with(&format!("250-{hostname}")) || text == format!("250 {hostname}") {
        smtp.greeted = true;
    }
    if text.starts_with("250 2.1.0 ") {
        assert!(smtp.greeted, "MAIL accepted before EHLO/HELO: {text:?}");
    }
    smtp.in_data = text.starts_with("354 ");
    // A message refused for its content is not an error of the client's
    // dialogue (the session counts only replies to commands and lookups).
    let content_refusal = text.starts_with("550 5.6.0 ") || text == "552 5.3.4 message too big";
    if text.starts_with('5') && !content_refusal && !smtp.delivery_replies {
        smtp.errors += 1;
        assert!(
            smtp.errors <= smtp.errors_max,
            "permanent error {} of {} without a 421 close: {text:?}",
            smtp.errors,
            smtp.errors_max
        );
        smtp.expect_close = smtp.errors == smtp.errors_max;
    }
}

/// SMTP: answers an [`Event::Admit`] with [`admit`] and checks the replies.
fn answer_admission(session: &mut Session, config: &LmtpConfig, model: &mut Model, check: &Check) {
    let (envelope, address) = match check {
        Check::Sender(envelope) => (envelope, &envelope.sender),
        Check::Recipient(envelope, address) => (envelope, address),
    };
    let Some(smtp) = model.smtp.as_ref() else {
        panic!("admission check from an LMTP session: {check:?}");
    };
    assert_eq!(envelope.protocol, Protocol::Smtp);
    assert_eq!(envelope.peer_ip, PEER_IP);
    assert_eq!(envelope.tls, smtp.tls, "TLS state in {check:?}");
    match check {
        Check::Sender(_) => assert!(smtp.greeted, "MAIL admitted before EHLO/HELO"),
        Check::Recipient(..) => {
            assert!(
                !address.is_empty(),
                "admission check for an empty recipient"
            );
            assert_eq!(
                Some(&envelope.sender),
                smtp.sender.as_ref(),
                "envelope sender of {check:?}"
            );
            assert!(
                is_local(address),
                "admission check for a relay: {address:?}"
            );
        }
    }
    let admission = admit(address);
    session.admitted(admission.clone());
    let replies = take_replies(session, config, model);
    let Some(smtp) = model.smtp.as_mut() else {
        return;
    };
    let first = replies.first().map(String::as_str).unwrap_or_default();
    match (check, &admission) {
        (Check::Sender(envelope), Admission::Accept) => {
            assert!(
                replies.len() == 1 && first.starts_with("250 2.1.0 <"),
                "sender admitted: {replies:?}"
            );
            smtp.sender = Some(envelope.sender.clone());
        }
        (Check::Recipient(_, address), Admission::Accept) => {
            assert!(replies.is_empty(), "recipient admitted: {replies:?}");
            smtp.admitted_recipient = Some(address.clone());
        }
        (_, Admission::Defer(_)) => {
            assert!(
                replies.len() == 1 && first.starts_with("451 4.7.1 "),
                "deferred: {replies:?}"
            );
        }
        (_, Admission::Refuse(_)) => {
            // The refusal may be the last error allowed: then the 421.
            assert!(
                (1..=2).contains(&replies.len()) && first.starts_with("550 5.7.1 "),
                "refused: {replies:?}"
            );
        }
    }
}

/// SMTP: whether `address` is in a local domain, or plain `postmaster`.
fn is_local(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((_, domain)) => {
            let domain = domain.trim_end_matches('.');
            LOCAL_DOMAINS
                .iter()
                .any(|local| local.eq_ignore_ascii_case(domain))
        }
        None => address.eq_ignore_ascii_case("postmaster"),
    }
}

/// SMTP: the envelope of a delivery is this client's, with the TLS state and
/// the sender of the accepted MAIL.
fn check_envelope(model: &Model, envelope: &Envelope) {
    let Some(smtp) = model.smtp.as_ref() else {
        return;
    };
    assert_eq!(envelope.protocol, Protocol::Smtp);
    assert_eq!(envelope.peer_ip, PEER_IP);
    assert_eq!(envelope.tls, smtp.tls, "TLS state of the delivery");
    assert_eq!(
        Some(&envelope.sender),
        smtp.sender.as_ref(),
        "envelope sender of the delivery"
    );
}

/// SMTP: the `Received` header names the protocol, with `S` after STARTTLS.
fn check_received_with(model: &Model, message: &[u8]) {
    let Some(smtp) = model.smtp.as_ref() else {
        return;
    };
    let expected: &[&[u8]] = if smtp.tls {
        &[b" with ESMTPS id ", b" with SMTPS id "]
    } else {
        &[b" with ESMTP id ", b" with SMTP id "]
    };
    let body = body_after_trace(message);
    let header = message
        .get(..message.len() - body.len())
        .unwrap_or_default();
    assert!(
        expected
            .iter()
            .any(|with| header.windows(with.len()).any(|window| window == *with)),
        "Received header does not say {}: {:?}",
        if smtp.tls {
            "ESMTPS/SMTPS"
        } else {
            "ESMTP/SMTP"
        },
        String::from_utf8_lossy(header)
    );
}

/// Whether `bytes` hold an LF without a CR before it, or a CR without an LF
/// after it.
pub fn has_bare_line_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(at, &byte)| match byte {
        b'\n' => at == 0 || bytes.get(at - 1) != Some(&b'\r'),
        b'\r' => bytes.get(at + 1) != Some(&b'\n'),
        _ => false,
    })
}

/// SMTP, a message sent by BDAT: the users of the accepted RCPTs, the trace
/// headers and the size bound, as for DATA, and no bare CR or LF. Its body
/// is framed by the chunk sizes, not by lines, so it is returned as it is.
fn check_bdat_delivery(
    config: &LmtpConfig,
    model: &Model,
    message: &[u8],
    users: &[UserName],
) -> Vec<u8> {
    check_users(model, users);
    assert!(
        message.starts_with(b"Return-Path: <"),
        "message without trace headers"
    );
    let body = body_after_trace(message);
    assert!(
        body.len() as u64 <= config.message_bytes_max,
        "BDAT body of {} bytes",
        body.len()
    );
    assert!(
        !has_bare_line_end(body),
        "delivered a BDAT body with a bare CR or LF: {body:?}"
    );
    body.to_vec()
}

/// SMTP: exactly one reply for the message, with the code the fake's
/// results call for: the first temporary failure, else (if nobody got it)
/// the permanent one, else 250.
fn check_smtp_delivery_reply(results: &[Result<(), DeliverError>], replies: &[String]) {
    let [reply] = replies else {
        panic!("one reply per SMTP message, got {replies:?}");
    };
    let temporary = results.iter().find_map(|result| match result {
        Err(DeliverError::OverQuota) => Some("452 4.2.2 "),
        Err(DeliverError::Refused {
            permanent: false, ..
        }) => Some("451 4.7.1 "),
        _ => None,
    });
    let permanent = results.iter().find_map(|result| match result {
        Err(DeliverError::Refused {
            permanent: true, ..
        }) => Some("550 5.7.1 "),
        _ => None,
    });
    let delivered = results.iter().any(Result::is_ok);
    let code = match (temporary, permanent) {
        (Some(code), _) => code,
        (None, Some(code)) if !delivered => code,
        (None, _) => "250 2.0.0 ",
    };
    assert!(reply.starts_with(code), "{reply:?} for results {results:?}");
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
    check_users(model, users);
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

/// A delivery names each user of the accepted RCPTs once, in order.
fn check_users(model: &Model, users: &[UserName]) {
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
