//! The SMS outbox of the store, as the SMPP gateway sees it.
//!
//! The gateway (`sms-gateway`) pulls due messages and reports what the SMSC
//! said; the store keeps the outbox durable (journal records, a derived table).
//! What the store does not keep is the lease: a message handed to the gateway
//! is remembered here, in memory, until its outcome is recorded, so it is not
//! handed out twice. A restart drops the leases: a message whose outcome was
//! not recorded is sent again (the SMSC may see it twice, which is better than
//! never).

use crate::config::{SevenBit, SmsBind, SmsSection};
use sms_gateway::{Outbox, OutgoingSms, SmppConfig};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::{Intent, SmsOutcome, Store};
use tokio::sync::watch;

/// The gateway's settings from `[sms]`.
pub fn gateway_config(section: &SmsSection) -> SmppConfig {
    SmppConfig {
        smsc: section.smsc.clone(),
        system_id: section.system_id.clone(),
        password: sms_gateway::Secret::new(section.password.0.clone()),
        source: section.source.clone(),
        seven_bit: match section.seven_bit {
            SevenBit::Unpacked => sms::SeptetLayout::Unpacked,
            SevenBit::Packed => sms::SeptetLayout::Packed,
        },
        tls: section.tls,
        bind_mode: match section.bind {
            SmsBind::Transmitter => sms_gateway::BindMode::Transmitter,
            SmsBind::Transceiver => sms_gateway::BindMode::Transceiver,
        },
        window_max: section.window_max,
        rate_per_second: section.rate_per_second,
        enquire_link_secs: section.enquire_link_secs,
        segments_max: section.segments_max,
        request_receipts: section.request_receipts,
        ..SmppConfig::default()
    }
}

pub struct StoreOutbox {
    store: Store,
    /// Ids handed to the gateway whose outcome is not recorded yet.
    leased: Mutex<HashSet<u64>>,
}

impl StoreOutbox {
    pub fn new(store: Store) -> Self {
        StoreOutbox {
            store,
            leased: Mutex::new(HashSet::new()),
        }
    }

    fn leased(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.leased.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an outcome and ends the lease. When the store cannot record it
    /// (a store that failed refuses every change until restarted) the lease is
    /// kept: this process never hands the message out again, so an SMS the SMSC
    /// already took is not sent over and over; a restart sends it once more.
    fn record(&self, id: u64, intent: Intent) {
        // The gateway runs on the async runtime and the trait is synchronous;
        // the store's answer takes a commit (an fsync), so leave the worker free.
        let result = tokio::task::block_in_place(|| self.store.submit_one_blocking(intent));
        match result {
            Ok(_) => {
                self.leased().remove(&id);
            }
            Err(e)
                if e.kind == store::ErrorKind::Invalid || e.kind == store::ErrorKind::NotFound =>
            {
                // Not queued any more (or gone): nothing to send again.
                tracing::warn!(event = "sms_outbox_record_refused", id, error = %e);
                self.leased().remove(&id);
            }
            Err(e) => {
                tracing::error!(event = "sms_outbox_record_failed", id, error = %e, "kept out of sending until restart");
            }
        }
    }
}

fn unix_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Outbox for StoreOutbox {
    fn next_due(&self, now: SystemTime, max: usize) -> Vec<OutgoingSms> {
        // A replica sends nothing: its primary does, and records it. Of
        // several nodes on one PostgreSQL database, one sends.
        if !tokio::task::block_in_place(|| self.store.leads("sms")) {
            return Vec::new();
        }
        let mut leased = self.leased();
        let due = match self.store.sms_due(unix_seconds(now), max + leased.len()) {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(event = "sms_outbox_read_failed", error = %e);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in due {
            if out.len() >= max || leased.contains(&entry.id) {
                continue;
            }
            // The store checked the number when it was queued; a number this
            // version's parser refuses fails that message alone.
            match entry.to.parse::<sms::PhoneNumber>() {
                Ok(to) => {
                    leased.insert(entry.id);
                    out.push(OutgoingSms {
                        id: entry.id,
                        to,
                        text: entry.text,
                        attempts: entry.attempts,
                        request_receipt: entry.receipt,
                    });
                }
                Err(e) => {
                    drop(leased);
                    self.failed(entry.id, format!("invalid destination {}: {e}", entry.to));
                    leased = self.leased();
                }
            }
        }
        out
    }

    fn sent(&self, id: u64, smsc_message_ids: Vec<String>) {
        self.record(
            id,
            Intent::SmsOutcome {
                id,
                outcome: SmsOutcome::Sent {
                    smsc_ids: smsc_message_ids,
                },
            },
        );
    }

    fn retry(&self, id: u64, not_before: SystemTime, reason: String) {
        // Round up: never earlier than the gateway asked.
        let not_before = unix_seconds(not_before + Duration::from_millis(999));
        self.record(
            id,
            Intent::SmsOutcome {
                id,
                outcome: SmsOutcome::Retry { not_before, reason },
            },
        );
    }

    fn failed(&self, id: u64, reason: String) {
        self.record(
            id,
            Intent::SmsOutcome {
                id,
                outcome: SmsOutcome::Failed { reason },
            },
        );
    }

    fn receipt(&self, smsc_message_id: &str, delivered: bool, detail: String) {
        let intent = Intent::SmsReceipt {
            smsc_id: smsc_message_id.to_string(),
            delivered,
            detail,
        };
        if let Err(e) = tokio::task::block_in_place(|| self.store.submit_one_blocking(intent)) {
            tracing::error!(event = "sms_outbox_record_failed", smsc_id = smsc_message_id, error = %e);
        }
    }

    fn changed(&self) -> watch::Receiver<u64> {
        self.store.watch_sms()
    }
}

/// Why a delivery raised no alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoAlert {
    /// The sender, the recipients or the importance did not match the rules.
    NotMatching,
    /// Inside the user's quiet hours.
    Quiet,
    /// The hourly cap is reached.
    Capped,
}

/// What an alert rule looks at in a delivered message (from its cached summary).
pub struct Delivered<'a> {
    /// The From header, decoded ("Bob Smith <bob@example.com>").
    pub from: &'a str,
    /// The To and Cc headers, decoded.
    pub to: &'a str,
    pub cc: &'a str,
    pub subject: &'a str,
    pub headers: &'a [(String, String)],
}

/// The alert text for a delivery, or why there is none. `now` is seconds since
/// the epoch; `sent_last_hour` the alerts already queued for the user in the
/// last hour. The text fits one segment.
pub fn alert_text(
    alert: &store::SmsAlert,
    mail: &Delivered<'_>,
    now: i64,
    sent_last_hour: u64,
) -> Result<String, NoAlert> {
    // The addresses only: a display name is whatever the sender wrote
    // ("boss@corp.example" <x@elsewhere>).
    let from = addresses(mail.from).to_lowercase();
    if !alert.from.is_empty() && !alert.from.iter().any(|p| from.contains(p.as_str())) {
        return Err(NoAlert::NotMatching);
    }
    let recipients = format!("{} {}", mail.to, mail.cc).to_lowercase();
    if !alert.to.is_empty() && !alert.to.iter().any(|p| recipients.contains(p.as_str())) {
        return Err(NoAlert::NotMatching);
    }
    if alert.important_only && !important(mail.headers) {
        return Err(NoAlert::NotMatching);
    }
    if let Some((start, end)) = alert.quiet {
        let local = (now + i64::from(alert.zone_minutes) * 60).rem_euclid(86_400) / 60;
        let (start, end) = (i64::from(start), i64::from(end));
        let quiet = if start <= end {
            (start..end).contains(&local)
        } else {
            local >= start || local < end
        };
        if quiet {
            return Err(NoAlert::Quiet);
        }
    }
    if sent_last_hour >= u64::from(alert.per_hour_max) {
        return Err(NoAlert::Capped);
    }
    let subject = if mail.subject.trim().is_empty() {
        "(no subject)"
    } else {
        mail.subject.trim()
    };
    let text = format!("New mail from {}: {subject}", sender_name(mail.from));
    Ok(sms::truncate_to_segments(&text, 1))
}

/// The addresses of an address header as the summary renders it
/// ("Name <a@b>, c@d"), one per line.
fn addresses(header: &str) -> String {
    let mut out = String::new();
    for part in header.split(',') {
        let address = match (part.find('<'), part.rfind('>')) {
            (Some(open), Some(close)) if open < close => &part[open + 1..close],
            _ => part,
        };
        out.push_str(address.trim());
        out.push('\n');
    }
    out
}

/// The display name of a From header, else its address.
fn sender_name(from: &str) -> String {
    let from = from.trim();
    let name = match from.find('<') {
        Some(at) => from[..at].trim().trim_matches('"').trim(),
        None => "",
    };
    if !name.is_empty() {
        return name.to_string();
    }
    let address = from
        .trim_start_matches(|c| c != '<')
        .trim_start_matches('<')
        .trim_end_matches('>');
    if address.is_empty() {
        from.to_string()
    } else {
        address.to_string()
    }
}

/// Importance: high, X-Priority 1 or 2, or Priority: urgent.
fn important(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(name, value)| {
        let value = value.trim().to_ascii_lowercase();
        match name.to_ascii_lowercase().as_str() {
            "importance" => value.starts_with("high"),
            "x-priority" => value.starts_with('1') || value.starts_with('2'),
            "priority" => value.starts_with("urgent"),
            _ => false,
        }
    })
}

/// What an alert looks at, copied out of a delivered message's summary so a
/// pending alert does not keep the whole message in memory.
pub struct AlertFields {
    from: String,
    to: String,
    cc: String,
    subject: String,
    /// Only the headers that say how important the message is.
    headers: Vec<(String, String)>,
}

impl AlertFields {
    pub fn of(summary: &mime::Summary) -> Self {
        AlertFields {
            from: summary.from.clone(),
            to: summary.to.clone(),
            cc: summary.cc.clone(),
            subject: summary.subject.clone(),
            headers: summary
                .headers
                .iter()
                .filter(|(name, _)| {
                    ["importance", "x-priority", "priority"]
                        .iter()
                        .any(|n| name.eq_ignore_ascii_case(n))
                })
                .take(16)
                .cloned()
                .collect(),
        }
    }
}

/// The new-mail alerts one delivery raises for the users it reached (reads
/// only; the caller submits them).
pub fn alert_intents(store: &Store, users: &[String], fields: &AlertFields) -> Vec<Intent> {
    let now = store::writer::now_seconds();
    let mail = Delivered {
        from: &fields.from,
        to: &fields.to,
        cc: &fields.cc,
        subject: &fields.subject,
        headers: &fields.headers,
    };
    let mut intents = Vec::new();
    for user in users {
        let alert = match store.sms_alert(user) {
            Ok(Some(alert)) => alert,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(event = "sms_alert_read_failed", user = %user, error = %e);
                continue;
            }
        };
        let sent = store.sms_alerts_since(user, now - 3600).unwrap_or(0);
        match alert_text(&alert, &mail, now, sent) {
            // The count read here only saves a commit; the writer checks the cap
            // again in the same transaction that queues, so bursts cannot pass it.
            Ok(text) => intents.push(Intent::QueueSms {
                to: alert.number.clone(),
                text,
                purpose: "alert".into(),
                receipt: false,
                user: Some((user.clone(), alert.per_hour_max)),
            }),
            Err(why) => tracing::debug!(event = "sms_alert_skipped", user = %user, reason = ?why),
        }
    }
    intents
}

pub fn log_alert_results(results: Vec<store::Result<store::Outcome>>) {
    for result in results {
        match result {
            Ok(_) => {}
            Err(e) if e.kind == store::ErrorKind::OverQuota => {
                tracing::debug!(event = "sms_alert_skipped", reason = "Capped");
            }
            Err(e) => tracing::warn!(event = "sms_alert_queue_failed", error = %e),
        }
    }
}

/// Queues the new-mail alerts of one delivery, for the users it reached.
/// Best effort: a failure is logged, it never affects the delivery.
pub async fn queue_alerts(store: &Store, users: &[String], fields: &AlertFields) {
    let intents = alert_intents(store, users, fields);
    if !intents.is_empty() {
        log_alert_results(store.submit(intents).await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> store::SmsAlert {
        store::SmsAlert {
            number: "+41791234567".into(),
            from: Vec::new(),
            to: Vec::new(),
            important_only: false,
            quiet: None,
            zone_minutes: 0,
            per_hour_max: 10,
        }
    }

    fn mail<'a>(from: &'a str, subject: &'a str, headers: &'a [(String, String)]) -> Delivered<'a> {
        Delivered {
            from,
            to: "Alice <alice@example.com>",
            cc: "",
            subject,
            headers,
        }
    }

    #[test]
    fn text_names_the_sender_and_fits_one_segment() {
        let none: Vec<(String, String)> = Vec::new();
        let text = alert_text(
            &alert(),
            &mail("\"Bob Smith\" <bob@example.com>", "Lunch?", &none),
            0,
            0,
        );
        assert_eq!(text.as_deref(), Ok("New mail from Bob Smith: Lunch?"));
        let text = alert_text(&alert(), &mail("<bob@example.com>", "", &none), 0, 0);
        assert_eq!(
            text.as_deref(),
            Ok("New mail from bob@example.com: (no subject)")
        );
        let long = "Ünïcödé subject that goes on and on ".repeat(10);
        let text = alert_text(&alert(), &mail("Bob <b@x.org>", &long, &none), 0, 0).expect("alert");
        assert_eq!(sms::count(&text).segments, 1, "{text}");
    }

    #[test]
    fn rules_quiet_hours_and_the_cap() {
        let none: Vec<(String, String)> = Vec::new();
        let boss = store::SmsAlert {
            from: vec!["boss@".into()],
            ..alert()
        };
        assert_eq!(
            alert_text(&boss, &mail("Bob <bob@example.com>", "x", &none), 0, 0),
            Err(NoAlert::NotMatching)
        );
        assert!(
            alert_text(
                &boss,
                &mail("The Boss <BOSS@example.com>", "x", &none),
                0,
                0
            )
            .is_ok()
        );
        let to_sales = store::SmsAlert {
            to: vec!["sales@example.com".into()],
            ..alert()
        };
        assert_eq!(
            alert_text(&to_sales, &mail("b <b@x>", "x", &none), 0, 0),
            Err(NoAlert::NotMatching)
        );
        let important = store::SmsAlert {
            important_only: true,
            ..alert()
        };
        assert_eq!(
            alert_text(&important, &mail("b <b@x>", "x", &none), 0, 0),
            Err(NoAlert::NotMatching)
        );
        let high = vec![("X-Priority".to_string(), "1 (Highest)".to_string())];
        assert!(alert_text(&important, &mail("b <b@x>", "x", &high), 0, 0).is_ok());
        // Quiet 22:00-07:00 in UTC+1: 21:30 UTC is 22:30 local (quiet), 06:30 UTC is 07:30 (not).
        let night = store::SmsAlert {
            quiet: Some((22 * 60, 7 * 60)),
            zone_minutes: 60,
            ..alert()
        };
        let at = |h: i64, m: i64| 86_400 * 100 + h * 3600 + m * 60;
        assert_eq!(
            alert_text(&night, &mail("b <b@x>", "x", &none), at(21, 30), 0),
            Err(NoAlert::Quiet)
        );
        assert!(alert_text(&night, &mail("b <b@x>", "x", &none), at(6, 30), 0).is_ok());
        assert_eq!(
            alert_text(&night, &mail("b <b@x>", "x", &none), at(5, 59), 0),
            Err(NoAlert::Quiet)
        );
        assert_eq!(
            alert_text(&alert(), &mail("b <b@x>", "x", &none), 0, 10),
            Err(NoAlert::Capped)
        );
    }
}
