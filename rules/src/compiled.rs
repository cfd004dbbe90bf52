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

    /// The offset of the block of `bits` in the store.
    fn intern(&mut self, bits: &[u64]) -> u32 {
        debug_assert_eq!(bits.len(), self.words);
        if let Some(&off) = self.ids.get(bits) {
            return off;
        }
        let off = u32::try_from(self.store.data.len())
            .ok()
            .filter(|&o| o <= PTR_MASK)
            .expect("rule bitsets fit in 2^27 words");
        let mut agg = vec![0u64; self.agg];
        for (j, w) in bits.iter().enumerate() {
            if *w != 0 {
                agg[j / 64] |= 1 << (j % 64);
            }
        }
        self.store.data.extend_from_slice(&agg);
        self.store.data.extend_from_slice(bits);
        self.ids.insert(bits.to_vec(), off);
        off
    }

    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// Elementary intervals of one field: `bounds[i]` starts the interval of the
/// class at offset `classes[i]`; `bounds[0] == 0`. Adjacent intervals have
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

/// Pointer encoding in multibit-trie tables: the low 27 bits are the index
/// of a child block, the high bits a shift applied to the next chunk of the
/// key. A full child block has 2^width entries and shift 0; a uniform child
/// (every key below it in one class) is a single entry, reached with shift
/// `width`, which maps every chunk to index 0. Lookups are thus branch-free.
const PTR_BITS: u32 = 27;
const PTR_MASK: u32 = (1 << PTR_BITS) - 1;

#[inline(always)]
fn step(table: &[u32], entry: u32, chunk: u32) -> u32 {
    table[((entry & PTR_MASK) + (chunk >> (entry >> PTR_BITS))) as usize]
}

/// A multibit trie over a 2^(sum of widths) key space, with deduplicated
/// blocks; the last level holds class offsets.
#[derive(Clone, Debug, Default)]
struct Trie {
    levels: Vec<Vec<u32>>,
}

struct TrieBuilder<'a> {
    iv: &'a Intervals,
    /// Where the key space starts in the interval space.
    origin: u128,
    widths: &'a [u32],
    levels: Vec<Vec<u32>>,
    blocks: Vec<HashMap<Vec<u32>, u32>>,
    uniform: Vec<HashMap<u32, u32>>,
}

impl TrieBuilder<'_> {
    fn index_at(&self, x: u128) -> usize {
        self.iv.bounds.partition_point(|&b| b <= x) - 1
    }

    fn push(&mut self, level: usize, entries: &[u32]) -> u32 {
        let base = self.levels[level].len();
        assert!(base + entries.len() <= PTR_MASK as usize, "trie level too large");
        self.levels[level].extend_from_slice(entries);
        base as u32
    }

    /// Pointer into `levels[level]` for a uniform subtree of class `c`.
    fn uniform(&mut self, level: usize, c: u32) -> u32 {
        if let Some(&p) = self.uniform[level].get(&c) {
            return p;
        }
        let entry = if level + 1 == self.levels.len() {
            c
        } else {
            self.uniform(level + 1, c)
        };
        let base = self.push(level, &[entry]);
        let p = base | (self.widths[level] << PTR_BITS);
        self.uniform[level].insert(c, p);
        p
    }

    /// Pointer into `levels[level]` for the subtree whose keys start at
    /// `start` (relative to `origin`).
    fn child(&mut self, level: usize, start: u64) -> u32 {
        let rest: u32 = self.widths[level..].iter().sum();
        let lo = self.origin + start as u128;
        let hi = lo + ((1u128 << rest) - 1);
        let i = self.index_at(lo);
        if none_or_gt(self.iv.bounds.get(i + 1), hi) {
            return self.uniform(level, self.iv.classes[i]);
        }
        let sub = rest - self.widths[level];
        let last = level + 1 == self.levels.len();
        let entries: Vec<u32> = (0..1u64 << self.widths[level])
            .map(|j| {
                let s = start + (j << sub);
                if last {
                    self.iv.classes[self.index_at(self.origin + s as u128)]
                } else {
                    self.child(level + 1, s)
                }
            })
            .collect();
        if let Some(&p) = self.blocks[level].get(&entries) {
            return p;
        }
        let p = self.push(level, &entries);
        self.blocks[level].insert(entries, p);
        p
    }
}

/// `b` is absent or above `hi`.
fn none_or_gt(b: Option<&u128>, hi: u128) -> bool {
    match b {
        None => true,
        Some(&b) => b > hi,
    }
}

impl Trie {
    /// Builds the trie for keys `origin .. origin + 2^sum(widths)`; the first
    /// level is a direct table.
    fn build(iv: &Intervals, origin: u128, widths: &[u32]) -> Self {
        let n = widths.len();
        let mut b = TrieBuilder {
            iv,
            origin,
            widths,
            levels: vec![Vec::new(); n],
            blocks: vec![HashMap::new(); n],
            uniform: vec![HashMap::new(); n],
        };
        let sub: u32 = widths[1..].iter().sum();
        let top: Vec<u32> = (0..1u64 << widths[0]).map(|j| b.child(1, j << sub)).collect();
        b.levels[0] = top;
        Trie { levels: b.levels }
    }

    fn memory_bytes(&self) -> usize {
        self.levels.iter().map(|l| l.len() * 4).sum()
    }
}

/// Class lookup for one address field.
#[derive(Clone, Debug)]
struct AddrTable {
    /// IPv4 block: 16-8-8 trie over the low 32 bits.
    v4: Trie,
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
        let v4 = Trie::build(&iv, V4_BASE, &[16, 8, 8]);
        AddrTable {
            v4,
            v6_bounds,
            v6_classes,
            n_classes: interner.len(),
            sets: interner.store,
        }
    }

    /// Offset of the class of `a` in `sets`.
    #[inline(always)]
    fn class(&self, a: u128) -> usize {
        if (a >> 32) == (V4_BASE >> 32) {
            let a = a as u32;
            let l = &self.v4.levels;
            let e = l[0][(a >> 16) as usize];
            let e = step(&l[1], e, (a >> 8) & 0xff);
            step(&l[2], e, a & 0xff) as usize
        } else {
            self.v6_classes[self.v6_bounds.partition_point(|&b| b <= a) - 1] as usize
        }
    }

    fn memory_bytes(&self) -> usize {
        self.v4.memory_bytes() + self.v6_bounds.len() * 16 + self.v6_classes.len() * 4 + self.sets.data.len() * 8
    }
}

/// Class lookup for one port field: an 8-8 trie.
#[derive(Clone, Debug)]
struct PortTable {
    trie: Trie,
    sets: SetStore,
    n_classes: usize,
}

impl PortTable {
    fn build(ranges: &[Vec<(u128, u128)>], words: usize, agg: usize) -> Self {
        let mut interner = Interner::new(words, agg);
        let iv = sweep(ranges, &mut interner);
        PortTable {
            trie: Trie::build(&iv, 0, &[8, 8]),
            n_classes: interner.len(),
            sets: interner.store,
        }
    }

    /// Offset of the class of `p` in `sets`.
    #[inline(always)]
    fn class(&self, p: u16) -> usize {
        let l = &self.trie.levels;
        let e = l[0][(p >> 8) as usize];
        step(&l[1], e, (p & 0xff) as u32) as usize
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
    proto: [u32; 256],
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
        let mut proto = [0u32; 256];
        let mut bits = vec![0u64; words];
        for (p, slot) in proto.iter_mut().enumerate() {
            bits.fill(0);
            for (i, r) in rules.iter().enumerate() {
                if r.protocol.matches(p as u8) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            *slot = pi.intern(&bits);
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
                + 1024
                + self.sport.trie.memory_bytes()
                + self.sport.sets.data.len() * 8
                + self.dport.trie.memory_bytes()
                + self.dport.sets.data.len() * 8
                + self.src.memory_bytes()
                + self.dst.memory_bytes(),
        }
    }

    #[inline(always)]
    fn block<'a>(&self, store: &'a SetStore, o: usize) -> &'a [u64] {
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

impl CompiledClassifier {
    #[doc(hidden)]
    pub fn tmp_probe(&self, key: &FlowKey) -> (usize, usize) {
        let p = self.block(&self.proto_sets, self.proto[key.protocol as usize] as usize);
        let sp = self.block(&self.sport.sets, self.sport.class(key.source_port));
        let dp = self.block(&self.dport.sets, self.dport.class(key.destination_port));
        let s = self.block(&self.src.sets, self.src.class(key.source));
        let d = self.block(&self.dst.sets, self.dst.class(key.destination));
        let agg = self.agg;
        let mut tries = 0;
        let mut cands = 0;
        for a in 0..agg {
            let mut m = p[a] & sp[a] & dp[a] & s[a] & d[a];
            cands += m.count_ones() as usize;
            while m != 0 {
                tries += 1;
                let w = a * 64 + m.trailing_zeros() as usize;
                let i = agg + w;
                let x = p[i] & sp[i] & dp[i] & s[i] & d[i];
                if x != 0 {
                    return (tries, cands);
                }
                m &= m - 1;
            }
        }
        (tries, cands)
    }
}

impl Classifier for CompiledClassifier {
    #[inline]
    fn first_match(&self, key: &FlowKey) -> Option<usize> {
        let p = self.block(&self.proto_sets, self.proto[key.protocol as usize] as usize);
        let sp = self.block(&self.sport.sets, self.sport.class(key.source_port));
        let dp = self.block(&self.dport.sets, self.dport.class(key.destination_port));
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
