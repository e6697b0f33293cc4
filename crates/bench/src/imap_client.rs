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
    /// The IDLE command's tag while idling.
    idle_tag: Option<String>,
}

/// How reading a command's responses ended.
enum Ending {
    /// Its tagged OK, with the text after `OK`.
    Tagged(String),
    /// A continuation request (`+ ...`).
    Continuation,
}

/// The UID in an `[APPENDUID uidvalidity uid]` response code.
fn appenduid(text: &str) -> Option<u32> {
    let start = text.find('[')?;
    let code = &text[start + 1..start + text[start..].find(']')?];
    let mut words = code.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("APPENDUID") {
        return None;
    }
    let _uid_validity: u32 = words.next()?.parse().ok()?;
    words.next()?.parse().ok()
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
            idle_tag: None,
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

    /// `CAPABILITY`; returns the capabilities, upper-cased.
    ///
    /// # Errors
    /// `Refused` on NO/BAD.
    pub async fn capabilities(&mut self) -> Result<Vec<String>, ClientError> {
        let mut capabilities = Vec::new();
        self.command("CAPABILITY", |untagged| {
            if let Untagged::Capability(text) = untagged {
                capabilities.extend(text.split_ascii_whitespace().map(str::to_ascii_uppercase));
            }
        })
        .await?;
        Ok(capabilities)
    }

    /// `SORT criteria` or `THREAD criteria` (sent as given, after the
    /// verb); returns how many message numbers the result holds.
    ///
    /// # Errors
    /// `Refused` on NO/BAD; `Protocol` when no SORT or THREAD result came
    /// back.
    pub async fn sort_or_thread(&mut self, command: &str) -> Result<u64, ClientError> {
        let mut messages = None;
        self.command(command, |untagged| match untagged {
            Untagged::Sort { messages: count } | Untagged::Thread { messages: count } => {
                *messages.get_or_insert(0) += count;
            }
            _ => {}
        })
        .await?;
        messages
            .ok_or_else(|| ClientError::new(ClientErrorKind::Protocol, "no SORT or THREAD result"))
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
        on_untagged: impl FnMut(&Untagged),
    ) -> Result<(), ClientError> {
        self.command_text(command, on_untagged).await.map(|_| ())
    }

    /// [`ImapClient::command`], returning the text of the tagged OK (its
    /// response code included).
    async fn command_text(
        &mut self,
        command: &str,
        on_untagged: impl FnMut(&Untagged),
    ) -> Result<String, ClientError> {
        let tag = self.send(command).await?;
        let verb = command.split(' ').next().unwrap_or_default().to_string();
        match self.read_until(&tag, &verb, false, on_untagged).await? {
            Ending::Tagged(text) => Ok(text),
            Ending::Continuation => Err(ClientError::new(
                ClientErrorKind::Protocol,
                format!("continuation request during {verb}"),
            )),
        }
    }

    /// Sends `command` (no CRLF) under a fresh tag; returns the tag.
    async fn send(&mut self, command: &str) -> Result<String, ClientError> {
        let tag = format!("b{}", self.next_tag);
        self.next_tag += 1;
        self.connection
            .write_all(format!("{tag} {command}\r\n").as_bytes())
            .await?;
        Ok(tag)
    }

    /// Reads responses until `tag`'s completion (or, with
    /// `continuation_ok`, a continuation request), passing each untagged
    /// response to `on_untagged`.
    async fn read_until(
        &mut self,
        tag: &str,
        verb: &str,
        continuation_ok: bool,
        mut on_untagged: impl FnMut(&Untagged),
    ) -> Result<Ending, ClientError> {
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
                    Status::Ok => Ok(Ending::Tagged(text)),
                    _ => Err(ClientError::refused(format!("{verb}: {status:?} {text}"))),
                }),
                Response::Tagged { tag: their_tag, .. } => Some(Err(ClientError::new(
                    ClientErrorKind::Protocol,
                    format!("completion for tag {their_tag:?} while waiting for {tag:?}"),
                ))),
                Response::Continuation if continuation_ok => Some(Ok(Ending::Continuation)),
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

    /// `FETCH set items`; returns how many FETCH responses came back and
    /// how many of them carried an envelope.
    ///
    /// # Errors
    /// `Refused` on NO/BAD.
    pub async fn fetch(&mut self, set: &str, items: &str) -> Result<(u32, u32), ClientError> {
        let (mut responses, mut envelopes) = (0, 0);
        self.command(&format!("FETCH {set} {items}"), |untagged| {
            if let Untagged::Fetch { has_envelope, .. } = untagged {
                responses += 1;
                if *has_envelope {
                    envelopes += 1;
                }
            }
        })
        .await?;
        Ok((responses, envelopes))
    }

    /// `SEARCH criteria` (sent as given); returns the number of matches.
    ///
    /// # Errors
    /// `Refused` on NO/BAD; `Protocol` when no SEARCH result came back.
    pub async fn search(&mut self, criteria: &str) -> Result<u64, ClientError> {
        let mut matches = None;
        self.command(&format!("SEARCH {criteria}"), |untagged| {
            if let Untagged::Search { matches: count } = untagged {
                *matches.get_or_insert(0) += count;
            }
        })
        .await?;
        matches.ok_or_else(|| ClientError::new(ClientErrorKind::Protocol, "SEARCH without result"))
    }

    /// Any command without a literal, sent as given (`STORE 1 +FLAGS
    /// (\Seen)`, `UID EXPUNGE 7`), untagged responses ignored.
    ///
    /// # Errors
    /// `Refused` on NO/BAD.
    pub async fn simple(&mut self, command: &str) -> Result<(), ClientError> {
        self.command(command, |_| {}).await
    }

    /// `APPEND mailbox {n}` with a synchronizing literal; returns the UID of
    /// the new message from the `APPENDUID` response code (UIDPLUS), when
    /// the server gave one.
    ///
    /// # Errors
    /// `Refused` when the server refuses the literal or the APPEND.
    pub async fn append(
        &mut self,
        mailbox: &str,
        message: &[u8],
    ) -> Result<Option<u32>, ClientError> {
        let tag = self
            .send(&format!(
                "APPEND {} {{{}}}",
                quoted(mailbox)?,
                message.len()
            ))
            .await?;
        match self.read_until(&tag, "APPEND", true, |_| {}).await? {
            Ending::Continuation => {}
            Ending::Tagged(text) => {
                return Err(ClientError::new(
                    ClientErrorKind::Protocol,
                    format!("APPEND completed before its literal was sent: {text}"),
                ));
            }
        }
        let mut bytes = Vec::with_capacity(message.len() + 2);
        bytes.extend_from_slice(message);
        bytes.extend_from_slice(b"\r\n");
        self.connection.write_all(&bytes).await?;
        match self.read_until(&tag, "APPEND", false, |_| {}).await? {
            Ending::Tagged(text) => Ok(appenduid(&text)),
            Ending::Continuation => Err(ClientError::new(
                ClientErrorKind::Protocol,
                "a second continuation request during APPEND",
            )),
        }
    }

    /// Sends IDLE and waits for the server's continuation request.
    ///
    /// # Errors
    /// `Refused` when the server says NO or BAD instead.
    pub async fn idle(&mut self) -> Result<(), ClientError> {
        let tag = self.send("IDLE").await?;
        match self.read_until(&tag, "IDLE", true, |_| {}).await? {
            Ending::Continuation => {
                self.idle_tag = Some(tag);
                Ok(())
            }
            Ending::Tagged(text) => Err(ClientError::new(
                ClientErrorKind::Protocol,
                format!("IDLE completed without a continuation request: {text}"),
            )),
        }
    }

    /// While idling: waits for the next response and returns the count of
    /// an `* N EXISTS`, `None` for any other untagged response.
    ///
    /// # Errors
    /// `Closed` when the server ends the connection (with its BYE's text),
    /// `Protocol` for a tagged response or one outside IDLE; the
    /// connection's errors (a read timeout among them).
    pub async fn idle_next(&mut self) -> Result<Option<u32>, ClientError> {
        if self.idle_tag.is_none() {
            return Err(ClientError::new(ClientErrorKind::Protocol, "not idling"));
        }
        let length = self.read_response().await?;
        let event = match classify(&self.connection.pending()[..length])? {
            Response::Untagged(Untagged::Exists(count)) => Ok(Some(count)),
            Response::Untagged(Untagged::Condition(Status::Bye, text)) => Err(ClientError::new(
                ClientErrorKind::Closed,
                format!("BYE during IDLE: {text}"),
            )),
            Response::Untagged(_) => Ok(None),
            other => Err(ClientError::new(
                ClientErrorKind::Protocol,
                format!("unexpected {other:?} during IDLE"),
            )),
        };
        self.connection.consume(length);
        event
    }

    /// Ends IDLE with DONE and reads the IDLE command's completion.
    ///
    /// # Errors
    /// `Refused` on NO/BAD; `Protocol` when not idling.
    pub async fn idle_done(&mut self) -> Result<(), ClientError> {
        let Some(tag) = self.idle_tag.take() else {
            return Err(ClientError::new(ClientErrorKind::Protocol, "not idling"));
        };
        self.connection.write_all(b"DONE\r\n").await?;
        self.read_until(&tag, "IDLE", false, |_| {})
            .await
            .map(|_| ())
    }

    /// The connection underneath, for its buffer and timeout settings.
    pub fn connection_mut(&mut self) -> &mut Connection<S> {
        &mut self.connection
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

    #[tokio::test]
    async fn append_with_a_literal_and_idle() {
        // Tags are b1, b2, ...; the message is one line, so the scripted
        // server reads it as one.
        let mut imap = client(vec![
            b"+ Ready for literal\r\n",
            b"* 4 EXISTS\r\nb1 OK [APPENDUID 7 42] APPEND done\r\n",
            b"+ idling\r\n* 5 EXISTS\r\n* 3 EXPUNGE\r\n",
            b"b2 OK IDLE terminated\r\n",
            b"b3 OK [APPENDUID 7 43] done\r\n",
        ])
        .await;
        assert_eq!(imap.append("INBOX", b"hello").await.unwrap(), Some(42));
        imap.idle().await.unwrap();
        assert_eq!(imap.idle_next().await.unwrap(), Some(5));
        assert_eq!(imap.idle_next().await.unwrap(), None);
        imap.idle_done().await.unwrap();
        assert!(imap.idle_next().await.is_err());
        // A server that completes APPEND without asking for the literal.
        let error = imap.append("INBOX", b"x").await.unwrap_err();
        assert_eq!(error.kind, ClientErrorKind::Protocol);
    }

    #[test]
    fn appenduid_codes() {
        assert_eq!(
            appenduid("[APPENDUID 38505 3955] APPEND completed"),
            Some(3955)
        );
        assert_eq!(appenduid("[appenduid 1 2]"), Some(2));
        assert_eq!(appenduid("APPEND completed"), None);
        assert_eq!(appenduid("[READ-WRITE] x"), None);
        assert_eq!(appenduid("[APPENDUID 1 2:4] multi"), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("a\"b\\c").unwrap(), r#""a\"b\\c""#);
        assert!(quoted("a\r\nb").is_err());
        assert_eq!(format!("{:?}", Secret::new("hunter2".into())), "Secret(..)");
    }
}
