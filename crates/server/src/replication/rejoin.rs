//! `replication rejoin` (server stopped): an old primary becomes the new
//! primary's replica.
//!
//! After a failover the old primary may hold writes the new primary never
//! received: everything after `held_upto`, the last of its LSNs the new
//! primary holds (learned when it was refused, in `state.json`). Those are
//! set aside, never dropped: every message they added is written out as an
//! `.eml` file, and `report.json` lists every such record by kind. Then the
//! whole old store (journal, contents, indexes, `store.id`) is moved into
//! the same `set-aside/<time>/` folder, and the server restarts as an empty
//! replica at the new epoch, which the new primary fills from its journal.

use super::{ReplicationRole, State, load_state, save_state};
use crate::config::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use store::record::Record;

#[derive(Debug, Serialize)]
pub struct RejoinReport {
    pub set_aside: PathBuf,
    /// The last LSN of this server that the new primary holds.
    pub held_upto: u64,
    /// Records of this server after that, by kind (local ones left out).
    pub records: BTreeMap<String, u64>,
    pub messages: Vec<SetAsideMessage>,
    pub epoch: u64,
}

#[derive(Debug, Serialize)]
pub struct SetAsideMessage {
    pub user: String,
    pub mailbox: String,
    pub uid: u32,
    /// The file under `set_aside`, or why the content could not be read.
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Does the rejoin; the server must be stopped (the store lock says so).
pub fn rejoin(config: &Config) -> anyhow::Result<RejoinReport> {
    let data_dir = &config.data_dir;
    let state = load_state(data_dir)?;
    let (held_upto, epoch) = match state.as_ref().and_then(|s| s.stepped_down.clone()) {
        Some(s) => (s.held_upto.unwrap_or(0), s.epoch),
        None => (0, state.as_ref().map_or(0, |s| s.epoch)),
    };
    let store = crate::open_store(config)?;
    let stamp = chrono_stamp();
    let root = data_dir.join("set-aside").join(&stamp);
    let messages_dir = root.join("messages");
    std::fs::create_dir_all(&messages_dir)?;
    let mut records: BTreeMap<String, u64> = BTreeMap::new();
    let mut messages = Vec::new();
    let mut cursor = store.journal_cursor(held_upto + 1)?;
    let durable = store.durable_lsn();
    loop {
        let entries = cursor.read(durable, 4096, 16 * 1024 * 1024)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            if entry.record.is_local() {
                continue;
            }
            let kind = serde_json::to_value(&entry.record)
                .ok()
                .and_then(|v| v["type"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            *records.entry(kind).or_default() += 1;
            if let Record::MessageAdded {
                user,
                mailbox,
                uid,
                blob,
                ..
            } = &entry.record
            {
                let name = store
                    .reader(user)
                    .ok()
                    .and_then(|r| r.mailbox_by_id(mailbox).ok().flatten())
                    .map_or_else(|| mailbox.clone(), |m| m.name);
                let dir = messages_dir.join(safe(user)).join(safe(&name));
                let file = dir.join(format!("{uid}.eml"));
                let written = store
                    .blob(blob)
                    .map_err(anyhow::Error::from)
                    .and_then(|bytes| {
                        std::fs::create_dir_all(&dir)?;
                        std::fs::write(&file, bytes)?;
                        Ok(())
                    });
                messages.push(SetAsideMessage {
                    user: user.clone(),
                    mailbox: name,
                    uid: *uid,
                    file: written.is_ok().then(|| {
                        file.strip_prefix(&root)
                            .unwrap_or(&file)
                            .display()
                            .to_string()
                    }),
                    error: written.err().map(|e| e.to_string()),
                });
            }
        }
    }
    store.shutdown();
    drop(store);
    // The old store, whole, beside what was written out.
    let old = root.join("store");
    std::fs::create_dir_all(&old)?;
    for name in [
        "journal",
        "blobs",
        "users",
        "server.sqlite",
        "server.sqlite-wal",
        "server.sqlite-shm",
        store::replication::STORE_ID_FILE,
    ] {
        let from = data_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, old.join(name))?;
        }
    }
    let report = RejoinReport {
        set_aside: root.clone(),
        held_upto,
        records,
        messages,
        epoch,
    };
    std::fs::write(
        root.join("report.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    // What was written out, made durable; what was moved needs only its directories.
    sync_tree(&messages_dir)?;
    std::fs::File::open(root.join("report.json"))?.sync_all()?;
    for dir in [&old, &root, data_dir] {
        std::fs::File::open(dir)?.sync_all()?;
    }
    save_state(
        data_dir,
        &State {
            epoch,
            role: ReplicationRole::Replica,
            stepped_down: None,
            sync: state.as_ref().and_then(|s| s.sync),
        },
    )?;
    Ok(report)
}

/// A name safe as one path component.
fn safe(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\0' || c == '\\' {
                '_'
            } else {
                c
            }
        })
        .collect();
    match cleaned.as_str() {
        "" | "." | ".." => format!("_{cleaned}"),
        _ => cleaned,
    }
}

fn chrono_stamp() -> String {
    let secs = store::writer::now_seconds();
    format!("rejoin-{secs}")
}

fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            sync_tree(&entry.path())?;
        } else {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    std::fs::File::open(dir)?.sync_all()
}
