//! Other users' mailboxes: the namespaces (RFC 2342) and the one place a
//! session opens another user's index.
//!
//! A session reads its own mail through the logged-in user's `UserReader`.
//! Another user's mailbox is named in one of two namespaces:
//!
//! - `Other Users/<owner>/<name>`: `<owner>`'s mailbox `<name>`;
//! - `Shared/<name>`: the mailbox `<name>` of [`store::SHARED_OWNER`], the
//!   reserved account (no login) that holds the mailboxes operators create
//!   with `postern mailbox create-shared`.
//!
//! [`Session::open_mailbox`] is the only code that opens another owner's
//! `UserReader` for a client's name, and it hands the reader out only
//! together with the rights read from the owner's ACL, after checking `l`:
//! a mailbox the user may not look up answers exactly as a missing one
//! ([`nonexistent`]), whether the owner, the mailbox or the right is what is
//! missing ("no right, no sight"). LIST finds candidates through the
//! directory's reverse table (`Store::shared_with`) and checks each the same
//! way. Changes go to the writer as `Intent::Acting` ([`acting`]), which
//! checks the rights again inside the transaction, so a revoke that commits
//! first always wins over a session's stale view.

use crate::respond::Done;
use crate::session::{Session, canonical_inbox};
use store::{Intent, MailboxInfo, Rights, SHARED_OWNER, StoreError, UserReader};

/// The root of the other users' namespace (RFC 2342 "Other Users").
pub(crate) const OTHER_USERS: &str = "Other Users";
/// The root of the shared namespace (RFC 2342 "Shared").
pub(crate) const SHARED: &str = "Shared";

/// Where a mailbox name (decoded, as the client gave it) lives.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The logged-in user's own mailbox of that name.
    Own(String),
    /// Another owner's mailbox (`owner` as written: a canonical name or
    /// [`SHARED_OWNER`]).
    Other { owner: String, name: String },
    /// A namespace level (`Other Users`, `Other Users/bob`, `Shared`) or a
    /// name no mailbox can have there: never a mailbox.
    Level,
}

/// Parses a mailbox name into its [`Place`].
pub(crate) fn place(name: &str) -> Place {
    if name == OTHER_USERS || name == SHARED {
        return Place::Level;
    }
    if let Some(rest) = name
        .strip_prefix(OTHER_USERS)
        .and_then(|r| r.strip_prefix('/'))
    {
        let Some((owner, name)) = rest.split_once(store::SEPARATOR) else {
            return Place::Level;
        };
        // Owner names are canonical (lower case) and never the reserved one.
        if name.is_empty() || store::canonical_user_name(owner).ok().as_deref() != Some(owner) {
            return Place::Level;
        }
        return Place::Other {
            owner: owner.to_string(),
            name: canonical_inbox(name),
        };
    }
    if let Some(rest) = name.strip_prefix(SHARED).and_then(|r| r.strip_prefix('/')) {
        if rest.is_empty() {
            return Place::Level;
        }
        return Place::Other {
            owner: SHARED_OWNER.to_string(),
            name: rest.to_string(),
        };
    }
    Place::Own(name.to_string())
}

/// The name a client sees for `owner`'s mailbox `name`.
pub(crate) fn display_name(owner: &str, name: &str) -> String {
    if owner == SHARED_OWNER {
        format!("{SHARED}/{name}")
    } else {
        format!("{OTHER_USERS}/{owner}/{name}")
    }
}

/// The answer for a mailbox that does not exist or may not be seen: the same
/// words in every case, so that no answer tells them apart.
pub(crate) fn nonexistent() -> Done {
    Done::no_code("NONEXISTENT", "no such mailbox")
}

/// A store error on another owner's mailbox: "not found" in any form (user,
/// mailbox, invisible) is [`nonexistent`], never the store's own words.
pub(crate) fn hidden_error(error: &StoreError) -> Done {
    if error.kind == store::ErrorKind::NotFound {
        nonexistent()
    } else {
        Done::from_store(error)
    }
}

/// `intent`, a change to `owner`'s mail, as the logged-in `user` makes it:
/// the writer checks `user`'s rights when `owner` is someone else.
pub(crate) fn acting(user: &str, owner: &str, intent: Intent) -> Intent {
    if user == owner {
        intent
    } else {
        Intent::Acting {
            actor: user.to_string(),
            intent: Box::new(intent),
        }
    }
}

/// A mailbox the session may see, with the rights it has there.
pub(crate) struct Access {
    pub owner: String,
    /// The owner's reader, when the owner is someone else; `None`: read
    /// through the session's own reader.
    pub reader: Option<UserReader>,
    pub mailbox: MailboxInfo,
    pub rights: Rights,
}

impl Access {
    /// Whether the mailbox is another owner's.
    pub(crate) fn is_shared(&self) -> bool {
        self.reader.is_some()
    }
}

/// The mailbox `name` of `owner` and `user`'s rights there, through the
/// owner's reader; `None` when it is missing or `user` lacks `l`.
fn visible(
    reader: &UserReader,
    user: &str,
    name: &str,
) -> Result<Option<(MailboxInfo, Rights)>, StoreError> {
    let Some(mailbox) = reader.mailbox(name)? else {
        return Ok(None);
    };
    let rights = reader.rights(&mailbox.id, user)?;
    Ok(rights.contains(Rights::LOOKUP).then_some((mailbox, rights)))
}

impl Session {
    /// Opens the mailbox a client named (decoded), own or another owner's,
    /// with the logged-in user's rights on it. A missing mailbox, a missing
    /// owner and a mailbox without `l` all answer [`nonexistent`].
    pub(crate) fn open_mailbox(&self, name: &str) -> Result<Access, Done> {
        let user = self.user_name();
        match place(name) {
            Place::Own(name) => {
                let reader = self.reader()?;
                match reader.mailbox(&name) {
                    Ok(Some(mailbox)) => Ok(Access {
                        owner: user,
                        reader: None,
                        mailbox,
                        rights: Rights::ALL,
                    }),
                    Ok(None) => Err(nonexistent()),
                    Err(e) => Err(Done::from_store(&e)),
                }
            }
            Place::Level => Err(nonexistent()),
            Place::Other { owner, name } => {
                if owner == user {
                    // One's own mail is named in the personal namespace only.
                    return Err(nonexistent());
                }
                // Any failure to open the owner's index (no such user, or an
                // index being rebuilt) is "no such mailbox": a stranger must
                // not learn from the error which owners exist.
                let reader = self.ctx.store.reader(&owner).map_err(|e| {
                    if e.kind != store::ErrorKind::NotFound {
                        tracing::warn!(event = "imap_shared_owner_unavailable", owner = %owner, error = %e);
                    }
                    nonexistent()
                })?;
                match visible(&reader, &user, &name) {
                    Ok(Some((mailbox, rights))) => Ok(Access {
                        owner,
                        reader: Some(reader),
                        mailbox,
                        rights,
                    }),
                    Ok(None) => Err(nonexistent()),
                    Err(e) => Err(hidden_error(&e)),
                }
            }
        }
    }

    /// The reader that holds an opened mailbox.
    pub(crate) fn reader_of<'a>(&'a self, access: &'a Access) -> Result<&'a UserReader, Done> {
        match &access.reader {
            Some(reader) => Ok(reader),
            None => self.reader(),
        }
    }

    /// Other owners' mailboxes the logged-in user may look up, by their
    /// display names, with the owner, the mailbox and the rights. Owners
    /// whose index cannot be read are left out (logged).
    pub(crate) fn shared_mailboxes(&self) -> Vec<(String, String, MailboxInfo, Rights)> {
        let user = self.user_name();
        let candidates = match self.ctx.store.shared_with(&user) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(event = "imap_shared_list_failed", error = %e);
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        let mut current: Option<(String, UserReader)> = None;
        for (owner, id) in candidates {
            if current.as_ref().is_none_or(|(o, _)| *o != owner) {
                current = match self.ctx.store.reader(&owner) {
                    Ok(reader) => Some((owner.clone(), reader)),
                    Err(e) => {
                        tracing::warn!(event = "imap_shared_owner_unavailable", owner = %owner, error = %e);
                        None
                    }
                };
            }
            let Some((_, reader)) = current.as_ref().filter(|(o, _)| *o == owner) else {
                continue;
            };
            let Ok(Some(mailbox)) = reader.mailbox_by_id(&id) else {
                continue;
            };
            let Ok(rights) = reader.rights(&id, &user) else {
                continue;
            };
            if rights.contains(Rights::LOOKUP) {
                out.push((
                    display_name(&owner, &mailbox.name),
                    owner.clone(),
                    mailbox,
                    rights,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(owner: &str, name: &str) -> Place {
        Place::Other {
            owner: owner.into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_map_to_their_namespace() {
        assert_eq!(place("INBOX"), Place::Own("INBOX".into()));
        assert_eq!(place("Work/2026"), Place::Own("Work/2026".into()));
        assert_eq!(place("Other Users/bob/Projects"), other("bob", "Projects"));
        assert_eq!(place("Other Users/bob/inbox"), other("bob", "INBOX"));
        assert_eq!(place("Other Users/bob/a/b"), other("bob", "a/b"));
        assert_eq!(place("Shared/Support"), other(SHARED_OWNER, "Support"));
        assert_eq!(
            place("Shared/Support/2026"),
            other(SHARED_OWNER, "Support/2026")
        );
        for level in [
            "Other Users",
            "Other Users/bob",
            "Other Users/bob/",
            "Other Users/Bob/Projects",
            "Other Users/#shared/x",
            "Other Users//x",
            "Shared",
            "Shared/",
        ] {
            assert_eq!(place(level), Place::Level, "{level}");
        }
        // Only the exact roots are namespaces.
        assert_eq!(place("Other Usersx/a"), Place::Own("Other Usersx/a".into()));
        assert_eq!(place("Sharedx"), Place::Own("Sharedx".into()));
    }

    #[test]
    fn display_names_round_trip() {
        for (owner, name) in [("bob", "Projects"), (SHARED_OWNER, "Support/2026")] {
            assert_eq!(place(&display_name(owner, name)), other(owner, name));
        }
    }
}
