//! Septet packing (TS 23.038 §6.1.2.1.1): septets laid end to end, least
//! significant bit first, eight septets in seven octets.
//!
//! When a user data header precedes the text, the text starts on the next
//! septet boundary after the header, and the bits in between are fill bits
//! (TS 23.040 §9.2.3.24). For the 6-octet concatenation header that is 48
//! bits of header, 1 fill bit, and the text from bit 49 = septet 7 on:
//! the header costs 7 septets, which is why a segment holds 153 = 160 - 7.

/// Fill bits needed after a header of `header_octets` so the text starts on
/// a septet boundary: 0 without a header, 1 for the 6-octet concatenation
/// header.
pub fn fill_bits(header_octets: usize) -> usize {
    let header_bits = header_octets * 8;
    (7 - header_bits % 7) % 7
}

/// Packs septets (each 0x00..=0x7F) after `fill_bits` zero bits.
///
/// When exactly 7 bits are left over in the last octet, they are set to
/// carriage return (TS 23.038 §6.1.2.3.1) so a receiver that counts septets
/// from the octet length does not read them as a trailing '@'.
///
/// # Panics
///
/// Never; bits above the seventh of a septet are ignored.
pub fn pack(septets: &[u8], fill_bits: usize) -> Vec<u8> {
    let bits_total = fill_bits + septets.len() * 7;
    let mut octets = vec![0u8; bits_total.div_ceil(8)];
    let mut bit = fill_bits;
    for &septet in septets {
        put_septet(&mut octets, bit, septet);
        bit += 7;
    }
    if octets.len() * 8 - bits_total == 7 {
        put_septet(&mut octets, bit, CARRIAGE_RETURN);
    }
    octets
}

/// Unpacks `septet_count` septets that start after `fill_bits` bits.
/// Returns `None` if the octets are too short for that many.
pub fn unpack(octets: &[u8], fill_bits: usize, septet_count: usize) -> Option<Vec<u8>> {
    if fill_bits + septet_count * 7 > octets.len() * 8 {
        return None;
    }
    let septets = (0..septet_count)
        .map(|index| get_septet(octets, fill_bits + index * 7))
        .collect();
    Some(septets)
}

/// Unpacks every septet that fits in `octets` after `fill_bits`, for when
/// the septet count is not known (SMPP carries octets, not septets). A last
/// septet that is the carriage-return padding of [`pack`] is dropped.
pub fn unpack_all(octets: &[u8], fill_bits: usize) -> Vec<u8> {
    let bits_available = (octets.len() * 8).saturating_sub(fill_bits);
    let count = bits_available / 7;
    let mut septets: Vec<u8> = (0..count)
        .map(|index| get_septet(octets, fill_bits + index * 7))
        .collect();
    // When the last septet ends exactly on the last octet's end and starts
    // at its bit 1, those 7 bits may be padding or a real character; the
    // standard makes padding CR, so a CR there is taken as padding. (A text
    // that really ends in CR at that spot is ambiguous on the wire; TS
    // 23.038 asks senders to add a second CR, and callers that know the
    // septet count should use [`unpack`].)
    if count > 0
        && fill_bits + count * 7 == octets.len() * 8
        && septets.last() == Some(&CARRIAGE_RETURN)
    {
        septets.pop();
    }
    septets
}

const CARRIAGE_RETURN: u8 = 0x0D;

fn put_septet(octets: &mut [u8], bit: usize, septet: u8) {
    let septet = septet & 0x7F;
    let index = bit / 8;
    let shift = bit % 8;
    octets[index] |= septet << shift;
    if shift > 1 {
        octets[index + 1] |= septet >> (8 - shift);
    }
}

fn get_septet(octets: &[u8], bit: usize) -> u8 {
    let index = bit / 8;
    let shift = bit % 8;
    let mut value = octets[index] >> shift;
    if shift > 1 {
        value |= octets[index + 1] << (8 - shift);
    }
    value & 0x7F
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_header_takes_seven_septets_with_one_fill_bit() {
        assert_eq!(fill_bits(0), 0);
        assert_eq!(fill_bits(6), 1);
        assert_eq!(
            (6 * 8 + fill_bits(6)) / 7,
            7,
            "header and fill bit take 7 septets"
        );
        assert_eq!(fill_bits(7), 0, "16-bit reference header: 56 bits, no fill");
    }

    #[test]
    fn unpack_rejects_short_input() {
        assert_eq!(unpack(&[0x41], 0, 2), None);
    }
}
