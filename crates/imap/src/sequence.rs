//! Resolving sequence sets against the selected mailbox.
//!
//! A client can name the same messages many times over in one set (`1:*,1:*,…`
//! fits thousands of times in one command line), so a set is never expanded
//! range by range. Each range is first turned into an interval of positions
//! clamped to the mailbox, the intervals are sorted and merged, and only then
//! expanded: whatever the set, the work is `O(r log r + n)` for `r` ranges and
//! `n` messages, and the result holds at most `n` positions.

use imap_proto::{SeqNumber, SeqRange, Sequence};
use std::ops::Range;

/// Positions (0-based indexes into the selected mailbox's UID list) named by a
/// sequence set, as sorted, disjoint, non-adjacent intervals. Its size is
/// bounded by both the number of ranges in the set and the mailbox size, and
/// membership costs a binary search, so SEARCH can ask it once per message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// Sorted by start; no two overlap or touch.
    intervals: Vec<Range<usize>>,
}

impl Positions {
    /// Resolves `sequence` over `uids` (ascending UIDs, position + 1 being the
    /// message sequence number). `uid` says whether the numbers are UIDs.
    /// `saved` is the SEARCHRES result (UIDs). Numbers that match nothing are
    /// ignored, as RFC 9051 asks for UID sets; for message sequence numbers the
    /// caller checks validity first (see [`out_of_range`]).
    pub fn resolve(sequence: &Sequence, uid: bool, uids: &[u32], saved: Option<&[u32]>) -> Self {
        let mut intervals: Vec<Range<usize>> = match sequence {
            Sequence::Saved => saved
                .unwrap_or_default()
                .iter()
                .filter_map(|u| uids.binary_search(u).ok())
                .map(|i| i..i + 1)
                .collect(),
            Sequence::Set(ranges) => ranges
                .iter()
                .map(|range| interval(range, uid, uids))
                .filter(|r| !r.is_empty())
                .collect(),
        };
        intervals.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(intervals.len().min(uids.len()));
        for next in intervals {
            match merged.last_mut() {
                Some(last) if next.start <= last.end => last.end = last.end.max(next.end),
                _ => merged.push(next),
            }
        }
        Positions { intervals: merged }
    }

    /// Is position `i` in the set?
    pub fn contains(&self, i: usize) -> bool {
        let after = self.intervals.partition_point(|r| r.start <= i);
        after > 0 && self.intervals[after - 1].contains(&i)
    }

    /// How many positions the set holds.
    pub fn len(&self) -> usize {
        self.intervals.iter().map(ExactSizeIterator::len).sum()
    }

    /// The positions, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.intervals.iter().flat_map(Range::clone)
    }
}

/// Turns a sequence set into positions (0-based indexes into `uids`), ascending,
/// without duplicates; see [`Positions::resolve`]. The result never holds more
/// than `uids.len()` entries.
pub fn resolve(sequence: &Sequence, uid: bool, uids: &[u32], saved: Option<&[u32]>) -> Vec<usize> {
    let positions = Positions::resolve(sequence, uid, uids, saved);
    let mut out = Vec::with_capacity(positions.len());
    out.extend(positions.iter());
    out
}

/// The positions one range names, clamped to the mailbox (possibly empty).
fn interval(range: &SeqRange, uid: bool, uids: &[u32]) -> Range<usize> {
    if uid {
        let max = uids.last().copied().unwrap_or(0);
        let (a, b) = bounds(range, max);
        let start = uids.partition_point(|u| *u < a);
        let end = uids.partition_point(|u| *u <= b);
        start..end.max(start)
    } else {
        let count = u32::try_from(uids.len()).unwrap_or(u32::MAX);
        let (a, b) = bounds(range, count);
        let a = a.max(1);
        let b = b.min(count);
        if a <= b {
            (a as usize - 1)..(b as usize)
        } else {
            0..0
        }
    }
}

/// True when a message-sequence set names a number beyond the mailbox (a BAD per RFC 9051).
pub fn out_of_range(sequence: &Sequence, count: usize) -> bool {
    let Sequence::Set(ranges) = sequence else {
        return false;
    };
    ranges.iter().any(|r| {
        [r.start, r.end].iter().any(|n| match n {
            SeqNumber::Value(v) => *v as usize > count,
            // `*` is the last message, and an empty mailbox has none: RFC 9051 9
            // ("This includes "*" if the selected mailbox is empty").
            SeqNumber::Star => count == 0,
        })
    })
}

fn value(n: SeqNumber, star: u32) -> u32 {
    match n {
        SeqNumber::Value(v) => v,
        SeqNumber::Star => star,
    }
}

fn bounds(range: &SeqRange, star: u32) -> (u32, u32) {
    let a = value(range.start, star);
    let b = value(range.end, star);
    (a.min(b), a.max(b))
}

/// Whether `uid` is in `ranges` read as UIDs, `*` being `star` (the highest
/// UID the mailbox has had). Unlike [`resolve`], for UIDs that are no longer
/// in the mailbox too (QRESYNC's known UIDs and VANISHED).
pub fn uid_in(ranges: &[SeqRange], uid: u32, star: u32) -> bool {
    ranges.iter().any(|range| {
        let (low, high) = bounds(range, star);
        (low..=high).contains(&uid)
    })
}

/// Writes UIDs compactly as a sequence set (`1:3,7,9:10`).
pub fn format_set(values: &[u32]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Writes pairs in order (for COPYUID, where source and destination must correspond).
pub fn format_list(values: &[u32]) -> String {
    values
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ranges: &[(u32, u32)]) -> Sequence {
        Sequence::Set(
            ranges
                .iter()
                .map(|&(a, b)| SeqRange {
                    start: SeqNumber::Value(a),
                    end: SeqNumber::Value(b),
                })
                .collect(),
        )
    }

    #[test]
    fn uid_ranges_pick_existing_uids_only() {
        let uids = [2, 4, 6, 8];
        assert_eq!(resolve(&set(&[(3, 7)]), true, &uids, None), vec![1, 2]);
        assert_eq!(
            resolve(&set(&[(9, 100)]), true, &uids, None),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn star_is_the_largest() {
        let uids = [2, 4, 6];
        let star = Sequence::Set(vec![SeqRange {
            start: SeqNumber::Value(5),
            end: SeqNumber::Star,
        }]);
        assert_eq!(resolve(&star, true, &uids, None), vec![2]);
        // 5:* over three messages is 3:5: message 3 (callers refuse the 5 with BAD).
        assert_eq!(resolve(&star, false, &uids, None), vec![2]);
        assert!(out_of_range(&star, uids.len()));
        // A UID range reversed around * still includes the last message.
        let high = Sequence::Set(vec![SeqRange {
            start: SeqNumber::Value(100),
            end: SeqNumber::Star,
        }]);
        assert_eq!(resolve(&high, true, &uids, None), vec![2]);
    }

    /// A sequence set as a client writes it (`1:3,5,*`, `$`), read by the real parser.
    fn parse_set(text: &str) -> Sequence {
        let line = format!("t UID FETCH {text} UID\r\n");
        match imap_proto::parse::parse_command(line.as_bytes()) {
            Ok(imap_proto::Command {
                body: imap_proto::CommandBody::Fetch { sequence, .. },
                ..
            }) => sequence,
            other => panic!("{text}: {other:?}"),
        }
    }

    /// Resolves `text` over `uids` and compares with the expected positions.
    fn check(text: &str, uid: bool, uids: &[u32], saved: Option<&[u32]>, expect: &[usize]) {
        let set = parse_set(text);
        assert_eq!(resolve(&set, uid, uids, saved), expect, "{text}");
        let positions = Positions::resolve(&set, uid, uids, saved);
        for i in 0..uids.len() {
            assert_eq!(positions.contains(i), expect.contains(&i), "{text} at {i}");
        }
        assert_eq!(positions.len(), expect.len(), "{text}");
    }

    /// What `resolve` must equal: every number of every range, looked up one by one.
    fn naive(ranges: &[(u32, u32)], uid: bool, uids: &[u32]) -> Vec<usize> {
        let mut out = Vec::new();
        for &(a, b) in ranges {
            for n in a.min(b)..=a.max(b) {
                let found = if uid {
                    uids.binary_search(&n).ok()
                } else {
                    (n as usize).checked_sub(1).filter(|i| *i < uids.len())
                };
                out.extend(found);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    #[test]
    fn overlapping_and_reversed_ranges_merge() {
        let uids = [10, 20, 30, 40, 50, 60];
        check("2:4,3:5", false, &uids, None, &[1, 2, 3, 4]);
        check("5:2", false, &uids, None, &[1, 2, 3, 4]);
        check("1,1,1,6", false, &uids, None, &[0, 5]);
        check("1:2,3:4", false, &uids, None, &[0, 1, 2, 3]);
        check("*", false, &uids, None, &[5]);
        check("*:4", false, &uids, None, &[3, 4, 5]);
        check("15:35,25:45", true, &uids, None, &[1, 2, 3]);
        check("60:*,1:10", true, &uids, None, &[0, 5]);
        check("1:9,11:19,61:100", true, &uids, None, &[]);
        check("1:*", true, &[], None, &[]);
        check("1:*", false, &[], None, &[]);
    }

    #[test]
    fn saved_result_keeps_only_uids_still_there() {
        let uids = [10, 20, 30, 40];
        check("$", true, &uids, Some(&[40, 10, 15, 10]), &[0, 3]);
        check("$", false, &uids, Some(&[20]), &[1]);
        check("$", true, &uids, None, &[]);
    }

    #[test]
    fn agrees_with_one_by_one_expansion() {
        // A fixed pseudo-random walk (no dependency, same cases every run).
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: u32| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) % u64::from(bound)) as u32
        };
        for _ in 0..500 {
            let count = next(40) as usize;
            let mut uids: Vec<u32> = (0..count).map(|_| 1 + next(80)).collect();
            uids.sort_unstable();
            uids.dedup();
            let ranges: Vec<(u32, u32)> = (0..1 + next(6)).map(|_| (next(90), next(90))).collect();
            for uid in [true, false] {
                let got = resolve(&set(&ranges), uid, &uids, None);
                assert_eq!(got, naive(&ranges, uid, &uids), "{ranges:?} over {uids:?}");
            }
        }
    }

    /// REVIEW A2: `1:*,1:*,…` 16k times in one line expanded every range before
    /// deduplicating: 1.6 billion entries over 100k messages. Now the output is
    /// bounded by the mailbox and the work by the ranges plus the messages.
    #[test]
    fn sixteen_thousand_overlapping_ranges_stay_cheap() {
        let uids: Vec<u32> = (1..=200_000u32).map(|n| n * 3).collect();
        let mut text = String::new();
        for i in 0..16_384u32 {
            if i > 0 {
                text.push(',');
            }
            match i % 3 {
                0 => text.push_str("1:*"),
                1 => text.push_str(&format!("{}:{}", i * 7, i * 7 + 50_000)),
                _ => text.push_str(&format!("*:{}", 4_000_000 - i)),
            }
        }
        let set = parse_set(&text);
        let started = std::time::Instant::now();
        for uid in [true, false] {
            let positions = resolve(&set, uid, &uids, None);
            assert_eq!(positions.len(), uids.len());
            assert!(positions.iter().enumerate().all(|(i, p)| i == *p));
        }
        let merged = Positions::resolve(&parse_set("9:17,3:6,600000:*"), true, &uids, None);
        assert_eq!(
            merged.iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 199_999]
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    /// e2e BUGS 9: `FETCH *` and `COPY *` in an empty mailbox answered OK.
    #[test]
    fn star_is_out_of_range_in_an_empty_mailbox() {
        assert!(out_of_range(&parse_set("*"), 0));
        assert!(out_of_range(&parse_set("1:*"), 0));
        assert!(!out_of_range(&parse_set("*"), 1));
        assert!(!out_of_range(&parse_set("1:*"), 3));
        assert!(out_of_range(&parse_set("2:4"), 3));
        assert!(!out_of_range(&parse_set("$"), 0));
    }

    #[test]
    fn sets_format_compactly() {
        assert_eq!(format_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(format_set(&[]), "");
    }
}
