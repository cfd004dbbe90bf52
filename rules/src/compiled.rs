//! A compiled first-match classifier whose lookup cost does not grow with the
//! number of rules.
//!
//! # Design
//!
//! Each field is cut into *equivalence classes*: maximal runs of values that
//! match exactly the same set of rules. Every class owns one deduplicated
//! rule bitset (bit `i` set = rule `i` matches this field value), preceded by
//! an *aggregate bit vector* (ABV, Baboescu & Varghese 2001): bit `j` of the
//! aggregate is set when word `j` of the bitset is non-zero.
//!
//! A lookup maps each field value to its class with branch-free multibit
//! tries (a block pointer carries a shift that collapses uniform subtrees to
//! a single entry, so uniform space costs no memory and no branch):
//! - protocol: a 256-entry table;
//! - ports: an 8-8 trie;
//! - addresses in the IPv4 block (`::ffff:0:0/96` of the unified space): an
//!   8-8-8-8 trie over the low 32 bits; other (IPv6) addresses: a binary
//!   search over the boundaries outside the block.
//!
//! When the product of source and destination classes is small enough (all
//! 1k ClassBench sets; the cap is `PAIR_MAX_ENTRIES`), their cross product is
//! precomputed as in RFC (Gupta & McKeown 1999): one table load gives the
//! class of the (sparse) bitset of rules matching both addresses. When in
//! turn the products of the protocol and port classes, and of that with the
//! pair classes, are small enough (all 1k ClassBench sets; `RFC_MAX_PP`,
//! `RFC_MAX_ENTRIES`), the whole cross product is precomputed too (see
//! [`Rfc`]): a lookup is then a fixed sequence of table loads without a
//! data-dependent branch, which the out-of-order core overlaps across
//! consecutive lookups. Otherwise the pair bitset is stored sparsely (its
//! aggregate, then only its non-zero words) and the scan
//! ANDs four aggregates (protocol, source port, destination port, address
//! pair) and, only for words whose aggregate bit survives, the four bitset
//! words; the lowest set bit of the first non-zero word is the answer, as
//! rules are in evaluation order. Larger sets fall back to five separate
//! bitsets, where the dense per-field bitsets make the aggregates less
//! selective.
//!
//! Lookups do not allocate and use no `unsafe`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::addr::{V4_BASE, V4_LAST};
use crate::eval::Classifier;
use crate::flow::FlowKey;
use crate::resolve::ResolvedRule;

/// The deduplicated `[aggregate | bitset]` blocks of one field.
#[derive(Clone, Debug, Default)]
struct SetStore {
    data: Vec<u64>,
}

/// Shape of the rule bitsets: `words` (a multiple of `chunk`) bitset words,
/// scanned `chunk` words at a time; one aggregate bit per chunk, in `agg`
/// words. A class block is `agg` aggregate words then the bitset.
#[derive(Clone, Copy, Debug)]
struct Layout {
    words: usize,
    chunk: usize,
    agg: usize,
}

impl Layout {
    fn new(rules: usize) -> Self {
        let need = rules.div_ceil(64).max(1);
        let chunk = CHUNK_MAX;
        let words = need.div_ceil(chunk) * chunk;
        Layout {
            words,
            chunk,
            agg: (words / chunk).div_ceil(64),
        }
    }

    fn stride(&self) -> usize {
        self.agg + self.words
    }
}

/// Words per aggregate bit. One word (64 rules) measured fastest on the
/// ClassBench sets: with the sparse address-pair bitsets the first candidate
/// word usually holds the match, and larger chunks (2, 8, 16 words, scanned
/// branch-free) cost more loads than the mispredictions they save. Must be a
/// power of two; the scan is generic over it.
const CHUNK_MAX: usize = 1;

/// FxHash (as in rustc): fast, and good enough for build-time tables keyed
/// by bitsets and trie blocks, which come from the caller's own rules.
#[derive(Clone, Copy, Default)]
struct FxHasher {
    hash: u64,
}

const FX_K: u64 = 0xf135_7aea_2e62_a9c5;

impl FxHasher {
    #[inline(always)]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(26) ^ w).wrapping_mul(FX_K);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.add(u64::from_le_bytes(a));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut a = [0u8; 8];
            a[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(a));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;
type FxHashMap<K, V> = HashMap<K, V, FxBuild>;

/// The hash of a bitset (four independent lanes, then combined; the table
/// index takes the well-mixed top bits).
#[inline]
fn hash_words(bits: &[u64]) -> u64 {
    let mut lanes = [FxHasher::default(); 4];
    let mut chunks = bits.chunks_exact(4);
    for c in &mut chunks {
        for (l, &w) in lanes.iter_mut().zip(c) {
            l.add(w);
        }
    }
    for (l, &w) in lanes.iter_mut().zip(chunks.remainder()) {
        l.add(w);
    }
    let mut h = FxHasher::default();
    for l in lanes {
        h.add(l.hash);
    }
    h.hash
}

/// The hash of a trie block.
#[inline]
fn hash_u32s(v: &[u32]) -> u64 {
    let mut lanes = [FxHasher::default(); 4];
    let mut chunks = v.chunks_exact(8);
    for c in &mut chunks {
        for (j, l) in lanes.iter_mut().enumerate() {
            l.add(c[2 * j] as u64 | (c[2 * j + 1] as u64) << 32);
        }
    }
    for &x in chunks.remainder() {
        lanes[0].add(x as u64);
    }
    let mut h = FxHasher::default();
    h.add(v.len() as u64);
    for l in lanes {
        h.add(l.hash);
    }
    h.hash
}

/// Interns bitsets into a [`SetStore`] during a build.
struct Interner {
    layout: Layout,
    /// The bitset of each class, by id (`layout.words` words each).
    keys: Vec<u64>,
    /// The offset of each class's block in `store`, by id.
    offsets: Vec<u32>,
    /// Open addressing over the classes: id + 1, or 0 for a free slot.
    slots: Vec<u32>,
    store: SetStore,
    /// Store blocks sparsely: the aggregate, then only the non-zero words.
    sparse: bool,
}

impl Interner {
    fn new(layout: Layout) -> Self {
        Interner {
            layout,
            keys: Vec::new(),
            offsets: Vec::new(),
            slots: Vec::new(),
            store: SetStore::default(),
            sparse: false,
        }
    }

    fn new_sparse(layout: Layout) -> Self {
        Interner {
            sparse: true,
            ..Interner::new(layout)
        }
    }

    /// The offset of the block of `bits` in the store.
    fn intern(&mut self, bits: &[u64]) -> u32 {
        self.intern_id(bits).0
    }

    /// The slot for hash `h` in a table of `n` (a power of two) slots.
    #[inline(always)]
    fn slot(h: u64, n: usize) -> usize {
        (h >> (64 - n.trailing_zeros())) as usize
    }

    /// Doubles the slot table (or creates it).
    fn grow(&mut self) {
        let n = (self.slots.len() * 2).max(64);
        let words = self.layout.words;
        let mut slots = vec![0u32; n];
        for id in 0..self.offsets.len() {
            let mut i = Self::slot(hash_words(&self.keys[id * words..(id + 1) * words]), n);
            while slots[i] != 0 {
                i = (i + 1) & (n - 1);
            }
            slots[i] = id as u32 + 1;
        }
        self.slots = slots;
    }

    /// The offset of the block of `bits` in the store, and its id.
    fn intern_id(&mut self, bits: &[u64]) -> (u32, u32) {
        let Layout { words, chunk, agg } = self.layout;
        debug_assert_eq!(bits.len(), words);
        if (self.offsets.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let n = self.slots.len();
        let mut i = Self::slot(hash_words(bits), n);
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let id = (s - 1) as usize;
            if &self.keys[id * words..(id + 1) * words] == bits {
                return (self.offsets[id], id as u32);
            }
            i = (i + 1) & (n - 1);
        }
        let id = self.offsets.len() as u32;
        let off = u32::try_from(self.store.data.len())
            .ok()
            .filter(|&o| o <= PTR_MASK)
            .expect("rule bitsets fit in 2^27 words");
        let a0 = self.store.data.len();
        self.store.data.resize(a0 + agg, 0);
        for (c, ws) in bits.chunks(chunk).enumerate() {
            if ws.iter().any(|&w| w != 0) {
                self.store.data[a0 + c / 64] |= 1 << (c % 64);
            }
        }
        if self.sparse {
            self.store.data.extend(bits.iter().copied().filter(|&w| w != 0));
        } else {
            self.store.data.extend_from_slice(bits);
        }
        self.keys.extend_from_slice(bits);
        self.offsets.push(off);
        self.slots[i] = id + 1;
        (off, id)
    }

    fn len(&self) -> usize {
        self.offsets.len()
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
    let mut bits = vec![0u64; interner.layout.words];
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

/// Level widths of the IPv4 trie (over the low 32 bits of the mapped block).
const V4_WIDTHS: [u32; 4] = [8, 8, 8, 8];
/// Level widths of the port tries.
const PORT_WIDTHS: [u32; 2] = [8, 8];

/// A multibit trie over a 2^(sum of widths) key space, with deduplicated
/// blocks; the last level holds class offsets. All levels live in one table,
/// the direct first level at its start.
#[derive(Clone, Debug, Default)]
struct Trie {
    table: Vec<u32>,
}

struct TrieBuilder<'a> {
    iv: &'a Intervals,
    /// Where the key space starts in the interval space.
    origin: u128,
    widths: &'a [u32],
    /// Number of levels.
    levels: usize,
    /// All levels' blocks.
    table: Vec<u32>,
    /// Per level, the hash of each block's entries and where it starts.
    /// On the (unlikely) collision of two different blocks, the second is
    /// simply not shared.
    blocks: Vec<FxHashMap<u64, u32>>,
    uniform: Vec<FxHashMap<u32, u32>>,
    /// The last class and pointer `uniform` returned, per level.
    last_uniform: Vec<Option<(u32, u32)>>,
}

impl TrieBuilder<'_> {
    fn index_at(&self, x: u128) -> usize {
        self.iv.bounds.partition_point(|&b| b <= x) - 1
    }

    /// The interval holding `x`, at or after interval `i` (which starts at
    /// or below `x`).
    #[inline]
    fn advance(&self, mut i: usize, x: u128) -> usize {
        let b = &self.iv.bounds;
        while i + 1 < b.len() && b[i + 1] <= x {
            i += 1;
        }
        i
    }

    fn push(&mut self, entries: &[u32]) -> u32 {
        let base = self.table.len();
        assert!(base + entries.len() <= PTR_MASK as usize, "trie too large");
        self.table.extend_from_slice(entries);
        base as u32
    }

    /// Pointer to the level-`level` block of a uniform subtree of class `c`.
    fn uniform(&mut self, level: usize, c: u32) -> u32 {
        if let Some((lc, lp)) = self.last_uniform[level] {
            if lc == c {
                return lp;
            }
        }
        let p = self.uniform_new(level, c);
        self.last_uniform[level] = Some((c, p));
        p
    }

    fn uniform_new(&mut self, level: usize, c: u32) -> u32 {
        if let Some(&p) = self.uniform[level].get(&c) {
            return p;
        }
        let entry = if level + 1 == self.levels { c } else { self.uniform(level + 1, c) };
        let base = self.push(&[entry]);
        let p = base | (self.widths[level] << PTR_BITS);
        self.uniform[level].insert(c, p);
        p
    }

    /// Pointer to the level-`level` block of the subtree whose keys start at
    /// `start` (relative to `origin`), which is in interval `i`.
    fn child(&mut self, level: usize, start: u64, i: usize) -> u32 {
        let rest: u32 = self.widths[level..].iter().sum();
        let lo = self.origin + start as u128;
        let hi = lo + ((1u128 << rest) - 1);
        if none_or_gt(self.iv.bounds.get(i + 1), hi) {
            return self.uniform(level, self.iv.classes[i]);
        }
        let sub = rest - self.widths[level];
        let last = level + 1 == self.levels;
        let n = 1usize << self.widths[level];
        let mut entries: Vec<u32> = Vec::with_capacity(n);
        if last {
            // One key per entry: fill the runs of each interval.
            let mut k = i;
            while entries.len() < n {
                let end = match self.iv.bounds.get(k + 1) {
                    Some(&b) if b - lo < n as u128 => (b - lo) as usize,
                    _ => n,
                };
                entries.resize(end, self.iv.classes[k]);
                k += 1;
            }
        } else {
            // Children wholly inside one interval share its uniform block:
            // filled by the run, so a block costs its boundaries, not its
            // 2^width children.
            let mut k = i;
            while entries.len() < n {
                let s = start + ((entries.len() as u64) << sub);
                let at = self.origin + s as u128;
                k = self.advance(k, at);
                let whole = match self.iv.bounds.get(k + 1) {
                    Some(&b) => ((b - at) >> sub).min((n - entries.len()) as u128) as usize,
                    None => n - entries.len(),
                };
                if whole > 0 {
                    let p = self.uniform(level + 1, self.iv.classes[k]);
                    entries.resize(entries.len() + whole, p);
                } else {
                    let e = self.child(level + 1, s, k);
                    entries.push(e);
                }
            }
        }
        let h = hash_u32s(&entries);
        if let Some(&p) = self.blocks[level].get(&h) {
            if self.table.get(p as usize..p as usize + n) == Some(&entries[..]) {
                return p;
            }
            return self.push(&entries);
        }
        let p = self.push(&entries);
        self.blocks[level].insert(h, p);
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
        // One table for all levels: the top level first (filled last), then
        // each block as it is completed; pointers are table offsets.
        let top = 1usize << widths[0];
        let mut b = TrieBuilder {
            iv,
            origin,
            widths,
            levels: n,
            table: vec![0; top],
            blocks: vec![FxHashMap::default(); n],
            uniform: vec![FxHashMap::default(); n],
            last_uniform: vec![None; n],
        };
        let sub: u32 = widths[1..].iter().sum();
        let mut k = b.index_at(origin);
        for j in 0..top {
            k = b.advance(k, origin + ((j as u64) << sub) as u128);
            let e = b.child(1, (j as u64) << sub, k);
            b.table[j] = e;
        }
        Trie { table: b.table }
    }

    /// The class offset of `key`, whose significant bits are the low
    /// `sum(widths)`.
    #[inline(always)]
    fn lookup<const N: usize>(&self, widths: &[u32; N], key: u32) -> u32 {
        let mut shift: u32 = widths.iter().sum::<u32>() - widths[0];
        let mut e = self.table[(key >> shift) as usize];
        for &w in &widths[1..] {
            shift -= w;
            e = step(&self.table, e, (key >> shift) & ((1 << w) - 1));
        }
        e
    }

    fn memory_bytes(&self) -> usize {
        self.table.len() * 4
    }
}

/// Class lookup for one address field.
#[derive(Clone, Debug)]
struct AddrTable {
    /// IPv4 block: a trie over the low 32 bits.
    v4: Trie,
    /// Boundaries outside the IPv4 block (plus the block's own two edges).
    v6_bounds: Vec<u128>,
    v6_classes: Vec<u32>,
    sets: SetStore,
    n_classes: usize,
}

impl AddrTable {
    /// Lookup tables for a field's intervals; `value` maps a class offset in
    /// `sets` to what the lookup returns.
    fn build(iv: &Intervals, value: impl Fn(u32) -> u32, sets: SetStore, n_classes: usize) -> Self {
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
        let v6_classes = v6_classes.into_iter().map(&value).collect();
        let mapped = Intervals {
            bounds: iv.bounds.clone(),
            classes: iv.classes.iter().map(|&c| value(c)).collect(),
        };
        let v4 = Trie::build(&mapped, V4_BASE, &V4_WIDTHS);
        AddrTable {
            v4,
            v6_bounds,
            v6_classes,
            n_classes,
            sets,
        }
    }

    /// The lookup value of the class of `a`.
    #[inline(always)]
    fn class(&self, a: u128) -> usize {
        if (a >> 32) == (V4_BASE >> 32) {
            self.v4.lookup(&V4_WIDTHS, a as u32) as usize
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
    /// The table and the field's elementary intervals (class offsets).
    fn build(ranges: &[Vec<(u128, u128)>], layout: Layout) -> (Self, Intervals) {
        let mut interner = Interner::new(layout);
        let iv = sweep(ranges, &mut interner);
        let t = PortTable {
            trie: Trie::build(&iv, 0, &PORT_WIDTHS),
            n_classes: interner.len(),
            sets: interner.store,
        };
        (t, iv)
    }

    /// Offset of the class of `p` in `sets`.
    #[inline(always)]
    fn class(&self, p: u16) -> usize {
        self.trie.lookup(&PORT_WIDTHS, p as u32) as usize
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
    /// Whether the source x destination cross product was built.
    pub pair: bool,
}

/// A first-match classifier compiled from rules in evaluation order; see the
/// module documentation for the design. Answers exactly like
/// [`crate::LinearClassifier`] over the same rules.
#[derive(Clone, Debug)]
pub struct CompiledClassifier {
    rules: usize,
    layout: Layout,
    proto: [u32; 256],
    proto_sets: SetStore,
    n_proto: usize,
    sport: PortTable,
    dport: PortTable,
    src: AddrTable,
    dst: AddrTable,
    /// Source x destination cross product, when small enough (and no
    /// [`Rfc`] table).
    pair: Option<PairTable>,
    /// The full cross product, when small enough: lookups are branch-free.
    rfc: Option<Rfc>,
}

/// The full cross product in two more phases, as in RFC (Gupta & McKeown):
/// protocol x source port x destination port classes map to the class of
/// their combined rule set (`pp`); `pp` class x address pair class maps to
/// the first match. A lookup is a fixed sequence of loads with no
/// data-dependent branch, so that consecutive lookups overlap in the
/// out-of-order window and their cache misses with them; the scan it
/// replaces ends in branches on the loaded bitsets, and each misprediction
/// serialised the lookups around it.
#[derive(Clone, Debug)]
struct Rfc {
    /// Protocol class id x `sport classes * dport classes`.
    proto: [u32; 256],
    /// Leaves: source port class id x destination port classes.
    sport: Trie,
    /// Leaves: destination port class id.
    dport: Trie,
    /// Indexed by the sum of the three: `pp` class id x pair classes.
    pp: Vec<u32>,
    /// Indexed by `source class * destination classes + destination class`:
    /// the address pair class id.
    pair: PairIndex,
    /// Indexed by `pp` entry + pair class: the first match, or `NO_MATCH`.
    last: Vec<u16>,
}

/// `Rfc::last` entry of no match.
const NO_MATCH: u16 = u16::MAX;
/// Largest protocol x port x port class product for an [`Rfc`].
const RFC_MAX_PP: usize = 1 << 18;
/// Largest final table of an [`Rfc`] (16 MiB).
const RFC_MAX_ENTRIES: usize = 1 << 23;

impl Rfc {
    #[inline(always)]
    fn lookup(&self, key: &FlowKey, s: usize, d: usize) -> Option<usize> {
        let pair = self.pair.get(s + d) as usize;
        let pp = self.proto[key.protocol as usize] as usize
            + self.sport.lookup(&PORT_WIDTHS, key.source_port as u32) as usize
            + self.dport.lookup(&PORT_WIDTHS, key.destination_port as u32) as usize;
        let v = self.last[self.pp[pp] as usize + pair];
        (v != NO_MATCH).then_some(v as usize)
    }

    fn memory_bytes(&self) -> usize {
        1024 + self.sport.memory_bytes() + self.dport.memory_bytes() + self.pp.len() * 4 + self.pair.memory_bytes() + self.last.len() * 2
    }
}

/// The cross product of source and destination address classes (as in RFC,
/// Gupta & McKeown): one sparse bitset per pair, so the scan ANDs four
/// bitsets of which one is sparse, and the aggregates rarely mislead.
#[derive(Clone, Debug)]
struct PairTable {
    /// Indexed by `source index * destination classes + destination index`:
    /// offset of the pair's block in `sets`.
    table: PairIndex,
    /// Sparse blocks: the aggregate, then only the non-zero bitset words, so
    /// that a block usually fits in one cache line.
    sets: SetStore,
}

/// Pair table entries: 16-bit offsets when the sparse store is small enough
/// (all 1k ClassBench sets), which halves the table's cache footprint.
#[derive(Clone, Debug)]
enum PairIndex {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl PairIndex {
    fn new(t: Vec<u32>) -> Self {
        if t.iter().all(|&o| o <= u16::MAX as u32) {
            PairIndex::Narrow(t.into_iter().map(|o| o as u16).collect())
        } else {
            PairIndex::Wide(t)
        }
    }

    #[inline(always)]
    fn get(&self, i: usize) -> u32 {
        match self {
            PairIndex::Narrow(t) => t[i] as u32,
            PairIndex::Wide(t) => t[i],
        }
    }

    fn memory_bytes(&self) -> usize {
        match self {
            PairIndex::Narrow(t) => t.len() * 2,
            PairIndex::Wide(t) => t.len() * 4,
        }
    }
}

/// Largest source x destination product compiled into a pair table.
const PAIR_MAX_ENTRIES: usize = 1 << 20;
/// Largest `pairs x words` work for building one.
const PAIR_MAX_WORK: usize = 1 << 26;
/// Largest bitset store of one, in words (32 MiB).
const PAIR_MAX_WORDS: usize = 1 << 22;

/// How much a [`CompiledClassifier`] precomputes beyond the per-field
/// tables: building cross products costs far more than it saves a lookup,
/// so they pay only for millions of lookups.
///
/// Measured on the ClassBench 1k sets (`cargo bench --bench nsg`, one
/// core): `Fields` builds in 0.7-0.9 ms and looks up 36-58 M flows/s;
/// `Full` builds in 2.4 ms (acl1) to 80 ms (ipc1) and looks up 59-76 M
/// flows/s. The 10k sets build the same either way (their cross products
/// do not fit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CrossProducts {
    /// None: a lookup ANDs the protocol, port and address bitsets (with
    /// their aggregates). For queries and for the flows of a capture (one
    /// lookup per flow).
    Fields,
    /// The source x destination address pairs and, when it fits, the full
    /// RFC cross product (the default): branch-free lookups, for
    /// classifying packet streams.
    #[default]
    Full,
}

/// What [`CompiledClassifier::build`] builds (`Pairs` is for tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
enum Tables {
    Fields,
    Pairs,
    Full,
}

impl CompiledClassifier {
    /// Compiles rules given in evaluation order, with every cross product
    /// that fits ([`CrossProducts::Full`]).
    pub fn new(rules: &[ResolvedRule]) -> Self {
        Self::build(rules, Tables::Full)
    }

    /// Compiles rules given in evaluation order, with the cross products
    /// asked for.
    pub fn with_cross_products(rules: &[ResolvedRule], cross: CrossProducts) -> Self {
        match cross {
            CrossProducts::Fields => Self::build(rules, Tables::Fields),
            CrossProducts::Full => Self::build(rules, Tables::Full),
        }
    }

    /// Compiles rules; `Tables::Pairs` keeps the scan over the sparse pair
    /// bitsets even when the full cross product would fit (for tests).
    fn build(rules: &[ResolvedRule], tables: Tables) -> Self {
        let layout = Layout::new(rules.len());
        let words = layout.words;
        let mut pi = Interner::new(layout);
        let mut proto = [0u32; 256];
        // The rule bitset of each protocol number: each rule sets its bit in
        // the protocols it matches (computed once per protocol kind).
        let mut per_proto = vec![0u64; 256 * words];
        let mut kinds: Vec<(crate::model::Protocol, Vec<usize>)> = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let k = match kinds.iter().position(|(p, _)| *p == r.protocol) {
                Some(k) => k,
                None => {
                    let nums = (0..256usize).filter(|&p| r.protocol.matches(p as u8)).collect();
                    kinds.push((r.protocol, nums));
                    kinds.len() - 1
                }
            };
            for &p in &kinds[k].1 {
                per_proto[p * words + i / 64] |= 1 << (i % 64);
            }
        }
        for (slot, bits) in proto.iter_mut().zip(per_proto.chunks_exact(words)) {
            *slot = pi.intern(bits);
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
        let (sport, sport_iv) = PortTable::build(&ports(|r| &r.source_ports), layout);
        let (dport, dport_iv) = PortTable::build(&ports(|r| &r.destination_ports), layout);
        let mut si = Interner::new(layout);
        let siv = sweep(&addrs(|r| &r.source), &mut si);
        let mut di = Interner::new(layout);
        let div = sweep(&addrs(|r| &r.destination), &mut di);
        let stride = layout.stride() as u32;
        let (ns, nd) = (si.len(), di.len());
        let pairs = match tables {
            Tables::Fields => None,
            Tables::Pairs | Tables::Full => Self::pairs(&si, &di, layout),
        };
        let rfc = pairs.as_ref().filter(|_| tables == Tables::Full).and_then(|(ids, pair_sets)| {
            Self::rfc(
                layout,
                rules.len(),
                &proto,
                &pi.store,
                (&sport, &sport_iv),
                (&dport, &dport_iv),
                ids,
                pair_sets,
            )
        });
        let pair = match pairs {
            Some((ids, pi)) if rfc.is_none() => {
                let offsets = &pi.offsets;
                Some(PairTable {
                    table: PairIndex::new(ids.into_iter().map(|i| offsets[i as usize]).collect()),
                    sets: pi.store,
                })
            }
            _ => None,
        };
        let (src, dst) = if pair.is_some() || rfc.is_some() {
            (
                AddrTable::build(&siv, |o| o / stride * nd as u32, SetStore::default(), ns),
                AddrTable::build(&div, |o| o / stride, SetStore::default(), nd),
            )
        } else {
            (
                AddrTable::build(&siv, |o| o, si.store, ns),
                AddrTable::build(&div, |o| o, di.store, nd),
            )
        };
        CompiledClassifier {
            rules: rules.len(),
            layout,
            proto,
            n_proto: pi.len(),
            proto_sets: pi.store,
            sport,
            dport,
            src,
            dst,
            pair,
            rfc,
        }
    }

    /// The source x destination cross product, unless too large.
    /// Returns the pair class id of every pair and the sparse blocks.
    fn pairs(si: &Interner, di: &Interner, layout: Layout) -> Option<(Vec<u32>, Interner)> {
        let (ns, nd) = (si.len(), di.len());
        let n = ns.checked_mul(nd)?;
        if n > PAIR_MAX_ENTRIES || n.saturating_mul(layout.words) > PAIR_MAX_WORK {
            return None;
        }
        let (stride, agg) = (layout.stride(), layout.agg);
        fn bits_of(store: &SetStore, c: usize, stride: usize, agg: usize) -> &[u64] {
            &store.data[c * stride + agg..(c + 1) * stride]
        }
        debug_assert_eq!(layout.chunk, 1, "sparse blocks need one word per aggregate bit");
        let mut pi = Interner::new_sparse(layout);
        let mut table = Vec::with_capacity(n);
        let mut bits = vec![0u64; layout.words];
        for s in 0..ns {
            let sb = bits_of(&si.store, s, stride, agg);
            for d in 0..nd {
                for ((x, a), b) in bits.iter_mut().zip(sb).zip(bits_of(&di.store, d, stride, agg)) {
                    *x = a & b;
                }
                table.push(pi.intern_id(&bits).1);
            }
            if pi.store.data.len() > PAIR_MAX_WORDS {
                return None;
            }
        }
        Some((table, pi))
    }

    /// The [`Rfc`] tables, unless too large. `pair` holds pair class ids,
    /// `pi` their sparse blocks.
    #[allow(clippy::too_many_arguments)]
    fn rfc(
        layout: Layout,
        rules: usize,
        proto: &[u32; 256],
        proto_sets: &SetStore,
        sport: (&PortTable, &Intervals),
        dport: (&PortTable, &Intervals),
        pair: &[u32],
        pi: &Interner,
    ) -> Option<Rfc> {
        if rules >= NO_MATCH as usize {
            return None;
        }
        let stride = layout.stride();
        let mut protos: Vec<u32> = proto.to_vec();
        protos.sort_unstable();
        protos.dedup();
        let (nsp, ndp, np) = (sport.0.n_classes, dport.0.n_classes, pi.len());
        let n = protos.len().checked_mul(nsp)?.checked_mul(ndp)?;
        if n > RFC_MAX_PP || n.saturating_mul(layout.words) > PAIR_MAX_WORK {
            return None;
        }
        // Protocol x port x port classes, interned.
        let mut qi = Interner::new(layout);
        let mut pp = Vec::with_capacity(n);
        let mut bits = vec![0u64; layout.words];
        let dense = |store: &SetStore, o: usize| -> Vec<u64> { store.data[o + layout.agg..o + stride].to_vec() };
        for &po in &protos {
            let pb = dense(proto_sets, po as usize);
            for a in 0..nsp {
                let ab = dense(&sport.0.sets, a * stride);
                for b in 0..ndp {
                    let db = &dport.0.sets.data[b * stride + layout.agg..(b + 1) * stride];
                    for (((x, p), s), d) in bits.iter_mut().zip(&pb).zip(&ab).zip(db) {
                        *x = p & s & d;
                    }
                    pp.push(qi.intern_id(&bits).1);
                }
            }
        }
        let nq = qi.len();
        let total = nq.checked_mul(np)?;
        if total > RFC_MAX_ENTRIES {
            return None;
        }
        // pp class x pair class: the first match. The scan reads the pair
        // bitsets dense (the interner's keys), so it needs no rank.
        let (offsets, words) = (&pi.offsets, layout.words);
        let mut last = Vec::with_capacity(total);
        let agg = layout.agg;
        for q in 0..nq {
            let qb = &qi.store.data[q * stride..(q + 1) * stride];
            for (id, &off) in offsets.iter().enumerate() {
                let pa = &pi.store.data[off as usize..off as usize + agg];
                let pk = &pi.keys[id * words..(id + 1) * words];
                let mut first = NO_MATCH;
                'scan: for a in 0..agg {
                    let mut m = pa[a] & qb[a];
                    while m != 0 {
                        let c = a * 64 + m.trailing_zeros() as usize;
                        let w = pk[c] & qb[agg + c];
                        if w != 0 {
                            first = (c * 64 + w.trailing_zeros() as usize) as u16;
                            break 'scan;
                        }
                        m &= m - 1;
                    }
                }
                last.push(first);
            }
        }
        // Class ids, premultiplied into table offsets.
        let proto_id = |o: u32| protos.binary_search(&o).expect("protocol class") as u32;
        let mut rproto = [0u32; 256];
        for (r, &o) in rproto.iter_mut().zip(proto) {
            *r = proto_id(o) * (nsp * ndp) as u32;
        }
        let remap = |iv: &Intervals, mul: usize| Intervals {
            bounds: iv.bounds.clone(),
            classes: iv.classes.iter().map(|&o| (o as usize / stride * mul) as u32).collect(),
        };
        Some(Rfc {
            proto: rproto,
            sport: Trie::build(&remap(sport.1, ndp), 0, &PORT_WIDTHS),
            dport: Trie::build(&remap(dport.1, 1), 0, &PORT_WIDTHS),
            pp: pp.into_iter().map(|q| q * np as u32).collect(),
            pair: PairIndex::new(pair.to_vec()),
            last,
        })
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
            words: self.layout.words,
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
                + self.dst.memory_bytes()
                + self.pair.as_ref().map_or(0, |p| p.table.memory_bytes() + p.sets.data.len() * 8)
                + self.rfc.as_ref().map_or(0, Rfc::memory_bytes),
            pair: self.pair.is_some() || self.rfc.is_some(),
        }
    }

    #[inline(always)]
    fn block<'a>(&self, store: &'a SetStore, o: usize) -> &'a [u64] {
        &store.data[o..o + self.layout.stride()]
    }

    /// Classifies many flows: `out[i]` is the first match of `keys[i]`.
    ///
    /// # Panics
    /// When `out` is shorter than `keys`.
    pub fn first_match_batch(&self, keys: &[FlowKey], out: &mut [Option<usize>]) {
        assert!(out.len() >= keys.len(), "output slice shorter than keys");
        if self.rfc.is_some() {
            // Branch-free lookups: the out-of-order window overlaps them.
            for (k, r) in keys.iter().zip(out.iter_mut()) {
                *r = self.first_match(k);
            }
            return;
        }
        // Two passes over small groups: the field lookups of a group are
        // independent and branch-free, so their cache misses overlap; the
        // scans then find their blocks cached.
        const G: usize = 16;
        let mut offs = [[0u32; 5]; G];
        for (ks, os) in keys.chunks(G).zip(out.chunks_mut(G)) {
            for (k, o) in ks.iter().zip(offs.iter_mut()) {
                *o = self.offsets(k);
            }
            for (o, r) in offs.iter().zip(os.iter_mut()).take(ks.len()) {
                *r = self.scan_blocks(*o);
            }
        }
    }

    /// Offsets of the class blocks of a flow: protocol, ports, then the
    /// address pair (and 0), or source and destination.
    #[inline(always)]
    fn offsets(&self, key: &FlowKey) -> [u32; 5] {
        let s = self.src.class(key.source);
        let d = self.dst.class(key.destination);
        let (a, b) = match &self.pair {
            Some(p) => (p.table.get(s + d), 0),
            None => (s as u32, d as u32),
        };
        [
            self.proto[key.protocol as usize],
            self.sport.class(key.source_port) as u32,
            self.dport.class(key.destination_port) as u32,
            a,
            b,
        ]
    }

    #[inline(always)]
    fn scan_blocks(&self, o: [u32; 5]) -> Option<usize> {
        let p = self.block(&self.proto_sets, o[0] as usize);
        let sp = self.block(&self.sport.sets, o[1] as usize);
        let dp = self.block(&self.dport.sets, o[2] as usize);
        match &self.pair {
            Some(pair) => self.scan_sparse([p, sp, dp], &pair.sets.data[o[3] as usize..]),
            None => {
                let f = [
                    p,
                    sp,
                    dp,
                    self.block(&self.src.sets, o[3] as usize),
                    self.block(&self.dst.sets, o[4] as usize),
                ];
                self.scan::<CHUNK_MAX, 5>(f)
            }
        }
    }
}

impl CompiledClassifier {
    /// The first match given the class blocks of the `N` fields, scanning
    /// `C`-word chunks whose aggregate bit survives in all of them.
    #[inline(always)]
    fn scan<'a, const C: usize, const N: usize>(&self, f: [&'a [u64]; N]) -> Option<usize> {
        let agg = self.layout.agg;
        for a in 0..agg {
            let mut m = f.iter().fold(u64::MAX, |m, b| m & b[a]);
            while m != 0 {
                let c = a * 64 + m.trailing_zeros() as usize;
                let base = agg + c * C;
                let chunks: [&'a [u64; C]; N] = f.map(|x| -> &'a [u64; C] { x[base..base + C].try_into().expect("chunk in block") });
                let word = |j: usize| chunks.iter().fold(u64::MAX, |w, b| w & b[j]);
                let mut nz = 0u32;
                for j in 0..C {
                    nz |= ((word(j) != 0) as u32) << j;
                }
                if nz != 0 {
                    let j = nz.trailing_zeros() as usize;
                    return Some((c * C + j) * 64 + word(j).trailing_zeros() as usize);
                }
                m &= m - 1;
            }
        }
        None
    }
}

impl CompiledClassifier {
    /// The first match given the dense class blocks of `N` fields and one
    /// sparse block (aggregate words, then only its non-zero words; one
    /// word per aggregate bit).
    #[inline(always)]
    fn scan_sparse<const N: usize>(&self, f: [&[u64]; N], sparse: &[u64]) -> Option<usize> {
        let agg = self.layout.agg;
        // Non-zero sparse words before aggregate word `a`.
        let mut rank = agg;
        for a in 0..agg {
            let pa = sparse[a];
            let mut m = f.iter().fold(pa, |m, b| m & b[a]);
            while m != 0 {
                let bit = m.trailing_zeros();
                let c = a * 64 + bit as usize;
                let r = rank + (pa & ((1u64 << bit) - 1)).count_ones() as usize;
                let w = f.iter().fold(sparse[r], |w, b| w & b[agg + c]);
                if w != 0 {
                    return Some(c * 64 + w.trailing_zeros() as usize);
                }
                m &= m - 1;
            }
            rank += pa.count_ones() as usize;
        }
        None
    }
}

impl Classifier for CompiledClassifier {
    #[inline]
    fn first_match(&self, key: &FlowKey) -> Option<usize> {
        if let Some(rfc) = &self.rfc {
            return rfc.lookup(key, self.src.class(key.source), self.dst.class(key.destination));
        }
        self.scan_blocks(self.offsets(key))
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

    /// The sparse pair scan (used when the full cross product is too large)
    /// and the per-field scan ([`CrossProducts::Fields`]) against the linear
    /// reference, on the ClassBench 1k sets.
    #[test]
    fn sparse_pair_scan_agrees_with_linear() {
        for set in ["acl1", "fw1", "ipc1"] {
            let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/corpus/classbench")
                .join(format!("neurocuts__{set}_1k"));
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rules = crate::classbench::parse_resolved(&text).unwrap();
            let scan = CompiledClassifier::build(&rules, Tables::Pairs);
            let rfc = CompiledClassifier::new(&rules);
            let fields = CompiledClassifier::with_cross_products(&rules, CrossProducts::Fields);
            assert!(scan.pair.is_some() && scan.rfc.is_none(), "{set}");
            assert!(rfc.rfc.is_some(), "{set}");
            assert!(fields.pair.is_none() && fields.rfc.is_none(), "{set}");
            let l = LinearClassifier::new(rules.clone());
            let flows = crate::classbench::generate_flows(&rules, 5000, 0x51);
            let mut out = vec![None; flows.len()];
            scan.first_match_batch(&flows, &mut out);
            for (k, got) in flows.iter().zip(&out) {
                let want = l.first_match(k);
                assert_eq!(*got, want, "{set}: {k:?}");
                assert_eq!(scan.first_match(k), want, "{set}: {k:?}");
                assert_eq!(rfc.first_match(k), want, "{set}: {k:?}");
                assert_eq!(fields.first_match(k), want, "{set}: {k:?}");
            }
            fields.first_match_batch(&flows, &mut out);
            assert!(flows.iter().zip(&out).all(|(k, got)| *got == l.first_match(k)), "{set}");
        }
    }

    #[test]
    fn empty_rule_list_matches_nothing() {
        let c = CompiledClassifier::new(&[]);
        assert!(c.is_empty());
        assert_eq!(c.first_match(&FlowKey::default()), None);
    }
}
