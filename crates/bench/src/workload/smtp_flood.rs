//! Issue 5's flood: legitimate senders at a steady rate while a run of
//! near-identical spam arrives at a much higher one, over SMTP, each sender
//! from its own loopback address.
//!
//! Legitimate message `i` goes out from source `i % legit_sources`
//! (127.0.1.1, 127.0.1.2, ...), envelope sender `sender@legit{n}.test`, a
//! distinct text ([`MessageSpec`]); it is paced over the whole flood. Spam
//! copy `i` goes out during the middle phase only, from source
//! `i % spam_sources` (127.10.x.y, `spam_sources_per_net` per /24), envelope
//! sender `rewards{i}@deals{source}.test`, one template with a name, a
//! number and a URL varied ([`spam_copy`]). Every message has one recipient,
//! `{user_prefix}{i % users}@{domain}`.
//!
//! Each source keeps a pool of SMTP sessions (opened on demand up to its
//! bound, one opened before the clock starts), and every due message is a
//! task of its own that takes a free session, so the offered rate does not
//! drop while replies are slow; a message that finds its source's sessions
//! all busy waits for one (its lag is reported). Spam is never retried; a
//! legitimate message that gets a 4xx, or loses its connection, is tried once
//! more after `retry_after`. See [`crate::flood`] for what is counted where.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::{CONNECTIONS_MAX, Common, print_json};
use crate::connection::{connect_tcp_from, resolve_v4};
use crate::error::{ClientError, ClientErrorKind};
use crate::flood::{Attempt, Outcome, Pacer, Phase, Phases, Stream, summarize};
use crate::lmtp_reply::Reply;
use crate::message::{MessageSpec, spam_copy};
use crate::report::{self, FloodRecord, Header};
use crate::smtp_client::SmtpClient;
use crate::stats::SAMPLES_PER_RUN_MAX;

/// Most legitimate sources: 127.0.1.1 to 127.0.1.254.
pub const LEGIT_SOURCES_MAX: usize = 254;
/// Most spam sources per /24: 127.10.x.1 to 127.10.x.254.
pub const SOURCES_PER_NET_MAX: usize = 254;
/// Spam nets: 127.10.0.0/24 to 127.10.255.0/24.
pub const SPAM_NETS_MAX: usize = 256;
/// Highest rate of either stream.
pub const RATE_MAX: f64 = 100_000.0;
/// Longest phase.
pub const PHASE_SECS_MAX: u64 = 86_400;

#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The case's name in tables.
    pub name: String,
    /// The server measured, for the record.
    pub server: String,
    /// Legitimate messages per second, over all legitimate sources.
    pub legit_rate: f64,
    pub legit_sources: usize,
    /// Most sessions open at once per legitimate source.
    pub legit_connections_per_source: usize,
    pub legit_size_bytes: usize,
    /// Spam copies per second during the run, over all spam sources.
    pub spam_rate: f64,
    pub spam_sources: usize,
    /// Spam sources per /24 network.
    pub spam_sources_per_net: usize,
    /// Most sessions open at once per spam source.
    pub spam_connections_per_source: usize,
    pub phases: Phases,
    pub users: u64,
    pub user_prefix: String,
    /// Recipients are `{user}@{domain}`.
    pub domain: String,
    /// Wait before a legitimate sender's one retry.
    pub retry_after: Duration,
    pub seed: u64,
    /// A refusal naming this word (whole, any case) counts as the run's.
    pub run_word: String,
    /// Makes the legitimate messages.
    pub legit_spec: Arc<MessageSpec>,
}

impl FloodOptions {
    fn check(&self) -> anyhow::Result<()> {
        for (name, rate) in [
            ("--legit-rate", self.legit_rate),
            ("--spam-rate", self.spam_rate),
        ] {
            if !(rate.is_finite() && rate > 0.0 && rate <= RATE_MAX) {
                bail!("{name} must be more than 0 and at most {RATE_MAX} per second");
            }
        }
        if !(1..=LEGIT_SOURCES_MAX).contains(&self.legit_sources) {
            bail!("--legit-sources must be 1 to {LEGIT_SOURCES_MAX}");
        }
        if !(1..=SOURCES_PER_NET_MAX).contains(&self.spam_sources_per_net) {
            bail!("--spam-sources-per-net must be 1 to {SOURCES_PER_NET_MAX}");
        }
        let spam_sources_max = SPAM_NETS_MAX * self.spam_sources_per_net;
        if !(1..=spam_sources_max).contains(&self.spam_sources) {
            bail!(
                "--spam-sources must be 1 to {spam_sources_max} (256 networks of --spam-sources-per-net)"
            );
        }
        let connections = self
            .legit_sources
            .saturating_mul(self.legit_connections_per_source)
            .saturating_add(
                self.spam_sources
                    .saturating_mul(self.spam_connections_per_source),
            );
        if self.legit_connections_per_source == 0
            || self.spam_connections_per_source == 0
            || connections > CONNECTIONS_MAX
        {
            bail!(
                "connections per source must be at least 1, and all sources' together at most {CONNECTIONS_MAX}"
            );
        }
        let max = Duration::from_secs(PHASE_SECS_MAX);
        if self.phases.before > max || self.phases.during > max || self.phases.after > max {
            bail!("each phase may last at most {PHASE_SECS_MAX} s");
        }
        if self.phases.during.is_zero() {
            bail!("--during-secs must be more than 0");
        }
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if self.run_word.is_empty() || self.run_word.contains(char::is_whitespace) {
            bail!("--run-word must be one word");
        }
        Ok(())
    }

    fn legit_pacer(&self) -> anyhow::Result<Pacer> {
        Pacer::new(self.legit_rate, Duration::ZERO, self.phases.total())
            .map_err(|error| anyhow!(error))
    }

    fn spam_pacer(&self) -> anyhow::Result<Pacer> {
        Pacer::new(self.spam_rate, self.phases.spam_start(), self.phases.during)
            .map_err(|error| anyhow!(error))
    }
}

/// Source address of legitimate source `index`: 127.0.1.(index + 1).
pub fn legit_source(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, (index % LEGIT_SOURCES_MAX + 1) as u8)
}

/// Source address of spam source `index`, `per_net` to a /24:
/// 127.10.(index / per_net).(index % per_net + 1).
pub fn spam_source(index: usize, per_net: usize) -> Ipv4Addr {
    let per_net = per_net.clamp(1, SOURCES_PER_NET_MAX);
    Ipv4Addr::new(
        127,
        10,
        (index / per_net % SPAM_NETS_MAX) as u8,
        (index % per_net + 1) as u8,
    )
}

/// One sending host: its address, the name it gives in EHLO, and its pool.
struct Source {
    address: Ipv4Addr,
    helo: String,
    /// Sessions between transactions.
    idle: Mutex<Vec<SmtpClient<TcpStream>>>,
    /// One permit per session that may be open.
    slots: Semaphore,
}

impl Source {
    fn new(address: Ipv4Addr, helo: String, connections: usize) -> Self {
        Source {
            address,
            helo,
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(connections),
        }
    }

    fn take_idle(&self) -> Option<SmtpClient<TcpStream>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn put_idle(&self, client: SmtpClient<TcpStream>) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(client);
    }

    fn drain_idle(&self) -> Vec<SmtpClient<TcpStream>> {
        std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// What every attempt needs to know.
struct Shared {
    remote: SocketAddr,
    io_timeout: Duration,
    buffer_bytes_max: usize,
    run_word: String,
    /// The flood's clock starts here.
    start: Instant,
}

impl Shared {
    fn clock(&self) -> Duration {
        self.start.elapsed()
    }

    async fn open(
        &self,
        source: &Source,
    ) -> Result<Result<SmtpClient<TcpStream>, crate::smtp_client::Refusal>, ClientError> {
        let connection = connect_tcp_from(
            source.address,
            self.remote,
            self.io_timeout,
            self.buffer_bytes_max,
        )
        .await?;
        SmtpClient::open(connection, &source.helo).await
    }
}

/// One message to send.
struct Job {
    stream: Stream,
    scheduled: Duration,
    sender: String,
    recipient: String,
    message: Vec<u8>,
}

/// # Errors
/// Bad options, an address that does not resolve, a session that cannot be
/// opened before the clock starts (binding a 127.x address needs Linux), or
/// a task that panicked. Refusals and lost connections during the flood are
/// counted, not errors.
pub async fn run(common: &Common, options: &FloodOptions) -> anyhow::Result<FloodRecord> {
    options.check()?;
    let legit_pacer = options.legit_pacer()?;
    let spam_pacer = options.spam_pacer()?;
    let messages = legit_pacer.count().saturating_mul(2) + spam_pacer.count();
    if messages > SAMPLES_PER_RUN_MAX as u64 {
        bail!("the flood would make {messages} attempts; at most {SAMPLES_PER_RUN_MAX}");
    }
    if legit_pacer.count() == 0 {
        bail!("--legit-rate is too low to send one message in the flood");
    }
    let remote = resolve_v4(&common.address).await?;
    let header = header(common, options);

    let legit_sources: Vec<Arc<Source>> = (0..options.legit_sources)
        .map(|index| {
            Arc::new(Source::new(
                legit_source(index),
                format!("mail.legit{}.test", index + 1),
                options.legit_connections_per_source,
            ))
        })
        .collect();
    let spam_sources: Vec<Arc<Source>> = (0..options.spam_sources)
        .map(|index| {
            let address = spam_source(index, options.spam_sources_per_net);
            let [_, b, c, d] = address.octets();
            Arc::new(Source::new(
                address,
                format!("host-127-{b}-{c}-{d}.dyn.test"),
                options.spam_connections_per_source,
            ))
        })
        .collect();

    eprintln!(
        "{}: opening a session from each of {} legitimate and {} spam sources",
        options.name, options.legit_sources, options.spam_sources
    );
    let shared = Shared {
        remote,
        io_timeout: common.io_timeout,
        buffer_bytes_max: common.buffer_bytes_max,
        run_word: options.run_word.clone(),
        start: Instant::now(),
    };
    prewarm(&shared, legit_sources.iter().chain(&spam_sources)).await?;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        ..shared
    });
    eprintln!(
        "{}: {:.0} s: {} s legitimate only, {} s with the spam run, {} s legitimate only",
        options.name,
        options.phases.total().as_secs_f64(),
        options.phases.before.as_secs_f64(),
        options.phases.during.as_secs_f64(),
        options.phases.after.as_secs_f64(),
    );
    let progress = tokio::spawn(announce_phases(
        Arc::clone(&shared),
        options.phases,
        options.name.clone(),
    ));

    let legit = {
        let shared = Arc::clone(&shared);
        let options = options.clone();
        let sources = legit_sources.clone();
        pace(Arc::clone(&shared), legit_pacer, move |index, scheduled| {
            let shared = Arc::clone(&shared);
            let source_index = index as usize % sources.len();
            let source = Arc::clone(&sources[source_index]);
            let recipient = recipient(&options, index);
            let spec = Arc::clone(&options.legit_spec);
            let retry_after = options.retry_after;
            async move {
                let job = Job {
                    stream: Stream::Legit,
                    scheduled,
                    sender: format!("sender@legit{}.test", source_index + 1),
                    message: spec.build(index, &recipient),
                    recipient,
                };
                legit_message(&shared, &source, &job, retry_after).await
            }
        })
    };
    let spam = {
        let shared = Arc::clone(&shared);
        let options = options.clone();
        let sources = spam_sources.clone();
        pace(Arc::clone(&shared), spam_pacer, move |index, scheduled| {
            let shared = Arc::clone(&shared);
            let source_index = index as usize % sources.len();
            let source = Arc::clone(&sources[source_index]);
            let recipient = recipient(&options, index);
            let seed = options.seed;
            async move {
                let sender_domain = format!("deals{source_index}.test");
                let job = Job {
                    stream: Stream::Spam,
                    scheduled,
                    sender: format!("rewards{index}@{sender_domain}"),
                    message: spam_copy(seed, index, &recipient, &sender_domain),
                    recipient,
                };
                vec![attempt(&shared, &source, &job, false).await]
            }
        })
    };
    let (legit, spam) = tokio::join!(legit, spam);
    progress.abort();
    let mut attempts = legit?;
    attempts.extend(spam?);
    eprintln!(
        "{}: every reply in after {:.1} s; closing the sessions",
        options.name,
        shared.clock().as_secs_f64()
    );
    close_all(legit_sources.iter().chain(&spam_sources)).await;

    let summary = summarize(&attempts, &options.phases);
    let record = FloodRecord {
        record: report::RECORD_FLOOD.into(),
        header,
        summary,
    };
    eprint!("{}", report::flood_table(&record));
    print_json(&record)?;
    Ok(record)
}

fn header(common: &Common, options: &FloodOptions) -> Header {
    Header {
        workload: "smtp-flood".into(),
        name: options.name.clone(),
        server: options.server.clone(),
        operation: "delivery".into(),
        parameters: json!({
            "address": common.address,
            "legit_rate": options.legit_rate,
            "legit_sources": options.legit_sources,
            "legit_source_first": legit_source(0).to_string(),
            "legit_connections_per_source": options.legit_connections_per_source,
            "legit_size_bytes": options.legit_size_bytes,
            "spam_rate": options.spam_rate,
            "spam_sources": options.spam_sources,
            "spam_sources_per_net": options.spam_sources_per_net,
            "spam_source_first": spam_source(0, options.spam_sources_per_net).to_string(),
            "spam_connections_per_source": options.spam_connections_per_source,
            "before_secs": options.phases.before.as_secs_f64(),
            "during_secs": options.phases.during.as_secs_f64(),
            "after_secs": options.phases.after.as_secs_f64(),
            "users": options.users,
            "user_prefix": options.user_prefix,
            "domain": options.domain,
            "retry_after_ms": options.retry_after.as_millis() as u64,
            "run_word": options.run_word,
            "seed": options.seed,
            "timeout_secs": common.io_timeout.as_secs(),
        }),
    }
}

fn recipient(options: &FloodOptions, index: u64) -> String {
    format!(
        "{}{}@{}",
        options.user_prefix,
        index % options.users,
        options.domain
    )
}

/// Opens one session per source before the clock starts.
///
/// # Errors
/// The first source that could not open one, with why.
async fn prewarm<'a>(
    shared: &Shared,
    sources: impl Iterator<Item = &'a Arc<Source>>,
) -> anyhow::Result<()> {
    let mut opening = JoinSet::new();
    for source in sources {
        let source = Arc::clone(source);
        let remote = shared.remote;
        let io_timeout = shared.io_timeout;
        let buffer_bytes_max = shared.buffer_bytes_max;
        opening.spawn(async move {
            let connection =
                connect_tcp_from(source.address, remote, io_timeout, buffer_bytes_max).await?;
            let opened = SmtpClient::open(connection, &source.helo).await?;
            let client = opened.map_err(|refusal| {
                ClientError::refused(format!("from {}: {refusal}", source.address))
            })?;
            source.put_idle(client);
            Ok::<(), ClientError>(())
        });
    }
    let mut first_error = None;
    while let Some(result) = opening.join_next().await {
        let error = match result {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => anyhow::Error::new(error),
            Err(error) => anyhow!("a task failed: {error}"),
        };
        first_error.get_or_insert(error);
    }
    match first_error {
        Some(error) => Err(error).context(
            "opening SMTP sessions before the flood (every 127.x.y.z address is loopback on Linux only)",
        ),
        None => Ok(()),
    }
}

/// Sends QUIT on every idle session; errors do not matter any more.
async fn close_all<'a>(sources: impl Iterator<Item = &'a Arc<Source>>) {
    let mut closing = JoinSet::new();
    for source in sources {
        for client in source.drain_idle() {
            closing.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }
    while closing.join_next().await.is_some() {}
}

/// Prints a line on stderr as each phase begins.
async fn announce_phases(shared: Arc<Shared>, phases: Phases, name: String) {
    for phase in Phase::ALL {
        let (start, _) = phases.window(phase);
        tokio::time::sleep_until((shared.start + start).into()).await;
        let what = match phase {
            Phase::During => "legitimate mail and the spam run",
            Phase::Before | Phase::After => "legitimate mail only",
        };
        eprintln!(
            "{name}: {:.1} s: phase {}: {what} for {:.0} s",
            shared.clock().as_secs_f64(),
            phase.name(),
            phases.length(phase).as_secs_f64()
        );
    }
}

/// Starts one task per message as it falls due, open-loop, and returns
/// every attempt once all have their replies.
///
/// # Errors
/// A task that panicked.
async fn pace<F, Fut>(
    shared: Arc<Shared>,
    pacer: Pacer,
    mut task: F,
) -> anyhow::Result<Vec<Attempt>>
where
    F: FnMut(u64, Duration) -> Fut,
    Fut: Future<Output = Vec<Attempt>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    let mut attempts = Vec::new();
    let mut collect = |result: Result<Vec<Attempt>, tokio::task::JoinError>| {
        result
            .map(|mut done| attempts.append(&mut done))
            .map_err(|error| anyhow!("a sending task failed: {error}"))
    };
    if pacer.count() > 0 {
        tokio::time::sleep_until((shared.start + pacer.scheduled(0)).into()).await;
        let mut interval = tokio::time::interval(pacer.tick());
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next = 0;
        // Bounded by the pacer's count: every tick ends when the due ones
        // are started, and due() reaches count once the stream's time is up.
        while next < pacer.count() {
            interval.tick().await;
            let due = pacer.due(shared.clock());
            while next < due {
                tasks.spawn(task(next, pacer.scheduled(next)));
                next += 1;
            }
            while let Some(result) = tasks.try_join_next() {
                collect(result)?;
            }
        }
    }
    while let Some(result) = tasks.join_next().await {
        collect(result)?;
    }
    Ok(attempts)
}

/// A legitimate message: one attempt, and one more after `retry_after` when
/// the first got a 4xx or lost its connection.
async fn legit_message(
    shared: &Shared,
    source: &Source,
    job: &Job,
    retry_after: Duration,
) -> Vec<Attempt> {
    let first = attempt(shared, source, job, false).await;
    if !matches!(first.outcome, Outcome::TempFailed | Outcome::Error) {
        return vec![first];
    }
    tokio::time::sleep(retry_after).await;
    let second = attempt(shared, source, job, true).await;
    vec![first, second]
}

/// One try at one message: a free session of `source` (or a new one), the
/// transaction, and the session back in the pool if it is still usable.
async fn attempt(shared: &Shared, source: &Source, job: &Job, retry: bool) -> Attempt {
    let ended = |started, outcome, mentions_run, note| Attempt {
        stream: job.stream,
        retry,
        scheduled: job.scheduled,
        started,
        finished: shared.clock(),
        outcome,
        mentions_run,
        note,
    };
    // Never closed, so acquire cannot fail; if it did, say so.
    let Ok(_permit) = source.slots.acquire().await else {
        return ended(None, Outcome::Error, false, Some("no session slot".into()));
    };
    let mut pooled = source.take_idle();
    // At most two passes: a session from the pool may have been closed by
    // the server since its last transaction (an idle timeout, or a server
    // that drops senders it distrusts); a sender then opens a new one, and
    // so do we, once.
    let (started, client, result) = loop {
        let reused = pooled.is_some();
        let mut client = match pooled.take() {
            Some(client) => client,
            None => match shared.open(source).await {
                Ok(Ok(client)) => client,
                Ok(Err(refusal)) => {
                    let mentions_run = refusal.reply.mentions(&shared.run_word);
                    return ended(
                        None,
                        outcome_of(&refusal.reply),
                        mentions_run,
                        Some(refusal.to_string()),
                    );
                }
                Err(error) => {
                    return ended(None, Outcome::Error, false, Some(error.to_string()));
                }
            },
        };
        let started = shared.clock();
        let result = client
            .send(&job.sender, &[&job.recipient], &job.message)
            .await;
        let stale = reused
            && matches!(&result, Err(error)
                if matches!(error.kind, ClientErrorKind::Closed | ClientErrorKind::Io));
        if !stale {
            break (started, client, result);
        }
    };
    match result {
        Ok(transaction) => {
            if client.is_usable() {
                source.put_idle(client);
            }
            let mentions_run = transaction
                .refusals()
                .any(|reply| reply.mentions(&shared.run_word));
            if transaction.accepted() {
                ended(Some(started), Outcome::Accepted, mentions_run, None)
            } else {
                ended(
                    Some(started),
                    outcome_of(&transaction.reply),
                    mentions_run,
                    Some(transaction.to_string()),
                )
            }
        }
        // The session is dropped: its state is unknown.
        Err(error) => ended(
            Some(started),
            Outcome::Error,
            false,
            Some(error.to_string()),
        ),
    }
}

/// The outcome a refusing reply stands for.
fn outcome_of(reply: &Reply) -> Outcome {
    if reply.is_transient_negative() {
        Outcome::TempFailed
    } else if reply.is_permanent_negative() {
        Outcome::Refused
    } else {
        // A success or 3xx where a refusal was expected: count it as broken.
        Outcome::Error
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_loopback_addresses_in_the_planned_networks() {
        assert_eq!(legit_source(0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(legit_source(4), Ipv4Addr::new(127, 0, 1, 5));
        // One spam source per /24 by default: 200 networks.
        assert_eq!(spam_source(0, 1), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(spam_source(199, 1), Ipv4Addr::new(127, 10, 199, 1));
        // Ten to a /24: 20 networks.
        assert_eq!(spam_source(0, 10), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(spam_source(9, 10), Ipv4Addr::new(127, 10, 0, 10));
        assert_eq!(spam_source(10, 10), Ipv4Addr::new(127, 10, 1, 1));
        assert_eq!(spam_source(199, 10), Ipv4Addr::new(127, 10, 19, 10));
        let all: std::collections::BTreeSet<Ipv4Addr> = (0..SPAM_NETS_MAX * 3)
            .map(|index| spam_source(index, 3))
            .collect();
        assert_eq!(all.len(), SPAM_NETS_MAX * 3);
        assert!(all.iter().all(|address| address.is_loopback()));
    }

    #[test]
    fn refusals_map_to_outcomes() {
        let reply = |code| Reply {
            code,
            lines: vec!["x".into()],
        };
        assert_eq!(outcome_of(&reply(451)), Outcome::TempFailed);
        assert_eq!(outcome_of(&reply(421)), Outcome::TempFailed);
        assert_eq!(outcome_of(&reply(550)), Outcome::Refused);
        assert_eq!(outcome_of(&reply(354)), Outcome::Error);
    }

    fn options() -> FloodOptions {
        FloodOptions {
            name: "smtp-flood".into(),
            server: "postern".into(),
            legit_rate: 20.0,
            legit_sources: 5,
            legit_connections_per_source: 8,
            legit_size_bytes: 4096,
            spam_rate: 1000.0,
            spam_sources: 200,
            spam_sources_per_net: 1,
            spam_connections_per_source: 4,
            phases: Phases {
                before: Duration::from_secs(10),
                during: Duration::from_secs(30),
                after: Duration::from_secs(10),
            },
            users: 100,
            user_prefix: "user".into(),
            domain: "bench.test".into(),
            retry_after: Duration::from_secs(1),
            seed: 1,
            run_word: "run".into(),
            legit_spec: Arc::new(MessageSpec::new(1, 4096, None, "bench.test").unwrap()),
        }
    }

    #[test]
    fn the_default_flood_is_valid_and_its_streams_have_the_planned_sizes() {
        let options = options();
        options.check().unwrap();
        assert_eq!(options.legit_pacer().unwrap().count(), 1000);
        let spam = options.spam_pacer().unwrap();
        assert_eq!(spam.count(), 30_000);
        assert_eq!(spam.scheduled(0), Duration::from_secs(10));
        assert_eq!(recipient(&options, 123), "user23@bench.test");
    }

    #[test]
    fn bad_floods_are_refused() {
        let bad = [
            FloodOptions {
                spam_rate: 0.0,
                ..options()
            },
            FloodOptions {
                legit_rate: f64::INFINITY,
                ..options()
            },
            FloodOptions {
                legit_sources: 255,
                ..options()
            },
            FloodOptions {
                spam_sources: 257,
                ..options()
            },
            FloodOptions {
                spam_sources_per_net: 0,
                ..options()
            },
            FloodOptions {
                spam_connections_per_source: 100,
                ..options()
            },
            FloodOptions {
                phases: Phases {
                    during: Duration::ZERO,
                    ..options().phases
                },
                ..options()
            },
            FloodOptions {
                users: 0,
                ..options()
            },
            FloodOptions {
                run_word: "bulk run".into(),
                ..options()
            },
        ];
        for options in bad {
            assert!(options.check().is_err(), "{options:?}");
        }
    }
}
