//! What the `lmtp` and `smtp` workloads share: `connections` sessions take
//! messages off one queue of `messages` per run, so both protocols deliver
//! the same messages to the same users and can be compared (message `i` of
//! run `r` has index `r * messages + i` and goes to user `index % users`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;

use super::{StopFlag, Timed, join_sessions};
use crate::lmtp_client::LmtpClient;
use crate::message::MessageSpec;
use crate::smtp_client::SmtpClient;

/// The messages of one run and where they go.
#[derive(Debug, Clone)]
pub struct Queue {
    pub messages: u64,
    pub users: u64,
    pub user_prefix: String,
    pub domain: String,
    pub sender: String,
    pub spec: Arc<MessageSpec>,
}

/// A client that delivers one message per call (LMTP or SMTP).
pub trait Deliver: Send + 'static {
    /// The protocol's name, for error context.
    const PROTOCOL: &'static str;
    fn deliver_one(
        &mut self,
        sender: &str,
        recipient: &str,
        message: &[u8],
    ) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
    fn quit(self) -> impl std::future::Future<Output = anyhow::Result<()>> + Send;
}

impl Deliver for LmtpClient<tokio::net::TcpStream> {
    const PROTOCOL: &'static str = "LMTP";
    async fn deliver_one(
        &mut self,
        sender: &str,
        recipient: &str,
        message: &[u8],
    ) -> anyhow::Result<()> {
        self.deliver(sender, &[recipient], message).await?;
        Ok(())
    }
    async fn quit(self) -> anyhow::Result<()> {
        Ok(LmtpClient::quit(self).await?)
    }
}

impl Deliver for SmtpClient<tokio::net::TcpStream> {
    const PROTOCOL: &'static str = "SMTP";
    async fn deliver_one(
        &mut self,
        sender: &str,
        recipient: &str,
        message: &[u8],
    ) -> anyhow::Result<()> {
        self.deliver(sender, &[recipient], message).await?;
        Ok(())
    }
    async fn quit(self) -> anyhow::Result<()> {
        Ok(SmtpClient::quit(self).await?)
    }
}

/// Runs one session per client over the shared queue of run `run`; the
/// timings of every delivery, or the first failure.
pub async fn deliver_all<C: Deliver>(
    clients: Vec<C>,
    queue: &Queue,
    run: u64,
) -> anyhow::Result<Vec<crate::stats::Sample>> {
    let next_message = Arc::new(AtomicU64::new(0));
    let stop = StopFlag::default();
    let sessions = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(session(
                client,
                queue.clone(),
                run,
                Arc::clone(&next_message),
                stop.clone(),
            ))
        })
        .collect();
    join_sessions(sessions).await
}

/// Takes messages off the shared queue until it is empty or another session
/// failed.
async fn session<C: Deliver>(
    mut client: C,
    queue: Queue,
    run: u64,
    next_message: Arc<AtomicU64>,
    stop: StopFlag,
) -> anyhow::Result<Vec<Timed>> {
    let mut timings = Vec::new();
    // Bounded by `messages`: each pass takes one number off the queue.
    while !stop.is_stopped() {
        let number = next_message.fetch_add(1, Ordering::Relaxed);
        if number >= queue.messages {
            break;
        }
        let index = run * queue.messages + number;
        let recipient = format!(
            "{}{}@{}",
            queue.user_prefix,
            index % queue.users,
            queue.domain
        );
        let message = queue.spec.build(index, &recipient);
        let (result, timed) =
            Timed::measure(client.deliver_one(&queue.sender, &recipient, &message)).await;
        if let Err(error) = result {
            stop.stop();
            return Err(error)
                .with_context(|| format!("delivering message {index} to {recipient}"));
        }
        timings.push(timed);
    }
    client
        .quit()
        .await
        .with_context(|| format!("{} QUIT", C::PROTOCOL))?;
    Ok(timings)
}
