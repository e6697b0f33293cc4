//! Replays the cargo-fuzz corpus (`fuzz/corpus/spam_headers`) on stable with
//! the same checks as `fuzz/fuzz_targets/spam_headers.rs`, then a fixed,
//! seeded set of mutations of it; crashes the fuzzer finds join the corpus
//! and so become regression tests here.

#![allow(clippy::unwrap_used)]

#[path = "common/exercise.rs"]
mod exercise;

/// Mutated inputs per corpus entry: enough to reach the odd paths (a CR
/// moved, a colon dropped) in well under a second in a debug build.
const MUTATIONS_PER_ENTRY: usize = 200;

#[test]
fn corpus_replays_with_every_check() {
    let entries = corpus();
    for entry in &entries {
        exercise::exercise(entry);
    }
    assert!(
        entries.len() >= 10,
        "the seed corpus has at least ten inputs, found {}",
        entries.len()
    );
}

#[test]
fn mutated_corpus_entries_pass_every_check() {
    // xorshift64: the same inputs on every run and every machine.
    let mut state: u64 = 0x5350_414d_5f46_555a;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const INTERESTING: &[u8] =
        b"\r\n \t:;()\"\\@./X-Postern-Spam Authentication-Results mx.example.com\xff\x00";
    for entry in corpus() {
        for _ in 0..MUTATIONS_PER_ENTRY {
            let mut input = entry.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (input.len() + 1);
                let byte = INTERESTING[(next() as usize) % INTERESTING.len()];
                match next() % 3 {
                    0 => input.insert(at, byte),
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ if at < input.len() => input[at] = byte,
                    _ => input.push(byte),
                }
            }
            exercise::exercise(&input);
        }
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = manifest_dir().join("../../fuzz/corpus/spam_headers");
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            entries.push(std::fs::read(&path).unwrap());
        }
    }
    entries.sort();
    entries
}

/// The crate's directory, from cargo at run time (see the other crates' tests).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
