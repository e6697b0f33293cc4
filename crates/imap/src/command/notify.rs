//! NOTIFY SET / NOTIFY NONE (RFC 5465). The checks are here; what a session
//! is told, and when, is [`crate::notify`].

use crate::notify::{Events, Group, filter};
use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{FetchAttr, NotifyEvent, NotifyFilter, NotifyGroup};

/// What BADEVENT lists: every event this server can report.
const SUPPORTED_EVENTS: &str =
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

pub(crate) async fn notify(
    session: &mut Session,
    status: bool,
    groups: Option<Vec<NotifyGroup>>,
) -> Result<Done, End> {
    let Some(groups) = groups else {
        session.notify = None;
        return Ok(Done::ok("NOTIFY NONE completed"));
    };
    let mut checked = Vec::with_capacity(groups.len());
    for group in &groups {
        let events = match events(group) {
            Ok(events) => events,
            Err(done) => return Ok(done),
        };
        let filter = match filter(session, &group.filter) {
            Ok(filter) => filter,
            Err(done) => return Ok(done),
        };
        checked.push(Group { filter, events });
    }
    let selected_groups = groups
        .iter()
        .filter(|g| {
            matches!(
                g.filter,
                NotifyFilter::Selected | NotifyFilter::SelectedDelayed
            )
        })
        .count();
    if selected_groups > 1 {
        return Ok(Done::bad(
            "SELECTED and SELECTED-DELAYED may be given once, and not both",
        ));
    }
    // The selected mailbox is brought up to date first, so what NOTIFY
    // reports from now on starts from what the client knows.
    session.sync(false).await?;
    if let Err(done) = session.notify_start(checked, status) {
        return Ok(done);
    }
    Ok(Done::ok("NOTIFY completed"))
}

/// The events of one group, checked as RFC 5465 3.1 and 5 ask.
fn events(group: &NotifyGroup) -> Result<Events, Done> {
    let mut events = Events::default();
    let mut unsupported = false;
    for event in &group.events {
        match event {
            NotifyEvent::MessageNew(attrs) => {
                events.message_new = true;
                events.fetch = attrs.clone();
            }
            NotifyEvent::MessageExpunge => events.message_expunge = true,
            NotifyEvent::FlagChange => events.flag_change = true,
            NotifyEvent::MailboxName => events.mailbox_name = true,
            NotifyEvent::SubscriptionChange => events.subscription_change = true,
            NotifyEvent::AnnotationChange
            | NotifyEvent::MailboxMetadataChange
            | NotifyEvent::ServerMetadataChange
            | NotifyEvent::Other(_) => unsupported = true,
        }
    }
    if unsupported {
        return Err(Done::no_code(
            format!("BADEVENT ({SUPPORTED_EVENTS})"),
            "an event asked for is not one this server reports",
        ));
    }
    if events.message_new != events.message_expunge {
        return Err(Done::bad(
            "MessageNew and MessageExpunge must be asked for together",
        ));
    }
    if events.flag_change && !events.message_new {
        return Err(Done::bad("FlagChange needs MessageNew and MessageExpunge"));
    }
    let selected = matches!(
        group.filter,
        NotifyFilter::Selected | NotifyFilter::SelectedDelayed
    );
    if !events.fetch.is_empty() && !selected {
        return Err(Done::bad(
            "MessageNew FETCH items are for the selected mailbox only",
        ));
    }
    // A notification must not change the message: bodies are read as PEEK,
    // and the RFC822 forms, which set \Seen, are refused.
    for attr in &mut events.fetch {
        match attr {
            FetchAttr::BodySection { peek, .. } | FetchAttr::Binary { peek, .. } => *peek = true,
            FetchAttr::Rfc822 | FetchAttr::Rfc822Text => {
                return Err(Done::bad(
                    "MessageNew cannot fetch RFC822 or RFC822.TEXT (they set \\Seen); use BODY.PEEK",
                ));
            }
            _ => {}
        }
    }
    Ok(events)
}
