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
    /// Each message draws its words from a vocabulary of its own
    /// ([`MessageSpec::distinct_texts`]).
    distinct: bool,
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
            distinct: false,
        })
    }

    /// Messages whose texts differ in substance, not only in order: each
    /// draws its body from a vocabulary of its own ([`OWN_WORDS`] words: some
    /// of the shared vocabulary and made-up words), as mail from different
    /// people about different things does. Bodies drawn from one shared
    /// vocabulary, as [`MessageSpec::new`] makes them, all have the same word
    /// frequencies, which a near-duplicate detector may rightly take for one
    /// text; the flood's legitimate mail must not look like a run.
    ///
    /// # Errors
    /// A size outside [`SIZE_BYTES_MIN`]..=[`SIZE_BYTES_MAX`].
    pub fn distinct_texts(seed: u64, size_bytes: usize) -> Result<Self, String> {
        Ok(MessageSpec {
            distinct: true,
            ..MessageSpec::new(seed, size_bytes, None, "")?
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
        // Drawn after everything else, so messages of the shared vocabulary
        // stay byte for byte what they were before distinct texts existed.
        let own_words = self.distinct.then(|| own_vocabulary(&mut rng));
        let mut line_bytes = 0;
        // Bounded: every pass adds at least one byte until body_end is passed.
        for word_index in 0.. {
            if message.len() >= body_end {
                break;
            }
            let next = match (needle_at, &own_words) {
                (Some((at, needle)), _) if at == word_index => needle,
                (_, Some(words)) => words[rng.gen_range(0..words.len())].as_str(),
                (_, None) => word(&mut rng),
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

/// Words in the vocabulary of one message of distinct texts.
pub const OWN_WORDS: usize = 48;

/// Syllables of made-up words (names, places, jargon).
const SYLLABLES: &[&str] = &[
    "ba", "ber", "cal", "da", "del", "fen", "ga", "hol", "ka", "kin", "la", "lim", "mar", "mo",
    "nel", "no", "pa", "per", "qui", "ra", "ros", "sa", "sel", "ta", "tor", "va", "ven", "wi",
    "xa", "yo", "zan", "zu",
];

/// The vocabulary of one message of distinct texts: half words of the
/// shared vocabulary, half made-up words of two to four syllables.
fn own_vocabulary(rng: &mut StdRng) -> Vec<String> {
    (0..OWN_WORDS)
        .map(|number| {
            if number % 2 == 0 {
                word(rng).to_owned()
            } else {
                (0..rng.gen_range(2..5))
                    .map(|_| SYLLABLES[rng.gen_range(0..SYLLABLES.len())])
                    .collect()
            }
        })
        .collect()
}

fn word(rng: &mut StdRng) -> &'static str {
    VOCABULARY[rng.gen_range(0..VOCABULARY.len())]
}

/// The body of every copy of the spam run, with `{name}`, `{number}` and
/// `{url}` filled in per copy, as bulk mail software personalises a run.
const SPAM_BODY: &str = "Dear {name},\r\n\r\n\
Congratulations! Your address was selected in this month's customer\r\n\
appreciation draw, and reward number {number} has been reserved in your name.\r\n\
To claim it, confirm your details within 48 hours at the link below:\r\n\r\n\
    {url}\r\n\r\n\
This offer is for selected customers only and cannot be transferred.\r\n\
Rewards not claimed by the deadline go to another participant. There is no\r\n\
cost to take part and no purchase is necessary.\r\n\r\n\
Thousands of customers have already claimed their rewards this month.\r\n\
Do not miss your chance: claim reward {number} today at\r\n\
{url}\r\n\r\n\
Kind regards,\r\n\
The Customer Rewards Team\r\n\r\n\
You receive this message because you subscribed to partner offers. To stop\r\n\
receiving them, reply with the word unsubscribe in the subject.\r\n";

/// Copy `copy` of the spam run to `recipient`: one template, with the
/// recipient's name, a reward number and a URL that differ per copy (the
/// number and URL are a pure function of `seed` and `copy`), from
/// `sender_domain`. About 1.2 KB.
pub fn spam_copy(seed: u64, copy: u64, recipient: &str, sender_domain: &str) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(
        seed.rotate_left(17) ^ copy.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5350_414D,
    );
    let name = recipient.split('@').next().unwrap_or(recipient);
    let number = format!("{:06}", rng.gen_range(0..1_000_000u32));
    let token: String = (0..12)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
        .collect();
    let url = format!(
        "https://claim{}.rewards-center.test/r/{token}",
        rng.gen_range(1..100u32)
    );
    let second_of_day = copy % 86_400;
    let mut message = format!(
        "From: Customer Rewards <rewards@{sender_domain}>\r\nTo: <{recipient}>\r\n\
         Subject: {name}, reward {number} is waiting for you\r\n\
         Date: Mon, 01 Jan 2024 {:02}:{:02}:{:02} +0000\r\n\
         Message-ID: <{token}.{copy}@{sender_domain}>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\r\n",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    message.push_str(
        &SPAM_BODY
            .replace("{name}", name)
            .replace("{number}", &number)
            .replace("{url}", &url),
    );
    message.into_bytes()
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

    fn body_words(message: &[u8]) -> std::collections::BTreeSet<String> {
        let text = std::str::from_utf8(message).unwrap();
        let body = &text[text.find("\r\n\r\n").unwrap()..];
        body.split_whitespace().map(str::to_owned).collect()
    }

    fn overlap(one: &[u8], two: &[u8]) -> f64 {
        let (one, two) = (body_words(one), body_words(two));
        one.intersection(&two).count() as f64 / one.union(&two).count() as f64
    }

    #[test]
    fn distinct_texts_have_words_of_their_own() {
        let distinct = MessageSpec::distinct_texts(1, 4096).unwrap();
        let shared = spec(4096, None);
        for index in [0, 1, 500] {
            let message = distinct.build(index, "user1@bench.test");
            assert_eq!(message.len(), 4096);
            assert_eq!(message, distinct.build(index, "user1@bench.test"));
            let text = std::str::from_utf8(&message).unwrap();
            assert!(text.split("\r\n").all(|line| line.len() <= 80));
            assert!(body_words(&message).len() <= OWN_WORDS + 2);
        }
        // Shared-vocabulary bodies use nearly the same words; distinct
        // ones share few.
        let shared_overlap = overlap(&shared.build(1, "a"), &shared.build(2, "a"));
        let distinct_overlap = overlap(&distinct.build(1, "a"), &distinct.build(2, "a"));
        assert!(shared_overlap > 0.7, "{shared_overlap}");
        assert!(distinct_overlap < 0.3, "{distinct_overlap}");
        assert!(MessageSpec::distinct_texts(1, 10).is_err());
    }

    #[test]
    fn spam_copies_share_one_template_and_differ_in_name_number_and_url() {
        let one = String::from_utf8(spam_copy(1, 7, "user3@bench.test", "deals7.test")).unwrap();
        let two = String::from_utf8(spam_copy(1, 8, "user4@bench.test", "deals8.test")).unwrap();
        assert_eq!(
            one,
            String::from_utf8(spam_copy(1, 7, "user3@bench.test", "deals7.test")).unwrap()
        );
        assert_ne!(one, two);
        assert!(one.contains("Dear user3,\r\n") && two.contains("Dear user4,\r\n"));
        assert!(one.contains("https://claim") && one.contains(".rewards-center.test/r/"));
        assert!(!one.contains('{'), "a placeholder was left: {one}");
        assert!((1000..1600).contains(&one.len()), "{}", one.len());
        assert!(!one.replace("\r\n", "").contains(['\r', '\n']));
        assert!(one.split("\r\n").all(|line| line.len() <= 80));
        // The bodies differ only in the varied words: same lines, and most
        // of them identical.
        let body = |text: &str| {
            let start = text.find("\r\n\r\n").unwrap();
            text[start..]
                .split("\r\n")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let (body_one, body_two) = (body(&one), body(&two));
        assert_eq!(body_one.len(), body_two.len());
        let differing = body_one
            .iter()
            .zip(&body_two)
            .filter(|(a, b)| a != b)
            .count();
        assert!(differing <= 5, "{differing} lines differ");
        // Another seed, another run of the same template.
        assert_ne!(
            one,
            String::from_utf8(spam_copy(2, 7, "user3@bench.test", "deals7.test")).unwrap()
        );
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
