//! Septet packing against known vectors, and the fill bit after a
//! concatenation header.

// Test helpers unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use sms::{
    Coding, Options, SeptetLayout, decode, decode_user_data, encode, pack_septets,
    unpack_all_septets, unpack_septets,
};

fn hex(octets: &[u8]) -> String {
    octets
        .iter()
        .map(|o| format!("{o:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// (text as ASCII-range septets, fill bits, packed octets).
const VECTORS: &[(&str, usize, &str)] = &[
    // The classic example of the SMS literature.
    ("hellohello", 0, "E8 32 9B FD 46 97 D9 EC 37"),
    ("hello", 0, "E8 32 9B FD 06"),
    // 7 septets leave 7 spare bits: TS 23.038 §6.1.2.3.1 fills them with CR
    // (0x0D << 1 = 0x1A in the last octet), not zeros that read as '@'.
    ("1234567", 0, "31 D9 8C 56 B3 DD 1A"),
    ("12345678", 0, "31 D9 8C 56 B3 DD 70"),
    // After a 6-octet UDH: one fill bit, so every septet moves up one bit.
    ("hello", 1, "D0 65 36 FB 0D"),
    ("", 0, ""),
];

#[test]
fn known_vectors() {
    for &(text, fill_bits, expected) in VECTORS {
        let septets = text.as_bytes();
        let packed = pack_septets(septets, fill_bits);
        assert_eq!(
            hex(&packed),
            expected,
            "{text:?} with {fill_bits} fill bits"
        );
        assert_eq!(
            unpack_septets(&packed, fill_bits, septets.len()).unwrap(),
            septets,
            "{text:?}"
        );
        assert_eq!(
            unpack_all_septets(&packed, fill_bits),
            septets,
            "{text:?}: count from length"
        );
    }
}

/// Packs by writing out the bit string, least significant bit first: a
/// second, independent way of computing what `pack_septets` computes.
fn pack_by_bits(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let mut bits: Vec<u8> = vec![0; fill_bits];
    for septet in septets {
        bits.extend((0..7).map(|bit| (septet >> bit) & 1));
    }
    if (8 - bits.len() % 8) % 8 == 7 {
        bits.extend((0..7).map(|bit| (0x0D >> bit) & 1));
    }
    bits.chunks(8)
        .map(|octet| octet.iter().enumerate().map(|(i, bit)| bit << i).sum())
        .collect()
}

#[test]
fn packing_agrees_with_a_bit_string_model() {
    let septets: Vec<u8> = (0..=0x7F).chain((0..0x7F).rev()).collect();
    for length in 0..septets.len() {
        for fill_bits in 0..7 {
            let input = &septets[..length];
            assert_eq!(
                pack_septets(input, fill_bits),
                pack_by_bits(input, fill_bits),
                "{length} septets, {fill_bits} fill"
            );
            assert_eq!(
                unpack_septets(&pack_septets(input, fill_bits), fill_bits, length).unwrap(),
                input
            );
        }
    }
}

#[test]
fn packed_concatenated_segment_layout() {
    let options = Options {
        segments_max: 4,
        septet_layout: SeptetLayout::Packed,
    };
    let text = "hello".repeat(40); // 200 septets: 153 + 47
    let encoded = encode(&text, 0x42, &options).unwrap();
    assert_eq!(encoded.segments.len(), 2);

    let first = &encoded.segments[0];
    assert_eq!(first.units, 153);
    // 6 octets of UDH + 1 fill bit + 153 septets = 160 septets = 140 octets:
    // a full short message.
    assert_eq!(first.payload.len(), 140 - 6);
    assert_eq!(first.short_message().len(), 140);
    assert_eq!(
        &first.short_message()[..6],
        &[0x05, 0x00, 0x03, 0x42, 0x02, 0x01]
    );
    // The fill bit is the lowest bit of the first payload octet and is 0;
    // the first septet 'h' (0x68) sits in the 7 bits above it.
    assert_eq!(first.payload[0], 0x68 << 1);
    // Fill bit and "hello" take bits 0..36, so the first four octets hold
    // nothing else.
    assert_eq!(&first.payload[..4], &pack_by_bits(b"hello", 1)[..4]);

    let second = &encoded.segments[1];
    assert_eq!(second.units, 47);
    assert_eq!(second.payload.len(), (1 + 47 * 7usize).div_ceil(8));

    assert_eq!(decode(&encoded).unwrap(), text);
    let mut joined = String::new();
    for segment in &encoded.segments {
        joined.push_str(
            &decode_user_data(
                Coding::Gsm7,
                SeptetLayout::Packed,
                &segment.short_message(),
                true,
            )
            .unwrap()
            .text,
        );
    }
    assert_eq!(joined, text);
}

#[test]
fn packed_single_message_of_160_septets_is_140_octets() {
    let options = Options {
        segments_max: 1,
        septet_layout: SeptetLayout::Packed,
    };
    let encoded = encode(&"@".repeat(160), 0, &options).unwrap();
    assert_eq!(encoded.segments[0].payload, vec![0u8; 140]);
    assert_eq!(decode(&encoded).unwrap(), "@".repeat(160));
}

#[test]
fn carriage_return_padding_is_dropped_but_a_trailing_at_sign_is_kept() {
    // "1234567" + CR padding: the decoder without a septet count must not
    // return an eighth character.
    let packed = pack_septets(b"1234567", 0);
    let decoded = decode_user_data(Coding::Gsm7, SeptetLayout::Packed, &packed, false).unwrap();
    assert_eq!(decoded.text, "1234567");
    // Eight septets ending in '@' (0x00) fill 7 octets exactly; the '@' is
    // real and stays.
    let packed = pack_septets(b"1234567\0", 0);
    let decoded = decode_user_data(Coding::Gsm7, SeptetLayout::Packed, &packed, false).unwrap();
    assert_eq!(decoded.text, "1234567@");
}
