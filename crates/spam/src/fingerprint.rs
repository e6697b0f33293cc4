//! Body fingerprints: a 64-bit value per message body such that copies of
//! one spam are a few bits apart and unrelated texts about 32 apart.
//!
//! # What it is
//!
//! The text is normalised first ([`normalise`]): spammers vary the
//! recipient's name, the links, the numbers and the punctuation per copy,
//! and normalising makes the copies' text equal except for the names. The
//! normalised words are cut into overlapping 3-word shingles, and the
//! fingerprint is a *1-bit MinHash* of that set of shingles: for each of 64
//! fixed hash functions, the shingle with the smallest hash is chosen, and
//! bit `i` is the lowest bit of function `i`'s smallest hash. Two texts whose
//! shingle sets have Jaccard similarity `J` differ in each bit with
//! probability `(1 - J) / 2`, so the expected Hamming distance
//! ([`Fingerprint::distance`]) is `32 * (1 - J)`.
//!
//! # Why not SimHash
//!
//! SimHash was the first choice, and it is too sensitive for mail-sized
//! texts. Its expected distance is `64 * angle / pi`; one changed word in a
//! 100-word body changes 3 of 98 shingles, an angle of about 0.25, so about
//! 5 bits; 1-bit MinHash expects `32 * 6 / 101`, about 2. Measured on the
//! 100-word template of this module's tests, over the 190 pairs of 20
//! copies that differ in the recipient's name (and link and number): 1-bit
//! MinHash put all 190 within 3 bits (mean 1.0), SimHash 67 (mean 4.1).
//! With the name in the text twice: 87 and 43 (means 3.6 and 4.6). The run
//! detector's lookup is exact only up to distance 3 (four 16-bit bands; see
//! [`crate::runs`]), so with SimHash most copies of a personalised run would
//! have started clusters of their own. Unrelated texts are about 32 bits
//! apart under both.
//!
//! # Stability
//!
//! Fingerprints are stored (in blocklists as `fingerprint:<hex>`) and
//! compared across restarts and versions, so the hash is written here
//! (FNV-1a over the shingle's bytes, then the splitmix64 finaliser) with
//! fixed constants and no seed. std's `DefaultHasher` may change between
//! releases and must not be used. A test pins the fingerprint of a fixed
//! text; changing the normalisation or the hash is a format change.
//!
//! # Bounds
//!
//! Only the first [`TEXT_BYTES_MAX`] bytes of text are looked at, so the
//! work per message is bounded (64 hash mixes per shingle, about 10,000
//! shingles at most).

use std::fmt;

/// Bytes of body text looked at. Spam that matters fits easily; a larger
/// body costs no more than this.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;

/// Normalised words a text needs for a fingerprint. Shorter texts share too
/// many shingles by chance ("please see attached") to say anything.
pub const WORDS_MIN: usize = 8;

/// Words per shingle: long enough that unrelated texts rarely share one,
/// short enough that one changed word changes only three.
const SHINGLE_WORDS: usize = 3;

/// Bits of a fingerprint, one per MinHash function.
const BITS: usize = 64;

/// A body fingerprint. Compare with [`Fingerprint::distance`]; equal
/// fingerprints are likely but not certain to be the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of `text` (a body's text, as decoded for display).
    /// `None` when it has fewer than [`WORDS_MIN`] words after normalising.
    pub fn of_text(text: &str) -> Option<Fingerprint> {
        let normalised = normalise(text);
        let words: Vec<&str> = normalised.split(' ').filter(|w| !w.is_empty()).collect();
        if words.len() < WORDS_MIN {
            return None;
        }
        let mut minimums = [u64::MAX; BITS];
        for shingle in words.windows(SHINGLE_WORDS) {
            let hash = shingle_hash(shingle);
            for (minimum, seed) in minimums.iter_mut().zip(SEEDS.iter()) {
                let value = mix(hash ^ seed);
                if value < *minimum {
                    *minimum = value;
                }
            }
        }
        let bits = minimums
            .iter()
            .enumerate()
            .fold(0u64, |bits, (index, minimum)| {
                bits | ((minimum & 1) << index)
            });
        Some(Fingerprint(bits))
    }

    /// Bits that differ (Hamming distance), 0 to 64.
    pub fn distance(self, other: Fingerprint) -> u32 {
        (self.0 ^ other.0).count_ones()
    }

    /// 16 lowercase hex digits.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// Reads exactly 16 hex digits (either case); anything else is `None`.
    pub fn from_hex(s: &str) -> Option<Fingerprint> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Fingerprint)
    }
}

impl fmt::Display for Fingerprint {
    /// The same 16 hex digits as [`Fingerprint::to_hex`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The text as the fingerprint sees it: lowercase words separated by single
/// spaces. Per whitespace-separated token: a URL (`scheme://...`,
/// `www....`, or `host.tld/path`) becomes `url`; an e-mail address
/// (`x@y`, `mailto:` included) becomes `addr`; otherwise letters are
/// lowercased, each run of digits becomes `0` (punctuation inside a number
/// does not end it, so `1,000.00` is `0`), and everything else
/// (punctuation, symbols, zero-width characters) is dropped. Only the first
/// [`TEXT_BYTES_MAX`] bytes are looked at.
///
/// Spammers vary names, numbers and links per copy; this makes the copies'
/// text equal or near-equal.
pub fn normalise(text: &str) -> String {
    let text = prefix(text, TEXT_BYTES_MAX);
    let mut out = String::with_capacity(text.len());
    for token in text.split_whitespace() {
        let before = out.len();
        if !out.is_empty() {
            out.push(' ');
        }
        let word_start = out.len();
        let core = token.trim_matches(|c: char| !c.is_alphanumeric());
        if is_url(core) {
            out.push_str("url");
        } else if is_address(core) {
            out.push_str("addr");
        } else {
            push_word(&mut out, token);
        }
        if out.len() == word_start {
            // Nothing left of the token (all punctuation): no word, no space.
            out.truncate(before);
        }
    }
    out
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// Whether a token (trimmed of surrounding punctuation) is a link.
fn is_url(core: &str) -> bool {
    if core.contains("://") {
        return true;
    }
    if core
        .get(..4)
        .is_some_and(|start| start.eq_ignore_ascii_case("www."))
    {
        return true;
    }
    // A bare host and path ("bit.ly/abc"): a dot before the first slash,
    // followed by a top-level domain of letters. "and/or" and "1.5/2" are not.
    let Some((host, _path)) = core.split_once('/') else {
        return false;
    };
    let Some((_, top_level)) = host.rsplit_once('.') else {
        return false;
    };
    top_level.len() >= 2 && top_level.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Whether a token (trimmed of surrounding punctuation) is an e-mail address.
fn is_address(core: &str) -> bool {
    core.rsplit_once('@').is_some_and(|(local, domain)| {
        local.chars().any(char::is_alphanumeric) && domain.chars().any(char::is_alphanumeric)
    })
}

/// Appends the lowercased letters of `token`, each run of digits as one `0`.
fn push_word(out: &mut String, token: &str) {
    let mut in_number = false;
    for c in token.chars() {
        if c.is_numeric() {
            if !in_number {
                out.push('0');
                in_number = true;
            }
        } else if c.is_alphabetic() {
            in_number = false;
            // Lowercasing can add a combining mark ('İ' is 'i' and U+0307);
            // marks are dropped like everywhere else, so normalising twice
            // changes nothing.
            out.extend(c.to_lowercase().filter(|c| c.is_alphanumeric()));
        }
        // Anything else is dropped and does not end a number: "1,000" is "0".
    }
}

/// The 64-bit hash of one shingle: FNV-1a over its words with a separator,
/// then the splitmix64 finaliser, whose avalanche FNV lacks.
fn shingle_hash(words: &[&str]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for word in words {
        for byte in word.bytes().chain(std::iter::once(b' ')) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    mix(hash)
}

/// The splitmix64 finaliser: a fixed bijection of u64 with good avalanche.
const fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The splitmix64 finaliser, for tests elsewhere in the crate that need
/// well-spread, reproducible fingerprints.
#[cfg(test)]
pub(crate) fn tests_support_mix(value: u64) -> u64 {
    mix(value)
}

/// One seed per MinHash function: function `i` is `mix(hash ^ SEEDS[i])`.
const SEEDS: [u64; BITS] = seeds();

const fn seeds() -> [u64; BITS] {
    let mut seeds = [0u64; BITS];
    let mut index = 0;
    while index < BITS {
        seeds[index] = mix(0x5350_414d_0000_0000 + index as u64);
        index += 1;
    }
    seeds
}

#[cfg(test)]
mod tests;
