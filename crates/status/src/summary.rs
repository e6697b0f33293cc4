//! What the status page and the JSON document show, chosen from all the
//! incidents given: the overall state, open incidents, maintenance in
//! progress or upcoming, and what was resolved in the last 90 days. The
//! HTML page and the JSON document both use this, so they never disagree.

use crate::health::ComponentView;
use crate::model::{ComponentState, Incident, Phase};

/// How long a resolved incident stays on the status page, in days (it
/// stays in the history for good).
pub const RECENT_DAYS: i64 = 90;
/// Most open incidents shown; more are a sign of something else, and the
/// history has them all.
pub const OPEN_SHOWN_MAX: usize = 50;
/// Most maintenance windows shown.
pub const MAINTENANCE_SHOWN_MAX: usize = 20;
/// Most recently resolved incidents shown.
pub const RECENT_SHOWN_MAX: usize = 100;

/// The incidents the status page shows, by section, and the overall state.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<'a> {
    /// The worst state of any component, open incident or maintenance in
    /// progress.
    pub overall: ComponentState,
    /// Open incidents, newest first.
    pub open: Vec<&'a Incident>,
    /// Maintenance in progress (earliest start first), then upcoming
    /// (soonest first).
    pub maintenance: Vec<&'a Incident>,
    /// Incidents and maintenance closed in the last [`RECENT_DAYS`] days,
    /// most recently closed first.
    pub recent: Vec<&'a Incident>,
}

/// Sorts `incidents` into the page's sections at `now`, each bounded
/// ([`OPEN_SHOWN_MAX`] and its siblings). Incidents closed longer ago than
/// [`RECENT_DAYS`] are left out; passing them is harmless.
pub fn summarize<'a>(
    components: &[ComponentView],
    incidents: &'a [Incident],
    now: i64,
) -> Summary<'a> {
    let mut overall = components
        .iter()
        .fold(ComponentState::Operational, |worst, view| {
            worst.worst(view.state)
        });
    let mut open = Vec::new();
    let mut in_progress = Vec::new();
    let mut upcoming = Vec::new();
    let mut recent = Vec::new();
    let window_start = now.saturating_sub(RECENT_DAYS * 86_400);
    for incident in incidents {
        match incident.phase(now) {
            Phase::Open => {
                overall = overall.worst(incident.impact.component_state());
                open.push(incident);
            }
            Phase::InProgress => {
                overall = overall.worst(ComponentState::Maintenance);
                in_progress.push(incident);
            }
            Phase::Upcoming => upcoming.push(incident),
            Phase::Closed(at) if at >= window_start => recent.push((at, incident)),
            Phase::Closed(_) => {}
        }
    }
    open.sort_by_key(|incident| std::cmp::Reverse((incident.created, incident.id)));
    open.truncate(OPEN_SHOWN_MAX);
    let starts = |incident: &&Incident| match incident.kind {
        crate::model::Kind::Maintenance { starts, .. } => (starts, incident.id),
        crate::model::Kind::Incident => (incident.created, incident.id),
    };
    in_progress.sort_by_key(starts);
    upcoming.sort_by_key(starts);
    let mut maintenance = in_progress;
    maintenance.extend(upcoming);
    maintenance.truncate(MAINTENANCE_SHOWN_MAX);
    recent.sort_by_key(|&(at, incident)| std::cmp::Reverse((at, incident.id)));
    recent.truncate(RECENT_SHOWN_MAX);
    Summary {
        overall,
        open,
        maintenance,
        recent: recent.into_iter().map(|(_, incident)| incident).collect(),
    }
}

/// The banner at the top of the page for an overall state.
pub fn banner(overall: ComponentState) -> &'static str {
    match overall {
        ComponentState::Operational => "All systems operational",
        ComponentState::Maintenance => "Maintenance in progress",
        ComponentState::Degraded => "Some systems degraded",
        ComponentState::PartialOutage => "Partial outage",
        ComponentState::MajorOutage => "Major outage",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Impact, Kind, Post, SetBy, State};

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_000 * DAY;

    fn incident(id: u64, created: i64, resolved: Option<i64>) -> Incident {
        Incident {
            id,
            title: format!("Incident {id}"),
            components: Vec::new(),
            impact: Impact::Minor,
            state: if resolved.is_some() {
                State::Resolved
            } else {
                State::Investigating
            },
            kind: Kind::Incident,
            created,
            resolved,
            posts: vec![Post {
                id,
                author: "sam".into(),
                at: created,
                text: "Text.".into(),
                edits: Vec::new(),
            }],
        }
    }

    fn maintenance(id: u64, starts: i64, ends: i64) -> Incident {
        Incident {
            kind: Kind::Maintenance { starts, ends },
            state: State::Scheduled,
            impact: Impact::None,
            ..incident(id, starts - DAY, None)
        }
    }

    fn ids(incidents: &[&Incident]) -> Vec<u64> {
        incidents.iter().map(|incident| incident.id).collect()
    }

    #[test]
    fn sections_and_the_ninety_day_window() {
        let incidents = [
            incident(1, NOW - 100 * DAY, Some(NOW - 90 * DAY)),
            incident(2, NOW - 100 * DAY, Some(NOW - 90 * DAY - 1)),
            incident(3, NOW - 2 * DAY, None),
            incident(4, NOW - DAY, None),
            incident(5, NOW - 10 * DAY, Some(NOW - 5 * DAY)),
            maintenance(6, NOW + DAY, NOW + 2 * DAY),
            maintenance(7, NOW - 60, NOW + 60),
            maintenance(8, NOW - 2 * DAY, NOW - DAY),
        ];
        let summary = summarize(&[], &incidents, NOW);
        assert_eq!(ids(&summary.open), [4, 3]);
        assert_eq!(ids(&summary.maintenance), [7, 6]);
        // 1 closed exactly 90 days ago, in; 2 a second earlier, out; 8's
        // window passed a day ago.
        assert_eq!(ids(&summary.recent), [8, 5, 1]);
        assert_eq!(summary.overall, ComponentState::Degraded);
    }

    #[test]
    fn overall_state() {
        let calm = summarize(&[], &[], NOW);
        assert_eq!(calm.overall, ComponentState::Operational);
        assert_eq!(banner(calm.overall), "All systems operational");

        let works = [maintenance(1, NOW - 60, NOW + 60)];
        assert_eq!(
            summarize(&[], &works, NOW).overall,
            ComponentState::Maintenance
        );

        let mut critical = incident(2, NOW - 60, None);
        critical.impact = Impact::Critical;
        assert_eq!(
            summarize(&[], &[critical], NOW).overall,
            ComponentState::MajorOutage
        );

        let degraded = ComponentView {
            name: "IMAP".into(),
            state: ComponentState::Degraded,
            set_by: SetBy::Health,
            health: Vec::new(),
            note: None,
            incidents: Vec::new(),
        };
        let summary = summarize(&[degraded], &[], NOW);
        assert_eq!(banner(summary.overall), "Some systems degraded");
    }

    #[test]
    fn sections_are_bounded() {
        let many: Vec<Incident> = (0..500)
            .map(|id| incident(id, NOW - 1_000 + id as i64, None))
            .collect();
        let summary = summarize(&[], &many, NOW);
        assert_eq!(summary.open.len(), OPEN_SHOWN_MAX);
        assert_eq!(summary.open[0].id, 499, "newest first");
    }
}
