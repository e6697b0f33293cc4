//! A socket with a bounded read buffer and a timeout on every read and write.
//!
//! The protocol modules say how long the next reply is (or that it has not
//! all arrived); this module only reads until they can say so. It is generic
//! over the stream so tests can drive a client through an in-memory pipe.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::error::{ClientError, ClientErrorKind, ProtocolError};

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// A stream and what has been read from it but not yet consumed.
#[derive(Debug)]
pub struct Connection<S> {
    stream: S,
    /// Bytes read; those before `start` are consumed. Compacted when the
    /// consumed part passes half, so consuming many small responses out of
    /// one large read costs no more than the bytes themselves.
    buffer: Vec<u8>,
    start: usize,
    /// Longest wait for one read or one write.
    io_timeout: Duration,
    /// Most unconsumed bytes held; a reply larger than this is an error.
    buffer_bytes_max: usize,
    /// Bytes asked of the socket per read.
    read_chunk: usize,
}

/// Opens a TCP connection with `io_timeout` on the connect as well.
///
/// # Errors
/// `Io` when the connect fails, `Timeout` when it takes too long.
pub async fn connect_tcp(
    address: &str,
    io_timeout: Duration,
    buffer_bytes_max: usize,
) -> Result<Connection<TcpStream>, ClientError> {
    let stream = tokio::time::timeout(io_timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            ClientError::new(ClientErrorKind::Timeout, format!("connecting to {address}"))
        })?
        .map_err(|error| {
            ClientError::new(
                ClientErrorKind::Io,
                format!("connecting to {address}: {error}"),
            )
        })?;
    // Replies are small and latency is what we measure: no Nagle delay.
    stream.set_nodelay(true).map_err(|error| {
        ClientError::new(ClientErrorKind::Io, format!("setting TCP_NODELAY: {error}"))
    })?;
    Ok(Connection::new(stream, io_timeout, buffer_bytes_max))
}

/// Opens a TCP connection from `source` (port chosen by the kernel) to
/// `remote`, with `io_timeout` on the connect. Any address in 127.0.0.0/8
/// is loopback on Linux, so a benchmark can play many client hosts.
///
/// # Errors
/// `Io` when the socket cannot be made, bound or connected; `Timeout` when
/// the connect takes too long.
pub async fn connect_tcp_from(
    source: Ipv4Addr,
    remote: SocketAddr,
    io_timeout: Duration,
    buffer_bytes_max: usize,
) -> Result<Connection<TcpStream>, ClientError> {
    let io_error = |what: &str, error: std::io::Error| {
        ClientError::new(
            ClientErrorKind::Io,
            format!("{what} ({source} to {remote}): {error}"),
        )
    };
    let socket = TcpSocket::new_v4().map_err(|error| io_error("creating a socket", error))?;
    socket
        .bind(SocketAddr::new(IpAddr::V4(source), 0))
        .map_err(|error| io_error("binding", error))?;
    let stream = tokio::time::timeout(io_timeout, socket.connect(remote))
        .await
        .map_err(|_| {
            ClientError::new(
                ClientErrorKind::Timeout,
                format!("connecting from {source} to {remote}"),
            )
        })?
        .map_err(|error| io_error("connecting", error))?;
    stream
        .set_nodelay(true)
        .map_err(|error| io_error("setting TCP_NODELAY", error))?;
    Ok(Connection::new(stream, io_timeout, buffer_bytes_max))
}

/// The first IPv4 address `address` (`host:port`) resolves to.
///
/// # Errors
/// `Io` when it does not resolve or has no IPv4 address.
pub async fn resolve_v4(address: &str) -> Result<SocketAddr, ClientError> {
    let addresses = tokio::net::lookup_host(address).await.map_err(|error| {
        ClientError::new(ClientErrorKind::Io, format!("resolving {address}: {error}"))
    })?;
    addresses
        .into_iter()
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| {
            ClientError::new(
                ClientErrorKind::Io,
                format!("{address} has no IPv4 address"),
            )
        })
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S, io_timeout: Duration, buffer_bytes_max: usize) -> Self {
        Connection {
            stream,
            buffer: Vec::with_capacity(READ_CHUNK_BYTES),
            start: 0,
            io_timeout,
            buffer_bytes_max,
            read_chunk: READ_CHUNK_BYTES,
        }
    }

    /// Reads at most `bytes` at a time (at least 256) and gives back buffer
    /// capacity beyond that: for many connections that mostly wait, like
    /// IDLE's, where 64 KiB each would be gigabytes on the client.
    pub fn set_read_chunk(&mut self, bytes: usize) {
        self.read_chunk = bytes.max(256);
        self.buffer
            .shrink_to(self.pending().len().max(self.read_chunk));
    }

    /// Changes the timeout of each later read and write.
    pub fn set_io_timeout(&mut self, io_timeout: Duration) {
        self.io_timeout = io_timeout;
    }

    /// Writes all of `bytes` and flushes.
    ///
    /// # Errors
    /// `Io` or `Timeout`.
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(self.io_timeout, write)
            .await
            .map_err(|_| {
                ClientError::new(
                    ClientErrorKind::Timeout,
                    format!("writing {} bytes", bytes.len()),
                )
            })?
            .map_err(|error| ClientError::new(ClientErrorKind::Io, format!("writing: {error}")))
    }

    /// Reads until `frame` finds a whole reply at the start of the unconsumed
    /// bytes, and returns its length. The reply stays in the buffer: look at
    /// it with [`Connection::pending`], then drop it with
    /// [`Connection::consume`].
    ///
    /// # Errors
    /// What `frame` returns; `Closed` at end of stream; `Io`; `Timeout` when
    /// one read waits longer than the timeout; `Protocol` when the reply
    /// would pass the buffer bound.
    pub async fn read_frame(
        &mut self,
        mut frame: impl FnMut(&[u8]) -> Result<Option<usize>, ProtocolError>,
    ) -> Result<usize, ClientError> {
        // Bounded: every pass reads at least one byte, and the buffer may
        // hold at most buffer_bytes_max of them.
        loop {
            if let Some(length) = frame(self.pending())? {
                return Ok(length);
            }
            if self.pending().len() >= self.buffer_bytes_max {
                return Err(ClientError::new(
                    ClientErrorKind::Protocol,
                    format!("reply larger than {} bytes", self.buffer_bytes_max),
                ));
            }
            self.fill().await?;
        }
    }

    /// Bytes read and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buffer[self.start..]
    }

    /// Drops the first `length` pending bytes.
    ///
    /// # Panics
    /// When `length` is more than is pending: a caller bug, never input.
    pub fn consume(&mut self, length: usize) {
        assert!(length <= self.pending().len(), "consumed past the buffer");
        self.start += length;
        if self.start == self.buffer.len() {
            self.buffer.clear();
            self.start = 0;
        } else if self.start > self.buffer.len() / 2 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
    }

    /// Reads once into the buffer. Cancel-safe (bytes land in the buffer
    /// only as a read completes), so a caller may race it against a stop
    /// signal, as IDLE's watchers do.
    async fn fill(&mut self) -> Result<(), ClientError> {
        let room = self
            .read_chunk
            .min(self.buffer_bytes_max - self.pending().len());
        self.buffer.reserve(room);
        let read = tokio::time::timeout(
            self.io_timeout,
            (&mut self.stream)
                .take(room as u64)
                .read_buf(&mut self.buffer),
        )
        .await;
        match read {
            Err(_) => Err(ClientError::new(
                ClientErrorKind::Timeout,
                format!("no reply within {:?}", self.io_timeout),
            )),
            Ok(Err(error)) => Err(ClientError::new(
                ClientErrorKind::Io,
                format!("reading: {error}"),
            )),
            Ok(Ok(0)) => Err(ClientError::new(
                ClientErrorKind::Closed,
                "the server closed the connection",
            )),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Result<Option<usize>, ProtocolError> {
        Ok(input
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|newline| newline + 1))
    }

    #[tokio::test]
    async fn frames_arrive_across_reads_and_close_is_reported() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut connection = Connection::new(client, Duration::from_secs(5), 1024);
        server.write_all(b"one\r\ntw").await.unwrap();
        let length = connection.read_frame(lines).await.unwrap();
        assert_eq!(&connection.pending()[..length], b"one\r\n");
        connection.consume(length);
        server.write_all(b"o\r\n").await.unwrap();
        drop(server);
        let length = connection.read_frame(lines).await.unwrap();
        assert_eq!(&connection.pending()[..length], b"two\r\n");
        connection.consume(length);
        let error = connection.read_frame(lines).await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Closed);
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_huge_reply_is_refused() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut connection = Connection::new(client, Duration::from_millis(50), 16);
        let error = connection.read_frame(lines).await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Timeout);
        server.write_all(&[b'x'; 100]).await.unwrap();
        let error = connection.read_frame(lines).await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Protocol);
    }
}
