//! The DNS behind SMTP's sender checks: mail-auth's hickory resolver, pointed
//! at `[dns] servers`, with a cache of our own that serves stale answers
//! while the resolvers fail (RFC 8767).
//!
//! mail-auth consults a cache before every query and fills it after; the
//! cache decides what a hit is. [`DnsCacheStore`] keeps each answer until its
//! TTL and then for `stale_secs` more. Through a fresh [`CacheView`] only
//! answers within their TTL are hits; through a stale view, expired ones are
//! too. The checks run with a fresh view first; when a lookup then fails
//! (SPF, DKIM, DMARC or ARC says "temperror"), they run again with a stale
//! view, and the resolver is taken as down for [`FAILURE_RECHECK`], during
//! which checks start with the stale view (RFC 8767's failure-recheck timer:
//! a dead resolver is not asked again for every message). Only a lookup that
//! neither the resolver nor the stale cache can answer makes the message a
//! temporary failure.
//!
//! Resolver failures are never cached. Answers are cached by mail-auth
//! through the views; "no such name or record" (NXDOMAIN, NODATA) it does not
//! cache, and a DMARC check walks up to names that usually have none (the
//! organizational domain's `_dmarc`), so a resolver outage would fail every
//! DMARC check. We learn those here instead: a name looked up in a round of
//! checks that ended without a lookup failure, and that got no answer stored,
//! got a negative answer; it is kept as one for `negative_ttl_secs`, and served
//! as "not found", stale too, like any answer.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::{
    DnsError, DnssecStatus, MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt,
};

use crate::config::DnsSection;

/// After a lookup failed, how long checks start from stale answers without
/// asking the resolvers again (RFC 8767 section 4 suggests 30 s).
pub const FAILURE_RECHECK: Duration = Duration::from_secs(30);

/// Parses one `[dns] servers` entry: "ip" (port 53) or "ip:port"
/// ("[v6]:port" for IPv6 with a port).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    text.parse::<SocketAddr>()
        .map_err(|_| format!("{text:?} is not \"ip\" or \"ip:port\" (e.g. \"127.0.0.1:53\")"))
}

/// The authenticator (mail-auth over hickory) for `[dns]`.
pub fn authenticator(section: &DnsSection) -> Result<MessageAuthenticator, String> {
    let mut options = ResolverOpts::default();
    options.timeout = Duration::from_millis(section.timeout_ms.max(1));
    options.attempts = section.attempts.max(1);
    // Our cache keeps answers (and serves them stale); hickory's would only
    // hide the resolver's state from it.
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    let config = if section.servers.is_empty() {
        let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| format!("cannot read the system resolver config: {e}"))?;
        config
    } else {
        let servers = section
            .servers
            .iter()
            .map(|text| {
                let address = parse_server(text)?;
                let mut udp = ConnectionConfig::udp();
                udp.port = address.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = address.port();
                let mut server = NameServerConfig::udp_and_tcp(address.ip());
                server.connections = vec![udp, tcp];
                Ok(server)
            })
            .collect::<Result<Vec<_>, String>>()?;
        ResolverConfig::from_name_servers(servers)
    };
    MessageAuthenticator::new(config, options).map_err(|e| format!("DNS resolver: {e}"))
}

/// One record type's answers: value and the end of its TTL.
struct Shelf<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    /// Names known to have no record, by the hash of the name (mail-auth
    /// hands the cache only a borrowed name on a miss), until when.
    negative: Mutex<HashMap<u64, Instant>>,
    /// What a negative entry is served as: mail-auth's own "not found".
    negative_value: V,
    hasher: RandomState,
    entries_max: usize,
    stale: Duration,
}

/// Whether an answer valid until `until` may be served now.
fn servable(until: Instant, now: Instant, allow_stale: bool, stale: Duration) -> Option<bool> {
    if until > now {
        Some(false)
    } else if allow_stale && until + stale > now {
        Some(true)
    } else {
        None
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Shelf<K, V> {
    fn new(entries_max: usize, stale: Duration, negative_value: V) -> Self {
        Shelf {
            entries: Mutex::new(HashMap::new()),
            negative: Mutex::new(HashMap::new()),
            negative_value,
            hasher: RandomState::new(),
            entries_max: entries_max.max(1),
            stale,
        }
    }

    fn hash_of<Q: Hash + ?Sized>(&self, name: &Q) -> u64 {
        self.hasher.hash_one(name)
    }

    /// The answer for `name` (and whether it was stale), or None and the
    /// name's hash for learning a negative answer.
    fn lookup<Q>(&self, name: &Q, allow_stale: bool, counters: &Counters) -> Result<V, u64>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Instant::now();
        let count = |stale: bool| {
            let counter = if stale {
                &counters.stale_served
            } else {
                &counters.hits
            };
            counter.fetch_add(1, Ordering::Relaxed);
        };
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((value, until)) = entries.get(name)
                && let Some(stale) = servable(*until, now, allow_stale, self.stale)
            {
                count(stale);
                return Ok(value.clone());
            }
        }
        let hash = self.hash_of(name);
        let negative = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = negative.get(&hash)
            && let Some(stale) = servable(*until, now, allow_stale, self.stale)
        {
            count(stale);
            return Ok(self.negative_value.clone());
        }
        Err(hash)
    }

    /// Names missed in a round that ended without a lookup failure and got
    /// no answer stored: they have none, for `ttl`.
    fn learn_negative(&self, missed: &[u64], stored: &[u64], ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut negative = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        for hash in missed.iter().filter(|h| !stored.contains(h)) {
            if negative.len() >= self.entries_max && !negative.contains_key(hash) {
                let now = Instant::now();
                let stale = self.stale;
                negative.retain(|_, until| *until + stale > now);
                if negative.len() >= self.entries_max {
                    continue;
                }
            }
            negative.insert(*hash, until);
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(name).map(|(value, _)| value)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        // An answer now replaces a negative one learned earlier.
        let hash = self.hash_of(&key);
        self.negative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&hash);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.entries_max && !entries.contains_key(&key) {
            // Full: first drop what is past even its stale time; if that
            // frees nothing, the answer closest to its end.
            let stale = self.stale;
            entries.retain(|_, (_, until)| *until + stale > now);
            if entries.len() >= self.entries_max {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (_, until))| *until)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (value, valid_until));
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
            + self
                .negative
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .len()
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    stale_served: AtomicU64,
}

/// Every cached answer, shared by all SMTP sessions.
pub struct DnsCacheStore {
    txt: Shelf<Box<str>, Txt>,
    mx: Shelf<Box<str>, RecordSet<MX>>,
    ipv4: Shelf<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: Shelf<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: Shelf<IpAddr, RecordSet<Box<str>>>,
    counters: Counters,
    /// Until when the resolvers are taken as down (see [`FAILURE_RECHECK`]).
    down_until: Mutex<Option<Instant>>,
    negative_ttl: Duration,
}

/// Cache figures for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: usize,
    pub hits: u64,
    pub stale_served: u64,
}

impl DnsCacheStore {
    pub fn new(section: &DnsSection) -> Self {
        let max = section.cache_entries_max;
        let stale = Duration::from_secs(section.stale_secs);
        let not_found = Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(
            ResponseCode::NXDomain,
        )));
        DnsCacheStore {
            txt: Shelf::new(max, stale, not_found),
            mx: Shelf::new(max, stale, empty()),
            ipv4: Shelf::new(max, stale, empty()),
            ipv6: Shelf::new(max, stale, empty()),
            ptr: Shelf::new(max, stale, empty()),
            counters: Counters::default(),
            down_until: Mutex::new(None),
            negative_ttl: Duration::from_secs(section.negative_ttl_secs),
        }
    }

    /// A view for one round of checks: fresh answers only, or stale ones too.
    pub fn view(&self, allow_stale: bool) -> CacheView<'_> {
        CacheView {
            txt: ShelfView::new(&self.txt, allow_stale, &self.counters),
            mx: ShelfView::new(&self.mx, allow_stale, &self.counters),
            ipv4: ShelfView::new(&self.ipv4, allow_stale, &self.counters),
            ipv6: ShelfView::new(&self.ipv6, allow_stale, &self.counters),
            ptr: ShelfView::new(&self.ptr, allow_stale, &self.counters),
        }
    }

    /// After a round of checks through `view` that ended without a lookup
    /// failure: what it looked up and got no answer for has none.
    pub fn learn_negatives(&self, view: &CacheView<'_>) {
        let ttl = self.negative_ttl;
        view.txt.learn(ttl);
        view.mx.learn(ttl);
        view.ipv4.learn(ttl);
        view.ipv6.learn(ttl);
        view.ptr.learn(ttl);
    }

    /// Whether the resolvers failed within the last [`FAILURE_RECHECK`].
    pub fn resolver_down(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        down.is_some_and(|until| until > Instant::now())
    }

    /// A lookup failed: start from stale answers for a while.
    pub fn mark_down(&self) {
        let mut down = self.down_until.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none_or(|until| until <= Instant::now()) {
            tracing::warn!(
                event = "dns.resolver_failing",
                recheck_secs = FAILURE_RECHECK.as_secs(),
                "DNS lookups fail; serving stale answers"
            );
        }
        *down = Some(Instant::now() + FAILURE_RECHECK);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.txt.len()
                + self.mx.len()
                + self.ipv4.len()
                + self.ipv6.len()
                + self.ptr.len(),
            hits: self.counters.hits.load(Ordering::Relaxed),
            stale_served: self.counters.stale_served.load(Ordering::Relaxed),
        }
    }
}

/// An empty answer: how a negative answer to an MX, A, AAAA or PTR query is
/// served (SPF counts it as a void lookup, as it does a real empty answer).
fn empty<T>() -> RecordSet<T> {
    RecordSet {
        rrset: std::sync::Arc::from(Vec::new()),
        dnssec_status: DnssecStatus::default(),
    }
}

/// Most names one view remembers as missed or stored (a round of checks
/// makes a few dozen lookups at most; SPF caps them at 10 plus includes).
const VIEW_NAMES_MAX: usize = 256;

/// One shelf seen through a view.
pub struct ShelfView<'a, K, V> {
    shelf: &'a Shelf<K, V>,
    allow_stale: bool,
    counters: &'a Counters,
    /// Hashes of names this round missed, and of names it stored answers for.
    missed: Mutex<Vec<u64>>,
    stored: Mutex<Vec<u64>>,
}

impl<'a, K: Hash + Eq + Clone, V: Clone> ShelfView<'a, K, V> {
    fn new(shelf: &'a Shelf<K, V>, allow_stale: bool, counters: &'a Counters) -> Self {
        ShelfView {
            shelf,
            allow_stale,
            counters,
            missed: Mutex::new(Vec::new()),
            stored: Mutex::new(Vec::new()),
        }
    }

    fn learn(&self, ttl: Duration) {
        let missed = self.missed.lock().unwrap_or_else(|p| p.into_inner());
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        self.shelf.learn_negative(&missed, &stored, ttl);
    }
}

fn remember(list: &Mutex<Vec<u64>>, hash: u64) {
    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
    if list.len() < VIEW_NAMES_MAX && !list.contains(&hash) {
        list.push(hash);
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for ShelfView<'_, K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.shelf.lookup(name, self.allow_stale, self.counters) {
            Ok(value) => Some(value),
            Err(hash) => {
                remember(&self.missed, hash);
                None
            }
        }
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shelf.remove(name)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        remember(&self.stored, self.shelf.hash_of(&key));
        self.shelf.insert(key, value, valid_until);
    }
}

/// The cache as mail-auth sees it for one round of checks.
pub struct CacheView<'a> {
    txt: ShelfView<'a, Box<str>, Txt>,
    mx: ShelfView<'a, Box<str>, RecordSet<MX>>,
    ipv4: ShelfView<'a, Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: ShelfView<'a, Box<str>, RecordSet<Ipv6Addr>>,
    ptr: ShelfView<'a, IpAddr, RecordSet<Box<str>>>,
}

/// A verifier's input with this view's caches.
pub type Cached<'a, P> = Parameters<
    'a,
    P,
    ShelfView<'a, Box<str>, Txt>,
    ShelfView<'a, Box<str>, RecordSet<MX>>,
    ShelfView<'a, Box<str>, RecordSet<Ipv4Addr>>,
    ShelfView<'a, Box<str>, RecordSet<Ipv6Addr>>,
    ShelfView<'a, IpAddr, RecordSet<Box<str>>>,
>;

impl<'a> CacheView<'a> {
    /// `input` for a mail-auth verifier, looking up through this view.
    pub fn params<P>(&'a self, input: P) -> Cached<'a, P> {
        Parameters::new(input)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shelf(max: usize, stale_secs: u64) -> Shelf<Box<str>, u32> {
        Shelf::new(max, Duration::from_secs(stale_secs), 0)
    }

    impl<K: Hash + Eq + Clone, V: Clone> Shelf<K, V> {
        fn get<Q>(&self, name: &Q, allow_stale: bool, counters: &Counters) -> Option<V>
        where
            K: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.lookup(name, allow_stale, counters).ok()
        }
    }

    #[test]
    fn names_missed_and_not_stored_are_learned_as_negative() {
        let counters = Counters::default();
        let shelf = shelf(10, 60);
        let view = ShelfView::new(&shelf, false, &counters);
        assert_eq!(view.get("none.test."), None);
        assert_eq!(view.get("some.test."), None);
        view.insert(
            "some.test.".into(),
            7,
            Instant::now() + Duration::from_secs(30),
        );
        view.learn(Duration::from_secs(30));
        // The name that got no answer is now a negative entry (value 0 here).
        assert_eq!(shelf.get("none.test.", false, &counters), Some(0));
        assert_eq!(shelf.get("some.test.", false, &counters), Some(7));
        // An answer later replaces it.
        shelf.insert(
            "none.test.".into(),
            9,
            Instant::now() + Duration::from_secs(30),
        );
        assert_eq!(shelf.get("none.test.", false, &counters), Some(9));
        // Expired negatives are served stale only through a stale view.
        view.learn(Duration::ZERO);
        let other = ShelfView::new(&shelf, false, &counters);
        assert_eq!(other.get("unknown.test."), None);
        other.learn(Duration::ZERO);
        assert_eq!(shelf.get("unknown.test.", false, &counters), None);
        assert_eq!(shelf.get("unknown.test.", true, &counters), Some(0));
    }

    #[test]
    fn fresh_views_see_only_answers_within_their_ttl() {
        let counters = Counters::default();
        let shelf = shelf(10, 60);
        let now = Instant::now();
        shelf.insert("live.test.".into(), 1, now + Duration::from_secs(30));
        shelf.insert("expired.test.".into(), 2, now - Duration::from_secs(1));
        shelf.insert("dead.test.".into(), 3, now - Duration::from_secs(120));
        assert_eq!(shelf.get("live.test.", false, &counters), Some(1));
        assert_eq!(shelf.get("expired.test.", false, &counters), None);
        // A stale view serves the expired answer within stale_secs, not beyond.
        assert_eq!(shelf.get("expired.test.", true, &counters), Some(2));
        assert_eq!(shelf.get("dead.test.", true, &counters), None);
        assert_eq!(counters.stale_served.load(Ordering::Relaxed), 1);
        assert_eq!(counters.hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_shelf_drops_dead_answers_then_the_oldest() {
        let counters = Counters::default();
        let shelf = shelf(2, 10);
        let now = Instant::now();
        shelf.insert("a.".into(), 1, now - Duration::from_secs(100));
        shelf.insert("b.".into(), 2, now + Duration::from_secs(5));
        shelf.insert("c.".into(), 3, now + Duration::from_secs(50));
        assert_eq!(shelf.len(), 2);
        assert_eq!(shelf.get("a.", true, &counters), None);
        shelf.insert("d.".into(), 4, now + Duration::from_secs(500));
        assert_eq!(shelf.len(), 2);
        assert_eq!(shelf.get("b.", true, &counters), None, "the oldest goes");
        assert_eq!(shelf.get("c.", false, &counters), Some(3));
        assert_eq!(shelf.get("d.", false, &counters), Some(4));
    }

    #[test]
    fn servers_parse_with_and_without_port() {
        assert_eq!(
            parse_server("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(parse_server("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_server("::1").unwrap().port(), 53);
        assert_eq!(parse_server("[::1]:5353").unwrap().port(), 5353);
        let error = parse_server("dns.example").unwrap_err();
        assert!(error.contains("ip:port"), "{error}");
    }
}
