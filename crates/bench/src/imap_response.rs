//! IMAP server responses (RFC 9051 §7), as far as a load generator needs
//! them: where one response ends, and whether it is our tagged completion,
//! an EXISTS count, a FETCH, or a SEARCH result. No I/O.
//!
//! A response is a line, unless that line ends in a literal announcement
//! (`{123}`, `{123+}` or `~{123}`): then the next 123 bytes belong to the
//! response whatever they contain, CRLF and text that looks like a tagged
//! `OK` included, and the response goes on after them. Getting this wrong
//! would end a FETCH early and make the benchmark count a partial answer as
//! a fast one, so [`frame_response`] never looks inside a literal.

use crate::error::{ProtocolError, ProtocolErrorKind};

/// Bounds on one response. Every buffer the client keeps is held under
/// `response_bytes_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Longest stretch of a response outside literals, line ending included.
    /// A `* SEARCH` of 100,000 matches is about 700 KB.
    pub line_bytes_max: usize,
    /// Largest literal we accept to read.
    pub literal_bytes_max: u64,
    /// Largest response, lines and literals together.
    pub response_bytes_max: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        ResponseLimits {
            line_bytes_max: 8 * 1024 * 1024,
            literal_bytes_max: 64 * 1024 * 1024,
            response_bytes_max: 80 * 1024 * 1024,
        }
    }
}

/// How many bytes the first whole response in `input` takes, or `None` when
/// it has not all arrived.
///
/// # Errors
/// A line, literal or response over its bound (checked before waiting for
/// more bytes, so a huge announced literal is refused before it is read).
pub fn frame_response(
    input: &[u8],
    limits: &ResponseLimits,
) -> Result<Option<usize>, ProtocolError> {
    let mut position = 0;
    // Every pass moves `position` forward by at least one byte and stays
    // within `response_bytes_max`, so the loop is bounded by it.
    for _ in 0..=limits.response_bytes_max {
        let rest = &input[position..];
        let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
            if rest.len() >= limits.line_bytes_max {
                return Err(too_long_line(limits));
            }
            if input.len() >= limits.response_bytes_max {
                return Err(too_large_response(limits));
            }
            return Ok(None);
        };
        if newline + 1 > limits.line_bytes_max {
            return Err(too_long_line(limits));
        }
        let line = strip_cr(&rest[..newline]);
        let after_line = position + newline + 1;
        let Some(literal_bytes) = literal_announcement(line) else {
            return Ok(Some(after_line));
        };
        if literal_bytes > limits.literal_bytes_max {
            return Err(ProtocolError::new(
                ProtocolErrorKind::LiteralTooLarge,
                format!(
                    "literal of {literal_bytes} bytes (bound {})",
                    limits.literal_bytes_max
                ),
            ));
        }
        // Fits in usize: it is no larger than literal_bytes_max, a u64 that
        // the caller chose to hold in memory.
        let end = usize::try_from(literal_bytes)
            .ok()
            .and_then(|bytes| after_line.checked_add(bytes))
            .filter(|&end| end <= limits.response_bytes_max)
            .ok_or_else(|| too_large_response(limits))?;
        if input.len() < end {
            return Ok(None);
        }
        position = end;
    }
    Err(too_large_response(limits))
}

fn too_long_line(limits: &ResponseLimits) -> ProtocolError {
    ProtocolError::new(
        ProtocolErrorKind::LineTooLong,
        format!("response line over {} bytes", limits.line_bytes_max),
    )
}

fn too_large_response(limits: &ResponseLimits) -> ProtocolError {
    ProtocolError::new(
        ProtocolErrorKind::ResponseTooLarge,
        format!("response over {} bytes", limits.response_bytes_max),
    )
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The size a line's closing `{N}`, `{N+}` or `~{N}` announces. A line that
/// ends in braces holding anything but digits announces nothing.
fn literal_announcement(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&byte| byte == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The status word of a tagged or untagged condition response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Preauth,
    Bye,
}

/// What a framed response is, as far as the workloads care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// `+ ...`: the server waits for more of a command.
    Continuation,
    /// `tag OK|NO|BAD text`: a command finished.
    Tagged {
        tag: &'a str,
        status: Status,
        /// The rest of the first line, for error messages.
        text: String,
    },
    /// `* ...`
    Untagged(Untagged),
}

/// The untagged responses the workloads read; everything else is `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK/NO/BAD/PREAUTH/BYE ...`
    Condition(Status, String),
    /// `* N EXISTS`
    Exists(u32),
    /// `* N FETCH (...)`, with whether it holds an `ENVELOPE`.
    Fetch {
        sequence: u32,
        has_envelope: bool,
    },
    /// `* SEARCH n n n` or `* ESEARCH ... ALL set | COUNT n`: how many
    /// messages matched.
    Search {
        matches: u64,
    },
    /// `* SORT n n n` (RFC 5256): how many message numbers it holds.
    Sort {
        messages: u64,
    },
    /// `* THREAD (n)(n (n n))` (RFC 5256): how many message numbers it
    /// holds, in all its threads.
    Thread {
        messages: u64,
    },
    /// `* CAPABILITY ...`: the capabilities, as sent.
    Capability(String),
    Other,
}

/// Classifies one framed response (as [`frame_response`] cut it).
///
/// # Errors
/// A response with no recognisable start, a tagged response without a
/// status word, or a number that does not parse.
pub fn classify(response: &[u8]) -> Result<Response<'_>, ProtocolError> {
    let first_line_end = response
        .iter()
        .position(|&byte| byte == b'\n')
        .unwrap_or(response.len());
    let first_line = strip_cr(&response[..first_line_end]);
    if first_line == b"+" || first_line.starts_with(b"+ ") {
        return Ok(Response::Continuation);
    }
    if let Some(rest) = first_line.strip_prefix(b"* ") {
        return classify_untagged(rest, response).map(Response::Untagged);
    }
    let (tag, rest) = split_word(first_line);
    let tag = std::str::from_utf8(tag)
        .ok()
        .filter(|tag| !tag.is_empty())
        .ok_or_else(|| malformed("response without a tag", first_line))?;
    let (word, text) = split_word(rest);
    let status = match status_word(word) {
        Some(status @ (Status::Ok | Status::No | Status::Bad)) => status,
        _ => return Err(malformed("tagged response without OK/NO/BAD", first_line)),
    };
    Ok(Response::Tagged {
        tag,
        status,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

fn classify_untagged(first_line: &[u8], response: &[u8]) -> Result<Untagged, ProtocolError> {
    let (word, rest) = split_word(first_line);
    if let Some(status) = status_word(word) {
        return Ok(Untagged::Condition(
            status,
            String::from_utf8_lossy(rest).into_owned(),
        ));
    }
    if word.eq_ignore_ascii_case(b"SEARCH") {
        let mut matches = 0u64;
        for number in rest.split(|&byte| byte == b' ').filter(|n| !n.is_empty()) {
            // A `(MODSEQ n)` tail (CONDSTORE) is not a match.
            if number.starts_with(b"(") {
                break;
            }
            parse_number(number).ok_or_else(|| malformed("bad SEARCH number", first_line))?;
            matches += 1;
        }
        return Ok(Untagged::Search { matches });
    }
    if word.eq_ignore_ascii_case(b"SORT") {
        let mut messages = 0u64;
        for number in rest.split(|&byte| byte == b' ').filter(|n| !n.is_empty()) {
            parse_number(number).ok_or_else(|| malformed("bad SORT number", first_line))?;
            messages += 1;
        }
        return Ok(Untagged::Sort { messages });
    }
    if word.eq_ignore_ascii_case(b"THREAD") {
        // Message numbers between the parentheses and spaces.
        let messages = rest
            .split(|&byte| matches!(byte, b' ' | b'(' | b')'))
            .filter(|n| !n.is_empty())
            .map(|number| parse_number(number).ok_or_else(|| malformed("bad THREAD", first_line)))
            .try_fold(0u64, |count, number| number.map(|_| count + 1))?;
        return Ok(Untagged::Thread { messages });
    }
    if word.eq_ignore_ascii_case(b"CAPABILITY") {
        return Ok(Untagged::Capability(
            String::from_utf8_lossy(rest).into_owned(),
        ));
    }
    if word.eq_ignore_ascii_case(b"ESEARCH") {
        return esearch_matches(rest)
            .map(|matches| Untagged::Search { matches })
            .ok_or_else(|| malformed("bad ESEARCH", first_line));
    }
    if let Some(number) = parse_number(word) {
        let (kind, _) = split_word(rest);
        let number = u32::try_from(number)
            .map_err(|_| malformed("message number out of range", first_line))?;
        if kind.eq_ignore_ascii_case(b"EXISTS") {
            return Ok(Untagged::Exists(number));
        }
        if kind.eq_ignore_ascii_case(b"FETCH") {
            return Ok(Untagged::Fetch {
                sequence: number,
                has_envelope: fetch_has_envelope(response),
            });
        }
    }
    Ok(Untagged::Other)
}

/// Whether the FETCH data names ENVELOPE outside a literal. Scanning the
/// text between literals is enough: the item names are atoms there.
fn fetch_has_envelope(response: &[u8]) -> bool {
    let mut rest = response;
    // Bounded: every pass drops at least one line from `rest`.
    while !rest.is_empty() {
        let (line, after_line) = match rest.iter().position(|&byte| byte == b'\n') {
            Some(newline) => (strip_cr(&rest[..newline]), newline + 1),
            None => (rest, rest.len()),
        };
        if contains_ignore_case(line, b"ENVELOPE (") {
            return true;
        }
        let skip = literal_announcement(line)
            .and_then(|bytes| usize::try_from(bytes).ok())
            .unwrap_or(0);
        rest = rest.get(after_line.saturating_add(skip)..).unwrap_or(&[]);
    }
    false
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

/// `(TAG "x") [UID] ALL 1:3,7` → 4; `... COUNT 12` → 12; no ALL and no COUNT
/// → 0 (RFC 4731: no matches).
fn esearch_matches(rest: &[u8]) -> Option<u64> {
    let words: Vec<&[u8]> = rest
        .split(|&byte| byte == b' ')
        .filter(|word| !word.is_empty())
        .collect();
    let mut count = None;
    let mut all = None;
    for pair in words.windows(2) {
        if pair[0].eq_ignore_ascii_case(b"COUNT") {
            count = Some(parse_number(pair[1])?);
        } else if pair[0].eq_ignore_ascii_case(b"ALL") {
            all = Some(sequence_set_size(pair[1])?);
        }
    }
    Some(count.or(all).unwrap_or(0))
}

/// Number of messages in a sequence set like `1:3,7,9:8`.
fn sequence_set_size(set: &[u8]) -> Option<u64> {
    set.split(|&byte| byte == b',')
        .try_fold(0u64, |total, range| {
            let size = match range.iter().position(|&byte| byte == b':') {
                None => {
                    parse_number(range)?;
                    1
                }
                Some(colon) => {
                    let low = parse_number(&range[..colon])?;
                    let high = parse_number(&range[colon + 1..])?;
                    low.abs_diff(high) + 1
                }
            };
            total.checked_add(size)
        })
}

fn status_word(word: &[u8]) -> Option<Status> {
    [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
        (b"PREAUTH", Status::Preauth),
        (b"BYE", Status::Bye),
    ]
    .into_iter()
    .find(|(name, _)| word.eq_ignore_ascii_case(name))
    .map(|(_, status)| status)
}

fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&byte| byte == b' ') {
        Some(space) => (&line[..space], &line[space + 1..]),
        None => (line, &[]),
    }
}

fn parse_number(word: &[u8]) -> Option<u64> {
    if word.is_empty() || word.len() > 19 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    word.iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

fn malformed(what: &str, line: &[u8]) -> ProtocolError {
    ProtocolError::new(
        ProtocolErrorKind::Malformed,
        format!(
            "{what}: {:?}",
            String::from_utf8_lossy(&line[..line.len().min(120)])
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(input: &[u8]) -> Option<usize> {
        frame_response(input, &ResponseLimits::default()).unwrap()
    }

    /// Splits a whole transcript into responses, as the client would.
    fn responses(mut input: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while let Some(used) = frame(input) {
            out.push(&input[..used]);
            input = &input[used..];
        }
        assert!(input.is_empty(), "left over: {input:?}");
        out
    }

    #[test]
    fn sort_thread_and_capability() {
        let classified = |line: &'static [u8]| match classify(line).unwrap() {
            Response::Untagged(untagged) => untagged,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            classified(b"* SORT 3 1 2\r\n"),
            Untagged::Sort { messages: 3 }
        );
        assert_eq!(classified(b"* SORT\r\n"), Untagged::Sort { messages: 0 });
        assert_eq!(
            classified(b"* THREAD (1)(2 3 (4)(5))\r\n"),
            Untagged::Thread { messages: 5 }
        );
        assert_eq!(
            classified(b"* CAPABILITY IMAP4rev1 SORT THREAD=REFERENCES\r\n"),
            Untagged::Capability("IMAP4rev1 SORT THREAD=REFERENCES".into())
        );
        assert!(classify(b"* THREAD (1)(x)\r\n").is_err());
    }

    #[test]
    fn plain_lines() {
        assert_eq!(frame(b"* 3 EXISTS\r\n* 0 RECENT\r\n"), Some(12));
        assert_eq!(frame(b"* 3 EXIS"), None);
        assert_eq!(frame(b""), None);
    }

    #[test]
    fn envelope_with_literal_holding_crlf_and_a_fake_tagged_ok() {
        // The subject is a literal whose bytes look like the end of the
        // command; the framer must not stop there.
        let subject = b"hi\r\nb7 OK FETCH completed\r\n)";
        let mut input = Vec::new();
        input.extend_from_slice(b"* 1 FETCH (ENVELOPE (\"Mon, 1 Jan 2024 00:00:00 +0000\" {");
        input.extend_from_slice(subject.len().to_string().as_bytes());
        input.extend_from_slice(b"}\r\n");
        input.extend_from_slice(subject);
        input.extend_from_slice(
            b" ((\"A\" NIL \"a\" \"example.com\")) NIL NIL NIL NIL NIL NIL \"<id@x>\"))\r\n",
        );
        let first_len = input.len();
        input.extend_from_slice(b"b7 OK FETCH completed\r\n");

        let split = responses(&input);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].len(), first_len);
        assert_eq!(
            classify(split[0]).unwrap(),
            Response::Untagged(Untagged::Fetch {
                sequence: 1,
                has_envelope: true
            })
        );
        assert!(matches!(
            classify(split[1]).unwrap(),
            Response::Tagged {
                tag: "b7",
                status: Status::Ok,
                ..
            }
        ));
    }

    #[test]
    fn literal_arriving_in_pieces_waits_for_all_its_bytes() {
        let input = b"* 2 FETCH (BODY[] {5}\r\nab\r\nc)\r\n";
        for cut in 0..input.len() {
            assert_eq!(frame(&input[..cut]), None, "cut at {cut}");
        }
        assert_eq!(frame(input), Some(input.len()));
    }

    #[test]
    fn several_literals_and_literal_forms() {
        // A literal holding a literal announcement, a literal8 holding CRLF, and
        // an empty non-synchronizing literal.
        let input = b"* 1 FETCH (ENVELOPE (NIL {3}\r\n{1} ~{2}\r\n\r\n {0+}\r\n NIL))\r\nnext";
        assert_eq!(frame(input), Some(input.len() - 4));
    }

    #[test]
    fn a_line_ending_in_braces_without_digits_is_not_a_literal() {
        assert_eq!(frame(b"* OK look {here}\r\nx"), Some(18));
        assert_eq!(frame(b"* OK {}\r\nx"), Some(9));
    }

    #[test]
    fn huge_literal_is_refused_before_it_is_read() {
        let error = frame_response(
            b"* 1 FETCH (BODY[] {2000000000}\r\n",
            &ResponseLimits::default(),
        )
        .unwrap_err();
        assert_eq!(error.kind, ProtocolErrorKind::LiteralTooLarge);
        let input = b"* 1 FETCH (BODY[] {99999999999999999999999}\r\nx";
        // Too many digits to be a number: not a literal, so the line ends here.
        assert_eq!(
            frame_response(input, &ResponseLimits::default()).unwrap(),
            Some(input.len() - 1)
        );
    }

    #[test]
    fn bounds_hold() {
        let limits = ResponseLimits {
            line_bytes_max: 8,
            literal_bytes_max: 100,
            response_bytes_max: 20,
        };
        assert_eq!(
            frame_response(b"* 123456789", &limits).unwrap_err().kind,
            ProtocolErrorKind::LineTooLong
        );
        assert_eq!(
            frame_response(b"* {50}\r\n", &limits).unwrap_err().kind,
            ProtocolErrorKind::ResponseTooLarge
        );
    }

    #[test]
    fn tagged_and_untagged_conditions() {
        assert!(matches!(
            classify(b"b1 NO [AUTHENTICATIONFAILED] nope\r\n").unwrap(),
            Response::Tagged { tag: "b1", status: Status::No, ref text } if text == "[AUTHENTICATIONFAILED] nope"
        ));
        assert!(matches!(
            classify(b"b2 bad what\r\n").unwrap(),
            Response::Tagged {
                status: Status::Bad,
                ..
            }
        ));
        assert_eq!(
            classify(b"* OK [CAPABILITY IMAP4rev2] ready\r\n").unwrap(),
            Response::Untagged(Untagged::Condition(
                Status::Ok,
                "[CAPABILITY IMAP4rev2] ready".into()
            ))
        );
        assert_eq!(
            classify(b"* BYE shutting down\r\n").unwrap(),
            Response::Untagged(Untagged::Condition(Status::Bye, "shutting down".into()))
        );
        assert_eq!(classify(b"+ go on\r\n").unwrap(), Response::Continuation);
        assert_eq!(classify(b"+\r\n").unwrap(), Response::Continuation);
        assert!(classify(b"b3 MAYBE\r\n").is_err());
        assert!(classify(b" OK\r\n").is_err());
    }

    #[test]
    fn exists_fetch_and_others() {
        assert_eq!(
            classify(b"* 10000 EXISTS\r\n").unwrap(),
            Response::Untagged(Untagged::Exists(10000))
        );
        assert_eq!(
            classify(b"* 5 FETCH (FLAGS (\\Seen))\r\n").unwrap(),
            Response::Untagged(Untagged::Fetch {
                sequence: 5,
                has_envelope: false
            })
        );
        assert_eq!(
            classify(b"* 5 EXPUNGE\r\n").unwrap(),
            Response::Untagged(Untagged::Other)
        );
        assert_eq!(
            classify(b"* FLAGS (\\Seen)\r\n").unwrap(),
            Response::Untagged(Untagged::Other)
        );
        assert!(classify(b"* 99999999999 EXISTS\r\n").is_err());
    }

    #[test]
    fn envelope_named_only_inside_a_literal_does_not_count() {
        let input = b"* 1 FETCH (BODY[] {11}\r\nENVELOPE (x)\r\n";
        assert_eq!(
            classify(input).unwrap(),
            Response::Untagged(Untagged::Fetch {
                sequence: 1,
                has_envelope: false
            })
        );
    }

    #[test]
    fn search_results() {
        let search = |input: &[u8]| match classify(input).unwrap() {
            Response::Untagged(Untagged::Search { matches }) => matches,
            other => panic!("{other:?}"),
        };
        assert_eq!(search(b"* SEARCH\r\n"), 0);
        assert_eq!(search(b"* SEARCH 1 100 201\r\n"), 3);
        assert_eq!(search(b"* SEARCH 2 7 (MODSEQ 917162500)\r\n"), 2);
        assert_eq!(search(b"* ESEARCH (TAG \"b5\") ALL 1:3,7,10:9\r\n"), 6);
        assert_eq!(search(b"* ESEARCH (TAG \"b5\") UID COUNT 42\r\n"), 42);
        assert_eq!(search(b"* ESEARCH (TAG \"b5\")\r\n"), 0);
        assert!(classify(b"* SEARCH 1 x\r\n").is_err());
        assert!(classify(b"* ESEARCH (TAG \"b5\") ALL 1:x\r\n").is_err());
    }
}
