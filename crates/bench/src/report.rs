//! What the benchmark prints: a JSON line per run and per workload (for
//! machines, on stdout), tables for people (on stderr), and the markdown
//! table of a whole `bench/run`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::flood::{Counts, FloodSummary};
use crate::stats::{Aggregate, RunSummary, Spread};
pub use crate::workload::imap_idle::{IdleRecord, RECORD_IDLE};

/// The kind of JSON line.
pub const RECORD_RUN: &str = "run";
pub const RECORD_SUMMARY: &str = "summary";
/// The one record of an `smtp-flood`: a flood is not repeated (the server
/// would remember the run), so it has no runs to take a median of.
pub const RECORD_FLOOD: &str = "flood";
/// What a server's processes spent on one LMTP run: CPU time and bytes
/// written to disk (`postern-bench lmtp --pid/--process-pattern`).
pub const RECORD_COST: &str = "cost";

/// What every record of one workload invocation shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// `lmtp`, `imap-fetch`, `imap-search`.
    pub workload: String,
    /// The case's name in tables (`lmtp-4k-4c-1000users`).
    pub name: String,
    /// The server measured (`postern`; later `dovecot`, `cyrus`).
    pub server: String,
    /// What one operation is (`delivery`, `fetch`, `search`).
    pub operation: String,
    /// The invocation's parameters, as given.
    pub parameters: serde_json::Value,
}

/// One JSON line per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub record: String,
    #[serde(flatten)]
    pub header: Header,
    /// 1-based.
    pub run: usize,
    #[serde(flatten)]
    pub summary: RunSummary,
}

/// One JSON line per workload invocation: the median of its runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRecord {
    pub record: String,
    #[serde(flatten)]
    pub header: Header,
    #[serde(flatten)]
    pub aggregate: Aggregate,
}

/// The one JSON line of an `smtp-flood`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodRecord {
    pub record: String,
    #[serde(flatten)]
    pub header: Header,
    #[serde(flatten)]
    pub summary: FloodSummary,
}

/// One JSON line per LMTP run with a server's processes selected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostRecord {
    pub record: String,
    #[serde(flatten)]
    pub header: Header,
    /// 1-based.
    pub run: usize,
    /// Messages delivered in the run (warm-up included: the cost is the
    /// whole run's).
    pub deliveries: u64,
    /// User and system CPU of all the server's processes (and of the
    /// children they reaped) over the run.
    pub cpu_seconds: f64,
    /// Bytes the server's processes caused to be written to disk
    /// (`/proc/PID/io` `write_bytes`; the file system journal's own writes
    /// are not in it).
    pub write_bytes: u64,
    /// Processes in the server's tree at the end of the run.
    pub processes: usize,
}

/// Every record of a JSON lines file, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Records {
    pub runs: Vec<RunRecord>,
    pub summaries: Vec<SummaryRecord>,
    pub floods: Vec<FloodRecord>,
    pub idles: Vec<IdleRecord>,
    pub costs: Vec<CostRecord>,
}

/// A human table of the runs of one workload and their aggregate.
pub fn runs_table(header: &Header, runs: &[RunSummary], aggregate: &Aggregate) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} against {} ({} runs; one operation = one {})",
        header.name, header.server, aggregate.runs, header.operation
    );
    let _ = writeln!(
        out,
        "{:>4} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "run", "measured", "warm-up", "per s", "p50 ms", "p99 ms", "p999 ms", "max ms"
    );
    for (index, run) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>4} {:>9} {:>7} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            index + 1,
            run.operations,
            run.warmup_operations,
            run.throughput_per_second,
            run.latency_us_p50 as f64 / 1000.0,
            run.latency_us_p99 as f64 / 1000.0,
            run.latency_us_p999 as f64 / 1000.0,
            run.latency_us_max as f64 / 1000.0,
        );
    }
    let _ = writeln!(
        out,
        "median {}/s; p50 {} ms; p99 {} ms; p999 {} ms (median [min-max] over runs)",
        spread_text(&aggregate.throughput_per_second, 1),
        spread_text(&aggregate.latency_ms_p50, 3),
        spread_text(&aggregate.latency_ms_p99, 3),
        spread_text(&aggregate.latency_ms_p999, 3),
    );
    out
}

/// `1234.5 [1200.0-1300.2]`
pub fn spread_text(spread: &Spread, decimals: usize) -> String {
    format!(
        "{:.decimals$} [{:.decimals$}-{:.decimals$}]",
        spread.median, spread.min, spread.max
    )
}

/// A markdown table with one row per summary, in the order given.
pub fn markdown_table(summaries: &[SummaryRecord]) -> String {
    let mut out = String::from(
        "| workload | server | runs | throughput /s | p50 ms | p99 ms | p999 ms |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for summary in summaries {
        let aggregate = &summary.aggregate;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            summary.header.name,
            summary.header.server,
            aggregate.runs,
            spread_text(&aggregate.throughput_per_second, 0),
            spread_text(&aggregate.latency_ms_p50, 2),
            spread_text(&aggregate.latency_ms_p99, 2),
            spread_text(&aggregate.latency_ms_p999, 2),
        );
    }
    out.push_str(
        "\nEach cell: median over runs [min-max]. Throughput is operations per second \
         (a delivery, a FETCH of the whole range, a SEARCH), warm-up excluded.\n",
    );
    out
}

/// Summaries of every (case, server) pair among `runs`, however many
/// invocations they came from: `bench/compare` runs each case one run at a
/// time, the servers in turn, so that noise hits them all alike, and
/// gathers the runs here. Pairs come in the order their first run appears;
/// a summary's header is its first run's, without the parameters that
/// differ from run to run by design (`first_run`, `seed`).
pub fn gather_runs(runs: &[RunRecord]) -> Vec<SummaryRecord> {
    let mut groups: Vec<(Header, Vec<RunSummary>)> = Vec::new();
    for run in runs {
        let key = (&run.header.name, &run.header.server);
        match groups
            .iter_mut()
            .find(|(header, _)| (&header.name, &header.server) == key)
        {
            Some((_, summaries)) => summaries.push(run.summary.clone()),
            None => {
                let mut header = run.header.clone();
                if let Some(parameters) = header.parameters.as_object_mut() {
                    parameters.remove("first_run");
                    parameters.remove("seed");
                }
                groups.push((header, vec![run.summary.clone()]));
            }
        }
    }
    groups
        .into_iter()
        .filter_map(|(header, summaries)| {
            Some(SummaryRecord {
                record: RECORD_SUMMARY.into(),
                header,
                aggregate: Aggregate::of(&summaries)?,
            })
        })
        .collect()
}

/// The baseline server's figures over a peer's, for one case: medians over
/// medians. Throughput above 1 and latency below 1 favour the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub name: String,
    pub baseline: String,
    pub peer: String,
    /// Baseline throughput / peer throughput.
    pub throughput: f64,
    /// Baseline p50 / peer p50.
    pub latency_p50: f64,
    /// Baseline p99 / peer p99.
    pub latency_p99: f64,
}

/// The ratio of `baseline` to every other server, per case that both ran.
pub fn ratios(summaries: &[SummaryRecord], baseline: &str) -> Vec<Ratio> {
    let mut out = Vec::new();
    for base in summaries
        .iter()
        .filter(|summary| summary.header.server == baseline)
    {
        for peer in summaries.iter().filter(|summary| {
            summary.header.name == base.header.name && summary.header.server != baseline
        }) {
            let (b, p) = (&base.aggregate, &peer.aggregate);
            out.push(Ratio {
                name: base.header.name.clone(),
                baseline: baseline.into(),
                peer: peer.header.server.clone(),
                throughput: b.throughput_per_second.median / p.throughput_per_second.median,
                latency_p50: b.latency_ms_p50.median / p.latency_ms_p50.median,
                latency_p99: b.latency_ms_p99.median / p.latency_ms_p99.median,
            });
        }
    }
    out
}

/// `2.31x`, or `-` for no ratio (the baseline's own row, a zero divisor).
fn ratio_text(ratio: Option<f64>) -> String {
    match ratio {
        Some(ratio) if ratio.is_finite() => {
            if ratio >= 10.0 {
                format!("{ratio:.0}x")
            } else if ratio >= 0.1 {
                format!("{ratio:.2}x")
            } else {
                format!("{ratio:.3}x")
            }
        }
        _ => "-".into(),
    }
}

/// A markdown table of every server's figures per case, the baseline's
/// row first, with the baseline's ratio to each peer on the peer's row.
pub fn comparison_markdown(summaries: &[SummaryRecord], baseline: &str) -> String {
    let ratios = ratios(summaries, baseline);
    let mut out = format!(
        "| workload | server | runs | throughput /s | p50 ms | p99 ms | p999 ms \
         | {baseline} throughput / server's | {baseline} p99 / server's |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut names: Vec<&str> = Vec::new();
    for summary in summaries {
        if !names.contains(&summary.header.name.as_str()) {
            names.push(&summary.header.name);
        }
    }
    for name in names {
        let mut rows: Vec<&SummaryRecord> = summaries
            .iter()
            .filter(|summary| summary.header.name == name)
            .collect();
        // The baseline first; the peers in the order they ran.
        rows.sort_by_key(|summary| summary.header.server != baseline);
        for summary in rows {
            let aggregate = &summary.aggregate;
            let ratio = ratios
                .iter()
                .find(|ratio| ratio.name == name && ratio.peer == summary.header.server);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name,
                summary.header.server,
                aggregate.runs,
                spread_text(&aggregate.throughput_per_second, 0),
                spread_text(&aggregate.latency_ms_p50, 2),
                spread_text(&aggregate.latency_ms_p99, 2),
                spread_text(&aggregate.latency_ms_p999, 2),
                ratio_text(ratio.map(|ratio| ratio.throughput)),
                ratio_text(ratio.map(|ratio| ratio.latency_p99)),
            );
        }
    }
    let _ = write!(
        out,
        "\nEach cell: median over runs [min-max]; the servers' runs were interleaved. \
         Throughput is operations per second (a delivery, a FETCH of the whole range, \
         a SEARCH), warm-up excluded. Ratios are of medians: {baseline}'s throughput over \
         the server's (above 1: {baseline} is faster) and {baseline}'s p99 latency over \
         the server's (below 1: {baseline} is quicker).\n"
    );
    out
}

fn parameter(record: &FloodRecord, key: &str) -> String {
    match record.header.parameters.get(key) {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(value) => value.to_string(),
        None => "?".into(),
    }
}

fn optional(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |value| format!("{value:.decimals$}"))
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".into(), |share| format!("{:.3}%", share * 100.0))
}

fn counts_text(counts: &Counts) -> String {
    format!(
        "{} / {} / {} / {}",
        counts.accepted, counts.tempfailed, counts.refused, counts.errors
    )
}

/// What a flood was: rates, sources, phases.
fn flood_scenario(record: &FloodRecord) -> String {
    format!(
        "legitimate {}/s from {} sources; spam {}/s from {} sources ({} per /24); \
         phases {} s / {} s / {} s",
        parameter(record, "legit_rate"),
        parameter(record, "legit_sources"),
        parameter(record, "spam_rate"),
        parameter(record, "spam_sources"),
        parameter(record, "spam_sources_per_net"),
        parameter(record, "before_secs"),
        parameter(record, "during_secs"),
        parameter(record, "after_secs"),
    )
}

/// The run's fate in one sentence.
fn flood_verdict(record: &FloodRecord) -> String {
    let summary = &record.summary;
    let run_word = parameter(record, "run_word");
    let detection = match (summary.detection_ms, summary.detected_after_copies) {
        (Some(ms), Some(copies)) => format!(
            "The run was detected {:.3} s after the spam began (the first reply naming \
             \"{run_word}\"), after {copies} copies had been sent; {} copies were accepted \
             after that.",
            ms / 1000.0,
            summary.spam_accepted_after_detection
        ),
        _ => format!("No reply to the spam named \"{run_word}\": the run was not detected."),
    };
    format!(
        "{detection} Spam accepted: {} of {} sent ({}); tempfailed {}, refused {}, \
         errors {}. Legitimate attempts refused with \"{run_word}\": {}.",
        summary.spam.accepted,
        summary.spam_sent,
        percent(summary.spam_accepted_share),
        summary.spam.tempfailed,
        summary.spam.refused,
        summary.spam.errors,
        summary.legit_run_replies,
    )
}

/// The human tables of a flood, for stderr.
pub fn flood_table(record: &FloodRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} against {}: {}",
        record.header.name,
        record.header.server,
        flood_scenario(record)
    );
    let _ = writeln!(
        out,
        "legitimate mail (latency: MAIL FROM to the final reply after DATA, accepted attempts; \
         delay: from when due to the 250, retry included)"
    );
    let _ = writeln!(
        out,
        "{:<7} {:>6} {:>6} {:>8} {:>6} {:>5} {:>5} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "phase",
        "secs",
        "due",
        "sent/s",
        "250",
        "4xx",
        "5xx",
        "err",
        "retried",
        "retry 250",
        "p50 ms",
        "p99 ms",
        "max ms",
        "delay p99 ms"
    );
    for phase in &record.summary.phases {
        let legit = &phase.legit;
        let _ = writeln!(
            out,
            "{:<7} {:>6.1} {:>6} {:>8.1} {:>6} {:>5} {:>5} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9} {:>12}",
            phase.phase.name(),
            phase.seconds,
            legit.messages,
            legit.send_rate_per_second,
            legit.first.accepted,
            legit.first.tempfailed,
            legit.first.refused,
            legit.first.errors,
            legit.retried,
            legit.retry.accepted,
            optional(legit.latency_ms_p50, 3),
            optional(legit.latency_ms_p99, 3),
            optional(legit.latency_ms_max, 3),
            optional(legit.delay_ms_p99, 3),
        );
    }
    let _ = writeln!(
        out,
        "spam (latency: MAIL FROM to the deciding reply; lag: from when due to MAIL FROM)"
    );
    let _ = writeln!(
        out,
        "{:<7} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6} {:>9} {:>7} {:>9} {:>9} {:>10}",
        "phase",
        "secs",
        "due",
        "sent",
        "sent/s",
        "250",
        "4xx",
        "5xx",
        "err",
        "accepted",
        "run",
        "p50 ms",
        "p99 ms",
        "lag p99 ms"
    );
    for phase in &record.summary.phases {
        let spam = &phase.spam;
        let _ = writeln!(
            out,
            "{:<7} {:>6.1} {:>7} {:>7} {:>8.1} {:>7} {:>7} {:>6} {:>6} {:>9} {:>7} {:>9} {:>9} {:>10}",
            phase.phase.name(),
            phase.seconds,
            spam.messages,
            spam.sent,
            spam.send_rate_per_second,
            spam.outcomes.accepted,
            spam.outcomes.tempfailed,
            spam.outcomes.refused,
            spam.outcomes.errors,
            percent(spam.accepted_share),
            spam.run_replies,
            optional(spam.latency_ms_p50, 3),
            optional(spam.latency_ms_p99, 3),
            optional(spam.send_lag_ms_p99, 3),
        );
    }
    let _ = writeln!(out, "{}", flood_verdict(record));
    if !record.summary.examples.is_empty() {
        let _ = writeln!(
            out,
            "replies other than success, and errors (first seen first):"
        );
        for example in &record.summary.examples {
            let _ = writeln!(
                out,
                "  {:<5} {:>7}x  {}",
                example.stream, example.count, example.text
            );
        }
    }
    out
}

/// A markdown section per flood: one row per phase, and the run's fate.
pub fn idle_markdown(records: &[IdleRecord]) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\n| idle case | server | IDLE connections (target) | stopped by | server PSS before -> after MiB (processes) \
         | KiB per connection (median batch) | sum of VmRSS after MiB | probes reached | healthy |\n\
         |---|---|---:|---|---:|---:|---:|---:|---|\n",
    );
    for record in records {
        let reached: usize = record.probes.iter().map(|probe| probe.reached).sum();
        let expected: usize = record.probes.iter().map(|probe| probe.connections).sum();
        let slowest = record
            .probes
            .iter()
            .map(|probe| probe.latency_ms)
            .fold(0.0, f64::max);
        let probes = if record.probes.is_empty() {
            "none".to_string()
        } else {
            format!("{reached}/{expected} (slowest {slowest:.0} ms)")
        };
        let stopped_by = if record.stopped_by.starts_with("error") {
            "error (see JSON)"
        } else {
            record.stopped_by.as_str()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} ({}) | {} | {:.1} -> {:.1} ({}) | {:.1} ({}) | {:.1} | {} | {} |",
            record.name,
            record.server,
            record.opened,
            record.target,
            stopped_by,
            record.rss_before_kib as f64 / 1024.0,
            record.rss_after_kib as f64 / 1024.0,
            record.processes,
            record.rss_per_connection_kib,
            record
                .rss_marginal_per_connection_kib
                .map_or("-".to_string(), |kib| format!("{kib:.1}")),
            record.vm_rss_sum_after_kib as f64 / 1024.0,
            probes,
            if record.healthy { "yes" } else { "NO" },
        );
    }
    out
}

pub fn flood_markdown(records: &[FloodRecord]) -> String {
    let mut out = String::new();
    for record in records {
        let _ = writeln!(
            out,
            "\n**{}** ({}): {}\n",
            record.header.name,
            record.header.server,
            flood_scenario(record)
        );
        out.push_str(
            "| phase | s | legit sent /s | legit 250 / 4xx / 5xx / err | retried (250 then) \
             | legit p50 ms | legit p99 ms | spam sent /s | spam 250 / 4xx / 5xx / err \
             | spam accepted |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for phase in &record.summary.phases {
            let (legit, spam) = (&phase.legit, &phase.spam);
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {} | {} ({}) | {} | {} | {:.1} | {} | {} |",
                phase.phase.name(),
                phase.seconds,
                legit.send_rate_per_second,
                counts_text(&legit.first),
                legit.retried,
                legit.retry.accepted,
                optional(legit.latency_ms_p50, 2),
                optional(legit.latency_ms_p99, 2),
                spam.send_rate_per_second,
                counts_text(&spam.outcomes),
                percent(spam.accepted_share),
            );
        }
        let _ = writeln!(out, "\n{}", flood_verdict(record));
    }
    out
}

/// Per (case, server), over its runs: the median [min-max] CPU
/// milliseconds and KiB written per delivered message, and, beside every
/// other server, `baseline`'s CPU and bytes over theirs (below 1: the
/// baseline spends less).
pub fn cost_markdown(records: &[CostRecord], baseline: Option<&str>) -> String {
    if records.is_empty() {
        return String::new();
    }
    let mut cases: Vec<String> = Vec::new();
    let mut servers: Vec<String> = Vec::new();
    for record in records {
        if !cases.contains(&record.header.name) {
            cases.push(record.header.name.clone());
        }
        if !servers.contains(&record.header.server) {
            servers.push(record.header.server.clone());
        }
    }
    let medians = |case: &str, server: &str| {
        let runs: Vec<&CostRecord> = records
            .iter()
            .filter(|record| record.header.name == case && record.header.server == server)
            .filter(|record| record.deliveries > 0)
            .collect();
        let cpu = Spread::of(
            runs.iter()
                .map(|record| record.cpu_seconds * 1000.0 / record.deliveries as f64),
        )?;
        let written = Spread::of(
            runs.iter()
                .map(|record| record.write_bytes as f64 / 1024.0 / record.deliveries as f64),
        )?;
        Some((cpu, written))
    };
    let mut out = String::from(
        "\n### Resource cost per delivered message\n\n\
         CPU: user + system time of all the server's processes (and of the children they reaped) \
         over each LMTP run, divided by its deliveries; written: their `/proc/PID/io` \
         `write_bytes` (what reached the block layer on their behalf, not the file system \
         journal's own writes). Median [min-max] over the runs.\n\n\
         | case | server | CPU ms / delivery | KiB written / delivery |",
    );
    if baseline.is_some() {
        out.push_str(" CPU ratio | bytes ratio |");
    }
    out.push_str("\n|---|---|---:|---:|");
    if baseline.is_some() {
        out.push_str("---:|---:|");
    }
    out.push('\n');
    for case in &cases {
        let base = baseline.and_then(|server| medians(case, server));
        for server in &servers {
            let Some((cpu_spread, kib_spread)) = medians(case, server) else {
                continue;
            };
            let (cpu, cpu_low, cpu_high) = (cpu_spread.median, cpu_spread.min, cpu_spread.max);
            let (kib, kib_low, kib_high) = (kib_spread.median, kib_spread.min, kib_spread.max);
            let _ = write!(
                out,
                "| {case} | {server} | {cpu:.3} [{cpu_low:.3}-{cpu_high:.3}] | \
                 {kib:.1} [{kib_low:.1}-{kib_high:.1}] |"
            );
            if baseline.is_some() {
                let ratio = |ours: Option<f64>, theirs: f64| match ours {
                    Some(ours) if Some(server.as_str()) != baseline && theirs > 0.0 => {
                        format!(" {:.2}x", ours / theirs)
                    }
                    _ => " -".into(),
                };
                out.push_str(&ratio(base.as_ref().map(|(cpu, _)| cpu.median), cpu));
                out.push_str(" |");
                out.push_str(&ratio(base.as_ref().map(|(_, kib)| kib.median), kib));
                out.push_str(" |");
            }
            out.push('\n');
        }
    }
    out
}

/// Splits JSON lines into run, summary and flood records; other lines
/// (blank, or records of kinds this version does not know) are skipped.
///
/// # Errors
/// A line that looks like a record but does not parse, with its number.
pub fn read_records(text: &str) -> Result<Records, String> {
    let mut runs = Vec::new();
    let mut summaries = Vec::new();
    let mut floods = Vec::new();
    let mut idles = Vec::new();
    let mut costs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|error| format!("line {}: {error}", number + 1))?;
        let parse_error = |error: serde_json::Error| format!("line {}: {error}", number + 1);
        match value.get("record").and_then(|kind| kind.as_str()) {
            Some(RECORD_RUN) => runs.push(serde_json::from_value(value).map_err(parse_error)?),
            Some(RECORD_SUMMARY) => {
                summaries.push(serde_json::from_value(value).map_err(parse_error)?)
            }
            Some(RECORD_FLOOD) => floods.push(serde_json::from_value(value).map_err(parse_error)?),
            Some(RECORD_IDLE) => idles.push(serde_json::from_value(value).map_err(parse_error)?),
            Some(RECORD_COST) => costs.push(serde_json::from_value(value).map_err(parse_error)?),
            _ => {}
        }
    }
    Ok(Records {
        runs,
        summaries,
        floods,
        idles,
        costs,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            workload: "lmtp".into(),
            name: "lmtp-4k-4c-1user".into(),
            server: "postern".into(),
            operation: "delivery".into(),
            parameters: serde_json::json!({"connections": 4}),
        }
    }

    fn run(throughput: f64) -> RunSummary {
        RunSummary {
            operations: 95,
            warmup_operations: 5,
            window_seconds: 1.0,
            throughput_per_second: throughput,
            latency_us_p50: 1200,
            latency_us_p99: 3400,
            latency_us_p999: 8000,
            latency_us_max: 9000,
            latency_us_mean: 1300.0,
        }
    }

    #[test]
    fn records_round_trip_through_json_lines() {
        let runs = [run(3000.0), run(3100.0), run(2900.0)];
        let aggregate = Aggregate::of(&runs).unwrap();
        let run_line = serde_json::to_string(&RunRecord {
            record: RECORD_RUN.into(),
            header: header(),
            run: 1,
            summary: runs[0].clone(),
        })
        .unwrap();
        let summary = SummaryRecord {
            record: RECORD_SUMMARY.into(),
            header: header(),
            aggregate,
        };
        let summary_line = serde_json::to_string(&summary).unwrap();
        assert!(summary_line.contains("\"throughput_per_second\":{\"median\":3000.0"));
        let text = format!("{run_line}\nnot json\n{{\"record\":\"future\"}}\n{summary_line}\n");
        let Records {
            runs: runs_read,
            summaries: summaries_read,
            floods,
            idles,
            costs,
        } = read_records(&text).unwrap();
        assert!(floods.is_empty() && idles.is_empty() && costs.is_empty());
        assert_eq!(runs_read.len(), 1);
        assert_eq!(runs_read[0].summary, runs[0]);
        assert_eq!(summaries_read, std::slice::from_ref(&summary));

        let table = markdown_table(&summaries_read);
        assert!(
            table.contains(
                "| lmtp-4k-4c-1user | postern | 3 | 3000 [2900-3100] | 1.20 [1.20-1.20] |"
            ),
            "{table}"
        );
        let human = runs_table(&header(), &runs, &aggregate);
        assert!(human.contains("median 3000.0 [2900.0-3100.0]/s"), "{human}");
        assert!(read_records("{\"record\":\"run\"}").is_err());
    }

    #[test]
    fn flood_records_round_trip_and_print_their_phases() {
        use std::time::Duration;

        use crate::flood::{Attempt, Outcome, Phases, Stream, summarize};

        let phases = Phases {
            before: Duration::from_secs(10),
            during: Duration::from_secs(30),
            after: Duration::from_secs(10),
        };
        let attempt = |stream, due_ms: u64, outcome, note: Option<&str>| Attempt {
            stream,
            retry: false,
            scheduled: Duration::from_millis(due_ms),
            started: Some(Duration::from_millis(due_ms)),
            finished: Duration::from_millis(due_ms + 4),
            outcome,
            mentions_run: note.is_some_and(|note| note.contains("run")),
            note: note.map(str::to_owned),
        };
        let run_reply = "after DATA: 451 4.7.1 bulk mail run (run 1)";
        let attempts = [
            attempt(Stream::Legit, 1_000, Outcome::Accepted, None),
            attempt(Stream::Legit, 20_000, Outcome::Accepted, None),
            attempt(Stream::Legit, 45_000, Outcome::Accepted, None),
            attempt(Stream::Spam, 10_000, Outcome::Accepted, None),
            attempt(Stream::Spam, 10_500, Outcome::TempFailed, Some(run_reply)),
            attempt(Stream::Spam, 11_000, Outcome::TempFailed, Some(run_reply)),
        ];
        let record = FloodRecord {
            record: RECORD_FLOOD.into(),
            header: Header {
                workload: "smtp-flood".into(),
                name: "smtp-flood".into(),
                server: "postern".into(),
                operation: "delivery".into(),
                parameters: serde_json::json!({"legit_rate": 20.0, "run_word": "run"}),
            },
            summary: summarize(&attempts, &phases),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.starts_with("{\"record\":\"flood\",\"workload\":\"smtp-flood\""));
        assert!(line.contains("\"spam_accepted_share\":0.3333"), "{line}");
        let records = read_records(&format!("{line}\n")).unwrap();
        // Counts compare exactly; floats may differ in the last bit after
        // JSON without serde_json's float_roundtrip.
        let [read] = &records.floods[..] else {
            panic!("one flood record");
        };
        assert_eq!(read.header, record.header);
        assert_eq!(read.summary.spam, record.summary.spam);
        assert_eq!(read.summary.examples, record.summary.examples);
        assert_eq!(read.summary.phases.len(), 3);
        assert!(records.summaries.is_empty());

        let human = flood_table(&record);
        assert!(
            human.contains("legitimate 20.0/s from ? sources"),
            "{human}"
        );
        assert!(
            human.contains("detected 0.504 s after the spam began"),
            "{human}"
        );
        assert!(human.contains("after 2 copies had been sent"), "{human}");
        assert!(
            human.contains("      2x  after DATA: 451 4.7.1 bulk mail run (run 1)"),
            "{human}"
        );
        let markdown = flood_markdown(&records.floods);
        assert!(
            markdown.contains("| during | 30 | 0.0 | 1 / 0 / 0 / 0 | 0 (0) |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| 0.1 | 1 / 2 / 0 / 0 | 33.333% |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("Spam accepted: 1 of 3 sent (33.333%)"),
            "{markdown}"
        );
    }

    #[test]
    fn interleaved_runs_gather_into_one_summary_per_server_with_ratios() {
        let record = |server: &str, first_run: u64, throughput: f64, p99_us: u64| RunRecord {
            record: RECORD_RUN.into(),
            header: Header {
                server: server.into(),
                parameters: serde_json::json!({"connections": 4, "first_run": first_run, "seed": 7}),
                ..header()
            },
            run: 1,
            summary: RunSummary {
                latency_us_p99: p99_us,
                ..run(throughput)
            },
        };
        // Round by round, the servers in turn, as bench/compare runs them.
        let runs = [
            record("postern", 0, 3000.0, 4000),
            record("dovecot", 0, 1000.0, 20_000),
            record("postern", 1, 2000.0, 5000),
            record("dovecot", 1, 800.0, 10_000),
            record("postern", 2, 4000.0, 3000),
            record("dovecot", 2, 1200.0, 30_000),
        ];
        let summaries = gather_runs(&runs);
        assert_eq!(summaries.len(), 2);
        assert_eq!(summaries[0].header.server, "postern");
        assert_eq!(summaries[0].aggregate.runs, 3);
        assert_eq!(summaries[0].aggregate.throughput_per_second.median, 3000.0);
        assert_eq!(summaries[1].aggregate.latency_ms_p99.median, 20.0);
        // Per-run parameters are not the case's.
        assert_eq!(
            summaries[0].header.parameters,
            serde_json::json!({"connections": 4})
        );

        let ratios = ratios(&summaries, "postern");
        assert_eq!(ratios.len(), 1);
        assert_eq!(ratios[0].peer, "dovecot");
        assert!((ratios[0].throughput - 3.0).abs() < 1e-9);
        assert!((ratios[0].latency_p99 - 0.2).abs() < 1e-9);

        let table = comparison_markdown(&summaries, "postern");
        assert!(
            table.contains("| postern throughput / server's | postern p99 / server's |"),
            "{table}"
        );
        assert!(
            table.contains("| lmtp-4k-4c-1user | postern | 3 | 3000 [2000-4000] |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| lmtp-4k-4c-1user | dovecot | 3 | 1000 [800-1200] | 1.20 [1.20-1.20] \
                 | 20.00 [10.00-30.00] | 8.00 [8.00-8.00] | 3.00x | 0.20x |"
            ),
            "{table}"
        );
        let baseline_row = table
            .lines()
            .find(|line| line.contains("| postern | 3 |"))
            .unwrap();
        assert!(baseline_row.ends_with("| - | - |"), "{baseline_row}");
        assert_eq!(ratio_text(Some(0.0123)), "0.012x");
        assert_eq!(ratio_text(Some(25.4)), "25x");
        assert_eq!(ratio_text(Some(f64::INFINITY)), "-");
    }

    #[test]
    fn cost_records_read_back_and_tabulate() {
        let cost = |server: &str, run, cpu_seconds, write_bytes| CostRecord {
            record: RECORD_COST.into(),
            header: Header {
                workload: "lmtp".into(),
                name: "lmtp 4KB".into(),
                server: server.into(),
                operation: "delivery".into(),
                parameters: serde_json::json!({}),
            },
            run,
            deliveries: 1000,
            cpu_seconds,
            write_bytes,
            processes: 1,
        };
        let lines = [
            cost("postern", 1, 0.5, 1024 * 1000 * 10),
            cost("postern", 2, 0.7, 1024 * 1000 * 12),
            cost("postern", 3, 0.6, 1024 * 1000 * 11),
            cost("dovecot", 1, 2.0, 1024 * 1000 * 22),
        ]
        .iter()
        .map(|record| serde_json::to_string(record).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
        let records = read_records(&lines).unwrap();
        assert_eq!(records.costs.len(), 4);
        let table = cost_markdown(&records.costs, Some("postern"));
        assert!(
            table.contains(
                "| lmtp 4KB | postern | 0.600 [0.500-0.700] | 11.0 [10.0-12.0] | - | - |"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "| lmtp 4KB | dovecot | 2.000 [2.000-2.000] | 22.0 [22.0-22.0] | 0.30x | 0.50x |"
            ),
            "{table}"
        );
        assert_eq!(cost_markdown(&[], None), "");
    }

    #[test]
    fn idle_records_read_back_and_tabulate() {
        let record = IdleRecord {
            record: RECORD_IDLE.into(),
            workload: "imap-idle".into(),
            name: "imap idle".into(),
            server: "postern".into(),
            parameters: serde_json::json!({"connections": 5000}),
            target: 5000,
            opened: 5000,
            stopped_by: "target".into(),
            processes: 1,
            rss_before_kib: 20 * 1024,
            rss_after_kib: 120 * 1024,
            vm_rss_sum_before_kib: 30 * 1024,
            vm_rss_sum_after_kib: 140 * 1024,
            rss_per_connection_kib: 20.48,
            rss_marginal_per_connection_kib: Some(18.04),
            readings: vec![(2500, 70 * 1024), (5000, 120 * 1024)],
            open_seconds: 12.5,
            probes: vec![crate::workload::imap_idle::Probe {
                user: "idle0".into(),
                connections: 50,
                reached: 50,
                latency_ms: 12.3,
            }],
            failed: 0,
            done_ok: 5000,
            healthy: true,
            first_failure: None,
        };
        let line = serde_json::to_string(&record).unwrap();
        let records = read_records(&line).unwrap();
        assert_eq!(records.idles, vec![record.clone()]);
        assert!(records.runs.is_empty() && records.summaries.is_empty());
        let table = idle_markdown(&records.idles);
        assert!(
            table.contains(
                "| imap idle | postern | 5000 (5000) | target | 20.0 -> 120.0 (1) | 20.5 (18.0) | 140.0 | 50/50 (slowest 12 ms) | yes |"
            ),
            "{table}"
        );
        assert_eq!(idle_markdown(&[]), "");
    }
}
