//! Standard flow export: IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) over UDP.
//!
//! Exporter side only. The flow table's records become data records:
//!
//! - `Begin` exports nothing;
//! - `Report` exports the counters since the flow's previous record
//!   (`interval_forward` / `interval_reverse`, delta counters), flow end
//!   reason 0x02 "active timeout" (the flow continues);
//! - `End` exports the remaining deltas with the end reason of the table
//!   ([`end_reason_code`]).
//!
//! so the counters of all records exported for a flow sum to its totals.
//! Time stamps are the flow's first packet (`flowStartMilliseconds`) and
//! its last packet so far (`flowEndMilliseconds`), as RFC 5102 defines
//! them: the records of one long flow overlap in time, their counters
//! do not.
//!
//! # IPFIX
//!
//! One message = 16-byte header (version 10, length, export time, sequence
//! number = data records sent before this message, observation domain id),
//! an optional template set (set id 2) and data sets. Biflows per RFC 5103:
//! one record per flow, oriented initiator → responder; the forward
//! counters are `octetDeltaCount` (1) / `packetDeltaCount` (2), the
//! reverse counters the same element ids under the reverse PEN 29305.
//! Four templates:
//!
//! | id  | flows                         | elements |
//! |-----|-------------------------------|----------|
//! | 256 | IPv4, not ICMP                | 8, 12, 7, 11, 4, 6, counters, 152, 153, 136, NSG |
//! | 257 | IPv6, not ICMPv6              | 27, 28, 7, 11, 4, 6, counters, 152, 153, 136, NSG |
//! | 258 | ICMP                          | 8, 12, 4, 32, counters, 152, 153, 136, NSG |
//! | 259 | ICMPv6                        | 27, 28, 4, 139, counters, 152, 153, 136, NSG |
//!
//! where counters = 1, 2, 29305/1, 29305/2 (8 octets each). Protocols other
//! than TCP/UDP/ICMP use 256/257 with ports 0. `tcpControlBits` (6) is the
//! initiator's flags, sent with reduced-size encoding (1 octet, RFC 7011
//! §6.2: every flag the table tracks fits). ICMP flows carry no port
//! elements: collectors (nfdump) store `icmpTypeCode*` in the destination
//! port, a zero port element would clobber it. The type/code is the
//! initiator's (for query pairs: the request's).
//!
//! NSG decision, enterprise-specific elements under PEN 32473 (the
//! documentation PEN, RFC 5612), see [`nsg_ie`]:
//!
//! | id | name           | type / length |
//! |----|----------------|---------------|
//! | 1  | `nsgAccess`    | unsigned8: 1 Allow, 2 Deny, 0 none/transit |
//! | 2  | `nsgDirection` | unsigned8: 1 Inbound, 2 Outbound, 0 none/transit |
//! | 3  | `nsgRuleName`  | string, variable length (RFC 7011 §7) |
//! | 4  | `nsgName`      | string, variable length |
//!
//! Strings are UTF-8, cut to at most [`MAX_STRING_OCTETS`] octets (on a
//! character boundary) so that every record fits a message.
//!
//! # NetFlow v9
//!
//! Same information in v9 framing (20-byte header: version 9, record count,
//! sysUptime, unix secs, sequence = packets sent before, source id; template
//! flowset id 0; data flowsets padded to 4 octets), but unidirectional:
//! every biflow record becomes a forward record (initiator → responder) and
//! a reverse record (responder → initiator, addresses and ports swapped),
//! a direction with 0 packets in the interval is skipped. Fields:
//! `IN_BYTES`(1), `IN_PKTS`(2), `PROTOCOL`(4), `TCP_FLAGS`(6) (of that
//! direction), `L4_SRC_PORT`(7), `L4_DST_PORT`(11), `IPV4_SRC_ADDR`(8),
//! `IPV4_DST_ADDR`(12) / `IPV6_SRC_ADDR`(27), `IPV6_DST_ADDR`(28),
//! `FIRST_SWITCHED`(22), `LAST_SWITCHED`(21) and for ICMP `ICMP_TYPE`(32)
//! (type × 256 + code; RFC 3954 has no separate ICMPv6 field, 32 is used
//! for both). The NSG decision and the end reason are **not** exported in
//! v9: v9 has no enterprise-specific field types (RFC 3954 §8 leaves the
//! space to vendors without a numbering authority) and RFC 3954 defines no
//! end-reason field. Use IPFIX for them.
//!
//! v9 times are milliseconds of "system uptime". The exporter keeps a
//! virtual boot time at or before every flow start it exported, so
//! collectors compute `unix_secs × 1000 − sysUptime + FIRST_SWITCHED` = the
//! flow's first packet. sysUptime is 32 bits (49.7 days): when the header
//! time and a flow start are farther apart (an old capture replayed with
//! [`ExportClock::Wall`]), that message's header time is the latest flow
//! time in it instead of the wall clock.
//!
//! # Messages
//!
//! Records are batched into messages of at most [`ExportOptions::mtu`]
//! octets (the UDP payload). Templates go in the first message and again
//! every [`ExportOptions::template_refresh_messages`] messages and/or
//! [`ExportOptions::template_refresh_interval`] of export time, since
//! a UDP collector may start (or restart) after the exporter.
//!
//! [`Encoder`] is the pure part (records in, message bytes out, the time
//! passed in); [`FlowExporter`] adds the UDP socket and the clock.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netwatch_rules::{Access, Direction};

use crate::table::{ip_protocol, EndReason, FlowRecord, FlowRecordKind};
use crate::time::NS_PER_MS;

/// IPFIX message version.
pub const IPFIX_VERSION: u16 = 10;
/// NetFlow v9 header version.
pub const NETFLOW_V9_VERSION: u16 = 9;
/// PEN of the reverse information elements (RFC 5103 §6.1).
pub const REVERSE_PEN: u32 = 29305;
/// PEN of the NSG elements: 32473, reserved for documentation (RFC 5612).
pub const NSG_PEN: u32 = 32473;
/// Length of a variable-length element in a template (RFC 7011 §7).
pub const VARIABLE_LENGTH: u16 = 65535;
/// Longest NSG name / rule name exported, in octets.
pub const MAX_STRING_OCTETS: usize = 254;
/// IPFIX message header length.
pub const IPFIX_HEADER_LEN: usize = 16;
/// NetFlow v9 packet header length.
pub const V9_HEADER_LEN: usize = 20;
/// IPFIX template set id.
pub const IPFIX_TEMPLATE_SET_ID: u16 = 2;
/// NetFlow v9 template flowset id.
pub const V9_TEMPLATE_FLOWSET_ID: u16 = 0;

/// Template ids (the same in IPFIX and v9).
pub mod template_id {
    /// IPv4 flows other than ICMP.
    pub const IPV4: u16 = 256;
    /// IPv6 flows other than ICMPv6.
    pub const IPV6: u16 = 257;
    /// ICMP (IPv4).
    pub const ICMPV4: u16 = 258;
    /// ICMPv6.
    pub const ICMPV6: u16 = 259;
    /// All of them, in the order templates are sent.
    pub const ALL: [u16; 4] = [IPV4, IPV6, ICMPV4, ICMPV6];
}

/// IANA IPFIX information element ids used (RFC 5102 / IANA registry).
/// NetFlow v9 field types 1–32 have the same numbers.
pub mod ie {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    /// v9 `LAST_SWITCHED` (sysUptime ms of the last packet).
    pub const V9_LAST_SWITCHED: u16 = 21;
    /// v9 `FIRST_SWITCHED` (sysUptime ms of the first packet).
    pub const V9_FIRST_SWITCHED: u16 = 22;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const ICMP_TYPE_CODE_IPV4: u16 = 32;
    pub const FLOW_END_REASON: u16 = 136;
    pub const ICMP_TYPE_CODE_IPV6: u16 = 139;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
}

/// Enterprise-specific NSG elements under [`NSG_PEN`].
pub mod nsg_ie {
    /// unsigned8: 1 Allow, 2 Deny, 0 none (transit traffic, no NSG).
    pub const NSG_ACCESS: u16 = 1;
    /// unsigned8: 1 Inbound, 2 Outbound, 0 none (transit).
    pub const NSG_DIRECTION: u16 = 2;
    /// string (variable length): the rule that decided, as flow logs name it.
    pub const NSG_RULE_NAME: u16 = 3;
    /// string (variable length): the NSG's name.
    pub const NSG_NAME: u16 = 4;
}

/// `flowEndReason` values (RFC 5102 §5.11.3).
pub mod end_reason {
    pub const IDLE_TIMEOUT: u8 = 0x01;
    pub const ACTIVE_TIMEOUT: u8 = 0x02;
    pub const END_OF_FLOW_DETECTED: u8 = 0x03;
    pub const FORCED_END: u8 = 0x04;
    pub const LACK_OF_RESOURCES: u8 = 0x05;
}

/// `flowEndReason` of a flow-table record; `None` for `Begin` (not exported).
///
/// `Report` → active timeout (a long-lasting flow's periodic export);
/// idle → idle timeout; active → active timeout; FIN, RST, a reused
/// 5-tuple → end of flow detected; the end of the capture
/// ([`EndReason::Flushed`]) → forced end; eviction from a full table →
/// lack of resources.
pub fn end_reason_code(kind: FlowRecordKind) -> Option<u8> {
    Some(match kind {
        FlowRecordKind::Begin => return None,
        FlowRecordKind::Report => end_reason::ACTIVE_TIMEOUT,
        FlowRecordKind::End(r) => match r {
            EndReason::IdleTimeout => end_reason::IDLE_TIMEOUT,
            EndReason::ActiveTimeout => end_reason::ACTIVE_TIMEOUT,
            EndReason::TcpFin | EndReason::TcpRst | EndReason::Reused => end_reason::END_OF_FLOW_DETECTED,
            EndReason::Flushed => end_reason::FORCED_END,
            EndReason::Evicted => end_reason::LACK_OF_RESOURCES,
        },
    })
}

/// Wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportProtocol {
    /// IPFIX (RFC 7011), biflows (RFC 5103), NSG elements.
    Ipfix,
    /// NetFlow v9 (RFC 3954), unidirectional, no NSG elements.
    NetflowV9,
}

impl fmt::Display for ExportProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExportProtocol::Ipfix => "IPFIX",
            ExportProtocol::NetflowV9 => "NetFlow v9",
        })
    }
}

/// Where message header times come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ExportClock {
    /// The system clock (live export; what collectors expect).
    #[default]
    Wall,
    /// Flow time: the latest `at_ns` of the records exported so far
    /// (deterministic output for an offline replay).
    FlowTime,
}

/// Exporter settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// Largest message (UDP payload), octets. Default 1400.
    pub mtu: usize,
    /// IPFIX observation domain id / NetFlow v9 source id. Default 0.
    pub observation_domain_id: u32,
    /// Templates are resent in every `n`-th message (the first message
    /// always has them). Default 20; 0 = not by count.
    pub template_refresh_messages: u32,
    /// Templates are also resent when this much export time passed since
    /// they were last sent. Default 10 minutes: over UDP a collector keeps
    /// a template only for a while after it last saw it (RFC 7011 §8.4), so
    /// a quiet exporter must refresh by time, not only by message count.
    pub template_refresh_interval: Option<Duration>,
    /// Header times. Default [`ExportClock::Wall`].
    pub clock: ExportClock,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            mtu: 1400,
            observation_domain_id: 0,
            template_refresh_messages: 20,
            template_refresh_interval: Some(Duration::from_secs(600)),
            clock: ExportClock::Wall,
        }
    }
}

/// The NSG decision of a flow, as the caller evaluated it on the flow's
/// first packet. `None` fields export as 0 (transit traffic / no NSG).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NsgDecision<'a> {
    pub direction: Option<Direction>,
    pub access: Option<Access>,
    pub nsg_name: &'a str,
    /// As flow logs write it (e.g. `UserRule_AllowWeb`).
    pub rule_name: &'a str,
}

/// `nsgAccess` value.
pub fn nsg_access_code(a: Option<Access>) -> u8 {
    match a {
        None => 0,
        Some(Access::Allow) => 1,
        Some(Access::Deny) => 2,
    }
}

/// `nsgDirection` value.
pub fn nsg_direction_code(d: Option<Direction>) -> u8 {
    match d {
        None => 0,
        Some(Direction::Inbound) => 1,
        Some(Direction::Outbound) => 2,
    }
}

/// One element of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    pub id: u16,
    /// Octets; [`VARIABLE_LENGTH`] for strings.
    pub length: u16,
    /// Private enterprise number (IPFIX only).
    pub enterprise: Option<u32>,
    pub name: &'static str,
}

/// What a template field carries (internal; one list drives both the
/// template records and the data records, so they cannot disagree).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Src,
    Dst,
    SrcPort,
    DstPort,
    Proto,
    TcpFlags,
    IcmpTypeCode,
    /// v9 `ICMP_TYPE` (32) for ICMP and ICMPv6 alike.
    V9IcmpType,
    Octets,
    Packets,
    RevOctets,
    RevPackets,
    StartMs,
    EndMs,
    FirstSwitched,
    LastSwitched,
    EndReason,
    NsgAccess,
    NsgDirection,
    NsgRuleName,
    NsgName,
}

fn fields(protocol: ExportProtocol, template: u16) -> &'static [Field] {
    use Field::*;
    match (protocol, template) {
        (ExportProtocol::Ipfix, template_id::IPV4 | template_id::IPV6) => &[
            Src,
            Dst,
            SrcPort,
            DstPort,
            Proto,
            TcpFlags,
            Octets,
            Packets,
            RevOctets,
            RevPackets,
            StartMs,
            EndMs,
            EndReason,
            NsgAccess,
            NsgDirection,
            NsgRuleName,
            NsgName,
        ],
        (ExportProtocol::Ipfix, _) => &[
            Src,
            Dst,
            Proto,
            IcmpTypeCode,
            Octets,
            Packets,
            RevOctets,
            RevPackets,
            StartMs,
            EndMs,
            EndReason,
            NsgAccess,
            NsgDirection,
            NsgRuleName,
            NsgName,
        ],
        (ExportProtocol::NetflowV9, template_id::IPV4 | template_id::IPV6) => &[
            Src,
            Dst,
            SrcPort,
            DstPort,
            Proto,
            TcpFlags,
            Octets,
            Packets,
            FirstSwitched,
            LastSwitched,
        ],
        (ExportProtocol::NetflowV9, _) => &[Src, Dst, Proto, V9IcmpType, Octets, Packets, FirstSwitched, LastSwitched],
    }
}

fn is_v6_template(template: u16) -> bool {
    matches!(template, template_id::IPV6 | template_id::ICMPV6)
}

fn spec(field: Field, template: u16) -> FieldSpec {
    let v6 = is_v6_template(template);
    let (id, length, enterprise, name) = match field {
        Field::Src if v6 => (ie::SOURCE_IPV6_ADDRESS, 16, None, "sourceIPv6Address"),
        Field::Src => (ie::SOURCE_IPV4_ADDRESS, 4, None, "sourceIPv4Address"),
        Field::Dst if v6 => (ie::DESTINATION_IPV6_ADDRESS, 16, None, "destinationIPv6Address"),
        Field::Dst => (ie::DESTINATION_IPV4_ADDRESS, 4, None, "destinationIPv4Address"),
        Field::SrcPort => (ie::SOURCE_TRANSPORT_PORT, 2, None, "sourceTransportPort"),
        Field::DstPort => (ie::DESTINATION_TRANSPORT_PORT, 2, None, "destinationTransportPort"),
        Field::Proto => (ie::PROTOCOL_IDENTIFIER, 1, None, "protocolIdentifier"),
        Field::TcpFlags => (ie::TCP_CONTROL_BITS, 1, None, "tcpControlBits"),
        Field::IcmpTypeCode if v6 => (ie::ICMP_TYPE_CODE_IPV6, 2, None, "icmpTypeCodeIPv6"),
        Field::IcmpTypeCode => (ie::ICMP_TYPE_CODE_IPV4, 2, None, "icmpTypeCodeIPv4"),
        Field::V9IcmpType => (ie::ICMP_TYPE_CODE_IPV4, 2, None, "ICMP_TYPE"),
        Field::Octets => (ie::OCTET_DELTA_COUNT, 8, None, "octetDeltaCount"),
        Field::Packets => (ie::PACKET_DELTA_COUNT, 8, None, "packetDeltaCount"),
        Field::RevOctets => (ie::OCTET_DELTA_COUNT, 8, Some(REVERSE_PEN), "reverseOctetDeltaCount"),
        Field::RevPackets => (ie::PACKET_DELTA_COUNT, 8, Some(REVERSE_PEN), "reversePacketDeltaCount"),
        Field::StartMs => (ie::FLOW_START_MILLISECONDS, 8, None, "flowStartMilliseconds"),
        Field::EndMs => (ie::FLOW_END_MILLISECONDS, 8, None, "flowEndMilliseconds"),
        Field::FirstSwitched => (ie::V9_FIRST_SWITCHED, 4, None, "FIRST_SWITCHED"),
        Field::LastSwitched => (ie::V9_LAST_SWITCHED, 4, None, "LAST_SWITCHED"),
        Field::EndReason => (ie::FLOW_END_REASON, 1, None, "flowEndReason"),
        Field::NsgAccess => (nsg_ie::NSG_ACCESS, 1, Some(NSG_PEN), "nsgAccess"),
        Field::NsgDirection => (nsg_ie::NSG_DIRECTION, 1, Some(NSG_PEN), "nsgDirection"),
        Field::NsgRuleName => (nsg_ie::NSG_RULE_NAME, VARIABLE_LENGTH, Some(NSG_PEN), "nsgRuleName"),
        Field::NsgName => (nsg_ie::NSG_NAME, VARIABLE_LENGTH, Some(NSG_PEN), "nsgName"),
    };
    FieldSpec {
        id,
        length,
        enterprise,
        name,
    }
}

/// The elements of template `template` ([`template_id`]) for `protocol`, in
/// record order. Empty for an unknown id.
pub fn template_fields(protocol: ExportProtocol, template: u16) -> Vec<FieldSpec> {
    if !template_id::ALL.contains(&template) {
        return Vec::new();
    }
    fields(protocol, template).iter().map(|&f| spec(f, template)).collect()
}

/// One data record to be encoded (one direction in v9, a biflow in IPFIX).
#[derive(Clone, Debug, PartialEq, Eq)]
struct DataRecord {
    template: u16,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    tcp_flags: u8,
    icmp_type_code: u16,
    octets: u64,
    packets: u64,
    rev_octets: u64,
    rev_packets: u64,
    start_ms: i64,
    end_ms: i64,
    end_reason: u8,
    nsg_access: u8,
    nsg_direction: u8,
    rule_name: String,
    nsg_name: String,
}

/// `s` cut to at most `max` octets on a character boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Octets of a variable-length string element (RFC 7011 §7: one length
/// octet below 255, else 255 and a 2-octet length).
fn varlen_size(len: usize) -> usize {
    if len < 255 {
        1 + len
    } else {
        3 + len
    }
}

/// Appends a variable-length element (RFC 7011 §7). `value` must be
/// shorter than 65536 octets.
pub fn put_varlen(buf: &mut Vec<u8>, value: &[u8]) {
    debug_assert!(value.len() <= usize::from(u16::MAX));
    if value.len() < 255 {
        buf.push(value.len() as u8);
    } else {
        buf.push(255);
        buf.extend_from_slice(&(value.len() as u16).to_be_bytes());
    }
    buf.extend_from_slice(value);
}

fn field_size(f: Field, rec: &DataRecord) -> usize {
    match f {
        Field::NsgRuleName => varlen_size(rec.rule_name.len()),
        Field::NsgName => varlen_size(rec.nsg_name.len()),
        _ => usize::from(spec(f, rec.template).length),
    }
}

fn ip_bytes(buf: &mut Vec<u8>, ip: IpAddr, v6: bool) {
    match (ip, v6) {
        (IpAddr::V4(a), false) => buf.extend_from_slice(&a.octets()),
        (IpAddr::V6(a), true) => buf.extend_from_slice(&a.octets()),
        // A flow's addresses are one family; map defensively.
        (IpAddr::V4(a), true) => buf.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), false) => buf.extend_from_slice(&a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED).octets()),
    }
}

/// Milliseconds `t_ms` after `boot_ms`, clamped to `u32`.
fn uptime_offset(t_ms: i64, boot_ms: i64) -> u32 {
    t_ms.saturating_sub(boot_ms).clamp(0, i64::from(u32::MAX)) as u32
}

fn put_field(buf: &mut Vec<u8>, f: Field, rec: &DataRecord, v9_boot_ms: i64) {
    let v6 = is_v6_template(rec.template);
    match f {
        Field::Src => ip_bytes(buf, rec.src, v6),
        Field::Dst => ip_bytes(buf, rec.dst, v6),
        Field::SrcPort => buf.extend_from_slice(&rec.src_port.to_be_bytes()),
        Field::DstPort => buf.extend_from_slice(&rec.dst_port.to_be_bytes()),
        Field::Proto => buf.push(rec.protocol),
        Field::TcpFlags => buf.push(rec.tcp_flags),
        Field::IcmpTypeCode | Field::V9IcmpType => buf.extend_from_slice(&rec.icmp_type_code.to_be_bytes()),
        Field::Octets => buf.extend_from_slice(&rec.octets.to_be_bytes()),
        Field::Packets => buf.extend_from_slice(&rec.packets.to_be_bytes()),
        Field::RevOctets => buf.extend_from_slice(&rec.rev_octets.to_be_bytes()),
        Field::RevPackets => buf.extend_from_slice(&rec.rev_packets.to_be_bytes()),
        Field::StartMs => buf.extend_from_slice(&(rec.start_ms.max(0) as u64).to_be_bytes()),
        Field::EndMs => buf.extend_from_slice(&(rec.end_ms.max(0) as u64).to_be_bytes()),
        Field::FirstSwitched => buf.extend_from_slice(&uptime_offset(rec.start_ms, v9_boot_ms).to_be_bytes()),
        Field::LastSwitched => buf.extend_from_slice(&uptime_offset(rec.end_ms, v9_boot_ms).to_be_bytes()),
        Field::EndReason => buf.push(rec.end_reason),
        Field::NsgAccess => buf.push(rec.nsg_access),
        Field::NsgDirection => buf.push(rec.nsg_direction),
        Field::NsgRuleName => put_varlen(buf, rec.rule_name.as_bytes()),
        Field::NsgName => put_varlen(buf, rec.nsg_name.as_bytes()),
    }
}

/// The ICMP type/code of one direction of a flow whose first packet had
/// `icmp`: query pairs (echo, timestamp, information, address mask; ICMPv6
/// echo) show the request forward and the reply in reverse, other
/// messages their own type/code.
fn icmp_type_code(protocol: u8, icmp: Option<crate::table::IcmpInfo>, forward: bool) -> u16 {
    let Some(i) = icmp else { return 0 };
    // (request, reply)
    let pairs: &[(u8, u8)] = match protocol {
        ip_protocol::ICMP => &[(8, 0), (13, 14), (15, 16), (17, 18)],
        ip_protocol::ICMPV6 => &[(128, 129)],
        _ => &[],
    };
    let t = pairs
        .iter()
        .find(|&&(req, rep)| i.icmp_type == req || i.icmp_type == rep)
        .map_or(i.icmp_type, |&(req, rep)| if forward { req } else { rep });
    u16::from(t) << 8 | u16::from(i.code)
}

fn template_for(protocol: u8, v6: bool) -> u16 {
    match (protocol, v6) {
        (ip_protocol::ICMP, false) => template_id::ICMPV4,
        (ip_protocol::ICMPV6, true) => template_id::ICMPV6,
        (_, false) => template_id::IPV4,
        (_, true) => template_id::IPV6,
    }
}

/// The data records a flow-table record exports (none for `Begin`; in v9
/// none for a direction without packets).
fn data_records<T>(protocol: ExportProtocol, rec: &FlowRecord<T>, nsg: Option<&NsgDecision<'_>>) -> Vec<DataRecord> {
    let Some(end_reason) = end_reason_code(rec.kind) else {
        return Vec::new();
    };
    let t = &rec.tuple;
    let v6 = t.src.is_ipv6() || t.dst.is_ipv6();
    let template = template_for(t.protocol, v6);
    let is_tcp = t.protocol == ip_protocol::TCP;
    let base = DataRecord {
        template,
        src: t.src,
        dst: t.dst,
        src_port: t.src_port,
        dst_port: t.dst_port,
        protocol: t.protocol,
        tcp_flags: if is_tcp { rec.forward.tcp_flags } else { 0 },
        icmp_type_code: icmp_type_code(t.protocol, rec.icmp, true),
        octets: rec.interval_forward.bytes,
        packets: rec.interval_forward.packets,
        rev_octets: rec.interval_reverse.bytes,
        rev_packets: rec.interval_reverse.packets,
        start_ms: rec.first_ns.div_euclid(NS_PER_MS),
        end_ms: rec.last_ns.div_euclid(NS_PER_MS),
        end_reason,
        nsg_access: 0,
        nsg_direction: 0,
        rule_name: String::new(),
        nsg_name: String::new(),
    };
    match protocol {
        ExportProtocol::Ipfix => {
            let mut r = base;
            if let Some(n) = nsg {
                r.nsg_access = nsg_access_code(n.access);
                r.nsg_direction = nsg_direction_code(n.direction);
                r.rule_name = truncate_str(n.rule_name, MAX_STRING_OCTETS).to_string();
                r.nsg_name = truncate_str(n.nsg_name, MAX_STRING_OCTETS).to_string();
            }
            vec![r]
        }
        ExportProtocol::NetflowV9 => {
            let mut out = Vec::with_capacity(2);
            let reverse = DataRecord {
                src: t.dst,
                dst: t.src,
                src_port: t.dst_port,
                dst_port: t.src_port,
                tcp_flags: if is_tcp { rec.reverse.tcp_flags } else { 0 },
                icmp_type_code: icmp_type_code(t.protocol, rec.icmp, false),
                octets: rec.interval_reverse.bytes,
                packets: rec.interval_reverse.packets,
                rev_octets: 0,
                rev_packets: 0,
                ..base.clone()
            };
            if base.packets > 0 {
                out.push(DataRecord {
                    rev_octets: 0,
                    rev_packets: 0,
                    ..base
                });
            }
            if reverse.packets > 0 {
                out.push(reverse);
            }
            out
        }
    }
}

fn template_set_len(protocol: ExportProtocol) -> usize {
    let body: usize = template_id::ALL
        .iter()
        .map(|&id| {
            4 + fields(protocol, id)
                .iter()
                .map(|&f| if spec(f, id).enterprise.is_some() { 8 } else { 4 })
                .sum::<usize>()
        })
        .sum();
    4 + body
}

fn header_len(protocol: ExportProtocol) -> usize {
    match protocol {
        ExportProtocol::Ipfix => IPFIX_HEADER_LEN,
        ExportProtocol::NetflowV9 => V9_HEADER_LEN,
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Largest data record of any template.
fn max_record_len(protocol: ExportProtocol) -> usize {
    template_id::ALL
        .iter()
        .map(|&id| {
            fields(protocol, id)
                .iter()
                .map(|&f| match spec(f, id).length {
                    VARIABLE_LENGTH => varlen_size(MAX_STRING_OCTETS),
                    l => usize::from(l),
                })
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0)
}

/// Smallest MTU that holds a header, the templates and the largest record.
pub fn min_mtu(protocol: ExportProtocol) -> usize {
    header_len(protocol) + template_set_len(protocol) + 4 + max_record_len(protocol) + 3
}

/// Largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;

/// Counters of an encoder / exporter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Messages (IPFIX) / export packets (v9) produced.
    pub messages: u64,
    /// Data records produced (v9: unidirectional records).
    pub data_records: u64,
    /// Messages that carried the templates.
    pub template_messages: u64,
    /// Octets of all messages.
    pub octets: u64,
    /// Flow-table records accepted (`Begin` included).
    pub flow_records: u64,
}

/// The pure encoder: flow-table records in, complete messages out. Holds
/// the records of the message being filled, the sequence numbers and the
/// template schedule. Times (`now_ms`: milliseconds since the Unix epoch)
/// are passed in, so output is deterministic.
#[derive(Debug)]
pub struct Encoder {
    protocol: ExportProtocol,
    options: ExportOptions,
    pending: Vec<DataRecord>,
    /// Encoded size of the pending message (header, templates, sets).
    pending_len: usize,
    pending_templates: bool,
    /// IPFIX: data records sent; v9: packets sent.
    sequence: u32,
    /// Index of the next message.
    message_index: u64,
    last_template_message: Option<u64>,
    last_template_ms: i64,
    /// NetFlow v9 virtual boot time (ms since the epoch).
    v9_boot_ms: Option<i64>,
    stats: ExportStats,
}

impl Encoder {
    /// An encoder; fails (`InvalidInput`) when `options.mtu` cannot hold a
    /// header, the templates and the largest record ([`min_mtu`]) or is
    /// larger than a UDP datagram.
    pub fn new(protocol: ExportProtocol, options: ExportOptions) -> io::Result<Self> {
        let min = min_mtu(protocol);
        if options.mtu < min || options.mtu > MAX_UDP_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{protocol} export: mtu must be in {min}..={MAX_UDP_PAYLOAD}, got {}", options.mtu),
            ));
        }
        Ok(Encoder {
            protocol,
            options,
            pending: Vec::new(),
            pending_len: 0,
            pending_templates: false,
            sequence: 0,
            message_index: 0,
            last_template_message: None,
            last_template_ms: 0,
            v9_boot_ms: None,
            stats: ExportStats::default(),
        })
    }

    pub fn protocol(&self) -> ExportProtocol {
        self.protocol
    }

    pub fn options(&self) -> &ExportOptions {
        &self.options
    }

    pub fn stats(&self) -> ExportStats {
        self.stats
    }

    /// Data records waiting for the next message.
    pub fn pending_records(&self) -> usize {
        self.pending.len()
    }

    /// Adds the data records of `rec` (none for `Begin`); every message
    /// that fills up is appended to `out`.
    pub fn push<T>(&mut self, rec: &FlowRecord<T>, nsg: Option<&NsgDecision<'_>>, now_ms: i64, out: &mut Vec<Vec<u8>>) {
        // The end of a flow whose last record the active timeout already
        // exported, with no packet since: nothing to export.
        if !rec.has_packets() {
            return;
        }
        self.stats.flow_records += 1;
        for d in data_records(self.protocol, rec, nsg) {
            self.push_data(d, now_ms, out);
        }
    }

    /// Ends the pending message, if any, and returns it.
    pub fn flush(&mut self, now_ms: i64) -> Option<Vec<u8>> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.finish_message(now_ms))
    }

    fn templates_due(&self, now_ms: i64) -> bool {
        let Some(last) = self.last_template_message else { return true };
        let n = u64::from(self.options.template_refresh_messages);
        if n > 0 && self.message_index - last >= n {
            return true;
        }
        match self.options.template_refresh_interval {
            Some(iv) => now_ms.saturating_sub(self.last_template_ms) >= i64::try_from(iv.as_millis()).unwrap_or(i64::MAX),
            None => false,
        }
    }

    /// Size the pending message grows by when `d` is appended.
    fn growth(&self, d: &DataRecord) -> usize {
        let rec_len: usize = fields(self.protocol, d.template).iter().map(|&f| field_size(f, d)).sum();
        let same_set = self.pending.last().is_some_and(|l| l.template == d.template);
        match self.protocol {
            ExportProtocol::Ipfix => rec_len + if same_set { 0 } else { 4 },
            ExportProtocol::NetflowV9 => {
                // Sets are padded to 4 octets: recompute the last set's padding.
                if same_set {
                    let set_body = self.last_set_body_len();
                    rec_len + pad4(set_body + rec_len) - pad4(set_body)
                } else {
                    4 + rec_len + pad4(rec_len)
                }
            }
        }
    }

    fn record_len(&self, d: &DataRecord) -> usize {
        fields(self.protocol, d.template).iter().map(|&f| field_size(f, d)).sum()
    }

    fn last_set_body_len(&self) -> usize {
        let Some(last) = self.pending.last() else { return 0 };
        self.pending
            .iter()
            .rev()
            .take_while(|r| r.template == last.template)
            .map(|r| self.record_len(r))
            .sum()
    }

    fn push_data(&mut self, d: DataRecord, now_ms: i64, out: &mut Vec<Vec<u8>>) {
        if !self.pending.is_empty() && self.pending_len + self.growth(&d) > self.options.mtu {
            out.push(self.finish_message(now_ms));
        }
        if self.pending.is_empty() {
            self.pending_templates = self.templates_due(now_ms);
            self.pending_len = header_len(self.protocol)
                + if self.pending_templates {
                    template_set_len(self.protocol)
                } else {
                    0
                };
        }
        self.pending_len += self.growth(&d);
        self.pending.push(d);
    }

    fn finish_message(&mut self, now_ms: i64) -> Vec<u8> {
        let records = std::mem::take(&mut self.pending);
        let with_templates = self.pending_templates;
        let mut buf = Vec::with_capacity(self.pending_len);
        match self.protocol {
            ExportProtocol::Ipfix => {
                let export_secs = now_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32;
                buf.extend_from_slice(&IPFIX_VERSION.to_be_bytes());
                buf.extend_from_slice(&[0, 0]); // length, below
                buf.extend_from_slice(&export_secs.to_be_bytes());
                buf.extend_from_slice(&self.sequence.to_be_bytes());
                buf.extend_from_slice(&self.options.observation_domain_id.to_be_bytes());
                if with_templates {
                    self.put_templates(&mut buf);
                }
                self.put_data_sets(&mut buf, &records, 0);
                let len = buf.len() as u16;
                buf[2..4].copy_from_slice(&len.to_be_bytes());
                self.sequence = self.sequence.wrapping_add(records.len() as u32);
            }
            ExportProtocol::NetflowV9 => {
                let (unix_secs, uptime, boot) = self.v9_clock(now_ms, &records);
                let count = records.len() + if with_templates { template_id::ALL.len() } else { 0 };
                buf.extend_from_slice(&NETFLOW_V9_VERSION.to_be_bytes());
                buf.extend_from_slice(&(count as u16).to_be_bytes());
                buf.extend_from_slice(&uptime.to_be_bytes());
                buf.extend_from_slice(&unix_secs.to_be_bytes());
                buf.extend_from_slice(&self.sequence.to_be_bytes());
                buf.extend_from_slice(&self.options.observation_domain_id.to_be_bytes());
                if with_templates {
                    self.put_templates(&mut buf);
                }
                self.put_data_sets(&mut buf, &records, boot);
                self.sequence = self.sequence.wrapping_add(1);
            }
        }
        debug_assert_eq!(buf.len(), self.pending_len);
        debug_assert!(buf.len() <= self.options.mtu);
        if with_templates {
            self.last_template_message = Some(self.message_index);
            self.last_template_ms = now_ms;
            self.stats.template_messages += 1;
        }
        self.message_index += 1;
        self.stats.messages += 1;
        self.stats.data_records += records.len() as u64;
        self.stats.octets += buf.len() as u64;
        self.pending_len = 0;
        self.pending_templates = false;
        buf
    }

    /// NetFlow v9 header time (unix secs), sysUptime and the boot time
    /// (ms since the epoch) the message's FIRST/LAST_SWITCHED are relative to.
    fn v9_clock(&mut self, now_ms: i64, records: &[DataRecord]) -> (u32, u32, i64) {
        const SPAN: i64 = u32::MAX as i64;
        let first = records.iter().map(|r| r.start_ms).min().unwrap_or(now_ms);
        let mut header_ms = now_ms.div_euclid(1000) * 1000;
        if header_ms - first.min(header_ms) > SPAN {
            // Too old for a 32-bit uptime (a replay with the wall clock): use
            // the message's latest flow time instead.
            let latest = records.iter().map(|r| r.end_ms).max().unwrap_or(now_ms);
            header_ms = (latest.div_euclid(1000) + 1) * 1000;
        }
        let lo = first.min(header_ms);
        let boot = match self.v9_boot_ms {
            Some(b) if b <= lo && header_ms - b <= SPAN => b,
            _ => lo,
        };
        self.v9_boot_ms = Some(boot);
        let secs = header_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32;
        (secs, uptime_offset(header_ms, boot), boot)
    }

    fn put_templates(&self, buf: &mut Vec<u8>) {
        let set_id = match self.protocol {
            ExportProtocol::Ipfix => IPFIX_TEMPLATE_SET_ID,
            ExportProtocol::NetflowV9 => V9_TEMPLATE_FLOWSET_ID,
        };
        let start = buf.len();
        buf.extend_from_slice(&set_id.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        for id in template_id::ALL {
            let fs = fields(self.protocol, id);
            buf.extend_from_slice(&id.to_be_bytes());
            buf.extend_from_slice(&(fs.len() as u16).to_be_bytes());
            for &f in fs {
                let s = spec(f, id);
                let eid = if s.enterprise.is_some() { s.id | 0x8000 } else { s.id };
                buf.extend_from_slice(&eid.to_be_bytes());
                buf.extend_from_slice(&s.length.to_be_bytes());
                if let Some(pen) = s.enterprise {
                    buf.extend_from_slice(&pen.to_be_bytes());
                }
            }
        }
        let len = (buf.len() - start) as u16;
        buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn put_data_sets(&self, buf: &mut Vec<u8>, records: &[DataRecord], v9_boot_ms: i64) {
        let mut i = 0;
        while i < records.len() {
            let template = records[i].template;
            let start = buf.len();
            buf.extend_from_slice(&template.to_be_bytes());
            buf.extend_from_slice(&[0, 0]);
            while i < records.len() && records[i].template == template {
                for &f in fields(self.protocol, template) {
                    put_field(buf, f, &records[i], v9_boot_ms);
                }
                i += 1;
            }
            if self.protocol == ExportProtocol::NetflowV9 {
                let pad = pad4(buf.len() - start);
                buf.resize(buf.len() + pad, 0);
            }
            let len = (buf.len() - start) as u16;
            buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// Sends flow-table records to a collector over UDP. Messages go out as
/// they fill up; call [`FlowExporter::flush`] at the end (also done,
/// errors ignored, on drop).
#[derive(Debug)]
pub struct FlowExporter {
    socket: UdpSocket,
    target: SocketAddr,
    encoder: Encoder,
    /// Latest `at_ns` seen (for [`ExportClock::FlowTime`]).
    flow_clock_ns: i64,
    out: Vec<Vec<u8>>,
}

impl FlowExporter {
    /// An exporter sending to `target` from an ephemeral port of the
    /// same address family.
    pub fn new(target: SocketAddr, protocol: ExportProtocol, options: ExportOptions) -> io::Result<Self> {
        let encoder = Encoder::new(protocol, options)?;
        let local: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        Ok(FlowExporter {
            socket,
            target,
            encoder,
            flow_clock_ns: i64::MIN,
            out: Vec::new(),
        })
    }

    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    pub fn stats(&self) -> ExportStats {
        self.encoder.stats()
    }

    fn now_ms(&self) -> i64 {
        match self.encoder.options.clock {
            ExportClock::Wall => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            ExportClock::FlowTime => self.flow_clock_ns.max(0).div_euclid(NS_PER_MS),
        }
    }

    /// Exports one flow-table record (`Begin` exports nothing) with the
    /// flow's NSG decision (`None`: no NSG / transit; ignored in v9).
    pub fn export<T>(&mut self, rec: &FlowRecord<T>, nsg: Option<&NsgDecision<'_>>) -> io::Result<()> {
        self.flow_clock_ns = self.flow_clock_ns.max(rec.at_ns);
        let now = self.now_ms();
        self.encoder.push(rec, nsg, now, &mut self.out);
        self.send_out()
    }

    /// Sends the pending message, if any.
    pub fn flush(&mut self) -> io::Result<()> {
        let now = self.now_ms();
        if let Some(m) = self.encoder.flush(now) {
            self.out.push(m);
        }
        self.send_out()
    }

    fn send_out(&mut self) -> io::Result<()> {
        for m in self.out.drain(..) {
            self.socket.send_to(&m, self.target)?;
        }
        Ok(())
    }
}

impl Drop for FlowExporter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Counters, DirectionStats, FlowState, FlowTuple, IcmpInfo};

    fn rec(kind: FlowRecordKind, tuple: FlowTuple) -> FlowRecord<()> {
        FlowRecord {
            kind,
            at_ns: 1_700_000_300_000_000_000,
            tuple,
            icmp: None,
            first_ns: 1_700_000_000_123_456_789,
            last_ns: 1_700_000_200_987_000_000,
            state: FlowState::Established,
            forward: DirectionStats {
                packets: 10,
                bytes: 1000,
                tcp_flags: 0x1b,
            },
            reverse: DirectionStats {
                packets: 8,
                bytes: 6000,
                tcp_flags: 0x12,
            },
            interval_forward: Counters { packets: 3, bytes: 300 },
            interval_reverse: Counters { packets: 2, bytes: 2900 },
            user: (),
        }
    }

    fn tcp4() -> FlowTuple {
        FlowTuple {
            protocol: 6,
            src: "10.0.0.4".parse().unwrap(),
            src_port: 50000,
            dst: "52.239.184.180".parse().unwrap(),
            dst_port: 443,
        }
    }

    fn no_templates() -> ExportOptions {
        ExportOptions {
            template_refresh_messages: 0,
            ..ExportOptions::default()
        }
    }

    /// Pushes `recs` then flushes; the messages.
    fn encode(
        protocol: ExportProtocol,
        opts: ExportOptions,
        recs: &[(FlowRecord<()>, Option<NsgDecision<'_>>)],
        now_ms: i64,
    ) -> Vec<Vec<u8>> {
        let mut e = Encoder::new(protocol, opts).unwrap();
        let mut out = Vec::new();
        for (r, n) in recs {
            e.push(r, n.as_ref(), now_ms, &mut out);
        }
        out.extend(e.flush(now_ms));
        out
    }

    const NOW_MS: i64 = 1_700_000_301_999;

    #[test]
    fn end_reasons_follow_rfc5102() {
        use FlowRecordKind::*;
        assert_eq!(end_reason_code(Begin), None);
        assert_eq!(end_reason_code(Report), Some(2));
        assert_eq!(end_reason_code(End(EndReason::IdleTimeout)), Some(1));
        assert_eq!(end_reason_code(End(EndReason::ActiveTimeout)), Some(2));
        assert_eq!(end_reason_code(End(EndReason::TcpFin)), Some(3));
        assert_eq!(end_reason_code(End(EndReason::TcpRst)), Some(3));
        assert_eq!(end_reason_code(End(EndReason::Reused)), Some(3));
        assert_eq!(end_reason_code(End(EndReason::Flushed)), Some(4));
        assert_eq!(end_reason_code(End(EndReason::Evicted)), Some(5));
    }

    #[test]
    fn begin_exports_nothing() {
        for p in [ExportProtocol::Ipfix, ExportProtocol::NetflowV9] {
            let msgs = encode(p, ExportOptions::default(), &[(rec(FlowRecordKind::Begin, tcp4()), None)], NOW_MS);
            assert!(msgs.is_empty());
        }
    }

    #[test]
    fn varlen_short_and_long_forms() {
        let mut b = Vec::new();
        put_varlen(&mut b, b"");
        put_varlen(&mut b, b"ab");
        assert_eq!(b, [0, 2, b'a', b'b']);
        let long = vec![b'x'; 300];
        let mut b = Vec::new();
        put_varlen(&mut b, &long);
        assert_eq!(&b[..3], &[255, 0x01, 0x2c]);
        assert_eq!(b.len(), 303);
        let mut b = Vec::new();
        put_varlen(&mut b, &long[..254]);
        assert_eq!(b[0], 254);
        let mut b = Vec::new();
        put_varlen(&mut b, &long[..255]);
        assert_eq!(&b[..3], &[255, 0, 255]);
    }

    #[test]
    fn strings_are_cut_on_char_boundaries() {
        let s = "é".repeat(200); // 400 octets
        let t = truncate_str(&s, MAX_STRING_OCTETS);
        assert_eq!(t.len(), 254);
        assert_eq!(truncate_str("abc", 2), "ab");
        assert_eq!(truncate_str("aé", 2), "a");
    }

    /// One IPFIX message with the IPv4 biflow record and no templates,
    /// byte by byte.
    #[test]
    fn ipfix_ipv4_data_message_bytes() {
        let nsg = NsgDecision {
            direction: Some(Direction::Outbound),
            access: Some(Access::Allow),
            nsg_name: "nsg1",
            rule_name: "UserRule_Web",
        };
        let mut opts = no_templates();
        opts.observation_domain_id = 7;
        let mut e = Encoder::new(ExportProtocol::Ipfix, opts).unwrap();
        // Pretend templates were sent already: message index 0 always has them,
        // so encode a first message and check the second.
        let mut out = Vec::new();
        e.push(&rec(FlowRecordKind::End(EndReason::TcpFin), tcp4()), Some(&nsg), NOW_MS, &mut out);
        out.extend(e.flush(NOW_MS));
        e.push(&rec(FlowRecordKind::Report, tcp4()), Some(&nsg), NOW_MS, &mut out);
        out.extend(e.flush(NOW_MS));
        assert_eq!(out.len(), 2);
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[0x00, 0x0a][..],                  // version 10
            &[0x00, 0x67],                      // length 103
            &1_700_000_301u32.to_be_bytes(),    // export time (s)
            &[0, 0, 0, 1],                      // sequence: 1 data record before
            &[0, 0, 0, 7],                      // observation domain
            &[0x01, 0x00, 0x00, 0x57],          // data set 256, length 87
            &[10, 0, 0, 4],                     // sourceIPv4Address
            &[52, 239, 184, 180],               // destinationIPv4Address
            &[0xc3, 0x50],                      // sourceTransportPort 50000
            &[0x01, 0xbb],                      // destinationTransportPort 443
            &[6],                               // protocolIdentifier
            &[0x1b],                            // tcpControlBits (initiator)
            &300u64.to_be_bytes(),              // octetDeltaCount
            &3u64.to_be_bytes(),                // packetDeltaCount
            &2900u64.to_be_bytes(),             // reverse octetDeltaCount
            &2u64.to_be_bytes(),                // reverse packetDeltaCount
            &1_700_000_000_123u64.to_be_bytes(), // flowStartMilliseconds
            &1_700_000_200_987u64.to_be_bytes(), // flowEndMilliseconds
            &[0x02],                            // flowEndReason: active timeout
            &[1],                               // nsgAccess Allow
            &[2],                               // nsgDirection Outbound
            &[12], b"UserRule_Web",             // nsgRuleName
            &[4], b"nsg1",                      // nsgName
        ]
        .concat();
        assert_eq!(out[1], want);
        // The first message: same record with end reason 3, after the templates.
        assert_eq!(out[0][..2], [0, 10]);
        assert_eq!(&out[0][8..12], &[0, 0, 0, 0]);
        let tlen = template_set_len(ExportProtocol::Ipfix);
        assert_eq!(out[0].len(), 16 + tlen + 87);
        assert_eq!(out[0][16 + tlen + 4 + 62], 3);
    }

    /// The IPFIX template set, byte by byte (IPv4 template shown in full).
    #[test]
    fn ipfix_template_set_bytes() {
        let msgs = encode(
            ExportProtocol::Ipfix,
            ExportOptions::default(),
            &[(rec(FlowRecordKind::Report, tcp4()), None)],
            NOW_MS,
        );
        let m = &msgs[0];
        let set = &m[16..16 + template_set_len(ExportProtocol::Ipfix)];
        #[rustfmt::skip]
        let v4: Vec<u8> = [
            &[0x01, 0x00, 0x00, 17][..],        // template 256, 17 fields
            &[0, 8, 0, 4], &[0, 12, 0, 4], &[0, 7, 0, 2], &[0, 11, 0, 2],
            &[0, 4, 0, 1], &[0, 6, 0, 1], &[0, 1, 0, 8], &[0, 2, 0, 8],
            &[0x80, 1, 0, 8], &29305u32.to_be_bytes(),
            &[0x80, 2, 0, 8], &29305u32.to_be_bytes(),
            &[0, 152, 0, 8], &[0, 153, 0, 8], &[0, 136, 0, 1],
            &[0x80, 1, 0, 1], &32473u32.to_be_bytes(),
            &[0x80, 2, 0, 1], &32473u32.to_be_bytes(),
            &[0x80, 3, 0xff, 0xff], &32473u32.to_be_bytes(),
            &[0x80, 4, 0xff, 0xff], &32473u32.to_be_bytes(),
        ]
        .concat();
        assert_eq!(&set[..2], &[0, 2]);
        assert_eq!(usize::from(u16::from_be_bytes([set[2], set[3]])), set.len());
        assert_eq!(&set[4..4 + v4.len()], &v4[..]);
        assert_eq!(v4.len(), 4 + 17 * 4 + 6 * 4);
        // No data record: `None` NSG fields are zeros and empty strings.
        let data = &m[16 + set.len()..];
        assert_eq!(&data[data.len() - 4..], &[0, 0, 0, 0]);
    }

    /// NetFlow v9: the biflow becomes two records, byte by byte.
    #[test]
    fn netflow_v9_message_bytes() {
        let mut opts = no_templates();
        opts.observation_domain_id = 0x0102_0304;
        let mut e = Encoder::new(ExportProtocol::NetflowV9, opts).unwrap();
        let mut out = Vec::new();
        let r = rec(FlowRecordKind::Report, tcp4());
        e.push(&r, None, NOW_MS, &mut out);
        out.extend(e.flush(NOW_MS));
        e.push(&r, None, NOW_MS, &mut out);
        out.extend(e.flush(NOW_MS));
        // boot = the flow start (ms), header time = NOW in whole seconds.
        let boot = 1_700_000_000_123i64;
        let uptime = (1_700_000_301_000 - boot) as u32;
        let last = (1_700_000_200_987 - boot) as u32;
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &[0x00, 0x09][..],                  // version 9
            &[0x00, 0x02],                      // 2 records
            &uptime.to_be_bytes(),              // sysUptime
            &1_700_000_301u32.to_be_bytes(),    // unix secs
            &[0, 0, 0, 1],                      // sequence: 1 packet before
            &[1, 2, 3, 4],                      // source id
            &[0x01, 0x00, 0x00, 0x50],          // flowset 256, length 80 (2 × 38 + 4, no pad)
            &[10, 0, 0, 4], &[52, 239, 184, 180], &[0xc3, 0x50], &[0x01, 0xbb], &[6], &[0x1b],
            &300u64.to_be_bytes(), &3u64.to_be_bytes(), &0u32.to_be_bytes(), &last.to_be_bytes(),
            &[52, 239, 184, 180], &[10, 0, 0, 4], &[0x01, 0xbb], &[0xc3, 0x50], &[6], &[0x12],
            &2900u64.to_be_bytes(), &2u64.to_be_bytes(), &0u32.to_be_bytes(), &last.to_be_bytes(),
        ]
        .concat();
        assert_eq!(out[1], want);
        assert_eq!(u16::from_be_bytes([out[0][2], out[0][3]]), 2 + 4, "4 templates + 2 records");
    }

    #[test]
    fn netflow_v9_skips_empty_direction_and_pads() {
        let mut r = rec(FlowRecordKind::End(EndReason::IdleTimeout), tcp4());
        r.interval_reverse = Counters::default();
        let msgs = encode(ExportProtocol::NetflowV9, ExportOptions::default(), &[(r, None)], NOW_MS);
        let m = &msgs[0];
        assert_eq!(u16::from_be_bytes([m[2], m[3]]), 5);
        let data = &m[20 + template_set_len(ExportProtocol::NetflowV9)..];
        assert_eq!(&data[..4], &[0x01, 0x00, 0, 44], "38 + 4 + 2 padding");
        assert_eq!(data.len(), 44);
        assert_eq!(&data[42..], &[0, 0]);
    }

    #[test]
    fn icmp_uses_icmp_templates_and_type_code() {
        let t = FlowTuple {
            protocol: 1,
            src: "10.0.0.4".parse().unwrap(),
            src_port: 0,
            dst: "10.0.0.5".parse().unwrap(),
            dst_port: 0,
        };
        let mut r = rec(FlowRecordKind::End(EndReason::IdleTimeout), t);
        r.icmp = Some(IcmpInfo {
            icmp_type: 0, // first packet seen was the reply
            code: 0,
            id: 9,
        });
        let d = data_records(ExportProtocol::NetflowV9, &r, None);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].template, template_id::ICMPV4);
        assert_eq!(d[0].icmp_type_code, 0x0800);
        assert_eq!(d[1].icmp_type_code, 0x0000);
        let d = data_records(ExportProtocol::Ipfix, &r, None);
        assert_eq!(d[0].icmp_type_code, 0x0800);
        r.tuple.protocol = 58;
        r.tuple.src = "fd00::1".parse().unwrap();
        r.tuple.dst = "fd00::2".parse().unwrap();
        r.icmp = Some(IcmpInfo {
            icmp_type: 1,
            code: 4,
            id: 0,
        });
        let d = data_records(ExportProtocol::Ipfix, &r, None);
        assert_eq!(d[0].template, template_id::ICMPV6);
        assert_eq!(d[0].icmp_type_code, 0x0104);
    }

    #[test]
    fn messages_respect_the_mtu_and_templates_are_refreshed() {
        for p in [ExportProtocol::Ipfix, ExportProtocol::NetflowV9] {
            let opts = ExportOptions {
                mtu: 1100,
                template_refresh_messages: 3,
                ..ExportOptions::default()
            };
            let mut e = Encoder::new(p, opts).unwrap();
            let mut out = Vec::new();
            let name = "n".repeat(100);
            let nsg = NsgDecision {
                nsg_name: &name,
                rule_name: &name,
                ..NsgDecision::default()
            };
            for i in 0..100u16 {
                let mut t = tcp4();
                t.src_port = i;
                if i % 3 == 0 {
                    t.src = "fd00::1".parse().unwrap();
                    t.dst = "fd00::2".parse().unwrap();
                }
                e.push(&rec(FlowRecordKind::Report, t), Some(&nsg), NOW_MS + i64::from(i), &mut out);
            }
            out.extend(e.flush(NOW_MS + 100));
            assert!(out.len() > 6, "{p}: {}", out.len());
            let tset = template_set_len(p);
            let mut seq = 0u32;
            for (i, m) in out.iter().enumerate() {
                assert!(m.len() <= 1100, "{p}: message {i} is {} octets", m.len());
                let has_templates = u16::from_be_bytes([m[header_len(p)], m[header_len(p) + 1]]) < 256;
                assert_eq!(has_templates, i % 3 == 0, "{p}: message {i}");
                let seq_at = if p == ExportProtocol::Ipfix { 8 } else { 12 };
                assert_eq!(u32::from_be_bytes(m[seq_at..seq_at + 4].try_into().unwrap()), seq);
                if p == ExportProtocol::Ipfix {
                    assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len());
                    // Count records: walk the data sets (record sizes are fixed here).
                    let mut off = 16 + if has_templates { tset } else { 0 };
                    let mut n = 0;
                    while off < m.len() {
                        let id = u16::from_be_bytes([m[off], m[off + 1]]);
                        let len = usize::from(u16::from_be_bytes([m[off + 2], m[off + 3]]));
                        let rl = if id == 256 { 65 + 202 } else { 89 + 202 };
                        assert_eq!((len - 4) % rl, 0);
                        n += (len - 4) / rl;
                        off += len;
                    }
                    seq += n as u32;
                } else {
                    seq += 1;
                }
            }
            assert_eq!(e.stats().messages as usize, out.len());
        }
    }

    #[test]
    fn template_refresh_by_time() {
        let opts = ExportOptions {
            template_refresh_messages: 0,
            template_refresh_interval: Some(Duration::from_secs(60)),
            ..ExportOptions::default()
        };
        let mut e = Encoder::new(ExportProtocol::Ipfix, opts).unwrap();
        let r = rec(FlowRecordKind::Report, tcp4());
        let mut with = Vec::new();
        for t in [0, 30_000, 59_999, 60_000, 61_000, 130_000] {
            let mut out = Vec::new();
            e.push(&r, None, NOW_MS + t, &mut out);
            let m = e.flush(NOW_MS + t).unwrap();
            with.push(m[17] == 2);
        }
        assert_eq!(with, [true, false, false, true, false, true]);
    }

    #[test]
    fn mtu_is_validated() {
        for p in [ExportProtocol::Ipfix, ExportProtocol::NetflowV9] {
            let min = min_mtu(p);
            assert!(min < 1400, "{p}: {min}");
            assert!(Encoder::new(
                p,
                ExportOptions {
                    mtu: min,
                    ..Default::default()
                }
            )
            .is_ok());
            let err = Encoder::new(
                p,
                ExportOptions {
                    mtu: min - 1,
                    ..Default::default()
                },
            )
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn v9_old_flows_with_wall_clock_use_flow_time_in_the_header() {
        let mut e = Encoder::new(ExportProtocol::NetflowV9, ExportOptions::default()).unwrap();
        let r = rec(FlowRecordKind::Report, tcp4());
        let mut out = Vec::new();
        let much_later = NOW_MS + 100 * 86_400_000;
        e.push(&r, None, much_later, &mut out);
        let m = e.flush(much_later).unwrap();
        let uptime = i64::from(u32::from_be_bytes(m[4..8].try_into().unwrap()));
        let secs = i64::from(u32::from_be_bytes(m[8..12].try_into().unwrap()));
        // unix_secs × 1000 − sysUptime = boot = the flow start.
        assert_eq!(secs * 1000 - uptime, 1_700_000_000_123);
        assert_eq!(secs, 1_700_000_201);
    }
}
