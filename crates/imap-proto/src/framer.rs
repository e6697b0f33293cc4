//! Finds where one IMAP command ends in a growing byte buffer.
//!
//! A command is one or more lines; a line that ends in a literal announcement
//! (`{n}`, `{n+}`, `~{n}`, `~{n+}`) is followed by exactly `n` raw bytes and then
//! the rest of the command. The framer only looks at line ends and literal
//! announcements, never at the grammar, so it can bound sizes before anything is
//! buffered: a synchronizing literal over the limit is refused while the client
//! is still waiting for our `+` continuation, so its bytes never arrive.
//!
//! The framer keeps its scan position between calls, so feeding it a buffer that
//! grows a few bytes at a time costs time linear in the command, not quadratic.
//!
//! How a session drives it (`buf` holds unread client bytes, starting at the
//! current command):
//! ```
//! use postern_imap_proto::framer::{Frame, Framer, Limits};
//! use postern_imap_proto::parse::parse_command;
//!
//! let mut framer = Framer::new(Limits::default());
//! let mut buf: Vec<u8> = b"a1 LOGIN {3}\r\n".to_vec();
//! let mut out: Vec<u8> = Vec::new();
//! assert_eq!(framer.next(&buf), Frame::NeedContinuation { size: 3 });
//! out.extend_from_slice(b"+ Ready for literal data\r\n");
//! buf.extend_from_slice(b"bob pw\r\n"); // more bytes arrived
//! match framer.next(&buf) {
//!     Frame::Complete { len } => {
//!         let command = parse_command(&buf[..len]);
//!         assert!(command.is_ok());
//!         buf.drain(..len);
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

/// Size bounds for one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bound on the non-literal bytes of one command (all its lines together,
    /// CRLFs included). Lines are what the parser walks, so this also bounds
    /// parse work.
    pub line_bytes_max: usize,
    /// Bound on the literal bytes of one command (all its literals together),
    /// so a MULTIAPPEND cannot dodge the bound by splitting a message.
    pub literal_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            line_bytes_max: 64 * 1024,
            literal_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// Why a command was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    LineTooLong,
    LiteralTooBig,
}

/// What [`Framer::next`] found in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Need more bytes; call again when more arrived (the buffer only grows,
    /// starting at the same command).
    Incomplete,
    /// The client announced a synchronizing literal `{size}` and now waits: the
    /// caller sends "+ Ready for literal data\r\n", keeps reading and calls
    /// `next()` again. Returned exactly once per literal.
    NeedContinuation { size: u64 },
    /// One complete command (all lines and literals) occupies `buf[..len]`, CRLF
    /// included. The framer has reset itself for the next command.
    Complete { len: usize },
    /// Refuse without reading further. `discard` is how many bytes of the buffer
    /// to drop (through the end of the offending line when known); `tag` is the
    /// command tag when it could be read; `close` means the connection cannot be
    /// resynchronised (a non-synchronizing literal over the limit whose bytes are
    /// already on their way, or an over-long line with no end in sight) and the
    /// caller must send BYE and close. The framer has reset itself.
    Reject {
        tag: Option<String>,
        kind: RejectKind,
        discard: usize,
        close: bool,
    },
}

/// Incremental command framer; see the module documentation.
#[derive(Debug, Clone)]
pub struct Framer {
    /// Bounds checked before bytes are accepted.
    limits: Limits,
    /// Start of the line being scanned (after the previous line or literal).
    line_start: usize,
    /// How far the current line has been searched for LF, so a growing buffer
    /// is never searched twice.
    scan_pos: usize,
    /// End (exclusive) of the literal being received, when inside one.
    literal_end: Option<usize>,
    /// Non-literal bytes of this command in lines already finished.
    line_bytes_total: usize,
    /// Literal bytes announced so far in this command.
    literal_bytes_total: u64,
}

/// A literal announcement found at the end of a line.
struct Announcement {
    size: Option<u64>, // None: the digits overflowed u64, certainly too big
    synchronizing: bool,
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            limits,
            line_start: 0,
            scan_pos: 0,
            literal_end: None,
            line_bytes_total: 0,
            literal_bytes_total: 0,
        }
    }

    /// Replaces the bounds, e.g. when a session logs in and may send larger
    /// literals than before. Takes effect for the bytes scanned from now on;
    /// call it between commands (right after [`Frame::Complete`] or
    /// [`Frame::Reject`]), so one command is never judged by two sets of bounds.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Forget progress; the next call starts a new command at `buf[0]`.
    pub fn reset(&mut self) {
        *self = Framer::new(self.limits);
    }

    /// Look at `buf` (which starts at the first byte of the current command)
    /// and report whether a whole command is there. Never panics: a buffer
    /// that shrank between calls is treated as the start of a new command.
    pub fn next(&mut self, buf: &[u8]) -> Frame {
        if buf.len() < self.scan_pos || buf.len() < self.line_start {
            // The caller broke the "buffer only grows" rule; start over rather
            // than index out of range.
            self.reset();
        }
        // Each iteration consumes one literal or one line, so the loop is
        // bounded by the buffer length.
        loop {
            if let Some(end) = self.literal_end {
                if buf.len() < end {
                    return Frame::Incomplete;
                }
                self.literal_end = None;
                self.line_start = end;
                self.scan_pos = end;
            }
            let unscanned = buf.get(self.scan_pos..).unwrap_or_default();
            let Some(offset) = unscanned.iter().position(|&b| b == b'\n') else {
                self.scan_pos = buf.len();
                let line_len = buf.len() - self.line_start;
                if self.line_bytes_total.saturating_add(line_len) > self.limits.line_bytes_max {
                    // No line end yet, so there is no point where the stream
                    // could be picked up again.
                    let tag = read_tag(buf);
                    self.reset();
                    return Frame::Reject {
                        tag,
                        kind: RejectKind::LineTooLong,
                        discard: buf.len(),
                        close: true,
                    };
                }
                return Frame::Incomplete;
            };
            let lf = self.scan_pos + offset;
            let line_end = lf + 1;
            let line = buf.get(self.line_start..lf).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let announcement = literal_announcement(line);
            self.line_bytes_total = self
                .line_bytes_total
                .saturating_add(line_end - self.line_start);
            if self.line_bytes_total > self.limits.line_bytes_max {
                // The line is over the bound but ended; if it announced a
                // non-synchronizing literal, those bytes follow and would be
                // read as commands, so the stream is lost.
                let close = announcement.as_ref().is_some_and(|a| !a.synchronizing);
                let tag = read_tag(buf);
                self.reset();
                return Frame::Reject {
                    tag,
                    kind: RejectKind::LineTooLong,
                    discard: line_end,
                    close,
                };
            }
            let Some(announcement) = announcement else {
                self.reset();
                return Frame::Complete { len: line_end };
            };
            let total = announcement
                .size
                .and_then(|size| self.literal_bytes_total.checked_add(size));
            let within = total.is_some_and(|t| t <= self.limits.literal_bytes_max);
            let end = announcement
                .size
                .and_then(|size| usize::try_from(size).ok())
                .and_then(|size| line_end.checked_add(size));
            let (Some(size), Some(total), Some(end), true) =
                (announcement.size, total, end, within)
            else {
                let tag = read_tag(buf);
                self.reset();
                return Frame::Reject {
                    tag,
                    kind: RejectKind::LiteralTooBig,
                    discard: line_end,
                    close: !announcement.synchronizing,
                };
            };
            self.literal_bytes_total = total;
            self.literal_end = Some(end);
            self.line_start = line_end;
            self.scan_pos = line_end;
            if announcement.synchronizing {
                // Next call resumes inside the literal, so this is returned
                // once per literal.
                return Frame::NeedContinuation { size };
            }
        }
    }
}

/// `{123}`, `{123+}`, `~{123}` at the very end of a line (CR already removed).
fn literal_announcement(line: &[u8]) -> Option<Announcement> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let body = inner.get(open + 1..)?;
    let (digits, synchronizing) = match body.strip_suffix(b"+") {
        Some(digits) => (digits, false),
        None => (body, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(Announcement {
        size,
        synchronizing,
    })
}

/// The tag of the command at the start of `buf`, if it is a plausible one.
fn read_tag(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == b' ')?;
    let tag = buf.get(..end)?;
    // Bound and character set as the grammar's `tag`, so an echo of it in the
    // response cannot inject anything.
    let valid =
        !tag.is_empty() && tag.len() <= 1024 && tag.iter().all(|&b| crate::parse::is_tag_char(b));
    if valid {
        String::from_utf8(tag.to_vec()).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Framer {
        Framer::new(Limits {
            line_bytes_max: 100,
            literal_bytes_max: 10,
        })
    }

    #[test]
    fn single_line() {
        let mut f = Framer::new(Limits::default());
        assert_eq!(f.next(b"a NOOP"), Frame::Incomplete);
        assert_eq!(f.next(b"a NOOP\r"), Frame::Incomplete);
        assert_eq!(f.next(b"a NOOP\r\nb"), Frame::Complete { len: 8 });
        assert_eq!(f.next(b"b NOOP\n"), Frame::Complete { len: 7 });
    }

    #[test]
    fn synchronizing_literal_asks_once() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"a LOGIN {3}\r\nbob {2}\r\npw\r\n";
        assert_eq!(f.next(&cmd[..13]), Frame::NeedContinuation { size: 3 });
        assert_eq!(f.next(&cmd[..13]), Frame::Incomplete);
        assert_eq!(f.next(&cmd[..15]), Frame::Incomplete);
        assert_eq!(f.next(&cmd[..22]), Frame::NeedContinuation { size: 2 });
        assert_eq!(f.next(&cmd[..24]), Frame::Incomplete);
        assert_eq!(f.next(cmd), Frame::Complete { len: cmd.len() });
    }

    #[test]
    fn non_synchronizing_literal_flows() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"a LOGIN {3+}\r\nbob ~{2+}\r\n\r\n\r\n";
        assert_eq!(f.next(cmd), Frame::Complete { len: cmd.len() });
    }

    #[test]
    fn literal_may_contain_newlines_and_braces() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"a X {5}\r\n{1}\r\n\r\n";
        assert_eq!(f.next(cmd), Frame::NeedContinuation { size: 5 });
        assert_eq!(f.next(cmd), Frame::Complete { len: cmd.len() });
    }

    #[test]
    fn huge_sync_literal_refused_before_data() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"a1 APPEND INBOX {2000000000}\r\n";
        assert_eq!(
            f.next(cmd),
            Frame::Reject {
                tag: Some("a1".into()),
                kind: RejectKind::LiteralTooBig,
                discard: cmd.len(),
                close: false
            }
        );
    }

    #[test]
    fn huge_non_sync_literal_closes() {
        let mut f = small();
        let cmd = b"a1 APPEND INBOX {11+}\r\n";
        assert!(matches!(
            f.next(cmd),
            Frame::Reject {
                kind: RejectKind::LiteralTooBig,
                close: true,
                ..
            }
        ));
    }

    #[test]
    fn literal_digits_overflow() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"t X {99999999999999999999999}\r\n";
        assert!(matches!(
            f.next(cmd),
            Frame::Reject {
                kind: RejectKind::LiteralTooBig,
                close: false,
                ..
            }
        ));
    }

    #[test]
    fn literals_summed_over_command() {
        let mut f = small();
        let cmd = b"a X {6+}\r\n123456 {5+}\r\n";
        assert!(matches!(
            f.next(cmd),
            Frame::Reject {
                kind: RejectKind::LiteralTooBig,
                ..
            }
        ));
    }

    #[test]
    fn long_line_without_end_closes() {
        let mut f = small();
        let mut cmd = b"tag SEARCH ".to_vec();
        cmd.extend(std::iter::repeat_n(b'x', 200));
        assert_eq!(
            f.next(&cmd),
            Frame::Reject {
                tag: Some("tag".into()),
                kind: RejectKind::LineTooLong,
                discard: cmd.len(),
                close: true
            }
        );
    }

    #[test]
    fn long_line_with_end_is_skipped() {
        let mut f = small();
        let mut cmd = vec![b'x'; 200];
        cmd.extend_from_slice(b"\r\n");
        // Whole line arrives at once: the line end is known, so only that line goes.
        assert_eq!(
            f.next(&cmd),
            Frame::Reject {
                tag: None,
                kind: RejectKind::LineTooLong,
                discard: cmd.len(),
                close: false
            }
        );
    }

    #[test]
    fn new_limits_apply_to_the_next_command() {
        let mut f = small();
        let cmd = b"a LOGIN {20}\r\n";
        assert!(matches!(
            f.next(cmd),
            Frame::Reject {
                kind: RejectKind::LiteralTooBig,
                ..
            }
        ));
        f.set_limits(Limits::default());
        assert_eq!(f.limits(), Limits::default());
        assert_eq!(f.next(cmd), Frame::NeedContinuation { size: 20 });
    }

    #[test]
    fn shrinking_buffer_does_not_panic() {
        let mut f = Framer::new(Limits::default());
        assert_eq!(
            f.next(b"a LOGIN {3}\r\n"),
            Frame::NeedContinuation { size: 3 }
        );
        assert_eq!(f.next(b"a"), Frame::Incomplete);
    }

    #[test]
    fn growing_byte_by_byte() {
        let mut f = Framer::new(Limits::default());
        let cmd = b"a APPEND x {4+}\r\nabcd\r\n";
        for n in 0..cmd.len() {
            assert_eq!(f.next(&cmd[..n]), Frame::Incomplete, "at {n}");
        }
        assert_eq!(f.next(cmd), Frame::Complete { len: cmd.len() });
    }
}
