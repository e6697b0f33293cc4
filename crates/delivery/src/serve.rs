//! The async driver around a [`Session`]: it owns the stream, the timeouts,
//! the shutdown signal and the calls into the [`DeliveryTarget`]; every
//! protocol decision is the session's.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::Instrument;

use crate::session::{Check, Event, Session};
use crate::{DeliveryTarget, LmtpConfig, Protocol};

/// Bytes read from the client at a time. The session holds at most this plus
/// one command line of unread input, so this is also a memory bound.
const READ_BYTES: usize = 16 * 1024;

/// Runs one LMTP session to completion.
///
/// `peer` is for trace headers and logs. Returns when the client quits, the
/// connection drops, the client is idle for `config.idle_timeout`, or
/// `shutdown` becomes true. On shutdown a DATA body being received is read to
/// its end and delivered, its replies are sent, then `421 4.3.2 shutting down`,
/// and the connection is closed. If the sending side of `shutdown` is dropped
/// without sending true, sessions run on until their clients leave.
///
/// # Errors
///
/// Returns read and write errors other than the peer going away (reset,
/// broken pipe, early EOF), which end the session with `Ok`.
pub async fn serve<S, T>(
    stream: S,
    peer: SocketAddr,
    config: Arc<LmtpConfig>,
    target: Arc<T>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: DeliveryTarget,
{
    serve_with_tls(stream, peer, config, target, None, shutdown).await
}

/// Runs one session like [`serve`]; an SMTP session with `tls` offers
/// STARTTLS and runs the rest of the session over TLS after it. An SMTP
/// session with a `greeting_delay` first waits that long in silence: a
/// client that talks meanwhile gets `554` and the close.
///
/// # Errors
///
/// As [`serve`].
pub async fn serve_with_tls<S, T>(
    stream: S,
    peer: SocketAddr,
    config: Arc<LmtpConfig>,
    target: Arc<T>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: DeliveryTarget,
{
    let smtp = config.protocol == Protocol::Smtp;
    let span = if smtp {
        tracing::info_span!("smtp", %peer)
    } else {
        tracing::info_span!("lmtp", %peer)
    };
    let result = serve_phases(stream, peer, config, target.as_ref(), tls, shutdown)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(()) => tracing::debug!(parent: &span, event = "lmtp.disconnect"),
        Err(error) => tracing::info!(parent: &span, event = "lmtp.disconnect", %error),
    }
    result
}

/// The session before and after STARTTLS.
async fn serve_phases<S, T>(
    mut stream: S,
    peer: SocketAddr,
    config: Arc<LmtpConfig>,
    target: &T,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    T: DeliveryTarget,
{
    let smtp = config.protocol == Protocol::Smtp;
    let mut session = Session::new(Arc::clone(&config), peer.ip());
    if smtp && !config.greeting_delay.is_zero() {
        let mut probe = [0u8; 1];
        match timeout(config.greeting_delay, stream.read(&mut probe)).await {
            // Silence: the client waits for the greeting, as it must.
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => return Ok(()),
            Ok(Ok(_)) => {
                tracing::info!(event = "smtp.early_talker");
                session.early_talker();
                let output = session.take_output();
                say_and_close(stream, &output, config.idle_timeout).await;
                return Ok(());
            }
        }
    }
    if smtp && tls.is_some() {
        session.offer_tls();
    }
    let driver = Driver {
        stream,
        session,
        config: Arc::clone(&config),
    };
    let Phase::StartTls {
        stream,
        mut session,
    } = driver.run(target, shutdown.clone(), true).await?
    else {
        return Ok(());
    };
    let Some(acceptor) = tls else {
        return Ok(());
    };
    let tls_stream = match timeout(config.idle_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => tls_stream,
        Ok(Err(error)) => {
            tracing::info!(event = "smtp.tls_handshake_failed", %error);
            return Ok(());
        }
        Err(_) => {
            tracing::info!(event = "smtp.tls_handshake_timeout");
            return Ok(());
        }
    };
    session.tls_started();
    let driver = Driver {
        stream: tls_stream,
        session: *session,
        config,
    };
    // The session refuses a second STARTTLS, so this phase only ends.
    driver.run(target, shutdown, false).await?;
    Ok(())
}

/// Writes `output`, closes the sending side and reads (and drops) what the
/// client still sends for a while, so the reply is not lost to a reset.
async fn say_and_close<S>(mut stream: S, output: &[u8], wait: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let said = timeout(wait.min(REFUSE_LINGER * 2), async {
        stream.write_all(output).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(said, Ok(Ok(()))) {
        return;
    }
    let _ = timeout(REFUSE_LINGER, async {
        let mut chunk = [0u8; 4096];
        let mut dropped = 0usize;
        while dropped < REFUSE_LINGER_BYTES_MAX {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// How a driver's run ended.
enum Phase<S> {
    /// The session is over.
    Ended,
    /// The client asked for TLS and was told to start it: the stream, with
    /// nothing unread that the session wants, and the session to go on with.
    StartTls { stream: S, session: Box<Session> },
}

/// How long the close of a refused connection waits for the client to hang
/// up. Closing a socket with unread input makes the kernel send a reset, which
/// can destroy the 421 before the client reads it; so what the client sends
/// meanwhile is read and dropped.
const REFUSE_LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and dropped while lingering.
const REFUSE_LINGER_BYTES_MAX: usize = 64 * 1024;

/// Turns a connection away before any session starts, for a connection over
/// a cap: `421 4.3.2 <hostname> <text>` (see [`Session::refuse`]), then a
/// close that lets the client read it. Never fails: a client that is already
/// gone needs no answer. Takes at most `config.idle_timeout` to write and
/// [`REFUSE_LINGER`] to close.
pub async fn refuse<S>(stream: S, peer: SocketAddr, config: Arc<LmtpConfig>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let wait = config.idle_timeout;
    let mut session = Session::new(config, peer.ip());
    session.refuse(text);
    let output = session.take_output();
    say_and_close(stream, &output, wait).await;
}

/// What ended a wait for input.
enum Wake {
    Read(io::Result<usize>),
    IdleTimeout,
    ShutdownChanged { sender_alive: bool },
}

struct Driver<S> {
    stream: S,
    session: Session,
    config: Arc<LmtpConfig>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Driver<S> {
    async fn run<T: DeliveryTarget>(
        mut self,
        target: &T,
        mut shutdown: watch::Receiver<bool>,
        greet: bool,
    ) -> io::Result<Phase<S>> {
        tracing::debug!(event = "lmtp.connect");
        if *shutdown.borrow_and_update() {
            self.session.shut_down();
        } else if greet {
            self.session.greet();
        }
        // Cleared when the shutdown sender is gone, so a closed channel does
        // not wake the select below in a loop.
        let mut watching_shutdown = true;
        let mut buffer = vec![0u8; READ_BYTES];
        loop {
            // A message being received is finished first, so that what the
            // client sent is delivered rather than retried.
            if *shutdown.borrow() && !self.session.is_receiving_data() && !self.session.is_closed()
            {
                tracing::info!(event = "lmtp.shutdown");
                self.session.shut_down();
            }
            match self.session.poll() {
                Event::Close => return self.close().await.map(|()| Phase::Ended),
                Event::StartTls => {
                    if !self.write_output().await? {
                        return Ok(Phase::Ended);
                    }
                    return Ok(Phase::StartTls {
                        stream: self.stream,
                        session: Box::new(self.session),
                    });
                }
                Event::Resolve { address } => {
                    let result = target.resolve(&address).await;
                    self.session.resolved(result);
                }
                Event::Admit(check) => {
                    let admission = match &check {
                        Check::Sender(envelope) => target.admit_sender(envelope).await,
                        Check::Recipient(envelope, address) => {
                            target.admit_recipient(envelope, address).await
                        }
                    };
                    self.session.admitted(admission);
                }
                Event::Deliver {
                    message,
                    users,
                    envelope,
                } => {
                    let results = target.deliver(message, users, envelope).await;
                    self.session.delivered(results);
                }
                Event::NeedInput => {
                    if !self.write_output().await? {
                        return Ok(Phase::Ended);
                    }
                    let idle = self.config.idle_timeout;
                    let wake = tokio::select! {
                        changed = shutdown.changed(), if watching_shutdown => {
                            Wake::ShutdownChanged { sender_alive: changed.is_ok() }
                        }
                        read = timeout(idle, self.stream.read(&mut buffer)) => match read {
                            Ok(read) => Wake::Read(read),
                            Err(_) => Wake::IdleTimeout,
                        },
                    };
                    match wake {
                        Wake::ShutdownChanged { sender_alive } => watching_shutdown = sender_alive,
                        Wake::IdleTimeout => {
                            tracing::info!(event = "lmtp.idle_timeout");
                            self.session.time_out();
                        }
                        Wake::Read(Ok(0)) => return Ok(Phase::Ended),
                        Wake::Read(Ok(count)) => {
                            self.session
                                .receive(buffer.get(..count).unwrap_or_default());
                        }
                        Wake::Read(Err(error)) if is_disconnect(&error) => {
                            return Ok(Phase::Ended);
                        }
                        Wake::Read(Err(error)) => return Err(error),
                    }
                }
            }
        }
    }

    /// Writes queued replies. Ok(false) means the client is gone or stopped
    /// reading for longer than the idle timeout; the session just ends.
    async fn write_output(&mut self) -> io::Result<bool> {
        let output = self.session.take_output();
        if output.is_empty() {
            return Ok(true);
        }
        let write = async {
            self.stream.write_all(&output).await?;
            self.stream.flush().await
        };
        match timeout(self.config.idle_timeout, write).await {
            Ok(Ok(())) => Ok(true),
            Ok(Err(error)) if is_disconnect(&error) => Ok(false),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                tracing::info!(event = "lmtp.write_timeout");
                Ok(false)
            }
        }
    }

    async fn close(mut self) -> io::Result<()> {
        if self.write_output().await? {
            // The client may already be gone; there is nothing left to tell it.
            let _ = timeout(self.config.idle_timeout, self.stream.shutdown()).await;
        }
        Ok(())
    }
}

/// Errors that mean the peer went away, which is how sessions normally end.
fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
