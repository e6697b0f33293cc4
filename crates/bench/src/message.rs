//! The messages the benchmark delivers.
//!
//! A message is a pure function of the seed, its index and its recipient, so
//! every run, and every server compared in one run, gets the same bytes;
//! and every message is distinct (its Message-ID and subject carry the
//! index), so a content-addressed store cannot turn the benchmark into one
//! blob written many times.
//!
//! The body is lines of words from a fixed vocabulary. The SEARCH needle is a
//! word the vocabulary cannot produce (checked by [`MessageSpec::new`]), put
//! into exactly the messages whose index is a multiple of `every`, so the
//! number of matches is known in advance.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Smallest message size we build exactly: room for the headers (with a
/// recipient name of reasonable length) and a body.
pub const SIZE_BYTES_MIN: usize = 1024;
/// Largest message size: the default SIZE limit of the servers we test.
pub const SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Longest needle; it must fit well inside the smallest body.
pub const NEEDLE_BYTES_MAX: usize = 64;
/// Body lines are wrapped before this many bytes (RFC 5322 recommends 78).
const LINE_BYTES_MAX: usize = 72;

const VOCABULARY: &[&str] = &[
    "about",
    "above",
    "account",
    "after",
    "again",
    "agenda",
    "almost",
    "along",
    "answer",
    "april",
    "around",
    "attached",
    "before",
    "below",
    "budget",
    "button",
    "called",
    "change",
    "charge",
    "check",
    "closed",
    "coffee",
    "common",
    "copy",
    "corner",
    "couple",
    "course",
    "dinner",
    "draft",
    "during",
    "early",
    "east",
    "either",
    "enough",
    "evening",
    "every",
    "family",
    "final",
    "follow",
    "forward",
    "friday",
    "garden",
    "get",
    "given",
    "going",
    "green",
    "ground",
    "happy",
    "heard",
    "held",
    "house",
    "idea",
    "inside",
    "invoice",
    "issue",
    "kind",
    "known",
    "large",
    "later",
    "letter",
    "little",
    "local",
    "lunch",
    "march",
    "matter",
    "meeting",
    "minute",
    "monday",
    "morning",
    "moved",
    "never",
    "next",
    "notes",
    "number",
    "office",
    "often",
    "open",
    "order",
    "other",
    "paper",
    "party",
    "people",
    "place",
    "plan",
    "please",
    "point",
    "price",
    "quarter",
    "question",
    "quick",
    "rather",
    "ready",
    "reason",
    "report",
    "result",
    "review",
    "river",
    "round",
    "sales",
    "second",
    "send",
    "shall",
    "short",
    "should",
    "since",
    "small",
    "soon",
    "sorry",
    "south",
    "spring",
    "still",
    "story",
    "summer",
    "sunday",
    "table",
    "thanks",
    "their",
    "there",
    "thing",
    "think",
    "thursday",
    "today",
    "travel",
    "tuesday",
    "under",
    "until",
    "update",
    "usual",
    "visit",
    "water",
    "week",
    "weekend",
    "where",
    "which",
    "while",
    "winter",
    "without",
    "work",
    "world",
    "would",
    "write",
    "year",
    "yellow",
    "yesterday",
    "young",
];

/// The fixed parts of every message, checked against the needle as well.
const HEADER_TEXT: &str = "From: Bench Sender <sender@bench.invalid>\r\nTo: \r\nSubject: \r\n\
Date: Mon, 01 Jan 2024 +0000\r\nMessage-ID: <@bench.invalid>\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\r\n";

/// A search word planted in some messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needle {
    pub word: String,
    /// The needle is in message `index` exactly when `index % every == 0`.
    pub every: u64,
}

/// What every generated message shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    seed: u64,
    size_bytes: usize,
    needle: Option<Needle>,
}

impl MessageSpec {
    /// # Errors
    /// A size outside [`SIZE_BYTES_MIN`]..=[`SIZE_BYTES_MAX`]; a needle that is
    /// empty, longer than [`NEEDLE_BYTES_MAX`], not ASCII letters and digits,
    /// found (ignoring case) in the vocabulary, the fixed headers or
    /// `domain`, or planted every 0 messages.
    pub fn new(
        seed: u64,
        size_bytes: usize,
        needle: Option<Needle>,
        domain: &str,
    ) -> Result<Self, String> {
        if !(SIZE_BYTES_MIN..=SIZE_BYTES_MAX).contains(&size_bytes) {
            return Err(format!(
                "message size {size_bytes} is outside {SIZE_BYTES_MIN}..={SIZE_BYTES_MAX} bytes"
            ));
        }
        if let Some(needle) = &needle {
            let word = needle.word.to_ascii_lowercase();
            if word.is_empty()
                || word.len() > NEEDLE_BYTES_MAX
                || !word.bytes().all(|byte| byte.is_ascii_alphanumeric())
            {
                return Err(format!(
                    "needle {:?} must be 1 to {NEEDLE_BYTES_MAX} ASCII letters or digits",
                    needle.word
                ));
            }
            let found_in = VOCABULARY
                .iter()
                .copied()
                .chain([HEADER_TEXT, domain])
                .find(|text| text.to_ascii_lowercase().contains(&word));
            if let Some(text) = found_in {
                return Err(format!(
                    "needle {:?} also occurs in {text:?}, so SEARCH would match more than the planted messages",
                    needle.word
                ));
            }
            if needle.every == 0 {
                return Err("the needle must be planted every 1 or more messages".into());
            }
        }
        Ok(MessageSpec {
            seed,
            size_bytes,
            needle,
        })
    }

    /// Whether message `index` carries the needle.
    pub fn has_needle(&self, index: u64) -> bool {
        self.needle
            .as_ref()
            .is_some_and(|needle| index.is_multiple_of(needle.every))
    }

    /// Messages among indices `0..count` that carry the needle.
    pub fn needle_count(&self, count: u64) -> u64 {
        match &self.needle {
            Some(needle) => count.div_ceil(needle.every),
            None => 0,
        }
    }

    /// Message `index` for `recipient`: CRLF line endings, `size_bytes` long
    /// unless the recipient's name is so long that the headers alone pass it.
    pub fn build(&self, index: u64, recipient: &str) -> Vec<u8> {
        // Mixing the index in (rather than seeding with seed + index) keeps
        // neighbouring messages of neighbouring seeds apart.
        let mut rng = StdRng::seed_from_u64(self.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let subject: Vec<&str> = (0..rng.gen_range(3..7)).map(|_| word(&mut rng)).collect();
        let second_of_day = index % 86_400;
        let mut message = format!(
            "From: Bench Sender <sender@bench.invalid>\r\nTo: <{recipient}>\r\n\
             Subject: {} {index}\r\nDate: Mon, 01 Jan 2024 {:02}:{:02}:{:02} +0000\r\n\
             Message-ID: <{:x}.{index}@bench.invalid>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n",
            subject.join(" "),
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
            self.seed,
        )
        .into_bytes();
        let body_bytes = self.size_bytes.saturating_sub(message.len()).max(3);
        let body_end = message.len() + body_bytes;

        // Plant the needle within the first quarter of the body's words, so
        // cutting the body to size never cuts it off.
        let needle_at = match &self.needle {
            Some(needle) if self.has_needle(index) => Some((
                rng.gen_range(0..(body_bytes / 32).max(1)),
                needle.word.as_str(),
            )),
            _ => None,
        };
        let mut line_bytes = 0;
        // Bounded: every pass adds at least one byte until body_end is passed.
        for word_index in 0.. {
            if message.len() >= body_end {
                break;
            }
            let next = match needle_at {
                Some((at, needle)) if at == word_index => needle,
                _ => word(&mut rng),
            };
            if line_bytes > 0 && line_bytes + 1 + next.len() > LINE_BYTES_MAX {
                message.extend_from_slice(b"\r\n");
                line_bytes = 0;
            } else if line_bytes > 0 {
                message.push(b' ');
                line_bytes += 1;
            }
            message.extend_from_slice(next.as_bytes());
            line_bytes += next.len();
        }
        // Cut to size, leaving room for the final CRLF, without leaving a
        // bare CR or a trailing space behind.
        message.truncate(body_end - 2);
        if let Some(last) = message.last_mut()
            && (*last == b'\r' || *last == b' ')
        {
            *last = b'x';
        }
        message.extend_from_slice(b"\r\n");
        message
    }
}

fn word(rng: &mut StdRng) -> &'static str {
    VOCABULARY[rng.gen_range(0..VOCABULARY.len())]
}

/// The bytes to send after `DATA` and its 354: the message with lines that
/// start with `.` doubled (RFC 5321 §4.5.2), a final CRLF if it had none,
/// and the closing `.` line.
pub fn data_payload(message: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut at_line_start = true;
    for &byte in message {
        if at_line_start && byte == b'.' {
            payload.push(b'.');
        }
        payload.push(byte);
        at_line_start = byte == b'\n';
    }
    if !payload.ends_with(b"\r\n") {
        payload.extend_from_slice(b"\r\n");
    }
    payload.extend_from_slice(b".\r\n");
    payload
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(size: usize, needle: Option<&str>) -> MessageSpec {
        MessageSpec::new(
            42,
            size,
            needle.map(|word| Needle {
                word: word.into(),
                every: 100,
            }),
            "example.com",
        )
        .unwrap()
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
    }

    #[test]
    fn messages_are_exact_size_deterministic_and_distinct() {
        for size in [1024, 4096, 4097, 100 * 1024] {
            let spec = spec(size, None);
            for index in [0, 1, 99, 123_456] {
                let message = spec.build(index, "user7@example.com");
                assert_eq!(message.len(), size, "size {size} index {index}");
                assert_eq!(message, spec.build(index, "user7@example.com"));
                assert!(message.ends_with(b"\r\n"));
            }
            assert_ne!(spec.build(1, "a"), spec.build(2, "a"));
        }
        assert_ne!(
            spec(4096, None).build(1, "a"),
            MessageSpec::new(43, 4096, None, "x").unwrap().build(1, "a")
        );
    }

    #[test]
    fn lines_end_in_crlf_and_stay_short() {
        let message = spec(8192, Some("zyzzyva")).build(0, "user0");
        let text = std::str::from_utf8(&message).unwrap();
        assert!(!text.replace("\r\n", "").contains(['\r', '\n']));
        assert!(text.split("\r\n").all(|line| line.len() <= 80));
        assert!(!text.split("\r\n").any(|line| line.starts_with('.')));
    }

    #[test]
    fn needle_is_in_exactly_the_planned_messages() {
        let spec = spec(4096, Some("Zyzzyva"));
        let mut planted = 0;
        for index in 0..1000 {
            let message = spec.build(index, "user1@example.com");
            let body_start = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            assert_eq!(
                contains(&message[body_start..], "zyzzyva"),
                spec.has_needle(index),
                "index {index}"
            );
            planted += u64::from(spec.has_needle(index));
        }
        assert_eq!(planted, 10);
        assert_eq!(spec.needle_count(1000), 10);
        assert_eq!(spec.needle_count(1001), 11);
        assert_eq!(spec.needle_count(0), 0);
    }

    #[test]
    fn needles_that_would_match_elsewhere_are_refused() {
        let attempt = |word: &str, domain: &str| {
            MessageSpec::new(
                1,
                4096,
                Some(Needle {
                    word: word.into(),
                    every: 100,
                }),
                domain,
            )
        };
        assert!(attempt("zyzzyva", "example.com").is_ok());
        assert!(attempt("meet", "example.com").is_err()); // in "meeting"
        assert!(attempt("BENCH", "example.com").is_err()); // in the From header
        assert!(attempt("zyzzyva", "zyzzyva.org").is_err());
        assert!(attempt("two words", "example.com").is_err());
        assert!(attempt("", "example.com").is_err());
        assert!(MessageSpec::new(1, 100, None, "x").is_err());
    }

    #[test]
    fn data_payload_stuffs_dots_and_terminates() {
        assert_eq!(
            data_payload(b"a\r\n.b\r\n..\r\n"),
            b"a\r\n..b\r\n...\r\n.\r\n"
        );
        assert_eq!(data_payload(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(data_payload(b"a.b\r\n"), b"a.b\r\n.\r\n");
        assert_eq!(data_payload(b""), b"\r\n.\r\n");
    }
}
