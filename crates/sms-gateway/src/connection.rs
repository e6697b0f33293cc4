//! The byte stream to the SMSC: TCP, optionally inside TLS, and PDU
//! framing with rusmpp's codec driven by hand (read into a buffer, decode
//! whole PDUs; "need more bytes" is the normal `Ok(None)`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rusmpp::Command;
use rusmpp::tokio_codec::CommandCodec;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::SmppConfig;
use crate::error::Error;

/// Largest PDU accepted from the SMSC. A deliver_sm with a 255-octet
/// short_message and its TLVs is well under 1 KiB; 64 KiB leaves room for
/// message_payload and stops a broken peer from making us buffer more.
pub const PDU_OCTETS_MAX: usize = 64 * 1024;

/// command_length, command_id, command_status, sequence_number.
const HEADER_OCTETS: usize = 16;

/// Decodes one whole frame; on a body rusmpp refuses, the header alone.
fn decode_frame(frame: &[u8]) -> Result<Command, Error> {
    let mut codec = CommandCodec::new().with_max_length(PDU_OCTETS_MAX);
    let body_error = match codec.decode(&mut BytesMut::from(frame)) {
        Ok(Some(command)) => return Ok(command),
        Ok(None) => "incomplete frame".to_owned(),
        Err(error) => error.to_string(),
    };
    let mut header = BytesMut::from(&frame[..HEADER_OCTETS]);
    header[..4].copy_from_slice(&(HEADER_OCTETS as u32).to_be_bytes());
    let mut codec = CommandCodec::new();
    match codec.decode(&mut header) {
        Ok(Some(command)) => {
            tracing::warn!(
                event = "sms_pdu_body_invalid",
                command_id = format_args!("0x{:08X}", u32::from(command.id())),
                sequence = command.sequence_number(),
                error = %body_error,
                "the SMSC sent a PDU body we cannot decode; using its header"
            );
            Ok(command)
        }
        _ => Err(Error::Protocol(body_error)),
    }
}

/// Anything the session can read from and write to.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// One connection to the SMSC with its read buffer.
pub struct Connection {
    stream: Box<dyn Transport>,
    /// Encodes outgoing PDUs (decoding is per frame, see `read`).
    codec: CommandCodec,
    read_buffer: BytesMut,
    write_buffer: BytesMut,
}

impl Connection {
    /// Connects over TCP, then TLS when configured, within `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] for resolution, TCP or TLS failures (and the
    /// timeout), [`Error::Tls`] for an unusable CA file or host name.
    pub async fn open(config: &SmppConfig, timeout: Duration) -> Result<Connection, Error> {
        let connect = async {
            let tcp = TcpStream::connect(&config.smsc).await?;
            tcp.set_nodelay(true)?;
            Ok::<_, io::Error>(tcp)
        };
        let tcp = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| {
                Error::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            })?
            .map_err(Error::Connect)?;
        let stream: Box<dyn Transport> = if config.tls {
            let connector = tls_connector(config)?;
            let name = server_name(&config.smsc)?;
            let tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
                .await
                .map_err(|_| {
                    Error::Connect(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "TLS handshake timed out",
                    ))
                })?
                .map_err(Error::Connect)?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        Ok(Connection::from_stream(stream))
    }

    /// Wraps an already connected stream (tests use in-memory pipes).
    pub fn from_stream(stream: Box<dyn Transport>) -> Connection {
        Connection {
            stream,
            codec: CommandCodec::new().with_max_length(PDU_OCTETS_MAX),
            read_buffer: BytesMut::with_capacity(4096),
            write_buffer: BytesMut::with_capacity(4096),
        }
    }

    /// Reads until one whole PDU is there. Cancel-safe: bytes already read
    /// stay in the buffer when the future is dropped in a `select!`.
    ///
    /// The frame is cut out by its `command_length` before rusmpp decodes
    /// it, so a body rusmpp refuses costs only that body: the header alone
    /// is decoded instead (id, status, sequence number, no PDU). That keeps
    /// a session alive through an SMSC's harmless quirks, such as a
    /// bind_resp whose system_id is longer than SMPP's 16 octets (a body we
    /// never read), and lets a garbled deliver_sm still be acknowledged.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the peer closes or the socket fails,
    /// [`Error::Protocol`] for a command_length out of bounds or a header
    /// that cannot be decoded (the stream cannot be trusted after that).
    pub async fn read(&mut self) -> Result<Command, Error> {
        loop {
            if self.read_buffer.len() >= HEADER_OCTETS {
                let length_octets = [
                    self.read_buffer[0],
                    self.read_buffer[1],
                    self.read_buffer[2],
                    self.read_buffer[3],
                ];
                let length =
                    usize::try_from(u32::from_be_bytes(length_octets)).unwrap_or(usize::MAX);
                if !(HEADER_OCTETS..=PDU_OCTETS_MAX).contains(&length) {
                    return Err(Error::Protocol(format!(
                        "command_length {length} outside {HEADER_OCTETS}..={PDU_OCTETS_MAX}"
                    )));
                }
                if self.read_buffer.len() >= length {
                    let frame = self.read_buffer.split_to(length);
                    return decode_frame(&frame);
                }
                self.read_buffer.reserve(length - self.read_buffer.len());
            }
            let read = self
                .stream
                .read_buf(&mut self.read_buffer)
                .await
                .map_err(Error::Io)?;
            if read == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the SMSC closed the connection",
                )));
            }
        }
    }

    /// Writes one PDU and flushes it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the socket fails.
    pub async fn write(&mut self, command: &Command) -> Result<(), Error> {
        self.write_buffer.clear();
        self.codec
            .encode(command, &mut self.write_buffer)
            .map_err(|error| Error::Protocol(error.to_string()))?;
        self.stream
            .write_all(&self.write_buffer)
            .await
            .map_err(Error::Io)?;
        self.stream.flush().await.map_err(Error::Io)
    }

    /// Closes the write side (TLS close_notify, TCP FIN).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

fn tls_connector(config: &SmppConfig) -> Result<tokio_rustls::TlsConnector, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.tls_ca_file {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    Error::Tls(format!(
                        "cannot read [sms] tls_ca_file {}: {error}",
                        path.display()
                    ))
                })?;
            let (added, _ignored) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(Error::Tls(format!(
                    "[sms] tls_ca_file {} holds no usable certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(tls_config)))
}

/// The host part of "host:port" ("[::1]:2775" gives "::1").
fn server_name(smsc: &str) -> Result<ServerName<'static>, Error> {
    let host = smsc.rsplit_once(':').map_or(smsc, |(host, _port)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|error| {
        Error::Tls(format!(
            "[sms] smsc host {host:?} is not a valid TLS name: {error}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert_eq!(
            server_name("smsc.example.com:2775").expect("name").to_str(),
            "smsc.example.com"
        );
        assert_eq!(server_name("[::1]:3550").expect("ip").to_str(), "::1");
        assert_eq!(
            server_name("127.0.0.1:3550").expect("ip").to_str(),
            "127.0.0.1"
        );
    }
}
