//! SEARCH (RFC 9051 6.4.4) with ESEARCH return options (RFC 4731), SEARCHRES
//! (RFC 5182), CONDSTORE MODSEQ (RFC 7162), WITHIN (RFC 5032), SAVEDATE
//! (RFC 8514) and OBJECTID (RFC 8474) keys.

use super::lexer::{Cursor, NESTING_MAX, PResult};
use crate::types::{
    CommandBody, PartialRange, SearchKey, SearchReturn, SortCriterion, SortKey, ThreadAlgorithm,
};

/// `THREAD SP thread-alg SP charset 1*(SP search-key)` (RFC 5256).
pub(super) fn thread(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let algorithm = match c.keyword()?.as_str() {
        "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
        "REFERENCES" => ThreadAlgorithm::References,
        _ => return Err(c.error("Unknown THREAD algorithm")),
    };
    c.sp()?;
    let charset = c.astring_utf8()?;
    c.sp()?;
    let search = key_list(c, |c| c.at_end())?;
    Ok(CommandBody::Thread {
        uid,
        algorithm,
        charset,
        search,
    })
}

/// Most keys in one SORT: more than every key there is, twice, is not a sort.
const SORT_KEYS_MAX: usize = 16;

/// `SORT SP (sort-criteria) SP charset 1*(SP search-key)` (RFC 5256).
pub(super) fn sort(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let mut returns = None;
    if c.peek_keyword("RETURN ") {
        c.keyword()?;
        c.sp()?;
        returns = Some(c.paren_list(true, |c| return_option(c, true))?);
        c.sp()?;
    }
    let mut criteria = Vec::new();
    c.expect(b'(')?;
    let mut reverse = false;
    loop {
        let word = c.keyword()?;
        let key = match word.as_str() {
            "REVERSE" if !reverse => {
                reverse = true;
                c.sp()?;
                continue;
            }
            "ARRIVAL" => SortKey::Arrival,
            "CC" => SortKey::Cc,
            "DATE" => SortKey::Date,
            "FROM" => SortKey::From,
            "SIZE" => SortKey::Size,
            "SUBJECT" => SortKey::Subject,
            "TO" => SortKey::To,
            "DISPLAYFROM" => SortKey::DisplayFrom,
            "DISPLAYTO" => SortKey::DisplayTo,
            _ => return Err(c.error("Unknown SORT key")),
        };
        criteria.push(SortCriterion { reverse, key });
        reverse = false;
        if criteria.len() > SORT_KEYS_MAX {
            return Err(c.error("Too many SORT keys"));
        }
        if c.eat(b')') {
            break;
        }
        c.sp()?;
    }
    if reverse {
        return Err(c.error("REVERSE must precede a SORT key"));
    }
    c.sp()?;
    let charset = c.astring_utf8()?;
    c.sp()?;
    let search = key_list(c, |c| c.at_end())?;
    Ok(CommandBody::Sort {
        uid,
        returns,
        criteria,
        charset,
        search,
    })
}

/// `SEARCH [SP RETURN SP (opts)] [SP CHARSET SP astring] 1*(SP search-key)`
pub(super) fn search(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let mut returns = None;
    if c.peek_keyword("RETURN ") {
        c.keyword()?;
        c.sp()?;
        let options = c.paren_list(true, |c| return_option(c, false))?;
        returns = Some(options);
        c.sp()?;
    }
    let mut charset = None;
    if c.peek_keyword("CHARSET ") {
        c.keyword()?;
        c.sp()?;
        charset = Some(c.astring_utf8()?);
        c.sp()?;
    }
    let criteria = key_list(c, |c| c.at_end())?;
    Ok(CommandBody::Search {
        uid,
        charset,
        returns,
        criteria,
    })
}

/// One ESEARCH / ESORT return option (RFC 4731, RFC 5182, RFC 5267). SORT
/// takes every one but SAVE.
fn return_option(c: &mut Cursor<'_>, sort: bool) -> PResult<SearchReturn> {
    let option = match c.keyword()?.as_str() {
        "MIN" => SearchReturn::Min,
        "MAX" => SearchReturn::Max,
        "ALL" => SearchReturn::All,
        "COUNT" => SearchReturn::Count,
        "SAVE" if !sort => SearchReturn::Save,
        "UPDATE" => SearchReturn::Update,
        "CONTEXT" => SearchReturn::Context,
        "PARTIAL" => {
            c.sp()?;
            SearchReturn::Partial(partial_range(c)?)
        }
        _ if sort => return Err(c.error("Unknown SORT return option")),
        _ => return Err(c.error("Unknown SEARCH return option")),
    };
    Ok(option)
}

/// `partial-range`: `n:m` or, counted from the end (RFC 9394), `-n:-m`,
/// both non-zero, in either order.
pub(super) fn partial_range(c: &mut Cursor<'_>) -> PResult<PartialRange> {
    let from_end = c.eat(b'-');
    let a = c.nz_number()?;
    c.expect(b':')?;
    if c.eat(b'-') != from_end {
        return Err(c.error("PARTIAL range mixes positions from the start and the end"));
    }
    let b = c.nz_number()?;
    Ok(PartialRange {
        first: a.min(b),
        last: a.max(b),
        from_end,
    })
}

/// `CANCELUPDATE 1*(SP tag-string)` (RFC 5267 4.3): the tags are strings.
pub(super) fn cancel_update(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    let mut tags = Vec::new();
    while !c.at_end() {
        c.sp()?;
        tags.push(c.string_utf8()?);
    }
    if tags.is_empty() {
        return Err(c.error("Missing arguments"));
    }
    Ok(CommandBody::CancelUpdate { tags })
}

/// Keys separated by spaces until `done`; one key stands for itself, more
/// make an `And`.
fn key_list(c: &mut Cursor<'_>, done: impl Fn(&Cursor<'_>) -> bool) -> PResult<SearchKey> {
    let mut keys = vec![search_key(c)?];
    while !done(c) {
        c.sp()?;
        keys.push(search_key(c)?);
    }
    Ok(match keys.pop() {
        Some(key) if keys.is_empty() => key,
        Some(key) => {
            keys.push(key);
            SearchKey::And(keys)
        }
        None => SearchKey::All,
    })
}

/// One `search-key`, recursing for NOT, OR and parentheses up to
/// [`NESTING_MAX`].
fn search_key(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    if c.depth >= NESTING_MAX {
        return Err(c.error("Search keys nested too deeply"));
    }
    c.depth += 1;
    let key = search_key_inner(c);
    c.depth -= 1;
    key
}

fn search_key_inner(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    if c.eat(b'(') {
        let key = key_list(c, |c| c.peek() == Some(b')') || c.at_end())?;
        c.expect(b')')?;
        return Ok(key);
    }
    if c.at_sequence() {
        return Ok(SearchKey::SequenceSet(c.sequence()?));
    }
    let name = c.keyword()?;
    let key = match name.as_str() {
        "ALL" => SearchKey::All,
        "ANSWERED" => SearchKey::Answered,
        "DELETED" => SearchKey::Deleted,
        "DRAFT" => SearchKey::Draft,
        "FLAGGED" => SearchKey::Flagged,
        "NEW" => SearchKey::New,
        "OLD" => SearchKey::Old,
        "RECENT" => SearchKey::Recent,
        "SEEN" => SearchKey::Seen,
        "UNANSWERED" => SearchKey::Unanswered,
        "UNDELETED" => SearchKey::Undeleted,
        "UNDRAFT" => SearchKey::Undraft,
        "UNFLAGGED" => SearchKey::Unflagged,
        "UNSEEN" => SearchKey::Unseen,
        "SAVEDATESUPPORTED" => SearchKey::SaveDateSupported,
        "BCC" => SearchKey::Bcc(arg_string(c)?),
        "BODY" => SearchKey::Body(arg_string(c)?),
        "CC" => SearchKey::Cc(arg_string(c)?),
        "FROM" => SearchKey::From(arg_string(c)?),
        "SUBJECT" => SearchKey::Subject(arg_string(c)?),
        "TEXT" => SearchKey::Text(arg_string(c)?),
        "TO" => SearchKey::To(arg_string(c)?),
        "KEYWORD" => SearchKey::Keyword(arg_keyword(c)?),
        "UNKEYWORD" => SearchKey::Unkeyword(arg_keyword(c)?),
        "HEADER" => {
            let field = arg_string(c)?;
            SearchKey::Header(field, arg_string(c)?)
        }
        "BEFORE" => SearchKey::Before(arg_date(c)?),
        "ON" => SearchKey::On(arg_date(c)?),
        "SINCE" => SearchKey::Since(arg_date(c)?),
        "SENTBEFORE" => SearchKey::SentBefore(arg_date(c)?),
        "SENTON" => SearchKey::SentOn(arg_date(c)?),
        "SENTSINCE" => SearchKey::SentSince(arg_date(c)?),
        "SAVEDBEFORE" => SearchKey::SavedBefore(arg_date(c)?),
        "SAVEDON" => SearchKey::SavedOn(arg_date(c)?),
        "SAVEDSINCE" => SearchKey::SavedSince(arg_date(c)?),
        "LARGER" => {
            c.sp()?;
            SearchKey::Larger(c.number64()?)
        }
        "SMALLER" => {
            c.sp()?;
            SearchKey::Smaller(c.number64()?)
        }
        "OLDER" => {
            c.sp()?;
            SearchKey::Older(u64::from(c.nz_number()?))
        }
        "YOUNGER" => {
            c.sp()?;
            SearchKey::Younger(u64::from(c.nz_number()?))
        }
        "UID" => {
            c.sp()?;
            SearchKey::Uid(c.sequence()?)
        }
        "NOT" => {
            c.sp()?;
            SearchKey::Not(Box::new(search_key(c)?))
        }
        "OR" => {
            c.sp()?;
            let left = search_key(c)?;
            c.sp()?;
            SearchKey::Or(Box::new(left), Box::new(search_key(c)?))
        }
        "MODSEQ" => modseq(c)?,
        "EMAILID" => SearchKey::EmailId(arg_object_id(c)?),
        "THREADID" => SearchKey::ThreadId(arg_object_id(c)?),
        _ => return Err(c.error(format!("Unknown search key {name}"))),
    };
    Ok(key)
}

fn arg_string(c: &mut Cursor<'_>) -> PResult<String> {
    c.sp()?;
    c.astring_utf8()
}

fn arg_keyword(c: &mut Cursor<'_>) -> PResult<String> {
    c.sp()?;
    Ok(String::from_utf8_lossy(c.atom()?).into_owned())
}

fn arg_date(c: &mut Cursor<'_>) -> PResult<crate::types::Date> {
    c.sp()?;
    c.date()
}

/// `objectid = 1*255(ALPHA / DIGIT / "_" / "-")` (RFC 8474).
fn arg_object_id(c: &mut Cursor<'_>) -> PResult<String> {
    c.sp()?;
    let id = c.atom()?;
    let valid = id.len() <= 255
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(c.error("Invalid object id"));
    }
    Ok(String::from_utf8_lossy(id).into_owned())
}

/// `MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer`; the
/// entry name and type are checked and dropped (we keep one modseq per
/// message, not per flag).
fn modseq(c: &mut Cursor<'_>) -> PResult<SearchKey> {
    c.sp()?;
    if c.peek() == Some(b'"') {
        let entry = c.string()?;
        if !entry.starts_with(b"/flags/") {
            return Err(c.error("Invalid MODSEQ entry name"));
        }
        c.sp()?;
        match c.keyword()?.as_str() {
            "PRIV" | "SHARED" | "ALL" => {}
            _ => return Err(c.error("Invalid MODSEQ entry type")),
        }
        c.sp()?;
    }
    Ok(SearchKey::ModSeq(c.number64()?))
}
