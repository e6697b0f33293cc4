//! The committer thread: commits the user-index transactions of a durable batch
//! and answers its callers, while the writer thread already plans the next one.
//!
//! Once a batch is durable (journal or pack fsynced) and the server index is
//! committed, nothing about it can fail any more from the callers' point of view:
//! what remains is to COMMIT one SQLite transaction per user the batch touched,
//! wake that user's watchers and send the replies. For a batch spread over many
//! users those commits are a third of the writer's time. The writer lends the
//! batch's user connections to this thread and goes on; a later batch that needs
//! one of them waits for it to come back (`Writer::user_conn`), so a user's
//! transactions still commit in batch order and nobody reads a user index that is
//! behind a reply already sent: the reply for a change goes out only after the
//! change's user index is committed.

use crate::checkpoint::Checkpointer;
use crate::error::StoreError;
use crate::index;
use crate::intent::Outcome;
use crate::notify::Notifier;
use crate::paths::Paths;
use crate::writer::UserConn;
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A user's index goes to the background checkpointer after this many commits
/// (see `checkpoint.rs`): at roughly ten WAL pages a delivery, its WAL stays
/// under about 1.3 MiB and is rewritten in place instead of grown. Every
/// checkpoint costs two fsyncs that compete with the commit fsyncs for the
/// disk: every 8 commits cost a fifth of the 1,000-user delivery rate, every 32
/// nothing measurable (bench, 2026-11-28).
const CHECKPOINT_AFTER_COMMITS: u32 = 32;

pub type Reply = tokio::sync::oneshot::Sender<Vec<crate::Result<Outcome>>>;

/// The rest of a durable batch.
pub struct Job {
    /// Connections inside the batch's open transactions.
    pub users: Vec<(String, UserConn)>,
    pub replies: Vec<(Reply, Vec<crate::Result<Outcome>>)>,
}

pub struct Committer {
    jobs: Option<SyncSender<Job>>,
    /// Connections back from committed jobs.
    pub returned: Receiver<Vec<(String, UserConn)>>,
    /// The first commit failure; the writer stops taking changes when it is set.
    pub failed: Arc<Mutex<Option<StoreError>>>,
    handle: Option<JoinHandle<()>>,
}

impl Committer {
    pub fn start(paths: Paths, notifier: Arc<Notifier>) -> std::io::Result<Committer> {
        // Two jobs in flight at most: the writer never runs far ahead.
        let (jobs, receiver) = std::sync::mpsc::sync_channel(2);
        let (give_back, returned) = std::sync::mpsc::channel();
        let failed = Arc::new(Mutex::new(None));
        let checkpointer = Checkpointer::start()?;
        let handle = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn({
                let failed = failed.clone();
                move || run(receiver, give_back, failed, paths, notifier, checkpointer)
            })?;
        Ok(Committer {
            jobs: Some(jobs),
            returned,
            failed,
            handle: Some(handle),
        })
    }

    /// Hands a job over. Gives it back if the thread is gone.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        match &self.jobs {
            Some(jobs) => jobs.send(job).map_err(|e| e.0),
            None => Err(job),
        }
    }

    /// Finishes the queued jobs and stops the thread.
    pub fn stop(&mut self) {
        self.jobs.take();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    jobs: Receiver<Job>,
    give_back: Sender<Vec<(String, UserConn)>>,
    failed: Arc<Mutex<Option<StoreError>>>,
    paths: Paths,
    notifier: Arc<Notifier>,
    checkpointer: Checkpointer,
) {
    for mut job in jobs {
        for (user, open) in &mut job.users {
            if let Err(e) = commit_user(open, &paths, user, &checkpointer) {
                // The journal holds the batch, so its callers are answered truthfully,
                // but an index that missed it would hand out stale UIDs. The writer
                // stops taking changes; replay at restart repairs the index.
                tracing::error!(event = "store_failed", user = %user, error = %e, "a user index commit failed after the journal fsync; the store refuses further changes until restarted, which replays the journal");
                failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
            }
        }
        for (user, _) in &job.users {
            notifier.notify(user);
        }
        for (reply, results) in job.replies {
            let _ = reply.send(results);
        }
        if give_back.send(job.users).is_err() {
            break;
        }
    }
}

/// Commits one user's transaction; counts toward its next checkpoint.
pub fn commit_user(
    open: &mut UserConn,
    paths: &Paths,
    user: &str,
    checkpointer: &Checkpointer,
) -> crate::Result<()> {
    index::exec(&open.conn, "COMMIT")?;
    open.commits += 1;
    if open.commits >= CHECKPOINT_AFTER_COMMITS {
        open.commits = 0;
        checkpointer.request(paths.user_index(user));
    }
    Ok(())
}
