//! Replication: every server has a replica that is always nearly in sync,
//! can be checked against it, and takes over when it fails (issue 6).
//!
//! What is shipped is the store's journal, the one record of every change
//! (`store::record`). The primary follows its own journal with a cursor and
//! offers batches of records to the replica; the replica answers with the
//! contents it lacks (by SHA-256, so a content it holds is never sent
//! again), receives them, applies the batch with `Intent::Replicate` in one
//! commit of its own (records and position together, so a batch is applied
//! once or not at all), and acknowledges. Records that only describe one
//! server (where its blobs lie, what it replicated) are never shipped: each
//! side stores contents and collects garbage on its own.
//!
//! Roles and epochs. A server is primary or replica; `replication/state.json`
//! (written at promotion, step-down and rejoin, fsynced) overrides the
//! config's `role`. A promotion raises the epoch. Each side refuses a peer
//! with a lower epoch, and a primary told of a higher one steps down (it
//! serves read-only until `postern replication rejoin`), so an old primary
//! restarted after a failover cannot take writes beside the new one. A
//! primary with a replica configured takes no writes after start until it has
//! spoken to it (or `startup_wait_ms` passed), for that same reason.
//!
//! Calm. The shipper reads at most `max_mb_per_s`, oldest first; a backlog is
//! worked off at that rate. A replica applies through its own writer, and a
//! reconstruct that changes nothing writes no record, so ships nothing.

pub mod admin;
pub mod check;
pub mod export;
pub mod rejoin;
pub mod wire;

use crate::config::{ReplicationRole, ReplicationSection, ReplicationSync};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::record::{Lsn, Record};
use store::{BlobHash, Intent, Store};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use wire::{End, Frame, Msg, Position, Request};

/// What replication (and `store export`) ships of some journal entries:
/// every record but the local ones, with the commit time of the first entry.
pub(crate) fn shipped_records(entries: Vec<store::record::Entry>) -> (i64, Vec<Record>) {
    let first_time = entries.first().map_or(0, |e| e.time);
    let records = entries
        .into_iter()
        .map(|e| e.record)
        .filter(|r| !r.is_local())
        .collect();
    (first_time, records)
}

/// The contents `records` add that `seen` does not hold yet, in order of
/// first mention; adds them to `seen`.
pub(crate) fn new_contents(records: &[Record], seen: &mut HashSet<BlobHash>) -> Vec<BlobHash> {
    records
        .iter()
        .filter_map(|record| match record {
            Record::MessageAdded { blob, .. } if seen.insert(*blob) => Some(*blob),
            _ => None,
        })
        .collect()
}

/// The directory (in the data dir) of replication's own files.
pub const STATE_DIR: &str = "replication";
const STATE_FILE: &str = "state.json";
/// A replica's note of how far its primary was, last it heard (at most one
/// write a second, not fsynced: advisory), so that `promote` after a restart
/// of the replica still knows it is behind.
const HEARD_FILE: &str = "primary-heard.json";

/// A frame not received in this long ends the link (the primary pings every second).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const PING_EVERY: Duration = Duration::from_secs(1);
/// Waiting for a replica's answer to an offer (it fsyncs, and may be busy).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);
/// Lag samples kept for the percentiles of `status`, and commits remembered
/// while the replica is behind (older ones are dropped: the lag is then
/// measured from the oldest kept, which only understates a backlog's age in
/// `lag_ms`, never in `lag_records`).
const LAG_SAMPLES_MAX: usize = 100_000;

/// What `state.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub epoch: u64,
    pub role: ReplicationRole,
    /// Set when this server learned that another was promoted over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stepped_down: Option<SteppedDown>,
    /// `replication sync MODE`: overrides the config's `sync` from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<ReplicationSync>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteppedDown {
    /// The new primary's epoch.
    pub epoch: u64,
    /// The last of this server's LSNs the new primary holds (`None`: unknown).
    pub held_upto: Option<Lsn>,
    pub at: i64,
}

pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_DIR).join(STATE_FILE)
}

pub fn load_state(data_dir: &Path) -> anyhow::Result<Option<State>> {
    let path = state_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
    }
}

/// Writes `state.json` durably (temporary file, fsync, rename, fsync of the directory).
pub fn save_state(data_dir: &Path, state: &State) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = data_dir.join(STATE_DIR);
    std::fs::create_dir_all(&dir)?;
    let temp = dir.join("state.json.new");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(&serde_json::to_vec_pretty(state)?)?;
    file.sync_all()?;
    std::fs::rename(&temp, dir.join(STATE_FILE))?;
    std::fs::File::open(&dir)?.sync_all()?;
    Ok(())
}

fn now() -> i64 {
    store::writer::now_seconds()
}

/// Counters for `replication status` and `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub shipped_records: AtomicU64,
    pub shipped_bytes: AtomicU64,
    pub shipped_blobs: AtomicU64,
    pub shipped_batches: AtomicU64,
    pub received_records: AtomicU64,
    pub received_bytes: AtomicU64,
    /// Primary: the last of its LSNs the replica acknowledged.
    pub acked_lsn: AtomicU64,
    /// Replica: the primary's durable LSN as last heard.
    pub primary_durable: AtomicU64,
    /// When the current lag began (seconds; 0: none).
    pub lag_since: AtomicI64,
    pub connected: AtomicBool,
}

/// The running replication of one server.
pub struct Replication {
    store: Store,
    config: ReplicationSection,
    data_dir: PathBuf,
    state: Mutex<State>,
    pub counters: Counters,
    /// Primary: the replica's acknowledged LSN, for `before-ack` waits.
    acked: watch::Sender<Lsn>,
    /// Bumped when the role changes (the shipper starts or stops).
    role_changed: watch::Sender<u64>,
    /// The open link, for requests (`check`).
    link: Mutex<Option<Arc<Link>>>,
    /// Why the last link attempt failed, for `status`.
    last_error: Mutex<Option<String>>,
    /// Primary: when each durable LSN was first seen, until the replica holds it.
    seen_durable: Mutex<std::collections::VecDeque<(Lsn, std::time::Instant)>>,
    /// Primary: replication lag of the latest batches, commit to the
    /// replica's acknowledgement, in microseconds (the last `LAG_SAMPLES_MAX`).
    lag_samples: Mutex<std::collections::VecDeque<u64>>,
    tls: tokio_rustls::TlsAcceptor,
}

#[derive(Debug, Serialize)]
pub struct LagPercentiles {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Replication's view for `replication status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub role: ReplicationRole,
    pub epoch: u64,
    pub store_id: String,
    pub peer: String,
    pub sync: &'static str,
    pub connected: bool,
    pub durable_lsn: Lsn,
    pub lag_records: u64,
    pub lag_seconds: u64,
    /// Primary: lag of recent changes, from their commit here to the
    /// replica's acknowledgement (percentiles over the last 100,000 batches).
    pub lag_ms: Option<LagPercentiles>,
    pub shipped_records: u64,
    pub shipped_bytes: u64,
    pub shipped_blobs: u64,
    pub shipped_batches: u64,
    pub received_records: u64,
    pub received_bytes: u64,
    pub acked_lsn: Lsn,
    pub position: Option<Position>,
    pub primary_durable_lsn: Option<Lsn>,
    pub stepped_down: Option<SteppedDown>,
    pub last_error: Option<String>,
}

impl Replication {
    /// Sets the store's mode from the role and starts the link tasks.
    pub async fn start(
        store: Store,
        config: ReplicationSection,
        data_dir: PathBuf,
        tls: tokio_rustls::TlsAcceptor,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<(Arc<Replication>, Option<std::net::SocketAddr>)> {
        let state = match load_state(&data_dir)? {
            Some(state) => state,
            None => State {
                epoch: 0,
                role: config.role,
                stepped_down: None,
                sync: None,
            },
        };
        let replica = state.role == ReplicationRole::Replica;
        // A primary that may have been replaced while it was down waits to hear
        // from its replica before taking writes (see the module comment).
        let fenced = !replica && !config.replica.is_empty();
        store.set_read_only(replica || fenced);
        let replication = Arc::new(Replication {
            store,
            config,
            data_dir,
            state: Mutex::new(state),
            counters: Counters::default(),
            acked: watch::channel(0).0,
            role_changed: watch::channel(0).0,
            link: Mutex::new(None),
            last_error: Mutex::new(None),
            seen_durable: Mutex::new(Default::default()),
            lag_samples: Mutex::new(Default::default()),
            tls,
        });
        tokio::spawn(Arc::clone(&replication).observe_commits(shutdown.clone()));
        if replica && let Some(heard) = replication.load_heard() {
            replication
                .counters
                .primary_durable
                .store(heard, Ordering::Relaxed);
        }
        tokio::spawn(Arc::clone(&replication).save_heard_periodically(shutdown.clone()));
        let mut bound = None;
        if !replication.config.listen.is_empty() {
            let listener = TcpListener::bind(&replication.config.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot bind [replication] listen = \"{}\": {e}",
                        replication.config.listen
                    )
                })?;
            bound = listener.local_addr().ok();
            tokio::spawn(Arc::clone(&replication).listen(listener, shutdown.clone()));
        }
        if !replication.config.replica.is_empty() {
            tokio::spawn(Arc::clone(&replication).ship_forever(shutdown.clone()));
        }
        if fenced {
            let r = Arc::clone(&replication);
            let wait = Duration::from_millis(r.config.startup_wait_ms);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                r.open_writes_if_primary("no word from the replica in startup_wait_ms");
            });
        }
        // Always there: `wait_acked` answers at once unless the sync mode in
        // force (config, or `replication sync`) is before-ack.
        {
            let r = Arc::clone(&replication);
            replication.store.set_ack_wait(Some(Arc::new(move |lsn| {
                let r = Arc::clone(&r);
                Box::pin(async move { r.wait_acked(lsn).await })
            })));
        }
        tracing::info!(event = "replication_started", role = ?replication.role(), epoch = replication.epoch(), store_id = replication.store.store_id());
        Ok((replication, bound))
    }

    pub fn role(&self) -> ReplicationRole {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).role
    }

    /// The sync mode in force: `replication sync`'s, else the config's.
    pub fn sync(&self) -> ReplicationSync {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sync
            .unwrap_or(self.config.sync)
    }

    /// `replication sync MODE`: from now on (and across restarts) changes are
    /// acknowledged in this mode; e.g. `async` while a failed replica is
    /// being replaced, so that a before-ack primary takes writes again.
    pub fn set_sync(&self, sync: ReplicationSync) -> anyhow::Result<()> {
        let mut state = self.state();
        state.sync = Some(sync);
        self.set_state(state)?;
        tracing::warn!(
            event = "replication_sync_set",
            ?sync,
            "replication sync mode changed"
        );
        Ok(())
    }

    pub fn epoch(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).epoch
    }

    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, state: State) -> anyhow::Result<()> {
        save_state(&self.data_dir, &state)?;
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = state;
        self.role_changed.send_modify(|n| *n += 1);
        Ok(())
    }

    fn open_writes_if_primary(&self, why: &str) {
        let state = self.state();
        if state.role == ReplicationRole::Primary
            && state.stepped_down.is_none()
            && self.store.is_read_only()
        {
            tracing::info!(
                event = "replication_writes_open",
                why,
                "this primary takes writes"
            );
            self.store.set_read_only(false);
        }
    }

    /// `before-ack`: waits until the replica holds `lsn`.
    async fn wait_acked(&self, lsn: Lsn) -> Result<(), String> {
        if self.role() != ReplicationRole::Primary || self.sync() != ReplicationSync::BeforeAck {
            return Ok(());
        }
        let mut acked = self.acked.subscribe();
        let wait = tokio::time::timeout(
            Duration::from_millis(self.config.ack_timeout_ms),
            acked.wait_for(|a| *a >= lsn),
        )
        .await;
        match wait {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "the replica did not confirm the change within {} ms; it is kept here and shipped when the replica is back",
                self.config.ack_timeout_ms
            )),
        }
    }

    fn set_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// This server's view, for `replication status`.
    pub fn status(&self) -> Status {
        let state = self.state();
        let durable = self.store.durable_lsn();
        let position = self.position();
        let c = &self.counters;
        let (lag_records, primary_durable) = match state.role {
            ReplicationRole::Primary => (
                durable.saturating_sub(c.acked_lsn.load(Ordering::Relaxed)),
                None,
            ),
            ReplicationRole::Replica => {
                let heard = c.primary_durable.load(Ordering::Relaxed);
                let held = position.as_ref().map_or(0, |p| p.upto);
                (heard.saturating_sub(held), Some(heard))
            }
        };
        let since = c.lag_since.load(Ordering::Relaxed);
        let lag_seconds = if lag_records > 0 && since > 0 {
            (now() - since).max(0) as u64
        } else {
            0
        };
        Status {
            role: state.role,
            epoch: state.epoch,
            store_id: self.store.store_id().to_string(),
            peer: match state.role {
                ReplicationRole::Primary => self.config.replica.clone(),
                ReplicationRole::Replica => self.config.listen.clone(),
            },
            sync: match self.sync() {
                ReplicationSync::Async => "async",
                ReplicationSync::BeforeAck => "before-ack",
            },
            connected: c.connected.load(Ordering::Relaxed),
            durable_lsn: durable,
            lag_records,
            lag_seconds,
            lag_ms: self.lag_percentiles(),
            shipped_records: c.shipped_records.load(Ordering::Relaxed),
            shipped_bytes: c.shipped_bytes.load(Ordering::Relaxed),
            shipped_blobs: c.shipped_blobs.load(Ordering::Relaxed),
            shipped_batches: c.shipped_batches.load(Ordering::Relaxed),
            received_records: c.received_records.load(Ordering::Relaxed),
            received_bytes: c.received_bytes.load(Ordering::Relaxed),
            acked_lsn: c.acked_lsn.load(Ordering::Relaxed),
            position,
            primary_durable_lsn: primary_durable,
            stepped_down: state.stepped_down,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Where this server stands as a replica, if it ever was one.
    fn position(&self) -> Option<Position> {
        self.store
            .replica_position()
            .ok()
            .flatten()
            .map(|p| Position {
                source: p.source,
                upto: p.upto,
            })
    }

    fn lag_percentiles(&self) -> Option<LagPercentiles> {
        let mut samples: Vec<u64> = self
            .lag_samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i] as f64 / 1000.0
        };
        Some(LagPercentiles {
            samples: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        })
    }

    /// Notes when each durable LSN appears (the writer wakes this on every
    /// commit), so an acknowledgement can say how long a change took to reach
    /// the replica.
    async fn observe_commits(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut durable = self.store.watch_durable();
        loop {
            tokio::select! {
                changed = durable.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            if self.role() != ReplicationRole::Primary {
                continue;
            }
            let lsn = self.store.durable_lsn();
            let mut seen = self.seen_durable.lock().unwrap_or_else(|p| p.into_inner());
            if seen.back().is_none_or(|(last, _)| *last < lsn) {
                if seen.len() >= LAG_SAMPLES_MAX {
                    seen.pop_front();
                }
                seen.push_back((lsn, std::time::Instant::now()));
            }
        }
    }

    /// The replica holds everything up to `upto`: one lag sample per commit it covers.
    fn note_acked(&self, upto: Lsn) {
        let now = std::time::Instant::now();
        let mut seen = self.seen_durable.lock().unwrap_or_else(|p| p.into_inner());
        let mut samples = self.lag_samples.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((lsn, at)) = seen.front().copied() {
            if lsn > upto {
                break;
            }
            seen.pop_front();
            if samples.len() >= LAG_SAMPLES_MAX {
                samples.pop_front();
            }
            samples.push_back(now.duration_since(at).as_micros() as u64);
        }
    }

    /// `replication promote`: this replica becomes primary at a new epoch.
    /// Refused while it knows it is behind, unless `force`; the answer says
    /// what a forced promotion leaves behind.
    pub fn promote(&self, force: bool) -> Result<String, String> {
        let state = self.state();
        if state.role == ReplicationRole::Primary {
            return Err("this server is already the primary".into());
        }
        let status = self.status();
        let behind = status.lag_records;
        if behind > 0 && !force {
            return Err(format!(
                "this replica is behind: the primary was at its LSN {} and this replica holds up to {}, {behind} records (not all of them mail) would be lost; promote --force accepts that",
                status.primary_durable_lsn.unwrap_or(0),
                status.position.as_ref().map_or(0, |p| p.upto),
            ));
        }
        let epoch = state.epoch + 1;
        self.set_state(State {
            epoch,
            role: ReplicationRole::Primary,
            stepped_down: None,
            sync: state.sync,
        })
        .map_err(|e| format!("cannot write the new epoch: {e}"))?;
        // The old primary's link, if it is still up, must not apply more.
        if let Some(link) = self.link.lock().unwrap_or_else(|p| p.into_inner()).take() {
            link.close();
        }
        self.store.set_read_only(false);
        tracing::warn!(
            event = "replication_promoted",
            epoch,
            lost_records = behind,
            "this server is now the primary"
        );
        Ok(if behind > 0 {
            format!(
                "promoted to primary at epoch {epoch}; {behind} records of the old primary were never received here and are not on this server\n"
            )
        } else {
            format!("promoted to primary at epoch {epoch}; nothing of the old primary is missing\n")
        })
    }

    fn refuse(reason: impl Into<String>, epoch: u64) -> Frame {
        Frame::new(Msg::Refuse {
            reason: reason.into(),
            epoch,
            held_upto: None,
            newer_primary: false,
        })
    }

    fn hello(&self, end: End, binding: &[u8; 32]) -> Msg {
        let position = self.position();
        Msg::Hello {
            end,
            store_id: self.store.store_id().to_string(),
            epoch: self.epoch(),
            durable: self.store.durable_lsn(),
            position,
            empty: self.store.durable_lsn() == 0,
            proof: wire::proof(&self.config.secret.0, end, binding),
        }
    }

    /// Learned that another server was promoted over this one: serve read-only.
    fn step_down(&self, epoch: u64, held_upto: Option<Lsn>) {
        let mut state = self.state();
        if state.role == ReplicationRole::Replica && state.stepped_down.is_some() {
            return;
        }
        state.role = ReplicationRole::Replica;
        state.stepped_down = Some(SteppedDown {
            epoch,
            held_upto,
            at: now(),
        });
        self.store.set_read_only(true);
        if let Err(e) = self.set_state(state) {
            tracing::error!(event = "replication_state_write_failed", error = %e);
        }
        tracing::error!(
            event = "replication_stepped_down",
            new_epoch = epoch,
            ?held_upto,
            "another server was promoted to primary at a higher epoch: this server takes no writes; run `postern replication rejoin` (server stopped) to set aside what the new primary lacks and follow it"
        );
    }

    // ---- The replica end: accept the primary, apply its batches. ----

    async fn listen(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => return,
            };
            let (socket, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(event = "replication_accept_failed", error = %e);
                    tokio::time::sleep(RETRY_MIN).await;
                    continue;
                }
            };
            let this = Arc::clone(&self);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve_primary(socket, stop).await {
                    tracing::warn!(event = "replication_link_ended", %peer, error = %e);
                    this.set_error(Some(e.to_string()));
                }
                this.counters.connected.store(false, Ordering::Relaxed);
            });
        }
    }

    async fn serve_primary(
        self: &Arc<Self>,
        socket: TcpStream,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let _ = socket.set_nodelay(true);
        let mut tls = tokio::time::timeout(CONNECT_TIMEOUT, self.tls.accept(socket)).await??;
        let binding = wire::binding_of(tls.get_ref().1)?;
        let (hello, _) = tokio::time::timeout(CONNECT_TIMEOUT, wire::read_frame(&mut tls))
            .await??
            .ok_or_else(|| anyhow::anyhow!("the peer closed before its hello"))?;
        let Msg::Hello {
            end: End::Primary,
            store_id,
            epoch,
            durable,
            proof,
            ..
        } = hello.msg
        else {
            anyhow::bail!("the peer did not start with a primary's hello");
        };
        if !wire::proof_ok(&self.config.secret.0, End::Primary, &binding, &proof) {
            // Same answer whatever was wrong; nothing about this server leaks.
            wire::write_frame(&mut tls, &Self::refuse("authentication failed", 0)).await?;
            anyhow::bail!("a peer failed to prove the replication secret");
        }
        let state = self.state();
        let position = self.store.replica_position()?;
        let held_upto = position
            .as_ref()
            .filter(|p| p.source == store_id)
            .map(|p| p.upto);
        if epoch < state.epoch {
            let newer_primary = state.role == ReplicationRole::Primary;
            wire::write_frame(
                &mut tls,
                &Frame::new(Msg::Refuse {
                    reason: format!(
                        "your epoch {epoch} is older than this server's {}{}",
                        state.epoch,
                        if newer_primary {
                            ", at which this server is the primary"
                        } else {
                            ""
                        }
                    ),
                    epoch: state.epoch,
                    held_upto,
                    newer_primary,
                }),
            )
            .await?;
            anyhow::bail!(
                "refused a primary of the older epoch {epoch} (this server: {})",
                state.epoch
            );
        }
        if state.role == ReplicationRole::Primary {
            wire::write_frame(
                &mut tls,
                &Self::refuse(
                    "this server is a primary too, at the same epoch",
                    state.epoch,
                ),
            )
            .await?;
            anyhow::bail!(
                "another primary of epoch {epoch} tried to replicate to this primary; one of them must be a replica"
            );
        }
        if state.stepped_down.is_some() {
            wire::write_frame(
                &mut tls,
                &Self::refuse(
                    "this server was a primary and holds writes of its own: run `postern replication rejoin` on it first",
                    state.epoch,
                ),
            )
            .await?;
            anyhow::bail!("a primary wants to replicate here; rejoin first");
        }
        match &position {
            Some(p) if p.source != store_id => {
                wire::write_frame(
                    &mut tls,
                    &Self::refuse(
                        format!(
                            "this replica follows another primary ({}); run `postern replication rejoin` on it to follow you",
                            p.source
                        ),
                        state.epoch,
                    ),
                )
                .await?;
                anyhow::bail!(
                    "refused primary {store_id}: this replica follows {}",
                    p.source
                );
            }
            None if self.store.durable_lsn() > 0 => {
                wire::write_frame(
                    &mut tls,
                    &Self::refuse(
                        "this replica holds data it did not replicate: start it on an empty data directory, or rejoin",
                        state.epoch,
                    ),
                )
                .await?;
                anyhow::bail!("refused primary {store_id}: this store is not empty");
            }
            _ => {}
        }
        if epoch > state.epoch {
            self.set_state(State {
                epoch,
                ..state.clone()
            })?;
        }
        wire::write_frame(&mut tls, &Frame::new(self.hello(End::Replica, &binding))).await?;
        self.counters
            .primary_durable
            .store(durable, Ordering::Relaxed);
        self.set_error(None);
        tracing::info!(event = "replication_link_up", end = "replica", primary = %store_id, epoch, held = held_upto.unwrap_or(0));
        let (link, mut inbox) = Link::start(tls, Arc::clone(self), shutdown);
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&link));
        self.counters.connected.store(true, Ordering::Relaxed);
        let result = self.apply_offers(&link, &mut inbox, &store_id).await;
        link.close();
        result
    }

    async fn apply_offers(
        &self,
        link: &Arc<Link>,
        inbox: &mut mpsc::Receiver<Frame>,
        source: &str,
    ) -> anyhow::Result<()> {
        loop {
            let frame = match tokio::time::timeout(IDLE_TIMEOUT, inbox.recv()).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(_) => anyhow::bail!("nothing from the primary for {IDLE_TIMEOUT:?}"),
            };
            if self.role() != ReplicationRole::Replica {
                anyhow::bail!("this server was promoted: the old primary's link is closed");
            }
            match frame.msg {
                Msg::Ping { durable } => {
                    self.note_primary_at(durable);
                }
                Msg::Offer {
                    after,
                    upto,
                    id_floor,
                    durable,
                    first_time,
                    records,
                    blobs,
                } => {
                    self.note_primary_at(durable);
                    if self.counters.lag_since.load(Ordering::Relaxed) == 0 {
                        self.counters.lag_since.store(first_time, Ordering::Relaxed);
                    }
                    let mut want = Vec::new();
                    for hex in &blobs {
                        let hash = parse_hash(hex)?;
                        if !self.store.has_blob(&hash)? {
                            want.push(hex.clone());
                        }
                    }
                    link.send(Frame::new(Msg::Want {
                        blobs: want.clone(),
                    }))
                    .await?;
                    let mut received: Vec<(BlobHash, Vec<u8>)> = Vec::new();
                    let mut lost = Vec::new();
                    let mut asked = want.iter();
                    loop {
                        let frame = tokio::time::timeout(ANSWER_TIMEOUT, inbox.recv())
                            .await
                            .map_err(|_| anyhow::anyhow!("the primary stopped sending contents"))?
                            .ok_or_else(|| anyhow::anyhow!("the link closed"))?;
                        let blob_lost = match frame.msg {
                            Msg::Blob { lost } => lost,
                            Msg::BlobsDone => break,
                            other => anyhow::bail!("unexpected {other:?} while receiving contents"),
                        };
                        let hash = parse_hash(asked.next().ok_or_else(|| {
                            anyhow::anyhow!("the primary sent more contents than asked")
                        })?)?;
                        if blob_lost {
                            lost.push(hash);
                            continue;
                        }
                        self.counters
                            .received_bytes
                            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                        received.push((hash, frame.payload));
                    }
                    anyhow::ensure!(
                        asked.next().is_none(),
                        "the primary sent fewer contents than asked"
                    );
                    let contents = self.prepare_all(received).await?;
                    let count = records.len() as u64;
                    let apply = self.store.submit_one(Intent::Replicate {
                        source: source.to_string(),
                        after,
                        upto,
                        id_floor,
                        records: Arc::new(records),
                        blobs: Arc::new(contents),
                        lost: Arc::new(lost),
                    });
                    // A long batch must not look like a dead link to the
                    // primary, whose reader gives up after IDLE_TIMEOUT.
                    tokio::pin!(apply);
                    let mut keepalive = tokio::time::interval(PING_EVERY * 5);
                    keepalive.tick().await;
                    let outcome = loop {
                        tokio::select! {
                            outcome = &mut apply => break outcome,
                            _ = keepalive.tick() => {
                                link.send(Frame::new(Msg::Ping { durable: 0 })).await?;
                            }
                        }
                    };
                    match outcome {
                        Ok(_) => {
                            self.counters
                                .received_records
                                .fetch_add(count, Ordering::Relaxed);
                            let heard = self.counters.primary_durable.load(Ordering::Relaxed);
                            if upto >= heard {
                                self.counters.lag_since.store(0, Ordering::Relaxed);
                            }
                            link.send(Frame::new(Msg::Ack { upto })).await?;
                        }
                        Err(e) => {
                            link.send(Frame::new(Msg::Nack {
                                reason: e.to_string(),
                            }))
                            .await?;
                            anyhow::bail!(
                                "could not apply the primary's records {after}..{upto}: {e}"
                            );
                        }
                    }
                }
                other => anyhow::bail!("unexpected {other:?} from the primary"),
            }
        }
    }

    /// Hashes and parses received contents, on every core at once (parsing is
    /// most of a replica's work); a content that does not match its hash is an error.
    async fn prepare_all(
        &self,
        received: Vec<(BlobHash, Vec<u8>)>,
    ) -> anyhow::Result<HashMap<BlobHash, Arc<store::Prepared>>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (hash, bytes) in received {
            let store = self.store.clone();
            tasks.spawn_blocking(move || (hash, store.prepare(bytes)));
        }
        let mut contents = HashMap::new();
        while let Some(done) = tasks.join_next().await {
            let (hash, prepared) = done?;
            anyhow::ensure!(
                prepared.hash == hash,
                "a content from the primary does not match its hash"
            );
            contents.insert(hash, prepared);
        }
        Ok(contents)
    }

    fn note_primary_at(&self, durable: Lsn) {
        self.counters
            .primary_durable
            .store(durable, Ordering::Relaxed);
        let held = self
            .store
            .replica_position()
            .ok()
            .flatten()
            .map_or(0, |p| p.upto);
        if durable > held {
            let _ = self.counters.lag_since.compare_exchange(
                0,
                now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.counters.lag_since.store(0, Ordering::Relaxed);
        }
    }

    /// Keeps `HEARD_FILE` up to date, at most once a second (see there).
    async fn save_heard_periodically(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut saved = self.counters.primary_durable.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let heard = self.counters.primary_durable.load(Ordering::Relaxed);
            if heard != saved && self.role() == ReplicationRole::Replica {
                let this = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || this.save_heard(heard)).await;
                saved = heard;
            }
        }
    }

    fn save_heard(&self, durable: Lsn) {
        let Ok(Some(position)) = self.store.replica_position() else {
            return;
        };
        let dir = self.data_dir.join(STATE_DIR);
        let text = serde_json::json!({ "source": position.source, "durable": durable }).to_string();
        let temp = dir.join(format!("{HEARD_FILE}.new"));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&temp, text))
            .and_then(|()| std::fs::rename(&temp, dir.join(HEARD_FILE)));
        if let Err(e) = written {
            tracing::debug!(event = "replication_heard_not_saved", error = %e);
        }
    }

    /// What `save_heard` kept, if it is about the primary this replica follows.
    fn load_heard(&self) -> Option<Lsn> {
        let text = std::fs::read(self.data_dir.join(STATE_DIR).join(HEARD_FILE)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let position = self.store.replica_position().ok()??;
        (value["source"].as_str()? == position.source).then(|| value["durable"].as_u64())?
    }

    // ---- The primary end: connect to the replica and ship. ----

    async fn ship_forever(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut role = self.role_changed.subscribe();
        let mut backoff = RETRY_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            if self.role() != ReplicationRole::Primary || self.state().stepped_down.is_some() {
                tokio::select! {
                    _ = role.changed() => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let result = self.ship_once(shutdown.clone()).await;
            self.counters.connected.store(false, Ordering::Relaxed);
            *self.link.lock().unwrap_or_else(|p| p.into_inner()) = None;
            match result {
                Ok(()) => backoff = RETRY_MIN,
                Err(e) => {
                    tracing::warn!(event = "replication_ship_failed", replica = %self.config.replica, error = %e);
                    self.set_error(Some(e.to_string()));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    async fn ship_once(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let socket =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.config.replica))
                .await??;
        let _ = socket.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from("postern-replica")?;
        let mut tls =
            tokio::time::timeout(CONNECT_TIMEOUT, wire::connector()?.connect(name, socket))
                .await??;
        let binding = wire::binding_of(tls.get_ref().1)?;
        wire::write_frame(&mut tls, &Frame::new(self.hello(End::Primary, &binding))).await?;
        let (answer, _) = tokio::time::timeout(CONNECT_TIMEOUT, wire::read_frame(&mut tls))
            .await??
            .ok_or_else(|| anyhow::anyhow!("the replica closed the link"))?;
        let (position, empty) = match answer.msg {
            Msg::Refuse {
                reason,
                epoch,
                held_upto,
                newer_primary,
            } => {
                if newer_primary || epoch > self.epoch() {
                    self.step_down(epoch, held_upto);
                }
                anyhow::bail!("the replica refused: {reason}");
            }
            Msg::Hello {
                end: End::Replica,
                epoch,
                position,
                empty,
                proof,
                ..
            } => {
                anyhow::ensure!(
                    wire::proof_ok(&self.config.secret.0, End::Replica, &binding, &proof),
                    "the replica failed to prove the replication secret"
                );
                if epoch > self.epoch() {
                    self.step_down(epoch, None);
                    anyhow::bail!("the replica knows a newer epoch {epoch}");
                }
                (position, empty)
            }
            other => anyhow::bail!("unexpected {other:?} from the replica"),
        };
        let after = match position {
            Some(p) if p.source == self.store.store_id() => p.upto,
            None if empty => 0,
            _ => anyhow::bail!("the replica holds another server's data; rejoin it first"),
        };
        self.counters.acked_lsn.store(after, Ordering::Relaxed);
        self.acked.send_replace(after);
        self.seen_durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(lsn, _)| *lsn > after);
        self.set_error(None);
        // Writes open before the link shows as up, so that whoever sees it up
        // can write.
        self.open_writes_if_primary("the replica answered");
        tracing::info!(event = "replication_link_up", end = "primary", replica = %self.config.replica, from = after + 1);
        let (link, mut inbox) = Link::start(tls, Arc::clone(self), shutdown.clone());
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&link));
        self.counters.connected.store(true, Ordering::Relaxed);
        let result = self.ship_from(&link, &mut inbox, after, shutdown).await;
        link.close();
        result
    }

    async fn ship_from(
        &self,
        link: &Arc<Link>,
        inbox: &mut mpsc::Receiver<Frame>,
        mut after: Lsn,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let store = self.store.clone();
        let mut cursor = Some(
            tokio::task::spawn_blocking({
                let store = store.clone();
                move || store.journal_cursor(after + 1)
            })
            .await??,
        );
        // Records read but left for the next batch (see the content bound below).
        let mut carried: std::collections::VecDeque<store::record::Entry> = Default::default();
        let mut durable_watch = store.watch_durable();
        let mut throttle = Throttle::new(self.config.max_mb_per_s * 1_000_000);
        let mut role = self.role_changed.subscribe();
        loop {
            if self.role() != ReplicationRole::Primary {
                anyhow::bail!("this server is no longer the primary");
            }
            let durable = store.durable_lsn();
            if durable <= after && carried.is_empty() {
                self.counters.lag_since.store(0, Ordering::Relaxed);
                link.send(Frame::new(Msg::Ping { durable })).await?;
                tokio::select! {
                    _ = durable_watch.changed() => {}
                    _ = tokio::time::sleep(PING_EVERY) => {}
                    _ = role.changed() => {}
                    _ = shutdown.changed() => return Ok(()),
                    closed = link.closed() => { let () = closed; anyhow::bail!("the link closed"); }
                }
                continue;
            }
            let _ = self.counters.lag_since.compare_exchange(
                0,
                now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            let (records_max, bytes_max) =
                (self.config.batch_records_max, self.config.batch_bytes_max);
            let mut entries: Vec<store::record::Entry> = carried.drain(..).collect();
            if entries.is_empty() {
                let mut taken = cursor
                    .take()
                    .ok_or_else(|| anyhow::anyhow!("journal cursor lost"))?;
                let (taken, read) = tokio::task::spawn_blocking(move || {
                    let read = taken.read(durable, records_max, bytes_max);
                    (taken, read)
                })
                .await?;
                cursor = Some(taken);
                entries = read?;
            }
            // Contents are bounded per batch too (the replica holds a batch's
            // contents in memory until it is applied): the records after the
            // cut wait for the next batch. One message always goes, however big.
            let mut content_bytes = 0u64;
            let mut cut = entries.len();
            for (i, entry) in entries.iter().enumerate() {
                if let Record::MessageAdded { size, .. } = &entry.record {
                    content_bytes += size;
                    if content_bytes > bytes_max as u64 && i > 0 {
                        cut = i;
                        break;
                    }
                }
            }
            carried.extend(entries.drain(cut..));
            let Some(last) = entries.last() else {
                // Durable but not in the file yet: the writer appends first, so
                // this is a moment; look again shortly.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let upto = last.lsn;
            let (first_time, records) = shipped_records(entries);
            let mut seen = HashSet::new();
            let blobs: Vec<String> = new_contents(&records, &mut seen)
                .iter()
                .map(BlobHash::to_hex)
                .collect();
            let id_floor = durable.saturating_add(1).max(
                store
                    .replica_position()
                    .ok()
                    .flatten()
                    .map_or(0, |p| p.id_floor),
            );
            let count = records.len() as u64;
            let sent = link
                .send_counted(Frame::new(Msg::Offer {
                    after,
                    upto,
                    id_floor,
                    durable,
                    first_time,
                    records,
                    blobs,
                }))
                .await?;
            throttle.spend(sent as u64).await;
            let want = match Self::next(inbox).await? {
                Msg::Want { blobs } => blobs,
                Msg::Nack { reason } => anyhow::bail!("the replica refused the batch: {reason}"),
                other => anyhow::bail!("unexpected {other:?} from the replica"),
            };
            let mut wanted = Vec::with_capacity(want.len());
            for hex in want {
                let hash = parse_hash(&hex)?;
                anyhow::ensure!(
                    seen.contains(&hash),
                    "the replica wants a content not offered"
                );
                wanted.push((hex, hash));
            }
            let mut blob_bytes = 0u64;
            // Read in groups (one blocking call each), sent as they are read.
            for group in wanted.chunks(64) {
                let group = group.to_vec();
                let read = {
                    let store = store.clone();
                    tokio::task::spawn_blocking(move || {
                        group
                            .into_iter()
                            .map(|(hex, hash)| (hex, store.blob(&hash)))
                            .collect::<Vec<_>>()
                    })
                    .await?
                };
                for (hex, bytes) in read {
                    let frame = match bytes {
                        Ok(bytes) => Frame {
                            msg: Msg::Blob { lost: false },
                            payload: bytes,
                        },
                        Err(e) => {
                            tracing::error!(event = "replication_blob_unreadable", blob = %hex, error = %e, "a content to ship is missing or damaged here; the replica indexes the message without it");
                            Frame::new(Msg::Blob { lost: true })
                        }
                    };
                    let sent = link.send_counted(frame).await?;
                    blob_bytes += sent as u64;
                    self.counters.shipped_blobs.fetch_add(1, Ordering::Relaxed);
                    throttle.spend(sent as u64).await;
                }
            }
            link.send(Frame::new(Msg::BlobsDone)).await?;
            match Self::next(inbox).await? {
                Msg::Ack { upto: acked } if acked == upto => {}
                Msg::Ack { upto: acked } => {
                    anyhow::bail!("the replica acknowledged {acked}, not {upto}")
                }
                Msg::Nack { reason } => anyhow::bail!("the replica could not apply: {reason}"),
                other => anyhow::bail!("unexpected {other:?} from the replica"),
            }
            after = upto;
            let c = &self.counters;
            c.shipped_records.fetch_add(count, Ordering::Relaxed);
            c.shipped_batches.fetch_add(1, Ordering::Relaxed);
            c.shipped_bytes
                .fetch_add(sent as u64 + blob_bytes, Ordering::Relaxed);
            c.acked_lsn.store(upto, Ordering::Relaxed);
            self.acked.send_replace(upto);
            self.note_acked(upto);
            if upto >= store.durable_lsn() {
                c.lag_since.store(0, Ordering::Relaxed);
            } else {
                c.lag_since.store(now(), Ordering::Relaxed);
            }
        }
    }

    /// The replica's next answer; its keepalives (sent while it applies a
    /// long batch) are skipped.
    async fn next(inbox: &mut mpsc::Receiver<Frame>) -> anyhow::Result<Msg> {
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, inbox.recv()).await {
                Ok(Some(Frame {
                    msg: Msg::Ping { .. },
                    ..
                })) => continue,
                Ok(Some(frame)) => return Ok(frame.msg),
                Ok(None) => anyhow::bail!("the link closed"),
                Err(_) => anyhow::bail!("no answer from the replica in {ANSWER_TIMEOUT:?}"),
            }
        }
    }

    /// The open link, for `check`.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn parse_hash(hex: &str) -> anyhow::Result<BlobHash> {
    BlobHash::from_hex(hex).ok_or_else(|| anyhow::anyhow!("the peer sent a bad content hash"))
}

/// Bytes per second at most, in one-second windows.
struct Throttle {
    per_second: u64,
    window_start: tokio::time::Instant,
    spent: u64,
}

impl Throttle {
    fn new(per_second: u64) -> Self {
        Throttle {
            per_second: per_second.max(1),
            window_start: tokio::time::Instant::now(),
            spent: 0,
        }
    }

    async fn spend(&mut self, bytes: u64) {
        self.spent += bytes;
        while self.spent >= self.per_second {
            let next = self.window_start + Duration::from_secs(1);
            tokio::time::sleep_until(next).await;
            self.window_start = next;
            self.spent -= self.per_second;
        }
        if self.window_start.elapsed() >= Duration::from_secs(1) {
            self.window_start = tokio::time::Instant::now();
            self.spent = 0;
        }
    }
}

/// An open link: a task writes frames from a queue, another reads them and
/// answers the peer's requests itself, handing the rest to the link's owner.
pub struct Link {
    /// Encoded frames for the writing task.
    out: mpsc::Sender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Frame>>>,
    next_id: AtomicU64,
    closed: watch::Sender<bool>,
}

impl Link {
    fn start<S>(
        stream: S,
        replication: Arc<Replication>,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Arc<Link>, mpsc::Receiver<Frame>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    {
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (out, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
        let (inbox_tx, inbox) = mpsc::channel::<Frame>(1024);
        let link = Arc::new(Link {
            out,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: watch::channel(false).0,
        });
        let mut closed = link.closed.subscribe();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = out_rx.recv() => f,
                    _ = closed.wait_for(|c| *c) => None,
                };
                let Some(bytes) = frame else { break };
                use tokio::io::AsyncWriteExt;
                if let Err(e) = writer.write_all(&bytes).await {
                    tracing::debug!(event = "replication_write_failed", error = %e);
                    break;
                }
            }
            use tokio::io::AsyncWriteExt;
            let _ = writer.shutdown().await;
        });
        let reading = Arc::clone(&link);
        tokio::spawn(async move {
            let mut closed = reading.closed.subscribe();
            loop {
                let frame = tokio::select! {
                    f = tokio::time::timeout(IDLE_TIMEOUT, wire::read_frame(&mut reader)) => f,
                    _ = closed.wait_for(|c| *c) => break,
                    _ = shutdown.changed() => break,
                };
                let (frame, size) = match frame {
                    Ok(Ok(Some(f))) => f,
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(event = "replication_read_failed", error = %e);
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(
                            event = "replication_idle",
                            "nothing from the peer; closing the link"
                        );
                        break;
                    }
                };
                let _ = size;
                match frame.msg {
                    Msg::Request { id, request } => {
                        let link = Arc::clone(&reading);
                        let replication = Arc::clone(&replication);
                        tokio::spawn(async move {
                            let answer = check::answer(&replication, request).await;
                            let _ = link.send(answer.into_response(id)).await;
                        });
                    }
                    Msg::Response { id, .. } => {
                        let waiter = reading
                            .pending
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(frame);
                        }
                    }
                    _ => {
                        if inbox_tx.send(frame).await.is_err() {
                            break;
                        }
                    }
                }
            }
            reading.close();
        });
        (link, inbox)
    }

    pub async fn send(&self, frame: Frame) -> anyhow::Result<()> {
        self.send_counted(frame).await.map(|_| ())
    }

    /// Queues a frame; its size on the wire (for the throttle and counters).
    async fn send_counted(&self, frame: Frame) -> anyhow::Result<usize> {
        let bytes = wire::encode(&frame)?;
        let size = bytes.len();
        self.out
            .send(bytes)
            .await
            .map_err(|_| anyhow::anyhow!("the link closed"))?;
        Ok(size)
    }

    pub fn close(&self) {
        self.closed.send_replace(true);
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    async fn closed(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// Asks the peer; its answer (or an error after `timeout`).
    pub async fn request(&self, request: Request, timeout: Duration) -> anyhow::Result<Frame> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        self.send(Frame::new(Msg::Request { id, request })).await?;
        let frame = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| anyhow::anyhow!("the peer did not answer in {timeout:?}"))?
            .map_err(|_| anyhow::anyhow!("the link closed"))?;
        if let Msg::Response {
            error: Some(error), ..
        } = &frame.msg
        {
            anyhow::bail!("the peer: {error}");
        }
        Ok(frame)
    }
}
