//! LIST (with LIST-EXTENDED, SPECIAL-USE and LIST-STATUS), LSUB, NAMESPACE, STATUS.

use crate::pattern::{PATTERN_CHARS_MAX, PATTERNS_MAX, Pattern};
use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{ListReturn, ListSelect, StatusItem};
use std::collections::{BTreeSet, HashMap};
use store::{MailboxInfo, Rights, SEPARATOR};

/// What a line of LIST or LSUB output stands for.
enum Entry<'a> {
    Mailbox(&'a MailboxInfo),
    /// Subscribed, but no such mailbox (any more).
    Missing,
    /// A level of hierarchy above mailboxes (or subscriptions) that is not one
    /// itself, e.g. `a` when only `a/b` exists: listed for patterns ending in
    /// `%` (RFC 9051 6.3.9), so clients that walk the tree level by level
    /// still reach the children.
    Level,
    /// Not selected itself but reported for its CHILDINFO (RFC 5258
    /// RECURSIVEMATCH): a parent, existing or not, of a subscribed mailbox
    /// that the patterns do not match.
    Parent(Option<&'a MailboxInfo>),
}

/// Mailbox names, sorted, to answer "does this name have children?" by binary
/// search instead of a scan of every mailbox.
pub(crate) struct Hierarchy<'a> {
    sorted: Vec<&'a str>,
}

impl<'a> Hierarchy<'a> {
    pub(crate) fn new(names: impl Iterator<Item = &'a str>) -> Self {
        let mut sorted: Vec<&str> = names.collect();
        sorted.sort_unstable();
        sorted.dedup();
        Hierarchy { sorted }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.sorted.binary_search(&name).is_ok()
    }

    /// Names below `name` sort together right after `name/`.
    pub(crate) fn has_children(&self, name: &str) -> bool {
        let prefix = format!("{name}{SEPARATOR}");
        let first = self.sorted.partition_point(|n| *n < prefix.as_str());
        self.sorted
            .get(first)
            .is_some_and(|n| n.starts_with(&prefix))
    }

    /// Every proper ancestor of a name that is not a name itself (`a` and
    /// `a/b` for a lone `a/b/c`), each once.
    fn missing_levels(&self) -> BTreeSet<&'a str> {
        let mut levels = BTreeSet::new();
        for name in &self.sorted {
            for (i, _) in name.match_indices(SEPARATOR) {
                let level = &name[..i];
                if !self.contains(level) {
                    levels.insert(level);
                }
            }
        }
        levels
    }
}

/// The attributes of an existing mailbox, as LIST reports them and SELECT's
/// LIST response repeats them (RFC 9051 6.3.2: "MUST be accurate").
pub(crate) fn mailbox_attributes(info: &MailboxInfo, hierarchy: &Hierarchy<'_>) -> Vec<String> {
    let mut attributes = vec![
        if hierarchy.has_children(&info.name) {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        }
        .to_string(),
    ];
    if let Some(special) = &info.special_use {
        attributes.push(special.clone());
    }
    attributes
}

pub(crate) async fn list(
    session: &mut Session,
    lsub: bool,
    reference: &str,
    patterns: &[String],
    select: &ListSelect,
    returns: &ListReturn,
) -> Result<Done, End> {
    let verb = if lsub { "LSUB" } else { "LIST" };
    if !lsub && patterns.len() == 1 && patterns[0].is_empty() {
        // The hierarchy delimiter query (RFC 9051 6.3.9).
        session
            .out
            .extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
        return Ok(Done::ok("LIST completed"));
    }
    // Bounded before any work: the matching cost is the product of the pattern
    // and name lengths, for every pattern and every mailbox.
    if patterns.len() > PATTERNS_MAX {
        return Ok(Done::bad(format!(
            "at most {PATTERNS_MAX} patterns in one {verb}"
        )));
    }
    let too_long = |s: &str| s.chars().count() > PATTERN_CHARS_MAX;
    if too_long(reference) || patterns.iter().any(|p| too_long(p)) {
        return Ok(Done::bad(format!(
            "pattern or reference longer than {PATTERN_CHARS_MAX} characters"
        )));
    }
    let reference = match session.mailbox_name(reference) {
        Ok(r) => r,
        Err(done) => return Ok(done),
    };
    let mut compiled = Vec::new();
    for pattern in patterns {
        let decoded = if session.utf8 || session.rev2 {
            pattern.clone()
        } else {
            imap_proto::utf7::decode(pattern).unwrap_or_else(|| pattern.clone())
        };
        let full = if decoded.starts_with(SEPARATOR) || reference.is_empty() {
            decoded
        } else if reference.ends_with(SEPARATOR) {
            format!("{reference}{decoded}")
        } else {
            format!("{reference}{SEPARATOR}{decoded}")
        };
        compiled.push(Pattern::new(&full));
    }
    let reader = match session.reader() {
        Ok(r) => r,
        Err(done) => return Ok(done),
    };
    let mut mailboxes = match reader.mailboxes() {
        Ok(m) => m,
        Err(e) => return Ok(Done::from_store(&e)),
    };
    // Other owners' mailboxes the user may look up, under their names in
    // the "Other Users" and "Shared" namespaces; the levels above them
    // (`Other Users`, `Other Users/bob`) come out as levels like any other.
    let mut shared_info: HashMap<String, (String, Rights)> = HashMap::new();
    for (name, owner, mut mailbox, rights) in session.shared_mailboxes() {
        mailbox.name = name;
        // The owner's special uses (their Sent, their Trash) are not the user's.
        mailbox.special_use = None;
        shared_info.insert(mailbox.id.clone(), (owner, rights));
        mailboxes.push(mailbox);
    }
    let subscriptions = reader.subscriptions().unwrap_or_default();
    let hierarchy = Hierarchy::new(mailboxes.iter().map(|m| m.name.as_str()));
    let subscribed = Hierarchy::new(subscriptions.iter().map(String::as_str));
    let only_subscribed = lsub || select.subscribed;
    let show_subscribed = lsub || select.subscribed || returns.subscribed;
    let mut entries: Vec<(String, Entry<'_>)> = Vec::new();
    if only_subscribed {
        let by_name: HashMap<&str, &MailboxInfo> =
            mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();
        for name in &subscriptions {
            let entry = match by_name.get(name.as_str()).copied() {
                Some(m) => Entry::Mailbox(m),
                None => Entry::Missing,
            };
            entries.push((name.clone(), entry));
        }
    } else {
        for m in &mailboxes {
            entries.push((m.name.clone(), Entry::Mailbox(m)));
        }
    }
    // RFC 5258 RECURSIVEMATCH: a name the patterns match, with a subscribed
    // descendant they do not match, is listed with CHILDINFO ("SUBSCRIBED"),
    // so a client listing one level at a time learns where subscriptions lie.
    let mut child_info: BTreeSet<String> = BTreeSet::new();
    if select.recursive_match && select.subscribed && !lsub {
        for name in &subscriptions {
            if compiled.iter().any(|p| p.matches(name)) {
                continue;
            }
            let mut end = 0;
            while let Some(at) = name[end..].find(SEPARATOR) {
                let parent = &name[..end + at];
                if compiled.iter().any(|p| p.matches(parent)) {
                    child_info.insert(parent.to_string());
                }
                end += at + SEPARATOR.len_utf8();
            }
        }
        let by_name: HashMap<&str, &MailboxInfo> =
            mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();
        for parent in &child_info {
            if !entries.iter().any(|(n, _)| n == parent) {
                entries.push((
                    parent.clone(),
                    Entry::Parent(by_name.get(parent.as_str()).copied()),
                ));
            }
        }
    }
    // Levels that are not mailboxes: for LIST over the mailboxes, and for LSUB
    // over the subscriptions (RFC 3501 6.3.9: `foo` of a subscribed `foo/bar`
    // is returned `\Noselect`). LIST (SUBSCRIBED) reports such levels only
    // with RECURSIVEMATCH, through CHILDINFO (above).
    let levels = if lsub {
        subscribed.missing_levels()
    } else if !select.subscribed && !select.special_use {
        hierarchy.missing_levels()
    } else {
        BTreeSet::new()
    };
    for level in levels {
        if compiled
            .iter()
            .any(|p| p.lists_levels() && p.matches(level))
        {
            entries.push((level.to_string(), Entry::Level));
        }
    }
    entries.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));
    let mut lines = Vec::new();
    for (name, entry) in entries {
        if !matches!(entry, Entry::Level) && !compiled.iter().any(|p| p.matches(&name)) {
            continue;
        }
        let info = match entry {
            Entry::Mailbox(m) | Entry::Parent(Some(m)) => Some(m),
            _ => None,
        };
        if select.special_use && info.and_then(|m| m.special_use.as_ref()).is_none() {
            continue;
        }
        let mut attributes = match entry {
            Entry::Mailbox(m) | Entry::Parent(Some(m)) => mailbox_attributes(m, &hierarchy),
            Entry::Missing | Entry::Parent(None) => vec!["\\NonExistent".to_string()],
            Entry::Level if lsub => vec!["\\Noselect".to_string()],
            Entry::Level if session.rev2 => {
                vec!["\\NonExistent".to_string(), "\\HasChildren".to_string()]
            }
            Entry::Level => vec!["\\Noselect".to_string(), "\\HasChildren".to_string()],
        };
        if show_subscribed && !lsub && subscribed.contains(&name) {
            attributes.push("\\Subscribed".into());
        }
        lines.push((name, attributes, info.map(|m| m.id.clone())));
    }
    let append_limit = session.ctx.config.limits.literal_bytes_max;
    let mut owners: HashMap<String, Option<store::UserReader>> = HashMap::new();
    for (name, attributes, id) in lines {
        session
            .out
            .extend_from_slice(format!("* {verb} ({}) \"/\" ", attributes.join(" ")).as_bytes());
        session.write_mailbox(&name);
        if child_info.contains(&name) {
            session
                .out
                .extend_from_slice(b" (\"CHILDINFO\" (\"SUBSCRIBED\"))");
        }
        session.out.extend_from_slice(b"\r\n");
        if let (Some(items), Some(id)) = (&returns.status, id) {
            let text = match shared_info.get(&id) {
                None => session
                    .reader()
                    .ok()
                    .and_then(|r| status_text(r, &id, items, append_limit)),
                // Counts are content: only with `r` (RFC 4314 4).
                Some((_, rights)) if !rights.contains(Rights::READ) => None,
                Some((owner, _)) => owners
                    .entry(owner.clone())
                    .or_insert_with(|| session.ctx.store.reader(owner).ok())
                    .as_ref()
                    .and_then(|r| status_text(r, &id, items, append_limit)),
            };
            if let Some(text) = text {
                write_status(session, &name, &text);
            }
        }
    }
    Ok(Done::ok(format!("{verb} completed")))
}

pub(crate) fn namespace(session: &mut Session) -> Done {
    session.out.extend_from_slice(
        b"* NAMESPACE ((\"\" \"/\")) ((\"Other Users/\" \"/\")) ((\"Shared/\" \"/\"))\r\n",
    );
    Done::ok("NAMESPACE completed")
}

/// The parenthesised STATUS data of a mailbox (by id) from its owner's
/// reader; `None` when it cannot be read.
fn status_text(
    reader: &store::UserReader,
    id: &str,
    items: &[StatusItem],
    append_limit: u64,
) -> Option<String> {
    let (Ok(Some(info)), Ok(counts)) = (reader.mailbox_by_id(id), reader.counts(id)) else {
        return None;
    };
    let mut parts = Vec::new();
    for item in items {
        parts.push(match item {
            StatusItem::Messages => format!("MESSAGES {}", counts.messages),
            StatusItem::Recent => "RECENT 0".into(),
            StatusItem::UidNext => format!("UIDNEXT {}", info.uid_next),
            StatusItem::UidValidity => format!("UIDVALIDITY {}", info.uid_validity),
            StatusItem::Unseen => format!("UNSEEN {}", counts.unseen),
            StatusItem::Deleted => format!("DELETED {}", counts.deleted),
            StatusItem::Size => format!("SIZE {}", counts.size),
            StatusItem::HighestModSeq => format!("HIGHESTMODSEQ {}", info.highest_modseq),
            StatusItem::AppendLimit => format!("APPENDLIMIT {append_limit}"),
            StatusItem::MailboxId => format!("MAILBOXID ({})", info.id),
        });
    }
    Some(format!("({})", parts.join(" ")))
}

fn write_status(session: &mut Session, name: &str, text: &str) {
    session.out.extend_from_slice(b"* STATUS ");
    session.write_mailbox(name);
    session
        .out
        .extend_from_slice(format!(" {text}\r\n").as_bytes());
}

pub(crate) async fn status(
    session: &mut Session,
    raw: &str,
    items: &[StatusItem],
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    if items.contains(&StatusItem::HighestModSeq) {
        session.condstore = true;
    }
    let access = match session.open_mailbox(&name) {
        Ok(a) => a,
        Err(done) => return Ok(done),
    };
    if !access.rights.contains(Rights::READ) {
        return Ok(Done::no_code(
            "NOPERM",
            "you need the \"r\" right to see this mailbox's status",
        ));
    }
    let append_limit = session.ctx.config.limits.literal_bytes_max;
    let text = session
        .reader_of(&access)
        .ok()
        .and_then(|r| status_text(r, &access.mailbox.id, items, append_limit));
    match text {
        Some(text) => {
            write_status(session, &name, &text);
            Ok(Done::ok("STATUS completed"))
        }
        None => Ok(Done::no_code(
            "UNAVAILABLE",
            "status temporarily unavailable",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hierarchy<'a>(names: &[&'a str]) -> Hierarchy<'a> {
        Hierarchy::new(names.iter().copied())
    }

    #[test]
    fn children_are_found_by_prefix_not_by_name_start() {
        let h = hierarchy(&["a", "a/b", "ab", "b", "c/d/e"]);
        assert!(h.has_children("a"));
        assert!(!h.has_children("ab"));
        assert!(!h.has_children("a/b"));
        assert!(!h.has_children("b"));
        assert!(h.has_children("c"));
        assert!(h.has_children("c/d"));
    }

    /// REVIEW C4: after `DELETE a` with `a/b` left, `LIST "" %` lost `a`.
    #[test]
    fn missing_levels_are_every_absent_ancestor_once() {
        let h = hierarchy(&["a/b", "c", "c/d/e", "c/d/f", "INBOX"]);
        let levels: Vec<&str> = h.missing_levels().into_iter().collect();
        assert_eq!(levels, vec!["a", "c/d"]);
        assert!(hierarchy(&["x", "x/y"]).missing_levels().is_empty());
    }
}
