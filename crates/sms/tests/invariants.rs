//! Random texts from a pool of awkward characters, checked against the
//! invariants every encoding must keep. A small xorshift generator with a
//! fixed seed keeps this deterministic and dependency-free.

// Test helpers unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use sms::{
    Coding, Options, SeptetLayout, count, decode, decode_user_data, encode, truncate_to_segments,
};

/// Plain GSM-7, extension characters (two septets), GSM-7 characters that
/// look like others, non-GSM BMP characters and non-BMP characters.
const POOL: &[char] = &[
    'a', 'Z', ' ', '0', '@', '\n', 'é', 'Δ', '€', '[', '|', '\u{0C}', 'ç', 'ж', '中', '…', '😀',
    '𝄞',
];

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }
}

fn random_text(rng: &mut XorShift) -> String {
    let length = 1 + rng.below(500);
    // Half the texts stay GSM-7 (the first 12 of the pool) so both codings
    // get their share.
    let pool = if rng.below(2) == 0 { &POOL[..12] } else { POOL };
    (0..length).map(|_| pool[rng.below(pool.len())]).collect()
}

#[test]
fn random_texts_keep_every_invariant() {
    let mut rng = XorShift(0x5EED_CAFE_F00D_D00D);
    for _ in 0..2_000 {
        let text = random_text(&mut rng);
        for layout in [SeptetLayout::Unpacked, SeptetLayout::Packed] {
            let options = Options {
                segments_max: 255,
                septet_layout: layout,
            };
            let encoded = encode(&text, 9, &options).unwrap();
            assert_eq!(decode(&encoded).unwrap(), text);

            let counted = count(&text);
            assert_eq!(counted.coding, encoded.coding);
            assert_eq!(counted.segments, encoded.segments.len());
            assert_eq!(
                counted.units,
                encoded.segments.iter().map(|s| s.units).sum::<usize>()
            );

            let single = encoded.segments.len() == 1;
            let limit = if single {
                encoded.coding.single_units_max()
            } else {
                encoded.coding.segment_units_max()
            };
            for segment in &encoded.segments {
                assert!(segment.units <= limit && segment.units > 0);
                assert_eq!(segment.udh.is_none(), single);
                // Every segment decodes on its own: no escape or surrogate
                // pair is split.
                let alone =
                    decode_user_data(encoded.coding, layout, &segment.short_message(), !single)
                        .unwrap();
                assert!(!alone.text.is_empty());
                // On the air a short message is at most 140 octets; the
                // unpacked form is one octet per septet and the SMSC packs it.
                match (encoded.coding, layout) {
                    (Coding::Gsm7, SeptetLayout::Unpacked) => {
                        assert_eq!(segment.payload.len(), segment.units)
                    }
                    (Coding::Gsm7, SeptetLayout::Packed) => {
                        assert!(segment.short_message().len() <= 140)
                    }
                    (Coding::Ucs2, _) => {
                        assert_eq!(segment.payload.len(), segment.units * 2);
                        assert!(segment.short_message().len() <= 140);
                    }
                }
            }
        }
        for segments in 1..=3 {
            let truncated = truncate_to_segments(&text, segments);
            assert!(
                count(&truncated).segments <= segments,
                "{text:?} cut to {segments}: {truncated:?}"
            );
        }
    }
}
