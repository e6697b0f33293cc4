//! The PostgreSQL backend (issue 10), built in the steps of
//! docs/design/postgres-cluster.md. Built so far: connecting, the versioned
//! schema and its migrations ([`migrate`]); the backend handle with its
//! runtime and pool (`backend`); writer threads (`writer`) that plan with
//! the shared planner over a PostgreSQL transaction (`tx`, `apply`) under
//! per-user advisory locks; and the reads of accounts and mail (`read`).
//!
//! The store's only network peer is its database: this module talks to
//! PostgreSQL and serves no protocol.

pub(crate) mod apply;
pub(crate) mod backend;
pub(crate) mod blobs;
pub(crate) mod db;
pub(crate) mod listen;
pub mod migrate;
pub mod mover;
pub(crate) mod read;
pub(crate) mod repair;
pub(crate) mod route;
pub(crate) mod server_cache;
pub mod shards;
pub(crate) mod tx;
pub(crate) mod writer;

pub use backend::PostgresConfig;

pub use tokio_postgres::Client;
/// A parsed connection string ([`parse_dsn`]).
pub use tokio_postgres::Config as Dsn;

use std::time::Duration;

use crate::error::{ErrorKind, Result, StoreError};

/// Where a DSN points, for messages: user, hosts, ports and database,
/// never the password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("(default user)");
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    let db = config.get_dbname().unwrap_or("(default database)");
    format!(
        "{user}@{}:{}/{db}",
        if hosts.is_empty() {
            "(default host)".to_string()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        }
    )
}

/// Parses a DSN (`postgres://user:password@host:port/db` or `host=... port=...`).
/// The error never repeats the DSN: it may hold a password.
pub fn parse_dsn(dsn: &str) -> Result<tokio_postgres::Config> {
    dsn.parse::<tokio_postgres::Config>().map_err(|e| {
        StoreError::invalid(format!(
            "[store] postgres is not a valid connection string: {e}"
        ))
    })
}

/// How connections to PostgreSQL use TLS: rustls, verifying the server's
/// certificate against `ca_file` (PEM) or, without one, the web's roots.
/// The DSN's `sslmode` says whether TLS is used: `disable` never,
/// `prefer` (the default) when the server offers it, `require` always.
/// Unlike libpq, a certificate is always verified when TLS is used: a
/// server whose certificate is not trusted is refused, not spoken to.
pub type Tls = tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS of connections to PostgreSQL (see [`Tls`]).
pub fn tls(ca_file: Option<&std::path::Path>) -> Result<Tls> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| {
                    StoreError::invalid(format!(
                        "cannot read [store] postgres_ca_file {}: {e}",
                        path.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(StoreError::invalid(format!(
                    "[store] postgres_ca_file {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::invalid(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Opens one connection (its driver runs on the current tokio runtime),
/// within `timeout`.
pub async fn connect(
    config: &tokio_postgres::Config,
    timeout: Duration,
    tls: &Tls,
) -> Result<tokio_postgres::Client> {
    let target = describe(config);
    let mut config = config.clone();
    config.connect_timeout(timeout);
    let connecting = config.connect(tls.clone());
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            return Err(StoreError::new(
                error_kind(&e),
                format!("cannot connect to PostgreSQL at {target}: {}", message(&e)),
            ));
        }
        Err(_) => {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!(
                    "cannot connect to PostgreSQL at {target}: no answer within {} ms",
                    timeout.as_millis()
                ),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(event = "postgres_connection_lost", target = %target, error = %message(&e));
        }
    });
    Ok(client)
}

/// The kind of a PostgreSQL error: temporary when the server or the link
/// may come back (connection, shutdown, resources, serialization, a
/// read-only standby), or when a race lost may be won on a retry (a foreign
/// key whose row a concurrent commit removed: content GC against a delivery
/// or a move's copy), invalid otherwise.
pub fn error_kind(e: &tokio_postgres::Error) -> ErrorKind {
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection itself (refused, closed, timed out).
        return ErrorKind::Unavailable;
    };
    let code = code.code();
    if code.starts_with("08")
        || code.starts_with("57P")
        || code.starts_with("53")
        || code == "40001"
        || code == "40P01"
        || code == "25006"
        || code == "55P03"
        || code == "23503"
    {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Invalid
    }
}

/// PostgreSQL's own message (with its SQLSTATE) rather than the client's
/// generic "db error".
pub fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

pub(crate) fn db_error(context: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::new(error_kind(e), format!("{context}: {}", message(e)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_dsn_is_described_without_its_password() {
        let config = parse_dsn("postgres://mail:s3cret@db1.example:5433/postern").unwrap();
        let text = describe(&config);
        assert_eq!(text, "mail@db1.example:5433/postern");
        assert!(!text.contains("s3cret"));
        let config = parse_dsn("host=/run/pg port=6000 user=x dbname=y password=hidden").unwrap();
        assert_eq!(describe(&config), "x@/run/pg:6000/y");
    }

    #[test]
    fn a_bad_dsn_is_refused_without_repeating_it() {
        let e = parse_dsn("postgres://mail:s3cret@db1.example:notaport/x").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
