//! The logic of the inbound spam-run defence (issue 5): what the SMTP intake
//! decides about a message, with everything it needs passed in.
//!
//! # Design
//!
//! No I/O, no async, no clock. The SMTP session and the server own sockets,
//! configuration, persistence and time; they call in here with the message
//! bytes, the client address and the time as Unix milliseconds (`now_ms`),
//! and act on what comes back (accept, tempfail, file in Junk, reject). So
//! every decision is a function of its arguments and the tests pin it
//! exactly, including what happens an hour later.
//!
//! The incident this answers: a spam run of near-identical messages from
//! many addresses delayed everyone's mail for a quarter of an hour until
//! someone blocked it by hand. The parts, in the order a message meets them:
//!
//! - [`blocks`]: what an operator blocked by hand (`ip:`, `net:`,
//!   `sender:`, `domain:`, `fingerprint:`), looked up per client, per
//!   envelope sender and per body fingerprint.
//! - [`limits`]: token buckets per key (client address, its /24 or /64
//!   [`limits::Net`], envelope sender, sender domain), so one source cannot
//!   take more than its share whatever the content. At most `max_keys`
//!   buckets; a refilled bucket is forgotten first, as it is the same as no
//!   bucket.
//! - [`fingerprint`]: a 64-bit locality-sensitive fingerprint of a body's
//!   normalised text. Copies of one spam that differ in the recipient's
//!   name, the links and the numbers are a few bits apart; unrelated texts
//!   are about 32 apart. Looks at the first 64 KiB of text only.
//! - [`runs`]: near-duplicate clusters of fingerprints across all inbound
//!   mail in a sliding window. A cluster that reaches `min_messages` within
//!   the window from `min_sources` client addresses is a run; the intake
//!   tempfails or junks its later members, and the admin surfaces list it.
//!   Memory is bounded by `max_clusters`, and per cluster by fixed caps on
//!   the addresses and sender domains it tracks and on its time buckets.
//! - [`score`]: the content score from configured rules and the other
//!   checks' contributions, the INBOX / Junk / reject decision, and the
//!   `X-Postern-Spam` header that explains it.
//! - [`headers`]: removes `Authentication-Results` fields that claim our
//!   authserv-id and any `X-Postern-Spam` field from an incoming message's
//!   header section, leaving every other byte as it came; and folds the
//!   fields we add.
//!
//! Nothing here panics on any input: every index is checked, every
//! collection has a named bound, and hostile text (huge, binary, without a
//! blank line after the header) gets an answer. `fuzz/fuzz_targets/spam_headers.rs`
//! and `tests/fuzz_corpus.rs` hold the parsers to that.
//!
//! # Example
//!
//! ```
//! use spam::fingerprint::Fingerprint;
//! use spam::runs::{RunConfig, RunDetector};
//!
//! let body = "Dear customer, your parcel is waiting at our depot. \
//!             Pay the customs fee within 24 hours at the link below.";
//! let fingerprint = Fingerprint::of_text(body).expect("enough words");
//! let mut detector = RunDetector::new(RunConfig::default());
//! let client = "192.0.2.7".parse().expect("address");
//! let observation = detector.observe(fingerprint, client, "example.net", 1_700_000_000_000);
//! assert_eq!(observation.cluster_size, 1);
//! assert_eq!(observation.run, None);
//! ```

pub mod blocks;
pub mod fingerprint;
pub mod headers;
pub mod limits;
pub mod runs;
pub mod score;
