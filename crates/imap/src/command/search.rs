//! SEARCH and UID SEARCH: every IMAP4rev2 key, CHARSET UTF-8 matching decoded
//! encoded-words, ESEARCH return options (RFC 4731), SEARCHRES (RFC 5182),
//! MODSEQ (RFC 7162), WITHIN (RFC 5032), SAVEDATE (RFC 8514), OBJECTID keys.
//!
//! Header keys read the cache built at delivery; only BODY and TEXT read the
//! message itself (and decode its text parts).

use crate::respond::Done;
use crate::sequence::{self, format_set};
use crate::session::{End, Session};
use imap_proto::{Date, SearchKey, SearchReturn, Sequence};
use store::MessageMeta;

/// Calendar date of a moment in a zone (minutes east of UTC).
pub(crate) fn date_of(unix_seconds: i64, zone_minutes: i16) -> Date {
    let local = unix_seconds + zone_minutes as i64 * 60;
    let days = local.div_euclid(86_400);
    // civil_from_days (Howard Hinnant), the inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
    Date { year, month, day }
}

struct Candidate<'a> {
    seq: u32,
    meta: &'a MessageMeta,
    summary: Option<Option<mime::Summary>>,
    raw: Option<Option<Vec<u8>>>,
    text: Option<String>,
}

struct Context<'a> {
    session: &'a Session,
    mailbox: &'a str,
    uids: &'a [u32],
    saved: Option<&'a [u32]>,
    now: i64,
    text_max: usize,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl Context<'_> {
    fn summary<'c>(&self, c: &'c mut Candidate<'_>) -> Option<&'c mime::Summary> {
        if c.summary.is_none() {
            let loaded = self
                .session
                .reader()
                .ok()
                .and_then(|r| r.summary(self.mailbox, c.meta).ok());
            c.summary = Some(loaded);
        }
        c.summary.as_ref().and_then(|s| s.as_ref())
    }

    fn raw<'c>(&self, c: &'c mut Candidate<'_>) -> Option<&'c [u8]> {
        if c.raw.is_none() {
            let loaded = self
                .session
                .reader()
                .ok()
                .and_then(|r| r.blob(&c.meta.blob).ok());
            c.raw = Some(loaded);
        }
        c.raw.as_ref().and_then(|r| r.as_deref())
    }

    fn body_text(&self, c: &mut Candidate<'_>) -> String {
        if c.text.is_none() {
            let text = self
                .raw(c)
                .map(|r| lower(&mime::body_text(r, self.text_max)))
                .unwrap_or_default();
            c.text = Some(text);
        }
        c.text.clone().unwrap_or_default()
    }

    fn header_contains(&self, c: &mut Candidate<'_>, field: &str, needle: &str) -> bool {
        let needle = lower(needle);
        let Some(summary) = self.summary(c) else {
            return false;
        };
        let found = summary.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(field) && lower(value).contains(&needle)
        });
        if found || !summary.headers_truncated {
            return found;
        }
        // The cache holds only the first headers of a huge header block: look at the message.
        let raw = self.raw(c).map(|r| r.to_vec()).unwrap_or_default();
        let header = mime::section(&raw, &[], mime::SectionKind::Header).unwrap_or_default();
        let text = lower(&String::from_utf8_lossy(&header));
        text.contains(&format!("{}:", lower(field))) && text.contains(&needle)
    }

    fn matches(&self, key: &SearchKey, c: &mut Candidate<'_>) -> bool {
        let has = |flag: &str| c.meta.flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
        let internal_day = || date_of(c.meta.internal_date, c.meta.internal_zone);
        let save_day = || date_of(c.meta.save_date, 0);
        match key {
            SearchKey::All => true,
            SearchKey::Answered => has("\\Answered"),
            SearchKey::Deleted => has("\\Deleted"),
            SearchKey::Draft => has("\\Draft"),
            SearchKey::Flagged => has("\\Flagged"),
            SearchKey::Seen => has("\\Seen"),
            SearchKey::Unanswered => !has("\\Answered"),
            SearchKey::Undeleted => !has("\\Deleted"),
            SearchKey::Undraft => !has("\\Draft"),
            SearchKey::Unflagged => !has("\\Flagged"),
            SearchKey::Unseen => !has("\\Seen"),
            SearchKey::Keyword(k) => has(k),
            SearchKey::Unkeyword(k) => !has(k),
            // \Recent does not exist in IMAP4rev2; no message is recent here.
            SearchKey::Recent | SearchKey::New => false,
            SearchKey::Old => true,
            SearchKey::Before(d) => internal_day() < *d,
            SearchKey::On(d) => internal_day() == *d,
            SearchKey::Since(d) => internal_day() >= *d,
            SearchKey::SavedBefore(d) => save_day() < *d,
            SearchKey::SavedOn(d) => save_day() == *d,
            SearchKey::SavedSince(d) => save_day() >= *d,
            SearchKey::SaveDateSupported => true,
            SearchKey::Older(seconds) => self.now - c.meta.internal_date >= *seconds as i64,
            SearchKey::Younger(seconds) => self.now - c.meta.internal_date <= *seconds as i64,
            SearchKey::Larger(n) => c.meta.size > *n,
            SearchKey::Smaller(n) => c.meta.size < *n,
            SearchKey::ModSeq(n) => c.meta.modseq >= *n,
            SearchKey::EmailId(id) => c.meta.email_id == *id,
            SearchKey::ThreadId(id) => c.meta.thread_id == *id,
            SearchKey::Uid(set) => {
                let positions = sequence::resolve(set, true, self.uids, self.saved);
                positions
                    .iter()
                    .any(|i| self.uids.get(*i) == Some(&c.meta.uid))
            }
            SearchKey::SequenceSet(set) => {
                let positions =
                    sequence::resolve(set, matches!(set, Sequence::Saved), self.uids, self.saved);
                positions.contains(&(c.seq as usize - 1))
            }
            SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
                let Some(sent) = self.summary(c).and_then(|s| s.sent) else {
                    return false;
                };
                let day = Date {
                    year: sent.year,
                    month: sent.month,
                    day: sent.day,
                };
                match key {
                    SearchKey::SentBefore(_) => day < *d,
                    SearchKey::SentOn(_) => day == *d,
                    _ => day >= *d,
                }
            }
            SearchKey::Subject(s) => self
                .summary(c)
                .is_some_and(|m| lower(&m.subject).contains(&lower(s))),
            SearchKey::From(s) => self
                .summary(c)
                .is_some_and(|m| lower(&m.from).contains(&lower(s))),
            SearchKey::To(s) => self
                .summary(c)
                .is_some_and(|m| lower(&m.to).contains(&lower(s))),
            SearchKey::Cc(s) => self
                .summary(c)
                .is_some_and(|m| lower(&m.cc).contains(&lower(s))),
            SearchKey::Bcc(s) => self
                .summary(c)
                .is_some_and(|m| lower(&m.bcc).contains(&lower(s))),
            SearchKey::Header(field, value) => self.header_contains(c, field, value),
            SearchKey::Body(s) => self.body_text(c).contains(&lower(s)),
            SearchKey::Text(s) => {
                let needle = lower(s);
                let in_headers = self.summary(c).is_some_and(|m| {
                    m.headers
                        .iter()
                        .any(|(n, v)| lower(n).contains(&needle) || lower(v).contains(&needle))
                });
                in_headers || self.body_text(c).contains(&needle)
            }
            SearchKey::Not(inner) => !self.matches(inner, c),
            SearchKey::Or(a, b) => self.matches(a, c) || self.matches(b, c),
            SearchKey::And(keys) => keys.iter().all(|k| self.matches(k, c)),
        }
    }
}

fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq(_) => true,
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        _ => false,
    }
}

pub(crate) async fn search(
    session: &mut Session,
    tag: &str,
    uid: bool,
    charset: Option<&str>,
    returns: Option<Vec<SearchReturn>>,
    criteria: &SearchKey,
) -> Result<Done, End> {
    if let Some(cs) = charset
        && !cs.eq_ignore_ascii_case("UTF-8")
        && !cs.eq_ignore_ascii_case("US-ASCII")
    {
        return Ok(Done::no_code(
            "BADCHARSET (US-ASCII UTF-8)",
            "unsupported charset",
        ));
    }
    session.sync(uid).await?;
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Done::bad("no mailbox selected"));
    };
    let Ok(reader) = session.reader() else {
        return Ok(Done::bad("not authenticated"));
    };
    let metas = match reader.messages(&selected.id) {
        Ok(m) => m,
        Err(e) => return Ok(Done::from_store(&e)),
    };
    let now = store::writer::now_seconds();
    let context = Context {
        session,
        mailbox: &selected.id,
        uids: &selected.uids,
        saved: session.saved.as_deref(),
        now,
        text_max: session.ctx.config.search_text_bytes_max,
    };
    // Messages expunged by others but not yet reported keep their sequence numbers.
    let mut hits: Vec<(u32, u32, u64)> = Vec::new();
    let search_body = || {
        for meta in &metas {
            let Some(seq) = selected.sequence_of(meta.uid) else {
                continue;
            };
            let mut candidate = Candidate {
                seq,
                meta,
                summary: None,
                raw: None,
                text: None,
            };
            if context.matches(criteria, &mut candidate) {
                hits.push((seq, meta.uid, meta.modseq));
            }
        }
    };
    tokio::task::block_in_place(search_body);
    let numbers: Vec<u32> = hits
        .iter()
        .map(|(seq, u, _)| if uid { *u } else { *seq })
        .collect();
    let highest_modseq = uses_modseq(criteria)
        .then(|| hits.iter().map(|h| h.2).max())
        .flatten();
    if uses_modseq(criteria) {
        session.condstore = true;
    }
    let esearch = returns.is_some() || session.rev2;
    let options = returns.unwrap_or_default();
    let want = |o: SearchReturn| options.contains(&o);
    let only_save = !options.is_empty() && options.iter().all(|o| *o == SearchReturn::Save);
    if want(SearchReturn::Save) {
        let min_max_only = (want(SearchReturn::Min) || want(SearchReturn::Max))
            && !want(SearchReturn::All)
            && !want(SearchReturn::Count);
        let uids: Vec<u32> = hits.iter().map(|h| h.1).collect();
        session.saved = Some(if min_max_only {
            let mut picked = Vec::new();
            if want(SearchReturn::Min) {
                picked.extend(uids.first());
            }
            if want(SearchReturn::Max) {
                picked.extend(uids.last());
            }
            picked.dedup();
            picked
        } else {
            uids
        });
    }
    if !esearch {
        let mut line = String::from("* SEARCH");
        for n in &numbers {
            line.push_str(&format!(" {n}"));
        }
        if let Some(m) = highest_modseq.filter(|_| !numbers.is_empty()) {
            line.push_str(&format!(" (MODSEQ {m})"));
        }
        line.push_str("\r\n");
        session.out.extend_from_slice(line.as_bytes());
    } else if !only_save {
        let all = options.is_empty() || want(SearchReturn::All);
        let mut line = format!("* ESEARCH (TAG \"{tag}\")");
        if uid {
            line.push_str(" UID");
        }
        if !numbers.is_empty() {
            if want(SearchReturn::Min) {
                line.push_str(&format!(
                    " MIN {}",
                    numbers.iter().min().copied().unwrap_or(0)
                ));
            }
            if want(SearchReturn::Max) {
                line.push_str(&format!(
                    " MAX {}",
                    numbers.iter().max().copied().unwrap_or(0)
                ));
            }
            if all {
                line.push_str(&format!(" ALL {}", format_set(&numbers)));
            }
        }
        if want(SearchReturn::Count) {
            line.push_str(&format!(" COUNT {}", numbers.len()));
        }
        if let Some(m) = highest_modseq.filter(|_| !numbers.is_empty()) {
            line.push_str(&format!(" MODSEQ {m}"));
        }
        line.push_str("\r\n");
        session.out.extend_from_slice(line.as_bytes());
    }
    Ok(Done::ok("SEARCH completed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::append::days_from_civil;

    #[test]
    fn dates_round_trip() {
        assert_eq!(
            date_of(0, 0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            date_of(837_596_665, -420),
            Date {
                year: 1996,
                month: 7,
                day: 17
            }
        );
        assert_eq!(
            date_of(951_782_400, 0),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
        assert_eq!(days_from_civil(2000, 2, 29) * 86_400, 951_782_400);
    }
}
