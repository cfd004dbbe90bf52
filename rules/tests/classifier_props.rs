//! The compiled classifier answers exactly like the linear reference: random
//! rule sets against random flows and flows at every rule boundary.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netwatch_rules::addr::{V4_BASE, V4_LAST};
use netwatch_rules::classbench::{generate_flows, XorShift};
use netwatch_rules::{
    Access, AddrSet, Classifier, CompiledClassifier, CrossProducts, FlowKey, IpPrefix, LinearClassifier, PortRange, PortSet, Protocol,
    ResolvedRule,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// Base addresses that prefixes are drawn around, so that rules overlap,
/// nest and abut. Includes IPv6 prefixes inside the IPv4-mapped block.
const V4_POOL: [u32; 6] = [0x0a00_0000, 0x0a00_00ff, 0x0a01_0000, 0xc0a8_0101, 0, u32::MAX];
const V6_POOL: [u128; 6] = [
    0x2001_0db8 << 96,
    0,
    V4_BASE | 0x0a00_0000, // ::ffff:10.0.0.0, an IPv6 spelling of IPv4 space
    0xfe80 << 112,
    u128::MAX,
    V4_BASE - 1,
];
const PORT_POOL: [u16; 8] = [0, 1, 22, 80, 443, 1024, 32768, 65535];

fn v4_prefix() -> impl Strategy<Value = IpPrefix> {
    (0..V4_POOL.len(), any::<u32>(), 0u32..=32, 0u8..=32).prop_map(|(i, noise, noise_bits, len)| {
        let mask = if noise_bits == 0 { 0 } else { u32::MAX >> (32 - noise_bits) };
        IpPrefix::new(IpAddr::V4(Ipv4Addr::from(V4_POOL[i] ^ (noise & mask & 0xffff_f0ff))), len).unwrap()
    })
}

fn v6_prefix() -> impl Strategy<Value = IpPrefix> {
    (0..V6_POOL.len(), any::<u128>(), 0u32..=128, 0u8..=128).prop_map(|(i, noise, noise_bits, len)| {
        let mask = if noise_bits == 0 { 0 } else { u128::MAX >> (128 - noise_bits) };
        IpPrefix::new(IpAddr::V6(Ipv6Addr::from(V6_POOL[i] ^ (noise & mask))), len).unwrap()
    })
}

fn addr_set() -> impl Strategy<Value = AddrSet> {
    prop_oneof![
        2 => Just(AddrSet::any()),
        1 => Just(AddrSet::empty()),
        12 => prop::collection::vec(prop_oneof![3 => v4_prefix(), 1 => v6_prefix()], 1..4).prop_map(AddrSet::from_prefixes),
    ]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        2 => Just(PortRange::ANY),
        3 => (0..PORT_POOL.len(), -2i32..=2).prop_map(|(i, d)| PortRange::single((PORT_POOL[i] as i32 + d).clamp(0, 65535) as u16)),
        3 => (0..PORT_POOL.len(), -2i32..=2, 0u32..3000).prop_map(|(i, d, w)| {
            let lo = (PORT_POOL[i] as i32 + d).clamp(0, 65535) as u16;
            PortRange { lo, hi: (lo as u32 + w).min(65535) as u16 }
        }),
        1 => any::<(u16, u16)>().prop_map(|(a, b)| PortRange { lo: a.min(b), hi: a.max(b) }),
    ]
}

fn port_set() -> impl Strategy<Value = PortSet> {
    prop_oneof![
        8 => prop::collection::vec(port_range(), 1..4).prop_map(|v| PortSet::new(&v)),
        1 => Just(PortSet::new(&[])),
    ]
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Icmp),
        Just(Protocol::Esp),
        Just(Protocol::Ah),
        Just(Protocol::Any)
    ]
}

fn rule() -> impl Strategy<Value = ResolvedRule> {
    (protocol(), addr_set(), port_set(), addr_set(), port_set(), any::<bool>()).prop_map(
        |(protocol, source, source_ports, destination, destination_ports, allow)| ResolvedRule {
            position: 0,
            priority: 0,
            access: if allow { Access::Allow } else { Access::Deny },
            protocol,
            source,
            source_ports,
            destination,
            destination_ports,
        },
    )
}

fn rules(max: usize) -> impl Strategy<Value = Vec<ResolvedRule>> {
    prop::collection::vec(rule(), 1..=max).prop_map(|mut v| {
        for (i, r) in v.iter_mut().enumerate() {
            r.position = i;
            r.priority = 100 + i as u32;
        }
        v
    })
}

/// Values at and around the edges of a set of inclusive ranges.
fn edges(ranges: impl Iterator<Item = (u128, u128)>, out: &mut Vec<u128>) {
    for (lo, hi) in ranges {
        out.extend([
            lo.wrapping_sub(1),
            lo,
            lo.wrapping_add(1),
            hi.wrapping_sub(1),
            hi,
            hi.wrapping_add(1),
        ]);
        // Edges of the /16 blocks the IPv4 first-level table is cut at.
        out.extend([lo & !0xffff, lo | 0xffff, hi & !0xffff, hi | 0xffff]);
    }
}

/// Random flows, all 256 protocols, and for every rule flows that sit on its
/// boundaries (endpoints +-1) in one field and inside it in the others.
fn probe_flows(rules: &[ResolvedRule], seed: u64) -> Vec<FlowKey> {
    let mut rng = XorShift::new(seed);
    let mut flows = generate_flows(rules, 300, seed);
    let base = flows.clone();
    for p in 0..=255u8 {
        let mut k = base[p as usize % base.len()];
        k.protocol = p;
        flows.push(k);
    }
    let special = [0, V4_BASE - 1, V4_BASE, V4_LAST, V4_LAST + 1, u128::MAX];
    for (i, r) in rules.iter().enumerate() {
        // A flow inside rule i (when it can match at all) to perturb.
        let inside = generate_flows(std::slice::from_ref(r), 8, seed ^ i as u64);
        let pick = |rng: &mut XorShift| inside[rng.below(inside.len() as u64) as usize];
        let mut v = Vec::new();
        edges(r.source.ranges().iter().copied(), &mut v);
        v.extend(special);
        for &a in &v {
            let mut k = pick(&mut rng);
            k.source = a;
            flows.push(k);
        }
        v.clear();
        edges(r.destination.ranges().iter().copied(), &mut v);
        v.extend(special);
        for &a in &v {
            let mut k = pick(&mut rng);
            k.destination = a;
            flows.push(k);
        }
        v.clear();
        edges(r.source_ports.ranges().iter().map(|p| (p.lo as u128, p.hi as u128)), &mut v);
        for &p in &v {
            let mut k = pick(&mut rng);
            k.source_port = p as u16;
            flows.push(k);
        }
        v.clear();
        edges(r.destination_ports.ranges().iter().map(|p| (p.lo as u128, p.hi as u128)), &mut v);
        for &p in &v {
            let mut k = pick(&mut rng);
            k.destination_port = p as u16;
            flows.push(k);
        }
    }
    flows
}

/// Both builds ([`CrossProducts`]) answer as the linear reference does.
fn check(rules: &[ResolvedRule], seed: u64) -> Result<(), TestCaseError> {
    let linear = LinearClassifier::new(rules.to_vec());
    let flows = probe_flows(rules, seed);
    for cross in [CrossProducts::Full, CrossProducts::Fields] {
        let compiled = CompiledClassifier::with_cross_products(rules, cross);
        let mut batch = vec![None; flows.len()];
        compiled.first_match_batch(&flows, &mut batch);
        for (k, b) in flows.iter().zip(&batch) {
            let want = linear.first_match(k);
            prop_assert_eq!(compiled.first_match(k), want, "{:?}, flow {:?}", cross, k);
            prop_assert_eq!(*b, want, "{:?}, batch, flow {:?}", cross, k);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn compiled_equals_linear_small(rules in rules(12), seed in any::<u64>()) {
        check(&rules, seed)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn compiled_equals_linear_large(rules in rules(300), seed in any::<u64>()) {
        check(&rules, seed)?;
    }
}

/// More than 4096 rules: the aggregate bit vector spans several words.
#[test]
fn compiled_equals_linear_multiword_aggregate() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 1,
        ..ProptestConfig::default()
    });
    let rules: Vec<ResolvedRule> = prop::collection::vec(rule(), 5000).new_tree(&mut runner).unwrap().current();
    let mut rules = rules;
    for (i, r) in rules.iter_mut().enumerate() {
        r.position = i;
    }
    let compiled = CompiledClassifier::new(&rules);
    let fields = CompiledClassifier::with_cross_products(&rules, CrossProducts::Fields);
    let linear = LinearClassifier::new(rules.clone());
    for k in generate_flows(&rules, 3000, 42) {
        assert_eq!(compiled.first_match(&k), linear.first_match(&k), "flow {k:?}");
        assert_eq!(fields.first_match(&k), linear.first_match(&k), "fields, flow {k:?}");
    }
}
