//! The planner's plans for status-page subscribers and their notices (a
//! child module of `planner`, over the same open transaction).

use super::{Planner, bounded, validate_sms};
use crate::error::{ErrorKind, Result, StoreError};
use crate::intent::{NoticeOutcome, Outcome, SubscribeLimits};
use crate::record::Record;
use crate::subscribers::CONFIRM_SECONDS_MAX;

/// Longest email address (RFC 5321's path limit less the brackets).
pub const EMAIL_BYTES_MAX: usize = 254;
/// Reasons from the relay are cut to this.
const NOTICE_REASON_BYTES_MAX: usize = 1000;
/// Tokens are ours (random, URL-safe); anything longer is not one of them.
const TOKEN_BYTES_MAX: usize = 128;

/// A subscriber's address as stored: an email address (lowercased, one `@`,
/// a dot in the domain, no spaces, quotes or brackets) or an E.164 number.
pub fn normalize_subscriber_address(kind: &str, address: &str) -> Result<String> {
    match kind {
        "email" => {
            let address = address.trim().to_ascii_lowercase();
            let bad = || {
                StoreError::invalid(format!(
                    "not an email address this page can send to: {:?}",
                    bounded(&address, 80)
                ))
            };
            if address.len() > EMAIL_BYTES_MAX {
                return Err(StoreError::invalid(format!(
                    "an email address has at most {EMAIL_BYTES_MAX} bytes"
                )));
            }
            let (local, domain) = address.split_once('@').ok_or_else(bad)?;
            let allowed = |c: char| {
                c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
            };
            if local.is_empty()
                || local.len() > 64
                || !local.chars().all(allowed)
                || domain.len() < 3
                || !domain.contains('.')
                || domain.starts_with(['.', '-'])
                || domain.ends_with(['.', '-'])
                || domain.contains("..")
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || !c.is_ascii())
                || address.chars().any(char::is_control)
            {
                return Err(bad());
            }
            Ok(address)
        }
        "sms" => {
            validate_sms(address, "x", "status")?;
            Ok(address.to_string())
        }
        _ => Err(StoreError::invalid(format!(
            "a subscriber is email or sms, not {kind:?}"
        ))),
    }
}

fn check_token(token: &str) -> Result<()> {
    if token.is_empty()
        || token.len() > TOKEN_BYTES_MAX
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StoreError::not_found("no such link"));
    }
    Ok(())
}

/// The fields of an `Intent::StatusSubscribe`, borrowed.
pub(super) struct NewSubscriber<'a> {
    pub kind: &'a str,
    pub address: &'a str,
    pub confirm_hash: Option<&'a str>,
    pub unsubscribe_token: &'a str,
    pub ip: Option<&'a str>,
    pub limits: &'a SubscribeLimits,
}

impl Planner<'_> {
    pub(super) fn subscribe(&mut self, new: NewSubscriber<'_>) -> Result<Outcome> {
        let NewSubscriber {
            kind,
            address,
            confirm_hash,
            unsubscribe_token,
            ip,
            limits,
        } = new;
        let address = normalize_subscriber_address(kind, address)?;
        check_token(unsubscribe_token).map_err(|_| StoreError::invalid("bad unsubscribe token"))?;
        if let Some(hash) = confirm_hash {
            check_token(hash).map_err(|_| StoreError::invalid("bad confirmation hash"))?;
        }
        let ip = ip.map(|ip| bounded(ip, 64));
        let existing = self.tx.subscriber_by_address(kind, &address)?;
        if existing.as_ref().is_some_and(|s| s.state == "active") {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("{address} is subscribed already"),
            ));
        }
        if confirm_hash.is_some() {
            let (by_address, by_ip) =
                self.tx
                    .subscribe_requests_since(&address, ip.as_deref(), self.tx.now() - 3600)?;
            if by_address >= limits.per_address_per_hour_max || by_ip >= limits.per_ip_per_hour_max
            {
                return Err(StoreError::new(
                    ErrorKind::OverQuota,
                    "too many subscriptions asked for in the last hour; try again later",
                ));
            }
        }
        // A pending entry being replaced does not count twice.
        let count = self.tx.subscriber_count(self.tx.now())?
            - u64::from(existing.is_some_and(|s| s.created >= self.tx.now() - CONFIRM_SECONDS_MAX));
        if count >= limits.total_max {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!(
                    "the status page has its most subscribers ({})",
                    limits.total_max
                ),
            ));
        }
        let id = self.tx.new_id()?;
        self.tx.emit(
            Record::SubscriberAdded {
                id,
                kind: kind.to_string(),
                address,
                confirm_hash: confirm_hash.map(str::to_string),
                unsubscribe_token: unsubscribe_token.to_string(),
                ip,
                at: self.tx.now(),
            },
            None,
        )?;
        Ok(Outcome::Subscriber { id })
    }

    pub(super) fn confirm_subscriber(&mut self, confirm_hash: &str) -> Result<Outcome> {
        check_token(confirm_hash)?;
        let subscriber = self
            .tx
            .subscriber_by_confirm_hash(confirm_hash)?
            .filter(|s| s.state == "pending" && s.created >= self.tx.now() - CONFIRM_SECONDS_MAX)
            .ok_or_else(|| {
                StoreError::not_found("this confirmation link is unknown or has expired")
            })?;
        self.tx.emit(
            Record::SubscriberConfirmed {
                id: subscriber.id,
                at: self.tx.now(),
            },
            None,
        )?;
        Ok(Outcome::Subscriber { id: subscriber.id })
    }

    pub(super) fn remove_subscriber(
        &mut self,
        id: Option<u64>,
        unsubscribe_token: Option<&str>,
    ) -> Result<Outcome> {
        let subscriber = match (id, unsubscribe_token) {
            (Some(id), _) => self.tx.subscriber(id)?,
            (None, Some(token)) => {
                check_token(token)?;
                self.tx.subscriber_by_unsubscribe_token(token)?
            }
            (None, None) => None,
        }
        .ok_or_else(|| StoreError::not_found("no such subscriber"))?;
        self.tx.emit(
            Record::SubscriberRemoved {
                id: subscriber.id,
                at: self.tx.now(),
            },
            None,
        )?;
        Ok(Outcome::Subscriber { id: subscriber.id })
    }

    pub(super) fn notice_outcome(
        &mut self,
        post: u64,
        subscriber: u64,
        outcome: &NoticeOutcome,
    ) -> Result<Outcome> {
        let notice = self.tx.notice(post, subscriber)?.ok_or_else(|| {
            StoreError::not_found(format!("no notice of post {post} for {subscriber}"))
        })?;
        if notice.state != "queued" {
            // Recording "sent" twice would be harmless, but it means two
            // senders: refuse, so the second one stops.
            return Err(StoreError::invalid(format!(
                "the notice of post {post} for {subscriber} is {}, not queued",
                notice.state
            )));
        }
        let at = self.tx.now();
        let record = match outcome {
            NoticeOutcome::Sent => Record::NoticeSent {
                post,
                subscriber,
                at,
            },
            NoticeOutcome::QueueSms { text } => {
                if notice.kind != "sms" {
                    return Err(StoreError::invalid("an SMS notice for an email subscriber"));
                }
                validate_sms(&notice.address, text, "status")?;
                let id = self.tx.new_id()?;
                self.tx.emit(
                    Record::SmsQueued {
                        id,
                        to: notice.address.clone(),
                        text: text.clone(),
                        purpose: "status".to_string(),
                        receipt: false,
                        at,
                        user: None,
                    },
                    None,
                )?;
                Record::NoticeSent {
                    post,
                    subscriber,
                    at,
                }
            }
            NoticeOutcome::Retry { not_before, reason } => Record::NoticeRetry {
                post,
                subscriber,
                not_before: *not_before,
                reason: bounded(reason, NOTICE_REASON_BYTES_MAX),
                at,
            },
            NoticeOutcome::Failed { reason } => Record::NoticeFailed {
                post,
                subscriber,
                reason: bounded(reason, NOTICE_REASON_BYTES_MAX),
                at,
            },
        };
        self.tx.emit(record, None)?;
        Ok(Outcome::Done)
    }
}
