//! Message contents on PostgreSQL: the only code that touches the `blobs`
//! table, so that the interface stays this narrow and an S3-compatible
//! object store can take the bytes later (the issue asks for that door).
//!
//! Contents are addressed by their SHA-256 and stored once per database,
//! whoever's messages name them. What the rest of the backend may do:
//!
//! - [`put`] a content (in the delivering transaction: a refused delivery
//!   leaves nothing), or [`put_missing`] a row without bytes for one lost at
//!   the source of an import, which then answers as damaged;
//! - ask which of some contents are [`known`];
//! - [`get`] one, always checked against its hash; [`get_rows`] several as
//!   they are stored, for a copy to another shard;
//! - find [`collectable`] ones and [`remove_if_unnamed`] them (GC).
//!
//! The foreign key `messages.blob -> blobs(hash)` is what makes GC safe
//! against a delivery racing it (see `PgTx::collect_garbage`). With an
//! object store, `blobs` would keep a row per content (hash, size, time)
//! for that key and the bytes would move out: only this module changes.

use crate::error::{Result, StoreError};
use crate::pg::db::Db;
use crate::pg::db_error;
use crate::types::BlobHash;

/// Stores a content, unless one with its hash is stored already.
pub(crate) async fn put(db: &impl Db, hash: &BlobHash, data: &[u8], now: i64) -> Result<()> {
    let size = i64::try_from(data.len()).unwrap_or(i64::MAX);
    db.execute(
        "INSERT INTO blobs (hash, size, data, stored_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hash) DO NOTHING",
        &[&hash.0.as_slice(), &size, &data, &now],
    )
    .await
    .map(|_| ())
    .map_err(|e| db_error("store a content", &e))
}

/// Notes a content whose bytes are lost: a row without them (size 0), so
/// the messages naming it keep their foreign key and answer as damaged.
pub(crate) async fn put_missing(db: &impl Db, hash: &BlobHash, now: i64) -> Result<()> {
    db.execute(
        "INSERT INTO blobs (hash, size, data, stored_at) VALUES ($1, 0, ''::bytea, $2)
         ON CONFLICT (hash) DO NOTHING",
        &[&hash.0.as_slice(), &now],
    )
    .await
    .map(|_| ())
    .map_err(|e| db_error("note a missing content", &e))
}

/// Of `hashes` (raw SHA-256 bytes), those stored.
pub(crate) async fn known(db: &impl Db, hashes: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let rows = db
        .query("SELECT hash FROM blobs WHERE hash = ANY($1)", &[&hashes])
        .await
        .map_err(|e| db_error("look contents up", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether one content is stored.
pub(crate) async fn is_known(db: &impl Db, hash: &BlobHash) -> Result<bool> {
    Ok(!known(db, &[hash.0.to_vec()]).await?.is_empty())
}

/// A content's bytes, checked against its hash (`Corrupt` when missing or
/// damaged: never served as if it were the message).
pub(crate) async fn get(db: &impl Db, hash: &BlobHash) -> Result<Vec<u8>> {
    let found = db
        .query_opt(
            "SELECT data FROM blobs WHERE hash = $1",
            &[&hash.0.as_slice()],
        )
        .await
        .map_err(|e| db_error("read a content", &e))?
        .ok_or_else(|| StoreError::corrupt(format!("blob {} missing", hash.to_hex())))?;
    let data: Vec<u8> = found.get(0);
    if BlobHash::of(&data) != *hash {
        return Err(StoreError::corrupt(format!(
            "blob {} fails its hash",
            hash.to_hex()
        )));
    }
    Ok(data)
}

/// One stored content as it is: hash, size, bytes, when stored.
pub(crate) struct Row {
    pub hash: Vec<u8>,
    pub size: i64,
    pub data: Vec<u8>,
    pub stored_at: i64,
}

/// The stored rows of `hashes`, unchecked (the caller checks them).
pub(crate) async fn get_rows(db: &impl Db, hashes: &[&Vec<u8>]) -> Result<Vec<Row>> {
    let rows = db
        .query(
            "SELECT hash, size, data, stored_at FROM blobs WHERE hash = ANY($1)",
            &[&hashes],
        )
        .await
        .map_err(|e| db_error("read contents", &e))?;
    Ok(rows
        .iter()
        .map(|r| Row {
            hash: r.get(0),
            size: r.get(1),
            data: r.get(2),
            stored_at: r.get(3),
        })
        .collect())
}

/// Stores a row read from another database as it is (a move's copy).
pub(crate) async fn put_row(db: &impl Db, row: &Row) -> Result<()> {
    db.execute(
        "INSERT INTO blobs (hash, size, data, stored_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hash) DO NOTHING",
        &[&row.hash, &row.size, &row.data, &row.stored_at],
    )
    .await
    .map(|_| ())
    .map_err(|e| db_error("store a content", &e))
}

/// Up to 1,000 contents stored before `before` that no message names: hash
/// and size.
pub(crate) async fn collectable(db: &impl Db, before: i64) -> Result<Vec<(Vec<u8>, i64)>> {
    let rows = db
        .query(
            "SELECT hash, size FROM blobs b
             WHERE stored_at < $1
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.hash)
             LIMIT 1000",
            &[&before],
        )
        .await
        .map_err(|e| db_error("find unreferenced contents", &e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Removes a content if still no message names it: how many were removed
/// (0 or 1). A message naming it meanwhile fails the statement on the
/// foreign key (SQLSTATE 23503), which the caller's savepoint takes.
pub(crate) async fn remove_if_unnamed(
    db: &impl Db,
    hash: &[u8],
) -> std::result::Result<u64, tokio_postgres::Error> {
    db.execute(
        "DELETE FROM blobs b WHERE hash = $1
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob = b.hash)",
        &[&hash],
    )
    .await
}
