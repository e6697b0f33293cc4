//! What the backend's queries run on: a connection or a transaction, with
//! its statements prepared once and kept where the connection lives long.
//!
//! Why: tokio-postgres prepares a statement given as text before every
//! execution, which is a round trip of its own: every query cost two, and
//! each round trip wakes PostgreSQL's backend and this process's threads
//! (the profile of docs/BENCHMARKS.md, "Issue 10"). Pooled connections keep
//! theirs in deadpool-postgres's per-connection cache, a writer's connection
//! in [`Statements`]; both are dropped with their connection, so a
//! statement is never used on another one.
//!
//! `tokio_postgres::GenericClient` is sealed, so this is a trait of our own
//! with the four calls the backend makes; connections and transactions
//! without a cache (the mover's, `store migrate`'s) prepare every time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row, Statement};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A connection or an open transaction that runs SQL text.
pub(crate) trait Db: Sync {
    fn query<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Vec<Row>, Error>> + Send + 'a;

    fn query_opt<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Option<Row>, Error>> + Send + 'a;

    fn query_one<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<Row, Error>> + Send + 'a;

    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: Params<'a>,
    ) -> impl Future<Output = Result<u64, Error>> + Send + 'a;
}

/// Statements prepared on one connection, by their SQL. Bounded: the
/// backend's SQL is a fixed set of texts, so the bound is only a guard.
#[derive(Default)]
pub(crate) struct Statements(Mutex<HashMap<String, Statement>>);

/// Most statements kept per connection; past it the cache starts again.
const STATEMENTS_MAX: usize = 1024;

impl Statements {
    fn get(&self, sql: &str) -> Option<Statement> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sql)
            .cloned()
    }

    fn put(&self, sql: &str, statement: &Statement) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= STATEMENTS_MAX {
            map.clear();
        }
        map.insert(sql.to_string(), statement.clone());
    }
}

/// A writer's transaction with its connection's statements.
#[derive(Clone, Copy)]
pub(crate) struct Cached<'a, 't> {
    pub tx: &'a tokio_postgres::Transaction<'t>,
    pub statements: &'a Statements,
}

impl Cached<'_, '_> {
    async fn statement(&self, sql: &str) -> Result<Statement, Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement);
        }
        let statement = self.tx.prepare(sql).await?;
        self.statements.put(sql, &statement);
        Ok(statement)
    }
}

/// Implements [`Db`] for a type whose statements come from `$prepare`,
/// run by the inherent methods of `$inner` (the type itself, or the one it
/// dereferences to).
macro_rules! db_impl {
    ($ty:ty => $inner:ty, |$this:ident, $sql:ident| $prepare:expr) => {
        impl Db for $ty {
            async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                let inner: &$inner = $this;
                inner.query(&statement, params).await
            }

            async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                let inner: &$inner = $this;
                inner.query_opt(&statement, params).await
            }

            async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                let inner: &$inner = $this;
                inner.query_one(&statement, params).await
            }

            async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
                let ($this, $sql) = (self, sql);
                let statement = $prepare.await?;
                let inner: &$inner = $this;
                inner.execute(&statement, params).await
            }
        }
    };
}

db_impl!(tokio_postgres::Client => tokio_postgres::Client, |client, sql| client.prepare(sql));
db_impl!(tokio_postgres::Transaction<'_> => tokio_postgres::Transaction<'_>, |tx, sql| tx.prepare(sql));
db_impl!(deadpool_postgres::ClientWrapper => tokio_postgres::Client, |client, sql| client
    .prepare_cached(sql));
db_impl!(deadpool_postgres::Transaction<'_> => tokio_postgres::Transaction<'_>, |tx, sql| tx
    .prepare_cached(sql));

impl Db for Cached<'_, '_> {
    async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let statement = self.statement(sql).await?;
        self.tx.query(&statement, params).await
    }

    async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let statement = self.statement(sql).await?;
        self.tx.query_opt(&statement, params).await
    }

    async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let statement = self.statement(sql).await?;
        self.tx.query_one(&statement, params).await
    }

    async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let statement = self.statement(sql).await?;
        self.tx.execute(&statement, params).await
    }
}
