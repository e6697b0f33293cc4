//! Reconstruct: check every derived structure against the authoritative data
//! (the journal and the blobs) and repair it, online, while clients use the
//! mailboxes. Modelled on Cyrus's `reconstruct` and Dovecot's `force-resync`.
//!
//! For each user:
//! 1. The user's records are read from the journal (read-only and tolerant: a
//!    damaged frame is reported with its file and byte, the reader resyncs on
//!    the next good frame, and the records lost in between are taken from the
//!    commit blocks in the packs when they hold a copy).
//! 2. In one read snapshot of the user's index (`applied_lsn` = L), the
//!    records up to L are replayed into a scratch in-memory index with the same
//!    [`index::apply`] the writer and recovery use: the truth at L. Mailboxes,
//!    message rows (checksums included), tombstones, subscriptions,
//!    annotations (METADATA) and quota counters are compared with it.
//! 3. Every message's blob is read (throttled by `read_bytes_per_sec`) and
//!    verified against its hash, and its cache entry is compared with one
//!    derived afresh: damaged, swapped and stale entries are all found.
//! 4. Without `check_only`, the differences go to the writer as
//!    [`Intent::Repair`]s, a few hundred fixes each, guarded by the mailbox
//!    state they were computed from (a mailbox that changed meanwhile is
//!    checked again). A repair writes no journal record: it makes derived data
//!    say what the journal already says, so there is nothing for replication
//!    to ship, and a second run finds nothing and writes nothing.
//!
//! What is never done: a row the journal cannot vouch for is only dropped when
//! the journal read was complete (with records lost to damage, nothing is
//! dropped); UIDNEXT and HIGHESTMODSEQ never go down; a message whose blob is
//! missing or corrupt stays listed (it answers `NO [UNAVAILABLE]`) and is
//! reported as lost.

use crate::error::{ErrorKind, Result, StoreError};
use crate::index::{self, MailboxInfo, MessageMeta};
use crate::intent::{Fix, Intent, Outcome, RepairGuard};
use crate::journal;
use crate::metadata::{self, MetadataValue};
use crate::record::{Entry, Lsn};
use crate::store::Store;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// One user (canonical name), or every user.
    pub user: Option<String>,
    /// One mailbox of that user, by name.
    pub mailbox: Option<String>,
    /// One mailbox by its id (the background repairer's form).
    pub mailbox_id: Option<String>,
    /// Report only; change nothing.
    pub check_only: bool,
    /// Blob and journal bytes read per second at most (0: unthrottled).
    pub read_bytes_per_sec: u64,
}

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub user: Option<String>,
    pub mailbox: Option<String>,
    pub uid: Option<u32>,
    pub kind: &'static str,
    pub detail: String,
    pub repaired: bool,
}

/// Details kept in a report at most (the counts stay exact).
pub const DETAILS_MAX: usize = 10_000;
/// Fixes sent to the writer in one repair (the writer is held for one batch).
const FIXES_PER_REPAIR: usize = 256;
/// Times a mailbox is checked again when it changed under a repair.
const CONFLICT_RETRIES: usize = 5;

/// The outcome of a run. `problems` and `repaired` are counts; `details` the
/// first [`DETAILS_MAX`] problems.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub problems: u64,
    pub repaired: u64,
    /// Messages whose content is gone (blob missing or corrupt, no copy).
    pub lost: u64,
    pub users: u64,
    pub mailboxes: u64,
    pub messages: u64,
    pub blob_bytes_read: u64,
    pub journal_bytes_read: u64,
    pub elapsed_ms: u64,
    pub check_only: bool,
    pub details: Vec<Problem>,
}

impl Problem {
    /// A problem of `user`'s, not repaired (yet).
    fn found(
        user: &str,
        mailbox: Option<&str>,
        uid: Option<u32>,
        kind: &'static str,
        detail: String,
    ) -> Problem {
        Problem {
            user: Some(user.to_string()),
            mailbox: mailbox.map(str::to_string),
            uid,
            kind,
            detail,
            repaired: false,
        }
    }
}

impl Report {
    fn add(&mut self, problem: Problem) {
        self.problems += 1;
        if problem.repaired {
            self.repaired += 1;
        }
        if self.details.len() < DETAILS_MAX {
            self.details.push(problem);
        }
    }

    /// Nothing wrong, or everything repaired.
    pub fn clean(&self) -> bool {
        self.problems == self.repaired
    }
}

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Progress {
    pub phase: String,
    pub done: u64,
    pub total: u64,
}

/// Keeps reads under a rate: after each read, sleeps until the bytes so far
/// fit the budget. The sleep is the throttle itself, on the reconstruct's own
/// thread, so users' commands never wait for it.
struct Throttle {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        Throttle {
            rate,
            started: Instant::now(),
            bytes: 0,
        }
    }

    fn consume(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// The journal as reconstruct reads it: each user's records, and damage found.
struct JournalRead {
    records: HashMap<String, Vec<Entry>>,
    /// One past the last LSN read.
    end: Lsn,
    /// Records lost to damage that no commit block covers: the truth is
    /// incomplete, so nothing is dropped from the indexes.
    incomplete: bool,
}

impl Store {
    /// Runs reconstruct (see the module documentation). Blocking: run it on a
    /// thread of its own. `progress` is called now and then.
    pub fn reconstruct(&self, options: &Options, progress: &dyn Fn(Progress)) -> Result<Report> {
        let started = Instant::now();
        let mut report = Report {
            check_only: options.check_only,
            ..Report::default()
        };
        let mut throttle = Throttle::new(options.read_bytes_per_sec);
        let users: Vec<String> = match &options.user {
            Some(user) => {
                if !self.user_exists(user)? {
                    return Err(StoreError::not_found(format!("no such user {user}")));
                }
                vec![user.clone()]
            }
            None => self.users()?,
        };
        if let Some(shards) = self.shards() {
            self.reconstruct_pg(
                shards,
                &users,
                options,
                &mut throttle,
                &mut report,
                progress,
            );
            progress(Progress {
                phase: "done".into(),
                done: users.len() as u64,
                total: users.len() as u64,
            });
            report.blob_bytes_read = throttle.bytes;
            report.elapsed_ms = started.elapsed().as_millis() as u64;
            return Ok(report);
        }
        progress(Progress {
            phase: "journal".into(),
            done: 0,
            total: users.len() as u64,
        });
        let groups = group_users(self, &users, &mut throttle, &mut report)?;
        let mut done = 0u64;
        for (g, group) in groups.iter().enumerate() {
            let wanted: BTreeSet<String> = group.iter().cloned().collect();
            // Damage is reported by the first pass only; later ones read the same bytes.
            let mut later = Report::default();
            let journal = read_journal(
                self,
                &wanted,
                &mut throttle,
                if g == 0 { &mut report } else { &mut later },
                options,
            )?;
            report.journal_bytes_read += later.journal_bytes_read;
            self.check_users(
                group,
                &journal,
                options,
                &mut throttle,
                &mut report,
                &mut done,
                users.len() as u64,
                progress,
            );
        }
        progress(Progress {
            phase: "done".into(),
            done: users.len() as u64,
            total: users.len() as u64,
        });
        report.blob_bytes_read = throttle.bytes - report.journal_bytes_read;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Reconstruct on PostgreSQL (`pg::repair`): each user's rows against
    /// their change log, read in one snapshot of their shard.
    fn reconstruct_pg(
        &self,
        shards: &crate::pg::shards::Shards,
        users: &[String],
        options: &Options,
        throttle: &mut Throttle,
        report: &mut Report,
        progress: &dyn Fn(Progress),
    ) {
        for (done, user) in users.iter().enumerate() {
            progress(Progress {
                phase: "users".into(),
                done: done as u64,
                total: users.len() as u64,
            });
            // Repairs made on the shard a user is leaving, after the move's
            // copy was read, would not follow them: their turn comes after.
            if shards.sharded()
                && let Ok(Some(entry)) = shards.entry(user)
                && entry.state == "moving"
            {
                report.add(Problem {
                    user: Some(user.clone()),
                    mailbox: None,
                    uid: None,
                    kind: "busy",
                    detail: "the user is being moved to another shard; run again after the move"
                        .into(),
                    repaired: false,
                });
                report.users += 1;
                continue;
            }
            let mut attempt = 0;
            loop {
                let checked = (|| {
                    let shard = shards.route_existing(user)?;
                    let pg = shards.pg(shard);
                    let snapshot = pg.block(async {
                        let mut conn = pg.client().await?;
                        let read = async {
                            let id = crate::pg::read::user_id(&**conn, user).await?;
                            crate::pg::repair::snapshot(&mut conn, id).await
                        };
                        // A user's whole mail in one snapshot: longer than
                        // one read may take.
                        let answered = tokio::time::timeout(pg.query_timeout * 10, read).await;
                        pg.answered(conn, answered)
                    })?;
                    let journal = JournalRead {
                        records: HashMap::new(),
                        end: snapshot.last_seq.max(0) as u64 + 1,
                        incomplete: false,
                    };
                    compare(
                        self,
                        user,
                        &snapshot.records,
                        &journal,
                        &snapshot.live,
                        options,
                        throttle,
                        report,
                    )
                })();
                match checked {
                    Err(e) if e.kind == ErrorKind::Conflict && attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                    }
                    Err(e) => {
                        let busy = e.kind == ErrorKind::Conflict;
                        report.add(Problem {
                            user: Some(user.clone()),
                            mailbox: None,
                            uid: None,
                            kind: if busy { "busy" } else { "rows_unreadable" },
                            detail: if busy {
                                format!(
                                    "the mailboxes changed under {CONFLICT_RETRIES} repairs in a row; run again"
                                )
                            } else {
                                e.to_string()
                            },
                            repaired: false,
                        });
                        break;
                    }
                    Ok(()) => break,
                }
            }
            report.users += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn check_users(
        &self,
        users: &[String],
        journal: &JournalRead,
        options: &Options,
        throttle: &mut Throttle,
        report: &mut Report,
        done: &mut u64,
        total: u64,
        progress: &dyn Fn(Progress),
    ) {
        for user in users {
            progress(Progress {
                phase: "users".into(),
                done: *done,
                total,
            });
            *done += 1;
            let records = journal.records.get(user).map_or(&[][..], Vec::as_slice);
            let mut attempt = 0;
            loop {
                match check_user(self, user, records, journal, options, throttle, report) {
                    Err(e) if e.kind == ErrorKind::Conflict && attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                    }
                    Err(e) if e.kind == ErrorKind::Conflict => {
                        report.add(Problem {
                            user: Some(user.clone()),
                            mailbox: None,
                            uid: None,
                            kind: "busy",
                            detail: format!(
                                "the mailboxes changed under {CONFLICT_RETRIES} repairs in a row; run again"
                            ),
                            repaired: false,
                        });
                        break;
                    }
                    Err(e)
                        if e.kind == ErrorKind::Corrupt
                            && !options.check_only
                            && attempt < CONFLICT_RETRIES =>
                    {
                        // SQLite says the file is not a database (or is malformed):
                        // keep it aside for a look, and recreate it from the journal.
                        attempt += 1;
                        let path = self.paths().user_index(user);
                        let aside = path.with_extension(format!(
                            "sqlite.damaged-{}",
                            crate::writer::now_seconds()
                        ));
                        tracing::error!(event = "index_damaged", user = %user, error = %e, moved_to = %aside.display(), "user index unreadable; recreating it online");
                        for suffix in ["", "-wal", "-shm"] {
                            let _ = std::fs::rename(
                                format!("{}{suffix}", path.display()),
                                format!("{}{suffix}", aside.display()),
                            );
                        }
                    }
                    Err(e) => {
                        report.add(Problem {
                            user: Some(user.clone()),
                            mailbox: None,
                            uid: None,
                            kind: "index_unreadable",
                            detail: e.to_string(),
                            repaired: false,
                        });
                        break;
                    }
                    Ok(()) => break,
                }
            }
            report.users += 1;
        }
    }
}

/// Journal records held in memory at once, about 200 MB: users are checked in
/// groups whose records fit, one journal pass per group.
const RECORDS_PER_PASS: u64 = 500_000;
/// Below this much journal, one pass holds everything: no counting pass.
const JOURNAL_BYTES_ONE_PASS: u64 = 128 * 1024 * 1024;

/// Splits `users` into groups whose journal records fit in memory together.
fn group_users(
    store: &Store,
    users: &[String],
    throttle: &mut Throttle,
    report: &mut Report,
) -> Result<Vec<Vec<String>>> {
    let dir = store.paths().journal_dir();
    let segments = journal::list_segments(&dir)?;
    let mut total = 0u64;
    for first in &segments {
        total += std::fs::metadata(dir.join(format!("{first:020}.log")))
            .map(|m| m.len())
            .unwrap_or(0);
    }
    if users.len() <= 1 || total <= JOURNAL_BYTES_ONE_PASS {
        return Ok(vec![users.to_vec()]);
    }
    // A counting pass: records per user, nothing kept.
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (i, first) in segments.iter().enumerate() {
        let path = dir.join(format!("{first:020}.log"));
        let data = std::fs::read(&path)
            .map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
        throttle.consume(data.len() as u64);
        report.journal_bytes_read += data.len() as u64;
        for entry in journal::scan_tolerant(&data, i + 1 == segments.len()).entries {
            if let Some(user) = entry.record.user() {
                *counts.entry(user.to_string()).or_default() += 1;
            }
        }
    }
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut held = 0u64;
    for user in users {
        let n = counts.get(user).copied().unwrap_or(0);
        if !current.is_empty() && held + n > RECORDS_PER_PASS {
            groups.push(std::mem::take(&mut current));
            held = 0;
        }
        held += n;
        current.push(user.clone());
    }
    if !current.is_empty() {
        groups.push(current);
    }
    Ok(groups)
}

/// Reads the journal read-only: every record of `users`, reporting damage.
fn read_journal(
    store: &Store,
    users: &BTreeSet<String>,
    throttle: &mut Throttle,
    report: &mut Report,
    options: &Options,
) -> Result<JournalRead> {
    let dir = store.paths().journal_dir();
    let segments = journal::list_segments(&dir)?;
    let mut records: HashMap<String, Vec<Entry>> = HashMap::new();
    let mut next: Lsn = segments.first().copied().unwrap_or(1);
    let mut gaps: Vec<(Lsn, Lsn)> = Vec::new();
    let mut damaged_segments: Vec<(PathBuf, bool)> = Vec::new();
    for (i, &first) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let path = dir.join(format!("{first:020}.log"));
        let data = std::fs::read(&path)
            .map_err(|e| StoreError::io(&format!("read {}", path.display()), e))?;
        throttle.consume(data.len() as u64);
        report.journal_bytes_read += data.len() as u64;
        let scan = journal::scan_tolerant(&data, is_last);
        for damage in &scan.damage {
            report.add(Problem {
                user: None,
                mailbox: None,
                uid: None,
                kind: "journal_damaged",
                detail: format!("{}: {damage}", path.display()),
                repaired: false,
            });
        }
        if !scan.damage.is_empty() {
            damaged_segments.push((path.clone(), is_last));
        }
        for entry in scan.entries {
            if entry.lsn < next {
                continue;
            }
            if entry.lsn > next {
                gaps.push((next, entry.lsn));
            }
            next = entry.lsn + 1;
            if let Some(user) = entry.record.user()
                && users.contains(user)
            {
                records.entry(user.to_string()).or_default().push(entry);
            }
        }
    }
    let mut incomplete = false;
    if !gaps.is_empty() {
        // Batches that wrote blobs left a copy of their records in the pack.
        let from = gaps.iter().map(|g| g.0).min().unwrap_or(1);
        let scan = crate::blobs::scan_commits(&store.paths().blobs_dir(), 1, from)?;
        let mut found: BTreeMap<Lsn, Entry> = BTreeMap::new();
        for block in &scan.blocks {
            if let Ok(entries) = journal::decode_frames(&block.frames) {
                for entry in entries {
                    if gaps.iter().any(|(a, b)| (*a..*b).contains(&entry.lsn)) {
                        found.insert(entry.lsn, entry);
                    }
                }
            }
        }
        for (from, to) in &gaps {
            let covered = (*from..*to).all(|lsn| found.contains_key(&lsn));
            report.add(Problem {
                user: None,
                mailbox: None,
                uid: None,
                kind: if covered {
                    "journal_records_recovered"
                } else {
                    "journal_records_lost"
                },
                detail: if covered {
                    format!("LSN {from} to {}: the packs hold a copy", to - 1)
                } else {
                    format!(
                        "LSN {from} to {}: no copy; rows they made are kept as the indexes have them",
                        to - 1
                    )
                },
                repaired: false,
            });
            incomplete |= !covered;
        }
        for (_, entry) in found {
            if let Some(user) = entry.record.user()
                && users.contains(user)
            {
                let list = records.entry(user.to_string()).or_default();
                let at = list.partition_point(|e| e.lsn < entry.lsn);
                list.insert(at, entry);
            }
        }
        if !options.check_only && !incomplete {
            // Every record is known again: rewrite the damaged segments that are
            // no longer written to. The one being appended to is cut and restored
            // from the packs by recovery at the next start.
            for (path, is_last) in &damaged_segments {
                if *is_last {
                    continue;
                }
                journal::restore_segment(
                    &store.paths().journal_dir(),
                    &store.paths().blobs_dir(),
                    path,
                )?;
                if let Some(p) = report.details.iter_mut().find(|p| {
                    p.kind == "journal_damaged"
                        && p.detail.starts_with(&path.display().to_string())
                        && !p.repaired
                }) {
                    p.repaired = true;
                    report.repaired += 1;
                }
            }
        }
    }
    Ok(JournalRead {
        records,
        end: next,
        incomplete,
    })
}

/// A message the truth has, and what its row needs.
struct Expected {
    meta: MessageMeta,
    /// Why the row itself must be written (`None`: only its cache is checked).
    row_problem: Option<(&'static str, String)>,
}

/// Checks (and repairs) one user. `Conflict`: a mailbox changed under a
/// repair; the caller runs it again.
fn check_user(
    store: &Store,
    user: &str,
    records: &[Entry],
    journal: &JournalRead,
    options: &Options,
    throttle: &mut Throttle,
    report: &mut Report,
) -> Result<()> {
    let path = store.paths().user_index(user);
    let problem = |mailbox: Option<&str>, uid: Option<u32>, kind, detail: String| {
        Problem::found(user, mailbox, uid, kind, detail)
    };
    let empty = path.exists()
        && index::open_existing(&path).and_then(|c| index::applied_lsn(&c))? == 0
        && !records.is_empty();
    if !path.exists() || empty {
        if options.check_only {
            report.add(problem(
                None,
                None,
                "index_missing",
                "the user's index is gone (or was never filled); reconstruct without --check, or a restart, rebuilds it".into(),
            ));
            return Ok(());
        }
        recreate(store, user, records, journal, empty)?;
    }
    let live = index::open_existing(&path)?;
    compare(
        store, user, records, journal, &live, options, throttle, report,
    )
}

/// Compares `live` (a user's index, or on PostgreSQL a scratch copy of the
/// user's rows) with the truth `records` replay to, and repairs what
/// differs (unless checking only). `Conflict`: a mailbox changed under a
/// repair; the caller runs it again.
#[allow(clippy::too_many_arguments)]
fn compare(
    store: &Store,
    user: &str,
    records: &[Entry],
    journal: &JournalRead,
    live: &rusqlite::Connection,
    options: &Options,
    throttle: &mut Throttle,
    report: &mut Report,
) -> Result<()> {
    let problem = |mailbox: Option<&str>, uid: Option<u32>, kind, detail: String| {
        Problem::found(user, mailbox, uid, kind, detail)
    };
    // The snapshot: everything below is read at one applied LSN.
    live.execute_batch("BEGIN")?;
    let snapshot = (|| -> Result<_> {
        let lsn = index::applied_lsn(live)?;
        let mut extra = Vec::new();
        if lsn >= journal.end {
            // Records committed since the journal was read.
            let dir = store.paths().journal_dir();
            journal::read_range_tolerant(&dir, journal.end, lsn, |entry| {
                if entry.record.user() == Some(user) {
                    extra.push(entry);
                }
            })?;
        }
        let truth = index::open(std::path::Path::new(":memory:"))?;
        truth.execute_batch("BEGIN")?;
        let placeholder = mime::summarize(b"", store.summary_limits());
        for entry in records.iter().chain(extra.iter()).filter(|e| e.lsn <= lsn) {
            index::apply(
                &truth,
                entry.lsn,
                &entry.record,
                Some((&placeholder, b"{}")),
            )?;
        }
        truth.execute_batch("COMMIT")?;
        let live_boxes = index::mailboxes(live)?;
        let mut boxes = Vec::new();
        for truth_box in index::mailboxes(&truth)? {
            let live_box = live_boxes.iter().find(|b| b.id == truth_box.id).cloned();
            let truth_rows = index::messages(&truth, &truth_box.id)?;
            let live_rows = match live_box {
                Some(_) => index::message_rows(live, &truth_box.id, false)?,
                None => Vec::new(),
            };
            let truth_tombs = index::tombstones(&truth, &truth_box.id)?;
            let live_tombs = index::tombstones(live, &truth_box.id)?;
            boxes.push((
                truth_box,
                live_box,
                truth_rows,
                live_rows,
                truth_tombs,
                live_tombs,
            ));
        }
        let unsupported: Vec<MailboxInfo> = live_boxes
            .into_iter()
            .filter(|b| index::mailbox_by_id(&truth, &b.id).ok().flatten().is_none())
            .collect();
        let subscriptions = (index::subscriptions(&truth)?, index::subscriptions(live)?);
        let annotations = (metadata::all(&truth)?, metadata::all(live)?);
        let acls = (crate::acl::all(&truth)?, crate::acl::all(live)?);
        let usage = index::usage(live)?;
        let counted: (i64, i64) = live.query_row(
            "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            lsn,
            boxes,
            unsupported,
            subscriptions,
            annotations,
            acls,
            usage,
            counted,
        ))
    })();
    let _ = live.execute_batch("COMMIT");
    let (
        lsn,
        boxes,
        unsupported,
        (truth_subs, live_subs),
        (truth_notes, live_notes),
        (truth_acl, live_acl),
        usage,
        counted,
    ) = snapshot?;
    let may_drop = !journal.incomplete;

    // User-wide: mailboxes the journal does not know, subscriptions, counters.
    let mut user_fixes: Vec<(Problem, Fix)> = Vec::new();
    for b in &unsupported {
        if scope_excludes(options, b) {
            continue;
        }
        if may_drop {
            user_fixes.push((
                problem(
                    Some(&b.name),
                    None,
                    "mailbox_unsupported",
                    format!(
                        "mailbox {} ({}) is in the index but not in the journal",
                        b.name, b.id
                    ),
                ),
                Fix::RemoveMailbox(b.id.clone()),
            ));
        }
    }
    if options.mailbox.is_none() && options.mailbox_id.is_none() {
        for name in truth_subs.iter().filter(|n| !live_subs.contains(n)) {
            user_fixes.push((
                problem(
                    None,
                    None,
                    "subscription_missing",
                    format!("subscription to {name}"),
                ),
                Fix::Subscribe(name.clone()),
            ));
        }
        if may_drop {
            for name in live_subs.iter().filter(|n| !truth_subs.contains(n)) {
                user_fixes.push((
                    problem(
                        None,
                        None,
                        "subscription_unsupported",
                        format!("subscription to {name}"),
                    ),
                    Fix::Unsubscribe(name.clone()),
                ));
            }
        }
        // Annotations (METADATA), keyed by mailbox id and entry.
        for ((mailbox, entry), value) in &truth_notes {
            if live_notes.get(&(mailbox.clone(), entry.clone())) == Some(value) {
                continue;
            }
            user_fixes.push((
                problem(
                    None,
                    None,
                    "metadata_wrong",
                    format!("annotation {entry} of mailbox {mailbox:?} missing or wrong"),
                ),
                Fix::PutMetadata {
                    mailbox: mailbox.clone(),
                    entry: entry.clone(),
                    value: Some(MetadataValue(value.clone())),
                },
            ));
        }
        if may_drop {
            for (mailbox, entry) in live_notes.keys() {
                if truth_notes.contains_key(&(mailbox.clone(), entry.clone())) {
                    continue;
                }
                user_fixes.push((
                    problem(
                        None,
                        None,
                        "metadata_unsupported",
                        format!("annotation {entry} of mailbox {mailbox:?}"),
                    ),
                    Fix::PutMetadata {
                        mailbox: mailbox.clone(),
                        entry: entry.clone(),
                        value: None,
                    },
                ));
            }
        }
    }
    if options.mailbox.is_none() && options.mailbox_id.is_none() {
        // Access control lists, keyed by mailbox id and identifier.
        for (mailbox, identifier, rights) in &truth_acl {
            if live_acl
                .iter()
                .any(|(m, i, r)| m == mailbox && i == identifier && r == rights)
            {
                continue;
            }
            user_fixes.push((
                problem(
                    None,
                    None,
                    "acl_wrong",
                    format!("ACL entry {identifier} of mailbox {mailbox:?} missing or wrong"),
                ),
                Fix::PutAcl {
                    mailbox: mailbox.clone(),
                    identifier: identifier.clone(),
                    rights: Some(rights.clone()),
                },
            ));
        }
        if may_drop {
            for (mailbox, identifier, _) in &live_acl {
                if truth_acl
                    .iter()
                    .any(|(m, i, _)| m == mailbox && i == identifier)
                {
                    continue;
                }
                user_fixes.push((
                    problem(
                        None,
                        None,
                        "acl_unsupported",
                        format!("ACL entry {identifier} of mailbox {mailbox:?}"),
                    ),
                    Fix::PutAcl {
                        mailbox: mailbox.clone(),
                        identifier: identifier.clone(),
                        rights: None,
                    },
                ));
            }
        }
    }
    // The counters are compared with the rows as they stand; rows repaired
    // below keep them right through the triggers.
    if (usage.0 as i64, usage.1 as i64) != counted {
        user_fixes.push((
            problem(
                None,
                None,
                "usage_wrong",
                format!(
                    "quota usage {} bytes / {} messages, the messages add up to {} / {}",
                    usage.0, usage.1, counted.0, counted.1
                ),
            ),
            Fix::RecountUsage,
        ));
    }
    submit(
        store,
        user,
        RepairGuard::AppliedLsn(lsn),
        user_fixes,
        options,
        report,
    )?;

    for (truth_box, live_box, truth_rows, live_rows, truth_tombs, live_tombs) in boxes {
        if scope_excludes(options, &truth_box) {
            continue;
        }
        report.mailboxes += 1;
        let name = truth_box.name.clone();
        let guard = RepairGuard::Mailbox {
            id: truth_box.id.clone(),
            seen: live_box.as_ref().map(|b| (b.uid_next, b.highest_modseq)),
        };
        let mut fixes: Vec<(Problem, Fix)> = Vec::new();
        // Rows, merged by UID.
        let live_by_uid: BTreeMap<u32, &(MessageMeta, i64, Vec<u8>)> =
            live_rows.iter().map(|r| (r.0.uid, r)).collect();
        let mut expected: Vec<Expected> = Vec::new();
        let mut restate: Vec<(u32, Vec<String>)> = Vec::new();
        let mut flag_problems: Vec<Problem> = Vec::new();
        for meta in truth_rows {
            let row_problem = match live_by_uid.get(&meta.uid) {
                None => Some((
                    "message_missing",
                    "in the journal, not in the index".to_string(),
                )),
                Some((live_meta, _, _)) if live_meta.damaged => {
                    Some(("row_damaged", "index row fails its checksum".to_string()))
                }
                Some((live_meta, _, _)) => {
                    if !same_flags(&live_meta.flags, &meta.flags) {
                        // Clients may have seen the wrong flags: restate them at a
                        // new MODSEQ so that CONDSTORE/QRESYNC clients fetch them.
                        restate.push((meta.uid, meta.flags.clone()));
                        flag_problems.push(problem(
                            Some(&truth_box.name),
                            Some(meta.uid),
                            "flags_wrong",
                            format!(
                                "index has ({}), the journal says ({}); restated at a new MODSEQ",
                                live_meta.flags.join(" "),
                                meta.flags.join(" ")
                            ),
                        ));
                    }
                    let mut flags_as_index = meta.clone();
                    flags_as_index.flags = live_meta.flags.clone();
                    (!same_row(live_meta, &flags_as_index)).then(|| {
                        (
                            "row_wrong",
                            format!(
                                "index row differs from the journal's (MODSEQ {} / {}, size {} / {}, blob or dates)",
                                live_meta.modseq, meta.modseq, live_meta.size, meta.size
                            ),
                        )
                    })
                }
            };
            expected.push(Expected { meta, row_problem });
        }
        if may_drop {
            for uid in live_by_uid.keys() {
                if expected.binary_search_by_key(uid, |e| e.meta.uid).is_err() {
                    fixes.push((
                        problem(
                            Some(&name),
                            Some(*uid),
                            "message_unsupported",
                            "in the index, not in the journal".into(),
                        ),
                        Fix::RemoveMessage {
                            mailbox: truth_box.id.clone(),
                            uid: *uid,
                        },
                    ));
                }
            }
        }
        for (uid, modseq) in &truth_tombs {
            if live_tombs.get(uid) != Some(modseq) {
                fixes.push((
                    problem(
                        Some(&name),
                        Some(*uid),
                        "tombstone_missing",
                        format!("expunge at MODSEQ {modseq} not in the index"),
                    ),
                    Fix::PutTombstone {
                        mailbox: truth_box.id.clone(),
                        uid: *uid,
                        modseq: *modseq,
                    },
                ));
            }
        }
        if may_drop {
            for uid in live_tombs.keys().filter(|u| !truth_tombs.contains_key(u)) {
                fixes.push((
                    problem(
                        Some(&name),
                        Some(*uid),
                        "tombstone_unsupported",
                        "expunge not in the journal".into(),
                    ),
                    Fix::RemoveTombstone {
                        mailbox: truth_box.id.clone(),
                        uid: *uid,
                    },
                ));
            }
        }
        // Blobs and cache entries, in batches: read, verify, derive, compare.
        report.messages += expected.len() as u64;
        let sort_keys = index::sort_keys(live, &truth_box.id)?;
        for chunk in expected.chunks(FIXES_PER_REPAIR) {
            let uids: Vec<u32> = chunk.iter().map(|e| e.meta.uid).collect();
            let cache = index::cache_entries(live, &truth_box.id, &uids)?;
            for e in chunk {
                let (summary_json, lost) = match store.user_blob(user, &e.meta.blob) {
                    Ok(raw) => {
                        throttle.consume(raw.len() as u64);
                        let summary = mime::summarize(&raw, store.summary_limits());
                        (serde_json::to_vec(&summary).unwrap_or_default(), None)
                    }
                    Err(err) => (
                        serde_json::to_vec(&mime::summarize(b"", store.summary_limits()))
                            .unwrap_or_default(),
                        Some(err),
                    ),
                };
                if let Some(err) = &lost {
                    report.lost += 1;
                    tracing::error!(event = "message_lost", user, mailbox = %name, uid = e.meta.uid, error = %err);
                    report.add(problem(
                        Some(&name),
                        Some(e.meta.uid),
                        "blob_lost",
                        format!(
                            "blob {}: {err}; the message stays listed and answers NO [UNAVAILABLE]",
                            e.meta.blob.to_hex()
                        ),
                    ));
                }
                let put = Fix::PutMessage {
                    mailbox: truth_box.id.clone(),
                    meta: e.meta.clone(),
                    summary: summary_json.clone(),
                };
                if let Some((kind, detail)) = &e.row_problem {
                    fixes.push((
                        problem(Some(&name), Some(e.meta.uid), kind, detail.clone()),
                        put,
                    ));
                    continue;
                }
                if lost.is_some() {
                    continue;
                }
                let blob_hex = e.meta.blob.to_hex();
                let cache_problem = match cache.get(&e.meta.uid) {
                    None => None, // expunged since the snapshot
                    Some((row_blob, crc, bytes)) => {
                        if *row_blob != blob_hex || index::summary_checksum(row_blob, bytes) != *crc
                        {
                            Some((
                                "cache_damaged",
                                "cache entry fails its checksum (damaged, or another message's)",
                            ))
                        } else if *bytes != summary_json {
                            Some((
                                "cache_stale",
                                "cache entry differs from the message parsed afresh (made by another version)",
                            ))
                        } else {
                            None
                        }
                    }
                };
                // The sort keys, derived from the same summary: missing (an index
                // from before them), damaged or stale keys are put back with it.
                let keys_problem = match sort_keys.get(&e.meta.uid) {
                    _ if cache_problem.is_some() => None,
                    None if cache.contains_key(&e.meta.uid) => Some((
                        "sort_keys_missing",
                        "no sort keys (SORT and THREAD read the summary instead)",
                    )),
                    None => None,
                    Some((json, crc)) => {
                        let fresh =
                            serde_json::to_vec(&index::SortKeys::from_summary_json(&summary_json))
                                .unwrap_or_default();
                        if index::summary_checksum(&blob_hex, json) != *crc {
                            Some(("sort_keys_damaged", "sort keys fail their checksum"))
                        } else if *json != fresh {
                            Some((
                                "sort_keys_stale",
                                "sort keys differ from the message parsed afresh",
                            ))
                        } else {
                            None
                        }
                    }
                };
                if let Some((kind, detail)) = cache_problem.or(keys_problem) {
                    fixes.push((
                        problem(Some(&name), Some(e.meta.uid), kind, detail.into()),
                        put,
                    ));
                }
            }
        }
        // The mailbox row last: its UIDNEXT/HIGHESTMODSEQ are what the guard checks.
        let mailbox_problem = match &live_box {
            None => Some((
                "mailbox_missing",
                "in the journal, not in the index".to_string(),
            )),
            Some(b)
                if b.name != truth_box.name
                    || b.uid_validity != truth_box.uid_validity
                    || b.special_use != truth_box.special_use
                    || b.uid_next < truth_box.uid_next
                    || b.highest_modseq < truth_box.highest_modseq =>
            {
                Some((
                    "mailbox_wrong",
                    format!(
                        "index has {} UIDVALIDITY {} UIDNEXT {} HIGHESTMODSEQ {}, the journal says {} {} {} {}",
                        b.name,
                        b.uid_validity,
                        b.uid_next,
                        b.highest_modseq,
                        truth_box.name,
                        truth_box.uid_validity,
                        truth_box.uid_next,
                        truth_box.highest_modseq
                    ),
                ))
            }
            Some(_) => None,
        };
        // Rows first, in bounded repairs that leave the guarded state alone;
        // then, in one last repair, the flags restated (one record, which moves
        // HIGHESTMODSEQ) and the mailbox row.
        submit(store, user, guard.clone(), fixes, options, report)?;
        let mut tail: Vec<(Problem, Fix)> = Vec::new();
        if !restate.is_empty() {
            let mut problems = flag_problems.into_iter();
            let first = problems.next();
            for p in problems {
                // Reported per message; the one fix below carries them all.
                if options.check_only {
                    report.add(p);
                } else {
                    report.add(Problem {
                        repaired: true,
                        ..p
                    });
                }
            }
            if let Some(first) = first {
                tail.push((
                    first,
                    Fix::RestateFlags {
                        mailbox: truth_box.id.clone(),
                        messages: restate,
                    },
                ));
            }
        }
        if let Some((kind, detail)) = mailbox_problem {
            tail.push((
                problem(Some(&name), None, kind, detail),
                Fix::PutMailbox(truth_box.clone()),
            ));
        }
        submit(store, user, guard, tail, options, report)?;
    }
    // A recreated index is complete once every fix above went in: readers may use it.
    if !options.check_only && index::rebuilding(live)? {
        submit(
            store,
            user,
            RepairGuard::Always,
            vec![(
                problem(
                    None,
                    None,
                    "index_missing",
                    "the user's index was gone; recreated from the journal and refilled online"
                        .into(),
                ),
                Fix::Rebuilding(false),
            )],
            options,
            report,
        )?;
    }
    Ok(())
}

/// Creates a fresh index for a user whose file is gone, with the mailboxes,
/// tombstones and subscriptions the journal gives, marked as rebuilding so
/// readers keep answering `Unavailable`; the caller's normal pass then fills
/// in the messages, and clears the mark.
fn recreate(
    store: &Store,
    user: &str,
    records: &[Entry],
    journal: &JournalRead,
    remove_empty: bool,
) -> Result<()> {
    let mut extra = Vec::new();
    let mut last = journal.end.saturating_sub(1);
    journal::read_range_tolerant(
        &store.paths().journal_dir(),
        journal.end,
        Lsn::MAX,
        |entry| {
            last = last.max(entry.lsn);
            if entry.record.user() == Some(user) {
                extra.push(entry);
            }
        },
    )?;
    let truth = index::open(std::path::Path::new(":memory:"))?;
    truth.execute_batch("BEGIN")?;
    let placeholder = mime::summarize(b"", store.summary_limits());
    for entry in records.iter().chain(extra.iter()) {
        index::apply(
            &truth,
            entry.lsn,
            &entry.record,
            Some((&placeholder, b"{}")),
        )?;
    }
    truth.execute_batch("COMMIT")?;
    let mut fixes = vec![
        Fix::Rebuilding(true),
        Fix::UidValidityFloor(index::uid_validity_floor(&truth)?),
    ];
    for mailbox in index::mailboxes(&truth)? {
        for (uid, modseq) in index::tombstones(&truth, &mailbox.id)? {
            fixes.push(Fix::PutTombstone {
                mailbox: mailbox.id.clone(),
                uid,
                modseq,
            });
        }
        fixes.push(Fix::PutMailbox(mailbox));
    }
    for name in index::subscriptions(&truth)? {
        fixes.push(Fix::Subscribe(name));
    }
    for ((mailbox, entry), value) in metadata::all(&truth)? {
        fixes.push(Fix::PutMetadata {
            mailbox,
            entry,
            value: Some(MetadataValue(value)),
        });
    }
    for (mailbox, identifier, rights) in crate::acl::all(&truth)? {
        fixes.push(Fix::PutAcl {
            mailbox,
            identifier,
            rights: Some(rights),
        });
    }
    if remove_empty {
        // Created but never filled: it holds nothing, and blocks the recreate.
        let path = store.paths().user_index(user);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    match store.submit_one_blocking(Intent::Repair {
        user: user.to_string(),
        guard: RepairGuard::Recreate { at_lsn: last },
        fixes,
    })? {
        Outcome::Repaired { .. } => Ok(()),
        _ => Err(StoreError::new(
            ErrorKind::Io,
            "unexpected answer to a repair",
        )),
    }
}

/// Outside the mailbox the run was asked for.
fn scope_excludes(options: &Options, mailbox: &MailboxInfo) -> bool {
    options.mailbox.as_ref().is_some_and(|n| *n != mailbox.name)
        || options
            .mailbox_id
            .as_ref()
            .is_some_and(|id| *id != mailbox.id)
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    b.sort();
    a == b
}

/// The fields the journal decides, compared.
fn same_row(live: &MessageMeta, truth: &MessageMeta) -> bool {
    same_flags(&live.flags, &truth.flags)
        && live.modseq == truth.modseq
        && live.internal_date == truth.internal_date
        && live.internal_zone == truth.internal_zone
        && live.save_date == truth.save_date
        && live.size == truth.size
        && live.blob == truth.blob
        && live.email_id == truth.email_id
        && live.thread_id == truth.thread_id
}

/// Records the problems, and unless checking only, sends their fixes to the
/// writer in bounded repairs. A guard that no longer holds is `Conflict`.
fn submit(
    store: &Store,
    user: &str,
    guard: RepairGuard,
    fixes: Vec<(Problem, Fix)>,
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    if options.check_only || fixes.is_empty() {
        for (p, _) in fixes {
            report.add(p);
        }
        return Ok(());
    }
    // Chunks in order; the mailbox row (last) goes with the last chunk, so
    // earlier chunks do not move the state the guard checks.
    let mut fixes = fixes;
    while !fixes.is_empty() {
        let rest = fixes.split_off(fixes.len().min(FIXES_PER_REPAIR));
        let chunk = std::mem::replace(&mut fixes, rest);
        let (problems, chunk_fixes): (Vec<Problem>, Vec<Fix>) = chunk.into_iter().unzip();
        match store.submit_one_blocking(Intent::Repair {
            user: user.to_string(),
            guard: guard.clone(),
            fixes: chunk_fixes,
        }) {
            Ok(Outcome::Repaired { .. }) => {
                for mut p in problems {
                    p.repaired = true;
                    report.add(p);
                }
            }
            Ok(_) => {
                return Err(StoreError::new(
                    ErrorKind::Io,
                    "unexpected answer to a repair",
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_keeps_the_rate() {
        let mut t = Throttle::new(10_000_000);
        let start = Instant::now();
        t.consume(1_000_000);
        assert!(start.elapsed() >= Duration::from_millis(90));
        let mut free = Throttle::new(0);
        free.consume(u64::MAX / 2);
    }

    #[test]
    fn clean_means_all_repaired() {
        let mut r = Report::default();
        assert!(r.clean());
        r.add(Problem {
            user: None,
            mailbox: None,
            uid: None,
            kind: "x",
            detail: String::new(),
            repaired: true,
        });
        assert!(r.clean());
        r.add(Problem {
            user: None,
            mailbox: None,
            uid: None,
            kind: "y",
            detail: String::new(),
            repaired: false,
        });
        assert!(!r.clean());
        assert_eq!((r.problems, r.repaired), (2, 1));
    }
}
