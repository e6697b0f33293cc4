//! The async driver end to end: `serve()` over an in-memory duplex stream with
//! an in-memory target, the way the server runs it over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_delivery::{
    DeliverError, DeliveryTarget, Envelope, LmtpConfig, ResolveError, UserName, serve,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Users `alice` and `bob`, alias `team` for both; keeps every message it is
/// given, per user.
#[derive(Default)]
struct MemoryTarget {
    mailboxes: Mutex<HashMap<UserName, Vec<Vec<u8>>>>,
}

impl MemoryTarget {
    fn messages(&self, user: &str) -> Vec<Vec<u8>> {
        self.mailboxes
            .lock()
            .unwrap()
            .get(user)
            .cloned()
            .unwrap_or_default()
    }
}

impl DeliveryTarget for MemoryTarget {
    async fn resolve(&self, address: &str) -> Result<Vec<UserName>, ResolveError> {
        match address {
            "alice@example.org" => Ok(vec!["alice".into()]),
            "bob@example.org" => Ok(vec!["bob".into()]),
            "team@example.org" => Ok(vec!["alice".into(), "bob".into()]),
            _ => Err(ResolveError::UnknownUser),
        }
    }

    async fn deliver(
        &self,
        message: Vec<u8>,
        users: Vec<UserName>,
        _envelope: Envelope,
    ) -> Vec<Result<(), DeliverError>> {
        let mut mailboxes = self.mailboxes.lock().unwrap();
        users
            .into_iter()
            .map(|user| {
                mailboxes.entry(user).or_default().push(message.clone());
                Ok(())
            })
            .collect()
    }
}

/// The client end of a running session.
struct Client {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    server: JoinHandle<std::io::Result<()>>,
    target: Arc<MemoryTarget>,
    shutdown: watch::Sender<bool>,
}

impl Client {
    async fn start(config: LmtpConfig) -> Client {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let target = Arc::new(MemoryTarget::default());
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let server = tokio::spawn(serve(
            server,
            peer,
            Arc::new(config),
            Arc::clone(&target),
            shutdown_receiver,
        ));
        let (reader, writer) = tokio::io::split(client);
        Client {
            reader: BufReader::new(reader),
            writer,
            server,
            target,
            shutdown,
        }
    }

    /// Starts a session and says LHLO, checking greeting and reply.
    async fn ready(config: LmtpConfig) -> Client {
        let mut client = Client::start(config).await;
        assert_eq!(
            client.replies(1).await,
            ["220 mx.example.org LMTP Postern ready"]
        );
        client.send(b"LHLO client.example.org\r\n").await;
        assert_eq!(
            client.replies(1).await.last().unwrap(),
            "250 ENHANCEDSTATUSCODES"
        );
        client
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Reads `count` complete replies (a multi-line reply counts once) and
    /// returns all their lines without CRLF.
    async fn replies(&mut self, count: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut complete = 0;
        while complete < count {
            let mut line = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                    .await
                    .expect("reply timed out")
                    .unwrap();
            assert!(read > 0, "connection closed after {lines:?}");
            let line = line
                .strip_suffix("\r\n")
                .expect("reply ends in CRLF")
                .to_string();
            if line.as_bytes().get(3) != Some(&b'-') {
                complete += 1;
            }
            lines.push(line);
        }
        lines
    }

    /// Expects the server to close the connection and `serve` to return Ok.
    async fn expect_closed(mut self) {
        let mut rest = String::new();
        let read = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut rest))
            .await
            .expect("close timed out")
            .unwrap();
        assert_eq!(read, 0, "unexpected {rest:?}");
        self.server.await.unwrap().unwrap();
    }
}

fn config() -> LmtpConfig {
    LmtpConfig {
        hostname: "mx.example.org".to_string(),
        ..LmtpConfig::default()
    }
}

/// The body as stored, after our trace headers (which end with the date line).
fn body(message: &[u8]) -> &[u8] {
    let start = message
        .windows(7)
        .position(|w| w == b"+0000\r\n")
        .expect("date line")
        + 7;
    &message[start..]
}

#[tokio::test]
async fn pipelined_transaction_with_unknown_recipient() {
    let mut client = Client::ready(config()).await;
    client
        .send(
            b"MAIL FROM:<sender@remote.org>\r\nRCPT TO:<alice@example.org>\r\n\
              RCPT TO:<ghost@example.org>\r\nRCPT TO:<team@example.org>\r\nDATA\r\n\
              Subject: test\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        )
        .await;
    assert_eq!(
        client.replies(8).await,
        [
            "250 2.1.0 <sender@remote.org> sender ok",
            "250 2.1.5 <alice@example.org> ok",
            "550 5.1.1 <ghost@example.org> user unknown",
            "250 2.1.5 <team@example.org> ok",
            "354 start mail input; end with <CRLF>.<CRLF>",
            "250 2.0.0 <alice@example.org> delivered",
            "250 2.0.0 <team@example.org> delivered",
            "221 2.0.0 mx.example.org closing connection",
        ]
    );
    let target = Arc::clone(&client.target);
    client.expect_closed().await;
    // alice was named twice (directly and by the alias) and got one copy.
    let alice = target.messages("alice");
    assert_eq!(alice.len(), 1);
    assert_eq!(target.messages("bob"), alice);
    let text = String::from_utf8(alice[0].clone()).unwrap();
    assert!(text.starts_with(
        "Return-Path: <sender@remote.org>\r\nReceived: from client.example.org (192.0.2.7)\r\n\
         \tby mx.example.org (Postern) with LMTP id "
    ));
    assert_eq!(body(&alice[0]), b"Subject: test\r\n\r\nhello\r\n");
}

#[tokio::test]
async fn size_limit_then_next_transaction() {
    let mut client = Client::ready(LmtpConfig {
        message_bytes_max: 1000,
        ..config()
    })
    .await;
    let big = format!(
        "MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n{}\r\n.\r\n",
        "x".repeat(5000)
    );
    client.send(big.as_bytes()).await;
    assert_eq!(
        &client.replies(6).await[4..],
        [
            "552 5.3.4 <alice@example.org> message too big",
            "552 5.3.4 <bob@example.org> message too big",
        ]
    );
    client
        .send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nsmall\r\n.\r\n")
        .await;
    assert_eq!(
        client.replies(4).await[3],
        "250 2.0.0 <alice@example.org> delivered"
    );
    assert_eq!(client.target.messages("alice").len(), 1);
}

#[tokio::test]
async fn dot_stuffing_round_trip() {
    let original: &[u8] = b".starts with a dot\r\n..two dots\r\n.\r\n.\r\nend\r\n";
    // What a client sends: every line that starts with a dot gets one more.
    let mut stuffed = Vec::new();
    for line in original.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            stuffed.push(b'.');
        }
        stuffed.extend_from_slice(line);
    }
    let mut client = Client::ready(config()).await;
    client
        .send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    client.send(&stuffed).await;
    client.send(b".\r\n").await;
    assert_eq!(
        client.replies(4).await[3],
        "250 2.0.0 <alice@example.org> delivered"
    );
    assert_eq!(body(&client.target.messages("alice")[0]), original);
}

#[tokio::test]
async fn bare_lf_lines_are_kept() {
    // Bare LFs inside the data are content, and `\n.\n` does not end it:
    // the message ends at the first <CRLF>.<CRLF>.
    let mut client = Client::ready(config()).await;
    client
        .send(b"MAIL FROM:<>\nRCPT TO:<alice@example.org>\nDATA\nSubject: lf\n\nbody\n.\nNOOP\n")
        .await;
    assert_eq!(
        client.replies(3).await[2],
        "354 start mail input; end with <CRLF>.<CRLF>"
    );
    client.send(b"\r\n.\r\nNOOP\n").await;
    assert_eq!(
        client.replies(2).await,
        ["250 2.0.0 <alice@example.org> delivered", "250 2.0.0 ok"]
    );
    let alice = client.target.messages("alice");
    assert_eq!(alice.len(), 1);
    assert_eq!(body(&alice[0]), b"Subject: lf\n\nbody\n.\nNOOP\n\r\n");
}

/// SMTP smuggling (tests/e2e/BUGS.md, entry 7): each separator below, inside
/// the data and followed by a second transaction, ends nothing. The carrier
/// is one message holding the would-be commands; nobody else gets mail and
/// the command after the real end is answered as itself.
#[tokio::test]
async fn smuggled_end_markers_are_content() {
    let cases: [(&[u8], &[u8]); 5] = [
        (b"\n.\n", b"\n.\n"),
        (b"\n.\r\n", b"\n.\r\n"),
        // The dot follows a CRLF: dot-stuffing, removed.
        (b"\r\n.\n", b"\r\n\n"),
        (b"\r.\r\n", b"\r.\r\n"),
        (b"\r\n.\r", b"\r\n\r"),
    ];
    for (n, (separator, stored_separator)) in cases.into_iter().enumerate() {
        let carrier = format!("From: carrier@example.org\r\nSubject: carrier {n}\r\n\r\nhello");
        let smuggled = format!(
            "MAIL FROM:<evil@example.net>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n\
             Subject: smuggled {n}\r\n\r\nevil\r\n"
        );
        let mut client = Client::ready(config()).await;
        let input = [
            b"MAIL FROM:<carrier@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n",
            carrier.as_bytes(),
            separator,
            smuggled.as_bytes(),
            b".\r\nXPROBE\r\n",
        ]
        .concat();
        client.send(&input).await;
        assert_eq!(
            client.replies(5).await,
            [
                "250 2.1.0 <carrier@example.org> sender ok",
                "250 2.1.5 <alice@example.org> ok",
                "354 start mail input; end with <CRLF>.<CRLF>",
                "250 2.0.0 <alice@example.org> delivered",
                "500 5.5.2 command not recognized",
            ],
            "separator {separator:?}"
        );
        client.send(b"QUIT\r\n").await;
        assert_eq!(
            client.replies(1).await,
            ["221 2.0.0 mx.example.org closing connection"]
        );
        let target = Arc::clone(&client.target);
        client.expect_closed().await;
        let alice = target.messages("alice");
        assert_eq!(alice.len(), 1, "separator {separator:?}");
        let expected = [carrier.as_bytes(), stored_separator, smuggled.as_bytes()].concat();
        assert_eq!(
            body(&alice[0]),
            expected.as_slice(),
            "separator {separator:?}"
        );
        assert!(target.messages("bob").is_empty(), "separator {separator:?}");
    }
}

#[tokio::test]
async fn nul_bytes_and_huge_header_line_are_byte_exact() {
    let mut content = b"X-Long: ".to_vec();
    content.extend(std::iter::repeat_n(b'a', 2 * 1024 * 1024));
    content.extend_from_slice(b"\r\nX-Nul: \0\0\r\n\r\n\0binary\xff\xfe\0\r\n");
    let mut client = Client::ready(config()).await;
    client
        .send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    assert_eq!(
        client.replies(3).await[2],
        "354 start mail input; end with <CRLF>.<CRLF>"
    );
    // Write from another task: the body is larger than the pipe, and the
    // server may answer while the client is still writing.
    let mut writer = client.writer;
    let writing = tokio::spawn(async move {
        writer.write_all(&content).await.unwrap();
        writer.write_all(b".\r\n").await.unwrap();
        (writer, content)
    });
    let mut reply = String::new();
    client.reader.read_line(&mut reply).await.unwrap();
    assert_eq!(reply, "250 2.0.0 <alice@example.org> delivered\r\n");
    let (_, content) = writing.await.unwrap();
    assert_eq!(
        body(&client.target.messages("alice")[0]),
        content.as_slice()
    );
}

#[tokio::test]
async fn long_command_line_is_refused_not_fatal() {
    let mut client = Client::ready(config()).await;
    let long = format!("NOOP {}\r\nNOOP\r\n", "y".repeat(100_000));
    client.send(long.as_bytes()).await;
    assert_eq!(
        client.replies(2).await,
        ["500 5.5.2 line too long", "250 2.0.0 ok"]
    );
}

#[tokio::test]
async fn shutdown_while_idle() {
    let mut client = Client::ready(config()).await;
    client.shutdown.send(true).unwrap();
    assert_eq!(client.replies(1).await, ["421 4.3.2 shutting down"]);
    client.expect_closed().await;
}

#[tokio::test]
async fn shutdown_before_start() {
    let mut client = Client::start(config()).await;
    client.shutdown.send(true).unwrap();
    // The greeting may or may not have gone out before the signal.
    let first = client.replies(1).await;
    if first[0].starts_with("220") {
        assert_eq!(client.replies(1).await, ["421 4.3.2 shutting down"]);
    } else {
        assert_eq!(first, ["421 4.3.2 shutting down"]);
    }
    client.expect_closed().await;
}

#[tokio::test]
async fn shutdown_during_data_delivers_first() {
    let mut client = Client::ready(config()).await;
    client
        .send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nfirst half\r\n")
        .await;
    assert_eq!(
        client.replies(3).await[2],
        "354 start mail input; end with <CRLF>.<CRLF>"
    );
    client.shutdown.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    client.send(b"second half\r\n.\r\nNOOP\r\n").await;
    assert_eq!(
        client.replies(2).await,
        [
            "250 2.0.0 <alice@example.org> delivered",
            "421 4.3.2 shutting down"
        ]
    );
    let target = Arc::clone(&client.target);
    client.expect_closed().await;
    assert_eq!(
        body(&target.messages("alice")[0]),
        b"first half\r\nsecond half\r\n"
    );
}

#[tokio::test]
async fn idle_timeout_closes() {
    let mut client = Client::ready(LmtpConfig {
        idle_timeout: Duration::from_millis(100),
        ..config()
    })
    .await;
    let reply = client.replies(1).await;
    assert!(reply[0].starts_with("421 4.4.2 "), "{reply:?}");
    client.expect_closed().await;
}

#[tokio::test]
async fn client_hangup_ends_quietly() {
    let mut client = Client::ready(config()).await;
    client
        .send(b"MAIL FROM:<>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\npartial")
        .await;
    client.replies(3).await;
    let Client {
        reader,
        writer,
        server,
        target,
        ..
    } = client;
    drop(reader.into_inner().unsplit(writer));
    server.await.unwrap().unwrap();
    // The message never ended, so nothing was stored.
    assert!(target.messages("alice").is_empty());
}

#[tokio::test]
async fn dropped_shutdown_sender_is_not_a_shutdown() {
    let mut client = Client::ready(config()).await;
    // Swap in a fresh sender so the one serve() watches is dropped.
    drop(std::mem::replace(
        &mut client.shutdown,
        watch::channel(false).0,
    ));
    client.send(b"NOOP\r\nQUIT\r\n").await;
    assert_eq!(client.replies(2).await[0], "250 2.0.0 ok");
    client.expect_closed().await;
}

fn smtp_config(greeting_delay: Duration) -> LmtpConfig {
    LmtpConfig {
        protocol: postern_delivery::Protocol::Smtp,
        local_domains: vec!["example.org".to_string()],
        greeting_delay,
        ..config()
    }
}

#[tokio::test]
async fn smtp_early_talker_gets_554_and_the_close() {
    let mut client = Client::start(smtp_config(Duration::from_millis(200))).await;
    client.send(b"EHLO impatient.example\r\n").await;
    let replies = client.replies(1).await;
    assert!(
        replies[0].starts_with("554 5.5.0 mx.example.org "),
        "{replies:?}"
    );
    client.expect_closed().await;
}

#[tokio::test]
async fn smtp_patient_client_is_greeted_after_the_delay() {
    let started = std::time::Instant::now();
    let mut client = Client::start(smtp_config(Duration::from_millis(100))).await;
    assert_eq!(
        client.replies(1).await,
        ["220 mx.example.org ESMTP Postern ready"]
    );
    assert!(started.elapsed() >= Duration::from_millis(100));
    client
        .send(b"EHLO c.example\r\nMAIL FROM:<s@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    let replies = client.replies(4).await;
    // Without a TLS acceptor STARTTLS is not offered.
    assert!(
        !replies.iter().any(|line| line.contains("STARTTLS")),
        "{replies:?}"
    );
    assert_eq!(
        replies.last().unwrap(),
        "354 start mail input; end with <CRLF>.<CRLF>"
    );
    client
        .send(b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        .await;
    let replies = client.replies(2).await;
    assert!(replies[0].ends_with(" message accepted"), "{replies:?}");
    assert_eq!(client.target.messages("alice").len(), 1);
    client.expect_closed().await;
}
