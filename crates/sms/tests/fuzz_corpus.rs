//! Replays the cargo-fuzz corpus (`fuzz/corpus/sms`) on stable with the same
//! checks as `fuzz/fuzz_targets/sms.rs`; crashes the fuzzer finds join the
//! corpus and so become regression tests here.

#![allow(clippy::unwrap_used)]

#[path = "common/exercise.rs"]
mod exercise;

#[test]
fn corpus_replays_with_every_check() {
    let dir = manifest_dir().join("../../fuzz/corpus/sms");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            exercise::exercise(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(
        count >= 10,
        "the seed corpus has at least ten inputs, found {count}"
    );
}

/// The crate's directory, from cargo at run time (see the other crates' tests).
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
