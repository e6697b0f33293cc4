//! The client half of SMTP (RFC 5321) that a sending MTA speaks to an MX:
//! the greeting, EHLO once, then per message `MAIL FROM`, `RCPT TO` for each
//! recipient, `DATA`, the message and its one final reply. One command at a
//! time, without PIPELINING, so every refusal is seen at the command that
//! drew it.
//!
//! Replies are framed as in LMTP ([`crate::lmtp_reply`]); what differs is
//! that SMTP gives one reply after the message for all recipients, and that
//! a refused transaction is an ordinary outcome here: a flood benchmark
//! counts 451s and 550s rather than failing on them. So [`SmtpClient::send`]
//! returns what the server said, and [`SmtpClient::deliver`] is the strict
//! form that throughput runs use.

use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::Connection;
use crate::error::{ClientError, ClientErrorKind};
use crate::lmtp_client::read_reply;
use crate::lmtp_reply::{Reply, ReplyLimits};
use crate::message::data_payload;

/// The command a transaction ended at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `MAIL FROM` was refused.
    Mail,
    /// Every `RCPT TO` was refused (or one with 421).
    Rcpt,
    /// `DATA` was refused.
    Data,
    /// The message was sent; the reply is the final one after it.
    Final,
}

/// What the server said to one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub stage: Stage,
    /// The reply that decided: the final reply after the message, or the
    /// first refusal that ended the transaction early.
    pub reply: Reply,
    /// Recipients refused while others were accepted, with their replies.
    pub refused_recipients: Vec<(String, Reply)>,
}

impl Transaction {
    /// The message was taken for delivery (to every recipient, or to those
    /// not in `refused_recipients`).
    pub fn accepted(&self) -> bool {
        self.stage == Stage::Final && self.reply.is_positive_completion()
    }

    /// Every reply of the transaction that was not a success, the deciding
    /// one included: what a caller searches for words such as "run".
    pub fn refusals(&self) -> impl Iterator<Item = &Reply> {
        let deciding = (!self.reply.is_positive_completion()).then_some(&self.reply);
        deciding
            .into_iter()
            .chain(self.refused_recipients.iter().map(|(_, reply)| reply))
    }
}

impl std::fmt::Display for Transaction {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Final => "after DATA",
        };
        write!(formatter, "{stage}: {}", self.reply)?;
        for (recipient, reply) in &self.refused_recipients {
            write!(formatter, "; RCPT {recipient}: {reply}")?;
        }
        Ok(())
    }
}

/// A server that turned a new session away at its greeting or at EHLO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `greeting` or `EHLO`.
    pub command: &'static str,
    pub reply: Reply,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}: {}", self.command, self.reply)
    }
}

/// An SMTP session past its greeting and EHLO.
#[derive(Debug)]
pub struct SmtpClient<S> {
    connection: Connection<S>,
    limits: ReplyLimits,
    /// The server sent 421: it closes the connection, no command may follow.
    closing: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Reads the greeting and sends EHLO.
    ///
    /// # Errors
    /// `Refused` when the greeting is not 220 (a 421 or 554 is the server
    /// turning the client away) or EHLO is refused; the connection's errors.
    pub async fn start(connection: Connection<S>, client_name: &str) -> Result<Self, ClientError> {
        match Self::open(connection, client_name).await? {
            Ok(client) => Ok(client),
            Err(refusal) => Err(ClientError::refused(refusal.to_string())),
        }
    }

    /// [`SmtpClient::start`] that returns a refusal as a value: `Ok(Err)`
    /// holds the greeting or EHLO reply that turned the client away, for a
    /// caller that counts them.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn open(
        connection: Connection<S>,
        client_name: &str,
    ) -> Result<Result<Self, Refusal>, ClientError> {
        let mut client = SmtpClient {
            connection,
            limits: ReplyLimits::default(),
            closing: false,
        };
        let greeting = client.read_reply().await?;
        if greeting.code != 220 {
            return Ok(Err(Refusal {
                command: "greeting",
                reply: greeting,
            }));
        }
        let hello = client
            .command(format!("EHLO {client_name}\r\n").as_bytes())
            .await?;
        if !hello.is_positive_completion() {
            return Ok(Err(Refusal {
                command: "EHLO",
                reply: hello,
            }));
        }
        Ok(Ok(client))
    }

    /// Whether another transaction may be sent: false once the server said
    /// 421 (it closes the connection).
    pub fn is_usable(&self) -> bool {
        !self.closing
    }

    /// Sends one message from `sender` to `recipients` and returns what the
    /// server said. A refusal is an `Ok` outcome; after one, the session is
    /// reset (`RSET`) where a transaction was left open, so the next call
    /// starts clean, unless the server said 421.
    ///
    /// # Errors
    /// `Closed` when called after a 421; the connection's errors; `Refused`
    /// when RSET itself is refused (the session's state is then unknown).
    pub async fn send(
        &mut self,
        sender: &str,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<Transaction, ClientError> {
        if self.closing {
            return Err(ClientError::new(
                ClientErrorKind::Closed,
                "the server announced with 421 that it closes the connection",
            ));
        }
        let mail = self
            .command(format!("MAIL FROM:<{sender}>\r\n").as_bytes())
            .await?;
        if !mail.is_positive_completion() {
            // No transaction was opened: nothing to reset.
            return Ok(self.ended(Stage::Mail, mail, Vec::new()));
        }
        let mut refused = Vec::new();
        let mut accepted = 0usize;
        for recipient in recipients {
            let reply = self
                .command(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
                .await?;
            if reply.is_positive_completion() {
                accepted += 1;
            } else if reply.is_closing() {
                return Ok(self.ended(Stage::Rcpt, reply, refused));
            } else {
                refused.push(((*recipient).to_owned(), reply));
            }
        }
        if accepted == 0 {
            let (first, rest) = match refused.split_first() {
                Some((first, rest)) => (first.1.clone(), rest.to_vec()),
                None => {
                    return Err(ClientError::new(
                        ClientErrorKind::Protocol,
                        "a transaction needs at least one recipient",
                    ));
                }
            };
            self.reset().await?;
            return Ok(self.ended(Stage::Rcpt, first, rest));
        }
        let data = self.command(b"DATA\r\n").await?;
        if !data.is_positive_intermediate() {
            if !data.is_closing() {
                self.reset().await?;
            }
            return Ok(self.ended(Stage::Data, data, refused));
        }
        self.connection.write_all(&data_payload(message)).await?;
        let last = self.read_reply().await?;
        Ok(self.ended(Stage::Final, last, refused))
    }

    /// [`SmtpClient::send`] that insists on success: the final reply.
    ///
    /// # Errors
    /// `Refused` when the message was refused, or any recipient was (a
    /// benchmark that silently drops deliveries would report a false rate);
    /// what `send` returns.
    pub async fn deliver(
        &mut self,
        sender: &str,
        recipients: &[&str],
        message: &[u8],
    ) -> Result<Reply, ClientError> {
        let transaction = self.send(sender, recipients, message).await?;
        if transaction.accepted() && transaction.refused_recipients.is_empty() {
            Ok(transaction.reply)
        } else {
            Err(ClientError::refused(transaction.to_string()))
        }
    }

    /// Sends QUIT and waits for its reply; a server that closes first, or
    /// already said 421, is fine.
    ///
    /// # Errors
    /// The connection's errors other than `Closed`.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        if self.closing {
            return Ok(());
        }
        let result = async {
            self.connection.write_all(b"QUIT\r\n").await?;
            self.read_reply().await
        }
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) if error.kind == ClientErrorKind::Closed => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn ended(
        &mut self,
        stage: Stage,
        reply: Reply,
        refused_recipients: Vec<(String, Reply)>,
    ) -> Transaction {
        self.closing |= reply.is_closing();
        Transaction {
            stage,
            reply,
            refused_recipients,
        }
    }

    async fn reset(&mut self) -> Result<(), ClientError> {
        let reply = self.command(b"RSET\r\n").await?;
        if reply.is_closing() {
            self.closing = true;
            return Ok(());
        }
        if !reply.is_positive_completion() {
            return Err(ClientError::refused(format!("RSET: {reply}")));
        }
        Ok(())
    }

    async fn command(&mut self, line: &[u8]) -> Result<Reply, ClientError> {
        self.connection.write_all(line).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        read_reply(&mut self.connection, &self.limits).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    use super::*;

    /// Plays a server that answers one command at a time: for each line the
    /// client writes (and each message, up to its `.` line), the next reply
    /// of `replies`, in order. Returns every line the client wrote.
    async fn server(replies: &'static [&'static str], stream: DuplexStream) -> Vec<String> {
        let (read, mut write) = tokio::io::split(stream);
        let mut read = BufReader::new(read);
        let mut replies = replies.iter();
        let mut written = Vec::new();
        let mut in_data = false;
        write
            .write_all(replies.next().unwrap().as_bytes())
            .await
            .unwrap();
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).await.unwrap() == 0 {
                return written;
            }
            written.push(line.clone());
            if in_data && line != ".\r\n" {
                continue;
            }
            let Some(reply) = replies.next() else {
                return written;
            };
            in_data = reply.starts_with("354");
            write.write_all(reply.as_bytes()).await.unwrap();
        }
    }

    fn pair(
        replies: &'static [&'static str],
    ) -> (
        Connection<DuplexStream>,
        tokio::task::JoinHandle<Vec<String>>,
    ) {
        let (client, server_side) = tokio::io::duplex(1 << 16);
        (
            Connection::new(client, Duration::from_secs(5), 1 << 16),
            tokio::spawn(server(replies, server_side)),
        )
    }

    #[tokio::test]
    async fn one_command_at_a_time_and_one_reply_after_data() {
        let (connection, server) = pair(&[
            "220 mx.bench.test ESMTP\r\n",
            "250-mx.bench.test\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
            "250 2.1.0 ok\r\n",
            "250 2.1.5 ok\r\n",
            "250 2.1.5 ok\r\n",
            "354 end with .\r\n",
            "250 2.0.0 queued\r\n",
            "221 2.0.0 bye\r\n",
        ]);
        let mut client = SmtpClient::start(connection, "legit1.test").await.unwrap();
        let reply = client
            .deliver(
                "s@legit1.test",
                &["a@bench.test", "b@bench.test"],
                b"Subject: t\r\n\r\n.x\r\n",
            )
            .await
            .unwrap();
        assert_eq!(reply.lines, ["2.0.0 queued"]);
        client.quit().await.unwrap();
        assert_eq!(
            server.await.unwrap().concat(),
            "EHLO legit1.test\r\nMAIL FROM:<s@legit1.test>\r\nRCPT TO:<a@bench.test>\r\n\
             RCPT TO:<b@bench.test>\r\nDATA\r\nSubject: t\r\n\r\n..x\r\n.\r\nQUIT\r\n"
        );
    }

    #[tokio::test]
    async fn a_run_tempfail_after_data_is_an_outcome_and_the_session_goes_on() {
        let (connection, server) = pair(&[
            "220 mx\r\n",
            "250 mx\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "451 4.7.1 message looks like part of a bulk mail run (run 7); try again later\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 2.0.0 delivered\r\n",
        ]);
        let mut client = SmtpClient::start(connection, "bot").await.unwrap();
        let transaction = client
            .send("x@spam.test", &["a@b"], b"buy\r\n")
            .await
            .unwrap();
        assert_eq!(transaction.stage, Stage::Final);
        assert!(!transaction.accepted());
        assert!(transaction.reply.is_transient_negative());
        assert!(transaction.refusals().any(|reply| reply.mentions("run")));
        assert!(client.is_usable());
        // No RSET after a final reply: the transaction is over.
        let transaction = client
            .send("x@spam.test", &["a@b"], b"buy\r\n")
            .await
            .unwrap();
        assert!(transaction.accepted());
        assert_eq!(transaction.refusals().count(), 0);
        drop(client);
        let written = server.await.unwrap();
        assert!(
            !written.iter().any(|line| line == "RSET\r\n"),
            "{written:?}"
        );
    }

    #[tokio::test]
    async fn refusals_before_data_reset_the_transaction() {
        let (connection, server) = pair(&[
            "220 mx\r\n",
            "250 mx\r\n",
            // MAIL refused: no transaction, no RSET.
            "451 4.7.1 too many messages\r\n",
            // Every RCPT refused: RSET.
            "250 ok\r\n",
            "550 5.1.1 no such user\r\n",
            "250 2.0.0 reset\r\n",
            // One of two refused: DATA goes on, the refusal is reported.
            "250 ok\r\n",
            "550 5.1.1 no such user\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 2.0.0 ok\r\n",
        ]);
        let mut client = SmtpClient::start(connection, "c").await.unwrap();
        let transaction = client.send("s@x", &["a@b"], b"m\r\n").await.unwrap();
        assert_eq!(transaction.stage, Stage::Mail);
        assert_eq!(transaction.reply.code, 451);
        let transaction = client.send("s@x", &["ghost@b"], b"m\r\n").await.unwrap();
        assert_eq!(
            (transaction.stage, transaction.reply.code),
            (Stage::Rcpt, 550)
        );
        let transaction = client
            .send("s@x", &["ghost@b", "a@b"], b"m\r\n")
            .await
            .unwrap();
        assert!(transaction.accepted());
        assert_eq!(transaction.refused_recipients.len(), 1);
        assert!(
            transaction.to_string().contains("RCPT ghost@b: 550"),
            "{transaction}"
        );
        drop(client);
        let written = server.await.unwrap();
        assert_eq!(written.iter().filter(|line| *line == "RSET\r\n").count(), 1);
    }

    #[tokio::test]
    async fn a_strict_delivery_fails_on_any_refusal() {
        let (connection, _server) = pair(&[
            "220 mx\r\n",
            "250 mx\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "452 4.3.1 insufficient storage\r\n",
        ]);
        let mut client = SmtpClient::start(connection, "c").await.unwrap();
        let error = client.deliver("s@x", &["a@b"], b"m\r\n").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Refused);
        assert!(error.message.contains("after DATA: 452"), "{error}");
    }

    #[tokio::test]
    async fn after_421_the_client_sends_nothing_more() {
        let (connection, server) = pair(&[
            "220 mx\r\n",
            "250 mx\r\n",
            "421 4.3.2 too many connections\r\n",
        ]);
        let mut client = SmtpClient::start(connection, "c").await.unwrap();
        let transaction = client.send("s@x", &["a@b"], b"m\r\n").await.unwrap();
        assert!(transaction.reply.is_closing());
        assert!(!client.is_usable());
        let error = client.send("s@x", &["a@b"], b"m\r\n").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Closed);
        client.quit().await.unwrap();
        let written = server.await.unwrap();
        assert_eq!(written, ["EHLO c\r\n", "MAIL FROM:<s@x>\r\n"]);
    }

    #[tokio::test]
    async fn greetings_other_than_220_are_refusals() {
        for greeting in ["554 5.7.0 early talker\r\n", "421 4.3.2 busy\r\n"] {
            let (client, mut server_side) = tokio::io::duplex(1 << 12);
            server_side.write_all(greeting.as_bytes()).await.unwrap();
            let connection = Connection::new(client, Duration::from_secs(5), 1 << 12);
            let error = SmtpClient::start(connection, "c").await.unwrap_err();
            assert_eq!(error.kind, ClientErrorKind::Refused);
            assert!(error.message.starts_with("greeting: "), "{error}");
        }
    }
}
