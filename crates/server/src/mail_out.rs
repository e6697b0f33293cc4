//! A minimal SMTP client (RFC 5321) that hands one message to the configured
//! relay (`[mail_out] relay`), as any application sends mail.
//!
//! Why not `lettre`: it would add some thirty crates to build on a 2-core
//! machine, for one conversation of five commands to a relay that is usually
//! the local MTA. Why not smtp-proto's client side: a reply is three digits
//! and a continuation mark, which takes fewer lines to read here than to
//! adapt a receiver built for the server side. No TLS and no AUTH: point
//! `relay` at a local MTA (or one on a trusted network), which does both
//! onwards.
//!
//! Bounds: the whole conversation has a deadline, a reply line is at most
//! [`REPLY_LINE_BYTES_MAX`] and a reply at most [`REPLY_LINES_MAX`] lines.

use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest reply line read (RFC 5321 allows 512).
pub const REPLY_LINE_BYTES_MAX: usize = 2048;
/// Most lines of one multi-line reply (EHLO lists extensions).
pub const REPLY_LINES_MAX: usize = 100;

/// Why a message was not handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth trying again later: no connection, a timeout, a 4xx reply.
    Temporary(String),
    /// The relay refused for good (5xx): trying again would change nothing.
    Permanent(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Temporary(s) => write!(f, "temporary: {s}"),
            SendError::Permanent(s) => write!(f, "permanent: {s}"),
        }
    }
}

/// One message to one recipient, with its envelope.
pub struct Envelope<'a> {
    /// The name this server gives in EHLO.
    pub helo: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    /// The whole message, CRLF line ends.
    pub message: &'a str,
}

/// Hands `envelope` to `relay` within `deadline`. `Ok` means the relay
/// answered 250 to the end of DATA: the message is its responsibility.
pub async fn send(
    relay: &str,
    envelope: &Envelope<'_>,
    deadline: Duration,
) -> Result<(), SendError> {
    match tokio::time::timeout(deadline, conversation(relay, envelope)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Temporary(format!(
            "the relay {relay} did not finish within {} s",
            deadline.as_secs()
        ))),
    }
}

async fn conversation(relay: &str, envelope: &Envelope<'_>) -> Result<(), SendError> {
    let stream = TcpStream::connect(relay)
        .await
        .map_err(|e| SendError::Temporary(format!("cannot connect to the relay {relay}: {e}")))?;
    let mut stream = BufReader::new(stream);
    expect(&mut stream, "greeting", 220).await?;
    command(&mut stream, &format!("EHLO {}\r\n", envelope.helo), 250).await?;
    command(
        &mut stream,
        &format!("MAIL FROM:<{}>\r\n", envelope.from),
        250,
    )
    .await?;
    command(&mut stream, &format!("RCPT TO:<{}>\r\n", envelope.to), 250).await?;
    command(&mut stream, "DATA\r\n", 354).await?;
    command(&mut stream, &dot_stuff(envelope.message), 250).await?;
    // The message is the relay's now; a failed QUIT changes nothing.
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    Ok(())
}

/// The DATA payload: lines starting with `.` get another, CRLF line ends,
/// and the end marker.
pub fn dot_stuff(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    for line in message.split("\r\n") {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // `split` gave an empty last piece for a message ending in CRLF.
    if message.ends_with("\r\n") {
        out.truncate(out.len() - 2);
    }
    out.push_str(".\r\n");
    out
}

async fn command(
    stream: &mut BufReader<TcpStream>,
    line: &str,
    wanted: u16,
) -> Result<(), SendError> {
    stream
        .get_mut()
        .write_all(line.as_bytes())
        .await
        .map_err(|e| SendError::Temporary(format!("the relay connection broke: {e}")))?;
    let what = line.split([' ', '\r']).next().unwrap_or("");
    expect(stream, what, wanted).await
}

/// Reads one reply; a code other than `wanted` (251 counts as 250) is an error.
async fn expect(
    stream: &mut BufReader<TcpStream>,
    after: &str,
    wanted: u16,
) -> Result<(), SendError> {
    let mut text = String::new();
    for _ in 0..REPLY_LINES_MAX {
        let mut line = Vec::new();
        let read = (&mut *stream)
            .take(REPLY_LINE_BYTES_MAX as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| SendError::Temporary(format!("the relay connection broke: {e}")))?;
        if read == 0 {
            return Err(SendError::Temporary(format!(
                "the relay closed the connection after {after}"
            )));
        }
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(SendError::Temporary(format!(
                "the relay answered {after} with something that is not SMTP"
            )));
        };
        text.push_str(line.get(4..).unwrap_or(""));
        text.push(' ');
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return match code {
            c if c == wanted || (wanted == 250 && c == 251) => Ok(()),
            500..=599 => Err(SendError::Permanent(format!(
                "the relay refused {after}: {code} {}",
                text.trim()
            ))),
            _ => Err(SendError::Temporary(format!(
                "the relay answered {after}: {code} {}",
                text.trim()
            ))),
        };
    }
    Err(SendError::Temporary(format!(
        "the relay's answer to {after} has over {REPLY_LINES_MAX} lines"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_at_line_starts_are_doubled_and_the_end_marked() {
        assert_eq!(dot_stuff("a\r\n.b\r\n..\r\n"), "a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(dot_stuff("no final line end"), "no final line end\r\n.\r\n");
    }

    /// A relay in a few lines: answers from a script, records what it got.
    async fn relay(replies: &'static [&'static str]) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut got = String::new();
            let mut replies = replies.iter();
            stream
                .get_mut()
                .write_all(replies.next().unwrap().as_bytes())
                .await
                .unwrap();
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                got.push_str(&line);
                if in_data && line != ".\r\n" {
                    continue;
                }
                in_data = line == "DATA\r\n";
                match replies.next() {
                    Some(reply) => stream.get_mut().write_all(reply.as_bytes()).await.unwrap(),
                    None => break,
                }
            }
            got
        });
        (addr, task)
    }

    fn envelope() -> Envelope<'static> {
        Envelope {
            helo: "mail.example.com",
            from: "status@example.com",
            to: "bob@example.org",
            message: "Subject: x\r\n\r\n.hidden\r\n",
        }
    }

    #[tokio::test]
    async fn a_message_is_handed_over_and_a_refusal_is_permanent() {
        let (addr, task) = relay(&[
            "220 hi\r\n",
            "250-hello\r\n250 8BITMIME\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go\r\n",
            "250 queued\r\n",
            "221 bye\r\n",
        ])
        .await;
        send(&addr, &envelope(), Duration::from_secs(5))
            .await
            .unwrap();
        let got = task.await.unwrap();
        assert!(got.contains("MAIL FROM:<status@example.com>\r\nRCPT TO:<bob@example.org>\r\n"));
        assert!(got.contains("\r\n..hidden\r\n.\r\n"));

        let (addr, _task) = relay(&[
            "220 hi\r\n",
            "250 hello\r\n",
            "250 ok\r\n",
            "550 no such user\r\n",
        ])
        .await;
        let error = send(&addr, &envelope(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(error, SendError::Permanent(ref s) if s.contains("550 no such user")),
            "{error}"
        );

        let (addr, _task) = relay(&["421 busy\r\n"]).await;
        let error = send(&addr, &envelope(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, SendError::Temporary(_)), "{error}");
    }
}
