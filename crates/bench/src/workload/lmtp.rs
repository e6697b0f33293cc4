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
use super::{Common, check_connections, run_all};
use crate::connection::connect_tcp;
use crate::lmtp_client::LmtpClient;
use crate::message::MessageSpec;
use crate::report::{Header, SummaryRecord};
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
}

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
    run_all(header, common.runs, |run| {
        one_run(common, options, options.first_run + run as u64)
    })
    .await
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
