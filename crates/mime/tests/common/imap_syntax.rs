//! A checker for the rendered ENVELOPE/BODY/BODYSTRUCTURE strings: lists
//! balance, quoted strings hold only what RFC 9051 allows in them, and every
//! literal's length is right. Shared by the corpus replay test and the
//! cargo-fuzz target (included there by path).

/// Checks `rendered`; the error says what is wrong and where.
pub fn check(rendered: &str) -> Result<(), String> {
    let bytes = rendered.as_bytes();
    let mut depth = 0usize;
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            b'(' => depth += 1,
            b')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced ')' at {position}"))?;
            }
            b'"' => {
                position += 1;
                loop {
                    match bytes.get(position) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'"') => break,
                        Some(b'\\') => position += 1,
                        Some(0 | b'\r' | b'\n') => {
                            return Err(format!("CR, LF or NUL in quoted string at {position}"));
                        }
                        Some(&other) if other >= 0x80 => {
                            return Err(format!("8-bit byte in quoted string at {position}"));
                        }
                        Some(_) => {}
                    }
                    position += 1;
                }
            }
            b'{' => {
                let close = bytes[position..]
                    .iter()
                    .position(|&byte| byte == b'}')
                    .ok_or("unterminated literal length")?;
                let digits = &rendered[position + 1..position + close];
                let length: usize = digits
                    .parse()
                    .map_err(|_| format!("bad literal length {digits:?}"))?;
                let start = position + close + 1;
                if bytes.get(start..start + 2) != Some(b"\r\n") {
                    return Err(format!("literal length not followed by CRLF at {start}"));
                }
                let content = bytes
                    .get(start + 2..start + 2 + length)
                    .ok_or("literal runs past the end")?;
                if content.contains(&0) {
                    return Err("NUL in literal".into());
                }
                position = start + 2 + length;
                continue;
            }
            b' ' | b'A'..=b'Z' | b'0'..=b'9' => {}
            other => return Err(format!("unexpected {:?} at {position}", other as char)),
        }
        position += 1;
    }
    if depth == 0 {
        Ok(())
    } else {
        Err("unbalanced '('".into())
    }
}
