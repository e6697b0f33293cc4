//! The server-wide state on the PostgreSQL backend: the status page, the
//! SMS outbox and alert log, spam blocks, admin tokens, status-page
//! subscribers and their notices, server annotations.
//!
//! Authoritative in PostgreSQL as a log: every server-wide record is
//! appended to `server_changes`, numbered under the one `server_stream`
//! row, in the transaction that makes the change. Each node derives its
//! own copy of the state from that log into a SQLite file in its data
//! directory (`pg-server-cache.sqlite`), with the embedded store's very
//! tables and `directory::apply`, so every rule and query of that state is
//! written once. The copy is derived data, as the embedded store's indexes
//! are: deleted, it is rebuilt from the log; made from another database, it
//! is thrown away.
//!
//! Why not tables per kind in PostgreSQL: this state is small and written
//! rarely (an incident, an SMS, a block), read often (every status page and
//! SMTP connection), and its rules are already written, tested, over these
//! SQLite tables. A writer that changes it takes the `server_stream` row
//! lock, catches its copy up to the log, plans against the copy and writes
//! both; mail never takes that lock.

use crate::directory;
use crate::error::{Result, StoreError};
use crate::record::Record;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The copy's own bookkeeping: which database it was derived from and up
/// to which entry of its log.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS pg_stream (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    database TEXT NOT NULL,
    seq INTEGER NOT NULL
);";

/// Largest number of pooled read connections.
const READERS_MAX: usize = 16;

pub(crate) struct ServerCache {
    path: PathBuf,
    /// The writers' connection (one writer at a time holds the
    /// `server_stream` lock, and then this).
    pub(crate) writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl ServerCache {
    /// Opens the copy in `dir` for the database `database_id`; a copy of
    /// another database (or a damaged one) is replaced by an empty one,
    /// which catching up refills.
    pub(crate) fn open(dir: &Path, database_id: &str) -> Result<ServerCache> {
        let path = dir.join("pg-server-cache.sqlite");
        let conn = match Self::open_for(&path, database_id) {
            Ok(Some(conn)) => conn,
            other => {
                if let Err(e) = other {
                    tracing::warn!(event = "server_cache_replaced", error = %e, "the copy of the server-wide state is unreadable; rebuilding it from PostgreSQL");
                } else {
                    tracing::info!(
                        event = "server_cache_replaced",
                        "the copy of the server-wide state is of another database; rebuilding it"
                    );
                }
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Self::open_for(&path, database_id)?.ok_or_else(|| {
                    StoreError::corrupt("a new copy of the server-wide state is not empty")
                })?
            }
        };
        Ok(ServerCache {
            path,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The copy at `path` if it is of `database_id` (made so when new).
    fn open_for(path: &Path, database_id: &str) -> Result<Option<Connection>> {
        let conn = directory::open(path)?;
        conn.execute_batch(SCHEMA)?;
        let found: Option<String> = conn
            .query_row("SELECT database FROM pg_stream WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()?;
        match found {
            Some(id) if id == database_id => Ok(Some(conn)),
            Some(_) => Ok(None),
            None => {
                conn.execute(
                    "INSERT INTO pg_stream (one, database, seq) VALUES (1, ?1, 0)",
                    [database_id],
                )?;
                Ok(Some(conn))
            }
        }
    }

    /// How far the copy is (the last log entry applied).
    pub(crate) fn seq(conn: &Connection) -> Result<i64> {
        Ok(conn.query_row("SELECT seq FROM pg_stream WHERE one = 1", [], |r| r.get(0))?)
    }

    /// Applies one log entry to the copy (inside the caller's transaction).
    pub(crate) fn apply(conn: &Connection, seq: i64, record: &Record) -> Result<()> {
        directory::apply(conn, seq.max(0) as u64, record)?;
        conn.execute("UPDATE pg_stream SET seq = ?1 WHERE one = 1", params![seq])?;
        Ok(())
    }

    /// Applies log entries read from `server_changes` (in order).
    pub(crate) fn apply_log(conn: &Connection, entries: &[(i64, String)]) -> Result<()> {
        for (seq, text) in entries {
            let record: Record = serde_json::from_str(text).map_err(|e| {
                StoreError::corrupt(format!("server change {seq} is undecodable: {e}"))
            })?;
            Self::apply(conn, *seq, &record)?;
        }
        Ok(())
    }

    /// A read connection (from the pool, or new).
    pub(crate) fn reader(&self) -> Result<Connection> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => {
                let conn = Connection::open(&self.path)?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                Ok(conn)
            }
        }
    }

    pub(crate) fn put_back(&self, conn: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < READERS_MAX {
            pool.push(conn);
        }
    }
}
