//! APPEND, with MULTIAPPEND (RFC 3502), CATENATE (RFC 4469, `catenate.rs`)
//! and UIDPLUS APPENDUID (RFC 4315).

use crate::command::catenate::{self, Budget};
use crate::respond::Done;
use crate::sequence::format_set;
use crate::session::{End, Session};
use imap_proto::{AppendMessage, DateTime};
use store::{ErrorKind, Intent, Outcome};

/// Days since 1970-01-01 of a civil date (proleptic Gregorian), after
/// Howard Hinnant's `days_from_civil`; written here to avoid a date crate for one function.
pub(crate) fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) fn unix_of(date_time: &DateTime) -> i64 {
    let days = days_from_civil(
        date_time.date.year as i64,
        date_time.date.month,
        date_time.date.day,
    );
    days * 86_400
        + date_time.hour as i64 * 3600
        + date_time.minute as i64 * 60
        + date_time.second as i64
        - date_time.zone_minutes as i64 * 60
}

pub(crate) async fn append(
    session: &mut Session,
    raw: &str,
    messages: Vec<AppendMessage>,
) -> Result<Done, End> {
    let name = match session.mailbox_name(raw) {
        Ok(n) => n,
        Err(done) => return Ok(done),
    };
    if messages.is_empty() {
        return Ok(Done::bad("APPEND needs a message"));
    }
    let user = session.user_name();
    // Another owner's mailbox: the writer checks `i` (and the flag rights).
    let (owner, target) = match crate::shared::place(&name) {
        crate::shared::Place::Own(target) => (user.clone(), target),
        crate::shared::Place::Other { owner, name } if owner != user => (owner, name),
        _ => return Ok(Done::no_code("TRYCREATE", "no such mailbox")),
    };
    let mut intents = Vec::with_capacity(messages.len());
    // CATENATE's URL parts add bytes the framer never saw: the command's
    // messages together stay within the same bound as its literals.
    let mut budget = Budget::new(session.ctx.config.limits.literal_bytes_max);
    for mut message in messages {
        if let Some(parts) = message.catenate.take() {
            // Reads from the index and blobs: blocking work.
            let assembled =
                tokio::task::block_in_place(|| catenate::assemble(session, parts, &mut budget));
            match assembled {
                Ok(data) => message.data = data,
                Err(done) => return Ok(done),
            }
        }
        if message.data.is_empty() {
            return Ok(Done::no("empty message"));
        }
        if message
            .flags
            .iter()
            .any(|f| f.eq_ignore_ascii_case("\\Recent"))
        {
            return Ok(Done::bad("\\Recent cannot be set"));
        }
        let store = session.ctx.store.clone();
        // Parsing is CPU work proportional to the message: keep it off the async workers.
        let prepared = match tokio::task::spawn_blocking(move || store.prepare(message.data)).await
        {
            Ok(p) => p,
            Err(_) => return Ok(Done::no_code("SERVERBUG", "message preparation failed")),
        };
        let intent = Intent::Append {
            user: owner.clone(),
            mailbox: target.clone(),
            message: prepared,
            flags: message.flags,
            internal_date: message.date.map(|d| (unix_of(&d), d.zone_minutes)),
        };
        intents.push(crate::shared::acting(&user, &owner, intent));
    }
    let results = session.ctx.store.submit(intents).await;
    let mut uids = Vec::new();
    let mut uid_validity = 0;
    for result in results {
        match result {
            Ok(Outcome::Appended {
                uid_validity: v,
                uid,
                ..
            }) => {
                uid_validity = v;
                uids.push(uid);
            }
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Ok(Done::no_code("TRYCREATE", "no such mailbox"));
            }
            Err(e) => return Ok(Done::from_store(&e)),
        }
    }
    if session.selected.as_ref().is_some_and(|s| s.name == name) {
        session.sync(true).await?;
    }
    Ok(Done::ok_code(
        format!("APPENDUID {uid_validity} {}", format_set(&uids)),
        "APPEND completed",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_proto::Date;

    #[test]
    fn rfc_example_date_converts() {
        // 17-Jul-1996 02:44:25 -0700 = 1996-07-17T09:44:25Z
        let dt = DateTime {
            date: Date {
                year: 1996,
                month: 7,
                day: 17,
            },
            hour: 2,
            minute: 44,
            second: 25,
            zone_minutes: -420,
        };
        assert_eq!(unix_of(&dt), 837_596_665);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }
}
