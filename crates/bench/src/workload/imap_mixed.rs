//! IMAP mixed sessions: `clients` concurrent clients, client `c` logging
//! in as `{user_prefix}{c}` (a user of its own, its INBOX filled first),
//! each running `sessions` whole sessions one after another:
//!
//! connect and LOGIN, SELECT INBOX, `FETCH 1:* (FLAGS)`, `FETCH` of the
//! envelopes (with flags, UID, size, internal date) of the last 50, `FETCH
//! n BODY.PEEK[]` of 1 to 3 messages, `STORE set +FLAGS (\Seen)` on 1 to 3,
//! one `SEARCH` (`UNSEEN` or `SUBJECT "n"`), `APPEND` of a small message
//! (about 1.5 KB), `UID STORE uid +FLAGS.SILENT (\Deleted)` and `UID
//! EXPUNGE uid` of the message it appended (its UID from UIDPLUS's
//! APPENDUID), LOGOUT.
//!
//! Which messages and which SEARCH are a pure function of the seed, the
//! client, the session and the message count ([`SessionScript::generate`]),
//! so every server gets the same commands. Every command is timed on its
//! own (the two of the expunge together), and the whole session from
//! connect to LOGOUT's reply is one `session` operation: the `session` row's
//! throughput is sessions per second. Warm-up (the first 5% of each
//! operation kind to finish) is dropped as in every workload.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;

use super::{Common, RUNS_MAX, StopFlag, Timed, print_run, summarize_per_op};
use crate::connection::{connect_tcp_from, resolve_v4};
use crate::imap_client::{ImapClient, Secret};
use crate::report::{Header, SummaryRecord};
use crate::stats::{RunSummary, SAMPLES_PER_RUN_MAX, Sample, summarize_run};

/// Most concurrent clients.
pub const CLIENTS_MAX: usize = 20_000;
/// Envelopes fetched per session: the last this many messages.
pub const ENVELOPES: u32 = 50;
/// Client sessions per source address (127.x.y.z), far below the ~28,000
/// ephemeral ports of one.
const CLIENTS_PER_SOURCE: usize = 250;

#[derive(Debug, Clone)]
pub struct MixedOptions {
    pub name: String,
    pub server: String,
    pub clients: usize,
    /// Sessions per client per run.
    pub sessions: usize,
    pub user_prefix: String,
    /// Client `c` is `{user_prefix}{first_user + c}`.
    pub first_user: usize,
    pub password: Secret,
    pub mailbox: String,
    pub seed: u64,
    /// Domain in the appended messages' addresses.
    pub domain: String,
}

/// The kinds of operation timed, in the order of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Session,
    Login,
    Select,
    FetchFlags,
    FetchEnvelopes,
    FetchBody,
    Store,
    Search,
    Append,
    Expunge,
    Logout,
}

impl Op {
    pub const ALL: [Op; 11] = [
        Op::Session,
        Op::Login,
        Op::Select,
        Op::FetchFlags,
        Op::FetchEnvelopes,
        Op::FetchBody,
        Op::Store,
        Op::Search,
        Op::Append,
        Op::Expunge,
        Op::Logout,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Session => "session",
            Op::Login => "connect+LOGIN",
            Op::Select => "SELECT",
            Op::FetchFlags => "FETCH 1:* FLAGS",
            Op::FetchEnvelopes => "FETCH last 50 ENVELOPE",
            Op::FetchBody => "FETCH BODY.PEEK[]",
            Op::Store => "STORE +FLAGS \\Seen",
            Op::Search => "SEARCH",
            Op::Append => "APPEND",
            Op::Expunge => "UID STORE \\Deleted + UID EXPUNGE",
            Op::Logout => "LOGOUT",
        }
    }
}

/// The choices of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionScript {
    /// Sequence numbers to FETCH BODY.PEEK[] of, one command each.
    pub bodies: Vec<u32>,
    /// Sequence numbers to mark \Seen, in one STORE.
    pub seen: Vec<u32>,
    /// SEARCH criteria.
    pub search: String,
    /// The message to APPEND.
    pub append: Vec<u8>,
}

/// SplitMix64: a tiny generator whose output is fixed forever, so a seed
/// means the same session on every build.
#[derive(Debug, Clone)]
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

const WORDS: [&str; 16] = [
    "meeting", "invoice", "report", "lunch", "budget", "draft", "review", "travel", "update",
    "question", "notes", "plan", "summary", "photos", "contract", "schedule",
];

impl SessionScript {
    /// The script of session `session` of client `client` in a mailbox of
    /// `exists` messages (at least 1).
    pub fn generate(
        seed: u64,
        client: u64,
        session: u64,
        exists: u32,
        user: &str,
        domain: &str,
    ) -> Self {
        let mut rng = SplitMix(
            seed ^ client.wrapping_mul(0xD6E8_FEB8_6659_FD93)
                ^ session.wrapping_mul(0xA076_1D64_78BD_642F),
        );
        let exists = u64::from(exists.max(1));
        let pick = |rng: &mut SplitMix, count: u64| -> Vec<u32> {
            let mut numbers: Vec<u32> = (0..count)
                .map(|_| u32::try_from(rng.between(1, exists)).unwrap_or(1))
                .collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers
        };
        let bodies_count = rng.between(1, 3);
        let bodies = pick(&mut rng, bodies_count);
        let seen_count = rng.between(1, 3);
        let seen = pick(&mut rng, seen_count);
        let search = if rng.next().is_multiple_of(2) {
            "UNSEEN".to_string()
        } else {
            format!("SUBJECT \"{}\"", rng.between(0, 999))
        };
        let mut body = String::new();
        for line in 0..rng.between(15, 25) {
            let words: Vec<&str> = (0..8)
                .map(|_| WORDS[(rng.next() % WORDS.len() as u64) as usize])
                .collect();
            body.push_str(&format!("{line:02} {}\r\n", words.join(" ")));
        }
        let subject = WORDS[(rng.next() % WORDS.len() as u64) as usize];
        let append = format!(
            "From: Mixed Client <client{client}@bench.invalid>\r\nTo: <{user}@{domain}>\r\n\
             Subject: {subject} from session {session}\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\n\
             Message-ID: <mixed.{seed:x}.{client}.{session}@bench.invalid>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=us-ascii\r\n\r\n{body}"
        )
        .into_bytes();
        SessionScript {
            bodies,
            seen,
            search,
            append,
        }
    }
}

/// Source address of connection `index` when `per_source` share one:
/// 127.`second`.y.z, z in 1..=250, so none is a network or broadcast
/// address.
pub fn source_address(second: u8, index: usize, per_source: usize) -> Ipv4Addr {
    let source = index / per_source.max(1);
    let third = (source / 250) % 256;
    let fourth = source % 250 + 1;
    Ipv4Addr::new(
        127,
        second.wrapping_add(u8::try_from(source / 250 / 256).unwrap_or(0)),
        u8::try_from(third).unwrap_or(0),
        u8::try_from(fourth).unwrap_or(1),
    )
}

/// Runs `runs` runs; prints a run record per operation kind per run, and a
/// summary per kind at the end.
///
/// # Errors
/// Bad options, a failed session (a refused command, a wrong count, no
/// APPENDUID), or a run too short to summarize.
pub async fn run(common: &Common, options: &MixedOptions) -> anyhow::Result<Vec<SummaryRecord>> {
    if !(1..=CLIENTS_MAX).contains(&options.clients) {
        bail!("--clients must be 1 to {CLIENTS_MAX}");
    }
    if !(1..=RUNS_MAX).contains(&common.runs) {
        bail!("--runs must be 1 to {RUNS_MAX}");
    }
    if options.sessions == 0
        || options
            .sessions
            .saturating_mul(options.clients)
            .saturating_mul(20)
            > SAMPLES_PER_RUN_MAX
    {
        bail!("--sessions must be at least 1 (and sessions x clients not huge)");
    }
    if options.sessions.saturating_mul(options.clients) < 2 {
        bail!("--sessions times --clients must be at least 2");
    }
    let remote = resolve_v4(&common.address).await?;
    let header = |op: Op| Header {
        workload: "imap-mixed".into(),
        name: format!("{}: {}", options.name, op.name()),
        server: options.server.clone(),
        operation: op.name().into(),
        parameters: json!({
            "address": common.address,
            "clients": options.clients,
            "sessions_per_client": options.sessions,
            "user_prefix": options.user_prefix,
            "first_user": options.first_user,
            "mailbox": options.mailbox,
            "seed": options.seed,
        }),
    };
    let mut per_op: BTreeMap<Op, Vec<RunSummary>> = BTreeMap::new();
    for run in 0..common.runs {
        let samples = one_run(common, options, remote, run)
            .await
            .with_context(|| format!("{} run {}", options.name, run + 1))?;
        for op in Op::ALL {
            let Some(op_samples) = samples.get(&op) else {
                continue;
            };
            // A mailbox whose session kinds never ran (none here) or ran
            // once has nothing to report.
            if op_samples.len() < 2 {
                continue;
            }
            let summary = summarize_run(op_samples.clone())
                .with_context(|| format!("{} run {}: {}", options.name, run + 1, op.name()))?;
            if op == Op::Session {
                eprintln!(
                    "{} run {}/{}: {:.1} sessions/s, session p50 {:.1} ms, p99 {:.1} ms",
                    options.name,
                    run + 1,
                    common.runs,
                    summary.throughput_per_second,
                    summary.latency_us_p50 as f64 / 1000.0,
                    summary.latency_us_p99 as f64 / 1000.0,
                );
            }
            print_run(header(op), run, &summary)?;
            per_op.entry(op).or_default().push(summary);
        }
    }
    summarize_per_op(per_op, header)
}

type Timings = Vec<(Op, Timed)>;

async fn one_run(
    common: &Common,
    options: &MixedOptions,
    remote: SocketAddr,
    run: usize,
) -> anyhow::Result<BTreeMap<Op, Vec<Sample>>> {
    let stop = StopFlag::default();
    let mut tasks = Vec::with_capacity(options.clients);
    for client in 0..options.clients {
        let (common, options, stop) = (common.clone(), options.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let result = client_loop(&common, &options, remote, client, run, &stop).await;
            if result.is_err() {
                stop.stop();
            }
            result
        }));
    }
    let mut timings = Vec::new();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(mut client_timings)) => timings.append(&mut client_timings),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(join_error) => {
                first_error.get_or_insert(anyhow!("a client task failed: {join_error}"));
            }
        }
    }
    if let Some(error) = first_error {
        return Err(error);
    }
    let Some(run_start) = timings.iter().map(|(_, timed)| timed.started).min() else {
        bail!("the run performed no operations");
    };
    let mut samples: BTreeMap<Op, Vec<Sample>> = BTreeMap::new();
    for (op, timed) in timings {
        samples.entry(op).or_default().push(Sample {
            finished: timed.finished - run_start,
            latency: timed.finished - timed.started,
        });
    }
    Ok(samples)
}

async fn client_loop(
    common: &Common,
    options: &MixedOptions,
    remote: SocketAddr,
    client: usize,
    run: usize,
    stop: &StopFlag,
) -> anyhow::Result<Timings> {
    let user = format!("{}{}", options.user_prefix, options.first_user + client);
    let source = source_address(20, client, CLIENTS_PER_SOURCE);
    let mut timings = Vec::with_capacity(options.sessions * 12);
    for session in 0..options.sessions {
        // Another client failed: this run's result is thrown away.
        if stop.is_stopped() {
            break;
        }
        // Sessions are numbered across runs, so no run repeats another's.
        let number = (run * options.sessions + session) as u64;
        one_session(
            common,
            options,
            remote,
            source,
            client as u64,
            number,
            &user,
            &mut timings,
        )
        .await
        .with_context(|| format!("client {client} ({user}) session {number}"))?;
    }
    Ok(timings)
}

#[allow(clippy::too_many_arguments)]
async fn one_session(
    common: &Common,
    options: &MixedOptions,
    remote: SocketAddr,
    source: Ipv4Addr,
    client: u64,
    session: u64,
    user: &str,
    timings: &mut Timings,
) -> anyhow::Result<()> {
    let session_started = std::time::Instant::now();
    let (result, timed) = Timed::measure(async {
        let connection =
            connect_tcp_from(source, remote, common.io_timeout, common.buffer_bytes_max).await?;
        let mut imap = ImapClient::start(connection).await?;
        imap.login(user, &options.password).await?;
        Ok::<_, crate::error::ClientError>(imap)
    })
    .await;
    let mut imap = result.context("connect and LOGIN")?;
    timings.push((Op::Login, timed));

    let (result, timed) = Timed::measure(imap.select(&options.mailbox)).await;
    let exists = result.context("SELECT")?;
    timings.push((Op::Select, timed));
    if exists == 0 {
        bail!("{} of {user} is empty: fill it first", options.mailbox);
    }
    let script =
        SessionScript::generate(options.seed, client, session, exists, user, &options.domain);

    let (result, timed) = Timed::measure(imap.fetch("1:*", "(FLAGS)")).await;
    let (responses, _) = result.context("FETCH 1:* (FLAGS)")?;
    if responses < exists {
        bail!("FETCH 1:* (FLAGS) returned {responses} of {exists} messages");
    }
    timings.push((Op::FetchFlags, timed));

    let first = exists.saturating_sub(ENVELOPES - 1).max(1);
    let (result, timed) = Timed::measure(imap.fetch(
        &format!("{first}:{exists}"),
        "(UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)",
    ))
    .await;
    let (_, envelopes) = result.context("FETCH of envelopes")?;
    if envelopes < exists - first + 1 {
        bail!("FETCH {first}:{exists} ENVELOPE returned {envelopes} envelopes");
    }
    timings.push((Op::FetchEnvelopes, timed));

    for &number in &script.bodies {
        let (result, timed) =
            Timed::measure(imap.fetch(&number.to_string(), "(BODY.PEEK[])")).await;
        let (responses, _) = result.context("FETCH BODY.PEEK[]")?;
        if responses == 0 {
            bail!("FETCH {number} BODY.PEEK[] returned nothing");
        }
        timings.push((Op::FetchBody, timed));
    }

    let set: Vec<String> = script.seen.iter().map(u32::to_string).collect();
    let (result, timed) =
        Timed::measure(imap.simple(&format!("STORE {} +FLAGS (\\Seen)", set.join(",")))).await;
    result.context("STORE +FLAGS (\\Seen)")?;
    timings.push((Op::Store, timed));

    let (result, timed) = Timed::measure(imap.search(&script.search)).await;
    result.with_context(|| format!("SEARCH {}", script.search))?;
    timings.push((Op::Search, timed));

    let (result, timed) = Timed::measure(imap.append(&options.mailbox, &script.append)).await;
    let uid = result
        .context("APPEND")?
        .context("APPEND gave no APPENDUID (the server lacks UIDPLUS?)")?;
    timings.push((Op::Append, timed));

    let (result, timed) = Timed::measure(async {
        imap.simple(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"))
            .await?;
        imap.simple(&format!("UID EXPUNGE {uid}")).await
    })
    .await;
    result.context("UID STORE \\Deleted and UID EXPUNGE")?;
    timings.push((Op::Expunge, timed));

    let (result, timed) = Timed::measure(imap.logout()).await;
    result.context("LOGOUT")?;
    timings.push((Op::Logout, timed));
    timings.push((
        Op::Session,
        Timed {
            started: session_started,
            finished: timed.finished,
        },
    ));
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_a_function_of_their_inputs() {
        let a = SessionScript::generate(1, 7, 3, 40, "mixed7", "example.com");
        let b = SessionScript::generate(1, 7, 3, 40, "mixed7", "example.com");
        assert_eq!(a, b);
        let scripts: Vec<SessionScript> = (0..50)
            .map(|session| SessionScript::generate(1, 7, session, 40, "mixed7", "example.com"))
            .collect();
        // Sessions differ from one another, and from another seed's.
        assert!(scripts.iter().any(|script| script.bodies != a.bodies));
        assert!(scripts.iter().any(|script| script.search != a.search));
        assert_ne!(
            SessionScript::generate(2, 7, 3, 40, "mixed7", "example.com"),
            a
        );
        for script in &scripts {
            assert!((1..=3).contains(&script.bodies.len()), "{script:?}");
            assert!((1..=3).contains(&script.seen.len()), "{script:?}");
            assert!(
                script
                    .bodies
                    .iter()
                    .chain(&script.seen)
                    .all(|n| (1..=40).contains(n))
            );
            assert!(script.bodies.windows(2).all(|pair| pair[0] < pair[1]));
            assert!(script.search == "UNSEEN" || script.search.starts_with("SUBJECT \""));
            let text = String::from_utf8(script.append.clone()).unwrap();
            assert!(text.contains("To: <mixed7@example.com>\r\n"), "{text}");
            assert!(text.contains("\r\n\r\n") && text.ends_with("\r\n"));
            assert!((800..4000).contains(&text.len()), "{}", text.len());
            assert!(!text.replace("\r\n", "").contains('\n'));
        }
        // Both kinds of SEARCH come up.
        assert!(scripts.iter().any(|script| script.search == "UNSEEN"));
        assert!(scripts.iter().any(|script| script.search != "UNSEEN"));
    }

    #[test]
    fn the_generator_is_fixed() {
        // SplitMix64's published first outputs for seed 0.
        let mut rng = SplitMix(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn one_message_mailboxes_pick_message_one() {
        let script = SessionScript::generate(5, 0, 0, 1, "u", "d");
        assert_eq!(script.bodies, vec![1]);
        assert_eq!(script.seen, vec![1]);
    }

    #[test]
    fn source_addresses_spread_and_skip_network_addresses() {
        assert_eq!(source_address(20, 0, 250), Ipv4Addr::new(127, 20, 0, 1));
        assert_eq!(source_address(20, 249, 250), Ipv4Addr::new(127, 20, 0, 1));
        assert_eq!(source_address(20, 250, 250), Ipv4Addr::new(127, 20, 0, 2));
        assert_eq!(
            source_address(20, 249 * 250, 250),
            Ipv4Addr::new(127, 20, 0, 250)
        );
        assert_eq!(
            source_address(20, 250 * 250, 250),
            Ipv4Addr::new(127, 20, 1, 1)
        );
        assert_eq!(source_address(21, 1000, 1), Ipv4Addr::new(127, 21, 4, 1));
        assert_eq!(
            source_address(21, 250 * 256, 1),
            Ipv4Addr::new(127, 22, 0, 1)
        );
    }
}
