//! The harness of the session tests: a store in a temporary directory, an
//! IMAP listener on a loopback port, and a line-oriented client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub use postern_imap::ImapConfig;
use postern_imap::{
    ImapContext, LoginThrottle, ThrottleConfig, UserLimits, UserLimitsConfig, serve,
};
pub use store::{Intent, Store, StoreConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse";
/// How long a test waits for one response line before it fails.
pub const RESPONSE_WAIT: Duration = Duration::from_secs(20);

/// A store in a fresh directory and an IMAP listener on a loopback port.
pub struct Server {
    pub store: Store,
    pub address: SocketAddr,
    pub directory: PathBuf,
    pub shutdown: watch::Sender<bool>,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(ImapConfig::default()).await
    }

    /// As [`Server::start`], with the given session settings.
    pub async fn start_with(config: ImapConfig) -> Server {
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
            config,
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

    pub async fn connect(&self) -> Client {
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

    pub async fn logged_in(&self) -> Client {
        let mut client = self.connect().await;
        client
            .ok("l", &format!("LOGIN {USER} \"{PASSWORD}\""))
            .await;
        client
    }

    pub fn stop(self) {
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

pub struct Client {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Client {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
    }

    /// One response line, with the literals it announces appended; empty at EOF.
    pub async fn line(&mut self) -> String {
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
    pub async fn command(&mut self, tag: &str, command: &str) -> String {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.until_tagged(tag).await
    }

    pub async fn until_tagged(&mut self, tag: &str) -> String {
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
    pub async fn ok(&mut self, tag: &str, command: &str) -> String {
        let all = self.command(tag, command).await;
        assert!(all.contains(&format!("{tag} OK")), "{command}: {all}");
        all
    }

    pub async fn append(&mut self, tag: &str, mailbox: &str, message: &str) {
        self.send(format!("{tag} APPEND {mailbox} {{{}+}}\r\n", message.len()).as_bytes())
            .await;
        self.send(message.as_bytes()).await;
        self.send(b"\r\n").await;
        let all = self.until_tagged(tag).await;
        assert!(all.contains(&format!("{tag} OK")), "{all}");
    }

    /// Reads until the server closes the connection; returns what it said.
    pub async fn rest(&mut self) -> String {
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
pub fn literal_size(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?;
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    std::str::from_utf8(&inner[open + 1..]).ok()?.parse().ok()
}

pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: bob@example.org\r\nTo: alice@example.org\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    )
}
