//! CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.

use crate::respond::Done;
use crate::session::{End, Session};
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
    let intent = Intent::CreateMailbox {
        user: session.user_name(),
        name,
        special_use: canonical.pop(),
    };
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok("CREATE completed"),
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
    let intent = Intent::DeleteMailbox {
        user: session.user_name(),
        name,
    };
    Ok(match session.ctx.store.submit_one(intent).await {
        Ok(_) => Done::ok("DELETE completed"),
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
    let intent = Intent::RenameMailbox {
        user: session.user_name(),
        from: from.clone(),
        to: to.clone(),
    };
    let result = session.ctx.store.submit_one(intent).await;
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
        Err(e) => Done::from_store(&e),
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
        match session.reader().map(|r| r.mailbox(&name)) {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Ok(Done::no_code("NONEXISTENT", "no such mailbox")),
            Ok(Err(e)) => return Ok(Done::from_store(&e)),
            Err(done) => return Ok(done),
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
