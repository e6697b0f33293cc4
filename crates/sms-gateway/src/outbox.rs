//! Where messages come from and where their fate goes: the [`Outbox`]
//! trait the store implements, and [`MemoryOutbox`] for tests.
//!
//! The trait is synchronous. The store answers these calls from its
//! indexes in well under a millisecond, the gateway calls them a few times
//! per message, and a synchronous trait needs no boxed futures or
//! `async-trait`. An implementation that can block for long should hand
//! the work to its own thread and return.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

/// One message as the outbox hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    /// The outbox's id; every report names it.
    pub id: u64,
    /// Destination.
    pub to: sms::PhoneNumber,
    /// The text as the user should read it.
    pub text: String,
    /// Earlier attempts that ended in a temporary failure.
    pub attempts: u32,
    /// Ask for a delivery receipt (needs a transceiver bind to arrive).
    pub request_receipt: bool,
}

impl OutgoingSms {
    /// The concatenation reference of this message's segments: the low
    /// octet of the id, so a retry reuses it (a handset can drop duplicate
    /// parts) and 256 consecutive messages never share one.
    pub fn reference(&self) -> u8 {
        self.id.to_le_bytes()[0]
    }
}

/// The durable queue the gateway pulls from.
///
/// Contract: a message returned by [`Outbox::next_due`] is *leased* to the
/// gateway and must not be returned again until the gateway reports
/// [`sent`](Outbox::sent), [`retry`](Outbox::retry) or
/// [`failed`](Outbox::failed) for it (or the process restarts, when the
/// store releases every lease: the SMSC may then see a message twice, which
/// is better than never).
pub trait Outbox: Send + Sync {
    /// Up to `max` messages whose time has come (`not_before <= now`),
    /// oldest first, leased to the caller.
    fn next_due(&self, now: SystemTime, max: usize) -> Vec<OutgoingSms>;
    /// Every segment was accepted; the SMSC's message ids, one per segment.
    fn sent(&self, id: u64, smsc_message_ids: Vec<String>);
    /// A temporary failure: try again at `not_before`. The outbox counts
    /// the attempt (the next `next_due` shows `attempts + 1`).
    fn retry(&self, id: u64, not_before: SystemTime, reason: String);
    /// A permanent failure; never send this message again.
    fn failed(&self, id: u64, reason: String);
    /// A delivery receipt for one segment's SMSC message id.
    fn receipt(&self, smsc_message_id: &str, delivered: bool, detail: String);
    /// A counter bumped whenever a message is queued, so the gateway wakes
    /// at once instead of at its next one-second poll.
    fn changed(&self) -> watch::Receiver<u64>;
}

/// Where a message of a [`MemoryOutbox`] stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryStatus {
    /// Waiting to be sent at or after this time.
    Queued {
        /// Earliest send time.
        not_before: SystemTime,
        /// The reason of the last temporary failure, if any.
        last_error: Option<String>,
    },
    /// Leased to the gateway.
    Sending,
    /// Accepted by the SMSC.
    Sent {
        /// One id per segment.
        smsc_message_ids: Vec<String>,
    },
    /// Given up.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A message in a [`MemoryOutbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryEntry {
    /// As handed to the gateway.
    pub sms: OutgoingSms,
    /// Current state.
    pub status: MemoryStatus,
}

/// A receipt as recorded by a [`MemoryOutbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReceipt {
    /// The SMSC message id it names.
    pub smsc_message_id: String,
    /// Whether it was delivered.
    pub delivered: bool,
    /// State and error code.
    pub detail: String,
}

#[derive(Debug, Default)]
struct MemoryState {
    next_id: u64,
    entries: BTreeMap<u64, MemoryEntry>,
    receipts: Vec<MemoryReceipt>,
    /// Reports about ids that were not leased: a gateway bug.
    unexpected: Vec<String>,
}

/// An outbox in memory, for tests and tools: not durable.
#[derive(Debug)]
pub struct MemoryOutbox {
    state: Mutex<MemoryState>,
    changed: watch::Sender<u64>,
}

impl Default for MemoryOutbox {
    fn default() -> Self {
        MemoryOutbox::new()
    }
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        MemoryOutbox {
            state: Mutex::new(MemoryState {
                next_id: 1,
                ..MemoryState::default()
            }),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a message due now; returns its id.
    pub fn queue(
        &self,
        to: sms::PhoneNumber,
        text: impl Into<String>,
        request_receipt: bool,
    ) -> u64 {
        let id = {
            let mut state = self.lock();
            let id = state.next_id;
            state.next_id += 1;
            let sms = OutgoingSms {
                id,
                to,
                text: text.into(),
                attempts: 0,
                request_receipt,
            };
            let status = MemoryStatus::Queued {
                not_before: SystemTime::UNIX_EPOCH,
                last_error: None,
            };
            state.entries.insert(id, MemoryEntry { sms, status });
            id
        };
        self.changed.send_modify(|counter| *counter += 1);
        id
    }

    /// One message and its state.
    pub fn entry(&self, id: u64) -> Option<MemoryEntry> {
        self.lock().entries.get(&id).cloned()
    }

    /// Every message, by id.
    pub fn entries(&self) -> Vec<MemoryEntry> {
        self.lock().entries.values().cloned().collect()
    }

    /// Receipts in arrival order.
    pub fn receipts(&self) -> Vec<MemoryReceipt> {
        self.lock().receipts.clone()
    }

    /// Reports for messages that were not leased (should stay empty).
    pub fn unexpected(&self) -> Vec<String> {
        self.lock().unexpected.clone()
    }

    /// Sets the state of a leased message, or notes the protocol breach.
    fn finish(&self, id: u64, status: MemoryStatus, bump_attempts: bool) {
        let mut state = self.lock();
        match state.entries.get_mut(&id) {
            Some(entry) if entry.status == MemoryStatus::Sending => {
                entry.status = status;
                if bump_attempts {
                    entry.sms.attempts += 1;
                }
            }
            Some(entry) => {
                let note = format!(
                    "report {status:?} for message {id} in state {:?}",
                    entry.status
                );
                state.unexpected.push(note);
            }
            None => state
                .unexpected
                .push(format!("report {status:?} for unknown message {id}")),
        }
    }
}

impl Outbox for MemoryOutbox {
    fn next_due(&self, now: SystemTime, max: usize) -> Vec<OutgoingSms> {
        let mut state = self.lock();
        let mut due = Vec::new();
        for entry in state.entries.values_mut() {
            if due.len() >= max {
                break;
            }
            if let MemoryStatus::Queued { not_before, .. } = entry.status
                && not_before <= now
            {
                entry.status = MemoryStatus::Sending;
                due.push(entry.sms.clone());
            }
        }
        due
    }

    fn sent(&self, id: u64, smsc_message_ids: Vec<String>) {
        self.finish(id, MemoryStatus::Sent { smsc_message_ids }, false);
    }

    fn retry(&self, id: u64, not_before: SystemTime, reason: String) {
        let status = MemoryStatus::Queued {
            not_before,
            last_error: Some(reason),
        };
        self.finish(id, status, true);
    }

    fn failed(&self, id: u64, reason: String) {
        self.finish(id, MemoryStatus::Failed { reason }, false);
    }

    fn receipt(&self, smsc_message_id: &str, delivered: bool, detail: String) {
        self.lock().receipts.push(MemoryReceipt {
            smsc_message_id: smsc_message_id.to_owned(),
            delivered,
            detail,
        });
    }

    fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Per-message bookkeeping the store may want: how many of each outcome.
pub fn count_by_status(entries: &[MemoryEntry]) -> HashMap<&'static str, usize> {
    let mut counts = HashMap::new();
    for entry in entries {
        let key = match entry.status {
            MemoryStatus::Queued { .. } => "queued",
            MemoryStatus::Sending => "sending",
            MemoryStatus::Sent { .. } => "sent",
            MemoryStatus::Failed { .. } => "failed",
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn number() -> sms::PhoneNumber {
        "+41791234567".parse().expect("valid number")
    }

    #[test]
    fn lease_and_report() {
        let outbox = MemoryOutbox::new();
        let changed = outbox.changed();
        let first = outbox.queue(number(), "one", false);
        let second = outbox.queue(number(), "two", true);
        assert!(changed.has_changed().expect("sender alive"));
        let now = SystemTime::now();
        let due = outbox.next_due(now, 1);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].id, first);
        // Leased messages are not handed out twice.
        let due = outbox.next_due(now, 10);
        assert_eq!(due.iter().map(|sms| sms.id).collect::<Vec<_>>(), [second]);
        assert!(outbox.next_due(now, 10).is_empty());

        outbox.retry(first, now + Duration::from_secs(60), "busy".to_owned());
        assert!(outbox.next_due(now, 10).is_empty(), "not due yet");
        let due = outbox.next_due(now + Duration::from_secs(61), 10);
        assert_eq!(due[0].attempts, 1);
        outbox.sent(first, vec!["a".to_owned()]);
        outbox.failed(second, "no".to_owned());
        outbox.sent(second, vec![]);
        assert_eq!(outbox.unexpected().len(), 1, "report after the final one");
        let counts = count_by_status(&outbox.entries());
        assert_eq!(counts.get("sent"), Some(&1));
        assert_eq!(counts.get("failed"), Some(&1));
    }

    #[test]
    fn reference_is_stable_per_id() {
        let sms = |id| OutgoingSms {
            id,
            to: number(),
            text: String::new(),
            attempts: 0,
            request_receipt: false,
        };
        assert_eq!(sms(7).reference(), 7);
        assert_eq!(sms(0x0102).reference(), 2);
        assert_eq!(sms(300).reference(), sms(300).reference());
    }
}
