//! The seam between planning a change and storing it: one open transaction
//! of a backend, as the planner (`planner.rs`) sees it.
//!
//! The planner holds every rule of the store (UID and MODSEQ allocation,
//! quota, ACL checks, flag normalisation, the outboxes' state rules) and
//! reads and writes only through this trait, so each rule is written once
//! for every backend. A backend's transaction answers reads as of every
//! record emitted before in the same batch, and keeps the records of one
//! intent undoable until the planner closes its savepoint.
//!
//! The embedded backend's implementation is `writer::EmbeddedTx`, over the
//! writer's open SQLite transactions, its pack and its journal.
//!
//! Synchronous on purpose: the planner runs on a writer thread, never on the
//! async runtime (see docs/design/postgres-cluster.md, "Sync over async").

use crate::acl::Rights;
use crate::directory::{ReplicaPosition, Sms, SpamBlock};
use crate::error::Result;
use crate::index::{MailboxInfo, MessageMeta};
use crate::intent::{Fix, Outcome, Prepared, RepairGuard};
use crate::record::Record;
use crate::subscribers::{Notice, Subscriber};
use crate::types::BlobHash;

/// One open transaction of a backend. Reads see what this transaction has
/// emitted so far; nothing is visible to anyone else before it commits.
pub(crate) trait Tx {
    /// The batch's clock, in Unix seconds (one value for the whole batch).
    fn now(&self) -> i64;
    /// A new id for an incident, post, SMS or subscriber: unique across the
    /// store's life, rising in the order of the records that create them.
    fn new_id(&mut self) -> Result<u64>;
    /// Whether this store is a replica, which takes only replication,
    /// repairs of derived data and garbage collection.
    fn is_replica(&self) -> bool;

    // Server-wide reads.
    fn user_exists(&mut self, user: &str) -> Result<bool>;
    fn alias(&mut self, address: &str) -> Result<Option<Vec<String>>>;
    fn aliases(&mut self) -> Result<Vec<(String, Vec<String>)>>;
    /// Entries naming `user` in any owner's ACL: (owner, mailbox id, identifier).
    fn acl_naming(&mut self, user: &str) -> Result<Vec<(String, String, String)>>;
    /// A user's own quota (bytes, messages); `None`: the default applies.
    fn quota(&mut self, user: &str) -> Result<(Option<u64>, Option<u64>)>;
    fn sms(&mut self, id: u64) -> Result<Option<Sms>>;
    fn sms_alerts_since(&mut self, user: &str, since: i64) -> Result<u64>;
    fn status_incident(&mut self, id: u64) -> Result<Option<status::Incident>>;
    fn status_post_incident(&mut self, post: u64) -> Result<Option<u64>>;
    fn status_fingerprint(&mut self, fingerprint: &str) -> Result<Option<u64>>;
    fn status_components(&mut self) -> Result<Vec<status::Component>>;
    fn spam_blocks(&mut self) -> Result<Vec<SpamBlock>>;
    fn admin_tokens(&mut self) -> Result<Vec<(String, i64)>>;
    fn server_metadata_count(&mut self) -> Result<u64>;
    fn subscriber(&mut self, id: u64) -> Result<Option<Subscriber>>;
    fn subscriber_by_address(&mut self, kind: &str, address: &str) -> Result<Option<Subscriber>>;
    fn subscriber_by_confirm_hash(&mut self, hash: &str) -> Result<Option<Subscriber>>;
    fn subscriber_by_unsubscribe_token(&mut self, token: &str) -> Result<Option<Subscriber>>;
    fn subscriber_count(&mut self, now: i64) -> Result<u64>;
    /// Subscription requests since `since`: (for this address, from this IP).
    fn subscribe_requests_since(
        &mut self,
        address: &str,
        ip: Option<&str>,
        since: i64,
    ) -> Result<(u64, u64)>;
    fn notice(&mut self, post: u64, subscriber: u64) -> Result<Option<Notice>>;
    /// Whose records this store holds as a replica, and up to where.
    fn replica_position(&mut self) -> Result<Option<ReplicaPosition>>;

    // One user's reads.
    fn mailboxes(&mut self, user: &str) -> Result<Vec<MailboxInfo>>;
    fn mailbox_by_name(&mut self, user: &str, name: &str) -> Result<Option<MailboxInfo>>;
    fn mailbox_by_id(&mut self, user: &str, id: &str) -> Result<Option<MailboxInfo>>;
    fn message(&mut self, user: &str, mailbox: &str, uid: u32) -> Result<Option<MessageMeta>>;
    fn messages(&mut self, user: &str, mailbox: &str) -> Result<Vec<MessageMeta>>;
    /// The messages of `uids` that exist, by UID. A backend where each
    /// lookup is a round trip reads them in one.
    fn messages_by_uid(
        &mut self,
        user: &str,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<std::collections::HashMap<u32, MessageMeta>> {
        let mut found = std::collections::HashMap::with_capacity(uids.len());
        for &uid in uids {
            if let Some(meta) = self.message(user, mailbox, uid)? {
                found.insert(uid, meta);
            }
        }
        Ok(found)
    }
    /// The stored summary of a message; `None` when it is missing or damaged
    /// (the caller then derives it from the content).
    fn summary(
        &mut self,
        user: &str,
        mailbox: &str,
        uid: u32,
        blob: &BlobHash,
    ) -> Result<Option<mime::Summary>>;
    /// Bytes and messages the user stores.
    fn usage(&mut self, user: &str) -> Result<(u64, u64)>;
    /// The thread of the user's messages with one of these Message-IDs.
    fn thread_for(&mut self, user: &str, message_ids: &[String]) -> Result<Option<String>>;
    /// The highest UIDVALIDITY the user's mailboxes ever had (deleted ones
    /// too: applying `MailboxCreated` raises it).
    fn uid_validity_last(&mut self, user: &str) -> Result<u32>;
    fn acl_entries(&mut self, user: &str, mailbox: &str) -> Result<Vec<(String, Rights)>>;
    fn acl_count(&mut self, user: &str, mailbox: &str) -> Result<u64>;
    fn metadata_count(&mut self, user: &str) -> Result<u64>;

    // Writes.
    /// Adds a record to the transaction and applies it, so later reads see it.
    /// `summary` comes with a `MessageAdded`: the parsed summary and its
    /// encoding (empty: the backend encodes it).
    fn emit(&mut self, record: Record, summary: Option<(&mime::Summary, &[u8])>) -> Result<()>;
    /// Makes sure this content is stored, once: a content stored before (or
    /// earlier in this transaction) is not stored again.
    fn store_blob(&mut self, hash: &BlobHash, raw: &[u8]) -> Result<()>;
    /// A replicated or imported message names a content the source had
    /// lost: the backend makes the reference possible without the bytes (its
    /// body then answers as damaged, never as another's).
    fn content_missing(&mut self, hash: &BlobHash) -> Result<()>;
    /// Whether this content is stored (or stored earlier in this transaction).
    fn blob_known(&mut self, hash: &BlobHash) -> Result<bool>;
    /// The summary of a stored content, parsed from its bytes.
    fn summary_of_blob(&mut self, hash: &BlobHash) -> Result<mime::Summary>;
    /// Stops the whole batch with this error: for a failure half way through
    /// records that span more than one intent's savepoint (replication).
    fn fail_batch(&mut self, error: &crate::error::StoreError);

    // Containment: one intent's changes, undone as a whole if it is refused.
    /// Opens the intent's savepoint over these users' data (and the
    /// server-wide data); `creating` is the user an `AddUser` creates.
    fn savepoint(&mut self, users: &[String], creating: Option<&str>) -> Result<()>;
    /// Closes the savepoint: keeps the intent's changes, or undoes them all.
    fn close_savepoint(&mut self, keep: bool);

    // Repairs of derived data (reconstruct).
    /// Whether the user's data is still as the repair saw it.
    fn repair_guard_holds(&mut self, user: &str, guard: &RepairGuard) -> Result<bool>;
    fn apply_fix(&mut self, user: &str, fix: &Fix) -> Result<()>;
    /// Puts flags back without a new MODSEQ (a replica's repair).
    fn set_flags_keeping_modseq(
        &mut self,
        user: &str,
        mailbox: &str,
        messages: &[(u32, Vec<String>)],
    ) -> Result<()>;

    // Intents about how a backend keeps its contents.
    fn collect_garbage(&mut self, bytes_max: u64) -> Result<Outcome>;
    /// Stores again a content that is missing or damaged here.
    fn restore_blob(&mut self, message: &Prepared) -> Result<Outcome>;
}
