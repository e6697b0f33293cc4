//! Choosing the coding, cutting a text into segments, counting and
//! truncating. All three go through [`Tally`], so they cannot disagree on
//! where a segment ends.

use crate::alphabet::{self, ESCAPE, Septets};
use crate::pack;
use crate::{Coding, Encoded, Error, Options, Segment, SeptetLayout, UDH_OCTETS};

/// How much of the segment budget a text (so far) uses. A character is
/// pushed with its cost in units (1 or 2) and never split: if it does not fit
/// in the current concatenated segment, it opens the next one.
#[derive(Debug, Clone, Copy)]
struct Tally {
    coding: Coding,
    /// Units of the whole text.
    units: usize,
    /// Segments if the text is sent concatenated.
    concatenated_segments: usize,
    /// Units in the last of those segments.
    last_segment_units: usize,
}

impl Tally {
    fn new(coding: Coding) -> Self {
        Tally {
            coding,
            units: 0,
            concatenated_segments: 0,
            last_segment_units: 0,
        }
    }

    /// Adds a character of `cost` units; true if it starts a new
    /// concatenated segment.
    fn push(&mut self, cost: usize) -> bool {
        self.units += cost;
        let starts_segment = self.concatenated_segments == 0
            || self.last_segment_units + cost > self.coding.segment_units_max();
        if starts_segment {
            self.concatenated_segments += 1;
            self.last_segment_units = cost;
        } else {
            self.last_segment_units += cost;
        }
        starts_segment
    }

    fn segments(&self) -> usize {
        if self.units == 0 {
            0
        } else if self.units <= self.coding.single_units_max() {
            1
        } else {
            self.concatenated_segments
        }
    }
}

/// Size of a text as it would be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The coding [`encode`] would choose.
    pub coding: Coding,
    /// Segments it would take; 0 for the empty text.
    pub segments: usize,
    /// Septets or UTF-16 units of the whole text.
    pub units: usize,
}

/// The coding for `text`: GSM-7 if every character is in the GSM 03.38
/// tables, else UCS-2.
pub fn coding_of(text: &str) -> Coding {
    if text.chars().all(|c| alphabet::septets_of(c).is_some()) {
        Coding::Gsm7
    } else {
        Coding::Ucs2
    }
}

fn cost(coding: Coding, c: char) -> usize {
    match coding {
        Coding::Gsm7 => alphabet::septets_of(c).map_or(1, Septets::len),
        Coding::Ucs2 => c.len_utf16(),
    }
}

fn tally(text: &str, coding: Coding) -> Tally {
    let mut tally = Tally::new(coding);
    for c in text.chars() {
        tally.push(cost(coding, c));
    }
    tally
}

/// The coding, segments and units `text` would take, without encoding it.
/// Ignores the segment cap: a caller can compare `segments` with it.
pub fn count(text: &str) -> Count {
    let coding = coding_of(text);
    let tally = tally(text, coding);
    Count {
        coding,
        segments: tally.segments(),
        units: tally.units,
    }
}

/// Encodes `text` into short messages.
///
/// `reference` is the concatenation reference of the UDH: the handset
/// reassembles segments with the same sender and reference, so the caller
/// must vary it between messages to one recipient (a wrapping counter is
/// the usual choice). It is unused for a single-segment message.
///
/// # Errors
///
/// [`Error::EmptyText`] for `""`; [`Error::TooManySegments`] when the text
/// needs more than `options.segments_max` segments.
pub fn encode(text: &str, reference: u8, options: &Options) -> Result<Encoded, Error> {
    if text.is_empty() {
        return Err(Error::EmptyText);
    }
    let coding = coding_of(text);
    let whole = tally(text, coding);
    let needed = whole.segments();
    if needed > usize::from(options.segments_max) {
        return Err(Error::TooManySegments {
            needed,
            max: options.segments_max,
        });
    }
    // Each chunk is (payload, units of text in it).
    let chunks: Vec<(Vec<u8>, usize)> = match coding {
        Coding::Gsm7 => split(text, coding, needed, gsm7_units)
            .into_iter()
            .map(|septets| {
                (
                    gsm7_payload(&septets, needed > 1, options.septet_layout),
                    septets.len(),
                )
            })
            .collect(),
        Coding::Ucs2 => split(text, coding, needed, ucs2_units)
            .into_iter()
            .map(|units| {
                (
                    units.iter().flat_map(|unit| unit.to_be_bytes()).collect(),
                    units.len(),
                )
            })
            .collect(),
    };
    // `needed` <= segments_max <= 255, so the UDH's one-octet total fits.
    let total = u8::try_from(chunks.len()).unwrap_or(u8::MAX);
    let segments = chunks
        .into_iter()
        .enumerate()
        .map(|(index, (payload, units))| {
            let udh = (total > 1).then(|| {
                let sequence = u8::try_from(index + 1).unwrap_or(u8::MAX);
                [0x05, 0x00, 0x03, reference, total, sequence]
            });
            Segment {
                udh,
                payload,
                units,
            }
        })
        .collect();
    Ok(Encoded {
        coding,
        septet_layout: options.septet_layout,
        segments,
    })
}

/// The septets of `c` (escape first for extension characters). Only called
/// for text whose coding is GSM-7, so every character has a form.
fn gsm7_units(c: char, out: &mut Vec<u8>) {
    match alphabet::septets_of(c) {
        Some(Septets::One(septet)) => out.push(septet),
        Some(Septets::Escaped(septet)) => out.extend_from_slice(&[ESCAPE, septet]),
        None => {
            debug_assert!(false, "{c:?} is not GSM-7 but the text was coded GSM-7");
        }
    }
}

fn ucs2_units(c: char, out: &mut Vec<u16>) {
    let mut buffer = [0u16; 2];
    out.extend_from_slice(c.encode_utf16(&mut buffer));
}

/// Cuts `text` into `segments` chunks of units along the same boundaries
/// [`Tally`] counts.
fn split<U>(
    text: &str,
    coding: Coding,
    segments: usize,
    units_of: fn(char, &mut Vec<U>),
) -> Vec<Vec<U>> {
    let mut chunks: Vec<Vec<U>> = Vec::with_capacity(segments);
    let mut tally = Tally::new(coding);
    let single = segments == 1;
    for c in text.chars() {
        let starts_segment = tally.push(cost(coding, c));
        if chunks.is_empty() || (starts_segment && !single) {
            chunks.push(Vec::new());
        }
        if let Some(chunk) = chunks.last_mut() {
            units_of(c, chunk);
        }
    }
    debug_assert_eq!(chunks.len(), segments);
    chunks
}

fn gsm7_payload(septets: &[u8], has_udh: bool, layout: SeptetLayout) -> Vec<u8> {
    match layout {
        SeptetLayout::Unpacked => septets.to_vec(),
        SeptetLayout::Packed => {
            let fill_bits = if has_udh {
                pack::fill_bits(UDH_OCTETS)
            } else {
                0
            };
            pack::pack(septets, fill_bits)
        }
    }
}

/// The longest start of `text` that fits in `segments_max` segments, cut
/// between characters, with an ellipsis when something was cut: "…" when
/// the kept text is UCS-2 anyway, "..." when it is GSM-7 (where "…" would
/// force UCS-2 and shrink the segment to 70 units). `text` itself when it
/// fits; "" when `segments_max` is 0.
pub fn truncate_to_segments(text: &str, segments_max: usize) -> String {
    if count(text).segments <= segments_max {
        return text.to_owned();
    }
    // One pass over the text, keeping the tally of the prefix in both
    // codings; the GSM-7 one is dropped at the first character outside the
    // alphabet. At each character boundary, check whether prefix + ellipsis
    // fits. Linear, whatever the length of the text.
    let mut gsm7 = Some(Tally::new(Coding::Gsm7));
    let mut ucs2 = Tally::new(Coding::Ucs2);
    let mut best: Option<(usize, &str)> = None;
    for (index, c) in text.char_indices() {
        let (prefix_segments, with_ellipsis) = match gsm7 {
            Some(prefix) => {
                let mut tally = prefix;
                for _ in 0..3 {
                    tally.push(1);
                }
                (prefix.segments(), (tally.segments(), "..."))
            }
            None => {
                let mut tally = ucs2;
                tally.push(1);
                (ucs2.segments(), (tally.segments(), "…"))
            }
        };
        if prefix_segments > segments_max {
            // Longer prefixes only take more.
            break;
        }
        if with_ellipsis.0 <= segments_max {
            best = Some((index, with_ellipsis.1));
        }
        if let Some(tally) = gsm7.as_mut() {
            match alphabet::septets_of(c) {
                Some(septets) => {
                    tally.push(septets.len());
                }
                None => gsm7 = None,
            }
        }
        ucs2.push(c.len_utf16());
    }
    match best {
        Some((end, ellipsis)) => format!("{}{ellipsis}", &text[..end]),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_keeps_a_two_unit_character_whole() {
        let mut tally = Tally::new(Coding::Ucs2);
        for _ in 0..66 {
            tally.push(1);
        }
        assert!(tally.push(2), "a pair at unit 67 opens segment 2");
        assert_eq!(tally.last_segment_units, 2);
    }

    #[test]
    fn empty_text_counts_zero_segments() {
        assert_eq!(
            count(""),
            Count {
                coding: Coding::Gsm7,
                segments: 0,
                units: 0
            }
        );
    }
}
