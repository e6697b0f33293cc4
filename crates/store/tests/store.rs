//! The store through its public surface: durability across reopen, rebuild of
//! derived data from the journal, torn tails, deduplication, group commit.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use std::path::Path;
use std::sync::atomic::Ordering;
use store::{ErrorKind, Intent, Outcome, SmsOutcome, Store, StoreConfig};
use support::mail::{add_flags, add_user, deliver, expunge, message};

fn open(dir: &Path) -> Store {
    Store::open(StoreConfig::new(dir.to_path_buf())).unwrap()
}

/// Deletes every derived file (the server index and each user's index), so
/// the next open rebuilds them from the journal.
fn lose_derived_files(dir: &Path) {
    std::fs::remove_file(dir.join("server.sqlite")).unwrap();
    for entry in std::fs::read_dir(dir.join("users")).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
}

/// A store in `dir` with user alice and one message; returns her snapshot.
fn alice_with_one_message(dir: &Path) -> Vec<(String, u32, Vec<MessageState>)> {
    let store = open(dir);
    add_user(&store, "alice");
    deliver(&store, &["alice"], &message(1));
    let snap = snapshot(&store, "alice");
    store.shutdown();
    snap
}

/// UID, flags and bytes of one message.
type MessageState = (u32, Vec<String>, Vec<u8>);

/// (name, uid validity, messages) of every mailbox: what must survive.
fn snapshot(store: &Store, user: &str) -> Vec<(String, u32, Vec<MessageState>)> {
    let reader = store.reader(user).unwrap();
    reader
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| {
            let messages = reader
                .messages(&m.id)
                .unwrap()
                .into_iter()
                .map(|meta| {
                    (
                        meta.uid,
                        meta.flags.clone(),
                        reader.blob(&meta.blob).unwrap(),
                    )
                })
                .collect();
            (m.name, m.uid_validity, messages)
        })
        .collect()
}

/// A verified login is remembered: the same password again is vouched for
/// without hashing; a wrong one, a changed password and a deleted user are not.
#[test]
fn verified_logins_are_remembered_until_the_password_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    assert_eq!(store.authenticate_cached("alice", "secret").unwrap(), None);
    assert_eq!(store.authenticate("alice", "wrong").unwrap(), None);
    assert_eq!(store.authenticate_cached("alice", "wrong").unwrap(), None);
    assert_eq!(
        store.authenticate("Alice", "secret").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        store
            .authenticate_cached("ALICE", "secret")
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    assert_eq!(store.authenticate_cached("alice", "wrong").unwrap(), None);
    assert_eq!(store.authenticate("alice", "wrong").unwrap(), None);

    store
        .submit_one_blocking(Intent::SetPassword {
            user: "alice".into(),
            password_hash: store::password::hash("new secret").unwrap(),
        })
        .unwrap();
    assert_eq!(store.authenticate_cached("alice", "secret").unwrap(), None);
    assert_eq!(store.authenticate("alice", "secret").unwrap(), None);
    assert_eq!(
        store
            .authenticate("alice", "new secret")
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    store
        .submit_one_blocking(Intent::DeleteUser {
            user: "alice".into(),
        })
        .unwrap();
    assert_eq!(
        store.authenticate_cached("alice", "new secret").unwrap(),
        None
    );
    assert_eq!(store.authenticate("alice", "new secret").unwrap(), None);
}

/// `credential_cache_ttl` zero: nothing is remembered.
#[test]
fn the_credential_cache_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().to_path_buf());
    config.credential_cache_ttl = std::time::Duration::ZERO;
    let store = Store::open(config).unwrap();
    add_user(&store, "alice");
    assert!(store.authenticate("alice", "secret").unwrap().is_some());
    assert_eq!(store.authenticate_cached("alice", "secret").unwrap(), None);
}

#[test]
fn mail_flags_and_uids_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = open(dir.path());
        add_user(&store, "alice");
        for n in 0..5 {
            deliver(&store, &["alice"], &message(n));
        }
        add_flags(&store, vec![2, 3], &["\\Deleted", "$Label1"]);
        store
            .submit_one_blocking(Intent::Expunge {
                user: "alice".into(),
                mailbox: "INBOX".into(),
                uids: Some(vec![2]),
            })
            .unwrap();
        let snap = snapshot(&store, "alice");
        store.shutdown();
        snap
    };
    let store = open(dir.path());
    assert_eq!(snapshot(&store, "alice"), before);
    // UIDs are never reused, also after a restart.
    assert_eq!(deliver(&store, &["alice"], &message(99)), vec![6]);
}

#[test]
fn derived_indexes_are_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = open(dir.path());
        add_user(&store, "alice");
        add_user(&store, "bob@example.com");
        for n in 0..20 {
            deliver(&store, &["alice", "bob@example.com"], &message(n));
        }
        store
            .submit_one_blocking(Intent::CreateMailbox {
                user: "alice".into(),
                name: "Work/2026".into(),
                special_use: None,
            })
            .unwrap();
        store
            .submit_one_blocking(Intent::Copy {
                user: "alice".into(),
                from_user: None,
                from: "INBOX".into(),
                uids: vec![1, 2, 3],
                to: "Work/2026".into(),
                remove_source: true,
            })
            .unwrap();
        let snap = (
            snapshot(&store, "alice"),
            snapshot(&store, "bob@example.com"),
        );
        store.shutdown();
        snap
    };
    // Lose every derived file.
    lose_derived_files(dir.path());
    let store = open(dir.path());
    assert!(store.stats().replayed.load(Ordering::Relaxed) > 0);
    assert_eq!(
        (
            snapshot(&store, "alice"),
            snapshot(&store, "bob@example.com")
        ),
        before
    );
    assert_eq!(
        store.authenticate("alice", "secret").unwrap().as_deref(),
        Some("alice")
    );
}

#[test]
fn a_damaged_user_index_is_moved_aside_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let before = alice_with_one_message(dir.path());
    let index = dir.path().join("users/alice/index.sqlite");
    std::fs::write(&index, b"this is not a database, it is damage").unwrap();
    let _ = std::fs::remove_file(dir.path().join("users/alice/index.sqlite-wal"));
    let store = open(dir.path());
    assert_eq!(snapshot(&store, "alice"), before);
}

#[test]
fn a_torn_journal_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let before = alice_with_one_message(dir.path());
    // A crash in the middle of writing a batch that was never acknowledged.
    let segment = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let good = bytes.len();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']);
    std::fs::write(&segment, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(snapshot(&store, "alice"), before);
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, good);
    // And it keeps working after the cut.
    assert_eq!(deliver(&store, &["alice"], &message(2)), vec![2]);
}

#[test]
fn damage_inside_the_journal_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut config = StoreConfig::new(dir.path().to_path_buf());
        config.journal_segment_bytes_max = 512; // many segments
        let store = Store::open(config).unwrap();
        add_user(&store, "alice");
        for n in 0..10 {
            deliver(&store, &["alice"], &message(n));
        }
        store.shutdown();
    }
    let mut segments: Vec<_> = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    assert!(segments.len() > 2);
    let first = &segments[0];
    let mut bytes = std::fs::read(first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(first, &bytes).unwrap();
    // Force a full replay so the damaged segment is read.
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    let error = Store::open(StoreConfig::new(dir.path().to_path_buf()))
        .err()
        .expect("damage must stop the start");
    assert_eq!(error.kind, ErrorKind::Corrupt);
    assert!(
        error.message.contains("journal damaged"),
        "{}",
        error.message
    );
}

#[test]
fn identical_content_is_stored_once_across_users() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for user in ["a", "b", "c", "d"] {
        add_user(&store, user);
    }
    let big = {
        let mut m = message(1);
        m.extend(std::iter::repeat_n(b'x', 100_000));
        m
    };
    deliver(&store, &["a", "b", "c", "d"], &big);
    deliver(&store, &["a"], &big);
    let pack_bytes: u64 = std::fs::read_dir(dir.path().join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        pack_bytes < 2 * big.len() as u64,
        "stored {pack_bytes} bytes for 5 copies of {}",
        big.len()
    );
}

#[test]
fn concurrent_deliveries_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for t in 0..8 {
        add_user(&store, &format!("user{t}"));
    }
    let before = store.stats().batches.load(Ordering::Relaxed);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..50 {
                    deliver(&store, &[&format!("user{t}")], &message(t * 1000 + n));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let batches = store.stats().batches.load(Ordering::Relaxed) - before;
    // 400 deliveries; one fsync each would be 400 batches.
    assert!(
        batches < 400,
        "{batches} batches for 400 concurrent deliveries"
    );
    for t in 0..8 {
        let reader = store.reader(&format!("user{t}")).unwrap();
        let inbox = reader.mailbox("INBOX").unwrap().unwrap();
        let uids: Vec<u32> = reader
            .messages(&inbox.id)
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(uids, (1..=50).collect::<Vec<u32>>());
    }
}

/// The committer thread commits user indexes after the writer moved on: a
/// caller must still find its change in the index the moment its answer
/// arrives, for the same user in consecutive batches and across users.
#[test]
fn an_answer_never_runs_ahead_of_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for t in 0..4 {
        add_user(&store, &format!("user{t}"));
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                // Half the deliveries go to this thread's own user, half to a shared
                // one, so batches meet both a lent connection and a free one.
                let own = format!("user{t}");
                let reader = store.reader(&own).unwrap();
                let shared = store.reader("user0").unwrap();
                for n in 0..60 {
                    let target = if n % 2 == 0 { own.as_str() } else { "user0" };
                    let uid = deliver(&store, &[target], &message(t * 1000 + n))[0];
                    let reader = if target == own { &reader } else { &shared };
                    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
                    assert!(
                        reader
                            .messages(&inbox.id)
                            .unwrap()
                            .iter()
                            .any(|m| m.uid == uid),
                        "{target}: UID {uid} answered but not in the index"
                    );
                    assert!(inbox.uid_next > uid, "{target}: UIDNEXT behind UID {uid}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_damaged_cache_entry_is_rederived_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    deliver(&store, &["alice"], &message(7));
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let meta = reader.messages(&inbox.id).unwrap().remove(0);
    let good = reader.summary(&inbox.id, &meta).unwrap();
    // Damage the cached summary behind the store's back.
    let conn = rusqlite::Connection::open(dir.path().join("users/alice/index.sqlite")).unwrap();
    conn.execute("UPDATE messages SET summary = CAST(REPLACE(CAST(summary AS TEXT), 'message 7', 'message 8') AS BLOB)", [])
        .unwrap();
    let again = reader.summary(&inbox.id, &meta).unwrap();
    assert_eq!(again, good);
    assert!(again.subject.contains("message 7"));
}

/// Summaries read in one scan answer exactly as one lookup each: for a
/// dense set, a sparse one and one out of order, with a damaged entry among
/// them re-derived, and an expunged message an error of its own.
#[test]
fn summaries_in_one_scan_answer_as_lookups_do() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    for n in 1..=12 {
        deliver(&store, &["alice"], &message(n));
    }
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let metas = reader.messages(&inbox.id).unwrap();
    let one_by_one: Vec<mime::Summary> = metas
        .iter()
        .map(|m| reader.summary(&inbox.id, m).unwrap())
        .collect();
    let conn = rusqlite::Connection::open(dir.path().join("users/alice/index.sqlite")).unwrap();
    conn.execute("UPDATE messages SET summary = CAST(REPLACE(CAST(summary AS TEXT), 'message 5', 'message 6') AS BLOB) WHERE uid = 5", [])
        .unwrap();
    let all: Vec<&store::MessageMeta> = metas.iter().collect();
    let dense: Vec<mime::Summary> = reader
        .summaries(&inbox.id, &all)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(dense, one_by_one);
    assert!(dense[4].subject.contains("message 5"));
    let picked = [&metas[9], &metas[0], &metas[4], &metas[11]];
    let mixed: Vec<mime::Summary> = reader
        .summaries(&inbox.id, &picked)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        mixed,
        vec![
            one_by_one[9].clone(),
            one_by_one[0].clone(),
            one_by_one[4].clone(),
            one_by_one[11].clone()
        ]
    );
    // A message expunged since its meta was read: an error for it alone.
    conn.execute("DELETE FROM messages WHERE uid = 3", [])
        .unwrap();
    let answers = reader.summaries(&inbox.id, &all);
    assert_eq!(answers.len(), 12);
    assert!(answers[2].is_err());
    assert_eq!(answers[3].as_ref().unwrap(), &one_by_one[3]);
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let error = Store::open(StoreConfig::new(dir.path().to_path_buf()))
        .err()
        .expect("locked");
    assert_eq!(error.kind, ErrorKind::Unavailable);
}

#[test]
fn garbage_collection_reclaims_packs_and_keeps_live_mail() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().to_path_buf());
    config.pack_bytes_max = 64 * 1024; // several packs
    let store = Store::open(config.clone()).unwrap();
    add_user(&store, "alice");
    let body = |n: usize| {
        let mut m = message(n);
        m.extend(std::iter::repeat_n(b'a' + (n % 26) as u8, 8_000));
        m
    };
    for n in 0..40 {
        deliver(&store, &["alice"], &body(n));
    }
    let pack_bytes = |dir: &Path| -> u64 {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = pack_bytes(dir.path());
    // Expunge all but every tenth message.
    let doomed: Vec<u32> = (1..=40).filter(|u| u % 10 != 0).collect();
    expunge(&store, doomed.clone());
    let outcome = store
        .submit_one_blocking(Intent::CollectGarbage {
            bytes_max: u64::MAX,
        })
        .unwrap();
    let Outcome::Collected {
        blobs_removed,
        packs_deleted,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    // The pack being written is never collected; every older one is mostly garbage.
    assert!(blobs_removed >= 25, "{blobs_removed}");
    assert!(packs_deleted >= 3, "{packs_deleted}");
    let after = pack_bytes(dir.path());
    assert!(after * 2 < before, "packs {before} -> {after} bytes");
    let live = snapshot(&store, "alice");
    store.shutdown();
    drop(store);
    // Survivors read back, and a full rebuild from the journal still finds every blob.
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    std::fs::remove_dir_all(dir.path().join("users/alice")).unwrap();
    let store = Store::open(config).unwrap();
    assert_eq!(snapshot(&store, "alice"), live);
}

#[test]
fn garbage_collection_keeps_the_blobs_its_batch_wrote_ahead() {
    // Found by tests/e2e/test_crash.py (seed 41): the writer writes every new blob of
    // a batch before planning its intents, so a collection planned before an Append
    // of the same batch found a pack that pass had just filled with no index row
    // naming it, took it for garbage and deleted it; the Append then recorded its
    // blob in the deleted pack. An acknowledged message lost its content.
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().to_path_buf());
    config.pack_bytes_max = 64 * 1024;
    let store = Store::open(config).unwrap();
    add_user(&store, "alice");
    deliver(&store, &["alice"], &message(1));
    // The large one goes to a new pack, the small one after it to another, so the
    // pack of the large one is no longer the one being written when GC looks.
    let mut large = message(2);
    large.extend(std::iter::repeat_n(b'x', 100_000));
    let intent = |raw: Vec<u8>| Intent::Append {
        user: "alice".into(),
        mailbox: "INBOX".into(),
        message: store.prepare(raw),
        flags: Vec::new(),
        internal_date: None,
    };
    let results = store.submit_blocking(vec![
        Intent::CollectGarbage {
            bytes_max: u64::MAX,
        },
        intent(large.clone()),
        intent(message(3)),
    ]);
    for result in results {
        result.unwrap();
    }
    let inbox = snapshot(&store, "alice")
        .into_iter()
        .find(|(name, ..)| name == "INBOX")
        .unwrap();
    let bodies: Vec<Vec<u8>> = inbox.2.into_iter().map(|(_, _, body)| body).collect();
    assert_eq!(bodies, vec![message(1), large, message(3)]);
}

#[test]
fn a_refused_append_writes_no_bytes() {
    // REVIEW A4: an APPEND to a missing mailbox must not leave its blob behind.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    let packs = |dir: &Path| -> u64 {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = packs(dir.path());
    let big = vec![b'x'; 100_000];
    let result = store.submit_one_blocking(Intent::Append {
        user: "alice".into(),
        mailbox: "NoSuchBox".into(),
        message: store.prepare(big),
        flags: vec![],
        internal_date: None,
    });
    assert_eq!(result.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(packs(dir.path()), before);
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_not_cut_off() {
    // REVIEW B2: only a torn end may be cut; acknowledged records after damage must
    // not vanish silently. The flag change at the end is a records-only batch: no
    // pack holds a copy of it, so nothing may cut the journal before it.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        add_user(&store, "alice");
        for n in 0..5 {
            deliver(&store, &["alice"], &message(n));
        }
        add_flags(&store, vec![1], &["\\Flagged"]);
        store.shutdown();
    }
    let segment = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&segment).unwrap();
    let length = bytes.len();
    bytes[length / 2] ^= 0x55;
    std::fs::write(&segment, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    let error = Store::open(StoreConfig::new(dir.path().to_path_buf()))
        .err()
        .expect("must refuse");
    assert_eq!(error.kind, ErrorKind::Corrupt);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len() as usize,
        length,
        "nothing may be cut"
    );
}

#[test]
fn a_damaged_blob_does_not_stop_the_start() {
    // REVIEW B4: one unreadable blob is that message's problem, not everyone's.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        add_user(&store, "alice");
        deliver(&store, &["alice"], &message(1));
        deliver(&store, &["alice"], &message(2));
        store.shutdown();
    }
    let pack = dir.path().join("blobs/pack-0000000001");
    let mut bytes = std::fs::read(&pack).unwrap();
    let at = bytes.windows(6).position(|w| w == b"body 2").unwrap();
    bytes[at] ^= 0xff; // inside message 2's bytes
    std::fs::write(&pack, &bytes).unwrap();
    std::fs::remove_dir_all(dir.path().join("users/alice")).unwrap();
    let store = open(dir.path());
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let messages = reader.messages(&inbox.id).unwrap();
    assert_eq!(messages.len(), 2);
    assert!(reader.blob(&messages[0].blob).is_ok());
    assert_eq!(
        reader.blob(&messages[1].blob).unwrap_err().kind,
        ErrorKind::Corrupt
    );
}

#[test]
fn journal_records_lost_in_a_crash_come_back_from_the_packs() {
    // Batches that write blobs are committed by one fsync of the pack, which holds
    // a copy of their records; the journal copy is fsynced lazily. Simulate a crash
    // that lost (or half wrote) that lazy journal tail.
    let segment = |dir: &Path| {
        std::fs::read_dir(dir.join("journal"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    };
    for tail in [
        &b""[..],
        &[0u8; 300][..],
        &b"\x10\x00\x00\x00garbage-that-is-not-a-frame"[..],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (durable_len, before) = {
            let store = open(dir.path());
            add_user(&store, "alice"); // records only: fsynced in the journal itself
            let durable_len = std::fs::metadata(segment(dir.path())).unwrap().len();
            for n in 0..5 {
                deliver(&store, &["alice"], &message(n));
            }
            let snap = snapshot(&store, "alice");
            store.shutdown();
            (durable_len, snap)
        };
        let path = segment(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(durable_len as usize);
        bytes.extend_from_slice(tail);
        std::fs::write(&path, &bytes).unwrap();
        lose_derived_files(dir.path());
        let store = open(dir.path());
        assert_eq!(snapshot(&store, "alice"), before, "tail {tail:?}");
        // And the store goes on from there without reusing a UID.
        assert_eq!(deliver(&store, &["alice"], &message(100)), vec![6]);
    }
}

fn queue_sms(store: &Store, to: &str, text: &str) -> u64 {
    match store
        .submit_one_blocking(Intent::QueueSms {
            to: to.into(),
            text: text.into(),
            purpose: "operator".into(),
            receipt: true,
            user: None,
        })
        .unwrap()
    {
        Outcome::SmsQueued { id } => id,
        other => panic!("unexpected {other:?}"),
    }
}

fn sms_outcome(store: &Store, id: u64, outcome: SmsOutcome) -> store::Result<Outcome> {
    store.submit_one_blocking(Intent::SmsOutcome { id, outcome })
}

/// The SMS outbox: queued, due, retried, sent, delivered or failed; durable
/// across a restart and rebuilt from the journal like every derived table.
#[test]
fn the_sms_outbox_keeps_every_state_and_survives_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let listing = {
        let store = open(dir.path());
        let mut watch = store.watch_sms();
        let a = queue_sms(&store, "+41791234567", "Grüße €");
        let b = queue_sms(&store, "+12025550123", "Привет");
        let c = queue_sms(&store, "+819012345678", "こんにちは");
        assert!(a < b && b < c, "ids in queueing order");
        assert!(watch.has_changed().unwrap(), "the sender is woken");
        watch.mark_unchanged();
        let now = store::writer::now_seconds();
        let due: Vec<u64> = store
            .sms_due(now, 10)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(due, vec![a, b, c]);

        sms_outcome(
            &store,
            a,
            SmsOutcome::Sent {
                smsc_ids: vec!["m1".into(), "m2".into()],
            },
        )
        .unwrap();
        sms_outcome(
            &store,
            b,
            SmsOutcome::Retry {
                not_before: now + 3600,
                reason: "0x00000058 throttled".into(),
            },
        )
        .unwrap();
        sms_outcome(
            &store,
            c,
            SmsOutcome::Failed {
                reason: "0x0000000B invalid destination".into(),
            },
        )
        .unwrap();
        assert!(watch.has_changed().unwrap());
        assert!(
            store.sms_due(now, 10).unwrap().is_empty(),
            "b waits an hour, a and c are done"
        );
        assert_eq!(
            store
                .sms_due(now + 3600, 10)
                .unwrap()
                .iter()
                .map(|s| s.id)
                .collect::<Vec<_>>(),
            vec![b]
        );
        // Only a queued SMS takes an outcome.
        let again = sms_outcome(
            &store,
            a,
            SmsOutcome::Failed {
                reason: "late".into(),
            },
        );
        assert_eq!(again.unwrap_err().kind, ErrorKind::Invalid);
        let unknown = sms_outcome(&store, 999_999, SmsOutcome::Failed { reason: "x".into() });
        assert_eq!(unknown.unwrap_err().kind, ErrorKind::NotFound);

        store
            .submit_one_blocking(Intent::SmsReceipt {
                smsc_id: "m2".into(),
                delivered: true,
                detail: "stat:DELIVRD".into(),
            })
            .unwrap();
        // A receipt for an id nobody sent is kept in the journal and changes nothing.
        store
            .submit_one_blocking(Intent::SmsReceipt {
                smsc_id: "nope".into(),
                delivered: false,
                detail: "stat:UNDELIV".into(),
            })
            .unwrap();
        let sms_a = store.sms(a).unwrap().unwrap();
        assert_eq!(sms_a.state, "delivered");
        assert_eq!(sms_a.smsc_ids, vec!["m1", "m2"]);
        let sms_b = store.sms(b).unwrap().unwrap();
        assert_eq!((sms_b.state.as_str(), sms_b.attempts), ("queued", 1));
        assert!(sms_b.reason.contains("throttled"));
        let sms_c = store.sms(c).unwrap().unwrap();
        assert_eq!(sms_c.state, "failed");
        assert!(sms_c.reason.contains("invalid destination"));
        assert_eq!(sms_c.text, "こんにちは");
        let listing = store.sms_list(10).unwrap();
        assert_eq!(
            listing.iter().map(|s| s.id).collect::<Vec<_>>(),
            vec![c, b, a]
        );
        store.shutdown();
        listing
    };
    let store = open(dir.path());
    assert_eq!(
        store.sms_list(10).unwrap(),
        listing,
        "kept across a restart"
    );
    store.shutdown();
    drop(store);
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    let store = open(dir.path());
    assert_eq!(
        store.sms_list(10).unwrap(),
        listing,
        "rebuilt from the journal"
    );
}

#[test]
fn the_sms_outbox_refuses_bad_numbers_and_texts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let long = "x".repeat(store::SMS_TEXT_BYTES_MAX + 1);
    for (to, text, purpose) in [
        ("41791234567", "no plus", "operator"),
        ("+0791234567", "leading zero", "operator"),
        ("+417912", "too short", "operator"),
        ("+4179123456789012", "too long", "operator"),
        ("+41 79 123", "spaces", "operator"),
        ("+41791234567", "", "operator"),
        ("+41791234567", long.as_str(), "operator"),
        ("+41791234567", "bad purpose", "Operator!"),
    ] {
        let refused = store.submit_one_blocking(Intent::QueueSms {
            to: to.into(),
            text: text.into(),
            purpose: purpose.into(),
            receipt: false,
            user: None,
        });
        assert_eq!(
            refused.unwrap_err().kind,
            ErrorKind::Invalid,
            "{to:?} {purpose:?} len {}",
            text.len()
        );
    }
    assert!(store.sms_list(10).unwrap().is_empty(), "nothing was queued");
}

#[test]
fn sms_alerts_are_kept_per_user_and_counted_per_hour() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    let alert = store::SmsAlert {
        number: "+41791234567".into(),
        from: vec!["boss@example.com".into()],
        to: Vec::new(),
        important_only: false,
        quiet: Some((22 * 60, 7 * 60)),
        zone_minutes: 60,
        per_hour_max: 5,
    };
    store
        .submit_one_blocking(Intent::SetSmsAlert {
            user: "alice".into(),
            alert: Some(alert.clone()),
        })
        .unwrap();
    assert_eq!(store.sms_alert("alice").unwrap(), Some(alert.clone()));
    // Unknown users and bad settings are refused.
    let refused = store.submit_one_blocking(Intent::SetSmsAlert {
        user: "nobody".into(),
        alert: Some(alert.clone()),
    });
    assert_eq!(refused.unwrap_err().kind, ErrorKind::NotFound);
    for bad in [
        store::SmsAlert {
            number: "12345".into(),
            ..alert.clone()
        },
        store::SmsAlert {
            per_hour_max: 0,
            ..alert.clone()
        },
        store::SmsAlert {
            quiet: Some((1440, 0)),
            ..alert.clone()
        },
        store::SmsAlert {
            from: vec![String::new()],
            ..alert.clone()
        },
    ] {
        let refused = store.submit_one_blocking(Intent::SetSmsAlert {
            user: "alice".into(),
            alert: Some(bad.clone()),
        });
        assert_eq!(refused.unwrap_err().kind, ErrorKind::Invalid, "{bad:?}");
    }
    let now = store::writer::now_seconds();
    for _ in 0..3 {
        store
            .submit_one_blocking(Intent::QueueSms {
                to: alert.number.clone(),
                text: "New mail from Boss: hello".into(),
                purpose: "alert".into(),
                receipt: false,
                user: Some(("alice".into(), 3)),
            })
            .unwrap();
    }
    assert_eq!(store.sms_alerts_since("alice", now - 3600).unwrap(), 3);
    // The cap is checked in the commit that queues: a fourth is refused.
    let capped = store.submit_one_blocking(Intent::QueueSms {
        to: alert.number.clone(),
        text: "one too many".into(),
        purpose: "alert".into(),
        receipt: false,
        user: Some(("alice".into(), 3)),
    });
    assert_eq!(capped.unwrap_err().kind, ErrorKind::OverQuota);
    // Concurrent alerts in one batch cannot pass it either.
    let burst = store.submit_blocking(
        (0..5)
            .map(|_| Intent::QueueSms {
                to: alert.number.clone(),
                text: "burst".into(),
                purpose: "alert".into(),
                receipt: false,
                user: Some(("alice".into(), 5)),
            })
            .collect(),
    );
    assert_eq!(burst.iter().filter(|r| r.is_ok()).count(), 2, "{burst:?}");
    assert_eq!(store.sms_alerts_since("alice", now + 10).unwrap(), 0);
    store
        .submit_one_blocking(Intent::DeleteUser {
            user: "alice".into(),
        })
        .unwrap();
    assert_eq!(
        store.sms_alert("alice").unwrap(),
        None,
        "a deleted user's alert goes with it"
    );
}

/// Receipts: a final failure marks the message undelivered, an interim state
/// only notes the detail, a receipt that overtakes the message's SmsSent is
/// applied when it comes, and SMSC strings lose their control characters.
#[test]
fn sms_receipts_are_applied_by_their_meaning_and_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let receipt = |smsc_id: &str, delivered: bool, detail: &str| {
        store
            .submit_one_blocking(Intent::SmsReceipt {
                smsc_id: smsc_id.into(),
                delivered,
                detail: detail.into(),
            })
            .unwrap();
    };
    // Seven digits: the shortest numbers in use.
    let a = queue_sms(&store, "+2901234", "a");
    let b = queue_sms(&store, "+41791234567", "b");
    sms_outcome(
        &store,
        a,
        SmsOutcome::Sent {
            smsc_ids: vec!["a1".into()],
        },
    )
    .unwrap();
    receipt("a1", false, "ENROUTE err:000");
    assert_eq!(
        store.sms(a).unwrap().unwrap().state,
        "sent",
        "ENROUTE is not final"
    );
    receipt("a1", true, "DELIVRD err:000");
    assert_eq!(store.sms(a).unwrap().unwrap().state, "delivered");
    // b's second segment's receipt arrives before b is recorded as sent.
    receipt("b2", false, "UNDELIV err:\x1b[31m001");
    sms_outcome(
        &store,
        b,
        SmsOutcome::Sent {
            smsc_ids: vec!["b1".into(), "b2".into()],
        },
    )
    .unwrap();
    let b = store.sms(b).unwrap().unwrap();
    assert_eq!(b.state, "undelivered");
    assert!(!b.delivery.contains('\x1b'), "{:?}", b.delivery);
    // And the same after a rebuild from the journal.
    let before = store.sms_list(10).unwrap();
    store.shutdown();
    drop(store);
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    let store = open(dir.path());
    assert_eq!(store.sms_list(10).unwrap(), before);
}

/// Quotas: a user's own or the default; checked on delivery, APPEND and COPY,
/// with what earlier intents of the same batch added counted; usage survives
/// a rebuild of the index.
fn set_metadata(
    store: &Store,
    user: Option<&str>,
    mailbox: Option<&str>,
    entries: &[(&str, Option<&[u8]>)],
) -> store::Result<Outcome> {
    store.submit_one_blocking(Intent::SetMetadata {
        user: user.map(str::to_string),
        mailbox: mailbox.map(store::MailboxRef::from),
        entries: entries
            .iter()
            .map(|(e, v)| (e.to_string(), v.map(|v| store::MetadataValue(v.to_vec()))))
            .collect(),
        limits: store::MetadataLimits {
            value_bytes_max: 16,
            entries_max: 4,
        },
    })
}

/// Alice's annotations as `(mailbox name, entry, value)`, server ones under "".
fn annotations(store: &Store) -> Vec<(String, String, Vec<u8>)> {
    let reader = store.reader("alice").unwrap();
    let mut out = Vec::new();
    let mut boxes: Vec<(String, String)> = reader
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.id))
        .collect();
    boxes.push((String::new(), String::new()));
    for (name, id) in boxes {
        for root in ["/private", "/shared"] {
            for (entry, value) in reader.metadata_below(&id, root, false).unwrap() {
                out.push((name.clone(), entry, value));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn annotations_follow_their_mailbox_and_survive_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    add_user(&store, "bob");
    let alice = Some("alice");
    set_metadata(
        &store,
        alice,
        Some("Drafts"),
        &[
            ("/Shared/Comment", Some(b"drafts here")),
            ("/private/vendor/x/bin", Some(&[0, 1, 255])),
        ],
    )
    .unwrap();
    set_metadata(&store, alice, None, &[("/private/comment", Some(b"mine"))]).unwrap();
    set_metadata(
        &store,
        None,
        None,
        &[("/shared/admin", Some(b"mailto:a@b"))],
    )
    .unwrap();
    // Rename keeps them (keyed by id), delete drops them.
    store
        .submit_one_blocking(Intent::CreateMailbox {
            user: "alice".into(),
            name: "Old".into(),
            special_use: None,
        })
        .unwrap();
    set_metadata(&store, alice, Some("Old"), &[("/shared/x", Some(b"gone"))]).unwrap();
    store
        .submit_one_blocking(Intent::RenameMailbox {
            user: "alice".into(),
            from: "Drafts".into(),
            to: "Entw\u{fc}rfe".into(),
        })
        .unwrap();
    store
        .submit_one_blocking(Intent::DeleteMailbox {
            user: "alice".into(),
            name: "Old".into(),
        })
        .unwrap();
    let expected = vec![
        (
            String::new(),
            "/private/comment".to_string(),
            b"mine".to_vec(),
        ),
        (
            "Entw\u{fc}rfe".to_string(),
            "/private/vendor/x/bin".to_string(),
            vec![0, 1, 255],
        ),
        (
            "Entw\u{fc}rfe".to_string(),
            "/shared/comment".to_string(),
            b"drafts here".to_vec(),
        ),
    ];
    assert_eq!(annotations(&store), expected);
    // Removing with NIL.
    set_metadata(&store, alice, None, &[("/private/comment", None)]).unwrap();
    set_metadata(&store, alice, None, &[("/private/comment", Some(b"mine"))]).unwrap();
    assert!(
        store
            .reader("bob")
            .unwrap()
            .metadata_below("", "/private", false)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.server_metadata("/shared/admin").unwrap(),
        Some(b"mailto:a@b".to_vec())
    );
    store.shutdown();
    drop(store);

    // Rebuilt from the journal alone.
    lose_derived_files(dir.path());
    let store = open(dir.path());
    assert_eq!(annotations(&store), expected);
    assert_eq!(
        store.server_metadata_below("/shared", true).unwrap(),
        vec![("/shared/admin".to_string(), b"mailto:a@b".to_vec())]
    );
    // Reconstruct agrees with what replay built, and restores a lost row.
    let options = store::reconstruct::Options {
        user: Some("alice".into()),
        mailbox: None,
        mailbox_id: None,
        check_only: false,
        read_bytes_per_sec: 0,
    };
    let report = store.reconstruct(&options, &|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.details);
    let index = rusqlite::Connection::open(dir.path().join("users/alice/index.sqlite")).unwrap();
    index
        .execute("DELETE FROM metadata WHERE entry = '/shared/comment'", [])
        .unwrap();
    index
        .execute(
            "INSERT INTO metadata (mailbox, entry, value) VALUES ('', '/private/bogus', x'00')",
            [],
        )
        .unwrap();
    let report = store.reconstruct(&options, &|_| {}).unwrap();
    assert_eq!(report.problems, 2, "{:?}", report.details);
    assert_eq!(annotations(&store), expected);
    store.shutdown();
}

#[test]
fn annotations_are_checked_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    add_user(&store, "alice");
    let alice = Some("alice");
    let kind = |r: store::Result<Outcome>| r.unwrap_err().kind;
    for bad in [
        "/comment",
        "/shared/",
        "/shared//a",
        "/shared/*",
        "/private",
    ] {
        assert_eq!(
            kind(set_metadata(
                &store,
                alice,
                Some("INBOX"),
                &[(bad, Some(b"x"))]
            )),
            ErrorKind::Invalid,
            "{bad}"
        );
    }
    // Too big a value; a user's shared server entry; the admin's private one.
    assert_eq!(
        kind(set_metadata(
            &store,
            alice,
            Some("INBOX"),
            &[("/shared/a", Some(&[b'x'; 17]))]
        )),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(set_metadata(
            &store,
            alice,
            None,
            &[("/shared/a", Some(b"x"))]
        )),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(set_metadata(
            &store,
            None,
            None,
            &[("/private/a", Some(b"x"))]
        )),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(set_metadata(
            &store,
            alice,
            Some("Nope"),
            &[("/shared/a", Some(b"x"))]
        )),
        ErrorKind::NotFound
    );
    // Four entries at most, per user over all mailboxes; all or nothing.
    set_metadata(
        &store,
        alice,
        Some("INBOX"),
        &[("/shared/a", Some(b"1")), ("/shared/b", Some(b"2"))],
    )
    .unwrap();
    set_metadata(&store, alice, None, &[("/private/c", Some(b"3"))]).unwrap();
    assert_eq!(
        kind(set_metadata(
            &store,
            alice,
            Some("Sent"),
            &[("/shared/d", Some(b"4")), ("/shared/e", Some(b"5"))]
        )),
        ErrorKind::OverQuota
    );
    assert_eq!(annotations(&store).len(), 3);
    set_metadata(&store, alice, Some("Sent"), &[("/shared/d", Some(b"4"))]).unwrap();
    // At the cap, replacing and removing still work.
    set_metadata(
        &store,
        alice,
        Some("INBOX"),
        &[("/shared/a", Some(b"one")), ("/shared/b", None)],
    )
    .unwrap();
    assert_eq!(annotations(&store).len(), 3);
    store.shutdown();
}

/// Usage and quotas are derived data: rebuilt from the journal, the same.
#[test]
fn usage_and_quotas_are_rebuilt_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let configured = || {
        let mut config = StoreConfig::new(dir.path().to_path_buf());
        config.default_quota = (None, Some(3));
        config
    };
    let store = Store::open(configured()).unwrap();
    add_user(&store, "alice");
    add_user(&store, "bob");
    deliver(&store, &["alice"], &message(1));
    store
        .submit_one_blocking(Intent::SetQuota {
            user: "bob".into(),
            storage_bytes: Some(1000),
            messages: Some(100),
        })
        .unwrap();
    deliver(&store, &["bob"], &message(2));
    let before = (store.quota("alice").unwrap(), store.quota("bob").unwrap());
    assert_eq!(before.0.used_messages, 1);
    assert_eq!(before.1.storage_max, Some(1000));
    store.shutdown();
    drop(store);
    lose_derived_files(dir.path());
    let store = Store::open(configured()).unwrap();
    assert_eq!(
        (store.quota("alice").unwrap(), store.quota("bob").unwrap()),
        before
    );
}
