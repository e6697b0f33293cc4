//! What only the PostgreSQL backend has: several stores ("nodes") on one
//! database, the change log, and how it refuses a database it cannot serve.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use std::sync::Arc;
use store::{ErrorKind, Intent, Outcome, Store, StoreConfig};
use support::mail::{add_user, expunge};
use support::{Backend, pg_config, sql};

/// A second store on the database of `first`: another node.
fn second_node(first: &support::Opened) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path().to_path_buf());
    config.postgres = Some(pg_config(first.database.as_ref().unwrap()));
    (Store::open(config).unwrap(), dir)
}

fn append(user: &str, mailbox: &str, raw: Vec<u8>, store: &Store) -> store::Result<u32> {
    let outcome = store.submit_one_blocking(Intent::Append {
        user: user.into(),
        mailbox: mailbox.into(),
        message: store.prepare(raw),
        flags: Vec::new(),
        internal_date: None,
    })?;
    match outcome {
        Outcome::Appended { uid, .. } => Ok(uid),
        other => panic!("unexpected {other:?}"),
    }
}

/// Two nodes deliver to one mailbox at once, from several threads each:
/// every acknowledged message is there, under a UID no other has, and
/// UIDs and MODSEQs rise together in commit order.
#[test]
fn two_nodes_never_give_a_uid_twice() {
    let a = Backend::Postgres.open(|_| {});
    let (b, _b_dir) = second_node(&a);
    add_user(&a, "alice");
    let nodes: Vec<Arc<Store>> = vec![Arc::new(a.store.clone()), Arc::new(b.clone())];
    const PER_THREAD: usize = 40;
    let mut threads = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..3 {
            let node = node.clone();
            threads.push(std::thread::spawn(move || {
                (0..PER_THREAD)
                    .map(|i| {
                        let tag = format!("{n}-{t}-{i}");
                        let raw =
                            format!("Subject: {tag}\r\nMessage-ID: <{tag}@x>\r\n\r\n{tag}\r\n");
                        let uid = append("alice", "INBOX", raw.into_bytes(), &node).unwrap();
                        (uid, tag)
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut acknowledged: Vec<(u32, String)> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    acknowledged.sort();
    let total = 2 * 3 * PER_THREAD;
    let uids: Vec<u32> = acknowledged.iter().map(|(uid, _)| *uid).collect();
    assert_eq!(
        uids,
        (1..=total as u32).collect::<Vec<_>>(),
        "UIDs given twice or skipped"
    );
    // Each node reads what both stored: the message each UID was given for.
    for node in &nodes {
        let reader = node.reader("alice").unwrap();
        let inbox = reader.mailbox("INBOX").unwrap().unwrap();
        let metas = reader.messages(&inbox.id).unwrap();
        assert_eq!(metas.len(), total);
        let mut last_modseq = 0;
        for (meta, (uid, tag)) in metas.iter().zip(&acknowledged) {
            assert_eq!(meta.uid, *uid);
            assert!(
                meta.modseq > last_modseq,
                "MODSEQ does not rise with the UID"
            );
            last_modseq = meta.modseq;
            let bytes = reader.message_bytes(&inbox.id, meta).unwrap();
            assert!(String::from_utf8(bytes).unwrap().contains(tag.as_str()));
        }
        assert_eq!(inbox.uid_next, total as u32 + 1);
    }
    // The change log numbers alice's records without a gap.
    let log = sql(
        a.database.as_ref().unwrap(),
        "SELECT COUNT(*), MIN(seq), MAX(seq), (SELECT last_seq FROM users WHERE name = 'alice')
         FROM changes WHERE user_id = (SELECT id FROM users WHERE name = 'alice')",
    );
    let (count, min, max, last): (i64, i64, i64, i64) =
        (log[0].get(0), log[0].get(1), log[0].get(2), log[0].get(3));
    assert_eq!((min, max, last), (1, count, count));
    b.shutdown();
}

/// Two nodes create the same user and the same mailbox at once: one wins,
/// the other is told it exists; nothing is half made.
#[test]
fn two_nodes_creating_the_same_names_agree() {
    let a = Backend::Postgres.open(|_| {});
    let (b, _b_dir) = second_node(&a);
    let nodes = [&a.store, &b];
    for round in 0..10 {
        let user = format!("user{round}");
        let results: Vec<store::Result<Outcome>> = std::thread::scope(|s| {
            let handles: Vec<_> = nodes
                .iter()
                .map(|node| {
                    let user = user.clone();
                    s.spawn(move || {
                        node.submit_one_blocking(Intent::AddUser {
                            user,
                            password_hash: "x".into(),
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(created, 1, "{results:?}");
        let refused = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(refused.kind, ErrorKind::AlreadyExists);
        let mailboxes = b.reader(&user).unwrap().mailboxes().unwrap();
        assert_eq!(mailboxes.len(), store::DEFAULT_MAILBOXES.len());
    }
    b.shutdown();
}

/// The server-wide state (status page, SMS outbox, spam blocks) is in the
/// database: what one node changes, the other reads, and a node whose copy
/// of it is lost rebuilds it from the log.
#[test]
fn server_wide_state_is_shared_by_the_nodes() {
    let a = Backend::Postgres.open(|_| {});
    let (b, b_dir) = second_node(&a);
    let posted = a
        .submit_one_blocking(Intent::StatusOpen {
            title: "Delivery delayed".into(),
            components: vec![],
            impact: status::Impact::Minor,
            state: status::State::Investigating,
            kind: status::Kind::Incident,
            author: "ops".into(),
            text: "Mail to example.org waits in the queue.".into(),
            at: None,
        })
        .unwrap();
    let Outcome::StatusPosted { incident, .. } = posted else {
        panic!("{posted:?}")
    };
    b.submit_one_blocking(Intent::SpamBlock {
        key: "ip:192.0.2.7".into(),
        reason: "spam run".into(),
    })
    .unwrap();
    let queued = b
        .submit_one_blocking(Intent::QueueSms {
            to: "+4915112345678".into(),
            text: "Delivery delayed".into(),
            purpose: "status".into(),
            receipt: false,
            user: None,
        })
        .unwrap();
    let Outcome::SmsQueued { id } = queued else {
        panic!("{queued:?}")
    };
    for node in [&a.store, &b] {
        let incident = node.status_incident(incident).unwrap().unwrap();
        assert_eq!(incident.title, "Delivery delayed");
        let blocks: Vec<String> = node
            .spam_blocks()
            .unwrap()
            .into_iter()
            .map(|b| b.key)
            .collect();
        assert_eq!(blocks, ["ip:192.0.2.7"]);
        assert_eq!(node.sms(id).unwrap().unwrap().state, "queued");
    }
    // The outbox's rules hold across nodes: one outcome per SMS.
    let sent = a.submit_one_blocking(Intent::SmsOutcome {
        id,
        outcome: store::SmsOutcome::Sent {
            smsc_ids: vec!["m1".into()],
        },
    });
    assert!(sent.is_ok(), "{sent:?}");
    let again = b.submit_one_blocking(Intent::SmsOutcome {
        id,
        outcome: store::SmsOutcome::Sent {
            smsc_ids: vec!["m2".into()],
        },
    });
    assert_eq!(again.unwrap_err().kind, ErrorKind::Invalid);
    // Node b's copy, lost, comes back from the log.
    b.shutdown();
    drop(b);
    std::fs::remove_file(b_dir.path().join("pg-server-cache.sqlite")).unwrap();
    let mut config = StoreConfig::new(b_dir.path().to_path_buf());
    config.postgres = Some(pg_config(a.database.as_ref().unwrap()));
    let b = Store::open(config).unwrap();
    assert_eq!(b.sms(id).unwrap().unwrap().state, "sent");
    assert_eq!(b.status_incident_count().unwrap(), 1);
    b.shutdown();
}

/// A database without the schema, or one that cannot be reached, is
/// refused at open with what to do about it.
#[test]
fn a_database_that_cannot_serve_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let migrated = support::new_database();
    let mut empty = migrated.clone();
    let name = format!("empty_{}", std::process::id());
    sql(&migrated, &format!("CREATE DATABASE {name}"));
    empty.dbname(&name);
    let mut config = StoreConfig::new(dir.path().to_path_buf());
    config.postgres = Some(pg_config(&empty));
    let error = Store::open(config).err().unwrap();
    assert!(error.message.contains("store migrate"), "{error}");

    let mut unreachable = migrated.clone();
    unreachable.port(1);
    let mut settings = pg_config(&unreachable);
    settings.connect_timeout = std::time::Duration::from_millis(500);
    let mut config = StoreConfig::new(dir.path().join("second"));
    config.postgres = Some(settings);
    let error = Store::open(config).err().unwrap();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
}

/// Waits until `watch` moves, at most `within`: whether it did.
fn moves(watch: &mut tokio::sync::watch::Receiver<u64>, within: std::time::Duration) -> bool {
    support::block(async { tokio::time::timeout(within, watch.changed()).await.is_ok() })
}

/// A session waiting on node b hears of a delivery through node a within a
/// second, also when b's LISTEN connection was just cut (then by the poll,
/// or the wake-up of everyone when it reconnects).
#[test]
fn a_change_on_one_node_wakes_the_watchers_on_the_other() {
    let a = Backend::Postgres.open(|_| {});
    let (b, _b_dir) = second_node(&a);
    add_user(&a, "alice");
    let mut watching = b.watch("alice");
    let mut sms = b.watch_sms();
    let second = std::time::Duration::from_secs(1);
    let database = a.database.clone().unwrap();
    let listening = || {
        sql(
            &database,
            "SELECT 1 FROM pg_stat_activity WHERE application_name = 'postern-listen' AND query LIKE 'LISTEN%' AND datname = current_database()",
        )
        .len()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listening() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the nodes never listened"
        );
        std::thread::yield_now();
    }
    // The announcement of alice's creation and the poll's first look at a
    // new watcher (which counts as a change) pass; then nothing moves for
    // more than a poll interval without a change.
    let mut quiet = false;
    for _ in 0..5 {
        if !moves(&mut watching, std::time::Duration::from_millis(1500)) {
            quiet = true;
            break;
        }
    }
    assert!(quiet, "the watch keeps moving with no change");
    append("alice", "INBOX", b"Subject: 1\r\n\r\none\r\n".to_vec(), &a).unwrap();
    assert!(moves(&mut watching, second), "no wake-up within a second");
    // The server-wide state wakes the other node's SMS sender.
    a.submit_one_blocking(Intent::QueueSms {
        to: "+4915112345678".into(),
        text: "hello".into(),
        purpose: "test".into(),
        receipt: false,
        user: None,
    })
    .unwrap();
    assert!(moves(&mut sms, second), "the SMS sender was not woken");
    // Cut b's LISTEN connection; a change right after still arrives.
    let cut = sql(
        &database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'postern-listen' AND datname = current_database()",
    );
    assert_eq!(cut.len(), 2, "one LISTEN connection per node");
    append("alice", "INBOX", b"Subject: 2\r\n\r\ntwo\r\n".to_vec(), &a).unwrap();
    assert!(
        moves(&mut watching, std::time::Duration::from_secs(3)),
        "lost with LISTEN down"
    );
    let reader = b.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    assert_eq!(reader.counts(&inbox.id).unwrap().messages, 2);
    b.shutdown();
}

/// The senders run on one node: the first to ask leads; the other takes
/// over once the leader is gone.
#[test]
fn one_node_leads_each_sender_and_another_takes_over() {
    let a = Backend::Postgres.open(|_| {});
    let (b, _b_dir) = second_node(&a);
    assert!(a.leads("sms"));
    assert!(a.leads("sms"), "leadership is kept");
    assert!(!b.leads("sms"));
    assert!(b.leads("notices"), "each job has its own leader");
    assert!(!a.leads("notices"));
    let database = a.database.clone().unwrap();
    // The leader's session ends (its node died): the other node takes over.
    let ended = sql(
        &database,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'postern-leader-sms' AND datname = current_database()",
    );
    assert_eq!(ended.len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !b.leads("sms") {
        assert!(
            std::time::Instant::now() < deadline,
            "nobody took the SMS sender over"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!a.leads("sms"), "the old leader knows it is not any more");
    b.shutdown();
}

/// Garbage collection removes contents no message names (once old enough),
/// never one a message names, and a content delivered again after its
/// removal is stored again.
#[test]
fn garbage_collection_removes_only_unnamed_contents() {
    let store = Backend::Postgres.open(|_| {});
    let database = store.database.clone().unwrap();
    add_user(&store, "alice");
    let kept = b"Subject: kept\r\n\r\nkept\r\n".to_vec();
    let gone = b"Subject: gone\r\n\r\ngone\r\n".to_vec();
    append("alice", "INBOX", kept.clone(), &store).unwrap();
    let uid = append("alice", "INBOX", gone.clone(), &store).unwrap();
    let collect = || match store.submit_one_blocking(Intent::CollectGarbage { bytes_max: 1 << 30 })
    {
        Ok(Outcome::Collected { blobs_removed, .. }) => blobs_removed,
        other => panic!("{other:?}"),
    };
    expunge(&store, vec![uid]);
    assert_eq!(
        collect(),
        0,
        "a content stored within the grace period stays"
    );
    sql(&database, "UPDATE blobs SET stored_at = stored_at - 7200");
    assert_eq!(collect(), 1);
    let left = sql(&database, "SELECT COUNT(*) FROM blobs");
    assert_eq!(left[0].get::<_, i64>(0), 1, "the named content stays");
    // The same content delivered again is stored again, and readable.
    let again = append("alice", "INBOX", gone.clone(), &store).unwrap();
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let meta = reader.message(&inbox.id, again).unwrap().unwrap();
    assert_eq!(reader.message_bytes(&inbox.id, &meta).unwrap(), gone);
}
