//! QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT, and SETQUOTA refused.
//!
//! Each user has one quota root, `""`, covering all their mailboxes, with
//! the STORAGE (in units of 1,024 octets, as the RFC counts) and MESSAGE
//! resources. Limits are set by the administrator (`postern user quota`,
//! `[quota]` for the default); a user cannot raise their own.

use crate::respond::Done;
use crate::session::{End, Session};

/// `* QUOTA "" (STORAGE used limit MESSAGE used limit)`, the resources that
/// have a limit; `None` when none has.
fn quota_line(quota: &store::Quota) -> Option<String> {
    let mut resources = Vec::new();
    if let Some(max) = quota.storage_max {
        resources.push(format!(
            "STORAGE {} {}",
            quota.used_bytes.div_ceil(1024),
            // Rounded up like the usage, so usage under the limit in bytes is
            // never shown over it in KiB.
            max.div_ceil(1024)
        ));
    }
    if let Some(max) = quota.messages_max {
        resources.push(format!("MESSAGE {} {max}", quota.used_messages));
    }
    (!resources.is_empty()).then(|| format!("* QUOTA \"\" ({})\r\n", resources.join(" ")))
}

fn user_quota(session: &Session) -> Result<store::Quota, Done> {
    session
        .ctx
        .store
        .quota(&session.user_name())
        .map_err(|e| Done::from_store(&e))
}

pub(crate) async fn get_quota(session: &mut Session, root: &str) -> Result<Done, End> {
    let quota = match user_quota(session) {
        Ok(q) => q,
        Err(done) => return Ok(done),
    };
    match quota_line(&quota).filter(|_| root.is_empty()) {
        Some(line) => {
            session.out.extend_from_slice(line.as_bytes());
            Ok(Done::ok("GETQUOTA completed"))
        }
        None => Ok(Done::no_code("NONEXISTENT", "no such quota root")),
    }
}

pub(crate) async fn get_quota_root(session: &mut Session, raw: &str) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    let exists = match session.reader() {
        Ok(reader) => reader.mailbox(&name).map(|m| m.is_some()),
        Err(done) => return Ok(done),
    };
    match exists {
        Ok(true) => {}
        Ok(false) => return Ok(Done::no_code("NONEXISTENT", "no such mailbox")),
        Err(e) => return Ok(Done::from_store(&e)),
    }
    let quota = match user_quota(session) {
        Ok(q) => q,
        Err(done) => return Ok(done),
    };
    let line = quota_line(&quota);
    session.out.extend_from_slice(b"* QUOTAROOT ");
    session.write_mailbox(&name);
    if line.is_some() {
        session.out.extend_from_slice(b" \"\"");
    }
    session.out.extend_from_slice(b"\r\n");
    if let Some(line) = line {
        session.out.extend_from_slice(line.as_bytes());
    }
    Ok(Done::ok("GETQUOTAROOT completed"))
}

pub(crate) fn set_quota() -> Done {
    Done::no_code(
        "NOPERM",
        "quotas are set by the administrator (postern user quota)",
    )
}
