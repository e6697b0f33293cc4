//! The client half of IMAP the workloads need: LOGIN, SELECT, FETCH, SEARCH,
//! LOGOUT. Commands are sent one at a time; responses are read until our
//! tagged completion, with literals read by length (see [`crate::imap_response`]).

use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::connection::Connection;
use crate::error::{ClientError, ClientErrorKind};
use crate::imap_response::{Response, ResponseLimits, Status, Untagged, classify, frame_response};

/// Most responses to one command: a FETCH of a whole 100,000-message
/// mailbox, ten times over, fits.
const RESPONSES_PER_COMMAND_MAX: usize = 1_000_000;

/// A password, kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(..)")
    }
}

/// An IMAP session past its greeting.
#[derive(Debug)]
pub struct ImapClient<S> {
    connection: Connection<S>,
    limits: ResponseLimits,
    /// Number in the next command's tag (`b1`, `b2`, ...).
    next_tag: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ImapClient<S> {
    /// Reads the greeting.
    ///
    /// # Errors
    /// `Refused` on a BYE greeting, `Protocol` on anything but `* OK` or
    /// `* PREAUTH`; the connection's errors.
    pub async fn start(connection: Connection<S>) -> Result<Self, ClientError> {
        let mut client = ImapClient {
            connection,
            limits: ResponseLimits::default(),
            next_tag: 1,
        };
        let length = client.read_response().await?;
        let greeting = classify(&client.connection.pending()[..length])?;
        let result = match greeting {
            Response::Untagged(Untagged::Condition(Status::Ok | Status::Preauth, _)) => Ok(()),
            Response::Untagged(Untagged::Condition(Status::Bye, text)) => {
                Err(ClientError::refused(format!("greeting: BYE {text}")))
            }
            other => Err(ClientError::new(
                ClientErrorKind::Protocol,
                format!("unexpected greeting {other:?}"),
            )),
        };
        client.connection.consume(length);
        result.map(|()| client)
    }

    /// # Errors
    /// `Refused` when the server says NO or BAD; `Protocol` for a name or
    /// password that cannot be sent as a quoted string.
    pub async fn login(&mut self, user: &str, password: &Secret) -> Result<(), ClientError> {
        let command = format!("LOGIN {} {}", quoted(user)?, quoted(password.expose())?);
        self.command(&command, |_| {}).await
    }

    /// Selects `mailbox` and returns its message count.
    ///
    /// # Errors
    /// `Refused` on NO/BAD; `Protocol` when no EXISTS came back.
    pub async fn select(&mut self, mailbox: &str) -> Result<u32, ClientError> {
        let mut exists = None;
        let command = format!("SELECT {}", quoted(mailbox)?);
        self.command(&command, |untagged| {
            if let Untagged::Exists(count) = untagged {
                exists = Some(*count);
            }
        })
        .await?;
        exists.ok_or_else(|| ClientError::new(ClientErrorKind::Protocol, "SELECT without EXISTS"))
    }

    /// `FETCH 1:count ENVELOPE`; returns how many FETCH responses carried an
    /// envelope.
    ///
    /// # Errors
    /// `Refused` on NO/BAD.
    pub async fn fetch_envelopes(&mut self, count: u32) -> Result<u32, ClientError> {
        let mut envelopes = 0;
        self.command(&format!("FETCH 1:{count} ENVELOPE"), |untagged| {
            if let Untagged::Fetch {
                has_envelope: true, ..
            } = untagged
            {
                envelopes += 1;
            }
        })
        .await?;
        Ok(envelopes)
    }

    /// `SEARCH BODY needle`; returns the number of matching messages.
    ///
    /// # Errors
    /// `Refused` on NO/BAD; `Protocol` when no SEARCH result came back.
    pub async fn search_body(&mut self, needle: &str) -> Result<u64, ClientError> {
        let mut matches = None;
        self.command(&format!("SEARCH BODY {}", quoted(needle)?), |untagged| {
            if let Untagged::Search { matches: count } = untagged {
                *matches.get_or_insert(0) += count;
            }
        })
        .await?;
        matches.ok_or_else(|| ClientError::new(ClientErrorKind::Protocol, "SEARCH without result"))
    }

    /// Sends LOGOUT; a server that closes without the tagged OK is fine.
    ///
    /// # Errors
    /// The connection's errors other than `Closed`.
    pub async fn logout(mut self) -> Result<(), ClientError> {
        match self.command("LOGOUT", |_| {}).await {
            Err(error) if error.kind == ClientErrorKind::Closed => Ok(()),
            other => other,
        }
    }

    /// Sends `command` under a fresh tag and reads responses until its tagged
    /// completion, passing each untagged response to `on_untagged`.
    async fn command(
        &mut self,
        command: &str,
        mut on_untagged: impl FnMut(&Untagged),
    ) -> Result<(), ClientError> {
        let tag = format!("b{}", self.next_tag);
        self.next_tag += 1;
        self.connection
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        let verb = command.split(' ').next().unwrap_or_default();
        let mut bye = None;
        for _ in 0..RESPONSES_PER_COMMAND_MAX {
            let length = match self.read_response().await {
                Err(error) if error.kind == ClientErrorKind::Closed && verb != "LOGOUT" => {
                    let said = bye
                        .map(|text| format!(" after BYE {text}"))
                        .unwrap_or_default();
                    return Err(ClientError::new(
                        ClientErrorKind::Closed,
                        format!("the server closed the connection during {verb}{said}"),
                    ));
                }
                other => other?,
            };
            let outcome = match classify(&self.connection.pending()[..length])? {
                Response::Tagged {
                    tag: their_tag,
                    status,
                    text,
                } if their_tag == tag => Some(match status {
                    Status::Ok => Ok(()),
                    _ => Err(ClientError::refused(format!("{verb}: {status:?} {text}"))),
                }),
                Response::Tagged { tag: their_tag, .. } => Some(Err(ClientError::new(
                    ClientErrorKind::Protocol,
                    format!("completion for tag {their_tag:?} while waiting for {tag:?}"),
                ))),
                Response::Continuation => Some(Err(ClientError::new(
                    ClientErrorKind::Protocol,
                    format!("continuation request during {verb}, which sends no literal"),
                ))),
                Response::Untagged(Untagged::Condition(Status::Bye, text)) => {
                    bye = Some(text);
                    None
                }
                Response::Untagged(untagged) => {
                    on_untagged(&untagged);
                    None
                }
            };
            self.connection.consume(length);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
        Err(ClientError::new(
            ClientErrorKind::Protocol,
            format!("more than {RESPONSES_PER_COMMAND_MAX} responses to {verb}"),
        ))
    }

    async fn read_response(&mut self) -> Result<usize, ClientError> {
        let limits = self.limits;
        self.connection
            .read_frame(|input| frame_response(input, &limits))
            .await
    }
}

/// `text` as an IMAP quoted string.
fn quoted(text: &str) -> Result<String, ClientError> {
    if text.bytes().any(|byte| matches!(byte, b'\r' | b'\n' | 0)) {
        return Err(ClientError::new(
            ClientErrorKind::Protocol,
            "CR, LF and NUL cannot be sent in a quoted string",
        ));
    }
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

    use super::*;

    /// Plays a server that answers each command line with the next canned
    /// answer (where `TAG` stands for the command's tag).
    async fn scripted(greeting: &'static str, answers: Vec<&'static [u8]>, server: DuplexStream) {
        let mut server = BufReader::new(server);
        server
            .get_mut()
            .write_all(greeting.as_bytes())
            .await
            .unwrap();
        for answer in answers {
            let mut line = String::new();
            if server.read_line(&mut line).await.unwrap() == 0 {
                return;
            }
            let tag = line.split(' ').next().unwrap().to_string();
            let answer = String::from_utf8(answer.to_vec())
                .unwrap()
                .replace("TAG", &tag);
            server.get_mut().write_all(answer.as_bytes()).await.unwrap();
        }
    }

    async fn client(answers: Vec<&'static [u8]>) -> ImapClient<DuplexStream> {
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(scripted(
            "* OK [CAPABILITY IMAP4rev2] hi\r\n",
            answers,
            server,
        ));
        ImapClient::start(Connection::new(client, Duration::from_secs(5), 1 << 20))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn login_select_fetch_search() {
        let mut imap = client(vec![
            b"TAG OK [CAPABILITY IMAP4rev2] logged in\r\n",
            b"* 3 EXISTS\r\n* FLAGS (\\Seen)\r\n* OK [UIDVALIDITY 1] x\r\nTAG OK [READ-WRITE] done\r\n",
            b"* 1 FETCH (ENVELOPE (NIL {13}\r\nTAG OK fake\r\n NIL NIL NIL NIL NIL NIL NIL NIL))\r\n\
              * 2 FETCH (ENVELOPE (NIL \"b\" NIL NIL NIL NIL NIL NIL NIL NIL))\r\n\
              * 3 FETCH (ENVELOPE (NIL \"c\" NIL NIL NIL NIL NIL NIL NIL NIL))\r\nTAG OK done\r\n",
            b"* SEARCH 1 3\r\nTAG OK done\r\n",
            b"* BYE bye\r\nTAG OK done\r\n",
        ])
        .await;
        imap.login("user0", &Secret::new("pa\"ss".into()))
            .await
            .unwrap();
        assert_eq!(imap.select("INBOX").await.unwrap(), 3);
        assert_eq!(imap.fetch_envelopes(3).await.unwrap(), 3);
        assert_eq!(imap.search_body("zyzzyva").await.unwrap(), 2);
        imap.logout().await.unwrap();
    }

    #[tokio::test]
    async fn refusals_and_surprises_are_errors() {
        let mut imap = client(vec![
            b"TAG NO [AUTHENTICATIONFAILED] no\r\n",
            b"+ go on\r\n",
        ])
        .await;
        let error = imap.login("a", &Secret::new("b".into())).await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Refused);
        assert!(error.message.contains("AUTHENTICATIONFAILED"));
        let error = imap.select("INBOX").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Protocol);
    }

    #[tokio::test]
    async fn closing_mid_command_is_reported_with_the_bye() {
        let mut imap = client(vec![b"* BYE shutting down\r\n"]).await;
        let error = imap.select("INBOX").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Closed);
        assert!(error.message.contains("shutting down"), "{error}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert!(quoted("a\r\nb").is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "Secret(..)");
    }
}
