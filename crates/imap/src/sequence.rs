//! Resolving sequence sets against the selected mailbox.

use imap_proto::{SeqNumber, SeqRange, Sequence};

/// Turns a sequence set into positions (0-based indexes into `uids`), ascending,
/// without duplicates. `uid` says whether the numbers are UIDs. `saved` is the
/// SEARCHRES result (UIDs). Numbers that match nothing are ignored, as RFC 9051
/// asks for UID sets; for message sequence numbers the caller checks validity first.
pub fn resolve(sequence: &Sequence, uid: bool, uids: &[u32], saved: Option<&[u32]>) -> Vec<usize> {
    let mut out = Vec::new();
    match sequence {
        Sequence::Saved => {
            if let Some(saved) = saved {
                for u in saved {
                    if let Ok(i) = uids.binary_search(u) {
                        out.push(i);
                    }
                }
            }
        }
        Sequence::Set(ranges) => {
            for range in ranges {
                if uid {
                    let max = uids.last().copied().unwrap_or(0);
                    let (a, b) = bounds(range, max);
                    let start = uids.partition_point(|u| *u < a);
                    let end = uids.partition_point(|u| *u <= b);
                    out.extend(start..end);
                } else {
                    let count = uids.len() as u32;
                    let (a, b) = bounds(range, count);
                    if count == 0 {
                        continue;
                    }
                    let a = a.max(1);
                    let b = b.min(count);
                    if a <= b {
                        out.extend((a as usize - 1)..(b as usize));
                    }
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// True when a message-sequence set names a number beyond the mailbox (a BAD per RFC 9051).
pub fn out_of_range(sequence: &Sequence, count: usize) -> bool {
    let Sequence::Set(ranges) = sequence else {
        return false;
    };
    ranges.iter().any(|r| {
        [r.start, r.end]
            .iter()
            .any(|n| matches!(n, SeqNumber::Value(v) if *v as usize > count))
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

    #[test]
    fn sets_format_compactly() {
        assert_eq!(format_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(format_set(&[]), "");
    }
}
