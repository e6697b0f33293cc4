//! The workloads, one module each, and what they share: the run loop that
//! summarizes and prints each run, and the join of concurrent sessions.
//!
//! A workload opens its connections and logs in before a run's clock
//! starts, and closes them after it stops, so a figure never includes
//! connection setup (LMTP's greeting and LHLO, IMAP's LOGIN and SELECT).

pub mod deliveries;
pub mod imap_fetch;
pub mod imap_idle;
pub mod imap_large;
pub mod imap_mixed;
pub mod imap_search;
pub mod lmtp;
pub mod smtp;
pub mod smtp_flood;

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::task::JoinHandle;

use crate::report::{self, Header, RunRecord, SummaryRecord};
use crate::stats::{Aggregate, RunSummary, Sample, summarize_run};

/// Most runs of one workload.
pub const RUNS_MAX: usize = 1000;
/// Most concurrent sessions of one workload.
pub const CONNECTIONS_MAX: usize = 10_000;

/// Settings every workload takes.
#[derive(Debug, Clone)]
pub struct Common {
    /// `host:port` of the listener.
    pub address: String,
    pub runs: usize,
    /// Longest wait for one read or write, the slowest single operation
    /// included.
    pub io_timeout: Duration,
    /// Most unconsumed bytes a session buffers (bounds one reply).
    pub buffer_bytes_max: usize,
}

/// One operation's start and end.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub started: Instant,
    pub finished: Instant,
}

impl Timed {
    /// Runs `operation` and times it.
    pub async fn measure<T, F: Future<Output = T>>(operation: F) -> (T, Timed) {
        let started = Instant::now();
        let value = operation.await;
        (
            value,
            Timed {
                started,
                finished: Instant::now(),
            },
        )
    }
}

/// Set by the first session that fails, so the others stop early instead of
/// finishing a run whose result will be thrown away.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Waits for every session of a run and turns their timings into samples,
/// with the run's clock starting at the earliest operation's start.
///
/// # Errors
/// The first session's error (the others are still awaited, so no task
/// outlives its run).
pub async fn join_sessions(
    sessions: Vec<JoinHandle<anyhow::Result<Vec<Timed>>>>,
) -> anyhow::Result<Vec<Sample>> {
    let mut timings = Vec::new();
    let mut first_error = None;
    for session in sessions {
        match session.await {
            Ok(Ok(mut session_timings)) => timings.append(&mut session_timings),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join_error) => {
                first_error.get_or_insert(anyhow!("a session task failed: {join_error}"));
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let Some(run_start) = timings.iter().map(|timed| timed.started).min() else {
        bail!("the run performed no operations");
    };
    Ok(timings
        .into_iter()
        .map(|timed| Sample {
            finished: timed.finished - run_start,
            latency: timed.finished - timed.started,
        })
        .collect())
}

/// Runs `one_run` `runs` times; prints a JSON line per run and a summary
/// line on stdout and a table on stderr; returns the summary.
///
/// # Errors
/// The first failed run, or a run too short to summarize.
pub async fn run_all<F, Fut>(
    header: Header,
    runs: usize,
    mut one_run: F,
) -> anyhow::Result<SummaryRecord>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<Sample>>>,
{
    if !(1..=RUNS_MAX).contains(&runs) {
        bail!("--runs must be 1 to {RUNS_MAX}");
    }
    let mut summaries: Vec<RunSummary> = Vec::with_capacity(runs);
    for run in 0..runs {
        let samples = one_run(run)
            .await
            .with_context(|| format!("{} run {}", header.name, run + 1))?;
        let summary =
            summarize_run(samples).with_context(|| format!("{} run {}", header.name, run + 1))?;
        eprintln!(
            "{} run {}/{}: {:.1} per s, p50 {:.3} ms, p99 {:.3} ms",
            header.name,
            run + 1,
            runs,
            summary.throughput_per_second,
            summary.latency_us_p50 as f64 / 1000.0,
            summary.latency_us_p99 as f64 / 1000.0,
        );
        print_run(header.clone(), run, &summary)?;
        summaries.push(summary);
    }
    let aggregate = Aggregate::of(&summaries).context("no runs to aggregate")?;
    eprint!("{}", report::runs_table(&header, &summaries, &aggregate));
    let summary = SummaryRecord {
        record: report::RECORD_SUMMARY.into(),
        header,
        aggregate,
    };
    print_json(&summary)?;
    Ok(summary)
}

/// Prints `record` as one JSON line on stdout.
///
/// # Errors
/// Serialization or stdout's.
pub(crate) fn print_json(record: &impl serde::Serialize) -> anyhow::Result<()> {
    let line = serde_json::to_string(record)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    Ok(())
}

/// For workloads that time several kinds of operation per run (`imap-mixed`,
/// `imap-large`): each kind's runs aggregated, its table on stderr and its
/// summary record on stdout, in the map's order.
/// Prints the record of one run (`run` 0-based) as a JSON line.
pub(crate) fn print_run(header: Header, run: usize, summary: &RunSummary) -> anyhow::Result<()> {
    print_json(&RunRecord {
        record: report::RECORD_RUN.into(),
        header,
        run: run + 1,
        summary: summary.clone(),
    })
}

pub(crate) fn summarize_per_op<K: Copy + Ord>(
    per_op: std::collections::BTreeMap<K, Vec<RunSummary>>,
    header: impl Fn(K) -> Header,
) -> anyhow::Result<Vec<SummaryRecord>> {
    let mut records = Vec::new();
    for (op, summaries) in per_op {
        let aggregate = Aggregate::of(&summaries).context("no runs to aggregate")?;
        eprint!(
            "{}",
            report::runs_table(&header(op), &summaries, &aggregate)
        );
        let summary = SummaryRecord {
            record: report::RECORD_SUMMARY.into(),
            header: header(op),
            aggregate,
        };
        print_json(&summary)?;
        records.push(summary);
    }
    Ok(records)
}

/// Checks a connection count against its bound.
///
/// # Errors
/// Zero or more than [`CONNECTIONS_MAX`].
pub fn check_connections(connections: usize) -> anyhow::Result<()> {
    if !(1..=CONNECTIONS_MAX).contains(&connections) {
        bail!("--connections must be 1 to {CONNECTIONS_MAX}");
    }
    Ok(())
}

/// Connects, logs in and selects `mailbox`; returns the session and the
/// mailbox's message count.
///
/// # Errors
/// The connection's, LOGIN's or SELECT's failure, with which one it was.
pub async fn open_imap(
    common: &Common,
    user: &str,
    password: &crate::imap_client::Secret,
    mailbox: &str,
) -> anyhow::Result<(crate::imap_client::ImapClient<tokio::net::TcpStream>, u32)> {
    let connection =
        crate::connection::connect_tcp(&common.address, common.io_timeout, common.buffer_bytes_max)
            .await
            .context("IMAP connect")?;
    let mut client = crate::imap_client::ImapClient::start(connection)
        .await
        .context("IMAP greeting")?;
    client
        .login(user, password)
        .await
        .with_context(|| format!("IMAP LOGIN as {user}"))?;
    let exists = client
        .select(mailbox)
        .await
        .with_context(|| format!("IMAP SELECT {mailbox}"))?;
    Ok((client, exists))
}
