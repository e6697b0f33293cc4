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
";

pub fn open(path: &Path) -> Result<Connection> {
    open_db(path, SCHEMA)
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

/// Blobs of one pack with their reference counts.
pub fn pack_blobs(conn: &Connection, pack: u32) -> Result<Vec<(BlobHash, BlobLocation, i64)>> {
    let mut stmt =
        conn.prepare("SELECT hash, pack, offset, length, refs FROM blobs WHERE pack = ?1")?;
    let rows = stmt.query_map([pack], |r| {
        let hash: String = r.get(0)?;
        Ok((
            hash,
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

/// Blobs no message references any more: garbage for the collector.
pub fn unreferenced_blobs(conn: &Connection) -> Result<Vec<(BlobHash, BlobLocation)>> {
    let mut stmt = conn.prepare("SELECT hash, pack, offset, length FROM blobs WHERE refs <= 0")?;
    let rows = stmt.query_map([], |r| {
        let hash: String = r.get(0)?;
        Ok((
            hash,
            BlobLocation {
                pack: r.get(1)?,
                offset: r.get::<_, i64>(2)? as u64,
                length: r.get::<_, i64>(3)? as u64,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (hash, location) = row?;
        if let Some(hash) = BlobHash::from_hex(&hash) {
            out.push((hash, location));
        }
    }
    Ok(out)
}

/// Applies one record; the caller records the LSN (see `index::apply`).
pub fn apply(conn: &Connection, lsn: Lsn, record: &Record) -> Result<()> {
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
        Record::MailboxCreated { .. }
        | Record::MailboxRenamed { .. }
        | Record::MailboxDeleted { .. }
        | Record::Subscribed { .. }
        | Record::FlagsChanged { .. } => {}
    }
    let _ = lsn;
    Ok(())
}
