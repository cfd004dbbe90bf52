//! Frames and files the corpus lacks, each checked against what tshark
//! (4.0) reports for the same bytes: IPv6 fragments whose first fragment
//! has a destination options or AH header after the fragment header, IPv4
//! with total length 0 (TCP segmentation offload), fragmented GRE tunnels
//! with `decap` (one inner packet, its later fragments no packets of their
//! own), 802.3 frames carrying IP in LLC/SNAP (RFC 1042) on Ethernet and in
//! Linux cooked captures, pcapng files of thousands of sections, and a
//! damaged packet block's error naming the packet.

use std::net::IpAddr;

use netwatch_capture::decode::{decode, Attribution, DecodeOptions, FragmentTracker, NotIp, PacketMeta};
use netwatch_capture::file::{CaptureReader, LinkType};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, id: u16, flags_frag: u16, total: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend(total.to_be_bytes());
    h.extend(id.to_be_bytes());
    h.extend(flags_frag.to_be_bytes());
    h.extend([64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(payload);
    h
}

fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend(sport.to_be_bytes());
    u.extend(dport.to_be_bytes());
    u.extend(((8 + data.len()) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(data);
    u
}

fn tcp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend(sport.to_be_bytes());
    t.extend(dport.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(data);
    t
}

fn ipv6(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend((payload.len() as u16).to_be_bytes());
    h.extend([next, 64]);
    h.extend(src.parse::<std::net::Ipv6Addr>().unwrap().octets());
    h.extend(dst.parse::<std::net::Ipv6Addr>().unwrap().octets());
    h.extend(payload);
    h
}

/// IPv6 fragment header (RFC 8200 §4.5).
fn frag6(next: u8, offset_units: u16, more: bool, id: u32) -> Vec<u8> {
    let mut f = vec![next, 0];
    f.extend(((offset_units << 3) | u16::from(more)).to_be_bytes());
    f.extend(id.to_be_bytes());
    f
}

fn raw(frame: &[u8]) -> PacketMeta {
    decode(LinkType::RAW, frame, DecodeOptions::default()).unwrap()
}

/// The first fragment has [Fragment, Destination Options, UDP] or
/// [Fragment, AH, TCP]; the later one's fragment header names the
/// destination options / AH header that only the first carries. Both are
/// one datagram (RFC 8200 §4.5: addresses and identification), one flow.
#[test]
fn ipv6_later_fragments_after_extension_headers_join_their_flow() {
    let (a, b) = ("2001:db8::1", "2001:db8::2");
    for (ext, ext_bytes, transport, proto, ports) in [
        (
            60u8,
            vec![17u8, 0, 1, 4, 0, 0, 0, 0],
            udp(8888, 8889, &[0; 16]),
            17u8,
            (8888u16, 8889u16),
        ),
        (
            51u8,
            vec![6u8, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1],
            tcp(1234, 443, &[0; 16]),
            6u8,
            (1234, 443),
        ),
    ] {
        let mut first = frag6(ext, 0, true, 77);
        first.extend(&ext_bytes);
        first.extend(&transport);
        let later = [frag6(ext, 4, false, 77), vec![0xAB; 16]].concat();
        let mut tracker = FragmentTracker::new(8);
        let mut m1 = raw(&ipv6(a, b, 44, &first));
        let mut m2 = raw(&ipv6(a, b, 44, &later));
        assert_eq!((m1.protocol, m1.src_port, m1.dst_port), (proto, ports.0, ports.1));
        assert_eq!(
            m2.protocol, ext,
            "the later fragment alone names the header after the fragment header"
        );
        assert_eq!(tracker.process(&mut m1), Attribution::Unattributed);
        assert_eq!(tracker.process(&mut m2), Attribution::Attributed, "later fragment attributed");
        assert_eq!((m2.protocol, m2.src_port, m2.dst_port), (proto, ports.0, ports.1));
    }
}

/// Total length 0 is TCP segmentation offload on the capturing host:
/// tshark presumes the captured length ("Total Length: 140 bytes (reported
/// as 0 ...)"), and so do the byte counters.
#[test]
fn ipv4_total_length_zero_counts_the_captured_packet() {
    let f = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 6, 1, 0x4000, 0, &tcp(1000, 80, &[0x55; 100]));
    let m = raw(&f);
    assert_eq!((m.src_port, m.dst_port), (1000, 80));
    assert_eq!(m.ip_total_len, 140);
    assert!(!m.malformed && !m.truncated);
}

/// IPv6 payload length 0 without a jumbo option is the same offload (Linux
/// "BIG TCP" captures, tshark: "payload length equals 0 (maybe because of
/// TSO)"): the captured packet counts, as for IPv4, not the 40-byte header.
#[test]
fn ipv6_payload_length_zero_counts_the_captured_packet() {
    let mut f = ipv6("fd00::1", "fd00::2", 6, &tcp(1000, 80, &[0x55; 1000]));
    f[4..6].copy_from_slice(&[0, 0]);
    let m = raw(&f);
    assert_eq!((m.src_port, m.dst_port), (1000, 80));
    assert_eq!(m.ip_total_len, 40 + 20 + 1000);
    assert!(!m.malformed && !m.truncated);
    // "No next header" (59) with payload length 0 is an empty packet: the
    // Ethernet padding after it is not IP bytes.
    let mut f = ipv6("fd00::1", "fd00::2", 59, &[]);
    f.extend([0; 6]);
    assert_eq!(raw(&f).ip_total_len, 40);
}

/// A GRE datagram (outer 10.4.0.1 -> 10.4.0.2, identification `id`)
/// carrying a 140-byte IPv4/TCP packet, in two outer fragments of 64 and 80
/// bytes of GRE payload: (first, later).
fn gre_fragments(id: u16) -> (Vec<u8>, Vec<u8>) {
    let inner = ipv4([192, 168, 0, 1], [192, 168, 0, 2], 6, 9, 0, 140, &tcp(5555, 80, &[0x11; 100]));
    let gre = [vec![0, 0, 0x08, 0x00], inner].concat();
    let (p1, p2) = gre.split_at(64);
    let outer = |ff: u16, part: &[u8]| ipv4([10, 4, 0, 1], [10, 4, 0, 2], 47, id, ff, 20 + part.len() as u16, part);
    (outer(0x2000, p1), outer(64 / 8, p2))
}

/// With `decap`, a fragmented GRE datagram's first fragment is reported as
/// the inner packet with the inner IP length, as tshark shows the
/// reassembled datagram's inner packet (`ip.len` 140); its later fragment
/// (no inner header) is the rest of that packet: given the inner flow, but
/// no packet of it, whose bytes the inner length counts already.
#[test]
fn later_fragments_of_a_decapsulated_tunnel_are_part_of_the_inner_packet() {
    let (first, later) = gre_fragments(4242);
    let opts = DecodeOptions { decap: true };
    let mut m1 = decode(LinkType::RAW, &first, opts).unwrap();
    let mut m2 = decode(LinkType::RAW, &later, opts).unwrap();
    assert_eq!(
        (m1.src, m1.protocol, m1.src_port, m1.dst_port, m1.ip_total_len),
        (ip("192.168.0.1"), 6, 5555, 80, 140)
    );
    assert!(
        !m1.truncated,
        "the inner packet goes on in the later fragment: the capture did not cut it"
    );
    assert_eq!(
        (m2.src, m2.protocol),
        (ip("10.4.0.1"), 47),
        "alone, the later fragment is the outer packet"
    );
    let mut tracker = FragmentTracker::new(8);
    assert_eq!(tracker.process(&mut m1), Attribution::Unattributed);
    assert_eq!(tracker.process(&mut m2), Attribution::PartOfInner);
    assert_eq!(
        (m2.src, m2.dst, m2.protocol, m2.src_port, m2.dst_port),
        (ip("192.168.0.1"), ip("192.168.0.2"), 6, 5555, 80)
    );
    // Without decap the later fragment joins the outer GRE flow with its
    // own length, as before.
    let mut tracker = FragmentTracker::new(8);
    let mut o1 = decode(LinkType::RAW, &first, DecodeOptions::default()).unwrap();
    let mut o2 = decode(LinkType::RAW, &later, DecodeOptions::default()).unwrap();
    assert_eq!(tracker.process(&mut o1), Attribution::Unattributed);
    assert_eq!(tracker.process(&mut o2), Attribution::Attributed);
    assert_eq!(
        (o1.ip_total_len, o2.src, o2.protocol, o2.ip_total_len),
        (84, ip("10.4.0.1"), 47, 100)
    );
    assert!(!o1.truncated);
}

/// The inner packet of a tunnel's first fragment is not truncated because
/// its IP length reaches into the later fragments, but it is when the
/// fragment boundary cuts its own transport header (here 8 of TCP's 20
/// bytes: ports, no flags), as any packet whose header is cut.
#[test]
fn an_inner_transport_header_cut_by_the_fragment_is_truncated() {
    let inner = ipv4([192, 168, 0, 1], [192, 168, 0, 2], 6, 9, 0, 140, &tcp(5555, 80, &[0x11; 100]));
    let gre = [vec![0, 0, 0x08, 0x00], inner].concat();
    let outer = |part: &[u8]| ipv4([10, 4, 0, 1], [10, 4, 0, 2], 47, 77, 0x2000, 20 + part.len() as u16, part);
    let opts = DecodeOptions { decap: true };
    // 4 GRE + 20 IP + 8 TCP bytes.
    let cut = decode(LinkType::RAW, &outer(&gre[..32]), opts).unwrap();
    assert_eq!((cut.src, cut.src_port, cut.dst_port), (ip("192.168.0.1"), 5555, 80));
    assert!(cut.truncated, "the inner TCP header is cut short");
    // 4 GRE + 20 IP + 20 TCP + 4 data bytes: the header is whole.
    let whole = decode(LinkType::RAW, &outer(&gre[..48]), opts).unwrap();
    assert_eq!(whole.src_port, 5555);
    assert!(!whole.truncated);
}

/// In capture order, a fragmented tunnel datagram with `decap` is one inner
/// packet with the inner IP length whichever fragment comes first (the
/// later one, held while it waits, is then dropped rather than handed on),
/// over IPv4 and IPv6 alike; a later fragment whose first never comes goes
/// on as the outer packet, unattributed, as any such fragment does.
#[test]
fn a_fragmented_tunnel_datagram_is_one_inner_packet_in_any_order() {
    let opts = DecodeOptions { decap: true };
    let s = 1_000_000_000i64;
    // (time, source, protocol, source port, IP length) of what is handed on.
    let run = |frames: &[(i64, &[u8])], release: bool| {
        let mut t = FragmentTracker::new(8);
        let mut out = Vec::new();
        for (ts, f) in frames {
            let m = decode(LinkType::RAW, f, opts).unwrap();
            t.process_in_order(*ts, m, &mut |ts, m| out.push((ts, m.src, m.protocol, m.src_port, m.ip_total_len)));
        }
        if release {
            t.release_all(&mut |ts, m| out.push((ts, m.src, m.protocol, m.src_port, m.ip_total_len)));
        }
        assert!(!t.holds_fragments());
        out
    };
    let inner = ip("192.168.0.1");
    let (first, later) = gre_fragments(4243);
    assert_eq!(run(&[(s, &first), (2 * s, &later)], false), [(s, inner, 6, 5555, 140)]);
    assert_eq!(run(&[(s, &later), (2 * s, &first)], false), [(2 * s, inner, 6, 5555, 140)]);
    assert_eq!(run(&[(s, &later)], true), [(s, ip("10.4.0.1"), 47, 0, 100)]);
    // IPv4 in IPv6 (RFC 2473), the outer datagram fragmented (RFC 8200 §4.5).
    let packet = ipv4([192, 168, 0, 1], [192, 168, 0, 2], 17, 3, 0, 108, &udp(5353, 53, &[0x22; 80]));
    let (p1, p2) = packet.split_at(56);
    let f1 = ipv6("2001:db8::a", "2001:db8::b", 44, &[frag6(4, 0, true, 99), p1.to_vec()].concat());
    let f2 = ipv6(
        "2001:db8::a",
        "2001:db8::b",
        44,
        &[frag6(4, 56 / 8, false, 99), p2.to_vec()].concat(),
    );
    assert_eq!(run(&[(s, &f1), (2 * s, &f2)], false), [(s, inner, 17, 5353, 108)]);
    assert_eq!(run(&[(s, &f2), (2 * s, &f1)], false), [(2 * s, inner, 17, 5353, 108)]);
    assert_eq!(run(&[(s, &f2)], true), [(s, ip("2001:db8::a"), 4, 0, 40 + 8 + 52)]);
}

/// Linux cooked captures (SLL, link type 113; SLL2, 276) give an 802.3
/// frame's protocol as `ETH_P_802_2` (4) with the LLC header after the
/// cooked header: LLC/SNAP with an ethertype (RFC 1042) is IP there too, as
/// tshark decodes it (`sll:llc:ip`); so are a whole Ethernet frame (3) and
/// PPP in HDLC-like framing (7); other LLC frames and the other Linux
/// pseudo protocols are not.
#[test]
fn sll_and_sll2_pseudo_protocols_that_carry_ip() {
    let packet = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 1, 0, 29, &udp(1000, 2000, b"a"));
    let snap = [0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
    let stp = [0x42, 0x42, 0x03, 0, 0, 0, 0, 0];
    // Packet type, ARPHRD_ETHER, address length, address, protocol.
    let sll = |proto: u16| [vec![0, 0, 0, 1, 0, 6], vec![0x02; 6], vec![0, 0], proto.to_be_bytes().to_vec()].concat();
    // Protocol, reserved, interface index, ARPHRD_ETHER, packet type,
    // address length, address.
    let sll2 = |proto: u16| [proto.to_be_bytes().to_vec(), vec![0, 0, 0, 0, 0, 1, 0, 1, 0, 6], vec![0x02; 8]].concat();
    for (link, header) in [
        (LinkType::LINUX_SLL, &sll as &dyn Fn(u16) -> Vec<u8>),
        (LinkType::LINUX_SLL2, &sll2),
    ] {
        let frame = [header(0x0004), snap.to_vec(), packet.clone()].concat();
        let m = decode(link, &frame, DecodeOptions::default()).unwrap();
        assert_eq!(
            (m.src, m.dst, m.protocol, m.src_port, m.dst_port, m.ip_total_len),
            (ip("10.0.0.1"), ip("10.0.0.2"), 17, 1000, 2000, 29),
            "{link:?}"
        );
        let frame = [header(0x0004), stp.to_vec()].concat();
        assert_eq!(
            decode(link, &frame, DecodeOptions::default()),
            Err(NotIp::Llc { dsap: 0x42 }),
            "{link:?}"
        );
        // Novell raw 802.3 (ETH_P_802_3) is IPX, whatever follows.
        let frame = [header(0x0001), snap.to_vec(), packet.clone()].concat();
        assert_eq!(decode(link, &frame, DecodeOptions::default()), Err(NotIp::EtherType(1)), "{link:?}");
        // A whole Ethernet frame (3) and PPP in HDLC-like framing (7, with
        // or without address and control) carry IP, as tshark decodes them
        // (`sll:eth:ip`, `sll:ppp:ip`).
        let ethernet = [vec![0x02; 6], vec![0x04; 6], vec![0x08, 0x00]].concat();
        for frame in [
            [header(0x0003), ethernet, packet.clone()].concat(),
            [header(0x0007), vec![0xFF, 0x03, 0x00, 0x21], packet.clone()].concat(),
            [header(0x0007), vec![0x00, 0x21], packet.clone()].concat(),
        ] {
            let m = decode(link, &frame, DecodeOptions::default()).unwrap();
            assert_eq!(
                (m.src, m.protocol, m.src_port, m.ip_total_len),
                (ip("10.0.0.1"), 17, 1000, 29),
                "{link:?}"
            );
        }
    }
}

/// IEEE 802.3 with an LLC/SNAP header carrying an ethertype (RFC 1042),
/// untagged and under an 802.1Q tag, is IP; other LLC frames are not.
#[test]
fn llc_snap_frames_carry_ip() {
    let packet = ipv4([10, 8, 0, 1], [10, 8, 0, 2], 17, 1, 0, 32, &udp(1500, 1501, &[0; 4]));
    let snap = [vec![0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00], packet.clone()].concat();
    let macs = [[0x02u8; 6], [0x04; 6]].concat();
    let untagged = [macs.clone(), (snap.len() as u16).to_be_bytes().to_vec(), snap.clone()].concat();
    let tagged = [
        macs.clone(),
        vec![0x81, 0x00, 0x00, 0x07],
        (snap.len() as u16).to_be_bytes().to_vec(),
        snap,
    ]
    .concat();
    for frame in [&untagged, &tagged] {
        let m = decode(LinkType::ETHERNET, frame, DecodeOptions::default()).unwrap();
        assert_eq!(
            (m.src, m.dst, m.src_port, m.dst_port, m.ip_total_len),
            (ip("10.8.0.1"), ip("10.8.0.2"), 1500, 1501, 32)
        );
    }
    // Spanning tree (DSAP 0x42) stays non-IP.
    let stp = [macs, vec![0x00, 0x26, 0x42, 0x42, 0x03, 0, 0, 0, 0, 0]].concat();
    assert_eq!(
        decode(LinkType::ETHERNET, &stp, DecodeOptions::default()),
        Err(NotIp::Llc { dsap: 0x42 })
    );
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// A pcapng section: SHB, one Ethernet IDB, one EPB with a UDP packet.
fn section(packet_ts: u64) -> Vec<u8> {
    let mut out = Vec::new();
    // SHB: type, len 28, BOM, version 1.0, section length -1, len.
    out.extend(le32(0x0A0D0D0A));
    out.extend(le32(28));
    out.extend(le32(0x1A2B3C4D));
    out.extend([1, 0, 0, 0]);
    out.extend(u64::MAX.to_le_bytes());
    out.extend(le32(28));
    // IDB: link type 1, snaplen 0.
    out.extend(le32(1));
    out.extend(le32(20));
    out.extend([1, 0, 0, 0]);
    out.extend(le32(0));
    out.extend(le32(20));
    // EPB.
    let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 1, 0, 31, &udp(1000, 53, &[0; 3]));
    let frame = [vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00], ip].concat();
    let padded = frame.len().div_ceil(4) * 4;
    let len = (32 + padded) as u32;
    out.extend(le32(6));
    out.extend(le32(len));
    out.extend(le32(0));
    out.extend(le32((packet_ts >> 32) as u32));
    out.extend(le32(packet_ts as u32));
    out.extend(le32(frame.len() as u32));
    out.extend(le32(frame.len() as u32));
    out.extend(&frame);
    out.resize(out.len() + padded - frame.len(), 0);
    out.extend(le32(len));
    out
}

/// `cat`-concatenated ring-buffer files: one section each. More sections
/// than the per-section interface limit (4096) must all be read, with
/// interface numbers counted across the file.
#[test]
fn thousands_of_pcapng_sections_are_all_read() {
    let n = 5000;
    let file: Vec<u8> = (0..n).flat_map(|i| section(1_700_000_000_000_000 + i)).collect();
    let mut r = CaptureReader::new(std::io::Cursor::new(file)).unwrap();
    let mut count = 0u64;
    let mut last_interface = 0;
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.interface_id, count as u32, "packet {}", p.number);
        last_interface = p.interface_id;
        count += 1;
    }
    assert_eq!(count, n);
    assert_eq!(last_interface, n as u32 - 1);
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    assert!(
        r.interfaces().len() <= 4096,
        "memory stays bounded: {} interfaces kept",
        r.interfaces().len()
    );
}

/// A packet block whose trailing length is damaged: the warning names the
/// packet number as well as the block and byte offset.
#[test]
fn a_damaged_packet_block_is_named_by_its_packet_number() {
    let mut file = [section(1), section(2)].concat();
    let one = section(1).len();
    // The second section's EPB trailer: the last 4 bytes of the file.
    let at = file.len() - 4;
    file[at] ^= 0x55;
    let mut r = CaptureReader::new(std::io::Cursor::new(file)).unwrap();
    let mut good = 0;
    while let Some(p) = r.next_packet() {
        if p.is_ok() {
            good += 1;
        }
    }
    assert_eq!(good, 1);
    let w: Vec<String> = r.warnings().iter().map(|w| w.to_string()).collect();
    let epb_offset = one + 28 + 20;
    assert!(
        w.iter().any(|w| w.contains(&format!(
            "packet 2 (block 6) at byte offset {epb_offset}: trailing block total length"
        ))),
        "{w:?}"
    );
}

/// Simple packet blocks (pcapng §4.4) carry no timestamp: their packets are
/// read, timed as the packet before them, and the first one is warned
/// about (once), naming packet and offset: flows dated 1970 are explained.
#[test]
fn simple_packet_blocks_are_read_with_a_warning_on_their_missing_time() {
    let mut file = section(1_700_000_000_000_000);
    let ip = ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, 2, 0, 31, &udp(1000, 53, &[0; 3]));
    let frame = [vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00], ip].concat();
    let padded = frame.len().div_ceil(4) * 4;
    let spb_at = file.len() as u64;
    for _ in 0..2 {
        let len = (16 + padded) as u32;
        file.extend(le32(3));
        file.extend(le32(len));
        file.extend(le32(frame.len() as u32));
        file.extend(&frame);
        file.resize(file.len() + padded - frame.len(), 0);
        file.extend(le32(len));
    }
    let mut r = CaptureReader::new(std::io::Cursor::new(file)).unwrap();
    let mut times = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        times.push((p.timestamp_ns, p.timestamp_known));
    }
    let t0 = 1_700_000_000_000_000i64 * 1000;
    assert_eq!(times, [(t0, true), (t0, false), (t0, false)]);
    assert_eq!(r.warnings().len(), 1, "{:?}", r.warnings());
    let w = r.warnings()[0].to_string();
    assert!(
        w.starts_with(&format!("packet 2 at byte offset {spb_at}: simple packet block")),
        "{w}"
    );
}

/// Fragments sent last first (as Linux sends a large UDP datagram) or
/// reordered on the way: a later fragment waits for its first and then
/// joins its flow, handed over after it with its own time; one whose first
/// never comes goes on unattributed after the reassembly time, and the
/// rest at the end of the input.
#[test]
fn later_fragments_before_their_first_wait_for_it() {
    let dgram = udp(7000, 8000, &[0x42; 40]);
    let (p1, p2) = dgram.split_at(24);
    let frag = |id: u16, ff: u16, part: &[u8]| raw(&ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17, id, ff, 20 + part.len() as u16, part));
    let mut t = FragmentTracker::new(8);
    let mut out = Vec::new();
    let s = 1_000_000_000i64;
    t.process_in_order(s, frag(78, 3, p2), &mut |ts, m| out.push((ts, m)));
    assert!(out.is_empty() && t.holds_fragments());
    // An unrelated packet goes straight through meanwhile.
    t.process_in_order(
        2 * s,
        raw(&ipv4([10, 0, 0, 3], [10, 0, 0, 4], 17, 5, 0, 28, &udp(1, 2, &[]))),
        &mut |ts, m| out.push((ts, m)),
    );
    t.process_in_order(3 * s, frag(78, 0x2000, p1), &mut |ts, m| out.push((ts, m)));
    let got: Vec<_> = out
        .iter()
        .map(|(ts, m)| (*ts, m.src_port, m.dst_port, m.fragment.is_fragment))
        .collect();
    assert_eq!(got, [(2 * s, 1, 2, false), (3 * s, 7000, 8000, true), (s, 7000, 8000, true)]);
    assert!(!t.holds_fragments());
    // A later fragment whose first never comes: unattributed after 30 s.
    out.clear();
    t.process_in_order(10 * s, frag(79, 3, p2), &mut |ts, m| out.push((ts, m)));
    t.expire(40 * s, &mut |ts, m| out.push((ts, m)));
    assert!(out.is_empty(), "30 s not over yet");
    t.expire(41 * s, &mut |ts, m| out.push((ts, m)));
    assert_eq!(out.iter().map(|(ts, m)| (*ts, m.src_port)).collect::<Vec<_>>(), [(10 * s, 0)]);
    t.process_in_order(50 * s, frag(80, 3, p2), &mut |ts, m| out.push((ts, m)));
    t.release_all(&mut |ts, m| out.push((ts, m)));
    assert_eq!(out.len(), 2);
    assert!(!t.holds_fragments());
}
