//! SELECT, EXAMINE, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE.

use crate::command::list::{Hierarchy, mailbox_attributes};
use crate::respond::Done;
use crate::selected::{Selected, flags_response, learn_keywords};
use crate::sequence;
use crate::session::{End, Session};
use imap_proto::{SelectParams, Sequence};
use std::collections::BTreeSet;
use store::{Intent, MailboxRef, Rights};

pub(crate) const PERMANENT_FLAGS: &str = "\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*";

/// The PERMANENTFLAGS of a mailbox where the user has `rights`: `\Seen`
/// with `s`, `\Deleted` with `t`, the rest and new keywords with `w`.
pub(crate) fn permanent_flags(rights: Rights) -> String {
    if rights == Rights::ALL {
        return PERMANENT_FLAGS.to_string();
    }
    let mut flags = Vec::new();
    for flag in PERMANENT_FLAGS.split(' ') {
        let needed = match flag {
            "\\Seen" => Rights::SEEN,
            "\\Deleted" => Rights::DELETE_MESSAGES,
            _ => Rights::WRITE,
        };
        if rights.contains(needed) {
            flags.push(flag);
        }
    }
    flags.join(" ")
}

pub(crate) async fn select(
    session: &mut Session,
    raw_name: &str,
    read_only: bool,
    params: SelectParams,
) -> Result<Done, End> {
    // RFC 7162 3.2.5: QRESYNC parameters need ENABLE QRESYNC first; BAD, and
    // (the command not being run) the current selection stays.
    if params.qresync.is_some() && !session.qresync {
        return Ok(Done::bad("QRESYNC parameters need ENABLE QRESYNC first"));
    }
    // Selecting deselects first, even when the new SELECT fails (RFC 9051 6.3.2).
    let had_selection = session.selected.take().is_some();
    if had_selection {
        session
            .out
            .extend_from_slice(b"* OK [CLOSED] previous mailbox closed\r\n");
    }
    let name = match session.mailbox_name(raw_name) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    if params.condstore || params.qresync.is_some() {
        session.condstore = true;
    }
    let access = match session.open_mailbox(&name) {
        Ok(a) => a,
        Err(done) => return Ok(done),
    };
    if !access.rights.contains(Rights::READ) {
        return Ok(Done::no_code(
            "NOPERM",
            "you need the \"r\" right to read this mailbox",
        ));
    }
    // Without a right to change anything in it, a SELECT is an EXAMINE
    // (RFC 4314 4).
    let read_only = read_only
        || !access.rights.intersects(
            Rights::SEEN
                .union(Rights::WRITE)
                .union(Rights::DELETE_MESSAGES),
        );
    let reader = match session.reader_of(&access) {
        Ok(r) => r,
        Err(done) => return Ok(done),
    };
    let mut mailbox = access.mailbox.clone();
    if access.is_shared() {
        // The owner's special uses (their Sent, their Trash) are not the user's.
        mailbox.special_use = None;
    }
    let messages = match reader.select_view(&mailbox.id) {
        Ok(m) => m,
        Err(e) => return Ok(Done::from_store(&e)),
    };
    // The mailbox row and the messages are read in two snapshots; a delivery or
    // flag change in between is in the messages only. Report UIDNEXT and
    // HIGHESTMODSEQ no lower than the messages imply, so a client never sees a
    // UID at or above UIDNEXT, nor a MODSEQ above HIGHESTMODSEQ. Changes with
    // a MODSEQ up to that are all in the messages read, since MODSEQs are given
    // out in commit order.
    let uid_next = messages.last().map_or(mailbox.uid_next, |m| {
        mailbox.uid_next.max(m.0.saturating_add(1))
    });
    let highest_modseq = messages
        .iter()
        .map(|m| m.1)
        .fold(mailbox.highest_modseq, u64::max);
    // For SELECT's LIST response (IMAP4rev2): its attributes must be accurate.
    let list_attributes = if session.rev2 && access.is_shared() {
        // Children count only where the user may see them, as LIST shows them.
        let visible: Vec<String> = session
            .shared_mailboxes()
            .into_iter()
            .map(|(name, ..)| name)
            .collect();
        let hierarchy = Hierarchy::new(visible.iter().map(String::as_str));
        let mut shown = mailbox.clone();
        shown.name = name.clone();
        mailbox_attributes(&shown, &hierarchy)
    } else if session.rev2 {
        match reader.mailboxes() {
            Ok(all) => {
                let hierarchy = Hierarchy::new(all.iter().map(|m| m.name.as_str()));
                mailbox_attributes(&mailbox, &hierarchy)
            }
            Err(e) => return Ok(Done::from_store(&e)),
        }
    } else {
        Vec::new()
    };
    let first_unseen = messages
        .iter()
        .position(|m| !m.2.split(' ').any(|f| f == "\\Seen"));
    let mut keywords = BTreeSet::new();
    for m in &messages {
        // Keywords are the flags without a backslash; most messages have none.
        if m.2
            .split(' ')
            .any(|f| !f.is_empty() && !f.starts_with('\\'))
        {
            learn_keywords(&mut keywords, &store::index::flags_from_text(&m.2));
        }
    }
    let uids: Vec<u32> = messages.iter().map(|m| m.0).collect();
    let mut out = String::new();
    out.push_str(&format!("* {} EXISTS\r\n", uids.len()));
    if !session.rev2 {
        out.push_str("* 0 RECENT\r\n");
    }
    out.push_str(&flags_response(&keywords));
    if read_only {
        out.push_str("* OK [PERMANENTFLAGS ()] read-only\r\n");
    } else {
        out.push_str(&format!(
            "* OK [PERMANENTFLAGS ({})] flags permitted\r\n",
            permanent_flags(access.rights)
        ));
    }
    if let (Some(position), false) = (first_unseen, session.rev2) {
        out.push_str(&format!("* OK [UNSEEN {}] first unseen\r\n", position + 1));
    }
    out.push_str(&format!(
        "* OK [UIDVALIDITY {}] UIDs valid\r\n",
        mailbox.uid_validity
    ));
    out.push_str(&format!("* OK [UIDNEXT {uid_next}] predicted next UID\r\n"));
    out.push_str(&format!(
        "* OK [HIGHESTMODSEQ {highest_modseq}] highest\r\n"
    ));
    out.push_str(&format!("* OK [MAILBOXID ({})] mailbox id\r\n", mailbox.id));
    // QRESYNC (RFC 7162 3.2.5): with the UIDVALIDITY the client knows, what
    // vanished and what changed since its MODSEQ, limited to its known UIDs.
    // Tombstones are kept for good, so VANISHED is always exact and the
    // sequence-match data (a hint for servers that forget) is not needed.
    if let Some(q) = params
        .qresync
        .as_ref()
        .filter(|q| q.uid_validity == mailbox.uid_validity)
    {
        let changes = match reader.changes(&mailbox.id, q.mod_seq) {
            Ok(c) => c,
            Err(e) => return Ok(Done::from_store(&e)),
        };
        let star = uid_next.saturating_sub(1);
        let known = |uid: u32| {
            q.known_uids
                .as_deref()
                .is_none_or(|ranges| sequence::uid_in(ranges, uid, star))
        };
        let vanished: Vec<u32> = changes.expunged.into_iter().filter(|u| known(*u)).collect();
        if !vanished.is_empty() {
            out.push_str(&format!(
                "* VANISHED (EARLIER) {}\r\n",
                sequence::format_set(&vanished)
            ));
        }
        for meta in changes.changed.iter().filter(|m| known(m.uid)) {
            // Only messages of this snapshot: a later arrival is reported later.
            if let Ok(position) = uids.binary_search(&meta.uid) {
                out.push_str(&format!(
                    "* {} FETCH (UID {} FLAGS ({}) MODSEQ ({}))\r\n",
                    position + 1,
                    meta.uid,
                    meta.flags.join(" "),
                    meta.modseq
                ));
            }
        }
    }
    session.out.extend_from_slice(out.as_bytes());
    if session.rev2 {
        // RFC 9051 6.3.2: "The server MUST return a LIST response with the
        // mailbox name. The list of mailbox attributes MUST be accurate."
        session
            .out
            .extend_from_slice(format!("* LIST ({}) \"/\" ", list_attributes.join(" ")).as_bytes());
        session.write_mailbox(&name);
        session.out.extend_from_slice(b"\r\n");
    }
    let owner = access.is_shared().then(|| access.owner.clone());
    let rights = access.rights;
    session.shared_reader = access.reader;
    session.selected = Some(Selected {
        id: mailbox.id,
        name,
        owner,
        rights,
        read_only,
        uids,
        modseq: highest_modseq,
        keywords,
        contexts: Vec::new(),
    });
    session.saved = None;
    let (code, verb) = if read_only {
        ("READ-ONLY", "EXAMINE")
    } else {
        ("READ-WRITE", "SELECT")
    };
    Ok(Done::ok_code(code, format!("{verb} completed")))
}

/// CLOSE (`expunge` set: silently expunge `\Deleted` first) or UNSELECT.
pub(crate) async fn close(session: &mut Session, expunge: bool) -> Result<Done, End> {
    let Some(selected) = session.selected.take() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    session.saved = None;
    // Without `e`, CLOSE closes without expunging (RFC 4314 4).
    if expunge && !selected.read_only && selected.rights.contains(Rights::EXPUNGE) {
        let owner = selected
            .owner
            .clone()
            .unwrap_or_else(|| session.user_name());
        let intent = Intent::Expunge {
            user: owner.clone(),
            mailbox: MailboxRef::Id(selected.id.clone()),
            uids: None,
        };
        let intent = crate::shared::acting(&session.user_name(), &owner, intent);
        match session.ctx.store.submit_one(intent).await {
            Ok(_) => {}
            // Revoked meanwhile: the selection still closes.
            Err(e) if e.kind == store::ErrorKind::Denied || selected.owner.is_some() => {}
            Err(e) => return Ok(Done::from_store(&e)),
        }
    }
    Ok(Done::ok(if expunge {
        "CLOSE completed"
    } else {
        "UNSELECT completed"
    }))
}

pub(crate) async fn expunge(session: &mut Session, uids: Option<Sequence>) -> Result<Done, End> {
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    if selected.read_only {
        return Ok(Done::no_code("READ-ONLY", "mailbox is read-only"));
    }
    let filter = uids.map(|set| {
        let positions = sequence::resolve(&set, true, &selected.uids, session.saved.as_deref());
        positions
            .into_iter()
            .filter_map(|i| selected.uids.get(i).copied())
            .collect::<Vec<u32>>()
    });
    let intent = Intent::Expunge {
        user: session.selected_owner(),
        mailbox: MailboxRef::Id(selected.id.clone()),
        uids: filter,
    };
    let intent = session.acting_on_selected(intent);
    match session.ctx.store.submit_one(intent).await {
        Ok(_) => {
            session.sync(true).await?;
            Ok(Done::ok("EXPUNGE completed"))
        }
        Err(e) => Ok(crate::shared::hidden_error(&e)),
    }
}
