//! Helpers the store's tests share: users, messages, deliveries.

#![allow(clippy::unwrap_used, dead_code)]

use postern_store as store;
use store::{FlagMode, Intent, Outcome, Store};

pub fn add_user(store: &Store, user: &str) {
    let hash = store::password::hash("secret").unwrap();
    store
        .submit_one_blocking(Intent::AddUser {
            user: user.into(),
            password_hash: hash,
        })
        .unwrap();
}

pub fn message(n: usize) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: message {n}\r\nMessage-ID: <{n}@example.com>\r\n\r\nbody {n}\r\n").into_bytes()
}

pub fn deliver(store: &Store, users: &[&str], raw: &[u8]) -> Vec<u32> {
    let prepared = store.prepare(raw.to_vec());
    let intents = users
        .iter()
        .map(|u| Intent::Append {
            user: (*u).into(),
            mailbox: "INBOX".into(),
            message: prepared.clone(),
            flags: Vec::new(),
            internal_date: None,
        })
        .collect();
    store
        .submit_blocking(intents)
        .into_iter()
        .map(|r| match r.unwrap() {
            Outcome::Appended { uid, .. } => uid,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

pub fn add_flags(store: &Store, uids: Vec<u32>, flags: &[&str]) {
    store
        .submit_one_blocking(Intent::StoreFlags {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids,
            mode: FlagMode::Add,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            unchanged_since: None,
        })
        .unwrap();
}

/// Alice's messages `uids` of INBOX, flagged \Deleted and expunged.
pub fn expunge(store: &Store, uids: Vec<u32>) {
    add_flags(store, uids, &["\\Deleted"]);
    store
        .submit_one_blocking(Intent::Expunge {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: None,
        })
        .unwrap();
}

pub fn create(store: &Store, user: &str, name: &str) {
    store
        .submit_one_blocking(Intent::CreateMailbox {
            user: user.into(),
            name: name.into(),
            special_use: None,
        })
        .unwrap();
}
