//! The store's side of replication, without a network: a primary's journal
//! read by a cursor and applied to a second store with `Intent::Replicate`,
//! the way `server`'s replication module ships it.

#![allow(clippy::unwrap_used)]

use postern_store as store;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use store::record::{Lsn, Record};
use store::{ErrorKind, FlagMode, Intent, Outcome, Store, StoreConfig};

fn open(dir: &Path) -> Store {
    let mut config = StoreConfig::new(dir.to_path_buf());
    // Small segments: the cursor must cross them.
    config.journal_segment_bytes_max = 4096;
    Store::open(config).unwrap()
}

fn add_user(store: &Store, user: &str) {
    store
        .submit_one_blocking(Intent::AddUser {
            user: user.into(),
            password_hash: store::password::hash("secret").unwrap(),
        })
        .unwrap();
}

fn deliver(store: &Store, user: &str, raw: &[u8]) -> u32 {
    let outcome = store
        .submit_one_blocking(Intent::Append {
            user: user.into(),
            mailbox: "INBOX".into(),
            message: store.prepare(raw.to_vec()),
            flags: Vec::new(),
            internal_date: None,
        })
        .unwrap();
    match outcome {
        Outcome::Appended { uid, .. } => uid,
        other => panic!("unexpected {other:?}"),
    }
}

fn message(n: usize) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: message {n}\r\n\r\nbody {n}\r\n").into_bytes()
}

/// Ships everything after `after` from `primary` to `replica` as the server
/// does: records without the local ones, the contents the replica lacks.
fn ship(primary: &Store, replica: &Store, after: Lsn) -> store::Result<Lsn> {
    let durable = primary.durable_lsn();
    let mut cursor = primary.journal_cursor(after + 1).unwrap();
    let entries = cursor.read(durable, usize::MAX, usize::MAX).unwrap();
    let upto = entries.last().map_or(after, |e| e.lsn);
    let records: Vec<Record> = entries
        .into_iter()
        .map(|e| e.record)
        .filter(|r| !r.is_local())
        .collect();
    let mut blobs = HashMap::new();
    for record in &records {
        if let Record::MessageAdded { blob, .. } = record
            && !replica.has_blob(blob).unwrap()
        {
            blobs.insert(*blob, replica.prepare(primary.blob(blob).unwrap()));
        }
    }
    replica.submit_one_blocking(Intent::Replicate {
        source: primary.store_id().to_string(),
        after,
        upto,
        id_floor: durable + 1,
        records: Arc::new(records),
        blobs: Arc::new(blobs),
        lost: Arc::new(Vec::new()),
    })?;
    Ok(upto)
}

fn digest(store: &Store, user: &str) -> store::replication::UserDigest {
    let reader = store.reader(user).unwrap();
    let password = store.password_hash(user).unwrap().unwrap();
    let quota = store.quota_settings(user).unwrap();
    store::replication::user_digest(&reader, &password, quota, true).unwrap()
}

#[test]
fn a_replica_applies_the_primary_journal_and_ends_up_equal() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open(a.path());
    let replica = open(b.path());
    replica.set_read_only(true);
    add_user(&primary, "alice");
    for n in 0..30 {
        deliver(&primary, "alice", &message(n));
    }
    primary
        .submit_one_blocking(Intent::StoreFlags {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: vec![1, 2, 3],
            mode: FlagMode::Add,
            flags: vec!["\\Seen".into()],
            unchanged_since: None,
        })
        .unwrap();
    // Two shipments: the second continues where the first ended.
    let first = ship(&primary, &replica, 0).unwrap();
    for n in 30..40 {
        deliver(&primary, "alice", &message(n));
    }
    let second = ship(&primary, &replica, first).unwrap();
    assert!(second > first);
    assert_eq!(digest(&primary, "alice"), digest(&replica, "alice"));
    let position = replica.replica_position().unwrap().unwrap();
    assert_eq!(position.source, primary.store_id());
    assert_eq!(position.upto, second);
    assert_ne!(primary.store_id(), replica.store_id());

    // Shipping the same batch again changes nothing (idempotent)...
    let lsn = replica.durable_lsn();
    ship(&primary, &replica, first).unwrap();
    assert_eq!(replica.durable_lsn(), lsn);
    // ...and a batch that skips records is refused.
    deliver(&primary, "alice", &message(99));
    let skipped = ship(&primary, &replica, second + 1).unwrap_err();
    assert_eq!(skipped.kind, ErrorKind::Conflict);
    let inbox = digest(&replica, "alice")
        .mailboxes
        .into_iter()
        .find(|m| m.name == "INBOX")
        .unwrap();
    assert_eq!(inbox.messages, 40);

    // The replica's state survives a restart (position and all).
    drop(replica);
    let replica = open(b.path());
    assert_eq!(replica.replica_position().unwrap().unwrap().upto, second);
}

#[test]
fn a_read_only_store_takes_only_replication_repairs_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    store.set_read_only(true);
    let refused = store
        .submit_one_blocking(Intent::CreateMailbox {
            user: "alice".into(),
            name: "New".into(),
            special_use: None,
        })
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::ReadOnly);
    assert!(refused.message.contains("replica"));
    store
        .submit_one_blocking(Intent::CollectGarbage { bytes_max: 1 << 20 })
        .unwrap();
    store.set_read_only(false);
    // A primary takes no other server's records.
    let refused = store
        .submit_one_blocking(Intent::Replicate {
            source: "someone".into(),
            after: 0,
            upto: 1,
            id_floor: 0,
            records: Arc::new(Vec::new()),
            blobs: Arc::new(HashMap::new()),
            lost: Arc::new(Vec::new()),
        })
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict);
}

#[test]
fn a_batch_naming_a_content_it_did_not_send_is_refused_whole() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open(a.path());
    let replica = open(b.path());
    replica.set_read_only(true);
    add_user(&primary, "alice");
    deliver(&primary, "alice", &message(1));
    let mut cursor = primary.journal_cursor(1).unwrap();
    let entries = cursor.read(primary.durable_lsn(), 1000, 1 << 20).unwrap();
    let upto = entries.last().unwrap().lsn;
    let records: Vec<Record> = entries
        .into_iter()
        .map(|e| e.record)
        .filter(|r| !r.is_local())
        .collect();
    let refused = replica
        .submit_one_blocking(Intent::Replicate {
            source: primary.store_id().into(),
            after: 0,
            upto,
            id_floor: 0,
            records: Arc::new(records),
            blobs: Arc::new(HashMap::new()),
            lost: Arc::new(Vec::new()),
        })
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict);
    // Nothing of it was applied: not the user, not the position.
    assert!(!replica.user_exists("alice").unwrap());
    assert!(replica.replica_position().unwrap().is_none());
}

#[test]
fn the_cursor_reads_across_segments_and_stops_at_the_durable_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    for n in 0..60 {
        deliver(&store, "alice", &message(n));
    }
    let durable = store.durable_lsn();
    assert!(
        store::journal::list_segments(&dir.path().join("journal"))
            .unwrap()
            .len()
            > 2,
        "the test needs several segments"
    );
    // From the middle, in small reads, every LSN once and in order.
    let mut cursor = store.journal_cursor(10).unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = cursor.read(durable, 7, 1 << 20).unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.iter().map(|e| e.lsn));
    }
    assert_eq!(seen, (10..=durable).collect::<Vec<_>>());
    // Nothing past the bound it is given; more once there is more.
    deliver(&store, "alice", &message(1000));
    assert!(cursor.read(durable, 100, 1 << 20).unwrap().is_empty());
    let more = cursor.read(store.durable_lsn(), 100, 1 << 20).unwrap();
    assert_eq!(more.first().map(|e| e.lsn), Some(durable + 1));
    assert_eq!(more.last().map(|e| e.lsn), Some(store.durable_lsn()));
    // A cursor positioned at the very end reads nothing yet.
    let mut end = store.journal_cursor(store.durable_lsn() + 1).unwrap();
    assert!(end.read(u64::MAX, 100, 1 << 20).unwrap().is_empty());
}

#[test]
fn ids_handed_out_after_promotion_stay_above_the_former_primary() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = open(a.path());
    let replica = open(b.path());
    replica.set_read_only(true);
    add_user(&primary, "alice");
    for n in 0..20 {
        deliver(&primary, "alice", &message(n));
    }
    let queued = primary
        .submit_one_blocking(Intent::QueueSms {
            to: "+4915112345678".into(),
            text: "hello".into(),
            purpose: "operator".into(),
            receipt: false,
            user: None,
        })
        .unwrap();
    let Outcome::SmsQueued { id: first_id } = queued else {
        panic!("unexpected {queued:?}")
    };
    ship(&primary, &replica, 0).unwrap();
    // The replica's own LSNs need not follow the primary's (each side
    // journals its own blob locations); its ids follow the floor the
    // primary sent, above every id the primary could have handed out.
    let floor = replica.replica_position().unwrap().unwrap().id_floor;
    assert!(floor > primary.durable_lsn());
    replica.set_read_only(false);
    let queued = replica
        .submit_one_blocking(Intent::QueueSms {
            to: "+4915112345678".into(),
            text: "after promotion".into(),
            purpose: "operator".into(),
            receipt: false,
            user: None,
        })
        .unwrap();
    let Outcome::SmsQueued { id } = queued else {
        panic!("unexpected {queued:?}")
    };
    assert!(
        id >= floor && id > first_id,
        "{id} vs {first_id}, floor {floor}"
    );
}
