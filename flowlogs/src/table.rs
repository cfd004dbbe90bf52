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
//!   `foldhash`) and a few counter updates, no allocation;
//! - memory is bounded by the live flows (and by `max_flows` when set).
//!
//! Records produced (begin, reports, ends) queue up in an outbox that the
//! caller empties with [`FlowTable::drain_records`].

use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

use thiserror::Error;

use crate::time::NS_PER_SEC;

/// IANA protocol numbers the table treats specially.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
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
    /// TCP/UDP source port; ignored for other protocols.
    pub src_port: u16,
    /// TCP/UDP destination port; ignored for other protocols.
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
/// (`dst`). Ports are 0 for protocols other than TCP and UDP (NSG rules see
/// ICMP as portless; spec §1.1).
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
    /// The flow lasted longer than the active timeout.
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

impl DirectionStats {
    fn counters(&self) -> Counters {
        Counters {
            packets: self.packets,
            bytes: self.bytes,
        }
    }
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
    /// End flows older than this, whatever their activity (default none:
    /// long flows are reported by `report_interval_ns` instead).
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

/// Canonical (direction-free) key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    lo: u128,
    hi: u128,
    lo_port: u16,
    hi_port: u16,
    protocol: u8,
    /// IPv6 (addresses are IPv4-mapped otherwise).
    v6: bool,
}

#[inline]
fn addr_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
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
        // ICMPv6 echo (RFC 4443)
        (ip_protocol::ICMPV6, 128) => Some((128, IcmpRole::Request)),
        (ip_protocol::ICMPV6, 129) => Some((128, IcmpRole::Reply)),
        _ => None,
    };
    match pair {
        Some((req, role)) => (u16::from(req), i.id, role),
        None => (u16::from(i.icmp_type), u16::from(i.code), IcmpRole::Other),
    }
}

struct Flow<T> {
    tuple: FlowTuple,
    icmp: Option<IcmpInfo>,
    first_ns: i64,
    last_ns: i64,
    fwd: DirectionStats,
    rev: DirectionStats,
    reported_fwd: Counters,
    reported_rev: Counters,
    state: FlowState,
    end_reason: EndReason,
    /// When the TCP close was seen (valid when `state == Ended`).
    closed_ns: i64,
    next_report_ns: i64,
    /// Token of this flow's one valid timer.
    token: u64,
    user: T,
}

impl<T: Clone> Flow<T> {
    fn snapshot(&self, kind: FlowRecordKind, at_ns: i64) -> FlowRecord<T> {
        FlowRecord {
            kind,
            at_ns,
            tuple: self.tuple,
            icmp: self.icmp,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            state: self.state,
            forward: self.fwd,
            reverse: self.rev,
            interval_forward: self.fwd.counters().saturating_sub(self.reported_fwd),
            interval_reverse: self.rev.counters().saturating_sub(self.reported_rev),
            user: self.user.clone(),
        }
    }

    /// The flow's end record, for an end by `reason` at `at_ns`.
    fn end_record(&self, reason: EndReason, at_ns: i64) -> FlowRecord<T> {
        // A TCP flow already closed (FIN both ways, or RST) and lingering
        // for its last ACKs ended by that close, whatever removes it now.
        let reason = if self.state == FlowState::Ended && matches!(reason, EndReason::Flushed | EndReason::Evicted) {
            self.end_reason
        } else {
            reason
        };
        self.snapshot(FlowRecordKind::End(reason), at_ns)
    }

    /// Is `pkt` initiator → responder?
    fn is_forward(&self, pkt: &PacketInfo, role: IcmpRole) -> bool {
        let t = &self.tuple;
        match pkt.protocol {
            // Both endpoints identical: nothing tells the directions apart.
            ip_protocol::TCP | ip_protocol::UDP if t.src == t.dst && t.src_port == t.dst_port => true,
            ip_protocol::TCP | ip_protocol::UDP => pkt.src == t.src && pkt.src_port == t.src_port,
            _ if t.src == t.dst => role != IcmpRole::Reply,
            _ => pkt.src == t.src,
        }
    }

    /// Accounts `pkt`; returns whether it went initiator → responder and
    /// the close-linger deadline when the packet closed a TCP flow.
    fn update(&mut self, pkt: &PacketInfo, role: IcmpRole, now: i64, linger: i64) -> (bool, Option<i64>) {
        let from_initiator = self.is_forward(pkt, role);
        let dir = if from_initiator { &mut self.fwd } else { &mut self.rev };
        dir.packets += 1;
        dir.bytes += u64::from(pkt.ip_len);
        dir.tcp_flags |= pkt.tcp_flags;
        self.last_ns = self.last_ns.max(pkt.ts_ns);
        self.first_ns = self.first_ns.min(pkt.ts_ns);
        if self.state == FlowState::Begin && !from_initiator {
            self.state = FlowState::Established;
        }
        if pkt.protocol == ip_protocol::TCP && self.state != FlowState::Ended {
            let rst = pkt.tcp_flags & tcp_flags::RST != 0;
            let fins = self.fwd.tcp_flags & self.rev.tcp_flags & tcp_flags::FIN != 0;
            if rst || fins {
                self.state = FlowState::Ended;
                self.end_reason = if rst { EndReason::TcpRst } else { EndReason::TcpFin };
                self.closed_ns = now;
                return (from_initiator, Some(now.saturating_add(linger)));
            }
        }
        (from_initiator, None)
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
            self.last_ns.saturating_add(cfg.idle_ns(self.tuple.protocol)),
            EndReason::IdleTimeout,
        );
        if self.state == FlowState::Ended {
            consider(self.closed_ns.saturating_add(cfg.tcp_closed_linger_ns), self.end_reason);
        }
        if let Some(active) = cfg.active_timeout_ns {
            consider(self.first_ns.saturating_add(active), EndReason::ActiveTimeout);
        }
        best
    }
}

/// Timer heap entry: (deadline, token, key). Ordered by deadline, then
/// token (a counter), so expiry order is deterministic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Timer {
    deadline: i64,
    token: u64,
    key: FlowKey,
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

/// The flow table. `T` is the caller's per-flow slot; it is cloned into
/// `Begin` and `Report` records (keep it small, or an `Arc`).
pub struct FlowTable<T> {
    cfg: FlowTableConfig,
    flows: HashMap<FlowKey, Flow<T>, foldhash::fast::RandomState>,
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
            flows: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            timers: BinaryHeap::new(),
            next_token: 0,
            clock: i64::MIN,
            outbox: Vec::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    /// Live flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// No live flows.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
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

    /// Accounts one packet: advances the clock to its timestamp, finds or
    /// creates its flow and updates counters and state. For a new flow,
    /// `init` gets the flow's oriented tuple and the packet and returns the
    /// user slot (e.g. evaluate the NSG chain and keep the verdict).
    pub fn observe<F>(&mut self, pkt: &PacketInfo, init: F) -> Observation<'_, T>
    where
        F: FnOnce(&FlowTuple, &PacketInfo) -> T,
    {
        self.advance(pkt.ts_ns);
        let now = self.clock;
        let (key, role) = key_of(pkt);
        let syn_only = pkt.protocol == ip_protocol::TCP && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        if let Some(max) = self.cfg.max_flows {
            if self.flows.len() >= max && !self.flows.contains_key(&key) {
                while self.flows.len() >= max && self.evict_one() {}
            }
        }

        let FlowTable {
            cfg,
            flows,
            timers,
            next_token,
            outbox,
            ..
        } = self;
        // One hash lookup for the common case (existing flow).
        let mut is_new = false;
        let flow = match flows.entry(key) {
            Entry::Occupied(o) => {
                let flow = o.into_mut();
                if syn_only && flow.state == FlowState::Ended {
                    // A new SYN on a closed TCP flow: the port was reused.
                    let old = std::mem::replace(flow, new_flow(cfg, pkt, role, init));
                    let mut rec = old.snapshot(FlowRecordKind::End(EndReason::Reused), now);
                    rec.user = old.user;
                    outbox.push(rec);
                    is_new = true;
                }
                flow
            }
            Entry::Vacant(v) => {
                is_new = true;
                v.insert(new_flow(cfg, pkt, role, init))
            }
        };
        let (from_initiator, close_deadline) = flow.update(pkt, role, now, cfg.tcp_closed_linger_ns);
        if is_new {
            *next_token += 1;
            flow.token = *next_token;
            let (deadline, _) = flow.due(cfg);
            timers.push(Timer {
                deadline,
                token: flow.token,
                key,
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
        if close_deadline.is_some() {
            // The close linger may come before the scheduled check: replace
            // the flow's timer by one at its (new) earliest due event.
            let (deadline, _) = flow.due(cfg);
            *next_token += 1;
            flow.token = *next_token;
            timers.push(Timer {
                deadline,
                token: flow.token,
                key,
            });
        }
        Observation {
            is_new,
            from_initiator,
            tuple: flow.tuple,
            state: flow.state,
            user: &mut flow.user,
        }
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
        let mut order: Vec<(i64, u64, &Flow<T>)> = self.flows.values().map(|f| (f.first_ns, f.token, f)).collect();
        order.sort_unstable_by_key(|&(first, token, _)| (first, token));
        for (_, _, f) in order {
            sink(f.end_record(EndReason::Flushed, now));
        }
        self.flows.clear();
        self.timers.clear();
    }

    /// Handles a due timer: produces the flow's earliest due event (if it
    /// is due) and reschedules the flow at its next one. One event per pop
    /// keeps records of different flows in time order.
    fn service(&mut self, timer: Timer, now: i64) {
        let interval = self.cfg.report_interval_ns.unwrap_or(i64::MAX);
        let Some(f) = self.flows.get_mut(&timer.key) else { return };
        if f.token != timer.token {
            return; // stale: the flow was rescheduled or replaced
        }
        let (t, what) = f.due(&self.cfg);
        // A timer set before the flow's last packets can be earlier than
        // the flow's due event; then only reschedule, so that events of all
        // flows come out in time order.
        if t <= timer.deadline && t <= now {
            match what {
                Some(reason) => {
                    self.end_flow(&timer.key, reason, t);
                    return;
                }
                None => {
                    let rec = f.snapshot(FlowRecordKind::Report, t);
                    f.reported_fwd = f.fwd.counters();
                    f.reported_rev = f.rev.counters();
                    f.next_report_ns = f.next_report_ns.saturating_add(interval);
                    self.outbox.push(rec);
                }
            }
        }
        let (next, _) = f.due(&self.cfg);
        self.next_token += 1;
        f.token = self.next_token;
        self.timers.push(Timer {
            deadline: next,
            token: f.token,
            key: timer.key,
        });
    }

    fn end_flow(&mut self, key: &FlowKey, reason: EndReason, at_ns: i64) {
        if let Some(rec) = self.take_flow(key, reason, at_ns) {
            self.outbox.push(rec);
        }
    }

    /// Removes a flow and returns its end record.
    fn take_flow(&mut self, key: &FlowKey, reason: EndReason, at_ns: i64) -> Option<FlowRecord<T>> {
        self.flows.remove(key).map(|f| f.end_record(reason, at_ns))
    }

    /// Ends the live flow with the earliest timer. False when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some(t) = self.timers.pop() {
            if matches!(self.flows.get(&t.key), Some(f) if f.token == t.token) {
                let now = self.clock;
                self.end_flow(&t.key, EndReason::Evicted, now);
                return true;
            }
        }
        false
    }
}

fn new_flow<T, F>(cfg: &FlowTableConfig, pkt: &PacketInfo, role: IcmpRole, init: F) -> Flow<T>
where
    F: FnOnce(&FlowTuple, &PacketInfo) -> T,
{
    let has_ports = matches!(pkt.protocol, ip_protocol::TCP | ip_protocol::UDP);
    let (sp, dp) = if has_ports { (pkt.src_port, pkt.dst_port) } else { (0, 0) };
    // The receiver of a first-seen SYN-ACK (or ICMP query reply) initiated the flow.
    let reversed = match pkt.protocol {
        ip_protocol::TCP => pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == (tcp_flags::SYN | tcp_flags::ACK),
        ip_protocol::ICMP | ip_protocol::ICMPV6 => role == IcmpRole::Reply,
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
    Flow {
        tuple,
        icmp: pkt.icmp,
        first_ns: pkt.ts_ns,
        last_ns: pkt.ts_ns,
        fwd: DirectionStats::default(),
        rev: DirectionStats::default(),
        reported_fwd: Counters::default(),
        reported_rev: Counters::default(),
        state: FlowState::Begin,
        end_reason: EndReason::IdleTimeout,
        closed_ns: 0,
        next_report_ns: cfg.report_interval_ns.map_or(i64::MAX, |iv| pkt.ts_ns.saturating_add(iv)),
        token: 0,
        user,
    }
}

fn key_of(pkt: &PacketInfo) -> (FlowKey, IcmpRole) {
    let (src, dst) = (addr_bits(pkt.src), addr_bits(pkt.dst));
    let v6 = pkt.src.is_ipv6();
    let (lo, hi) = if src <= dst { (src, dst) } else { (dst, src) };
    match pkt.protocol {
        ip_protocol::TCP | ip_protocol::UDP => {
            let a = (src, pkt.src_port);
            let b = (dst, pkt.dst_port);
            let (l, h) = if a <= b { (a, b) } else { (b, a) };
            (
                FlowKey {
                    lo: l.0,
                    hi: h.0,
                    lo_port: l.1,
                    hi_port: h.1,
                    protocol: pkt.protocol,
                    v6,
                },
                IcmpRole::Other,
            )
        }
        ip_protocol::ICMP | ip_protocol::ICMPV6 => {
            let (p, q, role) = icmp_class(pkt.protocol, pkt.icmp);
            (
                FlowKey {
                    lo,
                    hi,
                    lo_port: p,
                    hi_port: q,
                    protocol: pkt.protocol,
                    v6,
                },
                role,
            )
        }
        _ => (
            FlowKey {
                lo,
                hi,
                lo_port: 0,
                hi_port: 0,
                protocol: pkt.protocol,
                v6,
            },
            IcmpRole::Other,
        ),
    }
}
