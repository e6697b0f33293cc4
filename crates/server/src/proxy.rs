//! The PROXY protocol (HAProxy's, versions 1 and 2) on listeners behind a
//! load balancer: the balancer opens each connection with a header naming
//! the client's address, which the server then uses everywhere it would have
//! used the socket's (connection caps, logs, trace headers, spam defence,
//! plaintext-login policy).
//!
//! Only connections from the networks in `[proxy] from` may (and must) send
//! a header; anyone else reaching the listener is served as usual, so a
//! client cannot claim an address it does not have. The header is read with
//! exact reads (never a byte of what follows it: with IMAPS, the TLS
//! handshake), bounded in size and time. Parsing is the `ppp` crate's; the
//! framing around it (how many bytes to read) is here.

use crate::connections::Network;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The 12-byte signature that starts a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header is at most 107 bytes, CRLF included (the spec's bound).
pub const V1_BYTES_MAX: usize = 107;
/// A version 2 header: 16 bytes, then addresses (216 for UNIX sockets) and
/// TLVs; more than this is refused.
pub const V2_BYTES_MAX: usize = 16 + 1024;

/// Where PROXY headers are expected, from `[proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    pub from: Vec<Network>,
    pub services: Vec<crate::Service>,
    pub header_wait: Duration,
}

impl ProxyPolicy {
    /// Whether a connection to `service` from `peer` must start with a header.
    pub fn expects_header(&self, service: crate::Service, peer: IpAddr) -> bool {
        self.services.contains(&service) && self.from.iter().any(|n| n.contains(peer))
    }
}

/// What reading a header gives: the client's address (`None`: the socket's).
pub type HeaderResult = Result<Option<SocketAddr>, HeaderError>;

/// Why a header was refused (the connection is then closed).
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The bytes are not a PROXY header at all.
    NotProxy,
    /// A header, but malformed or over its size bound.
    Malformed(String),
    /// Nothing complete within `header_wait`.
    Timeout,
    /// The connection ended first.
    Closed,
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::NotProxy => {
                f.write_str("the connection did not start with a PROXY header")
            }
            HeaderError::Malformed(why) => write!(f, "malformed PROXY header: {why}"),
            HeaderError::Timeout => f.write_str("no PROXY header in time"),
            HeaderError::Closed => f.write_str("closed before the PROXY header ended"),
        }
    }
}

/// Reads the header; the client's address, or `None` when the balancer
/// speaks for itself (v2 `LOCAL`, v1 `UNKNOWN`, or a non-IP family): then the
/// socket's address stands.
pub async fn read_header(stream: &mut TcpStream, wait: Duration) -> HeaderResult {
    match tokio::time::timeout(wait, read_header_unbounded(stream)).await {
        Ok(result) => result,
        Err(_) => Err(HeaderError::Timeout),
    }
}

async fn read_header_unbounded(stream: &mut TcpStream) -> HeaderResult {
    let mut start = [0u8; 8];
    read_exact(stream, &mut start).await?;
    if start == V2_SIGNATURE[..8] {
        let mut header = vec![0u8; 16];
        header[..8].copy_from_slice(&start);
        read_exact(stream, &mut header[8..]).await?;
        if header[8..12] != V2_SIGNATURE[8..] {
            return Err(HeaderError::NotProxy);
        }
        let length = u16::from_be_bytes([header[14], header[15]]) as usize;
        if 16 + length > V2_BYTES_MAX {
            return Err(HeaderError::Malformed(format!(
                "a version 2 header of {} bytes (at most {V2_BYTES_MAX})",
                16 + length
            )));
        }
        header.resize(16 + length, 0);
        read_exact(stream, &mut header[16..]).await?;
        return parse_v2(&header);
    }
    if &start[..6] != b"PROXY " {
        return Err(HeaderError::NotProxy);
    }
    // Version 1 ends at CRLF; read a byte at a time so that nothing after it
    // is consumed (the header is short, and sent once per connection).
    let mut line = start.to_vec();
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_BYTES_MAX {
            return Err(HeaderError::Malformed(format!(
                "a version 1 header longer than {V1_BYTES_MAX} bytes"
            )));
        }
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte).await?;
        line.push(byte[0]);
    }
    parse_v1(&line)
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), HeaderError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(_) => Err(HeaderError::Closed),
    }
}

/// A complete version 1 header, CRLF included.
pub fn parse_v1(line: &[u8]) -> HeaderResult {
    use ppp::v1::Addresses;
    let header =
        ppp::v1::Header::try_from(line).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    })
}

/// A complete version 2 header.
pub fn parse_v2(bytes: &[u8]) -> HeaderResult {
    use ppp::v2::{Addresses, Command};
    let header =
        ppp::v2::Header::try_from(bytes).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    if header.command == Command::Local {
        return Ok(None);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out
    }

    #[test]
    fn version_1_names_the_client() {
        let addr = parse_v1(b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 143\r\n").expect("parses");
        assert_eq!(addr, Some("203.0.113.7:51000".parse().expect("addr")));
        let addr = parse_v1(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 143\r\n").expect("parses");
        assert_eq!(addr, Some("[2001:db8::7]:51000".parse().expect("addr")));
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\n").expect("parses"), None);
        for bad in [
            &b"PROXY TCP4 203.0.113.7\r\n"[..],
            b"PROXY TCP4 999.0.113.7 192.0.2.1 51000 143\r\n",
            b"PROXY TCP5 203.0.113.7 192.0.2.1 51000 143\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 143\r\n",
        ] {
            assert!(parse_v1(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_2_names_the_client_or_speaks_for_itself() {
        // PROXY, TCP over IPv4: source 203.0.113.7:51000, destination 192.0.2.1:993.
        let mut ipv4 = vec![203, 0, 113, 7, 192, 0, 2, 1];
        ipv4.extend_from_slice(&51000u16.to_be_bytes());
        ipv4.extend_from_slice(&993u16.to_be_bytes());
        let addr = parse_v2(&v2(1, 0x11, &ipv4)).expect("parses");
        assert_eq!(addr, Some("203.0.113.7:51000".parse().expect("addr")));
        // LOCAL (a health check): the balancer's own connection.
        assert_eq!(parse_v2(&v2(0, 0x00, &[])).expect("parses"), None);
        // An address block too short for its family.
        assert!(parse_v2(&v2(1, 0x11, &[1, 2, 3])).is_err());
    }

    #[tokio::test]
    async fn headers_are_read_exactly_and_bounded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("addr");
        let cases: Vec<(Vec<u8>, HeaderResult)> = vec![
            (
                b"PROXY TCP4 203.0.113.7 192.0.2.1 51000 143\r\nA1 LOGIN".to_vec(),
                Ok(Some("203.0.113.7:51000".parse().expect("addr"))),
            ),
            (
                b"A1 LOGIN alice secret\r\n".to_vec(),
                Err(HeaderError::NotProxy),
            ),
            (
                [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
                Err(HeaderError::Malformed(format!(
                    "a version 1 header longer than {V1_BYTES_MAX} bytes"
                ))),
            ),
            (b"PROXY TCP4 203.0.".to_vec(), Err(HeaderError::Closed)),
        ];
        for (sent, expected) in cases {
            let client = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut s = TcpStream::connect(address).await.expect("connect");
                s.write_all(&sent).await.expect("write");
                s.shutdown().await.expect("shutdown");
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            });
            let (mut stream, _) = listener.accept().await.expect("accept");
            let got = read_header(&mut stream, Duration::from_secs(5)).await;
            assert_eq!(got, expected);
            if got.is_ok() {
                // The bytes after the header are still there, untouched.
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).await.expect("read");
                assert_eq!(rest, b"A1 LOGIN");
            }
            drop(stream);
            client.await.expect("client");
        }
        // Silence is a timeout.
        let _client = TcpStream::connect(address).await.expect("connect");
        let (mut stream, _) = listener.accept().await.expect("accept");
        assert_eq!(
            read_header(&mut stream, Duration::from_millis(50)).await,
            Err(HeaderError::Timeout)
        );
    }
}
