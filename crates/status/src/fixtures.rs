//! Shared test data: a site, the issue's example incident, and a page's
//! worth of incidents in every phase.

use crate::health::ComponentView;
use crate::model::{ComponentState, Edit, Impact, Incident, Kind, Post, SetBy, State};
use crate::site::Site;

pub(crate) const DAY: i64 = 86_400;
/// Fri Apr 15 2011 14:34 UTC, the issue's Status.
pub(crate) const STATUS_AT: i64 = 1_302_878_040;
/// Fri Apr 15 2011 15:09 UTC, the issue's Update.
pub(crate) const UPDATE_AT: i64 = STATUS_AT + 35 * 60;
/// The pages' "now": an hour after the issue's Status.
pub(crate) const NOW: i64 = STATUS_AT + 3_600;

pub(crate) const STATUS_TEXT: &str = "Incoming mail is arriving much faster than usual and delivery is delayed: it takes about\n\
15 minutes from receipt to the mailbox, where it usually takes under 5 seconds. We are looking\n\
for abuse patterns.";
pub(crate) const UPDATE_TEXT: &str =
    "The backlog is cleared. Delivery takes under 10 seconds again.";

pub(crate) fn site() -> Site {
    Site::new("Example Mail", "https://status.example.com/").unwrap()
}

pub(crate) fn post(id: u64, author: &str, at: i64, text: &str) -> Post {
    Post {
        id,
        author: author.into(),
        at,
        text: text.into(),
        edits: Vec::new(),
    }
}

pub(crate) fn incident(id: u64, title: &str, created: i64, posts: Vec<Post>) -> Incident {
    Incident {
        id,
        title: title.into(),
        components: vec!["Incoming mail".into()],
        impact: Impact::Minor,
        state: State::Investigating,
        kind: Kind::Incident,
        created,
        resolved: None,
        posts,
    }
}

/// The issue's example: open, with its Status and Update.
pub(crate) fn the_issue() -> Incident {
    incident(
        1,
        "Incoming mail is delayed",
        STATUS_AT,
        vec![
            post(1, "sam", STATUS_AT, STATUS_TEXT),
            post(2, "sam", UPDATE_AT, UPDATE_TEXT),
        ],
    )
}

pub(crate) fn resolved(id: u64, title: &str, created: i64, resolved: i64) -> Incident {
    Incident {
        state: State::Resolved,
        resolved: Some(resolved),
        ..incident(
            id,
            title,
            created,
            vec![post(1, "kim", created, "It broke.")],
        )
    }
}

pub(crate) fn maintenance(id: u64, title: &str, starts: i64, ends: i64) -> Incident {
    Incident {
        kind: Kind::Maintenance { starts, ends },
        state: State::Scheduled,
        impact: Impact::None,
        components: vec!["IMAP".into()],
        // Announced two days before the page's time, whatever the window.
        ..incident(
            id,
            title,
            NOW - 2 * DAY - id as i64,
            vec![post(
                1,
                "kim",
                NOW - 2 * DAY - id as i64,
                "We will upgrade the IMAP servers.",
            )],
        )
    }
}

/// Everything a page can show: the issue's incident open, maintenance in
/// progress and upcoming, incidents resolved 10, 89 and 91 days ago (the
/// last one a year earlier), an edited post.
pub(crate) fn page_incidents() -> Vec<Incident> {
    let mut edited = resolved(
        5,
        "Webmail logins failed",
        NOW - 10 * DAY,
        NOW - 10 * DAY + 600,
    );
    edited.posts[0].edits.push(Edit {
        at: NOW - 10 * DAY + 60,
        author: "sam".into(),
        previous_text: "It brok.".into(),
    });
    vec![
        the_issue(),
        maintenance(2, "IMAP upgrade", NOW - 600, NOW + 3_000),
        maintenance(3, "DNS move", NOW + 2 * DAY, NOW + 2 * DAY + 3_600),
        resolved(4, "Sending was slow", NOW - 100 * DAY, NOW - 89 * DAY),
        edited,
        resolved(6, "An old outage", NOW - 120 * DAY, NOW - 91 * DAY),
    ]
}

pub(crate) fn views() -> Vec<ComponentView> {
    vec![
        ComponentView {
            name: "Incoming mail".into(),
            state: ComponentState::Degraded,
            set_by: SetBy::Health,
            health: vec![
                "delivery currently takes about 15 minutes, usually under 5 seconds".into(),
            ],
            note: None,
            incidents: vec![1],
        },
        ComponentView {
            name: "IMAP".into(),
            state: ComponentState::Maintenance,
            set_by: SetBy::Incident(2),
            health: Vec::new(),
            note: Some("Logins may take a second longer.".into()),
            incidents: vec![2],
        },
        ComponentView {
            name: "SMS".into(),
            state: ComponentState::Operational,
            set_by: SetBy::Manual,
            health: Vec::new(),
            note: None,
            incidents: Vec::new(),
        },
    ]
}
