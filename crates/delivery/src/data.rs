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
//! Lines end at LF, with or without a CR before it, and every byte a client
//! sends inside the size bound is kept exactly as sent: bare LFs, bare CRs and
//! NUL bytes included. A leading dot is removed from every line (RFC 5321
//! §4.5.2). The end of data is a line holding only a dot, in the same line-end
//! style as the line before it: `\r\n.\r\n` or `\n.\n`. The mixed forms
//! (`\r\n.\n`, `\n.\r\n`) are not end markers; they are un-stuffed like any
//! other dot line. That keeps the one ambiguity SMTP smuggling relies on out of
//! the end marker while still accepting LMTP clients that speak bare LF
//! throughout. The first data line counts as following the `DATA` command
//! line, so the style of that line decides for an empty message.
//!
//! smtp-proto has a `DataReceiver`, but it knows only `\r\n.\r\n`, does not
//! see the end marker on the very first line (an empty message), and has no
//! size bound, so this module does the job itself.

/// Where the decoder is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineState {
    /// At the first byte of a line. `previous_crlf` says whether the line
    /// before ended in CRLF (true) or a bare LF (false).
    LineStart { previous_crlf: bool },
    /// The line began with a dot, which was dropped.
    AfterDot { previous_crlf: bool },
    /// The line began with a dot and a CR; the CR is held back until we know
    /// whether an LF follows (end marker) or not (ordinary data).
    AfterDotCr { previous_crlf: bool },
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
}

impl DataDecoder {
    /// A decoder for a body that follows a `DATA` line which ended in CRLF
    /// (`command_crlf` true) or a bare LF.
    pub fn new(message_bytes_max: u64, command_crlf: bool) -> Self {
        DataDecoder {
            state: LineState::LineStart {
                previous_crlf: command_crlf,
            },
            body: Vec::new(),
            body_bytes: 0,
            message_bytes_max,
            too_large: false,
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
                LineState::LineStart { previous_crlf } => {
                    if byte == b'.' {
                        position += 1;
                        self.state = LineState::AfterDot { previous_crlf };
                    } else {
                        self.state = LineState::InLine { last_cr: false };
                    }
                }
                LineState::AfterDot { previous_crlf } => match byte {
                    b'\n' => {
                        position += 1;
                        if !previous_crlf {
                            return Feed::Done { consumed: position };
                        }
                        self.emit(b"\n");
                        self.state = LineState::LineStart {
                            previous_crlf: false,
                        };
                    }
                    b'\r' => {
                        position += 1;
                        self.state = LineState::AfterDotCr { previous_crlf };
                    }
                    // A stuffed line: the dot is gone, the rest is data.
                    _ => self.state = LineState::InLine { last_cr: false },
                },
                LineState::AfterDotCr { previous_crlf } => {
                    if byte == b'\n' {
                        position += 1;
                        if previous_crlf {
                            return Feed::Done { consumed: position };
                        }
                        self.emit(b"\r\n");
                        self.state = LineState::LineStart {
                            previous_crlf: true,
                        };
                    } else {
                        // The held-back CR was data after all.
                        self.emit(b"\r");
                        self.state = LineState::InLine { last_cr: true };
                    }
                }
                LineState::InLine { last_cr } => {
                    let rest = input.get(position..).unwrap_or_default();
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(lf) => {
                            let line = rest.get(..=lf).unwrap_or_default();
                            let previous_crlf = match lf.checked_sub(1) {
                                Some(before) => rest.get(before) == Some(&b'\r'),
                                None => last_cr,
                            };
                            self.emit(line);
                            position += lf + 1;
                            self.state = LineState::LineStart { previous_crlf };
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
        Feed::NeedMoreBytes
    }

    /// The message, once [`feed`](Self::feed) returned [`Feed::Done`].
    pub fn finish(self) -> DataOutcome {
        if self.too_large {
            DataOutcome::TooLarge {
                bytes: self.body_bytes,
            }
        } else {
            DataOutcome::Message(self.body)
        }
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.body_bytes = self.body_bytes.saturating_add(bytes.len() as u64);
        if self.too_large {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `piece_bytes`; returns the outcome and
    /// the bytes left after the end marker (None if no end marker).
    fn decode(
        input: &[u8],
        piece_bytes: usize,
        command_crlf: bool,
    ) -> (DataOutcome, Option<Vec<u8>>) {
        let mut decoder = DataDecoder::new(1 << 20, command_crlf);
        let mut offset = 0;
        for piece in input.chunks(piece_bytes.max(1)) {
            if let Feed::Done { consumed } = decoder.feed(piece) {
                let rest = input.get(offset + consumed..).unwrap_or_default().to_vec();
                return (decoder.finish(), Some(rest));
            }
            offset += piece.len();
        }
        (decoder.finish(), None)
    }

    /// Every split of the input must give the same answer as one piece, since
    /// a network read can end anywhere.
    fn check(input: &[u8], command_crlf: bool, body: &[u8], rest: &[u8]) {
        for piece_bytes in [1, 2, 3, 5, 7, input.len().max(1)] {
            let (outcome, left) = decode(input, piece_bytes, command_crlf);
            assert_eq!(
                outcome,
                DataOutcome::Message(body.to_vec()),
                "piece {piece_bytes}"
            );
            assert_eq!(left.as_deref(), Some(rest), "piece {piece_bytes}");
        }
    }

    #[test]
    fn empty_message() {
        check(b".\r\nQUIT\r\n", true, b"", b"QUIT\r\n");
        check(b".\nQUIT\n", false, b"", b"QUIT\n");
    }

    #[test]
    fn crlf_message_with_stuffing() {
        check(
            b"a\r\n..b\r\n.c\r\n..\r\n\r\n.\r\nRSET\r\n",
            true,
            b"a\r\n.b\r\nc\r\n.\r\n\r\n",
            b"RSET\r\n",
        );
    }

    #[test]
    fn bare_lf_lines_and_marker() {
        check(b"a\nb\n.\n", true, b"a\nb\n", b"");
    }

    #[test]
    fn mixed_markers_are_data() {
        // `\r\n.\n` and `\n.\r\n` are un-stuffed, not taken as the end.
        check(
            b"a\r\n.\nb\n.\r\nc\r\n.\r\n",
            true,
            b"a\r\n\nb\n\r\nc\r\n",
            b"",
        );
    }

    #[test]
    fn dot_cr_without_lf_keeps_cr() {
        check(b".\rx\r\n.\r\n", true, b"\rx\r\n", b"");
        check(b".\r\rx\r\n.\r\n", true, b"\r\rx\r\n", b"");
    }

    #[test]
    fn nul_and_high_bytes_kept() {
        check(
            b"\0\xff\xfe\r\n\0.\r\n.\r\n",
            true,
            b"\0\xff\xfe\r\n\0.\r\n",
            b"",
        );
    }

    #[test]
    fn no_marker_needs_more() {
        let (_, rest) = decode(b"a\r\n.\r", 1, true);
        assert_eq!(rest, None);
    }

    #[test]
    fn too_large_is_read_to_the_end() {
        let mut decoder = DataDecoder::new(4, true);
        assert_eq!(decoder.feed(b"12345\r\n"), Feed::NeedMoreBytes);
        assert_eq!(decoder.feed(b".\r\nNOOP\r\n"), Feed::Done { consumed: 3 });
        assert_eq!(decoder.finish(), DataOutcome::TooLarge { bytes: 7 });
    }

    #[test]
    fn exactly_at_the_bound_is_kept() {
        let mut decoder = DataDecoder::new(4, true);
        assert_eq!(decoder.feed(b"ab\r\n.\r\n"), Feed::Done { consumed: 7 });
        assert_eq!(decoder.finish(), DataOutcome::Message(b"ab\r\n".to_vec()));
    }
}
