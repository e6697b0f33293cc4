//! The PostgreSQL schema, versioned: SQL files compiled in
//! (`migrations/NNNN_name.sql`), applied in order, each in its own
//! transaction, by `postern store migrate`; `serve` only checks.
//!
//! Each file starts with two header lines:
//! - `-- description: ...`, recorded with the version;
//! - `-- breaks_before: N`: binaries whose newest migration is below N
//!   cannot serve on the schema once this file is applied (an additive
//!   migration keeps the previous value, so older nodes keep serving during
//!   a rolling upgrade).
//!
//! Concurrent migrators wait for each other on a session advisory lock whose
//! two-int key space never meets the per-user locks' one-bigint one.

use tokio_postgres::Client;

use super::db_error;
use crate::error::{ErrorKind, Result, StoreError};

/// The files, in order. A new migration is a new file here, never an edit
/// of one that has been released.
const FILES: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("migrations/0001_initial.sql"),
    ),
    ("0002_moves.sql", include_str!("migrations/0002_moves.sql")),
];

/// `pg_advisory_lock(LOCK_CLASS, LOCK_MIGRATE)`: "post" in ASCII, then 1.
const LOCK_CLASS: i32 = 0x706f_7374;
const LOCK_MIGRATE: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub description: String,
    pub breaks_before: i32,
    pub sql: &'static str,
}

/// The compiled-in migrations, checked: numbered 1, 2, ... in file order,
/// each with both headers, `breaks_before` never above its own version and
/// never going down.
pub fn migrations() -> Result<Vec<Migration>> {
    parse_files(FILES)
}

fn parse_files(files: &[(&'static str, &'static str)]) -> Result<Vec<Migration>> {
    let mut out: Vec<Migration> = Vec::new();
    for (i, (name, sql)) in files.iter().enumerate() {
        let bad = |why: &str| StoreError::corrupt(format!("migration {name}: {why}"));
        let version: i32 = name
            .split('_')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("the file name does not start with its number"))?;
        if usize::try_from(version).ok() != Some(i + 1) {
            return Err(bad(&format!("numbered {version}, expected {}", i + 1)));
        }
        let header = |key: &str| {
            sql.lines()
                .take_while(|l| l.starts_with("--"))
                .find_map(|l| l.strip_prefix("--")?.trim().strip_prefix(key))
                .map(|v| v.trim().to_string())
        };
        let description = header("description:").ok_or_else(|| bad("no description header"))?;
        let breaks_before: i32 = header("breaks_before:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("no breaks_before header"))?;
        let previous = out.last().map_or(0, |m| m.breaks_before);
        if breaks_before > version || breaks_before < previous || breaks_before < 1 {
            return Err(bad(&format!(
                "breaks_before {breaks_before} must be between {} and {version}",
                previous.max(1)
            )));
        }
        out.push(Migration {
            version,
            name,
            description,
            breaks_before,
            sql,
        });
    }
    Ok(out)
}

/// The schema version this binary needs (its newest migration).
pub fn binary_version() -> i32 {
    FILES.len() as i32
}

/// What a database's schema is to this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly what this binary needs.
    Current { version: i32 },
    /// Older (0: empty): `postern store migrate` first.
    NeedsMigrate { database: i32, binary: i32 },
    /// Newer, additively: this binary may serve on it (a rolling upgrade).
    NewerCompatible { database: i32, binary: i32 },
    /// Newer, and a migration since this binary's says older binaries break.
    TooNew {
        database: i32,
        breaks_before: i32,
        binary: i32,
    },
}

/// Judges a database at `database` (its newest migration's `breaks_before`
/// alongside) for a binary whose newest migration is `binary`.
pub fn judge(database: i32, breaks_before: i32, binary: i32) -> Verdict {
    use std::cmp::Ordering::*;
    match database.cmp(&binary) {
        Equal => Verdict::Current { version: binary },
        Less => Verdict::NeedsMigrate { database, binary },
        Greater if breaks_before > binary => Verdict::TooNew {
            database,
            breaks_before,
            binary,
        },
        Greater => Verdict::NewerCompatible { database, binary },
    }
}

impl Verdict {
    /// `Ok` when a server may serve on the database, else why not and what to do.
    pub fn servable(self) -> Result<i32> {
        match self {
            Verdict::Current { version } => Ok(version),
            Verdict::NewerCompatible { database, .. } => Ok(database),
            Verdict::NeedsMigrate {
                database: 0,
                binary,
            } => Err(StoreError::new(
                ErrorKind::Invalid,
                format!(
                    "the PostgreSQL database has no Postern schema; this postern needs version {binary}: run `postern --config FILE store migrate`"
                ),
            )),
            Verdict::NeedsMigrate { database, binary } => Err(StoreError::new(
                ErrorKind::Invalid,
                format!(
                    "the PostgreSQL schema is at version {database}, this postern needs {binary}: run `postern --config FILE store migrate`"
                ),
            )),
            Verdict::TooNew {
                database,
                breaks_before,
                binary,
            } => Err(StoreError::new(
                ErrorKind::Invalid,
                format!(
                    "the PostgreSQL schema is at version {database}, which binaries older than version {breaks_before} cannot use; this postern knows up to {binary}: upgrade postern"
                ),
            )),
        }
    }
}

/// The database's schema version and its `breaks_before` (0, 0: none yet).
pub async fn database_version(client: &Client) -> Result<(i32, i32)> {
    let exists: bool = client
        .query_one("SELECT to_regclass('postern_schema') IS NOT NULL", &[])
        .await
        .map_err(|e| db_error("reading the schema version", &e))?
        .get(0);
    if !exists {
        return Ok((0, 0));
    }
    let row = client
        .query_opt(
            "SELECT version, breaks_before FROM postern_schema ORDER BY version DESC LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| db_error("reading the schema version", &e))?;
    Ok(row.map_or((0, 0), |r| (r.get(0), r.get(1))))
}

/// Judges the database for this binary.
pub async fn check(client: &Client) -> Result<Verdict> {
    let (database, breaks_before) = database_version(client).await?;
    Ok(judge(database, breaks_before, binary_version()))
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub from: i32,
    pub to: i32,
    /// Versions applied (with `dry_run`: that would be), with descriptions.
    pub applied: Vec<(i32, String)>,
    pub dry_run: bool,
}

/// Applies every migration the database lacks, each in a transaction of
/// its own, under the migration lock. Running it again applies nothing; a
/// database newer than this binary is left alone (an error when a newer
/// migration breaks this binary, so an old binary never serves on it).
pub async fn migrate(client: &mut Client, dry_run: bool) -> Result<Report> {
    let migrations = migrations()?;
    client
        .execute(
            "SELECT pg_advisory_lock($1, $2)",
            &[&LOCK_CLASS, &LOCK_MIGRATE],
        )
        .await
        .map_err(|e| db_error("taking the migration lock", &e))?;
    let result = migrate_locked(client, &migrations, dry_run).await;
    // Closing the session would release it too; say so explicitly.
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&LOCK_CLASS, &LOCK_MIGRATE],
        )
        .await;
    result
}

async fn migrate_locked(
    client: &mut Client,
    migrations: &[Migration],
    dry_run: bool,
) -> Result<Report> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS postern_schema (
                version int PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now(),
                description text NOT NULL,
                breaks_before int NOT NULL
            )",
        )
        .await
        .map_err(|e| db_error("creating postern_schema", &e))?;
    let (from, breaks_before) = database_version(client).await?;
    let binary = migrations.len() as i32;
    // A schema newer than this binary and marked incompatible with it is
    // left alone (a newer but compatible one has nothing to apply either).
    let verdict = judge(from, breaks_before, binary);
    if matches!(verdict, Verdict::TooNew { .. }) {
        verdict.servable()?;
    }
    let mut report = Report {
        from,
        to: from,
        applied: Vec::new(),
        dry_run,
    };
    for migration in migrations.iter().filter(|m| m.version > from) {
        report
            .applied
            .push((migration.version, migration.description.clone()));
        report.to = migration.version;
        if dry_run {
            continue;
        }
        let context = format!("applying migration {}", migration.name);
        let tx = client
            .transaction()
            .await
            .map_err(|e| db_error(&context, &e))?;
        tx.batch_execute(migration.sql)
            .await
            .map_err(|e| db_error(&context, &e))?;
        tx.execute(
            "INSERT INTO postern_schema (version, description, breaks_before) VALUES ($1, $2, $3)",
            &[
                &migration.version,
                &migration.description,
                &migration.breaks_before,
            ],
        )
        .await
        .map_err(|e| db_error(&context, &e))?;
        tx.commit().await.map_err(|e| db_error(&context, &e))?;
        tracing::info!(
            event = "postgres_migrated",
            version = migration.version,
            name = migration.name
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_compiled_in_migrations_are_well_formed() {
        let all = migrations().unwrap();
        assert_eq!(all.len() as i32, binary_version());
        assert_eq!(all[0].version, 1);
        assert!(!all[0].description.is_empty());
    }

    #[test]
    fn malformed_migration_sets_are_refused() {
        let ok = "-- description: x\n-- breaks_before: 1\nSELECT 1;";
        assert!(parse_files(&[("0001_a.sql", ok)]).is_ok());
        for files in [
            vec![("0002_a.sql", ok)],
            vec![("0001_a.sql", ok), ("0003_b.sql", ok)],
            vec![("first.sql", ok)],
            vec![("0001_a.sql", "-- breaks_before: 1\nSELECT 1;")],
            vec![("0001_a.sql", "-- description: x\nSELECT 1;")],
            vec![(
                "0001_a.sql",
                "-- description: x\n-- breaks_before: 2\nSELECT 1;",
            )],
            vec![
                ("0001_a.sql", ok),
                (
                    "0002_b.sql",
                    "-- description: y\n-- breaks_before: 0\nSELECT 1;",
                ),
            ],
        ] {
            assert!(parse_files(&files).is_err(), "{files:?}");
        }
        let two = parse_files(&[
            ("0001_a.sql", ok),
            (
                "0002_b.sql",
                "-- description: y\n-- breaks_before: 2\nSELECT 1;",
            ),
        ])
        .unwrap();
        assert_eq!(two[1].breaks_before, 2);
    }

    #[test]
    fn the_verdicts() {
        assert_eq!(judge(3, 2, 3), Verdict::Current { version: 3 });
        assert_eq!(
            judge(0, 0, 3),
            Verdict::NeedsMigrate {
                database: 0,
                binary: 3
            }
        );
        assert_eq!(
            judge(2, 1, 3),
            Verdict::NeedsMigrate {
                database: 2,
                binary: 3
            }
        );
        assert_eq!(
            judge(4, 3, 3),
            Verdict::NewerCompatible {
                database: 4,
                binary: 3
            }
        );
        assert_eq!(
            judge(5, 4, 3),
            Verdict::TooNew {
                database: 5,
                breaks_before: 4,
                binary: 3
            }
        );
        assert!(
            judge(0, 0, 1)
                .servable()
                .unwrap_err()
                .to_string()
                .contains("store migrate")
        );
        assert!(
            judge(5, 4, 3)
                .servable()
                .unwrap_err()
                .to_string()
                .contains("upgrade postern")
        );
        assert_eq!(judge(4, 3, 3).servable().unwrap(), 4);
    }
}
