//! The SMPP 3.4 client that sends SMS from a durable outbox to an SMSC.
//!
//! # Design
//!
//! The gateway is one long-running task, [`run`]. It owns one SMPP session
//! at a time (TCP, optionally TLS, bound as transmitter or transceiver) and
//! pulls work from an [`Outbox`], the store's queue of messages to send.
//! Nothing is queued inside the gateway beyond what fits in the window: the
//! outbox is the only place a message waits, so a crash or restart loses
//! nothing but the answers to the few PDUs in flight (the store re-leases
//! those messages; the SMSC may then see one twice, never zero times).
//!
//! Layers, bottom up:
//!
//! - the `sms` crate turns text into segments (GSM-7 or UCS-2, the
//!   concatenation UDH, packed or unpacked septets); this crate never
//!   looks inside a text, it only puts the octets in `short_message`;
//! - `rusmpp` supplies the PDU types and the codec; `connection` cuts
//!   frames by `command_length` and has rusmpp decode each one, falling
//!   back to the header when a body is malformed (one SMSC quirk must not
//!   cost the session). We do not use `rusmppc`, rusmpp's client, though it
//!   would do the job (each request is a future, so a window is a set of
//!   them, and deliver_sm arrives as events): it always compiles its own
//!   DNS resolver (hickory-resolver with moka, url and idna with the ICU
//!   tables) and rusmpp's text-encoding extras, 146 crates against the 62
//!   of this crate's whole tree, and it keeps sequence numbers to itself,
//!   which the shutdown drain and the late-response check below need. The
//!   session loop it would have saved is about 700 lines with its tests'
//!   seams, and we own its timeouts and its logging;
//! - `submit` turns an encoded message into submit_sm PDUs (addresses,
//!   esm_class, data_coding, registered_delivery); `receipt` reads
//!   deliver_sm;
//! - `session` is one bound session as a single `select!` loop: submit
//!   what the window (`window_max` unanswered submit_sm) and the token
//!   bucket (`rate_per_second`) allow, match responses by sequence number,
//!   time out requests, enquire_link an idle link, answer the SMSC's
//!   enquire_link, deliver_sm (parsing receipts) and unbind;
//! - [`run`] reconnects with jittered exponential backoff, waiting the
//!   longest delay after a bind refused for credentials.
//!
//! Outcomes go back to the outbox per message, never per segment: `sent`
//! once every segment got status 0 (with one SMSC message id per
//! segment, which receipts name), `retry` with a per-message exponential
//! delay on temporary failures (throttling, queue full, system error,
//! response timeout, connection lost) until `attempts_max`, `failed` on
//! permanent ones with the status name, code and text from one table
//! ([`describe_status`]). A failed segment ends its message at once; its
//! other segments' late responses are ignored (each lease of a message has
//! its own number), and a retry resends every segment with the same
//! concatenation reference so the handset can discard duplicates.
//!
//! Logs carry stable `event` names (sms_bind, sms_submit, sms_sent,
//! sms_retry, sms_failed, sms_receipt, sms_disconnected) with ids, lengths
//! and segment counts, never a password or a message text. rusmpp's own
//! `tracing` feature stays off: it logs whole PDUs.
//!
//! # What it does not do
//!
//! - Messages from handsets (mobile-originated deliver_sm) are acknowledged
//!   and dropped; nothing reads them yet.
//! - One session per gateway; SMSC accounts that allow several binds
//!   for throughput would need several `run` tasks over a shared outbox.
//! - The `message_payload` TLV, data_sm, submit_multi, 16-bit concatenation
//!   references and national language shift tables.
//! - A controllable clock: deadlines use tokio's `Instant` (pausable in
//!   tests) but the outbox is asked with `SystemTime::now()`; the tests run
//!   with millisecond settings instead.
//! - Telling the outbox "not tried" from "failed temporarily": a message
//!   given back at shutdown or after a lost connection counts an attempt.

mod backoff;
mod config;
mod connection;
mod error;
mod outbox;
mod rate;
mod receipt;
mod session;
mod status;
mod submit;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use backoff::{Backoff, exponential, retry_delay};
pub use config::{AddressKind, BindMode, Secret, SmppConfig, source_address};
pub use error::Error;
pub use outbox::{
    MemoryEntry, MemoryOutbox, MemoryReceipt, MemoryStatus, Outbox, OutgoingSms, count_by_status,
};
pub use rate::TokenBucket;
pub use receipt::{Delivered, Receipt, parse_receipt, read_deliver_sm, state_name};
pub use status::{StatusClass, classify_status, describe_status, status_name, status_reason};
pub use submit::{ESM_CLASS_UDHI, Source, build_submits};

use session::{Ended, Session};

/// Sends messages from `outbox` to the SMSC of `config` until `shutdown`
/// becomes true (or its sender is dropped).
///
/// Never returns early on a network or SMSC failure: every lost
/// connection, refused bind or protocol error is logged
/// (`sms_disconnected`) and followed by a reconnect after a backoff of
/// `reconnect_min_ms` doubling up to `reconnect_max_ms`. On shutdown it
/// stops leasing, waits up to `response_timeout_secs` for the answers to
/// submits in flight, unbinds and closes; messages left unanswered go back
/// to the outbox as temporary failures.
pub async fn run(config: SmppConfig, outbox: Arc<dyn Outbox>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(
        Duration::from_millis(config.reconnect_min_ms),
        Duration::from_millis(config.reconnect_max_ms),
    );
    let mut changed = outbox.changed();
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let result = match Session::open(&config, &outbox).await {
            Ok(session) => {
                backoff.reset();
                session.serve(&mut shutdown, &mut changed).await
            }
            Err(error) => Err(error),
        };
        let error = match result {
            Ok(Ended::Shutdown) => return,
            Err(error) => error,
        };
        let delay = if error.is_credentials() {
            tracing::error!(
                event = "sms_disconnected",
                smsc = %config.smsc,
                system_id = %config.system_id,
                %error,
                "the SMSC refused the bind: check [sms] system_id/password"
            );
            backoff.longest_delay()
        } else if matches!(error, Error::Config(_) | Error::Tls(_)) {
            tracing::error!(event = "sms_disconnected", smsc = %config.smsc, %error, "fix the [sms] configuration");
            backoff.longest_delay()
        } else {
            tracing::warn!(event = "sms_disconnected", smsc = %config.smsc, %error);
            backoff.next_delay()
        };
        tracing::info!(
            event = "sms_reconnect_wait",
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
