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

/// Anything the session can read from and write to.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// One connection to the SMSC with its read buffer.
pub struct Connection {
    stream: Box<dyn Transport>,
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
    /// # Errors
    ///
    /// [`Error::Io`] when the peer closes or the socket fails,
    /// [`Error::Protocol`] for a PDU rusmpp cannot decode (the stream is
    /// out of step after that; the caller drops the connection).
    pub async fn read(&mut self) -> Result<Command, Error> {
        loop {
            match self.codec.decode(&mut self.read_buffer) {
                Ok(Some(command)) => return Ok(command),
                Ok(None) => {}
                Err(error) => return Err(Error::Protocol(error.to_string())),
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
