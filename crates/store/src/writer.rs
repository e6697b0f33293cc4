//! The writer thread: turns intents into records, makes them durable with one
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
use crate::index::{self, MailboxInfo};
use crate::intent::{Intent, MailboxRef, Outcome, Prepared, RepairGuard, SmsOutcome};
use crate::journal::{JournalWriter, encode_frame};
use crate::notify::Notifier;
use crate::paths::Paths;
use crate::record::{Entry, Lsn, Record};
use crate::types::{BlobHash, apply_flag_mode, normalize_flags};
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[path = "writer_acl.rs"]
mod acl_plans;
use acl_plans::permitted_flags;
#[path = "writer_subscribers.rs"]
mod subscribers;
pub use subscribers::{EMAIL_BYTES_MAX, normalize_subscriber_address};

/// Mailboxes every new user gets, with their SPECIAL-USE attribute (RFC 6154).
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// With no work for this long, the writer fsyncs a lazily written journal tail.
pub const JOURNAL_IDLE_SYNC: std::time::Duration = std::time::Duration::from_millis(50);
/// The journal copy of pack-committed batches is never more than this behind.
pub const JOURNAL_LAG_MAX: std::time::Duration = std::time::Duration::from_millis(200);

/// Longest mailbox name, in bytes.
pub const MAILBOX_NAME_BYTES_MAX: usize = 1000;
/// Hierarchy separator.
pub const SEPARATOR: char = '/';

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
                    match self.visible_mailbox(batch, user, Some(actor), &target) {
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

    /// Checks an incident as a status record of this intent left it (the
    /// records are applied by `directory::apply`, the one place that builds
    /// incidents); a bad title, text or state refuses the intent, which undoes
    /// its records.
    fn validate_incident(&self, id: u64) -> Result<()> {
        directory::status_incident(&self.server, id)?
            .ok_or_else(|| StoreError::not_found(format!("no incident {id}")))?
            .validate()
            .map_err(|e| StoreError::invalid(e.to_string()))
    }

    /// Stores imported incidents, skipping posts stored before (by fingerprint):
    /// a new incident is opened with its first post and resolved as of its
    /// last; an incident whose Status exists gets only its new Updates.
    fn import_status(
        &mut self,
        batch: &mut Batch,
        incidents: &[status::ImportedIncident],
    ) -> Result<Outcome> {
        let (mut added_incidents, mut added_posts, mut duplicates) = (0u64, 0u64, 0u64);
        // A log runs newest first: store the oldest first, so ids rise with time.
        for imported in incidents.iter().rev() {
            let Some(first) = imported.posts.first() else {
                continue;
            };
            let last_index = imported.posts.len() - 1;
            let fp = first.fingerprint.to_string();
            let incident = match directory::status_fingerprint(&self.server, &fp)? {
                Some(post) => {
                    duplicates += 1;
                    directory::status_post_incident(&self.server, post)?
                        .ok_or_else(|| StoreError::corrupt("imported post without incident"))?
                }
                None => {
                    let incident = self.new_id(batch)?;
                    let state = if last_index == 0 {
                        status::State::Resolved
                    } else {
                        status::State::Investigating
                    };
                    self.emit(
                        batch,
                        Record::StatusOpened {
                            incident,
                            title: imported.title.clone(),
                            components: Vec::new(),
                            impact: status::Impact::None,
                            state,
                            kind: status::Kind::Incident,
                            author: first.author.clone(),
                            text: first.text.clone(),
                            at: first.at,
                            fingerprint: Some(fp),
                        },
                        None,
                    )?;
                    self.validate_incident(incident)
                        .map_err(|e| StoreError::invalid(format!("line {}: {e}", imported.line)))?;
                    added_incidents += 1;
                    added_posts += 1;
                    incident
                }
            };
            for (i, post) in imported.posts.iter().enumerate().skip(1) {
                let fp = post.fingerprint.to_string();
                if directory::status_fingerprint(&self.server, &fp)?.is_some() {
                    duplicates += 1;
                    continue;
                }
                status::validate_author(&post.author)
                    .and_then(|()| status::validate_text(&post.text))
                    .map_err(|e| StoreError::invalid(format!("line {}: {e}", post.line)))?;
                let id = self.new_id(batch)?;
                self.emit(
                    batch,
                    Record::StatusPosted {
                        incident,
                        post: id,
                        author: post.author.clone(),
                        text: post.text.clone(),
                        at: post.at,
                        state: (i == last_index).then_some(status::State::Resolved),
                        impact: None,
                        fingerprint: Some(fp),
                    },
                    None,
                )?;
                added_posts += 1;
            }
        }
        Ok(Outcome::StatusImported {
            incidents: added_incidents,
            posts: added_posts,
            duplicates,
        })
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

    /// Adds a record to the batch and applies it to the derived indexes.
    fn emit(
        &mut self,
        batch: &mut Batch,
        record: Record,
        summary: Option<(&mime::Summary, &[u8])>,
    ) -> Result<()> {
        let lsn = batch.first_lsn + batch.entries.len() as Lsn;
        directory::apply(&self.server, lsn, &record)?;
        if let Some(user) = record.user().map(str::to_string) {
            let conn = self.user_conn(batch, &user)?;
            index::apply(conn, lsn, &record, summary)?;
        }
        batch.entries.push(Entry {
            lsn,
            time: batch.now,
            record,
        });
        Ok(())
    }

    fn require_user(&self, user: &str) -> Result<()> {
        if directory::user_exists(&self.server, user)? {
            Ok(())
        } else {
            Err(StoreError::not_found(format!("no such user {user}")))
        }
    }

    fn mailbox(&mut self, batch: &mut Batch, user: &str, name: &str) -> Result<MailboxInfo> {
        self.mailbox_ref(batch, user, &MailboxRef::Name(name.to_string()))
    }

    fn mailbox_ref(
        &mut self,
        batch: &mut Batch,
        user: &str,
        mailbox: &MailboxRef,
    ) -> Result<MailboxInfo> {
        // The user was checked by `plan_contained` before the intent started.
        let conn = self.user_conn(batch, user)?;
        match mailbox {
            MailboxRef::Name(name) => index::mailbox_by_name(conn, name)?
                .ok_or_else(|| StoreError::not_found(format!("no mailbox named {name}"))),
            MailboxRef::Id(id) => index::mailbox_by_id(conn, id)?
                .ok_or_else(|| StoreError::not_found("the mailbox no longer exists")),
        }
    }

    /// Runs one intent inside SQLite savepoints: if it is refused, or fails half
    /// way, its index changes and records are undone and its neighbours in the
    /// batch are untouched.
    fn plan_contained(&mut self, batch: &mut Batch, intent: &Intent) -> Result<Outcome> {
        let read_only = self.read_only.load(std::sync::atomic::Ordering::Acquire);
        match intent {
            Intent::Replicate { .. } if !read_only => {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    "this server is not a replica: it takes no other server's records",
                ));
            }
            Intent::Replicate { .. }
            | Intent::Repair { .. }
            | Intent::CollectGarbage { .. }
            | Intent::RestoreBlob { .. } => {}
            _ if read_only => {
                return Err(StoreError::new(
                    ErrorKind::ReadOnly,
                    "this server is a replica: changes are made on the primary",
                ));
            }
            _ => {}
        }
        // The user whose index the intent changes and, for a COPY or MOVE
        // from another owner's mailbox, the source's owner: both are inside
        // the savepoint, so a refusal undoes the change on either side.
        let (user, other) = intent_users(intent);
        let mut users: Vec<String> = [user, other]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        if !matches!(intent, Intent::AddUser { .. }) {
            for user in &users {
                // Check before touching the user's files, so an unknown name creates nothing.
                self.require_user(user)?;
            }
        }
        if let Intent::DeleteUser { user } = intent {
            // Deleting a user removes their entries from other owners' ACLs:
            // those indexes are inside the savepoint too.
            for (owner, _, _) in acl::naming(&self.server, user)? {
                if !users.contains(&owner) {
                    users.push(owner);
                }
            }
        }
        self.creating_user = match intent {
            Intent::AddUser { user, .. } => Some(user.clone()),
            _ => None,
        };
        let entries_before = batch.entries.len();
        let deleted_before = batch.deleted_users.len();
        let dead_before = batch.dead_packs.len();
        for user in &users {
            index::exec(self.user_conn(batch, user)?, "SAVEPOINT intent")?;
        }
        index::exec(&self.server, "SAVEPOINT intent")?;
        let result = self.plan(batch, intent);
        let close = |conn: &Connection| {
            if result.is_err() {
                index::exec(conn, "ROLLBACK TO intent")?;
            }
            index::exec(conn, "RELEASE intent")
        };
        let mut closed = close(&self.server);
        for user in &users {
            if let Some(open) = self.users.get(user) {
                closed = closed.and(close(&open.conn));
            }
        }
        if let Err(e) = closed {
            batch.fatal.get_or_insert(e);
        }
        if result.is_err() {
            for entry in batch.entries.drain(entries_before..) {
                // The bytes of a blob announced by the undone intent are still in the
                // pack: a later intent of the batch may announce them again.
                if let Record::BlobStored { hash, .. } = entry.record
                    && batch.new_blobs.contains_key(&hash)
                {
                    batch.unannounced.insert(hash);
                }
            }
            batch.deleted_users.truncate(deleted_before);
            batch.dead_packs.truncate(dead_before);
        }
        result
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

    fn plan(&mut self, batch: &mut Batch, intent: &Intent) -> Result<Outcome> {
        match intent {
            Intent::AddUser {
                user,
                password_hash,
            } => {
                if directory::user_exists(&self.server, user)? {
                    return Err(StoreError::new(
                        ErrorKind::AlreadyExists,
                        format!("user {user} exists"),
                    ));
                }
                self.emit(
                    batch,
                    Record::UserAdded {
                        user: user.clone(),
                        password_hash: password_hash.clone(),
                    },
                    None,
                )?;
                // The owner of the "Shared" namespace starts empty: its
                // mailboxes are the ones operators create.
                let defaults = if user == crate::acl::SHARED_OWNER {
                    &[][..]
                } else {
                    &DEFAULT_MAILBOXES[..]
                };
                for (name, special_use) in defaults {
                    self.create_mailbox(batch, user, name, special_use.map(str::to_string))?;
                    self.emit(
                        batch,
                        Record::Subscribed {
                            user: user.clone(),
                            name: name.to_string(),
                            subscribed: true,
                        },
                        None,
                    )?;
                }
                Ok(Outcome::Done)
            }
            Intent::DeleteUser { user } => {
                self.require_user(user)?;
                let mailboxes = index::mailboxes(self.user_conn(batch, user)?)?;
                for mailbox in mailboxes {
                    self.delete_mailbox(batch, user, &mailbox)?;
                }
                // Aliases keep reaching their other members; one left with nobody goes.
                for (address, members) in directory::aliases(&self.server)? {
                    if !members.contains(user) {
                        continue;
                    }
                    let users: Vec<String> = members.into_iter().filter(|m| m != user).collect();
                    let record = if users.is_empty() {
                        Record::AliasRemoved { address }
                    } else {
                        Record::AliasSet { address, users }
                    };
                    self.emit(batch, record, None)?;
                }
                // Entries naming the user in other owners' ACLs go too, so a
                // new account of the same name inherits nothing.
                for (owner, mailbox, identifier) in acl::naming(&self.server, user)? {
                    if owner == *user {
                        continue;
                    }
                    self.emit(
                        batch,
                        Record::AclSet {
                            user: owner,
                            mailbox,
                            identifier,
                            rights: None,
                        },
                        None,
                    )?;
                }
                self.emit(batch, Record::UserDeleted { user: user.clone() }, None)?;
                batch.deleted_users.push(user.clone());
                Ok(Outcome::Done)
            }
            Intent::SetPassword {
                user,
                password_hash,
            } => {
                self.require_user(user)?;
                self.emit(
                    batch,
                    Record::PasswordChanged {
                        user: user.clone(),
                        password_hash: password_hash.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetAlias { address, users } => {
                if users.is_empty() {
                    return Err(StoreError::invalid("an alias needs at least one user"));
                }
                for user in users {
                    self.require_user(user)?;
                }
                self.emit(
                    batch,
                    Record::AliasSet {
                        address: address.clone(),
                        users: users.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::RemoveAlias { address } => {
                if directory::alias(&self.server, address)?.is_none() {
                    return Err(StoreError::not_found(format!("no alias {address}")));
                }
                self.emit(
                    batch,
                    Record::AliasRemoved {
                        address: address.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::CreateMailbox {
                user,
                name,
                special_use,
            } => {
                self.require_user(user)?;
                validate_mailbox_name(name)?;
                if index::mailbox_by_name(self.user_conn(batch, user)?, name)?.is_some() {
                    return Err(StoreError::new(
                        ErrorKind::AlreadyExists,
                        format!("mailbox {name} exists"),
                    ));
                }
                self.create_parents(batch, user, name)?;
                let id = self.create_mailbox(batch, user, name, special_use.clone())?;
                Ok(Outcome::MailboxCreated { id })
            }
            Intent::DeleteMailbox { user, name } => {
                if name.eq_ignore_ascii_case("INBOX") {
                    return Err(StoreError::invalid("INBOX cannot be deleted"));
                }
                let mailbox = self.mailbox(batch, user, name)?;
                self.delete_mailbox(batch, user, &mailbox)?;
                Ok(Outcome::Done)
            }
            Intent::RenameMailbox { user, from, to } => self.rename_mailbox(batch, user, from, to),
            Intent::Subscribe {
                user,
                name,
                subscribed,
            } => {
                self.require_user(user)?;
                validate_mailbox_name(name)?;
                self.emit(
                    batch,
                    Record::Subscribed {
                        user: user.clone(),
                        name: name.clone(),
                        subscribed: *subscribed,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::Append {
                user,
                mailbox,
                message,
                flags,
                internal_date,
            } => {
                let target = self.mailbox(batch, user, mailbox)?;
                let (date, zone) = internal_date.unwrap_or((batch.now, 0));
                let uid = self.add_message(batch, user, &target, message, flags, date, zone)?;
                Ok(Outcome::Appended {
                    mailbox: target.id,
                    uid_validity: target.uid_validity,
                    uid,
                })
            }
            Intent::StoreFlags {
                user,
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let target = self.mailbox_ref(batch, user, mailbox)?;
                let flags = normalize_flags(flags);
                let conn = self.user_conn(batch, user)?;
                let modseq = target.highest_modseq + 1;
                let mut changes = Vec::new();
                let mut messages = Vec::new();
                let mut modified = Vec::new();
                for &uid in uids {
                    let Some(meta) = index::message(conn, &target.id, uid)? else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|since| meta.modseq > since) {
                        modified.push(uid);
                        continue;
                    }
                    let new = apply_flag_mode(&meta.flags, *mode, &flags);
                    if new != meta.flags {
                        changes.push((uid, new.clone()));
                        messages.push((uid, new, modseq));
                    } else {
                        messages.push((uid, new, meta.modseq));
                    }
                }
                let changed = !changes.is_empty();
                if changed {
                    self.emit(
                        batch,
                        Record::FlagsChanged {
                            user: user.clone(),
                            mailbox: target.id.clone(),
                            modseq,
                            messages: changes,
                            mode: *mode,
                        },
                        None,
                    )?;
                }
                Ok(Outcome::Flags {
                    modseq: changed.then_some(modseq),
                    messages,
                    modified,
                })
            }
            Intent::Expunge {
                user,
                mailbox,
                uids,
            } => {
                let target = self.mailbox_ref(batch, user, mailbox)?;
                let conn = self.user_conn(batch, user)?;
                let victims: Vec<(u32, BlobHash)> = index::messages(conn, &target.id)?
                    .into_iter()
                    .filter(|m| m.flags.iter().any(|f| f == "\\Deleted"))
                    // A damaged row's blob reference cannot be trusted for the
                    // reference count: it stays until reconstruct repairs it.
                    .filter(|m| !m.damaged)
                    .filter(|m| {
                        uids.as_ref()
                            .is_none_or(|set| set.binary_search(&m.uid).is_ok())
                    })
                    .map(|m| (m.uid, m.blob))
                    .collect();
                if victims.is_empty() {
                    return Ok(Outcome::Expunged {
                        uids: Vec::new(),
                        modseq: None,
                    });
                }
                let modseq = target.highest_modseq + 1;
                let expunged = victims.iter().map(|(uid, _)| *uid).collect();
                self.emit(
                    batch,
                    Record::Expunged {
                        user: user.clone(),
                        mailbox: target.id,
                        modseq,
                        messages: victims,
                    },
                    None,
                )?;
                Ok(Outcome::Expunged {
                    uids: expunged,
                    modseq: Some(modseq),
                })
            }
            Intent::CollectGarbage { bytes_max } => self.collect_garbage(batch, *bytes_max),
            Intent::Replicate {
                source,
                after,
                upto,
                id_floor,
                records,
                blobs,
                lost,
            } => self.replicate(
                batch, source, *after, *upto, *id_floor, records, blobs, lost,
            ),
            Intent::RestoreBlob { message } => {
                let intact = match directory::blob_location(&self.server, &message.hash)? {
                    Some(location) => {
                        blobs::read_blob(&self.paths.blobs_dir(), &message.hash, location).is_ok()
                    }
                    None => false,
                };
                if intact || batch.new_blobs.contains_key(&message.hash) {
                    return Ok(Outcome::Done);
                }
                let location = self.append_blob(batch, &message.hash, &message.raw)?;
                batch.new_blobs.insert(message.hash, location);
                self.emit_blob_stored(batch, message.hash, location)?;
                tracing::warn!(event = "blob_restored", blob = %message.hash.to_hex(), "a missing or damaged message content was stored again from the other server");
                Ok(Outcome::Done)
            }
            Intent::Acting { actor, intent } => self.plan_acting(batch, actor, intent),
            Intent::SetAcl { .. } => self.set_acl(batch, intent),
            Intent::QueueSms {
                to,
                text,
                purpose,
                receipt,
                user,
            } => {
                validate_sms(to, text, purpose)?;
                if let Some((user, per_hour_max)) = user {
                    self.require_user(user)?;
                    let sent = directory::sms_alerts_since(&self.server, user, batch.now - 3600)?;
                    if sent >= u64::from(*per_hour_max) {
                        return Err(StoreError::new(
                            ErrorKind::OverQuota,
                            format!("{user} had {sent} SMS alerts in the last hour"),
                        ));
                    }
                }
                // The id is the record's LSN: unique, and in queueing order.
                let id = self.new_id(batch)?;
                self.emit(
                    batch,
                    Record::SmsQueued {
                        id,
                        to: to.clone(),
                        text: text.clone(),
                        purpose: purpose.clone(),
                        receipt: *receipt,
                        at: batch.now,
                        user: user.as_ref().map(|(u, _)| u.clone()),
                    },
                    None,
                )?;
                Ok(Outcome::SmsQueued { id })
            }
            Intent::SetQuota {
                user,
                storage_bytes,
                messages,
            } => {
                self.require_user(user)?;
                self.emit(
                    batch,
                    Record::QuotaSet {
                        user: user.clone(),
                        storage_bytes: *storage_bytes,
                        messages: *messages,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetSmsAlert { user, alert } => {
                self.require_user(user)?;
                if let Some(alert) = alert {
                    validate_sms(&alert.number, "x", "alert")?;
                    let patterns = alert.from.iter().chain(&alert.to);
                    if alert.from.len() + alert.to.len() > 100
                        || patterns.clone().any(|p| p.is_empty() || p.len() > 320)
                        || alert
                            .quiet
                            .is_some_and(|(a, b)| a >= 1440 || b >= 1440 || a == b)
                        || !(-1440..=1440).contains(&alert.zone_minutes)
                        || alert.per_hour_max == 0
                        || alert.per_hour_max > 3600
                    {
                        return Err(StoreError::invalid(
                            "SMS alert: at most 100 patterns of 1 to 320 bytes, quiet hours \
                             within a day, a zone within a day, 1 to 3600 alerts an hour",
                        ));
                    }
                }
                self.emit(
                    batch,
                    Record::SmsAlertSet {
                        user: user.clone(),
                        alert: alert.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SmsOutcome { id, outcome } => {
                let sms = directory::sms(&self.server, *id)?
                    .ok_or_else(|| StoreError::not_found(format!("no SMS {id} in the outbox")))?;
                if sms.state != "queued" {
                    return Err(StoreError::invalid(format!(
                        "SMS {id} is {}, not queued",
                        sms.state
                    )));
                }
                let at = batch.now;
                let record = match outcome {
                    SmsOutcome::Sent { smsc_ids } => Record::SmsSent {
                        id: *id,
                        smsc_ids: smsc_ids
                            .iter()
                            .take(SMS_SEGMENTS_MAX)
                            .map(|s| smsc_id(s))
                            .collect(),
                        at,
                    },
                    SmsOutcome::Retry { not_before, reason } => Record::SmsRetry {
                        id: *id,
                        not_before: *not_before,
                        reason: bounded(reason, SMS_REASON_BYTES_MAX),
                        at,
                    },
                    SmsOutcome::Failed { reason } => Record::SmsFailed {
                        id: *id,
                        reason: bounded(reason, SMS_REASON_BYTES_MAX),
                        at,
                    },
                };
                self.emit(batch, record, None)?;
                Ok(Outcome::Done)
            }
            Intent::SmsReceipt {
                smsc_id,
                delivered,
                detail,
            } => {
                self.emit(
                    batch,
                    Record::SmsReceipt {
                        smsc_id: self::smsc_id(smsc_id),
                        delivered: *delivered,
                        detail: bounded(detail, SMS_REASON_BYTES_MAX),
                        at: batch.now,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::StatusOpen {
                title,
                components,
                impact,
                state,
                kind,
                author,
                text,
                at,
            } => {
                let incident = self.new_id(batch)?;
                self.emit(
                    batch,
                    Record::StatusOpened {
                        incident,
                        title: title.clone(),
                        components: components.clone(),
                        impact: *impact,
                        state: *state,
                        kind: *kind,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: at.unwrap_or(batch.now),
                        fingerprint: None,
                    },
                    None,
                )?;
                self.validate_incident(incident)?;
                Ok(Outcome::StatusPosted {
                    incident,
                    post: incident,
                })
            }
            Intent::StatusPost {
                incident,
                author,
                text,
                state,
                impact,
                at,
            } => {
                if directory::status_incident(&self.server, *incident)?.is_none() {
                    return Err(StoreError::not_found(format!("no incident {incident}")));
                }
                let post = self.new_id(batch)?;
                self.emit(
                    batch,
                    Record::StatusPosted {
                        incident: *incident,
                        post,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: at.unwrap_or(batch.now),
                        state: *state,
                        impact: *impact,
                        fingerprint: None,
                    },
                    None,
                )?;
                self.validate_incident(*incident)?;
                Ok(Outcome::StatusPosted {
                    incident: *incident,
                    post,
                })
            }
            Intent::StatusEdit { post, author, text } => {
                let incident = directory::status_post_incident(&self.server, *post)?
                    .ok_or_else(|| StoreError::not_found(format!("no post {post}")))?;
                self.emit(
                    batch,
                    Record::StatusEdited {
                        post: *post,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: batch.now,
                    },
                    None,
                )?;
                self.validate_incident(incident)?;
                Ok(Outcome::StatusPosted {
                    incident,
                    post: *post,
                })
            }
            Intent::StatusComponent { name, component } => {
                status::validate_component_name(name)
                    .map_err(|e| StoreError::invalid(e.to_string()))?;
                if let Some(c) = component {
                    c.validate()
                        .map_err(|e| StoreError::invalid(e.to_string()))?;
                } else if !directory::status_components(&self.server)?
                    .iter()
                    .any(|c| c.name == *name)
                {
                    return Err(StoreError::not_found(format!("no component {name}")));
                }
                self.emit(
                    batch,
                    Record::StatusComponentSet {
                        name: name.clone(),
                        component: component.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetMetadata {
                user,
                mailbox,
                entries,
                limits,
            } => self.set_metadata(batch, user.as_deref(), mailbox.as_ref(), entries, limits),
            Intent::SpamBlock { key, reason } => {
                if key.is_empty()
                    || key.len() > 320
                    || key.chars().any(char::is_control)
                    || reason.len() > 1000
                    || reason.chars().any(char::is_control)
                {
                    return Err(StoreError::invalid(
                        "a block key is 1 to 320 printable characters, its reason at most 1000",
                    ));
                }
                self.emit(
                    batch,
                    Record::SpamBlockSet {
                        key: key.clone(),
                        reason: reason.clone(),
                        at: batch.now,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SpamUnblock { key } => {
                if !directory::spam_blocks(&self.server)?
                    .iter()
                    .any(|b| b.key == *key)
                {
                    return Err(StoreError::not_found(format!("no block {key}")));
                }
                self.emit(batch, Record::SpamBlockRemoved { key: key.clone() }, None)?;
                Ok(Outcome::Done)
            }
            Intent::AdminToken { name, hash } => {
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(StoreError::invalid(
                        "a token name is 1 to 64 printable characters",
                    ));
                }
                if hash.is_none()
                    && !directory::admin_tokens(&self.server)?
                        .iter()
                        .any(|(n, _)| n == name)
                {
                    return Err(StoreError::not_found(format!("no token {name}")));
                }
                self.emit(
                    batch,
                    Record::AdminTokenSet {
                        name: name.clone(),
                        hash: hash.clone(),
                        at: batch.now,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::StatusImport { incidents } => self.import_status(batch, incidents),
            Intent::StatusSubscribe {
                kind,
                address,
                confirm_hash,
                unsubscribe_token,
                ip,
                limits,
            } => self.subscribe(
                batch,
                subscribers::NewSubscriber {
                    kind,
                    address,
                    confirm_hash: confirm_hash.as_deref(),
                    unsubscribe_token,
                    ip: ip.as_deref(),
                    limits,
                },
            ),
            Intent::ConfirmSubscriber { confirm_hash } => {
                self.confirm_subscriber(batch, confirm_hash)
            }
            Intent::RemoveSubscriber {
                id,
                unsubscribe_token,
            } => self.remove_subscriber(batch, *id, unsubscribe_token.as_deref()),
            Intent::NoticeOutcome {
                post,
                subscriber,
                outcome,
            } => self.notice_outcome(batch, *post, *subscriber, outcome),
            Intent::Repair { user, guard, fixes } => {
                let recreate = match guard {
                    RepairGuard::Recreate { at_lsn } => {
                        if !self.recreating.remove(user) {
                            return Err(StoreError::new(
                                ErrorKind::Conflict,
                                format!("the index of {user} exists or changed after LSN {at_lsn}"),
                            ));
                        }
                        Some(*at_lsn)
                    }
                    _ => None,
                };
                let conn = self.user_conn(batch, user)?;
                if let Some(at_lsn) = recreate {
                    index::set_applied_lsn(conn, at_lsn)?;
                }
                if !index::repair_guard_holds(conn, guard)? {
                    return Err(StoreError::new(
                        ErrorKind::Conflict,
                        format!("the index of {user} changed since the repair was computed"),
                    ));
                }
                for fix in fixes {
                    match fix {
                        crate::intent::Fix::RestateFlags { mailbox, messages }
                            if self.read_only.load(std::sync::atomic::Ordering::Acquire) =>
                        {
                            // A replica writes no records of its own: its journal holds
                            // the primary's. The flags go back to what that journal
                            // says, at the MODSEQs it gave them; no client wrote here.
                            index::set_flags_keeping_modseq(
                                self.user_conn(batch, user)?,
                                mailbox,
                                messages,
                            )?;
                        }
                        crate::intent::Fix::RestateFlags { mailbox, messages } => {
                            let info =
                                self.mailbox_ref(batch, user, &MailboxRef::Id(mailbox.clone()))?;
                            self.emit(
                                batch,
                                Record::FlagsChanged {
                                    user: user.clone(),
                                    mailbox: mailbox.clone(),
                                    modseq: info.highest_modseq + 1,
                                    messages: messages.clone(),
                                    mode: crate::types::FlagMode::Replace,
                                },
                                None,
                            )?;
                        }
                        other => index::apply_fix(self.user_conn(batch, user)?, other)?,
                    }
                }
                tracing::info!(event = "index_repaired", user = %user, fixes = fixes.len());
                Ok(Outcome::Repaired {
                    fixes: fixes.len() as u64,
                })
            }
            Intent::Copy { .. } => self.copy(batch, intent, Rights::ALL),
        }
    }

    /// COPY or MOVE ([`Intent::Copy`]); the copies keep only the flags
    /// `flag_rights` allow on the target (all of them for its owner).
    fn copy(&mut self, batch: &mut Batch, intent: &Intent, flag_rights: Rights) -> Result<Outcome> {
        let Intent::Copy {
            user,
            from_user,
            from,
            uids,
            to,
            remove_source,
        } = intent
        else {
            return Err(StoreError::invalid("not a copy"));
        };
        let from_user = from_user.as_deref().unwrap_or(user);
        let across = from_user != user;
        let source = self.mailbox_ref(batch, from_user, from)?;
        let target = self.mailbox(batch, user, to)?;
        let conn = self.user_conn(batch, from_user)?;
        let mut originals = Vec::new();
        for &uid in uids {
            if let Some(meta) = index::message(conn, &source.id, uid)? {
                if meta.damaged {
                    // Its blob reference cannot be trusted: copying it could
                    // give the copy another message's bytes.
                    return Err(StoreError::corrupt(format!(
                        "UID {uid} is damaged in the index; reconstruct repairs it"
                    )));
                }
                let summary = match index::summary(conn, &source.id, uid, &meta.blob) {
                    Ok(Some(s)) => Some(s),
                    _ => None,
                };
                originals.push((meta, summary));
            }
        }
        // Resolve every summary before emitting anything, so that a damaged
        // source message refuses the whole COPY instead of committing half of it.
        let mut resolved = Vec::with_capacity(originals.len());
        for (meta, summary) in originals.iter() {
            let summary = match summary {
                Some(s) => s.clone(),
                None => self.summary_from_blob(&meta.blob)?,
            };
            resolved.push(summary);
        }
        // A MOVE within the user's mail adds nothing in the end, but the
        // copies exist before the originals go: check COPY only. A MOVE
        // from another owner's mailbox adds to this user's usage.
        if !*remove_source || across {
            let bytes = originals.iter().map(|(m, _)| m.size).sum();
            self.check_quota(batch, user, bytes, originals.len() as u64)?;
        }
        let mut pairs = Vec::new();
        let mut target = target;
        for ((meta, _), summary) in originals.iter().zip(resolved) {
            let uid = target.uid_next;
            let modseq = target.highest_modseq + 1;
            let record = Record::MessageAdded {
                user: user.clone(),
                mailbox: target.id.clone(),
                uid_validity: target.uid_validity,
                uid,
                modseq,
                internal_date: meta.internal_date,
                internal_zone: meta.internal_zone,
                save_date: batch.now,
                blob: meta.blob,
                size: meta.size,
                flags: if flag_rights == Rights::ALL {
                    meta.flags.clone()
                } else {
                    permitted_flags(flag_rights, &meta.flags)
                },
                email_id: meta.email_id.clone(),
                thread_id: meta.thread_id.clone(),
            };
            self.emit(batch, record, Some((&summary, &[])))?;
            target.uid_next += 1;
            target.highest_modseq = modseq;
            pairs.push((meta.uid, uid));
        }
        let mut expunged = Vec::new();
        if *remove_source && !originals.is_empty() {
            let messages: Vec<(u32, BlobHash)> =
                originals.iter().map(|(m, _)| (m.uid, m.blob)).collect();
            expunged = messages.iter().map(|(uid, _)| *uid).collect();
            // Into the same mailbox, the adds above already used MODSEQs past the snapshot.
            let modseq = if source.id == target.id && !across {
                target.highest_modseq + 1
            } else {
                source.highest_modseq + 1
            };
            self.emit(
                batch,
                Record::Expunged {
                    user: from_user.to_string(),
                    mailbox: source.id.clone(),
                    modseq,
                    messages,
                },
                None,
            )?;
        }
        Ok(Outcome::Copied {
            uid_validity: target.uid_validity,
            pairs,
            expunged,
        })
    }

    fn collect_garbage(&mut self, batch: &mut Batch, bytes_max: u64) -> Result<Outcome> {
        // Commit blocks in old packs are only needed until the journal copy is
        // durable; make it so before any pack is rewritten.
        self.sync_journal()?;
        let (current, _) = self.packs.position();
        // This batch wrote its new blobs ahead of planning its intents, so blobs of
        // an Append planned after this collection are in packs with no index row
        // naming them yet: those packs are as untouchable as the current one.
        let written: std::collections::HashSet<u32> = batch
            .new_blobs
            .values()
            .map(|location| location.pack)
            .collect();
        let mut blobs_removed = 0u64;
        let mut bytes_copied = 0u64;
        let mut packs_deleted = 0u64;
        // Sizes come from the files, so bytes no record names (a batch that failed
        // after writing its blobs) count as garbage too.
        let live_by_pack: HashMap<u32, u64> = directory::pack_usage(&self.server)?
            .into_iter()
            .map(|(pack, _, live)| (pack, live))
            .collect();
        let packs = blobs::list_packs(&self.paths.blobs_dir())?;
        for (pack, total) in packs {
            let live = live_by_pack.get(&pack).copied().unwrap_or(0);
            if pack == current || written.contains(&pack) || total == 0 || live * 2 > total {
                continue;
            }
            if bytes_copied + live > bytes_max {
                break;
            }
            let mut dead = Vec::new();
            for (hash, location, refs) in directory::pack_blobs(&self.server, pack)? {
                if refs > 0 {
                    // Verified on the way: a damaged survivor is not copied as if it were good.
                    let data = blobs::read_blob(&self.paths.blobs_dir(), &hash, location)?;
                    let moved = self.append_blob(batch, &hash, &data)?;
                    bytes_copied += data.len() as u64;
                    self.emit_blob_stored(batch, hash, moved)?;
                } else {
                    dead.push(hash);
                }
            }
            blobs_removed += dead.len() as u64;
            if !dead.is_empty() {
                self.emit(batch, Record::BlobsRemoved { hashes: dead }, None)?;
            }
            batch.dead_packs.push(pack);
            packs_deleted += 1;
        }
        Ok(Outcome::Collected {
            blobs_removed,
            bytes_copied,
            packs_deleted,
        })
    }

    /// Records where a blob of this batch was written.
    /// A new id for an incident, post, SMS or subscriber: the LSN of the record
    /// that creates it, raised above every id a former primary may have handed
    /// out (`Record::Replicated`'s floor), so a promoted replica never reuses one.
    fn new_id(&self, batch: &Batch) -> Result<u64> {
        let lsn = batch.first_lsn + batch.entries.len() as Lsn;
        let floor = directory::replica_position(&self.server)?.map_or(0, |p| p.id_floor);
        Ok(lsn.max(floor))
    }

    /// Applies a primary's records (see `Intent::Replicate`). Checked before
    /// anything is emitted; a failure half way stops the whole batch (the
    /// records touch many users, beyond one intent's savepoints).
    #[allow(clippy::too_many_arguments)]
    fn replicate(
        &mut self,
        batch: &mut Batch,
        source: &str,
        after: Lsn,
        upto: Lsn,
        id_floor: u64,
        records: &[Record],
        blobs: &HashMap<BlobHash, Arc<Prepared>>,
        lost: &[BlobHash],
    ) -> Result<Outcome> {
        let at = match directory::replica_position(&self.server)? {
            Some(p) if p.source == source => p.upto,
            Some(p) => {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    format!(
                        "this replica holds the records of {}, not of {source}",
                        p.source
                    ),
                ));
            }
            None => 0,
        };
        if upto <= at {
            return Ok(Outcome::Done);
        }
        if after != at {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("this replica is at LSN {at} of {source}, the batch starts after {after}"),
            ));
        }
        for record in records {
            if let Record::MessageAdded { blob, .. } = record
                && !blobs.contains_key(blob)
                && !lost.contains(blob)
                && !batch.new_blobs.contains_key(blob)
                && directory::blob_location(&self.server, blob)?.is_none()
            {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    format!("the content {} was not sent", blob.to_hex()),
                ));
            }
        }
        let applied = self.apply_replicated(batch, records, blobs);
        if let Err(e) = &applied {
            batch.fatal.get_or_insert(e.clone());
        }
        applied?;
        self.emit(
            batch,
            Record::Replicated {
                source: source.to_string(),
                upto,
                id_floor,
            },
            None,
        )?;
        Ok(Outcome::Done)
    }

    fn apply_replicated(
        &mut self,
        batch: &mut Batch,
        records: &[Record],
        blobs: &HashMap<BlobHash, Arc<Prepared>>,
    ) -> Result<()> {
        // Contents this side already had, parsed once per batch.
        let mut local: HashMap<BlobHash, Arc<Prepared>> = HashMap::new();
        for record in records {
            if record.is_local() {
                continue;
            }
            match record {
                Record::MessageAdded { blob, .. } => {
                    let prepared = match blobs.get(blob) {
                        Some(prepared) => {
                            if !batch.new_blobs.contains_key(blob)
                                && directory::blob_location(&self.server, blob)?.is_none()
                            {
                                let location = self.append_blob(batch, blob, &prepared.raw)?;
                                batch.new_blobs.insert(*blob, location);
                                self.emit_blob_stored(batch, *blob, location)?;
                            }
                            prepared.clone()
                        }
                        None => match local.get(blob) {
                            Some(prepared) => prepared.clone(),
                            None => {
                                let parsed = self.read_local(blob);
                                local.insert(*blob, parsed.clone());
                                parsed
                            }
                        },
                    };
                    let summary = (&prepared.summary, prepared.summary_json.as_slice());
                    self.emit(batch, record.clone(), Some(summary))?;
                }
                Record::UserAdded { user, .. } => {
                    self.creating_user = Some(user.clone());
                    self.emit(batch, record.clone(), None)?;
                }
                Record::UserDeleted { user } => {
                    self.emit(batch, record.clone(), None)?;
                    batch.deleted_users.push(user.clone());
                }
                _ => self.emit(batch, record.clone(), None)?,
            }
        }
        self.creating_user = None;
        Ok(())
    }

    /// A blob this server already holds, parsed for a replicated message's
    /// cache entry. One that cannot be read is logged and, like in recovery,
    /// the message is indexed anyway (its body answers `NO [UNAVAILABLE]`, and
    /// `replication check --repair` fetches it from the primary).
    fn read_local(&self, hash: &BlobHash) -> Arc<Prepared> {
        let read = directory::blob_location(&self.server, hash).and_then(|location| {
            let location = location.ok_or_else(|| StoreError::not_found("blob not indexed"))?;
            blobs::read_blob(&self.paths.blobs_dir(), hash, location)
        });
        let raw = read.unwrap_or_else(|e| {
            tracing::error!(event = "replicate_blob_unreadable", blob = %hash.to_hex(), error = %e, "a replicated message's content is unreadable here; indexed anyway");
            Vec::new()
        });
        let summary = mime::summarize(&raw, &self.config.summary_limits);
        // Empty: the index encodes the summary itself.
        Arc::new(Prepared {
            raw: Vec::new(),
            hash: *hash,
            summary,
            summary_json: Vec::new(),
        })
    }

    fn emit_blob_stored(
        &mut self,
        batch: &mut Batch,
        hash: BlobHash,
        location: BlobLocation,
    ) -> Result<()> {
        let record = Record::BlobStored {
            hash,
            pack: location.pack,
            offset: location.offset,
            length: location.length,
        };
        self.emit(batch, record, None)
    }

    /// Refuses adding `messages` messages of `bytes` bytes in all to `user`
    /// past their quota (their own, else the default). Counts what earlier
    /// intents of this batch added: they are in the same open transaction.
    fn check_quota(
        &mut self,
        batch: &mut Batch,
        user: &str,
        bytes: u64,
        messages: u64,
    ) -> Result<()> {
        let (own_storage, own_messages) = directory::quota(&self.server, user)?;
        let storage_max = own_storage.or(self.config.default_quota.0);
        let messages_max = own_messages.or(self.config.default_quota.1);
        if storage_max.is_none() && messages_max.is_none() {
            return Ok(());
        }
        let (used_bytes, used_messages) = index::usage(self.user_conn(batch, user)?)?;
        if let Some(max) = storage_max
            && used_bytes.saturating_add(bytes) > max
        {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!("over the storage quota of {user} ({used_bytes} of {max} bytes used)"),
            ));
        }
        if let Some(max) = messages_max
            && used_messages.saturating_add(messages) > max
        {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!("over the message quota of {user} ({used_messages} of {max} messages)"),
            ));
        }
        Ok(())
    }

    fn summary_from_blob(&self, hash: &BlobHash) -> Result<mime::Summary> {
        let location = directory::blob_location(&self.server, hash)?
            .ok_or_else(|| StoreError::corrupt(format!("blob {} not indexed", hash.to_hex())))?;
        let raw = blobs::read_blob(&self.paths.blobs_dir(), hash, location)?;
        Ok(mime::summarize(&raw, &self.config.summary_limits))
    }

    #[allow(clippy::too_many_arguments)]
    fn add_message(
        &mut self,
        batch: &mut Batch,
        user: &str,
        target: &MailboxInfo,
        message: &Arc<Prepared>,
        flags: &[String],
        date: i64,
        zone: i16,
    ) -> Result<u32> {
        self.check_quota(batch, user, message.raw.len() as u64, 1)?;
        // Store the content once: reuse a blob that is already indexed or written by this batch.
        if batch.unannounced.remove(&message.hash)
            && let Some(location) = batch.new_blobs.get(&message.hash).copied()
        {
            self.emit_blob_stored(batch, message.hash, location)?;
        }
        let known = batch.new_blobs.contains_key(&message.hash)
            || directory::blob_location(&self.server, &message.hash)?.is_some();
        if !known {
            let location = self.append_blob(batch, &message.hash, &message.raw)?;
            batch.new_blobs.insert(message.hash, location);
            self.emit_blob_stored(batch, message.hash, location)?;
        }
        let summary = &message.summary;
        let conn = self.user_conn(batch, user)?;
        let mut thread_keys = summary.references.clone();
        thread_keys.extend(summary.in_reply_to.iter().cloned());
        let thread_id = match index::thread_for(conn, &thread_keys)? {
            Some(t) => t,
            None => {
                let seed = summary
                    .message_id
                    .clone()
                    .unwrap_or_else(|| message.hash.to_hex());
                format!("T{}", &BlobHash::of(seed.as_bytes()).to_hex()[..16])
            }
        };
        let uid = target.uid_next;
        let record = Record::MessageAdded {
            user: user.to_string(),
            mailbox: target.id.clone(),
            uid_validity: target.uid_validity,
            uid,
            modseq: target.highest_modseq + 1,
            internal_date: date,
            internal_zone: zone,
            save_date: batch.now,
            blob: message.hash,
            size: message.raw.len() as u64,
            flags: normalize_flags(flags),
            email_id: format!("M{}", &message.hash.to_hex()[..23]),
            thread_id,
        };
        self.emit(batch, record, Some((summary, &message.summary_json)))?;
        Ok(uid)
    }

    fn create_mailbox(
        &mut self,
        batch: &mut Batch,
        user: &str,
        name: &str,
        special_use: Option<String>,
    ) -> Result<String> {
        let conn = self.user_conn(batch, user)?;
        let last: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(uid_validity), 0) FROM mailboxes",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let stored_last: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'uid_validity_last'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let uid_validity =
            (batch.now.clamp(1, u32::MAX as i64 - 1)).max(last.max(stored_last) + 1) as u32;
        conn.prepare_cached(
            "INSERT INTO meta (key, value) VALUES ('uid_validity_last', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([uid_validity as i64])?;
        let id = format!("F{:016x}", rand::random::<u64>());
        self.emit(
            batch,
            Record::MailboxCreated {
                user: user.to_string(),
                mailbox: id.clone(),
                name: name.to_string(),
                uid_validity,
                special_use,
            },
            None,
        )?;
        Ok(id)
    }

    /// Creates missing superiors of `name` (RFC 9051 CREATE: "a/b/c" creates "a" and "a/b").
    fn create_parents(&mut self, batch: &mut Batch, user: &str, name: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split(SEPARATOR).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push(SEPARATOR);
            }
            prefix.push_str(part);
            if index::mailbox_by_name(self.user_conn(batch, user)?, &prefix)?.is_none() {
                self.create_mailbox(batch, user, &prefix.clone(), None)?;
            }
        }
        Ok(())
    }

    fn set_metadata(
        &mut self,
        batch: &mut Batch,
        user: Option<&str>,
        mailbox: Option<&MailboxRef>,
        entries: &[crate::metadata::MetadataEntry],
        limits: &crate::intent::MetadataLimits,
    ) -> Result<Outcome> {
        use crate::metadata;
        if entries.is_empty() {
            return Err(StoreError::invalid("no annotations to set"));
        }
        let mut checked = Vec::with_capacity(entries.len());
        for (entry, value) in entries {
            let entry = metadata::validate_entry(entry, true)?;
            if let Some(value) = value
                && value.0.len() as u64 > limits.value_bytes_max
            {
                return Err(StoreError::invalid(format!(
                    "the value of {entry} is {} bytes, more than the {} allowed",
                    value.0.len(),
                    limits.value_bytes_max
                )));
            }
            let wanted_private = user.is_some() && mailbox.is_none();
            let server_shared = user.is_none();
            if (wanted_private && !metadata::is_private(&entry))
                || (server_shared && metadata::is_private(&entry))
            {
                return Err(StoreError::invalid(format!(
                    "{entry}: a user sets only /private/ server annotations, an administrator only /shared/ ones"
                )));
            }
            checked.push((entry, value.clone()));
        }
        let too_many = |before: u64, after: u64| {
            if after > before && after > limits.entries_max {
                Err(StoreError::new(
                    ErrorKind::OverQuota,
                    format!("at most {} annotations are allowed", limits.entries_max),
                ))
            } else {
                Ok(())
            }
        };
        let Some(user) = user else {
            if mailbox.is_some() {
                return Err(StoreError::invalid(
                    "server annotations belong to no mailbox",
                ));
            }
            let before = metadata::count(&self.server)?;
            self.emit(batch, Record::ServerMetadataSet { entries: checked }, None)?;
            too_many(before, metadata::count(&self.server)?)?;
            return Ok(Outcome::Done);
        };
        let mailbox_id = match mailbox {
            Some(mailbox) => self.mailbox_ref(batch, user, mailbox)?.id,
            None => String::new(),
        };
        let before = metadata::count(self.user_conn(batch, user)?)?;
        self.emit(
            batch,
            Record::MetadataSet {
                user: user.to_string(),
                mailbox: mailbox_id,
                entries: checked,
            },
            None,
        )?;
        // Counted after the change (the savepoint undoes it when refused),
        // so replacing or removing entries at the cap is always allowed.
        too_many(before, metadata::count(self.user_conn(batch, user)?)?)?;
        Ok(Outcome::Done)
    }

    fn delete_mailbox(
        &mut self,
        batch: &mut Batch,
        user: &str,
        mailbox: &MailboxInfo,
    ) -> Result<()> {
        let conn = self.user_conn(batch, user)?;
        let metas = index::messages(conn, &mailbox.id)?;
        if let Some(m) = metas.iter().find(|m| m.damaged) {
            // Its blob reference cannot be trusted for the reference count.
            return Err(StoreError::corrupt(format!(
                "UID {} of {} is damaged in the index; run reconstruct first",
                m.uid, mailbox.name
            )));
        }
        let messages: Vec<(u32, BlobHash)> = metas.into_iter().map(|m| (m.uid, m.blob)).collect();
        if !messages.is_empty() {
            self.emit(
                batch,
                Record::Expunged {
                    user: user.to_string(),
                    mailbox: mailbox.id.clone(),
                    modseq: mailbox.highest_modseq + 1,
                    messages,
                },
                None,
            )?;
        }
        self.emit(
            batch,
            Record::MailboxDeleted {
                user: user.to_string(),
                mailbox: mailbox.id.clone(),
            },
            None,
        )
    }

    fn rename_mailbox(
        &mut self,
        batch: &mut Batch,
        user: &str,
        from: &str,
        to: &str,
    ) -> Result<Outcome> {
        validate_mailbox_name(to)?;
        let source = self.mailbox(batch, user, from)?;
        let conn = self.user_conn(batch, user)?;
        if index::mailbox_by_name(conn, to)?.is_some() {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("mailbox {to} exists"),
            ));
        }
        let child_prefix = format!("{from}{SEPARATOR}");
        if to.starts_with(&child_prefix) {
            return Err(StoreError::invalid("cannot rename a mailbox into itself"));
        }
        self.create_parents(batch, user, to)?;
        if from == "INBOX" {
            // RFC 9051 RENAME of INBOX: its messages move to the new mailbox; INBOX stays, empty.
            let id = self.create_mailbox(batch, user, to, None)?;
            let conn = self.user_conn(batch, user)?;
            let messages = index::messages(conn, &source.id)?;
            let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
            let _ = id;
            self.plan(
                batch,
                &Intent::Copy {
                    user: user.to_string(),
                    from_user: None,
                    from: MailboxRef::Name("INBOX".into()),
                    uids,
                    to: to.to_string(),
                    remove_source: true,
                },
            )?;
            return Ok(Outcome::Done);
        }
        let conn = self.user_conn(batch, user)?;
        let children: Vec<MailboxInfo> = index::mailboxes(conn)?
            .into_iter()
            .filter(|m| m.name.starts_with(&child_prefix))
            .collect();
        for child in &children {
            let name = format!("{to}{}", &child.name[from.len()..]);
            if index::mailbox_by_name(conn, &name)?.is_some() {
                return Err(StoreError::new(
                    ErrorKind::AlreadyExists,
                    format!("mailbox {name} exists"),
                ));
            }
        }
        self.emit(
            batch,
            Record::MailboxRenamed {
                user: user.to_string(),
                mailbox: source.id,
                name: to.to_string(),
            },
            None,
        )?;
        for child in children {
            let name = format!("{to}{}", &child.name[from.len()..]);
            self.emit(
                batch,
                Record::MailboxRenamed {
                    user: user.to_string(),
                    mailbox: child.id,
                    name,
                },
                None,
            )?;
        }
        Ok(Outcome::Done)
    }
}

/// The user an intent changes, if any.
fn intent_user(intent: &Intent) -> Option<&str> {
    match intent {
        Intent::Acting { intent, .. } => intent_user(intent),
        Intent::SetAcl { user, .. } => Some(user),
        Intent::AddUser { user, .. }
        | Intent::DeleteUser { user }
        | Intent::SetPassword { user, .. }
        | Intent::CreateMailbox { user, .. }
        | Intent::DeleteMailbox { user, .. }
        | Intent::RenameMailbox { user, .. }
        | Intent::Subscribe { user, .. }
        | Intent::Append { user, .. }
        | Intent::StoreFlags { user, .. }
        | Intent::Expunge { user, .. }
        | Intent::Repair { user, .. }
        | Intent::Copy { user, .. } => Some(user),
        Intent::SetMetadata { user, .. } => user.as_deref(),
        Intent::SetAlias { .. }
        | Intent::RemoveAlias { .. }
        | Intent::CollectGarbage { .. }
        | Intent::Replicate { .. }
        | Intent::RestoreBlob { .. }
        | Intent::QueueSms { .. }
        | Intent::SetSmsAlert { .. }
        | Intent::SetQuota { .. }
        | Intent::SmsOutcome { .. }
        | Intent::SmsReceipt { .. }
        | Intent::StatusOpen { .. }
        | Intent::StatusPost { .. }
        | Intent::StatusEdit { .. }
        | Intent::StatusComponent { .. }
        | Intent::StatusImport { .. }
        | Intent::AdminToken { .. }
        | Intent::SpamBlock { .. }
        | Intent::SpamUnblock { .. }
        | Intent::StatusSubscribe { .. }
        | Intent::ConfirmSubscriber { .. }
        | Intent::RemoveSubscriber { .. }
        | Intent::NoticeOutcome { .. } => None,
    }
}

/// The users whose indexes an intent changes: its user and, for a COPY or
/// MOVE from another owner's mailbox, that owner.
fn intent_users(intent: &Intent) -> (Option<&str>, Option<&str>) {
    let user = intent_user(intent);
    let other = match intent {
        Intent::Acting { intent, .. } => intent_users(intent).1,
        Intent::Copy {
            from_user: Some(from),
            ..
        } => Some(from.as_str()),
        _ => None,
    };
    (user, other.filter(|o| Some(*o) != user))
}

/// Longest SMS text the outbox takes, in bytes (the segment cap, checked by the
/// caller that knows the configuration, is the real bound; this one protects the store).
pub const SMS_TEXT_BYTES_MAX: usize = 4096;
/// Most SMSC message ids kept for one SMS (one per segment).
const SMS_SEGMENTS_MAX: usize = 255;
/// SMSC message ids and reasons come from the SMSC: cut, never refused.
const SMSC_ID_BYTES_MAX: usize = 128;
const SMS_REASON_BYTES_MAX: usize = 1000;
/// The notifier key that wakes the SMS sender (no user name has a NUL).
pub const SMS_WATCH_KEY: &str = "\0sms";
/// The notifier key that wakes the status notice sender.
pub const NOTICE_WATCH_KEY: &str = "\0notice";
/// Watch key bumped after every durable batch (the replication shipper waits on it).
pub const DURABLE_WATCH_KEY: &str = "\0durable";

/// An outbox entry's fields as the store keeps them: `to` in E.164 (`+`, then 7
/// to 15 digits, the first not 0), a text that is not empty or too long, a short
/// lowercase purpose.
pub fn validate_sms(to: &str, text: &str, purpose: &str) -> Result<()> {
    let digits = to.strip_prefix('+').unwrap_or("");
    // 7: the shortest numbers in use (+290 xxxx, Saint Helena); 15: E.164's longest.
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(StoreError::invalid(format!(
            "{to:?} is not an E.164 number (+ and 7 to 15 digits)"
        )));
    }
    if text.is_empty() || text.len() > SMS_TEXT_BYTES_MAX {
        return Err(StoreError::invalid(format!(
            "SMS text must be 1 to {SMS_TEXT_BYTES_MAX} bytes, not {}",
            text.len()
        )));
    }
    if purpose.is_empty()
        || purpose.len() > 32
        || !purpose.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return Err(StoreError::invalid(format!(
            "SMS purpose {purpose:?}: 1 to 32 of a-z and -"
        )));
    }
    Ok(())
}

/// A string from the SMSC as the store keeps it: control characters (terminal
/// escapes in `sms list`) replaced by spaces, cut to at most `max` bytes at a
/// character boundary.
fn bounded(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut end = clean.len().min(max);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_string()
}

/// An SMSC message id as a key: bounded, no whitespace (ids are listed space
/// separated), never empty.
fn smsc_id(id: &str) -> String {
    let id: String = bounded(id, SMSC_ID_BYTES_MAX)
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if id.is_empty() { "-".to_string() } else { id }
}

/// Mailbox names as stored: UTF-8, `/` separated, no empty levels, no control characters.
pub fn validate_mailbox_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAILBOX_NAME_BYTES_MAX
        || name.starts_with(SEPARATOR)
        || name.ends_with(SEPARATOR)
        || name.contains("//")
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%');
    if bad {
        Err(StoreError::invalid(format!(
            "invalid mailbox name {name:?}"
        )))
    } else {
        Ok(())
    }
}
