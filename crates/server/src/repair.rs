//! Background work that must never starve users: the server's own repairs.
//!
//! Readers that meet damage (a failed checksum, a missing blob, a missing
//! index) queue the mailbox in the store's repair queue; this task drains it
//! and reconstructs each entry on a thread of its own at low CPU priority,
//! under `[reconstruct] max_read_mb_per_s`.

use std::time::Instant;
use store::Store;
use store::reconstruct::Options;

/// Lowers the calling thread's CPU priority (nice 10; on Linux a thread's nice
/// value is its own). Failing to is logged, never fatal.
pub fn background_priority() {
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(event = "nice_failed", error = %e);
    }
}

/// Drains the repair queue until `shutdown`.
pub async fn repair_in_background(
    store: Store,
    read_bytes_per_sec: u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = store.repair_queue().wait() => {}
            _ = shutdown.changed() => return,
        }
        while let Some(entry) = store.repair_queue().pop() {
            let (user, mailbox) = entry.clone();
            let options = Options {
                user: Some(user.clone()),
                mailbox: None,
                mailbox_id: mailbox.clone(),
                check_only: false,
                read_bytes_per_sec,
            };
            let worker = store.clone();
            let (sender, receiver) = tokio::sync::oneshot::channel();
            let started = Instant::now();
            let spawned = std::thread::Builder::new()
                .name("repair".into())
                .spawn(move || {
                    background_priority();
                    let _ = sender.send(worker.reconstruct(&options, &|_| {}));
                });
            match spawned {
                Ok(_) => match receiver.await {
                    Ok(Ok(report)) => tracing::warn!(
                        event = "repair_done",
                        user = %user,
                        mailbox = mailbox.as_deref().unwrap_or("*"),
                        problems = report.problems,
                        repaired = report.repaired,
                        lost = report.lost,
                        elapsed_ms = started.elapsed().as_millis() as u64
                    ),
                    Ok(Err(e)) => {
                        tracing::error!(event = "repair_failed", user = %user, error = %e)
                    }
                    Err(_) => {
                        tracing::error!(event = "repair_failed", user = %user, "repair thread died")
                    }
                },
                Err(e) => tracing::error!(event = "repair_failed", user = %user, error = %e),
            }
            store.repair_queue().done(&entry);
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
