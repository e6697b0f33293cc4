//! The configuration file (TOML) and its defaults.
//!
//! Every key is documented in [`DEFAULT_CONFIG`], which `postern config default`
//! prints; a test checks that it parses to exactly [`Config::default`].
//! Unknown keys are errors (a typo must not silently fall back to a default).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data_dir: PathBuf,
    pub hostname: String,
    pub log_level: String,
    pub postmaster: Option<String>,
    /// Connections the kernel queues on each listener before we accept them.
    pub listen_backlog: u32,
    pub imap: Option<ImapSection>,
    pub imaps: Option<ImapsSection>,
    pub lmtp: Option<LmtpSection>,
    /// Inbound SMTP (an MX); none without the section when a file is given.
    pub smtp: Option<SmtpSection>,
    pub domains: DomainsSection,
    /// The resolver SMTP's sender checks use.
    pub dns: DnsSection,
    /// Inbound SMTP's spam-run defence.
    pub spam: SpamSection,
    pub tls: TlsSection,
    pub auth: AuthSection,
    pub store: StoreSection,
    /// SMS sending through an SMPP 3.4 SMSC; none without the section.
    pub sms: Option<SmsSection>,
    pub quota: QuotaSection,
    pub reconstruct: ReconstructSection,
    /// The status page, its feed and APIs, health and metrics; none without
    /// the section when a config file is given.
    pub http: Option<HttpSection>,
    /// Mail the server sends itself (status notices) through a relay; none
    /// without the section.
    pub mail_out: Option<MailOutSection>,
    /// A replica of this server (`replication.rs`); none without the section.
    pub replication: Option<ReplicationSection>,
    /// Load balancers that send the PROXY protocol (`proxy.rs`).
    pub proxy: ProxySection,
}

/// `[proxy]`: which peers open their connections with a PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Networks ("10.0.0.0/8", "2001:db8::/32", or one address) whose
    /// connections must start with a PROXY header (v1 or v2); empty: off.
    pub from: Vec<String>,
    /// The listeners where it applies: "imap", "imaps", "lmtp", "smtp".
    pub listeners: Vec<String>,
    /// A header not complete within this long closes the connection.
    pub header_timeout_ms: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            from: Vec::new(),
            listeners: vec!["imap".into(), "imaps".into(), "lmtp".into(), "smtp".into()],
            header_timeout_ms: 5000,
        }
    }
}

/// `[replication]`: this server and its replica (see `replication.rs`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSection {
    /// The role at the first start; a promotion or a rejoin writes the
    /// role (and epoch) into `replication/state.json`, which overrides it.
    pub role: ReplicationRole,
    /// Where a replica accepts its primary, "ip:port" ("" for none).
    pub listen: String,
    /// Where a primary finds its replica: the other server's `listen`.
    pub replica: String,
    /// Shared by both servers; each proves it over the TLS link.
    pub secret: Redacted,
    pub sync: ReplicationSync,
    /// Replication traffic (records and contents) at most this fast.
    pub max_mb_per_s: u64,
    /// With `sync = "before-ack"`: how long a change waits for the replica
    /// before it is answered with a temporary failure.
    pub ack_timeout_ms: u64,
    /// Records and bytes of records shipped in one batch at most.
    pub batch_records_max: usize,
    pub batch_bytes_max: usize,
    /// A primary with a replica configured takes no writes after start until
    /// it has spoken to the replica (which may know of a newer primary), or
    /// this long has passed.
    pub startup_wait_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicationRole {
    #[default]
    Primary,
    Replica,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplicationSync {
    /// A change is answered once it is durable here; the replica follows.
    #[default]
    Async,
    /// A change is answered once the replica has it durably too.
    BeforeAck,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            role: ReplicationRole::Primary,
            listen: String::new(),
            replica: String::new(),
            secret: Redacted::default(),
            sync: ReplicationSync::Async,
            max_mb_per_s: 100,
            ack_timeout_ms: 5000,
            batch_records_max: 4096,
            batch_bytes_max: 8 * 1024 * 1024,
            startup_wait_ms: 5000,
        }
    }
}

/// Outgoing mail (`[mail_out]`): how status notices and subscription
/// confirmations leave, through a relay, as any application sends mail.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailOutSection {
    /// The relay, "host:port" (plain SMTP; a local MTA is the usual setup).
    pub relay: String,
    /// The From address of every mail.
    pub from: String,
    /// One SMTP conversation (connect to QUIT) at most this long.
    pub timeout_secs: u64,
    /// Attempts of one notice before it is given up as failed.
    pub attempts_max: u32,
    /// The first retry of a notice waits this long; each later one twice as
    /// long, up to an hour.
    pub retry_first_secs: u64,
}

impl Default for MailOutSection {
    fn default() -> Self {
        MailOutSection {
            relay: "127.0.0.1:25".into(),
            from: String::new(),
            timeout_secs: 60,
            attempts_max: 20,
            retry_first_secs: 30,
        }
    }
}

/// The HTTP server (`[http]`): status page, Atom feed, JSON, admin API,
/// `/healthz`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub listen: Listen,
    /// Base of absolute links (feed, page); empty: `http://` and the first
    /// listen address.
    pub public_url: String,
    /// Name shown on the page and in the feed.
    pub site_name: String,
    /// Delivery latency (receipt to stored) above which "Incoming mail" is
    /// degraded, once it lasted `grace_secs`; milliseconds.
    pub delivery_degraded_ms: u64,
    /// What delivery usually takes, for the sentence on the page; milliseconds.
    pub delivery_usual_ms: u64,
    /// How long a figure must stay over its threshold before the page says so.
    pub grace_secs: u64,
    /// How often live health is measured, seconds (at least 1).
    pub health_interval_secs: u64,
    /// Most status-page subscribers (active, and pending with a live link).
    pub subscribers_max: u64,
    /// Subscriptions asked for through the form in one hour, per address and
    /// per client IP address.
    pub subscribe_per_address_per_hour: u64,
    pub subscribe_per_ip_per_hour: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: addr("127.0.0.1:8080"),
            public_url: String::new(),
            site_name: "Postern".into(),
            delivery_degraded_ms: 60_000,
            delivery_usual_ms: 5_000,
            grace_secs: 300,
            health_interval_secs: 10,
            subscribers_max: 10_000,
            subscribe_per_address_per_hour: 3,
            subscribe_per_ip_per_hour: 10,
        }
    }
}

/// Reconstruct (`postern reconstruct`) and the server's own repairs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconstructSection {
    /// Journal and blob bytes read per second at most, in MB (10^6 bytes);
    /// 0: unthrottled.
    pub max_read_mb_per_s: u64,
    /// Repair a mailbox found damaged while serving, in the background.
    pub auto_repair: bool,
}

impl Default for ReconstructSection {
    fn default() -> Self {
        ReconstructSection {
            max_read_mb_per_s: 20,
            auto_repair: true,
        }
    }
}

/// Quotas of users who have none of their own (`postern user quota`).
/// Inbound SMTP from the internet (`[smtp]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    pub listen: Listen,
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// Longest command line, CRLF included, bytes.
    pub max_line: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Per IPv4 /24 (IPv6 /64); 0: no cap.
    pub max_connections_per_net: usize,
    pub idle_timeout_secs: u64,
    /// Silence asked of a client before the greeting; talkers get 554.
    pub greeting_delay_ms: u64,
    /// Error replies per connection before 421 and the close.
    pub max_errors: usize,
    /// SPF, DKIM, DMARC and ARC on every message (needs DNS).
    pub check_auth: bool,
    /// The authserv-id of our Authentication-Results headers; default: hostname.
    pub authserv_id: Option<String>,
    /// A DMARC failure under `p=reject` gets 550 5.7.1.
    pub dmarc_reject: bool,
    /// Messages being checked and stored at once; more wait their turn,
    /// taken round-robin by client network.
    pub delivery_workers: usize,
}

/// `[dns]`: the resolver of SMTP's sender checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSection {
    /// "ip" or "ip:port"; empty: the system's resolv.conf.
    pub servers: Vec<String>,
    pub timeout_ms: u64,
    pub attempts: usize,
    /// Answers kept per record type (TXT, MX, A, AAAA, PTR).
    pub cache_entries_max: usize,
    /// How long past its TTL an answer is served while the resolver fails.
    pub stale_secs: u64,
    /// How long "no such record" is remembered.
    pub negative_ttl_secs: u64,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            servers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            cache_entries_max: 100_000,
            stale_secs: 86_400,
            negative_ttl_secs: 300,
        }
    }
}

/// One content rule of `[spam]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpamRule {
    pub name: String,
    /// Match in this header's value; without it, in the body text.
    #[serde(default)]
    pub header: Option<String>,
    /// Case-insensitive substring.
    pub contains: String,
    pub score: f64,
}

/// What later members of a detected run get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAction {
    /// 451 4.7.1: the sender must retry (spam software rarely does).
    Tempfail,
    /// Delivered to the junk mailbox.
    Junk,
}

/// `[spam]`: inbound SMTP's spam-run defence and content score.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamSection {
    pub enabled: bool,
    pub junk_score: f64,
    /// 0: never reject on score.
    pub reject_score: f64,
    pub junk_mailbox: String,
    pub run_window_secs: u64,
    pub run_min_messages: usize,
    pub run_min_sources: usize,
    pub run_max_distance: u32,
    pub run_action: RunAction,
    pub run_score: f64,
    /// Clusters of similar text the run detector keeps (about 800 bytes each).
    pub run_clusters_max: usize,
    pub ip_messages_per_sec: f64,
    pub ip_messages_burst: f64,
    pub net_messages_per_sec: f64,
    pub net_messages_burst: f64,
    pub sender_messages_per_sec: f64,
    pub sender_messages_burst: f64,
    pub domain_messages_per_sec: f64,
    pub domain_messages_burst: f64,
    pub ip_recipients_per_sec: f64,
    pub ip_recipients_burst: f64,
    /// Keys tracked per limiter (client addresses, networks, senders, domains).
    pub tracked_max: usize,
    pub rules: Vec<SpamRule>,
}

impl Default for SpamSection {
    fn default() -> Self {
        SpamSection {
            enabled: true,
            junk_score: 5.0,
            reject_score: 15.0,
            junk_mailbox: "Junk".into(),
            run_window_secs: 600,
            run_min_messages: 20,
            run_min_sources: 5,
            run_max_distance: 5,
            run_action: RunAction::Tempfail,
            run_score: 10.0,
            run_clusters_max: 100_000,
            ip_messages_per_sec: 50.0,
            ip_messages_burst: 500.0,
            net_messages_per_sec: 200.0,
            net_messages_burst: 2000.0,
            sender_messages_per_sec: 20.0,
            sender_messages_burst: 200.0,
            domain_messages_per_sec: 100.0,
            domain_messages_burst: 1000.0,
            ip_recipients_per_sec: 200.0,
            ip_recipients_burst: 2000.0,
            tracked_max: 100_000,
            rules: Vec::new(),
        }
    }
}

impl Default for SmtpSection {
    fn default() -> Self {
        SmtpSection {
            listen: addr("127.0.0.1:2525"),
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 100,
            max_line: 4096,
            max_connections: 1000,
            max_connections_per_ip: 20,
            max_connections_per_net: 100,
            idle_timeout_secs: 300,
            greeting_delay_ms: 300,
            max_errors: 10,
            check_auth: true,
            authserv_id: None,
            dmarc_reject: true,
            delivery_workers: 32,
        }
    }
}

/// The mail domains this server is the destination for (`[domains]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainsSection {
    /// SMTP accepts recipients in these domains only (no relaying).
    pub local: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaSection {
    /// Bytes of mail per user; 0 means no limit.
    pub storage: Size,
    /// Messages per user; 0 means no limit.
    pub messages: u64,
}

/// A size in bytes, written as a number or as "10G", "512M", "64K" (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Size(n)),
            Raw::Text(t) => parse_size(&t).map(Size).map_err(serde::de::Error::custom),
        }
    }
}

/// "10G", "512M", "64K", "1T" or plain bytes (case-insensitive, an optional
/// trailing "B" or "iB"); powers of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (digits, shift) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 10),
        Some('M') => (&t[..t.len() - 1], 20),
        Some('G') => (&t[..t.len() - 1], 30),
        Some('T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 10G, 512M or 1048576"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// One address or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Listen {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
}

impl Listen {
    pub fn addresses(&self) -> Vec<SocketAddr> {
        match self {
            Listen::One(a) => vec![*a],
            Listen::Many(list) => list.clone(),
        }
    }
}

fn addr(s: &str) -> Listen {
    Listen::One(s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapSection {
    pub listen: Listen,
    pub max_literal: u64,
    pub max_line: usize,
    pub autologout_secs: u64,
    pub login_timeout_secs: u64,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_ip_exempt: Vec<String>,
    pub max_connections_per_user: usize,
    pub heavy_commands_per_user: usize,
    pub heavy_commands_max: usize,
    pub heavy_command_wait_ms: u64,
    pub metadata_max_value_bytes: u64,
    pub metadata_max_entries: u64,
    pub context_updates_max: usize,
    pub notify_responses_max: usize,
    pub acl_max_entries: u64,
}

impl Default for ImapSection {
    fn default() -> Self {
        ImapSection {
            listen: addr("127.0.0.1:1143"),
            max_literal: 64 * 1024 * 1024,
            max_line: 64 * 1024,
            autologout_secs: 30 * 60,
            login_timeout_secs: 60,
            max_connections: 10_000,
            max_connections_per_ip: 100,
            max_connections_per_ip_exempt: Vec::new(),
            max_connections_per_user: 50,
            heavy_commands_per_user: 2,
            heavy_commands_max: 16,
            heavy_command_wait_ms: 15_000,
            metadata_max_value_bytes: 64 * 1024,
            metadata_max_entries: 1000,
            context_updates_max: 10,
            notify_responses_max: 1000,
            acl_max_entries: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImapsSection {
    pub listen: Listen,
}

impl Default for ImapsSection {
    fn default() -> Self {
        ImapsSection {
            listen: addr("127.0.0.1:1993"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmtpSection {
    pub listen: Listen,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub idle_timeout_secs: u64,
    pub over_quota: OverQuota,
}

/// What LMTP answers a recipient over quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverQuota {
    /// 452 4.2.2: the sending MTA keeps the message and tries again later.
    #[default]
    Temporary,
    /// 552 5.2.2: bounced at once.
    Permanent,
}

impl Default for LmtpSection {
    fn default() -> Self {
        LmtpSection {
            listen: addr("127.0.0.1:2424"),
            max_message_size: 64 * 1024 * 1024,
            max_recipients: 1000,
            max_connections: 1000,
            max_connections_per_ip: 200,
            idle_timeout_secs: 300,
            over_quota: OverQuota::Temporary,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub certificates: Vec<Certificate>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaintextAuth {
    Never,
    Loopback,
    Always,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub plaintext: PlaintextAuth,
    pub failure_delay_ms: u64,
    /// Password hashes (Argon2id, 19 MiB each) computed at once; 0: one per core.
    pub max_concurrent_hashes: usize,
    pub failures_free: u32,
    pub failure_window_secs: u64,
    pub delay_max_ms: u64,
    /// Seconds a verified login is remembered, so the same password again
    /// skips Argon2id (0: never; see store's `credential_cache`).
    pub credential_cache_secs: u64,
    /// Users remembered at most.
    pub credential_cache_entries: usize,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            plaintext: PlaintextAuth::Loopback,
            failure_delay_ms: 500,
            max_concurrent_hashes: 0,
            failures_free: 5,
            failure_window_secs: 600,
            delay_max_ms: 15_000,
            credential_cache_secs: 300,
            credential_cache_entries: 100_000,
        }
    }
}

/// Where mail is kept: `[store] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// Journal, packs and SQLite indexes in `data_dir`: no other service.
    #[default]
    Embedded,
    /// PostgreSQL at `[store] postgres`, or the databases of `[[store.shards]]`.
    Postgres,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub backend: StoreBackend,
    /// Connection string of the PostgreSQL backend (it may hold a password:
    /// never logged or printed).
    pub postgres: Redacted,
    pub postgres_connect_timeout_ms: u64,
    /// Most connections to PostgreSQL this node opens.
    pub postgres_connections_max: usize,
    /// Writer threads, each with one PostgreSQL transaction open at a time.
    pub postgres_writers: usize,
    /// Longest wait for PostgreSQL to confirm a commit.
    pub postgres_commit_timeout_ms: u64,
    /// Longest wait for PostgreSQL to answer a read or get through a batch.
    pub postgres_query_timeout_ms: u64,
    /// The CA of PostgreSQL's certificate (PEM); empty: the web's roots.
    pub postgres_ca_file: Option<PathBuf>,
    /// Users spread over several PostgreSQL databases (instead of
    /// `postgres`); the first also holds the directory.
    pub shards: Vec<ShardSection>,
    /// How long a change waits out a user move's switch-over.
    pub move_wait_ms: u64,
    /// How long a moved user's rows stay on the shard they left.
    pub move_grace_secs: u64,
    pub journal_segment_bytes: u64,
    pub pack_bytes: u64,
    pub batch_max: usize,
    pub queue_max: usize,
    pub open_indexes_max: usize,
    /// IMAP sessions' index connections kept open between their commands.
    pub reader_connections_max: usize,
    pub gc_interval_secs: u64,
    pub gc_bytes_per_run: u64,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            backend: StoreBackend::Embedded,
            postgres: Redacted::default(),
            postgres_connect_timeout_ms: 5000,
            postgres_connections_max: 32,
            postgres_writers: 4,
            postgres_commit_timeout_ms: 10_000,
            postgres_query_timeout_ms: 30_000,
            postgres_ca_file: None,
            shards: Vec::new(),
            move_wait_ms: 5000,
            move_grace_secs: 60,
            journal_segment_bytes: 64 * 1024 * 1024,
            pack_bytes: 256 * 1024 * 1024,
            batch_max: 4096,
            queue_max: 16_384,
            open_indexes_max: 2048,
            reader_connections_max: 256,
            gc_interval_secs: 3600,
            gc_bytes_per_run: 64 * 1024 * 1024,
        }
    }
}

/// A string kept out of `Debug` output (`config check` prints the config).
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

/// One `[[store.shards]]` entry: a PostgreSQL database of users.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardSection {
    /// Never renamed: the directory names each user's shard by it.
    pub name: String,
    pub postgres: Redacted,
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

/// How GSM 7-bit text goes into `short_message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SevenBit {
    /// One septet per octet: the usual SMPP convention; the SMSC packs.
    #[default]
    Unpacked,
    Packed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsBind {
    #[default]
    Transmitter,
    /// Also receives delivery receipts on the same connection.
    Transceiver,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsSection {
    pub smsc: String,
    pub system_id: String,
    pub password: Redacted,
    pub source: String,
    pub seven_bit: SevenBit,
    pub tls: bool,
    pub bind: SmsBind,
    pub window_max: usize,
    pub rate_per_second: u32,
    pub enquire_link_secs: u64,
    pub segments_max: u8,
    pub default_country: String,
    pub request_receipts: bool,
    pub national_tables: bool,
}

impl Default for SmsSection {
    fn default() -> Self {
        SmsSection {
            smsc: "127.0.0.1:2775".into(),
            system_id: String::new(),
            password: Redacted::default(),
            source: "Postern".into(),
            seven_bit: SevenBit::Unpacked,
            tls: false,
            bind: SmsBind::Transmitter,
            window_max: 10,
            rate_per_second: 50,
            enquire_link_secs: 30,
            segments_max: 4,
            default_country: String::new(),
            request_receipts: false,
            national_tables: false,
        }
    }
}

impl Default for Config {
    /// Without a config file every listener runs on its default address.
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("postern-data"),
            hostname: "localhost".into(),
            log_level: "info".into(),
            postmaster: None,
            listen_backlog: 4096,
            imap: Some(ImapSection::default()),
            imaps: Some(ImapsSection::default()),
            lmtp: Some(LmtpSection::default()),
            smtp: Some(SmtpSection::default()),
            domains: DomainsSection::default(),
            dns: DnsSection::default(),
            spam: SpamSection::default(),
            tls: TlsSection::default(),
            auth: AuthSection::default(),
            store: StoreSection::default(),
            sms: None,
            quota: QuotaSection::default(),
            reconstruct: ReconstructSection::default(),
            http: Some(HttpSection::default()),
            mail_out: None,
            replication: None,
            proxy: ProxySection::default(),
        }
    }
}

/// What `postern config default` prints: every key, its default, what it does.
pub const DEFAULT_CONFIG: &str = r#"# Postern configuration. Every key is shown with its default value.
# With a config file, only the listeners whose section is present run.

# Where mail, indexes, the journal, the admin socket and generated
# certificates live. Relative paths are relative to the working directory.
data_dir = "postern-data"
# Name used in greetings and trace headers.
hostname = "localhost"
# error, warn, info, debug or trace; RUST_LOG overrides it.
log_level = "info"
# User that postmaster@<any domain> reaches (optional).
# postmaster = "alice"
# Connections the kernel holds on each listener until the server accepts
# them (capped by net.core.somaxconn). When this queue overflows, Linux
# answers with SYN cookies and drops the client's final handshake packet;
# an IMAP, LMTP or SMTP client then waits for a greeting the server never
# learns it owes (the server speaks first). 128, a common default, lost
# connections here when 1,000 clients connected at once.
listen_backlog = 4096

[imap]
# IMAP with STARTTLS. One "ip:port" or a list of them.
listen = "127.0.0.1:1143"
# Largest literal (and so message) a client may send, in bytes.
max_literal = 67108864
# Longest command, literals excluded, in bytes.
max_line = 65536
# Seconds an authenticated session may stay silent.
autologout_secs = 1800
# Seconds a connection may take, in all, to log in; then BYE. A client that
# trickles bytes does not extend it.
login_timeout_secs = 60
# Connections in all, over [imap] and [imaps] together, and per client
# address (IPv6: per /64; 0: no cap). A connection over either gets
# "* BYE [UNAVAILABLE] <why>" and is closed. Addresses and networks
# ("10.0.0.0/8") in the exempt list, such as a webmail host or an IMAP proxy,
# have no per-address cap.
max_connections = 10000
max_connections_per_ip = 100
max_connections_per_ip_exempt = []
# Sessions one user may have logged in at once (0: no cap). One more LOGIN or
# AUTHENTICATE gets "NO [UNAVAILABLE]", as with Dovecot's
# mail_max_userip_connections, and the connection stays open.
max_connections_per_user = 50
# Heavy commands (SEARCH BODY/TEXT, SORT, THREAD, FETCH of the bodies of more
# than 16 messages or 16 MiB) running at once per user, and in all (0: no
# cap). One more waits up to heavy_command_wait_ms for a turn, then gets
# "NO [INUSE]".
heavy_commands_per_user = 2
heavy_commands_max = 16
heavy_command_wait_ms = 15000
# METADATA (RFC 5464) annotations: largest value in bytes (SETMETADATA over
# it gets "NO [METADATA MAXSIZE n]"), and most entries one user has over all
# their mailboxes, and the server has ("NO [METADATA TOOMANY]").
metadata_max_value_bytes = 65536
metadata_max_entries = 1000
# Live SEARCH / SORT results (RFC 5267 RETURN (UPDATE)) one session may keep;
# the session reports ADDTO / REMOVEFROM for each as its mailbox changes. One
# more gets an untagged "NO [NOUPDATE tag]" (0: UPDATE always refused).
context_updates_max = 10
# NOTIFY (RFC 5465): most notification responses (STATUS, LIST, FETCH of new
# messages) one session is sent at once. A change bigger than that gets
# "* OK [NOTIFICATIONOVERFLOW]" instead, and that session's NOTIFY is off.
notify_responses_max = 1000
# ACL (RFC 4314): most entries (identifiers) one mailbox's access control
# list holds; SETACL over it gets "NO [LIMIT]" (and `postern acl set` fails).
acl_max_entries = 100

[imaps]
# IMAP over implicit TLS.
listen = "127.0.0.1:1993"

[lmtp]
# LMTP from the local MTA. One "ip:port" or a list of them.
listen = "127.0.0.1:2424"
# Largest message accepted, in bytes.
max_message_size = 67108864
# Recipients per transaction.
max_recipients = 1000
# Connections in all, over every [lmtp] listener, and per client address
# (IPv6: per /64; 0: no cap). A connection over either gets "421 4.3.2 <why>"
# and is closed; the MTA keeps the mail and retries.
max_connections = 1000
max_connections_per_ip = 200
# Seconds a connection may stay silent before it is closed.
idle_timeout_secs = 300
# A recipient over quota: "temporary" (452 4.2.2, the MTA retries) or
# "permanent" (552 5.2.2, bounced at once).
over_quota = "temporary"

[smtp]
# Inbound SMTP from the internet (an MX; port 25 in production). One
# "ip:port" or a list of them. Offers STARTTLS with the [tls] certificates.
listen = "127.0.0.1:2525"
# Largest message accepted, in bytes: a larger SIZE= gets 552 at MAIL, a
# larger message 552 after its end (it is not kept in memory meanwhile).
max_message_size = 67108864
# Recipients per message; more get 452 4.5.3 (the sender sends them later).
max_recipients = 100
# Longest command line in bytes, CRLF included; longer ones get 500.
max_line = 4096
# Connections in all, over every [smtp] listener, per client address (IPv6:
# per /64) and per client network (IPv4 /24, IPv6 /64); 0: no cap. Over any:
# "421 4.3.2 <why>", closed.
max_connections = 1000
max_connections_per_ip = 20
max_connections_per_net = 100
# Seconds a connection may stay silent before it is closed.
idle_timeout_secs = 300
# Milliseconds of silence asked of a client before the greeting. A client
# that sends anything sooner (an "early talker", as spam software does) gets
# 554 and is disconnected. 0: greet at once.
greeting_delay_ms = 300
# Permanent error replies (unknown or malformed commands, bad sequence,
# unknown users, relaying attempts) one connection may get before 421 and the
# close. Temporary ones (452 too many recipients, 451) do not count.
max_errors = 10
# Check SPF, DKIM, DMARC and ARC of every message (DNS through [dns]) and
# write the results into an Authentication-Results header. Incoming
# Authentication-Results headers that claim our authserv-id, and every
# incoming X-Postern-Spam header, are removed (the one change SMTP intake
# makes to a message). A check DNS cannot answer, even from stale answers,
# gets 451 4.4.3 (the sender retries), never a bounce.
check_auth = true
# The authserv-id of those headers; default: hostname.
# authserv_id = "mx.example.com"
# A message failing DMARC whose From domain publishes p=reject gets 550 5.7.1.
dmarc_reject = true
# Messages being checked and stored at once. More wait, served round-robin
# per client network (/24, IPv6 /64), so one flooding source cannot delay
# the others.
delivery_workers = 32

[dns]
# Resolvers for the sender checks: "ip" or "ip:port" (port 53 by default).
# Empty: those of /etc/resolv.conf.
servers = []
# Milliseconds per query attempt, and attempts per query.
timeout_ms = 2000
attempts = 2
# Answers cached per record type (TXT, MX, A, AAAA, PTR), each for its TTL.
cache_entries_max = 100000
# While the resolvers fail, answers up to this many seconds past their TTL
# are used (RFC 8767), so a resolver outage is not felt for known senders.
stale_secs = 86400
# Seconds "no such name or record" is remembered (served stale too).
negative_ttl_secs = 300

[spam]
# Spam-run defence and content score for inbound SMTP (not LMTP).
enabled = true
# A message scoring at least junk_score goes to junk_mailbox (created when
# first needed), at least reject_score gets 550 5.7.1 (0: never). The score
# and each rule's part are in the X-Postern-Spam header.
junk_score = 5.0
reject_score = 15.0
junk_mailbox = "Junk"
# Run detection: near-identical bodies (a 64-bit MinHash within run_max_distance
# bits, at most 5) seen run_min_messages times within run_window_secs from
# at least run_min_sources client addresses are a run. Later members get
# run_action: "tempfail" (451 4.7.1) or "junk" (they score run_score).
run_window_secs = 600
run_min_messages = 20
run_min_sources = 5
run_max_distance = 5
run_action = "tempfail"
run_score = 10.0
# Clusters of similar text remembered (about 800 bytes each); when full, the
# one seen longest ago goes, ordinary clusters before runs.
run_clusters_max = 100000
# Token buckets (per second, burst); over one: 451 4.7.1 at MAIL FROM
# (messages) or RCPT TO (recipients). 0 per second: no limit. Per client
# address, per network (/24, IPv6 /64), per envelope sender and per sender
# domain.
ip_messages_per_sec = 50.0
ip_messages_burst = 500.0
net_messages_per_sec = 200.0
net_messages_burst = 2000.0
sender_messages_per_sec = 20.0
sender_messages_burst = 200.0
domain_messages_per_sec = 100.0
domain_messages_burst = 1000.0
ip_recipients_per_sec = 200.0
ip_recipients_burst = 2000.0
# Keys each limiter tracks at most (memory bound).
tracked_max = 100000
# Content rules, each adding its score when a header (or, without header,
# the body text) contains the text, case-insensitively:
# rules = [{ name = "pills", header = "Subject", contains = "cheap pills", score = 6.0 }]
rules = []

[domains]
# Mail domains delivered here. SMTP accepts recipients in these domains only
# (others get 550 5.7.1 relaying denied); an unknown user in them gets 550
# 5.1.1 at RCPT. Example: local = ["example.com", "example.org"]
local = []

[tls]
# Certificate chains and keys (PEM). With several, the one matching the
# client's SNI name is used, else the first. With none, serve writes a
# self-signed certificate into data_dir/tls/. SIGHUP reloads them.
certificates = []
# certificates = [{ cert = "/etc/postern/mail.pem", key = "/etc/postern/mail.key" }]

[auth]
# When passwords may be sent without TLS: "never", "loopback" or "always".
plaintext = "loopback"
# Delay before answering a failed login, in milliseconds.
failure_delay_ms = 500
# Password checks hashing at once (Argon2id holds 19 MiB each); more wait
# their turn, so a login storm costs time, not memory. 0: one per core.
max_concurrent_hashes = 0
# Failures (per client address or per user) within the window before
# further attempts are slowed down, doubling up to delay_max_ms.
failures_free = 5
failure_window_secs = 600
delay_max_ms = 15000
# Seconds a successful login is remembered (as a keyed hash of the password,
# in memory only), so the same password again skips the Argon2id check:
# webmails that log in per request and phones that reconnect often then
# cost a hash every few minutes, not every login. A wrong password is
# always checked in full. 0 turns it off: then whoever can read the
# server's memory cannot test guesses against it quickly.
credential_cache_secs = 300
# Users remembered at most; the oldest leave first.
credential_cache_entries = 100000

[store]
# Where mail is kept: "embedded" (journal, packs and SQLite indexes in
# data_dir; no other service needed) or "postgres" (accounts, mail and the
# server-wide state in PostgreSQL; any number of `serve` nodes on one
# database, or users spread over several ([[store.shards]]); run
# `postern store migrate` first. See docs/design/postgres-cluster.md and
# the README's "Running on PostgreSQL").
backend = "embedded"
# The PostgreSQL connection string, for backend = "postgres":
# "postgres://USER:PASSWORD@HOST:PORT/DB" or "host=... port=... user=...
# dbname=...". It may hold a password, so keep this file private; Postern
# never logs it. Its sslmode says whether TLS is used: disable (never),
# prefer (the default: when the server offers it), require (always). When
# TLS is used the server's certificate is always verified (unlike libpq).
postgres = ""
# The CA that signed PostgreSQL's certificate, a PEM file; empty: the web's
# usual roots (a server with a self-signed certificate is then refused).
# postgres_ca_file = "/etc/postern/postgres-ca.pem"
# Longest wait for PostgreSQL to accept a connection, in milliseconds.
postgres_connect_timeout_ms = 5000
# Instead of `postgres`, users spread over several PostgreSQL databases
# (shards), one entry each; the first also holds the directory (which user
# lives where) and the server-wide state. New users go to the shard with the
# fewest accounts (then the fewest stored bytes). Shards are never renamed;
# one is added by adding an entry and running `postern store migrate`.
# `postern user move NAME --to SHARD` moves a user while they stay in use.
# The pool, writer and timeout settings here hold per shard.
# [[store.shards]]
# name = "a"
# postgres = "postgres://postern:PASSWORD@db-a1,db-a2/postern?target_session_attrs=read-write"
# [[store.shards]]
# name = "b"
# postgres = "postgres://postern:PASSWORD@db-b1,db-b2/postern?target_session_attrs=read-write"
#
# During a user move's switch-over (well under a second), a change to that
# user waits at most this long, in milliseconds, then is answered as a
# temporary failure (the client or MTA retries).
move_wait_ms = 5000
# How long a moved user's rows stay on the shard they left, in seconds, so
# sessions still reading there notice the move; then `user move` deletes
# them. At least 10 (nodes trust a cached route for 5 s).
move_grace_secs = 60
# Most connections to PostgreSQL this node opens (readers take one per
# query, not per session; each writer holds one per transaction).
postgres_connections_max = 32
# Writer threads: PostgreSQL transactions this node commits at once. Users
# are locked one by one, so writers wait only for batches naming the same
# user.
postgres_writers = 4
# Longest wait for PostgreSQL to confirm a commit, in milliseconds. A commit
# waits for the synchronous standby, for ever if it is gone: past this, the
# change is answered as not made (temporary failure; the client retries).
postgres_commit_timeout_ms = 10000
# Longest wait for PostgreSQL to answer a read, or to get through a writer's
# batch, in milliseconds. A database host that freezes (its kernel still
# acknowledging every packet, so no TCP timeout fires) then costs a
# temporary failure (IMAP NO [UNAVAILABLE], LMTP 451) instead of holding
# sessions and deliveries for ever; the connection is closed and made anew.
# Longer than the slowest batch you expect (user locks wait up to 10 s).
postgres_query_timeout_ms = 30000
# Journal segment size before a new segment starts, in bytes.
journal_segment_bytes = 67108864
# Blob pack file size before a new pack starts, in bytes.
pack_bytes = 268435456
# Most changes committed together with one fsync.
batch_max = 4096
# Changes waiting for the writer before callers wait.
queue_max = 16384
# Per-user index files kept open by the writer (three descriptors each). At
# start, `serve` raises the soft open-file limit to what this and the
# max_connections keys need, as far as the hard limit allows, and logs
# `open_files_short` if the hard limit is lower.
open_indexes_max = 2048
# IMAP sessions borrow a read connection to their user's index while they
# answer a command and give it back when they wait for the client, so an
# idle session holds none. This many rest open between commands (three
# descriptors each, at most 4 per user); more are opened when needed.
reader_connections_max = 256
# Garbage collection of unreferenced message blobs: how often (0 = never,
# `postern store gc` runs it by hand) and how many bytes of surviving blobs
# one run may copy, so reclaiming space never floods the disk.
gc_interval_secs = 3600
gc_bytes_per_run = 67108864

[http]
# The status page (/status, /status/history, /status/feed.atom), its JSON
# (/api/status), the token-authenticated admin API (/api/admin/..., tokens
# from `postern status token add NAME`), /healthz and Prometheus /metrics.
listen = "127.0.0.1:8080"
# Base of absolute links; empty: http:// and the first listen address.
public_url = ""
# Name on the page and in the feed ("<name> status").
site_name = "Postern"
# Incoming mail shows as degraded when delivery (receipt to stored) takes
# longer than this for grace_secs; the usual time is quoted beside it.
delivery_degraded_ms = 60000
delivery_usual_ms = 5000
grace_secs = 300
# How often those figures are measured, in seconds.
health_interval_secs = 10
# Status notices by email (with [mail_out]): people subscribe with the form at
# /status/subscribe and confirm by a mailed link. At most this many
# subscribers, and this many subscriptions asked for in an hour for one
# address and from one client IP address.
subscribers_max = 10000
subscribe_per_address_per_hour = 3
subscribe_per_ip_per_hour = 10

[reconstruct]
# What `postern reconstruct` and the server's background repairs may read
# (journal and message bytes), in MB per second, so users do not feel them
# (0: no limit; for a stopped server in a hurry).
max_read_mb_per_s = 20
# A mailbox found damaged while serving (a failed checksum, a missing blob) is
# reconstructed in the background, under the same limit.
auto_repair = true

[quota]
# Limits for users without their own (`postern user quota NAME ...`): bytes
# of mail ("10G", "512M" or a number; 0: no limit) and messages (0: no limit).
storage = 0
messages = 0

# SMS through an SMPP 3.4 SMSC (new-mail alerts, status notices, `postern sms
# send`). Off without this section; uncomment it to send.
# [sms]
# The SMSC, "host:port".
# smsc = "127.0.0.1:2775"
# Credentials of the bind (SMPP 3.4 allows 15 and 8 characters).
# system_id = ""
# password = ""
# Sender: up to 11 letters and digits (alphanumeric sender), or up to 20 digits.
# source = "Postern"
# GSM 7-bit text one septet per octet ("unpacked", what most SMSCs expect) or
# packed eight septets into seven octets ("packed").
# seven_bit = "unpacked"
# TLS to the SMSC.
# tls = false
# "transmitter", or "transceiver" to receive delivery receipts.
# bind = "transmitter"
# Submits waiting for their response at once, and submits per second (0: no limit).
# window_max = 10
# rate_per_second = 50
# Keep-alive of an idle bind, in seconds.
# enquire_link_secs = 30
# Most segments of one SMS; a longer text is refused with a clear error.
# segments_max = 4
# Calling code for numbers written without + or 00, e.g. "41"; empty: refuse them.
# default_country = ""
# Ask the SMSC for delivery receipts.
# request_receipts = false
# National language shift tables (Turkish, Spanish, Portuguese): not supported;
# must stay false (many SMSCs and handsets mishandle them anyway).
# national_tables = false

# Mail the server sends itself: status-page notices and subscription
# confirmations, through a relay, in plain SMTP. Off without this section (the
# page then offers no subscription by email); uncomment it to send.
# [mail_out]
# The relay, "host:port": usually the local MTA.
# relay = "127.0.0.1:25"
# The From address of notices, e.g. "status@example.com" (required).
# from = ""
# Longest SMTP conversation, connect to QUIT, in seconds.
# timeout_secs = 60
# Attempts of one notice (temporary failures are retried with backoff, from
# retry_first_secs doubling to an hour) before it is recorded as failed.
# attempts_max = 20
# retry_first_secs = 30

[proxy]
# Behind a load balancer (HAProxy, nginx, a cloud balancer) that sends the
# PROXY protocol, version 1 or 2: connections from these networks must start
# with a PROXY header, and the client address it names is used for
# connection caps, spam defence, logs and trace headers. Anyone else reaching
# the listeners is served as usual. Empty: off.
from = []
# The listeners where headers are expected: "imap", "imaps", "lmtp", "smtp".
listeners = ["imap", "imaps", "lmtp", "smtp"]
# A header not complete within this long closes the connection.
header_timeout_ms = 5000

# A replica of this server: the primary streams every change (journal records
# and the message contents the replica lacks) over TLS; the replica applies
# them and serves IMAP read-only, answers deliveries with 451, and can be
# promoted (`postern replication promote`). Off without this section. Give
# both servers both addresses, so that they can swap roles after a failover.
# [replication]
# "primary" or "replica", at the first start (a promotion or a rejoin then
# records the role, with an epoch, in replication/state.json).
# role = "primary"
# Where this server accepts its primary while it is a replica ("ip:port").
# listen = ""
# The other server's listen address, where this server ships while primary.
# replica = ""
# Shared secret (at least 16 characters; both ends prove it over TLS).
# secret = ""
# "async": a change is answered once durable here (a primary lost with its
# disk loses what the replica had not received yet). "before-ack": answered
# once the replica has it durably too (each change waits a round trip).
# sync = "async"
# Replication traffic at most this fast, so a backlog never floods disk or net.
# max_mb_per_s = 100
# With before-ack: a change the replica has not confirmed in this long is
# answered with a temporary failure (it is kept here and shipped later).
# ack_timeout_ms = 5000
# At most this many records, and bytes of records, per shipped batch.
# batch_records_max = 4096
# batch_bytes_max = 8388608
# A primary takes no writes after start until it has spoken to its replica
# (which may have been promoted meanwhile), or this long has passed.
# startup_wait_ms = 5000
"#;

/// Reads a config file. Errors name the file, the line and the key.
pub fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read config file: {e}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses config text; an empty file means "no listeners".
pub fn parse(text: &str) -> Result<Config, String> {
    #[derive(Deserialize)]
    struct Presence {
        imap: Option<toml::Value>,
        imaps: Option<toml::Value>,
        lmtp: Option<toml::Value>,
        smtp: Option<toml::Value>,
        http: Option<toml::Value>,
    }
    let mut config: Config = toml::from_str(text).map_err(|e| describe(text, &e))?;
    let presence: Presence = toml::from_str(text).map_err(|e| describe(text, &e))?;
    // `default` filled the listener sections in; a file runs only the ones it names.
    if presence.imap.is_none() {
        config.imap = None;
    }
    if presence.imaps.is_none() {
        config.imaps = None;
    }
    if presence.lmtp.is_none() {
        config.lmtp = None;
    }
    if presence.smtp.is_none() {
        config.smtp = None;
    }
    if presence.http.is_none() {
        config.http = None;
    }
    validate(&config)?;
    Ok(config)
}

/// Turns a TOML/serde error into "line N: key `section.key`: what is wrong".
fn describe(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return error.message().to_string();
    };
    let start = span.start.min(text.len());
    let line_number = text[..start].matches('\n').count() + 1;
    let mut message = error.message().to_string();
    if message.contains("untagged enum Listen") {
        message = "expected \"ip:port\" or a list of them, like \"127.0.0.1:1143\"".into();
    }
    // serde names unknown keys itself; for a wrong value, name the key from the text.
    if !message.contains("unknown field")
        && let Some(key) = key_at(text, start)
    {
        return format!("line {line_number}: key `{key}`: {message}");
    }
    format!("line {line_number}: {message}")
}

/// The dotted key (`section.key`) whose value is at byte `position`.
fn key_at(text: &str, position: usize) -> Option<String> {
    let line_start = text[..position].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && l.ends_with(']'))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').to_string());
    Some(match section {
        Some(section) => format!("{section}.{key}"),
        None => key.to_string(),
    })
}

fn validate_sms(sms: &SmsSection) -> Result<(), String> {
    let (host, port) = sms
        .smsc
        .rsplit_once(':')
        .ok_or_else(|| format!("[sms] smsc {:?} must be \"host:port\"", sms.smsc))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("[sms] smsc {:?} must be \"host:port\"", sms.smsc));
    }
    // SMPP 3.4 C-Octet Strings: system_id 16 and password 9 octets with the NUL.
    if sms.system_id.is_empty() || sms.system_id.len() > 15 || !sms.system_id.is_ascii() {
        return Err("[sms] system_id must be 1 to 15 ASCII characters".into());
    }
    if sms.password.0.len() > 8 || !sms.password.0.is_ascii() {
        return Err("[sms] password must be at most 8 ASCII characters (SMPP 3.4)".into());
    }
    let source_ok = if sms.source.bytes().all(|b| b.is_ascii_digit()) {
        (1..=20).contains(&sms.source.len())
    } else {
        (1..=11).contains(&sms.source.len())
            && sms
                .source
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b' ')
    };
    if !source_ok {
        return Err("[sms] source must be up to 11 letters and digits, or up to 20 digits".into());
    }
    if sms.window_max == 0 || sms.window_max > 1000 {
        return Err("[sms] window_max must be 1 to 1000".into());
    }
    if sms.segments_max == 0 {
        return Err("[sms] segments_max must be 1 to 255".into());
    }
    if sms.enquire_link_secs == 0 {
        return Err("[sms] enquire_link_secs must be at least 1".into());
    }
    if !sms.default_country.is_empty()
        && (sms.default_country.len() > 3
            || !sms.default_country.bytes().all(|b| b.is_ascii_digit())
            || sms.default_country.starts_with('0'))
    {
        return Err("[sms] default_country must be a calling code such as \"41\"".into());
    }
    if sms.national_tables {
        return Err("[sms] national_tables = true is not supported by this version".into());
    }
    Ok(())
}

fn validate_mail_out(mail: &MailOutSection) -> Result<(), String> {
    let (host, port) = mail
        .relay
        .rsplit_once(':')
        .ok_or_else(|| format!("[mail_out] relay {:?} must be \"host:port\"", mail.relay))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "[mail_out] relay {:?} must be \"host:port\"",
            mail.relay
        ));
    }
    let at = mail.from.find('@').unwrap_or(0);
    if at == 0
        || at + 1 >= mail.from.len()
        || mail.from.len() > 254
        || mail
            .from
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return Err("[mail_out] from must be an address such as \"status@example.com\"".into());
    }
    if mail.timeout_secs == 0 || mail.attempts_max == 0 || mail.retry_first_secs == 0 {
        return Err(
            "[mail_out] timeout_secs, attempts_max and retry_first_secs must be at least 1".into(),
        );
    }
    Ok(())
}

fn validate_dns(dns: &DnsSection) -> Result<(), String> {
    for server in &dns.servers {
        crate::dns::parse_server(server).map_err(|e| format!("[dns] servers: {e}"))?;
    }
    if dns.timeout_ms == 0 || dns.attempts == 0 || dns.cache_entries_max == 0 {
        return Err("[dns] timeout_ms, attempts and cache_entries_max must be positive".into());
    }
    Ok(())
}

fn validate_spam(spam: &SpamSection) -> Result<(), String> {
    let numbers = [
        ("junk_score", spam.junk_score),
        ("reject_score", spam.reject_score),
        ("run_score", spam.run_score),
        ("ip_messages_per_sec", spam.ip_messages_per_sec),
        ("ip_messages_burst", spam.ip_messages_burst),
        ("net_messages_per_sec", spam.net_messages_per_sec),
        ("net_messages_burst", spam.net_messages_burst),
        ("sender_messages_per_sec", spam.sender_messages_per_sec),
        ("sender_messages_burst", spam.sender_messages_burst),
        ("domain_messages_per_sec", spam.domain_messages_per_sec),
        ("domain_messages_burst", spam.domain_messages_burst),
        ("ip_recipients_per_sec", spam.ip_recipients_per_sec),
        ("ip_recipients_burst", spam.ip_recipients_burst),
    ];
    if let Some((name, _)) = numbers.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
        return Err(format!("[spam] {name} must be a number of 0 or more"));
    }
    if spam.junk_mailbox.trim().is_empty() || spam.junk_mailbox.chars().any(char::is_control) {
        return Err("[spam] junk_mailbox must be a mailbox name".into());
    }
    if spam.run_max_distance > spam::runs::DISTANCE_MAX {
        return Err("[spam] run_max_distance is at most 5".into());
    }
    if spam.run_window_secs == 0 || spam.run_min_messages < 2 || spam.run_min_sources == 0 {
        return Err(
            "[spam] run_window_secs and run_min_sources must be positive, run_min_messages at least 2"
                .into(),
        );
    }
    if spam.tracked_max == 0 || spam.run_clusters_max == 0 {
        return Err("[spam] tracked_max and run_clusters_max must be positive".into());
    }
    for rule in &spam.rules {
        if rule.name.is_empty() || rule.contains.is_empty() || !rule.score.is_finite() {
            return Err(format!(
                "[spam] rules: rule {:?} needs a name, a non-empty contains and a score",
                rule.name
            ));
        }
    }
    Ok(())
}

fn validate_replication(r: &ReplicationSection) -> Result<(), String> {
    if r.secret.0.chars().count() < 16 {
        return Err("[replication] secret must be at least 16 characters".into());
    }
    for (key, value) in [("listen", &r.listen), ("replica", &r.replica)] {
        if !value.is_empty() && value.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "[replication] {key} {value:?} must be \"ip:port\", like \"127.0.0.1:7600\""
            ));
        }
    }
    if r.role == ReplicationRole::Replica && r.listen.is_empty() {
        return Err("[replication] a replica needs listen (where its primary connects)".into());
    }
    if r.max_mb_per_s == 0 || r.batch_records_max == 0 || r.batch_bytes_max < 4096 {
        return Err(
            "[replication] max_mb_per_s and batch_records_max must be at least 1, batch_bytes_max at least 4096"
                .into(),
        );
    }
    Ok(())
}

fn validate_proxy(proxy: &ProxySection) -> Result<(), String> {
    for network in &proxy.from {
        crate::connections::Network::parse(network).map_err(|e| format!("[proxy] from: {e}"))?;
    }
    for name in &proxy.listeners {
        if !["imap", "imaps", "lmtp", "smtp"].contains(&name.as_str()) {
            return Err(format!(
                "[proxy] listeners: {name:?} is not one of \"imap\", \"imaps\", \"lmtp\", \"smtp\""
            ));
        }
    }
    if proxy.header_timeout_ms == 0 {
        return Err("[proxy] header_timeout_ms must be at least 1".into());
    }
    Ok(())
}

/// `[[store.shards]]`: at least one, names short and unique, each DSN valid.
fn validate_shards(shards: &[ShardSection]) -> Result<(), String> {
    if shards.len() > 256 {
        return Err("[[store.shards]]: at most 256 shards".into());
    }
    let mut seen = std::collections::HashSet::new();
    for shard in shards {
        let name = shard.name.as_str();
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "[[store.shards]] name {name:?}: 1 to 32 of a-z, 0-9, - and _"
            ));
        }
        if !seen.insert(name) {
            return Err(format!("[[store.shards]] name {name:?} is listed twice"));
        }
        if shard.postgres.0.trim().is_empty() {
            return Err(format!(
                "[[store.shards]] {name:?} needs postgres = \"postgres://...\""
            ));
        }
        store::pg::parse_dsn(&shard.postgres.0)
            .map_err(|e| format!("[[store.shards]] {name:?}: {e}"))?;
    }
    Ok(())
}

fn validate(config: &Config) -> Result<(), String> {
    validate_proxy(&config.proxy)?;
    if !(1..=65535).contains(&config.listen_backlog) {
        return Err("listen_backlog must be 1 to 65535".into());
    }
    if config.store.backend == StoreBackend::Postgres {
        let single = !config.store.postgres.0.trim().is_empty();
        match (single, config.store.shards.is_empty()) {
            (false, true) => {
                return Err(
                    "[store] backend = \"postgres\" needs postgres = \"postgres://USER:PASSWORD@HOST:PORT/DB\" (or [[store.shards]] entries)"
                        .into(),
                );
            }
            (true, false) => {
                return Err(
                    "[store] postgres and [[store.shards]] are exclusive: with shards, each [[store.shards]] entry names its database (the first holds the directory)"
                        .into(),
                );
            }
            (true, true) => {
                store::pg::parse_dsn(&config.store.postgres.0).map_err(|e| e.to_string())?;
            }
            (false, false) => validate_shards(&config.store.shards)?,
        }
        if config.replication.is_some() {
            return Err(
                "[replication] is for the embedded store; with backend = \"postgres\" PostgreSQL's own streaming replication keeps the standby"
                    .into(),
            );
        }
    }
    if config.store.postgres_connect_timeout_ms == 0
        || config.store.postgres_connect_timeout_ms > 600_000
    {
        return Err("[store] postgres_connect_timeout_ms must be 1 to 600000".into());
    }
    if let Some(ca) = &config.store.postgres_ca_file
        && !ca.is_file()
    {
        return Err(format!(
            "[store] postgres_ca_file {} is not a readable file",
            ca.display()
        ));
    }
    if !(1000..=600_000).contains(&config.store.postgres_query_timeout_ms) {
        return Err("[store] postgres_query_timeout_ms must be 1000 to 600000".into());
    }
    if !(100..=600_000).contains(&config.store.postgres_commit_timeout_ms) {
        return Err("[store] postgres_commit_timeout_ms must be 100 to 600000".into());
    }
    if !(1..=64).contains(&config.store.postgres_writers) {
        return Err("[store] postgres_writers must be 1 to 64".into());
    }
    if config.store.postgres_connections_max <= config.store.postgres_writers
        || config.store.postgres_connections_max > 10_000
    {
        return Err(
            "[store] postgres_connections_max must be more than postgres_writers (readers need connections too) and at most 10000"
                .into(),
        );
    }
    if !(100..=600_000).contains(&config.store.move_wait_ms) {
        return Err("[store] move_wait_ms must be 100 to 600000".into());
    }
    if !(store::pg::shards::ROUTE_TTL_SECS * 2..=86_400).contains(&config.store.move_grace_secs) {
        return Err(format!(
            "[store] move_grace_secs must be {} to 86400 (longer than nodes trust their cached routes)",
            store::pg::shards::ROUTE_TTL_SECS * 2
        ));
    }
    if config.store.reader_connections_max > 100_000 {
        return Err("[store] reader_connections_max must be at most 100000".into());
    }
    if config.auth.credential_cache_secs > 86_400
        || config.auth.credential_cache_entries > 10_000_000
    {
        return Err(
            "[auth] credential_cache_secs must be at most 86400 (a day) and credential_cache_entries at most 10000000"
                .into(),
        );
    }
    if let Some(replication) = &config.replication {
        validate_replication(replication)?;
    }
    if let Some(mail) = &config.mail_out {
        validate_mail_out(mail)?;
    }
    validate_dns(&config.dns)?;
    validate_spam(&config.spam)?;
    if let Some(smtp) = &config.smtp
        && smtp.delivery_workers == 0
    {
        return Err("[smtp] delivery_workers must be at least 1".into());
    }
    if let Some(imap) = &config.imap
        && (imap.max_literal == 0 || imap.max_line < 1024)
    {
        return Err("[imap] max_literal must be positive and max_line at least 1024".into());
    }
    if let Some(imap) = &config.imap
        && imap.login_timeout_secs == 0
    {
        return Err("[imap] login_timeout_secs must be at least 1".into());
    }
    if let Some(imap) = &config.imap
        && imap.notify_responses_max == 0
    {
        // Every NOTIFY round would overflow: NOTIFY would be advertised and useless.
        return Err("[imap] notify_responses_max must be at least 1".into());
    }
    if let Some(imap) = &config.imap {
        for network in &imap.max_connections_per_ip_exempt {
            crate::connections::Network::parse(network)
                .map_err(|e| format!("[imap] max_connections_per_ip_exempt: {e}"))?;
        }
    }
    if let Some(sms) = &config.sms {
        validate_sms(sms)?;
    }
    if config.hostname.is_empty()
        || config
            .hostname
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("hostname must be a non-empty name without spaces".into());
    }
    if let Some(lmtp) = &config.lmtp
        && (lmtp.max_message_size == 0 || lmtp.max_recipients == 0)
    {
        return Err("[lmtp] max_message_size and max_recipients must be positive".into());
    }
    if let Some(bad) = config.domains.local.iter().find(|domain| {
        domain.is_empty()
            || domain
                .chars()
                .any(|c| c == '@' || c.is_whitespace() || c.is_control())
    }) {
        return Err(format!(
            "[domains] local: {bad:?} is not a domain name (write \"example.com\")"
        ));
    }
    if let Some(smtp) = &config.smtp
        && (smtp.max_message_size == 0 || smtp.max_recipients == 0 || smtp.max_line < 512)
    {
        return Err(
            "[smtp] max_message_size and max_recipients must be positive, max_line at least 512"
                .into(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_defaults_are_the_defaults() {
        let parsed = parse(DEFAULT_CONFIG).expect("default config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_commented_replication_section_is_its_defaults_and_is_checked() {
        let section = DEFAULT_CONFIG
            .split("# [replication]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the default config shows [replication]");
        let uncommented: String = section
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect::<String>()
            .replace("secret = \"\"", "secret = \"0123456789abcdef\"");
        let config = parse(&format!("[replication]\n{uncommented}")).expect("parses");
        assert_eq!(
            config.replication,
            Some(ReplicationSection {
                secret: Redacted("0123456789abcdef".into()),
                ..ReplicationSection::default()
            })
        );
        for (text, wanted) in [
            ("secret = \"short\"", "secret"),
            (
                "secret = \"0123456789abcdef\"\nrole = \"replica\"",
                "listen",
            ),
            (
                "secret = \"0123456789abcdef\"\nreplica = \"somewhere\"",
                "replica",
            ),
            (
                "secret = \"0123456789abcdef\"\nmax_mb_per_s = 0",
                "max_mb_per_s",
            ),
        ] {
            let error = parse(&format!("[replication]\n{text}")).expect_err(text);
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn the_commented_mail_out_section_is_its_defaults_and_is_checked() {
        // Uncommenting the printed section (with a From) gives the defaults.
        let section = DEFAULT_CONFIG
            .split("# [mail_out]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").next())
            .expect("the default config shows [mail_out]");
        let uncommented: String = section
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = "))
            .map(|l| format!("{}\n", &l[2..]))
            .collect::<String>()
            .replace("from = \"\"", "from = \"status@example.com\"");
        let config = parse(&format!("[mail_out]\n{uncommented}")).expect("parses");
        assert_eq!(
            config.mail_out,
            Some(MailOutSection {
                from: "status@example.com".into(),
                ..MailOutSection::default()
            })
        );
        for (text, wanted) in [
            (
                "[mail_out]\nfrom = \"s@example.com\"\nrelay = \"nohost\"\n",
                "relay",
            ),
            ("[mail_out]\n", "from"),
            ("[mail_out]\nfrom = \"<s@example.com>\"\n", "from"),
            (
                "[mail_out]\nfrom = \"s@example.com\"\nretry_first_secs = 0\n",
                "retry_first_secs",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let error = parse("data_dir = \"x\"\n[imap]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .unwrap_err();
        assert!(error.contains("line 4"), "{error}");
        assert!(error.contains("listen_port"), "{error}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let error = parse("[lmtp]\nmax_message_size = \"big\"\n").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("lmtp.max_message_size"), "{error}");
        let error = parse("hostname = \"h\"\n[imap]\nlisten = \"not an address\"\n").unwrap_err();
        assert!(
            error.contains("line 3") && error.contains("imap.listen") && error.contains("ip:port"),
            "{error}"
        );
    }

    #[test]
    fn only_present_listeners_run() {
        let config = parse("[lmtp]\n").expect("parses");
        assert!(config.imap.is_none() && config.imaps.is_none() && config.lmtp.is_some());
    }

    #[test]
    fn smtp_section_runs_only_when_present_and_is_checked() {
        let config = parse("[smtp]\n[domains]\nlocal = [\"example.com\"]\n").expect("parses");
        assert!(config.lmtp.is_none());
        assert_eq!(config.smtp.map(|s| s.greeting_delay_ms), Some(300));
        assert_eq!(config.domains.local, ["example.com"]);
        assert!(parse("[lmtp]\n").expect("parses").smtp.is_none());
        let error = parse("[smtp]\nmax_line = 100\n").unwrap_err();
        assert!(error.contains("max_line"), "{error}");
        let error = parse("[domains]\nlocal = [\"@example.com\"]\n").unwrap_err();
        assert!(error.contains("[domains] local"), "{error}");
    }

    #[test]
    fn zero_notify_responses_max_is_refused_by_name() {
        let error = parse("[imap]\nnotify_responses_max = 0\n").unwrap_err();
        assert!(error.contains("notify_responses_max"), "{error}");
        let config =
            parse("[imap]\nnotify_responses_max = 5\ncontext_updates_max = 0\n").expect("parses");
        let imap = config.imap.expect("section present");
        assert_eq!(
            (imap.notify_responses_max, imap.context_updates_max),
            (5, 0)
        );
    }

    #[test]
    fn zero_login_timeout_is_refused_by_name() {
        let error = parse("[imap]\nlogin_timeout_secs = 0\n").unwrap_err();
        assert!(error.contains("login_timeout_secs"), "{error}");
        let config = parse("[imap]\nlogin_timeout_secs = 5\n").expect("parses");
        assert_eq!(config.imap.map(|i| i.login_timeout_secs), Some(5));
    }

    #[test]
    fn sms_section_is_checked_and_its_password_never_printed() {
        let good =
            "[sms]\nsmsc = \"smsc.example:2775\"\nsystem_id = \"postern\"\npassword = \"s3cret\"\n";
        let config = parse(good).expect("parses");
        let sms = config.sms.expect("section present");
        assert_eq!(sms.segments_max, 4);
        assert!(!format!("{sms:?}").contains("s3cret"));
        for (bad, key) in [
            ("[sms]\nsystem_id = \"p\"\nsmsc = \"nohost\"\n", "smsc"),
            ("[sms]\nsmsc = \"h:1\"\n", "system_id"),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\npassword = \"toolongpw\"\n",
                "password",
            ),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\nsource = \"Far Too Long Name\"\n",
                "source",
            ),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\nsegments_max = 0\n",
                "segments_max",
            ),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\ndefault_country = \"+41\"\n",
                "default_country",
            ),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\nnational_tables = true\n",
                "national_tables",
            ),
            (
                "[sms]\nsmsc = \"h:1\"\nsystem_id = \"p\"\nseven_bit = \"squeezed\"\n",
                "seven_bit",
            ),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(key), "{bad:?}: {error}");
        }
    }

    #[test]
    fn sizes_and_quota() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("512mib"), Ok(512 << 20));
        assert_eq!(parse_size(" 64K "), Ok(64 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("99999999T").is_err());
        let config = parse("[quota]\nstorage = \"2G\"\nmessages = 5000\n").expect("parses");
        assert_eq!(
            (config.quota.storage, config.quota.messages),
            (Size(2 << 30), 5000)
        );
        let error = parse("[quota]\nstorage = \"lots\"\n").unwrap_err();
        assert!(
            error.contains("quota.storage") && error.contains("lots"),
            "{error}"
        );
        let config = parse("[lmtp]\nover_quota = \"permanent\"\n").expect("parses");
        assert_eq!(
            config.lmtp.map(|l| l.over_quota),
            Some(OverQuota::Permanent)
        );
    }

    #[test]
    fn connection_caps_parse_and_exempt_networks_are_checked() {
        let config = parse(
            "[imap]\nmax_connections_per_ip = 3\nmax_connections_per_user = 0\n\
             max_connections_per_ip_exempt = [\"10.0.0.0/8\", \"::1\"]\n\
             [lmtp]\nmax_connections_per_ip = 7\n",
        )
        .expect("parses");
        let imap = config.imap.expect("section present");
        assert_eq!(
            (imap.max_connections_per_ip, imap.max_connections_per_user),
            (3, 0)
        );
        assert_eq!(imap.max_connections_per_ip_exempt.len(), 2);
        assert_eq!(config.lmtp.map(|l| l.max_connections_per_ip), Some(7));
        let error =
            parse("[imap]\nmax_connections_per_ip_exempt = [\"10.0.0.0/40\"]\n").unwrap_err();
        assert!(
            error.contains("max_connections_per_ip_exempt") && error.contains("10.0.0.0/40"),
            "{error}"
        );
    }

    #[test]
    fn listen_accepts_a_list() {
        let config = parse("[imap]\nlisten = [\"127.0.0.1:1\", \"[::1]:2\"]\n").expect("parses");
        assert_eq!(config.imap.map(|i| i.listen.addresses().len()), Some(2));
    }
}
