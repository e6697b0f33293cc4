//! The submit rate limit: a token bucket refilled continuously at
//! `rate_per_second`, holding at most one second's worth, so a quiet
//! gateway may send a burst of `rate_per_second` and then keeps the rate.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket; time is passed in, so tests need no clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    /// Tokens per second; 0 means no limit.
    rate_per_second: u32,
    /// Tokens available now, at most `rate_per_second`.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: u32, now: Instant) -> Self {
        TokenBucket {
            rate_per_second,
            tokens: f64::from(rate_per_second),
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    ///
    /// # Errors
    ///
    /// The wait until the next token, when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate_per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate_per_second);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0, now);
        for _ in 0..10_000 {
            assert_eq!(bucket.take(now), Ok(()));
        }
    }

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5, start);
        for _ in 0..5 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).expect_err("empty after the burst");
        assert!((wait.as_secs_f64() - 0.2).abs() < 1e-6, "{wait:?}");
        // 200 ms later exactly one more token.
        let later = start + Duration::from_millis(200);
        assert_eq!(bucket.take(later), Ok(()));
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn idle_time_refills_only_up_to_one_second() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(3, start);
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(bucket.take(much_later), Ok(()));
        }
        assert!(bucket.take(much_later).is_err());
    }
}
