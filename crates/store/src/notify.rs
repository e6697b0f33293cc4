//! Change notifications: a counter per user that the writer bumps after each
//! commit touching that user. Sessions wait on it (IDLE) and then ask the index
//! what changed since the MODSEQ they know, so a missed bump only delays, never loses.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

#[derive(Default)]
pub struct Notifier {
    senders: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Notifier {
    pub fn subscribe(&self, user: &str) -> watch::Receiver<u64> {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders
            .entry(user.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// The keys someone waits on now (users, and the senders' keys).
    pub fn watched(&self) -> Vec<String> {
        let senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(key, _)| key.clone())
            .collect()
    }

    pub fn notify(&self, user: &str) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sender) = senders.get(user) {
            if sender.receiver_count() == 0 {
                senders.remove(user);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }
}
