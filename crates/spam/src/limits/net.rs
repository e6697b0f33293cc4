//! An IP network (address and prefix length), parsed from and printed as
//! CIDR text.
//!
//! Parsed by hand: std parses the address, and the prefix and its mask are
//! a few lines; a crate for it (`ipnet`) would be more to audit and track
//! than the code it saves.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`, what a dual-stack
//! listener reports for an IPv4 client) are the IPv4 address everywhere
//! here: in [`Net::of`], [`Net::contains`] and in parsing, so a block or a
//! limit on `192.0.2.0/24` applies however the client reached us.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Prefix length of the network per-network limits use for IPv4: a /24 is
/// what one customer or one small hoster typically has.
pub const IPV4_LIMIT_PREFIX: u8 = 24;

/// Prefix length for IPv6: a /64 is one end site's subnet, and one host can
/// use any address in it.
pub const IPV6_LIMIT_PREFIX: u8 = 64;

/// An IP network: `addr` with all bits past `prefix` zero. The constructors
/// ([`Net::of`], [`Net::new`], parsing) keep that invariant and map
/// IPv4-mapped IPv6 networks to IPv4; [`Net::contains`] is correct even for
/// a value built by hand that breaks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// The /24 (IPv4) or /64 (IPv6) network of `ip`, the key per-network
    /// limits use.
    pub fn of(ip: IpAddr) -> Net {
        let ip = ip.to_canonical();
        let prefix = match ip {
            IpAddr::V4(_) => IPV4_LIMIT_PREFIX,
            IpAddr::V6(_) => IPV6_LIMIT_PREFIX,
        };
        Net::masked(ip, prefix)
    }

    /// The network of `addr` with `prefix` bits (host bits cleared), or
    /// `None` when `prefix` is longer than the address. An IPv4-mapped IPv6
    /// network of /96 or longer is the IPv4 network.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Net> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        (prefix <= max).then(|| Net::masked(addr, prefix))
    }

    /// Whether `ip` is in this network. An IPv6 network shorter than /96
    /// that spans the IPv4-mapped range (`::/0`, `::ffff:0:0/95`) does not
    /// contain IPv4 clients: those are IPv4 here, and only IPv4 networks
    /// contain them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let this = Net::masked(self.addr, self.prefix);
        let other = Net::masked(ip.to_canonical(), this.prefix);
        this.addr == other.addr
    }

    /// `addr` masked to `prefix` bits (clamped to the address length),
    /// IPv4-mapped addresses as IPv4 when the prefix covers the mapping.
    pub(crate) fn masked(addr: IpAddr, prefix: u8) -> Net {
        match addr {
            IpAddr::V4(v4) => {
                let prefix = prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Net {
                    addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    prefix,
                }
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.min(128);
                if let Some(v4) = v6.to_ipv4_mapped()
                    && prefix >= 96
                {
                    return Net::masked(IpAddr::V4(v4), prefix - 96);
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Net {
                    addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    prefix,
                }
            }
        }
    }
}

impl fmt::Display for Net {
    /// `192.0.2.0/24`, `2001:db8::/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a network did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// No `/` and prefix length.
    MissingPrefix,
    /// The part before `/` is not an IPv4 or IPv6 address.
    BadAddress,
    /// The prefix length is not a decimal number up to `max` (32 for IPv4,
    /// 128 for IPv6).
    BadPrefix { max: u8 },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::MissingPrefix => {
                write!(
                    f,
                    "a network is ADDRESS/PREFIX, like 192.0.2.0/24 or 2001:db8::/64"
                )
            }
            NetError::BadAddress => write!(
                f,
                "the part before / is not an IPv4 or IPv6 address (192.0.2.0/24, 2001:db8::/64)"
            ),
            NetError::BadPrefix { max } => {
                write!(f, "the prefix length must be a number from 0 to {max}")
            }
        }
    }
}

impl std::error::Error for NetError {}

impl FromStr for Net {
    type Err = NetError;

    /// `ADDRESS/PREFIX` with a prefix of 0 to 32 (IPv4) or 0 to 128 (IPv6),
    /// in decimal without sign or leading zeros. Host bits are cleared:
    /// `192.0.2.7/24` is `192.0.2.0/24`. A bare address is refused, so that
    /// `net:192.0.2.0` is not silently a single host.
    fn from_str(s: &str) -> Result<Net, NetError> {
        let (address, prefix) = s.split_once('/').ok_or(NetError::MissingPrefix)?;
        let addr: IpAddr = address.parse().map_err(|_| NetError::BadAddress)?;
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        let bad_prefix = NetError::BadPrefix { max };
        let digits_ok = !prefix.is_empty()
            && prefix.len() <= 3
            && prefix.bytes().all(|b| b.is_ascii_digit())
            && (prefix == "0" || !prefix.starts_with('0'));
        if !digits_ok {
            return Err(bad_prefix);
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad_prefix.clone())?;
        Net::new(addr, prefix).ok_or(bad_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn net(text: &str) -> Net {
        text.parse().expect("test network")
    }

    #[test]
    fn of_is_the_slash_24_or_slash_64() {
        assert_eq!(Net::of(ip("192.0.2.77")).to_string(), "192.0.2.0/24");
        assert_eq!(
            Net::of(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(Net::of(ip("::ffff:192.0.2.77")), Net::of(ip("192.0.2.77")));
        assert_eq!(Net::of(ip("::1")).to_string(), "::/64");
    }

    #[test]
    fn parse_masks_host_bits_and_round_trips() {
        let cases = [
            ("192.0.2.7/24", "192.0.2.0/24"),
            ("192.0.2.7/32", "192.0.2.7/32"),
            ("10.1.2.3/0", "0.0.0.0/0"),
            ("10.255.2.3/9", "10.128.0.0/9"),
            ("2001:db8::1/64", "2001:db8::/64"),
            ("2001:DB8:ffff::1/33", "2001:db8:8000::/33"),
            ("::/0", "::/0"),
            ("::1/128", "::1/128"),
            ("::ffff:192.0.2.7/120", "192.0.2.0/24"),
            ("::ffff:0:0/96", "0.0.0.0/0"),
        ];
        for (input, expected) in cases {
            let parsed = net(input);
            assert_eq!(parsed.to_string(), expected, "{input}");
            assert_eq!(net(expected), parsed, "{expected} round trip");
        }
    }

    #[test]
    fn bad_networks_say_what_is_wrong() {
        let cases = [
            ("", NetError::MissingPrefix),
            ("192.0.2.0", NetError::MissingPrefix),
            ("/24", NetError::BadAddress),
            ("x/24", NetError::BadAddress),
            ("192.0.2/24", NetError::BadAddress),
            ("192.0.2.0 /24", NetError::BadAddress),
            ("[::1]/64", NetError::BadAddress),
            ("192.0.2.0/", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/33", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/-1", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/+24", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/024", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/24/1", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/24 ", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/256", NetError::BadPrefix { max: 32 }),
            ("192.0.2.0/99999999999", NetError::BadPrefix { max: 32 }),
            ("::/129", NetError::BadPrefix { max: 128 }),
            ("::/١٢", NetError::BadPrefix { max: 128 }),
        ];
        for (input, expected) in cases {
            let error = input.parse::<Net>().expect_err(input);
            assert_eq!(error, expected, "{input:?}");
            assert!(!error.to_string().is_empty());
        }
        assert!(NetError::MissingPrefix.to_string().contains("192.0.2.0/24"));
    }

    #[test]
    fn contains_treats_mapped_addresses_as_ipv4() {
        let block = net("192.0.2.0/24");
        assert!(block.contains(ip("192.0.2.0")));
        assert!(block.contains(ip("192.0.2.255")));
        assert!(block.contains(ip("::ffff:192.0.2.9")));
        assert!(!block.contains(ip("192.0.3.1")));
        assert!(!block.contains(ip("::ffff:192.0.3.1")));
        assert!(!block.contains(ip("2001:db8::1")));
        let all_v4 = net("0.0.0.0/0");
        assert!(all_v4.contains(ip("203.0.113.1")));
        assert!(all_v4.contains(ip("::ffff:203.0.113.1")));
        assert!(!all_v4.contains(ip("::1")));
        let v6 = net("2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("192.0.2.1")));
        assert!(net("::/0").contains(ip("::1")));
        assert!(!net("::/0").contains(ip("::ffff:192.0.2.1")));
    }

    #[test]
    fn contains_is_right_for_a_hand_built_value() {
        // Host bits set and a prefix longer than the address: still sound.
        let odd = Net {
            addr: ip("192.0.2.77"),
            prefix: 24,
        };
        assert!(odd.contains(ip("192.0.2.1")));
        let too_long = Net {
            addr: ip("192.0.2.77"),
            prefix: 200,
        };
        assert!(too_long.contains(ip("192.0.2.77")));
        assert!(!too_long.contains(ip("192.0.2.78")));
        let mapped = Net {
            addr: ip("::ffff:192.0.2.0"),
            prefix: 120,
        };
        assert!(mapped.contains(ip("192.0.2.5")));
        assert_eq!(Net::new(ip("192.0.2.1"), 33), None);
        assert_eq!(Net::new(ip("::1"), 129), None);
    }
}
