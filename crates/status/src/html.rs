//! The pages: the status page, the history pages and one incident's page.
//!
//! Server-rendered HTML5 that needs no JavaScript and no request beyond the
//! page itself (the CSS is inline, the fonts are the system's). Written with
//! `write!`, every interpolated string through [`Escaped`], the crate's one
//! escaper; post texts through [`text_to_html`], which escapes too.
//!
//! For people on a phone at 2:30 in the morning and for screen readers: a
//! viewport meta and a fluid single column, tap targets of 44 CSS pixels,
//! `lang`, `<header>`, `<main>`, `<footer>` and a skip link, headings that
//! never skip a level, every state written out in words (colour and the
//! icon only repeat it; the icon is hidden from screen readers), text
//! contrast of at least 7:1, and times in `<time datetime>` elements.

use std::fmt::{self, Write as _};

use crate::date::{human_time, rfc3339};
use crate::health::ComponentView;
use crate::model::{ComponentState, Incident, Kind, Phase, PostRole, State};
use crate::site::Site;
use crate::summary::{RECENT_DAYS, banner, summarize};
use crate::text::{Escaped, text_to_html};

/// Path of the status page.
pub const STATUS_PATH: &str = "/status";
/// Path of the first history page; later pages add `?page=N`.
pub const HISTORY_PATH: &str = "/status/history";
/// Path of the Atom feed.
pub const FEED_PATH: &str = "/status/feed.atom";
/// Path of the JSON document.
pub const JSON_PATH: &str = "/api/status";

/// Path of one incident's page (`/status/incidents/<id>`), the permalink
/// the feed and the pages link to.
pub fn incident_path(id: u64) -> String {
    format!("/status/incidents/{id}")
}

/// Path of history page `page` (1-based): the first is [`HISTORY_PATH`].
pub fn history_page_path(page: u64) -> String {
    if page <= 1 {
        HISTORY_PATH.to_owned()
    } else {
        format!("{HISTORY_PATH}?page={page}")
    }
}

/// Fewest incidents on a history page.
pub const HISTORY_PER_PAGE_MIN: u64 = 20;
/// Most incidents on a history page: each comes with its whole timeline.
pub const HISTORY_PER_PAGE_MAX: u64 = 100;

const STYLE: &str = include_str!("style.css");

/// What the status page shows.
#[derive(Debug, Clone, Copy)]
pub struct PageInput<'a> {
    /// The site's name and public URL.
    pub site: &'a Site,
    /// The time of the page, Unix seconds.
    pub now: i64,
    /// Components as shown ([`crate::derive_components`]).
    pub components: &'a [ComponentView],
    /// At least every open incident, every maintenance not completed and
    /// everything closed in the last [`RECENT_DAYS`] days; older incidents
    /// are left out of the page, so passing them is harmless.
    pub incidents: &'a [Incident],
}

/// What a history page shows.
#[derive(Debug, Clone, Copy)]
pub struct HistoryInput<'a> {
    /// The site's name and public URL.
    pub site: &'a Site,
    /// The time of the page, Unix seconds (for the years shown).
    pub now: i64,
    /// The incidents of this page: those at [`Pagination::offset`], at
    /// most [`Pagination::per_page`], newest first. More are cut off.
    pub incidents: &'a [Incident],
    /// The page asked for, 1-based; 0 is taken as 1.
    pub page: u64,
    /// Incidents per page, clamped to [`HISTORY_PER_PAGE_MIN`]
    /// ..= [`HISTORY_PER_PAGE_MAX`].
    pub per_page: u64,
    /// How many incidents there are in all.
    pub total: u64,
}

/// Where a history page is in the whole history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pagination {
    /// The page, 1-based (may be past the last one: see [`Pagination::exists`]).
    pub page: u64,
    /// Incidents per page, within the bounds.
    pub per_page: u64,
    /// Pages in all, at least 1 (an empty history has one empty page).
    pub pages: u64,
    /// Incidents in all.
    pub total: u64,
}

impl Pagination {
    /// The page `page` of `total` incidents, `per_page` a page, with page
    /// 0 taken as 1 and `per_page` clamped to its bounds.
    pub fn new(page: u64, per_page: u64, total: u64) -> Pagination {
        let per_page = per_page.clamp(HISTORY_PER_PAGE_MIN, HISTORY_PER_PAGE_MAX);
        Pagination {
            page: page.max(1),
            per_page,
            pages: total.div_ceil(per_page).max(1),
            total,
        }
    }

    /// How many incidents come before this page's first.
    pub fn offset(&self) -> u64 {
        (self.page - 1).saturating_mul(self.per_page)
    }

    /// Whether the page is within the history (a server may answer 404
    /// for one that is not; the page rendered says so and links back).
    pub fn exists(&self) -> bool {
        self.page <= self.pages
    }

    /// The page of newer incidents, if there is one.
    pub fn newer(&self) -> Option<u64> {
        (self.page > 1).then(|| (self.page - 1).min(self.pages))
    }

    /// The page of older incidents, if there is one.
    pub fn older(&self) -> Option<u64> {
        (self.page < self.pages).then(|| self.page + 1)
    }
}

/// The status page (`/status`): the overall state, current incidents,
/// maintenance, components with their live health, what was resolved in
/// the last [`RECENT_DAYS`] days, and links to the history, the feed and
/// the JSON document.
pub fn render_status_page(input: &PageInput<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing to a String cannot fail.
    let _ = status_page(&mut out, input);
    out
}

/// A history page (`/status/history`, `?page=N`): every incident with its
/// whole timeline, newest first, with links to newer and older pages.
pub fn render_history_page(input: &HistoryInput<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = history_page(&mut out, input);
    out
}

/// One incident's page (`/status/incidents/<id>`), with its whole timeline
/// and the earlier versions of edited posts.
pub fn render_incident_page(site: &Site, incident: &Incident, now: i64) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = incident_page(&mut out, site, incident, now);
    out
}

fn status_page(out: &mut String, input: &PageInput<'_>) -> fmt::Result {
    let site = input.site;
    let now = input.now;
    let summary = summarize(input.components, input.incidents, now);
    let headline = banner(summary.overall);
    let title = format!("{} status: {headline}", site.name());
    head(out, site, &title, &[])?;
    writeln!(out, "<header>")?;
    writeln!(out, "<h1>{} status</h1>", Escaped(site.name()))?;
    writeln!(
        out,
        "<p class=\"banner {}\"><span class=\"icon\" aria-hidden=\"true\">{}</span> {}</p>",
        state_class(summary.overall),
        icon(summary.overall),
        Escaped(headline)
    )?;
    write!(out, "<p class=\"updated\">As of ")?;
    time(out, now, now)?;
    writeln!(
        out,
        ". This page does not update itself: reload it for news.</p>"
    )?;
    writeln!(out, "</header>")?;
    writeln!(out, "<main id=\"main\">")?;

    if !summary.open.is_empty() {
        section_start(out, "current", "Current incidents")?;
        for incident in &summary.open {
            article(out, site, incident, now, 3, false)?;
        }
        writeln!(out, "</section>")?;
    }
    if !summary.maintenance.is_empty() {
        section_start(out, "maintenance", "Maintenance")?;
        for incident in &summary.maintenance {
            article(out, site, incident, now, 3, false)?;
        }
        writeln!(out, "</section>")?;
    }
    if !input.components.is_empty() {
        section_start(out, "components", "Components")?;
        writeln!(out, "<ul class=\"components\">")?;
        for view in input.components {
            component(out, view)?;
        }
        writeln!(out, "</ul>\n</section>")?;
    }
    section_start(out, "past", "Past incidents")?;
    writeln!(
        out,
        "<p class=\"hint\">Resolved in the last {RECENT_DAYS} days. Older ones are in the \
         <a href=\"{}\">incident history</a>.</p>",
        Escaped(&site.url(HISTORY_PATH))
    )?;
    if summary.recent.is_empty() {
        writeln!(out, "<p>No incidents in the last {RECENT_DAYS} days.</p>")?;
    }
    for incident in &summary.recent {
        article(out, site, incident, now, 3, false)?;
    }
    writeln!(out, "</section>")?;
    if site.subscriptions() {
        section_start(out, "subscribe", "Get notices by email")?;
        crate::subscribe::subscribe_form(out, site)?;
        writeln!(out, "</section>")?;
    }
    writeln!(out, "</main>")?;
    footer(out, site, false)
}

fn history_page(out: &mut String, input: &HistoryInput<'_>) -> fmt::Result {
    let site = input.site;
    let pagination = Pagination::new(input.page, input.per_page, input.total);
    let title = if pagination.page == 1 {
        format!("{} incident history", site.name())
    } else {
        format!(
            "{} incident history, page {} of {}",
            site.name(),
            pagination.page,
            pagination.pages
        )
    };
    let mut links = Vec::new();
    if let Some(newer) = pagination.newer() {
        links.push(("prev", site.url(&history_page_path(newer))));
    }
    if let Some(older) = pagination.older() {
        links.push(("next", site.url(&history_page_path(older))));
    }
    head(out, site, &title, &links)?;
    writeln!(out, "<header>")?;
    writeln!(out, "<h1>{} incident history</h1>", Escaped(site.name()))?;
    writeln!(
        out,
        "<p><a href=\"{}\">Current status</a></p>",
        Escaped(&site.url(STATUS_PATH))
    )?;
    writeln!(out, "</header>\n<main id=\"main\">")?;
    writeln!(
        out,
        "<p class=\"hint\">Every incident and maintenance, newest first, each with its whole \
         timeline. Page {} of {}.</p>",
        pagination.page, pagination.pages
    )?;
    let mut incidents: Vec<&Incident> = input.incidents.iter().collect();
    incidents.sort_by_key(|incident| std::cmp::Reverse((incident.created, incident.id)));
    // Bounded by the clamped page size, so the caller's slice cannot make
    // a page of unbounded size.
    incidents.truncate(usize::try_from(pagination.per_page).unwrap_or(usize::MAX));
    if !pagination.exists() {
        writeln!(
            out,
            "<p>There is no page {}: the history has {} {}. <a href=\"{}\">Go to the last page</a>.</p>",
            pagination.page,
            pagination.pages,
            if pagination.pages == 1 {
                "page"
            } else {
                "pages"
            },
            Escaped(&site.url(&history_page_path(pagination.pages)))
        )?;
    } else if incidents.is_empty() {
        writeln!(out, "<p>No incidents have been posted.</p>")?;
    }
    for incident in incidents {
        article(out, site, incident, input.now, 2, false)?;
    }
    if pagination.newer().is_some() || pagination.older().is_some() {
        writeln!(
            out,
            "<nav aria-label=\"History pages\">\n<ul class=\"pager\">"
        )?;
        if let Some(newer) = pagination.newer() {
            writeln!(
                out,
                "<li><a rel=\"prev\" href=\"{}\">Newer incidents</a></li>",
                Escaped(&site.url(&history_page_path(newer)))
            )?;
        }
        if let Some(older) = pagination.older() {
            writeln!(
                out,
                "<li><a rel=\"next\" href=\"{}\">Older incidents</a></li>",
                Escaped(&site.url(&history_page_path(older)))
            )?;
        }
        writeln!(out, "</ul>\n</nav>")?;
    }
    writeln!(out, "</main>")?;
    footer(out, site, true)
}

fn incident_page(out: &mut String, site: &Site, incident: &Incident, now: i64) -> fmt::Result {
    let title = format!("{}: {}", incident.title, site.name());
    head(out, site, &title, &[])?;
    writeln!(
        out,
        "<header>\n<p><a href=\"{}\">{} status</a></p>\n</header>",
        Escaped(&site.url(STATUS_PATH)),
        Escaped(site.name())
    )?;
    writeln!(out, "<main id=\"main\">")?;
    article(out, site, incident, now, 1, true)?;
    writeln!(out, "</main>")?;
    footer(out, site, true)
}

/// From the doctype to the skip link.
pub(crate) fn head(
    out: &mut String,
    site: &Site,
    title: &str,
    links: &[(&str, String)],
) -> fmt::Result {
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>")?;
    writeln!(out, "<meta charset=\"utf-8\">")?;
    writeln!(
        out,
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
    )?;
    writeln!(out, "<title>{}</title>", Escaped(title))?;
    writeln!(
        out,
        "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{} status feed\" href=\"{}\">",
        Escaped(site.name()),
        Escaped(&site.url(FEED_PATH))
    )?;
    for (rel, href) in links {
        writeln!(
            out,
            "<link rel=\"{}\" href=\"{}\">",
            Escaped(rel),
            Escaped(href)
        )?;
    }
    writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>")?;
    writeln!(
        out,
        "<a class=\"skip\" href=\"#main\">Skip to main content</a>"
    )
}

pub(crate) fn footer(out: &mut String, site: &Site, link_status: bool) -> fmt::Result {
    writeln!(
        out,
        "<footer>\n<nav aria-label=\"Status pages\">\n<ul class=\"links\">"
    )?;
    let mut links = vec![
        ("Incident history", HISTORY_PATH),
        ("Atom feed", FEED_PATH),
        ("JSON", JSON_PATH),
    ];
    if site.subscriptions() {
        links.push(("Get notices by email", crate::notice::SUBSCRIBE_PATH));
    }
    if link_status {
        links.insert(0, ("Current status", STATUS_PATH));
    }
    for (label, path) in links {
        writeln!(
            out,
            "<li><a href=\"{}\">{}</a></li>",
            Escaped(&site.url(path)),
            Escaped(label)
        )?;
    }
    writeln!(out, "</ul>\n</nav>")?;
    writeln!(
        out,
        "<p>All times are in UTC.</p>\n</footer>\n</body>\n</html>"
    )
}

fn section_start(out: &mut String, id: &str, heading: &str) -> fmt::Result {
    writeln!(
        out,
        "<section aria-labelledby=\"{0}-heading\">\n<h2 id=\"{0}-heading\">{1}</h2>",
        Escaped(id),
        Escaped(heading)
    )
}

fn component(out: &mut String, view: &ComponentView) -> fmt::Result {
    writeln!(out, "<li class=\"component {}\">", state_class(view.state))?;
    writeln!(
        out,
        "<span class=\"component-name\">{}</span>",
        Escaped(&view.name)
    )?;
    writeln!(
        out,
        "<span class=\"component-state\"><span class=\"icon\" aria-hidden=\"true\">{}</span> {}</span>",
        icon(view.state),
        Escaped(view.state.label())
    )?;
    for sentence in &view.health {
        writeln!(
            out,
            "<p class=\"health\">{}.</p>",
            Escaped(&capitalized(sentence))
        )?;
    }
    if let Some(note) = &view.note {
        writeln!(out, "<p class=\"note\">{}</p>", Escaped(note))?;
    }
    writeln!(out, "</li>")
}

/// One incident with its timeline. `level` is the incident's heading level
/// (1 to 3); posts are headed one level below.
fn article(
    out: &mut String,
    site: &Site,
    incident: &Incident,
    now: i64,
    level: u8,
    earlier_versions: bool,
) -> fmt::Result {
    let level = level.clamp(1, 5);
    let id = incident.id;
    writeln!(out, "<article class=\"incident\" id=\"incident-{id}\">")?;
    writeln!(
        out,
        "<h{level}><a href=\"{}\">{}</a></h{level}>",
        Escaped(&site.url(&incident_path(id))),
        Escaped(&incident.title)
    )?;
    let phase = incident.phase(now);
    let badge = match phase {
        Phase::Closed(_) => ComponentState::Operational,
        Phase::Upcoming | Phase::InProgress => ComponentState::Maintenance,
        Phase::Open => incident.impact.component_state(),
    };
    write!(
        out,
        "<p class=\"facts\"><span class=\"badge {}\">{}</span>",
        state_class(badge),
        Escaped(phase_label(incident, phase))
    )?;
    if !incident.is_maintenance() {
        write!(out, " Impact: {}.", Escaped(incident.impact.label()))?;
    }
    if !incident.components.is_empty() {
        write!(
            out,
            " Affects: {}.",
            Escaped(&incident.components.join(", "))
        )?;
    }
    writeln!(out, "</p>")?;
    if let Kind::Maintenance { starts, ends } = incident.kind {
        write!(out, "<p class=\"window\">Window: ")?;
        time(out, starts, now)?;
        write!(out, " to ")?;
        time(out, ends, now)?;
        writeln!(out, "</p>")?;
    }
    if let Phase::Closed(at) = phase {
        let word = if incident.is_maintenance() {
            "Completed"
        } else {
            "Resolved"
        };
        write!(out, "<p class=\"closed\">{word} ")?;
        time(out, at, now)?;
        writeln!(out, "</p>")?;
    }
    writeln!(out, "<ol class=\"timeline\">")?;
    let post_level = level + 1;
    for (index, post) in incident.posts.iter().enumerate() {
        writeln!(
            out,
            "<li class=\"post\" id=\"incident-{id}-post-{}\">",
            post.id
        )?;
        write!(
            out,
            "<h{post_level}>{} <span class=\"byline\">(by {} at ",
            PostRole::of_index(index).label(),
            Escaped(&post.author)
        )?;
        time(out, post.at, now)?;
        writeln!(out, ")</span></h{post_level}>")?;
        write!(
            out,
            "<div class=\"text\">\n{}</div>\n",
            text_to_html(&post.text)
        )?;
        if let Some(last) = post.edits.last() {
            write!(
                out,
                "<p class=\"edited\">Edited by {} at ",
                Escaped(&last.author)
            )?;
            time(out, last.at, now)?;
            writeln!(out, "</p>")?;
        }
        if earlier_versions && !post.edits.is_empty() {
            writeln!(
                out,
                "<details>\n<summary>Earlier versions ({})</summary>\n<ol>",
                post.edits.len()
            )?;
            for edit in post.edits.iter().rev() {
                write!(out, "<li><p class=\"edited\">Until ")?;
                time(out, edit.at, now)?;
                writeln!(
                    out,
                    ":</p>\n<div class=\"text\">\n{}</div></li>",
                    text_to_html(&edit.previous_text)
                )?;
            }
            writeln!(out, "</ol>\n</details>")?;
        }
        writeln!(out, "</li>")?;
    }
    writeln!(out, "</ol>\n</article>")
}

/// The incident's state as its badge says it. Maintenance is labelled by
/// its phase, which follows its window even if nobody changed its state.
fn phase_label(incident: &Incident, phase: Phase) -> &'static str {
    match (incident.is_maintenance(), phase) {
        (true, Phase::Upcoming) => State::Scheduled.label(),
        (true, Phase::InProgress) => State::InProgress.label(),
        (true, _) => State::Completed.label(),
        (false, Phase::Closed(_)) => State::Resolved.label(),
        (false, _) => incident.state.label(),
    }
}

fn time(out: &mut String, at: i64, now: i64) -> fmt::Result {
    write!(
        out,
        "<time datetime=\"{}\">{}</time>",
        Escaped(&rfc3339(at)),
        Escaped(&human_time(at, now))
    )
}

fn state_class(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Operational => "state-operational",
        ComponentState::Degraded => "state-degraded",
        ComponentState::PartialOutage => "state-partial",
        ComponentState::MajorOutage => "state-major",
        ComponentState::Maintenance => "state-maintenance",
    }
}

/// A symbol repeating the state, for sighted readers scanning the page.
fn icon(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Operational => "✓",
        ComponentState::Degraded | ComponentState::PartialOutage => "!",
        ComponentState::MajorOutage => "✕",
        ComponentState::Maintenance => "◷",
    }
}

fn capitalized(sentence: &str) -> String {
    let mut chars = sentence.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "html_tests.rs"]
mod tests;
