//! The selected mailbox as this session sees it, and bringing that view up to
//! date (untagged EXISTS / EXPUNGE / FETCH FLAGS) from the store's change data.

use crate::session::{End, Session};

pub(crate) struct Selected {
    pub id: String,
    pub name: String,
    pub read_only: bool,
    /// UIDs in sequence-number order: position + 1 is the message sequence number.
    pub uids: Vec<u32>,
    /// Highest MODSEQ whose changes this session has reported.
    pub modseq: u64,
}

impl Selected {
    pub fn sequence_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }
}

impl Session {
    /// Reports changes made by others (and by this session's own writes) since
    /// the last report. EXPUNGE responses only when `allow_expunge`; otherwise
    /// they wait (and the view keeps the expunged UIDs until they can be sent).
    pub(crate) async fn sync(&mut self, allow_expunge: bool) -> Result<(), End> {
        let (Some(selected), Some(reader)) = (self.selected.as_mut(), self.reader.as_ref()) else {
            return Ok(());
        };
        let changes = match reader.changes(&selected.id, selected.modseq) {
            Ok(c) => c,
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
            for uid in &expunged {
                if let Ok(position) = selected.uids.binary_search(uid) {
                    self.out
                        .extend_from_slice(format!("* {} EXPUNGE\r\n", position + 1).as_bytes());
                    selected.uids.remove(position);
                }
            }
        }
        let mut new_uids = Vec::new();
        for meta in &changes.changed {
            if meta.uid > last_uid {
                new_uids.push(meta.uid);
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
        if !new_uids.is_empty() {
            selected.uids.extend(new_uids);
            self.out
                .extend_from_slice(format!("* {} EXISTS\r\n", selected.uids.len()).as_bytes());
        }
        if !held_back {
            selected.modseq = mailbox.highest_modseq;
        }
        Ok(())
    }
}
