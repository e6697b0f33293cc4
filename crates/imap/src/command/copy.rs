//! COPY and MOVE (RFC 6851), with COPYUID (RFC 4315).

use crate::respond::Done;
use crate::sequence::{self, format_list};
use crate::session::{End, Session};
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
    let intent = Intent::Copy {
        user: session.user_name(),
        from: MailboxRef::Id(selected.id.clone()),
        uids,
        to: target,
        remove_source,
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
            Ok(Done::no_code("TRYCREATE", "no such mailbox"))
        }
        Err(e) => Ok(Done::from_store(&e)),
    }
}
