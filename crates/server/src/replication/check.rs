//! `replication check [USER] [--repair]`: compare both servers by digest and
//! repair toward the side whose data verifies.
//!
//! Each side condenses each user (`store::replication::user_digest`, with
//! every content read and checked against its hash); the side that runs the
//! check asks the other over the link. Mailboxes whose digests differ are
//! compared message by message. A repair never copies data that fails its
//! own check:
//! 1. derived damage (index rows, cache entries, flags that disagree with the
//!    journal) is repaired by `reconstruct` of that user on each side, from
//!    that side's own journal and contents: both journals hold the same
//!    records, so both indexes come back to the same state;
//! 2. a content that is missing or corrupt on one side and good on the other
//!    is fetched, checked against its SHA-256, and stored again
//!    (`Intent::RestoreBlob`);
//! 3. what still differs after that (records one journal lacks) is reported
//!    as not repaired, with what to do.

use super::Replication;
use super::wire::{Frame, Msg, Request};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use store::replication::{MessageRow, UserDigest};
use store::{BlobHash, Intent, Store};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// An answer to a peer's request: JSON, or a content as payload.
pub struct Answer {
    result: Result<(serde_json::Value, Vec<u8>), String>,
}

impl Answer {
    pub fn into_response(self, id: u64) -> Frame {
        match self.result {
            Ok((body, payload)) => Frame {
                msg: Msg::Response {
                    id,
                    error: None,
                    body,
                },
                payload,
            },
            Err(error) => Frame::new(Msg::Response {
                id,
                error: Some(error),
                body: serde_json::Value::Null,
            }),
        }
    }
}

/// Answers a request from the peer (on a blocking thread: it reads indexes and contents).
pub async fn answer(replication: &Arc<Replication>, request: Request) -> Answer {
    if let Request::RestoreLost { user, mailbox } = &request {
        let result = match replication.link() {
            Some(link) => restore_lost(replication, &link, user, mailbox)
                .await
                .map(|n| (serde_json::json!({ "restored": n }), Vec::new()))
                .map_err(|e| e.to_string()),
            None => Err("no link".to_string()),
        };
        return Answer { result };
    }
    let store = replication.store().clone();
    let result = tokio::task::spawn_blocking(move || -> Result<_, String> {
        match request {
            Request::Digest { user, verify } => {
                let digests = digests(&store, user.as_deref(), verify)?;
                Ok((json(&digests)?, Vec::new()))
            }
            Request::Listing {
                user,
                mailbox,
                verify,
            } => {
                let reader = store.reader(&user).map_err(|e| e.to_string())?;
                let rows = store::replication::mailbox_listing(&reader, &mailbox, verify)
                    .map_err(|e| e.to_string())?;
                Ok((json(&rows)?, Vec::new()))
            }
            Request::Blob { hash } => {
                let hash = BlobHash::from_hex(&hash).ok_or("bad content hash")?;
                let bytes = store.blob(&hash).map_err(|e| e.to_string())?;
                Ok((serde_json::Value::Null, bytes))
            }
            Request::Reconstruct { user } => {
                let report = reconstruct(&store, &user)?;
                Ok((report, Vec::new()))
            }
            Request::RestoreLost { .. } => Err("answered above".into()),
        }
    })
    .await
    .unwrap_or_else(|e| Err(format!("request failed: {e}")));
    Answer { result }
}

fn json<T: Serialize>(value: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Digests of one user or all, in name order.
fn digests(store: &Store, user: Option<&str>, verify: bool) -> Result<Vec<UserDigest>, String> {
    let users = match user {
        Some(user) => {
            if store.user_exists(user).map_err(|e| e.to_string())? {
                vec![user.to_string()]
            } else {
                Vec::new()
            }
        }
        None => store.users().map_err(|e| e.to_string())?,
    };
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let reader = store.reader(&user).map_err(|e| format!("{user}: {e}"))?;
        let password = store
            .password_hash(&user)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let quota = store.quota_settings(&user).map_err(|e| e.to_string())?;
        out.push(
            store::replication::user_digest(&reader, &password, quota, verify)
                .map_err(|e| format!("{user}: {e}"))?,
        );
    }
    out.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(out)
}

fn reconstruct(store: &Store, user: &str) -> Result<serde_json::Value, String> {
    let options = store::reconstruct::Options {
        user: Some(user.to_string()),
        mailbox: None,
        mailbox_id: None,
        check_only: false,
        read_bytes_per_sec: 0,
    };
    let report = store
        .reconstruct(&options, &|_| {})
        .map_err(|e| e.to_string())?;
    json(&serde_json::json!({
        "problems": report.problems,
        "repaired": report.repaired,
        "lost": report.lost,
    }))
}

/// One difference between the two servers.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// The side this check ran on.
    pub here: &'static str,
    pub users: u64,
    pub mailboxes: u64,
    pub differences: u64,
    pub details: Vec<Difference>,
    /// With `--repair`: the repairs made, and the differences left after them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remaining_details: Vec<Difference>,
}

/// Runs the check (and the repair) from this server's side.
pub async fn run(
    replication: &Arc<Replication>,
    user: Option<String>,
    repair: bool,
) -> anyhow::Result<Report> {
    let link = replication.link().ok_or_else(|| {
        anyhow::anyhow!("no link to the other server now (see `replication status`)")
    })?;
    let here = match replication.role() {
        crate::config::ReplicationRole::Primary => "primary",
        crate::config::ReplicationRole::Replica => "replica",
    };
    let (mut details, users, mailboxes, differing) =
        compare(replication, &link, user.clone()).await?;
    let mut report = Report {
        here,
        users,
        mailboxes,
        differences: details.len() as u64,
        details: std::mem::take(&mut details),
        repaired: None,
        remaining: None,
        remaining_details: Vec::new(),
    };
    if !repair || report.differences == 0 {
        return Ok(report);
    }
    let mut repaired = 0u64;
    // 1. Derived damage, on both sides, from each side's own journal.
    for user in differing.keys() {
        let store = replication.store().clone();
        let name = user.clone();
        let local = tokio::task::spawn_blocking(move || reconstruct(&store, &name)).await?;
        repaired += local.map_or(0, |r| r["repaired"].as_u64().unwrap_or(0));
        let remote = link
            .request(Request::Reconstruct { user: user.clone() }, REQUEST_TIMEOUT)
            .await?;
        if let Msg::Response { body, .. } = remote.msg {
            repaired += body["repaired"].as_u64().unwrap_or(0);
        }
    }
    // 2. Contents lost on one side, from the other, verified: here, and there.
    for (user, mailboxes) in &differing {
        for mailbox in mailboxes {
            repaired += restore_lost(replication, &link, user, mailbox).await?;
            let remote = link
                .request(
                    Request::RestoreLost {
                        user: user.clone(),
                        mailbox: mailbox.clone(),
                    },
                    REQUEST_TIMEOUT,
                )
                .await?;
            if let Msg::Response { body, .. } = remote.msg {
                repaired += body["restored"].as_u64().unwrap_or(0);
            }
        }
    }
    let (remaining, _, _, _) = compare(replication, &link, user).await?;
    report.repaired = Some(repaired);
    report.remaining = Some(remaining.len() as u64);
    report.remaining_details = remaining;
    Ok(report)
}

/// Fetches from the other server every content of a mailbox that is lost
/// here and good there (same hash), checks it and stores it again.
pub async fn restore_lost(
    replication: &Arc<Replication>,
    link: &Arc<super::Link>,
    user: &str,
    mailbox: &str,
) -> anyhow::Result<u64> {
    let (ours, theirs) = listings(replication, link, user, mailbox).await?;
    let theirs_by_uid: BTreeMap<u32, &MessageRow> = theirs.iter().map(|r| (r.uid, r)).collect();
    let mut restored = 0;
    for row in &ours {
        let Some(other) = theirs_by_uid.get(&row.uid) else {
            continue;
        };
        let fetchable = row.lost && !other.lost && !other.damaged && row.blob == other.blob;
        if !fetchable {
            continue;
        }
        let frame = link
            .request(
                Request::Blob {
                    hash: row.blob.clone(),
                },
                REQUEST_TIMEOUT,
            )
            .await?;
        let store = replication.store().clone();
        let prepared = tokio::task::spawn_blocking(move || store.prepare(frame.payload)).await?;
        if prepared.hash.to_hex() != row.blob {
            anyhow::bail!("a content from the other server does not match its hash");
        }
        replication
            .store()
            .submit_one(Intent::RestoreBlob { message: prepared })
            .await
            .map_err(|e| anyhow::anyhow!("store the fetched content: {e}"))?;
        tracing::warn!(
            event = "replication_content_restored",
            user,
            mailbox,
            uid = row.uid,
            "a lost message content was fetched from the other server"
        );
        restored += 1;
    }
    Ok(restored)
}

async fn listings(
    replication: &Arc<Replication>,
    link: &Arc<super::Link>,
    user: &str,
    mailbox: &str,
) -> anyhow::Result<(Vec<MessageRow>, Vec<MessageRow>)> {
    let store = replication.store().clone();
    let (u, m) = (user.to_string(), mailbox.to_string());
    let ours = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<MessageRow>> {
        let reader = store.reader(&u)?;
        Ok(store::replication::mailbox_listing(&reader, &m, true)?)
    })
    .await??;
    let frame = link
        .request(
            Request::Listing {
                user: user.to_string(),
                mailbox: mailbox.to_string(),
                verify: true,
            },
            REQUEST_TIMEOUT,
        )
        .await?;
    let theirs: Vec<MessageRow> = match frame.msg {
        Msg::Response { body, .. } => serde_json::from_value(body)?,
        _ => anyhow::bail!("unexpected answer to a listing"),
    };
    Ok((ours, theirs))
}

type Differing = BTreeMap<String, Vec<String>>;

/// The differences, the users and mailboxes compared, and the mailboxes (by
/// user, by id) whose messages differ.
async fn compare(
    replication: &Arc<Replication>,
    link: &Arc<super::Link>,
    user: Option<String>,
) -> anyhow::Result<(Vec<Difference>, u64, u64, Differing)> {
    let store = replication.store().clone();
    let wanted = user.clone();
    let ours = tokio::task::spawn_blocking(move || digests(&store, wanted.as_deref(), true))
        .await?
        .map_err(|e| anyhow::anyhow!(e))?;
    let frame = link
        .request(Request::Digest { user, verify: true }, REQUEST_TIMEOUT)
        .await?;
    let theirs: Vec<UserDigest> = match frame.msg {
        Msg::Response { body, .. } => serde_json::from_value(body)?,
        _ => anyhow::bail!("unexpected answer to a digest request"),
    };
    let here = match replication.role() {
        crate::config::ReplicationRole::Primary => ("primary", "replica"),
        crate::config::ReplicationRole::Replica => ("replica", "primary"),
    };
    let ours: BTreeMap<&str, &UserDigest> = ours.iter().map(|d| (d.user.as_str(), d)).collect();
    let theirs: BTreeMap<&str, &UserDigest> = theirs.iter().map(|d| (d.user.as_str(), d)).collect();
    let mut out = Vec::new();
    let mut differing: Differing = BTreeMap::new();
    let mut mailboxes = 0u64;
    let diff = |user: &str, mailbox: Option<&str>, uid, kind: &str, detail: String| Difference {
        user: user.to_string(),
        mailbox: mailbox.map(str::to_string),
        uid,
        kind: kind.to_string(),
        detail,
    };
    let names: std::collections::BTreeSet<&str> =
        ours.keys().chain(theirs.keys()).copied().collect();
    for name in &names {
        let (Some(a), Some(b)) = (ours.get(name), theirs.get(name)) else {
            let only = if ours.contains_key(name) {
                here.0
            } else {
                here.1
            };
            out.push(diff(
                name,
                None,
                None,
                "user_missing",
                format!("the user exists only on the {only}"),
            ));
            continue;
        };
        if a.settings != b.settings {
            out.push(diff(
                name,
                None,
                None,
                "settings",
                "password, quota, subscriptions or annotations differ".into(),
            ));
        }
        let theirs_boxes: BTreeMap<&str, _> =
            b.mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
        let ours_boxes: BTreeMap<&str, _> =
            a.mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
        for (id, mine) in &ours_boxes {
            mailboxes += 1;
            let Some(other) = theirs_boxes.get(id) else {
                out.push(diff(
                    name,
                    Some(&mine.name),
                    None,
                    "mailbox_missing",
                    format!("only on the {}", here.0),
                ));
                continue;
            };
            if mine.name != other.name || mine.uid_validity != other.uid_validity {
                out.push(diff(
                    name,
                    Some(&mine.name),
                    None,
                    "mailbox",
                    format!(
                        "name or UIDVALIDITY differ: {} {} on the {}, {} {} on the {}",
                        mine.name,
                        mine.uid_validity,
                        here.0,
                        other.name,
                        other.uid_validity,
                        here.1
                    ),
                ));
            }
            if mine.uid_next != other.uid_next || mine.highest_modseq != other.highest_modseq {
                out.push(diff(
                    name,
                    Some(&mine.name),
                    None,
                    "mailbox_counters",
                    format!(
                        "UIDNEXT/HIGHESTMODSEQ {}/{} on the {}, {}/{} on the {}",
                        mine.uid_next,
                        mine.highest_modseq,
                        here.0,
                        other.uid_next,
                        other.highest_modseq,
                        here.1
                    ),
                ));
                differing
                    .entry(name.to_string())
                    .or_default()
                    .push(mine.id.clone());
            }
            if mine.digest != other.digest {
                differing
                    .entry(name.to_string())
                    .or_default()
                    .push(mine.id.clone());
                let (rows_a, rows_b) = listings(replication, link, name, id).await?;
                for d in compare_rows(&rows_a, &rows_b, here) {
                    out.push(diff(name, Some(&mine.name), Some(d.0), &d.1, d.2));
                }
            }
        }
        for (id, other) in &theirs_boxes {
            if !ours_boxes.contains_key(id) {
                mailboxes += 1;
                out.push(diff(
                    name,
                    Some(&other.name),
                    None,
                    "mailbox_missing",
                    format!("only on the {}", here.1),
                ));
            }
        }
    }
    for list in differing.values_mut() {
        list.dedup();
    }
    Ok((out, names.len() as u64, mailboxes, differing))
}

/// Per-message differences: (uid, kind, detail).
fn compare_rows(
    ours: &[MessageRow],
    theirs: &[MessageRow],
    here: (&str, &str),
) -> Vec<(u32, String, String)> {
    let a: BTreeMap<u32, &MessageRow> = ours.iter().map(|r| (r.uid, r)).collect();
    let b: BTreeMap<u32, &MessageRow> = theirs.iter().map(|r| (r.uid, r)).collect();
    let mut out = Vec::new();
    for (uid, row) in &a {
        match b.get(uid) {
            None => out.push((
                *uid,
                "message_missing".into(),
                format!("only on the {}", here.0),
            )),
            Some(other) => {
                for (side, r) in [(here.0, row), (here.1, other)] {
                    if r.damaged {
                        out.push((
                            *uid,
                            "damaged".into(),
                            format!("its index row fails its checksum on the {side}"),
                        ));
                    } else if r.lost {
                        out.push((
                            *uid,
                            "content_lost".into(),
                            format!("its content is missing or fails its hash on the {side}"),
                        ));
                    }
                }
                if row.blob != other.blob && !row.damaged && !other.damaged {
                    out.push((
                        *uid,
                        "content".into(),
                        "the two servers name different contents".into(),
                    ));
                }
                if row.flags != other.flags || row.modseq != other.modseq {
                    out.push((
                        *uid,
                        "flags".into(),
                        format!(
                            "({}) MODSEQ {} on the {}, ({}) MODSEQ {} on the {}",
                            row.flags.join(" "),
                            row.modseq,
                            here.0,
                            other.flags.join(" "),
                            other.modseq,
                            here.1
                        ),
                    ));
                }
            }
        }
    }
    for uid in b.keys() {
        if !a.contains_key(uid) {
            out.push((
                *uid,
                "message_missing".into(),
                format!("only on the {}", here.1),
            ));
        }
    }
    out
}
