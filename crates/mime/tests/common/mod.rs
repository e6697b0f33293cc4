//! Shared helpers for the integration tests: loading the `.eml` inputs,
//! checking rendered IMAP syntax, exercising every entry point.

// Each test crate includes this module and uses a different subset of it.
#![allow(dead_code)]

/// The bytes of `tests/data/<name>`. The files are written with LF line
/// endings for readability; they are converted to CRLF, as messages arrive
/// over LMTP, except the `bare_lf` ones which test exactly that.
pub fn load(name: &str) -> Vec<u8> {
    let path = manifest_dir().join("tests").join("data").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    if name.starts_with("bare_lf") {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 20);
    let mut previous = 0u8;
    for byte in bytes {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    out
}
pub mod exercise;
pub mod imap_syntax;

/// The crate's directory, from cargo at run time: the path compiled in is the
/// one of the checkout that built the binary, which a shared target directory
/// can hand to another checkout.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
