//! `postern-bench`: the command line over the workloads. Errors from every
//! layer end here, get their context printed, and become the exit code:
//! 0 success, 1 a workload or report failed, 2 bad usage (from clap).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use postern_bench::imap_client::Secret;
use postern_bench::message::{MessageSpec, Needle};
use postern_bench::report;
use postern_bench::workload::Common;
use postern_bench::workload::imap_fetch::{self, FetchOptions};
use postern_bench::workload::imap_search::{self, SearchOptions};
use postern_bench::workload::lmtp::{self, LmtpOptions};

/// Load generator for IMAP and LMTP servers. Each workload prints a JSON
/// line per run and a summary line on stdout, and a table on stderr.
#[derive(Debug, Parser)]
#[command(name = "postern-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// LMTP deliveries: deliveries/s and per-delivery latency.
    Lmtp(LmtpArgs),
    /// IMAP `FETCH 1:count ENVELOPE`, repeated: latency per FETCH.
    ImapFetch(FetchArgs),
    /// IMAP `SEARCH BODY needle`, repeated: latency per SEARCH.
    ImapSearch(SearchArgs),
    /// Reads JSON lines of workloads, prints a markdown table, and writes
    /// them with metadata into one JSON document.
    Report(ReportArgs),
}

/// Options every workload takes.
#[derive(Debug, Args)]
struct CommonArgs {
    /// Listener address, host:port.
    #[arg(long)]
    addr: String,
    /// Runs; each figure is the median over them.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The case's name in tables (defaults to the workload's name).
    #[arg(long)]
    name: Option<String>,
    /// Name of the server measured, recorded with the results.
    #[arg(long, default_value = "postern")]
    server: String,
    /// Longest wait for one read or write, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Runtime worker threads; 1 keeps the client's share of a small
    /// machine's CPU small.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Args)]
struct LmtpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Concurrent LMTP sessions.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Messages delivered per run.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Recipients, round-robin: {user-prefix}0 .. {user-prefix}{users-1}.
    #[arg(long, default_value_t = 1)]
    users: u64,
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Domain of the recipient addresses.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Envelope sender.
    #[arg(long, default_value = "bench@bench.invalid")]
    sender: String,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Seed of the message generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A word to plant in the body of every --needle-every'th message (by
    /// index), for `imap-search`.
    #[arg(long)]
    needle: Option<String>,
    #[arg(long, default_value_t = 100)]
    needle_every: u64,
}

#[derive(Debug, Args)]
struct ImapLoginArgs {
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// Concurrent IMAP sessions, each doing --repeat commands.
    #[arg(long, default_value_t = 1)]
    connections: usize,
}

#[derive(Debug, Args)]
struct FetchArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    login: ImapLoginArgs,
    /// Envelopes per FETCH (1:count).
    #[arg(long, default_value_t = 1000)]
    count: u32,
    /// FETCHes per session per run.
    #[arg(long, default_value_t = 50)]
    repeat: usize,
}

#[derive(Debug, Args)]
struct SearchArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    login: ImapLoginArgs,
    /// Messages the mailbox must hold.
    #[arg(long, default_value_t = 10_000)]
    messages: u32,
    #[arg(long)]
    needle: String,
    /// Matches every SEARCH must find (checked when given).
    #[arg(long)]
    expect_matches: Option<u64>,
    /// SEARCHes per session per run.
    #[arg(long, default_value_t = 10)]
    repeat: usize,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// JSON lines written by the workloads.
    #[arg(long)]
    input: PathBuf,
    /// Where to write the combined JSON document.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// Metadata to record, as key=value (repeatable).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
}

/// Most bytes one reply may take in a session's buffer: the largest literal
/// and a long line around it.
const BUFFER_BYTES_MAX: usize = 96 * 1024 * 1024;
const THREADS_MAX: usize = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("postern-bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Lmtp(args) => {
            let common = common(&args.common)?;
            let needle = args.needle.map(|word| Needle {
                word,
                every: args.needle_every,
            });
            let spec = MessageSpec::new(args.seed, args.size, needle, &args.domain)
                .map_err(anyhow::Error::msg)?;
            let options = LmtpOptions {
                name: args.common.name.unwrap_or_else(|| "lmtp".into()),
                server: args.common.server,
                connections: args.connections,
                messages: args.messages,
                users: args.users,
                user_prefix: args.user_prefix,
                domain: args.domain,
                sender: args.sender,
                size_bytes: args.size,
                seed: args.seed,
                spec: Arc::new(spec),
            };
            runtime(args.common.threads)?.block_on(lmtp::run(&common, &options))?;
        }
        Command::ImapFetch(args) => {
            let common = common(&args.common)?;
            let options = FetchOptions {
                name: args.common.name.unwrap_or_else(|| "imap-fetch".into()),
                server: args.common.server,
                user: args.login.user,
                password: Secret::new(args.login.password),
                mailbox: args.login.mailbox,
                count: args.count,
                repeat: args.repeat,
                connections: args.login.connections,
            };
            runtime(args.common.threads)?.block_on(imap_fetch::run(&common, &options))?;
        }
        Command::ImapSearch(args) => {
            let common = common(&args.common)?;
            let options = SearchOptions {
                name: args.common.name.unwrap_or_else(|| "imap-search".into()),
                server: args.common.server,
                user: args.login.user,
                password: Secret::new(args.login.password),
                mailbox: args.login.mailbox,
                messages: args.messages,
                needle: args.needle,
                expect_matches: args.expect_matches,
                repeat: args.repeat,
                connections: args.login.connections,
            };
            runtime(args.common.threads)?.block_on(imap_search::run(&common, &options))?;
        }
        Command::Report(args) => write_report(&args)?,
    }
    Ok(())
}

fn common(args: &CommonArgs) -> anyhow::Result<Common> {
    if args.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    Ok(Common {
        address: args.addr.clone(),
        runs: args.runs,
        io_timeout: Duration::from_secs(args.timeout_secs),
        buffer_bytes_max: BUFFER_BYTES_MAX,
    })
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    if !(1..=THREADS_MAX).contains(&threads) {
        bail!("--threads must be 1 to {THREADS_MAX}");
    }
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn write_report(args: &ReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let (runs, summaries) = report::read_records(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("parsing {}", args.input.display()))?;
    if summaries.is_empty() {
        bail!("{} holds no summary records", args.input.display());
    }
    let mut meta = serde_json::Map::new();
    for pair in &args.meta {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--meta {pair:?} is not KEY=VALUE");
        };
        meta.insert(key.into(), value.into());
    }
    print!("{}", report::markdown_table(&summaries));
    if let Some(path) = &args.json_out {
        let document = serde_json::json!({
            "meta": meta,
            "summaries": summaries,
            "runs": runs,
        });
        let text = serde_json::to_string_pretty(&document)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
