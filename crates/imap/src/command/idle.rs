//! IDLE (RFC 2177, RFC 9051 6.3.13): push changes until the client says DONE.

use crate::respond::Done;
use crate::session::{End, Session};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Longest IDLE before the server ends it (clients re-issue IDLE well before).
const IDLE_DURATION_MAX: Duration = Duration::from_secs(30 * 60);

pub(crate) async fn idle(session: &mut Session, _tag: &str) -> Result<Done, End> {
    session.sync(true).await?;
    session.notify_push(true, true, true).await?;
    session.out.extend_from_slice(b"+ idling\r\n");
    session.flush().await?;
    // Another owner's selected mailbox changes with the owner's commits
    // (deliveries, their flags, an ACL revoke), not the user's.
    let mut changes = match session.selected.as_ref().and_then(|s| s.owner.as_deref()) {
        Some(owner) => Some(session.ctx.store.watch(owner)),
        None => session.changes.clone(),
    };
    let mut shutdown = session.shutdown.clone();
    let deadline = tokio::time::sleep(IDLE_DURATION_MAX);
    tokio::pin!(deadline);
    loop {
        if let Some(end) = session.input.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = session.input.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            if !text.trim().eq_ignore_ascii_case("DONE") {
                return Ok(Done::bad("expected DONE"));
            }
            // A change that arrived with DONE (both were ready at once) is
            // still reported before the tagged OK.
            session.sync(true).await?;
            session.notify_push(true, true, true).await?;
            return Ok(Done::ok("IDLE terminated"));
        }
        if session.input.len() > session.ctx.config.limits.line_bytes_max {
            session.input.clear();
            return Ok(Done::bad("expected DONE"));
        }
        // Under COMPRESS, what already arrived is inflated before waiting.
        if session.inflate_pending()? {
            continue;
        }
        session.release_index();
        let mut chunk = [0u8; 1024];
        tokio::select! {
            read = session.conn.read(&mut chunk) => {
                let n = read?;
                if n == 0 {
                    return Err(End::Logout);
                }
                session.take_input(&chunk[..n])?;
            }
            changed = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !changed {
                    changes = None;
                }
                session.sync(true).await?;
                session.notify_push(true, true, true).await?;
                session.flush().await?;
            }
            _ = shutdown.changed() => {
                session.bye("server shutting down").await?;
            }
            _ = &mut deadline => {
                session.bye("IDLE lasted too long").await?;
            }
        }
    }
}
