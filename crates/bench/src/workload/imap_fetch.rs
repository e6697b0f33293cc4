//! IMAP FETCH of envelopes: each of `connections` sessions logs in, selects
//! the mailbox and sends `FETCH 1:count ENVELOPE` `repeat` times. One
//! operation is one whole FETCH, from the command to its tagged OK; every
//! FETCH must return `count` envelopes.

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::net::TcpStream;

use super::{Common, StopFlag, Timed, check_connections, join_sessions, open_imap, run_all};
use crate::imap_client::{ImapClient, Secret};
use crate::report::{Header, SummaryRecord};
use crate::stats::{SAMPLES_PER_RUN_MAX, Sample};

#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub name: String,
    pub server: String,
    pub user: String,
    pub password: Secret,
    pub mailbox: String,
    /// Envelopes per FETCH (messages 1 to count).
    pub count: u32,
    /// FETCHes per session per run.
    pub repeat: usize,
    pub connections: usize,
}

/// # Errors
/// Bad options, a mailbox with fewer than `count` messages, a failed
/// session, or a FETCH that returned the wrong number of envelopes.
pub async fn run(common: &Common, options: &FetchOptions) -> anyhow::Result<SummaryRecord> {
    check_connections(options.connections)?;
    if options.count == 0 {
        bail!("--count must be at least 1");
    }
    if options.repeat.saturating_mul(options.connections) < 2
        || options.repeat > SAMPLES_PER_RUN_MAX / options.connections
    {
        bail!("--repeat times --connections must be 2 to {SAMPLES_PER_RUN_MAX}");
    }
    let header = Header {
        workload: "imap-fetch".into(),
        name: options.name.clone(),
        server: options.server.clone(),
        operation: "fetch".into(),
        parameters: json!({
            "address": common.address,
            "user": options.user,
            "mailbox": options.mailbox,
            "count": options.count,
            "repeat": options.repeat,
            "connections": options.connections,
        }),
    };
    run_all(header, common.runs, |_| one_run(common, options)).await
}

async fn one_run(common: &Common, options: &FetchOptions) -> anyhow::Result<Vec<Sample>> {
    let mut clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let (client, exists) =
            open_imap(common, &options.user, &options.password, &options.mailbox).await?;
        if exists < options.count {
            bail!(
                "{} holds {exists} messages, fewer than --count {}",
                options.mailbox,
                options.count
            );
        }
        clients.push(client);
    }
    let stop = StopFlag::default();
    let sessions = clients
        .into_iter()
        .map(|client| tokio::spawn(session(client, options.clone(), stop.clone())))
        .collect();
    join_sessions(sessions).await
}

async fn session(
    mut client: ImapClient<TcpStream>,
    options: FetchOptions,
    stop: StopFlag,
) -> anyhow::Result<Vec<Timed>> {
    let mut timings = Vec::with_capacity(options.repeat);
    for _ in 0..options.repeat {
        if stop.is_stopped() {
            break;
        }
        let (result, timed) = Timed::measure(client.fetch_envelopes(options.count)).await;
        let envelopes = match result {
            Ok(envelopes) => envelopes,
            Err(error) => {
                stop.stop();
                return Err(error).context("FETCH");
            }
        };
        if envelopes != options.count {
            stop.stop();
            bail!(
                "FETCH 1:{} ENVELOPE returned {envelopes} envelopes",
                options.count
            );
        }
        timings.push(timed);
    }
    client.logout().await.context("IMAP LOGOUT")?;
    Ok(timings)
}
