//! The bookkeeping of the `smtp-flood` workload, with no I/O: when each
//! message is due (open-loop pacing), which phase it belongs to, and how
//! the attempts of a flood become its figures.
//!
//! # The scenario
//!
//! Legitimate senders send at a steady rate through three phases, *before*,
//! *during* and *after*; during the middle one a run of near-identical spam
//! arrives at a much higher rate. A message belongs to the phase its
//! scheduled send time falls in, whenever its reply comes. Rates are
//! open-loop: message `i` of a stream is due at `offset + i / rate` whatever
//! happened to earlier ones, so a slow server does not lower the offered
//! load (the achieved send rate is reported next to it).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::stats::Percentiles;

/// Shortest pacing tick: finer timers are not kept by the runtime. At rates
/// above 1,000/s a tick sends several messages.
pub const TICK_MIN: Duration = Duration::from_millis(1);
/// Longest pacing tick, so that a low rate still starts on time.
pub const TICK_MAX: Duration = Duration::from_millis(100);
/// Distinct non-success replies and errors kept as examples.
pub const EXAMPLES_MAX: usize = 12;

/// The three phases of a flood, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Legitimate mail only.
    Before,
    /// Legitimate mail and the spam run.
    During,
    /// Legitimate mail only, the run over.
    After,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Before, Phase::During, Phase::After];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Before => "before",
            Phase::During => "during",
            Phase::After => "after",
        }
    }
}

/// How long each phase lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub before: Duration,
    pub during: Duration,
    pub after: Duration,
}

impl Phases {
    pub fn total(&self) -> Duration {
        self.before + self.during + self.after
    }

    /// When the spam run starts, from the start of the flood.
    pub fn spam_start(&self) -> Duration {
        self.before
    }

    /// Start and end of `phase`, from the start of the flood.
    pub fn window(&self, phase: Phase) -> (Duration, Duration) {
        match phase {
            Phase::Before => (Duration::ZERO, self.before),
            Phase::During => (self.before, self.before + self.during),
            Phase::After => (self.before + self.during, self.total()),
        }
    }

    pub fn length(&self, phase: Phase) -> Duration {
        let (start, end) = self.window(phase);
        end - start
    }

    /// The phase of a moment; anything at or past the end is `After`.
    pub fn of(&self, at: Duration) -> Phase {
        if at < self.before {
            Phase::Before
        } else if at < self.before + self.during {
            Phase::During
        } else {
            Phase::After
        }
    }
}

/// Open-loop pacing of one stream: `count` messages, message `i` due at
/// `offset + i / rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    rate_per_second: f64,
    offset: Duration,
    count: u64,
}

impl Pacer {
    /// The messages of a stream that runs for `length` from `offset` at
    /// `rate_per_second`: `floor(length * rate)` of them, so the last is due
    /// before `offset + length`.
    ///
    /// # Errors
    /// A rate that is not a positive finite number.
    pub fn new(rate_per_second: f64, offset: Duration, length: Duration) -> Result<Self, String> {
        if !(rate_per_second.is_finite() && rate_per_second > 0.0) {
            return Err(format!(
                "rate {rate_per_second} is not a positive number of messages per second"
            ));
        }
        let count = (length.as_secs_f64() * rate_per_second).floor();
        Ok(Pacer {
            rate_per_second,
            offset,
            // Saturates for absurd products; callers bound the count.
            count: count as u64,
        })
    }

    /// Messages in the stream.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// When message `index` is due, from the start of the flood.
    pub fn scheduled(&self, index: u64) -> Duration {
        self.offset + Duration::from_secs_f64(index as f64 / self.rate_per_second)
    }

    /// How many messages are due by `elapsed` (those with a scheduled time
    /// at or before it): a pacing loop sends those it has not sent yet, so a
    /// late tick catches up instead of losing messages.
    pub fn due(&self, elapsed: Duration) -> u64 {
        let Some(since) = elapsed.checked_sub(self.offset) else {
            return 0;
        };
        let due = (since.as_secs_f64() * self.rate_per_second).floor() as u64;
        due.saturating_add(1).min(self.count)
    }

    /// The pacing loop's tick: one message's interval, within
    /// [`TICK_MIN`]..=[`TICK_MAX`].
    pub fn tick(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate_per_second).clamp(TICK_MIN, TICK_MAX)
    }
}

/// Which sender a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stream {
    Legit,
    Spam,
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx after the message: the server took it.
    Accepted,
    /// A 4xx at any step (greeting, MAIL, RCPT, DATA or after the message).
    TempFailed,
    /// A 5xx at any step.
    Refused,
    /// No reply to count: the connection failed, closed or timed out.
    Error,
}

/// One attempt to send one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub stream: Stream,
    /// A legitimate sender's second try after a temporary failure.
    pub retry: bool,
    /// When the message (its first attempt) was due, from the flood's start.
    pub scheduled: Duration,
    /// When `MAIL FROM` was written; `None` when no session could be had.
    pub started: Option<Duration>,
    /// When the deciding reply (or the error) came.
    pub finished: Duration,
    pub outcome: Outcome,
    /// A reply of the attempt that was not a success names the run word.
    pub mentions_run: bool,
    /// The deciding reply or error, for the examples; `None` on success.
    pub note: Option<String>,
}

impl Attempt {
    /// From `MAIL FROM` to the deciding reply.
    pub fn latency(&self) -> Option<Duration> {
        self.started
            .map(|started| self.finished.saturating_sub(started))
    }
}

/// Replies by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// 2xx after the message.
    pub accepted: u64,
    /// 4xx at any step.
    pub tempfailed: u64,
    /// 5xx at any step.
    pub refused: u64,
    /// Connection failures, closes and timeouts.
    pub errors: u64,
}

impl Counts {
    fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::TempFailed => self.tempfailed += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.accepted + self.tempfailed + self.refused + self.errors
    }
}

/// The legitimate senders' figures of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegitPhase {
    /// Messages due in the phase.
    pub messages: u64,
    /// First attempts whose `MAIL FROM` was written within the phase, per
    /// second of it: the achieved send rate.
    pub send_rate_per_second: f64,
    /// How the first attempts ended.
    pub first: Counts,
    /// Messages tried again (after a 4xx or an error), and how that ended.
    pub retried: u64,
    pub retry: Counts,
    /// Messages accepted at the first or second attempt.
    pub delivered: u64,
    /// From `MAIL FROM` to the 250 after the message, over accepted
    /// attempts (first or retry), in ms.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    pub latency_ms_max: Option<f64>,
    /// From when the message was due to its 250: waiting for a connection
    /// and the retry included. Over delivered messages, in ms.
    pub delay_ms_p50: Option<f64>,
    pub delay_ms_p99: Option<f64>,
    /// Attempts whose refusal named the run word (legitimate mail taken for
    /// a run).
    pub run_replies: u64,
}

/// The spam run's figures of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpamPhase {
    /// Copies due in the phase.
    pub messages: u64,
    /// Copies whose `MAIL FROM` was written (the others found no session).
    pub sent: u64,
    /// Copies whose `MAIL FROM` was written within the phase, per second.
    pub send_rate_per_second: f64,
    /// How the copies ended (spam is never retried).
    pub outcomes: Counts,
    /// accepted / sent; `None` when none was sent.
    pub accepted_share: Option<f64>,
    /// Copies whose refusal named the run word.
    pub run_replies: u64,
    /// From `MAIL FROM` to the deciding reply, whatever it was, in ms.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p99: Option<f64>,
    /// From when the copy was due to its `MAIL FROM` (waiting for a free
    /// connection of its source), p99 in ms: large values mean the client
    /// could not offer the configured rate.
    pub send_lag_ms_p99: Option<f64>,
}

/// One phase's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub phase: Phase,
    pub seconds: f64,
    pub legit: LegitPhase,
    pub spam: SpamPhase,
}

/// The figures of a whole flood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloodSummary {
    pub phases: Vec<PhaseSummary>,
    /// Every spam copy, whatever its phase.
    pub spam_messages: u64,
    pub spam_sent: u64,
    pub spam: Counts,
    /// spam accepted / spam sent: with `run_action = "tempfail"`, the share
    /// of the run that reached a mailbox.
    pub spam_accepted_share: Option<f64>,
    /// From the start of the spam phase to the first reply to a spam copy
    /// that names the run word, in ms; `None` when none did.
    pub detection_ms: Option<f64>,
    /// Spam copies whose `MAIL FROM` was written before that reply.
    pub detected_after_copies: Option<u64>,
    /// Spam copies accepted with a reply later than that one.
    pub spam_accepted_after_detection: u64,
    /// Legitimate attempts whose refusal named the run word.
    pub legit_run_replies: u64,
    /// Distinct non-success replies and errors seen, with how often, first
    /// seen first (at most [`EXAMPLES_MAX`]).
    pub examples: Vec<Example>,
}

/// A reply or error seen during the flood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// `legit` or `spam`.
    pub stream: String,
    pub text: String,
    pub count: u64,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn rate(count: usize, length: Duration) -> f64 {
    if length.is_zero() {
        0.0
    } else {
        count as f64 / length.as_secs_f64()
    }
}

/// Turns the attempts of a flood into its figures.
pub fn summarize(attempts: &[Attempt], phases: &Phases) -> FloodSummary {
    let first_run_reply = attempts
        .iter()
        .filter(|attempt| attempt.stream == Stream::Spam && attempt.mentions_run)
        .map(|attempt| attempt.finished)
        .min();
    let spam_start = phases.spam_start();

    let summaries = Phase::ALL
        .iter()
        .map(|&phase| {
            let in_phase = |stream: Stream| {
                attempts.iter().filter(move |attempt| {
                    attempt.stream == stream && phases.of(attempt.scheduled) == phase
                })
            };
            let (window_start, window_end) = phases.window(phase);
            let started_in_window = |attempt: &&Attempt| {
                attempt
                    .started
                    .is_some_and(|started| started >= window_start && started < window_end)
            };
            PhaseSummary {
                phase,
                seconds: phases.length(phase).as_secs_f64(),
                legit: legit_phase(
                    in_phase(Stream::Legit).collect(),
                    rate(
                        attempts
                            .iter()
                            .filter(|attempt| attempt.stream == Stream::Legit && !attempt.retry)
                            .filter(started_in_window)
                            .count(),
                        phases.length(phase),
                    ),
                ),
                spam: spam_phase(
                    in_phase(Stream::Spam).collect(),
                    rate(
                        attempts
                            .iter()
                            .filter(|attempt| attempt.stream == Stream::Spam)
                            .filter(started_in_window)
                            .count(),
                        phases.length(phase),
                    ),
                ),
            }
        })
        .collect();

    let spam: Vec<&Attempt> = attempts
        .iter()
        .filter(|attempt| attempt.stream == Stream::Spam)
        .collect();
    let mut spam_counts = Counts::default();
    for attempt in &spam {
        spam_counts.add(attempt.outcome);
    }
    let spam_sent = spam
        .iter()
        .filter(|attempt| attempt.started.is_some())
        .count() as u64;
    FloodSummary {
        phases: summaries,
        spam_messages: spam.len() as u64,
        spam_sent,
        spam: spam_counts,
        spam_accepted_share: share(spam_counts.accepted, spam_sent),
        detection_ms: first_run_reply
            .map(|at| at.saturating_sub(spam_start).as_secs_f64() * 1000.0),
        detected_after_copies: first_run_reply.map(|at| {
            spam.iter()
                .filter(|attempt| attempt.started.is_some_and(|started| started < at))
                .count() as u64
        }),
        spam_accepted_after_detection: first_run_reply.map_or(0, |at| {
            spam.iter()
                .filter(|attempt| attempt.outcome == Outcome::Accepted && attempt.finished > at)
                .count() as u64
        }),
        legit_run_replies: attempts
            .iter()
            .filter(|attempt| attempt.stream == Stream::Legit && attempt.mentions_run)
            .count() as u64,
        examples: examples(attempts),
    }
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn legit_phase(attempts: Vec<&Attempt>, send_rate_per_second: f64) -> LegitPhase {
    let mut first = Counts::default();
    let mut retry = Counts::default();
    for attempt in &attempts {
        if attempt.retry {
            retry.add(attempt.outcome);
        } else {
            first.add(attempt.outcome);
        }
    }
    let accepted: Vec<&&Attempt> = attempts
        .iter()
        .filter(|attempt| attempt.outcome == Outcome::Accepted)
        .collect();
    let latency = Percentiles::of(accepted.iter().filter_map(|attempt| attempt.latency()));
    let delay = Percentiles::of(
        accepted
            .iter()
            .map(|attempt| attempt.finished.saturating_sub(attempt.scheduled)),
    );
    LegitPhase {
        messages: first.total(),
        send_rate_per_second,
        first,
        retried: retry.total(),
        retry,
        delivered: accepted.len() as u64,
        latency_ms_p50: latency.map(|figures| ms(figures.p50_us)),
        latency_ms_p99: latency.map(|figures| ms(figures.p99_us)),
        latency_ms_max: latency.map(|figures| ms(figures.max_us)),
        delay_ms_p50: delay.map(|figures| ms(figures.p50_us)),
        delay_ms_p99: delay.map(|figures| ms(figures.p99_us)),
        run_replies: attempts
            .iter()
            .filter(|attempt| attempt.mentions_run)
            .count() as u64,
    }
}

fn spam_phase(attempts: Vec<&Attempt>, send_rate_per_second: f64) -> SpamPhase {
    let mut outcomes = Counts::default();
    for attempt in &attempts {
        outcomes.add(attempt.outcome);
    }
    let sent = attempts
        .iter()
        .filter(|attempt| attempt.started.is_some())
        .count() as u64;
    let latency = Percentiles::of(attempts.iter().filter_map(|attempt| attempt.latency()));
    let lag = Percentiles::of(attempts.iter().filter_map(|attempt| {
        attempt
            .started
            .map(|started| started.saturating_sub(attempt.scheduled))
    }));
    SpamPhase {
        messages: attempts.len() as u64,
        sent,
        send_rate_per_second,
        outcomes,
        accepted_share: share(outcomes.accepted, sent),
        run_replies: attempts
            .iter()
            .filter(|attempt| attempt.mentions_run)
            .count() as u64,
        latency_ms_p50: latency.map(|figures| ms(figures.p50_us)),
        latency_ms_p99: latency.map(|figures| ms(figures.p99_us)),
        send_lag_ms_p99: lag.map(|figures| ms(figures.p99_us)),
    }
}

/// The distinct notes of the attempts, with counts, in order of first
/// appearance; digits are kept (a run's id tells runs apart).
fn examples(attempts: &[Attempt]) -> Vec<Example> {
    let mut examples: Vec<Example> = Vec::new();
    for attempt in attempts {
        let Some(note) = &attempt.note else {
            continue;
        };
        let stream = match attempt.stream {
            Stream::Legit => "legit",
            Stream::Spam => "spam",
        };
        if let Some(example) = examples
            .iter_mut()
            .find(|example| example.stream == stream && &example.text == note)
        {
            example.count += 1;
        } else if examples.len() < EXAMPLES_MAX {
            examples.push(Example {
                stream: stream.into(),
                text: note.clone(),
                count: 1,
            });
        }
    }
    examples
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secs(value: f64) -> Duration {
        Duration::from_secs_f64(value)
    }

    fn phases() -> Phases {
        Phases {
            before: secs(10.0),
            during: secs(30.0),
            after: secs(10.0),
        }
    }

    #[test]
    fn phases_split_time_at_their_boundaries() {
        let phases = phases();
        assert_eq!(phases.total(), secs(50.0));
        assert_eq!(phases.of(Duration::ZERO), Phase::Before);
        assert_eq!(phases.of(secs(9.999)), Phase::Before);
        assert_eq!(phases.of(secs(10.0)), Phase::During);
        assert_eq!(phases.of(secs(39.999)), Phase::During);
        assert_eq!(phases.of(secs(40.0)), Phase::After);
        assert_eq!(phases.of(secs(80.0)), Phase::After);
        assert_eq!(phases.window(Phase::During), (secs(10.0), secs(40.0)));
        assert_eq!(phases.length(Phase::After), secs(10.0));
        let no_before = Phases {
            before: Duration::ZERO,
            ..phases
        };
        assert_eq!(no_before.of(Duration::ZERO), Phase::During);
    }

    #[test]
    fn pacing_is_open_loop_and_catches_up() {
        // 20/s over 50 s: 1,000 messages, one every 50 ms from 0.
        let legit = Pacer::new(20.0, Duration::ZERO, secs(50.0)).unwrap();
        assert_eq!(legit.count(), 1000);
        assert_eq!(legit.scheduled(0), Duration::ZERO);
        assert_eq!(legit.scheduled(3), secs(0.15));
        assert_eq!(legit.due(Duration::ZERO), 1);
        assert_eq!(legit.due(secs(0.049)), 1);
        assert_eq!(legit.due(secs(0.05)), 2);
        // A tick 2 s late finds 40 more due: they go out at once.
        assert_eq!(legit.due(secs(2.0)) - legit.due(Duration::ZERO), 40);
        assert_eq!(legit.due(secs(1e6)), 1000);
        assert_eq!(legit.tick(), secs(0.05));

        // 1,000/s during 10..40 s: 30,000 copies, none before 10 s.
        let spam = Pacer::new(1000.0, secs(10.0), secs(30.0)).unwrap();
        assert_eq!(spam.count(), 30_000);
        assert_eq!(spam.due(secs(9.999)), 0);
        assert_eq!(spam.due(secs(10.0)), 1);
        assert_eq!(spam.due(secs(11.0)), 1001);
        assert_eq!(spam.due(secs(40.0)), 30_000);
        assert!(spam.scheduled(29_999) < secs(40.0));
        assert_eq!(spam.tick(), TICK_MIN);

        // Every message is due exactly once, whatever the ticks.
        let mut sent = 0;
        for tick_ms in (0..60_000).step_by(7) {
            let due = spam.due(Duration::from_millis(tick_ms));
            assert!(due >= sent);
            sent = due;
        }
        assert_eq!(sent, spam.count());

        assert_eq!(
            Pacer::new(0.5, Duration::ZERO, secs(1.0)).unwrap().count(),
            0
        );
        assert_eq!(
            Pacer::new(0.1, Duration::ZERO, secs(10.0)).unwrap().tick(),
            TICK_MAX
        );
        assert!(Pacer::new(0.0, Duration::ZERO, secs(1.0)).is_err());
        assert!(Pacer::new(f64::NAN, Duration::ZERO, secs(1.0)).is_err());
        assert!(Pacer::new(-1.0, Duration::ZERO, secs(1.0)).is_err());
    }

    /// Within the histogram's three significant digits.
    fn assert_close(value: Option<f64>, expected: f64) {
        let value = value.unwrap();
        assert!(
            (value - expected).abs() <= expected * 0.002,
            "{value} is not {expected}"
        );
    }

    fn attempt(stream: Stream, scheduled: f64, latency: f64, outcome: Outcome) -> Attempt {
        Attempt {
            stream,
            retry: false,
            scheduled: secs(scheduled),
            started: Some(secs(scheduled)),
            finished: secs(scheduled + latency),
            outcome,
            mentions_run: false,
            note: None,
        }
    }

    #[test]
    fn attempts_are_counted_in_the_phase_they_were_due_in() {
        let phases = phases();
        let mut attempts = vec![
            attempt(Stream::Legit, 1.0, 0.010, Outcome::Accepted),
            attempt(Stream::Legit, 2.0, 0.020, Outcome::Accepted),
            // Due in the last moment of "before", answered in "during".
            attempt(Stream::Legit, 9.9, 0.500, Outcome::Accepted),
            attempt(Stream::Legit, 12.0, 0.030, Outcome::TempFailed),
            attempt(Stream::Legit, 45.0, 0.040, Outcome::Refused),
        ];
        // The retry of the 12 s message, 1 s later: counted in "during".
        attempts.push(Attempt {
            retry: true,
            started: Some(secs(13.03)),
            finished: secs(13.08),
            ..attempt(Stream::Legit, 12.0, 0.0, Outcome::Accepted)
        });
        let summary = summarize(&attempts, &phases);
        let [before, during, after] = &summary.phases[..] else {
            panic!("three phases");
        };
        assert_eq!(before.phase, Phase::Before);
        assert_eq!(before.legit.messages, 3);
        assert_eq!(before.legit.first.accepted, 3);
        assert_eq!(before.legit.delivered, 3);
        assert!((before.legit.send_rate_per_second - 0.3).abs() < 1e-9);
        assert_close(before.legit.latency_ms_max, 500.0);
        assert_eq!(during.legit.messages, 1);
        assert_eq!(during.legit.first.tempfailed, 1);
        assert_eq!((during.legit.retried, during.legit.retry.accepted), (1, 1));
        assert_eq!(during.legit.delivered, 1);
        // Latency is the retry's own; delay runs from when it was due.
        assert_close(during.legit.latency_ms_p50, 50.0);
        assert_close(during.legit.delay_ms_p50, 1080.0);
        assert_eq!(after.legit.first.refused, 1);
        assert_eq!(after.legit.delivered, 0);
        assert_eq!(after.legit.latency_ms_p50, None);
        assert_eq!(summary.spam_messages, 0);
        assert_eq!(summary.spam_accepted_share, None);
        assert_eq!(summary.detection_ms, None);
    }

    #[test]
    fn detection_and_the_accepted_share_of_the_run() {
        let phases = phases();
        let mut attempts = Vec::new();
        // 100 copies from 10 s, 10 ms apart, 5 ms each: the first 30 are
        // accepted, then the run is named in every reply.
        for copy in 0..100u32 {
            let due = 10.0 + f64::from(copy) * 0.01;
            let mut spam = attempt(
                Stream::Spam,
                due,
                0.005,
                if copy < 30 {
                    Outcome::Accepted
                } else {
                    Outcome::TempFailed
                },
            );
            if copy >= 30 {
                spam.mentions_run = true;
                spam.note = Some("451 4.7.1 part of a bulk mail run (run 1)".into());
            }
            attempts.push(spam);
        }
        // One copy found no session at all.
        attempts.push(Attempt {
            started: None,
            note: Some("Io: connecting: refused".into()),
            ..attempt(Stream::Spam, 11.0, 0.001, Outcome::Error)
        });
        attempts.push(Attempt {
            mentions_run: true,
            note: Some("451 4.7.1 part of a bulk mail run (run 1)".into()),
            ..attempt(Stream::Legit, 20.0, 0.01, Outcome::TempFailed)
        });
        let summary = summarize(&attempts, &phases);
        assert_eq!(summary.spam_messages, 101);
        assert_eq!(summary.spam_sent, 100);
        assert_eq!(
            summary.spam,
            Counts {
                accepted: 30,
                tempfailed: 70,
                refused: 0,
                errors: 1
            }
        );
        assert_eq!(summary.spam_accepted_share, Some(0.3));
        // The 31st copy was due at 10.30 s and answered 5 ms later.
        let detection = summary.detection_ms.unwrap();
        assert!((detection - 305.0).abs() < 1e-6, "{detection}");
        assert_eq!(summary.detected_after_copies, Some(31));
        assert_eq!(summary.spam_accepted_after_detection, 0);
        assert_eq!(summary.legit_run_replies, 1);
        let during = &summary.phases[1];
        assert_eq!(during.spam.messages, 101);
        assert_eq!(during.spam.run_replies, 70);
        assert_eq!(during.spam.accepted_share, Some(0.3));
        assert!((during.spam.send_rate_per_second - 100.0 / 30.0).abs() < 1e-9);
        // Sent when due: the histogram's floor of 1 µs.
        assert_eq!(during.spam.send_lag_ms_p99, Some(0.001));
        assert_eq!(summary.phases[0].spam.sent, 0);
        assert_eq!(
            summary.examples,
            [
                Example {
                    stream: "spam".into(),
                    text: "451 4.7.1 part of a bulk mail run (run 1)".into(),
                    count: 70
                },
                Example {
                    stream: "spam".into(),
                    text: "Io: connecting: refused".into(),
                    count: 1
                },
                Example {
                    stream: "legit".into(),
                    text: "451 4.7.1 part of a bulk mail run (run 1)".into(),
                    count: 1
                },
            ]
        );
    }
}
