//! Seeing what other nodes commit: a session on node A waits on its user's
//! counter in the node's `Notifier` (IDLE, NOTIFY); node B's commits must
//! bump it too. Two paths, so that one lost is only slower:
//!
//! - **NOTIFY.** After each commit, the writer sends the keys it touched
//!   (user names, and the senders' keys of the server-wide state) on the
//!   channel `postern_changes`, in one statement of its own with
//!   `synchronous_commit = off`. Never inside the mail transaction: a
//!   transaction that notifies takes a cluster-wide lock at commit, which
//!   would serialise every delivery (docs/design/postgres-cluster.md, 6.2).
//!   Each node holds one dedicated connection that LISTENs and bumps the
//!   counters it hears of: milliseconds.
//! - **The poll.** Every second, each node reads `users.last_seq` of the
//!   users someone waits on here, and `server_stream.last_seq`, and bumps
//!   whatever moved: at most a second, whatever happened to a notification
//!   (a node that died between its commit and its notify, a LISTEN
//!   connection that was down). A user first seen by the poll counts as
//!   moved: its watcher may have started after a change it missed.
//!
//! A bump only makes a session look again at what the database holds: an
//! extra one costs a query, a missed one a second.

use crate::error::Result;
use crate::notify::Notifier;
use crate::pg::db_error;
use crate::writer::{NOTICE_WATCH_KEY, SMS_WATCH_KEY};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::AsyncMessage;

/// The channel every node listens on.
const CHANNEL: &str = "postern_changes";
/// The key a `user move` announces when a user's mail changed shards
/// (followed by the name): nodes drop their cached route and wake the
/// user's sessions, which then find the mail moved.
pub(crate) const MOVED_KEY: &str = "\0moved:";

/// What a node does when it learns that a user moved (`pg::shards`).
pub(crate) type OnMoved = Arc<dyn Fn(&str) + Send + Sync>;

/// A NOTIFY payload must stay under 8000 bytes.
const PAYLOAD_BYTES_MAX: usize = 7000;
/// How often the poll looks.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for the LISTEN connection to be made, and for one poll.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait before the LISTEN connection is tried again.
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// A watch key as sent: text in PostgreSQL holds no NUL, which starts the
/// senders' keys, so it travels as \u{1}.
fn encode(key: &str) -> String {
    key.replace('\0', "\u{1}")
}

fn decode(key: &str) -> String {
    key.replace('\u{1}', "\0")
}

/// The keys, one per line, in payloads under PostgreSQL's bound.
fn payloads(keys: &[String]) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for key in keys {
        let key = encode(key);
        if key.is_empty() || key.len() > PAYLOAD_BYTES_MAX {
            continue;
        }
        match payloads.last_mut() {
            Some(payload) if payload.len() + key.len() < PAYLOAD_BYTES_MAX => {
                payload.push('\n');
                payload.push_str(&key);
            }
            _ => payloads.push(key),
        }
    }
    payloads
}

/// Tells every node which keys a commit touched.
pub(crate) async fn announce(client: &tokio_postgres::Client, keys: &[String]) -> Result<()> {
    let payloads = payloads(keys);
    if payloads.is_empty() {
        return Ok(());
    }
    // One statement, so one implicit transaction whose commit waits for no
    // disk and no standby (set_config(..., true) is SET LOCAL).
    client
        .execute(
            "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, p)
             FROM unnest($2::text[]) AS p",
            &[&CHANNEL, &payloads],
        )
        .await
        .map(|_| ())
        .map_err(|e| db_error("announce a change", &e))
}

/// Listens for other nodes' changes and polls as the fallback, until
/// `stop` turns true. Runs on the backend's runtime.
pub(crate) async fn run(
    dsn: tokio_postgres::Config,
    tls: crate::pg::Tls,
    pool: deadpool_postgres::Pool,
    notifier: Arc<Notifier>,
    moved: OnMoved,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let poll = tokio::spawn(poll(pool, notifier.clone(), moved.clone(), stop.clone()));
    let mut backoff = Duration::from_millis(100);
    let mut again = false;
    loop {
        let since = std::time::Instant::now();
        match listen(&dsn, &tls, &notifier, &moved, &mut stop, again).await {
            Ok(()) => break,
            Err(e) => {
                if since.elapsed() > RECONNECT_MAX {
                    // It had worked for a while: try again soon.
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(event = "postgres_listen_lost", error = %e, retry_ms = backoff.as_millis() as u64, "not hearing other nodes' changes; polling meanwhile");
            }
        }
        again = true;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
    poll.abort();
}

/// One LISTEN connection, until it fails (`Err`) or `stop` (`Ok`).
async fn listen(
    dsn: &tokio_postgres::Config,
    tls: &crate::pg::Tls,
    notifier: &Notifier,
    moved: &OnMoved,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    reconnected: bool,
) -> Result<()> {
    // Bounded: a frozen server accepts the TCP connection and never answers.
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, dsn.connect(tls.clone()))
        .await
        .map_err(|_| {
            crate::error::StoreError::new(
                crate::error::ErrorKind::Unavailable,
                "PostgreSQL did not answer the LISTEN connection's startup",
            )
        })?
        .map_err(|e| db_error("connect to listen", &e))?;
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if heard.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(event = "postgres_listen_error", error = %e);
                    return;
                }
                None => return,
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(|e| db_error("listen", &e));
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    tracing::info!(event = "postgres_listening", "hearing other nodes' changes");
    if reconnected {
        // What was sent while this node was not listening is lost: everyone
        // waiting here looks again, now that nothing more can be missed.
        for key in notifier.watched() {
            notifier.notify(&key);
        }
    }
    let result = loop {
        tokio::select! {
            payload = hearing.recv() => match payload {
                Some(payload) => {
                    for key in payload.split('\n').filter(|k| !k.is_empty()) {
                        let key = decode(key);
                        match key.strip_prefix(MOVED_KEY) {
                            Some(user) => moved(user),
                            None => notifier.notify(&key),
                        }
                    }
                }
                None => break Err(crate::error::StoreError::new(
                    crate::error::ErrorKind::Unavailable,
                    "the LISTEN connection closed",
                )),
            },
            _ = stop.changed() => break Ok(()),
        }
    };
    driver.abort();
    result
}

/// Every second: bumps the users waited on here whose `last_seq` moved, and
/// the senders when the server-wide log moved; a user whose account here is
/// no longer served from this database moved away.
async fn poll(
    pool: deadpool_postgres::Pool,
    notifier: Arc<Notifier>,
    moved: OnMoved,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut server_seen: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        let watched: Vec<String> = notifier
            .watched()
            .into_iter()
            .filter(|k| !k.starts_with('\0'))
            .collect();
        seen.retain(|user, _| watched.contains(user));
        // Bounded: a poll that gets no answer (a frozen database) is skipped,
        // and its connection closed rather than given back.
        let Ok(Ok(client)) = tokio::time::timeout(CONNECT_TIMEOUT, pool.get()).await else {
            continue;
        };
        let users = async {
            if watched.is_empty() {
                return Ok(Vec::new());
            }
            client
                .query(
                    "SELECT name, last_seq, state FROM users WHERE name = ANY($1)",
                    &[&watched],
                )
                .await
        };
        let server = client.query_one("SELECT last_seq FROM server_stream WHERE one = 1", &[]);
        let Ok((users, server)) =
            tokio::time::timeout(CONNECT_TIMEOUT, async { tokio::join!(users, server) }).await
        else {
            drop(deadpool_postgres::Object::take(client));
            continue;
        };
        if let Ok(rows) = users {
            for row in rows {
                let (name, seq): (String, i64) = (row.get(0), row.get(1));
                if row.get::<_, &str>(2) == "moved_out" {
                    // Once: its sessions end at their next read.
                    if seen.insert(name.clone(), -1) != Some(-1) {
                        moved(&name);
                    }
                    continue;
                }
                // A user first seen here may have changed after its watcher
                // started and before this poll: that watcher looks again too.
                if seen.insert(name.clone(), seq) != Some(seq) {
                    notifier.notify(&name);
                }
            }
        }
        if let Ok(row) = server {
            let seq: i64 = row.get(0);
            if server_seen.is_some_and(|before| before != seq) {
                notifier.notify(SMS_WATCH_KEY);
                notifier.notify(NOTICE_WATCH_KEY);
            }
            server_seen = Some(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_travel_in_bounded_payloads_and_come_back_whole() {
        let mut keys: Vec<String> = (0..3000).map(|n| format!("user{n}@example.com")).collect();
        keys.push(SMS_WATCH_KEY.to_string());
        let sent = payloads(&keys);
        assert!(sent.len() > 1);
        assert!(
            sent.iter()
                .all(|p| p.len() < PAYLOAD_BYTES_MAX && !p.contains('\0'))
        );
        let heard: Vec<String> = sent
            .iter()
            .flat_map(|p| p.split('\n').map(decode))
            .collect();
        assert_eq!(heard, keys);
    }
}
