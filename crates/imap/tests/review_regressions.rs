//! Sessions end to end: `serve()` over loopback TCP against a store in a
//! temporary directory, one test per finding of REVIEW.md that shows on the
//! wire. Each test names the finding it pins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::time::{Duration, Instant};

/// REVIEW A3: before login the server took (and buffered) literals up to the
/// configured 64 MiB.
#[tokio::test(flavor = "multi_thread")]
async fn a3_literals_before_login_are_small() {
    let server = Server::start().await;
    let mut client = server.connect().await;
    let refused = client.command("a", "LOGIN {9000}").await;
    assert!(refused.starts_with("a NO [TOOBIG]"), "{refused}");
    // A LOGIN with literals of ordinary size still works.
    client.send(b"b LOGIN {5}\r\n").await;
    assert!(client.line().await.starts_with("+ "));
    client
        .send(format!("{USER} {{{}}}\r\n", PASSWORD.len()).as_bytes())
        .await;
    assert!(client.line().await.starts_with("+ "));
    client.send(format!("{PASSWORD}\r\n").as_bytes()).await;
    let login = client.until_tagged("b").await;
    assert!(login.contains("b OK"), "{login}");
    // Logged in, the configured bound applies.
    let body = "x".repeat(20_000);
    client.append("c", "INBOX", &message("big", &body)).await;
    server.stop();
}

/// Sends the start of an APPEND whose line alone is over the bound (no end of
/// line yet) and checks that the BAD comes before the end does.
async fn send_line_over_the_bound(client: &mut Client) {
    let keywords = "k ".repeat(40_000);
    client
        .send(format!("a APPEND INBOX ({keywords}").as_bytes())
        .await;
    let bad = client.line().await;
    assert!(bad.starts_with("a BAD"), "{bad}");
}

/// REVIEW C1: an over-long line that ended in `{n+}` was skipped and the
/// literal's bytes were then run as commands.
#[tokio::test(flavor = "multi_thread")]
async fn c1_over_long_line_announcing_literal_plus_closes() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    send_line_over_the_bound(&mut client).await;
    let smuggled = "x CREATE Smuggled\r\n";
    client
        .send(format!(") {{{}+}}\r\n{smuggled}", smuggled.len()).as_bytes())
        .await;
    let rest = client.rest().await;
    assert!(rest.starts_with("* BYE"), "{rest}");
    assert!(!rest.contains("x OK"), "{rest}");
    let mut check = server.logged_in().await;
    let list = check.ok("b", "LIST \"\" *").await;
    assert!(!list.contains("Smuggled"), "{list}");
    server.stop();
}

/// REVIEW C1, the safe case: a synchronizing literal is never sent, so the
/// session goes on after the BAD.
#[tokio::test(flavor = "multi_thread")]
async fn c1_over_long_line_announcing_synchronizing_literal_goes_on() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    send_line_over_the_bound(&mut client).await;
    client.send(b") {20}\r\n").await;
    client.ok("b", "NOOP").await;
    server.stop();
}

/// REVIEW C2: SELECT in IMAP4rev2 mode owes a LIST response with accurate
/// attributes (RFC 9051 6.3.2).
#[tokio::test(flavor = "multi_thread")]
async fn c2_select_in_rev2_sends_list() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.ok("a", "CREATE Archive/2024").await;
    let rev1 = client.ok("b", "SELECT Archive").await;
    assert!(!rev1.contains("* LIST"), "{rev1}");
    client.ok("c", "ENABLE IMAP4rev2").await;
    let selected = client.ok("d", "SELECT Archive").await;
    assert!(
        selected.contains("* LIST (\\HasChildren \\Archive) \"/\" Archive\r\n"),
        "{selected}"
    );
    let examined = client.ok("e", "EXAMINE Archive/2024").await;
    assert!(
        examined.contains("* LIST (\\HasNoChildren) \"/\" Archive/2024\r\n"),
        "{examined}"
    );
    server.stop();
}

/// REVIEW C3: PREVIEW went out as a quoted 8-bit string to IMAP4rev1 clients.
#[tokio::test(flavor = "multi_thread")]
async fn c3_preview_is_a_literal_unless_utf8_is_enabled() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client
        .append("a", "INBOX", &message("Grüße", "Schöne Grüße aus Köln"))
        .await;
    client.ok("b", "SELECT INBOX").await;
    let rev1 = client.ok("c", "FETCH 1 (PREVIEW)").await;
    assert!(rev1.contains("PREVIEW {"), "{rev1}");
    assert!(rev1.contains("Köln"), "{rev1}");
    client.ok("d", "ENABLE UTF8=ACCEPT").await;
    let utf8 = client.ok("e", "FETCH 1 (PREVIEW)").await;
    assert!(utf8.contains("PREVIEW \"Schöne"), "{utf8}");
    server.stop();
}

/// REVIEW C4: after `DELETE a` with `a/b` left, `LIST "" %` lost `a`.
#[tokio::test(flavor = "multi_thread")]
async fn c4_percent_lists_levels_that_are_not_mailboxes() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.ok("a", "CREATE x/y/z").await;
    client.command("b", "DELETE x/y").await;
    client.command("c", "DELETE x").await;
    let top = client.ok("d", "LIST \"\" %").await;
    assert!(
        top.contains("* LIST (\\Noselect \\HasChildren) \"/\" x\r\n"),
        "{top}"
    );
    let second = client.ok("e", "LIST \"\" x/%").await;
    assert!(
        second.contains("* LIST (\\Noselect \\HasChildren) \"/\" x/y\r\n"),
        "{second}"
    );
    let all = client.ok("f", "LIST \"\" *").await;
    assert!(!all.contains("\"/\" x\r\n"), "{all}");
    assert!(all.contains("\"/\" x/y/z\r\n"), "{all}");
    client.ok("g", "ENABLE IMAP4rev2").await;
    let rev2 = client.ok("h", "LIST \"\" %").await;
    assert!(
        rev2.contains("* LIST (\\NonExistent \\HasChildren) \"/\" x\r\n"),
        "{rev2}"
    );
    server.stop();
}

/// REVIEW A1: hostile patterns overflowed the stack or ran for exponential
/// time; over-long ones are now refused.
#[tokio::test(flavor = "multi_thread")]
async fn a1_hostile_list_patterns() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let started = Instant::now();
    let wild = "*%".repeat(500);
    let answer = client.ok("a", &format!("LIST \"\" \"{wild}x\"")).await;
    assert!(!answer.contains("* LIST"), "{answer}");
    let answer = client.ok("b", &format!("LIST \"\" \"{wild}\"")).await;
    assert!(answer.contains("\"/\" Archive\r\n"), "{answer}");
    let too_long = "*".repeat(30_000);
    let refused = client.command("c", &format!("LIST \"\" {too_long}")).await;
    assert!(refused.starts_with("c BAD"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(10));
    server.stop();
}

/// REVIEW A2: sequence sets are merged before they are expanded, and SEARCH
/// resolves them once per command; the answers are unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn a2_sequence_sets_resolve_correctly() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    for i in 1..=5 {
        client
            .append(&format!("a{i}"), "INBOX", &message(&format!("m{i}"), "hi"))
            .await;
    }
    client.ok("b", "SELECT INBOX").await;
    let copies = vec!["1:*"; 10_000].join(",");
    let fetched = client.ok("c", &format!("FETCH {copies} (UID)")).await;
    assert_eq!(fetched.matches(" FETCH (").count(), 5, "{fetched}");
    let search = client.ok("d", "SEARCH 4:2,2:3 NOT 3").await;
    assert!(search.contains("* SEARCH 2 4\r\n"), "{search}");
    let search = client.ok("e", "UID SEARCH UID 4:* OR 1 5").await;
    assert!(search.contains("* SEARCH 5\r\n"), "{search}");
    let search = client.ok("f", &format!("SEARCH {copies} UID 2,4")).await;
    assert!(search.contains("* SEARCH 2 4\r\n"), "{search}");
    server.stop();
}

/// REVIEW C5: a failed SEARCH ... RETURN (SAVE) must leave `$` empty
/// (RFC 5182), and MODSEQ with only MIN/MAX is over those messages
/// (RFC 7162 3.1.5).
#[tokio::test(flavor = "multi_thread")]
async fn c5_searchres_and_esearch_modseq() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.append("a1", "INBOX", &message("one", "hi")).await;
    client.append("a2", "INBOX", &message("two", "hi")).await;
    client.ok("b", "SELECT INBOX").await;
    client.ok("c", "SEARCH RETURN (SAVE) ALL").await;
    let saved = client.ok("d", "FETCH $ (UID)").await;
    assert_eq!(saved.matches(" FETCH (").count(), 2, "{saved}");
    let refused = client
        .command("e", "SEARCH RETURN (SAVE) CHARSET KOI8-R ALL")
        .await;
    assert!(refused.contains("e NO [BADCHARSET"), "{refused}");
    let emptied = client.ok("f", "FETCH $ (UID)").await;
    assert_eq!(emptied.matches(" FETCH (").count(), 0, "{emptied}");

    client.ok("g", "STORE 1 +FLAGS (\\Flagged)").await;
    let modseq_of = |text: &str, seq: u32| -> u64 {
        let start = text
            .find(&format!("* {seq} FETCH"))
            .expect("a FETCH response");
        let rest = &text[start..];
        let at = rest.find("MODSEQ (").expect("a MODSEQ") + "MODSEQ (".len();
        rest[at..rest[at..].find(')').unwrap() + at]
            .parse()
            .unwrap()
    };
    let modseqs = client.ok("h", "FETCH 1:2 (MODSEQ)").await;
    let (first, second) = (modseq_of(&modseqs, 1), modseq_of(&modseqs, 2));
    assert!(first > second, "{modseqs}");
    let max_only = client.ok("i", "SEARCH RETURN (MAX) MODSEQ 1").await;
    assert!(
        max_only.contains(&format!("MAX 2 MODSEQ {second}\r\n")),
        "{max_only}"
    );
    let min_only = client.ok("j", "SEARCH RETURN (MIN) MODSEQ 1").await;
    assert!(
        min_only.contains(&format!("MIN 1 MODSEQ {first}\r\n")),
        "{min_only}"
    );
    server.stop();
}

/// REVIEW C5: a keyword new to the mailbox brings an untagged FLAGS, in this
/// session and in another one that has the mailbox selected.
#[tokio::test(flavor = "multi_thread")]
async fn c5_new_keyword_sends_flags() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.append("a", "INBOX", &message("one", "hi")).await;
    client.ok("b", "SELECT INBOX").await;
    let mut other = server.logged_in().await;
    other.ok("c", "SELECT INBOX").await;
    let stored = client.ok("d", "STORE 1 +FLAGS ($Label1)").await;
    let flags = stored.find("* FLAGS (").expect("a FLAGS response");
    assert!(
        stored[flags..]
            .starts_with("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)\r\n")
    );
    assert!(flags < stored.find(" FETCH ").unwrap(), "{stored}");
    let again = client.ok("e", "STORE 1 +FLAGS ($Label1)").await;
    assert!(!again.contains("* FLAGS"), "{again}");
    let seen = other.ok("f", "NOOP").await;
    assert!(seen.contains("$Label1)\r\n* 1 FETCH"), "{seen}");
    server.stop();
}
