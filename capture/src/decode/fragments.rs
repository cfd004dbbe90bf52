//! Attribution of non-first IP fragments to the flow of their first fragment.
//!
//! Only the first fragment (offset 0) of a fragmented datagram carries the
//! transport header, so later fragments have no ports (and, for IPv6, may
//! even name another next header: a destination options or AH header that
//! follows the fragment header is only in the first fragment).
//! [`FragmentTracker`] remembers the flow identity of first fragments
//! (addresses, protocol, ports, ICMP fields), keyed on the datagram identity
//! — (source, destination, protocol, identification) for IPv4 (RFC 791
//! §2.3), (source, destination, identification) for IPv6 (RFC 8200 §4.5) —
//! and gives it to later fragments. With decapsulation the key is the outer
//! datagram's: its later fragments carry no inner header at all, and belong
//! to the inner flow the first one was reported as. It is bounded: when
//! full, the oldest datagram is forgotten. Fragments that arrive before their
//! first fragment (or after it was evicted) keep their own header's fields.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::{IcmpInfo, IpVersion, PacketMeta};

/// Identity of a fragmented datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The IPv4 protocol field; 0 for IPv6, whose datagram identity leaves
    /// it out.
    pub protocol: u8,
    pub id: u32,
}

impl FragmentKey {
    /// The key of the fragment `meta` reports, `None` if it is not one.
    pub fn of(meta: &PacketMeta) -> Option<FragmentKey> {
        meta.fragment.is_fragment.then_some(FragmentKey {
            src: meta.src,
            dst: meta.dst,
            protocol: match meta.ip_version {
                IpVersion::V4 => meta.protocol,
                IpVersion::V6 => 0,
            },
            id: meta.fragment.id,
        })
    }
}

/// What a first fragment tells its later fragments.
#[derive(Clone, Copy, Debug)]
struct FlowIdentity {
    ip_version: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    src_port: u16,
    dst_port: u16,
    icmp: Option<IcmpInfo>,
}

impl FlowIdentity {
    fn of(m: &PacketMeta) -> Self {
        FlowIdentity {
            ip_version: m.ip_version,
            src: m.src,
            dst: m.dst,
            protocol: m.protocol,
            src_port: m.src_port,
            dst_port: m.dst_port,
            icmp: m.icmp,
        }
    }

    fn apply(&self, m: &mut PacketMeta) {
        m.ip_version = self.ip_version;
        m.src = self.src;
        m.dst = self.dst;
        m.protocol = self.protocol;
        m.src_port = self.src_port;
        m.dst_port = self.dst_port;
        m.icmp = self.icmp;
    }
}

/// Bounded map from first fragments to their flow. See the [module docs](self).
#[derive(Debug)]
pub struct FragmentTracker {
    flows: HashMap<FragmentKey, FlowIdentity>,
    order: VecDeque<FragmentKey>,
    capacity: usize,
}

impl FragmentTracker {
    /// A tracker remembering at most `capacity` datagrams (at least 1).
    /// All memory is allocated up front.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FragmentTracker {
            flows: HashMap::with_capacity(capacity),
            order: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Number of datagrams remembered.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Records the flow of a first fragment, or gives a later fragment the
    /// flow of its first fragment (addresses, protocol, ports, ICMP fields).
    /// Returns true when a later fragment was attributed. Non-fragments are
    /// left alone.
    pub fn process(&mut self, meta: &mut PacketMeta) -> bool {
        // A decapsulated packet out of a fragmented datagram is always its
        // first fragment (later ones have no inner header to report).
        let (key, first) = match (meta.outer_fragment, FragmentKey::of(meta)) {
            (Some(outer), _) => (outer, true),
            (None, Some(own)) => (own, meta.fragment.first),
            (None, None) => return false,
        };
        if first {
            let flow = FlowIdentity::of(meta);
            if let Some(v) = self.flows.get_mut(&key) {
                *v = flow;
                return false;
            }
            if self.flows.len() >= self.capacity {
                while let Some(old) = self.order.pop_front() {
                    if self.flows.remove(&old).is_some() {
                        break;
                    }
                }
            }
            self.flows.insert(key, flow);
            self.order.push_back(key);
            false
        } else if let Some(flow) = self.flows.get(&key) {
            flow.apply(meta);
            true
        } else {
            false
        }
    }
}
