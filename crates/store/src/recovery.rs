//! Startup recovery: bring every derived index up to the end of the journal.
//!
//! Procedure (also in ARCHITECTURE.md):
//! 1. Read `applied_lsn` of the server index and of every user index. An index
//!    that cannot be opened is moved aside (`index.sqlite.damaged-<time>`) and
//!    rebuilt from LSN 1: containment, one user only.
//! 2. Read the journal from the smallest applied LSN; a torn tail of the last
//!    segment (a batch that was never acknowledged) is cut off.
//! 3. Apply each record to each index whose `applied_lsn` is below it, in order.
//!    Messages re-derive their cache entry from the blob.

use crate::blobs;
use crate::directory;
use crate::error::{Result, StoreError};
use crate::index;
use crate::journal;
use crate::paths::Paths;
use crate::record::{Lsn, Record};
use rusqlite::Connection;
use std::collections::HashMap;

pub struct Recovered {
    pub server: Connection,
    pub next_lsn: Lsn,
    /// Records applied to some index during recovery.
    pub replayed: u64,
}

struct UserState {
    conn: Connection,
    applied: Lsn,
}

fn open_user(paths: &Paths, user: &str) -> Result<UserState> {
    let path = paths.user_index(user);
    match index::open(&path).and_then(|conn| {
        if index::rebuilding(&conn)? {
            // Reconstruct was refilling it when the server stopped.
            return Err(StoreError::corrupt("index was being rebuilt"));
        }
        let applied = index::applied_lsn(&conn)?;
        Ok(UserState { conn, applied })
    }) {
        Ok(state) => Ok(state),
        Err(e) => {
            let aside =
                path.with_extension(format!("sqlite.damaged-{}", crate::writer::now_seconds()));
            tracing::error!(event = "index_damaged", user, error = %e, moved_to = %aside.display(), "user index unreadable; rebuilding it from the journal");
            for suffix in ["", "-wal", "-shm"] {
                let from = format!("{}{suffix}", path.display());
                let to = format!("{}{suffix}", aside.display());
                let _ = std::fs::rename(from, to);
            }
            let conn = index::open(&path)?;
            Ok(UserState { conn, applied: 0 })
        }
    }
}

pub fn recover(paths: &Paths, limits: &mime::Limits) -> Result<Recovered> {
    journal::restore_from_packs(&paths.journal_dir(), &paths.blobs_dir())?;
    let server = directory::open(&paths.server_index())?;
    let server_applied = index::applied_lsn(&server)?;
    let mut users: HashMap<String, UserState> = HashMap::new();
    for entry in std::fs::read_dir(paths.users_dir())? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let state = open_user(paths, &name)?;
        // An empty index of a user the directory does not know is debris (a batch
        // that was refused after opening it); it would force a replay from LSN 1 at
        // every start. A known user's empty index is a real rebuild and stays.
        if state.applied == 0 && server_applied > 0 && !directory::user_exists(&server, &name)? {
            drop(state);
            let _ = std::fs::remove_dir_all(paths.user_dir(&name));
            continue;
        }
        users.insert(name, state);
    }
    // A user the directory knows whose index is gone gets a fresh one, rebuilt from LSN 1.
    for name in directory::users(&server)? {
        if let std::collections::hash_map::Entry::Vacant(slot) = users.entry(name) {
            std::fs::create_dir_all(paths.user_dir(slot.key()))?;
            let state = open_user(paths, slot.key())?;
            slot.insert(state);
        }
    }
    let from = users
        .values()
        .map(|u| u.applied)
        .chain([server_applied])
        .min()
        .unwrap_or(0)
        + 1;
    let mut replayed = 0u64;
    // Pass 1: the server index (users, aliases, where every blob is now). It needs
    // no blob bytes, and pass 2 then reads each blob from its final location, so
    // blobs that garbage collection moved later in the journal are still found.
    let pass1 = |server: &Connection| {
        server.execute_batch("BEGIN")?;
        let read = journal::read_all(&paths.journal_dir(), from, |entry| {
            if entry.lsn > server_applied {
                directory::apply(server, entry.lsn, &entry.record)?;
                index::set_applied_lsn(server, entry.lsn)?;
            }
            Ok(())
        });
        match read {
            Ok(next) => server
                .execute_batch("COMMIT")
                .map(|()| next)
                .map_err(StoreError::from),
            Err(e) => {
                let _ = server.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    };
    let next_lsn = match pass1(&server) {
        Err(e) if e.kind == crate::error::ErrorKind::Corrupt => {
            // Damage inside the journal: restore the damaged segments from the
            // copies in the packs' commit blocks, or stop with file and position.
            tracing::error!(event = "journal_damaged", error = %e, "restoring damaged journal segments from the packs");
            let restored =
                journal::restore_damaged_segments(&paths.journal_dir(), &paths.blobs_dir())?;
            if restored == 0 {
                return Err(e);
            }
            pass1(&server)?
        }
        other => other?,
    };
    // Pass 2: the user indexes.
    journal::read_all(&paths.journal_dir(), from, |entry| {
        let lsn = entry.lsn;
        let record = &entry.record;
        let Some(user) = record.user() else {
            return Ok(());
        };
        if !users.contains_key(user) {
            std::fs::create_dir_all(paths.user_dir(user))?;
            users.insert(user.to_string(), open_user(paths, user)?);
        }
        let state = users
            .get_mut(user)
            .ok_or_else(|| StoreError::corrupt("user state vanished"))?;
        if lsn > state.applied {
            let summary = match record {
                Record::MessageAdded { blob, uid, .. } => {
                    let raw = match directory::blob_location(&server, blob)? {
                        Some(location) => {
                            match blobs::read_blob(&paths.blobs_dir(), blob, location) {
                                Ok(raw) => raw,
                                Err(e) => {
                                    // One damaged blob must not stop the server: the message is
                                    // indexed, and reading its body answers NO [UNAVAILABLE].
                                    tracing::error!(event = "replay_blob_unreadable", lsn, user, uid, error = %e);
                                    Vec::new()
                                }
                            }
                        }
                        None => {
                            // Collected later: the message is expunged further on in the journal.
                            tracing::debug!(event = "replay_blob_gone", lsn, blob = %blob.to_hex());
                            Vec::new()
                        }
                    };
                    Some(mime::summarize(&raw, limits))
                }
                _ => None,
            };
            // One transaction per record: a crash during replay leaves whole records.
            state.conn.execute_batch("BEGIN")?;
            let applied = index::apply(
                &state.conn,
                lsn,
                record,
                summary.as_ref().map(|s| (s, &[][..])),
            )
            .and_then(|()| index::set_applied_lsn(&state.conn, lsn));
            match applied {
                Ok(()) => state.conn.execute_batch("COMMIT")?,
                Err(e) => {
                    let _ = state.conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
            }
            state.applied = lsn;
            replayed += 1;
            if let Record::UserDeleted { user } = record {
                users.remove(user);
                let _ = std::fs::remove_dir_all(paths.user_dir(user));
            }
        }
        Ok(())
    })?;
    if replayed > 0 {
        tracing::info!(
            event = "journal_replayed",
            records = replayed,
            from_lsn = from,
            next_lsn,
            "indexes brought up to date from the journal"
        );
    }
    Ok(Recovered {
        server,
        next_lsn,
        replayed,
    })
}
