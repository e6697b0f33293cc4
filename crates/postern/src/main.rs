//! `postern`: the command line. Parses arguments, loads the config, then either
//! runs the server or one admin command. Errors become messages on stderr and
//! exit codes here, in one place.

use anyhow::{Context, anyhow};
use base64::Engine;
use clap::{Parser, Subcommand};
use server::admin::{self, AdminCommand, AdminOutput};
use server::config::{self, Config};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Postern mail server: IMAP4rev2, LMTP, embedded store"
)]
struct Cli {
    /// Config file (TOML). Without it, every listener runs on its default
    /// address and data lives in ./postern-data.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage aliases (an address delivering to one or more users).
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Inspect mailboxes; create and delete those of the "Shared" namespace.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Access control lists (IMAP ACL, RFC 4314) of a user's mailbox, or of
    /// a "Shared" one with USER `#shared`.
    #[command(subcommand)]
    Acl(AclCommand),
    /// Deliver a message from stdin to USER's INBOX (exit 0 delivered, 67 unknown user, 75 try later).
    Deliver { user: String },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Store maintenance.
    #[command(subcommand)]
    Store(StoreCommand),
    /// SMS: queue one, list the outbox (the running server sends).
    #[command(subcommand)]
    Sms(SmsCommand),
    /// The status page: incidents, maintenance, components, import, admin API tokens.
    #[command(subcommand)]
    Status(StatusCommand),
    /// Inbound SMTP's spam defence: detected runs, and blocks (effective at
    /// once in the running server, kept across restarts).
    #[command(subcommand)]
    Spam(SpamCommand),
    /// Shared server annotations (IMAP METADATA on mailbox ""): every
    /// logged-in user reads them, only the administrator sets them.
    #[command(subcommand)]
    Metadata(MetadataCommand),
    /// Replication to a replica server (`[replication]`): status, promotion,
    /// consistency check and repair, and an old primary's rejoin.
    #[command(subcommand)]
    Replication(ReplicationCommand),
    /// Check every index and cache entry against the journal and the message
    /// blobs, and repair what differs, online (throttled by `[reconstruct]
    /// max_read_mb_per_s`). Exit 0: nothing wrong or all repaired; 1: problems remain.
    Reconstruct {
        /// Only this user.
        user: Option<String>,
        /// Only this mailbox of USER.
        mailbox: Option<String>,
        /// Report only; change nothing.
        #[arg(long)]
        check: bool,
        /// One JSON object (`problems`, `repaired`, `lost`, `details`, ...).
        #[arg(long)]
        json: bool,
        /// Read at most this many MB per second (0: no limit); default:
        /// `[reconstruct] max_read_mb_per_s`.
        #[arg(long, value_name = "MB")]
        max_read_mb_per_s: Option<u64>,
    },
}

#[derive(Subcommand)]
enum StatusCommand {
    /// Open an incident (or, with --maintenance, schedule maintenance); its
    /// first post ("Status") is read from stdin. Prints `incident N`.
    Open {
        #[arg(long)]
        title: String,
        /// A component affected (repeatable), e.g. "Incoming mail".
        #[arg(long = "component", value_name = "NAME")]
        components: Vec<String>,
        /// none, minor, major or critical.
        #[arg(long, default_value = "minor")]
        impact: String,
        /// investigating (default), identified or monitoring; maintenance: scheduled.
        #[arg(long)]
        state: Option<String>,
        /// Maintenance window: START END, RFC 3339 UTC (2026-12-01T02:00:00Z) or Unix seconds.
        #[arg(long, num_args = 2, value_names = ["START", "END"])]
        maintenance: Option<Vec<String>>,
        /// Who posts (default: $USER).
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Post an "Update" to incident ID, text on stdin. Prints `post N`.
    Update {
        id: u64,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        impact: Option<String>,
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Resolve incident ID (or complete maintenance) with a last update from
    /// stdin ("Resolved." when empty).
    Resolve {
        id: u64,
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Replace the text of post ID with stdin; the old text is kept in its history.
    Edit {
        id: u64,
        #[arg(long)]
        author: Option<String>,
    },
    /// Set a component's state by hand: operational, degraded, partial_outage,
    /// major_outage or maintenance; or --remove it.
    Component {
        name: String,
        state: Option<String>,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, conflicts_with = "state")]
        remove: bool,
    },
    /// List incidents, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Import a plain-text incident log ("Status (by NAME at Ddd Mmm D HH:MM UTC)"
    /// ...); posts already imported are skipped.
    Import {
        file: PathBuf,
        /// The year of the log's first incidents (the log does not say).
        #[arg(long)]
        year: i64,
        #[arg(long)]
        json: bool,
    },
    /// Admin API tokens (`Authorization: Bearer TOKEN`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// People who get a notice of every new post (email or SMS).
    #[command(subcommand)]
    Subscriber(SubscriberCommand),
}

#[derive(Subcommand)]
enum SubscriberCommand {
    /// List subscribers: id, kind, address, pending or active.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add an active subscriber (no confirmation mail: you vouch for it).
    Add {
        #[arg(long, conflicts_with = "sms", required_unless_present = "sms")]
        email: Option<String>,
        /// An E.164 number (+4912345678); notices go through the SMS outbox.
        #[arg(long)]
        sms: Option<String>,
    },
    /// Remove a subscriber by id (from `list`).
    Remove { id: u64 },
}

#[derive(Subcommand)]
enum SpamCommand {
    /// Runs of near-identical mail the running server detected: size,
    /// sources, sender domains, first and last seen.
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Blocks in force.
    Blocks {
        #[arg(long)]
        json: bool,
    },
    /// Block inbound mail by KEY: ip:ADDRESS, net:ADDRESS/PREFIX,
    /// sender:ADDRESS, domain:DOMAIN (and its subdomains), run:ID (from
    /// `runs`) or fingerprint:HEX. Clients and senders get 550 5.7.1 at
    /// MAIL FROM, a run's messages after DATA.
    Block {
        key: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Lift a block (KEY as in `blocks`, or run:ID).
    Unblock { key: String },
}

#[derive(Subcommand)]
enum ReplicationCommand {
    /// Role, epoch, link, lag (records and seconds) and totals shipped.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make this replica the primary at a new epoch. Refused while it knows
    /// it is behind its primary, unless --force (which says what is lost).
    Promote {
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compare this server with the other by per-mailbox digests (UIDs,
    /// flags, MODSEQs, content hashes, contents verified); exit 1 when they
    /// differ. --repair repairs toward the side whose data verifies.
    Check {
        user: Option<String>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        repair: bool,
    },
    /// Set the sync mode in force, "async" or "before-ack", from now on and
    /// across restarts (overrides the config's `sync`): e.g. async while a
    /// before-ack primary has no replica.
    Sync { mode: String },
    /// With the server stopped, after a failover: set aside what this old
    /// primary wrote that the new primary never received (messages as .eml
    /// and a report, in data_dir/set-aside/), and start over as its replica.
    Rejoin {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum MetadataCommand {
    /// Set ENTRY (a name below /shared/, e.g. /shared/admin) to VALUE, or
    /// remove it with --remove.
    Set {
        entry: String,
        #[arg(required_unless_present = "remove")]
        value: Option<String>,
        #[arg(long, conflicts_with = "value")]
        remove: bool,
    },
    /// Show ENTRY and the entries below it (default: all of /shared).
    Get { entry: Option<String> },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token named NAME; prints it (the only time it is shown).
    Add {
        name: String,
    },
    List,
    Revoke {
        name: String,
    },
}

#[derive(Subcommand)]
enum SmsCommand {
    /// Queue an SMS to NUMBER with the text on stdin; returns once it is queued
    /// durably. The running server sends it.
    Send { number: String },
    /// Show, set or remove USER's new-mail alert. With NUMBER it is set (replacing
    /// the old one); with --off removed; with neither shown.
    Alert {
        user: String,
        number: Option<String>,
        /// Only mail whose From contains this (repeatable).
        #[arg(long = "from", value_name = "TEXT")]
        from: Vec<String>,
        /// Only mail whose To or Cc contains this (repeatable).
        #[arg(long = "to", value_name = "TEXT")]
        to: Vec<String>,
        /// Only mail marked important.
        #[arg(long)]
        important: bool,
        /// No alerts in these hours, local time, e.g. 22:00-07:00.
        #[arg(long, value_name = "HH:MM-HH:MM")]
        quiet: Option<String>,
        /// The user's zone for --quiet, e.g. +01:00 or -05:00.
        #[arg(long, default_value = "+00:00", allow_hyphen_values = true)]
        zone: String,
        /// Most alerts per rolling hour.
        #[arg(long, default_value_t = 10)]
        per_hour: u32,
        /// Remove the alert.
        #[arg(long, conflicts_with = "number")]
        off: bool,
    },
    /// The outbox, newest first: state, SMSC message ids or the reason it failed.
    List {
        /// Most entries shown.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Everything, text included, as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Reclaim the space of messages no mailbox references any more.
    Gc {
        /// Most bytes of surviving blobs to copy in this run.
        #[arg(long, default_value_t = u64::MAX)]
        bytes_max: u64,
    },
    /// Write every user, mailbox, message (UIDs, UIDVALIDITY, flags, MODSEQs)
    /// and setting to a new FILE: the change log and each content once, with
    /// a checksum. Works on a running server (a consistent cut).
    Export {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Read an export into this server's store, which must be empty; the whole
    /// file is checked before anything is applied.
    Import {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Copy the embedded store of another config (its server stopped) into
    /// this server's store, without an export file: everything into an empty
    /// store, or, run again, what the old store took since the last copy.
    Copy {
        /// The config of the store to copy from (`backend = "embedded"`).
        #[arg(long = "from")]
        from: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the PostgreSQL schema (`[store] backend = "postgres"`)
    /// to this binary's version; run it before `serve`, as often as you like.
    Migrate {
        /// Say what would be applied, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (password from stdin, or prompted on a terminal).
    Add { name: String },
    /// Delete a user and all their mail.
    Del { name: String },
    /// List users.
    List,
    /// Move NAME's account and mail to another PostgreSQL shard while they
    /// stay in use: copy, catch up, a switch-over of well under a second
    /// (sessions are told to reconnect), then, after `[store]
    /// move_grace_secs`, the old rows go. Run again to finish a move that
    /// stopped half way.
    Move {
        name: String,
        /// The shard to move to (a `[[store.shards]]` name).
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Undo a move that stopped before its switch-over.
        #[arg(long, conflicts_with = "to")]
        abort: bool,
        /// One JSON object instead of text (progress as JSON lines on stderr).
        #[arg(long)]
        json: bool,
    },
    /// Change a user's password (read like `add`).
    Passwd { name: String },
    /// Show NAME's quota and usage; with --storage or --messages set them
    /// ("none": back to the server default, `[quota]`).
    Quota {
        name: String,
        /// Most bytes of mail: "10G", "512M", a number, or "none".
        #[arg(long)]
        storage: Option<String>,
        /// Most messages, or "none".
        #[arg(long)]
        messages: Option<String>,
    },
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Make ADDRESS deliver to USERS.
    Add {
        address: String,
        #[arg(required = true)]
        users: Vec<String>,
    },
    Del {
        address: String,
    },
    List,
}

#[derive(Subcommand)]
enum MailboxCommand {
    /// List a user's mailboxes with counts.
    List { user: String },
    /// Create NAME in the "Shared" namespace (IMAP `Shared/NAME`), owned by
    /// the reserved account `#shared`; nobody sees it until `postern acl set
    /// '#shared' NAME IDENTIFIER RIGHTS` grants rights.
    CreateShared { name: String },
    /// Delete the shared mailbox NAME with its messages.
    DeleteShared { name: String },
}

#[derive(Subcommand)]
enum AclCommand {
    /// Show the ACL of USER's MAILBOX (the owner always has every right).
    Get { user: String, mailbox: String },
    /// Set IDENTIFIER's rights on USER's MAILBOX: RIGHTS are letters of
    /// "lrswipkxtea" (replace), or after "+" (add) or "-" (remove).
    /// IDENTIFIER is a user, "anyone", or either after "-" (negative rights).
    Set {
        user: String,
        mailbox: String,
        #[arg(allow_hyphen_values = true)]
        identifier: String,
        #[arg(allow_hyphen_values = true)]
        rights: String,
    },
    /// Remove IDENTIFIER's entry from the ACL of USER's MAILBOX.
    Delete {
        user: String,
        mailbox: String,
        #[arg(allow_hyphen_values = true)]
        identifier: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and a comment.
    Default,
    /// Check a config file and print what it resolves to.
    Check,
}

/// `replication rejoin`: offline (the store lock proves the server is stopped).
fn rejoin(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let report = server::replication::rejoin::rejoin(config)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let records: u64 = report.records.values().sum();
        println!(
            "set aside in {}: {records} records the new primary never received ({} messages written out as .eml), and the old store",
            report.set_aside.display(),
            report.messages.len()
        );
        println!(
            "this server is now an empty replica at epoch {}: start it, and the primary fills it",
            report.epoch
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `store migrate`: run here, not by the server (it may not run yet, and
/// `serve` refuses an unmigrated database).
fn store_migrate(config: &Config, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    if config.store.backend != server::config::StoreBackend::Postgres {
        eprintln!(
            "postern: store migrate is for [store] backend = \"postgres\"; the embedded store upgrades itself when it opens"
        );
        return Ok(ExitCode::from(admin::EX_USAGE as u8));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reports = match runtime.block_on(server::postgres_migrate(config, dry_run)) {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("postern: {e}");
            let code = match e.kind {
                store::ErrorKind::Unavailable => admin::EX_TEMPFAIL,
                _ => admin::EX_DATAERR,
            };
            return Ok(ExitCode::from(code as u8));
        }
    };
    let sharded = !config.store.shards.is_empty();
    let as_json = |report: &store::pg::migrate::Report| {
        let applied: Vec<serde_json::Value> = report
            .applied
            .iter()
            .map(|(version, description)| {
                serde_json::json!({ "version": version, "description": description })
            })
            .collect();
        serde_json::json!({
            "from": report.from,
            "to": report.to,
            "applied": applied,
            "dry_run": report.dry_run,
        })
    };
    if json {
        let value = if sharded {
            let shards: serde_json::Map<String, serde_json::Value> = reports
                .iter()
                .map(|(name, report)| (name.clone(), as_json(report)))
                .collect();
            serde_json::json!({ "shards": shards })
        } else {
            reports
                .first()
                .map(|(_, report)| as_json(report))
                .unwrap_or_default()
        };
        println!("{value}");
        return Ok(ExitCode::SUCCESS);
    }
    for (name, report) in &reports {
        let prefix = if sharded {
            format!("shard {name}: ")
        } else {
            String::new()
        };
        if report.applied.is_empty() {
            println!(
                "{prefix}the schema is at version {}: nothing to apply",
                report.from
            );
            continue;
        }
        let verb = if dry_run { "would apply" } else { "applied" };
        for (version, description) in &report.applied {
            println!("{prefix}{verb} {version}: {description}");
        }
        println!(
            "{prefix}the schema {} at version {} (was {})",
            if dry_run { "would be" } else { "is now" },
            report.to,
            report.from
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// glibc raises its mmap threshold to the size of each large block freed (up
/// to 32 MiB), and serves later large allocations from per-thread arenas,
/// which keep their memory. Argon2id takes 19 MiB per password check: a
/// thousand IMAP clients logging in on a few hundred blocking threads grew
/// the server to 24 GB that way, and a later 1,000-client run was killed
/// by the OOM killer (issue 9's benchmark). A fixed threshold of 1 MiB keeps
/// large blocks mapped and returned on free: 300 such clients then stay near
/// 200 MB (7.4 GB before). Setting it needs glibc's tunables, read when the
/// process starts, so `serve` starts itself again once with them; unsafe code
/// (`mallopt`) is not allowed in this workspace.
fn keep_large_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        const KEY: &str = "glibc.malloc.mmap_threshold";
        const DONE: &str = "POSTERN_MALLOC_TUNED";
        if !std::env::args().any(|a| a == "serve") || std::env::var_os(DONE).is_some() {
            return;
        }
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains(KEY) {
            return; // the operator chose a threshold
        }
        let tunables = if current.is_empty() {
            format!("{KEY}=1048576")
        } else {
            format!("{current}:{KEY}=1048576")
        };
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("GLIBC_TUNABLES", tunables)
            .env(DONE, "1")
            .exec();
        // exec returns only when it failed: go on with glibc's defaults.
        eprintln!("postern: could not restart with malloc tunables ({error}); going on without");
    }
}

fn main() -> ExitCode {
    keep_large_allocations_mapped();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &Option<PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => config::load(p),
        None => Ok(Config::default()),
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Config(ConfigCommand::Default) = cli.command {
        print!("{}", config::DEFAULT_CONFIG);
        return Ok(ExitCode::SUCCESS);
    }
    let config = load_config(&cli.config)?;
    let command = match cli.command {
        Command::Serve => return serve(config),
        Command::Config(ConfigCommand::Check) => {
            println!("{config:#?}");
            return Ok(ExitCode::SUCCESS);
        }
        Command::Config(ConfigCommand::Default) => return Ok(ExitCode::SUCCESS),
        Command::User(UserCommand::Add { name }) => AdminCommand::UserAdd {
            password: read_password(&name)?,
            name,
        },
        Command::User(UserCommand::Passwd { name }) => AdminCommand::UserPasswd {
            password: read_password(&name)?,
            name,
        },
        Command::User(UserCommand::Del { name }) => AdminCommand::UserDel { name },
        Command::User(UserCommand::List) => AdminCommand::UserList,
        Command::User(UserCommand::Move {
            name,
            to,
            abort,
            json,
        }) => AdminCommand::UserMove {
            name,
            to,
            abort,
            json,
        },
        Command::User(UserCommand::Quota {
            name,
            storage,
            messages,
        }) => {
            use admin::QuotaValue;
            let parse = |value: Option<String>, size: bool| -> Result<QuotaValue, String> {
                match value.as_deref().map(str::trim) {
                    None => Ok(QuotaValue::Keep),
                    Some(v) if v.eq_ignore_ascii_case("none") => Ok(QuotaValue::Default),
                    Some(v) if size => config::parse_size(v).map(QuotaValue::Limit),
                    Some(v) => v
                        .parse::<u64>()
                        .map(QuotaValue::Limit)
                        .map_err(|_| format!("--messages {v:?}: a number or \"none\"")),
                }
            };
            match (parse(storage, true), parse(messages, false)) {
                (Ok(storage), Ok(messages)) => AdminCommand::UserQuota {
                    name,
                    storage,
                    messages,
                },
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("postern: {e}");
                    return Ok(ExitCode::from(admin::EX_DATAERR as u8));
                }
            }
        }
        Command::Alias(AliasCommand::Add { address, users }) => {
            AdminCommand::AliasAdd { address, users }
        }
        Command::Alias(AliasCommand::Del { address }) => AdminCommand::AliasDel { address },
        Command::Alias(AliasCommand::List) => AdminCommand::AliasList,
        Command::Mailbox(MailboxCommand::List { user }) => AdminCommand::MailboxList { user },
        Command::Mailbox(MailboxCommand::CreateShared { name }) => {
            AdminCommand::MailboxCreateShared { name }
        }
        Command::Mailbox(MailboxCommand::DeleteShared { name }) => {
            AdminCommand::MailboxDeleteShared { name }
        }
        Command::Acl(AclCommand::Get { user, mailbox }) => AdminCommand::AclGet { user, mailbox },
        Command::Acl(AclCommand::Set {
            user,
            mailbox,
            identifier,
            rights,
        }) => AdminCommand::AclSet {
            user,
            mailbox,
            identifier,
            rights: Some(rights),
        },
        Command::Acl(AclCommand::Delete {
            user,
            mailbox,
            identifier,
        }) => AdminCommand::AclSet {
            user,
            mailbox,
            identifier,
            rights: None,
        },
        Command::Store(StoreCommand::Gc { bytes_max }) => AdminCommand::Gc { bytes_max },
        // The server resolves paths in its own working directory: send it an absolute one.
        Command::Store(StoreCommand::Export { file, json }) => AdminCommand::StoreExport {
            path: std::path::absolute(&file)?,
            json,
        },
        Command::Store(StoreCommand::Copy { from, json }) => {
            let old = match config::load(&from) {
                Ok(old) => old,
                Err(e) => {
                    eprintln!("postern: --from {}: {e:#}", from.display());
                    return Ok(ExitCode::from(admin::EX_USAGE as u8));
                }
            };
            if old.store.backend != server::config::StoreBackend::Embedded {
                eprintln!(
                    "postern: store copy --from reads an embedded store; {} names PostgreSQL (use its `store export`, when built, or PostgreSQL's own tools)",
                    from.display()
                );
                return Ok(ExitCode::from(admin::EX_USAGE as u8));
            }
            AdminCommand::StoreCopy {
                data_dir: std::path::absolute(&old.data_dir)?,
                json,
            }
        }
        Command::Store(StoreCommand::Import { file, json }) => AdminCommand::StoreImport {
            path: std::path::absolute(&file)?,
            json,
        },
        Command::Replication(ReplicationCommand::Status { json }) => {
            AdminCommand::ReplicationStatus { json }
        }
        Command::Replication(ReplicationCommand::Promote { force, json }) => {
            AdminCommand::ReplicationPromote { force, json }
        }
        Command::Replication(ReplicationCommand::Check { user, json, repair }) => {
            AdminCommand::ReplicationCheck { user, json, repair }
        }
        Command::Replication(ReplicationCommand::Sync { mode }) => {
            AdminCommand::ReplicationSync { mode }
        }
        Command::Replication(ReplicationCommand::Rejoin { json }) => {
            return rejoin(&config, json);
        }
        Command::Store(StoreCommand::Migrate { dry_run, json }) => {
            return store_migrate(&config, dry_run, json);
        }
        Command::Spam(SpamCommand::Runs { json }) => AdminCommand::SpamRuns { json },
        Command::Spam(SpamCommand::Blocks { json }) => AdminCommand::SpamBlocks { json },
        Command::Spam(SpamCommand::Block { key, reason }) => {
            let reason = if reason.is_empty() {
                "blocked from the command line".to_string()
            } else {
                reason
            };
            AdminCommand::SpamBlock { key, reason }
        }
        Command::Spam(SpamCommand::Unblock { key }) => AdminCommand::SpamUnblock { key },
        Command::Metadata(MetadataCommand::Set { entry, value, .. }) => {
            AdminCommand::MetadataSet { entry, value }
        }
        Command::Metadata(MetadataCommand::Get { entry }) => AdminCommand::MetadataGet { entry },
        Command::Status(command) => {
            match status_command(command).and_then(|c| subscriber_number(&config, &cli.config, c)) {
                Ok(command) => command,
                Err(message) => {
                    eprintln!("postern: {message}");
                    return Ok(ExitCode::from(admin::EX_USAGE as u8));
                }
            }
        }
        Command::Reconstruct {
            user,
            mailbox,
            check,
            json,
            max_read_mb_per_s,
        } => AdminCommand::Reconstruct {
            user,
            mailbox,
            check,
            json,
            max_read_mb_per_s,
        },
        Command::Sms(SmsCommand::List { limit, json }) => AdminCommand::SmsList { limit, json },
        Command::Sms(SmsCommand::Alert {
            user,
            number,
            from,
            to,
            important,
            quiet,
            zone,
            per_hour,
            off,
        }) => {
            let action = if off {
                admin::SmsAlertAction::Remove
            } else if let Some(number) = number {
                match sms_alert(
                    &config, &number, from, to, important, quiet, &zone, per_hour,
                ) {
                    Ok(alert) => admin::SmsAlertAction::Set(alert),
                    Err(message) => {
                        eprintln!("postern: {message}");
                        return Ok(ExitCode::from(admin::EX_DATAERR as u8));
                    }
                }
            } else {
                admin::SmsAlertAction::Show
            };
            AdminCommand::SmsAlert { user, action }
        }
        Command::Sms(SmsCommand::Send { number }) => {
            match sms_send(&config, &cli.config, &number) {
                Ok(command) => command,
                Err(message) => {
                    eprintln!("postern: {message}");
                    return Ok(ExitCode::from(admin::EX_DATAERR as u8));
                }
            }
        }
        Command::Deliver { user } => {
            let mut message = Vec::new();
            if std::io::stdin().read_to_end(&mut message).is_err() {
                eprintln!("postern: cannot read the message from stdin");
                return Ok(ExitCode::from(admin::EX_TEMPFAIL as u8));
            }
            AdminCommand::Deliver {
                user,
                message: base64::engine::general_purpose::STANDARD.encode(message),
            }
        }
    };
    init_logging(&config);
    // A progress bar on a terminal, for the long commands (reconstruct,
    // user move); off a terminal, a move says each phase as a JSON line.
    let bar = std::io::stderr().is_terminal();
    let phase_lines = matches!(command, AdminCommand::UserMove { .. });
    let last_phase = std::sync::Mutex::new(String::new());
    let show = |p: store::reconstruct::Progress| {
        if bar {
            eprint!("\r{}", progress_line(&p));
            if p.phase == "done" {
                eprintln!();
            }
        } else if phase_lines {
            let mut last = last_phase.lock().unwrap_or_else(|e| e.into_inner());
            if *last != p.phase {
                eprintln!(
                    "{}",
                    serde_json::json!({ "phase": p.phase, "done": p.done, "total": p.total })
                );
                *last = p.phase.clone();
            }
        }
    };
    let output = match admin::send_with_progress(&config.data_dir, &command, &mut |p| show(p))? {
        Some(output) => output,
        None => {
            // No server: act on the store directly.
            let store = server::open_store(&config)?;
            let context = admin::AdminContext::new(&config);
            let output = admin::execute_with_progress(&store, context, command, &show);
            store.shutdown();
            output
        }
    };
    Ok(finish(output))
}

/// One line of a progress bar: the phase, a bar of 30 cells when the total
/// is known, and the counts.
fn progress_line(p: &store::reconstruct::Progress) -> String {
    const CELLS: u64 = 30;
    if p.total == 0 {
        return format!("{:<9} {:>12}   ", p.phase, p.done);
    }
    let filled = (p.done.min(p.total) * CELLS / p.total) as usize;
    format!(
        "{:<9} [{}{}] {}/{} {:>3}%   ",
        p.phase,
        "#".repeat(filled),
        " ".repeat(CELLS as usize - filled),
        p.done,
        p.total,
        p.done.min(p.total) * 100 / p.total
    )
}

/// Largest post read from stdin (the store checks the 20,000-byte bound of
/// a post's text; this only stops a runaway pipe).
const STDIN_TEXT_BYTES_MAX: u64 = 1024 * 1024;

/// A post's text: from stdin, or, when stdin is a terminal, written in
/// `$VISUAL` / `$EDITOR` (default `vi`), as `git commit` does.
fn stdin_text() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        return editor_text();
    }
    let mut text = String::new();
    std::io::stdin()
        .take(STDIN_TEXT_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the text from stdin: {e}"))?;
    Ok(text)
}

const EDITOR_HELP: &str = "\n# Write the post above: plain text, paragraphs separated by a blank line,\n# links as they are. Lines starting with # are left out. Save and quit to\n# post; an empty text posts nothing.\n";

fn editor_text() -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let set = |name: &str| std::env::var(name).ok().filter(|e| !e.trim().is_empty());
    let editor = set("VISUAL")
        .or_else(|| set("EDITOR"))
        .unwrap_or_else(|| "vi".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let path =
        std::env::temp_dir().join(format!("postern-post-{}-{nanos}.txt", std::process::id()));
    // Owner-only and new: nobody else reads a draft or swaps the file.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(EDITOR_HELP.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    drop(file);
    // Through the shell, so EDITOR may carry arguments ("code --wait").
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status();
    let text = std::fs::read(&path);
    let _ = std::fs::remove_file(&path);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => {
            return Err(format!(
                "the editor ({editor}) failed ({s}); nothing posted"
            ));
        }
        Err(e) => return Err(format!("cannot run the editor ({editor}): {e}")),
    }
    let text = text.map_err(|e| format!("cannot read the text back: {e}"))?;
    if text.len() as u64 > STDIN_TEXT_BYTES_MAX {
        return Err("the text is too long".into());
    }
    let text = String::from_utf8(text).map_err(|_| "the text is not UTF-8".to_string())?;
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let text = kept.join("\n").trim().to_string();
    if text.is_empty() {
        return Err("empty text: nothing posted".into());
    }
    Ok(text)
}

fn author(given: Option<String>) -> String {
    given
        .or_else(|| std::env::var("SUDO_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| "admin".into())
}

/// Unix seconds from Unix seconds or an RFC 3339 UTC time
/// (`YYYY-MM-DDTHH:MM[:SS]Z`).
fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .ok()
        .or_else(|| status::parse_rfc3339_utc(text))
        .ok_or_else(|| format!("{text:?} is not a time: use 2026-12-01T02:00:00Z or Unix seconds"))
}

fn status_command(command: StatusCommand) -> Result<AdminCommand, String> {
    Ok(match command {
        StatusCommand::Open {
            title,
            components,
            impact,
            state,
            maintenance,
            author: who,
            json,
        } => {
            let maintenance = match maintenance.as_deref() {
                Some([starts, ends]) => {
                    let (starts, ends) = (parse_time(starts)?, parse_time(ends)?);
                    if ends < starts {
                        return Err("the maintenance ends before it starts".into());
                    }
                    Some((starts, ends))
                }
                Some(_) => return Err("--maintenance takes START END".into()),
                None => None,
            };
            AdminCommand::StatusOpen {
                title,
                components,
                impact,
                state,
                maintenance,
                author: author(who),
                text: stdin_text()?,
                json,
            }
        }
        StatusCommand::Update {
            id,
            state,
            impact,
            author: who,
            json,
        } => AdminCommand::StatusUpdate {
            incident: id,
            state,
            impact,
            resolve: false,
            author: author(who),
            text: stdin_text()?,
            json,
        },
        StatusCommand::Resolve {
            id,
            author: who,
            json,
        } => AdminCommand::StatusUpdate {
            incident: id,
            state: None,
            impact: None,
            resolve: true,
            author: author(who),
            text: stdin_text()?,
            json,
        },
        StatusCommand::Edit { id, author: who } => AdminCommand::StatusEdit {
            post: id,
            author: author(who),
            text: stdin_text()?,
        },
        StatusCommand::Component {
            name,
            state,
            note,
            remove,
        } => AdminCommand::StatusComponent {
            name,
            state,
            note,
            remove,
        },
        StatusCommand::List { json } => AdminCommand::StatusList { json },
        StatusCommand::Import { file, year, json } => {
            let meta = std::fs::metadata(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            if meta.len() > status::IMPORT_BYTES_MAX as u64 {
                return Err(format!(
                    "{} is larger than {} bytes",
                    file.display(),
                    status::IMPORT_BYTES_MAX
                ));
            }
            let log = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            AdminCommand::StatusImport { log, year, json }
        }
        StatusCommand::Token(TokenCommand::Add { name }) => AdminCommand::TokenAdd { name },
        StatusCommand::Token(TokenCommand::List) => AdminCommand::TokenList,
        StatusCommand::Token(TokenCommand::Revoke { name }) => AdminCommand::TokenRevoke { name },
        StatusCommand::Subscriber(SubscriberCommand::List { json }) => {
            AdminCommand::SubscriberList { json }
        }
        StatusCommand::Subscriber(SubscriberCommand::Add { email, sms }) => {
            AdminCommand::SubscriberAdd { email, sms }
        }
        StatusCommand::Subscriber(SubscriberCommand::Remove { id }) => {
            AdminCommand::SubscriberRemove { id }
        }
    })
}

/// An SMS subscriber's number normalised to E.164 like `sms send` does it;
/// refused without `[sms]`, which nothing would send their notices through.
fn subscriber_number(
    config: &Config,
    path: &Option<PathBuf>,
    command: AdminCommand,
) -> Result<AdminCommand, String> {
    let AdminCommand::SubscriberAdd {
        email,
        sms: Some(number),
    } = command
    else {
        return Ok(command);
    };
    let Some(settings) = &config.sms else {
        let file = path
            .as_ref()
            .map_or("the config".to_string(), |p| p.display().to_string());
        return Err(format!(
            "{file} has no [sms] section: nothing would send this subscriber's notices"
        ));
    };
    let default_country = Some(settings.default_country.as_str()).filter(|c| !c.is_empty());
    let number =
        sms::normalize_e164(&number, default_country).map_err(|e| format!("{number:?}: {e}"))?;
    Ok(AdminCommand::SubscriberAdd {
        email,
        sms: Some(number.as_str().to_string()),
    })
}

/// Checks an SMS the way the sender will see it, before it is queued: the
/// number normalised to E.164, the text within `[sms] segments_max`.
fn sms_send(config: &Config, path: &Option<PathBuf>, number: &str) -> Result<AdminCommand, String> {
    let Some(settings) = &config.sms else {
        let file = path
            .as_ref()
            .map_or("the config".to_string(), |p| p.display().to_string());
        return Err(format!(
            "{file} has no [sms] section: nothing would send this message"
        ));
    };
    let default_country = Some(settings.default_country.as_str()).filter(|c| !c.is_empty());
    let to =
        sms::normalize_e164(number, default_country).map_err(|e| format!("{number:?}: {e}"))?;
    let mut raw = Vec::new();
    std::io::stdin()
        .take(store::SMS_TEXT_BYTES_MAX as u64 + 3)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot read the text from stdin: {e}"))?;
    // Too long first: the read stopped just past the bound, possibly inside a character.
    if raw.len() > store::SMS_TEXT_BYTES_MAX + 2 {
        return Err(format!(
            "the text is longer than {} bytes",
            store::SMS_TEXT_BYTES_MAX
        ));
    }
    let mut text =
        String::from_utf8(raw).map_err(|_| "the text on stdin is not UTF-8".to_string())?;
    // One line end from `echo` or a heredoc is not part of the message.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.len() > store::SMS_TEXT_BYTES_MAX {
        return Err(format!(
            "the text is longer than {} bytes",
            store::SMS_TEXT_BYTES_MAX
        ));
    }
    let options = sms::Options {
        segments_max: settings.segments_max,
        septet_layout: match settings.seven_bit {
            config::SevenBit::Unpacked => sms::SeptetLayout::Unpacked,
            config::SevenBit::Packed => sms::SeptetLayout::Packed,
        },
    };
    let encoded = sms::encode(&text, 0, &options).map_err(|e| e.to_string())?;
    let segments = encoded.segments.len();
    let coding = match encoded.coding {
        sms::Coding::Gsm7 => "GSM-7",
        sms::Coding::Ucs2 => "UCS-2",
    };
    Ok(AdminCommand::SmsSend {
        to: to.as_str().to_string(),
        text,
        receipt: settings.request_receipts,
        summary: format!(
            "{segments} segment{}, {coding}",
            if segments == 1 { "" } else { "s" }
        ),
    })
}

/// An alert from its command-line form, checked.
#[allow(clippy::too_many_arguments)]
fn sms_alert(
    config: &Config,
    number: &str,
    from: Vec<String>,
    to: Vec<String>,
    important_only: bool,
    quiet: Option<String>,
    zone: &str,
    per_hour_max: u32,
) -> Result<store::SmsAlert, String> {
    let default_country = config
        .sms
        .as_ref()
        .map(|s| s.default_country.as_str())
        .filter(|c| !c.is_empty());
    let number =
        sms::normalize_e164(number, default_country).map_err(|e| format!("{number:?}: {e}"))?;
    let minutes = |hhmm: &str| -> Option<u16> {
        let (h, m) = hhmm.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let quiet = match quiet {
        None => None,
        Some(range) => {
            let parsed = range
                .split_once('-')
                .and_then(|(a, b)| Some((minutes(a)?, minutes(b)?)));
            Some(parsed.ok_or_else(|| format!("--quiet {range:?}: expected HH:MM-HH:MM"))?)
        }
    };
    let zone_minutes = {
        let (sign, rest) = match zone.as_bytes().first() {
            Some(b'+') => (1, &zone[1..]),
            Some(b'-') => (-1, &zone[1..]),
            _ => return Err(format!("--zone {zone:?}: expected +HH:MM or -HH:MM")),
        };
        let m =
            minutes(rest).ok_or_else(|| format!("--zone {zone:?}: expected +HH:MM or -HH:MM"))?;
        sign * m as i16
    };
    let lower = |v: Vec<String>| v.into_iter().map(|p| p.trim().to_lowercase()).collect();
    Ok(store::SmsAlert {
        number: number.as_str().to_string(),
        from: lower(from),
        to: lower(to),
        important_only,
        quiet,
        zone_minutes,
        per_hour_max,
    })
}

fn finish(output: AdminOutput) -> ExitCode {
    print!("{}", output.stdout);
    eprint!("{}", output.stderr);
    let _ = std::io::stdout().flush();
    ExitCode::from(u8::try_from(output.exit).unwrap_or(1))
}

/// A password from stdin (first line) when it is not a terminal, else prompted twice.
fn read_password(user: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {user}: "))?;
        let second = rpassword::prompt_password("Again: ")?;
        if first != second {
            return Err(anyhow!("the passwords differ"));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        return Err(anyhow!("empty password on stdin"));
    }
    Ok(password)
}

fn serve(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            let _ = stop.send(true);
        });
        let data_dir = config.data_dir.clone();
        server::run(config, shutdown, |bound| {
            let mut out = std::io::stdout().lock();
            for (service, address) in bound {
                let _ = writeln!(out, "postern: listening {} {address}", service.name());
            }
            let _ = writeln!(
                out,
                "postern: ready (data in {}; add a user with: postern user add NAME)",
                data_dir.display()
            );
            let _ = out.flush();
        })
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
