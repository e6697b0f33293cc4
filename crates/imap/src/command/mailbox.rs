//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.

use crate::respond::Done;
use crate::session::{End, Session};
use crate::shared::{Place, acting, hidden_error, nonexistent, place};
use store::{ErrorKind, Intent};

const SPECIAL_USES: [&str; 7] = [
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

pub(crate) async fn create(
    session: &mut Session,
    raw: &str,
    special_use: Vec<String>,
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    // A trailing separator only declares the intent to create children (RFC 9051 6.3.4).
    let name = name.trim_end_matches(store::SEPARATOR).to_string();
    if name == "INBOX" {
        return Ok(Done::no_code("ALREADYEXISTS", "INBOX always exists"));
    }
    let mut canonical = Vec::new();
    for flag in &special_use {
        match SPECIAL_USES.iter().find(|s| s.eq_ignore_ascii_case(flag)) {
            Some(s) => canonical.push(s.to_string()),
            None => {
                return Ok(Done::no_code(
                    "USEATTR",
                    format!("unsupported special use {flag}"),
                ));
            }
        }
    }
    if canonical.len() > 1 {
        return Ok(Done::no_code("USEATTR", "one special use per mailbox"));
    }
    let user = session.user_name();
    let (owner, name) = match place(&name) {
        Place::Own(name) => (user.clone(), name),
        // Below another owner's mailbox, with `k` there (the writer checks).
        Place::Other { owner, name } if owner != user => (owner, name),
        _ => {
            return Ok(Done::no_code(
                "CANNOT",
                "the \"Other Users\" and \"Shared\" namespaces hold other owners' mailboxes only",
            ));
        }
    };
    let intent = Intent::CreateMailbox {
        user: owner.clone(),
        name,
        special_use: canonical.pop(),
    };
    let intent = acting(&user, &owner, intent);
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok("CREATE completed"),
        Err(e) if owner != user => hidden_error(&e),
        Err(e) => Done::from_store(&e),
    })
}

pub(crate) async fn delete(session: &mut Session, raw: &str) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    if name == "INBOX" {
        return Ok(Done::no_code("CANNOT", "INBOX cannot be deleted"));
    }
    if session.selected.as_ref().is_some_and(|s| s.name == name) {
        session.selected = None;
        session
            .out
            .extend_from_slice(b"* OK [CLOSED] mailbox deleted\r\n");
    }
    let user = session.user_name();
    let (owner, name) = match place(&name) {
        Place::Own(name) => (user.clone(), name),
        Place::Other { owner, name } if owner != user => (owner, name),
        _ => return Ok(nonexistent()),
    };
    let intent = Intent::DeleteMailbox {
        user: owner.clone(),
        name,
    };
    let intent = acting(&user, &owner, intent);
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok("DELETE completed"),
        Err(e) if owner != user => hidden_error(&e),
        Err(e) => Done::from_store(&e),
    })
}

pub(crate) async fn rename(session: &mut Session, from: &str, to: &str) -> Result<Done, End> {
    let (from, to) = match (session.mailbox_name(from), session.mailbox_name(to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(done), _) | (_, Err(done)) => return Ok(done),
    };
    if to == "INBOX" {
        return Ok(Done::no_code("ALREADYEXISTS", "INBOX always exists"));
    }
    let user = session.user_name();
    let (owner, from_name, to_name) = match (place(&from), place(&to)) {
        (Place::Own(f), Place::Own(t)) => (user.clone(), f, t),
        (
            Place::Other { owner, name: f },
            Place::Other {
                owner: to_owner,
                name: t,
            },
        ) if owner == to_owner && owner != user => (owner, f, t),
        (Place::Own(_), _) => {
            return Ok(Done::no_code(
                "CANNOT",
                "a mailbox is renamed within its owner's mail only",
            ));
        }
        _ => return Ok(nonexistent()),
    };
    let intent = Intent::RenameMailbox {
        user: owner.clone(),
        from: from_name,
        to: to_name,
    };
    let intent = acting(&user, &owner, intent);
    let result = session.ctx.store.submit_one(intent).await;
    let result = result.map_err(|e| {
        if owner != user {
            hidden_error(&e)
        } else {
            Done::from_store(&e)
        }
    });
    Ok(match result {
        Ok(_) => {
            if let Some(selected) = session.selected.as_mut()
                && selected.name == from
                && from != "INBOX"
            {
                selected.name = to;
            }
            Done::ok("RENAME completed")
        }
        Err(done) => done,
    })
}

pub(crate) async fn subscribe(
    session: &mut Session,
    raw: &str,
    subscribed: bool,
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    if subscribed {
        // Subscribing to a mailbox that does not exist is refused, as most servers do.
        // Another owner's mailbox is subscribed to by its name in the
        // namespace, once the user may look it up.
        if let Err(done) = session.open_mailbox(&name) {
            return Ok(done);
        }
    }
    let intent = Intent::Subscribe {
        user: session.user_name(),
        name,
        subscribed,
    };
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok(if subscribed {
            "SUBSCRIBE completed"
        } else {
            "UNSUBSCRIBE completed"
        }),
        Err(e) if e.kind == ErrorKind::Invalid => Done::bad(e.message),
        Err(e) => Done::from_store(&e),
    })
}
