//! Turning a connection away before any session starts, for a connection over
//! a cap: a `* BYE [UNAVAILABLE]` greeting that says why (RFC 9051 7.1.5: BYE
//! as the greeting means the server will not accept this client now), then a
//! close that lets the client read it. The caller decides when; this decides
//! the bytes.

use crate::conn::Conn;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long writing the BYE and closing our side may take.
const WRITE_WAIT: Duration = Duration::from_secs(5);
/// How long the close waits for the client to hang up. Closing a socket with
/// unread input makes the kernel send a reset, which can destroy the BYE
/// before the client reads it; so what the client sends meanwhile is read
/// and dropped.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and dropped while lingering.
const LINGER_BYTES_MAX: usize = 64 * 1024;

/// Sends `* BYE [UNAVAILABLE] text` and closes the connection. Never fails:
/// a client that is already gone needs no answer.
pub async fn refuse(mut conn: Conn, text: &str) {
    let line = format!("* BYE [UNAVAILABLE] {}\r\n", one_line(text));
    let said = tokio::time::timeout(WRITE_WAIT, async {
        conn.write_all(line.as_bytes()).await?;
        conn.flush().await?;
        conn.shutdown().await
    })
    .await;
    if !matches!(said, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut chunk = [0u8; 4096];
        let mut dropped = 0usize;
        while dropped < LINGER_BYTES_MAX {
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// `text` without CR or LF, which would end the response line early.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn the_client_reads_the_bye_and_then_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            let mut all = Vec::new();
            stream.read_to_end(&mut all).await.expect("read");
            all
        });
        let (stream, _) = listener.accept().await.expect("accept");
        refuse(Conn::Plain(stream), "too many\r\nconnections").await;
        let all = client.await.expect("client task");
        assert_eq!(all, b"* BYE [UNAVAILABLE] too many  connections\r\n");
    }
}
