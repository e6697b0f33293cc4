//! Administration: users, aliases, mailboxes, local delivery.
//!
//! One implementation ([`execute`]) serves two paths: while `serve` runs, the
//! CLI sends the command over the owner-only unix socket `data_dir/admin.sock`
//! (one JSON line each way), so effects are immediate; with no server running,
//! the CLI opens the store itself and calls [`execute`] directly.

use base64::Engine;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use store::{ErrorKind, Intent, Store, StoreError, canonical_user_name};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Exit codes of `postern deliver`, from sysexits.h, which LDAs use.
pub const EX_OK: i32 = 0;
pub const EX_USAGE: i32 = 64;
pub const EX_DATAERR: i32 = 65;
pub const EX_NOUSER: i32 = 67;
pub const EX_SOFTWARE: i32 = 70;
pub const EX_TEMPFAIL: i32 = 75;

/// Largest admin request on the socket (a `deliver` carries a whole message).
pub const REQUEST_BYTES_MAX: usize = 96 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum AdminCommand {
    UserAdd {
        name: String,
        password: String,
    },
    UserDel {
        name: String,
    },
    UserList,
    /// Moves a user to another PostgreSQL shard while they stay in use
    /// (`abort`: undoes a move that has not switched yet).
    UserMove {
        name: String,
        to: Option<String>,
        abort: bool,
        json: bool,
    },
    UserPasswd {
        name: String,
        password: String,
    },
    /// Shows a user's quota, after setting each resource that is not `Keep`.
    UserQuota {
        name: String,
        storage: QuotaValue,
        messages: QuotaValue,
    },
    AliasAdd {
        address: String,
        users: Vec<String>,
    },
    AliasDel {
        address: String,
    },
    AliasList,
    MailboxList {
        user: String,
    },
    /// Creates a mailbox of the "Shared" namespace (owned by
    /// [`store::SHARED_OWNER`], which is created with it the first time).
    MailboxCreateShared {
        name: String,
    },
    /// Deletes a mailbox of the "Shared" namespace, with its messages.
    MailboxDeleteShared {
        name: String,
    },
    /// The ACL of USER's MAILBOX (`#shared` for the "Shared" namespace).
    AclGet {
        user: String,
        mailbox: String,
    },
    /// Sets (`rights: Some`, with SETACL's `+`/`-` forms) or deletes an entry.
    AclSet {
        user: String,
        mailbox: String,
        identifier: String,
        rights: Option<String>,
    },
    /// Status page: open an incident (or maintenance) with its first post.
    StatusOpen {
        title: String,
        components: Vec<String>,
        impact: String,
        state: Option<String>,
        /// Maintenance window, Unix seconds.
        maintenance: Option<(i64, i64)>,
        author: String,
        text: String,
        json: bool,
    },
    /// An update (with `resolve`, the one that resolves it).
    StatusUpdate {
        incident: u64,
        state: Option<String>,
        impact: Option<String>,
        resolve: bool,
        author: String,
        text: String,
        json: bool,
    },
    StatusEdit {
        post: u64,
        author: String,
        text: String,
    },
    /// Sets a component by hand (`state: None` with `remove`: removes it).
    StatusComponent {
        name: String,
        state: Option<String>,
        note: Option<String>,
        remove: bool,
    },
    StatusList {
        json: bool,
    },
    StatusImport {
        log: String,
        year: i64,
        json: bool,
    },
    TokenAdd {
        name: String,
    },
    TokenList,
    TokenRevoke {
        name: String,
    },
    /// Runs of near-identical inbound mail the running server detected.
    SpamRuns {
        json: bool,
    },
    SpamBlocks {
        json: bool,
    },
    /// `key`: `ip:`, `net:`, `sender:`, `domain:`, `fingerprint:` or `run:`.
    SpamBlock {
        key: String,
        reason: String,
    },
    SpamUnblock {
        key: String,
    },
    /// Writes the whole store (change log and contents) to a new file.
    StoreExport {
        path: PathBuf,
        json: bool,
    },
    /// Reads an export into this store, which must be empty.
    StoreImport {
        path: PathBuf,
        json: bool,
    },
    /// Copies the embedded store in `data_dir` (its server stopped) into this
    /// one: from the start into an empty store, else from where an earlier
    /// copy of it stopped.
    StoreCopy {
        data_dir: PathBuf,
        json: bool,
    },
    /// Replication (`[replication]`): where this server stands.
    ReplicationStatus {
        json: bool,
    },
    ReplicationPromote {
        force: bool,
        json: bool,
    },
    ReplicationCheck {
        user: Option<String>,
        json: bool,
        repair: bool,
    },
    /// Sets the sync mode in force ("async" or "before-ack"), kept across restarts.
    ReplicationSync {
        mode: String,
    },
    /// Sets (`value: None`: removes) a shared server annotation (IMAP
    /// METADATA on mailbox `""`), which every logged-in user reads.
    MetadataSet {
        entry: String,
        value: Option<String>,
    },
    /// The shared server annotations below `entry` (all of them without one).
    MetadataGet {
        entry: Option<String>,
    },
    /// Status-page subscribers (email and SMS), oldest first.
    SubscriberList {
        json: bool,
    },
    /// Adds an active subscriber (no opt-in: an admin vouches for it).
    SubscriberAdd {
        email: Option<String>,
        sms: Option<String>,
    },
    SubscriberRemove {
        id: u64,
    },
    /// Checks derived data against the journal and blobs; repairs unless `check`.
    Reconstruct {
        user: Option<String>,
        mailbox: Option<String>,
        check: bool,
        json: bool,
        /// Overrides `[reconstruct] max_read_mb_per_s` for this run.
        max_read_mb_per_s: Option<u64>,
    },
    /// The message, base64 (JSON strings cannot carry arbitrary bytes).
    Deliver {
        user: String,
        message: String,
    },
    /// Reclaim space of unreferenced blobs, copying at most `bytes_max` bytes.
    Gc {
        bytes_max: u64,
    },
    /// Queue an SMS. `to` is E.164 and the text was checked against the
    /// `[sms]` segment cap by the CLI, which has the config; `summary` (segments
    /// and coding) is echoed in the answer.
    SmsSend {
        to: String,
        text: String,
        receipt: bool,
        summary: String,
    },
    /// The outbox, newest first.
    SmsList {
        limit: usize,
        json: bool,
    },
    /// Shows, sets or removes a user's new-mail alert.
    SmsAlert {
        user: String,
        action: SmsAlertAction,
    },
}

/// One quota resource in `user quota`: an explicit enum, since JSON cannot
/// tell `Some(None)` from `None`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QuotaValue {
    Keep,
    /// Back to the server default (`[quota]`).
    Default,
    Limit(u64),
}

impl QuotaValue {
    fn or(self, current: Option<u64>) -> Option<u64> {
        match self {
            QuotaValue::Keep => current,
            QuotaValue::Default => None,
            QuotaValue::Limit(n) => Some(n),
        }
    }
}

/// An explicit enum, not `Option<Option<_>>`: JSON cannot tell `Some(None)`
/// from `None`, and "remove" arrived at the server as "show".
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum SmsAlertAction {
    Show,
    Set(store::SmsAlert),
    Remove,
}

/// What a command printed and how it exited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AdminOutput {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
}

impl AdminOutput {
    pub(crate) fn ok(stdout: impl Into<String>) -> Self {
        AdminOutput {
            exit: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }
    pub(crate) fn fail(exit: i32, stderr: impl Into<String>) -> Self {
        AdminOutput {
            exit,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
    pub(crate) fn from_store(error: &StoreError) -> Self {
        let exit = match error.kind {
            ErrorKind::NotFound => EX_NOUSER,
            ErrorKind::Invalid | ErrorKind::AlreadyExists | ErrorKind::Denied => EX_DATAERR,
            ErrorKind::Io
            | ErrorKind::Unavailable
            | ErrorKind::OverQuota
            | ErrorKind::Conflict
            | ErrorKind::ReadOnly
            | ErrorKind::Moved => EX_TEMPFAIL,
            ErrorKind::Corrupt => EX_SOFTWARE,
        };
        AdminOutput::fail(exit, format!("error: {error}\n"))
    }
}

/// One outbox line: id, state, number, when queued, then what happened. The text
/// itself is shown only by `--json` (it may quote a user's mail).
fn sms_line(sms: &store::Sms) -> String {
    let when = |secs: i64| {
        delivery::rfc5322_date(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64),
        )
    };
    let detail = match sms.state.as_str() {
        "sent" | "delivered" | "undelivered" => {
            let mut d = format!("smsc ids {}", sms.smsc_ids.join(","));
            if !sms.delivery.is_empty() {
                d.push_str(&format!("; receipt: {}", sms.delivery));
            }
            d
        }
        "failed" => format!("reason: {}", sms.reason),
        _ if sms.attempts > 0 => format!(
            "{} attempts, next {}; last: {}",
            sms.attempts,
            when(sms.not_before),
            sms.reason
        ),
        _ => "waiting".to_string(),
    };
    format!(
        "{}\t{}\t{}\t{}\t{} chars\t{}\n",
        sms.id,
        sms.state,
        sms.to,
        when(sms.queued),
        sms.text.chars().count(),
        detail
    )
}

/// `store export` (`exporting`) and `store import`.
fn store_transfer(store: &Store, exporting: bool, path: &Path, json: bool) -> AdminOutput {
    let done = if exporting {
        crate::replication::export::export(store, path)
    } else {
        crate::replication::export::import(store, path)
    };
    let what = format!(
        "{} {}",
        if exporting {
            "exported to"
        } else {
            "imported from"
        },
        path.display()
    );
    transfer_output(done, json, &what, "lost before the export")
}

/// What an export, import or copy says: its summary, or why it failed.
fn transfer_output(
    done: anyhow::Result<crate::replication::export::Summary>,
    json: bool,
    what: &str,
    lost: &str,
) -> AdminOutput {
    match done {
        Ok(summary) if json => {
            AdminOutput::ok(serde_json::to_string(&summary).unwrap_or_default() + "\n")
        }
        Ok(summary) => AdminOutput::ok(format!(
            "{what}: {} records up to LSN {} of store {}, {} contents ({} bytes){}\n",
            summary.records,
            summary.upto,
            summary.source,
            summary.contents,
            summary.content_bytes,
            if summary.lost > 0 {
                format!(", {} contents {lost}", summary.lost)
            } else {
                String::new()
            }
        )),
        Err(e) => AdminOutput::fail(EX_DATAERR, format!("error: {e:#}\n")),
    }
}

/// `store copy --from`: opens the old store (taking its lock, so its server
/// must be stopped) and copies it into this one.
fn store_copy(store: &Store, data_dir: &Path, json: bool) -> AdminOutput {
    if data_dir == store.data_dir() {
        return AdminOutput::fail(EX_USAGE, "error: a store cannot be copied into itself\n");
    }
    if !data_dir.join("store.id").is_file() {
        return AdminOutput::fail(
            EX_DATAERR,
            format!(
                "error: {} holds no embedded Postern store\n",
                data_dir.display()
            ),
        );
    }
    let from = match Store::open(store::StoreConfig::new(data_dir.to_path_buf())) {
        Ok(from) => from,
        Err(e) if e.kind == ErrorKind::Unavailable => {
            return AdminOutput::fail(
                EX_TEMPFAIL,
                format!("error: {e}: stop the server of the store copied from first\n"),
            );
        }
        Err(e) => return AdminOutput::from_store(&e),
    };
    let copied = crate::replication::export::copy(store, &from);
    from.shutdown();
    let what = format!("copied from {}", data_dir.display());
    transfer_output(copied, json, &what, "unreadable in the old store")
}

fn user_arg(name: &str) -> Result<String, AdminOutput> {
    canonical_user_name(name).map_err(|e| AdminOutput::fail(EX_DATAERR, format!("error: {e}\n")))
}

/// Runs one admin command on the store. Blocking (Argon2, store waits):
/// call from a blocking thread.
/// What admin commands need to know of the configuration.
#[derive(Clone, Default)]
pub struct AdminContext {
    /// Inbound SMTP's policy, in a running server with `[smtp]`: its runs,
    /// and it reloads blocks when they change.
    pub inbound: Option<std::sync::Arc<crate::inbound::Inbound>>,
    /// `[sms]` is configured: `deliver` queues new-mail alerts like LMTP does.
    pub sms_alerts: bool,
    /// `[reconstruct] max_read_mb_per_s`, in bytes (0: unthrottled).
    pub reconstruct_bytes_per_sec: u64,
    /// `[http] subscribers_max`: admins add within the same cap.
    pub subscribers_max: u64,
    /// `[imap] metadata_max_value_bytes` and `metadata_max_entries`.
    pub metadata_limits: store::MetadataLimits,
    /// Replication, in a running server with `[replication]`.
    pub replication: Option<std::sync::Arc<crate::replication::Replication>>,
    /// `[imap] acl_max_entries`.
    pub acl_entries_max: u64,
}

impl AdminContext {
    pub fn new(config: &crate::config::Config) -> Self {
        AdminContext {
            inbound: None,
            sms_alerts: config.sms.is_some(),
            reconstruct_bytes_per_sec: config.reconstruct.max_read_mb_per_s * 1_000_000,
            subscribers_max: config
                .http
                .as_ref()
                .map_or(crate::config::HttpSection::default().subscribers_max, |h| {
                    h.subscribers_max
                }),
            metadata_limits: {
                let imap = config.imap.clone().unwrap_or_default();
                store::MetadataLimits {
                    value_bytes_max: imap.metadata_max_value_bytes,
                    entries_max: imap.metadata_max_entries,
                }
            },
            replication: None,
            acl_entries_max: config
                .imap
                .as_ref()
                .map_or(crate::config::ImapSection::default().acl_max_entries, |i| {
                    i.acl_max_entries
                }),
        }
    }
}

/// A status enum (`status::State`, `Impact`, `ComponentState`) from its
/// snake_case name, or a message listing the names it takes.
fn status_enum<T: serde::de::DeserializeOwned>(
    what: &str,
    name: &str,
    choices: &str,
) -> Result<T, AdminOutput> {
    serde_json::from_value(serde_json::Value::String(name.to_ascii_lowercase())).map_err(|_| {
        AdminOutput::fail(
            EX_USAGE,
            format!("error: unknown {what} {name:?}; one of: {choices}\n"),
        )
    })
}

const STATES: &str = "investigating, identified, monitoring, resolved (maintenance: scheduled, in_progress, completed)";
const IMPACTS: &str = "none, minor, major, critical";
const COMPONENT_STATES: &str = "operational, degraded, partial_outage, major_outage, maintenance";

/// The status page's admin commands (see `postern status --help`).
fn status_command(store: &Store, command: AdminCommand) -> AdminOutput {
    let posted = |outcome: store::Result<store::Outcome>, json: bool| match outcome {
        Ok(store::Outcome::StatusPosted { incident, post }) => {
            if json {
                AdminOutput::ok(format!(
                    "{}\n",
                    serde_json::json!({ "incident": incident, "post": post })
                ))
            } else if incident == post {
                AdminOutput::ok(format!("incident {incident}\n"))
            } else {
                AdminOutput::ok(format!("post {post}\n"))
            }
        }
        Ok(_) => AdminOutput::ok(""),
        Err(e) => AdminOutput::from_store(&e),
    };
    match command {
        AdminCommand::StatusOpen {
            title,
            components,
            impact,
            state,
            maintenance,
            author,
            text,
            json,
        } => {
            let impact = match status_enum("impact", &impact, IMPACTS) {
                Ok(i) => i,
                Err(out) => return out,
            };
            let kind = match maintenance {
                Some((starts, ends)) => status::Kind::Maintenance { starts, ends },
                None => status::Kind::Incident,
            };
            let state = match state {
                Some(s) => match status_enum("state", &s, STATES) {
                    Ok(s) => s,
                    Err(out) => return out,
                },
                None if kind.is_maintenance() => status::State::Scheduled,
                None => status::State::Investigating,
            };
            posted(
                store.submit_one_blocking(Intent::StatusOpen {
                    title,
                    components,
                    impact,
                    state,
                    kind,
                    author,
                    text,
                    at: None,
                }),
                json,
            )
        }
        AdminCommand::StatusUpdate {
            incident,
            state,
            impact,
            resolve,
            author,
            text,
            json,
        } => {
            let mut state = match state.map(|s| status_enum::<status::State>("state", &s, STATES)) {
                Some(Ok(s)) => Some(s),
                Some(Err(out)) => return out,
                None => None,
            };
            let impact = match impact.map(|i| status_enum::<status::Impact>("impact", &i, IMPACTS))
            {
                Some(Ok(i)) => Some(i),
                Some(Err(out)) => return out,
                None => None,
            };
            let mut text = text;
            if resolve {
                let maintenance = match store.status_incident(incident) {
                    Ok(Some(doc)) => doc.kind.is_maintenance(),
                    Ok(None) => {
                        return AdminOutput::fail(
                            EX_NOUSER,
                            format!("error: no incident {incident}\n"),
                        );
                    }
                    Err(e) => return AdminOutput::from_store(&e),
                };
                state = Some(if maintenance {
                    status::State::Completed
                } else {
                    status::State::Resolved
                });
                if text.trim().is_empty() {
                    text = if maintenance {
                        "Completed."
                    } else {
                        "Resolved."
                    }
                    .into();
                }
            }
            posted(
                store.submit_one_blocking(Intent::StatusPost {
                    incident,
                    author,
                    text,
                    state,
                    impact,
                    at: None,
                }),
                json,
            )
        }
        AdminCommand::StatusEdit { post, author, text } => posted(
            store.submit_one_blocking(Intent::StatusEdit { post, author, text }),
            false,
        ),
        AdminCommand::StatusComponent {
            name,
            state,
            note,
            remove,
        } => {
            let component = match (state, remove) {
                (_, true) => None,
                (Some(state), false) => {
                    match status_enum("component state", &state, COMPONENT_STATES) {
                        Ok(state) => Some(status::Component {
                            name: name.clone(),
                            state,
                            set_by: status::SetBy::Manual,
                            set_at: crate::admin::now(),
                            note,
                        }),
                        Err(out) => return out,
                    }
                }
                (None, false) => {
                    return AdminOutput::fail(EX_USAGE, "error: give a STATE, or --remove\n");
                }
            };
            let done = match &component {
                Some(c) => format!("{name}: {}\n", c.state.label()),
                None => format!("{name}: removed\n"),
            };
            match store.submit_one_blocking(Intent::StatusComponent { name, component }) {
                Ok(_) => AdminOutput::ok(done),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::StatusList { json } => match store.status_incidents(1000, 0) {
            Ok(list) if json => {
                AdminOutput::ok(serde_json::to_string_pretty(&list).unwrap_or_default() + "\n")
            }
            Ok(list) => AdminOutput::ok(
                list.iter()
                    .map(|i| {
                        format!(
                            "{:>6}  {:<13} {:<9} {}  ({} posts)\n",
                            i.id,
                            i.state.label(),
                            i.impact.label(),
                            i.title,
                            i.posts.len()
                        )
                    })
                    .collect::<String>(),
            ),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::StatusImport { log, year, json } => {
            let parsed = match status::import_log(&log, year) {
                Ok(p) => p,
                Err(e) => return AdminOutput::fail(EX_DATAERR, format!("error: {e}\n")),
            };
            match store.submit_one_blocking(Intent::StatusImport {
                incidents: parsed.incidents,
            }) {
                Ok(store::Outcome::StatusImported {
                    incidents,
                    posts,
                    duplicates,
                }) => {
                    let duplicates = duplicates + parsed.duplicates as u64;
                    AdminOutput::ok(if json {
                        format!(
                            "{}\n",
                            serde_json::json!({ "incidents": incidents, "posts": posts, "duplicates": duplicates })
                        )
                    } else {
                        format!(
                            "imported {incidents} incidents and {posts} posts; {duplicates} duplicates skipped\n"
                        )
                    })
                }
                Ok(_) => AdminOutput::ok(""),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::TokenAdd { name } => {
            use rand::RngCore;
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let token = format!("pst_{}", hex::encode(bytes));
            match store.submit_one_blocking(Intent::AdminToken {
                name,
                hash: Some(crate::http::token_hash(&token)),
            }) {
                // Shown once: only its hash is kept.
                Ok(_) => AdminOutput::ok(format!("{token}\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::TokenList => match store.admin_tokens() {
            Ok(list) => AdminOutput::ok(
                list.iter()
                    .map(|(name, created)| {
                        format!("{name}  created {}\n", status::rfc3339(*created))
                    })
                    .collect::<String>(),
            ),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::TokenRevoke { name } => {
            match store.submit_one_blocking(Intent::AdminToken {
                name: name.clone(),
                hash: None,
            }) {
                Ok(_) => AdminOutput::ok(format!("token {name} revoked\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        _ => AdminOutput::fail(EX_SOFTWARE, "error: not a status command\n"),
    }
}

pub(crate) fn now() -> i64 {
    store::writer::now_seconds()
}

/// Exit status of `reconstruct` when problems remain that it did not repair.
pub const EX_PROBLEMS: i32 = 1;

/// Runs reconstruct and renders its report: JSON, or lines for people.
fn reconstruct(
    store: &Store,
    context: AdminContext,
    options: store::reconstruct::Options,
    json: bool,
    progress: &(dyn Fn(store::reconstruct::Progress) + Sync),
) -> AdminOutput {
    // On a thread of its own at low CPU priority: background work yields to users.
    let run = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                crate::repair::background_priority();
                store.reconstruct(&options, progress)
            })
            .join()
    });
    let report = match run {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return AdminOutput::from_store(&e),
        Err(_) => return AdminOutput::fail(EX_SOFTWARE, "error: reconstruct failed\n"),
    };
    let _ = context;
    let exit = if report.clean() { EX_OK } else { EX_PROBLEMS };
    if json {
        let mut out = serde_json::to_string(&report).unwrap_or_else(|_| "{}".into());
        out.push('\n');
        return AdminOutput {
            exit,
            stdout: out,
            stderr: String::new(),
        };
    }
    let mut out = String::new();
    for p in &report.details {
        out.push_str(&format!(
            "{:<9} {:<26} {}{}{} {}\n",
            if p.repaired {
                "repaired"
            } else if report.check_only {
                "found"
            } else {
                "NOT fixed"
            },
            p.kind,
            p.user.as_deref().unwrap_or("-"),
            p.mailbox
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default(),
            p.uid.map(|u| format!(" UID {u}")).unwrap_or_default(),
            p.detail
        ));
    }
    if (report.details.len() as u64) < report.problems {
        out.push_str(&format!(
            "... {} more problems not listed\n",
            report.problems - report.details.len() as u64
        ));
    }
    out.push_str(&format!(
        "{} problems, {} repaired, {} messages lost; checked {} users, {} mailboxes, {} messages; read {} journal and {} message bytes in {:.1} s{}\n",
        report.problems,
        report.repaired,
        report.lost,
        report.users,
        report.mailboxes,
        report.messages,
        report.journal_bytes_read,
        report.blob_bytes_read,
        report.elapsed_ms as f64 / 1000.0,
        if report.check_only { " (check only: nothing changed)" } else { "" }
    ));
    AdminOutput {
        exit,
        stdout: out,
        stderr: String::new(),
    }
}

pub fn execute(store: &Store, context: AdminContext, command: AdminCommand) -> AdminOutput {
    execute_with_progress(store, context, command, &|_| {})
}

/// `user move`: the move, with its progress, and what it did.
fn user_move(
    store: &Store,
    user: &str,
    to: Option<&str>,
    abort: bool,
    json: bool,
    progress: &(dyn Fn(store::reconstruct::Progress) + Sync),
) -> AdminOutput {
    if abort {
        return match store.abort_move(user) {
            Ok(entry) if json => AdminOutput::ok(format!(
                "{}\n",
                serde_json::json!({ "user": user, "aborted": true, "shard": entry.shard })
            )),
            Ok(entry) => AdminOutput::ok(format!(
                "the move of {user} is undone; {user} stays on shard {}\n",
                entry.shard
            )),
            Err(e) => AdminOutput::from_store(&e),
        };
    }
    let Some(to) = to else {
        return AdminOutput::fail(EX_USAGE, "error: user move needs --to SHARD (or --abort)\n");
    };
    let mut forward = |p: &store::pg::mover::MoveProgress| {
        progress(store::reconstruct::Progress {
            phase: p.phase.to_string(),
            done: p.done,
            total: p.total,
        })
    };
    match store.move_user(user, to, &mut forward) {
        Ok(report) if json => AdminOutput::ok(format!(
            "{}\n",
            serde_json::json!({
                "user": report.user,
                "from": report.from,
                "to": report.to,
                "messages": report.messages,
                "blobs_copied": report.blobs_copied,
                "bytes_copied": report.bytes_copied,
                "records_caught_up": report.records_caught_up,
                "switch_ms": report.switch_ms,
                "resumed": report.resumed,
            })
        )),
        Ok(report) => AdminOutput::ok(format!(
            "{} moved from shard {} to {}: {} messages, {} contents ({} bytes) copied, {} changes caught up, switch-over {} ms{}\n",
            report.user,
            report.from,
            report.to,
            report.messages,
            report.blobs_copied,
            report.bytes_copied,
            report.records_caught_up,
            report.switch_ms,
            if report.resumed {
                " (finished an earlier run)"
            } else {
                ""
            }
        )),
        Err(e) => AdminOutput::from_store(&e),
    }
}

/// [`execute`], telling `progress` how a long command (reconstruct) goes.
pub fn execute_with_progress(
    store: &Store,
    context: AdminContext,
    command: AdminCommand,
    progress: &(dyn Fn(store::reconstruct::Progress) + Sync),
) -> AdminOutput {
    let submit = |intent: Intent, done: String| match store.submit_one_blocking(intent) {
        Ok(_) => AdminOutput::ok(done),
        Err(e) => AdminOutput::from_store(&e),
    };
    match command {
        AdminCommand::UserAdd { name, password } => {
            let user = match user_arg(&name) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let hash = match store::password::hash(&password) {
                Ok(h) => h,
                Err(e) => return AdminOutput::from_store(&e),
            };
            submit(
                Intent::AddUser {
                    user: user.clone(),
                    password_hash: hash,
                },
                format!("user {user} added\n"),
            )
        }
        AdminCommand::UserDel { name } => {
            let user = match user_arg(&name) {
                Ok(u) => u,
                Err(out) => return out,
            };
            submit(
                Intent::DeleteUser { user: user.clone() },
                format!("user {user} deleted\n"),
            )
        }
        AdminCommand::UserPasswd { name, password } => {
            let user = match user_arg(&name) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let hash = match store::password::hash(&password) {
                Ok(h) => h,
                Err(e) => return AdminOutput::from_store(&e),
            };
            submit(
                Intent::SetPassword {
                    user: user.clone(),
                    password_hash: hash,
                },
                format!("password of {user} changed\n"),
            )
        }
        AdminCommand::UserQuota {
            name,
            storage,
            messages,
        } => {
            let user = match user_arg(&name) {
                Ok(u) => u,
                Err(out) => return out,
            };
            if storage != QuotaValue::Keep || messages != QuotaValue::Keep {
                let current = match store.quota_settings(&user) {
                    Ok(c) => c,
                    Err(e) => return AdminOutput::from_store(&e),
                };
                let intent = Intent::SetQuota {
                    user: user.clone(),
                    storage_bytes: storage.or(current.0),
                    messages: messages.or(current.1),
                };
                if let Err(e) = store.submit_one_blocking(intent) {
                    return AdminOutput::from_store(&e);
                }
            }
            match store.quota(&user) {
                Ok(q) => {
                    let limit =
                        |v: Option<u64>| v.map_or("no limit".to_string(), |n| n.to_string());
                    AdminOutput::ok(format!(
                        "{user}\tstorage {} of {} bytes\tmessages {} of {}\n",
                        q.used_bytes,
                        limit(q.storage_max),
                        q.used_messages,
                        limit(q.messages_max)
                    ))
                }
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::UserMove {
            name,
            to,
            abort,
            json,
        } => {
            let user = match user_arg(&name) {
                Ok(u) => u,
                Err(out) => return out,
            };
            user_move(store, &user, to.as_deref(), abort, json, progress)
        }
        AdminCommand::UserList => match store.users() {
            Ok(users) => {
                AdminOutput::ok(users.iter().map(|u| format!("{u}\n")).collect::<String>())
            }
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::AliasAdd { address, users } => {
            let address = address.trim().to_ascii_lowercase();
            if address.is_empty()
                || address.len() > 320
                || address.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return AdminOutput::fail(EX_DATAERR, "error: invalid alias address\n");
            }
            let mut canonical = Vec::new();
            for u in &users {
                match user_arg(u) {
                    Ok(u) => canonical.push(u),
                    Err(out) => return out,
                }
            }
            submit(
                Intent::SetAlias {
                    address: address.clone(),
                    users: canonical,
                },
                format!("alias {address} set\n"),
            )
        }
        AdminCommand::AliasDel { address } => {
            let address = address.trim().to_ascii_lowercase();
            submit(
                Intent::RemoveAlias {
                    address: address.clone(),
                },
                format!("alias {address} removed\n"),
            )
        }
        AdminCommand::AliasList => match store.aliases() {
            Ok(aliases) => AdminOutput::ok(
                aliases
                    .iter()
                    .map(|(a, users)| format!("{a} -> {}\n", users.join(", ")))
                    .collect::<String>(),
            ),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::MailboxList { user } => {
            let user = match user_arg(&user) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let listing = store.reader(&user).and_then(|reader| {
                let mut out = String::new();
                for mailbox in reader.mailboxes()? {
                    let counts = reader.counts(&mailbox.id)?;
                    out.push_str(&format!(
                        "{}\t{} messages\t{} unseen\t{} bytes{}\n",
                        mailbox.name,
                        counts.messages,
                        counts.unseen,
                        counts.size,
                        mailbox
                            .special_use
                            .map(|s| format!("\t{s}"))
                            .unwrap_or_default()
                    ));
                }
                Ok(out)
            });
            match listing {
                Ok(out) => AdminOutput::ok(out),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::SmsSend {
            to,
            text,
            receipt,
            summary,
        } => match store.submit_one_blocking(Intent::QueueSms {
            to: to.clone(),
            text,
            purpose: "operator".into(),
            receipt,
            user: None,
        }) {
            Ok(store::Outcome::SmsQueued { id }) => {
                AdminOutput::ok(format!("queued SMS {id} to {to} ({summary})\n"))
            }
            Ok(other) => AdminOutput::fail(EX_SOFTWARE, format!("error: unexpected {other:?}\n")),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::SmsList { limit, json } => match store.sms_list(limit.clamp(1, 10_000)) {
            Ok(list) if json => match serde_json::to_string_pretty(&list) {
                Ok(text) => AdminOutput::ok(text + "\n"),
                Err(e) => AdminOutput::fail(EX_SOFTWARE, format!("error: {e}\n")),
            },
            Ok(list) => AdminOutput::ok(list.iter().map(sms_line).collect::<String>()),
            Err(e) => AdminOutput::from_store(&e),
        },
        AdminCommand::SmsAlert { user, action } => {
            let user = match user_arg(&user) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let set = match action {
                SmsAlertAction::Show => None,
                SmsAlertAction::Set(alert) => Some(Some(alert)),
                SmsAlertAction::Remove => Some(None),
            };
            match set {
                None => match store.sms_alert(&user) {
                    Ok(Some(alert)) => AdminOutput::ok(
                        serde_json::to_string_pretty(&alert).unwrap_or_default() + "\n",
                    ),
                    Ok(None) => AdminOutput::ok(format!("{user} has no SMS alert\n")),
                    Err(e) => AdminOutput::from_store(&e),
                },
                Some(alert) => {
                    let done = match &alert {
                        Some(a) => format!("SMS alert of {user} to {}\n", a.number),
                        None => format!("SMS alert of {user} removed\n"),
                    };
                    submit(Intent::SetSmsAlert { user, alert }, done)
                }
            }
        }
        AdminCommand::StatusOpen { .. }
        | AdminCommand::StatusUpdate { .. }
        | AdminCommand::StatusEdit { .. }
        | AdminCommand::StatusComponent { .. }
        | AdminCommand::StatusList { .. }
        | AdminCommand::StatusImport { .. }
        | AdminCommand::TokenAdd { .. }
        | AdminCommand::TokenList
        | AdminCommand::TokenRevoke { .. } => status_command(store, command),
        AdminCommand::StoreExport { path, json } => store_transfer(store, true, &path, json),
        AdminCommand::StoreImport { path, json } => store_transfer(store, false, &path, json),
        AdminCommand::StoreCopy { data_dir, json } => store_copy(store, &data_dir, json),
        AdminCommand::ReplicationStatus { .. }
        | AdminCommand::ReplicationPromote { .. }
        | AdminCommand::ReplicationCheck { .. }
        | AdminCommand::ReplicationSync { .. } => {
            crate::replication::admin::execute(&context, command)
        }
        AdminCommand::SpamRuns { json } => crate::spam_admin::runs_output(&context, json),
        AdminCommand::SpamBlocks { json } => crate::spam_admin::blocks_output(store, json),
        AdminCommand::SpamBlock { key, reason } => {
            match crate::spam_admin::block(store, &context, &key, &reason) {
                Ok(key) => AdminOutput::ok(format!("blocked {key}\n")),
                Err(failure) => failure.into(),
            }
        }
        AdminCommand::SpamUnblock { key } => {
            match crate::spam_admin::unblock(store, &context, &key) {
                Ok(key) => AdminOutput::ok(format!("unblocked {key}\n")),
                Err(failure) => failure.into(),
            }
        }
        AdminCommand::MailboxCreateShared { .. }
        | AdminCommand::MailboxDeleteShared { .. }
        | AdminCommand::AclGet { .. }
        | AdminCommand::AclSet { .. } => acl_command(store, &context, command),
        AdminCommand::MetadataSet { entry, value } => {
            let removing = value.is_none();
            let intent = Intent::SetMetadata {
                user: None,
                mailbox: None,
                entries: vec![(
                    entry.clone(),
                    value.map(|v| store::MetadataValue(v.into_bytes())),
                )],
                limits: context.metadata_limits,
            };
            match store.submit_one_blocking(intent) {
                Ok(_) if removing => AdminOutput::ok(format!("removed {entry}\n")),
                Ok(_) => AdminOutput::ok(format!("set {entry}\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::MetadataGet { entry } => {
            let entry =
                match store::metadata::validate_entry(entry.as_deref().unwrap_or("/shared"), false)
                {
                    Ok(e) => e,
                    Err(e) => return AdminOutput::from_store(&e),
                };
            let own = store.server_metadata(&entry);
            let below = store.server_metadata_below(&entry, false);
            match (own, below) {
                (Ok(own), Ok(below)) => AdminOutput::ok(
                    own.map(|v| (entry.clone(), v))
                        .into_iter()
                        .chain(below)
                        .map(|(name, value)| {
                            format!(
                                "{name}\t{}\n",
                                String::from_utf8_lossy(&value).escape_debug()
                            )
                        })
                        .collect::<String>(),
                ),
                (Err(e), _) | (_, Err(e)) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::SubscriberList { .. }
        | AdminCommand::SubscriberAdd { .. }
        | AdminCommand::SubscriberRemove { .. } => {
            crate::subscribers::admin_command(store, &context, command)
        }
        AdminCommand::Reconstruct {
            user,
            mailbox,
            check,
            json,
            max_read_mb_per_s,
        } => {
            let user = match user.as_deref().map(owner_arg).transpose() {
                Ok(u) => u,
                Err(out) => return out,
            };
            let options = store::reconstruct::Options {
                user,
                mailbox,
                mailbox_id: None,
                check_only: check,
                read_bytes_per_sec: max_read_mb_per_s
                    .map_or(context.reconstruct_bytes_per_sec, |mb| {
                        mb.saturating_mul(1_000_000)
                    }),
            };
            reconstruct(store, context, options, json, progress)
        }
        AdminCommand::Gc { bytes_max } => {
            match store.submit_one_blocking(Intent::CollectGarbage { bytes_max }) {
                Ok(store::Outcome::Collected {
                    blobs_removed,
                    bytes_copied,
                    packs_deleted,
                }) => AdminOutput::ok(format!(
                    "removed {blobs_removed} unreferenced blobs, deleted {packs_deleted} packs, copied {bytes_copied} bytes\n"
                )),
                Ok(_) => AdminOutput::ok(""),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::Deliver { user, message } => {
            let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(message) else {
                return AdminOutput::fail(EX_USAGE, "error: message encoding\n");
            };
            if raw.is_empty() {
                return AdminOutput::fail(EX_DATAERR, "error: empty message\n");
            }
            let users = match store.resolve_recipient(&user) {
                Ok(u) => u,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return AdminOutput::fail(EX_NOUSER, format!("error: unknown user {user}\n"));
                }
                Err(e) => return AdminOutput::from_store(&e),
            };
            let prepared = store.prepare(raw);
            let intents = users
                .iter()
                .map(|u| Intent::Append {
                    user: u.clone(),
                    mailbox: "INBOX".into(),
                    message: prepared.clone(),
                    flags: Vec::new(),
                    internal_date: None,
                })
                .collect();
            let results = store.submit_blocking(intents);
            if context.sms_alerts {
                let reached: Vec<String> = users
                    .iter()
                    .zip(&results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(u, _)| u.clone())
                    .collect();
                let fields = crate::sms::AlertFields::of(&prepared.summary);
                let alerts = crate::sms::alert_intents(store, &reached, &fields);
                if !alerts.is_empty() {
                    crate::sms::log_alert_results(store.submit_blocking(alerts));
                }
            }
            for result in results {
                if let Err(e) = result {
                    return AdminOutput::from_store(&e);
                }
            }
            AdminOutput::ok("")
        }
    }
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// Binds the owner-only admin socket. Done before the server says it is ready,
/// so a CLI that runs right after never finds "no server" and opens the store itself.
pub fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    // A socket file left by a crashed server would make bind fail.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot bind the admin socket {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin commands on the bound socket until `shutdown`.
pub async fn serve_socket(
    store: Store,
    context: AdminContext,
    listener: tokio::net::UnixListener,
    path: PathBuf,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (store, context) = (store.clone(), context.clone());
                tokio::spawn(async move {
                    if let Err(e) = handle_admin(store, context, stream).await {
                        tracing::warn!(event = "admin_error", error = %e);
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

async fn handle_admin(
    store: Store,
    context: AdminContext,
    stream: tokio::net::UnixStream,
) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read).take(REQUEST_BYTES_MAX as u64);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let output = match serde_json::from_str::<AdminCommand>(&line) {
        Ok(command) => {
            let name = command_name(&command);
            tracing::info!(event = "admin_command", command = name);
            // Progress lines (`{"progress": ...}`) go out while the command runs;
            // the output is the last line.
            let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            let task = tokio::task::spawn_blocking(move || {
                execute_with_progress(&store, context, command, &|p| {
                    if let Ok(mut line) = serde_json::to_vec(&serde_json::json!({ "progress": p }))
                    {
                        line.push(b'\n');
                        let _ = sender.send(line);
                    }
                })
            });
            while let Some(line) = receiver.recv().await {
                // A CLI that went away does not stop the command.
                let _ = write.write_all(&line).await;
            }
            task.await
                .unwrap_or_else(|_| AdminOutput::fail(EX_SOFTWARE, "error: command failed\n"))
        }
        Err(e) => AdminOutput::fail(EX_USAGE, format!("error: bad admin request: {e}\n")),
    };
    let mut reply = serde_json::to_vec(&output)?;
    reply.push(b'\n');
    write.write_all(&reply).await?;
    Ok(())
}

fn command_name(command: &AdminCommand) -> &'static str {
    match command {
        AdminCommand::UserAdd { .. } => "user add",
        AdminCommand::UserDel { .. } => "user del",
        AdminCommand::UserList => "user list",
        AdminCommand::UserMove { .. } => "user move",
        AdminCommand::UserQuota { .. } => "user quota",
        AdminCommand::UserPasswd { .. } => "user passwd",
        AdminCommand::AliasAdd { .. } => "alias add",
        AdminCommand::AliasDel { .. } => "alias del",
        AdminCommand::AliasList => "alias list",
        AdminCommand::MailboxList { .. } => "mailbox list",
        AdminCommand::MailboxCreateShared { .. } => "mailbox create-shared",
        AdminCommand::MailboxDeleteShared { .. } => "mailbox delete-shared",
        AdminCommand::AclGet { .. } => "acl get",
        AdminCommand::AclSet {
            rights: Some(_), ..
        } => "acl set",
        AdminCommand::AclSet { rights: None, .. } => "acl delete",
        AdminCommand::Deliver { .. } => "deliver",
        AdminCommand::Gc { .. } => "store gc",
        AdminCommand::Reconstruct { .. } => "reconstruct",
        AdminCommand::StatusOpen { .. } => "status open",
        AdminCommand::StatusUpdate { .. } => "status update",
        AdminCommand::StatusEdit { .. } => "status edit",
        AdminCommand::StatusComponent { .. } => "status component",
        AdminCommand::StatusList { .. } => "status list",
        AdminCommand::StatusImport { .. } => "status import",
        AdminCommand::TokenAdd { .. } => "status token add",
        AdminCommand::TokenList => "status token list",
        AdminCommand::TokenRevoke { .. } => "status token revoke",
        AdminCommand::SpamRuns { .. } => "spam runs",
        AdminCommand::SpamBlocks { .. } => "spam blocks",
        AdminCommand::SpamBlock { .. } => "spam block",
        AdminCommand::SpamUnblock { .. } => "spam unblock",
        AdminCommand::StoreExport { .. } => "store export",
        AdminCommand::StoreImport { .. } => "store import",
        AdminCommand::StoreCopy { .. } => "store copy",
        AdminCommand::ReplicationStatus { .. } => "replication status",
        AdminCommand::ReplicationPromote { .. } => "replication promote",
        AdminCommand::ReplicationCheck { .. } => "replication check",
        AdminCommand::ReplicationSync { .. } => "replication sync",
        AdminCommand::MetadataSet { .. } => "metadata set",
        AdminCommand::MetadataGet { .. } => "metadata get",
        AdminCommand::SubscriberList { .. } => "status subscriber list",
        AdminCommand::SubscriberAdd { .. } => "status subscriber add",
        AdminCommand::SubscriberRemove { .. } => "status subscriber remove",
        AdminCommand::SmsSend { .. } => "sms send",
        AdminCommand::SmsList { .. } => "sms list",
        AdminCommand::SmsAlert { .. } => "sms alert",
    }
}

use tokio::io::AsyncReadExt as _;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressLine {
    progress: store::reconstruct::Progress,
}

/// Sends a command to a running server. `Ok(None)`: no server is listening.
pub fn send(data_dir: &Path, command: &AdminCommand) -> anyhow::Result<Option<AdminOutput>> {
    send_with_progress(data_dir, command, &mut |_| {})
}

/// [`send`], handing each progress report of a long command to `progress`.
pub fn send_with_progress(
    data_dir: &Path,
    command: &AdminCommand,
    progress: &mut dyn FnMut(store::reconstruct::Progress),
) -> anyhow::Result<Option<AdminOutput>> {
    use std::io::{BufRead, Write};
    let path = socket_path(data_dir);
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot reach the server at {}: {e}",
                path.display()
            ));
        }
    };
    let mut request = serde_json::to_vec(command)?;
    request.push(b'\n');
    (&stream).write_all(&request)?;
    let mut reader = std::io::BufReader::new(&stream);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        match serde_json::from_str::<ProgressLine>(&line) {
            Ok(p) => progress(p.progress),
            Err(_) => break,
        }
    }
    let output: AdminOutput = serde_json::from_str(&line)
        .map_err(|e| anyhow::anyhow!("bad answer from the server: {e}"))?;
    Ok(Some(output))
}

/// The owner named on the command line: a user, or `#shared` for the
/// mailboxes of the "Shared" namespace.
fn owner_arg(name: &str) -> Result<String, AdminOutput> {
    if name == store::SHARED_OWNER {
        Ok(name.to_string())
    } else {
        user_arg(name)
    }
}

/// `postern mailbox create-shared|delete-shared` and `postern acl ...`.
fn acl_command(store: &Store, context: &AdminContext, command: AdminCommand) -> AdminOutput {
    use store::{Identifier, MailboxRef, RightsChange, SHARED_OWNER};
    match command {
        AdminCommand::MailboxCreateShared { name } => {
            let add = Intent::AddUser {
                user: SHARED_OWNER.to_string(),
                // Not an Argon2 hash: it verifies no password, and the name
                // is no valid login name anyway.
                password_hash: "!".to_string(),
            };
            let create = Intent::CreateMailbox {
                user: SHARED_OWNER.to_string(),
                name: name.clone(),
                special_use: None,
            };
            match store.submit_one_blocking(add) {
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::AlreadyExists => {}
                Err(e) => return AdminOutput::from_store(&e),
            }
            match store.submit_one_blocking(create) {
                Ok(_) => AdminOutput::ok(format!("created Shared/{name}\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::MailboxDeleteShared { name } => {
            let intent = Intent::DeleteMailbox {
                user: SHARED_OWNER.to_string(),
                name: name.clone(),
            };
            match store.submit_one_blocking(intent) {
                Ok(_) => AdminOutput::ok(format!("deleted Shared/{name}\n")),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::AclGet { user, mailbox } => {
            let owner = match owner_arg(&user) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let listing = store.reader(&owner).and_then(|reader| {
                let info = reader
                    .mailbox(&mailbox)?
                    .ok_or_else(|| store::StoreError::not_found("no such mailbox"))?;
                let mut out = format!("{owner}\t{}\t(owner)\n", store::Rights::ALL);
                for (identifier, rights) in reader.acl(&info.id)? {
                    out.push_str(&format!("{identifier}\t{rights}\n"));
                }
                Ok(out)
            });
            match listing {
                Ok(out) => AdminOutput::ok(out),
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        AdminCommand::AclSet {
            user,
            mailbox,
            identifier,
            rights,
        } => {
            let owner = match owner_arg(&user) {
                Ok(u) => u,
                Err(out) => return out,
            };
            let parsed = Identifier::parse(&identifier).and_then(|identifier| {
                let change = rights.as_deref().map(RightsChange::parse).transpose()?;
                Ok((identifier, change))
            });
            let (identifier, change) = match parsed {
                Ok(p) => p,
                Err(e) => return AdminOutput::from_store(&e),
            };
            let shown = identifier.to_string();
            let intent = Intent::SetAcl {
                actor: None,
                user: owner.clone(),
                mailbox: MailboxRef::Name(mailbox.clone()),
                identifier,
                change,
                entries_max: context.acl_entries_max,
            };
            match store.submit_one_blocking(intent) {
                Ok(_) => {
                    let rights = store
                        .reader(&owner)
                        .and_then(|r| {
                            let id = r
                                .mailbox(&mailbox)?
                                .ok_or_else(|| store::StoreError::not_found("no such mailbox"))?
                                .id;
                            r.acl(&id)
                        })
                        .ok()
                        .and_then(|entries| entries.into_iter().find(|(i, _)| *i == shown))
                        .map_or_else(|| "(no entry)".to_string(), |(_, r)| r.to_string());
                    AdminOutput::ok(format!("{owner}\t{mailbox}\t{shown}\t{rights}\n"))
                }
                Err(e) => AdminOutput::from_store(&e),
            }
        }
        _ => AdminOutput::fail(EX_SOFTWARE, "error: not an ACL command\n"),
    }
}
