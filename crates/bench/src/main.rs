//! `postern-bench`: the command line over the workloads. Errors from every
//! layer end here, get their context printed, and become the exit code:
//! 0 success, 1 a workload or report failed, 2 bad usage (from clap).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use postern_bench::flood::Phases;
use postern_bench::imap_client::Secret;
use postern_bench::message::{MessageSpec, Needle};
use postern_bench::report;
use postern_bench::rss::ProcessSelector;
use postern_bench::workload::Common;
use postern_bench::workload::imap_fetch::{self, FetchOptions};
use postern_bench::workload::imap_idle::{self, IdleOptions};
use postern_bench::workload::imap_large::{self, LargeOptions};
use postern_bench::workload::imap_mixed::{self, MixedOptions};
use postern_bench::workload::imap_search::{self, SearchOptions};
use postern_bench::workload::lmtp::{self, LmtpOptions};
use postern_bench::workload::smtp::{self, SmtpOptions};
use postern_bench::workload::smtp_flood::{self, FloodOptions};

/// Load generator for IMAP, LMTP and SMTP servers. Each workload prints a
/// JSON line per run and a summary line on stdout (`smtp-flood`: one line),
/// and a table on stderr.
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
    /// SMTP deliveries to an MX, one command at a time: deliveries/s and
    /// per-delivery latency, comparable with `lmtp`.
    Smtp(SmtpArgs),
    /// Legitimate SMTP senders at a steady rate while a spam run floods the
    /// server: latency of legitimate mail before, during and after the run,
    /// how soon the run was detected, how much of it was accepted.
    SmtpFlood(FloodArgs),
    /// IMAP `FETCH 1:count ENVELOPE`, repeated: latency per FETCH.
    ImapFetch(FetchArgs),
    /// IMAP `SEARCH BODY needle`, repeated: latency per SEARCH.
    ImapSearch(SearchArgs),
    /// IMAP mixed sessions (LOGIN, SELECT, FETCH flags, envelopes and
    /// bodies, STORE, SEARCH, APPEND, UID EXPUNGE, LOGOUT) from many
    /// concurrent clients, each its own user: sessions/s and latency per
    /// command.
    ImapMixed(MixedArgs),
    /// IMAP on a large mailbox: SELECT, FETCH 1:* (FLAGS), SEARCH TEXT,
    /// SORT and THREAD, each repeated on one session: latency per command.
    ImapLarge(LargeArgs),
    /// Idle scale: opens IDLE connections up to a number or a server
    /// memory bound; memory per connection and whether they all stayed
    /// healthy. One `idle` JSON record.
    ImapIdle(IdleArgs),
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
    /// Number of the first run (0-based): message indices start at
    /// first-run x messages, so invocations of one run each deliver
    /// distinct messages.
    #[arg(long, default_value_t = 0)]
    first_run: u64,
    /// A server process (repeatable), whose CPU time and disk writes
    /// (with its descendants') over each run make a `cost` record.
    #[arg(long = "cost-pid")]
    cost_pids: Vec<u32>,
    /// Processes whose command line contains this (repeatable), and their
    /// descendants, are the server whose cost is recorded.
    #[arg(long = "cost-process-pattern")]
    cost_patterns: Vec<String>,
}

#[derive(Debug, Args)]
struct SmtpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Messages delivered per run.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Recipients, round-robin: {user-prefix}0 .. {user-prefix}{users-1}.
    #[arg(long, default_value_t = 1)]
    users: u64,
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Domain of the recipient addresses: one the server is the MX for.
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Envelope sender.
    #[arg(long, default_value = "bench@sender.bench.test")]
    sender: String,
    /// Our name in EHLO.
    #[arg(long, default_value = "postern-bench.invalid")]
    client_name: String,
    /// Size of each message in bytes.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Seed of the message generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The flood is one run of its own length: a second one against the same
/// server would meet a run it already knows, so there is no --runs.
#[derive(Debug, Args)]
struct FloodArgs {
    /// SMTP listener, host:port (IPv4: the senders bind 127.x.y.z).
    #[arg(long)]
    addr: String,
    /// The case's name in tables.
    #[arg(long, default_value = "smtp-flood")]
    name: String,
    /// Name of the server measured, recorded with the results.
    #[arg(long, default_value = "postern")]
    server: String,
    /// Longest wait for one read or write, in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Legitimate messages per second, over all legitimate sources.
    #[arg(long, default_value_t = 20.0)]
    legit_rate: f64,
    /// Legitimate sources: 127.0.1.1, 127.0.1.2, ...; sender domains
    /// legit1.test, legit2.test, ...
    #[arg(long, default_value_t = 5)]
    legit_sources: usize,
    /// Most SMTP sessions open at once per legitimate source.
    #[arg(long, default_value_t = 8)]
    legit_connections_per_source: usize,
    /// Size of each legitimate message in bytes (each a different text).
    #[arg(long, default_value_t = 4096)]
    legit_size: usize,
    /// Spam copies per second during the run, over all spam sources.
    #[arg(long, default_value_t = 1000.0)]
    spam_rate: f64,
    /// Spam sources: 127.10.x.y.
    #[arg(long, default_value_t = 200)]
    spam_sources: usize,
    /// Spam sources per /24: 1 puts each in a network of its own
    /// (127.10.0.1, 127.10.1.1, ...), as a botnet's are.
    #[arg(long, default_value_t = 1)]
    spam_sources_per_net: usize,
    /// Most SMTP sessions open at once per spam source.
    #[arg(long, default_value_t = 4)]
    spam_connections_per_source: usize,
    /// Seconds of legitimate mail alone before the run.
    #[arg(long, default_value_t = 10.0)]
    before_secs: f64,
    /// Seconds the run lasts (legitimate mail goes on).
    #[arg(long, default_value_t = 30.0)]
    during_secs: f64,
    /// Seconds of legitimate mail alone after the run.
    #[arg(long, default_value_t = 10.0)]
    after_secs: f64,
    /// Recipients, round-robin: {user-prefix}0 .. {user-prefix}{users-1}.
    #[arg(long, default_value_t = 100)]
    users: u64,
    #[arg(long, default_value = "user")]
    user_prefix: String,
    /// Domain of the recipient addresses: one the server is the MX for.
    #[arg(long, default_value = "bench.test")]
    domain: String,
    /// Milliseconds a legitimate sender waits before its one retry of a
    /// message that got a 4xx or lost its connection.
    #[arg(long, default_value_t = 1000)]
    retry_after_ms: u64,
    /// A refusal that names this word counts as the run detected.
    #[arg(long, default_value = "run")]
    run_word: String,
    /// Seed of the message generators.
    #[arg(long, default_value_t = 1)]
    seed: u64,
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
struct LargeArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[arg(long)]
    user: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// Messages the mailbox must hold.
    #[arg(long, default_value_t = 100_000)]
    messages: u32,
    /// The word of `SEARCH TEXT`.
    #[arg(long)]
    needle: String,
    /// Matches every SEARCH must find (checked when given).
    #[arg(long)]
    expect_matches: Option<u64>,
    /// Times each command runs per run (the first is warm-up).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
}

#[derive(Debug, Args)]
struct MixedArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Concurrent clients; client c is {user-prefix}{first-user + c}.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Whole sessions per client per run, one after another.
    #[arg(long, default_value_t = 10)]
    sessions: usize,
    #[arg(long, default_value = "mixed")]
    user_prefix: String,
    #[arg(long, default_value_t = 0)]
    first_user: usize,
    #[arg(long)]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// Seed of the session scripts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Domain of the addresses in appended messages.
    #[arg(long, default_value = "example.com")]
    domain: String,
}

#[derive(Debug, Args)]
struct IdleArgs {
    /// IMAP listener, host:port (IPv4: the clients bind 127.21.y.z and up).
    #[arg(long)]
    addr: String,
    /// The case's name in tables.
    #[arg(long, default_value = "imap-idle")]
    name: String,
    /// Name of the server measured, recorded with the results.
    #[arg(long, default_value = "postern")]
    server: String,
    /// Longest wait for one read or write while opening, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// IDLE connections to open at most.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Connection i logs in as {user-prefix}{i % users}.
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value = "idle")]
    user_prefix: String,
    #[arg(long)]
    password: String,
    #[arg(long, default_value = "INBOX")]
    mailbox: String,
    /// A server process (repeatable); it and its descendants are summed.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Processes whose command line contains this (repeatable), and their
    /// descendants, are the server.
    #[arg(long = "process-pattern")]
    process_patterns: Vec<String>,
    /// Stop opening when the server's RSS has grown by this many MiB since
    /// before the first connection; 0: no bound.
    #[arg(long, default_value_t = 1024)]
    rss_limit_mib: u64,
    /// Connections opened between RSS readings.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Connections being opened at once. Few: a server that hashes
    /// passwords at LOGIN (Postern: Argon2id, 19 MiB each) keeps what many
    /// concurrent hashes took, which would swamp the per-connection figure.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Connections per source address (one has ~28,000 ephemeral ports).
    #[arg(long, default_value_t = 1000)]
    per_source: usize,
    /// Seconds to wait after opening before the final RSS reading.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// LMTP listener for the delivery probes (none: no probes).
    #[arg(long)]
    lmtp_addr: Option<String>,
    /// Users who get a probe delivery; every idle connection of each must
    /// see it as EXISTS.
    #[arg(long, default_value_t = 5)]
    probe_users: usize,
    /// Longest wait for a probe's EXISTS on all its connections, ms.
    #[arg(long, default_value_t = 10_000)]
    probe_timeout_ms: u64,
    /// Domain of the probe recipients.
    #[arg(long, default_value = "example.com")]
    domain: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
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
    /// Compare servers: summarize every (case, server) from its run
    /// records, whatever invocations they came from (summary records are
    /// ignored), and print a table with this server's ratio to each other
    /// one. The JSON gets the ratios too.
    #[arg(long, value_name = "SERVER")]
    compare_to: Option<String>,
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
                first_run: args.first_run,
                spec: Arc::new(spec),
                cost: ProcessSelector {
                    pids: args.cost_pids,
                    patterns: args.cost_patterns,
                },
            };
            runtime(args.common.threads)?.block_on(lmtp::run(&common, &options))?;
        }
        Command::Smtp(args) => {
            let common = common(&args.common)?;
            let spec = MessageSpec::new(args.seed, args.size, None, &args.domain)
                .map_err(anyhow::Error::msg)?;
            let options = SmtpOptions {
                name: args.common.name.unwrap_or_else(|| "smtp".into()),
                server: args.common.server,
                connections: args.connections,
                messages: args.messages,
                users: args.users,
                user_prefix: args.user_prefix,
                domain: args.domain,
                sender: args.sender,
                client_name: args.client_name,
                size_bytes: args.size,
                seed: args.seed,
                spec: Arc::new(spec),
            };
            runtime(args.common.threads)?.block_on(smtp::run(&common, &options))?;
        }
        Command::SmtpFlood(args) => {
            if args.timeout_secs == 0 {
                bail!("--timeout-secs must be at least 1");
            }
            let common = Common {
                address: args.addr.clone(),
                runs: 1,
                io_timeout: Duration::from_secs(args.timeout_secs),
                buffer_bytes_max: BUFFER_BYTES_MAX,
            };
            let spec = MessageSpec::distinct_texts(args.seed, args.legit_size)
                .map_err(anyhow::Error::msg)?;
            let options = FloodOptions {
                name: args.name,
                server: args.server,
                legit_rate: args.legit_rate,
                legit_sources: args.legit_sources,
                legit_connections_per_source: args.legit_connections_per_source,
                legit_size_bytes: args.legit_size,
                spam_rate: args.spam_rate,
                spam_sources: args.spam_sources,
                spam_sources_per_net: args.spam_sources_per_net,
                spam_connections_per_source: args.spam_connections_per_source,
                phases: Phases {
                    before: seconds("--before-secs", args.before_secs)?,
                    during: seconds("--during-secs", args.during_secs)?,
                    after: seconds("--after-secs", args.after_secs)?,
                },
                users: args.users,
                user_prefix: args.user_prefix,
                domain: args.domain,
                retry_after: Duration::from_millis(args.retry_after_ms),
                seed: args.seed,
                run_word: args.run_word,
                legit_spec: Arc::new(spec),
            };
            runtime(args.threads)?.block_on(smtp_flood::run(&common, &options))?;
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
        Command::ImapMixed(args) => {
            let common = common(&args.common)?;
            let options = MixedOptions {
                name: args.common.name.unwrap_or_else(|| "imap-mixed".into()),
                server: args.common.server,
                clients: args.clients,
                sessions: args.sessions,
                user_prefix: args.user_prefix,
                first_user: args.first_user,
                password: Secret::new(args.password),
                mailbox: args.mailbox,
                seed: args.seed,
                domain: args.domain,
            };
            runtime(args.common.threads)?.block_on(imap_mixed::run(&common, &options))?;
        }
        Command::ImapLarge(args) => {
            let common = common(&args.common)?;
            let options = LargeOptions {
                name: args.common.name.unwrap_or_else(|| "imap-large".into()),
                server: args.common.server,
                user: args.user,
                password: Secret::new(args.password),
                mailbox: args.mailbox,
                messages: args.messages,
                needle: args.needle,
                expect_matches: args.expect_matches,
                repeat: args.repeat,
            };
            runtime(args.common.threads)?.block_on(imap_large::run(&common, &options))?;
        }
        Command::ImapIdle(args) => {
            if args.timeout_secs == 0 {
                bail!("--timeout-secs must be at least 1");
            }
            let common = Common {
                address: args.addr.clone(),
                runs: 1,
                io_timeout: Duration::from_secs(args.timeout_secs),
                buffer_bytes_max: BUFFER_BYTES_MAX,
            };
            let options = IdleOptions {
                name: args.name,
                server: args.server,
                connections: args.connections,
                users: args.users,
                user_prefix: args.user_prefix,
                password: Secret::new(args.password),
                mailbox: args.mailbox,
                rss: ProcessSelector {
                    pids: args.pids,
                    patterns: args.process_patterns,
                },
                rss_limit_kib: args.rss_limit_mib.saturating_mul(1024),
                batch: args.batch,
                parallel: args.parallel,
                per_source: args.per_source,
                settle: seconds("--settle-secs", args.settle_secs)?,
                lmtp_address: args.lmtp_addr,
                probe_users: args.probe_users,
                probe_timeout: Duration::from_millis(args.probe_timeout_ms),
                domain: args.domain,
                seed: args.seed,
            };
            raise_open_file_limit();
            runtime(args.threads)?.block_on(imap_idle::run(&common, &options))?;
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

/// A phase length from the command line.
fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value >= 0.0) {
        bail!("{flag} must be a number of seconds, 0 or more");
    }
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value}"))
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
    let report::Records {
        runs,
        mut summaries,
        floods,
        idles,
        costs,
    } = report::read_records(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("parsing {}", args.input.display()))?;
    if summaries.is_empty() && floods.is_empty() && idles.is_empty() && runs.is_empty() {
        bail!(
            "{} holds no summary, flood or idle records",
            args.input.display()
        );
    }
    let mut meta = serde_json::Map::new();
    for pair in &args.meta {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--meta {pair:?} is not KEY=VALUE");
        };
        meta.insert(key.into(), value.into());
    }
    let mut ratios = None;
    if let Some(baseline) = &args.compare_to {
        summaries = report::gather_runs(&runs);
        // A file of idle (or flood) records alone has no runs to compare:
        // its own tables follow.
        if !summaries.is_empty() {
            if !summaries
                .iter()
                .any(|summary| &summary.header.server == baseline)
            {
                bail!("--compare-to {baseline}: no runs of that server");
            }
            print!("{}", report::comparison_markdown(&summaries, baseline));
            ratios = Some(report::ratios(&summaries, baseline));
        }
    } else if !summaries.is_empty() {
        print!("{}", report::markdown_table(&summaries));
    }
    print!("{}", report::flood_markdown(&floods));
    print!("{}", report::idle_markdown(&idles));
    print!(
        "{}",
        report::cost_markdown(&costs, args.compare_to.as_deref())
    );
    if let Some(path) = &args.json_out {
        let mut document = serde_json::json!({
            "meta": meta,
            "summaries": summaries,
            "runs": runs,
        });
        if let Some(ratios) = ratios {
            document["ratios"] = serde_json::to_value(&ratios)?;
        }
        if !floods.is_empty() {
            document["floods"] = serde_json::to_value(&floods)?;
        }
        if !idles.is_empty() {
            document["idles"] = serde_json::to_value(&idles)?;
        }
        if !costs.is_empty() {
            document["costs"] = serde_json::to_value(&costs)?;
        }
        let text = serde_json::to_string_pretty(&document)? + "\n";
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one: every idle connection
/// is a descriptor. A failure is only reported; opening then stops at the
/// limit with an error that says so.
fn raise_open_file_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum || (limit.maximum.is_none() && limit.current.is_some()) {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            eprintln!("postern-bench: could not raise the open-file limit: {error}");
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    eprintln!(
        "postern-bench: open-file limit {}",
        now.map_or("unlimited".into(), |n| n.to_string())
    );
}
