//! Replays the cargo-fuzz seed corpus (`fuzz/corpus/lmtp_session/`) through
//! the same driver and checks as `fuzz/fuzz_targets/lmtp_session.rs`, on
//! stable, so CI catches regressions without libFuzzer; then runs a seeded
//! mutation loop over the same entries. Crashes the fuzzer finds are added
//! to the corpus and so become regression tests here. The corpus holds both
//! protocols: entries whose first byte has the driver's `SMTP` bit (named
//! `smtp_*`) run an SMTP session, the others LMTP.

#[path = "common/session_driver.rs"]
mod session_driver;

use std::time::{Duration, Instant};

use session_driver::{READ_BYTES_MASK, SHUT_DOWN_AT_END, SMTP, TINY_LIMITS, Transcript};

/// Wall-clock budget of the mutation loop, so the test takes about a second
/// in a debug build however fast the machine is. The inputs are the same on
/// every run; a slower machine tests a prefix of them.
const MUTATION_DURATION_MAX: Duration = Duration::from_secs(1);

/// Upper bound on mutated inputs, so a fast machine does not loop forever.
const MUTATIONS_MAX: usize = 200_000;

/// Control bytes every corpus entry is also replayed with: whole reads,
/// byte by byte, odd splits, tiny limits, and shutdown at the end. An entry
/// keeps its protocol (the `SMTP` bit) in every variant.
const CONTROL_VARIANTS: [u8; 6] = [
    0x00,
    0x01,
    0x07,
    TINY_LIMITS,
    TINY_LIMITS | 0x03,
    SHUT_DOWN_AT_END | 0x02,
];

fn corpus() -> Vec<(String, Vec<u8>)> {
    let directory = manifest_dir().join("../../fuzz/corpus/lmtp_session");
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .map(|path| {
            let data =
                std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            (path.display().to_string(), data)
        })
        .collect();
    entries.sort();
    entries
}

#[test]
fn corpus_replays_without_panics() {
    let entries = corpus();
    assert!(entries.len() >= 25, "the seed corpus has about 25 sessions");
    for (name, data) in &entries {
        eprintln!("replaying {name}");
        session_driver::run(data);
        let Some((&own_control, stream)) = data.split_first() else {
            continue;
        };
        for control in CONTROL_VARIANTS {
            let mut variant = Vec::with_capacity(data.len());
            variant.push(control | (own_control & SMTP));
            variant.extend_from_slice(stream);
            session_driver::run(&variant);
        }
    }
}

/// SMTP smuggling (tests/e2e/BUGS.md, entry 7): the carrier's data holds
/// `separator` and then a whole second transaction. Replayed through the
/// fuzz driver (whose checks compare every body with a plain RFC 5321
/// reading) with every read size up to 8 and shutdown at the end, it must be
/// one message holding `stored_separator` and the would-be commands, and the
/// command after the real end must be answered as itself.
fn check_smuggling(separator: &[u8], stored_separator: &[u8]) {
    let carrier: &[u8] = b"Subject: carrier\r\n\r\nhello";
    let smuggled: &[u8] =
        b"MAIL FROM:<evil@r.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\nSubject: evil\r\n\r\nevil\r\n";
    let stream = [
        b"LHLO h\r\nMAIL FROM:<s@r.org>\r\nRCPT TO:<b@x.org>\r\nDATA\r\n",
        carrier,
        separator,
        smuggled,
        b".\r\nXPROBE\r\n",
    ]
    .concat();
    let body = [carrier, stored_separator, smuggled].concat();
    for control in (0..=8).chain([SHUT_DOWN_AT_END, SHUT_DOWN_AT_END | 0x01]) {
        let data = [&[control][..], &stream].concat();
        let Transcript { replies, bodies } = session_driver::run(&data);
        assert_eq!(bodies, std::slice::from_ref(&body), "control {control:#x}");
        let after_lhlo: Vec<&str> = replies
            .iter()
            .skip_while(|line| !line.starts_with("250 ENHANCEDSTATUSCODES"))
            .skip(1)
            .map(String::as_str)
            .collect();
        let closing = if control & SHUT_DOWN_AT_END != 0 {
            "421 4.3.2 shutting down"
        } else {
            "421 4.4.2 mx.example.org idle timeout, closing connection"
        };
        assert_eq!(
            after_lhlo,
            [
                "250 2.1.0 <s@r.org> sender ok",
                "250 2.1.5 <b@x.org> ok",
                "354 start mail input; end with <CRLF>.<CRLF>",
                "250 2.0.0 <b@x.org> delivered",
                "500 5.5.2 command not recognized",
                closing,
            ],
            "control {control:#x}"
        );
    }
}

#[test]
fn smuggled_bare_lf_dot_bare_lf_is_content() {
    check_smuggling(b"\n.\n", b"\n.\n");
}

#[test]
fn smuggled_bare_lf_dot_crlf_is_content() {
    check_smuggling(b"\n.\r\n", b"\n.\r\n");
}

#[test]
fn smuggled_crlf_dot_bare_lf_is_content() {
    // The dot follows a CRLF, so it is dot-stuffing and is removed.
    check_smuggling(b"\r\n.\n", b"\r\n\n");
}

#[test]
fn smuggled_bare_cr_dot_crlf_is_content() {
    check_smuggling(b"\r.\r\n", b"\r.\r\n");
}

#[test]
fn smuggled_crlf_dot_bare_cr_is_content() {
    check_smuggling(b"\r\n.\r", b"\r\n\r");
}

/// One corpus entry, by file name.
fn entry(name: &str) -> Vec<u8> {
    let path = manifest_dir()
        .join("../../fuzz/corpus/lmtp_session")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Runs an entry with its own control byte, or with `read_bytes` in place
/// of its read size (keeping its protocol, limits and ending).
fn run_entry(data: &[u8], read_bytes: Option<u8>) -> Transcript {
    let mut data = data.to_vec();
    if let (Some(control), Some(read_bytes)) = (data.first_mut(), read_bytes) {
        *control = (*control & !READ_BYTES_MASK) | (read_bytes & READ_BYTES_MASK);
    }
    session_driver::run(&data)
}

/// The replies after the (first) EHLO reply.
fn after_ehlo(replies: &[String]) -> Vec<&str> {
    replies
        .iter()
        .skip_while(|line| !line.starts_with("250 ENHANCEDSTATUSCODES"))
        .skip(1)
        .map(String::as_str)
        .collect()
}

/// The SMTP seeds reach what they are named for, in one read, a byte at a
/// time and split at odd places alike.
#[test]
fn smtp_seeds_do_what_they_are_named_for() {
    for read_bytes in 0..=8 {
        let Transcript { bodies, .. } =
            run_entry(&entry("smtp_simple_transaction"), Some(read_bytes));
        assert_eq!(
            bodies,
            [b"Subject: hi\r\n\r\n.dot\r\nbody\r\n".as_slice(), b""],
            "read size {read_bytes}"
        );

        // Its chunk with a bare LF is refused whole.
        let Transcript { bodies, replies } =
            run_entry(&entry("smtp_bdat_chunks"), Some(read_bytes));
        assert_eq!(bodies.len(), 2, "read size {read_bytes}");
        assert_eq!(bodies[0], b"ab\r\n..c\r\n", "read size {read_bytes}");
        assert!(
            replies.iter().any(|line| line.starts_with("550 5.6.0 ")),
            "read size {read_bytes}: {replies:?}"
        );

        // The message cut short by a bare-LF or bare-CR "end" is refused
        // whole, nothing inside it runs as a command, and the session goes
        // on to deliver the clean message after it.
        let Transcript { replies, bodies } =
            run_entry(&entry("smtp_bare_lf_smuggling"), Some(read_bytes));
        assert_eq!(bodies, [b"clean\r\n"], "read size {read_bytes}");
        let refused = replies
            .iter()
            .filter(|line| line.starts_with("550 5.6.0 "))
            .count();
        assert_eq!(refused, 2, "read size {read_bytes}: {replies:?}");

        let Transcript { replies, bodies } =
            run_entry(&entry("smtp_blocked_sender"), Some(read_bytes));
        assert_eq!(bodies.len(), 2, "read size {read_bytes}");
        for expected in [
            "550 5.7.1 blocked??by policy",
            "451 4.7.1 temporary failure",
            "550 5.7.1 <b@elsewhere.net> relaying denied",
            "550 5.7.1 policy??says no",
            "451 4.7.1 policy??says no; try again later",
        ] {
            assert!(
                replies.iter().any(|line| line == expected),
                "read size {read_bytes}: no {expected:?} in {replies:?}"
            );
        }

        let Transcript { replies, bodies } =
            run_entry(&entry("smtp_too_many_errors"), Some(read_bytes));
        assert!(bodies.is_empty());
        assert_eq!(
            replies.last().map(String::as_str),
            Some("421 4.7.0 mx.example.org too many errors, closing connection"),
            "read size {read_bytes}"
        );

        let Transcript { replies, bodies } =
            run_entry(&entry("smtp_tiny_limits"), Some(read_bytes));
        assert!(bodies.is_empty());
        let after = after_ehlo(&replies);
        assert!(
            after.contains(&"452 4.5.3 too many recipients"),
            "{after:?}"
        );
        let too_big = after
            .iter()
            .filter(|line| line.starts_with("552 5.3.4 "))
            .count();
        assert_eq!(too_big, 3, "SIZE=, DATA and BDAT: {after:?}");
    }

    // STARTTLS: with its own read size the first read ends just after the
    // pipelined QUIT and RSET, which must not run; what comes later (as if
    // over TLS) must start with EHLO again.
    let data = entry("smtp_starttls_pipelined");
    let Transcript { replies, bodies } = run_entry(&data, None);
    assert_eq!(bodies, [b"Subject: over tls\r\n\r\nhi\r\n"]);
    let after_tls: Vec<&str> = replies
        .iter()
        .skip_while(|line| *line != "220 2.0.0 ready to start TLS")
        .skip(1)
        .map(String::as_str)
        .take(2)
        .collect();
    assert_eq!(
        after_tls,
        ["503 5.5.1 send EHLO first", "250-mx.example.org"]
    );
    // In one read everything after STARTTLS was sent in the clear: dropped.
    let Transcript { replies, bodies } = run_entry(&data, Some(0));
    assert!(bodies.is_empty());
    assert_eq!(
        after_ehlo(&replies),
        [
            "220 2.0.0 ready to start TLS",
            "421 4.4.2 mx.example.org idle timeout, closing connection",
        ]
    );
}

/// Found by the driver's SMTP checks: a command line over `line_bytes_max`
/// was answered `500 5.5.2 line too long` before `Session::command` counted
/// errors, so a client sending nothing but over-long lines was never closed
/// with 421, unlike one sending any other garbage (issue 5, "Bad input").
#[test]
fn overlong_lines_count_as_errors() {
    let long = "X".repeat(60);
    let stream = format!("EHLO c\r\n{long}\r\n{long}\r\n{long}\r\n{long}\r\nNOOP\r\n");
    let config = session_driver::smtp_config(session_driver::tiny_config());
    assert_eq!(config.errors_max, 3);
    let Transcript { replies, .. } =
        session_driver::run_with(config, stream.as_bytes(), stream.len(), false);
    assert_eq!(
        after_ehlo(&replies),
        [
            "500 5.5.2 line too long",
            "500 5.5.2 line too long",
            "500 5.5.2 line too long",
            "421 4.7.0 mx.example.org too many errors, closing connection",
        ]
    );
}

/// xorshift64*: a fixed seed makes every run test the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        match u64::try_from(n) {
            Ok(0) | Err(_) => 0,
            Ok(n) => usize::try_from(self.next() % n).unwrap_or(0),
        }
    }
}

/// Bytes the protocol cares about, so mutations hit the interesting paths.
const INTERESTING: &[u8] = b"\r\n.<>:= @\0\xff\x7fxqate";

/// Fragments that start or end protocol states, and the look-alike end
/// markers that must not end the data (SMTP smuggling).
const FRAGMENTS: [&[u8]; 20] = [
    b"\r\n.\r\n",
    b"\n.\n",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"DATA\r\n",
    b"RSET\r\n",
    b"LHLO h\r\n",
    b"MAIL FROM:<s@r.org>\r\n",
    b"RCPT TO:<b@x.org>\r\n",
    b"RCPT TO:<xno@x.org>\r\n",
    b"RCPT TO:<alias@x.org>\r\n",
    b"BDAT 5 LAST\r\n",
    b"QUIT\r\n",
    b"EHLO h\r\n",
    b"STARTTLS\r\n",
    b"BDAT 3\r\n",
    b"MAIL FROM:<x@blocked.example>\r\n",
    b"RCPT TO:<spam@x.org>\r\n",
];

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, others: &[(String, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(7) {
            0 if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                // Splice in part of another entry.
                let (_, other) = &others[rng.below(others.len())];
                let start = rng.below(other.len());
                let end = (start + rng.below(64)).min(other.len());
                data.splice(at..at, other[start..end].iter().copied());
            }
            4 => {
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())];
                data.splice(at..at, fragment.iter().copied());
            }
            5 if !data.is_empty() => {
                // A new control byte: another read size, limits or ending.
                data[0] = rng.next().to_le_bytes()[0];
            }
            _ if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] = rng.next().to_le_bytes()[0];
            }
            _ => data.push(READ_BYTES_MASK),
        }
    }
}

#[test]
fn seeded_mutations_do_not_panic() {
    let entries = corpus();
    let mut rng = Rng(0x5eed_1a7b_d00d_0001);
    let started = Instant::now();
    let mut count = 0;
    while count < MUTATIONS_MAX && started.elapsed() < MUTATION_DURATION_MAX {
        let (name, data) = &entries[count % entries.len()];
        let mut mutated = data.clone();
        mutate(&mut rng, &mut mutated, &entries);
        let result = std::panic::catch_unwind(|| session_driver::run(&mutated));
        assert!(result.is_ok(), "panic on mutation of {name}: {mutated:?}");
        count += 1;
    }
    eprintln!("{count} mutations in {:?}", started.elapsed());
}

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
