//! Access control lists through the store's public surface: the writer's
//! checks of `Intent::Acting` and `Intent::SetAcl` inside the transaction,
//! the grantee's view in `server.sqlite`, what rename, delete and user
//! deletion do to entries, replay from the journal and reconstruct.

#![allow(clippy::unwrap_used)]

mod support;

use postern_store as store;
use std::path::Path;
use store::{
    ErrorKind, FlagMode, Identifier, Intent, MailboxRef, Outcome, Rights, RightsChange, Store,
    StoreConfig,
};
use support::mail::add_user;

fn open(dir: &Path) -> Store {
    Store::open(StoreConfig::new(dir.to_path_buf())).unwrap()
}

fn set_acl(
    store: &Store,
    actor: Option<&str>,
    owner: &str,
    mailbox: &str,
    identifier: &str,
    rights: Option<&str>,
) -> store::Result<Outcome> {
    store.submit_one_blocking(Intent::SetAcl {
        actor: actor.map(str::to_string),
        user: owner.into(),
        mailbox: MailboxRef::Name(mailbox.into()),
        identifier: Identifier::parse(identifier).unwrap(),
        change: rights.map(|r| RightsChange::parse(r).unwrap()),
        entries_max: 3,
    })
}

fn append_as(store: &Store, actor: &str, owner: &str, mailbox: &str) -> store::Result<Outcome> {
    let message = store.prepare(b"Subject: hi\r\n\r\nhello\r\n".to_vec());
    store.submit_one_blocking(Intent::Acting {
        actor: actor.into(),
        intent: Box::new(Intent::Append {
            user: owner.into(),
            mailbox: mailbox.into(),
            message,
            flags: vec!["\\Seen".into(), "\\Flagged".into()],
            internal_date: None,
        }),
    })
}

fn rights(store: &Store, owner: &str, mailbox: &str, user: &str) -> Rights {
    let reader = store.reader(owner).unwrap();
    let id = reader.mailbox(mailbox).unwrap().unwrap().id;
    reader.rights(&id, user).unwrap()
}

fn acl_rows(store: &Store, owner: &str, mailbox: &str) -> Vec<(String, String)> {
    let reader = store.reader(owner).unwrap();
    let id = reader.mailbox(mailbox).unwrap().unwrap().id;
    reader
        .acl(&id)
        .unwrap()
        .into_iter()
        .map(|(i, r)| (i, r.to_string()))
        .collect()
}

fn setup(dir: &Path) -> Store {
    let store = open(dir);
    for user in ["alice", "bob", "carol"] {
        add_user(&store, user);
    }
    store
        .submit_one_blocking(Intent::CreateMailbox {
            user: "alice".into(),
            name: "Projects".into(),
            special_use: None,
        })
        .unwrap();
    store
}

#[test]
fn acting_intents_are_checked_in_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    // Without l: the same answer as a missing mailbox, and no bytes written.
    let packs = || -> u64 {
        std::fs::read_dir(dir.path().join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = packs();
    let hidden = append_as(&store, "bob", "alice", "Projects").unwrap_err();
    assert_eq!(packs(), before, "a refused APPEND left bytes in a pack");
    let missing = append_as(&store, "bob", "alice", "Nope").unwrap_err();
    assert_eq!(
        (hidden.kind, hidden.message.as_str()),
        (missing.kind, missing.message.as_str())
    );
    assert_eq!(hidden.kind, ErrorKind::NotFound);
    // With l but not i: denied.
    set_acl(&store, None, "alice", "Projects", "bob", Some("lr")).unwrap();
    let denied = append_as(&store, "bob", "alice", "Projects").unwrap_err();
    assert_eq!(denied.kind, ErrorKind::Denied);
    // With i and s but not w: appended, \Flagged dropped.
    set_acl(&store, None, "alice", "Projects", "bob", Some("+is")).unwrap();
    let Outcome::Appended { uid, .. } = append_as(&store, "bob", "alice", "Projects").unwrap()
    else {
        panic!("not appended");
    };
    let reader = store.reader("alice").unwrap();
    let id = reader.mailbox("Projects").unwrap().unwrap().id;
    assert_eq!(reader.message(&id, uid).unwrap().unwrap().flags, ["\\Seen"]);
    // STORE: only flags the rights allow; none of them: denied.
    let store_flags = |flags: &[&str]| {
        store.submit_one_blocking(Intent::Acting {
            actor: "bob".into(),
            intent: Box::new(Intent::StoreFlags {
                user: "alice".into(),
                mailbox: MailboxRef::Id(id.clone()),
                uids: vec![uid],
                mode: FlagMode::Remove,
                flags: flags.iter().map(|f| f.to_string()).collect(),
                unchanged_since: None,
            }),
        })
    };
    assert_eq!(
        store_flags(&["\\Answered"]).unwrap_err().kind,
        ErrorKind::Denied
    );
    store_flags(&["\\Seen", "\\Answered"]).unwrap();
    assert!(reader.message(&id, uid).unwrap().unwrap().flags.is_empty());
    // EXPUNGE needs e; an ACL change needs a.
    let expunge = Intent::Acting {
        actor: "bob".into(),
        intent: Box::new(Intent::Expunge {
            user: "alice".into(),
            mailbox: MailboxRef::Id(id.clone()),
            uids: None,
        }),
    };
    assert_eq!(
        store.submit_one_blocking(expunge).unwrap_err().kind,
        ErrorKind::Denied
    );
    let err = set_acl(&store, Some("bob"), "alice", "Projects", "carol", Some("l")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Denied);
    // Acting cannot change what is not a mailbox's.
    let other = Intent::Acting {
        actor: "bob".into(),
        intent: Box::new(Intent::SetPassword {
            user: "alice".into(),
            password_hash: "x".into(),
        }),
    };
    assert_eq!(
        store.submit_one_blocking(other).unwrap_err().kind,
        ErrorKind::Invalid
    );
    store.shutdown();
}

#[test]
fn setacl_checks_identifiers_bounds_and_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let err = set_acl(&store, None, "alice", "Projects", "nosuch", Some("l")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    let err = set_acl(&store, None, "alice", "Projects", "alice", Some("l")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    let err = set_acl(&store, None, "alice", "Nope", "bob", Some("l")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    for who in ["bob", "carol", "anyone"] {
        set_acl(&store, None, "alice", "Projects", who, Some("l")).unwrap();
    }
    let err = set_acl(&store, None, "alice", "Projects", "-bob", Some("l")).unwrap_err();
    assert_eq!(err.kind, ErrorKind::OverQuota);
    // At the bound, changing and removing are allowed.
    set_acl(&store, None, "alice", "Projects", "bob", Some("+r")).unwrap();
    set_acl(&store, None, "alice", "Projects", "carol", None).unwrap();
    // Removing every right removes the entry.
    set_acl(&store, None, "alice", "Projects", "anyone", Some("-l")).unwrap();
    assert_eq!(
        acl_rows(&store, "alice", "Projects"),
        [("bob".to_string(), "lr".to_string())]
    );
    // bob, given a, administers it too.
    set_acl(&store, None, "alice", "Projects", "bob", Some("+a")).unwrap();
    set_acl(
        &store,
        Some("bob"),
        "alice",
        "Projects",
        "carol",
        Some("lr"),
    )
    .unwrap();
    assert_eq!(
        rights(&store, "alice", "Projects", "carol").to_string(),
        "lr"
    );
    store.shutdown();
}

#[test]
fn grants_follow_renames_deletes_and_users_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    set_acl(&store, None, "alice", "Projects", "bob", Some("lrs")).unwrap();
    set_acl(&store, None, "alice", "INBOX", "anyone", Some("l")).unwrap();
    set_acl(&store, None, "carol", "INBOX", "bob", Some("lr")).unwrap();
    let shared = |store: &Store, user: &str| -> Vec<String> {
        store
            .shared_with(user)
            .unwrap()
            .into_iter()
            .map(|(owner, id)| {
                let reader = store.reader(&owner).unwrap();
                format!(
                    "{owner}/{}",
                    reader.mailbox_by_id(&id).unwrap().unwrap().name
                )
            })
            .collect()
    };
    let mut seen = shared(&store, "bob");
    seen.sort();
    assert_eq!(seen, ["alice/INBOX", "alice/Projects", "carol/INBOX"]);
    store
        .submit_one_blocking(Intent::RenameMailbox {
            user: "alice".into(),
            from: "Projects".into(),
            to: "Work".into(),
        })
        .unwrap();
    assert_eq!(rights(&store, "alice", "Work", "bob").to_string(), "lrs");
    // Rebuilt from the journal alone: the same rights, the same reverse rows.
    store.shutdown();
    drop(store);
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    for entry in std::fs::read_dir(dir.path().join("users")).unwrap() {
        std::fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(rights(&store, "alice", "Work", "bob").to_string(), "lrs");
    assert_eq!(rights(&store, "alice", "INBOX", "carol").to_string(), "l");
    let mut seen = shared(&store, "bob");
    seen.sort();
    assert_eq!(seen, ["alice/INBOX", "alice/Work", "carol/INBOX"]);
    // A deleted mailbox takes its entries along; a re-created one has none.
    store
        .submit_one_blocking(Intent::DeleteMailbox {
            user: "alice".into(),
            name: "Work".into(),
        })
        .unwrap();
    store
        .submit_one_blocking(Intent::CreateMailbox {
            user: "alice".into(),
            name: "Work".into(),
            special_use: None,
        })
        .unwrap();
    assert_eq!(rights(&store, "alice", "Work", "bob"), Rights::NONE);
    assert_eq!(shared(&store, "bob"), ["alice/INBOX", "carol/INBOX"]);
    // A deleted user's entries in others' ACLs go, and their own grants.
    store
        .submit_one_blocking(Intent::DeleteUser { user: "bob".into() })
        .unwrap();
    assert!(acl_rows(&store, "carol", "INBOX").is_empty());
    add_user(&store, "bob");
    assert_eq!(shared(&store, "bob"), ["alice/INBOX"]);
    store
        .submit_one_blocking(Intent::DeleteUser {
            user: "alice".into(),
        })
        .unwrap();
    assert!(shared(&store, "bob").is_empty());
    // Reconstruct agrees, and puts back a lost entry.
    set_acl(&store, None, "carol", "INBOX", "bob", Some("lr")).unwrap();
    let options = store::reconstruct::Options {
        user: Some("carol".into()),
        mailbox: None,
        mailbox_id: None,
        check_only: false,
        read_bytes_per_sec: 0,
    };
    let report = store.reconstruct(&options, &|_| {}).unwrap();
    assert_eq!(report.problems, 0, "{:?}", report.details);
    let index = rusqlite::Connection::open(dir.path().join("users/carol/index.sqlite")).unwrap();
    index.execute("DELETE FROM acl", []).unwrap();
    index
        .execute(
            "INSERT INTO acl (mailbox, identifier, rights) VALUES ('Fbogus', 'anyone', 'l')",
            [],
        )
        .unwrap();
    let report = store.reconstruct(&options, &|_| {}).unwrap();
    assert_eq!(report.problems, 2, "{:?}", report.details);
    assert_eq!(
        acl_rows(&store, "carol", "INBOX"),
        [("bob".to_string(), "lr".to_string())]
    );
    store.shutdown();
}

#[test]
fn copy_and_move_across_owners_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = setup(dir.path());
    let message = store.prepare(b"Subject: one\r\n\r\nbody\r\n".to_vec());
    store
        .submit_one_blocking(Intent::Append {
            user: "bob".into(),
            mailbox: "INBOX".into(),
            message,
            flags: vec![],
            internal_date: None,
        })
        .unwrap();
    let move_in = |store: &Store| {
        store.submit_one_blocking(Intent::Acting {
            actor: "bob".into(),
            intent: Box::new(Intent::Copy {
                user: "alice".into(),
                from_user: Some("bob".into()),
                from: MailboxRef::Name("INBOX".into()),
                uids: vec![1],
                to: "Projects".into(),
                remove_source: true,
            }),
        })
    };
    // Refused (no i): bob's message stays.
    set_acl(&store, None, "alice", "Projects", "bob", Some("lr")).unwrap();
    assert_eq!(move_in(&store).unwrap_err().kind, ErrorKind::Denied);
    let count = |user: &str, name: &str| {
        let reader = store.reader(user).unwrap();
        let id = reader.mailbox(name).unwrap().unwrap().id;
        reader.counts(&id).unwrap().messages
    };
    assert_eq!((count("bob", "INBOX"), count("alice", "Projects")), (1, 0));
    set_acl(&store, None, "alice", "Projects", "bob", Some("+i")).unwrap();
    move_in(&store).unwrap();
    assert_eq!((count("bob", "INBOX"), count("alice", "Projects")), (0, 1));
    store.shutdown();
}
