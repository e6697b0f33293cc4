//! CAPABILITY, ID, ENABLE, STARTTLS, LOGIN, AUTHENTICATE PLAIN, UNAUTHENTICATE.

use crate::conn::Conn;
use crate::respond::Done;
use crate::session::{End, PlaintextAuth, Session};
use base64::Engine;
use tokio::io::AsyncReadExt;

/// Extensions advertised once logged in. Each is listed by its own name, also
/// where IMAP4rev2 folds it in, so IMAP4rev1 clients find them.
const AUTHENTICATED: &str = "IMAP4rev1 IMAP4rev2 LITERAL+ LITERAL- ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT \
CHILDREN LIST-EXTENDED LIST-STATUS SPECIAL-USE CREATE-SPECIAL-USE ESEARCH SEARCHRES BINARY STATUS=SIZE SASL-IR \
UNAUTHENTICATE CONDSTORE QRESYNC OBJECTID SAVEDATE PREVIEW UTF8=ACCEPT SORT SORT=DISPLAY ESORT CONTEXT=SEARCH CONTEXT=SORT PARTIAL THREAD=ORDEREDSUBJECT THREAD=REFERENCES WITHIN MULTIAPPEND CATENATE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE COMPRESS=DEFLATE \
METADATA METADATA-SERVER NOTIFY ACL RIGHTS=texk";

pub(crate) fn plaintext_allowed(session: &Session) -> bool {
    session.conn.is_tls()
        || match session.ctx.config.plaintext_auth {
            PlaintextAuth::Always => true,
            PlaintextAuth::Loopback => session.peer.ip().is_loopback(),
            PlaintextAuth::Never => false,
        }
}

pub(crate) fn capabilities(session: &Session) -> String {
    if session.user.is_some() {
        let append_limit = session.ctx.config.limits.literal_bytes_max;
        return format!("{AUTHENTICATED} APPENDLIMIT={append_limit}");
    }
    let mut caps = String::from("IMAP4rev1 IMAP4rev2 LITERAL+ LITERAL- SASL-IR ID ENABLE");
    if !session.conn.is_tls() && session.ctx.tls.is_some() {
        caps.push_str(" STARTTLS");
    }
    if plaintext_allowed(session) {
        caps.push_str(" AUTH=PLAIN");
    } else {
        caps.push_str(" LOGINDISABLED");
    }
    caps
}

pub(crate) fn capability(session: &mut Session) -> Done {
    let caps = capabilities(session);
    session
        .out
        .extend_from_slice(format!("* CAPABILITY {caps}\r\n").as_bytes());
    Done::ok("CAPABILITY completed")
}

pub(crate) fn id(session: &mut Session, parameters: Option<Vec<(String, Option<String>)>>) -> Done {
    if let Some(params) = parameters {
        // Client identification is useful in logs; bounded so it cannot flood them.
        let summary: Vec<String> = params
            .iter()
            .take(30)
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    truncate(k, 30),
                    truncate(v.as_deref().unwrap_or("NIL"), 100)
                )
            })
            .collect();
        tracing::info!(event = "imap_client_id", client = %summary.join(", "));
    }
    session
        .out
        .extend_from_slice(b"* ID (\"name\" \"Postern\" \"version\" \"");
    session
        .out
        .extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    session.out.extend_from_slice(b"\")\r\n");
    Done::ok("ID completed")
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub(crate) fn enable(session: &mut Session, capabilities: &[String]) -> Done {
    let mut enabled = Vec::new();
    for cap in capabilities {
        let upper = cap.to_ascii_uppercase();
        match upper.as_str() {
            "IMAP4REV2" if !session.rev2 => {
                session.rev2 = true;
                enabled.push("IMAP4rev2");
            }
            "UTF8=ACCEPT" if !session.utf8 => {
                session.utf8 = true;
                enabled.push("UTF8=ACCEPT");
            }
            "CONDSTORE" if !session.condstore => {
                session.condstore = true;
                enabled.push("CONDSTORE");
            }
            // RFC 7162 3.2.3: enabling QRESYNC enables CONDSTORE too.
            "QRESYNC" if !session.qresync => {
                session.qresync = true;
                session.condstore = true;
                enabled.push("QRESYNC");
            }
            _ => {}
        }
    }
    session.out.extend_from_slice(b"* ENABLED");
    for e in enabled {
        session.out.push(b' ');
        session.out.extend_from_slice(e.as_bytes());
    }
    session.out.extend_from_slice(b"\r\n");
    Done::ok("ENABLE completed")
}

/// COMPRESS DEFLATE (RFC 4978): the OK goes out uncompressed, everything
/// after it, both ways, as one raw DEFLATE stream.
pub(crate) async fn compress(
    session: &mut Session,
    tag: &str,
    algorithm: &str,
) -> Result<Done, End> {
    if session.user.is_none() {
        return Ok(Done::bad("log in first"));
    }
    if session.deflate.is_some() {
        return Ok(Done::no_code(
            "COMPRESSIONACTIVE",
            "compression is already on",
        ));
    }
    if !algorithm.eq_ignore_ascii_case("DEFLATE") {
        return Ok(Done::bad("the only compression is DEFLATE"));
    }
    // Bytes the client sent after COMPRESS without waiting for the OK were
    // not compressed; they cannot be read as part of the stream.
    if !session.input.is_empty() {
        return Ok(Done::bad("nothing may follow COMPRESS before its OK"));
    }
    Done::ok("DEFLATE active").write(tag, &mut session.out);
    session.flush().await?;
    session.deflate = Some(crate::deflate::Deflate::new());
    tracing::debug!(event = "imap_compress", "DEFLATE on");
    Ok(Done::suppressed())
}

pub(crate) async fn starttls(session: &mut Session, tag: &str) -> Result<Done, End> {
    let Some(acceptor) = session.ctx.tls.clone() else {
        return Ok(Done::bad("STARTTLS is not available"));
    };
    if session.conn.is_tls() {
        return Ok(Done::bad("TLS is already active"));
    }
    if session.deflate.is_some() {
        // RFC 4978 4: TLS under compression is not allowed.
        return Ok(Done::bad("STARTTLS is not allowed after COMPRESS"));
    }
    // Anything the client pipelined after STARTTLS was sent in the clear: drop it
    // rather than treat it as sent under TLS (CVE-2011-0411 class).
    session.input.clear();
    session.framer.reset();
    Done::ok("begin TLS negotiation now").write(tag, &mut session.out);
    session.flush().await?;
    let Conn::Plain(tcp) = std::mem::replace(&mut session.conn, Conn::Upgrading) else {
        return Err(End::Logout);
    };
    match acceptor.accept(tcp).await {
        Ok(tls) => {
            session.conn = Conn::Tls(Box::new(tls));
            tracing::info!(event = "imap_starttls", "TLS established");
            // The tagged response was already sent; answer nothing more for this command.
            Ok(Done::suppressed())
        }
        Err(e) => {
            tracing::info!(event = "imap_tls_failed", error = %e);
            Err(End::Logout)
        }
    }
}

pub(crate) async fn login(
    session: &mut Session,
    username: &str,
    password: &str,
) -> Result<Done, End> {
    if !plaintext_allowed(session) {
        return Ok(Done::no_code(
            "PRIVACYREQUIRED",
            "use TLS (STARTTLS or port 993) before sending a password",
        ));
    }
    check_password(session, username, password).await
}

async fn check_password(
    session: &mut Session,
    username: &str,
    password: &str,
) -> Result<Done, End> {
    let ip = session.peer.ip();
    let throttle = session.ctx.throttle.clone();
    let wait = throttle.delay_before(ip, &username.to_ascii_lowercase());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let store = session.ctx.store.clone();
    let (name, secret) = (username.to_string(), password.to_string());
    // A client back within the credential cache's time skips the hash;
    // everyone else takes a turn first, waited for here rather than on a
    // blocking thread.
    let checked = match store.authenticate_cached(&name, &secret) {
        Ok(Some(user)) => {
            session
                .ctx
                .metrics
                .logins_cached
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Ok(Some(user)))
        }
        _ => {
            let turn = store::password::hash_turn().await;
            let checked =
                tokio::task::spawn_blocking(move || store.authenticate(&name, &secret)).await;
            drop(turn);
            checked
        }
    };
    match checked {
        Ok(Ok(Some(user))) => {
            throttle.record_success(ip);
            session.ctx.metrics.login(true);
            // Checked once the password is known to be right, so a stranger
            // cannot use up someone's slots or learn whether they are online.
            // Dovecot answers its mail_max_userip_connections the same way: a
            // tagged NO [UNAVAILABLE], the connection stays open, and clients
            // do not take it for a wrong password.
            let slot = match session.ctx.users.admit(&user) {
                Ok(slot) => slot,
                Err(max) => {
                    tracing::info!(event = "imap_login_over_user_cap", user = %user, max);
                    return Ok(Done::no_code(
                        "UNAVAILABLE",
                        format!(
                            "Maximum number of connections for this user exceeded \
                             (max_connections_per_user={max}); close another mail client \
                             or session, or try again later"
                        ),
                    ));
                }
            };
            match session.ctx.store.reader(&user) {
                Ok(reader) => {
                    session.user_slot = Some(slot);
                    session.changes = Some(session.ctx.store.watch(&user));
                    session.reader = Some(reader);
                    session.user = Some(user.clone());
                    tracing::info!(event = "imap_login", user = %user);
                    let caps = capabilities(session);
                    Ok(Done::ok_code(format!("CAPABILITY {caps}"), "logged in"))
                }
                Err(e) => {
                    tracing::error!(event = "imap_login_index_failed", user = %user, error = %e);
                    Ok(Done::no_code(
                        "UNAVAILABLE",
                        "mailbox temporarily unavailable",
                    ))
                }
            }
        }
        Ok(Ok(None)) => {
            session.ctx.metrics.login(false);
            throttle.record_failure(ip, &username.to_ascii_lowercase());
            tracing::info!(event = "imap_login_failed", user = %truncate(username, 64));
            tokio::time::sleep(throttle.failure_delay()).await;
            Ok(Done::no_code("AUTHENTICATIONFAILED", "invalid credentials"))
        }
        Ok(Err(e)) => {
            tracing::error!(event = "imap_auth_error", error = %e);
            Ok(Done::no_code(
                "UNAVAILABLE",
                "authentication temporarily unavailable",
            ))
        }
        Err(_) => Ok(Done::no_code(
            "UNAVAILABLE",
            "authentication temporarily unavailable",
        )),
    }
}

pub(crate) async fn authenticate(
    session: &mut Session,
    mechanism: &str,
    initial: Option<&str>,
) -> Result<Done, End> {
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        return Ok(Done::no("unsupported authentication mechanism"));
    }
    if !plaintext_allowed(session) {
        return Ok(Done::no_code(
            "PRIVACYREQUIRED",
            "use TLS before sending a password",
        ));
    }
    let response = match initial {
        Some(r) => r.to_string(),
        None => {
            session.out.extend_from_slice(b"+ \r\n");
            session.flush().await?;
            match read_line(session).await? {
                Some(line) => line,
                None => return Ok(Done::bad("authentication line too long")),
            }
        }
    };
    if response == "*" {
        return Ok(Done::bad("authentication cancelled"));
    }
    let decoded = if response == "=" {
        Vec::new()
    } else {
        match base64::engine::general_purpose::STANDARD.decode(response.trim()) {
            Ok(d) => d,
            Err(_) => return Ok(Done::bad("invalid base64")),
        }
    };
    // PLAIN (RFC 4616): authzid NUL authcid NUL password.
    let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
    let [authzid, authcid, password] = parts.as_slice() else {
        return Ok(Done::bad("malformed PLAIN response"));
    };
    let (Ok(authzid), Ok(authcid), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return Ok(Done::bad("malformed PLAIN response"));
    };
    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(authcid) {
        return Ok(Done::no_code(
            "AUTHORIZATIONFAILED",
            "acting as another user is not allowed",
        ));
    }
    check_password(session, authcid, password).await
}

/// Reads one CRLF-terminated line after a continuation request (AUTHENTICATE,
/// IDLE's DONE). `None` when it exceeds the line limit.
pub(crate) async fn read_line(session: &mut Session) -> Result<Option<String>, End> {
    let max = session.ctx.config.limits.line_bytes_max;
    loop {
        if let Some(end) = session.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = session.input.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            return Ok(Some(text));
        }
        if session.input.len() > max {
            session.input.clear();
            return Ok(None);
        }
        if session.inflate_pending()? {
            continue;
        }
        let mut chunk = [0u8; 4096];
        let n = session.conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(End::Logout);
        }
        session.take_input(&chunk[..n])?;
    }
}

pub(crate) async fn unauthenticate(session: &mut Session) -> Result<Done, End> {
    session.user = None;
    session.user_slot = None;
    session.qresync = false;
    session.login_deadline = tokio::time::Instant::now() + session.ctx.config.login_timeout;
    session.reader = None;
    session.selected = None;
    session.shared_reader = None;
    session.changes = None;
    session.saved = None;
    session.rev2 = false;
    session.utf8 = false;
    session.condstore = false;
    Ok(Done::ok("back to the not authenticated state"))
}
