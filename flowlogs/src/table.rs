//! Bidirectional flow table: packets in, flow records out.
//!
//! This is the connection tracking that NSG flow logs (spec §7.1) and VNet
//! flow logs (spec §7.3) describe: a flow *begins* (`B`), is reported while
//! it continues (`C`, every 5 minutes of flow time, counters since the
//! previous tuple) and *ends* (`E`, the remaining counters). NSG rules are
//! stateful (spec §13.3 step 5: return traffic of an existing flow is not
//! re-evaluated), so the caller evaluates the NSG chain once, on a flow's
//! first packet, and keeps the verdict in the flow's user slot `T`.
//!
//! Design:
//! - both directions of a conversation hit one entry: the key is the
//!   5-tuple with its two endpoints in a canonical order. TCP and UDP are
//!   keyed by ports; ICMP/ICMPv6 query messages (echo, timestamp, ...) by
//!   their identifier, so a request and its reply share one flow; other
//!   ICMP messages by type and code; every other protocol by protocol number
//!   with ports 0;
//! - time is packet time: the table's clock only moves with
//!   [`FlowTable::advance`] (called by [`FlowTable::observe`] with each
//!   packet's timestamp), so an offline replay behaves as live capture did;
//! - expiry is amortised O(log n) per flow per timeout period, not per
//!   packet: each flow has one entry in a deadline heap; a packet only moves
//!   the flow's `last` time, and when its (older) heap entry comes due the
//!   flow is rescheduled at its true deadline instead of expired;
//! - the hot path for an existing flow is one hash lookup (seeded
//!   `foldhash`, open addressing over a compact index of 8-byte entries)
//!   and a few counter updates in the first two cache lines of the flow's
//!   slot, no allocation;
//! - memory is bounded by the live flows (and by `max_flows` when set).
//!
//! Records produced (begin, reports, ends) queue up in an outbox that the
//! caller empties with [`FlowTable::drain_records`].

use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use thiserror::Error;

use crate::time::NS_PER_SEC;

/// IANA protocol numbers the table treats specially.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const DCCP: u8 = 33;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDP_LITE: u8 = 136;

    /// Transport protocols whose header starts with the source and
    /// destination ports, which are part of the flow key: TCP (RFC 9293),
    /// UDP (RFC 768), DCCP (RFC 4340), SCTP (RFC 9260), UDP-Lite (RFC 3828).
    /// (IPFIX `sourceTransportPort` covers the same, RFC 7012 / IANA.)
    #[inline(always)]
    pub const fn has_ports(protocol: u8) -> bool {
        matches!(protocol, TCP | UDP | DCCP | SCTP | UDP_LITE)
    }
}

/// TCP header flag bits (RFC 9293), as [`PacketInfo::tcp_flags`] carries them.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// ICMP / ICMPv6 header fields of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IcmpInfo {
    pub icmp_type: u8,
    pub code: u8,
    /// Identifier of query messages (echo, timestamp, ...); 0 otherwise.
    pub id: u16,
}

/// What the table needs to know about one packet. Plain data, independent
/// of the packet decoder: the caller fills it from whatever decoded the
/// packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketInfo {
    /// Capture timestamp, nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number (of the transport header after IPv6 extension headers).
    pub protocol: u8,
    /// Source port of the protocols with ports ([`ip_protocol::has_ports`]);
    /// ignored for others.
    pub src_port: u16,
    /// Destination port, likewise.
    pub dst_port: u16,
    /// ICMP/ICMPv6 header, for protocols 1 and 58.
    pub icmp: Option<IcmpInfo>,
    /// TCP flags byte (see [`tcp_flags`]); 0 for other protocols.
    pub tcp_flags: u8,
    /// IP-layer length (IPv4 total length, IPv6 payload length + 40): the
    /// octets NetFlow/IPFIX count and flow logs report as bytes (spec §7.1:
    /// "headers + payload").
    pub ip_len: u32,
}

/// A flow's 5-tuple oriented from its initiator (`src`) to its responder
/// (`dst`). Ports are 0 for protocols without ports in their header (see
/// [`ip_protocol::has_ports`]: TCP, UDP, DCCP, SCTP, UDP-Lite have them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowTuple {
    pub protocol: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
}

/// Protocol state of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    /// Only the initiator has sent packets.
    Begin,
    /// The responder answered (a TCP SYN-ACK or any packet the other way).
    Established,
    /// TCP closed: FIN seen in both directions, or a RST. The entry lingers
    /// for [`FlowTableConfig::tcp_closed_linger_ns`] to absorb the last ACKs.
    Ended,
}

/// Why a flow's final record was produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// TCP FIN in both directions.
    TcpFin,
    /// TCP RST in either direction.
    TcpRst,
    /// No packet for the protocol's idle timeout.
    IdleTimeout,
    /// The record lasted longer than the active timeout. The flow goes on
    /// (same initiator, same user slot: an NSG verdict is not taken again);
    /// its next record starts with its next packet, and its end comes as
    /// an `End` record even without one (see [`FlowRecord::has_packets`]).
    ActiveTimeout,
    /// A new TCP SYN reused the 5-tuple of a closed flow.
    Reused,
    /// The table was full (`max_flows`) and this flow had the earliest deadline.
    Evicted,
    /// [`FlowTable::finish`] flushed it at the end of the capture.
    Flushed,
}

/// Kind of a [`FlowRecord`]; maps onto flow-log states `B`, `C`, `E`
/// (spec §7.1, §7.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowRecordKind {
    /// The flow's first packet was seen.
    Begin,
    /// Periodic report of a continuing flow (every `report_interval_ns` of flow time).
    Report,
    /// The flow ended; its entry is gone.
    End(EndReason),
}

/// Packet and byte counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

impl Counters {
    fn saturating_sub(self, o: Counters) -> Counters {
        Counters {
            packets: self.packets.saturating_sub(o.packets),
            bytes: self.bytes.saturating_sub(o.bytes),
        }
    }
}

/// Totals of one direction of a flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirectionStats {
    pub packets: u64,
    /// Sum of [`PacketInfo::ip_len`].
    pub bytes: u64,
    /// TCP flags OR'd over the direction's packets.
    pub tcp_flags: u8,
}

/// One event of one flow, handed to the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord<T> {
    pub kind: FlowRecordKind,
    /// Flow time at which the event happened: the first packet for
    /// `Begin`, the report boundary for `Report`, the deadline (idle,
    /// active, close linger) or the current clock for `End`. Non-decreasing
    /// over the records of one table.
    pub at_ns: i64,
    pub tuple: FlowTuple,
    /// ICMP header of the flow's first packet.
    pub icmp: Option<IcmpInfo>,
    pub first_ns: i64,
    pub last_ns: i64,
    pub state: FlowState,
    /// Totals initiator → responder.
    pub forward: DirectionStats,
    /// Totals responder → initiator.
    pub reverse: DirectionStats,
    /// Initiator → responder since the previous record of this flow (zero
    /// for `Begin`). Over all records of a flow these sum to `forward`.
    pub interval_forward: Counters,
    /// Responder → initiator since the previous record of this flow.
    pub interval_reverse: Counters,
    /// The caller's slot (e.g. the NSG verdict stored on the first packet).
    pub user: T,
}

impl<T> FlowRecord<T> {
    /// Whether the record counts a packet. Only the `End` of a flow whose
    /// record the active timeout cut, with no packet since, has none: a
    /// flow log still writes the flow's end (spec §7.1 `E`), a flow export
    /// or a listing of records has nothing to show for it.
    pub fn has_packets(&self) -> bool {
        self.forward.packets + self.reverse.packets > 0
    }
}

/// Timeouts and limits. Times are nanoseconds of packet time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTableConfig {
    /// Idle timeout of TCP flows (default 4 minutes, Azure's TCP idle timeout).
    pub tcp_idle_ns: i64,
    /// Idle timeout of UDP flows (default 1 minute).
    pub udp_idle_ns: i64,
    /// Idle timeout of ICMP/ICMPv6 flows (default 1 minute).
    pub icmp_idle_ns: i64,
    /// Idle timeout of other protocols (default 1 minute).
    pub other_idle_ns: i64,
    /// How long a closed TCP flow (FIN both ways, or RST) stays to absorb
    /// trailing ACKs before its `End` record (default 10 s; 0 allowed).
    pub tcp_closed_linger_ns: i64,
    /// End the records of flows older than this, whatever their activity,
    /// as NetFlow exporters do (default none: long flows are reported by
    /// `report_interval_ns` instead). The flow itself goes on with a new
    /// record: it keeps its initiator and user slot.
    pub active_timeout_ns: Option<i64>,
    /// Interval of `Report` records (`C` tuples): default 5 minutes of flow
    /// time (spec §7.1). `None` disables reports.
    pub report_interval_ns: Option<i64>,
    /// Most live flows; when full, the flow with the earliest deadline is
    /// ended (`EndReason::Evicted`) to make room. `None` = unbounded.
    pub max_flows: Option<usize>,
    /// Whether to emit `Begin` records (default true).
    pub emit_begin: bool,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            tcp_idle_ns: 240 * NS_PER_SEC,
            udp_idle_ns: 60 * NS_PER_SEC,
            icmp_idle_ns: 60 * NS_PER_SEC,
            other_idle_ns: 60 * NS_PER_SEC,
            tcp_closed_linger_ns: 10 * NS_PER_SEC,
            active_timeout_ns: None,
            report_interval_ns: Some(300 * NS_PER_SEC),
            max_flows: None,
            emit_begin: true,
        }
    }
}

/// An invalid [`FlowTableConfig`].
#[derive(Debug, Error, PartialEq, Eq)]
#[error("flow table config: `{field}` must be {expected}, got {value}")]
pub struct ConfigError {
    pub field: &'static str,
    pub expected: &'static str,
    pub value: i64,
}

impl FlowTableConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("tcp_idle_ns", self.tcp_idle_ns),
            ("udp_idle_ns", self.udp_idle_ns),
            ("icmp_idle_ns", self.icmp_idle_ns),
            ("other_idle_ns", self.other_idle_ns),
            ("active_timeout_ns", self.active_timeout_ns.unwrap_or(1)),
            ("report_interval_ns", self.report_interval_ns.unwrap_or(1)),
        ];
        for (field, value) in positive {
            if value <= 0 {
                return Err(ConfigError {
                    field,
                    expected: "positive",
                    value,
                });
            }
        }
        if self.tcp_closed_linger_ns < 0 {
            return Err(ConfigError {
                field: "tcp_closed_linger_ns",
                expected: "zero or positive",
                value: self.tcp_closed_linger_ns,
            });
        }
        if self.max_flows == Some(0) {
            return Err(ConfigError {
                field: "max_flows",
                expected: "at least 1",
                value: 0,
            });
        }
        Ok(())
    }

    fn idle_ns(&self, protocol: u8) -> i64 {
        match protocol {
            ip_protocol::TCP => self.tcp_idle_ns,
            ip_protocol::UDP => self.udp_idle_ns,
            ip_protocol::ICMP | ip_protocol::ICMPV6 => self.icmp_idle_ns,
            _ => self.other_idle_ns,
        }
    }
}

/// What [`FlowTable::observe`] tells the caller about a packet.
#[derive(Debug)]
pub struct Observation<'a, T> {
    /// The packet created the flow (the `init` closure ran).
    pub is_new: bool,
    /// The packet went initiator → responder.
    pub from_initiator: bool,
    pub tuple: FlowTuple,
    pub state: FlowState,
    /// The flow's user slot.
    pub user: &'a mut T,
}

/// Canonical (direction-free) key: the two endpoints in ascending order.
/// Addresses are IPv4-mapped for IPv4 (`lo_v6`, `hi_v6` tell the families
/// apart, each endpoint's: a caller's packet may mix them); kept as `u64`
/// halves so that the key is 40 bytes with 8-byte alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowKey {
    lo: [u64; 2],
    hi: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    protocol: u8,
    lo_v6: bool,
    hi_v6: bool,
}

/// Five word writes (the derived `Hash` would add slice lengths and
/// separate small writes): hashing is on every packet's path.
impl std::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.lo[0]);
        state.write_u64(self.lo[1]);
        state.write_u64(self.hi[0]);
        state.write_u64(self.hi[1]);
        state.write_u64(
            u64::from(self.lo_port)
                | u64::from(self.hi_port) << 16
                | u64::from(self.protocol) << 32
                | u64::from(self.lo_v6) << 40
                | u64::from(self.hi_v6) << 41,
        );
    }
}

impl FlowKey {
    /// Both endpoints have the same address.
    fn same_addr(&self) -> bool {
        self.lo == self.hi && self.lo_v6 == self.hi_v6
    }

    /// Both endpoints are the same (address and port).
    fn is_self(&self) -> bool {
        self.same_addr() && self.lo_port == self.hi_port
    }

    /// The endpoints' addresses ([`addr_bits`] undone), `lo` first.
    fn addrs(&self) -> (IpAddr, IpAddr) {
        let addr = |bits: [u64; 2], v6: bool| {
            let x = u128::from(bits[0]) << 64 | u128::from(bits[1]);
            if v6 {
                IpAddr::V6(Ipv6Addr::from(x))
            } else {
                IpAddr::V4(Ipv4Addr::from(x as u32))
            }
        };
        (addr(self.lo, self.lo_v6), addr(self.hi, self.hi_v6))
    }
}

#[inline]
fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

#[inline]
fn halves(x: u128) -> [u64; 2] {
    [(x >> 64) as u64, x as u64]
}

/// Role of an ICMP message in a query/reply pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IcmpRole {
    Request,
    Reply,
    Other,
}

/// Classifies ICMP(v6) messages: query pairs are keyed by
/// `(request type, identifier)`, others by `(type, code)`.
fn icmp_class(protocol: u8, icmp: Option<IcmpInfo>) -> (u16, u16, IcmpRole) {
    let Some(i) = icmp else { return (0, 0, IcmpRole::Other) };
    let pair = match (protocol, i.icmp_type) {
        // echo, timestamp, information, address mask (RFC 792, RFC 950)
        (ip_protocol::ICMP, 8 | 13 | 15 | 17) => Some((i.icmp_type, IcmpRole::Request)),
        (ip_protocol::ICMP, 0) => Some((8, IcmpRole::Reply)),
        (ip_protocol::ICMP, 14 | 16 | 18) => Some((i.icmp_type - 1, IcmpRole::Reply)),
        // extended echo (RFC 8335)
        (ip_protocol::ICMP, 42) => Some((42, IcmpRole::Request)),
        (ip_protocol::ICMP, 43) => Some((42, IcmpRole::Reply)),
        // ICMPv6 echo (RFC 4443) and extended echo (RFC 8335)
        (ip_protocol::ICMPV6, 128 | 160) => Some((i.icmp_type, IcmpRole::Request)),
        (ip_protocol::ICMPV6, 129 | 161) => Some((i.icmp_type - 1, IcmpRole::Reply)),
        _ => None,
    };
    match pair {
        Some((req, role)) => (u16::from(req), i.id, role),
        None => (u16::from(i.icmp_type), u16::from(i.code), IcmpRole::Other),
    }
}

/// A packet's key, hash and orientation, computed before its lookup.
#[derive(Clone, Copy, Debug)]
struct Prepared {
    key: FlowKey,
    hash: u64,
    role: IcmpRole,
    /// The packet's source endpoint is the key's `lo` endpoint.
    src_is_lo: bool,
}

/// The per-packet state of a flow, in the first two cache lines of its
/// slot: a packet of a known flow reads and writes only these.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug)]
struct Hot {
    key: FlowKey,
    last_ns: i64,
    /// The table's clock at the flow's last packet: the idle timeout counts
    /// from it. The same as `last_ns` when packet times only grow; when
    /// they step back, the flow's packets still keep it alive (its reported
    /// times stay the packets').
    active_ns: i64,
    /// Initiator to responder, and back; their TCP flags below.
    fwd: Counters,
    rev: Counters,
    first_ns: i64,
    /// Token of this flow's one valid timer; 0 = the slot is free.
    token: u64,
    state: FlowState,
    /// The initiator is the key's `lo` endpoint.
    initiator_lo: bool,
    fwd_flags: u8,
    rev_flags: u8,
    end_reason: EndReason,
    icmp: Option<IcmpInfo>,
}

// A packet of a known flow touches two cache lines, no more.
const _: () = assert!(std::mem::size_of::<Hot>() == 128);

/// A flow's slot: three cache lines with a user value of up to 16 bytes
/// (26.7k flows of benches/compare.sh: 5.1 MiB, where a fourth line made
/// 6.8 MiB to fault in). The tuple is not kept: the key and the initiator
/// flag give it back ([`Flow::tuple`]).
struct Flow<T> {
    hot: Hot,
    reported_fwd: Counters,
    reported_rev: Counters,
    /// When the TCP close was seen (valid when `state == Ended`).
    closed_ns: i64,
    next_report_ns: i64,
    user: T,
}

const _: () = assert!(std::mem::size_of::<Flow<[u32; 4]>>() == 192);

impl<T> Flow<T> {
    /// The flow's tuple, from its initiator.
    fn tuple(&self) -> FlowTuple {
        let k = &self.hot.key;
        let (lo, hi) = k.addrs();
        // The key's ports of ICMP flows are the query pairing, not ports.
        let (lo_port, hi_port) = if ip_protocol::has_ports(k.protocol) {
            (k.lo_port, k.hi_port)
        } else {
            (0, 0)
        };
        let (src, src_port, dst, dst_port) = if self.hot.initiator_lo {
            (lo, lo_port, hi, hi_port)
        } else {
            (hi, hi_port, lo, lo_port)
        };
        FlowTuple {
            protocol: k.protocol,
            src,
            src_port,
            dst,
            dst_port,
        }
    }
}

impl<T: Clone> Flow<T> {
    fn snapshot(&self, kind: FlowRecordKind, at_ns: i64) -> FlowRecord<T> {
        let h = &self.hot;
        let stats = |c: Counters, tcp_flags: u8| DirectionStats {
            packets: c.packets,
            bytes: c.bytes,
            tcp_flags,
        };
        FlowRecord {
            kind,
            at_ns,
            tuple: self.tuple(),
            icmp: h.icmp,
            // A record cut by the active timeout with no packet since starts
            // nowhere: give it its flow's last packet time, not a sentinel.
            first_ns: if h.first_ns == i64::MAX { h.last_ns } else { h.first_ns },
            last_ns: h.last_ns,
            state: h.state,
            forward: stats(h.fwd, h.fwd_flags),
            reverse: stats(h.rev, h.rev_flags),
            interval_forward: h.fwd.saturating_sub(self.reported_fwd),
            interval_reverse: h.rev.saturating_sub(self.reported_rev),
            user: self.user.clone(),
        }
    }

    /// Whether the current record has a packet (one restarted by the
    /// active timeout has none until the flow's next packet).
    fn has_packets(&self) -> bool {
        self.hot.fwd.packets + self.hot.rev.packets > 0
    }

    /// A new record of the same flow after an active timeout: counters
    /// and first time start again with the next packet; the tuple, state,
    /// user slot and last time (the idle timeout counts from it) stay.
    fn restart(&mut self) {
        let h = &mut self.hot;
        (h.fwd, h.rev) = (Counters::default(), Counters::default());
        (h.fwd_flags, h.rev_flags) = (0, 0);
        h.first_ns = i64::MAX;
        self.reported_fwd = Counters::default();
        self.reported_rev = Counters::default();
    }

    /// The flow's end record, for an end by `reason` at `at_ns`.
    fn end_record(&self, reason: EndReason, at_ns: i64) -> FlowRecord<T> {
        // A TCP flow already closed (FIN both ways, or RST) and lingering
        // for its last ACKs ended by that close, whatever removes it now.
        let reason = if self.hot.state == FlowState::Ended && matches!(reason, EndReason::Flushed | EndReason::Evicted) {
            self.hot.end_reason
        } else {
            reason
        };
        self.snapshot(FlowRecordKind::End(reason), at_ns)
    }

    /// Accounts `pkt`; returns whether it went initiator → responder and,
    /// when the flow needs a new timer, a time: the close-linger deadline
    /// when the packet closed a TCP flow, the packet's time when it is the
    /// first of a record restarted by the active timeout.
    #[inline]
    fn update(&mut self, pkt: &PacketInfo, prep: &Prepared, now: i64, linger: i64) -> (bool, Option<i64>) {
        let h = &mut self.hot;
        let from_initiator = match pkt.protocol {
            // Both endpoints identical: nothing tells the directions apart.
            p if ip_protocol::has_ports(p) && h.key.is_self() => true,
            p if ip_protocol::has_ports(p) => prep.src_is_lo == h.initiator_lo,
            _ if h.key.same_addr() => prep.role != IcmpRole::Reply,
            _ => prep.src_is_lo == h.initiator_lo,
        };
        // The first packet of a record the active timeout restarted: its
        // next active deadline needs a timer.
        let restarted = h.first_ns == i64::MAX;
        let (dir, flags) = if from_initiator {
            (&mut h.fwd, &mut h.fwd_flags)
        } else {
            (&mut h.rev, &mut h.rev_flags)
        };
        dir.packets += 1;
        dir.bytes += u64::from(pkt.ip_len);
        *flags |= pkt.tcp_flags;
        h.last_ns = h.last_ns.max(pkt.ts_ns);
        h.active_ns = h.active_ns.max(now);
        h.first_ns = h.first_ns.min(pkt.ts_ns);
        if h.state == FlowState::Begin && !from_initiator {
            h.state = FlowState::Established;
        }
        if pkt.protocol == ip_protocol::TCP && h.state != FlowState::Ended {
            let rst = pkt.tcp_flags & tcp_flags::RST != 0;
            let fins = h.fwd_flags & h.rev_flags & tcp_flags::FIN != 0;
            if rst || fins {
                h.state = FlowState::Ended;
                h.end_reason = if rst { EndReason::TcpRst } else { EndReason::TcpFin };
                self.closed_ns = now;
                return (from_initiator, Some(now.saturating_add(linger)));
            }
        }
        (from_initiator, restarted.then_some(now))
    }

    /// The earliest due event: (time, `None` = report, `Some` = end).
    fn due(&self, cfg: &FlowTableConfig) -> (i64, Option<EndReason>) {
        let mut best = (self.next_report_ns, None);
        let mut consider = |t: i64, r: EndReason| {
            // At equal times the end wins: no report just before an end.
            if t < best.0 || (t == best.0 && best.1.is_none()) {
                best = (t, Some(r));
            }
        };
        consider(
            self.hot.active_ns.saturating_add(cfg.idle_ns(self.hot.key.protocol)),
            EndReason::IdleTimeout,
        );
        if self.hot.state == FlowState::Ended {
            consider(self.closed_ns.saturating_add(cfg.tcp_closed_linger_ns), self.hot.end_reason);
        }
        if let Some(active) = cfg.active_timeout_ns {
            consider(self.hot.first_ns.saturating_add(active), EndReason::ActiveTimeout);
        }
        best
    }
}

/// Timer heap entry: (deadline, token, flow slot). Ordered by deadline,
/// then token (a counter), so expiry order is deterministic. A timer is
/// valid while its token is its slot's token: a flow gets a new token when
/// it is rescheduled, and a freed slot has token 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    deadline: i64,
    token: u64,
    slot: u32,
}

impl Ord for Timer {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.deadline, o.token).cmp(&(self.deadline, self.token))
    }
}

impl PartialOrd for Timer {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The flow index: open addressing with linear probing over 4-byte entries,
/// 0 = empty, at most half full. An entry's bits under `slot_mask` (those
/// of the capacity, a power of two, minus one) hold `slot + 1` (a slot is
/// always below the capacity, see [`FlowTable::insert`]), the bits above
/// them the same bits of the high half of the key's hash: a tag that skips
/// most non-matching slots without reading them. The home bucket comes from the hash's low bits. The hash
/// is seeded per table (foldhash), so a crafted capture cannot aim at one
/// probe sequence.
///
/// (8-byte entries holding 32 bits of hash made the index twice as large:
/// 512 KiB at 27k flows, past the core's L2 cache beside the flows'
/// own lines. The index load was then most of a packet's tracking time.)
struct FlowIndex {
    entries: Vec<u32>,
    mask: usize,
    /// `slot + 1` bits of an entry: `capacity - 1`.
    slot_mask: u32,
}

impl FlowIndex {
    const MIN_CAPACITY: usize = 1024;

    fn new() -> Self {
        Self::resized(0)
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash as usize) & self.mask
    }

    #[inline]
    fn tag(&self, hash: u64) -> u32 {
        ((hash >> 32) as u32) & !self.slot_mask
    }

    #[inline]
    fn entry(&self, hash: u64, slot: u32) -> u32 {
        self.tag(hash) | (slot + 1)
    }

    #[inline]
    fn slot_of(&self, e: u32) -> u32 {
        (e & self.slot_mask).wrapping_sub(1)
    }

    /// Position and slot of the entry whose slot satisfies `is_match`.
    #[inline]
    fn find(&self, hash: u64, mut is_match: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let tag = self.tag(hash);
        let mut i = self.home(hash);
        loop {
            let e = self.entries[i];
            if e == 0 {
                return None;
            }
            if e & !self.slot_mask == tag && is_match(self.slot_of(e)) {
                return Some((i, self.slot_of(e)));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Adds `slot` under `hash` (not present; the caller keeps the index at
    /// most half full and every slot below its capacity).
    #[inline]
    fn insert(&mut self, hash: u64, slot: u32) {
        let mut i = self.home(hash);
        while self.entries[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = self.entry(hash, slot);
    }

    /// Removes the entry at position `i`, shifting later entries of the
    /// cluster back so that every entry stays reachable from its home.
    /// `hash_of` gives a slot's hash (entries keep only a tag of it).
    fn remove_at(&mut self, mut i: usize, hash_of: impl Fn(u32) -> u64) {
        let mask = self.mask;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e == 0 {
                break;
            }
            let home = self.home(hash_of(self.slot_of(e)));
            // `e` may move to the hole at `i` unless its home lies
            // cyclically in (i, j].
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.entries[i] = e;
                i = j;
            }
        }
        self.entries[i] = 0;
    }

    fn clear(&mut self) {
        self.entries.iter_mut().for_each(|e| *e = 0);
    }

    /// Slots this index can hold: `slot + 1` must fit under `slot_mask`.
    fn slot_limit(&self) -> usize {
        self.slot_mask as usize
    }

    /// A new, empty index with room for `live` entries at half load.
    fn resized(live: usize) -> Self {
        // Capped at 2^31 entries: `slot + 1` and a tag bit in 32 bits.
        let cap = (live * 2).next_power_of_two().clamp(Self::MIN_CAPACITY, 1 << 31);
        let mut entries = vec![0u32; cap];
        // A large zeroed allocation is fresh memory that the kernel maps
        // page by page on first touch. Probes read before inserts write, so
        // each page would first be mapped read-only to the shared zero page,
        // then copied on the first write, and that remap flushes the TLB of
        // every core running the process: an interrupt to the decoding
        // thread per 4 KiB (measured with perf: ~2.5% of `evaluate`'s
        // samples in `do_wp_page`). Writing each page once here maps it
        // writable from the start.
        for e in entries.iter_mut().step_by(4096 / std::mem::size_of::<u32>()) {
            *e = std::hint::black_box(0);
        }
        FlowIndex {
            entries,
            mask: cap - 1,
            slot_mask: (cap - 1) as u32,
        }
    }
}

/// Flow slots in fixed chunks: growing never moves a flow (no copy of
/// megabytes of live flows, no remapping of the whole array, which costs
/// the other cores a TLB flush), and an index is a shift and a mask.
struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

/// Slots per chunk: 64 KiB of flows, below the C allocator's threshold for
/// a memory map of its own (128 KiB), so that freeing a table's chunks is
/// not one `munmap` and TLB flush each.
const SLAB_CHUNK: usize = 256;

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    #[inline]
    fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / SLAB_CHUNK)?.get(i % SLAB_CHUNK)
    }

    #[inline]
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / SLAB_CHUNK)?.get_mut(i % SLAB_CHUNK)
    }

    fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < SLAB_CHUNK => c.push(v),
            _ => {
                let mut c = Vec::with_capacity(SLAB_CHUNK);
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;
    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / SLAB_CHUNK][i % SLAB_CHUNK]
    }
}

/// The flow table. `T` is the caller's per-flow slot; it is cloned into
/// `Begin` and `Report` records (keep it small, or an `Arc`). A slot's `T`
/// is dropped when the slot is reused or the table is dropped.
pub struct FlowTable<T> {
    cfg: FlowTableConfig,
    hasher: foldhash::fast::RandomState,
    index: FlowIndex,
    /// Flow slots; a free slot has token 0 and is listed in `free`.
    slots: Slab<Flow<T>>,
    free: Vec<u32>,
    live: usize,
    /// Min-heap (by `Timer`'s reversed order) with one valid timer per flow.
    timers: BinaryHeap<Timer>,
    next_token: u64,
    clock: i64,
    outbox: Vec<FlowRecord<T>>,
}

impl<T: Clone> FlowTable<T> {
    /// A table with `cfg`.
    pub fn new(cfg: FlowTableConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(FlowTable {
            cfg,
            hasher: foldhash::fast::RandomState::default(),
            index: FlowIndex::new(),
            slots: Slab::default(),
            free: Vec::new(),
            live: 0,
            timers: BinaryHeap::new(),
            next_token: 0,
            clock: i64::MIN,
            outbox: Vec::new(),
        })
    }

    /// Gives every live flow's user slot a new value, from its tuple: for
    /// tracking that starts before the user values can be computed (flows
    /// tracked with a placeholder, their verdicts given later).
    pub fn for_each_user_mut(&mut self, mut f: impl FnMut(&FlowTuple, &mut T)) {
        for chunk in &mut self.slots.chunks {
            for flow in chunk.iter_mut().filter(|f| f.hot.token != 0) {
                let t = flow.tuple();
                f(&t, &mut flow.user);
            }
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.live
    }

    /// No live flows.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The table's clock: the latest time passed to `advance`/`observe`
    /// (`i64::MIN` before the first).
    pub fn now_ns(&self) -> i64 {
        self.clock
    }

    /// Records produced and not yet drained.
    pub fn pending_records(&self) -> &[FlowRecord<T>] {
        &self.outbox
    }

    /// Takes the records produced so far, in production order (their
    /// `at_ns` never decreases). The outbox keeps its capacity.
    pub fn drain_records(&mut self) -> std::vec::Drain<'_, FlowRecord<T>> {
        self.outbox.drain(..)
    }

    /// Moves the clock to `now_ns` (an earlier time is ignored: capture
    /// timestamps may step back a little) and produces the reports and ends
    /// that are due by then.
    pub fn advance(&mut self, now_ns: i64) {
        self.clock = self.clock.max(now_ns);
        let now = self.clock;
        while let Some(&t) = self.timers.peek() {
            if t.deadline > now {
                break;
            }
            self.timers.pop();
            self.service(t, now);
        }
    }

    #[inline]
    fn prepare(&self, pkt: &PacketInfo) -> Prepared {
        let (key, role, src_is_lo) = key_of(pkt);
        Prepared {
            key,
            hash: self.hasher.hash_one(key),
            role,
            src_is_lo,
        }
    }

    /// Accounts one packet: advances the clock to its timestamp, finds or
    /// creates its flow and updates counters and state. For a new flow,
    /// `init` gets the flow's oriented tuple and the packet and returns the
    /// user slot (e.g. evaluate the NSG chain and keep the verdict).
    pub fn observe<F>(&mut self, pkt: &PacketInfo, init: F) -> Observation<'_, T>
    where
        F: FnOnce(&FlowTuple, &PacketInfo) -> T,
    {
        let prep = self.prepare(pkt);
        let (slot, is_new, from_initiator) = self.observe_prepared(pkt, &prep, init);
        let flow = &mut self.slots[slot as usize];
        Observation {
            is_new,
            from_initiator,
            tuple: flow.tuple(),
            state: flow.hot.state,
            user: &mut flow.user,
        }
    }

    /// [`FlowTable::observe`] for each packet of `pkts` in order, handing
    /// the records each produces to `sink` (as [`FlowTable::drain_records`]
    /// after each packet would).
    ///
    /// (Hashing the whole batch first and prefetching each packet's index
    /// bucket and slot a few packets ahead was measured no faster than this
    /// loop on the 27k-flow bench, `benches/flowtable.rs`: the out-of-order
    /// core already overlaps the misses of neighbouring packets.)
    pub fn observe_batch<F, S>(&mut self, pkts: &[PacketInfo], mut init: F, mut sink: S)
    where
        F: FnMut(&FlowTuple, &PacketInfo) -> T,
        S: FnMut(FlowRecord<T>),
    {
        for pkt in pkts {
            let prep = self.prepare(pkt);
            self.observe_prepared(pkt, &prep, &mut init);
            for r in self.outbox.drain(..) {
                sink(r);
            }
        }
    }

    /// The slot of the live flow with `prep`'s key, and its index position.
    #[inline]
    fn lookup(&self, prep: &Prepared) -> Option<(usize, u32)> {
        let slots = &self.slots;
        self.index.find(prep.hash, |s| {
            slots.get(s as usize).is_some_and(|f| f.hot.token != 0 && f.hot.key == prep.key)
        })
    }

    /// `observe` after the key is known: (slot, is_new, from_initiator).
    fn observe_prepared<F>(&mut self, pkt: &PacketInfo, prep: &Prepared, init: F) -> (u32, bool, bool)
    where
        F: FnOnce(&FlowTuple, &PacketInfo) -> T,
    {
        self.advance(pkt.ts_ns);
        let now = self.clock;
        let syn_only = pkt.protocol == ip_protocol::TCP && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let mut found = self.lookup(prep).map(|(_, s)| s);
        if found.is_none() {
            if let Some(max) = self.cfg.max_flows {
                while self.live >= max && self.evict_one() {}
                // Eviction never removes this packet's flow (it has none).
            }
        }
        let mut is_new = false;
        let slot = match found.take() {
            Some(slot) => {
                let flow = &mut self.slots[slot as usize];
                if syn_only && flow.hot.state == FlowState::Ended {
                    // A new SYN on a closed TCP flow: the port was reused.
                    let new = new_flow(&self.cfg, pkt, prep, now, init);
                    let old = std::mem::replace(flow, new);
                    let mut rec = old.snapshot(FlowRecordKind::End(EndReason::Reused), now);
                    rec.user = old.user;
                    self.outbox.push(rec);
                    is_new = true;
                }
                slot
            }
            None => {
                is_new = true;
                let flow = new_flow(&self.cfg, pkt, prep, now, init);
                self.insert(prep.hash, flow)
            }
        };
        let FlowTable {
            cfg,
            slots,
            timers,
            next_token,
            outbox,
            ..
        } = self;
        let flow = &mut slots[slot as usize];
        let (from_initiator, close_deadline) = flow.update(pkt, prep, now, cfg.tcp_closed_linger_ns);
        if is_new {
            *next_token += 1;
            flow.hot.token = *next_token;
            let (deadline, _) = flow.due(cfg);
            timers.push(Timer {
                deadline,
                token: flow.hot.token,
                slot,
            });
            if cfg.emit_begin {
                let mut rec = flow.snapshot(FlowRecordKind::Begin, now);
                // A Begin carries no interval counters (a `B` tuple has none);
                // the first packet is counted in the flow's next record.
                rec.interval_forward = Counters::default();
                rec.interval_reverse = Counters::default();
                outbox.push(rec);
            }
        }
        if close_deadline.is_some() && !is_new {
            // The close linger (or a restarted record's active timeout) may
            // come before the scheduled check: replace the flow's timer by
            // one at its (new) earliest due event.
            let (deadline, _) = flow.due(cfg);
            *next_token += 1;
            flow.hot.token = *next_token;
            timers.push(Timer {
                deadline,
                token: flow.hot.token,
                slot,
            });
        }
        (slot, is_new, from_initiator)
    }

    /// Stores a new flow (token still 0: the caller sets it) and indexes it.
    fn insert(&mut self, hash: u64, flow: Flow<T>) -> u32 {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = flow;
                s
            }
            None => {
                self.slots.push(flow);
                (self.slots.len() - 1) as u32
            }
        };
        self.live += 1;
        if self.live * 2 > self.index.entries.len() {
            self.grow();
        }
        // A slot is below the live flows' high-water mark, which half load
        // keeps below the capacity: an entry's slot bits never reach its tag.
        debug_assert!((slot as usize) < self.index.slot_limit());
        self.index.insert(hash, slot);
        slot
    }

    /// Doubles the index and re-indexes the live flows.
    fn grow(&mut self) {
        let mut index = FlowIndex::resized(self.live);
        for (s, f) in self.slots.iter().enumerate() {
            if f.hot.token != 0 {
                index.insert(self.hasher.hash_one(f.hot.key), s as u32);
            }
        }
        self.index = index;
    }

    /// Ends every live flow (`EndReason::Flushed`, at the clock), in order
    /// of first packet; drain the records afterwards. The table stays usable.
    pub fn finish(&mut self) {
        let mut ended = std::mem::take(&mut self.outbox);
        self.finish_each(|r| ended.push(r));
        self.outbox = ended;
    }

    /// [`FlowTable::finish`], handing the records (those not yet drained,
    /// then the ends) to `sink` one by one instead of collecting them: at
    /// the end of a capture most flows are live, and their records one at
    /// a time stay in cache.
    pub fn finish_each(&mut self, mut sink: impl FnMut(FlowRecord<T>)) {
        for r in self.outbox.drain(..) {
            sink(r);
        }
        let now = self.clock;
        // Snapshots in place, then one clear: cheaper than removing the
        // flows one by one in an order unrelated to the table's.
        // Every live flow ends, a record the active timeout cut with no
        // packet since too (its flow log writes the flow's end).
        let ending = |f: &&Flow<T>| f.hot.token != 0;
        let key = |f: &Flow<T>| (f.hot.first_ns, f.hot.token);
        // Slots are taken in the order flows start, so unless flows ended
        // (and their slots were reused) or time stepped back, the slots are
        // already in order: then no list to build (and fault in) and sort.
        let in_order = self
            .slots
            .iter()
            .filter(ending)
            .map(key)
            .try_fold(None, |last, k| match last {
                Some(l) if l > k => None,
                _ => Some(Some(k)),
            })
            .is_some();
        if in_order {
            for f in self.slots.iter().filter(ending) {
                sink(f.end_record(EndReason::Flushed, now));
            }
        } else {
            let mut order: Vec<(i64, u64, u32)> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, f)| ending(f))
                .map(|(s, f)| (f.hot.first_ns, f.hot.token, s as u32))
                .collect();
            order.sort_unstable();
            for (_, _, s) in order {
                sink(self.slots[s as usize].end_record(EndReason::Flushed, now));
            }
        }
        self.slots.clear();
        self.free.clear();
        self.live = 0;
        self.index.clear();
        self.timers.clear();
    }

    /// Handles a due timer: produces the flow's earliest due event (if it
    /// is due) and reschedules the flow at its next one. One event per pop
    /// keeps records of different flows in time order.
    fn service(&mut self, timer: Timer, now: i64) {
        let interval = self.cfg.report_interval_ns.unwrap_or(i64::MAX);
        let Some(f) = self.slots.get_mut(timer.slot as usize) else { return };
        if f.hot.token != timer.token {
            return; // stale: the flow was rescheduled, replaced or ended
        }
        let (t, what) = f.due(&self.cfg);
        // A timer set before the flow's last packets can be earlier than
        // the flow's due event; then only reschedule, so that events of all
        // flows come out in time order.
        if t <= timer.deadline && t <= now {
            match what {
                Some(EndReason::ActiveTimeout) => {
                    // The record ends, the connection does not: ending the
                    // flow would make its next packet (often the
                    // responder's) a new flow's initiator, judged again
                    // from the wrong side.
                    let rec = f.end_record(EndReason::ActiveTimeout, t);
                    f.restart();
                    self.outbox.push(rec);
                }
                Some(reason) => {
                    self.end_flow(timer.slot, reason, t);
                    return;
                }
                None => {
                    let rec = f.snapshot(FlowRecordKind::Report, t);
                    f.reported_fwd = f.hot.fwd;
                    f.reported_rev = f.hot.rev;
                    f.next_report_ns = f.next_report_ns.saturating_add(interval);
                    // A record restarted by the active timeout with no
                    // packet since has nothing to report.
                    if f.has_packets() {
                        self.outbox.push(rec);
                    }
                }
            }
        }
        let (next, _) = f.due(&self.cfg);
        self.next_token += 1;
        f.hot.token = self.next_token;
        self.timers.push(Timer {
            deadline: next,
            token: f.hot.token,
            slot: timer.slot,
        });
    }

    /// Removes the live flow in `slot` and queues its end record.
    fn end_flow(&mut self, slot: u32, reason: EndReason, at_ns: i64) {
        let Some(f) = self.slots.get_mut(slot as usize) else { return };
        if f.hot.token == 0 {
            return;
        }
        let rec = f.end_record(reason, at_ns);
        f.hot.token = 0;
        let hash = self.hasher.hash_one(f.hot.key);
        if let Some((pos, _)) = self.index.find(hash, |s| s == slot) {
            let (slots, hasher) = (&self.slots, &self.hasher);
            self.index
                .remove_at(pos, |s| slots.get(s as usize).map_or(0, |f| hasher.hash_one(f.hot.key)));
        }
        self.free.push(slot);
        self.live -= 1;
        self.outbox.push(rec);
    }

    /// Ends the live flow with the earliest timer. False when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some(t) = self.timers.pop() {
            if matches!(self.slots.get(t.slot as usize), Some(f) if f.hot.token == t.token) {
                let now = self.clock;
                self.end_flow(t.slot, EndReason::Evicted, now);
                return true;
            }
        }
        false
    }
}

/// Whether a flow's first packet, from `src_port` to `dst_port`, most
/// likely came from its server: it goes to a port of the range that
/// clients' stacks pick their ports from (32768 and up: Linux uses
/// 32768-60999, Windows and IANA 49152-65535, RFC 6335 §6) from a port
/// below it, as from 443 to 51000, from 8443 to 35000 or from 53 to 33000.
/// A client bound to a low port (an NFS client's 800 to 2049) and two ports
/// of the same kind keep the first sender as initiator. (Zeek turns partial
/// connections by likely server ports the same way.)
fn server_side_first(src_port: u16, dst_port: u16) -> bool {
    const EPHEMERAL: u16 = 32768;
    src_port < EPHEMERAL && dst_port >= EPHEMERAL
}

fn new_flow<T, F>(cfg: &FlowTableConfig, pkt: &PacketInfo, prep: &Prepared, now: i64, init: F) -> Flow<T>
where
    F: FnOnce(&FlowTuple, &PacketInfo) -> T,
{
    let (sp, dp) = if ip_protocol::has_ports(pkt.protocol) {
        (pkt.src_port, pkt.dst_port)
    } else {
        (0, 0)
    };
    // The receiver of a first-seen SYN-ACK (or ICMP query reply) initiated
    // the flow. A TCP flow first seen after its handshake (a capture started
    // on a host with connections open), or a UDP flow, is taken as
    // initiated from the other side when its first packet came from a
    // server's port (a flow judged from the wrong side gets the wrong NSG
    // verdict, and a denied flow cannot have replies).
    let reversed = match pkt.protocol {
        ip_protocol::TCP => match pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) {
            f if f == tcp_flags::SYN | tcp_flags::ACK => true,
            f if f & tcp_flags::SYN != 0 => false,
            _ => server_side_first(pkt.src_port, pkt.dst_port),
        },
        p if ip_protocol::has_ports(p) => server_side_first(pkt.src_port, pkt.dst_port),
        ip_protocol::ICMP | ip_protocol::ICMPV6 => prep.role == IcmpRole::Reply,
        _ => false,
    };
    let tuple = if reversed {
        FlowTuple {
            protocol: pkt.protocol,
            src: pkt.dst,
            src_port: dp,
            dst: pkt.src,
            dst_port: sp,
        }
    } else {
        FlowTuple {
            protocol: pkt.protocol,
            src: pkt.src,
            src_port: sp,
            dst: pkt.dst,
            dst_port: dp,
        }
    };
    let user = init(&tuple, pkt);
    let flow = Flow {
        hot: Hot {
            key: prep.key,
            last_ns: pkt.ts_ns,
            active_ns: now,
            fwd: Counters::default(),
            rev: Counters::default(),
            first_ns: pkt.ts_ns,
            token: 0,
            state: FlowState::Begin,
            initiator_lo: prep.src_is_lo != reversed,
            fwd_flags: 0,
            rev_flags: 0,
            end_reason: EndReason::IdleTimeout,
            // The flow's ICMP fields are its initiator's: a query flow first
            // seen by its reply carries the request's type.
            icmp: match (reversed, pkt.icmp) {
                (true, Some(i)) if matches!(pkt.protocol, ip_protocol::ICMP | ip_protocol::ICMPV6) => Some(IcmpInfo {
                    icmp_type: icmp_class(pkt.protocol, pkt.icmp).0 as u8,
                    ..i
                }),
                (_, icmp) => icmp,
            },
        },
        reported_fwd: Counters::default(),
        reported_rev: Counters::default(),
        closed_ns: 0,
        next_report_ns: cfg.report_interval_ns.map_or(i64::MAX, |iv| now.saturating_add(iv)),
        user,
    };
    debug_assert_eq!(flow.tuple(), tuple, "the key and initiator flag give the tuple back");
    flow
}

/// The packet's canonical key, its ICMP role, and whether its source is
/// the key's `lo` endpoint.
#[inline]
fn key_of(pkt: &PacketInfo) -> (FlowKey, IcmpRole, bool) {
    // Endpoints ordered by address, then family (an IPv4 address and its
    // IPv4-mapped IPv6 form have the same bits).
    let (src, dst) = ((addr_bits(pkt.src), pkt.src.is_ipv6()), (addr_bits(pkt.dst), pkt.dst.is_ipv6()));
    let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
    let key = |lo: (u128, bool), hi: (u128, bool), lo_port: u16, hi_port: u16| FlowKey {
        lo: halves(lo.0),
        hi: halves(hi.0),
        lo_port,
        hi_port,
        protocol: pkt.protocol,
        lo_v6: lo.1,
        hi_v6: hi.1,
    };
    match pkt.protocol {
        p if ip_protocol::has_ports(p) => {
            let a = (src, pkt.src_port);
            let b = (dst, pkt.dst_port);
            if a <= b {
                (key(a.0, b.0, a.1, b.1), IcmpRole::Other, true)
            } else {
                (key(b.0, a.0, b.1, a.1), IcmpRole::Other, false)
            }
        }
        ip_protocol::ICMP | ip_protocol::ICMPV6 => {
            let (p, q, role) = icmp_class(pkt.protocol, pkt.icmp);
            (key(lo, hi, p, q), role, src <= dst)
        }
        _ => (key(lo, hi, 0, 0), IcmpRole::Other, src <= dst),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Slot `s` lives under `hashes[s]`; `find` by slot identity.
    fn find(ix: &FlowIndex, hash: u64, slot: u32) -> Option<usize> {
        ix.find(hash, |s| s == slot).map(|(pos, _)| pos)
    }

    proptest! {
        /// Inserts and removals in any order, with hashes crowded into a
        /// few home buckets (long clusters that wrap around the end): the
        /// index finds exactly the live slots, each under its hash.
        #[test]
        fn index_matches_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..600, 0u64..40), 1..2000)) {
            let mut ix = FlowIndex::new();
            let mut live: HashMap<u32, u64> = HashMap::new();
            for (insert, slot, h) in ops {
                // Homes near the end of the table, so clusters wrap.
                let hash = (h << 40) | (FlowIndex::MIN_CAPACITY as u64 - 20 + h);
                if insert {
                    if live.contains_key(&slot) || live.len() * 2 >= ix.entries.len() {
                        continue;
                    }
                    ix.insert(hash, slot);
                    live.insert(slot, hash);
                } else if let Some(hash) = live.remove(&slot) {
                    let pos = find(&ix, hash, slot);
                    prop_assert!(pos.is_some(), "slot {} lost before removal", slot);
                    if let Some(pos) = pos {
                        ix.remove_at(pos, |s| live.get(&s).copied().unwrap_or(0));
                    }
                }
                for (&s, &h) in &live {
                    prop_assert!(find(&ix, h, s).is_some(), "slot {} unreachable", s);
                }
                prop_assert_eq!(ix.entries.iter().filter(|&&e| e != 0).count(), live.len());
            }
        }
    }

    #[test]
    fn index_grows_and_keeps_every_flow() {
        let mut t: FlowTable<u32> = FlowTable::new(FlowTableConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let n = 5000u32;
        for i in 0..n {
            let p = PacketInfo {
                ts_ns: i64::from(i),
                src: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
                dst: IpAddr::from([192, 0, 2, 1]),
                protocol: ip_protocol::UDP,
                src_port: 5000,
                dst_port: 53,
                icmp: None,
                tcp_flags: 0,
                ip_len: 100,
            };
            assert!(t.observe(&p, |_, _| i).is_new);
            // The same packet again finds its flow.
            let o = t.observe(&p, |_, _| u32::MAX);
            assert!(!o.is_new);
            assert_eq!(*o.user, i);
        }
        assert_eq!(t.len(), n as usize);
        assert!(t.index.entries.len() >= 2 * n as usize);
    }
}
