//! ENVELOPE rendering (RFC 9051 7.5.2, RFC 3501 7.4.2).
//!
//! `("date" "subject" (from) (sender) (reply-to) (to) (cc) (bcc)
//! "in-reply-to" "message-id")`, every string the raw unfolded header value:
//! clients decode encoded words themselves.

use crate::address::{self, Address};
use crate::header::fields;
use crate::imap::{push_nstring, push_string};

/// The header fields ENVELOPE is made of, in the order it lists them.
const ENVELOPE_FIELDS: [&str; 10] = [
    "date",
    "subject",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "in-reply-to",
    "message-id",
];

/// Renders the ENVELOPE of the message whose header block is `header`.
pub(crate) fn render(header: &[u8], out: &mut String) {
    // First occurrence of each field, unfolded.
    let mut values: [Option<Vec<u8>>; 10] = Default::default();
    for field in fields(header) {
        if let Some(index) = ENVELOPE_FIELDS.iter().position(|name| field.is(name))
            && let Some(slot) = values.get_mut(index)
            && slot.is_none()
        {
            *slot = Some(field.unfolded());
        }
    }
    let [
        date,
        subject,
        from,
        sender,
        reply_to,
        to,
        cc,
        bcc,
        in_reply_to,
        message_id,
    ] = values;

    let from = from.map(|value| address::parse(&value)).unwrap_or_default();
    // RFC 9051 7.5.2: an absent or empty Sender or Reply-To takes the value
    // of From.
    let or_from = |value: Option<Vec<u8>>| match value.map(|value| address::parse(&value)) {
        Some(list) if !list.is_empty() => list,
        _ => from.clone(),
    };
    let sender = or_from(sender);
    let reply_to = or_from(reply_to);
    let list = |value: Option<Vec<u8>>| {
        value
            .map(|value| address::parse(&value))
            .unwrap_or_default()
    };

    out.push('(');
    push_nstring(out, date.as_deref());
    out.push(' ');
    push_nstring(out, subject.as_deref());
    for addresses in [&from, &sender, &reply_to, &list(to), &list(cc), &list(bcc)] {
        out.push(' ');
        push_addresses(out, addresses);
    }
    out.push(' ');
    push_nstring(out, in_reply_to.as_deref());
    out.push(' ');
    push_nstring(out, message_id.as_deref());
    out.push(')');
}

/// `"(" 1*address ")"` or NIL. Addresses are written without separators,
/// as the formal syntax says (RFC 3501's example shows a space, which the
/// grammar does not allow; Dovecot and Cyrus write none).
fn push_addresses(out: &mut String, addresses: &[Address]) {
    if addresses.is_empty() {
        out.push_str("NIL");
        return;
    }
    out.push('(');
    for address in addresses {
        out.push('(');
        match address {
            Address::Mailbox {
                name,
                route,
                local,
                domain,
            } => {
                push_nstring(out, name.as_deref());
                out.push(' ');
                push_nstring(out, route.as_deref());
                out.push(' ');
                push_string(out, local);
                out.push(' ');
                push_string(out, domain);
            }
            Address::GroupStart(name) => {
                out.push_str("NIL NIL ");
                push_string(out, name);
                out.push_str(" NIL");
            }
            Address::GroupEnd => out.push_str("NIL NIL NIL NIL"),
        }
        out.push(')');
    }
    out.push(')');
}
