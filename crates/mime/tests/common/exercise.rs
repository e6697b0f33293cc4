//! Runs every entry point of the crate over one input and checks the
//! invariants that hold for any input. Shared by the corpus replay test and
//! the cargo-fuzz target (included there by path).

use postern_mime::{Limits, SectionKind, binary, body_text, section, summarize};

use super::imap_syntax;

/// Part numbers tried on every input: the top level, the first levels, and
/// numbers that exist only in deeper or wider messages.
const PATHS: [&[u32]; 9] = [
    &[],
    &[1],
    &[2],
    &[3],
    &[1, 1],
    &[1, 2],
    &[2, 1],
    &[2, 2, 1],
    &[0],
];

pub fn exercise(raw: &[u8]) {
    let small = Limits {
        header_fields_max: 3,
        header_bytes_max: 64,
        mime_depth_max: 2,
        mime_parts_max: 4,
    };
    for limits in [Limits::default(), small] {
        let summary = summarize(raw, &limits);
        for rendered in [&summary.envelope, &summary.body, &summary.body_structure] {
            if let Err(error) = imap_syntax::check(rendered) {
                panic!("{error} in {rendered:?}");
            }
        }
        assert!(summary.header_bytes <= raw.len() as u64);
        assert!(summary.headers.len() <= limits.header_fields_max);
        assert!(summary.preview.chars().count() <= 256);
        // The cache entry the store keeps: its encoding decodes to the same summary.
        let cached = serde_json::to_vec(&summary).expect("a summary always encodes");
        let decoded: postern_mime::Summary =
            serde_json::from_slice(&cached).expect("a cached summary always decodes");
        assert_eq!(
            serde_json::to_vec(&decoded).expect("encodes"),
            cached,
            "cache round trip changed the summary"
        );
    }

    // HEADER and TEXT split the message exactly.
    let header = section(raw, &[], SectionKind::Header).unwrap_or_default();
    let text = section(raw, &[], SectionKind::Text).unwrap_or_default();
    assert_eq!(header.len() + text.len(), raw.len());
    assert_eq!(section(raw, &[], SectionKind::Full).as_deref(), Some(raw));

    let names = vec!["Subject".to_string(), "content-type".to_string()];
    for path in PATHS {
        let full = section(raw, path, SectionKind::Full);
        for kind in [
            SectionKind::Header,
            SectionKind::Text,
            SectionKind::Mime,
            SectionKind::HeaderFields {
                names: &names,
                not: false,
            },
            SectionKind::HeaderFields {
                names: &names,
                not: true,
            },
        ] {
            if let Some(bytes) = section(raw, path, kind) {
                // Every section of an existing part is part of the message,
                // except HEADER.FIELDS, which may add line breaks.
                if !matches!(kind, SectionKind::HeaderFields { .. }) {
                    assert!(bytes.len() <= raw.len());
                }
                assert!(
                    full.is_some() || path.is_empty(),
                    "section of a missing part"
                );
            }
        }
        let _ = binary(raw, path);
    }
    for bytes_max in [0, 7, 1 << 16] {
        assert!(body_text(raw, bytes_max).len() <= bytes_max);
    }
}
