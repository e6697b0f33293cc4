//! UTC calendar arithmetic and the two ways the status page writes a time:
//! for people ("Fri Apr 15 14:34 UTC") and for machines (RFC 3339).
//!
//! Times are Unix seconds (`i64`) everywhere in this crate; nothing here
//! reads a clock. The proleptic Gregorian calendar is computed with Howard
//! Hinnant's `days_from_civil` / `civil_from_days`, which are exact for every
//! day in the range we allow (years 1 to 9999, what RFC 3339 can write).

use std::fmt::Write as _;

/// The earliest time the crate accepts: 0001-01-01T00:00:00Z.
pub const TIME_MIN: i64 = -62_135_596_800;
/// The latest time the crate accepts: 9999-12-31T23:59:59Z.
pub const TIME_MAX: i64 = 253_402_300_799;

const SECONDS_PER_DAY: i64 = 86_400;

/// Three-letter English day names, Sunday first (`weekday` indexes them).
pub(crate) const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// Three-letter English month names, January first.
pub(crate) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// One instant broken down in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday, as in [`WEEKDAYS`].
    pub weekday: u32,
}

/// Breaks `at` down in UTC. A time outside [`TIME_MIN`, `TIME_MAX`] is
/// clamped to the nearest end, so a corrupt value still formats as a date
/// of four digits rather than as something no parser reads back.
pub(crate) fn civil(at: i64) -> Civil {
    let at = at.clamp(TIME_MIN, TIME_MAX);
    let days = at.div_euclid(SECONDS_PER_DAY);
    let second_of_day = at.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    // Both casts are of values already reduced below 86,400 and 7.
    Civil {
        year,
        month,
        day,
        hour: (second_of_day / 3_600) as u32,
        minute: (second_of_day % 3_600 / 60) as u32,
        second: (second_of_day % 60) as u32,
        weekday: weekday_of_days(days),
    }
}

/// The day of the week of a day counted from 1970-01-01 (a Thursday):
/// 0 = Sunday.
pub(crate) fn weekday_of_days(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// Days from 1970-01-01 to the given date. `month` is 1 to 12; the day is
/// not checked against the month (see [`days_in_month`]).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Whether `year` has a February 29th.
pub(crate) fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in `month` (1 to 12) of `year`; 0 for a month out of range.
pub(crate) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Unix seconds of a UTC date and time. The caller has checked the ranges
/// (month 1..=12, day within the month, hour < 24, minute < 60).
pub(crate) fn unix_seconds(year: i64, month: u32, day: u32, hour: u32, minute: u32) -> i64 {
    days_from_civil(year, month, day) * SECONDS_PER_DAY
        + i64::from(hour) * 3_600
        + i64::from(minute) * 60
}

/// Unix seconds of an RFC 3339 time in UTC, `YYYY-MM-DDTHH:MM:SSZ` (seconds
/// optional), as authors give maintenance windows; `None` when it is not one
/// (other offsets are not taken: the page and the CLI speak UTC).
pub fn parse_rfc3339_utc(text: &str) -> Option<i64> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let number = |part: &str| -> Option<u32> {
        (!part.is_empty() && part.len() <= 4 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (year, month, day) = (number(d.next()?)?, number(d.next()?)?, number(d.next()?)?);
    let mut t = time.split(':');
    let (hour, minute) = (number(t.next()?)?, number(t.next()?)?);
    let second = t.next().map_or(Some(0), number)?;
    if d.next().is_some()
        || t.next().is_some()
        || year == 0
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let year = i64::from(year);
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(unix_seconds(year, month, day, hour, minute) + i64::from(second))
}

/// A time as people read it on the page, in UTC: `Fri Apr 15 14:34 UTC`,
/// with the year after the day (`Fri Apr 15 2011 14:34 UTC`) when it is not
/// the year of `now`. This is also the format of the import headers, so a
/// post copied from the page reads like the log it may have come from.
pub fn human_time(at: i64, now: i64) -> String {
    let time = civil(at);
    let mut out = String::with_capacity(26);
    let weekday = WEEKDAYS[time.weekday as usize % 7];
    let month = MONTHS[(time.month as usize + 11) % 12];
    let _ = write!(out, "{weekday} {month} {}", time.day);
    if time.year != civil(now).year {
        let _ = write!(out, " {}", time.year);
    }
    let _ = write!(out, " {:02}:{:02} UTC", time.hour, time.minute);
    out
}

/// A time as RFC 3339 (`2011-04-15T14:34:00Z`), for `datetime` attributes,
/// Atom and JSON.
pub fn rfc3339(at: i64) -> String {
    let time = civil(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        time.year, time.month, time.day, time.hour, time.minute, time.second
    )
}

/// The date alone (`2011-04-15`), as the date part of a `tag:` URI.
pub(crate) fn iso_date(at: i64) -> String {
    let time = civil(at);
    format!("{:04}-{:02}-{:02}", time.year, time.month, time.day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc_parses_and_refuses() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_utc("2026-12-01T02:00Z"), Some(1_796_090_400));
        assert_eq!(
            parse_rfc3339_utc("2024-02-29T12:30:15Z").map(rfc3339),
            Some("2024-02-29T12:30:15Z".to_string())
        );
        for bad in [
            "",
            "2026-12-01",
            "2026-12-01T02:00",
            "2026-12-01T02:00+01:00",
            "2023-02-29T00:00Z",
            "2026-13-01T00:00Z",
            "2026-12-01T24:00Z",
            "2026-12-01T02:00:60Z",
            "x026-12-01T02:00Z",
            "2026-12-01T02:00:00:00Z",
            "+2026-12-01T02:00Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }

    /// 2011-04-15T14:34:00Z, the example, was a Friday.
    const APRIL_15_2011: i64 = 1_302_878_040;

    #[test]
    fn round_trips_every_day_of_four_centuries_and_the_ends() {
        let first = days_from_civil(1999, 1, 1);
        for days in first..first + 146_097 {
            let (year, month, day) = civil_from_days(days);
            assert!(day >= 1 && day <= days_in_month(year, month));
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(unix_seconds(1, 1, 1, 0, 0), TIME_MIN);
        assert_eq!(unix_seconds(9999, 12, 31, 23, 59) + 59, TIME_MAX);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday_of_days(0), 4); // Thu 1970-01-01
        assert_eq!(civil(APRIL_15_2011).weekday, 5); // Fri
        assert_eq!(weekday_of_days(days_from_civil(2000, 2, 29)), 2); // Tue
        assert_eq!(weekday_of_days(days_from_civil(1969, 12, 31)), 3); // Wed
    }

    #[test]
    fn human_time_adds_the_year_only_when_it_differs() {
        assert_eq!(
            human_time(APRIL_15_2011, APRIL_15_2011),
            "Fri Apr 15 14:34 UTC"
        );
        let next_year = APRIL_15_2011 + 365 * SECONDS_PER_DAY;
        assert_eq!(
            human_time(APRIL_15_2011, next_year),
            "Fri Apr 15 2011 14:34 UTC"
        );
        assert_eq!(human_time(0, 0), "Thu Jan 1 00:00 UTC");
    }

    #[test]
    fn rfc3339_pads_and_clamps() {
        assert_eq!(rfc3339(APRIL_15_2011), "2011-04-15T14:34:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339(i64::MIN), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(iso_date(APRIL_15_2011), "2011-04-15");
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(is_leap_year(2024));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        assert_eq!(days_in_month(2023, 13), 0);
    }
}
