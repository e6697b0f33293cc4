//! The HTTP server (`[http]`): the public status page, its history, feed and
//! JSON; the token-authenticated admin API; `/healthz` and `/metrics`.
//!
//! Routing, authentication and measuring live here; what a page, a feed or a
//! JSON document says is `crates/status`' (pure functions of their inputs),
//! and what is stored is the store's (journal records, like every change).
//! Store reads are SQLite and run on the blocking pool.

// Helpers return the response to send on failure (`Result<T, Response>`), as
// axum handlers do; a response is large, and boxing it would buy nothing here.
#![allow(clippy::result_large_err)]

use crate::metrics::{DeliveryMetrics, RECENT_WINDOW};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{ErrorKind, Intent, Outcome, Store, StoreError};

/// Largest admin API request body.
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Incidents the status page considers at most (open and recent).
const CURRENT_MAX: u64 = 500;
/// Incidents per history page.
const HISTORY_PER_PAGE: u64 = 20;

/// Open connections per listener kind, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenConnections {
    /// IMAP and IMAPS together.
    pub imap: usize,
    pub lmtp: usize,
    pub smtp: usize,
}

/// What the handlers share.
pub struct HttpState {
    pub store: Store,
    pub site: status::Site,
    pub policy: status::HealthPolicy,
    pub deliveries: Arc<DeliveryMetrics>,
    pub imap: Arc<imap::ImapMetrics>,
    /// Open connections per listener kind.
    pub connections: Arc<dyn Fn() -> OpenConnections + Send + Sync>,
    pub health: Mutex<(status::Health, status::HealthWatch)>,
    /// Login counters at the last health measurement (the rate is per interval).
    logins_seen: Mutex<(u64, u64)>,
    /// Subscribing by email, when `[mail_out]` is configured.
    pub subscriptions: Option<crate::http_subscribers::Subscriptions>,
    /// The admin commands' view: inbound SMTP's runs and block reloads.
    pub admin: crate::admin::AdminContext,
}

impl HttpState {
    pub fn new(
        store: Store,
        site: status::Site,
        policy: status::HealthPolicy,
        deliveries: Arc<DeliveryMetrics>,
        imap: Arc<imap::ImapMetrics>,
        connections: Arc<dyn Fn() -> OpenConnections + Send + Sync>,
    ) -> Self {
        HttpState {
            store,
            site,
            policy,
            deliveries,
            imap,
            connections,
            health: Mutex::new(Default::default()),
            logins_seen: Mutex::new((0, 0)),
            subscriptions: None,
            admin: crate::admin::AdminContext::default(),
        }
    }

    /// Measures live health once and feeds it to the watch.
    pub fn measure(&self, now: i64) {
        let latency = self.deliveries.recent_percentiles(RECENT_WINDOW);
        let (ok, failed) = (
            self.imap.logins_ok.load(Relaxed),
            self.imap.logins_failed.load(Relaxed),
        );
        let (ok_delta, failed_delta) = {
            let mut seen = self.logins_seen.lock().unwrap_or_else(|p| p.into_inner());
            let delta = (ok.saturating_sub(seen.0), failed.saturating_sub(seen.1));
            *seen = (ok, failed);
            delta
        };
        let attempts = ok_delta + failed_delta;
        let health = status::Health {
            delivery_latency_p50_ms: latency.map(|l| l.0),
            delivery_latency_p99_ms: latency.map(|l| l.1),
            delivery_backlog: Some(self.store.stats().waiting.load(Relaxed)),
            imap_login_success_ratio: (attempts > 0).then(|| ok_delta as f64 / attempts as f64),
            imap_login_attempts: Some(attempts),
            replication_lag_ms: None,
        };
        let mut guard = self.health.lock().unwrap_or_else(|p| p.into_inner());
        guard.1.observe(&health, &self.policy, now);
        guard.0 = health;
    }
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(status::STATUS_PATH, get(status_page))
        .route("/", get(|| async { redirect(status::STATUS_PATH) }))
        .route(status::HISTORY_PATH, get(history_page))
        .route("/status/incidents/{id}", get(incident_page))
        .route(status::FEED_PATH, get(feed))
        .route(status::JSON_PATH, get(status_json))
        .route(
            status::SUBSCRIBE_PATH,
            get(crate::http_subscribers::form).post(crate::http_subscribers::subscribe),
        )
        .route(status::CONFIRM_PATH, get(crate::http_subscribers::confirm))
        .route(
            status::UNSUBSCRIBE_PATH,
            get(crate::http_subscribers::unsubscribe_page)
                .post(crate::http_subscribers::unsubscribe),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/admin/incidents", post(admin_open).get(admin_list))
        .route("/api/admin/incidents/{id}/posts", post(admin_post))
        .route("/api/admin/posts/{id}", put(admin_edit))
        .route("/api/admin/components/{name}", put(admin_component))
        .route("/api/admin/spam/runs", get(admin_spam_runs))
        .route(
            "/api/admin/spam/blocks",
            get(admin_spam_blocks).post(admin_spam_block),
        )
        .route(
            "/api/admin/spam/blocks/{key}",
            axum::routing::delete(admin_spam_unblock),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page") })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// Measures health every `interval` until `shutdown`.
pub async fn measure_periodically(
    state: Arc<HttpState>,
    interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        state.measure(store::writer::now_seconds());
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn redirect(to: &'static str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

fn from_store(e: &StoreError) -> Response {
    let status = match e.kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Invalid | ErrorKind::AlreadyExists => StatusCode::BAD_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.message.clone())
}

pub(crate) fn html(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Runs a blocking store read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> store::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(from_store(&e)),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

/// Components as shown: those set by hand, plus the ones live health watches
/// (operational unless health or an incident says otherwise), and each
/// component named by an open incident.
fn views(
    state: &HttpState,
    stored: Vec<status::Component>,
    incidents: &[status::Incident],
    now: i64,
) -> Vec<status::ComponentView> {
    let mut components = stored;
    let mut wanted: Vec<String> = vec![
        state.policy.delivery_component.clone(),
        state.policy.imap_component.clone(),
    ];
    for incident in incidents {
        if !matches!(incident.phase(now), status::Phase::Closed(_)) {
            wanted.extend(incident.components.iter().cloned());
        }
    }
    for name in wanted {
        if !components.iter().any(|c| c.name == name) && components.len() < 64 {
            components.push(status::Component {
                name,
                state: status::ComponentState::Operational,
                set_by: status::SetBy::Manual,
                set_at: 0,
                note: None,
            });
        }
    }
    let breaches = {
        let guard = state.health.lock().unwrap_or_else(|p| p.into_inner());
        status::breaches(&guard.0, &guard.1, &state.policy, now)
    };
    status::derive_components(&components, incidents, &breaches, now)
}

async fn current(
    state: &Arc<HttpState>,
) -> Result<(i64, Vec<status::Incident>, Vec<status::ComponentView>), Response> {
    let now = store::writer::now_seconds();
    let store = state.store.clone();
    let since = now - status::RECENT_DAYS * 86_400;
    let (incidents, stored) = blocking(move || {
        Ok((
            store.status_current(since, CURRENT_MAX)?,
            store.status_components()?,
        ))
    })
    .await?;
    let views = views(state, stored, &incidents, now);
    Ok((now, incidents, views))
}

async fn status_page(State(state): State<Arc<HttpState>>) -> Response {
    match current(&state).await {
        Ok((now, incidents, components)) => html(status::render_status_page(&status::PageInput {
            site: &state.site,
            now,
            components: &components,
            incidents: &incidents,
        })),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<u64>,
}

async fn history_page(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<PageQuery>,
) -> Response {
    let now = store::writer::now_seconds();
    let page = query.page.unwrap_or(1).max(1);
    let store = state.store.clone();
    let loaded = blocking(move || {
        let total = store.status_incident_count()?;
        let pagination = status::Pagination::new(page, HISTORY_PER_PAGE, total);
        let incidents = store.status_incidents(HISTORY_PER_PAGE, pagination.offset())?;
        Ok((total, incidents))
    })
    .await;
    match loaded {
        Ok((total, incidents)) => {
            let body = status::render_history_page(&status::HistoryInput {
                site: &state.site,
                now,
                incidents: &incidents,
                page,
                per_page: HISTORY_PER_PAGE,
                total,
            });
            let code = if status::Pagination::new(page, HISTORY_PER_PAGE, total).exists() {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            (code, html(body)).into_response()
        }
        Err(r) => r,
    }
}

async fn incident_page(State(state): State<Arc<HttpState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::NOT_FOUND, "no such incident");
    };
    let store = state.store.clone();
    match blocking(move || store.status_incident(id)).await {
        Ok(Some(incident)) => html(status::render_incident_page(
            &state.site,
            &incident,
            store::writer::now_seconds(),
        )),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such incident"),
        Err(r) => r,
    }
}

async fn feed(State(state): State<Arc<HttpState>>) -> Response {
    let now = store::writer::now_seconds();
    let store = state.store.clone();
    // The newest incidents carry the newest posts the feed shows.
    match blocking(move || store.status_incidents(status::FEED_ENTRIES_MAX as u64, 0)).await {
        Ok(incidents) => (
            [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
            status::render_feed(&state.site, &incidents, now),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn status_json(State(state): State<Arc<HttpState>>) -> Response {
    match current(&state).await {
        Ok((now, incidents, components)) => axum::Json(status::StatusDocument::new(
            &state.site,
            &components,
            &incidents,
            now,
        ))
        .into_response(),
        Err(r) => r,
    }
}

async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    // The store answers a read: the process is serving.
    let store = state.store.clone();
    match blocking(move || store.users().map(|_| ())).await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
    }
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let mut out = String::with_capacity(4096);
    let OpenConnections { imap, lmtp, smtp } = (state.connections)();
    let stats = state.store.stats();
    let _ = writeln!(
        out,
        "# HELP postern_imap_connections Open IMAP and IMAPS connections.\n\
         # TYPE postern_imap_connections gauge\n\
         postern_imap_connections {imap}\n\
         # HELP postern_lmtp_connections Open LMTP connections.\n\
         # TYPE postern_lmtp_connections gauge\n\
         postern_lmtp_connections {lmtp}\n\
         # HELP postern_smtp_connections Open inbound SMTP connections.\n\
         # TYPE postern_smtp_connections gauge\n\
         postern_smtp_connections {smtp}\n\
         # HELP postern_imap_logins_total IMAP logins by result.\n\
         # TYPE postern_imap_logins_total counter\n\
         postern_imap_logins_total{{result=\"ok\"}} {}\n\
         postern_imap_logins_total{{result=\"failed\"}} {}\n\
         # HELP postern_imap_logins_cached_total Successful IMAP logins vouched for by the credential cache (no Argon2id check).\n\
         # TYPE postern_imap_logins_cached_total counter\n\
         postern_imap_logins_cached_total {}\n\
         # HELP postern_imap_commands_total IMAP commands answered.\n\
         # TYPE postern_imap_commands_total counter\n\
         postern_imap_commands_total {}",
        state.imap.logins_ok.load(Relaxed),
        state.imap.logins_failed.load(Relaxed),
        state.imap.logins_cached.load(Relaxed),
        state.imap.commands.load(Relaxed),
    );
    state.deliveries.render(&mut out);
    let _ = writeln!(
        out,
        "# HELP postern_store_queue_depth Changes waiting for the store's writer.\n\
         # TYPE postern_store_queue_depth gauge\n\
         postern_store_queue_depth {}\n\
         # HELP postern_store_batches_total Batches committed (one fsync each).\n\
         # TYPE postern_store_batches_total counter\n\
         postern_store_batches_total {}\n\
         # HELP postern_store_records_total Journal records written.\n\
         # TYPE postern_store_records_total counter\n\
         postern_store_records_total {}\n\
         # HELP postern_repair_queue_depth Mailboxes waiting for a background repair.\n\
         # TYPE postern_repair_queue_depth gauge\n\
         postern_repair_queue_depth {}",
        stats.waiting.load(Relaxed),
        stats.batches.load(Relaxed),
        stats.records.load(Relaxed),
        state.store.repair_queue().len(),
    );
    if let Some(replication) = &state.admin.replication {
        let status = replication.status();
        let primary = u8::from(status.role == crate::config::ReplicationRole::Primary);
        let _ = writeln!(
            out,
            "# HELP postern_replication_primary 1 while this server is the primary, 0 while a replica.\n\
             # TYPE postern_replication_primary gauge\n\
             postern_replication_primary {primary}\n\
             # HELP postern_replication_connected 1 while the link to the other server is up.\n\
             # TYPE postern_replication_connected gauge\n\
             postern_replication_connected {}\n\
             # HELP postern_replication_lag_records Records the replica does not hold yet.\n\
             # TYPE postern_replication_lag_records gauge\n\
             postern_replication_lag_records {}\n\
             # HELP postern_replication_lag_seconds How long the replica has been behind.\n\
             # TYPE postern_replication_lag_seconds gauge\n\
             postern_replication_lag_seconds {}\n\
             # HELP postern_replication_shipped_records_total Records shipped to the replica.\n\
             # TYPE postern_replication_shipped_records_total counter\n\
             postern_replication_shipped_records_total {}\n\
             # HELP postern_replication_shipped_bytes_total Bytes shipped to the replica (records and contents).\n\
             # TYPE postern_replication_shipped_bytes_total counter\n\
             postern_replication_shipped_bytes_total {}\n\
             # HELP postern_replication_received_records_total Records applied from the primary.\n\
             # TYPE postern_replication_received_records_total counter\n\
             postern_replication_received_records_total {}",
            u8::from(status.connected),
            status.lag_records,
            status.lag_seconds,
            status.shipped_records,
            status.shipped_bytes,
            status.received_records,
        );
    }
    if let Some(inbound) = &state.admin.inbound {
        let dns = inbound.dns_stats();
        let active = inbound.runs().iter().filter(|r| r.active).count();
        let _ = writeln!(
            out,
            "# HELP postern_smtp_waiting SMTP messages waiting for a turn to be checked and stored.\n\
             # TYPE postern_smtp_waiting gauge\n\
             postern_smtp_waiting {}\n\
             # HELP postern_spam_runs_active Runs of near-identical mail seen within the window.\n\
             # TYPE postern_spam_runs_active gauge\n\
             postern_spam_runs_active {active}\n\
             # HELP postern_dns_cache_entries DNS answers cached for sender checks.\n\
             # TYPE postern_dns_cache_entries gauge\n\
             postern_dns_cache_entries {}\n\
             # HELP postern_dns_cache_hits_total Lookups answered from the cache within TTL.\n\
             # TYPE postern_dns_cache_hits_total counter\n\
             postern_dns_cache_hits_total {}\n\
             # HELP postern_dns_stale_served_total Lookups answered past their TTL while the resolvers failed.\n\
             # TYPE postern_dns_stale_served_total counter\n\
             postern_dns_stale_served_total {}",
            inbound.waiting(),
            dns.entries,
            dns.hits,
            dns.stale_served,
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}

/// The admin token's name when the request carries a valid one.
async fn authenticate(state: &HttpState, headers: &HeaderMap) -> Result<String, Response> {
    let unauthorized = || {
        let mut r = error(StatusCode::UNAUTHORIZED, "a valid admin token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"postern\""),
        );
        r
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(unauthorized)?;
    let hash = token_hash(token);
    let store = state.store.clone();
    match blocking(move || store.admin_token(&hash)).await {
        Ok(Some(name)) => Ok(name),
        Ok(None) => Err(unauthorized()),
        Err(r) => Err(r),
    }
}

/// What is stored of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A body as JSON of `T`, or a 400 that says what is wrong.
/// A body as JSON of `T`, or a 400 that names the field at fault.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path.is_empty() || path == "." {
            format!("bad request body: {inner}")
        } else {
            format!("bad request body: {path}: {inner}")
        };
        error(StatusCode::BAD_REQUEST, message)
    })
}

async fn submit(state: &HttpState, intent: Intent) -> Result<Outcome, Response> {
    state
        .store
        .submit_one(intent)
        .await
        .map_err(|e| from_store(&e))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    title: String,
    #[serde(default)]
    components: Vec<String>,
    #[serde(default = "default_impact")]
    impact: status::Impact,
    state: Option<status::State>,
    text: String,
    author: Option<String>,
    maintenance: Option<Window>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    starts: i64,
    ends: i64,
}

fn default_impact() -> status::Impact {
    status::Impact::Minor
}

/// What an admin handler answers: its response, or the error response that
/// stopped it (axum sends either), so the handlers read top to bottom with `?`.
pub(crate) type Reply = Result<Response, Response>;

async fn admin_open(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let token = authenticate(&state, &headers).await?;
    let body: OpenBody = parse(&body)?;
    let kind = match body.maintenance {
        Some(w) => status::Kind::Maintenance {
            starts: w.starts,
            ends: w.ends,
        },
        None => status::Kind::Incident,
    };
    let state_default = if kind.is_maintenance() {
        status::State::Scheduled
    } else {
        status::State::Investigating
    };
    let intent = Intent::StatusOpen {
        title: body.title,
        components: body.components,
        impact: body.impact,
        state: body.state.unwrap_or(state_default),
        kind,
        author: body.author.unwrap_or(token),
        text: body.text,
        at: None,
    };
    let (incident, post) = posted(submit(&state, intent).await?)?;
    Ok(created(
        serde_json::json!({ "incident": incident, "post": post }),
    ))
}

/// The ids in a status intent's answer.
fn posted(outcome: Outcome) -> Result<(u64, u64), Response> {
    match outcome {
        Outcome::StatusPosted { incident, post } => Ok((incident, post)),
        _ => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected answer",
        )),
    }
}

fn created(body: serde_json::Value) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

async fn admin_list(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Reply {
    authenticate(&state, &headers).await?;
    let store = state.store.clone();
    let incidents = blocking(move || store.status_incidents(1000, 0)).await?;
    Ok(axum::Json(incidents).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    text: String,
    author: Option<String>,
    state: Option<status::State>,
    impact: Option<status::Impact>,
}

fn id_of(text: &str) -> Result<u64, Response> {
    text.parse::<u64>()
        .map_err(|_| error(StatusCode::NOT_FOUND, format!("no such id {text:.40}")))
}

async fn admin_post(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let token = authenticate(&state, &headers).await?;
    let incident = id_of(&id)?;
    let body: PostBody = parse(&body)?;
    let intent = Intent::StatusPost {
        incident,
        author: body.author.unwrap_or(token),
        text: body.text,
        state: body.state,
        impact: body.impact,
        at: None,
    };
    let (_, post) = posted(submit(&state, intent).await?)?;
    Ok(created(serde_json::json!({ "post": post })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditBody {
    text: String,
    author: Option<String>,
}

async fn admin_edit(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let token = authenticate(&state, &headers).await?;
    let post = id_of(&id)?;
    let body: EditBody = parse(&body)?;
    let intent = Intent::StatusEdit {
        post,
        author: body.author.unwrap_or(token),
        text: body.text,
    };
    submit(&state, intent).await?;
    Ok(axum::Json(serde_json::json!({ "post": post })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentBody {
    state: status::ComponentState,
    note: Option<String>,
}

async fn admin_component(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    authenticate(&state, &headers).await?;
    let body: ComponentBody = parse(&body)?;
    let intent = Intent::StatusComponent {
        name: name.clone(),
        component: Some(status::Component {
            name: name.clone(),
            state: body.state,
            set_by: status::SetBy::Manual,
            set_at: store::writer::now_seconds(),
            note: body.note,
        }),
    };
    submit(&state, intent).await?;
    Ok(axum::Json(serde_json::json!({ "component": name })).into_response())
}

async fn admin_spam_runs(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Reply {
    authenticate(&state, &headers).await?;
    let runs = match &state.admin.inbound {
        Some(inbound) => inbound.runs(),
        None => Vec::new(),
    };
    Ok(axum::Json(serde_json::json!({ "runs": runs })).into_response())
}

/// A spam admin failure as an HTTP error: bad keys are 400, unknown ones 404.
fn spam_failure(failure: crate::spam_admin::Failure) -> Response {
    use crate::spam_admin::FailureKind;
    let status = match failure.kind {
        FailureKind::Invalid => StatusCode::BAD_REQUEST,
        FailureKind::NotFound => StatusCode::NOT_FOUND,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, failure.message)
}

/// Runs a spam admin call (store work) on the blocking pool.
async fn spam_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::spam_admin::Failure> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(spam_failure),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
    }
}

async fn admin_spam_blocks(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Reply {
    authenticate(&state, &headers).await?;
    let store = state.store.clone();
    let blocks = spam_blocking(move || crate::spam_admin::blocks(&store)).await?;
    Ok(axum::Json(serde_json::json!({ "blocks": blocks })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockBody {
    key: String,
    #[serde(default)]
    reason: String,
}

async fn admin_spam_block(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Reply {
    let token = authenticate(&state, &headers).await?;
    let body: BlockBody = parse(&body)?;
    let reason = if body.reason.is_empty() {
        format!("blocked by {token}")
    } else {
        body.reason
    };
    let store = state.store.clone();
    let context = state.admin.clone();
    let key = spam_blocking(move || crate::spam_admin::block(&store, &context, &body.key, &reason))
        .await?;
    Ok(created(serde_json::json!({ "key": key })))
}

async fn admin_spam_unblock(
    State(state): State<Arc<HttpState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Reply {
    authenticate(&state, &headers).await?;
    let store = state.store.clone();
    let context = state.admin.clone();
    let key = spam_blocking(move || crate::spam_admin::unblock(&store, &context, &key)).await?;
    Ok(axum::Json(serde_json::json!({ "key": key })).into_response())
}
