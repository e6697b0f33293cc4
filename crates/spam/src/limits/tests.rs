use super::*;

fn limiter(per_second: f64, burst: f64, max_keys: usize) -> RateLimiter<&'static str> {
    RateLimiter::new(Rate { per_second, burst }, max_keys)
}

#[test]
fn a_new_key_has_its_burst_then_waits_for_the_refill() {
    let mut limits = limiter(2.0, 3.0, 10);
    assert_eq!(limits.take(&"a", 1.0, 1_000), Ok(()));
    assert_eq!(limits.take(&"a", 2.0, 1_000), Ok(()));
    // Empty: one token takes 500 ms at 2 per second.
    assert_eq!(limits.take(&"a", 1.0, 1_000), Err(500));
    assert_eq!(limits.take(&"a", 1.0, 1_200), Err(300));
    assert_eq!(limits.take(&"a", 1.0, 1_500), Ok(()));
    // Other keys are independent.
    assert_eq!(limits.take(&"b", 3.0, 1_500), Ok(()));
    assert_eq!(limits.len(), 2);
    assert!(!limits.is_empty());
}

#[test]
fn a_refusal_leaves_the_bucket_unchanged() {
    let mut limits = limiter(1.0, 5.0, 10);
    assert_eq!(limits.take(&"a", 4.0, 0), Ok(()));
    // One token left: asking for three is refused, and costs nothing.
    assert_eq!(limits.take(&"a", 3.0, 0), Err(2_000));
    assert_eq!(limits.take(&"a", 3.0, 0), Err(2_000));
    assert_eq!(limits.take(&"a", 1.0, 0), Ok(()));
    assert_eq!(limits.take(&"a", 1.0, 0), Err(1_000));
}

#[test]
fn the_refill_stops_at_the_burst() {
    let mut limits = limiter(10.0, 2.0, 10);
    assert_eq!(limits.take(&"a", 2.0, 0), Ok(()));
    // An hour later the bucket holds 2, not 36,000.
    assert_eq!(limits.take(&"a", 2.0, 3_600_000), Ok(()));
    assert_eq!(limits.take(&"a", 1.0, 3_600_000), Err(100));
}

#[test]
fn unlimited_rates_keep_no_buckets() {
    for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut limits = limiter(per_second, 1.0, 10);
        for _ in 0..100 {
            assert_eq!(limits.take(&"a", 1_000.0, 0), Ok(()));
        }
        assert!(limits.is_empty(), "{per_second}");
        assert!(limits.rate().is_unlimited());
    }
}

#[test]
fn odd_amounts_and_bursts_never_panic() {
    let mut limits = limiter(1.0, 2.0, 10);
    for amount in [0.0, -1.0, f64::NAN, f64::NEG_INFINITY] {
        assert_eq!(limits.take(&"a", amount, 0), Ok(()), "{amount}");
    }
    assert!(limits.is_empty(), "taking nothing creates no bucket");
    // More than the burst can never be had.
    assert_eq!(limits.take(&"a", 2.5, 0), Err(u64::MAX));
    assert_eq!(limits.take(&"a", f64::INFINITY, 0), Err(u64::MAX));
    for burst in [0.0, -5.0, f64::NAN] {
        let mut limits = limiter(1.0, burst, 10);
        assert_eq!(limits.take(&"a", 0.5, 0), Err(u64::MAX), "{burst}");
    }
    // A tiny rate: the wait saturates instead of overflowing.
    let mut slow = limiter(1e-300, 1.0, 10);
    assert_eq!(slow.take(&"a", 1.0, 0), Ok(()));
    assert_eq!(slow.take(&"a", 1.0, 0), Err(u64::MAX));
    // Time far in the future and then backwards.
    let mut limits = limiter(1.0, 1.0, 10);
    assert_eq!(limits.take(&"a", 1.0, u64::MAX), Ok(()));
    assert_eq!(limits.take(&"a", 1.0, u64::MAX), Err(1_000));
    assert_eq!(limits.take(&"a", 1.0, 0), Err(1_000));
    assert_eq!(limits.take(&"b", 1.0, u64::MAX - 1), Ok(()));
}

#[test]
fn the_key_count_is_bounded() {
    let mut limits: RateLimiter<u64> = RateLimiter::new(
        Rate {
            per_second: 1.0,
            burst: 1.0,
        },
        100,
    );
    for key in 0..10_000u64 {
        assert_eq!(limits.take(&key, 1.0, 0), Ok(()));
        assert!(limits.len() <= 100);
    }
    assert_eq!(limits.len(), 100);
    // Zero keys is taken as one.
    let mut one = limiter(1.0, 1.0, 0);
    assert_eq!(one.take(&"a", 1.0, 0), Ok(()));
    assert_eq!(one.take(&"b", 1.0, 0), Ok(()));
    assert_eq!(one.len(), 1);
}

#[test]
fn a_full_limiter_forgets_refilled_buckets_first_then_the_least_recently_touched() {
    let mut limits = limiter(1.0, 2.0, 3);
    assert_eq!(limits.take(&"a", 2.0, 0), Ok(()));
    assert_eq!(limits.take(&"b", 2.0, 0), Ok(()));
    assert_eq!(limits.take(&"c", 1.0, 0), Ok(()));
    // At 1.5 s "c" has refilled (full at 1 s); "a" and "b" hold 1.5.
    assert_eq!(limits.take(&"d", 2.0, 1_500), Ok(()));
    assert_eq!(limits.len(), 3);
    // "a" was kept and is still short.
    assert_eq!(limits.take(&"a", 2.0, 1_500), Err(500));
    // Nothing has refilled now ("a" was touched at 1.5 s, "b" at 0):
    // "b" goes, as the least recently touched.
    assert_eq!(limits.take(&"e", 2.0, 1_500), Ok(()));
    assert_eq!(limits.len(), 3);
    assert_eq!(limits.take(&"a", 2.0, 1_500), Err(500));
    assert_eq!(limits.take(&"d", 1.0, 1_500), Err(1_000));
    assert_eq!(limits.take(&"e", 1.0, 1_500), Err(1_000));
    // "b" is back with a fresh burst: forgetting it gave it one.
    assert_eq!(limits.take(&"b", 2.0, 1_500), Ok(()));
}

#[test]
fn sweep_forgets_refilled_buckets_only() {
    let mut limits = limiter(1.0, 2.0, 10);
    assert_eq!(limits.take(&"a", 1.0, 0), Ok(()));
    assert_eq!(limits.take(&"b", 2.0, 0), Ok(()));
    limits.sweep(999);
    assert_eq!(limits.len(), 2);
    limits.sweep(1_000);
    assert_eq!(limits.len(), 1);
    assert_eq!(limits.take(&"b", 2.0, 1_000), Err(1_000));
    limits.sweep(2_000);
    assert!(limits.is_empty());
}
