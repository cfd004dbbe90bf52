//! Attribution of non-first IP fragments to the flow of their first fragment.
//!
//! Only the first fragment (offset 0) of a fragmented datagram carries the
//! transport header, so later fragments have no ports. [`FragmentTracker`]
//! remembers the ports of first fragments, keyed on (source, destination,
//! protocol, identification) — the datagram identity of RFC 791 §2.3 and
//! RFC 8200 §4.5 — and fills them into later fragments. It is bounded: when
//! full, the oldest datagram is forgotten. Fragments that arrive before their
//! first fragment (or after it was evicted) keep ports 0.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::PacketMeta;

/// Identity of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub id: u32,
}

impl FragmentKey {
    /// The key of a fragment, `None` if `meta` is not a fragment.
    pub fn of(meta: &PacketMeta) -> Option<FragmentKey> {
        meta.fragment.is_fragment.then_some(FragmentKey {
            src: meta.src,
            dst: meta.dst,
            protocol: meta.protocol,
            id: meta.fragment.id,
        })
    }
}

/// Bounded map from first fragments to their ports. See the [module docs](self).
#[derive(Debug)]
pub struct FragmentTracker {
    ports: HashMap<FragmentKey, (u16, u16)>,
    order: VecDeque<FragmentKey>,
    capacity: usize,
}

impl FragmentTracker {
    /// A tracker remembering at most `capacity` datagrams (at least 1).
    /// All memory is allocated up front.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FragmentTracker {
            ports: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Number of datagrams remembered.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Records the ports of a first fragment, or fills the ports of a later
    /// fragment from its first fragment. Returns true when ports were filled
    /// in. Non-fragments are left alone.
    pub fn process(&mut self, meta: &mut PacketMeta) -> bool {
        let Some(key) = FragmentKey::of(meta) else {
            return false;
        };
        if meta.fragment.first {
            if let Some(v) = self.ports.get_mut(&key) {
                *v = (meta.src_port, meta.dst_port);
                return false;
            }
            if self.ports.len() >= self.capacity {
                while let Some(old) = self.order.pop_front() {
                    if self.ports.remove(&old).is_some() {
                        break;
                    }
                }
            }
            self.ports.insert(key, (meta.src_port, meta.dst_port));
            self.order.push_back(key);
            false
        } else if let Some(&(s, d)) = self.ports.get(&key) {
            meta.src_port = s;
            meta.dst_port = d;
            true
        } else {
            false
        }
    }
}
