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
    /// Inspect mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Deliver a message from stdin to USER's INBOX (exit 0 delivered, 67 unknown user, 75 try later).
    Deliver { user: String },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Store maintenance.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Reclaim the space of messages no mailbox references any more.
    Gc {
        /// Most bytes of surviving blobs to copy in this run.
        #[arg(long, default_value_t = u64::MAX)]
        bytes_max: u64,
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
    /// Change a user's password (read like `add`).
    Passwd { name: String },
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
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every key with its default and a comment.
    Default,
    /// Check a config file and print what it resolves to.
    Check,
}

fn main() -> ExitCode {
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
        Command::Alias(AliasCommand::Add { address, users }) => {
            AdminCommand::AliasAdd { address, users }
        }
        Command::Alias(AliasCommand::Del { address }) => AdminCommand::AliasDel { address },
        Command::Alias(AliasCommand::List) => AdminCommand::AliasList,
        Command::Mailbox(MailboxCommand::List { user }) => AdminCommand::MailboxList { user },
        Command::Store(StoreCommand::Gc { bytes_max }) => AdminCommand::Gc { bytes_max },
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
    let output = match admin::send(&config.data_dir, &command)? {
        Some(output) => output,
        None => {
            // No server: act on the store directly.
            let store = server::open_store(&config)?;
            let output = admin::execute(&store, command);
            store.shutdown();
            output
        }
    };
    Ok(finish(output))
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
