//! CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267) on the wire: update contexts
//! with ADDTO / REMOVEFROM as another session changes the mailbox, PARTIAL,
//! CANCELUPDATE and the bound on live contexts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

async fn append_with_flags(client: &mut Client, tag: &str, flags: &str, subject: &str) {
    let text = message(subject, "body");
    client
        .send(format!("{tag} APPEND INBOX ({flags}) {{{}+}}\r\n", text.len()).as_bytes())
        .await;
    client.send(text.as_bytes()).await;
    client.send(b"\r\n").await;
    let all = client.until_tagged(tag).await;
    assert!(all.contains(&format!("{tag} OK")), "{all}");
}

/// Only the untagged lines of `all` that start with `prefix`.
fn lines_with<'a>(all: &'a str, prefix: &str) -> Vec<&'a str> {
    all.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_are_advertised() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let caps = client.ok("c", "CAPABILITY").await;
    let words: Vec<&str> = caps.lines().next().unwrap().split(' ').collect();
    for cap in ["ESORT", "CONTEXT=SEARCH", "CONTEXT=SORT", "PARTIAL"] {
        assert!(words.contains(&cap), "{cap}: {caps}");
    }
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn search_update_follows_flags_appends_and_expunges() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    append_with_flags(&mut other, "a1", "\\Flagged", "one").await;
    append_with_flags(&mut other, "a2", "", "two").await;
    append_with_flags(&mut other, "a3", "\\Flagged", "three").await;
    watcher.ok("s", "SELECT INBOX").await;
    other.ok("s", "SELECT INBOX").await;

    let got = watcher
        .ok("B01", "UID SEARCH RETURN (UPDATE) FLAGGED")
        .await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"B01\") UID ALL 1,3\r\n"),
        "{got}"
    );
    // A flag change that makes message 2 match.
    other.ok("f1", "UID STORE 2 +FLAGS (\\Flagged)").await;
    let got = watcher.ok("n1", "NOOP").await;
    assert_eq!(
        lines_with(&got, "* ESEARCH"),
        vec!["* ESEARCH (TAG \"B01\") UID ADDTO (0 2)"],
        "{got}"
    );
    // And one that makes message 1 leave.
    other.ok("f2", "UID STORE 1 -FLAGS (\\Flagged)").await;
    let got = watcher.ok("n2", "NOOP").await;
    assert_eq!(
        lines_with(&got, "* ESEARCH"),
        vec!["* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 1)"],
        "{got}"
    );
    // A new matching message comes after its EXISTS; a new one that does not
    // match brings no update.
    append_with_flags(&mut other, "a4", "\\Flagged", "four").await;
    append_with_flags(&mut other, "a5", "\\Seen", "five").await;
    let got = watcher.ok("n3", "NOOP").await;
    let exists = got.find("* 5 EXISTS").expect("EXISTS");
    let addto = got
        .find("* ESEARCH (TAG \"B01\") UID ADDTO (0 4)")
        .expect("ADDTO");
    assert!(exists < addto, "{got}");
    assert_eq!(lines_with(&got, "* ESEARCH").len(), 1, "{got}");
    // An expunge of a member: REMOVEFROM before the EXPUNGE.
    other
        .ok("x1", "UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        .await;
    other.ok("x2", "UID EXPUNGE 3").await;
    let got = watcher.ok("n4", "NOOP").await;
    let removed = got
        .find("* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 3)")
        .expect("REMOVEFROM");
    let expunge = got.find("* 3 EXPUNGE").expect("EXPUNGE");
    assert!(removed < expunge, "{got}");
    // The result the context now holds is what a new SEARCH finds.
    let got = watcher.ok("s2", "UID SEARCH RETURN (ALL) FLAGGED").await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"s2\") UID ALL 2,4\r\n"),
        "{got}"
    );
    // CANCELUPDATE ends it: no more updates.
    watcher.ok("c1", "CANCELUPDATE \"B01\"").await;
    other.ok("f3", "UID STORE 5 +FLAGS (\\Flagged)").await;
    let got = watcher.ok("n5", "NOOP").await;
    assert!(lines_with(&got, "* ESEARCH").is_empty(), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sequence_number_contexts_use_numbers_valid_when_sent() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    for (tag, subject) in [("a1", "one"), ("a2", "two"), ("a3", "three")] {
        append_with_flags(&mut other, tag, "\\Seen", subject).await;
    }
    watcher.ok("s", "SELECT INBOX").await;
    other.ok("s", "SELECT INBOX").await;
    let got = watcher.ok("B02", "SEARCH RETURN (UPDATE COUNT) SEEN").await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"B02\") COUNT 3\r\n"),
        "{got}"
    );
    other
        .ok("x1", "UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        .await;
    other.ok("x2", "UID EXPUNGE 1").await;
    append_with_flags(&mut other, "a4", "\\Seen", "four").await;
    let got = watcher.ok("n1", "NOOP").await;
    // Message 1 leaves as number 1 (before its EXPUNGE); the new message,
    // UID 4, is number 3 once message 1 is gone.
    let removed = got
        .find("* ESEARCH (TAG \"B02\") REMOVEFROM (0 1)")
        .expect("REMOVEFROM");
    let expunge = got.find("* 1 EXPUNGE").expect("EXPUNGE");
    let added = got
        .find("* ESEARCH (TAG \"B02\") ADDTO (0 3)")
        .expect("ADDTO");
    assert!(removed < expunge && expunge < added, "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn sort_update_places_new_messages_by_their_keys() {
    let server = Server::start().await;
    let mut watcher = server.logged_in().await;
    let mut other = server.logged_in().await;
    append_with_flags(&mut other, "a1", "", "bravo").await;
    append_with_flags(&mut other, "a2", "", "delta").await;
    watcher.ok("s", "SELECT INBOX").await;
    other.ok("s", "SELECT INBOX").await;
    let got = watcher
        .ok("C01", "UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNDELETED")
        .await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"C01\") UID ALL 1:2\r\n"),
        "{got}"
    );
    append_with_flags(&mut other, "a3", "", "charlie").await;
    append_with_flags(&mut other, "a4", "", "alpha").await;
    let got = watcher.ok("n1", "NOOP").await;
    // alpha (4) goes first, charlie (3) between bravo and delta.
    assert_eq!(
        lines_with(&got, "* ESEARCH"),
        vec!["* ESEARCH (TAG \"C01\") UID ADDTO (1 4) ADDTO (3 3)"],
        "{got}"
    );
    // Deleting bravo makes it leave at its position: alpha, bravo, charlie, delta.
    other.ok("f1", "UID STORE 1 +FLAGS (\\Deleted)").await;
    let got = watcher.ok("n2", "NOOP").await;
    assert_eq!(
        lines_with(&got, "* ESEARCH"),
        vec!["* ESEARCH (TAG \"C01\") UID REMOVEFROM (2 1)"],
        "{got}"
    );
    // A new SORT agrees with the context.
    let got = watcher
        .ok("C02", "UID SORT RETURN (ALL) (SUBJECT) UTF-8 UNDELETED")
        .await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"C02\") UID ALL 4,3,2\r\n"),
        "{got}"
    );
    // Contexts end with the selection.
    watcher.ok("u", "UNSELECT").await;
    watcher.ok("s2", "SELECT INBOX").await;
    other.ok("f2", "UID STORE 1 -FLAGS (\\Deleted)").await;
    let got = watcher.ok("n3", "NOOP").await;
    assert!(lines_with(&got, "* ESEARCH").is_empty(), "{got}");
    let got = watcher.command("c", "CANCELUPDATE \"C01\"").await;
    assert!(got.contains("c BAD"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_picks_positions_of_the_result() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    for tag in ["a1", "a2", "a3", "a4", "a5"] {
        append_with_flags(&mut client, tag, "", tag).await;
    }
    client.ok("s", "SELECT INBOX").await;
    client.ok("x", "UID STORE 2 +FLAGS (\\Seen)").await;
    let got = client
        .ok("p1", "UID SEARCH RETURN (PARTIAL 2:3 COUNT) UNSEEN")
        .await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"p1\") UID PARTIAL (2:3 3:4) COUNT 4\r\n"),
        "{got}"
    );
    let got = client.ok("p2", "SEARCH RETURN (PARTIAL -1:-2) ALL").await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"p2\") PARTIAL (-1:-2 4:5)\r\n"),
        "{got}"
    );
    let got = client.ok("p3", "SEARCH RETURN (PARTIAL 9:10) ALL").await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"p3\") PARTIAL (9:10 NIL)\r\n"),
        "{got}"
    );
    let got = client
        .ok(
            "p4",
            "UID SORT RETURN (PARTIAL 1:2) (REVERSE SUBJECT) UTF-8 ALL",
        )
        .await;
    assert!(
        got.starts_with("* ESEARCH (TAG \"p4\") UID PARTIAL (1:2 5,4)\r\n"),
        "{got}"
    );
    // RFC 9394: PARTIAL as a FETCH modifier, over what the FETCH returns
    // (after CHANGEDSINCE).
    let got = client
        .ok("f1", "UID FETCH 1:* (FLAGS) (PARTIAL -1:-2)")
        .await;
    let fetched: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH ("))
        .collect();
    assert_eq!(fetched.len(), 2, "{got}");
    assert!(
        fetched[0].starts_with("* 4 FETCH") && fetched[1].starts_with("* 5 FETCH"),
        "{got}"
    );
    let got = client
        .ok("f2", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 PARTIAL 1:1)")
        .await;
    let fetched: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH ("))
        .collect();
    assert_eq!(fetched.len(), 1, "{got}");
    let got = client
        .command("p5", "SEARCH RETURN (PARTIAL 0:3) ALL")
        .await;
    assert!(got.starts_with("p5 BAD"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn live_contexts_are_bounded() {
    let server = Server::start_with(ImapConfig {
        context_updates_max: 2,
        ..ImapConfig::default()
    })
    .await;
    let mut client = server.logged_in().await;
    append_with_flags(&mut client, "a1", "", "one").await;
    client.ok("s", "SELECT INBOX").await;
    client.ok("c1", "SEARCH RETURN (UPDATE) ALL").await;
    client.ok("c2", "SEARCH RETURN (UPDATE) ALL").await;
    // The third still answers its result, with the refusal beside it.
    let got = client.ok("c3", "SEARCH RETURN (UPDATE) ALL").await;
    assert!(got.contains("* ESEARCH (TAG \"c3\") ALL 1\r\n"), "{got}");
    assert!(got.contains("* NO [NOUPDATE \"c3\"]"), "{got}");
    // Reusing a tag replaces its context rather than adding one.
    let got = client.ok("c2", "SEARCH RETURN (UPDATE) ALL").await;
    assert!(!got.contains("NOUPDATE"), "{got}");
    // An unknown tag cancels nothing; a known one makes room.
    let got = client.command("x1", "CANCELUPDATE \"c1\" \"c3\"").await;
    assert!(got.starts_with("x1 BAD"), "{got}");
    client.ok("x2", "CANCELUPDATE \"c1\"").await;
    let got = client.ok("c4", "SEARCH RETURN (UPDATE) ALL").await;
    assert!(!got.contains("NOUPDATE"), "{got}");
    let got = client.command("x3", "CANCELUPDATE").await;
    assert!(got.starts_with("x3 BAD"), "{got}");
    client.ok("n", "NOOP").await;
    server.stop();
}
