//! Counters of the IMAP listeners, read by the server's `/metrics` and the
//! status page's login success rate. Relaxed atomics: figures, not locks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct ImapMetrics {
    /// Logins (LOGIN and AUTHENTICATE) with the right password.
    pub logins_ok: AtomicU64,
    /// Of `logins_ok`, those the credential cache vouched for (no hash run).
    pub logins_cached: AtomicU64,
    /// Logins refused for a wrong user name or password.
    pub logins_failed: AtomicU64,
    /// Commands answered.
    pub commands: AtomicU64,
}

impl ImapMetrics {
    pub fn login(&self, ok: bool) {
        if ok {
            self.logins_ok.fetch_add(1, Relaxed);
        } else {
            self.logins_failed.fetch_add(1, Relaxed);
        }
    }

    pub fn command(&self) {
        self.commands.fetch_add(1, Relaxed);
    }
}
