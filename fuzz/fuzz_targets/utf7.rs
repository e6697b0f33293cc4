//! Modified UTF-7: decoding arbitrary text never panics, and whatever decodes
//! encodes back to the same bytes (decode is strict, so names cannot alias);
//! encoding any UTF-8 name decodes back to it.
#![no_main]

use imap_proto::utf7;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(decoded) = utf7::decode(text) {
        assert_eq!(utf7::encode(&decoded), text);
    }
    assert_eq!(utf7::decode(&utf7::encode(text)).as_deref(), Some(text));
});
