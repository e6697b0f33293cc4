//! Replays the cargo-fuzz seed corpus (`fuzz/corpus/mime_summarize`) and
//! the `.eml` test data through every entry point on stable, with the same
//! checks as `fuzz/fuzz_targets/mime_summarize.rs`. Crashes the fuzzer
//! finds are added to the corpus and so become regression tests here.

mod common;

use std::path::PathBuf;

fn replay(directory: PathBuf) -> usize {
    let mut count = 0;
    let entries = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if !path.is_file() {
            continue;
        }
        let raw = std::fs::read(&path).expect("readable corpus file");
        eprintln!("replaying {}", path.display());
        common::exercise::exercise(&raw);
        count += 1;
    }
    count
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let root = manifest_dir();
    let corpus = root.join("../../fuzz/corpus/mime_summarize");
    assert!(
        replay(corpus) >= 12,
        "the seed corpus has at least a dozen messages"
    );
}

#[test]
fn test_data_replays_without_panics() {
    let root = manifest_dir();
    assert!(replay(root.join("tests/data")) >= 12);
}

#[test]
fn generated_mutations_replay_without_panics() {
    // A cheap stand-in for the fuzzer on stable: every truncation and a
    // spread of single-byte corruptions of each seed.
    let root = manifest_dir();
    let corpus = root.join("../../fuzz/corpus/mime_summarize");
    for entry in std::fs::read_dir(corpus).expect("corpus directory") {
        let raw = std::fs::read(entry.expect("entry").path()).expect("readable");
        for end in (0..raw.len()).step_by(3) {
            common::exercise::exercise(&raw[..end]);
        }
        for (index, replacement) in [b'\n', b'-', b'"', b'(', b'=', 0xff, b'\r', b':']
            .iter()
            .enumerate()
        {
            for position in (index..raw.len()).step_by(13) {
                let mut mutated = raw.clone();
                mutated[position] = *replacement;
                common::exercise::exercise(&mutated);
            }
        }
    }
}

#[test]
fn syntax_checker_catches_bad_strings() {
    use common::imap_syntax::check;
    assert!(check("(\"a\" NIL {3}\r\nabc 12)").is_ok());
    assert!(check("(\"a\rb\")").is_err());
    assert!(check("(\"caf\u{e9}\")").is_err());
    assert!(check("({4}\r\nabc)").is_err());
    assert!(check("((NIL)").is_err());
    assert!(check("(nil)").is_err());
}

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
