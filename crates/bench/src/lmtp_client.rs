//! The client half of LMTP (RFC 2033) that a delivering MTA would speak:
//! LHLO once, then per message one pipelined write of MAIL, RCPT… and DATA,
//! their replies, the message, and one final reply per accepted recipient.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::Connection;
use crate::error::{ClientError, ClientErrorKind};
use crate::lmtp_reply::{Reply, ReplyLimits, parse_reply};
use crate::message::data_payload;

/// An LMTP session past its greeting and LHLO.
#[derive(Debug)]
pub struct LmtpClient<S> {
    connection: Connection<S>,
    limits: ReplyLimits,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LmtpClient<S> {
    /// Reads the greeting and sends LHLO.
    ///
    /// # Errors
    /// `Refused` when the greeting is not 220, LHLO is refused, or the server
    /// does not offer PIPELINING (RFC 2033 §4.2 requires it, and the
    /// benchmark relies on it); the connection's errors.
    pub async fn start(connection: Connection<S>, client_name: &str) -> Result<Self, ClientError> {
        let mut client = LmtpClient {
            connection,
            limits: ReplyLimits::default(),
        };
        let greeting = client.read_reply().await?;
        if greeting.code != 220 {
            return Err(ClientError::refused(format!("greeting: {greeting}")));
        }
        client
            .connection
            .write_all(format!("LHLO {client_name}\r\n").as_bytes())
            .await?;
        let hello = client.read_reply().await?;
        if !hello.is_positive_completion() {
            return Err(ClientError::refused(format!("LHLO: {hello}")));
        }
        if !hello.has_keyword("PIPELINING") {
            return Err(ClientError::refused(format!(
                "the server does not offer PIPELINING: {hello}"
            )));
        }
        Ok(client)
    }

    /// Delivers `message` from `sender` to each of `recipients` and returns
    /// the final reply for each accepted recipient, in order.
    ///
    /// # Errors
    /// `Refused` when MAIL, any RCPT, DATA or any final reply is not a
    /// success (a benchmark that silently drops deliveries would report a
    /// false rate); the connection's errors.
    pub async fn deliver(
        &mut self,
        sender: &str,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<Vec<Reply>, ClientError> {
        let mut envelope = format!("MAIL FROM:<{sender}>\r\n");
        for recipient in recipients {
            envelope.push_str(&format!("RCPT TO:<{recipient}>\r\n"));
        }
        envelope.push_str("DATA\r\n");
        self.connection.write_all(envelope.as_bytes()).await?;

        // Read every reply of the group before judging it, so that the
        // session stays in step even when one command was refused.
        let mail = self.read_reply().await?;
        let mut refused = Vec::new();
        if !mail.is_positive_completion() {
            refused.push(format!("MAIL: {mail}"));
        }
        let mut accepted = 0;
        for recipient in recipients {
            let reply = self.read_reply().await?;
            if reply.is_positive_completion() {
                accepted += 1;
            } else {
                refused.push(format!("RCPT {recipient}: {reply}"));
            }
        }
        let data = self.read_reply().await?;
        if !data.is_positive_intermediate() {
            refused.push(format!("DATA: {data}"));
            return Err(ClientError::refused(refused.join("; ")));
        }
        // DATA was accepted, so at least one recipient was: send the message
        // and collect a reply for each accepted one, even if some were
        // refused, before reporting the refusals.
        self.connection.write_all(&data_payload(message)).await?;
        let mut finals = Vec::with_capacity(accepted);
        for _ in 0..accepted {
            let reply = self.read_reply().await?;
            if !reply.is_positive_completion() {
                refused.push(format!("after DATA: {reply}"));
            }
            finals.push(reply);
        }
        if refused.is_empty() {
            Ok(finals)
        } else {
            Err(ClientError::refused(refused.join("; ")))
        }
    }

    /// Sends QUIT and waits for its reply; a server that closes first is fine.
    ///
    /// # Errors
    /// The connection's errors other than `Closed`.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.connection.write_all(b"QUIT\r\n").await?;
        match self.read_reply().await {
            Ok(_) => Ok(()),
            Err(error) if error.kind == ClientErrorKind::Closed => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        read_reply(&mut self.connection, &self.limits).await
    }
}

/// Reads one whole reply off `connection` and consumes it. Shared with the
/// SMTP client: both protocols frame replies the same way (RFC 5321 §4.2).
///
/// # Errors
/// The connection's errors; `Protocol` for a malformed or oversized reply.
pub(crate) async fn read_reply<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    limits: &ReplyLimits,
) -> Result<Reply, ClientError> {
    let mut reply = None;
    let length = connection
        .read_frame(|input| {
            Ok(parse_reply(input, limits)?.map(|(parsed, length)| {
                reply = Some(parsed);
                length
            }))
        })
        .await?;
    connection.consume(length);
    reply.ok_or_else(|| ClientError::new(ClientErrorKind::Protocol, "reply vanished"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// Plays a server: sends `script` (all replies at once, as a pipelining
    /// server may) and returns everything the client wrote until it closed.
    async fn scripted(script: &'static [u8], mut server: DuplexStream) -> Vec<u8> {
        server.write_all(script).await.unwrap();
        let mut written = Vec::new();
        server.read_to_end(&mut written).await.unwrap();
        written
    }

    fn client_side() -> (Connection<DuplexStream>, DuplexStream) {
        let (client, server) = tokio::io::duplex(1 << 16);
        (
            Connection::new(client, Duration::from_secs(5), 1 << 16),
            server,
        )
    }

    #[tokio::test]
    async fn pipelined_delivery_to_two_recipients() {
        let (connection, server) = client_side();
        let server = tokio::spawn(scripted(
            b"220 mx ready\r\n250-mx\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES\r\n\
              250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n354 go\r\n\
              250 2.0.0 <a@x> delivered\r\n250 2.0.0 <b@x> delivered\r\n221 bye\r\n",
            server,
        ));
        let mut client = LmtpClient::start(connection, "bench").await.unwrap();
        let finals = client
            .deliver("s@x", &["a@x", "b@x"], b"Subject: t\r\n\r\n.dot\r\n")
            .await
            .unwrap();
        assert_eq!(finals.len(), 2);
        client.quit().await.unwrap();
        let written = server.await.unwrap();
        assert_eq!(
            String::from_utf8(written).unwrap(),
            "LHLO bench\r\nMAIL FROM:<s@x>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n\
             Subject: t\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
        );
    }

    #[tokio::test]
    async fn one_refused_recipient_fails_the_delivery_but_keeps_the_session_in_step() {
        let (connection, server) = client_side();
        let _server = tokio::spawn(scripted(
            b"220 mx\r\n250 PIPELINING\r\n\
              250 ok\r\n550 5.1.1 unknown\r\n250 ok\r\n354 go\r\n250 delivered\r\n\
              250 ok\r\n250 ok\r\n354 go\r\n250 delivered\r\n",
            server,
        ));
        let mut client = LmtpClient::start(connection, "bench").await.unwrap();
        let error = client
            .deliver("s@x", &["ghost@x", "a@x"], b"x\r\n")
            .await
            .unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Refused);
        assert!(error.message.contains("ghost@x"), "{error}");
        // The next transaction reads its own replies, not leftovers.
        let finals = client.deliver("s@x", &["a@x"], b"x\r\n").await.unwrap();
        assert_eq!(finals[0].lines, ["delivered"]);
    }

    #[tokio::test]
    async fn no_pipelining_and_temporary_failures_are_refusals() {
        let (connection, server) = client_side();
        let _server = tokio::spawn(scripted(b"220 mx\r\n250 mx\r\n", server));
        let error = LmtpClient::start(connection, "bench").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Refused);

        let (connection, server) = client_side();
        let _server = tokio::spawn(scripted(
            b"220 mx\r\n250 PIPELINING\r\n250 ok\r\n250 ok\r\n354 go\r\n451 4.3.0 try later\r\n",
            server,
        ));
        let mut client = LmtpClient::start(connection, "bench").await.unwrap();
        let error = client.deliver("s@x", &["a@x"], b"x\r\n").await.unwrap_err();
        assert!(error.message.contains("451"), "{error}");
    }
}
