//! LMTP and SMTP replies, RFC 5321 §4.2: one or more lines that share a
//! three-digit code, `250-more follows` on every line but the last and
//! `250 last line` on the last. No I/O; an unfinished reply is `Ok(None)`.

use crate::error::{ProtocolError, ProtocolErrorKind};

/// Bounds on one reply, so a server that never ends a line or a reply
/// cannot grow our buffer without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line, line ending included. RFC 5321 allows 512; we accept
    /// more because extensions and error texts run long in practice.
    pub line_bytes_max: usize,
    /// Most lines in one multi-line reply (an LHLO reply has one per
    /// extension).
    pub lines_max: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        ReplyLimits {
            line_bytes_max: 4096,
            lines_max: 256,
        }
    }
}

/// One whole reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code every line carries.
    pub code: u16,
    /// The text of each line after the code and its separator, line ending
    /// removed, non-UTF-8 bytes replaced.
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx: the command succeeded.
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: go on (354 after DATA).
    pub fn is_positive_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: a temporary failure; the sender may try again later.
    pub fn is_transient_negative(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: a permanent failure.
    pub fn is_permanent_negative(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// 421: the server is closing the connection (RFC 5321 §3.8).
    pub fn is_closing(&self) -> bool {
        self.code == 421
    }

    /// Whether the reply's text holds `word` as a whole word, ignoring case:
    /// `run` is in "bulk mail run (run 3)" but not in "running".
    pub fn mentions(&self, word: &str) -> bool {
        !word.is_empty()
            && self.lines.iter().any(|line| {
                line.split(|c: char| !c.is_alphanumeric())
                    .any(|token| token.eq_ignore_ascii_case(word))
            })
    }

    /// Whether a line of an LHLO/EHLO reply names `keyword` as its first word,
    /// ignoring case (`PIPELINING`, `SIZE 1000`).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().any(|line| {
            line.split_ascii_whitespace()
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(keyword))
        })
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} {}", self.code, self.lines.join(" / "))
    }
}

/// Splits the first whole reply off `input`: the reply and how many bytes it
/// took, or `None` when its last line has not arrived yet.
///
/// # Errors
/// A line without a three-digit code, a separator other than space or
/// hyphen, a code that changes between lines, or a bound passed.
pub fn parse_reply(
    input: &[u8],
    limits: &ReplyLimits,
) -> Result<Option<(Reply, usize)>, ProtocolError> {
    let mut position = 0;
    let mut code = None;
    let mut lines = Vec::new();
    // Each pass consumes one line, and there are at most `lines_max` of them.
    for _ in 0..limits.lines_max {
        let rest = &input[position..];
        let Some(newline) = rest.iter().position(|&byte| byte == b'\n') else {
            if rest.len() >= limits.line_bytes_max {
                return Err(ProtocolError::new(
                    ProtocolErrorKind::LineTooLong,
                    format!("reply line over {} bytes", limits.line_bytes_max),
                ));
            }
            return Ok(None);
        };
        if newline + 1 > limits.line_bytes_max {
            return Err(ProtocolError::new(
                ProtocolErrorKind::LineTooLong,
                format!("reply line over {} bytes", limits.line_bytes_max),
            ));
        }
        let line = rest[..newline]
            .strip_suffix(b"\r")
            .unwrap_or(&rest[..newline]);
        position += newline + 1;

        let line_code = reply_code(line)?;
        if *code.get_or_insert(line_code) != line_code {
            return Err(ProtocolError::new(
                ProtocolErrorKind::Malformed,
                format!(
                    "reply code changed from {} to {line_code} within one reply",
                    code.unwrap_or(line_code)
                ),
            ));
        }
        let (last, text) = match line.get(3) {
            None => (true, &[][..]),
            Some(b' ') => (true, &line[4..]),
            Some(b'-') => (false, &line[4..]),
            Some(other) => {
                return Err(ProtocolError::new(
                    ProtocolErrorKind::Malformed,
                    format!("byte {other:#04x} after a reply code"),
                ));
            }
        };
        lines.push(String::from_utf8_lossy(text).into_owned());
        if last {
            return Ok(Some((
                Reply {
                    code: line_code,
                    lines,
                },
                position,
            )));
        }
    }
    Err(ProtocolError::new(
        ProtocolErrorKind::ResponseTooLarge,
        format!("reply of more than {} lines", limits.lines_max),
    ))
}

fn reply_code(line: &[u8]) -> Result<u16, ProtocolError> {
    let malformed = || {
        ProtocolError::new(
            ProtocolErrorKind::Malformed,
            format!(
                "reply line without a code: {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            ),
        )
    };
    let digits = line.get(..3).ok_or_else(malformed)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return Err(malformed());
    }
    Ok(digits
        .iter()
        .fold(0u16, |value, digit| value * 10 + u16::from(digit - b'0')))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(input: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
        parse_reply(input, &ReplyLimits::default())
    }

    #[test]
    fn single_line() {
        let (reply, used) = check(b"250 2.0.0 ok\r\nrest").unwrap().unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["2.0.0 ok"]);
        assert_eq!(used, 14);
        assert!(reply.is_positive_completion());
    }

    #[test]
    fn multi_line_lhlo_reply_ends_at_the_space_line() {
        let input = b"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 67108864\r\n250 ENHANCEDSTATUSCODES\r\n220 next";
        let (reply, used) = check(input).unwrap().unwrap();
        assert_eq!(reply.lines.len(), 4);
        assert_eq!(used, input.len() - "220 next".len());
        assert!(reply.has_keyword("pipelining"));
        assert!(reply.has_keyword("SIZE"));
        assert!(!reply.has_keyword("CHUNKING"));
    }

    #[test]
    fn multi_line_ehlo_reply_of_an_smtp_server() {
        let input = b"250-mx.bench.test Hello legit1.test [127.0.1.1]\r\n250-SIZE 67108864\r\n\
                      250-8BITMIME\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 CHUNKING\r\n";
        let (reply, used) = check(input).unwrap().unwrap();
        assert_eq!(used, input.len());
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.lines[0],
            "mx.bench.test Hello legit1.test [127.0.1.1]"
        );
        assert_eq!(reply.lines.len(), 6);
        assert!(reply.has_keyword("chunking"));
        assert!(!reply.is_transient_negative());
    }

    #[test]
    fn temporary_failures_with_text_and_the_words_they_mention() {
        let (reply, _) = check(
            b"451 4.7.1 message looks like part of a bulk mail run (run 3); try again later\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(reply.code, 451);
        assert!(reply.is_transient_negative());
        assert!(!reply.is_permanent_negative() && !reply.is_closing());
        assert!(reply.mentions("run") && reply.mentions("RUN"));
        assert!(!reply.mentions("bulk mail") && !reply.mentions(""));

        let (reply, used) = check(b"451-4.7.1 too many messages\r\n451 4.7.1 slow down\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((reply.code, used), (451, 50));
        assert_eq!(reply.lines, ["4.7.1 too many messages", "4.7.1 slow down"]);
        assert!(!reply.mentions("run"));

        let (reply, _) = check(b"421 4.3.2 running out of connections\r\n")
            .unwrap()
            .unwrap();
        assert!(reply.is_closing() && reply.is_transient_negative());
        assert!(
            !reply.mentions("run"),
            "a word inside another is not a mention"
        );
        let (reply, _) = check(b"550 5.7.1 message refused as spam\r\n")
            .unwrap()
            .unwrap();
        assert!(reply.is_permanent_negative());
    }

    #[test]
    fn unfinished_reply_needs_more_bytes() {
        assert_eq!(check(b"").unwrap(), None);
        assert_eq!(check(b"25").unwrap(), None);
        assert_eq!(check(b"250-first\r\n250 sec").unwrap(), None);
        // Each byte of a pipelined group arriving one at a time.
        let whole = b"250 2.1.0 ok\r\n";
        for cut in 0..whole.len() {
            assert_eq!(check(&whole[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn pipelined_replies_come_out_one_at_a_time() {
        let input = b"250 2.1.0 sender ok\r\n550 5.1.1 unknown\r\n354 go ahead\r\n";
        let mut rest = &input[..];
        let mut codes = Vec::new();
        while let Some((reply, used)) = check(rest).unwrap() {
            codes.push(reply.code);
            rest = &rest[used..];
        }
        assert_eq!(codes, [250, 550, 354]);
        assert!(rest.is_empty());
    }

    #[test]
    fn bare_code_and_bare_newline_are_accepted() {
        let (reply, used) = check(b"221\n").unwrap().unwrap();
        assert_eq!((reply.code, used), (221, 4));
        assert_eq!(reply.lines, [""]);
    }

    #[test]
    fn malformed_replies_are_errors() {
        for input in [
            &b"ok\r\n"[..],
            b"25x ok\r\n",
            b"150 below 200\r\n",
            b"250_ok\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            let error = check(input).unwrap_err();
            assert_eq!(error.kind, ProtocolErrorKind::Malformed, "{input:?}");
        }
    }

    #[test]
    fn bounds_hold() {
        let limits = ReplyLimits {
            line_bytes_max: 16,
            lines_max: 2,
        };
        let long = [b'2'; 17];
        assert_eq!(
            parse_reply(&long, &limits).unwrap_err().kind,
            ProtocolErrorKind::LineTooLong
        );
        assert_eq!(
            parse_reply(b"250 this line is too long\r\n", &limits)
                .unwrap_err()
                .kind,
            ProtocolErrorKind::LineTooLong
        );
        assert_eq!(
            parse_reply(b"250-a\r\n250-b\r\n250 c\r\n", &limits)
                .unwrap_err()
                .kind,
            ProtocolErrorKind::ResponseTooLarge
        );
    }
}
