//! Delays that grow: between reconnects (with jitter, so a fleet of
//! gateways does not reconnect in step after an SMSC restart) and between
//! retries of one message.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// `min * 2^step`, capped at `max` (and never below `min`).
pub fn exponential(step: u32, min: Duration, max: Duration) -> Duration {
    let max = max.max(min);
    // 2^20 times any sensible minimum is beyond any sensible maximum.
    let factor = 1u32 << step.min(20);
    min.saturating_mul(factor).min(max)
}

/// The delay before retrying a message that has been tried `attempts`
/// times (1 after the first failure): `retry_min`, doubled per attempt.
pub fn retry_delay(attempts: u32, retry_min: Duration, retry_max: Duration) -> Duration {
    exponential(attempts.saturating_sub(1), retry_min, retry_max)
}

/// Reconnect delays: exponential from `min` to `max` with "equal jitter"
/// (a random point in the upper half), reset after a successful bind.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    /// A backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
        }
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = exponential(self.failures, self.min, self.max);
        self.failures = self.failures.saturating_add(1);
        jitter_upper_half(ceiling, random_u64())
    }

    /// The longest delay, jittered: after a failure that waiting a little
    /// will not fix (bad credentials).
    pub fn longest_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        jitter_upper_half(self.max, random_u64())
    }

    /// Called after a successful bind.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A point in `[ceiling / 2, ceiling]` chosen by `random`.
fn jitter_upper_half(ceiling: Duration, random: u64) -> Duration {
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let half_ms = ceiling_ms / 2;
    let spread_ms = ceiling_ms - half_ms;
    Duration::from_millis(half_ms + random % (spread_ms + 1))
}

/// Randomness for jitter without a dependency: std seeds every
/// `RandomState` from the OS (and a per-thread counter), which is plenty
/// to spread reconnects.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_doubles_and_caps() {
        assert_eq!(exponential(0, MS(1000), MS(60_000)), MS(1000));
        assert_eq!(exponential(1, MS(1000), MS(60_000)), MS(2000));
        assert_eq!(exponential(5, MS(1000), MS(60_000)), MS(32_000));
        assert_eq!(exponential(6, MS(1000), MS(60_000)), MS(60_000));
        assert_eq!(exponential(u32::MAX, MS(1000), MS(60_000)), MS(60_000));
        // A maximum below the minimum is read as the minimum.
        assert_eq!(exponential(3, MS(1000), MS(10)), MS(1000));
    }

    #[test]
    fn retry_delay_starts_at_minimum() {
        assert_eq!(retry_delay(0, MS(100), MS(1000)), MS(100));
        assert_eq!(retry_delay(1, MS(100), MS(1000)), MS(100));
        assert_eq!(retry_delay(2, MS(100), MS(1000)), MS(200));
        assert_eq!(retry_delay(9, MS(100), MS(1000)), MS(1000));
    }

    #[test]
    fn jitter_stays_in_upper_half() {
        assert_eq!(jitter_upper_half(MS(1000), 0), MS(500));
        assert_eq!(jitter_upper_half(MS(1000), 500), MS(1000));
        assert_eq!(jitter_upper_half(MS(1000), 501), MS(500));
        assert_eq!(jitter_upper_half(MS(0), 12345), MS(0));
    }

    #[test]
    fn backoff_grows_caps_and_resets() {
        let mut backoff = Backoff::new(MS(1000), MS(4000));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let ceilings = [1000, 2000, 4000, 4000, 4000];
        for (delay, ceiling) in delays.iter().zip(ceilings) {
            assert!(
                *delay >= MS(ceiling / 2) && *delay <= MS(ceiling),
                "{delay:?} vs {ceiling}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= MS(1000));
        assert!(backoff.longest_delay() >= MS(2000));
    }
}
