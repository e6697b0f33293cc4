//! The replication link's frames and its TLS plumbing.
//!
//! A frame is `u32 header length (BE) | header (JSON of [`Msg`]) | u32 payload
//! length (BE) | payload` (message contents travel as raw payload, never in
//! JSON). Both lengths are bounded before anything is buffered. A header of
//! more than [`DEFLATE_ABOVE`] bytes (a batch of records) is sent deflated,
//! marked by the top bit of its length, and inflated with the same bound: the
//! records' JSON would otherwise be a tenth of what a batch of small
//! messages ships.
//!
//! The link is TLS; neither side checks the other's certificate (replicas
//! run on self-signed ones). Instead each side proves the shared secret with
//! an HMAC over a value exported from this very TLS session (RFC 5705
//! keying material), so a proof cannot be replayed on another connection
//! and a man in the middle, who holds two sessions, cannot relay it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::sync::Arc;
use store::record::{Lsn, Record};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest header: a batch of records is bounded by `batch_bytes_max`, a
/// digest answer by the number of users and mailboxes.
pub const HEADER_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Largest payload: one message content.
pub const PAYLOAD_BYTES_MAX: usize = 1024 * 1024 * 1024;

const EXPORTER_LABEL: &[u8] = b"EXPORTER-postern-replication";
/// Headers longer than this are deflated.
pub const DEFLATE_ABOVE: usize = 256;
const DEFLATED: u32 = 1 << 31;

/// Who speaks: a link has a primary end and a replica end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum End {
    Primary,
    Replica,
}

/// Where a replica stands: the primary it follows and that primary's last LSN it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub source: String,
    pub upto: Lsn,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Msg {
    /// The first frame each way. `proof`: HMAC-SHA256 of the secret over the
    /// end's name and the session's exported keying material (hex).
    Hello {
        end: End,
        store_id: String,
        epoch: u64,
        durable: Lsn,
        position: Option<Position>,
        /// The store has no journal record at all (a fresh replica).
        empty: bool,
        proof: String,
    },
    /// The link is refused, with why; `epoch` is the refuser's, and
    /// `held_upto` the last of the peer's LSNs it holds (after a failover,
    /// what the old primary must set aside beyond).
    Refuse {
        reason: String,
        epoch: u64,
        held_upto: Option<Lsn>,
        /// The refuser is primary at a higher epoch: the peer must step down.
        newer_primary: bool,
    },
    /// Primary → replica: the records after `after` up to `upto` (local ones
    /// left out) and the hashes of the contents they name.
    Offer {
        after: Lsn,
        upto: Lsn,
        id_floor: u64,
        durable: Lsn,
        /// Commit time of the first record.
        first_time: i64,
        records: Vec<Record>,
        blobs: Vec<String>,
    },
    /// Replica → primary: the contents of the offer it lacks.
    Want {
        blobs: Vec<String>,
    },
    /// One content (payload), in the order of `Want` (the replica checks
    /// each against the hash it asked for); `lost`: the primary has no good
    /// copy either.
    Blob {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lost: bool,
    },
    BlobsDone,
    /// Replica → primary: the offer up to `upto` is durable here.
    Ack {
        upto: Lsn,
    },
    /// The offer could not be applied.
    Nack {
        reason: String,
    },
    /// Primary → replica while idle: where the primary is.
    Ping {
        durable: Lsn,
    },
    /// The end of an export file (`export.rs`): the SHA-256 of every byte
    /// before this frame, and what the file holds.
    End {
        sha256: String,
        summary: serde_json::Value,
    },
    /// A question either end may ask (`replication check`).
    Request {
        id: u64,
        request: Request,
    },
    /// Its answer: `body` (JSON) or `error`; a content comes as payload.
    Response {
        id: u64,
        error: Option<String>,
        body: serde_json::Value,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Request {
    /// Digests of one user or of all users, contents verified or not.
    Digest { user: Option<String>, verify: bool },
    /// The rows of one mailbox (by id).
    Listing {
        user: String,
        mailbox: String,
        verify: bool,
    },
    /// One content, verified.
    Blob { hash: String },
    /// Run reconstruct (repair) on one user there.
    Reconstruct { user: String },
    /// Fetch back (from the asker) the contents of a mailbox lost there.
    RestoreLost { user: String, mailbox: String },
}

pub struct Frame {
    pub msg: Msg,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(msg: Msg) -> Self {
        Frame {
            msg,
            payload: Vec::new(),
        }
    }
}

/// A frame as it goes on the wire.
pub fn encode(frame: &Frame) -> anyhow::Result<Vec<u8>> {
    let json = serde_json::to_vec(&frame.msg)?;
    anyhow::ensure!(json.len() <= HEADER_BYTES_MAX, "frame header too large");
    anyhow::ensure!(
        frame.payload.len() <= PAYLOAD_BYTES_MAX,
        "frame payload too large"
    );
    let (header, mark) = if json.len() > DEFLATE_ABOVE {
        use std::io::Write;
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&json)?;
        (encoder.finish()?, DEFLATED)
    } else {
        (json, 0)
    };
    let mut buf = Vec::with_capacity(8 + header.len() + frame.payload.len());
    buf.extend_from_slice(&(header.len() as u32 | mark).to_be_bytes());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&(frame.payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(&frame.payload);
    Ok(buf)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    frame: &Frame,
) -> anyhow::Result<usize> {
    let bytes = encode(frame)?;
    out.write_all(&bytes).await?;
    out.flush().await?;
    Ok(bytes.len())
}

/// One frame; `Ok(None)` at a clean end of the stream. Sizes are checked
/// before anything is buffered; a header that is not a known message is an error.
pub async fn read_frame<R: AsyncRead + Unpin>(
    input: &mut R,
) -> anyhow::Result<Option<(Frame, usize)>> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let raw_len = u32::from_be_bytes(length);
    let deflated = raw_len & DEFLATED != 0;
    let header_len = (raw_len & !DEFLATED) as usize;
    anyhow::ensure!(
        header_len <= HEADER_BYTES_MAX,
        "peer sent a frame header of {header_len} bytes"
    );
    let mut header = vec![0u8; header_len];
    input.read_exact(&mut header).await?;
    input.read_exact(&mut length).await?;
    let payload_len = u32::from_be_bytes(length) as usize;
    anyhow::ensure!(
        payload_len <= PAYLOAD_BYTES_MAX,
        "peer sent a payload of {payload_len} bytes"
    );
    let mut payload = vec![0u8; payload_len];
    input.read_exact(&mut payload).await?;
    let msg = decode_header(header, deflated)?;
    Ok(Some((Frame { msg, payload }, 8 + header_len + payload_len)))
}

/// A frame header's message, inflated first when it was deflated (bounded:
/// a small header may not inflate past the header bound).
fn decode_header(header: Vec<u8>, deflated: bool) -> anyhow::Result<Msg> {
    let json = if deflated {
        use std::io::Read;
        let mut json = Vec::new();
        flate2::read::DeflateDecoder::new(header.as_slice())
            .take(HEADER_BYTES_MAX as u64 + 1)
            .read_to_end(&mut json)
            .map_err(|e| anyhow::anyhow!("a frame that does not inflate: {e}"))?;
        anyhow::ensure!(
            json.len() <= HEADER_BYTES_MAX,
            "a frame header that inflates too far"
        );
        json
    } else {
        header
    };
    serde_json::from_slice(&json).map_err(|e| anyhow::anyhow!("an unreadable frame: {e}"))
}

/// One frame from a local file (an export), read synchronously with the
/// same bounds as [`read_frame`]; `seen` gets every byte read, in order (to
/// hash them). `Ok(None)` at a clean end of the input. Lengths are read, not
/// allocated ahead: a damaged length costs no memory for its size.
pub fn read_frame_sync(
    input: &mut impl std::io::Read,
    mut seen: impl FnMut(&[u8]),
) -> anyhow::Result<Option<Frame>> {
    use std::io::Read as _;
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    seen(&length);
    let word = u32::from_be_bytes(length);
    let header_len = (word & !DEFLATED) as usize;
    anyhow::ensure!(header_len <= HEADER_BYTES_MAX, "a frame header too large");
    let mut header = Vec::new();
    input
        .by_ref()
        .take(header_len as u64)
        .read_to_end(&mut header)?;
    anyhow::ensure!(header.len() == header_len, "the input ends inside a frame");
    seen(&header);
    input
        .read_exact(&mut length)
        .map_err(|_| anyhow::anyhow!("the input ends inside a frame"))?;
    seen(&length);
    let payload_len = u32::from_be_bytes(length) as usize;
    anyhow::ensure!(
        payload_len <= PAYLOAD_BYTES_MAX,
        "a frame payload too large"
    );
    let mut payload = Vec::new();
    input
        .by_ref()
        .take(payload_len as u64)
        .read_to_end(&mut payload)?;
    anyhow::ensure!(
        payload.len() == payload_len,
        "the input ends inside a content"
    );
    seen(&payload);
    Ok(Some(Frame {
        msg: decode_header(header, word & DEFLATED != 0)?,
        payload,
    }))
}

type HmacSha256 = Hmac<Sha256>;

/// The HMAC of `end` over a session's exported keying material.
fn mac(secret: &str, end: End, binding: &[u8; 32]) -> HmacSha256 {
    // A key of any length is accepted by HMAC.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"postern-replication-v1 ");
    mac.update(match end {
        End::Primary => b"primary ",
        End::Replica => b"replica ",
    });
    mac.update(binding);
    mac
}

/// The proof of `end` over a session's exported keying material.
pub fn proof(secret: &str, end: End, binding: &[u8; 32]) -> String {
    hex::encode(mac(secret, end, binding).finalize().into_bytes())
}

/// Checks a proof in constant time.
pub fn proof_ok(secret: &str, end: End, binding: &[u8; 32], proof: &str) -> bool {
    match hex::decode(proof) {
        Ok(given) => mac(secret, end, binding).verify_slice(&given).is_ok(),
        Err(_) => false,
    }
}

/// The session's exported keying material (RFC 5705), the same on both ends.
pub fn binding_of<D>(connection: &rustls::ConnectionCommon<D>) -> anyhow::Result<[u8; 32]> {
    connection
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .map_err(|e| anyhow::anyhow!("TLS keying material: {e}"))
}

/// A TLS client that takes any certificate: the secret authenticates the peer.
pub fn connector() -> anyhow::Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts the replica's certificate whatever it is, but still checks that
/// the handshake is signed by its key (so the session is a real TLS one).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_bound_to_the_secret_the_end_and_the_session() {
        let binding = [7u8; 32];
        let p = proof("a shared secret!", End::Primary, &binding);
        assert!(proof_ok("a shared secret!", End::Primary, &binding, &p));
        assert!(!proof_ok("another secret!!", End::Primary, &binding, &p));
        assert!(!proof_ok("a shared secret!", End::Replica, &binding, &p));
        assert!(!proof_ok("a shared secret!", End::Primary, &[8u8; 32], &p));
        assert!(!proof_ok("a shared secret!", End::Primary, &binding, "zz"));
    }

    #[tokio::test]
    async fn frames_round_trip_and_bounds_are_checked_before_buffering() {
        let frame = Frame {
            msg: Msg::Ack { upto: 42 },
            payload: b"bytes".to_vec(),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &frame).await.expect("writes");
        let (read, size) = read_frame(&mut buf.as_slice())
            .await
            .expect("reads")
            .expect("a frame");
        assert!(matches!(read.msg, Msg::Ack { upto: 42 }));
        assert_eq!(read.payload, b"bytes");
        assert_eq!(size, buf.len());
        // An announced header over the bound is refused without reading it.
        let huge = ((HEADER_BYTES_MAX + 1) as u32).to_be_bytes();
        assert!(read_frame(&mut &huge[..]).await.is_err());
        // Garbage in a header of a sane size is an error, not a panic.
        let mut bad = Vec::new();
        bad.extend_from_slice(&3u32.to_be_bytes());
        bad.extend_from_slice(b"{x}");
        bad.extend_from_slice(&0u32.to_be_bytes());
        assert!(read_frame(&mut bad.as_slice()).await.is_err());
        // A large header travels deflated and comes back whole.
        let big = Frame::new(Msg::Nack {
            reason: "x".repeat(100_000),
        });
        let mut buf = Vec::new();
        let size = write_frame(&mut buf, &big).await.expect("writes");
        assert!(size < 10_000, "deflated: {size}");
        let (read, _) = read_frame(&mut buf.as_slice())
            .await
            .expect("reads")
            .expect("a frame");
        assert!(matches!(read.msg, Msg::Nack { reason } if reason.len() == 100_000));
        // A clean end is not an error.
        assert!(read_frame(&mut &[][..]).await.expect("clean end").is_none());
    }
}
