//! The planner over a transaction that is a few maps in memory: proof that
//! the rules live in the planner, not in the embedded backend, so the
//! PostgreSQL backend inherits them by implementing [`Tx`] alone.

use super::{PlanConfig, Planner};
use crate::acl::Rights;
use crate::directory::{ReplicaPosition, Sms, SpamBlock};
use crate::error::{ErrorKind, Result};
use crate::index::{MailboxInfo, MessageMeta};
use crate::intent::{Fix, Intent, MailboxRef, Outcome, Prepared, RepairGuard};
use crate::record::Record;
use crate::subscribers::{Notice, Subscriber};
use crate::tx::Tx;
use crate::types::{BlobHash, FlagMode};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Everything a `MemTx` knows; cloned at a savepoint, put back on undo.
#[derive(Clone, Default)]
struct State {
    users: BTreeSet<String>,
    mailboxes: BTreeMap<(String, String), MailboxInfo>,
    messages: BTreeMap<(String, String, u32), MessageMeta>,
    uid_validity_last: BTreeMap<String, u32>,
    blobs: BTreeSet<BlobHash>,
    records: Vec<Record>,
}

struct MemTx {
    now: i64,
    state: State,
    saved: Option<State>,
    /// How many times a content was written (not deduplicated).
    blob_writes: u32,
}

impl MemTx {
    fn new() -> Self {
        MemTx {
            now: 1_800_000_000,
            state: State::default(),
            saved: None,
            blob_writes: 0,
        }
    }

    fn mailbox_mut(&mut self, user: &str, id: &str) -> &mut MailboxInfo {
        self.state
            .mailboxes
            .get_mut(&(user.to_string(), id.to_string()))
            .expect("a record names a mailbox the planner read")
    }
}

impl Tx for MemTx {
    fn now(&self) -> i64 {
        self.now
    }
    fn new_id(&mut self) -> Result<u64> {
        Ok(self.state.records.len() as u64 + 1)
    }
    fn is_replica(&self) -> bool {
        false
    }
    fn user_exists(&mut self, user: &str) -> Result<bool> {
        Ok(self.state.users.contains(user))
    }
    fn alias(&mut self, _: &str) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
    fn aliases(&mut self) -> Result<Vec<(String, Vec<String>)>> {
        Ok(Vec::new())
    }
    fn acl_naming(&mut self, _: &str) -> Result<Vec<(String, String, String)>> {
        Ok(Vec::new())
    }
    fn quota(&mut self, _: &str) -> Result<(Option<u64>, Option<u64>)> {
        Ok((None, None))
    }
    fn sms(&mut self, _: u64) -> Result<Option<Sms>> {
        Ok(None)
    }
    fn sms_alerts_since(&mut self, _: &str, _: i64) -> Result<u64> {
        Ok(0)
    }
    fn status_incident(&mut self, _: u64) -> Result<Option<status::Incident>> {
        Ok(None)
    }
    fn status_post_incident(&mut self, _: u64) -> Result<Option<u64>> {
        Ok(None)
    }
    fn status_fingerprint(&mut self, _: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    fn status_components(&mut self) -> Result<Vec<status::Component>> {
        Ok(Vec::new())
    }
    fn spam_blocks(&mut self) -> Result<Vec<SpamBlock>> {
        Ok(Vec::new())
    }
    fn admin_tokens(&mut self) -> Result<Vec<(String, i64)>> {
        Ok(Vec::new())
    }
    fn server_metadata_count(&mut self) -> Result<u64> {
        Ok(0)
    }
    fn subscriber(&mut self, _: u64) -> Result<Option<Subscriber>> {
        Ok(None)
    }
    fn subscriber_by_address(&mut self, _: &str, _: &str) -> Result<Option<Subscriber>> {
        Ok(None)
    }
    fn subscriber_by_confirm_hash(&mut self, _: &str) -> Result<Option<Subscriber>> {
        Ok(None)
    }
    fn subscriber_by_unsubscribe_token(&mut self, _: &str) -> Result<Option<Subscriber>> {
        Ok(None)
    }
    fn subscriber_count(&mut self, _: i64) -> Result<u64> {
        Ok(0)
    }
    fn subscribe_requests_since(&mut self, _: &str, _: Option<&str>, _: i64) -> Result<(u64, u64)> {
        Ok((0, 0))
    }
    fn notice(&mut self, _: u64, _: u64) -> Result<Option<Notice>> {
        Ok(None)
    }
    fn replica_position(&mut self) -> Result<Option<ReplicaPosition>> {
        Ok(None)
    }
    fn mailboxes(&mut self, user: &str) -> Result<Vec<MailboxInfo>> {
        Ok(self
            .state
            .mailboxes
            .iter()
            .filter(|((owner, _), _)| owner == user)
            .map(|(_, m)| m.clone())
            .collect())
    }
    fn mailbox_by_name(&mut self, user: &str, name: &str) -> Result<Option<MailboxInfo>> {
        Ok(self.mailboxes(user)?.into_iter().find(|m| m.name == name))
    }
    fn mailbox_by_id(&mut self, user: &str, id: &str) -> Result<Option<MailboxInfo>> {
        Ok(self
            .state
            .mailboxes
            .get(&(user.to_string(), id.to_string()))
            .cloned())
    }
    fn message(&mut self, user: &str, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>> {
        let key = (user.to_string(), mailbox.to_string(), uid);
        Ok(self.state.messages.get(&key).cloned())
    }
    fn messages(&mut self, user: &str, mailbox: &str) -> Result<Vec<MessageMeta>> {
        Ok(self
            .state
            .messages
            .iter()
            .filter(|((u, m, _), _)| u == user && m == mailbox)
            .map(|(_, meta)| meta.clone())
            .collect())
    }
    fn summary(&mut self, _: &str, _: &str, _: u32, _: &BlobHash) -> Result<Option<mime::Summary>> {
        Ok(None)
    }
    fn usage(&mut self, user: &str) -> Result<(u64, u64)> {
        let mine = self
            .state
            .messages
            .iter()
            .filter(|((u, _, _), _)| u == user);
        Ok(mine.fold((0, 0), |(bytes, count), (_, m)| (bytes + m.size, count + 1)))
    }
    fn thread_for(&mut self, _: &str, _: &[String]) -> Result<Option<String>> {
        Ok(None)
    }
    fn uid_validity_last(&mut self, user: &str) -> Result<u32> {
        Ok(self.state.uid_validity_last.get(user).copied().unwrap_or(0))
    }
    fn acl_entries(&mut self, _: &str, _: &str) -> Result<Vec<(String, Rights)>> {
        Ok(Vec::new())
    }
    fn acl_count(&mut self, _: &str, _: &str) -> Result<u64> {
        Ok(0)
    }
    fn metadata_count(&mut self, _: &str) -> Result<u64> {
        Ok(0)
    }

    /// Applies the few records these tests make, as a backend would.
    fn emit(&mut self, record: Record, _: Option<(&mime::Summary, &[u8])>) -> Result<()> {
        match &record {
            Record::UserAdded { user, .. } => {
                self.state.users.insert(user.clone());
            }
            Record::MailboxCreated {
                user,
                mailbox,
                name,
                uid_validity,
                special_use,
            } => {
                let last = self
                    .state
                    .uid_validity_last
                    .entry(user.clone())
                    .or_default();
                *last = (*last).max(*uid_validity);
                self.state.mailboxes.insert(
                    (user.clone(), mailbox.clone()),
                    MailboxInfo {
                        id: mailbox.clone(),
                        name: name.clone(),
                        uid_validity: *uid_validity,
                        uid_next: 1,
                        highest_modseq: 1,
                        special_use: special_use.clone(),
                    },
                );
            }
            Record::MailboxDeleted { user, mailbox } => {
                self.state
                    .mailboxes
                    .remove(&(user.clone(), mailbox.clone()));
            }
            Record::MessageAdded {
                user,
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
                let info = self.mailbox_mut(user, mailbox);
                info.uid_next = uid + 1;
                info.highest_modseq = *modseq;
                let meta = MessageMeta {
                    uid: *uid,
                    modseq: *modseq,
                    flags: flags.clone(),
                    internal_date: *internal_date,
                    internal_zone: *internal_zone,
                    save_date: *save_date,
                    size: *size,
                    blob: *blob,
                    email_id: email_id.clone(),
                    thread_id: thread_id.clone(),
                    damaged: false,
                };
                let key = (user.clone(), mailbox.clone(), *uid);
                self.state.messages.insert(key, meta);
            }
            Record::FlagsChanged {
                user,
                mailbox,
                modseq,
                messages,
                ..
            } => {
                self.mailbox_mut(user, mailbox).highest_modseq = *modseq;
                for (uid, flags) in messages {
                    let key = (user.clone(), mailbox.clone(), *uid);
                    if let Some(meta) = self.state.messages.get_mut(&key) {
                        meta.flags = flags.clone();
                        meta.modseq = *modseq;
                    }
                }
            }
            Record::Expunged {
                user,
                mailbox,
                modseq,
                messages,
            } => {
                self.mailbox_mut(user, mailbox).highest_modseq = *modseq;
                for (uid, _) in messages {
                    let key = (user.clone(), mailbox.clone(), *uid);
                    self.state.messages.remove(&key);
                }
            }
            _ => {}
        }
        self.state.records.push(record);
        Ok(())
    }
    fn store_blob(&mut self, hash: &BlobHash, _: &[u8]) -> Result<()> {
        if self.state.blobs.insert(*hash) {
            self.blob_writes += 1;
        }
        Ok(())
    }
    fn content_missing(&mut self, _: &BlobHash) -> Result<()> {
        Ok(())
    }
    fn blob_known(&mut self, hash: &BlobHash) -> Result<bool> {
        Ok(self.state.blobs.contains(hash))
    }
    fn summary_of_blob(&mut self, _: &BlobHash) -> Result<mime::Summary> {
        Ok(mime::summarize(b"", &mime::Limits::default()))
    }
    fn fail_batch(&mut self, _: &crate::error::StoreError) {}
    fn savepoint(&mut self, _: &[String], _: Option<&str>) -> Result<()> {
        self.saved = Some(self.state.clone());
        Ok(())
    }
    fn close_savepoint(&mut self, keep: bool) {
        let saved = self.saved.take().expect("a savepoint is open");
        if !keep {
            self.state = saved;
        }
    }
    fn repair_guard_holds(&mut self, _: &str, _: &RepairGuard) -> Result<bool> {
        Ok(true)
    }
    fn apply_fix(&mut self, _: &str, _: &Fix) -> Result<()> {
        Ok(())
    }
    fn set_flags_keeping_modseq(
        &mut self,
        _: &str,
        _: &str,
        _: &[(u32, Vec<String>)],
    ) -> Result<()> {
        Ok(())
    }
    fn collect_garbage(&mut self, _: u64) -> Result<Outcome> {
        Ok(Outcome::Done)
    }
    fn restore_blob(&mut self, _: &Prepared) -> Result<Outcome> {
        Ok(Outcome::Done)
    }
}

fn plan(tx: &mut MemTx, quota_messages: Option<u64>, intent: Intent) -> Result<Outcome> {
    let config = PlanConfig {
        default_quota: (None, quota_messages),
        summary_limits: mime::Limits::default(),
    };
    Planner { tx, config }.plan_contained(&intent)
}

fn message(text: &str) -> Arc<Prepared> {
    let raw = format!("Subject: {text}\r\n\r\n{text}\r\n").into_bytes();
    Arc::new(Prepared {
        hash: BlobHash::of(&raw),
        summary: mime::summarize(&raw, &mime::Limits::default()),
        summary_json: Vec::new(),
        raw,
    })
}

fn append(user: &str, message: &Arc<Prepared>) -> Intent {
    Intent::Append {
        user: user.to_string(),
        mailbox: "INBOX".to_string(),
        message: message.clone(),
        flags: vec!["\\Seen".to_string()],
        internal_date: None,
    }
}

fn add_user(tx: &mut MemTx, user: &str) {
    let intent = Intent::AddUser {
        user: user.to_string(),
        password_hash: "x".to_string(),
    };
    assert!(matches!(plan(tx, None, intent), Ok(Outcome::Done)));
}

#[test]
fn appends_get_rising_uids_and_modseqs_and_store_a_content_once() {
    let mut tx = MemTx::new();
    add_user(&mut tx, "alice");
    let inbox = tx.mailbox_by_name("alice", "INBOX").unwrap().unwrap();
    assert!(inbox.uid_validity >= tx.now as u32);
    let same = message("one");
    let mut uids = Vec::new();
    for m in [&same, &same, &message("two")] {
        match plan(&mut tx, None, append("alice", m)) {
            Ok(Outcome::Appended {
                uid, uid_validity, ..
            }) => {
                assert_eq!(uid_validity, inbox.uid_validity);
                uids.push(uid);
            }
            other => panic!("append: {other:?}"),
        }
    }
    assert_eq!(uids, [1, 2, 3]);
    let metas = tx.messages("alice", &inbox.id).unwrap();
    let modseqs: Vec<u64> = metas.iter().map(|m| m.modseq).collect();
    assert_eq!(modseqs, [2, 3, 4]);
    assert_eq!(tx.blob_writes, 2, "the same content twice is stored once");
}

#[test]
fn every_new_mailbox_gets_a_uidvalidity_above_every_earlier_one() {
    let mut tx = MemTx::new();
    add_user(&mut tx, "alice");
    let create = |name: &str| Intent::CreateMailbox {
        user: "alice".to_string(),
        name: name.to_string(),
        special_use: None,
    };
    let first = tx.uid_validity_last("alice").unwrap();
    plan(&mut tx, None, create("Projects")).unwrap();
    let projects = tx.mailbox_by_name("alice", "Projects").unwrap().unwrap();
    assert!(projects.uid_validity > first);
    let delete = Intent::DeleteMailbox {
        user: "alice".to_string(),
        name: "Projects".to_string(),
    };
    plan(&mut tx, None, delete).unwrap();
    plan(&mut tx, None, create("Projects")).unwrap();
    let again = tx.mailbox_by_name("alice", "Projects").unwrap().unwrap();
    assert!(again.uid_validity > projects.uid_validity);
    assert_ne!(again.id, projects.id);
}

#[test]
fn a_refused_append_leaves_nothing_behind() {
    let mut tx = MemTx::new();
    add_user(&mut tx, "alice");
    plan(&mut tx, Some(1), append("alice", &message("one"))).unwrap();
    let records = tx.state.records.len();
    let refused = plan(&mut tx, Some(1), append("alice", &message("two")));
    assert_eq!(refused.unwrap_err().kind, ErrorKind::OverQuota);
    assert_eq!(tx.state.records.len(), records);
    assert_eq!(tx.usage("alice").unwrap().1, 1, "one message stored");
    assert!(!tx.blob_known(&message("two").hash).unwrap());
    let unknown = plan(&mut tx, None, append("bob", &message("three")));
    assert_eq!(unknown.unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn flag_changes_take_one_modseq_and_respect_unchanged_since() {
    let mut tx = MemTx::new();
    add_user(&mut tx, "alice");
    for text in ["one", "two"] {
        plan(&mut tx, None, append("alice", &message(text))).unwrap();
    }
    let store = |flags: &[&str], since: Option<u64>| Intent::StoreFlags {
        user: "alice".to_string(),
        mailbox: MailboxRef::Name("INBOX".to_string()),
        uids: vec![1, 2],
        mode: FlagMode::Add,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        unchanged_since: since,
    };
    let Ok(Outcome::Flags {
        modseq: Some(modseq),
        messages,
        modified,
    }) = plan(&mut tx, None, store(&["\\Flagged"], None))
    else {
        panic!("flags not changed");
    };
    assert_eq!(modseq, 4, "both messages change under one new MODSEQ");
    assert!(messages.iter().all(|(_, _, m)| *m == modseq));
    assert!(modified.is_empty());
    // Setting what is set changes nothing and takes no MODSEQ.
    let Ok(Outcome::Flags { modseq: None, .. }) = plan(&mut tx, None, store(&["\\Flagged"], None))
    else {
        panic!("an unchanged STORE took a MODSEQ");
    };
    // UNCHANGEDSINCE below the messages' MODSEQ: both are reported modified.
    let Ok(Outcome::Flags { modified, .. }) = plan(&mut tx, None, store(&["$Work"], Some(3)))
    else {
        panic!("conditional STORE failed");
    };
    assert_eq!(modified, [1, 2]);
}
