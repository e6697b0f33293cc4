//! Delivery receipts: the SMSC reports the fate of a submitted message in
//! a deliver_sm whose short_message is the de-facto standard text of SMPP
//! 3.4 Appendix B, `id:IIII sub:001 dlvrd:001 submit date:YYMMDDhhmm done
//! date:YYMMDDhhmm stat:DELIVRD err:000 text:...`, and often also in the
//! `receipted_message_id` and `message_state` TLVs. The TLVs win where both
//! are present (the text's id is hex on some SMSCs and decimal on others;
//! the TLV is the one the spec ties to submit_sm_resp).

use rusmpp::pdus::DeliverSm;
use rusmpp::tlvs::TlvValue;

/// esm_class message type bits (5-2) and their value for an SMSC delivery
/// receipt.
const ESM_CLASS_TYPE_MASK: u8 = 0x3C;
const ESM_CLASS_DELIVERY_RECEIPT: u8 = 0x04;

/// What a deliver_sm from the SMSC carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// A delivery receipt we can match to a submitted segment.
    Receipt(Receipt),
    /// Marked as a receipt, but neither the TLV nor the text has an id.
    ReceiptWithoutId {
        /// Length of short_message.
        octets: usize,
    },
    /// A message from a handset (not handled yet).
    MobileOriginated {
        /// Length of short_message.
        octets: usize,
    },
}

/// Tells a receipt from a handset's message (esm_class type 0x04, or a
/// receipted_message_id TLV) and parses it.
pub fn read_deliver_sm(deliver_sm: &DeliverSm) -> Delivered {
    let mut receipted_message_id = None;
    let mut message_state = None;
    for tlv in deliver_sm.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_message_id = Some(id.as_str()),
            Some(TlvValue::MessageState(state)) => message_state = Some(u8::from(*state)),
            _ => {}
        }
    }
    let esm_class = u8::from(deliver_sm.esm_class);
    let text = deliver_sm.short_message().as_ref();
    let is_receipt = esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT
        || receipted_message_id.is_some();
    if !is_receipt {
        return Delivered::MobileOriginated { octets: text.len() };
    }
    match parse_receipt(text, receipted_message_id, message_state) {
        Some(receipt) => Delivered::Receipt(receipt),
        None => Delivered::ReceiptWithoutId { octets: text.len() },
    }
}

/// A parsed receipt, without the message text excerpt (never logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The `message_id` the SMSC returned in submit_sm_resp.
    pub message_id: String,
    /// Final state name as in the text form: DELIVRD, EXPIRED, DELETED,
    /// UNDELIV, ACCEPTD, UNKNOWN, REJECTD, ENROUTE.
    pub state: String,
    /// Whether the message reached the handset.
    pub delivered: bool,
    /// The `err:` field (network-specific error code), if any.
    pub error: Option<String>,
}

impl Receipt {
    /// "DELIVRD" or "UNDELIV err:001": the detail stored with the receipt.
    pub fn detail(&self) -> String {
        match &self.error {
            Some(error) => format!("{} err:{error}", self.state),
            None => self.state.clone(),
        }
    }
}

/// The text name of a `message_state` TLV value (SMPP 3.4 §5.2.28).
pub fn state_name(message_state: u8) -> &'static str {
    match message_state {
        1 => "ENROUTE",
        2 => "DELIVRD",
        3 => "EXPIRED",
        4 => "DELETED",
        5 => "UNDELIV",
        6 => "ACCEPTD",
        8 => "REJECTD",
        _ => "UNKNOWN",
    }
}

/// Parses a receipt from the short_message text and the TLVs (either may
/// be missing). `None` when no message id can be found: then it is not a
/// receipt we can match to anything.
pub fn parse_receipt(
    text: &[u8],
    receipted_message_id: Option<&str>,
    message_state: Option<u8>,
) -> Option<Receipt> {
    // Receipt text is ASCII; anything else is replaced, never trusted.
    let text = String::from_utf8_lossy(text);
    let message_id = receipted_message_id
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or_else(|| field(&text, "id").map(str::to_owned))?;
    let state = match message_state {
        Some(state) => state_name(state).to_owned(),
        None => field(&text, "stat")
            .map(|state| state.to_ascii_uppercase())
            .unwrap_or_else(|| "UNKNOWN".to_owned()),
    };
    // "DELIVERED" is what a few SMSCs write instead of the 7-letter form.
    let delivered = state == "DELIVRD" || state == "DELIVERED";
    let error = field(&text, "err").map(str::to_owned);
    Some(Receipt {
        message_id,
        state,
        delivered,
        error,
    })
}

/// The value of `key:` in a receipt text: the key at the start or after
/// whitespace, matched without regard to case, the value up to the next
/// whitespace. Only the part before `text:` is searched, so a message
/// excerpt cannot forge fields.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let head_end = find_key(text, "text").unwrap_or(text.len());
    let head = &text[..head_end];
    let start = find_key(head, key)? + key.len() + 1;
    let value = head[start..].split_whitespace().next()?;
    // `find_key` found "key:" immediately at `start - 1`; an empty value
    // (followed by a space) gives the next word, which is not ours.
    if head[start..].starts_with(char::is_whitespace) {
        return None;
    }
    Some(value)
}

/// Byte offset of `key:` at the start of `text` or after whitespace.
fn find_key(text: &str, key: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let pattern_len = key.len() + 1;
    (0..bytes.len().saturating_sub(pattern_len - 1)).find(|&at| {
        (at == 0 || bytes[at - 1].is_ascii_whitespace())
            && bytes[at..at + key.len()].eq_ignore_ascii_case(key.as_bytes())
            && bytes[at + key.len()] == b':'
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELIVERED: &[u8] = b"id:0123456789 sub:001 dlvrd:001 submit date:2611281830 \
        done date:2611281831 stat:DELIVRD err:000 text:Hello stat:UNDELIV";

    #[test]
    fn text_receipt() {
        let receipt = parse_receipt(DELIVERED, None, None).expect("a receipt");
        assert_eq!(
            receipt,
            Receipt {
                message_id: "0123456789".to_owned(),
                state: "DELIVRD".to_owned(),
                delivered: true,
                error: Some("000".to_owned()),
            }
        );
        assert_eq!(receipt.detail(), "DELIVRD err:000");
    }

    #[test]
    fn undelivered_lowercase_keys() {
        let receipt =
            parse_receipt(b"ID:abc SUB:001 Stat:undeliv Err:001", None, None).expect("a receipt");
        assert_eq!(receipt.message_id, "abc");
        assert_eq!(receipt.state, "UNDELIV");
        assert!(!receipt.delivered);
    }

    #[test]
    fn tlvs_win_over_text() {
        let receipt = parse_receipt(DELIVERED, Some("5f1a"), Some(5)).expect("a receipt");
        assert_eq!(receipt.message_id, "5f1a");
        assert_eq!(receipt.state, "UNDELIV");
        assert!(!receipt.delivered);
        let receipt = parse_receipt(b"", Some("77"), Some(2)).expect("TLVs alone");
        assert!(receipt.delivered);
        assert_eq!(receipt.error, None);
    }

    #[test]
    fn not_a_receipt() {
        assert_eq!(parse_receipt(b"Hello, how are you?", None, None), None);
        assert_eq!(parse_receipt(b"", None, Some(2)), None);
        // "id:" inside a word or after "text:" does not count.
        assert_eq!(parse_receipt(b"paid:12", None, None), None);
        assert_eq!(parse_receipt(b"sub:001 text:id:666", None, None), None);
    }

    #[test]
    fn empty_value_is_not_the_next_word() {
        let receipt = parse_receipt(b"id:9 stat: err:1", None, None).expect("a receipt");
        assert_eq!(receipt.state, "UNKNOWN");
    }

    #[test]
    fn deliver_sm_kinds() {
        use rusmpp::types::OctetString;
        use rusmpp::values::{EsmClass, MessageState};

        let receipt = DeliverSm::builder()
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_vec(DELIVERED.to_vec()).expect("fits"))
            .build();
        assert!(
            matches!(read_deliver_sm(&receipt), Delivered::Receipt(r) if r.message_id == "0123456789")
        );

        let by_tlv = DeliverSm::builder()
            .push_tlv(
                rusmpp::tlvs::MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                    "m7".parse().expect("valid"),
                ),
            )
            .push_tlv(rusmpp::tlvs::MessageDeliveryRequestTlvValue::MessageState(
                MessageState::Undeliverable,
            ))
            .build();
        let Delivered::Receipt(receipt) = read_deliver_sm(&by_tlv) else {
            panic!("a receipt by its TLVs");
        };
        assert_eq!(
            (receipt.message_id.as_str(), receipt.delivered),
            ("m7", false)
        );

        let from_handset = DeliverSm::builder()
            .short_message(OctetString::from_vec(b"id:1 stat:DELIVRD".to_vec()).expect("fits"))
            .build();
        assert_eq!(
            read_deliver_sm(&from_handset),
            Delivered::MobileOriginated { octets: 17 }
        );

        let empty_receipt = DeliverSm::builder().esm_class(EsmClass::from(0x04)).build();
        assert_eq!(
            read_deliver_sm(&empty_receipt),
            Delivered::ReceiptWithoutId { octets: 0 }
        );
    }

    #[test]
    fn message_state_names() {
        assert_eq!(state_name(2), "DELIVRD");
        assert_eq!(state_name(5), "UNDELIV");
        assert_eq!(state_name(99), "UNKNOWN");
    }
}
