//! Small validated types that cross the store boundary.

use crate::error::{Result, StoreError};
use serde::{Deserialize, Serialize};

/// A content hash (SHA-256) naming a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub struct BlobHash(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl BlobHash {
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest;
        BlobHash(sha2::Sha256::digest(data).into())
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(BlobHash(out))
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// Stable mailbox identity: survives renames, never reused (RFC 8474 MAILBOXID).
pub type MailboxId = String;

/// Longest user name accepted, in bytes.
pub const USER_NAME_BYTES_MAX: usize = 255;

/// Validates and canonicalises a user name: a bare local part (`alice`) or a full
/// address (`alice@example.com`), lower-cased. The name becomes a directory name,
/// so the character set is strict; `+` is refused because it introduces a
/// sub-address at delivery.
pub fn canonical_user_name(name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    let valid = !lower.is_empty()
        && lower.len() <= USER_NAME_BYTES_MAX
        && !lower.starts_with('.')
        && !lower.starts_with('@')
        && !lower.ends_with('@')
        && lower.matches('@').count() <= 1
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if valid {
        Ok(lower)
    } else {
        Err(StoreError::invalid(format!(
            "invalid user name {name:?}: use letters, digits, '.', '_', '-' and at most one '@'"
        )))
    }
}

/// The IMAP system flags, in their canonical spelling.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// A message's flags, kept sorted and unique so that comparisons and storage are canonical.
pub fn normalize_flags(flags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .map(|f| {
            SYSTEM_FLAGS
                .iter()
                .find(|s| s.eq_ignore_ascii_case(f))
                .map(|s| s.to_string())
                .unwrap_or_else(|| f.clone())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How a flag change combines with the flags a message has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlagMode {
    Replace,
    Add,
    Remove,
}

pub fn apply_flag_mode(current: &[String], mode: FlagMode, flags: &[String]) -> Vec<String> {
    let changed = match mode {
        FlagMode::Replace => flags.to_vec(),
        FlagMode::Add => current.iter().chain(flags.iter()).cloned().collect(),
        FlagMode::Remove => current
            .iter()
            .filter(|c| !flags.iter().any(|f| f.eq_ignore_ascii_case(c)))
            .cloned()
            .collect(),
    };
    normalize_flags(&changed)
}

/// A user's new-mail SMS alert: where to, for which mail, when not, how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsAlert {
    /// E.164.
    pub number: String,
    /// Only mail whose From address (not its display name) contains one of these
    /// (lowercase); empty: any.
    #[serde(default)]
    pub from: Vec<String>,
    /// Only mail whose To or Cc header contains one of these (lowercase); empty:
    /// any. (The envelope recipient is not looked at: Bcc'd mail matches only an
    /// empty list.)
    #[serde(default)]
    pub to: Vec<String>,
    /// Only mail marked important (Importance: high, X-Priority 1 or 2, Priority: urgent).
    #[serde(default)]
    pub important_only: bool,
    /// No alerts from `start` to `end`, minutes after local midnight (may wrap midnight).
    #[serde(default)]
    pub quiet: Option<(u16, u16)>,
    /// The user's zone for quiet hours, minutes east of UTC.
    #[serde(default)]
    pub zone_minutes: i16,
    /// Most alerts per rolling hour.
    pub per_hour_max: u32,
}
