//! The LMTP session's [`DeliveryTarget`] over the store: recipients resolve
//! through the directory, messages go to each user's INBOX in one commit.

use delivery::{DeliverError, DeliveryTarget, ResolveError, UserName};
use store::{ErrorKind, Intent, Store};

pub struct StoreTarget {
    pub store: Store,
}

impl DeliveryTarget for StoreTarget {
    async fn resolve(&self, address: &str) -> Result<Vec<UserName>, ResolveError> {
        let store = self.store.clone();
        let address = address.to_string();
        match tokio::task::spawn_blocking(move || store.resolve_recipient(&address)).await {
            Ok(Ok(users)) if !users.is_empty() => Ok(users),
            Ok(Ok(_)) => Err(ResolveError::UnknownUser),
            Ok(Err(e)) if e.kind == ErrorKind::NotFound => Err(ResolveError::UnknownUser),
            Ok(Err(e)) => Err(ResolveError::Temporary(e.message)),
            Err(_) => Err(ResolveError::Temporary("resolver task failed".into())),
        }
    }

    async fn deliver(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
    ) -> Vec<Result<(), DeliverError>> {
        let count = users.len();
        let store = self.store.clone();
        // Hashing and parsing are CPU work: off the async workers, once for all recipients.
        let prepared = match tokio::task::spawn_blocking(move || store.prepare(message)).await {
            Ok(p) => p,
            Err(_) => {
                return vec![
                    Err(DeliverError::Temporary("message preparation failed".into()));
                    count
                ];
            }
        };
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
        self.store
            .submit(intents)
            .await
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
