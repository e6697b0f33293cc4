//! SMTP delivery, as an MTA hands mail to an MX: `connections` sessions
//! share one queue of `messages` messages, exactly as the `lmtp` workload
//! does (message `i` of run `r` has index `r * messages + i` and goes to
//! user `index % users`), so the two can be compared. One operation is one
//! transaction, one command at a time: MAIL FROM, RCPT TO, DATA, the
//! message, and its final reply.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::deliveries::{Queue, deliver_all};
use super::{Common, check_connections, run_all};
use crate::connection::connect_tcp;
use crate::message::MessageSpec;
use crate::report::{Header, SummaryRecord};
use crate::smtp_client::SmtpClient;
use crate::stats::SAMPLES_PER_RUN_MAX;

#[derive(Debug, Clone)]
pub struct SmtpOptions {
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
    /// Recipients are `{user}@{domain}`; an MX accepts only its own domains.
    pub domain: String,
    pub sender: String,
    /// Our name in EHLO.
    pub client_name: String,
    pub size_bytes: usize,
    pub seed: u64,
    pub spec: Arc<MessageSpec>,
}

/// # Errors
/// Bad options, a connection or delivery that failed (any refusal, a 451
/// from a rate limit included), or a run too short to summarize.
pub async fn run(common: &Common, options: &SmtpOptions) -> anyhow::Result<SummaryRecord> {
    check_connections(options.connections)?;
    if options.messages < 2 || options.messages > SAMPLES_PER_RUN_MAX as u64 {
        bail!("--messages must be 2 to {SAMPLES_PER_RUN_MAX}");
    }
    if options.users == 0 {
        bail!("--users must be at least 1");
    }
    let header = Header {
        workload: "smtp".into(),
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
            "sender": options.sender,
            "size_bytes": options.size_bytes,
            "seed": options.seed,
        }),
    };
    run_all(header, common.runs, |run| {
        one_run(common, options, run as u64)
    })
    .await
}

async fn one_run(
    common: &Common,
    options: &SmtpOptions,
    run: u64,
) -> anyhow::Result<Vec<crate::stats::Sample>> {
    let mut clients = Vec::with_capacity(options.connections);
    for connection_number in 0..options.connections {
        let connection = connect_tcp(&common.address, common.io_timeout, common.buffer_bytes_max)
            .await
            .with_context(|| format!("SMTP connection {connection_number}"))?;
        let client = SmtpClient::start(connection, &options.client_name)
            .await
            .with_context(|| format!("SMTP connection {connection_number}"))?;
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
