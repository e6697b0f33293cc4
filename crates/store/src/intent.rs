//! What callers ask the writer to do, and what it answers.

use crate::metadata::{MetadataEntry, MetadataValue};
use crate::record::{Lsn, Record};
use crate::types::{BlobHash, FlagMode, SmsAlert};
use std::collections::HashMap;
use std::sync::Arc;

/// A message parsed and hashed before it reaches the writer thread, so the
/// expensive work runs in parallel on the callers' threads.
#[derive(Debug)]
pub struct Prepared {
    pub raw: Vec<u8>,
    pub hash: BlobHash,
    pub summary: mime::Summary,
    /// `summary` as the index caches it (JSON), encoded here, on the caller's
    /// thread, instead of once per recipient on the writer's.
    pub summary_json: Vec<u8>,
}

/// Names a mailbox in an intent: by name (as a client sends it) or by its
/// stable id (what a session holds for the selected mailbox, which another
/// session may rename meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxRef {
    Name(String),
    Id(String),
}

impl From<&str> for MailboxRef {
    fn from(name: &str) -> Self {
        MailboxRef::Name(name.to_string())
    }
}

impl From<String> for MailboxRef {
    fn from(name: String) -> Self {
        MailboxRef::Name(name)
    }
}

/// A change to make. One request carries one or more intents, answered in order.
#[derive(Debug, Clone)]
pub enum Intent {
    /// On a replica: a primary's records, applied as the primary wrote them
    /// (same mailbox ids, UIDs, MODSEQs and ids), journaled here under this
    /// server's own LSNs, with a `Replicated` record saying where it now
    /// stands. Applied only if it continues exactly where the last one ended
    /// (`after` is this replica's position); a batch already applied is
    /// answered `Done` again (idempotent). Local records (`Record::is_local`)
    /// in `records` are skipped.
    Replicate {
        source: String,
        after: Lsn,
        upto: Lsn,
        id_floor: u64,
        records: Arc<Vec<Record>>,
        /// Contents of the messages that this side did not have, hashed here.
        blobs: Arc<HashMap<BlobHash, Arc<Prepared>>>,
        /// Contents the primary has no good copy of either: their messages are
        /// indexed without them (as recovery does), and reported lost.
        lost: Arc<Vec<BlobHash>>,
    },
    /// Stores a message content again that is missing here or whose stored
    /// copy fails its hash (fetched from the other server of a replicated
    /// pair; `hash` was computed from these bytes). Writes only the local
    /// `BlobStored` record, so it is allowed on a replica too.
    RestoreBlob {
        message: Arc<Prepared>,
    },
    AddUser {
        user: String,
        password_hash: String,
    },
    DeleteUser {
        user: String,
    },
    /// Removes `user` from aliases and the entries naming them from other
    /// owners' ACLs, the part of [`Intent::DeleteUser`] that reaches beyond
    /// the account: with several PostgreSQL shards, run on every shard once
    /// the account is deleted (the aliases live on the first). A user that
    /// exists keeps their account; only those references go.
    ForgetUser {
        user: String,
    },
    SetPassword {
        user: String,
        password_hash: String,
    },
    SetAlias {
        address: String,
        users: Vec<String>,
    },
    RemoveAlias {
        address: String,
    },
    CreateMailbox {
        user: String,
        name: String,
        special_use: Option<String>,
    },
    DeleteMailbox {
        user: String,
        name: String,
    },
    RenameMailbox {
        user: String,
        from: String,
        to: String,
    },
    Subscribe {
        user: String,
        name: String,
        subscribed: bool,
    },
    Append {
        user: String,
        /// Mailbox name (`INBOX` for delivery).
        mailbox: String,
        message: Arc<Prepared>,
        flags: Vec<String>,
        /// Seconds since the epoch and zone in minutes; `None`: now, UTC.
        internal_date: Option<(i64, i16)>,
    },
    StoreFlags {
        user: String,
        mailbox: MailboxRef,
        uids: Vec<u32>,
        mode: FlagMode,
        flags: Vec<String>,
        unchanged_since: Option<u64>,
    },
    /// Expunge `\Deleted` messages (only those in `uids`, when given).
    Expunge {
        user: String,
        mailbox: MailboxRef,
        uids: Option<Vec<u32>>,
    },
    /// Removes the messages `uids` of a mailbox whatever their flags: the
    /// second half of a MOVE whose copies were made first in a mailbox on
    /// another PostgreSQL shard (RFC 6851 expunges without `\Deleted`).
    /// Acting for another owner, it needs the `t` and `e` rights.
    Remove {
        user: String,
        mailbox: MailboxRef,
        uids: Vec<u32>,
    },
    /// Reclaims space of unreferenced blobs: packs whose content is at least half
    /// garbage are rewritten (survivors appended to the current pack) and deleted.
    /// At most `bytes_max` bytes are copied per run, so collection never floods the disk.
    CollectGarbage {
        bytes_max: u64,
    },
    /// Puts an SMS into the durable outbox. `to` must already be E.164
    /// (`+` and 8 to 15 digits); the text's encoding is checked by the caller,
    /// which knows the segment cap.
    QueueSms {
        to: String,
        text: String,
        purpose: String,
        receipt: bool,
        /// The user a new-mail alert is for, and its hourly cap: checked in the
        /// commit that queues, so concurrent deliveries cannot pass it
        /// (refused with `OverQuota`).
        user: Option<(String, u32)>,
    },
    /// Sets a user's quota (`None`: the server default for that resource).
    SetQuota {
        user: String,
        storage_bytes: Option<u64>,
        messages: Option<u64>,
    },
    /// Sets (or with `None` removes) a user's new-mail SMS alert.
    SetSmsAlert {
        user: String,
        alert: Option<SmsAlert>,
    },
    /// What the SMSC said about a queued SMS.
    SmsOutcome {
        id: u64,
        outcome: SmsOutcome,
    },
    /// A delivery receipt; one for an unknown SMSC id is recorded and ignored.
    SmsReceipt {
        smsc_id: String,
        delivered: bool,
        detail: String,
    },
    /// Derived-data repairs computed by reconstruct: rows of one user's index set
    /// to what the journal and the blobs say. No journal record is written (the
    /// journal already says it), so a repair gives replication nothing to ship.
    /// Refused with `Conflict` when `guard` no longer holds: the index changed
    /// since the repair was computed.
    Repair {
        user: String,
        guard: RepairGuard,
        fixes: Vec<Fix>,
    },
    /// Opens a status-page incident (or maintenance) with its first post
    /// (`at`: `None` is now).
    StatusOpen {
        title: String,
        components: Vec<String>,
        impact: status::Impact,
        state: status::State,
        kind: status::Kind,
        author: String,
        text: String,
        at: Option<i64>,
    },
    /// An update on an incident; it may change the state and the impact.
    StatusPost {
        incident: u64,
        author: String,
        text: String,
        state: Option<status::State>,
        impact: Option<status::Impact>,
        at: Option<i64>,
    },
    /// Replaces a post's text, keeping the old one in its history.
    StatusEdit {
        post: u64,
        author: String,
        text: String,
    },
    /// Sets a component by hand (`None`: removes it).
    StatusComponent {
        name: String,
        component: Option<status::Component>,
    },
    /// Imports parsed incident logs; posts already stored (same fingerprint)
    /// are skipped, so importing a file twice adds nothing.
    StatusImport {
        incidents: Vec<status::ImportedIncident>,
    },
    /// Blocks inbound mail by `key` (the server's block syntax; stored as
    /// given), replacing the reason of a block already there.
    SpamBlock {
        key: String,
        reason: String,
    },
    /// Lifts a block; `NotFound` when there is none for `key`.
    SpamUnblock {
        key: String,
    },
    /// Adds (with the token's SHA-256, hex) or revokes (`None`) an admin token.
    AdminToken {
        name: String,
        hash: Option<String>,
    },
    /// Adds a status-page subscriber: pending with `confirm_hash` (the
    /// SHA-256 of the mailed token), else active at once (an admin adds).
    /// `AlreadyExists` when the address is subscribed and active; `OverQuota`
    /// over a cap of `limits`.
    StatusSubscribe {
        kind: String,
        address: String,
        confirm_hash: Option<String>,
        unsubscribe_token: String,
        ip: Option<String>,
        limits: SubscribeLimits,
    },
    /// Confirms the pending subscriber whose token has this SHA-256;
    /// `NotFound` when none has, or its link expired.
    ConfirmSubscriber {
        confirm_hash: String,
    },
    /// Removes a subscriber by id (admins) or by unsubscribe token (the link).
    RemoveSubscriber {
        id: Option<u64>,
        unsubscribe_token: Option<String>,
    },
    /// What became of one notice.
    NoticeOutcome {
        post: u64,
        subscriber: u64,
        outcome: NoticeOutcome,
    },
    /// Sets or removes (`None`) annotations (IMAP METADATA, RFC 5464), all
    /// or none. `user: Some`: the user's, on `mailbox`, or with `mailbox:
    /// None` the user's private server annotations (`/private/` entries
    /// only). `user: None`: the server's shared annotations (`/shared/`
    /// entries only; an administrator's), `mailbox` must be `None`. Entry
    /// names are checked ([`crate::metadata::validate_entry`]); a value over
    /// `limits.value_bytes_max` is `Invalid`, more entries than
    /// `limits.entries_max` (per user, or on the server) `OverQuota`.
    SetMetadata {
        user: Option<String>,
        mailbox: Option<MailboxRef>,
        entries: Vec<MetadataEntry>,
        limits: MetadataLimits,
    },
    /// Sets, changes (`change: Some`) or removes (`None`) one entry of the
    /// ACL of `user`'s mailbox (RFC 4314 SETACL / DELETEACL). `actor: None`
    /// is the operator (CLI, admin socket); a user needs the `a` right
    /// (checked by the writer, in the transaction), and without `l` the
    /// mailbox is `NotFound` as if it did not exist. The identifier must be
    /// `anyone` or an existing user other than the owner (`Invalid`); an
    /// entry that would give a mailbox more than `entries_max` entries is
    /// `OverQuota`. A change that leaves no rights removes the entry.
    SetAcl {
        actor: Option<String>,
        user: String,
        mailbox: MailboxRef,
        identifier: crate::acl::Identifier,
        change: Option<crate::acl::RightsChange>,
        entries_max: u64,
    },
    /// `intent` (a change to a mailbox of its `user`, the owner) done by
    /// `actor`, another user: the writer checks the rights the change needs
    /// in the owner's ACL inside the transaction that makes it, so a revoke
    /// committed first always wins. A mailbox without `l` for the actor is
    /// `NotFound` (worded as a missing one); a missing right is `Denied`;
    /// flags the actor may not set (`s` for `\Seen`, `t` for `\Deleted`,
    /// `w` for the rest) are dropped from STORE and APPEND. Takes
    /// `Append`, `StoreFlags`, `Expunge`, `Copy`, `CreateMailbox`,
    /// `DeleteMailbox` and `RenameMailbox`; anything else is `Invalid`.
    Acting {
        actor: String,
        intent: BoxedIntent,
    },
    /// COPY, or MOVE when `remove_source` is set, into `user`'s mailbox
    /// `to`, from `from_user`'s mailbox `from` (`None`: `user`'s own; a
    /// mailbox of another owner is reached through [`Intent::Acting`]).
    Copy {
        user: String,
        from_user: Option<String>,
        from: MailboxRef,
        uids: Vec<u32>,
        to: String,
        remove_source: bool,
    },
}

/// Why a boxed intent: `Acting` nests one.
pub type BoxedIntent = Box<Intent>;

/// What must still hold for a [`Intent::Repair`] to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairGuard {
    /// The mailbox row is as reconstruct saw it: `(uid_next, highest_modseq)`,
    /// or absent. Every change to a mailbox's messages moves one of the two.
    Mailbox {
        id: String,
        seen: Option<(u32, u64)>,
    },
    /// The user's index has applied exactly this LSN (user-wide fixes).
    AppliedLsn(u64),
    /// The user's index file is gone and no record after `at_lsn` touched the
    /// user: a fresh index is created and the fixes (computed at `at_lsn`)
    /// fill it. Its `applied_lsn` becomes `at_lsn`.
    Recreate { at_lsn: u64 },
    /// Fixes that are right whatever happened since (clearing the rebuilding mark).
    Always,
}

/// One derived-data repair (see [`Intent::Repair`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    /// Inserts or corrects a mailbox row. UIDNEXT and HIGHESTMODSEQ only grow.
    PutMailbox(crate::index::MailboxInfo),
    /// Removes a mailbox row the journal does not support, with its messages.
    RemoveMailbox(String),
    /// Inserts or corrects a message row and its cache entry (`summary`: JSON).
    PutMessage {
        mailbox: String,
        meta: crate::index::MessageMeta,
        summary: Vec<u8>,
    },
    RemoveMessage {
        mailbox: String,
        uid: u32,
    },
    PutTombstone {
        mailbox: String,
        uid: u32,
        modseq: u64,
    },
    RemoveTombstone {
        mailbox: String,
        uid: u32,
    },
    Subscribe(String),
    Unsubscribe(String),
    /// Sets an annotation (`Some`) or removes it (`None`): mailbox id (empty:
    /// the user's private server annotations), entry, value.
    PutMetadata {
        mailbox: String,
        entry: String,
        value: Option<MetadataValue>,
    },
    /// Sets an ACL entry (`Some`: rights letters as stored) or removes it
    /// (`None`): mailbox id, identifier as stored.
    PutAcl {
        mailbox: String,
        identifier: String,
        rights: Option<String>,
    },
    /// Recounts the quota usage counters from the messages.
    RecountUsage,
    /// Flags the index has wrong and clients may have seen: restated with a
    /// journaled `FlagsChanged` at a new MODSEQ, so CONDSTORE clients fetch them.
    RestateFlags {
        mailbox: String,
        messages: Vec<(u32, Vec<String>)>,
    },
    /// Raises the UIDVALIDITY floor for mailboxes created later.
    UidValidityFloor(u32),
    /// Marks the index as being rebuilt (readers answer `Unavailable`) or done.
    Rebuilding(bool),
}

/// The bounds on annotations (see [`Intent::SetMetadata`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Largest value, in bytes.
    pub value_bytes_max: u64,
    /// Most entries one user has (on all their mailboxes and their private
    /// server annotations), and the server has.
    pub entries_max: u64,
}

impl Default for MetadataLimits {
    /// 64 KiB values, 1,000 entries (the defaults of `[imap]`).
    fn default() -> Self {
        MetadataLimits {
            value_bytes_max: 64 * 1024,
            entries_max: 1000,
        }
    }
}

/// The bounds on subscribing (see [`Intent::StatusSubscribe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeLimits {
    /// Subscribers in all (active, and pending with a live link).
    pub total_max: u64,
    /// Web subscriptions for one address in the last hour.
    pub per_address_per_hour_max: u64,
    /// Web subscriptions from one client address in the last hour.
    pub per_ip_per_hour_max: u64,
}

/// What became of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeOutcome {
    /// The relay accepted the mail.
    Sent,
    /// An SMS subscriber's notice: queued in the SMS outbox (purpose
    /// `status`) in the same commit that marks the notice sent.
    QueueSms {
        text: String,
    },
    /// Temporary: try again from `not_before` (seconds since the epoch).
    Retry {
        not_before: i64,
        reason: String,
    },
    Failed {
        reason: String,
    },
}

/// The result of one send attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsOutcome {
    Sent {
        smsc_ids: Vec<String>,
    },
    /// Temporary: try again from `not_before` (seconds since the epoch).
    Retry {
        not_before: i64,
        reason: String,
    },
    Failed {
        reason: String,
    },
}

/// The answer to one intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    MailboxCreated {
        id: String,
    },
    Appended {
        mailbox: String,
        uid_validity: u32,
        uid: u32,
    },
    Flags {
        /// New MODSEQ of the changed messages (None when nothing changed).
        modseq: Option<u64>,
        /// Every message of the request that exists, with its flags and MODSEQ after the change.
        messages: Vec<(u32, Vec<String>, u64)>,
        /// UIDs not changed because of UNCHANGEDSINCE.
        modified: Vec<u32>,
    },
    Expunged {
        uids: Vec<u32>,
        modseq: Option<u64>,
    },
    Copied {
        uid_validity: u32,
        pairs: Vec<(u32, u32)>,
        expunged: Vec<u32>,
    },
    SmsQueued {
        id: u64,
    },
    /// A subscriber added, confirmed or removed.
    Subscriber {
        id: u64,
    },
    /// A status post stored: its incident and its own id.
    StatusPosted {
        incident: u64,
        post: u64,
    },
    /// What a [`Intent::StatusImport`] added and skipped.
    StatusImported {
        incidents: u64,
        posts: u64,
        duplicates: u64,
    },
    /// Fixes applied by a [`Intent::Repair`].
    Repaired {
        fixes: u64,
    },
    Collected {
        blobs_removed: u64,
        bytes_copied: u64,
        packs_deleted: u64,
    },
}
