use super::*;

const SPAM: Fingerprint = Fingerprint(0x1234_5678_9abc_def0);
const MINUTE_MS: u64 = 60_000;
const START_MS: u64 = 1_700_000_000_000;

/// Client address number `n` (10.0.x.y).
fn ip(n: u32) -> IpAddr {
    IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
}

/// `fp` with the given bits flipped.
fn flip(fp: Fingerprint, bits: &[u32]) -> Fingerprint {
    Fingerprint(bits.iter().fold(fp.0, |value, bit| value ^ (1 << bit)))
}

/// A fingerprint far from `SPAM` and from every other `distinct(n)`.
fn distinct(n: u64) -> Fingerprint {
    Fingerprint(crate::fingerprint::tests_support_mix(n))
}

fn detector() -> RunDetector {
    RunDetector::new(RunConfig::default())
}

#[test]
fn nineteen_copies_from_ten_addresses_are_no_run_and_the_twentieth_is() {
    let mut runs = detector();
    for n in 0..19u32 {
        let seen = runs.observe(
            SPAM,
            ip(n % 10),
            "spam.example",
            START_MS + u64::from(n) * 1_000,
        );
        assert_eq!(seen.cluster, 1);
        assert_eq!(seen.cluster_size, n as usize + 1);
        assert_eq!(seen.run, None);
        assert!(!seen.newly_detected);
    }
    let twentieth = runs.observe(SPAM, ip(3), "spam.example", START_MS + 19_000);
    assert_eq!(
        twentieth,
        Observation {
            cluster: 1,
            cluster_size: 20,
            run: Some(1),
            newly_detected: true
        }
    );
    let later = runs.observe(SPAM, ip(4), "spam.example", START_MS + 20_000);
    assert_eq!(later.run, Some(1));
    assert!(!later.newly_detected);
    assert_eq!(later.cluster_size, 21);
    assert_eq!(runs.runs(START_MS + 20_000).len(), 1);
}

#[test]
fn one_address_never_makes_a_run() {
    let mut runs = detector();
    for n in 0..100u64 {
        let seen = runs.observe(SPAM, ip(1), "a.example", START_MS + n * 100);
        assert_eq!(seen.run, None, "message {n}");
        assert_eq!(seen.cluster_size, n as usize + 1);
    }
    // The fifth address in the window makes it one.
    for n in 2..=5 {
        let seen = runs.observe(SPAM, ip(n), "a.example", START_MS + 20_000);
        assert_eq!(seen.newly_detected, n == 5, "address {n}");
    }
    assert!(runs.runs(START_MS + 20_000).iter().all(|run| run.id == 1));
}

#[test]
fn copies_spread_over_more_than_the_window_never_make_a_run() {
    let mut runs = detector();
    // One copy every 40 s from a new address: at most 16 fall in any ten
    // minutes (counted in whole 10 s buckets), however long it goes on.
    for n in 0..200u32 {
        let seen = runs.observe(
            SPAM,
            ip(n),
            "slow.example",
            START_MS + u64::from(n) * 40_000,
        );
        assert_eq!(seen.cluster, 1, "the cluster stays alive");
        assert!(seen.cluster_size <= 16, "{}", seen.cluster_size);
        assert_eq!(seen.run, None);
    }
    assert!(runs.runs(START_MS + 200 * 40_000).is_empty());
}

#[test]
fn the_window_count_forgets_old_members() {
    let mut runs = detector();
    for n in 0..15u32 {
        runs.observe(SPAM, ip(n), "x.example", START_MS);
    }
    // Nine minutes later the 15 still count; eleven minutes later they do not.
    let seen = runs.observe(SPAM, ip(99), "x.example", START_MS + 9 * MINUTE_MS);
    assert_eq!(seen.cluster_size, 16);
    let seen = runs.observe(SPAM, ip(99), "x.example", START_MS + 11 * MINUTE_MS);
    assert_eq!(seen.cluster_size, 2);
    assert_eq!(seen.cluster, 1);
}

#[test]
fn near_duplicates_join_within_five_bits() {
    let mut runs = detector();
    assert_eq!(runs.observe(SPAM, ip(1), "", START_MS).cluster, 1);
    // Distance 2 in one band, and 5 spread over five bands: same cluster.
    let near = flip(SPAM, &[0, 1]);
    assert_eq!(near.distance(SPAM), 2);
    assert_eq!(runs.observe(near, ip(2), "", START_MS).cluster, 1);
    let spread = flip(SPAM, &[1, 12, 23, 34, 45]);
    assert_eq!(spread.distance(SPAM), 5);
    assert_eq!(runs.observe(spread, ip(3), "", START_MS).cluster, 1);
    // Distance 6 (one bit in each of the six bands): a cluster of its own.
    let far = flip(SPAM, &[3, 14, 25, 36, 47, 57]);
    assert_eq!(runs.observe(far, ip(4), "", START_MS).cluster, 2);
    // Members are compared with each cluster's representative; at equal
    // distance the older cluster wins, otherwise the nearer one.
    let between = flip(SPAM, &[3, 14, 25]);
    assert_eq!(between.distance(SPAM), 3);
    assert_eq!(between.distance(far), 3);
    assert_eq!(runs.observe(between, ip(5), "", START_MS).cluster, 1);
    let closer_to_far = flip(far, &[36]);
    assert_eq!(closer_to_far.distance(far), 1);
    assert_eq!(runs.observe(closer_to_far, ip(5), "", START_MS).cluster, 2);
    assert_eq!(runs.clusters(), 2);
}

#[test]
fn max_distance_is_clamped_to_what_the_bands_find() {
    let config = RunConfig {
        max_distance: 10,
        ..RunConfig::default()
    };
    let mut runs = RunDetector::new(config);
    assert_eq!(runs.config().max_distance, 5);
    runs.observe(SPAM, ip(1), "", START_MS);
    let six_apart = flip(SPAM, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(runs.observe(six_apart, ip(1), "", START_MS).cluster, 2);

    let exact = RunConfig {
        max_distance: 0,
        ..RunConfig::default()
    };
    let mut runs = RunDetector::new(exact);
    runs.observe(SPAM, ip(1), "", START_MS);
    assert_eq!(
        runs.observe(flip(SPAM, &[7]), ip(1), "", START_MS).cluster,
        2
    );
    assert_eq!(runs.observe(SPAM, ip(1), "", START_MS).cluster, 1);
}

#[test]
fn clusters_are_bounded_and_the_longest_unseen_go_first() {
    let config = RunConfig {
        max_clusters: 100,
        ..RunConfig::default()
    };
    let mut runs = RunDetector::new(config);
    for n in 0..1_000u64 {
        let seen = runs.observe(distinct(n), ip(1), "", START_MS + n);
        assert_eq!(seen.cluster, n + 1, "ids increase");
        assert!(runs.clusters() <= 100);
    }
    assert_eq!(runs.clusters(), 100);
    assert!(runs.bands.values().map(Vec::len).sum::<usize>() <= 600);
    assert_eq!(runs.order.len(), 100);
    // The first one was evicted: its next copy starts a new cluster.
    assert_eq!(
        runs.observe(distinct(0), ip(1), "", START_MS + 1_000)
            .cluster,
        1_001
    );
    // One of the latest is still there.
    assert_eq!(
        runs.observe(distinct(999), ip(1), "", START_MS + 1_000)
            .cluster,
        1_000
    );
}

#[test]
fn a_flood_of_unique_mail_does_not_evict_a_run() {
    let config = RunConfig {
        max_clusters: 50,
        ..RunConfig::default()
    };
    let mut runs = RunDetector::new(config);
    for n in 0..20u32 {
        runs.observe(SPAM, ip(n), "", START_MS);
    }
    assert_eq!(runs.runs(START_MS).len(), 1);
    for n in 0..500u64 {
        runs.observe(distinct(n), ip(1), "", START_MS + 1 + n);
    }
    assert_eq!(runs.clusters(), 50);
    let seen = runs.observe(flip(SPAM, &[9]), ip(7), "", START_MS + 600);
    assert_eq!(seen.run, Some(1));
    // With room for only one cluster, the run is evicted in the end.
    let mut tiny = RunDetector::new(RunConfig {
        max_clusters: 0,
        min_messages: 1,
        min_sources: 1,
        ..RunConfig::default()
    });
    assert_eq!(tiny.observe(SPAM, ip(1), "", START_MS).run, Some(1));
    assert_eq!(tiny.observe(distinct(1), ip(1), "", START_MS).cluster, 2);
    assert_eq!(tiny.clusters(), 1);
    assert!(tiny.runs(START_MS).iter().all(|run| run.id == 2));
}

#[test]
fn ordinary_clusters_expire_after_the_window_and_ids_are_never_reused() {
    let mut runs = detector();
    for n in 0..10u64 {
        runs.observe(distinct(n), ip(1), "", START_MS);
    }
    assert_eq!(runs.clusters(), 10);
    runs.expire(START_MS + 10 * MINUTE_MS - 1);
    assert_eq!(runs.clusters(), 10);
    runs.expire(START_MS + 10 * MINUTE_MS);
    assert_eq!(runs.clusters(), 0);
    assert!(runs.bands.is_empty(), "expired clusters are unindexed");
    assert!(runs.order.is_empty());
    assert_eq!(
        runs.observe(distinct(0), ip(1), "", START_MS + 20 * MINUTE_MS)
            .cluster,
        11
    );
}

#[test]
fn ended_runs_stay_listed_for_the_history_and_come_back_at_once() {
    let mut runs = detector();
    for n in 0..20u32 {
        runs.observe(SPAM, ip(n), "", START_MS);
    }
    let active = runs.run(1, START_MS + 9 * MINUTE_MS).expect("listed");
    assert!(active.active);
    let ended = runs
        .run(1, START_MS + 10 * MINUTE_MS)
        .expect("still listed");
    assert!(!ended.active);
    // A second wave within the history is a run from its first message.
    let hour_ms = 60 * MINUTE_MS;
    let wave = runs.observe(flip(SPAM, &[60]), ip(500), "", START_MS + 5 * hour_ms);
    assert_eq!(wave.run, Some(1));
    assert!(!wave.newly_detected);
    assert_eq!(wave.cluster_size, 1);
    let info = runs.run(1, START_MS + 5 * hour_ms).expect("listed");
    assert!(info.active);
    assert_eq!(info.detected_ms, START_MS);
    assert_eq!(info.messages, 21);
    // 24 hours after it ended (last member plus the window) it is gone.
    let gone_ms = START_MS + 5 * hour_ms + 10 * MINUTE_MS + 24 * hour_ms;
    assert!(runs.run(1, gone_ms - 1).is_some());
    assert!(runs.run(1, gone_ms).is_none());
    assert!(runs.runs(gone_ms).is_empty());
    runs.expire(gone_ms);
    assert_eq!(runs.clusters(), 0);
    // And then the same text has to qualify again, as a new cluster.
    let again = runs.observe(SPAM, ip(1), "", gone_ms);
    assert_eq!((again.cluster, again.run), (2, None));
}

#[test]
fn run_info_describes_the_run() {
    let mut runs = detector();
    runs.observe(distinct(1), ip(1), "", START_MS);
    // 30 messages: 10 from ip(7), 5 each from ip(2) and ip(3) (a tie,
    // broken by address), and 10 from ten other addresses, IPv4-mapped.
    let mut at_ms = START_MS;
    let mut send = |runs: &mut RunDetector, source: IpAddr, domain: &str| {
        at_ms += 1_000;
        runs.observe(SPAM, source, domain, at_ms)
    };
    for _ in 0..10 {
        send(&mut runs, ip(7), "Spam.Example.");
    }
    for _ in 0..5 {
        send(&mut runs, ip(3), "spam.example");
        send(&mut runs, ip(2), "other.example");
    }
    for n in 100..110 {
        let mapped = match ip(n) {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            other => other,
        };
        send(&mut runs, mapped, "");
    }
    let last_ms = START_MS + 30 * 1_000;
    assert_eq!(runs.runs(last_ms).len(), 1);
    let info = runs.run(2, last_ms).expect("run 2");
    assert_eq!(info.id, 2);
    assert_eq!(info.fingerprint, SPAM);
    assert_eq!(info.messages, 30);
    assert_eq!(info.sources, 13);
    assert_eq!(info.top_sources.len(), TOP_MAX);
    assert_eq!(
        info.top_sources.get(..4),
        Some(&[(ip(7), 10), (ip(2), 5), (ip(3), 5), (ip(100), 1)][..]),
        "mapped addresses count as IPv4"
    );
    assert_eq!(
        info.sender_domains,
        vec![
            ("spam.example".to_string(), 15),
            (String::new(), 10),
            ("other.example".to_string(), 5)
        ]
    );
    assert_eq!(info.first_seen_ms, START_MS + 1_000);
    assert_eq!(info.last_seen_ms, last_ms);
    // Ten from ip(7), ten alternating ip(3) and ip(2): three addresses. The
    // 22nd message brings the fifth.
    assert_eq!(info.detected_ms, START_MS + 22 * 1_000);
    assert!(info.active);
    assert_eq!(runs.run(1, last_ms), None, "an ordinary cluster is no run");
    assert_eq!(runs.run(99, last_ms), None);
}

#[test]
fn runs_are_listed_most_recently_seen_first() {
    let mut runs = detector();
    let other = distinct(5);
    for n in 0..20u32 {
        runs.observe(SPAM, ip(n), "", START_MS);
        runs.observe(other, ip(n), "", START_MS);
    }
    let ids: Vec<u64> = runs.runs(START_MS).iter().map(|run| run.id).collect();
    assert_eq!(ids, [1, 2], "same last seen: lower id first");
    runs.observe(other, ip(1), "", START_MS + 1);
    let ids: Vec<u64> = runs.runs(START_MS + 1).iter().map(|run| run.id).collect();
    assert_eq!(ids, [2, 1]);
}

#[test]
fn tracked_sources_and_domains_are_bounded() {
    let mut runs = RunDetector::new(RunConfig {
        min_messages: 1,
        min_sources: 1,
        ..RunConfig::default()
    });
    let long_domain = "d".repeat(1_000);
    for n in 0..(SOURCES_TRACKED_MAX as u32 + 50) {
        runs.observe(SPAM, ip(n), &format!("{n}.example"), START_MS);
    }
    runs.observe(SPAM, ip(1), &long_domain, START_MS);
    let info = runs.run(1, START_MS).expect("a run");
    assert_eq!(info.sources, SOURCES_TRACKED_MAX);
    assert_eq!(info.messages, SOURCES_TRACKED_MAX as u64 + 51);
    let cluster = runs.clusters.get(&1).expect("cluster 1");
    assert_eq!(cluster.sender_domains.len(), SENDER_DOMAINS_TRACKED_MAX);
    assert!(
        cluster
            .sender_domains
            .keys()
            .all(|domain| domain.len() <= SENDER_DOMAIN_BYTES_MAX)
    );
}

#[test]
fn an_ordinary_cluster_at_the_source_cap_still_sees_new_sources() {
    // 10,000 addresses over a long time (never 20 in a window), then a
    // burst from five new ones: the stalest addresses make room.
    let mut runs = detector();
    for n in 0..SOURCES_TRACKED_MAX as u32 {
        runs.observe(SPAM, ip(n), "", START_MS + u64::from(n) * 40_000);
    }
    let burst_ms = START_MS + SOURCES_TRACKED_MAX as u64 * 40_000;
    let mut detected = false;
    for n in 0..20u32 {
        let seen = runs.observe(SPAM, ip(1_000_000 + n % 5), "", burst_ms);
        detected |= seen.newly_detected;
    }
    assert!(detected);
}

#[test]
fn window_buckets_stay_bounded() {
    let mut runs = RunDetector::new(RunConfig {
        min_sources: 1_000,
        ..RunConfig::default()
    });
    for n in 0..5_000u64 {
        runs.observe(SPAM, ip(1), "", START_MS + n * 997);
    }
    let cluster = runs.clusters.get(&1).expect("cluster 1");
    assert!(
        cluster.window.buckets.len() <= 62,
        "{}",
        cluster.window.buckets.len()
    );
}

#[test]
fn crowded_band_values_stay_bounded_and_findable() {
    // 300 fingerprints sharing their lowest 11 bits (the first band) and
    // far apart otherwise.
    let mut runs = detector();
    let crowd: Vec<Fingerprint> = (0..300u64)
        .map(|n| Fingerprint((distinct(n).0 & !0x7ff) | 0x2ef))
        .collect();
    for (index, fp) in crowd.iter().enumerate() {
        let seen = runs.observe(*fp, ip(1), "", START_MS);
        assert_eq!(seen.cluster, index as u64 + 1);
    }
    let shared = runs.bands.get(&(0, 0x2ef)).map_or(0, Vec::len);
    assert_eq!(shared, BAND_CLUSTERS_MAX);
    // Every one is still found through its other bands.
    for (index, fp) in crowd.iter().enumerate() {
        let seen = runs.observe(flip(*fp, &[20]), ip(1), "", START_MS);
        assert_eq!(seen.cluster, index as u64 + 1);
    }
}

#[test]
fn odd_times_and_configurations_never_panic() {
    let mut runs = RunDetector::new(RunConfig {
        window_ms: 0,
        min_messages: 0,
        min_sources: 0,
        max_distance: u32::MAX,
        max_clusters: 0,
        history_ms: u64::MAX,
    });
    for now_ms in [u64::MAX, 0, u64::MAX - 1, 5] {
        let seen = runs.observe(SPAM, ip(1), "\u{0}\u{fffd}é.", now_ms);
        assert_eq!(seen.run, Some(seen.cluster));
        let _ = runs.runs(now_ms);
        runs.expire(now_ms);
    }
    let mut runs = RunDetector::new(RunConfig {
        window_ms: u64::MAX,
        history_ms: u64::MAX,
        ..RunConfig::default()
    });
    for n in 0..30u32 {
        runs.observe(SPAM, ip(n), "", u64::MAX - 30 + u64::from(n));
    }
    assert_eq!(runs.runs(u64::MAX).len(), 1);
    // Time going backwards counts as the latest time seen.
    let mut runs = detector();
    runs.observe(SPAM, ip(1), "", START_MS);
    let seen = runs.observe(SPAM, ip(2), "", START_MS - 20 * MINUTE_MS);
    assert_eq!(seen.cluster_size, 2);
}
