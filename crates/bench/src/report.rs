//! What the benchmark prints: a JSON line per run and per workload (for
//! machines, on stdout), tables for people (on stderr), and the markdown
//! table of a whole `bench/run`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::stats::{Aggregate, RunSummary, Spread};

/// The kind of JSON line.
pub const RECORD_RUN: &str = "run";
pub const RECORD_SUMMARY: &str = "summary";

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

/// Splits JSON lines into run and summary records; other lines (blank, or
/// records of kinds this version does not know) are skipped.
///
/// # Errors
/// A line that looks like a record but does not parse, with its number.
pub fn read_records(text: &str) -> Result<(Vec<RunRecord>, Vec<SummaryRecord>), String> {
    let mut runs = Vec::new();
    let mut summaries = Vec::new();
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
            _ => {}
        }
    }
    Ok((runs, summaries))
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
        let (runs_read, summaries_read) = read_records(&text).unwrap();
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
}
