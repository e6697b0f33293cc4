//! Wiring: listeners, TLS, the admin socket and shutdown, around the IMAP and
//! LMTP sessions and the store. No protocol logic and no storage logic here.
//!
//! [`run`] takes the config and a shutdown signal as arguments, so tests bind
//! port 0 and stop the server cleanly; it reports the bound addresses through
//! a callback before it starts accepting.

pub mod admin;
pub mod config;
pub mod connections;
pub mod dns;
pub mod fair;
pub mod http;
pub mod http_subscribers;
pub mod inbound;
pub mod lmtp_target;
pub mod mail_out;
pub mod metrics;
pub mod open_files;
pub mod proxy;
pub mod repair;
pub mod replication;
pub mod sms;
pub mod spam_admin;
pub mod subscribers;
pub mod tls;

use anyhow::{Context, anyhow};
use config::Config;
use connections::{ConnectionLimits, OverCap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use store::{Store, StoreConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long shutdown waits for sessions to finish what they are doing.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How long an IMAPS client may take over its TLS handshake.
const TLS_HANDSHAKE_WAIT: Duration = Duration::from_secs(30);
/// ... and one over a cap, which is only told why it is turned away.
const REFUSAL_HANDSHAKE_WAIT: Duration = Duration::from_secs(5);
/// Connections over a cap being told why at once (each takes a few seconds
/// at most); beyond this they are closed without a word, so a flood of
/// connections costs bounded work and descriptors. Within the open-file
/// estimate's base allowance (`open_files.rs`).
const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// PROXY headers read at once (each bounded by `[proxy] header_timeout_ms`).
const PROXY_HEADERS_IN_FLIGHT_MAX: usize = 1024;

/// The kinds of listener, as named in the config and in the "listening" lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Imap,
    Imaps,
    Lmtp,
    Smtp,
    /// The status page and APIs (`http.rs`); served by axum, not the accept loops.
    Http,
    /// Where a replica accepts its primary (`replication`).
    Replication,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Lmtp => "lmtp",
            Service::Smtp => "smtp",
            Service::Http => "http",
            Service::Replication => "replication",
        }
    }
}

/// Raises the open-file limit toward what the configured bounds need (see
/// `open_files.rs`); says so in the log when the hard limit is too low.
fn raise_open_files(config: &Config) {
    // [imap] max_connections bounds the IMAP and IMAPS sessions together.
    let imap_sessions = if config.imap.is_some() || config.imaps.is_some() {
        config.imap.clone().unwrap_or_default().max_connections
    } else {
        0
    };
    let needed = open_files::needed(
        config.store.open_indexes_max.max(16) + config.store.reader_connections_max,
        imap_sessions,
        config.lmtp.as_ref().map_or(0, |l| l.max_connections)
            + config.smtp.as_ref().map_or(0, |s| s.max_connections),
    );
    match open_files::raise(needed) {
        Ok(limits) if limits.short() => tracing::warn!(
            event = "open_files_short",
            soft = limits.after,
            hard = ?limits.hard,
            needed,
            "the open-file limit is below what [store] open_indexes_max and the [imap]/[lmtp] max_connections need; near those bounds sessions will fail to open mailboxes: raise the hard limit (systemd: LimitNOFILE=) or lower those keys"
        ),
        Ok(limits) => tracing::info!(
            event = "open_files",
            before = limits.before,
            soft = limits.after,
            needed,
            "open-file limit"
        ),
        Err(e) => {
            tracing::warn!(event = "open_files_failed", error = %e, "could not raise the open-file limit")
        }
    }
}

pub fn store_config(config: &Config) -> Result<StoreConfig, store::StoreError> {
    let mut store = StoreConfig::new(config.data_dir.clone());
    if config.store.backend == config::StoreBackend::Postgres {
        let shards = postgres_shards(config)?;
        let mut postgres = store::pg::PostgresConfig::new(shards[0].1.clone());
        if config.store.postgres.0.trim().is_empty() {
            postgres.shards = shards;
        }
        postgres.move_wait = std::time::Duration::from_millis(config.store.move_wait_ms);
        postgres.move_grace = std::time::Duration::from_secs(config.store.move_grace_secs);
        postgres.connect_timeout =
            std::time::Duration::from_millis(config.store.postgres_connect_timeout_ms);
        postgres.connections_max = config.store.postgres_connections_max;
        postgres.writers = config.store.postgres_writers;
        postgres.commit_timeout =
            std::time::Duration::from_millis(config.store.postgres_commit_timeout_ms);
        postgres.query_timeout =
            std::time::Duration::from_millis(config.store.postgres_query_timeout_ms);
        postgres.ca_file = config.store.postgres_ca_file.clone();
        store.postgres = Some(postgres);
    }
    store.journal_segment_bytes_max = config.store.journal_segment_bytes;
    store.pack_bytes_max = config.store.pack_bytes;
    store.batch_intents_max = config.store.batch_max.max(1);
    store.queue_requests_max = config.store.queue_max.max(1);
    store.user_connections_max = config.store.open_indexes_max.max(16);
    store.reader_connections_max = config.store.reader_connections_max;
    store.postmaster = config.postmaster.clone();
    store.credential_cache_ttl = std::time::Duration::from_secs(config.auth.credential_cache_secs);
    store.credential_cache_entries = config.auth.credential_cache_entries;
    store.default_quota = (
        Some(config.quota.storage.0).filter(|b| *b > 0),
        Some(config.quota.messages).filter(|m| *m > 0),
    );
    Ok(store)
}

/// Creates the data directory owner-only (it holds mail and credentials).
pub fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data_dir {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    prepare_data_dir(config)?;
    store::password::set_max_concurrent_hashes(config.auth.max_concurrent_hashes);
    Store::open(store_config(config)?).map_err(|e| {
        anyhow!(
            "cannot open the store in {}: {e}",
            config.data_dir.display()
        )
    })
}

struct Listener {
    service: Service,
    socket: TcpListener,
    /// The connection caps of the listener's service, shared by all its
    /// listeners (IMAP and IMAPS share one).
    limits: Arc<ConnectionLimits>,
}

/// A listening socket with our backlog (`listen_backlog`; tokio's `bind`
/// leaves the kernel queue at 128) and address reuse, as `bind` does.
fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

/// The PostgreSQL databases of `config`, by shard name, the directory's
/// first: `[store] postgres` alone is one shard, `main`.
pub fn postgres_shards(
    config: &Config,
) -> Result<Vec<(String, store::pg::Dsn)>, store::StoreError> {
    if config.store.shards.is_empty() {
        let dsn = store::pg::parse_dsn(&config.store.postgres.0)?;
        return Ok(vec![(store::pg::shards::SINGLE.to_string(), dsn)]);
    }
    config
        .store
        .shards
        .iter()
        .map(|shard| Ok((shard.name.clone(), store::pg::parse_dsn(&shard.postgres.0)?)))
        .collect()
}

/// Connects to one PostgreSQL database of `config`.
pub async fn postgres_connect(
    config: &Config,
    dsn: &store::pg::Dsn,
) -> Result<store::pg::Client, store::StoreError> {
    let tls = store::pg::tls(config.store.postgres_ca_file.as_deref())?;
    store::pg::connect(
        dsn,
        std::time::Duration::from_millis(config.store.postgres_connect_timeout_ms),
        &tls,
    )
    .await
}

/// `postern store migrate`: brings every shard's schema to this binary's
/// version, the directory's first. Stops at the first shard that fails
/// (running it again goes on from there: each migration applies once).
pub async fn postgres_migrate(
    config: &Config,
    dry_run: bool,
) -> Result<Vec<(String, store::pg::migrate::Report)>, store::StoreError> {
    let mut reports = Vec::new();
    for (name, dsn) in postgres_shards(config)? {
        let mut client = postgres_connect(config, &dsn).await?;
        let report = store::pg::migrate::migrate(&mut client, dry_run)
            .await
            .map_err(|e| store::StoreError::new(e.kind, format!("shard {name}: {e}")))?;
        reports.push((name, report));
    }
    Ok(reports)
}

/// Runs the server until `shutdown` becomes true. `ready` gets every bound
/// address before the first connection is accepted.
pub async fn run(
    config: Config,
    mut shutdown: watch::Receiver<bool>,
    ready: impl FnOnce(&[(Service, SocketAddr)]),
) -> anyhow::Result<()> {
    if config.store.backend == config::StoreBackend::Postgres {
        // Checked first, so an operator learns what the database needs
        // (a migration, a newer binary) before anything else.
        for (shard, dsn) in postgres_shards(&config)? {
            let client = postgres_connect(&config, &dsn).await?;
            let version = store::pg::migrate::check(&client)
                .await
                .and_then(|verdict| verdict.servable())
                .map_err(|e| store::StoreError::new(e.kind, format!("shard {shard}: {e}")))?;
            tracing::info!(
                event = "postgres_schema",
                shard,
                version,
                "the PostgreSQL schema is ready"
            );
        }
    }
    raise_open_files(&config);
    keep_spare_descriptor().await;
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config)).await??
    };
    let certificates = {
        let sources = if config.tls.certificates.is_empty() {
            vec![tls::ensure_self_signed(
                &config.data_dir.join("tls"),
                &config.hostname,
            )?]
        } else {
            config.tls.certificates.clone()
        };
        Arc::new(tls::CertificateStore::load(sources)?)
    };
    let acceptor = tls::acceptor(certificates.clone())?;

    let imap_section = config.imap.clone().unwrap_or_default();
    let lmtp_section = config.lmtp.clone().unwrap_or_default();
    let imap_limits = Arc::new(ConnectionLimits::new(
        imap_section.max_connections,
        imap_section.max_connections_per_ip,
        imap_section
            .max_connections_per_ip_exempt
            .iter()
            .map(|n| connections::Network::parse(n).map_err(|e| anyhow!("[imap] {e}")))
            .collect::<anyhow::Result<Vec<_>>>()?,
    ));
    let lmtp_limits = Arc::new(ConnectionLimits::new(
        lmtp_section.max_connections,
        lmtp_section.max_connections_per_ip,
        Vec::new(),
    ));
    let smtp_section = config.smtp.clone().unwrap_or_default();
    let smtp_limits = Arc::new(
        ConnectionLimits::new(
            smtp_section.max_connections,
            smtp_section.max_connections_per_ip,
            Vec::new(),
        )
        .with_network_cap(smtp_section.max_connections_per_net),
    );
    let mut listeners = Vec::new();
    let sections: [(Service, Option<&config::Listen>, &Arc<ConnectionLimits>); 4] = [
        (
            Service::Imap,
            config.imap.as_ref().map(|s| &s.listen),
            &imap_limits,
        ),
        (
            Service::Imaps,
            config.imaps.as_ref().map(|s| &s.listen),
            &imap_limits,
        ),
        (
            Service::Lmtp,
            config.lmtp.as_ref().map(|s| &s.listen),
            &lmtp_limits,
        ),
        (
            Service::Smtp,
            config.smtp.as_ref().map(|s| &s.listen),
            &smtp_limits,
        ),
    ];
    for (service, listen, limits) in sections {
        let Some(listen) = listen else {
            continue;
        };
        for address in listen.addresses() {
            let socket = bind(address, config.listen_backlog).with_context(|| {
                format!("cannot bind [{}] listen = \"{address}\"", service.name())
            })?;
            listeners.push(Listener {
                service,
                socket,
                limits: Arc::clone(limits),
            });
        }
    }
    let mut http_sockets = Vec::new();
    if let Some(section) = &config.http {
        for address in section.listen.addresses() {
            let socket = bind(address, config.listen_backlog)
                .with_context(|| format!("cannot bind [http] listen = \"{address}\""))?;
            http_sockets.push(socket);
        }
    }
    let mut bound: Vec<(Service, SocketAddr)> = listeners
        .iter()
        .filter_map(|l| l.socket.local_addr().ok().map(|a| (l.service, a)))
        .collect();
    bound.extend(
        http_sockets
            .iter()
            .filter_map(|s| s.local_addr().ok().map(|a| (Service::Http, a))),
    );

    let imap_metrics = Arc::new(imap::ImapMetrics::default());
    let imap_context = Arc::new(imap::ImapContext {
        config: imap::ImapConfig {
            hostname: config.hostname.clone(),
            limits: imap_proto::framer::Limits {
                line_bytes_max: imap_section.max_line,
                literal_bytes_max: imap_section.max_literal,
            },
            autologout: Duration::from_secs(imap_section.autologout_secs.max(60)),
            login_timeout: Duration::from_secs(imap_section.login_timeout_secs),
            plaintext_auth: match config.auth.plaintext {
                config::PlaintextAuth::Never => imap::PlaintextAuth::Never,
                config::PlaintextAuth::Loopback => imap::PlaintextAuth::Loopback,
                config::PlaintextAuth::Always => imap::PlaintextAuth::Always,
            },
            metadata_value_bytes_max: imap_section.metadata_max_value_bytes,
            metadata_entries_max: imap_section.metadata_max_entries,
            context_updates_max: imap_section.context_updates_max,
            notify_responses_max: imap_section.notify_responses_max,
            acl_entries_max: imap_section.acl_max_entries,
            ..imap::ImapConfig::default()
        },
        store: store.clone(),
        tls: Some(acceptor.clone()),
        throttle: Arc::new(imap::LoginThrottle::new(imap::ThrottleConfig {
            failure_delay: Duration::from_millis(config.auth.failure_delay_ms),
            failures_free: config.auth.failures_free,
            window: Duration::from_secs(config.auth.failure_window_secs),
            delay_max: Duration::from_millis(config.auth.delay_max_ms),
            ..imap::ThrottleConfig::default()
        })),
        users: Arc::new(imap::UserLimits::new(imap::UserLimitsConfig {
            sessions_per_user_max: imap_section.max_connections_per_user,
            heavy_per_user_max: imap_section.heavy_commands_per_user,
            heavy_max: imap_section.heavy_commands_max,
            heavy_wait: Duration::from_millis(imap_section.heavy_command_wait_ms),
        })),
        metrics: Arc::clone(&imap_metrics),
    });
    let lmtp_config = Arc::new(delivery::LmtpConfig {
        hostname: config.hostname.clone(),
        message_bytes_max: lmtp_section.max_message_size,
        recipients_max: lmtp_section.max_recipients,
        over_quota_permanent: lmtp_section.over_quota == config::OverQuota::Permanent,
        idle_timeout: Duration::from_secs(lmtp_section.idle_timeout_secs.max(1)),
        ..delivery::LmtpConfig::default()
    });
    // Inbound SMTP is the LMTP session in its SMTP mode (crates/delivery).
    let smtp_config = Arc::new(delivery::LmtpConfig {
        protocol: delivery::Protocol::Smtp,
        local_domains: config.domains.local.clone(),
        greeting_delay: Duration::from_millis(smtp_section.greeting_delay_ms),
        errors_max: smtp_section.max_errors,
        hostname: config.hostname.clone(),
        message_bytes_max: smtp_section.max_message_size,
        recipients_max: smtp_section.max_recipients,
        line_bytes_max: smtp_section.max_line,
        over_quota_permanent: lmtp_section.over_quota == config::OverQuota::Permanent,
        idle_timeout: Duration::from_secs(smtp_section.idle_timeout_secs.max(1)),
    });
    let delivery_metrics = Arc::new(metrics::DeliveryMetrics::default());
    let target = Arc::new(lmtp_target::StoreTarget {
        store: store.clone(),
        sms_alerts: config.sms.is_some(),
        metrics: Arc::clone(&delivery_metrics),
    });
    // Inbound SMTP's checks, limits and run detection, around the same target.
    let inbound = match &config.smtp {
        Some(smtp) => Some(Arc::new(
            inbound::Inbound::new(
                Arc::clone(&target),
                smtp,
                &config.spam,
                &config.dns,
                &config.hostname,
            )
            .map_err(|e| anyhow::anyhow!("[smtp]: {e}"))?,
        )),
        None => None,
    };
    let mut admin_context = admin::AdminContext::new(&config);
    admin_context.inbound = inbound.clone();
    if let Some(section) = &config.replication {
        let (replication, listening) = replication::Replication::start(
            store.clone(),
            section.clone(),
            config.data_dir.clone(),
            acceptor.clone(),
            shutdown.clone(),
        )
        .await?;
        if let Some(address) = listening {
            bound.push((Service::Replication, address));
        }
        admin_context.replication = Some(replication);
    }

    let admin_path = admin::socket_path(&config.data_dir);
    let admin_listener = admin::bind_socket(&admin_path)?;
    let admin_task = tokio::spawn(admin::serve_socket(
        store.clone(),
        admin_context.clone(),
        admin_listener,
        admin_path,
        shutdown.clone(),
    ));
    let reload_task = tokio::spawn(reload_on_sighup(certificates, shutdown.clone()));
    let repair_task = config.reconstruct.auto_repair.then(|| {
        tokio::spawn(repair::repair_in_background(
            store.clone(),
            config.reconstruct.max_read_mb_per_s * 1_000_000,
            shutdown.clone(),
        ))
    });
    let gc_task = tokio::spawn(collect_garbage_periodically(
        store.clone(),
        Duration::from_secs(config.store.gc_interval_secs),
        config.store.gc_bytes_per_run,
        shutdown.clone(),
    ));

    // SMS: the gateway sends from the store's outbox while `[sms]` is configured.
    let sms_task = config.sms.as_ref().map(|section| {
        tracing::info!(event = "sms_gateway_start", smsc = %section.smsc);
        tokio::spawn(sms_gateway::run(
            sms::gateway_config(section),
            Arc::new(sms::StoreOutbox::new(store.clone())),
            shutdown.clone(),
        ))
    });

    let mut http_tasks = Vec::new();
    if let (Some(section), Some(first)) = (&config.http, http_sockets.first()) {
        let public_url = if section.public_url.is_empty() {
            format!("http://{}", first.local_addr()?)
        } else {
            section.public_url.clone()
        };
        let site = status::Site::new(&section.site_name, &public_url)
            .map_err(|e| anyhow!("[http] public_url / site_name: {e}"))?
            .with_subscriptions(config.mail_out.is_some());
        // Status notices: email through [mail_out], SMS into the SMS outbox.
        if config.mail_out.is_some() || config.sms.is_some() {
            let sender = subscribers::NoticeSender {
                store: store.clone(),
                site: site.clone(),
                mail: config.mail_out.clone(),
                hostname: config.hostname.clone(),
            };
            http_tasks.push(tokio::spawn(sender.run(shutdown.clone())));
        }
        let policy = status::HealthPolicy {
            delivery_latency_p50_ms_max: section.delivery_degraded_ms,
            delivery_latency_usual_ms: section.delivery_usual_ms,
            grace_seconds: section.grace_secs.min(i64::MAX as u64) as i64,
            ..status::HealthPolicy::default()
        };
        let (imap_open, lmtp_open, smtp_open) = (
            Arc::clone(&imap_limits),
            Arc::clone(&lmtp_limits),
            Arc::clone(&smtp_limits),
        );
        let mut state = http::HttpState::new(
            store.clone(),
            site,
            policy,
            Arc::clone(&delivery_metrics),
            Arc::clone(&imap_metrics),
            Arc::new(move || http::OpenConnections {
                imap: imap_open.open(),
                lmtp: lmtp_open.open(),
                smtp: smtp_open.open(),
            }),
        );
        state.admin = admin_context.clone();
        state.subscriptions =
            config
                .mail_out
                .as_ref()
                .map(|mail| http_subscribers::Subscriptions {
                    mail: mail.clone(),
                    hostname: config.hostname.clone(),
                    limits: store::SubscribeLimits {
                        total_max: section.subscribers_max,
                        per_address_per_hour_max: section.subscribe_per_address_per_hour,
                        per_ip_per_hour_max: section.subscribe_per_ip_per_hour,
                    },
                });
        let state = Arc::new(state);
        http_tasks.push(tokio::spawn(http::measure_periodically(
            Arc::clone(&state),
            Duration::from_secs(section.health_interval_secs.max(1)),
            shutdown.clone(),
        )));
        for socket in http_sockets {
            let app = http::router(Arc::clone(&state));
            let mut stop = shutdown.clone();
            http_tasks.push(tokio::spawn(async move {
                // With the peer's address: subscribing is capped per client IP.
                let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
                let served = axum::serve(socket, app)
                    .with_graceful_shutdown(async move {
                        while !*stop.borrow() {
                            if stop.changed().await.is_err() {
                                break;
                            }
                        }
                    })
                    .await;
                if let Err(e) = served {
                    tracing::error!(event = "http_failed", error = %e);
                }
            }));
        }
    }

    ready(&bound);
    tracing::info!(event = "server_ready", listeners = bound.len(), data_dir = %config.data_dir.display());

    let services = Arc::new(Services {
        imap: imap_context,
        lmtp: lmtp_config,
        smtp: smtp_config,
        target,
        inbound,
        tls: acceptor,
        refusals: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT_MAX)),
        proxy: proxy_policy(&config.proxy)?,
        proxy_headers: Arc::new(Semaphore::new(PROXY_HEADERS_IN_FLIGHT_MAX)),
    });
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&services),
            shutdown.clone(),
        )));
    }

    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    tracing::info!(
        event = "shutdown_started",
        "no longer accepting; finishing sessions"
    );
    for task in accept_tasks {
        let _ = task.await;
    }
    // Every session holds a slot: getting them all back means all have ended.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        imap_limits.all_closed().await;
        lmtp_limits.all_closed().await;
        smtp_limits.all_closed().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            event = "shutdown_grace_expired",
            "some sessions did not finish in time"
        );
    }
    let _ = admin_task.await;
    if let Some(task) = sms_task {
        // The gateway waits for outstanding responses (bounded by its response
        // timeout), then unbinds.
        let _ = task.await;
    }
    reload_task.abort();
    gc_task.abort();
    for task in http_tasks {
        // Requests in flight finish (graceful shutdown); long polls cannot hold us.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    if let Some(task) = repair_task {
        task.abort();
    }
    tokio::task::spawn_blocking(move || store.shutdown()).await?;
    tracing::info!(event = "shutdown_complete");
    Ok(())
}

/// What the accept loops hand connections to.
struct Services {
    imap: Arc<imap::ImapContext>,
    lmtp: Arc<delivery::LmtpConfig>,
    smtp: Arc<delivery::LmtpConfig>,
    target: Arc<lmtp_target::StoreTarget>,
    /// Inbound SMTP's target (present when `[smtp]` is).
    inbound: Option<Arc<inbound::Inbound>>,
    tls: tokio_rustls::TlsAcceptor,
    /// Refusals being said now; see [`REFUSALS_IN_FLIGHT_MAX`].
    refusals: Arc<Semaphore>,
    /// Where PROXY protocol headers are expected (`[proxy]`), if anywhere.
    proxy: Option<proxy::ProxyPolicy>,
    /// Connections whose PROXY header is being read; beyond
    /// [`PROXY_HEADERS_IN_FLIGHT_MAX`] new ones from the balancers are closed.
    proxy_headers: Arc<Semaphore>,
}

impl Services {
    /// Runs one session to its end.
    async fn serve(
        &self,
        service: Service,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let imap = Arc::clone(&self.imap);
        match service {
            Service::Imap => imap::serve(imap::Conn::Plain(stream), peer, imap, shutdown).await,
            Service::Imaps => {
                match tokio::time::timeout(TLS_HANDSHAKE_WAIT, self.tls.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        imap::serve(imap::Conn::Tls(Box::new(tls)), peer, imap, shutdown).await
                    }
                    Ok(Err(e)) => tracing::info!(event = "tls_handshake_failed", %peer, error = %e),
                    Err(_) => tracing::info!(event = "tls_handshake_timeout", %peer),
                }
            }
            Service::Lmtp => {
                let (config, target) = (Arc::clone(&self.lmtp), Arc::clone(&self.target));
                if let Err(e) = delivery::serve(stream, peer, config, target, shutdown).await {
                    tracing::info!(event = "lmtp_io_error", %peer, error = %e);
                }
            }
            Service::Smtp => {
                let Some(target) = self.inbound.clone() else {
                    return;
                };
                let config = Arc::clone(&self.smtp);
                let tls = Some(self.tls.clone());
                let served = delivery::serve_with_tls(stream, peer, config, target, tls, shutdown);
                if let Err(e) = served.await {
                    tracing::info!(event = "smtp_io_error", %peer, error = %e);
                }
            }
            // Served by axum (`http.rs`) and by `replication`; their
            // listeners never reach here.
            Service::Http | Service::Replication => {}
        }
    }

    /// Tells a connection over a cap why it is turned away, in its protocol's
    /// words, and closes it.
    async fn refuse(&self, service: Service, stream: TcpStream, peer: SocketAddr, over: OverCap) {
        let text = refusal_text(over);
        match service {
            Service::Imap => imap::refuse(imap::Conn::Plain(stream), &text).await,
            Service::Imaps => {
                let handshake = self.tls.accept(stream);
                if let Ok(Ok(tls)) = tokio::time::timeout(REFUSAL_HANDSHAKE_WAIT, handshake).await {
                    imap::refuse(imap::Conn::Tls(Box::new(tls)), &text).await;
                }
            }
            Service::Lmtp => delivery::refuse(stream, peer, Arc::clone(&self.lmtp), &text).await,
            Service::Smtp => delivery::refuse(stream, peer, Arc::clone(&self.smtp), &text).await,
            Service::Http | Service::Replication => {}
        }
    }
}

/// What a client over a cap is told, naming the key an operator would change.
fn refusal_text(over: OverCap) -> String {
    match over {
        OverCap::Total { max } => format!(
            "Server busy: all {max} connection slots are in use (max_connections={max}), try again later"
        ),
        OverCap::PerAddress { max } => format!(
            "Too many connections from your address (max_connections_per_ip={max}), try again later"
        ),
        OverCap::PerNetwork { max } => format!(
            "Too many connections from your network (max_connections_per_net={max}), try again later"
        ),
    }
}

/// Accepts connections until shutdown: within the caps a session starts,
/// holding its slot until it ends; over a cap the client is told why and
/// disconnected (see `connections.rs`).
async fn accept_loop(
    listener: Listener,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = listener.service;
    loop {
        let accepted = tokio::select! {
            accepted = listener.socket.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(event = "accept_failed", service = service.name(), error = %e);
                if out_of_descriptors(&e) {
                    refuse_with_spare(&listener, &services).await;
                }
                // Back off briefly instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let expects_header = services
            .proxy
            .as_ref()
            .is_some_and(|p| p.expects_header(service, peer.ip()));
        if !expects_header {
            admit(
                &listener.limits,
                &services,
                service,
                stream,
                peer,
                &shutdown,
            );
            continue;
        }
        // From a load balancer: its header names the client, whose address the
        // caps and everything after them see. Read off the accept loop.
        let Ok(permit) = Arc::clone(&services.proxy_headers).try_acquire_owned() else {
            tracing::warn!(event = "proxy_headers_busy", service = service.name(), %peer, "too many PROXY headers being read; connection closed");
            continue;
        };
        let limits = Arc::clone(&listener.limits);
        let services = Arc::clone(&services);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut stream = stream;
            let wait = services
                .proxy
                .as_ref()
                .map_or(Duration::from_secs(5), |p| p.header_wait);
            let client = match proxy::read_header(&mut stream, wait).await {
                Ok(Some(client)) => client,
                Ok(None) => peer,
                Err(e) => {
                    tracing::info!(event = "proxy_header_refused", service = service.name(), %peer, error = %e);
                    return;
                }
            };
            drop(permit);
            tracing::debug!(event = "proxy_header", service = service.name(), balancer = %peer, client = %client);
            admit(&limits, &services, service, stream, client, &shutdown);
        });
    }
}

/// One descriptor held in reserve for the accept loops (`/dev/null`, opened
/// at start). Out of descriptors, the kernel keeps new connections in the
/// listen queue, where a mail client waits for the server's greeting for
/// good; with the spare given up for a moment, a loop accepts one of them,
/// tells it the server is out of resources, closes it and takes the spare
/// back.
static SPARE_DESCRIPTOR: tokio::sync::Mutex<Option<std::fs::File>> =
    tokio::sync::Mutex::const_new(None);

async fn keep_spare_descriptor() {
    *SPARE_DESCRIPTOR.lock().await = std::fs::File::open("/dev/null").ok();
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

async fn refuse_with_spare(listener: &Listener, services: &Services) {
    let mut spare = SPARE_DESCRIPTOR.lock().await;
    if spare.take().is_none() {
        *spare = std::fs::File::open("/dev/null").ok();
        return;
    }
    let accepted = tokio::time::timeout(Duration::from_millis(50), listener.socket.accept()).await;
    if let Ok(Ok((stream, peer))) = accepted {
        let line = match listener.service {
            Service::Imap => {
                "* BYE [UNAVAILABLE] Server out of resources (file descriptors); try again later\r\n"
                    .to_string()
            }
            Service::Lmtp | Service::Smtp => format!(
                "421 4.3.2 {} Server out of resources (file descriptors); try again later\r\n",
                services.lmtp.hostname
            ),
            // IMAPS before its handshake, and the rest: closed.
            _ => String::new(),
        };
        // Best effort, never waiting: the socket buffer takes one line.
        let _ = stream.try_write(line.as_bytes());
        drop(stream);
        tracing::warn!(event = "refused_out_of_descriptors", service = listener.service.name(), %peer, "out of file descriptors: a client was told so and closed; raise the open-file limit or lower max_connections");
    }
    *spare = std::fs::File::open("/dev/null").ok();
}

/// Builds the PROXY policy from `[proxy]` (`None` when `from` is empty).
fn proxy_policy(section: &config::ProxySection) -> anyhow::Result<Option<proxy::ProxyPolicy>> {
    if section.from.is_empty() {
        return Ok(None);
    }
    let from = section
        .from
        .iter()
        .map(|n| connections::Network::parse(n).map_err(|e| anyhow!("[proxy] from: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let services = section
        .listeners
        .iter()
        .filter_map(|name| match name.as_str() {
            "imap" => Some(Service::Imap),
            "imaps" => Some(Service::Imaps),
            "lmtp" => Some(Service::Lmtp),
            "smtp" => Some(Service::Smtp),
            _ => None,
        })
        .collect();
    Ok(Some(proxy::ProxyPolicy {
        from,
        services,
        header_wait: Duration::from_millis(section.header_timeout_ms.max(1)),
    }))
}

/// Admits a connection from `peer` (the client, after any PROXY header)
/// within its service's caps and serves it, or tells it why not.
fn admit(
    limits: &Arc<ConnectionLimits>,
    services: &Arc<Services>,
    service: Service,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: &watch::Receiver<bool>,
) {
    match limits.admit(peer.ip()) {
        Ok(slot) => {
            let services = Arc::clone(services);
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                services.serve(service, stream, peer, shutdown).await;
                // Also dropped if the session panics: the task's future owns it.
                drop(slot);
            });
        }
        Err(over) => {
            match limits.note_refusal() {
                Some(refused) => tracing::warn!(
                    event = "connections_refused",
                    service = service.name(),
                    refused,
                    cap = ?over,
                    last_peer = %peer,
                    "connections over a cap were turned away (counted since the last warning)"
                ),
                None => {
                    tracing::debug!(event = "connection_refused", service = service.name(), cap = ?over, %peer)
                }
            }
            match Arc::clone(&services.refusals).try_acquire_owned() {
                Ok(permit) => {
                    let services = Arc::clone(services);
                    tokio::spawn(async move {
                        services.refuse(service, stream, peer, over).await;
                        drop(permit);
                    });
                }
                Err(_) => drop(stream),
            }
        }
    }
}

/// Runs garbage collection now and then. Each run is one bounded writer intent,
/// so it never holds up deliveries for long.
async fn collect_garbage_periodically(
    store: Store,
    every: Duration,
    bytes_max: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        // On PostgreSQL, one node of the cluster collects (an embedded
        // replica collects its own packs).
        if store.backend_name() == "postgres" {
            let store = store.clone();
            let leads = tokio::task::spawn_blocking(move || store.leads("gc")).await;
            if !matches!(leads, Ok(true)) {
                continue;
            }
        }
        match store
            .submit_one(store::Intent::CollectGarbage { bytes_max })
            .await
        {
            Ok(store::Outcome::Collected {
                blobs_removed,
                bytes_copied,
                packs_deleted,
            }) => {
                tracing::info!(
                    event = "gc_done",
                    blobs_removed,
                    bytes_copied,
                    packs_deleted
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(event = "gc_failed", error = %e),
        }
    }
}

async fn reload_on_sighup(
    certificates: Arc<tls::CertificateStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = hangup.recv() => match certificates.reload() {
                Ok(n) => tracing::info!(event = "tls_reloaded", certificates = n),
                Err(e) => tracing::error!(event = "tls_reload_failed", error = %e, "keeping the previous certificates"),
            },
            _ = shutdown.changed() => return,
        }
    }
}
