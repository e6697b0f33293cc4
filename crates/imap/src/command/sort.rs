//! SORT and UID SORT (RFC 5256), with the DISPLAYFROM and DISPLAYTO keys of
//! SORT=DISPLAY (RFC 5957). Webmail (Roundcube and its kind) sorts large
//! mailboxes with it rather than fetching every envelope.
//!
//! The keys come from the cached summary (checksummed like every cache read)
//! and the message's metadata. Strings compare case-insensitively (RFC 5256's
//! i;ascii-casemap, Unicode-lowercased for the display keys); ties keep
//! sequence order, as the RFC requires.

use crate::command::search;
use crate::context::UpdateContext;
use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{SearchKey, SearchReturn, SortCriterion, SortKey};
use std::cmp::Ordering;

/// One message's values for the requested keys.
struct Row {
    seq: u32,
    uid: u32,
    keys: Vec<Value>,
}

/// One sort key's value for one message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Value {
    Number(i64),
    Text(String),
}

pub(crate) async fn sort(
    session: &mut Session,
    tag: &str,
    uid: bool,
    returns: Option<Vec<SearchReturn>>,
    criteria: &[SortCriterion],
    charset: &str,
    search_key: &SearchKey,
) -> Result<Done, End> {
    let found = match search::prepare(session, uid, Some(charset), search_key, true).await? {
        Ok(found) => found,
        Err(done) => return Ok(done),
    };
    let Ok(reader) = session.selected_reader() else {
        return Ok(Done::bad("not authenticated"));
    };
    let needs_summary = criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
    let mut rows = Vec::with_capacity(found.hits.len());
    let mut collect = |seq, meta: &store::MessageMeta, summary: Option<mime::Summary>| {
        let keys = criteria
            .iter()
            .map(|c| value(c.key, meta, summary.as_ref()))
            .collect();
        rows.push(Row {
            seq,
            uid: meta.uid,
            keys,
        });
    };
    let visited = if needs_summary {
        found.visit_sort_keys(reader, &mut collect)
    } else {
        found.visit(reader, false, &mut collect)
    };
    if let Err(done) = visited {
        return Ok(done);
    }
    rows.sort_by(|a, b| compare(criteria, a, b));
    let numbers: Vec<u32> = rows
        .iter()
        .map(|row| if uid { row.uid } else { row.seq })
        .collect();
    let update = returns
        .as_ref()
        .is_some_and(|r| r.contains(&SearchReturn::Update));
    let line = match returns {
        None => {
            let mut line = String::from("* SORT");
            for n in &numbers {
                line.push_str(&format!(" {n}"));
            }
            line
        }
        Some(options) => esort_line(tag, uid, &options, &numbers),
    };
    session.out.extend_from_slice(line.as_bytes());
    session.out.extend_from_slice(b"\r\n");
    if update {
        let (result, keys) = rows.into_iter().map(|row| (row.uid, row.keys)).unzip();
        session.add_update_context(UpdateContext::new(
            tag,
            uid,
            search_key.clone(),
            Some(criteria.to_vec()),
            result,
            keys,
        ));
    }
    Ok(Done::ok("SORT completed"))
}

/// The sort keys of `metas` (messages of the selected mailbox `mailbox`), for
/// placing new messages in an update context's result. A message whose
/// summary cannot be read sorts with empty text keys, as in SORT itself.
pub(crate) fn keys_of(
    session: &Session,
    mailbox: &str,
    criteria: &[SortCriterion],
    metas: &[&store::MessageMeta],
) -> Vec<(u32, Vec<Value>)> {
    let needs_summary = criteria
        .iter()
        .any(|c| !matches!(c.key, SortKey::Arrival | SortKey::Size));
    let reader = session.reader().ok();
    metas
        .iter()
        .map(|meta| {
            let summary = needs_summary
                .then(|| reader.and_then(|r| r.summary(mailbox, meta).ok()))
                .flatten();
            let keys = criteria
                .iter()
                .map(|c| value(c.key, meta, summary.as_ref()))
                .collect();
            (meta.uid, keys)
        })
        .collect()
}

/// ESORT (RFC 5267 4.2): an ESEARCH response where MIN and MAX are the first
/// and last in sort order and ALL keeps that order (ranges only for ascending
/// runs). `RETURN ()` means ALL.
fn esort_line(tag: &str, uid: bool, options: &[SearchReturn], numbers: &[u32]) -> String {
    let want = |o: SearchReturn| options.contains(&o);
    let mut line = format!("* ESEARCH (TAG \"{tag}\")");
    if uid {
        line.push_str(" UID");
    }
    if let (Some(first), Some(last)) = (numbers.first(), numbers.last()) {
        if want(SearchReturn::Min) {
            line.push_str(&format!(" MIN {first}"));
        }
        if want(SearchReturn::Max) {
            line.push_str(&format!(" MAX {last}"));
        }
        if !options.iter().any(|o| search::is_data_option(*o)) || want(SearchReturn::All) {
            line.push_str(&format!(" ALL {}", ordered_set(numbers)));
        }
    }
    for option in options {
        if let SearchReturn::Partial(range) = option {
            let picked = numbers
                .get(range.indexes(numbers.len()))
                .unwrap_or_default();
            if picked.is_empty() {
                line.push_str(&format!(" PARTIAL ({range} NIL)"));
            } else {
                line.push_str(&format!(" PARTIAL ({range} {})", ordered_set(picked)));
            }
        }
    }
    if want(SearchReturn::Count) {
        line.push_str(&format!(" COUNT {}", numbers.len()));
    }
    line
}

/// A sequence set that keeps the order of `numbers` (`3,1:2` is not `1:3`).
fn ordered_set(numbers: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end.saturating_add(1) {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

fn compare(criteria: &[SortCriterion], a: &Row, b: &Row) -> Ordering {
    compare_keys(criteria, &a.keys, &b.keys).then(a.seq.cmp(&b.seq))
}

/// The order of two messages by their key values alone (ties: `Equal`).
pub(crate) fn compare_keys(criteria: &[SortCriterion], a: &[Value], b: &[Value]) -> Ordering {
    for (i, criterion) in criteria.iter().enumerate() {
        let (Some(x), Some(y)) = (a.get(i), b.get(i)) else {
            break;
        };
        let order = x.cmp(y);
        let order = if criterion.reverse {
            order.reverse()
        } else {
            order
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn value(key: SortKey, meta: &store::MessageMeta, summary: Option<&mime::Summary>) -> Value {
    let text = |f: fn(&mime::Summary) -> String| Value::Text(summary.map(f).unwrap_or_default());
    match key {
        SortKey::Arrival => Value::Number(meta.internal_date),
        SortKey::Size => Value::Number(meta.size as i64),
        // RFC 5256: the Date header in UTC, or the internal date without one.
        SortKey::Date => Value::Number(
            summary
                .and_then(|s| s.sent.as_ref())
                .map_or(meta.internal_date, |d| d.unix_seconds),
        ),
        SortKey::Subject => text(|s| s.base_subject.to_ascii_lowercase()),
        SortKey::From => text(|s| mailbox_part(&s.from)),
        SortKey::To => text(|s| mailbox_part(&s.to)),
        SortKey::Cc => text(|s| mailbox_part(&s.cc)),
        SortKey::DisplayFrom => text(|s| display(&s.from)),
        SortKey::DisplayTo => text(|s| display(&s.to)),
    }
}

/// The first address of a rendered address header ("Name <local@host>, ..."):
/// its display name (may be empty) and its address. Commas separate
/// addresses, but a decoded display name may hold one too ("Doe, John
/// <j@x>"): pieces are joined until one holds an '@'.
fn first_address(header: &str) -> (&str, &str) {
    let mut end = 0;
    for piece in header.split(',') {
        end += piece.len();
        if piece.contains('@') {
            break;
        }
        end += 1; // the comma
    }
    let first = &header[..end.min(header.len())];
    match (first.find('<'), first.rfind('>')) {
        (Some(open), Some(close)) if open < close => (
            first[..open].trim().trim_matches('"').trim(),
            first[open + 1..close].trim(),
        ),
        _ => ("", first.trim()),
    }
}

/// RFC 5256's sort value of an address header: the local part (addr-mailbox)
/// of its first address, case-folded.
fn mailbox_part(header: &str) -> String {
    let (_, address) = first_address(header);
    address
        .rsplit_once('@')
        .map_or(address, |(local, _)| local)
        .to_ascii_lowercase()
}

/// RFC 5957: the display name of the first address, else its address.
fn display(header: &str) -> String {
    let (name, address) = first_address(header);
    if name.is_empty() { address } else { name }.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esort_keeps_the_sort_order() {
        assert_eq!(ordered_set(&[4, 5, 6, 1, 3, 2]), "4:6,1,3,2");
        let line = esort_line(
            "t",
            true,
            &[SearchReturn::Min, SearchReturn::Max, SearchReturn::Count],
            &[9, 2, 5],
        );
        assert_eq!(line, "* ESEARCH (TAG \"t\") UID MIN 9 MAX 5 COUNT 3");
        assert_eq!(
            esort_line("t", false, &[], &[3, 1]),
            "* ESEARCH (TAG \"t\") ALL 3,1"
        );
        assert_eq!(
            esort_line("t", false, &[SearchReturn::Count], &[]),
            "* ESEARCH (TAG \"t\") COUNT 0"
        );
    }

    #[test]
    fn address_keys() {
        assert_eq!(mailbox_part("Bob Smith <Bob@Example.com>"), "bob");
        assert_eq!(mailbox_part("alice@example.org, bob@x"), "alice");
        assert_eq!(mailbox_part(""), "");
        assert_eq!(display("\"Zed Zulu\" <a@b>"), "zed zulu");
        assert_eq!(display("<Carol@example.com>"), "carol@example.com");
        assert_eq!(display("dave@example.com"), "dave@example.com");
        // The first address is the first, also when a later one has a name.
        assert_eq!(
            mailbox_part("alice@example.org, Bob <bob@example.net>"),
            "alice"
        );
        assert_eq!(
            display("alice@example.org, Bob <bob@example.net>"),
            "alice@example.org"
        );
        // A comma inside a decoded display name.
        assert_eq!(display("Doe, John <j@x.org>, Amy <a@y.org>"), "doe, john");
        assert_eq!(mailbox_part("Doe, John <j@x.org>, Amy <a@y.org>"), "j");
    }
}
