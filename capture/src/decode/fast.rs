//! Fast path of [`decode`](super::decode) for the common frames.
//!
//! Ethernet (untagged or one 802.1Q tag), raw IP, LINKTYPE_IPV4 / IPV6 and
//! Linux SLL / SLL2 frames carrying an IPv4 packet (with or without options)
//! or an IPv6 packet without extension headers, not a fragment, every header
//! and the whole IP length captured, and a transport that is either TCP, UDP
//! or ICMP / ICMPv6 with its header complete, or a protocol that the full
//! walk's `transport` and `tunnel` leave alone. UDP to the VXLAN and GENEVE ports, GRE,
//! IP-in-IP, truncated and malformed packets are left to the full walk.
//!
//! [`decode_fast`] returns `None` for every frame it does not cover, and for
//! the frames it covers exactly what the full walk returns (checked over the
//! corpus and random frames by `capture/tests/decode_fast_path.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{FragmentInfo, IcmpInfo, IpVersion, PacketMeta};
use crate::file::LinkType;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The frame's IP header offset, version (true = 6) and VLAN id, when the
/// link layer is one of the fast ones and directly carries IPv4 or IPv6.
#[inline(always)]
fn link(link: LinkType, data: &[u8]) -> Option<(usize, bool, Option<u16>)> {
    let ethertype = |et: u16, off: usize, vlan: Option<u16>| match et {
        ETHERTYPE_IPV4 => Some((off, false, vlan)),
        ETHERTYPE_IPV6 => Some((off, true, vlan)),
        _ => None,
    };
    match link {
        LinkType::ETHERNET => {
            let h: &[u8; 18] = data.first_chunk()?;
            match be16([h[12], h[13]]) {
                ETHERTYPE_VLAN => ethertype(be16([h[16], h[17]]), 18, Some(be16([h[14], h[15]]) & 0x0FFF)),
                et => ethertype(et, 14, None),
            }
        }
        LinkType::RAW | LinkType::RAW_12 | LinkType::RAW_14 => match data.first()? >> 4 {
            4 => Some((0, false, None)),
            6 => Some((0, true, None)),
            _ => None,
        },
        LinkType::IPV4 => Some((0, false, None)),
        LinkType::IPV6 => Some((0, true, None)),
        LinkType::LINUX_SLL => {
            let h: &[u8; 16] = data.first_chunk()?;
            ethertype(be16([h[14], h[15]]), 16, None)
        }
        LinkType::LINUX_SLL2 => {
            let h: &[u8; 20] = data.first_chunk()?;
            ethertype(be16([h[0], h[1]]), 20, None)
        }
        _ => None,
    }
}

/// The fast path of [`decode`](super::decode): decodes the common frames
/// and returns exactly what the full walk ([`decode_walk`](super::decode_walk))
/// would for them; `None` for every other frame, which then needs the full
/// walk.
///
/// Covered: Ethernet (untagged or one 802.1Q tag), raw IP, LINKTYPE_IPV4 /
/// IPV6 and Linux SLL / SLL2 frames carrying IPv4 (with or without options)
/// or IPv6 without extension headers, not a fragment, headers and the whole
/// IP length captured, TCP / UDP / ICMP / ICMPv6 with complete headers or a
/// protocol without ports that is no tunnel; not UDP to the VXLAN or GENEVE
/// port. A packet it returns is never truncated, malformed or a fragment,
/// and carries no tunnel, so [`DecodeOptions`](super::DecodeOptions) do not
/// matter.
#[inline(always)]
pub fn decode_fast(link_type: LinkType, data: &[u8]) -> Option<PacketMeta> {
    // An 18-byte Ethernet prefix is read at once; shorter untagged frames
    // (14..18 bytes) cannot hold an IP header anyway.
    let (off, v6, vlan) = link(link_type, data)?;
    let rest = data.get(off..)?;
    if v6 {
        ipv6(rest, off, vlan)
    } else {
        ipv4(rest, off, vlan)
    }
}

/// A packet as the full walk starts it (`new_meta`), with its protocol and
/// IP length; not a fragment (IPv6's fragment info; IPv4's sets `first` and
/// the identification).
#[inline(always)]
fn meta(
    ip_version: IpVersion,
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ip_total_len: u32,
    vlan: Option<u16>,
    ip_offset: usize,
) -> PacketMeta {
    PacketMeta {
        ip_version,
        src,
        dst,
        protocol,
        src_port: 0,
        dst_port: 0,
        icmp: None,
        tcp_flags: 0,
        ip_total_len,
        fragment: FragmentInfo::default(),
        truncated: false,
        malformed: false,
        vlan,
        tunnel: None,
        encap_depth: 0,
        ip_offset,
        outer_fragment: None,
    }
}

#[inline(always)]
fn ipv4(rest: &[u8], off: usize, vlan: Option<u16>) -> Option<PacketMeta> {
    let h: &[u8; 20] = rest.first_chunk()?;
    if h[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0F) * 4;
    let total = be16([h[2], h[3]]);
    let flags_frag = be16([h[6], h[7]]);
    // IHL >= 5, the header within the total length, the total length
    // captured, not a fragment (MF clear, offset 0; DF is ignored).
    if ihl < 20 || usize::from(total) < ihl || flags_frag & 0x3FFF != 0 {
        return None;
    }
    let payload = rest.get(ihl..usize::from(total))?;
    let src = Ipv4Addr::from([h[12], h[13], h[14], h[15]]);
    let dst = Ipv4Addr::from([h[16], h[17], h[18], h[19]]);
    let mut m = meta(IpVersion::V4, src.into(), dst.into(), h[9], total.into(), vlan, off);
    m.fragment = FragmentInfo {
        is_fragment: false,
        first: true,
        more_fragments: false,
        offset: 0,
        id: be16([h[4], h[5]]).into(),
    };
    transport(&mut m, payload)?;
    Some(m)
}

#[inline(always)]
fn ipv6(rest: &[u8], off: usize, vlan: Option<u16>) -> Option<PacketMeta> {
    let h: &[u8; 40] = rest.first_chunk()?;
    if h[0] >> 4 != 6 {
        return None;
    }
    let plen = usize::from(be16([h[4], h[5]]));
    let next = h[6];
    // Payload length 0 (jumbogram or offload) and extension headers
    // (hop-by-hop, routing, fragment, destination options, AH) take the
    // full walk.
    if plen == 0 || matches!(next, 0 | 43 | 44 | 51 | 60) {
        return None;
    }
    let end = 40 + plen;
    let payload = rest.get(40..end)?;
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    dst.copy_from_slice(&h[24..40]);
    let mut m = meta(
        IpVersion::V6,
        Ipv6Addr::from(src).into(),
        Ipv6Addr::from(dst).into(),
        next,
        end as u32,
        vlan,
        off,
    );
    transport(&mut m, payload)?;
    Some(m)
}

/// [`super::transport`] and [`super::tunnel`] for complete headers; `None`
/// where those would mark the packet truncated or malformed, or could find
/// a tunnel.
#[inline(always)]
fn transport(m: &mut PacketMeta, p: &[u8]) -> Option<()> {
    match m.protocol {
        6 => {
            let h: &[u8; 20] = p.first_chunk()?;
            let header_len = usize::from(h[12] >> 4) * 4;
            if header_len < 20 || p.len() < header_len {
                return None;
            }
            m.src_port = be16([h[0], h[1]]);
            m.dst_port = be16([h[2], h[3]]);
            m.tcp_flags = (u16::from(h[12] & 1) << 8) | u16::from(h[13]);
        }
        17 => {
            let h: &[u8; 8] = p.first_chunk()?;
            let dst_port = be16([h[2], h[3]]);
            // VXLAN, GENEVE.
            if dst_port == 4789 || dst_port == 6081 {
                return None;
            }
            m.src_port = be16([h[0], h[1]]);
            m.dst_port = dst_port;
        }
        1 => icmp(m, p, |t| matches!(t, 0 | 8 | 13..=18 | 42 | 43))?,
        58 => icmp(m, p, |t| matches!(t, 128 | 129 | 160 | 161))?,
        // IP-in-IP, GRE (tunnels); UDP-Lite, DCCP, SCTP (ports).
        4 | 41 | 47 | 136 | 33 | 132 => return None,
        _ => {}
    }
    Some(())
}

#[inline(always)]
fn icmp(m: &mut PacketMeta, p: &[u8], with_id: impl Fn(u8) -> bool) -> Option<()> {
    let h: &[u8; 8] = p.first_chunk()?;
    let icmp_type = h[0];
    m.icmp = Some(IcmpInfo {
        icmp_type,
        code: h[1],
        echo_id: with_id(icmp_type).then(|| be16([h[4], h[5]])),
    });
    Some(())
}
