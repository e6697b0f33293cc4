//! LIST (RFC 9051 6.3.9 with LIST-EXTENDED RFC 5258, SPECIAL-USE RFC 6154,
//! LIST-STATUS RFC 5819), LSUB and STATUS.

use super::lexer::{Cursor, PResult};
use crate::types::{CommandBody, ListReturn, ListSelect, StatusItem};

/// `LIST [SP select-opts] SP mailbox SP (pattern / "(" patterns ")") [SP RETURN SP (opts)]`
pub(super) fn list(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mut select = ListSelect::default();
    if c.peek() == Some(b'(') {
        let options = c.paren_list(true, |c| c.keyword())?;
        for option in options {
            match option.as_str() {
                "SUBSCRIBED" => select.subscribed = true,
                "REMOTE" => select.remote = true,
                "RECURSIVEMATCH" => select.recursive_match = true,
                "SPECIAL-USE" => select.special_use = true,
                _ => return Err(c.error(format!("Unknown LIST selection option {option}"))),
            }
        }
        // RFC 5258 3.1: RECURSIVEMATCH alone says nothing to match against.
        if select.recursive_match && !(select.subscribed || select.special_use) {
            return Err(c.error("RECURSIVEMATCH needs another selection option"));
        }
        c.sp()?;
    }
    let reference = c.astring_utf8()?;
    c.sp()?;
    let patterns = if c.peek() == Some(b'(') {
        c.paren_list(false, |c| c.list_mailbox())?
    } else {
        vec![c.list_mailbox()?]
    };
    let mut returns = ListReturn::default();
    if c.eat(b' ') {
        if !c.peek_keyword("RETURN ") {
            return Err(c.error("Expected RETURN"));
        }
        c.keyword()?;
        c.sp()?;
        c.paren_list(true, |c| {
            match c.keyword()?.as_str() {
                "SUBSCRIBED" => returns.subscribed = true,
                "CHILDREN" => returns.children = true,
                "SPECIAL-USE" => returns.special_use = true,
                "STATUS" => {
                    c.sp()?;
                    returns.status = Some(status_items(c)?);
                }
                _ => return Err(c.error("Unknown LIST return option")),
            }
            Ok(())
        })?;
    }
    Ok(CommandBody::List {
        lsub: false,
        reference,
        patterns,
        select,
        returns,
    })
}

/// `LSUB SP mailbox SP list-mailbox`
pub(super) fn lsub(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let reference = c.astring_utf8()?;
    c.sp()?;
    let pattern = c.list_mailbox()?;
    Ok(CommandBody::List {
        lsub: true,
        reference,
        patterns: vec![pattern],
        select: ListSelect::default(),
        returns: ListReturn::default(),
    })
}

/// `STATUS SP mailbox SP "(" status-att *(SP status-att) ")"`
pub(super) fn status(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    let mailbox = c.mailbox()?;
    c.sp()?;
    let items = status_items(c)?;
    Ok(CommandBody::Status { mailbox, items })
}

fn status_items(c: &mut Cursor<'_>) -> PResult<Vec<StatusItem>> {
    c.paren_list(false, |c| {
        let item = match c.keyword()?.as_str() {
            "MESSAGES" => StatusItem::Messages,
            "RECENT" => StatusItem::Recent,
            "UIDNEXT" => StatusItem::UidNext,
            "UIDVALIDITY" => StatusItem::UidValidity,
            "UNSEEN" => StatusItem::Unseen,
            "DELETED" => StatusItem::Deleted,
            "SIZE" => StatusItem::Size,
            "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
            "APPENDLIMIT" => StatusItem::AppendLimit,
            "MAILBOXID" => StatusItem::MailboxId,
            other => return Err(c.error(format!("Unknown STATUS item {other}"))),
        };
        Ok(item)
    })
}
