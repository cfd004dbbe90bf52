//! A compiled first-match classifier whose lookup cost does not grow with the
//! number of rules.
//!
//! # Design
//!
//! Each of the five fields is cut into *equivalence classes*: maximal runs of
//! values that match exactly the same set of rules. Every class owns one
//! deduplicated rule bitset (bit `i` = rule `i` matches this field value),
//! preceded by an *aggregate bit vector* (ABV, Baboescu & Varghese 2001): bit
//! `j` of the aggregate is set when word `j` of the bitset is non-zero.
//!
//! A lookup maps each field value to its class:
//! - protocol: a 256-entry table;
//! - ports: a direct 65536-entry table of class ids;
//! - addresses, IPv4 (the `::ffff:0:0/96` block of the unified space): a
//!   65536-entry table indexed by the top 16 bits. An entry is either the
//!   class itself (the /16 lies within one class; one memory access) or a
//!   pointer to a short sorted segment of low-16-bit boundaries searched
//!   branch-free;
//! - addresses, IPv6 (everything else): a sorted boundary array, binary
//!   searched.
//!
//! It then ANDs the five aggregates, and only for words whose aggregate bit
//! survives ANDs the five bitset words. Rules are in evaluation order, so the
//! lowest set bit of the first non-zero word is the answer. With fewer than
//! 4097 rules the aggregate is a single `u64`, and in practice the first
//! candidate word holds the match, so a lookup is about a dozen mostly
//! cache-resident loads whatever the rule count.
//!
//! Lookups do not allocate.

use std::collections::HashMap;

use crate::addr::{V4_BASE, V4_LAST};
use crate::eval::Classifier;
use crate::flow::FlowKey;
use crate::resolve::ResolvedRule;

/// Flag in a first-level IPv4 entry: the low 31 bits index a segment.
const SEGMENT: u32 = 0x8000_0000;

/// The deduplicated `[aggregate | bitset]` blocks of one field.
#[derive(Clone, Debug, Default)]
struct SetStore {
    data: Vec<u64>,
}

/// Interns bitsets into a [`SetStore`] during a build.
struct Interner {
    words: usize,
    agg: usize,
    ids: HashMap<Vec<u64>, u32>,
    store: SetStore,
}

impl Interner {
    fn new(words: usize, agg: usize) -> Self {
        Interner {
            words,
            agg,
            ids: HashMap::new(),
            store: SetStore::default(),
        }
    }

    fn intern(&mut self, bits: &[u64]) -> u32 {
        debug_assert_eq!(bits.len(), self.words);
        if let Some(&id) = self.ids.get(bits) {
            return id;
        }
        let id = u32::try_from(self.ids.len()).expect("fewer than 2^32 classes");
        assert!(id < SEGMENT, "fewer than 2^31 classes");
        let mut agg = vec![0u64; self.agg];
        for (j, w) in bits.iter().enumerate() {
            if *w != 0 {
                agg[j / 64] |= 1 << (j % 64);
            }
        }
        self.store.data.extend_from_slice(&agg);
        self.store.data.extend_from_slice(bits);
        self.ids.insert(bits.to_vec(), id);
        id
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Elementary intervals of one field over `0..=max`: `bounds[i]` starts the
/// interval of class `classes[i]`; `bounds[0] == 0`. Adjacent intervals have
/// different classes.
struct Intervals {
    bounds: Vec<u128>,
    classes: Vec<u32>,
}

/// Sweeps the per-rule inclusive ranges of one field into elementary
/// intervals, interning each interval's rule set.
fn sweep(ranges: &[Vec<(u128, u128)>], interner: &mut Interner) -> Intervals {
    // (position, is_start, rule): at one position, ends (false) sort before
    // starts (true), so a rule leaving and another entering both apply.
    let mut events: Vec<(u128, bool, u32)> = Vec::new();
    for (i, rs) in ranges.iter().enumerate() {
        for &(lo, hi) in rs {
            if lo > hi {
                continue;
            }
            events.push((lo, true, i as u32));
            if let Some(end) = hi.checked_add(1) {
                events.push((end, false, i as u32));
            }
        }
    }
    events.sort_unstable();
    let mut bits = vec![0u64; interner.words];
    let mut out = Intervals {
        bounds: Vec::new(),
        classes: Vec::new(),
    };
    let mut push = |pos: u128, bits: &[u64], out: &mut Intervals| {
        let c = interner.intern(bits);
        if out.classes.last() != Some(&c) {
            out.bounds.push(pos);
            out.classes.push(c);
        }
    };
    let mut k = 0;
    if events.first().map(|e| e.0) != Some(0) {
        push(0, &bits, &mut out);
    }
    while k < events.len() {
        let pos = events[k].0;
        while k < events.len() && events[k].0 == pos {
            let (_, start, r) = events[k];
            let (w, b) = (r as usize / 64, r % 64);
            if start {
                bits[w] |= 1 << b;
            } else {
                bits[w] &= !(1 << b);
            }
            k += 1;
        }
        push(pos, &bits, &mut out);
    }
    out
}

/// Class lookup for one address field.
#[derive(Clone, Debug)]
struct AddrTable {
    /// Indexed by bits 31..16 of an IPv4 address: a class id, or
    /// `SEGMENT | offset` into `v4_segments`.
    v4_top: Vec<u32>,
    /// Segments: `n`, then `n` sorted low-16-bit boundaries (the first is 0),
    /// then `n` class ids.
    v4_segments: Vec<u32>,
    /// Boundaries outside the IPv4 block (plus the block's own two edges).
    v6_bounds: Vec<u128>,
    v6_classes: Vec<u32>,
    sets: SetStore,
    n_classes: usize,
}

impl AddrTable {
    fn build(ranges: &[Vec<(u128, u128)>], words: usize, agg: usize) -> Self {
        let mut interner = Interner::new(words, agg);
        let iv = sweep(ranges, &mut interner);
        let class_at = |x: u128| iv.classes[iv.bounds.partition_point(|&b| b <= x) - 1];

        // IPv6 part: every boundary not strictly inside the IPv4 block, plus
        // the block's two edges, so that for a key outside the block the last
        // boundary <= key starts the same class as in the full table.
        let mut cut: Vec<u128> = iv.bounds.iter().copied().filter(|&b| b <= V4_BASE || b > V4_LAST).collect();
        cut.push(V4_BASE);
        cut.push(V4_LAST + 1);
        cut.sort_unstable();
        cut.dedup();
        let mut v6_bounds: Vec<u128> = Vec::with_capacity(cut.len());
        let mut v6_classes: Vec<u32> = Vec::with_capacity(cut.len());
        for b in cut {
            let c = class_at(b);
            if v6_classes.last() != Some(&c) {
                v6_bounds.push(b);
                v6_classes.push(c);
            }
        }

        // IPv4 part.
        let mut v4_top = vec![0u32; 1 << 16];
        let mut v4_segments = Vec::new();
        let mut i = iv.bounds.partition_point(|&b| b <= V4_BASE) - 1;
        for (block, entry) in v4_top.iter_mut().enumerate() {
            let base = V4_BASE + ((block as u128) << 16);
            let end = base + 0xffff;
            while i + 1 < iv.bounds.len() && iv.bounds[i + 1] <= base {
                i += 1;
            }
            let mut j = i + 1;
            while j < iv.bounds.len() && iv.bounds[j] <= end {
                j += 1;
            }
            if j == i + 1 {
                *entry = iv.classes[i];
            } else {
                let off = v4_segments.len();
                assert!(off < SEGMENT as usize, "IPv4 segment table too large");
                *entry = SEGMENT | off as u32;
                let n = j - i;
                v4_segments.push(n as u32);
                v4_segments.push(0);
                v4_segments.extend(iv.bounds[i + 1..j].iter().map(|&b| (b - base) as u32));
                v4_segments.extend_from_slice(&iv.classes[i..j]);
                i = j - 1;
            }
        }
        AddrTable {
            v4_top,
            v4_segments,
            v6_bounds,
            v6_classes,
            n_classes: interner.len(),
            sets: interner.store,
        }
    }

    #[inline(always)]
    fn class(&self, a: u128) -> usize {
        if (a >> 32) == (V4_BASE >> 32) {
            let e = self.v4_top[((a >> 16) & 0xffff) as usize];
            if e & SEGMENT == 0 {
                return e as usize;
            }
            self.segment_class((e & !SEGMENT) as usize, (a & 0xffff) as u32)
        } else {
            self.v6_classes[self.v6_bounds.partition_point(|&b| b <= a) - 1] as usize
        }
    }

    #[inline(always)]
    fn segment_class(&self, off: usize, low: u32) -> usize {
        let n = self.v4_segments[off] as usize;
        let bounds = &self.v4_segments[off + 1..off + 1 + n];
        // Branch-free search for the last boundary <= low (bounds[0] == 0).
        let mut base = 0;
        let mut len = n;
        while len > 1 {
            let half = len / 2;
            if bounds[base + half] <= low {
                base += half;
            }
            len -= half;
        }
        self.v4_segments[off + 1 + n + base] as usize
    }

    fn memory_bytes(&self) -> usize {
        self.v4_top.len() * 4
            + self.v4_segments.len() * 4
            + self.v6_bounds.len() * 16
            + self.v6_classes.len() * 4
            + self.sets.data.len() * 8
    }
}

/// Class lookup for one port field: a direct table.
#[derive(Clone, Debug)]
struct PortTable {
    class: Vec<u16>,
    sets: SetStore,
    n_classes: usize,
}

impl PortTable {
    fn build(ranges: &[Vec<(u128, u128)>], words: usize, agg: usize) -> Self {
        let mut interner = Interner::new(words, agg);
        let iv = sweep(ranges, &mut interner);
        let mut class = vec![0u16; 1 << 16];
        for (i, &b) in iv.bounds.iter().enumerate() {
            let end = iv.bounds.get(i + 1).map_or(1 << 16, |&e| e as usize);
            let c = u16::try_from(iv.classes[i]).expect("at most 65536 port classes");
            class[b as usize..end].fill(c);
        }
        PortTable {
            class,
            n_classes: interner.len(),
            sets: interner.store,
        }
    }
}

/// Statistics of a compiled classifier, for tuning and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompiledStats {
    pub rules: usize,
    /// `u64` words per rule bitset.
    pub words: usize,
    /// Classes per field: protocol, source address, source port, destination
    /// address, destination port.
    pub classes: [usize; 5],
    /// Heap bytes of the lookup structures.
    pub memory_bytes: usize,
}

/// A first-match classifier compiled from rules in evaluation order; see the
/// module documentation for the design. Answers exactly like
/// [`crate::LinearClassifier`] over the same rules.
#[derive(Clone, Debug)]
pub struct CompiledClassifier {
    rules: usize,
    words: usize,
    agg: usize,
    stride: usize,
    proto: [u16; 256],
    proto_sets: SetStore,
    n_proto: usize,
    sport: PortTable,
    dport: PortTable,
    src: AddrTable,
    dst: AddrTable,
}

impl CompiledClassifier {
    /// Compiles rules given in evaluation order.
    pub fn new(rules: &[ResolvedRule]) -> Self {
        let words = rules.len().div_ceil(64).max(1);
        let agg = words.div_ceil(64);
        let stride = agg + words;

        let mut pi = Interner::new(words, agg);
        let mut proto = [0u16; 256];
        let mut bits = vec![0u64; words];
        for (p, slot) in proto.iter_mut().enumerate() {
            bits.fill(0);
            for (i, r) in rules.iter().enumerate() {
                if r.protocol.matches(p as u8) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            *slot = pi.intern(&bits) as u16;
        }

        let ports = |f: fn(&ResolvedRule) -> &crate::resolve::PortSet| -> Vec<Vec<(u128, u128)>> {
            rules
                .iter()
                .map(|r| f(r).ranges().iter().map(|pr| (pr.lo as u128, pr.hi as u128)).collect())
                .collect()
        };
        let addrs = |f: fn(&ResolvedRule) -> &crate::addr::AddrSet| -> Vec<Vec<(u128, u128)>> {
            rules.iter().map(|r| f(r).ranges().to_vec()).collect()
        };
        let sport = PortTable::build(&ports(|r| &r.source_ports), words, agg);
        let dport = PortTable::build(&ports(|r| &r.destination_ports), words, agg);
        let src = AddrTable::build(&addrs(|r| &r.source), words, agg);
        let dst = AddrTable::build(&addrs(|r| &r.destination), words, agg);
        CompiledClassifier {
            rules: rules.len(),
            words,
            agg,
            stride,
            proto,
            n_proto: pi.len(),
            proto_sets: pi.store,
            sport,
            dport,
            src,
            dst,
        }
    }

    /// Number of rules compiled.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// True when compiled from no rules (nothing ever matches).
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    /// Sizes, for tuning.
    pub fn stats(&self) -> CompiledStats {
        CompiledStats {
            rules: self.rules,
            words: self.words,
            classes: [
                self.n_proto,
                self.src.n_classes,
                self.sport.n_classes,
                self.dst.n_classes,
                self.dport.n_classes,
            ],
            memory_bytes: self.proto_sets.data.len() * 8
                + 512
                + self.sport.class.len() * 2
                + self.sport.sets.data.len() * 8
                + self.dport.class.len() * 2
                + self.dport.sets.data.len() * 8
                + self.src.memory_bytes()
                + self.dst.memory_bytes(),
        }
    }

    #[inline(always)]
    fn block<'a>(&self, store: &'a SetStore, class: usize) -> &'a [u64] {
        let o = class * self.stride;
        &store.data[o..o + self.stride]
    }

    /// Classifies many flows: `out[i]` is the first match of `keys[i]`.
    ///
    /// # Panics
    /// When `out` is shorter than `keys`.
    pub fn first_match_batch(&self, keys: &[FlowKey], out: &mut [Option<usize>]) {
        assert!(out.len() >= keys.len(), "output slice shorter than keys");
        for (k, o) in keys.iter().zip(out.iter_mut()) {
            *o = self.first_match(k);
        }
    }
}

impl Classifier for CompiledClassifier {
    #[inline]
    fn first_match(&self, key: &FlowKey) -> Option<usize> {
        let p = self.block(&self.proto_sets, self.proto[key.protocol as usize] as usize);
        let sp = self.block(&self.sport.sets, self.sport.class[key.source_port as usize] as usize);
        let dp = self.block(&self.dport.sets, self.dport.class[key.destination_port as usize] as usize);
        let s = self.block(&self.src.sets, self.src.class(key.source));
        let d = self.block(&self.dst.sets, self.dst.class(key.destination));
        let agg = self.agg;
        for a in 0..agg {
            let mut m = p[a] & sp[a] & dp[a] & s[a] & d[a];
            while m != 0 {
                let w = a * 64 + m.trailing_zeros() as usize;
                let i = agg + w;
                let x = p[i] & sp[i] & dp[i] & s[i] & d[i];
                if x != 0 {
                    return Some(w * 64 + x.trailing_zeros() as usize);
                }
                m &= m - 1;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{AddrSet, IpPrefix};
    use crate::model::{Access, PortRange, Protocol};
    use crate::resolve::PortSet;
    use crate::LinearClassifier;

    fn rule(i: usize, proto: Protocol, src: &str, sp: (u16, u16), dst: &str, dp: (u16, u16)) -> ResolvedRule {
        let set = |s: &str| {
            if s == "*" {
                AddrSet::any()
            } else {
                AddrSet::from_prefixes(s.split(',').map(|p| p.parse::<IpPrefix>().unwrap()))
            }
        };
        ResolvedRule {
            position: i,
            priority: 100 + i as u32,
            access: if i % 2 == 0 { Access::Allow } else { Access::Deny },
            protocol: proto,
            source: set(src),
            source_ports: PortSet::new(&[PortRange { lo: sp.0, hi: sp.1 }]),
            destination: set(dst),
            destination_ports: PortSet::new(&[PortRange { lo: dp.0, hi: dp.1 }]),
        }
    }

    fn key(proto: u8, src: &str, sp: u16, dst: &str, dp: u16) -> FlowKey {
        crate::Flow {
            protocol: proto,
            source: src.parse().unwrap(),
            source_port: sp,
            destination: dst.parse().unwrap(),
            destination_port: dp,
        }
        .key()
    }

    #[test]
    fn small_set_agrees_with_linear() {
        let rules = vec![
            rule(0, Protocol::Tcp, "10.0.0.0/8", (0, 65535), "10.1.2.3", (22, 22)),
            rule(1, Protocol::Udp, "10.0.0.5,10.0.0.7", (53, 53), "*", (0, 65535)),
            rule(2, Protocol::Icmp, "2001:db8::/32", (0, 65535), "::/0", (0, 65535)),
            rule(3, Protocol::Any, "0.0.0.0/0", (1000, 2000), "10.1.0.0/16", (0, 65535)),
            rule(4, Protocol::Any, "*", (0, 65535), "*", (0, 65535)),
        ];
        let c = CompiledClassifier::new(&rules);
        let l = LinearClassifier::new(rules.clone());
        let keys = [
            key(6, "10.9.9.9", 1, "10.1.2.3", 22),
            key(6, "10.9.9.9", 1, "10.1.2.3", 23),
            key(17, "10.0.0.5", 53, "2001:db8::1", 9),
            key(17, "10.0.0.6", 53, "2001:db8::1", 9),
            key(58, "2001:db8::1", 0, "2001:db9::1", 0),
            key(1, "2001:db8::1", 0, "1.2.3.4", 0),
            key(47, "1.1.1.1", 1500, "10.1.255.255", 7),
            key(47, "1.1.1.1", 2001, "10.1.255.255", 7),
        ];
        for k in &keys {
            assert_eq!(c.first_match(k), l.first_match(k), "{k:?}");
        }
        let mut out = vec![None; keys.len()];
        c.first_match_batch(&keys, &mut out);
        assert_eq!(out, keys.iter().map(|k| l.first_match(k)).collect::<Vec<_>>());
        assert_eq!(c.first_match(&key(6, "10.9.9.9", 1, "10.1.2.3", 22)), Some(0));
        assert_eq!(c.first_match(&key(47, "1.1.1.1", 2001, "10.1.255.255", 7)), Some(4));
    }

    #[test]
    fn empty_rule_list_matches_nothing() {
        let c = CompiledClassifier::new(&[]);
        assert!(c.is_empty());
        assert_eq!(c.first_match(&FlowKey::default()), None);
    }
}
