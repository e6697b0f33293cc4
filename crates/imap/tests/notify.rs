//! NOTIFY (RFC 5465) on the wire: STATUS for other mailboxes, LIST for
//! mailbox and subscription changes, the selected mailbox's new messages
//! with their FETCH items, BADEVENT, NOTIFY NONE and NOTIFICATIONOVERFLOW.
//! Pushed responses are read as they come, without a command: they must
//! arrive between commands too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

/// Reads lines until one starts with `prefix`; every line read on the way.
async fn until_line(client: &mut Client, prefix: &str) -> String {
    let mut all = String::new();
    loop {
        let line = client.line().await;
        assert!(!line.is_empty(), "connection closed; so far: {all}");
        all.push_str(&line);
        if line.starts_with(prefix) {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn notify_is_advertised() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let caps = client.ok("c", "CAPABILITY").await;
    let words: Vec<&str> = caps.lines().next().unwrap().split(' ').collect();
    assert!(words.contains(&"NOTIFY"), "{caps}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn status_of_other_mailboxes_arrives_unasked() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    other.ok("c", "CREATE Work").await;
    other.append("a0", "Work", &message("zero", "x")).await;
    let got = watcher
        .ok(
            "n",
            "NOTIFY SET STATUS (PERSONAL (MessageNew MessageExpunge))",
        )
        .await;
    assert!(
        got.contains("* STATUS Work (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "),
        "{got}"
    );
    assert!(got.contains("* STATUS INBOX (MESSAGES 0 "), "{got}");
    // New mail in Work: a STATUS with no command running.
    other.append("a1", "Work", &message("one", "x")).await;
    let got = until_line(&mut watcher, "* STATUS Work").await;
    assert!(got.contains("(MESSAGES 2 UIDNEXT 3 "), "{got}");
    // An expunge there too.
    other.ok("s", "SELECT Work").await;
    other.ok("d", "UID STORE 1 +FLAGS.SILENT (\\Deleted)").await;
    other.ok("x", "EXPUNGE").await;
    let got = until_line(&mut watcher, "* STATUS Work").await;
    assert!(got.contains("(MESSAGES 1 UIDNEXT 3 "), "{got}");
    // A flag change is not asked for: nothing; the next command shows none.
    other.ok("f", "UID STORE 2 +FLAGS (\\Seen)").await;
    let got = watcher.ok("p", "NOOP").await;
    assert!(!got.contains("STATUS"), "{got}");
    // While idling as well.
    watcher.send(b"i IDLE\r\n").await;
    until_line(&mut watcher, "+ ").await;
    other.append("a2", "INBOX", &message("two", "x")).await;
    let got = until_line(&mut watcher, "* STATUS INBOX").await;
    assert!(got.contains("(MESSAGES 1 UIDNEXT 2 "), "{got}");
    watcher.send(b"DONE\r\n").await;
    watcher.until_tagged("i").await;
    // NOTIFY NONE: quiet again.
    watcher.ok("o", "NOTIFY NONE").await;
    other.append("a3", "INBOX", &message("three", "x")).await;
    let got = watcher.ok("p2", "NOOP").await;
    assert!(!got.contains("STATUS"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn flag_changes_and_subtrees() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    other.ok("c1", "CREATE Lists/rust").await;
    other.ok("c2", "CREATE Other").await;
    other.append("a1", "Lists/rust", &message("one", "x")).await;
    watcher
        .ok(
            "n",
            "NOTIFY SET (SUBTREE Lists (MessageNew MessageExpunge FlagChange))",
        )
        .await;
    // Outside the subtree: nothing.
    other.append("a2", "Other", &message("two", "x")).await;
    other.ok("s", "SELECT Lists/rust").await;
    other.ok("f", "UID STORE 1 +FLAGS (\\Seen)").await;
    let got = until_line(&mut watcher, "* STATUS").await;
    assert!(
        got.starts_with("* STATUS Lists/rust (MESSAGES 1 UIDNEXT 2 ") && got.contains("UNSEEN 0"),
        "{got}"
    );
    assert!(!got.contains("Other"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn mailbox_and_subscription_changes_come_as_list() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    watcher
        .ok(
            "n",
            "NOTIFY SET (PERSONAL (MailboxName SubscriptionChange))",
        )
        .await;
    other.ok("c", "CREATE Projects").await;
    let got = until_line(&mut watcher, "* LIST").await;
    assert!(got.ends_with("* LIST () \"/\" Projects\r\n"), "{got}");
    other.ok("s", "SUBSCRIBE Projects").await;
    let got = until_line(&mut watcher, "* LIST").await;
    assert!(
        got.ends_with("* LIST (\\Subscribed) \"/\" Projects\r\n"),
        "{got}"
    );
    other.ok("r", "RENAME Projects Finished").await;
    let got = until_line(&mut watcher, "* LIST () \"/\" Finished").await;
    assert!(got.contains("(\"OLDNAME\" (Projects))"), "{got}");
    other.ok("d", "DELETE Finished").await;
    let got = until_line(&mut watcher, "* LIST (\\NonExistent)").await;
    assert!(got.contains("\"/\" Finished"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn selected_mailbox_new_messages_come_with_their_fetch() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    watcher.ok("s", "SELECT INBOX").await;
    watcher
        .ok(
            "n",
            "NOTIFY SET (SELECTED (MessageNew (UID BODY[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange))",
        )
        .await;
    other.append("a1", "INBOX", &message("hello", "x")).await;
    let got = until_line(&mut watcher, "* 1 FETCH").await;
    assert!(got.contains("* 1 EXISTS\r\n"), "{got}");
    assert!(got.contains("UID 1"), "{got}");
    assert!(got.contains("Subject: hello"), "{got}");
    // BODY[] was read as BODY.PEEK[]: the message is still unseen.
    let got = watcher.ok("f", "FETCH 1 FLAGS").await;
    assert!(!got.contains("\\Seen"), "{got}");
    // A flag change and an expunge, pushed between commands.
    other.ok("s", "SELECT INBOX").await;
    other.ok("f1", "STORE 1 +FLAGS (\\Flagged)").await;
    let got = until_line(&mut watcher, "* 1 FETCH").await;
    assert!(got.contains("\\Flagged"), "{got}");
    other.ok("f2", "STORE 1 +FLAGS (\\Deleted)").await;
    other.ok("x", "EXPUNGE").await;
    until_line(&mut watcher, "* 1 EXPUNGE").await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_events_and_bad_groups_are_refused() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let got = client
        .command("b1", "NOTIFY SET (PERSONAL (MailboxName AnnotationChange))")
        .await;
    assert!(
        got.starts_with(
            "b1 NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
        ),
        "{got}"
    );
    let got = client.command("b2", "NOTIFY SET (PERSONAL (FooBar))").await;
    assert!(got.starts_with("b2 NO [BADEVENT"), "{got}");
    for (tag, command) in [
        ("b3", "NOTIFY SET (PERSONAL (MessageNew))"),
        ("b4", "NOTIFY SET (PERSONAL (FlagChange))"),
        (
            "b5",
            "NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))",
        ),
        (
            "b6",
            "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED NONE)",
        ),
        ("b7", "NOTIFY SET (PERSONAL)"),
        (
            "b8",
            "NOTIFY SET (SELECTED (MessageNew (RFC822) MessageExpunge))",
        ),
    ] {
        let got = client.command(tag, command).await;
        assert!(got.starts_with(&format!("{tag} BAD")), "{command}: {got}");
    }
    client.ok("n", "NOOP").await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_notifications_at_once_overflow() {
    let server = Server::start_with(ImapConfig {
        notify_responses_max: 2,
        ..ImapConfig::default()
    })
    .await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    for name in ["p", "p/a", "p/b"] {
        other.ok("c", &format!("CREATE {name}")).await;
    }
    watcher.ok("n", "NOTIFY SET (PERSONAL (MailboxName))").await;
    // One rename moves three mailboxes: three LIST responses in one round.
    other.ok("r", "RENAME p q").await;
    let got = until_line(&mut watcher, "* OK [NOTIFICATIONOVERFLOW]").await;
    assert!(!got.contains("* LIST"), "{got}");
    // NOTIFY is off now.
    other.ok("c2", "CREATE later").await;
    let got = watcher.ok("p", "NOOP").await;
    assert!(!got.contains("* LIST"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn selected_delayed_holds_expunges_for_a_command() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    other.append("a1", "INBOX", &message("one", "x")).await;
    watcher.ok("s", "SELECT INBOX").await;
    watcher
        .ok(
            "n",
            "NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange))",
        )
        .await;
    other.ok("s", "SELECT INBOX").await;
    other.ok("f", "STORE 1 +FLAGS (\\Deleted)").await;
    let got = until_line(&mut watcher, "* 1 FETCH").await;
    assert!(got.contains("\\Deleted"), "{got}");
    other.ok("x", "EXPUNGE").await;
    // The next push (new mail) comes without the EXPUNGE: the view still
    // holds the expunged message, so there are two.
    other.append("a2", "INBOX", &message("two", "x")).await;
    let got = until_line(&mut watcher, "* 2 EXISTS").await;
    assert!(!got.contains("EXPUNGE"), "{got}");
    // A command that allows EXPUNGE brings it.
    let got = watcher.ok("p", "NOOP").await;
    assert!(got.contains("* 1 EXPUNGE\r\n"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_new_messages_at_once_overflow() {
    let server = Server::start_with(ImapConfig {
        notify_responses_max: 2,
        ..ImapConfig::default()
    })
    .await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    other.ok("c", "CREATE src").await;
    for tag in ["a1", "a2", "a3"] {
        other.append(tag, "src", &message(tag, "x")).await;
    }
    watcher.ok("s", "SELECT INBOX").await;
    watcher
        .ok(
            "n",
            "NOTIFY SET (SELECTED (MessageNew (UID FLAGS) MessageExpunge))",
        )
        .await;
    other.ok("s", "SELECT src").await;
    // One COPY: three new messages in one commit, one more than a round may tell.
    other.ok("cp", "COPY 1:3 INBOX").await;
    let got = until_line(&mut watcher, "* OK [NOTIFICATIONOVERFLOW]").await;
    assert!(got.contains("* 3 EXISTS"), "{got}");
    assert!(!got.contains(" FETCH "), "{got}");
    server.stop();
}

/// A flag change right after NOTIFY SET (no STATUS asked for) is told
/// apart from an expunge, so only FlagChange would report it.
#[tokio::test(flavor = "multi_thread")]
async fn a_first_flag_change_is_not_taken_for_an_expunge() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    other.ok("c", "CREATE Work").await;
    other.append("a1", "Work", &message("one", "x")).await;
    watcher
        .ok("n", "NOTIFY SET (PERSONAL (MessageNew MessageExpunge))")
        .await;
    other.ok("s", "SELECT Work").await;
    other.ok("f", "STORE 1 +FLAGS (\\Seen)").await;
    other.append("a2", "Work", &message("two", "x")).await;
    // The first STATUS is the new message's, with no earlier one for the flag.
    let got = until_line(&mut watcher, "* STATUS Work").await;
    assert!(got.contains("(MESSAGES 2 UIDNEXT 3 "), "{got}");
    server.stop();
}
