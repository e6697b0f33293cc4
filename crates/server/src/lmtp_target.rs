//! The LMTP session's [`DeliveryTarget`] over the store: recipients resolve
//! through the directory, messages go to each user's INBOX in one commit.

use delivery::{DeliverError, DeliveryTarget, ResolveError, UserName};
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
        let intents = users
            .into_iter()
            .map(|user| Intent::Append {
                user,
                mailbox: "INBOX".into(),
                message: prepared.clone(),
                flags: Vec::new(),
                internal_date: None,
            })
            .collect();
        let results = self.store.submit(intents).await;
        let stored = results.iter().filter(|r| r.is_ok()).count() as u64;
        self.metrics
            .record(received.elapsed(), stored, results.len() as u64 - stored);
        if self.sms_alerts {
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
