//! LIST (with LIST-EXTENDED, SPECIAL-USE and LIST-STATUS), LSUB, NAMESPACE, STATUS.

use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{ListReturn, ListSelect, StatusItem};
use store::{MailboxInfo, SEPARATOR};

/// Matches a LIST pattern (`*` anything, `%` anything but the separator).
pub(crate) fn pattern_matches(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| pattern_matches(rest, &name[i..])),
        Some(('%', rest)) => {
            for i in 0..=name.len() {
                if pattern_matches(rest, &name[i..]) {
                    return true;
                }
                if name.get(i) == Some(&SEPARATOR) {
                    break;
                }
            }
            false
        }
        Some((c, rest)) => name
            .split_first()
            .is_some_and(|(n, name_rest)| n == c && pattern_matches(rest, name_rest)),
    }
}

fn matches_any(patterns: &[Vec<char>], name: &str) -> bool {
    let chars: Vec<char> = name.chars().collect();
    // INBOX is case-insensitive in patterns too.
    let upper: Vec<char> = if name == "INBOX" || name.starts_with("INBOX/") {
        chars.clone()
    } else {
        Vec::new()
    };
    patterns.iter().any(|p| {
        if pattern_matches(p, &chars) {
            return true;
        }
        if upper.is_empty() {
            return false;
        }
        let p_upper: Vec<char> = p
            .iter()
            .collect::<String>()
            .get(..5)
            .filter(|prefix| prefix.eq_ignore_ascii_case("INBOX"))
            .map(|_| {
                let s: String = p.iter().collect();
                format!("INBOX{}", &s[5..]).chars().collect()
            })
            .unwrap_or_default();
        !p_upper.is_empty() && pattern_matches(&p_upper, &upper)
    })
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
    let mut compiled = Vec::new();
    for pattern in patterns {
        let reference = match session.mailbox_name(reference) {
            Ok(r) => r,
            Err(done) => return Ok(done),
        };
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
        compiled.push(full.chars().collect::<Vec<char>>());
    }
    let reader = match session.reader() {
        Ok(r) => r,
        Err(done) => return Ok(done),
    };
    let mailboxes = match reader.mailboxes() {
        Ok(m) => m,
        Err(e) => return Ok(Done::from_store(&e)),
    };
    let subscriptions = reader.subscriptions().unwrap_or_default();
    let only_subscribed = lsub || select.subscribed;
    let show_subscribed = lsub || select.subscribed || returns.subscribed;
    let mut names: Vec<(String, Option<&MailboxInfo>)> = Vec::new();
    if only_subscribed {
        for name in &subscriptions {
            names.push((name.clone(), mailboxes.iter().find(|m| &m.name == name)));
        }
    } else {
        for m in &mailboxes {
            names.push((m.name.clone(), Some(m)));
        }
    }
    names.sort_by(|a, b| (a.0 != "INBOX", &a.0).cmp(&(b.0 != "INBOX", &b.0)));
    let mut lines = Vec::new();
    for (name, info) in names {
        if !matches_any(&compiled, &name) {
            continue;
        }
        if select.special_use && info.and_then(|m| m.special_use.as_ref()).is_none() {
            continue;
        }
        let mut attributes = Vec::new();
        match info {
            None => attributes.push("\\NonExistent".to_string()),
            Some(m) => {
                let prefix = format!("{}{SEPARATOR}", m.name);
                let has_children = mailboxes.iter().any(|c| c.name.starts_with(&prefix));
                attributes.push(
                    if has_children {
                        "\\HasChildren"
                    } else {
                        "\\HasNoChildren"
                    }
                    .into(),
                );
                if let Some(special) = &m.special_use {
                    attributes.push(special.clone());
                }
            }
        }
        if show_subscribed && subscriptions.iter().any(|s| s == &name) && !lsub {
            attributes.push("\\Subscribed".into());
        }
        lines.push((name, attributes, info.map(|m| m.id.clone())));
    }
    for (name, attributes, id) in lines {
        session
            .out
            .extend_from_slice(format!("* {verb} ({}) \"/\" ", attributes.join(" ")).as_bytes());
        session.write_mailbox(&name);
        session.out.extend_from_slice(b"\r\n");
        if let (Some(items), Some(id)) = (&returns.status, id) {
            write_status(session, &name, &id, items);
        }
    }
    Ok(Done::ok(format!("{verb} completed")))
}

pub(crate) fn namespace(session: &mut Session) -> Done {
    session
        .out
        .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
    Done::ok("NAMESPACE completed")
}

fn write_status(session: &mut Session, name: &str, id: &str, items: &[StatusItem]) -> bool {
    let Ok(reader) = session.reader() else {
        return false;
    };
    let (Ok(Some(info)), Ok(counts)) = (reader.mailbox_by_id(id), reader.counts(id)) else {
        return false;
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
            StatusItem::AppendLimit => format!(
                "APPENDLIMIT {}",
                session.ctx.config.limits.literal_bytes_max
            ),
            StatusItem::MailboxId => format!("MAILBOXID ({})", info.id),
        });
    }
    session.out.extend_from_slice(b"* STATUS ");
    session.write_mailbox(name);
    session
        .out
        .extend_from_slice(format!(" ({})\r\n", parts.join(" ")).as_bytes());
    true
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
    let id = match session.reader().map(|r| r.mailbox(&name)) {
        Ok(Ok(Some(m))) => m.id,
        Ok(Ok(None)) => return Ok(Done::no_code("NONEXISTENT", "no such mailbox")),
        Ok(Err(e)) => return Ok(Done::from_store(&e)),
        Err(done) => return Ok(done),
    };
    if write_status(session, &name, &id, items) {
        Ok(Done::ok("STATUS completed"))
    } else {
        Ok(Done::no_code(
            "UNAVAILABLE",
            "status temporarily unavailable",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    fn m(p: &str, n: &str) -> bool {
        pattern_matches(
            &p.chars().collect::<Vec<_>>(),
            &n.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn percent_stops_at_the_separator() {
        assert!(m("%", "Sent"));
        assert!(!m("%", "a/b"));
        assert!(m("a/%", "a/b"));
        assert!(m("*", "a/b/c"));
        assert!(m("a*", "a/b"));
        assert!(!m("b*", "a/b"));
    }
}
