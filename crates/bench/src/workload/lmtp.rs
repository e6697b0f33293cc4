//! LMTP delivery: `connections` sessions share one queue of `messages`
//! messages; message `i` of run `r` has index `r * messages + i` (so every
//! run delivers new mail) and goes to user `index % users` (round-robin).
//! Runs are numbered from `first_run` (0 unless given), so that separate
//! invocations of one run each, as `bench/compare` interleaves them across
//! servers, still deliver distinct messages: a server that suppresses
//! duplicate deliveries (Cyrus does, by Message-ID) must not be handed
//! the same message twice.
//! One operation is one transaction: MAIL, RCPT and DATA pipelined, the
//! message, and its final reply.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::deliveries::{Queue, deliver_all};
use super::{Common, check_connections, print_json, run_all};
use crate::connection::connect_tcp;
use crate::lmtp_client::LmtpClient;
use crate::message::MessageSpec;
use crate::report::{self, CostRecord, Header, SummaryRecord};
use crate::rss::{CLOCK_TICKS_PER_SECOND, ProcessSelector};
use crate::stats::SAMPLES_PER_RUN_MAX;

/// Our name in LHLO.
const CLIENT_NAME: &str = "postern-bench.invalid";

#[derive(Debug, Clone)]
pub struct LmtpOptions {
    /// The case's name in tables.
    pub name: String,
    /// The server measured, for the record.
    pub server: String,
    pub connections: usize,
    /// Messages per run.
    pub messages: u64,
    pub users: u64,
    /// Users are `{user_prefix}0` ... `{user_prefix}{users-1}`.
    pub user_prefix: String,
    /// Recipients are `{user}@{domain}`.
    pub domain: String,
    pub sender: String,
    pub size_bytes: usize,
    pub seed: u64,
    /// The number of this invocation's first run (0-based), for message
    /// indices.
    pub first_run: u64,
    pub spec: Arc<MessageSpec>,
    /// The server's processes, whose CPU time and disk writes over each
    /// run become a `cost` record (none selected: no record).
    pub cost: ProcessSelector,
}

/// Wait after a run's last reply before the cost's second reading, so
/// work a server finishes just after its replies is counted.
const COST_SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// # Errors
/// Bad options, a connection or delivery that failed, or a run too short
/// to summarize.
pub async fn run(common: &Common, options: &LmtpOptions) -> anyhow::Result<SummaryRecord> {
    check_connections(options.connections)?;
    if options.messages < 2 || options.messages > SAMPLES_PER_RUN_MAX as u64 {
        bail!("--messages must be 2 to {SAMPLES_PER_RUN_MAX}");
    }
    if options.users == 0 {
        bail!("--users must be at least 1");
    }
    let header = Header {
        workload: "lmtp".into(),
        name: options.name.clone(),
        server: options.server.clone(),
        operation: "delivery".into(),
        parameters: json!({
            "address": common.address,
            "connections": options.connections,
            "messages": options.messages,
            "users": options.users,
            "user_prefix": options.user_prefix,
            "domain": options.domain,
            "size_bytes": options.size_bytes,
            "seed": options.seed,
            "first_run": options.first_run,
        }),
    };
    let cost_header = header.clone();
    run_all(header, common.runs, |run| {
        let cost_header = cost_header.clone();
        async move {
            let before = read_cost(options)?;
            let samples = one_run(common, options, options.first_run + run as u64).await?;
            if let Some(before) = before {
                tokio::time::sleep(COST_SETTLE).await;
                if let Some(after) = read_cost(options)? {
                    let record = CostRecord {
                        record: report::RECORD_COST.into(),
                        header: cost_header,
                        run: run + 1,
                        deliveries: options.messages,
                        cpu_seconds: after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64
                            / CLOCK_TICKS_PER_SECOND as f64,
                        write_bytes: after.write_bytes.saturating_sub(before.write_bytes),
                        processes: after.processes,
                    };
                    eprintln!(
                        "{} run {}: {:.3} ms CPU and {:.1} KiB written per delivery ({} processes)",
                        record.header.name,
                        run + 1,
                        record.cpu_seconds * 1000.0 / options.messages as f64,
                        record.write_bytes as f64 / 1024.0 / options.messages as f64,
                        record.processes,
                    );
                    print_json(&record)?;
                }
            }
            Ok(samples)
        }
    })
    .await
}

/// The server's cost so far, when processes were selected.
fn read_cost(options: &LmtpOptions) -> anyhow::Result<Option<crate::rss::CostReading>> {
    if options.cost.is_empty() {
        return Ok(None);
    }
    options
        .cost
        .read_cost()
        .map(Some)
        .map_err(anyhow::Error::msg)
        .context("reading the server's CPU time and disk writes")
}

async fn one_run(
    common: &Common,
    options: &LmtpOptions,
    run: u64,
) -> anyhow::Result<Vec<crate::stats::Sample>> {
    let mut clients = Vec::with_capacity(options.connections);
    for connection_number in 0..options.connections {
        let connection = connect_tcp(&common.address, common.io_timeout, common.buffer_bytes_max)
            .await
            .with_context(|| format!("LMTP connection {connection_number}"))?;
        let client = LmtpClient::start(connection, CLIENT_NAME)
            .await
            .with_context(|| format!("LMTP connection {connection_number}"))?;
        clients.push(client);
    }
    let queue = Queue {
        messages: options.messages,
        users: options.users,
        user_prefix: options.user_prefix.clone(),
        domain: options.domain.clone(),
        sender: options.sender.clone(),
        spec: Arc::clone(&options.spec),
    };
    deliver_all(clients, &queue, run).await
}
