//! STORE and UID STORE (+/-/replace, .SILENT, UNCHANGEDSINCE of RFC 7162).

use crate::respond::Done;
use crate::sequence;
use crate::session::{End, Session};
use imap_proto::{Sequence, StoreMode};
use store::{FlagMode, Intent, MailboxRef, Outcome};

#[allow(clippy::too_many_arguments)]
pub(crate) async fn store(
    session: &mut Session,
    uid: bool,
    set: &Sequence,
    mode: StoreMode,
    silent: bool,
    flags: &[String],
    unchanged_since: Option<u64>,
) -> Result<Done, End> {
    session.sync(uid).await?;
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    if selected.read_only {
        return Ok(Done::no_code("READ-ONLY", "mailbox is read-only"));
    }
    if !uid && sequence::out_of_range(set, selected.uids.len()) {
        return Ok(Done::bad("message sequence number out of range"));
    }
    if flags.iter().any(|f| f.eq_ignore_ascii_case("\\Recent")) {
        return Ok(Done::bad("\\Recent cannot be stored"));
    }
    if unchanged_since.is_some() {
        session.condstore = true;
    }
    let selected = match session.selected.as_ref() {
        Some(s) => s,
        None => return Ok(Done::bad("no mailbox selected")),
    };
    let positions = sequence::resolve(set, uid, &selected.uids, session.saved.as_deref());
    let uids: Vec<u32> = positions
        .iter()
        .filter_map(|i| selected.uids.get(*i).copied())
        .collect();
    let known_modseq = selected.modseq;
    let intent = Intent::StoreFlags {
        user: session.selected_owner(),
        mailbox: MailboxRef::Id(selected.id.clone()),
        uids,
        mode: match mode {
            StoreMode::Replace => FlagMode::Replace,
            StoreMode::Add => FlagMode::Add,
            StoreMode::Remove => FlagMode::Remove,
        },
        flags: flags.to_vec(),
        unchanged_since,
    };
    let intent = session.acting_on_selected(intent);
    let (modseq, messages, modified) = match session.ctx.store.submit_one(intent).await {
        Ok(Outcome::Flags {
            modseq,
            messages,
            modified,
        }) => (modseq, messages, modified),
        Ok(_) => (None, Vec::new(), Vec::new()),
        Err(e) => return Ok(crate::shared::hidden_error(&e)),
    };
    let condstore = session.condstore;
    if let Some(selected) = session.selected.as_mut() {
        for (_, flags, _) in &messages {
            selected.announce_keywords(flags, &mut session.out);
        }
        for (message_uid, flags, message_modseq) in &messages {
            let Some(seq) = selected.sequence_of(*message_uid) else {
                continue;
            };
            // With UNCHANGEDSINCE, changed messages are reported even under .SILENT
            // (RFC 7162 3.2), because their MODSEQ is news to the client.
            if silent && !(unchanged_since.is_some() && Some(*message_modseq) == modseq) {
                continue;
            }
            let mut line = format!("* {seq} FETCH (");
            if uid {
                line.push_str(&format!("UID {message_uid} "));
            }
            line.push_str(&format!("FLAGS ({})", flags.join(" ")));
            if condstore {
                line.push_str(&format!(" MODSEQ ({message_modseq})"));
            }
            line.push_str(")\r\n");
            session.out.extend_from_slice(line.as_bytes());
        }
        // Our own change is reported above; skip it in the next sync unless someone
        // else changed the mailbox in between (then the next sync repeats a few FLAGS).
        if let Some(new) = modseq
            && new == known_modseq + 1
        {
            selected.modseq = new;
        }
    }
    if modified.is_empty() {
        Ok(Done::ok("STORE completed"))
    } else {
        let list: Vec<u32> = if uid {
            modified
        } else {
            let selected = session.selected.as_ref();
            modified
                .iter()
                .filter_map(|u| selected.and_then(|s| s.sequence_of(*u)))
                .collect()
        };
        Ok(Done::ok_code(
            format!("MODIFIED {}", sequence::format_set(&list)),
            "conditional STORE failed for some",
        ))
    }
}
