//! SETACL, DELETEACL, GETACL, LISTRIGHTS, MYRIGHTS (RFC 4314).
//!
//! Every command opens the mailbox through `Session::open_mailbox`, so a
//! mailbox the user may not look up answers `NO [NONEXISTENT]` like a
//! missing one. Reading or changing an ACL needs `a` (the owner always has
//! it); MYRIGHTS needs only to see the mailbox. Changes go to the writer
//! as `Intent::SetAcl`, which checks `a` again inside the transaction.

use crate::respond::Done;
use crate::session::{End, Session};
use crate::shared::{Place, hidden_error, nonexistent, place};
use store::{ErrorKind, Identifier, Intent, MailboxRef, Rights, RightsChange, SHARED_OWNER};

/// `LISTRIGHTS`' optional rights for anyone but the owner: each right on its
/// own (RFC 4314 3.7), and the obsolete `c` and `d`.
const OPTIONAL_RIGHTS: &str = "l r s w i p k x t e a c d";

fn need_admin(rights: Rights) -> Result<(), Done> {
    if rights.contains(Rights::ADMIN) {
        Ok(())
    } else {
        Err(Done::no_code(
            "NOPERM",
            "you need the \"a\" right to see or change this mailbox's ACL",
        ))
    }
}

/// SETACL (`rights: Some`) and DELETEACL (`None`).
pub(crate) async fn set_acl(
    session: &mut Session,
    raw: &str,
    identifier: &str,
    rights: Option<&str>,
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let identifier = match Identifier::parse(identifier) {
        Ok(i) => i,
        Err(e) => return Ok(Done::bad(e.message)),
    };
    let change = match rights.map(RightsChange::parse).transpose() {
        Ok(c) => c,
        Err(e) => return Ok(Done::bad(e.message)),
    };
    let user = session.user_name();
    let (owner, mailbox) = match place(&name) {
        Place::Own(name) => (user.clone(), name),
        Place::Other { owner, name } if owner != user => (owner, name),
        _ => return Ok(nonexistent()),
    };
    let intent = Intent::SetAcl {
        actor: Some(user),
        user: owner,
        mailbox: MailboxRef::Name(mailbox),
        identifier,
        change,
        entries_max: session.ctx.config.acl_entries_max,
    };
    let verb = if rights.is_some() {
        "SETACL"
    } else {
        "DELETEACL"
    };
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok(format!("{verb} completed")),
        Err(e) if e.kind == ErrorKind::OverQuota => Done::no_code("LIMIT", e.message),
        Err(e) => hidden_error(&e),
    })
}

pub(crate) async fn get_acl(session: &mut Session, raw: &str) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let access = match session.open_mailbox(&name) {
        Ok(a) => a,
        Err(done) => return Ok(done),
    };
    if let Err(done) = need_admin(access.rights) {
        return Ok(done);
    }
    let entries = match session
        .reader_of(&access)
        .and_then(|r| r.acl(&access.mailbox.id).map_err(|e| hidden_error(&e)))
    {
        Ok(e) => e,
        Err(done) => return Ok(done),
    };
    session.out.extend_from_slice(b"* ACL ");
    session.write_mailbox(&name);
    // The owner's implicit rights first; the shared namespace's owner is no
    // identifier anyone can use, so it is not shown.
    let mut shown = Vec::new();
    if access.owner != SHARED_OWNER {
        shown.push((access.owner.clone(), Rights::ALL));
    }
    shown.extend(entries);
    for (identifier, rights) in shown {
        session.out.push(b' ');
        imap_proto::encode::astring(&mut session.out, identifier.as_bytes(), false);
        session.out.push(b' ');
        imap_proto::encode::astring(&mut session.out, rights.to_imap().as_bytes(), false);
    }
    session.out.extend_from_slice(b"\r\n");
    Ok(Done::ok("GETACL completed"))
}

pub(crate) async fn list_rights(
    session: &mut Session,
    raw: &str,
    identifier: &str,
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let access = match session.open_mailbox(&name) {
        Ok(a) => a,
        Err(done) => return Ok(done),
    };
    if let Err(done) = need_admin(access.rights) {
        return Ok(done);
    }
    let parsed = match Identifier::parse(identifier) {
        Ok(i) => i,
        Err(e) => return Ok(Done::bad(e.message)),
    };
    session.out.extend_from_slice(b"* LISTRIGHTS ");
    session.write_mailbox(&name);
    session.out.push(b' ');
    imap_proto::encode::astring(&mut session.out, parsed.to_string().as_bytes(), false);
    if !parsed.negative && parsed.name == access.owner {
        // The owner's rights are fixed: all of them, none optional.
        session.out.extend_from_slice(b" ");
        session
            .out
            .extend_from_slice(Rights::ALL.to_string().as_bytes());
    } else {
        session.out.extend_from_slice(b" \"\" ");
        session.out.extend_from_slice(OPTIONAL_RIGHTS.as_bytes());
    }
    session.out.extend_from_slice(b"\r\n");
    Ok(Done::ok("LISTRIGHTS completed"))
}

pub(crate) async fn my_rights(session: &mut Session, raw: &str) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let access = match session.open_mailbox(&name) {
        Ok(a) => a,
        Err(done) => return Ok(done),
    };
    session.out.extend_from_slice(b"* MYRIGHTS ");
    session.write_mailbox(&name);
    session.out.push(b' ');
    imap_proto::encode::astring(&mut session.out, access.rights.to_imap().as_bytes(), false);
    session.out.extend_from_slice(b"\r\n");
    Ok(Done::ok("MYRIGHTS completed"))
}
