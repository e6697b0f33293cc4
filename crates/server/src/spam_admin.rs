//! `postern spam runs|blocks|block|unblock` and the same over the HTTP
//! admin API: runs come from the running server's detector; blocks are
//! stored records (they survive restarts and replicate), and the running
//! server reloads them at once after a change.

use spam::blocks::BlockKey;
use store::{Intent, Store};

use crate::admin::{AdminContext, AdminOutput, EX_DATAERR, EX_TEMPFAIL};

/// A block as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BlockView {
    pub key: String,
    pub reason: String,
    pub since: String,
}

/// Why a spam admin request failed, and the message saying so.
#[derive(Debug)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A key or reason that cannot be taken (CLI 65, HTTP 400).
    Invalid,
    /// No such block or run (CLI 65, HTTP 404).
    NotFound,
    /// Not possible now: no running server, the store busy (CLI 75, HTTP 503).
    Unavailable,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    fn data(message: impl Into<String>) -> Self {
        Self::new(FailureKind::Invalid, message)
    }
}

impl From<Failure> for AdminOutput {
    fn from(failure: Failure) -> Self {
        let exit = match failure.kind {
            FailureKind::Invalid | FailureKind::NotFound => EX_DATAERR,
            FailureKind::Unavailable => EX_TEMPFAIL,
        };
        AdminOutput::fail(exit, format!("error: {}\n", failure.message))
    }
}

/// The stored form of a key the admin typed: `run:N` becomes the run's
/// `fingerprint:…`, which only the running server knows.
pub fn canonical_key(context: &AdminContext, text: &str) -> Result<String, Failure> {
    if let Some(id) = text.strip_prefix("run:") {
        let id: u64 = id.parse().map_err(|_| {
            Failure::data(format!(
                "{text:?}: a run id is a number, as `spam runs` lists"
            ))
        })?;
        let Some(inbound) = &context.inbound else {
            return Err(Failure {
                kind: FailureKind::Unavailable,
                message: "run ids are known only to the running server (with [smtp]); block by fingerprint:<hex> instead".into(),
            });
        };
        let fingerprint = inbound.run_fingerprint(id).ok_or_else(|| {
            Failure::new(
                FailureKind::NotFound,
                format!("no run {id} (see `spam runs`)"),
            )
        })?;
        return Ok(BlockKey::Fingerprint(fingerprint).to_string());
    }
    text.parse::<BlockKey>()
        .map(|key| key.to_string())
        .map_err(|e| Failure::data(format!("{text:?}: {e}, or run:ID (from `spam runs`)")))
}

pub fn blocks(store: &Store) -> Result<Vec<BlockView>, Failure> {
    let blocks = store.spam_blocks().map_err(|e| Failure {
        kind: FailureKind::Unavailable,
        message: e.to_string(),
    })?;
    Ok(blocks
        .into_iter()
        .map(|b| BlockView {
            key: b.key,
            reason: b.reason,
            since: status::rfc3339(b.since),
        })
        .collect())
}

/// Stores a block and makes the running server use it at once.
pub fn block(
    store: &Store,
    context: &AdminContext,
    key: &str,
    reason: &str,
) -> Result<String, Failure> {
    let key = canonical_key(context, key)?;
    store
        .submit_one_blocking(Intent::SpamBlock {
            key: key.clone(),
            reason: reason.to_string(),
        })
        .map_err(|e| Failure::data(e.message))?;
    reload(context);
    tracing::info!(event = "spam.block", %key);
    Ok(key)
}

/// Lifts a block; an unknown key is an error.
pub fn unblock(store: &Store, context: &AdminContext, key: &str) -> Result<String, Failure> {
    let key = canonical_key(context, key)?;
    store
        .submit_one_blocking(Intent::SpamUnblock { key: key.clone() })
        .map_err(|e| match e.kind {
            store::ErrorKind::NotFound => {
                Failure::new(FailureKind::NotFound, format!("{key} is not blocked"))
            }
            _ => Failure::data(e.message),
        })?;
    reload(context);
    tracing::info!(event = "spam.unblock", %key);
    Ok(key)
}

fn reload(context: &AdminContext) {
    if let Some(inbound) = &context.inbound
        && let Err(error) = inbound.reload_blocks()
    {
        tracing::error!(event = "spam.reload_failed", %error);
    }
}

pub fn runs_text(runs: &[crate::inbound::RunView]) -> String {
    if runs.is_empty() {
        return "no runs detected\n".into();
    }
    let mut out = String::new();
    for run in runs {
        let sources = run
            .top_sources
            .iter()
            .map(|s| format!("{} ({})", s.ip, s.messages))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "run {}  {} messages from {} sources  {}  first {}  last {}{}\n  top sources: {}\n",
            run.id,
            run.messages,
            run.sources,
            if run.active { "active" } else { "ended" },
            run.first_seen,
            run.last_seen,
            if run.blocked { "  BLOCKED" } else { "" },
            sources
        ));
    }
    out
}

/// The CLI's `spam runs`.
pub fn runs_output(context: &AdminContext, json: bool) -> AdminOutput {
    let Some(inbound) = &context.inbound else {
        return AdminOutput::fail(
            EX_TEMPFAIL,
            "error: runs are known only to the running server (with [smtp])\n",
        );
    };
    let runs = inbound.runs();
    if json {
        AdminOutput::ok(serde_json::json!({ "runs": runs }).to_string() + "\n")
    } else {
        AdminOutput::ok(runs_text(&runs))
    }
}

/// The CLI's `spam blocks`.
pub fn blocks_output(store: &Store, json: bool) -> AdminOutput {
    match blocks(store) {
        Ok(list) if json => {
            AdminOutput::ok(serde_json::json!({ "blocks": list }).to_string() + "\n")
        }
        Ok(list) if list.is_empty() => AdminOutput::ok("no blocks\n"),
        Ok(list) => AdminOutput::ok(
            list.iter()
                .map(|b| format!("{}\tsince {}\t{}\n", b.key, b.since, b.reason))
                .collect::<String>(),
        ),
        Err(failure) => failure.into(),
    }
}
