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

use crate::session::{Event, Session};
use crate::{DeliveryTarget, LmtpConfig};

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
    let span = tracing::info_span!("lmtp", %peer);
    let result = Driver {
        stream,
        session: Session::new(Arc::clone(&config), peer.ip()),
        config,
    }
    .run(target.as_ref(), shutdown)
    .instrument(span.clone())
    .await;
    match &result {
        Ok(()) => tracing::debug!(parent: &span, event = "lmtp.disconnect"),
        Err(error) => tracing::info!(parent: &span, event = "lmtp.disconnect", %error),
    }
    result
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
pub async fn refuse<S>(mut stream: S, peer: SocketAddr, config: Arc<LmtpConfig>, text: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let wait = config.idle_timeout.min(REFUSE_LINGER * 2);
    let mut session = Session::new(config, peer.ip());
    session.refuse(text);
    let output = session.take_output();
    let said = timeout(wait, async {
        stream.write_all(&output).await?;
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
    ) -> io::Result<()> {
        tracing::debug!(event = "lmtp.connect");
        if *shutdown.borrow_and_update() {
            self.session.shut_down();
        } else {
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
                Event::Close => return self.close().await,
                Event::Resolve { address } => {
                    let result = target.resolve(&address).await;
                    self.session.resolved(result);
                }
                Event::Deliver { message, users } => {
                    let results = target.deliver(message, users).await;
                    self.session.delivered(results);
                }
                Event::NeedInput => {
                    if !self.write_output().await? {
                        return Ok(());
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
                        Wake::Read(Ok(0)) => return Ok(()),
                        Wake::Read(Ok(count)) => {
                            self.session
                                .receive(buffer.get(..count).unwrap_or_default());
                        }
                        Wake::Read(Err(error)) if is_disconnect(&error) => return Ok(()),
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
