use super::*;
use crate::fixtures::{STATUS_AT, STATUS_TEXT, UPDATE_AT, UPDATE_TEXT};

const EXAMPLE: &str = "Status (by sam at Fri Apr 15 14:34 UTC)
Incoming mail is arriving much faster than usual and delivery is delayed: it takes about
15 minutes from receipt to the mailbox, where it usually takes under 5 seconds. We are looking
for abuse patterns.
Update (by sam at Fri Apr 15 15:09 UTC)
The backlog is cleared. Delivery takes under 10 seconds again.
";

const DAY: i64 = 86_400;

fn read(log: &str) -> Import {
    import_log(log, 2011).unwrap_or_else(|error| panic!("{error}"))
}

fn error(log: &str) -> ImportError {
    match import_log(log, 2011) {
        Ok(import) => panic!("imported {import:?}"),
        Err(error) => error,
    }
}

fn check_error(log: &str, line: usize, kind: ImportErrorKind) {
    assert_eq!(error(log), ImportError { line, kind }, "log:\n{log}");
}

#[test]
fn the_issue_example() {
    let import = read(EXAMPLE);
    assert_eq!(import.duplicates, 0);
    assert_eq!(import.incidents.len(), 1);
    let incident = &import.incidents[0];
    assert_eq!(
        incident.title,
        "Incoming mail is arriving much faster than usual and delivery is delayed: it takes \
         about 15 minutes from receipt to the mailbox, where it usually takes under 5 seconds"
    );
    assert_eq!(incident.line, 1);
    assert_eq!(incident.resolved_at, UPDATE_AT);
    let posts: Vec<(&str, i64, &str, usize)> = incident
        .posts
        .iter()
        .map(|post| (post.author.as_str(), post.at, post.text.as_str(), post.line))
        .collect();
    assert_eq!(
        posts,
        [
            ("sam", STATUS_AT, STATUS_TEXT, 1),
            ("sam", UPDATE_AT, UPDATE_TEXT, 5)
        ]
    );
    assert!(validate_title_ok(&incident.title));
}

fn validate_title_ok(title: &str) -> bool {
    crate::validate::validate_title(title).is_ok()
}

#[test]
fn several_incidents_newest_first_with_paragraphs() {
    let log = "
Status (by kim at Mon Apr 18 09:00 UTC)
IMAP logins fail for some users.

We are restarting the authentication service.
Update (by kim at Mon Apr 18 09:30 UTC)
Logins work again.


Status (by sam at Fri Apr 15 14:34 UTC)
Incoming mail is delayed.
Status (by sam at Tue Mar 1 08:00 UTC)
Webmail is down!   Sorry.
";
    let import = read(log);
    let titles: Vec<&str> = import
        .incidents
        .iter()
        .map(|incident| incident.title.as_str())
        .collect();
    assert_eq!(
        titles,
        [
            "IMAP logins fail for some users",
            "Incoming mail is delayed",
            "Webmail is down!"
        ]
    );
    let first = &import.incidents[0];
    assert_eq!(
        first.posts[0].text,
        "IMAP logins fail for some users.\n\nWe are restarting the authentication service."
    );
    assert_eq!(first.posts[1].text, "Logins work again.");
    assert_eq!(first.line, 2);
    assert_eq!(import.incidents[1].posts.len(), 1);
    assert_eq!(import.incidents[1].resolved_at, STATUS_AT);
}

#[test]
fn updates_days_later_and_into_the_next_month() {
    let log = "Status (by sam at Fri Apr 29 23:00 UTC)
Sending is slow.
Update (by sam at Mon May 2 08:15 UTC)
Still looking.
Update (by kim at Fri May 13 10:00 UTC)
Fixed.
";
    let incident = &read(log).incidents[0];
    let start = crate::date::unix_seconds(2011, 4, 29, 23, 0);
    let times: Vec<i64> = incident.posts.iter().map(|post| post.at).collect();
    assert_eq!(
        times,
        [
            start,
            start + 2 * DAY + 9 * 3_600 + 15 * 60,
            start + 13 * DAY + 11 * 3_600
        ]
    );
    assert_eq!(incident.resolved_at, times[2]);
    assert_eq!(incident.posts[2].author, "kim");
}

#[test]
fn an_update_after_new_year_is_in_the_next_year() {
    let log = "Status (by sam at Sat Dec 31 23:50 UTC)
The year ends with an outage.
Update (by sam at Sun Jan 1 00:20 UTC)
Fixed in the new year.
Update (by sam at Mon Jan 2 09:00 UTC)
Still fine.
";
    let incident = &read(log).incidents[0];
    assert_eq!(
        incident.posts[0].at,
        crate::date::unix_seconds(2011, 12, 31, 23, 50)
    );
    assert_eq!(
        incident.posts[1].at,
        crate::date::unix_seconds(2012, 1, 1, 0, 20)
    );
    assert_eq!(
        incident.posts[2].at,
        crate::date::unix_seconds(2012, 1, 2, 9, 0)
    );
    // The rolled-over year is checked too: Jan 1 2012 was a Sunday.
    let wrong = log.replace("Sun Jan 1", "Sat Jan 1");
    check_error(
        &wrong,
        3,
        ImportErrorKind::WeekdayMismatch {
            date: "Jan 1 2012".into(),
            written: "Sat",
            correct: "Sun",
        },
    );
}

#[test]
fn the_same_entry_pasted_twice_is_one_incident() {
    let twice = format!("{EXAMPLE}\n{EXAMPLE}");
    let import = read(&twice);
    assert_eq!(import.incidents.len(), 1);
    assert_eq!(import.incidents[0].posts.len(), 2);
    assert_eq!(import.duplicates, 2);

    // Pasted again later with one more update, and rewrapped: the update is
    // added to the first incident, in time order.
    let later = format!(
        "{}\nUpdate (by kim at Fri Apr 15 16:00 UTC)\nAll clear.\n\n{EXAMPLE}",
        EXAMPLE.replace("it takes about\n15 minutes", "it takes\nabout 15 minutes")
    );
    let import = read(&later);
    assert_eq!(import.incidents.len(), 1);
    assert_eq!(import.duplicates, 2);
    let authors: Vec<&str> = import.incidents[0]
        .posts
        .iter()
        .map(|post| post.author.as_str())
        .collect();
    assert_eq!(authors, ["sam", "sam", "kim"]);
    assert_eq!(
        import.incidents[0].resolved_at,
        crate::date::unix_seconds(2011, 4, 15, 16, 0)
    );

    // A repeated update inside one incident.
    let repeated = format!("{EXAMPLE}Update (by sam at Fri Apr 15 15:09 UTC)\n{UPDATE_TEXT}\n");
    let import = read(&repeated);
    assert_eq!(import.incidents[0].posts.len(), 2);
    assert_eq!(import.duplicates, 1);
}

#[test]
fn fingerprints_match_stored_posts_and_are_stable() {
    let import = read(EXAMPLE);
    let imported = &import.incidents[0].posts[0];
    let stored = Post {
        id: 9,
        author: "sam".into(),
        at: STATUS_AT,
        text: STATUS_TEXT.into(),
        edits: Vec::new(),
    };
    assert_eq!(stored.fingerprint(), imported.fingerprint);
    // Wrapping and spacing do not matter; paragraphs, words, author and
    // time do.
    let same = fingerprint(" sam ", STATUS_AT, &STATUS_TEXT.replace('\n', "  \n "));
    assert_eq!(same, imported.fingerprint);
    for other in [
        fingerprint("kim", STATUS_AT, STATUS_TEXT),
        fingerprint("sam", STATUS_AT + 60, STATUS_TEXT),
        fingerprint(
            "sam",
            STATUS_AT,
            &STATUS_TEXT.replace("looking\n", "looking\n\n"),
        ),
        fingerprint("sam", STATUS_AT, &STATUS_TEXT.replace("abuse", "spam")),
    ] {
        assert_ne!(other, imported.fingerprint);
    }
    // Pinned: a change here would make re-imports duplicate old posts.
    assert_eq!(
        fingerprint("sam", 0, "a  b\n\nc").to_string(),
        FINGERPRINT_PINNED
    );
}

/// SHA-256 of "postern status post v1\nsam\n0\na b\n\nc", computed apart.
const FINGERPRINT_PINNED: &str = "f309bafbb2fe31b73fe812e794b4662bd5481239dcf3c6297d105fffcb2701a7";

#[test]
fn line_ends_do_not_matter() {
    let lf = read(EXAMPLE);
    assert_eq!(read(&EXAMPLE.replace('\n', "\r\n")), lf);
    assert_eq!(read(&EXAMPLE.replace('\n', "\r")), lf);
    assert_eq!(read(&format!("\u{feff}{EXAMPLE}")), lf);
    // Line numbers count CRLF as one line end.
    let bad = "Status (by sam at Fri Apr 15 14:34 UTC)\r\ntext\r\nUpdate (by sam at Thu Apr 15 15:00 UTC)\r\nx\r\n";
    assert_eq!(error(bad).line, 3);
}

#[test]
fn headers_are_read_generously() {
    let log = "  status  (BY Sam O'Neil at home at friday april 15 2:34 utc)  \ntext\n";
    let import = read(log);
    let post = &import.incidents[0].posts[0];
    assert_eq!(post.author, "Sam O'Neil at home");
    assert_eq!(post.at, STATUS_AT - 12 * 3_600);
    // A line that merely starts with the word is text.
    let log = "Status (by sam at Fri Apr 15 14:34 UTC)\nStatus: all good.\nUpdate: none (yet).\n";
    assert_eq!(
        read(log).incidents[0].posts[0].text,
        "Status: all good.\nUpdate: none (yet)."
    );
}

#[test]
fn bad_headers_name_their_line() {
    let shape = ImportErrorKind::BadHeader(HEADER_SHAPE);
    let date_shape = ImportErrorKind::BadHeader("the date must read like \"Fri Apr 15 14:34 UTC\"");
    for (header, kind) in [
        ("Status (by sam at Fri Apr 15 14:34 UTC", shape.clone()),
        ("Status (by sam Fri Apr 15 14:34 UTC)", shape.clone()),
        ("Status (by sam at Fri Apr 15 14:34)", date_shape.clone()),
        ("Status (by sam at Fri Apr 15 14:34 UTC extra)", date_shape),
        (
            "Status (by sam at Fri Apr 15 24:00 UTC)",
            ImportErrorKind::BadTime("24:00".into()),
        ),
        (
            "Status (by sam at Fri Apr 15 14:3 UTC)",
            ImportErrorKind::BadTime("14:3".into()),
        ),
        (
            "Status (by sam at Fri Apr 15 14:34 CEST)",
            ImportErrorKind::NotUtc("CEST".into()),
        ),
        (
            "Status (by sam at Fry Apr 15 14:34 UTC)",
            ImportErrorKind::UnknownWeekday("Fry".into()),
        ),
        (
            "Status (by sam at Fri Apz 15 14:34 UTC)",
            ImportErrorKind::UnknownMonth("Apz".into()),
        ),
        (
            "Status (by sam at Fri Apr 0 14:34 UTC)",
            ImportErrorKind::BadHeader("the day must be a number from 1 to 31"),
        ),
        (
            "Status (by sam at Sun Apr 31 14:34 UTC)",
            ImportErrorKind::NoSuchDay {
                year: 2011,
                month: "Apr",
                day: 31,
            },
        ),
        (
            "Status (by sam at Tue Feb 29 14:34 UTC)",
            ImportErrorKind::NoSuchDay {
                year: 2011,
                month: "Feb",
                day: 29,
            },
        ),
        (
            "Status (by  at Fri Apr 15 14:34 UTC)",
            ImportErrorKind::Invalid(ValidationError::Empty(crate::error::Field::Author)),
        ),
        (
            "Status (by sam at Thu Apr 15 14:34 UTC)",
            ImportErrorKind::WeekdayMismatch {
                date: "Apr 15 2011".into(),
                written: "Thu",
                correct: "Fri",
            },
        ),
    ] {
        check_error(&format!("\n{header}\ntext\n"), 2, kind);
        // The same mistake in an update.
        let update = header.replacen("Status", "Update", 1);
        let log = format!("{EXAMPLE}{update}\ntext\n");
        assert_eq!(error(&log).line, 7, "{update}");
    }
    // The message says what to do.
    let message = error("Status (by sam at Thu Apr 15 14:34 UTC)\ntext\n").to_string();
    assert_eq!(
        message,
        "line 1: Apr 15 2011 is a Fri, not a Thu: check the date, or the year given for the log"
    );
    // In a leap year Feb 29 exists.
    let leap = import_log("Status (by sam at Wed Feb 29 14:34 UTC)\ntext\n", 2012);
    assert!(leap.is_ok());
}

#[test]
fn what_is_not_an_incident_log() {
    check_error("", 0, ImportErrorKind::NoIncidents);
    check_error("\n  \n\r\n", 0, ImportErrorKind::NoIncidents);
    check_error(
        "\nHello,\nStatus (by sam at Fri Apr 15 14:34 UTC)\ntext\n",
        2,
        ImportErrorKind::TextBeforeFirstStatus,
    );
    check_error(
        "Update (by sam at Fri Apr 15 14:34 UTC)\ntext\n",
        1,
        ImportErrorKind::UpdateBeforeFirstStatus,
    );
    check_error(
        "Status (by sam at Fri Apr 15 14:34 UTC)\n\n  \nStatus (by sam at Fri Apr 15 12:00 UTC)\nx\n",
        1,
        ImportErrorKind::PostEmpty,
    );
    check_error(
        "Status (by sam at Fri Apr 15 14:34 UTC)\nx\nUpdate (by sam at Fri Apr 15 14:00 UTC)\ny\n",
        3,
        ImportErrorKind::UpdateBeforePrevious { previous_line: 1 },
    );
    check_error(
        "Status (by sam at Fri Apr 15 14:34 UTC)\nfine\nbell \u{7} here\n",
        3,
        ImportErrorKind::Invalid(ValidationError::ControlCharacter {
            field: crate::error::Field::Text,
            character: '\u{7}',
        }),
    );
    let long = format!(
        "Status (by sam at Fri Apr 15 14:34 UTC)\n{}\n",
        "x".repeat(crate::validate::TEXT_BYTES_MAX + 1)
    );
    assert!(matches!(
        error(&long),
        ImportError {
            line: 1,
            kind: ImportErrorKind::Invalid(ValidationError::TooLong { .. })
        }
    ));
}

#[test]
fn bounds() {
    assert_eq!(
        import_log(EXAMPLE, 0).unwrap_err().kind,
        ImportErrorKind::YearOutOfRange(0)
    );
    assert_eq!(
        import_log(EXAMPLE, 9_999).unwrap_err().kind,
        ImportErrorKind::YearOutOfRange(9_999)
    );
    let huge = " ".repeat(IMPORT_BYTES_MAX + 1);
    assert!(matches!(
        import_log(&huge, 2011).unwrap_err().kind,
        ImportErrorKind::InputTooLarge { .. }
    ));
    let many = "Status (by sam at Fri Apr 15 14:34 UTC)\nx\n".repeat(IMPORT_INCIDENTS_MAX + 1);
    assert_eq!(
        import_log(&many, 2011).unwrap_err(),
        ImportError {
            line: 2 * IMPORT_INCIDENTS_MAX + 1,
            kind: ImportErrorKind::TooManyIncidents {
                max: IMPORT_INCIDENTS_MAX
            }
        }
    );
    let updates = format!(
        "Status (by sam at Fri Apr 15 14:34 UTC)\nx\n{}",
        "Update (by sam at Fri Apr 15 14:35 UTC)\ny\n".repeat(POSTS_PER_INCIDENT_MAX)
    );
    assert!(matches!(
        import_log(&updates, 2011).unwrap_err().kind,
        ImportErrorKind::Invalid(ValidationError::TooMany { .. })
    ));
}

#[test]
fn titles() {
    assert_eq!(
        title_from("Mail is slow, e.g. to Gmail. More later."),
        "Mail is slow, e.g. to Gmail"
    );
    assert_eq!(
        title_from("Version 5.3 is out! Upgrade."),
        "Version 5.3 is out!"
    );
    assert_eq!(title_from("No period at all"), "No period at all");
    assert_eq!(
        title_from("First paragraph\nwrapped\n\nSecond."),
        "First paragraph wrapped"
    );
    assert_eq!(title_from("Is it down? Yes."), "Is it down?");
    let long = format!("{} end.", "word ".repeat(100));
    let title = title_from(&long);
    assert!(title.len() <= TITLE_BYTES_MAX, "{}", title.len());
    assert!(title.ends_with("word…"), "{title}");
    let unicode = "ü".repeat(150);
    let title = title_from(&unicode);
    assert!(title.len() <= TITLE_BYTES_MAX && title.ends_with('…'));
    assert!(validate_title_ok(&title));
}
