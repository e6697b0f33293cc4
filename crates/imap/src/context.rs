//! Update contexts (RFC 5267 4.3, CONTEXT=SEARCH and CONTEXT=SORT): a SEARCH
//! or SORT given `RETURN (UPDATE)` keeps its result, and as the selected
//! mailbox changes the session reports how the result changes, with untagged
//! `ESEARCH (TAG "t") [UID] ADDTO (...)` / `REMOVEFROM (...)` responses.
//!
//! The contexts live in [`Selected`](crate::selected::Selected), so they end
//! with the selection (SELECT, EXAMINE, CLOSE, UNSELECT), as RFC 5267 wants.
//! They are brought up to date by [`Session::sync`] from the same change data
//! that makes EXISTS, EXPUNGE and FETCH FLAGS: only the messages that changed
//! are matched again, never the whole mailbox. Sort keys do not depend on
//! flags, so a message keeps its place in a SORT result; only membership
//! changes, and new messages are placed by their keys.
//!
//! Order on the wire: REMOVEFROM for expunged messages comes before the
//! EXPUNGE (or VANISHED) that removes them, so a message sequence number in it
//! still names the message; ADDTO for new messages comes after the EXISTS
//! that announces them.
//!
//! Positions: a SEARCH result is a set, so its ADDTO and REMOVEFROM carry
//! position 0 and one sequence set each. A SORT result is ordered: each
//! message gets its own `ADDTO (position uid)` / `REMOVEFROM (position uid)`,
//! 1-based, applied in the order they are listed.
//!
//! Bound: at most `[imap] context_updates_max` live contexts per session; one
//! more is refused with an untagged `NO [NOUPDATE "tag"]` (its command still
//! answers its result).

use crate::command::{search, sort};
use crate::selected::Selected;
use crate::sequence::format_set;
use crate::session::Session;
use imap_proto::{SearchKey, SortCriterion};
use std::collections::HashSet;
use store::MessageMeta;

/// One live result.
pub(crate) struct UpdateContext {
    /// The tag of the command that made it; updates carry it in `(TAG "...")`.
    pub tag: String,
    /// UID SEARCH / UID SORT: updates name UIDs, else sequence numbers.
    pub uid: bool,
    pub criteria: SearchKey,
    /// `Some` for SORT (the sort criteria); `None` for SEARCH.
    pub sort: Option<Vec<SortCriterion>>,
    /// The result as UIDs: ascending for SEARCH, in sort order for SORT.
    pub result: Vec<u32>,
    /// SORT only: the key values of each entry of `result`, in step with it.
    pub keys: Vec<Vec<sort::Value>>,
    /// The UIDs of `result`, for membership tests on large results.
    pub members: HashSet<u32>,
}

impl UpdateContext {
    pub fn new(
        tag: &str,
        uid: bool,
        criteria: SearchKey,
        sort: Option<Vec<SortCriterion>>,
        result: Vec<u32>,
        keys: Vec<Vec<sort::Value>>,
    ) -> Self {
        let members = result.iter().copied().collect();
        UpdateContext {
            tag: tag.to_string(),
            uid,
            criteria,
            sort,
            result,
            keys,
            members,
        }
    }

    fn head(&self) -> String {
        let mut line = format!("* ESEARCH (TAG \"{}\")", self.tag);
        if self.uid {
            line.push_str(" UID");
        }
        line
    }

    /// The number the client knows `uid` by in this context.
    fn number(&self, selected: &Selected, uid: u32) -> Option<u32> {
        if self.uid {
            Some(uid)
        } else {
            selected.sequence_of(uid)
        }
    }

    /// Removes `gone` (UIDs) from the result; the REMOVEFROM line, if any.
    /// Numbers are taken from `selected` as it is now, so callers remove
    /// expunged messages from the view only afterwards.
    fn remove(&mut self, selected: &Selected, gone: &HashSet<u32>) -> Option<String> {
        if !self.result.iter().any(|u| gone.contains(u)) {
            return None;
        }
        let mut line = self.head();
        if self.sort.is_none() {
            let numbers: Vec<u32> = self
                .result
                .iter()
                .filter(|u| gone.contains(u))
                .filter_map(|u| self.number(selected, *u))
                .collect();
            self.result.retain(|u| !gone.contains(u));
            if numbers.is_empty() {
                return None;
            }
            line.push_str(&format!(" REMOVEFROM (0 {})", format_set(&numbers)));
        } else {
            let mut kept = Vec::with_capacity(self.result.len());
            let mut kept_keys = Vec::with_capacity(self.keys.len());
            let keys = std::mem::take(&mut self.keys);
            for (uid, key) in self.result.iter().zip(keys) {
                if gone.contains(uid) {
                    // Its position once those before it were removed.
                    if let Some(n) = self.number(selected, *uid) {
                        line.push_str(&format!(" REMOVEFROM ({} {n})", kept.len() + 1));
                    }
                } else {
                    kept.push(*uid);
                    kept_keys.push(key);
                }
            }
            self.result = kept;
            self.keys = kept_keys;
        }
        for uid in gone {
            self.members.remove(uid);
        }
        Some(line)
    }

    /// Adds `new` (UIDs, with their sort keys for SORT) to the result; the
    /// ADDTO line, if any.
    fn add(
        &mut self,
        selected: &Selected,
        mut new: Vec<(u32, Vec<sort::Value>)>,
    ) -> Option<String> {
        if new.is_empty() {
            return None;
        }
        let mut line = self.head();
        match &self.sort {
            None => {
                let numbers: Vec<u32> = new
                    .iter()
                    .filter_map(|(u, _)| self.number(selected, *u))
                    .collect();
                for (uid, _) in &new {
                    self.members.insert(*uid);
                }
                self.result.extend(new.iter().map(|(u, _)| *u));
                self.result.sort_unstable();
                self.result.dedup();
                if numbers.is_empty() {
                    return None;
                }
                line.push_str(&format!(" ADDTO (0 {})", format_set(&numbers)));
            }
            Some(criteria) => {
                new.sort_by(|a, b| sort::compare_keys(criteria, &a.1, &b.1).then(a.0.cmp(&b.0)));
                let old_result = std::mem::take(&mut self.result);
                let old_keys = std::mem::take(&mut self.keys);
                let mut merged = Vec::with_capacity(old_result.len() + new.len());
                let mut merged_keys = Vec::with_capacity(merged.capacity());
                let mut old = old_result.into_iter().zip(old_keys).peekable();
                for (uid, key) in new {
                    // Ties keep UID (= sequence) order, as SORT does.
                    while let Some((old_uid, old_key)) = old.peek() {
                        let before = sort::compare_keys(criteria, old_key, &key)
                            .then(old_uid.cmp(&uid))
                            .is_lt();
                        if !before {
                            break;
                        }
                        if let Some((u, k)) = old.next() {
                            merged.push(u);
                            merged_keys.push(k);
                        }
                    }
                    merged.push(uid);
                    merged_keys.push(key);
                    self.members.insert(uid);
                    if let Some(n) = self.number(selected, uid) {
                        line.push_str(&format!(" ADDTO ({} {n})", merged.len()));
                    }
                }
                for (u, k) in old {
                    merged.push(u);
                    merged_keys.push(k);
                }
                self.result = merged;
                self.keys = merged_keys;
            }
        }
        Some(line)
    }
}

impl Session {
    /// Registers a context made by the command `tag`, replacing one with the
    /// same tag; over the bound, refuses it with `NO [NOUPDATE]`.
    pub(crate) fn add_update_context(&mut self, context: UpdateContext) {
        let max = self.ctx.config.context_updates_max;
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        selected.contexts.retain(|c| c.tag != context.tag);
        if selected.contexts.len() >= max {
            self.out.extend_from_slice(
                format!(
                    "* NO [NOUPDATE \"{}\"] this session already has {max} live update contexts, \
                     the most allowed (context_updates_max={max}); CANCELUPDATE one first\r\n",
                    context.tag
                )
                .as_bytes(),
            );
            tracing::info!(
                event = "imap_context_refused",
                max,
                "update context over the bound"
            );
            return;
        }
        selected.contexts.push(context);
    }

    /// Reports the removal of `expunged` (UIDs still in the view) from every
    /// context. Called before the EXPUNGE / VANISHED responses.
    pub(crate) fn contexts_expunged(&mut self, expunged: &[u32]) {
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        if selected.contexts.is_empty() || expunged.is_empty() {
            return;
        }
        let gone: HashSet<u32> = expunged.iter().copied().collect();
        let mut contexts = std::mem::take(&mut selected.contexts);
        for context in &mut contexts {
            if let Some(line) = context.remove(selected, &gone) {
                self.out.extend_from_slice(line.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
        selected.contexts = contexts;
    }

    /// Matches the messages of `changed` (new, or with new flags, all in the
    /// view) against every context again and reports what joined or left.
    /// Called after the EXISTS that announced new messages.
    pub(crate) fn contexts_changed(&mut self, changed: &[MessageMeta]) {
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        if selected.contexts.is_empty() || changed.is_empty() {
            return;
        }
        let contexts = std::mem::take(&mut selected.contexts);
        let mailbox = selected.id.clone();
        let mut lines = Vec::new();
        let mut updated = Vec::with_capacity(contexts.len());
        for mut context in contexts {
            let hits: HashSet<u32> = search::matching(self, &context.criteria, changed)
                .into_iter()
                .map(|(_, index)| changed[index].uid)
                .collect();
            let gone: HashSet<u32> = changed
                .iter()
                .map(|m| m.uid)
                .filter(|u| context.members.contains(u) && !hits.contains(u))
                .collect();
            let joining: Vec<&MessageMeta> = changed
                .iter()
                .filter(|m| hits.contains(&m.uid) && !context.members.contains(&m.uid))
                .collect();
            let new = match &context.sort {
                None => joining.iter().map(|m| (m.uid, Vec::new())).collect(),
                Some(criteria) => sort::keys_of(self, &mailbox, criteria, &joining),
            };
            if let Some(selected) = self.selected.as_ref() {
                lines.extend(context.remove(selected, &gone));
                lines.extend(context.add(selected, new));
            }
            updated.push(context);
        }
        if let Some(selected) = self.selected.as_mut() {
            selected.contexts = updated;
        }
        for line in lines {
            self.out.extend_from_slice(line.as_bytes());
            self.out.extend_from_slice(b"\r\n");
        }
    }

    /// CANCELUPDATE (RFC 5267 4.3): ends the named contexts. Every tag must
    /// name one, or nothing is cancelled.
    pub(crate) fn cancel_update(&mut self, tags: &[String]) -> crate::respond::Done {
        use crate::respond::Done;
        let Some(selected) = self.selected.as_mut() else {
            return Done::bad("no mailbox selected");
        };
        if let Some(unknown) = tags
            .iter()
            .find(|t| !selected.contexts.iter().any(|c| &c.tag == *t))
        {
            let shown: String = unknown
                .chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect();
            return Done::bad(format!("no update context has the tag {shown:?}"));
        }
        selected.contexts.retain(|c| !tags.contains(&c.tag));
        Done::ok("CANCELUPDATE completed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_proto::SortKey;
    use std::collections::BTreeSet;

    fn selected(uids: &[u32]) -> Selected {
        Selected {
            id: "m".into(),
            name: "INBOX".into(),
            owner: None,
            rights: store::Rights::ALL,
            read_only: false,
            uids: uids.to_vec(),
            modseq: 1,
            keywords: BTreeSet::new(),
            contexts: Vec::new(),
        }
    }

    fn sorted(uid: bool, rows: &[(u32, i64)]) -> UpdateContext {
        UpdateContext::new(
            "t",
            uid,
            SearchKey::All,
            Some(vec![SortCriterion {
                reverse: false,
                key: SortKey::Size,
            }]),
            rows.iter().map(|r| r.0).collect(),
            rows.iter()
                .map(|r| vec![sort::Value::Number(r.1)])
                .collect(),
        )
    }

    /// Positions in one line apply in order: each is where the message is
    /// once the ones listed before it have been added or removed.
    #[test]
    fn sort_positions_apply_in_order() {
        let view = selected(&[1, 2, 3, 4, 5, 6]);
        let mut context = sorted(true, &[(1, 10), (2, 20), (3, 30)]);
        let line = context.add(
            &view,
            vec![
                (6, vec![sort::Value::Number(40)]),
                (4, vec![sort::Value::Number(5)]),
                (5, vec![sort::Value::Number(20)]),
            ],
        );
        // 4 (size 5) first; 5 ties with 2 on size and follows it (UID order); 6 last.
        assert_eq!(
            line.as_deref(),
            Some("* ESEARCH (TAG \"t\") UID ADDTO (1 4) ADDTO (4 5) ADDTO (6 6)")
        );
        assert_eq!(context.result, vec![4, 1, 2, 5, 3, 6]);
        let gone: HashSet<u32> = [1, 5].into_iter().collect();
        let line = context.remove(&view, &gone);
        assert_eq!(
            line.as_deref(),
            Some("* ESEARCH (TAG \"t\") UID REMOVEFROM (2 1) REMOVEFROM (3 5)")
        );
        assert_eq!(context.result, vec![4, 2, 3, 6]);
        assert_eq!(context.keys.len(), context.result.len());
        assert!(context.remove(&view, &gone).is_none());
    }

    /// A SEARCH result is a set: position 0, numbers as the client knows them.
    #[test]
    fn search_updates_use_sequence_numbers_of_the_view() {
        let view = selected(&[3, 7, 9]);
        let mut context = UpdateContext::new("s", false, SearchKey::All, None, vec![3], Vec::new());
        let line = context.add(&view, vec![(9, Vec::new()), (7, Vec::new())]);
        assert_eq!(line.as_deref(), Some("* ESEARCH (TAG \"s\") ADDTO (0 2:3)"));
        assert_eq!(context.result, vec![3, 7, 9]);
        let gone: HashSet<u32> = [3, 9].into_iter().collect();
        let line = context.remove(&view, &gone);
        assert_eq!(
            line.as_deref(),
            Some("* ESEARCH (TAG \"s\") REMOVEFROM (0 1,3)")
        );
        assert_eq!(context.result, vec![7]);
    }
}
