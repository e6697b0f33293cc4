//! Rate limits: token buckets by key, and the network ([`Net`]) a client
//! address belongs to, the key of per-network limits.
//!
//! The intake keeps one [`RateLimiter`] per kind of limit (messages per
//! client address, per /24 or /64, per envelope sender, per sender domain;
//! recipients likewise) and asks it before accepting a command. A refusal
//! says how long until the tokens would be there, so the reply can be a
//! tempfail (421/451) the sender retries, never a bounce.
//!
//! # Bounds
//!
//! A limiter holds at most `max_keys` buckets. A bucket that has refilled
//! to its burst is the same as no bucket (a new key starts full), so when
//! the limiter is full those are forgotten first; if none has refilled, the
//! bucket touched longest ago goes, which gives its key a fresh burst. Both
//! are found in O(log n) through two ordered indexes, so a flood of new
//! addresses costs the same per message as steady traffic.

mod net;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

pub use net::{Net, NetError};

/// A bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second. Zero, negative, NaN or infinite means
    /// unlimited: nothing is ever refused and no bucket is kept.
    pub per_second: f64,
    /// Tokens a bucket holds when full (a new key starts full). Negative or
    /// NaN is taken as 0, which refuses everything when the rate is limited.
    pub burst: f64,
}

impl Rate {
    /// Whether this rate limits nothing.
    pub fn is_unlimited(&self) -> bool {
        !self.per_second.is_finite() || self.per_second <= 0.0
    }

    /// The burst as used: never negative, never NaN.
    fn burst(&self) -> f64 {
        if self.burst > 0.0 { self.burst } else { 0.0 }
    }
}

/// Token buckets by key, bounded to `max_keys` buckets.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: Rate,
    /// At least 1.
    keys_max: usize,
    buckets: HashMap<K, Bucket>,
    /// When each bucket will be full again, oldest first: these are
    /// forgotten first when the limiter is full.
    by_full_ms: BTreeMap<(u64, u64), K>,
    /// When each bucket was last asked for tokens, oldest first: evicted
    /// when no bucket has refilled.
    by_touched_ms: BTreeMap<(u64, u64), K>,
    /// Tie-breaker in the indexes, unique per bucket ever created.
    next_serial: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens at `updated_ms`, 0 to burst.
    tokens: f64,
    updated_ms: u64,
    /// When `tokens` will have refilled to the burst (key in `by_full_ms`).
    full_ms: u64,
    /// Key in `by_touched_ms`.
    touched_ms: u64,
    serial: u64,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter with `rate` per key, holding at most `max_keys` buckets
    /// (0 is taken as 1).
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        RateLimiter {
            rate,
            keys_max: max_keys.max(1),
            buckets: HashMap::new(),
            by_full_ms: BTreeMap::new(),
            by_touched_ms: BTreeMap::new(),
            next_serial: 0,
        }
    }

    /// The rate every bucket refills at.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes `amount` tokens from `key`'s bucket. `Err(ms)` says how many
    /// milliseconds until that many would be available (at least 1, or
    /// `u64::MAX` when `amount` is more than the burst and never will be),
    /// and leaves the bucket's tokens unchanged. An `amount` of zero,
    /// negative or NaN takes nothing and succeeds.
    pub fn take(&mut self, key: &K, amount: f64, now_ms: u64) -> Result<(), u64> {
        if self.rate.is_unlimited() || amount.is_nan() || amount <= 0.0 {
            return Ok(());
        }
        let burst = self.rate.burst();
        if amount > burst {
            return Err(u64::MAX);
        }
        let per_ms = self.rate.per_second / 1000.0;
        if let Some(bucket) = self.buckets.get_mut(key) {
            // Being refused counts as use: the key stays tracked while it
            // keeps trying, rather than being evicted into a fresh burst.
            self.by_touched_ms
                .remove(&(bucket.touched_ms, bucket.serial));
            bucket.touched_ms = now_ms;
            self.by_touched_ms
                .insert((bucket.touched_ms, bucket.serial), key.clone());
            let elapsed_ms = now_ms.saturating_sub(bucket.updated_ms);
            let available = (bucket.tokens + elapsed_ms as f64 * per_ms).min(burst);
            if available < amount {
                return Err(wait_ms(amount - available, per_ms));
            }
            self.by_full_ms.remove(&(bucket.full_ms, bucket.serial));
            bucket.tokens = available - amount;
            bucket.updated_ms = bucket.updated_ms.max(now_ms);
            bucket.full_ms = full_ms(bucket.updated_ms, burst - bucket.tokens, per_ms);
            self.by_full_ms
                .insert((bucket.full_ms, bucket.serial), key.clone());
            return Ok(());
        }
        self.make_room(now_ms);
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let tokens = burst - amount;
        let bucket = Bucket {
            tokens,
            updated_ms: now_ms,
            full_ms: full_ms(now_ms, burst - tokens, per_ms),
            touched_ms: now_ms,
            serial,
        };
        self.by_full_ms
            .insert((bucket.full_ms, serial), key.clone());
        self.by_touched_ms.insert((now_ms, serial), key.clone());
        self.buckets.insert(key.clone(), bucket);
        Ok(())
    }

    /// Forgets every bucket that has refilled to its burst by `now_ms`
    /// (they are the same as absent ones). For a periodic tidy-up, so
    /// [`RateLimiter::len`] reports keys that are actually limited.
    pub fn sweep(&mut self, now_ms: u64) {
        while let Some((&(full_ms, _), key)) = self.by_full_ms.first_key_value() {
            if full_ms > now_ms {
                break;
            }
            let key = key.clone();
            self.forget(&key);
        }
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Evicts until there is room for one more bucket: refilled buckets
    /// first, else the one touched longest ago.
    fn make_room(&mut self, now_ms: u64) {
        // Bounded: each round removes one bucket.
        while self.buckets.len() >= self.keys_max {
            let refilled = self
                .by_full_ms
                .first_key_value()
                .filter(|((full_ms, _), _)| *full_ms <= now_ms)
                .map(|(_, key)| key.clone());
            let victim = refilled.or_else(|| {
                self.by_touched_ms
                    .first_key_value()
                    .map(|(_, key)| key.clone())
            });
            match victim {
                Some(key) => self.forget(&key),
                // The indexes hold every bucket; empty indexes with a full
                // map would be a bug, and clearing is the safe answer.
                None => self.buckets.clear(),
            }
        }
    }

    fn forget(&mut self, key: &K) {
        if let Some(bucket) = self.buckets.remove(key) {
            self.by_full_ms.remove(&(bucket.full_ms, bucket.serial));
            self.by_touched_ms
                .remove(&(bucket.touched_ms, bucket.serial));
        }
    }
}

/// Milliseconds until `missing` tokens have refilled, at least 1.
fn wait_ms(missing: f64, per_ms: f64) -> u64 {
    // `as` saturates: a huge wait is u64::MAX, NaN would be 0.
    ((missing / per_ms).ceil() as u64).max(1)
}

/// When a bucket short of `missing` tokens at `updated_ms` is full again.
fn full_ms(updated_ms: u64, missing: f64, per_ms: f64) -> u64 {
    if missing <= 0.0 {
        return updated_ms;
    }
    updated_ms.saturating_add((missing / per_ms).ceil() as u64)
}

#[cfg(test)]
mod tests;
