//! The JSON document at `/api/status`, for scripts, monitoring and widgets:
//! the same selection as the status page ([`crate::summarize`]), in a shape
//! that is documented field by field and stays stable.
//!
//! Times are RFC 3339 strings in UTC (`"2011-04-15T14:34:00Z"`); states and
//! impacts are lower-case snake_case strings; lists are never absent (empty
//! instead); optional values are `null`.

use serde::{Deserialize, Serialize};

use crate::date::rfc3339;
use crate::health::ComponentView;
use crate::html::{STATUS_PATH, incident_path};
use crate::model::{ComponentState, Impact, Incident, Kind, Phase, PostRole, SetBy, State};
use crate::site::Site;
use crate::summary::{banner, summarize};
use crate::text::text_to_html;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDocument {
    /// When the document was made.
    pub generated_at: String,
    /// The status page's absolute URL.
    pub page_url: String,
    /// The worst state of any component, open incident or maintenance in
    /// progress: `"operational"`, `"maintenance"`, `"degraded"`,
    /// `"partial_outage"` or `"major_outage"` (in that order of severity).
    pub overall: ComponentState,
    /// The page's banner for `overall`, e.g. `"All systems operational"`,
    /// `"Some systems degraded"`.
    pub overall_text: String,
    /// Every component, in the page's order.
    pub components: Vec<ComponentDocument>,
    /// Incidents not yet resolved, newest first.
    pub open_incidents: Vec<IncidentDocument>,
    /// Maintenance in progress (earliest start first), then upcoming
    /// (soonest first).
    pub maintenance: Vec<IncidentDocument>,
    /// Incidents and maintenance closed in the last 90 days, most recently
    /// closed first.
    pub recent_incidents: Vec<IncidentDocument>,
}

/// One component as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentDocument {
    /// Its name, e.g. `"Incoming mail"`.
    pub name: String,
    /// Its state (the values of [`StatusDocument::overall`]).
    pub state: ComponentState,
    /// The state as the page writes it, e.g. `"Degraded performance"`.
    pub state_text: String,
    /// What decided the state: `"manual"` (a person), `{"incident": id}`
    /// (the worst open incident naming it) or `"health"` (live figures).
    pub set_by: SetBy,
    /// Live health sentences, e.g. `"delivery currently takes about 15
    /// minutes, usually under 5 seconds"`; empty when all is well.
    pub health: Vec<String>,
    /// A note from the operators, or `null`.
    pub note: Option<String>,
    /// Ids of the open incidents and maintenance in progress naming it.
    pub incidents: Vec<u64>,
}

/// Where an incident stands at the document's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseName {
    /// An incident not yet resolved.
    Open,
    /// Maintenance whose window has not started.
    Upcoming,
    /// Maintenance under way.
    InProgress,
    /// Resolved, or maintenance completed or past its window.
    Closed,
}

/// One incident or maintenance with its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentDocument {
    /// Its id, stable.
    pub id: u64,
    /// Its page's absolute URL.
    pub url: String,
    /// Its title.
    pub title: String,
    /// `true` for maintenance, `false` for an incident.
    pub maintenance: bool,
    /// Start of the maintenance window, or `null` for an incident.
    pub window_starts: Option<String>,
    /// End of the maintenance window, or `null` for an incident.
    pub window_ends: Option<String>,
    /// Names of the components it affects.
    pub components: Vec<String>,
    /// `"none"`, `"minor"`, `"major"` or `"critical"`.
    pub impact: Impact,
    /// The state its authors set: `"investigating"`, `"identified"`,
    /// `"monitoring"`, `"resolved"`; for maintenance `"scheduled"`,
    /// `"in_progress"`, `"completed"`.
    pub state: State,
    /// Where it stands now: `"open"`, `"upcoming"`, `"in_progress"` or
    /// `"closed"`. Maintenance follows its window even when nobody changed
    /// its state.
    pub phase: PhaseName,
    /// When it was opened.
    pub created_at: String,
    /// When it was resolved or completed, or `null` while it is not.
    pub closed_at: Option<String>,
    /// The timeline, oldest first: the Status, then the Updates.
    pub posts: Vec<PostDocument>,
}

/// One post of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostDocument {
    /// Its id, stable.
    pub id: u64,
    /// `"status"` for the first post of an incident, `"update"` for the
    /// others.
    pub role: PostRole,
    /// Who wrote it.
    pub author: String,
    /// When it was posted.
    pub at: String,
    /// When its text was last edited, or `null` if never.
    pub edited_at: Option<String>,
    /// The text as written: plain text, paragraphs separated by blank
    /// lines.
    pub text: String,
    /// The text as the page shows it: HTML with every character of the
    /// text escaped, `<p>`, `<br>` and `<a>` links only; safe to insert
    /// into a page.
    pub html: String,
}

impl StatusDocument {
    /// The document for `components` (as shown, [`crate::derive_components`])
    /// and `incidents` at `now`, with the page's selection and bounds.
    pub fn new(
        site: &Site,
        components: &[ComponentView],
        incidents: &[Incident],
        now: i64,
    ) -> StatusDocument {
        let summary = summarize(components, incidents, now);
        let documents = |list: &[&Incident]| -> Vec<IncidentDocument> {
            list.iter()
                .map(|incident| IncidentDocument::new(site, incident, now))
                .collect()
        };
        StatusDocument {
            generated_at: rfc3339(now),
            page_url: site.url(STATUS_PATH),
            overall: summary.overall,
            overall_text: banner(summary.overall).to_owned(),
            components: components.iter().map(ComponentDocument::new).collect(),
            open_incidents: documents(&summary.open),
            maintenance: documents(&summary.maintenance),
            recent_incidents: documents(&summary.recent),
        }
    }
}

impl ComponentDocument {
    /// The document for one component as shown.
    pub fn new(view: &ComponentView) -> ComponentDocument {
        ComponentDocument {
            name: view.name.clone(),
            state: view.state,
            state_text: view.state.label().to_owned(),
            set_by: view.set_by,
            health: view.health.clone(),
            note: view.note.clone(),
            incidents: view.incidents.clone(),
        }
    }
}

impl IncidentDocument {
    /// The document for one incident at `now`.
    pub fn new(site: &Site, incident: &Incident, now: i64) -> IncidentDocument {
        let phase = incident.phase(now);
        let (window_starts, window_ends) = match incident.kind {
            Kind::Maintenance { starts, ends } => (Some(rfc3339(starts)), Some(rfc3339(ends))),
            Kind::Incident => (None, None),
        };
        IncidentDocument {
            id: incident.id,
            url: site.url(&incident_path(incident.id)),
            title: incident.title.clone(),
            maintenance: incident.is_maintenance(),
            window_starts,
            window_ends,
            components: incident.components.clone(),
            impact: incident.impact,
            state: incident.state,
            phase: match phase {
                Phase::Open => PhaseName::Open,
                Phase::Upcoming => PhaseName::Upcoming,
                Phase::InProgress => PhaseName::InProgress,
                Phase::Closed(_) => PhaseName::Closed,
            },
            created_at: rfc3339(incident.created),
            closed_at: match phase {
                Phase::Closed(at) => Some(rfc3339(at)),
                _ => None,
            },
            posts: incident
                .posts
                .iter()
                .enumerate()
                .map(|(index, post)| PostDocument {
                    id: post.id,
                    role: PostRole::of_index(index),
                    author: post.author.clone(),
                    at: rfc3339(post.at),
                    edited_at: post.edits.last().map(|edit| rfc3339(edit.at)),
                    text: post.text.clone(),
                    html: text_to_html(&post.text),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use serde_json::{Value, json};

    fn document() -> StatusDocument {
        StatusDocument::new(&site(), &views(), &page_incidents(), NOW)
    }

    #[test]
    fn the_page_and_the_document_agree() {
        let document = document();
        assert_eq!(document.overall, ComponentState::Degraded);
        assert_eq!(document.overall_text, "Some systems degraded");
        let ids = |list: &[IncidentDocument]| list.iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(ids(&document.open_incidents), [1]);
        assert_eq!(ids(&document.maintenance), [2, 3]);
        assert_eq!(ids(&document.recent_incidents), [5, 4]);
        assert_eq!(document.components.len(), 3);
    }

    #[test]
    fn the_json_shape() {
        let value = serde_json::to_value(document()).unwrap();
        assert_eq!(value["generated_at"], "2011-04-15T15:34:00Z");
        assert_eq!(value["page_url"], "https://status.example.com/status");
        assert_eq!(value["overall"], "degraded");
        assert_eq!(
            value["components"][0],
            json!({
                "name": "Incoming mail",
                "state": "degraded",
                "state_text": "Degraded performance",
                "set_by": "health",
                "health": ["delivery currently takes about 15 minutes, usually under 5 seconds"],
                "note": null,
                "incidents": [1],
            })
        );
        assert_eq!(value["components"][1]["set_by"], json!({"incident": 2}));
        let open = &value["open_incidents"][0];
        assert_eq!(open["url"], "https://status.example.com/status/incidents/1");
        assert_eq!(open["phase"], "open");
        assert_eq!(open["state"], "investigating");
        assert_eq!(open["impact"], "minor");
        assert_eq!(open["maintenance"], false);
        assert_eq!(open["window_starts"], Value::Null);
        assert_eq!(open["closed_at"], Value::Null);
        assert_eq!(open["posts"][0]["role"], "status");
        assert_eq!(open["posts"][1]["role"], "update");
        assert_eq!(open["posts"][1]["at"], "2011-04-15T15:09:00Z");
        assert_eq!(
            open["posts"][1]["html"],
            "<p>The backlog is cleared. Delivery takes under 10 seconds again.</p>\n"
        );
        let in_progress = &value["maintenance"][0];
        assert_eq!(in_progress["phase"], "in_progress");
        assert_eq!(in_progress["state"], "scheduled");
        assert_eq!(in_progress["window_ends"], "2011-04-15T16:24:00Z");
        let edited = &value["recent_incidents"][0];
        assert_eq!(edited["closed_at"], "2011-04-05T15:44:00Z");
        assert_eq!(edited["posts"][0]["edited_at"], "2011-04-05T15:35:00Z");

        let back: StatusDocument = serde_json::from_value(value).unwrap();
        assert_eq!(back, document());
    }
}
