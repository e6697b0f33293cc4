//! The LMTP (RFC 2033) and SMTP (RFC 5321) state machine, with no I/O and no
//! runtime.
//!
//! One machine serves both ([`Protocol`] in the config): they share framing,
//! MAIL/RCPT/DATA, the data decoder, the trace headers and the delivery. SMTP
//! differs in EHLO/HELO instead of LHLO, STARTTLS, one reply per message
//! after DATA, the relay check at RCPT ([`LmtpConfig::local_domains`]), and
//! hygiene an MX needs against the open internet: a command or message with a
//! bare CR or LF is refused (SMTP smuggling), input pipelined behind STARTTLS
//! is dropped (CVE-2011-0411), and after `errors_max` error replies the
//! connection is closed with 421.
//!
//! A driver (see `serve.rs`) owns the socket and the [`DeliveryTarget`]; the
//! session owns the protocol. The loop is:
//!
//! 1. [`Session::poll`] works through the bytes it has and says what it needs:
//!    more bytes ([`Event::NeedInput`], a normal answer, not an error), a
//!    recipient looked up ([`Event::Resolve`]), a message stored
//!    ([`Event::Deliver`]), or the connection closed ([`Event::Close`]).
//! 2. The driver answers with [`Session::receive`], [`Session::resolved`] or
//!    [`Session::delivered`], writes [`Session::take_output`] to the client
//!    whenever it is about to wait, and polls again.
//!
//! The driver hands over new bytes only after `NeedInput`, and the session
//! keeps at most one partial command line (bounded by `line_bytes_max`), so
//! its buffers are bounded by the driver's read size plus that line, plus the
//! message being received (bounded by `message_bytes_max`). Pipelined commands
//! that arrive in one read are answered one by one, in order, because the
//! session stops at each lookup or delivery and resumes where it was.
//!
//! Command lines are parsed by smtp-proto's `Request::parse`, which wants one
//! whole line; the framing and its length bound are done here because
//! smtp-proto's `RequestReceiver` has a fixed 4096-byte limit and its own idea
//! of what to do with long lines.
//!
//! [`DeliveryTarget`]: crate::DeliveryTarget

use std::collections::HashMap;
use std::fmt::Display;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use smtp_proto::{
    Error as ParseError, MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, MailFrom, RcptTo,
    Request,
};

use crate::data::{DataDecoder, DataOutcome, Feed};
use crate::trace::{TraceFields, header_safe, message_id, trace_headers};
use crate::{Admission, DeliverError, Envelope, LmtpConfig, Protocol, ResolveError, UserName};

/// Longest error text from the target echoed to the client, so one reply
/// stays one reasonable line.
const TARGET_TEXT_CHARS_MAX: usize = 200;

/// What the session needs from its driver next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every byte received so far has been used; write the output and read
    /// more, then call [`Session::receive`].
    NeedInput,
    /// SMTP: ask `DeliveryTarget::admit_sender` (MAIL FROM) or
    /// `admit_recipient` (RCPT TO, before the lookup), then call
    /// [`Session::admitted`].
    Admit(Check),
    /// Look up one RCPT address with `DeliveryTarget::resolve`, then call
    /// [`Session::resolved`].
    Resolve { address: String },
    /// Store `message` for `users` (each named once) with
    /// `DeliveryTarget::deliver`, then call [`Session::delivered`].
    Deliver {
        message: Vec<u8>,
        users: Vec<UserName>,
        envelope: Envelope,
    },
    /// SMTP: write the output, then start TLS on the connection (as server)
    /// and call [`Session::tls_started`]. The session has already dropped any
    /// input received after the STARTTLS line.
    StartTls,
    /// Write the output and close the connection.
    Close,
}

/// What an [`Event::Admit`] asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// May this client send from `envelope.sender`?
    Sender(Envelope),
    /// May this transaction have one more recipient, this address?
    Recipient(Envelope, String),
}

#[derive(Debug)]
enum State {
    /// Reading command lines.
    Command,
    /// SMTP: waiting for [`Session::admitted`] about this MAIL or RCPT.
    AwaitAdmit(Check),
    /// An admitted RCPT whose lookup is to be asked for next.
    Resolve { address: String },
    /// Reading the body of a DATA command.
    Data(DataDecoder),
    /// SMTP: reading the bytes of one BDAT chunk (RFC 3030).
    Bdat(BdatChunk),
    /// Waiting for [`Session::resolved`] about this RCPT address.
    AwaitResolve { address: String },
    /// Waiting for [`Session::delivered`].
    AwaitDeliver(PendingDelivery),
    /// The session is over; nothing more is read.
    Closed,
}

/// The BDAT chunk being read.
#[derive(Debug)]
struct BdatChunk {
    /// Bytes of the chunk not read yet.
    remaining: u64,
    /// `BDAT n LAST`: the message ends with this chunk.
    last: bool,
    /// Whether the bytes belong to the transaction; a refused BDAT (no
    /// transaction, no recipient) is still read to its end, then dropped,
    /// because its size says where the next command starts.
    keep: bool,
}

/// The message received so far by BDAT chunks.
#[derive(Debug, Default)]
struct ChunkedBody {
    body: Vec<u8>,
    /// Bytes received, counted on after `body` is dropped for being too big.
    bytes: u64,
    too_large: bool,
}

/// One accepted RCPT.
#[derive(Debug)]
struct Recipient {
    /// As the client wrote it (without angle brackets), for the replies.
    address: String,
    users: Vec<UserName>,
}

/// The MAIL transaction in progress.
#[derive(Debug)]
struct Transaction {
    sender: String,
    /// Accepted recipients in RCPT order; LMTP answers DATA once per entry.
    recipients: Vec<Recipient>,
    /// SMTP: the chunks received so far, once a BDAT was accepted (then DATA
    /// is refused in this transaction).
    chunked: Option<ChunkedBody>,
}

/// A message handed to the target, waiting for its results.
#[derive(Debug)]
struct PendingDelivery {
    id: String,
    /// Each accepted RCPT address with the positions of its users in the
    /// deduplicated user list given to the target.
    recipients: Vec<(String, Vec<usize>)>,
    users_count: usize,
    body_bytes: u64,
}

/// One LMTP session: everything between the greeting and the close.
#[derive(Debug)]
pub struct Session {
    config: Arc<LmtpConfig>,
    /// For the `Received` header.
    peer_ip: IpAddr,
    /// Where the `Received` date comes from, so tests can fix it.
    clock: fn() -> SystemTime,
    /// Received bytes; those before `input_start` have been used.
    input: Vec<u8>,
    input_start: usize,
    /// Set after a too-long line was answered: drop bytes through the next LF.
    discarding_line: bool,
    /// Replies not yet written.
    output: Vec<u8>,
    state: State,
    /// The name the client gave in LHLO; None until then (MAIL needs it).
    lhlo_name: Option<String>,
    transaction: Option<Transaction>,
    /// SMTP: error replies so far, against `errors_max`.
    errors: usize,
    /// SMTP: whether the driver can start TLS (offer STARTTLS).
    tls_available: bool,
    /// SMTP: whether TLS is running (for the trace header; no second STARTTLS).
    tls_active: bool,
    /// SMTP: the client said HELO, not EHLO (`with SMTP` in the trace).
    plain_helo: bool,
    /// Set when the error bound was reached while framing lines.
    closing: bool,
}

impl Session {
    /// A session for a client at `peer_ip`, dating messages by the system clock.
    pub fn new(config: Arc<LmtpConfig>, peer_ip: IpAddr) -> Self {
        Self::with_clock(config, peer_ip, SystemTime::now)
    }

    /// A session whose `Received` headers take their date from `clock`.
    pub fn with_clock(config: Arc<LmtpConfig>, peer_ip: IpAddr, clock: fn() -> SystemTime) -> Self {
        Session {
            config,
            peer_ip,
            clock,
            input: Vec::new(),
            input_start: 0,
            discarding_line: false,
            output: Vec::new(),
            state: State::Command,
            lhlo_name: None,
            transaction: None,
            errors: 0,
            tls_available: false,
            tls_active: false,
            plain_helo: false,
            closing: false,
        }
    }

    fn smtp(&self) -> bool {
        self.config.protocol == Protocol::Smtp
    }

    /// SMTP: the driver can start TLS, so EHLO offers STARTTLS.
    pub fn offer_tls(&mut self) {
        self.tls_available = true;
    }

    /// SMTP: TLS is running now. As RFC 3207 §4.2 requires, the session
    /// starts over: the client must say EHLO again.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
        self.lhlo_name = None;
        self.transaction = None;
    }

    /// Queues the `220` greeting.
    pub fn greet(&mut self) {
        let hostname = header_safe(&self.config.hostname);
        if self.smtp() {
            self.reply(format_args!("220 {hostname} ESMTP Postern ready"));
        } else {
            self.reply(format_args!("220 {hostname} LMTP Postern ready"));
        }
    }

    /// SMTP: the client sent bytes before the greeting (an early talker,
    /// RFC 5321 §4.3.1 says it must wait): `554` instead of a greeting, and
    /// the session ends.
    pub fn early_talker(&mut self) {
        let hostname = header_safe(&self.config.hostname);
        self.reply(format_args!(
            "554 5.5.0 {hostname} protocol error: you talked before my greeting"
        ));
        self.state = State::Closed;
    }

    /// Queues `421 4.3.2` and ends the session. The driver calls this when the
    /// server shuts down and the session is not in the middle of a message.
    pub fn shut_down(&mut self) {
        self.reply("421 4.3.2 shutting down");
        self.state = State::Closed;
    }

    /// Queues `421 4.3.2 <hostname> <text>` instead of the greeting and ends
    /// the session: the server will not serve this connection now (it is
    /// over a connection cap). The client keeps the mail and tries later.
    pub fn refuse(&mut self, text: &str) {
        let hostname = header_safe(&self.config.hostname);
        let text = header_safe(text);
        self.reply(format_args!("421 4.3.2 {hostname} {text}"));
        self.state = State::Closed;
    }

    /// Queues `421 4.4.2` and ends the session after the client was silent
    /// for too long.
    pub fn time_out(&mut self) {
        let hostname = header_safe(&self.config.hostname);
        self.reply(format_args!(
            "421 4.4.2 {hostname} idle timeout, closing connection"
        ));
        self.state = State::Closed;
    }

    /// Whether the session is inside a DATA body: shutdown waits for the end
    /// of the message so it is delivered, not lost.
    pub fn is_receiving_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::Bdat(_))
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Adds bytes read from the client. Call after [`Event::NeedInput`].
    pub fn receive(&mut self, bytes: &[u8]) {
        // Drop what was used, so the buffer holds only unread bytes.
        self.input.drain(..self.input_start.min(self.input.len()));
        self.input_start = 0;
        self.input.extend_from_slice(bytes);
    }

    /// Replies queued since the last call, ready to write.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Advances as far as the received bytes allow.
    pub fn poll(&mut self) -> Event {
        loop {
            // The state is taken out and put back by each arm, so no arm can
            // forget to set the next one.
            match std::mem::replace(&mut self.state, State::Closed) {
                State::Closed => return Event::Close,
                State::Command => {
                    // Set before framing: an over-long line may end the
                    // session (SMTP's error bound), which sets Closed.
                    self.state = State::Command;
                    match self.next_line() {
                        // SMTP: too many over-long lines ended the session.
                        None if self.closing => return Event::Close,
                        None => return Event::NeedInput,
                        Some((start, end)) => {
                            if let Some(event) = self.command(start, end) {
                                return event;
                            }
                        }
                    }
                }
                State::Data(mut decoder) => {
                    let pending = self.input.get(self.input_start..).unwrap_or_default();
                    match decoder.feed(pending) {
                        Feed::NeedMoreBytes => {
                            self.input_start = self.input.len();
                            self.state = State::Data(decoder);
                            return Event::NeedInput;
                        }
                        Feed::Done { consumed } => {
                            self.input_start += consumed;
                            if let Some(event) = self.data_done(decoder) {
                                return event;
                            }
                        }
                    }
                }
                State::Bdat(mut chunk) => {
                    let start = self.input_start;
                    let available = self.input.len().saturating_sub(start);
                    let take = usize::try_from(chunk.remaining)
                        .unwrap_or(usize::MAX)
                        .min(available);
                    if chunk.keep {
                        let end = start + take;
                        if let (Some(bytes), Some(transaction)) =
                            (self.input.get(start..end), self.transaction.as_mut())
                        {
                            let max = self.config.message_bytes_max;
                            let chunked = transaction.chunked.get_or_insert_with(Default::default);
                            chunked.bytes = chunked.bytes.saturating_add(take as u64);
                            if chunked.too_large || chunked.bytes > max {
                                chunked.too_large = true;
                                chunked.body = Vec::new();
                            } else {
                                chunked.body.extend_from_slice(bytes);
                            }
                        }
                    }
                    self.input_start += take;
                    chunk.remaining -= take as u64;
                    if chunk.remaining > 0 {
                        self.state = State::Bdat(chunk);
                        return Event::NeedInput;
                    }
                    self.state = State::Command;
                    if let Some(event) = self.bdat_chunk_done(&chunk) {
                        return event;
                    }
                }
                State::Resolve { address } => {
                    self.state = State::AwaitResolve {
                        address: address.clone(),
                    };
                    return Event::Resolve { address };
                }
                waiting @ (State::AwaitAdmit(_)
                | State::AwaitResolve { .. }
                | State::AwaitDeliver(_)) => {
                    self.broken_invariant("poll while waiting for the target", &waiting);
                    return Event::Close;
                }
            }
        }
    }

    /// The answer to [`Event::Admit`].
    pub fn admitted(&mut self, admission: Admission) {
        let check = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitAdmit(check) => check,
            other => return self.broken_invariant("admitted() without a pending check", &other),
        };
        let before = self.output.len();
        match (check, admission) {
            (Check::Sender(envelope), Admission::Accept) => {
                let shown = header_safe(&envelope.sender);
                self.transaction = Some(Transaction {
                    chunked: None,
                    sender: envelope.sender,
                    recipients: Vec::new(),
                });
                self.reply(format_args!("250 2.1.0 <{shown}> sender ok"));
            }
            (Check::Recipient(_, address), Admission::Accept) => {
                self.state = State::Resolve { address };
            }
            (_, Admission::Defer(text)) => {
                let text = target_text(&text);
                self.reply(format_args!("451 4.7.1 {text}"));
            }
            (_, Admission::Refuse(text)) => {
                let text = target_text(&text);
                self.reply(format_args!("550 5.7.1 {text}"));
            }
        }
        let _ = self.count_errors(before);
    }

    /// Who is sending in the current transaction (or about to, for MAIL).
    fn envelope(&self, sender: &str) -> Envelope {
        Envelope {
            protocol: self.config.protocol,
            peer_ip: self.peer_ip,
            helo: self.lhlo_name.clone().unwrap_or_default(),
            sender: sender.to_string(),
            tls: self.tls_active,
        }
    }

    /// The answer to [`Event::Resolve`].
    pub fn resolved(&mut self, result: Result<Vec<UserName>, ResolveError>) {
        let address = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitResolve { address } => address,
            other => return self.broken_invariant("resolved() without a pending RCPT", &other),
        };
        let shown = header_safe(&address);
        let before = self.output.len();
        self.resolved_reply(address, &shown, result);
        // An unknown user counts as an error: a dictionary attack ends soon.
        let _ = self.count_errors(before);
    }

    fn resolved_reply(
        &mut self,
        address: String,
        shown: &str,
        result: Result<Vec<UserName>, ResolveError>,
    ) {
        match result {
            Ok(users) if !users.is_empty() => match self.transaction.as_mut() {
                Some(transaction) => {
                    transaction.recipients.push(Recipient { address, users });
                    self.reply(format_args!("250 2.1.5 <{shown}> ok"));
                }
                None => self.reply("503 5.5.1 need MAIL command first"),
            },
            Ok(_) => {
                // The target broke its contract; refusing temporarily keeps
                // the mail queued instead of bouncing it.
                tracing::error!(event = "lmtp.resolve_empty", "resolve returned no users");
                self.reply(format_args!(
                    "451 4.3.0 <{shown}> address resolved to no user"
                ));
            }
            Err(ResolveError::UnknownUser) => {
                self.reply(format_args!("550 5.1.1 <{shown}> user unknown"));
            }
            Err(ResolveError::Temporary(text)) => {
                tracing::warn!(event = "lmtp.resolve_failed", error = %text);
                let text = target_text(&text);
                self.reply(format_args!("451 4.3.0 <{shown}> {text}"));
            }
        }
    }

    /// The answer to [`Event::Deliver`]: one result per user, in the order given.
    pub fn delivered(&mut self, results: Vec<Result<(), DeliverError>>) {
        let pending = match std::mem::replace(&mut self.state, State::Command) {
            State::AwaitDeliver(pending) => pending,
            other => {
                return self.broken_invariant("delivered() without a pending delivery", &other);
            }
        };
        if results.len() != pending.users_count {
            // Users without a result count as temporary failures below, so
            // the client retries rather than believing they got the message.
            tracing::error!(
                event = "lmtp.deliver_results",
                expected = pending.users_count,
                got = results.len(),
                "target returned the wrong number of results"
            );
        }
        if self.smtp() {
            return self.delivered_smtp(pending, &results);
        }
        let missing = DeliverError::Temporary("no result from the store".to_string());
        let mut delivered = 0usize;
        for (address, user_indices) in &pending.recipients {
            // An alias succeeds only if every user got the message; otherwise
            // the first failure speaks for it.
            let failure = user_indices
                .iter()
                .find_map(|&index| match results.get(index) {
                    Some(Ok(())) => None,
                    Some(Err(error)) => Some(error),
                    None => Some(&missing),
                });
            let shown = header_safe(address);
            match failure {
                None => {
                    delivered += 1;
                    self.reply(format_args!("250 2.0.0 <{shown}> delivered"));
                }
                Some(DeliverError::OverQuota) if self.config.over_quota_permanent => {
                    self.reply(format_args!("552 5.2.2 <{shown}> mailbox full"));
                }
                Some(DeliverError::OverQuota) => {
                    self.reply(format_args!("452 4.2.2 <{shown}> mailbox full"));
                }
                Some(DeliverError::Temporary(text)) => {
                    let text = target_text(text);
                    self.reply(format_args!("451 4.3.0 <{shown}> {text}"));
                }
                Some(DeliverError::Permanent(text)) => {
                    let text = target_text(text);
                    self.reply(format_args!("554 5.3.4 <{shown}> {text}"));
                }
                Some(DeliverError::Refused {
                    permanent,
                    status,
                    text,
                }) => {
                    let code = if *permanent { 550 } else { 451 };
                    let text = target_text(text);
                    self.reply(format_args!("{code} {status} <{shown}> {text}"));
                }
            }
        }
        tracing::info!(
            event = "lmtp.delivery",
            id = %pending.id,
            recipients = pending.recipients.len(),
            users = pending.users_count,
            size_bytes = pending.body_bytes,
            delivered,
            failed = pending.recipients.len() - delivered,
        );
    }

    /// SMTP's one reply for the whole message (RFC 5321 has no per-recipient
    /// replies after DATA). 250 only when every user has it stored. If any
    /// user failed temporarily the reply is 451 and the sender retries the
    /// whole message: users already served may then get it twice, which is
    /// better than a user never getting it. If all failures are permanent,
    /// the reply is permanent when nobody got the message, and 250 when some
    /// did (a 5xx would make the sender report the message as not delivered
    /// at all; the failed users are in the log).
    fn delivered_smtp(&mut self, pending: PendingDelivery, results: &[Result<(), DeliverError>]) {
        let missing = Err(DeliverError::Temporary(
            "no result from the store".to_string(),
        ));
        let outcomes: Vec<&Result<(), DeliverError>> = (0..pending.users_count)
            .map(|index| results.get(index).unwrap_or(&missing))
            .collect();
        let delivered = outcomes.iter().filter(|result| result.is_ok()).count();
        let temporary = outcomes.iter().find_map(|result| match result {
            Err(DeliverError::Temporary(text)) => Some(("451", "4.3.0", target_text(text))),
            Err(DeliverError::OverQuota) if !self.config.over_quota_permanent => {
                Some(("452", "4.2.2", "mailbox full".to_string()))
            }
            Err(DeliverError::Refused {
                permanent: false,
                status,
                text,
            }) => Some(("451", *status, target_text(text))),
            _ => None,
        });
        let permanent = outcomes.iter().find_map(|result| match result {
            Err(DeliverError::Permanent(text)) => Some(("554", "5.3.4", target_text(text))),
            Err(DeliverError::OverQuota) => Some(("552", "5.2.2", "mailbox full".to_string())),
            Err(DeliverError::Refused {
                permanent: true,
                status,
                text,
            }) => Some(("550", *status, target_text(text))),
            _ => None,
        });
        let id = &pending.id;
        match (temporary, permanent) {
            (Some((code, status, text)), _) => {
                self.reply(format_args!("{code} {status} {text}; try again later"));
            }
            (None, Some((code, status, text))) if delivered == 0 => {
                self.reply(format_args!("{code} {status} {text}"));
            }
            (None, _) => self.reply(format_args!("250 2.0.0 {id} message accepted")),
        }
        tracing::info!(
            event = "smtp.delivery",
            id = %pending.id,
            recipients = pending.recipients.len(),
            users = pending.users_count,
            size_bytes = pending.body_bytes,
            delivered,
            failed = pending.users_count - delivered,
        );
    }

    /// Finds the next complete command line in the input and returns its
    /// range (LF included), answering and skipping lines that are too long.
    fn next_line(&mut self) -> Option<(usize, usize)> {
        loop {
            let start = self.input_start;
            let pending = self.input.get(start..).unwrap_or_default();
            match pending.iter().position(|&byte| byte == b'\n') {
                Some(lf) => {
                    let end = start + lf + 1;
                    self.input_start = end;
                    if self.discarding_line {
                        // The tail of a line already answered as too long.
                        self.discarding_line = false;
                    } else if end - start > self.config.line_bytes_max {
                        if self.line_too_long() {
                            return None;
                        }
                    } else {
                        return Some((start, end));
                    }
                }
                None => {
                    if !self.discarding_line && pending.len() >= self.config.line_bytes_max {
                        // The line cannot fit even before its LF arrives:
                        // answer now and drop the rest as it comes, so the
                        // buffer never holds more than one line's bound.
                        self.discarding_line = true;
                        if self.line_too_long() {
                            return None;
                        }
                    }
                    if self.discarding_line {
                        self.input_start = self.input.len();
                    }
                    return None;
                }
            }
        }
    }

    /// Answers an over-long command line; in SMTP it counts against
    /// `errors_max` like any other bad command. True when that ended the
    /// session (`closing` is set; the caller stops reading).
    fn line_too_long(&mut self) -> bool {
        let before = self.output.len();
        self.reply("500 5.5.2 line too long");
        if self.count_errors(before).is_some() {
            self.closing = true;
            self.input_start = self.input.len();
            return true;
        }
        false
    }

    /// Handles one command line `input[start..end]`; in SMTP, checks its line
    /// end first and counts error replies against `errors_max`.
    fn command(&mut self, start: usize, end: usize) -> Option<Event> {
        if !self.smtp() {
            return self.command_line(start, end);
        }
        let line = self.input.get(start..end).unwrap_or_default();
        // The line ends at its first LF (next_line); it must be CRLF, with
        // no other CR in it (RFC 5321 §2.3.8).
        let clean = line.ends_with(b"\r\n")
            && !line
                .get(..line.len() - 2)
                .unwrap_or_default()
                .contains(&b'\r');
        let before = self.output.len();
        let event = if clean {
            self.command_line(start, end)
        } else {
            self.reply("500 5.5.2 bare CR or LF in command line");
            None
        };
        self.count_errors(before).or(event)
    }

    /// SMTP: counts the reply queued from `output[before..]` if it is a
    /// permanent error, and ends the session once `errors_max` is reached.
    /// Temporary replies do not count: they are our limits (`452 4.5.3` to
    /// a legitimate mailing with many recipients) or our trouble (`451`).
    fn count_errors(&mut self, before: usize) -> Option<Event> {
        if !self.smtp() || self.is_closed() {
            return None;
        }
        if self.output.get(before) == Some(&b'5') {
            self.errors += 1;
        }
        if self.errors >= self.config.errors_max.max(1) {
            let hostname = header_safe(&self.config.hostname);
            self.reply(format_args!(
                "421 4.7.0 {hostname} too many errors, closing connection"
            ));
            self.state = State::Closed;
            return Some(Event::Close);
        }
        None
    }

    /// Handles one command line `input[start..end]`.
    fn command_line(&mut self, start: usize, end: usize) -> Option<Event> {
        let line = self.input.get(start..end).unwrap_or_default();
        // smtp-proto reports `<postmaster>` as an empty address, like `<>`;
        // RFC 5321 §4.5.1 says it must be accepted as a recipient.
        let postmaster = contains_ignore_case(line, b"<postmaster>");
        let parsed = Request::parse(&mut line.iter()).map(Request::into_owned);
        if let Ok(request) = &parsed {
            tracing::debug!(event = "lmtp.command", verb = request.name());
        }
        match parsed {
            Ok(Request::Lhlo { host }) if !self.smtp() => self.lhlo(&host),
            Ok(Request::Helo { .. } | Request::Ehlo { .. }) if !self.smtp() => {
                self.reply("500 5.5.1 use LHLO");
            }
            Ok(Request::Lhlo { .. }) => self.reply("500 5.5.1 use EHLO or HELO"),
            Ok(Request::Ehlo { host }) => self.ehlo(&host),
            Ok(Request::Helo { host }) => {
                self.transaction = None;
                self.plain_helo = true;
                self.lhlo_name = Some(header_safe(&host));
                let hostname = header_safe(&self.config.hostname);
                self.reply(format_args!("250 {hostname}"));
            }
            Ok(Request::StartTls) if self.smtp() => return self.starttls(),
            Ok(Request::Bdat {
                chunk_size,
                is_last,
            }) if self.smtp() => self.bdat(chunk_size as u64, is_last),
            Ok(Request::Mail { from }) => return self.mail(from),
            Ok(Request::Rcpt { to }) => return self.rcpt(to, postmaster),
            Ok(Request::Data) => self.data(),
            Ok(Request::Rset) => {
                self.transaction = None;
                self.reply("250 2.0.0 ok");
            }
            Ok(Request::Noop { .. }) => self.reply("250 2.0.0 ok"),
            Ok(Request::Quit) => {
                let hostname = header_safe(&self.config.hostname);
                self.reply(format_args!("221 2.0.0 {hostname} closing connection"));
                self.state = State::Closed;
                return Some(Event::Close);
            }
            Ok(Request::Vrfy { .. }) => {
                self.reply("252 2.5.2 cannot VRFY user, but will accept message for delivery");
            }
            Ok(Request::Help { .. }) if self.smtp() => self.reply("214 2.0.0 see RFC 5321"),
            Ok(Request::Help { .. }) => self.reply("214 2.0.0 see RFC 2033"),
            // Commands smtp-proto knows that this server does not offer.
            Ok(other) => self.reply(format_args!("502 5.5.1 {} not implemented", other.name())),
            Err(ParseError::UnknownCommand) => self.reply("500 5.5.2 command not recognized"),
            Err(ParseError::InvalidSenderAddress) => {
                self.reply("501 5.1.7 bad sender address syntax");
            }
            Err(ParseError::InvalidRecipientAddress) => {
                self.reply("501 5.1.3 bad recipient address syntax");
            }
            Err(ParseError::UnsupportedParameter { .. }) => {
                self.reply("555 5.5.4 parameter not supported");
            }
            Err(ParseError::SyntaxError { syntax }) => {
                self.reply(format_args!("501 5.5.4 syntax: {syntax}"));
            }
            Err(ParseError::InvalidParameter { param }) => {
                self.reply(format_args!("501 5.5.4 invalid {param} parameter"));
            }
            // NeedsMoreData cannot happen for a whole line, and the response
            // errors belong to the client side; all are a syntax error here.
            Err(_) => self.reply("501 5.5.4 syntax error"),
        }
        None
    }

    fn lhlo(&mut self, host: &str) {
        // LHLO starts over, like EHLO (RFC 5321 §4.1.4).
        self.transaction = None;
        self.lhlo_name = Some(header_safe(host));
        let hostname = header_safe(&self.config.hostname);
        let size = self.config.message_bytes_max;
        self.reply(format_args!(
            "250-{hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE {size}\r\n250 ENHANCEDSTATUSCODES"
        ));
    }

    /// SMTP's EHLO: starts over, like LHLO, with SMTP's extensions.
    fn ehlo(&mut self, host: &str) {
        self.transaction = None;
        self.plain_helo = false;
        self.lhlo_name = Some(header_safe(host));
        let hostname = header_safe(&self.config.hostname);
        let size = self.config.message_bytes_max;
        let starttls = if self.tls_available && !self.tls_active {
            "250-STARTTLS\r\n"
        } else {
            ""
        };
        self.reply(format_args!(
            "250-{hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-SIZE {size}\r\n250-CHUNKING\r\n{starttls}250 ENHANCEDSTATUSCODES"
        ));
    }

    /// SMTP's STARTTLS (RFC 3207).
    fn starttls(&mut self) -> Option<Event> {
        if !self.tls_available || self.tls_active {
            self.reply("502 5.5.1 STARTTLS not available");
            return None;
        }
        if self.transaction.is_some() {
            self.reply("503 5.5.1 STARTTLS inside a mail transaction");
            return None;
        }
        self.reply("220 2.0.0 ready to start TLS");
        // Whatever came after the STARTTLS line was sent in the clear and
        // could have been injected by a man in the middle; it must not run
        // as if it came over TLS (CVE-2011-0411). Drop it.
        let dropped = self.input.len().saturating_sub(self.input_start);
        if dropped > 0 {
            tracing::info!(event = "smtp.starttls_pipelined", dropped_bytes = dropped);
        }
        self.input.clear();
        self.input_start = 0;
        self.discarding_line = false;
        Some(Event::StartTls)
    }

    fn mail(&mut self, from: MailFrom<String>) -> Option<Event> {
        if self.lhlo_name.is_none() {
            if self.smtp() {
                self.reply("503 5.5.1 send EHLO first");
            } else {
                self.reply("503 5.5.1 send LHLO first");
            }
            return None;
        }
        if self.transaction.is_some() {
            self.reply("503 5.5.1 sender already given");
            return None;
        }
        // smtp-proto parses many extensions; only what LHLO advertised is
        // accepted (RFC 5321 §4.1.1.11: 555 for the rest).
        let body_flags = if self.smtp() {
            MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8
        } else {
            MAIL_BODY_7BIT | MAIL_BODY_8BITMIME
        };
        let unadvertised = from.flags & !body_flags != 0
            || from.trans_id.is_some()
            || from.by != 0
            || from.env_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        // After HELO no extension was offered, so no parameter is valid.
        let after_helo = self.smtp() && self.plain_helo && (from.flags != 0 || from.size != 0);
        if unadvertised || after_helo {
            self.reply("555 5.5.4 parameter not supported");
            return None;
        }
        let declared_bytes = u64::try_from(from.size).unwrap_or(u64::MAX);
        if declared_bytes > self.config.message_bytes_max {
            self.reply("552 5.3.4 message size exceeds fixed maximum message size");
            return None;
        }
        if self.smtp() {
            let check = Check::Sender(self.envelope(&from.address));
            self.state = State::AwaitAdmit(check.clone());
            return Some(Event::Admit(check));
        }
        let shown = header_safe(&from.address);
        self.transaction = Some(Transaction {
            chunked: None,
            sender: from.address,
            recipients: Vec::new(),
        });
        self.reply(format_args!("250 2.1.0 <{shown}> sender ok"));
        None
    }

    fn rcpt(&mut self, to: RcptTo<String>, postmaster: bool) -> Option<Event> {
        let Some(transaction) = &self.transaction else {
            self.reply("503 5.5.1 need MAIL command first");
            return None;
        };
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            self.reply("555 5.5.4 parameter not supported");
            return None;
        }
        if transaction.recipients.len() >= self.config.recipients_max {
            self.reply("452 4.5.3 too many recipients");
            return None;
        }
        let address = if !to.address.is_empty() {
            to.address
        } else if postmaster {
            "postmaster".to_string()
        } else {
            self.reply("501 5.1.3 bad recipient address syntax");
            return None;
        };
        if self.smtp() && !self.is_local(&address) {
            let shown = header_safe(&address);
            self.reply(format_args!("550 5.7.1 <{shown}> relaying denied"));
            return None;
        }
        if self.smtp() {
            let check = Check::Recipient(self.envelope(&transaction.sender), address);
            self.state = State::AwaitAdmit(check.clone());
            return Some(Event::Admit(check));
        }
        self.state = State::AwaitResolve {
            address: address.clone(),
        };
        Some(Event::Resolve { address })
    }

    /// SMTP: whether mail for `address` is ours to take: its domain is one
    /// of the local domains, or it is plain `postmaster` (RFC 5321 §4.5.1).
    fn is_local(&self, address: &str) -> bool {
        match address.rsplit_once('@') {
            Some((_, domain)) => {
                let domain = domain.trim_end_matches('.');
                self.config
                    .local_domains
                    .iter()
                    .any(|local| local.eq_ignore_ascii_case(domain))
            }
            None => address.eq_ignore_ascii_case("postmaster"),
        }
    }

    /// SMTP's BDAT (RFC 3030): the chunk is read whatever the answer, since
    /// its size says where the next command starts.
    fn bdat(&mut self, size: u64, last: bool) {
        let keep = match &self.transaction {
            None => {
                self.reply("503 5.5.1 need MAIL command first");
                false
            }
            Some(transaction) if transaction.recipients.is_empty() => {
                self.reply("503 5.5.1 no valid recipients");
                false
            }
            Some(_) => true,
        };
        self.state = State::Bdat(BdatChunk {
            remaining: size,
            last,
            keep,
        });
    }

    /// The end of one BDAT chunk: its reply, or the message's delivery.
    fn bdat_chunk_done(&mut self, chunk: &BdatChunk) -> Option<Event> {
        if !chunk.keep {
            return None;
        }
        let Some(transaction) = self.transaction.as_mut() else {
            let state = std::mem::replace(&mut self.state, State::Closed);
            self.broken_invariant("BDAT chunk without a transaction", &state);
            return Some(Event::Close);
        };
        let chunked = transaction.chunked.get_or_insert_with(Default::default);
        let bytes = chunked.bytes;
        if chunked.too_large {
            // Said at once rather than after LAST: the sender stops sending.
            let recipients = transaction.recipients.len();
            self.transaction = None;
            self.refuse_smtp_message(Refusal::TooBig, recipients, bytes);
            return None;
        }
        if !chunk.last {
            self.reply(format_args!("250 2.0.0 {bytes} octets received"));
            return None;
        }
        let mut transaction = self.transaction.take()?;
        let body = transaction.chunked.take().unwrap_or_default().body;
        // BDAT is framed by sizes, so a bare CR or LF cannot end anything
        // here; it is refused all the same, as in DATA, so that nothing
        // behind us (a forward over DATA, a client) ever sees one from SMTP.
        if has_bare_line_end(&body) {
            self.refuse_smtp_message(Refusal::BareLineEnd, transaction.recipients.len(), bytes);
            return None;
        }
        Some(self.deliver_message(transaction, body, bytes))
    }

    fn data(&mut self) {
        match &self.transaction {
            None => self.reply("503 5.5.1 need MAIL command first"),
            Some(transaction) if transaction.chunked.is_some() => {
                self.reply("503 5.5.1 DATA after BDAT in one transaction");
            }
            Some(transaction) if transaction.recipients.is_empty() => {
                self.reply("503 5.5.1 no valid recipients");
            }
            Some(_) => {
                self.reply("354 start mail input; end with <CRLF>.<CRLF>");
                let max = self.config.message_bytes_max;
                self.state = State::Data(if self.smtp() {
                    DataDecoder::refusing_bare_line_ends(max)
                } else {
                    DataDecoder::new(max)
                });
            }
        }
    }

    /// The end of a DATA body: refuse it, or hand it to the target.
    fn data_done(&mut self, decoder: DataDecoder) -> Option<Event> {
        self.state = State::Command;
        let body_bytes = decoder.body_bytes();
        let Some(transaction) = self.transaction.take() else {
            // data() only enters the Data state with a transaction.
            let state = std::mem::replace(&mut self.state, State::Closed);
            self.broken_invariant("DATA ended without a transaction", &state);
            return Some(Event::Close);
        };
        let body = match decoder.finish() {
            DataOutcome::Message(body) => body,
            DataOutcome::BareLineEnd { bytes } => {
                self.refuse_smtp_message(Refusal::BareLineEnd, transaction.recipients.len(), bytes);
                return None;
            }
            DataOutcome::TooLarge { bytes } if self.smtp() => {
                self.refuse_smtp_message(Refusal::TooBig, transaction.recipients.len(), bytes);
                return None;
            }
            DataOutcome::TooLarge { bytes } => {
                for recipient in &transaction.recipients {
                    let shown = header_safe(&recipient.address);
                    self.reply(format_args!("552 5.3.4 <{shown}> message too big"));
                }
                tracing::info!(
                    event = "lmtp.delivery",
                    recipients = transaction.recipients.len(),
                    size_bytes = bytes,
                    delivered = 0,
                    failed = transaction.recipients.len(),
                    reason = "too big",
                );
                return None;
            }
        };

        Some(self.deliver_message(transaction, body, body_bytes))
    }

    /// A whole message received (by DATA or BDAT): prepends the trace
    /// headers and hands it to the target for every user once.
    fn deliver_message(
        &mut self,
        transaction: Transaction,
        body: Vec<u8>,
        body_bytes: u64,
    ) -> Event {
        let now = (self.clock)();
        let id = message_id(now);
        let envelope = self.envelope(&transaction.sender);
        let headers = trace_headers(&TraceFields {
            sender: &transaction.sender,
            lhlo_name: self.lhlo_name.as_deref().unwrap_or("unknown"),
            peer_ip: self.peer_ip,
            hostname: &self.config.hostname,
            with: match (self.config.protocol, self.plain_helo, self.tls_active) {
                (Protocol::Lmtp, _, _) => "LMTP",
                (Protocol::Smtp, true, false) => "SMTP",
                (Protocol::Smtp, true, true) => "SMTPS",
                (Protocol::Smtp, false, false) => "ESMTP",
                (Protocol::Smtp, false, true) => "ESMTPS",
            },
            id: &id,
            now,
        });
        let mut message = Vec::with_capacity(headers.len() + body.len());
        message.extend_from_slice(headers.as_bytes());
        message.extend_from_slice(&body);
        drop(body);

        // Each user once, even when two RCPTs (or an alias and a user) lead
        // to the same mailbox; the replies still go per RCPT.
        let mut users: Vec<UserName> = Vec::new();
        let mut user_index: HashMap<UserName, usize> = HashMap::new();
        let mut recipients = Vec::with_capacity(transaction.recipients.len());
        for recipient in transaction.recipients {
            let indices = recipient
                .users
                .into_iter()
                .map(|user| {
                    *user_index.entry(user).or_insert_with_key(|user| {
                        users.push(user.clone());
                        users.len() - 1
                    })
                })
                .collect();
            recipients.push((recipient.address, indices));
        }
        self.state = State::AwaitDeliver(PendingDelivery {
            id,
            recipients,
            users_count: users.len(),
            body_bytes,
        });
        Event::Deliver {
            message,
            users,
            envelope,
        }
    }

    /// SMTP: the one reply refusing a whole message for its content (by DATA
    /// or BDAT), and its log line. Not counted against `errors_max`.
    fn refuse_smtp_message(&mut self, refusal: Refusal, recipients: usize, bytes: u64) {
        let (reply, reason) = match refusal {
            Refusal::BareLineEnd => (
                "550 5.6.0 message refused: bare CR or LF (lines must end in CRLF, RFC 5321 2.3.8)",
                "bare line end",
            ),
            Refusal::TooBig => ("552 5.3.4 message too big", "too big"),
        };
        self.reply(reply);
        tracing::info!(
            event = "smtp.delivery",
            recipients,
            size_bytes = bytes,
            delivered = 0,
            reason,
        );
    }

    /// Ends the session after the driver broke the calling contract: the
    /// client is told to retry later, nothing wrong is promised.
    fn broken_invariant(&mut self, what: &'static str, state: &State) {
        tracing::error!(event = "lmtp.invariant", what, state = ?std::mem::discriminant(state));
        self.reply("421 4.3.0 internal error, closing connection");
        self.state = State::Closed;
    }

    /// Queues one reply (possibly several lines joined by CRLF).
    fn reply(&mut self, text: impl Display) {
        // Writing into a Vec cannot fail.
        let _ = write!(self.output, "{text}\r\n");
    }
}

/// Why SMTP refuses a whole message for its content.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    BareLineEnd,
    TooBig,
}

/// Error text from the target, made safe for one reply line.
fn target_text(text: &str) -> String {
    let text = header_safe(text);
    match text.char_indices().nth(TARGET_TEXT_CHARS_MAX) {
        Some((cut, _)) => text.get(..cut).unwrap_or_default().to_string(),
        None if text.is_empty() => "temporary failure".to_string(),
        None => text,
    }
}

/// Whether `bytes` hold a CR not followed by LF, or an LF not preceded by CR.
fn has_bare_line_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &byte)| match byte {
        b'\r' => bytes.get(i + 1) != Some(&b'\n'),
        b'\n' => i == 0 || bytes.get(i - 1) != Some(&b'\r'),
        _ => false,
    })
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests;
