//! Access control lists (IMAP ACL, RFC 4314): rights, identifiers, and the
//! tables that hold them.
//!
//! - A user index holds the ACL of the user's own mailboxes, table `acl`
//!   (mailbox id, identifier, rights), keyed by the mailbox's stable id, so
//!   RENAME keeps it and DELETE drops it with the mailbox. This is the
//!   authority every rights check reads (the writer's, inside the
//!   transaction that changes the mailbox, and the sessions').
//! - `server.sqlite` holds the same rows the other way round, table
//!   `acl_grants` (grantee identifier, owner, mailbox id, rights), so a
//!   grantee's LIST finds the mailboxes shared with them without opening
//!   every user's index. It only says where to look: rights are always
//!   read again from the owner's index.
//!
//! Both are derived from one journal record, `AclSet`. The owner of a
//! mailbox always has every right ([`Rights::ALL`]), whatever the table says;
//! nobody can be given rights "as the owner". Identifiers are user names,
//! `anyone`, and either of them with a leading `-` (negative rights, RFC 4314
//! 2): the rights of a user are the union of their own entry and `anyone`'s,
//! minus the union of `-user`'s and `-anyone`'s.

use crate::error::{Result, StoreError};
use rusqlite::{Connection, params};
use std::fmt;

/// The identifier that stands for every user (RFC 4314 2).
pub const ANYONE: &str = "anyone";

/// The reserved account that owns the mailboxes of the "Shared" namespace.
/// It is a user of the directory like any other (its index, reconstruct,
/// replication), but its name is not a valid login name
/// ([`crate::canonical_user_name`] refuses `#`) and its password hash
/// verifies nothing, so nobody can log in as it. Operators create its
/// mailboxes with `postern mailbox create-shared` and grant rights with
/// `postern acl set '#shared' NAME ...`.
pub const SHARED_OWNER: &str = "#shared";

/// The rights letters in the order RFC 4314 lists them; [`Rights`] bit `i`
/// is `LETTERS[i]`.
const LETTERS: &[u8; 11] = b"lrswipkxtea";

/// A set of rights (RFC 4314 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights(u16);

impl Rights {
    pub const NONE: Rights = Rights(0);
    /// `lrswipkxtea`: what an owner has.
    pub const ALL: Rights = Rights((1 << LETTERS.len()) - 1);
    pub const LOOKUP: Rights = Rights(1 << 0);
    pub const READ: Rights = Rights(1 << 1);
    pub const SEEN: Rights = Rights(1 << 2);
    pub const WRITE: Rights = Rights(1 << 3);
    pub const INSERT: Rights = Rights(1 << 4);
    pub const POST: Rights = Rights(1 << 5);
    pub const CREATE: Rights = Rights(1 << 6);
    pub const DELETE_MAILBOX: Rights = Rights(1 << 7);
    pub const DELETE_MESSAGES: Rights = Rights(1 << 8);
    pub const EXPUNGE: Rights = Rights(1 << 9);
    pub const ADMIN: Rights = Rights(1 << 10);
    /// The obsolete `c` of RFC 2086 (RFC 4314 2.1.1): `k` and `x`.
    pub const OBSOLETE_CREATE: Rights = Rights(Self::CREATE.0 | Self::DELETE_MAILBOX.0);
    /// The obsolete `d`: `e` and `t`.
    pub const OBSOLETE_DELETE: Rights = Rights(Self::EXPUNGE.0 | Self::DELETE_MESSAGES.0);

    /// Parses a rights string as SETACL sends it (without a `+`/`-`
    /// prefix): letters of `lrswipkxtea`, and the obsolete `c` and `d`
    /// mapped to what they stand for. Any other character is refused
    /// (RFC 4314 3.1: `NO` for a right the server does not know), as is a
    /// string longer than every right written twice.
    pub fn parse(text: &str) -> Result<Rights> {
        if text.len() > 2 * (LETTERS.len() + 2) {
            return Err(StoreError::invalid("too many rights characters"));
        }
        let mut rights = Rights::NONE;
        for c in text.bytes() {
            rights = rights.union(match c {
                b'c' => Rights::OBSOLETE_CREATE,
                b'd' => Rights::OBSOLETE_DELETE,
                _ => match LETTERS.iter().position(|l| *l == c) {
                    Some(i) => Rights(1 << i),
                    None => {
                        return Err(StoreError::invalid(format!(
                            "unknown right {:?}: rights are letters of \"lrswipkxtea\"",
                            char::from(c)
                        )));
                    }
                },
            });
        }
        Ok(rights)
    }

    pub fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn intersects(self, other: Rights) -> bool {
        self.0 & other.0 != 0
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    pub fn minus(self, other: Rights) -> Rights {
        Rights(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The rights as IMAP answers them (GETACL, MYRIGHTS): the letters, then
    /// `c` when any of `k`/`x` is present and `d` when any of `e`/`t` is,
    /// so RFC 2086 clients see what they may do (RFC 4314 2.1.1).
    pub fn to_imap(self) -> String {
        let mut text = self.to_string();
        if self.intersects(Rights::OBSOLETE_CREATE) {
            text.push('c');
        }
        if self.intersects(Rights::OBSOLETE_DELETE) {
            text.push('d');
        }
        text
    }
}

/// The letters, in `lrswipkxtea` order: the stored and journaled form.
impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, letter) in LETTERS.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                write!(f, "{}", char::from(*letter))?;
            }
        }
        Ok(())
    }
}

/// How SETACL changes an entry (RFC 4314 3.1: `+` adds, `-` removes, a bare
/// string replaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RightsChange {
    Replace(Rights),
    Add(Rights),
    Remove(Rights),
}

impl RightsChange {
    /// Parses SETACL's rights argument.
    pub fn parse(text: &str) -> Result<RightsChange> {
        if let Some(rest) = text.strip_prefix('+') {
            Ok(RightsChange::Add(Rights::parse(rest)?))
        } else if let Some(rest) = text.strip_prefix('-') {
            Ok(RightsChange::Remove(Rights::parse(rest)?))
        } else {
            Ok(RightsChange::Replace(Rights::parse(text)?))
        }
    }

    /// The rights after the change of an entry that has `current`.
    pub fn apply(self, current: Rights) -> Rights {
        match self {
            RightsChange::Replace(rights) => rights,
            RightsChange::Add(rights) => current.union(rights),
            RightsChange::Remove(rights) => current.minus(rights),
        }
    }
}

/// An identifier as it is stored: `anyone`, a canonical user name, or one of
/// them after `-` (negative rights).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// `anyone` or a canonical user name.
    pub name: String,
    pub negative: bool,
}

impl Identifier {
    /// Parses an identifier as a client sends it: `anyone` in any case, else
    /// a user name (made canonical; whether the user exists is the writer's
    /// check), each optionally after `-`.
    pub fn parse(text: &str) -> Result<Identifier> {
        let (negative, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let name = if name.eq_ignore_ascii_case(ANYONE) {
            ANYONE.to_string()
        } else {
            crate::canonical_user_name(name)?
        };
        Ok(Identifier { name, negative })
    }

    pub fn is_anyone(&self) -> bool {
        self.name == ANYONE
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str(&self.name)
    }
}

/// The rights `user` has on a mailbox of `owner` whose ACL is `entries`
/// (identifier as stored, rights).
pub fn effective(owner: &str, user: &str, entries: &[(String, Rights)]) -> Rights {
    if user == owner {
        return Rights::ALL;
    }
    let mut granted = Rights::NONE;
    let mut denied = Rights::NONE;
    for (identifier, rights) in entries {
        let (negative, name) = match identifier.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, identifier.as_str()),
        };
        if name != user && name != ANYONE {
            continue;
        }
        if negative {
            denied = denied.union(*rights);
        } else {
            granted = granted.union(*rights);
        }
    }
    granted.minus(denied)
}

/// The table of a user index.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS acl (
    mailbox TEXT NOT NULL,
    identifier TEXT NOT NULL,
    rights TEXT NOT NULL,
    PRIMARY KEY (mailbox, identifier)
) WITHOUT ROWID;
";

/// The reverse table in `server.sqlite`.
pub(crate) const SERVER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS acl_grants (
    grantee TEXT NOT NULL,
    owner TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    rights TEXT NOT NULL,
    PRIMARY KEY (grantee, owner, mailbox)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS acl_grants_by_owner ON acl_grants (owner, mailbox);
";

fn stored(text: &str) -> Rights {
    // Written by us from `Rights`' Display; anything else counts as no rights.
    Rights::parse(text).unwrap_or(Rights::NONE)
}

/// Sets (or with `None` removes) one entry of a user index's `acl`.
pub(crate) fn set(
    conn: &Connection,
    mailbox: &str,
    identifier: &str,
    rights: Option<&str>,
) -> Result<()> {
    match rights {
        Some(rights) => {
            conn.prepare_cached(
                "INSERT INTO acl (mailbox, identifier, rights) VALUES (?1, ?2, ?3)
                 ON CONFLICT (mailbox, identifier) DO UPDATE SET rights = excluded.rights",
            )?
            .execute(params![mailbox, identifier, rights])?;
        }
        None => {
            conn.prepare_cached("DELETE FROM acl WHERE mailbox = ?1 AND identifier = ?2")?
                .execute(params![mailbox, identifier])?;
        }
    }
    Ok(())
}

/// Drops a deleted mailbox's entries from a user index.
pub(crate) fn remove_mailbox(conn: &Connection, mailbox: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM acl WHERE mailbox = ?1")?
        .execute([mailbox])?;
    Ok(())
}

/// The ACL of one mailbox, by identifier.
pub fn entries(conn: &Connection, mailbox: &str) -> Result<Vec<(String, Rights)>> {
    let mut statement = conn.prepare_cached(
        "SELECT identifier, rights FROM acl WHERE mailbox = ?1 ORDER BY identifier",
    )?;
    let rows = statement.query_map([mailbox], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (identifier, rights) = row?;
        out.push((identifier, stored(&rights)));
    }
    Ok(out)
}

/// Every entry of a user index: (mailbox, identifier, rights as stored).
pub(crate) fn all(conn: &Connection) -> Result<Vec<(String, String, String)>> {
    let mut statement = conn.prepare_cached(
        "SELECT mailbox, identifier, rights FROM acl ORDER BY mailbox, identifier",
    )?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Sets (or removes) one row of `server.sqlite`'s `acl_grants`.
pub(crate) fn set_grant(
    conn: &Connection,
    owner: &str,
    mailbox: &str,
    identifier: &str,
    rights: Option<&str>,
) -> Result<()> {
    match rights {
        Some(rights) => {
            conn.prepare_cached(
                "INSERT INTO acl_grants (grantee, owner, mailbox, rights) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (grantee, owner, mailbox) DO UPDATE SET rights = excluded.rights",
            )?
            .execute(params![identifier, owner, mailbox, rights])?;
        }
        None => {
            conn.prepare_cached(
                "DELETE FROM acl_grants WHERE grantee = ?1 AND owner = ?2 AND mailbox = ?3",
            )?
            .execute(params![identifier, owner, mailbox])?;
        }
    }
    Ok(())
}

/// Drops the grants on a deleted mailbox from `server.sqlite`.
pub(crate) fn remove_mailbox_grants(conn: &Connection, owner: &str, mailbox: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM acl_grants WHERE owner = ?1 AND mailbox = ?2")?
        .execute(params![owner, mailbox])?;
    Ok(())
}

/// Drops every grant on a deleted user's mailboxes from `server.sqlite`.
pub(crate) fn remove_owner_grants(conn: &Connection, owner: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM acl_grants WHERE owner = ?1")?
        .execute([owner])?;
    Ok(())
}

/// Mailboxes whose ACL names `user` or `anyone` positively, as (owner,
/// mailbox id), owners in name order. A candidate list: the rights
/// themselves are read from each owner's index.
pub(crate) fn granted_to(conn: &Connection, user: &str) -> Result<Vec<(String, String)>> {
    let mut statement = conn.prepare_cached(
        "SELECT DISTINCT owner, mailbox FROM acl_grants
         WHERE (grantee = ?1 OR grantee = 'anyone') AND owner != ?1
         ORDER BY owner, mailbox",
    )?;
    let rows = statement.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Grants naming `user` (positively or negatively), as (owner, mailbox id,
/// identifier as stored): what a deleted user's grants are.
pub(crate) fn naming(conn: &Connection, user: &str) -> Result<Vec<(String, String, String)>> {
    let negative = format!("-{user}");
    let mut statement = conn.prepare_cached(
        "SELECT owner, mailbox, grantee FROM acl_grants WHERE grantee = ?1 OR grantee = ?2
         ORDER BY owner, mailbox",
    )?;
    let rows = statement.query_map(params![user, negative], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// How many entries a mailbox's ACL has.
pub(crate) fn count(conn: &Connection, mailbox: &str) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM acl WHERE mailbox = ?1")?
        .query_row([mailbox], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rights(text: &str) -> Rights {
        match Rights::parse(text) {
            Ok(r) => r,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    #[test]
    fn rights_parse_and_print_in_canonical_order() {
        assert_eq!(rights("").to_string(), "");
        assert_eq!(rights("rl").to_string(), "lr");
        assert_eq!(rights("aetxkpiwsrl").to_string(), "lrswipkxtea");
        assert_eq!(rights("lrswipkxtea"), Rights::ALL);
        assert_eq!(rights("llrr").to_string(), "lr");
        for bad in ["z", "L", "l r", "lr!", "é"] {
            assert!(Rights::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Rights::parse(&"l".repeat(100)).is_err());
    }

    /// RFC 4314 2.1.1: `c` is every "create" right (k, x) and `d` every
    /// "delete" right (e, t); answers name them when any of theirs is held.
    #[test]
    fn obsolete_rights_map_both_ways() {
        assert_eq!(rights("c").to_string(), "kx");
        assert_eq!(rights("d").to_string(), "te");
        assert_eq!(rights("lrc").to_imap(), "lrkxc");
        assert_eq!(rights("lrk").to_imap(), "lrkc");
        assert_eq!(rights("lre").to_imap(), "lred");
        assert_eq!(rights("lr").to_imap(), "lr");
        assert_eq!(Rights::ALL.to_imap(), "lrswipkxteacd");
    }

    #[test]
    fn setacl_changes_add_remove_or_replace() {
        let current = rights("lrs");
        let change = |text: &str| match RightsChange::parse(text) {
            Ok(c) => c.apply(current),
            Err(e) => panic!("{text:?}: {e}"),
        };
        assert_eq!(change("+iw").to_string(), "lrswi");
        assert_eq!(change("-s").to_string(), "lr");
        assert_eq!(change("l").to_string(), "l");
        assert_eq!(change("").to_string(), "");
        assert!(RightsChange::parse("+q").is_err());
    }

    #[test]
    fn identifiers_are_canonical() {
        let parse = |text: &str| Identifier::parse(text).map(|i| i.to_string());
        assert_eq!(parse("Bob").ok().as_deref(), Some("bob"));
        assert_eq!(parse("ANYONE").ok().as_deref(), Some("anyone"));
        assert_eq!(parse("-Anyone").ok().as_deref(), Some("-anyone"));
        assert_eq!(parse("-bob").ok().as_deref(), Some("-bob"));
        assert!(parse("").is_err());
        assert!(parse("-").is_err());
        assert!(parse("bo b").is_err());
        assert!(parse(SHARED_OWNER).is_err());
    }

    #[test]
    fn effective_rights_are_union_minus_negatives_and_owner_has_all() {
        let entries = vec![
            ("anyone".to_string(), rights("lr")),
            ("bob".to_string(), rights("lrswi")),
            ("-bob".to_string(), rights("w")),
            ("-anyone".to_string(), rights("r")),
            ("carol".to_string(), rights("x")),
        ];
        assert_eq!(effective("alice", "alice", &entries), Rights::ALL);
        assert_eq!(effective("alice", "bob", &entries).to_string(), "lsi");
        assert_eq!(effective("alice", "dave", &entries).to_string(), "l");
        assert_eq!(effective("alice", "carol", &entries).to_string(), "lx");
        assert_eq!(effective("alice", "dave", &[]), Rights::NONE);
    }
}
