//! SMS text encoding for GSM networks: from a Rust string to the octets of
//! one or more short messages, and back.
//!
//! # Design
//!
//! No I/O, no async, no dependencies. This crate is the format layer under
//! an SMPP client; it knows nothing about SMPP PDUs, sessions, throttling or
//! delivery receipts, only about what goes in `short_message` and which
//! `data_coding` and UDH go with it.
//!
//! A text is sent in one of two codings, chosen per message ([`Coding`]):
//!
//! - **GSM-7** (TS 23.038 default alphabet plus the basic extension table,
//!   `alphabet`) when every character is in it: 160 septets in a single
//!   message. Extension characters (`{ } [ ] ~ \ | ^ €` and form feed) take
//!   two septets, the escape and the code.
//! - **UCS-2** otherwise: 70 UTF-16 units. Handsets and SMSCs treat it as
//!   UTF-16 in practice, so characters outside the BMP (emoji) go as
//!   surrogate pairs, two units each.
//!
//! A longer text is cut into concatenated segments, each with a 6-octet user
//! data header (`05 00 03 ref total seq`), leaving 153 septets or 67 units
//! per segment. A cut never falls inside an escape pair or a surrogate pair:
//! a character that does not fit whole moves to the next segment, so a
//! segment may carry one unit less than the maximum.
//!
//! The septets of a GSM-7 message are delivered either one per octet (the
//! usual SMPP convention; the SMSC packs them) or packed eight into seven
//! octets ([`SeptetLayout`], `pack`), in which case the text after a UDH
//! starts on a septet boundary after one fill bit.
//!
//! Counting and cutting ([`count`], [`truncate_to_segments`]) run the same
//! segmenter as [`encode`], so "fits in one segment" means the same thing
//! everywhere. [`normalize_e164`] validates destination numbers.
//!
//! # Example
//!
//! ```
//! let options = sms::Options::default();
//! let encoded = sms::encode("Grüße aus Zürich €", 0x17, &options)?;
//! assert_eq!(encoded.coding, sms::Coding::Gsm7);
//! assert_eq!(encoded.data_coding(), 0x00);
//! assert_eq!(encoded.segments.len(), 1);
//! assert_eq!(sms::decode(&encoded)?, "Grüße aus Zürich €");
//!
//! let notice = sms::truncate_to_segments(&"Новое письмо: ".repeat(10), 1);
//! assert_eq!(sms::count(&notice).segments, 1);
//! assert!(notice.ends_with('…'));
//!
//! let number = sms::normalize_e164("079 123 45 67", Some("41"))?;
//! assert_eq!(number.to_string(), "+41791234567");
//! # Ok::<(), sms::Error>(())
//! ```
//!
//! # What it does not do
//!
//! - National language shift tables (Turkish, Spanish, Portuguese): Turkish
//!   text is sent as UCS-2 except where it happens to fit the default
//!   alphabet.
//! - Grapheme clusters: a cut falls between code points, so a flag or a
//!   ZWJ emoji sequence can be split across segments (each half still
//!   decodes; the handset reassembles the message before showing it).
//! - Lossy "GSM-ification" (ç to Ç, curly quotes to straight): a text is
//!   sent as written or in UCS-2, never altered.
//! - 16-bit concatenation references (IEI 0x08) on the sending side; the
//!   decoder reads them.

mod alphabet;
mod decode;
mod error;
mod pack;
mod phone;
mod segment;

pub use alphabet::{DEFAULT as GSM7_DEFAULT, ESCAPE as GSM7_ESCAPE, EXTENSION as GSM7_EXTENSION};
pub use decode::{Concatenation, Decoded, decode, decode_user_data};
pub use error::Error;
pub use pack::{pack as pack_septets, unpack as unpack_septets, unpack_all as unpack_all_septets};
pub use phone::{PhoneNumber, normalize_e164};
pub use segment::{Count, count, encode, truncate_to_segments};

/// Septets in a single (unconcatenated) GSM-7 message.
pub const GSM7_SINGLE_SEPTETS_MAX: usize = 160;
/// Septets of text in one concatenated GSM-7 segment: 160 minus the 7
/// septets the UDH and its fill bit take.
pub const GSM7_SEGMENT_SEPTETS_MAX: usize = 153;
/// UTF-16 units in a single UCS-2 message (140 octets).
pub const UCS2_SINGLE_UNITS_MAX: usize = 70;
/// UTF-16 units in one concatenated UCS-2 segment: 140 octets minus the
/// 6-octet UDH is 134 octets.
pub const UCS2_SEGMENT_UNITS_MAX: usize = 67;
/// Octets of the concatenation UDH this crate writes (8-bit reference).
pub const UDH_OCTETS: usize = 6;

/// The coding of a whole message; every segment uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// GSM 03.38 default alphabet with the basic extension table.
    Gsm7,
    /// UCS-2, in practice UTF-16BE (surrogate pairs for non-BMP characters).
    Ucs2,
}

impl Coding {
    /// The SMPP `data_coding` byte: 0x00 (SMSC default alphabet, which the
    /// SMPP client configures as GSM-7) or 0x08 (UCS-2).
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }

    /// Units (septets or UTF-16 units) in a single unconcatenated message.
    pub fn single_units_max(self) -> usize {
        match self {
            Coding::Gsm7 => GSM7_SINGLE_SEPTETS_MAX,
            Coding::Ucs2 => UCS2_SINGLE_UNITS_MAX,
        }
    }

    /// Units of text in one concatenated segment.
    pub fn segment_units_max(self) -> usize {
        match self {
            Coding::Gsm7 => GSM7_SEGMENT_SEPTETS_MAX,
            Coding::Ucs2 => UCS2_SEGMENT_UNITS_MAX,
        }
    }
}

/// How GSM-7 septets are laid out in the payload. Ignored for UCS-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SeptetLayout {
    /// One septet per octet, high bit clear: what most SMSCs expect over
    /// SMPP with data_coding 0, packing them themselves.
    #[default]
    Unpacked,
    /// Eight septets in seven octets, as on the air interface (SMPP
    /// configurations with `seven_bit = "packed"`).
    Packed,
}

/// Encoding choices an operator may configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Most segments one text may become. Every segment is billed, and a
    /// notification that needs ten is better cut (see
    /// [`truncate_to_segments`]) than sent; [`encode`] refuses it with
    /// [`Error::TooManySegments`]. At most 255, the UDH's limit.
    pub segments_max: u8,
    /// Packed or one septet per octet, for GSM-7.
    pub septet_layout: SeptetLayout,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            // Four segments: 612 GSM-7 characters or 268 UCS-2 units, more
            // than any notification should need.
            segments_max: 4,
            septet_layout: SeptetLayout::Unpacked,
        }
    }
}

/// A text ready to hand to an SMPP client: one [`Segment`] per
/// `submit_sm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The coding of every segment.
    pub coding: Coding,
    /// The septet layout of GSM-7 payloads (meaningless for UCS-2).
    pub septet_layout: SeptetLayout,
    /// In order; more than one means each carries a concatenation UDH.
    pub segments: Vec<Segment>,
}

impl Encoded {
    /// The SMPP `data_coding` byte for every segment.
    pub fn data_coding(&self) -> u8 {
        self.coding.data_coding()
    }
}

/// One short message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The concatenation header `05 00 03 ref total seq` (seq from 1), or
    /// `None` for a single message. When present, the SMPP `esm_class` must
    /// have the UDHI bit (0x40) set.
    pub udh: Option<[u8; UDH_OCTETS]>,
    /// The text: septets one per octet, packed septets (starting with the
    /// fill bit when `udh` is present), or UTF-16BE octets.
    pub payload: Vec<u8>,
    /// Septets (GSM-7) or UTF-16 units (UCS-2) of text in `payload`,
    /// escapes and surrogates counted; the UDH is not included.
    pub units: usize,
}

impl Segment {
    /// The SMPP `short_message`: the UDH, if any, then the payload.
    pub fn short_message(&self) -> Vec<u8> {
        let mut octets = Vec::with_capacity(UDH_OCTETS + self.payload.len());
        if let Some(udh) = &self.udh {
            octets.extend_from_slice(udh);
        }
        octets.extend_from_slice(&self.payload);
        octets
    }
}
