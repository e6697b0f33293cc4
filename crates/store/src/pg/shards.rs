//! Users spread over several PostgreSQL databases, the shards of
//! `[[store.shards]]` (docs/design/postgres-cluster.md, section 8).
//!
//! Every shard holds the whole schema. A user's account and mail live on one
//! shard; the first shard also holds the directory (`directory_users`: name
//! → shard and state) and the server-wide state (aliases, status page,
//! outboxes, blocks, tokens). One user's changes, including COPY and MOVE
//! between their own mailboxes and quota, stay one transaction on one
//! database; nothing of a user's mail is ever split across two.
//!
//! Each node keeps a cache of name → shard. An entry is trusted for
//! [`ROUTE_TTL`] at most, and dropped at once when this node hears that the
//! user moved (`pg::listen`), so a session whose user moved away notices
//! within that time even if every notification was lost; a moved user's
//! rows stay on the shard they left for longer than that after the
//! directory changed (`[store] move_grace_secs`, at least twice as long),
//! so a read does not find them gone. Each route also carries how many times
//! the user moved: a session that began before a move away and back sees
//! the count differ, and never reads with the id the user had before.
//!
//! Without `[[store.shards]]` there is one shard, `main`, and routing costs
//! nothing: every answer is "the only one".

use crate::error::{ErrorKind, Result, StoreError};
use crate::pg::backend::{Pg, pg_read};
use crate::pg::read;
use crate::writer::Request;
use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The one shard's name when `[store] postgres` names a single database.
pub const SINGLE: &str = "main";

/// Longest a node trusts its cached answer to "which shard holds this user",
/// in seconds (`[store] move_grace_secs` must be longer).
pub const ROUTE_TTL_SECS: u64 = 5;
pub(crate) const ROUTE_TTL: Duration = Duration::from_secs(ROUTE_TTL_SECS);

/// Most names the route cache holds; past it the cache starts again empty
/// (each entry costs one directory read to learn again).
const ROUTES_MAX: usize = 200_000;

/// One database of users.
pub(crate) struct Shard {
    pub(crate) pg: Arc<Pg>,
    /// Its writer threads' queue (`None` once the store shuts down).
    pub(crate) requests: Mutex<Option<SyncSender<Request>>>,
}

pub(crate) struct Shards {
    /// In `[[store.shards]]` order; the first holds the directory.
    pub(crate) list: Vec<Shard>,
    /// Name → (shard, moves, when read).
    routes: RwLock<HashMap<String, (usize, i64, Instant)>>,
    /// How long a change waits out a move's switch-over.
    pub(crate) move_wait: Duration,
}

/// A user's row in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub shard: String,
    /// `creating`, `active`, `moving` or `deleting`.
    pub state: String,
    /// The shard a move goes to, while `moving`.
    pub move_to: Option<String>,
    /// How many times the user moved.
    pub moves: i64,
}

impl Shards {
    pub(crate) fn new(list: Vec<Shard>, move_wait: Duration) -> Shards {
        Shards {
            list,
            routes: RwLock::new(HashMap::new()),
            move_wait,
        }
    }

    /// The shard holding the directory and the server-wide state.
    pub(crate) fn directory(&self) -> &Pg {
        &self.list[0].pg
    }

    /// Whether users are spread over more than one database.
    pub(crate) fn sharded(&self) -> bool {
        self.list.len() > 1
    }

    pub(crate) fn named(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|s| s.pg.shard == name)
    }

    pub(crate) fn pg(&self, index: usize) -> &Pg {
        &self.list[index].pg
    }

    pub(crate) fn sender(&self, index: usize) -> Result<SyncSender<Request>> {
        self.list[index]
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::new(ErrorKind::Unavailable, "store is shutting down"))
    }

    /// Stops taking changes: the writers end when their queues drain.
    pub(crate) fn close(&self) {
        for shard in &self.list {
            shard
                .requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
    }

    /// The shard that holds `user`'s mail now, from this node's cache or the
    /// directory; `None` when the directory has no such user.
    pub(crate) fn route(&self, user: &str) -> Result<Option<usize>> {
        Ok(self.placement(user)?.map(|(index, _)| index))
    }

    /// [`route`](Self::route), with how many times the user moved: a
    /// session compares both with what it began with.
    pub(crate) fn placement(&self, user: &str) -> Result<Option<(usize, i64)>> {
        if !self.sharded() {
            return Ok(Some((0, 0)));
        }
        if let Some((index, moves, at)) = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(user)
            && at.elapsed() < ROUTE_TTL
        {
            return Ok(Some((*index, *moves)));
        }
        // The answer is as old as the moment it was asked for, not as the
        // moment it came back.
        let asked = Instant::now();
        let entry = self.entry(user)?;
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entry else {
            routes.remove(user);
            return Ok(None);
        };
        let index = self.index_of(&entry.shard, user)?;
        if routes.len() >= ROUTES_MAX {
            routes.clear();
        }
        routes.insert(user.to_string(), (index, entry.moves, asked));
        Ok(Some((index, entry.moves)))
    }

    /// The shard of a user that must exist (`NotFound` otherwise).
    pub(crate) fn route_existing(&self, user: &str) -> Result<usize> {
        self.route(user)?
            .ok_or_else(|| StoreError::not_found(format!("no such user {user}")))
    }

    /// Drops what this node remembers of `user`'s shard: the next access
    /// asks the directory.
    pub(crate) fn forget(&self, user: &str) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    pub(crate) fn index_of(&self, shard: &str, user: &str) -> Result<usize> {
        self.named(shard).ok_or_else(|| {
            StoreError::new(
                ErrorKind::Unavailable,
                format!(
                    "the directory puts {user} on shard {shard:?}, which this node's [[store.shards]] does not list"
                ),
            )
        })
    }

    /// The directory's row of `user`, read now.
    pub fn entry(&self, user: &str) -> Result<Option<DirectoryEntry>> {
        pg_read!(self.directory(), |c| read::directory_entry(c, user))
    }

    /// Where a new user goes: the shard with the fewest accounts, then the
    /// fewest stored bytes, then the first listed. A shard that does not
    /// answer is passed over (its accounts wait for it; new ones need not).
    pub(crate) fn place(&self) -> Result<usize> {
        let accounts = pg_read!(self.directory(), |c| read::accounts_per_shard(c))?;
        let mut best: Option<(u64, u64, usize)> = None;
        for (index, shard) in self.list.iter().enumerate() {
            let bytes = match pg_read!(&shard.pg, |c| read::stored_bytes(c)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind == ErrorKind::Unavailable => {
                    tracing::warn!(event = "shard_unavailable", shard = %shard.pg.shard, error = %e, "new users go to other shards meanwhile");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let load = (accounts.get(&shard.pg.shard).copied().unwrap_or(0), bytes);
            if best.is_none_or(|(a, b, _)| load < (a, b)) {
                best = Some((load.0, load.1, index));
            }
        }
        best.map(|(_, _, index)| index).ok_or_else(|| {
            StoreError::new(
                ErrorKind::Unavailable,
                "no shard answers: a new user waits for one",
            )
        })
    }

    /// Takes `user`'s name in the directory for a new account, on the shard
    /// [`place`](Self::place) picks: the row is `creating` until the account
    /// exists there. An unfinished creation of the same name (a node that
    /// stopped half way) is finished on the shard it chose.
    pub(crate) fn reserve(&self, user: &str) -> Result<usize> {
        let place = self.place()?;
        let shard = self.list[place].pg.shard.clone();
        let taken = pg_read!(self.directory(), |c| read::reserve_name(c, user, &shard))?;
        if taken {
            return Ok(place);
        }
        match self.entry(user)? {
            Some(entry) if entry.state == "creating" => self.index_of(&entry.shard, user),
            Some(entry) if entry.state == "deleting" => Err(StoreError::new(
                ErrorKind::Unavailable,
                format!("user {user} is being deleted; try again when that is done"),
            )),
            _ => Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("user {user} exists"),
            )),
        }
    }

    /// Marks a reserved name's account, made on shard `index`, as made. A
    /// row that is no longer this reservation (released and taken again
    /// meanwhile) is a conflict, never silently left as it is.
    pub(crate) fn activate(&self, user: &str, index: usize) -> Result<()> {
        let marked = pg_read!(self.directory(), |c| read::set_directory_state(
            c, user, "creating", "active"
        ))?;
        if marked {
            return Ok(());
        }
        match self.entry(user)? {
            Some(entry) if entry.state == "active" && entry.shard == self.list[index].pg.shard => {
                Ok(())
            }
            _ => Err(StoreError::new(
                ErrorKind::Conflict,
                format!(
                    "the directory's row of {user} changed while the account was made; check it with `user list` and try again"
                ),
            )),
        }
    }

    /// Gives a reserved name back (its account could not be made).
    pub(crate) fn release(&self, user: &str) -> Result<()> {
        pg_read!(self.directory(), |c| read::drop_directory_entry(
            c,
            user,
            Some("creating")
        ))
    }
}
