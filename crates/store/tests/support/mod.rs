//! Stores for the tests, on either backend: the embedded one in a temporary
//! directory, or PostgreSQL in a database of its own on a throwaway cluster
//! (`tests/pg/cluster.py`, started once per test program and stopped when
//! the program ends).
//!
//! PostgreSQL must be installed (`.ci/run` installs it); a test that needs
//! it fails, with that said, when it is not: it never passes without having
//! run.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use postern_store as store;
use std::sync::atomic::{AtomicU32, Ordering};
use store::{Store, StoreConfig};

#[path = "cluster.rs"]
mod cluster;
pub mod mail;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Postgres,
    /// PostgreSQL with two shards, `a` (the directory) and `b`: new users
    /// alternate between them.
    Sharded,
}

/// An open store and what it lives in; shut down when dropped.
pub struct Opened {
    pub store: Store,
    pub dir: tempfile::TempDir,
    /// The database, on PostgreSQL (the directory's, with shards).
    pub database: Option<tokio_postgres::Config>,
    /// Every shard's database, by name.
    pub shards: Vec<(String, tokio_postgres::Config)>,
}

impl std::ops::Deref for Opened {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.store.shutdown();
    }
}

impl Backend {
    /// A new, empty store on this backend; `tweak` adjusts its settings.
    pub fn open(self, tweak: impl FnOnce(&mut StoreConfig)) -> Opened {
        let dir = tempfile::tempdir().unwrap();
        let mut config = StoreConfig::new(dir.path().to_path_buf());
        let (database, shards) = match self {
            Backend::Embedded => (None, Vec::new()),
            Backend::Postgres => {
                let database = new_database();
                config.postgres = Some(pg_config(&database));
                (Some(database), Vec::new())
            }
            Backend::Sharded => {
                let shards = vec![
                    ("a".to_string(), new_database()),
                    ("b".to_string(), new_database()),
                ];
                config.postgres = Some(sharded_config(&shards));
                (Some(shards[0].1.clone()), shards)
            }
        };
        tweak(&mut config);
        let store = Store::open(config).unwrap();
        Opened {
            store,
            dir,
            database,
            shards,
        }
    }
}

/// Settings of a store on `database`: a small pool, as tests run in parallel.
pub fn pg_config(database: &tokio_postgres::Config) -> store::pg::PostgresConfig {
    let mut config = store::pg::PostgresConfig::new(database.clone());
    config.connections_max = 8;
    config.writers = 2;
    config
}

/// Settings of a store whose users live on `shards` (the first holds the
/// directory), with no grace before a move deletes what it left (the config allows no less than 10 s; nothing here reads stale routes).
pub fn sharded_config(shards: &[(String, tokio_postgres::Config)]) -> store::pg::PostgresConfig {
    let mut config = pg_config(&shards[0].1);
    config.shards = shards.to_vec();
    config.move_grace = std::time::Duration::ZERO;
    config
}

/// Runs `future` on a runtime of its own (tests are synchronous).
pub fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A new database on the cluster, with Postern's schema.
pub fn new_database() -> tokio_postgres::Config {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let base = store::pg::parse_dsn(cluster::dsn()).unwrap();
    block(async {
        let timeout = std::time::Duration::from_secs(30);
        let admin = store::pg::connect(&base, timeout, &store::pg::tls(None).unwrap())
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut database = base.clone();
        database.dbname(&name);
        let mut client = store::pg::connect(&database, timeout, &store::pg::tls(None).unwrap())
            .await
            .unwrap();
        store::pg::migrate::migrate(&mut client, false)
            .await
            .unwrap();
        database
    })
}

/// Runs SQL on a test database (to look under the store, or to damage it).
pub fn sql(database: &tokio_postgres::Config, statement: &str) -> Vec<tokio_postgres::Row> {
    block(async {
        let tls = store::pg::tls(None).unwrap();
        let client = store::pg::connect(database, std::time::Duration::from_secs(30), &tls)
            .await
            .unwrap();
        client.query(statement, &[]).await.unwrap()
    })
}

/// Test functions that take a [`Backend`], run once on each: as
/// `embedded::NAME`, `postgres::NAME` and `sharded::NAME`.
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::Embedded);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::Postgres);
                }
            )*
        }
        mod sharded {
            $(
                #[test]
                fn $name() {
                    super::$name($crate::support::Backend::Sharded);
                }
            )*
        }
    };
}
