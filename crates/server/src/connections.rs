//! Connection caps of one service (every IMAP and IMAPS listener together, or
//! every LMTP listener): in total and per client address. A connection over a
//! cap is still accepted, told why in its protocol's words and closed (see
//! `lib.rs`), so a client sees a reason rather than a connect that hangs in
//! the listen backlog.
//!
//! Addresses are counted by what one party usually controls: an IPv4 address,
//! or the /64 of an IPv6 address (a host commonly holds a whole /64, and its
//! privacy addresses rotate within it). An IPv4-mapped IPv6 address counts as
//! its IPv4 address. Networks listed as exempt (a webmail front end, an IMAP
//! proxy, the local MTA) are not counted per address; they still count toward
//! the total.
//!
//! A [`ConnectionSlot`] holds the counts of one connection. Dropping it gives
//! them back, however the session ends (LOGOUT, EOF, a reset, a panic,
//! shutdown), so the counts cannot leak. The per-address table holds only
//! addresses with a connection open, so its size is bounded by the total cap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most one warning about refused connections per this interval, with the
/// count since the last one, so a flood of connections cannot flood the log.
const REFUSAL_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Which cap a connection is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// The service has `max` connections open.
    Total { max: usize },
    /// The client's address (or IPv6 /64) has `max` connections open.
    PerAddress { max: usize },
    /// The client's network (IPv4 /24; IPv6 /64, as for addresses) has `max`
    /// connections open.
    PerNetwork { max: usize },
}

/// The counts of one service; see the module documentation.
pub struct ConnectionLimits {
    /// One permit per open connection.
    total: Arc<Semaphore>,
    total_max: usize,
    /// 0: no per-address cap.
    per_address_max: usize,
    exempt: Vec<Network>,
    /// Open connections per counted address; addresses with none are removed.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// 0: no per-network cap; see [`ConnectionLimits::with_network_cap`].
    per_network_max: usize,
    /// Open connections per network, as `per_address` (same lock order:
    /// always taken after it).
    per_network: Mutex<HashMap<IpAddr, usize>>,
    /// Refusals since the last warning, and when that was.
    refused: AtomicU64,
    warned_at: Mutex<Option<Instant>>,
}

impl ConnectionLimits {
    /// `total_max` is raised to 1; `per_address_max` 0 means no per-address cap.
    pub fn new(total_max: usize, per_address_max: usize, exempt: Vec<Network>) -> Self {
        let total_max = total_max.max(1);
        ConnectionLimits {
            total: Arc::new(Semaphore::new(total_max)),
            total_max,
            per_address_max,
            exempt,
            per_address: Mutex::new(HashMap::new()),
            per_network_max: 0,
            per_network: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            warned_at: Mutex::new(None),
        }
    }

    /// Also caps connections per network (an IPv4 /24; for IPv6 the /64,
    /// which is already what one address counts as),
    /// for a service that many hosts of one network may flood (SMTP); exempt
    /// networks are not counted. 0: no cap.
    pub fn with_network_cap(mut self, per_network_max: usize) -> Self {
        self.per_network_max = per_network_max;
        self
    }

    /// A slot for a new connection from `ip`, or the cap it is over.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, OverCap> {
        let ip = canonical(ip);
        let exempt = self.exempt.iter().any(|n| n.contains(ip));
        let counted = (self.per_address_max > 0 || self.per_network_max > 0) && !exempt;
        let key = address_key(ip);
        let net = network_key(ip);
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let mut per_network = self.per_network.lock().unwrap_or_else(|p| p.into_inner());
        if counted
            && self.per_address_max > 0
            && per_address.get(&key).copied().unwrap_or(0) >= self.per_address_max
        {
            return Err(OverCap::PerAddress {
                max: self.per_address_max,
            });
        }
        if counted
            && self.per_network_max > 0
            && per_network.get(&net).copied().unwrap_or(0) >= self.per_network_max
        {
            return Err(OverCap::PerNetwork {
                max: self.per_network_max,
            });
        }
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| OverCap::Total {
                max: self.total_max,
            })?;
        if counted {
            *per_address.entry(key).or_insert(0) += 1;
            *per_network.entry(net).or_insert(0) += 1;
        }
        Ok(ConnectionSlot {
            _total: permit,
            address: counted.then(|| (Arc::clone(self), ip)),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total_max - self.total.available_permits()
    }

    /// Connections open now from `ip` (its /64 for IPv6); 0 for exempt addresses.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        per_address
            .get(&address_key(canonical(ip)))
            .copied()
            .unwrap_or(0)
    }

    /// Waits until every slot has been given back (shutdown drains with it).
    pub async fn all_closed(&self) {
        // Never closed, so this only returns once all permits are free.
        let _ = self.total.acquire_many(self.total_max as u32).await;
    }

    /// Counts a refusal; `Some(n)` when a warning is due, with the refusals
    /// since the last one.
    pub fn note_refusal(&self) -> Option<u64> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let mut warned_at = self.warned_at.lock().unwrap_or_else(|p| p.into_inner());
        if warned_at.is_some_and(|at| at.elapsed() < REFUSAL_WARNING_INTERVAL) {
            return None;
        }
        *warned_at = Some(Instant::now());
        Some(self.refused.swap(0, Ordering::Relaxed))
    }

    fn release(&self, ip: IpAddr) {
        let mut per_address = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let mut per_network = self.per_network.lock().unwrap_or_else(|p| p.into_inner());
        for (table, key) in [
            (&mut *per_address, address_key(ip)),
            (&mut *per_network, network_key(ip)),
        ] {
            if let Some(count) = table.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    table.remove(&key);
                }
            }
        }
    }
}

/// The counts of one open connection; dropping it gives them back.
pub struct ConnectionSlot {
    _total: OwnedSemaphorePermit,
    /// The counted (canonical) address and whose tables it is in; `None`
    /// when not counted.
    address: Option<(Arc<ConnectionLimits>, IpAddr)>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some((limits, key)) = self.address.take() {
            limits.release(key);
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What one client is counted as: the IPv4 address, or the IPv6 /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
    }
}

/// What a client's network is counted as: the IPv4 /24, or the IPv6 /64
/// (the networks of the spam limits, `spam::limits::Net`).
fn network_key(ip: IpAddr) -> IpAddr {
    spam::limits::Net::of(ip).addr
}

/// An address or a network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`,
/// `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address` or `address/prefix`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an address or a network like \"10.0.0.0/8\""))?;
        let address = canonical(address);
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {bits}"))?,
        };
        Ok(Network { address, prefix })
    }

    /// Whether `ip` (canonical) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a test address")
    }

    fn limits(total: usize, per_address: usize, exempt: &[&str]) -> Arc<ConnectionLimits> {
        let exempt = exempt
            .iter()
            .map(|n| Network::parse(n).expect("a test network"))
            .collect();
        Arc::new(ConnectionLimits::new(total, per_address, exempt))
    }

    #[test]
    fn per_address_cap_counts_each_address_and_drop_gives_back() {
        let limits = limits(100, 2, &[]);
        let a1 = limits.admit(ip("192.0.2.1")).expect("first");
        let a2 = limits.admit(ip("192.0.2.1")).expect("second");
        assert_eq!(
            limits.admit(ip("192.0.2.1")).err(),
            Some(OverCap::PerAddress { max: 2 })
        );
        // Another address has its own count.
        let b1 = limits.admit(ip("192.0.2.2")).expect("other address");
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open_from(ip("192.0.2.1")), 1);
        let a3 = limits
            .admit(ip("192.0.2.1"))
            .expect("a freed slot is reusable");
        drop((a2, a3, b1));
        assert_eq!(limits.open(), 0);
        // Addresses without connections leave the table.
        assert!(limits.per_address.lock().expect("not poisoned").is_empty());
    }

    #[test]
    fn total_cap_holds_over_all_addresses() {
        let limits = limits(2, 0, &[]);
        let a = limits.admit(ip("192.0.2.1")).expect("first");
        let _b = limits.admit(ip("198.51.100.1")).expect("second");
        assert_eq!(
            limits.admit(ip("203.0.113.1")).err(),
            Some(OverCap::Total { max: 2 })
        );
        drop(a);
        assert!(limits.admit(ip("203.0.113.1")).is_ok());
    }

    #[test]
    fn a_refusal_for_the_total_does_not_count_the_address() {
        let limits = limits(1, 5, &[]);
        let _held = limits.admit(ip("192.0.2.1")).expect("the one slot");
        for _ in 0..10 {
            assert_eq!(
                limits.admit(ip("192.0.2.9")).err(),
                Some(OverCap::Total { max: 1 })
            );
        }
        assert_eq!(limits.open_from(ip("192.0.2.9")), 0);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        let limits = limits(100, 2, &[]);
        let _a = limits.admit(ip("2001:db8:1:2::1")).expect("first");
        let _b = limits.admit(ip("2001:db8:1:2:ffff::7")).expect("same /64");
        assert_eq!(
            limits.admit(ip("2001:db8:1:2:abcd::1")).err(),
            Some(OverCap::PerAddress { max: 2 })
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
        let _c = limits.admit(ip("192.0.2.1")).expect("first");
        let _d = limits.admit(ip("::ffff:192.0.2.1")).expect("same address");
        assert_eq!(
            limits.admit(ip("192.0.2.1")).err(),
            Some(OverCap::PerAddress { max: 2 })
        );
    }

    #[test]
    fn exempt_networks_count_toward_the_total_only() {
        let limits = limits(5, 1, &["10.0.0.0/8", "2001:db8::/32"]);
        let held: Vec<ConnectionSlot> = (0..4)
            .map(|_| limits.admit(ip("10.1.2.3")).expect("exempt"))
            .collect();
        let _v6 = limits.admit(ip("2001:db8::5")).expect("exempt too");
        assert_eq!(
            limits.admit(ip("10.1.2.3")).err(),
            Some(OverCap::Total { max: 5 })
        );
        drop(held);
        let _one = limits.admit(ip("192.0.2.1")).expect("counted");
        assert_eq!(
            limits.admit(ip("192.0.2.1")).err(),
            Some(OverCap::PerAddress { max: 1 })
        );
    }

    #[test]
    fn a_slot_dropped_during_a_panic_is_given_back() {
        let limits = limits(1, 1, &[]);
        let shared = Arc::clone(&limits);
        let result = std::thread::spawn(move || {
            let _slot = shared.admit(ip("192.0.2.1")).expect("room");
            panic!("session task panics");
        })
        .join();
        assert!(result.is_err());
        assert_eq!(limits.open(), 0);
        assert_eq!(limits.open_from(ip("192.0.2.1")), 0);
    }

    #[tokio::test]
    async fn all_closed_waits_for_the_last_slot() {
        let limits = limits(3, 0, &[]);
        let slot = limits.admit(ip("192.0.2.1")).expect("room");
        let waiting = {
            let limits = Arc::clone(&limits);
            tokio::spawn(async move { limits.all_closed().await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(slot);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("drained once the slot is back")
            .expect("task ends");
    }

    #[test]
    fn refusal_warnings_are_spaced_out() {
        let limits = limits(1, 0, &[]);
        assert_eq!(limits.note_refusal(), Some(1));
        for _ in 0..100 {
            assert_eq!(limits.note_refusal(), None);
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let net = Network::parse("192.0.2.0/24").expect("parses");
        assert!(net.contains(ip("192.0.2.200")) && !net.contains(ip("192.0.3.1")));
        assert!(net.contains(ip("::ffff:192.0.2.9")));
        let one = Network::parse("198.51.100.7").expect("a bare address");
        assert!(one.contains(ip("198.51.100.7")) && !one.contains(ip("198.51.100.8")));
        assert!(
            Network::parse("0.0.0.0/0")
                .expect("all")
                .contains(ip("203.0.113.1"))
        );
        let v6 = Network::parse("2001:db8::/32").expect("parses");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.0.2.1")));
        assert!(Network::parse("::/0").expect("all v6").contains(ip("::1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "10.0.0.0/x",
            "",
        ] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_network_cap_counts_every_address_of_the_network() {
        let limits = Arc::new(ConnectionLimits::new(100, 0, Vec::new()).with_network_cap(2));
        let _a = limits.admit(ip("192.0.2.1")).expect("first of the /24");
        let b = limits.admit(ip("192.0.2.200")).expect("second of the /24");
        assert_eq!(
            limits.admit(ip("192.0.2.77")).err(),
            Some(OverCap::PerNetwork { max: 2 })
        );
        assert!(limits.admit(ip("192.0.3.1")).is_ok(), "another /24");
        drop(b);
        assert!(
            limits.admit(ip("192.0.2.77")).is_ok(),
            "a slot was given back"
        );
        let _c = limits.admit(ip("2001:db8:1:2::1")).expect("v6");
        let _d = limits.admit(ip("2001:db8:1:2::ffff")).expect("same /64");
        assert_eq!(
            limits.admit(ip("2001:db8:1:2::7")).err(),
            Some(OverCap::PerNetwork { max: 2 })
        );
        assert!(limits.admit(ip("2001:db8:1:3::1")).is_ok(), "another /64");
    }
}
