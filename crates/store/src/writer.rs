//! The writer thread of the embedded store: turns intents into records (the
//! planner, `planner.rs`, over [`EmbeddedTx`]), makes them durable with one
//! fsync per batch (group commit), then applies them to the derived indexes.
//!
//! Order of a batch, which is what makes "durable before acknowledged" hold:
//! 1. plan each intent against the indexes (inside open transactions, so later
//!    intents of the batch see earlier ones) and apply its records there;
//! 2. append new blobs to the pack and all records to the journal;
//! 3. fsync pack, then journal (and their directories when a file was created);
//! 4. commit the server index, then hand the user-index transactions to the
//!    committer thread (`committer.rs`), which commits them, notifies watchers
//!    and answers the callers while this thread plans the next batch.
//!
//! A failure before 4 rolls every index transaction back and answers every
//! intent of the batch with an error: nothing half-done is ever visible.

use crate::acl::{self, Rights};
use crate::blobs::{self, BlobLocation, PackWriter};
use crate::committer::{Committer, Job};
use crate::directory;
use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{self, MailboxInfo, MessageMeta};
use crate::intent::{Fix, Intent, MailboxRef, Outcome, Prepared, RepairGuard};
use crate::journal::{JournalWriter, encode_frame};
use crate::notify::Notifier;
use crate::paths::Paths;
use crate::planner::{PlanConfig, Planner};
use crate::record::{Entry, Lsn, Record};
use crate::subscribers::{self, Notice, Subscriber};
use crate::tx::Tx;
use crate::types::BlobHash;
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// With no work for this long, the writer fsyncs a lazily written journal tail.
pub const JOURNAL_IDLE_SYNC: std::time::Duration = std::time::Duration::from_millis(50);
/// The journal copy of pack-committed batches is never more than this behind.
pub const JOURNAL_LAG_MAX: std::time::Duration = std::time::Duration::from_millis(200);

pub struct Request {
    pub intents: Vec<Intent>,
    pub reply: tokio::sync::oneshot::Sender<Vec<Result<Outcome>>>,
}

pub struct WriterConfig {
    /// Most intents committed together in one batch (one fsync).
    pub batch_intents_max: usize,
    /// Quota of a user who has none of their own: bytes, messages (`None`: no limit).
    pub default_quota: (Option<u64>, Option<u64>),
    /// Most per-user index connections kept open.
    pub user_connections_max: usize,
    pub summary_limits: mime::Limits,
}

pub struct Writer {
    pub paths: Paths,
    pub config: WriterConfig,
    pub journal: JournalWriter,
    pub packs: PackWriter,
    pub server: Connection,
    pub users: HashMap<String, UserConn>,
    /// Users whose connection is with the committer thread.
    pub lent: std::collections::HashSet<String>,
    pub committer: Committer,
    pub use_counter: u64,
    pub notifier: Arc<Notifier>,
    /// Since when journal appends of pack-committed batches wait for an fsync.
    pub journal_unsynced: Option<Instant>,
    /// Set after an fsync failure: the writer refuses everything from then on.
    pub failed: Option<StoreError>,
    /// The last LSN of a batch that touched each user since the writer
    /// started (reconstruct's `Recreate` guard).
    pub last_touch: HashMap<String, Lsn>,
    /// Users whose index a `Recreate` repair of this batch may create afresh.
    pub recreating: std::collections::HashSet<String>,
    /// The user an `AddUser` being planned creates (its index may be created).
    pub creating_user: Option<String>,
    pub stats: Arc<Stats>,
    /// Set while this server is a replica: only replication, repairs of
    /// derived data and garbage collection are taken.
    pub read_only: Arc<std::sync::atomic::AtomicBool>,
}

/// The writer's open connection to one user's index.
pub struct UserConn {
    pub conn: Connection,
    /// `use_counter` at the last use, for least-recently-used eviction.
    pub used: u64,
    /// Commits since its WAL was last handed to the checkpointer.
    pub commits: u32,
}

/// Counters of the writer, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches committed (each costs one journal fsync).
    pub batches: std::sync::atomic::AtomicU64,
    /// Intents answered successfully.
    pub intents: std::sync::atomic::AtomicU64,
    /// Journal records written.
    pub records: std::sync::atomic::AtomicU64,
    /// Records replayed into indexes when the store was opened.
    pub replayed: std::sync::atomic::AtomicU64,
    /// Requests sent to the writer and not yet answered (the write backlog).
    pub waiting: std::sync::atomic::AtomicU64,
    /// The last LSN that is durable (what replication may ship).
    pub durable_lsn: std::sync::atomic::AtomicU64,
}

/// State of the batch being built.
struct Batch {
    first_lsn: Lsn,
    entries: Vec<Entry>,
    /// Blobs written by this batch, not yet in the server index's committed state.
    new_blobs: HashMap<BlobHash, BlobLocation>,
    touched_users: BTreeSet<String>,
    deleted_users: Vec<String>,
    /// Packs emptied by garbage collection, deleted once the batch is durable.
    dead_packs: Vec<u32>,
    /// Blobs written ahead by the pre-pass whose `BlobStored` record is not yet emitted.
    unannounced: std::collections::HashSet<BlobHash>,
    /// An error that stops the whole batch (pack or journal I/O).
    fatal: Option<StoreError>,
    now: i64,
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Writer {
    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match requests.recv_timeout(JOURNAL_IDLE_SYNC) {
                Ok(first) => first,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    self.sync_journal_or_fail();
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            let mut intents = batch[0].intents.len();
            while intents < self.config.batch_intents_max {
                match requests.try_recv() {
                    Ok(next) => {
                        intents += next.intents.len();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch);
            if self
                .journal_unsynced
                .is_some_and(|since| since.elapsed() >= JOURNAL_LAG_MAX)
            {
                self.sync_journal_or_fail();
            }
        }
        self.sync_journal_or_fail();
        self.committer.stop();
        tracing::info!(event = "writer_stopped", "store writer stopped");
    }

    fn sync_journal_or_fail(&mut self) {
        if let Err(e) = self.sync_journal() {
            tracing::error!(event = "store_failed", error = %e, "journal fsync failed: the store refuses all further changes until restarted");
            self.failed = Some(e);
        }
    }

    fn commit(&mut self, requests: Vec<Request>) {
        self.reclaim(None);
        if let Some(e) = &self.failed {
            let error = StoreError::new(
                ErrorKind::Unavailable,
                format!("store stopped after an earlier failure: {e}"),
            );
            for request in requests {
                let _ = request
                    .reply
                    .send(request.intents.iter().map(|_| Err(error.clone())).collect());
            }
            return;
        }
        for request in &requests {
            for intent in &request.intents {
                if let Intent::Repair {
                    user,
                    guard: RepairGuard::Recreate { at_lsn },
                    ..
                } = intent
                {
                    self.prepare_recreate(user, *at_lsn);
                }
            }
        }
        let started = Instant::now();
        let mut batch = Batch {
            first_lsn: self.journal.next_lsn(),
            entries: Vec::new(),
            new_blobs: HashMap::new(),
            touched_users: BTreeSet::new(),
            deleted_users: Vec::new(),
            dead_packs: Vec::new(),
            unannounced: Default::default(),
            fatal: None,
            now: now_seconds(),
        };
        if let Err(e) = index::exec(&self.server, "BEGIN IMMEDIATE") {
            let error = e;
            for request in requests {
                let _ = request
                    .reply
                    .send(request.intents.iter().map(|_| Err(error.clone())).collect());
            }
            return;
        }
        let mut answers: Vec<Vec<Result<Outcome>>> = Vec::with_capacity(requests.len());
        if let Err(e) = self.write_blobs_ahead(&mut batch, &requests) {
            batch.fatal = Some(e);
        }
        for request in &requests {
            if batch.fatal.is_some() {
                break;
            }
            let mut results = Vec::with_capacity(request.intents.len());
            for intent in &request.intents {
                results.push(self.plan_contained(&mut batch, intent));
                if batch.fatal.is_some() {
                    break;
                }
            }
            answers.push(results);
        }
        let planned_us = started.elapsed().as_micros() as u64;
        let durable = match batch.fatal.take() {
            Some(e) => Err(e),
            None => self.make_durable(&mut batch).inspect_err(|e| {
                // Any failure on the commit path (a write, an fsync, a rotation) leaves
                // the files in a state this process cannot vouch for: after a failed
                // fsync the kernel may have dropped dirty pages, and retrying would
                // report success for lost data. Stop taking changes; a restart recovers.
                tracing::error!(event = "store_failed", error = %e, "commit failed: the store refuses all further changes until restarted");
                self.failed = Some(e.clone());
            }),
        };
        let durable_us = started.elapsed().as_micros() as u64;
        match durable {
            Ok(()) => {
                let handed_off = batch.deleted_users.is_empty();
                let committed = if handed_off {
                    index::exec(&self.server, "COMMIT")
                } else {
                    self.commit_indexes(&batch)
                };
                if let Err(e) = committed {
                    // The journal holds the batch, so its callers are answered truthfully
                    // below, but an index that missed it would hand out stale UIDs and
                    // reference counts. Stop taking changes; replay at restart repairs it.
                    tracing::error!(event = "store_failed", error = %e, "an index commit failed after the journal fsync; the store refuses further changes until restarted, which replays the journal");
                    self.failed = Some(e);
                }
                if let Some(last) = batch.entries.last() {
                    self.stats
                        .durable_lsn
                        .store(last.lsn, std::sync::atomic::Ordering::Release);
                    self.notifier.notify(DURABLE_WATCH_KEY);
                }
                if batch.entries.iter().any(|e| e.record.is_sms()) {
                    self.notifier.notify(SMS_WATCH_KEY);
                }
                if batch.entries.iter().any(|e| e.record.is_notice()) {
                    self.notifier.notify(NOTICE_WATCH_KEY);
                }
                for user in &batch.deleted_users {
                    self.users.remove(user);
                    let dir = self.paths.user_dir(user);
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(event = "user_dir_remove_failed", user = %user, error = %e);
                    }
                }
                for pack in &batch.dead_packs {
                    let path = blobs::pack_path(&self.paths.blobs_dir(), *pack);
                    match std::fs::remove_file(&path) {
                        Ok(()) => tracing::info!(event = "pack_deleted", pack = *pack),
                        Err(e) => {
                            tracing::warn!(event = "pack_delete_failed", pack = *pack, error = %e)
                        }
                    }
                }
                use std::sync::atomic::Ordering::Relaxed;
                self.stats.batches.fetch_add(1, Relaxed);
                self.stats
                    .records
                    .fetch_add(batch.entries.len() as u64, Relaxed);
                let succeeded = answers.iter().flatten().filter(|r| r.is_ok()).count();
                self.stats.intents.fetch_add(succeeded as u64, Relaxed);
                tracing::debug!(
                    event = "batch_committed",
                    records = batch.entries.len(),
                    requests = requests.len(),
                    planned_us,
                    durable_us,
                    elapsed_us = started.elapsed().as_micros() as u64
                );
                let replies: Vec<_> = requests.into_iter().map(|r| r.reply).zip(answers).collect();
                if handed_off {
                    self.hand_off(&batch, replies);
                } else {
                    for user in &batch.touched_users {
                        self.notifier.notify(user);
                    }
                    for (reply, results) in replies {
                        let _ = reply.send(results);
                    }
                }
            }
            Err(e) => {
                tracing::error!(event = "batch_failed", error = %e, "batch not committed; every change of it is refused");
                self.rollback(&batch);
                for request in requests {
                    let _ = request
                        .reply
                        .send(request.intents.iter().map(|_| Err(e.clone())).collect());
                }
            }
        }
    }

    /// Writes the new blobs of every Append of the batch first, for intents that
    /// will be accepted. A blob whose intent is refused later anyway stays in the
    /// pack unnamed: garbage, dropped when its pack is rewritten.
    fn write_blobs_ahead(&mut self, batch: &mut Batch, requests: &[Request]) -> Result<()> {
        for request in requests {
            for intent in &request.intents {
                let (intent, actor) = match intent {
                    Intent::Acting { actor, intent } => (&**intent, Some(actor.as_str())),
                    intent => (intent, None),
                };
                let Intent::Append {
                    user,
                    mailbox,
                    message,
                    ..
                } = intent
                else {
                    continue;
                };
                // Only for intents that will be accepted: a refused APPEND must not
                // leave bytes behind (nor make everyone wait for their fsync).
                if !directory::user_exists(&self.server, user)?
                    || index::mailbox_by_name(self.user_conn(batch, user)?, mailbox)?.is_none()
                {
                    continue;
                }
                if let Some(actor) = actor.filter(|a| a != user) {
                    let target = MailboxRef::Name(mailbox.clone());
                    let config = self.plan_config();
                    let mut tx = EmbeddedTx::new(self, batch);
                    let mut planner = Planner {
                        tx: &mut tx,
                        config,
                    };
                    match planner.visible_mailbox(user, Some(actor), &target) {
                        Ok((_, rights)) if rights.contains(Rights::INSERT) => {}
                        _ => continue,
                    }
                }
                if batch.new_blobs.contains_key(&message.hash)
                    || directory::blob_location(&self.server, &message.hash)?.is_some()
                {
                    continue;
                }
                let location = self.packs.append(&message.hash, &message.raw)?;
                batch.new_blobs.insert(message.hash, location);
                batch.unannounced.insert(message.hash);
            }
        }
        Ok(())
    }

    fn make_durable(&mut self, batch: &mut Batch) -> Result<()> {
        let last_lsn = batch.first_lsn + batch.entries.len() as Lsn;
        if !batch.entries.is_empty() {
            let last = last_lsn - 1;
            index::set_applied_lsn(&self.server, last)?;
            for user in &batch.touched_users {
                if let Some(open) = self.users.get(user) {
                    index::set_applied_lsn(&open.conn, last)?;
                }
                self.last_touch.insert(user.clone(), last);
            }
        }
        let mut frames = Vec::new();
        for entry in &batch.entries {
            encode_frame(entry, &mut frames)?;
        }
        let count = batch.entries.len() as u64;
        if self.packs.is_dirty() {
            // The batch wrote blobs: its records go into the pack too, and one fsync
            // of the pack makes both durable. The journal copy is fsynced lazily
            // (recovery restores it from the pack if a crash loses it).
            if count > 0 {
                self.packs.append_commit(batch.first_lsn, count, &frames)?;
            }
            self.packs.sync()?;
            if count > 0 {
                self.journal.append(&frames, count)?;
                self.journal_unsynced.get_or_insert_with(Instant::now);
            }
        } else if count > 0 {
            // Records only: the journal fsync is the commit point, and it also
            // makes any lazily written journal tail durable.
            self.journal.append(&frames, count)?;
            self.journal.sync()?;
            self.journal_unsynced = None;
        }
        Ok(())
    }

    /// Before a batch with a `Recreate` repair: if the user's index file is gone
    /// and nothing after `at_lsn` touched the user, closes the connection to the
    /// deleted file and removes its leftover WAL files, so the batch opens a
    /// fresh index. Otherwise the repair is refused as a conflict in `plan`.
    fn prepare_recreate(&mut self, user: &str, at_lsn: Lsn) {
        let path = self.paths.user_index(user);
        if path.exists() || self.last_touch.get(user).is_some_and(|l| *l > at_lsn) {
            return;
        }
        if self.lent.contains(user) {
            self.reclaim(Some(user));
        }
        self.users.remove(user);
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        tracing::warn!(
            event = "index_recreate",
            user,
            at_lsn,
            "user index file is gone; reconstruct refills a fresh one"
        );
        self.recreating.insert(user.to_string());
    }

    /// Makes the journal copy of pack-committed batches durable (idle time, at
    /// most [`JOURNAL_LAG_MAX`] after the oldest of them, before GC, at shutdown).
    fn sync_journal(&mut self) -> Result<()> {
        if self.journal_unsynced.is_some() {
            self.journal.sync()?;
            self.journal_unsynced = None;
        }
        Ok(())
    }

    /// Commits the server index, then every user index of the batch, on this
    /// thread (for the rare batches that delete users; see [`Self::hand_off`]).
    fn commit_indexes(&mut self, batch: &Batch) -> Result<()> {
        // The server index first: a reader that sees a new message in a user index
        // must find its blob's location.
        let mut first_error = index::exec(&self.server, "COMMIT").err();
        for user in &batch.touched_users {
            if let Some(open) = self.users.get(user)
                && let Err(e) = index::exec(&open.conn, "COMMIT")
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Lends the batch's user connections, inside their open transactions, to the
    /// committer thread, which commits them, wakes watchers and answers the callers
    /// (see `committer.rs`). The server index is already committed.
    fn hand_off(
        &mut self,
        batch: &Batch,
        replies: Vec<(crate::committer::Reply, Vec<Result<Outcome>>)>,
    ) {
        let mut users = Vec::with_capacity(batch.touched_users.len());
        for user in &batch.touched_users {
            if let Some(open) = self.users.remove(user) {
                self.lent.insert(user.clone());
                users.push((user.clone(), open));
            }
        }
        if let Err(job) = self.committer.send(Job { users, replies }) {
            // The committer is gone (it only stops at shutdown): commit here.
            tracing::error!(
                event = "committer_gone",
                "the commit thread stopped; committing on the writer"
            );
            for (user, open) in job.users {
                self.lent.remove(&user);
                if let Err(e) = index::exec(&open.conn, "COMMIT") {
                    self.failed.get_or_insert(e);
                }
                self.notifier.notify(&user);
                self.users.insert(user, open);
            }
            for (reply, results) in job.replies {
                let _ = reply.send(results);
            }
        }
    }

    /// Takes back connections the committer is done with; with `wait_for`, blocks
    /// until that user's connection is back. Latches a commit failure it reports.
    fn reclaim(&mut self, wait_for: Option<&str>) {
        loop {
            let waiting = wait_for.is_some_and(|user| self.lent.contains(user));
            let returned = if waiting {
                self.committer.returned.recv().ok()
            } else {
                self.committer.returned.try_recv().ok()
            };
            let Some(users) = returned else { break };
            for (user, open) in users {
                self.lent.remove(&user);
                self.users.insert(user, open);
            }
        }
        if self.failed.is_none()
            && let Some(e) = self
                .committer
                .failed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        {
            self.failed = Some(e);
        }
    }

    fn rollback(&mut self, batch: &Batch) {
        for user in &batch.touched_users {
            if let Some(user) = self.users.get(user) {
                let _ = user.conn.execute_batch("ROLLBACK");
            }
        }
        let _ = self.server.execute_batch("ROLLBACK");
        // LSNs of the failed batch are reused by the next one: the journal was cut back.
        let _ = batch.first_lsn;
    }

    /// The index connection of a user, inside this batch's transaction.
    fn user_conn(&mut self, batch: &mut Batch, user: &str) -> Result<&Connection> {
        self.use_counter += 1;
        let counter = self.use_counter;
        if self.lent.contains(user) {
            self.reclaim(Some(user));
        }
        if !self.users.contains_key(user) {
            if self.users.len() >= self.config.user_connections_max {
                // Evict the least recently used connection not in this batch.
                if let Some(victim) = self
                    .users
                    .iter()
                    .filter(|(name, _)| !batch.touched_users.contains(*name))
                    .min_by_key(|(_, open)| open.used)
                    .map(|(name, _)| name.clone())
                {
                    self.users.remove(&victim);
                }
            }
            let path = self.paths.user_index(user);
            if !path.exists()
                && !self.recreating.contains(user)
                && self.creating_user.as_deref() != Some(user)
            {
                // An existing user's index vanished: a fresh empty one would hand
                // out UIDs from 1 again. Refuse until reconstruct (or a restart)
                // rebuilds it from the journal.
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!("the index of {user} is missing; reconstruct or a restart rebuilds it"),
                ));
            }
            let dir = self.paths.user_dir(user);
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create user dir", e))?;
            let conn = index::open(&path)?;
            self.users.insert(
                user.to_string(),
                UserConn {
                    conn,
                    used: counter,
                    commits: 0,
                },
            );
        }
        let first_touch = batch.touched_users.insert(user.to_string());
        let open = self
            .users
            .get_mut(user)
            .ok_or_else(|| StoreError::new(ErrorKind::Io, "user connection vanished"))?;
        open.used = counter;
        if first_touch {
            index::exec(&open.conn, "BEGIN IMMEDIATE")?;
        }
        Ok(&open.conn)
    }

    /// Appends to the pack; a failure stops the batch.
    fn append_blob(
        &mut self,
        batch: &mut Batch,
        hash: &BlobHash,
        data: &[u8],
    ) -> Result<BlobLocation> {
        self.packs.append(hash, data).inspect_err(|e| {
            batch.fatal.get_or_insert(e.clone());
        })
    }

    /// Plans one intent of the batch over the batch's open transactions.
    fn plan_contained(&mut self, batch: &mut Batch, intent: &Intent) -> Result<Outcome> {
        let config = self.plan_config();
        let mut tx = EmbeddedTx::new(self, batch);
        Planner {
            tx: &mut tx,
            config,
        }
        .plan_contained(intent)
    }

    fn plan_config(&self) -> PlanConfig {
        PlanConfig {
            default_quota: self.config.default_quota,
            summary_limits: self.config.summary_limits,
        }
    }
}

/// The embedded backend's transaction ([`Tx`]): the batch's open SQLite
/// transactions (the server index and each touched user's index), the pack
/// it appends contents to, and the journal records it collects.
struct EmbeddedTx<'a> {
    w: &'a mut Writer,
    batch: &'a mut Batch,
    /// The open savepoint of the intent being planned.
    savepoint: Option<Savepoint>,
}

/// What an intent's savepoint covers, and the batch's lengths before it.
struct Savepoint {
    users: Vec<String>,
    entries: usize,
    deleted_users: usize,
    dead_packs: usize,
}

impl<'a> EmbeddedTx<'a> {
    fn new(w: &'a mut Writer, batch: &'a mut Batch) -> Self {
        EmbeddedTx {
            w,
            batch,
            savepoint: None,
        }
    }

    fn conn(&mut self, user: &str) -> Result<&Connection> {
        self.w.user_conn(self.batch, user)
    }

    fn emit_blob_stored(&mut self, hash: BlobHash, location: BlobLocation) -> Result<()> {
        let record = Record::BlobStored {
            hash,
            pack: location.pack,
            offset: location.offset,
            length: location.length,
        };
        self.emit(record, None)
    }
}

impl Tx for EmbeddedTx<'_> {
    fn now(&self) -> i64 {
        self.batch.now
    }

    /// The LSN of the record that creates the object, raised above every id a
    /// former primary may have handed out (`Record::Replicated`'s floor), so
    /// a promoted replica never reuses one.
    fn new_id(&mut self) -> Result<u64> {
        let lsn = self.batch.first_lsn + self.batch.entries.len() as Lsn;
        let floor = directory::replica_position(&self.w.server)?.map_or(0, |p| p.id_floor);
        Ok(lsn.max(floor))
    }

    fn is_replica(&self) -> bool {
        self.w.read_only.load(std::sync::atomic::Ordering::Acquire)
    }

    fn user_exists(&mut self, user: &str) -> Result<bool> {
        directory::user_exists(&self.w.server, user)
    }

    fn alias(&mut self, address: &str) -> Result<Option<Vec<String>>> {
        directory::alias(&self.w.server, address)
    }

    fn aliases(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        directory::aliases(&self.w.server)
    }

    fn acl_naming(&mut self, user: &str) -> Result<Vec<(String, String, String)>> {
        acl::naming(&self.w.server, user)
    }

    fn quota(&mut self, user: &str) -> Result<(Option<u64>, Option<u64>)> {
        directory::quota(&self.w.server, user)
    }

    fn sms(&mut self, id: u64) -> Result<Option<directory::Sms>> {
        directory::sms(&self.w.server, id)
    }

    fn sms_alerts_since(&mut self, user: &str, since: i64) -> Result<u64> {
        directory::sms_alerts_since(&self.w.server, user, since)
    }

    fn status_incident(&mut self, id: u64) -> Result<Option<status::Incident>> {
        directory::status_incident(&self.w.server, id)
    }

    fn status_post_incident(&mut self, post: u64) -> Result<Option<u64>> {
        directory::status_post_incident(&self.w.server, post)
    }

    fn status_fingerprint(&mut self, fingerprint: &str) -> Result<Option<u64>> {
        directory::status_fingerprint(&self.w.server, fingerprint)
    }

    fn status_components(&mut self) -> Result<Vec<status::Component>> {
        directory::status_components(&self.w.server)
    }

    fn spam_blocks(&mut self) -> Result<Vec<directory::SpamBlock>> {
        directory::spam_blocks(&self.w.server)
    }

    fn admin_tokens(&mut self) -> Result<Vec<(String, i64)>> {
        directory::admin_tokens(&self.w.server)
    }

    fn server_metadata_count(&mut self) -> Result<u64> {
        crate::metadata::count(&self.w.server)
    }

    fn subscriber(&mut self, id: u64) -> Result<Option<Subscriber>> {
        subscribers::subscriber(&self.w.server, id)
    }

    fn subscriber_by_address(&mut self, kind: &str, address: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_address(&self.w.server, kind, address)
    }

    fn subscriber_by_confirm_hash(&mut self, hash: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_confirm_hash(&self.w.server, hash)
    }

    fn subscriber_by_unsubscribe_token(&mut self, token: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_unsubscribe_token(&self.w.server, token)
    }

    fn subscriber_count(&mut self, now: i64) -> Result<u64> {
        subscribers::subscriber_count(&self.w.server, now)
    }

    fn subscribe_requests_since(
        &mut self,
        address: &str,
        ip: Option<&str>,
        since: i64,
    ) -> Result<(u64, u64)> {
        subscribers::subscribe_requests_since(&self.w.server, address, ip, since)
    }

    fn notice(&mut self, post: u64, subscriber: u64) -> Result<Option<Notice>> {
        subscribers::notice(&self.w.server, post, subscriber)
    }

    fn replica_position(&mut self) -> Result<Option<directory::ReplicaPosition>> {
        directory::replica_position(&self.w.server)
    }

    fn mailboxes(&mut self, user: &str) -> Result<Vec<MailboxInfo>> {
        index::mailboxes(self.conn(user)?)
    }

    fn mailbox_by_name(&mut self, user: &str, name: &str) -> Result<Option<MailboxInfo>> {
        index::mailbox_by_name(self.conn(user)?, name)
    }

    fn mailbox_by_id(&mut self, user: &str, id: &str) -> Result<Option<MailboxInfo>> {
        index::mailbox_by_id(self.conn(user)?, id)
    }

    fn message(&mut self, user: &str, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
        index::message(self.conn(user)?, mailbox, uid)
    }

    fn messages(&mut self, user: &str, mailbox: &str) -> Result<Vec<MessageMeta>> {
        index::messages(self.conn(user)?, mailbox)
    }

    fn summary(
        &mut self,
        user: &str,
        mailbox: &str,
        uid: u32,
        blob: &BlobHash,
    ) -> Result<Option<mime::Summary>> {
        // A damaged entry reads as missing: the caller derives it afresh.
        Ok(index::summary(self.conn(user)?, mailbox, uid, blob).unwrap_or(None))
    }

    fn usage(&mut self, user: &str) -> Result<(u64, u64)> {
        index::usage(self.conn(user)?)
    }

    fn thread_for(&mut self, user: &str, message_ids: &[String]) -> Result<Option<String>> {
        index::thread_for(self.conn(user)?, message_ids)
    }

    fn uid_validity_last(&mut self, user: &str) -> Result<u32> {
        index::uid_validity_last(self.conn(user)?)
    }

    fn acl_entries(&mut self, user: &str, mailbox: &str) -> Result<Vec<(String, Rights)>> {
        acl::entries(self.conn(user)?, mailbox)
    }

    fn acl_count(&mut self, user: &str, mailbox: &str) -> Result<u64> {
        acl::count(self.conn(user)?, mailbox)
    }

    fn metadata_count(&mut self, user: &str) -> Result<u64> {
        crate::metadata::count(self.conn(user)?)
    }

    /// Applies the record to the server index and the user's index, inside
    /// the batch's transactions, and adds it to the batch's journal records.
    fn emit(&mut self, record: Record, summary: Option<(&mime::Summary, &[u8])>) -> Result<()> {
        let lsn = self.batch.first_lsn + self.batch.entries.len() as Lsn;
        if let Record::UserAdded { user, .. } = &record {
            // Its index does not exist yet: `user_conn` may create it.
            self.w.creating_user = Some(user.clone());
        }
        directory::apply(&self.w.server, lsn, &record)?;
        if let Some(user) = record.user() {
            let conn = self.w.user_conn(self.batch, user)?;
            index::apply(conn, lsn, &record, summary)?;
        }
        if let Record::UserDeleted { user } = &record {
            // Its directory goes once the batch is durable.
            self.batch.deleted_users.push(user.clone());
        }
        self.batch.entries.push(Entry {
            lsn,
            time: self.batch.now,
            record,
        });
        Ok(())
    }

    /// A content written ahead by this batch is announced (`BlobStored`) by
    /// the first intent that keeps it; one already in a pack is not written
    /// again; a new one is appended to the current pack.
    fn store_blob(&mut self, hash: &BlobHash, raw: &[u8]) -> Result<()> {
        if self.batch.unannounced.remove(hash)
            && let Some(location) = self.batch.new_blobs.get(hash).copied()
        {
            return self.emit_blob_stored(*hash, location);
        }
        if self.blob_known(hash)? {
            return Ok(());
        }
        let location = self.w.append_blob(self.batch, hash, raw)?;
        self.batch.new_blobs.insert(*hash, location);
        self.emit_blob_stored(*hash, location)
    }

    /// The embedded index names contents without a foreign key: nothing to do.
    fn content_missing(&mut self, _: &BlobHash) -> Result<()> {
        Ok(())
    }

    fn blob_known(&mut self, hash: &BlobHash) -> Result<bool> {
        Ok(self.batch.new_blobs.contains_key(hash)
            || directory::blob_location(&self.w.server, hash)?.is_some())
    }

    fn summary_of_blob(&mut self, hash: &BlobHash) -> Result<mime::Summary> {
        let location = directory::blob_location(&self.w.server, hash)?
            .ok_or_else(|| StoreError::corrupt(format!("blob {} not indexed", hash.to_hex())))?;
        let raw = blobs::read_blob(&self.w.paths.blobs_dir(), hash, location)?;
        Ok(mime::summarize(&raw, &self.w.config.summary_limits))
    }

    fn fail_batch(&mut self, error: &StoreError) {
        self.batch.fatal.get_or_insert(error.clone());
    }

    /// SQLite savepoints on the server index and on each user's index.
    fn savepoint(&mut self, users: &[String], creating: Option<&str>) -> Result<()> {
        self.w.creating_user = creating.map(str::to_string);
        self.savepoint = Some(Savepoint {
            users: users.to_vec(),
            entries: self.batch.entries.len(),
            deleted_users: self.batch.deleted_users.len(),
            dead_packs: self.batch.dead_packs.len(),
        });
        for user in users {
            index::exec(self.conn(user)?, "SAVEPOINT intent")?;
        }
        index::exec(&self.w.server, "SAVEPOINT intent")
    }

    fn close_savepoint(&mut self, keep: bool) {
        self.w.creating_user = None;
        let Some(savepoint) = self.savepoint.take() else {
            return;
        };
        let close = |conn: &Connection| {
            if !keep {
                index::exec(conn, "ROLLBACK TO intent")?;
            }
            index::exec(conn, "RELEASE intent")
        };
        let mut closed = close(&self.w.server);
        for user in &savepoint.users {
            if let Some(open) = self.w.users.get(user) {
                closed = closed.and(close(&open.conn));
            }
        }
        if let Err(e) = closed {
            // The transactions are in a state nobody planned: stop the batch.
            self.batch.fatal.get_or_insert(e);
        }
        if keep {
            return;
        }
        for entry in self.batch.entries.drain(savepoint.entries..) {
            // The bytes of a blob announced by the undone intent are still in the
            // pack: a later intent of the batch may announce them again.
            if let Record::BlobStored { hash, .. } = entry.record
                && self.batch.new_blobs.contains_key(&hash)
            {
                self.batch.unannounced.insert(hash);
            }
        }
        self.batch.deleted_users.truncate(savepoint.deleted_users);
        self.batch.dead_packs.truncate(savepoint.dead_packs);
    }

    /// A `Recreate` guard holds for a user whose index file `prepare_recreate`
    /// found gone before this batch: the fresh index starts at the repair's LSN.
    fn repair_guard_holds(&mut self, user: &str, guard: &RepairGuard) -> Result<bool> {
        let recreate = match guard {
            RepairGuard::Recreate { at_lsn } => {
                if !self.w.recreating.remove(user) {
                    return Err(StoreError::new(
                        ErrorKind::Conflict,
                        format!("the index of {user} exists or changed after LSN {at_lsn}"),
                    ));
                }
                Some(*at_lsn)
            }
            _ => None,
        };
        let conn = self.conn(user)?;
        if let Some(at_lsn) = recreate {
            index::set_applied_lsn(conn, at_lsn)?;
        }
        index::repair_guard_holds(conn, guard)
    }

    fn apply_fix(&mut self, user: &str, fix: &Fix) -> Result<()> {
        index::apply_fix(self.conn(user)?, fix)
    }

    fn set_flags_keeping_modseq(
        &mut self,
        user: &str,
        mailbox: &str,
        messages: &[(u32, Vec<String>)],
    ) -> Result<()> {
        index::set_flags_keeping_modseq(self.conn(user)?, mailbox, messages)
    }

    /// Rewrites packs that are mostly garbage: their live contents are
    /// copied to the current pack, and the pack is deleted once the batch
    /// is durable.
    fn collect_garbage(&mut self, bytes_max: u64) -> Result<Outcome> {
        // Commit blocks in old packs are only needed until the journal copy is
        // durable; make it so before any pack is rewritten.
        self.w.sync_journal()?;
        let (current, _) = self.w.packs.position();
        // This batch wrote its new blobs ahead of planning its intents, so blobs of
        // an Append planned after this collection are in packs with no index row
        // naming them yet: those packs are as untouchable as the current one.
        let written: std::collections::HashSet<u32> = self
            .batch
            .new_blobs
            .values()
            .map(|location| location.pack)
            .collect();
        let mut blobs_removed = 0u64;
        let mut bytes_copied = 0u64;
        let mut packs_deleted = 0u64;
        // Sizes come from the files, so bytes no record names (a batch that failed
        // after writing its blobs) count as garbage too.
        let live_by_pack: HashMap<u32, u64> = directory::pack_usage(&self.w.server)?
            .into_iter()
            .map(|(pack, _, live)| (pack, live))
            .collect();
        let packs = blobs::list_packs(&self.w.paths.blobs_dir())?;
        for (pack, total) in packs {
            let live = live_by_pack.get(&pack).copied().unwrap_or(0);
            if pack == current || written.contains(&pack) || total == 0 || live * 2 > total {
                continue;
            }
            if bytes_copied + live > bytes_max {
                break;
            }
            let mut dead = Vec::new();
            for (hash, location, refs) in directory::pack_blobs(&self.w.server, pack)? {
                if refs > 0 {
                    // Verified on the way: a damaged survivor is not copied as if it were good.
                    let data = blobs::read_blob(&self.w.paths.blobs_dir(), &hash, location)?;
                    let moved = self.w.append_blob(self.batch, &hash, &data)?;
                    bytes_copied += data.len() as u64;
                    self.emit_blob_stored(hash, moved)?;
                } else {
                    dead.push(hash);
                }
            }
            blobs_removed += dead.len() as u64;
            if !dead.is_empty() {
                self.emit(Record::BlobsRemoved { hashes: dead }, None)?;
            }
            self.batch.dead_packs.push(pack);
            packs_deleted += 1;
        }
        Ok(Outcome::Collected {
            blobs_removed,
            bytes_copied,
            packs_deleted,
        })
    }

    /// Stores a content again whose bytes here are missing or fail their hash.
    fn restore_blob(&mut self, message: &Prepared) -> Result<Outcome> {
        let intact = match directory::blob_location(&self.w.server, &message.hash)? {
            Some(location) => {
                blobs::read_blob(&self.w.paths.blobs_dir(), &message.hash, location).is_ok()
            }
            None => false,
        };
        if intact || self.batch.new_blobs.contains_key(&message.hash) {
            return Ok(Outcome::Done);
        }
        let location = self
            .w
            .append_blob(self.batch, &message.hash, &message.raw)?;
        self.batch.new_blobs.insert(message.hash, location);
        self.emit_blob_stored(message.hash, location)?;
        tracing::warn!(event = "blob_restored", blob = %message.hash.to_hex(), "a missing or damaged message content was stored again from the other server");
        Ok(Outcome::Done)
    }
}

/// The notifier key that wakes the SMS sender (no user name has a NUL).
pub const SMS_WATCH_KEY: &str = "\0sms";
/// The notifier key that wakes the status notice sender.
pub const NOTICE_WATCH_KEY: &str = "\0notice";
/// Watch key bumped after every durable batch (the replication shipper waits on it).
pub const DURABLE_WATCH_KEY: &str = "\0durable";
