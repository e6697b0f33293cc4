//! The sort keys SORT and THREAD read in one scan: written with each message,
//! removed with it, never served when they fail their check, and put back by
//! reconstruct when missing (an index from before them), damaged or stale.

#![allow(clippy::unwrap_used)]

use postern_store as store;
use std::path::Path;
use store::{FlagMode, Intent, Store, StoreConfig};

fn open(dir: &Path) -> Store {
    Store::open(StoreConfig::new(dir.to_path_buf())).unwrap()
}

fn setup(dir: &Path) -> (Store, String) {
    let store = open(dir);
    store
        .submit_one_blocking(Intent::AddUser {
            user: "alice".into(),
            password_hash: store::password::hash("secret").unwrap(),
        })
        .unwrap();
    for subject in ["Charlie", "Re: alpha", "bravo"] {
        let raw = format!(
            "From: Zed <z@example.com>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@x>\r\n\r\nbody\r\n"
        );
        store
            .submit_one_blocking(Intent::Append {
                user: "alice".into(),
                mailbox: "INBOX".into(),
                message: store.prepare(raw.into_bytes()),
                flags: Vec::new(),
                internal_date: None,
            })
            .unwrap();
    }
    let inbox = store
        .reader("alice")
        .unwrap()
        .mailbox("INBOX")
        .unwrap()
        .unwrap()
        .id;
    (store, inbox)
}

fn subjects(store: &Store, inbox: &str) -> Vec<Option<String>> {
    let reader = store.reader("alice").unwrap();
    let metas = reader.messages(inbox).unwrap();
    let refs: Vec<_> = metas.iter().collect();
    reader
        .sort_summaries(inbox, &refs)
        .unwrap()
        .into_iter()
        .map(|s| s.map(|s| s.base_subject))
        .collect()
}

fn index(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("users/alice/index.sqlite")).unwrap()
}

fn reconstruct(store: &Store, check_only: bool) -> store::reconstruct::Report {
    let options = store::reconstruct::Options {
        user: Some("alice".into()),
        mailbox: None,
        mailbox_id: None,
        check_only,
        read_bytes_per_sec: 0,
    };
    store.reconstruct(&options, &|_| {}).unwrap()
}

#[test]
fn keys_are_written_with_each_message_and_removed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, inbox) = setup(dir.path());
    assert_eq!(
        subjects(&store, &inbox),
        vec![
            Some("Charlie".into()),
            Some("alpha".into()),
            Some("bravo".into())
        ]
    );
    store
        .submit_one_blocking(Intent::StoreFlags {
            user: "alice".into(),
            mailbox: store::MailboxRef::Id(inbox.clone()),
            uids: vec![2],
            mode: FlagMode::Add,
            flags: vec!["\\Deleted".into()],
            unchanged_since: None,
        })
        .unwrap();
    store
        .submit_one_blocking(Intent::Expunge {
            user: "alice".into(),
            mailbox: store::MailboxRef::Id(inbox.clone()),
            uids: None,
        })
        .unwrap();
    let rows: i64 = index(dir.path())
        .query_row("SELECT COUNT(*) FROM sort_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(reconstruct(&store, true).problems, 0);
}

#[test]
fn damaged_or_missing_keys_are_never_served_and_reconstruct_puts_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, inbox) = setup(dir.path());
    // Another message's keys over UID 1's, and UID 3's keys gone (as in an
    // index from before the table).
    let conn = index(dir.path());
    conn.execute(
        "UPDATE sort_keys SET keys = (SELECT keys FROM sort_keys WHERE uid = 2) WHERE uid = 1",
        [],
    )
    .unwrap();
    conn.execute("DELETE FROM sort_keys WHERE uid = 3", [])
        .unwrap();
    drop(conn);
    assert_eq!(
        subjects(&store, &inbox),
        vec![None, Some("alpha".into()), None],
        "keys that fail their check or are missing are not used"
    );
    let found = reconstruct(&store, true);
    let kinds: Vec<_> = found.details.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&"sort_keys_damaged"), "{kinds:?}");
    assert!(kinds.contains(&"sort_keys_missing"), "{kinds:?}");
    let repaired = reconstruct(&store, false);
    assert_eq!(repaired.repaired, 2, "{:?}", repaired.details);
    assert_eq!(
        subjects(&store, &inbox),
        vec![
            Some("Charlie".into()),
            Some("alpha".into()),
            Some("bravo".into())
        ]
    );
    assert_eq!(reconstruct(&store, true).problems, 0);
}
