//! The selected mailbox as this session sees it, and bringing that view up to
//! date (untagged EXISTS / EXPUNGE / FETCH FLAGS) from the store's change data.

use crate::session::{End, Session};
use std::collections::BTreeSet;

pub(crate) struct Selected {
    pub id: String,
    /// The name as the client gave it (`Other Users/bob/X` for bob's `X`).
    pub name: String,
    /// The owner when it is another user (the session then reads through
    /// `Session::shared_reader`); `None`: the logged-in user's own.
    pub owner: Option<String>,
    /// The logged-in user's rights on it, as of the last SELECT or sync.
    pub rights: store::Rights,
    pub read_only: bool,
    /// UIDs in sequence-number order: position + 1 is the message sequence number.
    pub uids: Vec<u32>,
    /// Highest MODSEQ whose changes this session has reported.
    pub modseq: u64,
    /// Keywords the client was told about in a FLAGS response; a message that
    /// gains another one brings a new FLAGS response (clients such as Apple
    /// Mail build their label lists from it).
    pub keywords: BTreeSet<String>,
    /// Live SEARCH / SORT results (RFC 5267 UPDATE); they end with the selection.
    pub contexts: Vec<crate::context::UpdateContext>,
}

impl Selected {
    pub fn sequence_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Learns the keywords of `flags` and, when one is new, writes the FLAGS
    /// response that tells the client (before the FETCH that shows it).
    pub fn announce_keywords(&mut self, flags: &[String], out: &mut Vec<u8>) {
        if learn_keywords(&mut self.keywords, flags) {
            out.extend_from_slice(flags_response(&self.keywords).as_bytes());
        }
    }
}

/// Adds the keywords (flags not starting with `\\`) of `flags` to `keywords`;
/// true when one was new.
pub(crate) fn learn_keywords(keywords: &mut BTreeSet<String>, flags: &[String]) -> bool {
    let mut learned = false;
    for flag in flags {
        if !flag.starts_with('\\') && !keywords.contains(flag) {
            keywords.insert(flag.clone());
            learned = true;
        }
    }
    learned
}

/// `* FLAGS (...)`: the system flags and `keywords`.
pub(crate) fn flags_response(keywords: &BTreeSet<String>) -> String {
    let mut line = String::from("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    for keyword in keywords {
        line.push(' ');
        line.push_str(keyword);
    }
    line.push_str(")\r\n");
    line
}

impl Session {
    /// For another owner's selected mailbox, reads the user's rights again
    /// (they may have been revoked since the last command): without `l` and
    /// `r`, or when the mailbox is gone, the selection ends, in the same
    /// words either way. Run before every command of the selected state and
    /// by [`Session::sync`]. False when no mailbox is selected any more.
    pub(crate) fn recheck_shared(&mut self) -> bool {
        let Some(selected) = self.selected.as_mut() else {
            return false;
        };
        if selected.owner.is_none() {
            return true;
        }
        let user = self.user.as_deref().unwrap_or_default();
        let rights = self.shared_reader.as_ref().and_then(|reader| {
            reader.mailbox_by_id(&selected.id).ok().flatten()?;
            reader.rights(&selected.id, user).ok()
        });
        match rights {
            Some(r) if r.contains(store::Rights::LOOKUP.union(store::Rights::READ)) => {
                selected.rights = r;
                true
            }
            _ => {
                self.selected = None;
                self.shared_reader = None;
                self.out.extend_from_slice(
                    b"* OK [CLOSED] the selected mailbox is no longer available\r\n",
                );
                false
            }
        }
    }

    /// Reports changes made by others (and by this session's own writes) since
    /// the last report. EXPUNGE responses only when `allow_expunge`; otherwise
    /// they wait (and the view keeps the expunged UIDs until they can be sent).
    pub(crate) async fn sync(&mut self, allow_expunge: bool) -> Result<(), End> {
        if !self.recheck_shared() {
            return Ok(());
        }
        let shared = self.selected.as_ref().is_some_and(|s| s.owner.is_some());
        let own_reader = if shared {
            self.shared_reader.as_ref()
        } else {
            self.reader.as_ref()
        };
        let (Some(selected), Some(reader)) = (self.selected.as_mut(), own_reader) else {
            return Ok(());
        };
        let changes = match reader.changes(&selected.id, selected.modseq) {
            Ok(c) => c,
            Err(e) if e.kind == store::ErrorKind::Moved => {
                // The user's mail now lives on another shard: the client
                // reconnects and reads it there (`user move`).
                return self.bye(crate::respond::MOVED_BYE).await;
            }
            Err(e) => {
                tracing::warn!(event = "imap_sync_failed", error = %e);
                return Ok(());
            }
        };
        let Some(mailbox) = changes.mailbox else {
            // Deleted (or renamed away and deleted) by another session.
            self.selected = None;
            self.out
                .extend_from_slice(b"* OK [CLOSED] the selected mailbox was deleted\r\n");
            return Ok(());
        };
        let last_uid = selected.uids.last().copied().unwrap_or(0);
        let expunged: Vec<u32> = changes
            .expunged
            .into_iter()
            .filter(|u| selected.uids.binary_search(u).is_ok())
            .collect();
        let held_back = !expunged.is_empty() && !allow_expunge;
        if !held_back {
            // Update contexts hear of it first, while the numbers still hold.
            self.contexts_expunged(&expunged);
        }
        let Some(selected) = self.selected.as_mut() else {
            return Ok(());
        };
        if !held_back {
            if self.qresync && !expunged.is_empty() {
                // RFC 7162 3.2.10: one VANISHED instead of an EXPUNGE per message.
                self.out.extend_from_slice(
                    format!("* VANISHED {}\r\n", crate::sequence::format_set(&expunged)).as_bytes(),
                );
                selected.uids.retain(|u| expunged.binary_search(u).is_err());
            } else {
                for uid in &expunged {
                    if let Ok(position) = selected.uids.binary_search(uid) {
                        self.out.extend_from_slice(
                            format!("* {} EXPUNGE\r\n", position + 1).as_bytes(),
                        );
                        selected.uids.remove(position);
                    }
                }
            }
        }
        let mut new_uids = Vec::new();
        for meta in &changes.changed {
            selected.announce_keywords(&meta.flags, &mut self.out);
        }
        for meta in &changes.changed {
            if meta.uid > last_uid {
                new_uids.push(meta.uid);
            } else if held_back {
                // RFC 7162 3.2: while an expunge waits, a flag change with a
                // higher MODSEQ must wait too, or a client that resyncs from
                // that MODSEQ would never learn of the expunge. They are sent
                // with it (the reported MODSEQ does not advance meanwhile).
                continue;
            } else if let Some(seq) = selected.sequence_of(meta.uid) {
                let mut line = format!(
                    "* {seq} FETCH (UID {} FLAGS ({})",
                    meta.uid,
                    meta.flags.join(" ")
                );
                if self.condstore {
                    line.push_str(&format!(" MODSEQ ({})", meta.modseq));
                }
                line.push_str(")\r\n");
                self.out.extend_from_slice(line.as_bytes());
            }
        }
        if let Some(notify) = self.notify.as_mut()
            && notify.wants_new_fetch()
        {
            // NOTIFY's MessageNew FETCH, sent once the EXISTS is out. Bounded:
            // more than a round may send is an overflow (see `notify_push`).
            let room = self
                .ctx
                .config
                .notify_responses_max
                .saturating_sub(notify.new_uids.len());
            if new_uids.len() > room {
                notify.overflowed = true;
            }
            notify.new_uids.extend(new_uids.iter().take(room));
        }
        if !new_uids.is_empty() {
            selected.uids.extend(new_uids);
            self.out
                .extend_from_slice(format!("* {} EXISTS\r\n", selected.uids.len()).as_bytes());
        }
        if !held_back {
            selected.modseq = mailbox.highest_modseq;
        }
        // What the client was told about, matched again for update contexts:
        // new messages always, flag changes unless they wait with an expunge.
        let reported: Vec<store::MessageMeta> = changes
            .changed
            .into_iter()
            .filter(|meta| {
                (meta.uid > last_uid || !held_back) && selected.sequence_of(meta.uid).is_some()
            })
            .collect();
        self.contexts_changed(&reported);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// REVIEW C5: `STORE +FLAGS ($Label1)` never produced a new FLAGS response.
    #[test]
    fn a_new_keyword_brings_a_flags_response_once() {
        let mut selected = Selected {
            id: "m".into(),
            name: "INBOX".into(),
            owner: None,
            rights: store::Rights::ALL,
            read_only: false,
            uids: vec![1],
            modseq: 1,
            keywords: BTreeSet::new(),
            contexts: Vec::new(),
        };
        let flags = |list: &[&str]| list.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let mut out = Vec::new();
        selected.announce_keywords(&flags(&["\\Seen", "\\Flagged"]), &mut out);
        assert!(out.is_empty());
        selected.announce_keywords(&flags(&["\\Seen", "$Label1"]), &mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)\r\n"
        );
        out.clear();
        selected.announce_keywords(&flags(&["$Label1"]), &mut out);
        assert!(out.is_empty());
    }
}
