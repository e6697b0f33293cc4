//! NOTIFY (RFC 5465): `NOTIFY NONE` and `NOTIFY SET [STATUS] event-group...`.
//!
//! Events the grammar names but the server does not support, and unknown
//! `event-ext` atoms, parse as [`NotifyEvent::Other`] so the session can answer
//! `NO [BADEVENT ...]` as the RFC asks rather than BAD. The rules that tie
//! events together (MessageNew with MessageExpunge, ...) are the session's.

use super::fetch::fetch_attr;
use super::lexer::{Cursor, PResult};
use crate::types::{CommandBody, NotifyEvent, NotifyFilter, NotifyGroup};

/// Most mailboxes one SUBTREE or MAILBOXES filter names; the line bound
/// limits them anyway, this keeps each filter's matching cheap.
const FILTER_MAILBOXES_MAX: usize = 1000;

pub(super) fn notify(c: &mut Cursor<'_>) -> PResult<CommandBody> {
    c.sp()?;
    match c.keyword()?.as_str() {
        "NONE" => Ok(CommandBody::Notify {
            status: false,
            groups: None,
        }),
        "SET" => {
            c.sp()?;
            let mut status = false;
            if c.peek_keyword("STATUS ") {
                c.keyword()?;
                c.sp()?;
                status = true;
            }
            let mut groups = vec![group(c)?];
            while !c.at_end() {
                c.sp()?;
                groups.push(group(c)?);
            }
            Ok(CommandBody::Notify {
                status,
                groups: Some(groups),
            })
        }
        _ => Err(c.error("Expected NOTIFY SET or NOTIFY NONE")),
    }
}

/// `"(" filter-mailboxes SP events ")"`
fn group(c: &mut Cursor<'_>) -> PResult<NotifyGroup> {
    c.expect(b'(')?;
    let filter = match c.keyword()?.as_str() {
        "SELECTED" => NotifyFilter::Selected,
        "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
        "INBOXES" => NotifyFilter::Inboxes,
        "PERSONAL" => NotifyFilter::Personal,
        "SUBSCRIBED" => NotifyFilter::Subscribed,
        "SUBTREE" => {
            c.sp()?;
            NotifyFilter::Subtree(mailboxes(c)?)
        }
        "MAILBOXES" => {
            c.sp()?;
            NotifyFilter::Mailboxes(mailboxes(c)?)
        }
        other => return Err(c.error(format!("Unknown NOTIFY mailbox filter {other}"))),
    };
    c.sp()?;
    let events = if c.peek() == Some(b'(') {
        c.paren_list(false, event)?
    } else if c.keyword()? == "NONE" {
        Vec::new()
    } else {
        return Err(c.error("Expected a list of events or NONE"));
    };
    c.expect(b')')?;
    Ok(NotifyGroup { filter, events })
}

/// `one-or-more-mailbox`: a mailbox or a parenthesised list of them.
fn mailboxes(c: &mut Cursor<'_>) -> PResult<Vec<String>> {
    let names = if c.peek() == Some(b'(') {
        c.paren_list(false, |c| c.mailbox())?
    } else {
        vec![c.mailbox()?]
    };
    if names.len() > FILTER_MAILBOXES_MAX {
        return Err(c.error("Too many mailboxes in a NOTIFY filter"));
    }
    Ok(names)
}

fn event(c: &mut Cursor<'_>) -> PResult<NotifyEvent> {
    let name = c.keyword()?;
    Ok(match name.as_str() {
        "MESSAGENEW" => {
            let mut attrs = Vec::new();
            if c.peek() == Some(b' ') && c.peek_at(1) == Some(b'(') {
                c.sp()?;
                attrs = c.paren_list(false, fetch_attr)?;
            }
            NotifyEvent::MessageNew(attrs)
        }
        "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
        "FLAGCHANGE" => NotifyEvent::FlagChange,
        "ANNOTATIONCHANGE" => NotifyEvent::AnnotationChange,
        "MAILBOXNAME" => NotifyEvent::MailboxName,
        "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
        "MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
        "SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
        _ => NotifyEvent::Other(name),
    })
}
