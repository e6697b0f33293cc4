//! Where segments end: every boundary of both codings, characters that
//! must not be split, the UDH, the cap, counting and truncating.

// Test helpers unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use sms::{
    Coding, Count, Error, Options, SeptetLayout, count, decode, encode, truncate_to_segments,
};

fn options(segments_max: u8) -> Options {
    Options {
        segments_max,
        septet_layout: SeptetLayout::Unpacked,
    }
}

/// Encodes `text` and returns (coding, units per segment).
fn shape(text: &str) -> (Coding, Vec<usize>) {
    let encoded = encode(text, 7, &options(255)).unwrap();
    assert_eq!(decode(&encoded).unwrap(), text, "round trip");
    (
        encoded.coding,
        encoded
            .segments
            .iter()
            .map(|segment| segment.units)
            .collect(),
    )
}

#[test]
fn segment_boundaries() {
    // (name, text, coding, units in each segment)
    let a = |n: usize| "a".repeat(n);
    let zh = |n: usize| "中".repeat(n);
    let cases: Vec<(&str, String, Coding, Vec<usize>)> = vec![
        ("1 septet", a(1), Coding::Gsm7, vec![1]),
        ("160 septets: single", a(160), Coding::Gsm7, vec![160]),
        ("161 septets: two", a(161), Coding::Gsm7, vec![153, 8]),
        (
            "153*2 septets: two full",
            a(306),
            Coding::Gsm7,
            vec![153, 153],
        ),
        (
            "153*2+1 septets: three",
            a(307),
            Coding::Gsm7,
            vec![153, 153, 1],
        ),
        (
            "80 escapes = 160 septets: single",
            "€".repeat(80),
            Coding::Gsm7,
            vec![160],
        ),
        ("1 unit", zh(1), Coding::Ucs2, vec![1]),
        ("70 units: single", zh(70), Coding::Ucs2, vec![70]),
        ("71 units: two", zh(71), Coding::Ucs2, vec![67, 4]),
        ("67*2 units: two full", zh(134), Coding::Ucs2, vec![67, 67]),
        (
            "67*2+1 units: three",
            zh(135),
            Coding::Ucs2,
            vec![67, 67, 1],
        ),
        (
            "35 emoji = 70 units: single",
            "😀".repeat(35),
            Coding::Ucs2,
            vec![70],
        ),
        // One non-GSM character makes the whole text UCS-2.
        (
            "159 a + ж",
            format!("{}ж", a(159)),
            Coding::Ucs2,
            vec![67, 67, 26],
        ),
    ];
    for (name, text, coding, units) in cases {
        assert_eq!(shape(&text), (coding, units.clone()), "{name}");
        let counted = count(&text);
        assert_eq!(
            counted,
            Count {
                coding,
                segments: units.len(),
                units: units.iter().sum()
            },
            "{name}: count agrees with encode"
        );
    }
}

#[test]
fn escape_pair_at_position_153_moves_whole_to_the_next_segment() {
    // 152 septets, then '€' would take septets 153 and 154.
    let text = format!("{}€{}", "a".repeat(152), "b".repeat(10));
    let encoded = encode(&text, 1, &options(4)).unwrap();
    let first = &encoded.segments[0];
    let second = &encoded.segments[1];
    assert_eq!(first.units, 152, "the segment ends one septet short");
    assert_ne!(first.payload.last(), Some(&0x1B), "no escape left dangling");
    assert_eq!(&second.payload[..2], &[0x1B, 0x65]);
    assert_eq!(second.units, 12);
    assert_eq!(decode(&encoded).unwrap(), text);
}

#[test]
fn escape_pair_ending_at_153_stays() {
    let text = format!("{}€{}", "a".repeat(151), "b".repeat(10));
    let (_, units) = shape(&text);
    assert_eq!(units, [153, 10]);
}

#[test]
fn emoji_straddling_unit_67_moves_whole_to_the_next_segment() {
    let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
    let encoded = encode(&text, 1, &options(4)).unwrap();
    assert_eq!(encoded.segments[0].units, 66);
    assert_eq!(&encoded.segments[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
    assert_eq!(encoded.segments[1].units, 12);
    // Each segment is valid UTF-16 on its own.
    for segment in &encoded.segments {
        let decoded = sms::decode_user_data(
            Coding::Ucs2,
            SeptetLayout::Unpacked,
            &segment.short_message(),
            true,
        );
        assert!(decoded.is_ok(), "{decoded:?}");
    }
}

#[test]
fn udh_bytes() {
    let encoded = encode(&"x".repeat(400), 0xA7, &options(4)).unwrap();
    let headers: Vec<[u8; 6]> = encoded
        .segments
        .iter()
        .map(|segment| segment.udh.unwrap())
        .collect();
    assert_eq!(
        headers,
        [
            [0x05, 0x00, 0x03, 0xA7, 0x03, 0x01],
            [0x05, 0x00, 0x03, 0xA7, 0x03, 0x02],
            [0x05, 0x00, 0x03, 0xA7, 0x03, 0x03],
        ]
    );
    let short_message = encoded.segments[2].short_message();
    assert_eq!(&short_message[..6], &headers[2]);
    assert_eq!(short_message.len(), 6 + 400 - 2 * 153);

    let decoded = sms::decode_user_data(
        Coding::Gsm7,
        SeptetLayout::Unpacked,
        &encoded.segments[1].short_message(),
        true,
    )
    .unwrap();
    assert_eq!(
        decoded.concatenation,
        Some(sms::Concatenation {
            reference: 0xA7,
            total: 3,
            sequence: 2
        })
    );
}

#[test]
fn single_message_has_no_udh() {
    let encoded = encode(&"x".repeat(160), 0xA7, &options(4)).unwrap();
    assert_eq!(encoded.segments.len(), 1);
    assert_eq!(encoded.segments[0].udh, None);
    assert_eq!(encoded.segments[0].short_message(), vec![b'x'; 160]);
}

#[test]
fn segment_cap() {
    let text = "x".repeat(153 * 3 + 1);
    let error = encode(&text, 0, &options(3)).unwrap_err();
    assert_eq!(error, Error::TooManySegments { needed: 4, max: 3 });
    assert_eq!(
        error.to_string(),
        "the SMS text needs 4 segments but at most 3 are allowed (raise segments_max or shorten the text)"
    );
    assert!(encode(&text, 0, &options(4)).is_ok());
    // A cap of 1 still allows a full single message.
    assert!(encode(&"x".repeat(160), 0, &options(1)).is_ok());
    assert_eq!(
        encode(&"x".repeat(161), 0, &options(1)).unwrap_err(),
        Error::TooManySegments { needed: 2, max: 1 }
    );
    // The UDH counts segments in one octet; more than 255 is refused, never wrapped.
    let huge = "x".repeat(153 * 255 + 1);
    assert_eq!(
        encode(&huge, 0, &options(255)).unwrap_err(),
        Error::TooManySegments {
            needed: 256,
            max: 255
        }
    );
    assert_eq!(
        encode(&"x".repeat(153 * 255), 0, &options(255))
            .unwrap()
            .segments
            .len(),
        255
    );
}

#[test]
fn default_cap_is_four() {
    assert_eq!(Options::default().segments_max, 4);
    assert!(encode(&"x".repeat(153 * 4), 0, &Options::default()).is_ok());
    assert!(encode(&"x".repeat(153 * 4 + 1), 0, &Options::default()).is_err());
}

#[test]
fn empty_text_is_refused() {
    assert_eq!(
        encode("", 0, &Options::default()).unwrap_err(),
        Error::EmptyText
    );
    assert_eq!(count("").segments, 0);
}

#[test]
fn truncate_to_segments_cases() {
    // (name, text, segments, expected)
    let long_gsm = "a".repeat(200);
    let long_ucs2 = "ж".repeat(100);
    let escapes = format!("{}€€", "a".repeat(157));
    let emoji = format!("{}😀😀", "ж".repeat(68));
    let gsm_then_ucs2 = format!("{}ж", "a".repeat(200));
    let cases: Vec<(&str, &str, usize, String)> = vec![
        ("fits: unchanged", "Hello", 1, "Hello".to_owned()),
        (
            "exactly 160: unchanged",
            &long_gsm[..160],
            1,
            "a".repeat(160),
        ),
        (
            "GSM-7 gets three dots",
            &long_gsm,
            1,
            format!("{}...", "a".repeat(157)),
        ),
        (
            "UCS-2 gets the ellipsis character",
            &long_ucs2,
            1,
            format!("{}…", "ж".repeat(69)),
        ),
        ("two segments", &long_gsm[..], 2, "a".repeat(200)),
        (
            "escape not cut in half",
            &escapes,
            1,
            format!("{}...", "a".repeat(157)),
        ),
        (
            "surrogate pair not cut in half",
            &emoji,
            1,
            format!("{}…", "ж".repeat(68)),
        ),
        ("zero segments", "Hello", 0, String::new()),
        // A UCS-2 text whose kept start is GSM-7 uses "..." and the
        // 160-septet budget.
        (
            "GSM-7 start of a UCS-2 text",
            &gsm_then_ucs2,
            1,
            format!("{}...", "a".repeat(157)),
        ),
    ];
    for (name, text, segments, expected) in cases {
        let truncated = truncate_to_segments(text, segments);
        assert_eq!(truncated, expected, "{name}");
        assert!(
            count(&truncated).segments <= segments,
            "{name}: result fits"
        );
    }
}

#[test]
fn truncate_to_segments_result_always_fits_and_is_a_prefix() {
    let texts = [
        "a€".repeat(300),
        "ж😀".repeat(100),
        "Grüße {} ".repeat(50),
        "x".repeat(1000),
    ];
    for text in &texts {
        for segments in 1..=5 {
            let truncated = truncate_to_segments(text, segments);
            assert!(count(&truncated).segments <= segments);
            let kept = truncated.trim_end_matches("...").trim_end_matches('…');
            assert!(text.starts_with(kept), "{truncated:?}");
            assert!(encode(&truncated, 0, &options(u8::try_from(segments).unwrap())).is_ok());
        }
    }
}
