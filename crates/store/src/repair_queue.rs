//! Mailboxes found damaged while serving, waiting for the background repairer.
//!
//! Readers that meet a failed checksum, a missing blob or a missing index call
//! [`crate::Store::report_damage`]; the server's repairer drains this queue and
//! runs a throttled reconstruct of each entry. The queue is bounded and holds
//! each (user, mailbox) once, so a damaged mailbox read in a loop by many
//! clients queues one repair, not thousands.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Entries kept at most; beyond it new reports are dropped (and logged by the
/// caller's next read, which reports again once the queue has room).
pub const REPAIR_QUEUE_MAX: usize = 1024;

/// One queued repair: a user and a mailbox id (`None`: the user's whole index).
pub type Damaged = (String, Option<String>);

pub struct RepairQueue {
    max: usize,
    state: Mutex<(VecDeque<Damaged>, BTreeSet<Damaged>)>,
    wake: Notify,
}

impl RepairQueue {
    pub fn new(max: usize) -> Self {
        RepairQueue {
            max,
            state: Mutex::new((VecDeque::new(), BTreeSet::new())),
            wake: Notify::new(),
        }
    }

    /// Queues an entry; false when it was queued already or the queue is full.
    pub fn push(&self, user: &str, mailbox: Option<&str>) -> bool {
        let entry = (user.to_string(), mailbox.map(str::to_string));
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.1.len() >= self.max || !state.1.insert(entry.clone()) {
            return false;
        }
        state.0.push_back(entry);
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Takes the oldest entry. It stays marked as queued until [`Self::done`],
    /// so reports while it is being repaired do not queue it again.
    pub fn pop(&self) -> Option<Damaged> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0.pop_front()
    }

    pub fn done(&self, entry: &Damaged) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.1.remove(entry);
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until something is queued.
    pub async fn wait(&self) {
        if !self.is_empty() {
            return;
        }
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_once_and_bounded() {
        let q = RepairQueue::new(2);
        assert!(q.push("a", Some("m1")));
        assert!(!q.push("a", Some("m1")), "a duplicate is not queued twice");
        assert!(q.push("a", None));
        assert!(!q.push("b", Some("m2")), "full");
        let first = q.pop().expect("queued");
        assert_eq!(first, ("a".to_string(), Some("m1".to_string())));
        assert!(
            !q.push("a", Some("m1")),
            "still being repaired: not queued again"
        );
        q.done(&first);
        assert!(
            q.push("a", Some("m1")),
            "after repair it may be queued again"
        );
    }
}
