//! The LMTP session's [`DeliveryTarget`] over the store: recipients resolve
//! through the directory, messages go to each user's INBOX in one commit.

use delivery::{DeliverError, DeliveryTarget, Envelope, ResolveError, UserName};
use store::{ErrorKind, Intent, Store};

/// Messages up to this size are hashed and parsed on the async worker.
pub const INLINE_PREPARE_BYTES_MAX: usize = 256 * 1024;

pub struct StoreTarget {
    pub store: Store,
    /// Queue new-mail SMS alerts after a delivery (`[sms]` is configured).
    pub sms_alerts: bool,
    /// Counts and latency (the end of DATA to stored) for `/metrics` and the
    /// status page.
    pub metrics: std::sync::Arc<crate::metrics::DeliveryMetrics>,
}

impl DeliveryTarget for StoreTarget {
    async fn resolve(&self, address: &str) -> Result<Vec<UserName>, ResolveError> {
        // One indexed SQLite lookup on a pooled connection: tens of microseconds,
        // short enough to run on the async worker rather than pay a thread handoff.
        match self.store.resolve_recipient(address) {
            Ok(users) if !users.is_empty() => Ok(users),
            Ok(_) => Err(ResolveError::UnknownUser),
            Err(e) if e.kind == ErrorKind::NotFound => Err(ResolveError::UnknownUser),
            Err(e) => Err(ResolveError::Temporary(e.message)),
        }
    }

    async fn deliver(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        _envelope: Envelope,
    ) -> Vec<Result<(), DeliverError>> {
        self.deliver_to(message, users, "INBOX", None).await
    }
}

impl StoreTarget {
    /// Stores `message` in `mailbox` of every user, durably, in one commit.
    /// With `create_as`, a user who lacks the mailbox gets it created (with
    /// that special-use attribute, e.g. `\Junk`) and the message then.
    pub async fn deliver_to(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        mailbox: &str,
        create_as: Option<&str>,
    ) -> Vec<Result<(), DeliverError>> {
        let count = users.len();
        // DATA has been read: the message is received; from here to stored is
        // what the status page reports as delivery time.
        let received = std::time::Instant::now();
        // Hashing and parsing are CPU work proportional to the message: small ones
        // inline, large ones on a blocking thread so they cannot stall other sessions.
        let prepared = if message.len() <= INLINE_PREPARE_BYTES_MAX {
            self.store.prepare(message)
        } else {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.prepare(message)).await {
                Ok(p) => p,
                Err(_) => {
                    return vec![
                        Err(DeliverError::Temporary("message preparation failed".into()));
                        count
                    ];
                }
            }
        };
        let delivered_to = users.clone();
        let append = |user: &UserName| Intent::Append {
            user: user.clone(),
            mailbox: mailbox.to_string(),
            message: prepared.clone(),
            flags: Vec::new(),
            internal_date: None,
        };
        let mut results = self.store.submit(users.iter().map(append).collect()).await;
        if let Some(special_use) = create_as {
            let missing: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r, Err(e) if e.kind == ErrorKind::NotFound))
                .map(|(i, _)| i)
                .collect();
            if !missing.is_empty() {
                let creates = missing
                    .iter()
                    .filter_map(|&i| users.get(i))
                    .map(|user| Intent::CreateMailbox {
                        user: user.clone(),
                        name: mailbox.to_string(),
                        special_use: Some(special_use.to_string()),
                    })
                    .collect();
                // AlreadyExists (a concurrent delivery made it) is fine.
                let _ = self.store.submit(creates).await;
                let retry = missing
                    .iter()
                    .filter_map(|&i| users.get(i))
                    .map(append)
                    .collect();
                let retried = self.store.submit(retry).await;
                for (&i, result) in missing.iter().zip(retried) {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = result;
                    }
                }
            }
        }
        let stored = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics
            .record(received.elapsed(), stored, results.len() as u64 - stored);
        // New-mail alerts are for the inbox, not for junk.
        if self.sms_alerts && mailbox == "INBOX" {
            let reached: Vec<String> = delivered_to
                .into_iter()
                .zip(&results)
                .filter(|(_, r)| r.is_ok())
                .map(|(user, _)| user)
                .collect();
            if !reached.is_empty() {
                // After the commit and off the session's path: an alert never
                // delays or fails the delivery it is about.
                let store = self.store.clone();
                let fields = crate::sms::AlertFields::of(&prepared.summary);
                tokio::spawn(async move {
                    crate::sms::queue_alerts(&store, &reached, &fields).await;
                });
            }
        }
        results
            .into_iter()
            .map(|result| match result {
                Ok(_) => Ok(()),
                Err(e) if e.kind == ErrorKind::OverQuota => Err(DeliverError::OverQuota),
                Err(e) if e.kind == ErrorKind::NotFound => Err(DeliverError::Permanent(e.message)),
                Err(e) => Err(DeliverError::Temporary(e.message)),
            })
            .collect()
    }
}
