//! FETCH data items (RFC 9051 6.4.5, RFC 3516 BINARY, RFC 7162 CONDSTORE /
//! QRESYNC, RFC 8474 OBJECTID, RFC 8514 SAVEDATE, RFC 8970 PREVIEW).

use super::lexer::{Cursor, PResult};
use super::search::partial_range;
use crate::types::{
    CommandBody, FetchAttr, FetchModifiers, Partial, PartialRange, Section, SectionText,
};

/// `FETCH seq SP (macro / item / "(" item *(SP item) ")") [SP modifiers]`
pub(super) fn fetch(c: &mut Cursor<'_>, uid: bool) -> PResult<CommandBody> {
    c.sp()?;
    let sequence = c.sequence()?;
    c.sp()?;
    let attrs = if c.peek() == Some(b'(') {
        c.paren_list(false, fetch_attr)?
    } else {
        match macro_or_attr(c)? {
            Item::Macro(attrs) => attrs,
            Item::Attr(attr) => vec![attr],
        }
    };
    let mut modifiers = FetchModifiers::default();
    if c.eat(b' ') {
        let list = c.paren_list(false, |c| match c.keyword()?.as_str() {
            "CHANGEDSINCE" => {
                c.sp()?;
                Ok(Modifier::ChangedSince(c.number64()?))
            }
            "VANISHED" => Ok(Modifier::Vanished),
            "PARTIAL" => {
                c.sp()?;
                Ok(Modifier::Partial(partial_range(c)?))
            }
            _ => Err(c.error("Unknown FETCH modifier")),
        })?;
        for modifier in list {
            match modifier {
                Modifier::ChangedSince(n) => modifiers.changed_since = Some(n),
                Modifier::Vanished => modifiers.vanished = true,
                Modifier::Partial(range) => modifiers.partial = Some(range),
            }
        }
        // RFC 7162 3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
        if modifiers.vanished && (!uid || modifiers.changed_since.is_none()) {
            return Err(c.error("VANISHED requires UID FETCH with CHANGEDSINCE"));
        }
    }
    Ok(CommandBody::Fetch {
        uid,
        sequence,
        attrs,
        modifiers,
    })
}

enum Modifier {
    ChangedSince(u64),
    Vanished,
    Partial(PartialRange),
}

enum Item {
    Macro(Vec<FetchAttr>),
    Attr(FetchAttr),
}

fn macro_or_attr(c: &mut Cursor<'_>) -> PResult<Item> {
    use FetchAttr::{Body, Envelope, Flags, InternalDate, Rfc822Size};
    let fast = || vec![Flags, InternalDate, Rfc822Size];
    let all = || vec![Flags, InternalDate, Rfc822Size, Envelope];
    let item = if c.peek_keyword("ALL") && !continues_name(c, 3) {
        c.item_name()?;
        Item::Macro(all())
    } else if c.peek_keyword("FAST") && !continues_name(c, 4) {
        c.item_name()?;
        Item::Macro(fast())
    } else if c.peek_keyword("FULL") && !continues_name(c, 4) {
        c.item_name()?;
        let mut attrs = all();
        attrs.push(Body);
        Item::Macro(attrs)
    } else {
        Item::Attr(fetch_attr(c)?)
    };
    Ok(item)
}

/// Would the item name go on after `len` bytes (so `ALLX` is not `ALL`)?
fn continues_name(c: &Cursor<'_>, len: usize) -> bool {
    c.peek_at(len)
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// One `fetch-att`.
pub(super) fn fetch_attr(c: &mut Cursor<'_>) -> PResult<FetchAttr> {
    let name = c.item_name()?;
    let attr = match name.as_str() {
        "ENVELOPE" => FetchAttr::Envelope,
        "FLAGS" => FetchAttr::Flags,
        "INTERNALDATE" => FetchAttr::InternalDate,
        "RFC822" => FetchAttr::Rfc822,
        "RFC822.HEADER" => FetchAttr::Rfc822Header,
        "RFC822.SIZE" => FetchAttr::Rfc822Size,
        "RFC822.TEXT" => FetchAttr::Rfc822Text,
        "BODYSTRUCTURE" => FetchAttr::BodyStructure,
        "UID" => FetchAttr::Uid,
        "MODSEQ" => FetchAttr::ModSeq,
        "EMAILID" => FetchAttr::EmailId,
        "THREADID" => FetchAttr::ThreadId,
        "SAVEDATE" => FetchAttr::SaveDate,
        "BODY" if c.peek() != Some(b'[') => FetchAttr::Body,
        "BODY" | "BODY.PEEK" => {
            let section = section(c)?;
            let partial = partial(c)?;
            FetchAttr::BodySection {
                peek: name == "BODY.PEEK",
                section,
                partial,
            }
        }
        "BINARY" | "BINARY.PEEK" => {
            let part = binary_part(c)?;
            let partial = partial(c)?;
            FetchAttr::Binary {
                peek: name == "BINARY.PEEK",
                part,
                partial,
            }
        }
        "BINARY.SIZE" => FetchAttr::BinarySize {
            part: binary_part(c)?,
        },
        "PREVIEW" => FetchAttr::Preview {
            lazy: preview_modifiers(c)?,
        },
        _ => return Err(c.error(format!("Unknown FETCH item {name}"))),
    };
    Ok(attr)
}

/// `PREVIEW (LAZY)`: a following `(` belongs to PREVIEW only when it opens
/// `LAZY`; otherwise it is the FETCH modifier list of a single-item FETCH.
fn preview_modifiers(c: &mut Cursor<'_>) -> PResult<bool> {
    if !(c.peek() == Some(b' ') && c.peek_at(1) == Some(b'(') && c.peek_keyword_at(2, "LAZY")) {
        return Ok(false);
    }
    c.sp()?;
    let mods = c.paren_list(false, |c| match c.keyword()?.as_str() {
        "LAZY" => Ok(()),
        _ => Err(c.error("Unknown PREVIEW modifier")),
    })?;
    Ok(!mods.is_empty())
}

/// `[` section-spec `]`
pub(super) fn section(c: &mut Cursor<'_>) -> PResult<Section> {
    c.expect(b'[')?;
    let mut section = Section::default();
    if c.eat(b']') {
        return Ok(section);
    }
    if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        section.part.push(c.nz_number()?);
        while c.eat(b'.') {
            if c.peek().is_some_and(|b| b.is_ascii_digit()) {
                section.part.push(c.nz_number()?);
            } else {
                section.text = Some(section_text(c, true)?);
                break;
            }
        }
    } else {
        section.text = Some(section_text(c, false)?);
    }
    c.expect(b']')?;
    Ok(section)
}

/// `section-msgtext` or (after a part) `MIME`.
fn section_text(c: &mut Cursor<'_>, after_part: bool) -> PResult<SectionText> {
    let name = c.item_name()?;
    let text = match name.as_str() {
        "HEADER" => SectionText::Header,
        "TEXT" => SectionText::Text,
        "MIME" if after_part => SectionText::Mime,
        "HEADER.FIELDS" => SectionText::HeaderFields(header_list(c)?),
        "HEADER.FIELDS.NOT" => SectionText::HeaderFieldsNot(header_list(c)?),
        _ => return Err(c.error("Invalid section")),
    };
    Ok(text)
}

/// `SP "(" header-fld-name *(SP header-fld-name) ")"`
fn header_list(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    c.sp()?;
    c.paren_list(false, |c| c.astring_utf8())
}

/// `[` [part] `]` of BINARY.
fn binary_part(c: &mut Cursor<'_>) -> PResult<Vec<u32>> {
    c.expect(b'[')?;
    let mut part = Vec::new();
    if c.eat(b']') {
        return Ok(part);
    }
    part.push(c.nz_number()?);
    while c.eat(b'.') {
        part.push(c.nz_number()?);
    }
    c.expect(b']')?;
    Ok(part)
}

/// `<origin.count>`
fn partial(c: &mut Cursor<'_>) -> PResult<Option<Partial>> {
    if !c.eat(b'<') {
        return Ok(None);
    }
    let origin = c.number()?;
    c.expect(b'.')?;
    let count = c.nz_number()?;
    c.expect(b'>')?;
    Ok(Some(Partial { origin, count }))
}
