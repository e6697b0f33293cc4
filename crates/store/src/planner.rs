//! The planner: turns an intent into records, with every rule of the store
//! (UID and MODSEQ allocation, quota, flag normalisation, the mailbox tree,
//! tombstones, the outboxes' state rules, status validation), over one open
//! transaction of a backend ([`Tx`]). It is written once for every backend:
//! it reads and writes only through the transaction, so what it decides is
//! what the backend commits, and a refused intent leaves nothing behind.
//!
//! Access control of a change (`Intent::Acting`, `Intent::SetAcl`) is in
//! `planner_acl.rs`; status-page subscribers in `planner_subscribers.rs`.

use crate::acl::Rights;
use crate::error::{ErrorKind, Result, StoreError};
use crate::index::MailboxInfo;
use crate::intent::{Intent, MailboxRef, Outcome, Prepared, SmsOutcome};
use crate::record::{Lsn, Record};
use crate::tx::Tx;
use crate::types::{BlobHash, apply_flag_mode, normalize_flags};
use std::collections::HashMap;
use std::sync::Arc;

#[path = "planner_acl.rs"]
mod acl_plans;
pub(crate) use acl_plans::permitted_flags;
#[path = "planner_subscribers.rs"]
pub(crate) mod subscribers;
pub use subscribers::{EMAIL_BYTES_MAX, normalize_subscriber_address};
#[cfg(test)]
#[path = "planner_tests.rs"]
mod tests;

/// Mailboxes every new user gets, with their SPECIAL-USE attribute (RFC 6154).
pub const DEFAULT_MAILBOXES: [(&str, Option<&str>); 6] = [
    ("INBOX", None),
    ("Drafts", Some("\\Drafts")),
    ("Sent", Some("\\Sent")),
    ("Trash", Some("\\Trash")),
    ("Junk", Some("\\Junk")),
    ("Archive", Some("\\Archive")),
];

/// Longest mailbox name, in bytes.
pub const MAILBOX_NAME_BYTES_MAX: usize = 1000;
/// Hierarchy separator.
pub const SEPARATOR: char = '/';

/// What the planner needs of the store's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanConfig {
    /// Quota of a user who has none of their own: bytes, messages (`None`: no limit).
    pub default_quota: (Option<u64>, Option<u64>),
    pub summary_limits: mime::Limits,
}

/// Plans intents over one open transaction.
pub(crate) struct Planner<'t> {
    pub tx: &'t mut dyn Tx,
    pub config: PlanConfig,
}

impl Planner<'_> {
    /// Checks an incident as a status record of this intent left it (the
    /// records are applied by `directory::apply`, the one place that builds
    /// incidents); a bad title, text or state refuses the intent, which undoes
    /// its records.
    fn validate_incident(&mut self, id: u64) -> Result<()> {
        self.tx
            .status_incident(id)?
            .ok_or_else(|| StoreError::not_found(format!("no incident {id}")))?
            .validate()
            .map_err(|e| StoreError::invalid(e.to_string()))
    }

    /// Stores imported incidents, skipping posts stored before (by fingerprint):
    /// a new incident is opened with its first post and resolved as of its
    /// last; an incident whose Status exists gets only its new Updates.
    fn import_status(&mut self, incidents: &[status::ImportedIncident]) -> Result<Outcome> {
        let (mut added_incidents, mut added_posts, mut duplicates) = (0u64, 0u64, 0u64);
        // A log runs newest first: store the oldest first, so ids rise with time.
        for imported in incidents.iter().rev() {
            let Some(first) = imported.posts.first() else {
                continue;
            };
            let last_index = imported.posts.len() - 1;
            let fp = first.fingerprint.to_string();
            let incident = match self.tx.status_fingerprint(&fp)? {
                Some(post) => {
                    duplicates += 1;
                    self.tx
                        .status_post_incident(post)?
                        .ok_or_else(|| StoreError::corrupt("imported post without incident"))?
                }
                None => {
                    let incident = self.tx.new_id()?;
                    let state = if last_index == 0 {
                        status::State::Resolved
                    } else {
                        status::State::Investigating
                    };
                    self.tx.emit(
                        Record::StatusOpened {
                            incident,
                            title: imported.title.clone(),
                            components: Vec::new(),
                            impact: status::Impact::None,
                            state,
                            kind: status::Kind::Incident,
                            author: first.author.clone(),
                            text: first.text.clone(),
                            at: first.at,
                            fingerprint: Some(fp),
                        },
                        None,
                    )?;
                    self.validate_incident(incident)
                        .map_err(|e| StoreError::invalid(format!("line {}: {e}", imported.line)))?;
                    added_incidents += 1;
                    added_posts += 1;
                    incident
                }
            };
            for (i, post) in imported.posts.iter().enumerate().skip(1) {
                let fp = post.fingerprint.to_string();
                if self.tx.status_fingerprint(&fp)?.is_some() {
                    duplicates += 1;
                    continue;
                }
                status::validate_author(&post.author)
                    .and_then(|()| status::validate_text(&post.text))
                    .map_err(|e| StoreError::invalid(format!("line {}: {e}", post.line)))?;
                let id = self.tx.new_id()?;
                self.tx.emit(
                    Record::StatusPosted {
                        incident,
                        post: id,
                        author: post.author.clone(),
                        text: post.text.clone(),
                        at: post.at,
                        state: (i == last_index).then_some(status::State::Resolved),
                        impact: None,
                        fingerprint: Some(fp),
                    },
                    None,
                )?;
                added_posts += 1;
            }
        }
        Ok(Outcome::StatusImported {
            incidents: added_incidents,
            posts: added_posts,
            duplicates,
        })
    }

    /// Expunges the messages of a mailbox flagged `\Deleted` (all of them
    /// with `deleted_only` false), only those of `uids` (sorted) when given.
    fn expunge(
        &mut self,
        user: &str,
        mailbox: &MailboxRef,
        uids: Option<&[u32]>,
        deleted_only: bool,
    ) -> Result<Outcome> {
        let target = self.mailbox_ref(user, mailbox)?;
        let victims: Vec<(u32, BlobHash)> = self
            .tx
            .messages(user, &target.id)?
            .into_iter()
            .filter(|m| !deleted_only || m.flags.iter().any(|f| f == "\\Deleted"))
            // A damaged row's blob reference cannot be trusted for the
            // reference count: it stays until reconstruct repairs it.
            .filter(|m| !m.damaged)
            .filter(|m| uids.is_none_or(|set| set.binary_search(&m.uid).is_ok()))
            .map(|m| (m.uid, m.blob))
            .collect();
        if victims.is_empty() {
            return Ok(Outcome::Expunged {
                uids: Vec::new(),
                modseq: None,
            });
        }
        let modseq = target.highest_modseq + 1;
        let expunged = victims.iter().map(|(uid, _)| *uid).collect();
        self.tx.emit(
            Record::Expunged {
                user: user.to_string(),
                mailbox: target.id,
                modseq,
                messages: victims,
            },
            None,
        )?;
        Ok(Outcome::Expunged {
            uids: expunged,
            modseq: Some(modseq),
        })
    }

    /// Removes `user` from aliases (one left with nobody goes) and the
    /// entries naming them from other owners' ACLs.
    fn forget_user(&mut self, user: &str) -> Result<()> {
        for (address, members) in self.tx.aliases()? {
            if !members.iter().any(|m| m == user) {
                continue;
            }
            let users: Vec<String> = members.into_iter().filter(|m| m != user).collect();
            let record = if users.is_empty() {
                Record::AliasRemoved { address }
            } else {
                Record::AliasSet { address, users }
            };
            self.tx.emit(record, None)?;
        }
        for (owner, mailbox, identifier) in self.tx.acl_naming(user)? {
            if owner == user {
                continue;
            }
            self.tx.emit(
                Record::AclSet {
                    user: owner,
                    mailbox,
                    identifier,
                    rights: None,
                },
                None,
            )?;
        }
        Ok(())
    }

    fn require_user(&mut self, user: &str) -> Result<()> {
        if self.tx.user_exists(user)? {
            Ok(())
        } else {
            Err(StoreError::not_found(format!("no such user {user}")))
        }
    }

    fn mailbox(&mut self, user: &str, name: &str) -> Result<MailboxInfo> {
        self.mailbox_ref(user, &MailboxRef::Name(name.to_string()))
    }

    fn mailbox_ref(&mut self, user: &str, mailbox: &MailboxRef) -> Result<MailboxInfo> {
        // The user was checked by `plan_contained` before the intent started.
        match mailbox {
            MailboxRef::Name(name) => self
                .tx
                .mailbox_by_name(user, name)?
                .ok_or_else(|| StoreError::not_found(format!("no mailbox named {name}"))),
            MailboxRef::Id(id) => self
                .tx
                .mailbox_by_id(user, id)?
                .ok_or_else(|| StoreError::not_found("the mailbox no longer exists")),
        }
    }

    /// Runs one intent inside a savepoint: if it is refused, or fails half
    /// way, its changes and records are undone and its neighbours in the
    /// batch are untouched.
    pub(crate) fn plan_contained(&mut self, intent: &Intent) -> Result<Outcome> {
        let read_only = self.tx.is_replica();
        match intent {
            Intent::Replicate { .. } if !read_only => {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    "this server is not a replica: it takes no other server's records",
                ));
            }
            Intent::Replicate { .. }
            | Intent::Repair { .. }
            | Intent::CollectGarbage { .. }
            | Intent::RestoreBlob { .. } => {}
            _ if read_only => {
                return Err(StoreError::new(
                    ErrorKind::ReadOnly,
                    "this server is a replica: changes are made on the primary",
                ));
            }
            _ => {}
        }
        // The user whose index the intent changes and, for a COPY or MOVE
        // from another owner's mailbox, the source's owner: both are inside
        // the savepoint, so a refusal undoes the change on either side.
        let (user, other) = intent_users(intent);
        let mut users: Vec<String> = [user, other]
            .into_iter()
            .flatten()
            .map(str::to_string)
            .collect();
        if !matches!(intent, Intent::AddUser { .. }) {
            for user in &users {
                // Check before touching the user's files, so an unknown name creates nothing.
                self.require_user(user)?;
            }
        }
        if let Intent::DeleteUser { user } | Intent::ForgetUser { user } = intent {
            // Deleting a user removes their entries from other owners' ACLs:
            // those indexes are inside the savepoint too.
            for (owner, _, _) in self.tx.acl_naming(user)? {
                if !users.contains(&owner) {
                    users.push(owner);
                }
            }
        }
        let creating = match intent {
            Intent::AddUser { user, .. } => Some(user.as_str()),
            _ => None,
        };
        self.tx.savepoint(&users, creating)?;
        let result = self.plan(intent);
        self.tx.close_savepoint(result.is_ok());
        result
    }

    fn plan(&mut self, intent: &Intent) -> Result<Outcome> {
        match intent {
            Intent::AddUser {
                user,
                password_hash,
            } => {
                if self.tx.user_exists(user)? {
                    return Err(StoreError::new(
                        ErrorKind::AlreadyExists,
                        format!("user {user} exists"),
                    ));
                }
                self.tx.emit(
                    Record::UserAdded {
                        user: user.clone(),
                        password_hash: password_hash.clone(),
                    },
                    None,
                )?;
                // The owner of the "Shared" namespace starts empty: its
                // mailboxes are the ones operators create.
                let defaults = if user == crate::acl::SHARED_OWNER {
                    &[][..]
                } else {
                    &DEFAULT_MAILBOXES[..]
                };
                for (name, special_use) in defaults {
                    self.create_mailbox(user, name, special_use.map(str::to_string))?;
                    self.tx.emit(
                        Record::Subscribed {
                            user: user.clone(),
                            name: name.to_string(),
                            subscribed: true,
                        },
                        None,
                    )?;
                }
                Ok(Outcome::Done)
            }
            Intent::DeleteUser { user } => {
                self.require_user(user)?;
                let mailboxes = self.tx.mailboxes(user)?;
                for mailbox in mailboxes {
                    self.delete_mailbox(user, &mailbox)?;
                }
                // Aliases keep reaching their other members, and entries
                // naming the user in other owners' ACLs go, so a new account
                // of the same name inherits nothing.
                self.forget_user(user)?;
                self.tx
                    .emit(Record::UserDeleted { user: user.clone() }, None)?;
                Ok(Outcome::Done)
            }
            Intent::ForgetUser { user } => {
                self.forget_user(user)?;
                Ok(Outcome::Done)
            }
            Intent::SetPassword {
                user,
                password_hash,
            } => {
                self.require_user(user)?;
                self.tx.emit(
                    Record::PasswordChanged {
                        user: user.clone(),
                        password_hash: password_hash.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetAlias { address, users } => {
                if users.is_empty() {
                    return Err(StoreError::invalid("an alias needs at least one user"));
                }
                for user in users {
                    self.require_user(user)?;
                }
                self.tx.emit(
                    Record::AliasSet {
                        address: address.clone(),
                        users: users.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::RemoveAlias { address } => {
                if self.tx.alias(address)?.is_none() {
                    return Err(StoreError::not_found(format!("no alias {address}")));
                }
                self.tx.emit(
                    Record::AliasRemoved {
                        address: address.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::CreateMailbox {
                user,
                name,
                special_use,
            } => {
                self.require_user(user)?;
                validate_mailbox_name(name)?;
                if self.tx.mailbox_by_name(user, name)?.is_some() {
                    return Err(StoreError::new(
                        ErrorKind::AlreadyExists,
                        format!("mailbox {name} exists"),
                    ));
                }
                self.create_parents(user, name)?;
                let id = self.create_mailbox(user, name, special_use.clone())?;
                Ok(Outcome::MailboxCreated { id })
            }
            Intent::DeleteMailbox { user, name } => {
                if name.eq_ignore_ascii_case("INBOX") {
                    return Err(StoreError::invalid("INBOX cannot be deleted"));
                }
                let mailbox = self.mailbox(user, name)?;
                self.delete_mailbox(user, &mailbox)?;
                Ok(Outcome::Done)
            }
            Intent::RenameMailbox { user, from, to } => self.rename_mailbox(user, from, to),
            Intent::Subscribe {
                user,
                name,
                subscribed,
            } => {
                self.require_user(user)?;
                validate_mailbox_name(name)?;
                self.tx.emit(
                    Record::Subscribed {
                        user: user.clone(),
                        name: name.clone(),
                        subscribed: *subscribed,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::Append {
                user,
                mailbox,
                message,
                flags,
                internal_date,
            } => {
                let target = self.mailbox(user, mailbox)?;
                let (date, zone) = internal_date.unwrap_or((self.tx.now(), 0));
                let uid = self.add_message(user, &target, message, flags, date, zone)?;
                Ok(Outcome::Appended {
                    mailbox: target.id,
                    uid_validity: target.uid_validity,
                    uid,
                })
            }
            Intent::StoreFlags {
                user,
                mailbox,
                uids,
                mode,
                flags,
                unchanged_since,
            } => {
                let target = self.mailbox_ref(user, mailbox)?;
                let flags = normalize_flags(flags);
                let modseq = target.highest_modseq + 1;
                let mut changes = Vec::new();
                let mut messages = Vec::new();
                let mut modified = Vec::new();
                let mut found = self.tx.messages_by_uid(user, &target.id, uids)?;
                for &uid in uids {
                    let Some(meta) = found.remove(&uid) else {
                        continue;
                    };
                    if unchanged_since.is_some_and(|since| meta.modseq > since) {
                        modified.push(uid);
                        continue;
                    }
                    let new = apply_flag_mode(&meta.flags, *mode, &flags);
                    if new != meta.flags {
                        changes.push((uid, new.clone()));
                        messages.push((uid, new, modseq));
                    } else {
                        messages.push((uid, new, meta.modseq));
                    }
                }
                let changed = !changes.is_empty();
                if changed {
                    self.tx.emit(
                        Record::FlagsChanged {
                            user: user.clone(),
                            mailbox: target.id.clone(),
                            modseq,
                            messages: changes,
                            mode: *mode,
                        },
                        None,
                    )?;
                }
                Ok(Outcome::Flags {
                    modseq: changed.then_some(modseq),
                    messages,
                    modified,
                })
            }
            Intent::Expunge {
                user,
                mailbox,
                uids,
            } => self.expunge(user, mailbox, uids.as_deref(), true),
            Intent::Remove {
                user,
                mailbox,
                uids,
            } => {
                let mut uids = uids.clone();
                uids.sort_unstable();
                self.expunge(user, mailbox, Some(&uids), false)
            }
            Intent::CollectGarbage { bytes_max } => self.tx.collect_garbage(*bytes_max),
            Intent::Replicate {
                source,
                after,
                upto,
                id_floor,
                records,
                blobs,
                lost,
            } => self.replicate(source, *after, *upto, *id_floor, records, blobs, lost),
            Intent::RestoreBlob { message } => self.tx.restore_blob(message),
            Intent::Acting { actor, intent } => self.plan_acting(actor, intent),
            Intent::SetAcl { .. } => self.set_acl(intent),
            Intent::QueueSms {
                to,
                text,
                purpose,
                receipt,
                user,
            } => {
                validate_sms(to, text, purpose)?;
                if let Some((user, per_hour_max)) = user {
                    self.require_user(user)?;
                    let sent = self.tx.sms_alerts_since(user, self.tx.now() - 3600)?;
                    if sent >= u64::from(*per_hour_max) {
                        return Err(StoreError::new(
                            ErrorKind::OverQuota,
                            format!("{user} had {sent} SMS alerts in the last hour"),
                        ));
                    }
                }
                // The id is the record's LSN: unique, and in queueing order.
                let id = self.tx.new_id()?;
                self.tx.emit(
                    Record::SmsQueued {
                        id,
                        to: to.clone(),
                        text: text.clone(),
                        purpose: purpose.clone(),
                        receipt: *receipt,
                        at: self.tx.now(),
                        user: user.as_ref().map(|(u, _)| u.clone()),
                    },
                    None,
                )?;
                Ok(Outcome::SmsQueued { id })
            }
            Intent::SetQuota {
                user,
                storage_bytes,
                messages,
            } => {
                self.require_user(user)?;
                self.tx.emit(
                    Record::QuotaSet {
                        user: user.clone(),
                        storage_bytes: *storage_bytes,
                        messages: *messages,
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetSmsAlert { user, alert } => {
                self.require_user(user)?;
                if let Some(alert) = alert {
                    validate_sms(&alert.number, "x", "alert")?;
                    let patterns = alert.from.iter().chain(&alert.to);
                    if alert.from.len() + alert.to.len() > 100
                        || patterns.clone().any(|p| p.is_empty() || p.len() > 320)
                        || alert
                            .quiet
                            .is_some_and(|(a, b)| a >= 1440 || b >= 1440 || a == b)
                        || !(-1440..=1440).contains(&alert.zone_minutes)
                        || alert.per_hour_max == 0
                        || alert.per_hour_max > 3600
                    {
                        return Err(StoreError::invalid(
                            "SMS alert: at most 100 patterns of 1 to 320 bytes, quiet hours \
                             within a day, a zone within a day, 1 to 3600 alerts an hour",
                        ));
                    }
                }
                self.tx.emit(
                    Record::SmsAlertSet {
                        user: user.clone(),
                        alert: alert.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SmsOutcome { id, outcome } => {
                let sms = self
                    .tx
                    .sms(*id)?
                    .ok_or_else(|| StoreError::not_found(format!("no SMS {id} in the outbox")))?;
                if sms.state != "queued" {
                    return Err(StoreError::invalid(format!(
                        "SMS {id} is {}, not queued",
                        sms.state
                    )));
                }
                let at = self.tx.now();
                let record = match outcome {
                    SmsOutcome::Sent { smsc_ids } => Record::SmsSent {
                        id: *id,
                        smsc_ids: smsc_ids
                            .iter()
                            .take(SMS_SEGMENTS_MAX)
                            .map(|s| smsc_id(s))
                            .collect(),
                        at,
                    },
                    SmsOutcome::Retry { not_before, reason } => Record::SmsRetry {
                        id: *id,
                        not_before: *not_before,
                        reason: bounded(reason, SMS_REASON_BYTES_MAX),
                        at,
                    },
                    SmsOutcome::Failed { reason } => Record::SmsFailed {
                        id: *id,
                        reason: bounded(reason, SMS_REASON_BYTES_MAX),
                        at,
                    },
                };
                self.tx.emit(record, None)?;
                Ok(Outcome::Done)
            }
            Intent::SmsReceipt {
                smsc_id,
                delivered,
                detail,
            } => {
                self.tx.emit(
                    Record::SmsReceipt {
                        smsc_id: self::smsc_id(smsc_id),
                        delivered: *delivered,
                        detail: bounded(detail, SMS_REASON_BYTES_MAX),
                        at: self.tx.now(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::StatusOpen {
                title,
                components,
                impact,
                state,
                kind,
                author,
                text,
                at,
            } => {
                let incident = self.tx.new_id()?;
                self.tx.emit(
                    Record::StatusOpened {
                        incident,
                        title: title.clone(),
                        components: components.clone(),
                        impact: *impact,
                        state: *state,
                        kind: *kind,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: at.unwrap_or(self.tx.now()),
                        fingerprint: None,
                    },
                    None,
                )?;
                self.validate_incident(incident)?;
                Ok(Outcome::StatusPosted {
                    incident,
                    post: incident,
                })
            }
            Intent::StatusPost {
                incident,
                author,
                text,
                state,
                impact,
                at,
            } => {
                if self.tx.status_incident(*incident)?.is_none() {
                    return Err(StoreError::not_found(format!("no incident {incident}")));
                }
                let post = self.tx.new_id()?;
                self.tx.emit(
                    Record::StatusPosted {
                        incident: *incident,
                        post,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: at.unwrap_or(self.tx.now()),
                        state: *state,
                        impact: *impact,
                        fingerprint: None,
                    },
                    None,
                )?;
                self.validate_incident(*incident)?;
                Ok(Outcome::StatusPosted {
                    incident: *incident,
                    post,
                })
            }
            Intent::StatusEdit { post, author, text } => {
                let incident = self
                    .tx
                    .status_post_incident(*post)?
                    .ok_or_else(|| StoreError::not_found(format!("no post {post}")))?;
                self.tx.emit(
                    Record::StatusEdited {
                        post: *post,
                        author: author.clone(),
                        text: status::normalize_text(text),
                        at: self.tx.now(),
                    },
                    None,
                )?;
                self.validate_incident(incident)?;
                Ok(Outcome::StatusPosted {
                    incident,
                    post: *post,
                })
            }
            Intent::StatusComponent { name, component } => {
                status::validate_component_name(name)
                    .map_err(|e| StoreError::invalid(e.to_string()))?;
                if let Some(c) = component {
                    c.validate()
                        .map_err(|e| StoreError::invalid(e.to_string()))?;
                } else if !self.tx.status_components()?.iter().any(|c| c.name == *name) {
                    return Err(StoreError::not_found(format!("no component {name}")));
                }
                self.tx.emit(
                    Record::StatusComponentSet {
                        name: name.clone(),
                        component: component.clone(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SetMetadata {
                user,
                mailbox,
                entries,
                limits,
            } => self.set_metadata(user.as_deref(), mailbox.as_ref(), entries, limits),
            Intent::SpamBlock { key, reason } => {
                if key.is_empty()
                    || key.len() > 320
                    || key.chars().any(char::is_control)
                    || reason.len() > 1000
                    || reason.chars().any(char::is_control)
                {
                    return Err(StoreError::invalid(
                        "a block key is 1 to 320 printable characters, its reason at most 1000",
                    ));
                }
                self.tx.emit(
                    Record::SpamBlockSet {
                        key: key.clone(),
                        reason: reason.clone(),
                        at: self.tx.now(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::SpamUnblock { key } => {
                if !self.tx.spam_blocks()?.iter().any(|b| b.key == *key) {
                    return Err(StoreError::not_found(format!("no block {key}")));
                }
                self.tx
                    .emit(Record::SpamBlockRemoved { key: key.clone() }, None)?;
                Ok(Outcome::Done)
            }
            Intent::AdminToken { name, hash } => {
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(StoreError::invalid(
                        "a token name is 1 to 64 printable characters",
                    ));
                }
                if hash.is_none() && !self.tx.admin_tokens()?.iter().any(|(n, _)| n == name) {
                    return Err(StoreError::not_found(format!("no token {name}")));
                }
                self.tx.emit(
                    Record::AdminTokenSet {
                        name: name.clone(),
                        hash: hash.clone(),
                        at: self.tx.now(),
                    },
                    None,
                )?;
                Ok(Outcome::Done)
            }
            Intent::StatusImport { incidents } => self.import_status(incidents),
            Intent::StatusSubscribe {
                kind,
                address,
                confirm_hash,
                unsubscribe_token,
                ip,
                limits,
            } => self.subscribe(subscribers::NewSubscriber {
                kind,
                address,
                confirm_hash: confirm_hash.as_deref(),
                unsubscribe_token,
                ip: ip.as_deref(),
                limits,
            }),
            Intent::ConfirmSubscriber { confirm_hash } => self.confirm_subscriber(confirm_hash),
            Intent::RemoveSubscriber {
                id,
                unsubscribe_token,
            } => self.remove_subscriber(*id, unsubscribe_token.as_deref()),
            Intent::NoticeOutcome {
                post,
                subscriber,
                outcome,
            } => self.notice_outcome(*post, *subscriber, outcome),
            Intent::Repair { user, guard, fixes } => {
                if !self.tx.repair_guard_holds(user, guard)? {
                    return Err(StoreError::new(
                        ErrorKind::Conflict,
                        format!("the index of {user} changed since the repair was computed"),
                    ));
                }
                for fix in fixes {
                    match fix {
                        crate::intent::Fix::RestateFlags { mailbox, messages }
                            if self.tx.is_replica() =>
                        {
                            // A replica writes no records of its own: its journal holds
                            // the primary's. The flags go back to what that journal
                            // says, at the MODSEQs it gave them; no client wrote here.
                            self.tx.set_flags_keeping_modseq(user, mailbox, messages)?;
                        }
                        crate::intent::Fix::RestateFlags { mailbox, messages } => {
                            let info = self.mailbox_ref(user, &MailboxRef::Id(mailbox.clone()))?;
                            self.tx.emit(
                                Record::FlagsChanged {
                                    user: user.clone(),
                                    mailbox: mailbox.clone(),
                                    modseq: info.highest_modseq + 1,
                                    messages: messages.clone(),
                                    mode: crate::types::FlagMode::Replace,
                                },
                                None,
                            )?;
                        }
                        other => self.tx.apply_fix(user, other)?,
                    }
                }
                tracing::info!(event = "index_repaired", user = %user, fixes = fixes.len());
                Ok(Outcome::Repaired {
                    fixes: fixes.len() as u64,
                })
            }
            Intent::Copy { .. } => self.copy(intent, Rights::ALL),
        }
    }

    /// COPY or MOVE ([`Intent::Copy`]); the copies keep only the flags
    /// `flag_rights` allow on the target (all of them for its owner).
    fn copy(&mut self, intent: &Intent, flag_rights: Rights) -> Result<Outcome> {
        let Intent::Copy {
            user,
            from_user,
            from,
            uids,
            to,
            remove_source,
        } = intent
        else {
            return Err(StoreError::invalid("not a copy"));
        };
        let from_user = from_user.as_deref().unwrap_or(user);
        let across = from_user != user;
        let source = self.mailbox_ref(from_user, from)?;
        let target = self.mailbox(user, to)?;
        let mut originals = Vec::new();
        let mut found = self.tx.messages_by_uid(from_user, &source.id, uids)?;
        for &uid in uids {
            if let Some(meta) = found.remove(&uid) {
                if meta.damaged {
                    // Its blob reference cannot be trusted: copying it could
                    // give the copy another message's bytes.
                    return Err(StoreError::corrupt(format!(
                        "UID {uid} is damaged in the index; reconstruct repairs it"
                    )));
                }
                let summary = match self.tx.summary(from_user, &source.id, uid, &meta.blob) {
                    Ok(Some(s)) => Some(s),
                    _ => None,
                };
                originals.push((meta, summary));
            }
        }
        // Resolve every summary before emitting anything, so that a damaged
        // source message refuses the whole COPY instead of committing half of it.
        let mut resolved = Vec::with_capacity(originals.len());
        for (meta, summary) in originals.iter() {
            let summary = match summary {
                Some(s) => s.clone(),
                None => self.tx.summary_of_blob(&meta.blob)?,
            };
            resolved.push(summary);
        }
        // A MOVE within the user's mail adds nothing in the end, but the
        // copies exist before the originals go: check COPY only. A MOVE
        // from another owner's mailbox adds to this user's usage.
        if !*remove_source || across {
            let bytes = originals.iter().map(|(m, _)| m.size).sum();
            self.check_quota(user, bytes, originals.len() as u64)?;
        }
        let mut pairs = Vec::new();
        let mut target = target;
        for ((meta, _), summary) in originals.iter().zip(resolved) {
            let uid = target.uid_next;
            let modseq = target.highest_modseq + 1;
            let record = Record::MessageAdded {
                user: user.clone(),
                mailbox: target.id.clone(),
                uid_validity: target.uid_validity,
                uid,
                modseq,
                internal_date: meta.internal_date,
                internal_zone: meta.internal_zone,
                save_date: self.tx.now(),
                blob: meta.blob,
                size: meta.size,
                flags: if flag_rights == Rights::ALL {
                    meta.flags.clone()
                } else {
                    permitted_flags(flag_rights, &meta.flags)
                },
                email_id: meta.email_id.clone(),
                thread_id: meta.thread_id.clone(),
            };
            self.tx.emit(record, Some((&summary, &[])))?;
            target.uid_next += 1;
            target.highest_modseq = modseq;
            pairs.push((meta.uid, uid));
        }
        let mut expunged = Vec::new();
        if *remove_source && !originals.is_empty() {
            let messages: Vec<(u32, BlobHash)> =
                originals.iter().map(|(m, _)| (m.uid, m.blob)).collect();
            expunged = messages.iter().map(|(uid, _)| *uid).collect();
            // Into the same mailbox, the adds above already used MODSEQs past the snapshot.
            let modseq = if source.id == target.id && !across {
                target.highest_modseq + 1
            } else {
                source.highest_modseq + 1
            };
            self.tx.emit(
                Record::Expunged {
                    user: from_user.to_string(),
                    mailbox: source.id.clone(),
                    modseq,
                    messages,
                },
                None,
            )?;
        }
        Ok(Outcome::Copied {
            uid_validity: target.uid_validity,
            pairs,
            expunged,
        })
    }

    /// Applies a primary's records (see `Intent::Replicate`). Checked before
    /// anything is emitted; a failure half way stops the whole batch (the
    /// records touch many users, beyond one intent's savepoints).
    #[allow(clippy::too_many_arguments)]
    fn replicate(
        &mut self,
        source: &str,
        after: Lsn,
        upto: Lsn,
        id_floor: u64,
        records: &[Record],
        blobs: &HashMap<BlobHash, Arc<Prepared>>,
        lost: &[BlobHash],
    ) -> Result<Outcome> {
        let at = match self.tx.replica_position()? {
            Some(p) if p.source == source => p.upto,
            Some(p) => {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    format!(
                        "this replica holds the records of {}, not of {source}",
                        p.source
                    ),
                ));
            }
            None => 0,
        };
        if upto <= at {
            return Ok(Outcome::Done);
        }
        if after != at {
            return Err(StoreError::new(
                ErrorKind::Conflict,
                format!("this replica is at LSN {at} of {source}, the batch starts after {after}"),
            ));
        }
        for record in records {
            if let Record::MessageAdded { blob, .. } = record
                && !blobs.contains_key(blob)
                && !lost.contains(blob)
                && !self.tx.blob_known(blob)?
            {
                return Err(StoreError::new(
                    ErrorKind::Conflict,
                    format!("the content {} was not sent", blob.to_hex()),
                ));
            }
        }
        let applied = self.apply_replicated(records, blobs);
        if let Err(e) = &applied {
            self.tx.fail_batch(e);
        }
        applied?;
        self.tx.emit(
            Record::Replicated {
                source: source.to_string(),
                upto,
                id_floor,
            },
            None,
        )?;
        Ok(Outcome::Done)
    }

    fn apply_replicated(
        &mut self,
        records: &[Record],
        blobs: &HashMap<BlobHash, Arc<Prepared>>,
    ) -> Result<()> {
        // Contents this side already had, parsed once per batch.
        let mut local: HashMap<BlobHash, mime::Summary> = HashMap::new();
        for record in records {
            if record.is_local() {
                continue;
            }
            let Record::MessageAdded { blob, .. } = record else {
                self.tx.emit(record.clone(), None)?;
                continue;
            };
            if let Some(prepared) = blobs.get(blob) {
                self.tx.store_blob(blob, &prepared.raw)?;
                let summary = (&prepared.summary, prepared.summary_json.as_slice());
                self.tx.emit(record.clone(), Some(summary))?;
                continue;
            }
            let summary = match local.get(blob) {
                Some(summary) => summary.clone(),
                None => {
                    if !self.tx.blob_known(blob)? {
                        // Lost at the source (its message is expunged later in
                        // the stream, or its body answers as damaged).
                        self.tx.content_missing(blob)?;
                    }
                    let parsed = self.local_summary(blob);
                    local.insert(*blob, parsed.clone());
                    parsed
                }
            };
            // Empty: the backend encodes the summary itself.
            self.tx.emit(record.clone(), Some((&summary, &[])))?;
        }
        Ok(())
    }

    /// The summary of a content this server already holds, for a replicated
    /// message's cache entry. One that cannot be read is logged and, like in
    /// recovery, the message is indexed anyway (its body answers
    /// `NO [UNAVAILABLE]`, and `replication check --repair` fetches it from
    /// the primary).
    fn local_summary(&mut self, hash: &BlobHash) -> mime::Summary {
        self.tx.summary_of_blob(hash).unwrap_or_else(|e| {
            tracing::error!(event = "replicate_blob_unreadable", blob = %hash.to_hex(), error = %e, "a replicated message's content is unreadable here; indexed anyway");
            mime::summarize(b"", &self.config.summary_limits)
        })
    }

    /// Refuses adding `messages` messages of `bytes` bytes in all to `user`
    /// past their quota (their own, else the default). Counts what earlier
    /// intents of this batch added: they are in the same open transaction.
    fn check_quota(&mut self, user: &str, bytes: u64, messages: u64) -> Result<()> {
        let (own_storage, own_messages) = self.tx.quota(user)?;
        let storage_max = own_storage.or(self.config.default_quota.0);
        let messages_max = own_messages.or(self.config.default_quota.1);
        if storage_max.is_none() && messages_max.is_none() {
            return Ok(());
        }
        let (used_bytes, used_messages) = self.tx.usage(user)?;
        if let Some(max) = storage_max
            && used_bytes.saturating_add(bytes) > max
        {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!("over the storage quota of {user} ({used_bytes} of {max} bytes used)"),
            ));
        }
        if let Some(max) = messages_max
            && used_messages.saturating_add(messages) > max
        {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!("over the message quota of {user} ({used_messages} of {max} messages)"),
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn add_message(
        &mut self,
        user: &str,
        target: &MailboxInfo,
        message: &Arc<Prepared>,
        flags: &[String],
        date: i64,
        zone: i16,
    ) -> Result<u32> {
        self.check_quota(user, message.raw.len() as u64, 1)?;
        // Stored once: a content already stored, or stored by this batch, is reused.
        self.tx.store_blob(&message.hash, &message.raw)?;
        let summary = &message.summary;
        let mut thread_keys = summary.references.clone();
        thread_keys.extend(summary.in_reply_to.iter().cloned());
        let thread_id = match self.tx.thread_for(user, &thread_keys)? {
            Some(t) => t,
            None => {
                let seed = summary
                    .message_id
                    .clone()
                    .unwrap_or_else(|| message.hash.to_hex());
                format!("T{}", &BlobHash::of(seed.as_bytes()).to_hex()[..16])
            }
        };
        let uid = target.uid_next;
        let record = Record::MessageAdded {
            user: user.to_string(),
            mailbox: target.id.clone(),
            uid_validity: target.uid_validity,
            uid,
            modseq: target.highest_modseq + 1,
            internal_date: date,
            internal_zone: zone,
            save_date: self.tx.now(),
            blob: message.hash,
            size: message.raw.len() as u64,
            flags: normalize_flags(flags),
            email_id: format!("M{}", &message.hash.to_hex()[..23]),
            thread_id,
        };
        self.tx
            .emit(record, Some((summary, &message.summary_json)))?;
        Ok(uid)
    }

    fn create_mailbox(
        &mut self,
        user: &str,
        name: &str,
        special_use: Option<String>,
    ) -> Result<String> {
        // Rising, and never one a deleted mailbox had: a client that cached a
        // mailbox of the same name must see that it is another one.
        let last = i64::from(self.tx.uid_validity_last(user)?);
        let uid_validity = (self.tx.now().clamp(1, u32::MAX as i64 - 1)).max(last + 1) as u32;
        let id = format!("F{:016x}", rand::random::<u64>());
        self.tx.emit(
            Record::MailboxCreated {
                user: user.to_string(),
                mailbox: id.clone(),
                name: name.to_string(),
                uid_validity,
                special_use,
            },
            None,
        )?;
        Ok(id)
    }

    /// Creates missing superiors of `name` (RFC 9051 CREATE: "a/b/c" creates "a" and "a/b").
    fn create_parents(&mut self, user: &str, name: &str) -> Result<()> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split(SEPARATOR).collect();
        for part in parts.iter().take(parts.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push(SEPARATOR);
            }
            prefix.push_str(part);
            if self.tx.mailbox_by_name(user, &prefix)?.is_none() {
                self.create_mailbox(user, &prefix.clone(), None)?;
            }
        }
        Ok(())
    }

    fn set_metadata(
        &mut self,
        user: Option<&str>,
        mailbox: Option<&MailboxRef>,
        entries: &[crate::metadata::MetadataEntry],
        limits: &crate::intent::MetadataLimits,
    ) -> Result<Outcome> {
        use crate::metadata;
        if entries.is_empty() {
            return Err(StoreError::invalid("no annotations to set"));
        }
        let mut checked = Vec::with_capacity(entries.len());
        for (entry, value) in entries {
            let entry = metadata::validate_entry(entry, true)?;
            if let Some(value) = value
                && value.0.len() as u64 > limits.value_bytes_max
            {
                return Err(StoreError::invalid(format!(
                    "the value of {entry} is {} bytes, more than the {} allowed",
                    value.0.len(),
                    limits.value_bytes_max
                )));
            }
            let wanted_private = user.is_some() && mailbox.is_none();
            let server_shared = user.is_none();
            if (wanted_private && !metadata::is_private(&entry))
                || (server_shared && metadata::is_private(&entry))
            {
                return Err(StoreError::invalid(format!(
                    "{entry}: a user sets only /private/ server annotations, an administrator only /shared/ ones"
                )));
            }
            checked.push((entry, value.clone()));
        }
        let too_many = |before: u64, after: u64| {
            if after > before && after > limits.entries_max {
                Err(StoreError::new(
                    ErrorKind::OverQuota,
                    format!("at most {} annotations are allowed", limits.entries_max),
                ))
            } else {
                Ok(())
            }
        };
        let Some(user) = user else {
            if mailbox.is_some() {
                return Err(StoreError::invalid(
                    "server annotations belong to no mailbox",
                ));
            }
            let before = self.tx.server_metadata_count()?;
            self.tx
                .emit(Record::ServerMetadataSet { entries: checked }, None)?;
            too_many(before, self.tx.server_metadata_count()?)?;
            return Ok(Outcome::Done);
        };
        let mailbox_id = match mailbox {
            Some(mailbox) => self.mailbox_ref(user, mailbox)?.id,
            None => String::new(),
        };
        let before = self.tx.metadata_count(user)?;
        self.tx.emit(
            Record::MetadataSet {
                user: user.to_string(),
                mailbox: mailbox_id,
                entries: checked,
            },
            None,
        )?;
        // Counted after the change (the savepoint undoes it when refused),
        // so replacing or removing entries at the cap is always allowed.
        too_many(before, self.tx.metadata_count(user)?)?;
        Ok(Outcome::Done)
    }

    fn delete_mailbox(&mut self, user: &str, mailbox: &MailboxInfo) -> Result<()> {
        let metas = self.tx.messages(user, &mailbox.id)?;
        if let Some(m) = metas.iter().find(|m| m.damaged) {
            // Its blob reference cannot be trusted for the reference count.
            return Err(StoreError::corrupt(format!(
                "UID {} of {} is damaged in the index; run reconstruct first",
                m.uid, mailbox.name
            )));
        }
        let messages: Vec<(u32, BlobHash)> = metas.into_iter().map(|m| (m.uid, m.blob)).collect();
        if !messages.is_empty() {
            self.tx.emit(
                Record::Expunged {
                    user: user.to_string(),
                    mailbox: mailbox.id.clone(),
                    modseq: mailbox.highest_modseq + 1,
                    messages,
                },
                None,
            )?;
        }
        self.tx.emit(
            Record::MailboxDeleted {
                user: user.to_string(),
                mailbox: mailbox.id.clone(),
            },
            None,
        )
    }

    fn rename_mailbox(&mut self, user: &str, from: &str, to: &str) -> Result<Outcome> {
        validate_mailbox_name(to)?;
        let source = self.mailbox(user, from)?;
        if self.tx.mailbox_by_name(user, to)?.is_some() {
            return Err(StoreError::new(
                ErrorKind::AlreadyExists,
                format!("mailbox {to} exists"),
            ));
        }
        let child_prefix = format!("{from}{SEPARATOR}");
        if to.starts_with(&child_prefix) {
            return Err(StoreError::invalid("cannot rename a mailbox into itself"));
        }
        self.create_parents(user, to)?;
        if from == "INBOX" {
            // RFC 9051 RENAME of INBOX: its messages move to the new mailbox; INBOX stays, empty.
            let id = self.create_mailbox(user, to, None)?;
            let messages = self.tx.messages(user, &source.id)?;
            let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
            let _ = id;
            self.plan(&Intent::Copy {
                user: user.to_string(),
                from_user: None,
                from: MailboxRef::Name("INBOX".into()),
                uids,
                to: to.to_string(),
                remove_source: true,
            })?;
            return Ok(Outcome::Done);
        }
        let children: Vec<MailboxInfo> = self
            .tx
            .mailboxes(user)?
            .into_iter()
            .filter(|m| m.name.starts_with(&child_prefix))
            .collect();
        for child in &children {
            let name = format!("{to}{}", &child.name[from.len()..]);
            if self.tx.mailbox_by_name(user, &name)?.is_some() {
                return Err(StoreError::new(
                    ErrorKind::AlreadyExists,
                    format!("mailbox {name} exists"),
                ));
            }
        }
        self.tx.emit(
            Record::MailboxRenamed {
                user: user.to_string(),
                mailbox: source.id,
                name: to.to_string(),
            },
            None,
        )?;
        for child in children {
            let name = format!("{to}{}", &child.name[from.len()..]);
            self.tx.emit(
                Record::MailboxRenamed {
                    user: user.to_string(),
                    mailbox: child.id,
                    name,
                },
                None,
            )?;
        }
        Ok(Outcome::Done)
    }
}

/// The user an intent changes, if any.
fn intent_user(intent: &Intent) -> Option<&str> {
    match intent {
        Intent::Acting { intent, .. } => intent_user(intent),
        Intent::SetAcl { user, .. } => Some(user),
        Intent::AddUser { user, .. }
        | Intent::DeleteUser { user }
        | Intent::SetPassword { user, .. }
        | Intent::CreateMailbox { user, .. }
        | Intent::DeleteMailbox { user, .. }
        | Intent::RenameMailbox { user, .. }
        | Intent::Subscribe { user, .. }
        | Intent::Append { user, .. }
        | Intent::StoreFlags { user, .. }
        | Intent::Expunge { user, .. }
        | Intent::Remove { user, .. }
        | Intent::Repair { user, .. }
        | Intent::SetQuota { user, .. }
        | Intent::SetSmsAlert { user, .. }
        | Intent::Copy { user, .. } => Some(user),
        Intent::SetMetadata { user, .. } => user.as_deref(),
        Intent::SetAlias { .. }
        | Intent::ForgetUser { .. }
        | Intent::RemoveAlias { .. }
        | Intent::CollectGarbage { .. }
        | Intent::Replicate { .. }
        | Intent::RestoreBlob { .. }
        | Intent::QueueSms { .. }
        | Intent::SmsOutcome { .. }
        | Intent::SmsReceipt { .. }
        | Intent::StatusOpen { .. }
        | Intent::StatusPost { .. }
        | Intent::StatusEdit { .. }
        | Intent::StatusComponent { .. }
        | Intent::StatusImport { .. }
        | Intent::AdminToken { .. }
        | Intent::SpamBlock { .. }
        | Intent::SpamUnblock { .. }
        | Intent::StatusSubscribe { .. }
        | Intent::ConfirmSubscriber { .. }
        | Intent::RemoveSubscriber { .. }
        | Intent::NoticeOutcome { .. } => None,
    }
}

/// The users whose indexes an intent changes: its user and, for a COPY or
/// MOVE from another owner's mailbox, that owner.
pub(crate) fn intent_users(intent: &Intent) -> (Option<&str>, Option<&str>) {
    let user = intent_user(intent);
    let other = match intent {
        Intent::Acting { intent, .. } => intent_users(intent).1,
        Intent::Copy {
            from_user: Some(from),
            ..
        } => Some(from.as_str()),
        _ => None,
    };
    (user, other.filter(|o| Some(*o) != user))
}

/// Longest SMS text the outbox takes, in bytes (the segment cap, checked by the
/// caller that knows the configuration, is the real bound; this one protects the store).
pub const SMS_TEXT_BYTES_MAX: usize = 4096;
/// Most SMSC message ids kept for one SMS (one per segment).
const SMS_SEGMENTS_MAX: usize = 255;
/// SMSC message ids and reasons come from the SMSC: cut, never refused.
const SMSC_ID_BYTES_MAX: usize = 128;
const SMS_REASON_BYTES_MAX: usize = 1000;
/// An outbox entry's fields as the store keeps them: `to` in E.164 (`+`, then 7
/// to 15 digits, the first not 0), a text that is not empty or too long, a short
/// lowercase purpose.
pub fn validate_sms(to: &str, text: &str, purpose: &str) -> Result<()> {
    let digits = to.strip_prefix('+').unwrap_or("");
    // 7: the shortest numbers in use (+290 xxxx, Saint Helena); 15: E.164's longest.
    if !(7..=15).contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(StoreError::invalid(format!(
            "{to:?} is not an E.164 number (+ and 7 to 15 digits)"
        )));
    }
    if text.is_empty() || text.len() > SMS_TEXT_BYTES_MAX {
        return Err(StoreError::invalid(format!(
            "SMS text must be 1 to {SMS_TEXT_BYTES_MAX} bytes, not {}",
            text.len()
        )));
    }
    if purpose.is_empty()
        || purpose.len() > 32
        || !purpose.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
    {
        return Err(StoreError::invalid(format!(
            "SMS purpose {purpose:?}: 1 to 32 of a-z and -"
        )));
    }
    Ok(())
}

/// A string from the SMSC as the store keeps it: control characters (terminal
/// escapes in `sms list`) replaced by spaces, cut to at most `max` bytes at a
/// character boundary.
fn bounded(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut end = clean.len().min(max);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean[..end].to_string()
}

/// An SMSC message id as a key: bounded, no whitespace (ids are listed space
/// separated), never empty.
fn smsc_id(id: &str) -> String {
    let id: String = bounded(id, SMSC_ID_BYTES_MAX)
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    if id.is_empty() { "-".to_string() } else { id }
}

/// Mailbox names as stored: UTF-8, `/` separated, no empty levels, no control characters.
pub fn validate_mailbox_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > MAILBOX_NAME_BYTES_MAX
        || name.starts_with(SEPARATOR)
        || name.ends_with(SEPARATOR)
        || name.contains("//")
        || name.chars().any(|c| c.is_control() || c == '*' || c == '%');
    if bad {
        Err(StoreError::invalid(format!(
            "invalid mailbox name {name:?}"
        )))
    } else {
        Ok(())
    }
}
