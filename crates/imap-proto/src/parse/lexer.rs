//! The terminals of the IMAP grammar (RFC 9051 section 9): atoms, strings,
//! numbers, sequence sets, dates, flags. Every read checks bounds through
//! `get`, so malformed input becomes a [`ParseError`], never a panic.

use super::ParseError;
use crate::types::{Date, DateTime, SeqNumber, SeqRange, Sequence};

pub(crate) type PResult<T> = Result<T, ParseError>;

/// Largest mod-sequence value (RFC 7162: a positive signed 63-bit integer).
pub(crate) const MODSEQ_MAX: u64 = i64::MAX as u64;

/// Nesting bound for parenthesised search keys, so hostile input cannot
/// exhaust the stack through recursion.
pub(crate) const NESTING_MAX: usize = 64;

const MONTHS: [&[u8; 3]; 12] = [
    b"JAN", b"FEB", b"MAR", b"APR", b"MAY", b"JUN", b"JUL", b"AUG", b"SEP", b"OCT", b"NOV", b"DEC",
];

/// `ATOM-CHAR`: any CHAR except atom-specials `( ) { SP CTL % * " \ ]`.
pub(crate) fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR`: ATOM-CHAR or `]`.
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `list-char`: ATOM-CHAR, list-wildcards `%` `*`, or `]`.
fn is_list_char(b: u8) -> bool {
    is_astring_char(b) || b == b'%' || b == b'*'
}

/// A cursor over one complete command (lines and inline literals).
pub(crate) struct Cursor<'a> {
    input: &'a [u8],
    pos: usize,
    /// Set once read, so every later error can carry it.
    pub(crate) tag: Option<String>,
    /// Current parenthesis depth of recursive constructs.
    pub(crate) depth: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(input: &'a [u8]) -> Self {
        Cursor {
            input,
            pos: 0,
            tag: None,
            depth: 0,
        }
    }

    pub(crate) fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            tag: self.tag.clone(),
            message: message.into(),
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.input.get(self.pos..).unwrap_or_default()
    }

    /// The byte `offset` bytes ahead, without consuming anything.
    pub(crate) fn peek_at(&self, offset: usize) -> Option<u8> {
        self.rest().get(offset).copied()
    }

    /// Does the rest start with `word` (ASCII case-insensitive)?
    pub(crate) fn peek_keyword(&self, word: &str) -> bool {
        self.peek_keyword_at(0, word)
    }

    /// Does `word` (ASCII case-insensitive) start `offset` bytes ahead?
    pub(crate) fn peek_keyword_at(&self, offset: usize, word: &str) -> bool {
        self.rest()
            .get(offset..)
            .and_then(|r| r.get(..word.len()))
            .is_some_and(|r| r.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Consume `b` if it is next.
    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.error(format!("Expected '{}'", char::from(b))))
        }
    }

    pub(crate) fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            Err(self.error("Missing arguments"))
        } else {
            Err(self.error("Expected space"))
        }
    }

    /// At the end of the command: nothing left but the final CRLF (or LF).
    pub(crate) fn at_end(&self) -> bool {
        matches!(self.rest(), b"" | b"\r\n" | b"\n")
    }

    pub(crate) fn end(&self) -> PResult<()> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("Unexpected characters at end of command"))
        }
    }

    /// Consume bytes while `pred` holds; may be empty.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
        self.pos += n;
        rest.get(..n).unwrap_or_default()
    }

    /// `atom`: one or more ATOM-CHARs.
    pub(crate) fn atom(&mut self) -> PResult<&'a [u8]> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            Err(self.error("Expected atom"))
        } else {
            Ok(atom)
        }
    }

    /// An atom upper-cased, for matching keywords.
    pub(crate) fn keyword(&mut self) -> PResult<String> {
        let atom = self.atom()?;
        Ok(String::from_utf8_lossy(atom).to_ascii_uppercase())
    }

    /// A keyword made of letters, digits, `.` and `-` only: fetch and search
    /// items, where `[`, `<` and `(` end the name.
    pub(crate) fn item_name(&mut self) -> PResult<String> {
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if name.is_empty() {
            Err(self.error("Expected data item"))
        } else {
            Ok(String::from_utf8_lossy(name).to_ascii_uppercase())
        }
    }

    /// The command tag: 1*<ASTRING-CHAR except "+">.
    pub(crate) fn tag(&mut self) -> PResult<String> {
        let tag = self.take_while(super::is_tag_char);
        if tag.is_empty() {
            return Err(self.error("Missing tag"));
        }
        let tag = String::from_utf8_lossy(tag).into_owned();
        self.tag = Some(tag.clone());
        Ok(tag)
    }

    /// `astring`: 1*ASTRING-CHAR or a string.
    pub(crate) fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s = self.take_while(is_astring_char);
                if s.is_empty() {
                    Err(self.error("Expected string"))
                } else {
                    Ok(s.to_vec())
                }
            }
        }
    }

    /// An astring that must be UTF-8 (names, search values, credentials).
    pub(crate) fn astring_utf8(&mut self) -> PResult<String> {
        let bytes = self.astring()?;
        String::from_utf8(bytes).map_err(|_| self.error("Invalid UTF-8 in string"))
    }

    /// `string`: quoted or literal.
    pub(crate) fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => {
                let (data, binary) = self.literal()?;
                debug_assert!(!binary);
                if data.contains(&0) {
                    return Err(self.error("NUL in literal"));
                }
                Ok(data.to_vec())
            }
            _ => Err(self.error("Expected string")),
        }
    }

    pub(crate) fn string_utf8(&mut self) -> PResult<String> {
        let bytes = self.string()?;
        String::from_utf8(bytes).map_err(|_| self.error("Invalid UTF-8 in string"))
    }

    /// `nstring`: string or NIL.
    pub(crate) fn nstring_utf8(&mut self) -> PResult<Option<String>> {
        if self.peek_keyword("NIL") {
            self.pos += 3;
            Ok(None)
        } else {
            self.string_utf8().map(Some)
        }
    }

    /// `quoted`: DQUOTE *QUOTED-CHAR DQUOTE, with `\"` and `\\` escapes.
    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("Unterminated quoted string"));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.pos += 1;
                        out.push(e);
                    }
                    _ => return Err(self.error("Invalid escape in quoted string")),
                },
                b'\r' | b'\n' => return Err(self.error("Unterminated quoted string")),
                0 => return Err(self.error("NUL in quoted string")),
                _ => out.push(b),
            }
        }
    }

    /// `literal` / `literal8`: `{n}` or `~{n}` (optionally `+`), CRLF, n bytes.
    /// Returns the data and whether it was a literal8.
    pub(crate) fn literal(&mut self) -> PResult<(&'a [u8], bool)> {
        let binary = self.eat(b'~');
        self.expect(b'{')?;
        let size = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        // The framer accepts a bare LF as line end, so the parser does too.
        if !self.eat(b'\r') && self.peek() != Some(b'\n') {
            return Err(self.error("Expected CRLF after literal size"));
        }
        self.expect(b'\n')?;
        let size = usize::try_from(size).map_err(|_| self.error("Literal too big"))?;
        let end = self
            .pos
            .checked_add(size)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| self.error("Literal shorter than announced"))?;
        let data = self.input.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok((data, binary))
    }

    /// `list-mailbox`: 1*list-char or a string.
    pub(crate) fn list_mailbox(&mut self) -> PResult<String> {
        let bytes = match self.peek() {
            Some(b'"' | b'{') => self.string()?,
            _ => {
                let s = self.take_while(is_list_char);
                if s.is_empty() {
                    return Err(self.error("Expected mailbox pattern"));
                }
                s.to_vec()
            }
        };
        String::from_utf8(bytes).map_err(|_| self.error("Invalid UTF-8 in mailbox pattern"))
    }

    /// `mailbox`: an astring, with any case of INBOX made "INBOX".
    pub(crate) fn mailbox(&mut self) -> PResult<String> {
        let name = self.astring()?;
        if name.eq_ignore_ascii_case(b"INBOX") {
            return Ok("INBOX".to_owned());
        }
        String::from_utf8(name).map_err(|_| self.error("Invalid UTF-8 in mailbox name"))
    }

    /// Digits as u64 with overflow refused; `max` bounds the value.
    fn digits(&mut self, max: u64) -> PResult<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return Err(self.error("Expected number"));
        }
        digits
            .iter()
            .try_fold(0u64, |acc, &d| {
                acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })
            .filter(|&n| n <= max)
            .ok_or_else(|| self.error("Number out of range"))
    }

    /// `number`: 0..2^32-1.
    pub(crate) fn number(&mut self) -> PResult<u32> {
        let n = self.digits(u64::from(u32::MAX))?;
        u32::try_from(n).map_err(|_| self.error("Number out of range"))
    }

    /// `nz-number`: 1..2^32-1.
    pub(crate) fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => Err(self.error("Zero is not allowed here")),
            n => Ok(n),
        }
    }

    /// `number64`: 0..2^63-1.
    pub(crate) fn number64(&mut self) -> PResult<u64> {
        self.digits(MODSEQ_MAX)
    }

    /// `seq-number`: nz-number or `*`.
    fn seq_number(&mut self) -> PResult<SeqNumber> {
        if self.eat(b'*') {
            Ok(SeqNumber::Star)
        } else {
            self.nz_number().map(SeqNumber::Value)
        }
    }

    /// `sequence-set` without `$`.
    pub(crate) fn seq_ranges(&mut self) -> PResult<Vec<SeqRange>> {
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_number()?;
            let end = if self.eat(b':') {
                self.seq_number()?
            } else {
                start
            };
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                return Ok(ranges);
            }
        }
    }

    /// `sequence-set` or `$` (SEARCHRES).
    pub(crate) fn sequence(&mut self) -> PResult<Sequence> {
        if self.eat(b'$') {
            Ok(Sequence::Saved)
        } else {
            self.seq_ranges().map(Sequence::Set)
        }
    }

    /// Is the next thing a sequence set (digit, `*` or `$`)?
    pub(crate) fn at_sequence(&self) -> bool {
        matches!(self.peek(), Some(b'0'..=b'9' | b'*' | b'$'))
    }

    /// A sequence set where `*` is not allowed (QRESYNC known UIDs).
    pub(crate) fn seq_ranges_no_star(&mut self) -> PResult<Vec<SeqRange>> {
        let ranges = self.seq_ranges()?;
        if ranges
            .iter()
            .any(|r| r.start == SeqNumber::Star || r.end == SeqNumber::Star)
        {
            return Err(self.error("'*' is not allowed here"));
        }
        Ok(ranges)
    }

    fn fixed_digits(&mut self, n: usize) -> PResult<u32> {
        let rest = self.rest();
        let digits = rest
            .get(..n)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| self.error("Expected digits"))?;
        self.pos += n;
        Ok(digits
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0')))
    }

    fn month(&mut self) -> PResult<u8> {
        let rest = self.rest();
        let name = rest.get(..3).ok_or_else(|| self.error("Expected month"))?;
        let index = MONTHS
            .iter()
            .position(|m| name.eq_ignore_ascii_case(&m[..]))
            .ok_or_else(|| self.error("Invalid month"))?;
        self.pos += 3;
        // index < 12, so the cast is exact.
        Ok(index as u8 + 1)
    }

    /// `date-text` after the day: `-Mon-YYYY`.
    fn month_year(&mut self, day: u32) -> PResult<Date> {
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.fixed_digits(4)?;
        if day == 0 || day > days_in_month(year, month) {
            return Err(self.error("Invalid day of month"));
        }
        // year < 10000 and day <= 31, so the casts are exact.
        Ok(Date {
            year: year as u16,
            month,
            day: day as u8,
        })
    }

    /// `date`: `1-Feb-1994` or the same in quotes.
    pub(crate) fn date(&mut self) -> PResult<Date> {
        let quoted = self.eat(b'"');
        let day = self.take_while(|b| b.is_ascii_digit());
        let day = match day {
            [d] => u32::from(d - b'0'),
            [d1, d2] => u32::from(d1 - b'0') * 10 + u32::from(d2 - b'0'),
            _ => return Err(self.error("Invalid date")),
        };
        let date = self.month_year(day)?;
        if quoted {
            self.expect(b'"')?;
        }
        Ok(date)
    }

    /// `date-time`: `"17-Jul-1996 02:44:25 -0700"` (day may be space-padded).
    pub(crate) fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"')?;
        self.eat(b' ');
        let day = self.take_while(|b| b.is_ascii_digit());
        let day = match day {
            [d] => u32::from(d - b'0'),
            [d1, d2] => u32::from(d1 - b'0') * 10 + u32::from(d2 - b'0'),
            _ => return Err(self.error("Invalid date-time")),
        };
        let date = self.month_year(day)?;
        self.expect(b' ')?;
        let hour = self.fixed_digits(2)?;
        self.expect(b':')?;
        let minute = self.fixed_digits(2)?;
        self.expect(b':')?;
        let second = self.fixed_digits(2)?;
        self.expect(b' ')?;
        let negative = match self.peek() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return Err(self.error("Invalid time zone")),
        };
        self.pos += 1;
        let zone_hours = self.fixed_digits(2)?;
        let zone_minutes = self.fixed_digits(2)?;
        self.expect(b'"')?;
        // Leap second 60 is allowed as in RFC 5322.
        if hour > 23 || minute > 59 || second > 60 || zone_hours > 23 || zone_minutes > 59 {
            return Err(self.error("Invalid date-time"));
        }
        // Bounded above, so the casts are exact.
        let zone = (zone_hours * 60 + zone_minutes) as i16;
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second as u8,
            zone_minutes: if negative { -zone } else { zone },
        })
    }

    /// One `flag`: system flags canonicalised, keywords and extension flags as
    /// sent. `\*` is refused: it only appears in the server's PERMANENTFLAGS,
    /// never in anything a client sends.
    pub(crate) fn flag(&mut self) -> PResult<String> {
        if self.eat(b'\\') {
            if self.eat(b'*') {
                return Err(self.error("\\* is not a flag"));
            }
            let name = self.atom()?;
            let canonical = ["Seen", "Answered", "Flagged", "Deleted", "Draft", "Recent"]
                .into_iter()
                .find(|f| name.eq_ignore_ascii_case(f.as_bytes()));
            return Ok(match canonical {
                Some(f) => format!("\\{f}"),
                None => format!("\\{}", String::from_utf8_lossy(name)),
            });
        }
        let atom = self.atom()?;
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    /// `flag-list`: `(` [flag *(SP flag)] `)`.
    pub(crate) fn flag_list(&mut self) -> PResult<Vec<String>> {
        self.expect(b'(')?;
        let mut flags = Vec::new();
        if self.eat(b')') {
            return Ok(flags);
        }
        loop {
            flags.push(self.flag()?);
            if self.eat(b')') {
                return Ok(flags);
            }
            self.list_separator()?;
        }
    }

    /// The space between list items; a clearer error than `sp` when the
    /// list is left open.
    fn list_separator(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else if self.at_end() {
            Err(self.error("Missing ')'"))
        } else {
            Err(self.error("Expected space or ')'"))
        }
    }

    /// A parenthesised, space-separated list of items read by `item`.
    pub(crate) fn paren_list<T>(
        &mut self,
        allow_empty: bool,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<Vec<T>> {
        self.expect(b'(')?;
        let mut items = Vec::new();
        if self.eat(b')') {
            if allow_empty {
                return Ok(items);
            }
            return Err(self.error("Empty list"));
        }
        loop {
            items.push(item(self)?);
            if self.eat(b')') {
                return Ok(items);
            }
            self.list_separator()?;
        }
    }
}

pub(crate) fn days_in_month(year: u32, month: u8) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}
