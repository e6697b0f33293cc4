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
use std::collections::HashMap;
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
    -- CRC-32 of the blob hash (hex) and the summary: a cache entry checks out
    -- only with the message it was made from, so two swapped entries fail.
    summary_crc INTEGER NOT NULL,
    -- CRC-32 of the row's fixed fields (see `row_checksum`): a damaged blob
    -- reference or size is caught before it serves another message's bytes.
    row_crc INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_by_modseq ON messages (mailbox, modseq);
-- Every fixed column of a message row, covered: what SELECT numbers a mailbox
-- by (`select_view`) and what SEARCH, SORT, THREAD and FETCH start from
-- (`messages`, MESSAGE_COLUMNS) are read from this index alone, a couple of
-- hundred bytes per message, never from the rows, which carry their cached
-- summary (a kilobyte and more) in front of `row_crc`. It replaces the
-- narrower `messages_view` (uid, modseq, flags); made at the writer's next
-- open of older indexes.
DROP INDEX IF EXISTS messages_view;
CREATE INDEX IF NOT EXISTS messages_meta ON messages (mailbox, uid, modseq, flags,
    internal_date, internal_zone, save_date, size, blob, email_id, thread_id, row_crc);
-- The keys SORT and THREAD order by (`SortKeys`), a few hundred bytes per
-- message, so that sorting 100,000 messages reads this table rather than
-- 100,000 cached summaries. Derived from the summary in the same statement
-- that writes it; `keys_crc` binds the keys to the message's blob like
-- `summary_crc`. A row that is missing (an index from before it) or fails
-- its check is read from the summary instead.
CREATE TABLE IF NOT EXISTS sort_keys (
    mailbox TEXT NOT NULL,
    uid INTEGER NOT NULL,
    keys BLOB NOT NULL,
    keys_crc INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS sort_keys_remove AFTER DELETE ON messages BEGIN
    DELETE FROM sort_keys WHERE mailbox = OLD.mailbox AND uid = OLD.uid;
END;
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
    let conn = open_db(
        path,
        &format!("{SCHEMA}{}{}", crate::metadata::SCHEMA, crate::acl::SCHEMA),
    )?;
    // An index from before row checksums (format 1) cannot be checked on read:
    // recovery moves it aside and rebuilds it from the journal, like a damaged one.
    let has_row_crc: i64 = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'row_crc'",
        [],
        |r| r.get(0),
    )?;
    if has_row_crc == 0 {
        return Err(StoreError::corrupt(
            "index format 1 (no row checksums): rebuilt from the journal",
        ));
    }
    Ok(conn)
}

/// Opens an existing index for reading; never creates one (a missing index is
/// an error, not an empty mailbox list).
pub fn open_existing(path: &Path) -> Result<Connection> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|e| {
        StoreError::new(
            crate::error::ErrorKind::Unavailable,
            format!("index {} unavailable: {e}", path.display()),
        )
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// The checksum of a message row's fixed fields, in `row_crc`.
#[allow(clippy::too_many_arguments)]
pub fn row_checksum(
    mailbox: &str,
    uid: u32,
    internal_date: i64,
    internal_zone: i16,
    save_date: i64,
    size: u64,
    blob_hex: &str,
    email_id: &str,
    thread_id: &str,
) -> i64 {
    let mut h = crc32fast::Hasher::new();
    for part in [mailbox, blob_hex, email_id, thread_id] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.update(&uid.to_le_bytes());
    h.update(&internal_date.to_le_bytes());
    h.update(&internal_zone.to_le_bytes());
    h.update(&save_date.to_le_bytes());
    h.update(&size.to_le_bytes());
    h.finalize() as i64
}

/// The checksum of a cache entry, in `summary_crc`: bound to the blob it was
/// derived from.
pub fn summary_checksum(blob_hex: &str, summary: &[u8]) -> i64 {
    let mut h = crc32fast::Hasher::new();
    h.update(blob_hex.as_bytes());
    h.update(&[0]);
    h.update(summary);
    h.finalize() as i64
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

/// Set while reconstruct refills a recreated index: readers must not use it.
pub fn rebuilding(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'rebuilding'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .is_some_and(|v| v != 0))
}

/// The UIDVALIDITY floor (the highest ever given to a mailbox of the user).
pub fn uid_validity_floor(conn: &Connection) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'uid_validity_last'")?
        .query_row([], |r| r.get::<_, i64>(0))
        .optional()?
        .map_or(0, |v| v.clamp(0, u32::MAX as i64) as u32))
}

/// The highest UIDVALIDITY any mailbox of the user had: its existing
/// mailboxes' and the floor left by deleted ones.
pub fn uid_validity_last(conn: &Connection) -> Result<u32> {
    let existing: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(uid_validity), 0) FROM mailboxes")?
        .query_row([], |r| r.get(0))?;
    Ok(uid_validity_floor(conn)?.max(existing.clamp(0, u32::MAX as i64) as u32))
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
    /// The row failed its checksum: its fields cannot be trusted, so nothing of
    /// the message is served (a clean NO) until reconstruct repairs the row.
    pub damaged: bool,
}

impl MessageMeta {
    pub fn checksum(&self, mailbox: &str) -> i64 {
        row_checksum(
            mailbox,
            self.uid,
            self.internal_date,
            self.internal_zone,
            self.save_date,
            self.size,
            &self.blob.to_hex(),
            &self.email_id,
            &self.thread_id,
        )
    }
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
const MESSAGE_COLUMNS: &str = "uid, modseq, flags, internal_date, internal_zone, save_date, size, blob, email_id, thread_id, row_crc, mailbox";

/// Reads a message row and checks its checksum (`damaged` when it fails).
fn message_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MessageMeta> {
    let blob_hex: String = row.get(7)?;
    let blob = BlobHash::from_hex(&blob_hex);
    let mut meta = MessageMeta {
        uid: row.get(0)?,
        modseq: row.get::<_, i64>(1)? as u64,
        flags: flags_from_text(&row.get::<_, String>(2)?),
        internal_date: row.get(3)?,
        internal_zone: row.get(4)?,
        save_date: row.get(5)?,
        size: row.get::<_, i64>(6)?.max(0) as u64,
        blob: blob.unwrap_or(BlobHash([0; 32])),
        email_id: row.get(8)?,
        thread_id: row.get(9)?,
        damaged: false,
    };
    let stored: i64 = row.get(10)?;
    let mailbox: String = row.get(11)?;
    meta.damaged = blob.is_none()
        || row.get::<_, i64>(6)? < 0
        || row_checksum(
            &mailbox,
            meta.uid,
            meta.internal_date,
            meta.internal_zone,
            meta.save_date,
            meta.size,
            &blob_hex,
            &meta.email_id,
            &meta.thread_id,
        ) != stored;
    Ok(meta)
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

/// The messages of a mailbox whose UIDs are in `first..=last`, in UID order
/// (a range scan of the covering index: FETCH of a window of a large
/// mailbox reads that window, not the mailbox).
pub fn messages_between(
    conn: &Connection,
    mailbox: &str,
    first: u32,
    last: u32,
) -> Result<Vec<MessageMeta>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid"
    ))?;
    let rows = stmt.query_map(params![mailbox, first, last], message_from_row)?;
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
/// the message is gone. A checksum or decode failure, or an entry made from
/// another blob than `expected_blob`, is `Corrupt`: the caller re-derives from
/// the blob and never serves the damaged bytes.
/// What SORT and THREAD order messages by: the fields of a message's
/// `mime::Summary` they read, under the same names (so they can be read
/// from a summary's JSON too).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SortKeys {
    #[serde(default)]
    pub sent: Option<mime::SentDate>,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub in_reply_to: Vec<String>,
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub base_subject: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub cc: String,
}

impl SortKeys {
    pub fn of(summary: &mime::Summary) -> Self {
        SortKeys {
            sent: summary.sent,
            message_id: summary.message_id.clone(),
            in_reply_to: summary.in_reply_to.clone(),
            references: summary.references.clone(),
            subject: summary.subject.clone(),
            base_subject: summary.base_subject.clone(),
            from: summary.from.clone(),
            to: summary.to.clone(),
            cc: summary.cc.clone(),
        }
    }

    /// From a cached summary's JSON (its other fields are skipped); empty
    /// keys for JSON that is not a summary (a damaged entry is re-derived by
    /// reconstruct, which rewrites these too).
    pub fn from_summary_json(json: &[u8]) -> Self {
        serde_json::from_slice(json).unwrap_or_default()
    }

    /// A summary holding only these fields, for code written against summaries.
    pub fn into_summary(self) -> mime::Summary {
        mime::Summary {
            envelope: String::new(),
            body: String::new(),
            body_structure: String::new(),
            sent: self.sent,
            message_id: self.message_id,
            in_reply_to: self.in_reply_to,
            references: self.references,
            subject: self.subject,
            base_subject: self.base_subject,
            from: self.from,
            to: self.to,
            cc: self.cc,
            bcc: String::new(),
            headers: Vec::new(),
            headers_truncated: false,
            header_bytes: 0,
            preview: String::new(),
        }
    }
}

fn put_sort_keys(
    conn: &Connection,
    mailbox: &str,
    uid: u32,
    blob_hex: &str,
    keys: &SortKeys,
) -> Result<()> {
    let json = serde_json::to_vec(keys)
        .map_err(|e| StoreError::invalid(format!("encode sort keys: {e}")))?;
    let crc = summary_checksum(blob_hex, &json);
    put_encoded_sort_keys(conn, mailbox, uid, &json, crc)
}

fn put_encoded_sort_keys(
    conn: &Connection,
    mailbox: &str,
    uid: u32,
    json: &[u8],
    crc: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO sort_keys (mailbox, uid, keys, keys_crc) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![mailbox, uid, json, crc])?;
    Ok(())
}

/// What a `MessageAdded` stores beside its record's fields, derived one way
/// for every backend, since each backend's reads check these checksums: the
/// summary's encoding (the caller's, or made here), the row checksum, the
/// sort keys, and the checksums that bind summary and keys to the content.
pub(crate) struct AddedRow<'a> {
    pub blob_hex: String,
    pub row_crc: i64,
    pub summary: std::borrow::Cow<'a, [u8]>,
    pub summary_crc: i64,
    pub keys: Vec<u8>,
    pub keys_crc: i64,
}

/// [`AddedRow`] of a `MessageAdded` record with its summary (and the
/// summary's encoding when the caller has it; empty: encoded here).
pub(crate) fn added_row<'a>(
    record: &Record,
    summary: Option<(&mime::Summary, &'a [u8])>,
) -> Result<AddedRow<'a>> {
    let Record::MessageAdded {
        mailbox,
        uid,
        internal_date,
        internal_zone,
        save_date,
        blob,
        size,
        email_id,
        thread_id,
        ..
    } = record
    else {
        return Err(StoreError::invalid("not a MessageAdded record"));
    };
    let (summary, encoded) =
        summary.ok_or_else(|| StoreError::corrupt("message summary missing"))?;
    let bytes = if encoded.is_empty() {
        std::borrow::Cow::Owned(
            serde_json::to_vec(summary)
                .map_err(|e| StoreError::invalid(format!("encode summary: {e}")))?,
        )
    } else {
        std::borrow::Cow::Borrowed(encoded)
    };
    let blob_hex = blob.to_hex();
    let keys = serde_json::to_vec(&SortKeys::of(summary))
        .map_err(|e| StoreError::invalid(format!("encode sort keys: {e}")))?;
    Ok(AddedRow {
        row_crc: row_checksum(
            mailbox,
            *uid,
            *internal_date,
            *internal_zone,
            *save_date,
            *size,
            &blob_hex,
            email_id,
            thread_id,
        ),
        summary_crc: summary_checksum(&blob_hex, &bytes),
        keys_crc: summary_checksum(&blob_hex, &keys),
        summary: bytes,
        keys,
        blob_hex,
    })
}

/// Every stored sort-key row of a mailbox: UID → (keys JSON, keys_crc).
pub fn sort_keys(conn: &Connection, mailbox: &str) -> Result<HashMap<u32, (Vec<u8>, i64)>> {
    let mut stmt =
        conn.prepare_cached("SELECT uid, keys, keys_crc FROM sort_keys WHERE mailbox = ?1")?;
    let rows = stmt.query_map([mailbox], |r| {
        Ok((
            r.get::<_, u32>(0)?,
            (r.get::<_, Vec<u8>>(1)?, r.get::<_, i64>(2)?),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn summary(
    conn: &Connection,
    mailbox: &str,
    uid: u32,
    expected_blob: &BlobHash,
) -> Result<Option<mime::Summary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT summary, summary_crc, blob FROM messages WHERE mailbox = ?1 AND uid = ?2",
    )?;
    let row: Option<(Vec<u8>, i64, String)> = stmt
        .query_row(params![mailbox, uid], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((bytes, crc, blob)) = row else {
        return Ok(None);
    };
    decode_summary(uid, expected_blob, &bytes, crc, &blob).map(Some)
}

/// A cache entry checked against the message it must belong to, decoded.
pub fn decode_summary(
    uid: u32,
    expected_blob: &BlobHash,
    bytes: &[u8],
    crc: i64,
    blob: &str,
) -> Result<mime::Summary> {
    if blob != expected_blob.to_hex() || summary_checksum(blob, bytes) != crc {
        return Err(StoreError::corrupt(format!(
            "cache checksum mismatch for UID {uid}"
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::corrupt(format!("cache record for UID {uid} undecodable: {e}")))
}

/// A cache entry as a scan reads it: summary bytes, `summary_crc`, blob hash (hex).
pub type ScannedEntry = (Vec<u8>, i64, String);

/// The cache entries (summary, `summary_crc`, blob hex) of the messages with
/// UIDs in `first..=last`, by UID: one range scan. A WITHOUT ROWID row that
/// spills into overflow pages is read whole at every key comparison of a
/// point lookup, so many lookups cost many times the rows' size; a scan
/// reads each row once.
pub fn summaries_between(
    conn: &Connection,
    mailbox: &str,
    first: u32,
    last: u32,
) -> Result<HashMap<u32, ScannedEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT uid, summary, summary_crc, blob FROM messages
         WHERE mailbox = ?1 AND uid BETWEEN ?2 AND ?3",
    )?;
    let rows = stmt.query_map(params![mailbox, first, last], |r| {
        Ok((r.get::<_, u32>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?)))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (uid, entry) = row?;
        out.insert(uid, entry);
    }
    Ok(out)
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
            crate::metadata::remove_mailbox(conn, mailbox)?;
            crate::acl::remove_mailbox(conn, mailbox)?;
        }
        Record::AclSet {
            mailbox,
            identifier,
            rights,
            ..
        } => crate::acl::set(conn, mailbox, identifier, rights.as_deref())?,
        Record::MetadataSet {
            mailbox, entries, ..
        } => crate::metadata::set(conn, mailbox, entries)?,
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
            size,
            flags,
            email_id,
            thread_id,
            ..
        } => {
            let row = added_row(record, summary)?;
            conn.prepare_cached("INSERT OR REPLACE INTO messages (mailbox, uid, modseq, flags, internal_date, internal_zone,
                     save_date, size, blob, email_id, thread_id, summary, summary_crc, row_crc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")?.execute(params![
                    mailbox, uid, *modseq as i64, flags_to_text(flags), internal_date, internal_zone,
                    save_date, *size as i64, row.blob_hex, email_id, thread_id, row.summary.as_ref(),
                    row.summary_crc, row.row_crc
                ],
            )?;
            put_encoded_sort_keys(conn, mailbox, *uid, &row.keys, row.keys_crc)?;
            conn.prepare_cached("UPDATE mailboxes SET uid_next = MAX(uid_next, ?2 + 1), highest_modseq = MAX(highest_modseq, ?3)
                 WHERE id = ?1")?.execute(params![mailbox, uid, *modseq as i64],
            )?;
            if let Some(id) = summary.and_then(|(s, _)| s.message_id.as_ref()) {
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
        // A user's deletion removes the whole index file (the writer); every
        // other record is server-wide: `Record::user` is the one list of which
        // records belong to a user's index.
        Record::UserDeleted { .. } => {}
        other => debug_assert!(other.user().is_none(), "user record not applied: {other:?}"),
    }
    let _ = lsn;
    Ok(())
}

/// Whether a repair computed earlier still applies (see [`crate::RepairGuard`]).
pub fn repair_guard_holds(conn: &Connection, guard: &crate::intent::RepairGuard) -> Result<bool> {
    use crate::intent::RepairGuard;
    Ok(match guard {
        RepairGuard::Mailbox { id, seen } => {
            let now = mailbox_by_id(conn, id)?.map(|m| (m.uid_next, m.highest_modseq));
            now == *seen
        }
        RepairGuard::AppliedLsn(lsn) => applied_lsn(conn)? == *lsn,
        // Checked by the writer, which knows what it wrote since.
        RepairGuard::Recreate { .. } => mailboxes(conn)?.is_empty(),
        RepairGuard::Always => true,
    })
}

/// Applies one derived-data repair (the writer, inside the user's transaction).
/// Puts flags back without a new MODSEQ (a replica's repair: see the writer).
pub fn set_flags_keeping_modseq(
    conn: &Connection,
    mailbox: &str,
    messages: &[(u32, Vec<String>)],
) -> Result<()> {
    let mut stmt =
        conn.prepare_cached("UPDATE messages SET flags = ?3 WHERE mailbox = ?1 AND uid = ?2")?;
    for (uid, flags) in messages {
        stmt.execute(params![mailbox, uid, flags_to_text(flags)])?;
    }
    Ok(())
}

pub fn apply_fix(conn: &Connection, fix: &crate::intent::Fix) -> Result<()> {
    use crate::intent::Fix;
    match fix {
        Fix::PutMailbox(m) => {
            conn.prepare_cached(
                "INSERT INTO mailboxes (id, name, uid_validity, uid_next, highest_modseq, special_use)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                     uid_validity = excluded.uid_validity,
                     uid_next = MAX(uid_next, excluded.uid_next),
                     highest_modseq = MAX(highest_modseq, excluded.highest_modseq),
                     special_use = excluded.special_use",
            )?
            .execute(params![
                m.id,
                m.name,
                m.uid_validity,
                m.uid_next,
                m.highest_modseq as i64,
                m.special_use
            ])?;
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('uid_validity_last', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute(params![m.uid_validity])?;
        }
        Fix::RemoveMailbox(id) => {
            for sql in [
                "DELETE FROM messages WHERE mailbox = ?1",
                "DELETE FROM expunged WHERE mailbox = ?1",
                "DELETE FROM mailboxes WHERE id = ?1",
                "DELETE FROM metadata WHERE mailbox = ?1",
            ] {
                conn.prepare_cached(sql)?.execute([id])?;
            }
        }
        Fix::PutMessage {
            mailbox,
            meta,
            summary,
        } => {
            let blob_hex = meta.blob.to_hex();
            // Delete, then insert: REPLACE would skip the delete trigger and
            // count the message's size twice in the quota usage.
            conn.prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2")?
                .execute(params![mailbox, meta.uid])?;
            conn.prepare_cached(
                "INSERT INTO messages (mailbox, uid, modseq, flags, internal_date, internal_zone,
                     save_date, size, blob, email_id, thread_id, summary, summary_crc, row_crc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                mailbox,
                meta.uid,
                meta.modseq as i64,
                flags_to_text(&meta.flags),
                meta.internal_date,
                meta.internal_zone,
                meta.save_date,
                meta.size as i64,
                blob_hex,
                meta.email_id,
                meta.thread_id,
                summary,
                summary_checksum(&blob_hex, summary),
                meta.checksum(mailbox)
            ])?;
            put_sort_keys(
                conn,
                mailbox,
                meta.uid,
                &blob_hex,
                &SortKeys::from_summary_json(summary),
            )?;
        }
        Fix::RemoveMessage { mailbox, uid } => {
            conn.prepare_cached("DELETE FROM messages WHERE mailbox = ?1 AND uid = ?2")?
                .execute(params![mailbox, uid])?;
        }
        Fix::PutTombstone {
            mailbox,
            uid,
            modseq,
        } => {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![mailbox, uid, *modseq as i64])?;
        }
        Fix::RemoveTombstone { mailbox, uid } => {
            conn.prepare_cached("DELETE FROM expunged WHERE mailbox = ?1 AND uid = ?2")?
                .execute(params![mailbox, uid])?;
        }
        Fix::Subscribe(name) => {
            conn.prepare_cached("INSERT OR IGNORE INTO subscriptions (name) VALUES (?1)")?
                .execute([name])?;
        }
        Fix::Unsubscribe(name) => {
            conn.prepare_cached("DELETE FROM subscriptions WHERE name = ?1")?
                .execute([name])?;
        }
        Fix::PutMetadata {
            mailbox,
            entry,
            value,
        } => crate::metadata::set(conn, mailbox, &[(entry.clone(), value.clone())])?,
        Fix::PutAcl {
            mailbox,
            identifier,
            rights,
        } => crate::acl::set(conn, mailbox, identifier, rights.as_deref())?,
        Fix::RestateFlags { .. } => {
            return Err(StoreError::invalid(
                "flags are restated by the writer, with a journal record",
            ));
        }
        Fix::UidValidityFloor(value) => {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('uid_validity_last', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            )?
            .execute(params![value])?;
        }
        Fix::Rebuilding(on) => {
            if *on {
                conn.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('rebuilding', 1)
                     ON CONFLICT (key) DO UPDATE SET value = 1",
                )?
                .execute([])?;
            } else {
                conn.prepare_cached("DELETE FROM meta WHERE key = 'rebuilding'")?
                    .execute([])?;
            }
        }
        Fix::RecountUsage => {
            conn.execute_batch(
                "UPDATE meta SET value = (SELECT COALESCE(SUM(size), 0) FROM messages) WHERE key = 'usage_bytes';
                 UPDATE meta SET value = (SELECT COUNT(*) FROM messages) WHERE key = 'usage_messages';",
            )?;
        }
    }
    Ok(())
}

/// Every message row with its cache entry, as reconstruct compares them:
/// `(meta, stored summary_crc, summary bytes)` when `with_summary`, else empty
/// summaries (the row pass needs only the checksums).
pub fn message_rows(
    conn: &Connection,
    mailbox: &str,
    with_summary: bool,
) -> Result<Vec<(MessageMeta, i64, Vec<u8>)>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, summary_crc, {} FROM messages WHERE mailbox = ?1 ORDER BY uid",
        if with_summary { "summary" } else { "X''" }
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([mailbox], |r| {
        Ok((
            message_from_row(r)?,
            r.get::<_, i64>(12)?,
            r.get::<_, Vec<u8>>(13)?,
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A cache entry as stored: the row's blob (hex), `summary_crc`, the summary.
pub type CacheEntry = (String, i64, Vec<u8>);

/// The cache entries of some messages, by UID.
pub fn cache_entries(
    conn: &Connection,
    mailbox: &str,
    uids: &[u32],
) -> Result<std::collections::HashMap<u32, CacheEntry>> {
    let mut stmt = conn.prepare_cached(
        "SELECT blob, summary_crc, summary FROM messages WHERE mailbox = ?1 AND uid = ?2",
    )?;
    let mut out = std::collections::HashMap::new();
    for uid in uids {
        if let Some(row) = stmt
            .query_row(params![mailbox, uid], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
        {
            out.insert(*uid, row);
        }
    }
    Ok(out)
}

/// Every tombstone of a mailbox: UID → MODSEQ.
pub fn tombstones(
    conn: &Connection,
    mailbox: &str,
) -> Result<std::collections::BTreeMap<u32, u64>> {
    let mut stmt =
        conn.prepare_cached("SELECT uid, modseq FROM expunged WHERE mailbox = ?1 ORDER BY uid")?;
    let rows = stmt.query_map([mailbox], |r| {
        Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(["INBOX"], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// SELECT's view of a mailbox, and the fixed columns every scan starts
    /// from, are read from the covering index, not from the rows with their
    /// summaries (the whole point of `messages_meta`), and in UID order
    /// without a sort.
    #[test]
    fn message_scans_read_the_covering_index() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("index.sqlite")).unwrap();
        for sql in [
            "SELECT uid, modseq, flags FROM messages WHERE mailbox = ?1 ORDER BY uid".to_string(),
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE mailbox = ?1 ORDER BY uid"),
        ] {
            let plan = plan(&conn, &sql);
            assert!(
                plan.iter()
                    .any(|step| step.contains("COVERING INDEX messages_meta")),
                "{sql}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{sql}: {plan:?}"
            );
        }
    }
}
