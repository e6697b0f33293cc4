//! The store's public face: open (with recovery), submit changes, read.
//!
//! Two backends sit behind it (`Backend`): the embedded one (journal, packs
//! and SQLite indexes in the data directory) and PostgreSQL (`crate::pg`).
//! Both take changes through the same request queue and plan them with the
//! same planner; reads are one `match` per method. Code above this crate
//! never learns which backend it talks to.

use crate::blobs::{self, PackWriter};
use crate::directory;
use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{self, MailboxCounts, MailboxInfo, MessageMeta};
use crate::intent::{Intent, Outcome, Prepared};
use crate::journal::JournalWriter;
use crate::notify::Notifier;
use crate::paths::Paths;
use crate::pg::backend::{Pg, pg_read};
use crate::pg::read as pg;
use crate::record::Lsn;
use crate::recovery;
use crate::types::{BlobHash, canonical_user_name};
use crate::writer::{Request, Stats, Writer, WriterConfig};
use rusqlite::Connection;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Settings of the embedded store (`[store]` in the config file).
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    pub journal_segment_bytes_max: u64,
    pub pack_bytes_max: u64,
    pub batch_intents_max: usize,
    /// Requests waiting for the writer; callers wait (backpressure) beyond it.
    pub queue_requests_max: usize,
    pub user_connections_max: usize,
    pub summary_limits: mime::Limits,
    /// User that `postmaster@` of any domain reaches, if any.
    pub postmaster: Option<String>,
    /// Quota of users without their own: bytes, messages (`None`: no limit).
    pub default_quota: (Option<u64>, Option<u64>),
    /// How long a verified login is remembered (zero: never; see
    /// [`crate::credential_cache`]), and for at most how many users.
    pub credential_cache_ttl: std::time::Duration,
    pub credential_cache_entries: usize,
    /// User index connections kept open between reads (see
    /// [`crate::reader_pool`]); sessions reading at once may have more.
    pub reader_connections_max: usize,
    /// With `Some`, mail lives in PostgreSQL, not in `data_dir` (which still
    /// holds the lock and the server's own files).
    pub postgres: Option<crate::pg::PostgresConfig>,
}

impl StoreConfig {
    pub fn new(data_dir: PathBuf) -> Self {
        StoreConfig {
            data_dir,
            journal_segment_bytes_max: 64 * 1024 * 1024,
            pack_bytes_max: 256 * 1024 * 1024,
            batch_intents_max: 4096,
            queue_requests_max: 16384,
            user_connections_max: 2048,
            summary_limits: mime::Limits::default(),
            postmaster: None,
            default_quota: (None, None),
            credential_cache_ttl: std::time::Duration::from_secs(300),
            credential_cache_entries: 100_000,
            reader_connections_max: 256,
            postgres: None,
        }
    }
}

struct Inner {
    paths: Paths,
    config: StoreConfig,
    requests: Mutex<Option<SyncSender<Request>>>,
    /// The writer thread (the embedded store) or threads (PostgreSQL).
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    notifier: Arc<Notifier>,
    stats: Arc<Stats>,
    backend: Backend,
    /// Mailboxes found damaged while serving, for the background repairer.
    damaged: crate::repair_queue::RepairQueue,
    /// With synchronous replication: waits until the replica holds an LSN.
    ack_wait: std::sync::RwLock<Option<AckWait>>,
    /// Set while this server is a replica (see `Writer::read_only`).
    read_only: Arc<std::sync::atomic::AtomicBool>,
    /// Recently verified logins.
    credentials: crate::credential_cache::CredentialCache,
    /// This data directory's identity, as replication names it (`store.id`).
    store_id: String,
    /// Held for the life of the store: one process owns a data directory.
    _lock: File,
}

/// Where mail lives.
enum Backend {
    Embedded {
        /// Read connections to server.sqlite, reused.
        server_pool: Mutex<Vec<Connection>>,
        /// User index connections between two sessions' reads.
        readers: crate::reader_pool::ReaderPool,
    },
    Postgres {
        /// The databases of users, the first also of the directory and the
        /// server-wide state (`pg::shards`).
        shards: Arc<crate::pg::shards::Shards>,
        /// This node's copy of the server-wide state (`pg::server_cache`).
        cache: Arc<crate::pg::server_cache::ServerCache>,
        /// Stops the task that hears other nodes' changes (`pg::listen`).
        stop_listening: watch::Sender<bool>,
    },
}

/// A user's limits (`None`: none) and what they use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub storage_max: Option<u64>,
    pub messages_max: Option<u64>,
    pub used_bytes: u64,
    pub used_messages: u64,
}

/// Waits until a replica holds everything up to an LSN; `Err` with why when
/// it does not in time (see [`Store::set_ack_wait`]).
pub type AckWait = Arc<
    dyn Fn(
            Lsn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::result::Result<(), String>> + Send>,
        > + Send
        + Sync,
>;

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Largest number of pooled server-index read connections.
const SERVER_POOL_MAX: usize = 32;

impl Store {
    /// Opens the data directory, creating it when new, and recovers the indexes.
    ///
    /// # Errors
    /// `Unavailable` when another process holds the store; `Io`/`Corrupt` when
    /// the journal cannot be read (the message names the file and position).
    pub fn open(config: StoreConfig) -> Result<Store> {
        if config.postgres.is_some() {
            return Self::open_postgres(config);
        }
        let paths = Paths::new(&config.data_dir);
        for dir in [
            paths.root.clone(),
            paths.journal_dir(),
            paths.blobs_dir(),
            paths.users_dir(),
        ] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::io(&format!("create {}", dir.display()), e))?;
        }
        let lock = lock_data_dir(&paths)?;
        let store_id = crate::replication::load_or_create_store_id(&paths.root)?;
        let recovered = recovery::recover(&paths, &config.summary_limits)?;
        let replayed = recovered.replayed;
        let journal = JournalWriter::open(
            &paths.journal_dir(),
            recovered.next_lsn,
            config.journal_segment_bytes_max,
        )?;
        let packs = PackWriter::open(&paths.blobs_dir(), config.pack_bytes_max)?;
        let notifier = Arc::new(Notifier::default());
        let stats = Arc::new(Stats::default());
        stats.durable_lsn.store(
            recovered.next_lsn.saturating_sub(1),
            std::sync::atomic::Ordering::Release,
        );
        let read_only = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = Writer {
            read_only: read_only.clone(),
            paths: paths.clone(),
            config: WriterConfig {
                batch_intents_max: config.batch_intents_max,
                default_quota: config.default_quota,
                user_connections_max: config.user_connections_max,
                summary_limits: config.summary_limits,
            },
            journal,
            packs,
            server: recovered.server,
            users: Default::default(),
            lent: Default::default(),
            committer: crate::committer::Committer::start(paths.clone(), notifier.clone())
                .map_err(|e| StoreError::io("start commit thread", e))?,
            use_counter: 0,
            notifier: notifier.clone(),
            failed: None,
            last_touch: Default::default(),
            recreating: Default::default(),
            creating_user: None,
            journal_unsynced: None,
            stats: stats.clone(),
        };
        let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue_requests_max);
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| StoreError::io("start writer thread", e))?;
        let credentials = crate::credential_cache::CredentialCache::new(
            config.credential_cache_ttl,
            config.credential_cache_entries,
        );
        let store = Store {
            inner: Arc::new(Inner {
                paths,
                backend: Backend::Embedded {
                    server_pool: Mutex::new(Vec::new()),
                    readers: crate::reader_pool::ReaderPool::new(config.reader_connections_max),
                },
                config,
                credentials,
                requests: Mutex::new(Some(sender)),
                writers: Mutex::new(vec![handle]),
                notifier,
                stats,
                damaged: crate::repair_queue::RepairQueue::new(
                    crate::repair_queue::REPAIR_QUEUE_MAX,
                ),
                read_only,
                store_id,
                ack_wait: std::sync::RwLock::new(None),
                _lock: lock,
            }),
        };
        store
            .inner
            .stats
            .replayed
            .store(replayed, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// Opens the PostgreSQL backend: connects to every shard, checks their
    /// schema, starts each shard's writer threads and the tasks that hear
    /// other nodes. The data directory holds only the lock and this node's
    /// copy of the server-wide state.
    fn open_postgres(config: StoreConfig) -> Result<Store> {
        use crate::pg::shards::{Shard, Shards};
        let pg_config = config
            .postgres
            .clone()
            .ok_or_else(|| StoreError::invalid("no PostgreSQL settings"))?;
        let paths = Paths::new(&config.data_dir);
        std::fs::create_dir_all(&paths.root)
            .map_err(|e| StoreError::io(&format!("create {}", paths.root.display()), e))?;
        let lock = lock_data_dir(&paths)?;
        let store_id = crate::replication::load_or_create_store_id(&paths.root)?;
        let mut pgs: Vec<Arc<Pg>> = Vec::new();
        for (index, (name, dsn)) in pg_config.shard_list().iter().enumerate() {
            pgs.push(Arc::new(Pg::open(&pg_config, name, dsn, index == 0)?));
        }
        let directory = pgs[0].clone();
        let cache = Arc::new(crate::pg::server_cache::ServerCache::open(
            &paths.root,
            &directory.database_id,
        )?);
        let notifier = Arc::new(Notifier::default());
        let stats = Arc::new(Stats::default());
        let read_only = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut shards = Vec::new();
        let mut writers = Vec::new();
        for pg in &pgs {
            let (sender, receiver) = std::sync::mpsc::sync_channel(config.queue_requests_max);
            let receiver = Arc::new(Mutex::new(receiver));
            for n in 0..pg_config.writers.max(1) {
                let writer = crate::pg::writer::PgWriter {
                    pg: pg.clone(),
                    sharded: pgs.len() > 1,
                    directory: (!pg.is_directory).then(|| directory.clone()),
                    cache: cache.clone(),
                    requests: receiver.clone(),
                    notifier: notifier.clone(),
                    stats: stats.clone(),
                    plan: crate::planner::PlanConfig {
                        default_quota: config.default_quota,
                        summary_limits: config.summary_limits,
                    },
                    batch_intents_max: config.batch_intents_max,
                    commit_timeout: pg_config.commit_timeout,
                    query_timeout: pg_config.query_timeout,
                    read_only: read_only.clone(),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("store-pg-writer-{}-{n}", pg.shard))
                    .spawn(move || writer.run())
                    .map_err(|e| StoreError::io("start a writer thread", e))?;
                writers.push(handle);
            }
            shards.push(Shard {
                pg: pg.clone(),
                requests: Mutex::new(Some(sender)),
            });
        }
        let shards = Arc::new(Shards::new(shards, pg_config.move_wait));
        // Weak: the listening tasks run on the shards' own runtimes.
        let moved: crate::pg::listen::OnMoved = {
            let shards = Arc::downgrade(&shards);
            let notifier = notifier.clone();
            Arc::new(move |user: &str| {
                if let Some(shards) = shards.upgrade() {
                    shards.forget(user);
                }
                notifier.notify(user);
            })
        };
        let (stop_listening, stop) = watch::channel(false);
        for pg in &pgs {
            pg.spawn(crate::pg::listen::run(
                pg.listen_dsn.clone(),
                pg.tls.clone(),
                pg.pool(),
                notifier.clone(),
                moved.clone(),
                stop.clone(),
            ));
        }
        let names: Vec<&str> = pgs.iter().map(|pg| pg.shard.as_str()).collect();
        tracing::info!(event = "store_opened", backend = "postgres", directory = %directory.target, shards = ?names, writers = writers.len());
        let credentials = crate::credential_cache::CredentialCache::new(
            config.credential_cache_ttl,
            config.credential_cache_entries,
        );
        Ok(Store {
            inner: Arc::new(Inner {
                paths,
                backend: Backend::Postgres {
                    shards,
                    cache,
                    stop_listening,
                },
                config,
                credentials,
                requests: Mutex::new(None),
                writers: Mutex::new(writers),
                notifier,
                stats,
                damaged: crate::repair_queue::RepairQueue::new(
                    crate::repair_queue::REPAIR_QUEUE_MAX,
                ),
                read_only,
                store_id,
                ack_wait: std::sync::RwLock::new(None),
                _lock: lock,
            }),
        })
    }

    /// The PostgreSQL database of the directory and the server-wide state,
    /// when mail lives in PostgreSQL.
    pub(crate) fn pg(&self) -> Option<&Pg> {
        self.shards().map(|shards| shards.directory())
    }

    /// The PostgreSQL shards, when mail lives in PostgreSQL.
    pub(crate) fn shards(&self) -> Option<&Arc<crate::pg::shards::Shards>> {
        match &self.inner.backend {
            Backend::Postgres { shards, .. } => Some(shards),
            Backend::Embedded { .. } => None,
        }
    }

    /// The PostgreSQL database holding `user`'s account (`None`: no such
    /// user), when mail lives in PostgreSQL.
    fn user_pg(&self, user: &str) -> Option<Result<Option<&Pg>>> {
        let shards = self.shards()?;
        Some(
            shards
                .route(user)
                .map(|found| found.map(|index| shards.pg(index))),
        )
    }

    /// The shards' names, the directory's first (empty on the embedded store).
    pub fn shard_names(&self) -> Vec<String> {
        self.shards().map_or_else(Vec::new, |shards| {
            shards.list.iter().map(|s| s.pg.shard.clone()).collect()
        })
    }

    /// Where the directory puts `user` (PostgreSQL only).
    pub fn directory_entry(&self, user: &str) -> Result<Option<crate::pg::shards::DirectoryEntry>> {
        let shards = self.shards().ok_or_else(not_on_postgres)?;
        shards.entry(user)
    }

    /// Moves `user`'s account and mail to the shard named `to` while they
    /// stay in use (`user move`; see `pg::mover`). `progress` hears each
    /// step. Blocks for the whole move, the grace before the clean-up
    /// included: call it from the CLI, not from a server's runtime.
    pub fn move_user(
        &self,
        user: &str,
        to: &str,
        progress: &mut (dyn FnMut(&crate::pg::mover::MoveProgress) + Send),
    ) -> Result<crate::pg::mover::MoveReport> {
        let shards = self.shards().ok_or_else(|| {
            StoreError::invalid("user move is for the PostgreSQL backend with [[store.shards]]")
        })?;
        let grace = self
            .inner
            .config
            .postgres
            .as_ref()
            .map_or(std::time::Duration::from_secs(60), |p| p.move_grace);
        let report = crate::pg::mover::run(
            shards,
            self.inner.config.summary_limits,
            user,
            to,
            grace,
            progress,
        );
        shards.forget(user);
        report
    }

    /// Undoes a move of `user` that has not switched yet (`user move --abort`).
    pub fn abort_move(&self, user: &str) -> Result<crate::pg::shards::DirectoryEntry> {
        let shards = self.shards().ok_or_else(|| {
            StoreError::invalid("user move is for the PostgreSQL backend with [[store.shards]]")
        })?;
        crate::pg::mover::abort(shards, user)
    }

    /// Whether this node runs `job`, a sender that must run once per store
    /// (the SMS and status-notice senders): on the embedded store, unless it
    /// is a replica; on PostgreSQL, on the one node that holds the job's
    /// lock (`pg::backend::Pg::leads`).
    pub fn leads(&self, job: &str) -> bool {
        match self.pg() {
            Some(pg) => pg.leads(job),
            None => !self.is_read_only(),
        }
    }

    /// Whether the store holds nothing yet (no record on the embedded
    /// store; no user and no server-wide change on PostgreSQL): what
    /// `store import` needs.
    pub fn is_empty(&self) -> Result<bool> {
        match self.shards() {
            Some(shards) => {
                for shard in &shards.list {
                    if !pg_read!(&shard.pg, |c| pg::is_empty(c))? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            None => Ok(self.durable_lsn() == 0),
        }
    }

    /// Which backend holds the mail: "embedded" or "postgres".
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Embedded { .. } => "embedded",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// This data directory's identity (replication names the primary it
    /// follows by it).
    pub fn store_id(&self) -> &str {
        &self.inner.store_id
    }

    /// Makes the store take only replication, repairs and garbage collection
    /// (a replica), or everything again (a primary).
    pub fn set_read_only(&self, read_only: bool) {
        self.inner
            .read_only
            .store(read_only, std::sync::atomic::Ordering::Release);
    }

    pub fn is_read_only(&self) -> bool {
        self.inner
            .read_only
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The last LSN that is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner
            .stats
            .durable_lsn
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Bumped after every durable batch.
    pub fn watch_durable(&self) -> watch::Receiver<u64> {
        self.inner
            .notifier
            .subscribe(crate::writer::DURABLE_WATCH_KEY)
    }

    /// Where this server stands as a replica (`None`: it never was one).
    pub fn replica_position(&self) -> Result<Option<directory::ReplicaPosition>> {
        self.with_server(directory::replica_position)
    }

    /// Reads the journal from `from_lsn` on (see [`crate::replication::JournalCursor`]).
    pub fn journal_cursor(&self, from_lsn: Lsn) -> Result<crate::replication::JournalCursor> {
        crate::replication::JournalCursor::open(&self.inner.paths.journal_dir(), from_lsn)
    }

    /// A user's stored password hash (replication compares it, never logs it).
    pub fn password_hash(&self, user: &str) -> Result<Option<String>> {
        match self.user_pg(user) {
            Some(Ok(Some(pg))) => pg_read!(pg, |c| pg::password_hash(c, user)),
            Some(Ok(None)) => Ok(None),
            Some(Err(e)) => Err(e),
            None => self.with_server(|c| directory::password_hash(c, user)),
        }
    }

    /// Whether a blob with this hash is stored here (it may still be damaged).
    pub fn has_blob(&self, hash: &BlobHash) -> Result<bool> {
        match self.shards() {
            Some(shards) => {
                for shard in &shards.list {
                    if pg_read!(&shard.pg, |c| crate::pg::blobs::is_known(c, hash))? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            None => self.with_server(|conn| Ok(directory::blob_location(conn, hash)?.is_some())),
        }
    }

    /// Writer counters (batches, records, intents).
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.paths.root
    }

    fn sender(&self) -> Result<SyncSender<Request>> {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::new(ErrorKind::Unavailable, "store is shutting down"))
    }

    /// Submits intents and waits until they are durable (or refused).
    pub async fn submit(&self, intents: Vec<Intent>) -> Vec<Result<Outcome>> {
        let _waiting = Waiting::new(&self.inner.stats);
        let results = match self.shards() {
            Some(shards) if shards.sharded() => {
                return crate::pg::route::submit(self, shards, intents).await;
            }
            Some(shards) => submit_to(shards.sender(0), intents).await,
            None => submit_to(self.sender(), intents).await,
        };
        let wait = self
            .inner
            .ack_wait
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match wait {
            Some(wait) if results.iter().any(|r| r.is_ok()) => {
                // The durable LSN now covers this request's batch (it is set
                // before callers are answered); waiting for it may wait for a
                // later batch too, never for less.
                match wait(self.durable_lsn()).await {
                    Ok(()) => results,
                    Err(why) => results
                        .into_iter()
                        .map(|r| r.and(Err(StoreError::new(ErrorKind::Unavailable, why.clone()))))
                        .collect(),
                }
            }
            _ => results,
        }
    }

    /// Makes [`submit`](Self::submit) answer a change only once `wait` says
    /// the replica holds it too (synchronous replication); a change the
    /// replica does not confirm in time is answered `Unavailable` (it is
    /// durable here, and shipped later: a client that retries may store it
    /// twice, which is the price of never acknowledging what one disk holds).
    pub fn set_ack_wait(&self, wait: Option<AckWait>) {
        *self
            .inner
            .ack_wait
            .write()
            .unwrap_or_else(|p| p.into_inner()) = wait;
    }

    /// Like [`submit`](Self::submit), for callers outside an async runtime.
    pub fn submit_blocking(&self, intents: Vec<Intent>) -> Vec<Result<Outcome>> {
        let count = intents.len();
        let _waiting = Waiting::new(&self.inner.stats);
        let sender = match self.shards() {
            Some(shards) if shards.sharded() => {
                // Routing may wait out a move: it is async, on a runtime of
                // its own here.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build();
                return match runtime {
                    Ok(runtime) => {
                        runtime.block_on(crate::pg::route::submit(self, shards, intents))
                    }
                    Err(e) => vec![Err(StoreError::io("start a runtime", e)); count],
                };
            }
            Some(shards) => shards.sender(0),
            None => self.sender(),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = sender.and_then(|s| {
            s.send(Request { intents, reply })
                .map_err(|_| StoreError::new(ErrorKind::Unavailable, "store writer stopped"))
        });
        if let Err(e) = sent {
            return vec![Err(e); count];
        }
        answer.blocking_recv().unwrap_or_else(|_| {
            vec![
                Err(StoreError::new(
                    ErrorKind::Unavailable,
                    "store writer stopped"
                ));
                count
            ]
        })
    }

    /// One intent, one answer.
    pub async fn submit_one(&self, intent: Intent) -> Result<Outcome> {
        self.submit(vec![intent])
            .await
            .pop()
            .unwrap_or_else(|| Err(StoreError::new(ErrorKind::Unavailable, "no answer")))
    }

    pub fn submit_one_blocking(&self, intent: Intent) -> Result<Outcome> {
        self.submit_blocking(vec![intent])
            .pop()
            .unwrap_or_else(|| Err(StoreError::new(ErrorKind::Unavailable, "no answer")))
    }

    /// Hashes and parses a message for the cache. CPU work: call it off the
    /// async executor for large messages.
    pub fn prepare(&self, raw: Vec<u8>) -> Arc<Prepared> {
        let hash = BlobHash::of(&raw);
        let summary = mime::summarize(&raw, &self.inner.config.summary_limits);
        // Cannot fail for this type; an empty encoding makes the writer encode it.
        let summary_json = serde_json::to_vec(&summary).unwrap_or_default();
        Arc::new(Prepared {
            raw,
            hash,
            summary,
            summary_json,
        })
    }

    /// Stops taking changes, lets the writer finish what it has, and waits for it.
    pub fn shutdown(&self) {
        self.inner
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(shards) = self.shards() {
            shards.close();
        }
        let writers =
            std::mem::take(&mut *self.inner.writers.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in writers {
            let _ = handle.join();
        }
        if let Backend::Postgres { stop_listening, .. } = &self.inner.backend {
            let _ = stop_listening.send(true);
        }
    }

    fn with_server<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let server_pool = match &self.inner.backend {
            Backend::Embedded { server_pool, .. } => server_pool,
            Backend::Postgres { shards, cache, .. } => {
                let conn = cache.reader()?;
                let result = catch_up(shards.directory(), &conn).and_then(|()| f(&conn));
                cache.put_back(conn);
                return result;
            }
        };
        let pooled = server_pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open(self.inner.paths.server_index())?;
                c.busy_timeout(std::time::Duration::from_secs(10))?;
                c
            }
        };
        let result = f(&conn);
        let mut pool = server_pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < SERVER_POOL_MAX {
            pool.push(conn);
        }
        result
    }

    pub fn user_exists(&self, user: &str) -> Result<bool> {
        match self.shards() {
            // The directory lists every account, also with one database.
            Some(shards) => pg_read!(shards.directory(), |c| pg::directory_has(c, user)),
            None => self.with_server(|c| directory::user_exists(c, user)),
        }
    }

    pub fn users(&self) -> Result<Vec<String>> {
        match self.shards() {
            Some(shards) => pg_read!(shards.directory(), |c| pg::directory_users(c)),
            None => self.with_server(directory::users),
        }
    }

    pub fn aliases(&self) -> Result<Vec<(String, Vec<String>)>> {
        match self.pg() {
            Some(pg) => pg_read!(pg, |c| pg::aliases(c)),
            None => self.with_server(directory::aliases),
        }
    }

    /// Checks a login. Returns the canonical user name when the password is right.
    /// Argon2 is deliberately slow: call from a blocking thread.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Option<String>> {
        let Ok(user) = canonical_user_name(name) else {
            return Ok(None);
        };
        let stored = self.password_hash(&user)?;
        Ok(match stored {
            Some(hash) if self.inner.credentials.hit(&user, &hash, password) => Some(user),
            Some(hash) => {
                let right = crate::password::verify(password, &hash);
                if right {
                    self.inner.credentials.insert(&user, &hash, password);
                }
                right.then_some(user)
            }
            None => {
                // Spend the same time for unknown users, so timing does not reveal who exists.
                let _ = crate::password::verify(password, DUMMY_HASH);
                None
            }
        })
    }

    /// A login that the credential cache vouches for (the same password
    /// verified for this user, against the hash stored now, within
    /// `credential_cache_ttl`): the canonical user name, without hashing.
    /// `None` says nothing about the password: check it with
    /// [`Store::authenticate`]. One indexed read; fine on an async thread.
    pub fn authenticate_cached(&self, name: &str, password: &str) -> Result<Option<String>> {
        let Ok(user) = canonical_user_name(name) else {
            return Ok(None);
        };
        let stored = self.password_hash(&user)?;
        Ok(stored
            .filter(|hash| self.inner.credentials.hit(&user, hash, password))
            .map(|_| user))
    }

    /// Maps a recipient address to users: an alias (full address, then local part),
    /// a full-address user, a bare user by local part (any domain), `postmaster`.
    /// `alice+tag@x` is `alice@x`. Case is ignored.
    pub fn resolve_recipient(&self, address: &str) -> Result<Vec<String>> {
        let address = address
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_ascii_lowercase();
        let (local, domain) = match address.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), Some(d.to_string())),
            None => (address.clone(), None),
        };
        let local = local.split('+').next().unwrap_or("").to_string();
        if local.is_empty() {
            return Err(StoreError::not_found("empty local part"));
        }
        let full = domain.as_ref().map(|d| format!("{local}@{d}"));
        let postmaster = self.inner.config.postmaster.clone();
        let resolve = |alias: &dyn Fn(&str) -> Result<Option<Vec<String>>>,
                       exists: &dyn Fn(&str) -> Result<bool>| {
            if let Some(full) = &full {
                if let Some(users) = alias(full)? {
                    return Ok(users);
                }
                if exists(full)? {
                    return Ok(vec![full.clone()]);
                }
            }
            if let Some(users) = alias(&local)? {
                return Ok(users);
            }
            if exists(&local)? {
                return Ok(vec![local.clone()]);
            }
            if local == "postmaster"
                && let Some(p) = &postmaster
                && exists(p)?
            {
                return Ok(vec![p.clone()]);
            }
            Err(StoreError::not_found(format!("no user for {address}")))
        };
        match self.shards() {
            // Every name the rules may ask about, read in one round trip
            // (this is every delivery's path).
            Some(shards) => {
                let names: Vec<String> = [Some(&local), full.as_ref(), postmaster.as_ref()]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                let (aliases, users) = pg_read!(shards.directory(), |c| pg::recipients(c, &names))?;
                resolve(&|address| Ok(aliases.get(address).cloned()), &|user| {
                    Ok(users.contains(user))
                })
            }
            None => self.with_server(|c| {
                resolve(&|address| directory::alias(c, address), &|user| {
                    directory::user_exists(c, user)
                })
            }),
        }
    }

    /// A read handle on one user's mail. The caller must have authenticated the
    /// user: the store does not check who asks. It holds an index connection
    /// (checked usable here, so a missing or rebuilding index is an error now)
    /// until [`UserReader::release`].
    pub fn reader(&self, user: &str) -> Result<UserReader> {
        let imp = match self.shards() {
            Some(shards) => {
                let (shard, moves) = shards
                    .placement(user)?
                    .ok_or_else(|| StoreError::not_found(format!("no such user {user}")))?;
                ReaderImpl::Pg {
                    id: pg_read!(shards.pg(shard), |c| pg::user_id(c, user))?,
                    shard,
                    moves,
                }
            }
            None => ReaderImpl::Sqlite(Mutex::new(Some(self.index_connection(user)?))),
        };
        Ok(UserReader {
            store: self.clone(),
            user: user.to_string(),
            imp,
        })
    }

    /// A connection to `user`'s index: a resting one from the pool, or a new
    /// one once the index is known usable.
    fn index_connection(&self, user: &str) -> Result<crate::reader_pool::Pooled> {
        let Backend::Embedded { readers, .. } = &self.inner.backend else {
            return Err(not_on_postgres());
        };
        let path = self.inner.paths.user_index(user);
        if let Some(pooled) = readers.take(user, &path) {
            return Ok(pooled);
        }
        if !path.exists() {
            if self.user_exists(user)? {
                // A known user whose index is gone: never answer from an empty one.
                self.report_damage(user, None);
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!("the index of {user} is missing; it is being rebuilt"),
                ));
            }
            return Err(StoreError::not_found(format!("no such user {user}")));
        }
        let file = crate::reader_pool::FileId::of(&path);
        let conn = index::open_existing(&path)?;
        // Being refilled by reconstruct, or created but never filled (applied
        // LSN 0: every real user has records): never an empty mailbox list.
        if index::rebuilding(&conn).unwrap_or(false) || index::applied_lsn(&conn).unwrap_or(0) == 0
        {
            self.report_damage(user, None);
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!("the index of {user} is being rebuilt"),
            ));
        }
        let Some(file) = file else {
            // Gone between the check and the open (a user being deleted).
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!("the index of {user} is being replaced"),
            ));
        };
        Ok(crate::reader_pool::Pooled { conn, file })
    }

    /// Index connections resting in the pool now (for tests and metrics).
    pub fn resting_index_connections(&self) -> usize {
        match &self.inner.backend {
            Backend::Embedded { readers, .. } => readers.len(),
            Backend::Postgres { .. } => 0,
        }
    }

    /// Queues a mailbox (or, with `None`, the user's whole index) found damaged
    /// while serving for the background repairer. Bounded and deduplicated.
    pub fn report_damage(&self, user: &str, mailbox: Option<&str>) {
        if self.inner.damaged.push(user, mailbox) {
            tracing::warn!(
                event = "repair_queued",
                user,
                mailbox = mailbox.unwrap_or("*"),
                "damage found while serving; queued for reconstruct"
            );
        }
    }

    /// The damage queue the background repairer drains.
    pub fn repair_queue(&self) -> &crate::repair_queue::RepairQueue {
        &self.inner.damaged
    }

    pub(crate) fn paths(&self) -> &crate::paths::Paths {
        &self.inner.paths
    }

    /// A counter that changes after every commit touching `user`.
    pub fn watch(&self, user: &str) -> watch::Receiver<u64> {
        self.inner.notifier.subscribe(user)
    }

    /// Bumped after every commit that changes the SMS outbox (the sender waits on it).
    pub fn watch_sms(&self) -> watch::Receiver<u64> {
        self.inner.notifier.subscribe(crate::writer::SMS_WATCH_KEY)
    }

    /// Bumped after every commit that queues or reschedules a status notice.
    pub fn watch_notices(&self) -> watch::Receiver<u64> {
        self.inner
            .notifier
            .subscribe(crate::writer::NOTICE_WATCH_KEY)
    }

    /// Status notices due at `now`, oldest post first.
    pub fn notices_due(&self, now: i64, max: usize) -> Result<Vec<crate::subscribers::Notice>> {
        self.with_server(|c| crate::subscribers::notices_due(c, now, max))
    }

    /// When the next queued status notice is due, if any is queued.
    pub fn next_notice_due(&self) -> Result<Option<i64>> {
        self.with_server(crate::subscribers::next_notice_due)
    }

    /// Status-page subscribers, oldest first.
    pub fn subscribers(&self, max: usize) -> Result<Vec<crate::subscribers::Subscriber>> {
        self.with_server(|c| crate::subscribers::subscribers(c, max))
    }

    /// The subscriber an unsubscribe link names.
    pub fn subscriber_by_unsubscribe_token(
        &self,
        token: &str,
    ) -> Result<Option<crate::subscribers::Subscriber>> {
        self.with_server(|c| crate::subscribers::subscriber_by_unsubscribe_token(c, token))
    }

    /// Queued SMS whose next attempt is due at `now` (seconds since the epoch), oldest first.
    pub fn sms_due(&self, now: i64, max: usize) -> Result<Vec<directory::Sms>> {
        self.with_server(|c| directory::sms_due(c, now, max))
    }

    /// The newest `max` SMS of the outbox, newest first.
    pub fn sms_list(&self, max: usize) -> Result<Vec<directory::Sms>> {
        self.with_server(|c| directory::sms_list(c, max))
    }

    /// SMS alerts queued for `user` at or after `since` (seconds since the epoch).
    pub fn sms_alerts_since(&self, user: &str, since: i64) -> Result<u64> {
        self.with_server(|c| directory::sms_alerts_since(c, user, since))
    }

    /// A user's own quota settings (bytes, messages), without the defaults.
    pub fn quota_settings(&self, user: &str) -> Result<(Option<u64>, Option<u64>)> {
        match self.user_pg(user) {
            Some(Ok(Some(pg))) => pg_read!(pg, |c| pg::quota(c, user)),
            Some(Ok(None)) => Ok((None, None)),
            Some(Err(e)) => Err(e),
            None => self.with_server(|c| directory::quota(c, user)),
        }
    }

    /// A user's quota and usage.
    pub fn quota(&self, user: &str) -> Result<Quota> {
        let (own_storage, own_messages) = self.quota_settings(user)?;
        let reader = self.reader(user)?;
        let (used_bytes, used_messages) = match reader.pg()? {
            Some((pg, id)) => pg_read!(pg, |c| pg::usage(c, id))?,
            None => reader.with(index::usage)?,
        };
        Ok(Quota {
            storage_max: own_storage.or(self.inner.config.default_quota.0),
            messages_max: own_messages.or(self.inner.config.default_quota.1),
            used_bytes,
            used_messages,
        })
    }

    /// Mailboxes of other owners whose ACL names `user` or `anyone`, as
    /// (owner, mailbox id), owners in name order: where a LIST of the
    /// "Other Users" and "Shared" namespaces looks. Candidates only: what
    /// `user` may do is read from each owner's index
    /// ([`UserReader::rights`]).
    pub fn shared_with(&self, user: &str) -> Result<Vec<(String, String)>> {
        match self.shards() {
            // Each shard lists the grants of the owners it holds.
            Some(shards) => {
                let mut granted = Vec::new();
                for shard in &shards.list {
                    granted.extend(pg_read!(&shard.pg, |c| pg::granted_to(c, user))?);
                }
                granted.sort();
                granted.dedup();
                Ok(granted)
            }
            None => self.with_server(|c| crate::acl::granted_to(c, user)),
        }
    }

    /// A shared server annotation (METADATA on mailbox `""`).
    pub fn server_metadata(&self, entry: &str) -> Result<Option<Vec<u8>>> {
        self.with_server(|c| crate::metadata::get(c, "", entry))
    }

    /// Shared server annotations below `entry` (only its children with
    /// `children_only`), in name order.
    pub fn server_metadata_below(
        &self,
        entry: &str,
        children_only: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.with_server(|c| crate::metadata::below(c, "", entry, children_only))
    }

    /// A user's new-mail SMS alert, if set.
    pub fn sms_alert(&self, user: &str) -> Result<Option<crate::types::SmsAlert>> {
        match self.user_pg(user) {
            Some(Ok(Some(pg))) => pg_read!(pg, |c| pg::sms_alert(c, user)),
            Some(Ok(None)) => Ok(None),
            Some(Err(e)) => Err(e),
            None => self.with_server(|c| directory::sms_alert(c, user)),
        }
    }

    /// Status page: open incidents and those active since `since`, newest first.
    pub fn status_current(&self, since: i64, limit: u64) -> Result<Vec<status::Incident>> {
        self.with_server(|c| directory::status_current(c, since, limit))
    }

    /// Status page history: incidents newest first, `limit` from `offset`.
    pub fn status_incidents(&self, limit: u64, offset: u64) -> Result<Vec<status::Incident>> {
        self.with_server(|c| directory::status_incidents(c, limit, offset))
    }

    pub fn status_incident(&self, id: u64) -> Result<Option<status::Incident>> {
        self.with_server(|c| directory::status_incident(c, id))
    }

    pub fn status_incident_count(&self) -> Result<u64> {
        self.with_server(directory::status_incident_count)
    }

    /// Components as set by hand.
    pub fn status_components(&self) -> Result<Vec<status::Component>> {
        self.with_server(directory::status_components)
    }

    /// The name of the admin token whose SHA-256 (hex) this is.
    pub fn admin_token(&self, hash: &str) -> Result<Option<String>> {
        self.with_server(|c| directory::admin_token(c, hash))
    }

    /// Spam blocks set by admins, by key.
    pub fn spam_blocks(&self) -> Result<Vec<directory::SpamBlock>> {
        self.with_server(directory::spam_blocks)
    }

    /// Admin tokens: name and creation time.
    pub fn admin_tokens(&self) -> Result<Vec<(String, i64)>> {
        self.with_server(directory::admin_tokens)
    }

    pub fn sms(&self, id: u64) -> Result<Option<directory::Sms>> {
        self.with_server(|c| directory::sms(c, id))
    }

    /// Reads a content of `user`'s mail, verified against its hash: on
    /// PostgreSQL from the user's own shard, where their messages name it.
    pub fn user_blob(&self, user: &str, hash: &BlobHash) -> Result<Vec<u8>> {
        match self.user_pg(user) {
            Some(Ok(Some(pg))) => pg_read!(pg, |c| crate::pg::blobs::get(c, hash)),
            Some(Ok(None)) => Err(StoreError::not_found(format!("no such user {user}"))),
            Some(Err(e)) => Err(e),
            None => self.blob(hash),
        }
    }

    /// Reads a blob, verified against its hash.
    pub fn blob(&self, hash: &BlobHash) -> Result<Vec<u8>> {
        if let Some(shards) = self.shards() {
            let mut found = Err(StoreError::corrupt(format!(
                "blob {} missing",
                hash.to_hex()
            )));
            // A temporary failure of one shard outranks "missing" on the
            // others: it is not damage.
            for shard in &shards.list {
                match pg_read!(&shard.pg, |c| crate::pg::blobs::get(c, hash)) {
                    Ok(bytes) => return Ok(bytes),
                    Err(e) if found.as_ref().is_err_and(|f| f.kind == ErrorKind::Corrupt) => {
                        found = Err(e)
                    }
                    Err(_) => {}
                }
            }
            return found;
        }
        let lookup = || {
            self.with_server(|c| directory::blob_location(c, hash))?
                .ok_or_else(|| StoreError::corrupt(format!("blob {} missing", hash.to_hex())))
        };
        let location = lookup()?;
        match blobs::read_blob(&self.inner.paths.blobs_dir(), hash, location) {
            Ok(data) => Ok(data),
            // Garbage collection may have moved the blob between lookup and read.
            Err(_) => blobs::read_blob(&self.inner.paths.blobs_dir(), hash, lookup()?),
        }
    }

    pub fn summary_limits(&self) -> &mime::Limits {
        &self.inner.config.summary_limits
    }
}

/// Counts a request in `Stats::waiting` while it waits for the writer.
struct Waiting<'a>(&'a Stats);

impl<'a> Waiting<'a> {
    fn new(stats: &'a Stats) -> Self {
        stats
            .waiting
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(stats)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0
            .waiting
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A valid Argon2 hash of a random string, used to spend the same time on unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpg";

impl Drop for UserReader {
    fn drop(&mut self) {
        self.release();
    }
}

/// Read access to one user's mail.
pub struct UserReader {
    store: Store,
    user: String,
    imp: ReaderImpl,
}

enum ReaderImpl {
    /// The index connection while a command reads; back in the store's
    /// pool (`reader_pool`) while the session waits ([`UserReader::release`]).
    Sqlite(Mutex<Option<crate::reader_pool::Pooled>>),
    /// The user's shard, id there and moves so far; each read takes a
    /// pooled connection for its query alone, so idle sessions hold none.
    Pg { id: i64, shard: usize, moves: i64 },
}

/// Queues `intents` on a writer's queue and waits for their answers.
pub(crate) async fn submit_to(
    sender: Result<SyncSender<Request>>,
    intents: Vec<Intent>,
) -> Vec<Result<Outcome>> {
    let count = intents.len();
    let sender = match sender {
        Ok(s) => s,
        Err(e) => return vec![Err(e); count],
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    // The queue is bounded. Almost always there is room; only a full queue
    // (backpressure) blocks, and then off the async worker's other tasks.
    let sent = match sender.try_send(Request { intents, reply }) {
        Ok(()) => Ok(()),
        Err(std::sync::mpsc::TrySendError::Full(request)) => {
            match tokio::runtime::Handle::try_current() {
                Ok(handle)
                    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
                {
                    tokio::task::block_in_place(|| sender.send(request)).map_err(|_| ())
                }
                _ => sender.send(request).map_err(|_| ()),
            }
        }
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Err(()),
    };
    let stopped = || StoreError::new(ErrorKind::Unavailable, "store writer stopped");
    if sent.is_err() {
        return vec![Err(stopped()); count];
    }
    answer.await.unwrap_or_else(|_| vec![Err(stopped()); count])
}

/// What an embedded-only operation answers on the PostgreSQL backend.
fn not_on_postgres() -> StoreError {
    StoreError::invalid(
        "not built for the PostgreSQL backend yet (issue 10, docs/design/postgres-cluster.md)",
    )
}

/// Brings this node's copy of the server-wide state up to the log in
/// PostgreSQL before a read, so the read sees what other nodes committed.
/// When a writer holds the copy (it caught up when it took the lock, and
/// commits its own batch next), the read goes on without waiting.
fn catch_up(pg: &Pg, conn: &Connection) -> Result<()> {
    use crate::pg::server_cache::ServerCache;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    let begun = index::exec(conn, "BEGIN IMMEDIATE");
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if begun.is_err() {
        return Ok(());
    }
    let done = ServerCache::seq(conn)
        .and_then(|seq| pg_read!(pg, |c| pg::server_changes_since(c, seq)))
        .and_then(|log| ServerCache::apply_log(conn, &log));
    let closing = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let closed = index::exec(conn, closing);
    done.and(closed)
}

/// Takes the data directory's lock: one process owns a store.
fn lock_data_dir(paths: &Paths) -> Result<File> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.lock_file())
        .map_err(|e| StoreError::io("open store lock", e))?;
    if lock.try_lock().is_err() {
        return Err(StoreError::new(
            ErrorKind::Unavailable,
            format!(
                "the store in {} is in use by another process",
                paths.root.display()
            ),
        ));
    }
    Ok(lock)
}

/// One read of a [`UserReader`]: `$pg` (over `$c`, a pooled PostgreSQL
/// client, and `$id`, the user's id) or `$sqlite` (a function of the
/// user's index connection), by backend.
macro_rules! by_backend {
    ($reader:expr, |$c:ident, $id:ident| $pg:expr, $sqlite:expr) => {
        match $reader.pg()? {
            Some((pg, $id)) => pg_read!(pg, |$c| $pg),
            None => $reader.with($sqlite),
        }
    };
}

impl UserReader {
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The PostgreSQL shard and the user's id there, when mail lives in
    /// PostgreSQL: `Moved` once the directory says the user's mail lives on
    /// another shard (`user move`), so a session never reads the copy
    /// left behind.
    fn pg(&self) -> Result<Option<(&Pg, i64)>> {
        match (&self.imp, self.store.shards()) {
            (ReaderImpl::Pg { id, shard, moves }, Some(shards)) => {
                if shards.sharded() && shards.placement(&self.user)? != Some((*shard, *moves)) {
                    return Err(StoreError::moved(&self.user));
                }
                Ok(Some((shards.pg(*shard), *id)))
            }
            _ => Ok(None),
        }
    }

    /// Runs `f` on this user's index, borrowing a connection if none is held.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let ReaderImpl::Sqlite(conn) = &self.imp else {
            return Err(not_on_postgres());
        };
        let mut held = conn.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none() {
            *held = Some(self.store.index_connection(&self.user)?);
        }
        match held.as_ref() {
            Some(pooled) => f(&pooled.conn),
            None => Err(StoreError::new(
                ErrorKind::Unavailable,
                "no index connection",
            )),
        }
    }

    /// Gives the index connection back to the store's pool; the next read
    /// borrows one again. Call when the session starts waiting for its client.
    pub fn release(&self) {
        let (ReaderImpl::Sqlite(conn), Backend::Embedded { readers, .. }) =
            (&self.imp, &self.store.inner.backend)
        else {
            return;
        };
        let pooled = conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(pooled) = pooled {
            readers.put(&self.user, pooled);
        }
    }
    pub fn mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        by_backend!(self, |c, id| pg::mailboxes(c, id), index::mailboxes)
    }
    pub fn mailbox(&self, name: &str) -> Result<Option<MailboxInfo>> {
        by_backend!(self, |c, id| pg::mailbox_by_name(c, id, name), |c| {
            index::mailbox_by_name(c, name)
        })
    }
    pub fn mailbox_by_id(&self, id: &str) -> Result<Option<MailboxInfo>> {
        by_backend!(self, |c, user| pg::mailbox_by_id(c, user, id), |c| {
            index::mailbox_by_id(c, id)
        })
    }
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        by_backend!(self, |c, id| pg::subscriptions(c, id), index::subscriptions)
    }
    /// The ACL of one of this user's mailboxes (by id): identifiers as
    /// stored, in name order.
    pub fn acl(&self, mailbox: &str) -> Result<Vec<(String, crate::acl::Rights)>> {
        by_backend!(self, |c, id| pg::acl_entries(c, id, mailbox), |c| {
            crate::acl::entries(c, mailbox)
        })
    }
    /// The rights `user` has on one of this reader's user's mailboxes (all
    /// of them when `user` is the owner).
    pub fn rights(&self, mailbox: &str, user: &str) -> Result<crate::acl::Rights> {
        if user == self.user {
            return Ok(crate::acl::Rights::ALL);
        }
        Ok(crate::acl::effective(&self.user, user, &self.acl(mailbox)?))
    }
    /// An annotation (METADATA) of a mailbox (by id; `""`: the user's
    /// private server annotations).
    pub fn metadata(&self, mailbox: &str, entry: &str) -> Result<Option<Vec<u8>>> {
        by_backend!(self, |c, id| pg::metadata_get(c, id, mailbox, entry), |c| {
            crate::metadata::get(c, mailbox, entry)
        })
    }
    /// Annotations below `entry` (only its children with `children_only`),
    /// in name order.
    pub fn metadata_below(
        &self,
        mailbox: &str,
        entry: &str,
        children_only: bool,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        by_backend!(
            self,
            |c, id| pg::metadata_below(c, id, mailbox, entry, children_only),
            |c| crate::metadata::below(c, mailbox, entry, children_only)
        )
    }
    pub fn messages(&self, mailbox: &str) -> Result<Vec<MessageMeta>> {
        let metas = by_backend!(self, |c, id| pg::messages(c, id, mailbox), |c| {
            index::messages(c, mailbox)
        })?;
        if metas.iter().any(|m| m.damaged) {
            self.damaged(mailbox, metas.iter().filter(|m| m.damaged).map(|m| m.uid));
        }
        Ok(metas)
    }
    /// The messages with UIDs in `first..=last`, in UID order.
    pub fn messages_between(
        &self,
        mailbox: &str,
        first: u32,
        last: u32,
    ) -> Result<Vec<MessageMeta>> {
        let metas = by_backend!(
            self,
            |c, id| pg::messages_between(c, id, mailbox, first, last),
            |c| index::messages_between(c, mailbox, first, last)
        )?;
        if metas.iter().any(|m| m.damaged) {
            self.damaged(mailbox, metas.iter().filter(|m| m.damaged).map(|m| m.uid));
        }
        Ok(metas)
    }
    fn damaged(&self, mailbox: &str, uids: impl Iterator<Item = u32>) {
        let uids: Vec<u32> = uids.take(20).collect();
        tracing::error!(event = "index_row_damaged", user = %self.user, mailbox, ?uids, "index rows failed their checksum; those messages answer NO until repaired");
        self.store.report_damage(&self.user, Some(mailbox));
    }
    /// UID, MODSEQ and flags (space-separated) of every message, for SELECT.
    pub fn select_view(&self, mailbox: &str) -> Result<Vec<(u32, u64, String)>> {
        by_backend!(self, |c, id| pg::select_view(c, id, mailbox), |c| {
            index::select_view(c, mailbox)
        })
    }
    pub fn changed_since(&self, mailbox: &str, modseq: u64) -> Result<Vec<MessageMeta>> {
        let metas = by_backend!(
            self,
            |c, id| pg::changed_since(c, id, mailbox, modseq),
            |c| { index::changed_since(c, mailbox, modseq) }
        )?;
        if metas.iter().any(|m| m.damaged) {
            self.damaged(mailbox, metas.iter().filter(|m| m.damaged).map(|m| m.uid));
        }
        Ok(metas)
    }
    pub fn expunged_since(&self, mailbox: &str, modseq: u64) -> Result<Vec<u32>> {
        by_backend!(
            self,
            |c, id| pg::expunged_since(c, id, mailbox, modseq),
            |c| { index::expunged_since(c, mailbox, modseq) }
        )
    }
    pub fn changes(&self, mailbox: &str, since: u64) -> Result<index::Changes> {
        match self.pg()? {
            // One snapshot, so the mailbox, its changes and its expunges agree.
            Some((pg, id)) => pg.block(async {
                let mut conn = pg.client().await?;
                let answered = tokio::time::timeout(
                    pg.query_timeout,
                    pg::changes_snapshot(&mut conn, id, mailbox, since),
                )
                .await;
                pg.answered(conn, answered)
            }),
            None => self.with(|c| index::changes(c, mailbox, since)),
        }
    }
    pub fn message(&self, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
        let meta = by_backend!(self, |c, id| pg::message(c, id, mailbox, uid), |c| {
            index::message(c, mailbox, uid)
        })?;
        if meta.as_ref().is_some_and(|m| m.damaged) {
            self.damaged(mailbox, std::iter::once(uid));
        }
        Ok(meta)
    }
    /// The messages of `uids` that exist, in UID order: point lookups on the
    /// embedded index, one statement on PostgreSQL (where each lookup is a
    /// round trip).
    pub fn messages_by_uid(&self, mailbox: &str, uids: &[u32]) -> Result<Vec<MessageMeta>> {
        let mut metas = match self.pg()? {
            Some((pg, id)) => pg_read!(pg, |c| pg::messages_by_uid(c, id, mailbox, uids))?,
            None => self.with(|c| {
                let mut found = Vec::with_capacity(uids.len());
                for uid in uids {
                    if let Some(meta) = index::message(c, mailbox, *uid)? {
                        found.push(meta);
                    }
                }
                Ok(found)
            })?,
        };
        metas.sort_by_key(|m| m.uid);
        let damaged: Vec<u32> = metas.iter().filter(|m| m.damaged).map(|m| m.uid).collect();
        if !damaged.is_empty() {
            self.damaged(mailbox, damaged.into_iter());
        }
        Ok(metas)
    }
    pub fn counts(&self, mailbox: &str) -> Result<MailboxCounts> {
        by_backend!(self, |c, id| pg::counts(c, id, mailbox), |c| {
            index::counts(c, mailbox)
        })
    }
    /// The cached summary; a damaged cache entry is re-derived from the blob
    /// (and logged), so a caller never gets damaged data.
    pub fn summary(&self, mailbox: &str, meta: &MessageMeta) -> Result<mime::Summary> {
        if meta.damaged {
            return Err(StoreError::corrupt(format!(
                "index row of UID {} failed its checksum",
                meta.uid
            )));
        }
        let found = by_backend!(
            self,
            |c, id| pg::summary(c, id, mailbox, meta.uid, &meta.blob),
            |c| index::summary(c, mailbox, meta.uid, &meta.blob)
        );
        self.summary_or_rederived(mailbox, meta, found)
    }

    /// A damaged cache entry re-derived from the blob (logged, the mailbox
    /// queued for repair); a missing one is an error.
    fn summary_or_rederived(
        &self,
        mailbox: &str,
        meta: &MessageMeta,
        found: Result<Option<mime::Summary>>,
    ) -> Result<mime::Summary> {
        match found {
            Ok(Some(summary)) => Ok(summary),
            Ok(None) => Err(StoreError::not_found(format!("UID {} is gone", meta.uid))),
            Err(e) if e.kind == ErrorKind::Corrupt => {
                tracing::warn!(event = "cache_damaged", user = %self.user, mailbox, uid = meta.uid, error = %e, "re-deriving from the blob");
                self.store.report_damage(&self.user, Some(mailbox));
                let raw = self.blob(&meta.blob)?;
                Ok(mime::summarize(&raw, self.store.summary_limits()))
            }
            Err(e) => Err(e),
        }
    }

    /// [`UserReader::summary`] of each of `metas`, in their order, read in one
    /// range scan when they are dense enough that the scan reads little
    /// else; the same answers as one call per message.
    pub fn summaries(&self, mailbox: &str, metas: &[&MessageMeta]) -> Vec<Result<mime::Summary>> {
        let (Some(first), Some(last)) = (
            metas.iter().map(|m| m.uid).min(),
            metas.iter().map(|m| m.uid).max(),
        ) else {
            return Vec::new();
        };
        let span = u64::from(last - first) + 1;
        if metas.len() < 4 || span > 4 * metas.len() as u64 {
            return metas.iter().map(|m| self.summary(mailbox, m)).collect();
        }
        let rows = (|| {
            by_backend!(
                self,
                |c, id| pg::summaries_between(c, id, mailbox, first, last),
                |c| index::summaries_between(c, mailbox, first, last)
            )
        })();
        let mut rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                let message = e.to_string();
                return metas
                    .iter()
                    .map(|_| Err(StoreError::new(e.kind, message.clone())))
                    .collect();
            }
        };
        metas
            .iter()
            .map(|meta| {
                if meta.damaged {
                    return Err(StoreError::corrupt(format!(
                        "index row of UID {} failed its checksum",
                        meta.uid
                    )));
                }
                let found = rows.remove(&meta.uid).map(|(bytes, crc, blob)| {
                    index::decode_summary(meta.uid, &meta.blob, &bytes, crc, &blob)
                });
                self.summary_or_rederived(mailbox, meta, found.transpose())
            })
            .collect()
    }
    /// A content of this user's mail, verified against its hash (on
    /// PostgreSQL from the user's own shard).
    pub fn blob(&self, hash: &BlobHash) -> Result<Vec<u8>> {
        match self.pg()? {
            Some((pg, _)) => pg_read!(pg, |c| crate::pg::blobs::get(c, hash)),
            None => self.store.blob(hash),
        }
    }

    /// What SORT and THREAD need of each message, read in one scan of the
    /// `sort_keys` table: for each of `metas` (in order), its keys as a
    /// summary holding only them, or `None` when the row is missing (an
    /// index from before the table) or fails its check against the
    /// message's blob (then logged, the mailbox queued for repair): the
    /// caller reads that message's whole summary instead.
    pub fn sort_summaries(
        &self,
        mailbox: &str,
        metas: &[&MessageMeta],
    ) -> Result<Vec<Option<mime::Summary>>> {
        let mut rows = by_backend!(self, |c, id| pg::sort_keys(c, id, mailbox), |c| {
            index::sort_keys(c, mailbox)
        })?;
        let mut damaged = 0usize;
        let out = metas
            .iter()
            .map(|meta| {
                let (json, crc) = rows.remove(&meta.uid)?;
                if meta.damaged || index::summary_checksum(&meta.blob.to_hex(), &json) != crc {
                    damaged += 1;
                    return None;
                }
                match serde_json::from_slice::<index::SortKeys>(&json) {
                    Ok(keys) => Some(keys.into_summary()),
                    Err(_) => {
                        damaged += 1;
                        None
                    }
                }
            })
            .collect();
        if damaged > 0 {
            tracing::warn!(event = "sort_keys_damaged", user = %self.user, mailbox, damaged, "sort keys failed their check; read from the summaries instead");
            self.store.report_damage(&self.user, Some(mailbox));
        }
        Ok(out)
    }
    /// A message's bytes, verified against its hash. A damaged index row or a
    /// missing or corrupt blob is an error for this message alone, logged with
    /// user, mailbox and UID, and queues the mailbox for repair.
    pub fn message_bytes(&self, mailbox: &str, meta: &MessageMeta) -> Result<Vec<u8>> {
        if meta.damaged {
            return Err(StoreError::corrupt(format!(
                "index row of UID {} failed its checksum",
                meta.uid
            )));
        }
        self.blob(&meta.blob).inspect_err(|e| {
            // Damage goes to the repairer; a database that does not answer,
            // or mail that moved, is not damage.
            if matches!(e.kind, ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Io) {
                tracing::error!(event = "blob_unavailable", user = %self.user, mailbox, uid = meta.uid, error = %e);
                self.store.report_damage(&self.user, Some(mailbox));
            }
        })
    }
}
