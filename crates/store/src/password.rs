//! Password hashing with Argon2id (PHC string format in the record).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use crate::error::{Result, StoreError};
use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};

/// Longest password accepted, in bytes (bounds the hashing work an attacker can ask for).
pub const PASSWORD_BYTES_MAX: usize = 1024;

/// Hashes running at once, process-wide. Each Argon2id hash holds 19 MiB
/// while it runs; a thousand clients logging in at once would otherwise hash
/// a thousand times in parallel (19 GB, found by the benchmark's 1,000-client
/// IMAP run), and the allocator keeps much of that afterwards. Beyond the
/// cores there is no gain anyway: the rest wait their turn on their blocking
/// thread. Set from `[auth] max_concurrent_hashes` at start.
static HASHES_MAX: AtomicUsize = AtomicUsize::new(0);
static HASHING: Mutex<usize> = Mutex::new(0);
static HASH_DONE: Condvar = Condvar::new();

/// Sets the cap on concurrent hashes; 0 means the number of cores.
pub fn set_max_concurrent_hashes(max: usize) {
    HASHES_MAX.store(max, Ordering::Relaxed);
}

fn hashes_max() -> usize {
    match HASHES_MAX.load(Ordering::Relaxed) {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// The same turns for async callers, waited for without holding a thread:
/// a login storm must not park hundreds of blocking threads on the condvar
/// below (tokio's pool is bounded, so other sessions' blocking work would
/// queue behind them), and waiters are served first come, first served (a
/// condvar wakes any one of them: at 1,000 logins at once some waited over
/// two minutes). Holding one, the blocking turn inside never waits.
static ASYNC_TURNS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::OnceLock::new();

/// Waits (asynchronously, in arrival order) for a turn to hash; keep the
/// permit until the hash or check it is for has run.
pub async fn hash_turn() -> Option<tokio::sync::OwnedSemaphorePermit> {
    let turns =
        ASYNC_TURNS.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(hashes_max())));
    std::sync::Arc::clone(turns).acquire_owned().await.ok()
}

/// A turn to hash; blocks (call from a blocking thread) until one is free.
struct HashTurn;

impl HashTurn {
    fn take() -> HashTurn {
        let mut running = HASHING.lock().unwrap_or_else(|p| p.into_inner());
        while *running >= hashes_max() {
            running = HASH_DONE.wait(running).unwrap_or_else(|p| p.into_inner());
        }
        *running += 1;
        HashTurn
    }
}

impl Drop for HashTurn {
    fn drop(&mut self) {
        let mut running = HASHING.lock().unwrap_or_else(|p| p.into_inner());
        *running = running.saturating_sub(1);
        HASH_DONE.notify_one();
    }
}

pub fn hash(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > PASSWORD_BYTES_MAX {
        return Err(StoreError::invalid(format!(
            "password must be 1 to {PASSWORD_BYTES_MAX} bytes"
        )));
    }
    let salt = SaltString::generate(&mut OsRng);
    let _turn = HashTurn::take();
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::invalid(format!("password hashing failed: {e}")))
}

/// Checks a password against a stored hash; a malformed hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > PASSWORD_BYTES_MAX {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => {
            let _turn = HashTurn::take();
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// However many threads verify at once, no more than the cap hash: the
    /// count of running hashes, watched while six threads verify, never
    /// passes 2, and every turn is given back.
    #[test]
    fn hashes_run_at_most_the_cap_at_once() {
        set_max_concurrent_hashes(2);
        let stored = hash("correct horse").unwrap();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let stored = stored.clone();
                std::thread::spawn(move || verify("correct horse", &stored))
            })
            .collect();
        let mut peak = 0;
        while threads.iter().any(|t| !t.is_finished()) {
            peak = peak.max(*HASHING.lock().unwrap());
            std::thread::yield_now();
        }
        for thread in threads {
            assert!(thread.join().unwrap());
        }
        assert!((1..=2).contains(&peak), "peak {peak}");
        assert_eq!(*HASHING.lock().unwrap(), 0, "every turn was given back");
        set_max_concurrent_hashes(0);
    }
}
