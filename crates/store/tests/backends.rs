//! The store's behaviour that does not depend on where mail lives: each
//! test runs on the embedded store and on PostgreSQL (`backends!`), so the
//! two backends are held to the same answers.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use store::{ErrorKind, FlagMode, Intent, MailboxRef, Outcome};
use support::Backend;
use support::mail::{add_flags, add_user, create, deliver, expunge, message};

backends!(
    new_user_gets_the_special_use_mailboxes,
    recipients_resolve_by_alias_address_local_part_and_tag,
    a_refused_intent_leaves_its_batch_neighbours_alone,
    deleting_a_user_keeps_aliases_working_for_the_others,
    quotas_refuse_what_would_not_fit,
    messages_get_rising_uids_and_keep_their_bytes,
    flag_changes_and_expunges_are_seen_by_modseq,
    copy_and_move_keep_flags_and_give_new_uids,
    mailboxes_are_renamed_deleted_and_recreated_with_a_new_uidvalidity,
    subscriptions_and_annotations_are_kept_per_user,
    deleted_users_leave_nothing_a_new_account_of_their_name_inherits,
);

fn new_user_gets_the_special_use_mailboxes(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    let reader = store.reader("alice").unwrap();
    let names: Vec<(String, Option<String>)> = reader
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.special_use))
        .collect();
    for (name, special) in store::DEFAULT_MAILBOXES {
        assert!(
            names.contains(&(name.to_string(), special.map(str::to_string))),
            "{name} missing: {names:?}"
        );
    }
    assert_eq!(
        store.authenticate("ALICE", "secret").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(store.authenticate("alice", "wrong").unwrap(), None);
    assert_eq!(store.authenticate("nobody", "secret").unwrap(), None);
}

fn recipients_resolve_by_alias_address_local_part_and_tag(backend: Backend) {
    let store = backend.open(|config| config.postmaster = Some("alice".into()));
    add_user(&store, "alice");
    add_user(&store, "bob@example.com");
    store
        .submit_one_blocking(Intent::SetAlias {
            address: "team@example.com".into(),
            users: vec!["alice".into(), "bob@example.com".into()],
        })
        .unwrap();
    assert_eq!(
        store.resolve_recipient("Alice@Anything.org").unwrap(),
        vec!["alice"]
    );
    assert_eq!(
        store.resolve_recipient("alice+news@x.org").unwrap(),
        vec!["alice"]
    );
    assert_eq!(
        store.resolve_recipient("<BOB@example.com>").unwrap(),
        vec!["bob@example.com"]
    );
    assert_eq!(
        store.resolve_recipient("team@example.com").unwrap(),
        vec!["alice", "bob@example.com"]
    );
    assert_eq!(
        store.resolve_recipient("postmaster@other.net").unwrap(),
        vec!["alice"]
    );
    assert_eq!(
        store.resolve_recipient("bob@other.net").unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        store
            .resolve_recipient("carol@example.com")
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

fn a_refused_intent_leaves_its_batch_neighbours_alone(backend: Backend) {
    // REVIEW B6: a RENAME whose child names collide used to fail the whole batch.
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    for name in ["b/c", "a/c"] {
        store
            .submit_one_blocking(Intent::CreateMailbox {
                user: "alice".into(),
                name: name.into(),
                special_use: None,
            })
            .unwrap();
    }
    store
        .submit_one_blocking(Intent::DeleteMailbox {
            user: "alice".into(),
            name: "b".into(),
        })
        .unwrap();
    let prepared = store.prepare(message(1));
    let results = store.submit_blocking(vec![
        Intent::RenameMailbox {
            user: "alice".into(),
            from: "a".into(),
            to: "b".into(),
        },
        Intent::Append {
            user: "bob".into(),
            mailbox: "INBOX".into(),
            message: prepared.clone(),
            flags: vec![],
            internal_date: None,
        },
        Intent::Append {
            user: "bob".into(),
            mailbox: "Nowhere".into(),
            message: prepared,
            flags: vec![],
            internal_date: None,
        },
    ]);
    assert_eq!(
        results[0].as_ref().unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert!(
        matches!(results[1], Ok(Outcome::Appended { uid: 1, .. })),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2].as_ref().unwrap_err().kind, ErrorKind::NotFound);
    let names: Vec<String> = store
        .reader("alice")
        .unwrap()
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        names.contains(&"a".to_string()) && names.contains(&"a/c".to_string()),
        "{names:?}"
    );
}

fn deleting_a_user_keeps_aliases_working_for_the_others(backend: Backend) {
    // e2e BUGS.md 6: mail to an alias bounced after one member was deleted.
    let store = backend.open(|_| {});
    add_user(&store, "rita");
    add_user(&store, "sam");
    for (address, users) in [
        ("desk@example.com", vec!["rita", "sam"]),
        ("sam-only@example.com", vec!["sam"]),
    ] {
        store
            .submit_one_blocking(Intent::SetAlias {
                address: address.into(),
                users: users.into_iter().map(String::from).collect(),
            })
            .unwrap();
    }
    store
        .submit_one_blocking(Intent::DeleteUser { user: "sam".into() })
        .unwrap();
    assert_eq!(
        store.resolve_recipient("desk@example.com").unwrap(),
        vec!["rita"]
    );
    assert_eq!(
        store
            .resolve_recipient("sam-only@example.com")
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    if backend == Backend::Embedded {
        assert!(!store.dir.path().join("users/sam").exists());
    }
}

fn quotas_refuse_what_would_not_fit(backend: Backend) {
    let store = backend.open(|config| config.default_quota = (None, Some(3)));
    add_user(&store, "alice");
    add_user(&store, "bob");
    for n in 0..3 {
        deliver(&store, &["alice"], &message(n));
    }
    let quota = store.quota("alice").unwrap();
    assert_eq!((quota.used_messages, quota.messages_max), (3, Some(3)));
    let over = |user: &str, n: usize| {
        store.submit_blocking(vec![Intent::Append {
            user: user.into(),
            mailbox: "INBOX".into(),
            message: store.prepare(message(n)),
            flags: Vec::new(),
            internal_date: None,
        }])
    };
    assert_eq!(
        over("alice", 10)[0].as_ref().unwrap_err().kind,
        ErrorKind::OverQuota
    );
    // COPY counts too.
    let copy = store.submit_one_blocking(Intent::Copy {
        user: "alice".into(),
        from_user: None,
        from: "INBOX".into(),
        uids: vec![1],
        to: "Archive".into(),
        remove_source: false,
    });
    assert_eq!(copy.unwrap_err().kind, ErrorKind::OverQuota);
    // A user's own quota wins over the default; a batch counts its own intents.
    let size = message(20).len() as u64;
    store
        .submit_one_blocking(Intent::SetQuota {
            user: "bob".into(),
            storage_bytes: Some(size * 2),
            messages: Some(100),
        })
        .unwrap();
    let burst = store.submit_blocking(
        (20..23)
            .map(|n| Intent::Append {
                user: "bob".into(),
                mailbox: "INBOX".into(),
                message: store.prepare(message(n)),
                flags: Vec::new(),
                internal_date: None,
            })
            .collect(),
    );
    let kinds: Vec<_> = burst
        .iter()
        .map(|r| r.as_ref().err().map(|e| e.kind))
        .collect();
    assert_eq!(kinds, vec![None, None, Some(ErrorKind::OverQuota)]);
    let bob = store.quota("bob").unwrap();
    assert_eq!(
        (bob.used_messages, bob.used_bytes, bob.storage_max),
        (2, size * 2, Some(size * 2))
    );
    // Expunging frees the room.
    expunge(&store, vec![1]);
    assert!(over("alice", 11)[0].is_ok());
}

fn messages_get_rising_uids_and_keep_their_bytes(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    let mut uids = Vec::new();
    for n in 0..3 {
        uids.extend(deliver(&store, &["alice", "bob"], &message(n)));
    }
    assert_eq!(uids, [1, 1, 2, 2, 3, 3]);
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    assert_eq!((inbox.uid_next, inbox.highest_modseq), (4, 4));
    let metas = reader.messages(&inbox.id).unwrap();
    assert_eq!(metas.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(metas.iter().all(|m| !m.damaged));
    for (n, meta) in metas.iter().enumerate() {
        assert_eq!(reader.message_bytes(&inbox.id, meta).unwrap(), message(n));
        let summary = reader.summary(&inbox.id, meta).unwrap();
        assert_eq!(summary.subject, format!("message {n}"));
        assert_eq!(meta.size, message(n).len() as u64);
    }
    let summaries = reader.summaries(&inbox.id, &metas.iter().collect::<Vec<_>>());
    assert!(summaries.iter().all(|s| s.is_ok()));
    let sorted = reader
        .sort_summaries(&inbox.id, &metas.iter().collect::<Vec<_>>())
        .unwrap();
    assert!(sorted.iter().all(Option::is_some));
    let counts = reader.counts(&inbox.id).unwrap();
    assert_eq!((counts.messages, counts.unseen, counts.deleted), (3, 3, 0));
    // An unknown mailbox or user is refused, and nothing is stored.
    let prepared = store.prepare(message(9));
    let refused = store.submit_blocking(vec![
        Intent::Append {
            user: "alice".into(),
            mailbox: "Nowhere".into(),
            message: prepared.clone(),
            flags: vec![],
            internal_date: None,
        },
        Intent::Append {
            user: "nobody".into(),
            mailbox: "INBOX".into(),
            message: prepared,
            flags: vec![],
            internal_date: None,
        },
    ]);
    assert!(
        refused
            .iter()
            .all(|r| r.as_ref().unwrap_err().kind == ErrorKind::NotFound)
    );
    assert_eq!(reader.counts(&inbox.id).unwrap().messages, 3);
    assert_eq!(
        store.reader("nobody").err().unwrap().kind,
        ErrorKind::NotFound
    );
}

fn flag_changes_and_expunges_are_seen_by_modseq(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    for n in 0..4 {
        deliver(&store, &["alice"], &message(n));
    }
    let reader = store.reader("alice").unwrap();
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    let before = inbox.highest_modseq;
    add_flags(&store, vec![1, 2], &["\\Seen", "\\Deleted"]);
    let changed = reader.changed_since(&inbox.id, before).unwrap();
    assert_eq!(changed.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    assert!(changed.iter().all(|m| m.modseq == before + 1));
    assert_eq!(
        changed[0].flags,
        vec!["\\Deleted".to_string(), "\\Seen".to_string()]
    );
    // UNCHANGEDSINCE spares what changed after it.
    let conditional = store
        .submit_one_blocking(Intent::StoreFlags {
            user: "alice".into(),
            mailbox: MailboxRef::Id(inbox.id.clone()),
            uids: vec![1, 3],
            mode: FlagMode::Add,
            flags: vec!["$Work".into()],
            unchanged_since: Some(before),
        })
        .unwrap();
    let Outcome::Flags { modified, .. } = conditional else {
        panic!("{conditional:?}")
    };
    assert_eq!(modified, [1]);
    let counts = reader.counts(&inbox.id).unwrap();
    assert_eq!((counts.unseen, counts.deleted), (2, 2));
    let expunged = store
        .submit_one_blocking(Intent::Expunge {
            user: "alice".into(),
            mailbox: "INBOX".into(),
            uids: None,
        })
        .unwrap();
    let Outcome::Expunged { uids, modseq } = expunged else {
        panic!("{expunged:?}")
    };
    assert_eq!(uids, [1, 2]);
    let modseq = modseq.unwrap();
    assert_eq!(reader.expunged_since(&inbox.id, before).unwrap(), [1, 2]);
    assert!(reader.expunged_since(&inbox.id, modseq).unwrap().is_empty());
    let changes = reader.changes(&inbox.id, before).unwrap();
    assert_eq!(changes.expunged, [1, 2]);
    assert_eq!(
        changes.changed.iter().map(|m| m.uid).collect::<Vec<_>>(),
        [3]
    );
    assert_eq!(changes.mailbox.unwrap().highest_modseq, modseq);
    let view = reader.select_view(&inbox.id).unwrap();
    assert_eq!(view.iter().map(|v| v.0).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(store.quota("alice").unwrap().used_messages, 2);
}

fn copy_and_move_keep_flags_and_give_new_uids(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    for n in 0..3 {
        deliver(&store, &["alice"], &message(n));
    }
    add_flags(&store, vec![2], &["\\Flagged"]);
    let copy = |uids: Vec<u32>, to: &str, remove_source: bool| {
        store
            .submit_one_blocking(Intent::Copy {
                user: "alice".into(),
                from_user: None,
                from: "INBOX".into(),
                uids,
                to: to.into(),
                remove_source,
            })
            .unwrap()
    };
    let Outcome::Copied {
        pairs, expunged, ..
    } = copy(vec![1, 2], "Archive", false)
    else {
        panic!()
    };
    assert_eq!((pairs, expunged), (vec![(1, 1), (2, 2)], vec![]));
    let Outcome::Copied {
        pairs, expunged, ..
    } = copy(vec![2, 3], "Archive", true)
    else {
        panic!()
    };
    assert_eq!((pairs, expunged), (vec![(2, 3), (3, 4)], vec![2, 3]));
    let reader = store.reader("alice").unwrap();
    let archive = reader.mailbox("Archive").unwrap().unwrap();
    let metas = reader.messages(&archive.id).unwrap();
    let flagged: Vec<u32> = metas
        .iter()
        .filter(|m| m.flags.contains(&"\\Flagged".to_string()))
        .map(|m| m.uid)
        .collect();
    assert_eq!(flagged, [2, 3]);
    assert_eq!(
        reader.message_bytes(&archive.id, &metas[3]).unwrap(),
        message(2)
    );
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    assert_eq!(reader.counts(&inbox.id).unwrap().messages, 1);
    assert_eq!(store.quota("alice").unwrap().used_messages, 5);
}

fn mailboxes_are_renamed_deleted_and_recreated_with_a_new_uidvalidity(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    create(&store, "alice", "Projects/2026/Q4");
    let reader = store.reader("alice").unwrap();
    let names = |reader: &store::UserReader| -> Vec<String> {
        reader
            .mailboxes()
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect()
    };
    assert!(names(&reader).contains(&"Projects/2026".to_string()));
    let first = reader.mailbox("Projects").unwrap().unwrap();
    store
        .submit_one_blocking(Intent::RenameMailbox {
            user: "alice".into(),
            from: "Projects".into(),
            to: "Done".into(),
        })
        .unwrap();
    let now = names(&reader);
    assert!(now.contains(&"Done/2026/Q4".to_string()), "{now:?}");
    assert!(!now.iter().any(|n| n.starts_with("Projects")), "{now:?}");
    assert_eq!(reader.mailbox("Done").unwrap().unwrap().id, first.id);
    for name in ["Done/2026/Q4", "Done/2026", "Done"] {
        store
            .submit_one_blocking(Intent::DeleteMailbox {
                user: "alice".into(),
                name: name.into(),
            })
            .unwrap();
    }
    create(&store, "alice", "Done");
    let again = reader.mailbox("Done").unwrap().unwrap();
    assert!(again.uid_validity > first.uid_validity);
    assert_ne!(again.id, first.id);
    let taken = store.submit_one_blocking(Intent::CreateMailbox {
        user: "alice".into(),
        name: "Done".into(),
        special_use: None,
    });
    assert_eq!(taken.unwrap_err().kind, ErrorKind::AlreadyExists);
    let inbox = store.submit_one_blocking(Intent::DeleteMailbox {
        user: "alice".into(),
        name: "INBOX".into(),
    });
    assert_eq!(inbox.unwrap_err().kind, ErrorKind::Invalid);
}

fn subscriptions_and_annotations_are_kept_per_user(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "bob");
    store
        .submit_one_blocking(Intent::Subscribe {
            user: "alice".into(),
            name: "Lists/rust".into(),
            subscribed: true,
        })
        .unwrap();
    store
        .submit_one_blocking(Intent::Subscribe {
            user: "alice".into(),
            name: "Sent".into(),
            subscribed: false,
        })
        .unwrap();
    let alice = store.reader("alice").unwrap();
    let subscribed = alice.subscriptions().unwrap();
    assert!(subscribed.contains(&"Lists/rust".to_string()));
    assert!(!subscribed.contains(&"Sent".to_string()));
    assert!(
        !store
            .reader("bob")
            .unwrap()
            .subscriptions()
            .unwrap()
            .contains(&"Lists/rust".to_string())
    );
    let inbox = alice.mailbox("INBOX").unwrap().unwrap();
    store
        .submit_one_blocking(Intent::SetMetadata {
            user: Some("alice".into()),
            mailbox: Some(MailboxRef::Name("INBOX".into())),
            entries: vec![
                (
                    "/private/comment".into(),
                    Some(store::MetadataValue(b"mine".to_vec())),
                ),
                (
                    "/shared/vendor/x/y".into(),
                    Some(store::MetadataValue(b"deep".to_vec())),
                ),
            ],
            limits: store::MetadataLimits::default(),
        })
        .unwrap();
    assert_eq!(
        alice.metadata(&inbox.id, "/private/comment").unwrap(),
        Some(b"mine".to_vec())
    );
    let below = alice
        .metadata_below(&inbox.id, "/shared/vendor", false)
        .unwrap();
    assert_eq!(
        below,
        vec![("/shared/vendor/x/y".to_string(), b"deep".to_vec())]
    );
    assert!(
        alice
            .metadata_below(&inbox.id, "/shared/vendor", true)
            .unwrap()
            .is_empty()
    );
}

fn deleted_users_leave_nothing_a_new_account_of_their_name_inherits(backend: Backend) {
    let store = backend.open(|_| {});
    add_user(&store, "alice");
    add_user(&store, "carol");
    deliver(&store, &["carol"], &message(1));
    create(&store, "carol", "Private");
    store
        .submit_one_blocking(Intent::DeleteUser {
            user: "carol".into(),
        })
        .unwrap();
    assert!(!store.user_exists("carol").unwrap());
    assert_eq!(
        store.reader("carol").err().unwrap().kind,
        ErrorKind::NotFound
    );
    assert_eq!(store.authenticate("carol", "secret").unwrap(), None);
    add_user(&store, "carol");
    let reader = store.reader("carol").unwrap();
    let names: Vec<String> = reader
        .mailboxes()
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(!names.contains(&"Private".to_string()), "{names:?}");
    let inbox = reader.mailbox("INBOX").unwrap().unwrap();
    assert_eq!(reader.counts(&inbox.id).unwrap().messages, 0);
    assert_eq!(store.quota("carol").unwrap().used_messages, 0);
    assert_eq!(store.users().unwrap(), ["alice", "carol"]);
    let again = store.submit_one_blocking(Intent::AddUser {
        user: "carol".into(),
        password_hash: "x".into(),
    });
    assert_eq!(again.unwrap_err().kind, ErrorKind::AlreadyExists);
}
