//! Recently verified logins, so a client that logs in again within minutes
//! (a webmail that logs in per request, a phone that reconnects on every
//! network change) does not cost a fresh Argon2id hash each time.
//!
//! What is kept per user: a MAC of the password under a key drawn at start
//! and never written anywhere, the stored hash it was verified against, and
//! when the entry expires. Never the password. A hit needs the same stored
//! hash (a changed password or a deleted user misses) and the same MAC
//! (compared in constant time); anything else falls through to the full
//! Argon2id check, so a wrong password is exactly as slow as without the
//! cache, and failures are never remembered.
//!
//! The cost, which is why it can be turned off (`[auth]
//! credential_cache_secs = 0`): whoever can read this process's memory gets
//! the key and the MACs, and can test guesses for a cached user at SHA-256
//! speed instead of Argon2id's. They could read the passwords themselves as
//! they arrive anyway.
//!
//! Bounded: at most `entries_max` users; entries leave in the order they were
//! made (they all live equally long, so that is expiry order).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type Tag = [u8; 32];

struct Entry {
    /// The stored PHC string the password was verified against.
    stored: String,
    tag: Tag,
    expires: Instant,
}

struct Entries {
    by_user: HashMap<String, Entry>,
    /// Users in insertion order, with the expiry each was inserted with (a
    /// user re-inserted later has a newer one; the older queue item is then
    /// stale and skipped).
    order: VecDeque<(String, Instant)>,
}

pub struct CredentialCache {
    key: [u8; 32],
    ttl: Duration,
    entries_max: usize,
    entries: Mutex<Entries>,
}

impl CredentialCache {
    /// `ttl` zero or `entries_max` zero: never remembers anything.
    pub fn new(ttl: Duration, entries_max: usize) -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        CredentialCache {
            key,
            ttl,
            entries_max,
            entries: Mutex::new(Entries {
                by_user: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.entries_max > 0
    }

    fn tag(&self, user: &str, password: &str) -> Tag {
        // The user is in the MAC so one user's entry can never vouch for another's.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return [0; 32]; // unreachable: HMAC takes keys of any length
        };
        mac.update(&(user.len() as u64).to_be_bytes());
        mac.update(user.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Whether `password` was verified for `user` against `stored` within the TTL.
    pub fn hit(&self, user: &str, stored: &str, password: &str) -> bool {
        if !self.enabled() {
            return false;
        }
        let tag = self.tag(user, password);
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = entries.by_user.get(user) else {
            return false;
        };
        entry.expires > Instant::now()
            && entry.stored == stored
            && constant_time_eq(&entry.tag, &tag)
    }

    /// Remembers a password just verified against `stored`.
    pub fn insert(&self, user: &str, stored: &str, password: &str) {
        if !self.enabled() {
            return;
        }
        let tag = self.tag(user, password);
        let now = Instant::now();
        let expires = now + self.ttl;
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entries = &mut *guard;
        let adding = usize::from(!entries.by_user.contains_key(user));
        // Expired entries first, then the oldest while full.
        while let Some((front, at)) = entries.order.front() {
            let current = entries.by_user.get(front).map(|e| e.expires);
            if current != Some(*at) {
                entries.order.pop_front(); // stale: re-inserted since, or gone
                continue;
            }
            if *at > now && entries.by_user.len() + adding <= self.entries_max {
                break;
            }
            if let Some((front, _)) = entries.order.pop_front() {
                entries.by_user.remove(&front);
            }
        }
        entries.by_user.insert(
            user.to_string(),
            Entry {
                stored: stored.to_string(),
                tag,
                expires,
            },
        );
        entries.order.push_back((user.to_string(), expires));
        // A user logging in over and over leaves stale queue items behind;
        // bound them too, by rebuilding the queue from the map.
        if entries.order.len() > 2 * self.entries_max.max(16) {
            let mut live: Vec<(String, Instant)> = entries
                .by_user
                .iter()
                .map(|(u, e)| (u.clone(), e.expires))
                .collect();
            live.sort_by_key(|(_, at)| *at);
            entries.order = live.into();
        }
    }

    /// Entries held (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.by_user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn constant_time_eq(a: &Tag, b: &Tag) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const STORED: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g";

    #[test]
    fn a_verified_password_hits_and_nothing_else_does() {
        let cache = CredentialCache::new(Duration::from_secs(60), 10);
        assert!(!cache.hit("alice", STORED, "secret"));
        cache.insert("alice", STORED, "secret");
        assert!(cache.hit("alice", STORED, "secret"));
        assert!(!cache.hit("alice", STORED, "Secret"), "another password");
        assert!(!cache.hit("bob", STORED, "secret"), "another user");
        assert!(
            !cache.hit("alice", "$argon2id$v=19$changed", "secret"),
            "the password was changed since"
        );
    }

    #[test]
    fn entries_expire() {
        let cache = CredentialCache::new(Duration::from_millis(1), 10);
        cache.insert("alice", STORED, "secret");
        let until = Instant::now() + Duration::from_millis(2);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        assert!(!cache.hit("alice", STORED, "secret"));
    }

    #[test]
    fn off_when_the_ttl_or_the_size_is_zero() {
        for cache in [
            CredentialCache::new(Duration::ZERO, 10),
            CredentialCache::new(Duration::from_secs(60), 0),
        ] {
            cache.insert("alice", STORED, "secret");
            assert!(!cache.hit("alice", STORED, "secret"));
            assert!(cache.is_empty());
        }
    }

    #[test]
    fn bounded_oldest_out_first() {
        let cache = CredentialCache::new(Duration::from_secs(60), 3);
        for user in ["a", "b", "c", "d"] {
            cache.insert(user, STORED, "pw");
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.hit("a", STORED, "pw"));
        for user in ["b", "c", "d"] {
            assert!(cache.hit(user, STORED, "pw"));
        }
        // One user logging in again and again keeps the queue bounded.
        for _ in 0..1000 {
            cache.insert("d", STORED, "pw");
        }
        let entries = cache.entries.lock().unwrap();
        assert!(entries.order.len() <= 32, "{}", entries.order.len());
        assert_eq!(entries.by_user.len(), 3);
    }
}
