//! Encode → decode round trips over many scripts, in every layout, through
//! both decoders (the whole `Encoded`, and each segment's `short_message`
//! as an SMSC would deliver it).

// Test helpers unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use sms::{Coding, Options, SeptetLayout, decode, decode_user_data, encode};

/// (name, text, coding the encoder must choose).
const SAMPLES: &[(&str, &str, Coding)] = &[
    (
        "English",
        "Your mailbox is 90% full. Delete old mail or ask for more space.",
        Coding::Gsm7,
    ),
    (
        "German umlauts",
        "Grüße aus Zürich: Äpfel, Öl, Übermaß; schön, größer, Straße.",
        Coding::Gsm7,
    ),
    (
        "French",
        "Où êtes-vous ? J'ai reçu le message à midi, merci.",
        Coding::Ucs2,
    ),
    (
        "French without ç or ê",
        "Où est la clé ? à midi, près de l'église.",
        Coding::Gsm7,
    ),
    (
        "Spanish",
        "¿Dónde está el niño? ¡Mañana será otro día!",
        Coding::Ucs2,
    ),
    (
        "Spanish in GSM",
        "¿Qué tal? ¡Mañana, señor Muñoz!",
        Coding::Gsm7,
    ),
    (
        "Greek capitals",
        "ΔΦΓΛΩΠΨΣΘΞ are all in GSM-7",
        Coding::Gsm7,
    ),
    ("Greek", "Καλημέρα κόσμε, τι κάνεις;", Coding::Ucs2),
    (
        "Cyrillic",
        "Привет, мир! Ваш почтовый ящик почти полон.",
        Coding::Ucs2,
    ),
    (
        "Arabic",
        "مرحبا بالعالم، صندوق بريدك ممتلئ تقريبا",
        Coding::Ucs2,
    ),
    (
        "Hebrew",
        "שלום עולם, תיבת הדואר שלך כמעט מלאה",
        Coding::Ucs2,
    ),
    (
        "Hindi",
        "नमस्ते दुनिया, आपका मेलबॉक्स लगभग भर गया है",
        Coding::Ucs2,
    ),
    ("Chinese", "你好，世界！您的邮箱快满了。", Coding::Ucs2),
    (
        "Japanese",
        "こんにちは世界、メールボックスがほぼいっぱいです。",
        Coding::Ucs2,
    ),
    (
        "Korean",
        "안녕하세요 세계, 사서함이 거의 가득 찼습니다.",
        Coding::Ucs2,
    ),
    ("Thai", "สวัสดีชาวโลก กล่องจดหมายของคุณเกือบเต็มแล้ว", Coding::Ucs2),
    (
        "Turkish",
        "Günaydın! Şişli'de ığdır çay içtik.",
        Coding::Ucs2,
    ),
    ("emoji", "📬 New mail 🎉👍🏽 👨‍👩‍👧", Coding::Ucs2),
    (
        "extension table",
        "{json} [array] ~home \\path |pipe ^caret €5 \u{0C}page",
        Coding::Gsm7,
    ),
    (
        "control characters of the alphabet",
        "line one\nline two\r\n@home",
        Coding::Gsm7,
    ),
    ("mixed", "Invoice €42 — 请付款 📎 [urgent]", Coding::Ucs2),
];

fn layouts() -> [Options; 2] {
    [
        Options {
            segments_max: 255,
            septet_layout: SeptetLayout::Unpacked,
        },
        Options {
            segments_max: 255,
            septet_layout: SeptetLayout::Packed,
        },
    ]
}

fn check_round_trip(name: &str, text: &str, coding: Coding) {
    for options in layouts() {
        let encoded = encode(text, 0x2A, &options).unwrap();
        assert_eq!(encoded.coding, coding, "{name}: coding");
        assert_eq!(
            decode(&encoded).unwrap(),
            text,
            "{name}: decode, {options:?}"
        );

        let mut joined = String::new();
        for segment in &encoded.segments {
            let decoded = decode_user_data(
                encoded.coding,
                options.septet_layout,
                &segment.short_message(),
                segment.udh.is_some(),
            )
            .unwrap();
            joined.push_str(&decoded.text);
        }
        assert_eq!(joined, text, "{name}: decode_user_data, {options:?}");
    }
}

#[test]
fn every_sample_round_trips() {
    for &(name, text, coding) in SAMPLES {
        check_round_trip(name, text, coding);
    }
}

#[test]
fn long_samples_round_trip_across_segments() {
    for &(name, text, coding) in SAMPLES {
        // Repeated until it needs several segments, so cuts fall at many
        // different places in each script.
        let long = text.repeat(9);
        check_round_trip(name, &long, coding);
    }
}

#[test]
fn every_character_of_both_gsm_tables_round_trips() {
    let mut all: String = sms::GSM7_DEFAULT
        .iter()
        .enumerate()
        .filter(|&(septet, _)| septet != usize::from(sms::GSM7_ESCAPE))
        .map(|(_, &c)| c)
        .collect();
    all.extend(sms::GSM7_EXTENSION.iter().map(|&(_, c)| c));
    assert_eq!(all.chars().count(), 127 + 10);
    check_round_trip("both tables", &all, Coding::Gsm7);
    // Also one character at a time, so each is checked alone.
    for c in all.chars() {
        check_round_trip("one character", &c.to_string(), Coding::Gsm7);
    }
}

#[test]
fn default_alphabet_matches_the_standard() {
    // TS 23.038 §6.2.1, written out as code points so this is an
    // independent copy of the table, not the same literal twice.
    #[rustfmt::skip]
    const CODE_POINTS: [u32; 128] = [
        0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D, 0xC5, 0xE5,
        0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398, 0x39E, 0x1B, 0xC6, 0xE6, 0xDF, 0xC9,
        0x20, 0x21, 0x22, 0x23, 0xA4, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x2C, 0x2D, 0x2E, 0x2F,
        0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F,
        0xA1, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
        0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0xC4, 0xD6, 0xD1, 0xDC, 0xA7,
        0xBF, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6A, 0x6B, 0x6C, 0x6D, 0x6E, 0x6F,
        0x70, 0x71, 0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7A, 0xE4, 0xF6, 0xF1, 0xFC, 0xE0,
    ];
    for (septet, &code_point) in CODE_POINTS.iter().enumerate() {
        if septet == usize::from(sms::GSM7_ESCAPE) {
            continue;
        }
        assert_eq!(
            u32::from(sms::GSM7_DEFAULT[septet]),
            code_point,
            "septet {septet:#04x}"
        );
    }
    let extension: Vec<(u8, u32)> = sms::GSM7_EXTENSION
        .iter()
        .map(|&(s, c)| (s, u32::from(c)))
        .collect();
    assert_eq!(
        extension,
        [
            (0x0A, 0x0C),
            (0x14, 0x5E),
            (0x28, 0x7B),
            (0x29, 0x7D),
            (0x2F, 0x5C),
            (0x3C, 0x5B),
            (0x3D, 0x7E),
            (0x3E, 0x5D),
            (0x40, 0x7C),
            (0x65, 0x20AC)
        ]
    );
}

#[test]
fn extension_characters_are_escaped_on_the_wire() {
    let options = Options::default();
    let encoded = encode("€[", 0, &options).unwrap();
    assert_eq!(encoded.segments[0].payload, [0x1B, 0x65, 0x1B, 0x3C]);
    assert_eq!(encoded.segments[0].units, 4);
}

#[test]
fn ucs2_payload_is_utf16_big_endian_with_surrogate_pairs() {
    let encoded = encode("é😀", 0, &Options::default()).unwrap();
    // é is GSM-7 but 😀 is not, so the whole text is UCS-2.
    assert_eq!(encoded.coding, Coding::Ucs2);
    assert_eq!(encoded.data_coding(), 0x08);
    assert_eq!(
        encoded.segments[0].payload,
        [0x00, 0xE9, 0xD8, 0x3D, 0xDE, 0x00]
    );
    assert_eq!(encoded.segments[0].units, 3);
}

#[test]
fn data_coding_for_gsm7_is_zero() {
    assert_eq!(
        encode("hello", 0, &Options::default())
            .unwrap()
            .data_coding(),
        0x00
    );
}

/// Each (input, error) pair: user data the decoder must refuse, not
/// misread.
#[test]
fn malformed_user_data_is_an_error() {
    let cases: &[(Coding, &[u8], bool)] = &[
        (Coding::Ucs2, &[0x00, 0x41, 0x00], false), // odd octet count
        (Coding::Ucs2, &[0xD8, 0x3D, 0x00, 0x41], false), // lone high surrogate
        (Coding::Gsm7, &[0x41, 0x1B], false),       // escape at the end
        (Coding::Gsm7, &[0x41, 0x80], false),       // high bit in unpacked form
        (Coding::Gsm7, &[0x05, 0x00, 0x03], true),  // UDH longer than data
        (Coding::Gsm7, &[], true),                  // UDHI with no data
        (Coding::Gsm7, &[0x03, 0x00, 0x03, 0x01, 0x41], true), // element longer than the header
    ];
    for &(coding, data, has_udh) in cases {
        let result = decode_user_data(coding, SeptetLayout::Unpacked, data, has_udh);
        assert!(
            matches!(result, Err(sms::Error::InvalidUserData(_))),
            "{data:02X?}: {result:?}"
        );
    }
}

#[test]
fn received_udh_with_16_bit_reference_and_other_elements() {
    // A 16-bit concatenation element (IEI 0x08) after an unrelated element
    // (IEI 0x24, national language single shift, 1 octet).
    let data = [
        0x09, 0x24, 0x01, 0x00, 0x08, 0x04, 0x12, 0x34, 0x03, 0x02, 0x00, 0x41,
    ];
    let decoded = decode_user_data(Coding::Ucs2, SeptetLayout::Unpacked, &data, true).unwrap();
    assert_eq!(decoded.text, "A");
    assert_eq!(
        decoded.concatenation,
        Some(sms::Concatenation {
            reference: 0x1234,
            total: 3,
            sequence: 2
        })
    );
}

#[test]
fn escape_escape_reads_as_space_and_unknown_escape_as_base_character() {
    let decoded = decode_user_data(
        Coding::Gsm7,
        SeptetLayout::Unpacked,
        &[0x1B, 0x1B, 0x1B, 0x41],
        false,
    )
    .unwrap();
    assert_eq!(decoded.text, " A");
}
