//! Reconstruct on PostgreSQL: rows damaged under the store (by SQL, as a
//! bug or an operator could) are found by comparing them with the change
//! log, repaired online through the writer, and a second run finds nothing
//! and writes nothing. The user lives on the second of two shards, so the
//! check and the repairs go where the directory says.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use store::Store;
use store::reconstruct::{Options, Report};
use support::mail::{add_user, create, deliver, message};
use support::{Backend, sql};

fn options(check_only: bool) -> Options {
    Options {
        user: None,
        mailbox: None,
        mailbox_id: None,
        check_only,
        read_bytes_per_sec: 0,
    }
}

fn kinds(report: &Report) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = report.details.iter().map(|p| p.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// What a client reads: mailboxes, and per message UID, flags, bytes and
/// the subject the cache says.
fn view(store: &Store, user: &str) -> Vec<String> {
    let reader = store.reader(user).unwrap();
    let mut out = vec![format!("{:?}", reader.subscriptions().unwrap())];
    for mailbox in reader.mailboxes().unwrap() {
        out.push(format!(
            "{} {} {}",
            mailbox.name, mailbox.uid_validity, mailbox.uid_next
        ));
        for meta in reader.messages(&mailbox.id).unwrap() {
            let summary = reader.summary(&mailbox.id, &meta).unwrap();
            let bytes = reader.message_bytes(&mailbox.id, &meta).unwrap();
            out.push(format!(
                "  {} {:?} {:?} {}",
                meta.uid,
                meta.flags,
                summary.subject,
                bytes.len()
            ));
        }
    }
    out
}

#[test]
fn damaged_rows_are_found_repaired_and_a_second_run_writes_nothing() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    assert_eq!(store.directory_entry("bob").unwrap().unwrap().shard, "b");
    for n in 1..=5 {
        deliver(&store, &["bob"], &message(n));
    }
    deliver(&store, &["alice"], &message(9));
    store
        .submit_one_blocking(store::Intent::StoreFlags {
            user: "bob".into(),
            mailbox: "INBOX".into(),
            uids: vec![1, 4],
            mode: store::FlagMode::Add,
            flags: vec!["\\Seen".into()],
            unchanged_since: None,
        })
        .unwrap();
    create(&store, "bob", "Projects");
    let healthy = view(&store, "bob");
    let alice_before = view(&store, "alice");
    assert!(store.reconstruct(&options(true), &|_| {}).unwrap().problems == 0);

    let shard_b = store.shards[1].1.clone();
    let id: i64 = sql(&shard_b, "SELECT id FROM users WHERE name = 'bob'")[0].get(0);
    for damage in [
        // A cache entry overwritten (the incident's corrupted cache files).
        format!("UPDATE message_cache SET summary = '\\x7b7d' WHERE user_id = {id} AND uid = 2"),
        // A message row lost, with its cache.
        format!("DELETE FROM messages WHERE user_id = {id} AND uid = 3"),
        // Flags a client may have seen wrong.
        format!("UPDATE messages SET flags = '' WHERE user_id = {id} AND uid = 4"),
        // A row whose fields no longer match its checksum.
        format!("UPDATE messages SET size = size + 1 WHERE user_id = {id} AND uid = 5"),
        // Counters, a subscription, a tombstone of nothing.
        format!("UPDATE users SET usage_bytes = 0 WHERE id = {id}"),
        format!("DELETE FROM subscriptions WHERE user_id = {id} AND name = 'Sent'"),
        format!(
            "INSERT INTO expunged (user_id, mailbox, uid, modseq)
             SELECT {id}, id, 77, 1 FROM mailboxes WHERE user_id = {id} AND name = 'INBOX'"
        ),
    ] {
        sql(&shard_b, &damage);
    }
    let seq_before: i64 = sql(
        &shard_b,
        &format!("SELECT last_seq FROM users WHERE id = {id}"),
    )[0]
    .get(0);

    let check = store.reconstruct(&options(true), &|_| {}).unwrap();
    assert_eq!(
        kinds(&check),
        [
            "cache_damaged",
            "flags_wrong",
            "message_missing",
            "row_damaged",
            "subscription_missing",
            "tombstone_unsupported",
            "usage_wrong"
        ],
        "{:#?}",
        check.details
    );
    assert_eq!(check.repaired, 0);
    assert!(
        check
            .details
            .iter()
            .all(|p| p.user.as_deref() == Some("bob"))
    );
    let untouched: i64 = sql(
        &shard_b,
        &format!("SELECT count(*) FROM messages WHERE user_id = {id}"),
    )[0]
    .get(0);
    assert_eq!(untouched, 4, "a check changes nothing");

    let repair = store.reconstruct(&options(false), &|_| {}).unwrap();
    assert!(repair.clean(), "{:#?}", repair.details);
    assert_eq!(repair.problems, check.problems);
    assert_eq!(view(&store, "bob"), healthy);
    assert_eq!(view(&store, "alice"), alice_before);
    // Only the restated flags were logged (one record, at a new MODSEQ).
    let seq_after: i64 = sql(
        &shard_b,
        &format!("SELECT last_seq FROM users WHERE id = {id}"),
    )[0]
    .get(0);
    assert_eq!(seq_after, seq_before + 1);
    let usage: i64 = sql(
        &shard_b,
        &format!("SELECT usage_bytes FROM users WHERE id = {id}"),
    )[0]
    .get(0);
    assert!(usage > 0);

    let again = store.reconstruct(&options(false), &|_| {}).unwrap();
    assert_eq!(again.problems, 0, "{:#?}", again.details);
    let seq_again: i64 = sql(
        &shard_b,
        &format!("SELECT last_seq FROM users WHERE id = {id}"),
    )[0]
    .get(0);
    assert_eq!(seq_again, seq_after, "a clean run writes nothing");
}
