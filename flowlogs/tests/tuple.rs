//! A flow's tuple is not stored in its slot but given back by its key and
//! initiator flag: it must equal the one the new flow's `init` got, in
//! observations and in records, for any packets (both address families,
//! IPv4-mapped IPv6, ICMP pairing, reversed first packets, and packets a
//! library caller builds with one IPv4 and one IPv6 address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netwatch_flowlogs::{FlowRecordKind, FlowTable, FlowTableConfig, FlowTuple, IcmpInfo, PacketInfo};
use proptest::prelude::*;

fn check(pkts: &[PacketInfo]) -> Result<(), TestCaseError> {
    let mut t: FlowTable<FlowTuple> = FlowTable::new(FlowTableConfig::default()).unwrap();
    for p in pkts {
        let mut seen = None;
        let o = t.observe(p, |tup, _| {
            seen = Some(*tup);
            *tup
        });
        prop_assert_eq!(o.tuple, *o.user, "observation tuple vs init's tuple, packet {:?}", p);
        if let Some(s) = seen {
            prop_assert_eq!(o.tuple, s);
        }
    }
    t.finish();
    for r in t.drain_records() {
        if matches!(r.kind, FlowRecordKind::End(_)) {
            prop_assert_eq!(r.tuple, r.user, "end record tuple");
        }
    }
    Ok(())
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (0u32..4).prop_map(|x| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + x))),
        (0u128..4).prop_map(|x| IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | x))),
        // IPv4-mapped IPv6
        (0u32..4).prop_map(|x| IpAddr::V6(Ipv4Addr::from(0x0a00_0000 + x).to_ipv6_mapped())),
        Just(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        Just(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    ]
}

fn packet(same_family: bool) -> impl Strategy<Value = PacketInfo> {
    (
        0i64..1000,
        addr(),
        addr(),
        prop::sample::select(vec![1u8, 6, 17, 58, 47, 50]),
        prop::sample::select(vec![0u16, 53, 443, 1000, 50000]),
        prop::sample::select(vec![0u16, 53, 443, 1000, 50000]),
        prop::option::of((prop::sample::select(vec![0u8, 3, 8, 13, 14, 128, 129, 42, 43]), 0u8..2, 0u16..3)),
        prop::sample::select(vec![0u8, 0x02, 0x12, 0x10, 0x11, 0x04]),
    )
        .prop_map(move |(ts, src, mut dst, protocol, sp, dp, icmp, flags)| {
            if same_family && src.is_ipv4() != dst.is_ipv4() {
                dst = src;
            }
            PacketInfo {
                ts_ns: ts * 1_000_000,
                src,
                dst,
                protocol,
                src_port: sp,
                dst_port: dp,
                icmp: icmp.map(|(icmp_type, code, id)| IcmpInfo { icmp_type, code, id }),
                tcp_flags: flags,
                ip_len: 60,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]
    #[test]
    fn tuple_round_trips_same_family(pkts in prop::collection::vec(packet(true), 1..40)) {
        check(&pkts)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
    #[test]
    fn tuple_round_trips_mixed_family(pkts in prop::collection::vec(packet(false), 1..10)) {
        check(&pkts)?;
    }
}

/// One IPv4 and one IPv6 address: each endpoint keeps its family, both ways.
#[test]
fn mixed_family_packet() {
    let p = PacketInfo {
        ts_ns: 0,
        src: "10.0.0.1".parse().unwrap(),
        dst: "2001:db8::1".parse().unwrap(),
        protocol: 17,
        src_port: 5000,
        dst_port: 53,
        icmp: None,
        tcp_flags: 0,
        ip_len: 60,
    };
    let mut t: FlowTable<()> = FlowTable::new(FlowTableConfig::default()).unwrap();
    let mut init_tuple = None;
    let o = t.observe(&p, |tup, _| init_tuple = Some(*tup));
    assert_eq!(Some(o.tuple), init_tuple, "observed {:?}", o.tuple);
    let reply = PacketInfo {
        src: p.dst,
        dst: p.src,
        src_port: p.dst_port,
        dst_port: p.src_port,
        ..p
    };
    let o = t.observe(&reply, |_, _| ());
    assert!(!o.is_new && !o.from_initiator, "the reply joins the flow");
    assert_eq!(t.len(), 1);
}
