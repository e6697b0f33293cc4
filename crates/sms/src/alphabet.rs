//! The GSM 03.38 (3GPP TS 23.038 §6.2.1) default alphabet and its basic
//! extension table.
//!
//! A character is either one septet from [`DEFAULT`], or the escape septet
//! 0x1B followed by one septet from [`EXTENSION`]: two septets on the air.
//! Nothing else is GSM-7; a text with any other character goes as UCS-2.
//!
//! 0x09 is 'Ç' (capital C cedilla) as the ETSI table prints it; the Unicode
//! consortium's GSM0338.TXT maps it to 'ç' instead. We encode only 'Ç' to
//! 0x09 and send a text containing 'ç' as UCS-2: folding 'ç' into 'Ç' would
//! change what the recipient reads, and a message that arrives altered is
//! worse than one that costs a second segment.

/// The escape septet that introduces a character from [`EXTENSION`].
pub const ESCAPE: u8 = 0x1B;

/// The default alphabet, indexed by septet. 0x1B is the escape, not a
/// character; it holds a no-break space, as in the Unicode consortium's
/// GSM0338.TXT (a receiver without the extension table shows the escape as
/// a space). The encoder never emits 0x1B for a character (see
/// `septets_of`); the decoder reads it as the escape.
pub const DEFAULT: [char; 128] = [
    // 0x00
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
    // 0x10
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{A0}', 'Æ', 'æ', 'ß', 'É',
    // 0x20
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
    // 0x30
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
    // 0x40
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
    // 0x50
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
    // 0x60
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    // 0x70
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The basic extension table: (septet after the escape, character).
/// 0x0A is a page break, mapped to form feed as TS 23.038 says.
pub const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// How a character is written in GSM-7, if it can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// One septet from the default alphabet.
    One(u8),
    /// The escape followed by this septet from the extension table.
    Escaped(u8),
}

impl Septets {
    /// Septets this character takes on the air.
    pub fn len(self) -> usize {
        match self {
            Septets::One(_) => 1,
            Septets::Escaped(_) => 2,
        }
    }
}

/// The GSM-7 form of `c`, or `None` if `c` is not in either table.
pub fn septets_of(c: char) -> Option<Septets> {
    if c == '\u{A0}' {
        // The placeholder at 0x1B in DEFAULT, not a character of the alphabet.
        return None;
    }
    // 128 + 10 comparisons per character at most; an SMS text is short and
    // a linear scan keeps the table the single source of truth.
    if let Some(index) = DEFAULT.iter().position(|&d| d == c) {
        return u8::try_from(index).ok().map(Septets::One);
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(septet, _)| Septets::Escaped(septet))
}

/// The character for a default-alphabet septet (0x00..=0x7F, not 0x1B).
pub fn default_char(septet: u8) -> Option<char> {
    if septet == ESCAPE {
        return None;
    }
    DEFAULT.get(usize::from(septet)).copied()
}

/// The character for an escaped septet. TS 23.038 says a receiver that
/// does not know an extension code shows the default-alphabet character of
/// the same code instead; we do the same, so decoding never fails on it.
pub fn extension_char(septet: u8) -> Option<char> {
    EXTENSION
        .iter()
        .find(|&&(code, _)| code == septet)
        .map(|&(_, c)| c)
        .or_else(|| default_char(septet))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_checks_against_the_standard() {
        let expected = [
            (0x00, '@'),
            (0x01, '£'),
            (0x02, '$'),
            (0x03, '¥'),
            (0x09, 'Ç'),
            (0x10, 'Δ'),
            (0x11, '_'),
            (0x1F, 'É'),
            (0x24, '¤'),
            (0x40, '¡'),
            (0x5B, 'Ä'),
            (0x5F, '§'),
            (0x60, '¿'),
            (0x7F, 'à'),
        ];
        for (septet, c) in expected {
            assert_eq!(default_char(septet), Some(c), "septet {septet:#04x}");
            assert_eq!(septets_of(c), Some(Septets::One(septet)));
        }
    }

    #[test]
    fn every_character_is_unique() {
        let mut all: Vec<char> = DEFAULT.to_vec();
        all.extend(EXTENSION.iter().map(|&(_, c)| c));
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }

    #[test]
    fn escape_is_not_a_character() {
        assert_eq!(default_char(ESCAPE), None);
        assert_eq!(septets_of('\u{A0}'), None);
        assert_eq!(septets_of('\u{1B}'), None);
    }

    #[test]
    fn lowercase_c_cedilla_and_lowercase_greek_are_not_gsm() {
        for c in ['ç', 'α', 'ω', '…', '`'] {
            assert_eq!(septets_of(c), None, "{c}");
        }
    }
}
