//! Modified UTF-7 for mailbox names (RFC 3501 5.1.3), used with clients that
//! have not enabled UTF8=ACCEPT.
//!
//! Printable ASCII other than `&` stands for itself; `&` is `&-`; anything
//! else is UTF-16 in base64 (with `,` for `/`, no padding) between `&` and `-`.
//! [`decode`] is strict: it accepts only what [`encode`] would produce, so
//! every mailbox has exactly one wire name and names cannot alias.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c) && c != '&'
}

/// Encode a UTF-8 mailbox name to modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut units: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush(&mut out, &mut units);
            out.push(c);
        } else if c == '&' {
            flush(&mut out, &mut units);
            out.push_str("&-");
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut units);
    out
}

/// Write pending UTF-16 units as one `&...-` run.
fn flush(out: &mut String, units: &mut Vec<u16>) {
    if units.is_empty() {
        return;
    }
    out.push('&');
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut push = |index: u32| {
        // index is < 64 by the masks below.
        if let Some(&b) = ALPHABET.get(index as usize) {
            out.push(char::from(b));
        }
    };
    for unit in units.drain(..) {
        bits = (bits << 16) | u32::from(unit);
        bit_count += 16;
        while bit_count >= 6 {
            bit_count -= 6;
            push((bits >> bit_count) & 0x3f);
        }
        bits &= (1 << bit_count) - 1;
    }
    if bit_count > 0 {
        push((bits << (6 - bit_count)) & 0x3f);
    }
    out.push('-');
}

/// Decode a modified UTF-7 name; `None` if it is not in canonical form
/// (raw non-ASCII, bad base64, non-zero padding bits, an encoded run that
/// holds only printable ASCII or directly follows another run, unpaired
/// surrogates).
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    // True right after an encoded run: a second run there should have been
    // merged into the first.
    let mut after_run = false;
    while let Some(&b) = bytes.get(i) {
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return None;
            }
            out.push(char::from(b));
            after_run = false;
            i += 1;
            continue;
        }
        let end = i + 1 + bytes.get(i + 1..)?.iter().position(|&c| c == b'-')?;
        let run = bytes.get(i + 1..end)?;
        if run.is_empty() {
            out.push('&');
            after_run = false;
        } else {
            if after_run {
                return None;
            }
            decode_run(run, &mut out)?;
            after_run = true;
        }
        i = end + 1;
    }
    Some(out)
}

fn decode_run(run: &[u8], out: &mut String) -> Option<()> {
    let mut units = Vec::with_capacity(run.len() * 6 / 16);
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    for &b in run {
        let value = ALPHABET.iter().position(|&a| a == b)?;
        bits = (bits << 6) | value as u32;
        bit_count += 6;
        if bit_count >= 16 {
            bit_count -= 16;
            units.push(((bits >> bit_count) & 0xffff) as u16);
            bits &= (1 << bit_count) - 1;
        }
    }
    // Leftover bits must be padding: fewer than 6 and all zero.
    if bit_count >= 6 || bits != 0 {
        return None;
    }
    for c in char::decode_utf16(units) {
        let c = c.ok()?;
        // Printable ASCII and '&' must not be encoded.
        if is_direct(c) || c == '&' {
            return None;
        }
        out.push(c);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        // RFC 3501 5.1.3
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("A&-B").as_deref(), Some("A&B"));
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(decode("&2D3eAA-").as_deref(), Some("😀"));
    }

    #[test]
    fn strictness() {
        assert_eq!(decode("&Jjo!"), None); // unterminated
        assert_eq!(decode("&AGE-"), None); // encodes 'a'
        assert_eq!(decode("&AOQ-&AOQ-"), None); // two adjacent runs
        assert_eq!(decode("&AOR-"), None); // non-zero padding bits
        assert_eq!(decode("&U,BTF2XlZyyKng-"), Some("台北日本語".into()));
        assert_eq!(decode("&2D0-"), None); // lone surrogate
        assert_eq!(decode("&AO*-"), None); // bad base64
        assert_eq!(decode("ä"), None); // raw 8-bit
        assert_eq!(decode("a\tb"), None);
        assert_eq!(decode("&AOQ-&-").as_deref(), Some("ä&"));
    }

    #[test]
    fn round_trip() {
        for name in [
            "",
            "INBOX",
            "a&&b",
            "Ünïcödé/ü",
            "x\u{7f}y",
            "\u{10ffff}z",
            "a\u{1}",
        ] {
            let encoded = encode(name);
            assert_eq!(decode(&encoded).as_deref(), Some(name), "{encoded}");
        }
    }
}
