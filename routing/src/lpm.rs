//! Longest-prefix-match tables for IPv4 and IPv6 (spec §5.4: "the longest
//! prefix match on the destination IP wins").
//!
//! The structure is a *poptrie* (Asai & Ohara, SIGCOMM 2015), built once
//! and read many times:
//!
//! * a direct-pointing top array indexed by the first [`LpmKey::TOP_BITS`]
//!   bits of the address (18 for IPv4: 1 MiB; 20 for IPv6: 4 MiB, one
//!   node level fewer on the /48-heavy real table, ~20% faster there); each
//!   entry is either a leaf or the index of an internal node;
//! * internal nodes of stride 6 (64 slots) compressed with two 64-bit
//!   bitmaps: `vector` marks the slots that have a child node, `leafvec`
//!   marks where a new run of identical leaves starts. The index of a child
//!   or leaf is a base plus a population count, so a node costs 24 bytes
//!   and the children/leaves of one node are contiguous.
//!
//! Leaves are pushed down (every slot carries the longest prefix covering
//! it), so a lookup touches one top entry, one node per 6 bits beyond the
//! top, and one leaf, with no backtracking. A leaf is a `u32`:
//! `0` = no match, otherwise `(value_index + 1) << 8 | prefix_len`, so the
//! matched prefix is known without touching the value array. Values are
//! stored once in a `Vec<T>`.
//!
//! Results come in two shapes: [`LpmMatch`] (the matched prefix and a
//! reference to its value) from [`LpmTable::lookup`] and
//! [`LpmTable::lookup_batch`], or the compact [`LpmHit`] (the 4-byte leaf)
//! from [`LpmTable::lookup_hit`] and [`LpmTable::lookup_batch_hits`], for
//! callers that want the prefix length or the value only: building an
//! `LpmMatch` costs about as many instructions as the batched walk itself,
//! and the single lookup's `Option` a data-dependent branch (see the README's
//! measurements: the compact forms are ~1.4x faster batched, 1.4x-1.9x
//! single).
//!
//! [`LpmTable::lookup_batch`] overlaps the memory latency of many
//! lookups. For IPv4 it is a three-stage software pipeline over chunks of
//! [`BATCH_LANES`] keys: in each round one chunk reads its top entries
//! (prefetching the next chunk's), the previous chunk reads the nodes it
//! prefetched a round earlier, and the one before reads its leaves, so
//! every load comes a whole round after its prefetch; results are decoded
//! without data-dependent branches (a random address misses the table
//! often, and unpredictably). Measured on the full table with uniformly
//! random addresses, best of 15 passes, 12 runs alternating with the
//! previous two-pass-per-chunk pipeline: median 10.15x against 9.2x
//! `ip_network_table`. IPv6 walks [`BATCH_LANES`] lookups level by level.
//!
//! Build cost: one sort of the prefixes plus one pass painting each prefix
//! into its node (~70-110 ms and ~10 MiB for the ~901k-prefix IPv4 table,
//! ~20-35 ms and ~7 MiB for ~160k IPv6 prefixes; see benches/lpm.rs).
//! The only `unsafe` is the POPCNT dispatch and the prefetch hint in
//! `fast`, documented there.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

/// Number of lookups interleaved by [`LpmTable::lookup_batch`]: one chunk
/// of the IPv4 pipeline, one level-synchronous batch for IPv6.
pub const BATCH_LANES: usize = 64;

/// IPv4 keys per run of the pipeline (their leaves sit in a stack array).
const STREAM_BLOCK: usize = 1024;

/// Largest number of distinct prefixes one table can hold (the leaf
/// encoding keeps 23 bits of value index in a top-array entry).
pub const MAX_PREFIXES: usize = (1 << 23) - 2;

const NODE_FLAG: u32 = 1 << 31;
const STRIDE: u32 = 6;

/// Errors from [`LpmBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LpmError {
    /// More distinct prefixes than [`MAX_PREFIXES`].
    #[error("too many prefixes for one LPM table: {count} (max {max})")]
    TooManyPrefixes {
        /// Distinct prefixes inserted.
        count: usize,
        /// [`MAX_PREFIXES`].
        max: usize,
    },
    /// The trie would need more nodes or leaves than its 31-bit indices
    /// address (not reachable with real route tables).
    #[error("LPM table too large: {nodes} nodes, {leaves} leaves")]
    TooLarge {
        /// Internal nodes.
        nodes: usize,
        /// Leaves.
        leaves: usize,
    },
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u128 {}
}

/// An address family's key: `u32` for IPv4, `u128` for IPv6. Sealed.
pub trait LpmKey: Copy + Ord + Eq + fmt::Debug + sealed::Sealed {
    /// The address type (`Ipv4Addr` / `Ipv6Addr`).
    type Addr: Copy + fmt::Debug;
    /// The prefix type (`Ipv4Net` / `Ipv6Net`).
    type Net: Copy + fmt::Debug + PartialEq;
    /// Address width in bits.
    const BITS: u8;
    /// Bits resolved by the direct-pointing top array.
    const TOP_BITS: u32;
    /// Address to key.
    fn from_addr(addr: Self::Addr) -> Self;
    /// Key to address.
    fn to_addr(self) -> Self::Addr;
    /// The network address (host bits cleared) and length of a prefix.
    fn from_net(net: &Self::Net) -> (Self, u8);
    /// Build a prefix from a key (host bits are cleared) and a length <= BITS.
    fn to_net(self, len: u8) -> Self::Net;
    /// Bits `[offset, offset + stride)` of the key, counted from the most
    /// significant bit, zero padded past the end of the address.
    fn slot(self, offset: u32, stride: u32) -> usize;
    /// The key with only its first `len` bits kept.
    fn mask(self, len: u8) -> Self;
}

impl LpmKey for u32 {
    type Addr = Ipv4Addr;
    type Net = Ipv4Net;
    const BITS: u8 = 32;
    const TOP_BITS: u32 = 18;
    #[inline(always)]
    fn from_addr(addr: Ipv4Addr) -> u32 {
        u32::from(addr)
    }
    #[inline(always)]
    fn to_addr(self) -> Ipv4Addr {
        Ipv4Addr::from(self)
    }
    fn from_net(net: &Ipv4Net) -> (u32, u8) {
        (u32::from(net.network()), net.prefix_len())
    }
    #[inline(always)]
    fn to_net(self, len: u8) -> Ipv4Net {
        let len = len.min(32);
        Ipv4Net::new_assert(Ipv4Addr::from(self.mask(len)), len)
    }
    #[inline(always)]
    fn slot(self, offset: u32, stride: u32) -> usize {
        ((((self as u64) << 32) << offset) >> (64 - stride)) as usize
    }
    #[inline(always)]
    fn mask(self, len: u8) -> u32 {
        // A 64-bit shift by 32 gives the empty mask of /0 without a branch.
        self & ((u64::from(u32::MAX) << (32 - u32::from(len.min(32)))) as u32)
    }
}

impl LpmKey for u128 {
    type Addr = Ipv6Addr;
    type Net = Ipv6Net;
    const BITS: u8 = 128;
    const TOP_BITS: u32 = 20;
    #[inline(always)]
    fn from_addr(addr: Ipv6Addr) -> u128 {
        u128::from(addr)
    }
    #[inline(always)]
    fn to_addr(self) -> Ipv6Addr {
        Ipv6Addr::from(self)
    }
    fn from_net(net: &Ipv6Net) -> (u128, u8) {
        (u128::from(net.network()), net.prefix_len())
    }
    #[inline(always)]
    fn to_net(self, len: u8) -> Ipv6Net {
        let len = len.min(128);
        Ipv6Net::new_assert(Ipv6Addr::from(self.mask(len)), len)
    }
    #[inline(always)]
    fn slot(self, offset: u32, stride: u32) -> usize {
        ((self << offset) >> (128 - stride)) as usize
    }
    #[inline(always)]
    fn mask(self, len: u8) -> u128 {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - u32::from(len.min(128))))
        }
    }
}

/// Collects `(prefix, value)` pairs, then builds an immutable [`LpmTable`].
/// Inserting the same prefix twice keeps the last value.
#[derive(Debug, Clone)]
pub struct LpmBuilder<K: LpmKey, T> {
    items: Vec<(K, u8, T)>,
}

/// Builder for IPv4 tables.
pub type Lpm4Builder<T> = LpmBuilder<u32, T>;
/// Builder for IPv6 tables.
pub type Lpm6Builder<T> = LpmBuilder<u128, T>;
/// IPv4 longest-prefix-match table.
pub type Lpm4<T> = LpmTable<u32, T>;
/// IPv6 longest-prefix-match table.
pub type Lpm6<T> = LpmTable<u128, T>;

impl<K: LpmKey, T> Default for LpmBuilder<K, T> {
    fn default() -> Self {
        Self { items: Vec::new() }
    }
}

impl<K: LpmKey, T> LpmBuilder<K, T> {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `n` prefixes.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            items: Vec::with_capacity(n),
        }
    }

    /// Add a prefix (host bits are ignored). A later insert of the same
    /// prefix replaces the value.
    pub fn insert(&mut self, prefix: K::Net, value: T) {
        let (key, len) = K::from_net(&prefix);
        self.items.push((key.mask(len), len, value));
    }

    /// Add a prefix given as network key and length (host bits are
    /// cleared; lengths beyond the address width are clamped).
    pub fn insert_key(&mut self, key: K, len: u8, value: T) {
        let len = len.min(K::BITS);
        self.items.push((key.mask(len), len, value));
    }

    /// Prefixes inserted so far (duplicates included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Build the table.
    pub fn build(self) -> Result<LpmTable<K, T>, LpmError> {
        let mut items: Vec<(K, u8, usize, T)> = self.items.into_iter().enumerate().map(|(seq, (k, l, v))| (k, l, seq, v)).collect();
        // Sort by (key, len), the last insertion of a prefix first, then keep
        // the first of each (key, len) run.
        items.sort_unstable_by(|a, b| (a.0, a.1, b.2).cmp(&(b.0, b.1, a.2)));
        items.dedup_by(|later, earlier| later.0 == earlier.0 && later.1 == earlier.1);
        if items.len() > MAX_PREFIXES {
            return Err(LpmError::TooManyPrefixes {
                count: items.len(),
                max: MAX_PREFIXES,
            });
        }
        let mut keys = Vec::with_capacity(items.len());
        let mut values = Vec::with_capacity(items.len());
        for (i, (k, l, _, v)) in items.into_iter().enumerate() {
            // i + 1 < 2^23 by the check above.
            let leaf = (((i as u32) + 1) << 8) | u32::from(l);
            keys.push(Item { key: k, len: l, leaf });
            values.push(v);
        }
        let trie = Poptrie::build(&keys);
        let limit = NODE_FLAG as usize;
        if trie.nodes.len() >= limit || trie.leaves.len() >= limit {
            return Err(LpmError::TooLarge {
                nodes: trie.nodes.len(),
                leaves: trie.leaves.len(),
            });
        }
        Ok(LpmTable { trie, values })
    }
}

impl<K: LpmKey, T> FromIterator<(K::Net, T)> for LpmBuilder<K, T> {
    fn from_iter<I: IntoIterator<Item = (K::Net, T)>>(iter: I) -> Self {
        let mut b = Self::new();
        for (p, v) in iter {
            b.insert(p, v);
        }
        b
    }
}

/// One lookup result: the matched (longest) prefix and its value.
#[derive(Debug, PartialEq)]
pub struct LpmMatch<'a, N, T> {
    /// The prefix that matched.
    pub prefix: N,
    /// Its value.
    pub value: &'a T,
}

impl<N: Clone, T> Clone for LpmMatch<'_, N, T> {
    fn clone(&self) -> Self {
        Self {
            prefix: self.prefix.clone(),
            value: self.value,
        }
    }
}
impl<N: Copy, T> Copy for LpmMatch<'_, N, T> {}

/// A compact lookup result of [`LpmTable::lookup_batch_hits`]: the leaf
/// the walk ended at (`0` = no match, otherwise value index + 1 and the
/// matched prefix length), so a result costs 4 bytes and no decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LpmHit(u32);

impl LpmHit {
    /// No prefix matched.
    pub const MISS: LpmHit = LpmHit(0);

    /// True when some prefix matched.
    #[inline]
    pub fn is_match(self) -> bool {
        self.0 != 0
    }

    /// Length of the matched prefix, `None` for a miss.
    #[inline]
    pub fn prefix_len(self) -> Option<u8> {
        self.is_match().then_some((self.0 & 0xff) as u8)
    }
}

/// Immutable longest-prefix-match table (see the module docs).
#[derive(Debug, Clone)]
pub struct LpmTable<K: LpmKey, T> {
    trie: Poptrie<K>,
    values: Vec<T>,
}

impl<K: LpmKey, T> LpmTable<K, T> {
    /// Longest-prefix match of an address.
    #[inline]
    pub fn lookup(&self, addr: K::Addr) -> Option<LpmMatch<'_, K::Net, T>> {
        self.lookup_key(K::from_addr(addr))
    }

    /// Longest-prefix match of an address given as an integer key.
    #[inline]
    pub fn lookup_key(&self, key: K) -> Option<LpmMatch<'_, K::Net, T>> {
        self.decode(key, self.trie.lookup(key))
    }

    /// Longest-prefix match of one key as a compact [`LpmHit`] (see
    /// [`Self::lookup_batch_hits`]).
    #[inline]
    pub fn lookup_hit(&self, key: K) -> LpmHit {
        LpmHit(self.trie.lookup(key))
    }

    /// The value for an exact prefix, if it was inserted.
    pub fn get_exact(&self, prefix: &K::Net) -> Option<&T> {
        let (key, len) = K::from_net(prefix);
        self.lookup_key(key).filter(|m| m.prefix == key.to_net(len)).map(|m| m.value)
    }

    /// Look up many keys; `out[i]` receives the result for `keys[i]`.
    /// Only `min(keys.len(), out.len())` entries are processed.
    /// Lookups are interleaved [`BATCH_LANES`] at a time to overlap memory
    /// latency (see the module docs); results are identical to
    /// [`Self::lookup_key`].
    pub fn lookup_batch<'s>(&'s self, keys: &[K], out: &mut [Option<LpmMatch<'s, K::Net, T>>]) {
        if self.values.is_empty() {
            out.fill(None);
            return;
        }
        self.walk_batch(keys, out, |t, k, leaf| {
            if K::BITS == 32 {
                t.decode_nonempty(k, leaf)
            } else {
                // IPv6: masking a u128 for every lane, match or not, costs
                // more than the branch it saves (measured).
                t.decode(k, leaf)
            }
        });
    }

    /// Look up many keys into compact results: `out[i]` receives the
    /// [`LpmHit`] of `keys[i]` (4 bytes: whether and how long a prefix
    /// matched, and which value), for callers that need the prefix length
    /// or the value but not an [`LpmMatch`] per key, as DPDK's
    /// `rte_lpm_lookup_bulk` hands back next-hop ids. [`Self::value`] and
    /// [`Self::resolve`] turn a hit into the value or the full match.
    /// Same walk and results as [`Self::lookup_batch`]; only
    /// `min(keys.len(), out.len())` entries are processed.
    pub fn lookup_batch_hits(&self, keys: &[K], out: &mut [LpmHit]) {
        if self.values.is_empty() {
            out.fill(LpmHit::MISS);
            return;
        }
        self.walk_batch(keys, out, |_, _, leaf| LpmHit(leaf));
    }

    /// The batched walk of a non-empty table: `out[i] = result(self,
    /// keys[i], leaf of keys[i])` for the first `min(keys.len(), out.len())`
    /// keys. IPv4 goes through the prefetching pipeline in runs of
    /// [`STREAM_BLOCK`] keys, IPv6 level by level [`BATCH_LANES`] at a time.
    #[inline(always)]
    fn walk_batch<'s, O>(&'s self, keys: &[K], out: &mut [O], result: impl Fn(&'s Self, K, u32) -> O) {
        let n = keys.len().min(out.len());
        let (keys, out) = (&keys[..n], &mut out[..n]);
        if K::BITS == 32 {
            let mut leaves = [0u32; STREAM_BLOCK];
            for (kc, oc) in keys.chunks(STREAM_BLOCK).zip(out.chunks_mut(STREAM_BLOCK)) {
                let lv = &mut leaves[..kc.len()];
                self.trie.lookup_stream_dispatch(kc, lv);
                for ((o, &k), &leaf) in oc.iter_mut().zip(kc).zip(lv.iter()) {
                    *o = result(self, k, leaf);
                }
            }
        } else {
            let mut leaves = [0u32; BATCH_LANES];
            for (kc, oc) in keys.chunks(BATCH_LANES).zip(out.chunks_mut(BATCH_LANES)) {
                self.trie.lookup_lanes(kc, &mut leaves[..kc.len()]);
                for ((o, &k), &leaf) in oc.iter_mut().zip(kc).zip(&leaves) {
                    *o = result(self, k, leaf);
                }
            }
        }
    }

    /// The value of a hit of this table (`None` for a miss). A hit of
    /// another table gives `None` or an unrelated value.
    #[inline]
    pub fn value(&self, hit: LpmHit) -> Option<&T> {
        self.values.get((hit.0 >> 8).checked_sub(1)? as usize)
    }

    /// The full match of `key` from its hit in this table: what
    /// [`Self::lookup_key`] returns.
    #[inline]
    pub fn resolve(&self, key: K, hit: LpmHit) -> Option<LpmMatch<'_, K::Net, T>> {
        self.decode(key, hit.0)
    }

    #[inline(always)]
    fn decode(&self, key: K, leaf: u32) -> Option<LpmMatch<'_, K::Net, T>> {
        if leaf == 0 {
            return None;
        }
        let value = self.values.get((leaf >> 8) as usize - 1)?;
        Some(LpmMatch {
            prefix: key.to_net((leaf & 0xff) as u8),
            value,
        })
    }

    /// [`Self::decode`] for a non-empty table, without a data-dependent
    /// branch (a "no match" leaf is frequent and unpredictable with random
    /// addresses): the value reference is computed from a clamped index and
    /// the result selected.
    #[inline(always)]
    fn decode_nonempty(&self, key: K, leaf: u32) -> Option<LpmMatch<'_, K::Net, T>> {
        let idx = ((leaf >> 8) as usize).wrapping_sub(1);
        let last = self.values.len() - 1;
        let m = LpmMatch {
            prefix: key.to_net((leaf & 0xff) as u8),
            value: &self.values[idx.min(last)],
        };
        (idx <= last).then_some(m)
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the table holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Values, in the table's internal order (sorted by prefix).
    pub fn values(&self) -> &[T] {
        &self.values
    }

    /// Heap bytes used by the lookup structure plus the value array
    /// (`size_of::<T>()` per value; heap owned by the values is not counted).
    pub fn memory_bytes(&self) -> usize {
        self.trie.memory_bytes() + self.values.capacity() * std::mem::size_of::<T>()
    }

    /// Internal shape, for reports: (top entries, nodes, leaves).
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.trie.top.len(), self.trie.nodes.len(), self.trie.leaves.len())
    }
}

#[derive(Debug, Clone, Copy)]
struct Item<K> {
    key: K,
    len: u8,
    leaf: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Bit v set: slot v has a child node.
    vector: u64,
    /// Bit v set: slot v is a leaf that starts a new run of leaves.
    leafvec: u64,
    /// Index of this node's first leaf in `leaves`.
    base0: u32,
    /// Index of this node's first child in `nodes`.
    base1: u32,
}

#[derive(Debug, Clone)]
struct Poptrie<K> {
    top: Vec<u32>,
    nodes: Vec<Node>,
    leaves: Vec<u32>,
    /// The CPU has POPCNT (checked once at build time; see [`fast`]).
    popcnt: bool,
    _k: std::marker::PhantomData<K>,
}

#[inline(always)]
fn upto(v: usize) -> u64 {
    // Bits 0..=v.
    let bit = 1u64 << v;
    bit | (bit - 1)
}

impl<K: LpmKey> Poptrie<K> {
    /// `items` sorted by (key, len), keys masked, no duplicates.
    fn build(items: &[Item<K>]) -> Self {
        let s = K::TOP_BITS;
        let mut t = Poptrie {
            top: vec![0u32; 1 << s],
            nodes: Vec::new(),
            leaves: Vec::new(),
            popcnt: fast::available(),
            _k: std::marker::PhantomData,
        };
        let mut children: Vec<(usize, usize, usize)> = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let slot = items[i].key.slot(0, s);
            let mut j = i;
            // Within one slot, the prefixes short enough to be painted here
            // have the slot-aligned key and come first (sorted by len).
            while j < items.len() && items[j].key.slot(0, s) == slot && u32::from(items[j].len) <= s {
                let span = 1usize << (s - u32::from(items[j].len));
                t.top[slot..slot + span].fill(items[j].leaf);
                j += 1;
            }
            let start = j;
            while j < items.len() && items[j].key.slot(0, s) == slot {
                j += 1;
            }
            if start < j {
                children.push((slot, start, j));
            }
            i = j;
        }
        for (slot, a, b) in children {
            let default = t.top[slot];
            let idx = t.nodes.len();
            t.nodes.push(Node::default());
            t.fill_node(idx, &items[a..b], s, default);
            t.top[slot] = idx as u32 | NODE_FLAG;
        }
        t.nodes.shrink_to_fit();
        t.leaves.shrink_to_fit();
        t
    }

    /// Fill node `idx` for `items` (all longer than `offset`, all in this
    /// node's range), inheriting `default` for uncovered slots.
    fn fill_node(&mut self, idx: usize, items: &[Item<K>], offset: u32, default: u32) {
        let mut slots = [default; 64];
        let mut children: Vec<(usize, usize, usize)> = Vec::new();
        let end = offset + STRIDE;
        let mut i = 0;
        while i < items.len() {
            let slot = items[i].key.slot(offset, STRIDE);
            let mut j = i;
            while j < items.len() && items[j].key.slot(offset, STRIDE) == slot && u32::from(items[j].len) <= end {
                let span = 1usize << (end - u32::from(items[j].len));
                slots[slot..slot + span].fill(items[j].leaf);
                j += 1;
            }
            let start = j;
            while j < items.len() && items[j].key.slot(offset, STRIDE) == slot {
                j += 1;
            }
            if start < j {
                children.push((slot, start, j));
            }
            i = j;
        }
        let mut vector = 0u64;
        for &(slot, _, _) in &children {
            vector |= 1 << slot;
        }
        let base0 = self.leaves.len() as u32;
        let mut leafvec = 0u64;
        let mut prev: Option<u32> = None;
        for (v, &leaf) in slots.iter().enumerate() {
            if vector & (1 << v) != 0 {
                continue;
            }
            if prev != Some(leaf) {
                leafvec |= 1 << v;
                self.leaves.push(leaf);
                prev = Some(leaf);
            }
        }
        let base1 = self.nodes.len() as u32;
        self.nodes.extend(std::iter::repeat_n(Node::default(), children.len()));
        self.nodes[idx] = Node {
            vector,
            leafvec,
            base0,
            base1,
        };
        for (k, &(slot, a, b)) in children.iter().enumerate() {
            self.fill_node(base1 as usize + k, &items[a..b], end, slots[slot]);
        }
    }

    /// Single lookup; uses the POPCNT instruction when the CPU has it.
    #[inline(always)]
    fn lookup(&self, key: K) -> u32 {
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            return fast::lookup(self, key);
        }
        self.lookup_portable(key)
    }

    /// Batched IPv6 lookup of up to BATCH_LANES keys; uses the POPCNT
    /// instruction when the CPU has it.
    #[inline(always)]
    fn lookup_lanes(&self, keys: &[K], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            return fast::lookup_lanes(self, keys, out);
        }
        self.lookup_lanes_levels(keys, out)
    }

    /// Batched IPv4 lookup of a key slice ([`Self::lookup_stream`]); uses
    /// the POPCNT instruction when the CPU has it.
    #[inline(always)]
    fn lookup_stream_dispatch(&self, keys: &[K], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if self.popcnt {
            return fast::lookup_stream(self, keys, out);
        }
        self.lookup_stream(keys, out)
    }

    #[inline(always)]
    fn lookup_portable(&self, key: K) -> u32 {
        let s = K::TOP_BITS;
        let e = self.top[key.slot(0, s)];
        if e & NODE_FLAG == 0 {
            return e;
        }
        let (nodes, leaves) = (&self.nodes, &self.leaves);
        let mut node = nodes[(e & !NODE_FLAG) as usize];
        let mut offset = s;
        loop {
            let v = key.slot(offset, STRIDE);
            if node.vector & (1 << v) != 0 {
                let c = node.base1 + (node.vector & upto(v)).count_ones() - 1;
                node = nodes[c as usize];
                offset += STRIDE;
            } else {
                let l = node.base0 + (node.leafvec & upto(v)).count_ones() - 1;
                return leaves[l as usize];
            }
        }
    }

    /// Level-synchronous walk of up to BATCH_LANES keys, lanes in a node
    /// found by a branch per lane. Used for IPv6, where the walks are
    /// deep (real addresses) or end at the top (unrouted ones), and the
    /// extra passes of a prefetching pipeline cost more than they save
    /// (measured: random addresses in 2000::/3 went from ~300 to ~150 M
    /// lookups/s).
    #[inline(always)]
    fn lookup_lanes_levels(&self, keys: &[K], out: &mut [u32]) {
        let s = K::TOP_BITS;
        let n = keys.len().min(out.len());
        let (keys, out) = (&keys[..n], &mut out[..n]);
        let (top, nodes, leaves) = (&self.top, &self.nodes, &self.leaves);
        let mut pending = 0u32;
        for (o, k) in out.iter_mut().zip(keys) {
            let e = top[k.slot(0, s)];
            *o = e;
            pending |= e;
        }
        let mut offset = s;
        while pending & NODE_FLAG != 0 {
            pending = 0;
            for (o, k) in out.iter_mut().zip(keys) {
                if *o & NODE_FLAG != 0 {
                    let node = &nodes[(*o & !NODE_FLAG) as usize];
                    let v = k.slot(offset, STRIDE);
                    let r = if node.vector & (1 << v) != 0 {
                        (node.base1 + (node.vector & upto(v)).count_ones() - 1) | NODE_FLAG
                    } else {
                        leaves[(node.base0 + (node.leafvec & upto(v)).count_ones() - 1) as usize]
                    };
                    *o = r;
                    pending |= r;
                }
            }
            offset += STRIDE;
        }
    }

    /// IPv4 walk of a whole key slice as a three-stage software pipeline
    /// over chunks of [`BATCH_LANES`] keys: in each round, chunk c reads
    /// its top entries (prefetching chunk c+1's, one per lane) and
    /// prefetches its nodes; chunk c-1 reads its nodes and prefetches its
    /// leaves (or children); chunk c-2 reads its leaves. Every load is
    /// issued a whole round after its prefetch. `out[i]` gets the leaf of
    /// `keys[i]` (same length).
    #[inline(always)]
    fn lookup_stream(&self, keys: &[K], out: &mut [u32]) {
        let s = K::TOP_BITS;
        let n = keys.len().min(out.len());
        let (keys, out) = (&keys[..n], &mut out[..n]);
        // Exactly 2^s entries: every key's slot is in bounds, so the
        // compiler drops the check.
        let top = &self.top[..1 << s];
        let (nodes, leaves) = (&self.nodes, &self.leaves);
        #[derive(Clone, Copy)]
        struct Stage {
            start: usize,
            walking: [u8; BATCH_LANES],
            m: usize,
            pos: [u32; BATCH_LANES],
        }
        let empty = Stage {
            start: 0,
            walking: [0; BATCH_LANES],
            m: 0,
            pos: [0; BATCH_LANES],
        };
        let mut ring = [empty; 3];
        let chunks = n.div_ceil(BATCH_LANES);
        for k in keys.iter().take(BATCH_LANES) {
            fast::prefetch(top.as_ptr().wrapping_add(k.slot(0, s)));
        }
        for round in 0..chunks + 2 {
            // Stage 1: chunk `round` reads its top entries.
            if round < chunks {
                let st = &mut ring[round % 3];
                let start = round * BATCH_LANES;
                let end = (start + BATCH_LANES).min(n);
                let next = keys.get(end..).unwrap_or(&[]);
                st.start = start;
                // A local count: kept in `st`, it went through memory on
                // every key (the byte store below may alias it).
                let mut m = 0usize;
                for (i, (o, k)) in out[start..end].iter_mut().zip(&keys[start..end]).enumerate() {
                    if let Some(nk) = next.get(i) {
                        fast::prefetch(top.as_ptr().wrapping_add(nk.slot(0, s)));
                    }
                    let e = top[k.slot(0, s)];
                    *o = e;
                    // i < BATCH_LANES and m <= i.
                    st.walking[m & (BATCH_LANES - 1)] = i as u8;
                    m += (e >> 31) as usize;
                }
                st.m = m;
                for &i in &st.walking[..st.m] {
                    fast::prefetch(nodes.as_ptr().wrapping_add((out[start + usize::from(i)] & !NODE_FLAG) as usize));
                }
            }
            // Stage 2: chunk `round - 1` reads its first-level nodes.
            if round >= 1 && round - 1 < chunks {
                let st = &mut ring[(round - 1) % 3];
                for j in 0..st.m {
                    let i = st.start + usize::from(st.walking[j]);
                    let node = &nodes[(out[i] & !NODE_FLAG) as usize];
                    let v = keys[i].slot(s, STRIDE);
                    st.pos[j] = if node.vector & (1 << v) != 0 {
                        let c = node.base1 + (node.vector & upto(v)).count_ones() - 1;
                        fast::prefetch(nodes.as_ptr().wrapping_add(c as usize));
                        c | NODE_FLAG
                    } else {
                        let l = node.base0 + (node.leafvec & upto(v)).count_ones() - 1;
                        fast::prefetch(leaves.as_ptr().wrapping_add(l as usize));
                        l
                    };
                }
            }
            // Stage 3: chunk `round - 2` reads its leaves; the rare walks
            // that go deeper finish here, one by one.
            if round >= 2 {
                let st = &ring[(round - 2) % 3];
                for j in 0..st.m {
                    let i = st.start + usize::from(st.walking[j]);
                    let p = st.pos[j];
                    out[i] = if p & NODE_FLAG == 0 {
                        leaves[p as usize]
                    } else {
                        self.walk_from(keys[i], p & !NODE_FLAG, s + STRIDE)
                    };
                }
            }
        }
    }

    /// The rest of a walk from node `idx`, at bit `offset` of `key`: the
    /// batched walk's rare deeper levels (6 of 262k random keys), out of
    /// line. `lookup_portable` keeps its own inlined loop, which the POPCNT
    /// wrapper compiles with the instruction (this function is compiled
    /// without it).
    #[inline(never)]
    fn walk_from(&self, key: K, idx: u32, mut offset: u32) -> u32 {
        let mut node = self.nodes[idx as usize];
        loop {
            let v = key.slot(offset, STRIDE);
            if node.vector & (1 << v) != 0 {
                let c = node.base1 + (node.vector & upto(v)).count_ones() - 1;
                node = self.nodes[c as usize];
                offset += STRIDE;
            } else {
                let l = node.base0 + (node.leafvec & upto(v)).count_ones() - 1;
                return self.leaves[l as usize];
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.top.capacity() * 4 + self.nodes.capacity() * std::mem::size_of::<Node>() + self.leaves.capacity() * 4
    }
}

/// The only `unsafe` in the crate: POPCNT dispatch and prefetch hints.
///
/// **POPCNT.** Baseline x86_64 (the default Rust target) has no POPCNT
/// instruction, so `u64::count_ones` compiles to a ~12-instruction
/// bit-twiddling sequence, and a poptrie step does two of them. The same
/// lookup code compiled with `#[target_feature(enable = "popcnt")]` uses the
/// instruction; calling such a function is `unsafe` because running it on a
/// CPU without POPCNT would be undefined behaviour. [`available`] checks the
/// CPU once (at table build time, stored in `Poptrie::popcnt`) and the
/// wrappers are only called when it returned true, which makes the calls
/// sound.
///
/// Measured (same binary but for this switch, best of N passes, tier-1
/// table from shared/corpus, 1M keys, on the shared 2-core machine):
/// IPv6 walks to real prefixes 16-17 -> 22-27 M lookups/s single and
/// 19-21 -> 28-30 M/s batched (about +40%); IPv4 uniform 53-57 -> 58-70 M/s
/// single and 68-74 -> 80-98 M/s batched (about +20%).
///
/// **Prefetch.** [`prefetch`] wraps `_mm_prefetch` (PREFETCHT0, part of
/// baseline x86_64 SSE), an `unsafe fn` although it never dereferences or
/// faults on its argument; the batched IPv4 walk uses it (see
/// `Poptrie::lookup_stream`). Elsewhere it is a no-op.
///
/// Not done, measured: copying the arrays into a 2 MiB-aligned mapping
/// advised `MADV_HUGEPAGE` (transparent huge pages were granted) changed
/// nothing beyond noise on this VM (IPv4 batched 136-145 vs 137-142 M/s
/// in one process, IPv6 unchanged). Likely because the hot set (~6.3 MiB)
/// is within the second-level TLB's reach with 4 KiB pages (a plain random
/// read loop is as fast over 4 MiB as over 1 MiB and ~4x slower over
/// 16 MiB), so it was left out rather than add an `mmap`-owning type here.
#[allow(unsafe_code)]
mod fast {
    #[cfg(target_arch = "x86_64")]
    use super::{LpmKey, Poptrie};

    /// True when the CPU has POPCNT.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("popcnt")
    }

    /// No POPCNT dispatch on other architectures.
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) fn available() -> bool {
        false
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn lookup_popcnt<K: LpmKey>(t: &Poptrie<K>, key: K) -> u32 {
        t.lookup_portable(key)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn lookup_lanes_popcnt<K: LpmKey>(t: &Poptrie<K>, keys: &[K], out: &mut [u32]) {
        t.lookup_lanes_levels(keys, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn lookup_stream_popcnt<K: LpmKey>(t: &Poptrie<K>, keys: &[K], out: &mut [u32]) {
        t.lookup_stream(keys, out)
    }

    /// Caller guarantees `t.popcnt`, i.e. [`available`] returned true.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn lookup<K: LpmKey>(t: &Poptrie<K>, key: K) -> u32 {
        debug_assert!(t.popcnt);
        // SAFETY: only called when `available()` returned true (t.popcnt),
        // so the CPU supports the `popcnt` target feature.
        unsafe { lookup_popcnt(t, key) }
    }

    /// Caller guarantees `t.popcnt`, i.e. [`available`] returned true.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn lookup_lanes<K: LpmKey>(t: &Poptrie<K>, keys: &[K], out: &mut [u32]) {
        debug_assert!(t.popcnt);
        // SAFETY: as in `lookup`.
        unsafe { lookup_lanes_popcnt(t, keys, out) }
    }

    /// Caller guarantees `t.popcnt`, i.e. [`available`] returned true.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn lookup_stream<K: LpmKey>(t: &Poptrie<K>, keys: &[K], out: &mut [u32]) {
        debug_assert!(t.popcnt);
        // SAFETY: as in `lookup`.
        unsafe { lookup_stream_popcnt(t, keys, out) }
    }

    /// Hint the CPU to bring the cache line at `p` into L1 (any address:
    /// a prefetch never faults).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn prefetch<T>(p: *const T) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: PREFETCHT0 (SSE, baseline on x86_64) is only a hint; it
        // does not dereference `p` architecturally and never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
    }

    /// No-op elsewhere.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline(always)]
    pub(super) fn prefetch<T>(_p: *const T) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_v4() {
        let mut b = Lpm4Builder::new();
        b.insert("0.0.0.0/0".parse().unwrap(), 0);
        b.insert("10.0.0.0/8".parse().unwrap(), 8);
        b.insert("10.1.2.0/24".parse().unwrap(), 24);
        b.insert("10.1.2.3/32".parse().unwrap(), 32);
        b.insert("10.1.2.0/24".parse().unwrap(), 25); // overwrite
        let t = b.build().unwrap();
        let q = |s: &str| {
            let m = t.lookup(s.parse().unwrap()).unwrap();
            (m.prefix.to_string(), *m.value)
        };
        assert_eq!(q("1.2.3.4"), ("0.0.0.0/0".into(), 0));
        assert_eq!(q("10.9.9.9"), ("10.0.0.0/8".into(), 8));
        assert_eq!(q("10.1.2.4"), ("10.1.2.0/24".into(), 25));
        assert_eq!(q("10.1.2.3"), ("10.1.2.3/32".into(), 32));
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn empty_and_v6_host_route() {
        let t: Lpm6<u8> = Lpm6Builder::new().build().unwrap();
        assert!(t.lookup(Ipv6Addr::LOCALHOST).is_none());
        let mut b = Lpm6Builder::new();
        b.insert("::1/128".parse().unwrap(), 1u8);
        b.insert("::/1".parse().unwrap(), 2u8);
        let t = b.build().unwrap();
        assert_eq!(t.lookup(Ipv6Addr::LOCALHOST).map(|m| *m.value), Some(1));
        assert_eq!(t.lookup("::2".parse().unwrap()).map(|m| *m.value), Some(2));
        assert!(t.lookup("8000::".parse().unwrap()).is_none());
    }
}
