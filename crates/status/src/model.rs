//! What the status page is made of: incidents (and maintenance) with their
//! timelines of posts, and components with a state each; the bounds on
//! counts (the bounds on text are in `validate.rs`).
//!
//! These types are what the store keeps (as journal records, through serde)
//! and what the renderers read. They are validated once, when an author
//! writes them ([`Incident::validate`], [`Post::validate`],
//! [`Component::validate`]); the
//! renderers still escape everything, so a value that slipped past
//! validation is ugly on the page at worst, never markup.

use serde::{Deserialize, Serialize};

use crate::error::{Counted, Field, ValidationError};
use crate::validate::{
    NOTE_BYTES_MAX, validate_author, validate_component_name, validate_line, validate_text,
    validate_time, validate_title,
};

/// Most components one incident may name.
pub const COMPONENTS_PER_INCIDENT_MAX: usize = 32;
/// Most posts in one incident's timeline.
pub const POSTS_PER_INCIDENT_MAX: usize = 500;
/// Most kept edits of one post; the server refuses a further edit rather
/// than dropping the oldest, since every post's history is kept.
pub const EDITS_PER_POST_MAX: usize = 100;

/// How badly an incident affects the components it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Worth telling people, but nothing is impaired (a notice).
    None,
    /// Slower or partly failing: the components show as degraded.
    Minor,
    /// Failing for some: the components show a partial outage.
    Major,
    /// Failing for everyone: the components show a major outage.
    Critical,
}

impl Impact {
    /// The label shown on the page.
    pub fn label(self) -> &'static str {
        match self {
            Impact::None => "No impact",
            Impact::Minor => "Minor",
            Impact::Major => "Major",
            Impact::Critical => "Critical",
        }
    }

    /// The state an open incident of this impact gives the components it
    /// names.
    pub fn component_state(self) -> ComponentState {
        match self {
            Impact::None => ComponentState::Operational,
            Impact::Minor => ComponentState::Degraded,
            Impact::Major => ComponentState::PartialOutage,
            Impact::Critical => ComponentState::MajorOutage,
        }
    }
}

/// Where an incident or a maintenance stands. The first four are for
/// incidents, the last three for maintenance ([`State::fits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Something is wrong and the cause is not known yet.
    Investigating,
    /// The cause is known and being fixed.
    Identified,
    /// A fix is in and being watched.
    Monitoring,
    /// Over.
    Resolved,
    /// Maintenance announced for a window that has not started.
    Scheduled,
    /// Maintenance under way.
    InProgress,
    /// Maintenance over.
    Completed,
}

impl State {
    /// The label shown on the page.
    pub fn label(self) -> &'static str {
        match self {
            State::Investigating => "Investigating",
            State::Identified => "Identified",
            State::Monitoring => "Monitoring",
            State::Resolved => "Resolved",
            State::Scheduled => "Scheduled",
            State::InProgress => "In progress",
            State::Completed => "Completed",
        }
    }

    /// Resolved or completed: nothing more is expected to happen.
    pub fn is_closed(self) -> bool {
        matches!(self, State::Resolved | State::Completed)
    }

    /// Whether the state belongs to the kind: investigating, identified,
    /// monitoring and resolved to incidents; scheduled, in progress and
    /// completed to maintenance.
    pub fn fits(self, kind: &Kind) -> bool {
        let for_maintenance = matches!(
            self,
            State::Scheduled | State::InProgress | State::Completed
        );
        for_maintenance == kind.is_maintenance()
    }
}

/// An incident, or maintenance announced ahead with its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Kind {
    /// Something went wrong.
    Incident,
    /// Planned work in a window of time.
    Maintenance {
        /// Start of the window, Unix seconds.
        starts: i64,
        /// End of the window, Unix seconds.
        ends: i64,
    },
}

impl Kind {
    /// Whether this is maintenance.
    pub fn is_maintenance(&self) -> bool {
        matches!(self, Kind::Maintenance { .. })
    }
}

/// Where an incident stands at a given time, for choosing where the page
/// shows it ([`Incident::phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// An incident that is not resolved.
    Open,
    /// Maintenance whose window has not started.
    Upcoming,
    /// Maintenance under way.
    InProgress,
    /// Resolved or completed, at the time given.
    Closed(i64),
}

/// An incident or a maintenance, with its timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable id, given by the store; also the page anchor `incident-<id>`
    /// and part of the feed's entry ids.
    pub id: u64,
    /// One line saying what is wrong, as customers would put it.
    pub title: String,
    /// Names of the components affected.
    pub components: Vec<String>,
    /// How badly.
    pub impact: Impact,
    /// Where it stands.
    pub state: State,
    /// Incident or maintenance.
    pub kind: Kind,
    /// When it was opened, Unix seconds.
    pub created: i64,
    /// When it was resolved or completed, Unix seconds.
    pub resolved: Option<i64>,
    /// The timeline, oldest first: the Status, then the Updates.
    pub posts: Vec<Post>,
}

/// The name a post has in a timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostRole {
    /// The first post of an incident.
    Status,
    /// Every later post.
    Update,
}

impl PostRole {
    /// The role of the post at `index` in a timeline.
    pub fn of_index(index: usize) -> PostRole {
        if index == 0 {
            PostRole::Status
        } else {
            PostRole::Update
        }
    }

    /// "Status" or "Update", as the page and the feed write it.
    pub fn label(self) -> &'static str {
        match self {
            PostRole::Status => "Status",
            PostRole::Update => "Update",
        }
    }
}

impl Incident {
    /// Whether this is maintenance rather than an incident.
    pub fn is_maintenance(&self) -> bool {
        self.kind.is_maintenance()
    }

    /// Where the incident stands at `now`. An incident is open until it is
    /// resolved. Maintenance is closed when completed; otherwise it is in
    /// progress when someone said so, or when its window has started, and
    /// closed when a scheduled window has passed without anyone starting it
    /// (an announcement of something in the past is not "upcoming").
    pub fn phase(&self, now: i64) -> Phase {
        if let Some(resolved) = self.resolved {
            return Phase::Closed(resolved);
        }
        match self.kind {
            Kind::Incident if self.state.is_closed() => Phase::Closed(self.last_activity()),
            Kind::Incident => Phase::Open,
            Kind::Maintenance { ends, .. } if self.state.is_closed() => {
                Phase::Closed(ends.min(self.last_activity()))
            }
            Kind::Maintenance { .. } if self.state == State::InProgress => Phase::InProgress,
            Kind::Maintenance { starts, .. } if now < starts => Phase::Upcoming,
            Kind::Maintenance { ends, .. } if now < ends => Phase::InProgress,
            Kind::Maintenance { ends, .. } => Phase::Closed(ends),
        }
    }

    /// The latest time anything happened to the incident: created, a post,
    /// an edit, resolved.
    pub fn last_activity(&self) -> i64 {
        let posts = self.posts.iter().map(Post::updated);
        posts.chain(self.resolved).fold(self.created, i64::max)
    }

    /// Checks everything an author could get wrong, before the incident is
    /// stored: every text field, the bounds on counts, times in range, a
    /// state that fits the kind, a maintenance window that ends after it
    /// starts, at least one post.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ValidationError`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_title(&self.title)?;
        if self.components.len() > COMPONENTS_PER_INCIDENT_MAX {
            return Err(ValidationError::TooMany {
                what: Counted::Components,
                count: self.components.len(),
                max: COMPONENTS_PER_INCIDENT_MAX,
            });
        }
        for (index, name) in self.components.iter().enumerate() {
            validate_component_name(name)?;
            if self.components[..index].contains(name) {
                return Err(ValidationError::DuplicateComponent(name.clone()));
            }
        }
        if !self.state.fits(&self.kind) {
            return Err(ValidationError::StateDoesNotFitKind {
                state: self.state.label(),
                maintenance: self.is_maintenance(),
            });
        }
        validate_time(self.created)?;
        if let Some(resolved) = self.resolved {
            validate_time(resolved)?;
            if resolved < self.created {
                return Err(ValidationError::ResolvedBeforeCreated {
                    created: self.created,
                    resolved,
                });
            }
        }
        if let Kind::Maintenance { starts, ends } = self.kind {
            validate_time(starts)?;
            validate_time(ends)?;
            if ends <= starts {
                return Err(ValidationError::MaintenanceWindow { starts, ends });
            }
        }
        if self.posts.is_empty() {
            return Err(ValidationError::NoPosts);
        }
        if self.posts.len() > POSTS_PER_INCIDENT_MAX {
            return Err(ValidationError::TooMany {
                what: Counted::Posts,
                count: self.posts.len(),
                max: POSTS_PER_INCIDENT_MAX,
            });
        }
        self.posts.iter().try_for_each(Post::validate)
    }
}

/// One post of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// Stable id, given by the store.
    pub id: u64,
    /// Who wrote it (an admin's name).
    pub author: String,
    /// When it was posted, Unix seconds. Edits do not change it.
    pub at: i64,
    /// The current text: plain text with paragraphs and links
    /// ([`crate::text_to_html`]).
    pub text: String,
    /// Every earlier version of the text, oldest first.
    pub edits: Vec<Edit>,
}

impl Post {
    /// When the text last changed: the latest edit, or the post itself.
    pub fn updated(&self) -> i64 {
        self.edits
            .iter()
            .map(|edit| edit.at)
            .fold(self.at, i64::max)
    }

    /// Checks the author, the text, the time and the kept edits.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_author(&self.author)?;
        validate_text(&self.text)?;
        validate_time(self.at)?;
        if self.edits.len() > EDITS_PER_POST_MAX {
            return Err(ValidationError::TooMany {
                what: Counted::Edits,
                count: self.edits.len(),
                max: EDITS_PER_POST_MAX,
            });
        }
        for edit in &self.edits {
            validate_author(&edit.author)?;
            validate_text(&edit.previous_text)?;
            validate_time(edit.at)?;
        }
        Ok(())
    }
}

/// One change to a post's text, kept so that a post's history can be shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// When the text was changed, Unix seconds.
    pub at: i64,
    /// Who changed it.
    pub author: String,
    /// The text before the change.
    pub previous_text: String,
}

/// How a component is doing, as shown on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Working normally.
    Operational,
    /// Working, slower or with some errors.
    Degraded,
    /// Not working for some.
    PartialOutage,
    /// Not working.
    MajorOutage,
    /// Planned work under way.
    Maintenance,
}

impl ComponentState {
    /// The label shown on the page. States are never shown by colour alone.
    pub fn label(self) -> &'static str {
        match self {
            ComponentState::Operational => "Operational",
            ComponentState::Degraded => "Degraded performance",
            ComponentState::PartialOutage => "Partial outage",
            ComponentState::MajorOutage => "Major outage",
            ComponentState::Maintenance => "Under maintenance",
        }
    }

    /// How bad the state is, for taking the worst of several: operational,
    /// maintenance (planned and announced), degraded, partial outage, major
    /// outage.
    pub fn severity(self) -> u8 {
        match self {
            ComponentState::Operational => 0,
            ComponentState::Maintenance => 1,
            ComponentState::Degraded => 2,
            ComponentState::PartialOutage => 3,
            ComponentState::MajorOutage => 4,
        }
    }

    /// The worse of two states.
    pub fn worst(self, other: ComponentState) -> ComponentState {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// Who set a component's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetBy {
    /// A person, by hand.
    Manual,
    /// An incident, by its id: the state holds while the incident is open.
    Incident(u64),
    /// The server, from live health figures.
    Health,
}

/// A part of the service customers know by name ("Incoming mail", "IMAP").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The name shown on the page, unique among components.
    pub name: String,
    /// The stored state ([`crate::derive_components`] combines it with open
    /// incidents and live health into what the page shows).
    pub state: ComponentState,
    /// Who set the stored state.
    pub set_by: SetBy,
    /// When the stored state was set, Unix seconds. A person setting a
    /// component by hand after a health threshold was crossed overrides
    /// that threshold until it clears ([`crate::derive_components`]).
    #[serde(default)]
    pub set_at: i64,
    /// A line shown under the component ("Sending to Outlook.com is slow").
    pub note: Option<String>,
}

impl Component {
    /// Checks the name and the note.
    ///
    /// # Errors
    ///
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_component_name(&self.name)?;
        validate_time(self.set_at)?;
        match &self.note {
            Some(note) => validate_line(note, Field::Note, NOTE_BYTES_MAX),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn post(id: u64, at: i64, text: &str) -> Post {
        Post {
            id,
            author: "sam".into(),
            at,
            text: text.into(),
            edits: Vec::new(),
        }
    }

    fn incident() -> Incident {
        Incident {
            id: 1,
            title: "Incoming mail is delayed".into(),
            components: vec!["Incoming mail".into()],
            impact: Impact::Minor,
            state: State::Investigating,
            kind: Kind::Incident,
            created: 1_000,
            resolved: None,
            posts: vec![post(1, 1_000, "Looking.")],
        }
    }

    #[test]
    fn a_good_incident_passes() {
        assert_eq!(incident().validate(), Ok(()));
    }

    #[test]
    fn incident_rules() {
        let mut bad = incident();
        bad.components.push("Incoming mail".into());
        assert_eq!(
            bad.validate(),
            Err(ValidationError::DuplicateComponent("Incoming mail".into()))
        );

        let mut bad = incident();
        bad.state = State::Scheduled;
        assert!(matches!(
            bad.validate(),
            Err(ValidationError::StateDoesNotFitKind { .. })
        ));

        let mut bad = incident();
        bad.kind = Kind::Maintenance {
            starts: 2_000,
            ends: 2_000,
        };
        bad.state = State::Scheduled;
        assert!(matches!(
            bad.validate(),
            Err(ValidationError::MaintenanceWindow { .. })
        ));

        let mut bad = incident();
        bad.resolved = Some(999);
        assert!(matches!(
            bad.validate(),
            Err(ValidationError::ResolvedBeforeCreated { .. })
        ));

        let mut bad = incident();
        bad.posts.clear();
        assert_eq!(bad.validate(), Err(ValidationError::NoPosts));

        let mut bad = incident();
        bad.posts[0].at = i64::MAX;
        assert_eq!(
            bad.validate(),
            Err(ValidationError::TimeOutOfRange(i64::MAX))
        );

        let mut bad = incident();
        bad.components = (0..=COMPONENTS_PER_INCIDENT_MAX)
            .map(|n| format!("c{n}"))
            .collect();
        assert!(matches!(
            bad.validate(),
            Err(ValidationError::TooMany { .. })
        ));

        let mut bad = incident();
        bad.posts[0].edits = vec![
            Edit {
                at: 1_001,
                author: "sam".into(),
                previous_text: "x".into(),
            };
            EDITS_PER_POST_MAX + 1
        ];
        assert!(matches!(
            bad.validate(),
            Err(ValidationError::TooMany { .. })
        ));
    }

    #[test]
    fn phases() {
        let open = incident();
        assert_eq!(open.phase(5_000), Phase::Open);

        let mut resolved = incident();
        resolved.state = State::Resolved;
        resolved.resolved = Some(3_000);
        assert_eq!(resolved.phase(5_000), Phase::Closed(3_000));

        // Resolved without a time: closed as of its last activity.
        resolved.resolved = None;
        resolved.posts.push(post(2, 2_500, "Fixed."));
        assert_eq!(resolved.phase(5_000), Phase::Closed(2_500));

        let mut maintenance = incident();
        maintenance.kind = Kind::Maintenance {
            starts: 10_000,
            ends: 20_000,
        };
        maintenance.state = State::Scheduled;
        assert_eq!(maintenance.phase(9_999), Phase::Upcoming);
        assert_eq!(maintenance.phase(10_000), Phase::InProgress);
        assert_eq!(maintenance.phase(20_000), Phase::Closed(20_000));
        maintenance.state = State::InProgress;
        assert_eq!(maintenance.phase(25_000), Phase::InProgress, "overrun");
        maintenance.state = State::Completed;
        assert_eq!(maintenance.phase(15_000), Phase::Closed(1_000));
    }

    #[test]
    fn last_activity_counts_edits() {
        let mut edited = incident();
        edited.posts[0].edits.push(Edit {
            at: 4_000,
            author: "kim".into(),
            previous_text: "Lookin.".into(),
        });
        assert_eq!(edited.last_activity(), 4_000);
        assert_eq!(edited.posts[0].updated(), 4_000);
    }

    #[test]
    fn states_order_and_serialize() {
        use ComponentState::*;
        assert_eq!(Operational.worst(Maintenance), Maintenance);
        assert_eq!(Degraded.worst(Maintenance), Degraded);
        assert_eq!(MajorOutage.worst(PartialOutage), MajorOutage);
        assert_eq!(Impact::Critical.component_state(), MajorOutage);

        let json = serde_json::to_string(&incident()).unwrap();
        assert!(json.contains(r#""kind":{"type":"incident"}"#), "{json}");
        assert!(json.contains(r#""state":"investigating""#), "{json}");
        let back: Incident = serde_json::from_str(&json).unwrap();
        assert_eq!(back, incident());

        let component = Component {
            name: "IMAP".into(),
            state: PartialOutage,
            set_by: SetBy::Incident(7),
            set_at: 0,
            note: None,
        };
        let json = serde_json::to_string(&component).unwrap();
        assert!(json.contains(r#""set_by":{"incident":7}"#), "{json}");
        assert!(json.contains(r#""state":"partial_outage""#), "{json}");
    }
}
