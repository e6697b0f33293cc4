//! What the server measures of itself: delivery counts and latency (receipt
//! to stored), for `/metrics` (Prometheus text format) and for the status
//! page's live health (median and p99 over the last five minutes).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Upper bounds of the delivery latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 300.0,
];
/// Latencies kept for the live percentiles (the newest win): bounded memory
/// whatever the delivery rate.
const RECENT_MAX: usize = 20_000;
/// The window of the live percentiles.
pub const RECENT_WINDOW: Duration = Duration::from_secs(300);

#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    /// Recipients delivered (stored) and refused or failed.
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum of latencies in microseconds.
    sum_us: AtomicU64,
    recent: Mutex<VecDeque<(Instant, Duration)>>,
}

impl DeliveryMetrics {
    /// One delivery (of one message to its recipients) that took `latency`
    /// from receipt to stored.
    pub fn record(&self, latency: Duration, delivered: u64, failed: u64) {
        self.delivered.fetch_add(delivered, Relaxed);
        self.failed.fetch_add(failed, Relaxed);
        let seconds = latency.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(latency.as_micros().min(u64::MAX as u128) as u64, Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() >= RECENT_MAX {
            recent.pop_front();
        }
        recent.push_back((Instant::now(), latency));
    }

    /// Median and 99th percentile of the deliveries in the last `window`, in
    /// milliseconds; `None` when there were none.
    pub fn recent_percentiles(&self, window: Duration) -> Option<(u64, u64)> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            recent.pop_front();
        }
        let mut values: Vec<Duration> = recent.iter().map(|(_, d)| *d).collect();
        drop(recent);
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Some((at(0.5).as_millis() as u64, at(0.99).as_millis() as u64))
    }

    /// The Prometheus text lines of the delivery metrics.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP postern_lmtp_deliveries_total Recipients delivered over LMTP, by result.\n\
             # TYPE postern_lmtp_deliveries_total counter\n\
             postern_lmtp_deliveries_total{{result=\"stored\"}} {}\n\
             postern_lmtp_deliveries_total{{result=\"failed\"}} {}",
            self.delivered.load(Relaxed),
            self.failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP postern_delivery_seconds Time from receipt of a message to stored.\n\
             # TYPE postern_delivery_seconds histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "postern_delivery_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(
            out,
            "postern_delivery_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             postern_delivery_seconds_sum {}\n\
             postern_delivery_seconds_count {count}",
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_histogram() {
        let m = DeliveryMetrics::default();
        assert_eq!(m.recent_percentiles(RECENT_WINDOW), None);
        for ms in 1..=100u64 {
            m.record(Duration::from_millis(ms), 1, 0);
        }
        let (p50, p99) = m.recent_percentiles(RECENT_WINDOW).expect("some");
        assert!((49..=51).contains(&p50), "{p50}");
        assert!((98..=100).contains(&p99), "{p99}");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("postern_lmtp_deliveries_total{result=\"stored\"} 100"));
        assert!(out.contains("postern_delivery_seconds_bucket{le=\"0.05\"} 50"));
        assert!(out.contains("postern_delivery_seconds_bucket{le=\"+Inf\"} 100"));
        assert!(out.contains("postern_delivery_seconds_count 100"));
    }

    #[test]
    fn recent_is_bounded() {
        let m = DeliveryMetrics::default();
        for _ in 0..RECENT_MAX + 10 {
            m.record(Duration::from_millis(1), 1, 0);
        }
        assert_eq!(
            m.recent.lock().unwrap_or_else(|p| p.into_inner()).len(),
            RECENT_MAX
        );
    }
}
