//! The mail store: blobs, the change journal, per-user indexes. No networking.
//!
//! What is authoritative and what is derived is the central design choice:
//! - **Authoritative:** the journal ([`journal`], records in [`record`]) and the
//!   blobs in pack files ([`blobs`]). Nothing is acknowledged before both are fsync'd.
//! - **Derived:** the per-user indexes ([`index`], SQLite, with the parsed-message
//!   cache) and the server index ([`directory`]: users, aliases, blob locations).
//!   Losing or damaging them never loses mail: they are replayed from the journal.
//!
//! One writer thread ([`writer`]) commits all changes in batches with one fsync
//! per batch (group commit). Readers use their own SQLite connections ([`Store::reader`]).
//! Above this crate, nothing knows about SQLite or files: protocol code uses
//! [`Store`], [`UserReader`], [`Intent`] and [`Outcome`].

pub mod acl;
pub mod blobs;
mod checkpoint;
mod committer;
pub mod credential_cache;
pub mod directory;
pub mod error;
pub mod index;
pub mod intent;
pub mod journal;
pub mod metadata;
pub mod notify;
pub mod password;
pub mod paths;
pub mod pg;
mod planner;
pub mod reader_pool;
pub mod reconstruct;
pub mod record;
mod recovery;
pub mod repair_queue;
pub mod replication;
mod store;
pub mod subscribers;
mod tx;
pub mod types;
pub mod writer;

pub use acl::{Identifier, Rights, RightsChange, SHARED_OWNER};
pub use directory::Sms;
pub use error::{ErrorKind, Result, StoreError};
pub use index::{Changes, MailboxCounts, MailboxInfo, MessageMeta};
pub use intent::{
    Fix, Intent, MailboxRef, MetadataLimits, NoticeOutcome, Outcome, Prepared, RepairGuard,
    SmsOutcome, SubscribeLimits,
};
pub use metadata::{MetadataEntry, MetadataValue};
pub use planner::{
    DEFAULT_MAILBOXES, EMAIL_BYTES_MAX, SEPARATOR, SMS_TEXT_BYTES_MAX,
    normalize_subscriber_address, validate_mailbox_name, validate_sms,
};
pub use store::{AckWait, Quota, Store, StoreConfig, UserReader};
pub use subscribers::{Notice, Subscriber};
pub use types::{BlobHash, FlagMode, SmsAlert, canonical_user_name};
pub use writer::Stats;
