//! `postern user move NAME --to SHARD`: a user's account and mail move from
//! one shard to another while they stay in use (docs/design/postgres-cluster.md,
//! 8.3). Run by the CLI, on connections of its own:
//!
//! 1. **Mark.** The directory row becomes `moving` (with `move_to`): a second
//!    move or a delete of the user is refused meanwhile. Sessions and
//!    deliveries go on on the source.
//! 2. **Copy.** In one `REPEATABLE READ` snapshot of the source: the user's
//!    row (as `moving_in`, under an id of the target's), mailboxes, the
//!    contents their messages name that the target lacks, messages, cache,
//!    tombstones, subscriptions, threads, annotations, ACLs and the change
//!    log, streamed table by table with binary `COPY`, in one transaction
//!    on the target.
//! 3. **Catch up.** What the source's change log gained since is applied to
//!    the target record by record (`pg::apply`, keeping every UID, MODSEQ and
//!    id), rounds until little is left.
//! 4. **Switch.** On the source, under the user's advisory lock (the one
//!    every writer of the user holds): `state = 'moved_out'`, and the last
//!    records read in that transaction. From its commit, a writer of the
//!    user on the source finds the state under the lock and answers `Moved`,
//!    having changed nothing; the store waits and retries it on the shard
//!    the directory names (`pg::route`). The last records go to the target,
//!    which becomes `active`, then the directory row (`active` on the new
//!    shard), then a notification: nodes drop their cached route and wake
//!    the user's sessions, which end with `BYE [UNAVAILABLE]`; a reconnect
//!    reads the target. UIDVALIDITY, UIDs and MODSEQs are the same, so
//!    clients resync nothing.
//! 5. **Clean up.** After `[store] move_grace_secs` (longer than any node
//!    trusts its cached route), the rows left on the source are deleted;
//!    content GC reclaims what only they named.
//!
//! A move that stops half way is finished by running the command again
//! (before the switch it copies again from the start; after, it finishes
//! the switch and the clean-up), or undone before the switch by `--abort`.

use crate::error::{ErrorKind, Result, StoreError};
use crate::pg::backend::Pg;
use crate::pg::shards::{DirectoryEntry, Shards};
use crate::pg::{apply, blobs, db_error, read};
use crate::record::Record;
use crate::types::BlobHash;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, GenericClient, IsolationLevel};

/// The tables of one user's mail, in the order a copy writes them (each
/// after what its foreign keys name), and the column naming the user.
const USER_TABLES: &[(&str, &str)] = &[
    ("mailboxes", "user_id"),
    ("messages", "user_id"),
    ("message_cache", "user_id"),
    ("expunged", "user_id"),
    ("subscriptions", "user_id"),
    ("threads", "user_id"),
    ("metadata", "user_id"),
    ("acl", "user_id"),
    ("changes", "user_id"),
];

/// Contents copied per round trip.
const BLOBS_PER_CHUNK: usize = 64;
/// Change records applied per catch-up read.
const RECORDS_PER_ROUND: i64 = 1000;
/// A catch-up round that leaves fewer records than this ends the catch-up.
const SMALL_REMAINDER: usize = 100;
/// Catch-up rounds at most before the switch.
const ROUNDS_MAX: u32 = 5;
/// The user's advisory lock, as the writers take it (`pg::writer`).
const LOCK_CLASS: i32 = 0x706f_7374;
/// The class of the session lock a move (or its `--abort`) of one user
/// holds on the directory for as long as it runs: never two at once.
const MOVE_CLASS: i32 = 0x706f_7374 + 2;

/// Takes the move lock of `user` on the directory connection (held until
/// that connection closes, at the end of the run or with its process).
async fn hold_move_lock(directory: &Client, user: &str) -> Result<()> {
    let row = directory
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&MOVE_CLASS, &user],
        )
        .await
        .map_err(|e| db_error("take the move's lock", &e))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(StoreError::new(
            ErrorKind::Conflict,
            format!("another `user move` of {user} (or its --abort) is running"),
        ))
    }
}

/// Where a move is, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveProgress {
    /// `copy`, `catch-up`, `switch`, `switched` (the old shard no longer
    /// takes the user's changes), `grace` or `clean-up`.
    pub phase: &'static str,
    /// Content bytes copied so far (copy), records applied (catch-up),
    /// seconds waited (grace).
    pub done: u64,
    /// What `done` goes up to (0: unknown).
    pub total: u64,
}

/// What a finished move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveReport {
    pub user: String,
    pub from: String,
    pub to: String,
    pub messages: u64,
    /// Contents copied (those the target held already are not).
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Change records applied after the copy, switch included.
    pub records_caught_up: u64,
    /// How long writers of the user waited: the switch's transaction to the
    /// directory's update.
    pub switch_ms: u64,
    /// Whether this run finished a move an earlier run had switched.
    pub resumed: bool,
}

/// Moves `user` to the shard named `to`. `progress` hears each step.
pub(crate) fn run(
    shards: &Shards,
    limits: mime::Limits,
    user: &str,
    to: &str,
    grace: Duration,
    progress: &mut (dyn FnMut(&MoveProgress) + Send),
) -> Result<MoveReport> {
    if !shards.sharded() {
        return Err(StoreError::invalid(
            "user move needs several shards ([[store.shards]] in the config)",
        ));
    }
    let target = shards.named(to).ok_or_else(|| unknown_shard(shards, to))?;
    shards.directory().block(async {
        let limit = shards.directory().query_timeout;
        let mut mover = bounded(limit, Mover::connect(shards, user, target, limits)).await?;
        let report = mover.run(grace, progress).await;
        if report.is_ok() {
            tracing::info!(
                event = "user_moved",
                user,
                to,
                "the user's mail is served from its new shard"
            );
        }
        report
    })
}

/// Undoes a move that has not switched yet: the target's partial copy is
/// deleted and the directory row is `active` again on the source.
pub(crate) fn abort(shards: &Shards, user: &str) -> Result<DirectoryEntry> {
    shards.directory().block(async {
        let directory = connect(shards.directory()).await?;
        let entry = read::directory_entry(&directory, user)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("no such user {user}")))?;
        hold_move_lock(&directory, user).await?;
        // Read again under the lock: a move that ended meanwhile is over.
        let entry = read::directory_entry(&directory, user)
            .await?
            .unwrap_or(entry);
        let (Some(to), "moving") = (entry.move_to.clone(), entry.state.as_str()) else {
            return Err(StoreError::invalid(format!("{user} is not being moved")));
        };
        let source = shards.index_of(&entry.shard, user)?;
        let source_client = connect(shards.pg(source)).await?;
        if let Some((_, state)) = read::user(&source_client, user).await?
            && state == "moved_out"
        {
            return Err(StoreError::invalid(format!(
                "the move of {user} to {to} has switched already: run `user move {user} --to {to}` to finish it"
            )));
        }
        if let Some(target) = shards.named(&to) {
            let target_client = connect(shards.pg(target)).await?;
            delete_user_rows(&target_client, user, Some("moving_in")).await?;
        }
        directory
            .execute(
                "UPDATE directory_users SET state = 'active', move_to = NULL
                 WHERE name = $1 AND state = 'moving'",
                &[&user],
            )
            .await
            .map_err(|e| db_error("end the move in the directory", &e))?;
        Ok(DirectoryEntry {
            shard: entry.shard,
            state: "active".into(),
            move_to: None,
            moves: entry.moves,
        })
    })
}

fn unknown_shard(shards: &Shards, name: &str) -> StoreError {
    let names: Vec<&str> = shards.list.iter().map(|s| s.pg.shard.as_str()).collect();
    StoreError::invalid(format!(
        "no shard named {name:?}; [[store.shards]] lists {}",
        names.join(", ")
    ))
}

/// Runs one step of a move, at most `limit`: a shard that stops answering
/// (frozen) fails the move as temporary instead of holding it, and its lock,
/// for ever. Running the command again goes on from where it stopped.
async fn bounded<T>(
    limit: Duration,
    step: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, step).await {
        Ok(done) => done,
        Err(_) => Err(StoreError::new(
            ErrorKind::Unavailable,
            format!(
                "a shard did not answer the move within {} ms; run the command again",
                limit.as_millis()
            ),
        )),
    }
}

/// A connection of the move's own to a shard (the driver runs on the
/// runtime that calls this).
async fn connect(pg: &Pg) -> Result<Client> {
    let mut dsn = pg.writer_dsn.clone();
    dsn.application_name("postern-move");
    crate::pg::connect(&dsn, Duration::from_secs(10), &pg.tls).await
}

struct Mover<'a> {
    shards: &'a Shards,
    user: &'a str,
    limits: mime::Limits,
    directory: Client,
    source: Client,
    target: Client,
    from: usize,
    to: usize,
    report: MoveReport,
}

impl<'a> Mover<'a> {
    /// How long one step of the move may wait for PostgreSQL
    /// (`[store] postgres_query_timeout_ms`; catch-up rounds and the
    /// clean-up ten times as long). The copy itself is not bounded: it
    /// takes as long as the user's mail does.
    fn step_limit(&self) -> Duration {
        self.shards.directory().query_timeout
    }

    async fn connect(
        shards: &'a Shards,
        user: &'a str,
        to: usize,
        limits: mime::Limits,
    ) -> Result<Mover<'a>> {
        let directory = connect(shards.directory()).await?;
        if read::directory_entry(&directory, user).await?.is_none() {
            return Err(StoreError::not_found(format!("no such user {user}")));
        }
        hold_move_lock(&directory, user).await?;
        let entry = read::directory_entry(&directory, user)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("no such user {user}")))?;
        let to_name = shards.pg(to).shard.clone();
        let from_name = match entry.state.as_str() {
            "active" => entry.shard.clone(),
            "moving" if entry.move_to.as_deref() == Some(to_name.as_str()) => entry.shard.clone(),
            "moving" => {
                return Err(StoreError::invalid(format!(
                    "a move of {user} to {} is under way: finish it (user move {user} --to {}) or undo it (--abort)",
                    entry.move_to.as_deref().unwrap_or("?"),
                    entry.move_to.as_deref().unwrap_or("?"),
                )));
            }
            state => {
                return Err(StoreError::new(
                    ErrorKind::Unavailable,
                    format!("{user} is {state} (being added or deleted); try again later"),
                ));
            }
        };
        let from = shards.index_of(&from_name, user)?;
        let source = connect(shards.pg(from)).await?;
        let target = connect(shards.pg(to)).await?;
        Ok(Mover {
            shards,
            user,
            limits,
            directory,
            source,
            target,
            from,
            to,
            report: MoveReport {
                user: user.to_string(),
                from: from_name,
                to: to_name,
                messages: 0,
                blobs_copied: 0,
                bytes_copied: 0,
                records_caught_up: 0,
                switch_ms: 0,
                resumed: false,
            },
        })
    }

    async fn run(
        &mut self,
        grace: Duration,
        progress: &mut (dyn FnMut(&MoveProgress) + Send),
    ) -> Result<MoveReport> {
        let user = self.user;
        if self.from == self.to {
            // Already here: what an earlier move left on other shards goes.
            // When the directory changed is not known here: a whole grace
            // from now.
            let cleaned = self
                .clean_up_elsewhere(grace, crate::writer::now_seconds(), progress)
                .await?;
            if !cleaned {
                return Err(StoreError::invalid(format!(
                    "{user} is on shard {} already",
                    self.report.to
                )));
            }
            self.report.resumed = true;
            return Ok(self.report.clone());
        }
        let marked = self
            .directory
            .execute(
                "UPDATE directory_users SET state = 'moving', move_to = $2
                 WHERE name = $1 AND (state = 'active' OR (state = 'moving' AND move_to = $2))",
                &[&user, &self.report.to],
            )
            .await
            .map_err(|e| db_error("mark the move in the directory", &e))?;
        if marked != 1 {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("{user} changed in the directory meanwhile; try again"),
            ));
        }
        let source_state = read::user(&self.source, user).await?.map(|(_, s)| s);
        let (source_id, target_id, mut copied_seq) = match source_state.as_deref() {
            Some("active") => {
                // From the start: whatever an earlier attempt left goes.
                self.refuse_if_served_on_target().await?;
                delete_user_rows(&self.target, user, None).await?;
                self.copy(progress).await?
            }
            Some("moved_out") => {
                // Switched by an earlier run: finish it.
                self.report.resumed = true;
                let source_id = self.id_on(true).await?;
                let (target_id, seq) = self.target_position().await?;
                (source_id, target_id, seq)
            }
            _ => {
                return Err(StoreError::corrupt(format!(
                    "the directory puts {user} on shard {}, which has no account of that name",
                    self.report.from
                )));
            }
        };
        if !self.report.resumed {
            for round in 0..ROUNDS_MAX {
                let limit = self.step_limit() * 10;
                let applied =
                    bounded(limit, self.catch_up(source_id, target_id, copied_seq)).await?;
                copied_seq = applied.1;
                progress(&MoveProgress {
                    phase: "catch-up",
                    done: self.report.records_caught_up,
                    total: 0,
                });
                if applied.0 < SMALL_REMAINDER || round + 1 == ROUNDS_MAX {
                    break;
                }
            }
        }
        progress(&MoveProgress {
            phase: "switch",
            done: 0,
            total: 0,
        });
        let started = Instant::now();
        if !self.report.resumed {
            let limit = self.step_limit();
            bounded(limit, self.switch_source(source_id)).await?;
        }
        // Writers of the user wait from here until the directory moves.
        progress(&MoveProgress {
            phase: "switched",
            done: 0,
            total: 0,
        });
        // Whatever the source committed before the switch (all of it, now
        // that no writer of the user commits there).
        loop {
            let limit = self.step_limit() * 10;
            let (applied, seq) =
                bounded(limit, self.catch_up(source_id, target_id, copied_seq)).await?;
            copied_seq = seq;
            if applied == 0 {
                break;
            }
        }
        // Each step must find what the move left: anything else means the
        // move lost its grip (nothing is deleted then).
        let limit = self.step_limit();
        let served = bounded(limit, async {
            self.target
                .execute(
                    "UPDATE users SET state = 'active' WHERE id = $1 AND state IN ('moving_in', 'active')",
                    &[&target_id],
                )
                .await
                .map_err(|e| db_error("serve the user on the target", &e))
        })
        .await?;
        if served != 1 {
            return Err(StoreError::corrupt(format!(
                "the copy of {user} on shard {} is gone; the source is switched: restore its row (state 'active') and move again",
                self.report.to
            )));
        }
        let pointed = bounded(limit, async {
            self.directory
                .execute(
                    "UPDATE directory_users SET shard = $2, state = 'active', move_to = NULL,
                         moves = moves + 1
                     WHERE name = $1 AND state = 'moving' AND move_to = $2",
                    &[&user, &self.report.to],
                )
                .await
                .map_err(|e| db_error("point the directory at the target", &e))
        })
        .await?;
        if pointed != 1 {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!(
                    "the directory's row of {user} changed during the move; nothing was deleted"
                ),
            ));
        }
        self.report.switch_ms = started.elapsed().as_millis() as u64;
        self.announce().await;
        // The grace counts from now: until the directory changed, every node
        // routed the user to the source.
        self.clean_up_elsewhere(grace, crate::writer::now_seconds(), progress)
            .await?;
        Ok(self.report.clone())
    }

    /// Refuses to overwrite an account the target serves.
    async fn refuse_if_served_on_target(&self) -> Result<()> {
        match read::user(&self.target, self.user).await? {
            Some((_, state)) if state == "active" => Err(StoreError::corrupt(format!(
                "shard {} serves an account named {} already, and the directory puts that user on {}: not overwritten",
                self.report.to, self.user, self.report.from
            ))),
            _ => Ok(()),
        }
    }

    /// The user's id on the source (`moved_out`: after the switch).
    async fn id_on(&self, moved_out: bool) -> Result<i64> {
        match read::user(&self.source, self.user).await? {
            Some((id, state)) if (state == "moved_out") == moved_out => Ok(id),
            _ => Err(StoreError::new(
                ErrorKind::Conflict,
                format!("{} changed on the source meanwhile", self.user),
            )),
        }
    }

    /// The target's id of the user and the last change it holds.
    async fn target_position(&self) -> Result<(i64, i64)> {
        let row = self
            .target
            .query_opt(
                "SELECT id, last_seq FROM users WHERE name = $1 AND state IN ('moving_in', 'active')",
                &[&self.user],
            )
            .await
            .map_err(|e| db_error("read the target's copy", &e))?
            .ok_or_else(|| {
                StoreError::corrupt(format!(
                    "the source has switched {} but shard {} holds no copy: restore the source's row (state 'active') and move again",
                    self.user, self.report.to
                ))
            })?;
        Ok((row.get(0), row.get(1)))
    }

    /// Copies the user as of one snapshot of the source. Returns the
    /// source's id, the target's id and the last change copied.
    async fn copy(
        &mut self,
        progress: &mut (dyn FnMut(&MoveProgress) + Send),
    ) -> Result<(i64, i64, i64)> {
        let user = self.user;
        let source = self
            .source
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(|e| db_error("open the source's snapshot", &e))?;
        let row = source
            .query_one(
                "SELECT id, last_seq, usage_bytes, usage_messages FROM users WHERE name = $1",
                &[&user],
            )
            .await
            .map_err(|e| db_error("read the user on the source", &e))?;
        let (source_id, last_seq, usage_bytes, messages): (i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        self.report.messages = messages.max(0) as u64;
        let target = self
            .target
            .transaction()
            .await
            .map_err(|e| db_error("open the target's transaction", &e))?;
        let target_id: i64 = target
            .query_one("SELECT nextval('user_ids')", &[])
            .await
            .map_err(|e| db_error("take an id on the target", &e))?
            .get(0);
        // The account row: the target's id, not served until the switch.
        let columns = table_columns(&target, "users").await?;
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "id" => format!("{target_id}::bigint"),
                "state" => "'moving_in'::text".to_string(),
                other => quote(other),
            })
            .collect();
        copy_rows(
            &source,
            &target,
            "users",
            &columns,
            &format!(
                "SELECT {} FROM users WHERE id = {source_id}",
                select.join(", ")
            ),
        )
        .await?;
        let total = usage_bytes.max(0) as u64;
        progress(&MoveProgress {
            phase: "copy",
            done: 0,
            total,
        });
        // Contents first (messages name them), those the target lacks.
        let hashes: Vec<Vec<u8>> = source
            .query(
                "SELECT DISTINCT blob FROM messages WHERE user_id = $1",
                &[&source_id],
            )
            .await
            .map_err(|e| db_error("list the user's contents", &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for chunk in hashes.chunks(BLOBS_PER_CHUNK) {
            let copied = copy_blobs(&source, &target, chunk).await?;
            self.report.blobs_copied += copied.0;
            self.report.bytes_copied += copied.1;
            progress(&MoveProgress {
                phase: "copy",
                done: self.report.bytes_copied.min(total),
                total,
            });
        }
        for (table, key) in USER_TABLES {
            let columns = table_columns(&target, table).await?;
            let select: Vec<String> = columns
                .iter()
                .map(|c| {
                    if c == key {
                        format!("{target_id}::bigint")
                    } else {
                        quote(c)
                    }
                })
                .collect();
            copy_rows(
                &source,
                &target,
                table,
                &columns,
                &format!(
                    "SELECT {} FROM {table} WHERE {key} = {source_id}",
                    select.join(", ")
                ),
            )
            .await?;
        }
        // Grants this user made, as the source lists them for LIST.
        let columns = table_columns(&target, "acl_grants").await?;
        let select: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        copy_rows(
            &source,
            &target,
            "acl_grants",
            &columns,
            &format!(
                "SELECT {} FROM acl_grants WHERE owner = {}",
                select.join(", "),
                literal(user)
            ),
        )
        .await?;
        source
            .commit()
            .await
            .map_err(|e| db_error("close the source's snapshot", &e))?;
        target
            .commit()
            .await
            .map_err(|e| db_error("commit the copy", &e))?;
        progress(&MoveProgress {
            phase: "copy",
            done: total,
            total,
        });
        Ok((source_id, target_id, last_seq))
    }

    /// Applies the source's changes after `after` to the target, one
    /// round (at most `RECORDS_PER_ROUND`), in one target transaction:
    /// records, their log rows and `last_seq` together. Returns how many
    /// and the last seq applied.
    async fn catch_up(
        &mut self,
        source_id: i64,
        target_id: i64,
        after: i64,
    ) -> Result<(usize, i64)> {
        let Mover {
            source,
            target,
            report,
            limits,
            user,
            ..
        } = self;
        let rows = source
            .query(
                "SELECT seq, at, record FROM changes WHERE user_id = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&source_id, &after, &RECORDS_PER_ROUND],
            )
            .await
            .map_err(|e| db_error("read the source's changes", &e))?;
        if rows.is_empty() {
            return Ok((0, after));
        }
        let target = target
            .transaction()
            .await
            .map_err(|e| db_error("open the target's transaction", &e))?;
        let mut last = after;
        for row in &rows {
            let (seq, at, text): (i64, i64, String) = (row.get(0), row.get(1), row.get(2));
            let record: Record = serde_json::from_str(&text).map_err(|e| {
                StoreError::corrupt(format!("change {seq} of {user} on the source: {e}"))
            })?;
            if let Record::MessageAdded {
                mailbox, uid, blob, ..
            } = &record
            {
                let summary = summary_for(
                    source,
                    &target,
                    limits,
                    report,
                    (source_id, mailbox, *uid),
                    blob,
                )
                .await?;
                apply::apply(&target, Some(target_id), &record, Some((&summary, &[]))).await?;
            } else {
                apply::apply(&target, Some(target_id), &record, None).await?;
            }
            target
                .execute(
                    "INSERT INTO changes (user_id, seq, at, record) VALUES ($1, $2, $3, $4)",
                    &[&target_id, &seq, &at, &text],
                )
                .await
                .map_err(|e| db_error("log a change on the target", &e))?;
            last = seq;
        }
        target
            .execute(
                "UPDATE users SET last_seq = $2 WHERE id = $1",
                &[&target_id, &last],
            )
            .await
            .map_err(|e| db_error("advance the target's log", &e))?;
        target
            .commit()
            .await
            .map_err(|e| db_error("commit a catch-up round", &e))?;
        report.records_caught_up += rows.len() as u64;
        Ok((rows.len(), last))
    }

    /// The switch: under the user's lock on the source, the account stops
    /// being served there.
    async fn switch_source(&mut self, source_id: i64) -> Result<()> {
        let tx = self
            .source
            .transaction()
            .await
            .map_err(|e| db_error("open the switch", &e))?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &self.user],
        )
        .await
        .map_err(|e| db_error("take the user's lock on the source", &e))?;
        let switched = tx
            .execute(
                "UPDATE users SET state = 'moved_out', moved_at = $2
                 WHERE id = $1 AND state = 'active'",
                &[&source_id, &crate::writer::now_seconds()],
            )
            .await
            .map_err(|e| db_error("switch the source", &e))?;
        if switched != 1 {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("{} changed on the source meanwhile", self.user),
            ));
        }
        tx.commit()
            .await
            .map_err(|e| db_error("commit the switch", &e))
    }

    /// Tells every node (on the directory, which every node hears).
    async fn announce(&self) {
        let key = format!("{}{}", crate::pg::listen::MOVED_KEY, self.user);
        if let Err(e) = crate::pg::listen::announce(&self.directory, &[key]).await {
            tracing::warn!(event = "move_announce_failed", error = %e, "nodes learn of the move within their route cache's lifetime");
        }
    }

    /// Deletes what earlier moves of the user left on shards other than the
    /// one the directory names, once `grace` has passed since `pointed`
    /// (when the directory came to name it) and since the switch (waiting
    /// for it). Whether there was anything.
    async fn clean_up_elsewhere(
        &mut self,
        grace: Duration,
        pointed: i64,
        progress: &mut (dyn FnMut(&MoveProgress) + Send),
    ) -> Result<bool> {
        let mut cleaned = false;
        for (index, shard) in self.shards.list.iter().enumerate() {
            if index == self.to {
                continue;
            }
            let client = if index == self.from {
                None
            } else {
                Some(connect(&shard.pg).await?)
            };
            let client: &Client = client.as_ref().unwrap_or(&self.source);
            let left = client
                .query_opt(
                    "SELECT coalesce(moved_at, 0) FROM users WHERE name = $1 AND state = 'moved_out'",
                    &[&self.user],
                )
                .await
                .map_err(|e| db_error("look for a moved account's rows", &e))?;
            let Some(row) = left else { continue };
            let moved_at: i64 = row.get(0);
            let until = moved_at.max(pointed).saturating_add(grace.as_secs() as i64);
            loop {
                let now = crate::writer::now_seconds();
                if now >= until {
                    break;
                }
                progress(&MoveProgress {
                    phase: "grace",
                    done: grace.as_secs().saturating_sub((until - now) as u64),
                    total: grace.as_secs(),
                });
                tokio::time::sleep(
                    Duration::from_secs(1).min(Duration::from_secs((until - now) as u64)),
                )
                .await;
            }
            progress(&MoveProgress {
                phase: "clean-up",
                done: 0,
                total: 0,
            });
            bounded(
                self.step_limit() * 10,
                delete_user_rows(client, self.user, Some("moved_out")),
            )
            .await?;
            cleaned = true;
        }
        Ok(cleaned)
    }
}

/// The summary of a message a catch-up adds (`message`: the source's user
/// id, mailbox and UID): the source's own when it still holds the message,
/// else parsed from the content (copied to the target first, when it lacks
/// it).
async fn summary_for(
    source: &Client,
    target: &tokio_postgres::Transaction<'_>,
    limits: &mime::Limits,
    report: &mut MoveReport,
    message: (i64, &str, u32),
    blob: &BlobHash,
) -> Result<mime::Summary> {
    let (source_id, mailbox, uid) = message;
    let copied = copy_blobs(source, target, &[blob.0.to_vec()]).await?;
    report.blobs_copied += copied.0;
    report.bytes_copied += copied.1;
    let cached = source
        .query_opt(
            "SELECT summary FROM message_cache WHERE user_id = $1 AND mailbox = $2 AND uid = $3",
            &[&source_id, &mailbox, &i64::from(uid)],
        )
        .await
        .map_err(|e| db_error("read a summary on the source", &e))?;
    if let Some(row) = cached
        && let Ok(summary) = serde_json::from_slice::<mime::Summary>(row.get::<_, &[u8]>(0))
    {
        return Ok(summary);
    }
    match blobs::get(target, blob).await {
        Ok(bytes) => Ok(mime::summarize(&bytes, limits)),
        // Lost before the move: indexed anyway, as an import does.
        Err(e) if e.kind == ErrorKind::Corrupt => Ok(mime::summarize(b"", limits)),
        Err(e) => Err(e),
    }
}

/// Deletes every row of the account named `user` on one shard (only one in
/// `state`, when given), in one transaction. Contents stay for GC.
async fn delete_user_rows(client: &Client, user: &str, state: Option<&str>) -> Result<()> {
    let found = client
        .query_opt(
            "SELECT id FROM users WHERE name = $1 AND ($2::text IS NULL OR state = $2)",
            &[&user, &state],
        )
        .await
        .map_err(|e| db_error("find the account's rows", &e))?;
    let Some(row) = found else {
        return Ok(());
    };
    let id: i64 = row.get(0);
    let mut statements = String::from("BEGIN;");
    for (table, key) in USER_TABLES.iter().rev() {
        statements.push_str(&format!("DELETE FROM {table} WHERE {key} = {id};"));
    }
    statements.push_str(&format!(
        "DELETE FROM acl_grants WHERE owner = {};",
        literal(user)
    ));
    statements.push_str(&format!("DELETE FROM users WHERE id = {id}; COMMIT;"));
    client
        .batch_execute(&statements)
        .await
        .map_err(|e| db_error("delete the account's rows", &e))
}

/// A table's columns in order, as the target has them.
async fn table_columns(client: &impl GenericClient, table: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1
             ORDER BY ordinal_position",
            &[&table],
        )
        .await
        .map_err(|e| db_error("read a table's columns", &e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A column name quoted for SQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A text literal for SQL (COPY takes no parameters).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Streams the rows `select` reads on the source into `table` on the
/// target, in PostgreSQL's binary COPY format (no parsing in between).
async fn copy_rows(
    source: &tokio_postgres::Transaction<'_>,
    target: &tokio_postgres::Transaction<'_>,
    table: &str,
    columns: &[String],
    select: &str,
) -> Result<u64> {
    let out = source
        .copy_out(&format!("COPY ({select}) TO STDOUT (FORMAT binary)"))
        .await
        .map_err(|e| db_error(&format!("read {table} on the source"), &e))?;
    let list: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let sink = target
        .copy_in(&format!(
            "COPY {table} ({}) FROM STDIN (FORMAT binary)",
            list.join(", ")
        ))
        .await
        .map_err(|e| db_error(&format!("write {table} on the target"), &e))?;
    futures_util::pin_mut!(out);
    futures_util::pin_mut!(sink);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.map_err(|e| db_error(&format!("read {table} on the source"), &e))?;
        sink.send(chunk)
            .await
            .map_err(|e| db_error(&format!("write {table} on the target"), &e))?;
    }
    sink.as_mut()
        .finish()
        .await
        .map_err(|e| db_error(&format!("write {table} on the target"), &e))
}

/// Copies the contents of `hashes` the target lacks, each checked against
/// its hash on the way. Returns how many and their bytes.
async fn copy_blobs(
    source: &impl crate::pg::db::Db,
    target: &impl crate::pg::db::Db,
    hashes: &[Vec<u8>],
) -> Result<(u64, u64)> {
    let present = blobs::known(target, hashes).await?;
    let missing: Vec<&Vec<u8>> = hashes.iter().filter(|h| !present.contains(h)).collect();
    if missing.is_empty() {
        return Ok((0, 0));
    }
    let rows = blobs::get_rows(source, &missing).await?;
    let mut bytes = 0u64;
    for row in &rows {
        // A content whose bytes do not match its hash is not spread to
        // another shard; one noted lost (no bytes) moves as lost, so its
        // messages keep answering as damaged there.
        let lost = row.size == 0 && row.data.is_empty();
        if !lost && BlobHash::of(&row.data).0.as_slice() != row.hash.as_slice() {
            return Err(StoreError::corrupt(format!(
                "a content on the source does not match its hash {}",
                hex_of(&row.hash)
            )));
        }
        bytes += row.data.len() as u64;
        blobs::put_row(target, row).await?;
    }
    Ok((rows.len() as u64, bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
