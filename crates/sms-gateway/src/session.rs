//! One bound SMPP session: bind, then a single loop that submits due
//! messages within the window and the rate limit, matches responses to
//! requests by sequence number, keeps the link alive, answers the SMSC,
//! and on shutdown drains and unbinds.
//!
//! Everything happens on one task and one `select!`, so the state below
//! needs no locks. Writes happen between selects; a PDU is a few hundred
//! octets and the window bounds how many are in the socket buffer, so a
//! write cannot block for long while the SMSC waits for us to read (and a
//! write that does is cut off by the response timeout).

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rusmpp::pdus::{BindTransceiver, BindTransmitter, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff::retry_delay;
use crate::config::{BindMode, SmppConfig};
use crate::connection::Connection;
use crate::error::Error;
use crate::outbox::{Outbox, OutgoingSms};
use crate::rate::TokenBucket;
use crate::receipt::{Delivered, read_deliver_sm};
use crate::status::{StatusClass, classify_status, status_reason};
use crate::submit::{Source, build_submits};

/// How often the outbox is polled when nothing wakes the gateway: the
/// fallback for an outbox whose change signal was missed.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long new submits pause after the SMSC said it is throttling us or
/// its queue is full, so the rest of the window does not hit the same wall.
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);

/// ESME_RTHROTTLED and ESME_RMSGQFUL.
const STATUS_THROTTLED: u32 = 0x58;
const STATUS_QUEUE_FULL: u32 = 0x14;

/// What a request waiting for its response was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// One segment of a message, under one lease of it.
    Submit {
        id: u64,
        lease: u64,
        segment: usize,
    },
    EnquireLink,
    Unbind,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    deadline: Instant,
}

/// A message leased from the outbox and being sent.
#[derive(Debug)]
struct Message {
    sms: OutgoingSms,
    /// Distinguishes this lease from a later one of the same id, so a late
    /// response to an abandoned attempt is never credited to a new one.
    lease: u64,
    /// One prepared submit_sm per segment.
    submits: Vec<SubmitSm>,
    /// The SMSC's id for each accepted segment.
    message_ids: Vec<Option<String>>,
    /// Segments accepted so far.
    accepted: usize,
}

/// How a session ended without an error.
pub enum Ended {
    /// Shutdown was requested; the session drained and unbound.
    Shutdown,
}

pub struct Session<'a> {
    config: &'a SmppConfig,
    outbox: &'a Arc<dyn Outbox>,
    connection: Connection,
    /// The next sequence number (1 to 0x7FFFFFFF, then wraps).
    sequence: u32,
    /// Requests sent and not yet answered, by sequence number. At most
    /// `window_max` submits plus one enquire_link or unbind.
    pending: HashMap<u32, Pending>,
    /// Submits among `pending` (the window in use).
    submits_pending: usize,
    /// Messages leased and not yet reported, by outbox id.
    messages: HashMap<u64, Message>,
    /// Segments waiting for room in the window or a token: (id, segment).
    /// Holds at most one fetch of messages: window_max × segments_max.
    queue: VecDeque<(u64, usize)>,
    next_lease: u64,
    bucket: TokenBucket,
    /// Submits paused until then after a throttling answer.
    paused_until: Option<Instant>,
    /// When the last PDU arrived, for enquire_link on an idle link.
    last_received: Instant,
    /// The sender as every submit_sm carries it.
    source: Source,
}

impl<'a> Session<'a> {
    /// Connects and binds.
    ///
    /// # Errors
    ///
    /// Connection failures, an invalid configuration, a refused bind or no
    /// bind response within the response timeout.
    pub async fn open(
        config: &'a SmppConfig,
        outbox: &'a Arc<dyn Outbox>,
    ) -> Result<Session<'a>, Error> {
        let timeout = config.response_timeout();
        let connection = Connection::open(config, timeout).await?;
        let now = Instant::now();
        let mut session = Session {
            config,
            outbox,
            connection,
            sequence: 1,
            pending: HashMap::new(),
            submits_pending: 0,
            messages: HashMap::new(),
            queue: VecDeque::new(),
            next_lease: 1,
            bucket: TokenBucket::new(config.rate_per_second, now),
            paused_until: None,
            last_received: now,
            source: Source::from_config(&config.source),
        };
        session.bind().await?;
        Ok(session)
    }

    fn next_sequence(&mut self) -> u32 {
        let sequence = self.sequence;
        self.sequence = if sequence >= 0x7FFF_FFFF {
            1
        } else {
            sequence + 1
        };
        sequence
    }

    async fn write(&mut self, command: &Command) -> Result<(), Error> {
        let timeout = self.config.response_timeout();
        tokio::time::timeout(timeout, self.connection.write(command))
            .await
            .map_err(|_| Error::Timeout(timeout.as_secs()))?
    }

    async fn bind(&mut self) -> Result<(), Error> {
        let config = self.config;
        let system_id = COctetString::<1, 16>::from_str(&config.system_id).map_err(|error| {
            Error::Config(format!("system_id (at most 15 ASCII characters): {error}"))
        })?;
        let password = COctetString::<1, 9>::from_str(config.password.expose())
            .map_err(|_| Error::Config("password must be at most 8 ASCII characters".to_owned()))?;
        let sequence = self.next_sequence();
        let command = match config.bind_mode {
            BindMode::Transmitter => Command::new(
                CommandStatus::EsmeRok,
                sequence,
                BindTransmitter::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(COctetString::empty())
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            ),
            BindMode::Transceiver => Command::new(
                CommandStatus::EsmeRok,
                sequence,
                BindTransceiver::builder()
                    .system_id(system_id)
                    .password(password)
                    .system_type(COctetString::empty())
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .addr_ton(Ton::Unknown)
                    .addr_npi(Npi::Unknown)
                    .address_range(COctetString::empty())
                    .build(),
            ),
        };
        self.write(&command).await?;
        let timeout = self.config.response_timeout();
        let deadline = Instant::now() + timeout;
        loop {
            let command = tokio::time::timeout_at(deadline, self.connection.read())
                .await
                .map_err(|_| Error::Timeout(timeout.as_secs()))??;
            let is_bind_response = matches!(
                command.id(),
                CommandId::BindTransmitterResp
                    | CommandId::BindTransceiverResp
                    | CommandId::GenericNack
            );
            if command.sequence_number() != sequence || !is_bind_response {
                // Nothing else is expected before the bind completes (an
                // early enquire_link is answered, the rest ignored).
                if command.id() == CommandId::EnquireLink {
                    let reply = Command::new(
                        CommandStatus::EsmeRok,
                        command.sequence_number(),
                        Pdu::EnquireLinkResp,
                    );
                    self.write(&reply).await?;
                }
                continue;
            }
            let status = u32::from(command.status());
            if status != 0 {
                return Err(Error::BindRefused {
                    status,
                    reason: status_reason(status),
                });
            }
            self.last_received = Instant::now();
            tracing::info!(
                event = "sms_bind",
                smsc = %config.smsc,
                system_id = %config.system_id,
                mode = ?config.bind_mode,
                tls = config.tls,
                "bound to the SMSC"
            );
            return Ok(());
        }
    }

    /// Runs the bound session until shutdown (then drains and unbinds) or
    /// an error. Either way every leased message is reported before this
    /// returns: an error reports the in-flight ones as temporary failures.
    pub async fn serve(
        mut self,
        shutdown: &mut watch::Receiver<bool>,
        changed: &mut watch::Receiver<u64>,
    ) -> Result<Ended, Error> {
        let result = self.serve_inner(shutdown, changed).await;
        match result {
            Ok(Ended::Shutdown) => {
                if let Err(error) = self.drain().await {
                    // The session is ending anyway; nothing to reconnect for.
                    tracing::warn!(event = "sms_unbind_failed", %error);
                }
                self.release_all("the gateway shut down before the SMSC answered");
                self.connection.close().await;
                Ok(Ended::Shutdown)
            }
            Err(error) => {
                self.release_all(&format!("connection lost mid-message: {error}"));
                Err(error)
            }
        }
    }

    async fn serve_inner(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
        changed: &mut watch::Receiver<u64>,
    ) -> Result<Ended, Error> {
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Once the outbox drops its sender, `changed()` is ready forever;
        // stop listening then and rely on the poll.
        let mut outbox_signal = true;
        loop {
            if *shutdown.borrow_and_update() {
                return Ok(Ended::Shutdown);
            }
            let rate_wake = self.submit_what_fits().await?;
            let wake = self.next_wake(rate_wake);
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        // The owner of the shutdown signal is gone: stop.
                        return Ok(Ended::Shutdown);
                    }
                }
                command = self.connection.read() => self.handle(command?).await?,
                signal = changed.changed(), if outbox_signal => outbox_signal = signal.is_ok(),
                _ = poll.tick() => {}
                () = tokio::time::sleep_until(wake) => {}
            }
            self.check_timers().await?;
        }
    }

    /// The earliest time something is due: a rate token, the end of a
    /// throttling pause, a response deadline, the next enquire_link.
    fn next_wake(&self, rate_wake: Option<Instant>) -> Instant {
        let mut wake = self.last_received + self.config.enquire_link_interval();
        for candidate in [rate_wake, self.paused_until].into_iter().flatten() {
            wake = wake.min(candidate);
        }
        for pending in self.pending.values() {
            wake = wake.min(pending.deadline);
        }
        wake
    }

    /// Leases due messages and submits segments while the window has room
    /// and the rate allows. Returns when the next token comes, if the rate
    /// is what stopped it.
    async fn submit_what_fits(&mut self) -> Result<Option<Instant>, Error> {
        loop {
            let now = Instant::now();
            if self.submits_pending >= self.config.window() {
                return Ok(None);
            }
            if let Some(until) = self.paused_until {
                if now < until {
                    return Ok(None);
                }
                self.paused_until = None;
            }
            // Drop segments of messages already finished (one failed segment
            // ends the message).
            while let Some(&(id, _)) = self.queue.front() {
                if self.messages.contains_key(&id) {
                    break;
                }
                self.queue.pop_front();
            }
            if self.queue.is_empty() {
                let room = self.config.window() - self.submits_pending;
                let due = self.outbox.next_due(SystemTime::now(), room);
                if due.is_empty() {
                    return Ok(None);
                }
                for sms in due {
                    self.admit(sms);
                }
                continue;
            }
            if let Err(wait) = self.bucket.take(now) {
                return Ok(Some(now + wait));
            }
            if let Some((id, segment)) = self.queue.pop_front() {
                self.submit(id, segment).await?;
            }
        }
    }

    /// Encodes a leased message and queues its segments, or reports it
    /// failed when it cannot be encoded or addressed.
    fn admit(&mut self, sms: OutgoingSms) {
        let id = sms.id;
        if self.messages.contains_key(&id) {
            // A broken outbox lease; sending it twice at once would bill twice.
            tracing::error!(
                event = "sms_duplicate_lease",
                id,
                "the outbox handed out a message already being sent"
            );
            return;
        }
        let encoded = match sms::encode(&sms.text, sms.reference(), &self.config.encode_options()) {
            Ok(encoded) => encoded,
            Err(error) => {
                self.report_failed(&sms, format!("cannot encode the text: {error}"));
                return;
            }
        };
        let submits =
            match build_submits(&sms, &encoded, &self.source, self.config.request_receipts) {
                Ok(submits) => submits,
                Err(reason) => {
                    self.report_failed(&sms, reason);
                    return;
                }
            };
        let lease = self.next_lease;
        self.next_lease += 1;
        let segments = submits.len();
        for segment in 0..segments {
            self.queue.push_back((id, segment));
        }
        tracing::debug!(
            event = "sms_admit",
            id,
            segments,
            coding = ?encoded.coding,
            text_chars = sms.text.chars().count(),
            attempts = sms.attempts,
        );
        self.messages.insert(
            id,
            Message {
                sms,
                lease,
                submits,
                message_ids: vec![None; segments],
                accepted: 0,
            },
        );
    }

    async fn submit(&mut self, id: u64, segment: usize) -> Result<(), Error> {
        let Some(message) = self.messages.get(&id) else {
            return Ok(());
        };
        let Some(submit) = message.submits.get(segment) else {
            return Ok(());
        };
        let request = Request::Submit {
            id,
            lease: message.lease,
            segment,
        };
        let octets = submit.short_message().len();
        let segments = message.submits.len();
        let submit = submit.clone();
        let sequence = self.next_sequence();
        let command = Command::new(CommandStatus::EsmeRok, sequence, submit);
        self.write(&command).await?;
        self.track(sequence, request);
        tracing::debug!(
            event = "sms_submit",
            id,
            segment = segment + 1,
            segments,
            octets,
            sequence
        );
        Ok(())
    }

    fn track(&mut self, sequence: u32, request: Request) {
        if matches!(request, Request::Submit { .. }) {
            self.submits_pending += 1;
        }
        let deadline = Instant::now() + self.config.response_timeout();
        if let Some(old) = self.pending.insert(sequence, Pending { request, deadline }) {
            // Only after 2^31 requests with one still unanswered; the old
            // one is as good as timed out.
            self.untrack(old.request);
        }
    }

    fn untrack(&mut self, request: Request) {
        if matches!(request, Request::Submit { .. }) {
            self.submits_pending = self.submits_pending.saturating_sub(1);
        }
    }

    /// One PDU from the SMSC.
    async fn handle(&mut self, command: Command) -> Result<(), Error> {
        self.last_received = Instant::now();
        let sequence = command.sequence_number();
        let status = u32::from(command.status());
        match command.id() {
            CommandId::SubmitSmResp => {
                let message_id = match command.pdu() {
                    Some(Pdu::SubmitSmResp(response)) => response.message_id().as_str().to_owned(),
                    _ => String::new(),
                };
                self.on_response(sequence, status, message_id);
            }
            CommandId::GenericNack | CommandId::EnquireLinkResp | CommandId::UnbindResp => {
                self.on_response(sequence, status, String::new());
            }
            CommandId::EnquireLink => {
                let reply = Command::new(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp);
                self.write(&reply).await?;
            }
            CommandId::DeliverSm => {
                if let Some(Pdu::DeliverSm(deliver_sm)) = command.pdu() {
                    self.on_deliver_sm(deliver_sm);
                }
                let reply = Command::new(
                    CommandStatus::EsmeRok,
                    sequence,
                    DeliverSmResp::builder()
                        .message_id(COctetString::empty())
                        .build(),
                );
                self.write(&reply).await?;
            }
            CommandId::Unbind => {
                let reply = Command::new(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp);
                self.write(&reply).await?;
                return Err(Error::UnboundByPeer);
            }
            id if u32::from(id) & 0x8000_0000 == 0 => {
                // A request we do not serve (data_sm, alert_notification…).
                tracing::debug!(
                    event = "sms_unsupported_request",
                    command_id = u32::from(id)
                );
                let reply = Command::new(CommandStatus::EsmeRinvcmdid, sequence, Pdu::GenericNack);
                self.write(&reply).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A response (or generic_nack) to one of our requests.
    fn on_response(&mut self, sequence: u32, status: u32, message_id: String) {
        let Some(pending) = self.pending.remove(&sequence) else {
            tracing::debug!(event = "sms_unexpected_response", sequence, status);
            return;
        };
        self.untrack(pending.request);
        let Request::Submit { id, lease, segment } = pending.request else {
            return;
        };
        let Some(message) = self
            .messages
            .get_mut(&id)
            .filter(|message| message.lease == lease)
        else {
            // The message was already given up under this lease.
            return;
        };
        if status != 0 {
            if status == STATUS_THROTTLED || status == STATUS_QUEUE_FULL {
                self.paused_until = Some(Instant::now() + THROTTLE_PAUSE);
            }
            let reason = status_reason(status);
            match classify_status(status) {
                StatusClass::Temporary => self.finish_retry(id, reason),
                StatusClass::Permanent => {
                    if let Some(message) = self.messages.remove(&id) {
                        self.report_failed(&message.sms, format!("the SMSC refused it: {reason}"));
                    }
                }
            }
            return;
        }
        if message.message_ids[segment].is_none() {
            message.message_ids[segment] = Some(message_id);
            message.accepted += 1;
        }
        if message.accepted == message.submits.len()
            && let Some(message) = self.messages.remove(&id)
        {
            let ids: Vec<String> = message
                .message_ids
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect();
            tracing::info!(
                event = "sms_sent",
                id,
                segments = ids.len(),
                attempts = message.sms.attempts + 1,
                smsc_message_ids = ?ids,
            );
            self.outbox.sent(id, ids);
        }
    }

    fn on_deliver_sm(&mut self, deliver_sm: &DeliverSm) {
        match read_deliver_sm(deliver_sm) {
            Delivered::Receipt(receipt) => {
                tracing::info!(
                    event = "sms_receipt",
                    smsc_message_id = %receipt.message_id,
                    state = %receipt.state,
                    delivered = receipt.delivered,
                );
                self.outbox
                    .receipt(&receipt.message_id, receipt.delivered, receipt.detail());
            }
            Delivered::ReceiptWithoutId { octets } => tracing::warn!(
                event = "sms_receipt_unparsed",
                octets,
                "a delivery receipt without a message id"
            ),
            // Replies from handsets are not handled yet; acknowledged so
            // the SMSC does not redeliver them forever.
            Delivered::MobileOriginated { octets } => tracing::info!(
                event = "sms_mobile_originated",
                octets,
                "ignored a message from a handset"
            ),
        }
    }

    /// Response deadlines and enquire_link on an idle link.
    async fn check_timers(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(sequence, _)| *sequence)
            .collect();
        for sequence in expired {
            let Some(pending) = self.pending.remove(&sequence) else {
                continue;
            };
            self.untrack(pending.request);
            match pending.request {
                Request::Submit { id, lease, .. } => {
                    if self
                        .messages
                        .get(&id)
                        .is_some_and(|message| message.lease == lease)
                    {
                        let reason = format!(
                            "no submit_sm_resp within {} s",
                            self.config.response_timeout().as_secs()
                        );
                        self.finish_retry(id, reason);
                    }
                }
                Request::EnquireLink | Request::Unbind => {
                    return Err(Error::Timeout(self.config.response_timeout().as_secs()));
                }
            }
        }
        let enquire_pending = self
            .pending
            .values()
            .any(|pending| pending.request == Request::EnquireLink);
        if !enquire_pending && now >= self.last_received + self.config.enquire_link_interval() {
            let sequence = self.next_sequence();
            self.write(&Command::new(
                CommandStatus::EsmeRok,
                sequence,
                Pdu::EnquireLink,
            ))
            .await?;
            self.track(sequence, Request::EnquireLink);
        }
        Ok(())
    }

    /// A temporary failure: back to the outbox with a delay, or failed for
    /// good after `attempts_max`.
    fn finish_retry(&mut self, id: u64, reason: String) {
        let Some(message) = self.messages.remove(&id) else {
            return;
        };
        self.report_retry(&message.sms, reason, true);
    }

    fn report_retry(&self, sms: &OutgoingSms, reason: String, with_delay: bool) {
        let attempts = sms.attempts.saturating_add(1);
        if attempts >= self.config.attempts_max.max(1) {
            self.report_failed(
                sms,
                format!("gave up after {attempts} attempts; last: {reason}"),
            );
            return;
        }
        let delay = if with_delay {
            retry_delay(
                attempts,
                Duration::from_millis(self.config.retry_min_ms),
                Duration::from_millis(self.config.retry_max_ms),
            )
        } else {
            Duration::ZERO
        };
        tracing::info!(event = "sms_retry", id = sms.id, attempts, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), %reason);
        self.outbox.retry(sms.id, SystemTime::now() + delay, reason);
    }

    fn report_failed(&self, sms: &OutgoingSms, reason: String) {
        tracing::warn!(event = "sms_failed", id = sms.id, text_chars = sms.text.chars().count(), %reason);
        self.outbox.failed(sms.id, reason);
    }

    /// Reports every message still leased as a temporary failure.
    fn release_all(&mut self, reason: &str) {
        self.queue.clear();
        let messages: Vec<Message> = self.messages.drain().map(|(_, message)| message).collect();
        for message in messages {
            self.report_retry(&message.sms, reason.to_owned(), true);
        }
    }

    /// Shutdown: stop taking messages, give back those not fully submitted,
    /// wait up to the response timeout for the rest, then unbind.
    async fn drain(&mut self) -> Result<(), Error> {
        let unsent: HashSet<u64> = self.queue.drain(..).map(|(id, _)| id).collect();
        for id in unsent {
            if let Some(message) = self.messages.remove(&id) {
                self.report_retry(
                    &message.sms,
                    "the gateway shut down before sending it".to_owned(),
                    false,
                );
            }
        }
        let timeout = self.config.response_timeout();
        let deadline = Instant::now() + timeout;
        while !self.messages.is_empty() {
            match tokio::time::timeout_at(deadline, self.connection.read()).await {
                Ok(command) => self.handle(command?).await?,
                Err(_) => break,
            }
        }
        let sequence = self.next_sequence();
        self.write(&Command::new(CommandStatus::EsmeRok, sequence, Pdu::Unbind))
            .await?;
        self.track(sequence, Request::Unbind);
        let deadline = Instant::now() + timeout;
        while self
            .pending
            .values()
            .any(|pending| pending.request == Request::Unbind)
        {
            match tokio::time::timeout_at(deadline, self.connection.read()).await {
                Ok(command) => self.handle(command?).await?,
                Err(_) => return Err(Error::Timeout(timeout.as_secs())),
            }
        }
        tracing::info!(event = "sms_unbound", smsc = %self.config.smsc);
        Ok(())
    }
}
