//! Live health: the figures the server measures about itself, the
//! thresholds that turn them into "degraded" on the page, and the state
//! each component is shown in.
//!
//! A figure over its threshold is a *crossing*. The server calls
//! [`HealthWatch::observe`] with fresh figures every few seconds; the watch
//! remembers since when each figure has been over its threshold, and forgets
//! it as soon as the figure is back under. A crossing that has lasted the
//! grace time ([`HealthPolicy::grace_seconds`]) is a [`Breach`]: it raises
//! its component to degraded on the page on its own, with a sentence saying
//! what customers experience ("delivery currently takes about 15 minutes,
//! usually under 5 seconds"). The grace time keeps one slow minute from
//! reaching the page; a figure that hovers around its threshold starts its
//! grace time again each time it dips under.
//!
//! A person stays in charge ([`derive_components`]):
//!
//! - An open incident naming the component *confirms* the breach: the
//!   incident's impact decides the state from then on (an author may judge
//!   the slowness minor, or an outage), and the breach's sentence is still
//!   shown, since it is live and true.
//! - Setting the component by hand after the crossing began *overrides* the
//!   breach (a threshold set too tight, a figure known to be wrong): it is
//!   neither counted nor shown until the figure has gone back under and
//!   crossed again.
//!
//! The server may measure anything it likes; what it does not measure is
//! `None` and raises nothing.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::model::{Component, ComponentState, Incident, Phase, SetBy};

/// Live figures the server measures, over the last 5 minutes. Each is
/// `None` when the server does not measure it (no replication) or has no
/// sample yet (no delivery in the window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    /// Median time from SMTP/LMTP receipt to the message stored, in
    /// milliseconds.
    pub delivery_latency_p50_ms: Option<u64>,
    /// 99th percentile of the same, in milliseconds.
    pub delivery_latency_p99_ms: Option<u64>,
    /// Messages received and not yet stored.
    pub delivery_backlog: Option<u64>,
    /// Share of IMAP logins that succeeded, 0.0 to 1.0. Count a login
    /// refused for a wrong password as a success (or leave it out): it is
    /// the client's failure, not the service's, and counting it would let
    /// anyone guessing passwords mark IMAP degraded on the public page.
    pub imap_login_success_ratio: Option<f64>,
    /// IMAP logins attempted, the sample behind the ratio.
    pub imap_login_attempts: Option<u64>,
    /// How far the replica is behind, in milliseconds.
    pub replication_lag_ms: Option<u64>,
}

/// The thresholds, the grace time, and the component each figure belongs
/// to. The defaults suit a small provider; every value is meant to be
/// configurable, and a configuration that sets some keys keeps the
/// defaults of the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthPolicy {
    /// Median delivery latency over which delivery is slow, ms.
    pub delivery_latency_p50_ms_max: u64,
    /// 99th percentile delivery latency over which delivery is slow for
    /// some messages, ms.
    pub delivery_latency_p99_ms_max: u64,
    /// What delivery usually takes, ms: the "usually under 5 seconds" of
    /// the sentence. Configured rather than measured, so that a long
    /// incident does not teach the page that slow is usual.
    pub delivery_latency_usual_ms: u64,
    /// Backlog over which delivery is behind, in messages.
    pub delivery_backlog_max: u64,
    /// Login success ratio under which IMAP is failing, 0.0 to 1.0.
    pub imap_login_success_ratio_min: f64,
    /// Fewest attempts for the ratio to count: three failures of five
    /// logins at night are not an outage.
    pub imap_login_attempts_min: u64,
    /// Replication lag over which the replica is behind, ms.
    pub replication_lag_ms_max: u64,
    /// How long a figure must stay over its threshold before the page
    /// shows it, in seconds.
    pub grace_seconds: i64,
    /// The component delivery figures belong to.
    pub delivery_component: String,
    /// The component IMAP figures belong to.
    pub imap_component: String,
    /// The component replication lag belongs to.
    pub replication_component: String,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            delivery_latency_p50_ms_max: 60_000,
            delivery_latency_p99_ms_max: 600_000,
            delivery_latency_usual_ms: 5_000,
            delivery_backlog_max: 1_000,
            imap_login_success_ratio_min: 0.9,
            imap_login_attempts_min: 20,
            replication_lag_ms_max: 300_000,
            grace_seconds: 300,
            delivery_component: "Incoming mail".into(),
            imap_component: "IMAP".into(),
            replication_component: "Incoming mail".into(),
        }
    }
}

/// One measured figure and its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Delivery latency, median or 99th percentile.
    DeliveryLatency,
    /// Delivery backlog.
    DeliveryBacklog,
    /// IMAP login success ratio.
    ImapLogins,
    /// Replication lag.
    ReplicationLag,
}

impl Signal {
    /// Every signal, in the order the page lists breaches.
    pub const ALL: [Signal; 4] = [
        Signal::DeliveryLatency,
        Signal::DeliveryBacklog,
        Signal::ImapLogins,
        Signal::ReplicationLag,
    ];

    fn index(self) -> usize {
        match self {
            Signal::DeliveryLatency => 0,
            Signal::DeliveryBacklog => 1,
            Signal::ImapLogins => 2,
            Signal::ReplicationLag => 3,
        }
    }

    /// The component this signal belongs to under `policy`.
    pub fn component(self, policy: &HealthPolicy) -> &str {
        match self {
            Signal::DeliveryLatency | Signal::DeliveryBacklog => &policy.delivery_component,
            Signal::ImapLogins => &policy.imap_component,
            Signal::ReplicationLag => &policy.replication_component,
        }
    }

    /// Whether the figure is over its threshold now. A figure not measured
    /// is not over.
    pub fn is_crossed(self, health: &Health, policy: &HealthPolicy) -> bool {
        match self {
            Signal::DeliveryLatency => {
                health
                    .delivery_latency_p50_ms
                    .is_some_and(|p50| p50 > policy.delivery_latency_p50_ms_max)
                    || health
                        .delivery_latency_p99_ms
                        .is_some_and(|p99| p99 > policy.delivery_latency_p99_ms_max)
            }
            Signal::DeliveryBacklog => health
                .delivery_backlog
                .is_some_and(|backlog| backlog > policy.delivery_backlog_max),
            Signal::ImapLogins => {
                let enough = health
                    .imap_login_attempts
                    .is_some_and(|attempts| attempts >= policy.imap_login_attempts_min);
                // A NaN ratio compares false: unknown, not failing.
                enough
                    && health
                        .imap_login_success_ratio
                        .is_some_and(|ratio| ratio < policy.imap_login_success_ratio_min)
            }
            Signal::ReplicationLag => health
                .replication_lag_ms
                .is_some_and(|lag| lag > policy.replication_lag_ms_max),
        }
    }

    /// What customers experience, as the end of a sentence after the
    /// component's name: "delivery currently takes about 15 minutes,
    /// usually under 5 seconds".
    fn describe(self, health: &Health, policy: &HealthPolicy) -> String {
        let mut text = String::new();
        match self {
            Signal::DeliveryLatency => {
                let usual = duration(policy.delivery_latency_usual_ms);
                match (
                    health.delivery_latency_p50_ms,
                    health.delivery_latency_p99_ms,
                ) {
                    (Some(p50), _) if p50 > policy.delivery_latency_p50_ms_max => {
                        let _ = write!(
                            text,
                            "delivery currently takes about {}, usually under {usual}",
                            duration(p50)
                        );
                    }
                    (_, Some(p99)) => {
                        let _ = write!(
                            text,
                            "delivery of some messages currently takes up to {}, usually under {usual}",
                            duration(p99)
                        );
                    }
                    _ => text.push_str("delivery is slow"),
                }
            }
            Signal::DeliveryBacklog => {
                let backlog = health.delivery_backlog.unwrap_or(0);
                let _ = write!(text, "{backlog} messages are waiting to be delivered");
            }
            Signal::ImapLogins => {
                let ratio = health.imap_login_success_ratio.unwrap_or(1.0);
                let failing = ((1.0 - ratio.clamp(0.0, 1.0)) * 100.0).round();
                let _ = write!(text, "{failing:.0}% of logins are failing");
            }
            Signal::ReplicationLag => {
                let lag = health.replication_lag_ms.unwrap_or(0);
                let _ = write!(
                    text,
                    "the standby copy of mailboxes is about {} behind",
                    duration(lag)
                );
            }
        }
        text
    }
}

/// Since when each figure has been over its threshold: the little state
/// the server keeps between measurements. Keeping it across a restart is
/// not needed (the grace time starts again), but it serializes if wanted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthWatch {
    crossed_since: [Option<i64>; 4],
}

impl HealthWatch {
    /// Takes fresh figures measured at `now`: a figure over its threshold
    /// keeps (or starts) its crossing time, a figure under it clears it.
    pub fn observe(&mut self, health: &Health, policy: &HealthPolicy, now: i64) {
        for signal in Signal::ALL {
            let since = &mut self.crossed_since[signal.index()];
            if signal.is_crossed(health, policy) {
                since.get_or_insert(now);
            } else {
                *since = None;
            }
        }
    }

    /// Since when `signal` has been over its threshold, if it is.
    pub fn crossed_since(&self, signal: Signal) -> Option<i64> {
        self.crossed_since[signal.index()]
    }

    /// Sets the time a figure was first seen over its threshold, for a
    /// server that tracks it itself (or a test).
    pub fn set_crossed_since(&mut self, signal: Signal, since: Option<i64>) {
        self.crossed_since[signal.index()] = since;
    }
}

/// A figure over its threshold for longer than the grace time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// Which figure.
    pub signal: Signal,
    /// The component it belongs to.
    pub component: String,
    /// Since when the figure has been over its threshold, Unix seconds.
    pub since: i64,
    /// What customers experience, starting in lower case, without a final
    /// period: "delivery currently takes about 15 minutes, usually under 5
    /// seconds".
    pub text: String,
}

impl Breach {
    /// The breach as one line with its component:
    /// "Incoming mail: delivery currently takes about 15 minutes, usually
    /// under 5 seconds".
    pub fn line(&self) -> String {
        format!("{}: {}", self.component, self.text)
    }
}

/// The breaches at `now`: every figure that is over its threshold and has
/// been since at least [`HealthPolicy::grace_seconds`] ago, by the watch.
/// The figures give the sentence; the watch gives the time.
pub fn breaches(
    health: &Health,
    watch: &HealthWatch,
    policy: &HealthPolicy,
    now: i64,
) -> Vec<Breach> {
    Signal::ALL
        .into_iter()
        .filter_map(|signal| {
            let since = watch.crossed_since(signal)?;
            let lasted = now.saturating_sub(since) >= policy.grace_seconds;
            (lasted && signal.is_crossed(health, policy)).then(|| Breach {
                signal,
                component: signal.component(policy).to_owned(),
                since,
                text: signal.describe(health, policy),
            })
        })
        .collect()
}

/// A component as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentView {
    /// The component's name.
    pub name: String,
    /// The state shown.
    pub state: ComponentState,
    /// What decided the state shown: a person, an open incident (the
    /// worst one naming the component), or live health.
    pub set_by: SetBy,
    /// Live health sentences for the component, from the breaches shown.
    pub health: Vec<String>,
    /// The component's note, if any.
    pub note: Option<String>,
    /// Ids of the open incidents and in-progress maintenance naming it.
    pub incidents: Vec<u64>,
}

/// The state each component is shown in at `now`, in the order given.
///
/// Starts from the stored state: as stored when set by hand or by health,
/// as stored while the incident that set it is open and operational once
/// it is closed. Open incidents naming the component raise it to their
/// impact's state, maintenance in progress to "under maintenance". A
/// breach raises it to at least degraded, unless an open incident names it
/// (confirmed: the incident decides) or it was set by hand after the
/// crossing began (overridden: the breach is not shown either). The worst
/// of all these is shown. Breaches of components not in the list are
/// ignored.
pub fn derive_components(
    components: &[Component],
    incidents: &[Incident],
    breaches: &[Breach],
    now: i64,
) -> Vec<ComponentView> {
    components
        .iter()
        .map(|component| derive_one(component, incidents, breaches, now))
        .collect()
}

fn derive_one(
    component: &Component,
    incidents: &[Incident],
    breaches: &[Breach],
    now: i64,
) -> ComponentView {
    let mut view = ComponentView {
        name: component.name.clone(),
        state: component.state,
        set_by: component.set_by,
        health: Vec::new(),
        note: component.note.clone(),
        incidents: Vec::new(),
    };
    if let SetBy::Incident(id) = component.set_by {
        let still_open = incidents
            .iter()
            .any(|incident| incident.id == id && !matches!(incident.phase(now), Phase::Closed(_)));
        if !still_open {
            view.state = ComponentState::Operational;
        }
    }
    let mut confirmed = false;
    for incident in incidents {
        if !incident.components.contains(&component.name) {
            continue;
        }
        let state = match incident.phase(now) {
            Phase::Open => {
                confirmed = true;
                incident.impact.component_state()
            }
            Phase::InProgress => ComponentState::Maintenance,
            Phase::Upcoming | Phase::Closed(_) => continue,
        };
        view.incidents.push(incident.id);
        raise(&mut view, state, SetBy::Incident(incident.id));
    }
    for breach in breaches
        .iter()
        .filter(|breach| breach.component == component.name)
    {
        let overridden = component.set_by == SetBy::Manual && component.set_at > breach.since;
        if overridden {
            continue;
        }
        view.health.push(breach.text.clone());
        if !confirmed {
            raise(&mut view, ComponentState::Degraded, SetBy::Health);
        }
    }
    view
}

/// Raises the view's state to `state` if that is worse, recording why.
fn raise(view: &mut ComponentView, state: ComponentState, set_by: SetBy) {
    if state.severity() > view.state.severity() {
        view.state = state;
        view.set_by = set_by;
    }
}

/// A duration as people say it, rounded: "under a second", "1 second",
/// "40 seconds", "15 minutes", "2 hours", "3 days".
pub fn duration(milliseconds: u64) -> String {
    let seconds = milliseconds.saturating_add(500) / 1_000;
    let (count, unit) = if milliseconds < 1_000 {
        return "a second".into();
    } else if seconds < 90 {
        (seconds, "second")
    } else if seconds < 90 * 60 {
        ((seconds + 30) / 60, "minute")
    } else if seconds < 36 * 3_600 {
        ((seconds + 1_800) / 3_600, "hour")
    } else {
        ((seconds + 43_200) / 86_400, "day")
    };
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Impact, Kind, Post, State};

    const NOW: i64 = 1_000_000;

    fn slow_delivery() -> Health {
        Health {
            delivery_latency_p50_ms: Some(15 * 60 * 1_000),
            delivery_latency_p99_ms: Some(20 * 60 * 1_000),
            delivery_backlog: Some(12),
            ..Health::default()
        }
    }

    fn component(name: &str) -> Component {
        Component {
            name: name.into(),
            state: ComponentState::Operational,
            set_by: SetBy::Manual,
            set_at: 0,
            note: None,
        }
    }

    fn incident(id: u64, impact: Impact, components: &[&str]) -> Incident {
        Incident {
            id,
            title: "Delivery is slow".into(),
            components: components.iter().map(|&name| name.into()).collect(),
            impact,
            state: State::Identified,
            kind: Kind::Incident,
            created: NOW - 600,
            resolved: None,
            posts: vec![Post {
                id: 1,
                author: "sam".into(),
                at: NOW - 600,
                text: "Looking.".into(),
                edits: Vec::new(),
            }],
        }
    }

    /// Watches `health` from `since` to `now` and returns the breaches.
    fn watched(health: &Health, since: i64, now: i64) -> Vec<Breach> {
        let policy = HealthPolicy::default();
        let mut watch = HealthWatch::default();
        watch.observe(health, &policy, since);
        watch.observe(health, &policy, now);
        breaches(health, &watch, &policy, now)
    }

    #[test]
    fn the_issue_sentence() {
        let found = watched(&slow_delivery(), NOW - 300, NOW);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].line(),
            "Incoming mail: delivery currently takes about 15 minutes, usually under 5 seconds"
        );
        assert_eq!(found[0].since, NOW - 300);
    }

    #[test]
    fn grace_time() {
        assert!(watched(&slow_delivery(), NOW - 299, NOW).is_empty());
        assert_eq!(watched(&slow_delivery(), NOW - 300, NOW).len(), 1);
    }

    #[test]
    fn a_dip_under_the_threshold_starts_the_grace_time_again() {
        let policy = HealthPolicy::default();
        let mut watch = HealthWatch::default();
        watch.observe(&slow_delivery(), &policy, NOW - 1_000);
        watch.observe(&Health::default(), &policy, NOW - 200);
        watch.observe(&slow_delivery(), &policy, NOW - 100);
        assert_eq!(
            watch.crossed_since(Signal::DeliveryLatency),
            Some(NOW - 100)
        );
        assert!(breaches(&slow_delivery(), &watch, &policy, NOW).is_empty());
    }

    #[test]
    fn figures_back_under_are_no_breach_even_if_the_watch_is_stale() {
        let policy = HealthPolicy::default();
        let mut watch = HealthWatch::default();
        watch.set_crossed_since(Signal::DeliveryLatency, Some(0));
        assert!(breaches(&Health::default(), &watch, &policy, NOW).is_empty());
    }

    #[test]
    fn each_signal_has_a_sentence() {
        let health = Health {
            delivery_latency_p50_ms: Some(2_000),
            delivery_latency_p99_ms: Some(45 * 60 * 1_000),
            delivery_backlog: Some(5_000),
            imap_login_success_ratio: Some(0.25),
            imap_login_attempts: Some(400),
            replication_lag_ms: Some(2 * 3_600 * 1_000),
        };
        let lines: Vec<String> = watched(&health, 0, NOW).iter().map(Breach::line).collect();
        assert_eq!(
            lines,
            [
                "Incoming mail: delivery of some messages currently takes up to 45 minutes, usually under 5 seconds",
                "Incoming mail: 5000 messages are waiting to be delivered",
                "IMAP: 75% of logins are failing",
                "Incoming mail: the standby copy of mailboxes is about 2 hours behind",
            ]
        );
    }

    #[test]
    fn few_logins_and_unknown_figures_raise_nothing() {
        let few = Health {
            imap_login_success_ratio: Some(0.0),
            imap_login_attempts: Some(5),
            ..Health::default()
        };
        assert!(watched(&few, 0, NOW).is_empty());
        let nan = Health {
            imap_login_success_ratio: Some(f64::NAN),
            imap_login_attempts: Some(500),
            ..Health::default()
        };
        assert!(watched(&nan, 0, NOW).is_empty());
        assert!(watched(&Health::default(), 0, NOW).is_empty());
    }

    #[test]
    fn a_breach_raises_its_component_to_degraded() {
        let components = [component("Incoming mail"), component("IMAP")];
        let found = watched(&slow_delivery(), 0, NOW);
        let views = derive_components(&components, &[], &found, NOW);
        assert_eq!(views[0].state, ComponentState::Degraded);
        assert_eq!(views[0].set_by, SetBy::Health);
        assert_eq!(
            views[0].health,
            ["delivery currently takes about 15 minutes, usually under 5 seconds"]
        );
        assert_eq!(views[1].state, ComponentState::Operational);
        assert!(views[1].health.is_empty());
    }

    #[test]
    fn an_open_incident_confirms_and_decides() {
        let components = [component("Incoming mail")];
        let found = watched(&slow_delivery(), 0, NOW);
        // The author judged it no impact: the incident decides, the live
        // sentence stays.
        let notice = [incident(4, Impact::None, &["Incoming mail"])];
        let views = derive_components(&components, &notice, &found, NOW);
        assert_eq!(views[0].state, ComponentState::Operational);
        assert_eq!(views[0].health.len(), 1);
        assert_eq!(views[0].incidents, [4]);

        let outage = [incident(5, Impact::Critical, &["Incoming mail"])];
        let views = derive_components(&components, &outage, &found, NOW);
        assert_eq!(views[0].state, ComponentState::MajorOutage);
        assert_eq!(views[0].set_by, SetBy::Incident(5));
    }

    #[test]
    fn set_by_hand_after_the_crossing_overrides_it() {
        let found = watched(&slow_delivery(), NOW - 1_000, NOW);
        let mut acknowledged = component("Incoming mail");
        acknowledged.set_at = NOW - 500;
        let views = derive_components(&[acknowledged.clone()], &[], &found, NOW);
        assert_eq!(views[0].state, ComponentState::Operational);
        assert!(views[0].health.is_empty());

        // Set by hand before the crossing: the breach counts.
        acknowledged.set_at = NOW - 2_000;
        let views = derive_components(&[acknowledged], &[], &found, NOW);
        assert_eq!(views[0].state, ComponentState::Degraded);
    }

    #[test]
    fn stored_states_and_incidents() {
        let mut by_incident = component("IMAP");
        by_incident.state = ComponentState::PartialOutage;
        by_incident.set_by = SetBy::Incident(9);
        let mut open = incident(9, Impact::Minor, &[]);
        let views = derive_components(&[by_incident.clone()], &[open.clone()], &[], NOW);
        assert_eq!(views[0].state, ComponentState::PartialOutage);

        open.state = State::Resolved;
        open.resolved = Some(NOW - 1);
        let views = derive_components(&[by_incident], &[open], &[], NOW);
        assert_eq!(views[0].state, ComponentState::Operational);

        let mut manual = component("Web");
        manual.state = ComponentState::MajorOutage;
        let minor = incident(1, Impact::Minor, &["Web"]);
        let views = derive_components(&[manual], &[minor], &[], NOW);
        assert_eq!(views[0].state, ComponentState::MajorOutage, "worst wins");
        assert_eq!(views[0].set_by, SetBy::Manual);
    }

    #[test]
    fn maintenance_in_progress() {
        let mut work = incident(3, Impact::None, &["DNS"]);
        work.kind = Kind::Maintenance {
            starts: NOW - 60,
            ends: NOW + 3_600,
        };
        work.state = State::Scheduled;
        let views = derive_components(&[component("DNS")], &[work.clone()], &[], NOW);
        assert_eq!(views[0].state, ComponentState::Maintenance);
        let views = derive_components(&[component("DNS")], &[work], &[], NOW - 120);
        assert_eq!(views[0].state, ComponentState::Operational, "upcoming");
    }

    #[test]
    fn a_policy_keeps_the_defaults_it_does_not_set() {
        let policy: HealthPolicy = serde_json::from_str(r#"{"grace_seconds": 60}"#).unwrap();
        assert_eq!(policy.grace_seconds, 60);
        assert_eq!(policy.delivery_component, "Incoming mail");
        let health: Health = serde_json::from_str(r#"{"delivery_backlog": 3}"#).unwrap();
        assert_eq!(health.delivery_backlog, Some(3));
        assert_eq!(health.replication_lag_ms, None);
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "a second");
        assert_eq!(duration(999), "a second");
        assert_eq!(duration(1_000), "1 second");
        assert_eq!(duration(5_000), "5 seconds");
        assert_eq!(duration(89_000), "89 seconds");
        assert_eq!(duration(90_000), "2 minutes");
        assert_eq!(duration(15 * 60_000), "15 minutes");
        assert_eq!(duration(3 * 3_600_000), "3 hours");
        assert_eq!(duration(4 * 86_400_000), "4 days");
        assert!(duration(u64::MAX).ends_with(" days"));
    }
}
