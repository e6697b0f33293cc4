//! The authoritative change record: one entry per change, in commit order.
//!
//! Everything else the store keeps (user indexes, the directory, the blob index)
//! is derived from these records and the blobs, and can be rebuilt from them.
//! The same records are what IMAP change notifications, CONDSTORE/QRESYNC,
//! replication and cluster moves read: one source of truth for "what changed".

use crate::metadata::MetadataEntry;
use crate::types::{BlobHash, FlagMode, MailboxId, SmsAlert};
use serde::{Deserialize, Serialize};

/// A log sequence number: the position of a record in the journal, from 1.
pub type Lsn = u64;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub lsn: Lsn,
    /// Commit time, seconds since the Unix epoch.
    pub time: i64,
    pub record: Record,
}

/// A change. Mail records name the user they belong to so that one user's
/// records can be replayed, shipped or moved alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    UserAdded {
        user: String,
        password_hash: String,
    },
    PasswordChanged {
        user: String,
        password_hash: String,
    },
    /// Every mailbox of the user was deleted (and its messages expunged) by
    /// earlier records of the same commit.
    UserDeleted {
        user: String,
    },
    AliasSet {
        address: String,
        users: Vec<String>,
    },
    AliasRemoved {
        address: String,
    },
    MailboxCreated {
        user: String,
        mailbox: MailboxId,
        name: String,
        uid_validity: u32,
        special_use: Option<String>,
    },
    MailboxRenamed {
        user: String,
        mailbox: MailboxId,
        name: String,
    },
    /// The mailbox's messages were expunged by an earlier record of the same commit.
    MailboxDeleted {
        user: String,
        mailbox: MailboxId,
    },
    Subscribed {
        user: String,
        name: String,
        subscribed: bool,
    },
    /// A blob was written to a pack file. Physical, local to this server: it tells
    /// recovery where the bytes are without scanning packs.
    BlobStored {
        hash: BlobHash,
        pack: u32,
        offset: u64,
        length: u64,
    },
    /// Garbage collection dropped these unreferenced blobs (their pack is deleted
    /// once the moved survivors are durable elsewhere).
    BlobsRemoved {
        hashes: Vec<BlobHash>,
    },
    MessageAdded {
        user: String,
        mailbox: MailboxId,
        uid_validity: u32,
        uid: u32,
        modseq: u64,
        /// Seconds since the Unix epoch, and the zone the client gave (minutes east of UTC).
        internal_date: i64,
        internal_zone: i16,
        save_date: i64,
        blob: BlobHash,
        size: u64,
        flags: Vec<String>,
        email_id: String,
        thread_id: String,
    },
    FlagsChanged {
        user: String,
        mailbox: MailboxId,
        modseq: u64,
        /// UID and the complete new flag set of each changed message.
        messages: Vec<(u32, Vec<String>)>,
        /// How the change was asked for; informational (the sets above are authoritative).
        mode: FlagMode,
    },
    /// Tombstones: the UIDs leave the mailbox; `blob` lets the blob index drop a
    /// reference without reading the user's index.
    Expunged {
        user: String,
        mailbox: MailboxId,
        modseq: u64,
        messages: Vec<(u32, BlobHash)>,
    },
    /// An SMS entered the outbox. `id` is its LSN on the server that queued it,
    /// carried in the record so that a replica names it the same.
    SmsQueued {
        id: u64,
        /// E.164, `+` and digits.
        to: String,
        text: String,
        /// Why it is sent (`operator`, `alert`, `status`), for the admin listing.
        purpose: String,
        receipt: bool,
        at: i64,
        /// The user an alert is for (its hourly cap counts these).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Every segment was accepted by the SMSC, which named them so.
    SmsSent {
        id: u64,
        smsc_ids: Vec<String>,
        at: i64,
    },
    /// A temporary failure: try again from `not_before` (seconds since the epoch).
    SmsRetry {
        id: u64,
        not_before: i64,
        reason: String,
        at: i64,
    },
    /// A permanent failure, with the SMSC's reason.
    SmsFailed {
        id: u64,
        reason: String,
        at: i64,
    },
    /// A user's quota: most bytes and most messages (`None`: the server default).
    QuotaSet {
        user: String,
        storage_bytes: Option<u64>,
        messages: Option<u64>,
    },
    /// A user's new-mail SMS alert set, changed, or removed (`None`).
    SmsAlertSet {
        user: String,
        alert: Option<SmsAlert>,
    },
    /// A delivery receipt for one SMSC message id.
    SmsReceipt {
        smsc_id: String,
        delivered: bool,
        detail: String,
        at: i64,
    },
    /// Annotations (IMAP METADATA) of a user set or removed (`None`), in
    /// order: on a mailbox (its id), or the user's private server
    /// annotations (`mailbox` empty). Entry names are lower case.
    MetadataSet {
        user: String,
        mailbox: MailboxId,
        entries: Vec<MetadataEntry>,
    },
    /// One entry of a mailbox's access control list (IMAP ACL, RFC 4314)
    /// set, or removed with `rights: None`. `user` owns the mailbox (its
    /// index holds the ACL); `identifier` is `anyone` or a user name, either
    /// possibly after `-` (negative rights); `rights` are letters of
    /// `lrswipkxtea`, never empty. Applied to the owner's index (`acl`) and
    /// to `server.sqlite` (`acl_grants`, the grantee's view).
    AclSet {
        user: String,
        mailbox: MailboxId,
        identifier: String,
        rights: Option<String>,
    },
    /// The server's shared annotations set or removed (an administrator's).
    ServerMetadataSet {
        entries: Vec<MetadataEntry>,
    },
    /// A status-page incident (or maintenance) opened with its first post,
    /// its "Status". Its id, and its first post's, is this record's LSN.
    StatusOpened {
        incident: u64,
        title: String,
        components: Vec<String>,
        impact: status::Impact,
        state: status::State,
        kind: status::Kind,
        author: String,
        text: String,
        at: i64,
        /// Import fingerprint of the first post (duplicates are skipped).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
    /// An "Update" on an incident; it may change the state and the impact.
    /// Its id is this record's LSN.
    StatusPosted {
        incident: u64,
        post: u64,
        author: String,
        text: String,
        at: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<status::State>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        impact: Option<status::Impact>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fingerprint: Option<String>,
    },
    /// A post's text replaced; the old text stays in its edit history.
    StatusEdited {
        post: u64,
        author: String,
        text: String,
        at: i64,
    },
    /// A component's state set by hand (`None`: the component removed).
    StatusComponentSet {
        name: String,
        component: Option<status::Component>,
    },
    /// A spam block (`ip:…`, `net:…`, `sender:…`, `domain:…`,
    /// `fingerprint:…`; the server parses the key) set by an admin.
    SpamBlockSet {
        key: String,
        reason: String,
        at: i64,
    },
    /// A spam block lifted.
    SpamBlockRemoved {
        key: String,
    },
    /// An admin API token (only its SHA-256 is kept); `hash: None` revokes.
    AdminTokenSet {
        name: String,
        hash: Option<String>,
        at: i64,
    },
    /// A status-page subscriber: pending until confirmed when `confirm_hash`
    /// (the SHA-256 of the token mailed to them) is set, active at once when
    /// an admin added them. Its id is this record's LSN. A new pending entry
    /// for the same address replaces the old one (a fresh token).
    SubscriberAdded {
        id: u64,
        /// `email` or `sms`.
        kind: String,
        /// An email address, or an E.164 number for `sms`.
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm_hash: Option<String>,
        /// The token of the unsubscribe link. Kept whole (not hashed): every
        /// notice carries it, so it is exactly as secret as the subscriber's mail.
        unsubscribe_token: String,
        /// The client that asked, as the web server names it (a SHA-256 of its
        /// IP address), for the per-IP hourly cap; none for admins.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        at: i64,
    },
    /// The subscriber followed the confirmation link: notices go to them from now on.
    SubscriberConfirmed {
        id: u64,
        at: i64,
    },
    /// The subscriber is gone (unsubscribed or removed by an admin); notices
    /// still queued for them are dropped.
    SubscriberRemoved {
        id: u64,
        at: i64,
    },
    /// The relay accepted the notice of `post` for `subscriber` (or, for SMS,
    /// it entered the SMS outbox in the same commit).
    NoticeSent {
        post: u64,
        subscriber: u64,
        at: i64,
    },
    /// A temporary failure: try again from `not_before`.
    NoticeRetry {
        post: u64,
        subscriber: u64,
        not_before: i64,
        reason: String,
        at: i64,
    },
    /// A permanent failure (the relay refused, or too many attempts).
    NoticeFailed {
        post: u64,
        subscriber: u64,
        reason: String,
        at: i64,
    },
    /// On a replica: the records before this one in the same commit are the
    /// primary `source`'s records up to its LSN `upto`. Local, like
    /// `BlobStored`: never shipped on. `id_floor` is the lowest id (incident,
    /// post, SMS, subscriber) the primary may hand out next, so that this
    /// server, once promoted, never hands out an id the primary used.
    Replicated {
        source: String,
        upto: Lsn,
        id_floor: u64,
    },
}

impl Record {
    /// Whether the record changes the SMS outbox.
    pub fn is_sms(&self) -> bool {
        matches!(
            self,
            Record::SmsQueued { .. }
                | Record::SmsSent { .. }
                | Record::SmsRetry { .. }
                | Record::SmsFailed { .. }
                | Record::SmsReceipt { .. }
        )
    }

    /// Whether the record changes the notice outbox (the notice sender waits on it).
    pub fn is_notice(&self) -> bool {
        matches!(
            self,
            Record::StatusOpened {
                fingerprint: None,
                ..
            } | Record::StatusPosted {
                fingerprint: None,
                ..
            } | Record::SubscriberConfirmed { .. }
                | Record::NoticeRetry { .. }
        )
    }

    /// Whether the record says something about this server alone (where its
    /// blobs are, what it replicated): a primary ships every record but these.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Record::BlobStored { .. } | Record::BlobsRemoved { .. } | Record::Replicated { .. }
        )
    }

    /// The user whose index this record changes, if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Record::UserAdded { .. }
            | Record::PasswordChanged { .. }
            | Record::AliasSet { .. }
            | Record::AliasRemoved { .. }
            | Record::BlobStored { .. }
            | Record::BlobsRemoved { .. }
            | Record::SmsQueued { .. }
            | Record::SmsSent { .. }
            | Record::SmsRetry { .. }
            | Record::SmsFailed { .. }
            | Record::SmsReceipt { .. }
            | Record::SmsAlertSet { .. }
            | Record::QuotaSet { .. }
            | Record::StatusOpened { .. }
            | Record::StatusPosted { .. }
            | Record::StatusEdited { .. }
            | Record::StatusComponentSet { .. }
            | Record::AdminTokenSet { .. }
            | Record::SpamBlockSet { .. }
            | Record::SpamBlockRemoved { .. }
            | Record::SubscriberAdded { .. }
            | Record::SubscriberConfirmed { .. }
            | Record::SubscriberRemoved { .. }
            | Record::NoticeSent { .. }
            | Record::NoticeRetry { .. }
            | Record::NoticeFailed { .. }
            | Record::ServerMetadataSet { .. }
            | Record::Replicated { .. } => None,
            Record::UserDeleted { user }
            | Record::MailboxCreated { user, .. }
            | Record::MailboxRenamed { user, .. }
            | Record::MailboxDeleted { user, .. }
            | Record::Subscribed { user, .. }
            | Record::MessageAdded { user, .. }
            | Record::FlagsChanged { user, .. }
            | Record::Expunged { user, .. }
            | Record::MetadataSet { user, .. }
            | Record::AclSet { user, .. } => Some(user),
        }
    }
}
