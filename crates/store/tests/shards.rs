//! Users spread over two PostgreSQL shards (`[[store.shards]]`): placement,
//! routing, and `user move` while the user's mail keeps changing.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use std::sync::atomic::{AtomicBool, Ordering};
use store::{ErrorKind, Intent, Outcome, Store};
use support::mail::{add_flags, add_user, create, deliver, message};
use support::{Backend, sql};

/// What a client sees of a user's mail: every mailbox with its UIDVALIDITY,
/// UIDNEXT and HIGHESTMODSEQ, and each message's UID, MODSEQ, flags,
/// EMAILID and bytes.
fn snapshot(store: &Store, user: &str) -> Vec<String> {
    let reader = store.reader(user).unwrap();
    let mut out = Vec::new();
    for mailbox in reader.mailboxes().unwrap() {
        out.push(format!(
            "{} {} {} {} {:?}",
            mailbox.name,
            mailbox.uid_validity,
            mailbox.uid_next,
            mailbox.highest_modseq,
            mailbox.special_use
        ));
        for meta in reader.messages(&mailbox.id).unwrap() {
            let bytes = reader.message_bytes(&mailbox.id, &meta).unwrap();
            out.push(format!(
                "  {} {} {:?} {} {}",
                meta.uid,
                meta.modseq,
                meta.flags,
                meta.email_id,
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    out
}

fn shard_of(store: &Store, user: &str) -> String {
    store.directory_entry(user).unwrap().unwrap().shard
}

/// The other shard's name.
fn other(shard: &str) -> &'static str {
    if shard == "a" { "b" } else { "a" }
}

/// Rows of `user`'s account on a shard's database, in any state.
fn accounts_named(database: &tokio_postgres::Config, user: &str) -> Vec<String> {
    sql(
        database,
        &format!("SELECT state FROM users WHERE name = '{user}'"),
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[test]
fn new_users_go_to_the_shard_with_the_fewest_accounts() {
    let store = Backend::Sharded.open(|_| {});
    for n in 0..6 {
        add_user(&store, &format!("user{n}"));
    }
    let mut on: Vec<String> = (0..6)
        .map(|n| shard_of(&store, &format!("user{n}")))
        .collect();
    on.sort();
    assert_eq!(on, ["a", "a", "a", "b", "b", "b"]);
    // Each account lives on its shard alone, and the directory lists all.
    for (name, database) in &store.shards {
        let count: i64 = sql(database, "SELECT count(*) FROM users")[0].get(0);
        assert_eq!(count, 3, "shard {name}");
    }
    assert_eq!(store.users().unwrap().len(), 6);
    assert_eq!(store.shard_names(), ["a", "b"]);
    // The name is taken across shards.
    let again = store.submit_one_blocking(Intent::AddUser {
        user: "user1".into(),
        password_hash: "x".into(),
    });
    assert_eq!(again.unwrap_err().kind, ErrorKind::AlreadyExists);
}

#[test]
fn a_moved_user_keeps_every_uid_flag_and_modseq() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    let from = shard_of(&store, "alice");
    let uids = deliver(&store, &["alice"], &message(1));
    deliver(&store, &["alice", "bob"], &message(2));
    deliver(&store, &["alice"], &message(3));
    add_flags(&store, uids.clone(), &["\\Seen", "$Important"]);
    create(&store, "alice", "Projects");
    store
        .submit_one_blocking(Intent::Expunge {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: Some(vec![uids[0]]),
        })
        .unwrap();
    let before = snapshot(&store, "alice");
    let bob_before = snapshot(&store, "bob");
    let old_reader = store.reader("alice").unwrap();

    let mut phases = Vec::new();
    let report = store
        .move_user("alice", other(&from), &mut |p| {
            if phases.last() != Some(&p.phase) {
                phases.push(p.phase);
            }
        })
        .unwrap();
    assert_eq!(
        (report.from.as_str(), report.to.as_str()),
        (from.as_str(), other(&from))
    );
    assert!(report.bytes_copied > 0, "{report:?}");
    assert_eq!(shard_of(&store, "alice"), other(&from));
    assert_eq!(phases.first(), Some(&"copy"), "{phases:?}");
    assert!(phases.contains(&"switch"), "{phases:?}");

    assert_eq!(snapshot(&store, "alice"), before);
    assert_eq!(
        snapshot(&store, "bob"),
        bob_before,
        "another user is untouched"
    );
    // A session that read the old shard is told to start again, never
    // served what is left there.
    assert_eq!(old_reader.mailboxes().unwrap_err().kind, ErrorKind::Moved);
    // The new shard serves changes, which go on from where they were.
    let next = deliver(&store, &["alice"], &message(4));
    assert_eq!(next, vec![uids[0] + 3]);
    assert_eq!(
        store.authenticate("alice", "secret").unwrap().as_deref(),
        Some("alice")
    );
    // The rows on the old shard are gone (no grace in the tests' settings).
    let databases: std::collections::HashMap<_, _> = store.shards.iter().cloned().collect();
    assert!(accounts_named(&databases[from.as_str()], "alice").is_empty());
    assert_eq!(
        accounts_named(&databases[other(&from)], "alice"),
        ["active"]
    );

    // And back again: the session from before both moves is on the same
    // shard as the user now, under the id the user had there before; it is
    // still told to start again, never served from that id.
    store.move_user("alice", &from, &mut |_| {}).unwrap();
    assert_eq!(shard_of(&store, "alice"), from);
    assert_eq!(old_reader.mailboxes().unwrap_err().kind, ErrorKind::Moved);
    let mut after = snapshot(&store, "alice");
    after.retain(|line| !line.contains("message 4"));
    assert_eq!(after.len(), before.len());
}

#[test]
fn deliveries_during_a_move_are_all_kept() {
    let store = Backend::Sharded.open(|config| {
        if let Some(pg) = config.postgres.as_mut() {
            pg.move_wait = std::time::Duration::from_secs(10);
        }
    });
    add_user(&store, "alice");
    for n in 0..200 {
        deliver(&store, &["alice"], &message(n));
    }
    let from = shard_of(&store, "alice");
    let moving = AtomicBool::new(true);
    let (acknowledged, refused) = std::thread::scope(|s| {
        let deliveries = s.spawn(|| {
            let mut acknowledged = Vec::new();
            let mut refused = 0;
            let mut n = 1000;
            // Until the move is over, and a few after it.
            let mut after = 0;
            while after < 20 {
                if !moving.load(Ordering::Acquire) {
                    after += 1;
                }
                let prepared = store.prepare(message(n));
                match store.submit_one_blocking(Intent::Append {
                    user: "alice".into(),
                    mailbox: "INBOX".into(),
                    message: prepared,
                    flags: vec![],
                    internal_date: None,
                }) {
                    Ok(Outcome::Appended { uid, .. }) => acknowledged.push((uid, n)),
                    Ok(other) => panic!("{other:?}"),
                    Err(e) => {
                        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
                        refused += 1;
                    }
                }
                n += 1;
            }
            (acknowledged, refused)
        });
        store.move_user("alice", other(&from), &mut |_| {}).unwrap();
        moving.store(false, Ordering::Release);
        deliveries.join().unwrap()
    });
    assert_eq!(shard_of(&store, "alice"), other(&from));
    assert!(acknowledged.len() >= 20, "{}", acknowledged.len());
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let messages = reader.messages(&inbox.id).unwrap();
    let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
    assert_eq!(
        uids,
        (1..=uids.len() as u32).collect::<Vec<_>>(),
        "no gap, none twice"
    );
    for (uid, n) in &acknowledged {
        let meta = messages.iter().find(|m| m.uid == *uid).unwrap();
        let bytes = reader.message_bytes(&inbox.id, meta).unwrap();
        assert_eq!(bytes, message(*n), "UID {uid}");
    }
    // Every message stored was acknowledged (a refused one was not stored).
    assert_eq!(
        messages.len(),
        200 + acknowledged.len(),
        "refused: {refused}"
    );
}

#[test]
fn a_move_can_be_undone_before_its_switch_and_run_again() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    deliver(&store, &["alice"], &message(1));
    let from = shard_of(&store, "alice");
    let to = other(&from);
    let databases: std::collections::HashMap<_, _> = store.shards.iter().cloned().collect();
    // A move that stopped after marking and copying part of the user: the
    // directory says "moving", the target holds a partial copy.
    let directory = store.database.clone().unwrap();
    let stop_half_way = || {
        sql(
            &directory,
            &format!(
                "UPDATE directory_users SET state = 'moving', move_to = '{to}' WHERE name = 'alice'"
            ),
        );
        sql(
            &databases[to],
            "INSERT INTO users (id, name, password_hash, state) VALUES (nextval('user_ids'), 'alice', 'x', 'moving_in')",
        );
    };
    stop_half_way();
    // Meanwhile it is served from where it was, and a move elsewhere or a
    // delete waits for it.
    assert_eq!(
        snapshot(&store, "alice").len(),
        store::DEFAULT_MAILBOXES.len() + 1
    );
    let delete = store.submit_one_blocking(Intent::DeleteUser {
        user: "alice".into(),
    });
    assert_eq!(delete.unwrap_err().kind, ErrorKind::Unavailable);

    let entry = store.abort_move("alice").unwrap();
    assert_eq!(
        (entry.shard.as_str(), entry.state.as_str()),
        (from.as_str(), "active")
    );
    assert!(accounts_named(&databases[to], "alice").is_empty());
    assert_eq!(
        store.abort_move("alice").unwrap_err().kind,
        ErrorKind::Invalid
    );

    // Stopped again half way: running the move again starts it over.
    stop_half_way();
    let before = snapshot(&store, "alice");
    store.move_user("alice", to, &mut |_| {}).unwrap();
    assert_eq!(snapshot(&store, "alice"), before);
    // Nothing left to do, in words.
    let again = store.move_user("alice", to, &mut |_| {}).unwrap_err();
    assert_eq!(again.kind, ErrorKind::Invalid);
    assert!(again.message.contains("already"), "{again}");
    let unknown = store
        .move_user("alice", "nowhere", &mut |_| {})
        .unwrap_err();
    assert!(unknown.message.contains("a, b"), "{unknown}");
    let nobody = store.move_user("nobody", to, &mut |_| {}).unwrap_err();
    assert_eq!(nobody.kind, ErrorKind::NotFound);
}

fn inbox_uids(store: &Store, user: &str) -> Vec<u32> {
    let reader = store.reader(user).unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    reader
        .messages(&inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect()
}

/// `actor` copies (or moves) `uids` of `owner`'s INBOX into their own INBOX.
fn copy_from(
    store: &Store,
    actor: &str,
    owner: &str,
    uids: Vec<u32>,
    remove: bool,
) -> store::Result<Outcome> {
    store.submit_one_blocking(Intent::Acting {
        actor: actor.into(),
        intent: Box::new(Intent::Copy {
            user: actor.into(),
            from_user: Some(owner.into()),
            from: "INBOX".into(),
            uids,
            to: "INBOX".into(),
            remove_source: remove,
        }),
    })
}

#[test]
fn sharing_copy_and_move_work_across_shards() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    assert_ne!(shard_of(&store, "alice"), shard_of(&store, "bob"));
    for n in 1..=3 {
        deliver(&store, &["alice"], &message(n));
    }
    add_flags(&store, vec![1], &["$Important"]);
    let acl = |identifier: &str, rights: Option<&str>| {
        store.submit_one_blocking(Intent::SetAcl {
            actor: None,
            user: "alice".into(),
            mailbox: "INBOX".into(),
            identifier: store::acl::Identifier::parse(identifier).unwrap(),
            change: rights.map(|r| store::acl::RightsChange::parse(r).unwrap()),
            entries_max: 100,
        })
    };
    // Bob lives on the other shard: alice's ACL may name him.
    assert_eq!(
        acl("nobody", Some("lr")).unwrap_err().kind,
        ErrorKind::Invalid
    );
    // Without rights, alice's mailbox is as missing to bob.
    let hidden = copy_from(&store, "bob", "alice", vec![1], false).unwrap_err();
    assert_eq!(hidden.kind, ErrorKind::NotFound);
    acl("bob", Some("lr")).unwrap();
    let inbox = store
        .reader("alice")
        .unwrap()
        .mailbox("INBOX")
        .unwrap()
        .unwrap();
    assert_eq!(
        store.shared_with("bob").unwrap(),
        vec![("alice".to_string(), inbox.id.clone())]
    );

    // COPY from alice's shard to bob's: bytes, flags and dates kept.
    let copied = copy_from(&store, "bob", "alice", vec![1, 2], false).unwrap();
    let Outcome::Copied {
        pairs, expunged, ..
    } = copied
    else {
        panic!("{copied:?}")
    };
    assert_eq!(pairs, vec![(1, 1), (2, 2)]);
    assert!(expunged.is_empty());
    let bob = store.reader("bob").unwrap();
    let bob_inbox = bob.mailbox("INBOX").unwrap().unwrap();
    let metas = bob.messages(&bob_inbox.id).unwrap();
    assert_eq!(
        bob.message_bytes(&bob_inbox.id, &metas[0]).unwrap(),
        message(1)
    );
    assert!(
        metas[0].flags.contains(&"$Important".to_string()),
        "{:?}",
        metas[0].flags
    );
    assert_eq!(inbox_uids(&store, "alice"), vec![1, 2, 3]);
    // MOVE needs the rights to remove from the source, checked there.
    let denied = copy_from(&store, "bob", "alice", vec![3], true).unwrap_err();
    assert_eq!(denied.kind, ErrorKind::Denied);
    assert_eq!(
        inbox_uids(&store, "bob"),
        vec![1, 2],
        "a refused MOVE copies nothing"
    );
    acl("bob", Some("+te")).unwrap();
    let moved = copy_from(&store, "bob", "alice", vec![3], true).unwrap();
    let Outcome::Copied {
        pairs, expunged, ..
    } = moved
    else {
        panic!("{moved:?}")
    };
    assert_eq!((pairs, expunged), (vec![(3, 3)], vec![3]));
    assert_eq!(inbox_uids(&store, "alice"), vec![1, 2]);
    assert_eq!(inbox_uids(&store, "bob"), vec![1, 2, 3]);
    // Over the target's quota: refused whole, nothing left behind.
    store
        .submit_one_blocking(Intent::SetQuota {
            user: "bob".into(),
            storage_bytes: None,
            messages: Some(4),
        })
        .unwrap();
    let over = copy_from(&store, "bob", "alice", vec![1, 2], false).unwrap_err();
    assert_eq!(over.kind, ErrorKind::OverQuota);
    assert_eq!(inbox_uids(&store, "bob"), vec![1, 2, 3]);

    // Deleting bob removes him from alice's ACL on the other shard.
    store
        .submit_one_blocking(Intent::DeleteUser { user: "bob".into() })
        .unwrap();
    assert!(store.shared_with("bob").unwrap().is_empty());
    let rights = store
        .reader("alice")
        .unwrap()
        .rights(&inbox.id, "bob")
        .unwrap();
    assert!(rights.is_empty(), "{rights:?}");
    assert!(store.directory_entry("bob").unwrap().is_none());
    // The name is free again, and the new bob inherits nothing.
    add_user(&store, "bob");
    assert!(store.shared_with("bob").unwrap().is_empty());
    assert_eq!(
        copy_from(&store, "bob", "alice", vec![1], false)
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

#[test]
fn a_user_of_the_first_shard_is_deleted_everywhere_and_the_name_comes_back_clean() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    assert_eq!(shard_of(&store, "alice"), "a");
    assert_eq!(shard_of(&store, "bob"), "b");
    // Bob (shard b) shares with alice; alice is in an alias with bob.
    store
        .submit_one_blocking(Intent::SetAcl {
            actor: None,
            user: "bob".into(),
            mailbox: "INBOX".into(),
            identifier: store::acl::Identifier::parse("alice").unwrap(),
            change: Some(store::acl::RightsChange::parse("lr").unwrap()),
            entries_max: 100,
        })
        .unwrap();
    store
        .submit_one_blocking(Intent::SetAlias {
            address: "team@example.com".into(),
            users: vec!["alice".into(), "bob".into()],
        })
        .unwrap();
    assert_eq!(store.shared_with("alice").unwrap().len(), 1);
    store
        .submit_one_blocking(Intent::DeleteUser {
            user: "alice".into(),
        })
        .unwrap();
    assert!(store.directory_entry("alice").unwrap().is_none());
    assert_eq!(
        store.resolve_recipient("team@example.com").unwrap(),
        vec!["bob".to_string()]
    );
    add_user(&store, "alice");
    assert!(
        store.shared_with("alice").unwrap().is_empty(),
        "the new alice inherits nothing"
    );
    let inbox = store
        .reader("bob")
        .unwrap()
        .mailbox("INBOX")
        .unwrap()
        .unwrap();
    assert!(
        store
            .reader("bob")
            .unwrap()
            .rights(&inbox.id, "alice")
            .unwrap()
            .is_empty()
    );
}

#[test]
fn one_move_of_a_user_at_a_time_and_lost_contents_move_as_lost() {
    let store = Backend::Sharded.open(|_| {});
    add_user(&store, "alice");
    deliver(&store, &["alice"], &message(1));
    deliver(&store, &["alice"], &message(2));
    let from = shard_of(&store, "alice");
    let databases: std::collections::HashMap<_, _> = store.shards.iter().cloned().collect();
    // The content of message 1 is lost (as an import notes one the old
    // store had lost): a row without its bytes.
    sql(
        &databases[from.as_str()],
        &format!(
            "UPDATE blobs SET data = ''::bytea, size = 0 WHERE hash = decode('{}', 'hex')",
            store::BlobHash::of(&message(1)).to_hex()
        ),
    );
    // While a move of alice holds its lock, another move or an abort waits
    // its turn, in words.
    let directory = store.database.clone().unwrap();
    let (taken, took) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        support::block(async {
            let tls = store::pg::tls(None).unwrap();
            let client = store::pg::connect(&directory, std::time::Duration::from_secs(30), &tls)
                .await
                .unwrap();
            client
                .query_one(
                    "SELECT pg_advisory_lock(1886352244 + 2, hashtext('alice'))",
                    &[],
                )
                .await
                .unwrap();
            taken.send(()).unwrap();
            // Held until the test lets go; the connection lives on this
            // thread's runtime meanwhile.
            tokio::task::spawn_blocking(move || released.recv())
                .await
                .unwrap()
                .unwrap();
        })
    });
    took.recv().unwrap();
    let busy = store
        .move_user("alice", other(&from), &mut |_| {})
        .unwrap_err();
    assert_eq!(busy.kind, ErrorKind::Conflict, "{busy}");
    assert!(busy.message.contains("another"), "{busy}");
    assert_eq!(
        store.abort_move("alice").unwrap_err().kind,
        ErrorKind::Conflict
    );
    release.send(()).unwrap();
    holder.join().unwrap();
    let report = store.move_user("alice", other(&from), &mut |_| {}).unwrap();
    assert_eq!(report.to, other(&from));
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let metas = reader.messages(&inbox.id).unwrap();
    assert_eq!(metas.len(), 2);
    // The lost one still answers as damaged, the other as itself.
    assert_eq!(
        reader.message_bytes(&inbox.id, &metas[0]).unwrap_err().kind,
        ErrorKind::Corrupt
    );
    assert_eq!(
        reader.message_bytes(&inbox.id, &metas[1]).unwrap(),
        message(2)
    );
}
