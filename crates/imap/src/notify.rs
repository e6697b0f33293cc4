//! NOTIFY (RFC 5465): what a session asked to hear about, and telling it.
//!
//! The session learns that something changed from the store's per-user change
//! counter (the same `watch` IDLE waits on); it never polls. What changed is
//! derived cheaply: one read of the user's mailbox list (UIDNEXT and
//! HIGHESTMODSEQ per mailbox) compared with the values last seen, and message
//! counts read only for the mailboxes whose values moved. So a tick costs one
//! small query however many mailboxes there are, plus one per changed mailbox.
//!
//! - The selected mailbox, under a SELECTED or SELECTED-DELAYED group, is
//!   brought up to date by [`Session::sync`] as soon as it changes, also
//!   between commands (SELECTED-DELAYED holds expunges back until a command
//!   that allows them). New messages get the FETCH items MessageNew asked for.
//! - Other mailboxes get a `STATUS` (MESSAGES UIDNEXT UIDVALIDITY UNSEEN, and
//!   HIGHESTMODSEQ under CONDSTORE) when a message event they asked for
//!   happened: a new UIDNEXT is MessageNew, fewer messages than that explains
//!   is MessageExpunge, a new HIGHESTMODSEQ alone is FlagChange.
//! - MailboxName gives `LIST` for a created (`()`), deleted (`(\NonExistent)`)
//!   or renamed (`("OLDNAME" (old))`) mailbox; SubscriptionChange gives
//!   `LIST (\Subscribed)` or `LIST ()` as subscriptions come and go.
//!
//! Notifications go out while idling, between commands (the session waits on
//! the counter as it waits for input) and before each tagged completion.
//!
//! Bound: one round that would send more than `[imap] notify_responses_max`
//! responses sends none of them; the session says `* OK
//! [NOTIFICATIONOVERFLOW]` and NOTIFY is off, as RFC 5465 5.8 says (the client
//! resynchronises and may NOTIFY SET again).

use crate::session::{End, Session};
use imap_proto::{FetchAttr, FetchModifiers, NotifyFilter, SeqNumber, SeqRange, Sequence};
use std::collections::{BTreeSet, HashMap};

/// The events one group asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Events {
    pub message_new: bool,
    /// FETCH items for each new message (selected mailbox only).
    pub fetch: Vec<FetchAttr>,
    pub message_expunge: bool,
    pub flag_change: bool,
    pub mailbox_name: bool,
    pub subscription_change: bool,
}

/// Which mailboxes a group covers, with names decoded.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    Selected { delayed: bool },
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub filter: Filter,
    pub events: Events,
}

/// What the session last saw of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    name: String,
    uid_next: u32,
    highest_modseq: u64,
    /// `None` until a STATUS needed it.
    messages: Option<u32>,
}

pub(crate) struct Notify {
    groups: Vec<Group>,
    /// By mailbox id.
    seen: HashMap<String, Seen>,
    subscriptions: BTreeSet<String>,
    /// The store's change counter when the session last looked.
    counter: u64,
    /// New messages of the selected mailbox whose MessageNew FETCH is still due.
    pub new_uids: Vec<u32>,
    /// More new messages came than `new_uids` may hold: NOTIFICATIONOVERFLOW.
    pub overflowed: bool,
}

impl Notify {
    /// The group of the selected mailbox, if any.
    pub fn selected(&self) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| matches!(g.filter, Filter::Selected { .. }))
    }

    /// Whether new messages of the selected mailbox should be fetched.
    pub fn wants_new_fetch(&self) -> bool {
        self.selected().is_some_and(|g| !g.events.fetch.is_empty())
    }

    /// The first non-selected group that covers `name` (RFC 5465 6: the first
    /// match decides).
    fn group_for(&self, name: &str, subscribed: &BTreeSet<String>) -> Option<&Group> {
        self.groups.iter().find(|g| match &g.filter {
            Filter::Selected { .. } => false,
            Filter::Inboxes => name == "INBOX",
            Filter::Personal => true,
            Filter::Subscribed => subscribed.contains(name),
            Filter::Subtree(roots) => roots.iter().any(|root| {
                name == root
                    || name
                        .strip_prefix(root.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }),
            Filter::Mailboxes(names) => names.iter().any(|n| n == name),
        })
    }

    fn needs_subscriptions(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.events.subscription_change || matches!(g.filter, Filter::Subscribed))
    }
}

/// Converts a parsed filter, decoding names as the session does.
pub(crate) fn filter(
    session: &Session,
    parsed: &NotifyFilter,
) -> Result<Filter, crate::respond::Done> {
    let decode = |names: &[String]| -> Result<Vec<String>, crate::respond::Done> {
        names.iter().map(|n| session.mailbox_name(n)).collect()
    };
    Ok(match parsed {
        NotifyFilter::Selected => Filter::Selected { delayed: false },
        NotifyFilter::SelectedDelayed => Filter::Selected { delayed: true },
        NotifyFilter::Inboxes => Filter::Inboxes,
        NotifyFilter::Personal => Filter::Personal,
        NotifyFilter::Subscribed => Filter::Subscribed,
        NotifyFilter::Subtree(names) => Filter::Subtree(decode(names)?),
        NotifyFilter::Mailboxes(names) => Filter::Mailboxes(decode(names)?),
    })
}

impl Session {
    /// Starts notifying for `groups`: remembers the mailboxes as they are now
    /// and, with `status`, sends a STATUS of each one a group covers.
    pub(crate) fn notify_start(
        &mut self,
        groups: Vec<Group>,
        status: bool,
    ) -> Result<(), crate::respond::Done> {
        let reader = self.reader()?;
        let mailboxes = reader
            .mailboxes()
            .map_err(|e| crate::respond::Done::from_store(&e))?;
        let subscriptions: BTreeSet<String> = reader
            .subscriptions()
            .map_err(|e| crate::respond::Done::from_store(&e))?
            .into_iter()
            .collect();
        let counter = self.changes.as_ref().map_or(0, |c| *c.borrow());
        let mut notify = Notify {
            groups,
            seen: HashMap::new(),
            subscriptions,
            counter,
            new_uids: Vec::new(),
            overflowed: false,
        };
        let selected_id = self.selected.as_ref().map(|s| s.id.clone());
        let mut statuses = Vec::new();
        for info in mailboxes {
            let watched = notify
                .group_for(&info.name, &notify.subscriptions)
                .is_some_and(|g| g.events.message_new || g.events.message_expunge);
            // The message count now, so a later change can be told apart:
            // an expunge lowers it, a flag change does not. Read once per
            // watched mailbox, here; afterwards only for mailboxes that moved.
            let messages = if watched {
                reader.counts(&info.id).ok().map(|c| c.messages)
            } else {
                None
            };
            if status && watched && Some(&info.id) != selected_id.as_ref() {
                statuses.push((info.name.clone(), info.id.clone()));
            }
            notify.seen.insert(
                info.id.clone(),
                Seen {
                    name: info.name,
                    uid_next: info.uid_next,
                    highest_modseq: info.highest_modseq,
                    messages,
                },
            );
        }
        let limit = self.ctx.config.notify_responses_max;
        for (name, id) in statuses.into_iter().take(limit) {
            if let Some(messages) = self.write_notify_status(&name, &id)
                && let Some(seen) = notify.seen.get_mut(&id)
            {
                seen.messages = Some(messages);
            }
        }
        self.notify = Some(notify);
        Ok(())
    }

    /// Sends what changed since the last look. `between_commands`: no command
    /// is running (IDLE or waiting for input), so the selected mailbox may be
    /// brought up to date here; otherwise the running command did that.
    /// `fetch_ok`: MessageNew's FETCH of new messages may go out now.
    pub(crate) async fn notify_push(
        &mut self,
        between_commands: bool,
        idling: bool,
        fetch_ok: bool,
    ) -> Result<(), End> {
        let Some(notify) = self.notify.as_ref() else {
            return Ok(());
        };
        let selected_group = notify.selected().cloned();
        if between_commands && let Some(group) = &selected_group {
            let Filter::Selected { delayed } = group.filter else {
                return Ok(());
            };
            // SELECTED-DELAYED: expunges wait for a command that allows them
            // (IDLE is one).
            self.sync(idling || !delayed).await?;
        }
        if self.notify.as_ref().is_some_and(|n| n.overflowed) {
            self.notify_overflow(self.ctx.config.notify_responses_max, "new messages");
            return Ok(());
        }
        if fetch_ok {
            self.notify_fetch_new().await?;
        }
        self.notify_others();
        Ok(())
    }

    /// RFC 5465 5.8: too much at once. NOTIFY ends; the client resynchronises.
    fn notify_overflow(&mut self, limit: usize, what: &str) {
        tracing::info!(event = "imap_notify_overflow", what, limit);
        self.notify = None;
        self.out.extend_from_slice(
            format!(
                "* OK [NOTIFICATIONOVERFLOW] more than {limit} notifications at once \
                 (notify_responses_max={limit}); NOTIFY is off, resynchronise and NOTIFY SET again\r\n"
            )
            .as_bytes(),
        );
    }

    /// MessageNew's FETCH for new messages of the selected mailbox.
    async fn notify_fetch_new(&mut self) -> Result<(), End> {
        let Some(notify) = self.notify.as_mut() else {
            return Ok(());
        };
        if notify.new_uids.is_empty() {
            return Ok(());
        }
        let uids = std::mem::take(&mut notify.new_uids);
        let Some(group) = notify.selected() else {
            return Ok(());
        };
        let attrs = group.events.fetch.clone();
        let set = Sequence::Set(
            uids.iter()
                .map(|u| SeqRange {
                    start: SeqNumber::Value(*u),
                    end: SeqNumber::Value(*u),
                })
                .collect(),
        );
        let done =
            crate::command::fetch::fetch(self, true, &set, &attrs, &FetchModifiers::default())
                .await?;
        if done.status != crate::respond::Status::Ok {
            tracing::info!(event = "imap_notify_fetch_failed", text = %done.text);
        }
        Ok(())
    }

    /// STATUS and LIST for mailboxes other than the selected one.
    fn notify_others(&mut self) {
        let counter = self.changes.as_ref().map_or(0, |c| *c.borrow());
        let Some(notify) = self.notify.as_mut() else {
            return;
        };
        if counter == notify.counter {
            return;
        }
        notify.counter = counter;
        let Ok(reader) = self.reader() else {
            return;
        };
        let Some(notify) = self.notify.as_ref() else {
            return;
        };
        let mailboxes = match reader.mailboxes() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(event = "imap_notify_failed", error = %e);
                return;
            }
        };
        let subscriptions: BTreeSet<String> = if notify.needs_subscriptions() {
            match reader.subscriptions() {
                Ok(s) => s.into_iter().collect(),
                Err(e) => {
                    tracing::warn!(event = "imap_notify_failed", error = %e);
                    return;
                }
            }
        } else {
            notify.subscriptions.clone()
        };
        let selected_id = self.selected.as_ref().map(|s| s.id.clone());
        let limit = self.ctx.config.notify_responses_max;
        let mut lines: Vec<Line> = Vec::new();
        let mut seen = HashMap::with_capacity(mailboxes.len());
        for info in &mailboxes {
            let before = notify.seen.get(&info.id);
            let group = notify.group_for(&info.name, &subscriptions);
            let mut now = Seen {
                name: info.name.clone(),
                uid_next: info.uid_next,
                highest_modseq: info.highest_modseq,
                messages: before.and_then(|b| b.messages),
            };
            match before {
                None => {
                    if group.is_some_and(|g| g.events.mailbox_name) {
                        lines.push(Line::List {
                            attributes: "",
                            name: info.name.clone(),
                            old: None,
                        });
                    }
                }
                Some(before) if before.name != info.name => {
                    let old_group = notify.group_for(&before.name, &notify.subscriptions);
                    if group.or(old_group).is_some_and(|g| g.events.mailbox_name) {
                        lines.push(Line::List {
                            attributes: "",
                            name: info.name.clone(),
                            old: Some(before.name.clone()),
                        });
                    }
                }
                Some(before) => {
                    let moved = before.uid_next != info.uid_next
                        || before.highest_modseq != info.highest_modseq;
                    let Some(events) = group.map(|g| &g.events) else {
                        seen.insert(info.id.clone(), now);
                        continue;
                    };
                    let wants_messages =
                        events.message_new || events.message_expunge || events.flag_change;
                    if moved && wants_messages && Some(&info.id) != selected_id.as_ref() {
                        let counts = reader.counts(&info.id).ok();
                        let messages = counts.map(|c| c.messages);
                        let added = info.uid_next.saturating_sub(before.uid_next);
                        let new = added > 0;
                        let expunged = match (before.messages, messages) {
                            (Some(old), Some(m)) => m < old.saturating_add(added),
                            // Not known before: a modseq move that is not new
                            // mail may be either; report it as an expunge.
                            _ => !new,
                        };
                        let flags = !new && !expunged;
                        let asked = (new && events.message_new)
                            || (expunged && events.message_expunge)
                            || (flags && events.flag_change);
                        if asked && let Some(c) = counts {
                            lines.push(Line::Status {
                                name: info.name.clone(),
                                messages: c.messages,
                                unseen: c.unseen,
                                uid_next: info.uid_next,
                                uid_validity: info.uid_validity,
                                highest_modseq: info.highest_modseq,
                            });
                        }
                        now.messages = messages;
                    }
                }
            }
            seen.insert(info.id.clone(), now);
        }
        for (id, before) in &notify.seen {
            if !seen.contains_key(id)
                && notify
                    .group_for(&before.name, &notify.subscriptions)
                    .is_some_and(|g| g.events.mailbox_name)
            {
                lines.push(Line::List {
                    attributes: "\\NonExistent",
                    name: before.name.clone(),
                    old: None,
                });
            }
        }
        let subscription_lines = subscriptions
            .symmetric_difference(&notify.subscriptions)
            .filter(|name| {
                notify
                    .group_for(name, &subscriptions)
                    .or_else(|| notify.group_for(name, &notify.subscriptions))
                    .is_some_and(|g| g.events.subscription_change)
            })
            .map(|name| Line::List {
                attributes: if subscriptions.contains(name) {
                    "\\Subscribed"
                } else {
                    ""
                },
                name: name.clone(),
                old: None,
            })
            .collect::<Vec<_>>();
        lines.extend(subscription_lines);
        let overflow = lines.len() > limit;
        if let Some(notify) = self.notify.as_mut() {
            notify.seen = seen;
            notify.subscriptions = subscriptions;
        }
        if overflow {
            self.notify_overflow(limit, "mailbox changes");
            return;
        }
        let condstore = self.condstore;
        for line in lines {
            line.write(self, condstore);
        }
    }

    /// `* STATUS name (...)` as NOTIFY sends it; the message count, or `None`
    /// when the mailbox could not be read.
    fn write_notify_status(&mut self, name: &str, id: &str) -> Option<u32> {
        let reader = self.reader().ok()?;
        let info = reader.mailbox_by_id(id).ok()??;
        let counts = reader.counts(id).ok()?;
        let line = Line::Status {
            name: name.to_string(),
            messages: counts.messages,
            unseen: counts.unseen,
            uid_next: info.uid_next,
            uid_validity: info.uid_validity,
            highest_modseq: info.highest_modseq,
        };
        let condstore = self.condstore;
        line.write(self, condstore);
        Some(counts.messages)
    }
}

/// One notification response, gathered before any is written so an overflow
/// can drop them all.
enum Line {
    Status {
        name: String,
        messages: u32,
        unseen: u32,
        uid_next: u32,
        uid_validity: u32,
        highest_modseq: u64,
    },
    List {
        attributes: &'static str,
        name: String,
        /// A rename's old name (`("OLDNAME" (old))`, RFC 5465 5.4).
        old: Option<String>,
    },
}

impl Line {
    fn write(self, session: &mut Session, condstore: bool) {
        match self {
            Line::Status {
                name,
                messages,
                unseen,
                uid_next,
                uid_validity,
                highest_modseq,
            } => {
                session.out.extend_from_slice(b"* STATUS ");
                session.write_mailbox(&name);
                let mut items = format!(
                    " (MESSAGES {messages} UIDNEXT {uid_next} UIDVALIDITY {uid_validity} UNSEEN {unseen}"
                );
                if condstore {
                    items.push_str(&format!(" HIGHESTMODSEQ {highest_modseq}"));
                }
                items.push_str(")\r\n");
                session.out.extend_from_slice(items.as_bytes());
            }
            Line::List {
                attributes,
                name,
                old,
            } => {
                session
                    .out
                    .extend_from_slice(format!("* LIST ({attributes}) \"/\" ").as_bytes());
                session.write_mailbox(&name);
                if let Some(old) = old {
                    session.out.extend_from_slice(b" (\"OLDNAME\" (");
                    session.write_mailbox(&old);
                    session.out.extend_from_slice(b"))");
                }
                session.out.extend_from_slice(b"\r\n");
            }
        }
    }
}
