//! From an encoded message to its submit_sm PDUs: addresses, esm_class,
//! data_coding, registered_delivery. Pure, so the fields can be checked
//! without a connection.

use std::str::FromStr;

use rusmpp::pdus::SubmitSm;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, Npi, RegisteredDelivery, Ton};

use crate::config::{AddressKind, source_address};
use crate::outbox::OutgoingSms;

/// The esm_class bit that says short_message starts with a UDH.
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// The sender of every submit_sm, worked out once per session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    address: String,
    kind: AddressKind,
}

impl Source {
    /// From the `[sms] source` setting (see [`source_address`]).
    pub fn from_config(source: &str) -> Source {
        let (address, kind) = source_address(source);
        Source { address, kind }
    }
}

/// One submit_sm per segment: destination TON 1 NPI 1 with the digits of
/// the E.164 number, esm_class 0x40 when the segment carries a UDH,
/// data_coding from the coding, registered_delivery 1 when the message or
/// the configuration asks for receipts.
///
/// # Errors
///
/// A text for the outbox's failure reason when an address does not fit
/// SMPP (source longer than 20 characters or not ASCII) or a segment is
/// longer than 255 octets (the sms crate never makes one).
pub fn build_submits(
    sms: &OutgoingSms,
    encoded: &sms::Encoded,
    source: &Source,
    request_receipts: bool,
) -> Result<Vec<SubmitSm>, String> {
    let source_addr = COctetString::<1, 21>::from_str(&source.address).map_err(|error| {
        format!(
            "[sms] source {:?} is not a valid SMPP address: {error}",
            source.address
        )
    })?;
    let destination_addr = COctetString::<1, 21>::from_str(sms.to.digits()).map_err(|error| {
        format!(
            "destination {} is not a valid SMPP address: {error}",
            sms.to
        )
    })?;
    let registered_delivery = u8::from(sms.request_receipt || request_receipts);
    let mut submits = Vec::with_capacity(encoded.segments.len());
    for segment in &encoded.segments {
        let esm_class = if segment.udh.is_some() {
            ESM_CLASS_UDHI
        } else {
            0
        };
        let short_message = OctetString::<0, 255>::from_vec(segment.short_message())
            .map_err(|error| format!("segment does not fit short_message: {error}"))?;
        submits.push(
            SubmitSm::builder()
                .source_addr_ton(Ton::from(source.kind.ton))
                .source_addr_npi(Npi::from(source.kind.npi))
                .source_addr(source_addr.clone())
                .dest_addr_ton(Ton::International)
                .dest_addr_npi(Npi::Isdn)
                .destination_addr(destination_addr.clone())
                .esm_class(EsmClass::from(esm_class))
                .registered_delivery(RegisteredDelivery::from(registered_delivery))
                .data_coding(DataCoding::from(encoded.data_coding()))
                .short_message(short_message)
                .build(),
        );
    }
    Ok(submits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(text: &str, request_receipt: bool) -> OutgoingSms {
        OutgoingSms {
            id: 0x1234,
            to: "+41791234567".parse().expect("valid number"),
            text: text.to_owned(),
            attempts: 0,
            request_receipt,
        }
    }

    fn build(text: &str, source: &str, receipts: bool) -> Result<Vec<SubmitSm>, String> {
        let sms = sms(text, false);
        let encoded =
            sms::encode(&sms.text, sms.reference(), &sms::Options::default()).expect("encodable");
        build_submits(&sms, &encoded, &Source::from_config(source), receipts)
    }

    #[test]
    fn single_gsm_message() {
        let submits = build("Hello", "Postern", false).expect("valid");
        assert_eq!(submits.len(), 1);
        let submit = &submits[0];
        assert_eq!(u8::from(submit.esm_class), 0);
        assert_eq!(u8::from(submit.data_coding), 0x00);
        assert_eq!(u8::from(submit.registered_delivery), 0);
        assert_eq!(submit.source_addr.as_str(), "Postern");
        assert_eq!(u8::from(submit.source_addr_ton), 5);
        assert_eq!(u8::from(submit.source_addr_npi), 0);
        assert_eq!(submit.destination_addr.as_str(), "41791234567");
        assert_eq!(u8::from(submit.dest_addr_ton), 1);
        assert_eq!(u8::from(submit.dest_addr_npi), 1);
        assert_eq!(submit.short_message().as_ref(), b"Hello");
    }

    #[test]
    fn concatenated_ucs2_with_receipts() {
        let submits = build(&"ж".repeat(100), "+41440000000", true).expect("valid");
        assert_eq!(submits.len(), 2);
        for (index, submit) in submits.iter().enumerate() {
            assert_eq!(u8::from(submit.esm_class), ESM_CLASS_UDHI);
            assert_eq!(u8::from(submit.data_coding), 0x08);
            assert_eq!(u8::from(submit.registered_delivery), 1);
            assert_eq!(submit.source_addr.as_str(), "41440000000");
            assert_eq!(u8::from(submit.source_addr_ton), 1);
            let udh = &submit.short_message().as_ref()[..6];
            // 05 00 03, the reference (the id's low octet), total, sequence.
            assert_eq!(
                udh,
                [5, 0, 3, 0x34, 2, u8::try_from(index + 1).expect("small")]
            );
        }
    }

    #[test]
    fn overlong_source_is_a_clear_failure() {
        let error = build("Hi", "A sender name far too long for SMPP", false).expect_err("refused");
        assert!(error.starts_with("[sms] source"), "{error}");
    }
}
