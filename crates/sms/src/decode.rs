//! From short-message octets back to text: for tests of the encoder and for
//! parsing what an SMSC delivers (`deliver_sm`).

use crate::alphabet::{self, ESCAPE};
use crate::pack;
use crate::{Coding, Encoded, Error, SeptetLayout};

/// The concatenation information element of a received UDH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concatenation {
    /// The message reference (8-bit from IEI 0x00, 16-bit from IEI 0x08).
    pub reference: u16,
    /// Segments in the whole message.
    pub total: u8,
    /// This segment's place, from 1.
    pub sequence: u8,
}

/// One received segment, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text of this segment.
    pub text: String,
    /// Where it belongs, if the UDH said it is part of a longer message.
    pub concatenation: Option<Concatenation>,
}

/// The text of a whole [`Encoded`] message, segments joined in order.
///
/// # Errors
///
/// [`Error::InvalidUserData`] if a payload is not valid for its coding
/// (which [`crate::encode`] never produces).
pub fn decode(encoded: &Encoded) -> Result<String, Error> {
    let mut text = String::new();
    for segment in &encoded.segments {
        let part = match encoded.coding {
            Coding::Ucs2 => utf16_text(&segment.payload)?,
            Coding::Gsm7 => {
                let septets = match encoded.septet_layout {
                    SeptetLayout::Unpacked => segment.payload.clone(),
                    SeptetLayout::Packed => {
                        let header_octets = segment.udh.map_or(0, |udh| udh.len());
                        // The encoder knows the septet count, so use it
                        // rather than guessing from the octet length.
                        pack::unpack(
                            &segment.payload,
                            pack::fill_bits(header_octets),
                            segment.units,
                        )
                        .ok_or(Error::InvalidUserData(
                            "packed payload shorter than its septet count",
                        ))?
                    }
                };
                septets_text(&septets)?
            }
        };
        text.push_str(&part);
    }
    Ok(text)
}

/// Decodes the user data of one received short message: `user_data` is the
/// SMPP `short_message`, starting with the UDH when `has_udh` (the UDHI bit
/// of `esm_class`) is set.
///
/// For packed GSM-7 the septet count is taken from the octet length, and a
/// trailing carriage return in the last 7 spare bits is read as padding
/// (TS 23.038 §6.1.2.3.1).
///
/// # Errors
///
/// [`Error::InvalidUserData`] when the UDH length runs past the data, an
/// unpacked septet has its high bit set, an escape ends the text, the UCS-2
/// octet count is odd, or the UTF-16 has an unpaired surrogate.
pub fn decode_user_data(
    coding: Coding,
    layout: SeptetLayout,
    user_data: &[u8],
    has_udh: bool,
) -> Result<Decoded, Error> {
    let (header_octets, concatenation) = if has_udh {
        parse_udh(user_data)?
    } else {
        (0, None)
    };
    let payload = &user_data[header_octets..];
    let text = match coding {
        Coding::Ucs2 => utf16_text(payload)?,
        Coding::Gsm7 => match layout {
            SeptetLayout::Unpacked => septets_text(payload)?,
            SeptetLayout::Packed => {
                septets_text(&pack::unpack_all(payload, pack::fill_bits(header_octets)))?
            }
        },
    };
    Ok(Decoded {
        text,
        concatenation,
    })
}

/// Returns the UDH's length in octets (its length octet included) and the
/// concatenation element, if any. Other elements are skipped.
fn parse_udh(user_data: &[u8]) -> Result<(usize, Option<Concatenation>), Error> {
    let Some(&length) = user_data.first() else {
        return Err(Error::InvalidUserData(
            "UDH indicated but user data is empty",
        ));
    };
    let header_octets = 1 + usize::from(length);
    let Some(elements) = user_data.get(1..header_octets) else {
        return Err(Error::InvalidUserData("UDH length runs past the user data"));
    };
    let mut concatenation = None;
    let mut rest = elements;
    // Each pass consumes at least two octets, so this ends.
    while let [identifier, element_length, tail @ ..] = rest {
        let element_length = usize::from(*element_length);
        let Some(data) = tail.get(..element_length) else {
            return Err(Error::InvalidUserData("UDH element runs past the header"));
        };
        concatenation = match (identifier, data) {
            (0x00, &[reference, total, sequence]) => Some(Concatenation {
                reference: u16::from(reference),
                total,
                sequence,
            }),
            (0x08, &[high, low, total, sequence]) => Some(Concatenation {
                reference: u16::from_be_bytes([high, low]),
                total,
                sequence,
            }),
            _ => concatenation,
        };
        rest = &tail[element_length..];
    }
    if !rest.is_empty() {
        return Err(Error::InvalidUserData("UDH ends inside an element"));
    }
    Ok((header_octets, concatenation))
}

/// Text from septets, one per octet.
fn septets_text(septets: &[u8]) -> Result<String, Error> {
    let mut text = String::with_capacity(septets.len());
    let mut iter = septets.iter();
    while let Some(&septet) = iter.next() {
        if septet > 0x7F {
            return Err(Error::InvalidUserData("GSM-7 septet with the high bit set"));
        }
        let c = if septet == ESCAPE {
            let Some(&code) = iter.next() else {
                return Err(Error::InvalidUserData(
                    "GSM-7 escape at the end of the text",
                ));
            };
            if code > 0x7F {
                return Err(Error::InvalidUserData("GSM-7 septet with the high bit set"));
            }
            // ESC ESC is reserved for a future table; TS 23.038 says to
            // show a space.
            alphabet::extension_char(code).unwrap_or(' ')
        } else {
            // Cannot fail: septet <= 0x7F and is not the escape.
            alphabet::default_char(septet).unwrap_or(' ')
        };
        text.push(c);
    }
    Ok(text)
}

/// Text from UTF-16BE octets.
fn utf16_text(octets: &[u8]) -> Result<String, Error> {
    if !octets.len().is_multiple_of(2) {
        return Err(Error::InvalidUserData(
            "UCS-2 data with an odd number of octets",
        ));
    }
    let units = octets
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map_err(|_| Error::InvalidUserData("UTF-16 with an unpaired surrogate"))
}
