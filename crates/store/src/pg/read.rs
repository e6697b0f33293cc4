//! Reads of one user's mail in PostgreSQL, over any client or open
//! transaction: the writer's transaction (`PgTx`) and the readers
//! (`pg::Reader`) ask the same queries, so both see rows the same way.
//!
//! Rows are checked as the embedded index checks them: a message row whose
//! `row_crc` does not match its fields is `damaged` (served as a clean NO,
//! never as data), a summary whose checksum does not bind it to the
//! message's content is `Corrupt`.

use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{
    self, Changes, MailboxCounts, MailboxInfo, MessageMeta, flags_from_text, row_checksum,
};
use crate::pg::db::Db;
use crate::pg::db_error;
use crate::types::BlobHash;
use std::collections::HashMap;
use tokio_postgres::Row;

const MAILBOX_COLUMNS: &str = "id, name, uid_validity, uid_next, highest_modseq, special_use";
const MESSAGE_COLUMNS: &str = "uid, modseq, flags, internal_date, internal_zone, save_date, size, blob, email_id, thread_id, row_crc, mailbox";

fn mailbox_from_row(row: &Row) -> Result<MailboxInfo> {
    Ok(MailboxInfo {
        id: row.try_get(0).map_err(|e| db_error("mailbox row", &e))?,
        name: row.try_get(1).map_err(|e| db_error("mailbox row", &e))?,
        uid_validity: u32_of(row.try_get(2).map_err(|e| db_error("mailbox row", &e))?)?,
        uid_next: u32_of(row.try_get(3).map_err(|e| db_error("mailbox row", &e))?)?,
        highest_modseq: u64_of(row.try_get(4).map_err(|e| db_error("mailbox row", &e))?)?,
        special_use: row.try_get(5).map_err(|e| db_error("mailbox row", &e))?,
    })
}

fn u32_of(value: i64) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| StoreError::corrupt(format!("{value} is out of range for a UID")))
}

fn u64_of(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(format!("{value} is negative")))
}

/// A message row, checked against its checksum (`damaged` when it fails).
fn message_from_row(row: &Row) -> Result<MessageMeta> {
    let get = |e: tokio_postgres::Error| db_error("message row", &e);
    let blob: Vec<u8> = row.try_get(7).map_err(get)?;
    let blob = <[u8; 32]>::try_from(blob.as_slice()).ok().map(BlobHash);
    let size: i64 = row.try_get(6).map_err(get)?;
    let mut meta = MessageMeta {
        uid: u32_of(row.try_get(0).map_err(get)?)?,
        modseq: u64_of(row.try_get(1).map_err(get)?)?,
        flags: flags_from_text(row.try_get(2).map_err(get)?),
        internal_date: row.try_get(3).map_err(get)?,
        internal_zone: row.try_get(4).map_err(get)?,
        save_date: row.try_get(5).map_err(get)?,
        size: size.max(0) as u64,
        blob: blob.unwrap_or(BlobHash([0; 32])),
        email_id: row.try_get(8).map_err(get)?,
        thread_id: row.try_get(9).map_err(get)?,
        damaged: false,
    };
    let stored: i64 = row.try_get(10).map_err(get)?;
    let mailbox: &str = row.try_get(11).map_err(get)?;
    meta.damaged = blob.is_none()
        || size < 0
        || row_checksum(
            mailbox,
            meta.uid,
            meta.internal_date,
            meta.internal_zone,
            meta.save_date,
            meta.size,
            &meta.blob.to_hex(),
            &meta.email_id,
            &meta.thread_id,
        ) != stored;
    Ok(meta)
}

async fn rows(
    client: &impl Db,
    what: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>> {
    client
        .query(sql, params)
        .await
        .map_err(|e| db_error(what, &e))
}

async fn row(
    client: &impl Db,
    what: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Row>> {
    client
        .query_opt(sql, params)
        .await
        .map_err(|e| db_error(what, &e))
}

/// A user's id and state (`None`: no such user on this database).
pub(crate) async fn user(client: &impl Db, name: &str) -> Result<Option<(i64, String)>> {
    let found = row(
        client,
        "read a user",
        "SELECT id, state FROM users WHERE name = $1",
        &[&name],
    )
    .await?;
    found
        .map(|r| Ok((r.get::<_, i64>(0), r.get::<_, String>(1))))
        .transpose()
}

/// A user's id, for reads: `NotFound` for an unknown user, `Unavailable`
/// while the account is not served from here (being moved or deleted).
pub(crate) async fn user_id(client: &impl Db, name: &str) -> Result<i64> {
    match user(client, name).await? {
        Some((id, state)) if state == "active" => Ok(id),
        Some(_) => Err(StoreError::new(
            ErrorKind::Unavailable,
            format!("the account {name} is being moved or deleted"),
        )),
        None => Err(StoreError::not_found(format!("no such user {name}"))),
    }
}

pub(crate) async fn mailboxes(client: &impl Db, user: i64) -> Result<Vec<MailboxInfo>> {
    let sql = format!(
        "SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = $1 ORDER BY name COLLATE \"C\""
    );
    rows(client, "list mailboxes", &sql, &[&user])
        .await?
        .iter()
        .map(mailbox_from_row)
        .collect()
}

pub(crate) async fn mailbox_by_name(
    client: &impl Db,
    user: i64,
    name: &str,
) -> Result<Option<MailboxInfo>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = $1 AND name = $2");
    row(client, "read a mailbox", &sql, &[&user, &name])
        .await?
        .as_ref()
        .map(mailbox_from_row)
        .transpose()
}

pub(crate) async fn mailbox_by_id(
    client: &impl Db,
    user: i64,
    id: &str,
) -> Result<Option<MailboxInfo>> {
    let sql = format!("SELECT {MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = $1 AND id = $2");
    row(client, "read a mailbox", &sql, &[&user, &id])
        .await?
        .as_ref()
        .map(mailbox_from_row)
        .transpose()
}

pub(crate) async fn subscriptions(client: &impl Db, user: i64) -> Result<Vec<String>> {
    let found = rows(
        client,
        "list subscriptions",
        "SELECT name FROM subscriptions WHERE user_id = $1 ORDER BY name COLLATE \"C\"",
        &[&user],
    )
    .await?;
    Ok(found.iter().map(|r| r.get(0)).collect())
}

async fn messages_where(
    client: &impl Db,
    what: &str,
    condition: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<MessageMeta>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE user_id = $1 AND mailbox = $2 {condition} ORDER BY uid"
    );
    rows(client, what, &sql, params)
        .await?
        .iter()
        .map(message_from_row)
        .collect()
}

/// Every message of a mailbox, in UID order.
pub(crate) async fn messages(
    client: &impl Db,
    user: i64,
    mailbox: &str,
) -> Result<Vec<MessageMeta>> {
    messages_where(client, "list messages", "", &[&user, &mailbox]).await
}

pub(crate) async fn messages_between(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    first: u32,
    last: u32,
) -> Result<Vec<MessageMeta>> {
    let (first, last) = (i64::from(first), i64::from(last));
    messages_where(
        client,
        "list messages",
        "AND uid BETWEEN $3 AND $4",
        &[&user, &mailbox, &first, &last],
    )
    .await
}

pub(crate) async fn message(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    uid: u32,
) -> Result<Option<MessageMeta>> {
    let uid = i64::from(uid);
    Ok(messages_where(
        client,
        "read a message",
        "AND uid = $3",
        &[&user, &mailbox, &uid],
    )
    .await?
    .pop())
}

/// The messages of `uids` that exist, in UID order: one statement.
pub(crate) async fn messages_by_uid(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    uids: &[u32],
) -> Result<Vec<MessageMeta>> {
    let uids: Vec<i64> = uids.iter().map(|u| i64::from(*u)).collect();
    messages_where(
        client,
        "read messages",
        "AND uid = ANY($3)",
        &[&user, &mailbox, &uids],
    )
    .await
}

/// Messages whose MODSEQ is above `modseq`, in UID order.
pub(crate) async fn changed_since(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    modseq: u64,
) -> Result<Vec<MessageMeta>> {
    let modseq = i64::try_from(modseq).unwrap_or(i64::MAX);
    messages_where(
        client,
        "list changed messages",
        "AND modseq > $3",
        &[&user, &mailbox, &modseq],
    )
    .await
}

/// UIDs expunged with a MODSEQ above `modseq`, ascending.
pub(crate) async fn expunged_since(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    modseq: u64,
) -> Result<Vec<u32>> {
    let modseq = i64::try_from(modseq).unwrap_or(i64::MAX);
    rows(
        client,
        "list expunged messages",
        "SELECT uid FROM expunged WHERE user_id = $1 AND mailbox = $2 AND modseq > $3 ORDER BY uid",
        &[&user, &mailbox, &modseq],
    )
    .await?
    .iter()
    .map(|r| u32_of(r.get(0)))
    .collect()
}

/// UID, MODSEQ and flags of every message, for SELECT.
pub(crate) async fn select_view(
    client: &impl Db,
    user: i64,
    mailbox: &str,
) -> Result<Vec<(u32, u64, String)>> {
    rows(
        client,
        "list messages",
        "SELECT uid, modseq, flags FROM messages WHERE user_id = $1 AND mailbox = $2 ORDER BY uid",
        &[&user, &mailbox],
    )
    .await?
    .iter()
    .map(|r| Ok((u32_of(r.get(0))?, u64_of(r.get(1))?, r.get(2))))
    .collect()
}

/// Counters for STATUS. `strpos`, not `LIKE`: in PostgreSQL a backslash in
/// a `LIKE` pattern escapes the next character, and flags start with one.
pub(crate) async fn counts(client: &impl Db, user: i64, mailbox: &str) -> Result<MailboxCounts> {
    let found = row(
        client,
        "count messages",
        "SELECT COUNT(*),
                COUNT(*) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Seen ') = 0),
                COUNT(*) FILTER (WHERE strpos(' ' || flags || ' ', ' \\Deleted ') > 0),
                COALESCE(SUM(size), 0)::bigint
         FROM messages WHERE user_id = $1 AND mailbox = $2",
        &[&user, &mailbox],
    )
    .await?
    .ok_or_else(|| StoreError::new(ErrorKind::Io, "COUNT returned no row"))?;
    let count = |i: usize| u32::try_from(found.get::<_, i64>(i)).unwrap_or(u32::MAX);
    Ok(MailboxCounts {
        messages: count(0),
        unseen: count(1),
        deleted: count(2),
        size: found.get::<_, i64>(3).max(0) as u64,
    })
}

/// Bytes and messages the user stores.
pub(crate) async fn usage(client: &impl Db, user: i64) -> Result<(u64, u64)> {
    let found = row(
        client,
        "read usage",
        "SELECT usage_bytes, usage_messages FROM users WHERE id = $1",
        &[&user],
    )
    .await?
    .ok_or_else(|| StoreError::not_found("no such user"))?;
    Ok((
        found.get::<_, i64>(0).max(0) as u64,
        found.get::<_, i64>(1).max(0) as u64,
    ))
}

/// The cached summary of a message, checked against the message's content;
/// `None` when the entry is missing.
pub(crate) async fn summary(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    uid: u32,
    blob: &BlobHash,
) -> Result<Option<mime::Summary>> {
    let found = row(
        client,
        "read a summary",
        "SELECT summary, summary_crc FROM message_cache WHERE user_id = $1 AND mailbox = $2 AND uid = $3",
        &[&user, &mailbox, &i64::from(uid)],
    )
    .await?;
    let Some(found) = found else {
        return Ok(None);
    };
    let bytes: Vec<u8> = found.get(0);
    index::decode_summary(uid, blob, &bytes, found.get(1), &blob.to_hex()).map(Some)
}

/// The cache entries of the messages with UIDs in `first..=last`, by UID:
/// (summary, its checksum, the content hash it was derived from, in hex).
pub(crate) async fn summaries_between(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    first: u32,
    last: u32,
) -> Result<HashMap<u32, index::ScannedEntry>> {
    let found = rows(
        client,
        "read summaries",
        "SELECT c.uid, c.summary, c.summary_crc, m.blob FROM message_cache c
         JOIN messages m USING (user_id, mailbox, uid)
         WHERE c.user_id = $1 AND c.mailbox = $2 AND c.uid BETWEEN $3 AND $4",
        &[&user, &mailbox, &i64::from(first), &i64::from(last)],
    )
    .await?;
    let mut out = HashMap::new();
    for r in found {
        let blob: Vec<u8> = r.get(3);
        out.insert(u32_of(r.get(0))?, (r.get(1), r.get(2), hex::encode(blob)));
    }
    Ok(out)
}

/// Every sort-key row of a mailbox: UID → (keys JSON, keys_crc).
pub(crate) async fn sort_keys(
    client: &impl Db,
    user: i64,
    mailbox: &str,
) -> Result<HashMap<u32, (Vec<u8>, i64)>> {
    let found = rows(
        client,
        "read sort keys",
        "SELECT uid, sort_keys, keys_crc FROM message_cache WHERE user_id = $1 AND mailbox = $2",
        &[&user, &mailbox],
    )
    .await?;
    found
        .iter()
        .map(|r| Ok((u32_of(r.get(0))?, (r.get(1), r.get(2)))))
        .collect()
}

pub(crate) async fn thread_for(
    client: &impl Db,
    user: i64,
    message_ids: &[String],
) -> Result<Option<String>> {
    if message_ids.is_empty() {
        return Ok(None);
    }
    // The first of `message_ids` (in their order) that has a thread.
    let found = row(
        client,
        "read a thread",
        "SELECT t.thread_id FROM unnest($2::text[]) WITH ORDINALITY AS k(message_id, n)
         JOIN threads t ON t.user_id = $1 AND t.message_id = k.message_id
         ORDER BY k.n LIMIT 1",
        &[&user, &message_ids],
    )
    .await?;
    Ok(found.map(|r| r.get(0)))
}

/// The highest UIDVALIDITY any mailbox of the user had.
pub(crate) async fn uid_validity_last(client: &impl Db, user: i64) -> Result<u32> {
    let found = row(
        client,
        "read the UIDVALIDITY floor",
        "SELECT GREATEST(u.uid_validity_last,
                         COALESCE((SELECT MAX(uid_validity) FROM mailboxes WHERE user_id = u.id), 0))
         FROM users u WHERE u.id = $1",
        &[&user],
    )
    .await?
    .ok_or_else(|| StoreError::not_found("no such user"))?;
    u32_of(found.get(0))
}

/// The ACL of one mailbox, by identifier.
pub(crate) async fn acl_entries(
    client: &impl Db,
    user: i64,
    mailbox: &str,
) -> Result<Vec<(String, crate::acl::Rights)>> {
    let found = rows(
        client,
        "read an ACL",
        "SELECT identifier, rights FROM acl WHERE user_id = $1 AND mailbox = $2
         ORDER BY identifier COLLATE \"C\"",
        &[&user, &mailbox],
    )
    .await?;
    // Written by us from `Rights`' Display; anything else counts as no
    // rights, as in the embedded index.
    Ok(found
        .iter()
        .map(|r| {
            let rights = crate::acl::Rights::parse(r.get(1)).unwrap_or(crate::acl::Rights::NONE);
            (r.get(0), rights)
        })
        .collect())
}

pub(crate) async fn metadata_count(client: &impl Db, user: i64) -> Result<u64> {
    let found = row(
        client,
        "count annotations",
        "SELECT COUNT(*) FROM metadata WHERE user_id = $1",
        &[&user],
    )
    .await?
    .ok_or_else(|| StoreError::new(ErrorKind::Io, "COUNT returned no row"))?;
    Ok(found.get::<_, i64>(0).max(0) as u64)
}

// ===== the directory and accounts =====

/// Whether the database holds no user and no server-wide change.
pub(crate) async fn is_empty(client: &impl Db) -> Result<bool> {
    let found = row(
        client,
        "look for data",
        "SELECT EXISTS (SELECT 1 FROM users) OR EXISTS (SELECT 1 FROM server_changes)",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::new(ErrorKind::Io, "EXISTS returned no row"))?;
    Ok(!found.get::<_, bool>(0))
}

/// Entries of the server-wide log after `seq`, in order: (seq, record JSON).
pub(crate) async fn server_changes_since(client: &impl Db, seq: i64) -> Result<Vec<(i64, String)>> {
    let found = rows(
        client,
        "read the server-wide log",
        "SELECT seq, record FROM server_changes WHERE seq > $1 ORDER BY seq",
        &[&seq],
    )
    .await?;
    Ok(found.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub(crate) async fn password_hash(client: &impl Db, name: &str) -> Result<Option<String>> {
    let found = row(
        client,
        "read a password hash",
        "SELECT password_hash FROM users WHERE name = $1",
        &[&name],
    )
    .await?;
    Ok(found.map(|r| r.get(0)))
}

/// A user's own quota (bytes, messages); `None` where the default applies.
pub(crate) async fn quota(client: &impl Db, name: &str) -> Result<(Option<u64>, Option<u64>)> {
    let found = row(
        client,
        "read a quota",
        "SELECT quota_bytes, quota_messages FROM users WHERE name = $1",
        &[&name],
    )
    .await?;
    Ok(found.map_or((None, None), |r| {
        let get = |i: usize| r.get::<_, Option<i64>>(i).map(|v| v.max(0) as u64);
        (get(0), get(1))
    }))
}

pub(crate) async fn sms_alert(
    client: &impl Db,
    name: &str,
) -> Result<Option<crate::types::SmsAlert>> {
    let found = row(
        client,
        "read an SMS alert",
        "SELECT sms_alert FROM users WHERE name = $1",
        &[&name],
    )
    .await?;
    match found.and_then(|r| r.get::<_, Option<String>>(0)) {
        None => Ok(None),
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::corrupt(format!("SMS alert of {name}: {e}"))),
    }
}

/// Of `names`, the aliases (address → users) and the users the directory
/// serves: what resolving a recipient may ask, in one round trip.
pub(crate) async fn recipients(
    client: &impl Db,
    names: &[String],
) -> Result<(
    HashMap<String, Vec<String>>,
    std::collections::HashSet<String>,
)> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
    let users =
        "SELECT name FROM directory_users WHERE name = ANY($1) AND state IN ('active', 'moving')";
    let (aliases, users) = tokio::try_join!(
        rows(
            client,
            "read aliases",
            "SELECT address, users FROM aliases WHERE address = ANY($1)",
            &params,
        ),
        rows(client, "read users", users, &params),
    )?;
    Ok((
        aliases.iter().map(|r| (r.get(0), r.get(1))).collect(),
        users.iter().map(|r| r.get(0)).collect(),
    ))
}

pub(crate) async fn alias(client: &impl Db, address: &str) -> Result<Option<Vec<String>>> {
    let found = row(
        client,
        "read an alias",
        "SELECT users FROM aliases WHERE address = $1",
        &[&address],
    )
    .await?;
    Ok(found.map(|r| r.get(0)))
}

pub(crate) async fn aliases(client: &impl Db) -> Result<Vec<(String, Vec<String>)>> {
    let found = rows(
        client,
        "list aliases",
        "SELECT address, users FROM aliases ORDER BY address COLLATE \"C\"",
        &[],
    )
    .await?;
    Ok(found.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Grants naming `user` (positively or negatively): (owner, mailbox id,
/// identifier as stored).
pub(crate) async fn acl_naming(
    client: &impl Db,
    user: &str,
) -> Result<Vec<(String, String, String)>> {
    let negative = format!("-{user}");
    let found = rows(
        client,
        "read ACL grants",
        "SELECT g.owner, g.mailbox, g.grantee FROM acl_grants g
         JOIN users u ON u.name = g.owner AND u.state = 'active'
         WHERE g.grantee = $1 OR g.grantee = $2
         ORDER BY g.owner COLLATE \"C\", g.mailbox COLLATE \"C\"",
        &[&user, &negative],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Mailboxes of other owners whose ACL names `user` or `anyone`.
pub(crate) async fn granted_to(client: &impl Db, user: &str) -> Result<Vec<(String, String)>> {
    let found = rows(
        client,
        "read ACL grants",
        "SELECT DISTINCT g.owner COLLATE \"C\", g.mailbox COLLATE \"C\" FROM acl_grants g
         JOIN users u ON u.name = g.owner AND u.state = 'active'
         WHERE (g.grantee = $1 OR g.grantee = 'anyone') AND g.owner != $1
         ORDER BY 1, 2",
        &[&user],
    )
    .await?;
    Ok(found.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// An annotation of a mailbox (`""`: the user's private server annotations).
pub(crate) async fn metadata_get(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    entry: &str,
) -> Result<Option<Vec<u8>>> {
    let found = row(
        client,
        "read an annotation",
        "SELECT value FROM metadata WHERE user_id = $1 AND mailbox = $2 AND entry = $3",
        &[&user, &mailbox, &entry],
    )
    .await?;
    Ok(found.map(|r| r.get(0)))
}

/// Annotations below `entry` (not `entry` itself), in name order; with
/// `children_only`, only those one level below.
pub(crate) async fn metadata_below(
    client: &impl Db,
    user: i64,
    mailbox: &str,
    entry: &str,
    children_only: bool,
) -> Result<Vec<(String, Vec<u8>)>> {
    // Names below "/a" are those in ["/a/", "/a0"): '0' follows '/' in ASCII.
    let low = format!("{entry}/");
    let high = format!("{entry}0");
    let found = rows(
        client,
        "read annotations",
        "SELECT entry, value FROM metadata WHERE user_id = $1 AND mailbox = $2
             AND entry COLLATE \"C\" >= $3 AND entry COLLATE \"C\" < $4
         ORDER BY entry COLLATE \"C\"",
        &[&user, &mailbox, &low, &high],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, Vec<u8>>(1)))
        .filter(|(name, _)| !(children_only && name[low.len()..].contains('/')))
        .collect())
}

/// [`changes`] in one read-only snapshot of its own.
pub(crate) async fn changes_snapshot(
    client: &mut deadpool_postgres::Object,
    user: i64,
    mailbox: &str,
    since: u64,
) -> Result<Changes> {
    // Most syncs find nothing new, and one statement says so: every change
    // to a mailbox's messages raises its HIGHESTMODSEQ in the transaction
    // that makes it, so nothing above `since` means nothing changed or went.
    let Some(info) = mailbox_by_id(&**client, user, mailbox).await? else {
        return Ok(Changes::default());
    };
    if info.highest_modseq <= since {
        return Ok(Changes {
            mailbox: Some(info),
            changed: Vec::new(),
            expunged: Vec::new(),
        });
    }
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(|e| db_error("begin a snapshot", &e))?;
    // The three reads of one snapshot, sent together.
    let (info, changed, expunged) = tokio::try_join!(
        mailbox_by_id(&tx, user, mailbox),
        changed_since(&tx, user, mailbox, since),
        expunged_since(&tx, user, mailbox, since),
    )?;
    tx.commit()
        .await
        .map_err(|e| db_error("end a snapshot", &e))?;
    Ok(match info {
        Some(info) => Changes {
            mailbox: Some(info),
            changed,
            expunged,
        },
        None => Changes::default(),
    })
}

// ===== the directory (on the first shard; see `pg::shards`) =====

/// A user's directory row.
pub(crate) async fn directory_entry(
    client: &impl Db,
    name: &str,
) -> Result<Option<crate::pg::shards::DirectoryEntry>> {
    let found = row(
        client,
        "read the directory",
        "SELECT shard, state, move_to, moves FROM directory_users WHERE name = $1",
        &[&name],
    )
    .await?;
    Ok(found.map(|r| crate::pg::shards::DirectoryEntry {
        shard: r.get(0),
        state: r.get(1),
        move_to: r.get(2),
        moves: r.get(3),
    }))
}

/// Whether the directory knows `name` as a user others may name (in an
/// ACL): one that exists, also while it moves, but not one being made or
/// deleted.
pub(crate) async fn directory_has(client: &impl Db, name: &str) -> Result<bool> {
    Ok(row(
        client,
        "read the directory",
        "SELECT 1 FROM directory_users WHERE name = $1 AND state IN ('active', 'moving')",
        &[&name],
    )
    .await?
    .is_some())
}

/// Every user the directory lists as served (not being made or deleted).
pub(crate) async fn directory_users(client: &impl Db) -> Result<Vec<String>> {
    let found = rows(
        client,
        "list users",
        "SELECT name FROM directory_users WHERE state IN ('active', 'moving')
         ORDER BY name COLLATE \"C\"",
        &[],
    )
    .await?;
    Ok(found.iter().map(|r| r.get(0)).collect())
}

/// Accounts per shard, by the directory (every state counts: a name being
/// made or moved in will be served there).
pub(crate) async fn accounts_per_shard(client: &impl Db) -> Result<HashMap<String, u64>> {
    let found = rows(
        client,
        "count accounts per shard",
        "SELECT coalesce(move_to, shard), count(*) FROM directory_users GROUP BY 1",
        &[],
    )
    .await?;
    Ok(found
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}

/// The bytes of mail this database holds for its users.
pub(crate) async fn stored_bytes(client: &impl Db) -> Result<u64> {
    let found = row(
        client,
        "sum stored bytes",
        "SELECT coalesce(sum(usage_bytes), 0)::bigint FROM users WHERE state = 'active'",
        &[],
    )
    .await?;
    Ok(found.map_or(0, |r| r.get::<_, i64>(0).max(0) as u64))
}

/// Takes `name` for a new account on `shard`; `false` when the directory
/// has it already. The row's id is the directory's own key (a shard's
/// `users.id` is that shard's).
pub(crate) async fn reserve_name(client: &impl Db, name: &str, shard: &str) -> Result<bool> {
    Ok(row(
        client,
        "reserve a user name",
        "INSERT INTO directory_users (name, id, shard, state)
         VALUES ($1, nextval('user_ids'), $2, 'creating')
         ON CONFLICT (name) DO NOTHING RETURNING 1",
        &[&name, &shard],
    )
    .await?
    .is_some())
}

/// Moves a directory row from state `from` to `to`; whether it was in `from`.
pub(crate) async fn set_directory_state(
    client: &impl Db,
    name: &str,
    from: &str,
    to: &str,
) -> Result<bool> {
    let changed = client
        .execute(
            "UPDATE directory_users SET state = $3 WHERE name = $1 AND state = $2",
            &[&name, &from, &to],
        )
        .await
        .map_err(|e| db_error("change the directory", &e))?;
    Ok(changed == 1)
}

/// Removes a user's directory row (only in `state`, when given).
pub(crate) async fn drop_directory_entry(
    client: &impl Db,
    name: &str,
    state: Option<&str>,
) -> Result<()> {
    client
        .execute(
            "DELETE FROM directory_users WHERE name = $1 AND ($2::text IS NULL OR state = $2)",
            &[&name, &state],
        )
        .await
        .map(|_| ())
        .map_err(|e| db_error("change the directory", &e))
}
