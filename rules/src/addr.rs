//! Address sets for rule matching.
//!
//! IPv4 and IPv6 live in one 128-bit space: an IPv4 address `a.b.c.d` is the
//! IPv4-mapped IPv6 address `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2). That lets one
//! interval table serve both families, while `0.0.0.0/0` still covers only
//! IPv4 and `*` covers both, as in Azure NSG rules.
//!
//! A genuine IPv6 address of the mapped block (a packet from `::ffff:10.0.0.4`
//! is an IPv6 packet, not an IPv4 one, and RFC 4291 keeps such addresses
//! off the wire) moves to the reserved block below it, `::fffe:0:0/96`
//! ([`V4_MAPPED_ALIAS`]): it then matches `*` and the IPv6 prefixes that
//! cover it, never an IPv4 prefix, and is not `Internet` (spec, Decision 2).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::PrefixError;

/// Start of the IPv4-mapped block `::ffff:0:0/96`.
pub const V4_BASE: u128 = 0xffff_0000_0000;
/// Last address of the IPv4-mapped block.
pub const V4_LAST: u128 = V4_BASE | 0xffff_ffff;

/// Where genuine IPv6 addresses of the IPv4-mapped block go in the unified
/// space: `::fffe:0:0/96`, IETF-reserved and unassigned (it shares the
/// values with its own addresses, which no network uses; listings show
/// them as the mapped addresses they stand for).
pub const V4_MAPPED_ALIAS: u128 = V4_BASE - (1 << 32);

/// An address in the unified 128-bit space.
#[inline]
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => V4_BASE | u32::from(v4) as u128,
        IpAddr::V6(v6) => {
            let v = u128::from(v6);
            if (V4_BASE..=V4_LAST).contains(&v) {
                v - (V4_BASE - V4_MAPPED_ALIAS)
            } else {
                v
            }
        }
    }
}

/// The address for a value of the unified space (IPv4 for the mapped block).
pub fn u128_to_ip(v: u128) -> IpAddr {
    if (V4_BASE..=V4_LAST).contains(&v) {
        IpAddr::V4(Ipv4Addr::from((v & 0xffff_ffff) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// An IP network in CIDR form, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    addr: IpAddr,
    len: u8,
}

impl IpPrefix {
    /// A prefix; host bits of `addr` are cleared. `None` when `len` is too long.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => {
                let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = if len == 0 { 0 } else { u128::MAX << (128 - len) };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        };
        Some(IpPrefix { addr, len })
    }

    /// When `text` (the string this prefix was parsed from) is a CIDR whose
    /// address has host bits set: the network it stands for (this prefix).
    /// `None` for a clean CIDR and for a bare address.
    pub fn host_bits_network(&self, text: &str) -> Option<IpPrefix> {
        let (addr, _) = text.trim().split_once('/')?;
        let addr: IpAddr = addr.trim().parse().ok()?;
        (addr != self.addr).then_some(*self)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for a zero-length prefix (`0.0.0.0/0`, `::/0`).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `ip` lies in this prefix (families must agree).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                u32::from(a) & m == u32::from(n)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                u128::from(a) & m == u128::from(n)
            }
            _ => false,
        }
    }

    /// The inclusive range this prefix covers in the unified space.
    pub fn range(&self) -> (u128, u128) {
        let lo = ip_to_u128(self.addr);
        let host_bits = match self.addr {
            IpAddr::V4(_) => 32 - self.len as u32,
            IpAddr::V6(_) => 128 - self.len as u32,
        };
        let span = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        (lo, lo | span)
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl std::str::FromStr for IpPrefix {
    type Err = PrefixError;
    /// Parses `10.0.0.0/24`, `10.0.0.4` (a /32), `2001:db8::/32` or
    /// `2001:db8::1`, written exactly: no whitespace, inside or around (Azure
    /// rejects it), and a length of digits only (not `+8`).
    fn from_str(s: &str) -> Result<Self, PrefixError> {
        if s.chars().any(char::is_whitespace) {
            return Err(PrefixError::Whitespace);
        }
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => {
                if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrefixError::Length);
                }
                // Digits only: too many of them is a length too long.
                (a, l.parse::<u8>().ok())
            }
            None => (s, None),
        };
        let addr: IpAddr = a.parse().map_err(|_| PrefixError::Address)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match (s.contains('/'), len) {
            (false, _) => max,
            (true, Some(l)) if l <= max => l,
            (true, _) => return Err(PrefixError::TooLong(max)),
        };
        IpPrefix::new(addr, len).ok_or(PrefixError::TooLong(max))
    }
}

/// A set of addresses as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrSet {
    ranges: Vec<(u128, u128)>,
}

impl AddrSet {
    /// The empty set.
    pub fn empty() -> Self {
        AddrSet { ranges: Vec::new() }
    }

    /// Every IPv4 and IPv6 address (`*`).
    pub fn any() -> Self {
        AddrSet {
            ranges: vec![(0, u128::MAX)],
        }
    }

    /// Every IPv4 address (`0.0.0.0/0`).
    pub fn all_v4() -> Self {
        AddrSet {
            ranges: vec![(V4_BASE, V4_LAST)],
        }
    }

    /// Every IPv6 address (`::/0`), the IPv4-mapped block excluded.
    pub fn all_v6() -> Self {
        AddrSet::any().difference(&AddrSet::all_v4())
    }

    /// The set of one prefix. An IPv6 prefix never includes the IPv4-mapped
    /// block, so `::/0` does not match IPv4 traffic.
    pub fn from_prefix(p: IpPrefix) -> Self {
        let r = AddrSet { ranges: vec![p.range()] };
        if p.addr().is_ipv6() && p.len() <= 96 {
            r.difference(&AddrSet::all_v4())
        } else {
            r
        }
    }

    /// The set of many prefixes.
    pub fn from_prefixes<I: IntoIterator<Item = IpPrefix>>(it: I) -> Self {
        let mut v: Vec<(u128, u128)> = Vec::new();
        let mut sets = Vec::new();
        for p in it {
            if p.addr().is_ipv6() && p.len() <= 96 {
                sets.push(AddrSet::from_prefix(p));
            } else {
                v.push(p.range());
            }
        }
        let mut s = AddrSet::from_ranges(v);
        for o in sets {
            s = s.union(&o);
        }
        s
    }

    /// Normalises arbitrary inclusive ranges.
    pub fn from_ranges(mut v: Vec<(u128, u128)>) -> Self {
        v.retain(|(a, b)| a <= b);
        v.sort_unstable();
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            if let Some(last) = out.last_mut() {
                if a <= last.1.saturating_add(1) {
                    if b > last.1 {
                        last.1 = b;
                    }
                    continue;
                }
            }
            out.push((a, b));
        }
        AddrSet { ranges: out }
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[(u128, u128)] {
        &self.ranges
    }

    /// True when no address is in the set.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// True when the set holds every address of both families.
    pub fn is_any(&self) -> bool {
        self.ranges == [(0, u128::MAX)]
    }

    /// Membership test by binary search.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_u128(ip_to_u128(ip))
    }

    /// Membership test on a unified-space value.
    pub fn contains_u128(&self, v: u128) -> bool {
        let i = self.ranges.partition_point(|r| r.1 < v);
        i < self.ranges.len() && self.ranges[i].0 <= v
    }

    /// Set union.
    pub fn union(&self, other: &AddrSet) -> AddrSet {
        let mut v = self.ranges.clone();
        v.extend_from_slice(&other.ranges);
        AddrSet::from_ranges(v)
    }

    /// Set difference `self \ other`.
    pub fn difference(&self, other: &AddrSet) -> AddrSet {
        let mut out = Vec::new();
        for &(mut a, b) in &self.ranges {
            let mut done = false;
            for &(c, d) in &other.ranges {
                if d < a || c > b {
                    continue;
                }
                if c > a {
                    out.push((a, c - 1));
                }
                if d >= b {
                    done = true;
                    break;
                }
                a = d + 1;
            }
            if !done {
                out.push((a, b));
            }
        }
        AddrSet { ranges: out }
    }

    /// The set as a minimal list of CIDR prefixes, IPv4 first as dotted quads.
    pub fn to_prefixes(&self) -> Vec<IpPrefix> {
        let mut out = Vec::new();
        for &(lo, hi) in &self.ranges {
            // Split the mapped block apart so IPv4 comes out as IPv4 prefixes.
            let pieces: Vec<(u128, u128)> = if lo < V4_BASE && hi > V4_LAST {
                vec![(lo, V4_BASE - 1), (V4_BASE, V4_LAST), (V4_LAST + 1, hi)]
            } else if lo < V4_BASE && hi >= V4_BASE {
                vec![(lo, V4_BASE - 1), (V4_BASE, hi)]
            } else if lo <= V4_LAST && hi > V4_LAST {
                vec![(lo, V4_LAST), (V4_LAST + 1, hi)]
            } else {
                vec![(lo, hi)]
            };
            for (mut a, b) in pieces {
                let v4 = (V4_BASE..=V4_LAST).contains(&a);
                loop {
                    // Largest aligned block starting at `a` that fits in [a, b].
                    let align = if a == 0 { 128 } else { a.trailing_zeros() };
                    let span_bits = if b - a == u128::MAX {
                        128
                    } else {
                        127 - (b - a + 1).leading_zeros()
                    };
                    let bits = align.min(span_bits);
                    let plen = 128 - bits;
                    let size_m1 = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
                    let p = if v4 {
                        IpPrefix::new(u128_to_ip(a), (plen - 96) as u8)
                    } else if a >= V4_MAPPED_ALIAS && a.saturating_add(size_m1) < V4_BASE {
                        // Mapped IPv6 addresses, written as they were given.
                        IpPrefix::new(IpAddr::V6(Ipv6Addr::from(a + (V4_BASE - V4_MAPPED_ALIAS))), plen as u8)
                    } else {
                        IpPrefix::new(IpAddr::V6(Ipv6Addr::from(a)), plen as u8)
                    };
                    if let Some(p) = p {
                        out.push(p);
                    }
                    match a.checked_add(size_m1) {
                        Some(end) if end < b => a = end + 1,
                        _ => break,
                    }
                }
            }
        }
        out.sort_by_key(|p| (p.addr().is_ipv6(), *p));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> IpPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn prefix_parse_and_mask() {
        assert_eq!(p("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(p("2001:db8::1/32").to_string(), "2001:db8::/32");
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0/8".parse::<IpPrefix>().is_err());
    }

    /// A prefix is written exactly, as Azure takes it: `u8::from_str`
    /// took `+8`, and each part was trimmed.
    #[test]
    fn prefix_parse_is_strict() {
        for (bad, why) in [
            ("10.0.0.0/+8", PrefixError::Length),
            ("10.0.0.0/", PrefixError::Length),
            ("10.0.0.0/8x", PrefixError::Length),
            ("10.0.0.0/-0", PrefixError::Length),
            ("10.0.0.0\n/8", PrefixError::Whitespace),
            ("10.0.0.0 /24", PrefixError::Whitespace),
            ("10.0.0.0/ 24", PrefixError::Whitespace),
            (" 10.0.0.0/24", PrefixError::Whitespace),
            ("10.0.0.0/24\t", PrefixError::Whitespace),
            ("10.0.0.0\u{a0}/24", PrefixError::Whitespace),
            ("10.0.0.0/33", PrefixError::TooLong(32)),
            ("10.0.0.0/256", PrefixError::TooLong(32)),
            ("2001:db8::/129", PrefixError::TooLong(128)),
            ("10.0.0/8", PrefixError::Address),
            ("/8", PrefixError::Address),
        ] {
            assert_eq!(bad.parse::<IpPrefix>(), Err(why), "{bad:?}");
        }
        assert_eq!(p("10.0.0.0/08").to_string(), "10.0.0.0/8");
        assert_eq!(p("::/0").to_string(), "::/0");
    }

    #[test]
    fn v6_any_excludes_v4() {
        let s = AddrSet::from_prefix(p("::/0"));
        assert!(!s.contains("1.2.3.4".parse().unwrap()));
        assert!(s.contains("2001:db8::1".parse().unwrap()));
        let s4 = AddrSet::from_prefix(p("0.0.0.0/0"));
        assert!(s4.contains("1.2.3.4".parse().unwrap()));
        assert!(!s4.contains("2001:db8::1".parse().unwrap()));
    }

    /// An IPv6 packet from `::ffff:10.0.2.4` is not IPv4 traffic from
    /// 10.0.2.4: IPv4 prefixes never match it, IPv6 prefixes covering it
    /// and `*` do, and the mapped prefix written as IPv6 matches it alone.
    #[test]
    fn mapped_ipv6_addresses_are_ipv6() {
        let mapped: IpAddr = "::ffff:10.0.2.4".parse().unwrap();
        let v4: IpAddr = "10.0.2.4".parse().unwrap();
        assert_ne!(ip_to_u128(mapped), ip_to_u128(v4));
        for v4_rule in ["10.0.2.4/32", "10.0.0.0/8", "0.0.0.0/0"] {
            assert!(!AddrSet::from_prefix(p(v4_rule)).contains(mapped), "{v4_rule}");
            assert!(AddrSet::from_prefix(p(v4_rule)).contains(v4), "{v4_rule}");
        }
        assert!(AddrSet::from_prefix(p("::/0")).contains(mapped));
        assert!(AddrSet::any().contains(mapped));
        let block = AddrSet::from_prefix(p("::ffff:10.0.0.0/104"));
        assert!(block.contains(mapped));
        assert!(!block.contains(v4));
        assert!(!AddrSet::from_prefix(p("2001:db8::/32")).contains(mapped));
        // Listed as written.
        let back: Vec<String> = block.to_prefixes().iter().map(|x| x.to_string()).collect();
        assert_eq!(back, ["::ffff:10.0.0.0/104"]);
    }

    #[test]
    fn prefixes_round_trip() {
        let s = AddrSet::from_prefixes([p("10.0.0.0/8"), p("11.0.0.0/8"), p("12.0.0.0/7"), p("2001:db8::/32")]);
        let back: Vec<String> = s.to_prefixes().iter().map(|x| x.to_string()).collect();
        assert_eq!(back, vec!["10.0.0.0/7", "12.0.0.0/7", "2001:db8::/32"]);
        let all: Vec<String> = AddrSet::all_v4().to_prefixes().iter().map(|x| x.to_string()).collect();
        assert_eq!(all, vec!["0.0.0.0/0"]);
    }

    #[test]
    fn difference_splits() {
        let s = AddrSet::all_v4().difference(&AddrSet::from_prefix(p("10.0.0.0/8")));
        assert!(!s.contains("10.1.1.1".parse().unwrap()));
        assert!(s.contains("9.255.255.255".parse().unwrap()));
        assert!(s.contains("11.0.0.0".parse().unwrap()));
    }
}
