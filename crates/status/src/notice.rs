//! What subscribers receive: the notice mail of a post, the confirmation mail
//! of a subscription, and the SMS text of a post. Pure: the time, the ids and
//! the links come in as arguments, bytes go out (RFC 5322, CRLF line ends).
//!
//! Mail is plain text in UTF-8. A body that is all ASCII with short lines goes
//! as it is (`7bit`), anything else as base64, so no relay has to know 8BITMIME
//! and no line passes SMTP's 998-byte limit. A subject that is not short ASCII
//! goes as RFC 2047 encoded words.

use crate::date::{MONTHS, WEEKDAYS, civil};
use crate::html::{STATUS_PATH, incident_path};
use crate::model::{Incident, PostRole};
use crate::site::Site;
use base64::Engine as _;

/// Where the subscribe form is, and where it posts.
pub const SUBSCRIBE_PATH: &str = "/status/subscribe";
/// Where a confirmation link goes (`?token=`).
pub const CONFIRM_PATH: &str = "/status/confirm";
/// Where an unsubscribe link goes (`?token=`).
pub const UNSUBSCRIBE_PATH: &str = "/status/unsubscribe";

/// A mail's envelope-independent parts that the caller chooses.
#[derive(Debug, Clone)]
pub struct MailHeaders<'a> {
    /// The From address (`[mail_out] from`).
    pub from: &'a str,
    /// The recipient's address.
    pub to: &'a str,
    /// Seconds since the epoch.
    pub date: i64,
    /// Without the angle brackets: `unique@host`.
    pub message_id: &'a str,
}

/// The notice of post `post` of `incident` to one subscriber, with RFC 8058
/// one-click unsubscribe headers; `None` when the incident has no such post.
pub fn render_notice_mail(
    site: &Site,
    incident: &Incident,
    post: u64,
    headers: &MailHeaders<'_>,
    unsubscribe_token: &str,
) -> Option<String> {
    let (index, entry) = incident
        .posts
        .iter()
        .enumerate()
        .find(|(_, p)| p.id == post)?;
    let role = PostRole::of_index(index);
    let unsubscribe = site.url(&format!("{UNSUBSCRIBE_PATH}?token={unsubscribe_token}"));
    let subject = format!("[{} status] {}", site.name(), incident.title);
    let mut body = String::new();
    body.push_str(&incident.title);
    body.push_str("\n\n");
    body.push_str(&format!(
        "{} (by {} at {})\n",
        role.label(),
        entry.author,
        log_time(entry.at)
    ));
    body.push_str(&entry.text);
    body.push_str("\n\n");
    body.push_str(&format!(
        "State: {}. Impact: {}.",
        incident.state.label(),
        incident.impact.label()
    ));
    if !incident.components.is_empty() {
        body.push_str(&format!(" Affects: {}.", incident.components.join(", ")));
    }
    body.push_str(&format!(
        "\nThe whole incident: {}\n\n-- \nYou get this because you subscribed to the {} status page.\nUnsubscribe: {}\n",
        site.url(&incident_path(incident.id)),
        site.name(),
        unsubscribe
    ));
    let extra = [
        ("List-Unsubscribe", format!("<{unsubscribe}>")),
        (
            "List-Unsubscribe-Post",
            "List-Unsubscribe=One-Click".to_string(),
        ),
        ("List-Id", format!("<status.{}>", list_host(site))),
        ("Auto-Submitted", "auto-generated".to_string()),
    ];
    Some(message(headers, &subject, &extra, &body))
}

/// The mail that asks a new subscriber to confirm (double opt-in).
pub fn render_confirmation_mail(
    site: &Site,
    headers: &MailHeaders<'_>,
    confirm_token: &str,
    valid_hours: i64,
) -> String {
    let confirm = site.url(&format!("{CONFIRM_PATH}?token={confirm_token}"));
    let subject = format!("[{} status] Confirm your subscription", site.name());
    let body = format!(
        "Someone, probably you, asked to get the incident notices of the {} status page \
         ({}) by mail at this address.\n\nTo confirm, open this link within {} hours:\n{}\n\n\
         If it was not you, ignore this mail: nothing is sent to you without the confirmation.\n",
        site.name(),
        site.url(STATUS_PATH),
        valid_hours,
        confirm
    );
    let extra = [("Auto-Submitted", "auto-generated".to_string())];
    message(headers, &subject, &extra, &body)
}

/// The SMS of a post: the site, the title, the post's first words and the link.
pub fn notice_sms_text(site: &Site, incident: &Incident, post: u64) -> Option<String> {
    let entry = incident.posts.iter().find(|p| p.id == post)?;
    let link = site.url(&incident_path(incident.id));
    // Three concatenated segments of UCS-2 hold 201 characters; keep the text
    // well inside that whatever the alphabet, with the link whole at the end.
    let budget = 200usize.saturating_sub(link.chars().count() + 1);
    let mut text = format!("{} status: {}: {}", site.name(), incident.title, entry.text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() > budget {
        text = text.chars().take(budget.saturating_sub(1)).collect();
        text.push('…');
    }
    Some(format!("{text} {link}"))
}

fn list_host(site: &Site) -> String {
    let url = site.public_url();
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', ':'])
        .next()
        .unwrap_or("localhost");
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host.to_string()
    }
}

/// `Sat Nov 28 21:06 UTC`, as the posts of an incident log are stamped.
fn log_time(at: i64) -> String {
    let t = civil(at);
    format!(
        "{} {} {} {:02}:{:02} UTC",
        WEEKDAYS[t.weekday as usize],
        MONTHS[(t.month - 1) as usize],
        t.day,
        t.hour,
        t.minute
    )
}

/// RFC 5322 date: `Sat, 28 Nov 2026 21:06:31 +0000`.
pub fn mail_date(at: i64) -> String {
    let t = civil(at);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} +0000",
        WEEKDAYS[t.weekday as usize],
        t.day,
        MONTHS[(t.month - 1) as usize],
        t.year,
        t.hour,
        t.minute,
        t.second
    )
}

/// A header value without line breaks or other control characters, which
/// would let text chosen by an author or a subscriber add headers.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// An unstructured header value: as it is when short ASCII, else encoded
/// words of at most 75 characters, folded one per line.
fn encode_header(value: &str) -> String {
    let value = one_line(value);
    if value.is_ascii() && value.len() <= 60 {
        return value;
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in value.chars() {
        // 45 bytes of UTF-8 make 60 of base64, plus 12 for `=?UTF-8?B?` and `?=`.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", engine.encode(&chunk)));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", engine.encode(&chunk)));
    }
    words.join("\r\n ")
}

fn message(
    headers: &MailHeaders<'_>,
    subject: &str,
    extra: &[(&str, String)],
    body: &str,
) -> String {
    let body = body.replace("\r\n", "\n");
    let plain = body.is_ascii() && body.lines().all(|l| l.len() <= 900);
    let mut out = String::new();
    let mut header = |name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    header("Date", &mail_date(headers.date));
    header("From", &one_line(headers.from));
    header("To", &one_line(headers.to));
    header("Subject", &encode_header(subject));
    header("Message-ID", &format!("<{}>", one_line(headers.message_id)));
    for (name, value) in extra {
        header(name, &one_line(value));
    }
    header("MIME-Version", "1.0");
    header("Content-Type", "text/plain; charset=utf-8");
    if plain {
        header("Content-Transfer-Encoding", "7bit");
        out.push_str("\r\n");
        for line in body.lines() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    } else {
        header("Content-Transfer-Encoding", "base64");
        out.push_str("\r\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(body.replace('\n', "\r\n"));
        for line in encoded.as_bytes().chunks(76) {
            // Base64 is ASCII, so any split is at a character boundary.
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Impact, Kind, Post, State};

    fn incident() -> Incident {
        Incident {
            id: 7,
            title: "Mail is slow".into(),
            components: vec!["Incoming mail".into()],
            impact: Impact::Minor,
            state: State::Investigating,
            kind: Kind::Incident,
            created: 1_300_000_000,
            resolved: None,
            posts: vec![
                Post {
                    id: 7,
                    author: "sam".into(),
                    at: 1_300_000_000,
                    text: "Delivery is delayed.".into(),
                    edits: Vec::new(),
                },
                Post {
                    id: 9,
                    author: "sam".into(),
                    at: 1_300_003_600,
                    text: "Größtenteils behoben.\nSubject: not a header".into(),
                    edits: Vec::new(),
                },
            ],
        }
    }

    fn headers() -> MailHeaders<'static> {
        MailHeaders {
            from: "status@example.com",
            to: "bob@example.org",
            date: 1_300_000_000,
            message_id: "n7.9@example.com",
        }
    }

    #[test]
    fn a_notice_carries_one_click_unsubscribe_and_the_post() {
        let site = Site::new("Example", "https://status.example.com").unwrap();
        let mail = render_notice_mail(&site, &incident(), 7, &headers(), "tok").unwrap();
        let (head, body) = mail.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("\r\nSubject: [Example status] Mail is slow\r\n"));
        assert!(head.contains(
            "List-Unsubscribe: <https://status.example.com/status/unsubscribe?token=tok>"
        ));
        assert!(head.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
        assert!(head.starts_with("Date: Sun, 13 Mar 2011 07:06:40 +0000\r\n"));
        assert!(body.contains("Status (by sam at Sun Mar 13 07:06 UTC)\r\nDelivery is delayed."));
        assert!(body.contains("https://status.example.com/status/incidents/7"));
        assert!(mail.lines().all(|l| l.len() <= 998));
        assert!(render_notice_mail(&site, &incident(), 8, &headers(), "tok").is_none());
    }

    #[test]
    fn a_non_ascii_update_is_base64_and_adds_no_headers() {
        let site = Site::new("Exämple", "https://status.example.com").unwrap();
        let mail = render_notice_mail(&site, &incident(), 9, &headers(), "tok").unwrap();
        let (head, body) = mail.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Transfer-Encoding: base64"));
        assert!(head.contains("Subject: =?UTF-8?B?"));
        assert!(!head.contains("not a header"));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(body.replace("\r\n", ""))
            .unwrap();
        let text = String::from_utf8(decoded).unwrap();
        assert!(text.contains("Update (by sam at"));
        assert!(text.contains("Größtenteils behoben."));
    }

    #[test]
    fn an_sms_notice_is_short_and_ends_with_the_link() {
        let site = Site::new("Example", "https://status.example.com").unwrap();
        let mut long = incident();
        long.posts[0].text = "word ".repeat(200);
        let text = notice_sms_text(&site, &long, 7).unwrap();
        assert!(text.chars().count() <= 200);
        assert!(text.ends_with(" https://status.example.com/status/incidents/7"));
    }
}
