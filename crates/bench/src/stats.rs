//! From timed operations to the figures we report.
//!
//! A run yields one [`Sample`] per operation. [`summarize_run`] drops the
//! warm-up (the first [`WARMUP_PERCENT`]% of operations to finish, rounded
//! up), measures throughput over the window from the last warm-up completion
//! to the last completion, and reads p50/p99/p999 off an HDR histogram with
//! three significant digits. [`Spread::of`] then gives the median of the
//! runs with their minimum and maximum.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Share of each run's operations (by completion order) treated as warm-up.
pub const WARMUP_PERCENT: usize = 5;
/// Longest latency the histogram tells apart; slower operations are
/// recorded as this.
const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Most samples in one run: a run holds them all in memory.
pub const SAMPLES_PER_RUN_MAX: usize = 50_000_000;

/// One timed operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it finished, from the start of the run.
    pub finished: Duration,
    /// From its first byte written to the last byte of its final reply.
    pub latency: Duration,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Operations measured (warm-up excluded).
    pub operations: u64,
    /// Operations dropped as warm-up.
    pub warmup_operations: u64,
    /// Length of the measured window.
    pub window_seconds: f64,
    pub throughput_per_second: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
    pub latency_us_mean: f64,
}

/// Why a run could not be summarized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SummaryError {
    /// Fewer than two operations: with one dropped as warm-up, nothing is left.
    TooFewSamples(usize),
    TooManySamples(usize),
}

impl std::fmt::Display for SummaryError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SummaryError::TooFewSamples(count) => write!(
                formatter,
                "{count} operations in the run; at least 2 are needed (one is warm-up)"
            ),
            SummaryError::TooManySamples(count) => write!(
                formatter,
                "{count} operations in one run; at most {SAMPLES_PER_RUN_MAX}"
            ),
        }
    }
}

impl std::error::Error for SummaryError {}

/// Number of warm-up operations among `count`.
pub fn warmup_count(count: usize) -> usize {
    (count * WARMUP_PERCENT).div_ceil(100)
}

/// Summarizes one run.
///
/// # Errors
/// Fewer than two samples, or more than [`SAMPLES_PER_RUN_MAX`].
pub fn summarize_run(mut samples: Vec<Sample>) -> Result<RunSummary, SummaryError> {
    if samples.len() < 2 {
        return Err(SummaryError::TooFewSamples(samples.len()));
    }
    if samples.len() > SAMPLES_PER_RUN_MAX {
        return Err(SummaryError::TooManySamples(samples.len()));
    }
    samples.sort_by_key(|sample| sample.finished);
    let warmup = warmup_count(samples.len());
    let window_start = samples[warmup - 1].finished;
    let measured = &samples[warmup..];
    let window_end = measured[measured.len() - 1].finished;
    // When every measured operation finished at the warm-up boundary (a
    // coarse clock), fall back to the slowest latency as the window, so the
    // rate stays finite and conservative.
    let window = (window_end - window_start).max(
        measured
            .iter()
            .map(|sample| sample.latency)
            .max()
            .unwrap_or_default(),
    );

    let mut histogram = latency_histogram();
    let mut total_us = 0u128;
    for sample in measured {
        let us = latency_us(sample.latency);
        histogram.saturating_record(us);
        total_us += u128::from(us);
    }
    let operations = measured.len() as u64;
    let window_seconds = window.as_secs_f64().max(1e-9);
    Ok(RunSummary {
        operations,
        warmup_operations: warmup as u64,
        window_seconds,
        throughput_per_second: operations as f64 / window_seconds,
        latency_us_p50: histogram.value_at_quantile(0.50),
        latency_us_p99: histogram.value_at_quantile(0.99),
        latency_us_p999: histogram.value_at_quantile(0.999),
        latency_us_max: histogram.max(),
        latency_us_mean: total_us as f64 / operations as f64,
    })
}

/// Percentiles of a set of latencies, for figures that are not a whole run
/// (one phase of the flood), so nothing is dropped as warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Percentiles {
    /// `None` for no latencies. Same histogram, and so the same precision
    /// (three significant digits), as [`summarize_run`].
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Option<Percentiles> {
        let mut histogram = latency_histogram();
        for latency in latencies {
            histogram.saturating_record(latency_us(latency));
        }
        (!histogram.is_empty()).then(|| Percentiles {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
        })
    }
}

fn latency_histogram() -> Histogram<u64> {
    // Bounds and precision are constants known to be valid: 1 µs to one
    // hour at three significant digits.
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, 3) {
        Ok(histogram) => histogram,
        Err(error) => unreachable!("constant histogram bounds rejected: {error}"),
    }
}

/// Latency in whole microseconds, at least 1 (the histogram's floor).
fn latency_us(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_US_MAX)
}

/// The median of several runs' values of one figure, with their range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. For an even count the median is the mean of the
    /// middle two. NaN values are ignored.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut values: Vec<f64> = values.into_iter().filter(|value| !value.is_nan()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[middle]
        } else {
            (values[middle - 1] + values[middle]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

/// The figures of all runs of one workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub runs: usize,
    pub throughput_per_second: Spread,
    pub latency_ms_p50: Spread,
    pub latency_ms_p99: Spread,
    pub latency_ms_p999: Spread,
}

impl Aggregate {
    /// `None` when there are no runs.
    pub fn of(runs: &[RunSummary]) -> Option<Aggregate> {
        let ms = |pick: fn(&RunSummary) -> u64| {
            Spread::of(runs.iter().map(|run| pick(run) as f64 / 1000.0))
        };
        Some(Aggregate {
            runs: runs.len(),
            throughput_per_second: Spread::of(runs.iter().map(|run| run.throughput_per_second))?,
            latency_ms_p50: ms(|run| run.latency_us_p50)?,
            latency_ms_p99: ms(|run| run.latency_us_p99)?,
            latency_ms_p999: ms(|run| run.latency_us_p999)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(finished_ms: u64, latency_us: u64) -> Sample {
        Sample {
            finished: Duration::from_millis(finished_ms),
            latency: Duration::from_micros(latency_us),
        }
    }

    #[test]
    fn warmup_is_five_percent_rounded_up() {
        assert_eq!(warmup_count(2), 1);
        assert_eq!(warmup_count(20), 1);
        assert_eq!(warmup_count(21), 2);
        assert_eq!(warmup_count(10_000), 500);
    }

    #[test]
    fn warmup_is_dropped_and_throughput_covers_the_window() {
        // 100 operations finishing 10 ms apart; the 5 first (by completion,
        // not by position in the vector) are slow warm-up.
        let mut samples: Vec<Sample> = (1..=100)
            .rev()
            .map(|n| sample(n * 10, if n <= 5 { 900_000 } else { 1000 + n }))
            .collect();
        samples.swap(0, 50);
        let run = summarize_run(samples).unwrap();
        assert_eq!(run.warmup_operations, 5);
        assert_eq!(run.operations, 95);
        // Window from 50 ms (fifth completion) to 1000 ms.
        assert!((run.window_seconds - 0.95).abs() < 1e-9);
        assert!((run.throughput_per_second - 100.0).abs() < 1e-6);
        assert!(run.latency_us_max < 2000, "warm-up leaked in: {run:?}");
        // Latencies 1006..=1100 µs; the value at quantile q is the one of
        // rank ceil(q * 95): p50 the 48th, p99 the 95th.
        assert_eq!(run.latency_us_p50, 1053);
        assert_eq!(run.latency_us_p99, 1100);
        assert_eq!(run.latency_us_p999, 1100);
        assert!((run.latency_us_mean - 1053.0).abs() < 1e-9);
    }

    #[test]
    fn percentiles_of_a_skewed_distribution() {
        // 10,000 measured operations at 1 ms, 10 at 50 ms, 1 at 2 s.
        let mut samples = vec![sample(0, 1); 527];
        samples.extend((0..10_000).map(|n| sample(n + 1, 1000)));
        samples.extend((0..10).map(|n| sample(20_000 + n, 50_000)));
        samples.push(sample(30_000, 2_000_000));
        let run = summarize_run(samples).unwrap();
        assert_eq!(run.warmup_operations, 527);
        assert_eq!(run.operations, 10_011);
        assert_eq!(run.latency_us_p50, 1000);
        assert_eq!(run.latency_us_p99, 1000);
        // 0.999 * 10,011 = 10,001: the first of the 50 ms ones.
        assert!((49_950..=50_050).contains(&run.latency_us_p999), "{run:?}");
        assert!(
            (1_999_000..=2_001_000).contains(&run.latency_us_max),
            "{run:?}"
        );
    }

    #[test]
    fn too_few_samples_and_zero_width_windows() {
        assert_eq!(
            summarize_run(vec![sample(1, 1)]),
            Err(SummaryError::TooFewSamples(1))
        );
        let run = summarize_run(vec![sample(5, 400), sample(5, 500)]).unwrap();
        assert_eq!(run.operations, 1);
        assert!((run.throughput_per_second - 2000.0).abs() < 1e-6);
    }

    #[test]
    fn percentiles_of_a_phase_keep_every_latency() {
        assert_eq!(Percentiles::of([]), None);
        // 200 latencies of 1..=200 ms: nothing is warm-up here.
        let figures = Percentiles::of((1..=200).map(Duration::from_millis)).unwrap();
        assert_eq!(figures.count, 200);
        // Rank 100 and 198 (one more if the quantile's product rounds up),
        // within the histogram's three significant digits.
        assert!((99_900..=101_100).contains(&figures.p50_us), "{figures:?}");
        assert!((197_800..=199_200).contains(&figures.p99_us), "{figures:?}");
        assert!((199_800..=200_200).contains(&figures.max_us), "{figures:?}");
        // One slow delivery in a thousand is the max, and neither p50 nor p99.
        let mut latencies = vec![Duration::from_millis(5); 999];
        latencies.push(Duration::from_secs(3));
        let figures = Percentiles::of(latencies).unwrap();
        assert!((4_995..=5_005).contains(&figures.p50_us), "{figures:?}");
        assert!((4_995..=5_005).contains(&figures.p99_us), "{figures:?}");
        assert!(figures.max_us >= 2_997_000, "{figures:?}");
        let figures = Percentiles::of([Duration::ZERO]).unwrap();
        assert_eq!((figures.count, figures.p50_us), (1, 1));
    }

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(Spread::of([]), None);
        let spread = Spread::of([3.0, 1.0, 5.0, 4.0, 2.0]).unwrap();
        assert_eq!((spread.median, spread.min, spread.max), (3.0, 1.0, 5.0));
        let spread = Spread::of([4.0, 1.0, f64::NAN, 2.0, 8.0]).unwrap();
        assert_eq!((spread.median, spread.min, spread.max), (3.0, 1.0, 8.0));
    }

    #[test]
    fn aggregate_converts_to_milliseconds() {
        let run = |throughput: f64, p50: u64| RunSummary {
            operations: 10,
            warmup_operations: 1,
            window_seconds: 1.0,
            throughput_per_second: throughput,
            latency_us_p50: p50,
            latency_us_p99: p50 * 2,
            latency_us_p999: p50 * 3,
            latency_us_max: p50 * 4,
            latency_us_mean: p50 as f64,
        };
        let aggregate =
            Aggregate::of(&[run(100.0, 1000), run(300.0, 3000), run(200.0, 2500)]).unwrap();
        assert_eq!(aggregate.runs, 3);
        assert_eq!(aggregate.throughput_per_second.median, 200.0);
        assert_eq!(aggregate.latency_ms_p50.median, 2.5);
        assert_eq!(aggregate.latency_ms_p99.max, 6.0);
        assert_eq!(Aggregate::of(&[]), None);
    }
}
