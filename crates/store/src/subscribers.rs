//! Status-page subscribers and the notice outbox, as tables of `server.sqlite`.
//!
//! Derived from the journal like the rest of the directory. The outbox is
//! deterministic from journal order: a status post (`StatusOpened` or
//! `StatusPosted` that is not an import) adds one `queued` notice for every
//! subscriber active at that point of the journal, and `NoticeSent`,
//! `NoticeRetry` and `NoticeFailed` move it on. Replaying the journal after a
//! restart therefore rebuilds exactly the notices still to send, and a notice
//! whose `NoticeSent` was committed is never queued again.

use crate::error::Result;
use crate::record::{Lsn, Record};
use rusqlite::{Connection, OptionalExtension, params};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS status_subscribers (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    confirm_hash TEXT UNIQUE,
    unsubscribe_token TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    confirmed INTEGER,
    UNIQUE (kind, address)
);
CREATE TABLE IF NOT EXISTS status_subscribe_log (id INTEGER PRIMARY KEY, address TEXT NOT NULL,
    ip TEXT, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS status_subscribe_log_at ON status_subscribe_log (at);
CREATE TABLE IF NOT EXISTS status_notices (
    post INTEGER NOT NULL,
    subscriber INTEGER NOT NULL,
    incident INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    reason TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (post, subscriber)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS status_notices_due ON status_notices (state, not_before);
";

/// How long a confirmation link works.
pub const CONFIRM_SECONDS_MAX: i64 = 48 * 3600;

/// One subscriber, as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subscriber {
    pub id: u64,
    /// `email` or `sms`.
    pub kind: String,
    pub address: String,
    /// `pending` or `active`.
    pub state: String,
    pub created: i64,
    pub confirmed: Option<i64>,
    #[serde(skip)]
    pub unsubscribe_token: String,
}

const SUBSCRIBER_COLUMNS: &str = "id, kind, address, state, created, confirmed, unsubscribe_token";

fn subscriber_from_row(r: &rusqlite::Row) -> rusqlite::Result<Subscriber> {
    Ok(Subscriber {
        id: r.get::<_, i64>(0)? as u64,
        kind: r.get(1)?,
        address: r.get(2)?,
        state: r.get(3)?,
        created: r.get(4)?,
        confirmed: r.get(5)?,
        unsubscribe_token: r.get(6)?,
    })
}

/// One notice of the outbox, with what the sender needs to send it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Notice {
    pub post: u64,
    pub subscriber: u64,
    pub incident: u64,
    /// `queued`, `sent` or `failed`.
    pub state: String,
    pub attempts: u32,
    pub not_before: i64,
    pub reason: String,
    pub kind: String,
    pub address: String,
    #[serde(skip)]
    pub unsubscribe_token: String,
}

/// Applies a subscriber or notice record, and queues the notices of a post.
pub(crate) fn apply(conn: &Connection, lsn: Lsn, record: &Record) -> Result<()> {
    match record {
        Record::StatusOpened {
            incident,
            at,
            fingerprint: None,
            ..
        } => queue_post(conn, *incident, *incident, *at)?,
        Record::StatusPosted {
            incident,
            post,
            at,
            fingerprint: None,
            ..
        } => queue_post(conn, *post, *incident, *at)?,
        Record::SubscriberAdded {
            id,
            kind,
            address,
            confirm_hash,
            unsubscribe_token,
            ip,
            at,
        } => {
            let state = if confirm_hash.is_some() {
                "pending"
            } else {
                "active"
            };
            // A new entry for the same address replaces a pending one; the
            // writer never adds one over an active subscriber.
            conn.prepare_cached("DELETE FROM status_subscribers WHERE kind = ?1 AND address = ?2")?
                .execute(params![kind, address])?;
            conn.prepare_cached(
                "INSERT INTO status_subscribers (id, kind, address, state, confirm_hash,
                     unsubscribe_token, created, confirmed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?4 = 'active' THEN ?7 END)",
            )?
            .execute(params![
                *id as i64,
                kind,
                address,
                state,
                confirm_hash,
                unsubscribe_token,
                at
            ])?;
            // Pending subscribers whose link expired are dead weight (they
            // no longer count against the cap either); drop them here, at a
            // point of the journal, so a replay drops the same ones.
            conn.prepare_cached(
                "DELETE FROM status_subscribers WHERE state = 'pending' AND created < ?1",
            )?
            .execute([at - CONFIRM_SECONDS_MAX])?;
            if confirm_hash.is_some() {
                // The hourly caps look an hour back; older entries are dead weight.
                conn.prepare_cached("DELETE FROM status_subscribe_log WHERE at < ?1")?
                    .execute([at - 3600])?;
                conn.prepare_cached(
                    "INSERT INTO status_subscribe_log (address, ip, at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![address, ip, at])?;
            }
        }
        Record::SubscriberConfirmed { id, at } => {
            conn.prepare_cached(
                "UPDATE status_subscribers SET state = 'active', confirm_hash = NULL,
                     confirmed = ?2 WHERE id = ?1",
            )?
            .execute(params![*id as i64, at])?;
        }
        Record::SubscriberRemoved { id, .. } => {
            conn.prepare_cached("DELETE FROM status_subscribers WHERE id = ?1")?
                .execute([*id as i64])?;
            conn.prepare_cached(
                "DELETE FROM status_notices WHERE subscriber = ?1 AND state = 'queued'",
            )?
            .execute([*id as i64])?;
        }
        Record::NoticeSent {
            post,
            subscriber,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE status_notices SET state = 'sent', reason = '', updated = ?3
                 WHERE post = ?1 AND subscriber = ?2",
            )?
            .execute(params![*post as i64, *subscriber as i64, at])?;
        }
        Record::NoticeRetry {
            post,
            subscriber,
            not_before,
            reason,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE status_notices SET attempts = attempts + 1, not_before = ?3,
                     reason = ?4, updated = ?5
                 WHERE post = ?1 AND subscriber = ?2 AND state = 'queued'",
            )?
            .execute(params![
                *post as i64,
                *subscriber as i64,
                not_before,
                reason,
                at
            ])?;
        }
        Record::NoticeFailed {
            post,
            subscriber,
            reason,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE status_notices SET state = 'failed', attempts = attempts + 1,
                     reason = ?3, updated = ?4
                 WHERE post = ?1 AND subscriber = ?2",
            )?
            .execute(params![*post as i64, *subscriber as i64, reason, at])?;
        }
        _ => {}
    }
    let _ = lsn;
    Ok(())
}

/// One queued notice per subscriber active now (in journal order).
fn queue_post(conn: &Connection, post: u64, incident: u64, at: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO status_notices (post, subscriber, incident, state, attempts, not_before,
             reason, updated)
         SELECT ?1, id, ?2, 'queued', 0, ?3, '', ?3 FROM status_subscribers WHERE state = 'active'
         ON CONFLICT DO NOTHING",
    )?
    .execute(params![post as i64, incident as i64, at])?;
    Ok(())
}

pub fn subscriber(conn: &Connection, id: u64) -> Result<Option<Subscriber>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers WHERE id = ?1"
        ))?
        .query_row([id as i64], subscriber_from_row)
        .optional()?)
}

pub fn subscriber_by_address(
    conn: &Connection,
    kind: &str,
    address: &str,
) -> Result<Option<Subscriber>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers WHERE kind = ?1 AND address = ?2"
        ))?
        .query_row(params![kind, address], subscriber_from_row)
        .optional()?)
}

/// The pending subscriber whose confirmation token has this SHA-256.
pub fn subscriber_by_confirm_hash(conn: &Connection, hash: &str) -> Result<Option<Subscriber>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers WHERE confirm_hash = ?1"
        ))?
        .query_row([hash], subscriber_from_row)
        .optional()?)
}

pub fn subscriber_by_unsubscribe_token(
    conn: &Connection,
    token: &str,
) -> Result<Option<Subscriber>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers WHERE unsubscribe_token = ?1"
        ))?
        .query_row([token], subscriber_from_row)
        .optional()?)
}

/// Every subscriber, oldest first, at most `max`.
pub fn subscribers(conn: &Connection, max: usize) -> Result<Vec<Subscriber>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM status_subscribers ORDER BY id LIMIT ?1"
    ))?;
    let rows = stmt.query_map([max as i64], subscriber_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Subscribers that count against the total cap: active ones and pending
/// ones whose link still works at `now`.
pub fn subscriber_count(conn: &Connection, now: i64) -> Result<u64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM status_subscribers WHERE state = 'active' OR created >= ?1",
        )?
        .query_row([now - CONFIRM_SECONDS_MAX], |r| r.get::<_, i64>(0))? as u64)
}

/// Subscriptions asked for from the web since `since`: for `address`, and from `ip`.
pub fn subscribe_requests_since(
    conn: &Connection,
    address: &str,
    ip: Option<&str>,
    since: i64,
) -> Result<(u64, u64)> {
    let count = |sql: &str, value: &str| -> Result<u64> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row(params![value, since], |r| r.get::<_, i64>(0))? as u64)
    };
    let by_address = count(
        "SELECT COUNT(*) FROM status_subscribe_log WHERE address = ?1 AND at >= ?2",
        address,
    )?;
    let by_ip = match ip {
        Some(ip) => count(
            "SELECT COUNT(*) FROM status_subscribe_log WHERE ip = ?1 AND at >= ?2",
            ip,
        )?,
        None => 0,
    };
    Ok((by_address, by_ip))
}

const NOTICE_COLUMNS: &str = "n.post, n.subscriber, n.incident, n.state, n.attempts, n.not_before,
    n.reason, s.kind, s.address, s.unsubscribe_token";

fn notice_from_row(r: &rusqlite::Row) -> rusqlite::Result<Notice> {
    Ok(Notice {
        post: r.get::<_, i64>(0)? as u64,
        subscriber: r.get::<_, i64>(1)? as u64,
        incident: r.get::<_, i64>(2)? as u64,
        state: r.get(3)?,
        attempts: r.get::<_, i64>(4)?.clamp(0, i64::from(u32::MAX)) as u32,
        not_before: r.get(5)?,
        reason: r.get(6)?,
        kind: r.get(7)?,
        address: r.get(8)?,
        unsubscribe_token: r.get(9)?,
    })
}

/// Queued notices due at `now`, in journal order of their posts.
pub fn notices_due(conn: &Connection, now: i64, max: usize) -> Result<Vec<Notice>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {NOTICE_COLUMNS} FROM status_notices n JOIN status_subscribers s ON s.id = n.subscriber
         WHERE n.state = 'queued' AND n.not_before <= ?1 ORDER BY n.post, n.subscriber LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, max as i64], notice_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The earliest time a queued notice is due, if any is queued.
pub fn next_notice_due(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(not_before) FROM status_notices WHERE state = 'queued'")?
        .query_row([], |r| r.get::<_, Option<i64>>(0))?)
}

/// One notice (its subscriber may be gone: then `None`).
pub fn notice(conn: &Connection, post: u64, subscriber: u64) -> Result<Option<Notice>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {NOTICE_COLUMNS} FROM status_notices n JOIN status_subscribers s ON s.id = n.subscriber
             WHERE n.post = ?1 AND n.subscriber = ?2"
        ))?
        .query_row(params![post as i64, subscriber as i64], notice_from_row)
        .optional()?)
}
