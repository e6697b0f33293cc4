//! COPY and MOVE (RFC 6851), with COPYUID (RFC 4315).

use crate::respond::Done;
use crate::sequence::{self, format_list};
use crate::session::{End, Session};
use crate::shared;
use imap_proto::Sequence;
use store::{ErrorKind, Intent, MailboxRef, Outcome};

pub(crate) async fn copy(
    session: &mut Session,
    uid: bool,
    set: &Sequence,
    raw: &str,
    remove_source: bool,
) -> Result<Done, End> {
    let target = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    if remove_source && selected.read_only {
        return Ok(Done::no_code("READ-ONLY", "mailbox is read-only"));
    }
    if !uid && sequence::out_of_range(set, selected.uids.len()) {
        return Ok(Done::bad("message sequence number out of range"));
    }
    let positions = sequence::resolve(set, uid, &selected.uids, session.saved.as_deref());
    let uids: Vec<u32> = positions
        .iter()
        .filter_map(|i| selected.uids.get(*i).copied())
        .collect();
    let verb = if remove_source { "MOVE" } else { "COPY" };
    if uids.is_empty() {
        return Ok(Done::ok(format!("{verb} completed, nothing to do")));
    }
    // The target may be another owner's (`Other Users/...`, `Shared/...`),
    // as may the selected mailbox: the writer checks `r` (and `t`, `e` for
    // MOVE) on the source and `i` on the target for this user.
    let user = session.user_name();
    let source_owner = selected.owner.clone().unwrap_or_else(|| user.clone());
    let (target_owner, target) = match shared::place(&target) {
        shared::Place::Own(name) => (user.clone(), name),
        shared::Place::Other { owner, name } if owner != user => (owner, name),
        _ => return Ok(Done::no_code("TRYCREATE", "no such mailbox")),
    };
    let intent = Intent::Copy {
        user: target_owner.clone(),
        from_user: (source_owner != target_owner).then(|| source_owner.clone()),
        from: MailboxRef::Id(selected.id.clone()),
        uids,
        to: target,
        remove_source,
    };
    let intent = if source_owner != user || target_owner != user {
        Intent::Acting {
            actor: user,
            intent: Box::new(intent),
        }
    } else {
        intent
    };
    match session.ctx.store.submit_one(intent).await {
        Ok(Outcome::Copied {
            uid_validity,
            pairs,
            ..
        }) => {
            if pairs.is_empty() {
                return Ok(Done::ok(format!("{verb} completed, nothing to do")));
            }
            let (from, to): (Vec<u32>, Vec<u32>) = pairs.into_iter().unzip();
            let code = format!(
                "COPYUID {uid_validity} {} {}",
                format_list(&from),
                format_list(&to)
            );
            if remove_source {
                // RFC 6851: COPYUID goes in an untagged OK before the EXPUNGEs.
                session
                    .out
                    .extend_from_slice(format!("* OK [{code}] moved\r\n").as_bytes());
                session.sync(true).await?;
                Ok(Done::ok("MOVE completed"))
            } else {
                session.sync(uid).await?;
                Ok(Done::ok_code(code, "COPY completed"))
            }
        }
        Ok(_) => Ok(Done::ok(format!("{verb} completed"))),
        Err(e) if e.kind == ErrorKind::NotFound => {
            // The same words for a missing target, a missing owner and a
            // mailbox the user may not see; the selected source exists.
            Ok(Done::no_code("TRYCREATE", "no such mailbox"))
        }
        Err(e) => Ok(Done::from_store(&e)),
    }
}
