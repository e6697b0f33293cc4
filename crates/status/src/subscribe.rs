//! The subscriber pages: the form, the answers to subscribing, confirming and
//! unsubscribing, and the page an unsubscribe link opens (a button, since a
//! GET must not unsubscribe: mail scanners follow links). Plain forms, no
//! JavaScript; every string goes through the one escaper.

use crate::html::{footer, head};
use crate::notice::{SUBSCRIBE_PATH, UNSUBSCRIBE_PATH};
use crate::site::Site;
use crate::text::Escaped;
use std::fmt::{self, Write as _};

/// The subscribe form, with a message above it (an error to fix, say).
pub fn render_subscribe_page(site: &Site, message: Option<&str>) -> String {
    let mut out = String::new();
    let _ = subscribe_page(&mut out, site, message);
    out
}

/// A short page that answers a request: a heading and a sentence.
pub fn render_message_page(site: &Site, heading: &str, text: &str) -> String {
    let mut out = String::new();
    let _ = message_page(&mut out, site, heading, text);
    out
}

/// What an unsubscribe link shows: who is unsubscribed, and the button that does it.
pub fn render_unsubscribe_page(site: &Site, token: &str, address: &str) -> String {
    let mut out = String::new();
    let _ = unsubscribe_page(&mut out, site, token, address);
    out
}

/// The form itself, also shown on the status page.
pub(crate) fn subscribe_form(out: &mut String, site: &Site) -> fmt::Result {
    writeln!(
        out,
        "<form method=\"post\" action=\"{}\" class=\"subscribe\">\n\
         <label for=\"subscribe-email\">Email address</label>\n\
         <input id=\"subscribe-email\" name=\"email\" type=\"email\" maxlength=\"254\" \
         autocomplete=\"email\" required=\"required\">\n\
         <button type=\"submit\">Subscribe</button>\n</form>",
        Escaped(&site.url(SUBSCRIBE_PATH))
    )?;
    writeln!(
        out,
        "<p class=\"hint\">You get a mail with a link to confirm; every notice has a link to unsubscribe.</p>"
    )
}

fn subscribe_page(out: &mut String, site: &Site, message: Option<&str>) -> fmt::Result {
    let title = format!("{} status: get notices by email", site.name());
    head(out, site, &title, &[])?;
    writeln!(out, "<header>\n<h1>{}</h1>\n</header>", Escaped(&title))?;
    writeln!(out, "<main id=\"main\">")?;
    if let Some(message) = message {
        writeln!(out, "<p role=\"alert\">{}</p>", Escaped(message))?;
    }
    writeln!(
        out,
        "<p>Get a mail when an incident is posted or updated on this page.</p>"
    )?;
    subscribe_form(out, site)?;
    writeln!(out, "</main>")?;
    footer(out, site, true)
}

fn message_page(out: &mut String, site: &Site, heading: &str, text: &str) -> fmt::Result {
    let title = format!("{} status: {heading}", site.name());
    head(out, site, &title, &[])?;
    writeln!(out, "<header>\n<h1>{}</h1>\n</header>", Escaped(heading))?;
    writeln!(out, "<main id=\"main\">\n<p>{}</p>\n</main>", Escaped(text))?;
    footer(out, site, true)
}

fn unsubscribe_page(out: &mut String, site: &Site, token: &str, address: &str) -> fmt::Result {
    let title = format!("{} status: unsubscribe", site.name());
    head(out, site, &title, &[])?;
    writeln!(out, "<header>\n<h1>Unsubscribe</h1>\n</header>")?;
    writeln!(out, "<main id=\"main\">")?;
    writeln!(
        out,
        "<p>Stop the status notices to {}?</p>",
        Escaped(address)
    )?;
    writeln!(
        out,
        "<form method=\"post\" action=\"{}\">\n\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <button type=\"submit\">Unsubscribe</button>\n</form>",
        Escaped(&site.url(&format!("{UNSUBSCRIBE_PATH}?token={token}")))
    )?;
    writeln!(out, "</main>")?;
    footer(out, site, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markup_check::{Mode, parse};

    #[test]
    fn the_pages_are_well_formed_and_escape_what_they_are_given() {
        let site = Site::new("Example", "https://status.example.com").unwrap();
        for page in [
            render_subscribe_page(&site, Some("<b>bad</b> address")),
            render_message_page(&site, "Check <your> mail", "\"quoted\" & more"),
            render_unsubscribe_page(&site, "abc_-1", "<x@example.org>"),
        ] {
            parse(&page, Mode::Html).unwrap();
            assert!(!page.contains("<b>") && !page.contains("<x@") && !page.contains("<your>"));
        }
    }

    #[test]
    fn the_status_page_offers_the_form_only_when_mail_can_go_out() {
        let render = |site: &Site| {
            crate::html::render_status_page(&crate::html::PageInput {
                site,
                now: 1_300_000_000,
                components: &[],
                incidents: &[],
            })
        };
        let site = Site::new("Example", "https://status.example.com").unwrap();
        assert!(!render(&site).contains("<form"));
        let page = render(&site.with_subscriptions(true));
        parse(&page, Mode::Html).unwrap();
        assert!(page.contains("action=\"https://status.example.com/status/subscribe\""));
    }
}
