//! SEARCH and UID SEARCH: every IMAP4rev2 key, CHARSET UTF-8 matching decoded
//! encoded-words, ESEARCH return options (RFC 4731), SEARCHRES (RFC 5182),
//! MODSEQ (RFC 7162), WITHIN (RFC 5032), SAVEDATE (RFC 8514), OBJECTID keys.
//!
//! Header keys read the cache built at delivery; only BODY and TEXT read the
//! message itself (and decode its text parts).

use crate::context::UpdateContext;
use crate::respond::{Done, Status};
use crate::sequence::{Positions, format_set};
use crate::session::{End, Session};
use crate::user_limits::HeavyPermit;
use imap_proto::{Date, SearchKey, SearchReturn, Sequence};
use std::collections::HashMap;
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
    /// Every sequence set in the criteria, resolved once per command (not once
    /// per message) to positions in the selected mailbox's view. Keyed by the
    /// node's address: the criteria stay borrowed, so addresses are stable.
    sets: HashMap<*const Sequence, Positions>,
    now: i64,
    text_max: usize,
}

/// Resolves every `UID` and sequence-set key of `key` (see [`Context::sets`]).
fn resolve_sets(
    key: &SearchKey,
    uids: &[u32],
    saved: Option<&[u32]>,
    sets: &mut HashMap<*const Sequence, Positions>,
) {
    match key {
        SearchKey::Uid(set) => {
            let positions = Positions::resolve(set, true, uids, saved);
            sets.insert(std::ptr::from_ref(set), positions);
        }
        SearchKey::SequenceSet(set) => {
            // `$` holds UIDs; anything else here is message sequence numbers.
            let uid = matches!(set, Sequence::Saved);
            let positions = Positions::resolve(set, uid, uids, saved);
            sets.insert(std::ptr::from_ref(set), positions);
        }
        SearchKey::Not(inner) => resolve_sets(inner, uids, saved, sets),
        SearchKey::Or(a, b) => {
            resolve_sets(a, uids, saved, sets);
            resolve_sets(b, uids, saved, sets);
        }
        SearchKey::And(keys) => {
            for k in keys {
                resolve_sets(k, uids, saved, sets);
            }
        }
        _ => {}
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl Context<'_> {
    fn summary<'c>(&self, c: &'c mut Candidate<'_>) -> Option<&'c mime::Summary> {
        if c.summary.is_none() {
            let loaded = self
                .session
                .selected_reader()
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
                .selected_reader()
                .ok()
                .and_then(|r| r.message_bytes(self.mailbox, c.meta).ok());
            c.raw = Some(loaded);
        }
        c.raw.as_ref().and_then(|r| r.as_deref())
    }

    /// Case-insensitive substring match on one decoded field of the cached summary.
    fn summary_field_contains(
        &self,
        c: &mut Candidate<'_>,
        field: impl Fn(&mime::Summary) -> &String,
        needle: &str,
    ) -> bool {
        let needle = lower(needle);
        self.summary(c)
            .is_some_and(|m| lower(field(m)).contains(&needle))
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
        // The cache holds only the first headers of a huge header block: look at
        // the named fields of the message itself.
        let names = [field.to_string()];
        let kind = mime::SectionKind::HeaderFields {
            names: &names,
            not: false,
        };
        let fields = self
            .raw(c)
            .and_then(|raw| mime::section(raw, &[], kind))
            .unwrap_or_default();
        field_values(&fields)
            .iter()
            .any(|value| lower(value).contains(&needle))
    }

    /// TEXT's half in the header: `needle` (lower case) in a field name or
    /// value. The cache holds the first fields of a huge header only; past
    /// them the message itself is read, as for HEADER.
    fn header_text_contains(&self, c: &mut Candidate<'_>, needle: &str) -> bool {
        let Some(summary) = self.summary(c) else {
            return false;
        };
        let contains =
            |name: &str, value: &str| lower(name).contains(needle) || lower(value).contains(needle);
        let found = summary
            .headers
            .iter()
            .any(|(name, value)| contains(name, value));
        if found || !summary.headers_truncated {
            return found;
        }
        let header = self
            .raw(c)
            .and_then(|raw| mime::section(raw, &[], mime::SectionKind::Header))
            .unwrap_or_default();
        unfolded_fields(&header)
            .iter()
            .any(|(name, value)| contains(name, value))
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
            // The candidate's position in the view is its sequence number - 1,
            // for UID sets as well: its UID sits at that position.
            SearchKey::Uid(set) | SearchKey::SequenceSet(set) => self
                .sets
                .get(&std::ptr::from_ref(set))
                .is_some_and(|positions| positions.contains(c.seq as usize - 1)),
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
            SearchKey::Subject(s) => self.summary_field_contains(c, |m| &m.subject, s),
            SearchKey::From(s) => self.summary_field_contains(c, |m| &m.from, s),
            SearchKey::To(s) => self.summary_field_contains(c, |m| &m.to, s),
            SearchKey::Cc(s) => self.summary_field_contains(c, |m| &m.cc, s),
            SearchKey::Bcc(s) => self.summary_field_contains(c, |m| &m.bcc, s),
            SearchKey::Header(field, value) => self.header_contains(c, field, value),
            SearchKey::Body(s) => self.body_text(c).contains(&lower(s)),
            SearchKey::Text(s) => {
                let needle = lower(s);
                self.header_text_contains(c, &needle) || self.body_text(c).contains(&needle)
            }
            SearchKey::Not(inner) => !self.matches(inner, c),
            SearchKey::Or(a, b) => self.matches(a, c) || self.matches(b, c),
            SearchKey::And(keys) => keys.iter().all(|k| self.matches(k, c)),
        }
    }
}

/// The values (what follows the colon, unfolded) of the header fields in
/// `fields`, which holds whole raw field lines as `HEADER.FIELDS` returns them.
fn field_values(fields: &[u8]) -> Vec<String> {
    unfolded_fields(fields)
        .into_iter()
        .map(|(_, value)| value)
        .collect()
}

/// The header fields in `fields` (whole raw field lines, as `HEADER` and
/// `HEADER.FIELDS` return them) as (name, value unfolded).
fn unfolded_fields(fields: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in String::from_utf8_lossy(fields).split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            // A folded continuation of the field before.
            if let Some((_, value)) = out.last_mut() {
                value.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.to_string(), value.to_string()));
        }
    }
    out
}

/// Whether `key` reads message text (BODY, TEXT): the blob of every
/// candidate is read and decoded, which makes the SEARCH a heavy command.
fn reads_text(key: &SearchKey) -> bool {
    match key {
        SearchKey::Body(_) | SearchKey::Text(_) => true,
        SearchKey::Not(k) => reads_text(k),
        SearchKey::Or(a, b) => reads_text(a) || reads_text(b),
        SearchKey::And(keys) => keys.iter().any(reads_text),
        _ => false,
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
    let saving = returns
        .as_ref()
        .is_some_and(|r| r.contains(&SearchReturn::Save));
    let done = run(session, tag, uid, charset, returns, criteria).await?;
    if saving && done.status != Status::Ok {
        // RFC 5182 2.1: a failed SEARCH ... RETURN (SAVE) leaves `$` empty, so a
        // pipelined `FETCH $` cannot act on an older result.
        session.saved = Some(Vec::new());
    }
    Ok(done)
}

async fn run(
    session: &mut Session,
    tag: &str,
    uid: bool,
    charset: Option<&str>,
    returns: Option<Vec<SearchReturn>>,
    criteria: &SearchKey,
) -> Result<Done, End> {
    let heavy = reads_text(criteria);
    let found = match prepare(session, uid, charset, criteria, heavy).await? {
        Ok(found) => found,
        Err(done) => return Ok(done),
    };
    let hits: Vec<(u32, u32, u64)> = found
        .hits
        .iter()
        .map(|&(seq, i)| (seq, found.metas[i].uid, found.metas[i].modseq))
        .collect();
    let numbers: Vec<u32> = hits
        .iter()
        .map(|(seq, u, _)| if uid { *u } else { *seq })
        .collect();
    if uses_modseq(criteria) {
        session.condstore = true;
    }
    let esearch = returns.is_some() || session.rev2;
    let options = returns.unwrap_or_default();
    let want = |o: SearchReturn| options.contains(&o);
    // UPDATE and CONTEXT ask for no data: with nothing else, ALL is meant,
    // as with `RETURN ()`.
    let data: Vec<SearchReturn> = options
        .iter()
        .copied()
        .filter(|o| is_data_option(*o))
        .collect();
    let partial = options
        .iter()
        .any(|o| matches!(o, SearchReturn::Partial(_)));
    let only_save = !data.is_empty() && data.iter().all(|o| *o == SearchReturn::Save);
    let min_max_only = (want(SearchReturn::Min) || want(SearchReturn::Max))
        && !want(SearchReturn::All)
        && !want(SearchReturn::Count)
        && !partial;
    // RFC 7162 3.1.5: MODSEQ is the highest of the messages returned, which
    // with only MIN/MAX are those one or two messages, not every hit.
    let highest_modseq = if !uses_modseq(criteria) {
        None
    } else if esearch && min_max_only {
        let min = hits.first().filter(|_| want(SearchReturn::Min));
        let max = hits.last().filter(|_| want(SearchReturn::Max));
        min.into_iter().chain(max).map(|h| h.2).max()
    } else {
        hits.iter().map(|h| h.2).max()
    };
    if want(SearchReturn::Save) {
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
        let all = data.is_empty() || want(SearchReturn::All);
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
        for option in &options {
            // RFC 5267 4.4: the messages at those positions of the result,
            // which SEARCH orders by number.
            if let SearchReturn::Partial(range) = option {
                let picked = numbers
                    .get(range.indexes(numbers.len()))
                    .unwrap_or_default();
                if picked.is_empty() {
                    line.push_str(&format!(" PARTIAL ({range} NIL)"));
                } else {
                    line.push_str(&format!(" PARTIAL ({range} {})", format_set(picked)));
                }
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
    if esearch && want(SearchReturn::Update) {
        let result = hits.iter().map(|h| h.1).collect();
        session.add_update_context(UpdateContext::new(
            tag,
            uid,
            criteria.clone(),
            None,
            result,
            Vec::new(),
        ));
    }
    Ok(Done::ok("SEARCH completed"))
}

/// Whether a return option asks for data in the response (UPDATE and
/// CONTEXT do not).
pub(crate) fn is_data_option(option: SearchReturn) -> bool {
    !matches!(option, SearchReturn::Update | SearchReturn::Context)
}

/// The selected mailbox's messages and those that match a search.
pub(crate) struct Found {
    pub mailbox: String,
    pub metas: Vec<MessageMeta>,
    /// (sequence number, index into `metas`) of each match, in sequence order.
    pub hits: Vec<(u32, usize)>,
    /// The heavy-command turn of a heavy command, held until it is answered.
    _turn: Option<HeavyPermit>,
}

impl Found {
    /// Calls `f` with each match's sequence number, metadata and, when
    /// `with_summary`, its cached summary, on a blocking section (reading
    /// summaries is CPU and disk work proportional to the matches).
    /// Like [`Self::visit`] with summaries, for SORT and THREAD: the keys they
    /// read come from one scan of the index's sort keys, and only a message
    /// whose keys are missing or fail their check is read whole.
    pub(crate) fn visit_sort_keys(
        &self,
        reader: &store::UserReader,
        mut f: impl FnMut(u32, &MessageMeta, Option<mime::Summary>),
    ) -> Result<(), Done> {
        tokio::task::block_in_place(|| {
            let metas: Vec<&MessageMeta> = self
                .hits
                .iter()
                .map(|&(_, index)| &self.metas[index])
                .collect();
            let keys = reader
                .sort_summaries(&self.mailbox, &metas)
                .map_err(|e| Done::from_store(&e))?;
            for ((&(seq, _), meta), keys) in self.hits.iter().zip(metas).zip(keys) {
                let summary = match keys {
                    Some(summary) => summary,
                    None => reader
                        .summary(&self.mailbox, meta)
                        .map_err(|e| Done::from_store(&e))?,
                };
                f(seq, meta, Some(summary));
            }
            Ok(())
        })
    }

    pub(crate) fn visit(
        &self,
        reader: &store::UserReader,
        with_summary: bool,
        mut f: impl FnMut(u32, &MessageMeta, Option<mime::Summary>),
    ) -> Result<(), Done> {
        tokio::task::block_in_place(|| {
            // Summaries a block at a time: one index scan, not a lookup each.
            for hits in self.hits.chunks(256) {
                let metas: Vec<&MessageMeta> =
                    hits.iter().map(|&(_, index)| &self.metas[index]).collect();
                let mut summaries = if with_summary {
                    reader.summaries(&self.mailbox, &metas).into_iter()
                } else {
                    Vec::new().into_iter()
                };
                for (&(seq, _), meta) in hits.iter().zip(metas) {
                    let summary = match summaries.next() {
                        Some(s) => Some(s.map_err(|e| Done::from_store(&e))?),
                        None => None,
                    };
                    f(seq, meta, summary);
                }
            }
            Ok(())
        })
    }
}

/// What SEARCH, SORT and THREAD start with: the charset checked, a turn
/// taken when the command is `heavy`, the view brought up to date, and the
/// selected mailbox's messages with those that match `criteria` (see
/// [`matching`]). `Err` is the answer to give.
pub(crate) async fn prepare(
    session: &mut Session,
    uid: bool,
    charset: Option<&str>,
    criteria: &SearchKey,
    heavy: bool,
) -> Result<Result<Found, Done>, End> {
    if let Some(cs) = charset
        && !cs.eq_ignore_ascii_case("UTF-8")
        && !cs.eq_ignore_ascii_case("US-ASCII")
    {
        return Ok(Err(Done::no_code(
            "BADCHARSET (US-ASCII UTF-8)",
            "unsupported charset",
        )));
    }
    let turn = if heavy {
        match session.heavy_turn().await {
            Ok(turn) => turn,
            Err(done) => return Ok(Err(done)),
        }
    } else {
        None
    };
    session.sync(uid).await?;
    let Some(selected) = session.selected.as_ref() else {
        return Ok(Err(Done::bad("no mailbox selected")));
    };
    let mailbox = selected.id.clone();
    let Ok(reader) = session.selected_reader() else {
        return Ok(Err(Done::bad("not authenticated")));
    };
    let metas = match reader.messages(&mailbox) {
        Ok(m) => m,
        Err(e) => return Ok(Err(Done::from_store(&e))),
    };
    let hits = matching(session, criteria, &metas);
    Ok(Ok(Found {
        mailbox,
        metas,
        hits,
        _turn: turn,
    }))
}

/// The messages of `metas` that match `criteria`, in sequence order:
/// (sequence number, index into `metas`). Messages expunged by others but not
/// yet reported keep their sequence numbers.
pub(crate) fn matching(
    session: &Session,
    criteria: &SearchKey,
    metas: &[MessageMeta],
) -> Vec<(u32, usize)> {
    let Some(selected) = session.selected.as_ref() else {
        return Vec::new();
    };
    let now = store::writer::now_seconds();
    let mut sets = HashMap::new();
    resolve_sets(
        criteria,
        &selected.uids,
        session.saved.as_deref(),
        &mut sets,
    );
    let context = Context {
        session,
        mailbox: &selected.id,
        sets,
        now,
        text_max: session.ctx.config.search_text_bytes_max,
    };
    // Messages expunged by others but not yet reported keep their sequence numbers.
    let mut hits: Vec<(u32, usize)> = Vec::new();
    let search_body = || {
        for (index, meta) in metas.iter().enumerate() {
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
                hits.push((seq, index));
            }
        }
    };
    tokio::task::block_in_place(search_body);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::append::days_from_civil;

    fn criteria(text: &str) -> SearchKey {
        let line = format!("t SEARCH {text}\r\n");
        match imap_proto::parse::parse_command(line.as_bytes()) {
            Ok(imap_proto::Command {
                body: imap_proto::CommandBody::Search { criteria, .. },
                ..
            }) => criteria,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// REVIEW A2: SEARCH resolved every set once per message. Now each set node
    /// is resolved once, before the message loop, and looked up by position.
    #[test]
    fn every_set_is_resolved_once_up_front() {
        let uids: Vec<u32> = (1..=100_000u32).map(|n| n * 2).collect();
        let key = criteria("OR 2:3 NOT UID 1:10 (UID 199990:* 100000)");
        let mut sets = HashMap::new();
        resolve_sets(&key, &uids, None, &mut sets);
        assert_eq!(sets.len(), 4);
        let mut members: Vec<Vec<usize>> = sets.values().map(|p| p.iter().collect()).collect();
        members.sort();
        assert_eq!(
            members,
            vec![
                vec![0, 1, 2, 3, 4],
                vec![1, 2],
                vec![99_994, 99_995, 99_996, 99_997, 99_998, 99_999],
                vec![99_999],
            ]
        );
        // A set of 16k ranges over 100k messages resolves quickly and stays small.
        let big = vec!["1:*"; 16_000].join(",");
        let key = criteria(&format!("{big} UID {big}"));
        let started = std::time::Instant::now();
        let mut sets = HashMap::new();
        resolve_sets(&key, &uids, None, &mut sets);
        assert!(
            sets.values()
                .all(|p| p.len() == uids.len() && p.contains(77_777))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    /// REVIEW C5: the fallback for truncated header blocks matched a field name
    /// anywhere and the needle anywhere, not the needle in that field.
    #[test]
    fn field_values_are_unfolded_and_exclude_the_name() {
        let fields = b"Subject: hello\r\n  world\r\nsubject:again\r\n\r\n";
        assert_eq!(field_values(fields), vec![" hello  world", "again"]);
        assert_eq!(field_values(b"\r\n"), Vec::<String>::new());
        assert!(
            !field_values(b"X-Subject-Tag: a\r\n")
                .iter()
                .any(|v| v.contains("Subject"))
        );
    }

    /// tests/e2e/BUGS.md 11: SEARCH TEXT ignored the fields past those the
    /// cache holds; its fallback reads names and unfolded values.
    #[test]
    fn unfolded_fields_keep_names() {
        let header = b"Subject: a\r\n b\r\nX-Last-Field: findme\r\n\r\n";
        assert_eq!(
            unfolded_fields(header),
            vec![
                ("Subject".to_string(), " a b".to_string()),
                ("X-Last-Field".to_string(), " findme".to_string()),
            ]
        );
    }

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
