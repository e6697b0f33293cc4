//! Writers for the pieces of server responses: atoms, quoted strings,
//! literals, mailbox names and dates. Each appends to a `Vec<u8>` so the
//! session can build a whole response line without intermediate strings.
//!
//! The choice between quoted and literal is made here, once, so no caller can
//! put a CR, LF or NUL inside quotes and corrupt the response stream.

use crate::parse::ParseError;

/// Longest string we send quoted; longer ones go as literals so a client with
/// a small line buffer still copes.
const QUOTED_BYTES_MAX: usize = 1000;

/// Does `s` fit in a quoted string?
fn quotable(s: &[u8], utf8: bool) -> bool {
    s.len() <= QUOTED_BYTES_MAX
        && !s.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0))
        && if utf8 {
            std::str::from_utf8(s).is_ok()
        } else {
            s.is_ascii()
        }
}

/// Write `s` as a quoted string when safe (no CR, LF or NUL; 7-bit unless
/// `utf8`, i.e. UTF8=ACCEPT is enabled; at most 1000 bytes), escaping `\` and
/// `"`; otherwise as a literal.
pub fn quoted_or_literal(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    if !quotable(s, utf8) {
        literal(out, s);
        return;
    }
    out.reserve(s.len() + 2);
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// `nstring`: `NIL` for `None`, else a quoted string or literal.
pub fn nstring(out: &mut Vec<u8>, s: Option<&[u8]>, utf8: bool) {
    match s {
        Some(s) => quoted_or_literal(out, s, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// `astring`: a bare atom when every byte is an ASTRING-CHAR, else quoted or
/// literal. `NIL` is quoted so it cannot be read as the nil value.
pub fn astring(out: &mut Vec<u8>, s: &[u8], utf8: bool) {
    let atom = !s.is_empty()
        && !s.eq_ignore_ascii_case(b"NIL")
        && s.iter().all(|&b| crate::parse::is_astring_char(b));
    if atom {
        out.extend_from_slice(s);
    } else {
        quoted_or_literal(out, s, utf8);
    }
}

/// `literal`: `{n}\r\n` and the bytes.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// `literal8` (RFC 3516): `~{n}\r\n` and the bytes, which may contain NUL.
pub fn literal8(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("~{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// A mailbox name: `INBOX` as is; otherwise encoded to modified UTF-7 first
/// unless the client enabled UTF8=ACCEPT.
pub fn mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if name.eq_ignore_ascii_case("INBOX") {
        out.extend_from_slice(b"INBOX");
    } else if utf8 {
        astring(out, name.as_bytes(), true);
    } else {
        astring(out, crate::utf7::encode(name).as_bytes(), false);
    }
}

/// Earliest and latest instants that have a four-digit year, so the output
/// always matches `date-year = 4DIGIT`.
const UNIX_SECONDS_MIN: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const UNIX_SECONDS_MAX: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

/// `date-time`: `"17-Jul-1996 02:44:25 -0700"` for `unix_seconds` shown in a
/// zone `zone_minutes` east of UTC. Out-of-range instants are clamped to
/// years 0000..=9999, and the zone to ±23:59.
pub fn date_time(out: &mut Vec<u8>, unix_seconds: i64, zone_minutes: i16) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let zone_minutes = i64::from(zone_minutes.clamp(-1439, 1439));
    let local = unix_seconds
        .saturating_add(zone_minutes * 60)
        .clamp(UNIX_SECONDS_MIN, UNIX_SECONDS_MAX);
    let days = local.div_euclid(86_400);
    let seconds_of_day = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let month_name = MONTHS
        .get(usize::from(month).saturating_sub(1))
        .copied()
        .unwrap_or("Jan");
    let sign = if zone_minutes < 0 { '-' } else { '+' };
    let zone = zone_minutes.abs();
    out.extend_from_slice(
        format!(
            "\"{day:2}-{month_name}-{year:04} {:02}:{:02}:{:02} {sign}{:02}{:02}\"",
            seconds_of_day / 3600,
            seconds_of_day / 60 % 60,
            seconds_of_day % 60,
            zone / 60,
            zone % 60,
        )
        .as_bytes(),
    );
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days` algorithm: shift the
/// year to start in March so the leap day is last, then split into 400-year
/// eras).
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // month is 1..=12 and day 1..=31 by construction.
    (year, month as u8, day as u8)
}

/// The response line for a parse error: `tag BAD message\r\n` or
/// `* BAD message\r\n`. The message is ours, but it may quote a command name
/// the client sent, so control characters are replaced to keep the line one line.
pub fn bad(out: &mut Vec<u8>, error: &ParseError) {
    out.extend_from_slice(error.tag.as_deref().unwrap_or("*").as_bytes());
    out.extend_from_slice(b" BAD ");
    out.extend(
        error
            .message
            .bytes()
            .map(|b| if b.is_ascii_control() { b'?' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn quoting() {
        assert_eq!(
            run(|o| quoted_or_literal(o, b"a \"b\" \\", false)),
            r#""a \"b\" \\""#
        );
        assert_eq!(
            run(|o| quoted_or_literal(o, b"a\r\nb", false)),
            "{4}\r\na\r\nb"
        );
        assert_eq!(
            run(|o| quoted_or_literal(o, "é".as_bytes(), false)),
            "{2}\r\né"
        );
        assert_eq!(run(|o| quoted_or_literal(o, "é".as_bytes(), true)), "\"é\"");
        assert_eq!(
            run(|o| quoted_or_literal(o, b"\xff", true)),
            "{1}\r\n\u{fffd}"
        );
        let long = vec![b'a'; 1001];
        assert!(run(|o| quoted_or_literal(o, &long, false)).starts_with("{1001}\r\n"));
        assert_eq!(run(|o| quoted_or_literal(o, b"", false)), "\"\"");
    }

    #[test]
    fn strings() {
        assert_eq!(run(|o| nstring(o, None, false)), "NIL");
        assert_eq!(run(|o| nstring(o, Some(b"x"), false)), "\"x\"");
        assert_eq!(run(|o| astring(o, b"abc]", false)), "abc]");
        assert_eq!(run(|o| astring(o, b"a b", false)), "\"a b\"");
        assert_eq!(run(|o| astring(o, b"", false)), "\"\"");
        assert_eq!(run(|o| astring(o, b"nil", false)), "\"nil\"");
        assert_eq!(run(|o| astring(o, b"a*", false)), "\"a*\"");
        assert_eq!(run(|o| literal8(o, b"\0")), "~{1}\r\n\0");
    }

    #[test]
    fn mailboxes() {
        assert_eq!(run(|o| mailbox(o, "inbox", false)), "INBOX");
        assert_eq!(run(|o| mailbox(o, "Entwürfe", false)), "Entw&APw-rfe");
        assert_eq!(run(|o| mailbox(o, "Entwürfe", true)), "\"Entwürfe\"");
        assert_eq!(run(|o| mailbox(o, "A & B", false)), "\"A &- B\"");
    }

    #[test]
    fn dates() {
        // The RFC 3501 example: 1996-07-17T09:44:25Z shown at -0700.
        assert_eq!(
            run(|o| date_time(o, 837_596_665, -420)),
            "\"17-Jul-1996 02:44:25 -0700\""
        );
        assert_eq!(
            run(|o| date_time(o, 0, 0)),
            "\" 1-Jan-1970 00:00:00 +0000\""
        );
        assert_eq!(
            run(|o| date_time(o, 951_782_400, 90)),
            "\"29-Feb-2000 01:30:00 +0130\""
        );
        assert_eq!(
            run(|o| date_time(o, -1, 0)),
            "\"31-Dec-1969 23:59:59 +0000\""
        );
        assert_eq!(
            run(|o| date_time(o, i64::MAX, i16::MAX)),
            "\"31-Dec-9999 23:59:59 +2359\""
        );
        assert_eq!(
            run(|o| date_time(o, i64::MIN, i16::MIN)),
            "\" 1-Jan-0000 00:00:00 -2359\""
        );
    }

    #[test]
    fn dates_agree_with_day_count() {
        // Walk 1000 years day by day against a simple calendar counter.
        let (mut year, mut month, mut day) = (1970i64, 1u8, 1u8);
        for days in 0..366 * 1000 {
            assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
            let month_days = crate::parse::days_in_month(year as u32, month) as u8;
            if day < month_days {
                day += 1;
            } else if month < 12 {
                day = 1;
                month += 1;
            } else {
                day = 1;
                month = 1;
                year += 1;
            }
        }
    }

    #[test]
    fn bad_line() {
        let error = ParseError {
            tag: Some("a1".into()),
            message: "Unknown\r\ncommand".into(),
        };
        assert_eq!(run(|o| bad(o, &error)), "a1 BAD Unknown??command\r\n");
    }
}
