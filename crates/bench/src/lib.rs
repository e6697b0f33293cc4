//! A load generator for mail servers: raw IMAP, LMTP and SMTP over TCP,
//! seeded workloads, latency histograms.
//!
//! The benchmark has to be believable to someone who did not write the
//! server, so the generator speaks the protocols itself, with no mail crate
//! and no code shared with Postern: what it measures is what any client on
//! the wire would see, and the same binary can later drive Dovecot and Cyrus
//! (issue 9) without learning anything about them.
//!
//! # Layers
//!
//! - [`lmtp_reply`] (LMTP and SMTP replies) and [`imap_response`] split
//!   replies and responses out of a byte buffer and classify them. They do
//!   no I/O: "need more bytes" is an ordinary `Ok(None)`, and every line,
//!   literal and response has a bound, so a misbehaving server cannot make
//!   the generator grow without limit.
//! - [`message`] builds the delivered messages (and the flood's spam). A
//!   message is a pure function of (seed, index), so two runs, or two
//!   servers, get byte-identical mail.
//! - [`connection`] owns a socket and its read buffer and puts a timeout on
//!   every read and write. [`lmtp_client`], [`smtp_client`] and
//!   [`imap_client`] are the minimal client halves on top of it.
//! - [`stats`] turns timed operations into a run summary (warm-up dropped,
//!   throughput over the measured window, p50/p99/p999 from an HDR
//!   histogram) and runs into a median with min and max.
//! - [`flood`] is the bookkeeping of the `smtp-flood` workload without I/O:
//!   open-loop pacing, phases, and the figures of a flood's attempts.
//! - [`workload`] holds one module per workload; [`report`] prints JSON lines
//!   and tables.
//!
//! # What a figure means
//!
//! Each workload runs `runs` times. In a run, every operation (one LMTP or
//! SMTP transaction, one FETCH, one SEARCH) is timed from the first byte
//! written to the last byte of its final reply. The first 5% of operations
//! to finish (rounded up) are warm-up and are dropped; throughput is the
//! remaining operations divided by the time from the last warm-up completion
//! to the last completion. The reported figure is the median over runs, with
//! the minimum and maximum beside it.
//!
//! `smtp-flood` is the exception: one open-loop run in three phases, whose
//! figures are counts and percentiles per phase ([`flood`]).

pub mod connection;
pub mod error;
pub mod flood;
pub mod imap_client;
pub mod imap_response;
pub mod lmtp_client;
pub mod lmtp_reply;
pub mod message;
pub mod report;
pub mod rss;
pub mod smtp_client;
pub mod stats;
pub mod workload;
