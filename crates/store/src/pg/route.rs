//! Changes with several shards (`pg::shards`): each intent goes to the
//! writers of the shard that holds its user, all shards' batches at once.
//!
//! - A change that finds its user moved away (`Moved`, from a writer that
//!   holds the user's lock after a move's switch-over) asks the directory
//!   again and goes to the new shard; during the switch-over itself it
//!   waits, 50 ms at a time, for up to `[store] move_wait_ms`, then is
//!   answered as a temporary failure (LMTP 451: the MTA tries again). So a
//!   delivery is acknowledged only by the shard that holds the user when
//!   the move is over, and none is lost.
//! - Server-wide changes (aliases, status page, outboxes, tokens, blocks,
//!   an import) go to the first shard, which holds that state.
//! - Content GC runs on every shard.
//! - COPY and MOVE between users on two shards ([`copy_across`]): read on
//!   the source with the acting user's rights, appended on the target, and
//!   for a MOVE removed from the source after the copies committed. Not one
//!   transaction: a MOVE whose removal fails is answered NO with the
//!   messages in both mailboxes, a duplicate, never a loss.
//! - Adding and deleting a user span the directory and a shard: ordered
//!   steps, each safe to run again, so a node that stops half way leaves
//!   something that the same command finishes.

use crate::error::{ErrorKind, Result, StoreError};
use crate::intent::{Intent, Outcome};
use crate::pg::backend::pg_read;
use crate::pg::read;
use crate::pg::shards::Shards;
use crate::planner::intent_users;
use crate::store::{Store, submit_to};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A COPY between shards appends at most this many messages, or bytes
/// (one larger message alone), per batch.
const COPY_CHUNK_MESSAGES: usize = 64;
const COPY_CHUNK_BYTES: u64 = 32 * 1024 * 1024;

/// How long a change waits before asking the directory again during a
/// move's switch-over.
const MOVE_RETRY: Duration = Duration::from_millis(50);

/// Where an intent is planned.
enum Destination {
    Shard(usize),
    /// On every shard (content GC; a deleted user's grants).
    Every,
    /// A COPY or MOVE between users on two shards.
    Across,
}

/// [`Store::submit`] with several shards.
pub(crate) async fn submit(
    store: &Store,
    shards: &Shards,
    intents: Vec<Intent>,
) -> Vec<Result<Outcome>> {
    let mut results: Vec<Option<Result<Outcome>>> = (0..intents.len()).map(|_| None).collect();
    // In order: the changes between two account changes go as one batch per
    // shard; an account change alone.
    let mut run: Vec<usize> = Vec::new();
    for (index, intent) in intents.iter().enumerate() {
        if !matches!(intent, Intent::AddUser { .. } | Intent::DeleteUser { .. }) {
            run.push(index);
            continue;
        }
        let before = std::mem::take(&mut run);
        submit_run(store, shards, &intents, before, &mut results).await;
        results[index] = Some(match intent {
            Intent::AddUser { user, .. } => add_user(shards, user, intent).await,
            Intent::DeleteUser { user } => delete_user(shards, user).await,
            _ => Err(StoreError::invalid("not an account change")),
        });
    }
    submit_run(store, shards, &intents, run, &mut results).await;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(StoreError::new(ErrorKind::Unavailable, "no answer"))))
        .collect()
}

/// The intents `run` of `intents`, each on its shard, answered in `results`.
async fn submit_run(
    store: &Store,
    shards: &Shards,
    intents: &[Intent],
    run: Vec<usize>,
    results: &mut [Option<Result<Outcome>>],
) {
    let deadline = Instant::now() + shards.move_wait;
    let mut pending = run;
    while !pending.is_empty() {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut everywhere = Vec::new();
        let mut across = Vec::new();
        for index in pending.drain(..) {
            match destination(shards, &intents[index]) {
                Ok(Destination::Shard(shard)) => groups.entry(shard).or_default().push(index),
                Ok(Destination::Every) => everywhere.push(index),
                Ok(Destination::Across) => across.push(index),
                Err(e) => results[index] = Some(Err(e)),
            }
        }
        let batches = groups.into_iter().map(|(shard, indexes)| {
            let batch = indexes.iter().map(|i| intents[*i].clone()).collect();
            async move { (indexes, submit_to(shards.sender(shard), batch).await) }
        });
        let answered = futures_util::future::join_all(batches).await;
        for index in everywhere {
            results[index] = Some(on_every_shard(shards, &intents[index]).await);
        }
        for index in across {
            // A move of either owner under way: the actor's own mail did not
            // move, so their session is not told to reconnect; they retry.
            let copied = copy_across(store, shards, &intents[index])
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::Moved => {
                        StoreError::new(ErrorKind::Unavailable, format!("{}: try again", e.message))
                    }
                    _ => e,
                });
            results[index] = Some(copied);
        }
        for (indexes, answers) in answered {
            for (index, answer) in indexes.into_iter().zip(answers) {
                match answer {
                    Err(e) if e.kind == ErrorKind::Moved => {
                        let (user, other) = intent_users(&intents[index]);
                        for user in user.into_iter().chain(other) {
                            shards.forget(user);
                        }
                        if Instant::now() < deadline {
                            pending.push(index);
                        } else {
                            results[index] = Some(Err(StoreError::new(
                                ErrorKind::Unavailable,
                                format!("{}: the move is not over yet; try again", e.message),
                            )));
                        }
                    }
                    answer => results[index] = Some(answer),
                }
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(MOVE_RETRY).await;
        }
    }
}

/// The shard an intent is planned on.
fn destination(shards: &Shards, intent: &Intent) -> Result<Destination> {
    if matches!(
        intent,
        Intent::CollectGarbage { .. } | Intent::ForgetUser { .. }
    ) {
        return Ok(Destination::Every);
    }
    let (user, other) = intent_users(intent);
    // Server-wide: the first shard. A user the directory does not know: the
    // first shard too, whose planner answers as for any unknown user.
    let Some(user) = user else {
        return Ok(Destination::Shard(0));
    };
    let shard = shards.route(user)?.unwrap_or(0);
    if let Some(other) = other
        && shards.route(other)?.unwrap_or(0) != shard
    {
        return Ok(Destination::Across);
    }
    Ok(Destination::Shard(shard))
}

/// Runs `intent` on every shard: the first refusal, or the outcomes summed.
async fn on_every_shard(shards: &Shards, intent: &Intent) -> Result<Outcome> {
    let runs =
        (0..shards.list.len()).map(|shard| submit_to(shards.sender(shard), vec![intent.clone()]));
    let mut total = Outcome::Done;
    for answer in futures_util::future::join_all(runs).await {
        let outcome = answer
            .into_iter()
            .next()
            .unwrap_or_else(|| Err(StoreError::new(ErrorKind::Unavailable, "no answer")))?;
        total = match (total, outcome) {
            (
                Outcome::Collected {
                    blobs_removed: a,
                    bytes_copied: b,
                    packs_deleted: c,
                },
                Outcome::Collected {
                    blobs_removed: x,
                    bytes_copied: y,
                    packs_deleted: z,
                },
            ) => Outcome::Collected {
                blobs_removed: a + x,
                bytes_copied: b + y,
                packs_deleted: c + z,
            },
            (Outcome::Done, outcome) => outcome,
            (total, _) => total,
        };
    }
    Ok(total)
}

/// A COPY or MOVE from one user's mailbox to another's, the two on
/// different shards (see the module documentation).
async fn copy_across(store: &Store, shards: &Shards, intent: &Intent) -> Result<Outcome> {
    use crate::acl::Rights;
    use crate::intent::MailboxRef;
    let (actor, copy) = match intent {
        Intent::Acting { actor, intent } => (Some(actor.as_str()), intent.as_ref()),
        other => (None, other),
    };
    let Intent::Copy {
        user: target_owner,
        from_user: Some(source_owner),
        from,
        uids,
        to,
        remove_source,
    } = copy
    else {
        return Err(StoreError::invalid("not a copy between two users"));
    };
    let acting = |owner: &str, intent: Intent| match actor {
        Some(actor) if actor != owner => Intent::Acting {
            actor: actor.to_string(),
            intent: Box::new(intent),
        },
        _ => intent,
    };
    // The source, read with the actor's rights, as its shard's planner
    // would check them: a mailbox the actor may not look up is missing.
    let reader = store.reader(source_owner)?;
    let hidden = || StoreError::not_found("no such mailbox");
    let source = match from {
        MailboxRef::Name(name) => reader.mailbox(name)?,
        MailboxRef::Id(id) => reader.mailbox_by_id(id)?,
    }
    .ok_or_else(hidden)?;
    if let Some(actor) = actor.filter(|a| *a != source_owner.as_str()) {
        let rights = reader.rights(&source.id, actor)?;
        if !rights.contains(Rights::LOOKUP) {
            return Err(hidden());
        }
        let needed = if *remove_source {
            Rights::READ
                .union(Rights::DELETE_MESSAGES)
                .union(Rights::EXPUNGE)
        } else {
            Rights::READ
        };
        if !rights.contains(needed) {
            return Err(StoreError::denied(format!(
                "you need the \"{needed}\" right to {} messages of this mailbox",
                if *remove_source { "move" } else { "copy" }
            )));
        }
    }
    let mut originals = Vec::new();
    for meta in reader.messages(&source.id)? {
        if !uids.contains(&meta.uid) {
            continue;
        }
        if meta.damaged {
            return Err(StoreError::corrupt(format!(
                "UID {} is damaged in the index; reconstruct repairs it",
                meta.uid
            )));
        }
        originals.push(meta);
    }
    if originals.is_empty() {
        return Ok(Outcome::Copied {
            uid_validity: 0,
            pairs: Vec::new(),
            expunged: Vec::new(),
        });
    }
    // The copies, on the target's shard, a bounded chunk at a time (a
    // mailbox of any size is never held in memory whole).
    let target_shard = shards.route_existing(target_owner)?;
    let mut pairs = Vec::new();
    let mut uid_validity = 0;
    let mut refused = None;
    let mut rest = originals.as_slice();
    while !rest.is_empty() && refused.is_none() {
        let mut bytes = 0u64;
        let count = rest
            .iter()
            .take_while(|meta| {
                bytes += meta.size;
                bytes <= COPY_CHUNK_BYTES
            })
            .count()
            .clamp(1, COPY_CHUNK_MESSAGES);
        let (chunk, after) = rest.split_at(count.min(rest.len()));
        rest = after;
        let mut appends = Vec::with_capacity(chunk.len());
        for meta in chunk {
            let raw = match reader.message_bytes(&source.id, meta) {
                Ok(raw) => raw,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            };
            // Hashing and parsing are CPU work: off the async workers.
            let preparing = store.clone();
            let prepared = match tokio::task::spawn_blocking(move || preparing.prepare(raw)).await {
                Ok(prepared) => prepared,
                Err(e) => {
                    refused = Some(StoreError::new(
                        ErrorKind::Io,
                        format!("prepare a copy: {e}"),
                    ));
                    break;
                }
            };
            appends.push(acting(
                target_owner,
                Intent::Append {
                    user: target_owner.clone(),
                    mailbox: to.clone(),
                    message: prepared,
                    flags: meta.flags.clone(),
                    internal_date: Some((meta.internal_date, meta.internal_zone)),
                },
            ));
        }
        if refused.is_some() {
            break;
        }
        let answers = submit_to(shards.sender(target_shard), appends).await;
        for (meta, answer) in chunk.iter().zip(answers) {
            match answer {
                Ok(Outcome::Appended {
                    uid_validity: v,
                    uid,
                    ..
                }) => {
                    uid_validity = v;
                    pairs.push((meta.uid, uid));
                }
                Ok(other) => {
                    refused.get_or_insert(StoreError::new(
                        ErrorKind::Io,
                        format!("an append answered {other:?}"),
                    ));
                }
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
    }
    drop(reader);
    if let Some(e) = refused {
        // All or nothing, as a COPY on one shard: the copies made go again.
        if !pairs.is_empty() {
            let made = pairs.iter().map(|(_, uid)| *uid).collect();
            let undone = one(
                shards,
                target_shard,
                Intent::Remove {
                    user: target_owner.clone(),
                    mailbox: MailboxRef::Name(to.clone()),
                    uids: made,
                },
            )
            .await;
            if let Err(undo) = undone {
                tracing::error!(event = "copy_across_undo_failed", error = %undo, "a refused COPY between shards left some of its copies");
            }
        }
        return Err(e);
    }
    let mut expunged = Vec::new();
    if *remove_source {
        let source_shard = shards.route_existing(source_owner)?;
        let removed = one(
            shards,
            source_shard,
            acting(
                source_owner,
                Intent::Remove {
                    user: source_owner.clone(),
                    mailbox: MailboxRef::Id(source.id.clone()),
                    uids: pairs.iter().map(|(from, _)| *from).collect(),
                },
            ),
        )
        .await
        .map_err(|e| {
            StoreError::new(
                e.kind,
                format!(
                    "copied, but not removed from the source ({}): the messages are in both mailboxes",
                    e.message
                ),
            )
        })?;
        if let Outcome::Expunged { uids, .. } = removed {
            expunged = uids;
        }
    }
    Ok(Outcome::Copied {
        uid_validity,
        pairs,
        expunged,
    })
}

async fn one(shards: &Shards, shard: usize, intent: Intent) -> Result<Outcome> {
    submit_to(shards.sender(shard), vec![intent])
        .await
        .pop()
        .unwrap_or_else(|| Err(StoreError::new(ErrorKind::Unavailable, "no answer")))
}

/// A new user: the name taken in the directory (`creating`), the account
/// made on the shard chosen for it, the name marked `active`.
async fn add_user(shards: &Shards, user: &str, intent: &Intent) -> Result<Outcome> {
    let shard = shards.reserve(user)?;
    let answer = one(shards, shard, intent.clone()).await;
    match &answer {
        Ok(_) => shards.activate(user, shard)?,
        // Made before (an earlier attempt that stopped before marking it,
        // or another node's at the same moment): listed now, and this
        // attempt's password is not the one stored, so it says so. Unless
        // the name's row there is what a move left behind, not an account.
        Err(e) if e.kind == ErrorKind::AlreadyExists => {
            let there = pg_read!(shards.pg(shard), |c| read::user(c, user))?;
            if there.is_some_and(|(_, state)| state != "active") {
                let _ = shards.release(user);
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!(
                        "shard {} still holds the rows a move of {user} left there; try again after [store] move_grace_secs",
                        shards.pg(shard).shard
                    ),
                ));
            }
            shards.activate(user, shard)?
        }
        Err(_) => {
            if let Err(e) = shards.release(user) {
                tracing::warn!(event = "directory_release_failed", user, error = %e, "the name stays reserved; adding it again finishes or releases it");
            }
        }
    }
    answer
}

/// A user deleted: marked `deleting` in the directory (no new grants name
/// them, the name cannot be taken again); the account deleted on its shard;
/// the entries naming them in other owners' ACLs removed on every other
/// shard; the aliases; the directory row. Running it again after a stop
/// half way finishes it.
async fn delete_user(shards: &Shards, user: &str) -> Result<Outcome> {
    let entry = shards
        .entry(user)?
        .filter(|e| e.state != "creating")
        .ok_or_else(|| StoreError::not_found(format!("no such user {user}")))?;
    match entry.state.as_str() {
        "moving" => {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!(
                    "{user} is being moved to shard {}; delete them when the move is over",
                    entry.move_to.as_deref().unwrap_or("?")
                ),
            ));
        }
        "active" => {
            let marked = pg_read!(shards.directory(), |c| read::set_directory_state(
                c, user, "active", "deleting"
            ))?;
            if !marked {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    format!("{user} changed in the directory meanwhile (a move?); try again"),
                ));
            }
        }
        _ => {}
    }
    let home = shards.index_of(&entry.shard, user)?;
    match one(
        shards,
        home,
        Intent::DeleteUser {
            user: user.to_string(),
        },
    )
    .await
    {
        Ok(_) => {}
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Its grants on every shard, and on the first its aliases (a no-op on
    // the home shard, whose delete did both for what it holds).
    for shard in 0..shards.list.len() {
        one(
            shards,
            shard,
            Intent::ForgetUser {
                user: user.to_string(),
            },
        )
        .await?;
    }
    pg_read!(shards.directory(), |c| read::drop_directory_entry(
        c, user, None
    ))?;
    shards.forget(user);
    Ok(Outcome::Done)
}
