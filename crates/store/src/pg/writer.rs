//! Writer threads of the PostgreSQL backend. Each takes a batch of waiting
//! requests and commits it in one PostgreSQL transaction:
//!
//! 1. `BEGIN` (READ COMMITTED: each statement after the locks sees every
//!    commit made before they were granted);
//! 2. one advisory lock per user the batch touches, taken in one statement
//!    in ascending key order, so two batches never wait on each other in a
//!    cycle. Every writer of a user, on any node, holds the user's lock from
//!    before its first read until its commit: reading `uid_next` and
//!    inserting under it runs alone for that user, so UIDs and MODSEQs are
//!    never given twice and rise in commit order. A different user never
//!    waits;
//! 3. for a batch that changes server-wide state (status page, outboxes,
//!    blocks, tokens, subscribers, aliases): the `server_stream` row lock,
//!    then this node's copy of that state (`server_cache`) caught up to the
//!    log, inside a SQLite transaction. Mail alone never takes that lock;
//! 4. each intent planned by the shared planner in a savepoint;
//! 5. `COMMIT`, then the copy's commit; only then are callers answered and
//!    the users' watchers on this node woken.
//!
//! Several writer threads take batches at once; PostgreSQL groups their
//! commits' WAL flushes.

use crate::error::{ErrorKind, Result, StoreError};
use crate::intent::{Intent, Outcome};
use crate::notify::Notifier;
use crate::pg::backend::Pg;
use crate::pg::db::{Cached, Statements};
use crate::pg::server_cache::ServerCache;
use crate::pg::tx::PgTx;
use crate::pg::{db_error, read};
use crate::planner::{PlanConfig, Planner, intent_users};
use crate::writer::{Request, Stats};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

/// The first key of every advisory lock Postern takes ("post"): the second
/// is the hash of a user name.
const LOCK_CLASS: i32 = 0x706f_7374;

pub(crate) struct PgWriter {
    pub pg: Arc<Pg>,
    /// Whether users are spread over several databases.
    pub sharded: bool,
    /// The directory's database, when it is not this writer's (`pg::shards`).
    pub directory: Option<Arc<Pg>>,
    pub cache: Arc<ServerCache>,
    pub requests: Arc<Mutex<Receiver<Request>>>,
    pub notifier: Arc<Notifier>,
    pub stats: Arc<Stats>,
    pub plan: PlanConfig,
    pub batch_intents_max: usize,
    /// Longest wait for PostgreSQL to confirm a commit.
    pub commit_timeout: std::time::Duration,
    /// Longest a batch may wait for PostgreSQL in all.
    pub query_timeout: std::time::Duration,
    /// Set while `store import` applies another store's records.
    pub read_only: Arc<std::sync::atomic::AtomicBool>,
}

impl PgWriter {
    pub(crate) fn run(self) {
        // This thread's own runtime and connection: the connection is driven
        // on this thread, inside `block_on`, so a query costs no hand-off to
        // another thread and back (those wake-ups cost more CPU than the
        // queries themselves did).
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                tracing::error!(event = "writer_failed", error = %e, "cannot start a PostgreSQL writer's runtime");
                return;
            }
        };
        let mut local = Local {
            runtime,
            connection: None,
            statements: Statements::default(),
        };
        loop {
            let batch = {
                let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
                let Ok(first) = requests.recv() else { break };
                let mut intents = first.intents.len();
                let mut batch = vec![first];
                while intents < self.batch_intents_max {
                    match requests.try_recv() {
                        Ok(next) => {
                            intents += next.intents.len();
                            batch.push(next);
                        }
                        Err(_) => break,
                    }
                }
                batch
            };
            self.commit(&mut local, batch);
        }
        tracing::info!(event = "writer_stopped", "PostgreSQL writer stopped");
    }

    fn commit(&self, local: &mut Local, requests: Vec<Request>) {
        let intents: Vec<&Intent> = requests.iter().flat_map(|r| &r.intents).collect();
        match self.plan_and_commit(local, &intents) {
            Ok(committed) => {
                for user in &committed.touched {
                    self.notifier.notify(user);
                }
                if committed.sms_changed {
                    self.notifier.notify(crate::writer::SMS_WATCH_KEY);
                }
                if committed.notices_changed {
                    self.notifier.notify(crate::writer::NOTICE_WATCH_KEY);
                }
                self.stats.batches.fetch_add(1, Relaxed);
                self.stats.records.fetch_add(committed.records, Relaxed);
                let succeeded = committed.answers.iter().filter(|a| a.is_ok()).count();
                self.stats.intents.fetch_add(succeeded as u64, Relaxed);
                let mut answers = committed.answers.into_iter();
                for request in requests {
                    let results = answers.by_ref().take(request.intents.len()).collect();
                    let _ = request.reply.send(results);
                }
                // Then the other nodes (after the answers: it is not on the
                // callers' path, and the poll covers a lost one).
                let mut keys: Vec<String> = committed.touched.into_iter().collect();
                if committed.sms_changed {
                    keys.push(crate::writer::SMS_WATCH_KEY.to_string());
                }
                if committed.notices_changed {
                    keys.push(crate::writer::NOTICE_WATCH_KEY.to_string());
                }
                // On this writer's own connection, driven on this thread: no
                // hand-off to the backend's runtime and its pool.
                if let (false, Some((client, _))) = (keys.is_empty(), &local.connection) {
                    let announced = local
                        .runtime
                        .block_on(crate::pg::listen::announce(client, &keys));
                    if let Err(e) = announced {
                        tracing::warn!(event = "postgres_announce_failed", error = %e, "other nodes learn of this change by their poll");
                    }
                }
            }
            Err(e) => {
                tracing::error!(event = "batch_failed", error = %e, "batch not committed; every change of it is refused");
                for request in requests {
                    let results = request.intents.iter().map(|_| Err(e.clone())).collect();
                    let _ = request.reply.send(results);
                }
            }
        }
    }

    /// Plans every intent in one transaction and commits it.
    fn plan_and_commit(&self, local: &mut Local, intents: &[&Intent]) -> Result<Committed> {
        let runtime = &local.runtime;
        if local
            .connection
            .as_ref()
            .is_none_or(|(client, _)| client.is_closed())
        {
            local.connection = None;
            // Statements belong to the connection they were prepared on.
            local.statements = Statements::default();
            // The whole handshake bounded: a frozen server accepts the TCP
            // connection (its kernel does) and never answers the startup.
            let connected = runtime.block_on(async {
                tokio::time::timeout(
                    self.query_timeout,
                    self.pg.writer_dsn.connect(self.pg.tls.clone()),
                )
                .await
            });
            let (client, connection) = match connected {
                Ok(connected) => connected.map_err(|e| {
                    StoreError::new(
                        crate::pg::error_kind(&e),
                        format!(
                            "cannot connect to PostgreSQL at {}: {}",
                            self.pg.target,
                            crate::pg::message(&e)
                        ),
                    )
                })?,
                Err(_) => {
                    return Err(StoreError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "PostgreSQL at {} did not answer within {} ms",
                            self.pg.target,
                            self.query_timeout.as_millis()
                        ),
                    ));
                }
            };
            let driver = runtime.spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(event = "postgres_writer_connection_lost", error = %crate::pg::message(&e));
                }
            });
            // The connection is this writer's alone: its session settings
            // hold for every transaction.
            runtime
                .block_on(client.batch_execute("SET lock_timeout = '10s'"))
                .map_err(|e| db_error("set the lock timeout", &e))?;
            local.connection = Some((client, driver));
        }
        let Some((client, driver)) = local.connection.as_mut() else {
            return Err(StoreError::new(ErrorKind::Unavailable, "no connection"));
        };
        // A watchdog on this thread's runtime (it runs while the batch waits
        // in `block_on`): a batch still waiting for PostgreSQL after
        // `query_timeout` has its connection closed, so the statement it
        // waits on fails at once and the batch is refused as temporary.
        let overran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Batches whose work grows with what they carry (an import's records
        // and contents, a whole account deleted, a GC sweep) get longer.
        let long = intents.iter().any(|i| {
            matches!(
                i,
                Intent::Replicate { .. }
                    | Intent::DeleteUser { .. }
                    | Intent::CollectGarbage { .. }
            )
        });
        let watchdog = runtime.spawn({
            let connection = driver.abort_handle();
            let overran = overran.clone();
            let limit = if long {
                self.query_timeout * 10
            } else {
                self.query_timeout
            };
            async move {
                tokio::time::sleep(limit).await;
                overran.store(true, Relaxed);
                connection.abort();
            }
        });
        let mut discard = false;
        let result = self.batch(runtime, client, &local.statements, intents, &mut discard);
        watchdog.abort();
        let result = match result {
            Err(_) if overran.load(Relaxed) => {
                discard = true;
                tracing::warn!(event = "postgres_no_answer", database = %self.pg.target, timeout_ms = self.query_timeout.as_millis() as u64, "a batch waited too long for PostgreSQL; its connection is closed");
                Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "PostgreSQL at {} did not answer within {} ms",
                        self.pg.target,
                        self.query_timeout.as_millis()
                    ),
                ))
            }
            result => result,
        };
        if discard && let Some((_, driver)) = local.connection.take() {
            // Its COMMIT may still be waiting: close it, never use it again.
            driver.abort();
        }
        result
    }

    fn batch(
        &self,
        runtime: &tokio::runtime::Runtime,
        client: &mut tokio_postgres::Client,
        statements: &Statements,
        intents: &[&Intent],
        discard: &mut bool,
    ) -> Result<Committed> {
        let pg = runtime;
        let tx = pg
            .block_on(client.transaction())
            .map_err(|e| db_error("begin a transaction", &e))?;
        let locks = pg.block_on(users_to_lock(&tx, intents))?;
        pg.block_on(tx.execute(
            "SELECT pg_advisory_xact_lock($1, h)
             FROM (SELECT DISTINCT hashtext(n) AS h FROM unnest($2::text[]) AS n ORDER BY 1) AS k",
            &[&LOCK_CLASS, &locks],
        ))
        .map_err(|e| db_error("lock the batch's users", &e))?;
        // The server-wide state lives with the directory: a writer of
        // another shard never takes its lock (the store sends it no such
        // intent; one that comes anyway is refused by `PgTx`).
        if !self.pg.is_directory || !intents.iter().any(|i| changes_server_state(i)) {
            let committed = self.plan_in(runtime, &tx, statements, None, intents)?;
            commit(runtime, tx, self.commit_timeout, discard)?;
            return Ok(committed);
        }
        pg.block_on(tx.execute(
            "SELECT last_seq FROM server_stream WHERE one = 1 FOR UPDATE",
            &[],
        ))
        .map_err(|e| db_error("lock the server-wide state", &e))?;
        let conn = self.cache.writer.lock().unwrap_or_else(|p| p.into_inner());
        crate::index::exec(&conn, "BEGIN IMMEDIATE")?;
        let done = ServerCache::seq(&conn)
            .and_then(|seq| pg.block_on(read::server_changes_since(&tx, seq)))
            .and_then(|log| ServerCache::apply_log(&conn, &log))
            .and_then(|()| self.plan_in(runtime, &tx, statements, Some(&conn), intents))
            // PostgreSQL first: the copy follows the log, never leads it.
            .and_then(|committed| {
                commit(runtime, tx, self.commit_timeout, discard).map(|()| committed)
            });
        let closing = if done.is_ok() { "COMMIT" } else { "ROLLBACK" };
        if let Err(e) = crate::index::exec(&conn, closing) {
            // The next batch that takes the lock catches the copy up.
            tracing::warn!(event = "server_cache_commit_failed", error = %e, "this node's copy of the server-wide state is behind its log");
            let _ = crate::index::exec(&conn, "ROLLBACK");
        }
        done
    }

    /// Plans the intents in the open transaction (`server`: the copy of the
    /// server-wide state, when the batch holds its lock).
    fn plan_in(
        &self,
        runtime: &tokio::runtime::Runtime,
        tx: &tokio_postgres::Transaction<'_>,
        statements: &Statements,
        server: Option<&rusqlite::Connection>,
        intents: &[&Intent],
    ) -> Result<Committed> {
        let cached = Cached { tx, statements };
        let place = crate::pg::tx::Place {
            shard: &self.pg.shard,
            directory: self.directory.as_deref(),
            sharded: self.sharded,
        };
        let mut ptx = PgTx::new(
            runtime,
            &cached,
            place,
            server,
            self.read_only.load(std::sync::atomic::Ordering::Acquire),
            crate::writer::now_seconds(),
            self.plan.summary_limits,
        );
        let mut answers = Vec::with_capacity(intents.len());
        for intent in intents {
            if ptx.fatal.is_some() {
                break;
            }
            let mut planner = Planner {
                tx: &mut ptx,
                config: self.plan,
            };
            answers.push(planner.plan_contained(intent));
        }
        if let Some(e) = ptx.fatal.take() {
            return Err(e);
        }
        Ok(Committed {
            answers,
            touched: std::mem::take(&mut ptx.touched),
            records: ptx.records,
            sms_changed: ptx.sms_changed,
            notices_changed: ptx.notices_changed,
        })
    }
}

/// A writer thread's own runtime and PostgreSQL connection (with the task
/// that drives it on that runtime).
struct Local {
    runtime: tokio::runtime::Runtime,
    connection: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
    /// The statements prepared on `connection`.
    statements: Statements,
}

/// What a committed batch did.
struct Committed {
    answers: Vec<Result<Outcome>>,
    /// Users whose data changed.
    touched: BTreeSet<String>,
    /// Records applied.
    records: u64,
    sms_changed: bool,
    notices_changed: bool,
}

/// Commits, waiting at most `deadline`: a commit that waits for a
/// synchronous standby that is gone waits for ever in PostgreSQL. An error
/// or the deadline leaves the outcome unknown (the commit may have happened,
/// or happen later, on the primary alone): the callers are told the change
/// is not made, and a retry may store a second copy; never a loss of what
/// was acknowledged. After the deadline the connection is discarded.
fn commit(
    runtime: &tokio::runtime::Runtime,
    tx: tokio_postgres::Transaction<'_>,
    deadline: std::time::Duration,
    discard: &mut bool,
) -> Result<()> {
    match runtime.block_on(async { tokio::time::timeout(deadline, tx.commit()).await }) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(StoreError::new(
            ErrorKind::Unavailable,
            format!("commit to PostgreSQL: {}", crate::pg::message(&e)),
        )),
        Err(_) => {
            *discard = true;
            Err(StoreError::new(
                ErrorKind::Unavailable,
                format!(
                    "PostgreSQL did not confirm the commit within {} ms (a synchronous standby gone?)",
                    deadline.as_millis()
                ),
            ))
        }
    }
}

/// Whether an intent may read or change the server-wide state (and so
/// needs the `server_stream` lock and the node's copy of that state). Mail,
/// mailboxes and accounts do not.
fn changes_server_state(intent: &Intent) -> bool {
    match intent {
        Intent::Acting { intent, .. } => changes_server_state(intent),
        Intent::SetMetadata { user, .. } => user.is_none(),
        Intent::AddUser { .. }
        | Intent::SetPassword { .. }
        | Intent::CreateMailbox { .. }
        | Intent::DeleteMailbox { .. }
        | Intent::RenameMailbox { .. }
        | Intent::Subscribe { .. }
        | Intent::Append { .. }
        | Intent::StoreFlags { .. }
        | Intent::Expunge { .. }
        | Intent::Remove { .. }
        | Intent::Copy { .. }
        | Intent::SetAcl { .. }
        | Intent::SetQuota { .. }
        | Intent::SetSmsAlert { .. }
        | Intent::Repair { .. }
        | Intent::CollectGarbage { .. }
        | Intent::RestoreBlob { .. } => false,
        // Aliases (a deleted user leaves them), outboxes, the status page,
        // blocks, tokens, subscribers; an import (its position is kept there).
        _ => true,
    }
}

/// The names whose locks the batch takes: every user an intent changes
/// and, for a deleted user, the owners whose ACLs name them.
async fn users_to_lock(
    tx: &tokio_postgres::Transaction<'_>,
    intents: &[&Intent],
) -> Result<Vec<String>> {
    let mut names = BTreeSet::new();
    for intent in intents {
        let (user, other) = intent_users(intent);
        names.extend(user.into_iter().chain(other).map(str::to_string));
        if let Intent::DeleteUser { user } | Intent::ForgetUser { user } = intent {
            for (owner, _, _) in read::acl_naming(tx, user).await? {
                names.insert(owner);
            }
        }
    }
    Ok(names.into_iter().collect())
}
