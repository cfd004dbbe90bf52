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
//! datagram's: its later fragments carry no inner header at all, and are
//! the rest of the inner packet the first one was reported as, whose IP
//! length (RFC 791 §3.1 total length, RFC 8200 §3 payload length) already
//! counts their bytes; they are [`Attribution::PartOfInner`], not packets
//! of the inner flow of their own (tshark reassembles them into that one
//! inner packet). It is bounded: when full, the oldest datagram is
//! forgotten.
//!
//! Fragments that arrive before their first fragment (reordered on the way,
//! or sent last first as some stacks do) are held back by
//! [`FragmentTracker::process_in_order`] until it comes, within the
//! reassembly time of Linux (30 s of capture time, `ipfrag_time`) and up to
//! [`FragmentTracker::HOLD`] fragments; one whose first fragment never
//! comes (or with [`FragmentTracker::process`]) keeps its own header's
//! fields.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::{IcmpInfo, IpVersion, PacketMeta};

/// What [`FragmentTracker::process`] made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// Not a later fragment (a first fragment, a decapsulated packet or no
    /// fragment at all), or a later fragment whose first fragment is not
    /// known: it keeps its own header's fields.
    Unattributed,
    /// A later fragment given the flow of its first fragment: it counts in
    /// that flow with its own IP length, as NetFlow / IPFIX count fragments.
    Attributed,
    /// A later fragment of a tunnel datagram whose first fragment was
    /// reported decapsulated: given the inner flow, but it is the rest of
    /// the inner packet already counted with its inner IP length, so it is
    /// no packet of that flow (nor of the outer flow, which `decap` does not
    /// report).
    PartOfInner,
}

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
    /// The first fragment was reported as the inner packet of a tunnel.
    inner: bool,
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
            inner: m.outer_fragment.is_some(),
        }
    }

    fn apply(&self, m: &mut PacketMeta) -> Attribution {
        m.ip_version = self.ip_version;
        m.src = self.src;
        m.dst = self.dst;
        m.protocol = self.protocol;
        m.src_port = self.src_port;
        m.dst_port = self.dst_port;
        m.icmp = self.icmp;
        if self.inner {
            Attribution::PartOfInner
        } else {
            Attribution::Attributed
        }
    }
}

/// Bounded map from first fragments to their flow. See the [module docs](self).
#[derive(Debug)]
pub struct FragmentTracker {
    flows: HashMap<FragmentKey, FlowIdentity>,
    order: VecDeque<FragmentKey>,
    capacity: usize,
    /// Later fragments waiting for their first, oldest first.
    held: VecDeque<(FragmentKey, i64, PacketMeta)>,
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
            held: VecDeque::new(),
        }
    }

    /// Later fragments held back at most, waiting for their first.
    pub const HOLD: usize = 256;
    /// How long (capture time) a later fragment waits for its first: the
    /// Linux reassembly timeout (`net.ipv4.ipfrag_time`, 30 s).
    pub const HOLD_NS: i64 = 30_000_000_000;

    /// [`FragmentTracker::process`] for packets in capture order, handing
    /// each packet to `out` with its time: a first fragment, then the later
    /// fragments of its datagram that came before it (attributed to its
    /// flow); a later fragment at once when its first is known, else once
    /// its first comes, or unattributed after [`FragmentTracker::HOLD_NS`]
    /// or when more than [`FragmentTracker::HOLD`] wait. Later fragments
    /// that are [`Attribution::PartOfInner`] are not handed over at all,
    /// whichever comes first: the inner packet counts them. Non-fragments go
    /// straight through. [`FragmentTracker::release_all`] at the end of the
    /// input hands over the fragments still waiting.
    #[inline]
    pub fn process_in_order(&mut self, ts_ns: i64, meta: PacketMeta, out: &mut impl FnMut(i64, PacketMeta)) {
        // The common case: not a fragment, and nothing waiting to expire.
        if !meta.fragment.is_fragment && meta.outer_fragment.is_none() && self.held.is_empty() {
            out(ts_ns, meta);
            return;
        }
        self.process_held(ts_ns, meta, out);
    }

    /// [`FragmentTracker::process_in_order`] for a fragment, or while
    /// fragments wait.
    fn process_held(&mut self, ts_ns: i64, mut meta: PacketMeta, out: &mut impl FnMut(i64, PacketMeta)) {
        self.expire(ts_ns, out);
        let key = match (meta.outer_fragment, FragmentKey::of(&meta)) {
            (Some(outer), _) => Some((outer, true)),
            (None, Some(own)) => Some((own, meta.fragment.first)),
            (None, None) => None,
        };
        let attribution = self.process(&mut meta);
        match key {
            Some((key, true)) => {
                out(ts_ns, meta);
                if self.held.iter().any(|h| h.0 == key) {
                    let flow = FlowIdentity::of(&meta);
                    let mut rest = VecDeque::with_capacity(self.held.len());
                    for (k, t, mut m) in self.held.drain(..) {
                        if k != key {
                            rest.push_back((k, t, m));
                        } else if flow.apply(&mut m) == Attribution::Attributed {
                            out(t, m);
                        }
                    }
                    self.held = rest;
                }
            }
            // Already counted by the inner packet of its first fragment.
            _ if attribution == Attribution::PartOfInner => {}
            Some((key, false)) if attribution == Attribution::Unattributed => {
                if self.held.len() >= Self::HOLD {
                    if let Some((_, t, m)) = self.held.pop_front() {
                        out(t, m);
                    }
                }
                self.held.push_back((key, ts_ns, meta));
            }
            _ => out(ts_ns, meta),
        }
    }

    /// Hands over (unattributed) the held fragments that waited longer than
    /// [`FragmentTracker::HOLD_NS`] by `now_ns`.
    pub fn expire(&mut self, now_ns: i64, out: &mut impl FnMut(i64, PacketMeta)) {
        while let Some(&(_, t, m)) = self.held.front() {
            if now_ns.saturating_sub(t) <= Self::HOLD_NS {
                break;
            }
            self.held.pop_front();
            out(t, m);
        }
    }

    /// Hands over (unattributed) every held fragment, oldest first.
    pub fn release_all(&mut self, out: &mut impl FnMut(i64, PacketMeta)) {
        for (_, t, m) in self.held.drain(..) {
            out(t, m);
        }
    }

    /// Whether later fragments are waiting for their first.
    pub fn holds_fragments(&self) -> bool {
        !self.held.is_empty()
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
    /// flow of its first fragment (addresses, protocol, ports, ICMP fields),
    /// and says which (see [`Attribution`]: a caller counting packets must
    /// not count [`Attribution::PartOfInner`]). Non-fragments are left
    /// alone.
    pub fn process(&mut self, meta: &mut PacketMeta) -> Attribution {
        // A decapsulated packet out of a fragmented datagram is always its
        // first fragment (later ones have no inner header to report).
        let (key, first) = match (meta.outer_fragment, FragmentKey::of(meta)) {
            (Some(outer), _) => (outer, true),
            (None, Some(own)) => (own, meta.fragment.first),
            (None, None) => return Attribution::Unattributed,
        };
        if first {
            let flow = FlowIdentity::of(meta);
            if let Some(v) = self.flows.get_mut(&key) {
                *v = flow;
                return Attribution::Unattributed;
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
            Attribution::Unattributed
        } else if let Some(flow) = self.flows.get(&key) {
            flow.apply(meta)
        } else {
            Attribution::Unattributed
        }
    }
}
