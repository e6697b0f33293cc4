//! The open-file limit the configured bounds need.
//!
//! Every open user index is a SQLite database with its WAL and shared-memory
//! files (three descriptors), every IMAP session may hold one reader on top of
//! its socket, and an LMTP session holds a socket. The usual soft limit of 1,024
//! would cut the server off at a few hundred active users, so at start the soft
//! limit is raised toward what `[store] open_indexes_max` and the connection
//! caps add up to, as far as the hard limit allows; if the hard limit is lower,
//! the start log says so and names the keys that drive it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors per open index: database, WAL, shared memory.
const PER_INDEX: u64 = 3;
/// Descriptors per IMAP session: the socket and a selected mailbox's reader.
const PER_IMAP_SESSION: u64 = 4;
/// Journal, packs, server index, listeners, TLS files, the admin socket.
const BASE: u64 = 256;

/// What the configuration needs, by the estimate above.
pub fn needed(open_indexes: usize, imap_connections: usize, other_connections: usize) -> u64 {
    BASE + PER_INDEX * open_indexes as u64
        + PER_IMAP_SESSION * imap_connections as u64
        + other_connections as u64
}

/// Limits before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub after: u64,
    /// `None`: unlimited.
    pub hard: Option<u64>,
    pub needed: u64,
}

impl OpenFiles {
    /// The hard limit stops the soft one short of what is needed.
    pub fn short(&self) -> bool {
        self.after < self.needed
    }
}

/// Raises the soft open-file limit to `needed`, or as far as the hard limit
/// allows; never lowers it.
pub fn raise(needed: u64) -> std::io::Result<OpenFiles> {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current.unwrap_or(u64::MAX);
    let target = match limit.maximum {
        Some(hard) => needed.min(hard),
        None => needed,
    };
    let mut after = before;
    if target > before {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum: limit.maximum,
            },
        )?;
        after = target;
    }
    Ok(OpenFiles {
        before,
        after,
        hard: limit.maximum,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_far_more_than_1024() {
        // 2,048 indexes, 10,000 IMAP + 10,000 IMAPS sessions, 1,000 LMTP sessions.
        let n = needed(2048, 20_000, 1000);
        assert_eq!(n, 256 + 3 * 2048 + 4 * 20_000 + 1000);
    }

    #[test]
    fn raise_never_lowers() {
        let current = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let result = raise(16).expect("raise to a smaller value is a no-op");
        assert_eq!(result.before, current);
        assert_eq!(result.after, current);
    }
}
