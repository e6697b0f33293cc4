//! The planner's access-control plans (a child module of `planner`, over
//! the same open transaction): `Intent::SetAcl`, and the
//! rights `Intent::Acting` needs, checked in the transaction that makes the
//! change, so a revoke that commits first always wins.

use super::{Planner, SEPARATOR, intent_users};
use crate::acl::{self, Rights};
use crate::error::{ErrorKind, Result, StoreError};
use crate::index::MailboxInfo;
use crate::intent::{Intent, MailboxRef, Outcome};
use crate::record::Record;
use crate::types::FlagMode;

impl Planner<'_> {
    /// A mailbox of `owner` and the rights `actor` has on it (`None`: the
    /// operator, who has all). A mailbox the actor may not look up (no `l`)
    /// is `NotFound` in the very words of a missing one, so no error tells
    /// a stranger that a name exists.
    pub(crate) fn visible_mailbox(
        &mut self,
        owner: &str,
        actor: Option<&str>,
        mailbox: &MailboxRef,
    ) -> Result<(MailboxInfo, Rights)> {
        let hidden = || StoreError::not_found("no such mailbox");
        let info = match self.mailbox_ref(owner, mailbox) {
            Ok(info) => info,
            Err(e) if e.kind == ErrorKind::NotFound => return Err(hidden()),
            Err(e) => return Err(e),
        };
        let rights = match actor {
            None => Rights::ALL,
            Some(actor) => acl::effective(owner, actor, &self.tx.acl_entries(owner, &info.id)?),
        };
        if !rights.contains(Rights::LOOKUP) {
            return Err(hidden());
        }
        Ok((info, rights))
    }

    /// [`Intent::Acting`]: checks what `actor` may do to the owner's mailbox,
    /// in this transaction, then plans the change (with the flags it may set).
    pub(super) fn plan_acting(&mut self, actor: &str, intent: &Intent) -> Result<Outcome> {
        if intent_users(intent).0 == Some(actor)
            && !matches!(
                intent,
                Intent::Copy {
                    from_user: Some(_),
                    ..
                }
            )
        {
            return self.plan(intent);
        }
        let need = |rights: Rights, needed: Rights, what: &str| {
            if rights.contains(needed) {
                Ok(())
            } else {
                Err(StoreError::denied(format!(
                    "you need the \"{needed}\" right to {what}"
                )))
            }
        };
        let name = |name: &str| MailboxRef::Name(name.to_string());
        match intent {
            Intent::Append {
                user,
                mailbox,
                message,
                flags,
                internal_date,
            } => {
                let (_, rights) = self.visible_mailbox(user, Some(actor), &name(mailbox))?;
                need(rights, Rights::INSERT, "append to this mailbox")?;
                self.plan(&Intent::Append {
                    user: user.clone(),
                    mailbox: mailbox.clone(),
                    message: message.clone(),
                    flags: permitted_flags(rights, flags),
                    internal_date: *internal_date,
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
                let (_, rights) = self.visible_mailbox(user, Some(actor), mailbox)?;
                if *mode == FlagMode::Replace {
                    // Replacing would clear flags governed by rights the actor lacks.
                    need(
                        rights,
                        Rights::SEEN
                            .union(Rights::WRITE)
                            .union(Rights::DELETE_MESSAGES),
                        "replace all flags",
                    )?;
                }
                let permitted = permitted_flags(rights, flags);
                if permitted.is_empty() && !flags.is_empty() {
                    return Err(StoreError::denied(
                        "you need the \"s\", \"t\" or \"w\" right to change these flags",
                    ));
                }
                self.plan(&Intent::StoreFlags {
                    user: user.clone(),
                    mailbox: mailbox.clone(),
                    uids: uids.clone(),
                    mode: *mode,
                    flags: permitted,
                    unchanged_since: *unchanged_since,
                })
            }
            Intent::Expunge { user, mailbox, .. } => {
                let (_, rights) = self.visible_mailbox(user, Some(actor), mailbox)?;
                need(rights, Rights::EXPUNGE, "expunge")?;
                self.plan(intent)
            }
            Intent::Remove { user, mailbox, .. } => {
                let (_, rights) = self.visible_mailbox(user, Some(actor), mailbox)?;
                need(
                    rights,
                    Rights::DELETE_MESSAGES.union(Rights::EXPUNGE),
                    "move messages out of this mailbox",
                )?;
                self.plan(intent)
            }
            Intent::Copy {
                user,
                from_user,
                from,
                to,
                remove_source,
                ..
            } => {
                let source_owner = from_user.as_deref().unwrap_or(user);
                if source_owner != actor {
                    let (_, rights) = self.visible_mailbox(source_owner, Some(actor), from)?;
                    need(rights, Rights::READ, "read messages")?;
                    if *remove_source {
                        need(
                            rights,
                            Rights::DELETE_MESSAGES.union(Rights::EXPUNGE),
                            "move messages out of this mailbox",
                        )?;
                    }
                }
                let mut flag_rights = Rights::ALL;
                if user != actor {
                    let (_, rights) = self.visible_mailbox(user, Some(actor), &name(to))?;
                    need(rights, Rights::INSERT, "copy messages into this mailbox")?;
                    flag_rights = rights;
                }
                self.copy(intent, flag_rights)
            }
            Intent::CreateMailbox {
                user, name: new, ..
            } => {
                let Some((parent, _)) = new.rsplit_once(SEPARATOR) else {
                    // Only the owner creates at the top of their hierarchy;
                    // worded as a missing parent, so it tells nothing of the owner.
                    return Err(StoreError::not_found("no such mailbox"));
                };
                let (parent, rights) = self.visible_mailbox(user, Some(actor), &name(parent))?;
                need(rights, Rights::CREATE, "create mailboxes here")?;
                let outcome = self.plan(intent)?;
                // The new mailbox starts with its parent's ACL, so whoever
                // could create it can also see it (as Cyrus and Dovecot do).
                if let Outcome::MailboxCreated { id } = &outcome {
                    let inherited = self.tx.acl_entries(user, &parent.id)?;
                    for (identifier, rights) in inherited {
                        self.tx.emit(
                            Record::AclSet {
                                user: user.clone(),
                                mailbox: id.clone(),
                                identifier,
                                rights: Some(rights.to_string()),
                            },
                            None,
                        )?;
                    }
                }
                Ok(outcome)
            }
            Intent::DeleteMailbox { user, name: old } => {
                let (_, rights) = self.visible_mailbox(user, Some(actor), &name(old))?;
                need(rights, Rights::DELETE_MAILBOX, "delete this mailbox")?;
                self.plan(intent)
            }
            Intent::RenameMailbox { user, from, to } => {
                let (_, rights) = self.visible_mailbox(user, Some(actor), &name(from))?;
                need(rights, Rights::DELETE_MAILBOX, "rename this mailbox")?;
                let Some((parent, _)) = to.rsplit_once(SEPARATOR) else {
                    // Only the owner creates at the top of their hierarchy;
                    // worded as a missing parent, so it tells nothing of the owner.
                    return Err(StoreError::not_found("no such mailbox"));
                };
                let (_, rights) = self.visible_mailbox(user, Some(actor), &name(parent))?;
                need(rights, Rights::CREATE, "create mailboxes there")?;
                self.plan(intent)
            }
            _ => Err(StoreError::invalid(
                "this change cannot be made on another user's mailbox",
            )),
        }
    }

    /// [`Intent::SetAcl`].
    pub(super) fn set_acl(&mut self, intent: &Intent) -> Result<Outcome> {
        let Intent::SetAcl {
            actor,
            user: owner,
            mailbox,
            identifier,
            change,
            entries_max,
        } = intent
        else {
            return Err(StoreError::invalid("not an ACL change"));
        };
        let (owner, change, entries_max) = (owner.as_str(), *change, *entries_max);
        let actor = actor.as_deref().filter(|a| *a != owner);
        let (target, rights) = self.visible_mailbox(owner, actor, mailbox)?;
        if !rights.contains(Rights::ADMIN) {
            return Err(StoreError::denied(
                "you need the \"a\" right to change this mailbox's ACL",
            ));
        }
        if identifier.name == owner {
            return Err(StoreError::invalid(
                "the owner always has every right; their entry cannot be changed",
            ));
        }
        if !identifier.is_anyone() && !self.tx.user_exists(&identifier.name)? {
            return Err(StoreError::invalid(format!(
                "unknown identifier {}: not a user nor \"anyone\"",
                identifier.name
            )));
        }
        let key = identifier.to_string();
        let before = self.tx.acl_count(owner, &target.id)?;
        let current = self
            .tx
            .acl_entries(owner, &target.id)?
            .into_iter()
            .find(|(i, _)| *i == key)
            .map_or(Rights::NONE, |(_, r)| r);
        let new = change.map_or(Rights::NONE, |c| c.apply(current));
        if new == current {
            return Ok(Outcome::Done);
        }
        self.tx.emit(
            Record::AclSet {
                user: owner.to_string(),
                mailbox: target.id.clone(),
                identifier: key,
                rights: (!new.is_empty()).then(|| new.to_string()),
            },
            None,
        )?;
        // Counted after the change (the savepoint undoes it when refused), so
        // changing or removing entries at the bound is always allowed.
        let after = self.tx.acl_count(owner, &target.id)?;
        if after > before && after > entries_max {
            return Err(StoreError::new(
                ErrorKind::OverQuota,
                format!("a mailbox's ACL holds at most {entries_max} entries"),
            ));
        }
        Ok(Outcome::Done)
    }
}

/// The flags of `flags` that `rights` allow setting or clearing (RFC 4314
/// 4: `s` for `\Seen`, `t` for `\Deleted`, `w` for every other flag).
pub(crate) fn permitted_flags(rights: Rights, flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|flag| {
            let needed = if flag.eq_ignore_ascii_case("\\Seen") {
                Rights::SEEN
            } else if flag.eq_ignore_ascii_case("\\Deleted") {
                Rights::DELETE_MESSAGES
            } else {
                Rights::WRITE
            };
            rights.contains(needed)
        })
        .cloned()
        .collect()
}
