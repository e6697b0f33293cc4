//! Background WAL checkpoints of the per-user indexes.
//!
//! Every user index is a SQLite database in WAL mode. Left to itself, SQLite
//! checkpoints a WAL once it passes 1,000 pages, inside the committing
//! connection: on the writer thread, with two fsyncs, while every caller waits.
//! Until then each WAL only grows, and growing a file is the expensive kind of
//! write (the kernel must allocate and zero fresh page-cache pages; on the
//! benchmark machine a 4 KiB append costs about 7x an overwrite of a cached page).
//!
//! So the writer hands a user's index to this thread after every few commits.
//! A PASSIVE checkpoint here copies the WAL into the database (fsyncing both, off
//! the writer's path) without waiting for, or blocking, anyone. Once the WAL is
//! fully copied, SQLite's next commit to it starts again at the WAL's beginning,
//! overwriting pages that are already cached. SQLite's own auto-checkpoint stays
//! on as the bound if this thread falls behind.
//!
//! A checkpoint never changes what a database holds, only where its pages live,
//! so a request that is dropped (queue full) or fails costs only speed; failures
//! are logged at debug level.

use rusqlite::{Connection, OpenFlags};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Requests waiting for the checkpoint thread; more are dropped.
const QUEUE_MAX: usize = 1024;

pub struct Checkpointer {
    sender: Option<SyncSender<PathBuf>>,
    /// Indexes queued and not yet checkpointed, so a busy user is queued once.
    pending: Arc<Mutex<HashSet<PathBuf>>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start() -> std::io::Result<Checkpointer> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_MAX);
        let pending = Arc::new(Mutex::new(HashSet::new()));
        let handle = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn({
                let pending = pending.clone();
                move || run(receiver, pending)
            })?;
        Ok(Checkpointer {
            sender: Some(sender),
            pending,
            handle: Some(handle),
        })
    }

    /// Asks for a checkpoint of the index at `path`; never blocks.
    pub fn request(&self, path: PathBuf) {
        let Some(sender) = &self.sender else { return };
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.insert(path.clone()) {
                return;
            }
        }
        match sender.try_send(path) {
            Ok(()) => {}
            Err(TrySendError::Full(path) | TrySendError::Disconnected(path)) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&path);
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn run(requests: Receiver<PathBuf>, pending: Arc<Mutex<HashSet<PathBuf>>>) {
    for path in requests {
        pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&path);
        if let Err(e) = checkpoint(&path) {
            tracing::debug!(event = "checkpoint_failed", index = %path.display(), error = %e);
        }
    }
}

fn checkpoint(path: &std::path::Path) -> rusqlite::Result<()> {
    // NO_CREATE: the user may have been deleted since the request.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Same durability as the writer's connections: the checkpoint fsyncs the
    // WAL before copying it and the database before the WAL may be reused.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
