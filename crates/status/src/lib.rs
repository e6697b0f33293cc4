//! The status page's model and formats: incidents and maintenance with
//! their timelines, components and their live health, the HTML pages, the
//! Atom feed, the JSON document, and the import of plain-text incident logs.
//!
//! # Design
//!
//! No I/O, no async, no clock. This crate is the layer under the HTTP
//! server, the store and the CLI: they read records and measure figures,
//! and pass them in with the time as Unix seconds; what comes back is a
//! string to send or a value to store. So every page, feed and decision
//! here is a function of its arguments, and the tests pin them exactly.
//!
//! An incident ([`Incident`]) has a title, the components it affects, an
//! impact, a state and a timeline of posts, oldest first; the first post is
//! its "Status", the others "Updates". Maintenance is an incident with a
//! window ([`Kind::Maintenance`]). What authors write is checked once, when
//! it is written ([`Incident::validate`], [`validate_text`] and their
//! siblings, each with a bound in bytes), and escaped every time it is
//! shown: the renderers write HTML and XML with `write!`, and every
//! interpolated string goes through one escaper ([`Escaped`]). Post texts
//! are plain text; [`text_to_html`] makes paragraphs, line breaks and
//! `http(s)`/`mailto` links of them and nothing else, so no markup from an
//! author ever reaches a page, a feed or the JSON's `html` field.
//!
//! What a component shows comes from three places ([`derive_components`]):
//! its stored state (set by hand or by an incident), the open incidents
//! naming it, and live health. The server feeds measured figures
//! ([`Health`]) to a [`HealthWatch`], which remembers since when each has
//! been over its threshold ([`HealthPolicy`]); one over it for longer than
//! the grace time is a [`Breach`] and raises its component to degraded
//! with a sentence customers understand ("delivery currently takes about
//! 15 minutes, usually under 5 seconds"), until a person confirms it with
//! an incident or overrides it by hand.
//!
//! The status page, its JSON twin and the feed choose what to show with the
//! same function ([`summarize`]): open incidents, maintenance in progress
//! or upcoming, and what closed in the last [`RECENT_DAYS`] days; every list
//! is bounded, and the history pages ([`Pagination`]) have the rest. Links
//! are absolute, from the configured public URL ([`Site`]).
//!
//! [`import_log`] reads the plain-text log format providers already keep
//! (`Status (by sam at Fri Apr 15 14:34 UTC)` ...), with a typed error
//! naming the line for anything it cannot read, and fingerprints each post
//! so that the same entry imported twice is stored once.
//!
//! # Example
//!
//! ```
//! use status::*;
//!
//! let site = Site::new("Example Mail", "https://status.example.com")?;
//! let log = "Status (by sam at Fri Apr 15 14:34 UTC)\n\
//!            Incoming mail is delayed. We are looking into it.\n\
//!            Update (by sam at Fri Apr 15 15:09 UTC)\n\
//!            The backlog is cleared.\n";
//! let imported = import_log(log, 2011)?;
//! let first = &imported.incidents[0];
//! assert_eq!(first.title, "Incoming mail is delayed");
//!
//! let now = first.resolved_at + 60;
//! let incident = Incident {
//!     id: 1,
//!     title: first.title.clone(),
//!     components: vec!["Incoming mail".into()],
//!     impact: Impact::Minor,
//!     state: State::Resolved,
//!     kind: Kind::Incident,
//!     created: first.posts[0].at,
//!     resolved: Some(first.resolved_at),
//!     posts: first.posts.iter().zip(1..).map(|(post, id)| Post {
//!         id,
//!         author: post.author.clone(),
//!         at: post.at,
//!         text: post.text.clone(),
//!         edits: Vec::new(),
//!     }).collect(),
//! };
//! incident.validate()?;
//!
//! // Delivery has been slow for ten minutes; nobody has posted yet.
//! let policy = HealthPolicy::default();
//! let health = Health { delivery_latency_p50_ms: Some(900_000), ..Health::default() };
//! let mut watch = HealthWatch::default();
//! watch.observe(&health, &policy, now - 600);
//! watch.observe(&health, &policy, now);
//! let components = [Component {
//!     name: "Incoming mail".into(),
//!     state: ComponentState::Operational,
//!     set_by: SetBy::Manual,
//!     set_at: 0,
//!     note: None,
//! }];
//! let found = breaches(&health, &watch, &policy, now);
//! let views = derive_components(&components, std::slice::from_ref(&incident), &found, now);
//! assert_eq!(views[0].state, ComponentState::Degraded);
//!
//! let incidents = [incident];
//! let page = render_status_page(&PageInput { site: &site, now, components: &views, incidents: &incidents });
//! assert!(page.contains("Some systems degraded"));
//! assert!(page.contains("Delivery currently takes about 15 minutes, usually under 5 seconds."));
//! let feed = render_feed(&site, &incidents, now);
//! assert!(feed.contains("<title>Update: Incoming mail is delayed</title>"));
//! let document = StatusDocument::new(&site, &views, &incidents, now);
//! assert_eq!(document.overall_text, "Some systems degraded");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does not do
//!
//! - Serve, store or send anything: routes, journal records, subscriber
//!   notices and the CLI are the callers' (the paths the pages link to are
//!   [`STATUS_PATH`], [`HISTORY_PATH`] with `?page=N`, [`incident_path`],
//!   [`FEED_PATH`] and [`JSON_PATH`]).
//! - Measure health: the server measures, this crate judges the figures.
//! - Link bare domains (`www.example.com`) or any scheme but `http`,
//!   `https` and `mailto`; no Markdown.
//! - Import a log spanning several years in one go: every Status is read in
//!   the year given (an Update may roll into the next); a wrong year is
//!   caught by the day names and reported with the line.
//! - Localise: the pages and dates are in English, times in UTC.

#![warn(missing_docs)]

mod atom;
mod date;
mod error;
mod health;
mod html;
mod import;
mod json;
mod model;
mod notice;
mod site;
mod subscribe;
mod summary;
mod text;
mod validate;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod markup_check;

pub use atom::{FEED_ENTRIES_MAX, render_feed};
pub use date::{TIME_MAX, TIME_MIN, human_time, parse_rfc3339_utc, rfc3339};
pub use error::{Counted, Field, ImportError, ImportErrorKind, ValidationError};
pub use health::{
    Breach, ComponentView, Health, HealthPolicy, HealthWatch, Signal, breaches, derive_components,
    duration,
};
pub use html::{
    FEED_PATH, HISTORY_PATH, HISTORY_PER_PAGE_MAX, HISTORY_PER_PAGE_MIN, HistoryInput, JSON_PATH,
    PageInput, Pagination, STATUS_PATH, history_page_path, incident_path, render_history_page,
    render_incident_page, render_status_page,
};
pub use import::{
    Fingerprint, IMPORT_BYTES_MAX, IMPORT_INCIDENTS_MAX, Import, ImportedIncident, ImportedPost,
    fingerprint, import_log,
};
pub use json::{ComponentDocument, IncidentDocument, PhaseName, PostDocument, StatusDocument};
pub use model::{
    COMPONENTS_PER_INCIDENT_MAX, Component, ComponentState, EDITS_PER_POST_MAX, Edit, Impact,
    Incident, Kind, POSTS_PER_INCIDENT_MAX, Phase, Post, PostRole, SetBy, State,
};
pub use notice::{
    CONFIRM_PATH, MailHeaders, SUBSCRIBE_PATH, UNSUBSCRIBE_PATH, mail_date, notice_sms_text,
    render_confirmation_mail, render_notice_mail,
};
pub use site::{PUBLIC_URL_BYTES_MAX, SITE_NAME_BYTES_MAX, Site};
pub use subscribe::{render_message_page, render_subscribe_page, render_unsubscribe_page};
pub use summary::{
    MAINTENANCE_SHOWN_MAX, OPEN_SHOWN_MAX, RECENT_DAYS, RECENT_SHOWN_MAX, Summary, banner,
    summarize,
};
pub use text::{Escaped, URL_BYTES_MAX, escape, push_escaped, text_to_html};
pub use validate::{
    AUTHOR_BYTES_MAX, COMPONENT_NAME_BYTES_MAX, NOTE_BYTES_MAX, TEXT_BYTES_MAX, TITLE_BYTES_MAX,
    normalize_text, validate_author, validate_component_name, validate_text, validate_title,
};
