//! Decodes the body of an SMTP/LMTP `DATA` command: dot-unstuffing and the
//! end-of-data marker, with the size bound applied while the bytes arrive.
//!
//! No I/O: feed it whatever bytes came off the wire; it says how many it used
//! and whether the end marker was among them. Bytes after the marker belong to
//! the next command (a pipelining client may send them in the same packet), so
//! they are left for the caller.
//!
//! # Line ends and the end marker
//!
//! Inside the data, a line ends at CRLF and nowhere else (RFC 5321 §2.3.8:
//! conforming implementations "MUST NOT recognize or generate any other
//! character or character sequence as a line terminator"). A bare LF or a
//! bare CR is ordinary content, and so are NUL and 8-bit bytes: every byte a
//! client sends inside the size bound is stored exactly as sent, except the
//! one dot removed by dot-unstuffing (RFC 5321 §4.5.2) from a line that
//! starts with a dot. A line starts at the first byte after the `DATA`
//! command and after every CRLF; a dot after a bare LF or bare CR does not
//! start a line and is kept.
//!
//! The end of data is `<CRLF>.<CRLF>` only (RFC 5321 §4.1.1.4), or `.<CRLF>`
//! as the very first line, for an empty message. Nothing else ends the data:
//! not `\n.\n`, `\n.\r\n`, `\r\n.\n`, `\r.\r\n` or `\r\n.\r`.
//!
//! Why so strict: the relay in front of us speaks CRLF and passes any other
//! sequence through as message content. If we also took, say, `\n.\n` as the
//! end, a sender could end the message early for us but not for the relay,
//! and have the bytes after it (`MAIL FROM`, `RCPT TO`, `DATA`, a forged
//! message) run here as commands of a second transaction that the relay
//! never checked: SMTP smuggling. An earlier version accepted `\n.\n` after
//! a line that ended in a bare LF, to serve clients that send bare LF
//! throughout; such a client now never ends its data and times out, which
//! is the safe failure. (Command lines outside `DATA` are framed in
//! `session.rs`, which still takes a bare LF as their end; the data after
//! any `DATA` command still ends only at `<CRLF>.<CRLF>`.)
//!
//! An SMTP session (from the internet, not from a relay we trust) goes one
//! step further with [`DataDecoder::refusing_bare_line_ends`]: a message with
//! any bare LF or bare CR is read to its real end and refused as a whole, as
//! Postfix's `smtpd_forbid_bare_newline` does, so neither we nor any system
//! behind us ever sees such bytes from an SMTP client. (A message sent by
//! BDAT is checked the same way at its last chunk, in `session.rs`.)
//!
//! smtp-proto has a `DataReceiver`, but it does not see the end marker on the
//! very first line (an empty message) and has no size bound, so this module
//! does the job itself.

/// Where the decoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the first byte of a line: right after the `DATA` command, or right
    /// after a CRLF. Only here does a dot mean stuffing or the end marker.
    LineStart,
    /// The line began with a dot, which was dropped.
    AfterDot,
    /// The line began with a dot and a CR; the CR is held back until we know
    /// whether an LF follows (end marker) or not (ordinary data).
    AfterDotCr,
    /// Inside a line. `last_cr` says whether the last byte seen was a CR, which
    /// matters when a CRLF is split across two reads.
    InLine { last_cr: bool },
}

/// What a finished `DATA` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataOutcome {
    /// The un-stuffed message, within the size bound.
    Message(Vec<u8>),
    /// The message went over the size bound; its bytes were read and dropped.
    /// `bytes` is its full un-stuffed size.
    TooLarge { bytes: u64 },
    /// A bare LF or bare CR was seen and the decoder was made to refuse them;
    /// the message was read to its end and dropped.
    BareLineEnd { bytes: u64 },
}

/// The result of one [`DataDecoder::feed`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Every byte was used and the end marker has not come yet.
    NeedMoreBytes,
    /// The end marker ends at `input[consumed - 1]`; the bytes from `consumed`
    /// on are not part of the message. Call [`DataDecoder::finish`].
    Done { consumed: usize },
}

/// Streaming decoder for one `DATA` body.
#[derive(Debug)]
pub struct DataDecoder {
    state: LineState,
    /// The un-stuffed bytes so far; emptied (and its memory freed) once the
    /// message goes over `message_bytes_max`, so an oversized message costs no
    /// memory.
    body: Vec<u8>,
    /// Un-stuffed size so far, counted even after the body is dropped, for the
    /// log line.
    body_bytes: u64,
    /// The size bound (un-stuffed bytes, trace headers not included).
    message_bytes_max: u64,
    too_large: bool,
    /// Whether a bare CR or LF refuses the message (SMTP) or is content (LMTP).
    refuse_bare_line_ends: bool,
    /// The last byte of the previous `feed` was a CR.
    previous_cr: bool,
    /// A bare CR or LF was seen.
    bare_line_end: bool,
}

impl DataDecoder {
    /// A decoder for the body that follows a `DATA` command line.
    pub fn new(message_bytes_max: u64) -> Self {
        DataDecoder {
            state: LineState::LineStart,
            body: Vec::new(),
            body_bytes: 0,
            message_bytes_max,
            too_large: false,
            refuse_bare_line_ends: false,
            previous_cr: false,
            bare_line_end: false,
        }
    }

    /// A decoder that refuses a message containing a bare CR or bare LF
    /// ([`DataOutcome::BareLineEnd`]); the end marker is the same.
    pub fn refusing_bare_line_ends(message_bytes_max: u64) -> Self {
        DataDecoder {
            refuse_bare_line_ends: true,
            ..DataDecoder::new(message_bytes_max)
        }
    }

    /// Notes any bare CR or LF among the bytes a `feed` used. `previous_cr`
    /// carries a CR at the end of one read to the next.
    fn scan_line_ends(&mut self, used: &[u8]) {
        if !self.refuse_bare_line_ends {
            return;
        }
        for &byte in used {
            if (byte == b'\n') != self.previous_cr {
                // An LF without a CR before it, or a CR without an LF after.
                self.bare_line_end = true;
            }
            self.previous_cr = byte == b'\r';
        }
    }

    /// Un-stuffed bytes received so far.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Takes bytes from `input` until the end marker or the end of `input`.
    pub fn feed(&mut self, input: &[u8]) -> Feed {
        let mut position = 0;
        while let Some(&byte) = input.get(position) {
            match self.state {
                LineState::LineStart => {
                    if byte == b'.' {
                        position += 1;
                        self.state = LineState::AfterDot;
                    } else {
                        self.state = LineState::InLine { last_cr: false };
                    }
                }
                LineState::AfterDot => {
                    if byte == b'\r' {
                        position += 1;
                        self.state = LineState::AfterDotCr;
                    } else {
                        // A stuffed line: the dot is gone, the rest is data
                        // (a bare LF here included; it ends nothing).
                        self.state = LineState::InLine { last_cr: false };
                    }
                }
                LineState::AfterDotCr => {
                    if byte == b'\n' {
                        // <CRLF>.<CRLF>, or .<CRLF> as the first line.
                        self.scan_line_ends(input.get(..=position).unwrap_or_default());
                        return Feed::Done {
                            consumed: position + 1,
                        };
                    }
                    // The held-back CR was data after all.
                    self.emit(b"\r");
                    self.state = LineState::InLine { last_cr: true };
                }
                LineState::InLine { last_cr } => {
                    let rest = input.get(position..).unwrap_or_default();
                    match crlf_end(rest, last_cr) {
                        Some(end) => {
                            self.emit(rest.get(..end).unwrap_or_default());
                            position += end;
                            self.state = LineState::LineStart;
                        }
                        None => {
                            self.emit(rest);
                            position = input.len();
                            let last_cr = match rest.last() {
                                Some(&last) => last == b'\r',
                                None => last_cr,
                            };
                            self.state = LineState::InLine { last_cr };
                        }
                    }
                }
            }
        }
        self.scan_line_ends(input);
        Feed::NeedMoreBytes
    }

    /// The message, once [`feed`](Self::feed) returned [`Feed::Done`].
    pub fn finish(self) -> DataOutcome {
        if self.bare_line_end {
            DataOutcome::BareLineEnd {
                bytes: self.body_bytes,
            }
        } else if self.too_large {
            DataOutcome::TooLarge {
                bytes: self.body_bytes,
            }
        } else {
            DataOutcome::Message(self.body)
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.body_bytes = self.body_bytes.saturating_add(bytes.len() as u64);
        if self.too_large || self.bare_line_end {
            // Refused anyway: keep no memory for it.
            self.body = Vec::new();
            return;
        }
        if self.body_bytes > self.message_bytes_max {
            self.too_large = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(bytes);
        }
    }
}

/// The length of `bytes` up to and including the first CRLF, if it has one.
/// `last_cr` says the byte before `bytes` was a CR, so an LF first in `bytes`
/// completes a CRLF. A bare LF is passed over: it is content, not a line end.
fn crlf_end(bytes: &[u8], last_cr: bool) -> Option<usize> {
    let mut search = 0;
    while let Some(offset) = bytes
        .get(search..)
        .and_then(|rest| rest.iter().position(|&byte| byte == b'\n'))
    {
        let lf = search + offset;
        let cr_before = match lf.checked_sub(1) {
            Some(before) => bytes.get(before) == Some(&b'\r'),
            None => last_cr,
        };
        if cr_before {
            return Some(lf + 1);
        }
        search = lf + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece_bytes`; returns the outcome and
    /// the bytes left after the end marker (None if no end marker).
    fn decode(input: &[u8], piece_bytes: usize) -> (DataOutcome, Option<Vec<u8>>) {
        decode_pieces(input, input.chunks(piece_bytes.max(1)))
    }

    fn decode_pieces<'a>(
        input: &[u8],
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> (DataOutcome, Option<Vec<u8>>) {
        let mut decoder = DataDecoder::new(1 << 20);
        let mut offset = 0;
        for piece in pieces {
            if let Feed::Done { consumed } = decoder.feed(piece) {
                let rest = input.get(offset + consumed..).unwrap_or_default().to_vec();
                return (decoder.finish(), Some(rest));
            }
            offset += piece.len();
        }
        (decoder.finish(), None)
    }

    /// Every split of the input must give the same answer as one piece, since
    /// a network read can end anywhere: fixed piece sizes (1 is every byte on
    /// its own), and two pieces split at every position.
    fn check(input: &[u8], body: &[u8], rest: &[u8]) {
        for piece_bytes in [1, 2, 3, 5, 7, input.len().max(1)] {
            let (outcome, left) = decode(input, piece_bytes);
            assert_eq!(
                outcome,
                DataOutcome::Message(body.to_vec()),
                "piece {piece_bytes}"
            );
            assert_eq!(left.as_deref(), Some(rest), "piece {piece_bytes}");
        }
        for split in 0..=input.len() {
            let (head, tail) = input.split_at(split);
            let (outcome, left) = decode_pieces(input, [head, tail]);
            assert_eq!(
                outcome,
                DataOutcome::Message(body.to_vec()),
                "split {split}"
            );
            assert_eq!(left.as_deref(), Some(rest), "split {split}");
        }
    }

    /// No end marker in `input`, however it is split.
    fn check_no_end(input: &[u8]) {
        for piece_bytes in [1, 2, 3, 5, 7, input.len().max(1)] {
            let (_, left) = decode(input, piece_bytes);
            assert_eq!(left, None, "piece {piece_bytes}");
        }
    }

    /// What follows each smuggling separator: a whole second transaction, as
    /// an attacker would send it, then the real end and one more command.
    const SMUGGLED: &[u8] = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\n\
        DATA\r\nSubject: smuggled\r\n\r\nevil\r\n";

    /// `carrier + separator + SMUGGLED + ".\r\n" + "NOOP\r\n"` is one message
    /// holding `carrier + stored_separator + SMUGGLED`: the separator ended
    /// nothing, and only `NOOP` is left for the command reader.
    fn check_smuggling(separator: &[u8], stored_separator: &[u8]) {
        let carrier: &[u8] = b"From: carrier@example.org\r\nSubject: carrier\r\n\r\nhello";
        let input = [carrier, separator, SMUGGLED, b".\r\nNOOP\r\n"].concat();
        let body = [carrier, stored_separator, SMUGGLED].concat();
        check(&input, &body, b"NOOP\r\n");
    }

    #[test]
    fn smuggled_bare_lf_dot_bare_lf_is_content() {
        check_smuggling(b"\n.\n", b"\n.\n");
    }

    #[test]
    fn smuggled_bare_lf_dot_crlf_is_content() {
        check_smuggling(b"\n.\r\n", b"\n.\r\n");
    }

    #[test]
    fn smuggled_crlf_dot_bare_lf_is_content() {
        // The dot starts a line (it follows a CRLF), so it is stuffing and
        // goes; the bare LF after it is content.
        check_smuggling(b"\r\n.\n", b"\r\n\n");
        // A client that stuffs it gets it back byte-exact.
        check_smuggling(b"\r\n..\n", b"\r\n.\n");
    }

    #[test]
    fn smuggled_bare_cr_dot_crlf_is_content() {
        check_smuggling(b"\r.\r\n", b"\r.\r\n");
    }

    #[test]
    fn smuggled_crlf_dot_bare_cr_is_content() {
        check_smuggling(b"\r\n.\r", b"\r\n\r");
        check_smuggling(b"\r\n..\r", b"\r\n.\r");
    }

    #[test]
    fn empty_message() {
        check(b".\r\nQUIT\r\n", b"", b"QUIT\r\n");
    }

    #[test]
    fn bare_lf_dot_is_not_an_empty_message() {
        // `.\n` first: the dot is stuffing, the LF content, and the data goes on.
        check(b".\nQUIT\n.\r\n\r\n.\r\n", b"\nQUIT\n.\r\n\r\n", b"");
        check_no_end(b".\nQUIT\n.\r\n");
        check_no_end(b".\nQUIT\n");
    }

    #[test]
    fn crlf_message_with_stuffing() {
        check(
            b"a\r\n..b\r\n.c\r\n..\r\n\r\n.\r\nRSET\r\n",
            b"a\r\n.b\r\nc\r\n.\r\n\r\n",
            b"RSET\r\n",
        );
    }

    #[test]
    fn bare_lf_lines_never_end_the_data() {
        check_no_end(b"a\nb\n.\n");
        check_no_end(b"a\nb\n.\nMAIL FROM:<x@y.org>\n");
        // The bytes are all kept once a real end marker comes.
        check(b"a\nb\n.\n\r\n.\r\n", b"a\nb\n.\n\r\n", b"");
    }

    #[test]
    fn dots_after_bare_lf_or_bare_cr_are_kept() {
        // Neither a bare LF nor a bare CR starts a line, so no unstuffing.
        check(b"a\n..b\r..c\n.\r\n.\r\n", b"a\n..b\r..c\n.\r\n", b"");
    }

    #[test]
    fn first_byte_bare_lf_does_not_start_a_line() {
        check(b"\n.\r\n.\r\n", b"\n.\r\n", b"");
        check(b"\r.\r\n.\r\n", b"\r.\r\n", b"");
    }

    #[test]
    fn cr_before_crlf_is_content() {
        check(b"a\r\r\n.\r\n", b"a\r\r\n", b"");
        check(b"a\r\r\n.\r\r\n.\r\n", b"a\r\r\n\r\r\n", b"");
    }

    #[test]
    fn dot_cr_without_lf_keeps_cr() {
        check(b".\rx\r\n.\r\n", b"\rx\r\n", b"");
        check(b".\r\rx\r\n.\r\n", b"\r\rx\r\n", b"");
        check(b".\r\r\n.\r\n", b"\r\r\n", b"");
    }

    #[test]
    fn nul_and_high_bytes_kept() {
        check(b"\0\xff\xfe\r\n\0.\r\n.\r\n", b"\0\xff\xfe\r\n\0.\r\n", b"");
    }

    #[test]
    fn no_marker_needs_more() {
        let (_, rest) = decode(b"a\r\n.\r", 1);
        assert_eq!(rest, None);
        check_no_end(b"a\r\n.\r");
        check_no_end(b"a\r\n.\n\r\n.\r");
    }

    #[test]
    fn too_large_is_read_to_the_end() {
        let mut decoder = DataDecoder::new(4);
        assert_eq!(decoder.feed(b"12345\r\n"), Feed::NeedMoreBytes);
        assert_eq!(decoder.feed(b".\r\nNOOP\r\n"), Feed::Done { consumed: 3 });
        assert_eq!(decoder.finish(), DataOutcome::TooLarge { bytes: 7 });
    }

    #[test]
    fn too_large_is_not_ended_by_a_bare_lf_marker() {
        let mut decoder = DataDecoder::new(4);
        assert_eq!(decoder.feed(b"12345\n.\nNOOP\n"), Feed::NeedMoreBytes);
        assert_eq!(
            decoder.feed(b"\r\n.\r\nNOOP\r\n"),
            Feed::Done { consumed: 5 }
        );
        assert_eq!(decoder.finish(), DataOutcome::TooLarge { bytes: 15 });
    }

    #[test]
    fn exactly_at_the_bound_is_kept() {
        let mut decoder = DataDecoder::new(4);
        assert_eq!(decoder.feed(b"ab\r\n.\r\n"), Feed::Done { consumed: 7 });
        assert_eq!(decoder.finish(), DataOutcome::Message(b"ab\r\n".to_vec()));
    }

    /// Dot-stuffing as RFC 5321 §4.5.2 asks of a client: one more dot on every
    /// line (after CRLF, or first) that starts with a dot.
    fn stuff(body: &[u8]) -> Vec<u8> {
        let mut stuffed = Vec::with_capacity(body.len() + 8);
        let mut line_start = true;
        for (index, &byte) in body.iter().enumerate() {
            if line_start && byte == b'.' {
                stuffed.push(b'.');
            }
            stuffed.push(byte);
            line_start = byte == b'\n' && index > 0 && body.get(index - 1) == Some(&b'\r');
        }
        stuffed
    }

    /// Any body made of the bytes that matter here, stuffed and ended with
    /// `.\r\n`, comes back byte-exact, the first end marker being the one
    /// the client meant.
    #[test]
    fn stuffed_bodies_round_trip() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet: [&[u8]; 6] = [b"\r", b"\n", b".", b"x", b"\r\n", b"\0"];
        for _ in 0..2000 {
            let mut body = Vec::new();
            for _ in 0..next() % 16 {
                let index = usize::try_from(next() % alphabet.len() as u64).unwrap_or(0);
                body.extend_from_slice(alphabet.get(index).copied().unwrap_or_default());
            }
            if !body.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
            let input = [stuff(&body).as_slice(), b".\r\nNOOP\r\n"].concat();
            check(&input, &body, b"NOOP\r\n");
        }
    }

    /// In refusing mode, every split of `input` ends where LMTP's decoder
    /// would, with the message refused (or kept, when `bare` is false).
    fn check_strict(input: &[u8], bare: bool, rest: &[u8]) {
        for piece_bytes in [1, 2, 3, 7, input.len().max(1)] {
            let mut decoder = DataDecoder::refusing_bare_line_ends(1 << 20);
            let mut offset = 0;
            let mut left = None;
            for piece in input.chunks(piece_bytes) {
                if let Feed::Done { consumed } = decoder.feed(piece) {
                    left = Some(input.get(offset + consumed..).unwrap_or_default().to_vec());
                    break;
                }
                offset += piece.len();
            }
            assert_eq!(left.as_deref(), Some(rest), "piece {piece_bytes}");
            let outcome = decoder.finish();
            assert_eq!(
                matches!(outcome, DataOutcome::BareLineEnd { .. }),
                bare,
                "piece {piece_bytes}: {outcome:?}"
            );
        }
    }

    #[test]
    fn strict_mode_refuses_every_smuggling_separator() {
        let smuggle = |separator: &[u8]| {
            [
                b"Subject: a\r\n\r\nhello".as_slice(),
                separator,
                SMUGGLED,
                b".\r\nNOOP\r\n",
            ]
            .concat()
        };
        for separator in [
            b"\n.\n".as_slice(),
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r.\r",
        ] {
            check_strict(&smuggle(separator), true, b"NOOP\r\n");
        }
    }

    #[test]
    fn strict_mode_keeps_clean_messages() {
        check_strict(b"a\r\n..b\r\n\r\nc\r\n.\r\nQUIT\r\n", false, b"QUIT\r\n");
        check_strict(b".\r\n", false, b"");
        check_strict(b"a\rb\r\n.\r\n", true, b"");
        check_strict(b"\na\r\n.\r\n", true, b"");
    }
}
