//! METADATA and METADATA-SERVER (RFC 5464): GETMETADATA and SETMETADATA.
//!
//! Annotations live in the store (`store::metadata`): a mailbox's are keyed
//! by its id, so RENAME keeps them and DELETE drops them. Mailbox `""` is
//! the server: `/private/` entries there are the user's own, `/shared/` ones
//! are the server's, readable by every logged-in user and set only by an
//! administrator (`postern metadata set`), so SETMETADATA of a server
//! `/shared/` entry is `NO [NOPERM]`.
//!
//! There is no ACL yet: a user sees only their own mailboxes, so a mailbox's
//! `/shared/` entries ("visible to whoever has access to the mailbox") are
//! today the owner's alone, like its `/private/` ones, but kept apart so
//! that shared mailboxes will show them to the others.

use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{MetadataDepth, MetadataOptions};
use store::{ErrorKind, Intent, MailboxRef, MetadataLimits, MetadataValue, metadata};

/// Where the entries of a command live.
enum Target {
    /// Mailbox `""`.
    Server,
    /// A mailbox of the user: its id.
    Mailbox(String),
}

/// Checks and lower-cases the entry names; `BAD` names the first bad one.
fn entry_names<'a>(
    names: impl Iterator<Item = &'a String>,
    to_set: bool,
) -> Result<Vec<String>, Done> {
    names
        .map(|name| metadata::validate_entry(name, to_set).map_err(|e| Done::bad(e.message)))
        .collect()
}

/// The mailbox a command names, which must exist.
fn target(session: &Session, raw: &str) -> Result<Target, Done> {
    if raw.is_empty() {
        return Ok(Target::Server);
    }
    let name = session.mailbox_name(raw)?;
    match session.reader()?.mailbox(&name) {
        Ok(Some(info)) => Ok(Target::Mailbox(info.id)),
        Ok(None) => Err(Done::no_code(
            "NONEXISTENT",
            format!("no mailbox named {name}"),
        )),
        Err(e) => Err(Done::from_store(&e)),
    }
}

/// One entry's value and, by `depth`, those below it, in name order.
fn lookup(
    session: &Session,
    target: &Target,
    entry: &str,
    depth: MetadataDepth,
) -> store::Result<Vec<(String, Option<Vec<u8>>)>> {
    let reader = session
        .reader
        .as_ref()
        .ok_or_else(|| store::StoreError::invalid("not authenticated"))?;
    // Server `/shared/` entries are the server's; everything else the user's.
    let server_shared = matches!(target, Target::Server) && !metadata::is_private(entry);
    let mailbox = match target {
        Target::Server => "",
        Target::Mailbox(id) => id.as_str(),
    };
    let value = if server_shared {
        session.ctx.store.server_metadata(entry)?
    } else {
        reader.metadata(mailbox, entry)?
    };
    let mut out = vec![(entry.to_string(), value)];
    if depth != MetadataDepth::Zero {
        let children_only = depth == MetadataDepth::One;
        let below = if server_shared {
            session
                .ctx
                .store
                .server_metadata_below(entry, children_only)?
        } else {
            reader.metadata_below(mailbox, entry, children_only)?
        };
        out.extend(below.into_iter().map(|(e, v)| (e, Some(v))));
    }
    Ok(out)
}

/// Writes a value: NIL, a quoted string or literal, or a literal8 when it
/// holds NUL (RFC 5464 5: `value = nstring / literal8`).
fn write_value(out: &mut Vec<u8>, value: Option<&[u8]>, utf8: bool) {
    match value {
        Some(v) if v.contains(&0) => imap_proto::encode::literal8(out, v),
        other => imap_proto::encode::nstring(out, other, utf8),
    }
}

pub(crate) async fn get_metadata(
    session: &mut Session,
    options: MetadataOptions,
    raw: &str,
    entries: &[String],
) -> Result<Done, End> {
    let entries = match entry_names(entries.iter(), false) {
        Ok(e) => e,
        Err(done) => return Ok(done),
    };
    let target = match target(session, raw) {
        Ok(t) => t,
        Err(done) => return Ok(done),
    };
    // Entries asked for themselves are answered, NIL when they have no
    // value; those found below them only when they have one.
    let mut found: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        let rows = match lookup(session, &target, entry, options.depth) {
            Ok(rows) => rows,
            Err(e) => return Ok(Done::from_store(&e)),
        };
        for (name, value) in rows {
            if seen.insert(name.clone()) {
                found.push((name, value));
            }
        }
    }
    // MAXSIZE: longer values are left out and the longest is reported.
    let mut longest_skipped: Option<u64> = None;
    if let Some(max) = options.max_size {
        found.retain(|(_, value)| {
            let len = value.as_ref().map_or(0, |v| v.len() as u64);
            if len > max {
                longest_skipped = Some(longest_skipped.map_or(len, |l| l.max(len)));
                false
            } else {
                true
            }
        });
    }
    if !found.is_empty() {
        let utf8 = session.utf8_quoted();
        session.out.extend_from_slice(b"* METADATA ");
        session.write_mailbox(raw_name(session, raw).as_str());
        session.out.extend_from_slice(b" (");
        for (i, (name, value)) in found.iter().enumerate() {
            if i > 0 {
                session.out.push(b' ');
            }
            imap_proto::encode::astring(&mut session.out, name.as_bytes(), false);
            session.out.push(b' ');
            write_value(&mut session.out, value.as_deref(), utf8);
            session.maybe_flush().await?;
        }
        session.out.extend_from_slice(b")\r\n");
    }
    Ok(match longest_skipped {
        Some(len) => Done::ok_code(
            format!("METADATA LONGENTRIES {len}"),
            "GETMETADATA completed",
        ),
        None => Done::ok("GETMETADATA completed"),
    })
}

/// The mailbox name as answered: decoded (the session encodes it again).
fn raw_name(session: &Session, raw: &str) -> String {
    if raw.is_empty() {
        String::new()
    } else {
        session
            .mailbox_name(raw)
            .unwrap_or_else(|_| raw.to_string())
    }
}

pub(crate) async fn set_metadata(
    session: &mut Session,
    raw: &str,
    entries: Vec<(String, Option<Vec<u8>>)>,
) -> Result<Done, End> {
    let names = match entry_names(entries.iter().map(|(name, _)| name), true) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let limits = MetadataLimits {
        value_bytes_max: session.ctx.config.metadata_value_bytes_max,
        entries_max: session.ctx.config.metadata_entries_max,
    };
    if let Some(len) = entries
        .iter()
        .filter_map(|(_, v)| v.as_ref().map(|v| v.len() as u64))
        .max()
        .filter(|&len| len > limits.value_bytes_max)
    {
        let max = limits.value_bytes_max;
        return Ok(Done::no_code(
            format!("METADATA MAXSIZE {max}"),
            format!("a value of {len} bytes is over the {max} bytes allowed; nothing was set"),
        ));
    }
    let mailbox = if raw.is_empty() {
        if let Some(shared) = names.iter().find(|n| !metadata::is_private(n)) {
            return Ok(Done::no_code(
                "NOPERM",
                format!(
                    "{shared}: shared server annotations are set by the administrator (postern metadata set)"
                ),
            ));
        }
        None
    } else {
        match session.mailbox_name(raw) {
            Ok(name) => Some(MailboxRef::Name(name)),
            Err(done) => return Ok(done),
        }
    };
    let intent = Intent::SetMetadata {
        user: Some(session.user_name()),
        mailbox,
        entries: names
            .into_iter()
            .zip(entries)
            .map(|(name, (_, value))| (name, value.map(MetadataValue)))
            .collect(),
        limits,
    };
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok("SETMETADATA completed"),
        Err(e) if e.kind == ErrorKind::OverQuota => Done::no_code(
            "METADATA TOOMANY",
            format!("{}; nothing was set", e.message),
        ),
        Err(e) => Done::from_store(&e),
    })
}
