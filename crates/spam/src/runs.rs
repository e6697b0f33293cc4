//! Run detection: clusters of near-identical bodies across all inbound mail
//! in a sliding window, and which clusters are spam runs.
//!
//! # How
//!
//! Every inbound message with a [`Fingerprint`] is observed once
//! ([`RunDetector::observe`]). It joins the nearest cluster whose
//! representative (its first member's fingerprint) is within
//! `max_distance` bits, or starts a new one. Candidates are found by
//! banding: the 64 bits are six bands (four of 11 bits, two of 10), and
//! every cluster is indexed under each of its representative's six band
//! values. Two fingerprints at most 5 bits apart agree on at least one
//! whole band (5 differing bits cannot touch all 6 bands), so looking up the
//! message's six band values finds every cluster within distance 5; that is
//! why `max_distance` is clamped to 5. Copies of one spam whose varied parts
//! (names, links) are a few percent of the text land 1 to 5 bits apart;
//! unrelated texts about 32 (two random 64-bit values are within 5 bits
//! with a chance of about 10^-11).
//!
//! A cluster is a run when, within `window_ms`, it has at least
//! `min_messages` members from at least `min_sources` distinct client
//! addresses. The source condition keeps a mailing list from one server,
//! or a customer's burst of invoices, from being called a run; the window
//! keeps slow, ordinary repetition (daily notifications) from adding up.
//! Once a run, a cluster stays one while it is active (a member within the
//! window), and while it is listed after that: a member arriving within
//! `history_ms` of the run's end is a run member at once, so a second wave
//! of the same spam is held back from its first message.
//!
//! # Bounds
//!
//! - At most `max_clusters` clusters. When a new cluster needs room, the
//!   cluster seen longest ago goes, ordinary clusters before runs (so a
//!   flood of unique messages cannot push a run out of memory).
//! - Clusters that are not runs are forgotten once nothing of theirs is in
//!   the window; runs `history_ms` after their end (last member plus
//!   `window_ms`). Expiry happens on every observation, amortised O(log n)
//!   per cluster.
//! - Per cluster: the window count is kept in at most 62 time buckets of
//!   `window_ms / 60` (counts, not one entry per message); at most
//!   [`SOURCES_TRACKED_MAX`] client addresses and
//!   [`SENDER_DOMAINS_TRACKED_MAX`] sender domains (of at most
//!   [`SENDER_DOMAIN_BYTES_MAX`] bytes) are tracked. A cluster of one
//!   message costs about 800 bytes with its indexes (measured), so the
//!   default 100,000 clusters, which a flood of unique mail fills, are
//!   about 80 MB. A run's own maps grow to at most about 1 MB.
//! - A lookup compares with at most 6 × [`BAND_CLUSTERS_MAX`] clusters,
//!   even when crafted fingerprints crowd one band value.
//!
//! Time is the caller's `now_ms`. It is taken as never going backwards: an
//! earlier time than one already seen counts as the latest seen.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

use crate::fingerprint::Fingerprint;

/// Client addresses tracked per cluster. Past this a run's `sources` stops
/// growing (it reads "at least 10,000"), and a cluster that is not a run
/// replaces the address seen longest ago.
pub const SOURCES_TRACKED_MAX: usize = 10_000;

/// Sender domains tracked per cluster; later new domains are not counted.
pub const SENDER_DOMAINS_TRACKED_MAX: usize = 1_000;

/// Longest sender domain kept (a DNS name is at most 253); longer ones are
/// cut at a character boundary.
pub const SENDER_DOMAIN_BYTES_MAX: usize = 255;

/// Entries in [`RunInfo::top_sources`] and [`RunInfo::sender_domains`].
pub const TOP_MAX: usize = 10;

/// Clusters indexed under one band value. Fingerprints are spread evenly,
/// so with 100,000 clusters a band value holds about 2; only crafted
/// fingerprints reach this, and then the oldest ordinary cluster there is
/// unindexed from that band (it stays findable through its other three).
pub const BAND_CLUSTERS_MAX: usize = 256;

/// Largest `max_distance` for which the six bands find every match.
pub const DISTANCE_MAX: u32 = 5;

/// Time buckets per window: the window count is exact to `window_ms / 60`.
const WINDOW_BUCKETS: u64 = 60;

const BANDS: u8 = 6;
/// Where each band starts in the fingerprint, and its width in bits.
const BAND_LAYOUT: [(u32, u32); BANDS as usize] =
    [(0, 11), (11, 11), (22, 11), (33, 11), (44, 10), (54, 10)];

/// What makes a cluster a run, and the detector's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// The sliding window, in milliseconds (at least 1). Default 10 minutes.
    pub window_ms: u64,
    /// Members within the window to call a cluster a run (at least 1).
    /// Default 20.
    pub min_messages: usize,
    /// Distinct client addresses among the window's members (at least 1).
    /// Default 5.
    pub min_sources: usize,
    /// Bits a message may differ from a cluster's representative and join
    /// it. Clamped to [`DISTANCE_MAX`]. Default 5.
    pub max_distance: u32,
    /// Clusters held (at least 1). Default 100,000.
    pub max_clusters: usize,
    /// How long an ended run stays listed, in milliseconds. Default 24 h.
    pub history_ms: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            window_ms: 10 * 60 * 1000,
            min_messages: 20,
            min_sources: 5,
            max_distance: DISTANCE_MAX,
            max_clusters: 100_000,
            history_ms: 24 * 60 * 60 * 1000,
        }
    }
}

impl RunConfig {
    /// The configuration as used: every value in its range.
    fn clamped(self) -> RunConfig {
        RunConfig {
            window_ms: self.window_ms.max(1),
            min_messages: self.min_messages.max(1),
            min_sources: self.min_sources.max(1),
            max_distance: self.max_distance.min(DISTANCE_MAX),
            max_clusters: self.max_clusters.max(1),
            history_ms: self.history_ms,
        }
    }
}

/// What [`RunDetector::observe`] made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The cluster the message joined (new or existing).
    pub cluster: u64,
    /// Members within the window, this one included (the window's start
    /// rounded down to a bucket of `window_ms / 60`).
    pub cluster_size: usize,
    /// `Some(run id)` when the cluster is (now) a run; the run id is the
    /// cluster id.
    pub run: Option<u64>,
    /// This message made the cluster a run.
    pub newly_detected: bool,
}

/// A run, as the CLI, the log and the admin API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub id: u64,
    /// The cluster's representative: its first member's fingerprint.
    pub fingerprint: Fingerprint,
    /// Members since the cluster started, not only those in the window.
    pub messages: u64,
    /// Distinct client addresses; at most [`SOURCES_TRACKED_MAX`], which
    /// means "at least that many".
    pub sources: usize,
    /// Up to [`TOP_MAX`] addresses, most messages first, ties by address.
    pub top_sources: Vec<(IpAddr, u64)>,
    /// Up to [`TOP_MAX`] envelope sender domains (lowercase), same order.
    pub sender_domains: Vec<(String, u64)>,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
    /// When it became a run.
    pub detected_ms: u64,
    /// A member is within the window.
    pub active: bool,
}

/// Near-duplicate clusters and runs. See the module documentation.
#[derive(Debug)]
pub struct RunDetector {
    config: RunConfig,
    bucket_width_ms: u64,
    clusters: HashMap<u64, Cluster>,
    /// (band index, band value) to the clusters whose representative has it.
    bands: HashMap<(u8, u16), Vec<u64>>,
    /// Every cluster as (is a run, last seen, id): the first entry is the
    /// ordinary cluster seen longest ago, or, if there is none, the run
    /// seen longest ago. Drives eviction and expiry.
    order: BTreeSet<(bool, u64, u64)>,
    /// Id of the next new cluster; ids start at 1 and only increase.
    next_id: u64,
    /// The latest time seen, so time never goes backwards.
    latest_ms: u64,
}

#[derive(Debug)]
struct Cluster {
    representative: Fingerprint,
    messages: u64,
    window: Window,
    sources: HashMap<IpAddr, Source>,
    sender_domains: HashMap<String, u64>,
    first_seen_ms: u64,
    last_seen_ms: u64,
    /// When it became a run; `None` for an ordinary cluster.
    detected_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    messages: u64,
    last_seen_ms: u64,
}

/// Member counts per time bucket, oldest first, only buckets that still
/// touch the window. At most `WINDOW_BUCKETS + 2` entries.
#[derive(Debug)]
struct Window {
    buckets: VecDeque<(u64, u32)>,
}

impl Window {
    /// Room for one bucket: most clusters never get a second member, and
    /// the default first allocation would be four.
    fn new() -> Window {
        Window {
            buckets: VecDeque::with_capacity(1),
        }
    }

    /// Counts one member in `bucket`, dropping buckets before `first`.
    fn add(&mut self, bucket: u64, first: u64) {
        self.trim(first);
        match self.buckets.back_mut() {
            Some((last, count)) if *last == bucket => *count = count.saturating_add(1),
            _ => self.buckets.push_back((bucket, 1)),
        }
        // Time never goes backwards, so buckets arrive in order and the
        // trim bounds the length; this is the bound's backstop.
        while self.buckets.len() as u64 > WINDOW_BUCKETS + 2 {
            self.buckets.pop_front();
        }
    }

    fn trim(&mut self, first: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|(bucket, _)| *bucket < first)
        {
            self.buckets.pop_front();
        }
    }

    /// Members in buckets from `first` on.
    fn count(&self, first: u64) -> usize {
        self.buckets
            .iter()
            .filter(|(bucket, _)| *bucket >= first)
            .map(|(_, count)| *count as usize)
            .sum()
    }
}

impl Cluster {
    fn new(representative: Fingerprint, now_ms: u64) -> Cluster {
        Cluster {
            representative,
            messages: 0,
            window: Window::new(),
            sources: HashMap::new(),
            sender_domains: HashMap::new(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            detected_ms: None,
        }
    }

    fn order_key(&self, id: u64) -> (bool, u64, u64) {
        (self.detected_ms.is_some(), self.last_seen_ms, id)
    }

    fn record_source(&mut self, source: IpAddr, now_ms: u64) {
        if let Some(entry) = self.sources.get_mut(&source) {
            entry.messages = entry.messages.saturating_add(1);
            entry.last_seen_ms = now_ms;
            return;
        }
        if self.sources.len() >= SOURCES_TRACKED_MAX {
            if self.detected_ms.is_some() {
                // A run's count saturates; its detection is done.
                return;
            }
            // An ordinary cluster needs its recent sources to be detected:
            // make room by dropping the one seen longest ago. O(n), and only
            // for a cluster with 10,000 addresses that is not yet a run.
            let stalest = self
                .sources
                .iter()
                .min_by_key(|(address, entry)| (entry.last_seen_ms, **address))
                .map(|(address, _)| *address);
            if let Some(address) = stalest {
                self.sources.remove(&address);
            }
        }
        self.sources.insert(
            source,
            Source {
                messages: 1,
                last_seen_ms: now_ms,
            },
        );
    }

    fn record_sender_domain(&mut self, domain: &str) {
        let domain = normalise_domain(domain);
        if let Some(count) = self.sender_domains.get_mut(&domain) {
            *count = count.saturating_add(1);
        } else if self.sender_domains.len() < SENDER_DOMAINS_TRACKED_MAX {
            self.sender_domains.insert(domain, 1);
        }
    }

    /// Whether at least `wanted` distinct sources were seen from
    /// `window_start_ms` on. Stops counting at `wanted`.
    fn has_sources_since(&self, window_start_ms: u64, wanted: usize) -> bool {
        self.sources
            .values()
            .filter(|entry| entry.last_seen_ms >= window_start_ms)
            .take(wanted)
            .count()
            >= wanted
    }
}

impl RunDetector {
    /// A detector with `config`; out-of-range values are clamped (see
    /// [`RunConfig`]).
    pub fn new(config: RunConfig) -> Self {
        let config = config.clamped();
        let bucket_width_ms = config.window_ms.div_ceil(WINDOW_BUCKETS).max(1);
        RunDetector {
            config,
            bucket_width_ms,
            clusters: HashMap::new(),
            bands: HashMap::new(),
            order: BTreeSet::new(),
            next_id: 1,
            latest_ms: 0,
        }
    }

    /// The configuration in use, after clamping.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// Records one inbound message: its body fingerprint, the client
    /// address (IPv4-mapped IPv6 counts as IPv4) and the envelope sender's
    /// domain (compared in lowercase, without a trailing dot). A body too
    /// short for a fingerprint is not observed: short texts are too alike
    /// to say they are copies.
    pub fn observe(
        &mut self,
        fp: Fingerprint,
        source: IpAddr,
        sender_domain: &str,
        now_ms: u64,
    ) -> Observation {
        let now_ms = now_ms.max(self.latest_ms);
        self.latest_ms = now_ms;
        self.expire(now_ms);

        let existing = self.nearest(fp).and_then(|id| {
            let cluster = self.clusters.remove(&id)?;
            self.order.remove(&cluster.order_key(id));
            Some((id, cluster))
        });
        let (id, mut cluster) = match existing {
            Some(found) => found,
            None => self.start_cluster(fp, now_ms),
        };

        let window_start_ms = self.window_start_ms(now_ms);
        let first_bucket = window_start_ms / self.bucket_width_ms;
        cluster.messages = cluster.messages.saturating_add(1);
        cluster.last_seen_ms = now_ms;
        cluster
            .window
            .add(now_ms / self.bucket_width_ms, first_bucket);
        cluster.record_source(source.to_canonical(), now_ms);
        cluster.record_sender_domain(sender_domain);

        let cluster_size = cluster.window.count(first_bucket);
        let newly_detected = cluster.detected_ms.is_none()
            && cluster_size >= self.config.min_messages
            && cluster.has_sources_since(window_start_ms, self.config.min_sources);
        if newly_detected {
            cluster.detected_ms = Some(now_ms);
        }
        let run = cluster.detected_ms.map(|_| id);
        self.order.insert(cluster.order_key(id));
        self.clusters.insert(id, cluster);
        Observation {
            cluster: id,
            cluster_size,
            run,
            newly_detected,
        }
    }

    /// Runs that are active or ended within `history_ms`, the most recently
    /// seen first (ties: lower id first).
    pub fn runs(&self, now_ms: u64) -> Vec<RunInfo> {
        let mut runs: Vec<RunInfo> = self
            .order
            .range((true, 0, 0)..)
            .filter_map(|&(_, _, id)| self.run(id, now_ms))
            .collect();
        runs.sort_by(|a, b| b.last_seen_ms.cmp(&a.last_seen_ms).then(a.id.cmp(&b.id)));
        runs
    }

    /// One run by id, if it is a run that is active or ended within
    /// `history_ms`.
    pub fn run(&self, id: u64, now_ms: u64) -> Option<RunInfo> {
        let cluster = self.clusters.get(&id)?;
        let detected_ms = cluster.detected_ms?;
        if self.run_expired(cluster.last_seen_ms, now_ms) {
            return None;
        }
        Some(RunInfo {
            id,
            fingerprint: cluster.representative,
            messages: cluster.messages,
            sources: cluster.sources.len(),
            top_sources: top(cluster.sources.iter().map(|(a, s)| (*a, s.messages))),
            sender_domains: top(cluster
                .sender_domains
                .iter()
                .map(|(domain, count)| (domain.clone(), *count))),
            first_seen_ms: cluster.first_seen_ms,
            last_seen_ms: cluster.last_seen_ms,
            detected_ms,
            active: self.active(cluster.last_seen_ms, now_ms),
        })
    }

    /// Clusters held, runs included (for metrics).
    pub fn clusters(&self) -> usize {
        self.clusters.len()
    }

    /// Forgets ordinary clusters with nothing in the window and runs ended
    /// more than `history_ms` ago. [`RunDetector::observe`] does this
    /// itself; call it to free memory when no mail arrives.
    pub fn expire(&mut self, now_ms: u64) {
        let now_ms = now_ms.max(self.latest_ms);
        // Each round removes one cluster, so both loops are bounded.
        while let Some(&(false, last_seen_ms, id)) = self.order.first() {
            if self.active(last_seen_ms, now_ms) {
                break;
            }
            self.remove_cluster(id);
        }
        while let Some(&(_, last_seen_ms, id)) = self.order.range((true, 0, 0)..).next() {
            if !self.run_expired(last_seen_ms, now_ms) {
                break;
            }
            self.remove_cluster(id);
        }
    }

    /// Whether something last seen at `last_seen_ms` is still in the window.
    /// A window end past the end of time never comes.
    fn active(&self, last_seen_ms: u64, now_ms: u64) -> bool {
        last_seen_ms
            .checked_add(self.config.window_ms)
            .is_none_or(|end_ms| end_ms > now_ms)
    }

    /// Whether a run last seen at `last_seen_ms` ended (its last member
    /// left the window) more than `history_ms` ago.
    fn run_expired(&self, last_seen_ms: u64, now_ms: u64) -> bool {
        last_seen_ms
            .checked_add(self.config.window_ms)
            .and_then(|ended_ms| ended_ms.checked_add(self.config.history_ms))
            .is_some_and(|gone_ms| gone_ms <= now_ms)
    }

    /// The earliest instant inside the window ending at `now_ms`.
    fn window_start_ms(&self, now_ms: u64) -> u64 {
        now_ms
            .saturating_add(1)
            .saturating_sub(self.config.window_ms)
    }

    /// The cluster nearest to `fp` within `max_distance` (ties: lowest id).
    fn nearest(&self, fp: Fingerprint) -> Option<u64> {
        let mut best: Option<(u32, u64)> = None;
        for band in 0..BANDS {
            let Some(ids) = self.bands.get(&band_key(fp, band)) else {
                continue;
            };
            for &id in ids {
                let Some(cluster) = self.clusters.get(&id) else {
                    continue;
                };
                let distance = fp.distance(cluster.representative);
                if distance <= self.config.max_distance
                    && best.is_none_or(|current| (distance, id) < current)
                {
                    best = Some((distance, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// A new, empty cluster for `fp`, indexed, after making room for it.
    fn start_cluster(&mut self, fp: Fingerprint, now_ms: u64) -> (u64, Cluster) {
        // Bounded: each round removes one cluster.
        while self.clusters.len() >= self.config.max_clusters {
            let Some(&(_, _, oldest)) = self.order.first() else {
                break;
            };
            self.remove_cluster(oldest);
        }
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        for band in 0..BANDS {
            // Most band values hold one cluster; start with room for one.
            let ids = self
                .bands
                .entry(band_key(fp, band))
                .or_insert_with(|| Vec::with_capacity(1));
            if ids.len() >= BAND_CLUSTERS_MAX {
                let clusters = &self.clusters;
                let victim = ids
                    .iter()
                    .position(|id| clusters.get(id).is_none_or(|c| c.detected_ms.is_none()))
                    .unwrap_or(0);
                if victim < ids.len() {
                    ids.remove(victim);
                }
            }
            ids.push(id);
        }
        (id, Cluster::new(fp, now_ms))
    }

    fn remove_cluster(&mut self, id: u64) {
        let Some(cluster) = self.clusters.remove(&id) else {
            // Not in the map: only a stale order entry can name it.
            self.order.retain(|&(_, _, other)| other != id);
            return;
        };
        self.order.remove(&cluster.order_key(id));
        for band in 0..BANDS {
            let key = band_key(cluster.representative, band);
            if let Some(ids) = self.bands.get_mut(&key) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.bands.remove(&key);
                }
            }
        }
    }
}

fn band_key(fp: Fingerprint, band: u8) -> (u8, u16) {
    let (start, width) = BAND_LAYOUT
        .get(usize::from(band))
        .copied()
        .unwrap_or((0, 11));
    let mask = (1u64 << width) - 1;
    // At most 11 bits: the value fits a u16.
    (band, ((fp.0 >> start) & mask) as u16)
}

/// Lowercase, without surrounding whitespace or a trailing dot, at most
/// [`SENDER_DOMAIN_BYTES_MAX`] bytes.
fn normalise_domain(domain: &str) -> String {
    let domain = domain.trim();
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    let mut end = SENDER_DOMAIN_BYTES_MAX.min(domain.len());
    while !domain.is_char_boundary(end) {
        end -= 1;
    }
    domain.get(..end).unwrap_or_default().to_lowercase()
}

/// The `TOP_MAX` entries with the most messages, ties by key.
fn top<K: Ord>(entries: impl Iterator<Item = (K, u64)>) -> Vec<(K, u64)> {
    let mut entries: Vec<(K, u64)> = entries.collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries.truncate(TOP_MAX);
    entries
}

#[cfg(test)]
mod tests;
