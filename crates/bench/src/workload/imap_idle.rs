//! Idle scale: how many IMAP connections sitting in IDLE a server holds,
//! and what each costs it in memory.
//!
//! Connection `i` comes from 127.`21+`.y.z (`per_source` connections per
//! address: one address has about 28,000 ephemeral ports), logs in as
//! `{user_prefix}{i % users}`, selects the mailbox and sends IDLE. They are
//! opened in batches of `batch`, `parallel` at a time; after each batch the
//! server's resident memory (the sum of `VmRSS` over its process tree, see
//! [`crate::rss`]) is read, and opening stops at `connections` or when it
//! has grown by `rss_limit_kib`. Memory per connection is (RSS after − RSS
//! before) / connections open, and the median of each batch's growth per
//! connection after the first batch (which leaves out what the first logins
//! cost once).
//!
//! Then the connections are checked: with an LMTP address, one message is
//! delivered to each of `probe_users` users (spread over all of them), and
//! every idle connection of that user must see `* N EXISTS` within
//! `probe_timeout`; at the end every connection must answer DONE with its
//! IDLE's tagged OK, and none may have been closed or broken on the way.
//! The figures go out as one `idle` JSON record.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use super::imap_mixed::source_address;
use super::{Common, print_json};
use crate::connection::{connect_tcp, connect_tcp_from, resolve_v4};
use crate::error::ClientError;
use crate::imap_client::{ImapClient, Secret};
use crate::lmtp_client::LmtpClient;
use crate::message::MessageSpec;
use crate::rss::{ProcessSelector, RssReading};

pub const RECORD_IDLE: &str = "idle";
/// Most connections one run may aim for.
pub const IDLE_CONNECTIONS_MAX: usize = 1_000_000;
/// Bytes each idle connection's client reads at a time: the client's own
/// memory stays small (50,000 x 1 KiB).
const IDLE_READ_CHUNK: usize = 1024;
/// An idle connection waits this long for a server's word before the
/// client gives up on it (servers end IDLE after 29 minutes or more).
const IDLE_READ_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub name: String,
    pub server: String,
    pub connections: usize,
    pub users: usize,
    pub user_prefix: String,
    pub password: Secret,
    pub mailbox: String,
    pub rss: ProcessSelector,
    /// Stop opening when the server's RSS has grown by this much since
    /// before the first connection; 0: no bound.
    pub rss_limit_kib: u64,
    /// Connections opened between RSS readings.
    pub batch: usize,
    /// Connections being opened at once.
    pub parallel: usize,
    /// Connections per source address.
    pub per_source: usize,
    /// Seconds to wait after the last open before reading the RSS
    /// (servers free login buffers, child processes settle).
    pub settle: Duration,
    /// LMTP listener for the delivery probes.
    pub lmtp_address: Option<String>,
    pub probe_users: usize,
    pub probe_timeout: Duration,
    pub domain: String,
    pub seed: u64,
}

/// One probe: a delivery to `user` and how many of its idle connections
/// saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    pub user: String,
    pub connections: usize,
    pub reached: usize,
    /// From the start of the LMTP delivery to the last connection's
    /// EXISTS (or the timeout).
    pub latency_ms: f64,
}

/// The JSON record of one idle-scale run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleRecord {
    pub record: String,
    pub workload: String,
    pub name: String,
    pub server: String,
    pub parameters: serde_json::Value,
    pub target: usize,
    pub opened: usize,
    /// `target`, `memory` (the RSS bound) or `error: ...` (the first
    /// connection that could not be opened).
    pub stopped_by: String,
    pub processes: usize,
    /// Memory of the server's processes: the sum of their PSS (see
    /// [`crate::rss`]), before the first connection and after the last.
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    /// The sum of their `VmRSS` at the same moments, which counts a page
    /// shared by N processes N times.
    #[serde(default)]
    pub vm_rss_sum_before_kib: u64,
    #[serde(default)]
    pub vm_rss_sum_after_kib: u64,
    pub rss_per_connection_kib: f64,
    /// Median over the batches after the first of each batch's RSS growth
    /// per connection: leaves out what the first logins cost once
    /// (allocator arenas, caches) and a single batch's jump.
    pub rss_marginal_per_connection_kib: Option<f64>,
    /// (connections open, server RSS KiB) after each batch.
    pub readings: Vec<(usize, u64)>,
    pub open_seconds: f64,
    pub probes: Vec<Probe>,
    /// Connections that broke or were closed while idling.
    pub failed: usize,
    /// Connections that answered DONE with their IDLE's OK.
    pub done_ok: usize,
    /// Every probe reached every connection of its user, none failed, all
    /// answered DONE.
    pub healthy: bool,
    /// The first failure seen, if any.
    pub first_failure: Option<String>,
}

/// Memory per connection in KiB: the RSS growth over the connections
/// open (0 with none open; negative when the server shrank).
pub fn per_connection_kib(before: RssReading, after: RssReading, opened: usize) -> f64 {
    if opened == 0 {
        return 0.0;
    }
    (after.rss_kib as f64 - before.rss_kib as f64) / opened as f64
}

/// RSS growth per connection batch by batch, after the first batch (which
/// pays for what the first logins cost once), and the median of those:
/// one batch's jump (an allocator taking a new arena, a hash table
/// doubling) moves it little. `None` with fewer than two batches.
pub fn marginal_per_connection_kib(readings: &[(usize, u64)]) -> Option<f64> {
    let mut slopes: Vec<f64> = readings
        .windows(2)
        .filter(|pair| pair[1].0 > pair[0].0)
        .map(|pair| (pair[1].1 as f64 - pair[0].1 as f64) / (pair[1].0 - pair[0].0) as f64)
        .collect();
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_by(f64::total_cmp);
    let middle = slopes.len() / 2;
    Some(if slopes.len() % 2 == 1 {
        slopes[middle]
    } else {
        (slopes[middle - 1] + slopes[middle]) / 2.0
    })
}

/// The probe users: `count` of `users`, evenly spread, first is 0.
pub fn probe_user_indices(users: usize, count: usize) -> Vec<usize> {
    let count = count.min(users);
    (0..count).map(|k| k * users / count).collect()
}

/// What the watchers tell the main task.
#[derive(Debug)]
enum Event {
    Exists {
        connection: usize,
        count: u32,
    },
    Failed {
        connection: usize,
        error: String,
    },
    Done {
        connection: usize,
        ok: Result<(), String>,
    },
}

/// Takes in a watcher's event.
fn note(event: Event, exists: &mut [u32], failed: &mut [bool], first_failure: &mut Option<String>) {
    match event {
        Event::Exists { connection, count } => exists[connection] = count,
        Event::Failed { connection, error }
        | Event::Done {
            connection,
            ok: Err(error),
        } => {
            failed[connection] = true;
            first_failure.get_or_insert(format!("connection {connection}: {error}"));
        }
        Event::Done { ok: Ok(()), .. } => {}
    }
}

/// # Errors
/// Bad options, or no RSS reading (no matching process).
pub async fn run(common: &Common, options: &IdleOptions) -> anyhow::Result<IdleRecord> {
    if !(1..=IDLE_CONNECTIONS_MAX).contains(&options.connections) {
        bail!("--connections must be 1 to {IDLE_CONNECTIONS_MAX}");
    }
    if options.users == 0 || options.batch == 0 || options.parallel == 0 || options.per_source == 0
    {
        bail!("--users, --batch, --parallel and --per-source must be at least 1");
    }
    if options.rss.is_empty() {
        bail!("say which processes are the server: --pid or --process-pattern");
    }
    let remote = resolve_v4(&common.address).await?;
    let read_rss = || options.rss.read().map_err(anyhow::Error::msg);
    let before = read_rss()?;
    eprintln!(
        "{}: server PSS {:.1} MiB in {} processes before any connection",
        options.name,
        before.rss_kib as f64 / 1024.0,
        before.processes
    );

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut watchers = JoinSet::new();
    let mut exists: Vec<u32> = Vec::with_capacity(options.connections);
    let mut stopped_by = "target".to_string();
    let mut first_failure = None;
    let open_started = Instant::now();
    let mut readings = Vec::new();
    let permits = Arc::new(Semaphore::new(options.parallel));
    'batches: while exists.len() < options.connections {
        let first = exists.len();
        let last = (first + options.batch).min(options.connections);
        let mut opening = JoinSet::new();
        for index in first..last {
            let permits = Arc::clone(&permits);
            let (common, options) = (common.clone(), options.clone());
            opening.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = open_idle(&common, &options, remote, index).await;
                (index, result)
            });
        }
        let mut opened: BTreeMap<usize, (ImapClient<tokio::net::TcpStream>, u32)> = BTreeMap::new();
        let mut error = None;
        while let Some(joined) = opening.join_next().await {
            match joined {
                Ok((index, Ok(pair))) => {
                    opened.insert(index, pair);
                }
                Ok((index, Err(failure))) => {
                    error.get_or_insert(format!("connection {index}: {failure:#}"));
                }
                Err(join_error) => {
                    error.get_or_insert(format!("an opening task failed: {join_error}"));
                }
            }
        }
        // Keep the unbroken run of connections from `first`: indices stay
        // dense, so connection i is still user i % users.
        for (index, (client, count)) in opened {
            if index != exists.len() {
                break;
            }
            exists.push(count);
            let (events, stop) = (events_tx.clone(), stop_rx.clone());
            watchers.spawn(watch_idle(index, client, events, stop));
        }
        if let Some(error) = error {
            eprintln!("{}: stopped opening: {error}", options.name);
            stopped_by = format!("error: {error}");
            break 'batches;
        }
        let reading = read_rss()?;
        readings.push((exists.len(), reading.rss_kib));
        eprintln!(
            "{}: {} idle, server PSS {:.1} MiB, {:.0} s",
            options.name,
            exists.len(),
            reading.rss_kib as f64 / 1024.0,
            open_started.elapsed().as_secs_f64()
        );
        if options.rss_limit_kib > 0
            && reading.rss_kib.saturating_sub(before.rss_kib) >= options.rss_limit_kib
        {
            stopped_by = "memory".into();
            break;
        }
    }
    let open_seconds = open_started.elapsed().as_secs_f64();
    tokio::time::sleep(options.settle).await;
    let after = read_rss()?;
    let opened = exists.len();
    let rss_per_connection_kib = per_connection_kib(before, after, opened);
    let rss_marginal_per_connection_kib = marginal_per_connection_kib(&readings);
    eprintln!(
        "{}: {opened} idle connections in {open_seconds:.1} s; server PSS {:.1} -> {:.1} MiB ({} processes): {rss_per_connection_kib:.1} KiB per connection, median per batch after the first {}",
        options.name,
        before.rss_kib as f64 / 1024.0,
        after.rss_kib as f64 / 1024.0,
        after.processes,
        rss_marginal_per_connection_kib.map_or("-".to_string(), |kib| format!("{kib:.1}")),
    );

    let mut failed = vec![false; opened];
    let mut probes = Vec::new();
    if let Some(lmtp_address) = &options.lmtp_address {
        let spec = MessageSpec::new(options.seed, 1024, None, &options.domain)
            .map_err(anyhow::Error::msg)?;
        let users = options.users.min(opened);
        // Every probe is delivered first, then all are awaited together
        // until one deadline: a server that tells IDLE clients of new mail
        // only at a poll (Cyrus without idled: every imapidlepoll, 60 s)
        // costs one poll interval, not one per probe.
        struct Pending {
            user: String,
            waiting: Vec<(usize, u32)>,
            delivered: Instant,
            reached_at: Option<Instant>,
        }
        let mut pending = Vec::new();
        for (number, user_index) in probe_user_indices(users, options.probe_users)
            .into_iter()
            .enumerate()
        {
            while let Ok(event) = events.try_recv() {
                note(event, &mut exists, &mut failed, &mut first_failure);
            }
            let user = format!("{}{user_index}", options.user_prefix);
            let mine: Vec<usize> = (user_index..opened).step_by(options.users).collect();
            let waiting: Vec<(usize, u32)> = mine.iter().map(|&c| (c, exists[c])).collect();
            let recipient = format!("{user}@{}", options.domain);
            let message = spec.build(1_000_000_000 + number as u64, &recipient);
            let delivered = Instant::now();
            deliver(common, lmtp_address, &recipient, &message)
                .await
                .with_context(|| format!("probe delivery to {recipient}"))?;
            pending.push(Pending {
                user,
                waiting,
                delivered,
                reached_at: None,
            });
        }
        let reached = |waiting: &[(usize, u32)], exists: &Vec<u32>| {
            waiting
                .iter()
                .filter(|&&(c, count)| exists[c] > count)
                .count()
        };
        let deadline = Instant::now() + options.probe_timeout;
        loop {
            let now = Instant::now();
            for probe in &mut pending {
                if probe.reached_at.is_none()
                    && reached(&probe.waiting, &exists) == probe.waiting.len()
                {
                    probe.reached_at = Some(now);
                }
            }
            if pending.iter().all(|probe| probe.reached_at.is_some()) {
                break;
            }
            match tokio::time::timeout_at(deadline.into(), events.recv()).await {
                Ok(Some(event)) => note(event, &mut exists, &mut failed, &mut first_failure),
                Ok(None) | Err(_) => break,
            }
        }
        let ended = Instant::now();
        for probe in pending {
            let probe = Probe {
                reached: reached(&probe.waiting, &exists),
                connections: probe.waiting.len(),
                latency_ms: (probe.reached_at.unwrap_or(ended) - probe.delivered).as_secs_f64()
                    * 1000.0,
                user: probe.user,
            };
            eprintln!(
                "{}: probe {}: {}/{} connections saw EXISTS within {:.1} ms",
                options.name, probe.user, probe.reached, probe.connections, probe.latency_ms
            );
            probes.push(probe);
        }
    }

    // Every connection ends IDLE with DONE and must get its OK.
    let _ = stop_tx.send(true);
    drop(events_tx);
    let mut done_ok = 0;
    while let Some(event) = events.recv().await {
        match event {
            Event::Done { ok: Ok(()), .. } => done_ok += 1,
            other => note(other, &mut exists, &mut failed, &mut first_failure),
        }
    }
    while watchers.join_next().await.is_some() {}
    let failed = failed.iter().filter(|&&failed| failed).count();
    let healthy = failed == 0
        && done_ok == opened
        && probes
            .iter()
            .all(|probe| probe.reached == probe.connections);
    let record = IdleRecord {
        record: RECORD_IDLE.into(),
        workload: "imap-idle".into(),
        name: options.name.clone(),
        server: options.server.clone(),
        parameters: serde_json::json!({
            "address": common.address,
            "connections": options.connections,
            "users": options.users,
            "user_prefix": options.user_prefix,
            "mailbox": options.mailbox,
            "rss_limit_kib": options.rss_limit_kib,
            "per_source": options.per_source,
            "pids": options.rss.pids,
            "process_patterns": options.rss.patterns,
            "probe_users": options.probe_users,
            "probe_timeout_ms": options.probe_timeout.as_millis() as u64,
        }),
        target: options.connections,
        opened,
        stopped_by,
        processes: after.processes,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        vm_rss_sum_before_kib: before.vm_rss_kib,
        vm_rss_sum_after_kib: after.vm_rss_kib,
        rss_per_connection_kib,
        rss_marginal_per_connection_kib,
        readings,
        open_seconds,
        probes,
        failed,
        done_ok,
        healthy,
        first_failure,
    };
    eprintln!(
        "{}: {} of {opened} answered DONE, {failed} failed: {}",
        options.name,
        done_ok,
        if healthy { "healthy" } else { "NOT healthy" }
    );
    print_json(&record)?;
    Ok(record)
}

/// Connects, logs in, selects and starts IDLE; returns the client and the
/// message count.
async fn open_idle(
    common: &Common,
    options: &IdleOptions,
    remote: SocketAddr,
    index: usize,
) -> anyhow::Result<(ImapClient<tokio::net::TcpStream>, u32)> {
    let source = source_address(21, index, options.per_source);
    let user = format!("{}{}", options.user_prefix, index % options.users);
    let connection = connect_tcp_from(source, remote, common.io_timeout, common.buffer_bytes_max)
        .await
        .context("connect")?;
    let mut client = ImapClient::start(connection).await.context("greeting")?;
    client
        .login(&user, &options.password)
        .await
        .with_context(|| format!("LOGIN as {user}"))?;
    let exists = client
        .select(&options.mailbox)
        .await
        .with_context(|| format!("SELECT {}", options.mailbox))?;
    client.idle().await.context("IDLE")?;
    client.connection_mut().set_read_chunk(IDLE_READ_CHUNK);
    Ok((client, exists))
}

/// Reads what the server says while idling and passes EXISTS on; at stop,
/// sends DONE and reports whether the IDLE's OK came back.
async fn watch_idle(
    connection: usize,
    mut client: ImapClient<tokio::net::TcpStream>,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let io_timeout = Duration::from_secs(60);
    client.connection_mut().set_io_timeout(IDLE_READ_TIMEOUT);
    loop {
        tokio::select! {
            biased;
            _ = stop.wait_for(|&stop| stop) => break,
            event = client.idle_next() => match event {
                Ok(Some(count)) => {
                    let _ = events.send(Event::Exists { connection, count });
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = events.send(Event::Failed { connection, error: error.to_string() });
                    return;
                }
            },
        }
    }
    client.connection_mut().set_io_timeout(io_timeout);
    let ok = client
        .idle_done()
        .await
        .map_err(|error: ClientError| error.to_string());
    let _ = events.send(Event::Done { connection, ok });
}

async fn deliver(
    common: &Common,
    lmtp_address: &str,
    recipient: &str,
    message: &[u8],
) -> anyhow::Result<()> {
    let connection = connect_tcp(lmtp_address, common.io_timeout, common.buffer_bytes_max).await?;
    let mut lmtp = LmtpClient::start(connection, "postern-bench.invalid").await?;
    lmtp.deliver("bench@bench.invalid", &[recipient], message)
        .await?;
    lmtp.quit().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_connection() {
        let reading = |rss_kib| RssReading {
            processes: 1,
            rss_kib,
            vm_rss_kib: rss_kib,
        };
        assert_eq!(
            per_connection_kib(reading(10_000), reading(60_000), 1000),
            50.0
        );
        assert_eq!(per_connection_kib(reading(10_000), reading(60_000), 0), 0.0);
        assert_eq!(
            per_connection_kib(reading(10_000), reading(9_000), 100),
            -10.0
        );
    }

    #[test]
    fn marginal_memory_is_the_median_batch_after_the_first() {
        // The proof run's shape: a costly first batch, steady batches, one jump.
        let readings = [
            (500, 1_300_000),
            (1000, 1_380_000),
            (1500, 1_460_000),
            (2000, 1_540_000),
            (2500, 1_750_000),
        ];
        assert_eq!(marginal_per_connection_kib(&readings), Some(160.0));
        // An even count: the mean of the middle two.
        assert_eq!(
            marginal_per_connection_kib(&[(10, 0), (20, 100), (30, 300)]),
            Some(15.0)
        );
        assert_eq!(marginal_per_connection_kib(&[(500, 1)]), None);
        assert_eq!(marginal_per_connection_kib(&[]), None);
    }

    #[test]
    fn probe_users_spread() {
        assert_eq!(probe_user_indices(100, 5), vec![0, 20, 40, 60, 80]);
        assert_eq!(probe_user_indices(3, 5), vec![0, 1, 2]);
        assert_eq!(probe_user_indices(10, 0), Vec::<usize>::new());
    }
}
