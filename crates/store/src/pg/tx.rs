//! The PostgreSQL backend's [`Tx`]: one open PostgreSQL transaction, held
//! by a writer thread under the advisory locks of every user its batch
//! touches. Each planner read is a query in that transaction; each record
//! is applied to the tables at once (`pg::apply`) and logged in the user's
//! change log, so later reads of the batch see it.

use crate::acl::Rights;
use crate::directory::{self, ReplicaPosition, Sms, SpamBlock};
use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{MailboxInfo, MessageMeta};
use crate::intent::{Fix, Outcome, Prepared, RepairGuard};
use crate::pg::backend::{Pg, pg_read};
use crate::pg::db::{Cached, Db};
use crate::pg::server_cache::ServerCache;
use crate::pg::{apply, blobs, db_error, read};
use crate::record::Record;
use crate::subscribers::{self, Notice, Subscriber};
use crate::tx::Tx;
use crate::types::BlobHash;
use rusqlite::Connection;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Where a transaction's database stands among the shards (`pg::shards`).
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    /// This database's shard name.
    pub shard: &'a str,
    /// The directory's database when it is another one; `None`: this one.
    pub directory: Option<&'a Pg>,
    /// Whether users are spread over several databases: the directory's rows
    /// are then kept by `pg::route`'s ordered steps, not by the account's
    /// transaction (except a new account's on the first shard).
    pub sharded: bool,
}

pub(crate) struct PgTx<'a, 't> {
    /// The writer thread's runtime, which drives the transaction's connection.
    rt: &'a tokio::runtime::Runtime,
    /// The transaction, with its connection's prepared statements.
    tx: &'a Cached<'a, 't>,
    place: Place<'a>,
    /// Whether the store takes another store's records now (`store import`).
    replica: bool,
    /// This node's copy of the server-wide state, inside a SQLite
    /// transaction, when the batch holds the `server_stream` lock (it
    /// changes that state); `None` for batches of mail alone.
    server: Option<&'a Connection>,
    /// Whether the SMS outbox or the status notices changed (their senders
    /// are woken after the commit).
    pub(crate) sms_changed: bool,
    pub(crate) notices_changed: bool,
    now: i64,
    summary_limits: mime::Limits,
    /// User name → id, as read in this transaction (ids never change).
    ids: HashMap<String, i64>,
    /// Contents stored or found stored in this transaction.
    blobs: HashSet<BlobHash>,
    /// Users whose data this transaction changed (their watchers are
    /// woken after the commit).
    pub(crate) touched: BTreeSet<String>,
    /// Records applied (for the writer's counters).
    pub(crate) records: u64,
    /// What `touched` and `records` were when the open savepoint began.
    savepoint: Option<(BTreeSet<String>, u64)>,
    /// An error that stops the whole batch.
    pub(crate) fatal: Option<StoreError>,
}

/// Contents stored this recently are never collected: a delivery that found
/// one present moments ago has not committed yet.
const GC_GRACE_SECS: i64 = 3600;

/// Contents up to this size are sent with their insert without asking first
/// whether they are stored already.
const SMALL_CONTENT_BYTES: usize = 16 * 1024;

/// A server-wide read or change in a batch that did not take the
/// `server_stream` lock: a bug of the writer's classification, refused.
fn without_server_lock() -> StoreError {
    StoreError::new(
        ErrorKind::Io,
        "server-wide state touched by a batch that does not hold the server-wide lock",
    )
}

/// Intents that a later step of the design builds on PostgreSQL.
fn not_yet(what: &str) -> StoreError {
    StoreError::invalid(format!(
        "{what} is not built for the PostgreSQL backend yet (issue 10, docs/design/postgres-cluster.md)"
    ))
}

/// The user whose row or data a record changes, by name.
fn record_owner(record: &Record) -> Option<&str> {
    match record {
        Record::UserAdded { user, .. }
        | Record::PasswordChanged { user, .. }
        | Record::QuotaSet { user, .. }
        | Record::SmsAlertSet { user, .. } => Some(user),
        other => other.user(),
    }
}

impl<'a, 't> PgTx<'a, 't> {
    pub(crate) fn new(
        rt: &'a tokio::runtime::Runtime,
        tx: &'a Cached<'a, 't>,
        place: Place<'a>,
        server: Option<&'a Connection>,
        replica: bool,
        now: i64,
        summary_limits: mime::Limits,
    ) -> Self {
        PgTx {
            rt,
            tx,
            place,
            replica,
            server,
            sms_changed: false,
            notices_changed: false,
            now,
            summary_limits,
            ids: HashMap::new(),
            blobs: HashSet::new(),
            touched: BTreeSet::new(),
            records: 0,
            savepoint: None,
            fatal: None,
        }
    }

    /// The id of an existing user (`NotFound` for an unknown one), whose
    /// account is served from this database: one moved away (or still
    /// being moved in) is `Moved`, and the store sends the change where the
    /// directory says the user is now. Read under the user's lock, which a
    /// move's switch-over takes too.
    fn id(&mut self, user: &str) -> Result<i64> {
        if let Some(id) = self.ids.get(user) {
            return Ok(*id);
        }
        let tx = self.tx;
        let found = self.rt.block_on(read::user(tx, user))?;
        let Some((id, state)) = found else {
            // Not here, but the directory knows the user: they live on
            // another shard (a route cached before a move or a new account).
            let elsewhere = match (self.place.sharded, self.place.directory) {
                (true, Some(directory)) => pg_read!(directory, |c| read::directory_has(c, user))?,
                (true, None) => self.rt.block_on(read::directory_has(tx, user))?,
                (false, _) => false,
            };
            return Err(if elsewhere {
                StoreError::moved(user)
            } else {
                StoreError::not_found(format!("no such user {user}"))
            });
        };
        if state != "active" {
            return Err(StoreError::moved(user));
        }
        self.ids.insert(user.to_string(), id);
        Ok(id)
    }

    /// This node's copy of the server-wide state, in the batch's transaction.
    fn server(&self) -> Result<&'a Connection> {
        self.server.ok_or_else(without_server_lock)
    }

    fn exec(&self, what: &str, sql: &str) -> Result<()> {
        let tx = self.tx;
        self.rt
            .block_on(tx.tx.batch_execute(sql))
            .map_err(|e| db_error(what, &e))
    }
}

impl Tx for PgTx<'_, '_> {
    fn now(&self) -> i64 {
        self.now
    }

    /// From the `object_ids` sequence: unique across every node, rising.
    fn new_id(&mut self) -> Result<u64> {
        let tx = self.tx;
        let row = self
            .rt
            .block_on(tx.query_one("SELECT nextval('object_ids')", &[]))
            .map_err(|e| db_error("take a new id", &e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    /// PostgreSQL's own standby is the replica: a node takes another store's
    /// records only while `store import` has it read-only.
    fn is_replica(&self) -> bool {
        self.replica
    }

    /// An account served here, or else one the directory lists (a user of
    /// another shard, which an ACL here may name).
    fn user_exists(&mut self, user: &str) -> Result<bool> {
        if self.ids.contains_key(user) {
            return Ok(true);
        }
        let tx = self.tx;
        match self.rt.block_on(read::user(tx, user))? {
            Some((id, state)) if state == "active" => {
                self.ids.insert(user.to_string(), id);
                Ok(true)
            }
            _ => match self.place.directory {
                None => self.rt.block_on(read::directory_has(tx, user)),
                Some(directory) => pg_read!(directory, |c| read::directory_has(c, user)),
            },
        }
    }

    fn alias(&mut self, address: &str) -> Result<Option<Vec<String>>> {
        let tx = self.tx;
        self.rt.block_on(read::alias(tx, address))
    }

    fn aliases(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        let tx = self.tx;
        self.rt.block_on(read::aliases(tx))
    }

    fn acl_naming(&mut self, user: &str) -> Result<Vec<(String, String, String)>> {
        let tx = self.tx;
        self.rt.block_on(read::acl_naming(tx, user))
    }

    fn quota(&mut self, user: &str) -> Result<(Option<u64>, Option<u64>)> {
        let tx = self.tx;
        self.rt.block_on(read::quota(tx, user))
    }

    fn sms(&mut self, id: u64) -> Result<Option<Sms>> {
        directory::sms(self.server()?, id)
    }

    fn sms_alerts_since(&mut self, user: &str, since: i64) -> Result<u64> {
        directory::sms_alerts_since(self.server()?, user, since)
    }

    fn status_incident(&mut self, id: u64) -> Result<Option<status::Incident>> {
        directory::status_incident(self.server()?, id)
    }

    fn status_post_incident(&mut self, post: u64) -> Result<Option<u64>> {
        directory::status_post_incident(self.server()?, post)
    }

    fn status_fingerprint(&mut self, fingerprint: &str) -> Result<Option<u64>> {
        directory::status_fingerprint(self.server()?, fingerprint)
    }

    fn status_components(&mut self) -> Result<Vec<status::Component>> {
        directory::status_components(self.server()?)
    }

    fn spam_blocks(&mut self) -> Result<Vec<SpamBlock>> {
        directory::spam_blocks(self.server()?)
    }

    fn admin_tokens(&mut self) -> Result<Vec<(String, i64)>> {
        directory::admin_tokens(self.server()?)
    }

    fn server_metadata_count(&mut self) -> Result<u64> {
        crate::metadata::count(self.server()?)
    }

    fn subscriber(&mut self, id: u64) -> Result<Option<Subscriber>> {
        subscribers::subscriber(self.server()?, id)
    }

    fn subscriber_by_address(&mut self, kind: &str, address: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_address(self.server()?, kind, address)
    }

    fn subscriber_by_confirm_hash(&mut self, hash: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_confirm_hash(self.server()?, hash)
    }

    fn subscriber_by_unsubscribe_token(&mut self, token: &str) -> Result<Option<Subscriber>> {
        subscribers::subscriber_by_unsubscribe_token(self.server()?, token)
    }

    fn subscriber_count(&mut self, now: i64) -> Result<u64> {
        subscribers::subscriber_count(self.server()?, now)
    }

    fn subscribe_requests_since(
        &mut self,
        address: &str,
        ip: Option<&str>,
        since: i64,
    ) -> Result<(u64, u64)> {
        subscribers::subscribe_requests_since(self.server()?, address, ip, since)
    }

    fn notice(&mut self, post: u64, subscriber: u64) -> Result<Option<Notice>> {
        subscribers::notice(self.server()?, post, subscriber)
    }

    /// How far an import has come (kept with the server-wide state).
    fn replica_position(&mut self) -> Result<Option<ReplicaPosition>> {
        directory::replica_position(self.server()?)
    }

    fn mailboxes(&mut self, user: &str) -> Result<Vec<MailboxInfo>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::mailboxes(tx, id))
    }

    fn mailbox_by_name(&mut self, user: &str, name: &str) -> Result<Option<MailboxInfo>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::mailbox_by_name(tx, id, name))
    }

    fn mailbox_by_id(&mut self, user: &str, mailbox: &str) -> Result<Option<MailboxInfo>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::mailbox_by_id(tx, id, mailbox))
    }

    fn message(&mut self, user: &str, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::message(tx, id, mailbox, uid))
    }

    fn messages_by_uid(
        &mut self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<HashMap<u32, MessageMeta>> {
        let (id, tx) = (self.id(user)?, self.tx);
        let found = self
            .rt
            .block_on(read::messages_by_uid(tx, id, mailbox, uids))?;
        Ok(found.into_iter().map(|m| (m.uid, m)).collect())
    }

    fn messages(&mut self, user: &str, mailbox: &str) -> Result<Vec<MessageMeta>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::messages(tx, id, mailbox))
    }

    fn summary(
        &mut self,
        user: &str,
        mailbox: &str,
        uid: u32,
        blob: &BlobHash,
    ) -> Result<Option<mime::Summary>> {
        let (id, tx) = (self.id(user)?, self.tx);
        // A damaged entry reads as missing: the caller derives it afresh.
        Ok(self
            .rt
            .block_on(read::summary(tx, id, mailbox, uid, blob))
            .unwrap_or(None))
    }

    fn usage(&mut self, user: &str) -> Result<(u64, u64)> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::usage(tx, id))
    }

    fn thread_for(&mut self, user: &str, message_ids: &[String]) -> Result<Option<String>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::thread_for(tx, id, message_ids))
    }

    fn uid_validity_last(&mut self, user: &str) -> Result<u32> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::uid_validity_last(tx, id))
    }

    fn acl_entries(&mut self, user: &str, mailbox: &str) -> Result<Vec<(String, Rights)>> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::acl_entries(tx, id, mailbox))
    }

    fn acl_count(&mut self, user: &str, mailbox: &str) -> Result<u64> {
        Ok(self.acl_entries(user, mailbox)?.len() as u64)
    }

    fn metadata_count(&mut self, user: &str) -> Result<u64> {
        let (id, tx) = (self.id(user)?, self.tx);
        self.rt.block_on(read::metadata_count(tx, id))
    }

    fn emit(&mut self, record: Record, summary: Option<(&mime::Summary, &[u8])>) -> Result<()> {
        let owner = record_owner(&record).map(str::to_string);
        let user_id = match (&record, &owner) {
            (Record::UserAdded { .. }, _) | (_, None) => None,
            (_, Some(owner)) => Some(self.id(owner)?),
        };
        // A server-wide record also goes to this node's copy: the batch must
        // hold the lock that keeps the copy current.
        let server = match owner {
            None => Some(self.server()?),
            Some(_) => None,
        };
        let (tx, now, place) = (self.tx, self.now, self.place);
        let (applied, seq) = self.rt.block_on(async {
            let account = matches!(
                record,
                Record::UserAdded { .. } | Record::UserDeleted { .. }
            );
            if let (Some(id), false) = (user_id, account) {
                // The record and its log entry in one round trip (pipelined).
                tokio::try_join!(
                    apply::apply(tx, user_id, &record, summary),
                    apply::log_change(tx, id, now, &record)
                )?;
                return Ok::<_, StoreError>((Some(id), None));
            }
            let user_id = apply::apply(tx, user_id, &record, summary).await?;
            if let (Record::UserAdded { user, .. }, Some(id), None) =
                (&record, user_id, place.directory)
            {
                apply::directory_added(tx, user, id, place.shard).await?;
            }
            // One database: the directory row goes with the account. With
            // shards it goes last, after the other shards forgot the user
            // (`pg::route`), so the name is not free before that.
            if let (Record::UserDeleted { user }, false) = (&record, place.sharded) {
                read::drop_directory_entry(tx, user, None).await?;
            }
            let seq = match user_id {
                Some(id) => {
                    apply::log_change(tx, id, now, &record).await?;
                    None
                }
                None => Some(apply::log_server_change(tx, now, &record).await?),
            };
            Ok((user_id, seq))
        })?;
        if let (Some(server), Some(seq)) = (server, seq) {
            ServerCache::apply(server, seq, &record)?;
        }
        self.sms_changed |= record.is_sms();
        self.notices_changed |= record.is_notice();
        if let (Some(owner), Some(id)) = (&owner, applied) {
            self.ids.insert(owner.clone(), id);
        }
        if let Record::UserDeleted { user } = &record {
            self.ids.remove(user);
        }
        if let Some(owner) = owner {
            self.touched.insert(owner);
        }
        self.records += 1;
        Ok(())
    }

    /// Stored in the delivering transaction: a refused or rolled-back
    /// delivery leaves nothing behind. A content already stored is not sent
    /// to the server again.
    fn store_blob(&mut self, hash: &BlobHash, raw: &[u8]) -> Result<()> {
        if self.blobs.contains(hash) {
            return Ok(());
        }
        // A large content already stored is not sent again; a small one is
        // sent with the insert, which skips it if present (one round trip).
        if raw.len() > SMALL_CONTENT_BYTES && self.blob_known(hash)? {
            return Ok(());
        }
        let (tx, now) = (self.tx, self.now);
        self.rt.block_on(blobs::put(tx, hash, raw, now))?;
        self.blobs.insert(*hash);
        Ok(())
    }

    /// A row without the bytes (size 0, empty data): reading it fails its
    /// hash, so the message answers as damaged; the collector removes it
    /// once no message names it.
    fn content_missing(&mut self, hash: &BlobHash) -> Result<()> {
        let (tx, now) = (self.tx, self.now);
        self.rt.block_on(blobs::put_missing(tx, hash, now))?;
        self.blobs.insert(*hash);
        Ok(())
    }

    fn blob_known(&mut self, hash: &BlobHash) -> Result<bool> {
        if self.blobs.contains(hash) {
            return Ok(true);
        }
        let tx = self.tx;
        let known = self.rt.block_on(blobs::is_known(tx, hash))?;
        if known {
            self.blobs.insert(*hash);
        }
        Ok(known)
    }

    fn summary_of_blob(&mut self, hash: &BlobHash) -> Result<mime::Summary> {
        let tx = self.tx;
        let raw = self.rt.block_on(blobs::get(tx, hash))?;
        Ok(mime::summarize(&raw, &self.summary_limits))
    }

    fn fail_batch(&mut self, error: &StoreError) {
        self.fatal.get_or_insert(error.clone());
    }

    fn savepoint(&mut self, _: &[String], _: Option<&str>) -> Result<()> {
        self.exec("open a savepoint", "SAVEPOINT intent")?;
        if let Some(server) = self.server {
            crate::index::exec(server, "SAVEPOINT intent")?;
        }
        self.savepoint = Some((self.touched.clone(), self.records));
        Ok(())
    }

    fn close_savepoint(&mut self, keep: bool) {
        let Some((touched, records)) = self.savepoint.take() else {
            return;
        };
        let closed = if keep {
            self.exec("release a savepoint", "RELEASE SAVEPOINT intent")
        } else {
            self.ids.clear();
            self.blobs.clear();
            self.touched = touched;
            self.records = records;
            self.exec(
                "roll a savepoint back",
                "ROLLBACK TO SAVEPOINT intent; RELEASE SAVEPOINT intent",
            )
        };
        let closed = closed.and_then(|()| match self.server {
            Some(server) if keep => crate::index::exec(server, "RELEASE intent"),
            Some(server) => crate::index::exec(server, "ROLLBACK TO intent")
                .and_then(|()| crate::index::exec(server, "RELEASE intent")),
            None => Ok(()),
        });
        if let Err(e) = closed {
            // The transaction is in a state nobody planned: stop the batch.
            self.fatal.get_or_insert(e);
        }
    }

    fn repair_guard_holds(&mut self, user: &str, guard: &RepairGuard) -> Result<bool> {
        let id = self.id(user)?;
        let tx = self.tx;
        self.rt
            .block_on(crate::pg::repair::guard_holds(tx, id, guard))
    }

    fn apply_fix(&mut self, user: &str, fix: &Fix) -> Result<()> {
        let id = self.id(user)?;
        let tx = self.tx;
        self.rt
            .block_on(crate::pg::repair::apply_fix(tx, user, id, fix))?;
        self.touched.insert(user.to_string());
        Ok(())
    }

    fn set_flags_keeping_modseq(
        &mut self,
        _: &str,
        _: &str,
        _: &[(u32, Vec<String>)],
    ) -> Result<()> {
        Err(not_yet("reconstruct"))
    }

    /// Removes contents no message names and stored before the grace
    /// period, up to `bytes_max` bytes. Each removal has a savepoint of its
    /// own: a delivery that names the content in the meantime makes that
    /// delete fail on the foreign key (the content stays), and one that
    /// found it present and commits after it is gone fails on the same key
    /// and is answered as a temporary failure (the sender retries): a
    /// message never names a missing content.
    fn collect_garbage(&mut self, bytes_max: u64) -> Result<Outcome> {
        let tx = self.tx;
        let candidates = self
            .rt
            .block_on(blobs::collectable(tx, self.now - GC_GRACE_SECS))?;
        let (mut removed, mut bytes) = (0u64, 0u64);
        for (hash, size) in candidates {
            if bytes >= bytes_max {
                break;
            }
            self.exec("open a savepoint", "SAVEPOINT gc")?;
            let deleted = self.rt.block_on(blobs::remove_if_unnamed(tx, &hash));
            match deleted {
                Ok(n) => {
                    self.exec("release a savepoint", "RELEASE SAVEPOINT gc")?;
                    removed += n;
                    bytes += size.max(0) as u64 * n;
                }
                Err(e) if e.code().is_some_and(|c| c.code() == "23503") => {
                    // Named by a message meanwhile: it stays.
                    self.exec(
                        "roll a savepoint back",
                        "ROLLBACK TO SAVEPOINT gc; RELEASE SAVEPOINT gc",
                    )?;
                }
                Err(e) => return Err(db_error("remove a content", &e)),
            }
        }
        if removed > 0 {
            tracing::info!(event = "gc_blobs_removed", blobs = removed, bytes);
        }
        Ok(Outcome::Collected {
            blobs_removed: removed,
            bytes_copied: 0,
            packs_deleted: 0,
        })
    }

    fn restore_blob(&mut self, _: &Prepared) -> Result<Outcome> {
        Err(not_yet("restoring a content"))
    }
}
