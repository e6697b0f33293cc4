//! Checks run on arbitrary input by the `spam_headers` fuzz target
//! (`fuzz/fuzz_targets/spam_headers.rs`) and by the stable corpus replay
//! (`tests/fuzz_corpus.rs`). Included by path in both, so they need not be
//! public API of the crate.
//!
//! - Any bytes as a message: `strip_claimed` never changes a byte after
//!   the header section, only removes (never adds or alters) header bytes,
//!   keeps the header/body boundary where it was, and is idempotent.
//! - Any text as a body: `normalise` gives single-space-separated words and
//!   is idempotent; `of_text` agrees with fingerprinting the normalised text.
//! - Any text as a block, bare and behind each kind prefix: what parses
//!   prints back to the same key and is canonical; networks likewise.
//! - Any text as a header field's name and value: `field` writes one field
//!   whose lines are CRLF-separated, continuation lines start with a space,
//!   and lines over 78 bytes hold a single word.

use std::borrow::Cow;

use spam::blocks::BlockKey;
use spam::fingerprint::{self, Fingerprint};
use spam::headers;
use spam::limits::Net;
use spam::score::{self, Action, Contribution, Verdict};

pub fn exercise(data: &[u8]) {
    check_strip(data, "mx.example.com");
    check_strip(data, "");
    // An authserv-id taken from the input, so matches happen.
    let id_len = data
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(data.len())
        .min(40);
    let id = String::from_utf8_lossy(data.get(..id_len).unwrap_or_default()).into_owned();
    check_strip(data, &id);

    let text = String::from_utf8_lossy(data);
    check_text(&text);
    check_block_keys(&text);
    check_field(&text);
}

fn check_strip(message: &[u8], authserv_id: &str) {
    let stripped = headers::strip_claimed(message, authserv_id);
    let header_len = headers::header_section_len(message);
    assert!(header_len <= message.len());
    let body = message.get(header_len..).unwrap_or_default();
    assert!(stripped.len() <= message.len());
    assert!(stripped.ends_with(body), "the body changed");
    let kept_header = stripped
        .get(..stripped.len() - body.len())
        .unwrap_or_default();
    assert!(
        is_subsequence(kept_header, message.get(..header_len).unwrap_or_default()),
        "header bytes were added or altered"
    );
    assert_eq!(
        headers::header_section_len(&stripped),
        kept_header.len(),
        "the header/body boundary moved"
    );
    if let Cow::Owned(_) = stripped {
        assert!(
            stripped.len() < message.len(),
            "a copy that removed nothing"
        );
    }
    assert!(
        matches!(
            headers::strip_claimed(&stripped, authserv_id),
            Cow::Borrowed(_)
        ),
        "stripping twice removed more"
    );
}

/// Whether `small` is `large` with some bytes left out.
fn is_subsequence(small: &[u8], large: &[u8]) -> bool {
    let mut large = large.iter();
    small.iter().all(|byte| large.any(|other| other == byte))
}

fn check_text(text: &str) {
    let normalised = fingerprint::normalise(text);
    assert!(!normalised.starts_with(' ') && !normalised.ends_with(' '));
    assert!(!normalised.contains("  "));
    assert!(!normalised.chars().any(|c| c.is_whitespace() && c != ' '));
    assert!(normalised.len() <= 3 * fingerprint::TEXT_BYTES_MAX);
    let fingerprint = Fingerprint::of_text(text);
    if normalised.len() <= fingerprint::TEXT_BYTES_MAX {
        assert_eq!(
            fingerprint::normalise(&normalised),
            normalised,
            "normalising twice"
        );
        assert_eq!(Fingerprint::of_text(&normalised), fingerprint);
    }
    if let Some(fingerprint) = fingerprint {
        assert_eq!(
            Fingerprint::from_hex(&fingerprint.to_hex()),
            Some(fingerprint)
        );
    }
    let _ = Fingerprint::from_hex(text);
}

fn check_block_keys(text: &str) {
    let candidates = [
        text.to_string(),
        format!("ip:{text}"),
        format!("net:{text}"),
        format!("sender:{text}"),
        format!("domain:{text}"),
        format!("fingerprint:{text}"),
    ];
    for candidate in &candidates {
        if let Ok(key) = candidate.parse::<BlockKey>() {
            let printed = key.to_string();
            assert_eq!(printed.parse::<BlockKey>().as_ref(), Ok(&key), "{printed}");
            assert_eq!(key.clone().canonical(), key, "{printed}");
        }
    }
    if let Ok(net) = text.parse::<Net>() {
        assert_eq!(net.to_string().parse::<Net>(), Ok(net));
        assert!(net.contains(net.addr));
    }
}

fn check_field(text: &str) {
    let (name, value) = text.split_once(':').unwrap_or(("X-Test", text));
    let field = headers::field(name, value);
    assert!(field.ends_with("\r\n"));
    let lines: Vec<&str> = field.trim_end_matches("\r\n").split("\r\n").collect();
    for (index, line) in lines.iter().enumerate() {
        assert!(!line.contains('\r') && !line.contains('\n'), "{field:?}");
        if index > 0 {
            assert!(line.starts_with(' '), "{field:?}");
        }
        if line.len() > headers::LINE_BYTES_MAX {
            assert!(!line.trim_start().contains(' ') || index == 0, "{field:?}");
        }
    }
    let verdict = Verdict {
        score: 1.0,
        action: Action::Junk,
        contributions: vec![Contribution {
            name: text.chars().take(200).collect(),
            score: 1.0,
        }],
    };
    let value = score::header_value(&verdict);
    assert!(!value.chars().any(|c| c.is_control()), "{value:?}");
}
