//! THREAD and UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES.
//!
//! The algorithms work on a small record per matching message (its number,
//! Message-ID, References/In-Reply-To, base subject, whether the subject was a
//! reply or forward, and its sent date), taken from the checksummed summary
//! cache; `order_threads` is pure so the unit tests below pin the RFC's rules.
//! Every loop is bounded by the number of messages: parent chains are walked
//! with a visited check, so hostile References cannot make a cycle.

use crate::command::search;
use crate::respond::Done;
use crate::session::{End, Session};
use imap_proto::{SearchKey, ThreadAlgorithm};
use std::collections::HashMap;

/// Nesting kept in a THREAD response; deeper replies hang flat at this level
/// (bounds the recursion over a hostile or merely very long reply chain).
const THREAD_DEPTH_MAX: usize = 200;

/// What threading looks at in one message.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// Sequence number or UID, as the response wants.
    pub number: u32,
    pub message_id: Option<String>,
    /// References, then In-Reply-To when there are no References (RFC 5256).
    pub references: Vec<String>,
    pub base_subject: String,
    /// The subject had a reply or forward marker ("Re:", "Fwd:") removed.
    pub is_reply: bool,
    /// Sent date (Date header in UTC, else internal date), then the sequence
    /// number: the order within a thread.
    pub date: (i64, u32),
}

/// A thread: a message (or, for REFERENCES, a missing parent) and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub number: Option<u32>,
    pub children: Vec<Node>,
}

pub(crate) async fn thread(
    session: &mut Session,
    uid: bool,
    algorithm: ThreadAlgorithm,
    charset: &str,
    search_key: &SearchKey,
) -> Result<Done, End> {
    let found = match search::prepare(session, uid, Some(charset), search_key, true).await? {
        Ok(found) => found,
        Err(done) => return Ok(done),
    };
    let Ok(reader) = session.selected_reader() else {
        return Ok(Done::bad("not authenticated"));
    };
    let mut items = Vec::with_capacity(found.hits.len());
    let visited = found.visit_sort_keys(reader, |seq, meta, summary| {
        let Some(summary) = summary else { return };
        let references = if summary.references.is_empty() {
            summary.in_reply_to.iter().take(1).cloned().collect()
        } else {
            summary.references.clone()
        };
        let base_subject = summary.base_subject.to_lowercase();
        items.push(Item {
            number: if uid { meta.uid } else { seq },
            message_id: summary.message_id.clone(),
            references,
            is_reply: is_reply_subject(&summary.subject),
            base_subject,
            date: (
                summary
                    .sent
                    .as_ref()
                    .map_or(meta.internal_date, |d| d.unix_seconds),
                seq,
            ),
        });
    });
    if let Err(done) = visited {
        return Ok(done);
    }
    // CPU work proportional to the mailbox: off the async worker's other sessions.
    let threads = tokio::task::block_in_place(|| match algorithm {
        ThreadAlgorithm::OrderedSubject => ordered_subject(items),
        ThreadAlgorithm::References => references(items),
    });
    let mut line = String::from("* THREAD ");
    for node in &threads {
        write_thread(node, &mut line);
    }
    line.truncate(line.trim_end().len());
    line.push_str("\r\n");
    session.out.extend_from_slice(line.as_bytes());
    Ok(Done::ok("THREAD completed"))
}

/// Whether a subject marks a reply or forward (RFC 5256 2.1): a leading
/// "re:", "fw:" or "fwd:" (after any "[blob]"s, with an optional "[n]" before
/// the colon), a "[fwd: ...]" wrapper, or a trailing "(fwd)". A list tag or
/// extra whitespace alone does not.
pub(crate) fn is_reply_subject(subject: &str) -> bool {
    let s = subject.trim().to_lowercase();
    if s.ends_with("(fwd)") || s.starts_with("[fwd:") {
        return true;
    }
    let mut rest = s.as_str();
    // Bounded: each step removes at least one byte.
    loop {
        rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(close) => {
                    rest = &rest[close + 1..];
                    continue;
                }
                None => return false,
            }
        }
        break;
    }
    for prefix in ["re", "fwd", "fw"] {
        if let Some(after) = rest.strip_prefix(prefix) {
            let after = after.trim_start();
            let after = match after.strip_prefix('[') {
                Some(inner) => inner.find(']').map_or(inner, |close| &inner[close + 1..]),
                None => after,
            };
            if after.trim_start().starts_with(':') {
                return true;
            }
        }
    }
    false
}

/// `(a b (c)(d))`: a parent and its single child share parentheses, several
/// children each get their own (RFC 5256, "thread-list").
fn write_thread(node: &Node, out: &mut String) {
    out.push('(');
    write_members(node, out);
    out.push(')');
}

fn write_members(node: &Node, out: &mut String) {
    let mut node = node;
    let mut first = true;
    loop {
        if let Some(n) = node.number {
            if !first {
                out.push(' ');
            }
            out.push_str(&n.to_string());
            first = false;
        }
        match node.children.as_slice() {
            [] => return,
            [only] if node.number.is_some() => node = only,
            children => {
                if !first {
                    out.push(' ');
                }
                for child in children {
                    write_thread(child, out);
                }
                return;
            }
        }
    }
}

/// ORDEREDSUBJECT: one thread per base subject, in the order of its first
/// message's date; the first message is the parent of all the others.
pub(crate) fn ordered_subject(mut items: Vec<Item>) -> Vec<Node> {
    items.sort_by(|a, b| (&a.base_subject, a.date).cmp(&(&b.base_subject, b.date)));
    let mut threads: Vec<((i64, u32), Node)> = Vec::new();
    let mut current: Option<(String, (i64, u32), Node)> = None;
    for item in items {
        match &mut current {
            Some((subject, _, node)) if *subject == item.base_subject => node.children.push(Node {
                number: Some(item.number),
                children: Vec::new(),
            }),
            _ => {
                if let Some((_, date, node)) = current.take() {
                    threads.push((date, node));
                }
                current = Some((
                    item.base_subject.clone(),
                    item.date,
                    Node {
                        number: Some(item.number),
                        children: Vec::new(),
                    },
                ));
            }
        }
    }
    if let Some((_, date, node)) = current {
        threads.push((date, node));
    }
    threads.sort_by_key(|(date, _)| *date);
    threads.into_iter().map(|(_, node)| node).collect()
}

/// REFERENCES (RFC 5256 section 3, after Jamie Zawinski's algorithm).
pub(crate) fn references(items: Vec<Item>) -> Vec<Node> {
    // Containers: one per Message-ID seen (messages and their references).
    struct Container {
        item: Option<usize>,
        parent: Option<usize>,
        children: Vec<usize>,
    }
    let mut containers: Vec<Container> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let new_container = |containers: &mut Vec<Container>| {
        containers.push(Container {
            item: None,
            parent: None,
            children: Vec::new(),
        });
        containers.len() - 1
    };
    // Is `ancestor` `node` or above it? Walks up from `node` and down from
    // `ancestor` in step and stops at whichever walk ends first, so the usual
    // cases (a new message with no replies yet; replies seen before their
    // parents) cost a step or two, not the length of the chain.
    fn reaches(containers: &[Container], node: usize, ancestor: usize) -> bool {
        let mut up = Some(node);
        let mut down = vec![ancestor];
        let mut down_at = 0;
        for _ in 0..=containers.len() {
            match up {
                Some(n) if n == ancestor => return true,
                Some(n) => up = containers[n].parent,
                None => return false,
            }
            match down.get(down_at) {
                Some(&d) => {
                    if d == node {
                        return true;
                    }
                    down.extend(containers[d].children.iter().copied());
                    down_at += 1;
                }
                None => return false,
            }
        }
        true
    }
    fn link(containers: &mut [Container], parent: usize, child: usize) {
        if let Some(old) = containers[child].parent {
            containers[old].children.retain(|c| *c != child);
        }
        containers[child].parent = Some(parent);
        containers[parent].children.push(child);
    }
    for (index, item) in items.iter().enumerate() {
        // Step 1A: the message's container (a duplicate or missing id gets its own).
        let own = match item
            .message_id
            .as_ref()
            .and_then(|id| by_id.get(id).copied())
        {
            Some(c) if containers[c].item.is_none() => c,
            _ => {
                let c = new_container(&mut containers);
                if let Some(id) = &item.message_id {
                    by_id.entry(id.clone()).or_insert(c);
                }
                c
            }
        };
        containers[own].item = Some(index);
        // Step 1B: link the references in order, never making a loop and never
        // re-parenting a container that already has a parent.
        let mut previous: Option<usize> = None;
        for reference in &item.references {
            let c = match by_id.get(reference) {
                Some(c) => *c,
                None => {
                    let c = new_container(&mut containers);
                    by_id.insert(reference.clone(), c);
                    c
                }
            };
            if let Some(p) = previous
                && containers[c].parent.is_none()
                && !reaches(&containers, p, c)
            {
                link(&mut containers, p, c);
            }
            previous = Some(c);
        }
        // Step 1C: the last reference is the message's parent.
        match previous {
            Some(p) if p != own && !reaches(&containers, p, own) => link(&mut containers, p, own),
            _ => {
                if let Some(old) = containers[own].parent.take() {
                    containers[old].children.retain(|c| *c != own);
                }
            }
        }
    }
    // Step 2-3: roots, then prune dummies into trees of nodes.
    fn build(containers: &[Container], items: &[Item], c: usize, depth: usize) -> Vec<Node> {
        let mut children = Vec::new();
        if depth < THREAD_DEPTH_MAX {
            for child in &containers[c].children {
                children.extend(build(containers, items, *child, depth + 1));
            }
        } else {
            // Deeper than this, every descendant hangs flat under this level,
            // walked without recursion: a reply chain of any length cannot
            // exhaust the stack.
            let mut stack: Vec<usize> = containers[c].children.clone();
            let mut seen = 0usize;
            while let Some(next) = stack.pop() {
                seen += 1;
                if seen > containers.len() {
                    break;
                }
                if let Some(i) = containers[next].item {
                    children.push(Node {
                        number: Some(items[i].number),
                        children: Vec::new(),
                    });
                }
                stack.extend(containers[next].children.iter().copied());
            }
        }
        match containers[c].item {
            Some(i) => vec![Node {
                number: Some(items[i].number),
                children,
            }],
            // A dummy with no children goes; one that is not a root gives its
            // children to its parent; a root dummy with one child is that child.
            None if children.is_empty() => Vec::new(),
            None if depth > 0 || children.len() == 1 => children,
            None => vec![Node {
                number: None,
                children,
            }],
        }
    }
    let roots: Vec<usize> = (0..containers.len())
        .filter(|c| containers[*c].parent.is_none())
        .collect();
    let mut forest: Vec<Node> = roots
        .iter()
        .flat_map(|r| build(&containers, &items, *r, 0))
        .collect();
    // Step 4: sort each level by date (a dummy by its first child's).
    let number_date: HashMap<u32, (i64, u32)> = items.iter().map(|i| (i.number, i.date)).collect();
    fn sort_level(nodes: &mut [Node], dates: &HashMap<u32, (i64, u32)>) {
        for node in nodes.iter_mut() {
            sort_level(&mut node.children, dates);
        }
        nodes.sort_by_key(|n| node_date(n, dates));
    }
    fn node_date(node: &Node, dates: &HashMap<u32, (i64, u32)>) -> (i64, u32) {
        match node.number {
            Some(n) => dates.get(&n).copied().unwrap_or((i64::MAX, u32::MAX)),
            None => node
                .children
                .first()
                .map_or((i64::MAX, u32::MAX), |c| node_date(c, dates)),
        }
    }
    sort_level(&mut forest, &number_date);
    // Step 5: gather roots by base subject.
    let by_number: HashMap<u32, &Item> = items.iter().map(|i| (i.number, i)).collect();
    let subject_of = |node: &Node| -> Option<(String, bool)> {
        let number = node
            .number
            .or_else(|| node.children.first().and_then(|c| c.number))?;
        let item = by_number.get(&number)?;
        Some((item.base_subject.clone(), item.is_reply))
    };
    // Pass 1 (RFC 5256 REFERENCES 5.B): per base subject, the root that
    // heads it: a dummy first, else a message that is not a reply.
    let keys: Vec<Option<(String, bool)>> = forest.iter().map(&subject_of).collect();
    let mut head: HashMap<&str, usize> = HashMap::new();
    for (index, key) in keys.iter().enumerate() {
        let Some((subject, is_reply)) = key else {
            continue;
        };
        if subject.is_empty() {
            continue;
        }
        let better = |current: usize| {
            let current_dummy = forest[current].number.is_none();
            let dummy = forest[index].number.is_none();
            let current_reply = keys[current].as_ref().is_some_and(|k| k.1);
            // A dummy beats a message; a non-reply beats a reply.
            !current_dummy && (dummy || (current_reply && !is_reply))
        };
        match head.get(subject.as_str()) {
            Some(&current) if !better(current) => {}
            _ => {
                head.insert(subject.as_str(), index);
            }
        }
    }
    // Pass 2 (5.C): every other root with that subject joins its head.
    let mut slots: Vec<Option<Node>> = forest.into_iter().map(Some).collect();
    for index in 0..slots.len() {
        let Some((subject, is_reply)) = keys[index].clone() else {
            continue;
        };
        let Some(&target) = head.get(subject.as_str()) else {
            continue;
        };
        if target == index {
            continue;
        }
        let Some(node) = slots[index].take() else {
            continue;
        };
        let Some(existing) = slots[target].as_mut() else {
            slots[index] = Some(node);
            continue;
        };
        match (existing.number.is_none(), node.number.is_none()) {
            // Both dummies: one gets the other's children.
            (true, true) => existing.children.extend(node.children),
            // A dummy head takes the message.
            (true, false) => existing.children.push(node),
            // A message head that is not a reply takes a reply.
            (false, false) if is_reply && !keys[target].as_ref().is_some_and(|k| k.1) => {
                existing.children.push(node)
            }
            // Otherwise both become children of a new dummy.
            _ => {
                let old = std::mem::replace(
                    existing,
                    Node {
                        number: None,
                        children: Vec::new(),
                    },
                );
                existing.children = vec![old, node];
            }
        }
    }
    let mut gathered: Vec<Node> = slots.into_iter().flatten().collect();
    sort_level(&mut gathered, &number_date);
    gathered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(number: u32, id: &str, refs: &[&str], subject: &str, reply: bool, date: i64) -> Item {
        Item {
            number,
            message_id: Some(id.to_string()),
            references: refs.iter().map(|r| r.to_string()).collect(),
            base_subject: subject.to_string(),
            is_reply: reply,
            date: (date, number),
        }
    }

    fn render(threads: &[Node]) -> String {
        let mut out = String::new();
        for t in threads {
            write_thread(t, &mut out);
        }
        out
    }

    #[test]
    fn reply_subjects() {
        for yes in [
            "Re: plan",
            "RE : plan",
            "Fwd: plan",
            "fw: plan",
            "[dev] Re: plan",
            "Re[2]: plan",
            "plan (fwd)",
            "[Fwd: plan]",
        ] {
            assert!(is_reply_subject(yes), "{yes}");
        }
        for no in [
            "plan",
            "[dev] plan",
            "Hello  world",
            "Regarding plan",
            "Fwdplan",
            "",
        ] {
            assert!(!is_reply_subject(no), "{no}");
        }
    }

    #[test]
    fn ordered_subject_groups_by_base_subject_and_date() {
        let items = vec![
            item(1, "<1>", &[], "lunch", false, 100),
            item(2, "<2>", &[], "budget", false, 50),
            item(3, "<3>", &[], "lunch", true, 300),
            item(4, "<4>", &[], "lunch", true, 200),
            item(5, "<5>", &[], "budget", true, 60),
            item(6, "<6>", &[], "alone", false, 400),
        ];
        assert_eq!(render(&ordered_subject(items)), "(2 5)(1 (4)(3))(6)");
    }

    #[test]
    fn references_build_trees_and_survive_loops() {
        let items = vec![
            item(1, "<a>", &[], "plan", false, 10),
            item(2, "<b>", &["<a>"], "plan", true, 20),
            item(3, "<c>", &["<a>", "<b>"], "plan", true, 30),
            item(4, "<d>", &["<a>"], "plan", true, 40),
            // Its parent never arrived: a dummy root with one child is that child.
            item(5, "<e>", &["<missing>"], "other", true, 50),
            // A loop: each names the other as parent. The first link seen
            // (y parents x) stands; the one that would close the loop is dropped.
            item(6, "<x>", &["<y>"], "loop", false, 60),
            item(7, "<y>", &["<x>"], "loop", true, 70),
        ];
        let threads = references(items);
        assert_eq!(render(&threads), "(1 (2 3)(4))(5)(7 6)");
    }

    #[test]
    fn references_gather_roots_by_subject() {
        // No References, same base subject: the original parents the reply.
        let items = vec![
            item(1, "<r>", &[], "meeting", true, 20),
            item(2, "<o>", &[], "meeting", false, 10),
        ];
        assert_eq!(render(&references(items)), "(2 1)");
    }

    #[test]
    fn a_reply_chain_of_100000_messages_does_not_exhaust_the_stack() {
        let n = 100_000u32;
        let items: Vec<Item> = (1..=n)
            .map(|i| {
                let id = format!("<{i}>");
                let parent = format!("<{}>", i - 1);
                let refs: Vec<&str> = if i == 1 {
                    vec![]
                } else {
                    vec![parent.as_str()]
                };
                item(i, &id, &refs, "chain", i > 1, i64::from(i))
            })
            .collect();
        // Run on a thread with a small stack, as an async worker's would be.
        let rendered = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || render(&references(items)))
            .expect("thread")
            .join()
            .expect("no stack overflow");
        assert!(rendered.starts_with("(1 2 3 "), "{}", &rendered[..40]);
        let numbers = rendered
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .count();
        assert_eq!(numbers as u32, n, "every message appears once");
    }

    #[test]
    fn a_100000_message_mailbox_threads() {
        let items: Vec<Item> = (1..=100_000u32)
            .map(|i| {
                item(
                    i,
                    &format!("<{i}>"),
                    &[],
                    &format!("subject {}", i % 5000),
                    i % 7 == 0,
                    i64::from(i),
                )
            })
            .collect();
        let threads = references(items.clone());
        assert_eq!(threads.len(), 5000, "one thread per base subject");
        assert_eq!(ordered_subject(items).len(), 5000);
    }

    #[test]
    fn subject_gathering_prefers_the_original_as_head() {
        // RFC 5256 5.B/5.C: two replies seen before the original both go under it.
        let items = vec![
            item(1, "<r1>", &[], "x", true, 10),
            item(2, "<r2>", &[], "x", true, 20),
            item(3, "<n3>", &[], "x", false, 30),
        ];
        assert_eq!(render(&references(items)), "(3 (1)(2))");
        // Two originals with the same subject: siblings under a dummy.
        let items = vec![
            item(1, "<a>", &[], "y", false, 10),
            item(2, "<b>", &[], "y", false, 20),
        ];
        assert_eq!(render(&references(items)), "((1)(2))");
    }

    #[test]
    fn missing_and_duplicate_message_ids_each_get_a_container() {
        let mut no_id = item(1, "", &[], "a", false, 10);
        no_id.message_id = None;
        let items = vec![
            no_id,
            item(2, "<same>", &[], "b", false, 20),
            item(3, "<same>", &[], "c", false, 30),
        ];
        assert_eq!(render(&references(items)), "(1)(2)(3)");
    }
}
