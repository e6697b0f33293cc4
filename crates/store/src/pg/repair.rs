//! Reconstruct on PostgreSQL (docs/design/postgres-cluster.md, section 9):
//! the comparison and repair logic of `reconstruct.rs` is the embedded
//! store's, unchanged; what differs is where its two sides come from and
//! where its fixes go.
//!
//! - **The truth**: the user's change log (`changes`) up to `users.last_seq`,
//!   replayed by `reconstruct.rs` into a scratch SQLite index, as the
//!   journal is on the embedded store.
//! - **The live side**: the user's rows (mailboxes, messages with their
//!   cache and sort keys, tombstones, subscriptions, annotations, ACL, usage
//!   counters), read in the same REPEATABLE READ snapshot as the log and
//!   copied as they are, checksums included, into a second scratch SQLite
//!   index of the embedded schema, whose applied position is `last_seq`.
//!   So every check `reconstruct.rs` makes on an index file it makes here.
//! - **The fixes**: `Intent::Repair` through the planner on the user's shard,
//!   under the user's lock; its guard holds when `users.last_seq` (the user
//!   as a whole) or the mailbox's UIDNEXT and HIGHESTMODSEQ are still what
//!   the snapshot saw, and [`apply_fix`] writes each fix to the tables.
//!
//! Both scratch indexes hold one user at a time, in memory.

use crate::error::{ErrorKind, Result, StoreError};
use crate::intent::{Fix, RepairGuard};
use crate::pg::db::Db;
use crate::pg::{apply, db_error};
use crate::record::{Entry, Record};
use rusqlite::{Connection, params};
use tokio_postgres::IsolationLevel;

/// One user's rows and change log as of one snapshot.
pub(crate) struct Snapshot {
    /// A scratch SQLite index (embedded schema) holding the rows.
    pub live: Connection,
    /// The change log, oldest first, as journal entries (`lsn`: the seq).
    pub records: Vec<Entry>,
    /// `users.last_seq`: the live index's applied position.
    pub last_seq: i64,
}

fn scratch(what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::new(ErrorKind::Io, format!("scratch index ({what}): {e}"))
}

/// Reads the user `id`'s rows and log in one REPEATABLE READ snapshot.
pub(crate) async fn snapshot(client: &mut deadpool_postgres::Object, id: i64) -> Result<Snapshot> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| db_error("open a snapshot", &e))?;
    let user = tx
        .query_one(
            "SELECT last_seq, usage_bytes, usage_messages FROM users WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(|e| db_error("read the user", &e))?;
    let (last_seq, usage_bytes, usage_messages): (i64, i64, i64) =
        (user.get(0), user.get(1), user.get(2));
    let q = |sql: &'static str| {
        let tx = &tx;
        async move {
            tx.query(sql, &[&id])
                .await
                .map_err(|e| db_error("read the user's rows", &e))
        }
    };
    let (changes, mailboxes, messages, tombstones, subscriptions, annotations, acl) = tokio::try_join!(
        q("SELECT seq, at, record FROM changes WHERE user_id = $1 ORDER BY seq"),
        q("SELECT id, name, uid_validity, uid_next, highest_modseq, special_use FROM mailboxes WHERE user_id = $1"),
        q("SELECT m.mailbox, m.uid, m.modseq, m.flags, m.internal_date, m.internal_zone, m.save_date,
                  m.size, m.blob, m.email_id, m.thread_id, m.row_crc,
                  c.summary, c.summary_crc, c.sort_keys, c.keys_crc
           FROM messages m LEFT JOIN message_cache c USING (user_id, mailbox, uid)
           WHERE m.user_id = $1"),
        q("SELECT mailbox, uid, modseq FROM expunged WHERE user_id = $1"),
        q("SELECT name FROM subscriptions WHERE user_id = $1"),
        q("SELECT mailbox, entry, value FROM metadata WHERE user_id = $1"),
        q("SELECT mailbox, identifier, rights FROM acl WHERE user_id = $1"),
    )?;
    tx.commit()
        .await
        .map_err(|e| db_error("close the snapshot", &e))?;

    let mut records = Vec::with_capacity(changes.len());
    for row in &changes {
        let (seq, at, text): (i64, i64, &str) = (row.get(0), row.get(1), row.get(2));
        if seq > last_seq {
            continue;
        }
        let record: Record = serde_json::from_str(text)
            .map_err(|e| StoreError::corrupt(format!("change {seq} does not parse: {e}")))?;
        records.push(Entry {
            lsn: seq.max(0) as u64,
            time: at,
            record,
        });
    }

    let live = crate::index::open(std::path::Path::new(":memory:"))?;
    live.execute_batch("BEGIN")
        .map_err(|e| scratch("begin", e))?;
    for r in &mailboxes {
        live.execute(
            "INSERT INTO mailboxes (id, name, uid_validity, uid_next, highest_modseq, special_use)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, i64>(2),
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
                r.get::<_, Option<String>>(5)
            ],
        )
        .map_err(|e| scratch("mailbox", e))?;
    }
    for r in &messages {
        let blob: Vec<u8> = r.get(8);
        let blob_hex: String = blob.iter().map(|b| format!("{b:02x}")).collect();
        // A message without its cache row: an empty summary with a checksum
        // that fails, so the comparison finds it damaged and puts it back.
        let summary: Option<Vec<u8>> = r.get(12);
        let summary_crc: Option<i64> = r.get(13);
        live.execute(
            "INSERT INTO messages (mailbox, uid, modseq, flags, internal_date, internal_zone,
                 save_date, size, blob, email_id, thread_id, summary, summary_crc, row_crc)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2),
                r.get::<_, String>(3),
                r.get::<_, i64>(4),
                r.get::<_, i16>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
                blob_hex,
                r.get::<_, String>(9),
                r.get::<_, String>(10),
                summary.unwrap_or_default(),
                summary_crc.unwrap_or(-1),
                r.get::<_, i64>(11)
            ],
        )
        .map_err(|e| scratch("message", e))?;
        if let (Some(keys), Some(keys_crc)) =
            (r.get::<_, Option<Vec<u8>>>(14), r.get::<_, Option<i64>>(15))
        {
            live.execute(
                "INSERT INTO sort_keys (mailbox, uid, keys, keys_crc) VALUES (?1, ?2, ?3, ?4)",
                params![r.get::<_, String>(0), r.get::<_, i64>(1), keys, keys_crc],
            )
            .map_err(|e| scratch("sort keys", e))?;
        }
    }
    for r in &tombstones {
        live.execute(
            "INSERT INTO expunged (mailbox, uid, modseq) VALUES (?1, ?2, ?3)",
            params![
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(2)
            ],
        )
        .map_err(|e| scratch("tombstone", e))?;
    }
    for r in &subscriptions {
        live.execute(
            "INSERT INTO subscriptions (name) VALUES (?1)",
            params![r.get::<_, String>(0)],
        )
        .map_err(|e| scratch("subscription", e))?;
    }
    for r in &annotations {
        live.execute(
            "INSERT INTO metadata (mailbox, entry, value) VALUES (?1, ?2, ?3)",
            params![
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, Vec<u8>>(2)
            ],
        )
        .map_err(|e| scratch("annotation", e))?;
    }
    for r in &acl {
        live.execute(
            "INSERT INTO acl (mailbox, identifier, rights) VALUES (?1, ?2, ?3)",
            params![
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(2)
            ],
        )
        .map_err(|e| scratch("ACL entry", e))?;
    }
    // The counters as PostgreSQL holds them (the inserts above counted the
    // rows), and the position the rows are at.
    live.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'usage_bytes'",
        params![usage_bytes],
    )
    .map_err(|e| scratch("usage", e))?;
    live.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'usage_messages'",
        params![usage_messages],
    )
    .map_err(|e| scratch("usage", e))?;
    crate::index::set_applied_lsn(&live, last_seq.max(0) as u64)?;
    live.execute_batch("COMMIT")
        .map_err(|e| scratch("commit", e))?;
    Ok(Snapshot {
        live,
        records,
        last_seq,
    })
}

/// Whether a repair computed from a snapshot still applies: the user, or
/// the mailbox, is as the snapshot saw it.
pub(crate) async fn guard_holds(client: &impl Db, id: i64, guard: &RepairGuard) -> Result<bool> {
    Ok(match guard {
        RepairGuard::AppliedLsn(lsn) => {
            let row = client
                .query_one("SELECT last_seq FROM users WHERE id = $1", &[&id])
                .await
                .map_err(|e| db_error("read the user's position", &e))?;
            row.get::<_, i64>(0).max(0) as u64 == *lsn
        }
        RepairGuard::Mailbox { id: mailbox, seen } => {
            let row = client
                .query_opt(
                    "SELECT uid_next, highest_modseq FROM mailboxes WHERE user_id = $1 AND id = $2",
                    &[&id, mailbox],
                )
                .await
                .map_err(|e| db_error("read a mailbox", &e))?;
            let now = row.map(|r| {
                (
                    r.get::<_, i64>(0).clamp(0, i64::from(u32::MAX)) as u32,
                    r.get::<_, i64>(1).max(0) as u64,
                )
            });
            now == *seen
        }
        RepairGuard::Always => true,
        // There is no index file to lose on PostgreSQL.
        RepairGuard::Recreate { .. } => false,
    })
}

async fn exec(
    client: &impl Db,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64> {
    client
        .execute(sql, params)
        .await
        .map_err(|e| db_error("repair", &e))
}

/// Removes a message row (its cache row goes with it) and its size from
/// the usage counters.
async fn remove_message(client: &impl Db, id: i64, mailbox: &str, uid: i64) -> Result<()> {
    exec(
        client,
        "WITH gone AS (DELETE FROM messages WHERE user_id = $1 AND mailbox = $2 AND uid = $3 RETURNING size)
         UPDATE users SET usage_bytes = usage_bytes - (SELECT coalesce(sum(size), 0) FROM gone),
                          usage_messages = usage_messages - (SELECT count(*) FROM gone)
         WHERE id = $1",
        &[&id, &mailbox, &uid],
    )
    .await
    .map(|_| ())
}

/// Writes one fix to the user `id`'s rows (inside the writer's transaction,
/// under the user's lock). Nothing is logged: a fix makes the rows agree
/// with the log again.
pub(crate) async fn apply_fix(client: &impl Db, user: &str, id: i64, fix: &Fix) -> Result<()> {
    match fix {
        Fix::PutMailbox(m) => {
            exec(
                client,
                "INSERT INTO mailboxes (user_id, id, name, uid_validity, uid_next, highest_modseq, special_use)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (user_id, id) DO UPDATE SET name = excluded.name,
                     uid_validity = excluded.uid_validity,
                     uid_next = GREATEST(mailboxes.uid_next, excluded.uid_next),
                     highest_modseq = GREATEST(mailboxes.highest_modseq, excluded.highest_modseq),
                     special_use = excluded.special_use",
                &[
                    &id,
                    &m.id,
                    &m.name,
                    &i64::from(m.uid_validity),
                    &i64::from(m.uid_next),
                    &(m.highest_modseq as i64),
                    &m.special_use,
                ],
            )
            .await?;
            exec(
                client,
                "UPDATE users SET uid_validity_last = GREATEST(uid_validity_last, $2) WHERE id = $1",
                &[&id, &i64::from(m.uid_validity)],
            )
            .await?;
        }
        Fix::RemoveMailbox(mailbox) => {
            exec(
                client,
                "WITH gone AS (DELETE FROM messages WHERE user_id = $1 AND mailbox = $2 RETURNING size)
                 UPDATE users SET usage_bytes = usage_bytes - (SELECT coalesce(sum(size), 0) FROM gone),
                                  usage_messages = usage_messages - (SELECT count(*) FROM gone)
                 WHERE id = $1",
                &[&id, mailbox],
            )
            .await?;
            for sql in [
                "DELETE FROM expunged WHERE user_id = $1 AND mailbox = $2",
                "DELETE FROM metadata WHERE user_id = $1 AND mailbox = $2",
                "DELETE FROM acl WHERE user_id = $1 AND mailbox = $2",
                "DELETE FROM mailboxes WHERE user_id = $1 AND id = $2",
            ] {
                exec(client, sql, &[&id, mailbox]).await?;
            }
            exec(
                client,
                "DELETE FROM acl_grants WHERE owner = $1 AND mailbox = $2",
                &[&user, mailbox],
            )
            .await?;
        }
        Fix::PutMessage {
            mailbox,
            meta,
            summary,
        } => {
            remove_message(client, id, mailbox, i64::from(meta.uid)).await?;
            let summary: mime::Summary = serde_json::from_slice(summary)
                .map_err(|e| StoreError::invalid(format!("a repair's summary: {e}")))?;
            // The row as a delivery writes it, from the record the log holds
            // for it (the checksums and sort keys derived by the same code).
            let record = Record::MessageAdded {
                user: user.to_string(),
                mailbox: mailbox.clone(),
                // Not stored in the row; the mailbox's is.
                uid_validity: 0,
                uid: meta.uid,
                modseq: meta.modseq,
                internal_date: meta.internal_date,
                internal_zone: meta.internal_zone,
                save_date: meta.save_date,
                blob: meta.blob,
                size: meta.size,
                flags: meta.flags.clone(),
                email_id: meta.email_id.clone(),
                thread_id: meta.thread_id.clone(),
            };
            apply::apply(client, Some(id), &record, Some((&summary, &[]))).await?;
        }
        Fix::RemoveMessage { mailbox, uid } => {
            remove_message(client, id, mailbox, i64::from(*uid)).await?;
        }
        Fix::PutTombstone {
            mailbox,
            uid,
            modseq,
        } => {
            exec(
                client,
                "INSERT INTO expunged (user_id, mailbox, uid, modseq) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (user_id, mailbox, uid) DO UPDATE SET modseq = excluded.modseq",
                &[&id, mailbox, &i64::from(*uid), &(*modseq as i64)],
            )
            .await?;
        }
        Fix::RemoveTombstone { mailbox, uid } => {
            exec(
                client,
                "DELETE FROM expunged WHERE user_id = $1 AND mailbox = $2 AND uid = $3",
                &[&id, mailbox, &i64::from(*uid)],
            )
            .await?;
        }
        Fix::Subscribe(name) => {
            exec(
                client,
                "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&id, name],
            )
            .await?;
        }
        Fix::Unsubscribe(name) => {
            exec(
                client,
                "DELETE FROM subscriptions WHERE user_id = $1 AND name = $2",
                &[&id, name],
            )
            .await?;
        }
        Fix::PutMetadata {
            mailbox,
            entry,
            value,
        } => {
            let record = Record::MetadataSet {
                user: user.to_string(),
                mailbox: mailbox.clone(),
                entries: vec![(entry.clone(), value.clone())],
            };
            apply::apply(client, Some(id), &record, None).await?;
        }
        Fix::PutAcl {
            mailbox,
            identifier,
            rights,
        } => {
            let record = Record::AclSet {
                user: user.to_string(),
                mailbox: mailbox.clone(),
                identifier: identifier.clone(),
                rights: rights.clone(),
            };
            apply::apply(client, Some(id), &record, None).await?;
        }
        Fix::RecountUsage => {
            exec(
                client,
                "UPDATE users SET
                     usage_bytes = (SELECT coalesce(sum(size), 0) FROM messages WHERE user_id = $1),
                     usage_messages = (SELECT count(*) FROM messages WHERE user_id = $1)
                 WHERE id = $1",
                &[&id],
            )
            .await?;
        }
        Fix::UidValidityFloor(value) => {
            exec(
                client,
                "UPDATE users SET uid_validity_last = GREATEST(uid_validity_last, $2) WHERE id = $1",
                &[&id, &i64::from(*value)],
            )
            .await?;
        }
        Fix::RestateFlags { .. } => {
            return Err(StoreError::invalid(
                "flags are restated by the planner, with a logged record",
            ));
        }
        Fix::Rebuilding(_) => {
            return Err(StoreError::invalid(
                "there is no index file to rebuild on PostgreSQL",
            ));
        }
    }
    Ok(())
}
