//! The Atom feed (RFC 4287) at `/status/feed.atom`: one entry per post,
//! newest first, so a feed reader shows each Status and each Update as it
//! is posted.
//!
//! Entry ids are `tag:` URIs (RFC 4151) built from the public URL's host,
//! the incident's creation date and the incident and post ids, so they stay
//! the same for as long as those do, and an edited post is the same entry
//! with a later `<updated>` rather than a new one. Text goes through the
//! crate's one escaper; the post's HTML goes in `<content type="html">`,
//! escaped once more, as RFC 4287 wants.

use std::fmt::{self, Write as _};

use crate::date::{iso_date, rfc3339};
use crate::html::{FEED_PATH, STATUS_PATH, incident_path};
use crate::model::{Incident, Post, PostRole};
use crate::site::Site;
use crate::text::{Escaped, text_to_html};

/// Most entries in the feed: feed readers poll it, so it stays small; the
/// history pages have everything.
pub const FEED_ENTRIES_MAX: usize = 50;

/// The feed of the latest [`FEED_ENTRIES_MAX`] posts of `incidents`, newest
/// first. The feed's `<updated>` is its newest entry's (an edit counts), or
/// `now` when there is no entry.
pub fn render_feed(site: &Site, incidents: &[Incident], now: i64) -> String {
    let mut out = String::with_capacity(32 * 1024);
    // Writing to a String cannot fail.
    let _ = feed(&mut out, site, incidents, now);
    out
}

fn feed(out: &mut String, site: &Site, incidents: &[Incident], now: i64) -> fmt::Result {
    let mut posts: Vec<(&Incident, usize, &Post)> = incidents
        .iter()
        .flat_map(|incident| {
            incident
                .posts
                .iter()
                .enumerate()
                .map(move |(index, post)| (incident, index, post))
        })
        .collect();
    posts.sort_by_key(|(incident, index, post)| std::cmp::Reverse((post.at, incident.id, *index)));
    posts.truncate(FEED_ENTRIES_MAX);
    let updated = posts
        .iter()
        .map(|(_, _, post)| post.updated())
        .max()
        .unwrap_or(now);

    let feed_url = site.url(FEED_PATH);
    writeln!(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>")?;
    writeln!(out, "<feed xmlns=\"http://www.w3.org/2005/Atom\">")?;
    writeln!(out, "<id>{}</id>", Escaped(&feed_url))?;
    writeln!(out, "<title>{} status</title>", Escaped(site.name()))?;
    writeln!(out, "<updated>{}</updated>", Escaped(&rfc3339(updated)))?;
    writeln!(
        out,
        "<link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>",
        Escaped(&feed_url)
    )?;
    writeln!(
        out,
        "<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        Escaped(&site.url(STATUS_PATH))
    )?;
    writeln!(out, "<generator>Postern</generator>")?;
    for (incident, index, post) in posts {
        entry(out, site, incident, index, post)?;
    }
    writeln!(out, "</feed>")
}

fn entry(
    out: &mut String,
    site: &Site,
    incident: &Incident,
    index: usize,
    post: &Post,
) -> fmt::Result {
    writeln!(out, "<entry>")?;
    writeln!(out, "<id>{}</id>", Escaped(&entry_id(site, incident, post)))?;
    writeln!(
        out,
        "<title>{}: {}</title>",
        PostRole::of_index(index).label(),
        Escaped(&incident.title)
    )?;
    let link = format!(
        "{}#incident-{}-post-{}",
        site.url(&incident_path(incident.id)),
        incident.id,
        post.id
    );
    writeln!(
        out,
        "<link rel=\"alternate\" type=\"text/html\" href=\"{}\"/>",
        Escaped(&link)
    )?;
    writeln!(out, "<published>{}</published>", Escaped(&rfc3339(post.at)))?;
    writeln!(
        out,
        "<updated>{}</updated>",
        Escaped(&rfc3339(post.updated()))
    )?;
    writeln!(
        out,
        "<author><name>{}</name></author>",
        Escaped(&post.author)
    )?;
    for component in &incident.components {
        writeln!(out, "<category term=\"{}\"/>", Escaped(component))?;
    }
    writeln!(
        out,
        "<content type=\"html\">{}</content>",
        Escaped(&text_to_html(&post.text))
    )?;
    writeln!(out, "</entry>")
}

/// `tag:<host>,<incident's creation date>:incident-<id>/post-<id>`.
fn entry_id(site: &Site, incident: &Incident, post: &Post) -> String {
    format!(
        "tag:{},{}:incident-{}/post-{}",
        site.tag_authority(),
        iso_date(incident.created),
        incident.id,
        post.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use crate::markup_check::{Element, Mode, parse};
    use crate::model::Edit;

    /// Parses the feed and checks RFC 4287's rules for what it contains:
    /// one id, title and updated per feed and per entry, an author for each
    /// entry (the feed has none), dates in RFC 3339, a self link.
    fn check_feed(xml: &str) -> Element {
        let feed = parse(xml, Mode::Xml).unwrap_or_else(|error| panic!("{error}\n{xml}"));
        assert_eq!(feed.name, "feed");
        assert_eq!(feed.attribute("xmlns"), Some("http://www.w3.org/2005/Atom"));
        assert!(!feed.only("id").text().is_empty());
        assert!(!feed.only("title").text().is_empty());
        check_date(&feed.only("updated").text());
        assert!(
            feed.children_named("link")
                .any(|link| link.attribute("rel") == Some("self"))
        );
        let mut ids = Vec::new();
        for entry in feed.children_named("entry") {
            let id = entry.only("id").text();
            assert!(id.starts_with("tag:"), "{id}");
            ids.push(id);
            assert!(!entry.only("title").text().is_empty());
            check_date(&entry.only("updated").text());
            check_date(&entry.only("published").text());
            assert!(!entry.only("author").only("name").text().is_empty());
            let content = entry.only("content");
            assert_eq!(content.attribute("type"), Some("html"));
            assert!(
                entry
                    .children_named("link")
                    .any(|link| link.attribute("rel") == Some("alternate"))
            );
        }
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "entry ids are unique");
        feed
    }

    fn check_date(date: &str) {
        let bytes = date.as_bytes();
        let shape = "dddd-dd-ddTdd:dd:ddZ".as_bytes();
        assert_eq!(bytes.len(), shape.len(), "{date}");
        for (byte, expected) in bytes.iter().zip(shape) {
            match expected {
                b'd' => assert!(byte.is_ascii_digit(), "{date}"),
                other => assert_eq!(byte, other, "{date}"),
            }
        }
    }

    #[test]
    fn one_entry_per_post_newest_first() {
        let xml = render_feed(&site(), &page_incidents(), NOW);
        let feed = check_feed(&xml);
        let titles: Vec<String> = feed
            .children_named("entry")
            .map(|entry| entry.only("title").text())
            .collect();
        assert_eq!(
            titles,
            [
                "Update: Incoming mail is delayed",
                "Status: Incoming mail is delayed",
                "Status: IMAP upgrade",
                "Status: DNS move",
                "Status: Webmail logins failed",
                "Status: Sending was slow",
                "Status: An old outage",
            ]
        );
        assert_eq!(feed.only("title").text(), "Example Mail status");
        assert_eq!(
            feed.only("id").text(),
            "https://status.example.com/status/feed.atom"
        );
        assert_eq!(feed.only("updated").text(), "2011-04-15T15:09:00Z");

        let newest = feed.children_named("entry").next().unwrap();
        assert_eq!(
            newest.only("id").text(),
            "tag:status.example.com,2011-04-15:incident-1/post-2"
        );
        assert_eq!(newest.only("author").only("name").text(), "sam");
        assert_eq!(newest.only("published").text(), "2011-04-15T15:09:00Z");
        assert_eq!(
            newest.only("content").text(),
            "<p>The backlog is cleared. Delivery takes under 10 seconds again.</p>\n"
        );
        assert_eq!(
            newest.only("link").attribute("href"),
            Some("https://status.example.com/status/incidents/1#incident-1-post-2")
        );
        assert_eq!(
            newest.only("category").attribute("term"),
            Some("Incoming mail")
        );
    }

    #[test]
    fn ids_are_stable_and_edits_update_the_entry() {
        let mut incidents = vec![the_issue()];
        let before = render_feed(&site(), &incidents, NOW);
        assert_eq!(before, render_feed(&site(), &incidents, NOW + 1_000));
        incidents[0].posts[0].edits.push(Edit {
            at: NOW,
            author: "kim".into(),
            previous_text: STATUS_TEXT.into(),
        });
        incidents[0].posts[0].text = "Corrected.".into();
        let feed = check_feed(&render_feed(&site(), &incidents, NOW));
        let status = feed.children_named("entry").nth(1).unwrap();
        assert_eq!(
            status.only("id").text(),
            "tag:status.example.com,2011-04-15:incident-1/post-1"
        );
        assert_eq!(status.only("updated").text(), "2011-04-15T15:34:00Z");
        assert_eq!(status.only("published").text(), "2011-04-15T14:34:00Z");
        assert_eq!(feed.only("updated").text(), "2011-04-15T15:34:00Z");
    }

    #[test]
    fn an_empty_feed_is_valid() {
        let feed = check_feed(&render_feed(&site(), &[], NOW));
        assert_eq!(feed.children_named("entry").count(), 0);
        assert_eq!(feed.only("updated").text(), "2011-04-15T15:34:00Z");
    }

    #[test]
    fn the_feed_is_bounded() {
        let many: Vec<Incident> = (0..40)
            .map(|id| {
                let mut incident = the_issue();
                incident.id = id;
                incident
            })
            .collect();
        let feed = check_feed(&render_feed(&site(), &many, NOW));
        assert_eq!(feed.children_named("entry").count(), FEED_ENTRIES_MAX);
    }

    #[test]
    fn hostile_text_is_escaped_twice_over() {
        let hostile = "<script>alert(1)</script> ]]> &amp; \"'\u{0}\u{1b}";
        let mut incident = the_issue();
        incident.title = hostile.into();
        incident.components = vec![hostile.into()];
        incident.posts[0].author = hostile.into();
        incident.posts[0].text = format!("{hostile}\njavascript:alert(1)");
        let site = Site::new("<b>Evil</b> & \"Co\"", "https://status.example.com").unwrap();
        let xml = render_feed(&site, &[incident], NOW);
        let feed = check_feed(&xml);
        let displayed = hostile.replace(['\u{0}', '\u{1b}'], "\u{fffd}");
        assert_eq!(feed.only("title").text(), "<b>Evil</b> & \"Co\" status");
        let status = feed.children_named("entry").nth(1).unwrap();
        assert_eq!(status.only("title").text(), format!("Status: {displayed}"));
        assert_eq!(status.only("author").only("name").text(), displayed);
        // The content, once unescaped by the feed reader, is our safe HTML.
        let content = status.only("content").text();
        assert!(content.starts_with("<p>&lt;script&gt;"), "{content}");
        assert!(!content.contains("<a"), "{content}");
        assert!(!xml.contains("<script"));
    }
}
