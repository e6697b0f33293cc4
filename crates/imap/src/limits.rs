//! Login throttling: failed attempts slow down later attempts from the same
//! address and for the same user, without ever refusing a right password
//! outright, so an attacker cannot lock a real user out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Settings for [`LoginThrottle`].
#[derive(Debug, Clone, Copy)]
pub struct ThrottleConfig {
    /// Delay before answering any failed login.
    pub failure_delay: Duration,
    /// Failures (per address or per user) within `window` before delays grow.
    pub failures_free: u32,
    pub window: Duration,
    /// Cap on the delay before an attempt is even checked.
    pub delay_max: Duration,
    /// Tracked keys; the oldest are forgotten beyond this (bounded memory).
    pub keys_max: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            failure_delay: Duration::from_millis(500),
            failures_free: 5,
            window: Duration::from_secs(600),
            delay_max: Duration::from_secs(15),
            keys_max: 100_000,
        }
    }
}

pub struct LoginThrottle {
    config: ThrottleConfig,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        LoginThrottle {
            config,
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn failure_delay(&self) -> Duration {
        self.config.failure_delay
    }

    fn count(&self, key: &str) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((n, since)) if since.elapsed() < self.config.window => *n,
            _ => 0,
        }
    }

    /// How long to wait before checking an attempt from `ip` for `user`.
    pub fn delay_before(&self, ip: IpAddr, user: &str) -> Duration {
        let n = self
            .count(&format!("ip:{ip}"))
            .max(self.count(&format!("user:{user}")));
        let over = n.saturating_sub(self.config.failures_free);
        if over == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << over.min(10);
        (self.config.failure_delay * factor).min(self.config.delay_max)
    }

    pub fn record_failure(&self, ip: IpAddr, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.config.keys_max {
            let window = self.config.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
            if map.len() >= self.config.keys_max {
                map.clear();
            }
        }
        for key in [format!("ip:{ip}"), format!("user:{user}")] {
            let entry = map.entry(key).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= self.config.window {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    pub fn record_success(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("ip:{ip}"));
    }
}
