//! Sessions end to end: `serve()` over loopback TCP against a store in a
//! temporary directory, one test per finding of REVIEW.md that shows on the
//! wire. Each test names the finding it pins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postern_imap::{
    ImapConfig, ImapContext, LoginThrottle, ThrottleConfig, UserLimits, UserLimitsConfig, serve,
};
use store::{Intent, Store, StoreConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";
/// How long a test waits for one response line before it fails.
const RESPONSE_WAIT: Duration = Duration::from_secs(20);

/// A store in a fresh directory and an IMAP listener on a loopback port.
struct Server {
    store: Store,
    address: SocketAddr,
    directory: PathBuf,
    shutdown: watch::Sender<bool>,
}

impl Server {
    async fn start() -> Server {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let directory = std::env::temp_dir().join(format!(
            "postern-imap-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&directory);
        let store = Store::open(StoreConfig::new(directory.clone())).unwrap();
        let hash = store::password::hash(PASSWORD).unwrap();
        store
            .submit_one(Intent::AddUser {
                user: USER.into(),
                password_hash: hash,
            })
            .await
            .unwrap();
        let context = Arc::new(ImapContext {
            config: ImapConfig::default(),
            store: store.clone(),
            tls: None,
            throttle: Arc::new(LoginThrottle::new(ThrottleConfig::default())),
            users: Arc::new(UserLimits::new(UserLimitsConfig::default())),
            metrics: Default::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (shutdown, receiver) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let conn = postern_imap::Conn::Plain(stream);
                tokio::spawn(serve(conn, peer, context.clone(), receiver.clone()));
            }
        });
        Server {
            store,
            address,
            directory,
            shutdown,
        }
    }

    async fn connect(&self) -> Client {
        let stream = tokio::net::TcpStream::connect(self.address).await.unwrap();
        let (reader, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::new(reader),
            writer,
        };
        let greeting = client.line().await;
        assert!(greeting.starts_with("* OK"), "{greeting}");
        client
    }

    async fn logged_in(&self) -> Client {
        let mut client = self.connect().await;
        client
            .ok("l", &format!("LOGIN {USER} \"{PASSWORD}\""))
            .await;
        client
    }

    fn stop(self) {
        drop(self);
    }
}

/// Also when a test fails, so no temporary directory is left behind.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.store.shutdown();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// One response line, with the literals it announces appended; empty at EOF.
    async fn line(&mut self) -> String {
        let mut line = Vec::new();
        loop {
            let before = line.len();
            let read =
                tokio::time::timeout(RESPONSE_WAIT, self.reader.read_until(b'\n', &mut line))
                    .await
                    .expect("the server answered in time");
            // A reset after the server's BYE counts as the end, like EOF.
            if read.is_err() || line.len() == before {
                break;
            }
            let Some(size) = literal_size(&line) else {
                break;
            };
            let mut literal = vec![0; size];
            self.reader.read_exact(&mut literal).await.unwrap();
            line.extend_from_slice(&literal);
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Sends `tag command` and returns every response up to and including the
    /// tagged one.
    async fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until_tagged(tag).await
    }

    async fn until_tagged(&mut self, tag: &str) -> String {
        let mut all = String::new();
        loop {
            let line = self.line().await;
            assert!(!line.is_empty(), "connection closed; so far: {all}");
            all.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                return all;
            }
        }
    }

    /// As [`Client::command`], and the command must succeed.
    async fn ok(&mut self, tag: &str, command: &str) -> String {
        let all = self.command(tag, command).await;
        assert!(all.contains(&format!("{tag} OK")), "{command}: {all}");
        all
    }

    async fn append(&mut self, tag: &str, mailbox: &str, message: &str) {
        self.send(format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).as_bytes())
            .await;
        self.send(message.as_bytes()).await;
        self.send(b"\r\n").await;
        let all = self.until_tagged(tag).await;
        assert!(all.contains(&format!("{tag} OK")), "{all}");
    }

    /// Reads until the server closes the connection; returns what it said.
    async fn rest(&mut self) -> String {
        let mut all = String::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                return all;
            }
            all.push_str(&line);
        }
    }
}

/// `n` of a line ending in `{n}\r\n` (a literal follows).
fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

fn message(subject: &str, body: &str) -> String {
    format!(
        "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
}

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
