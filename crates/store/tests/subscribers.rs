//! Status-page subscribers and the notice outbox through the store's public
//! surface: who gets a notice, that a recorded send is never queued again
//! (also after the derived tables are rebuilt from the journal), and the caps.

#![allow(clippy::unwrap_used)]

use postern_store as store;
use std::path::Path;
use store::{ErrorKind, Intent, NoticeOutcome, Outcome, Store, StoreConfig, SubscribeLimits};

const LIMITS: SubscribeLimits = SubscribeLimits {
    total_max: 3,
    per_address_per_hour_max: 2,
    per_ip_per_hour_max: 3,
};

fn open(dir: &Path) -> Store {
    Store::open(StoreConfig::new(dir.to_path_buf())).unwrap()
}

fn subscribe(
    store: &Store,
    kind: &str,
    address: &str,
    confirm: Option<&str>,
) -> store::Result<u64> {
    let token = format!("unsub-{}", address.replace(['@', '.', '+'], "-"));
    match store.submit_one_blocking(Intent::StatusSubscribe {
        kind: kind.into(),
        address: address.into(),
        confirm_hash: confirm.map(str::to_string),
        unsubscribe_token: token,
        ip: Some("192.0.2.1".into()),
        limits: LIMITS,
    })? {
        Outcome::Subscriber { id } => Ok(id),
        other => panic!("unexpected {other:?}"),
    }
}

fn open_incident(store: &Store, text: &str) -> u64 {
    match store
        .submit_one_blocking(Intent::StatusOpen {
            title: "Mail is slow".into(),
            components: vec!["Incoming mail".into()],
            impact: status::Impact::Minor,
            state: status::State::Investigating,
            kind: status::Kind::Incident,
            author: "sam".into(),
            text: text.into(),
            at: None,
        })
        .unwrap()
    {
        Outcome::StatusPosted { post, .. } => post,
        other => panic!("unexpected {other:?}"),
    }
}

fn due(store: &Store) -> Vec<(u64, String)> {
    store
        .notices_due(i64::MAX, 100)
        .unwrap()
        .into_iter()
        .map(|n| (n.post, n.address))
        .collect()
}

fn outcome(
    store: &Store,
    post: u64,
    subscriber: u64,
    outcome: NoticeOutcome,
) -> store::Result<Outcome> {
    store.submit_one_blocking(Intent::NoticeOutcome {
        post,
        subscriber,
        outcome,
    })
}

#[test]
fn a_post_queues_one_notice_per_active_subscriber_and_a_sent_one_stays_sent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let pending = subscribe(&store, "email", "Pending@Example.org", Some("hash-p")).unwrap();
    let active = subscribe(&store, "email", "active@example.org", Some("hash-a")).unwrap();
    store
        .submit_one_blocking(Intent::ConfirmSubscriber {
            confirm_hash: "hash-a".into(),
        })
        .unwrap();
    let first = open_incident(&store, "Delivery is delayed.");
    assert_eq!(due(&store), vec![(first, "active@example.org".to_string())]);

    outcome(&store, first, active, NoticeOutcome::Sent).unwrap();
    assert!(due(&store).is_empty());
    // A second outcome for the same notice means a second sender: refused.
    let again = outcome(&store, first, active, NoticeOutcome::Sent).unwrap_err();
    assert_eq!(again.kind, ErrorKind::Invalid);

    let second = open_incident(&store, "Another one.");
    outcome(
        &store,
        second,
        active,
        NoticeOutcome::Retry {
            not_before: 2_000_000_000,
            reason: "relay down".into(),
        },
    )
    .unwrap();
    assert!(store.notices_due(1_000_000_000, 10).unwrap().is_empty());
    assert_eq!(store.next_notice_due().unwrap(), Some(2_000_000_000));
    store.shutdown();
    drop(store);

    // Rebuilt from the journal: the sent notice is not queued again, the
    // retried one is still queued with its attempt counted.
    std::fs::remove_file(dir.path().join("server.sqlite")).unwrap();
    let store = open(dir.path());
    let notices = store.notices_due(i64::MAX, 10).unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!((notices[0].post, notices[0].attempts), (second, 1));
    let listed = store.subscribers(10).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, pending);
    assert_eq!(listed[0].address, "pending@example.org");
    assert_eq!(listed[0].state, "pending");
    assert_eq!(listed[1].state, "active");
    store.shutdown();
}

#[test]
fn unsubscribing_drops_queued_notices_and_later_posts_skip_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    subscribe(&store, "email", "bob@example.org", None).unwrap();
    let post = open_incident(&store, "Text.");
    assert_eq!(due(&store).len(), 1);
    let token = store.subscribers(10).unwrap()[0].unsubscribe_token.clone();
    store
        .submit_one_blocking(Intent::RemoveSubscriber {
            id: None,
            unsubscribe_token: Some(token.clone()),
        })
        .unwrap();
    assert!(due(&store).is_empty());
    open_incident(&store, "More.");
    assert!(due(&store).is_empty());
    let gone = store
        .submit_one_blocking(Intent::RemoveSubscriber {
            id: None,
            unsubscribe_token: Some(token),
        })
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NotFound);
    assert_eq!(
        outcome(&store, post, 1, NoticeOutcome::Sent)
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    store.shutdown();
}

#[test]
fn an_sms_notice_enters_the_sms_outbox_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = subscribe(&store, "sms", "+4912345678", None).unwrap();
    let post = open_incident(&store, "Text.");
    outcome(
        &store,
        post,
        id,
        NoticeOutcome::QueueSms {
            text: "Example status: Mail is slow".into(),
        },
    )
    .unwrap();
    assert!(due(&store).is_empty());
    let sms = store.sms_list(10).unwrap();
    assert_eq!(sms.len(), 1);
    assert_eq!(
        (sms[0].to.as_str(), sms[0].purpose.as_str()),
        ("+4912345678", "status")
    );
    store.shutdown();
}

#[test]
fn subscribing_is_bounded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for bad in [
        "no-at-sign",
        "a@b",
        "a b@example.org",
        "<x>@example.org",
        &format!("{}@example.org", "a".repeat(300)),
    ] {
        let e = subscribe(&store, "email", bad, Some("h")).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid, "{bad}");
    }
    // The same address twice in an hour is fine, a third time is not.
    subscribe(&store, "email", "carol@example.org", Some("h1")).unwrap();
    subscribe(&store, "email", "carol@example.org", Some("h2")).unwrap();
    let e = subscribe(&store, "email", "carol@example.org", Some("h3")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::OverQuota);
    // The old link was replaced by the new one.
    let e = store
        .submit_one_blocking(Intent::ConfirmSubscriber {
            confirm_hash: "h1".into(),
        })
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    // Admin adds are not rate limited, but the total is.
    subscribe(&store, "email", "dave@example.org", None).unwrap();
    subscribe(&store, "sms", "+41791234567", None).unwrap();
    let e = subscribe(&store, "email", "erin@example.org", None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::OverQuota);
    let e = subscribe(&store, "email", "dave@example.org", None).unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists);
    store.shutdown();
}

#[test]
fn an_imported_incident_log_notifies_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    subscribe(&store, "email", "bob@example.org", None).unwrap();
    let log = "Status (by sam at Fri Apr 15 14:34 UTC)\nDelivery is delayed.\n\
               Update (by sam at Fri Apr 15 15:09 UTC)\nThe backlog is cleared.\n";
    let parsed = status::import_log(log, 2011).unwrap();
    store
        .submit_one_blocking(Intent::StatusImport {
            incidents: parsed.incidents,
        })
        .unwrap();
    assert!(due(&store).is_empty(), "old posts are history, not news");
    store.shutdown();
}
