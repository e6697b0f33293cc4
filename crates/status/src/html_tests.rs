use super::*;
use crate::fixtures::*;
use crate::markup_check::{Element, Mode, parse};
use crate::model::Edit;

fn status_page(incidents: &[Incident], views: &[ComponentView]) -> String {
    render_status_page(&PageInput {
        site: &site(),
        now: NOW,
        components: views,
        incidents,
    })
}

fn history(incidents: &[Incident], page: u64, per_page: u64, total: u64) -> String {
    render_history_page(&HistoryInput {
        site: &site(),
        now: NOW,
        incidents,
        page,
        per_page,
        total,
    })
}

/// Parses a page and checks what every page must have: well-formed,
/// `lang`, viewport, feed link, landmarks, headings in order, unique ids,
/// absolute links, a text label next to every state colour.
fn check_page(html: &str) -> Element {
    let root = parse(html, Mode::Html).unwrap_or_else(|error| panic!("{error}\n{html}"));
    assert_eq!(root.name, "html");
    assert_eq!(root.attribute("lang"), Some("en"));
    let head = root.only("head");
    assert!(
        head.children_named("meta")
            .any(|meta| meta.attribute("name") == Some("viewport"))
    );
    let feed = head
        .children_named("link")
        .find(|link| link.attribute("type") == Some("application/atom+xml"))
        .expect("feed link");
    assert_eq!(feed.attribute("rel"), Some("alternate"));
    assert_eq!(
        feed.attribute("href"),
        Some("https://status.example.com/status/feed.atom")
    );
    assert!(!head.only("title").text().is_empty());
    let body = root.only("body");
    for landmark in ["header", "main", "footer"] {
        assert_eq!(body.children_named(landmark).count(), 1, "{landmark}");
    }

    let mut headings = Vec::new();
    collect_headings(&root, &mut headings);
    assert_eq!(
        headings.first().map(|(level, _)| *level),
        Some(1),
        "{headings:?}"
    );
    for pair in headings.windows(2) {
        assert!(
            pair[1].0 <= pair[0].0 + 1,
            "a heading level skipped: {pair:?}"
        );
    }

    let mut ids = Vec::new();
    collect_attribute(&root, "id", &mut ids);
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate ids");

    for link in root.descendants("a") {
        let href = link.attribute("href").expect("href");
        assert!(
            href == "#main"
                || href.starts_with("https://status.example.com/")
                || link.attribute("rel") == Some("nofollow noopener"),
            "{href}"
        );
    }
    for class in ["banner", "component", "badge"] {
        for element in elements_with_class(&root, class) {
            assert!(!element.text().trim().is_empty(), "{class} without text");
        }
    }
    root
}

fn collect_headings(element: &Element, headings: &mut Vec<(u8, String)>) {
    for node in &element.children {
        if let crate::markup_check::Node::Element(child) = node {
            let bytes = child.name.as_bytes();
            if bytes.len() == 2 && bytes[0] == b'h' && bytes[1].is_ascii_digit() {
                headings.push((bytes[1] - b'0', child.text()));
            }
            collect_headings(child, headings);
        }
    }
}

fn collect_attribute(element: &Element, name: &str, values: &mut Vec<String>) {
    if let Some(value) = element.attribute(name) {
        values.push(value.to_owned());
    }
    for node in &element.children {
        if let crate::markup_check::Node::Element(child) = node {
            collect_attribute(child, name, values);
        }
    }
}

fn elements_with_class<'a>(element: &'a Element, class: &str) -> Vec<&'a Element> {
    let mut found = Vec::new();
    fn walk<'a>(element: &'a Element, class: &str, found: &mut Vec<&'a Element>) {
        if element
            .attribute("class")
            .is_some_and(|classes| classes.split(' ').any(|one| one == class))
        {
            found.push(element);
        }
        for node in &element.children {
            if let crate::markup_check::Node::Element(child) = node {
                walk(child, class, found);
            }
        }
    }
    walk(element, class, &mut found);
    found
}

fn article_titles(root: &Element) -> Vec<String> {
    root.descendants("article")
        .iter()
        .map(|article| {
            let heading = article
                .children
                .iter()
                .find_map(|node| match node {
                    crate::markup_check::Node::Element(child) if child.name.starts_with('h') => {
                        Some(child)
                    }
                    _ => None,
                })
                .expect("article heading");
            heading.text()
        })
        .collect()
}

#[test]
fn the_status_page_shows_every_section() {
    let html = status_page(&page_incidents(), &views());
    let root = check_page(&html);
    let text = root.only("body").text();

    assert_eq!(
        root.only("head").only("title").text(),
        "Example Mail status: Some systems degraded"
    );
    let banner = &elements_with_class(&root, "banner")[0];
    assert_eq!(
        banner.text().trim_start_matches(['!', ' ']),
        "Some systems degraded"
    );

    let sections: Vec<String> = root
        .descendants("h2")
        .iter()
        .map(|heading| heading.text())
        .collect();
    assert_eq!(
        sections,
        [
            "Current incidents",
            "Maintenance",
            "Components",
            "Past incidents"
        ]
    );
    // Open first, then maintenance in progress and upcoming, then resolved
    // most recently first; 91 days ago is off the page.
    assert_eq!(
        article_titles(&root),
        [
            "Incoming mail is delayed",
            "IMAP upgrade",
            "DNS move",
            "Webmail logins failed",
            "Sending was slow"
        ]
    );
    assert!(!text.contains("An old outage"));

    assert!(text.contains("Delivery currently takes about 15 minutes, usually under 5 seconds."));
    assert!(text.contains("Logins may take a second longer."));
    for label in ["Degraded performance", "Under maintenance", "Operational"] {
        assert!(text.contains(label), "{label}");
    }
    assert!(text.contains("In progress"));
    assert!(text.contains("Scheduled"));
    assert!(text.contains("Edited by sam"));
    assert!(
        !text.contains("It brok."),
        "earlier versions only on the incident page"
    );
    let history_link = "https://status.example.com/status/history";
    assert!(
        root.descendants("a")
            .iter()
            .any(|link| link.attribute("href") == Some(history_link))
    );
}

#[test]
fn a_timeline_reads_status_then_updates_with_author_and_time() {
    let html = status_page(&[the_issue()], &[]);
    let root = check_page(&html);
    let posts = root.descendants("h4");
    let headings: Vec<String> = posts.iter().map(|heading| heading.text()).collect();
    assert_eq!(
        headings,
        [
            "Status (by sam at Fri Apr 15 14:34 UTC)",
            "Update (by sam at Fri Apr 15 15:09 UTC)"
        ]
    );
    let times = posts[0].descendants("time");
    assert_eq!(times[0].attribute("datetime"), Some("2011-04-15T14:34:00Z"));
    assert!(html.contains(
        "<p>Incoming mail is arriving much faster than usual and delivery is delayed: it takes about<br>\n15 minutes"
    ));
}

#[test]
fn a_calm_page() {
    let html = status_page(&[], &[]);
    let root = check_page(&html);
    let text = root.only("body").text();
    assert!(text.contains("All systems operational"));
    assert!(text.contains("No incidents in the last 90 days."));
    let sections: Vec<String> = root.descendants("h2").iter().map(|h| h.text()).collect();
    assert_eq!(sections, ["Past incidents"]);
}

#[test]
fn hostile_text_is_shown_not_run() {
    let hostile = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
    let mut incident = the_issue();
    incident.title = hostile.into();
    incident.components = vec![hostile.into()];
    incident.posts[0].author = "\"><svg onload=alert(3)>".into();
    incident.posts[0].text =
        format!("{hostile}\njavascript:alert(4) https://example.com/\"onmouseover=\"alert(5)");
    incident.posts[0].edits.push(Edit {
        at: NOW,
        author: "<b>kim</b>".into(),
        previous_text: hostile.into(),
    });
    let view = ComponentView {
        name: hostile.into(),
        note: Some(hostile.into()),
        health: vec![hostile.into()],
        ..views().remove(2)
    };
    let site = Site::new("<i>Evil</i> & Co", "https://status.example.com").unwrap();
    for html in [
        render_status_page(&PageInput {
            site: &site,
            now: NOW,
            components: std::slice::from_ref(&view),
            incidents: std::slice::from_ref(&incident),
        }),
        render_incident_page(&site, &incident, NOW),
        render_history_page(&HistoryInput {
            site: &site,
            now: NOW,
            incidents: std::slice::from_ref(&incident),
            page: 1,
            per_page: 20,
            total: 1,
        }),
    ] {
        let root = parse(&html, Mode::Html).unwrap_or_else(|error| panic!("{error}"));
        for tag in ["script", "img", "svg", "b", "i"] {
            assert!(root.descendants(tag).is_empty(), "<{tag}> in\n{html}");
        }
        for link in root.descendants("a") {
            let href = link.attribute("href").unwrap();
            assert!(!href.to_lowercase().contains("javascript"), "{href}");
            assert!(!href.contains('"'), "{href}");
        }
        assert!(root.only("body").text().contains(hostile));
    }
}

#[test]
fn years_show_when_not_this_year() {
    let old = resolved(6, "An old outage", NOW - 120 * DAY, NOW - 91 * DAY);
    let html = history(&[old], 1, 20, 1);
    check_page(&html);
    assert!(html.contains(">Thu Dec 16 2010 15:34 UTC</time>"), "{html}");
    assert!(html.contains(">Fri Jan 14 15:34 UTC</time>"), "{html}");
}

#[test]
fn pagination_arithmetic() {
    let first = Pagination::new(0, 5, 0);
    assert_eq!(
        first,
        Pagination {
            page: 1,
            per_page: HISTORY_PER_PAGE_MIN,
            pages: 1,
            total: 0
        }
    );
    assert_eq!((first.offset(), first.exists()), (0, true));
    assert_eq!((first.newer(), first.older()), (None, None));

    let exact = Pagination::new(2, 20, 40);
    assert_eq!(
        (exact.pages, exact.offset(), exact.older(), exact.newer()),
        (2, 20, None, Some(1))
    );
    let one_more = Pagination::new(2, 20, 41);
    assert_eq!((one_more.pages, one_more.older()), (3, Some(3)));

    let beyond = Pagination::new(9, 20, 41);
    assert!(!beyond.exists());
    assert_eq!(beyond.newer(), Some(3), "back to the last page");
    assert_eq!(Pagination::new(1, 1_000, 41).per_page, HISTORY_PER_PAGE_MAX);
    assert_eq!(Pagination::new(u64::MAX, 20, 1).offset(), u64::MAX);
    assert_eq!(history_page_path(1), "/status/history");
    assert_eq!(history_page_path(3), "/status/history?page=3");
}

fn numbered(count: u64) -> Vec<Incident> {
    (1..=count)
        .map(|id| {
            let at = NOW - 1_000 * DAY + id as i64 * DAY;
            resolved(id, &format!("Incident {id}"), at, at + 60)
        })
        .collect()
}

#[test]
fn history_pages_link_newer_and_older() {
    let all = numbered(45);
    let newest_first: Vec<Incident> = all.iter().rev().cloned().collect();

    let html = history(&newest_first[..20], 1, 20, 45);
    let root = check_page(&html);
    assert_eq!(article_titles(&root)[0], "Incident 45");
    assert_eq!(article_titles(&root).len(), 20);
    let head_links: Vec<(Option<&str>, Option<&str>)> = root
        .only("head")
        .children_named("link")
        .map(|link| (link.attribute("rel"), link.attribute("href")))
        .collect();
    assert!(head_links.contains(&(
        Some("next"),
        Some("https://status.example.com/status/history?page=2")
    )));
    assert!(!html.contains("rel=\"prev\""));
    assert!(root.only("head").only("title").text() == "Example Mail incident history");

    let html = history(&newest_first[20..40], 2, 20, 45);
    let root = check_page(&html);
    assert!(html.contains("<a rel=\"prev\" href=\"https://status.example.com/status/history\">"));
    assert!(
        html.contains("<a rel=\"next\" href=\"https://status.example.com/status/history?page=3\">")
    );
    assert_eq!(
        root.only("head").only("title").text(),
        "Example Mail incident history, page 2 of 3"
    );

    let html = history(&newest_first[40..], 3, 20, 45);
    let root = check_page(&html);
    assert_eq!(
        article_titles(&root),
        [
            "Incident 5",
            "Incident 4",
            "Incident 3",
            "Incident 2",
            "Incident 1"
        ]
    );
    assert!(!html.contains("rel=\"next\""));

    // Given in any order, shown newest first; given too many, cut to a page.
    let html = history(&all, 1, 20, 45);
    let root = check_page(&html);
    let titles = article_titles(&root);
    assert_eq!(titles.len(), 20);
    assert_eq!(titles[0], "Incident 45");
}

#[test]
fn history_edges() {
    let html = history(&[], 1, 20, 0);
    let root = check_page(&html);
    assert!(
        root.only("body")
            .text()
            .contains("No incidents have been posted.")
    );
    assert!(!html.contains("rel=\"next\"") && !html.contains("rel=\"prev\""));

    let html = history(&[], 7, 20, 45);
    let root = check_page(&html);
    let text = root.only("body").text();
    assert!(
        text.contains("There is no page 7: the history has 3 pages."),
        "{text}"
    );
    assert!(html.contains("href=\"https://status.example.com/status/history?page=3\""));
}

#[test]
fn the_incident_page_keeps_earlier_versions() {
    let incidents = page_incidents();
    let edited = &incidents[4];
    let html = render_incident_page(&site(), edited, NOW);
    let root = check_page(&html);
    assert_eq!(root.descendants("h1")[0].text(), "Webmail logins failed");
    let details = root.descendants("details");
    assert_eq!(details.len(), 1);
    assert!(details[0].text().contains("Earlier versions (1)"));
    assert!(details[0].text().contains("It brok."));
    assert!(root.only("body").text().contains("Resolved"));
}

#[test]
fn maintenance_shows_its_window() {
    let work = maintenance(2, "IMAP upgrade", NOW - 600, NOW + 3_000);
    let html = status_page(&[work], &[]);
    let root = check_page(&html);
    let window = elements_with_class(&root, "window");
    assert_eq!(
        window[0].text(),
        "Window: Fri Apr 15 15:24 UTC to Fri Apr 15 16:24 UTC"
    );
    assert!(root.only("body").text().contains("Maintenance in progress"));
}
