//! One test per link type and encapsulation, on the corpus files that
//! contain them (see shared/corpus/SOURCES.md), plus synthetic frames for
//! what the corpus lacks (LINKTYPE_LOOP, IPv4 over PPPoE, QinQ over IP).

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{corpus, require_tshark, tshark_fields};
use netwatch_capture::decode::{decode, Attribution, DecodeOptions, FragmentTracker, IpVersion, NotIp, PacketMeta, Tunnel};
use netwatch_capture::file::{CaptureReader, FileFormat, LinkType};

struct Pkt {
    number: u64,
    link: LinkType,
    ts: i64,
    meta: Result<PacketMeta, NotIp>,
}

fn read(file: &str, decap: bool) -> Vec<Pkt> {
    let path = corpus("pcap").join(file);
    let mut r = CaptureReader::open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap_or_else(|e| panic!("{file}: {e}"));
        out.push(Pkt {
            number: p.number,
            link: p.link_type,
            ts: p.timestamp_ns,
            meta: decode(p.link_type, p.data, DecodeOptions { decap }),
        });
    }
    assert!(r.warnings().iter().all(|w| !w.is_fatal()), "{file}: {:?}", r.warnings());
    out
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn metas(pkts: &[Pkt]) -> Vec<PacketMeta> {
    pkts.iter().filter_map(|p| p.meta.ok()).collect()
}

fn single(file: &str, link: LinkType, version: IpVersion) -> PacketMeta {
    let p = read(file, false);
    assert_eq!(p.len(), 1, "{file}");
    assert_eq!(p[0].link, link, "{file}");
    let m = p[0].meta.unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(m.ip_version, version, "{file}");
    m
}

#[test]
fn linktype_raw_101_ipv4_and_ipv6() {
    single("tcpdump__LINKTYPE_RAW_ipv4.pcap", LinkType::RAW, IpVersion::V4);
    single("tcpdump__LINKTYPE_RAW_ipv6.pcap", LinkType::RAW, IpVersion::V6);
    let p = read("pcapplusplus__raw_ip.pcap", false);
    assert_eq!(p.len(), 100);
    let m = metas(&p);
    assert_eq!(m.len(), 100);
    assert!(m.iter().any(|m| m.ip_version == IpVersion::V4) && m.iter().any(|m| m.ip_version == IpVersion::V6));
}

#[test]
fn linktype_ipv4_228_and_ipv6_229() {
    single("tcpdump__LINKTYPE_IPV4.pcap", LinkType::IPV4, IpVersion::V4);
    single("tcpdump__LINKTYPE_IPV6.pcap", LinkType::IPV6, IpVersion::V6);
}

#[test]
fn raw_12_and_14_are_raw_ip() {
    let v4 = [
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 53, 0, 54, 0, 8, 0, 0,
    ];
    for lt in [LinkType::RAW_12, LinkType::RAW_14] {
        let m = decode(lt, &v4, DecodeOptions::default()).unwrap();
        assert_eq!(
            (m.src, m.dst, m.protocol, m.src_port, m.dst_port),
            (ip("1.2.3.4"), ip("5.6.7.8"), 17, 53, 54)
        );
    }
}

#[test]
fn linux_sll_113_with_nanosecond_timestamps() {
    let p = read("tcpdump__tcp-handshake-nano.pcap", false);
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].link, LinkType::LINUX_SLL);
    // capinfos: first packet at 1418145369.924505488, duration 0.127609669 s.
    assert_eq!(p[0].ts, 1_418_145_369_924_505_488);
    assert_eq!(p[2].ts - p[0].ts, 127_609_669);
    let m = metas(&p);
    assert_eq!(m.len(), 3);
    assert_eq!(m[0].tcp_flags & 0x12, 0x02, "first packet is a SYN");
    assert_eq!(m[1].tcp_flags & 0x12, 0x12, "second is a SYN-ACK");
    let p = read("pcapplusplus__sll.pcap", false);
    assert_eq!(p.len(), 518);
    assert!(p.iter().all(|p| p.link == LinkType::LINUX_SLL));
    assert!(metas(&p).len() > 500);
}

#[test]
fn linux_sll2_276() {
    let p = read("pcapplusplus__sll2.pcap", false);
    assert_eq!(p.len(), 3);
    assert_eq!(p[0].link, LinkType::LINUX_SLL2);
    let m = metas(&p);
    assert_eq!(m.len(), 3);
    for m in m {
        assert_eq!((m.src, m.dst, m.protocol), (ip("116.63.66.108"), ip("7.249.151.114"), 6));
    }
}

#[test]
fn bsd_null_loopback_0() {
    let p = read("pcapplusplus__null_loopback.pcap", false);
    assert!(p.iter().all(|p| p.link == LinkType::NULL));
    assert_eq!(metas(&p).len(), p.len());
    let p = read("tcpdump__quic_handshake.pcap", false);
    let m = metas(&p);
    assert_eq!(m.len(), 18);
    assert!(m
        .iter()
        .all(|m| m.ip_version == IpVersion::V6 && m.protocol == 17 && m.src == ip("::1")));
}

#[test]
fn openbsd_loop_108_synthetic() {
    // LOOP: address family in network byte order (AF_INET = 2, AF_INET6 = 24).
    let mut f = vec![0, 0, 0, 2];
    f.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    let m = decode(LinkType::LOOP, &f, DecodeOptions::default()).unwrap();
    assert_eq!((m.src, m.protocol), (ip("10.0.0.1"), 1));
    assert!(m.truncated, "ICMP header missing");
    let e = decode(LinkType::LOOP, &[0, 0, 0, 7, 0x45], DecodeOptions::default()).unwrap_err();
    assert_eq!(e, NotIp::LoopbackFamily(7));
}

#[test]
fn ethernet_vlan_8021q() {
    let p = read("pcapplusplus__VlanPackets.pcap", false);
    let m = metas(&p);
    assert!(!m.is_empty());
    assert!(m.iter().all(|m| m.vlan.is_some()));
    assert!(m.iter().any(|m| m.src == ip("10.209.20.4") && m.vlan == Some(209)));
}

#[test]
fn qinq_8021ad() {
    // The corpus file carries ARP in QinQ.
    let p = read("tcpdump__802.1ad_QinQ.pcap", false);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.meta == Err(NotIp::Arp)));
    // Synthetic IPv4 in 802.1ad (VID 100) + 802.1Q (VID 200).
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x88, 0xA8, 0x00, 100, 0x81, 0x00, 0x00, 200, 0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0, 8, 0, 0,
    ]);
    let m = decode(LinkType::ETHERNET, &f, DecodeOptions::default()).unwrap();
    assert_eq!((m.vlan, m.src, m.src_port, m.dst_port), (Some(100), ip("1.1.1.1"), 1, 2));
}

#[test]
fn mpls_label_stacks() {
    let p = read("pcapplusplus__MplsPackets.pcap", false);
    let m1 = p[0].meta.unwrap();
    assert_eq!(
        (m1.src, m1.dst, m1.protocol, m1.src_port, m1.dst_port),
        (ip("2.3.4.6"), ip("12.13.14.15"), 6, 20636, 80)
    );
    // Pseudowire with control word, then Ethernet + VLAN + IPv4/ICMP.
    let m2 = p[1].meta.unwrap();
    assert_eq!((m2.src, m2.dst, m2.protocol), (ip("192.168.1.2"), ip("192.168.1.1"), 1));
    let p = read("tcpreplay__test.pcap", false);
    assert!(metas(&p).len() >= 170);
}

#[test]
fn pppoe_session() {
    // libpcap's file: PPPoE session frames carrying LCP (not IP).
    let p = read("libpcap__pppoes.pcap", false);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.meta == Err(NotIp::Ppp(0xC021))));
    // PPPoE + PPP IPv4 behind two VLAN tags.
    let p = read("pcapplusplus__one_http_stream_rst.pcap", false);
    let m = metas(&p);
    assert_eq!(m.len(), 10);
    assert!(m.iter().all(|m| m.protocol == 6 && m.vlan.is_some()));
    // Synthetic IPv6 over PPPoE (PPP protocol 0x0057).
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x12, 0x34, 0x00, 42, 0x00, 0x57]);
    let mut v6 = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
    v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    f.extend_from_slice(&v6);
    let m = decode(LinkType::ETHERNET, &f, DecodeOptions::default()).unwrap();
    assert_eq!((m.src, m.protocol, m.ip_total_len), (ip("fe80::1"), 59, 40));
}

#[test]
fn ipv6_extension_headers() {
    let m = single("libpcap__ipv6_ext_headers.pcap", LinkType::ETHERNET, IpVersion::V6);
    assert_eq!((m.protocol, m.src_port, m.dst_port), (17, 12345, 54321));
    assert!(m.fragment.is_fragment && m.fragment.first);
    let m = metas(&read("tcpdump__ipv6-routing-header.pcap", false));
    assert_eq!(m.len(), 4);
    // OSPFv3 behind AH.
    let p = read("tcpdump__OSPFv3_with_AH.pcap", false);
    let m = metas(&p);
    assert_eq!((p.len(), m.len()), (61, 61));
    assert!(m.iter().all(|m| m.protocol == 89));
    // AH transport mode (UDP) and tunnel mode (IPv6 in IPv6).
    let p = read("libpcap__ipv6_ah_modes.pcap", false);
    let (a, b) = (p[0].meta.unwrap(), p[1].meta.unwrap());
    assert_eq!(a.protocol, 17);
    assert_eq!((b.protocol, b.tunnel), (41, Some(Tunnel::IpInIp)));
    let b = read("libpcap__ipv6_ah_modes.pcap", true)[1].meta.unwrap();
    assert_eq!(
        (b.src, b.dst, b.protocol, b.encap_depth),
        (ip("2001:db8::3"), ip("2001:db8::4"), 17, 1)
    );
}

#[test]
fn ipv6_jumbograms() {
    let m = single("tcpdump__ipv6_jumbogram_1.pcap", LinkType::ETHERNET, IpVersion::V6);
    assert_eq!(m.protocol, 58);
    assert!(m.ip_total_len > 65575, "jumbo length, not 40 + 0: {}", m.ip_total_len);
    let m = single("tcpdump__bigtcp-ipv6-hbh.pcap", LinkType::ETHERNET, IpVersion::V6);
    assert_eq!((m.protocol, m.src_port, m.dst_port), (6, 41851, 43913));
    assert!(m.ip_total_len > 65575);
}

fn check_fragments(file: &str, datagrams_min: usize, later_min: usize) {
    let p = read(file, false);
    let mut tracker = FragmentTracker::new(64);
    let mut firsts = std::collections::HashMap::new();
    let mut later = 0;
    for pkt in &p {
        let Ok(mut m) = pkt.meta else { continue };
        if !m.fragment.is_fragment {
            continue;
        }
        let filled = tracker.process(&mut m) == Attribution::Attributed;
        if m.fragment.first {
            assert!(m.src_port != 0, "{file} #{}: first fragment has ports", pkt.number);
            firsts.insert(m.fragment.id, (m.src_port, m.dst_port));
        } else if let Some(ports) = firsts.get(&m.fragment.id) {
            later += 1;
            assert!(filled, "{file} #{}: later fragment attributed", pkt.number);
            assert_eq!(&(m.src_port, m.dst_port), ports, "{file} #{}", pkt.number);
        } else {
            // Arrived before its first fragment: cannot be attributed.
            assert!(!filled && m.src_port == 0, "{file} #{}", pkt.number);
        }
    }
    assert!(
        firsts.len() >= datagrams_min && later >= later_min,
        "{file}: {} datagrams, {later} later fragments",
        firsts.len()
    );
}

#[test]
fn ip_fragments_are_attributed_to_their_flow() {
    check_fragments("pcapplusplus__ip4_fragments.pcap", 5, 20);
    check_fragments("pcapplusplus__ip6_fragments.pcap", 4, 20);
    // The first fragment comes last here: the others cannot be attributed.
    check_fragments("pcapplusplus__frag_with_padding.pcap", 1, 0);
}

#[test]
fn fragment_tracker_is_bounded() {
    let mut t = FragmentTracker::new(4);
    let mut f = [
        0x45, 0, 0, 28, 0, 0, 0x20, 0, 64, 17, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0, 8, 0, 0,
    ];
    for id in 0..100u8 {
        f[5] = id;
        let mut m = decode(LinkType::RAW, &f, DecodeOptions::default()).unwrap();
        t.process(&mut m);
        assert!(t.len() <= 4);
    }
    // The most recent datagram is still known, the oldest is not.
    f[6] = 0x00;
    f[7] = 0x10; // offset 16, last fragment
    f[5] = 99;
    let mut m = decode(LinkType::RAW, &f, DecodeOptions::default()).unwrap();
    assert!(t.process(&mut m) == Attribution::Attributed && m.src_port == 1);
    f[5] = 0;
    let mut m = decode(LinkType::RAW, &f, DecodeOptions::default()).unwrap();
    assert!(t.process(&mut m) == Attribution::Unattributed && m.src_port == 0);
}

/// With `decap`, the reported packet is the (depth + 1)-th IP layer that
/// tshark shows; returns how many packets were decapsulated, which must be
/// every packet in which tshark sees more than one IP layer.
fn decap_matches_tshark(file: &str) -> usize {
    let path = corpus("pcap").join(file);
    let rows = tshark_fields(Path::new(&path), &["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst"]);
    let p = read(file, true);
    assert_eq!(p.len(), rows.len(), "{file}");
    let mut decapped = 0;
    for (pkt, row) in p.iter().zip(&rows) {
        let ip_layers = row[0].split(':').filter(|t| *t == "ip" || *t == "ipv6").count();
        let Ok(m) = pkt.meta else {
            assert!(ip_layers <= 1, "{file} #{}: {:?}, tshark: {}", pkt.number, pkt.meta, row[0]);
            continue;
        };
        if m.encap_depth == 0 {
            assert!(ip_layers <= 1, "{file} #{}: not decapsulated, tshark: {}", pkt.number, row[0]);
            continue;
        }
        decapped += 1;
        let layers: Vec<&str> = row[0].split(':').filter(|t| *t == "ip" || *t == "ipv6").collect();
        let layer = layers.get(usize::from(m.encap_depth)).copied();
        let nth = layers
            .iter()
            .take(usize::from(m.encap_depth))
            .filter(|t| Some(**t) == layer)
            .count();
        let (s, d) = if layer == Some("ip") {
            (&row[1], &row[2])
        } else {
            (&row[3], &row[4])
        };
        let s: Vec<&str> = s.split('|').collect();
        let d: Vec<&str> = d.split('|').collect();
        assert_eq!(Some(m.src.to_string().as_str()), s.get(nth).copied(), "{file} #{}", pkt.number);
        assert_eq!(Some(m.dst.to_string().as_str()), d.get(nth).copied(), "{file} #{}", pkt.number);
    }
    decapped
}

#[test]
fn tunnels_outer_by_default_inner_with_decap() {
    require_tshark();
    // VXLAN: outer UDP/4789 by default.
    let vx = read("tcpdump__vxlan.pcap", false);
    let outer = metas(&vx);
    assert_eq!((vx.len(), outer.len()), (10, 10));
    assert!(outer
        .iter()
        .all(|m| m.protocol == 17 && m.dst_port == 4789 && m.tunnel == Some(Tunnel::Vxlan)));
    assert_eq!(decap_matches_tshark("tcpdump__vxlan.pcap"), 8, "ARP inside VXLAN stays outer");
    // GENEVE.
    let outer = metas(&read("tcpdump__geneve.pcap", false));
    assert!(outer.iter().all(|m| m.dst_port == 6081 && m.tunnel == Some(Tunnel::Geneve)));
    assert_eq!(decap_matches_tshark("tcpdump__geneve.pcap"), 39);
    let inner = metas(&read("tcpdump__geneve.pcap", true));
    assert!(inner.iter().all(|m| m.protocol == 6 || m.protocol == 1));
    // GRE with key, GRE-in-GRE, Cisco MetaData.
    assert!(metas(&read("tcpdump__various_gre.pcap", false))
        .iter()
        .any(|m| m.tunnel == Some(Tunnel::Gre)));
    let n = decap_matches_tshark("tcpdump__various_gre.pcap");
    assert!(n >= 20, "{n} decapsulated");
    // GRE-in-GRE whose inner GRE is a keepalive (no payload): the inner
    // GRE packet is the innermost IP packet.
    let inner = metas(&read("tcpdump__various_gre.pcap", true));
    assert!(inner
        .iter()
        .any(|m| m.encap_depth == 1 && m.protocol == 47 && m.tunnel == Some(Tunnel::Gre)));
    // Enhanced GRE (PPTP) with sequence / ack numbers, carrying PPP.
    assert_eq!(decap_matches_tshark("pcapplusplus__GrePackets.cap"), 2);
    // The PPTP control connection and one GRE frame carrying PPP LCP: no
    // inner IP packet, so nothing to decapsulate (checked against tshark).
    assert_eq!(decap_matches_tshark("tcpdump__pptp.pcap"), 0);
    // ERSPAN II: the mirrored frames are STP / ARP / NDP, so the outer GRE
    // packet is reported even with decap.
    let m = metas(&read("tcpdump__erspan-type-ii-3.pcap", true));
    assert_eq!(m.len(), 108);
    assert!(m
        .iter()
        .all(|m| m.protocol == 47 && m.tunnel == Some(Tunnel::Erspan) && m.encap_depth == 0));
}

#[test]
fn erspan_ii_inner_ip_synthetic() {
    // IPv4/GRE (S bit, protocol 0x88BE) + 8-byte ERSPAN II header + Ethernet + IPv4/UDP.
    let mut f = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    f.extend_from_slice(&[0x10, 0x00, 0x88, 0xBE, 0, 0, 0, 1]);
    f.extend_from_slice(&[0x10, 0x00, 0x00, 0x01, 0, 0, 0, 0]);
    f.extend_from_slice(&[0u8; 12]);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 1, 0, 2, 0, 8, 0, 0,
    ]);
    let total = f.len() as u16;
    f[2..4].copy_from_slice(&total.to_be_bytes());
    let m = decode(LinkType::RAW, &f, DecodeOptions { decap: true }).unwrap();
    assert_eq!(
        (m.src, m.dst_port, m.tunnel, m.encap_depth),
        (ip("1.1.1.1"), 2, Some(Tunnel::Erspan), 1)
    );
}

#[test]
fn pcapng_sections_interfaces_and_blocks() {
    // Three sections of alternating byte order, several interfaces each.
    for f in ["pcapng-testsuite__test202_le.pcapng", "pcapng-testsuite__test202_be.pcapng"] {
        let path = corpus("pcap").join(f);
        let mut r = CaptureReader::open(&path).unwrap();
        assert_eq!(r.format(), FileFormat::Pcapng);
        let mut links = Vec::new();
        while let Some(p) = r.next_packet() {
            links.push(p.unwrap().link_type.0);
        }
        assert_eq!(links, [1, 1, 0, 1, 1, 1, 1, 0], "{f}");
        assert!(r.interfaces().iter().map(|i| i.section).max() >= Some(2), "{f}");
    }
    // Simple Packet Blocks use interface 0's snaplen and carry no timestamp.
    let path = corpus("pcap").join("pcapng-testsuite__test010_le.pcapng");
    let mut r = CaptureReader::open(&path).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert!(!p.timestamp_known);
        n += 1;
    }
    assert_eq!(n, 4);
    // Two interfaces with different if_tsresol (10^-6 and 10^-9).
    let path = corpus("pcap").join("pcapplusplus__pcapng-example.pcapng");
    let r = CaptureReader::open(&path).unwrap();
    drop(r);
    let p = read("pcapplusplus__pcapng-example.pcapng", false);
    assert_eq!(p.len(), 159);
    assert!(p.iter().any(|p| p.link == LinkType::ETHERNET) && p.iter().any(|p| p.link == LinkType::LINUX_SLL));
    // pcapng content in a file named .pcap.
    assert_eq!(read("pcapplusplus__ipv6_options.pcap", false).len(), 6);
}

#[test]
fn big_endian_and_nanosecond_pcap() {
    let us = read("pcapplusplus__microsecs_big_endian.pcap", false);
    let ns = read("pcapplusplus__nanosecs_big_endian.pcap", false);
    assert!(!us.is_empty() && !ns.is_empty());
    assert!(us.iter().all(|p| p.ts % 1000 == 0));
    assert!(ns.iter().any(|p| p.ts % 1000 != 0), "nanosecond digits kept");
    assert_eq!(read("tcpdump__pptp.pcap", false).len(), 23);
}
