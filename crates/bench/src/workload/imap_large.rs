//! IMAP on a large mailbox: one session logs in, then runs each command
//! `repeat` times against a mailbox of exactly `messages` messages:
//!
//! `SELECT`, `FETCH 1:* (FLAGS)`, `SEARCH TEXT needle`, `SORT (SUBJECT)
//! UTF-8 ALL` and `THREAD REFERENCES UTF-8 ALL` (the last two when the
//! server announces SORT and THREAD=REFERENCES; a missing one is said on
//! stderr and has no row).
//!
//! Every command is a row of its own (`imap large 100000: SORT (SUBJECT)`);
//! one operation is one command, from its first byte to its tagged OK.
//! Every answer is checked: SELECT's EXISTS and FETCH's count must be
//! `messages`, SORT and THREAD must name every message, and SEARCH must
//! find `expect_matches` when given. LOGIN is before the clock. As
//! everywhere, the first 5% of each command's runs (rounded up: the first
//! one) is warm-up and dropped, so a server's first pass over a mailbox it
//! has not opened since delivery (building its indexes) is not counted.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::json;

use super::{Common, RUNS_MAX, Timed, print_run, summarize_per_op};
use crate::imap_client::{ImapClient, Secret};
use crate::report::{Header, SummaryRecord};
use crate::stats::{RunSummary, Sample, summarize_run};

/// Most repetitions of one command per run.
pub const REPEAT_MAX: usize = 10_000;

#[derive(Debug, Clone)]
pub struct LargeOptions {
    pub name: String,
    pub server: String,
    pub user: String,
    pub password: Secret,
    pub mailbox: String,
    /// The mailbox must hold exactly this many messages.
    pub messages: u32,
    pub needle: String,
    pub expect_matches: Option<u64>,
    /// Times each command runs per run.
    pub repeat: usize,
}

/// The commands timed, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    Select,
    FetchFlags,
    SearchText,
    Sort,
    Thread,
}

impl Op {
    pub const ALL: [Op; 5] = [
        Op::Select,
        Op::FetchFlags,
        Op::SearchText,
        Op::Sort,
        Op::Thread,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Select => "SELECT",
            Op::FetchFlags => "FETCH 1:* (FLAGS)",
            Op::SearchText => "SEARCH TEXT",
            Op::Sort => "SORT (SUBJECT)",
            Op::Thread => "THREAD REFERENCES",
        }
    }

    /// The capability the server must announce for this command.
    fn capability(self) -> Option<&'static str> {
        match self {
            Op::Sort => Some("SORT"),
            Op::Thread => Some("THREAD=REFERENCES"),
            _ => None,
        }
    }
}

/// # Errors
/// Bad options, a mailbox of another size, a refused command or a wrong
/// answer.
pub async fn run(common: &Common, options: &LargeOptions) -> anyhow::Result<Vec<SummaryRecord>> {
    if !(1..=RUNS_MAX).contains(&common.runs) {
        bail!("--runs must be 1 to {RUNS_MAX}");
    }
    if !(2..=REPEAT_MAX).contains(&options.repeat) {
        bail!("--repeat must be 2 to {REPEAT_MAX}");
    }
    if options.needle.is_empty()
        || !options
            .needle
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric())
    {
        bail!("--needle must be one word of ASCII letters and digits");
    }
    let header = |op: Op| Header {
        workload: "imap-large".into(),
        name: format!("{}: {}", options.name, op.name()),
        server: options.server.clone(),
        operation: op.name().into(),
        parameters: json!({
            "address": common.address,
            "user": options.user,
            "mailbox": options.mailbox,
            "messages": options.messages,
            "needle": options.needle,
            "expect_matches": options.expect_matches,
            "repeat": options.repeat,
        }),
    };
    let mut per_op: BTreeMap<Op, Vec<RunSummary>> = BTreeMap::new();
    for run in 0..common.runs {
        let samples = one_run(common, options)
            .await
            .with_context(|| format!("{} run {}", options.name, run + 1))?;
        for (op, op_samples) in samples {
            let summary = summarize_run(op_samples)
                .with_context(|| format!("{} run {}: {}", options.name, run + 1, op.name()))?;
            eprintln!(
                "{}: {} run {}/{}: p50 {:.1} ms, p99 {:.1} ms",
                options.name,
                op.name(),
                run + 1,
                common.runs,
                summary.latency_us_p50 as f64 / 1000.0,
                summary.latency_us_p99 as f64 / 1000.0,
            );
            print_run(header(op), run, &summary)?;
            per_op.entry(op).or_default().push(summary);
        }
    }
    summarize_per_op(per_op, header)
}

async fn one_run(
    common: &Common,
    options: &LargeOptions,
) -> anyhow::Result<BTreeMap<Op, Vec<Sample>>> {
    let connection =
        crate::connection::connect_tcp(&common.address, common.io_timeout, common.buffer_bytes_max)
            .await
            .context("IMAP connect")?;
    let mut client = ImapClient::start(connection)
        .await
        .context("IMAP greeting")?;
    client
        .login(&options.user, &options.password)
        .await
        .with_context(|| format!("IMAP LOGIN as {}", options.user))?;
    let capabilities = client.capabilities().await.context("CAPABILITY")?;
    let mut timings: BTreeMap<Op, Vec<Timed>> = BTreeMap::new();
    // SELECT first, so that every other command has a selected mailbox.
    for op in Op::ALL {
        if let Some(needed) = op.capability()
            && !capabilities.iter().any(|capability| capability == needed)
        {
            eprintln!(
                "{}: {} has no {needed}; no {} row",
                options.name,
                options.server,
                op.name()
            );
            continue;
        }
        for _ in 0..options.repeat {
            let timed = one_command(&mut client, options, op)
                .await
                .with_context(|| op.name())?;
            timings.entry(op).or_default().push(timed);
        }
    }
    client.logout().await.context("IMAP LOGOUT")?;
    Ok(timings
        .into_iter()
        .map(|(op, op_timings)| {
            let start = op_timings.iter().map(|timed| timed.started).min();
            let samples = op_timings
                .iter()
                .map(|timed| Sample {
                    finished: timed.finished - start.unwrap_or(timed.started),
                    latency: timed.finished - timed.started,
                })
                .collect();
            (op, samples)
        })
        .collect())
}

async fn one_command(
    client: &mut ImapClient<tokio::net::TcpStream>,
    options: &LargeOptions,
    op: Op,
) -> anyhow::Result<Timed> {
    let messages = options.messages;
    match op {
        Op::Select => {
            let (exists, timed) = Timed::measure(client.select(&options.mailbox)).await;
            let exists = exists?;
            if exists != messages {
                bail!(
                    "{} holds {exists} messages, not the {messages} of --messages",
                    options.mailbox
                );
            }
            Ok(timed)
        }
        Op::FetchFlags => {
            let (result, timed) = Timed::measure(client.fetch("1:*", "(FLAGS)")).await;
            let (responses, _) = result?;
            if responses != messages {
                bail!("FETCH 1:* (FLAGS) returned {responses} messages, not {messages}");
            }
            Ok(timed)
        }
        Op::SearchText => {
            let criteria = format!("TEXT \"{}\"", options.needle);
            let (result, timed) = Timed::measure(client.search(&criteria)).await;
            let matches = result?;
            if let Some(expected) = options.expect_matches
                && matches != expected
            {
                bail!("SEARCH {criteria} found {matches} messages, expected {expected}");
            }
            Ok(timed)
        }
        Op::Sort | Op::Thread => {
            let command = if op == Op::Sort {
                "SORT (SUBJECT) UTF-8 ALL"
            } else {
                "THREAD REFERENCES UTF-8 ALL"
            };
            let (result, timed) = Timed::measure(client.sort_or_thread(command)).await;
            let named = result?;
            if named != u64::from(messages) {
                bail!("{command} named {named} messages, not {messages}");
            }
            Ok(timed)
        }
    }
}
