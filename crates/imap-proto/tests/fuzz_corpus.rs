//! Replays the fuzz corpus (`fuzz/corpus/imap_command/`) through framer and
//! parser on stable Rust, so CI catches regressions without libFuzzer; then
//! runs a small seeded mutation loop over the same entries. The loop is the
//! same as `fuzz/fuzz_targets/imap_command.rs`: nothing may panic.

use postern_imap_proto::framer::{Frame, Framer, Limits};
use postern_imap_proto::parse::parse_command;

/// Mutations run per corpus entry; keeps the test well under two seconds
/// in debug builds.
const MUTATIONS_PER_ENTRY: usize = 3000;

fn run_one(data: &[u8], limits: Limits) {
    let mut framer = Framer::new(limits);
    let mut rest = data;
    for _ in 0..=data.len() * 2 + 2 {
        match framer.next(rest) {
            Frame::Incomplete => return,
            Frame::NeedContinuation { .. } => {}
            Frame::Complete { len } => {
                assert!(len > 0 && len <= rest.len());
                let _ = parse_command(&rest[..len]);
                rest = &rest[len..];
            }
            Frame::Reject { discard, close, .. } => {
                assert!(discard <= rest.len());
                if close {
                    return;
                }
                rest = &rest[discard..];
            }
        }
    }
    panic!("framer made no progress on {data:?}");
}

fn fuzz_limits() -> Limits {
    Limits {
        line_bytes_max: 512,
        literal_bytes_max: 2048,
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = manifest_dir().join("../../fuzz/corpus/imap_command");
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .map(|entry| {
            let path = entry.path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            (path.display().to_string(), data)
        })
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "empty corpus at {dir:?}");
    entries
}

#[test]
fn corpus_replays_without_panic() {
    for (name, data) in corpus() {
        eprintln!("{name}");
        run_one(&data, Limits::default());
        run_one(&data, fuzz_limits());
    }
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
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes the grammar cares about, so mutations hit interesting paths.
const INTERESTING: &[u8] = b"(){}[]<>\"\\ *%$:,.+-~0123456789\r\n\0\xffNILUIDBODY";

fn mutate(rng: &mut Rng, data: &mut Vec<u8>, others: &[(String, Vec<u8>)]) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            1 => data.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            2 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            3 => {
                // Splice in part of another entry.
                let (_, other) = &others[rng.below(others.len())];
                let start = rng.below(other.len());
                let end = (start + rng.below(32)).min(other.len());
                data.splice(at..at, other[start..end].iter().copied());
            }
            4 => {
                let digits = ["0", "4294967296", "18446744073709551616", "9", "2000000000"];
                data.splice(at..at, digits[rng.below(digits.len())].bytes());
            }
            _ if !data.is_empty() => {
                let at = at.min(data.len() - 1);
                data[at] = rng.next() as u8;
            }
            _ => data.push(b'('),
        }
    }
}

#[test]
fn seeded_mutations_do_not_panic() {
    let entries = corpus();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for (name, data) in &entries {
        for _ in 0..MUTATIONS_PER_ENTRY {
            let mut mutated = data.clone();
            mutate(&mut rng, &mut mutated, &entries);
            let result = std::panic::catch_unwind(|| {
                run_one(&mutated, fuzz_limits());
                run_one(&mutated, Limits::default());
            });
            assert!(result.is_ok(), "panic on mutation of {name}: {mutated:?}");
        }
    }
}

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
