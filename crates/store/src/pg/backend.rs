//! The PostgreSQL backend's handle: its own small tokio runtime, which drives
//! every connection, a bounded pool of connections, and the bridge that lets
//! the store's synchronous code (the planner on writer threads, `UserReader`
//! on the server's threads) wait for a query.
//!
//! Why a runtime of its own: the store is called from plain threads (the
//! writers, the CLI) and from the server's runtime alike. Connections driven
//! by a runtime the store owns keep working whoever calls, and shutting the
//! store down stops them.

use crate::error::{ErrorKind, Result, StoreError};
use crate::pg::{describe, migrate};
use std::future::Future;
use std::time::Duration;

/// Where and how the store reaches PostgreSQL (`[store] postgres*`).
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    pub dsn: tokio_postgres::Config,
    pub connect_timeout: Duration,
    /// Most connections this node opens (readers and writers together).
    pub connections_max: usize,
    /// Writer threads, each with one transaction open at a time.
    pub writers: usize,
    /// Longest wait for PostgreSQL to confirm a commit (see `pg::writer`).
    pub commit_timeout: Duration,
    /// Longest wait for PostgreSQL to answer a read (and, before it, for a
    /// pooled connection), or to get through a writer's whole batch (ten
    /// times as long for an import's, a user delete's or a GC sweep's): a
    /// database that stops answering (a frozen host,
    /// whose kernel still acknowledges every packet, so no TCP timeout
    /// fires) fails the work as a temporary error instead of holding its
    /// callers for ever.
    pub query_timeout: Duration,
    /// The CA that signed PostgreSQL's certificate (PEM), for TLS; `None`:
    /// the web's roots. See `pg::Tls`.
    pub ca_file: Option<std::path::PathBuf>,
    /// Several databases holding users (`[[store.shards]]`), the first
    /// also the directory; empty: one, `dsn`, named `main`.
    pub shards: Vec<(String, tokio_postgres::Config)>,
    /// How long a change to a user in the middle of a move's switch-over
    /// waits for it before it is answered as a temporary failure.
    pub move_wait: Duration,
    /// How long a moved user's rows stay on the shard they left, for the
    /// sessions still reading there to notice the move (`pg::mover`).
    pub move_grace: Duration,
}

impl PostgresConfig {
    pub fn new(dsn: tokio_postgres::Config) -> Self {
        PostgresConfig {
            dsn,
            connect_timeout: Duration::from_secs(5),
            connections_max: 32,
            writers: 4,
            commit_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
            ca_file: None,
            shards: Vec::new(),
            move_wait: Duration::from_secs(5),
            move_grace: Duration::from_secs(60),
        }
    }

    /// Every shard, by name, the directory's first.
    pub fn shard_list(&self) -> Vec<(String, tokio_postgres::Config)> {
        if self.shards.is_empty() {
            vec![(crate::pg::shards::SINGLE.to_string(), self.dsn.clone())]
        } else {
            self.shards.clone()
        }
    }
}

/// A pooled connection.
pub(crate) type Conn = deadpool_postgres::Object;

pub(crate) struct Pg {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: deadpool_postgres::Pool,
    /// user@host:port/db, for messages (never the password).
    pub(crate) target: String,
    /// This database's name among the shards (`main` without shards).
    pub(crate) shard: String,
    /// Whether the directory and the server-wide state live in this
    /// database (the first shard).
    pub(crate) is_directory: bool,
    /// This database's identity (`meta.database_id`, made by the first
    /// node that opens it): what a node's derived copies are of.
    pub(crate) database_id: String,
    /// How the LISTEN connection connects (`pg::listen`).
    pub(crate) listen_dsn: tokio_postgres::Config,
    /// How a writer thread's own connection connects (`pg::writer`).
    pub(crate) writer_dsn: tokio_postgres::Config,
    /// TLS of every connection (`pg::tls`).
    pub(crate) tls: crate::pg::Tls,
    /// See [`PostgresConfig::query_timeout`].
    pub(crate) query_timeout: Duration,
    /// The once-per-cluster jobs this node leads (`Pg::leads`).
    leaders: std::sync::Mutex<std::collections::HashMap<String, Leadership>>,
}

/// A job's leadership on this node: the session that holds its advisory
/// lock (PostgreSQL releases it when the session ends), or when this node
/// last tried and failed to take it.
enum Leadership {
    Held(tokio_postgres::Client),
    TriedAt(std::time::Instant),
}

/// The first key of the jobs' advisory locks (the second is the job's
/// hash); distinct from the users' class.
const LEADER_CLASS: i32 = 0x706f_7374 + 1;
/// How often a node that does not lead a job tries to take it.
const LEADER_RETRY: Duration = Duration::from_secs(1);

impl Drop for Pg {
    fn drop(&mut self) {
        self.pool.close();
        // Allowed anywhere, also inside another runtime (a test's).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Pg {
    /// Connects and checks that the database's schema is one this binary
    /// serves (`postern store migrate` makes it so).
    pub(crate) fn open(
        config: &PostgresConfig,
        shard: &str,
        dsn: &tokio_postgres::Config,
        is_directory: bool,
    ) -> Result<Pg> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::io("start the PostgreSQL runtime", e))?;
        let mut dsn = dsn.clone();
        let target = describe(&dsn);
        dsn.connect_timeout(config.connect_timeout);
        // Durability is the database's: never weaker than "on", whatever
        // postgresql.conf says (a synchronous standby then waits too).
        dsn.options("-c synchronous_commit=on");
        dsn.application_name("postern");
        // A database host that vanishes without closing its connections (a
        // network partition, a frozen machine) is noticed in seconds, not
        // after the kernel's default of two hours: a query then fails as a
        // temporary error and the pool connects anew (to the new primary).
        dsn.keepalives(true);
        dsn.keepalives_idle(Duration::from_secs(10));
        dsn.keepalives_interval(Duration::from_secs(2));
        dsn.keepalives_retries(3);
        dsn.tcp_user_timeout(Duration::from_secs(20));
        let mut writer_dsn = dsn.clone();
        writer_dsn.application_name("postern-writer");
        let mut listen_dsn = dsn.clone();
        listen_dsn.application_name("postern-listen");
        let tls = crate::pg::tls(config.ca_file.as_deref())?;
        let manager = deadpool_postgres::Manager::from_config(
            dsn,
            tls.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(config.connections_max.saturating_sub(config.writers).max(2))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(config.connect_timeout))
            .wait_timeout(Some(config.query_timeout))
            .build()
            .map_err(|e| StoreError::invalid(format!("PostgreSQL pool: {e}")))?;
        let pg = Pg {
            runtime: Some(runtime),
            pool,
            target,
            shard: shard.to_string(),
            is_directory,
            query_timeout: config.query_timeout,
            database_id: String::new(),
            listen_dsn,
            writer_dsn,
            tls,
            leaders: std::sync::Mutex::new(std::collections::HashMap::new()),
        };
        let verdict = pg.block(async {
            let client = pg.client().await?;
            migrate::check(&client).await
        })?;
        verdict.servable()?;
        let database_id = pg.block(async {
            let client = pg.client().await?;
            client
                .query_one(
                    "WITH made AS (
                         INSERT INTO meta (key, value) VALUES ('database_id', md5(random()::text || clock_timestamp()::text))
                         ON CONFLICT (key) DO NOTHING RETURNING value)
                     SELECT value FROM made UNION ALL SELECT value FROM meta WHERE key = 'database_id'",
                    &[],
                )
                .await
                .map(|row| row.get::<_, String>(0))
                .map_err(|e| crate::pg::db_error("read the database's identity", &e))
        })?;
        let standbys = pg.block(async {
            let client = pg.client().await?;
            client
                .query_one("SHOW synchronous_standby_names", &[])
                .await
                .map(|row| row.get::<_, String>(0))
                .map_err(|e| crate::pg::db_error("read synchronous_standby_names", &e))
        })?;
        if standbys.trim().is_empty() {
            tracing::warn!(
                event = "postgres_no_synchronous_standby",
                database = %pg.target,
                "PostgreSQL has no synchronous standby (synchronous_standby_names is empty): acknowledged mail lives on one server's disk until a standby has it"
            );
        }
        let mut pg = pg;
        pg.database_id = database_id;
        Ok(pg)
    }

    /// Runs `future` on the backend's runtime and waits for it: directly on
    /// a plain thread, through `block_in_place` on a worker of a
    /// multi-threaded runtime, and on a helper thread from a
    /// current-thread runtime (which cannot block in place).
    pub(crate) fn block<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        #[allow(clippy::expect_used)]
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as its handle");
        match tokio::runtime::Handle::try_current() {
            Err(_) => runtime.block_on(future),
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(future))
            }
            Ok(_) => std::thread::scope(|s| s.spawn(|| runtime.block_on(future)).join())
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        }
    }

    /// Whether this node leads `job` (a sender that must run on one node of
    /// the cluster): it holds the job's session advisory lock, on a
    /// connection of its own, taken here when free. A node that loses that
    /// connection loses the lock at once in PostgreSQL, and the job here at
    /// its next check; another node takes it within `LEADER_RETRY` of its
    /// own next check.
    pub(crate) fn leads(&self, job: &str) -> bool {
        let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        match leaders.get(job) {
            Some(Leadership::Held(client)) if !client.is_closed() => return true,
            Some(Leadership::TriedAt(at)) if at.elapsed() < LEADER_RETRY => return false,
            _ => {}
        }
        let taking = async {
            let (client, connection) = self.listen_dsn.connect(self.tls.clone()).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
                .batch_execute(&format!(
                    "SET application_name = 'postern-leader-{}'",
                    job.replace('\'', "")
                ))
                .await?;
            let row = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&LEADER_CLASS, &job],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(row.get::<_, bool>(0).then_some(client))
        };
        // Bounded: a database that does not answer keeps no job waiting.
        let taken = self.block(async { tokio::time::timeout(self.query_timeout, taking).await });
        let taken = match taken {
            Ok(taken) => taken.map_err(|e| crate::pg::message(&e)),
            Err(_) => Err(format!(
                "no answer within {} ms",
                self.query_timeout.as_millis()
            )),
        };
        match taken {
            Ok(Some(client)) => {
                tracing::info!(
                    event = "leader_taken",
                    job,
                    "this node runs the job for the cluster"
                );
                leaders.insert(job.to_string(), Leadership::Held(client));
                true
            }
            Ok(None) => {
                leaders.insert(
                    job.to_string(),
                    Leadership::TriedAt(std::time::Instant::now()),
                );
                false
            }
            Err(e) => {
                tracing::warn!(event = "leader_check_failed", job, error = %e);
                leaders.insert(
                    job.to_string(),
                    Leadership::TriedAt(std::time::Instant::now()),
                );
                false
            }
        }
    }

    /// Starts `future` on the backend's runtime.
    pub(crate) fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(future);
        }
    }

    pub(crate) fn pool(&self) -> deadpool_postgres::Pool {
        self.pool.clone()
    }

    /// What a read bounded by `query_timeout` gives its caller: on time,
    /// its answer; late, `Unavailable`, and the connection it waited on
    /// leaves the pool and is closed (a late answer can come no more).
    pub(crate) fn answered<T>(
        &self,
        conn: Conn,
        answered: std::result::Result<Result<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match answered {
            Ok(answer) => answer,
            Err(_) => {
                drop(deadpool_postgres::Object::take(conn));
                tracing::warn!(event = "postgres_no_answer", database = %self.target, timeout_ms = self.query_timeout.as_millis() as u64, "PostgreSQL did not answer a read in time; its connection is closed");
                Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "PostgreSQL at {} did not answer within {} ms",
                        self.target,
                        self.query_timeout.as_millis()
                    ),
                ))
            }
        }
    }

    /// A connection from the pool (call inside [`Pg::block`]).
    pub(crate) async fn client(&self) -> Result<Conn> {
        self.pool.get().await.map_err(|e| {
            use deadpool_postgres::PoolError;
            let why = match &e {
                PoolError::Backend(e) => crate::pg::message(e),
                PoolError::Timeout(_) => "no connection free or made in time".to_string(),
                other => other.to_string(),
            };
            StoreError::new(
                ErrorKind::Unavailable,
                format!("PostgreSQL at {}: {why}", self.target),
            )
        })
    }
}

/// Runs `$body` (an expression awaiting on `$c`, a pooled connection, whose
/// statements are prepared once: `pg::db`) on the backend's runtime and
/// waits for it, at most `[store] postgres_query_timeout_ms`
/// ([`Pg::answered`]).
macro_rules! pg_read {
    ($pg:expr, |$c:ident| $body:expr) => {{
        let pg: &$crate::pg::backend::Pg = $pg;
        pg.block(async {
            let conn = pg.client().await?;
            let answered = {
                let $c: &deadpool_postgres::ClientWrapper = &conn;
                tokio::time::timeout(pg.query_timeout, $body).await
            };
            pg.answered(conn, answered)
        })
    }};
}
pub(crate) use pg_read;
