//! Per-user bounds: how many sessions one user may have logged in at once,
//! and how many heavy commands (SEARCH BODY/TEXT, SORT, THREAD, FETCH of many
//! message bodies) may run at once, per user and in all.
//!
//! A logged-in session holds a [`UserSlot`]. Dropping it gives the slot back,
//! however the session ends (LOGOUT, UNAUTHENTICATE, EOF, a reset, a panic,
//! shutdown), so a count cannot leak. The slot also carries the user's
//! heavy-command semaphore, which therefore exists exactly as long as the user
//! has a session: the table holds one entry per logged-in user, no more.
//!
//! Heavy commands wait for a turn up to [`UserLimitsConfig::heavy_wait`], then
//! are refused; they never queue without bound. A turn is a
//! [`HeavyPermit`], held for the whole command and given back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Settings of [`UserLimits`] (`[imap]` in the config file). A bound of 0
/// means no bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserLimitsConfig {
    /// Sessions one user may have logged in at once, over every IMAP listener.
    pub sessions_per_user_max: usize,
    /// Heavy commands one user's sessions may run at once.
    pub heavy_per_user_max: usize,
    /// Heavy commands all sessions together may run at once.
    pub heavy_max: usize,
    /// How long a heavy command waits for its turn before it is refused.
    pub heavy_wait: Duration,
}

impl Default for UserLimitsConfig {
    fn default() -> Self {
        UserLimitsConfig {
            sessions_per_user_max: 50,
            heavy_per_user_max: 2,
            heavy_max: 16,
            heavy_wait: Duration::from_secs(15),
        }
    }
}

/// Why a heavy command did not get its turn within the wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeavyBusy {
    /// The user's own sessions hold every per-user turn.
    User { max: usize },
    /// The server runs as many heavy commands as it allows.
    Server { max: usize },
}

/// The counts shared by every IMAP session of the server.
pub struct UserLimits {
    config: UserLimitsConfig,
    /// Turns for heavy commands over all users; `None`: no bound.
    heavy_all: Option<Arc<Semaphore>>,
    /// Logged-in users only: an entry is removed with its last session.
    users: Mutex<HashMap<String, UserEntry>>,
}

struct UserEntry {
    sessions: usize,
    /// This user's heavy-command turns; `None`: no bound.
    heavy: Option<Arc<Semaphore>>,
}

impl UserLimits {
    pub fn new(config: UserLimitsConfig) -> Self {
        UserLimits {
            config,
            heavy_all: (config.heavy_max > 0).then(|| Arc::new(Semaphore::new(config.heavy_max))),
            users: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> UserLimitsConfig {
        self.config
    }

    /// A session slot for `user`, who has just proved who they are. `Err`
    /// carries the bound when the user already has that many sessions.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<UserSlot, usize> {
        let max = self.config.sessions_per_user_max;
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let entry = users.entry(user.to_string()).or_insert_with(|| UserEntry {
            sessions: 0,
            heavy: (self.config.heavy_per_user_max > 0)
                .then(|| Arc::new(Semaphore::new(self.config.heavy_per_user_max))),
        });
        if max > 0 && entry.sessions >= max {
            // Never 0 here: a fresh entry has room for one.
            return Err(max);
        }
        entry.sessions += 1;
        Ok(UserSlot {
            limits: Arc::clone(self),
            user: user.to_string(),
            heavy: entry.heavy.clone(),
        })
    }

    /// Sessions `user` has logged in now.
    pub fn sessions(&self, user: &str) -> usize {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.get(user).map_or(0, |e| e.sessions)
    }

    /// Users with at least one session (the size of the table).
    pub fn users(&self) -> usize {
        self.users.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn release(&self, user: &str) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = users.get_mut(user) {
            entry.sessions = entry.sessions.saturating_sub(1);
            if entry.sessions == 0 {
                users.remove(user);
            }
        }
    }
}

/// One logged-in session of one user; see the module documentation.
pub struct UserSlot {
    limits: Arc<UserLimits>,
    user: String,
    heavy: Option<Arc<Semaphore>>,
}

impl std::fmt::Debug for UserSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSlot")
            .field("user", &self.user)
            .finish()
    }
}

impl UserSlot {
    /// Waits for a turn to run one heavy command: the user's first, then the
    /// server's, both within one [`UserLimitsConfig::heavy_wait`].
    pub async fn heavy(&self) -> Result<HeavyPermit, HeavyBusy> {
        let config = self.limits.config;
        let deadline = tokio::time::Instant::now() + config.heavy_wait;
        let user = match &self.heavy {
            Some(semaphore) => Some(acquire(semaphore, deadline).await.ok_or(HeavyBusy::User {
                max: config.heavy_per_user_max,
            })?),
            None => None,
        };
        let all = match &self.limits.heavy_all {
            Some(semaphore) => Some(acquire(semaphore, deadline).await.ok_or(
                HeavyBusy::Server {
                    max: config.heavy_max,
                },
            )?),
            None => None,
        };
        Ok(HeavyPermit {
            _user: user,
            _all: all,
        })
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        self.limits.release(&self.user);
    }
}

/// A permit of `semaphore` if one is free before `deadline`. The semaphores
/// here are never closed, so `None` means the wait ran out.
async fn acquire(
    semaphore: &Arc<Semaphore>,
    deadline: tokio::time::Instant,
) -> Option<OwnedSemaphorePermit> {
    tokio::time::timeout_at(deadline, Arc::clone(semaphore).acquire_owned())
        .await
        .ok()
        .and_then(Result::ok)
}

/// A turn to run one heavy command; dropping it ends the turn.
#[derive(Debug)]
pub struct HeavyPermit {
    _user: Option<OwnedSemaphorePermit>,
    _all: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(sessions: usize, heavy_per_user: usize, heavy: usize) -> Arc<UserLimits> {
        Arc::new(UserLimits::new(UserLimitsConfig {
            sessions_per_user_max: sessions,
            heavy_per_user_max: heavy_per_user,
            heavy_max: heavy,
            heavy_wait: Duration::from_millis(50),
        }))
    }

    #[test]
    fn sessions_are_counted_per_user_and_given_back_on_drop() {
        let limits = limits(2, 0, 0);
        let first = limits.admit("alice").expect("room for one");
        let second = limits.admit("alice").expect("room for two");
        assert_eq!(limits.admit("alice").err(), Some(2));
        // Another user is not affected.
        let bob = limits.admit("bob").expect("bob has his own count");
        assert_eq!((limits.sessions("alice"), limits.sessions("bob")), (2, 1));
        drop(first);
        assert_eq!(limits.sessions("alice"), 1);
        let third = limits.admit("alice").expect("a freed slot is reusable");
        drop((second, third, bob));
        // The table holds logged-in users only.
        assert_eq!(limits.users(), 0);
        assert_eq!(limits.sessions("alice"), 0);
    }

    #[test]
    fn zero_means_no_bound() {
        let limits = limits(0, 0, 0);
        let slots: Vec<UserSlot> = (0..1000)
            .map(|_| limits.admit("alice").expect("unbounded"))
            .collect();
        assert_eq!(limits.sessions("alice"), 1000);
        drop(slots);
        assert_eq!(limits.users(), 0);
    }

    #[test]
    fn a_slot_dropped_during_a_panic_is_given_back() {
        let limits = limits(1, 0, 0);
        let shared = Arc::clone(&limits);
        let result = std::thread::spawn(move || {
            let _slot = shared.admit("alice").expect("room");
            panic!("session task panics while logged in");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limits.sessions("alice"), 0);
        assert!(limits.admit("alice").is_ok());
    }

    #[tokio::test]
    async fn heavy_turns_are_bounded_per_user_and_given_back() {
        let limits = limits(0, 2, 0);
        let alice_one = limits.admit("alice").expect("room");
        let alice_two = limits.admit("alice").expect("room");
        let first = alice_one.heavy().await.expect("first turn");
        let second = alice_two.heavy().await.expect("second turn");
        // Both of alice's turns are taken, by either of her sessions.
        assert_eq!(
            alice_one.heavy().await.err(),
            Some(HeavyBusy::User { max: 2 })
        );
        // Bob's turns are his own.
        let bob = limits.admit("bob").expect("room");
        let bob_turn = bob.heavy().await.expect("bob is not held up by alice");
        drop(first);
        let third = alice_two
            .heavy()
            .await
            .expect("a turn given back is reusable");
        drop((second, third, bob_turn));
    }

    #[tokio::test]
    async fn a_waiting_heavy_command_gets_the_turn_given_back() {
        let limits = Arc::new(UserLimits::new(UserLimitsConfig {
            sessions_per_user_max: 0,
            heavy_per_user_max: 1,
            heavy_max: 0,
            heavy_wait: Duration::from_secs(10),
        }));
        let slot = limits.admit("alice").expect("room");
        let held = slot.heavy().await.expect("first turn");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(held);
        });
        let started = std::time::Instant::now();
        let next = slot.heavy().await.expect("waits, then runs");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(next);
        release.await.expect("the releasing task ends");
    }

    #[tokio::test]
    async fn the_server_wide_bound_applies_across_users() {
        let limits = limits(0, 0, 1);
        let alice = limits.admit("alice").expect("room");
        let bob = limits.admit("bob").expect("room");
        let turn = alice.heavy().await.expect("the one turn");
        assert_eq!(bob.heavy().await.err(), Some(HeavyBusy::Server { max: 1 }));
        drop(turn);
        assert!(bob.heavy().await.is_ok());
    }

    #[tokio::test]
    async fn a_user_turn_is_given_back_when_the_server_turn_is_refused() {
        let limits = limits(0, 1, 1);
        let alice = limits.admit("alice").expect("room");
        let bob = limits.admit("bob").expect("room");
        let bobs = bob.heavy().await.expect("the server's one turn");
        assert_eq!(
            alice.heavy().await.err(),
            Some(HeavyBusy::Server { max: 1 })
        );
        drop(bobs);
        // Alice's own turn was not kept by the refused attempt.
        assert!(alice.heavy().await.is_ok());
    }
}
