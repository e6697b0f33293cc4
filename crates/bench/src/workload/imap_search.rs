//! IMAP SEARCH BODY: each of `connections` sessions logs in, selects a
//! mailbox of exactly `messages` messages and sends `SEARCH BODY needle`
//! `repeat` times. One operation is one SEARCH, from the command to its
//! tagged OK. When the number of matches is known (the messages came from
//! `postern-bench lmtp --needle`), every SEARCH must find exactly that many.

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::net::TcpStream;

use super::{Common, StopFlag, Timed, check_connections, join_sessions, open_imap, run_all};
use crate::imap_client::{ImapClient, Secret};
use crate::report::{Header, SummaryRecord};
use crate::stats::{SAMPLES_PER_RUN_MAX, Sample};

#[derive(Debug, Clone)]
pub struct SearchOptions {
    pub name: String,
    pub server: String,
    pub user: String,
    pub password: Secret,
    pub mailbox: String,
    /// The mailbox must hold exactly this many messages, so the figure is
    /// for the size it claims.
    pub messages: u32,
    pub needle: String,
    pub expect_matches: Option<u64>,
    /// SEARCHes per session per run.
    pub repeat: usize,
    pub connections: usize,
}

/// # Errors
/// Bad options, a mailbox of another size, a failed session, or a SEARCH
/// with an unexpected number of matches.
pub async fn run(common: &Common, options: &SearchOptions) -> anyhow::Result<SummaryRecord> {
    check_connections(options.connections)?;
    if options.repeat.saturating_mul(options.connections) < 2
        || options.repeat > SAMPLES_PER_RUN_MAX / options.connections
    {
        bail!("--repeat times --connections must be 2 to {SAMPLES_PER_RUN_MAX}");
    }
    let header = Header {
        workload: "imap-search".into(),
        name: options.name.clone(),
        server: options.server.clone(),
        operation: "search".into(),
        parameters: json!({
            "address": common.address,
            "user": options.user,
            "mailbox": options.mailbox,
            "messages": options.messages,
            "needle": options.needle,
            "expect_matches": options.expect_matches,
            "repeat": options.repeat,
            "connections": options.connections,
        }),
    };
    run_all(header, common.runs, |_| one_run(common, options)).await
}

async fn one_run(common: &Common, options: &SearchOptions) -> anyhow::Result<Vec<Sample>> {
    let mut clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let (client, exists) =
            open_imap(common, &options.user, &options.password, &options.mailbox).await?;
        if exists != options.messages {
            bail!(
                "{} holds {exists} messages, not the {} of --messages",
                options.mailbox,
                options.messages
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
    options: SearchOptions,
    stop: StopFlag,
) -> anyhow::Result<Vec<Timed>> {
    let mut timings = Vec::with_capacity(options.repeat);
    for _ in 0..options.repeat {
        if stop.is_stopped() {
            break;
        }
        let (result, timed) = Timed::measure(client.search_body(&options.needle)).await;
        let matches = match result {
            Ok(matches) => matches,
            Err(error) => {
                stop.stop();
                return Err(error).context("SEARCH");
            }
        };
        if let Some(expected) = options.expect_matches
            && matches != expected
        {
            stop.stop();
            bail!(
                "SEARCH BODY {:?} found {matches} messages, expected {expected}",
                options.needle
            );
        }
        timings.push(timed);
    }
    client.logout().await.context("IMAP LOGOUT")?;
    Ok(timings)
}
