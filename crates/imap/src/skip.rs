//! Dropping the rest of an over-long command line as it arrives.
//!
//! When a line passes the line bound before its end has arrived, the session
//! answers BAD at once and then discards bytes up to the next LF without
//! buffering them. That is only safe if the line did not end by announcing a
//! non-synchronizing literal (`{n+}` or `~{n+}`): the client sends those `n`
//! bytes without waiting, and read as commands they would run (an APPEND's
//! message body holding `x DELETE Archive`). A synchronizing `{n}` is fine:
//! the client waits for a `+` that never comes and reads our BAD instead.
//!
//! [`SkippedLine`] watches the discarded bytes for that ending with a few
//! bytes of state, whatever the line's length and however the bytes are split
//! across reads. No I/O here.

/// How the bytes dropped so far end, as far as a literal announcement goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Tail {
    /// Not inside a possible announcement.
    #[default]
    Other,
    /// After `{`, and whether a digit has followed.
    Open { digits: bool },
    /// After `{digits+`.
    Plus,
    /// After `{digits}` or `{digits+}`, then perhaps the CR of the CRLF.
    Closed { synchronizing: bool, cr: bool },
}

/// The state of a line being dropped; see the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SkippedLine {
    tail: Tail,
}

impl SkippedLine {
    /// Takes the next bytes of the line, which hold no LF.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.tail = match (self.tail, b) {
                (_, b'{') => Tail::Open { digits: false },
                (Tail::Open { .. }, b'0'..=b'9') => Tail::Open { digits: true },
                (Tail::Open { digits: true }, b'+') => Tail::Plus,
                (Tail::Open { digits: true }, b'}') => Tail::Closed {
                    synchronizing: true,
                    cr: false,
                },
                (Tail::Plus, b'}') => Tail::Closed {
                    synchronizing: false,
                    cr: false,
                },
                // The framer strips one CR before the LF, and so do we.
                (
                    Tail::Closed {
                        synchronizing,
                        cr: false,
                    },
                    b'\r',
                ) => Tail::Closed {
                    synchronizing,
                    cr: true,
                },
                _ => Tail::Other,
            };
        }
    }

    /// If the line ends here (the next byte is its LF): did it announce a
    /// non-synchronizing literal, whose bytes are already on their way?
    pub(crate) fn announces_non_synchronizing_literal(&self) -> bool {
        matches!(
            self.tail,
            Tail::Closed {
                synchronizing: false,
                ..
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `line` (no LF) split into reads at every position, and compares
    /// the verdict with `expect` each time.
    fn check(line: &str, expect: bool) {
        let bytes = line.as_bytes();
        for split in 0..=bytes.len() {
            let mut skipped = SkippedLine::default();
            skipped.feed(&bytes[..split]);
            skipped.feed(&bytes[split..]);
            assert_eq!(
                skipped.announces_non_synchronizing_literal(),
                expect,
                "{line:?} split at {split}"
            );
        }
    }

    /// REVIEW C1: `a APPEND INBOX (<70 KB>) {300+}` made the message body run
    /// as commands after the over-long line was skipped.
    #[test]
    fn non_synchronizing_announcements_are_caught() {
        check("a APPEND INBOX (x y z) {300+}\r", true);
        check("a APPEND INBOX (x y z) {300+}", true);
        check("a APPEND INBOX ~{300+}\r", true);
        check(
            "a X {00000000000000000000000000000000000000000007+}\r",
            true,
        );
        check("{1+}", true);
        check("a X {1+} {2+}\r", true);
    }

    #[test]
    fn other_endings_are_safe() {
        check("a APPEND INBOX {300}\r", false);
        check("a APPEND INBOX ~{300}\r", false);
        check("a X {300+}\r\r", false);
        check("a X {300+} \r", false);
        check("a X {+}\r", false);
        check("a X {3a+}\r", false);
        check("a X {3++}\r", false);
        check("a X {300+}x\r", false);
        check("a X {300+\r", false);
        check("a X 300+}\r", false);
        check("", false);
        check("\r", false);
    }

    #[test]
    fn a_line_of_any_length_keeps_constant_state() {
        let mut skipped = SkippedLine::default();
        for _ in 0..1000 {
            skipped.feed(&[b'x'; 1024]);
            skipped.feed(b"{12+}");
        }
        assert!(skipped.announces_non_synchronizing_literal());
        skipped.feed(b" ");
        assert!(!skipped.announces_non_synchronizing_literal());
    }
}
