//! Trace headers (`Return-Path`, `Received`) and what goes into them: the
//! RFC 5322 date and a per-message id.
//!
//! The date is computed here from `SystemTime` rather than with a date crate:
//! it is one format, always in UTC, and the arithmetic is a dozen lines.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the `Received` header records about one message.
pub(crate) struct TraceFields<'a> {
    pub sender: &'a str,
    pub lhlo_name: &'a str,
    pub peer_ip: IpAddr,
    pub hostname: &'a str,
    /// The protocol word of RFC 3848: LMTP, SMTP, ESMTP, ESMTPS.
    pub with: &'a str,
    pub id: &'a str,
    pub now: SystemTime,
}

/// The header block prepended to every delivered message, CRLF-terminated.
pub(crate) fn trace_headers(fields: &TraceFields<'_>) -> String {
    format!(
        "Return-Path: <{}>\r\nReceived: from {} ({})\r\n\tby {} (Postern) with {} id {};\r\n\t{}\r\n",
        header_safe(fields.sender),
        header_safe(fields.lhlo_name),
        fields.peer_ip,
        header_safe(fields.hostname),
        fields.with,
        fields.id,
        rfc5322_date(fields.now),
    )
}

/// Replaces control characters with `?`: the values come from the client, and
/// a CR, LF or NUL in a header we write would let it forge header lines. The
/// smtp-proto parser already stops at CR and LF; this is the second check at
/// the place where it matters.
pub(crate) fn header_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// A message id unique on this host: seconds since the epoch, the process id
/// and a per-process counter. Not secret and not meant to be unguessable.
pub(crate) fn message_id(now: SystemTime) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seconds = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{seconds:x}.{:x}.{count:x}", std::process::id())
}

/// Formats `time` as an RFC 5322 date in UTC, e.g. `Tue, 01 Jul 2025 12:34:56 +0000`.
/// Times before 1970 (a broken clock) are written as the epoch.
pub fn rfc5322_date(time: SystemTime) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = String::with_capacity(31);
    // 1970-01-01 was a Thursday; `% 7` keeps the index in range.
    let weekday = WEEKDAYS.get((days % 7) as usize).copied().unwrap_or("Thu");
    let month_name = MONTHS
        .get(month.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("Jan");
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} +0000",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    );
    out
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`, for days >= 0.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: u64) -> String {
        rfc5322_date(UNIX_EPOCH + Duration::from_secs(seconds))
    }

    #[test]
    fn dates() {
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_709_251_199), "Thu, 29 Feb 2024 23:59:59 +0000");
        assert_eq!(at(1_751_373_296), "Tue, 01 Jul 2025 12:34:56 +0000");
        assert_eq!(at(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 +0000");
    }

    #[test]
    fn before_epoch_is_epoch() {
        let early = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(rfc5322_date(early), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    #[test]
    fn header_values_lose_control_characters() {
        assert_eq!(header_safe("a\r\nb\0c\td"), "a??b?c?d");
    }

    #[test]
    fn ids_differ() {
        let now = SystemTime::now();
        assert_ne!(message_id(now), message_id(now));
    }
}
