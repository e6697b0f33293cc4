//! CATENATE (RFC 4469) on the wire: `serve()` over loopback TCP against a
//! store in a temporary directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const MULTIPART: &str = "From: bob@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
Content-Type: text/plain\r\n\r\nfirst part\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
second part\r\n--b1--\r\n";

/// The literal of the first `{n}` in a response.
fn first_literal(response: &str) -> Vec<u8> {
    let bytes = response.as_bytes();
    let open = response.find('{').expect("a literal");
    let close = open + response[open..].find('}').unwrap();
    let size: usize = response[open + 1..close].parse().unwrap();
    bytes[close + 3..close + 3 + size].to_vec()
}

async fn body(client: &mut Client, uid: u32, section: &str) -> Vec<u8> {
    let got = client
        .ok("f", &format!("UID FETCH {uid} BODY.PEEK[{section}]"))
        .await;
    first_literal(&got)
}

async fn uid_validity(client: &mut Client, mailbox: &str) -> u32 {
    let got = client
        .ok("s", &format!("STATUS {mailbox} (UIDVALIDITY)"))
        .await;
    let at = got.find("UIDVALIDITY ").unwrap() + "UIDVALIDITY ".len();
    got[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

async fn messages(client: &mut Client, mailbox: &str) -> String {
    let got = client
        .ok("m", &format!("STATUS {mailbox} (MESSAGES)"))
        .await;
    got.lines().next().unwrap().to_string()
}

/// Sends `tag APPEND ...` made of `pieces`, each either command text or a
/// `{n+}` literal, and returns the responses through the tagged one.
async fn send_pieces(client: &mut Client, tag: &str, pieces: &[Piece<'_>]) -> String {
    let mut bytes = format!("{tag} ").into_bytes();
    for piece in pieces {
        match piece {
            Piece::Text(t) => bytes.extend_from_slice(t.as_bytes()),
            Piece::Literal(data) => {
                bytes.extend_from_slice(format!("{{{}+}}\r\n", data.len()).as_bytes());
                bytes.extend_from_slice(data);
            }
            Piece::Literal8(data) => {
                bytes.extend_from_slice(format!("~{{{}+}}\r\n", data.len()).as_bytes());
                bytes.extend_from_slice(data);
            }
        }
    }
    bytes.extend_from_slice(b"\r\n");
    client.send(&bytes).await;
    client.until_tagged(tag).await
}

enum Piece<'a> {
    Text(&'a str),
    Literal(&'a [u8]),
    Literal8(&'a [u8]),
}
use Piece::{Literal, Literal8, Text};

#[tokio::test(flavor = "multi_thread")]
async fn advertised_after_login() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    let caps = client.ok("c", "CAPABILITY").await;
    let words: Vec<&str> = caps.lines().next().unwrap().split(' ').collect();
    assert!(words.contains(&"CATENATE"), "{caps}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn text_and_urls_are_stored_as_their_exact_concatenation() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.append("a0", "INBOX", MULTIPART).await;
    let v = uid_validity(&mut client, "INBOX").await;
    let drafts = uid_validity(&mut client, "Drafts").await;
    client.ok("x", "SELECT INBOX").await;
    let header = body(&mut client, 1, "HEADER").await;
    let text = body(&mut client, 1, "TEXT").await;
    let part1 = body(&mut client, 1, "1").await;
    let mime1 = body(&mut client, 1, "1.MIME").await;
    assert_eq!(part1, b"first part");
    assert!(header.ends_with(b"\r\n\r\n"));

    // TEXT + whole message by URL.
    let got = send_pieces(
        &mut client,
        "a1",
        &[
            Text("APPEND Drafts (\\Seen) CATENATE (TEXT "),
            Literal(b"X-Forwarded: yes\r\n"),
            Text(&format!(" URL \"/INBOX;UIDVALIDITY={v}/;UID=1\")")),
        ],
    )
    .await;
    assert!(
        got.contains(&format!("a1 OK [APPENDUID {drafts} 1]")),
        "{got}"
    );
    // Sections: HEADER, TEXT (lower-case keyword), a part, its MIME header,
    // a PARTIAL, and the relative form against the selected INBOX.
    let got = send_pieces(
        &mut client,
        "a2",
        &[
            Text(&format!(
                "APPEND Drafts CATENATE (URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=HEADER\" TEXT "
            )),
            Literal(b"--between--\r\n"),
            Text(&format!(
                " URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;section=TEXT\" URL \"/INBOX/;UID=1/;SECTION=1.MIME\" \
                 URL \"imap://alice@localhost/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=1\" \
                 URL \";UID=1/;SECTION=1/;PARTIAL=6.4\" URL \"INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)\")"
            )),
        ],
    )
    .await;
    assert!(
        got.contains(&format!("a2 OK [APPENDUID {drafts} 2]")),
        "{got}"
    );
    client.ok("y", "SELECT Drafts").await;
    let mut expected = b"X-Forwarded: yes\r\n".to_vec();
    expected.extend_from_slice(MULTIPART.as_bytes());
    assert_eq!(body(&mut client, 1, "").await, expected);
    let mut expected = header.clone();
    expected.extend_from_slice(b"--between--\r\n");
    expected.extend_from_slice(&text);
    expected.extend_from_slice(&mime1);
    expected.extend_from_slice(&part1);
    expected.extend_from_slice(b"part");
    expected.extend_from_slice(b"Subject: parts\r\n\r\n");
    assert_eq!(
        String::from_utf8_lossy(&body(&mut client, 2, "").await),
        String::from_utf8_lossy(&expected)
    );
    let got = client.ok("z", "UID FETCH 1 FLAGS").await;
    assert!(got.contains("\\Seen"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_are_refused_and_nothing_is_stored() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.append("a0", "INBOX", MULTIPART).await;
    let v = uid_validity(&mut client, "INBOX").await;
    let before = messages(&mut client, "INBOX").await;
    let wrong = v.wrapping_add(1).max(1);
    for (i, url) in [
        format!("/INBOX;UIDVALIDITY={wrong}/;UID=1"),
        format!("/INBOX;UIDVALIDITY={v}/;UID=2"),
        format!("/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=5"),
        format!("/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=1.HEADER"),
        "/Nowhere/;UID=1".to_string(),
        "imap://alice@elsewhere.example/INBOX/;UID=1".to_string(),
        "imap://localhost/INBOX/;UID=1".to_string(),
        // Relative to the selected mailbox, and none is selected.
        ";UID=1".to_string(),
        "/INBOX/;UID=1/;URLAUTH=anonymous:internal:0123".to_string(),
        "http://localhost/INBOX/;UID=1".to_string(),
        "not a url".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("b{i}");
        let got = send_pieces(
            &mut client,
            &tag,
            &[
                Text("APPEND INBOX CATENATE (TEXT "),
                Literal(b"Subject: x\r\n\r\n"),
                Text(&format!(" URL \"{url}\")")),
            ],
        )
        .await;
        let expected = format!("{tag} NO [BADURL {}]", url.replace(' ', "%20"));
        assert!(got.starts_with(&expected), "{url}: {got}");
    }
    assert_eq!(messages(&mut client, "INBOX").await, before);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn another_users_mail_is_never_reachable() {
    let server = Server::start().await;
    let hash = store::password::hash("bob's password").unwrap();
    server
        .store
        .submit_one(Intent::AddUser {
            user: "bob".into(),
            password_hash: hash,
        })
        .await
        .unwrap();
    let mut bob = server.connect().await;
    bob.ok("l", "LOGIN bob \"bob's password\"").await;
    bob.append("a", "INBOX", &message("secret", "bob's secret words"))
        .await;
    let bob_validity = uid_validity(&mut bob, "INBOX").await;

    let mut alice = server.logged_in().await;
    for (i, url) in [
        format!("imap://bob@localhost/INBOX;UIDVALIDITY={bob_validity}/;UID=1"),
        "imap://bob;AUTH=*@localhost/INBOX/;UID=1".to_string(),
        // Alice's own INBOX, which is empty: never bob's.
        format!("/INBOX;UIDVALIDITY={bob_validity}/;UID=1"),
        "/INBOX/;UID=1".to_string(),
        "/Other%20Users/bob/INBOX/;UID=1".to_string(),
        "/~bob/INBOX/;UID=1".to_string(),
        "/../bob/INBOX/;UID=1".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let tag = format!("x{i}");
        let got = send_pieces(
            &mut alice,
            &tag,
            &[Text(&format!("APPEND Drafts CATENATE (URL \"{url}\")"))],
        )
        .await;
        assert!(
            got.starts_with(&format!("{tag} NO [BADURL ")),
            "{url}: {got}"
        );
        assert!(!got.contains("secret"), "{got}");
    }
    let got = messages(&mut alice, "Drafts").await;
    assert!(got.contains("MESSAGES 0"), "{got}");
    let got = alice.ok("st", "STATUS INBOX (MESSAGES)").await;
    assert!(got.contains("MESSAGES 0"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn too_big_and_nul() {
    let mut config = ImapConfig::default();
    config.limits.literal_bytes_max = 1000;
    let server = Server::start_with(config).await;
    let mut client = server.logged_in().await;
    let big = message("big", &"x".repeat(600));
    client.append("a0", "INBOX", &big).await;
    let before = messages(&mut client, "INBOX").await;
    let got = send_pieces(
        &mut client,
        "t1",
        &[Text(
            "APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\" URL \"/INBOX/;UID=1\")",
        )],
    )
    .await;
    assert!(got.starts_with("t1 NO [TOOBIG]"), "{got}");
    // Over the bound across the messages of one MULTIAPPEND, too.
    let got = send_pieces(
        &mut client,
        "t2",
        &[Text(
            "APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\") CATENATE (URL \"/INBOX/;UID=1\")",
        )],
    )
    .await;
    assert!(got.starts_with("t2 NO [TOOBIG]"), "{got}");
    assert_eq!(messages(&mut client, "INBOX").await, before);
    // A NUL needs literal8.
    let got = send_pieces(
        &mut client,
        "n1",
        &[
            Text("APPEND INBOX CATENATE (TEXT "),
            Literal(b"Subject: a\0b\r\n\r\n"),
            Text(")"),
        ],
    )
    .await;
    assert!(got.starts_with("n1 BAD"), "{got}");
    assert_eq!(messages(&mut client, "INBOX").await, before);
    let got = send_pieces(
        &mut client,
        "n2",
        &[
            Text("APPEND INBOX CATENATE (TEXT "),
            Literal8(b"Subject: a\0b\r\n\r\n"),
            Text(")"),
        ],
    )
    .await;
    assert!(got.starts_with("n2 OK"), "{got}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn multiappend_with_catenate_is_all_or_nothing() {
    let server = Server::start().await;
    let mut client = server.logged_in().await;
    client.append("a0", "INBOX", MULTIPART).await;
    let sent = uid_validity(&mut client, "Sent").await;
    let got = send_pieces(
        &mut client,
        "m1",
        &[
            Text("APPEND Sent CATENATE (URL \"/INBOX/;UID=1/;SECTION=HEADER\" TEXT "),
            Literal(b"new body\r\n"),
            Text(") (\\Seen) "),
            Literal(b"Subject: plain\r\n\r\nplain\r\n"),
            Text(" CATENATE (TEXT "),
            Literal(b"Subject: only text\r\n\r\n"),
            Text(" URL \"/INBOX/;UID=1/;SECTION=1\")"),
        ],
    )
    .await;
    assert!(
        got.contains(&format!("m1 OK [APPENDUID {sent} 1:3]")),
        "{got}"
    );
    client.ok("s", "SELECT Sent").await;
    let b1 = body(&mut client, 1, "").await;
    assert!(b1.starts_with(b"From: bob@example.org\r\nSubject: parts\r\n"));
    assert!(b1.ends_with(b"\r\n\r\nnew body\r\n"));
    assert_eq!(
        body(&mut client, 2, "").await,
        b"Subject: plain\r\n\r\nplain\r\n"
    );
    assert_eq!(
        body(&mut client, 3, "").await,
        b"Subject: only text\r\n\r\nfirst part"
    );
    // A bad URL in the second message: the first is not stored either.
    let got = send_pieces(
        &mut client,
        "m2",
        &[
            Text("APPEND Sent CATENATE (TEXT "),
            Literal(b"Subject: one\r\n\r\n"),
            Text(") CATENATE (URL \"/INBOX/;UID=9\")"),
        ],
    )
    .await;
    assert!(got.starts_with("m2 NO [BADURL /INBOX/;UID=9]"), "{got}");
    let got = client.ok("n", "NOOP").await;
    assert!(!got.contains("EXISTS"), "{got}");
    let got = messages(&mut client, "Sent").await;
    assert!(got.contains("MESSAGES 3"), "{got}");
    server.stop();
}
