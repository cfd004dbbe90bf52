//! Decoding of captured frames to flow-level packet metadata.
//!
//! [`decode`] walks a frame from its link-layer header to the outermost (or,
//! with [`DecodeOptions::decap`], the innermost) IP header and its transport
//! header, and returns a [`PacketMeta`], or a [`NotIp`] reason when the frame
//! carries no IP packet (ARP, STP, ...). It never allocates and never panics:
//! every read is bounds-checked, and a frame cut short by the snaplen decodes
//! as far as its bytes go with [`PacketMeta::truncated`] set (an IPv4 header
//! without its ports, say).
//!
//! Covered (specifications in parentheses):
//! * link types: Ethernet (IEEE 802.3), Linux SLL / SLL2, raw IP (101, 12,
//!   14), LINKTYPE_IPV4 / LINKTYPE_IPV6, BSD NULL and OpenBSD LOOP loopback;
//! * 802.1Q / 802.1ad (QinQ) VLAN tags, MPLS label stacks (RFC 3032; payload
//!   guessed from the first nibble after the bottom label, 0 = pseudowire
//!   control word then Ethernet, RFC 4385), PPPoE session (RFC 2516);
//! * IPv4 (RFC 791) incl. fragments; IPv6 (RFC 8200) with hop-by-hop (incl.
//!   the jumbo payload option, RFC 2675), routing, fragment and destination
//!   options headers and AH (RFC 4302); ESP (RFC 4303) ends the walk;
//! * TCP, UDP, UDP-Lite, SCTP and DCCP ports, TCP flags, ICMP / ICMPv6 type,
//!   code and echo identifier;
//! * tunnels: GRE (RFC 2784 / 2890, and the enhanced GRE of PPTP, RFC 2637),
//!   ERSPAN type II / III over GRE, VXLAN (RFC 7348, UDP 4789), GENEVE
//!   (RFC 8926, UDP 6081) and IP-in-IP (protocols 4 and 41).
//!
//! The fixed-size headers are read through `etherparse`'s zero-copy header
//! slices where the whole header is present; truncated headers and the
//! encapsulations etherparse does not cover are read by hand.

mod fast;
mod fragments;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, TcpHeaderSlice, UdpHeaderSlice};
use thiserror::Error;

pub use fast::decode_fast;
pub use fragments::{Attribution, FragmentKey, FragmentTracker};

use crate::file::LinkType;

/// Options of [`decode`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Report the innermost IP packet of a tunnel (GRE, ERSPAN, VXLAN,
    /// GENEVE, IP-in-IP) instead of the outer one. When the tunnel payload
    /// is not IP (ARP over VXLAN, say) the outer packet is reported.
    pub decap: bool,
}

/// IP version of a decoded packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
}

/// Fragmentation state of an IP packet (RFC 791 §3.2, RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentInfo {
    /// The packet is a fragment (more-fragments set or offset non-zero).
    pub is_fragment: bool,
    /// Offset 0: the fragment that carries the transport header.
    pub first: bool,
    /// More-fragments flag.
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub offset: u16,
    /// Identification (16 bits for IPv4, 32 for IPv6).
    pub id: u32,
}

/// ICMP / ICMPv6 header fields used for flow keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpInfo {
    pub icmp_type: u8,
    pub code: u8,
    /// Identifier of echo (and other query / reply) messages.
    pub echo_id: Option<u16>,
}

/// A tunnel protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tunnel {
    Gre,
    Erspan,
    Vxlan,
    Geneve,
    IpInIp,
}

/// Flow-level metadata of one IP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMeta {
    pub ip_version: IpVersion,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number: IPv4 protocol field, or for IPv6 the next
    /// header after the extension headers (ESP = 50 ends the walk).
    pub protocol: u8,
    /// 0 when the protocol has no ports, for non-first fragments (see
    /// [`FragmentTracker`]) and when the header is truncated.
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp: Option<IcmpInfo>,
    /// TCP flags: FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20,
    /// ECE 0x40, CWR 0x80, NS/AE 0x100 (0 when not TCP).
    pub tcp_flags: u16,
    /// IP-layer length from the header: IPv4 total length; IPv6 40 + payload
    /// length (40 + jumbo payload length for jumbograms), as NetFlow / IPFIX
    /// and tshark's `ip.len` count.
    pub ip_total_len: u32,
    pub fragment: FragmentInfo,
    /// The captured bytes end before the headers / the IP length do.
    pub truncated: bool,
    /// A header field is inconsistent (IPv4 IHL < 5, TCP data offset < 5, ...).
    pub malformed: bool,
    /// Outermost VLAN id, if tagged.
    pub vlan: Option<u16>,
    /// Tunnel carried by this packet (when not decapsulated), or the
    /// innermost tunnel that was stripped (when decapsulated).
    pub tunnel: Option<Tunnel>,
    /// Number of tunnel layers stripped to reach this packet.
    pub encap_depth: u8,
    /// Offset of the reported IP header in the frame.
    pub ip_offset: usize,
    /// With `decap`: the outer datagram this inner packet came out of, when
    /// that datagram is fragmented (this is its first fragment), so that
    /// [`FragmentTracker`] can tell its later fragments, which carry no
    /// inner header, as the rest of this inner packet
    /// ([`Attribution::PartOfInner`]): its IP length counts them already.
    pub outer_fragment: Option<FragmentKey>,
}

/// Why a frame yields no [`PacketMeta`].
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotIp {
    #[error("ARP")]
    Arp,
    #[error("RARP")]
    Rarp,
    #[error("802.2 LLC frame (DSAP {dsap:#04x}{})", if *dsap == 0x42 { ", spanning tree" } else { "" })]
    Llc { dsap: u8 },
    #[error("non-IP ethertype {0:#06x}")]
    EtherType(u16),
    #[error("non-IP PPP protocol {0:#06x}")]
    Ppp(u16),
    #[error("MPLS payload with first nibble {0} is neither IPv4, IPv6 nor a pseudowire")]
    MplsPayload(u8),
    #[error("loopback address family {0} is not IP")]
    LoopbackFamily(u32),
    #[error("link type {} not supported", .0 .0)]
    UnsupportedLinkType(LinkType),
    #[error("IP version {found} where {} was expected", match expected { Some(v) => v.to_string(), None => "4 or 6".to_string() })]
    BadIpVersion { expected: Option<u8>, found: u8 },
    #[error("truncated {layer}: needs {needed} bytes, {available} captured")]
    Truncated {
        layer: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("too many nested headers")]
    TooDeep,
}

/// Maximum number of tunnel layers followed with `decap`.
const MAX_TUNNEL_DEPTH: u8 = 8;
/// Maximum number of link-layer steps (VLAN tags, MPLS labels, ...).
const MAX_L2_STEPS: usize = 64;
/// Maximum number of IPv6 extension headers walked.
const MAX_V6_EXTS: usize = 256;

/// Decodes one frame of link type `link`. See the [module docs](self).
///
/// The common frames (Ethernet / raw IP / SLL, IPv4 or IPv6 without
/// extension headers, TCP / UDP / ICMP, complete, no fragment, no tunnel)
/// take a fast path ([`decode_fast`]) that returns what the full walk
/// ([`decode_walk`]) would; everything else takes the full walk.
#[inline(always)]
pub fn decode(link: LinkType, data: &[u8], opts: DecodeOptions) -> Result<PacketMeta, NotIp> {
    match decode_fast(link, data) {
        Some(m) => Ok(m),
        None => decode_walk(link, data, opts),
    }
}

/// [`decode`] without its fast path: the full walk over every layer. The
/// same result as [`decode`] for every frame; for callers that tried
/// [`decode_fast`] already, and for tests and benchmarks comparing the two.
#[inline(never)]
pub fn decode_walk(link: LinkType, data: &[u8], opts: DecodeOptions) -> Result<PacketMeta, NotIp> {
    let (next, off) = link_layer(link, data)?;
    let mut ctx = Ctx {
        opts,
        vlan: None,
        depth: 0,
        in_first_fragment: false,
    };
    walk(next, data, off, &mut ctx)
}

struct Ctx {
    opts: DecodeOptions,
    vlan: Option<u16>,
    depth: u8,
    /// Decoding the inner packet of a tunnel datagram's first fragment,
    /// whose later fragments carry the rest: its IP length reaching past
    /// the fragment is no truncation (its transport header cut short is).
    in_first_fragment: bool,
}

#[derive(Clone, Copy)]
enum Next {
    Ethernet,
    EtherType(u16),
    PppFrame,
    Ip,
    Ipv4,
    Ipv6,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    match b.get(at..at.checked_add(2)?) {
        Some(&[x, y]) => Some(u16::from_be_bytes([x, y])),
        _ => None,
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    match b.get(at..at.checked_add(4)?) {
        Some(&[a, c, d, e]) => Some(u32::from_be_bytes([a, c, d, e])),
        _ => None,
    }
}

fn truncated(layer: &'static str, needed: usize, data: &[u8], off: usize) -> NotIp {
    NotIp::Truncated {
        layer,
        needed,
        available: data.len().saturating_sub(off),
    }
}

fn link_layer(link: LinkType, data: &[u8]) -> Result<(Next, usize), NotIp> {
    match link {
        LinkType::ETHERNET => Ok((Next::Ethernet, 0)),
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => Ok((Next::Ip, 0)),
        LinkType::IPV4 => Ok((Next::Ipv4, 0)),
        LinkType::IPV6 => Ok((Next::Ipv6, 0)),
        LinkType::NULL | LinkType::LOOP => {
            // 4-byte address family: host byte order of the writer for NULL,
            // network byte order for LOOP; families fit in 16 bits, so the
            // order is told by which half is zero.
            let le = data
                .get(..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| truncated("loopback header", 4, data, 0))?;
            let fam = if link == LinkType::NULL && le & 0xFFFF_0000 == 0 {
                le
            } else {
                le.swap_bytes()
            };
            match fam {
                2 => Ok((Next::Ipv4, 4)),
                // AF_INET6: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).
                10 | 24 | 28 | 30 => Ok((Next::Ipv6, 4)),
                // Like Wireshark: PPP in HDLC-like framing, or a Cisco-HDLC-like
                // header (address, control, ethertype) instead of a family.
                _ if data.starts_with(&[0xFF, 0x03]) => Ok((Next::PppFrame, 0)),
                f => match be16(data, 2) {
                    Some(et) if et > 1500 => Ok((Next::EtherType(et), 4)),
                    _ => Err(NotIp::LoopbackFamily(f)),
                },
            }
        }
        LinkType::LINUX_SLL => {
            // packet type, ARPHRD type, address length, 8-byte address, protocol.
            let proto = be16(data, 14).ok_or_else(|| truncated("Linux SLL header", 16, data, 0))?;
            sll_protocol(data, proto, 16)
        }
        LinkType::LINUX_SLL2 => {
            // protocol, reserved, ifindex, ARPHRD type, packet type, address length, address.
            if data.len() < 20 {
                return Err(truncated("Linux SLL2 header", 20, data, 0));
            }
            let proto = be16(data, 0).unwrap_or(0);
            sll_protocol(data, proto, 20)
        }
        other => Err(NotIp::UnsupportedLinkType(other)),
    }
}

/// SLL protocol field: an ethertype, or below 0x0600 a Linux pseudo
/// protocol (`ETH_P_*` of `linux/if_ether.h`, `LINUX_SLL_P_*` of
/// libpcap's `pcap/sll.h`). Of these, three may carry IP, as tshark decodes
/// them: 802.2 LLC (`ETH_P_802_2`, 4: the frame had an 802.3 length field)
/// in LLC/SNAP (RFC 1042), as the same frame on Ethernet (`sll:llc:ip`); a
/// whole Ethernet frame (`LINUX_SLL_P_ETHERNET`, 3: `sll:eth:ip`); and PPP
/// in HDLC-like framing (`LINUX_SLL_P_PPPHDLC`, 7, RFC 1662: `sll:ppp:ip`).
/// The others (Novell 802.3, CAN, ...) are not IP.
fn sll_protocol(data: &[u8], proto: u16, off: usize) -> Result<(Next, usize), NotIp> {
    match proto {
        0x0003 => Ok((Next::Ethernet, off)),
        0x0004 => llc_snap(data, off),
        0x0007 => Ok((Next::PppFrame, off)),
        p if p < 0x0600 => Err(NotIp::EtherType(p)),
        p => Ok((Next::EtherType(p), off)),
    }
}

fn llc(data: &[u8], off: usize) -> NotIp {
    NotIp::Llc {
        dsap: data.get(off).copied().unwrap_or(0),
    }
}

/// An IEEE 802.2 LLC header at `off` (after an 802.3 length field, or a
/// Linux SLL protocol of 802.2 LLC): SNAP with an ethertype (RFC 1042:
/// DSAP/SSAP 0xAA, UI control, OUI 00-00-00; 802.1H's 00-00-F8 the same)
/// continues with that ethertype, anything else is not IP.
fn llc_snap(data: &[u8], off: usize) -> Result<(Next, usize), NotIp> {
    match data.get(off..off + 8) {
        Some([0xAA, 0xAA, 0x03, 0x00, 0x00, 0x00 | 0xF8, t0, t1]) => Ok((Next::EtherType(u16::from_be_bytes([*t0, *t1])), off + 8)),
        _ => Err(llc(data, off)),
    }
}

/// Walks link-layer encapsulations to the IP header and decodes it.
fn walk(mut next: Next, data: &[u8], mut off: usize, ctx: &mut Ctx) -> Result<PacketMeta, NotIp> {
    for _ in 0..MAX_L2_STEPS {
        next = match next {
            Next::Ethernet => {
                let et = match data.get(off..).map(Ethernet2HeaderSlice::from_slice) {
                    Some(Ok(h)) => h.ether_type().0,
                    _ => return Err(truncated("Ethernet header", 14, data, off)),
                };
                off += 14;
                if et <= 1500 {
                    // IEEE 802.3 length field: an LLC frame follows.
                    let (n, o) = llc_snap(data, off)?;
                    off = o;
                    n
                } else {
                    Next::EtherType(et)
                }
            }
            Next::EtherType(et) => match et {
                0x0800 => Next::Ipv4,
                0x86DD => Next::Ipv6,
                0x8100 | 0x88A8 | 0x9100 | 0x9200 => {
                    // IEEE 802.1Q tag: TCI (PCP, DEI, VID) then the inner type.
                    let (Some(tci), Some(inner)) = (be16(data, off), be16(data, off + 2)) else {
                        return Err(truncated("VLAN tag", 4, data, off));
                    };
                    ctx.vlan.get_or_insert(tci & 0x0FFF);
                    off += 4;
                    if inner <= 1500 {
                        let (n, o) = llc_snap(data, off)?;
                        off = o;
                        n
                    } else {
                        Next::EtherType(inner)
                    }
                }
                0x8847 | 0x8848 => {
                    // MPLS label stack entries (RFC 3032 §2.1) until bottom of stack.
                    loop {
                        let Some(entry) = be32(data, off) else {
                            return Err(truncated("MPLS label", 4, data, off));
                        };
                        off += 4;
                        if entry & 0x100 != 0 {
                            break;
                        }
                    }
                    match data.get(off).map(|b| b >> 4) {
                        Some(4) => Next::Ipv4,
                        Some(6) => Next::Ipv6,
                        // Pseudowire control word (RFC 4385), then Ethernet.
                        Some(0) => {
                            off += 4;
                            Next::Ethernet
                        }
                        Some(n) => return Err(NotIp::MplsPayload(n)),
                        None => return Err(truncated("MPLS payload", 1, data, off)),
                    }
                }
                0x8864 => {
                    // PPPoE session header (RFC 2516 §4): ver/type, code,
                    // session id, length; then the PPP protocol field.
                    if data.len() < off + 6 {
                        return Err(truncated("PPPoE header", 6, data, off));
                    }
                    off += 6;
                    Next::PppFrame
                }
                0x880B => Next::PppFrame,
                // Cisco MetaData (seen inside GRE): version, length, option
                // type, SGT, then the next ethertype; 8 bytes.
                0x8909 => {
                    let et = be16(data, off + 6).ok_or_else(|| truncated("Cisco MetaData header", 8, data, off))?;
                    off += 8;
                    Next::EtherType(et)
                }
                0x6558 => Next::Ethernet,
                0x0806 => return Err(NotIp::Arp),
                0x8035 => return Err(NotIp::Rarp),
                other => return Err(NotIp::EtherType(other)),
            },
            Next::PppFrame => {
                // Optional address/control 0xff 0x03 (RFC 1662), then a 1- or
                // 2-byte protocol field (protocol field compression, RFC 1661 §6.5).
                if data.get(off..off + 2) == Some(&[0xFF, 0x03]) {
                    off += 2;
                }
                let proto = match data.get(off) {
                    Some(b) if b & 1 == 1 => {
                        off += 1;
                        u16::from(*b)
                    }
                    Some(_) => {
                        let p = be16(data, off).ok_or_else(|| truncated("PPP protocol", 2, data, off))?;
                        off += 2;
                        p
                    }
                    None => return Err(truncated("PPP protocol", 2, data, off)),
                };
                match proto {
                    0x0021 => Next::Ipv4,
                    0x0057 => Next::Ipv6,
                    p => return Err(NotIp::Ppp(p)),
                }
            }
            Next::Ip => match data.get(off).map(|b| b >> 4) {
                Some(4) => Next::Ipv4,
                Some(6) => Next::Ipv6,
                Some(v) => return Err(NotIp::BadIpVersion { expected: None, found: v }),
                None => return Err(truncated("IP header", 20, data, off)),
            },
            Next::Ipv4 => return ipv4(data, off, ctx),
            Next::Ipv6 => return ipv6(data, off, ctx),
        };
    }
    Err(NotIp::TooDeep)
}

fn new_meta(ip_version: IpVersion, src: IpAddr, dst: IpAddr, ctx: &Ctx, ip_offset: usize) -> PacketMeta {
    PacketMeta {
        ip_version,
        src,
        dst,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        icmp: None,
        tcp_flags: 0,
        ip_total_len: 0,
        fragment: FragmentInfo::default(),
        truncated: false,
        malformed: false,
        vlan: ctx.vlan,
        tunnel: None,
        encap_depth: ctx.depth,
        ip_offset,
        outer_fragment: None,
    }
}

/// IPv4 header (RFC 791 §3.1).
fn ipv4(data: &[u8], off: usize, ctx: &mut Ctx) -> Result<PacketMeta, NotIp> {
    let rest = data.get(off..).unwrap_or(&[]);
    let Some(&b0) = rest.first() else {
        return Err(truncated("IPv4 header", 20, data, off));
    };
    if b0 >> 4 != 4 {
        return Err(NotIp::BadIpVersion {
            expected: Some(4),
            found: b0 >> 4,
        });
    }
    let Some(addrs) = rest.get(12..20) else {
        return Err(truncated("IPv4 header", 20, data, off));
    };
    let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
    let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
    let mut m = new_meta(IpVersion::V4, src.into(), dst.into(), ctx, off);
    let (ihl, total, flags_frag, id) = match Ipv4HeaderSlice::from_slice(rest) {
        Ok(h) => {
            m.protocol = h.protocol().0;
            let ff = (u16::from(h.more_fragments()) << 13) | h.fragments_offset().value();
            (usize::from(h.ihl()) * 4, h.total_len(), ff, h.identification())
        }
        Err(_) => {
            // IHL < 5 or the options are cut off: keep what is readable.
            m.protocol = rest[9];
            let ihl = usize::from(b0 & 0x0F) * 4;
            if ihl < 20 {
                m.malformed = true;
            } else {
                m.truncated = true;
            }
            (0, 0, be16(rest, 6).unwrap_or(0), be16(rest, 4).unwrap_or(0))
        }
    };
    let frag_offset = flags_frag & 0x1FFF;
    let mf = flags_frag & 0x2000 != 0;
    m.fragment = FragmentInfo {
        is_fragment: mf || frag_offset != 0,
        first: frag_offset == 0,
        more_fragments: mf,
        offset: frag_offset,
        id: id.into(),
    };
    if ihl == 0 {
        m.ip_total_len = be16(rest, 2).unwrap_or(0).into();
        return Ok(m);
    }
    m.ip_total_len = total.into();
    let total = usize::from(total);
    let end = if total >= ihl {
        if rest.len() < total && !ctx.in_first_fragment {
            m.truncated = true;
        }
        total.min(rest.len())
    } else {
        // Total length below the header length: 0 is TCP segmentation
        // offload on the capturing host (the NIC fills it in later), and
        // the packet is what was captured from the IP header on, as tshark
        // presumes; anything else is bogus.
        if total != 0 {
            m.malformed = true;
        } else {
            m.ip_total_len = u32::try_from(rest.len()).unwrap_or(u32::MAX);
        }
        rest.len()
    };
    if frag_offset != 0 {
        return Ok(m);
    }
    let payload = rest.get(ihl..end).unwrap_or(&[]);
    transport(&mut m, payload);
    Ok(tunnel(m, data, off + ihl, off + end, ctx))
}

/// IPv6 header (RFC 8200 §3) and extension headers (§4).
fn ipv6(data: &[u8], off: usize, ctx: &mut Ctx) -> Result<PacketMeta, NotIp> {
    let rest = data.get(off..).unwrap_or(&[]);
    let Some(&b0) = rest.first() else {
        return Err(truncated("IPv6 header", 40, data, off));
    };
    if b0 >> 4 != 6 {
        return Err(NotIp::BadIpVersion {
            expected: Some(6),
            found: b0 >> 4,
        });
    }
    let h = Ipv6HeaderSlice::from_slice(rest).map_err(|_| truncated("IPv6 header", 40, data, off))?;
    let mut m = new_meta(
        IpVersion::V6,
        Ipv6Addr::from(h.source()).into(),
        Ipv6Addr::from(h.destination()).into(),
        ctx,
        off,
    );
    let plen = usize::from(h.payload_length());
    let mut next = h.next_header().0;
    // With a jumbo payload the length comes from the hop-by-hop option.
    // Without one, payload length 0 is segmentation offload on the
    // capturing host (as for IPv4's total length 0): the packet is what was
    // captured from the IPv6 header on, as tshark presumes ("maybe because
    // of TSO").
    let mut end = if plen == 0 && h.next_header().0 != 59 {
        rest.len()
    } else {
        40 + plen
    };
    // (Next header 59, "no next header", may have a payload of 0 for real.)
    m.ip_total_len = if plen == 0 && h.next_header().0 != 59 {
        u32::try_from(rest.len()).unwrap_or(u32::MAX)
    } else {
        (40 + plen) as u32
    };
    let mut pos = 40;
    let mut transport_ok = true;
    for _ in 0..MAX_V6_EXTS {
        let bounded = rest.get(..end.min(rest.len())).unwrap_or(&[]);
        let at = bounded.get(pos..).unwrap_or(&[]);
        match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => match Ipv6RawExtHeaderSlice::from_slice(at) {
                Ok(ext) => {
                    if next == 0 && plen == 0 {
                        if let Some(j) = jumbo_len(ext.slice()) {
                            m.ip_total_len = 40u32.saturating_add(j);
                            end = 40usize.saturating_add(j as usize);
                        }
                    }
                    next = ext.next_header().0;
                    pos += ext.slice().len();
                }
                Err(_) => {
                    m.truncated = true;
                    transport_ok = false;
                    break;
                }
            },
            // Fragment header (§4.5): 8 bytes.
            44 => {
                let (Some(&nh), Some(fo), Some(id)) = (at.first(), be16(at, 2), be32(at, 4)) else {
                    m.truncated = true;
                    transport_ok = false;
                    break;
                };
                let offset = fo >> 3;
                let mf = fo & 1 != 0;
                m.fragment = FragmentInfo {
                    is_fragment: true,
                    first: offset == 0,
                    more_fragments: mf,
                    offset,
                    id,
                };
                next = nh;
                pos += 8;
                if offset != 0 {
                    transport_ok = false;
                    break;
                }
            }
            // Authentication header (RFC 4302 §2.2): (len + 2) * 4 bytes.
            51 => {
                let (Some(&nh), Some(&l)) = (at.first(), at.get(1)) else {
                    m.truncated = true;
                    transport_ok = false;
                    break;
                };
                let len = (usize::from(l) + 2) * 4;
                if at.len() < len {
                    m.truncated = true;
                    transport_ok = false;
                    break;
                }
                next = nh;
                pos += len;
            }
            _ => break,
        }
    }
    m.protocol = next;
    if rest.len() < end && !ctx.in_first_fragment {
        m.truncated = true;
    }
    let end = end.min(rest.len());
    if !transport_ok || pos > end {
        return Ok(m);
    }
    let payload = rest.get(pos..end).unwrap_or(&[]);
    transport(&mut m, payload);
    Ok(tunnel(m, data, off + pos, off + end, ctx))
}

/// Jumbo Payload option (RFC 2675 §2, type 0xC2) in a hop-by-hop header.
fn jumbo_len(hbh: &[u8]) -> Option<u32> {
    let mut i = 2;
    while i < hbh.len() {
        let t = hbh[i];
        if t == 0 {
            i += 1; // Pad1
            continue;
        }
        let len = usize::from(*hbh.get(i + 1)?);
        if t == 0xC2 && len == 4 {
            return be32(hbh, i + 2);
        }
        i += 2 + len;
    }
    None
}

/// Ports, TCP flags and ICMP fields from the transport header in `p`.
fn transport(m: &mut PacketMeta, p: &[u8]) {
    match m.protocol {
        // TCP (RFC 9293 §3.1).
        6 => match TcpHeaderSlice::from_slice(p) {
            Ok(t) => {
                m.src_port = t.source_port();
                m.dst_port = t.destination_port();
                m.tcp_flags = tcp_flags(p);
            }
            Err(_) => {
                if let (Some(s), Some(d)) = (be16(p, 0), be16(p, 2)) {
                    m.src_port = s;
                    m.dst_port = d;
                }
                m.tcp_flags = tcp_flags(p);
                match p.get(12) {
                    Some(b) if b >> 4 < 5 => m.malformed = true,
                    _ => m.truncated = true,
                }
            }
        },
        // UDP (RFC 768), UDP-Lite (RFC 3828).
        17 | 136 => match UdpHeaderSlice::from_slice(p) {
            Ok(u) => {
                m.src_port = u.source_port();
                m.dst_port = u.destination_port();
            }
            Err(_) => {
                if let (Some(s), Some(d)) = (be16(p, 0), be16(p, 2)) {
                    m.src_port = s;
                    m.dst_port = d;
                }
                m.truncated = true;
            }
        },
        // DCCP (RFC 4340), SCTP (RFC 9260): ports first.
        33 | 132 => match (be16(p, 0), be16(p, 2)) {
            (Some(s), Some(d)) => {
                m.src_port = s;
                m.dst_port = d;
            }
            _ => m.truncated = true,
        },
        // ICMP (RFC 792): echo, timestamp, information, address mask and
        // extended echo (RFC 8335) messages carry an identifier.
        1 => icmp(m, p, &[0, 8, 13, 14, 15, 16, 17, 18, 42, 43]),
        // ICMPv6 (RFC 4443): echo and extended echo.
        58 => icmp(m, p, &[128, 129, 160, 161]),
        _ => {}
    }
}

fn tcp_flags(p: &[u8]) -> u16 {
    let ns = p.get(12).map_or(0, |b| u16::from(b & 1) << 8);
    ns | p.get(13).map_or(0, |b| u16::from(*b))
}

fn icmp(m: &mut PacketMeta, p: &[u8], with_id: &[u8]) {
    let (Some(&icmp_type), Some(&code)) = (p.first(), p.get(1)) else {
        m.truncated = true;
        return;
    };
    let echo_id = if with_id.contains(&icmp_type) {
        let id = be16(p, 4);
        if id.is_none() {
            m.truncated = true;
        }
        id
    } else {
        None
    };
    m.icmp = Some(IcmpInfo { icmp_type, code, echo_id });
}

/// Recognises a tunnel in the payload `data[start..end]` of `m`; with
/// `decap` returns the inner packet when it is IP, otherwise marks `m`.
fn tunnel(mut m: PacketMeta, data: &[u8], start: usize, end: usize, ctx: &mut Ctx) -> PacketMeta {
    let inner = data.get(..end).unwrap_or(&[]);
    let payload = inner.get(start..).unwrap_or(&[]);
    let found = match m.protocol {
        47 => gre(payload),
        4 => Some((Next::Ipv4, 0, Tunnel::IpInIp)),
        41 => Some((Next::Ipv6, 0, Tunnel::IpInIp)),
        // VXLAN (RFC 7348 §5) after the 8-byte UDP header: flags with I
        // set, reserved, VNI, reserved.
        17 if m.dst_port == 4789 => match payload.get(8) {
            Some(f) if f & 0x08 != 0 && payload.len() >= 16 => Some((Next::Ethernet, 16, Tunnel::Vxlan)),
            _ => None,
        },
        // GENEVE (RFC 8926 §3.4) after the UDP header: ver(2) opt len(6),
        // flags, protocol type, VNI, reserved.
        17 if m.dst_port == 6081 => match (payload.get(8), be16(payload, 10)) {
            (Some(b0), Some(pt)) if b0 >> 6 == 0 => {
                let len = 16 + usize::from(b0 & 0x3F) * 4;
                Some((Next::EtherType(pt), len, Tunnel::Geneve))
            }
            _ => None,
        },
        _ => None,
    };
    let Some((next, rel, kind)) = found else {
        return m;
    };
    m.tunnel = Some(kind);
    if !ctx.opts.decap || ctx.depth >= MAX_TUNNEL_DEPTH {
        return m;
    }
    // The inner packet goes on in the later fragments: it ends where this
    // fragment does, not where the capture did (unless this fragment was
    // itself cut short).
    let outer = FragmentKey::of(&m);
    let mut sub = Ctx {
        opts: ctx.opts,
        vlan: ctx.vlan,
        depth: ctx.depth + 1,
        in_first_fragment: ctx.in_first_fragment || (outer.is_some() && m.fragment.more_fragments && !m.truncated),
    };
    match walk(next, inner, start + rel, &mut sub) {
        Ok(mut i) => {
            if i.tunnel.is_none() {
                i.tunnel = Some(kind);
            }
            // The outermost fragmented datagram names the later fragments.
            if let Some(k) = outer {
                i.outer_fragment = Some(k);
            }
            i
        }
        Err(_) => m,
    }
}

/// GRE header (RFC 2784 §2, RFC 2890 key / sequence; version 1 = enhanced
/// GRE of PPTP, RFC 2637 §4.1): returns the payload type and offset.
fn gre(p: &[u8]) -> Option<(Next, usize, Tunnel)> {
    let flags = be16(p, 0)?;
    let ptype = be16(p, 2)?;
    let version = flags & 0x7;
    let (c, r, k, s) = (flags & 0x8000 != 0, flags & 0x4000 != 0, flags & 0x2000 != 0, flags & 0x1000 != 0);
    let mut len = 4;
    match version {
        0 => {
            if r {
                return None; // source routing (RFC 1701), obsolete
            }
            if c {
                len += 4;
            }
            if k {
                len += 4;
            }
            if s {
                len += 4;
            }
        }
        1 => {
            // Key (payload length + call id) is mandatory; ack flag 0x0080.
            len += 4;
            if s {
                len += 4;
            }
            if flags & 0x0080 != 0 {
                len += 4;
            }
        }
        _ => return None,
    }
    if p.len() < len {
        return None;
    }
    match ptype {
        // ERSPAN type II: 8-byte header when the sequence bit is set; type I
        // (no sequence) has none.
        0x88BE => Some((Next::Ethernet, len + if s { 8 } else { 0 }, Tunnel::Erspan)),
        // ERSPAN type III: 12 bytes, plus an 8-byte platform subheader if O.
        0x22EB => {
            let o = p.get(len + 11).is_some_and(|b| b & 1 != 0);
            Some((Next::Ethernet, len + 12 + if o { 8 } else { 0 }, Tunnel::Erspan))
        }
        // Cisco MetaData directly in GRE puts the payload type first:
        // type, version, length, option type, SGT (8 bytes).
        0x8909 => Some((Next::EtherType(be16(p, len)?), len + 8, Tunnel::Gre)),
        pt => Some((Next::EtherType(pt), len, Tunnel::Gre)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_frames_do_not_panic() {
        for lt in [0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276, 999] {
            for len in 0..64 {
                let data = vec![0x45u8; len];
                let _ = decode(LinkType(lt), &data, DecodeOptions { decap: true });
            }
        }
    }

    #[test]
    fn truncated_ipv4_keeps_addresses() {
        // Raw IPv4 header claiming 60 bytes, TCP, only the IP header captured.
        let mut p = vec![0x45, 0, 0, 60, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let m = decode(LinkType::RAW, &p, DecodeOptions::default()).unwrap();
        assert_eq!(m.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!((m.src_port, m.dst_port), (0, 0));
        assert!(m.truncated);
        p.extend_from_slice(&[0x12, 0x34, 0x00, 0x50]);
        let m = decode(LinkType::RAW, &p, DecodeOptions::default()).unwrap();
        assert_eq!((m.src_port, m.dst_port), (0x1234, 80));
        assert!(m.truncated);
    }
}
