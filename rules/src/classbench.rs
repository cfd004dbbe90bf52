//! ClassBench filter sets as NSG rules, and query flows for them: the
//! benchmark and test corpus of the compiled classifier. Pure: parses a
//! `&str`, the caller reads the file.
//!
//! # Format
//!
//! One filter a line (Taylor & Turner's ClassBench `db_generator` output, as
//! in the NeuroCuts sets), fields separated by tabs (shown as `<TAB>`),
//! usually with a trailing tab:
//!
//! ```text
//! @176.19.181.33/32<TAB>90.145.23.162/32<TAB>0 : 65535<TAB>1550 : 1550<TAB>0x06/0xFF<TAB>0x0000/0x0200<TAB>
//! ```
//!
//! source prefix (after `@`), destination prefix, source port range `lo : hi`,
//! destination port range, protocol `value/mask`, and TCP flags `value/mask`
//! (optional; NSG rules have no flags, so they are ignored). Blank lines are
//! skipped.
//!
//! # Conversion (a benchmark conversion, not an Azure-valid NSG)
//!
//! - Filter `i` (0-based, in file order, which is priority order) becomes the
//!   user rule `cb<i>` with priority `100 + i`, direction Inbound. Azure caps
//!   user priorities at 4096, so sets of more than 3997 filters get priorities
//!   above that; the classifiers only care about the order.
//! - Access: every third rule (`i % 3 == 2`) is Deny, the others Allow, so
//!   both decisions are exercised.
//! - Protocol: mask `0x00` is `*`; with mask `0xFF`, 6 is Tcp, 17 Udp, 1 and
//!   58 Icmp, 50 Esp, 51 Ah. Any other protocol (ClassBench sets use 47, GRE)
//!   or a partial mask cannot be written in an NSG and is widened to `*`, the
//!   nearest representable superset; [`ClassBenchSet::widened`] lists those
//!   rules.
//! - Addresses are IPv4 prefixes as written (`0.0.0.0/0` stays IPv4-only);
//!   port ranges as written (`0 : 65535` is `*`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::addr::{IpPrefix, V4_BASE};
use crate::error::ResolveError;
use crate::flow::FlowKey;
use crate::model::{Access, AddressPrefix, Direction, NetworkSecurityGroup, PortRange, Protocol, RuleKind, SecurityRule, WrittenFields};
use crate::resolve::{AddressContext, ResolvedRule};

/// A malformed ClassBench line.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("ClassBench line {line}: {message}")]
pub struct ClassBenchError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// A converted filter set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassBenchSet {
    /// User rules in priority order.
    pub rules: Vec<SecurityRule>,
    /// Indices of rules whose protocol was widened to `*`.
    pub widened: Vec<usize>,
}

/// Parses a ClassBench filter set into NSG rules (see the module docs).
pub fn parse(text: &str) -> Result<ClassBenchSet, ClassBenchError> {
    let mut set = ClassBenchSet {
        rules: Vec::new(),
        widened: Vec::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let err = |message: String| ClassBenchError { line: line_no, message };
        let body = t
            .strip_prefix('@')
            .ok_or_else(|| err(format!("expected a filter starting with '@', found {t:?}")))?;
        let fields: Vec<&str> = body.split('\t').map(str::trim).filter(|f| !f.is_empty()).collect();
        if fields.len() != 5 && fields.len() != 6 {
            return Err(err(format!(
                "expected 5 or 6 tab-separated fields (src, dst, sport, dport, proto[, flags]), found {}",
                fields.len()
            )));
        }
        let prefix = |what: &str, s: &str| -> Result<IpPrefix, ClassBenchError> {
            let (a, l) = s
                .split_once('/')
                .ok_or_else(|| err(format!("{what} {s:?} is not an IPv4 prefix a.b.c.d/len")))?;
            let addr: Ipv4Addr = a
                .parse()
                .map_err(|_| err(format!("{what} {s:?} is not an IPv4 prefix a.b.c.d/len")))?;
            let len: u8 = l.parse().map_err(|_| err(format!("{what} {s:?}: bad prefix length")))?;
            IpPrefix::new(IpAddr::V4(addr), len).ok_or_else(|| err(format!("{what} {s:?}: prefix length above 32")))
        };
        let ports = |what: &str, s: &str| -> Result<PortRange, ClassBenchError> {
            let bad = || err(format!("{what} {s:?} is not a port range 'lo : hi'"));
            let (a, b) = s.split_once(':').ok_or_else(bad)?;
            let lo: u16 = a.trim().parse().map_err(|_| bad())?;
            let hi: u16 = b.trim().parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(err(format!("{what} {s:?}: lo above hi")));
            }
            Ok(PortRange { lo, hi })
        };
        let hex = |s: &str| -> Option<u32> {
            let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
            u32::from_str_radix(h, 16).ok()
        };
        let src = prefix("source", fields[0])?;
        let dst = prefix("destination", fields[1])?;
        let sport = ports("source port", fields[2])?;
        let dport = ports("destination port", fields[3])?;
        let (pv, pm) = fields[4]
            .split_once('/')
            .and_then(|(v, m)| Some((hex(v)?, hex(m)?)))
            .filter(|&(v, m)| v <= 0xff && m <= 0xff)
            .ok_or_else(|| err(format!("protocol {:?} is not value/mask such as 0x06/0xFF", fields[4])))?;
        if let Some(f) = fields.get(5) {
            f.split_once('/')
                .and_then(|(v, m)| Some((hex(v)?, hex(m)?)))
                .ok_or_else(|| err(format!("flags {f:?} are not value/mask such as 0x0000/0x0200")))?;
        }
        let i = set.rules.len();
        let protocol = match (pv, pm) {
            (_, 0) => Protocol::Any,
            (6, 0xff) => Protocol::Tcp,
            (17, 0xff) => Protocol::Udp,
            (1 | 58, 0xff) => Protocol::Icmp,
            (50, 0xff) => Protocol::Esp,
            (51, 0xff) => Protocol::Ah,
            _ => {
                set.widened.push(i);
                Protocol::Any
            }
        };
        set.rules.push(SecurityRule {
            name: format!("cb{i}"),
            id: None,
            kind: RuleKind::User,
            description: None,
            priority: 100 + i as u32,
            direction: Direction::Inbound,
            access: if i % 3 == 2 { Access::Deny } else { Access::Allow },
            protocol,
            source_address_prefixes: vec![AddressPrefix::Prefix(src)],
            source_port_ranges: vec![sport],
            destination_address_prefixes: vec![AddressPrefix::Prefix(dst)],
            destination_port_ranges: vec![dport],
            source_application_security_groups: vec![],
            destination_application_security_groups: vec![],
            written: WrittenFields {
                source_address_prefix: Some(src.to_string()),
                destination_address_prefix: Some(dst.to_string()),
                source_port_range: Some(sport.to_string()),
                destination_port_range: Some(dport.to_string()),
                ..WrittenFields::default()
            },
        });
    }
    Ok(set)
}

/// Resolves rules in the given order with an empty [`AddressContext`]
/// (no tags, no ASGs); `position` is the index in `rules`. Fails only for
/// rules that use tags or application security groups.
pub fn resolve_rules(rules: &[SecurityRule]) -> Result<Vec<ResolvedRule>, ResolveError> {
    let ctx = AddressContext::default();
    let nsg = NetworkSecurityGroup {
        id: "classbench".into(),
        name: "classbench".into(),
        resource_guid: None,
        location: None,
        security_rules: Vec::new(),
        default_security_rules: Vec::new(),
    };
    rules.iter().enumerate().map(|(i, r)| ctx.resolve_rule(&nsg, r, i)).collect()
}

/// Parses a ClassBench set straight to resolved rules in evaluation order.
pub fn parse_resolved(text: &str) -> Result<Vec<ResolvedRule>, ClassBenchError> {
    let set = parse(text)?;
    // Prefix-only rules cannot fail to resolve.
    Ok(resolve_rules(&set.rules).expect("ClassBench rules use no tags or ASGs"))
}

/// A small deterministic generator (xorshift64*), enough for query flows.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator; any seed works (0 is remapped).
    pub fn new(seed: u64) -> Self {
        XorShift((seed ^ 0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The next 128 random bits.
    pub fn next_u128(&mut self) -> u128 {
        (self.next_u64() as u128) << 64 | self.next_u64() as u128
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn in_range(&mut self, lo: u128, hi: u128) -> u128 {
        match (hi - lo).checked_add(1) {
            None => self.next_u128(),
            Some(span) => lo + self.next_u128() % span,
        }
    }
}

/// Share of [`generate_flows`] output drawn uniformly, in 1/16ths.
const UNIFORM_SIXTEENTHS: u64 = 2;

/// Query flows for a rule set, deterministic in `seed`.
///
/// About 7/8 are trace-like (as ClassBench's `trace_generator`): pick a rule
/// at random and a random point inside each of its fields (one of its ranges
/// at random; a range endpoint one time in eight, to hit boundaries; for
/// protocol `*`, one of TCP, UDP, ICMP, GRE or a random number). The other
/// 1/8 are uniform: random protocol, ports and addresses (IPv4 nine times in
/// ten, else IPv6).
pub fn generate_flows(rules: &[ResolvedRule], n: usize, seed: u64) -> Vec<FlowKey> {
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if rules.is_empty() || rng.below(16) < UNIFORM_SIXTEENTHS {
            out.push(uniform_flow(&mut rng));
            continue;
        }
        let r = &rules[rng.below(rules.len() as u64) as usize];
        let protocol = match r.protocol {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => [1, 58][rng.below(2) as usize],
            Protocol::Esp => 50,
            Protocol::Ah => 51,
            Protocol::Any => [6, 17, 1, 47, rng.next_u64() as u8][rng.below(5) as usize],
        };
        let fallback = V4_BASE | rng.next_u64() as u32 as u128;
        let mut point = |ranges: &[(u128, u128)], fallback: u128| -> u128 {
            if ranges.is_empty() {
                return fallback;
            }
            let (lo, hi) = ranges[rng.below(ranges.len() as u64) as usize];
            match rng.below(16) {
                0 => lo,
                1 => hi,
                _ => rng.in_range(lo, hi),
            }
        };
        let ports =
            |p: &crate::resolve::PortSet| -> Vec<(u128, u128)> { p.ranges().iter().map(|r| (r.lo as u128, r.hi as u128)).collect() };
        let source = point(r.source.ranges(), fallback);
        let destination = point(r.destination.ranges(), fallback);
        let source_port = point(&ports(&r.source_ports), 0) as u16;
        let destination_port = point(&ports(&r.destination_ports), 0) as u16;
        out.push(FlowKey {
            protocol,
            source,
            source_port,
            destination,
            destination_port,
        });
    }
    out
}

fn uniform_flow(rng: &mut XorShift) -> FlowKey {
    let protocol = [6, 17, 1, 58, 47, 50, 51, rng.next_u64() as u8][rng.below(8) as usize];
    let addr = |rng: &mut XorShift| {
        if rng.below(10) == 0 {
            u128::from(Ipv6Addr::from(rng.next_u128()))
        } else {
            V4_BASE | rng.next_u64() as u32 as u128
        }
    };
    let source = addr(rng);
    let destination = addr(rng);
    FlowKey {
        protocol,
        source,
        source_port: rng.next_u64() as u16,
        destination,
        destination_port: rng.next_u64() as u16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "@176.19.181.33/32\t90.145.23.162/32\t0 : 65535\t1550 : 1550\t0x06/0xFF\t0x0000/0x0200\t\n\
                       @0.0.0.0/0\t72.0.0.0/6\t0 : 65535\t0 : 65535\t0x2f/0xFF\t0x0000/0x0000\t\n";

    #[test]
    fn parses_lines() {
        let s = parse(TWO).unwrap();
        assert_eq!(s.rules.len(), 2);
        let r = &s.rules[0];
        assert_eq!(r.protocol, Protocol::Tcp);
        assert_eq!(r.priority, 100);
        assert_eq!(r.access, Access::Allow);
        assert_eq!(
            r.source_address_prefixes,
            vec![AddressPrefix::Prefix("176.19.181.33/32".parse().unwrap())]
        );
        assert_eq!(r.destination_port_ranges, vec![PortRange::single(1550)]);
        assert_eq!(s.rules[1].protocol, Protocol::Any);
        assert_eq!(s.widened, vec![1]);
        let resolved = parse_resolved(TWO).unwrap();
        assert_eq!(resolved[1].position, 1);
        assert!(resolved[1].source.contains("8.8.8.8".parse().unwrap()));
        assert!(!resolved[1].source.contains("2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("\n@1.2.3.4/32\t5.6.7.8/32\t0 : 65535\t80 : 79\t0x06/0xFF\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.to_string().contains("lo above hi"), "{e}");
        let e = parse("@1.2.3.4/33\t5.6.7.8/32\t0 : 65535\t80 : 80\t0x06/0xFF\n").unwrap_err();
        assert_eq!(e.to_string(), "ClassBench line 1: source \"1.2.3.4/33\": prefix length above 32");
        assert_eq!(parse("1.2.3.4/32\t5.6.7.8/32\t0 : 1\t0 : 1\t0x06/0xFF").unwrap_err().line, 1);
        assert!(parse("@1.2.3.4/32\t5.6.7.8/32\t0 : 1\t0 : 1").is_err());
        assert!(parse("@1.2.3.4/32\t5.6.7.8/32\t0 : 1\t0 : 1\t6/0xFF").is_err());
    }

    #[test]
    fn flows_are_deterministic_and_mostly_hit() {
        let rules = parse_resolved(TWO).unwrap();
        let a = generate_flows(&rules, 1000, 7);
        assert_eq!(a, generate_flows(&rules, 1000, 7));
        assert_ne!(a, generate_flows(&rules, 1000, 8));
        let hits = a.iter().filter(|k| rules.iter().any(|r| r.matches(k))).count();
        assert!(hits > 800, "{hits}");
    }
}
