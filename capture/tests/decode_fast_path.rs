//! The decoder's fast path (`decode_fast`) against the full walk
//! (`decode_walk`): whenever the fast path answers, it answers exactly what
//! the full walk does (every `PacketMeta` field), with and without decap;
//! and `decode` (fast path, then full walk) always equals the full walk.
//!
//! Checked over every frame of every readable corpus capture (pcap,
//! pcap-bulk, pcap-malformed), over every truncation of those frames, and
//! over random frames built from the common headers with random fields,
//! random byte flips and random truncation.

mod common;

use common::{capture_files, name};
use netwatch_capture::decode::{decode, decode_fast, decode_walk, DecodeOptions};
use netwatch_capture::file::{CaptureReader, LinkType};
use proptest::prelude::*;

const OPTS: [DecodeOptions; 2] = [DecodeOptions { decap: false }, DecodeOptions { decap: true }];

/// Checks one frame; returns whether the fast path answered.
fn check(link: LinkType, data: &[u8], what: &dyn Fn() -> String) -> bool {
    let fast = decode_fast(link, data);
    for opts in OPTS {
        let walk = decode_walk(link, data, opts);
        if let Some(f) = fast {
            assert_eq!(Ok(f), walk, "fast path differs from the full walk ({opts:?}): {}", what());
        }
        assert_eq!(
            decode(link, data, opts),
            walk,
            "decode differs from the full walk ({opts:?}): {}",
            what()
        );
    }
    fast.is_some()
}

#[derive(Default)]
struct Counts {
    files: usize,
    frames: u64,
    /// Frames that decode to an IP packet.
    ip: u64,
    fast: u64,
    cuts: u64,
    fast_cuts: u64,
}

/// Every frame of every readable file of `dir`; every truncation of each
/// frame up to `max_cut` bytes, and the frame minus its last byte.
fn corpus_dir(dir: &str, max_cut: usize, c: &mut Counts) {
    for path in capture_files(dir) {
        let Ok(mut reader) = CaptureReader::open(&path) else {
            continue;
        };
        c.files += 1;
        while let Some(Ok(p)) = reader.next_packet() {
            let (link, data, number) = (p.link_type, p.data, p.number);
            let what = || format!("{} frame {number}", name(&path));
            c.frames += 1;
            c.ip += u64::from(decode_walk(link, data, DecodeOptions::default()).is_ok());
            c.fast += u64::from(check(link, data, &what));
            let cuts = (0..data.len().min(max_cut)).chain(data.len().checked_sub(1));
            for cut in cuts {
                let what = || format!("{} frame {number} cut to {cut} bytes", name(&path));
                c.cuts += 1;
                c.fast_cuts += u64::from(check(link, &data[..cut], &what));
            }
        }
    }
}

#[test]
fn fast_path_equals_full_walk_on_corpus() {
    let mut c = Counts::default();
    corpus_dir("pcap", 2048, &mut c);
    corpus_dir("pcap-malformed", 2048, &mut c);
    let small = (c.ip, c.fast);
    corpus_dir("pcap-bulk", 96, &mut c);
    eprintln!(
        "{} files, {} frames ({} IP, {} on the fast path), {} truncated frames ({} on the fast path)",
        c.files, c.frames, c.ip, c.fast, c.cuts, c.fast_cuts
    );
    assert!(c.files >= 100, "only {} corpus files read", c.files);
    // The fast path must carry the bulk of real traffic, or this test
    // proves little.
    assert!(
        small.1 * 3 > small.0,
        "fast path taken for only {} of {} IP frames",
        small.1,
        small.0
    );
    let (bulk_ip, bulk_fast) = (c.ip - small.0, c.fast - small.1);
    assert!(
        bulk_fast * 100 > bulk_ip * 99,
        "fast path taken for only {bulk_fast} of {bulk_ip} bulk IP frames"
    );
    assert!(c.fast_cuts > 1000);
}

/// Hand-built frames of each covered shape, each on the fast path and each
/// equal to the full walk.
#[test]
fn fast_path_covers_common_shapes() {
    let tcp = |extra: &[u8]| {
        let mut t = vec![0x04, 0xd2, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x51, 0x12, 0xff, 0xff, 0, 0, 0, 0];
        t.extend_from_slice(extra);
        t
    };
    let v4 = |proto: u8, opts: &[u8], payload: &[u8]| {
        let ihl = 5 + opts.len() / 4;
        let total = (ihl * 4 + payload.len()) as u16;
        let mut h = vec![
            0x40 | ihl as u8,
            0,
            0,
            0,
            0x12,
            0x34,
            0x40,
            0,
            64,
            proto,
            0,
            0,
            10,
            0,
            0,
            1,
            10,
            0,
            0,
            2,
        ];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(opts);
        h.extend_from_slice(payload);
        h
    };
    let v6 = |next: u8, payload: &[u8]| {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(payload);
        h
    };
    let eth = |et: u16, ip: &[u8]| {
        let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(ip);
        f
    };
    let vlan = |et: u16, ip: &[u8]| {
        let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x81, 0x00, 0x20, 0x2a];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(ip);
        f
    };
    let sll = |et: u16, ip: &[u8]| {
        let mut f = vec![0, 0, 0, 1, 0, 6, 0, 1, 2, 3, 4, 5, 0, 0];
        f.extend_from_slice(&et.to_be_bytes());
        f.extend_from_slice(ip);
        f
    };
    let sll2 = |et: u16, ip: &[u8]| {
        let mut f = et.to_be_bytes().to_vec();
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 0, 1, 2, 3, 4, 5, 0, 0]);
        f.extend_from_slice(ip);
        f
    };
    let udp = [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
    let echo6 = [128, 0, 0, 0, 0x12, 0x34, 0, 1];
    let unreachable = [3, 3, 0, 0, 0, 0, 0, 0];
    let ip_packets = [
        (0x0800, v4(6, &[], &tcp(&[]))),
        (0x0800, v4(6, &[1, 1, 1, 0], &tcp(b"data"))),
        (
            0x0800,
            v4(6, &[], &{
                let mut t = tcp(&[1, 1, 4, 2, 0, 0, 0, 0]);
                t[12] = 0x70;
                t
            }),
        ),
        (0x0800, v4(17, &[], &udp)),
        (0x0800, v4(1, &[], &echo)),
        (0x0800, v4(1, &[], &unreachable)),
        (0x0800, v4(50, &[], &[0; 16])),
        (0x86DD, v6(6, &tcp(b"x"))),
        (0x86DD, v6(17, &udp)),
        (0x86DD, v6(58, &echo6)),
        (0x86DD, v6(59, &[0; 4])),
    ];
    for (i, (et, ip)) in ip_packets.iter().enumerate() {
        let mut frames = vec![
            (LinkType::ETHERNET, eth(*et, ip)),
            (LinkType::ETHERNET, vlan(*et, ip)),
            (LinkType::LINUX_SLL, sll(*et, ip)),
            (LinkType::LINUX_SLL2, sll2(*et, ip)),
            (LinkType::RAW, ip.clone()),
            (if *et == 0x0800 { LinkType::IPV4 } else { LinkType::IPV6 }, ip.clone()),
        ];
        // Ethernet padding after the IP packet.
        let mut padded = eth(*et, ip);
        padded.extend_from_slice(&[0; 6]);
        frames.push((LinkType::ETHERNET, padded));
        for (link, f) in frames {
            assert!(
                check(link, &f, &|| format!("shape {i} on {link:?}")),
                "shape {i} on {link:?} not on the fast path"
            );
        }
    }
    // Left to the full walk: fragments, tunnels, truncated and malformed.
    let mut frag = v4(6, &[], &tcp(&[]));
    frag[6] = 0x20;
    let mut short_total = v4(6, &[], &tcp(&[]));
    short_total[3] -= 1;
    let mut bad_doff = v4(6, &[], &tcp(&[]));
    bad_doff[32] = 0x40;
    let mut vxlan = udp;
    vxlan[2..4].copy_from_slice(&4789u16.to_be_bytes());
    let mut geneve = udp;
    geneve[2..4].copy_from_slice(&6081u16.to_be_bytes());
    for (i, ip) in [
        frag,
        short_total,
        bad_doff,
        v4(17, &[], &vxlan),
        v4(17, &[], &geneve),
        v4(47, &[], &[0, 0, 8, 0]),
        v4(4, &[], &[]),
        v4(1, &[], &echo[..4]),
        v6(0, &[6, 0, 1, 4, 0, 0, 0, 0]),
        v6(44, &[6, 0, 0, 1, 0, 0, 0, 1]),
    ]
    .iter()
    .enumerate()
    {
        let f = eth(if ip[0] >> 4 == 4 { 0x0800 } else { 0x86DD }, ip);
        assert!(
            !check(LinkType::ETHERNET, &f, &|| format!("slow shape {i}")),
            "slow shape {i} took the fast path"
        );
    }
}

/// Link types and link headers for random frames.
fn link_header() -> impl Strategy<Value = (LinkType, Vec<u8>, Option<bool>)> {
    let ethertype = prop_oneof![
        4 => Just(0x0800u16),
        3 => Just(0x86DD),
        1 => Just(0x0806),
        1 => any::<u16>(),
    ];
    let v6_of = |et: u16| match et {
        0x0800 => Some(false),
        0x86DD => Some(true),
        _ => None,
    };
    prop_oneof![
        6 => ethertype.clone().prop_map(move |et| {
            let mut h = vec![0xaa; 12];
            h.extend_from_slice(&et.to_be_bytes());
            (LinkType::ETHERNET, h, v6_of(et))
        }),
        2 => (prop_oneof![Just(0x8100u16), Just(0x88A8), Just(0x9100)], any::<u16>(), ethertype.clone(), any::<bool>()).prop_map(
            move |(tag, tci, et, double)| {
                let mut h = vec![0xaa; 12];
                h.extend_from_slice(&tag.to_be_bytes());
                h.extend_from_slice(&tci.to_be_bytes());
                if double {
                    h.extend_from_slice(&0x8100u16.to_be_bytes());
                    h.extend_from_slice(&tci.wrapping_add(1).to_be_bytes());
                }
                h.extend_from_slice(&et.to_be_bytes());
                (LinkType::ETHERNET, h, v6_of(et))
            }
        ),
        1 => ethertype.clone().prop_map(move |et| {
            let mut h = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
            h.extend_from_slice(&et.to_be_bytes());
            (LinkType::LINUX_SLL, h, v6_of(et))
        }),
        1 => ethertype.prop_map(move |et| {
            let mut h = et.to_be_bytes().to_vec();
            h.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
            (LinkType::LINUX_SLL2, h, v6_of(et))
        }),
        1 => prop_oneof![Just(LinkType::RAW), Just(LinkType::RAW_12), Just(LinkType::RAW_14)].prop_map(|l| (l, vec![], None)),
        1 => Just((LinkType::IPV4, vec![], Some(false))),
        1 => Just((LinkType::IPV6, vec![], Some(true))),
        1 => Just((LinkType::NULL, vec![2, 0, 0, 0], Some(false))),
    ]
}

fn protocol() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => Just(6u8),
        4 => Just(17),
        2 => Just(1),
        2 => Just(58),
        3 => prop::sample::select(vec![0u8, 4, 41, 43, 44, 47, 50, 51, 59, 60, 33, 132, 136]),
        1 => any::<u8>(),
    ]
}

/// A transport header (and payload) for `proto`.
fn transport(proto: u8, port: u16, doff: u8, icmp_type: u8, tail: &[u8]) -> Vec<u8> {
    let mut t = match proto {
        6 => {
            let mut t = vec![0u8; 20];
            t[0..2].copy_from_slice(&1234u16.to_be_bytes());
            t[2..4].copy_from_slice(&port.to_be_bytes());
            t[12] = doff;
            t[13] = 0x12;
            t
        }
        17 | 136 => {
            let mut t = vec![0u8; 8];
            t[0..2].copy_from_slice(&5353u16.to_be_bytes());
            t[2..4].copy_from_slice(&port.to_be_bytes());
            t
        }
        1 | 58 => vec![icmp_type, 0, 0, 0, 0x12, 0x34, 0, 1],
        _ => vec![],
    };
    t.extend_from_slice(tail);
    t
}

prop_compose! {
    fn frame()(
        (link, mut f, version) in link_header(),
        v6_raw in any::<bool>(),
        proto in protocol(),
        port in prop_oneof![Just(80u16), Just(4789), Just(6081), Just(53), any::<u16>()],
        doff in prop_oneof![4 => Just(0x50u8), 1 => Just(0x60), 1 => Just(0x80), 1 => any::<u8>()],
        icmp_type in prop_oneof![Just(0u8), Just(8), Just(3), Just(128), Just(129), Just(135), any::<u8>()],
        ihl_extra in prop_oneof![4 => Just(0usize), 1 => 0usize..=10],
        flags_frag in prop_oneof![4 => Just(0x4000u16), 2 => Just(0), 1 => Just(0x2000), 1 => Just(0x0001), 1 => any::<u16>()],
        len_delta in prop_oneof![6 => Just(0i32), 1 => -8i32..8, 1 => Just(i32::MIN)],
        tail in prop::collection::vec(any::<u8>(), 0..48),
        padding in prop_oneof![3 => Just(0usize), 1 => 1usize..8],
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
        cut in prop_oneof![3 => Just(None), 1 => any::<prop::sample::Index>().prop_map(Some)],
    ) -> (LinkType, Vec<u8>) {
        let v6 = version.unwrap_or(v6_raw);
        let t = transport(proto, port, doff, icmp_type, &tail);
        let len_of = |natural: usize| -> u16 {
            if len_delta == i32::MIN { 0 } else { (natural as i64 + i64::from(len_delta)).clamp(0, 0xFFFF) as u16 }
        };
        if v6 {
            let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
            h[4..6].copy_from_slice(&len_of(t.len()).to_be_bytes());
            h.extend((0..32u8).map(|i| i.wrapping_mul(7)));
            f.extend_from_slice(&h);
        } else {
            let ihl = 5 + ihl_extra;
            let mut h = vec![0x40 | (ihl as u8 & 0x0F), 0, 0, 0, 0xbe, 0xef, 0, 0, 64, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7];
            h[2..4].copy_from_slice(&len_of(ihl * 4 + t.len()).to_be_bytes());
            h[6..8].copy_from_slice(&flags_frag.to_be_bytes());
            h.extend(std::iter::repeat_n(1u8, ihl_extra * 4));
            f.extend_from_slice(&h);
        }
        f.extend_from_slice(&t);
        f.extend(std::iter::repeat_n(0u8, padding));
        for (at, x) in flips {
            let i = at.index(f.len());
            f[i] ^= x;
        }
        if let Some(c) = cut {
            let c = c.index(f.len() + 1);
            f.truncate(c);
        }
        (link, f)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_equals_full_walk_on_random_frames((link, f) in frame()) {
        check(link, &f, &|| format!("{link:?} {f:02x?}"));
    }

    #[test]
    fn fast_path_equals_full_walk_on_random_bytes(
        link in prop::sample::select(vec![0u16, 1, 12, 14, 101, 108, 113, 228, 229, 276]),
        f in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(0x45u8), 1 => Just(0x08), 1 => Just(0x60), 1 => Just(0)], 0..120),
    ) {
        check(LinkType(link), &f, &|| format!("{link} {f:02x?}"));
    }
}

/// The random frames do exercise the fast path (and the fallback).
#[test]
fn random_frames_reach_the_fast_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = frame();
    let (mut fast, n) = (0, 5000);
    for _ in 0..n {
        let (link, f) = strategy.new_tree(&mut runner).expect("strategy").current();
        fast += usize::from(check(link, &f, &|| format!("{link:?} {f:02x?}")));
    }
    assert!(fast * 5 > n, "only {fast} of {n} random frames on the fast path");
    assert!(
        fast * 10 < n * 9,
        "{fast} of {n} random frames on the fast path: the fallback is barely exercised"
    );
}
