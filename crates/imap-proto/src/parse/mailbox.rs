//! SELECT / EXAMINE (with CONDSTORE and QRESYNC, RFC 7162), CREATE (with
//! CREATE-SPECIAL-USE, RFC 6154) and APPEND (with MULTIAPPEND, RFC 3502, and
//! literal8, RFC 3516), GETMETADATA and SETMETADATA (RFC 5464).

use super::lexer::{Cursor, PResult};
use crate::types::{
    AppendMessage, CatenatePart, CommandBody, MetadataDepth, MetadataOptions, QresyncParams,
    SelectParams,
};

/// Most entries one GETMETADATA or SETMETADATA names.
pub const METADATA_ENTRIES_MAX: usize = 1000;

/// `mailbox [SP "(" select-param *(SP select-param) ")"]`
pub(super) fn select(c: &mut Cursor<'_>) -> PResult<(String, SelectParams)> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut params = SelectParams::default();
    if c.eat(b' ') {
        c.paren_list(false, |c| {
            match c.keyword()?.as_str() {
                "CONDSTORE" => params.condstore = true,
                "QRESYNC" => {
                    c.sp()?;
                    params.qresync = Some(qresync(c)?);
                }
                _ => return Err(c.error("Unknown SELECT parameter")),
            }
            Ok(())
        })?;
    }
    Ok((mailbox, params))
}

/// `"(" uidvalidity SP mod-sequence-value [SP known-uids]
///  [SP "(" known-sequence-set SP known-uid-set ")"] ")"`
fn qresync(c: &mut Cursor<'_>) -> PResult<QresyncParams> {
    c.expect(b'(')?;
    let uid_validity = c.nz_number()?;
    c.sp()?;
    let mod_seq = c.number64()?;
    let mut known_uids = None;
    let mut seq_match = None;
    if c.eat(b' ') {
        if c.peek() != Some(b'(') {
            known_uids = Some(c.seq_ranges_no_star()?);
            if c.eat(b' ') {
                seq_match = Some(seq_match_data(c)?);
            }
        } else {
            seq_match = Some(seq_match_data(c)?);
        }
    }
    c.expect(b')')?;
    Ok(QresyncParams {
        uid_validity,
        mod_seq,
        known_uids,
        seq_match,
    })
}

fn seq_match_data(
    c: &mut Cursor<'_>,
) -> PResult<(Vec<crate::types::SeqRange>, Vec<crate::types::SeqRange>)> {
    c.expect(b'(')?;
    let sequences = c.seq_ranges_no_star()?;
    c.sp()?;
    let uids = c.seq_ranges_no_star()?;
    c.expect(b')')?;
    Ok((sequences, uids))
}

/// `CREATE mailbox [SP "(" USE SP "(" use-attr *(SP use-attr) ")" ")"]`
pub(super) fn create(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut special_use = Vec::new();
    if c.eat(b' ') {
        c.paren_list(false, |c| {
            if c.keyword()? != "USE" {
                return Err(c.error("Unknown CREATE parameter"));
            }
            c.sp()?;
            special_use.extend(c.flag_list()?);
            Ok(())
        })?;
    }
    Ok(CommandBody::Create {
        mailbox,
        special_use,
    })
}

/// `APPEND mailbox 1*(SP [flag-list SP] [date-time SP] append-data)`, where
/// `append-data = literal / literal8 / "CATENATE" SP "(" cat-part *(SP cat-part) ")"`
/// (RFC 4469).
pub(super) fn append(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    let mut messages = Vec::new();
    while c.eat(b' ') {
        let flags = if c.peek() == Some(b'(') {
            let flags = c.flag_list()?;
            c.sp()?;
            flags
        } else {
            Vec::new()
        };
        let date = if c.peek() == Some(b'"') {
            let date = c.date_time()?;
            c.sp()?;
            Some(date)
        } else {
            None
        };
        if c.peek_keyword("CATENATE") && c.peek_at(8) == Some(b' ') {
            c.keyword()?;
            c.sp()?;
            let parts = c.paren_list(false, cat_part)?;
            messages.push(AppendMessage {
                flags,
                date,
                data: Vec::new(),
                binary: false,
                catenate: Some(parts),
            });
            continue;
        }
        // A NUL in a plain literal is left to the session to judge: it knows
        // whether to answer BAD or convert, and the data is not text to us.
        let (data, binary) = c.literal()?;
        messages.push(AppendMessage {
            flags,
            date,
            data: data.to_vec(),
            binary,
            catenate: None,
        });
    }
    if messages.is_empty() {
        return Err(c.error("Missing message literal"));
    }
    Ok(CommandBody::Append { mailbox, messages })
}

/// `cat-part = text-literal / url` (RFC 4469): `TEXT literal`, `TEXT
/// literal8` (with BINARY) or `URL astring`.
fn cat_part(c: &mut Cursor<'_>) -> PResult<CatenatePart> {
    match c.keyword()?.as_str() {
        "TEXT" => {
            c.sp()?;
            let (data, binary) = c.literal()?;
            Ok(CatenatePart::Text {
                data: data.to_vec(),
                binary,
            })
        }
        "URL" => {
            c.sp()?;
            Ok(CatenatePart::Url(c.astring_utf8()?))
        }
        _ => Err(c.error("Expected TEXT or URL in CATENATE")),
    }
}

/// `GETMETADATA [SP "(" option *(SP option) ")"] SP mailbox SP entries`,
/// option `MAXSIZE number` / `DEPTH ("0" / "1" / "infinity")`, entries one
/// entry or a parenthesised list (RFC 5464 5).
pub(super) fn get_metadata(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mut options = MetadataOptions::default();
    if c.peek() == Some(b'(') {
        let (mut max_size, mut depth) = (false, false);
        c.paren_list(false, |c| {
            match c.keyword()?.as_str() {
                "MAXSIZE" if !max_size => {
                    max_size = true;
                    c.sp()?;
                    options.max_size = Some(c.number64()?);
                }
                "DEPTH" if !depth => {
                    depth = true;
                    c.sp()?;
                    options.depth = match c.keyword()?.as_str() {
                        "0" => MetadataDepth::Zero,
                        "1" => MetadataDepth::One,
                        "INFINITY" => MetadataDepth::Infinity,
                        _ => return Err(c.error("DEPTH is 0, 1 or infinity")),
                    };
                }
                "MAXSIZE" | "DEPTH" => return Err(c.error("GETMETADATA option given twice")),
                _ => return Err(c.error("Unknown GETMETADATA option")),
            }
            Ok(())
        })?;
        c.sp()?;
    }
    let mailbox = c.mailbox()?;
    c.sp()?;
    let entries = if c.peek() == Some(b'(') {
        c.paren_list(false, |c| c.astring_utf8())?
    } else {
        vec![c.astring_utf8()?]
    };
    if entries.len() > METADATA_ENTRIES_MAX {
        return Err(c.error("Too many entries"));
    }
    Ok(CommandBody::GetMetadata {
        options,
        mailbox,
        entries,
    })
}

/// `SETMETADATA SP mailbox SP "(" entry SP value *(SP entry SP value) ")"`,
/// value `nstring / literal8` (RFC 5464 5).
pub(super) fn set_metadata(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    c.sp()?;
    let entries = c.paren_list(false, |c| {
        let entry = c.astring_utf8()?;
        c.sp()?;
        let value = match c.peek() {
            Some(b'{' | b'~') => {
                let (data, binary) = c.literal()?;
                if !binary && data.contains(&0) {
                    return Err(c.error("NUL in literal (send it as a literal8, ~{n})"));
                }
                Some(data.to_vec())
            }
            Some(b'"') => Some(c.string()?),
            _ if c.peek_keyword("NIL") && c.keyword()? == "NIL" => None,
            _ => return Err(c.error("Expected a string, a literal or NIL")),
        };
        Ok((entry, value))
    })?;
    if entries.len() > METADATA_ENTRIES_MAX {
        return Err(c.error("Too many entries"));
    }
    Ok(CommandBody::SetMetadata { mailbox, entries })
}
