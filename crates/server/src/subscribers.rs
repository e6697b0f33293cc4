//! Status-page subscribers: the admin commands, the tokens of their links, and
//! the notice sender that drains the store's notice outbox.
//!
//! The outbox is the store's (`store::subscribers`): a post queues one notice
//! per active subscriber in the same commit, deterministically from journal
//! order, and `NoticeSent` / `NoticeRetry` / `NoticeFailed` records move each
//! one on. The sender here is one task that takes due notices in order, hands
//! each to the relay and records the outcome before the next.
//!
//! Delivery is at least once. Between the relay's 250 to the end of DATA and
//! the commit of `NoticeSent` there is a window (milliseconds: one fsync) in
//! which a crash leaves the notice queued, and the restarted server sends it
//! again. Its Message-ID is derived from the post and the subscriber
//! (`<notice.POST.SUBSCRIBER@hostname>`), the same in both sends, so a relay
//! or mail client that deduplicates by Message-ID shows it once. Outside that
//! window nothing is sent twice: a notice whose `NoticeSent` is committed is
//! never queued again, also after the derived tables are rebuilt.

use crate::admin::{AdminCommand, AdminContext, AdminOutput, EX_SOFTWARE, EX_USAGE};
use crate::config::MailOutSection;
use crate::mail_out::{self, Envelope, SendError};
use std::collections::HashSet;
use std::time::Duration;
use store::{ErrorKind, Intent, NoticeOutcome, Outcome, Store, SubscribeLimits};
use tokio::sync::watch;

/// Notices taken from the outbox at once.
const NOTICES_PER_ROUND_MAX: usize = 50;
/// Retries wait `[mail_out] retry_first_secs`, then twice as long as the one
/// before, up to this.
const RETRY_SECONDS_MAX: i64 = 3600;
/// The sender looks at the outbox at least this often, also when nothing
/// woke it (a retry coming due).
const IDLE_SECONDS_MAX: u64 = 60;
/// Subscribers listed at most.
const LIST_MAX: usize = 100_000;

/// A new random token for a link: 32 bytes, hex (URL-safe, 64 characters).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored of a confirmation token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    crate::http::token_hash(token)
}

/// How long after `attempts` failed attempts the next one is due.
pub fn retry_delay_seconds(first_seconds: u64, attempts: u32) -> i64 {
    let first = first_seconds.min(RETRY_SECONDS_MAX as u64) as i64;
    (first << attempts.min(16)).min(RETRY_SECONDS_MAX)
}

/// `postern status subscriber ...`.
pub fn admin_command(store: &Store, context: &AdminContext, command: AdminCommand) -> AdminOutput {
    match command {
        AdminCommand::SubscriberList { json } => match store.subscribers(LIST_MAX) {
            Ok(list) if json => match serde_json::to_string_pretty(&list) {
                Ok(text) => AdminOutput::ok(text + "\n"),
                Err(e) => AdminOutput::fail(EX_SOFTWARE, format!("error: {e}\n")),
            },
            Ok(list) => AdminOutput::ok(
                list.iter()
                    .map(|s| {
                        format!(
                            "{}  {}  {}  {}  since {}\n",
                            s.id,
                            s.kind,
                            s.address,
                            s.state,
                            status::rfc3339(s.confirmed.unwrap_or(s.created))
                        )
                    })
                    .collect::<String>(),
            ),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::SubscriberAdd { email, sms } => {
            let (kind, address) = match (email, sms) {
                (Some(email), None) => ("email", email),
                (None, Some(number)) => ("sms", number),
                _ => {
                    return AdminOutput::fail(
                        EX_USAGE,
                        "error: give one of --email ADDRESS or --sms NUMBER\n",
                    );
                }
            };
            let intent = Intent::StatusSubscribe {
                kind: kind.into(),
                address,
                confirm_hash: None,
                unsubscribe_token: new_token(),
                ip: None,
                limits: SubscribeLimits {
                    total_max: context.subscribers_max,
                    per_address_per_hour_max: u64::MAX,
                    per_ip_per_hour_max: u64::MAX,
                },
            };
            match store.submit_one_blocking(intent) {
                Ok(Outcome::Subscriber { id }) => AdminOutput::ok(format!("subscriber {id}\n")),
                Ok(other) => {
                    AdminOutput::fail(EX_SOFTWARE, format!("error: unexpected {other:?}\n"))
                }
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::SubscriberRemove { id } => {
            match store.submit_one_blocking(Intent::RemoveSubscriber {
                id: Some(id),
                unsubscribe_token: None,
            }) {
                Ok(_) => AdminOutput::ok(format!("subscriber {id} removed\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        _ => AdminOutput::fail(EX_SOFTWARE, "error: not a subscriber command\n"),
    }
}

/// Drains the notice outbox: email notices through the relay, SMS notices
/// into the SMS outbox.
pub struct NoticeSender {
    pub store: Store,
    pub site: status::Site,
    /// `[mail_out]`; without it email notices wait (SMS ones still go).
    pub mail: Option<MailOutSection>,
    /// This server's name: EHLO, and the right side of Message-IDs.
    pub hostname: String,
}

impl NoticeSender {
    /// Runs until `shutdown`. A notice being sent when it comes is finished
    /// (or abandoned at the relay's deadline) and its outcome recorded.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut changed = self.store.watch_notices();
        // Notices the relay took whose outcome the store could not record
        // (a failed store refuses changes until restarted): never sent again
        // by this process.
        let mut unrecorded: HashSet<(u64, u64)> = HashSet::new();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = store::writer::now_seconds();
            let store = self.store.clone();
            // A replica sends nothing: its primary does, and records it. Of
            // several nodes on one PostgreSQL database, one sends.
            let due = tokio::task::spawn_blocking(move || {
                if !store.leads("notices") {
                    return Ok(Vec::new());
                }
                store.notices_due(now, NOTICES_PER_ROUND_MAX + 16)
            })
            .await;
            let due = match due {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    tracing::error!(event = "notice_outbox_read_failed", error = %e);
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            let mut handled = 0;
            for notice in due {
                if *shutdown.borrow() || handled >= NOTICES_PER_ROUND_MAX {
                    break;
                }
                if unrecorded.contains(&(notice.post, notice.subscriber)) {
                    continue;
                }
                handled += 1;
                let key = (notice.post, notice.subscriber);
                if !self.deliver(notice).await {
                    unrecorded.insert(key);
                }
            }
            if handled >= NOTICES_PER_ROUND_MAX {
                continue;
            }
            let store = self.store.clone();
            let next = tokio::task::spawn_blocking(move || store.next_notice_due())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            let wait = next
                .map(|at| {
                    (at - store::writer::now_seconds()).clamp(1, IDLE_SECONDS_MAX as i64) as u64
                })
                .unwrap_or(IDLE_SECONDS_MAX);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                _ = changed.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Sends one notice and records what happened; false when the outcome
    /// could not be recorded.
    async fn deliver(&self, notice: store::Notice) -> bool {
        use tracing::Instrument as _;
        let span =
            tracing::info_span!("notice", post = notice.post, subscriber = notice.subscriber);
        self.deliver_in_span(notice).instrument(span).await
    }

    async fn deliver_in_span(&self, notice: store::Notice) -> bool {
        let store = self.store.clone();
        let incident_id = notice.incident;
        let incident = tokio::task::spawn_blocking(move || store.status_incident(incident_id))
            .await
            .ok()
            .and_then(Result::ok)
            .flatten();
        let outcome = match incident {
            None => NoticeOutcome::Failed {
                reason: "the incident is gone".into(),
            },
            Some(incident) => self.attempt(&notice, &incident).await,
        };
        match &outcome {
            NoticeOutcome::Sent | NoticeOutcome::QueueSms { .. } => {
                tracing::info!(event = "notice_sent", kind = %notice.kind);
            }
            NoticeOutcome::Retry { reason, .. } => {
                tracing::warn!(event = "notice_retry", attempts = notice.attempts + 1, reason = %reason);
            }
            NoticeOutcome::Failed { reason } => {
                tracing::warn!(event = "notice_failed", reason = %reason);
            }
        }
        match self
            .store
            .submit_one(Intent::NoticeOutcome {
                post: notice.post,
                subscriber: notice.subscriber,
                outcome,
            })
            .await
        {
            Ok(_) => true,
            // Gone meanwhile (unsubscribed while we sent): nothing to record.
            Err(e) if e.kind == ErrorKind::NotFound || e.kind == ErrorKind::Invalid => {
                tracing::info!(event = "notice_outcome_refused", error = %e);
                true
            }
            Err(e) => {
                tracing::error!(event = "notice_outcome_failed", error = %e, "kept out of sending until restart");
                false
            }
        }
    }

    async fn attempt(&self, notice: &store::Notice, incident: &status::Incident) -> NoticeOutcome {
        if notice.kind == "sms" {
            return match status::notice_sms_text(&self.site, incident, notice.post) {
                Some(text) => NoticeOutcome::QueueSms { text },
                None => NoticeOutcome::Failed {
                    reason: "the post is gone".into(),
                },
            };
        }
        let Some(mail) = &self.mail else {
            return NoticeOutcome::Retry {
                not_before: store::writer::now_seconds() + RETRY_SECONDS_MAX,
                reason: "no [mail_out] is configured".into(),
            };
        };
        let message_id = format!(
            "notice.{}.{}@{}",
            notice.post, notice.subscriber, self.hostname
        );
        let headers = status::MailHeaders {
            from: &mail.from,
            to: &notice.address,
            date: store::writer::now_seconds(),
            message_id: &message_id,
        };
        let Some(message) = status::render_notice_mail(
            &self.site,
            incident,
            notice.post,
            &headers,
            &notice.unsubscribe_token,
        ) else {
            return NoticeOutcome::Failed {
                reason: "the post is gone".into(),
            };
        };
        let envelope = Envelope {
            helo: &self.hostname,
            from: &mail.from,
            to: &notice.address,
            message: &message,
        };
        let deadline = Duration::from_secs(mail.timeout_secs);
        match mail_out::send(&mail.relay, &envelope, deadline).await {
            Ok(()) => NoticeOutcome::Sent,
            Err(SendError::Permanent(reason)) => NoticeOutcome::Failed { reason },
            Err(SendError::Temporary(reason)) if notice.attempts + 1 >= mail.attempts_max => {
                NoticeOutcome::Failed {
                    reason: format!("{reason} (after {} attempts)", notice.attempts + 1),
                }
            }
            Err(SendError::Temporary(reason)) => NoticeOutcome::Retry {
                not_before: store::writer::now_seconds()
                    + retry_delay_seconds(mail.retry_first_secs, notice.attempts),
                reason,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_thirty_seconds_to_an_hour() {
        let delays: Vec<i64> = (0..9).map(|n| retry_delay_seconds(30, n)).collect();
        assert_eq!(delays, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(retry_delay_seconds(30, u32::MAX), 3600);
        assert_eq!(retry_delay_seconds(u64::MAX, 0), 3600);
    }

    #[test]
    fn tokens_are_url_safe_and_differ() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(token_hash(&a), a);
    }
}
