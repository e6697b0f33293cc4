//! Per-user index (`users/<name>/index.sqlite`): mailboxes, messages, flags,
//! tombstones and the parsed-message cache of one user. Derived data.
//!
//! Every change reaches an index through [`apply`], both when the writer
//! commits and when recovery replays the journal, so the two cannot disagree.
//! The index stores the LSN of the last record applied (`meta.applied_lsn`) in
//! the same transaction as the change, which makes replay idempotent. Indexes
//! run with `synchronous=NORMAL` in WAL mode: no fsync of their own (the
//! journal is the commit point), consistent after a crash, possibly behind the
//! journal, which replay fixes.
//!
//! One file per user is the containment boundary: a damaged index, a long lock
//! or a rebuild touches one user only.

use crate::error::{Result, StoreError};
use crate::record::{Lsn, Record};
use crate::types::BlobHash;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS mailboxes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uid_validity INTEGER NOT NULL,
    uid_next INTEGER NOT NULL,
    highest_modseq INTEGER NOT NULL,
    special_use TEXT
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox TEXT NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,
    internal_date INTEGER NOT NULL,
    internal_zone INTEGER NOT NULL,
    save_date INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob TEXT NOT NULL,
    email_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    summary BLOB NOT NULL,
    summary_crc INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_modseq ON messages (mailbox, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox TEXT NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS threads (message_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL);
-- Quota usage, kept by triggers so a quota check reads two rows, not every
-- message; counted once from the messages when an older index first opens.
INSERT INTO meta (key, value)
    SELECT 'usage_bytes', (SELECT COALESCE(SUM(size), 0) FROM messages)
    WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'usage_bytes');
INSERT INTO meta (key, value)
    SELECT 'usage_messages', (SELECT COUNT(*) FROM messages)
    WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'usage_messages');
CREATE TRIGGER IF NOT EXISTS usage_add AFTER INSERT ON messages BEGIN
    UPDATE meta SET value = value + NEW.size WHERE key = 'usage_bytes';
    UPDATE meta SET value = value + 1 WHERE key = 'usage_messages';
END;
CREATE TRIGGER IF NOT EXISTS usage_remove AFTER DELETE ON messages BEGIN
    UPDATE meta SET value = value - OLD.size WHERE key = 'usage_bytes';
    UPDATE meta SET value = value - 1 WHERE key = 'usage_messages';
END;
";

/// Prepared statements kept per connection.
pub const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Opens (creating if needed) a SQLite file of the store with the pragmas every
/// derived database uses.
pub fn open_db(path: &Path, schema: &str) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(schema)?;
    // `apply` and the queries use more distinct statements than rusqlite's default
    // cache of 16 holds; re-preparing them on every change costs more than the change.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

pub fn open(path: &Path) -> Result<Connection> {
    open_db(path, SCHEMA)
}

/// Runs one parameterless statement (BEGIN, COMMIT, SAVEPOINT ...) through the
/// statement cache: `execute_batch` parses its text again on every call, which
/// on the writer's hot path costs more than the statement itself.
pub fn exec(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

pub fn applied_lsn(conn: &Connection) -> Result<Lsn> {
    let value: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'applied_lsn'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.unwrap_or(0) as Lsn)
}

pub fn set_applied_lsn(conn: &Connection, lsn: Lsn) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('applied_lsn', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![lsn as i64])?;
    Ok(())
}

/// A mailbox as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    pub id: String,
    pub name: String,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    pub special_use: Option<String>,
}

/// A message's index row, without the cached summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub modseq: u64,
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub internal_zone: i16,
    pub save_date: i64,
    pub size: u64,
    pub blob: BlobHash,
    pub email_id: String,
    pub thread_id: String,
}

/// What changed in a mailbox since a MODSEQ, read in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// `None` when the mailbox no longer exists.
    pub mailbox: Option<MailboxInfo>,
    /// Messages added or with changed flags, in UID order.
    pub changed: Vec<MessageMeta>,
    /// Expunged UIDs, ascending.
    pub expunged: Vec<u32>,
}

/// Reads [`Changes`] inside one read transaction, so the three parts agree.
pub fn changes(conn: &Connection, mailbox: &str, since: u64) -> Result<Changes> {
    conn.execute_batch("BEGIN")?;
    let result = (|| {
        let Some(info) = mailbox_by_id(conn, mailbox)? else {
            return Ok(Changes::default());
        };
        Ok(Changes {
            mailbox: Some(info),
            changed: changed_since(conn, mailbox, since)?,
            expunged: expunged_since(conn, mailbox, since)?,
        })
    })();
    let _ = conn.execute_batch("COMMIT");
    result
}

/// Counters for STATUS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub messages: u32,
    pub unseen: u32,
    pub deleted: u32,
    pub size: u64,
}

pub fn flags_to_text(flags: &[String]) -> String {
    flags.join(" ")
}

pub fn flags_from_text(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

fn mailbox_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MailboxInfo> {
    Ok(MailboxInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        uid_validity: row.get(2)?,
        uid_next: row.get(3)?,
        highest_modseq: row.get::<_, i64>(4)? as u64,
        special_use: row.get(5)?,
    })
}

const MAILBOX_COLUMNS: &str = "id, name, uid_validity, uid_next, highest_modseq, special_use";
const MESSAGE_COLUMNS: &str =
    "uid, modseq, flags, internal_date, internal_zone, save_date, size, blob, email_id, thread_id";

fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageMeta> {
    let blob: String = row.get(7)?;
    Ok(MessageMeta {
        uid: row.get(0)?,
        modseq: row.get::<_, i64>(1)? as u64,
        flags: flags_from_text(&row.get::<_, String>(2)?),
        internal_date: row.get(3)?,
        internal_zone: row.get(4)?,
        save_date: row.get(5)?,
        size: row.get::<_, i64>(6)? as u64,
        blob: BlobHash::from_hex(&blob).unwrap_or(BlobHash([0; 32])),
        email_id: row.get(8)?,
        thread_id: row.get(9)?,
    })
}

pub fn mailboxes(conn: &Connection) -> Result<Vec<MailboxInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes ORDER BY name"
    ))?;
    let rows = stmt.query_map([], mailbox_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn mailbox_by_name(conn: &Connection, name: &str) -> Result<Option<MailboxInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE name = ?1"
    ))?;
    Ok(stmt.query_row([name], mailbox_from_row).optional()?)
}

pub fn mailbox_by_id(conn: &Connection, id: &str) -> Result<Option<MailboxInfo>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE id = ?1"
    ))?;
    Ok(stmt.query_row([id], mailbox_from_row).optional()?)
}

pub fn subscriptions(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT name FROM subscriptions ORDER BY name")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every message of a mailbox in UID order.
pub fn messages(conn: &Connection, mailbox: &str) -> Result<Vec<MessageMeta>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 ORDER BY uid"
    ))?;
    let rows = stmt.query_map([mailbox], message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// What SELECT needs of every message, and no more: UID, MODSEQ and flags
/// (as stored: space-separated), in UID order. Reading the other columns of
/// 100,000 rows cost SELECT most of its time.
pub fn select_view(conn: &Connection, mailbox: &str) -> Result<Vec<(u32, u64, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid, modseq, flags FROM messages WHERE mailbox = ?1 ORDER BY uid",
    )?;
    let rows = stmt.query_map([mailbox], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            r.get::<_, i64>(1)? as u64,
            r.get::<_, String>(2)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn message(conn: &Connection, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND uid = ?2"
    ))?;
    Ok(stmt
        .query_row(params![mailbox, uid], message_from_row)
        .optional()?)
}

/// Messages whose MODSEQ is above `modseq`, in UID order (new and changed).
pub fn changed_since(conn: &Connection, mailbox: &str, modseq: u64) -> Result<Vec<MessageMeta>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid"
    ))?;
    let rows = stmt.query_map(params![mailbox, modseq as i64], message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// UIDs expunged with a MODSEQ above `modseq`, ascending.
pub fn expunged_since(conn: &Connection, mailbox: &str, modseq: u64) -> Result<Vec<u32>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid FROM expunged WHERE mailbox = ?1 AND modseq > ?2 ORDER BY uid",
    )?;
    let rows = stmt.query_map(params![mailbox, modseq as i64], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn counts(conn: &Connection, mailbox: &str) -> Result<MailboxCounts> {
    let mut stmt = conn.prepare_cached(
        "SELECT COUNT(*),
                COALESCE(SUM(CASE WHEN ' ' || flags || ' ' LIKE '% \\Seen %' THEN 0 ELSE 1 END), 0),
                COALESCE(SUM(CASE WHEN ' ' || flags || ' ' LIKE '% \\Deleted %' THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(size), 0)
         FROM messages WHERE mailbox = ?1",
    )?;
    Ok(stmt.query_row([mailbox], |r| {
        Ok(MailboxCounts {
            messages: r.get(0)?,
            unseen: r.get(1)?,
            deleted: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
        })
    })?)
}

/// Total bytes and messages of the user (for quota), from the counters the
/// triggers keep.
pub fn usage(conn: &Connection) -> Result<(u64, u64)> {
    let get = |key: &str| -> Result<u64> {
        let v: Option<i64> = conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?;
        Ok(v.unwrap_or(0).max(0) as u64)
    };
    Ok((get("usage_bytes")?, get("usage_messages")?))
}

/// The cached summary of a message, checked against its checksum. `Ok(None)`:
/// the message is gone. A checksum or decode failure is `Corrupt`: the caller
/// re-derives from the blob and never serves the damaged bytes.
pub fn summary(conn: &Connection, mailbox: &str, uid: u32) -> Result<Option<mime::Summary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT summary, summary_crc FROM messages WHERE mailbox = ?1 AND uid = ?2",
    )?;
    let row: Option<(Vec<u8>, i64)> = stmt
        .query_row(params![mailbox, uid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((bytes, crc)) = row else {
        return Ok(None);
    };
    if crc32fast::hash(&bytes) as i64 != crc {
        return Err(StoreError::corrupt(format!(
            "cache checksum mismatch for UID {uid}"
        )));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::corrupt(format!("cache record for UID {uid} undecodable: {e}")))
}

pub fn thread_for(conn: &Connection, message_ids: &[String]) -> Result<Option<String>> {
    let mut stmt = conn.prepare_cached("SELECT thread_id FROM threads WHERE message_id = ?1")?;
    for id in message_ids {
        if let Some(t) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// Applies one record to a user's index. `summary` is the parsed message for
/// `MessageAdded` (the writer has it; replay re-parses the blob and passes it).
/// The caller records the LSN with [`set_applied_lsn`] in the same transaction
/// (the writer once per batch, recovery once per record).
/// Applies one record. `summary` is the message's for `MessageAdded`, with its
/// JSON encoding when the caller has it already (empty: encoded here).
pub fn apply(
    conn: &Connection,
    lsn: Lsn,
    record: &Record,
    summary: Option<(&mime::Summary, &[u8])>,
) -> Result<()> {
    match record {
        Record::MailboxCreated {
            mailbox,
            name,
            uid_validity,
            special_use,
            ..
        } => {
            // Idempotent, so replaying a record that was half applied cannot fail.
            conn.prepare_cached("INSERT INTO mailboxes (id, name, uid_validity, uid_next, highest_modseq, special_use)
                 VALUES (?1, ?2, ?3, 1, 1, ?4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name")?.execute(params![mailbox, name, uid_validity, special_use],
            )?;
            // Remembered so a re-created mailbox never gets an old UIDVALIDITY, also
            // when the index is rebuilt from the journal.
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('uid_validity_last', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute(params![uid_validity])?;
        }
        Record::MailboxRenamed { mailbox, name, .. } => {
            conn.prepare_cached("UPDATE mailboxes SET name = ?2 WHERE id = ?1")?
                .execute(params![mailbox, name])?;
        }
        Record::MailboxDeleted { mailbox, .. } => {
            conn.prepare_cached("DELETE FROM messages WHERE mailbox = ?1")?
                .execute([mailbox])?;
            conn.prepare_cached("DELETE FROM expunged WHERE mailbox = ?1")?
                .execute([mailbox])?;
            conn.prepare_cached("DELETE FROM mailboxes WHERE id = ?1")?
                .execute([mailbox])?;
        }
        Record::Subscribed {
            name, subscribed, ..
        } => {
            if *subscribed {
                conn.prepare_cached("INSERT OR IGNORE INTO subscriptions (name) VALUES (?1)")?
                    .execute([name])?;
            } else {
                conn.prepare_cached("DELETE FROM subscriptions WHERE name = ?1")?
                    .execute([name])?;
            }
        }
        Record::MessageAdded {
            mailbox,
            uid,
            modseq,
            internal_date,
            internal_zone,
            save_date,
            blob,
            size,
            flags,
            email_id,
            thread_id,
            ..
        } => {
            let (summary, encoded) =
                summary.ok_or_else(|| StoreError::corrupt("message summary missing"))?;
            let encoded_here;
            let bytes: &[u8] = if encoded.is_empty() {
                encoded_here = serde_json::to_vec(summary)
                    .map_err(|e| StoreError::invalid(format!("encode summary: {e}")))?;
                &encoded_here
            } else {
                encoded
            };
            let crc = crc32fast::hash(bytes) as i64;
            conn.prepare_cached("INSERT OR REPLACE INTO messages (mailbox, uid, modseq, flags, internal_date, internal_zone,
                     save_date, size, blob, email_id, thread_id, summary, summary_crc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")?.execute(params![
                    mailbox, uid, *modseq as i64, flags_to_text(flags), internal_date, internal_zone,
                    save_date, *size as i64, blob.to_hex(), email_id, thread_id, bytes, crc
                ],
            )?;
            conn.prepare_cached("UPDATE mailboxes SET uid_next = MAX(uid_next, ?2 + 1), highest_modseq = MAX(highest_modseq, ?3)
                 WHERE id = ?1")?.execute(params![mailbox, uid, *modseq as i64],
            )?;
            if let Some(id) = &summary.message_id {
                conn.prepare_cached(
                    "INSERT OR IGNORE INTO threads (message_id, thread_id) VALUES (?1, ?2)",
                )?
                .execute(params![id, thread_id])?;
            }
        }
        Record::FlagsChanged {
            mailbox,
            modseq,
            messages,
            ..
        } => {
            let mut stmt = conn.prepare_cached(
                "UPDATE messages SET flags = ?3, modseq = ?4 WHERE mailbox = ?1 AND uid = ?2",
            )?;
            for (uid, flags) in messages {
                stmt.execute(params![mailbox, uid, flags_to_text(flags), *modseq as i64])?;
            }
            conn.prepare_cached(
                "UPDATE mailboxes SET highest_modseq = MAX(highest_modseq, ?2) WHERE id = ?1",
            )?
            .execute(params![mailbox, *modseq as i64])?;
        }
        Record::Expunged {
            mailbox,
            modseq,
            messages,
            ..
        } => {
            let mut delete =
                conn.prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2")?;
            let mut tomb = conn.prepare_cached(
                "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
            )?;
            for (uid, _) in messages {
                delete.execute(params![mailbox, uid])?;
                tomb.execute(params![mailbox, uid, *modseq as i64])?;
            }
            conn.prepare_cached(
                "UPDATE mailboxes SET highest_modseq = MAX(highest_modseq, ?2) WHERE id = ?1",
            )?
            .execute(params![mailbox, *modseq as i64])?;
        }
        Record::UserAdded { .. }
        | Record::PasswordChanged { .. }
        | Record::UserDeleted { .. }
        | Record::AliasSet { .. }
        | Record::AliasRemoved { .. }
        | Record::BlobStored { .. }
        | Record::BlobsRemoved { .. }
        | Record::SmsQueued { .. }
        | Record::SmsSent { .. }
        | Record::SmsRetry { .. }
        | Record::SmsFailed { .. }
        | Record::SmsReceipt { .. }
        | Record::SmsAlertSet { .. }
        | Record::QuotaSet { .. } => {}
    }
    let _ = lsn;
    Ok(())
}
