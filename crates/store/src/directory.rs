//! The server-wide index (`server.sqlite`): users, aliases and where each blob
//! lives with its reference count. Derived from the journal like the user
//! indexes, with its own `applied_lsn`.

use crate::blobs::BlobLocation;
use crate::error::Result;
use crate::index::open_db;
use crate::record::{Lsn, Record};
use crate::types::BlobHash;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (address TEXT PRIMARY KEY, users TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (
    hash TEXT PRIMARY KEY,
    pack INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    refs INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sms_outbox (
    id INTEGER PRIMARY KEY,
    queued INTEGER NOT NULL,
    to_number TEXT NOT NULL,
    text TEXT NOT NULL,
    purpose TEXT NOT NULL,
    receipt INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    not_before INTEGER NOT NULL,
    reason TEXT NOT NULL,
    smsc_ids TEXT NOT NULL,
    delivery TEXT NOT NULL,
    updated INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sms_outbox_due ON sms_outbox (state, not_before);
CREATE TABLE IF NOT EXISTS sms_smsc_ids (smsc_id TEXT PRIMARY KEY, sms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sms_alert_log (user TEXT NOT NULL, sms INTEGER NOT NULL, queued INTEGER NOT NULL,
    PRIMARY KEY (user, sms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sms_alerts (user TEXT PRIMARY KEY, alert TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS quotas (user TEXT PRIMARY KEY, storage_bytes INTEGER, messages INTEGER);
CREATE TABLE IF NOT EXISTS status_incidents (id INTEGER PRIMARY KEY, created INTEGER NOT NULL,
    last_activity INTEGER NOT NULL, resolved INTEGER, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS status_incidents_created ON status_incidents (created);
CREATE TABLE IF NOT EXISTS status_posts (post INTEGER PRIMARY KEY, incident INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS status_fingerprints (fingerprint TEXT PRIMARY KEY, post INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS status_components (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admin_tokens (name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS spam_blocks (key TEXT PRIMARY KEY, reason TEXT NOT NULL,
    since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS replica_position (one INTEGER PRIMARY KEY CHECK (one = 1),
    source TEXT NOT NULL, upto INTEGER NOT NULL, id_floor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sms_receipts_waiting (smsc_id TEXT PRIMARY KEY, delivered INTEGER NOT NULL,
    detail TEXT NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;
";

/// One SMS of the outbox, as the admin listing and the sender see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sms {
    pub id: u64,
    /// Seconds since the epoch.
    pub queued: i64,
    pub to: String,
    pub text: String,
    pub purpose: String,
    pub receipt: bool,
    /// `queued` (waiting or retrying), `sent`, `failed`, `delivered`, `undelivered`.
    pub state: String,
    /// Send attempts that failed temporarily.
    pub attempts: u32,
    pub not_before: i64,
    /// The last failure's reason (the SMSC's, for `failed`).
    pub reason: String,
    pub smsc_ids: Vec<String>,
    /// The last delivery receipt's detail.
    pub delivery: String,
    pub updated: i64,
}

const SMS_COLUMNS: &str = "id, queued, to_number, text, purpose, receipt, state, attempts, \
    not_before, reason, smsc_ids, delivery, updated";

fn sms_from_row(r: &rusqlite::Row) -> rusqlite::Result<Sms> {
    let smsc_ids: String = r.get(10)?;
    Ok(Sms {
        id: r.get::<_, i64>(0)? as u64,
        queued: r.get(1)?,
        to: r.get(2)?,
        text: r.get(3)?,
        purpose: r.get(4)?,
        receipt: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        not_before: r.get(8)?,
        reason: r.get(9)?,
        smsc_ids: smsc_ids.split_whitespace().map(str::to_string).collect(),
        delivery: r.get(11)?,
        updated: r.get(12)?,
    })
}

/// Queued SMS whose next attempt is due at `now`, oldest first.
pub fn sms_due(conn: &Connection, now: i64, max: usize) -> Result<Vec<Sms>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SMS_COLUMNS} FROM sms_outbox WHERE state = 'queued' AND not_before <= ?1
         ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now, max as i64], sms_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The newest `max` SMS, newest first.
pub fn sms_list(conn: &Connection, max: usize) -> Result<Vec<Sms>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SMS_COLUMNS} FROM sms_outbox ORDER BY id DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![max as i64], sms_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Receipt states that end a message's life without delivery (SMPP 3.4 5.2.28);
/// others (ENROUTE, ACCEPTD, UNKNOWN ...) only update the detail.
const UNDELIVERED_STATES: [&str; 4] = ["UNDELIV", "EXPIRED", "DELETED", "REJECTD"];

/// One segment's receipt applied to its message: delivered wins only from
/// `sent`; a final failure makes the message undelivered; anything else is
/// noted.
fn apply_receipt(
    conn: &Connection,
    sms: i64,
    delivered: bool,
    detail: &str,
    at: i64,
) -> Result<()> {
    let state = detail
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let undelivered = !delivered && UNDELIVERED_STATES.contains(&state.as_str());
    conn.prepare_cached(
        "UPDATE sms_outbox SET
             state = CASE WHEN ?2 AND state = 'sent' THEN 'delivered'
                          WHEN ?3 THEN 'undelivered' ELSE state END,
             delivery = ?4, updated = ?5
         WHERE id = ?1",
    )?
    .execute(params![sms, delivered, undelivered, detail, at])?;
    Ok(())
}

/// SMS alerts queued for `user` at or after `since` (for the hourly cap).
pub fn sms_alerts_since(conn: &Connection, user: &str, since: i64) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM sms_alert_log WHERE user = ?1 AND queued >= ?2")?
        .query_row(params![user, since], |r| r.get(0))?;
    Ok(n as u64)
}

/// A user's own quota (storage bytes, messages); `None` where unset.
pub fn quota(conn: &Connection, user: &str) -> Result<(Option<u64>, Option<u64>)> {
    let row: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached("SELECT storage_bytes, messages FROM quotas WHERE user = ?1")?
        .query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (storage, messages) = row.unwrap_or((None, None));
    Ok((
        storage.map(|v| v.max(0) as u64),
        messages.map(|v| v.max(0) as u64),
    ))
}

/// A user's new-mail alert, if set.
pub fn sms_alert(conn: &Connection, user: &str) -> Result<Option<crate::types::SmsAlert>> {
    let json: Option<String> = conn
        .prepare_cached("SELECT alert FROM sms_alerts WHERE user = ?1")?
        .query_row([user], |r| r.get(0))
        .optional()?;
    match json {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| crate::error::StoreError::corrupt(format!("SMS alert of {user}: {e}"))),
    }
}

pub fn sms(conn: &Connection, id: u64) -> Result<Option<Sms>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SMS_COLUMNS} FROM sms_outbox WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id as i64], sms_from_row).optional()?)
}

pub fn open(path: &Path) -> Result<Connection> {
    open_db(
        path,
        &format!(
            "{SCHEMA}{}{}{}",
            crate::subscribers::SCHEMA,
            crate::metadata::SCHEMA,
            crate::acl::SERVER_SCHEMA
        ),
    )
}

pub fn user_exists(conn: &Connection, name: &str) -> Result<bool> {
    let mut stmt = conn.prepare_cached("SELECT 1 FROM users WHERE name = ?1")?;
    Ok(stmt.exists([name])?)
}

pub fn password_hash(conn: &Connection, name: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT password_hash FROM users WHERE name = ?1")?;
    Ok(stmt.query_row([name], |r| r.get(0)).optional()?)
}

pub fn users(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM users ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn alias(conn: &Connection, address: &str) -> Result<Option<Vec<String>>> {
    let mut stmt = conn.prepare_cached("SELECT users FROM aliases WHERE address = ?1")?;
    let users: Option<String> = stmt.query_row([address], |r| r.get(0)).optional()?;
    Ok(users.map(|u| {
        u.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }))
}

pub fn aliases(conn: &Connection) -> Result<Vec<(String, Vec<String>)>> {
    let mut stmt = conn.prepare_cached("SELECT address, users FROM aliases ORDER BY address")?;
    let rows = stmt.query_map([], |r| {
        let users: String = r.get(1)?;
        Ok((r.get(0)?, users.split(' ').map(str::to_string).collect()))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn blob_location(conn: &Connection, hash: &BlobHash) -> Result<Option<BlobLocation>> {
    let mut stmt = conn.prepare_cached("SELECT pack, offset, length FROM blobs WHERE hash = ?1")?;
    Ok(stmt
        .query_row([hash.to_hex()], |r| {
            Ok(BlobLocation {
                pack: r.get(0)?,
                offset: r.get::<_, i64>(1)? as u64,
                length: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()?)
}

/// Per pack: total bytes of indexed blobs and bytes still referenced.
pub fn pack_usage(conn: &Connection) -> Result<Vec<(u32, u64, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT pack, SUM(length), SUM(CASE WHEN refs > 0 THEN length ELSE 0 END) FROM blobs GROUP BY pack ORDER BY pack",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, i64>(2)? as u64,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Rows of `blobs` (hash, pack, offset, length, refs) selected by `sql`;
/// a hash that is not hex (damage) is skipped.
fn blob_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(BlobHash, BlobLocation, i64)>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((
            r.get::<_, String>(0)?,
            BlobLocation {
                pack: r.get(1)?,
                offset: r.get::<_, i64>(2)? as u64,
                length: r.get::<_, i64>(3)? as u64,
            },
            r.get::<_, i64>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (hash, location, refs) = row?;
        if let Some(hash) = BlobHash::from_hex(&hash) {
            out.push((hash, location, refs));
        }
    }
    Ok(out)
}

/// Blobs of one pack with their reference counts.
pub fn pack_blobs(conn: &Connection, pack: u32) -> Result<Vec<(BlobHash, BlobLocation, i64)>> {
    blob_rows(
        conn,
        "SELECT hash, pack, offset, length, refs FROM blobs WHERE pack = ?1",
        [pack],
    )
}

/// Blobs no message references any more: garbage for the collector.
pub fn unreferenced_blobs(conn: &Connection) -> Result<Vec<(BlobHash, BlobLocation)>> {
    Ok(blob_rows(
        conn,
        "SELECT hash, pack, offset, length, refs FROM blobs WHERE refs <= 0",
        [],
    )?
    .into_iter()
    .map(|(hash, location, _)| (hash, location))
    .collect())
}

/// Applies one record; the caller records the LSN (see `index::apply`).
pub fn apply(conn: &Connection, lsn: Lsn, record: &Record) -> Result<()> {
    // Subscribers and their notices (and the notices a new post queues).
    crate::subscribers::apply(conn, lsn, record)?;
    match record {
        Record::UserAdded {
            user,
            password_hash,
        }
        | Record::PasswordChanged {
            user,
            password_hash,
        } => {
            conn.prepare_cached(
                "INSERT INTO users (name, password_hash) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash",
            )?
            .execute(params![user, password_hash])?;
        }
        Record::UserDeleted { user } => {
            conn.prepare_cached("DELETE FROM users WHERE name = ?1")?
                .execute([user])?;
            conn.prepare_cached("DELETE FROM sms_alerts WHERE user = ?1")?
                .execute([user])?;
            conn.prepare_cached("DELETE FROM quotas WHERE user = ?1")?
                .execute([user])?;
            crate::acl::remove_owner_grants(conn, user)?;
        }
        Record::QuotaSet {
            user,
            storage_bytes,
            messages,
        } => {
            conn.prepare_cached(
                "INSERT INTO quotas (user, storage_bytes, messages) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user) DO UPDATE SET storage_bytes = excluded.storage_bytes,
                     messages = excluded.messages",
            )?
            .execute(params![
                user,
                storage_bytes.map(|b| b.min(i64::MAX as u64) as i64),
                messages.map(|m| m.min(i64::MAX as u64) as i64)
            ])?;
        }
        Record::SmsAlertSet { user, alert } => {
            set_json(conn, "sms_alerts", "user", "alert", user, alert.as_ref())?;
        }
        Record::AliasSet { address, users } => {
            conn.prepare_cached(
                "INSERT INTO aliases (address, users) VALUES (?1, ?2)
                 ON CONFLICT (address) DO UPDATE SET users = excluded.users",
            )?
            .execute(params![address, users.join(" ")])?;
        }
        Record::AliasRemoved { address } => {
            conn.prepare_cached("DELETE FROM aliases WHERE address = ?1")?
                .execute([address])?;
        }
        Record::BlobStored {
            hash,
            pack,
            offset,
            length,
        } => {
            conn.prepare_cached(
                "INSERT INTO blobs (hash, pack, offset, length, refs) VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT (hash) DO UPDATE SET pack = excluded.pack, offset = excluded.offset,
                     length = excluded.length",
            )?
            .execute(params![hash.to_hex(), pack, *offset as i64, *length as i64])?;
        }
        Record::BlobsRemoved { hashes } => {
            let mut stmt = conn.prepare_cached("DELETE FROM blobs WHERE hash = ?1")?;
            for hash in hashes {
                stmt.execute([hash.to_hex()])?;
            }
        }
        Record::MessageAdded { blob, .. } => {
            conn.prepare_cached("UPDATE blobs SET refs = refs + 1 WHERE hash = ?1")?
                .execute([blob.to_hex()])?;
        }
        Record::Expunged { messages, .. } => {
            let mut stmt =
                conn.prepare_cached("UPDATE blobs SET refs = refs - 1 WHERE hash = ?1")?;
            for (_, blob) in messages {
                stmt.execute([blob.to_hex()])?;
            }
        }
        Record::SmsQueued {
            id,
            to,
            text,
            purpose,
            receipt,
            at,
            user,
        } => {
            if let Some(user) = user {
                conn.prepare_cached(
                    "INSERT INTO sms_alert_log (user, sms, queued) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                )?
                .execute(params![user, *id as i64, at])?;
            }
            conn.prepare_cached(
                "INSERT INTO sms_outbox (id, queued, to_number, text, purpose, receipt, state,
                     attempts, not_before, reason, smsc_ids, delivery, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', 0, ?2, '', '', '', ?2)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![*id as i64, at, to, text, purpose, receipt])?;
        }
        Record::SmsSent { id, smsc_ids, at } => {
            conn.prepare_cached(
                "UPDATE sms_outbox SET state = 'sent', smsc_ids = ?2, reason = '', updated = ?3
                 WHERE id = ?1",
            )?
            .execute(params![*id as i64, smsc_ids.join(" "), at])?;
            let mut link = conn.prepare_cached(
                "INSERT INTO sms_smsc_ids (smsc_id, sms) VALUES (?1, ?2)
                 ON CONFLICT (smsc_id) DO UPDATE SET sms = excluded.sms",
            )?;
            for smsc_id in smsc_ids {
                link.execute(params![smsc_id, *id as i64])?;
            }
            drop(link);
            for smsc_id in smsc_ids {
                let waiting = conn
                    .prepare_cached(
                        "DELETE FROM sms_receipts_waiting WHERE smsc_id = ?1
                         RETURNING delivered, detail, at",
                    )?
                    .query_row([smsc_id], |r| {
                        Ok((
                            r.get::<_, bool>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })
                    .optional()?;
                if let Some((delivered, detail, received)) = waiting {
                    apply_receipt(conn, *id as i64, delivered, &detail, received.max(*at))?;
                }
            }
        }
        Record::SmsRetry {
            id,
            not_before,
            reason,
            at,
        } => {
            conn.prepare_cached(
                "UPDATE sms_outbox SET attempts = attempts + 1, not_before = ?2, reason = ?3,
                     updated = ?4
                 WHERE id = ?1 AND state = 'queued'",
            )?
            .execute(params![*id as i64, not_before, reason, at])?;
        }
        Record::SmsFailed { id, reason, at } => {
            conn.prepare_cached(
                "UPDATE sms_outbox SET state = 'failed', reason = ?2, updated = ?3 WHERE id = ?1",
            )?
            .execute(params![*id as i64, reason, at])?;
        }
        Record::SmsReceipt {
            smsc_id,
            delivered,
            detail,
            at,
        } => {
            let known = conn
                .prepare_cached("SELECT sms FROM sms_smsc_ids WHERE smsc_id = ?1")?
                .query_row([smsc_id], |r| r.get::<_, i64>(0))
                .optional()?;
            match known {
                Some(sms) => apply_receipt(conn, sms, *delivered, detail, *at)?,
                None => {
                    // A segment's receipt can overtake the SmsSent of its message
                    // (sent once every segment is accepted): keep it a day.
                    conn.prepare_cached("DELETE FROM sms_receipts_waiting WHERE at < ?1")?
                        .execute([at - 86_400])?;
                    conn.prepare_cached(
                        "INSERT INTO sms_receipts_waiting (smsc_id, delivered, detail, at)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (smsc_id) DO UPDATE SET delivered = excluded.delivered,
                             detail = excluded.detail, at = excluded.at",
                    )?
                    .execute(params![smsc_id, delivered, detail, at])?;
                }
            }
        }
        Record::StatusOpened {
            incident,
            title,
            components,
            impact,
            state,
            kind,
            author,
            text,
            at,
            fingerprint,
        } => {
            let doc = status::Incident {
                id: *incident,
                title: title.clone(),
                components: components.clone(),
                impact: *impact,
                state: *state,
                kind: *kind,
                created: *at,
                resolved: state.is_closed().then_some(*at),
                posts: vec![status::Post {
                    id: *incident,
                    author: author.clone(),
                    at: *at,
                    text: text.clone(),
                    edits: Vec::new(),
                }],
            };
            put_incident(conn, &doc)?;
            put_post(conn, *incident, *incident, fingerprint.as_deref())?;
        }
        Record::StatusPosted {
            incident,
            post,
            author,
            text,
            at,
            state,
            impact,
            fingerprint,
        } => {
            if let Some(mut doc) = status_incident(conn, *incident)? {
                doc.posts.push(status::Post {
                    id: *post,
                    author: author.clone(),
                    at: *at,
                    text: text.clone(),
                    edits: Vec::new(),
                });
                if let Some(state) = state {
                    doc.state = *state;
                    doc.resolved = state.is_closed().then_some(*at);
                }
                if let Some(impact) = impact {
                    doc.impact = *impact;
                }
                put_incident(conn, &doc)?;
                put_post(conn, *post, *incident, fingerprint.as_deref())?;
            }
        }
        Record::StatusEdited {
            post,
            author,
            text,
            at,
        } => {
            let incident: Option<i64> = conn
                .prepare_cached("SELECT incident FROM status_posts WHERE post = ?1")?
                .query_row([*post as i64], |r| r.get(0))
                .optional()?;
            if let Some(mut doc) = incident.map_or(Ok(None), |i| status_incident(conn, i as u64))? {
                if let Some(p) = doc.posts.iter_mut().find(|p| p.id == *post) {
                    let previous_text = std::mem::replace(&mut p.text, text.clone());
                    p.edits.push(status::Edit {
                        at: *at,
                        author: author.clone(),
                        previous_text,
                    });
                }
                put_incident(conn, &doc)?;
            }
        }
        Record::StatusComponentSet { name, component } => {
            set_json(
                conn,
                "status_components",
                "name",
                "doc",
                name,
                component.as_ref(),
            )?;
        }
        Record::SpamBlockSet { key, reason, at } => {
            conn.prepare_cached(
                "INSERT INTO spam_blocks (key, reason, since) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET reason = excluded.reason",
            )?
            .execute(params![key, reason, at])?;
        }
        Record::SpamBlockRemoved { key } => {
            conn.prepare_cached("DELETE FROM spam_blocks WHERE key = ?1")?
                .execute([key])?;
        }
        Record::Replicated {
            source,
            upto,
            id_floor,
        } => {
            conn.prepare_cached(
                "INSERT INTO replica_position (one, source, upto, id_floor) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT (one) DO UPDATE SET source = excluded.source, upto = excluded.upto,
                     id_floor = MAX(id_floor, excluded.id_floor)",
            )?
            .execute(params![source, *upto as i64, *id_floor as i64])?;
        }
        Record::AdminTokenSet { name, hash, at } => match hash {
            Some(hash) => {
                conn.prepare_cached(
                    "INSERT INTO admin_tokens (name, hash, created) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created = excluded.created",
                )?
                .execute(params![name, hash, at])?;
            }
            None => {
                conn.prepare_cached("DELETE FROM admin_tokens WHERE name = ?1")?
                    .execute([name])?;
            }
        },
        Record::ServerMetadataSet { entries } => crate::metadata::set(conn, "", entries)?,
        Record::AclSet {
            user,
            mailbox,
            identifier,
            rights,
        } => crate::acl::set_grant(conn, user, mailbox, identifier, rights.as_deref())?,
        Record::MailboxDeleted { user, mailbox } => {
            crate::acl::remove_mailbox_grants(conn, user, mailbox)?
        }
        Record::MailboxCreated { .. }
        | Record::MetadataSet { .. }
        | Record::MailboxRenamed { .. }
        | Record::Subscribed { .. }
        | Record::FlagsChanged { .. }
        | Record::SubscriberAdded { .. }
        | Record::SubscriberConfirmed { .. }
        | Record::SubscriberRemoved { .. }
        | Record::NoticeSent { .. }
        | Record::NoticeRetry { .. }
        | Record::NoticeFailed { .. } => {}
    }
    let _ = lsn;
    Ok(())
}

/// Sets (or with `None` deletes) the JSON `value` of `key` in a two-column
/// table. Table and column names are this file's constants, never input.
fn set_json<T: serde::Serialize>(
    conn: &Connection,
    table: &str,
    key_column: &str,
    value_column: &str,
    key: &str,
    value: Option<&T>,
) -> Result<()> {
    match value {
        Some(value) => {
            let json = serde_json::to_string(value)
                .map_err(|e| crate::error::StoreError::invalid(e.to_string()))?;
            conn.prepare_cached(&format!(
                "INSERT INTO {table} ({key_column}, {value_column}) VALUES (?1, ?2)
                 ON CONFLICT ({key_column}) DO UPDATE SET {value_column} = excluded.{value_column}"
            ))?
            .execute(params![key, json])?;
        }
        None => {
            conn.prepare_cached(&format!("DELETE FROM {table} WHERE {key_column} = ?1"))?
                .execute([key])?;
        }
    }
    Ok(())
}

fn put_incident(conn: &Connection, doc: &status::Incident) -> Result<()> {
    let json = serde_json::to_string(doc)
        .map_err(|e| crate::error::StoreError::invalid(format!("encode incident: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO status_incidents (id, created, last_activity, resolved, doc) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET last_activity = excluded.last_activity,
             resolved = excluded.resolved, doc = excluded.doc",
    )?
    .execute(params![doc.id as i64, doc.created, doc.last_activity(), doc.resolved, json])?;
    Ok(())
}

fn put_post(conn: &Connection, post: u64, incident: u64, fingerprint: Option<&str>) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO status_posts (post, incident) VALUES (?1, ?2)")?
        .execute(params![post as i64, incident as i64])?;
    if let Some(fp) = fingerprint {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO status_fingerprints (fingerprint, post) VALUES (?1, ?2)",
        )?
        .execute(params![fp, post as i64])?;
    }
    Ok(())
}

fn incident_from_doc(doc: String) -> Result<status::Incident> {
    serde_json::from_str(&doc)
        .map_err(|e| crate::error::StoreError::corrupt(format!("status incident undecodable: {e}")))
}

/// One incident with its timeline.
pub fn status_incident(conn: &Connection, id: u64) -> Result<Option<status::Incident>> {
    let doc: Option<String> = conn
        .prepare_cached("SELECT doc FROM status_incidents WHERE id = ?1")?
        .query_row([id as i64], |r| r.get(0))
        .optional()?;
    doc.map(incident_from_doc).transpose()
}

/// Incidents newest first (by when they were opened), `limit` from `offset`.
pub fn status_incidents(
    conn: &Connection,
    limit: u64,
    offset: u64,
) -> Result<Vec<status::Incident>> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc FROM status_incidents ORDER BY created DESC, id DESC LIMIT ?1 OFFSET ?2",
    )?;
    let docs = stmt
        .query_map(
            params![
                limit.min(i64::MAX as u64) as i64,
                offset.min(i64::MAX as u64) as i64
            ],
            |r| r.get::<_, String>(0),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    docs.into_iter().map(incident_from_doc).collect()
}

/// What the status page shows: every open incident and those with activity
/// since `since`, newest first, at most `limit`.
pub fn status_current(conn: &Connection, since: i64, limit: u64) -> Result<Vec<status::Incident>> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc FROM status_incidents WHERE resolved IS NULL OR last_activity >= ?1
         ORDER BY created DESC, id DESC LIMIT ?2",
    )?;
    let docs = stmt
        .query_map(params![since, limit.min(i64::MAX as u64) as i64], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    docs.into_iter().map(incident_from_doc).collect()
}

pub fn status_incident_count(conn: &Connection) -> Result<u64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM status_incidents")?
        .query_row([], |r| r.get::<_, i64>(0))?
        .max(0) as u64)
}

/// The incident a post belongs to.
pub fn status_post_incident(conn: &Connection, post: u64) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT incident FROM status_posts WHERE post = ?1")?
        .query_row([post as i64], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|i| i as u64))
}

/// The post an import fingerprint was stored as.
pub fn status_fingerprint(conn: &Connection, fingerprint: &str) -> Result<Option<u64>> {
    Ok(conn
        .prepare_cached("SELECT post FROM status_fingerprints WHERE fingerprint = ?1")?
        .query_row([fingerprint], |r| r.get::<_, i64>(0))
        .optional()?
        .map(|p| p as u64))
}

pub fn status_components(conn: &Connection) -> Result<Vec<status::Component>> {
    let mut stmt = conn.prepare_cached("SELECT doc FROM status_components ORDER BY name")?;
    let docs = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    docs.into_iter()
        .map(|d| {
            serde_json::from_str(&d).map_err(|e| {
                crate::error::StoreError::corrupt(format!("status component undecodable: {e}"))
            })
        })
        .collect()
}

/// The name of the admin token with this SHA-256 (hex), if any.
pub fn admin_token(conn: &Connection, hash: &str) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT name FROM admin_tokens WHERE hash = ?1")?
        .query_row([hash], |r| r.get(0))
        .optional()?)
}

/// A spam block as stored: its key, why, and since when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamBlock {
    pub key: String,
    pub reason: String,
    pub since: i64,
}

pub fn spam_blocks(conn: &Connection) -> Result<Vec<SpamBlock>> {
    let mut stmt =
        conn.prepare_cached("SELECT key, reason, since FROM spam_blocks ORDER BY key")?;
    let rows = stmt.query_map([], |r| {
        Ok(SpamBlock {
            key: r.get(0)?,
            reason: r.get(1)?,
            since: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Admin tokens: (name, created).
pub fn admin_tokens(conn: &Connection) -> Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached("SELECT name, created FROM admin_tokens ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Where this server stands as a replica: the primary it follows and the last
/// of that primary's LSNs it holds, and the id floor (see `Record::Replicated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaPosition {
    pub source: String,
    pub upto: Lsn,
    pub id_floor: u64,
}

pub fn replica_position(conn: &Connection) -> Result<Option<ReplicaPosition>> {
    Ok(conn
        .prepare_cached("SELECT source, upto, id_floor FROM replica_position WHERE one = 1")?
        .query_row([], |r| {
            Ok(ReplicaPosition {
                source: r.get(0)?,
                upto: r.get::<_, i64>(1)? as Lsn,
                id_floor: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()?)
}
