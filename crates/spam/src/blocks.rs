//! What an operator blocked by hand, and the lookups the intake makes
//! against it.
//!
//! A block is one [`BlockKey`], written and read as text so the CLI, the
//! admin API and the stored list share one form:
//!
//! | text                      | blocks                                      |
//! |---------------------------|---------------------------------------------|
//! | `ip:192.0.2.7`            | that client address                         |
//! | `net:192.0.2.0/24`        | every client address in the network         |
//! | `sender:a@b.example`      | that envelope sender                        |
//! | `domain:b.example`        | senders at that domain and its subdomains   |
//! | `fingerprint:<16 hex>`    | bodies within a given distance of it        |
//!
//! Keys are canonical: addresses IPv4 when they are IPv4-mapped, networks
//! with their host bits cleared, senders and domains lowercase without a
//! trailing dot. [`Blocklist::insert`] canonicalises what it is given, so a
//! key built by hand matches the same clients as the parsed form.
//!
//! # Cost
//!
//! A client lookup is one set lookup for the address and one per network
//! prefix length in use (at most 33 + 129); a sender lookup one per label
//! of its domain; a fingerprint lookup compares with every blocked
//! fingerprint (a popcount each). The list's size is the operator's to
//! bound: blocks come from people, not from traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::fingerprint::Fingerprint;
use crate::limits::{Net, NetError};

/// Longest `sender:` address accepted (RFC 5321 allows 64 + 1 + 255).
pub const SENDER_BYTES_MAX: usize = 320;

/// Longest `domain:` accepted (a DNS name is at most 253 without the dot).
pub const DOMAIN_BYTES_MAX: usize = 253;

/// One block. Ordered by kind (in the order below), then value; a
/// fingerprint by its number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BlockKey {
    Ip(IpAddr),
    Net(Net),
    Sender(String),
    Domain(String),
    Fingerprint(Fingerprint),
}

impl BlockKey {
    /// The canonical form: see the module documentation. Parsed keys are
    /// already canonical.
    pub fn canonical(self) -> BlockKey {
        match self {
            BlockKey::Ip(ip) => BlockKey::Ip(ip.to_canonical()),
            BlockKey::Net(net) => BlockKey::Net(Net::masked(net.addr, net.prefix)),
            BlockKey::Sender(sender) => BlockKey::Sender(canonical_address(&sender)),
            BlockKey::Domain(domain) => BlockKey::Domain(canonical_domain(&domain)),
            BlockKey::Fingerprint(fp) => BlockKey::Fingerprint(fp),
        }
    }
}

impl fmt::Display for BlockKey {
    /// The text form, which parses back to the same key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockKey::Ip(ip) => write!(f, "ip:{ip}"),
            BlockKey::Net(net) => write!(f, "net:{net}"),
            BlockKey::Sender(sender) => write!(f, "sender:{sender}"),
            BlockKey::Domain(domain) => write!(f, "domain:{domain}"),
            BlockKey::Fingerprint(fp) => write!(f, "fingerprint:{}", fp.to_hex()),
        }
    }
}

/// The accepted forms, for error messages.
const FORMS: &str = "ip:ADDRESS, net:ADDRESS/PREFIX, sender:LOCAL@DOMAIN, domain:DOMAIN or fingerprint:16 HEX DIGITS";

/// Why a block did not parse. Every message names the form expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKeyError {
    /// No `kind:` prefix, or an unknown kind.
    UnknownKind,
    /// `ip:` with something that is not an IPv4 or IPv6 address.
    BadIp,
    /// `net:` with something that is not a network.
    BadNet(NetError),
    /// `sender:` without a non-empty local part and domain, or with
    /// whitespace or control characters, or too long.
    BadSender,
    /// `domain:` that is empty, has an empty label, contains `@`,
    /// whitespace or control characters, or is too long.
    BadDomain,
    /// `fingerprint:` with anything but 16 hex digits.
    BadFingerprint,
}

impl fmt::Display for BlockKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockKeyError::UnknownKind => write!(f, "a block is one of {FORMS}"),
            BlockKeyError::BadIp => {
                write!(f, "ip: takes an IPv4 or IPv6 address, like ip:192.0.2.7")
            }
            BlockKeyError::BadNet(error) => write!(f, "net: {error}"),
            BlockKeyError::BadSender => write!(
                f,
                "sender: takes an address like sender:someone@example.com \
                 (at most {SENDER_BYTES_MAX} bytes, no spaces)"
            ),
            BlockKeyError::BadDomain => write!(
                f,
                "domain: takes a domain name like domain:example.com \
                 (at most {DOMAIN_BYTES_MAX} bytes, no spaces or @)"
            ),
            BlockKeyError::BadFingerprint => write!(
                f,
                "fingerprint: takes 16 hex digits, like fingerprint:0123456789abcdef"
            ),
        }
    }
}

impl std::error::Error for BlockKeyError {}

impl FromStr for BlockKey {
    type Err = BlockKeyError;

    /// `ip:`, `net:`, `sender:`, `domain:` or `fingerprint:` and a value.
    /// The kind is case-insensitive; whitespace around the whole is
    /// ignored. A sender may be written in angle brackets.
    fn from_str(s: &str) -> Result<BlockKey, BlockKeyError> {
        let (kind, value) = s.trim().split_once(':').ok_or(BlockKeyError::UnknownKind)?;
        match kind.to_ascii_lowercase().as_str() {
            "ip" => value
                .parse::<IpAddr>()
                .map(|ip| BlockKey::Ip(ip.to_canonical()))
                .map_err(|_| BlockKeyError::BadIp),
            "net" => value
                .parse::<Net>()
                .map(BlockKey::Net)
                .map_err(BlockKeyError::BadNet),
            "sender" => parse_sender(value).map(BlockKey::Sender),
            "domain" => parse_domain(value).map(BlockKey::Domain),
            "fingerprint" => Fingerprint::from_hex(value)
                .map(BlockKey::Fingerprint)
                .ok_or(BlockKeyError::BadFingerprint),
            _ => Err(BlockKeyError::UnknownKind),
        }
    }
}

fn parse_sender(value: &str) -> Result<String, BlockKeyError> {
    // Checked in its canonical form: lowercasing can lengthen it, and what
    // is stored must parse again.
    let sender = canonical_address(value);
    let (local, domain) = sender.rsplit_once('@').ok_or(BlockKeyError::BadSender)?;
    let acceptable = !local.is_empty()
        && sender.len() <= SENDER_BYTES_MAX
        && !sender.chars().any(|c| c.is_whitespace() || c.is_control())
        && parse_domain(domain).is_ok_and(|canonical| canonical == domain);
    if acceptable {
        Ok(sender)
    } else {
        Err(BlockKeyError::BadSender)
    }
}

fn parse_domain(value: &str) -> Result<String, BlockKeyError> {
    let domain = canonical_domain(value);
    let acceptable = !domain.is_empty()
        && domain.len() <= DOMAIN_BYTES_MAX
        && domain.split('.').all(|label| !label.is_empty())
        && !domain
            .chars()
            .any(|c| c == '@' || c.is_whitespace() || c.is_control());
    if acceptable {
        Ok(domain)
    } else {
        Err(BlockKeyError::BadDomain)
    }
}

/// Lowercase without one trailing dot.
fn canonical_domain(domain: &str) -> String {
    domain.strip_suffix('.').unwrap_or(domain).to_lowercase()
}

/// Lowercase, without angle brackets, the domain without a trailing dot.
fn canonical_address(address: &str) -> String {
    let address = address
        .strip_prefix('<')
        .and_then(|inner| inner.strip_suffix('>'))
        .unwrap_or(address);
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{}", local.to_lowercase(), canonical_domain(domain)),
        None => address.to_lowercase(),
    }
}

/// The blocks in force.
#[derive(Debug, Default, Clone)]
pub struct Blocklist {
    /// Every block, canonical; lookups return references into it.
    keys: BTreeSet<BlockKey>,
    /// How many `Net` blocks there are per (is IPv4, prefix length), so a
    /// client lookup tries only the prefix lengths in use.
    net_prefixes: BTreeMap<(bool, u8), usize>,
}

impl Blocklist {
    /// Adds a block (canonicalised). False when it was already there.
    pub fn insert(&mut self, key: BlockKey) -> bool {
        let key = key.canonical();
        let net = net_prefix(&key);
        let added = self.keys.insert(key);
        if added && let Some(prefix) = net {
            *self.net_prefixes.entry(prefix).or_default() += 1;
        }
        added
    }

    /// Removes a block (compared canonicalised). False when it was not there.
    pub fn remove(&mut self, key: &BlockKey) -> bool {
        let key = key.clone().canonical();
        let removed = self.keys.remove(&key);
        if removed
            && let Some(prefix) = net_prefix(&key)
            && let Some(count) = self.net_prefixes.get_mut(&prefix)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.net_prefixes.remove(&prefix);
            }
        }
        removed
    }

    /// Every block, in [`BlockKey`] order.
    pub fn keys(&self) -> Vec<BlockKey> {
        self.keys.iter().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The block matching a client address: the address itself, else the
    /// most specific network containing it. IPv4-mapped addresses are
    /// looked up as IPv4.
    pub fn client(&self, ip: IpAddr) -> Option<&BlockKey> {
        let ip = ip.to_canonical();
        if let Some(key) = self.keys.get(&BlockKey::Ip(ip)) {
            return Some(key);
        }
        self.net_prefixes
            .keys()
            .rev()
            .filter(|(is_ipv4, _)| *is_ipv4 == ip.is_ipv4())
            .find_map(|&(_, prefix)| {
                let net = Net::new(ip, prefix)?;
                self.keys.get(&BlockKey::Net(net))
            })
    }

    /// The block matching an envelope sender: the exact address, else its
    /// domain or the nearest parent domain that is blocked
    /// (`domain:example.com` blocks `a@mail.example.com`). Case and a
    /// trailing dot do not matter; angle brackets are allowed. The null
    /// sender (`""` or `<>`) matches nothing.
    pub fn sender(&self, sender: &str) -> Option<&BlockKey> {
        let sender = canonical_address(sender.trim());
        if sender.is_empty() {
            return None;
        }
        if let Some(key) = self.keys.get(&BlockKey::Sender(sender.clone())) {
            return Some(key);
        }
        let (_, mut domain) = sender.rsplit_once('@')?;
        // One lookup per label: bounded by the address length.
        loop {
            if !domain.is_empty()
                && let Some(key) = self.keys.get(&BlockKey::Domain(domain.to_string()))
            {
                return Some(key);
            }
            let (_, parent) = domain.split_once('.')?;
            domain = parent;
        }
    }

    /// The blocked fingerprint nearest to `fp` within `max_distance` bits
    /// (ties: the smaller fingerprint).
    pub fn fingerprint(&self, fp: Fingerprint, max_distance: u32) -> Option<&BlockKey> {
        self.keys
            .range(BlockKey::Fingerprint(Fingerprint(0))..)
            .filter_map(|key| match key {
                BlockKey::Fingerprint(blocked) => Some((blocked.distance(fp), key)),
                _ => None,
            })
            .filter(|(distance, _)| *distance <= max_distance)
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, key)| key)
    }
}

fn net_prefix(key: &BlockKey) -> Option<(bool, u8)> {
    match key {
        BlockKey::Net(net) => Some((net.addr.is_ipv4(), net.prefix)),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
