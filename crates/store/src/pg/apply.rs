//! Records applied to PostgreSQL tables: the analogue of `index::apply` and
//! `directory::apply` for the embedded store, one arm per record, inside the
//! writer's open transaction. What the planner reads next in the same
//! transaction sees the change, as it does on SQLite.
//!
//! Each record of a user is also appended to the change log (`changes`),
//! numbered from `users.last_seq`, which other nodes watch (IDLE) and a move
//! catches up from. The user's advisory lock, held by the writer from before
//! its first read, makes that numbering the commit order.
//!
//! Records of the server-wide state (outboxes, status page, spam blocks,
//! tokens, subscribers, server annotations) are not applied here: they go to
//! the server-wide log and each node's copy (`server_cache`). Aliases are
//! both: a table here (recipients resolve against it) and in the log.

use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{added_row, flags_to_text};
use crate::pg::db::Db;
use crate::pg::db_error;
use crate::record::Record;
use tokio_postgres::types::ToSql;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

async fn exec(client: &impl Db, what: &str, sql: &str, params: Params<'_>) -> Result<u64> {
    client
        .execute(sql, params)
        .await
        .map_err(|e| db_error(what, &e))
}

fn i64_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Lists a new user in the directory, when it lives in the same database
/// as the account (the first shard): in the transaction that makes the
/// account, taking over the name's reservation if there is one
/// (`pg::shards`).
pub(crate) async fn directory_added(
    client: &impl Db,
    user: &str,
    id: i64,
    shard: &str,
) -> Result<()> {
    let listed = client
        .execute(
            "INSERT INTO directory_users (name, id, shard, state) VALUES ($1, $2, $3, 'active')
             ON CONFLICT (name) DO UPDATE SET id = EXCLUDED.id, shard = EXCLUDED.shard, state = 'active'
             WHERE directory_users.state = 'creating' AND directory_users.shard = EXCLUDED.shard",
            &[&user, &id, &shard],
        )
        .await
        .map_err(|e| db_error("add a user to the directory", &e))?;
    if listed == 1 {
        Ok(())
    } else {
        Err(StoreError::new(
            ErrorKind::AlreadyExists,
            format!("user {user} exists"),
        ))
    }
}

/// Applies `record`; `user_id` is the id of the user it belongs to (`None`
/// for a new user, whose id this makes, and for server-wide records).
/// Returns the id of the user the record belongs to, if any.
pub(crate) async fn apply(
    client: &impl Db,
    user_id: Option<i64>,
    record: &Record,
    summary: Option<(&mime::Summary, &[u8])>,
) -> Result<Option<i64>> {
    let id =
        || user_id.ok_or_else(|| StoreError::new(ErrorKind::Io, "a user record without its user"));
    match record {
        Record::UserAdded {
            user,
            password_hash,
        } => {
            let row = client
                .query_one(
                    "INSERT INTO users (id, name, password_hash)
                     VALUES (nextval('user_ids'), $1, $2) RETURNING id",
                    &[user, password_hash],
                )
                .await
                .map_err(|e| match e.code() {
                    Some(c) if c.code() == "23505" => {
                        StoreError::new(ErrorKind::AlreadyExists, format!("user {user} exists"))
                    }
                    _ => db_error("add a user", &e),
                })?;
            let new: i64 = row.get(0);
            return Ok(Some(new));
        }
        Record::PasswordChanged {
            user,
            password_hash,
        } => {
            exec(
                client,
                "change a password",
                "UPDATE users SET password_hash = $2 WHERE name = $1",
                &[user, password_hash],
            )
            .await?;
        }
        Record::QuotaSet {
            user,
            storage_bytes,
            messages,
        } => {
            exec(
                client,
                "set a quota",
                "UPDATE users SET quota_bytes = $2, quota_messages = $3 WHERE name = $1",
                &[user, &storage_bytes.map(i64_of), &messages.map(i64_of)],
            )
            .await?;
        }
        Record::SmsAlertSet { user, alert } => {
            let json = alert
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StoreError::invalid(format!("encode an SMS alert: {e}")))?;
            exec(
                client,
                "set an SMS alert",
                "UPDATE users SET sms_alert = $2 WHERE name = $1",
                &[user, &json],
            )
            .await?;
        }
        Record::UserDeleted { user } => {
            let user_id = id()?;
            // Its mailboxes and messages went with the records before this one.
            for table in [
                "message_cache",
                "messages",
                "expunged",
                "mailboxes",
                "subscriptions",
                "threads",
                "metadata",
                "acl",
                "changes",
            ] {
                exec(
                    client,
                    "delete a user",
                    &format!("DELETE FROM {table} WHERE user_id = $1"),
                    &[&user_id],
                )
                .await?;
            }
            exec(
                client,
                "delete a user",
                "DELETE FROM acl_grants WHERE owner = $1",
                &[user],
            )
            .await?;
            exec(
                client,
                "delete a user",
                "DELETE FROM users WHERE id = $1",
                &[&user_id],
            )
            .await?;
            // The directory row is the caller's (`PgTx::emit` with one
            // database; the last step of `pg::route`'s delete with shards).
            return Ok(None);
        }
        Record::MailboxCreated {
            mailbox,
            name,
            uid_validity,
            special_use,
            ..
        } => {
            let user_id = id()?;
            exec(
                client,
                "create a mailbox",
                "INSERT INTO mailboxes (user_id, id, name, uid_validity, uid_next, highest_modseq, special_use)
                 VALUES ($1, $2, $3, $4, 1, 1, $5)",
                &[&user_id, mailbox, name, &i64::from(*uid_validity), special_use],
            )
            .await?;
            // Remembered so a re-created mailbox never gets an old UIDVALIDITY.
            exec(
                client,
                "create a mailbox",
                "UPDATE users SET uid_validity_last = GREATEST(uid_validity_last, $2) WHERE id = $1",
                &[&user_id, &i64::from(*uid_validity)],
            )
            .await?;
        }
        Record::MailboxRenamed { mailbox, name, .. } => {
            exec(
                client,
                "rename a mailbox",
                "UPDATE mailboxes SET name = $3 WHERE user_id = $1 AND id = $2",
                &[&id()?, mailbox, name],
            )
            .await?;
        }
        Record::MailboxDeleted { user, mailbox } => {
            let user_id = id()?;
            let gone = client
                .query_one(
                    "WITH gone AS (DELETE FROM messages WHERE user_id = $1 AND mailbox = $2 RETURNING size)
                     SELECT COUNT(*), COALESCE(SUM(size), 0)::bigint FROM gone",
                    &[&user_id, mailbox],
                )
                .await
                .map_err(|e| db_error("delete a mailbox", &e))?;
            let (count, bytes): (i64, i64) = (gone.get(0), gone.get(1));
            exec(
                client,
                "delete a mailbox",
                "UPDATE users SET usage_messages = usage_messages - $2, usage_bytes = usage_bytes - $3 WHERE id = $1",
                &[&user_id, &count, &bytes],
            )
            .await?;
            for table in ["expunged", "metadata", "acl"] {
                exec(
                    client,
                    "delete a mailbox",
                    &format!("DELETE FROM {table} WHERE user_id = $1 AND mailbox = $2"),
                    &[&user_id, mailbox],
                )
                .await?;
            }
            exec(
                client,
                "delete a mailbox",
                "DELETE FROM acl_grants WHERE owner = $1 AND mailbox = $2",
                &[user, mailbox],
            )
            .await?;
            exec(
                client,
                "delete a mailbox",
                "DELETE FROM mailboxes WHERE user_id = $1 AND id = $2",
                &[&user_id, mailbox],
            )
            .await?;
        }
        Record::Subscribed {
            name, subscribed, ..
        } => {
            let sql = if *subscribed {
                "INSERT INTO subscriptions (user_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM subscriptions WHERE user_id = $1 AND name = $2"
            };
            exec(client, "change a subscription", sql, &[&id()?, name]).await?;
        }
        Record::MessageAdded {
            mailbox,
            uid,
            modseq,
            internal_date,
            internal_zone,
            save_date,
            blob,
            size,
            flags,
            email_id,
            thread_id,
            ..
        } => {
            let user_id = id()?;
            let row = added_row(record, summary)?;
            let message_id = summary.and_then(|(s, _)| s.message_id.as_ref());
            let summary_bytes: &[u8] = &row.summary;
            let (uid, modseq, size) = (i64::from(*uid), i64_of(*modseq), i64_of(*size));
            let flags = flags_to_text(flags);
            let blob = blob.0.as_slice();
            // Sent together (tokio-postgres pipelines futures polled at once):
            // about one round trip. They do not depend on each other's order:
            // each statement must stand alone. The first that fails fails the
            // transaction.
            let thread = async {
                match message_id {
                    Some(message_id) => exec(
                        client,
                        "store a message's thread",
                        "INSERT INTO threads (user_id, message_id, thread_id) VALUES ($1, $2, $3)
                             ON CONFLICT DO NOTHING",
                        &[&user_id, message_id, thread_id],
                    )
                    .await,
                    None => Ok(0),
                }
            };
            let message: [&(dyn ToSql + Sync); 17] = [
                &user_id,
                mailbox,
                &uid,
                &modseq,
                &flags,
                internal_date,
                internal_zone,
                save_date,
                &size,
                &blob,
                email_id,
                thread_id,
                &row.row_crc,
                &summary_bytes,
                &row.summary_crc,
                &row.keys,
                &row.keys_crc,
            ];
            let counters: [&(dyn ToSql + Sync); 4] = [&user_id, mailbox, &uid, &modseq];
            let usage: [&(dyn ToSql + Sync); 2] = [&user_id, &size];
            tokio::try_join!(
                // The row and its cache entry in one statement: the cache's
                // foreign key is checked at its end, and pipelined statements
                // may run in any order. A UID given twice fails here, on the
                // primary key, instead of storing a second message under it.
                exec(
                    client,
                    "store a message",
                    "WITH m AS (
                         INSERT INTO messages (user_id, mailbox, uid, modseq, flags, internal_date,
                             internal_zone, save_date, size, blob, email_id, thread_id, row_crc)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                         RETURNING user_id, mailbox, uid)
                     INSERT INTO message_cache (user_id, mailbox, uid, summary, summary_crc, sort_keys, keys_crc)
                     SELECT user_id, mailbox, uid, $14, $15, $16, $17 FROM m",
                    &message,
                ),
                exec(
                    client,
                    "store a message",
                    "UPDATE mailboxes SET uid_next = GREATEST(uid_next, $3::bigint + 1),
                         highest_modseq = GREATEST(highest_modseq, $4)
                     WHERE user_id = $1 AND id = $2",
                    &counters,
                ),
                exec(
                    client,
                    "store a message",
                    "UPDATE users SET usage_messages = usage_messages + 1, usage_bytes = usage_bytes + $2 WHERE id = $1",
                    &usage,
                ),
                thread,
            )?;
        }
        Record::FlagsChanged {
            mailbox,
            modseq,
            messages,
            ..
        } => {
            let user_id = id()?;
            let modseq = i64_of(*modseq);
            let uids: Vec<i64> = messages.iter().map(|(uid, _)| i64::from(*uid)).collect();
            let flags: Vec<String> = messages.iter().map(|(_, f)| flags_to_text(f)).collect();
            exec(
                client,
                "change flags",
                "UPDATE messages m SET flags = c.flags, modseq = $3
                 FROM unnest($4::bigint[], $5::text[]) AS c(uid, flags)
                 WHERE m.user_id = $1 AND m.mailbox = $2 AND m.uid = c.uid",
                &[&user_id, mailbox, &modseq, &uids, &flags],
            )
            .await?;
            exec(
                client,
                "change flags",
                "UPDATE mailboxes SET highest_modseq = GREATEST(highest_modseq, $3) WHERE user_id = $1 AND id = $2",
                &[&user_id, mailbox, &modseq],
            )
            .await?;
        }
        Record::Expunged {
            mailbox,
            modseq,
            messages,
            ..
        } => {
            let user_id = id()?;
            let modseq = i64_of(*modseq);
            let uids: Vec<i64> = messages.iter().map(|(uid, _)| i64::from(*uid)).collect();
            let gone = client
                .query_one(
                    "WITH gone AS (DELETE FROM messages WHERE user_id = $1 AND mailbox = $2 AND uid = ANY($3)
                                   RETURNING size)
                     SELECT COUNT(*), COALESCE(SUM(size), 0)::bigint FROM gone",
                    &[&user_id, mailbox, &uids],
                )
                .await
                .map_err(|e| db_error("expunge", &e))?;
            let (count, bytes): (i64, i64) = (gone.get(0), gone.get(1));
            exec(
                client,
                "expunge",
                "UPDATE users SET usage_messages = usage_messages - $2, usage_bytes = usage_bytes - $3 WHERE id = $1",
                &[&user_id, &count, &bytes],
            )
            .await?;
            exec(
                client,
                "expunge",
                "INSERT INTO expunged (user_id, mailbox, uid, modseq)
                 SELECT $1, $2, uid, $3 FROM unnest($4::bigint[]) AS u(uid)
                 ON CONFLICT (user_id, mailbox, uid) DO UPDATE SET modseq = excluded.modseq",
                &[&user_id, mailbox, &modseq, &uids],
            )
            .await?;
            exec(
                client,
                "expunge",
                "UPDATE mailboxes SET highest_modseq = GREATEST(highest_modseq, $3) WHERE user_id = $1 AND id = $2",
                &[&user_id, mailbox, &modseq],
            )
            .await?;
        }
        Record::MetadataSet {
            mailbox, entries, ..
        } => {
            let user_id = id()?;
            for (entry, value) in entries {
                match value {
                    Some(value) => {
                        exec(
                            client,
                            "set an annotation",
                            "INSERT INTO metadata (user_id, mailbox, entry, value) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (user_id, mailbox, entry) DO UPDATE SET value = excluded.value",
                            &[&user_id, mailbox, entry, &value.0],
                        )
                        .await?;
                    }
                    None => {
                        exec(
                            client,
                            "remove an annotation",
                            "DELETE FROM metadata WHERE user_id = $1 AND mailbox = $2 AND entry = $3",
                            &[&user_id, mailbox, entry],
                        )
                        .await?;
                    }
                }
            }
        }
        Record::AclSet {
            user,
            mailbox,
            identifier,
            rights,
        } => {
            let user_id = id()?;
            match rights {
                Some(rights) => {
                    exec(
                        client,
                        "set an ACL entry",
                        "INSERT INTO acl (user_id, mailbox, identifier, rights) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (user_id, mailbox, identifier) DO UPDATE SET rights = excluded.rights",
                        &[&user_id, mailbox, identifier, rights],
                    )
                    .await?;
                    exec(
                        client,
                        "set an ACL entry",
                        "INSERT INTO acl_grants (grantee, owner, mailbox, rights) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (grantee, owner, mailbox) DO UPDATE SET rights = excluded.rights",
                        &[identifier, user, mailbox, rights],
                    )
                    .await?;
                }
                None => {
                    exec(
                        client,
                        "remove an ACL entry",
                        "DELETE FROM acl WHERE user_id = $1 AND mailbox = $2 AND identifier = $3",
                        &[&user_id, mailbox, identifier],
                    )
                    .await?;
                    exec(
                        client,
                        "remove an ACL entry",
                        "DELETE FROM acl_grants WHERE grantee = $1 AND owner = $2 AND mailbox = $3",
                        &[identifier, user, mailbox],
                    )
                    .await?;
                }
            }
        }
        Record::AliasSet { address, users } => {
            exec(
                client,
                "set an alias",
                "INSERT INTO aliases (address, users) VALUES ($1, $2)
                 ON CONFLICT (address) DO UPDATE SET users = excluded.users",
                &[address, users],
            )
            .await?;
        }
        Record::AliasRemoved { address } => {
            exec(
                client,
                "remove an alias",
                "DELETE FROM aliases WHERE address = $1",
                &[address],
            )
            .await?;
        }
        Record::Replicated { upto, id_floor, .. } => {
            // Ids this store hands out from now on stay above every id the
            // imported records carry.
            let floor = i64_of((*upto).max(*id_floor));
            exec(
                client,
                "raise the id sequence",
                "SELECT setval('object_ids', GREATEST((SELECT last_value FROM object_ids), $1))",
                &[&floor],
            )
            .await?;
        }
        Record::BlobStored { .. } | Record::BlobsRemoved { .. } => {
            return Err(StoreError::invalid(format!(
                "a {} record is the embedded store's own",
                kind(record)
            )));
        }
        // The rest is server-wide: kept in the server-wide log and each
        // node's copy of it (`server_cache`), by the caller.
        other if other.user().is_some() => {
            return Err(StoreError::new(
                ErrorKind::Io,
                format!("a {} record has no table here", kind(other)),
            ));
        }
        _ => {}
    }
    Ok(user_id)
}

/// Appends `record` to the user's change log, numbered after the user's
/// last change (`users.last_seq`). A user deleted by this very record has
/// no row left, and no log.
pub(crate) async fn log_change(
    client: &impl Db,
    user_id: i64,
    at: i64,
    record: &Record,
) -> Result<()> {
    let text = serde_json::to_string(record)
        .map_err(|e| StoreError::invalid(format!("encode a record: {e}")))?;
    exec(
        client,
        "log a change",
        "WITH s AS (UPDATE users SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq)
         INSERT INTO changes (user_id, seq, at, record) SELECT $1, last_seq, $2, $3 FROM s",
        &[&user_id, &at, &text],
    )
    .await?;
    Ok(())
}

/// Appends a server-wide record to the server's change log, numbered under
/// the one `server_stream` row, which mail never takes; its number.
pub(crate) async fn log_server_change(client: &impl Db, at: i64, record: &Record) -> Result<i64> {
    let text = serde_json::to_string(record)
        .map_err(|e| StoreError::invalid(format!("encode a record: {e}")))?;
    let row = client
        .query_one(
            "WITH s AS (UPDATE server_stream SET last_seq = last_seq + 1 WHERE one = 1 RETURNING last_seq)
             INSERT INTO server_changes (seq, at, record) SELECT last_seq, $1, $2 FROM s RETURNING seq",
            &[&at, &text],
        )
        .await
        .map_err(|e| db_error("log a change", &e))?;
    Ok(row.get(0))
}

/// A record's type as its JSON names it (`mailbox_created`), for messages:
/// never its fields, which may hold a password hash or an SMS text.
fn kind(record: &Record) -> String {
    serde_json::to_value(record)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "change".to_string())
}
