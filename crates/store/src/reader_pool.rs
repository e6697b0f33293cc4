//! Read connections to the user indexes, shared between sessions.
//!
//! A session needs its user's index only while it answers a command, not
//! while it waits for the next one (most of an IMAP session's life: IDLE,
//! or a client between two clicks). A [`crate::UserReader`] therefore
//! borrows a connection when a command first reads, and gives it back here
//! when the session waits again ([`crate::UserReader::release`]); an idle
//! session then holds no SQLite connection, page cache or file descriptors.
//!
//! Bounded: at most `max` connections rest here in all, at most
//! [`PER_USER_MAX`] per user; a connection given back beyond that is closed.
//! A resting connection remembers which file it opened (device and inode):
//! one whose index was replaced since (reconstruct recreating it, a damaged
//! index set aside, a user deleted) is closed, never used.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

/// Connections resting per user: one per session reading at the same moment.
pub const PER_USER_MAX: usize = 4;

/// Which file a connection opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The index file at `path` now; `None` when it is missing.
    pub fn of(path: &Path) -> Option<FileId> {
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

pub struct Pooled {
    pub conn: Connection,
    pub file: FileId,
}

struct Resting {
    by_user: HashMap<String, Vec<Pooled>>,
    /// Users in the order their connections came back, oldest first (with
    /// repeats), for closing the longest-resting when full.
    order: VecDeque<String>,
    count: usize,
}

pub struct ReaderPool {
    max: usize,
    resting: Mutex<Resting>,
}

impl ReaderPool {
    pub fn new(max: usize) -> Self {
        ReaderPool {
            max,
            resting: Mutex::new(Resting {
                by_user: HashMap::new(),
                order: VecDeque::new(),
                count: 0,
            }),
        }
    }

    /// A resting connection of `user` still on the file now at `path`.
    pub fn take(&self, user: &str, path: &Path) -> Option<Pooled> {
        let Some(now) = FileId::of(path) else {
            self.forget(user);
            return None;
        };
        let mut stale = Vec::new();
        let found = {
            let mut guard = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            let resting = &mut *guard;
            let mut found = None;
            if let Some(list) = resting.by_user.get_mut(user) {
                while let Some(pooled) = list.pop() {
                    resting.count -= 1;
                    if pooled.file == now {
                        found = Some(pooled);
                        break;
                    }
                    stale.push(pooled);
                }
                if list.is_empty() {
                    resting.by_user.remove(user);
                }
            }
            found
        };
        drop(stale); // closed outside the lock
        found
    }

    /// Gives a connection back; closed instead when the pool is full.
    pub fn put(&self, user: &str, pooled: Pooled) {
        if self.max == 0 {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut guard = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            let resting = &mut *guard;
            let list = resting.by_user.entry(user.to_string()).or_default();
            if list.len() >= PER_USER_MAX {
                evicted.push(pooled);
            } else {
                list.push(pooled);
                resting.count += 1;
                resting.order.push_back(user.to_string());
            }
            // Full: close the longest-resting connections.
            while resting.count > self.max {
                let Some(oldest) = resting.order.pop_front() else {
                    break;
                };
                if let Some(list) = resting.by_user.get_mut(&oldest) {
                    if !list.is_empty() {
                        evicted.push(list.remove(0));
                        resting.count -= 1;
                    }
                    if list.is_empty() {
                        resting.by_user.remove(&oldest);
                    }
                }
            }
            // Users whose connections were taken leave stale entries in
            // `order`; bound them by rebuilding it.
            if resting.order.len() > 4 * self.max.max(16) {
                resting.order = resting
                    .by_user
                    .iter()
                    .flat_map(|(user, list)| std::iter::repeat_n(user.clone(), list.len()))
                    .collect();
            }
        }
        drop(evicted); // closed outside the lock
    }

    /// Closes every resting connection of `user` (its index is going away).
    pub fn forget(&self, user: &str) {
        let gone = {
            let mut guard = self.resting.lock().unwrap_or_else(|p| p.into_inner());
            let gone = guard.by_user.remove(user);
            if let Some(list) = &gone {
                guard.count -= list.len();
            }
            gone
        };
        drop(gone);
    }

    /// Connections resting now.
    pub fn len(&self) -> usize {
        self.resting.lock().unwrap_or_else(|p| p.into_inner()).count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pooled(path: &Path) -> Pooled {
        Pooled {
            conn: Connection::open(path).unwrap(),
            file: FileId::of(path).unwrap(),
        }
    }

    #[test]
    fn a_connection_comes_back_to_its_user_only_while_its_file_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        std::fs::write(&path, b"").unwrap();
        let pool = ReaderPool::new(8);
        pool.put("alice", pooled(&path));
        assert!(pool.take("bob", &path).is_none());
        assert!(pool.take("alice", &path).is_some());
        assert!(pool.take("alice", &path).is_none());

        pool.put("alice", pooled(&path));
        // The index is replaced (a new file, a new inode) behind the pool.
        let keep = dir.path().join("old.sqlite");
        std::fs::rename(&path, &keep).unwrap();
        std::fs::write(&path, b"").unwrap();
        assert!(pool.take("alice", &path).is_none());
        assert!(pool.is_empty());
        std::fs::remove_file(&path).unwrap();
        assert!(pool.take("alice", &path).is_none(), "missing file");
    }

    #[test]
    fn bounded_in_all_and_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sqlite");
        std::fs::write(&path, b"").unwrap();
        let pool = ReaderPool::new(6);
        for _ in 0..PER_USER_MAX + 3 {
            pool.put("alice", pooled(&path));
        }
        assert_eq!(pool.len(), PER_USER_MAX);
        for user in ["b", "c", "d", "e"] {
            pool.put(user, pooled(&path));
        }
        assert_eq!(pool.len(), 6);
        // The longest-resting went first: alice's.
        assert!(pool.take("e", &path).is_some());
        pool.forget("alice");
        assert!(pool.take("alice", &path).is_none());
        for _ in 0..1000 {
            pool.put("b", pooled(&path));
            let _ = pool.take("b", &path);
        }
        let resting = pool.resting.lock().unwrap();
        assert!(resting.order.len() <= 64, "{}", resting.order.len());
    }
}
