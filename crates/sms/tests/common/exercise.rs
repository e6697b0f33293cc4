//! Checks run on arbitrary input by the `sms` fuzz target
//! (`fuzz/fuzz_targets/sms.rs`) and by the stable corpus replay
//! (`tests/fuzz_corpus.rs`). Included by path in both, so they need not be
//! public API of the crate.
//!
//! - Any UTF-8 text: `count` agrees with `encode`; every encoding that
//!   succeeds decodes back to the text, in both septet layouts; no segment is
//!   over 140 octets (160 for unpacked GSM-7, which the SMSC packs); `truncate_to_segments` fits its budget and is a prefix.
//! - Any bytes as user data from an SMSC, in every coding, layout and with or
//!   without a UDH flag: `decode_user_data` answers (text or error), never panics.
//! - Any text as a phone number: `normalize_e164` answers, and what it accepts
//!   is `+` and 7 to 15 digits that parse back to the same number.

use sms::{Coding, Options, SeptetLayout};

pub fn exercise(data: &[u8]) {
    for coding in [Coding::Gsm7, Coding::Ucs2] {
        for layout in [SeptetLayout::Unpacked, SeptetLayout::Packed] {
            for has_udh in [false, true] {
                let _ = sms::decode_user_data(coding, layout, data, has_udh);
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(number) = sms::normalize_e164(text, Some("41")) {
        let digits = number.digits();
        assert!((7..=15).contains(&digits.len()), "{number}");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{number}");
        let again: sms::PhoneNumber = number.as_str().parse().expect("accepted number parses");
        assert_eq!(again, number);
    }
    let counted = sms::count(text);
    for layout in [SeptetLayout::Unpacked, SeptetLayout::Packed] {
        let options = Options {
            segments_max: 255,
            septet_layout: layout,
        };
        match sms::encode(text, 0x5a, &options) {
            Ok(encoded) => {
                assert_eq!(encoded.coding, counted.coding);
                assert_eq!(encoded.segments.len(), counted.segments);
                // 140 octets on the air; unpacked GSM-7 (one septet per octet,
                // the SMSC packs) is up to 160.
                let octets_max = match (encoded.coding, layout) {
                    (Coding::Gsm7, SeptetLayout::Unpacked) => 160,
                    _ => 140,
                };
                for segment in &encoded.segments {
                    let octets = segment.short_message().len();
                    assert!(octets <= octets_max, "segment of {octets} octets");
                }
                assert_eq!(sms::decode(&encoded).expect("our encoding decodes"), text);
            }
            Err(_) => assert!(text.is_empty() || counted.segments > 255),
        }
    }
    for budget in [1, 2] {
        let cut = sms::truncate_to_segments(text, budget);
        assert!(sms::count(&cut).segments <= budget, "{cut:?}");
    }
}
