//! COMPRESS=DEFLATE (RFC 4978): raw DEFLATE (no zlib header) both ways once
//! the client asked and got its OK.
//!
//! Reading: what arrives compressed is kept and inflated at most
//! [`INFLATE_STEP_BYTES`] at a time, so a small hostile input that would
//! inflate to gigabytes only ever fills the session's buffer by that much per
//! step; the framer's line and literal bounds then apply as without
//! compression. Writing: each flush of the session compresses what it wrote
//! and ends with a sync flush, so the client can decode every response as
//! soon as it arrives.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Most inflated bytes added to the session's input per step.
pub const INFLATE_STEP_BYTES: usize = 256 * 1024;

pub struct Deflate {
    compress: Compress,
    decompress: Decompress,
    /// Compressed input not inflated yet.
    pending: Vec<u8>,
    /// The last step stopped at its bound: the inflater may hold output.
    more: bool,
}

#[derive(Debug)]
pub struct CorruptStream;

impl Deflate {
    pub fn new() -> Self {
        Deflate {
            // Level 6 (the zlib default); raw streams, as RFC 4978 requires.
            compress: Compress::new(Compression::new(6), false),
            decompress: Decompress::new(false),
            pending: Vec::new(),
            more: false,
        }
    }

    /// Takes compressed bytes read from the client.
    pub fn feed(&mut self, compressed: &[u8]) {
        self.pending.extend_from_slice(compressed);
    }

    /// Whether compressed input is waiting (inflate before reading more).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.more
    }

    /// Inflates waiting input into `out`, at most [`INFLATE_STEP_BYTES`].
    pub fn inflate(&mut self, out: &mut Vec<u8>) -> Result<(), CorruptStream> {
        let start = out.len();
        out.reserve(INFLATE_STEP_BYTES.min(self.pending.len().saturating_mul(8) + 1024));
        self.more = false;
        loop {
            if out.len() - start >= INFLATE_STEP_BYTES {
                self.more = true;
                break;
            }
            let room = (INFLATE_STEP_BYTES - (out.len() - start)).min(64 * 1024);
            let before_in = self.decompress.total_in();
            let before_out = self.decompress.total_out();
            let mut buffer = vec![0u8; room];
            let status = self
                .decompress
                .decompress(&self.pending, &mut buffer, FlushDecompress::Sync)
                .map_err(|_| CorruptStream)?;
            let used = (self.decompress.total_in() - before_in) as usize;
            let made = (self.decompress.total_out() - before_out) as usize;
            self.pending.drain(..used);
            out.extend_from_slice(&buffer[..made]);
            if status == Status::StreamEnd {
                // A client must not end the stream; nothing after it is valid.
                return Err(CorruptStream);
            }
            if used == 0 && made == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Compresses `data` with a sync flush at the end.
    pub fn deflate(&mut self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut input = data;
        loop {
            out.reserve(input.len() / 2 + 1024);
            let before_in = self.compress.total_in();
            let status = self
                .compress
                .compress_vec(input, &mut out, FlushCompress::Sync);
            let used = (self.compress.total_in() - before_in) as usize;
            input = &input[used..];
            // Done once all input is in and the flush left spare room.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if status.is_err() {
                break;
            }
        }
        out
    }
}

impl Default for Deflate {
    fn default() -> Self {
        Deflate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_both_directions() {
        let mut server = Deflate::new();
        let mut client = Deflate::new();
        for text in [&b"a NOOP\r\n"[..], &[b'x'; 300_000][..], b""] {
            let wire = client.deflate(text);
            server.feed(&wire);
            let mut got = Vec::new();
            while server.has_pending() {
                server.inflate(&mut got).expect("valid stream");
            }
            assert_eq!(got, text);
        }
    }

    #[test]
    fn a_bomb_inflates_one_step_at_a_time() {
        let mut client = Deflate::new();
        let wire = client.deflate(&vec![b'A'; 50 * 1024 * 1024]);
        assert!(wire.len() < 100 * 1024, "{}", wire.len());
        let mut server = Deflate::new();
        server.feed(&wire);
        let mut got = Vec::new();
        server.inflate(&mut got).expect("valid stream");
        assert!(got.len() <= INFLATE_STEP_BYTES);
        assert!(server.has_pending());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut server = Deflate::new();
        server.feed(&[0xff; 64]);
        let mut got = Vec::new();
        assert!(server.inflate(&mut got).is_err());
    }
}
